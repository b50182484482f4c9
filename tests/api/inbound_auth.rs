//! Sender authentication and the spam verdict, with a real DNS server on loopback
//! serving the test's SPF, DKIM and DMARC records (SENDMUX_DNS_SERVER).

use crate::helpers::*;
use base64::Engine;
use mail_auth::common::crypto::Ed25519Key;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use reqwest::StatusCode;
use serde_json::{Value, json};

// An Ed25519 key pair for the test domain's DKIM selector (RFC 8463 style, base64).
const ED25519_SEED: &str = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";
const ED25519_PUBLIC: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn signed(message: &[u8]) -> Vec<u8> {
    let key = Ed25519Key::from_seed_and_public_key(&b64(ED25519_SEED), &b64(ED25519_PUBLIC)).unwrap();
    let signature = DkimSigner::from_key(key)
        .domain("signed.test")
        .selector("sel")
        .headers(["From", "To", "Subject", "Date"])
        .sign(message)
        .unwrap();
    let mut out = signature.to_header().into_bytes();
    out.extend_from_slice(message);
    out
}

async fn dns() -> DnsServer {
    let dkim = format!("v=DKIM1; k=ed25519; p={ED25519_PUBLIC}");
    DnsServer::start(&[
        ("sel._domainkey.signed.test", dkim.as_str()),
        ("signed.test", "v=spf1 ip4:127.0.0.0/8 -all"),
        ("_dmarc.signed.test", "v=DMARC1; p=reject"),
        ("forged.test", "v=spf1 ip4:192.0.2.1 -all"),
        ("_dmarc.forged.test", "v=DMARC1; p=reject"),
    ])
    .await
}

async fn latest(app: &TestApp, key: &str) -> Value {
    let inbox = app.inbox(key).await;
    let id = inbox[0]["id"].as_str().unwrap();
    expect_status(app.get(&format!("/api/v1/mailbox/messages/{id}"), key).await, StatusCode::OK).await
}

const MESSAGE: &[u8] = b"From: News <news@signed.test>\r\nTo: box@mail.test\r\nSubject: Signed news\r\n\
Date: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <n1@signed.test>\r\n\r\nThe real body.\r\n";

#[tokio::test]
async fn a_dkim_signed_message_verifies_and_a_tampered_copy_fails() {
    let dns = dns().await;
    let app = TestApp::spawn_with(&[("SENDMUX_DNS_SERVER", &dns.addr)]).await;
    let owner = app.signup("owner@dkim.test", "Dkim").await;
    let (_, key) = app.mailbox_with_key(&owner.token, "box@mail.test", &["mailbox.read"]).await;

    let good = signed(MESSAGE);
    let report = app.send_smtp("news@signed.test", &["box@mail.test"], &good).await;
    assert_eq!(report["data"][0], 250, "{report}");
    let m = latest(&app, &key).await;
    let auth = &m["authentication"];
    assert_eq!(auth["dkim"], json!([{"result": "pass", "domain": "signed.test", "selector": "sel"}]), "{m}");
    assert_eq!(auth["spf"]["result"], "pass", "{auth}");
    assert_eq!(auth["dmarc"]["result"], "pass", "{auth}");
    assert_eq!(m["spam"]["verdict"], "ham");
    assert_eq!(app.raw_message(&key, m["id"].as_str().unwrap()).await, good, "stored exactly, signature included");

    let tampered = String::from_utf8(good.clone()).unwrap().replace("The real body.", "A forged body.").into_bytes();
    app.send_smtp("news@signed.test", &["box@mail.test"], &tampered).await;
    let m = latest(&app, &key).await;
    assert_eq!(m["authentication"]["dkim"][0]["result"], "fail", "{m}");
    let signals: Vec<&str> =
        m["spam"]["signals"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert!(signals.contains(&"dkim_fail"), "{signals:?}");
}

#[tokio::test]
async fn the_spam_threshold_switches_the_event_type_and_accept_spam_refuses() {
    let dns = dns().await;
    let app = TestApp::spawn_with(&[("SENDMUX_DNS_SERVER", &dns.addr)]).await;
    let owner = app.signup("owner@spam.test", "Spam").await;
    let (mbx, key) =
        app.mailbox_with_key(&owner.token, "box@mail.test", &["mailbox.read", "mailbox.settings.update"]).await;
    let forged = b"From: Bank <alerts@forged.test>\r\nTo: box@mail.test\r\nSubject: Your account\r\n\
Date: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <f1@forged.test>\r\n\r\nPlease log in.\r\n";

    // SPF fails (+3) and DMARC fails with p=reject (+4): 7, over the default threshold 5.
    let report = app.send_smtp("alerts@forged.test", &["box@mail.test"], forged).await;
    assert_eq!(report["data"][0], 250, "{report}");
    let m = latest(&app, &key).await;
    assert_eq!(m["authentication"]["spf"]["result"], "fail", "{m}");
    assert_eq!(m["authentication"]["dmarc"]["result"], "fail", "{m}");
    assert_eq!(m["spam"]["score"], 7.0, "{m}");
    assert_eq!(m["spam"]["verdict"], "spam");
    let events = expect_status(app.get("/api/v1/events", &owner.token).await, StatusCode::OK).await;
    assert_eq!(events["data"][0]["type"], "message.received.spam");

    // Raise the threshold: the same message is no longer spam.
    let res = app.patch("/api/v1/mailbox/settings", &key, json!({"spam_threshold": 10})).await;
    expect_status(res, StatusCode::OK).await;
    app.send_smtp("alerts@forged.test", &["box@mail.test"], forged).await;
    let events = expect_status(app.get("/api/v1/events", &owner.token).await, StatusCode::OK).await;
    assert_eq!(events["data"][0]["type"], "message.received");
    assert_eq!(latest(&app, &key).await["spam"]["verdict"], "ham");

    // Exactly at the threshold is spam.
    let res = app.patch("/api/v1/mailbox/settings", &key, json!({"spam_threshold": 7})).await;
    expect_status(res, StatusCode::OK).await;
    app.send_smtp("alerts@forged.test", &["box@mail.test"], forged).await;
    let events = expect_status(app.get("/api/v1/events", &owner.token).await, StatusCode::OK).await;
    assert_eq!(events["data"][0]["type"], "message.received.spam");

    // The spam filter of the list.
    let spam = expect_status(app.get("/api/v1/mailbox/messages?spam=true", &key).await, StatusCode::OK).await;
    assert_eq!(spam["data"].as_array().unwrap().len(), 2);
    let ham = expect_status(app.get("/api/v1/mailbox/messages?spam=false", &key).await, StatusCode::OK).await;
    assert_eq!(ham["data"].as_array().unwrap().len(), 1);

    // A mailbox that refuses spam says 550 5.7.1 at the end of DATA and stores nothing.
    let path = format!("/api/v1/mailboxes/{}/settings", mbx["id"].as_str().unwrap());
    expect_status(
        app.patch(&path, &owner.token, json!({"spam_threshold": 5, "accept_spam": false})).await,
        StatusCode::OK,
    )
    .await;
    let report = app.send_smtp("alerts@forged.test", &["box@mail.test"], forged).await;
    assert_eq!(report["data"][0], 550, "{report}");
    assert!(report["data"][1].as_str().unwrap().starts_with("5.7.1"), "{report}");
    assert_eq!(app.inbox(&key).await.len(), 3);
    // Signed mail from the good domain still gets in.
    let report = app.send_smtp("news@signed.test", &["box@mail.test"], &signed(MESSAGE)).await;
    assert_eq!(report["data"][0], 250, "{report}");
}
