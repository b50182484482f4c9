//! The team's event log, newest first, over HTTP: parse, call `sendmux_core::events`,
//! render each event's stored payload.

use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::Query;
use super::pagination::{List, ListParams};
use crate::error::ApiResult;
use crate::extract::Caller;
use crate::state::AppState;
use sendmux_core::events;
use sendmux_core::ids::EventId;

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
    // Before the page is read, so the refusal is the same whatever the cursor.
    events::may_list(&p, q.kind.as_deref())?;
    let page = ListParams { limit: q.limit, cursor: q.cursor }.page(|c| EventId::parse(c).is_some())?;
    let rows = events::list(&state, &p, q.kind.as_deref(), page.before(), page.fetch()).await?;
    Ok(axum::Json(page.finish(
        rows,
        |r| r.id.clone(),
        |r| serde_json::from_str(&r.payload).unwrap_or(serde_json::Value::Null),
    )))
}
