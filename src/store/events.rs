//! The event log: events written in the transaction of what caused them, read back in
//! log order. A reader that resumes after an event never skips one that commits later:
//! appends of one team are serialised until commit (SQLite: the database write lock;
//! PostgreSQL: a transaction-scoped advisory lock per team), so `seq` order is commit
//! order within a team, and every reader reads within one team.

use super::{Backend, Conn, Tx, now_ms};
use crate::ids::EventId;

#[derive(sqlx::FromRow, Debug, Clone)]
pub struct EventRow {
    pub seq: i64,
    pub id: String,
    pub team_id: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub mailbox_id: Option<String>,
    pub delivery_group_id: Option<String>,
    pub message_id: Option<String>,
    pub payload: String,
    pub created_at: i64,
}

const COLUMNS: &str = "seq, id, team_id, type, mailbox_id, delivery_group_id, message_id, payload, created_at";

/// What an event is about, besides its type and data.
#[derive(Debug, Default, Clone)]
pub struct Subject<'a> {
    pub mailbox_id: Option<&'a str>,
    pub delivery_group_id: Option<&'a str>,
    pub message_id: Option<&'a str>,
}

/// Appends an event to the team's log inside `tx`; commit order is log order.
/// `data` becomes the event's `data`; the stored payload is the exact JSON sent to
/// webhooks and streams: `{"id", "type", "created_at", "data"}`.
pub async fn append(
    backend: Backend,
    tx: &mut Tx,
    team_id: &str,
    kind: &str,
    subject: Subject<'_>,
    data: serde_json::Value,
) -> sqlx::Result<EventRow> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))").bind(team_id).execute(&mut **tx).await?;
    }
    let id = EventId::new().into_string();
    let created_at = now_ms();
    let payload = serde_json::json!({
        "id": id,
        "type": kind,
        "created_at": super::rfc3339(created_at),
        "data": data,
    })
    .to_string();
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO events (id, team_id, type, mailbox_id, delivery_group_id, message_id, payload, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING seq",
    )
    .bind(&id)
    .bind(team_id)
    .bind(kind)
    .bind(subject.mailbox_id)
    .bind(subject.delivery_group_id)
    .bind(subject.message_id)
    .bind(&payload)
    .bind(created_at)
    .fetch_one(&mut **tx)
    .await?;
    Ok(EventRow {
        seq,
        id,
        team_id: team_id.to_owned(),
        kind: kind.to_owned(),
        mailbox_id: subject.mailbox_id.map(str::to_owned),
        delivery_group_id: subject.delivery_group_id.map(str::to_owned),
        message_id: subject.message_id.map(str::to_owned),
        payload,
        created_at,
    })
}

pub async fn get(conn: &mut Conn, team_id: &str, id: &str) -> sqlx::Result<Option<EventRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM events WHERE team_id = $1 AND id = $2")))
        .bind(team_id)
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Newest first, for the events list: before the event `before_seq`, optionally of one type.
pub async fn list(
    conn: &mut Conn,
    team_id: &str,
    kind: Option<&str>,
    before_seq: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<EventRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM events WHERE team_id = $1 AND ($2 IS NULL OR type = $2) \
         AND ($3 IS NULL OR seq < $3) ORDER BY seq DESC LIMIT $4"
    )))
    .bind(team_id)
    .bind(kind)
    .bind(before_seq)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Oldest first after `after_seq`, for resuming readers (streams), optionally of one mailbox.
pub async fn after(
    conn: &mut Conn,
    team_id: &str,
    mailbox_id: Option<&str>,
    after_seq: i64,
    limit: i64,
) -> sqlx::Result<Vec<EventRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM events WHERE team_id = $1 AND ($2 IS NULL OR mailbox_id = $2) AND seq > $3 \
         ORDER BY seq LIMIT $4"
    )))
    .bind(team_id)
    .bind(mailbox_id)
    .bind(after_seq)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Deletes events older than `cutoff` (ms); returns how many went.
pub async fn delete_older_than(conn: &mut Conn, cutoff: i64) -> sqlx::Result<u64> {
    Ok(sqlx::query("DELETE FROM events WHERE created_at < $1").bind(cutoff).execute(conn).await?.rows_affected())
}

/// Appends several events in one statement per 16 (group commit of accepted mail). On
/// PostgreSQL the teams' append locks are taken in id order, so concurrent writers of
/// several teams cannot deadlock on them.
pub async fn append_many(
    backend: Backend,
    tx: &mut Tx,
    items: &[(&str, &str, Subject<'_>, serde_json::Value)],
) -> sqlx::Result<()> {
    if backend == Backend::Postgres {
        let mut teams: Vec<&str> = items.iter().map(|i| i.0).collect();
        teams.sort_unstable();
        teams.dedup();
        for team in teams {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))").bind(team).execute(&mut **tx).await?;
        }
    }
    let created_at = now_ms();
    for chunk in items.chunks(16) {
        let marks: Vec<String> = (0..chunk.len())
            .map(|r| {
                let b = r * 8;
                format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 7,
                    b + 8
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO events (id, team_id, type, mailbox_id, delivery_group_id, message_id, payload, created_at) VALUES {}",
            marks.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (team_id, kind, subject, data) in chunk {
            let id = EventId::new().into_string();
            let payload = serde_json::json!({
                "id": id,
                "type": kind,
                "created_at": super::rfc3339(created_at),
                "data": data,
            })
            .to_string();
            q = q
                .bind(id)
                .bind(*team_id)
                .bind(*kind)
                .bind(subject.mailbox_id)
                .bind(subject.delivery_group_id)
                .bind(subject.message_id)
                .bind(payload)
                .bind(created_at);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}
