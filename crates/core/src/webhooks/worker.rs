//! The delivery worker: claims due deliveries with a lease, POSTs each event's stored
//! bytes with fresh signatures, and records every attempt. No transaction is open while
//! a request is in flight; a batch's results are written in one transaction.

use crate::ids::TeamId;
use crate::store::TeamScope;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use super::guard::{Guard, GuardedResolver, literal_refusal};
use super::{next_attempt, sendmux_signature, standard_signature};
use crate::Core;
use crate::store::now_ms;
use crate::store::webhooks::{self as q, Claimed, Outcome, WebhookRow};

/// A webhook fails this long without a success before it is disabled.
pub const DISABLE_AFTER_MS: i64 = 5 * 24 * 3_600_000;
const LEASE_MS: i64 = 60_000;
const RESPONSE_KEEP: usize = 4096;

pub struct Sender {
    client: reqwest::Client,
    guard: Arc<Guard>,
}

impl Sender {
    pub fn new(guard: Guard, timeout: Duration) -> anyhow::Result<Self> {
        let guard = Arc::new(guard);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            // No HTTP_PROXY/HTTPS_PROXY/ALL_PROXY: through a proxy the connection the
            // guard checks would be the proxy's, and the proxy would reach any address.
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver(guard.clone())))
            .user_agent("Sendmux-Webhooks/1")
            .pool_max_idle_per_host(256)
            .build()?;
        Ok(Self { client, guard })
    }
}

/// What one HTTP attempt returned.
struct Answer {
    status: Option<u16>,
    error: Option<String>,
    body: Option<String>,
    retry_after: Option<Duration>,
    latency_ms: i64,
}

async fn post(sender: &Sender, webhook: &WebhookRow, secrets: &[String], claimed: &Claimed, payload: &str) -> Answer {
    let start = Instant::now();
    let fail = |error: String, start: Instant| Answer {
        status: None,
        error: Some(error),
        body: None,
        retry_after: None,
        latency_ms: start.elapsed().as_millis() as i64,
    };
    let url = match url::Url::parse(&webhook.url) {
        Ok(u) => u,
        Err(e) => return fail(format!("invalid URL: {e}"), start),
    };
    if let Some(refusal) = literal_refusal(&sender.guard, &url) {
        return fail(refusal, start);
    }
    let timestamp = now_ms() / 1000;
    let body = payload.as_bytes();
    let standard: Vec<String> =
        secrets.iter().filter_map(|s| standard_signature(s, &claimed.event_id, timestamp, body)).collect();
    let mut req = sender
        .client
        .post(url)
        .header("content-type", "application/json")
        .header("x-sendmux-event-id", &claimed.event_id)
        .header("x-sendmux-event-type", &claimed.event_type)
        .header("webhook-id", &claimed.event_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", standard.join(" "));
    if let Some(newest) = secrets.first() {
        req = req.header("x-sendmux-signature", sendmux_signature(newest, body));
    }
    let res = match req.body(payload.to_owned()).send().await {
        Ok(res) => res,
        Err(e) => {
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg = format!("{msg}: {s}");
                source = s.source();
            }
            return fail(msg, start);
        }
    };
    let status = res.status().as_u16();
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    // Keep the first 4 KB of the answer; read no more than that.
    let mut kept = Vec::new();
    let mut stream = res.bytes_stream();
    while kept.len() < RESPONSE_KEEP {
        match stream.next().await {
            Some(Ok(chunk)) => kept.extend_from_slice(&chunk[..chunk.len().min(RESPONSE_KEEP - kept.len())]),
            _ => break,
        }
    }
    Answer {
        status: Some(status),
        error: None,
        body: Some(String::from_utf8_lossy(&kept).into_owned()),
        retry_after,
        latency_ms: start.elapsed().as_millis() as i64,
    }
}

/// What the delivery worker uses, and nothing more: the store (deliveries, endpoints),
/// the seal of the signing secrets, settings and the bus that wakes it.
#[derive(Clone)]
pub struct WebhookWorker {
    store: crate::store::Store,
    secrets: std::sync::Arc<crate::crypto::SecretBox>,
    settings: std::sync::Arc<crate::config::Settings>,
    bus: std::sync::Arc<crate::events::Bus>,
}

impl WebhookWorker {
    pub fn new(core: &Core) -> Self {
        Self {
            store: core.store.clone(),
            secrets: core.secrets.clone(),
            settings: core.settings.clone(),
            bus: core.bus.clone(),
        }
    }
}

/// One pass: claim up to `max` due deliveries, attempt them concurrently, record the
/// results. Returns how many were attempted.
pub async fn run_once(state: &WebhookWorker, sender: &Sender, max: usize) -> anyhow::Result<usize> {
    let now = now_ms();
    if !q::any_due(&mut *state.store.pool().acquire().await?, now).await? {
        return Ok(0);
    }
    let claimed = {
        let mut conn = state.store.write_conn().await?;
        q::claim_due(&mut conn, state.store.backend(), now, LEASE_MS, max as i64).await?
    };
    if claimed.is_empty() {
        return Ok(0);
    }
    // The endpoints and their secrets, once per webhook in the batch.
    let mut endpoints: HashMap<String, Option<(WebhookRow, Vec<String>)>> = HashMap::new();
    {
        let mut conn = state.store.pool().acquire().await?;
        for c in &claimed {
            if endpoints.contains_key(&c.webhook_id) {
                continue;
            }
            let endpoint = match q::get(&mut conn.team(&TeamId::stored(c.team_id.clone())), &c.webhook_id).await? {
                Some(w) => {
                    let secrets = q::valid_secrets(&mut conn, &w.id, now)
                        .await?
                        .iter()
                        .filter_map(|sealed| state.secrets.open(sealed))
                        .filter_map(|plain| String::from_utf8(plain).ok())
                        .collect();
                    Some((w, secrets))
                }
                None => None,
            };
            endpoints.insert(c.webhook_id.clone(), endpoint);
        }
    }
    let schedule = &state.settings.webhook_retry_schedule;
    let results: Vec<(Claimed, Outcome, Option<&'static str>)> = futures::stream::iter(claimed)
        .map(|c| {
            let endpoint = endpoints.get(&c.webhook_id).cloned().flatten();
            async move {
                let attempted_at = now_ms();
                let done = |status, error: String| Outcome {
                    attempted_at,
                    status_code: None,
                    latency_ms: 0,
                    error: Some(error),
                    response: None,
                    status,
                    next_attempt_at: None,
                };
                let Some((webhook, secrets)) = endpoint else {
                    return (c, done("failed", "the webhook was deleted".into()), None);
                };
                if webhook.enabled == 0 {
                    let why = webhook.disabled_reason.clone().unwrap_or_else(|| "disabled".into());
                    return (c, done("failed", format!("the webhook is disabled: {why}")), None);
                }
                let Some(payload) = c.payload.clone() else {
                    return (c, done("failed", "the payload expired (kept 7 days)".into()), None);
                };
                let answer = post(sender, &webhook, &secrets, &c, &payload).await;
                let attempts = c.attempts + 1;
                let ok = answer.status.is_some_and(|s| (200..300).contains(&s));
                let gone = answer.status == Some(410);
                let next = if ok || gone {
                    None
                } else {
                    next_attempt(schedule, attempts, c.created_at, now_ms(), answer.retry_after)
                };
                let status = if ok {
                    "succeeded"
                } else if next.is_some() {
                    "pending"
                } else {
                    "failed"
                };
                let error = answer.error.or_else(|| {
                    answer.status.filter(|s| !(200..300).contains(s)).map(|s| format!("the endpoint answered {s}"))
                });
                let outcome = Outcome {
                    attempted_at,
                    status_code: answer.status.map(i64::from),
                    latency_ms: answer.latency_ms,
                    error,
                    response: answer.body,
                    status,
                    next_attempt_at: next,
                };
                let disable = gone.then_some("the endpoint answered 410 Gone");
                (c, outcome, disable)
            }
        })
        .buffer_unordered(state.settings.webhook_concurrency)
        .collect()
        .await;

    let attempted = results.len();
    let mut tx = state.store.begin().await?;
    let items: Vec<(&Claimed, &Outcome)> = results.iter().map(|(c, o, _)| (c, o)).collect();
    let recorded = q::record_attempts(&mut tx, state.store.backend(), &items).await?;
    // The endpoints' health: one statement per endpoint that succeeded in the batch;
    // failures and disabling, rarer, one by one.
    let mut succeeded: HashMap<&str, i64> = HashMap::new();
    for ((claimed, outcome, disable), recorded) in results.iter().zip(recorded) {
        if !recorded {
            continue;
        }
        if let Some(reason) = disable {
            q::disable(&mut tx, &claimed.webhook_id, reason).await?;
        } else if outcome.status == "succeeded" {
            let at = succeeded.entry(claimed.webhook_id.as_str()).or_insert(outcome.attempted_at);
            *at = (*at).max(outcome.attempted_at);
        } else if outcome.status_code.is_some() || outcome.error.is_some() {
            let since = q::mark_failure(&mut tx, &claimed.webhook_id, outcome.attempted_at).await?;
            if since.is_some_and(|s| outcome.attempted_at - s >= DISABLE_AFTER_MS) {
                q::disable(&mut tx, &claimed.webhook_id, "failed without a success for 5 days").await?;
            }
        }
    }
    for (webhook_id, at) in succeeded {
        q::mark_success(&mut tx, webhook_id, at).await?;
    }
    // Only delivery bookkeeping changed: no read served from the read cache depends on
    // it, so the teams' cached answers (and recipient lookups) stay valid.
    tx.commit().await?;
    metrics::counter!("sendmux_webhook_attempts_total").increment(attempted as u64);
    Ok(attempted)
}

/// Attempts everything due now, until nothing is left: for tests and for draining.
pub async fn run_pending(state: &WebhookWorker, sender: &Sender) -> anyhow::Result<usize> {
    let mut total = 0;
    loop {
        let n = run_once(state, sender, 500).await?;
        if n == 0 {
            return Ok(total);
        }
        total += n;
    }
}

/// Delivers until `shutdown`: woken by new events, polling at least every second for
/// retries that come due.
pub async fn worker_loop(state: WebhookWorker, sender: Sender, shutdown: CancellationToken) {
    let batch = state.settings.webhook_concurrency * 2;
    loop {
        match run_once(&state, &sender, batch).await {
            Ok(n) if n > 0 => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "webhook delivery pass failed; retrying"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = state.bus.deliveries.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHILD: &str = "SENDMUX_TEST_PROXY_CHILD";
    const NAME: &str = "webhooks::worker::tests::environment_proxies_are_not_used";

    /// A proxy from `HTTP_PROXY`/`HTTPS_PROXY`/`ALL_PROXY` would make the connection the
    /// address guard checks one to the proxy, not to the webhook's host. The
    /// environment belongs to the whole process, so the client is checked in a child
    /// process of this test binary whose environment names a proxy: a loopback listener
    /// that must see no connection while the receiver gets the request.
    #[test]
    fn environment_proxies_are_not_used() {
        if std::env::var_os(CHILD).is_some() {
            return post_directly_to_a_receiver();
        }
        let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        proxy.set_nonblocking(true).unwrap();
        let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .env("HTTP_PROXY", &proxy_url)
            .env("http_proxy", &proxy_url)
            .env("HTTPS_PROXY", &proxy_url)
            .env("https_proxy", &proxy_url)
            .env("ALL_PROXY", &proxy_url)
            .env("all_proxy", &proxy_url)
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .output()
            .unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let proxied = proxy.accept().is_ok();
        assert!(out.status.success() && stdout.contains("1 passed"), "child run failed:\n{stdout}\n{stderr}");
        assert!(!proxied, "the webhook client connected to the environment's proxy");
    }

    fn post_directly_to_a_receiver() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/hook", receiver.local_addr().unwrap());
            let server = tokio::spawn(async move {
                let (mut conn, _) = receiver.accept().await.unwrap();
                let mut got = Vec::new();
                let mut buf = [0u8; 1024];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = conn.read(&mut buf).await.unwrap();
                    assert!(n > 0, "the client hung up");
                    got.extend_from_slice(&buf[..n]);
                }
                conn.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n").await.unwrap();
                String::from_utf8_lossy(&got).into_owned()
            });
            let guard = Guard::new(vec!["127.0.0.0/8".parse().unwrap()]);
            let sender = Sender::new(guard, Duration::from_secs(5)).unwrap();
            let res = sender.client.post(&url).body("{}").send().await;
            assert_eq!(res.map(|r| r.status().as_u16()).map_err(|e| e.to_string()), Ok(204));
            let request = server.await.unwrap();
            assert!(request.starts_with("POST /hook HTTP/1.1"), "{request}");
        });
    }
}
