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
