//! Usage and its price for the team (API.md §10), as JSON or CSV, optionally per day.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::Query;
use crate::error::{ApiError, ApiResult};
use crate::extract::Caller;
use crate::state::AppState;
use sendmux_core::auth::perms::Perm;
use sendmux_core::billing::{self};
use sendmux_core::store::now_ms;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(usage))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageParams {
    /// Start, inclusive: RFC 3339 or a date (UTC midnight). Default: this month's start.
    pub from: Option<String>,
    /// End, exclusive. Default: the next month's start.
    pub to: Option<String>,
    /// `day` adds a per-day breakdown; `period` (the default) does not.
    #[param(pattern = "^(period|day)$")]
    pub granularity: Option<String>,
}

/// Usage and amounts for a period (`billing.read`); `Accept: text/csv` for a spreadsheet.
#[utoipa::path(get, path = "/api/v1/billing/usage", operation_id = "billing_usage", tag = "billing", params(UsageParams),
    responses((status = 200, description = "The usage; as CSV with `Accept: text/csv`", content((billing::UsageOut = "application/json"), (String = "text/csv"))), (status = 422, body = crate::error::ErrorBody)))]
async fn usage(
    State(state): State<AppState>,
    Caller(p): Caller,
    headers: HeaderMap,
    Query(q): Query<UsageParams>,
) -> ApiResult<Response> {
    p.require(Perm::BillingRead)?;
    let per_day = match q.granularity.as_deref() {
        None | Some("period") => false,
        Some("day") => true,
        Some(_) => return Err(ApiError::invalid("granularity", "granularity must be day")),
    };
    let (from, to) = billing::period(q.from.as_deref(), q.to.as_deref(), now_ms())?;
    let mut conn = state.store.pool().acquire().await?;
    let out = billing::compute_with(&state.settings.prices, &mut conn, &p.team_id, from, to, per_day, now_ms()).await?;
    let wants_csv = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/csv"));
    if wants_csv {
        return Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"))], billing::csv(&out))
            .into_response());
    }
    Ok(axum::Json(out).into_response())
}
