//! Event types (API.md §7), the retention of the event log, listing it, and the
//! in-process bus that wakes readers (streams, the webhook worker) when a team's log
//! grows. The bus only says "look again": the event log stays the truth, so a lost
//! wake-up delays a reader until its next poll and never loses an event.

use parking_lot::Mutex;
use std::collections::HashMap;
use tokio::sync::{Notify, watch};

use crate::Core;
use crate::auth::Principal;
use crate::auth::perms::Perm;
use crate::error::{Error, Result};
use crate::store::TeamScope;
use crate::store::events::{self as q, EventRow};

/// Every event type a team can receive.
pub const EVENT_TYPES: [&str; 11] = [
    "message.received",
    "message.received.spam",
    "message.queued",
    "message.sent",
    "message.delivered",
    "message.deferred",
    "message.bounced",
    "message.failed",
    "message.suppressed",
    // Team events (no mailbox): a team domain's DNS records started or stopped matching.
    "domain.verified",
    "domain.failed",
];

/// Events are kept this long (API.md §7), then removed by the maintenance job.
pub const RETENTION_MS: i64 = 7 * 24 * 3_600_000;

pub fn is_event_type(s: &str) -> bool {
    EVENT_TYPES.contains(&s)
}

/// Refuses a caller who may not read the event log (it needs `logs.read` or
/// `webhooks.manage`) and an unknown event type: the checks of [`list`], for a surface
/// to make before it reads the rest of the request.
pub fn may_list(caller: &Principal, kind: Option<&str>) -> Result<()> {
    if !(caller.perms.has(Perm::LogsRead) || caller.perms.has(Perm::WebhooksRead)) {
        return Err(Error::forbidden("Reading events needs `logs.read` or `webhooks.manage`"));
    }
    if let Some(kind) = kind
        && !is_event_type(kind)
    {
        return Err(Error::malformed(format!("Unknown event type `{}`", crate::validate::truncate(kind, 40)))
            .with_param("type"));
    }
    Ok(())
}

/// A page of the team's events, newest first (in commit order), optionally of one type,
/// before the event `before`, which must be one of the team's.
pub async fn list(
    core: &Core,
    caller: &Principal,
    kind: Option<&str>,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<EventRow>> {
    may_list(caller, kind)?;
    let mut conn = core.store.pool().acquire().await?;
    let before = match before {
        None => None,
        Some(id) => Some(
            q::get(&mut conn.team(&caller.team_id), id)
                .await?
                .ok_or_else(|| Error::malformed("cursor is not a cursor of this list").with_param("cursor"))?
                .seq,
        ),
    };
    Ok(q::list(&mut conn.team(&caller.team_id), kind, before, limit).await?)
}

/// Wake-ups per team for streams, and one for the webhook worker. On SQLite the
/// committing request rings it; on PostgreSQL every node's `LISTEN` task does, so an
/// event committed on one node wakes readers on all of them.
#[derive(Default)]
pub struct Bus {
    teams: Mutex<HashMap<String, watch::Sender<u64>>>,
    pub deliveries: Notify,
}

impl Bus {
    pub fn subscribe(&self, team_id: &str) -> watch::Receiver<u64> {
        let mut teams = self.teams.lock();
        teams.entry(team_id.to_owned()).or_insert_with(|| watch::channel(0).0).subscribe()
    }

    /// The team's log may have grown and webhook deliveries may be due: wake its
    /// readers and the webhook worker.
    pub fn notify(&self, team_id: &str) {
        self.notify_readers(team_id);
        self.deliveries.notify_one();
    }

    /// The team's log grew and no delivery was queued with it (the writer knows): wake
    /// its readers only. The group committers commit hundreds of times a second, and a
    /// webhook worker woken by each would look for due deliveries just as often.
    pub fn notify_readers(&self, team_id: &str) {
        let mut teams = self.teams.lock();
        if let Some(tx) = teams.get(team_id) {
            if tx.receiver_count() == 0 {
                teams.remove(team_id);
            } else {
                tx.send_modify(|n| *n = n.wrapping_add(1));
            }
        }
    }

    /// A batch committed events for `teams` (repeats allowed) and queued `deliveries`
    /// webhook deliveries with them: wakes each team's readers once, and the webhook
    /// worker only if it has work.
    pub fn committed<'a>(&self, teams: impl Iterator<Item = &'a str>, deliveries: usize) {
        let mut teams: Vec<&str> = teams.collect();
        teams.sort_unstable();
        teams.dedup();
        for team in teams {
            self.notify_readers(team);
        }
        if deliveries > 0 {
            self.deliveries.notify_one();
        }
    }

    /// Wake every reader (after a lost connection to the notification source).
    pub fn notify_all(&self) {
        let teams = self.teams.lock();
        for tx in teams.values() {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
        self.deliveries.notify_one();
    }
}

/// The position of the team's newest event: a live reader starts [`after`] it.
pub async fn head(core: &Core, caller: &Principal) -> Result<i64> {
    may_list(caller, None)?;
    let mut conn = core.store.pool().acquire().await?;
    Ok(q::head(&mut conn.team(&caller.team_id)).await?)
}

/// Up to `limit` of the team's events after position `after`, oldest first: a live
/// feed follows the log with it (each row's `seq` is the next position).
pub async fn after(core: &Core, caller: &Principal, after: i64, limit: i64) -> Result<Vec<EventRow>> {
    may_list(caller, None)?;
    let mut conn = core.store.pool().acquire().await?;
    Ok(q::after(&mut conn.team(&caller.team_id), None, after, limit).await?)
}
