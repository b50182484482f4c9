//! The team's logs: the audit trail of changes (`kind=audit`).

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::Query;
use super::pagination::{List, ListParams};
use crate::auth::Principal;
use crate::auth::perms::Perm;
use crate::error::{ApiError, ApiResult};
use crate::ids::AuditId;
use crate::state::AppState;
use crate::store::audit::{self, AuditRow};
use crate::store::rfc3339;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_logs))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogParams {
    /// `audit` (default).
    pub kind: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ActorOut {
    /// user, key or operator.
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

#[derive(Serialize, ToSchema)]
pub struct TargetOut {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

#[derive(Serialize, ToSchema)]
pub struct AuditOut {
    pub id: String,
    pub kind: &'static str,
    pub action: String,
    pub actor: ActorOut,
    pub target: TargetOut,
    pub source_ip: Option<String>,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    pub created_at: String,
}

impl From<AuditRow> for AuditOut {
    fn from(r: AuditRow) -> Self {
        Self {
            id: r.id,
            kind: "audit",
            action: r.action,
            actor: ActorOut { kind: r.actor_type, id: r.actor_id },
            target: TargetOut { kind: r.target_type, id: r.target_id },
            source_ip: r.ip,
            details: serde_json::from_str(&r.details).unwrap_or_default(),
            created_at: rfc3339(r.created_at),
        }
    }
}

/// Who changed what, newest first (`logs.read`).
#[utoipa::path(get, path = "/api/v1/logs", tag = "logs", params(LogParams), responses((status = 200, body = List<AuditOut>)))]
async fn list_logs(
    State(state): State<AppState>,
    p: Principal,
    Query(q): Query<LogParams>,
) -> ApiResult<axum::Json<List<AuditOut>>> {
    p.require(Perm::LogsRead)?;
    match q.kind.as_deref() {
        None | Some("audit") => {}
        Some(_) => return Err(ApiError::bad_request("kind must be audit").with_param("kind")),
    }
    let page = ListParams { limit: q.limit, cursor: q.cursor }.page(|c| AuditId::parse(c).is_some())?;
    let mut conn = state.store.pool().acquire().await?;
    let rows = audit::list(&mut conn, &p.team_id, page.before(), page.fetch()).await?;
    Ok(axum::Json(page.finish(rows, |r| r.id.clone(), AuditOut::from)))
}
