//! Sending from a mailbox (SPEC §16): a conversation end to end — mail in over SMTP, the
//! agent replies with its mailbox key, the reply reaches a real SMTP server (aiosmtpd)
//! with the right headers, the correspondent answers, one thread — plus forward, new
//! mail, the `mailbox.send` permission and every `send_policy` rule.

use crate::helpers::*;
use crate::mail_servers::*;
use crate::outbound::{group, smtp_provider};
use mail_parser::MessageParser;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

/// A team with a mailbox whose mail goes out through an SMTP server on `port`, and a
/// mailbox key with `perms`.
async fn agent_mailbox(app: &TestApp, port: u16, perms: &[&str]) -> (Person, String, String) {
    let owner = app.signup("owner@agent.test", "Agent").await;
    let prv = smtp_provider(app, &owner.token, "relay", port, None).await;
    let g = group(app, &owner.token, "failover", json!([{"provider_id": prv}])).await;
    let (mbx, key) = app.mailbox_with_key(&owner.token, "support@mail.test", perms).await;
    let mbx_id = mbx["id"].as_str().unwrap().to_owned();
    let res = app
        .patch(&format!("/api/v1/mailboxes/{mbx_id}/settings"), &owner.token, json!({"send_delivery_group_id": g}))
        .await;
    let out = expect_status(res, StatusCode::OK).await;
    assert_eq!(out["settings"]["send_delivery_group_id"], g.as_str());
    (owner, mbx_id, key)
}

fn header<'a>(m: &'a mail_parser::Message<'a>, name: &str) -> Option<String> {
    m.header_raw(name).map(|v| v.trim().to_owned())
}

#[tokio::test]
async fn an_agent_answers_mail_over_smtp_and_the_conversation_is_one_thread() {
    let relay = SmtpServer::start(None).await;
    let app = TestApp::spawn().await;
    let (owner, mbx_id, key) = agent_mailbox(&app, relay.port, &["mailbox.read", "mailbox.send"]).await;

    // 1. Carol writes over SMTP.
    let first =
        b"From: Carol <carol@ext.test>\r\nTo: support@mail.test\r\nCc: dan@ext.test\r\nSubject: Broken widget\r\n\
Message-ID: <w1@ext.test>\r\nDate: Tue, 01 Dec 2026 10:00:00 +0000\r\n\r\nMy widget is broken.\r\n";
    let report = app.send_smtp("carol@ext.test", &["support@mail.test"], first).await;
    assert_eq!(report["data"][0], 250, "{report}");
    let inbox = app.inbox(&key).await;
    let original = inbox[0]["id"].as_str().unwrap().to_owned();
    let thread = inbox[0]["thread_id"].as_str().unwrap().to_owned();

    // 2. The agent replies to all with its mailbox key.
    let res = app
        .post(
            &format!("/api/v1/mailbox/messages/{original}/reply"),
            &key,
            json!({"text": "Sorry! A new one is on its way.", "reply_all": true}),
        )
        .await;
    let sent = expect_status(res, StatusCode::ACCEPTED).await;
    assert_eq!(sent["status"], "queued");
    assert_eq!(sent["thread_id"], thread.as_str());
    let sent_id = sent["id"].as_str().unwrap().to_owned();

    // 3. It reaches the SMTP server from the mailbox's address with the thread's headers.
    eventually("the reply is delivered", Duration::from_secs(20), || async {
        let e = expect_status(app.get(&format!("/api/v1/emails/{sent_id}"), &owner.token).await, StatusCode::OK).await;
        e["status"] == "delivered"
    })
    .await;
    let got = relay.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].mail_from, "support@mail.test");
    let mut rcpts = got[0].rcpt_tos.clone();
    rcpts.sort();
    assert_eq!(rcpts, vec!["carol@ext.test", "dan@ext.test"], "reply-all: sender and Cc, never the mailbox");
    let parsed = MessageParser::default().parse(&got[0].data).unwrap();
    assert_eq!(parsed.from().unwrap().first().unwrap().address(), Some("support@mail.test"));
    assert_eq!(parsed.subject(), Some("Re: Broken widget"));
    assert_eq!(header(&parsed, "In-Reply-To").as_deref(), Some("<w1@ext.test>"));
    assert_eq!(header(&parsed, "References").as_deref(), Some("<w1@ext.test>"));
    let reply_id = parsed.message_id().unwrap().to_owned();
    assert_eq!(sent["message_id_header"], format!("<{reply_id}>"));

    // The copy is in the mailbox, outbound, in the thread; events carry the thread.
    let copy = expect_status(app.get(&format!("/api/v1/mailbox/messages/{sent_id}"), &key).await, StatusCode::OK).await;
    assert_eq!(copy["direction"], "outbound");
    assert_eq!(copy["thread_id"], thread.as_str());
    assert_eq!(copy["extracted_text"], "Sorry! A new one is on its way.");
    let events =
        expect_status(app.get("/api/v1/events?type=message.delivered", &owner.token).await, StatusCode::OK).await;
    assert_eq!(events["data"][0]["data"]["thread_id"], thread.as_str());
    assert_eq!(events["data"][0]["data"]["message_id"], sent_id.as_str());

    // 4. Carol answers from Apple Mail; all three messages are one thread.
    let answer = format!(
        "From: Carol <carol@ext.test>\r\nTo: support@mail.test\r\nSubject: Re: Broken widget\r\nMessage-ID: <w3@ext.test>\r\n\
In-Reply-To: <{reply_id}>\r\nReferences: <w1@ext.test> <{reply_id}>\r\n\r\nThanks, it arrived!\r\n\r\n\
> On 1 Dec 2026, at 10:05, Support <support@mail.test> wrote:\r\n> \r\n> Sorry! A new one is on its way.\r\n"
    );
    let report = app.send_smtp("carol@ext.test", &["support@mail.test"], answer.as_bytes()).await;
    assert_eq!(report["data"][0], 250, "{report}");
    let view = expect_status(app.get(&format!("/api/v1/mailbox/threads/{thread}"), &key).await, StatusCode::OK).await;
    let msgs = view["messages"].as_array().unwrap();
    let directions: Vec<&str> = msgs.iter().map(|m| m["direction"].as_str().unwrap()).collect();
    assert_eq!(directions, vec!["inbound", "outbound", "inbound"]);
    assert_eq!(msgs[2]["extracted_text"], "Thanks, it arrived!");
    let threads =
        expect_status(app.get(&format!("/api/v1/mailboxes/{mbx_id}/threads"), &owner.token).await, StatusCode::OK)
            .await;
    assert_eq!(threads["data"].as_array().unwrap().len(), 1);
    assert_eq!(threads["data"][0]["message_count"], 3);

    // Forward and new mail go out from the mailbox too.
    let res = app
        .post(
            &format!("/api/v1/mailbox/messages/{original}/forward"),
            &key,
            json!({"to": ["eng@ext.test"], "text": "See below"}),
        )
        .await;
    let fwd = expect_status(res, StatusCode::ACCEPTED).await;
    assert_eq!(fwd["thread_id"], thread.as_str());
    let res = app
        .post("/api/v1/mailbox/send", &key, json!({"to": ["erin@ext.test"], "subject": "Hello", "text": "Hi Erin"}))
        .await;
    let new = expect_status(res, StatusCode::ACCEPTED).await;
    assert_ne!(new["thread_id"], thread.as_str());
    eventually("both are delivered", Duration::from_secs(20), || async { relay.received().len() == 3 }).await;
    let got = relay.received();
    let fwd_mail = got.iter().find(|r| r.rcpt_tos == ["eng@ext.test"]).unwrap();
    let parsed = MessageParser::default().parse(&fwd_mail.data).unwrap();
    assert_eq!(parsed.subject(), Some("Fwd: Broken widget"));
    assert!(parsed.body_text(0).unwrap().contains("My widget is broken."));
}

#[tokio::test]
async fn sending_needs_the_permission_a_group_and_stays_within_the_policy() {
    let relay = SmtpServer::start(None).await;
    let app = TestApp::spawn_with(&[("SENDMUX_OUTBOUND_WORKERS", "0")]).await;
    let (owner, mbx_id, key) =
        agent_mailbox(&app, relay.port, &["mailbox.read", "mailbox.send", "mailbox.settings.update"]).await;
    let first = b"From: Carol <carol@ext.test>\r\nTo: support@mail.test\r\nSubject: Hi\r\nMessage-ID: <p1@ext.test>\r\n\r\nHello\r\n";
    let report = app.send_smtp("carol@ext.test", &["support@mail.test"], first).await;
    assert_eq!(report["data"][0], 250, "{report}");
    let original = app.inbox(&key).await[0]["id"].as_str().unwrap().to_owned();

    // mailbox.send is not a default: a key without it is refused.
    let plain = app.create_key(&owner.token, json!({"name": "ro", "kind": "mailbox", "mailbox_id": mbx_id})).await;
    assert!(!plain["permissions"].as_array().unwrap().iter().any(|p| p == "mailbox.send"), "{plain}");
    let plain = plain["key"].as_str().unwrap();
    let res =
        app.post("/api/v1/mailbox/send", plain, json!({"to": ["carol@ext.test"], "subject": "x", "text": "y"})).await;
    expect_error(res, StatusCode::FORBIDDEN, "permission_denied").await;

    // The agent cannot loosen its own guardrails.
    let res = app.patch("/api/v1/mailbox/settings", &key, json!({"send_policy": {"reply_only": false}})).await;
    expect_error(res, StatusCode::FORBIDDEN, "permission_denied").await;

    // Policies set by a person: each rule refuses with 403 naming it, and is audited.
    let set = |policy: Value| {
        let app = &app;
        let owner = &owner;
        let mbx_id = &mbx_id;
        async move {
            let res = app
                .patch(&format!("/api/v1/mailboxes/{mbx_id}/settings"), &owner.token, json!({"send_policy": policy}))
                .await;
            expect_status(res, StatusCode::OK).await
        }
    };
    let out = set(json!({"reply_only": true})).await;
    assert_eq!(out["settings"]["send_policy"]["reply_only"], true);
    let res = app
        .post("/api/v1/mailbox/send", &key, json!({"to": ["stranger@else.test"], "subject": "x", "text": "y"}))
        .await;
    let err = expect_error(res, StatusCode::FORBIDDEN, "permission_denied").await;
    assert_eq!(err["param"], "send_policy.reply_only");
    assert!(err["message"].as_str().unwrap().contains("reply_only"));
    let res =
        app.post("/api/v1/mailbox/send", &key, json!({"to": ["Carol@ext.test"], "subject": "x", "text": "y"})).await;
    expect_status(res, StatusCode::ACCEPTED).await;

    set(json!({"allowed_domains": ["partner.test"]})).await;
    let res = app.post(&format!("/api/v1/mailbox/messages/{original}/reply"), &key, json!({"text": "hi"})).await;
    let err = expect_error(res, StatusCode::FORBIDDEN, "permission_denied").await;
    assert_eq!(err["param"], "send_policy.allowed_domains");
    let res =
        app.post("/api/v1/mailbox/send", &key, json!({"to": ["bob@partner.test"], "subject": "x", "text": "y"})).await;
    expect_status(res, StatusCode::ACCEPTED).await;

    set(json!({"daily_limit": 3})).await;
    let res = app.post(&format!("/api/v1/mailbox/messages/{original}/reply"), &key, json!({"text": "third"})).await;
    expect_status(res, StatusCode::ACCEPTED).await;
    let res = app.post(&format!("/api/v1/mailbox/messages/{original}/reply"), &key, json!({"text": "fourth"})).await;
    let err = expect_error(res, StatusCode::FORBIDDEN, "permission_denied").await;
    assert_eq!(err["param"], "send_policy.daily_limit");

    let logs = expect_status(app.get("/api/v1/logs?kind=audit&limit=100", &owner.token).await, StatusCode::OK).await;
    let refused: Vec<&Value> =
        logs["data"].as_array().unwrap().iter().filter(|e| e["action"] == "mailbox.send_refused").collect();
    assert_eq!(refused.len(), 3, "{logs}");

    // Bad policies and groups are 422 naming the field; a mailbox without a group is 409.
    let res = app
        .patch(
            &format!("/api/v1/mailboxes/{mbx_id}/settings"),
            &owner.token,
            json!({"send_policy": {"daily_limit": 0}}),
        )
        .await;
    assert_eq!(
        expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await["param"],
        "send_policy.daily_limit"
    );
    let res = app
        .patch(
            &format!("/api/v1/mailboxes/{mbx_id}/settings"),
            &owner.token,
            json!({"send_policy": {"allowed_domains": ["not a domain"]}}),
        )
        .await;
    assert_eq!(
        expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await["param"],
        "send_policy.allowed_domains[0]"
    );
    let other = app.signup("other@agent.test", "Other").await;
    let prv = smtp_provider(&app, &other.token, "relay", relay.port, None).await;
    let their_group = group(&app, &other.token, "failover", json!([{"provider_id": prv}])).await;
    let res = app
        .patch(
            &format!("/api/v1/mailboxes/{mbx_id}/settings"),
            &owner.token,
            json!({"send_delivery_group_id": their_group}),
        )
        .await;
    expect_error(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = app
        .patch(&format!("/api/v1/mailboxes/{mbx_id}/settings"), &owner.token, json!({"send_delivery_group_id": null}))
        .await;
    expect_status(res, StatusCode::OK).await;
    let res =
        app.post("/api/v1/mailbox/send", &key, json!({"to": ["bob@partner.test"], "subject": "x", "text": "y"})).await;
    expect_error(res, StatusCode::CONFLICT, "conflict").await;
    // Another mailbox's message is 404.
    let res =
        app.post("/api/v1/mailbox/messages/msg_01J1M9C3K8ZQ4W8N5T2V7X6Y3B/reply", &key, json!({"text": "x"})).await;
    assert!(res.status() == StatusCode::CONFLICT || res.status() == StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn concurrent_sends_cannot_pass_the_daily_limit_together() {
    let relay = SmtpServer::start(None).await;
    let app = TestApp::spawn().await;
    let (owner, mbx_id, key) = agent_mailbox(&app, relay.port, &["mailbox.read", "mailbox.send"]).await;
    let res = app
        .patch(
            &format!("/api/v1/mailboxes/{mbx_id}/settings"),
            &owner.token,
            json!({"send_policy": {"daily_limit": 3}}),
        )
        .await;
    expect_status(res, StatusCode::OK).await;
    // Ten sends at once: exactly three are queued, the rest refused naming the rule.
    let sends = (0..10).map(|i| {
        app.post(
            "/api/v1/mailbox/send",
            &key,
            json!({"to": ["x@partner.test"], "subject": format!("n{i}"), "text": "y"}),
        )
    });
    let mut accepted = 0;
    for res in futures::future::join_all(sends).await {
        match res.status() {
            StatusCode::ACCEPTED => accepted += 1,
            _ => assert_eq!(
                expect_error(res, StatusCode::FORBIDDEN, "permission_denied").await["param"],
                "send_policy.daily_limit"
            ),
        }
    }
    assert_eq!(accepted, 3);
}

#[tokio::test]
async fn a_message_with_overlong_ids_can_still_be_answered() {
    let relay = SmtpServer::start(None).await;
    let app = TestApp::spawn().await;
    let (_, _, key) = agent_mailbox(&app, relay.port, &["mailbox.read", "mailbox.send"]).await;
    let long = format!("{}@ext.test", "x".repeat(900));
    let raw = format!(
        "From: Carol <carol@ext.test>\r\nTo: support@mail.test\r\nSubject: Long ids\r\nMessage-ID: <{long}>\r\n\
References: <ok1@ext.test> <{long}>\r\n\r\nHello\r\n"
    );
    let report = app.send_smtp("carol@ext.test", &["support@mail.test"], raw.as_bytes()).await;
    assert_eq!(report["data"][0], 250, "{report}");
    let original = app.inbox(&key).await[0]["id"].as_str().unwrap().to_owned();
    let res = app.post(&format!("/api/v1/mailbox/messages/{original}/reply"), &key, json!({"text": "Hi"})).await;
    expect_status(res, StatusCode::ACCEPTED).await;
    let res =
        app.post(&format!("/api/v1/mailbox/messages/{original}/forward"), &key, json!({"to": ["dan@ext.test"]})).await;
    expect_status(res, StatusCode::ACCEPTED).await;
    sendmux::outbound::worker::run_pending_jobs(&app.state).await.unwrap();
    let sent = relay.received();
    let reply = sent.iter().find(|m| String::from_utf8_lossy(&m.data).contains("Re: Long ids")).expect("the reply");
    let text = String::from_utf8_lossy(&reply.data);
    assert!(text.contains("<ok1@ext.test>"), "the usable reference stays: {text}");
    assert!(!text.contains(&long), "the overlong id is left out");
}
