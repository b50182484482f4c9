//! Per-team limit overrides, increase requests, and the shared rate-limit windows.

use super::{Conn, Team, now_ms};
use crate::ids::IncreaseRequestId;

pub async fn overrides(t: &mut Team<'_>) -> sqlx::Result<Vec<(String, i64)>> {
    let (conn, team_id) = t.split();
    sqlx::query_as("SELECT name, value FROM team_limits WHERE team_id = $1").bind(team_id).fetch_all(conn).await
}

pub async fn set_override(t: &mut Team<'_>, name: &str, value: i64) -> sqlx::Result<()> {
    let (conn, team_id) = t.split();
    sqlx::query(
        "INSERT INTO team_limits (team_id, name, value) VALUES ($1, $2, $3) \
         ON CONFLICT (team_id, name) DO UPDATE SET value = excluded.value",
    )
    .bind(team_id)
    .bind(name)
    .bind(value)
    .execute(conn)
    .await
    .map(|_| ())
}

#[derive(sqlx::FromRow, Debug, Clone)]
pub struct IncreaseRow {
    pub id: String,
    pub team_id: String,
    pub limit_name: String,
    pub current_limit: i64,
    pub requested: i64,
    pub reason: String,
    pub status: String,
    pub requested_by: String,
    pub created_at: i64,
    pub decided_at: Option<i64>,
    pub granted: Option<i64>,
}

const COLUMNS: &str =
    "id, team_id, limit_name, current_limit, requested, reason, status, requested_by, created_at, decided_at, granted";

pub async fn insert_request(
    t: &mut Team<'_>,
    limit_name: &str,
    current_limit: i64,
    requested: i64,
    reason: &str,
    requested_by: &str,
) -> sqlx::Result<IncreaseRow> {
    let (conn, team_id) = t.split();
    let row = IncreaseRow {
        id: IncreaseRequestId::new().into_string(),
        team_id: team_id.to_owned(),
        limit_name: limit_name.to_owned(),
        current_limit,
        requested,
        reason: reason.to_owned(),
        status: "pending".to_owned(),
        requested_by: requested_by.to_owned(),
        created_at: now_ms(),
        decided_at: None,
        granted: None,
    };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO limit_increase_requests ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    )))
    .bind(&row.id)
    .bind(&row.team_id)
    .bind(&row.limit_name)
    .bind(row.current_limit)
    .bind(row.requested)
    .bind(&row.reason)
    .bind(&row.status)
    .bind(&row.requested_by)
    .bind(row.created_at)
    .bind(row.decided_at)
    .bind(row.granted)
    .execute(conn)
    .await?;
    Ok(row)
}

pub async fn get_request(conn: &mut Conn, id: &str) -> sqlx::Result<Option<IncreaseRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM limit_increase_requests WHERE id = $1")))
        .bind(id)
        .fetch_optional(conn)
        .await
}

pub async fn list_requests(
    conn: &mut Conn,
    team_id: Option<&str>,
    status: Option<&str>,
    before: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<IncreaseRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM limit_increase_requests WHERE ($1 IS NULL OR team_id = $1) AND ($2 IS NULL OR status = $2) \
         AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
    )))
    .bind(team_id)
    .bind(status)
    .bind(before)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Records the operator's decision; false when the request was no longer pending.
pub async fn decide(conn: &mut Conn, id: &str, status: &str, granted: Option<i64>) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE limit_increase_requests SET status = $2, granted = $3, decided_at = $4 WHERE id = $1 AND status = 'pending'",
    )
    .bind(id)
    .bind(status)
    .bind(granted)
    .bind(now_ms())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Counts one request in the bucket's fixed window on the database's clock (so nodes
/// with skewed clocks agree) and returns (window start, count). PostgreSQL only: SQLite
/// deployments are one node and count in memory.
/// A lease on the bucket's window: up to `want` requests, fewer as the window's `limit`
/// runs out (a quarter of what is left, rounded up), none once it has; a window that
/// ended restarts on the database's clock. Returns (window start, requests leased in
/// the window by every node, requests this lease got, the database's now).
pub async fn lease_pg(
    conn: &mut Conn,
    bucket: &str,
    window_ms: i64,
    want: i64,
    limit: i64,
) -> sqlx::Result<(i64, i64, i64, i64)> {
    sqlx::query_as(
        "WITH now AS (SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT AS ms) \
         INSERT INTO rate_windows (bucket, window_start, count, granted) \
           SELECT $1, ms, LEAST($3, ($4 + 3) / 4), LEAST($3, ($4 + 3) / 4) FROM now \
         ON CONFLICT (bucket) DO UPDATE SET \
           window_start = CASE WHEN rate_windows.window_start + $2 <= (SELECT ms FROM now) \
                               THEN (SELECT ms FROM now) ELSE rate_windows.window_start END, \
           granted = CASE WHEN rate_windows.window_start + $2 <= (SELECT ms FROM now) \
                          THEN LEAST($3, ($4 + 3) / 4) \
                          ELSE LEAST($3, (GREATEST($4 - rate_windows.count, 0) + 3) / 4) END, \
           count = CASE WHEN rate_windows.window_start + $2 <= (SELECT ms FROM now) \
                        THEN LEAST($3, ($4 + 3) / 4) \
                        ELSE rate_windows.count + LEAST($3, (GREATEST($4 - rate_windows.count, 0) + 3) / 4) END \
         RETURNING window_start, count, granted, (SELECT ms FROM now)",
    )
    .bind(bucket)
    .bind(window_ms)
    .bind(want)
    .bind(limit)
    .fetch_one(conn)
    .await
}

pub async fn window(conn: &mut Conn, bucket: &str) -> sqlx::Result<Option<(i64, i64)>> {
    sqlx::query_as("SELECT window_start, count FROM rate_windows WHERE bucket = $1")
        .bind(bucket)
        .fetch_optional(conn)
        .await
}
