//! Team domains (API.md §14) against a real DNS server on loopback: records published and
//! withdrawn move a domain between pending, verified and failed; one team per name; bad
//! names; the permission; mailboxes on a domain.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

pub const MX_HOST: &str = "mx.sendmux.test";

/// A server that checks domains through `dns`, with `SENDMUX_SMTP_HOSTNAME` as the MX target.
pub async fn app_with_dns(dns: &DnsServer, extra: &[(&str, &str)]) -> TestApp {
    let mut env = vec![("SENDMUX_DNS_SERVER", dns.addr.as_str()), ("SENDMUX_SMTP_HOSTNAME", MX_HOST)];
    env.extend_from_slice(extra);
    TestApp::spawn_with(&env).await
}

/// The DNS records a domain answer asks for, as `DnsServer` serves them.
pub fn published(domain: &Value) -> Vec<(String, String)> {
    domain["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let name = r["name"].as_str().unwrap().to_owned();
            let value = r["value"].as_str().unwrap();
            match r["type"].as_str().unwrap() {
                "MX" => (name, format!("MX {value}")),
                _ => (name, value.to_owned()),
            }
        })
        .collect()
}

/// `records` without those of `purpose` (and, for `dkim`, only the one at `name`).
pub fn without(records: &[(String, String)], name_part: &str) -> Vec<(String, String)> {
    records.iter().filter(|(n, _)| !n.starts_with(name_part)).cloned().collect()
}

pub fn serve(dns: &DnsServer, records: &[(String, String)]) {
    let borrowed: Vec<(&str, &str)> = records.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    dns.set_records(&borrowed);
}

pub async fn add_domain(app: &TestApp, token: &str, body: Value) -> Value {
    expect_status(app.post("/api/v1/domains", token, body).await, StatusCode::CREATED).await
}

pub async fn verify(app: &TestApp, token: &str, domain: &Value) -> Value {
    let path = format!("/api/v1/domains/{}/verify", domain["id"].as_str().unwrap());
    expect_status(app.post(&path, token, json!({})).await, StatusCode::OK).await
}

/// Adds `name`, publishes its records and verifies it; returns the verified domain.
pub async fn verified_domain(app: &TestApp, dns: &DnsServer, token: &str, body: Value) -> Value {
    let domain = add_domain(app, token, body).await;
    serve(dns, &published(&domain));
    let domain = verify(app, token, &domain).await;
    assert_eq!(domain["status"], "verified", "{domain}");
    domain
}

fn status_of(domain: &Value, purpose: &str) -> Vec<String> {
    domain["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["purpose"] == purpose)
        .map(|r| r["status"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_domain_goes_pending_verified_failed_as_its_records_appear_and_vanish() {
    let dns = DnsServer::start(&[]).await;
    let app = app_with_dns(&dns, &[]).await;
    let owner = app.signup("owner@acme.test", "Acme").await;

    let domain = add_domain(&app, &owner.token, json!({"name": "Acme.Example"})).await;
    assert!(domain["id"].as_str().unwrap().starts_with("dom_"), "{domain}");
    assert_eq!((domain["name"].as_str(), domain["status"].as_str()), (Some("acme.example"), Some("pending")));
    assert_eq!(domain["receiving"], false);
    assert_eq!(domain["dkim"]["algorithm"], "rsa-sha256");
    let selector = domain["dkim"]["selector"].as_str().unwrap().to_owned();
    let records = domain["records"].as_array().unwrap();
    let shape: Vec<(&str, &str, &str)> = records
        .iter()
        .map(|r| (r["purpose"].as_str().unwrap(), r["type"].as_str().unwrap(), r["name"].as_str().unwrap()))
        .collect();
    let dkim_at = format!("{selector}._domainkey.acme.example");
    assert_eq!(
        shape,
        vec![
            ("ownership", "TXT", "_sendmux.acme.example"),
            ("dkim", "TXT", dkim_at.as_str()),
            ("spf", "TXT", "acme.example"),
            ("dmarc", "TXT", "_dmarc.acme.example"),
            ("mx", "MX", "acme.example"),
        ]
    );
    assert!(records[0]["value"].as_str().unwrap().starts_with("sendmux-verification="));
    assert!(records[1]["value"].as_str().unwrap().starts_with("v=DKIM1; k=rsa; p=MII"), "{}", records[1]);
    assert_eq!(records[4]["value"], format!("10 {MX_HOST}"));
    assert!(records.iter().all(|r| r["status"] == "pending" && r["checked_at"].is_null()));
    let all = published(&domain);

    // Nothing published yet.
    let d = verify(&app, &owner.token, &domain).await;
    assert_eq!(d["status"], "pending");
    assert!(d["records"].as_array().unwrap().iter().all(|r| r["status"] == "pending" && r["checked_at"].is_string()));
    assert!(d["reason"].as_str().unwrap().contains("_sendmux.acme.example"), "{d}");

    // Ownership alone is not enough: DKIM must match too.
    serve(&dns, &all[..1]);
    let d = verify(&app, &owner.token, &domain).await;
    assert_eq!(d["status"], "pending");
    assert_eq!((status_of(&d, "ownership"), status_of(&d, "dkim")), (vec!["verified".into()], vec!["pending".into()]));

    // Every record: verified, receiving (the MX points here).
    serve(&dns, &all);
    let d = verify(&app, &owner.token, &domain).await;
    assert_eq!(d["status"], "verified", "{d}");
    assert_eq!(d["receiving"], true);
    assert!(d["verified_at"].is_string() && d["reason"].is_null(), "{d}");
    assert!(d["records"].as_array().unwrap().iter().all(|r| r["status"] == "verified"), "{d}");

    // The DKIM record vanishes: failed, with the reason; not receiving any more.
    serve(&dns, &without(&all, &dkim_at));
    let d = verify(&app, &owner.token, &domain).await;
    assert_eq!(d["status"], "failed", "{d}");
    assert_eq!(d["receiving"], false);
    assert_eq!((status_of(&d, "ownership"), status_of(&d, "dkim")), (vec!["verified".into()], vec!["failed".into()]));
    assert!(d["reason"].as_str().unwrap().contains(&dkim_at), "{d}");

    // Back: verified again. A read shows what the last check saved.
    serve(&dns, &all);
    assert_eq!(verify(&app, &owner.token, &domain).await["status"], "verified");
    let path = format!("/api/v1/domains/{}", domain["id"].as_str().unwrap());
    let read = expect_status(app.get(&path, &owner.token).await, StatusCode::OK).await;
    assert_eq!(read["status"], "verified");
    let list = expect_status(app.get("/api/v1/domains", &owner.token).await, StatusCode::OK).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);

    // Each transition raised a team event; the audit log has the changes.
    let events = expect_status(app.get("/api/v1/events?limit=100", &owner.token).await, StatusCode::OK).await;
    let kinds: Vec<&str> = events["data"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, vec!["domain.verified", "domain.failed", "domain.verified"]);
    assert_eq!(events["data"][1]["data"]["domain_id"], domain["id"]);
    let audit = expect_status(app.get("/api/v1/logs?kind=audit&limit=100", &owner.token).await, StatusCode::OK).await;
    let actions: Vec<&str> = audit["data"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"domain.created") && actions.contains(&"domain.checked"), "{actions:?}");

    // The private key is sealed at rest: no PEM or DER of it in any table.
    let stored = app.all_stored_text().await;
    let key = sqlx::query_scalar::<_, String>("SELECT dkim_private_key FROM domains")
        .fetch_one(app.state.store.pool())
        .await
        .unwrap();
    assert!(app.state.secrets.open(&key).is_some_and(|der| der.len() > 1000));
    assert!(!stored.iter().any(|t| t.contains("PRIVATE KEY")));
}

#[tokio::test]
async fn a_name_is_verified_by_one_team_only() {
    let dns = DnsServer::start(&[]).await;
    let app = app_with_dns(&dns, &[]).await;
    let a = app.signup("a@one.test", "One").await;
    let b = app.signup("b@two.test", "Two").await;
    let theirs = verified_domain(&app, &dns, &a.token, json!({"name": "shared.example"})).await;

    // Team B may add the name and publish its own records, but not verify it.
    let ours = add_domain(&app, &b.token, json!({"name": "shared.example"})).await;
    let mut both = published(&theirs);
    both.extend(published(&ours));
    serve(&dns, &both);
    let path = format!("/api/v1/domains/{}/verify", ours["id"].as_str().unwrap());
    let err = expect_error(app.post(&path, &b.token, json!({})).await, StatusCode::CONFLICT, "conflict").await;
    assert!(err["message"].as_str().unwrap().contains("another team"), "{err}");
    // A's domain is untouched, and B cannot see it.
    let a_path = format!("/api/v1/domains/{}", theirs["id"].as_str().unwrap());
    assert_eq!(expect_status(app.get(&a_path, &a.token).await, StatusCode::OK).await["status"], "verified");
    expect_error(app.get(&a_path, &b.token).await, StatusCode::NOT_FOUND, "not_found").await;
    expect_error(app.delete(&a_path, &b.token).await, StatusCode::NOT_FOUND, "not_found").await;
    let a_verify = format!("{a_path}/verify");
    expect_error(app.post(&a_verify, &b.token, json!({})).await, StatusCode::NOT_FOUND, "not_found").await;

    // Once A lets go, B verifies.
    expect_status(app.delete(&a_path, &a.token).await, StatusCode::NO_CONTENT).await;
    assert_eq!(verify(&app, &b.token, &ours).await["status"], "verified");
}

#[tokio::test]
async fn bad_names_idns_public_suffixes_and_operator_domains_are_422_naming_name() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@names.test", "Names").await;
    for bad in [
        json!("not a domain"),
        json!(""),
        json!("com"),
        json!("co.uk"),
        json!("github.io"),
        json!("-bad.example"),
        json!("a..b.example"),
        json!("under_score.example"),
        json!("xn--zz.example"),
        json!("127.0.0.1"),
        json!("localhost"),
        json!("mail.test"),
        json!("inbox.mail.test"),
        json!(format!("{}.example", "a".repeat(64))),
        json!(12),
        json!(null),
    ] {
        let res = app.post("/api/v1/domains", &owner.token, json!({"name": bad})).await;
        let err = expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await;
        assert_eq!(err["param"], "name", "{bad}: {err}");
    }
    let res = app.post("/api/v1/domains", &owner.token, json!({"name": "ok.example", "dkim_algorithm": "dsa"})).await;
    assert_eq!(expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await["param"], "dkim_algorithm");
    assert_eq!(app.count("SELECT COUNT(*) FROM domains WHERE team_id = $1", &owner.team_id).await, 0);

    // An IDN in Unicode is kept as punycode; the punycode form is the same domain.
    let idn = add_domain(&app, &owner.token, json!({"name": "Bücher.example"})).await;
    assert_eq!(
        (idn["name"].as_str(), idn["unicode_name"].as_str()),
        (Some("xn--bcher-kva.example"), Some("bücher.example"))
    );
    assert!(idn["records"][0]["name"].as_str().unwrap().ends_with(".xn--bcher-kva.example"));
    let res = app.post("/api/v1/domains", &owner.token, json!({"name": "xn--bcher-kva.example"})).await;
    assert_eq!(expect_error(res, StatusCode::CONFLICT, "conflict").await["param"], "name");
    let puny = add_domain(&app, &owner.token, json!({"name": "xn--mnchen-3ya.example"})).await;
    assert_eq!(puny["unicode_name"], "münchen.example");
}

#[tokio::test]
async fn domains_manage_is_for_admins_and_infrastructure_keys() {
    let app = TestApp::spawn().await;
    let owner = app.signup("owner@perm.test", "Perm").await;
    let admin = app.add_member(&owner, "admin@perm.test", "admin").await;
    let developer = app.add_member(&owner, "dev@perm.test", "developer").await;
    let member = app.add_member(&owner, "member@perm.test", "member").await;
    let infra = app.create_key(&owner.token, json!({"name": "infra", "kind": "infrastructure"})).await;
    assert!(infra["permissions"].as_array().unwrap().contains(&json!("domains.manage")), "{infra}");
    let narrow = app
        .create_key(&owner.token, json!({"name": "narrow", "kind": "infrastructure", "permissions": ["logs.read"]}))
        .await;
    let (_, mailbox_key) = app.mailbox_with_key(&owner.token, "box@mail.test", &["mailbox.read"]).await;

    let by_admin = add_domain(&app, &admin.token, json!({"name": "admin.example"})).await;
    add_domain(&app, infra["key"].as_str().unwrap(), json!({"name": "infra.example", "dkim_algorithm": "ed25519"}))
        .await;
    for token in [&developer.token, &member.token, narrow["key"].as_str().unwrap(), &mailbox_key] {
        let res = app.post("/api/v1/domains", token, json!({"name": "denied.example"})).await;
        expect_error(res, StatusCode::FORBIDDEN, "permission_denied").await;
        let verify = format!("/api/v1/domains/{}/verify", by_admin["id"].as_str().unwrap());
        expect_error(app.post(&verify, token, json!({})).await, StatusCode::FORBIDDEN, "permission_denied").await;
    }
    // Members see domains (metadata, no secret in it).
    let list = expect_status(app.get("/api/v1/domains", &member.token).await, StatusCode::OK).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    assert_eq!(list["data"][0]["dkim"]["algorithm"], "ed25519-sha256");
    assert!(list["data"][0]["records"][1]["value"].as_str().unwrap().starts_with("v=DKIM1; k=ed25519; p="));
    expect_error(app.get("/api/v1/domains", &mailbox_key).await, StatusCode::FORBIDDEN, "permission_denied").await;
}

#[tokio::test]
async fn mailboxes_live_on_verified_domains_and_hold_them() {
    let dns = DnsServer::start(&[]).await;
    let app = app_with_dns(&dns, &[]).await;
    let owner = app.signup("owner@boxes.test", "Boxes").await;
    let pending = add_domain(&app, &owner.token, json!({"name": "later.example"})).await;
    let res = app.post("/api/v1/mailboxes", &owner.token, json!({"address": "hello@later.example"})).await;
    let err = expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await;
    assert_eq!(err["param"], "address");
    assert!(err["message"].as_str().unwrap().contains("verified"), "{err}");
    // A catch-all is for team domains only.
    let res = app.post("/api/v1/mailboxes", &owner.token, json!({"address": "*@mail.test"})).await;
    expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await;
    // On the instance's shared domain a `+` would take another team's plus-addressed mail.
    let res = app.post("/api/v1/mailboxes", &owner.token, json!({"address": "alice+billing@mail.test"})).await;
    let err = expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await;
    assert_eq!(err["param"], "address");
    assert!(err["message"].as_str().unwrap().contains("plus-addressing"), "{err}");

    let domain = verified_domain(&app, &dns, &owner.token, json!({"name": "boxes.example"})).await;
    let hello = app.create_mailbox(&owner.token, "Hello@Boxes.Example").await;
    assert_eq!(hello["address"], "hello@boxes.example");
    let catch_all = app.create_mailbox(&owner.token, "*@boxes.example").await;
    assert_eq!(catch_all["address"], "*@boxes.example");
    // Another team cannot put a mailbox on it.
    let other = app.signup("other@boxes.test", "Other").await;
    let res = app.post("/api/v1/mailboxes", &other.token, json!({"address": "x@boxes.example"})).await;
    expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await;

    let path = format!("/api/v1/domains/{}", domain["id"].as_str().unwrap());
    let err = expect_error(app.delete(&path, &owner.token).await, StatusCode::CONFLICT, "conflict").await;
    assert!(err["message"].as_str().unwrap().contains("mailbox"), "{err}");
    for m in [&hello, &catch_all] {
        let p = format!("/api/v1/mailboxes/{}", m["id"].as_str().unwrap());
        expect_status(app.delete(&p, &owner.token).await, StatusCode::NO_CONTENT).await;
    }
    expect_status(app.delete(&path, &owner.token).await, StatusCode::NO_CONTENT).await;
    expect_error(app.get(&path, &owner.token).await, StatusCode::NOT_FOUND, "not_found").await;
    let pending_path = format!("/api/v1/domains/{}", pending["id"].as_str().unwrap());
    expect_status(app.delete(&pending_path, &owner.token).await, StatusCode::NO_CONTENT).await;
}

#[tokio::test]
async fn background_checks_raise_domain_events_to_webhooks() {
    let dns = DnsServer::start(&[]).await;
    let app = app_with_dns(
        &dns,
        &[
            ("SENDMUX_DOMAIN_CHECK_PENDING_SECONDS", "1"),
            ("SENDMUX_DOMAIN_CHECK_VERIFIED_SECONDS", "1"),
            ("SENDMUX_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128"),
        ],
    )
    .await;
    let owner = app.signup("owner@background.test", "Background").await;
    let hook = Receiver::start(vec![]).await;
    let body = json!({"url": hook.url, "event_types": ["domain.verified", "domain.failed"]});
    expect_status(app.post("/api/v1/webhooks", &owner.token, body).await, StatusCode::CREATED).await;
    let domain = add_domain(&app, &owner.token, json!({"name": "auto.example", "dkim_algorithm": "ed25519"})).await;
    let path = format!("/api/v1/domains/{}", domain["id"].as_str().unwrap());

    // Published: the next background check verifies it, and the webhook hears of it.
    serve(&dns, &published(&domain));
    let hits = hook.wait_for(1).await;
    assert_eq!(hits[0].headers["x-sendmux-event-type"], "domain.verified");
    let event: Value = serde_json::from_str(&hits[0].body).unwrap();
    assert_eq!(
        (event["data"]["domain_id"].as_str(), event["data"]["status"].as_str()),
        (domain["id"].as_str(), Some("verified"))
    );
    assert_eq!(expect_status(app.get(&path, &owner.token).await, StatusCode::OK).await["status"], "verified");

    // Withdrawn: failed, with the reason on the domain.
    serve(&dns, &[]);
    let hits = hook.wait_for(2).await;
    assert_eq!(hits[1].headers["x-sendmux-event-type"], "domain.failed");
    let d = expect_status(app.get(&path, &owner.token).await, StatusCode::OK).await;
    assert_eq!(d["status"], "failed");
    assert!(d["reason"].as_str().unwrap().contains("_sendmux.auto.example"), "{d}");
    // Nothing more happens while nothing changes.
    let checked = d["checked_at"].as_str().unwrap().to_owned();
    eventually("another check", std::time::Duration::from_secs(10), || async {
        expect_status(app.get(&path, &owner.token).await, StatusCode::OK).await["checked_at"] != checked.as_str()
    })
    .await;
    assert_eq!(hook.hits().len(), 2);
}
