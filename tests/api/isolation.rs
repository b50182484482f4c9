//! Tenant isolation, table-driven over every route that names a resource: a credential
//! of team A gets 404 for each resource of team B, nothing of B shows in A's lists, and
//! B's resources are untouched afterwards.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

struct Tenant {
    owner: Person,
    member: Person,
    infra: String,
    mailbox_key: String,
    mailbox: String,
    provider: String,
    group: String,
    key: String,
    invitation: String,
}

async fn tenant(app: &TestApp, name: &str) -> Tenant {
    let owner = app.signup(&format!("owner@{name}.test"), name).await;
    let member = app.add_member(&owner, &format!("member@{name}.test"), "member").await;
    let mailbox =
        app.create_mailbox(&owner.token, &format!("{name}@localhost")).await["id"].as_str().unwrap().to_owned();
    let provider = app.create_smtp_provider(&owner.token, "relay").await["id"].as_str().unwrap().to_owned();
    let group = app.create_group(&owner.token, &provider).await["id"].as_str().unwrap().to_owned();
    let infra_key = app
        .create_key(&owner.token, json!({"name": "infra", "kind": "infrastructure", "permissions": ["providers.manage", "mailboxes.manage", "keys.manage", "logs.read", "webhooks.manage", "billing.read"]}))
        .await;
    let mbx_key = app.create_key(&owner.token, json!({"name": "mbx", "kind": "mailbox", "mailbox_id": mailbox, "permissions": ["mailbox.read", "mailbox.settings.update"]})).await;
    let snd_key =
        app.create_key(&owner.token, json!({"name": "snd", "kind": "sending", "delivery_group_id": group})).await;
    let inv = app
        .post(
            "/api/v1/team/invitations",
            &owner.token,
            json!({"email": format!("invitee@{name}.test"), "role": "developer"}),
        )
        .await;
    let invitation = expect_status(inv, StatusCode::CREATED).await["id"].as_str().unwrap().to_owned();
    Tenant {
        owner,
        member,
        infra: infra_key["key"].as_str().unwrap().to_owned(),
        mailbox_key: mbx_key["key"].as_str().unwrap().to_owned(),
        mailbox,
        provider,
        group,
        key: snd_key["id"].as_str().unwrap().to_owned(),
        invitation,
    }
}

/// Every route that takes the id of a team-owned resource, filled with `b`'s ids.
fn routes(b: &Tenant) -> Vec<(Method, String, Value)> {
    vec![
        (Method::GET, format!("/api/v1/keys/{}", b.key), Value::Null),
        (Method::POST, format!("/api/v1/keys/{}/rotate", b.key), json!({"grace_seconds": 0})),
        (Method::DELETE, format!("/api/v1/keys/{}", b.key), Value::Null),
        (Method::GET, format!("/api/v1/providers/{}", b.provider), Value::Null),
        (Method::PATCH, format!("/api/v1/providers/{}", b.provider), json!({"name": "stolen"})),
        (Method::DELETE, format!("/api/v1/providers/{}", b.provider), Value::Null),
        (Method::GET, format!("/api/v1/delivery-groups/{}", b.group), Value::Null),
        (Method::PATCH, format!("/api/v1/delivery-groups/{}", b.group), json!({"name": "stolen"})),
        (Method::DELETE, format!("/api/v1/delivery-groups/{}", b.group), Value::Null),
        (Method::GET, format!("/api/v1/mailboxes/{}", b.mailbox), Value::Null),
        (Method::PATCH, format!("/api/v1/mailboxes/{}", b.mailbox), json!({"name": "stolen"})),
        (Method::PATCH, format!("/api/v1/mailboxes/{}/settings", b.mailbox), json!({"spam_threshold": 99})),
        (Method::DELETE, format!("/api/v1/mailboxes/{}", b.mailbox), Value::Null),
        (Method::PATCH, format!("/api/v1/team/members/{}", b.member.user_id), json!({"role": "admin"})),
        (Method::DELETE, format!("/api/v1/team/members/{}", b.member.user_id), Value::Null),
        (Method::DELETE, format!("/api/v1/team/invitations/{}", b.invitation), Value::Null),
    ]
}

/// Routes an infrastructure key may call at all (the others are for people).
fn key_may_call(path: &str) -> bool {
    !path.starts_with("/api/v1/team")
}

#[tokio::test]
async fn another_teams_resources_are_not_found_on_every_route() {
    let app = TestApp::spawn().await;
    let a = tenant(&app, "alpha").await;
    let b = tenant(&app, "bravo").await;
    let before: Vec<String> = {
        let mut v = Vec::new();
        for path in [
            "/api/v1/keys",
            "/api/v1/providers",
            "/api/v1/delivery-groups",
            "/api/v1/mailboxes",
            "/api/v1/team/members",
            "/api/v1/team/invitations",
            "/api/v1/team",
        ] {
            v.push(expect_status(app.get(path, &b.owner.token).await, StatusCode::OK).await.to_string());
        }
        v
    };

    for (method, path, body) in routes(&b) {
        let mut creds = vec![("owner session", a.owner.token.as_str())];
        // A member reads everything of the team (and is refused every write whatever the id).
        if method == Method::GET {
            creds.push(("member session", a.member.token.as_str()));
        }
        if key_may_call(&path) {
            creds.push(("infrastructure key", a.infra.as_str()));
        }
        for (who, token) in creds {
            let mut req = app.req(method.clone(), &path, token);
            if !body.is_null() {
                req = req.json(&body);
            }
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), StatusCode::NOT_FOUND, "A's {who}: {method} {path}");
            expect_error(res, StatusCode::NOT_FOUND, "not_found").await;
        }
    }

    // Naming B's team in the header is as unknown as a team that does not exist.
    let res = app
        .req(Method::GET, "/api/v1/keys", &a.owner.token)
        .header("X-Sendmux-Team", &b.owner.team_id)
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::NOT_FOUND, "not_found").await;
    // A key is of one team: naming another in the header finds nothing.
    let res =
        app.req(Method::GET, "/api/v1/keys", &a.infra).header("X-Sendmux-Team", &b.owner.team_id).send().await.unwrap();
    expect_error(res, StatusCode::NOT_FOUND, "not_found").await;
    let res =
        app.req(Method::GET, "/api/v1/keys", &a.infra).header("X-Sendmux-Team", &a.owner.team_id).send().await.unwrap();
    expect_status(res, StatusCode::OK).await;
    // A's mailbox key reaches its own mailbox only.
    let mine = expect_status(app.get("/api/v1/mailbox", &a.mailbox_key).await, StatusCode::OK).await;
    assert_eq!(mine["id"], a.mailbox);
    // Scoping a key to B's mailbox or group is refused like a missing one.
    let res =
        app.post("/api/v1/keys", &a.infra, json!({"name": "x", "kind": "mailbox", "mailbox_id": b.mailbox})).await;
    assert_eq!(expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await["param"], "mailbox_id");
    let res =
        app.post("/api/v1/keys", &a.infra, json!({"name": "x", "kind": "sending", "delivery_group_id": b.group})).await;
    assert_eq!(
        expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await["param"],
        "delivery_group_id"
    );
    let res = app
        .post(
            "/api/v1/delivery-groups",
            &a.infra,
            json!({"name": "x", "strategy": "failover", "members": [{"provider_id": b.provider}]}),
        )
        .await;
    assert_eq!(
        expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await["param"],
        "members[0].provider_id"
    );
    let res = app.post("/api/v1/team/transfer", &a.owner.token, json!({"user_id": b.member.user_id})).await;
    expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await;

    // Nothing of B in A's lists.
    let b_ids = [
        &b.owner.team_id,
        &b.owner.user_id,
        &b.member.user_id,
        &b.mailbox,
        &b.provider,
        &b.group,
        &b.key,
        &b.invitation,
    ];
    for path in [
        "/api/v1/keys",
        "/api/v1/providers",
        "/api/v1/delivery-groups",
        "/api/v1/mailboxes",
        "/api/v1/team/members",
        "/api/v1/team/invitations",
        "/api/v1/logs",
        "/api/v1/limits",
        "/api/v1/limits/increase-requests",
    ] {
        let body = expect_status(app.get(path, &a.owner.token).await, StatusCode::OK).await.to_string();
        assert!(!body.contains("bravo"), "{path} shows B: {body}");
        for id in b_ids {
            assert!(!body.contains(id.as_str()), "{path} shows {id}");
        }
    }

    // And B is exactly as it was.
    let mut after = Vec::new();
    for path in [
        "/api/v1/keys",
        "/api/v1/providers",
        "/api/v1/delivery-groups",
        "/api/v1/mailboxes",
        "/api/v1/team/members",
        "/api/v1/team/invitations",
        "/api/v1/team",
    ] {
        after.push(expect_status(app.get(path, &b.owner.token).await, StatusCode::OK).await.to_string());
    }
    assert_eq!(before, after);
}
