//! The send worker: claims due messages with a lease, routes each through its delivery
//! group (suppressed recipients are dropped first), and records every result — status,
//! attempts, events, usage, suppressions — in one transaction per batch, after all
//! network calls of the batch are done.

use crate::ids::TeamId;
use crate::store::TeamScope;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use super::providers::{self as prov, Resolved, Target};
use super::validate::Email;
use super::{Outcome, mime, routing, ses};
use crate::Core;
use crate::blob::BlobStore;
use crate::config::Settings;
use crate::crypto::SecretBox;
use crate::events::Bus;
use crate::ids::AttemptId;
use crate::store::Store;
use crate::store::events::{self, NewEvent, Subject};
use crate::store::outbound::{self as q, AttemptRow, MessageRow};
use crate::store::{Tx, now_ms, providers, usage};
use std::sync::Arc;

/// What the send worker uses, and nothing more: the store, bodies of large requests,
/// the provider credentials' seal, settings, the provider clients and the bus.
#[derive(Clone)]
pub struct SendWorker {
    store: Store,
    blobs: Arc<dyn BlobStore>,
    secrets: Arc<SecretBox>,
    settings: Arc<Settings>,
    outbound: Arc<super::Runtime>,
    bus: Arc<Bus>,
}

impl SendWorker {
    pub fn new(core: &Core) -> Self {
        Self {
            store: core.store.clone(),
            blobs: core.blobs.clone(),
            secrets: core.secrets.clone(),
            settings: core.settings.clone(),
            outbound: core.outbound.clone(),
            bus: core.bus.clone(),
        }
    }
}

/// Where one message ended up after this attempt.
enum Final {
    /// Handed to a provider. `delivered`: the provider's acceptance is final (an SMTP
    /// relay); SES reports delivery later.
    Sent {
        provider_id: String,
        managed: bool,
        provider_message_id: Option<String>,
        response: String,
        delivered: bool,
        rejected: Vec<(String, String)>,
        suppressed: Vec<String>,
    },
    Bounced {
        provider_id: String,
        response: String,
        rejected: Vec<(String, String)>,
    },
    Deferred {
        reason: String,
        next_attempt_at: i64,
    },
    Failed {
        reason: String,
    },
    Suppressed {
        addresses: Vec<String>,
    },
}

struct Done {
    row: MessageRow,
    attempts: Vec<AttemptRow>,
    result: Final,
}

/// The event `data` of API.md §7 for an outbound message, plus `extra`.
pub fn event_data(row: &MessageRow, extra: Value) -> Value {
    let to: Value = serde_json::from_str(&row.recipients).unwrap_or(Value::Array(vec![]));
    let mut data = json!({
        "message_id": row.id,
        "delivery_group_id": row.delivery_group_id,
        "from": row.from_addr,
        "to": to,
        "subject": row.subject,
        "thread_id": row.thread_id,
        "link": format!("/api/v1/emails/{}", row.id),
    });
    if let (Value::Object(d), Value::Object(e)) = (&mut data, extra) {
        d.extend(e);
    }
    data
}

/// Backoff after `attempts` tries: the initial delay doubled each time, at most an hour.
fn backoff_ms(initial: i64, attempts: i64) -> i64 {
    let factor = 1i64 << (attempts.clamp(1, 20) - 1);
    initial.saturating_mul(factor).min(3_600_000)
}

/// A delivery group as the worker needs it: strategy and members with their providers
/// resolved (credentials opened), or why a member cannot be used.
struct Route {
    strategy: String,
    members: Vec<(providers::MemberRow, Result<Resolved, String>)>,
}

/// What one batch needs from the store, read once before any network call: the routes
/// of its groups and which of its recipients are suppressed.
#[derive(Default)]
struct Context {
    routes: HashMap<(String, String), Option<Route>>,
    suppressed: HashMap<String, HashSet<String>>,
    /// DKIM signers of the batch's teams' verified domains, by (team, domain).
    signers: HashMap<(String, String), Arc<crate::domains::dkim::Signer>>,
}

impl Context {
    /// `raw` DKIM-signed with the key of the team's verified `from` domain; unsigned when
    /// the team has not verified it (or its key cannot be used, which is logged).
    fn sign(&self, row: &MessageRow, from: &str, raw: Vec<u8>) -> Vec<u8> {
        let Some(domain) = crate::domains::domain_of(from) else { return raw };
        let Some(signer) = self.signers.get(&(row.team_id.clone(), domain)) else { return raw };
        match signer.sign(&raw) {
            Ok(signed) => signed,
            Err(e) => {
                tracing::warn!(message_id = %row.id, error = %e, "sending unsigned");
                raw
            }
        }
    }
}

async fn prefetch(state: &SendWorker, rows: &[MessageRow]) -> anyhow::Result<Context> {
    let mut ctx = Context::default();
    let mut conn = state.store.pool().acquire().await?;
    let mut providers_seen: HashMap<(String, String), Result<Resolved, String>> = HashMap::new();
    for row in rows {
        let key = (row.team_id.clone(), row.delivery_group_id.clone());
        if let std::collections::hash_map::Entry::Vacant(slot) = ctx.routes.entry(key) {
            let route = match providers::get_group(
                &mut conn.team(&TeamId::stored(row.team_id.clone())),
                &row.delivery_group_id,
            )
            .await?
            {
                None => None,
                Some(g) => {
                    let members = providers::members_of(
                        &mut conn.team(&TeamId::stored(row.team_id.clone())),
                        std::slice::from_ref(&row.delivery_group_id),
                    )
                    .await?;
                    let mut resolved = Vec::with_capacity(members.len());
                    for m in members {
                        let r = match &m.provider_id {
                            None => prov::managed(&state.settings)
                                .ok_or_else(|| "This instance has no managed SES route any more".to_owned()),
                            Some(pid) => {
                                let pkey = (row.team_id.clone(), pid.clone());
                                if let Some(r) = providers_seen.get(&pkey) {
                                    r.clone()
                                } else {
                                    let r =
                                        match providers::get(&mut conn.team(&TeamId::stored(row.team_id.clone())), pid)
                                            .await?
                                        {
                                            None => Err(format!("Provider {pid} no longer exists")),
                                            Some(p) => prov::from_row(&state.secrets, &p),
                                        };
                                    providers_seen.insert(pkey, r.clone());
                                    r
                                }
                            }
                        };
                        resolved.push((m, r));
                    }
                    Some(Route { strategy: g.strategy, members: resolved })
                }
            };
            slot.insert(route);
        }
    }
    let mut by_team: HashMap<&str, Vec<String>> = HashMap::new();
    for row in rows {
        let rcpts: Vec<String> = serde_json::from_str(&row.recipients).unwrap_or_default();
        by_team.entry(&row.team_id).or_default().extend(rcpts);
    }
    // Signers for the domains the batch sends from, not every domain its teams verified:
    // opening one unseals and parses a private key.
    let from_domains: HashSet<(&str, String)> = rows
        .iter()
        .filter_map(|r| Some((r.team_id.as_str(), crate::domains::domain_of(r.from_addr.trim_end_matches('>'))?)))
        .collect();
    for team in by_team.keys() {
        let team_id = TeamId::stored((*team).to_owned());
        let verified = crate::store::domains::verified(&mut conn.team(&team_id)).await?;
        for d in verified.into_iter().filter(|d| from_domains.contains(&(*team, d.name.clone()))) {
            match crate::domains::dkim::Signer::open(
                &state.secrets,
                &d.name,
                &d.dkim_selector,
                &d.dkim_algorithm,
                &d.dkim_private_key,
            ) {
                Ok(signer) => {
                    ctx.signers.insert(((*team).to_owned(), d.name.clone()), Arc::new(signer));
                }
                Err(e) => tracing::warn!(domain = %d.name, error = %e, "a verified domain's DKIM key cannot sign"),
            }
        }
    }
    for (team, mut addrs) in by_team {
        addrs.sort();
        addrs.dedup();
        let found = q::suppressed_among(&mut conn.team(&TeamId::stored(team.to_owned())), &addrs).await?;
        ctx.suppressed.insert(team.to_owned(), found.into_iter().collect());
    }
    Ok(ctx)
}

/// Sends one claimed message through its group; no store access.
async fn attempt(state: &SendWorker, ctx: &Context, row: MessageRow) -> Done {
    let mut attempts = Vec::new();
    let result = attempt_inner(state, ctx, &row, &mut attempts).await;
    let result = match result {
        Ok(f) => f,
        Err(reason) => transient_or_failed(state, &row, reason, now_ms()),
    };
    Done { row, attempts, result }
}

fn transient_or_failed(state: &SendWorker, row: &MessageRow, reason: String, now: i64) -> Final {
    let next = now + backoff_ms(state.settings.outbound.retry_initial_ms, row.attempts);
    if next > row.expires_at {
        Final::Failed { reason: format!("Gave up after {} attempts: {reason}", row.attempts) }
    } else {
        Final::Deferred { reason, next_attempt_at: next }
    }
}

/// The validated request a message was accepted with: in the blob store, or in the
/// row for messages queued before that.
async fn stored_request(state: &SendWorker, row: &MessageRow) -> Result<Email, String> {
    let unreadable = |_| "The stored request cannot be read".to_owned();
    match (&row.body_key, &row.request) {
        (Some(key), _) => {
            let bytes = state.blobs.get(key).await.map_err(|e| format!("The stored request cannot be read: {e}"))?;
            serde_json::from_slice(&bytes).map_err(unreadable)
        }
        (None, Some(request)) => serde_json::from_str(request).map_err(unreadable),
        (None, None) => Err("The message has no stored request".to_owned()),
    }
}

async fn attempt_inner(
    state: &SendWorker,
    ctx: &Context,
    row: &MessageRow,
    attempts: &mut Vec<AttemptRow>,
) -> Result<Final, String> {
    let email = stored_request(state, row).await?;
    let all = email.envelope_recipients();
    let none = HashSet::new();
    let team_suppressed = ctx.suppressed.get(&row.team_id).unwrap_or(&none);
    let suppressed: Vec<String> = all.iter().filter(|a| team_suppressed.contains(*a)).cloned().collect();
    let rcpts: Vec<String> = all.iter().filter(|a| !team_suppressed.contains(*a)).cloned().collect();
    if rcpts.is_empty() {
        return Ok(Final::Suppressed { addresses: suppressed });
    }
    let Some(Some(route)) = ctx.routes.get(&(row.team_id.clone(), row.delivery_group_id.clone())) else {
        return Ok(Final::Failed { reason: "The delivery group was deleted".into() });
    };
    let order = routing::order(&route.strategy, &route.members.iter().map(|(m, _)| m.clone()).collect::<Vec<_>>());
    let mut raw_smtp: Option<Vec<u8>> = None;
    let mut raw_ses: Option<Vec<u8>> = None;
    let mut transient: Option<String> = None;
    let mut permanent: Option<String> = None;
    for member in order {
        let started = Instant::now();
        let member_id = member.provider_id.clone().unwrap_or_else(|| prov::MANAGED.to_owned());
        let resolved = route.members.iter().find(|(m, _)| m.position == member.position).map(|(_, r)| r.clone());
        let resolved = resolved.unwrap_or_else(|| Err("member vanished".into()));
        let (kind, outcome) = match resolved {
            Err(words) => ("unknown", Outcome::Permanent(words)),
            Ok(r) => {
                let kind = r.kind();
                let outcome = match &r.target {
                    Target::Smtp(t) => {
                        let raw = raw_smtp.get_or_insert_with(|| {
                            let raw = mime::build(&email, &row.id, &row.mime_message_id, row.created_at, true);
                            ctx.sign(row, &email.from.address, raw)
                        });
                        state.outbound.smtp.send(t, &email.from.address, &rcpts, raw).await
                    }
                    Target::Ses(t) => {
                        let raw = raw_ses.get_or_insert_with(|| {
                            let raw = mime::build(&email, &row.id, &row.mime_message_id, row.created_at, false);
                            ctx.sign(row, &email.from.address, raw)
                        });
                        ses::send(&state.outbound.http, t, &email.from.address, &rcpts, raw, &email.tags).await
                    }
                };
                (kind, outcome)
            }
        };
        tracing::info!(message_id = %row.id, provider = %member_id, outcome = outcome.label(), response = %outcome.response(), "delivery attempt");
        attempts.push(AttemptRow {
            id: AttemptId::new().into_string(),
            team_id: row.team_id.clone(),
            message_id: row.id.clone(),
            delivery_group_id: row.delivery_group_id.clone(),
            provider_id: member_id.clone(),
            provider_type: kind.to_owned(),
            outcome: outcome.label().to_owned(),
            response: outcome.response().chars().take(2000).collect(),
            duration_ms: started.elapsed().as_millis() as i64,
            created_at: now_ms(),
        });
        match outcome {
            Outcome::Sent { response, provider_message_id, rejected } => {
                return Ok(Final::Sent {
                    managed: member_id == prov::MANAGED,
                    delivered: kind == "smtp",
                    provider_id: member_id,
                    provider_message_id,
                    response,
                    rejected,
                    suppressed,
                });
            }
            Outcome::Bounced { response, rejected } => {
                return Ok(Final::Bounced { provider_id: member_id, response, rejected });
            }
            Outcome::Transient(r) => transient = Some(format!("{member_id}: {r}")),
            Outcome::Permanent(r) => permanent = Some(format!("{member_id}: {r}")),
        }
    }
    match (transient, permanent) {
        (Some(t), _) => Err(t),
        (None, Some(p)) => Ok(Final::Failed { reason: p }),
        (None, None) => Ok(Final::Failed { reason: "The delivery group has no members".into() }),
    }
}

async fn suppress_all(tx: &mut Tx, row: &MessageRow, rejected: &[(String, String)], now: i64) -> sqlx::Result<()> {
    for (addr, reply) in rejected {
        q::suppress(&mut tx.team(&TeamId::stored(row.team_id.clone())), addr, "hard_bounce", Some(&row.id), reply, now)
            .await?;
    }
    Ok(())
}

/// Writes the results of a batch: per message its status (skipped entirely when the
/// claim was lost) and suppressions, then every attempt, event and usage unit of the
/// batch in multi-row statements. Returns the webhook deliveries queued.
async fn record_all(tx: &mut Tx, done: &[Done], now: i64) -> anyhow::Result<usize> {
    let mut attempts: Vec<&AttemptRow> = Vec::new();
    let mut items: Vec<(&str, &str, Subject<'_>, Value)> = Vec::new();
    let mut units: Vec<usage::Unit<'_>> = Vec::new();
    for d in done {
        let row = &d.row;
        let subject = || Subject {
            delivery_group_id: Some(&row.delivery_group_id),
            message_id: Some(&row.id),
            ..Default::default()
        };
        let (status, provider_id, pmid, last_error, next) = match &d.result {
            Final::Sent { provider_id, provider_message_id, delivered, .. } => (
                if *delivered { "delivered" } else { "sent" },
                Some(provider_id.as_str()),
                provider_message_id.as_deref(),
                None,
                now,
            ),
            Final::Bounced { provider_id, response, .. } => {
                ("bounced", Some(provider_id.as_str()), None, Some(response.as_str()), now)
            }
            Final::Deferred { reason, next_attempt_at } => {
                ("deferred", None, None, Some(reason.as_str()), *next_attempt_at)
            }
            Final::Failed { reason } => ("failed", None, None, Some(reason.as_str()), now),
            Final::Suppressed { .. } => ("suppressed", None, None, None, now),
        };
        for a in &d.attempts {
            metrics::histogram!("sendmux_outbound_attempt_seconds", "provider_type" => a.provider_type.clone(), "outcome" => a.outcome.clone())
                .record(a.duration_ms as f64 / 1000.0);
        }
        if !q::finish(
            &mut tx.team(&TeamId::stored(row.team_id.clone())),
            &row.id,
            row.attempts,
            status,
            provider_id,
            pmid,
            last_error,
            next,
            now,
        )
        .await?
        {
            tracing::warn!(message_id = %row.id, "lost the claim on a message; another worker owns it now");
            continue;
        }
        attempts.extend(&d.attempts);
        let team = row.team_id.as_str();
        match &d.result {
            Final::Sent { provider_id, managed, provider_message_id, response, delivered, rejected, suppressed } => {
                let extra = json!({"provider_id": provider_id, "provider_message_id": provider_message_id,
                    "response": response, "suppressed": suppressed});
                items.push((team, "message.sent", subject(), event_data(row, extra.clone())));
                if *delivered {
                    items.push((team, "message.delivered", subject(), event_data(row, extra)));
                }
                if !rejected.is_empty() {
                    suppress_all(tx, row, rejected, now).await?;
                    let bounced: Vec<Value> =
                        rejected.iter().map(|(a, r)| json!({"address": a, "response": r})).collect();
                    let data = event_data(row, json!({"bounced": bounced, "provider_id": provider_id}));
                    items.push((team, "message.bounced", subject(), data));
                }
                let metric = if *managed { usage::MANAGED_SES_EMAILS } else { usage::OUTBOUND_EMAILS };
                units.push((team, metric, format!("outbound:{}", row.id)));
            }
            Final::Bounced { provider_id, response, rejected } => {
                suppress_all(tx, row, rejected, now).await?;
                let bounced: Vec<Value> = rejected.iter().map(|(a, r)| json!({"address": a, "response": r})).collect();
                let data =
                    event_data(row, json!({"bounced": bounced, "provider_id": provider_id, "response": response}));
                items.push((team, "message.bounced", subject(), data));
            }
            Final::Deferred { reason, next_attempt_at } => {
                let data = json!({"reason": reason, "next_attempt_at": crate::store::rfc3339(*next_attempt_at)});
                items.push((team, "message.deferred", subject(), event_data(row, data)));
            }
            Final::Failed { reason } => {
                items.push((team, "message.failed", subject(), event_data(row, json!({"reason": reason}))));
            }
            Final::Suppressed { addresses } => {
                let data = event_data(row, json!({"suppressed": addresses}));
                items.push((team, "message.suppressed", subject(), data));
            }
        }
    }
    q::insert_attempts(tx, &attempts).await?;
    let events: Vec<NewEvent> =
        items.into_iter().map(|(team, kind, subject, data)| NewEvent::new(team, kind, subject, data)).collect();
    let deliveries = events::append_many(tx, &events).await?;
    usage::record_units(tx, &units).await?;
    Ok(deliveries)
}

/// Claims one batch of due messages, sends them concurrently and records the results.
/// Returns how many messages it handled.
pub async fn run_batch(state: &SendWorker) -> anyhow::Result<usize> {
    let now = now_ms();
    let cfg = &state.settings.outbound;
    let rows = q::claim(&state.store, now, now + cfg.lease_ms, cfg.batch as i64).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let n = rows.len();
    let ctx = prefetch(state, &rows).await?;
    let done: Vec<Done> = futures::future::join_all(rows.into_iter().map(|r| attempt(state, &ctx, r))).await;
    let now = now_ms();
    let mut tx = state.store.begin().await?;
    let deliveries = record_all(&mut tx, &done, now).await?;
    tx.commit().await?;
    state.bus.committed(done.iter().map(|d| d.row.team_id.as_str()), deliveries);
    for d in &done {
        let status = match &d.result {
            Final::Sent { delivered: true, .. } => "delivered",
            Final::Sent { .. } => "sent",
            Final::Bounced { .. } => "bounced",
            Final::Deferred { .. } => "deferred",
            Final::Failed { .. } => "failed",
            Final::Suppressed { .. } => "suppressed",
        };
        metrics::counter!("sendmux_outbound_messages_total", "status" => status).increment(1);
        if matches!(d.result, Final::Sent { .. }) {
            let latency = (now - d.row.created_at).max(0) as f64 / 1000.0;
            metrics::histogram!("sendmux_outbound_delivery_latency_seconds").record(latency);
        }
    }
    Ok(n)
}

/// Handles every message due now, batch after batch, until none is left (tests drain
/// the queue deterministically with this).
pub async fn run_pending_jobs(core: &Core) -> anyhow::Result<usize> {
    let worker = SendWorker::new(core);
    let mut total = 0;
    loop {
        let n = run_batch(&worker).await?;
        if n == 0 {
            return Ok(total);
        }
        total += n;
    }
}

/// One worker: drains the queue, then sleeps until woken by a new message or the poll
/// interval (which also picks up retries that became due).
pub async fn worker_loop(state: SendWorker, shutdown: CancellationToken) {
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let handled = match run_batch(&state).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "send worker step failed; will retry");
                0
            }
        };
        if handled > 0 {
            continue;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = state.outbound.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}
