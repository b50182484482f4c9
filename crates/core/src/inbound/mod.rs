//! The inbound pipeline shared by the SMTP listener and `POST /mailbox/messages`:
//! parse, authenticate, score, then store durably — raw bytes flushed first, then one
//! transaction with the message rows, their events and their usage — before anyone is
//! told the message was accepted.

pub mod authenticate;
pub mod extract;
pub mod messages;
pub mod parse;
pub mod route;
pub mod score;
pub mod smtp;

use crate::ids::TeamId;
use crate::store::TeamScope;
use futures::FutureExt;
use serde_json::json;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::Core;
use crate::ids::MessageId;
use crate::store::events::{self, NewEvent, Subject};
use crate::store::inbound::{self as q, MessageRow};
use crate::store::writer::{Batch, BatchConn, Writer};
use crate::store::{Store, now_ms, usage};
use authenticate::AuthResults;
use tokio::sync::{mpsc, oneshot};

/// A mailbox a message is delivered to, as resolved from a recipient address.
#[derive(Clone, Debug, PartialEq)]
pub struct Recipient {
    pub mailbox_id: String,
    pub team_id: String,
    pub address: String,
    pub spam_threshold: f64,
    pub accept_spam: bool,
    /// The `tag` of a `local+tag@domain` address delivered to `local@domain` or the
    /// domain's catch-all.
    pub plus_tag: Option<String>,
}

impl From<crate::store::mailboxes::MailboxRow> for Recipient {
    fn from(m: crate::store::mailboxes::MailboxRow) -> Self {
        Recipient {
            mailbox_id: m.id,
            team_id: m.team_id,
            address: m.address,
            spam_threshold: m.spam_threshold,
            accept_spam: m.accept_spam != 0,
            plus_tag: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Smtp,
    Api,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Smtp => "smtp",
            Source::Api => "api",
        }
    }
}

pub struct Incoming {
    pub raw: Vec<u8>,
    pub source: Source,
    pub remote_ip: Option<IpAddr>,
    pub helo: String,
    pub mail_from: String,
    pub recipients: Vec<Recipient>,
}

#[derive(Debug)]
pub enum Outcome {
    /// Stored durably: one row per mailbox that took the message.
    Stored(Vec<MessageRow>),
    /// Every recipient mailbox refuses spam and the message scored as spam.
    RefusedAsSpam { score: f64 },
}

/// Parses, authenticates, scores and stores `incoming`. When this returns `Stored` the
/// bytes are on disk and the rows committed.
#[tracing::instrument(name = "inbound_receive", skip_all, fields(source = incoming.source.as_str(), size = incoming.raw.len(), recipients = incoming.recipients.len()))]
pub async fn receive(state: &Core, incoming: Incoming) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let raw = Arc::new(incoming.raw);
    let mut recipients = incoming.recipients;
    // One copy per mailbox, however often it was named, in a stable order.
    recipients.sort_by(|a, b| (&a.team_id, &a.mailbox_id).cmp(&(&b.team_id, &b.mailbox_id)));
    recipients.dedup_by(|a, b| a.mailbox_id == b.mailbox_id);
    let ids: Vec<String> = recipients.iter().map(|_| MessageId::new().into_string()).collect();
    // 1. The bytes, flushed, before any row points at them. When every mailbox keeps
    //    spam, every copy will be stored whatever the verdict, so the writes start
    //    now, beside parsing and authentication; otherwise once the verdict is known.
    let early = recipients.iter().all(|r| r.accept_spam);
    let bodies = early.then(|| write_bodies(state, &raw, recipients.iter().map(|r| r.team_id.clone()).collect()));
    // Parsing runs off the async threads; a panic in the parser only costs the summary.
    let summary = {
        let raw = raw.clone();
        tokio::task::spawn_blocking(move || parse::summarize(&raw)).await.unwrap_or_else(|_| {
            tracing::warn!("MIME parser panicked; storing the message without a summary");
            parse::Summary::default()
        })
    };
    let auth = std::panic::AssertUnwindSafe(state.mail_auth.check(
        &raw,
        incoming.remote_ip,
        &incoming.helo,
        &incoming.mail_from,
    ))
    .catch_unwind()
    .await
    .unwrap_or_else(|_| {
        tracing::warn!("sender authentication panicked; treating results as none");
        AuthResults::none()
    });
    let (score, signals) = score::score(&auth, &summary, &raw);

    let received_at = now_ms();
    let auth_json = json!({"authentication": auth, "signals": signals}).to_string();
    let mut rows = Vec::new();
    let mut kept = Vec::new();
    for (i, r) in recipients.iter().enumerate() {
        let is_spam = score >= r.spam_threshold;
        if is_spam && !r.accept_spam {
            continue;
        }
        kept.push(i);
        rows.push(MessageRow {
            blob_key: String::new(),
            id: ids[i].clone(),
            team_id: r.team_id.clone(),
            mailbox_id: r.mailbox_id.clone(),
            size_bytes: raw.len() as i64,
            source: incoming.source.as_str().to_owned(),
            remote_ip: incoming.remote_ip.map(|ip| ip.to_string()),
            helo: (!incoming.helo.is_empty()).then(|| parse::stored(&incoming.helo)),
            mail_from: parse::stored(&incoming.mail_from),
            rcpt_to: r.address.clone(),
            from_address: summary.from_address.clone(),
            from_name: summary.from_name.clone(),
            subject: summary.subject.clone(),
            header_message_id: summary.message_id.clone(),
            attachment_count: summary.attachment_count as i64,
            spam_score: score,
            is_spam: i64::from(is_spam),
            auth_results: auth_json.clone(),
            received_at,
            plus_tag: r.plus_tag.clone(),
            thread_id: None,
            extracted_text: summary.extracted_text.clone(),
            direction: "inbound".to_owned(),
            search_text: Some(format!("{} {}", summary.search_text, r.address)),
        });
    }
    if rows.is_empty() {
        metrics::counter!("sendmux_inbound_refused_spam_total").increment(1);
        return Ok(Outcome::RefusedAsSpam { score });
    }

    // The bodies' keys, once durable: started above (one per recipient), or now (one
    // per row).
    let keys = match bodies {
        Some(write) => {
            let keys = write.await??;
            kept.iter().map(|&i| keys[i].clone()).collect()
        }
        None => write_bodies(state, &raw, rows.iter().map(|r| r.team_id.clone()).collect()).await??,
    };
    for (row, key) in rows.iter_mut().zip(keys) {
        row.blob_key = key;
    }
    // The conversation each copy belongs to (crate::threads).
    let threading = crate::threads::Threading {
        message_id: summary.message_id.as_deref(),
        in_reply_to: &summary.in_reply_to,
        references: &summary.references,
        subject: summary.subject.as_deref(),
    };
    let refs = match crate::threads::assign_inbound(&state.store, &mut rows, &threading, received_at).await {
        Ok(refs) => refs,
        Err(e) => {
            discard_blobs(state, &rows).await;
            return Err(e);
        }
    };
    // 2. Rows, events and usage in one transaction.
    if let Err(e) = state.inbound_committer.commit(rows.clone(), summary.to.clone(), refs).await {
        discard_blobs(state, &rows).await;
        return Err(e);
    }
    metrics::counter!("sendmux_inbound_messages_total", "source" => incoming.source.as_str())
        .increment(rows.len() as u64);
    metrics::histogram!("sendmux_inbound_store_seconds").record(started.elapsed().as_secs_f64());
    Ok(Outcome::Stored(rows))
}

/// Starts storing one copy of `raw` for each of `teams`; the task ends with their
/// keys, in order, once every copy is durable.
fn write_bodies(
    state: &Core,
    raw: &Arc<Vec<u8>>,
    teams: Vec<String>,
) -> tokio::task::JoinHandle<std::io::Result<Vec<String>>> {
    let blobs = state.blobs.clone();
    let raw = raw.clone();
    tokio::spawn(async move {
        let started = Instant::now();
        let written = futures::future::join_all(teams.iter().map(|t| blobs.put(t, raw.clone()))).await;
        metrics::histogram!("sendmux_inbound_blob_write_seconds").record(started.elapsed().as_secs_f64());
        if let Some(failed) = written.iter().position(Result::is_err) {
            // The message is refused as a whole: the copies that were written go too.
            for key in written.iter().flatten() {
                if let Err(e) = blobs.delete(key).await {
                    tracing::warn!(key = %key, error = %e, "could not remove the body of a message that was not stored");
                }
            }
            return Err(written
                .into_iter()
                .nth(failed)
                .and_then(Result::err)
                .unwrap_or_else(|| std::io::Error::other("write failed")));
        }
        written.into_iter().collect()
    })
}

/// Writes the rows of `rows` — each with the envelope recipients of its message — and
/// everything that goes with them: one event each, the usage unit, the stored bytes.
/// One multi-row statement per table (per chunk), whatever the number of messages.
async fn write_rows(
    w: &mut impl Writer,
    rows: &[(&MessageRow, &[String])],
    refs: &[crate::store::threads::RefRow],
) -> anyhow::Result<usize> {
    let messages: Vec<&MessageRow> = rows.iter().map(|(m, _)| *m).collect();
    q::insert_many(w, &messages).await?;
    crate::store::threads::insert_refs(w, refs).await?;
    let events: Vec<(&str, &str, Subject<'_>, serde_json::Value)> = rows
        .iter()
        .map(|(m, to)| {
            let kind = if m.is_spam != 0 { "message.received.spam" } else { "message.received" };
            let data = json!({
                "message_id": m.id,
                "mailbox_id": m.mailbox_id,
                "thread_id": m.thread_id,
                "from": m.from_address,
                "to": to,
                "rcpt_to": m.rcpt_to,
                "subject": m.subject,
                "spam": {"score": m.spam_score, "verdict": if m.is_spam != 0 { "spam" } else { "ham" }},
                "url": format!("/api/v1/mailboxes/{}/messages/{}", m.mailbox_id, m.id),
            });
            let subject = Subject { mailbox_id: Some(&m.mailbox_id), message_id: Some(&m.id), ..Default::default() };
            (m.team_id.as_str(), kind, subject, data)
        })
        .collect();
    let events: Vec<NewEvent> =
        events.into_iter().map(|(team, kind, subject, data)| NewEvent::new(team, kind, subject, data)).collect();
    let units: Vec<usage::Unit<'_>> =
        messages.iter().map(|m| (m.team_id.as_str(), usage::INBOUND_EMAILS, format!("inbound:{}", m.id))).collect();
    usage::record_units(w, &units).await?;
    let stored: Vec<usage::StorageChange<'_>> = messages
        .iter()
        .map(|m| (m.team_id.as_str(), Some(m.mailbox_id.as_str()), Some(m.id.as_str()), m.size_bytes, m.received_at))
        .collect();
    usage::storage_changes(w, &stored).await?;
    // Last: from here to the commit the teams' logs are locked (`events::append_many`).
    events::append_many(w, &events).await
}

/// The messages of a batch, written in one transaction.
struct Rows<'a> {
    jobs: &'a [CommitJob],
    /// Webhook deliveries queued with their events.
    deliveries: usize,
}

impl<'a> Rows<'a> {
    fn of(jobs: &'a [CommitJob]) -> Self {
        Rows { jobs, deliveries: 0 }
    }

    /// Wakes the readers of every team written, and the webhook worker if it has work.
    fn announce(&self, bus: &crate::events::Bus) {
        bus.committed(self.jobs.iter().flat_map(|j| j.rows.iter().map(|r| r.team_id.as_str())), self.deliveries);
    }
}

impl Batch for Rows<'_> {
    async fn write(&mut self, w: &mut impl Writer) -> anyhow::Result<()> {
        // Arrival order; `events::append_many` takes the teams' log locks in team order.
        let rows: Vec<(&MessageRow, &[String])> =
            self.jobs.iter().flat_map(|j| j.rows.iter().map(move |r| (r, j.to.as_slice()))).collect();
        let mut refs: Vec<crate::store::threads::RefRow> =
            self.jobs.iter().flat_map(|j| j.refs.iter().cloned()).collect();
        // One row per key in a statement (PostgreSQL refuses to update a row twice in one).
        refs.sort_by(|a, b| (&a.team_id, &a.ref_key).cmp(&(&b.team_id, &b.ref_key)));
        refs.dedup_by(|a, b| a.team_id == b.team_id && a.ref_key == b.ref_key);
        self.deliveries = write_rows(w, &rows, &refs).await?;
        Ok(())
    }
}

struct CommitJob {
    rows: Vec<MessageRow>,
    to: Vec<String>,
    refs: Vec<crate::store::threads::RefRow>,
    done: oneshot::Sender<anyhow::Result<()>>,
}

/// Group commit for inbound messages: concurrent deliveries wait for one transaction
/// that holds all of them, so the store pays one durable commit (one fsync) per batch
/// instead of one per message. Each caller still hears back only after the commit
/// that holds its rows; when a batch fails, its messages are retried one by one so a
/// bad one cannot take the others down.
pub struct Committer {
    jobs: mpsc::Sender<CommitJob>,
}

/// At most this many messages share one transaction.
const MAX_BATCH: usize = 256;

impl Committer {
    /// `bus` is rung for every team a committed batch touched, so streams (and the
    /// webhook worker, when deliveries were queued) look at the log at once.
    pub fn start(store: Store, bus: std::sync::Arc<crate::events::Bus>) -> anyhow::Result<Committer> {
        let (jobs, rx) = mpsc::channel::<CommitJob>(4 * MAX_BATCH);
        let batches = std::sync::Arc::new(crate::batch::Groups::new(rx, MAX_BATCH));
        // One committer on SQLite, a few whose transactions overlap on PostgreSQL
        // (`BatchConn::open_all`). Parallel batches cannot deadlock: each upserts its
        // thread references in key order, then locks its teams' logs in team order.
        for conn in BatchConn::open_all(&store)? {
            let (batches, bus) = (batches.clone(), bus.clone());
            conn.spawn("sendmux-inbound", move |mut conn| async move {
                while let Some(batch) = batches.next().await {
                    commit_batch(&mut conn, batch, &bus).await;
                }
            })?;
        }
        Ok(Committer { jobs })
    }

    /// Commits `rows` (the copies of one message, their bodies already durable) with
    /// their thread references; returns once the rows are durable.
    pub async fn commit(
        &self,
        rows: Vec<MessageRow>,
        to: Vec<String>,
        refs: Vec<crate::store::threads::RefRow>,
    ) -> anyhow::Result<()> {
        let (done, wait) = oneshot::channel();
        self.jobs
            .send(CommitJob { rows, to, refs, done })
            .await
            .map_err(|_| anyhow::anyhow!("the committer stopped"))?;
        wait.await.map_err(|_| anyhow::anyhow!("the committer stopped"))?
    }
}

/// Commits one batch and answers its jobs; when it fails, its messages are retried one
/// by one so a bad one cannot take the others down.
async fn commit_batch(conn: &mut BatchConn, batch: Vec<CommitJob>, bus: &crate::events::Bus) {
    metrics::histogram!("sendmux_inbound_commit_batch_size").record(batch.len() as f64);
    let started = Instant::now();
    let mut rows = Rows::of(&batch);
    let written = conn.write(&mut rows).await;
    metrics::histogram!("sendmux_inbound_commit_seconds").record(started.elapsed().as_secs_f64());
    match written {
        Ok(()) => {
            rows.announce(bus);
            for job in batch {
                let _ = job.done.send(Ok(()));
            }
        }
        Err(e) if batch.len() == 1 => {
            let _ = batch.into_iter().next().map(|job| job.done.send(Err(e)));
        }
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), size = batch.len(), "batch commit failed; retrying one by one");
            for job in batch {
                let mut rows = Rows::of(std::slice::from_ref(&job));
                let result = conn.write(&mut rows).await;
                if result.is_ok() {
                    rows.announce(bus);
                }
                let _ = job.done.send(result);
            }
        }
    }
}

async fn discard_blobs(state: &Core, rows: &[MessageRow]) {
    for r in rows {
        if let Err(e) = state.blobs.delete(&r.blob_key).await {
            tracing::warn!(key = %r.blob_key, error = %e, "could not remove the body of a message that was not stored");
        }
    }
}

/// Deletes up to `batch` messages past their mailbox's retention, with their bodies
/// and a negative storage record. Returns how many went.
pub async fn expire_once(state: &crate::Storage, batch: i64) -> anyhow::Result<usize> {
    let now = now_ms();
    let expired = {
        let mut conn = state.store.pool().acquire().await?;
        q::expired(&mut conn, now, batch).await?
    };
    if expired.is_empty() {
        return Ok(0);
    }
    let mut tx = state.store.begin().await?;
    let mut gone = Vec::new();
    for m in &expired {
        if q::delete(&mut tx.team(&TeamId::stored(m.team_id.clone())), &m.id).await? {
            usage::storage_change(
                &mut tx.team(&TeamId::stored(m.team_id.clone())),
                Some(&m.mailbox_id),
                Some(&m.id),
                -m.size_bytes,
                now,
            )
            .await?;
            gone.push(m.blob_key.clone());
        }
    }
    // Bodies go after the rows, queued for erasure in the same transaction: a crash in
    // between leaves the queue entry (maintenance erases it), never a row without its
    // body.
    crate::store::erasures::queue(&mut tx, &gone, now).await?;
    tx.commit().await?;
    crate::erasure::erase_bodies(state, &gone).await;
    Ok(gone.len())
}
