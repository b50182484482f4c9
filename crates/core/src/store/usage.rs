//! Usage metering: billable units and stored bytes, written in the transaction of the
//! work they measure.

use super::writer::Writer;
use super::{Team, now_ms};

/// Billable metrics (API.md §10).
pub const OUTBOUND_EMAILS: &str = "outbound_emails";
pub const MANAGED_SES_EMAILS: &str = "managed_ses_emails";
pub const INBOUND_EMAILS: &str = "inbound_emails";

/// Records `quantity` of `metric` for the unit of work `unit_key` (for example
/// `inbound:msg_…`). A second record with the same key is ignored, so retries and races
/// count once. Returns whether this call recorded it.
pub async fn record(t: &mut Team<'_>, metric: &str, quantity: i64, unit_key: &str) -> sqlx::Result<bool> {
    let (conn, team_id) = t.split();
    let done = sqlx::query(
        "INSERT INTO usage_records (id, team_id, metric, quantity, unit_key, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (unit_key) DO NOTHING",
    )
    .bind(format!("use_{}", ulid::Ulid::new()))
    .bind(team_id)
    .bind(metric)
    .bind(quantity)
    .bind(unit_key)
    .bind(now_ms())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// One billable unit: `(team_id, metric, unit_key)`, quantity 1.
pub type Unit<'a> = (&'a str, &'a str, String);

#[derive(serde::Serialize)]
struct UsageInsert<'a> {
    id: String,
    team_id: &'a str,
    metric: &'a str,
    quantity: i64,
    unit_key: &'a str,
    created_at: i64,
}

/// [`record`] for many units of quantity 1 in one statement; a unit already recorded
/// is skipped the same way.
pub async fn record_units(w: &mut impl Writer, units: &[Unit<'_>]) -> anyhow::Result<()> {
    let now = now_ms();
    let rows: Vec<UsageInsert<'_>> = units
        .iter()
        .map(|(team_id, metric, unit_key)| UsageInsert {
            id: format!("use_{}", ulid::Ulid::new()),
            team_id,
            metric,
            quantity: 1,
            unit_key,
            created_at: now,
        })
        .collect();
    let columns = "id, team_id, metric, quantity, unit_key, created_at";
    w.insert_rows("usage_records", columns, &rows, "ON CONFLICT (unit_key) DO NOTHING").await?;
    Ok(())
}

/// A change of stored bytes: `(team_id, mailbox_id, message_id, delta_bytes, at)`.
pub type StorageChange<'a> = (&'a str, Option<&'a str>, Option<&'a str>, i64, i64);

#[derive(serde::Serialize)]
struct StorageInsert<'a> {
    id: String,
    team_id: &'a str,
    mailbox_id: Option<&'a str>,
    message_id: Option<&'a str>,
    delta_bytes: i64,
    created_at: i64,
}

/// [`storage_change`] for many changes in one statement.
pub async fn storage_changes(w: &mut impl Writer, changes: &[StorageChange<'_>]) -> anyhow::Result<()> {
    let rows: Vec<StorageInsert<'_>> = changes
        .iter()
        .map(|&(team_id, mailbox_id, message_id, delta_bytes, created_at)| StorageInsert {
            id: format!("stc_{}", ulid::Ulid::new()),
            team_id,
            mailbox_id,
            message_id,
            delta_bytes,
            created_at,
        })
        .collect();
    let columns = "id, team_id, mailbox_id, message_id, delta_bytes, created_at";
    w.insert_rows("storage_changes", columns, &rows, "").await.map(|_| ())
}

/// Records a change of the team's stored bytes (+ on store, - on delete).
pub async fn storage_change(
    t: &mut Team<'_>,
    mailbox_id: Option<&str>,
    message_id: Option<&str>,
    delta_bytes: i64,
    at: i64,
) -> sqlx::Result<()> {
    let (conn, team_id) = t.split();
    sqlx::query(
        "INSERT INTO storage_changes (id, team_id, mailbox_id, message_id, delta_bytes, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(format!("stc_{}", ulid::Ulid::new()))
    .bind(team_id)
    .bind(mailbox_id)
    .bind(message_id)
    .bind(delta_bytes)
    .bind(at)
    .execute(conn)
    .await
    .map(|_| ())
}
