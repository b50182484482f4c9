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
    pub async fn restart(mut self) -> TestApp {
        self.stop().await;
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
        let db = self.db.take();
        let env: Vec<(String, String)> = std::mem::take(&mut self.env);
        let extra: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Self::spawn_in(dir, db, &extra).await
    }

    async fn spawn_in(dir: tempfile::TempDir, db: Option<TestDb>, extra: &[(&str, &str)]) -> TestApp {
        let mut env: Vec<(String, String)> = vec![
            ("SENDMUX_HTTP_ADDR".into(), "127.0.0.1:0".into()),
            ("SENDMUX_SMTP_ADDR".into(), "127.0.0.1:0".into()),
            ("SENDMUX_DATA_DIR".into(), dir.path().display().to_string()),
            ("SENDMUX_SIGNUP".into(), "open".into()),
            ("SENDMUX_ADMIN_TOKEN".into(), ADMIN_TOKEN.into()),
            ("SENDMUX_INBOUND_DOMAINS".into(), "localhost,mail.test".into()),
            ("SENDMUX_AUTH_RATE_LIMIT_PER_MINUTE".into(), "10000".into()),
        ];
        if let Some(db) = &db {
            env.push(("SENDMUX_DATABASE_URL".into(), db.url.clone()));
        }
        for (k, v) in extra {
            env.retain(|(name, _)| name != k);
            env.push((k.to_string(), v.to_string()));
        }
        env.retain(|(k, _)| k != "SENDMUX_DATA_DIR" && k != "SENDMUX_DATABASE_URL");
        env.push(("SENDMUX_DATA_DIR".into(), dir.path().display().to_string()));
        if let Some(db) = &db {
            env.push(("SENDMUX_DATABASE_URL".into(), db.url.clone()));
        }
        let settings = Settings::from_sources(None, &env).expect("test settings");
        let app = App::build(settings).await.expect("app builds");
        let base = format!("http://{}", app.http_addr());
        let state = app.state().clone();
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let server = tokio::spawn(async move {
            app.run_until_stopped(stop).await.expect("server runs");
        });
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        TestApp { env, base, client, state, shutdown, server: Some(server), db, dir }
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

/// Asserts an error response in the SPEC shape and returns its `error` object.
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
    let row = events::append(store.backend(), &mut tx, team_id, kind, subject, data).await.unwrap();
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
