//! The operator's admin API, on only when `SENDMUX_ADMIN_TOKEN` is set.

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::{Json, Query, path_id};
use super::limits::IncreaseOut;
use super::pagination::{List, ListParams};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use sendmux_core::auth::password;
use sendmux_core::billing::{self, MonthUsage};
use sendmux_core::crypto::secure_eq;
use sendmux_core::ids::IncreaseRequestId;
use sendmux_core::store::audit::Actor;
use sendmux_core::store::{limits as q, now_ms, rfc3339};
use sendmux_core::validate;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_team))
        .routes(routes!(list_increase_requests))
        .routes(routes!(approve))
        .routes(routes!(deny))
        .routes(routes!(usage))
}

/// Wrong admin tokens one client address may present per minute; after that the
/// address is locked out (the right token included) until the minute ends.
pub const ADMIN_FAILURES_PER_MINUTE: i64 = 10;

/// Admits only the operator's token (compared in constant time); without one
/// configured the admin API does not exist. An address that presented
/// [`ADMIN_FAILURES_PER_MINUTE`] wrong tokens gets `429` until its window ends, whatever
/// it presents: a guesser learns nothing during the lockout.
pub async fn require_admin(State(state): State<AppState>, req: Request, next: Next) -> Result<Response, ApiError> {
    let Some(expected) = &state.settings.admin_token else {
        return Err(ApiError::for_status(StatusCode::NOT_FOUND));
    };
    let ip = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()).unwrap_or_default();
    let bucket = format!("admin-failures:{ip}");
    let locked_out = |reset_secs| {
        let mut e = ApiError::rate_limited(reset_secs);
        e.message = "Too many wrong admin tokens from this address; try again later".into();
        e
    };
    if let Some((failures, reset_secs)) = state.limiter.window(&bucket, now_ms()).await?
        && failures >= ADMIN_FAILURES_PER_MINUTE
    {
        return Err(locked_out(reset_secs));
    }
    let token = super::bearer(req.headers())?;
    if !secure_eq(token.as_bytes(), expected.expose().as_bytes()) {
        let counted = state.limiter.hit(&bucket, ADMIN_FAILURES_PER_MINUTE, now_ms()).await?;
        if !counted.allowed {
            return Err(locked_out(counted.reset_secs));
        }
        return Err(ApiError::unauthenticated("Invalid admin token"));
    }
    Ok(next.run(req).await)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminTeamIn {
    #[schema(value_type = crate::schema::Name)]
    pub name: String,
    #[schema(value_type = crate::schema::Email)]
    pub owner_email: String,
    /// Required when the owner has no account yet.
    #[schema(value_type = Option<crate::schema::Password>)]
    pub owner_password: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AdminTeamOut {
    pub id: String,
    pub name: String,
    pub owner_user_id: String,
    pub owner_email: String,
    pub created_at: String,
}

/// Create a team and its owner.
#[utoipa::path(post, path = "/api/v1/admin/teams", tag = "admin", request_body = AdminTeamIn, responses((status = 201, body = AdminTeamOut)))]
async fn create_team(
    State(state): State<AppState>,
    Json(input): Json<AdminTeamIn>,
) -> ApiResult<(StatusCode, axum::Json<AdminTeamOut>)> {
    let name = validate::name("name", &input.name, 100)?;
    let email = validate::email("owner_email", &input.owner_email)?;
    let hash = match input.owner_password {
        Some(pw) => {
            password::validate(&pw).map_err(|e| e.with_param("owner_password"))?;
            Some(state.passwords.hash(pw).await?)
        }
        None => None,
    };
    let (team, user) = sendmux_core::teams::create_with_owner(
        &state.store,
        sendmux_core::teams::NewTeam {
            name: &name,
            owner_email: &email,
            password_hash: hash,
            actor: Some(Actor::operator("admin_api")),
            ip: None,
            require_new_user: false,
            session: None,
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(AdminTeamOut {
            id: team.id,
            name: team.name,
            owner_user_id: user.id,
            owner_email: user.email,
            created_at: rfc3339(team.created_at),
        }),
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RequestFilter {
    /// pending, approved or denied.
    #[param(pattern = "^(pending|approved|denied)$")]
    pub status: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// Increase requests of every team.
#[utoipa::path(get, path = "/api/v1/admin/increase-requests", tag = "admin", params(RequestFilter), responses((status = 200, body = List<IncreaseOut>)))]
async fn list_increase_requests(
    State(state): State<AppState>,
    Query(f): Query<RequestFilter>,
) -> ApiResult<axum::Json<List<IncreaseOut>>> {
    if let Some(s) = f.status.as_deref()
        && !matches!(s, "pending" | "approved" | "denied")
    {
        return Err(ApiError::bad_request("status must be pending, approved or denied").with_param("status"));
    }
    let page = ListParams { limit: f.limit, cursor: f.cursor }.page(|c| IncreaseRequestId::parse(c).is_some())?;
    let mut conn = state.store.pool().acquire().await?;
    let rows = q::list_requests(&mut conn, None, f.status.as_deref(), page.before(), page.fetch()).await?;
    Ok(axum::Json(page.finish(rows, |r| r.id.clone(), IncreaseOut::from)))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ApproveIn {
    /// The new limit, 1..1000000000 (default: what the team requested).
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    #[serde(default, deserialize_with = "crate::schema::integer::optional")]
    pub limit: Option<i64>,
}

/// Approve: the team's limit becomes `limit` or the requested value.
#[utoipa::path(post, path = "/api/v1/admin/increase-requests/{id}/approve", tag = "admin", params(("id" = String, Path)), request_body = ApproveIn, responses((status = 200, body = IncreaseOut)))]
async fn approve(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(input): Json<ApproveIn>,
) -> ApiResult<axum::Json<IncreaseOut>> {
    let id = path_id(&id, IncreaseRequestId::parse, "increase request")?;
    let row = sendmux_core::limits::decide(&state.store, id.as_str(), true, input.limit, "admin_api").await?;
    // decide() told every node on PostgreSQL; this node forgets at once.
    state.auth.invalidate();
    state.cache.invalidate(&row.team_id);
    Ok(axum::Json(row.into()))
}

/// Deny: the limit stays.
#[utoipa::path(post, path = "/api/v1/admin/increase-requests/{id}/deny", tag = "admin", params(("id" = String, Path)), responses((status = 200, body = IncreaseOut)))]
async fn deny(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<axum::Json<IncreaseOut>> {
    let id = path_id(&id, IncreaseRequestId::parse, "increase request")?;
    let row = sendmux_core::limits::decide(&state.store, id.as_str(), false, None, "admin_api").await?;
    Ok(axum::Json(row.into()))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MonthParam {
    /// A calendar month in UTC, `YYYY-MM`.
    #[param(required = true, pattern = "^[0-9]{4}-(0[1-9]|1[0-2])$")]
    pub month: Option<String>,
}

/// Every team's usage and amounts for a calendar month, to invoice from.
#[utoipa::path(get, path = "/api/v1/admin/usage", tag = "admin", params(MonthParam),
    responses((status = 200, body = MonthUsage), (status = 422, body = crate::error::ErrorBody)))]
async fn usage(State(state): State<AppState>, Query(q): Query<MonthParam>) -> ApiResult<axum::Json<MonthUsage>> {
    let (month, from, to) = billing::month("month", q.month.as_deref())?;
    let mut conn = state.store.pool().acquire().await?;
    let data = billing::every_team_usage(&state.settings.prices, &mut conn, from, to, now_ms()).await?;
    Ok(axum::Json(MonthUsage { month, data }))
}
