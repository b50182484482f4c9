//! Inbound mail over real SMTP conversations (Python's smtplib and a raw client on
//! loopback): storage before 250, byte-identical raw bodies, the reply codes of the
//! limits, STARTTLS, pipelining, concurrency, events and metering.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

pub const SIMPLE: &[u8] = b"From: Ann Sender <ann@sender.test>\r\nTo: box@mail.test\r\nSubject: Hello there\r\n\
Date: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <hello-1@sender.test>\r\n\r\nFirst line\r\n\
.a line that starts with a dot\r\nCaf\xc3\xa9 8-bit body\r\n";

fn data_code(report: &Value) -> i64 {
    report["data"][0].as_i64().unwrap_or_else(|| panic!("no DATA reply: {report}"))
}

#[tokio::test]
async fn a_message_sent_over_smtp_is_listed_parsed_and_byte_identical() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@in.test", "In").await;
    let (mbx, key) = app.mailbox_with_key(&owner.token, "box@mail.test", &["mailbox.read"]).await;

    let report = app.send_smtp("ann@sender.test", &["Box@Mail.test"], SIMPLE).await;
    assert_eq!(report["ehlo"][0], 250);
    let ehlo = report["ehlo"][1].as_str().unwrap();
    for ext in ["SIZE", "8BITMIME", "PIPELINING", "SMTPUTF8", "ENHANCEDSTATUSCODES", "STARTTLS"] {
        assert!(ehlo.contains(ext), "{ext} advertised: {ehlo}");
    }
    assert_eq!(data_code(&report), 250, "{report}");

    // 250 came after the commit: the message is there at once, no waiting.
    let inbox = app.inbox(&key).await;
    assert_eq!(inbox.len(), 1);
    let m = &inbox[0];
    let id = m["id"].as_str().unwrap();
    assert!(id.starts_with("msg_"));
    assert!(report["data"][1].as_str().unwrap().contains(id), "the 250 names the stored id: {report}");
    assert_eq!(m["subject"], "Hello there");
    assert_eq!(m["from"]["address"], "ann@sender.test");
    assert_eq!(m["envelope"]["mail_from"], "ann@sender.test");
    assert_eq!(m["envelope"]["rcpt_to"], "box@mail.test");
    assert_eq!(m["spam"]["verdict"], "ham");
    assert_eq!(app.raw_message(&key, id).await, SIMPLE, "raw bytes are what arrived, dot-unstuffed");

    let full = expect_status(app.get(&format!("/api/v1/mailbox/messages/{id}"), &key).await, StatusCode::OK).await;
    assert_eq!(full["subject"], "Hello there");
    assert_eq!(full["from"], json!({"name": "Ann Sender", "address": "ann@sender.test"}));
    assert_eq!(full["to"][0]["address"], "box@mail.test");
    assert_eq!(full["message_id"], "hello-1@sender.test");
    assert_eq!(full["date"], "2026-11-24T10:00:00Z");
    assert!(full["text"].as_str().unwrap().contains("Café 8-bit body"), "{full}");
    assert!(full["text"].as_str().unwrap().contains("\n.a line that starts"), "{full}");
    assert!(full["headers"].as_array().unwrap().iter().any(|h| h["name"] == "Subject" && h["value"] == "Hello there"));
    assert!(full["authentication"]["spf"].is_object(), "{full}");

    // People reach it under /mailboxes/{id}; the event and the metering were written with it.
    let path = format!("/api/v1/mailboxes/{}/messages", mbx["id"].as_str().unwrap());
    let list = expect_status(app.get(&path, &owner.token).await, StatusCode::OK).await;
    assert_eq!(list["data"][0]["id"], id);
    let events =
        expect_status(app.get("/api/v1/events?type=message.received", &owner.token).await, StatusCode::OK).await;
    let event = &events["data"][0];
    assert_eq!(event["data"]["message_id"], id);
    assert_eq!(event["data"]["mailbox_id"], mbx["id"]);
    assert_eq!(event["data"]["subject"], "Hello there");
    assert_eq!(event["data"]["from"], "ann@sender.test");
    assert!(event["data"]["url"].as_str().unwrap().ends_with(id));
    let usage = app
        .count("SELECT COUNT(*) FROM usage_records WHERE team_id = $1 AND metric = 'inbound_emails'", &owner.team_id)
        .await;
    assert_eq!(usage, 1);
    let bytes: i64 =
        sqlx::query_scalar("SELECT CAST(SUM(delta_bytes) AS BIGINT) FROM storage_changes WHERE team_id = $1")
            .bind(&owner.team_id)
            .fetch_one(app.state.store.pool())
            .await
            .unwrap();
    assert_eq!(bytes, SIMPLE.len() as i64);
}

#[tokio::test]
async fn unknown_mailboxes_are_550_and_oversized_messages_552() {
    let app = TestApp::spawn_with(&[("SENDMUX_SMTP_MAX_MESSAGE_BYTES", "4096")]).await;
    let owner = app.signup("owner@lim.test", "Lim").await;
    let (_, key) = app.mailbox_with_key(&owner.token, "box@mail.test", &["mailbox.read"]).await;

    let report = app.send_smtp("a@sender.test", &["nobody@mail.test"], SIMPLE).await;
    assert_eq!(report["rcpt"][0][0], 550);
    assert!(report["rcpt"][0][1].as_str().unwrap().starts_with("5.1.1"), "{report}");
    assert!(report["ehlo"][1].as_str().unwrap().contains("SIZE 4096"));

    // Declared too big: refused at MAIL FROM.
    let mut big = SIMPLE.to_vec();
    big.extend(std::iter::repeat_n(b"0123456789abcdef0123456789abcdef0123456789\r\n".as_slice(), 200).flatten());
    let report = app.send_smtp("a@sender.test", &["box@mail.test"], &big).await;
    assert_eq!(report["mail"][0], 552, "{report}");
    assert!(report["mail"][1].as_str().unwrap().starts_with("5.3.4"));
    // Undeclared: read to the end, then refused; the session goes on.
    let (mut c, _) = RawSmtp::connect(app.smtp_addr).await;
    let mut body = big.clone();
    body.extend_from_slice(b".\r\n");
    let (code, text) = c.transaction("a@sender.test", "box@mail.test", &body).await;
    assert_eq!(code, 552, "{text}");
    assert!(text.contains("5.3.4"));
    let (code, _) = c.transaction("a@sender.test", "box@mail.test", b"Subject: small\r\n\r\nok\r\n.\r\n").await;
    assert_eq!(code, 250);
    assert_eq!(app.inbox(&key).await.len(), 1, "only the small message is stored");
}

/// Recipients are looked up from memory on SQLite: a deleted mailbox must stop
/// receiving at once, and a new one at the same address must get the next message.
#[tokio::test]
async fn a_deleted_mailbox_refuses_the_very_next_message() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@gone.test", "Gone").await;
    let mbx = app.create_mailbox(&owner.token, "box@mail.test").await;
    let report = app.send_smtp("a@sender.test", &["box@mail.test"], SIMPLE).await;
    assert_eq!(data_code(&report), 250, "{report}");

    let path = format!("/api/v1/mailboxes/{}", mbx["id"].as_str().unwrap());
    expect_status(app.delete(&path, &owner.token).await, StatusCode::NO_CONTENT).await;
    let report = app.send_smtp("a@sender.test", &["box@mail.test"], SIMPLE).await;
    assert_eq!(report["rcpt"][0][0], 550, "{report}");

    let (again, key) = app.mailbox_with_key(&owner.token, "box@mail.test", &["mailbox.read"]).await;
    assert_ne!(again["id"], mbx["id"]);
    let report = app.send_smtp("a@sender.test", &["box@mail.test"], SIMPLE).await;
    assert_eq!(data_code(&report), 250, "{report}");
    assert_eq!(app.inbox(&key).await.len(), 1, "the message went to the new mailbox");
}

#[tokio::test]
async fn starttls_then_send() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@tls.test", "Tls").await;
    let (_, key) = app.mailbox_with_key(&owner.token, "box@mail.test", &["mailbox.read"]).await;
    let report = app.send_smtp_with("a@sender.test", &["box@mail.test"], SIMPLE, &["--starttls"]).await;
    assert_eq!(report["starttls"][0], 220, "{report}");
    assert!(!report["ehlo_tls"][1].as_str().unwrap().contains("STARTTLS"), "not offered twice: {report}");
    assert_eq!(data_code(&report), 250, "{report}");
    let inbox = app.inbox(&key).await;
    assert_eq!(app.raw_message(&key, inbox[0]["id"].as_str().unwrap()).await, SIMPLE);
    assert!(app.dir.path().join("smtp-tls-cert.pem").exists(), "a self-signed certificate was generated");
}

#[tokio::test]
async fn pipelined_commands_are_answered_in_order() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@pipe.test", "Pipe").await;
    let (_, key) = app.mailbox_with_key(&owner.token, "box@mail.test", &["mailbox.read"]).await;
    let (mut c, greeting) = RawSmtp::connect(app.smtp_addr).await;
    assert_eq!(greeting, 220);
    assert_eq!(c.cmd("EHLO pipe.test").await.0, 250);
    // One write: two whole transactions, a bad recipient and a NOOP, then QUIT.
    c.send(
        b"MAIL FROM:<a@sender.test>\r\nRCPT TO:<nobody@mail.test>\r\nRCPT TO:<box@mail.test>\r\nDATA\r\n\
Subject: one\r\n\r\nfirst\r\n.\r\nMAIL FROM:<b@sender.test>\r\nRCPT TO:<box@mail.test>\r\nDATA\r\n\
Subject: two\r\n\r\nsecond\r\n.\r\nNOOP\r\nQUIT\r\n",
    )
    .await;
    let mut codes = Vec::new();
    loop {
        let (code, _) = c.reply().await;
        if code == 0 {
            break;
        }
        codes.push(code);
    }
    assert_eq!(codes, [250, 550, 250, 354, 250, 250, 250, 354, 250, 250, 221]);
    let subjects: Vec<Value> = app.inbox(&key).await.iter().map(|m| m["subject"].clone()).collect();
    assert_eq!(subjects, [json!("two"), json!("one")]);
}

#[tokio::test]
async fn fifty_concurrent_senders_each_message_stored_once() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@many.test", "Many").await;
    let (_, key) = app.mailbox_with_key(&owner.token, "box@mail.test", &["mailbox.read"]).await;
    let report =
        app.send_smtp_with("a@sender.test", &["box@mail.test"], SIMPLE, &["--threads", "50", "--count", "2"]).await;
    assert_eq!(report["errors"], json!([]), "{report}");
    let replies = report["replies"].as_array().unwrap();
    assert_eq!(replies.len(), 100);
    let mut ids: Vec<String> = replies
        .iter()
        .map(|r| {
            assert_eq!(r[0], 250, "{r}");
            r[1].as_str().unwrap().rsplit(' ').next().unwrap().to_owned()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 100, "one stored message per 250");
    let stored = app.count("SELECT COUNT(*) FROM inbound_messages WHERE team_id = $1", &owner.team_id).await;
    assert_eq!(stored, 100);
    let events = app.count("SELECT COUNT(*) FROM events WHERE team_id = $1", &owner.team_id).await;
    assert_eq!(events, 100);
    let mut page = app.inbox(&key).await;
    page.retain(|m| ids.binary_search(&m["id"].as_str().unwrap().to_owned()).is_ok());
    assert_eq!(page.len(), 100);
}

#[tokio::test]
async fn recipients_in_several_mailboxes_and_teams_each_get_a_copy() {
    let app = TestApp::spawn().await;
    let a = app.signup("a@copies.test", "A").await;
    let b = app.signup("b@copies.test", "B").await;
    let (_, key_a1) = app.mailbox_with_key(&a.token, "one@mail.test", &["mailbox.read"]).await;
    let (_, key_a2) = app.mailbox_with_key(&a.token, "two@mail.test", &["mailbox.read"]).await;
    let (_, key_b) = app.mailbox_with_key(&b.token, "three@mail.test", &["mailbox.read"]).await;
    let report = app
        .send_smtp("s@sender.test", &["one@mail.test", "two@mail.test", "three@mail.test", "one@mail.test"], SIMPLE)
        .await;
    assert_eq!(data_code(&report), 250, "{report}");
    let mut ids = Vec::new();
    for key in [&key_a1, &key_a2, &key_b] {
        let inbox = app.inbox(key).await;
        assert_eq!(inbox.len(), 1, "exactly one copy each");
        let id = inbox[0]["id"].as_str().unwrap().to_owned();
        assert_eq!(app.raw_message(key, &id).await, SIMPLE);
        ids.push(id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 3);
    assert_eq!(app.count("SELECT COUNT(*) FROM events WHERE team_id = $1", &a.team_id).await, 2);
    assert_eq!(app.count("SELECT COUNT(*) FROM events WHERE team_id = $1", &b.team_id).await, 1);
}

#[tokio::test]
async fn recipient_connection_and_idle_limits_have_their_codes() {
    let app = TestApp::spawn_with(&[
        ("SENDMUX_SMTP_MAX_RECIPIENTS", "2"),
        ("SENDMUX_SMTP_MAX_CONNECTIONS_PER_IP", "2"),
        ("SENDMUX_SMTP_COMMAND_TIMEOUT_SECS", "1"),
    ])
    .await;
    let owner = app.signup("owner@caps.test", "Caps").await;
    for n in 1..=3 {
        app.create_mailbox(&owner.token, &format!("box{n}@mail.test")).await;
    }
    let (mut c, _) = RawSmtp::connect(app.smtp_addr).await;
    c.cmd("EHLO caps.test").await;
    c.cmd("MAIL FROM:<a@sender.test>").await;
    assert_eq!(c.cmd("RCPT TO:<box1@mail.test>").await.0, 250);
    assert_eq!(c.cmd("RCPT TO:<box2@mail.test>").await.0, 250);
    let (code, text) = c.cmd("RCPT TO:<box3@mail.test>").await;
    assert_eq!((code, &text[4..9]), (452, "4.5.3"), "{text}");
    let long = format!("NOOP {}", "x".repeat(2000));
    let (code, text) = c.cmd(&long).await;
    assert_eq!((code, &text[4..9]), (500, "5.5.2"), "{text}");

    // A second connection is fine, a third from the same address is turned away.
    let (_c2, greeting) = RawSmtp::connect(app.smtp_addr).await;
    assert_eq!(greeting, 220);
    let (mut c3, greeting) = RawSmtp::connect(app.smtp_addr).await;
    assert_eq!(greeting, 421);
    assert_eq!(c3.reply().await.0, 0, "closed after 421");

    // An idle client is told 421 4.4.2 once the command timeout passes, then closed.
    let (code, text) = c.reply().await;
    assert_eq!((code, &text[4..9]), (421, "4.4.2"), "{text}");
    assert_eq!(c.reply().await.0, 0);
    // Its slot is free again.
    eventually("a slot frees up", Duration::from_secs(10), || async { RawSmtp::connect(app.smtp_addr).await.1 == 220 })
        .await;
}

#[tokio::test]
async fn messages_injected_over_the_api_go_through_the_same_pipeline() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@inject.test", "Inject").await;
    let (mbx, reader) = app.mailbox_with_key(&owner.token, "box@mail.test", &["mailbox.read"]).await;
    let writer = app
        .create_key(
            &owner.token,
            json!({"name": "w", "kind": "mailbox", "mailbox_id": mbx["id"], "permissions": ["mailbox.read", "email.receive"]}),
        )
        .await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let inject = |key: &str, body: &'static [u8]| {
        app.req(reqwest::Method::POST, "/api/v1/mailbox/messages", key)
            .header("content-type", "message/rfc822")
            .body(body)
            .send()
    };
    expect_error(inject(&reader, SIMPLE).await.unwrap(), StatusCode::FORBIDDEN, "permission_denied").await;
    let created = expect_status(inject(&writer, SIMPLE).await.unwrap(), StatusCode::CREATED).await;
    assert_eq!(created["subject"], "Hello there");
    assert_eq!(created["source"], "api");
    let id = created["id"].as_str().unwrap();
    assert_eq!(app.raw_message(&reader, id).await, SIMPLE);
    let events = expect_status(app.get("/api/v1/events", &owner.token).await, StatusCode::OK).await;
    assert_eq!(events["data"][0]["data"]["message_id"], id);
    let res = app
        .req(reqwest::Method::POST, "/api/v1/mailbox/messages", &writer)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
    // The owner (admin role) injects under /mailboxes/{id}.
    let res = app
        .req(
            reqwest::Method::POST,
            &format!("/api/v1/mailboxes/{}/messages", mbx["id"].as_str().unwrap()),
            &owner.token,
        )
        .header("content-type", "message/rfc822")
        .body(SIMPLE)
        .send()
        .await
        .unwrap();
    expect_status(res, StatusCode::CREATED).await;
    assert_eq!(app.inbox(&reader).await.len(), 2);
}

#[tokio::test]
async fn a_mailbox_key_reaches_only_its_own_mailbox() {
    let app = TestApp::spawn().await;
    let a = app.signup("a@scope.test", "A").await;
    let b = app.signup("b@scope.test", "B").await;
    let (mbx1, key1) = app.mailbox_with_key(&a.token, "one@mail.test", &["mailbox.read"]).await;
    let (mbx2, key2) = app.mailbox_with_key(&a.token, "two@mail.test", &["mailbox.read"]).await;
    let (mbx_b, _) = app.mailbox_with_key(&b.token, "bee@mail.test", &["mailbox.read"]).await;
    app.send_smtp("s@sender.test", &["two@mail.test", "bee@mail.test"], SIMPLE).await;
    let other = app.inbox(&key2).await[0]["id"].as_str().unwrap().to_owned();
    assert!(app.inbox(&key1).await.is_empty());
    for path in [
        format!("/api/v1/mailbox/messages/{other}"),
        format!("/api/v1/mailbox/messages/{other}/raw"),
        format!("/api/v1/mailbox/messages/{other}/attachments/0"),
        format!("/api/v1/mailboxes/{}/messages", mbx2["id"].as_str().unwrap()),
        format!("/api/v1/mailboxes/{}/messages/{other}", mbx2["id"].as_str().unwrap()),
    ] {
        expect_error(app.get(&path, &key1).await, StatusCode::NOT_FOUND, "not_found").await;
    }
    // Its own mailbox by id works; another team's mailbox and message are 404 to people too.
    let own = format!("/api/v1/mailboxes/{}/messages", mbx1["id"].as_str().unwrap());
    expect_status(app.get(&own, &key1).await, StatusCode::OK).await;
    let b_msgs = format!("/api/v1/mailboxes/{}/messages", mbx_b["id"].as_str().unwrap());
    expect_error(app.get(&b_msgs, &a.token).await, StatusCode::NOT_FOUND, "not_found").await;
    let b_msg = format!("/api/v1/mailboxes/{}/messages/{other}", mbx2["id"].as_str().unwrap());
    expect_error(app.get(&b_msg, &b.token).await, StatusCode::NOT_FOUND, "not_found").await;
    // A member may read, a member may not inject.
    let member = app.add_member(&a, "m@scope.test", "member").await;
    expect_status(
        app.get(&format!("/api/v1/mailboxes/{}/messages", mbx2["id"].as_str().unwrap()), &member.token).await,
        StatusCode::OK,
    )
    .await;
    let res = app
        .req(
            reqwest::Method::POST,
            &format!("/api/v1/mailboxes/{}/messages", mbx2["id"].as_str().unwrap()),
            &member.token,
        )
        .header("content-type", "message/rfc822")
        .body(SIMPLE)
        .send()
        .await
        .unwrap();
    expect_error(res, StatusCode::FORBIDDEN, "permission_denied").await;
    let bad = expect_error(
        app.get("/api/v1/mailbox/messages?spam=maybe", &key1).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    assert_eq!(bad["param"], "spam");
}

#[tokio::test]
async fn messages_past_their_mailbox_retention_are_deleted_with_their_bodies() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@ret.test", "Ret").await;
    let (_, key) = app.mailbox_with_key(&owner.token, "box@mail.test", &["mailbox.read"]).await;
    app.send_smtp("s@sender.test", &["box@mail.test"], SIMPLE).await;
    app.send_smtp("s@sender.test", &["box@mail.test"], SIMPLE).await;
    let inbox = app.inbox(&key).await;
    let (fresh, old) = (inbox[0]["id"].as_str().unwrap(), inbox[1]["id"].as_str().unwrap());
    let (old_body, fresh_body) = (app.body_key(old).await, app.body_key(fresh).await);
    assert!(app.body_on_disk(&old_body).await);
    let thirty_one_days_ago = sendmux::store::now_ms() - 31 * 86_400_000;
    sqlx::query("UPDATE inbound_messages SET received_at = $1 WHERE id = $2")
        .bind(thirty_one_days_ago)
        .bind(old)
        .execute(app.state.store.pool())
        .await
        .unwrap();
    assert_eq!(sendmux::jobs::expire_messages(&app.state.storage()).await.unwrap(), 1);
    let left: Vec<Value> = app.inbox(&key).await.iter().map(|m| m["id"].clone()).collect();
    assert_eq!(left, [json!(fresh)]);
    assert!(!app.body_on_disk(&old_body).await, "the body went with the row");
    assert_eq!(app.count("SELECT COUNT(*) FROM blob_erasures WHERE key LIKE $1 || '%'", &owner.team_id).await, 0);
    assert!(app.body_on_disk(&fresh_body).await, "the other message keeps its body");
    let bytes: i64 =
        sqlx::query_scalar("SELECT CAST(SUM(delta_bytes) AS BIGINT) FROM storage_changes WHERE team_id = $1")
            .bind(&owner.team_id)
            .fetch_one(app.state.store.pool())
            .await
            .unwrap();
    assert_eq!(bytes, SIMPLE.len() as i64, "stored bytes fall when a body is deleted");
}

/// A deletion queues its bodies for erasure in its own transaction; if the process dies
/// before erasing them, maintenance does.
#[tokio::test]
async fn bodies_a_crash_left_after_their_deletion_are_erased_by_maintenance() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@erase.test", "Erase").await;
    let (_, key) = app.mailbox_with_key(&owner.token, "box@mail.test", &["mailbox.read"]).await;
    app.send_smtp("s@sender.test", &["box@mail.test"], SIMPLE).await;
    let id = app.inbox(&key).await[0]["id"].as_str().unwrap().to_owned();
    let body = app.body_key(&id).await;
    // What the deleting transaction left when the process died right after its commit.
    let pool = app.state.store.pool();
    sqlx::query("DELETE FROM inbound_messages WHERE id = $1").bind(&id).execute(pool).await.unwrap();
    sqlx::query("INSERT INTO blob_erasures (key, created_at) VALUES ($1, $2)")
        .bind(&body)
        .bind(sendmux::store::now_ms() - 120_000)
        .execute(pool)
        .await
        .unwrap();
    assert!(app.body_on_disk(&body).await);
    sendmux::jobs::maintenance_once(&app.state.storage()).await.unwrap();
    assert!(!app.body_on_disk(&body).await, "maintenance erased it");
    assert_eq!(app.count("SELECT COUNT(*) FROM blob_erasures WHERE key LIKE $1 || '%'", &owner.team_id).await, 0);
}

#[tokio::test]
async fn deleting_a_mailbox_deletes_its_messages_and_their_bodies() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@del.test", "Del").await;
    let mbx = app.create_mailbox(&owner.token, "box@mail.test").await;
    let report = app.send_smtp("s@sender.test", &["box@mail.test"], SIMPLE).await;
    let id = report["data"][1].as_str().unwrap().rsplit(' ').next().unwrap().to_owned();
    let body = app.body_key(&id).await;
    assert!(app.body_on_disk(&body).await);
    let res = app.delete(&format!("/api/v1/mailboxes/{}", mbx["id"].as_str().unwrap()), &owner.token).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert!(!app.body_on_disk(&body).await);
    assert_eq!(app.count("SELECT COUNT(*) FROM inbound_messages WHERE team_id = $1", &owner.team_id).await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM blob_erasures WHERE key LIKE $1 || '%'", &owner.team_id).await, 0);
    let bytes: i64 =
        sqlx::query_scalar("SELECT CAST(SUM(delta_bytes) AS BIGINT) FROM storage_changes WHERE team_id = $1")
            .bind(&owner.team_id)
            .fetch_one(app.state.store.pool())
            .await
            .unwrap();
    assert_eq!(bytes, 0);
}

#[tokio::test]
async fn connections_over_the_overall_limit_are_turned_away() {
    let app = TestApp::spawn_with(&[("SENDMUX_SMTP_MAX_CONNECTIONS", "1")]).await;
    let (mut first, greeting) = RawSmtp::connect(app.smtp_addr).await;
    assert_eq!(greeting, 220);
    let (_, greeting) = RawSmtp::connect(app.smtp_addr).await;
    assert_eq!(greeting, 421);
    assert_eq!(first.cmd("QUIT").await.0, 221);
    eventually("the slot is free after QUIT", Duration::from_secs(10), || async {
        RawSmtp::connect(app.smtp_addr).await.1 == 220
    })
    .await;
}

#[tokio::test]
async fn smtputf8_and_8bitmime_envelopes_are_accepted() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@utf8.test", "Utf8").await;
    let (_, key) = app.mailbox_with_key(&owner.token, "box@mail.test", &["mailbox.read"]).await;
    let (mut c, _) = RawSmtp::connect(app.smtp_addr).await;
    assert_eq!(c.cmd("EHLO utf8.test").await.0, 250);
    let (code, text) = c.cmd("MAIL FROM:<josé@expéditeur.test> BODY=8BITMIME SMTPUTF8").await;
    assert_eq!(code, 250, "{text}");
    assert_eq!(c.cmd("RCPT TO:<box@mail.test>").await.0, 250);
    assert_eq!(c.cmd("DATA").await.0, 354);
    let body = "From: José <josé@expéditeur.test>\r\nSubject: Grüße aus Köln\r\n\r\nÇa va très bien.\r\n";
    c.send(format!("{body}.\r\n").as_bytes()).await;
    assert_eq!(c.reply().await.0, 250);
    let inbox = app.inbox(&key).await;
    assert_eq!(inbox[0]["subject"], "Grüße aus Köln");
    assert_eq!(inbox[0]["envelope"]["mail_from"], "josé@expéditeur.test");
    assert_eq!(app.raw_message(&key, inbox[0]["id"].as_str().unwrap()).await, body.as_bytes());
}
