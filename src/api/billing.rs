//! Usage and its price for the team (SPEC §10), as JSON or CSV, optionally per day.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::extract::Query;
use crate::auth::Principal;
use crate::auth::perms::Perm;
use crate::billing::{self, LineItem};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{Conn, now_ms, people, rfc3339};

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
    /// `day` adds a per-day breakdown.
    pub granularity: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Seats {
    pub count: i64,
    pub amount: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct DayUsage {
    pub date: String,
    pub line_items: Vec<LineItem>,
    #[schema(value_type = String)]
    pub total: Decimal,
}

#[derive(Serialize, ToSchema)]
pub struct UsageOut {
    pub team_id: String,
    pub from: String,
    pub to: String,
    pub currency: &'static str,
    pub line_items: Vec<LineItem>,
    pub seats: Seats,
    #[schema(value_type = String)]
    pub total: Decimal,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days: Option<Vec<DayUsage>>,
}

fn instant(param: &str, raw: &str) -> ApiResult<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Ok(t.timestamp_millis());
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| Utc.from_utc_datetime(&d).timestamp_millis())
        .ok_or_else(|| ApiError::invalid(param, format!("{param} must be RFC 3339 or YYYY-MM-DD")))
}

/// The period `[from, to)`: both given, or defaults from this calendar month.
pub fn period(from: Option<&str>, to: Option<&str>, now: i64) -> ApiResult<(i64, i64)> {
    let from = match from {
        Some(f) => instant("from", f)?,
        None => billing::month_start(now),
    };
    let to = match to {
        Some(t) => instant("to", t)?,
        None => billing::next_month(from),
    };
    if to <= from {
        return Err(ApiError::invalid("to", "to must be after from"));
    }
    if to - from > 366 * 86_400_000 {
        return Err(ApiError::invalid("to", "a period may span at most 366 days"));
    }
    Ok((from, to))
}

/// The team's usage for a period, priced with the instance's prices.
pub async fn compute(
    state: &AppState,
    conn: &mut Conn,
    team_id: &str,
    from: i64,
    to: i64,
    per_day: bool,
) -> ApiResult<UsageOut> {
    compute_with(&state.settings.prices, conn, team_id, from, to, per_day, now_ms()).await
}

/// As [`compute`], from settings alone (the CLI has no running server), storage
/// integrated up to `now`.
pub async fn compute_with(
    prices: &billing::Prices,
    conn: &mut Conn,
    team_id: &str,
    from: i64,
    to: i64,
    per_day: bool,
    now: i64,
) -> ApiResult<UsageOut> {
    let line_items = billing::line_items(conn, team_id, from, to, now, prices).await?;
    let days = if per_day {
        let mut days = Vec::new();
        let mut day = from;
        while day < to {
            let end = (day + 86_400_000).min(to);
            let items = billing::line_items(conn, team_id, day, end, now, prices).await?;
            days.push(DayUsage {
                date: rfc3339(day)[..10].to_owned(),
                total: billing::total(&items),
                line_items: items,
            });
            day = end;
        }
        Some(days)
    } else {
        None
    };
    let count = people::count_members(conn, team_id).await?;
    Ok(UsageOut {
        team_id: team_id.to_owned(),
        from: rfc3339(from),
        to: rfc3339(to),
        currency: "USD",
        total: billing::total(&line_items),
        line_items,
        seats: Seats { count, amount: "0.00" },
        days,
    })
}

pub fn csv(u: &UsageOut) -> String {
    let mut out = String::from("team_id,from,to,date,metric,quantity,unit,unit_price,amount,currency\n");
    let mut rows = |date: &str, items: &[LineItem]| {
        for i in items {
            out.push_str(&format!(
                "{},{},{},{date},{},{},{},{},{},USD\n",
                u.team_id, u.from, u.to, i.metric, i.quantity, i.unit, i.unit_price, i.amount
            ));
        }
    };
    rows("", &u.line_items);
    if let Some(days) = &u.days {
        for d in days {
            rows(&d.date, &d.line_items);
        }
    }
    out.push_str(&format!("{},{},{},,seats,{},seat,0,0.00,USD\n", u.team_id, u.from, u.to, u.seats.count));
    out.push_str(&format!("{},{},{},,total,,,,{},USD\n", u.team_id, u.from, u.to, u.total));
    out
}

/// Usage and amounts for a period (`billing.read`); `Accept: text/csv` for a spreadsheet.
#[utoipa::path(get, path = "/api/v1/billing/usage", operation_id = "billing_usage", tag = "billing", params(UsageParams),
    responses((status = 200, body = UsageOut), (status = 200, content_type = "text/csv"), (status = 422, body = crate::error::ErrorBody)))]
async fn usage(
    State(state): State<AppState>,
    p: Principal,
    headers: HeaderMap,
    Query(q): Query<UsageParams>,
) -> ApiResult<Response> {
    p.require(Perm::BillingRead)?;
    let per_day = match q.granularity.as_deref() {
        None | Some("period") => false,
        Some("day") => true,
        Some(_) => return Err(ApiError::invalid("granularity", "granularity must be day")),
    };
    let (from, to) = period(q.from.as_deref(), q.to.as_deref(), now_ms())?;
    let mut conn = state.store.pool().acquire().await?;
    let out = compute(&state, &mut conn, &p.team_id, from, to, per_day).await?;
    let wants_csv = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/csv"));
    if wants_csv {
        return Ok(
            ([(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"))], csv(&out)).into_response()
        );
    }
    Ok(axum::Json(out).into_response())
}
