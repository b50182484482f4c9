//! Mailboxes: an address on the instance and its inbound settings.

use super::{Conn, Team};

#[derive(sqlx::FromRow, Debug, Clone)]
pub struct MailboxRow {
    pub id: String,
    pub team_id: String,
    pub address: String,
    pub name: Option<String>,
    pub spam_threshold: f64,
    pub retention_days: i64,
    pub accept_spam: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// The delivery group mail sent from the mailbox goes through (SPEC §16).
    #[sqlx(default)]
    pub send_delivery_group_id: Option<String>,
    /// JSON `{reply_only, allowed_domains, daily_limit}`.
    #[sqlx(default)]
    pub send_policy: Option<String>,
}

const COLUMNS: &str = "id, team_id, address, name, spam_threshold, retention_days, accept_spam, created_at, updated_at, \
     send_delivery_group_id, send_policy";

pub async fn insert(conn: &mut Conn, row: &MailboxRow) -> sqlx::Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO mailboxes ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    )))
    .bind(&row.id)
    .bind(&row.team_id)
    .bind(&row.address)
    .bind(row.name.as_deref())
    .bind(row.spam_threshold)
    .bind(row.retention_days)
    .bind(row.accept_spam)
    .bind(row.created_at)
    .bind(row.updated_at)
    .bind(row.send_delivery_group_id.as_deref())
    .bind(row.send_policy.as_deref())
    .execute(conn)
    .await
    .map(|_| ())
}

pub async fn update(conn: &mut Conn, row: &MailboxRow) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE mailboxes SET name = $3, spam_threshold = $4, retention_days = $5, accept_spam = $6, updated_at = $7, \
         send_delivery_group_id = $8, send_policy = $9 WHERE team_id = $1 AND id = $2",
    )
    .bind(&row.team_id)
    .bind(&row.id)
    .bind(row.name.as_deref())
    .bind(row.spam_threshold)
    .bind(row.retention_days)
    .bind(row.accept_spam)
    .bind(row.updated_at)
    .bind(row.send_delivery_group_id.as_deref())
    .bind(row.send_policy.as_deref())
    .execute(conn)
    .await
    .map(|_| ())
}

pub async fn get(t: &mut Team<'_>, id: &str) -> sqlx::Result<Option<MailboxRow>> {
    let (conn, team_id) = t.split();
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM mailboxes WHERE team_id = $1 AND id = $2")))
        .bind(team_id)
        .bind(id)
        .fetch_optional(conn)
        .await
}

pub async fn list(t: &mut Team<'_>, before: Option<&str>, limit: i64) -> sqlx::Result<Vec<MailboxRow>> {
    let (conn, team_id) = t.split();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM mailboxes WHERE team_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
    )))
    .bind(team_id)
    .bind(before)
    .bind(limit)
    .fetch_all(conn)
    .await
}

pub async fn count(t: &mut Team<'_>) -> sqlx::Result<i64> {
    let (conn, team_id) = t.split();
    sqlx::query_scalar("SELECT COUNT(*) FROM mailboxes WHERE team_id = $1").bind(team_id).fetch_one(conn).await
}

pub async fn delete(t: &mut Team<'_>, id: &str) -> sqlx::Result<bool> {
    let (conn, team_id) = t.split();
    let done = sqlx::query("DELETE FROM mailboxes WHERE team_id = $1 AND id = $2")
        .bind(team_id)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}
