//! A `kill -9` campaign (API.md §12, "a node killed at any moment loses nothing it
//! acknowledged"): three `sendmux serve` processes on one PostgreSQL database and one S3
//! bucket take SMTP mail and `POST /api/v1/emails` while one of them is killed with
//! SIGKILL and restarted, cycle after cycle. Afterwards every acknowledged message is
//! present exactly once and readable from every node, every acknowledged send is
//! delivered, every event reached the webhook at least once, and a stream moved to
//! another node by `Last-Event-ID` resumed with no gap and no duplicate.
//!
//! Bounded: `SENDMUX_TEST_KILL_CYCLES` cycles (default 10), about 1.5 s each. PostgreSQL
//! only (many nodes need it): on SQLite it ends at once, saying so.

use crate::helpers::*;
use crate::mail_servers::{S3Server, SmtpServer};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One `sendmux serve` process.
struct Node {
    child: std::process::Child,
    http: String,
    smtp: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Node {
    async fn start(env: &[(String, String)]) -> Node {
        let dir = tempfile::tempdir().expect("node folder");
        let log_path = dir.path().join("node.log");
        let log = std::fs::File::create(&log_path).expect("node log");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_sendmux"))
            .arg("serve")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("SENDMUX_DATA_DIR", dir.path().join("data"))
            .env("SENDMUX_HTTP_ADDR", "127.0.0.1:0")
            .env("SENDMUX_SMTP_ADDR", "127.0.0.1:0")
            .env("SENDMUX_LOG_FORMAT", "json")
            .env("SENDMUX_LOG", "info")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start sendmux serve");
        let listening: Value = wait_for_value("the node to listen", Duration::from_secs(30), || {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let line = text
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|l| l["fields"]["message"] == "listening");
            std::future::ready(line)
        })
        .await;
        let field = |name: &str| listening["fields"][name].as_str().expect("address").to_owned();
        let node = Node {
            child,
            http: format!("http://{}", field("http")),
            smtp: field("smtp").parse().expect("smtp address"),
            _dir: dir,
        };
        eventually("the node is ready", Duration::from_secs(30), || async {
            reqwest::get(format!("{}/readyz", node.http)).await.is_ok_and(|r| r.status() == StatusCode::OK)
        })
        .await;
        node
    }

    /// SIGKILL: no drain, no goodbye.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One SMTP transaction that never panics: the end-of-DATA code, or None when the node
/// went away mid-way (not acknowledged).
async fn smtp_send(addr: SocketAddr, from: &str, to: &str, body: &str) -> Option<u16> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let talk = async {
        let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let (r, mut w) = stream.into_split();
        let mut r = BufReader::new(r);
        let reply = async |r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>| -> Option<u16> {
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).await.ok()? == 0 {
                    return None;
                }
                if line.as_bytes().get(3) != Some(&b'-') {
                    return line.get(..3)?.parse().ok();
                }
            }
        };
        (reply(&mut r).await? == 220).then_some(())?;
        for (cmd, want) in [
            ("EHLO kill.test\r\n".to_owned(), 250),
            (format!("MAIL FROM:<{from}>\r\n"), 250),
            (format!("RCPT TO:<{to}>\r\n"), 250),
            ("DATA\r\n".to_owned(), 354),
        ] {
            w.write_all(cmd.as_bytes()).await.ok()?;
            (reply(&mut r).await? == want).then_some(())?;
        }
        w.write_all(body.as_bytes()).await.ok()?;
        w.write_all(b"\r\n.\r\n").await.ok()?;
        let code = reply(&mut r).await?;
        let _ = w.write_all(b"QUIT\r\n").await;
        Some(code)
    };
    tokio::time::timeout(Duration::from_secs(30), talk).await.ok().flatten()
}

/// Every page of a list.
async fn all_pages(client: &reqwest::Client, base: &str, path: &str, token: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = match &cursor {
            Some(c) => format!("{base}{path}{sep}limit=100&cursor={c}"),
            None => format!("{base}{path}{sep}limit=100"),
        };
        let page: Value = client.get(url).bearer_auth(token).send().await.unwrap().json().await.unwrap();
        out.extend(page["data"].as_array().expect("a list").iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

#[tokio::test]
async fn nodes_killed_at_random_lose_nothing_they_acknowledged() {
    if !on_postgres() {
        eprintln!("many nodes share a PostgreSQL database: nothing to test on SQLite");
        return;
    }
    let cycles: usize = std::env::var("SENDMUX_TEST_KILL_CYCLES").ok().and_then(|c| c.parse().ok()).unwrap_or(10);
    let db = TestDb::create().await;
    let s3 = S3Server::start().await;
    let relay = SmtpServer::start(None).await;
    let receiver = Receiver::start(vec![]).await;
    let mut env = s3.settings("kill/bodies");
    env.extend([
        ("SENDMUX_DATABASE_URL".to_owned(), db.url.clone()),
        ("SENDMUX_SECRET_KEY".to_owned(), "3c".repeat(32)),
        ("SENDMUX_SIGNUP".to_owned(), "open".to_owned()),
        ("SENDMUX_INBOUND_DOMAINS".to_owned(), "localhost".to_owned()),
        ("SENDMUX_DNS_SERVER".to_owned(), "off".to_owned()),
        ("SENDMUX_WEBHOOK_ALLOWED_NETWORKS".to_owned(), "127.0.0.0/8".to_owned()),
        ("SENDMUX_PROVIDER_ALLOWED_NETWORKS".to_owned(), "127.0.0.0/8".to_owned()),
        ("SENDMUX_AUTH_RATE_LIMIT_PER_MINUTE".to_owned(), "10000".to_owned()),
        ("SENDMUX_OUTBOUND_WORKERS".to_owned(), "2".to_owned()),
        // A killed worker's claimed mail goes to another after its lease (10 s here,
        // 300 s by default).
        ("SENDMUX_OUTBOUND_LEASE_SECONDS".to_owned(), "10".to_owned()),
    ]);
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Node::start(&env).await);
    }
    let client = reqwest::Client::new();
    let base = nodes[0].http.clone();
    let post = |path: &str, token: &str, body: Value| {
        client.post(format!("{base}/api/v1/{path}")).bearer_auth(token.to_owned()).json(&body).send()
    };

    // The team: a mailbox with a key, a webhook for every event, a route to the relay.
    let signup: Value =
        post("auth/signup", "", json!({"email": "o@kill.test", "password": PASSWORD, "team_name": "Kill"}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let token = signup["token"].as_str().expect("session").to_owned();
    let mbx: Value =
        post("mailboxes", &token, json!({"address": "load@localhost"})).await.unwrap().json().await.unwrap();
    let mbx_id = mbx["id"].as_str().unwrap().to_owned();
    let mkey: Value = post("keys", &token, json!({"name": "reader", "kind": "mailbox", "mailbox_id": mbx_id}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mkey = mkey["key"].as_str().unwrap().to_owned();
    let all_types = sendmux_core::events::EVENT_TYPES.to_vec();
    let hook = post("webhooks", &token, json!({"url": receiver.url, "event_types": all_types})).await.unwrap();
    assert_eq!(hook.status(), StatusCode::CREATED);
    let prv: Value = post(
        "providers",
        &token,
        json!({"name": "relay", "type": "smtp", "config": {"host": "127.0.0.1", "port": relay.port, "security": "none"}}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let grp: Value = post(
        "delivery-groups",
        &token,
        json!({"name": "g", "strategy": "failover", "members": [{"provider_id": prv["id"]}]}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let skey: Value = post("keys", &token, json!({"name": "send", "kind": "sending", "delivery_group_id": grp["id"]}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let skey = skey["key"].as_str().unwrap().to_owned();

    // A stream on node 1, read from the start; it will move when node 1 is killed.
    let streamed: Arc<Mutex<Vec<String>>> = Default::default();

    // Load: SMTP and POST /emails, round-robin over the nodes alive at that moment.
    let addrs: Arc<Mutex<Vec<(String, SocketAddr)>>> =
        Arc::new(Mutex::new(nodes.iter().map(|n| (n.http.clone(), n.smtp)).collect()));
    let stop = tokio_util::sync::CancellationToken::new();
    let acked_mail: Arc<Mutex<Vec<String>>> = Default::default();
    let acked_sends: Arc<Mutex<Vec<String>>> = Default::default();
    let mut load = tokio::task::JoinSet::new();
    for lane in 0..4usize {
        let (addrs, stop, acked_mail, acked_sends) =
            (addrs.clone(), stop.clone(), acked_mail.clone(), acked_sends.clone());
        let (client, skey) = (client.clone(), skey.clone());
        load.spawn(async move {
            let mut n = 0usize;
            while !stop.is_cancelled() {
                n += 1;
                let targets = addrs.lock().unwrap().clone();
                let (http, smtp) = targets[(lane + n) % targets.len()].clone();
                if lane % 2 == 0 {
                    let subject = format!("lane {lane} mail {n}");
                    let body = format!(
                        "From: Load <load@example.org>\r\nTo: load@localhost\r\nSubject: {subject}\r\nMessage-ID: <{lane}.{n}@kill.test>\r\n\r\nMessage {n}.\r\n"
                    );
                    if smtp_send(smtp, "load@example.org", "load@localhost", &body).await == Some(250) {
                        acked_mail.lock().unwrap().push(subject);
                    }
                } else {
                    let sent = client
                        .post(format!("{http}/api/v1/emails"))
                        .bearer_auth(&skey)
                        .json(&json!({"from": "app@example.com", "to": ["reader@example.org"], "subject": format!("send {lane}.{n}"), "text": "load"}))
                        .timeout(Duration::from_secs(20))
                        .send()
                        .await;
                    if let Ok(res) = sent
                        && res.status() == StatusCode::ACCEPTED
                        && let Ok(v) = res.json::<Value>().await
                    {
                        acked_sends.lock().unwrap().push(v["id"].as_str().unwrap().to_owned());
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }

    // The stream, following whichever node is up, resuming by Last-Event-ID.
    let stream_stop = tokio_util::sync::CancellationToken::new();
    let stream_task = {
        let (addrs, stop, streamed, client, mkey) =
            (addrs.clone(), stream_stop.clone(), streamed.clone(), client.clone(), mkey.clone());
        tokio::spawn(async move {
            use futures::StreamExt;
            let mut moves = 0usize;
            let mut turn = 1usize;
            while !stop.is_cancelled() {
                let targets = addrs.lock().unwrap().clone();
                let (http, _) = targets[turn % targets.len()].clone();
                turn += 1;
                let last = streamed.lock().unwrap().last().cloned();
                let mut req =
                    client.get(format!("{http}/api/v1/mailbox/events?event_types=message.received")).bearer_auth(&mkey);
                if let Some(id) = last {
                    req = req.header("Last-Event-ID", id);
                }
                let Ok(res) = req.send().await else { continue };
                if res.status() != StatusCode::OK {
                    continue;
                }
                moves += 1;
                let mut body = res.bytes_stream();
                let mut buf = String::new();
                loop {
                    let chunk = tokio::select! {
                        _ = stop.cancelled() => return moves,
                        c = body.next() => c,
                    };
                    let Some(Ok(chunk)) = chunk else { break };
                    buf.push_str(&String::from_utf8_lossy(&chunk));
                    while let Some(end) = buf.find("\n\n") {
                        let block: String = buf.drain(..end + 2).collect();
                        if let Some(id) = block.lines().find_map(|l| l.strip_prefix("id: ")) {
                            streamed.lock().unwrap().push(id.to_owned());
                        }
                    }
                }
            }
            moves
        })
    };

    // The campaign: kill one node with SIGKILL, let the others carry on, restart it.
    for cycle in 0..cycles {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let victim = (cycle * 7 + 1) % nodes.len();
        nodes[victim].kill();
        {
            let mut a = addrs.lock().unwrap();
            a.retain(|(http, _)| *http != nodes[victim].http);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        nodes[victim] = Node::start(&env).await;
        addrs.lock().unwrap().push((nodes[victim].http.clone(), nodes[victim].smtp));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    while load.join_next().await.is_some() {}
    // The stream catches up with the last acknowledged mail, then stops.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stream_stop.cancel();
    let moves = stream_task.await.unwrap();

    let acked_mail = acked_mail.lock().unwrap().clone();
    let acked_sends = acked_sends.lock().unwrap().clone();
    assert!(
        acked_mail.len() >= 10 && acked_sends.len() >= 10,
        "load ran: {} mails, {} sends",
        acked_mail.len(),
        acked_sends.len()
    );

    // Every acknowledged mail is stored exactly once, and every node reads it whole.
    let inbox = all_pages(&client, &nodes[0].http, "/api/v1/mailbox/messages", &mkey).await;
    let mut by_subject: HashMap<String, Vec<String>> = HashMap::new();
    for m in &inbox {
        by_subject
            .entry(m["subject"].as_str().unwrap().to_owned())
            .or_default()
            .push(m["id"].as_str().unwrap().to_owned());
    }
    for subject in &acked_mail {
        let ids = by_subject.get(subject).unwrap_or_else(|| panic!("acknowledged mail {subject:?} is missing"));
        assert_eq!(ids.len(), 1, "{subject:?} stored {} times", ids.len());
    }
    for (i, subject) in acked_mail.iter().enumerate() {
        let node = &nodes[i % nodes.len()];
        let id = &by_subject[subject][0];
        let raw = client
            .get(format!("{}/api/v1/mailbox/messages/{id}/raw", node.http))
            .bearer_auth(&mkey)
            .send()
            .await
            .unwrap();
        assert_eq!(raw.status(), StatusCode::OK, "{subject} on {}", node.http);
        assert!(String::from_utf8_lossy(&raw.bytes().await.unwrap()).contains(subject.as_str()));
    }

    // Every acknowledged send is delivered (a worker killed mid-send leaves it to
    // another once its lease ends).
    for id in &acked_sends {
        eventually(&format!("{id} is delivered"), Duration::from_secs(120), || async {
            let node = &nodes[id.len() % nodes.len()];
            let v: Value = client
                .get(format!("{}/api/v1/emails/{id}", node.http))
                .bearer_auth(&skey)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["status"] == "delivered"
        })
        .await;
    }

    // Every event of the team reached the webhook at least once.
    let events = all_pages(&client, &nodes[0].http, "/api/v1/events", &token).await;
    let wanted: HashSet<String> = events.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    eventually("every event reaches the webhook", Duration::from_secs(120), || async {
        let got: HashSet<String> = receiver.hits().iter().map(|h| h.headers["x-sendmux-event-id"].clone()).collect();
        wanted.is_subset(&got)
    })
    .await;

    // The stream, moved from node to node, saw every received mail's event once, in
    // the log's order.
    // (The list is newest first: reversed, it is the log's order.)
    let received: Vec<String> = events
        .iter()
        .rev()
        .filter(|e| e["type"] == "message.received")
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    let streamed = streamed.lock().unwrap().clone();
    assert!(moves >= 2, "the stream moved between nodes ({moves} connections)");
    assert_eq!(streamed.iter().collect::<HashSet<_>>().len(), streamed.len(), "no event twice");
    assert_eq!(streamed, received, "every received mail's event, in order, with no gap");
    eprintln!(
        "{cycles} kills: {} mails and {} sends acknowledged, {} events, stream over {moves} connections",
        acked_mail.len(),
        acked_sends.len(),
        events.len()
    );
    drop(nodes);
}
