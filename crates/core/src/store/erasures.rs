//! The blob erasure queue: bodies to erase once the rows pointing at them are gone,
//! queued in the same transaction as the deletion so a crash cannot leave them behind.

use super::writer::Writer;
use super::{Backend, Conn};

#[derive(serde::Serialize)]
struct Erasure<'a> {
    key: &'a str,
    created_at: i64,
}

/// The key that stands for every body of a team (see `erasure::erase_bodies`).
pub fn team_key(team_id: &str) -> String {
    format!("{team_id}/")
}

/// Queues `keys` for erasure inside the deleting transaction.
pub async fn queue(w: &mut impl Writer, keys: &[String], now: i64) -> anyhow::Result<()> {
    let rows: Vec<Erasure<'_>> = keys.iter().map(|key| Erasure { key, created_at: now }).collect();
    w.insert_rows("blob_erasures", "key, created_at", &rows, "ON CONFLICT (key) DO NOTHING").await?;
    Ok(())
}

/// Up to `limit` keys queued before `before` (ms): erasures a crash interrupted.
pub async fn pending(conn: &mut Conn, before: i64, limit: i64) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("SELECT key FROM blob_erasures WHERE created_at < $1 ORDER BY created_at LIMIT $2")
        .bind(before)
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// Forgets `keys`, whose bodies are erased.
pub async fn done(conn: &mut Conn, backend: Backend, keys: &[String]) -> sqlx::Result<()> {
    for chunk in keys.chunks(500) {
        let sql = format!("DELETE FROM blob_erasures WHERE key IN {}", super::values_list(backend, 1, chunk.len()));
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for key in chunk {
            q = q.bind(key);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}
