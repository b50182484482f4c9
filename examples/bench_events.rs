//! Benchmarks for events out (run through `bench/events.sh`):
//!
//! - `webhooks N`: N events appended to the log, delivered by the webhook worker to a
//!   local receiver that answers 200 at once; deliveries per second, beside the same
//!   receiver driven directly by a plain HTTP client with the same concurrency (the
//!   reference, measured in the same run).
//! - `streams N BASE KEY`: opens N concurrent `GET /api/v1/mailbox/events` streams
//!   against a running server and holds them until stdin closes.
//! - `ws N BASE KEY`: the same over WebSockets (`GET /api/v1/mailbox/events/ws`, one
//!   HTTP/1.1 connection each, upgraded; the client only holds them: what is measured
//!   is the server's side).
//!
//! - `latency RATE`: mail sent over SMTP at RATE messages/s for 10 s; for each message
//!   the time from the end of DATA to its event on a live stream, and to its webhook.
//!
//! Store: SQLite in a temporary folder, or PostgreSQL when BENCH_DATABASE_URL is set.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("webhooks") => webhooks(args.get(2).and_then(|n| n.parse().ok()).unwrap_or(20_000)).await,
        Some("streams") => streams(args[2].parse()?, &args[3], &args[4], false).await,
        Some("ws") => streams(args[2].parse()?, &args[3], &args[4], true).await,
        Some("streams-h2") => streams_h2(args[2].parse()?, &args[3], &args[4]).await,
        Some("latency") => latency(args.get(2).and_then(|n| n.parse().ok()).unwrap_or(200), 10).await,
        _ => anyhow::bail!("usage: bench_events webhooks N | streams[-h2]|ws N BASE_URL MAILBOX_KEY"),
    }
}

async fn receiver() -> anyhow::Result<(String, Arc<AtomicU64>)> {
    let hits = Arc::new(AtomicU64::new(0));
    let h = hits.clone();
    let app = axum::Router::new().fallback(move |_body: axum::body::Bytes| {
        let h = h.clone();
        async move {
            h.fetch_add(1, Ordering::Relaxed);
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, hits))
}

async fn webhooks(n: u64) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut env = vec![
        ("SENDMUX_DATA_DIR".to_owned(), dir.path().display().to_string()),
        ("SENDMUX_HTTP_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
        ("SENDMUX_WEBHOOK_ALLOWED_NETWORKS".to_owned(), "127.0.0.0/8".to_owned()),
        ("SENDMUX_ADMIN_TOKEN".to_owned(), "bench-admin-token-0123456789".to_owned()),
    ];
    let store_name = match std::env::var("BENCH_DATABASE_URL") {
        Ok(url) => {
            env.push(("SENDMUX_DATABASE_URL".to_owned(), url));
            "postgres"
        }
        Err(_) => "sqlite",
    };
    let settings = sendmux::config::Settings::from_sources(None, &env)?;
    let concurrency = settings.webhook_concurrency;
    let app = sendmux::app::App::build(settings).await?;
    let state = app.state().clone();
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(stop.clone()));
    let (url, hits) = receiver().await?;
    let body = json!({"id": "evt_01J1M9C3K8ZQ4W8N5T2V7X6Y3B", "type": "message.received", "created_at": "2026-11-25T00:00:00Z",
        "data": {"message_id": "msg_01J1M9C3K8ZQ4W8N5T2V7X6Y3B", "from": "a@example.com", "subject": "Benchmark"}})
    .to_string();

    // Reference: the same receiver, driven directly with the worker's concurrency.
    let client = reqwest::Client::new();
    let start = Instant::now();
    futures::stream::iter(0..n)
        .map(|_| client.post(&url).header("content-type", "application/json").body(body.clone()).send())
        .buffer_unordered(concurrency)
        .for_each(|_| async {})
        .await;
    let reference = n as f64 / start.elapsed().as_secs_f64();
    hits.store(0, Ordering::SeqCst);

    // A team with one webhook, then N events through the real log and worker.
    let team = {
        let mut tx = state.store.begin().await?;
        let team = sendmux::store::people::insert_team(&mut tx, "bench").await?;
        tx.commit().await?;
        team.id
    };
    let now = sendmux::store::now_ms();
    let hook = sendmux::store::webhooks::WebhookRow {
        id: sendmux::ids::WebhookId::new().into_string(),
        team_id: team.clone(),
        url,
        description: None,
        event_types: "message.received".into(),
        mailbox_ids: None,
        enabled: 1,
        disabled_reason: None,
        failing_since: None,
        last_success_at: None,
        created_at: now,
        updated_at: now,
    };
    {
        let mut tx = state.store.begin().await?;
        let secret = sendmux::webhooks::new_secret();
        sendmux::store::webhooks::insert(&mut tx, &hook, &state.secrets.seal(secret.as_bytes())).await?;
        tx.commit().await?;
    }
    let start = Instant::now();
    let mut appended = 0;
    while appended < n {
        // Appended the way the inbound and outbound committers append: one multi-row
        // write per transaction.
        let events: Vec<_> = (0..500.min(n - appended))
            .map(|_| {
                let subject = sendmux::store::events::Subject::default();
                let data =
                    json!({"message_id": "msg_01J1M9C3K8ZQ4W8N5T2V7X6Y3B", "from": "a@example.com", "subject": "Benchmark"});
                sendmux::store::events::NewEvent::new(&team, "message.received", subject, data)
            })
            .collect();
        let mut tx = state.store.begin().await?;
        sendmux::store::events::append_many(&mut tx, &events).await?;
        appended += events.len() as u64;
        state.commit(tx, &team).await?;
    }
    let appended_in = start.elapsed();
    while hits.load(Ordering::SeqCst) < n {
        if start.elapsed() > Duration::from_secs(600) {
            anyhow::bail!("only {} of {n} delivered in 10 minutes", hits.load(Ordering::SeqCst));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = start.elapsed();
    let rate = n as f64 / elapsed.as_secs_f64();
    println!(
        "{store_name:9} webhooks: {n} events appended in {:.2} s, all delivered in {:.2} s = {rate:.0} deliveries/s | \
         reference (plain client, same receiver, {concurrency} in flight): {reference:.0} req/s | ratio {:.2}",
        appended_in.as_secs_f64(),
        elapsed.as_secs_f64(),
        rate / reference
    );
    stop.cancel();
    let _ = server.await;
    Ok(())
}

/// As `streams`, over HTTP/2 (cleartext, prior knowledge): up to 200 streams share one
/// connection, as a client multiplexing many mailboxes through one proxy would.
async fn streams_h2(n: usize, base: &str, key: &str) -> anyhow::Result<()> {
    let per_connection = 200;
    let clients: Vec<reqwest::Client> = (0..n.div_ceil(per_connection))
        .map(|_| reqwest::Client::builder().http2_prior_knowledge().build())
        .collect::<Result<_, _>>()?;
    // Open in waves of one connection's worth, so the figure is what held streams cost,
    // not the peak of thousands of requests in flight at once.
    let mut responses = Vec::with_capacity(n);
    for (wave, client) in clients.iter().enumerate() {
        let count = per_connection.min(n - wave * per_connection);
        let opened = futures::future::join_all((0..count).map(|_| {
            client.get(format!("{base}/api/v1/mailbox/events?ping=300&close_after=3600")).bearer_auth(key).send()
        }))
        .await;
        for res in opened {
            let res = res?;
            if res.status() != reqwest::StatusCode::OK {
                anyhow::bail!("stream refused: {}", res.status());
            }
            responses.push(res);
        }
    }
    println!("{n} streams open over {} HTTP/2 connections", clients.len());
    let mut line = String::new();
    let _ = tokio::io::AsyncBufReadExt::read_line(&mut tokio::io::BufReader::new(tokio::io::stdin()), &mut line).await;
    drop(responses);
    Ok(())
}

async fn streams(n: usize, base: &str, key: &str, websocket: bool) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://").to_owned();
    let opened = Arc::new(AtomicU64::new(0));
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        // Spread the client side over loopback addresses to keep ephemeral ports free.
        let local: std::net::IpAddr = format!("127.0.{}.{}", 1 + i / 60_000, 1 + (i % 250)).parse()?;
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(std::net::SocketAddr::new(local, 0))?;
        let mut conn = socket.connect(addr.parse()?).await?;
        let req = if websocket {
            // Any 16 bytes, base64: the server's accept key is not checked by this client.
            format!(
                "GET /api/v1/mailbox/events/ws?ping=300&close_after=3600 HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            )
        } else {
            format!(
                "GET /api/v1/mailbox/events?ping=300&close_after=3600 HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nAccept: text/event-stream\r\n\r\n"
            )
        };
        conn.write_all(req.as_bytes()).await?;
        let mut buf = [0u8; 512];
        let got = conn.read(&mut buf).await?;
        let ok: &[u8] = if websocket { b"HTTP/1.1 101" } else { b"HTTP/1.1 200" };
        if !buf[..got].starts_with(ok) {
            anyhow::bail!("stream {i}: {}", String::from_utf8_lossy(&buf[..got]));
        }
        opened.fetch_add(1, Ordering::Relaxed);
        held.push(conn);
    }
    println!("{n} {} open", if websocket { "websockets" } else { "streams" });
    let mut line = String::new();
    let _ = tokio::io::AsyncBufReadExt::read_line(&mut tokio::io::BufReader::new(tokio::io::stdin()), &mut line).await;
    drop(held);
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn latency(rate: u64, seconds: u64) -> anyhow::Result<()> {
    use std::collections::HashMap;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let dir = tempfile::tempdir()?;
    let admin = "bench-admin-token-0123456789";
    let mut env = vec![
        ("SENDMUX_DATA_DIR".to_owned(), dir.path().display().to_string()),
        ("SENDMUX_HTTP_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
        ("SENDMUX_SMTP_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
        ("SENDMUX_WEBHOOK_ALLOWED_NETWORKS".to_owned(), "127.0.0.0/8".to_owned()),
        ("SENDMUX_ADMIN_TOKEN".to_owned(), admin.to_owned()),
        ("SENDMUX_DNS_SERVER".to_owned(), "off".to_owned()),
        ("SENDMUX_RATE_LIMIT_PER_MINUTE".to_owned(), "100000000".to_owned()),
    ];
    let store_name = match std::env::var("BENCH_DATABASE_URL") {
        Ok(url) => {
            env.push(("SENDMUX_DATABASE_URL".to_owned(), url));
            "postgres"
        }
        Err(_) => "sqlite",
    };
    let settings = sendmux::config::Settings::from_sources(None, &env)?;
    let app = sendmux::app::App::build(settings).await?;
    let base = format!("http://{}", app.http_addr());
    let smtp = anyhow::Context::context(app.smtp_addr(), "the smtp role is on")?;
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(stop.clone()));

    // Arrival times by subject, from the webhook receiver and the stream.
    type Arrivals = Arc<parking_lot::Mutex<HashMap<String, Instant>>>;
    let hooks: Arrivals = Default::default();
    let streamed: Arrivals = Default::default();
    let h = hooks.clone();
    let receiver = axum::Router::new().fallback(move |body: String| {
        let h = h.clone();
        async move {
            let now = Instant::now();
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body)
                && let Some(subject) = v["data"]["subject"].as_str()
            {
                h.lock().insert(subject.to_owned(), now);
            }
            "ok"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook_url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let http = reqwest::Client::new();
    let post = |path: &str, token: &str, body: serde_json::Value| {
        http.post(format!("{base}{path}")).bearer_auth(token.to_owned()).json(&body).send()
    };
    post(
        "/api/v1/admin/teams",
        admin,
        json!({"name": "Bench", "owner_email": "b@example.com", "owner_password": "bench password 123"}),
    )
    .await?;
    let login: serde_json::Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": "b@example.com", "password": "bench password 123"}))
        .send()
        .await?
        .json()
        .await?;
    let token = login["token"].as_str().unwrap_or_default().to_owned();
    let mbx: serde_json::Value =
        post("/api/v1/mailboxes", &token, json!({"address": "bench@localhost"})).await?.json().await?;
    let key: serde_json::Value =
        post("/api/v1/keys", &token, json!({"name": "r", "kind": "mailbox", "mailbox_id": mbx["id"]}))
            .await?
            .json()
            .await?;
    post(
        "/api/v1/webhooks",
        &token,
        json!({"url": hook_url, "event_types": ["message.received", "message.received.spam"]}),
    )
    .await?;
    let res = http
        .get(format!("{base}/api/v1/mailbox/events?event_types=message.received,message.received.spam"))
        .bearer_auth(key["key"].as_str().unwrap_or_default())
        .send()
        .await?;
    let st = streamed.clone();
    tokio::spawn(async move {
        let mut body = res.bytes_stream();
        let mut buf = String::new();
        while let Some(Ok(chunk)) = body.next().await {
            let now = Instant::now();
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: "))
                    && let Ok(v) = serde_json::from_str::<serde_json::Value>(data)
                    && let Some(subject) = v["data"]["subject"].as_str()
                {
                    st.lock().insert(subject.to_owned(), now);
                }
            }
        }
    });

    // Senders: 4 SMTP sessions sharing RATE messages/s.
    let sessions = 4u64;
    let per_session = rate * seconds / sessions;
    let interval = Duration::from_secs_f64(sessions as f64 / rate as f64);
    let pad = "x".repeat(76);
    let mut tasks = Vec::new();
    for s in 0..sessions {
        let pad = pad.clone();
        tasks.push(tokio::spawn(async move {
            let conn = tokio::net::TcpStream::connect(smtp).await?;
            conn.set_nodelay(true)?;
            let (r, mut w) = conn.into_split();
            let mut r = BufReader::new(r);
            let mut line = String::new();
            async fn reply(
                r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
                line: &mut String,
            ) -> anyhow::Result<u16> {
                loop {
                    line.clear();
                    r.read_line(line).await?;
                    if line.len() < 4 || line.as_bytes()[3] != b'-' {
                        return Ok(line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0));
                    }
                }
            }
            reply(&mut r, &mut line).await?;
            w.write_all(b"EHLO bench.example\r\n").await?;
            reply(&mut r, &mut line).await?;
            let mut sent = Vec::new();
            let mut next = Instant::now();
            for i in 0..per_session {
                tokio::time::sleep_until(next.into()).await;
                next += interval;
                let subject = format!("lat-{s}-{i}");
                w.write_all(b"MAIL FROM:<load@example.org>\r\nRCPT TO:<bench@localhost>\r\nDATA\r\n").await?;
                for _ in 0..3 {
                    reply(&mut r, &mut line).await?;
                }
                let mut msg = format!("From: load@example.org\r\nTo: bench@localhost\r\nSubject: {subject}\r\n\r\n");
                for _ in 0..120 {
                    msg.push_str(&pad);
                    msg.push_str("\r\n");
                }
                w.write_all(msg.as_bytes()).await?;
                w.write_all(b".\r\n").await?;
                let end_of_data = Instant::now();
                let code = reply(&mut r, &mut line).await?;
                let acked = end_of_data.elapsed();
                if code == 250 {
                    sent.push((subject, end_of_data, acked));
                }
            }
            anyhow::Ok(sent)
        }));
    }
    let mut sent = Vec::new();
    for t in tasks {
        sent.extend(t.await??);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while (hooks.lock().len() < sent.len() || streamed.lock().len() < sent.len()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut ack: Vec<f64> = sent.iter().map(|(_, _, a)| ms(*a)).collect();
    let (hooks, streamed) = (hooks.lock().clone(), streamed.lock().clone());
    let mut to_stream: Vec<f64> =
        sent.iter().filter_map(|(s, t, _)| streamed.get(s).map(|a| ms(a.duration_since(*t)))).collect();
    let mut to_hook: Vec<f64> =
        sent.iter().filter_map(|(s, t, _)| hooks.get(s).map(|a| ms(a.duration_since(*t)))).collect();
    for v in [&mut ack, &mut to_stream, &mut to_hook] {
        v.sort_by(f64::total_cmp);
    }
    println!(
        "{store_name:9} latency at {rate} msg/s for {seconds} s ({} stored; {} on the stream, {} by webhook): \
         end of DATA -> 250 p50 {:.1} ms p99 {:.1} ms | -> stream p50 {:.1} ms p99 {:.1} ms | -> webhook p50 {:.1} ms p99 {:.1} ms",
        sent.len(),
        to_stream.len(),
        to_hook.len(),
        percentile(&ack, 0.5),
        percentile(&ack, 0.99),
        percentile(&to_stream, 0.5),
        percentile(&to_stream, 0.99),
        percentile(&to_hook, 0.5),
        percentile(&to_hook, 0.99),
    );
    stop.cancel();
    let _ = server.await;
    Ok(())
}
