//! The audit log: who changed what, written in the transaction of the change.

use super::{Team, now_ms};
use crate::ids::AuditId;

/// Who acted: a user, a key, or the operator (admin API or CLI).
#[derive(Clone, Debug)]
pub struct Actor {
    pub kind: &'static str,
    pub id: String,
    pub ip: Option<String>,
}

impl Actor {
    pub fn operator(via: &str) -> Self {
        Self { kind: "operator", id: via.to_owned(), ip: None }
    }
}

pub async fn record(
    t: &mut Team<'_>,
    actor: &Actor,
    action: &str,
    target: (&str, &str),
    details: serde_json::Value,
) -> sqlx::Result<()> {
    let (conn, team_id) = t.split();
    sqlx::query(
        "INSERT INTO audit_log (id, team_id, actor_type, actor_id, action, target_type, target_id, ip, details, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(AuditId::new().into_string())
    .bind(team_id)
    .bind(actor.kind)
    .bind(&actor.id)
    .bind(action)
    .bind(target.0)
    .bind(target.1)
    .bind(actor.ip.as_deref())
    .bind(details.to_string())
    .bind(now_ms())
    .execute(conn)
    .await
    .map(|_| ())
}

#[derive(sqlx::FromRow, Debug)]
pub struct AuditRow {
    pub id: String,
    pub actor_type: String,
    pub actor_id: String,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub ip: Option<String>,
    pub details: String,
    pub created_at: i64,
}

pub async fn list(t: &mut Team<'_>, before: Option<&str>, limit: i64) -> sqlx::Result<Vec<AuditRow>> {
    let (conn, team_id) = t.split();
    sqlx::query_as(
        "SELECT id, actor_type, actor_id, action, target_type, target_id, ip, details, created_at FROM audit_log \
         WHERE team_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
    )
    .bind(team_id)
    .bind(before)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Narrows [`list_filtered`]: each given field must match.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    /// An action (`key.created`) or the start of one (`key.`, `key`).
    pub action: Option<String>,
    /// The user or key that acted.
    pub actor_id: Option<String>,
    /// The id of the thing acted on.
    pub target_id: Option<String>,
}

pub async fn list_filtered(
    t: &mut Team<'_>,
    filter: &AuditFilter,
    before: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<AuditRow>> {
    let (conn, team_id) = t.split();
    let action = filter.action.as_deref().map(|a| {
        let escaped: String =
            a.chars().flat_map(|c| if matches!(c, '%' | '_' | '\\') { vec!['\\', c] } else { vec![c] }).collect();
        format!("{escaped}%")
    });
    sqlx::query_as(
        "SELECT id, actor_type, actor_id, action, target_type, target_id, ip, details, created_at FROM audit_log \
         WHERE team_id = $1 AND ($2 IS NULL OR id < $2) AND ($4 IS NULL OR action LIKE $4 ESCAPE '\\') \
         AND ($5 IS NULL OR actor_id = $5) AND ($6 IS NULL OR target_id = $6) ORDER BY id DESC LIMIT $3",
    )
    .bind(team_id)
    .bind(before)
    .bind(limit)
    .bind(action)
    .bind(filter.actor_id.as_deref())
    .bind(filter.target_id.as_deref())
    .fetch_all(conn)
    .await
}
