//! Background work of `sendmux serve`: periodic maintenance (events past retention,
//! idempotency keys past 24 h); the send workers live in `outbound::worker`.
//! Every loop stops when the shutdown token fires.

use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::Storage;

use crate::store::{events, now_ms};

/// One maintenance pass: drop events and webhook payloads past their retention, and
/// inbound messages past their mailbox's retention. Returns the events removed.
pub async fn maintenance_once(state: &Storage) -> anyhow::Result<u64> {
    let mut conn = state.store.write_conn().await?;
    let cutoff = now_ms() - crate::events::RETENTION_MS;
    let removed = events::delete_older_than(&mut conn, cutoff).await?;
    let purged = crate::store::webhooks::purge_payloads(&mut conn, cutoff).await?;
    crate::store::outbound::idempotency_expire(&mut conn, now_ms() - crate::outbound::accept::IDEMPOTENCY_TTL_MS)
        .await?;
    drop(conn);
    if removed > 0 || purged > 0 {
        tracing::info!(removed, purged, "expired events and webhook payloads removed");
    }
    expire_messages(state).await?;
    erase_leftover_bodies(state).await?;
    settle_abandoned_bodies(state).await?;
    Ok(removed)
}

/// How long before a segment's creation its bodies' message ids may have been made:
/// an id is made just before its body is written, so this is generous.
const BODY_ID_SLACK_MS: i64 = 3600 * 1000;

/// Settles the blob segments that a crashed writer left open: the bodies some message
/// row references stay, every other byte in them — bodies written but never committed,
/// whose senders were never told they were accepted — is erased, and the segment is
/// sealed. `serve` runs it at start and maintenance after that (a segment counts as
/// abandoned only a minute after its last write). A segment that cannot be settled now
/// is left for the next pass. Returns how many ranges were erased.
pub async fn settle_abandoned_bodies(state: &Storage) -> anyhow::Result<usize> {
    let mut erased = 0;
    for segment in state.blobs.abandoned().await? {
        let since = (segment.created_ms - BODY_ID_SLACK_MS).max(0) as u64;
        let since_id = format!("{}{}", crate::ids::MessageId::PREFIX, ulid::Ulid::from_parts(since, 0));
        let prefix = segment.key_prefix.clone();
        let keep = {
            let mut conn = state.store.pool().acquire().await?;
            let mut keep = crate::store::inbound::blob_keys_with_prefix(&mut conn, &since_id, &prefix).await?;
            keep.extend(crate::store::outbound::body_keys_with_prefix(&mut conn, &since_id, &prefix).await?);
            keep
        };
        match state.blobs.settle(&segment, &keep).await {
            Ok(n) => erased += n,
            Err(e) => {
                tracing::warn!(segment = %prefix, error = %e, "could not settle a message body segment; will retry")
            }
        }
    }
    if erased > 0 {
        tracing::info!(erased, "erased message bodies that no message references (left by a crash)");
    }
    Ok(erased)
}

/// Erases what deletions queued and a crash (or an error) left unerased.
async fn erase_leftover_bodies(state: &Storage) -> anyhow::Result<()> {
    // Older than a minute: a deletion that just committed erases its own.
    let before = now_ms() - 60_000;
    loop {
        let keys = {
            let mut conn = state.store.pool().acquire().await?;
            crate::store::erasures::pending(&mut conn, before, 500).await?
        };
        if keys.is_empty() {
            return Ok(());
        }
        crate::erasure::try_erase_bodies(state, &keys).await?;
        if keys.len() < 500 {
            return Ok(());
        }
    }
}

/// PostgreSQL: hears what the other nodes commit. `NOTIFY sendmux_events` becomes
/// wake-ups on this node's bus (streams, the webhook worker); `NOTIFY sendmux_changes`
/// drops what this node's caches hold about the change ([`crate::store::changes`]).
///
/// The caches are on only while the listener is connected: a lost connection turns them
/// off at once (a change committed meanwhile would go unheard) and forgets everything;
/// once listening again they start empty, and every stream reader re-reads the log.
pub async fn listen_for_changes(core: std::sync::Arc<crate::Core>, url: String, shutdown: CancellationToken) {
    use crate::store::changes::CHANNEL;
    loop {
        let listening = async {
            let mut listener = sqlx::postgres::PgListener::connect(&url).await?;
            listener.listen_all([EVENTS_CHANNEL, CHANNEL]).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = match listening.await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN for other nodes' changes; caches stay off, retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        // A lost connection ends `try_recv` at once; a silent one (a peer gone without a
        // word) is found by the heartbeat.
        listener.eager_reconnect(false);
        core.set_caching(true);
        core.bus.notify_all();
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        heartbeat.tick().await;
        loop {
            let alive = tokio::select! {
                _ = shutdown.cancelled() => return,
                n = listener.try_recv() => match n {
                    Ok(Some(n)) if n.channel() == CHANNEL => { core.apply_change(n.payload()); true }
                    Ok(Some(n)) => { core.bus.notify(n.payload()); true }
                    Ok(None) | Err(_) => false,
                },
                _ = heartbeat.tick() => {
                    let ping = sqlx::query("SELECT 1").execute(&mut listener);
                    matches!(tokio::time::timeout(HEARTBEAT_TIMEOUT, ping).await, Ok(Ok(_)))
                }
            };
            if !alive {
                // What was committed meanwhile went unheard: nothing cached can be trusted.
                core.set_caching(false);
                tracing::warn!("lost the connection hearing other nodes' changes; caches off, reconnecting");
                break;
            }
        }
    }
}

/// How often the listener's connection proves it is alive, and how long it may take.
const HEARTBEAT: Duration = Duration::from_secs(5);
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(2);

/// The channel the event log's writers notify (`store::writer`).
const EVENTS_CHANNEL: &str = "sendmux_events";

/// Deletes every inbound message past its mailbox's retention, in batches. Returns how
/// many went.
pub async fn expire_messages(state: &Storage) -> anyhow::Result<usize> {
    const BATCH: i64 = 500;
    let mut total = 0;
    loop {
        let n = crate::inbound::expire_once(state, BATCH).await?;
        total += n;
        if (n as i64) < BATCH {
            break;
        }
    }
    if total > 0 {
        tracing::info!(removed = total, "expired inbound messages removed");
    }
    Ok(total)
}

/// SQLite: checkpoints the write-ahead log every `every` until `shutdown` (see
/// `Store::checkpoint`).
pub async fn checkpoint_loop(store: crate::store::Store, every: Duration, shutdown: CancellationToken) {
    loop {
        if let Err(e) = store.checkpoint().await {
            tracing::warn!(error = %e, "WAL checkpoint failed; will retry");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// Runs maintenance every `every` until `shutdown`.
pub async fn maintenance_loop(state: Storage, every: Duration, shutdown: CancellationToken) {
    loop {
        if let Err(e) = maintenance_once(&state).await {
            tracing::warn!(error = %format!("{e:#}"), "maintenance failed; will retry");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
