//! The MCP benchmark (run through `bench/mcp.sh`): `bench_mcp latency N`.
//!
//! One server in this process; a mailbox key holds a live SSE stream (the reference)
//! and an agent loop calls the MCP tool `wait_for_message` over `POST /mcp` again and
//! again, each time with the previous result's `event_id` as `after_event_id`. N
//! messages are sent over one SMTP session, one at a time, each once both the stream and
//! a `wait_for_message` call are open on the server; for each, the time from the end of
//! DATA to its event on the stream and to the `wait_for_message` result (the whole JSON-RPC
//! answer read by the client), p50/p99.
//!
//! Store: SQLite in a temporary folder, or PostgreSQL when BENCH_DATABASE_URL is set.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

type Arrivals = Arc<parking_lot::Mutex<HashMap<String, Instant>>>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("latency") => latency(args.get(2).and_then(|n| n.parse().ok()).unwrap_or(200)).await,
        _ => anyhow::bail!("usage: bench_mcp latency N"),
    }
}

/// The JSON-RPC answer in an MCP HTTP response: the body itself, or the `data:` of the
/// SSE event that carries it.
async fn rpc_answer(res: reqwest::Response) -> anyhow::Result<Value> {
    let sse = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !sse {
        return Ok(res.json().await?);
    }
    let mut body = res.bytes_stream();
    let mut buf = String::new();
    while let Some(chunk) = body.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk?));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            for data in frame.lines().filter_map(|l| l.strip_prefix("data:")) {
                if let Ok(v) = serde_json::from_str::<Value>(data.trim())
                    && v.get("id").is_some()
                {
                    return Ok(v);
                }
            }
        }
    }
    anyhow::bail!("the MCP answer ended without a JSON-RPC response")
}

async fn latency(n: usize) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let admin = "bench-admin-token-0123456789";
    let mut env = vec![
        ("SENDMUX_DATA_DIR".to_owned(), dir.path().display().to_string()),
        ("SENDMUX_HTTP_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
        ("SENDMUX_SMTP_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
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
    let state = app.state().clone();
    let base = format!("http://{}", app.http_addr());
    let smtp = anyhow::Context::context(app.smtp_addr(), "the smtp role is on")?;
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(stop.clone()));

    let http = reqwest::Client::new();
    http.post(format!("{base}/api/v1/admin/teams"))
        .bearer_auth(admin)
        .json(&json!({"name": "Bench", "owner_email": "b@example.com", "owner_password": "bench password 123"}))
        .send()
        .await?;
    let login: Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": "b@example.com", "password": "bench password 123"}))
        .send()
        .await?
        .json()
        .await?;
    let token = login["token"].as_str().unwrap_or_default().to_owned();
    let mbx: Value = http
        .post(format!("{base}/api/v1/mailboxes"))
        .bearer_auth(&token)
        .json(&json!({"address": "bench@localhost"}))
        .send()
        .await?
        .json()
        .await?;
    let key: Value = http
        .post(format!("{base}/api/v1/keys"))
        .bearer_auth(&token)
        .json(&json!({"name": "agent", "kind": "mailbox", "mailbox_id": mbx["id"]}))
        .send()
        .await?
        .json()
        .await?;
    let key = key["key"].as_str().unwrap_or_default().to_owned();

    // The reference: the live SSE stream.
    let streamed: Arrivals = Default::default();
    let res = http.get(format!("{base}/api/v1/mailbox/events")).bearer_auth(&key).send().await?;
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
                    && let Ok(v) = serde_json::from_str::<Value>(data)
                    && let Some(subject) = v["data"]["subject"].as_str()
                {
                    st.lock().insert(subject.to_owned(), now);
                }
            }
        }
    });

    // The agent: the initialize handshake (stateless: no session), then
    // wait_for_message in a loop, resuming after the last event it was given.
    let mcp = format!("{base}/mcp");
    let init = http
        .post(&mcp)
        .bearer_auth(&key)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench_mcp", "version": "1"}}}))
        .send()
        .await?;
    let init = rpc_answer(init).await?;
    let version = init["result"]["protocolVersion"].as_str().unwrap_or("2025-11-25").to_owned();
    let waited: Arrivals = Default::default();
    let failures = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        let (http, key, waited, failures) = (http.clone(), key.clone(), waited.clone(), failures.clone());
        tokio::spawn(async move {
            let mut after: Option<String> = None;
            for id in 1.. {
                let call = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
                    "name": "wait_for_message", "arguments": {"timeout_seconds": 60, "after_event_id": after}}});
                let res = http
                    .post(&mcp)
                    .bearer_auth(&key)
                    .header("accept", "application/json, text/event-stream")
                    .header("mcp-protocol-version", &version)
                    .json(&call)
                    .send()
                    .await;
                let answer = match res {
                    Ok(res) => rpc_answer(res).await,
                    Err(e) => Err(e.into()),
                };
                let now = Instant::now();
                let result = match answer {
                    Ok(a) => a["result"]["structuredContent"].clone(),
                    Err(_) => Value::Null,
                };
                match result["message"]["subject"].as_str() {
                    Some(subject) => {
                        waited.lock().insert(subject.to_owned(), now);
                        after = result["event_id"].as_str().map(str::to_owned);
                    }
                    None if result["timed_out"] == true => {}
                    None => {
                        failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }

    // One SMTP session; each message once the stream and a wait are both open.
    let conn = tokio::net::TcpStream::connect(smtp).await?;
    conn.set_nodelay(true)?;
    let (r, mut w) = conn.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    async fn reply(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>, line: &mut String) -> anyhow::Result<u16> {
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
    let pad = "x".repeat(76);
    let open = || state.0.streams.lock().values().sum::<usize>();
    let mut sent = Vec::new();
    for i in 0..n {
        let armed = Instant::now() + Duration::from_secs(10);
        while open() < 2 && Instant::now() < armed {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let subject = format!("mcp-{i}");
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
        if reply(&mut r, &mut line).await? == 250 {
            sent.push((subject.clone(), end_of_data));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(streamed.lock().contains_key(&subject) && waited.lock().contains_key(&subject))
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (streamed, waited) = (streamed.lock().clone(), waited.lock().clone());
    let mut to_stream: Vec<f64> =
        sent.iter().filter_map(|(s, t)| streamed.get(s).map(|a| ms(a.duration_since(*t)))).collect();
    let mut to_mcp: Vec<f64> =
        sent.iter().filter_map(|(s, t)| waited.get(s).map(|a| ms(a.duration_since(*t)))).collect();
    for v in [&mut to_stream, &mut to_mcp] {
        v.sort_by(f64::total_cmp);
    }
    let pct = |v: &[f64], p: f64| v.get(((v.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(f64::NAN);
    println!(
        "{store_name:9} {} messages ({} on the stream, {} by wait_for_message, {} failed calls): \
         end of DATA -> SSE stream p50 {:.1} ms p99 {:.1} ms | -> wait_for_message result p50 {:.1} ms p99 {:.1} ms \
         (p99 {:.2}x the stream's)",
        sent.len(),
        to_stream.len(),
        to_mcp.len(),
        failures.load(std::sync::atomic::Ordering::Relaxed),
        pct(&to_stream, 0.5),
        pct(&to_stream, 0.99),
        pct(&to_mcp, 0.5),
        pct(&to_mcp, 0.99),
        pct(&to_mcp, 0.99) / pct(&to_stream, 0.99),
    );
    stop.cancel();
    let _ = server.await;
    Ok(())
}
