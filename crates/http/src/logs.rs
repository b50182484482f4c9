//! The team's logs over HTTP: the audit trail of changes (`kind=audit`) and every
//! outbound delivery attempt (`kind=delivery`), listed by `sendmux_core::logs`.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::Query;
use super::pagination::{List, ListParams};
use crate::error::ApiResult;
use crate::extract::Caller;
use crate::state::AppState;
use sendmux_core::auth::perms::Perm;
use sendmux_core::ids::{AttemptId, AuditId};
use sendmux_core::logs::{self, AttemptRow, AuditRow, LogKind};
use sendmux_core::store::rfc3339;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_logs))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogParams {
    /// `audit` (default) or `delivery`.
    #[param(pattern = "^(audit|delivery)$")]
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

/// One delivery attempt of an outbound message.
#[derive(Serialize, ToSchema)]
pub struct DeliveryLogOut {
    pub id: String,
    pub kind: &'static str,
    pub message_id: String,
    pub delivery_group_id: String,
    /// A provider id, or `managed`.
    pub provider_id: String,
    pub provider_type: String,
    /// sent | deferred | bounced | failed
    pub outcome: String,
    pub response: String,
    pub duration_ms: i64,
    pub created_at: String,
}

impl From<AttemptRow> for DeliveryLogOut {
    fn from(a: AttemptRow) -> Self {
        Self {
            id: a.id,
            kind: "delivery",
            message_id: a.message_id,
            delivery_group_id: a.delivery_group_id,
            provider_id: a.provider_id,
            provider_type: a.provider_type,
            outcome: a.outcome,
            response: a.response,
            duration_ms: a.duration_ms,
            created_at: rfc3339(a.created_at),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum LogOut {
    Audit(AuditOut),
    Delivery(DeliveryLogOut),
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

/// Who changed what (`kind=audit`) or every delivery attempt (`kind=delivery`), newest
/// first (`logs.read`).
#[utoipa::path(get, path = "/api/v1/logs", tag = "logs", params(LogParams), responses((status = 200, body = List<LogOut>)))]
async fn list_logs(
    State(state): State<AppState>,
    Caller(p): Caller,
    Query(q): Query<LogParams>,
) -> ApiResult<axum::Json<List<LogOut>>> {
    // Before the kind and page are read, so a caller without it is refused whatever
    // they are.
    p.require(Perm::LogsRead)?;
    let params = ListParams { limit: q.limit, cursor: q.cursor };
    match LogKind::parse(q.kind.as_deref())? {
        LogKind::Audit => {
            let page = params.page(|c| AuditId::parse(c).is_some())?;
            let rows = logs::audit(&state, &p, page.before(), page.fetch()).await?;
            Ok(axum::Json(page.finish(rows, |r| r.id.clone(), |r| LogOut::Audit(r.into()))))
        }
        LogKind::Delivery => {
            let page = params.page(|c| AttemptId::parse(c).is_some())?;
            let rows = logs::deliveries(&state, &p, page.before(), page.fetch()).await?;
            Ok(axum::Json(page.finish(rows, |r| r.id.clone(), |r| LogOut::Delivery(r.into()))))
        }
    }
}
