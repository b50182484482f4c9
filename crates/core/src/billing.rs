//! Usage pricing (API.md §10): counted units and stored bytes per team, priced with exact
//! decimal arithmetic.
//!
//! Rules, stated once:
//! - A period is `[from, to)` in UTC. Units count when their record's time falls in it.
//! - Storage is integrated over time: bytes held × time held, divided, calendar month
//!   by calendar month, by (10^9 bytes × that month's length). A message of 1 GB kept
//!   for half of November costs half a GB-month. The integral stops at `now`.
//! - Quantities of storage keep 9 decimal places; every amount is the exact product
//!   rounded half away from zero to 6 decimal places (micro-dollars), and the total is
//!   the sum of the rounded amounts. Invoices round the total to the cent.

use crate::ids::TeamId;
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use rust_decimal::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::store::usage::{INBOUND_EMAILS, MANAGED_SES_EMAILS, OUTBOUND_EMAILS};
use crate::store::{Conn, Team, TeamScope, people, rfc3339};
use utoipa::ToSchema;

pub const STORAGE: &str = "mailbox_storage";
const AMOUNT_DP: u32 = 6;
const GB: i64 = 1_000_000_000;

pub use crate::config::Prices;

#[derive(Clone, Debug, Serialize, PartialEq, utoipa::ToSchema)]
pub struct LineItem {
    pub metric: &'static str,
    /// Emails, or GB-months for storage.
    #[schema(value_type = String)]
    pub quantity: Decimal,
    /// `1000_emails` or `gb_month`.
    pub unit: &'static str,
    /// Price per unit.
    #[schema(value_type = String)]
    pub unit_price: Decimal,
    #[schema(value_type = String)]
    pub amount: Decimal,
}

fn round(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(AMOUNT_DP, RoundingStrategy::MidpointAwayFromZero).normalize()
}

/// Milliseconds of the first instant of the month containing `ms`.
pub fn month_start(ms: i64) -> i64 {
    let t = DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    Utc.with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0).single().map(|d| d.timestamp_millis()).unwrap_or(ms)
}

/// Milliseconds of the first instant of the month after the one containing `ms`.
pub fn next_month(ms: i64) -> i64 {
    let t = DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    let (y, m) = if t.month() == 12 { (t.year() + 1, 1) } else { (t.year(), t.month() + 1) };
    Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single().map(|d| d.timestamp_millis()).unwrap_or(ms)
}

/// A calendar month `YYYY-MM` as `[from, to)`.
pub fn parse_month(s: &str) -> Option<(i64, i64)> {
    let d = NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d").ok()?;
    let from = Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0)?).timestamp_millis();
    Some((from, next_month(from)))
}

async fn count(t: &mut Team<'_>, metric: &str, from: i64, to: i64) -> sqlx::Result<i64> {
    let (conn, team_id) = t.split();
    let n: Option<i64> = sqlx::query_scalar(
        "SELECT CAST(SUM(quantity) AS BIGINT) FROM usage_records WHERE team_id = $1 AND metric = $2 \
         AND created_at >= $3 AND created_at < $4",
    )
    .bind(team_id)
    .bind(metric)
    .bind(from)
    .bind(to)
    .fetch_one(conn)
    .await?;
    Ok(n.unwrap_or(0))
}

/// GB-months stored in `[from, min(to, now))`, month by month.
async fn gb_months(t: &mut Team<'_>, from: i64, to: i64, now: i64) -> sqlx::Result<Decimal> {
    let (conn, team_id) = t.split();
    let end = to.min(now);
    if end <= from {
        return Ok(Decimal::ZERO);
    }
    let base: Option<i64> = sqlx::query_scalar(
        "SELECT CAST(SUM(delta_bytes) AS BIGINT) FROM storage_changes WHERE team_id = $1 AND created_at < $2",
    )
    .bind(team_id)
    .bind(from)
    .fetch_one(&mut *conn)
    .await?;
    let changes: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT created_at, delta_bytes FROM storage_changes WHERE team_id = $1 AND created_at >= $2 AND created_at < $3 \
         ORDER BY created_at",
    )
    .bind(team_id)
    .bind(from)
    .bind(end)
    .fetch_all(conn)
    .await?;
    // Piecewise-constant bytes; cut every piece at month boundaries.
    let mut total = Decimal::ZERO;
    let mut bytes = base.unwrap_or(0).max(0);
    let mut t = from;
    let add = |bytes: i64, a: i64, b: i64, total: &mut Decimal| {
        let mut start = a;
        while start < b {
            let month_end = next_month(start);
            let stop = b.min(month_end);
            let month_len = month_end - month_start(start);
            let byte_ms = i128::from(bytes) * i128::from(stop - start);
            let denom = i128::from(GB) * i128::from(month_len);
            if let (Some(n), Some(d)) = (Decimal::from_i128(byte_ms), Decimal::from_i128(denom)) {
                *total += n / d;
            }
            start = stop;
        }
    };
    for (at, delta) in changes {
        add(bytes, t, at, &mut total);
        bytes = (bytes + delta).max(0);
        t = at;
    }
    add(bytes, t, end, &mut total);
    Ok(total.round_dp_with_strategy(9, RoundingStrategy::MidpointAwayFromZero).normalize())
}

/// The team's priced line items for `[from, to)`, storage integrated up to `now`.
pub async fn line_items(
    conn: &mut Conn,
    team: &TeamId,
    from: i64,
    to: i64,
    now: i64,
    prices: &Prices,
) -> sqlx::Result<Vec<LineItem>> {
    let mut items = Vec::new();
    for (metric, price) in [
        (OUTBOUND_EMAILS, prices.outbound_per_1000),
        (MANAGED_SES_EMAILS, prices.managed_ses_per_1000),
        (INBOUND_EMAILS, prices.inbound_per_1000),
    ] {
        let quantity = Decimal::from(count(&mut conn.team(team), metric, from, to).await?);
        items.push(LineItem {
            metric,
            quantity,
            unit: "1000_emails",
            unit_price: price,
            amount: round(quantity * price / Decimal::from(1000)),
        });
    }
    let quantity = gb_months(&mut conn.team(team), from, to, now).await?;
    items.push(LineItem {
        metric: STORAGE,
        quantity,
        unit: "gb_month",
        unit_price: prices.storage_per_gb_month,
        amount: round(quantity * prices.storage_per_gb_month),
    });
    Ok(items)
}

pub fn total(items: &[LineItem]) -> Decimal {
    items.iter().map(|i| i.amount).sum::<Decimal>().normalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_have_their_own_length() {
        let (from, to) = parse_month("2026-11").unwrap();
        assert_eq!(to - from, 30 * 86_400_000);
        let (from, to) = parse_month("2026-02").unwrap();
        assert_eq!(to - from, 28 * 86_400_000);
        let (from, to) = parse_month("2026-12").unwrap();
        assert_eq!(parse_month("2027-01").unwrap().0, to);
        assert_eq!(month_start(from + 5_000), from);
        assert!(parse_month("2026-13").is_none() && parse_month("soon").is_none());
    }

    #[test]
    fn amounts_round_half_away_from_zero_to_micro_dollars() {
        assert_eq!(round(Decimal::new(1_0000005, 7)).to_string(), "1.000001");
        assert_eq!(round(Decimal::new(105, 5)).to_string(), "0.00105");
        let p = Prices::default();
        assert_eq!(round(Decimal::from(7) * p.inbound_per_1000 / Decimal::from(1000)).to_string(), "0.00105");
    }
}

// The priced usage of a team, and of every team for the operator.

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

fn instant(param: &str, raw: &str) -> Result<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Ok(t.timestamp_millis());
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| Utc.from_utc_datetime(&d).timestamp_millis())
        .ok_or_else(|| Error::invalid(param, format!("{param} must be RFC 3339 or YYYY-MM-DD")))
}

/// The period `[from, to)`: both given, or defaults from this calendar month.
pub fn period(from: Option<&str>, to: Option<&str>, now: i64) -> Result<(i64, i64)> {
    let from = match from {
        Some(f) => instant("from", f)?,
        None => month_start(now),
    };
    let to = match to {
        Some(t) => instant("to", t)?,
        None => next_month(from),
    };
    if to <= from {
        return Err(Error::invalid("to", "to must be after from"));
    }
    if to - from > 366 * 86_400_000 {
        return Err(Error::invalid("to", "a period may span at most 366 days"));
    }
    Ok((from, to))
}

/// The team's usage for `[from, to)` priced with `prices`, storage integrated up to
/// `now`.
pub async fn compute_with(
    prices: &Prices,
    conn: &mut Conn,
    team: &TeamId,
    from: i64,
    to: i64,
    per_day: bool,
    now: i64,
) -> Result<UsageOut> {
    let line_items = line_items(conn, team, from, to, now, prices).await?;
    let days = if per_day {
        let mut days = Vec::new();
        let mut day = from;
        while day < to {
            let end = (day + 86_400_000).min(to);
            let items = crate::billing::line_items(conn, team, day, end, now, prices).await?;
            days.push(DayUsage { date: rfc3339(day)[..10].to_owned(), total: total(&items), line_items: items });
            day = end;
        }
        Some(days)
    } else {
        None
    };
    let count = people::count_members(&mut conn.team(team)).await?;
    Ok(UsageOut {
        team_id: team.to_string(),
        from: rfc3339(from),
        to: rfc3339(to),
        currency: "USD",
        total: total(&line_items),
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

/// One team's usage for the month, with the team's name.
#[derive(Serialize, ToSchema)]
pub struct TeamUsage {
    pub team_name: String,
    #[serde(flatten)]
    pub usage: UsageOut,
}

#[derive(Serialize, ToSchema)]
pub struct MonthUsage {
    pub month: String,
    pub data: Vec<TeamUsage>,
}

/// The `[from, to)` of a `YYYY-MM` month, or a 422 naming `param`.
pub fn month(param: &str, raw: Option<&str>) -> Result<(String, i64, i64)> {
    let raw = raw.ok_or_else(|| Error::invalid(param, format!("{param} is required (YYYY-MM)")))?;
    // Exactly `YYYY-MM` in ASCII digits, as the API documents it (the date parser alone
    // would also take a sign or a one-digit month).
    let b = raw.as_bytes();
    let ok = b.len() == 7 && b[4] == b'-' && b[..4].iter().chain(&b[5..]).all(u8::is_ascii_digit);
    match parse_month(raw) {
        Some((from, to)) if ok => Ok((raw.to_owned(), from, to)),
        _ => Err(Error::invalid(param, format!("{param} must be a month as YYYY-MM, not {raw:?}"))),
    }
}

/// Every team's priced usage for `[from, to)`, oldest team first; the admin API and the
/// CLI both print this.
pub async fn every_team_usage(
    prices: &Prices,
    conn: &mut Conn,
    from: i64,
    to: i64,
    now: i64,
) -> Result<Vec<TeamUsage>> {
    let mut teams = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let page = people::list_teams(conn, before.as_deref(), 500).await?;
        let done = page.len() < 500;
        before = page.last().map(|t| t.id.clone());
        teams.extend(page);
        if done {
            break;
        }
    }
    teams.reverse();
    let mut out = Vec::with_capacity(teams.len());
    for team in teams {
        let usage = compute_with(prices, conn, &TeamId::stored(team.id.clone()), from, to, false, now).await?;
        out.push(TeamUsage { team_name: team.name, usage });
    }
    Ok(out)
}

/// The caller's team usage for a period (`billing.read`): `from`/`to` as
/// [`period`] reads them (default: this calendar month), optionally per day.
pub async fn usage(
    core: &crate::Core,
    caller: &crate::auth::Principal,
    from: Option<&str>,
    to: Option<&str>,
    per_day: bool,
) -> Result<UsageOut> {
    caller.require(crate::auth::perms::Perm::BillingRead)?;
    let now = crate::store::now_ms();
    let (from, to) = period(from, to, now)?;
    let mut conn = core.store.pool().acquire().await?;
    compute_with(&core.settings.prices, &mut conn, &caller.team_id, from, to, per_day, now).await
}
