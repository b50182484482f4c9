//! Team limits and increase requests.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use sendmux_core::ids::TeamId;
use sendmux_core::store::TeamScope;
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
use sendmux_core::limits::{LimitName, increase_requestable, limit_for};
use sendmux_core::store::limits::{self as q, IncreaseRow};
use sendmux_core::store::{Conn, audit, keys, mailboxes, now_ms, providers, rfc3339, rfc3339_opt};
use sendmux_core::validate;

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

async fn used(state: &AppState, conn: &mut Conn, team: &TeamId, name: LimitName) -> ApiResult<i64> {
    let now = now_ms();
    Ok(match name {
        LimitName::ActiveKeys => keys::count_active(&mut conn.team(team), now).await?,
        LimitName::Mailboxes => mailboxes::count(&mut conn.team(team)).await?,
        LimitName::Providers => providers::count(&mut conn.team(team)).await?,
        LimitName::Webhooks => sendmux_core::store::webhooks::count(&mut conn.team(team)).await?,
        LimitName::SendingRatePerMinute => {
            let mut max = 0;
            for key in keys::active_sending_key_ids(&mut conn.team(team), now).await? {
                max = max.max(state.limiter.used(conn, &key, now).await?);
            }
            max
        }
    })
}

async fn limit_out(state: &AppState, conn: &mut Conn, team: &TeamId, name: LimitName) -> ApiResult<LimitOut> {
    let limit = limit_for(conn, &state.settings.limits, team, name).await?;
    let used = used(state, conn, team, name).await?;
    let percent = ((used as f64) * 1000.0 / (limit as f64)).round() / 10.0;
    Ok(LimitOut { name: name.as_str(), limit, used, percent, increase_requestable: increase_requestable(used, limit) })
}

/// Every limit of the team with its use.
#[utoipa::path(get, path = "/api/v1/limits", tag = "limits", responses((status = 200, body = List<LimitOut>)))]
async fn list_limits(State(state): State<AppState>, Caller(p): Caller) -> ApiResult<axum::Json<List<LimitOut>>> {
    p.require(Perm::LimitsRead)?;
    let mut conn = state.store.pool().acquire().await?;
    let mut data = Vec::new();
    for name in LimitName::ALL {
        data.push(limit_out(&state, &mut conn, &p.team_id, name).await?);
    }
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
    let reason = validate::name("reason", &input.reason, 1000)?;
    let mut tx = state.store.begin().await?;
    state.store.lock_team(&mut tx, p.team_id.as_str()).await?;
    let current = limit_out(&state, &mut tx, &p.team_id, name).await?;
    if input.requested <= current.limit || input.requested > 1_000_000_000 {
        return Err(ApiError::invalid(
            "requested",
            format!("requested must be above the current limit ({}) and at most 1000000000", current.limit),
        ));
    }
    if !current.increase_requestable {
        return Err(ApiError::conflict(format!(
            "An increase can be requested from 80% of the limit; {} is at {}%",
            name.as_str(),
            current.percent
        )));
    }
    let pending = q::list_requests(&mut tx, Some(p.team_id.as_str()), Some("pending"), None, 100).await?;
    if pending.iter().any(|r| r.limit_name == name.as_str()) {
        return Err(ApiError::conflict("A request for this limit is already pending"));
    }
    let row = q::insert_request(
        &mut tx.team(&p.team_id),
        name.as_str(),
        current.limit,
        input.requested,
        &reason,
        &p.actor().id,
    )
    .await?;
    audit::record(
        &mut tx.team(&p.team_id),
        &p.actor(),
        "limit.increase_requested",
        ("increase_request", &row.id),
        serde_json::json!({"limit": name.as_str(), "requested": input.requested}),
    )
    .await?;
    state.commit(tx, p.team_id.as_str()).await?;
    Ok((StatusCode::CREATED, axum::Json(row.into())))
}

/// The team's increase requests and their decisions.
#[utoipa::path(get, path = "/api/v1/limits/increase-requests", operation_id = "list_team_increase_requests", tag = "limits", params(ListParams), responses((status = 200, body = List<IncreaseOut>)))]
async fn list_increase_requests(
    State(state): State<AppState>,
    Caller(p): Caller,
    Query(q): Query<ListParams>,
) -> ApiResult<axum::Json<List<IncreaseOut>>> {
    p.require(Perm::LimitsRead)?;
    let page = q.page(|c| IncreaseRequestId::parse(c).is_some())?;
    let mut conn = state.store.pool().acquire().await?;
    let rows = q::list_requests(&mut conn, Some(p.team_id.as_str()), None, page.before(), page.fetch()).await?;
    Ok(axum::Json(page.finish(rows, |r| r.id.clone(), IncreaseOut::from)))
}
