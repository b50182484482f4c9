//! The people's console (SPEC §15) in a real browser: Debian's headless Chromium driven
//! by `tests/js/console.mjs` (playwright-core, axe-core), against the real server. Each
//! test sets the team up through the API, runs one scenario, and checks through the API
//! what the clicks did. Screenshots of every page land in `tests/js/screenshots/`.
//! Plain-HTTP checks of the cookies, CSRF, tenancy and sign-in limits close the file.

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::helpers::{DnsServer, PASSWORD, Receiver, TestApp, emit, expect_error, expect_status};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js/console.mjs");

/// A running scenario: its JSON lines as they come, and its stdin for handshakes.
struct Scenario {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    stdin: Option<tokio::process::ChildStdin>,
}

impl Scenario {
    fn start(app: &TestApp, name: &str, args: Value) -> Scenario {
        let mut child = tokio::process::Command::new("node")
            .args([SCRIPT, name, &app.url(""), &args.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node is installed (tests/js: npm ci)");
        let lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let stdin = child.stdin.take();
        Scenario { child, lines, stdin }
    }

    /// The next milestone the scenario printed; fails with its error output if it ended.
    async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(120), self.lines.next_line())
            .await
            .expect("the browser answers within 2 minutes")
            .expect("read stdout");
        match line {
            Some(l) => serde_json::from_str(&l).unwrap_or_else(|_| panic!("not JSON: {l}")),
            None => panic!("the scenario ended early:\n{}", self.stderr().await),
        }
    }

    async fn stderr(&mut self) -> String {
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = tokio::io::AsyncReadExt::read_to_string(&mut e, &mut err).await;
        }
        err
    }

    async fn go_on(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin");
        stdin.write_all(b"go\n").await.unwrap();
        stdin.flush().await.unwrap();
    }

    /// Waits for a clean exit.
    async fn finish(mut self) {
        let status = tokio::time::timeout(Duration::from_secs(120), self.child.wait())
            .await
            .expect("the browser finishes within 2 minutes")
            .unwrap();
        let err = self.stderr().await;
        assert!(status.success(), "scenario failed:\n{err}");
    }
}

/// Runs a scenario to its end and returns its last milestone.
async fn run(app: &TestApp, name: &str, args: Value) -> Value {
    let mut s = Scenario::start(app, name, args);
    let last = s.next().await;
    s.finish().await;
    last
}

fn signin(email: &str) -> Value {
    json!({"email": email, "password": PASSWORD})
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

async fn inject(app: &TestApp, token: &str, mailbox: &str, raw: &str) -> String {
    let res = app
        .client
        .post(app.url(&format!("/api/v1/mailboxes/{mailbox}/messages")))
        .bearer_auth(token)
        .header("content-type", "message/rfc822")
        .body(raw.replace('\n', "\r\n"))
        .send()
        .await
        .unwrap();
    id(&expect_status(res, StatusCode::CREATED).await)
}

const PLAIN_MAIL: &str = "From: Ann <ann@example.com>\nTo: agent@localhost\nSubject: Quarterly numbers\nMessage-ID: <q1@example.com>\n\nHi there, the numbers are in: lavender-otter-42.\n";

fn html_mail(pixel: &str) -> String {
    format!(
        "From: Mallory <mallory@example.com>\nTo: agent@localhost\nSubject: Your invoice\nMIME-Version: 1.0\nContent-Type: text/html; charset=utf-8\n\n\
         <html><head><meta http-equiv=\"refresh\" content=\"1;url={pixel}/refresh\">\
         <link rel=\"stylesheet\" href=\"{pixel}/style.css\"></head>\
         <body><div id=\"mail-body\"><h1>Invoice</h1><p>Amount due: 12 EUR</p>\
         <img src=\"{pixel}/pixel.png\" alt=\"tracking pixel\">\
         <script>document.getElementById('mail-body').setAttribute('data-ran','1');fetch('{pixel}/script-ran');parent.document.title='pwned';</script>\
         </div></body></html>\n"
    )
}

/// A loopback HTTP server that records the path of every request (a remote image host).
struct Remote {
    url: String,
    paths: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _server: tokio::task::JoinHandle<()>,
}

impl Remote {
    async fn start() -> Remote {
        let paths: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
        let p = paths.clone();
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let p = p.clone();
            async move {
                p.lock().unwrap().push(uri.path().to_owned());
                (
                    [("content-type", "image/gif")],
                    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;".to_vec(),
                )
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Remote { url, paths, _server: server }
    }

    fn paths(&self) -> Vec<String> {
        self.paths.lock().unwrap().clone()
    }
}

/// A team with something on every page: a provider and group, a mailbox with a plain
/// and an HTML mail, a webhook with a delivery, a key, a pending invitation, a domain.
struct Team {
    mailbox: String,
    plain: String,
    html: String,
    webhook: String,
    domain: String,
    receiver: Receiver,
}

async fn team(app: &TestApp, remote: &str) -> Team {
    let owner = app.signup("owner@console.test", "Acme Mail").await;
    let provider = app.create_smtp_provider(&owner.token, "relay").await;
    app.create_group(&owner.token, &id(&provider)).await;
    let mailbox = id(&app.create_mailbox(&owner.token, "agent@localhost").await);
    let plain = inject(app, &owner.token, &mailbox, PLAIN_MAIL).await;
    let html = inject(app, &owner.token, &mailbox, &html_mail(remote)).await;
    let receiver = Receiver::start(vec![500]).await;
    let res = app
        .post("/api/v1/webhooks", &owner.token, json!({"url": receiver.url, "event_types": ["message.received"]}))
        .await;
    let webhook = id(&expect_status(res, StatusCode::CREATED).await);
    emit(app, &owner.team_id, Some(&mailbox), "message.received", json!({"subject": "hello"})).await;
    receiver.wait_for(1).await;
    app.create_key(&owner.token, json!({"name": "agent", "kind": "mailbox", "mailbox_id": mailbox})).await;
    let res = app
        .post("/api/v1/team/invitations", &owner.token, json!({"email": "new@console.test", "role": "member"}))
        .await;
    expect_status(res, StatusCode::CREATED).await;
    let domain =
        crate::domains::add_domain(app, &owner.token, json!({"name": "acme.example", "dkim_algorithm": "ed25519"}))
            .await;
    Team { mailbox, plain, html, webhook, domain: id(&domain), receiver }
}

async fn spawn() -> TestApp {
    TestApp::spawn_with(&[("SENDMUX_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8")]).await
}

#[tokio::test]
async fn every_console_page_renders_accessibly_at_laptop_and_phone_widths() {
    let app = spawn().await;
    let remote = Remote::start().await;
    let t = team(&app, &remote.url).await;
    let pages = json!([
        ["01-overview", "/"],
        ["02-members", "/members"],
        ["03-keys", "/keys"],
        ["04-providers", "/providers"],
        ["05-delivery-groups", "/delivery-groups"],
        ["06-mailboxes", "/mailboxes"],
        ["07-messages", format!("/mailboxes/{}", t.mailbox)],
        ["08-message", format!("/mailboxes/{}/messages/{}", t.mailbox, t.plain)],
        ["09-message-html", format!("/mailboxes/{}/messages/{}", t.mailbox, t.html)],
        ["10-webhooks", "/webhooks"],
        ["11-webhook-deliveries", format!("/webhooks/{}", t.webhook)],
        ["12-events", "/events"],
        ["13-usage", "/usage"],
        ["14-limits", "/limits"],
        ["15-audit-log", "/audit"],
        ["17-domains", "/domains"],
        ["18-domain", format!("/domains/{}", t.domain)],
    ]);
    let screenshots = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js/screenshots");
    let store = if crate::helpers::on_postgres() { "postgres" } else { "sqlite" };
    let mut args = signin("owner@console.test");
    args["pages"] = pages;
    args["screenshots"] = json!(format!("{screenshots}/{store}"));
    let done = run(&app, "tour", args).await;
    assert_eq!(done["pages"], 18);
    // The remote image of the HTML mail was never fetched while the pages were shown.
    assert!(remote.paths().is_empty(), "remote content loaded: {:?}", remote.paths());
    drop(t.receiver);
}

#[tokio::test]
async fn a_key_created_in_the_console_shows_its_secret_once_and_works() {
    let app = spawn().await;
    let owner = app.signup("keys@console.test", "Keys").await;
    let done = run(&app, "key_once", signin("keys@console.test")).await;
    let secret = done["secret"].as_str().unwrap();
    // The secret works with the API, and the API never shows it either.
    let res = app.get("/api/v1/team", secret).await;
    assert_eq!(expect_status(res, StatusCode::OK).await["id"], owner.team_id.as_str());
    let keys = expect_status(app.get("/api/v1/keys", &owner.token).await, StatusCode::OK).await;
    assert_eq!(keys["data"].as_array().unwrap().len(), 1);
    assert_eq!(keys["data"][0]["name"], "from the console");
    assert!(!keys.to_string().contains(secret));
    // Signing out ended the session the browser held.
    let audit = expect_status(app.get("/api/v1/logs?kind=audit", &owner.token).await, StatusCode::OK).await;
    assert_eq!(audit["data"][0]["action"], "key.created");
    assert_eq!(audit["data"][0]["actor"]["id"], owner.user_id.as_str());
}

#[tokio::test]
async fn a_member_sees_no_create_controls_and_no_message_body() {
    let app = spawn().await;
    let owner = app.signup("boss@console.test", "Roles").await;
    app.add_member(&owner, "member@console.test", "member").await;
    let mailbox = id(&app.create_mailbox(&owner.token, "agent@localhost").await);
    let msg = inject(&app, &owner.token, &mailbox, PLAIN_MAIL).await;
    let mut args = signin("member@console.test");
    args["message"] = json!(format!("/mailboxes/{mailbox}/messages/{msg}"));
    args["secret_text"] = json!("lavender-otter-42");
    run(&app, "member_view", args).await;
}

#[tokio::test]
async fn a_developer_replays_a_webhook_delivery() {
    let app = spawn().await;
    let owner = app.signup("hooks@console.test", "Hooks").await;
    app.add_member(&owner, "dev@console.test", "developer").await;
    let receiver = Receiver::start(vec![500]).await;
    let res = app
        .post("/api/v1/webhooks", &owner.token, json!({"url": receiver.url, "event_types": ["message.received"]}))
        .await;
    let webhook = id(&expect_status(res, StatusCode::CREATED).await);
    let event = emit(&app, &owner.team_id, None, "message.received", json!({"n": 1})).await;
    receiver.wait_for(1).await;
    let mut args = signin("dev@console.test");
    args["webhook"] = json!(format!("/webhooks/{webhook}"));
    run(&app, "replay", args).await;
    // The replay is a second delivery of the same event, and it is delivered.
    let list = app.get(&format!("/api/v1/webhooks/{webhook}/deliveries"), &owner.token).await;
    let list = expect_status(list, StatusCode::OK).await;
    let events: Vec<&str> = list["data"].as_array().unwrap().iter().map(|d| d["event_id"].as_str().unwrap()).collect();
    assert_eq!(events, [event.as_str(), event.as_str()]);
    let hits = receiver.wait_for(2).await;
    assert!(hits.iter().all(|h| h.headers["x-sendmux-event-id"] == event));
}

#[tokio::test]
async fn an_admin_invites_a_person_who_then_signs_in() {
    let app = spawn().await;
    let owner = app.signup("o@console.test", "Invites").await;
    app.add_member(&owner, "admin@console.test", "admin").await;
    let mut args = signin("admin@console.test");
    args["invitee"] = json!("newcomer@console.test");
    args["invitee_password"] = json!("a brand new passphrase");
    run(&app, "invite", args).await;
    let members = expect_status(app.get("/api/v1/team/members", &owner.token).await, StatusCode::OK).await;
    let newcomer = members["data"].as_array().unwrap().iter().find(|m| m["email"] == "newcomer@console.test").cloned();
    assert_eq!(newcomer.expect("the newcomer is a member")["role"], "developer");
}

#[tokio::test]
async fn html_mail_runs_no_script_and_loads_nothing_remote_until_asked() {
    let app = spawn().await;
    let remote = Remote::start().await;
    let owner = app.signup("safe@console.test", "Safe").await;
    let mailbox = id(&app.create_mailbox(&owner.token, "agent@localhost").await);
    let msg = inject(&app, &owner.token, &mailbox, &html_mail(&remote.url)).await;
    let mut args = signin("safe@console.test");
    args["message"] = json!(format!("/mailboxes/{mailbox}/messages/{msg}"));
    let mut s = Scenario::start(&app, "hostile_mail", args);
    assert_eq!(s.next().await["phase"], "loaded");
    assert!(remote.paths().is_empty(), "nothing remote loads by default: {:?}", remote.paths());
    s.go_on().await;
    assert_eq!(s.next().await["phase"], "images");
    s.finish().await;
    // Asked for images: the image loaded, and the script still never ran.
    assert_eq!(remote.paths(), ["/pixel.png"]);
}

#[tokio::test]
async fn a_form_posted_without_its_csrf_token_is_refused() {
    let app = spawn().await;
    let owner = app.signup("csrf@console.test", "Forms").await;
    run(&app, "csrf", signin("csrf@console.test")).await;
    let keys = expect_status(app.get("/api/v1/keys", &owner.token).await, StatusCode::OK).await;
    let names: Vec<&str> = keys["data"].as_array().unwrap().iter().map(|k| k["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["genuine"], "only the form with its token made a key");
}

#[tokio::test]
async fn an_admin_adds_verifies_rotates_and_deletes_a_domain() {
    let dns = DnsServer::start(&[]).await;
    let app = crate::domains::app_with_dns(&dns, &[]).await;
    let owner = app.signup("dns@console.test", "Domains").await;
    let admin = app.add_member(&owner, "dnsadmin@console.test", "admin").await;
    let mut args = signin("dnsadmin@console.test");
    args["domain"] = json!("bücher.example");
    args["ascii"] = json!("xn--bcher-kva.example");
    let store = if crate::helpers::on_postgres() { "postgres" } else { "sqlite" };
    args["screenshots"] = json!(format!("{}/tests/js/screenshots/{store}", env!("CARGO_MANIFEST_DIR")));
    let mut s = Scenario::start(&app, "domain_admin", args);
    let added = s.next().await;
    assert_eq!(added["phase"], "added");
    // The page shows the records the API answers, value for value.
    let path = format!("/api/v1{}", added["url"].as_str().unwrap());
    let domain = expect_status(app.get(&path, &owner.token).await, StatusCode::OK).await;
    assert_eq!(domain["name"], "xn--bcher-kva.example");
    assert_eq!(domain["dkim"]["algorithm"], "ed25519-sha256");
    let api: Vec<(String, String, String, String)> = domain["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["purpose"].to_string(), r["type"].to_string(), r["name"].to_string(), r["value"].to_string()))
        .collect();
    let shown: Vec<(String, String, String, String)> = added["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["purpose"].to_string(), r["type"].to_string(), r["name"].to_string(), r["value"].to_string()))
        .collect();
    assert_eq!(shown, api);
    // Publish what the page showed, as a person would.
    let published: Vec<(String, String)> = added["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let (name, value) = (r["name"].as_str().unwrap().to_owned(), r["value"].as_str().unwrap());
            if r["type"] == "MX" { (name, format!("MX {value}")) } else { (name, value.to_owned()) }
        })
        .collect();
    crate::domains::serve(&dns, &published);
    s.go_on().await;
    assert_eq!(s.next().await["phase"], "rotated");
    let mailbox = id(&app.create_mailbox(&owner.token, "hello@xn--bcher-kva.example").await);
    s.go_on().await;
    assert_eq!(s.next().await["phase"], "refused");
    expect_status(app.delete(&format!("/api/v1/mailboxes/{mailbox}"), &owner.token).await, StatusCode::NO_CONTENT)
        .await;
    s.go_on().await;
    assert_eq!(s.next().await["phase"], "deleted");
    s.finish().await;
    expect_error(app.get(&path, &owner.token).await, StatusCode::NOT_FOUND, "not_found").await;
    // The core operations wrote the audit entries, with the admin as the actor.
    let audit = expect_status(app.get("/api/v1/logs?kind=audit&limit=100", &owner.token).await, StatusCode::OK).await;
    let domain_entries: Vec<(&str, &str)> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("domain."))
        .map(|e| (e["action"].as_str().unwrap(), e["actor"]["id"].as_str().unwrap()))
        .collect();
    let a = admin.user_id.as_str();
    assert_eq!(
        domain_entries,
        [("domain.deleted", a), ("domain.dkim_rotated", a), ("domain.checked", a), ("domain.created", a)]
    );
}

#[tokio::test]
async fn a_member_reads_domains_but_cannot_change_them() {
    let app = spawn().await;
    let owner = app.signup("dnsboss@console.test", "Readers").await;
    app.add_member(&owner, "dnsmember@console.test", "member").await;
    let domain =
        crate::domains::add_domain(&app, &owner.token, json!({"name": "read.example", "dkim_algorithm": "ed25519"}))
            .await;
    let mut args = signin("dnsmember@console.test");
    args["domain"] = json!(format!("/domains/{}", id(&domain)));
    assert_eq!(run(&app, "domain_member", args).await["refused"], 3);
    let list = expect_status(app.get("/api/v1/domains", &owner.token).await, StatusCode::OK).await;
    let names: Vec<&str> = list["data"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["read.example"], "nothing added, nothing deleted");
    assert_eq!(list["data"][0]["checked_at"], Value::Null, "never verified");
}

#[tokio::test]
async fn domain_forms_need_their_csrf_token_and_another_teams_domain_is_not_found() {
    let app = spawn().await;
    let a = app.signup("da@console.test", "A").await;
    let b = app.signup("db@console.test", "B").await;
    let ours =
        crate::domains::add_domain(&app, &a.token, json!({"name": "ours.example", "dkim_algorithm": "ed25519"})).await;
    let theirs =
        crate::domains::add_domain(&app, &b.token, json!({"name": "theirs.example", "dkim_algorithm": "ed25519"}))
            .await;
    let mut c = Client::new(&app);
    c.sign_in("da@console.test", PASSWORD).await;
    let (status, page) = c.get(&format!("/domains/{}", id(&theirs))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(page.contains("No such domain") && !page.contains("theirs.example"), "a 404 page");
    let (status, page) = c.get("/domains/not-an-id").await;
    assert_eq!((status, page.contains("No such domain")), (StatusCode::NOT_FOUND, true));
    // Without the token, nothing is added or deleted.
    let (status, page) = c.post("/domains", &[("name", "forged.example"), ("dkim_algorithm", "ed25519")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(page.contains("security token"), "the CSRF refusal");
    let (status, _) = c.post(&format!("/domains/{}/delete", id(&ours)), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Another team's domain, with the token: not found, and it stays.
    let (_, page) = c.get("/domains").await;
    let csrf = Client::csrf(&page);
    let (status, _) = c.post(&format!("/domains/{}/delete", id(&theirs)), &[("_csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let list = expect_status(app.get("/api/v1/domains", &a.token).await, StatusCode::OK).await;
    let names: Vec<&str> = list["data"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["ours.example"]);
    let path = format!("/api/v1/domains/{}", id(&theirs));
    expect_status(app.get(&path, &b.token).await, StatusCode::OK).await;
    // A bad name comes back as a notice with the API's message.
    let (status, _) = c.post("/domains", &[("_csrf", &csrf), ("name", "co.uk"), ("dkim_algorithm", "rsa")]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, page) = c.get("/domains").await;
    assert!(page.contains("notice-error") && page.contains("is a public suffix"), "the API's refusal: {page}");
}

// ---- Plain HTTP: cookies, CSRF, tenancy, sign-in limits --------------------------------

/// A browser-like client over reqwest: keeps cookies by hand, follows no redirect.
struct Client {
    http: reqwest::Client,
    base: String,
    cookies: std::collections::BTreeMap<String, String>,
    set_cookies: Vec<String>,
}

impl Client {
    fn new(app: &TestApp) -> Client {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Client { http, base: app.url(""), cookies: Default::default(), set_cookies: vec![] }
    }

    fn keep(&mut self, res: &reqwest::Response) {
        for v in res.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap().to_owned();
            let pair = v.split(';').next().unwrap();
            let (k, val) = pair.split_once('=').unwrap();
            if val.is_empty() {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), val.to_owned());
            }
            self.set_cookies.push(v);
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn get(&mut self, path: &str) -> (StatusCode, String) {
        let res =
            self.http.get(format!("{}{path}", self.base)).header("cookie", self.cookie_header()).send().await.unwrap();
        self.keep(&res);
        (res.status(), res.text().await.unwrap())
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> (StatusCode, String) {
        let res = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .form(form)
            .send()
            .await
            .unwrap();
        self.keep(&res);
        (res.status(), res.text().await.unwrap())
    }

    fn csrf(html: &str) -> String {
        let re = regex::Regex::new(r#"name="_csrf" value="([0-9a-f]+)""#).unwrap();
        re.captures(html).expect("a form with its token")[1].to_owned()
    }

    async fn sign_in(&mut self, email: &str, password: &str) -> StatusCode {
        let (_, page) = self.get("/login").await;
        let token = Self::csrf(&page);
        self.post("/login", &[("_csrf", &token), ("email", email), ("password", password), ("next", "/")]).await.0
    }
}

#[tokio::test]
async fn session_cookies_are_http_only_lax_and_secure_behind_https() {
    let app = spawn().await;
    app.signup("c@console.test", "Cookies").await;
    let mut c = Client::new(&app);
    assert_eq!(c.sign_in("c@console.test", PASSWORD).await, StatusCode::SEE_OTHER);
    let session = c.set_cookies.iter().find(|v| v.starts_with("sendmux_session=smx_ses_")).expect("a session cookie");
    assert!(session.contains("HttpOnly") && session.contains("SameSite=Lax"), "{session}");
    assert!(!session.contains("Secure"), "plain http: not Secure ({session})");
    let (status, page) = c.get("/keys").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("API keys"));

    let app = TestApp::spawn_with(&[("SENDMUX_PUBLIC_URL", "https://mail.example.com")]).await;
    app.signup("c@console.test", "Cookies").await;
    let mut c = Client::new(&app);
    assert_eq!(c.sign_in("c@console.test", PASSWORD).await, StatusCode::SEE_OTHER);
    let session = c.set_cookies.iter().find(|v| v.starts_with("sendmux_session=smx_ses_")).expect("a session cookie");
    assert!(session.contains("; Secure"), "https: Secure ({session})");
}

#[tokio::test]
async fn pages_forbid_framing_and_inline_script() {
    let app = spawn().await;
    let res = app.client.get(app.url("/login")).send().await.unwrap();
    let csp = res.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(res.headers()["x-frame-options"], "DENY");
    let html = res.text().await.unwrap();
    assert!(!html.contains("<script>"), "no inline script");
}

#[tokio::test]
async fn sign_in_attempts_are_limited_per_address_like_the_api() {
    let app = TestApp::spawn_with(&[("SENDMUX_AUTH_RATE_LIMIT_PER_MINUTE", "4")]).await;
    app.signup("r@console.test", "Rate").await;
    let mut c = Client::new(&app);
    for _ in 0..2 {
        assert_eq!(c.sign_in("r@console.test", "wrong password here").await, StatusCode::UNAUTHORIZED);
    }
    // Sign-up was the first attempt; the API's login shares the window and is the fourth.
    let res = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"email": "r@console.test", "password": "nope nope nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        c.sign_in("r@console.test", PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password waits"
    );
}

#[tokio::test]
async fn another_teams_mailbox_is_not_found_and_an_api_key_is_no_session() {
    let app = spawn().await;
    let a = app.signup("a@console.test", "A").await;
    let b = app.signup("b@console.test", "B").await;
    let theirs = id(&app.create_mailbox(&b.token, "theirs@localhost").await);
    let msg = inject(&app, &b.token, &theirs, PLAIN_MAIL).await;
    let mut c = Client::new(&app);
    c.sign_in("a@console.test", PASSWORD).await;
    let (status, page) = c.get(&format!("/mailboxes/{theirs}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(page.contains("No such mailbox"));
    let (status, page) = c.get(&format!("/mailboxes/{theirs}/messages/{msg}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!page.contains("lavender-otter-42"));
    // A switch to a team the person is not in is refused.
    let (_, page) = c.get("/").await;
    let token = Client::csrf(&page);
    let (status, _) = c.post("/switch-team", &[("_csrf", &token), ("team_id", &b.team_id)]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let _ = a;

    // An API key put in the session cookie is no one.
    let key = app.create_key(&b.token, json!({"name": "infra", "kind": "infrastructure"})).await;
    let mut k = Client::new(&app);
    k.cookies.insert("sendmux_session".into(), key["key"].as_str().unwrap().to_owned());
    let (status, _) = k.get("/keys").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_person_in_two_teams_switches_between_them() {
    let app = spawn().await;
    let first = app.signup("two@console.test", "First team").await;
    let other = app.signup("owner2@console.test", "Second team").await;
    let res = app
        .post("/api/v1/team/invitations", &other.token, json!({"email": "two@console.test", "role": "member"}))
        .await;
    let token = expect_status(res, StatusCode::CREATED).await["token"].as_str().unwrap().to_owned();
    let res = app
        .client
        .post(app.url(&format!("/api/v1/auth/invitations/{token}/accept")))
        .json(&json!({"password": PASSWORD}))
        .send()
        .await
        .unwrap();
    expect_status(res, StatusCode::OK).await;
    let mut c = Client::new(&app);
    c.sign_in("two@console.test", PASSWORD).await;
    let (_, page) = c.get("/").await;
    assert!(page.contains("<strong>owner</strong> in <strong>First team</strong>"), "starts in the first team");
    let csrf = Client::csrf(&page);
    let (status, _) = c.post("/switch-team", &[("_csrf", &csrf), ("team_id", &other.team_id)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, page) = c.get("/").await;
    assert!(page.contains("<strong>member</strong> in <strong>Second team</strong>"), "now in the second team");
    let _ = first;
}

#[tokio::test]
async fn the_live_feed_shows_a_new_event_without_a_reload() {
    let app = spawn().await;
    let owner = app.signup("live@console.test", "Live").await;
    let mut s = Scenario::start(&app, "live_feed", signin("live@console.test"));
    assert_eq!(s.next().await["phase"], "connected");
    let event =
        emit(&app, &owner.team_id, None, "message.received", json!({"from": "ann@example.com", "subject": "hi"})).await;
    let stdin = s.stdin.as_mut().unwrap();
    stdin.write_all(format!("{event}\n").as_bytes()).await.unwrap();
    stdin.flush().await.unwrap();
    let shown = s.next().await;
    assert_eq!(shown["id"], event.as_str());
    s.finish().await;
}

#[tokio::test]
async fn an_admin_requests_a_limit_increase_from_80_percent() {
    let app = TestApp::spawn_with(&[("SENDMUX_LIMIT_MAILBOXES", "2")]).await;
    let owner = app.signup("lim@console.test", "Limits").await;
    let mut c = Client::new(&app);
    c.sign_in("lim@console.test", PASSWORD).await;
    app.create_mailbox(&owner.token, "one@localhost").await;
    let (_, page) = c.get("/limits").await;
    assert!(!page.contains("/limits/mailboxes/increase"), "at 50 %: no request button");
    app.create_mailbox(&owner.token, "two@localhost").await;
    let (_, page) = c.get("/limits").await;
    assert!(page.contains("action=\"/limits/mailboxes/increase\""), "at 100 %: the request form");
    let csrf = Client::csrf(&page);
    let (status, _) =
        c.post("/limits/mailboxes/increase", &[("_csrf", &csrf), ("requested", "10"), ("reason", "more agents")]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, page) = c.get("/limits").await;
    assert!(page.contains("sent to the operator"), "the notice says so");
    let list = expect_status(app.get("/api/v1/limits/increase-requests", &owner.token).await, StatusCode::OK).await;
    assert_eq!(list["data"][0]["requested"], 10);
    assert_eq!(list["data"][0]["status"], "pending");
}

#[tokio::test]
async fn the_audit_log_filters_by_action_and_actor() {
    let app = spawn().await;
    let owner = app.signup("aud@console.test", "Audit").await;
    let key = app
        .create_key(
            &owner.token,
            json!({"name": "infra", "kind": "infrastructure", "permissions": ["keys.manage", "mailboxes.manage"]}),
        )
        .await;
    app.create_mailbox(key["key"].as_str().unwrap(), "a@localhost").await;
    let mut c = Client::new(&app);
    c.sign_in("aud@console.test", PASSWORD).await;
    let (_, all) = c.get("/audit").await;
    assert!(all.contains("key.created") && all.contains("mailbox.created"));
    let (_, keys) = c.get("/audit?action=key.").await;
    assert!(keys.contains("key.created") && !keys.contains("mailbox.created"));
    let (_, by_key) = c.get(&format!("/audit?actor={}", id(&key))).await;
    assert!(by_key.contains("mailbox.created") && !by_key.contains(">key.created<"));
    // A member has no audit log: the page is refused like the API.
    app.add_member(&owner, "m@console.test", "member").await;
    let mut m = Client::new(&app);
    m.sign_in("m@console.test", PASSWORD).await;
    let (status, page) = m.get("/audit").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(page.contains("logs.read"));
    assert!(!page.contains("href=\"/audit\""), "and the navigation does not offer it");
}

#[tokio::test]
async fn usage_shows_the_month_with_a_server_drawn_chart() {
    let app = spawn().await;
    let owner = app.signup("use@console.test", "Usage").await;
    let mailbox = id(&app.create_mailbox(&owner.token, "agent@localhost").await);
    inject(&app, &owner.token, &mailbox, PLAIN_MAIL).await;
    let mut c = Client::new(&app);
    c.sign_in("use@console.test", PASSWORD).await;
    let (status, page) = c.get("/usage").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<svg class=\"chart\""), "the chart is SVG in the page");
    assert!(page.contains("Inbound emails"));
    let api = expect_status(app.get("/api/v1/billing/usage", &owner.token).await, StatusCode::OK).await;
    assert!(page.contains(&format!("${}", api["total"].as_str().unwrap())), "the month's total as the API has it");
    assert!(page.contains(": 1 emails"), "one bar holds the day's email");
}

#[tokio::test]
async fn the_live_feed_ends_when_the_session_does() {
    let app = spawn().await;
    app.signup("end@console.test", "End").await;
    let mut c = Client::new(&app);
    c.sign_in("end@console.test", PASSWORD).await;
    let (_, page) = c.get("/events").await;
    let csrf = Client::csrf(&page);
    let mut stream = c.http.get(app.url("/events/stream")).header("cookie", c.cookie_header()).send().await.unwrap();
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let first = stream.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains(": connected"));
    let (status, _) = c.post("/logout", &[("_csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    // The stream ends on its own (within about a second), long before its pings.
    let ended = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(_chunk) = stream.chunk().await.unwrap_or(None) {}
    })
    .await;
    assert!(ended.is_ok(), "the feed outlived its session");
}

#[tokio::test]
async fn an_admin_changes_a_role_removes_a_member_and_tests_a_provider() {
    let app = spawn().await;
    let owner = app.signup("own@console.test", "People").await;
    let dev = app.add_member(&owner, "dev@console.test", "developer").await;
    let member = app.add_member(&owner, "mem@console.test", "member").await;
    let mut c = Client::new(&app);
    c.sign_in("own@console.test", PASSWORD).await;
    let (_, page) = c.get("/members").await;
    let csrf = Client::csrf(&page);
    let (status, _) = c.post(&format!("/members/{}/role", dev.user_id), &[("_csrf", &csrf), ("role", "admin")]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, page) = c.get("/members").await;
    assert!(page.contains("dev@console.test is now admin."));
    let (status, _) = c.post(&format!("/members/{}/remove", member.user_id), &[("_csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let members = expect_status(app.get("/api/v1/team/members", &owner.token).await, StatusCode::OK).await;
    let roles: Vec<(String, String)> = members["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["email"].as_str().unwrap().to_owned(), m["role"].as_str().unwrap().to_owned()))
        .collect();
    assert!(roles.contains(&("dev@console.test".into(), "admin".into())));
    assert!(!roles.iter().any(|(e, _)| e == "mem@console.test"), "removed");
    // A refusal comes back with the API's message: the owner cannot be demoted here.
    let (status, _) =
        c.post(&format!("/members/{}/role", owner.user_id), &[("_csrf", &csrf), ("role", "member")]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, page) = c.get("/members").await;
    assert!(page.contains("notice-error"), "the refusal is shown");

    // A provider nothing listens for: its test fails, and the page says why.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port().to_string();
    drop(closed);
    let (_, page) = c.get("/providers").await;
    let csrf = Client::csrf(&page);
    let form = [
        ("_csrf", csrf.as_str()),
        ("name", "relay"),
        ("type", "smtp"),
        ("host", "127.0.0.1"),
        ("port", &port),
        ("security", "none"),
    ];
    assert_eq!(c.post("/providers", &form).await.0, StatusCode::SEE_OTHER);
    let providers = expect_status(app.get("/api/v1/providers", &owner.token).await, StatusCode::OK).await;
    let provider = id(&providers["data"][0]);
    let (status, _) = c.post(&format!("/providers/{provider}/test"), &[("_csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, page) = c.get("/providers").await;
    assert!(page.contains("Test failed"), "the live test result is shown");
}

#[tokio::test]
async fn rotating_a_key_shows_the_new_secret_once_and_ends_the_old_one() {
    let app = spawn().await;
    let owner = app.signup("rot@console.test", "Rotate").await;
    let key = app.create_key(&owner.token, json!({"name": "infra", "kind": "infrastructure"})).await;
    let old = key["key"].as_str().unwrap().to_owned();
    let mut c = Client::new(&app);
    c.sign_in("rot@console.test", PASSWORD).await;
    let (_, page) = c.get("/keys").await;
    let csrf = Client::csrf(&page);
    let (status, page) =
        c.post(&format!("/keys/{}/rotate", id(&key)), &[("_csrf", &csrf), ("grace_seconds", "0")]).await;
    assert_eq!(status, StatusCode::OK);
    let re = regex::Regex::new(r#"id="new-secret">(smx_inf_[A-Za-z0-9]+)<"#).unwrap();
    let new = re.captures(&page).expect("the new secret on the page")[1].to_owned();
    assert_ne!(new, old);
    assert_eq!(app.get("/api/v1/team", &old).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.get("/api/v1/team", &new).await.status(), StatusCode::OK);
    let (_, again) = c.get("/keys").await;
    assert!(!again.contains(&new), "shown once");
}

#[tokio::test]
async fn an_admin_changes_a_mailbox_settings_and_a_developer_cannot() {
    let app = spawn().await;
    let owner = app.signup("set@console.test", "Settings").await;
    app.add_member(&owner, "dev2@console.test", "developer").await;
    let mailbox = id(&app.create_mailbox(&owner.token, "agent@localhost").await);
    let mut c = Client::new(&app);
    c.sign_in("set@console.test", PASSWORD).await;
    let (_, page) = c.get(&format!("/mailboxes/{mailbox}")).await;
    let csrf = Client::csrf(&page);
    let form = [("_csrf", csrf.as_str()), ("spam_threshold", "7.5"), ("retention_days", "14"), ("accept_spam", "true")];
    assert_eq!(c.post(&format!("/mailboxes/{mailbox}/settings"), &form).await.0, StatusCode::SEE_OTHER);
    let got = expect_status(app.get(&format!("/api/v1/mailboxes/{mailbox}"), &owner.token).await, StatusCode::OK).await;
    assert_eq!(got["settings"]["spam_threshold"], 7.5);
    assert_eq!(got["settings"]["retention_days"], 14);
    assert_eq!(got["settings"]["accept_spam"], true);
    // Out of range: the service's refusal, shown as the API words it; nothing changes.
    let bad = [("_csrf", csrf.as_str()), ("spam_threshold", "500"), ("retention_days", "14")];
    c.post(&format!("/mailboxes/{mailbox}/settings"), &bad).await;
    let (_, page) = c.get(&format!("/mailboxes/{mailbox}")).await;
    assert!(page.contains("notice-error") && page.contains("spam_threshold"), "the refusal names the field");

    // A developer sees no settings form, and a forged post is refused by the service.
    let mut d = Client::new(&app);
    d.sign_in("dev2@console.test", PASSWORD).await;
    let (_, page) = d.get(&format!("/mailboxes/{mailbox}")).await;
    assert!(!page.contains("/settings\""), "no settings form for a developer");
    let csrf = Client::csrf(&page);
    let form = [("_csrf", csrf.as_str()), ("spam_threshold", "1")];
    d.post(&format!("/mailboxes/{mailbox}/settings"), &form).await;
    let (_, page) = d.get(&format!("/mailboxes/{mailbox}")).await;
    assert!(page.contains("mailboxes.manage"), "the API's permission message");
    let got = expect_status(app.get(&format!("/api/v1/mailboxes/{mailbox}"), &owner.token).await, StatusCode::OK).await;
    assert_eq!(got["settings"]["spam_threshold"], 7.5, "unchanged");
}

#[tokio::test]
async fn a_developer_disables_enables_and_rotates_a_webhook_secret() {
    let app = spawn().await;
    let owner = app.signup("wh@console.test", "Hooks2").await;
    app.add_member(&owner, "whdev@console.test", "developer").await;
    let res = app
        .post(
            "/api/v1/webhooks",
            &owner.token,
            json!({"url": "https://example.com/hook", "event_types": ["message.received"]}),
        )
        .await;
    let created = expect_status(res, StatusCode::CREATED).await;
    let (webhook, old) = (id(&created), created["secret"].as_str().unwrap().to_owned());
    let mut c = Client::new(&app);
    c.sign_in("whdev@console.test", PASSWORD).await;
    let (_, page) = c.get(&format!("/webhooks/{webhook}")).await;
    let csrf = Client::csrf(&page);
    assert_eq!(c.post(&format!("/webhooks/{webhook}/disable"), &[("_csrf", &csrf)]).await.0, StatusCode::SEE_OTHER);
    let got = expect_status(app.get(&format!("/api/v1/webhooks/{webhook}"), &owner.token).await, StatusCode::OK).await;
    assert_eq!(got["enabled"], false);
    assert_eq!(c.post(&format!("/webhooks/{webhook}/enable"), &[("_csrf", &csrf)]).await.0, StatusCode::SEE_OTHER);
    let got = expect_status(app.get(&format!("/api/v1/webhooks/{webhook}"), &owner.token).await, StatusCode::OK).await;
    assert_eq!(got["enabled"], true);
    let (status, page) = c.post(&format!("/webhooks/{webhook}/rotate-secret"), &[("_csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::OK);
    let re = regex::Regex::new(r#"id="new-secret">(whsec_[A-Za-z0-9+/=]+)<"#).unwrap();
    let new = re.captures(&page).expect("the new secret on the page")[1].to_owned();
    assert_ne!(new, old);
    let (_, again) = c.get(&format!("/webhooks/{webhook}")).await;
    assert!(!again.contains(&new), "shown once");
}
