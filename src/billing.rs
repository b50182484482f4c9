//! Usage pricing (SPEC §10): counted units and stored bytes per team, priced with exact
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

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use rust_decimal::prelude::*;
use serde::Serialize;

use crate::store::Conn;
use crate::store::usage::{INBOUND_EMAILS, MANAGED_SES_EMAILS, OUTBOUND_EMAILS};

pub const STORAGE: &str = "mailbox_storage";
const AMOUNT_DP: u32 = 6;
const GB: i64 = 1_000_000_000;

/// Prices from settings (defaults: SPEC §10).
#[derive(Clone, Debug)]
pub struct Prices {
    pub outbound_per_1000: Decimal,
    pub managed_ses_per_1000: Decimal,
    pub inbound_per_1000: Decimal,
    pub storage_per_gb_month: Decimal,
}

impl Default for Prices {
    fn default() -> Self {
        Self {
            outbound_per_1000: Decimal::new(15, 2),
            managed_ses_per_1000: Decimal::new(25, 2),
            inbound_per_1000: Decimal::new(15, 2),
            storage_per_gb_month: Decimal::new(2, 2),
        }
    }
}

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

async fn count(conn: &mut Conn, team_id: &str, metric: &str, from: i64, to: i64) -> sqlx::Result<i64> {
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
async fn gb_months(conn: &mut Conn, team_id: &str, from: i64, to: i64, now: i64) -> sqlx::Result<Decimal> {
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
    team_id: &str,
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
        let quantity = Decimal::from(count(conn, team_id, metric, from, to).await?);
        items.push(LineItem {
            metric,
            quantity,
            unit: "1000_emails",
            unit_price: price,
            amount: round(quantity * price / Decimal::from(1000)),
        });
    }
    let quantity = gb_months(conn, team_id, from, to, now).await?;
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
