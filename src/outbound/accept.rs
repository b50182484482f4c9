//! Group commit for accepted mail. Every `POST /emails` must be durable before its 202,
//! and on SQLite each commit is an fsync under one write lock; committing requests one
//! by one caps acceptance at the disk's fsync rate. Handlers validate in parallel and
//! hand their rows to a committer task, which writes every request waiting at that
//! moment in one transaction — idempotency keys one by one, then all messages and their
//! `message.queued` events in multi-row inserts — and answers each after the commit.

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::error::{ApiError, ApiResult};
use crate::store::events::{self, NewEvent, Subject};
use crate::store::outbound::{self as q, MessageRow};
use crate::store::{JsonRows, Store, now_ms, to_json_row};

/// How long an `Idempotency-Key` answers with its first response.
pub const IDEMPOTENCY_TTL_MS: i64 = 24 * 3600 * 1000;

/// The idempotency key of a request, scoped to its team and delivery group.
pub struct Idempotency {
    pub team_id: String,
    pub scope: String,
    pub key: String,
    /// SHA-256 of the request body, hex.
    pub hash: String,
}

/// One accepted request: the messages to queue and the answer that goes with them.
pub struct Accept {
    pub idempotency: Option<Idempotency>,
    pub messages: Vec<Queued>,
    pub answer: Value,
}

/// A message ready to queue: its row and its `message.queued` event, serialised on the
/// request's own task so the committer only joins bytes.
pub struct Queued {
    team_id: String,
    row: String,
    event: NewEvent,
}

impl Queued {
    pub fn new(row: &MessageRow) -> Self {
        let subject = Subject {
            delivery_group_id: Some(row.delivery_group_id.as_str()),
            message_id: Some(row.id.as_str()),
            ..Default::default()
        };
        let data = super::worker::event_data(row, json!({}));
        Queued {
            team_id: row.team_id.clone(),
            row: to_json_row(row),
            event: NewEvent::new(&row.team_id, "message.queued", subject, data),
        }
    }
}

pub enum Answer {
    /// Queued now.
    Fresh(Value),
    /// An earlier request with the same key and body: its status and answer.
    Replayed(u16, Value),
}

type Job = (Accept, oneshot::Sender<ApiResult<Answer>>);

pub struct Committer {
    sender: mpsc::Sender<Job>,
}

/// Most requests committed together.
const MAX_GROUP: usize = 256;

impl Committer {
    /// Starts the committer task. One: SQLite has one writer anyway, and on PostgreSQL
    /// parallel groups could deadlock on each other's idempotency rows and per-team event
    /// locks, taken in different orders.
    /// `bus` is rung for the teams of every committed group.
    pub fn start(store: Store, bus: std::sync::Arc<crate::events::Bus>) -> Self {
        let (sender, mut rx) = mpsc::channel::<Job>(4096);
        crate::jobs::spawn_committer(store.backend(), "sendmux-accept", async move {
            while let Some(first) = rx.recv().await {
                let mut jobs = vec![first];
                while jobs.len() < MAX_GROUP {
                    match rx.try_recv() {
                        Ok(j) => jobs.push(j),
                        Err(_) => break,
                    }
                }
                let mut teams: Vec<String> =
                    jobs.iter().flat_map(|(a, _)| a.messages.iter().map(|m| m.team_id.clone())).collect();
                teams.sort_unstable();
                teams.dedup();
                metrics::histogram!("sendmux_outbound_accept_batch_size").record(jobs.len() as f64);
                let started = std::time::Instant::now();
                let committed = run_group(&store, jobs).await;
                metrics::histogram!("sendmux_outbound_accept_commit_seconds").record(started.elapsed().as_secs_f64());
                if committed {
                    for team in &teams {
                        bus.notify(team);
                    }
                }
            }
        });
        Self { sender }
    }

    /// Queues `accept` in the next group and answers once the group committed.
    pub async fn run(&self, accept: Accept) -> ApiResult<Answer> {
        let (reply, answer) = oneshot::channel();
        self.sender.send((accept, reply)).await.map_err(|_| ApiError::internal("the committer stopped"))?;
        answer.await.map_err(|_| ApiError::internal("the committer dropped a request"))?
    }
}

/// Writes one group and answers its requests; true when it committed.
async fn run_group(store: &Store, jobs: Vec<Job>) -> bool {
    let mut decided: Vec<Option<ApiResult<Answer>>> = (0..jobs.len()).map(|_| None).collect();
    match write_group(store, &jobs, &mut decided).await {
        Ok(()) => {
            for ((job, reply), d) in jobs.into_iter().zip(decided) {
                let _ = reply.send(d.unwrap_or(Ok(Answer::Fresh(job.answer))));
            }
            true
        }
        Err(e) => {
            // Nothing of the group was kept: every request gets the error, except those
            // refused for their own reasons (which wrote nothing anyway).
            let msg = format!("committing accepted mail: {e}");
            for ((_, reply), d) in jobs.into_iter().zip(decided) {
                let answer = match d {
                    Some(Err(refusal)) => Err(refusal),
                    _ => Err(ApiError::internal(&msg)),
                };
                let _ = reply.send(answer);
            }
            false
        }
    }
}

/// Writes the group; `decided[i]` is set for requests answered without queueing
/// (replays and conflicts).
async fn write_group(store: &Store, jobs: &[Job], decided: &mut [Option<ApiResult<Answer>>]) -> sqlx::Result<()> {
    let mut tx = store.begin().await?;
    let now = now_ms();
    for (i, (job, _)) in jobs.iter().enumerate() {
        let Some(idem) = &job.idempotency else { continue };
        // Reserving writes nothing when the key is taken, so a refusal needs no rollback;
        // a later request of this same group with the key sees this one's row.
        match q::idempotency_reserve(
            &mut tx,
            &idem.team_id,
            &idem.scope,
            &idem.key,
            &idem.hash,
            now,
            IDEMPOTENCY_TTL_MS,
        )
        .await?
        {
            None => {
                q::idempotency_save(&mut tx, &idem.team_id, &idem.scope, &idem.key, 202, &job.answer.to_string())
                    .await?;
            }
            Some(prev) if prev.request_hash != idem.hash => {
                decided[i] =
                    Some(Err(ApiError::conflict("This Idempotency-Key was used with a different request body")
                        .with_param("Idempotency-Key")));
            }
            Some(prev) => {
                let body = prev.response.as_deref().and_then(|r| serde_json::from_str(r).ok()).unwrap_or(Value::Null);
                decided[i] = Some(Ok(Answer::Replayed(prev.status_code.unwrap_or(202) as u16, body)));
            }
        }
    }
    let queued: Vec<&Queued> = jobs
        .iter()
        .zip(decided.iter())
        .filter(|(_, d)| d.is_none())
        .flat_map(|((job, _), _)| job.messages.iter())
        .collect();
    if !queued.is_empty() {
        let mut rows = JsonRows::new();
        for m in &queued {
            rows.push_json(&m.row);
        }
        q::insert_messages(&mut tx, store.backend(), rows).await?;
        events::append_many(store.backend(), &mut tx, queued.iter().map(|m| &m.event)).await?;
    }
    tx.commit().await
}
