//! Benchmarks for events out (run through `bench/events.sh`):
//!
//! - `webhooks N`: N events appended to the log, delivered by the webhook worker to a
//!   local receiver that answers 200 at once; deliveries per second, beside the same
//!   receiver driven directly by a plain HTTP client with the same concurrency (the
//!   reference, measured in the same run).
//! - `streams N BASE KEY`: opens N concurrent `GET /api/v1/mailbox/events` streams
//!   against a running server and holds them until stdin closes.
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
        Some("streams") => streams(args[2].parse()?, &args[3], &args[4]).await,
        Some("streams-h2") => streams_h2(args[2].parse()?, &args[3], &args[4]).await,
        _ => anyhow::bail!("usage: bench_events webhooks N | streams[-h2] N BASE_URL MAILBOX_KEY"),
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
        let mut tx = state.store.begin().await?;
        for _ in 0..500.min(n - appended) {
            let subject = sendmux::store::events::Subject::default();
            let data = json!({"message_id": "msg_01J1M9C3K8ZQ4W8N5T2V7X6Y3B", "from": "a@example.com", "subject": "Benchmark"});
            sendmux::store::events::append(state.store.backend(), &mut tx, &team, "message.received", subject, data)
                .await?;
            appended += 1;
        }
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
    let mut held = Vec::with_capacity(n);
    let mut clients = Vec::new();
    for i in 0..n {
        if i % per_connection == 0 {
            clients.push(reqwest::Client::builder().http2_prior_knowledge().build()?);
        }
        let client = clients.last().unwrap().clone();
        let url = format!("{base}/api/v1/mailbox/events?ping=300&close_after=3600");
        let key = key.to_owned();
        held.push(tokio::spawn(async move { client.get(url).bearer_auth(key).send().await }));
        if held.len() % per_connection == 0 {
            // Let one connection's streams open before the next connection starts.
            tokio::task::yield_now().await;
        }
    }
    let mut responses = Vec::with_capacity(n);
    for h in held {
        let res = h.await??;
        if res.status() != reqwest::StatusCode::OK {
            anyhow::bail!("stream refused: {}", res.status());
        }
        responses.push(res);
    }
    println!("{n} streams open over {} HTTP/2 connections", clients.len());
    let mut line = String::new();
    let _ = tokio::io::AsyncBufReadExt::read_line(&mut tokio::io::BufReader::new(tokio::io::stdin()), &mut line).await;
    drop(responses);
    Ok(())
}

async fn streams(n: usize, base: &str, key: &str) -> anyhow::Result<()> {
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
        let req = format!(
            "GET /api/v1/mailbox/events?ping=300&close_after=3600 HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nAccept: text/event-stream\r\n\r\n"
        );
        conn.write_all(req.as_bytes()).await?;
        let mut buf = [0u8; 512];
        let got = conn.read(&mut buf).await?;
        if !buf[..got].starts_with(b"HTTP/1.1 200") {
            anyhow::bail!("stream {i}: {}", String::from_utf8_lossy(&buf[..got]));
        }
        opened.fetch_add(1, Ordering::Relaxed);
        held.push(conn);
    }
    println!("{n} streams open");
    let mut line = String::new();
    let _ = tokio::io::AsyncBufReadExt::read_line(&mut tokio::io::BufReader::new(tokio::io::stdin()), &mut line).await;
    drop(held);
    Ok(())
}
