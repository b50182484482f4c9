//! Outbound mail (API.md §5, §7, §11): sends through real SMTP servers and SES (moto) on
//! loopback, failover, retries, bounces and suppressions, statuses, events, usage.

use crate::helpers::*;
use crate::mail_servers::*;
use mail_parser::{MessageParser, MimeHeaders};
use reqwest::StatusCode;
use sendmux::outbound::worker::run_pending_jobs;
use serde_json::{Value, json};
use std::time::Duration;

const NO_WORKERS: (&str, &str) = ("SENDMUX_OUTBOUND_WORKERS", "0");

pub async fn smtp_provider(app: &TestApp, token: &str, name: &str, port: u16, auth: Option<(&str, &str)>) -> String {
    let mut config = json!({"host": "127.0.0.1", "port": port, "security": "none"});
    if let Some((u, p)) = auth {
        config["username"] = json!(u);
        config["password"] = json!(p);
    }
    let body = json!({"name": name, "type": "smtp", "config": config});
    let p = expect_status(app.post("/api/v1/providers", token, body).await, StatusCode::CREATED).await;
    p["id"].as_str().unwrap().to_owned()
}

pub async fn ses_provider(app: &TestApp, token: &str, ses: &SesServer, secret: &str) -> String {
    let body = json!({"name": "ses", "type": "ses", "config": {"region": "us-east-1", "access_key_id": ses.access_key_id,
        "secret_access_key": secret, "endpoint": ses.endpoint}});
    let p = expect_status(app.post("/api/v1/providers", token, body).await, StatusCode::CREATED).await;
    p["id"].as_str().unwrap().to_owned()
}

pub async fn group(app: &TestApp, token: &str, strategy: &str, members: Value) -> String {
    let body = json!({"name": "g", "strategy": strategy, "members": members});
    let g = expect_status(app.post("/api/v1/delivery-groups", token, body).await, StatusCode::CREATED).await;
    g["id"].as_str().unwrap().to_owned()
}

pub async fn sending_key(app: &TestApp, token: &str, group_id: &str) -> String {
    let k = app.create_key(token, json!({"name": "sender", "kind": "sending", "delivery_group_id": group_id})).await;
    k["key"].as_str().unwrap().to_owned()
}

/// A team with one SMTP provider at `port`, its group and a sending key.
pub async fn smtp_sender(app: &TestApp, email: &str, port: u16) -> (Person, String, String) {
    let owner = app.signup(email, "Sender").await;
    let prv = smtp_provider(app, &owner.token, "relay", port, None).await;
    let g = group(app, &owner.token, "failover", json!([{"provider_id": prv}])).await;
    let key = sending_key(app, &owner.token, &g).await;
    (owner, g, key)
}

pub fn simple(to: &str) -> Value {
    json!({"from": "App <app@example.com>", "to": [to], "subject": "Hello", "text": "Hi there"})
}

pub async fn send(app: &TestApp, key: &str, body: Value) -> String {
    let res = expect_status(app.post("/api/v1/emails", key, body).await, StatusCode::ACCEPTED).await;
    assert_eq!(res["status"], "queued");
    res["id"].as_str().unwrap().to_owned()
}

pub async fn email(app: &TestApp, token: &str, id: &str) -> Value {
    expect_status(app.get(&format!("/api/v1/emails/{id}"), token).await, StatusCode::OK).await
}

async fn events_of(app: &TestApp, token: &str, message_id: &str) -> Vec<Value> {
    let list = expect_status(app.get("/api/v1/events?limit=100", token).await, StatusCode::OK).await;
    let mut out: Vec<Value> =
        list["data"].as_array().unwrap().iter().filter(|e| e["data"]["message_id"] == message_id).cloned().collect();
    out.reverse();
    out
}

fn types(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["type"].as_str().unwrap().to_owned()).collect()
}

async fn usage(app: &TestApp, team: &str, metric: &str) -> i64 {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM usage_records WHERE team_id = $1 AND metric = $2")
        .bind(team)
        .bind(metric)
        .fetch_one(app.state.store.pool())
        .await
        .unwrap();
    n
}

async fn drain(app: &TestApp) {
    run_pending_jobs(&app.state).await.expect("worker step");
}

#[tokio::test]
async fn a_send_arrives_through_a_real_smtp_relay_with_envelope_headers_bodies_and_attachment() {
    let relay = SmtpServer::start(Some(("relay-user", "relay-pass"))).await;
    // Background workers on: the message leaves without anyone draining the queue.
    let app = TestApp::spawn().await;
    let owner = app.signup("o@send.test", "Send").await;
    let prv = smtp_provider(&app, &owner.token, "relay", relay.port, Some(("relay-user", "relay-pass"))).await;
    let g = group(&app, &owner.token, "failover", json!([{"provider_id": prv}])).await;
    let key = sending_key(&app, &owner.token, &g).await;
    let attachment: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    use base64::Engine;
    let body = json!({
        "from": "Ada Lovelace <ada@example.com>",
        "to": ["Bob <bob@example.org>", "carol@example.org"],
        "cc": ["dan@example.org"],
        "bcc": ["eve@example.org"],
        "reply_to": "support@example.com",
        "subject": "Quarterly report ✓",
        "text": "Plain body line\r\n.leading dot",
        "html": "<p>HTML body</p>",
        "headers": {"X-Campaign": "spring-2026"},
        "tags": {"category": "reports"},
        "attachments": [{"filename": "data.bin", "content_type": "application/octet-stream",
            "content": base64::engine::general_purpose::STANDARD.encode(&attachment)}],
    });
    let id = send(&app, &key, body).await;
    assert!(id.starts_with("msg_"));
    eventually("the message is delivered", Duration::from_secs(20), || async {
        email(&app, &key, &id).await["status"] == "delivered"
    })
    .await;
    let out = email(&app, &key, &id).await;
    assert_eq!(out["provider_id"], prv.as_str());
    let attempts = out["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{out}");
    assert_eq!(attempts[0]["outcome"], "sent");
    assert!(attempts[0]["response"].as_str().unwrap().starts_with("250"), "{out}");

    let got = relay.received();
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m.mail_from, "ada@example.com");
    let mut rcpts = m.rcpt_tos.clone();
    rcpts.sort();
    assert_eq!(rcpts, vec!["bob@example.org", "carol@example.org", "dan@example.org", "eve@example.org"]);
    let parsed = MessageParser::default().parse(&m.data).expect("MIME parses");
    let from = parsed.from().unwrap().first().unwrap();
    assert_eq!((from.name(), from.address()), (Some("Ada Lovelace"), Some("ada@example.com")));
    let to: Vec<&str> = parsed.to().unwrap().iter().filter_map(|a| a.address()).collect();
    assert_eq!(to, vec!["bob@example.org", "carol@example.org"]);
    assert_eq!(parsed.cc().unwrap().first().unwrap().address(), Some("dan@example.org"));
    assert!(parsed.bcc().is_none(), "Bcc must not appear in the headers");
    assert_eq!(parsed.reply_to().unwrap().first().unwrap().address(), Some("support@example.com"));
    assert_eq!(parsed.subject(), Some("Quarterly report ✓"));
    assert_eq!(format!("<{}>", parsed.message_id().unwrap()), out["message_id_header"].as_str().unwrap());
    assert!(parsed.date().is_some());
    assert_eq!(parsed.body_text(0).unwrap().trim_end(), "Plain body line\r\n.leading dot");
    assert!(parsed.body_html(0).unwrap().contains("<p>HTML body</p>"));
    let att = parsed.attachment(0).expect("one attachment");
    assert_eq!(att.attachment_name(), Some("data.bin"));
    assert_eq!(att.contents(), attachment.as_slice());
    let header = |name: &str| parsed.header_raw(name).map(|v| v.trim().to_owned());
    assert_eq!(header("X-Campaign").as_deref(), Some("spring-2026"));
    assert_eq!(header("X-Sendmux-Tags").as_deref(), Some("category=reports"));
    assert_eq!(header("X-Sendmux-Message-Id").as_deref(), Some(id.as_str()));

    // Events in order with the API.md §7 data; delivery log; usage counted once.
    let evs = events_of(&app, &owner.token, &id).await;
    assert_eq!(types(&evs), vec!["message.queued", "message.sent", "message.delivered"]);
    let d = &evs[1]["data"];
    assert_eq!(d["delivery_group_id"], g.as_str());
    assert_eq!(d["from"], "Ada Lovelace <ada@example.com>");
    assert_eq!(d["subject"], "Quarterly report ✓");
    assert_eq!(d["link"], format!("/api/v1/emails/{id}"));
    assert!(d["to"].as_array().unwrap().contains(&json!("bob@example.org")));
    let logs = expect_status(app.get("/api/v1/logs?kind=delivery", &owner.token).await, StatusCode::OK).await;
    let entry = &logs["data"][0];
    assert_eq!(entry["kind"], "delivery");
    assert_eq!(entry["message_id"], id.as_str());
    assert_eq!(entry["provider_id"], prv.as_str());
    assert_eq!(entry["outcome"], "sent");
    assert!(entry["id"].as_str().unwrap().starts_with("att_"));
    assert_eq!(usage(&app, &owner.team_id, "outbound_emails").await, 1);
    assert_eq!(usage(&app, &owner.team_id, "managed_ses_emails").await, 0);
}

#[tokio::test]
async fn failover_moves_to_the_next_provider_when_the_first_refuses_connections() {
    let relay = SmtpServer::start(None).await;
    let app = TestApp::spawn_with(&[NO_WORKERS]).await;
    let owner = app.signup("o@failover.test", "Failover").await;
    let dead = smtp_provider(&app, &owner.token, "dead", closed_port(), None).await;
    let live = smtp_provider(&app, &owner.token, "live", relay.port, None).await;
    let g = group(
        &app,
        &owner.token,
        "failover",
        json!([{"provider_id": live, "priority": 5}, {"provider_id": dead, "priority": 1}]),
    )
    .await;
    let key = sending_key(&app, &owner.token, &g).await;
    let id = send(&app, &key, simple("x@example.org")).await;
    drain(&app).await;
    let out = email(&app, &key, &id).await;
    assert_eq!(out["status"], "delivered", "{out}");
    assert_eq!(out["provider_id"], live.as_str());
    let attempts = out["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{out}");
    assert_eq!(attempts[0]["provider_id"], dead.as_str());
    assert_eq!(attempts[0]["outcome"], "deferred");
    assert!(attempts[0]["response"].as_str().unwrap().contains("Connection refused"), "{out}");
    assert_eq!(attempts[1]["provider_id"], live.as_str());
    assert_eq!(relay.received().len(), 1);
}

#[tokio::test]
async fn a_sender_refusal_that_is_not_the_recipients_fault_fails_over() {
    let refusing = SmtpServer::start_with(None, &["--refuse-mail-from", "554"]).await;
    let relay = SmtpServer::start(None).await;
    let app = TestApp::spawn_with(&[NO_WORKERS]).await;
    let owner = app.signup("o@refuse.test", "Refuse").await;
    let a = smtp_provider(&app, &owner.token, "a", refusing.port, None).await;
    let b = smtp_provider(&app, &owner.token, "b", relay.port, None).await;
    let g = group(&app, &owner.token, "failover", json!([{"provider_id": a}, {"provider_id": b}])).await;
    let key = sending_key(&app, &owner.token, &g).await;
    let id = send(&app, &key, simple("y@example.org")).await;
    drain(&app).await;
    let out = email(&app, &key, &id).await;
    assert_eq!(out["status"], "delivered", "{out}");
    assert_eq!(out["attempts"][0]["outcome"], "failed");
    assert!(out["attempts"][0]["response"].as_str().unwrap().contains("554"), "{out}");
    assert_eq!(out["provider_id"], b.as_str());
    // Alone, the same refusal fails the message without retries.
    let g2 = group(&app, &owner.token, "failover", json!([{"provider_id": a}])).await;
    let key2 = sending_key(&app, &owner.token, &g2).await;
    let id2 = send(&app, &key2, simple("y@example.org")).await;
    drain(&app).await;
    let out = email(&app, &key2, &id2).await;
    assert_eq!(out["status"], "failed", "{out}");
    let evs = events_of(&app, &owner.token, &id2).await;
    assert_eq!(types(&evs), vec!["message.queued", "message.failed"]);
}

#[tokio::test]
async fn a_temporary_refusal_defers_and_a_later_retry_delivers() {
    let relay = SmtpServer::start(None).await;
    let app = TestApp::spawn_with(&[NO_WORKERS, ("SENDMUX_OUTBOUND_RETRY_INITIAL_SECONDS", "1")]).await;
    let (owner, _g, key) = smtp_sender(&app, "o@defer.test", relay.port).await;
    for local in ["defer", "busy"] {
        let id = send(&app, &key, simple(&format!("{local}@example.org"))).await;
        drain(&app).await;
        let out = email(&app, &key, &id).await;
        assert_eq!(out["status"], "deferred", "{out}");
        let code = if local == "defer" { "451" } else { "421" };
        assert!(out["attempts"][0]["response"].as_str().unwrap().contains(code), "{out}");
        assert!(out["next_attempt_at"].is_string(), "{out}");
        assert!(relay.received().iter().all(|m| !m.rcpt_tos.contains(&format!("{local}@example.org"))));
        eventually("the retry delivers", Duration::from_secs(10), || async {
            drain(&app).await;
            email(&app, &key, &id).await["status"] == "delivered"
        })
        .await;
        let out = email(&app, &key, &id).await;
        assert_eq!(out["attempts"].as_array().unwrap().len(), 2, "{out}");
        let evs = events_of(&app, &owner.token, &id).await;
        assert_eq!(types(&evs), vec!["message.queued", "message.deferred", "message.sent", "message.delivered"]);
    }
    assert_eq!(usage(&app, &owner.team_id, "outbound_emails").await, 2);
}

#[tokio::test]
async fn transient_failures_past_the_retry_window_fail() {
    let app = TestApp::spawn_with(&[
        NO_WORKERS,
        ("SENDMUX_OUTBOUND_RETRY_WINDOW_SECONDS", "0"),
        ("SENDMUX_OUTBOUND_RETRY_INITIAL_SECONDS", "1"),
    ])
    .await;
    let (owner, _g, key) = smtp_sender(&app, "o@window.test", closed_port()).await;
    let id = send(&app, &key, simple("z@example.org")).await;
    drain(&app).await;
    let out = email(&app, &key, &id).await;
    assert_eq!(out["status"], "failed", "{out}");
    assert!(out["last_error"].as_str().unwrap().contains("Connection refused"), "{out}");
    assert_eq!(usage(&app, &owner.team_id, "outbound_emails").await, 0);
}

#[tokio::test]
async fn a_recipient_550_bounces_suppresses_and_the_next_send_is_suppressed() {
    let relay = SmtpServer::start(None).await;
    let app = TestApp::spawn_with(&[NO_WORKERS]).await;
    let (owner, _g, key) = smtp_sender(&app, "o@bounce.test", relay.port).await;
    let id = send(&app, &key, simple("Bounce.Me@example.org")).await;
    drain(&app).await;
    let out = email(&app, &key, &id).await;
    assert_eq!(out["status"], "bounced", "{out}");
    assert_eq!(out["attempts"].as_array().unwrap().len(), 1, "a recipient's refusal does not fail over: {out}");
    assert!(out["attempts"][0]["response"].as_str().unwrap().contains("550"), "{out}");
    let evs = events_of(&app, &owner.token, &id).await;
    assert_eq!(types(&evs), vec!["message.queued", "message.bounced"]);
    assert_eq!(evs[1]["data"]["bounced"][0]["address"], "bounce.me@example.org");

    let list = expect_status(app.get("/api/v1/suppressions", &owner.token).await, StatusCode::OK).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["data"][0]["address"], "bounce.me@example.org");
    assert_eq!(list["data"][0]["reason"], "hard_bounce");
    assert_eq!(list["data"][0]["message_id"], id.as_str());

    // The next send to that address never reaches a provider.
    let id2 = send(&app, &key, simple("bounce.me@example.org")).await;
    drain(&app).await;
    let out = email(&app, &key, &id2).await;
    assert_eq!(out["status"], "suppressed", "{out}");
    assert_eq!(out["attempts"].as_array().unwrap().len(), 0);
    let evs = events_of(&app, &owner.token, &id2).await;
    assert_eq!(types(&evs), vec!["message.queued", "message.suppressed"]);
    assert!(relay.received().is_empty());

    // Another recipient on the same message still gets it; the suppressed one does not.
    let id3 =
        send(&app, &key, json!({"from": "app@example.com", "to": ["bounce.me@example.org", "ok@example.org"], "subject": "s", "text": "t"}))
            .await;
    drain(&app).await;
    assert_eq!(email(&app, &key, &id3).await["status"], "delivered");
    assert_eq!(relay.received()[0].rcpt_tos, vec!["ok@example.org"]);

    // Taking the address off the list lets mail through again (and the relay bounces it).
    let res = app.delete("/api/v1/suppressions/bounce.me@example.org", &owner.token).await;
    expect_status(res, StatusCode::NO_CONTENT).await;
    let list = expect_status(app.get("/api/v1/suppressions", &owner.token).await, StatusCode::OK).await;
    assert!(list["data"].as_array().unwrap().is_empty());
    let res = app.delete("/api/v1/suppressions/bounce.me@example.org", &owner.token).await;
    expect_error(res, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn several_workers_never_send_a_message_twice() {
    let relay = SmtpServer::start(None).await;
    let app = TestApp::spawn_with(&[NO_WORKERS, ("SENDMUX_OUTBOUND_BATCH", "3")]).await;
    let (_owner, _g, key) = smtp_sender(&app, "o@lease.test", relay.port).await;
    let mut ids = Vec::new();
    for i in 0..24 {
        ids.push(send(&app, &key, simple(&format!("r{i}@example.org"))).await);
    }
    let workers: Vec<_> = (0..6)
        .map(|_| {
            let state = app.state.clone();
            tokio::spawn(async move { run_pending_jobs(&state).await.unwrap() })
        })
        .collect();
    let mut handled = 0;
    for w in workers {
        handled += w.await.unwrap();
    }
    assert_eq!(handled, 24);
    let got = relay.received();
    assert_eq!(got.len(), 24);
    let mut rcpts: Vec<String> = got.iter().flat_map(|m| m.rcpt_tos.clone()).collect();
    rcpts.sort();
    rcpts.dedup();
    assert_eq!(rcpts.len(), 24);
    for id in ids {
        let out = email(&app, &key, &id).await;
        assert_eq!(out["attempts"].as_array().unwrap().len(), 1, "{out}");
    }
}

#[tokio::test]
async fn a_restart_resumes_queued_mail() {
    let relay = SmtpServer::start(None).await;
    let app = TestApp::spawn_with(&[NO_WORKERS]).await;
    let (_owner, _g, key) = smtp_sender(&app, "o@restart.test", relay.port).await;
    let id = send(&app, &key, simple("later@example.org")).await;
    // A new process over the same store, with workers this time.
    let again = app.restart_with(&[("SENDMUX_OUTBOUND_WORKERS", "4")]).await;
    eventually("the queued message is sent after the restart", Duration::from_secs(20), || async {
        email(&again, &key, &id).await["status"] == "delivered"
    })
    .await;
    assert_eq!(relay.received().len(), 1);
}

#[tokio::test]
async fn the_ses_route_sends_signed_requests_to_moto_and_takes_notifications() {
    let ses = SesServer::start(&["example.com"]).await;
    let app = TestApp::spawn_with(&[NO_WORKERS]).await;
    let owner = app.signup("o@ses.test", "SES").await;
    let good = ses_provider(&app, &owner.token, &ses, &ses.secret_access_key).await;
    let g = group(&app, &owner.token, "failover", json!([{"provider_id": good}])).await;
    let key = sending_key(&app, &owner.token, &g).await;
    let id = send(
        &app,
        &key,
        json!({"from": "app@example.com", "to": ["reader@example.org", "gone@example.org"],
        "subject": "Via SES", "html": "<b>hi</b>", "tags": {"campaign": "c1"}}),
    )
    .await;
    drain(&app).await;
    let out = email(&app, &key, &id).await;
    assert_eq!(out["status"], "sent", "SES reports delivery later: {out}");
    let ses_id = out["provider_message_id"].as_str().expect("SES MessageId").to_owned();
    assert_eq!(out["attempts"][0]["provider_type"], "ses");
    assert_eq!(usage(&app, &owner.team_id, "outbound_emails").await, 1);

    // The check makes an authenticated call; it also gives the notification URL.
    let check = expect_status(
        app.post(&format!("/api/v1/providers/{good}/test"), &owner.token, json!({})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(check["ok"], true, "{check}");
    let url = check["notification_url"].as_str().unwrap().to_owned();

    // A wrong secret makes a signature moto refuses: the attempt says so and the message fails.
    let bad = ses_provider(&app, &owner.token, &ses, "not-the-secret").await;
    let check = expect_status(
        app.post(&format!("/api/v1/providers/{bad}/test"), &owner.token, json!({})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(check["ok"], false);
    assert!(check["message"].as_str().unwrap().contains("SignatureDoesNotMatch"), "{check}");
    let g2 = group(&app, &owner.token, "failover", json!([{"provider_id": bad}])).await;
    let key2 = sending_key(&app, &owner.token, &g2).await;
    let id2 = send(&app, &key2, simple("reader@example.org")).await;
    drain(&app).await;
    let out2 = email(&app, &key2, &id2).await;
    assert_eq!(out2["status"], "failed", "{out2}");
    assert!(out2["attempts"][0]["response"].as_str().unwrap().contains("SignatureDoesNotMatch"), "{out2}");

    // SES notifications (SNS envelope): delivery, then a permanent bounce for one recipient.
    let sns = |message: Value| json!({"Type": "Notification", "Message": message.to_string()});
    let delivery = sns(json!({"notificationType": "Delivery", "mail": {"messageId": ses_id},
        "delivery": {"recipients": ["reader@example.org"]}}));
    let res = app.client.post(app.url(&url)).json(&delivery).send().await.unwrap();
    let body = expect_status(res, StatusCode::OK).await;
    assert_eq!(body["matched"], true);
    assert_eq!(email(&app, &key, &id).await["status"], "delivered");
    let bounce = sns(json!({"notificationType": "Bounce", "mail": {"messageId": ses_id},
        "bounce": {"bounceType": "Permanent", "bouncedRecipients": [{"emailAddress": "Gone@example.org"}]}}));
    expect_status(app.client.post(app.url(&url)).json(&bounce).send().await.unwrap(), StatusCode::OK).await;
    let complaint = sns(json!({"notificationType": "Complaint", "mail": {"messageId": ses_id},
        "complaint": {"complainedRecipients": [{"emailAddress": "angry@example.org"}]}}));
    expect_status(app.client.post(app.url(&url)).json(&complaint).send().await.unwrap(), StatusCode::OK).await;
    let list = expect_status(app.get("/api/v1/suppressions", &owner.token).await, StatusCode::OK).await;
    let reasons: Vec<(String, String)> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["address"].as_str().unwrap().to_owned(), s["reason"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        reasons,
        vec![("angry@example.org".into(), "complaint".into()), ("gone@example.org".into(), "hard_bounce".into())]
    );
    let evs = events_of(&app, &owner.token, &id).await;
    assert_eq!(types(&evs), vec!["message.queued", "message.sent", "message.delivered", "message.bounced"]);
    // A wrong token is as if the endpoint did not exist.
    let forged = url.split("token=").next().unwrap().to_owned() + "token=00";
    let res = app.client.post(app.url(&forged)).json(&bounce).send().await.unwrap();
    expect_error(res, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn the_managed_ses_route_is_billed_as_managed() {
    let ses = SesServer::start(&["example.com"]).await;
    let dns = DnsServer::start(&[]).await;
    let app = crate::domains::app_with_dns(
        &dns,
        &[
            NO_WORKERS,
            ("SENDMUX_MANAGED_SES_REGION", "us-east-1"),
            ("SENDMUX_MANAGED_SES_ENDPOINT", &ses.endpoint),
            ("SENDMUX_MANAGED_SES_ACCESS_KEY_ID", &ses.access_key_id),
            ("SENDMUX_MANAGED_SES_SECRET_ACCESS_KEY", &ses.secret_access_key),
        ],
    )
    .await;
    let owner = app.signup("o@managed.test", "Managed").await;
    // The managed route sends only from a domain the team verified (API.md §5).
    crate::domains::verified_domain(&app, &dns, &owner.token, json!({"name": "example.com"})).await;
    let g = group(&app, &owner.token, "failover", json!([{"provider_id": "managed"}])).await;
    let key = sending_key(&app, &owner.token, &g).await;
    let id = send(&app, &key, simple("reader@example.org")).await;
    drain(&app).await;
    let out = email(&app, &key, &id).await;
    assert_eq!(out["status"], "sent", "{out}");
    assert_eq!(out["provider_id"], "managed");
    assert_eq!(usage(&app, &owner.team_id, "managed_ses_emails").await, 1);
    assert_eq!(usage(&app, &owner.team_id, "outbound_emails").await, 0);
    // The managed route's notifications find the message's team by its SES id.
    let url = sendmux::api::suppressions::notification_path(&app.state, "managed");
    let ses_id = out["provider_message_id"].as_str().unwrap();
    let note = json!({"notificationType": "Delivery", "mail": {"messageId": ses_id}, "delivery": {"recipients": ["reader@example.org"]}});
    let res = app
        .client
        .post(app.url(&url))
        .json(&json!({"Type": "Notification", "Message": note.to_string()}))
        .send()
        .await
        .unwrap();
    assert_eq!(expect_status(res, StatusCode::OK).await["matched"], true);
    assert_eq!(email(&app, &key, &id).await["status"], "delivered");
}

#[tokio::test]
async fn provider_checks_report_what_failed_in_words() {
    let relay = SmtpServer::start(Some(("u", "right"))).await;
    let app = TestApp::spawn_with(&[NO_WORKERS]).await;
    let owner = app.signup("o@check.test", "Check").await;
    let check = |id: String| {
        let app = &app;
        let token = owner.token.clone();
        async move {
            expect_status(app.post(&format!("/api/v1/providers/{id}/test"), &token, json!({})).await, StatusCode::OK)
                .await
        }
    };
    let ok = smtp_provider(&app, &owner.token, "ok", relay.port, Some(("u", "right"))).await;
    let out = check(ok).await;
    assert_eq!(out["ok"], true, "{out}");
    assert!(out["message"].is_null());
    let wrong = smtp_provider(&app, &owner.token, "wrong", relay.port, Some(("u", "wrong"))).await;
    let out = check(wrong).await;
    assert_eq!(out["ok"], false);
    assert!(out["message"].as_str().unwrap().contains("refused the username or password"), "{out}");
    let closed = smtp_provider(&app, &owner.token, "closed", closed_port(), None).await;
    let out = check(closed).await;
    assert!(out["message"].as_str().unwrap().contains("Connection refused"), "{out}");
    let starttls = expect_status(
        app.post(
            "/api/v1/providers",
            &owner.token,
            json!({"name": "tls", "type": "smtp",
            "config": {"host": "127.0.0.1", "port": relay.port, "security": "starttls"}}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let out = check(starttls["id"].as_str().unwrap().to_owned()).await;
    assert!(out["message"].as_str().unwrap().contains("STARTTLS"), "{out}");
    // STARTTLS and implicit TLS are negotiated; a certificate nobody vouches for is
    // refused and said so.
    for (flag, security) in [("--starttls", "starttls"), ("--implicit-tls", "tls")] {
        let tls_relay = SmtpServer::start_with(None, &[flag]).await;
        let p = expect_status(
            app.post(
                "/api/v1/providers",
                &owner.token,
                json!({"name": flag, "type": "smtp",
                "config": {"host": "127.0.0.1", "port": tls_relay.port, "security": security}}),
            )
            .await,
            StatusCode::CREATED,
        )
        .await;
        let out = check(p["id"].as_str().unwrap().to_owned()).await;
        let words = out["message"].as_str().unwrap();
        assert!(words.contains("TLS with 127.0.0.1") && words.contains("certificate"), "{flag}: {out}");
    }
    // Only people who manage providers may run checks.
    let member = app.add_member(&owner, "m@check.test", "member").await;
    let res = app
        .post(&format!("/api/v1/providers/{}/test", starttls["id"].as_str().unwrap()), &member.token, json!({}))
        .await;
    expect_error(res, StatusCode::FORBIDDEN, "permission_denied").await;
}

#[tokio::test]
async fn a_weighted_group_spreads_mail_by_weight() {
    let heavy = SmtpServer::start(None).await;
    let light = SmtpServer::start(None).await;
    let app = TestApp::spawn_with(&[NO_WORKERS]).await;
    let owner = app.signup("o@weighted.test", "Weighted").await;
    let h = smtp_provider(&app, &owner.token, "heavy", heavy.port, None).await;
    let l = smtp_provider(&app, &owner.token, "light", light.port, None).await;
    let g = group(
        &app,
        &owner.token,
        "weighted",
        json!([{"provider_id": h, "weight": 3}, {"provider_id": l, "weight": 1}]),
    )
    .await;
    let key = sending_key(&app, &owner.token, &g).await;
    for i in 0..60 {
        send(&app, &key, simple(&format!("w{i}@example.org"))).await;
    }
    drain(&app).await;
    let (a, b) = (heavy.received().len(), light.received().len());
    assert_eq!(a + b, 60);
    // 3:1 in expectation (45:15); both get mail, the heavier one clearly more.
    assert!(b > 0 && a > b * 3 / 2, "heavy {a}, light {b}");
}

#[tokio::test]
async fn a_large_attachment_is_kept_outside_the_queue_row_and_arrives_intact_after_a_restart() {
    let relay = SmtpServer::start(None).await;
    let app = TestApp::spawn_with(&[NO_WORKERS]).await;
    let (_owner, _g, key) = smtp_sender(&app, "o@large.test", relay.port).await;
    // Past the inline limit, so the request goes to the blob store; and a small one beside it.
    let attachment: Vec<u8> = (0..=255u8).cycle().skip(7).take(300 * 1024).collect();
    use base64::Engine;
    let content = base64::engine::general_purpose::STANDARD.encode(&attachment);
    assert!(content.len() > sendmux::api::emails::INLINE_REQUEST_BYTES);
    let large = send(
        &app,
        &key,
        json!({"from": "a@example.com", "to": ["big@example.org"], "subject": "Large", "text": "see attached",
            "attachments": [{"filename": "big.bin", "content": content}]}),
    )
    .await;
    let small = send(&app, &key, simple("small@example.org")).await;
    // The large request is in the blob store, the small one in its row.
    assert_eq!(kept_where(&app, &large).await, (false, true));
    assert_eq!(kept_where(&app, &small).await, (true, false));
    let again = app.restart_with(&[("SENDMUX_OUTBOUND_WORKERS", "2")]).await;
    for id in [&large, &small] {
        eventually("both messages are delivered after the restart", Duration::from_secs(20), || async {
            email(&again, &key, id).await["status"] == "delivered"
        })
        .await;
    }
    let got = relay.received();
    let big = got.iter().find(|m| m.rcpt_tos == ["big@example.org"]).expect("the large message arrived");
    let parsed = MessageParser::default().parse(&big.data).expect("MIME parses");
    let att = parsed.attachment(0).expect("one attachment");
    assert_eq!(att.attachment_name(), Some("big.bin"));
    assert_eq!(att.contents(), attachment.as_slice());
    assert!(got.iter().any(|m| m.rcpt_tos == ["small@example.org"]));
}

/// Whether a queued message's request is in its row, and whether it is in the blob store.
async fn kept_where(app: &TestApp, id: &str) -> (bool, bool) {
    let mut conn = app.state.store.pool().acquire().await.unwrap();
    let (request, body_key): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT request, body_key FROM outbound_messages WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    (request.is_some(), body_key.is_some())
}

/// Bytes the team's blob folder holds on disk (allocated blocks: erased bodies are holes).
fn allocated(app: &TestApp, team_id: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let folder = app.dir.path().join("blobs").join(team_id);
    std::fs::read_dir(folder).map_or(0, |d| d.map(|e| e.unwrap().metadata().unwrap().blocks() * 512).sum())
}

#[tokio::test]
async fn a_replayed_or_refused_large_request_leaves_no_body_behind() {
    let relay = SmtpServer::start(None).await;
    let app = TestApp::spawn_with(&[NO_WORKERS]).await;
    let (owner, _g, key) = smtp_sender(&app, "o@replay-large.test", relay.port).await;
    use base64::Engine;
    let large = |seed: u8| {
        let attachment: Vec<u8> = (0..=255u8).cycle().skip(seed as usize).take(300 * 1024).collect();
        json!({"from": "a@example.com", "to": ["big@example.org"], "subject": "Large", "text": "see attached",
            "attachments": [{"filename": "big.bin", "content": base64::engine::general_purpose::STANDARD.encode(&attachment)}]})
    };
    let post = |body: Value| {
        app.req(reqwest::Method::POST, "/api/v1/emails", &key).header("Idempotency-Key", "large-1").json(&body).send()
    };
    let first = post(large(1)).await.unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let id = first.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let after_first = allocated(&app, &owner.team_id);
    assert!(after_first >= 300 * 1024, "the first request's body is stored: {after_first}");

    let replay = post(large(1)).await.unwrap();
    assert_eq!(replay.status(), StatusCode::ACCEPTED);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.json::<Value>().await.unwrap()["id"], id.as_str());
    let conflict = post(large(2)).await.unwrap();
    assert_eq!(conflict.status(), StatusCode::CONFLICT);
    // Each of the two wrote ~400 KB before the committer answered; both were erased.
    let after = allocated(&app, &owner.team_id);
    assert!(after < after_first + 64 * 1024, "{after_first} -> {after}");

    // The one queued message is still whole.
    drain(&app).await;
    assert_eq!(email(&app, &key, &id).await["status"], "delivered");
    assert_eq!(relay.received().len(), 1);
}
