//! Signed webhooks: endpoints, signatures third-party verifiers accept, retries with the
//! same event id and bytes, restarts, replay, the address guard, disabling.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

const LOOPBACK_OK: (&str, &str) = ("SENDMUX_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128");
const FAST_RETRIES: (&str, &str) = ("SENDMUX_WEBHOOK_RETRY_SCHEDULE", "0.2,0.2,0.2,0.2,0.2,0.2,0.2");

async fn webhook(app: &TestApp, token: &str, url: &str, types: &[&str]) -> Value {
    let res = app.post("/api/v1/webhooks", token, json!({"url": url, "event_types": types})).await;
    expect_status(res, StatusCode::CREATED).await
}

/// Runs the product page's snippet and the `standardwebhooks` package on a delivery.
fn verify_with_node(secret: &str, hit: &Hit) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("delivery.json");
    std::fs::write(&file, json!({"secret": secret, "body": hit.body, "headers": hit.headers}).to_string()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js/verify.mjs");
    let out = std::process::Command::new("node").arg(script).arg(&file).output().expect("node is installed");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn a_delivery_is_signed_so_stock_verifiers_accept_it() {
    let app = TestApp::spawn_with(&[LOOPBACK_OK]).await;
    let owner = app.signup("o@wh.test", "WH").await;
    let mbx = app.create_mailbox(&owner.token, "wh@localhost").await;
    let receiver = Receiver::start(vec![]).await;
    let hook = webhook(&app, &owner.token, &receiver.url, &["message.received"]).await;
    let secret = hook["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"));
    assert!(hook["id"].as_str().unwrap().starts_with("whk_"));

    let event_id =
        emit(&app, &owner.team_id, mbx["id"].as_str(), "message.received", json!({"subject": "héllo ✓"})).await;
    emit(&app, &owner.team_id, mbx["id"].as_str(), "message.sent", json!({})).await;
    let hit = receiver.wait_for(1).await.remove(0);
    assert_eq!(hit.headers["x-sendmux-event-id"], event_id);
    assert_eq!(hit.headers["x-sendmux-event-type"], "message.received");
    assert_eq!(hit.headers["webhook-id"], event_id);
    let body: Value = serde_json::from_str(&hit.body).unwrap();
    assert_eq!(body["id"], event_id);
    assert_eq!(body["data"]["subject"], "héllo ✓");
    let ts: i64 = hit.headers["webhook-timestamp"].parse().unwrap();
    assert!((ts - chrono::Utc::now().timestamp()).abs() < 60);
    // The signature is computed exactly as API.md §8 says...
    use hmac::{Mac, digest::KeyInit};
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(hit.body.as_bytes());
    assert_eq!(hit.headers["x-sendmux-signature"], format!("sha256={}", hex::encode(mac.finalize().into_bytes())));
    // ...and the product page's snippet and the Standard Webhooks library accept it.
    assert_eq!(verify_with_node(secret, &hit), json!({"sendmux": true, "standard": true}));
    // A wrong secret is refused by both.
    let other = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    assert_eq!(verify_with_node(other, &hit), json!({"sendmux": false, "standard": false}));
    // Only the subscribed type was sent.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.hits().len(), 1);
}

#[tokio::test]
async fn failed_attempts_retry_with_the_same_event_and_bytes_and_survive_a_restart() {
    let app = TestApp::spawn_with(&[LOOPBACK_OK, FAST_RETRIES]).await;
    let owner = app.signup("o@retry.test", "Retry").await;
    let receiver = Receiver::start(vec![500, 503]).await;
    let hook = webhook(&app, &owner.token, &receiver.url, &["message.delivered"]).await;
    let hook_id = hook["id"].as_str().unwrap().to_owned();
    let event_id = emit(&app, &owner.team_id, None, "message.delivered", json!({"n": 1})).await;
    let hits = receiver.wait_for(3).await;
    assert!(hits.iter().all(|h| h.headers["x-sendmux-event-id"] == event_id));
    assert!(hits.iter().all(|h| h.body == hits[0].body), "identical bytes on every attempt");
    let path = format!("/api/v1/webhooks/{hook_id}/deliveries");
    let list = wait_for_value("the success is recorded", Duration::from_secs(10), || async {
        let list = expect_status(app.get(&path, &owner.token).await, StatusCode::OK).await;
        (list["data"][0]["status"] == "succeeded").then_some(list)
    })
    .await;
    let codes: Vec<i64> =
        list["data"][0]["attempts"].as_array().unwrap().iter().map(|a| a["status_code"].as_i64().unwrap()).collect();
    assert_eq!(codes, [500, 503, 200]);
    assert_eq!(list["data"][0]["attempts"][0]["response"], "answer 500");
    assert!(list["data"][0]["attempts"][0]["error"].as_str().unwrap().contains("500"));

    // A receiver that is down while the server restarts still gets the event after.
    let down = Receiver::start(vec![500]).await;
    let res = app.patch(&format!("/api/v1/webhooks/{hook_id}"), &owner.token, json!({"url": down.url})).await;
    expect_status(res, StatusCode::OK).await;
    let second = emit(&app, &owner.team_id, None, "message.delivered", json!({"n": 2})).await;
    down.wait_for(1).await;
    let app = app.restart().await;
    let hits = down.wait_for(2).await;
    assert_eq!(hits[1].headers["x-sendmux-event-id"], second);
    assert_eq!(hits[1].body, hits[0].body);
    // The receiver has its answer before the worker records it: wait for the record.
    let succeeded = wait_for_value("both successes are recorded", Duration::from_secs(10), || async {
        let ok = app.get(&format!("{path}?status=succeeded"), &owner.token).await;
        let n = expect_status(ok, StatusCode::OK).await["data"].as_array().unwrap().len();
        (n >= 2).then_some(n)
    })
    .await;
    assert_eq!(succeeded, 2);
}

#[tokio::test]
async fn replay_sends_again_and_410_disables() {
    let app = TestApp::spawn_with(&[LOOPBACK_OK, FAST_RETRIES]).await;
    let owner = app.signup("o@replay.test", "Replay").await;
    let receiver = Receiver::start(vec![]).await;
    let hook = webhook(&app, &owner.token, &receiver.url, &["message.sent"]).await;
    let id = hook["id"].as_str().unwrap().to_owned();
    let since = chrono::Utc::now().to_rfc3339();
    let e1 = emit(&app, &owner.team_id, None, "message.sent", json!({"n": 1})).await;
    emit(&app, &owner.team_id, None, "message.sent", json!({"n": 2})).await;
    receiver.wait_for(2).await;
    let list =
        expect_status(app.get(&format!("/api/v1/webhooks/{id}/deliveries"), &owner.token).await, StatusCode::OK).await;
    let first = list["data"].as_array().unwrap().iter().find(|d| d["event_id"] == e1.as_str()).unwrap().clone();
    let res = app
        .post(
            &format!("/api/v1/webhooks/{id}/deliveries/{}/replay", first["id"].as_str().unwrap()),
            &owner.token,
            json!({}),
        )
        .await;
    let again = expect_status(res, StatusCode::ACCEPTED).await;
    assert_ne!(again["id"], first["id"]);
    let hits = receiver.wait_for(3).await;
    assert_eq!(hits[2].headers["x-sendmux-event-id"], e1);
    // The two first deliveries went out concurrently: find e1's by its id.
    let original = hits[..2].iter().find(|h| h.headers["x-sendmux-event-id"] == e1).unwrap();
    assert_eq!(hits[2].body, original.body);
    let res = app.post(&format!("/api/v1/webhooks/{id}/replay"), &owner.token, json!({"since": since})).await;
    assert_eq!(expect_status(res, StatusCode::ACCEPTED).await["replayed"], 2);
    receiver.wait_for(5).await;
    let res = app
        .post(&format!("/api/v1/webhooks/{id}/replay"), &owner.token, json!({"since": since, "only_failed": true}))
        .await;
    assert_eq!(expect_status(res, StatusCode::ACCEPTED).await["replayed"], 0);
    let res = app.post(&format!("/api/v1/webhooks/{id}/replay"), &owner.token, json!({"since": "yesterday"})).await;
    assert_eq!(expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await["param"], "since");

    // 410 Gone: the endpoint is disabled and the team sees why.
    let gone = Receiver::start(vec![410]).await;
    let hook = webhook(&app, &owner.token, &gone.url, &["message.failed"]).await;
    emit(&app, &owner.team_id, None, "message.failed", json!({})).await;
    gone.wait_for(1).await;
    let path = format!("/api/v1/webhooks/{}", hook["id"].as_str().unwrap());
    eventually("the webhook is disabled", Duration::from_secs(10), || async {
        let w = expect_status(app.get(&path, &owner.token).await, StatusCode::OK).await;
        w["enabled"] == false && w["disabled_reason"].as_str().is_some_and(|r| r.contains("410"))
    })
    .await;
    emit(&app, &owner.team_id, None, "message.failed", json!({})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(gone.hits().len(), 1, "nothing more goes to a disabled endpoint");
}

#[tokio::test]
async fn private_addresses_are_refused_and_never_contacted() {
    let app = TestApp::spawn_with(&[FAST_RETRIES]).await;
    let owner = app.signup("o@guard.test", "Guard").await;
    let receiver = Receiver::start(vec![]).await;
    let port = receiver.url.split(':').nth(2).unwrap().split('/').next().unwrap().to_owned();
    let urls = [
        receiver.url.clone(),
        format!("http://localhost:{port}/hook"),
        format!("http://[::1]:{port}/hook"),
        format!("http://[::ffff:127.0.0.1]:{port}/hook"),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "http://10.0.0.1/hook".to_owned(),
        "http://192.168.1.10/hook".to_owned(),
        "http://[fe80::1]/hook".to_owned(),
    ];
    let mut ids = Vec::new();
    for url in &urls {
        ids.push(webhook(&app, &owner.token, url, &["message.sent"]).await["id"].as_str().unwrap().to_owned());
    }
    emit(&app, &owner.team_id, None, "message.sent", json!({})).await;
    for (url, id) in urls.iter().zip(&ids) {
        let path = format!("/api/v1/webhooks/{id}/deliveries");
        let list = wait_for_value(&format!("an attempt to {url}"), Duration::from_secs(15), || async {
            let list = expect_status(app.get(&path, &owner.token).await, StatusCode::OK).await;
            list["data"][0]["attempts"].as_array().is_some_and(|a| !a.is_empty()).then_some(list)
        })
        .await;
        let attempt = &list["data"][0]["attempts"][0];
        assert!(attempt["status_code"].is_null(), "{url}: {attempt}");
        assert!(attempt["error"].as_str().unwrap().contains("refused"), "{url}: {attempt}");
    }
    assert!(receiver.hits().is_empty(), "the guard never let a request through");
}

#[tokio::test]
async fn endpoints_are_validated_limited_and_rotated_with_grace() {
    let app = TestApp::spawn_with(&[LOOPBACK_OK]).await;
    let owner = app.signup("o@crud.test", "CRUD").await;
    let other = app.signup("o@other.test", "Other").await;
    let theirs = app.create_mailbox(&other.token, "theirs@localhost").await;
    for (body, param) in [
        (json!({"url": "ftp://x.test/", "event_types": ["message.sent"]}), "url"),
        (json!({"url": "https://u:p@x.test/", "event_types": ["message.sent"]}), "url"),
        (json!({"url": "https://x.test/", "event_types": []}), "event_types"),
        (json!({"url": "https://x.test/", "event_types": ["message.sent", "message.exploded"]}), "event_types[1]"),
        (
            json!({"url": "https://x.test/", "event_types": ["message.sent"], "mailbox_ids": [theirs["id"]]}),
            "mailbox_ids[0]",
        ),
    ] {
        let res = app.post("/api/v1/webhooks", &owner.token, body).await;
        assert_eq!(expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await["param"], param);
    }
    let receiver = Receiver::start(vec![]).await;
    let hook = webhook(&app, &owner.token, &receiver.url, &["message.sent"]).await;
    for i in 1..10 {
        webhook(&app, &owner.token, &format!("https://hooks{i}.example/"), &["message.sent"]).await;
    }
    let res = app
        .post(
            "/api/v1/webhooks",
            &owner.token,
            json!({"url": "https://eleventh.example/", "event_types": ["message.sent"]}),
        )
        .await;
    expect_error(res, StatusCode::CONFLICT, "limit_exceeded").await;
    let listed = expect_status(app.get("/api/v1/webhooks?limit=100", &owner.token).await, StatusCode::OK).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 10);
    assert!(!listed.to_string().contains("whsec_"), "secrets are shown once");

    // Rotation with a grace: both secrets sign; the new one signs X-Sendmux-Signature.
    let old = hook["secret"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/webhooks/{}", hook["id"].as_str().unwrap());
    let rotated = expect_status(
        app.post(&format!("{path}/rotate-secret"), &owner.token, json!({"grace_seconds": 3600})).await,
        StatusCode::OK,
    )
    .await;
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(old, new);
    let test =
        expect_status(app.post(&format!("{path}/test"), &owner.token, json!({})).await, StatusCode::ACCEPTED).await;
    assert_eq!(test["event_type"], "webhook.test");
    let hit = receiver.wait_for(1).await.remove(0);
    assert_eq!(hit.headers["webhook-signature"].split(' ').count(), 2);
    assert_eq!(verify_with_node(&new, &hit), json!({"sendmux": true, "standard": true}));
    assert_eq!(verify_with_node(&old, &hit), json!({"sendmux": false, "standard": true}));
    // Without grace the old secret stops signing at once.
    let res = app.post(&format!("{path}/rotate-secret"), &owner.token, json!({"grace_seconds": 0})).await;
    let newest = expect_status(res, StatusCode::OK).await["secret"].as_str().unwrap().to_owned();
    expect_status(app.post(&format!("{path}/test"), &owner.token, json!({})).await, StatusCode::ACCEPTED).await;
    let hit = receiver.wait_for(2).await.remove(1);
    assert_eq!(hit.headers["webhook-signature"].split(' ').count(), 1);
    assert_eq!(verify_with_node(&newest, &hit), json!({"sendmux": true, "standard": true}));
    assert_eq!(verify_with_node(&new, &hit)["standard"], false);

    // Another team sees none of it.
    expect_error(app.get(&path, &other.token).await, StatusCode::NOT_FOUND, "not_found").await;
    expect_error(app.get(&format!("{path}/deliveries"), &other.token).await, StatusCode::NOT_FOUND, "not_found").await;
    expect_error(app.post(&format!("{path}/test"), &other.token, json!({})).await, StatusCode::NOT_FOUND, "not_found")
        .await;
}

#[tokio::test]
async fn a_webhook_failing_for_five_days_is_disabled_and_old_payloads_are_purged() {
    let app = TestApp::spawn_with(&[LOOPBACK_OK, FAST_RETRIES]).await;
    let owner = app.signup("o@five.test", "Five").await;
    let receiver = Receiver::start(vec![500, 500, 500]).await;
    let hook = webhook(&app, &owner.token, &receiver.url, &["message.bounced"]).await;
    let id = hook["id"].as_str().unwrap().to_owned();
    emit(&app, &owner.team_id, None, "message.bounced", json!({})).await;
    receiver.wait_for(1).await;
    let six_days_ago = sendmux::store::now_ms() - 6 * 24 * 3_600_000;
    eventually("the failure is noted", Duration::from_secs(10), || async {
        let w = expect_status(app.get(&format!("/api/v1/webhooks/{id}"), &owner.token).await, StatusCode::OK).await;
        w["failing_since"].is_string()
    })
    .await;
    sqlx::query("UPDATE webhooks SET failing_since = $1 WHERE id = $2")
        .bind(six_days_ago)
        .bind(&id)
        .execute(app.state.store.pool())
        .await
        .unwrap();
    receiver.wait_for(2).await;
    eventually("the webhook is disabled", Duration::from_secs(10), || async {
        let w = expect_status(app.get(&format!("/api/v1/webhooks/{id}"), &owner.token).await, StatusCode::OK).await;
        w["enabled"] == false && w["disabled_reason"].as_str().is_some_and(|r| r.contains("5 days"))
    })
    .await;

    // Payloads go after 7 days; the records stay and cannot be replayed.
    let eight_days_ago = sendmux::store::now_ms() - 8 * 24 * 3_600_000;
    sqlx::query("UPDATE webhook_deliveries SET created_at = $1 WHERE webhook_id = $2")
        .bind(eight_days_ago)
        .bind(&id)
        .execute(app.state.store.pool())
        .await
        .unwrap();
    sendmux::jobs::maintenance_once(&app.state.storage()).await.unwrap();
    let list =
        expect_status(app.get(&format!("/api/v1/webhooks/{id}/deliveries"), &owner.token).await, StatusCode::OK).await;
    let d = &list["data"][0];
    assert_eq!(d["payload_available"], false);
    assert!(d["attempts"].as_array().unwrap().len() >= 2);
    let res = app
        .post(
            &format!("/api/v1/webhooks/{id}/deliveries/{}/replay", d["id"].as_str().unwrap()),
            &owner.token,
            json!({}),
        )
        .await;
    expect_error(res, StatusCode::CONFLICT, "conflict").await;
}
