//! Findings of the hostile-tenant review (issue #13) that show over HTTP: metric labels a
//! client cannot grow, connections that cannot be held open, private files in the data
//! folder, a range replay that queues each event once, and admin-token guessing.

use crate::helpers::*;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

fn http_addr(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

/// Reads one HTTP/1.1 response (head and `Content-Length` body) from `stream`; None when
/// the connection closed first or nothing complete came before `deadline`.
async fn read_response(stream: &mut TcpStream, deadline: Instant) -> Option<(u16, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
                return Some((status, String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned()));
            }
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
}

async fn get_healthz(stream: &mut TcpStream) -> Option<u16> {
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: sendmux.test\r\n\r\n").await.ok()?;
    read_response(stream, Instant::now() + Duration::from_secs(10)).await.map(|(status, _)| status)
}

/// Waits until the server closes `stream`; returns what it sent before closing, or None
/// when the connection is still open at the deadline.
async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
        }
    }
}

#[tokio::test]
async fn invented_http_methods_do_not_grow_the_metrics() {
    let app = TestApp::spawn().await;
    for i in 0..300 {
        let method = Method::from_bytes(format!("FOO{i}").as_bytes()).unwrap();
        let res = app.client.request(method, app.url("/healthz")).send().await.unwrap();
        assert!(res.status().is_client_error(), "{}", res.status());
    }
    for path in ["/healthz", "/metrics"] {
        assert_eq!(app.client.get(app.url(path)).send().await.unwrap().status(), StatusCode::OK);
    }
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(!text.contains("FOO"), "an invented method became a label");
    let allowed = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "other"];
    let mut methods = std::collections::BTreeSet::new();
    let mut series = 0;
    for line in text.lines().filter(|l| l.starts_with("sendmux_http_requests_total{")) {
        series += 1;
        let method = line.split("method=\"").nth(1).and_then(|r| r.split('"').next()).unwrap();
        assert!(allowed.contains(&method), "{line}");
        methods.insert(method.to_owned());
    }
    assert!(methods.contains("other") && methods.contains("GET"), "{methods:?}");
    assert!(series < 10, "{series} series for three routes: {text}");
}

#[tokio::test]
async fn a_half_sent_request_or_a_silent_connection_is_closed_after_the_header_timeout() {
    let app = TestApp::spawn_with(&[("SENDMUX_HTTP_HEADER_TIMEOUT_SECS", "1")]).await;
    let addr = http_addr(&app);
    let mut half = TcpStream::connect(&addr).await.unwrap();
    half.write_all(b"GET /healthz HT").await.unwrap();
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    let mut partial_preface = TcpStream::connect(&addr).await.unwrap();
    partial_preface.write_all(b"PRI * HTTP/2").await.unwrap();
    for (what, stream) in
        [("half a request line", &mut half), ("nothing", &mut silent), ("half an HTTP/2 preface", &mut partial_preface)]
    {
        assert!(
            closed_by_server(stream, Duration::from_secs(20)).await.is_some(),
            "a connection that sent {what} is still open"
        );
    }
    // A keep-alive connection that finished its request is served, then closed when idle.
    let mut kept = TcpStream::connect(&addr).await.unwrap();
    assert_eq!(get_healthz(&mut kept).await, Some(200));
    assert!(closed_by_server(&mut kept, Duration::from_secs(20)).await.is_some(), "an idle connection stays open");
}

#[tokio::test]
async fn a_request_whose_body_never_completes_times_out_but_the_event_stream_stays_open() {
    let app = TestApp::spawn_with(&[("SENDMUX_HTTP_REQUEST_TIMEOUT_SECS", "1")]).await;
    let owner = app.signup("o@timeout.test", "Timeout").await;
    let (mbx, key) = app.mailbox_with_key(&owner.token, "slow@localhost", &["mailbox.read"]).await;

    let mut slow = TcpStream::connect(http_addr(&app)).await.unwrap();
    slow.write_all(
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: sendmux.test\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"email\"",
    )
    .await
    .unwrap();
    let (status, body) = read_response(&mut slow, Instant::now() + Duration::from_secs(20))
        .await
        .expect("an answer to a request whose body stalls");
    assert_eq!(status, 408, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["type"], "invalid_request", "{body}");
    assert!(body["error"]["request_id"].as_str().unwrap().starts_with("req_"));

    // The stream outlives the request timeout and still carries events.
    let res = app.get("/api/v1/mailbox/events", &key).await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut stream = res.bytes_stream();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let id = emit(&app, &owner.team_id, mbx["id"].as_str(), "message.received", json!({"n": 1})).await;
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen.contains(&id) {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            other => panic!("the stream ended or stalled before the event: {other:?}; got {seen}"),
        }
    }
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_while_open_ones_keep_working() {
    let app = TestApp::spawn_with(&[("SENDMUX_HTTP_MAX_CONNECTIONS", "2")]).await;
    let addr = http_addr(&app);
    let mut a = TcpStream::connect(&addr).await.unwrap();
    assert_eq!(get_healthz(&mut a).await, Some(200));
    let mut b = TcpStream::connect(&addr).await.unwrap();
    assert_eq!(get_healthz(&mut b).await, Some(200));

    let mut over = TcpStream::connect(&addr).await.unwrap();
    let _ = over.write_all(b"GET /healthz HTTP/1.1\r\nHost: sendmux.test\r\n\r\n").await;
    let sent =
        closed_by_server(&mut over, Duration::from_secs(20)).await.expect("the connection over the cap is closed");
    assert!(!sent.starts_with(b"HTTP/1.1 200"), "the connection over the cap was served");

    assert_eq!(get_healthz(&mut a).await, Some(200), "an open connection keeps working");
    assert_eq!(get_healthz(&mut b).await, Some(200), "an open connection keeps working");
    // A slot given back is used again.
    drop(a);
    let start = Instant::now();
    loop {
        let mut c = TcpStream::connect(&addr).await.unwrap();
        if get_healthz(&mut c).await == Some(200) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "the closed connection's slot never came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn every_file_in_the_data_folder_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let app = TestApp::spawn().await;
    let owner = app.signup("o@perms.test", "Perms").await;
    let (_, key) = app.mailbox_with_key(&owner.token, "perms@localhost", &["mailbox.read"]).await;
    let (mut smtp, _) = RawSmtp::connect(app.smtp_addr).await;
    let (code, text) =
        smtp.transaction("a@sender.test", "perms@localhost", b"Subject: kept\r\n\r\nprivate body\r\n.\r\n").await;
    assert_eq!(code, 250, "{text}");
    assert_eq!(app.inbox(&key).await.len(), 1);

    let mut seen = Vec::new();
    let mut folders = vec![app.dir.path().to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let entry = entry.unwrap();
            let meta = std::fs::symlink_metadata(entry.path()).unwrap();
            let mode = meta.permissions().mode() & 0o777;
            if meta.is_dir() {
                assert_eq!(mode, 0o700, "folder {} is {mode:o}", entry.path().display());
                folders.push(entry.path());
            } else {
                assert_eq!(mode, 0o600, "file {} is {mode:o}", entry.path().display());
            }
            seen.push(entry.path().strip_prefix(app.dir.path()).unwrap().display().to_string());
        }
    }
    let seen = seen.join(" ");
    for expected in ["secret.key", "smtp-tls-key.pem", "blobs"] {
        assert!(seen.contains(expected), "{expected} not in {seen}");
    }
    assert!(seen.contains(".open") || seen.contains(".seg"), "no body segment in {seen}");
    if !on_postgres() {
        assert!(seen.contains("sendmux.db-wal") && seen.contains("sendmux.db-shm"), "{seen}");
    }
}

async fn deliveries_per_event(
    app: &TestApp,
    token: &str,
    webhook_id: &str,
) -> std::collections::BTreeMap<String, usize> {
    let path = format!("/api/v1/webhooks/{webhook_id}/deliveries?limit=100");
    let list = expect_status(app.get(&path, token).await, StatusCode::OK).await;
    let mut counts = std::collections::BTreeMap::new();
    for d in list["data"].as_array().unwrap() {
        *counts.entry(d["event_id"].as_str().unwrap().to_owned()).or_insert(0) += 1;
    }
    counts
}

#[tokio::test]
async fn a_range_replay_queues_each_event_once() {
    let app = TestApp::spawn_with(&[("SENDMUX_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8")]).await;
    let owner = app.signup("o@rerun.test", "Rerun").await;
    let receiver = Receiver::start(vec![]).await;
    let res =
        app.post("/api/v1/webhooks", &owner.token, json!({"url": receiver.url, "event_types": ["message.sent"]})).await;
    let id = expect_status(res, StatusCode::CREATED).await["id"].as_str().unwrap().to_owned();
    let since = chrono::Utc::now().to_rfc3339();
    let e1 = emit(&app, &owner.team_id, None, "message.sent", json!({"n": 1})).await;
    let e2 = emit(&app, &owner.team_id, None, "message.sent", json!({"n": 2})).await;
    receiver.wait_for(2).await;
    // Two more deliveries of e1 in the range: replayed one at a time.
    for n in 0..2 {
        let list =
            expect_status(app.get(&format!("/api/v1/webhooks/{id}/deliveries"), &owner.token).await, StatusCode::OK)
                .await;
        let d = list["data"].as_array().unwrap().iter().find(|d| d["event_id"] == e1.as_str()).unwrap().clone();
        let path = format!("/api/v1/webhooks/{id}/deliveries/{}/replay", d["id"].as_str().unwrap());
        expect_status(app.post(&path, &owner.token, json!({})).await, StatusCode::ACCEPTED).await;
        receiver.wait_for(3 + n).await;
    }
    let before = deliveries_per_event(&app, &owner.token, &id).await;
    assert_eq!((before[&e1], before[&e2]), (3, 1));
    let res = app.post(&format!("/api/v1/webhooks/{id}/replay"), &owner.token, json!({"since": since})).await;
    let out = expect_status(res, StatusCode::ACCEPTED).await;
    assert_eq!((out["replayed"].as_u64(), out["expired"].as_u64()), (Some(2), Some(0)), "{out}");
    let after = deliveries_per_event(&app, &owner.token, &id).await;
    assert_eq!((after[&e1], after[&e2]), (4, 2), "each event is queued once more");
    let hits = receiver.wait_for(6).await;
    let replayed: Vec<&str> = hits[4..].iter().map(|h| h.headers["x-sendmux-event-id"].as_str()).collect();
    assert!(replayed.contains(&e1.as_str()) && replayed.contains(&e2.as_str()), "{replayed:?}");
}

#[tokio::test]
async fn admin_token_guessing_locks_the_source_out() {
    let app = TestApp::spawn().await;
    let path = "/api/v1/admin/increase-requests";
    let get = |client: &reqwest::Client, token: &str| client.get(app.url(path)).bearer_auth(token).send();
    assert_eq!(get(&app.client, ADMIN_TOKEN).await.unwrap().status(), StatusCode::OK);
    for i in 0..10 {
        let res = get(&app.client, &format!("wrong-admin-token-{i:04}-xxxxxxxx")).await.unwrap();
        expect_error(res, StatusCode::UNAUTHORIZED, "authentication_failed").await;
    }
    let res = get(&app.client, "wrong-admin-token-0010-xxxxxxxx").await.unwrap();
    let retry_after: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    expect_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // The source is locked out: the right token does not get through either, so a
    // guesser learns nothing from the answers during the lockout.
    let res = get(&app.client, ADMIN_TOKEN).await.unwrap();
    assert!(res.headers().contains_key("retry-after"));
    expect_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Another source is not.
    let other = reqwest::Client::builder().local_address(std::net::IpAddr::from([127, 0, 0, 2])).build().unwrap();
    assert_eq!(get(&other, ADMIN_TOKEN).await.unwrap().status(), StatusCode::OK);
}
