//! The `sendmux` binary: help, configuration errors, startup on port 0 with a clean stop
//! on SIGTERM, and the operator's admin commands against the same store as the server.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

fn sendmux() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sendmux"));
    for (k, _) in std::env::vars() {
        if k.starts_with("SENDMUX_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// The CLI pointed at the test app's store.
fn sendmux_for(app: &TestApp) -> Command {
    let mut cmd = sendmux();
    cmd.env("SENDMUX_DATA_DIR", app.dir.path());
    if let Some(db) = &app.db {
        cmd.env("SENDMUX_DATABASE_URL", &db.url);
    }
    cmd
}

#[test]
fn help_names_every_command() {
    let out = sendmux().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for word in ["serve", "migrate", "admin", "--config"] {
        assert!(text.contains(word), "{text}");
    }
    let out = sendmux().args(["admin", "--help"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for word in ["create-team", "approve-increase", "deny-increase"] {
        assert!(text.contains(word), "{text}");
    }
}

#[test]
fn a_wrong_setting_stops_the_start_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value) in
        [("SENDMUX_HTTP_ADDR", "everywhere"), ("SENDMUX_SIGNUP", "sometimes"), ("SENDMUX_SECRET_KEY", "abc")]
    {
        let out = sendmux().arg("serve").env("SENDMUX_DATA_DIR", dir.path()).env(var, value).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains(var), "{var}: {err}");
    }
    let out = sendmux().args(["--config", "/nonexistent/sendmux.toml", "serve"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn serve_binds_port_zero_reports_it_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let db = if on_postgres() { Some(TestDb::create().await) } else { None };
    let mut cmd = sendmux();
    cmd.arg("serve")
        .env("SENDMUX_DATA_DIR", dir.path())
        .env("SENDMUX_HTTP_ADDR", "127.0.0.1:0")
        .env("SENDMUX_SMTP_ADDR", "127.0.0.1:0")
        .env("SENDMUX_ADMIN_TOKEN", "a-very-secret-admin-token")
        .env("SENDMUX_SIGNUP", "open")
        .env("SENDMUX_LOG", "debug")
        .stderr(Stdio::piped());
    if let Some(db) = &db {
        cmd.env("SENDMUX_DATABASE_URL", &db.url);
    }
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    let addr = loop {
        let line = rx.recv_timeout(Duration::from_secs(30)).expect("the server logs its address");
        log.push(line.clone());
        if let Some(rest) = line.split("http=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    assert!(!addr.ends_with(":0"), "the real port is reported: {addr}");
    let res = reqwest::get(format!("http://{addr}/healthz")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // Secrets pass through the server and must not reach its log, even at debug level.
    let client = reqwest::Client::new();
    let res = client
        .post(format!("http://{addr}/api/v1/auth/signup"))
        .json(&json!({"email": "log@cli.test", "password": PASSWORD, "team_name": "Logs"}))
        .send()
        .await
        .unwrap();
    let session = res.json::<serde_json::Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    let res = client
        .post(format!("http://{addr}/api/v1/keys"))
        .bearer_auth(&session)
        .json(&json!({"name": "k", "kind": "infrastructure"}))
        .send()
        .await
        .unwrap();
    let key = res.json::<serde_json::Value>().await.unwrap()["key"].as_str().unwrap().to_owned();
    let res = client
        .post(format!("http://{addr}/api/v1/team/invitations"))
        .bearer_auth(&session)
        .json(&json!({"email": "x@cli.test", "role": "member"}))
        .send()
        .await
        .unwrap();
    let invitation = res.json::<serde_json::Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    let res = client
        .post(format!("http://{addr}/api/v1/auth/invitations/{invitation}/accept"))
        .json(&json!({"password": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);

    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
        log.push(line);
    }
    let log = log.join("\n");
    assert!(log.contains("stopped"), "{log}");
    assert!(log.contains("/api/v1/keys"), "the debug log shows requests: {log}");
    for secret in ["a-very-secret-admin-token", PASSWORD, session.as_str(), key.as_str(), invitation.as_str()] {
        assert!(!log.contains(secret), "a secret reached the log: {secret}");
    }
}

#[tokio::test]
async fn admin_commands_create_teams_and_decide_increases() {
    let app = TestApp::spawn_with(&[("SENDMUX_LIMIT_PROVIDERS", "1"), ("SENDMUX_SIGNUP", "closed")]).await;
    let out = sendmux_for(&app)
        .args(["admin", "create-team", "--name", "Ops Made", "--owner-email", "ops@cli.test"])
        .env("SENDMUX_OWNER_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(printed.contains("team_"), "{printed}");

    let res = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"email": "ops@cli.test", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let token = expect_status(res, StatusCode::OK).await["token"].as_str().unwrap().to_owned();
    let team = expect_status(app.get("/api/v1/team", &token).await, StatusCode::OK).await;
    assert_eq!(team["name"], "Ops Made");

    // A new owner needs a password; a bad email is named.
    let out = sendmux_for(&app)
        .args(["admin", "create-team", "--name", "X", "--owner-email", "new@cli.test"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--owner-password"));
    let out =
        sendmux_for(&app).args(["admin", "create-team", "--name", "X", "--owner-email", "nope"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--owner-email"));

    app.create_smtp_provider(&token, "only").await;
    let req = expect_status(
        app.post(
            "/api/v1/limits/providers/increase-requests",
            &token,
            json!({"requested": 3, "reason": "second region"}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let id = req["id"].as_str().unwrap();
    let out = sendmux_for(&app).args(["admin", "increases"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(id));
    let out = sendmux_for(&app).args(["admin", "approve-increase", id]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = sendmux_for(&app).args(["admin", "deny-increase", id]).output().unwrap();
    assert!(!out.status.success(), "a decided request cannot be decided again");

    app.create_smtp_provider(&token, "second").await;
    app.create_smtp_provider(&token, "third").await;
    expect_error(
        app.post(
            "/api/v1/providers",
            &token,
            json!({"name": "fourth", "type": "smtp", "config": {"host": "h.test", "port": 25}}),
        )
        .await,
        StatusCode::CONFLICT,
        "limit_exceeded",
    )
    .await;
    let logs = expect_status(app.get("/api/v1/logs", &token).await, StatusCode::OK).await;
    let approval =
        logs["data"].as_array().unwrap().iter().find(|e| e["action"] == "limit.increase_approved").unwrap().clone();
    assert_eq!(approval["actor"], json!({"type": "operator", "id": "cli"}));
}

#[test]
fn migrate_applies_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let out = sendmux().arg("migrate").env("SENDMUX_DATA_DIR", dir.path()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(dir.path().join("sendmux.db").exists());
}
