//! The send API's contract: validation naming the field, size limit, batches,
//! idempotency (replay, conflict, concurrency), what a sending key can reach, its rate
//! limit.

use crate::helpers::*;
use crate::mail_servers::closed_port;
use crate::outbound::{email, group, send, sending_key, simple, smtp_provider, smtp_sender};
use reqwest::StatusCode;
use serde_json::{Value, json};

const NO_WORKERS: (&str, &str) = ("SENDMUX_OUTBOUND_WORKERS", "0");

async fn messages(app: &TestApp, team: &str) -> i64 {
    app.count("SELECT COUNT(*) FROM outbound_messages WHERE team_id = $1", team).await
}

#[tokio::test]
async fn validation_errors_name_the_field() {
    let app = TestApp::spawn_with(&[NO_WORKERS, ("SENDMUX_MAX_EMAIL_BYTES", "4096")]).await;
    let (owner, _g, key) = smtp_sender(&app, "o@valid.test", closed_port()).await;
    let base = simple("to@example.org");
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let many: Vec<String> = (0..51).map(|i| format!("r{i}@example.org")).collect();
    let cases: Vec<(Value, &str)> = vec![
        (with("from", json!("not an address")), "from"),
        (with("from", json!("Name <missing-at>")), "from"),
        (with("to", json!(["ok@example.org", "bad@"])), "to[1]"),
        (with("to", json!([])), "to"),
        (with("to", json!(many)), "to"),
        (with("cc", json!(["x@y.org, z@w.org"])), "cc[0]"),
        (with("reply_to", json!("nope")), "reply_to"),
        (json!({"from": "a@example.com", "to": ["b@example.org"], "subject": "s"}), "text"),
        (with("subject", json!("two\r\nlines")), "subject"),
        (with("headers", json!({"Subject": "x"})), "headers.Subject"),
        (with("headers", json!({"X-Bad": "a\r\nBcc: victim@example.org"})), "headers.X-Bad"),
        (with("tags", json!({"bad tag": "x"})), "tags.bad tag"),
        (with("attachments", json!([{"filename": "a.txt", "content": "%%%not base64"}])), "attachments[0].content"),
        (with("attachments", json!([{"filename": "", "content": "aGk="}])), "attachments[0].filename"),
        (with("to", json!("single@example.org")), "to"),
        (with("surprise", json!(1)), "surprise"),
    ];
    for (body, param) in cases {
        let res = app.post("/api/v1/emails", &key, body.clone()).await;
        let err = expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await;
        assert_eq!(err["param"], param, "{body}: {err}");
    }
    // Over the size limit: 413 naming what made it too large.
    use base64::Engine;
    let big = base64::engine::general_purpose::STANDARD.encode(vec![7u8; 5000]);
    let res =
        app.post("/api/v1/emails", &key, with("attachments", json!([{"filename": "b.bin", "content": big}]))).await;
    let err = expect_error(res, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    assert_eq!(err["param"], "attachments");
    let res = app.post("/api/v1/emails", &key, with("text", json!("x".repeat(5000)))).await;
    let err = expect_error(res, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    assert_eq!(err["param"], "text");
    // Broken JSON is 400; nothing was queued by any of these.
    let res = app
        .req(reqwest::Method::POST, "/api/v1/emails", &key)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert_eq!(messages(&app, &owner.team_id).await, 0);
    // Display names and many recipients up to the limit are fine.
    let ok: Vec<String> = (0..50).map(|i| format!("\"Reader {i}\" <r{i}@example.org>")).collect();
    send(&app, &key, with("to", json!(ok))).await;
}

#[tokio::test]
async fn a_batch_queues_all_or_nothing() {
    let app = TestApp::spawn_with(&[NO_WORKERS]).await;
    let (owner, g, key) = smtp_sender(&app, "o@batch.test", closed_port()).await;
    let batch = json!([simple("a@example.org"), simple("b@example.org"), simple("c@example.org")]);
    let res = expect_status(app.post("/api/v1/emails/batch", &key, batch).await, StatusCode::ACCEPTED).await;
    let data = res["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    for d in data {
        let out = email(&app, &key, d["id"].as_str().unwrap()).await;
        assert_eq!(out["delivery_group_id"], g.as_str());
        assert_eq!(out["status"], "queued");
    }
    let bad = json!([simple("a@example.org"), simple("not-an-address")]);
    let err = expect_error(
        app.post("/api/v1/emails/batch", &key, bad).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    )
    .await;
    assert_eq!(err["param"], "[1].to[0]");
    let too_many: Vec<Value> = (0..101).map(|i| simple(&format!("r{i}@example.org"))).collect();
    expect_error(
        app.post("/api/v1/emails/batch", &key, json!(too_many)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    )
    .await;
    assert_eq!(messages(&app, &owner.team_id).await, 3);
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer_and_refuses_another_body() {
    let app = TestApp::spawn_with(&[NO_WORKERS]).await;
    let (owner, _g, key) = smtp_sender(&app, "o@idem.test", closed_port()).await;
    let post = |body: Value, idem: &str| {
        app.req(reqwest::Method::POST, "/api/v1/emails", &key).header("Idempotency-Key", idem).json(&body).send()
    };
    let first = post(simple("a@example.org"), "order-1").await.unwrap();
    let first = expect_status(first, StatusCode::ACCEPTED).await;
    let again = post(simple("a@example.org"), "order-1").await.unwrap();
    assert_eq!(again.headers().get("idempotent-replayed").unwrap(), "true");
    let again = expect_status(again, StatusCode::ACCEPTED).await;
    assert_eq!(again, first);
    assert_eq!(messages(&app, &owner.team_id).await, 1);
    let other = post(simple("b@example.org"), "order-1").await.unwrap();
    let err = expect_error(other, StatusCode::CONFLICT, "conflict").await;
    assert_eq!(err["param"], "Idempotency-Key");
    // Another key is another request.
    expect_status(post(simple("b@example.org"), "order-2").await.unwrap(), StatusCode::ACCEPTED).await;
    assert_eq!(messages(&app, &owner.team_id).await, 2);
    // Sixteen requests at once with one new key make one message and one answer.
    let answers = futures::future::join_all((0..16).map(|_| async {
        expect_status(post(simple("c@example.org"), "order-3").await.unwrap(), StatusCode::ACCEPTED).await
    }))
    .await;
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    assert_eq!(messages(&app, &owner.team_id).await, 3);
}

#[tokio::test]
async fn a_sending_key_reaches_only_its_own_groups_messages() {
    let app = TestApp::spawn_with(&[NO_WORKERS]).await;
    let (owner, _g, key_a) = smtp_sender(&app, "o@scope.test", closed_port()).await;
    let prv = smtp_provider(&app, &owner.token, "other", closed_port(), None).await;
    let g_b = group(&app, &owner.token, "failover", json!([{"provider_id": prv}])).await;
    let key_b = sending_key(&app, &owner.token, &g_b).await;
    let id = send(&app, &key_a, simple("a@example.org")).await;
    email(&app, &key_a, &id).await;
    expect_error(app.get(&format!("/api/v1/emails/{id}"), &key_b).await, StatusCode::NOT_FOUND, "not_found").await;
    // People of the team see it; another team does not.
    email(&app, &owner.token, &id).await;
    let stranger = app.signup("x@other.test", "Other").await;
    expect_error(app.get(&format!("/api/v1/emails/{id}"), &stranger.token).await, StatusCode::NOT_FOUND, "not_found")
        .await;
    // No mailboxes, logs, billing, suppressions or providers for a sending key.
    for path in [
        "/api/v1/mailboxes",
        "/api/v1/logs?kind=delivery",
        "/api/v1/suppressions",
        "/api/v1/providers",
        "/api/v1/events",
    ] {
        let res = app.get(path, &key_a).await;
        expect_error(res, StatusCode::FORBIDDEN, "permission_denied").await;
    }
    let billing = app.get("/api/v1/billing/usage", &key_a).await.status();
    assert!(billing == StatusCode::FORBIDDEN || billing == StatusCode::NOT_FOUND, "{billing}");
    // Only sending keys send; an infrastructure key and people cannot.
    let infra = app.create_key(&owner.token, json!({"name": "i", "kind": "infrastructure"})).await;
    let res = app.post("/api/v1/emails", infra["key"].as_str().unwrap(), simple("a@example.org")).await;
    expect_error(res, StatusCode::FORBIDDEN, "permission_denied").await;
    let res = app.post("/api/v1/emails", &owner.token, simple("a@example.org")).await;
    expect_error(res, StatusCode::FORBIDDEN, "permission_denied").await;
}

#[tokio::test]
async fn the_1801st_send_in_a_minute_is_rate_limited() {
    let app = TestApp::spawn_with(&[NO_WORKERS]).await;
    let (owner, _g, key) = smtp_sender(&app, "o@rate.test", closed_port()).await;
    let body = simple("a@example.org");
    let mut accepted = 0;
    for chunk in 0..(1800 / 60) {
        let results = futures::future::join_all((0..60).map(|_| app.post("/api/v1/emails", &key, body.clone()))).await;
        for r in results {
            assert_eq!(r.status(), StatusCode::ACCEPTED, "request in chunk {chunk}");
            accepted += 1;
        }
    }
    assert_eq!(accepted, 1800);
    let res = app.post("/api/v1/emails", &key, body).await;
    let retry_after: u64 = res.headers().get("retry-after").expect("Retry-After").to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after));
    expect_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    assert_eq!(messages(&app, &owner.team_id).await, 1800);
}

#[tokio::test]
async fn a_refused_request_does_not_undo_the_requests_committed_with_it() {
    let app = TestApp::spawn_with(&[NO_WORKERS]).await;
    let (owner, _g, key) = smtp_sender(&app, "o@group.test", closed_port()).await;
    // Accepted requests are committed in groups; conflicts inside a group roll back
    // only themselves.
    let results = futures::future::join_all((0..40).map(|i| {
        let mut req =
            app.req(reqwest::Method::POST, "/api/v1/emails", &key).json(&simple(&format!("r{i}@example.org")));
        if i % 2 == 0 {
            req = req.header("Idempotency-Key", "shared");
        }
        async move { req.send().await.unwrap().status() }
    }))
    .await;
    let accepted = results.iter().filter(|s| **s == StatusCode::ACCEPTED).count();
    let conflicts = results.iter().filter(|s| **s == StatusCode::CONFLICT).count();
    assert_eq!((accepted, conflicts), (21, 19), "{results:?}");
    assert_eq!(messages(&app, &owner.team_id).await, 21);
}
