//! Receiving on team domains over real SMTP (API.md §6, §14): an exact address, the
//! `*@domain` catch-all, `local+tag@domain` with `plus_tag`; `550 5.1.1` for an unknown
//! address on a domain without a catch-all and for a domain that is not (or no longer)
//! verified.

use crate::domains::*;
use crate::helpers::*;
use serde_json::{Value, json};

const MAIL: &[u8] = b"From: Ann <ann@sender.test>\r\nTo: someone\r\nSubject: Hi\r\n\r\nHello there.\r\n";

async fn deliver(app: &TestApp, to: &str) -> Value {
    app.send_smtp("ann@sender.test", &[to], MAIL).await
}

fn accepted(report: &Value) -> bool {
    report["rcpt"][0][0] == 250 && report["data"][0] == 250
}

fn refused_unknown(report: &Value) -> bool {
    report["rcpt"][0][0] == 550 && report["rcpt"][0][1].as_str().is_some_and(|t| t.starts_with("5.1.1"))
}

#[tokio::test]
async fn team_domains_receive_exact_catch_all_and_plus_addressed_mail() {
    let dns = DnsServer::start(&[]).await;
    let app = app_with_dns(&dns, &[]).await;
    let owner = app.signup("owner@inbound.test", "Inbound").await;
    let open = add_domain(&app, &owner.token, json!({"name": "open.example", "dkim_algorithm": "ed25519"})).await;
    let strict = add_domain(&app, &owner.token, json!({"name": "strict.example", "dkim_algorithm": "ed25519"})).await;
    let later = add_domain(&app, &owner.token, json!({"name": "later.example", "dkim_algorithm": "ed25519"})).await;
    let mut records = published(&open);
    records.extend(published(&strict));
    serve(&dns, &records);
    verify(&app, &owner.token, &open).await;
    verify(&app, &owner.token, &strict).await;
    let perms = ["mailbox.read"];
    let (_, hello) = app.mailbox_with_key(&owner.token, "hello@open.example", &perms).await;
    let (_, any) = app.mailbox_with_key(&owner.token, "*@open.example", &perms).await;
    let (_, only) = app.mailbox_with_key(&owner.token, "only@strict.example", &perms).await;
    let (_, operator) = app.mailbox_with_key(&owner.token, "box@mail.test", &perms).await;

    assert!(accepted(&deliver(&app, "Hello@Open.Example").await));
    assert!(accepted(&deliver(&app, "hello+news@open.example").await));
    assert!(accepted(&deliver(&app, "random@open.example").await));
    assert!(accepted(&deliver(&app, "random+deals@open.example").await));
    assert!(accepted(&deliver(&app, "only+x@strict.example").await));
    assert!(accepted(&deliver(&app, "box+ops@mail.test").await));
    let tags = |inbox: Vec<Value>| -> Vec<(String, Value)> {
        let mut out: Vec<(String, Value)> = inbox
            .iter()
            .map(|m| (m["envelope"]["rcpt_to"].as_str().unwrap().to_owned(), m["plus_tag"].clone()))
            .collect();
        out.reverse();
        out
    };
    assert_eq!(
        tags(app.inbox(&hello).await),
        vec![("hello@open.example".into(), Value::Null), ("hello@open.example".into(), json!("news"))]
    );
    assert_eq!(
        tags(app.inbox(&any).await),
        vec![("*@open.example".into(), Value::Null), ("*@open.example".into(), json!("deals"))]
    );
    assert_eq!(tags(app.inbox(&only).await), vec![("only@strict.example".into(), json!("x"))]);
    assert_eq!(tags(app.inbox(&operator).await), vec![("box@mail.test".into(), json!("ops"))]);
    let one = &app.inbox(&hello).await[0];
    let detail = expect_status(
        app.get(&format!("/api/v1/mailbox/messages/{}", one["id"].as_str().unwrap()), &hello).await,
        reqwest::StatusCode::OK,
    )
    .await;
    assert_eq!(detail["plus_tag"], "news");

    // No catch-all: an unknown address is 550 5.1.1; so is every address of a domain that
    // is not verified, and the catch-all address itself.
    assert!(refused_unknown(&deliver(&app, "nobody@strict.example").await));
    assert!(refused_unknown(&deliver(&app, "anyone@later.example").await));
    assert!(refused_unknown(&deliver(&app, "*@open.example").await));
    assert!(refused_unknown(&deliver(&app, "anyone@unknown.example").await));
    let _ = later;

    // The domain's records vanish: it fails, and its mailboxes stop receiving.
    serve(&dns, &published(&open));
    assert_eq!(verify(&app, &owner.token, &strict).await["status"], "failed");
    assert!(refused_unknown(&deliver(&app, "only@strict.example").await));
    assert!(accepted(&deliver(&app, "hello@open.example").await));
    // Back again.
    serve(&dns, &records);
    assert_eq!(verify(&app, &owner.token, &strict).await["status"], "verified");
    assert!(accepted(&deliver(&app, "only@strict.example").await));
}
