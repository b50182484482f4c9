//! Usage metering: billable units and stored bytes, written in the transaction of the
//! work they measure.

use super::{Backend, Conn, now_ms};

/// Billable metrics (SPEC §10).
pub const OUTBOUND_EMAILS: &str = "outbound_emails";
pub const MANAGED_SES_EMAILS: &str = "managed_ses_emails";
pub const INBOUND_EMAILS: &str = "inbound_emails";

/// Records `quantity` of `metric` for the unit of work `unit_key` (for example
/// `inbound:msg_…`). A second record with the same key is ignored, so retries and races
/// count once. Returns whether this call recorded it.
pub async fn record(conn: &mut Conn, team_id: &str, metric: &str, quantity: i64, unit_key: &str) -> sqlx::Result<bool> {
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

/// [`record`] for many units of quantity 1 in multi-row statements; a unit already
/// recorded is skipped the same way.
pub async fn record_units(conn: &mut Conn, backend: Backend, units: &[Unit<'_>]) -> sqlx::Result<()> {
    let now = now_ms();
    for chunk in super::insert_chunks(units) {
        let sql = format!(
            "INSERT INTO usage_records (id, team_id, metric, quantity, unit_key, created_at) VALUES {} \
             ON CONFLICT (unit_key) DO NOTHING",
            super::values_list(backend, chunk.len(), 6)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (team_id, metric, unit_key) in chunk {
            q = q
                .bind(format!("use_{}", ulid::Ulid::new()))
                .bind(*team_id)
                .bind(*metric)
                .bind(1i64)
                .bind(unit_key)
                .bind(now);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// A change of stored bytes: `(team_id, mailbox_id, message_id, delta_bytes, at)`.
pub type StorageChange<'a> = (&'a str, Option<&'a str>, Option<&'a str>, i64, i64);

/// [`storage_change`] for many changes in multi-row statements.
pub async fn storage_changes(conn: &mut Conn, backend: Backend, changes: &[StorageChange<'_>]) -> sqlx::Result<()> {
    for chunk in super::insert_chunks(changes) {
        let sql = format!(
            "INSERT INTO storage_changes (id, team_id, mailbox_id, message_id, delta_bytes, created_at) VALUES {}",
            super::values_list(backend, chunk.len(), 6)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (team_id, mailbox_id, message_id, delta, at) in chunk {
            q = q
                .bind(format!("stc_{}", ulid::Ulid::new()))
                .bind(*team_id)
                .bind(*mailbox_id)
                .bind(*message_id)
                .bind(*delta)
                .bind(*at);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Records a change of the team's stored bytes (+ on store, - on delete).
pub async fn storage_change(
    conn: &mut Conn,
    team_id: &str,
    mailbox_id: Option<&str>,
    message_id: Option<&str>,
    delta_bytes: i64,
    at: i64,
) -> sqlx::Result<()> {
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
