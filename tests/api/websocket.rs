//! The mailbox stream over WebSockets (SPEC §16) with stock clients — `websockets`
//! (Python) and `ws` (Node): live events as one text frame each, resume after a forced
//! disconnect while writers continue (every event once, in order), WebSocket pings,
//! close 1000 after `close_after`, revocation closes it, bad controls are 400 before the
//! upgrade.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};

struct Client {
    _child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Client {
    fn python(url: &str, key: &str, extra: &[&str]) -> Client {
        let mut child = tokio::process::Command::new("python3")
            .arg(support("ws_client.py"))
            .args([url, key])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 with websockets (pip install websockets)");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Client { _child: child, lines }
    }

    fn node(url: &str, key: &str) -> Client {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/js/ws.mjs");
        let mut child = tokio::process::Command::new("node")
            .args([script, url, key])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node is installed");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Client { _child: child, lines }
    }

    async fn next(&mut self, within: Duration) -> Value {
        let line = tokio::time::timeout(within, self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("nothing from the client within {within:?}"))
            .unwrap()
            .expect("the client ended");
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"))
    }
}

fn ws_url(app: &TestApp, query: &str) -> String {
    app.url(&format!("/api/v1/mailbox/events/ws{query}")).replacen("http://", "ws://", 1)
}

async fn setup(app: &TestApp) -> (Person, String, String) {
    let owner = app.signup("o@ws.test", "WS").await;
    let mailbox = app.create_mailbox(&owner.token, "agent@localhost").await["id"].as_str().unwrap().to_owned();
    let key = app.create_key(&owner.token, json!({"name": "agent", "kind": "mailbox", "mailbox_id": mailbox})).await;
    (owner, mailbox, key["key"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn resume_after_a_forced_disconnect_delivers_every_event_once_in_order() {
    let app = TestApp::spawn().await;
    let (owner, mailbox, key) = setup(&app).await;
    const TOTAL: usize = 40;
    let mut client = Client::python(&ws_url(&app, ""), &key, &["--count", "40", "--drop-after", "10"]);
    assert_eq!(client.next(Duration::from_secs(30)).await, json!({"open": 1}));

    // Writers keep going while the client drops and comes back.
    let writer = {
        let team = owner.team_id.clone();
        let mailbox = mailbox.clone();
        let app = &app;
        async move {
            let mut ids = Vec::new();
            for n in 0..TOTAL {
                ids.push(emit(app, &team, Some(&mailbox), "message.received", json!({"n": n})).await);
                // Events of other types and mailboxes are not for this stream.
                if n % 10 == 0 {
                    emit(app, &team, Some(&mailbox), "message.sent", json!({"n": n})).await;
                }
            }
            ids
        }
    };
    let reader = async {
        let mut got = Vec::new();
        let mut opens = 1;
        while got.len() < TOTAL {
            let line = client.next(Duration::from_secs(30)).await;
            if let Some(event) = line.get("event") {
                assert_eq!(event["type"], "message.received");
                got.push(event["id"].as_str().unwrap().to_owned());
            } else if line.get("open").is_some() {
                opens += 1;
            } else {
                panic!("unexpected {line}");
            }
        }
        (got, opens)
    };
    let (sent, (got, opens)) = tokio::join!(writer, reader);
    assert_eq!(opens, 2, "the client reconnected once");
    assert_eq!(got, sent, "every event once, in order");
}

#[tokio::test]
async fn a_ws_client_gets_pings_events_and_a_normal_close() {
    let app = TestApp::spawn().await;
    let (owner, mailbox, key) = setup(&app).await;
    let mut client = Client::node(&ws_url(&app, "?ping=10&close_after=30&event_types=message.received"), &key);
    assert_eq!(client.next(Duration::from_secs(30)).await, json!({"open": true}));
    let id = emit(&app, &owner.team_id, Some(&mailbox), "message.received", json!({"n": 1})).await;
    let (mut pings, mut events) = (0, Vec::new());
    let close = loop {
        let line = client.next(Duration::from_secs(60)).await;
        if line.get("ping").is_some() {
            pings += 1;
        } else if let Some(e) = line.get("event") {
            events.push(e.clone());
        } else if let Some(code) = line.get("close") {
            break code.clone();
        } else {
            panic!("unexpected {line}");
        }
    };
    assert_eq!(close, 1000, "close_after ends with a normal close");
    assert!(pings >= 2, "WebSocket pings every 10 s: {pings}");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["id"], id.as_str());
    assert_eq!(events[0]["type"], "message.received");
    assert_eq!(events[0]["data"]["n"], 1);
}

#[tokio::test]
async fn revoking_the_key_closes_the_socket_and_bad_controls_are_refused_before_the_upgrade() {
    let app = TestApp::spawn().await;
    let (owner, mailbox, _) = setup(&app).await;
    let key =
        app.create_key(&owner.token, json!({"name": "soon revoked", "kind": "mailbox", "mailbox_id": mailbox})).await;
    let secret = key["key"].as_str().unwrap();
    let mut client = Client::python(&ws_url(&app, ""), secret, &[]);
    assert_eq!(client.next(Duration::from_secs(30)).await, json!({"open": 1}));
    let id = emit(&app, &owner.team_id, Some(&mailbox), "message.received", json!({"n": 1})).await;
    assert_eq!(client.next(Duration::from_secs(10)).await["event"]["id"], id.as_str());
    let res = app.delete(&format!("/api/v1/keys/{}", key["id"].as_str().unwrap()), &owner.token).await;
    expect_status(res, StatusCode::OK).await;
    assert_eq!(client.next(Duration::from_secs(10)).await, json!({"close": 1008}));

    // Refusals are HTTP answers with the error body, never an upgrade.
    let (_, _, key) = {
        let other = app.signup("o2@ws.test", "WS2").await;
        let mbx = app.create_mailbox(&other.token, "agent2@localhost").await["id"].as_str().unwrap().to_owned();
        let k = app.create_key(&other.token, json!({"name": "a", "kind": "mailbox", "mailbox_id": mbx})).await;
        (other, mbx, k["key"].as_str().unwrap().to_owned())
    };
    for (query, param) in [
        ("?ping=5", "ping"),
        ("?close_after=4000", "close_after"),
        ("?event_types=message.nope", "event_types"),
        ("?last_event_id=evt_nope", "last_event_id"),
    ] {
        let mut client = Client::node(&ws_url(&app, query), &key);
        assert_eq!(client.next(Duration::from_secs(30)).await, json!({"status": 400}), "{query}");
        let res = app
            .req(reqwest::Method::GET, &format!("/api/v1/mailbox/events/ws{query}"), &key)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .send()
            .await
            .unwrap();
        assert_eq!(expect_error(res, StatusCode::BAD_REQUEST, "invalid_request").await["param"], param);
    }
    let mut client = Client::node(&ws_url(&app, ""), "smx_mbx_not_a_key");
    assert_eq!(client.next(Duration::from_secs(30)).await, json!({"status": 401}));
    // Without an upgrade: 400, not a stream.
    let res = app.get("/api/v1/mailbox/events/ws", &key).await;
    expect_error(res, StatusCode::BAD_REQUEST, "invalid_request").await;
    // People and other keys are refused as on the SSE stream.
    let res = app.get("/api/v1/mailbox/events/ws", &owner.token).await;
    expect_error(res, StatusCode::FORBIDDEN, "permission_denied").await;
}

#[tokio::test]
async fn a_client_frame_over_4_kib_ends_the_socket_and_a_small_one_is_ignored() {
    let app = TestApp::spawn().await;
    let (owner, mailbox, key) = setup(&app).await;
    // A small frame: read and dropped; events keep coming.
    let mut talker = Client::python(&ws_url(&app, ""), &key, &["--send", "100"]);
    assert_eq!(talker.next(Duration::from_secs(30)).await, json!({"open": 1}));
    // A frame over the limit: the server ends the socket instead of buffering it.
    let mut flooder = Client::python(&ws_url(&app, ""), &key, &["--send", "100000"]);
    assert_eq!(flooder.next(Duration::from_secs(30)).await, json!({"open": 1}));
    let ended = flooder.next(Duration::from_secs(10)).await;
    assert!(ended.get("close").is_some_and(|c| c != 1000), "{ended}");
    let id = emit(&app, &owner.team_id, Some(&mailbox), "message.received", json!({"n": 1})).await;
    assert_eq!(talker.next(Duration::from_secs(10)).await["event"]["id"], id.as_str());
}
