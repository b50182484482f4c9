//! Group commit for accepted mail. Every `POST /emails` must be durable before its 202,
//! and on SQLite each commit is an fsync under one write lock; committing requests one
//! by one caps acceptance at the disk's fsync rate. Handlers validate in parallel and
//! hand their rows to a committer task, which writes every request waiting at that
//! moment in one transaction — idempotency keys one by one, then all messages and their
//! `message.queued` events in multi-row inserts — and answers each after the commit.

use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::events::Bus;
use crate::store::events::{self, NewEvent, Subject};
use crate::store::outbound::{self as q, MessageRow};
use crate::store::writer::{Batch, BatchConn, IdempotencyKey, Writer};
use crate::store::{Store, now_ms};

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

impl Accept {
    pub fn new(idempotency: Option<Idempotency>, rows: Vec<MessageRow>, answer: Value) -> Self {
        Accept { idempotency, messages: rows.into_iter().map(Queued::new).collect(), answer }
    }
}

/// A message ready to queue: its row and its `message.queued` event, made on the
/// request's own task. (A row's `body_key` may be set later: the event does not carry it.)
pub struct Queued {
    pub row: MessageRow,
    event: NewEvent,
}

impl Queued {
    pub fn new(row: MessageRow) -> Self {
        let subject = Subject {
            delivery_group_id: Some(row.delivery_group_id.as_str()),
            message_id: Some(row.id.as_str()),
            ..Default::default()
        };
        // `event_data`'s fields, without going through a JSON tree: this runs for
        // every accepted message.
        #[derive(serde::Serialize)]
        struct Data<'a> {
            delivery_group_id: &'a str,
            from: &'a str,
            link: String,
            message_id: &'a str,
            subject: &'a str,
            thread_id: Option<&'a str>,
            to: &'a serde_json::value::RawValue,
        }
        let to = serde_json::from_str::<&serde_json::value::RawValue>(&row.recipients).ok();
        let data = Data {
            delivery_group_id: &row.delivery_group_id,
            from: &row.from_addr,
            link: format!("/api/v1/emails/{}", row.id),
            message_id: &row.id,
            subject: &row.subject,
            thread_id: row.thread_id.as_deref(),
            to: to.unwrap_or(serde_json::value::RawValue::NULL),
        };
        let event = NewEvent::new(&row.team_id, "message.queued", subject, data);
        Queued { row, event }
    }
}

pub enum Answer {
    /// Queued now.
    Fresh(Value),
    /// An earlier request with the same key and body: its status and answer.
    Replayed(u16, Value),
}

type Job = (Accept, oneshot::Sender<Result<Answer>>);

pub struct Committer {
    sender: mpsc::Sender<Job>,
}

/// Most requests committed together.
const MAX_GROUP: usize = 256;

impl Committer {
    /// Starts the committers (`BatchConn::open_all`: one on SQLite, a few on
    /// PostgreSQL). On SQLite it runs on a thread of its own with a connection of its
    /// own (`store::writer`); on PostgreSQL they are tasks of the shared runtime, whose
    /// pool connections live there. Parallel groups cannot deadlock: each takes its
    /// idempotency keys in one order (`write_group`) and then its teams' log locks in
    /// another, always after the keys. `bus` is rung for the teams of every committed
    /// group.
    pub fn start(store: Store, bus: Arc<Bus>) -> anyhow::Result<Self> {
        let (sender, rx) = mpsc::channel::<Job>(4096);
        let groups = Arc::new(crate::batch::Groups::new(rx, MAX_GROUP));
        for conn in BatchConn::open_all(&store)? {
            let (groups, bus) = (groups.clone(), bus.clone());
            conn.spawn("sendmux-accept", move |mut conn| async move {
                while let Some(jobs) = groups.next().await {
                    let started = Instant::now();
                    let mut group = Group { decided: (0..jobs.len()).map(|_| None).collect(), jobs, deliveries: 0 };
                    let written = conn.write(&mut group).await;
                    group.answer(written, &bus, started);
                }
            })?;
        }
        Ok(Self { sender })
    }

    /// Queues `accept` in the next group and answers once the group committed.
    pub async fn run(&self, accept: Accept) -> Result<Answer> {
        let (reply, answer) = oneshot::channel();
        self.sender.send((accept, reply)).await.map_err(|_| Error::internal("the committer stopped"))?;
        answer.await.map_err(|_| Error::internal("the committer dropped a request"))?
    }
}

/// The requests committed together.
struct Group {
    jobs: Vec<Job>,
    /// One slot per request: set for requests answered without queueing (replays and
    /// conflicts).
    decided: Vec<Option<Result<Answer>>>,
    /// Webhook deliveries queued with the group's events.
    deliveries: usize,
}

impl Group {
    /// Answers every request after the group's transaction ended as `written` says,
    /// and rings the bus for its teams when it committed.
    fn answer(self, written: anyhow::Result<()>, bus: &Bus, started: Instant) {
        metrics::histogram!("sendmux_outbound_accept_batch_size").record(self.jobs.len() as f64);
        metrics::histogram!("sendmux_outbound_accept_commit_seconds").record(started.elapsed().as_secs_f64());
        match written {
            Ok(()) => {
                let teams = self.jobs.iter().flat_map(|(a, _)| a.messages.iter().map(|m| m.row.team_id.as_str()));
                bus.committed(teams, self.deliveries);
                for ((job, reply), d) in self.jobs.into_iter().zip(self.decided) {
                    let _ = reply.send(d.unwrap_or(Ok(Answer::Fresh(job.answer))));
                }
            }
            Err(e) => {
                // Nothing of the group was kept: every request gets the error, except
                // those refused for their own reasons (which wrote nothing anyway).
                let msg = format!("committing accepted mail: {e:#}");
                for ((_, reply), d) in self.jobs.into_iter().zip(self.decided) {
                    let answer = match d {
                        Some(Err(refusal)) => Err(refusal),
                        _ => Err(Error::internal(&msg)),
                    };
                    let _ = reply.send(answer);
                }
            }
        }
    }
}

impl Batch for Group {
    /// Idempotency keys one by one, then every queued message and its event.
    async fn write(&mut self, w: &mut impl Writer) -> anyhow::Result<()> {
        self.deliveries = write_group(w, &self.jobs, &mut self.decided).await?;
        Ok(())
    }
}

/// Writes one group in `w`'s transaction; `decided[i]` is set for requests answered
/// without queueing (replays and conflicts). Returns the webhook deliveries queued.
async fn write_group(
    w: &mut impl Writer,
    jobs: &[Job],
    decided: &mut [Option<Result<Answer>>],
) -> anyhow::Result<usize> {
    let now = now_ms();
    // In key order, so concurrent groups wanting the same keys wait for each other in
    // one order rather than deadlock; a stable sort keeps a group's repeats of one key
    // in arrival order.
    let mut keyed: Vec<(usize, &Idempotency)> =
        jobs.iter().enumerate().filter_map(|(i, (job, _))| Some((i, job.idempotency.as_ref()?))).collect();
    keyed.sort_by(|(_, a), (_, b)| (&a.team_id, &a.scope, &a.key).cmp(&(&b.team_id, &b.scope, &b.key)));
    for (i, idem) in keyed {
        let job = &jobs[i].0;
        let key = IdempotencyKey {
            team_id: &idem.team_id,
            scope: &idem.scope,
            key: &idem.key,
            hash: &idem.hash,
            now,
            ttl_ms: IDEMPOTENCY_TTL_MS,
        };
        // Reserving writes nothing when the key is taken, so a refusal needs no rollback;
        // a later request of this same group with the key sees this one's row.
        match w.idempotency_reserve(&key).await? {
            None => w.idempotency_save(&key, 202, &job.answer.to_string()).await?,
            Some(prev) if prev.request_hash != idem.hash => {
                decided[i] = Some(Err(Error::conflict("This Idempotency-Key was used with a different request body")
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
        let rows: Vec<&MessageRow> = queued.iter().map(|m| &m.row).collect();
        q::insert_messages(w, &rows).await?;
        // Later mail that answers one of these joins its thread through the row itself
        // (`store::threads::lookup` reads a sent message's Message-ID back to its id).
        let events: Vec<&NewEvent> = queued.iter().map(|m| &m.event).collect();
        return events::append_many(w, &events).await;
    }
    Ok(0)
}
