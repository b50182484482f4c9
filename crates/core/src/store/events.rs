//! The event log: events written in the transaction of what caused them, read back in
//! log order. A reader that resumes after an event never skips one that commits later:
//! appends of one team are serialised until commit (SQLite: the database write lock;
//! PostgreSQL: a transaction-scoped advisory lock per team), so `seq` order is commit
//! order within a team, and every reader reads within one team.

use super::writer::Writer;
use super::{Conn, Team, now_ms};
use crate::ids::EventId;

#[derive(sqlx::FromRow, Debug, Clone)]
pub struct EventRow {
    pub seq: i64,
    pub id: String,
    pub team_id: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub mailbox_id: Option<String>,
    pub delivery_group_id: Option<String>,
    pub message_id: Option<String>,
    pub payload: String,
    pub created_at: i64,
}

const COLUMNS: &str = "seq, id, team_id, type, mailbox_id, delivery_group_id, message_id, payload, created_at";

/// What an event is about, besides its type and data.
#[derive(Debug, Default, Clone)]
pub struct Subject<'a> {
    pub mailbox_id: Option<&'a str>,
    pub delivery_group_id: Option<&'a str>,
    pub message_id: Option<&'a str>,
}

/// Appends an event to the team's log inside the writer's transaction; commit order
/// is log order. `data` becomes the event's `data`; the stored payload is the exact
/// JSON sent to webhooks and streams: `{"id", "type", "created_at", "data"}`.
pub async fn append(
    w: &mut impl Writer,
    team_id: &str,
    kind: &str,
    subject: Subject<'_>,
    data: serde_json::Value,
) -> anyhow::Result<NewEvent> {
    let event = NewEvent::new(team_id, kind, subject, data);
    append_many(w, std::slice::from_ref(&event)).await?;
    Ok(event)
}

pub async fn get(t: &mut Team<'_>, id: &str) -> sqlx::Result<Option<EventRow>> {
    let (conn, team_id) = t.split();
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM events WHERE team_id = $1 AND id = $2")))
        .bind(team_id)
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Newest first, for the events list: before the event `before_seq`, optionally of one type.
pub async fn list(
    t: &mut Team<'_>,
    kind: Option<&str>,
    before_seq: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<EventRow>> {
    let (conn, team_id) = t.split();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM events WHERE team_id = $1 AND ($2 IS NULL OR type = $2) \
         AND ($3 IS NULL OR seq < $3) ORDER BY seq DESC LIMIT $4"
    )))
    .bind(team_id)
    .bind(kind)
    .bind(before_seq)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Oldest first after `after_seq`, for resuming readers (streams), optionally of one mailbox.
pub async fn after(
    t: &mut Team<'_>,
    mailbox_id: Option<&str>,
    after_seq: i64,
    limit: i64,
) -> sqlx::Result<Vec<EventRow>> {
    let (conn, team_id) = t.split();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM events WHERE team_id = $1 AND ($2 IS NULL OR mailbox_id = $2) AND seq > $3 \
         ORDER BY seq LIMIT $4"
    )))
    .bind(team_id)
    .bind(mailbox_id)
    .bind(after_seq)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// The position to resume after `event_id`: its own, or — when it has left the log —
/// the last position created no later than the time its id encodes. None when the id
/// is from the future or malformed.
pub async fn resume_position(t: &mut Team<'_>, event_id: &str) -> sqlx::Result<Option<i64>> {
    let (conn, team_id) = t.split();
    if let Some(seq) = sqlx::query_scalar::<_, i64>("SELECT seq FROM events WHERE team_id = $1 AND id = $2")
        .bind(team_id)
        .bind(event_id)
        .fetch_optional(&mut *conn)
        .await?
    {
        return Ok(Some(seq));
    }
    let Some(at) =
        event_id.strip_prefix("evt_").and_then(|u| ulid::Ulid::from_string(u).ok()).map(|u| u.timestamp_ms() as i64)
    else {
        return Ok(None);
    };
    if at > now_ms() {
        return Ok(None);
    }
    let seq: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM events WHERE team_id = $1 AND created_at <= $2")
        .bind(team_id)
        .bind(at)
        .fetch_one(conn)
        .await?;
    Ok(Some(seq.unwrap_or(0)))
}

/// The team's newest position (0 for an empty log): where a live-only reader starts.
pub async fn head(t: &mut Team<'_>) -> sqlx::Result<i64> {
    let (conn, team_id) = t.split();
    let seq: Option<i64> =
        sqlx::query_scalar("SELECT MAX(seq) FROM events WHERE team_id = $1").bind(team_id).fetch_one(conn).await?;
    Ok(seq.unwrap_or(0))
}

/// Deletes events older than `cutoff` (ms); returns how many went.
pub async fn delete_older_than(conn: &mut Conn, cutoff: i64) -> sqlx::Result<u64> {
    // By position rather than by a `created_at` index, which every append would have to
    // maintain: everything before the oldest event still inside the window. Finding it
    // walks the log from its start, through exactly the rows about to go.
    Ok(sqlx::query(
        "DELETE FROM events WHERE seq < COALESCE( \
             (SELECT seq FROM events WHERE created_at >= $1 ORDER BY seq LIMIT 1), \
             (SELECT MAX(seq) + 1 FROM events))",
    )
    .bind(cutoff)
    .execute(conn)
    .await?
    .rows_affected())
}

/// An event ready for the log: its id, time and payload are fixed when it is made —
/// for accepted mail on the task of the request that caused it — so a group commit
/// only copies them. Serialised, it is its row in `events`.
#[derive(serde::Serialize, Debug, Clone)]
pub struct NewEvent {
    pub id: String,
    pub team_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub mailbox_id: Option<String>,
    pub delivery_group_id: Option<String>,
    pub message_id: Option<String>,
    /// The exact JSON delivered to webhooks and streams.
    pub payload: String,
    pub created_at: i64,
}

/// The columns of `events` a [`NewEvent`] fills, in field order.
const INSERT_COLUMNS: &str = "id, team_id, type, mailbox_id, delivery_group_id, message_id, payload, created_at";

impl NewEvent {
    /// An event of `kind` for `team_id` with `data` as its `data`; the payload is
    /// `{"created_at", "data", "id", "type"}`.
    pub fn new(team_id: &str, kind: &str, subject: Subject<'_>, data: impl serde::Serialize) -> Self {
        #[derive(serde::Serialize)]
        struct Payload<'a, D> {
            created_at: &'a str,
            data: D,
            id: &'a str,
            #[serde(rename = "type")]
            kind: &'a str,
        }
        let id = EventId::new().into_string();
        let created_at = now_ms();
        let payload = Payload { created_at: &super::rfc3339(created_at), data, id: &id, kind };
        // Strings, numbers and maps with string keys: serialising cannot fail.
        let payload = serde_json::to_string(&payload).unwrap_or_else(|_| "{}".to_owned());
        NewEvent {
            id,
            team_id: team_id.to_owned(),
            kind: kind.to_owned(),
            mailbox_id: subject.mailbox_id.map(str::to_owned),
            delivery_group_id: subject.delivery_group_id.map(str::to_owned),
            message_id: subject.message_id.map(str::to_owned),
            payload,
            created_at,
        }
    }
}

/// Appends `events` to their teams' logs inside the writer's transaction, in the order
/// given, with one statement for the events and one for their webhook deliveries;
/// returns how many deliveries it queued (the webhook worker need only be woken for
/// those, see `Bus::notify_readers`).
///
/// On PostgreSQL a team's appends are serialised from its lock to the commit (see the
/// module's comment), so the lock comes as late as it can: the deliveries go first (they
/// need no position in the log), then the locks — one statement a team, in team-id
/// order so writers of several teams cannot deadlock on them — then the events. A
/// caller that writes more after this holds the lock longer: the group committers
/// append last, so the next batch of the same team waits only for this one's events
/// insert and commit, while everything before overlaps.
pub async fn append_many<E>(w: &mut impl Writer, events: &[E]) -> anyhow::Result<usize>
where
    E: std::borrow::Borrow<NewEvent> + serde::Serialize,
{
    let mut teams: Vec<&str> = events.iter().map(|e| e.borrow().team_id.as_str()).collect();
    if teams.is_empty() {
        return Ok(0);
    }
    teams.sort_unstable();
    teams.dedup();
    // The transactional outbox: deliveries commit with their events, or neither does.
    let mut deliveries = Vec::new();
    for team in &teams {
        let hooks = w.subscribers(team).await?;
        for e in events.iter().map(|e| e.borrow()).filter(|e| e.team_id == *team) {
            for hook in hooks.iter().filter(|h| h.wants(&e.kind, e.mailbox_id.as_deref())) {
                deliveries.push(super::webhooks::new_delivery(team, &hook.id, &e.id, &e.kind, &e.payload));
            }
        }
    }
    super::webhooks::enqueue_many(w, &deliveries).await?;
    for team in &teams {
        w.lock_log(team).await?;
    }
    w.insert_rows("events", INSERT_COLUMNS, events, "").await?;
    Ok(deliveries.len())
}
