//! Outbound messages (the send queue), their delivery attempts, the suppression list and
//! idempotency keys of send requests.

use super::writer::Writer;
use super::{Backend, Conn, Store, Team};

#[derive(sqlx::FromRow, serde::Serialize, Debug, Clone)]
pub struct MessageRow {
    pub id: String,
    pub team_id: String,
    pub delivery_group_id: String,
    pub status: String,
    pub from_addr: String,
    pub recipients: String,
    pub subject: String,
    /// The validated request as JSON: rows queued before requests moved to the blob store.
    pub request: Option<String>,
    /// The blob key of the validated request as JSON.
    pub body_key: Option<String>,
    pub mime_message_id: String,
    pub provider_id: Option<String>,
    pub provider_message_id: Option<String>,
    pub last_error: Option<String>,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub locked_until: Option<i64>,
    pub expires_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// `thr_…` (SPEC §16).
    pub thread_id: Option<String>,
}

const MESSAGE_COLUMNS: &str = "id, team_id, delivery_group_id, status, from_addr, recipients, subject, request, \
     body_key, mime_message_id, provider_id, provider_message_id, last_error, attempts, next_attempt_at, locked_until, \
     expires_at, created_at, updated_at, thread_id";

pub async fn insert_messages(w: &mut impl Writer, rows: &[&MessageRow]) -> anyhow::Result<()> {
    w.insert_rows("outbound_messages", MESSAGE_COLUMNS, rows, "").await.map(|_| ())
}

/// The request body keys starting with `prefix` (one blob segment's) of messages with
/// an id at or after `since_id` (see `inbound::blob_keys_with_prefix`).
pub async fn body_keys_with_prefix(conn: &mut Conn, since_id: &str, prefix: &str) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT body_key FROM outbound_messages WHERE id >= $1 AND body_key IS NOT NULL \
         AND substr(body_key, 1, length($2)) = $2",
    )
    .bind(since_id)
    .bind(prefix)
    .fetch_all(conn)
    .await
}

/// A message of the team; with `group`, only when it was sent through that group.
pub async fn get_message(t: &mut Team<'_>, id: &str, group: Option<&str>) -> sqlx::Result<Option<MessageRow>> {
    let (conn, team_id) = t.split();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {MESSAGE_COLUMNS} FROM outbound_messages WHERE team_id = $1 AND id = $2 \
         AND ($3 IS NULL OR delivery_group_id = $3)"
    )))
    .bind(team_id)
    .bind(id)
    .bind(group)
    .fetch_optional(conn)
    .await
}

/// The team's message a provider knows as `provider_message_id`.
pub async fn by_provider_message_id(t: &mut Team<'_>, provider_message_id: &str) -> sqlx::Result<Option<MessageRow>> {
    let (conn, team_id) = t.split();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {MESSAGE_COLUMNS} FROM outbound_messages WHERE team_id = $1 AND provider_message_id = $2"
    )))
    .bind(team_id)
    .bind(provider_message_id)
    .fetch_optional(conn)
    .await
}

/// Claims up to `limit` due messages for one worker until `lease_until`: each claim adds
/// one to `attempts`, which the worker's final write checks (a fencing token), so a
/// worker whose lease ran out cannot overwrite the next one's result. PostgreSQL skips
/// rows other nodes are claiming; SQLite's single UPDATE is atomic under its write lock.
pub async fn claim(store: &Store, now: i64, lease_until: i64, limit: i64) -> sqlx::Result<Vec<MessageRow>> {
    // A read first: a claim is a write, and takes a turn at writing, even when it
    // finds nothing.
    let due: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM outbound_messages WHERE status IN ('queued', 'sending', 'deferred') \
         AND next_attempt_at <= $1 AND (locked_until IS NULL OR locked_until < $1) LIMIT 1",
    )
    .bind(now)
    .fetch_optional(store.pool())
    .await?;
    if due.is_none() {
        return Ok(Vec::new());
    }
    let lock = match store.backend() {
        Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE outbound_messages SET status = 'sending', locked_until = $1, attempts = attempts + 1, updated_at = $2 \
         WHERE id IN (SELECT id FROM outbound_messages WHERE status IN ('queued', 'sending', 'deferred') \
           AND next_attempt_at <= $2 AND (locked_until IS NULL OR locked_until < $2) \
           ORDER BY next_attempt_at LIMIT $3 {lock}) \
         RETURNING {MESSAGE_COLUMNS}"
    )))
    .bind(lease_until)
    .bind(now)
    .bind(limit)
    .fetch_all(&mut *store.write_conn().await?)
    .await
}

/// The result of an attempt; false when the claim was lost (another worker owns it).
#[allow(clippy::too_many_arguments)]
pub async fn finish(
    t: &mut Team<'_>,
    id: &str,
    claimed_attempts: i64,
    status: &str,
    provider_id: Option<&str>,
    provider_message_id: Option<&str>,
    last_error: Option<&str>,
    next_attempt_at: i64,
    now: i64,
) -> sqlx::Result<bool> {
    let (conn, team_id) = t.split();
    let done = sqlx::query(
        "UPDATE outbound_messages SET status = $4, provider_id = COALESCE($5, provider_id), \
         provider_message_id = COALESCE($6, provider_message_id), last_error = $7, next_attempt_at = $8, \
         locked_until = NULL, updated_at = $9 WHERE team_id = $1 AND id = $2 AND attempts = $3 AND status = 'sending'",
    )
    .bind(team_id)
    .bind(id)
    .bind(claimed_attempts)
    .bind(status)
    .bind(provider_id)
    .bind(provider_message_id)
    .bind(last_error)
    .bind(next_attempt_at)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Sets the status of a message that has left the queue (notifications from SES).
pub async fn set_status(t: &mut Team<'_>, id: &str, status: &str, now: i64) -> sqlx::Result<()> {
    let (conn, team_id) = t.split();
    sqlx::query("UPDATE outbound_messages SET status = $3, updated_at = $4 WHERE team_id = $1 AND id = $2")
        .bind(team_id)
        .bind(id)
        .bind(status)
        .bind(now)
        .execute(conn)
        .await
        .map(|_| ())
}

#[derive(sqlx::FromRow, serde::Serialize, Debug, Clone)]
pub struct AttemptRow {
    pub id: String,
    pub team_id: String,
    pub message_id: String,
    pub delivery_group_id: String,
    pub provider_id: String,
    pub provider_type: String,
    pub outcome: String,
    pub response: String,
    pub duration_ms: i64,
    pub created_at: i64,
}

const ATTEMPT_COLUMNS: &str = "id, team_id, message_id, delivery_group_id, provider_id, provider_type, outcome, response, duration_ms, created_at";

pub async fn insert_attempts(w: &mut impl Writer, attempts: &[&AttemptRow]) -> anyhow::Result<()> {
    w.insert_rows("outbound_attempts", ATTEMPT_COLUMNS, attempts, "").await.map(|_| ())
}

pub async fn attempts_of(t: &mut Team<'_>, message_id: &str) -> sqlx::Result<Vec<AttemptRow>> {
    let (conn, team_id) = t.split();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ATTEMPT_COLUMNS} FROM outbound_attempts WHERE team_id = $1 AND message_id = $2 ORDER BY id"
    )))
    .bind(team_id)
    .bind(message_id)
    .fetch_all(conn)
    .await
}

/// The delivery log: attempts newest first.
pub async fn list_attempts(t: &mut Team<'_>, before: Option<&str>, limit: i64) -> sqlx::Result<Vec<AttemptRow>> {
    let (conn, team_id) = t.split();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ATTEMPT_COLUMNS} FROM outbound_attempts WHERE team_id = $1 AND ($2 IS NULL OR id < $2) \
         ORDER BY id DESC LIMIT $3"
    )))
    .bind(team_id)
    .bind(before)
    .bind(limit)
    .fetch_all(conn)
    .await
}

#[derive(sqlx::FromRow, Debug, Clone)]
pub struct SuppressionRow {
    pub team_id: String,
    pub address: String,
    pub reason: String,
    pub message_id: Option<String>,
    pub detail: Option<String>,
    pub created_at: i64,
}

/// Which of `addresses` (lower-case) are on the team's suppression list.
pub async fn suppressed_among(t: &mut Team<'_>, addresses: &[String]) -> sqlx::Result<Vec<String>> {
    let (conn, team_id) = t.split();
    if addresses.is_empty() {
        return Ok(Vec::new());
    }
    let marks: Vec<String> = (0..addresses.len()).map(|i| format!("${}", i + 2)).collect();
    let sql = format!("SELECT address FROM suppressions WHERE team_id = $1 AND address IN ({})", marks.join(", "));
    let mut q = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(team_id);
    for a in addresses {
        q = q.bind(a);
    }
    q.fetch_all(conn).await
}

pub async fn suppress(
    t: &mut Team<'_>,
    address: &str,
    reason: &str,
    message_id: Option<&str>,
    detail: &str,
    now: i64,
) -> sqlx::Result<bool> {
    let (conn, team_id) = t.split();
    let done = sqlx::query(
        "INSERT INTO suppressions (team_id, address, reason, message_id, detail, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (team_id, address) DO NOTHING",
    )
    .bind(team_id)
    .bind(address.to_ascii_lowercase())
    .bind(reason)
    .bind(message_id)
    .bind(detail)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The suppression list in address order, after the address `after`.
pub async fn list_suppressions(t: &mut Team<'_>, after: Option<&str>, limit: i64) -> sqlx::Result<Vec<SuppressionRow>> {
    let (conn, team_id) = t.split();
    sqlx::query_as(
        "SELECT team_id, address, reason, message_id, detail, created_at FROM suppressions \
         WHERE team_id = $1 AND ($2 IS NULL OR address > $2) ORDER BY address LIMIT $3",
    )
    .bind(team_id)
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await
}

pub async fn delete_suppression(t: &mut Team<'_>, address: &str) -> sqlx::Result<bool> {
    let (conn, team_id) = t.split();
    let done = sqlx::query("DELETE FROM suppressions WHERE team_id = $1 AND address = $2")
        .bind(team_id)
        .bind(address.to_ascii_lowercase())
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Drops idempotency keys older than `cutoff` (maintenance).
pub async fn idempotency_expire(conn: &mut Conn, cutoff: i64) -> sqlx::Result<u64> {
    Ok(sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
        .bind(cutoff)
        .execute(conn)
        .await?
        .rows_affected())
}

/// The message the operator's managed SES knows as `provider_message_id`, whichever
/// team sent it: the one lookup without a team id, for the managed route's notification
/// endpoint (which the instance key authenticates), where the team is not known upfront.
pub async fn managed_by_provider_message_id(
    conn: &mut Conn,
    provider_message_id: &str,
) -> sqlx::Result<Option<MessageRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {MESSAGE_COLUMNS} FROM outbound_messages WHERE provider_id = 'managed' AND provider_message_id = $1"
    )))
    .bind(provider_message_id)
    .fetch_optional(conn)
    .await
}
