//! Key lifecycle: the active-key limit, revocation, rotation with grace, expiry.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

#[tokio::test]
async fn the_101st_active_key_is_refused_until_one_is_revoked() {
    let app = TestApp::spawn().await;
    let owner = app.signup("o@many.test", "Many").await;
    let mut ids = Vec::new();
    for i in 0..100 {
        ids.push(
            app.create_key(
                &owner.token,
                json!({"name": format!("k{i}"), "kind": "infrastructure", "permissions": ["logs.read"]}),
            )
            .await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let res = app.post("/api/v1/keys", &owner.token, json!({"name": "k100", "kind": "infrastructure"})).await;
    expect_error(res, StatusCode::CONFLICT, "limit_exceeded").await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM api_keys WHERE team_id = $1", &owner.team_id).await,
        100,
        "nothing written"
    );

    let limits = expect_status(app.get("/api/v1/limits", &owner.token).await, StatusCode::OK).await;
    let keys = limits["data"].as_array().unwrap().iter().find(|l| l["name"] == "active_keys").unwrap().clone();
    assert_eq!(
        keys,
        json!({"name": "active_keys", "limit": 100, "used": 100, "percent": 100.0, "increase_requestable": true})
    );

    expect_status(app.delete(&format!("/api/v1/keys/{}", ids[0]), &owner.token).await, StatusCode::OK).await;
    app.create_key(&owner.token, json!({"name": "k100", "kind": "infrastructure"})).await;
    let res = app.post("/api/v1/keys", &owner.token, json!({"name": "k101", "kind": "infrastructure"})).await;
    expect_error(res, StatusCode::CONFLICT, "limit_exceeded").await;
}

#[tokio::test]
async fn a_revoked_key_fails_on_the_next_request() {
    let app = TestApp::spawn().await;
    let owner = app.signup("o@revoke.test", "Revoke").await;
    let key = app.create_key(&owner.token, json!({"name": "k", "kind": "infrastructure"})).await;
    let secret = key["key"].as_str().unwrap();
    // Warm every cache the request path has.
    for _ in 0..3 {
        expect_status(app.get("/api/v1/logs", secret).await, StatusCode::OK).await;
    }
    let revoked = expect_status(
        app.delete(&format!("/api/v1/keys/{}", key["id"].as_str().unwrap()), &owner.token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(revoked["status"], "revoked");
    assert!(revoked.get("key").is_none(), "the secret is never shown again");
    expect_error(app.get("/api/v1/logs", secret).await, StatusCode::UNAUTHORIZED, "authentication_failed").await;
    // Later reads show the key's prefix and last four characters only.
    let read = expect_status(
        app.get(&format!("/api/v1/keys/{}", key["id"].as_str().unwrap()), &owner.token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(read["prefix"], &secret[..12]);
    assert_eq!(read["last4"], &secret[secret.len() - 4..]);
    assert!(!read.to_string().contains(secret));
}

#[tokio::test]
async fn a_rotated_keys_old_secret_dies_when_the_grace_ends() {
    let app = TestApp::spawn().await;
    let owner = app.signup("o@rotate.test", "Rotate").await;
    let key = app.create_key(&owner.token, json!({"name": "k", "kind": "infrastructure"})).await;
    let id = key["id"].as_str().unwrap();
    let old = key["key"].as_str().unwrap().to_owned();
    expect_status(app.get("/api/v1/logs", &old).await, StatusCode::OK).await;

    let res = app.post(&format!("/api/v1/keys/{id}/rotate"), &owner.token, json!({"grace_seconds": 2})).await;
    let rotated = expect_status(res, StatusCode::OK).await;
    let new = rotated["key"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(rotated["id"], id, "rotation keeps the key's identity");
    // During the grace both secrets work.
    expect_status(app.get("/api/v1/logs", &old).await, StatusCode::OK).await;
    expect_status(app.get("/api/v1/logs", &new).await, StatusCode::OK).await;
    eventually("the old secret stops", Duration::from_secs(10), || async {
        app.get("/api/v1/logs", &old).await.status() == StatusCode::UNAUTHORIZED
    })
    .await;
    expect_status(app.get("/api/v1/logs", &new).await, StatusCode::OK).await;

    // Without grace the old secret dies at once.
    let res = app.post(&format!("/api/v1/keys/{id}/rotate"), &owner.token, json!({"grace_seconds": 0})).await;
    let newest = expect_status(res, StatusCode::OK).await["key"].as_str().unwrap().to_owned();
    expect_error(app.get("/api/v1/logs", &new).await, StatusCode::UNAUTHORIZED, "authentication_failed").await;
    expect_status(app.get("/api/v1/logs", &newest).await, StatusCode::OK).await;

    for bad in [json!({"grace_seconds": -1}), json!({"grace_seconds": 86401}), json!({"grace_seconds": "soon"})] {
        let res = app.post(&format!("/api/v1/keys/{id}/rotate"), &owner.token, bad).await;
        assert_eq!(
            expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await["param"],
            "grace_seconds"
        );
    }
}

#[tokio::test]
async fn an_expired_key_stops_working() {
    let app = TestApp::spawn().await;
    let owner = app.signup("o@expire.test", "Expire").await;
    let at = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let key = app.create_key(&owner.token, json!({"name": "k", "kind": "infrastructure", "expires_at": at})).await;
    let secret = key["key"].as_str().unwrap();
    expect_status(app.get("/api/v1/logs", secret).await, StatusCode::OK).await;
    eventually("the key expires", Duration::from_secs(10), || async {
        app.get("/api/v1/logs", secret).await.status() == StatusCode::UNAUTHORIZED
    })
    .await;
    let read = expect_status(
        app.get(&format!("/api/v1/keys/{}", key["id"].as_str().unwrap()), &owner.token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(read["status"], "expired");
    let past = json!({"name": "k", "kind": "infrastructure", "expires_at": "2020-01-01T00:00:00Z"});
    let res = app.post("/api/v1/keys", &owner.token, past).await;
    assert_eq!(expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await["param"], "expires_at");
}

#[tokio::test]
async fn concurrent_creations_stop_at_exactly_one_hundred_active_keys() {
    let app = TestApp::spawn().await;
    let owner = app.signup("o@race.test", "Race").await;
    for i in 0..95 {
        app.create_key(
            &owner.token,
            json!({"name": format!("k{i}"), "kind": "infrastructure", "permissions": ["logs.read"]}),
        )
        .await;
    }
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let (client, url, token) = (app.client.clone(), app.url("/api/v1/keys"), owner.token.clone());
        tasks.spawn(async move {
            let body = json!({"name": format!("c{i}"), "kind": "infrastructure", "permissions": ["logs.read"]});
            client.post(url).bearer_auth(token).json(&body).send().await.unwrap().status()
        });
    }
    let (mut created, mut refused) = (0, 0);
    while let Some(status) = tasks.join_next().await {
        match status.unwrap() {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((created, refused), (5, 15));
    let active = "SELECT COUNT(*) FROM api_keys WHERE team_id = $1 AND revoked_at IS NULL";
    assert_eq!(app.count(active, &owner.team_id).await, 100);
}

/// Reads may be served from memory; a change must show in the very next read.
#[tokio::test]
async fn reads_show_every_change_at_once() {
    let app = TestApp::spawn().await;
    let owner = app.signup("o@fresh.test", "Fresh").await;
    let mbx = app.create_mailbox(&owner.token, "fresh@localhost").await;
    let reader = app
        .create_key(&owner.token, json!({"name": "r", "kind": "mailbox", "mailbox_id": mbx["id"], "permissions": ["mailbox.read", "mailbox.settings.update"]}))
        .await;
    let reader = reader["key"].as_str().unwrap();
    let ids = |list: &serde_json::Value| -> Vec<(String, String)> {
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| (k["id"].as_str().unwrap().to_owned(), k["status"].as_str().unwrap().to_owned()))
            .collect()
    };
    for _ in 0..3 {
        expect_status(app.get("/api/v1/keys", &owner.token).await, StatusCode::OK).await;
        expect_status(app.get("/api/v1/mailbox", reader).await, StatusCode::OK).await;
    }
    let key = app.create_key(&owner.token, json!({"name": "new", "kind": "infrastructure"})).await;
    let listed = ids(&expect_status(app.get("/api/v1/keys", &owner.token).await, StatusCode::OK).await);
    assert_eq!(listed[0], (key["id"].as_str().unwrap().to_owned(), "active".to_owned()));
    expect_status(
        app.delete(&format!("/api/v1/keys/{}", key["id"].as_str().unwrap()), &owner.token).await,
        StatusCode::OK,
    )
    .await;
    let listed = ids(&expect_status(app.get("/api/v1/keys", &owner.token).await, StatusCode::OK).await);
    assert_eq!(listed[0].1, "revoked");

    expect_status(app.patch("/api/v1/mailbox/settings", reader, json!({"retention_days": 7})).await, StatusCode::OK)
        .await;
    let seen = expect_status(app.get("/api/v1/mailbox", reader).await, StatusCode::OK).await;
    assert_eq!(seen["settings"]["retention_days"], 7);
    let res = app
        .patch(
            &format!("/api/v1/mailboxes/{}/settings", mbx["id"].as_str().unwrap()),
            &owner.token,
            json!({"retention_days": 9}),
        )
        .await;
    expect_status(res, StatusCode::OK).await;
    let seen = expect_status(app.get("/api/v1/mailbox", reader).await, StatusCode::OK).await;
    assert_eq!(seen["settings"]["retention_days"], 9);
}
