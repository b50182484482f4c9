//! Sending from team domains (API.md §5 "Sender identity", §14): mail from a verified
//! domain reaches a real SMTP server DKIM-signed, and an independent verifier (dkimpy,
//! tests/support/dkim_verify.py) accepts it against the same DNS server, for RSA and
//! Ed25519 keys and after a key rotation; mail from other domains goes unsigned; the
//! managed route (and every route, when the operator says so) refuses an unverified
//! `from`.

use crate::domains::*;
use crate::helpers::*;
use crate::mail_servers::*;
use crate::outbound::{group, send, sending_key, ses_provider, smtp_provider};
use reqwest::StatusCode;
use sendmux::outbound::worker::run_pending_jobs;
use serde_json::{Value, json};

/// What dkimpy says about a message: every signature verified, and each signature's d=, s=, a=.
async fn dkimpy(dns: &DnsServer, message: &[u8]) -> (bool, Vec<(String, String, String)>) {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("python3")
        .arg(support("dkim_verify.py"))
        .arg(&dns.addr)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 with dkimpy");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(message).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success(), "dkim_verify.py failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("dkim_verify.py prints JSON");
    let sigs = v["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let f = |k: &str| s[k].as_str().unwrap().to_owned();
            (f("d"), f("s"), f("a"))
        })
        .collect();
    (v["verified"].as_bool().unwrap(), sigs)
}

fn mail(from: &str, subject: &str) -> Value {
    json!({"from": from, "to": ["reader@example.org"], "subject": subject, "text": "Hello from a team domain.\n",
        "html": "<p>Hello</p>"})
}

/// Sends, drains the queue and returns the bytes the SMTP server received.
async fn sent(app: &TestApp, key: &str, smtp: &SmtpServer, body: Value) -> Vec<u8> {
    let before = smtp.received().len();
    send(app, key, body).await;
    run_pending_jobs(&app.state).await.unwrap();
    let got = smtp.received();
    assert_eq!(got.len(), before + 1, "the SMTP server received the message");
    got[before].data.clone()
}

#[tokio::test]
async fn mail_from_a_verified_domain_is_dkim_signed_for_both_algorithms_and_after_a_rotation() {
    let dns = DnsServer::start(&[]).await;
    let smtp = SmtpServer::start(None).await;
    let app = app_with_dns(&dns, &[("SENDMUX_OUTBOUND_WORKERS", "0")]).await;
    let owner = app.signup("owner@signed.test", "Signed").await;
    let prv = smtp_provider(&app, &owner.token, "relay", smtp.port, None).await;
    let g = group(&app, &owner.token, "failover", json!([{"provider_id": prv}])).await;
    let key = sending_key(&app, &owner.token, &g).await;

    let rsa = add_domain(&app, &owner.token, json!({"name": "rsa.example"})).await;
    let ed = add_domain(&app, &owner.token, json!({"name": "ed.example", "dkim_algorithm": "ed25519"})).await;
    let mut records = published(&rsa);
    records.extend(published(&ed));
    serve(&dns, &records);
    let rsa = verify(&app, &owner.token, &rsa).await;
    let ed = verify(&app, &owner.token, &ed).await;
    assert_eq!((rsa["status"].as_str(), ed["status"].as_str()), (Some("verified"), Some("verified")));
    let old_selector = rsa["dkim"]["selector"].as_str().unwrap().to_owned();

    let message = sent(&app, &key, &smtp, mail("App <app@rsa.example>", "rsa")).await;
    assert_eq!(
        dkimpy(&dns, &message).await,
        (true, vec![("rsa.example".into(), old_selector.clone(), "rsa-sha256".into())])
    );
    let message = sent(&app, &key, &smtp, mail("app@ed.example", "ed25519")).await;
    let ed_selector = ed["dkim"]["selector"].as_str().unwrap().to_owned();
    assert_eq!(dkimpy(&dns, &message).await, (true, vec![("ed.example".into(), ed_selector, "ed25519-sha256".into())]));

    // A domain the team has not verified: sent as it is, unsigned.
    let message = sent(&app, &key, &smtp, mail("app@elsewhere.example", "unsigned")).await;
    assert!(!String::from_utf8_lossy(&message).to_ascii_lowercase().contains("dkim-signature"));
    assert_eq!(dkimpy(&dns, &message).await, (false, vec![]));

    // A tampered body fails the verifier: it really checks.
    let message = sent(&app, &key, &smtp, mail("app@rsa.example", "tamper")).await;
    let tampered = String::from_utf8_lossy(&message).replace("Hello from a team domain.", "Hello from a forger.");
    assert!(!dkimpy(&dns, tampered.as_bytes()).await.0);

    // Rotation: a new selector; the old key signs until the new record is found.
    let path = format!("/api/v1/domains/{}/dkim/rotate", rsa["id"].as_str().unwrap());
    let rotating = expect_status(app.post(&path, &owner.token, json!({})).await, StatusCode::OK).await;
    let new_selector = rotating["dkim"]["pending_selector"].as_str().unwrap().to_owned();
    assert_ne!(new_selector, old_selector);
    assert_eq!(rotating["dkim"]["selector"], old_selector.as_str());
    let message = sent(&app, &key, &smtp, mail("app@rsa.example", "still old")).await;
    assert_eq!(dkimpy(&dns, &message).await.1[0].1, old_selector);
    let rotating = verify(&app, &owner.token, &rotating).await;
    assert_eq!(rotating["dkim"]["selector"], old_selector.as_str(), "new record not published yet");
    // The new record is published (both for a while), found, and the new key signs.
    records.extend(published(&rotating));
    serve(&dns, &records);
    let rotated = verify(&app, &owner.token, &rotating).await;
    assert_eq!(rotated["dkim"]["selector"], new_selector.as_str(), "{rotated}");
    assert!(rotated["dkim"]["pending_selector"].is_null());
    assert_eq!(rotated["status"], "verified");
    // The old record may now go.
    let old_at = format!("{old_selector}._domainkey.");
    serve(&dns, &without(&records, &old_at));
    let message = sent(&app, &key, &smtp, mail("app@rsa.example", "new key")).await;
    assert_eq!(dkimpy(&dns, &message).await, (true, vec![("rsa.example".into(), new_selector, "rsa-sha256".into())]));

    // Records gone: the domain fails and mail from it is no longer signed.
    serve(&dns, &published(&ed));
    assert_eq!(verify(&app, &owner.token, &rotated).await["status"], "failed");
    let message = sent(&app, &key, &smtp, mail("app@rsa.example", "after failure")).await;
    assert_eq!(dkimpy(&dns, &message).await, (false, vec![]));
}

#[tokio::test]
async fn the_managed_route_and_a_strict_instance_need_a_verified_from() {
    let dns = DnsServer::start(&[]).await;
    let ses = SesServer::start(&["verified.example"]).await;
    let app = app_with_dns(
        &dns,
        &[
            ("SENDMUX_OUTBOUND_WORKERS", "0"),
            ("SENDMUX_MANAGED_SES_REGION", "us-east-1"),
            ("SENDMUX_MANAGED_SES_ENDPOINT", &ses.endpoint),
            ("SENDMUX_MANAGED_SES_ACCESS_KEY_ID", &ses.access_key_id),
            ("SENDMUX_MANAGED_SES_SECRET_ACCESS_KEY", &ses.secret_access_key),
        ],
    )
    .await;
    let owner = app.signup("owner@managed.test", "Managed").await;
    verified_domain(&app, &dns, &owner.token, json!({"name": "verified.example"})).await;
    let managed = group(&app, &owner.token, "failover", json!([{"provider_id": "managed"}])).await;
    let managed_key = sending_key(&app, &owner.token, &managed).await;
    let own = ses_provider(&app, &owner.token, &ses, &ses.secret_access_key).await;
    let own_group = group(&app, &owner.token, "failover", json!([{"provider_id": own}])).await;
    let own_key = sending_key(&app, &owner.token, &own_group).await;

    let refused = app.post("/api/v1/emails", &managed_key, mail("app@unverified.example", "no")).await;
    let err = expect_error(refused, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await;
    assert_eq!(err["param"], "from");
    let batch = json!([mail("app@verified.example", "ok"), mail("app@unverified.example", "no")]);
    let refused = app.post("/api/v1/emails/batch", &managed_key, batch).await;
    assert_eq!(expect_error(refused, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await["param"], "[1].from");
    let id = send(&app, &managed_key, mail("App <app@verified.example>", "yes")).await;
    assert_eq!(run_pending_jobs(&app.state).await.unwrap(), 1);
    let got = expect_status(app.get(&format!("/api/v1/emails/{id}"), &owner.token).await, StatusCode::OK).await;
    assert_eq!(got["status"], "sent", "{got}");
    // The team's own provider takes any from.
    send(&app, &own_key, mail("app@unverified.example", "own route")).await;
    assert_eq!(run_pending_jobs(&app.state).await.unwrap(), 1);
    // What SES was given is signed for the verified domain before it left, and an
    // independent verifier accepts it against the published key. (The own-route mail
    // from an unverified domain is refused by SES itself: moto checks identities.)
    let given = ses.raw_messages(1).await;
    let signed = given.iter().find(|m| String::from_utf8_lossy(m).contains("Subject: yes")).expect("the managed mail");
    let (ok, signatures) = dkimpy(&dns, signed).await;
    assert!(ok, "{}", String::from_utf8_lossy(signed));
    assert_eq!(signatures[0].0, "verified.example");

    // SENDMUX_REQUIRE_VERIFIED_SENDER=true: every route.
    let app = app.restart_with(&[("SENDMUX_REQUIRE_VERIFIED_SENDER", "true")]).await;
    let refused = app.post("/api/v1/emails", &own_key, mail("app@unverified.example", "no")).await;
    assert_eq!(expect_error(refused, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await["param"], "from");
    send(&app, &own_key, mail("app@verified.example", "yes")).await;
}
