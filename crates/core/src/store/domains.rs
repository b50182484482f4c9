//! Team domains: the name, its DKIM keys (private ones sealed), the last DNS findings and
//! when the background check looks again.

use super::{Conn, Team};

#[derive(sqlx::FromRow, Debug, Clone)]
pub struct DomainRow {
    pub id: String,
    pub team_id: String,
    pub name: String,
    pub status: String,
    pub receiving: i64,
    pub token: String,
    pub dkim_selector: String,
    pub dkim_algorithm: String,
    pub dkim_public_key: String,
    pub dkim_private_key: String,
    pub next_dkim_selector: Option<String>,
    pub next_dkim_algorithm: Option<String>,
    pub next_dkim_public_key: Option<String>,
    pub next_dkim_private_key: Option<String>,
    pub checks: String,
    pub reason: Option<String>,
    pub verified_at: Option<i64>,
    pub checked_at: Option<i64>,
    pub next_check_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, team_id, name, status, receiving, token, dkim_selector, dkim_algorithm, dkim_public_key, \
     dkim_private_key, next_dkim_selector, next_dkim_algorithm, next_dkim_public_key, next_dkim_private_key, checks, \
     reason, verified_at, checked_at, next_check_at, created_at, updated_at";

pub async fn insert(t: &mut Team<'_>, row: &DomainRow) -> sqlx::Result<()> {
    let (conn, team_id) = t.split();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO domains ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
         $16, $17, $18, $19, $20, $21)"
    )))
    .bind(&row.id)
    .bind(team_id)
    .bind(&row.name)
    .bind(&row.status)
    .bind(row.receiving)
    .bind(&row.token)
    .bind(&row.dkim_selector)
    .bind(&row.dkim_algorithm)
    .bind(&row.dkim_public_key)
    .bind(&row.dkim_private_key)
    .bind(row.next_dkim_selector.as_deref())
    .bind(row.next_dkim_algorithm.as_deref())
    .bind(row.next_dkim_public_key.as_deref())
    .bind(row.next_dkim_private_key.as_deref())
    .bind(&row.checks)
    .bind(row.reason.as_deref())
    .bind(row.verified_at)
    .bind(row.checked_at)
    .bind(row.next_check_at)
    .bind(row.created_at)
    .bind(row.updated_at)
    .execute(conn)
    .await
    .map(|_| ())
}

/// Writes every field that changes after creation.
pub async fn update(t: &mut Team<'_>, row: &DomainRow) -> sqlx::Result<bool> {
    let (conn, team_id) = t.split();
    let done = sqlx::query(
        "UPDATE domains SET status = $3, receiving = $4, dkim_selector = $5, dkim_algorithm = $6, \
         dkim_public_key = $7, dkim_private_key = $8, next_dkim_selector = $9, next_dkim_algorithm = $10, \
         next_dkim_public_key = $11, next_dkim_private_key = $12, checks = $13, reason = $14, verified_at = $15, \
         checked_at = $16, next_check_at = $17, updated_at = $18 WHERE team_id = $1 AND id = $2",
    )
    .bind(team_id)
    .bind(&row.id)
    .bind(&row.status)
    .bind(row.receiving)
    .bind(&row.dkim_selector)
    .bind(&row.dkim_algorithm)
    .bind(&row.dkim_public_key)
    .bind(&row.dkim_private_key)
    .bind(row.next_dkim_selector.as_deref())
    .bind(row.next_dkim_algorithm.as_deref())
    .bind(row.next_dkim_public_key.as_deref())
    .bind(row.next_dkim_private_key.as_deref())
    .bind(&row.checks)
    .bind(row.reason.as_deref())
    .bind(row.verified_at)
    .bind(row.checked_at)
    .bind(row.next_check_at)
    .bind(row.updated_at)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn get(t: &mut Team<'_>, id: &str) -> sqlx::Result<Option<DomainRow>> {
    let (conn, team_id) = t.split();
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM domains WHERE team_id = $1 AND id = $2")))
        .bind(team_id)
        .bind(id)
        .fetch_optional(conn)
        .await
}

pub async fn list(t: &mut Team<'_>, before: Option<&str>, limit: i64) -> sqlx::Result<Vec<DomainRow>> {
    let (conn, team_id) = t.split();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM domains WHERE team_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
    )))
    .bind(team_id)
    .bind(before)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// The team's verified domains (their keys sign its outbound mail).
pub async fn verified(t: &mut Team<'_>) -> sqlx::Result<Vec<DomainRow>> {
    let (conn, team_id) = t.split();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM domains WHERE team_id = $1 AND status = 'verified'"
    )))
    .bind(team_id)
    .fetch_all(conn)
    .await
}

/// Whether the team has verified `name`.
pub async fn is_verified(t: &mut Team<'_>, name: &str) -> sqlx::Result<bool> {
    let (conn, team_id) = t.split();
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM domains WHERE team_id = $1 AND name = $2 AND status = 'verified'")
            .bind(team_id)
            .bind(name)
            .fetch_one(conn)
            .await?;
    Ok(n > 0)
}

/// The status of the team's domain `name`, if it has one.
pub async fn status_of(t: &mut Team<'_>, name: &str) -> sqlx::Result<Option<String>> {
    let (conn, team_id) = t.split();
    sqlx::query_scalar("SELECT status FROM domains WHERE team_id = $1 AND name = $2")
        .bind(team_id)
        .bind(name)
        .fetch_optional(conn)
        .await
}

/// Whether a team other than `t`'s holds `name` verified.
pub async fn verified_elsewhere(t: &mut Team<'_>, name: &str) -> sqlx::Result<bool> {
    let (conn, team_id) = t.split();
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM domains WHERE team_id <> $1 AND name = $2 AND status = 'verified'")
            .bind(team_id)
            .bind(name)
            .fetch_one(conn)
            .await?;
    Ok(n > 0)
}

/// The team's mailboxes at `name` (`…@name`).
pub async fn mailboxes_on(t: &mut Team<'_>, name: &str) -> sqlx::Result<i64> {
    let (conn, team_id) = t.split();
    let suffix = format!("@{name}");
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM mailboxes WHERE team_id = $1 AND length(address) > length($2) \
         AND substr(address, length(address) - length($2) + 1) = $2",
    )
    .bind(team_id)
    .bind(suffix)
    .fetch_one(conn)
    .await
}

pub async fn delete(t: &mut Team<'_>, id: &str) -> sqlx::Result<bool> {
    let (conn, team_id) = t.split();
    let done =
        sqlx::query("DELETE FROM domains WHERE team_id = $1 AND id = $2").bind(team_id).bind(id).execute(conn).await?;
    Ok(done.rows_affected() == 1)
}

/// Up to `limit` domains of any team whose next check is due at `now`.
pub async fn due(conn: &mut Conn, now: i64, limit: i64) -> sqlx::Result<Vec<DomainRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM domains WHERE next_check_at <= $1 ORDER BY next_check_at LIMIT $2"
    )))
    .bind(now)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Takes the check of a due domain: moves its next check to `lease_until` if it is still
/// the `seen` one, so another node skips it. True when this caller took it.
pub async fn claim(t: &mut Team<'_>, id: &str, seen: i64, lease_until: i64) -> sqlx::Result<bool> {
    let (conn, team_id) = t.split();
    let done =
        sqlx::query("UPDATE domains SET next_check_at = $4 WHERE team_id = $1 AND id = $2 AND next_check_at = $3")
            .bind(team_id)
            .bind(id)
            .bind(seen)
            .bind(lease_until)
            .execute(conn)
            .await?;
    Ok(done.rows_affected() == 1)
}
