//! Every change through the API leaves an audit entry with actor, action, target, time
//! and source IP; a refused change leaves none.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn changes_by_people_and_keys_are_audited() {
    let app = TestApp::spawn().await;
    let owner = app.signup("o@audit.test", "Audit").await;
    let infra = app.create_key(&owner.token, json!({"name": "ops", "kind": "infrastructure", "permissions": ["providers.manage", "mailboxes.manage", "keys.manage", "logs.read"]})).await;
    let key_id = infra["id"].as_str().unwrap();
    let secret = infra["key"].as_str().unwrap();
    let provider = app.create_smtp_provider(secret, "relay").await;
    let pid = provider["id"].as_str().unwrap();
    expect_status(
        app.patch(&format!("/api/v1/providers/{pid}"), secret, json!({"name": "relay 2"})).await,
        StatusCode::OK,
    )
    .await;
    let mbx = app.create_mailbox(secret, "audit@localhost").await;
    let mbk = app.create_key(secret, json!({"name": "reader", "kind": "mailbox", "mailbox_id": mbx["id"]})).await;
    expect_status(app.delete(&format!("/api/v1/keys/{}", mbk["id"].as_str().unwrap()), secret).await, StatusCode::OK)
        .await;
    expect_status(
        app.post("/api/v1/team/invitations", &owner.token, json!({"email": "x@audit.test", "role": "developer"})).await,
        StatusCode::CREATED,
    )
    .await;
    // A refused change leaves no entry.
    expect_error(
        app.post("/api/v1/mailboxes", secret, json!({"address": "audit@localhost"})).await,
        StatusCode::CONFLICT,
        "conflict",
    )
    .await;

    let logs = expect_status(app.get("/api/v1/logs?kind=audit&limit=100", secret).await, StatusCode::OK).await;
    let entries = logs["data"].as_array().unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "member.invited",
            "key.revoked",
            "key.created",
            "mailbox.created",
            "provider.updated",
            "provider.created",
            "key.created",
            "team.created"
        ],
        "newest first"
    );
    let find = |action: &str| -> &Value { entries.iter().find(|e| e["action"] == action).unwrap() };
    let by_key = find("provider.updated");
    assert_eq!(by_key["actor"], json!({"type": "key", "id": key_id}));
    assert_eq!(by_key["target"], json!({"type": "provider", "id": pid}));
    assert_eq!(by_key["source_ip"], "127.0.0.1");
    let by_user = find("member.invited");
    assert_eq!(by_user["actor"], json!({"type": "user", "id": owner.user_id}));
    assert_eq!(by_user["target"]["type"], "invitation");
    assert_eq!(find("key.revoked")["target"]["id"], mbk["id"]);
    for e in entries {
        assert!(e["id"].as_str().unwrap().starts_with("aud_"));
        assert!(chrono::DateTime::parse_from_rfc3339(e["created_at"].as_str().unwrap()).is_ok());
    }
    // Paging walks the same list.
    let page = expect_status(app.get("/api/v1/logs?limit=3", secret).await, StatusCode::OK).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 3);
    let cursor = page["next_cursor"].as_str().unwrap();
    let next =
        expect_status(app.get(&format!("/api/v1/logs?limit=3&cursor={cursor}"), secret).await, StatusCode::OK).await;
    assert_eq!(next["data"][0]["action"], "mailbox.created");
}
