//! The role → permission matrix of API.md §2, action by action.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

struct Team {
    owner: Person,
    admin: Person,
    developer: Person,
    member: Person,
    mailbox_id: String,
    provider_id: String,
}

async fn team(app: &TestApp) -> Team {
    let owner = app.signup("owner@acme.test", "Acme").await;
    let admin = app.add_member(&owner, "admin@acme.test", "admin").await;
    let developer = app.add_member(&owner, "dev@acme.test", "developer").await;
    let member = app.add_member(&owner, "member@acme.test", "member").await;
    let mailbox_id = app.create_mailbox(&owner.token, "roles@localhost").await["id"].as_str().unwrap().to_owned();
    let provider_id = app.create_smtp_provider(&owner.token, "relay").await["id"].as_str().unwrap().to_owned();
    Team { owner, admin, developer, member, mailbox_id, provider_id }
}

/// (method, path, body, lowest role allowed, status when allowed). A denied role must
/// get 403.
fn actions(t: &Team, n: usize) -> Vec<(Method, String, Value, &'static str, u16)> {
    vec![
        (Method::GET, "/api/v1/team".into(), Value::Null, "member", 200),
        (Method::GET, "/api/v1/team/members".into(), Value::Null, "member", 200),
        (Method::GET, "/api/v1/team/invitations".into(), Value::Null, "member", 200),
        (Method::GET, "/api/v1/providers".into(), Value::Null, "member", 200),
        (Method::GET, format!("/api/v1/providers/{}", t.provider_id), Value::Null, "member", 200),
        (Method::GET, "/api/v1/delivery-groups".into(), Value::Null, "member", 200),
        (Method::GET, "/api/v1/mailboxes".into(), Value::Null, "member", 200),
        (Method::GET, format!("/api/v1/mailboxes/{}", t.mailbox_id), Value::Null, "member", 200),
        (Method::GET, "/api/v1/keys".into(), Value::Null, "member", 200),
        (Method::GET, "/api/v1/limits".into(), Value::Null, "member", 200),
        (
            Method::POST,
            "/api/v1/keys".into(),
            json!({"name": format!("k{n}"), "kind": "infrastructure"}),
            "developer",
            201,
        ),
        (Method::GET, "/api/v1/logs?kind=audit".into(), Value::Null, "developer", 200),
        (Method::PATCH, "/api/v1/team".into(), json!({"name": "Acme Inc"}), "admin", 200),
        (
            Method::POST,
            "/api/v1/team/invitations".into(),
            json!({"email": format!("new{n}@acme.test"), "role": "member"}),
            "admin",
            201,
        ),
        (
            Method::POST,
            "/api/v1/providers".into(),
            json!({"name": format!("p{n}"), "type": "smtp", "config": {"host": "smtp.example.com", "port": 587}}),
            "admin",
            201,
        ),
        (
            Method::PATCH,
            format!("/api/v1/providers/{}", t.provider_id),
            json!({"name": format!("relay{n}")}),
            "admin",
            200,
        ),
        (
            Method::POST,
            "/api/v1/delivery-groups".into(),
            json!({"name": "g", "strategy": "failover", "members": [{"provider_id": t.provider_id}]}),
            "admin",
            201,
        ),
        (Method::POST, "/api/v1/mailboxes".into(), json!({"address": format!("box{n}@localhost")}), "admin", 201),
        (
            Method::PATCH,
            format!("/api/v1/mailboxes/{}/settings", t.mailbox_id),
            json!({"spam_threshold": 6.5}),
            "admin",
            200,
        ),
        (
            Method::POST,
            "/api/v1/limits/mailboxes/increase-requests".into(),
            json!({"requested": 5000, "reason": "growth"}),
            "admin",
            409,
        ),
        (
            Method::POST,
            "/api/v1/team/transfer".into(),
            json!({"user_id": "usr_01J1M9C3K8ZQ4W8N5T2V7X6Y3B"}),
            "owner",
            422,
        ),
    ]
}

fn rank(role: &str) -> u8 {
    match role {
        "member" => 0,
        "developer" => 1,
        "admin" => 2,
        "owner" => 3,
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn each_role_is_allowed_or_denied_action_by_action() {
    let app = TestApp::spawn().await;
    let t = team(&app).await;
    let people = [("member", &t.member), ("developer", &t.developer), ("admin", &t.admin), ("owner", &t.owner)];
    let mut n = 0;
    for (role, person) in people {
        for (method, path, body, lowest, expected) in actions(&t, n) {
            n += 1;
            let mut req = app.req(method.clone(), &path, &person.token);
            if !body.is_null() {
                req = req.json(&body);
            }
            let res = req.send().await.unwrap();
            let status = res.status();
            let text = res.text().await.unwrap();
            if rank(role) >= rank(lowest) {
                assert_eq!(status.as_u16(), expected, "{role} should be allowed {method} {path}: {text}");
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{role} should be denied {method} {path}: {text}");
                let err: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(err["error"]["type"], "permission_denied");
            }
        }
    }
}

#[tokio::test]
async fn only_the_owner_deletes_the_team_and_it_takes_everything_with_it() {
    let app = TestApp::spawn().await;
    let t = team(&app).await;
    let key = app.create_key(&t.owner.token, json!({"name": "k", "kind": "infrastructure"})).await;
    let report = app.send_smtp("ann@example.org", &["roles@localhost"], b"Subject: kept?\r\n\r\nbody\r\n").await;
    assert_eq!(report["data"][0], 250, "{report}");
    let bodies = || walk(&app.dir.path().join("blobs"));
    assert_eq!(bodies().len(), 1, "the message body is on disk");
    for p in [&t.member, &t.developer, &t.admin] {
        expect_error(app.delete("/api/v1/team", &p.token).await, StatusCode::FORBIDDEN, "permission_denied").await;
    }
    expect_status(app.delete("/api/v1/team", &t.owner.token).await, StatusCode::NO_CONTENT).await;
    for table in [
        "SELECT COUNT(*) FROM teams WHERE id = $1",
        "SELECT COUNT(*) FROM memberships WHERE team_id = $1",
        "SELECT COUNT(*) FROM api_keys WHERE team_id = $1",
        "SELECT COUNT(*) FROM mailboxes WHERE team_id = $1",
        "SELECT COUNT(*) FROM providers WHERE team_id = $1",
        "SELECT COUNT(*) FROM invitations WHERE team_id = $1",
        "SELECT COUNT(*) FROM audit_log WHERE team_id = $1",
        "SELECT COUNT(*) FROM inbound_messages WHERE team_id = $1",
        "SELECT COUNT(*) FROM events WHERE team_id = $1",
        "SELECT COUNT(*) FROM usage_records WHERE team_id = $1",
    ] {
        assert_eq!(app.count(table, &t.owner.team_id).await, 0, "{table}");
    }
    assert!(bodies().is_empty(), "message bodies went with the team");
    // Its key stops working; its people keep their accounts but have no team.
    let res = app.get("/api/v1/keys", key["key"].as_str().unwrap()).await;
    expect_error(res, StatusCode::UNAUTHORIZED, "authentication_failed").await;
    expect_error(app.get("/api/v1/team", &t.admin.token).await, StatusCode::FORBIDDEN, "permission_denied").await;
}

#[tokio::test]
async fn ownership_moves_by_transfer_only() {
    let app = TestApp::spawn().await;
    let t = team(&app).await;
    let res =
        app.patch(&format!("/api/v1/team/members/{}", t.admin.user_id), &t.owner.token, json!({"role": "owner"})).await;
    expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await;
    let res = app
        .patch(&format!("/api/v1/team/members/{}", t.owner.user_id), &t.admin.token, json!({"role": "member"}))
        .await;
    expect_error(res, StatusCode::FORBIDDEN, "permission_denied").await;
    expect_error(
        app.delete(&format!("/api/v1/team/members/{}", t.owner.user_id), &t.admin.token).await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;

    let res = app.post("/api/v1/team/transfer", &t.owner.token, json!({"user_id": t.developer.user_id})).await;
    assert_eq!(expect_status(res, StatusCode::OK).await["role"], "owner");
    let members = expect_status(app.get("/api/v1/team/members", &t.member.token).await, StatusCode::OK).await;
    let role_of =
        |id: &str| members["data"].as_array().unwrap().iter().find(|m| m["user_id"] == id).unwrap()["role"].clone();
    assert_eq!(role_of(&t.developer.user_id), "owner");
    assert_eq!(role_of(&t.owner.user_id), "admin");
    // The old owner lost the owner's powers at once, the new one has them.
    expect_error(app.delete("/api/v1/team", &t.owner.token).await, StatusCode::FORBIDDEN, "permission_denied").await;
    let res = app.post("/api/v1/team/transfer", &t.developer.token, json!({"user_id": t.owner.user_id})).await;
    expect_status(res, StatusCode::OK).await;
}

#[tokio::test]
async fn a_transfer_racing_a_removal_leaves_exactly_one_owner() {
    let app = TestApp::spawn().await;
    let t = team(&app).await;
    let mut owner = t.owner.clone();
    for round in 0..4 {
        let heir = app.add_member(&owner, &format!("heir{round}@acme.test"), "developer").await;
        let transfer = app.post("/api/v1/team/transfer", &owner.token, json!({"user_id": heir.user_id}));
        let removal_path = format!("/api/v1/team/members/{}", heir.user_id);
        let removal = app.delete(&removal_path, &t.admin.token);
        let (transfer, removal) = tokio::join!(transfer, removal);
        let members =
            expect_status(app.get("/api/v1/team/members?limit=100", &t.member.token).await, StatusCode::OK).await;
        let owners: Vec<&serde_json::Value> =
            members["data"].as_array().unwrap().iter().filter(|m| m["role"] == "owner").collect();
        assert_eq!(
            owners.len(),
            1,
            "round {round}: transfer {} removal {}: {members}",
            transfer.status(),
            removal.status()
        );
        if owners[0]["user_id"] == heir.user_id.as_str() {
            assert_eq!(transfer.status(), StatusCode::OK);
            assert_eq!(removal.status(), StatusCode::CONFLICT, "the new owner cannot be removed");
            owner = heir;
        } else {
            assert_eq!(owners[0]["user_id"], owner.user_id.as_str());
            assert_eq!(removal.status(), StatusCode::NO_CONTENT);
        }
    }
}

/// Every file below `dir` (none when it does not exist).
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() { out.extend(walk(&path)) } else { out.push(path) }
    }
    out
}

/// API.md §2: a member sees the metadata of messages, never their content (bodies,
/// headers, raw MIME, attachments); developers and up read everything.
#[tokio::test]
async fn members_see_message_metadata_but_never_content() {
    let app = TestApp::spawn().await;
    let t = team(&app).await;
    let raw = concat!(
        "From: Service <noreply@service.test>\r\n",
        "To: roles@localhost\r\n",
        "Subject: Your reset code\r\n",
        "Message-ID: <reset-1@service.test>\r\n",
        "X-Reset-Code: 918273\r\n",
        "MIME-Version: 1.0\r\n",
        "Content-Type: multipart/mixed; boundary=\"b\"\r\n",
        "\r\n",
        "--b\r\n",
        "Content-Type: text/plain\r\n",
        "\r\n",
        "Your password reset code is 918273.\r\n",
        "--b\r\n",
        "Content-Type: text/plain; name=\"code.txt\"\r\n",
        "Content-Disposition: attachment; filename=\"code.txt\"\r\n",
        "\r\n",
        "code 918273\r\n",
        "--b--\r\n",
    );
    let created = app
        .req(Method::POST, &format!("/api/v1/mailboxes/{}/messages", t.mailbox_id), &t.owner.token)
        .header("content-type", "message/rfc822")
        .body(raw)
        .send()
        .await
        .unwrap();
    let id = expect_status(created, StatusCode::CREATED).await["id"].as_str().unwrap().to_owned();
    let base = format!("/api/v1/mailboxes/{}/messages", t.mailbox_id);

    let list = expect_status(app.get(&base, &t.member.token).await, StatusCode::OK).await;
    assert_eq!(list["data"][0]["subject"], "Your reset code");
    assert!(!list.to_string().contains("918273"), "{list}");
    let one = expect_status(app.get(&format!("{base}/{id}"), &t.member.token).await, StatusCode::OK).await;
    assert_eq!(one["subject"], "Your reset code");
    assert_eq!(one["attachments"][0]["filename"], "code.txt", "attachment metadata is shown: {one}");
    assert!(!one.to_string().contains("918273"), "a member read content: {one}");
    for path in [format!("{base}/{id}/raw"), format!("{base}/{id}/attachments/0")] {
        expect_error(app.get(&path, &t.member.token).await, StatusCode::FORBIDDEN, "permission_denied").await;
    }

    for person in [&t.developer, &t.admin, &t.owner] {
        let one = expect_status(app.get(&format!("{base}/{id}"), &person.token).await, StatusCode::OK).await;
        assert!(one["text"].as_str().unwrap().contains("918273"), "{one}");
        let res = app.get(&format!("{base}/{id}/raw"), &person.token).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.bytes().await.unwrap(), raw.as_bytes());
        let res = app.get(&format!("{base}/{id}/attachments/0"), &person.token).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(String::from_utf8_lossy(&res.bytes().await.unwrap()).contains("918273"));
    }
}
