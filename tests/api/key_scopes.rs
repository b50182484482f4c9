//! Each key kind can do exactly its permissions and no more (API.md §3).

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn status_of(app: &TestApp, token: &str, method: Method, path: &str, body: Value) -> StatusCode {
    let mut req = app.req(method, path, token);
    if !body.is_null() {
        req = req.json(&body);
    }
    req.send().await.unwrap().status()
}

fn allowed(s: StatusCode) -> bool {
    s.is_success()
}

#[tokio::test]
async fn infrastructure_keys_hold_exactly_their_permissions() {
    let app = TestApp::spawn().await;
    let owner = app.signup("o@infra.test", "Infra").await;
    let mbx = app.create_mailbox(&owner.token, "infra@localhost").await;
    let mbx_id = mbx["id"].as_str().unwrap();
    // One permission at a time: each opens its own routes and nothing else.
    let probes = |n: usize| -> Vec<(&'static str, Method, String, Value)> {
        vec![
            (
                "providers.manage",
                Method::POST,
                "/api/v1/providers".into(),
                json!({"name": format!("p{n}"), "type": "smtp", "config": {"host": "mx.example.com", "port": 25}}),
            ),
            ("providers.manage", Method::GET, "/api/v1/delivery-groups".into(), Value::Null),
            (
                "mailboxes.manage",
                Method::POST,
                "/api/v1/mailboxes".into(),
                json!({"address": format!("m{n}@localhost")}),
            ),
            ("mailboxes.manage", Method::GET, "/api/v1/mailboxes".into(), Value::Null),
            // Creating keys with keys.manage alone is refused by the ceiling (API.md §3: a
            // sending key needs providers.manage too); an_infrastructure_key_creates_…
            // covers it.
            ("keys.manage", Method::GET, "/api/v1/keys".into(), Value::Null),
            ("logs.read", Method::GET, "/api/v1/logs".into(), Value::Null),
            (
                "domains.manage",
                Method::POST,
                "/api/v1/domains".into(),
                json!({"name": format!("d{n}.example"), "dkim_algorithm": "ed25519"}),
            ),
            ("domains.manage", Method::GET, "/api/v1/domains".into(), Value::Null),
        ]
    };
    let mut n = 0;
    for perm in [
        "providers.manage",
        "mailboxes.manage",
        "keys.manage",
        "logs.read",
        "webhooks.manage",
        "billing.read",
        "domains.manage",
    ] {
        let key =
            app.create_key(&owner.token, json!({"name": perm, "kind": "infrastructure", "permissions": [perm]})).await;
        assert_eq!(key["permissions"], json!([perm]));
        let secret = key["key"].as_str().unwrap();
        assert!(secret.starts_with("smx_inf_"));
        for (needs, method, path, body) in probes(n) {
            n += 1;
            let s = status_of(&app, secret, method.clone(), &path, body).await;
            assert_eq!(allowed(s), needs == perm, "key with {perm}: {method} {path} gave {s}");
            if needs != perm {
                assert_eq!(s, StatusCode::FORBIDDEN);
            }
        }
        // Never people's business, whatever the key carries.
        for (method, path) in
            [(Method::GET, "/api/v1/team/members"), (Method::PATCH, "/api/v1/team"), (Method::DELETE, "/api/v1/team")]
        {
            let s = status_of(&app, secret, method.clone(), path, json!({"name": "x"})).await;
            assert_eq!(s, StatusCode::FORBIDDEN, "{perm}: {method} {path}");
        }
        // Every infrastructure key reads its team and limits.
        assert_eq!(status_of(&app, secret, Method::GET, "/api/v1/limits", Value::Null).await, StatusCode::OK);
        assert_eq!(
            status_of(&app, secret, Method::GET, &format!("/api/v1/mailboxes/{mbx_id}"), Value::Null)
                .await
                .is_success(),
            perm == "mailboxes.manage"
        );
    }

    // The default set leaves out keys.manage.
    let default = app.create_key(&owner.token, json!({"name": "d", "kind": "infrastructure"})).await;
    assert_eq!(
        default["permissions"],
        json!([
            "providers.manage",
            "mailboxes.manage",
            "webhooks.manage",
            "billing.read",
            "logs.read",
            "domains.manage"
        ])
    );
    let s = status_of(
        &app,
        default["key"].as_str().unwrap(),
        Method::POST,
        "/api/v1/keys",
        json!({"name": "x", "kind": "mailbox", "mailbox_id": mbx_id}),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_infrastructure_key_creates_sending_and_mailbox_keys_only() {
    let app = TestApp::spawn().await;
    let owner = app.signup("o@km.test", "KM").await;
    let mbx = app.create_mailbox(&owner.token, "km@localhost").await;
    let provider = app.create_smtp_provider(&owner.token, "relay").await;
    let group = app.create_group(&owner.token, provider["id"].as_str().unwrap()).await;
    // API.md §3: a key mints sending keys only with providers.manage and mailbox keys only
    // with mailboxes.manage (it could not reach either otherwise).
    let bare = app
        .create_key(&owner.token, json!({"name": "b", "kind": "infrastructure", "permissions": ["keys.manage"]}))
        .await;
    let bare = bare["key"].as_str().unwrap();
    for body in [
        json!({"name": "s", "kind": "sending", "delivery_group_id": group["id"]}),
        json!({"name": "mb", "kind": "mailbox", "mailbox_id": mbx["id"]}),
        json!({"name": "mb", "kind": "mailbox", "mailbox_id": mbx["id"], "permissions": ["mailbox.read"]}),
    ] {
        expect_error(app.post("/api/v1/keys", bare, body).await, StatusCode::FORBIDDEN, "permission_denied").await;
    }
    let manager = app
        .create_key(
            &owner.token,
            json!({"name": "m", "kind": "infrastructure", "permissions": ["keys.manage", "providers.manage", "mailboxes.manage"]}),
        )
        .await;
    let manager = manager["key"].as_str().unwrap();
    let other_infra = app.create_key(&owner.token, json!({"name": "i", "kind": "infrastructure"})).await;

    let snd = app.create_key(manager, json!({"name": "s", "kind": "sending", "delivery_group_id": group["id"]})).await;
    assert!(snd["key"].as_str().unwrap().starts_with("smx_snd_"));
    assert_eq!(snd["permissions"], json!(["email.send"]));
    let mbk = app.create_key(manager, json!({"name": "mb", "kind": "mailbox", "mailbox_id": mbx["id"]})).await;
    assert!(mbk["key"].as_str().unwrap().starts_with("smx_mbx_"));
    assert_eq!(mbk["permissions"], json!(["mailbox.read"]));

    let res = app
        .post("/api/v1/keys", manager, json!({"name": "i2", "kind": "infrastructure", "permissions": ["logs.read"]}))
        .await;
    expect_error(res, StatusCode::FORBIDDEN, "permission_denied").await;
    let other_id = other_infra["id"].as_str().unwrap();
    expect_error(
        app.delete(&format!("/api/v1/keys/{other_id}"), manager).await,
        StatusCode::FORBIDDEN,
        "permission_denied",
    )
    .await;
    expect_error(
        app.post(&format!("/api/v1/keys/{other_id}/rotate"), manager, json!({})).await,
        StatusCode::FORBIDDEN,
        "permission_denied",
    )
    .await;
    // ...but it does manage the keys it may create.
    expect_status(app.delete(&format!("/api/v1/keys/{}", snd["id"].as_str().unwrap()), manager).await, StatusCode::OK)
        .await;

    // A permission outside the kind's set is 422 naming it.
    let res = app.post("/api/v1/keys", &owner.token, json!({"name": "bad", "kind": "sending", "delivery_group_id": group["id"], "permissions": ["email.send", "mailbox.read"]})).await;
    let err = expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await;
    assert_eq!(err["param"], "permissions[1]");
    let res = app.post("/api/v1/keys", &owner.token, json!({"name": "bad", "kind": "sending"})).await;
    assert_eq!(
        expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await["param"],
        "delivery_group_id"
    );
    let res = app.post("/api/v1/keys", &owner.token, json!({"name": "bad", "kind": "mailbox"})).await;
    assert_eq!(expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await["param"], "mailbox_id");
}

#[tokio::test]
async fn sending_and_mailbox_keys_reach_nothing_beyond_their_scope() {
    let app = TestApp::spawn().await;
    let owner = app.signup("o@scope.test", "Scope").await;
    let mine = app.create_mailbox(&owner.token, "mine@localhost").await;
    let other = app.create_mailbox(&owner.token, "other@localhost").await;
    let provider = app.create_smtp_provider(&owner.token, "relay").await;
    let group = app.create_group(&owner.token, provider["id"].as_str().unwrap()).await;
    let snd =
        app.create_key(&owner.token, json!({"name": "s", "kind": "sending", "delivery_group_id": group["id"]})).await;
    let reader = app.create_key(&owner.token, json!({"name": "r", "kind": "mailbox", "mailbox_id": mine["id"]})).await;
    let settings = app.create_key(&owner.token, json!({"name": "w", "kind": "mailbox", "mailbox_id": mine["id"], "permissions": ["mailbox.read", "mailbox.settings.update"]})).await;
    let (snd, reader, settings) =
        (snd["key"].as_str().unwrap(), reader["key"].as_str().unwrap(), settings["key"].as_str().unwrap());

    let team_routes = [
        (Method::GET, "/api/v1/team".to_owned()),
        (Method::GET, "/api/v1/keys".to_owned()),
        (Method::GET, "/api/v1/providers".to_owned()),
        (Method::GET, "/api/v1/delivery-groups".to_owned()),
        (Method::GET, format!("/api/v1/delivery-groups/{}", group["id"].as_str().unwrap())),
        (Method::GET, "/api/v1/mailboxes".to_owned()),
        (Method::GET, format!("/api/v1/mailboxes/{}", mine["id"].as_str().unwrap())),
        (Method::GET, format!("/api/v1/mailboxes/{}", other["id"].as_str().unwrap())),
        (Method::GET, "/api/v1/logs".to_owned()),
        (Method::GET, "/api/v1/limits".to_owned()),
        (Method::GET, "/api/v1/team/members".to_owned()),
        (Method::POST, "/api/v1/keys".to_owned()),
        (Method::POST, "/api/v1/mailboxes".to_owned()),
    ];
    for token in [snd, reader, settings] {
        for (method, path) in &team_routes {
            let s = status_of(&app, token, method.clone(), path, json!({})).await;
            assert_eq!(s, StatusCode::FORBIDDEN, "{}: {method} {path}", &token[..8]);
        }
    }
    // The sending key has no mailbox; the mailbox keys see only theirs.
    assert_eq!(status_of(&app, snd, Method::GET, "/api/v1/mailbox", Value::Null).await, StatusCode::FORBIDDEN);
    let seen = expect_status(app.get("/api/v1/mailbox", reader).await, StatusCode::OK).await;
    assert_eq!(seen["id"], mine["id"]);
    assert_eq!(seen["address"], "mine@localhost");

    let res = app.patch("/api/v1/mailbox/settings", reader, json!({"spam_threshold": 9})).await;
    expect_error(res, StatusCode::FORBIDDEN, "permission_denied").await;
    let res = app.patch("/api/v1/mailbox/settings", settings, json!({"spam_threshold": 9, "accept_spam": false})).await;
    let updated = expect_status(res, StatusCode::OK).await;
    assert_eq!(updated["id"], mine["id"]);
    assert_eq!(updated["settings"]["spam_threshold"], 9.0);
    assert_eq!(updated["settings"]["accept_spam"], false);
    let other_now = expect_status(
        app.get(&format!("/api/v1/mailboxes/{}", other["id"].as_str().unwrap()), &owner.token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(other_now["settings"]["spam_threshold"], 5.0, "the other mailbox is untouched");
}

#[tokio::test]
async fn a_key_never_holds_more_than_its_creator() {
    let app = TestApp::spawn().await;
    let owner = app.signup("o@ceiling.test", "Ceiling").await;
    let dev = app.add_member(&owner, "dev@ceiling.test", "developer").await;
    let mbx = app.create_mailbox(&owner.token, "ceiling@localhost").await;
    let provider = app.create_smtp_provider(&owner.token, "relay").await;
    let group = app.create_group(&owner.token, provider["id"].as_str().unwrap()).await;

    // A developer's default infrastructure key is narrowed to what developers hold.
    let k = app.create_key(&dev.token, json!({"name": "d", "kind": "infrastructure"})).await;
    assert_eq!(k["permissions"], json!(["webhooks.manage", "logs.read"]));
    for perm in ["providers.manage", "mailboxes.manage", "billing.read"] {
        let res = app
            .post("/api/v1/keys", &dev.token, json!({"name": "x", "kind": "infrastructure", "permissions": [perm]}))
            .await;
        expect_error(res, StatusCode::FORBIDDEN, "permission_denied").await;
    }
    let res = app.post("/api/v1/keys", &dev.token, json!({"name": "x", "kind": "mailbox", "mailbox_id": mbx["id"], "permissions": ["mailbox.read", "email.receive"]})).await;
    expect_error(res, StatusCode::FORBIDDEN, "permission_denied").await;
    // Sending and reading keys are what keys are for.
    app.create_key(&dev.token, json!({"name": "s", "kind": "sending", "delivery_group_id": group["id"]})).await;
    app.create_key(&dev.token, json!({"name": "r", "kind": "mailbox", "mailbox_id": mbx["id"]})).await;

    // Rotating hands over a key's powers: not to someone who could not have made it.
    let strong = app.create_key(&owner.token, json!({"name": "owner's", "kind": "infrastructure"})).await;
    let res = app
        .post(
            &format!("/api/v1/keys/{}/rotate", strong["id"].as_str().unwrap()),
            &dev.token,
            json!({"grace_seconds": 60}),
        )
        .await;
    expect_error(res, StatusCode::FORBIDDEN, "permission_denied").await;
    expect_status(app.get("/api/v1/logs", strong["key"].as_str().unwrap()).await, StatusCode::OK).await;

    // Nor revoke it: a developer revokes only keys a developer could have made.
    let res = app.delete(&format!("/api/v1/keys/{}", strong["id"].as_str().unwrap()), &dev.token).await;
    expect_error(res, StatusCode::FORBIDDEN, "permission_denied").await;
    expect_status(app.get("/api/v1/logs", strong["key"].as_str().unwrap()).await, StatusCode::OK).await;

    // An infrastructure key with only keys.manage cannot reach the mailbox, so it mints
    // no key that could (API.md §3, issue #13 finding 8: it did, and read the mailbox).
    let manager = app
        .create_key(&owner.token, json!({"name": "m", "kind": "infrastructure", "permissions": ["keys.manage"]}))
        .await;
    let manager = manager["key"].as_str().unwrap();
    let res = app.post("/api/v1/keys", manager, json!({"name": "x", "kind": "mailbox", "mailbox_id": mbx["id"]})).await;
    expect_error(res, StatusCode::FORBIDDEN, "permission_denied").await;
    // With mailboxes.manage it may, within the mailbox kind's set.
    let manager = app
        .create_key(
            &owner.token,
            json!({"name": "m2", "kind": "infrastructure", "permissions": ["keys.manage", "mailboxes.manage"]}),
        )
        .await;
    let manager = manager["key"].as_str().unwrap();
    app.create_key(manager, json!({"name": "ok", "kind": "mailbox", "mailbox_id": mbx["id"], "permissions": ["mailbox.read", "mailbox.settings.update"]}))
        .await;
}
