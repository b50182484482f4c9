//! `TestApp`: the real server on port 0 over a fresh store — a SQLite file in a temporary
//! folder, or a new PostgreSQL database dropped afterwards — chosen by
//! `SENDMUX_TEST_STORE=sqlite|postgres`, plus helpers named after user actions.

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use sendmux::app::App;
use sendmux::config::Settings;
use sendmux::state::AppState;
use serde_json::{Value, json};
use sqlx::Row;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const PASSWORD: &str = "correct horse battery staple";

pub fn postgres_admin_url() -> String {
    std::env::var("SENDMUX_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn on_postgres() -> bool {
    match std::env::var("SENDMUX_TEST_STORE").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Err(_) => false,
        Ok(other) => panic!("SENDMUX_TEST_STORE must be sqlite or postgres, not {other}"),
    }
}

/// A PostgreSQL database made for one test and dropped when the test ends.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        use sqlx::Connection;
        let name = format!("sendmux_test_{}", ulid::Ulid::new().to_string().to_lowercase());
        let admin = postgres_admin_url();
        let mut conn = sqlx::PgConnection::connect(&admin).await.expect("PostgreSQL at SENDMUX_TEST_POSTGRES_URL");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let base = admin.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap_or(admin);
        TestDb { url: format!("{base}/{name}"), name }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let result = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async move {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&postgres_admin_url()).await.ok()?;
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                    .execute(&mut conn)
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(result, Ok(Some(_))) {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}

pub struct TestApp {
    env: Vec<(String, String)>,
    pub base: String,
    pub smtp_addr: std::net::SocketAddr,
    pub client: reqwest::Client,
    pub state: AppState,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<()>>,
    pub db: Option<TestDb>,
    pub dir: tempfile::TempDir,
}

/// A signed-in person: their session token, user id and team.
#[derive(Clone, Debug)]
pub struct Person {
    pub token: String,
    pub user_id: String,
    pub team_id: String,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(&[]).await
    }

    /// Starts the server with extra `SENDMUX_*` settings.
    pub async fn spawn_with(extra: &[(&str, &str)]) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = if on_postgres() { Some(TestDb::create().await) } else { None };
        Self::spawn_in(dir, db, extra).await
    }

    /// Stops this server and starts a new one on the same data folder and database.
    pub async fn restart(self) -> TestApp {
        self.restart_with(&[]).await
    }

    /// As [`TestApp::restart`], with some settings changed.
    pub async fn restart_with(mut self, changes: &[(&str, &str)]) -> TestApp {
        self.stop().await;
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
        let db = self.db.take();
        let mut env: Vec<(String, String)> = std::mem::take(&mut self.env);
        for (k, v) in changes {
            env.retain(|(name, _)| name != k);
            env.push((k.to_string(), v.to_string()));
        }
        let extra: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Self::spawn_in(dir, db, &extra).await
    }

    async fn spawn_in(dir: tempfile::TempDir, db: Option<TestDb>, extra: &[(&str, &str)]) -> TestApp {
        // `SENDMUX_TEST_LOG=warn` (a tracing filter) shows what the servers log.
        if let Ok(filter) = std::env::var("SENDMUX_TEST_LOG") {
            let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
        }
        let mut env: Vec<(String, String)> = vec![
            ("SENDMUX_HTTP_ADDR".into(), "127.0.0.1:0".into()),
            ("SENDMUX_SMTP_ADDR".into(), "127.0.0.1:0".into()),
            ("SENDMUX_DATA_DIR".into(), dir.path().display().to_string()),
            ("SENDMUX_SIGNUP".into(), "open".into()),
            ("SENDMUX_ADMIN_TOKEN".into(), ADMIN_TOKEN.into()),
            ("SENDMUX_INBOUND_DOMAINS".into(), "localhost,mail.test".into()),
            ("SENDMUX_AUTH_RATE_LIMIT_PER_MINUTE".into(), "10000".into()),
            // No DNS unless a test serves its own records (see DnsServer).
            ("SENDMUX_DNS_SERVER".into(), "off".into()),
            // The outbound tests' SMTP and SES servers run on loopback.
            ("SENDMUX_PROVIDER_ALLOWED_NETWORKS".into(), "127.0.0.0/8,::1/128".into()),
        ];
        if let Some(db) = &db {
            env.push(("SENDMUX_DATABASE_URL".into(), db.url.clone()));
        }
        for (k, v) in extra {
            env.retain(|(name, _)| name != k);
            env.push((k.to_string(), v.to_string()));
        }
        env.retain(|(k, _)| k != "SENDMUX_DATA_DIR" && (db.is_none() || k != "SENDMUX_DATABASE_URL"));
        env.push(("SENDMUX_DATA_DIR".into(), dir.path().display().to_string()));
        if let Some(db) = &db {
            env.push(("SENDMUX_DATABASE_URL".into(), db.url.clone()));
        }
        let settings = Settings::from_sources(None, &env).expect("test settings");
        let app = App::build(settings).await.expect("app builds");
        let base = format!("http://{}", app.http_addr());
        // A node without the `smtp` role has no listener: its address is 0.0.0.0:0.
        let smtp_addr = app.smtp_addr().unwrap_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
        let state = app.state().clone();
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let server = tokio::spawn(async move {
            app.run_until_stopped(stop).await.expect("server runs");
        });
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        TestApp { env, base, smtp_addr, client, state, shutdown, server: Some(server), db, dir }
    }

    /// Another node on this node's database, with a data folder of its own and the same
    /// settings plus `extra`. On SQLite the database file must be outside the data
    /// folder: name it with `SENDMUX_DATABASE_URL` when spawning the first node.
    pub async fn spawn_node(&self, extra: &[(&str, &str)]) -> TestApp {
        let mut env: Vec<(String, String)> = self.env.clone();
        if let Some(db) = &self.db {
            env.retain(|(k, _)| k != "SENDMUX_DATABASE_URL");
            env.push(("SENDMUX_DATABASE_URL".into(), db.url.clone()));
        }
        for (k, v) in extra {
            env.retain(|(name, _)| name != k);
            env.push((k.to_string(), v.to_string()));
        }
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Self::spawn_in(tempfile::tempdir().expect("temp dir"), None, &env).await
    }

    /// Stops the server and waits until it has drained.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.await.expect("server task ends");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn req(&self, method: Method, path: &str, token: &str) -> RequestBuilder {
        self.client.request(method, self.url(path)).bearer_auth(token)
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.req(Method::GET, path, token).send().await.expect("request")
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Response {
        self.req(Method::POST, path, token).json(&body).send().await.expect("request")
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Response {
        self.req(Method::PATCH, path, token).json(&body).send().await.expect("request")
    }

    pub async fn delete(&self, path: &str, token: &str) -> Response {
        self.req(Method::DELETE, path, token).send().await.expect("request")
    }

    pub async fn signup(&self, email: &str, team: &str) -> Person {
        let res = self
            .client
            .post(self.url("/api/v1/auth/signup"))
            .json(&json!({"email": email, "password": PASSWORD, "team_name": team}))
            .send()
            .await
            .unwrap();
        let body = expect_status(res, StatusCode::CREATED).await;
        Person {
            token: body["token"].as_str().unwrap().to_owned(),
            user_id: body["user_id"].as_str().unwrap().to_owned(),
            team_id: body["team_id"].as_str().unwrap().to_owned(),
        }
    }

    /// Invites `email` into `owner`'s team with `role` and accepts; returns the member.
    pub async fn add_member(&self, owner: &Person, email: &str, role: &str) -> Person {
        let res = self.post("/api/v1/team/invitations", &owner.token, json!({"email": email, "role": role})).await;
        let inv = expect_status(res, StatusCode::CREATED).await;
        let token = inv["token"].as_str().unwrap();
        let res = self
            .client
            .post(self.url(&format!("/api/v1/auth/invitations/{token}/accept")))
            .json(&json!({"password": PASSWORD}))
            .send()
            .await
            .unwrap();
        let body = expect_status(res, StatusCode::OK).await;
        Person {
            token: body["token"].as_str().unwrap().to_owned(),
            user_id: body["user_id"].as_str().unwrap().to_owned(),
            team_id: owner.team_id.clone(),
        }
    }

    /// Creates a key and returns its JSON (with the secret in `key`).
    pub async fn create_key(&self, token: &str, body: Value) -> Value {
        let res = self.post("/api/v1/keys", token, body).await;
        expect_status(res, StatusCode::CREATED).await
    }

    pub async fn create_mailbox(&self, token: &str, address: &str) -> Value {
        let res = self.post("/api/v1/mailboxes", token, json!({"address": address})).await;
        expect_status(res, StatusCode::CREATED).await
    }

    pub async fn create_smtp_provider(&self, token: &str, name: &str) -> Value {
        let body = json!({"name": name, "type": "smtp", "config": {"host": "127.0.0.1", "port": 2526, "security": "none", "username": "relay-user", "password": "relay-password-secret"}});
        expect_status(self.post("/api/v1/providers", token, body).await, StatusCode::CREATED).await
    }

    pub async fn create_group(&self, token: &str, provider_id: &str) -> Value {
        let body = json!({"name": "main", "strategy": "failover", "members": [{"provider_id": provider_id}]});
        expect_status(self.post("/api/v1/delivery-groups", token, body).await, StatusCode::CREATED).await
    }

    /// Every text value stored in every table, for tests that look for secrets.
    pub async fn all_stored_text(&self) -> Vec<String> {
        let pool = self.state.store.pool();
        let tables: Vec<String> = if on_postgres() {
            sqlx::query_scalar("SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'")
                .fetch_all(pool)
                .await
                .unwrap()
        } else {
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'").fetch_all(pool).await.unwrap()
        };
        let mut out = Vec::new();
        // sqlx's own bookkeeping holds no user data (and types the Any driver cannot read).
        for table in tables.into_iter().filter(|t| !t.starts_with("_sqlx") && t != "sqlite_sequence") {
            let rows =
                sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM {table}"))).fetch_all(pool).await.unwrap();
            for row in rows {
                for i in 0..row.len() {
                    if let Ok(Some(text)) = row.try_get::<Option<String>, _>(i) {
                        out.push(text);
                    }
                }
            }
        }
        out
    }

    pub async fn count(&self, sql: &'static str, team_id: &str) -> i64 {
        sqlx::query_scalar(sql).bind(team_id).fetch_one(self.state.store.pool()).await.unwrap()
    }

    /// The blob key of inbound message `id`'s body.
    pub async fn body_key(&self, id: &str) -> String {
        sqlx::query_scalar("SELECT blob_key FROM inbound_messages WHERE id = $1")
            .bind(id)
            .fetch_one(self.state.store.pool())
            .await
            .unwrap()
    }

    /// Whether the bytes stored under `key` are still on disk: a deleted body reads back
    /// as zeros (its blocks were punched out of the segment) or not at all (its segment
    /// went with it).
    pub async fn body_on_disk(&self, key: &str) -> bool {
        self.state.blobs.get(key).await.is_ok_and(|bytes| bytes.iter().any(|&b| b != 0))
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Asserts the status and returns the JSON body (Null when empty).
pub async fn expect_status(res: Response, status: StatusCode) -> Value {
    let got = res.status();
    let url = res.url().to_string();
    let text = res.text().await.unwrap_or_default();
    assert_eq!(got, status, "{url}: {text}");
    if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) }
}

/// Asserts an error response in the API.md §1 shape and returns its `error` object.
pub async fn expect_error(res: Response, status: StatusCode, kind: &str) -> Value {
    let request_id = res.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = expect_status(res, status).await;
    let err = body.get("error").unwrap_or_else(|| panic!("no error object in {body}")).clone();
    assert_eq!(err["type"], kind, "{body}");
    assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(err.get("param").is_some(), "param must be present (null or a field): {body}");
    let rid = err["request_id"].as_str().unwrap_or_default();
    assert!(rid.starts_with("req_"), "{body}");
    assert_eq!(request_id.as_deref(), Some(rid), "X-Request-Id must match the body");
    err
}

/// Polls `check` until it returns true or the deadline passes.
pub async fn eventually<F, Fut>(what: &str, deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not true within {deadline:?}");
}

/// Appends an event to the team's log as a committed change does, and rings the bus.
pub async fn emit(app: &TestApp, team_id: &str, mailbox_id: Option<&str>, kind: &str, data: Value) -> String {
    use sendmux::store::events::{self, Subject};
    let store = &app.state.store;
    let mut tx = store.begin().await.unwrap();
    let subject = Subject { mailbox_id, ..Default::default() };
    let row = events::append(&mut tx, team_id, kind, subject, data).await.unwrap();
    app.state.commit(tx, team_id).await.unwrap();
    row.id
}

/// One request a [`Receiver`] got.
#[derive(Clone, Debug)]
pub struct Hit {
    pub headers: std::collections::HashMap<String, String>,
    pub body: String,
}

/// A real HTTP server on loopback that records every request and answers with the
/// planned statuses in order (then 200).
pub struct Receiver {
    pub url: String,
    hits: std::sync::Arc<std::sync::Mutex<Vec<Hit>>>,
    _server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start(plan: Vec<u16>) -> Receiver {
        use axum::http::{HeaderMap, StatusCode as S};
        let hits: std::sync::Arc<std::sync::Mutex<Vec<Hit>>> = Default::default();
        let plan = std::sync::Arc::new(std::sync::Mutex::new(std::collections::VecDeque::from(plan)));
        let (h, p) = (hits.clone(), plan.clone());
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: String| {
            let (h, p) = (h.clone(), p.clone());
            async move {
                let headers = headers
                    .iter()
                    .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned()))
                    .collect();
                h.lock().unwrap().push(Hit { headers, body });
                let status = p.lock().unwrap().pop_front().unwrap_or(200);
                (S::from_u16(status).unwrap(), format!("answer {status}"))
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks/sendmux", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver { url, hits, _server: server }
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests have arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Hit> {
        eventually(&format!("{n} webhook requests"), Duration::from_secs(20), || async { self.hits().len() >= n })
            .await;
        self.hits()
    }
}

/// Polls `check` until it yields a value or the deadline passes.
pub async fn wait_for_value<F, Fut, T>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    while start.elapsed() < deadline {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not there within {deadline:?}");
}

/// The folder of the test support scripts (Python: smtplib client, DNS server).
pub fn support(script: &str) -> String {
    format!("{}/tests/support/{script}", env!("CARGO_MANIFEST_DIR"))
}

impl TestApp {
    /// Sends `raw` with Python's smtplib (a real SMTP client) and returns its report:
    /// `{"ehlo", "mail", "rcpt": [[code, text]..], "data": [code, text] | null}`.
    pub async fn send_smtp(&self, from: &str, to: &[&str], raw: &[u8]) -> Value {
        self.send_smtp_with(from, to, raw, &[]).await
    }

    /// As `send_smtp` with extra arguments (`--starttls`, `--count N`, `--threads T`).
    pub async fn send_smtp_with(&self, from: &str, to: &[&str], raw: &[u8], extra: &[&str]) -> Value {
        use tokio::io::AsyncWriteExt;
        let mut child = tokio::process::Command::new("python3")
            .arg(support("smtp_send.py"))
            .arg(self.smtp_addr.ip().to_string())
            .arg(self.smtp_addr.port().to_string())
            .arg(from)
            .arg(to.join(","))
            .args(extra)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(raw).await.unwrap();
        drop(stdin);
        let out = child.wait_with_output().await.unwrap();
        assert!(out.status.success(), "smtp_send.py failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("smtp_send.py prints JSON")
    }

    /// A mailbox and a mailbox key for it with `permissions`; returns (mailbox, key secret).
    pub async fn mailbox_with_key(&self, token: &str, address: &str, permissions: &[&str]) -> (Value, String) {
        let mbx = self.create_mailbox(token, address).await;
        let key = self
            .create_key(
                token,
                json!({"name": "mbx", "kind": "mailbox", "mailbox_id": mbx["id"], "permissions": permissions}),
            )
            .await;
        (mbx, key["key"].as_str().unwrap().to_owned())
    }

    /// The messages a mailbox key sees, newest first.
    pub async fn inbox(&self, key: &str) -> Vec<Value> {
        let list = expect_status(self.get("/api/v1/mailbox/messages?limit=100", key).await, StatusCode::OK).await;
        list["data"].as_array().unwrap().clone()
    }

    pub async fn raw_message(&self, key: &str, id: &str) -> Vec<u8> {
        let res = self.get(&format!("/api/v1/mailbox/messages/{id}/raw"), key).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["content-type"], "message/rfc822");
        res.bytes().await.unwrap().to_vec()
    }
}

/// An SMTP client speaking raw bytes, for what smtplib will not do (pipelining,
/// bare LF, overlong lines, NUL bytes, half-finished conversations).
pub struct RawSmtp {
    reader: tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl RawSmtp {
    /// Connects and returns the client with the greeting's code.
    pub async fn connect(addr: std::net::SocketAddr) -> (RawSmtp, u16) {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect to SMTP");
        let (r, w) = stream.into_split();
        let mut c = RawSmtp { reader: tokio::io::BufReader::new(r), writer: w };
        let (code, _) = c.reply().await;
        (c, code)
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.writer.write_all(bytes).await.expect("write to SMTP");
    }

    /// Reads one (possibly multi-line) reply; code 0 when the server closed.
    pub async fn reply(&mut self) -> (u16, String) {
        use tokio::io::AsyncBufReadExt;
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(30), self.reader.read_line(&mut line))
                .await
                .expect("SMTP reply within 30 s")
                .unwrap_or(0);
            if n == 0 {
                return (0, text);
            }
            text.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                let code = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
                return (code, text);
            }
        }
    }

    pub async fn cmd(&mut self, line: &str) -> (u16, String) {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// EHLO, MAIL, RCPT, DATA and `body` (already dot-stuffed, ending in CRLF.CRLF);
    /// returns the end-of-DATA reply.
    pub async fn transaction(&mut self, from: &str, to: &str, body: &[u8]) -> (u16, String) {
        assert_eq!(self.cmd("EHLO raw.test").await.0, 250);
        assert_eq!(self.cmd(&format!("MAIL FROM:<{from}>")).await.0, 250);
        let (code, text) = self.cmd(&format!("RCPT TO:<{to}>")).await;
        assert_eq!(code, 250, "{text}");
        assert_eq!(self.cmd("DATA").await.0, 354);
        self.send(body).await;
        self.reply().await
    }
}

/// A real DNS server on loopback (tests/support/dns_server.py) serving TXT records, and
/// MX records written `MX <preference> <host>`. [`DnsServer::set_records`] replaces them
/// while it runs.
pub struct DnsServer {
    pub addr: String,
    _child: tokio::process::Child,
    records: tempfile::NamedTempFile,
}

fn records_json(records: &[(&str, &str)]) -> String {
    let mut map = serde_json::Map::new();
    for (name, text) in records {
        let entry = map.entry(name.to_string()).or_insert_with(|| json!([]));
        entry.as_array_mut().unwrap().push(json!(text));
    }
    Value::Object(map).to_string()
}

impl DnsServer {
    /// Serves `records` from now on (the server reads its file again when it changes).
    pub fn set_records(&self, records: &[(&str, &str)]) {
        let dir = self.records.path().parent().unwrap();
        let next = tempfile::NamedTempFile::new_in(dir).unwrap();
        std::fs::write(next.path(), records_json(records)).unwrap();
        next.persist(self.records.path()).unwrap();
    }

    pub async fn start(records: &[(&str, &str)]) -> DnsServer {
        use tokio::io::AsyncBufReadExt;
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), records_json(records)).unwrap();
        let mut child = tokio::process::Command::new("python3")
            .arg(support("dns_server.py"))
            .arg(file.path())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 with dnslib");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        tokio::io::BufReader::new(stdout).read_line(&mut line).await.unwrap();
        let port: u16 = line.trim().parse().expect("dns_server.py prints its port");
        DnsServer { addr: format!("127.0.0.1:{port}"), _child: child, records: file }
    }
}
