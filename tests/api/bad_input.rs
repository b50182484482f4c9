//! Bad input gets the error body (API.md §1) with the right status: never a 500, a panic or a
//! partial write.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn malformed_requests_get_clear_errors_and_change_nothing() {
    let app = TestApp::spawn().await;
    let owner = app.signup("o@bad.test", "Bad").await;
    let mbx = app.create_mailbox(&owner.token, "bad@localhost").await;
    let audit_before = app.count("SELECT COUNT(*) FROM audit_log WHERE team_id = $1", &owner.team_id).await;
    let t = owner.token.as_str();

    let raw = |path: &str, body: &'static str| {
        app.req(Method::POST, path, t).header("content-type", "application/json").body(body)
    };
    // Broken JSON: 400.
    for body in ["{", "{\"name\": }", "not json", "[1,2", "{\"name\":\"x\"} trailing"] {
        let res = raw("/api/v1/mailboxes", body).send().await.unwrap();
        expect_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    // Wrong types, missing and unknown fields: 422 naming the field.
    let cases = [
        ("/api/v1/mailboxes", json!({"address": 42}), "address"),
        ("/api/v1/mailboxes", json!({"name": "no address"}), ""),
        ("/api/v1/mailboxes", json!({"address": "x@localhost", "colour": "red"}), "colour"),
        (
            "/api/v1/mailboxes",
            json!({"address": "x@localhost", "settings": {"spam_threshold": "high"}}),
            "settings.spam_threshold",
        ),
        (
            "/api/v1/mailboxes",
            json!({"address": "x@localhost", "settings": {"retention_days": 0}}),
            "settings.retention_days",
        ),
        ("/api/v1/mailboxes", json!({"address": "not an address"}), "address"),
        ("/api/v1/mailboxes", json!({"address": "Robot <bot@localhost>"}), "address"),
        ("/api/v1/mailboxes", json!({"address": "bot@elsewhere.example"}), "address"),
        ("/api/v1/keys", json!({"name": "k", "kind": "root"}), "kind"),
        ("/api/v1/keys", json!({"name": "", "kind": "infrastructure"}), "name"),
        ("/api/v1/keys", json!({"name": "k", "kind": "infrastructure", "permissions": "all"}), "permissions"),
        ("/api/v1/keys", json!({"name": "k", "kind": "infrastructure", "expires_at": "tomorrow"}), "expires_at"),
        (
            "/api/v1/providers",
            json!({"name": "p", "type": "smtp", "config": {"host": "h", "port": 70000}}),
            "config.port",
        ),
        (
            "/api/v1/providers",
            json!({"name": "p", "type": "smtp", "config": {"host": "bad host/x", "port": 25}}),
            "config.host",
        ),
        (
            "/api/v1/providers",
            json!({"name": "p", "type": "ses", "config": {"region": "eu-west-1", "access_key_id": "a", "secret_access_key": "b", "endpoint": "ftp://x"}}),
            "config.endpoint",
        ),
        ("/api/v1/delivery-groups", json!({"name": "g", "strategy": "failover", "members": []}), "members"),
        ("/api/v1/delivery-groups", json!({"name": "g", "strategy": "random", "members": []}), "strategy"),
        (
            "/api/v1/delivery-groups",
            json!({"name": "g", "strategy": "failover", "members": [{"provider_id": "prv_nope"}]}),
            "members[0].provider_id",
        ),
        ("/api/v1/team/invitations", json!({"email": "a@@b", "role": "member"}), "email"),
        ("/api/v1/team/invitations", json!({"email": "a@b.test", "role": "owner"}), "role"),
    ];
    for (path, body, param) in cases {
        let res = app.post(path, t, body.clone()).await;
        let err = expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await;
        if !param.is_empty() {
            assert_eq!(err["param"], param, "{path} {body}");
        }
    }
    // A body over the limit: 413.
    let huge = format!("{{\"address\": \"{}@localhost\"}}", "a".repeat(2 << 20));
    let res = app
        .req(Method::POST, "/api/v1/mailboxes", t)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    // A wrong content type: 400.
    let res = app
        .req(Method::POST, "/api/v1/mailboxes", t)
        .header("content-type", "text/plain")
        .body("{\"address\":\"q@localhost\"}")
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
    // Bad ids in paths are 404, bad query parameters 400.
    for path in [
        "/api/v1/keys/nope",
        "/api/v1/keys/key_",
        "/api/v1/mailboxes/mbx_01J1M9C3K8ZQ4W8N5T2V7X6Y3B",
        "/api/v1/providers/key_01J1M9C3K8ZQ4W8N5T2V7X6Y3B",
        "/api/v1/delivery-groups/%00",
        "/api/v1/nothing-here",
    ] {
        expect_error(app.get(path, t).await, StatusCode::NOT_FOUND, "not_found").await;
    }
    for path in [
        "/api/v1/keys?limit=0",
        "/api/v1/keys?limit=101",
        "/api/v1/keys?limit=ten",
        "/api/v1/keys?cursor=mbx_01J1M9C3K8ZQ4W8N5T2V7X6Y3B",
        "/api/v1/logs?kind=everything",
    ] {
        let err = expect_error(app.get(path, t).await, StatusCode::BAD_REQUEST, "invalid_request").await;
        assert!(err["param"].is_string(), "{path}: {err}");
    }
    // Credentials: missing, malformed, unknown.
    let res = app.client.get(app.url("/api/v1/keys")).send().await.unwrap();
    expect_error(res, StatusCode::UNAUTHORIZED, "authentication_failed").await;
    for auth in ["Basic abc", "Bearer", "Bearer smx_inf_doesnotexist", "Bearer garbage"] {
        let res = app.client.get(app.url("/api/v1/keys")).header("authorization", auth).send().await.unwrap();
        expect_error(res, StatusCode::UNAUTHORIZED, "authentication_failed").await;
    }
    // Wrong method: the error body of API.md §1 too.
    let res = app.req(Method::PUT, "/api/v1/keys", t).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(res.json::<serde_json::Value>().await.unwrap()["error"]["request_id"].is_string());

    // Nothing was written by any of it.
    assert_eq!(app.count("SELECT COUNT(*) FROM mailboxes WHERE team_id = $1", &owner.team_id).await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM api_keys WHERE team_id = $1", &owner.team_id).await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM providers WHERE team_id = $1", &owner.team_id).await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM invitations WHERE team_id = $1", &owner.team_id).await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM audit_log WHERE team_id = $1", &owner.team_id).await, audit_before);
    expect_status(app.get(&format!("/api/v1/mailboxes/{}", mbx["id"].as_str().unwrap()), t).await, StatusCode::OK)
        .await;
}

#[tokio::test]
async fn duplicate_addresses_conflict_across_teams() {
    let app = TestApp::spawn().await;
    let a = app.signup("a@dup.test", "A").await;
    let b = app.signup("b@dup.test", "B").await;
    app.create_mailbox(&a.token, "shared@localhost").await;
    let res = app.post("/api/v1/mailboxes", &b.token, json!({"address": "Shared@LOCALHOST"})).await;
    assert_eq!(expect_error(res, StatusCode::CONFLICT, "conflict").await["param"], "address");
    let res = app
        .client
        .post(app.url("/api/v1/auth/signup"))
        .json(&json!({"email": "A@dup.test", "password": PASSWORD, "team_name": "again"}))
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::CONFLICT, "conflict").await;
}

/// Found by schemathesis (issue #13): serde reads a struct from an array of its fields,
/// so `[null, null]` was accepted as a provider change (200) though the API documents an
/// object. Arrays are refused where an object is expected (422); the batch endpoint,
/// which takes an array, still does.
#[tokio::test]
async fn an_array_is_not_an_object() {
    let app = TestApp::spawn().await;
    let owner = app.signup("o@array.test", "Array").await;
    let provider = app.create_smtp_provider(&owner.token, "relay").await;
    let id = provider["id"].as_str().unwrap();
    let res = app.patch(&format!("/api/v1/providers/{id}"), &owner.token, json!([null, null])).await;
    expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await;
    let res = app.post("/api/v1/team/invitations", &owner.token, json!(["x@array.test", "member"])).await;
    expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await;
    // A broken array is still unreadable JSON (400).
    let res = app
        .req(Method::PATCH, &format!("/api/v1/providers/{id}"), &owner.token)
        .header("content-type", "application/json")
        .body("[null,")
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
}

/// JSON Schema counts `5.0` as an integer and the document says `integer`: such values
/// are read as integers; a fraction is still refused naming the field.
#[tokio::test]
async fn integral_floats_are_integers() {
    let app = TestApp::spawn().await;
    let owner = app.signup("o@float.test", "Float").await;
    let mbx = app.create_mailbox(&owner.token, "float@localhost").await;
    let id = mbx["id"].as_str().unwrap();
    let res =
        app.patch(&format!("/api/v1/mailboxes/{id}/settings"), &owner.token, json!({"retention_days": 7.0})).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<serde_json::Value>().await.unwrap()["settings"]["retention_days"], 7);
    let res =
        app.patch(&format!("/api/v1/mailboxes/{id}/settings"), &owner.token, json!({"retention_days": 7.5})).await;
    let body = expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await;
    assert_eq!(body["param"], "retention_days");
}
