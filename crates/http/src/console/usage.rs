//! Usage: the month's amounts per metric and a chart of each day, drawn here as SVG —
//! through `sendmux_core::billing::usage`.

use axum::extract::{Query, State};
use axum::response::Response;
use chrono::{Datelike, TimeZone, Utc};
use maud::{Markup, PreEscaped, html};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::Deserialize;

use super::layout;
use super::session::{Session, error_page};
use crate::state::AppState;
use sendmux_core::billing::{self, DayUsage};

#[derive(Deserialize, Default)]
pub struct UsageQuery {
    /// `YYYY-MM`; default this month.
    month: Option<String>,
}

fn month_bounds(month: Option<&str>) -> (String, String, String) {
    let now = Utc::now();
    let (y, m) = month
        .and_then(|s| s.split_once('-'))
        .and_then(|(y, m)| Some((y.parse::<i32>().ok()?, m.parse::<u32>().ok()?)))
        .filter(|(y, m)| (2000..=2100).contains(y) && (1..=12).contains(m))
        .unwrap_or((now.year(), now.month()));
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let (py, pm) = if m == 1 { (y - 1, 12) } else { (y, m - 1) };
    (
        format!("{y:04}-{m:02}-01"),
        format!("{ny:04}-{nm:02}-01"),
        format!("{py:04}-{pm:02}|{ny:04}-{nm:02}|{y:04}-{m:02}"),
    )
}

/// Daily emails (outbound, managed and inbound together) as bars, with the day's
/// amount in each bar's title.
fn chart(days: &[DayUsage]) -> Markup {
    let emails = |d: &DayUsage| -> f64 {
        d.line_items.iter().filter(|i| i.unit != "gb_month").map(|i| i.quantity.to_f64().unwrap_or(0.0)).sum()
    };
    let max = days.iter().map(emails).fold(0.0_f64, f64::max).max(1.0);
    let (w, h, pad, axis) = (720.0, 220.0, 18.0, 28.0);
    let n = days.len().max(1) as f64;
    let slot = (w - 2.0 * pad) / n;
    let bar = (slot * 0.7).max(2.0);
    let mut svg = format!(
        r#"<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-labelledby="chart-title"><title id="chart-title">Emails per day</title>"#
    );
    for frac in [0.0, 0.5, 1.0] {
        let y = pad + (h - axis - pad) * (1.0 - frac);
        svg.push_str(&format!(
            r#"<line x1="{pad}" x2="{}" y1="{y:.1}" y2="{y:.1}" class="grid"/><text x="{}" y="{:.1}" class="axis" text-anchor="end">{}</text>"#,
            w - pad,
            w - pad,
            y - 3.0,
            (max * frac).round()
        ));
    }
    for (i, d) in days.iter().enumerate() {
        let v = emails(d);
        let bh = (h - axis - pad) * v / max;
        let x = pad + slot * i as f64 + (slot - bar) / 2.0;
        let y = h - axis - bh;
        let label = format!("{}: {} emails, ${}", d.date, v, d.total);
        svg.push_str(&format!(
            r#"<rect x="{x:.1}" y="{y:.1}" width="{bar:.1}" height="{bh:.1}" class="bar"><title>{}</title></rect>"#,
            maud::html! { (label) }.into_string()
        ));
        if i % 5 == 0 {
            svg.push_str(&format!(
                r#"<text x="{:.1}" y="{}" class="axis" text-anchor="middle">{}</text>"#,
                x + bar / 2.0,
                h - 10.0,
                &d.date[8..10]
            ));
        }
    }
    svg.push_str("</svg>");
    PreEscaped(svg)
}

fn metric_label(metric: &str) -> &str {
    match metric {
        "outbound_emails" => "Outbound emails (your providers)",
        "managed_ses_emails" => "Outbound emails (managed SES)",
        "inbound_emails" => "Inbound emails",
        "mailbox_storage" => "Mailbox storage",
        other => other,
    }
}

pub async fn page(State(state): State<AppState>, Query(q): Query<UsageQuery>, s: Session) -> Response {
    let (from, to, nav) = month_bounds(q.month.as_deref());
    let usage = match billing::usage(&state, &s.p, Some(&from), Some(&to), true).await {
        Ok(u) => u,
        Err(e) => return error_page(Some(&s), e.into()),
    };
    let mut nav = nav.split('|');
    let (prev, next, this) = (nav.next().unwrap_or(""), nav.next().unwrap_or(""), nav.next().unwrap_or(""));
    let this_month = Utc
        .timestamp_millis_opt(sendmux_core::store::now_ms())
        .single()
        .map(|d| format!("{:04}-{:02}", d.year(), d.month()));
    let days = usage.days.as_deref().unwrap_or(&[]);
    let total_emails: Decimal = usage.line_items.iter().filter(|i| i.unit != "gb_month").map(|i| i.quantity).sum();
    let body = html! {
        nav.tabs aria-label="Month" {
            a.tab href={ "/usage?month=" (prev) } { "← " (prev) }
            span.tab aria-current="page" { (this) }
            @if this_month.as_deref() != Some(this) { a.tab href={ "/usage?month=" (next) } { (next) " →" } }
        }
        section.stats {
            div.stat { span.stat-value { "$" (usage.total) } span.stat-label { "total " (usage.currency) } }
            div.stat { span.stat-value { (total_emails) } span.stat-label { "emails" } }
            div.stat { span.stat-value { (usage.seats.count) } span.stat-label { "seats (free)" } }
        }
        section.card {
            h2 { "Emails per day" }
            @if total_emails.is_zero() {
                (layout::empty("No emails this month", "Sent and received mail is counted here as it happens.", None))
            }
            (chart(days))
        }
        section.card {
            h2 { "Amounts" }
            div.table-wrap tabindex="0" { table {
                thead { tr { th scope="col" { "Metric" } th scope="col" .num { "Quantity" } th scope="col" .num { "Unit price" } th scope="col" .num { "Amount" } } }
                tbody {
                    @for i in &usage.line_items { tr {
                        td { (metric_label(i.metric)) }
                        td.num { (i.quantity) " " span.muted { (if i.unit == "gb_month" { "GB-months" } else { "emails" }) } }
                        td.num { "$" (i.unit_price) " / " (if i.unit == "gb_month" { "GB-month" } else { "1,000" }) }
                        td.num { "$" (i.amount) }
                    } }
                    tr.total { td { "Seats (" (usage.seats.count) ")" } td.num {} td.num { "no per-seat fees" } td.num { "$" (usage.seats.amount) } }
                    tr.total { th scope="row" { "Total" } td.num {} td.num {} td.num { strong { "$" (usage.total) } } }
                }
            } }
            p.muted.small { (usage.from) " to " (usage.to) " (UTC)." }
        }
    };
    layout::page(&s, "/usage", "Usage", body)
}
