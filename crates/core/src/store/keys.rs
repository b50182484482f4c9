//! API keys and the secrets they answer to.

use super::{Conn, Team, now_ms};

#[derive(sqlx::FromRow, Debug, Clone)]
pub struct KeyRow {
    pub id: String,
    pub team_id: String,
    pub name: String,
    pub kind: String,
    pub permissions: String,
    pub delivery_group_id: Option<String>,
    pub mailbox_id: Option<String>,
    pub prefix: String,
    pub last4: String,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

impl KeyRow {
    pub fn is_active(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e > now)
    }
}

const COLUMNS: &str = "id, team_id, name, kind, permissions, delivery_group_id, mailbox_id, prefix, last4, \
                       created_by, created_at, expires_at, revoked_at, last_used_at";

pub async fn insert(conn: &mut Conn, row: &KeyRow, secret_hash: &str) -> sqlx::Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO api_keys ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
    )))
    .bind(&row.id)
    .bind(&row.team_id)
    .bind(&row.name)
    .bind(&row.kind)
    .bind(&row.permissions)
    .bind(row.delivery_group_id.as_deref())
    .bind(row.mailbox_id.as_deref())
    .bind(&row.prefix)
    .bind(&row.last4)
    .bind(&row.created_by)
    .bind(row.created_at)
    .bind(row.expires_at)
    .bind(row.revoked_at)
    .bind(row.last_used_at)
    .execute(&mut *conn)
    .await?;
    insert_secret(conn, &row.id, secret_hash).await
}

pub async fn insert_secret(conn: &mut Conn, key_id: &str, secret_hash: &str) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO key_secrets (secret_hash, key_id, created_at) VALUES ($1, $2, $3)")
        .bind(secret_hash)
        .bind(key_id)
        .bind(now_ms())
        .execute(conn)
        .await
        .map(|_| ())
}

pub async fn get(t: &mut Team<'_>, id: &str) -> sqlx::Result<Option<KeyRow>> {
    let (conn, team_id) = t.split();
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM api_keys WHERE team_id = $1 AND id = $2")))
        .bind(team_id)
        .bind(id)
        .fetch_optional(conn)
        .await
}

pub async fn list(t: &mut Team<'_>, before: Option<&str>, limit: i64) -> sqlx::Result<Vec<KeyRow>> {
    let (conn, team_id) = t.split();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM api_keys WHERE team_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
    )))
    .bind(team_id)
    .bind(before)
    .bind(limit)
    .fetch_all(conn)
    .await
}

pub async fn count_active(t: &mut Team<'_>, now: i64) -> sqlx::Result<i64> {
    let (conn, team_id) = t.split();
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM api_keys WHERE team_id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2)",
    )
    .bind(team_id)
    .bind(now)
    .fetch_one(conn)
    .await
}

/// Active keys of the team scoped to the given delivery group or mailbox.
pub async fn count_active_scoped_to(t: &mut Team<'_>, scope_id: &str, now: i64) -> sqlx::Result<i64> {
    let (conn, team_id) = t.split();
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM api_keys WHERE team_id = $1 AND (delivery_group_id = $2 OR mailbox_id = $2) \
         AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $3)",
    )
    .bind(team_id)
    .bind(scope_id)
    .bind(now)
    .fetch_one(conn)
    .await
}

pub async fn active_sending_key_ids(t: &mut Team<'_>, now: i64) -> sqlx::Result<Vec<String>> {
    let (conn, team_id) = t.split();
    sqlx::query_scalar(
        "SELECT id FROM api_keys WHERE team_id = $1 AND kind = 'sending' AND revoked_at IS NULL \
         AND (expires_at IS NULL OR expires_at > $2)",
    )
    .bind(team_id)
    .bind(now)
    .fetch_all(conn)
    .await
}

pub async fn revoke(t: &mut Team<'_>, id: &str, now: i64) -> sqlx::Result<()> {
    let (conn, team_id) = t.split();
    sqlx::query("UPDATE api_keys SET revoked_at = $3 WHERE team_id = $1 AND id = $2 AND revoked_at IS NULL")
        .bind(team_id)
        .bind(id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM key_secrets WHERE key_id = $1").bind(id).execute(conn).await.map(|_| ())
}

/// Starts a rotation: every current secret of the key stops at `old_valid_until`
/// (or keeps an earlier end), the new secret is added and the shown suffix updated.
pub async fn rotate(
    t: &mut Team<'_>,
    id: &str,
    new_hash: &str,
    prefix: &str,
    last4: &str,
    old_valid_until: i64,
) -> sqlx::Result<()> {
    let (conn, team_id) = t.split();
    sqlx::query(
        "UPDATE key_secrets SET valid_until = $2 WHERE key_id = $1 AND (valid_until IS NULL OR valid_until > $2)",
    )
    .bind(id)
    .bind(old_valid_until)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM key_secrets WHERE key_id = $1 AND valid_until <= $2")
        .bind(id)
        .bind(now_ms())
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE api_keys SET prefix = $3, last4 = $4 WHERE team_id = $1 AND id = $2")
        .bind(team_id)
        .bind(id)
        .bind(prefix)
        .bind(last4)
        .execute(&mut *conn)
        .await?;
    insert_secret(conn, id, new_hash).await
}

/// What authentication needs about the key a secret belongs to.
#[derive(sqlx::FromRow, Debug)]
pub struct KeyAuthRow {
    pub id: String,
    pub team_id: String,
    pub kind: String,
    pub permissions: String,
    pub delivery_group_id: Option<String>,
    pub mailbox_id: Option<String>,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub secret_hash: String,
    pub valid_until: Option<i64>,
    pub sending_limit: Option<i64>,
}

pub async fn auth_lookup(conn: &mut Conn, secret_hash: &str) -> sqlx::Result<Option<KeyAuthRow>> {
    sqlx::query_as(
        "SELECT k.id, k.team_id, k.kind, k.permissions, k.delivery_group_id, k.mailbox_id, k.expires_at, k.revoked_at, \
                s.secret_hash, s.valid_until, tl.value AS sending_limit \
         FROM key_secrets s JOIN api_keys k ON k.id = s.key_id \
         LEFT JOIN team_limits tl ON tl.team_id = k.team_id AND tl.name = 'sending_rate_per_minute' \
         WHERE s.secret_hash = $1",
    )
    .bind(secret_hash)
    .fetch_optional(conn)
    .await
}

pub async fn touch(conn: &mut Conn, id: &str, now: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE api_keys SET last_used_at = $2 WHERE id = $1")
        .bind(id)
        .bind(now)
        .execute(conn)
        .await
        .map(|_| ())
}
