//! Team limits and increase requests over HTTP: parse, call `sendmux_core::limits`,
//! render.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Json, Need, Query, can};
use super::pagination::{List, ListParams};
use crate::error::{ApiError, ApiResult};
use crate::extract::Caller;
use crate::state::AppState;
use sendmux_core::auth::perms::Perm;
use sendmux_core::ids::IncreaseRequestId;
use sendmux_core::limits::{self, IncreaseRequest, LimitName, Usage};
use sendmux_core::store::limits::IncreaseRow;
use sendmux_core::store::{rfc3339, rfc3339_opt};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_limits))
        .routes(routes!(request_increase))
        .routes(routes!(list_increase_requests))
}

#[derive(Serialize, ToSchema)]
pub struct LimitOut {
    pub name: &'static str,
    pub limit: i64,
    pub used: i64,
    pub percent: f64,
    /// True from 80 % of the limit: an increase may be requested.
    pub increase_requestable: bool,
}

impl From<Usage> for LimitOut {
    fn from(u: Usage) -> Self {
        Self {
            name: u.name.as_str(),
            limit: u.limit,
            used: u.used,
            percent: u.percent,
            increase_requestable: u.increase_requestable,
        }
    }
}

/// Every limit of the team with its use.
#[utoipa::path(get, path = "/api/v1/limits", tag = "limits", responses((status = 200, body = List<LimitOut>)))]
async fn list_limits(State(state): State<AppState>, Caller(p): Caller) -> ApiResult<axum::Json<List<LimitOut>>> {
    let data = limits::list(&state, &p).await?.into_iter().map(LimitOut::from).collect();
    Ok(axum::Json(List { data, next_cursor: None }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncreaseIn {
    /// Above the team's current limit, at most 1000000000.
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    #[serde(deserialize_with = "crate::schema::integer::required")]
    pub requested: i64,
    #[schema(value_type = crate::schema::Reason)]
    pub reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct IncreaseOut {
    pub id: String,
    pub team_id: String,
    pub limit_name: String,
    pub current_limit: i64,
    pub requested: i64,
    pub reason: String,
    /// pending, approved or denied.
    pub status: String,
    pub granted: Option<i64>,
    pub created_at: String,
    pub decided_at: Option<String>,
}

impl From<IncreaseRow> for IncreaseOut {
    fn from(r: IncreaseRow) -> Self {
        Self {
            id: r.id,
            team_id: r.team_id,
            limit_name: r.limit_name,
            current_limit: r.current_limit,
            requested: r.requested,
            reason: r.reason,
            status: r.status,
            granted: r.granted,
            created_at: rfc3339(r.created_at),
            decided_at: rfc3339_opt(r.decided_at),
        }
    }
}

/// Ask the operator to raise a limit; accepted from 80 % of the limit.
#[utoipa::path(post, path = "/api/v1/limits/{name}/increase-requests", tag = "limits", request_body = IncreaseIn,
    params(("name" = String, Path, description = "active_keys, webhooks, sending_rate_per_minute, mailboxes or providers")),
    responses((status = 201, body = IncreaseOut), (status = 409, body = crate::error::ErrorBody)))]
async fn request_increase(
    State(state): State<AppState>,
    Need(p, _): Need<can::LimitsRequest>,
    Path(name): Path<String>,
    Json(input): Json<IncreaseIn>,
) -> ApiResult<(StatusCode, axum::Json<IncreaseOut>)> {
    let name = LimitName::parse(&name).ok_or_else(|| ApiError::not_found("limit"))?;
    let request = IncreaseRequest { name, requested: input.requested, reason: input.reason };
    Ok((StatusCode::CREATED, axum::Json(limits::request_increase(&state, &p, request).await?.into())))
}

/// The team's increase requests and their decisions.
#[utoipa::path(get, path = "/api/v1/limits/increase-requests", operation_id = "list_team_increase_requests", tag = "limits", params(ListParams), responses((status = 200, body = List<IncreaseOut>)))]
async fn list_increase_requests(
    State(state): State<AppState>,
    Caller(p): Caller,
    Query(q): Query<ListParams>,
) -> ApiResult<axum::Json<List<IncreaseOut>>> {
    // Before the page is read, so a caller without it is refused whatever the cursor.
    p.require(Perm::LimitsRead)?;
    let page = q.page(|c| IncreaseRequestId::parse(c).is_some())?;
    let rows = limits::increase_requests(&state, &p, page.before(), page.fetch()).await?;
    Ok(axum::Json(page.finish(rows, |r| r.id.clone(), IncreaseOut::from)))
}
