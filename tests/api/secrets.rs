//! No plaintext secret (key, session, invitation, provider credential) is stored: the
//! test reads every text value of every table.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn no_plaintext_secret_is_in_the_database() {
    let app = TestApp::spawn().await;
    let owner = app.signup("o@secret.test", "Secret").await;
    let key = app.create_key(&owner.token, json!({"name": "k", "kind": "infrastructure"})).await;
    let rotated = expect_status(
        app.post(
            &format!("/api/v1/keys/{}/rotate", key["id"].as_str().unwrap()),
            &owner.token,
            json!({"grace_seconds": 60}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let smtp = app.create_smtp_provider(&owner.token, "relay").await;
    let ses = expect_status(
        app.post(
            "/api/v1/providers",
            &owner.token,
            json!({"name": "ses", "type": "ses", "config": {"region": "eu-west-1", "access_key_id": "AKIAEXAMPLEKEYID1234", "secret_access_key": "ses-secret-access-key-value"}}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let inv = expect_status(
        app.post("/api/v1/team/invitations", &owner.token, json!({"email": "new@secret.test", "role": "member"})).await,
        StatusCode::CREATED,
    )
    .await;

    // The API never returns a credential either.
    for p in [&smtp, &ses] {
        let text = p.to_string();
        assert!(
            !text.contains("relay-password-secret")
                && !text.contains("ses-secret-access-key-value")
                && !text.contains("AKIAEXAMPLEKEYID1234"),
            "{text}"
        );
    }
    assert_eq!(smtp["config"]["password_set"], true);
    assert_eq!(ses["config"]["secret_access_key_set"], true);
    assert_eq!(ses["config"]["access_key_id"], "…1234");

    let secrets = [
        key["key"].as_str().unwrap(),
        rotated["key"].as_str().unwrap(),
        owner.token.as_str(),
        inv["token"].as_str().unwrap(),
        "relay-password-secret",
        "ses-secret-access-key-value",
        "AKIAEXAMPLEKEYID1234",
        crate::helpers::PASSWORD,
    ];
    let stored = app.all_stored_text().await;
    assert!(stored.len() > 20, "the dump read the tables");
    assert!(stored.iter().any(|t| t.contains("o@secret.test")), "the dump sees plain values");
    for secret in secrets {
        for value in &stored {
            assert!(!value.contains(secret), "found a secret in the store: {value}");
        }
    }
}

#[tokio::test]
async fn provider_credentials_are_kept_on_update_unless_replaced() {
    let app = TestApp::spawn().await;
    let owner = app.signup("o@prov.test", "Prov").await;
    let smtp = app.create_smtp_provider(&owner.token, "relay").await;
    let path = format!("/api/v1/providers/{}", smtp["id"].as_str().unwrap());
    let res = app.patch(&path, &owner.token, json!({"name": "renamed", "config": {"username": "relay-user"}})).await;
    let updated = expect_status(res, StatusCode::OK).await;
    assert_eq!(updated["config"]["password_set"], true, "an edit that keeps the destination keeps the password");
    // A new port is a new destination (API.md §5): the stored password is not sent there.
    let res = app.patch(&path, &owner.token, json!({"config": {"port": 2587}})).await;
    let updated = expect_status(res, StatusCode::OK).await;
    assert_eq!(updated["config"]["port"], 2587);
    assert_eq!(updated["config"]["password_set"], false);
    assert_eq!(updated["config"]["username"], "relay-user");
    let res = app.patch(&path, &owner.token, json!({"config": {"port": 2588, "password": "given-again"}})).await;
    assert_eq!(expect_status(res, StatusCode::OK).await["config"]["password_set"], true);
    // Pointing the provider elsewhere drops the stored password unless it is given again.
    let res = app.patch(&path, &owner.token, json!({"config": {"host": "attacker.example"}})).await;
    assert_eq!(expect_status(res, StatusCode::OK).await["config"]["password_set"], false);
    let res =
        app.patch(&path, &owner.token, json!({"config": {"host": "relay.example", "password": "new-secret-pw"}})).await;
    assert_eq!(expect_status(res, StatusCode::OK).await["config"]["password_set"], true);
    let res = app.patch(&path, &owner.token, json!({"config": {"password": null, "username": null}})).await;
    assert_eq!(expect_status(res, StatusCode::OK).await["config"]["password_set"], false);
    let res = app.patch(&path, &owner.token, json!({"config": {"port": 0}})).await;
    assert_eq!(expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await["param"], "config.port");
    let res = app.patch(&path, &owner.token, json!({"config": {"type": "ses"}})).await;
    assert_eq!(expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await["param"], "config.type");
}
