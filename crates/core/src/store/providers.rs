//! Providers (with sealed credentials) and the delivery groups that route over them.

use super::{Conn, Team, now_ms};

#[derive(sqlx::FromRow, Debug, Clone)]
pub struct ProviderRow {
    pub id: String,
    pub team_id: String,
    pub name: String,
    pub kind: String,
    /// The non-secret settings as JSON.
    pub config: String,
    /// The secret settings as JSON, sealed with the instance key.
    pub sealed_secrets: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const PROVIDER_COLUMNS: &str = "id, team_id, name, kind, config, sealed_secrets, created_at, updated_at";

pub async fn insert(conn: &mut Conn, row: &ProviderRow) -> sqlx::Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO providers ({PROVIDER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    )))
    .bind(&row.id)
    .bind(&row.team_id)
    .bind(&row.name)
    .bind(&row.kind)
    .bind(&row.config)
    .bind(&row.sealed_secrets)
    .bind(row.created_at)
    .bind(row.updated_at)
    .execute(conn)
    .await
    .map(|_| ())
}

pub async fn update(conn: &mut Conn, row: &ProviderRow) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE providers SET name = $3, config = $4, sealed_secrets = $5, updated_at = $6 WHERE team_id = $1 AND id = $2",
    )
    .bind(&row.team_id)
    .bind(&row.id)
    .bind(&row.name)
    .bind(&row.config)
    .bind(&row.sealed_secrets)
    .bind(row.updated_at)
    .execute(conn)
    .await
    .map(|_| ())
}

pub async fn get(t: &mut Team<'_>, id: &str) -> sqlx::Result<Option<ProviderRow>> {
    let (conn, team_id) = t.split();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {PROVIDER_COLUMNS} FROM providers WHERE team_id = $1 AND id = $2"
    )))
    .bind(team_id)
    .bind(id)
    .fetch_optional(conn)
    .await
}

pub async fn list(t: &mut Team<'_>, before: Option<&str>, limit: i64) -> sqlx::Result<Vec<ProviderRow>> {
    let (conn, team_id) = t.split();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {PROVIDER_COLUMNS} FROM providers WHERE team_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
    )))
    .bind(team_id)
    .bind(before)
    .bind(limit)
    .fetch_all(conn)
    .await
}

pub async fn count(t: &mut Team<'_>) -> sqlx::Result<i64> {
    let (conn, team_id) = t.split();
    sqlx::query_scalar("SELECT COUNT(*) FROM providers WHERE team_id = $1").bind(team_id).fetch_one(conn).await
}

/// Delivery groups of the team that route through the provider.
pub async fn groups_using(t: &mut Team<'_>, provider_id: &str) -> sqlx::Result<Vec<String>> {
    let (conn, team_id) = t.split();
    sqlx::query_scalar(
        "SELECT DISTINCT g.id FROM delivery_group_members m JOIN delivery_groups g ON g.id = m.group_id \
         WHERE g.team_id = $1 AND m.provider_id = $2 ORDER BY g.id",
    )
    .bind(team_id)
    .bind(provider_id)
    .fetch_all(conn)
    .await
}

pub async fn delete(t: &mut Team<'_>, id: &str) -> sqlx::Result<bool> {
    let (conn, team_id) = t.split();
    let done = sqlx::query("DELETE FROM providers WHERE team_id = $1 AND id = $2")
        .bind(team_id)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

#[derive(sqlx::FromRow, Debug, Clone)]
pub struct GroupRow {
    pub id: String,
    pub team_id: String,
    pub name: String,
    pub strategy: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(sqlx::FromRow, Debug, Clone, PartialEq)]
pub struct MemberRow {
    pub group_id: String,
    pub position: i64,
    pub provider_id: Option<String>,
    pub priority: i64,
    pub weight: i64,
}

const GROUP_COLUMNS: &str = "id, team_id, name, strategy, created_at, updated_at";

pub async fn insert_group(conn: &mut Conn, row: &GroupRow, members: &[MemberRow]) -> sqlx::Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO delivery_groups ({GROUP_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"
    )))
    .bind(&row.id)
    .bind(&row.team_id)
    .bind(&row.name)
    .bind(&row.strategy)
    .bind(row.created_at)
    .bind(row.updated_at)
    .execute(&mut *conn)
    .await?;
    insert_members(conn, members).await
}

async fn insert_members(conn: &mut Conn, members: &[MemberRow]) -> sqlx::Result<()> {
    for m in members {
        sqlx::query(
            "INSERT INTO delivery_group_members (group_id, position, provider_id, priority, weight) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&m.group_id)
        .bind(m.position)
        .bind(m.provider_id.as_deref())
        .bind(m.priority)
        .bind(m.weight)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

pub async fn update_group(conn: &mut Conn, row: &GroupRow, members: Option<&[MemberRow]>) -> sqlx::Result<()> {
    sqlx::query("UPDATE delivery_groups SET name = $3, strategy = $4, updated_at = $5 WHERE team_id = $1 AND id = $2")
        .bind(&row.team_id)
        .bind(&row.id)
        .bind(&row.name)
        .bind(&row.strategy)
        .bind(now_ms())
        .execute(&mut *conn)
        .await?;
    if let Some(members) = members {
        sqlx::query("DELETE FROM delivery_group_members WHERE group_id = $1").bind(&row.id).execute(&mut *conn).await?;
        insert_members(conn, members).await?;
    }
    Ok(())
}

pub async fn get_group(t: &mut Team<'_>, id: &str) -> sqlx::Result<Option<GroupRow>> {
    let (conn, team_id) = t.split();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {GROUP_COLUMNS} FROM delivery_groups WHERE team_id = $1 AND id = $2"
    )))
    .bind(team_id)
    .bind(id)
    .fetch_optional(conn)
    .await
}

pub async fn list_groups(t: &mut Team<'_>, before: Option<&str>, limit: i64) -> sqlx::Result<Vec<GroupRow>> {
    let (conn, team_id) = t.split();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {GROUP_COLUMNS} FROM delivery_groups WHERE team_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
    )))
    .bind(team_id)
    .bind(before)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Members of the given groups (all of one team), in position order.
pub async fn members_of(t: &mut Team<'_>, group_ids: &[String]) -> sqlx::Result<Vec<MemberRow>> {
    let (conn, team_id) = t.split();
    let mut out = Vec::new();
    for gid in group_ids {
        let rows: Vec<MemberRow> = sqlx::query_as(
            "SELECT m.group_id, m.position, m.provider_id, m.priority, m.weight FROM delivery_group_members m \
             JOIN delivery_groups g ON g.id = m.group_id WHERE g.team_id = $1 AND m.group_id = $2 ORDER BY m.position",
        )
        .bind(team_id)
        .bind(gid)
        .fetch_all(&mut *conn)
        .await?;
        out.extend(rows);
    }
    Ok(out)
}

pub async fn delete_group(t: &mut Team<'_>, id: &str) -> sqlx::Result<bool> {
    let (conn, team_id) = t.split();
    sqlx::query(
        "DELETE FROM delivery_group_members WHERE group_id IN (SELECT id FROM delivery_groups WHERE team_id = $1 AND id = $2)",
    )
    .bind(team_id)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    let done = sqlx::query("DELETE FROM delivery_groups WHERE team_id = $1 AND id = $2")
        .bind(team_id)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// The team owning a provider, for routes that reach a provider without a credential
/// (SES notifications, authenticated by a token derived from the provider id).
pub async fn team_of(conn: &mut Conn, id: &str) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT team_id FROM providers WHERE id = $1 AND kind = 'ses'")
        .bind(id)
        .fetch_optional(conn)
        .await
}
