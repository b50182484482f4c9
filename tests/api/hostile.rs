//! Findings of the hostile-tenant review (issue #13): providers cannot reach the
//! operator's network (SSRF, port scans, echoed bodies), reserved headers, named
//! missing fields, and a valid OpenAPI document.

use crate::helpers::*;
use crate::mail_servers::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// With no exemptions, as in production (the test default exempts loopback).
const GUARDED: (&str, &str) = ("SENDMUX_PROVIDER_ALLOWED_NETWORKS", "");
const REFUSED: &str = "refused: not a public address";

fn smtp(host: &str) -> Value {
    json!({"name": "p", "type": "smtp", "config": {"host": host, "port": 25, "security": "none"}})
}

fn ses(endpoint: &str) -> Value {
    json!({"name": "p", "type": "ses", "config": {"region": "us-east-1", "access_key_id": "AKIAEXAMPLE",
        "secret_access_key": "secret", "endpoint": endpoint}})
}

async fn refused(app: &TestApp, token: &str, body: Value, param: &str) {
    let res = app.post("/api/v1/providers", token, body.clone()).await;
    let err = expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await;
    assert_eq!(err["param"], param, "{body}: {err}");
}

#[tokio::test]
async fn providers_on_the_operators_network_are_refused_when_saved() {
    let app = TestApp::spawn_with(&[GUARDED]).await;
    let owner = app.signup("o@ssrf.test", "SSRF").await;
    for host in [
        "127.0.0.1",
        "[::1]",
        "::1",
        "0.0.0.0",
        "169.254.169.254",
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "127.1",
        "10.0.0.1",
        "192.168.1.10",
        "100.64.0.1",
        "[::ffff:127.0.0.1]",
        "[::ffff:169.254.169.254]",
        "[::127.0.0.1]",
        "[64:ff9b::a9fe:a9fe]",
        "[2002:7f00:1::1]",
        "[fd00:ec2::254]",
        "[fe80::1]",
        "localhost",
    ] {
        let res = app.post("/api/v1/providers", &owner.token, smtp(host)).await;
        let err = expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await;
        assert_eq!(err["param"], "config.host", "{host}: {err}");
        let words = err["message"].as_str().unwrap();
        assert!(words.contains(REFUSED), "{host}: {err}");
        // What a name resolved to is not told.
        assert!(!words.contains("127.0.0.1") && !words.contains("::1"), "{host}: {err}");
    }
    for endpoint in [
        "http://127.0.0.1:4566",
        "http://[::1]:4566/",
        "http://2130706433/",
        "http://169.254.169.254",
        "https://[::ffff:10.0.0.1]/",
        "http://localhost:8080",
    ] {
        refused(&app, &owner.token, ses(endpoint), "config.endpoint").await;
    }
    // Only a bare origin: no fragment, query, user info or path; http(s) only.
    for endpoint in [
        "http://8.8.8.8/#/api/v1/admin/teams",
        "http://8.8.8.8/?Action=x",
        "http://user:pw@8.8.8.8/",
        "http://8.8.8.8/latest/meta-data",
        "ftp://8.8.8.8/",
    ] {
        refused(&app, &owner.token, ses(endpoint), "config.endpoint").await;
    }
    // Public addresses are fine, and so is the same change made by PATCH refused.
    let p =
        expect_status(app.post("/api/v1/providers", &owner.token, smtp("8.8.8.8")).await, StatusCode::CREATED).await;
    expect_status(app.post("/api/v1/providers", &owner.token, ses("https://8.8.8.8/")).await, StatusCode::CREATED)
        .await;
    let path = format!("/api/v1/providers/{}", p["id"].as_str().unwrap());
    let res = app.patch(&path, &owner.token, json!({"config": {"host": "2130706433"}})).await;
    let err = expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await;
    assert_eq!(err["param"], "config.host");
}

/// A TCP listener nobody serves: tells whether anything connected to it.
fn trap() -> (std::net::TcpListener, u16) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

fn contacted(l: &std::net::TcpListener) -> bool {
    match l.accept() {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn a_provider_saved_while_allowed_is_refused_when_connecting_and_never_contacted() {
    let (smtp_trap, smtp_port) = trap();
    let (ses_trap, ses_port) = trap();
    // Saved while loopback was exempt; the operator then removes the exemption.
    let app = TestApp::spawn_with(&[
        ("SENDMUX_PROVIDER_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128"),
        ("SENDMUX_OUTBOUND_WORKERS", "0"),
    ])
    .await;
    let owner = app.signup("o@connect.test", "Connect").await;
    let body =
        json!({"name": "p", "type": "smtp", "config": {"host": "localhost", "port": smtp_port, "security": "none"}});
    let smtp_id =
        expect_status(app.post("/api/v1/providers", &owner.token, body).await, StatusCode::CREATED).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
    let ses_id = expect_status(
        app.post("/api/v1/providers", &owner.token, ses(&format!("http://127.0.0.1:{ses_port}"))).await,
        StatusCode::CREATED,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let app = app.restart_with(&[GUARDED]).await;
    // A connection would hang on the traps (nothing answers): a refusal comes at once.
    let within = Duration::from_secs(30);
    for id in [&smtp_id, &ses_id] {
        let res =
            tokio::time::timeout(within, app.post(&format!("/api/v1/providers/{id}/test"), &owner.token, json!({})))
                .await
                .expect("the check connected to a refused address");
        let out = expect_status(res, StatusCode::OK).await;
        assert_eq!(out["ok"], false, "{out}");
        let words = out["message"].as_str().unwrap();
        assert!(words.contains(REFUSED) && !words.contains("127.0.0.1"), "{out}");
    }
    // A send through the SMTP provider is refused the same way.
    let g = expect_status(
        app.post(
            "/api/v1/delivery-groups",
            &owner.token,
            json!({"name": "g", "strategy": "failover", "members": [{"provider_id": smtp_id}]}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let key = app.create_key(&owner.token, json!({"name": "s", "kind": "sending", "delivery_group_id": g["id"]})).await;
    let key = key["key"].as_str().unwrap();
    let sent = expect_status(
        app.post(
            "/api/v1/emails",
            key,
            json!({"from": "a@example.com", "to": ["b@example.org"], "subject": "s", "text": "t"}),
        )
        .await,
        StatusCode::ACCEPTED,
    )
    .await;
    tokio::time::timeout(within, sendmux::outbound::worker::run_pending_jobs(&app.state))
        .await
        .expect("the send connected to a refused address")
        .unwrap();
    let out =
        expect_status(app.get(&format!("/api/v1/emails/{}", sent["id"].as_str().unwrap()), key).await, StatusCode::OK)
            .await;
    assert!(out["attempts"][0]["response"].as_str().unwrap().contains(REFUSED), "{out}");
    assert!(!contacted(&smtp_trap), "the refused SMTP host was contacted");
    assert!(!contacted(&ses_trap), "the refused SES endpoint was contacted");
}

/// An HTTP server answering every request with `response`; it records request lines.
async fn http_server(response: String) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let response = response.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = sock.read(&mut chunk).await else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length: usize = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap())
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + length {
                            log.lock().unwrap().push(text.lines().next().unwrap_or("").to_owned());
                            let _ = sock.write_all(response.as_bytes()).await;
                            let _ = sock.shutdown().await;
                            return;
                        }
                    }
                }
            });
        }
    });
    (port, seen)
}

#[tokio::test]
async fn ses_checks_follow_no_redirect_and_echo_no_remote_body() {
    let app = TestApp::spawn_with(&[("SENDMUX_OUTBOUND_WORKERS", "0")]).await;
    let owner = app.signup("o@ses-echo.test", "Echo").await;
    let (target, target_seen) = http_server(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}".into(),
    )
    .await;
    let (redirector, redirector_seen) = http_server(format!(
        "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://127.0.0.1:{target}/internal\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    ))
    .await;
    let secret_body = "<html>operator-only page: db password hunter2</html>";
    let (echo, _) = http_server(format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{secret_body}",
        secret_body.len()
    ))
    .await;
    let json_body = r#"{"__type":"MessageRejected","message":"internal detail: hunter2"}"#;
    let (coded, _) = http_server(format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{json_body}",
        json_body.len()
    ))
    .await;
    let check = |port: u16| {
        let app = &app;
        let token = owner.token.clone();
        async move {
            let p = expect_status(
                app.post("/api/v1/providers", &token, ses(&format!("http://127.0.0.1:{port}"))).await,
                StatusCode::CREATED,
            )
            .await;
            let id = p["id"].as_str().unwrap();
            expect_status(app.post(&format!("/api/v1/providers/{id}/test"), &token, json!({})).await, StatusCode::OK)
                .await
        }
    };
    let out = check(redirector).await;
    assert_eq!(out["ok"], false, "a redirect is not success: {out}");
    assert_eq!(redirector_seen.lock().unwrap().len(), 1);
    assert!(target_seen.lock().unwrap().is_empty(), "the redirect was followed");
    let out = check(echo).await;
    assert_eq!(out["ok"], false);
    assert!(!out["message"].as_str().unwrap().contains("hunter2"), "the remote body was echoed: {out}");
    let out = check(coded).await;
    let words = out["message"].as_str().unwrap();
    assert!(words.contains("MessageRejected") && !words.contains("hunter2"), "{out}");
}

#[tokio::test]
async fn smtp_checks_quote_no_more_than_the_reply_line_and_end_in_bounded_time() {
    let app = TestApp::spawn().await;
    let owner = app.signup("o@smtp-echo.test", "Echo").await;
    // Something that is not SMTP answers with a body of its own.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let chatty = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let _ = sock
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\n\r\nsecret-admin-token-hunter2\r\n",
                )
                .await;
            let _ = sock.shutdown().await;
        }
    });
    // Something that accepts and never says a word.
    let silent_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent = silent_listener.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    let hold = held.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = silent_listener.accept().await {
            hold.lock().unwrap().push(sock);
        }
    });
    let multi = SmtpServer::start(None).await;
    for (port, name) in [(chatty, "chatty"), (silent, "silent"), (multi.port, "ok")] {
        let body =
            json!({"name": name, "type": "smtp", "config": {"host": "127.0.0.1", "port": port, "security": "none"}});
        let p = expect_status(app.post("/api/v1/providers", &owner.token, body).await, StatusCode::CREATED).await;
        let id = p["id"].as_str().unwrap().to_owned();
        // The check's own bound (10 s) ends a silent peer long before this deadline.
        let out = tokio::time::timeout(
            Duration::from_secs(40),
            app.post(&format!("/api/v1/providers/{id}/test"), &owner.token, json!({})),
        )
        .await
        .unwrap_or_else(|_| panic!("{name}: the check was not bounded"));
        let out = expect_status(out, StatusCode::OK).await;
        let words = out["message"].as_str().unwrap_or("");
        assert!(!words.contains("hunter2"), "{name}: {out}");
        if name == "ok" {
            assert_eq!(out["ok"], true, "{out}");
        } else {
            assert_eq!(out["ok"], false, "{out}");
        }
    }
}

#[tokio::test]
async fn x_sendmux_headers_are_reserved() {
    let app = TestApp::spawn_with(&[("SENDMUX_OUTBOUND_WORKERS", "0")]).await;
    let owner = app.signup("o@reserved.test", "Reserved").await;
    let prv = app.create_smtp_provider(&owner.token, "relay").await;
    let g = app.create_group(&owner.token, prv["id"].as_str().unwrap()).await;
    let key = app.create_key(&owner.token, json!({"name": "s", "kind": "sending", "delivery_group_id": g["id"]})).await;
    let key = key["key"].as_str().unwrap();
    for name in ["X-Sendmux-Signature", "x-sendmux-event-id", "X-SENDMUX-Team"] {
        let body = json!({"from": "a@example.com", "to": ["b@example.org"], "subject": "s", "text": "t",
            "headers": {name: "forged"}});
        let err = expect_error(
            app.post("/api/v1/emails", key, body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        )
        .await;
        assert_eq!(err["param"], format!("headers.{name}"), "{err}");
    }
    let body = json!({"from": "a@example.com", "to": ["b@example.org"], "subject": "s", "text": "t",
        "headers": {"X-Sendmuxer": "fine", "X-Campaign": "fine"}});
    expect_status(app.post("/api/v1/emails", key, body).await, StatusCode::ACCEPTED).await;
}

#[tokio::test]
async fn a_missing_required_field_is_named() {
    let app = TestApp::spawn_with(&[("SENDMUX_OUTBOUND_WORKERS", "0")]).await;
    let owner = app.signup("o@missing.test", "Missing").await;
    let prv = app.create_smtp_provider(&owner.token, "relay").await;
    let g = app.create_group(&owner.token, prv["id"].as_str().unwrap()).await;
    let key = app.create_key(&owner.token, json!({"name": "s", "kind": "sending", "delivery_group_id": g["id"]})).await;
    let key = key["key"].as_str().unwrap().to_owned();
    let cases: Vec<(&str, &str, Value, &str)> = vec![
        (
            "/api/v1/emails",
            key.as_str(),
            json!({"from": "a@example.com", "to": ["b@example.org"], "text": "t"}),
            "subject",
        ),
        (
            "/api/v1/emails",
            key.as_str(),
            json!({"from": "a@example.com", "to": ["b@example.org"], "subject": "s", "text": "t",
                "attachments": [{"filename": "a.txt"}]}),
            "attachments[0].content",
        ),
        ("/api/v1/mailboxes", owner.token.as_str(), json!({"name": "no address"}), "address"),
        (
            "/api/v1/providers",
            owner.token.as_str(),
            json!({"type": "smtp", "config": {"host": "8.8.8.8", "port": 25}}),
            "name",
        ),
        (
            "/api/v1/providers",
            owner.token.as_str(),
            json!({"name": "p", "type": "smtp", "config": {"port": 25}}),
            "config.host",
        ),
    ];
    for (path, token, body, param) in cases {
        let res = app.post(path, token, body.clone()).await;
        let err = expect_error(res, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request").await;
        assert_eq!(err["param"], param, "{path} {body}: {err}");
    }
}

/// Every `$ref` in `v` (recursively).
fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_openapi_document_is_valid() {
    let app = TestApp::spawn().await;
    let doc: Value = app.client.get(app.url("/api/v1/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    let mut ids: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if let Some(id) = op.get("operationId").and_then(Value::as_str) {
                ids.entry(id.to_owned()).or_default().push(format!("{method} {path}"));
            }
        }
    }
    let duplicates: Vec<_> = ids.iter().filter(|(_, ops)| ops.len() > 1).collect();
    assert!(duplicates.is_empty(), "duplicate operationIds: {duplicates:?}");
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("{r} is not a local reference"));
        assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
    }
    // The reference validator, when installed (CI installs it).
    let has_validator = std::process::Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .status()
        .is_ok_and(|s| s.success());
    if has_validator {
        let file = app.dir.path().join("openapi.json");
        std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                "import json, sys; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1])))",
                &file.display().to_string(),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "openapi-spec-validator: {}", String::from_utf8_lossy(&out.stderr));
    } else {
        eprintln!("openapi-spec-validator is not installed; only the built-in checks ran");
    }
}
