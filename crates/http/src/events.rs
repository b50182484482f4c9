//! The team's event log, newest first.

use axum::extract::State;
use sendmux_core::store::TeamScope;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::Query;
use super::pagination::{List, ListParams};
use crate::error::{ApiError, ApiResult};
use crate::extract::Caller;
use crate::state::AppState;
use sendmux_core::auth::perms::Perm;
use sendmux_core::ids::EventId;
use sendmux_core::store::events;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_events))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventParams {
    /// Only events of this type.
    #[param(
        pattern = "^message\\.(received|received\\.spam|queued|sent|delivered|deferred|bounced|failed|suppressed)$"
    )]
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// Events of the last 7 days (`{"id", "type", "created_at", "data"}`), newest first.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", params(EventParams),
    responses((status = 200, body = List<Object>)))]
async fn list_events(
    State(state): State<AppState>,
    Caller(p): Caller,
    Query(q): Query<EventParams>,
) -> ApiResult<axum::Json<List<serde_json::Value>>> {
    if !(p.perms.has(Perm::LogsRead) || p.perms.has(Perm::WebhooksRead)) {
        return Err(ApiError::forbidden("Reading events needs `logs.read` or `webhooks.manage`"));
    }
    if let Some(kind) = q.kind.as_deref()
        && !sendmux_core::events::is_event_type(kind)
    {
        return Err(ApiError::bad_request(format!(
            "Unknown event type `{}`",
            sendmux_core::validate::truncate(kind, 40)
        ))
        .with_param("type"));
    }
    let page = ListParams { limit: q.limit, cursor: q.cursor }.page(|c| EventId::parse(c).is_some())?;
    let mut conn = state.store.pool().acquire().await?;
    let before = match page.before() {
        None => None,
        Some(id) => Some(
            events::get(&mut conn.team(&p.team_id), id)
                .await?
                .ok_or_else(|| ApiError::bad_request("cursor is not a cursor of this list").with_param("cursor"))?
                .seq,
        ),
    };
    let rows = events::list(&mut conn.team(&p.team_id), q.kind.as_deref(), before, page.fetch()).await?;
    Ok(axum::Json(page.finish(
        rows,
        |r| r.id.clone(),
        |r| serde_json::from_str(&r.payload).unwrap_or(serde_json::Value::Null),
    )))
}
