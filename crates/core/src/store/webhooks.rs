//! Webhook endpoints, their sealed secrets, the delivery queue and its attempts.

use super::{Backend, Conn, Team, now_ms};
use crate::ids::{AttemptId, DeliveryId, WebhookSecretId};

#[derive(sqlx::FromRow, Debug, Clone)]
pub struct WebhookRow {
    pub id: String,
    pub team_id: String,
    pub url: String,
    pub description: Option<String>,
    pub event_types: String,
    pub mailbox_ids: Option<String>,
    pub enabled: i64,
    pub disabled_reason: Option<String>,
    pub failing_since: Option<i64>,
    pub last_success_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

pub use super::writer::Subscriber;

const COLUMNS: &str = "id, team_id, url, description, event_types, mailbox_ids, enabled, disabled_reason, \
                       failing_since, last_success_at, created_at, updated_at";

pub async fn insert(conn: &mut Conn, w: &WebhookRow, sealed_secret: &str) -> sqlx::Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO webhooks ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    )))
    .bind(&w.id)
    .bind(&w.team_id)
    .bind(&w.url)
    .bind(w.description.as_deref())
    .bind(&w.event_types)
    .bind(w.mailbox_ids.as_deref())
    .bind(w.enabled)
    .bind(w.disabled_reason.as_deref())
    .bind(w.failing_since)
    .bind(w.last_success_at)
    .bind(w.created_at)
    .bind(w.updated_at)
    .execute(&mut *conn)
    .await?;
    add_secret(conn, &w.id, sealed_secret).await
}

pub async fn update(conn: &mut Conn, w: &WebhookRow) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE webhooks SET url = $3, description = $4, event_types = $5, mailbox_ids = $6, enabled = $7, \
         disabled_reason = $8, failing_since = $9, updated_at = $10 WHERE team_id = $1 AND id = $2",
    )
    .bind(&w.team_id)
    .bind(&w.id)
    .bind(&w.url)
    .bind(w.description.as_deref())
    .bind(&w.event_types)
    .bind(w.mailbox_ids.as_deref())
    .bind(w.enabled)
    .bind(w.disabled_reason.as_deref())
    .bind(w.failing_since)
    .bind(w.updated_at)
    .execute(conn)
    .await
    .map(|_| ())
}

pub async fn get(t: &mut Team<'_>, id: &str) -> sqlx::Result<Option<WebhookRow>> {
    let (conn, team_id) = t.split();
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM webhooks WHERE team_id = $1 AND id = $2")))
        .bind(team_id)
        .bind(id)
        .fetch_optional(conn)
        .await
}

pub async fn list(t: &mut Team<'_>, before: Option<&str>, limit: i64) -> sqlx::Result<Vec<WebhookRow>> {
    let (conn, team_id) = t.split();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM webhooks WHERE team_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
    )))
    .bind(team_id)
    .bind(before)
    .bind(limit)
    .fetch_all(conn)
    .await
}

pub async fn count(t: &mut Team<'_>) -> sqlx::Result<i64> {
    let (conn, team_id) = t.split();
    sqlx::query_scalar("SELECT COUNT(*) FROM webhooks WHERE team_id = $1").bind(team_id).fetch_one(conn).await
}

pub async fn delete(t: &mut Team<'_>, id: &str) -> sqlx::Result<bool> {
    let (conn, team_id) = t.split();
    let done =
        sqlx::query("DELETE FROM webhooks WHERE team_id = $1 AND id = $2").bind(team_id).bind(id).execute(conn).await?;
    Ok(done.rows_affected() == 1)
}

pub async fn add_secret(conn: &mut Conn, webhook_id: &str, sealed: &str) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO webhook_secrets (id, webhook_id, sealed, created_at) VALUES ($1, $2, $3, $4)")
        .bind(WebhookSecretId::new().into_string())
        .bind(webhook_id)
        .bind(sealed)
        .bind(now_ms())
        .execute(conn)
        .await
        .map(|_| ())
}

/// Ends every current secret of the webhook at `valid_until` (keeping earlier ends).
pub async fn expire_secrets(conn: &mut Conn, webhook_id: &str, valid_until: i64) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE webhook_secrets SET valid_until = $2 WHERE webhook_id = $1 AND (valid_until IS NULL OR valid_until > $2)",
    )
    .bind(webhook_id)
    .bind(valid_until)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM webhook_secrets WHERE webhook_id = $1 AND valid_until <= $2")
        .bind(webhook_id)
        .bind(now_ms())
        .execute(conn)
        .await
        .map(|_| ())
}

/// The sealed secrets valid at `now`, newest first.
pub async fn valid_secrets(conn: &mut Conn, webhook_id: &str, now: i64) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT sealed FROM webhook_secrets WHERE webhook_id = $1 AND (valid_until IS NULL OR valid_until > $2) \
         ORDER BY created_at DESC, id DESC",
    )
    .bind(webhook_id)
    .bind(now)
    .fetch_all(conn)
    .await
}

#[derive(sqlx::FromRow, serde::Serialize, Debug, Clone)]
pub struct DeliveryRow {
    pub id: String,
    pub team_id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    pub payload: Option<String>,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

const DELIVERY_COLUMNS: &str =
    "id, team_id, webhook_id, event_id, event_type, payload, status, attempts, next_attempt_at, created_at, updated_at";

/// A delivery of `payload` to the webhook, due now, for [`enqueue_many`].
pub fn new_delivery(team_id: &str, webhook_id: &str, event_id: &str, event_type: &str, payload: &str) -> DeliveryRow {
    let now = now_ms();
    DeliveryRow {
        id: DeliveryId::new().into_string(),
        team_id: team_id.to_owned(),
        webhook_id: webhook_id.to_owned(),
        event_id: event_id.to_owned(),
        event_type: event_type.to_owned(),
        payload: Some(payload.to_owned()),
        status: "pending".to_owned(),
        attempts: 0,
        next_attempt_at: Some(now),
        created_at: now,
        updated_at: now,
    }
}

/// Queues the deliveries made by [`new_delivery`].
pub async fn enqueue_many(w: &mut impl super::writer::Writer, rows: &[DeliveryRow]) -> anyhow::Result<()> {
    w.insert_rows("webhook_deliveries", DELIVERY_COLUMNS, rows, "").await.map(|_| ())
}

/// Queues a delivery of `payload` to the webhook, due now.
pub async fn enqueue(
    t: &mut Team<'_>,
    webhook_id: &str,
    event_id: &str,
    event_type: &str,
    payload: &str,
) -> sqlx::Result<DeliveryRow> {
    let (conn, team_id) = t.split();
    let row = new_delivery(team_id, webhook_id, event_id, event_type, payload);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO webhook_deliveries ({DELIVERY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    )))
    .bind(&row.id)
    .bind(&row.team_id)
    .bind(&row.webhook_id)
    .bind(&row.event_id)
    .bind(&row.event_type)
    .bind(row.payload.as_deref())
    .bind(&row.status)
    .bind(row.attempts)
    .bind(row.next_attempt_at)
    .bind(row.created_at)
    .bind(row.updated_at)
    .execute(conn)
    .await?;
    Ok(row)
}

/// A delivery claimed for one attempt, with what sending it needs.
#[derive(sqlx::FromRow, Debug, Clone)]
pub struct Claimed {
    pub id: String,
    pub team_id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    pub payload: Option<String>,
    pub attempts: i64,
    pub created_at: i64,
    pub lease: String,
}

/// Whether any delivery is due: a read, so a worker with nothing to do takes no turn
/// at writing (a claim is a write even when it finds nothing).
pub async fn any_due(conn: &mut Conn, now: i64) -> sqlx::Result<bool> {
    let due: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $1 \
         AND (locked_until IS NULL OR locked_until < $1) LIMIT 1",
    )
    .bind(now)
    .fetch_optional(conn)
    .await?;
    Ok(due.is_some())
}

/// Claims up to `limit` due deliveries for `lease_ms`. Another worker (on any node)
/// skips them until the lease ends; a worker that dies releases them by expiry.
pub async fn claim_due(
    conn: &mut Conn,
    backend: Backend,
    now: i64,
    lease_ms: i64,
    limit: i64,
) -> sqlx::Result<Vec<Claimed>> {
    let lease = ulid::Ulid::new().to_string();
    let skip_locked = if backend == Backend::Postgres { "FOR UPDATE SKIP LOCKED" } else { "" };
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE webhook_deliveries SET locked_until = $2, lease = $3 WHERE id IN (\
           SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $1 \
           AND (locked_until IS NULL OR locked_until < $1) ORDER BY next_attempt_at LIMIT $4 {skip_locked}) \
         RETURNING id, team_id, webhook_id, event_id, event_type, payload, attempts, created_at, lease"
    )))
    .bind(now)
    .bind(now + lease_ms)
    .bind(&lease)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// What one attempt found.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub attempted_at: i64,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub response: Option<String>,
    /// pending (retry at `next_attempt_at`), succeeded or failed.
    pub status: &'static str,
    pub next_attempt_at: Option<i64>,
}

/// Records a batch of attempts, each under the lease that claimed it, in two statements
/// whatever the batch's size: the deliveries whose lease still holds are updated (one `UPDATE … FROM` a JSON array),
/// and their attempts inserted (one `INSERT … SELECT` from it). Returns, in order,
/// whether each was recorded: false when the lease was lost (it expired and another
/// worker took the delivery), in which case nothing of it is written.
pub async fn record_attempts(
    conn: &mut Conn,
    backend: Backend,
    items: &[(&Claimed, &Outcome)],
) -> sqlx::Result<Vec<bool>> {
    #[derive(serde::Serialize)]
    struct Update<'a> {
        id: &'a str,
        lease: &'a str,
        status: &'a str,
        next_attempt_at: Option<i64>,
        updated_at: i64,
    }
    #[derive(serde::Serialize)]
    struct Attempt<'a> {
        id: String,
        delivery_id: &'a str,
        attempted_at: i64,
        status_code: Option<i64>,
        latency_ms: i64,
        error: Option<&'a str>,
        response: Option<&'a str>,
    }
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let updates: Vec<Update> = items
        .iter()
        .map(|(c, o)| Update {
            id: &c.id,
            lease: &c.lease,
            status: o.status,
            next_attempt_at: o.next_attempt_at,
            updated_at: o.attempted_at,
        })
        .collect();
    let rows = match backend {
        Backend::Postgres => {
            "FROM json_to_recordset($1::json) AS r(id TEXT, lease TEXT, status TEXT, next_attempt_at BIGINT, updated_at BIGINT)"
        }
        Backend::Sqlite => {
            "FROM (SELECT value ->> 'id' AS id, value ->> 'lease' AS lease, value ->> 'status' AS status, \
             value ->> 'next_attempt_at' AS next_attempt_at, value ->> 'updated_at' AS updated_at FROM json_each($1)) AS r"
        }
    };
    let json = serde_json::to_string(&updates).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let recorded: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "UPDATE webhook_deliveries SET status = r.status, attempts = webhook_deliveries.attempts + 1, \
         next_attempt_at = r.next_attempt_at, locked_until = NULL, lease = NULL, updated_at = r.updated_at \
         {rows} WHERE webhook_deliveries.id = r.id AND webhook_deliveries.lease = r.lease \
         RETURNING webhook_deliveries.id"
    )))
    .bind(json)
    .fetch_all(&mut *conn)
    .await?;
    let recorded: std::collections::HashSet<String> = recorded.into_iter().collect();
    let attempts: Vec<Attempt> = items
        .iter()
        .filter(|(c, _)| recorded.contains(&c.id))
        .map(|(c, o)| Attempt {
            id: AttemptId::new().into_string(),
            delivery_id: &c.id,
            attempted_at: o.attempted_at,
            status_code: o.status_code,
            latency_ms: o.latency_ms,
            error: o.error.as_deref(),
            response: o.response.as_deref(),
        })
        .collect();
    if !attempts.is_empty() {
        let json = serde_json::to_string(&attempts).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        super::insert_json(
            conn,
            backend,
            "webhook_attempts",
            "id, delivery_id, attempted_at, status_code, latency_ms, error, response",
            json,
            "",
        )
        .await?;
    }
    Ok(items.iter().map(|(c, _)| recorded.contains(&c.id)).collect())
}

/// Marks the endpoint healthy after a success.
pub async fn mark_success(conn: &mut Conn, webhook_id: &str, at: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE webhooks SET failing_since = NULL, last_success_at = $2 WHERE id = $1")
        .bind(webhook_id)
        .bind(at)
        .execute(conn)
        .await
        .map(|_| ())
}

/// Notes a failure; returns when the current run of failures began.
pub async fn mark_failure(conn: &mut Conn, webhook_id: &str, at: i64) -> sqlx::Result<Option<i64>> {
    sqlx::query("UPDATE webhooks SET failing_since = $2 WHERE id = $1 AND failing_since IS NULL")
        .bind(webhook_id)
        .bind(at)
        .execute(&mut *conn)
        .await?;
    sqlx::query_scalar("SELECT failing_since FROM webhooks WHERE id = $1")
        .bind(webhook_id)
        .fetch_optional(conn)
        .await
        .map(Option::flatten)
}

pub async fn disable(conn: &mut Conn, webhook_id: &str, reason: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE webhooks SET enabled = 0, disabled_reason = $2, updated_at = $3 WHERE id = $1")
        .bind(webhook_id)
        .bind(reason)
        .bind(now_ms())
        .execute(&mut *conn)
        .await?;
    // Nothing more goes to a disabled endpoint; what was waiting fails with the reason.
    sqlx::query("UPDATE webhook_deliveries SET status = 'failed', next_attempt_at = NULL, updated_at = $2 WHERE webhook_id = $1 AND status = 'pending'")
        .bind(webhook_id)
        .bind(now_ms())
        .execute(conn)
        .await
        .map(|_| ())
}

pub async fn get_delivery(t: &mut Team<'_>, webhook_id: &str, id: &str) -> sqlx::Result<Option<DeliveryRow>> {
    let (conn, team_id) = t.split();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE team_id = $1 AND webhook_id = $2 AND id = $3"
    )))
    .bind(team_id)
    .bind(webhook_id)
    .bind(id)
    .fetch_optional(conn)
    .await
}

pub async fn list_deliveries(
    t: &mut Team<'_>,
    webhook_id: &str,
    status: Option<&str>,
    before: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<DeliveryRow>> {
    let (conn, team_id) = t.split();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE team_id = $1 AND webhook_id = $2 \
         AND ($3 IS NULL OR status = $3) AND ($4 IS NULL OR id < $4) ORDER BY id DESC LIMIT $5"
    )))
    .bind(team_id)
    .bind(webhook_id)
    .bind(status)
    .bind(before)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Deliveries created in `[since, until)`, oldest first.
pub async fn deliveries_between(
    t: &mut Team<'_>,
    webhook_id: &str,
    since: i64,
    until: i64,
    only_failed: bool,
) -> sqlx::Result<Vec<DeliveryRow>> {
    let (conn, team_id) = t.split();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE team_id = $1 AND webhook_id = $2 \
         AND created_at >= $3 AND created_at < $4 AND ($5 = 0 OR status = 'failed') ORDER BY created_at, id LIMIT 10000"
    )))
    .bind(team_id)
    .bind(webhook_id)
    .bind(since)
    .bind(until)
    .bind(i64::from(only_failed))
    .fetch_all(conn)
    .await
}

#[derive(sqlx::FromRow, Debug, Clone)]
pub struct AttemptRow {
    pub delivery_id: String,
    pub attempted_at: i64,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub response: Option<String>,
}

pub async fn attempts_of(conn: &mut Conn, delivery_id: &str) -> sqlx::Result<Vec<AttemptRow>> {
    sqlx::query_as(
        "SELECT delivery_id, attempted_at, status_code, latency_ms, error, response FROM webhook_attempts \
         WHERE delivery_id = $1 ORDER BY attempted_at, id",
    )
    .bind(delivery_id)
    .fetch_all(conn)
    .await
}

/// Drops delivery payloads older than `cutoff`; the records and attempts stay.
pub async fn purge_payloads(conn: &mut Conn, cutoff: i64) -> sqlx::Result<u64> {
    Ok(sqlx::query("UPDATE webhook_deliveries SET payload = NULL WHERE created_at < $1 AND payload IS NOT NULL")
        .bind(cutoff)
        .execute(conn)
        .await?
        .rows_affected())
}
