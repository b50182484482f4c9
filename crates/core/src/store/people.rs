//! Teams, users, memberships, sessions and invitations.

use super::{Conn, Team, now_ms};
use crate::auth::perms::Role;
use crate::ids::{InvitationId, SessionId, TeamId, UserId};

#[derive(sqlx::FromRow, Debug, Clone)]
pub struct TeamRow {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(sqlx::FromRow, Debug, Clone)]
pub struct UserRow {
    pub id: String,
    pub email: String,
    pub password_hash: String,
    pub created_at: i64,
}

#[derive(sqlx::FromRow, Debug, Clone)]
pub struct MemberRow {
    pub user_id: String,
    pub email: String,
    pub role: String,
    pub created_at: i64,
}

pub async fn insert_team(conn: &mut Conn, name: &str) -> sqlx::Result<TeamRow> {
    let now = now_ms();
    let row = TeamRow { id: TeamId::new().into_string(), name: name.to_owned(), created_at: now, updated_at: now };
    sqlx::query("INSERT INTO teams (id, name, created_at, updated_at) VALUES ($1, $2, $3, $4)")
        .bind(&row.id)
        .bind(&row.name)
        .bind(now)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(row)
}

pub async fn get_team(t: &mut Team<'_>) -> sqlx::Result<Option<TeamRow>> {
    let (conn, team_id) = t.split();
    sqlx::query_as("SELECT id, name, created_at, updated_at FROM teams WHERE id = $1")
        .bind(team_id)
        .fetch_optional(conn)
        .await
}

pub async fn rename_team(t: &mut Team<'_>, name: &str) -> sqlx::Result<()> {
    let (conn, team_id) = t.split();
    sqlx::query("UPDATE teams SET name = $2, updated_at = $3 WHERE id = $1")
        .bind(team_id)
        .bind(name)
        .bind(now_ms())
        .execute(conn)
        .await
        .map(|_| ())
}

/// Deletes the team; every team-owned row goes with it through `ON DELETE CASCADE`.
pub async fn delete_team(t: &mut Team<'_>) -> sqlx::Result<bool> {
    let (conn, team_id) = t.split();
    // Group members point at providers; remove them first so the cascade order of the
    // two engines cannot matter.
    sqlx::query(
        "DELETE FROM delivery_group_members WHERE group_id IN (SELECT id FROM delivery_groups WHERE team_id = $1)",
    )
    .bind(team_id)
    .execute(&mut *conn)
    .await?;
    let done = sqlx::query("DELETE FROM teams WHERE id = $1").bind(team_id).execute(conn).await?;
    Ok(done.rows_affected() == 1)
}

pub async fn list_teams(conn: &mut Conn, before: Option<&str>, limit: i64) -> sqlx::Result<Vec<TeamRow>> {
    sqlx::query_as(
        "SELECT id, name, created_at, updated_at FROM teams WHERE ($1 IS NULL OR id < $1) ORDER BY id DESC LIMIT $2",
    )
    .bind(before)
    .bind(limit)
    .fetch_all(conn)
    .await
}

pub async fn insert_user(conn: &mut Conn, email: &str, password_hash: &str) -> sqlx::Result<UserRow> {
    let row = UserRow {
        id: UserId::new().into_string(),
        email: email.to_owned(),
        password_hash: password_hash.to_owned(),
        created_at: now_ms(),
    };
    sqlx::query("INSERT INTO users (id, email, password_hash, created_at) VALUES ($1, $2, $3, $4)")
        .bind(&row.id)
        .bind(&row.email)
        .bind(&row.password_hash)
        .bind(row.created_at)
        .execute(conn)
        .await?;
    Ok(row)
}

pub async fn user_by_email(conn: &mut Conn, email: &str) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as("SELECT id, email, password_hash, created_at FROM users WHERE email = $1")
        .bind(email)
        .fetch_optional(conn)
        .await
}

pub async fn insert_membership(t: &mut Team<'_>, user_id: &str, role: Role) -> sqlx::Result<()> {
    let (conn, team_id) = t.split();
    sqlx::query("INSERT INTO memberships (team_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)")
        .bind(team_id)
        .bind(user_id)
        .bind(role.as_str())
        .bind(now_ms())
        .execute(conn)
        .await
        .map(|_| ())
}

pub async fn member(t: &mut Team<'_>, user_id: &str) -> sqlx::Result<Option<MemberRow>> {
    let (conn, team_id) = t.split();
    sqlx::query_as(
        "SELECT m.user_id, u.email, m.role, m.created_at FROM memberships m JOIN users u ON u.id = m.user_id \
         WHERE m.team_id = $1 AND m.user_id = $2",
    )
    .bind(team_id)
    .bind(user_id)
    .fetch_optional(conn)
    .await
}

pub async fn list_members(t: &mut Team<'_>, before: Option<&str>, limit: i64) -> sqlx::Result<Vec<MemberRow>> {
    let (conn, team_id) = t.split();
    sqlx::query_as(
        "SELECT m.user_id, u.email, m.role, m.created_at FROM memberships m JOIN users u ON u.id = m.user_id \
         WHERE m.team_id = $1 AND ($2 IS NULL OR m.user_id < $2) ORDER BY m.user_id DESC LIMIT $3",
    )
    .bind(team_id)
    .bind(before)
    .bind(limit)
    .fetch_all(conn)
    .await
}

pub async fn count_members(t: &mut Team<'_>) -> sqlx::Result<i64> {
    let (conn, team_id) = t.split();
    sqlx::query_scalar("SELECT COUNT(*) FROM memberships WHERE team_id = $1").bind(team_id).fetch_one(conn).await
}

/// Changes a member's role; never the owner's (ownership moves by [`transfer`]).
pub async fn set_role(t: &mut Team<'_>, user_id: &str, role: Role) -> sqlx::Result<bool> {
    let (conn, team_id) = t.split();
    let done = sqlx::query("UPDATE memberships SET role = $3 WHERE team_id = $1 AND user_id = $2 AND role <> 'owner'")
        .bind(team_id)
        .bind(user_id)
        .bind(role.as_str())
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Moves ownership from `from` (who must still be the owner) to the member `to`; the
/// previous owner becomes admin. False when `from` no longer owns the team or `to` is
/// not a member.
pub async fn transfer(t: &mut Team<'_>, from: &str, to: &str) -> sqlx::Result<bool> {
    let (conn, team_id) = t.split();
    let demoted =
        sqlx::query("UPDATE memberships SET role = 'admin' WHERE team_id = $1 AND user_id = $2 AND role = 'owner'")
            .bind(team_id)
            .bind(from)
            .execute(&mut *conn)
            .await?;
    if demoted.rows_affected() != 1 {
        return Ok(false);
    }
    let promoted = sqlx::query("UPDATE memberships SET role = 'owner' WHERE team_id = $1 AND user_id = $2")
        .bind(team_id)
        .bind(to)
        .execute(conn)
        .await?;
    Ok(promoted.rows_affected() == 1)
}

/// Removes a member; never the owner.
pub async fn remove_member(t: &mut Team<'_>, user_id: &str) -> sqlx::Result<bool> {
    let (conn, team_id) = t.split();
    let done = sqlx::query("DELETE FROM memberships WHERE team_id = $1 AND user_id = $2 AND role <> 'owner'")
        .bind(team_id)
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn insert_session(conn: &mut Conn, user_id: &str, token_hash: &str, ttl_ms: i64) -> sqlx::Result<String> {
    let id = SessionId::new().into_string();
    let now = now_ms();
    sqlx::query("INSERT INTO sessions (id, token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(&id)
        .bind(token_hash)
        .bind(user_id)
        .bind(now)
        .bind(now + ttl_ms)
        .execute(conn)
        .await?;
    Ok(id)
}

pub async fn revoke_session(conn: &mut Conn, token_hash: &str) -> sqlx::Result<bool> {
    let done = sqlx::query("UPDATE sessions SET revoked_at = $2 WHERE token_hash = $1 AND revoked_at IS NULL")
        .bind(token_hash)
        .bind(now_ms())
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// A live session's user and every team the user belongs to, oldest membership first.
#[derive(sqlx::FromRow, Debug)]
pub struct SessionMembership {
    pub session_id: String,
    pub user_id: String,
    pub expires_at: i64,
    pub team_id: Option<String>,
    pub role: Option<String>,
}

pub async fn session_memberships(conn: &mut Conn, token_hash: &str) -> sqlx::Result<Vec<SessionMembership>> {
    sqlx::query_as(
        "SELECT s.id AS session_id, s.user_id, s.expires_at, m.team_id, m.role FROM sessions s \
         LEFT JOIN memberships m ON m.user_id = s.user_id \
         WHERE s.token_hash = $1 AND s.revoked_at IS NULL ORDER BY m.created_at, m.team_id",
    )
    .bind(token_hash)
    .fetch_all(conn)
    .await
}

#[derive(sqlx::FromRow, Debug, Clone)]
pub struct InvitationRow {
    pub id: String,
    pub team_id: String,
    pub email: String,
    pub role: String,
    pub invited_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub accepted_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

const INVITATION_COLUMNS: &str =
    "id, team_id, email, role, invited_by, created_at, expires_at, accepted_at, revoked_at";

pub async fn insert_invitation(
    t: &mut Team<'_>,
    email: &str,
    role: Role,
    token_hash: &str,
    invited_by: &str,
    ttl_ms: i64,
) -> sqlx::Result<InvitationRow> {
    let (conn, team_id) = t.split();
    let now = now_ms();
    let row = InvitationRow {
        id: InvitationId::new().into_string(),
        team_id: team_id.to_owned(),
        email: email.to_owned(),
        role: role.as_str().to_owned(),
        invited_by: invited_by.to_owned(),
        created_at: now,
        expires_at: now + ttl_ms,
        accepted_at: None,
        revoked_at: None,
    };
    sqlx::query(
        "INSERT INTO invitations (id, team_id, email, role, token_hash, invited_by, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&row.id)
    .bind(team_id)
    .bind(email)
    .bind(&row.role)
    .bind(token_hash)
    .bind(invited_by)
    .bind(now)
    .bind(row.expires_at)
    .execute(conn)
    .await?;
    Ok(row)
}

pub async fn invitation_by_token(conn: &mut Conn, token_hash: &str) -> sqlx::Result<Option<InvitationRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {INVITATION_COLUMNS} FROM invitations WHERE token_hash = $1")))
        .bind(token_hash)
        .fetch_optional(conn)
        .await
}

pub async fn list_invitations(t: &mut Team<'_>, before: Option<&str>, limit: i64) -> sqlx::Result<Vec<InvitationRow>> {
    let (conn, team_id) = t.split();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {INVITATION_COLUMNS} FROM invitations WHERE team_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
    )))
    .bind(team_id)
    .bind(before)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Marks the invitation used; false when it was already used or revoked (a race lost).
pub async fn accept_invitation(conn: &mut Conn, id: &str) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE invitations SET accepted_at = $2 WHERE id = $1 AND accepted_at IS NULL AND revoked_at IS NULL",
    )
    .bind(id)
    .bind(now_ms())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn revoke_invitation(t: &mut Team<'_>, id: &str) -> sqlx::Result<bool> {
    let (conn, team_id) = t.split();
    let done = sqlx::query(
        "UPDATE invitations SET revoked_at = $3 WHERE team_id = $1 AND id = $2 AND accepted_at IS NULL AND revoked_at IS NULL",
    )
    .bind(team_id)
    .bind(id)
    .bind(now_ms())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A live session's user with every team the user belongs to (name and role), oldest
/// membership first: what a person sees of their own account (the console's team
/// switcher).
#[derive(sqlx::FromRow, Debug, Clone)]
pub struct SessionTeam {
    pub user_id: String,
    pub email: String,
    pub expires_at: i64,
    pub team_id: Option<String>,
    pub team_name: Option<String>,
    pub role: Option<String>,
}

pub async fn session_teams(conn: &mut Conn, token_hash: &str) -> sqlx::Result<Vec<SessionTeam>> {
    sqlx::query_as(
        "SELECT s.user_id, u.email, s.expires_at, m.team_id, t.name AS team_name, m.role FROM sessions s \
         JOIN users u ON u.id = s.user_id \
         LEFT JOIN memberships m ON m.user_id = s.user_id \
         LEFT JOIN teams t ON t.id = m.team_id \
         WHERE s.token_hash = $1 AND s.revoked_at IS NULL ORDER BY m.created_at, m.team_id",
    )
    .bind(token_hash)
    .fetch_all(conn)
    .await
}
