//! The live mailbox stream (SSE): a stock EventSource client, resume without gaps or
//! duplicates while events keep arriving, validated controls, heartbeats, limits, and
//! fan-out across server processes.

use crate::helpers::*;
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

/// One SSE frame: an event, or a comment (heartbeat).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Frame {
    Event { id: String, kind: String, data: Value },
    Comment(String),
}

/// A minimal SSE reader over a real HTTP response.
pub(crate) struct Sse {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
}

impl Sse {
    pub(crate) async fn open(app: &TestApp, key: &str, query: &str, last_id: Option<&str>) -> Sse {
        let mut req = app.req(Method::GET, &format!("/api/v1/mailbox/events{query}"), key);
        if let Some(id) = last_id {
            req = req.header("Last-Event-ID", id);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{}", res.text().await.unwrap_or_default());
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        assert_eq!(res.headers()["x-accel-buffering"], "no");
        assert!(res.headers().get("content-encoding").is_none());
        Sse { body: Box::pin(res.bytes_stream()), buf: String::new() }
    }

    /// The next frame, or None when the server ended the stream.
    pub(crate) async fn next(&mut self, within: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut kind, mut data, mut comment) = (None, None, None, None);
                for line in block.lines() {
                    if let Some(c) = line.strip_prefix(':') {
                        comment = Some(c.trim().to_owned());
                    } else if let Some((field, value)) = line.split_once(':') {
                        let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
                        match field {
                            "id" => id = Some(value),
                            "event" => kind = Some(value),
                            "data" => data = Some(value),
                            _ => {}
                        }
                    }
                }
                match (id, kind, data, comment) {
                    (Some(id), Some(kind), Some(data), _) => {
                        return Some(Frame::Event { id, kind, data: serde_json::from_str(&data).unwrap() });
                    }
                    (None, None, None, Some(c)) if c != "connected" => return Some(Frame::Comment(c)),
                    _ => continue,
                }
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => panic!("no SSE frame within {within:?}"),
                Ok(None) => return None,
                Ok(Some(chunk)) => self.buf.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap()),
            }
        }
    }

    pub(crate) async fn next_event(&mut self, within: Duration) -> (String, String, Value) {
        loop {
            match self.next(within).await {
                Some(Frame::Event { id, kind, data }) => return (id, kind, data),
                Some(Frame::Comment(_)) => continue,
                None => panic!("the stream ended"),
            }
        }
    }
}

struct Setup {
    owner: Person,
    mailbox: String,
    other_mailbox: String,
    key: String,
}

async fn setup(app: &TestApp) -> Setup {
    let owner = app.signup("o@sse.test", "SSE").await;
    let mailbox = app.create_mailbox(&owner.token, "agent@localhost").await["id"].as_str().unwrap().to_owned();
    let other_mailbox = app.create_mailbox(&owner.token, "other@localhost").await["id"].as_str().unwrap().to_owned();
    let key = app.create_key(&owner.token, json!({"name": "agent", "kind": "mailbox", "mailbox_id": mailbox})).await;
    Setup { owner, mailbox, other_mailbox, key: key["key"].as_str().unwrap().to_owned() }
}

#[tokio::test]
async fn an_eventsource_client_receives_live_events_of_its_mailbox() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js/stream.mjs");
    let url = app.url("/api/v1/mailbox/events?event_types=message.received,message.received.spam");
    let mut child = tokio::process::Command::new("node")
        .args([script, &url, &s.key, "3"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node is installed");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stdout.take().unwrap()));
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.unwrap().unwrap().unwrap();
    assert_eq!(first, r#"{"open":true}"#);

    let mut expected = Vec::new();
    expected.push(emit(&app, &s.owner.team_id, Some(&s.mailbox), "message.received", json!({"n": 1})).await);
    emit(&app, &s.owner.team_id, Some(&s.other_mailbox), "message.received", json!({"n": "other mailbox"})).await;
    emit(&app, &s.owner.team_id, Some(&s.mailbox), "message.sent", json!({"n": "not subscribed"})).await;
    expected.push(emit(&app, &s.owner.team_id, Some(&s.mailbox), "message.received.spam", json!({"n": 2})).await);
    expected.push(emit(&app, &s.owner.team_id, Some(&s.mailbox), "message.received", json!({"n": 3})).await);
    let mut got = Vec::new();
    for _ in 0..3 {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await.unwrap().unwrap().unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["data"]["id"], v["id"], "data is the event");
        got.push((
            v["id"].as_str().unwrap().to_owned(),
            v["type"].as_str().unwrap().to_owned(),
            v["data"]["data"]["n"].clone(),
        ));
    }
    assert_eq!(
        got,
        [
            (expected[0].clone(), "message.received".to_owned(), json!(1)),
            (expected[1].clone(), "message.received.spam".to_owned(), json!(2)),
            (expected[2].clone(), "message.received".to_owned(), json!(3)),
        ]
    );
    assert!(child.wait().await.unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resuming_with_the_last_id_gets_every_event_once_in_order() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let mut stream = Sse::open(&app, &s.key, "", None).await;
    // Events keep arriving the whole time, from another task.
    let total = 60;
    let writer = {
        let (state_app, team, mailbox) = (app.state.clone(), s.owner.team_id.clone(), s.mailbox.clone());
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..total {
                let store = &state_app.store;
                let mut tx = store.begin().await.unwrap();
                let subject = sendmux::store::events::Subject { mailbox_id: Some(&mailbox), ..Default::default() };
                let row = sendmux::store::events::append(&mut tx, &team, "message.received", subject, json!({"n": n}))
                    .await
                    .unwrap();
                state_app.commit(tx, &team).await.unwrap();
                ids.push(row.id);
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
            ids
        })
    };
    let mut got: Vec<String> = Vec::new();
    for _ in 0..20 {
        got.push(stream.next_event(Duration::from_secs(10)).await.0);
    }
    drop(stream);
    // Reconnect (twice: header, then query parameter) while the writer goes on.
    let mut stream = Sse::open(&app, &s.key, "", Some(got.last().unwrap())).await;
    for _ in 0..20 {
        got.push(stream.next_event(Duration::from_secs(10)).await.0);
    }
    drop(stream);
    let mut stream = Sse::open(&app, &s.key, &format!("?last_event_id={}", got.last().unwrap()), None).await;
    while got.len() < total {
        got.push(stream.next_event(Duration::from_secs(10)).await.0);
    }
    let written = writer.await.unwrap();
    assert_eq!(got, written, "every event exactly once, in order");
}

#[tokio::test]
async fn controls_are_checked_before_the_stream_starts() {
    let app = TestApp::spawn_with(&[("SENDMUX_STREAM_MAX_PER_KEY", "2")]).await;
    let s = setup(&app).await;
    for (query, param) in [
        ("?ping=9", "ping"),
        ("?ping=301", "ping"),
        ("?ping=soon", "ping"),
        ("?close_after=29", "close_after"),
        ("?close_after=3601", "close_after"),
        ("?event_types=message.received,message.nope", "event_types"),
        ("?event_types=", "event_types"),
        ("?last_event_id=garbage", "last_event_id"),
    ] {
        let res = app.get(&format!("/api/v1/mailbox/events{query}"), &s.key).await;
        assert_eq!(expect_error(res, StatusCode::BAD_REQUEST, "invalid_request").await["param"], param, "{query}");
    }
    let res = app
        .req(Method::GET, "/api/v1/mailbox/events", &s.key)
        .header("Last-Event-ID", "evt_nope")
        .send()
        .await
        .unwrap();
    assert_eq!(expect_error(res, StatusCode::BAD_REQUEST, "invalid_request").await["param"], "Last-Event-ID");
    // People and other keys use webhooks or the events list instead.
    expect_error(app.get("/api/v1/mailbox/events", &s.owner.token).await, StatusCode::FORBIDDEN, "permission_denied")
        .await;
    // At most two open streams per key here.
    let _a = Sse::open(&app, &s.key, "?ping=10&close_after=30", None).await;
    let _b = Sse::open(&app, &s.key, "", None).await;
    let res = app.get("/api/v1/mailbox/events", &s.key).await;
    expect_error(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    drop(_b);
    eventually("a slot frees when a stream closes", Duration::from_secs(5), || async {
        let res = app.get("/api/v1/mailbox/events", &s.key).await;
        res.status() == StatusCode::OK
    })
    .await;
}

#[tokio::test]
async fn heartbeats_arrive_and_open_streams_end_on_shutdown() {
    let mut app = TestApp::spawn().await;
    let s = setup(&app).await;
    let mut stream = Sse::open(&app, &s.key, "?ping=10", None).await;
    let frame = stream.next(Duration::from_secs(13)).await;
    assert_eq!(frame, Some(Frame::Comment("ping".into())));
    let stop = tokio::time::timeout(Duration::from_secs(10), app.stop());
    let (stopped, end) = tokio::join!(stop, stream.next(Duration::from_secs(10)));
    assert!(stopped.is_ok(), "the server stopped without waiting for the stream's close_after");
    assert_eq!(end, None, "the stream ended cleanly");
}

/// With PostgreSQL: an event committed by one server process reaches a stream held by
/// another process on the same database. With SQLite (one process per data folder):
/// every stream of the process gets it.
#[tokio::test]
async fn an_event_reaches_streams_on_every_node() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    if let Some(db) = &app.db {
        let dir = tempfile::tempdir().unwrap();
        let mut node = std::process::Command::new(env!("CARGO_BIN_EXE_sendmux"))
            .arg("serve")
            .env("SENDMUX_DATA_DIR", dir.path())
            .env("SENDMUX_DATABASE_URL", &db.url)
            .env("SENDMUX_SECRET_KEY", std::fs::read_to_string(app.dir.path().join("secret.key")).unwrap().trim())
            .env("SENDMUX_HTTP_ADDR", "127.0.0.1:0")
            .env("SENDMUX_SMTP_ADDR", "127.0.0.1:0")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = node.stderr.take().unwrap();
        let addr = tokio::task::spawn_blocking(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("http=").nth(1) {
                    return rest.split_whitespace().next().unwrap().to_owned();
                }
            }
            panic!("the second node did not start");
        })
        .await
        .unwrap();
        let res = reqwest::Client::new()
            .get(format!("http://{addr}/api/v1/mailbox/events"))
            .bearer_auth(&s.key)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let mut remote = Sse { body: Box::pin(res.bytes_stream()), buf: String::new() };
        // The stream is open (its 200 came after it subscribed); commit on the first
        // node. Should the second node's LISTEN still be connecting, it wakes every
        // stream once connected, so no fixed wait is needed.
        let id = emit(&app, &s.owner.team_id, Some(&s.mailbox), "message.received", json!({"from": "node one"})).await;
        let (got, kind, data) = remote.next_event(Duration::from_secs(5)).await;
        let _ = node.kill();
        let _ = node.wait();
        assert_eq!((got, kind), (id, "message.received".to_owned()));
        assert_eq!(data["data"]["from"], "node one");
    } else {
        let mut a = Sse::open(&app, &s.key, "", None).await;
        let mut b = Sse::open(&app, &s.key, "", None).await;
        let id = emit(&app, &s.owner.team_id, Some(&s.mailbox), "message.received", json!({})).await;
        assert_eq!(a.next_event(Duration::from_secs(5)).await.0, id);
        assert_eq!(b.next_event(Duration::from_secs(5)).await.0, id);
    }
}

/// The whole path: mail arrives over real SMTP, is stored, and its event reaches both a
/// live stream and a signed webhook, with the same event id.
#[tokio::test]
async fn mail_received_over_smtp_reaches_the_stream_and_the_webhook() {
    let app = TestApp::spawn_with(&[("SENDMUX_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8")]).await;
    let s = setup(&app).await;
    let receiver = Receiver::start(vec![]).await;
    let res = app
        .post(
            "/api/v1/webhooks",
            &s.owner.token,
            json!({"url": receiver.url, "event_types": ["message.received"], "mailbox_ids": [s.mailbox]}),
        )
        .await;
    expect_status(res, StatusCode::CREATED).await;
    let mut stream = Sse::open(&app, &s.key, "?event_types=message.received", None).await;

    let raw = b"From: Ada <ada@example.org>\r\nTo: agent@localhost\r\nSubject: Pipeline check\r\nMessage-ID: <p1@example.org>\r\n\r\nHello agent.\r\n";
    let report = app.send_smtp("ada@example.org", &["agent@localhost"], raw).await;
    assert_eq!(report["data"][0], 250, "{report}");

    let (id, kind, data) = stream.next_event(Duration::from_secs(10)).await;
    assert_eq!(kind, "message.received");
    assert_eq!(data["data"]["subject"], "Pipeline check");
    assert_eq!(data["data"]["mailbox_id"], s.mailbox.as_str());
    let hit = receiver.wait_for(1).await.remove(0);
    assert_eq!(hit.headers["x-sendmux-event-id"], id);
    let body: Value = serde_json::from_str(&hit.body).unwrap();
    assert_eq!(body, data, "the webhook carries the same event bytes as the stream");
    // The stored message is the one the event points at.
    let message =
        expect_status(app.get(data["data"]["url"].as_str().unwrap(), &s.owner.token).await, StatusCode::OK).await;
    assert_eq!(message["subject"], "Pipeline check");
}

/// Waits for the server to end the stream (EOF), skipping whatever frames come first.
pub(crate) async fn ends(stream: &mut Sse, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(!left.is_zero(), "{what}: the stream is still open");
        match tokio::time::timeout(left, stream.next(Duration::from_secs(15))).await {
            Ok(None) => return,
            Ok(Some(_)) => continue,
            Err(_) => panic!("{what}: the stream is still open"),
        }
    }
}

#[tokio::test]
async fn revoking_or_expiring_a_key_ends_its_open_streams() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let key =
        app.create_key(&s.owner.token, json!({"name": "revoked", "kind": "mailbox", "mailbox_id": s.mailbox})).await;
    let mut stream = Sse::open(&app, key["key"].as_str().unwrap(), "", None).await;
    // The stream works first.
    let id = emit(&app, &s.owner.team_id, Some(&s.mailbox), "message.received", json!({"n": 1})).await;
    assert_eq!(stream.next_event(Duration::from_secs(10)).await.0, id);
    expect_status(
        app.delete(&format!("/api/v1/keys/{}", key["id"].as_str().unwrap()), &s.owner.token).await,
        StatusCode::OK,
    )
    .await;
    ends(&mut stream, "revoked key").await;

    let at = (chrono::Utc::now() + chrono::Duration::seconds(3)).to_rfc3339();
    let key = app
        .create_key(
            &s.owner.token,
            json!({"name": "expiring", "kind": "mailbox", "mailbox_id": s.mailbox, "expires_at": at}),
        )
        .await;
    let mut stream = Sse::open(&app, key["key"].as_str().unwrap(), "", None).await;
    ends(&mut stream, "expired key").await;
    // Another key's stream is untouched.
    let mut other = Sse::open(&app, &s.key, "", None).await;
    let id = emit(&app, &s.owner.team_id, Some(&s.mailbox), "message.received", json!({"n": 2})).await;
    assert_eq!(other.next_event(Duration::from_secs(10)).await.0, id);
}

/// What Python's httpx-sse (and clients like it) yields from a stream: every block
/// with any field line (`event`, `data`, `id` or `retry`) is dispatched, even with no
/// data; a block of comments only is not.
fn dispatched_blocks(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter(|block| {
            block
                .lines()
                .any(|l| !l.starts_with(':') && matches!(l.split(':').next(), Some("event" | "data" | "id" | "retry")))
        })
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn the_first_dispatched_event_is_a_real_one() {
    let app = TestApp::spawn().await;
    let s = setup(&app).await;
    let first = emit(&app, &s.owner.team_id, Some(&s.mailbox), "message.received", json!({"n": 1})).await;
    let second = emit(&app, &s.owner.team_id, Some(&s.mailbox), "message.received", json!({"n": 2})).await;
    // Resuming after the first: the second is the first thing the stream has to say.
    let res =
        app.req(Method::GET, "/api/v1/mailbox/events", &s.key).header("Last-Event-ID", &first).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = Box::pin(res.bytes_stream());
    let mut text = String::new();
    while !text.contains(&format!("id: {second}")) || !text[text.find(&second).unwrap()..].contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next()).await.expect("stream data").unwrap();
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    let blocks = dispatched_blocks(&text);
    assert!(blocks[0].contains(&format!("id: {second}")), "dispatched before the first event: {:?}", blocks[0]);
    drop(body);

    // And httpx-sse itself, when installed.
    let installed =
        std::process::Command::new("python3").args(["-c", "import httpx_sse"]).status().is_ok_and(|s| s.success());
    if !installed {
        eprintln!("httpx-sse is not installed; only the parsing rule was checked");
        return;
    }
    let script = r#"
import sys, httpx
from httpx_sse import connect_sse
url, key, last = sys.argv[1:4]
with httpx.Client(timeout=20) as client:
    with connect_sse(client, "GET", url, headers={"Authorization": "Bearer " + key, "Last-Event-ID": last}) as source:
        for sse in source.iter_sse():
            print(sse.event, sse.id, flush=True)
            break
"#;
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new("python3")
            .args(["-c", script, &app.url("/api/v1/mailbox/events"), &s.key, &first])
            .output(),
    )
    .await
    .expect("httpx-sse read an event")
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("message.received {second}"));
}
