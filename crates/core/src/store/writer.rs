//! The statements of the hot write paths (group commits of accepted and inbound mail,
//! the send workers' results, the event log and its outbox), written once against
//! [`Writer`] and run either in a sqlx transaction or, on SQLite, in a transaction of a
//! committer thread's own connection.
//!
//! Why a connection of its own: through sqlx every SQLite statement is a round trip to
//! the connection's worker thread — two thread wake-ups, ~60 µs on a 2-core VM even when
//! idle and several times that under load — and a group commit makes four to six of
//! them while every sender in the group waits. A committer thread that owns a
//! connection (rusqlite, on the same file and the same bundled SQLite) runs them as
//! plain calls: its futures are always ready, and one poll runs them.

use std::future::Future;

use serde::Serialize;

use super::Backend;

/// Past this many bytes of JSON, rows go in another statement.
const JSON_PARAMETER_BYTES: usize = 32 << 20;

/// What an earlier request with the same idempotency key left.
#[derive(sqlx::FromRow, Debug, Clone)]
pub struct IdempotencyRow {
    pub request_hash: String,
    pub status_code: Option<i64>,
    pub response: Option<String>,
}

/// A transaction that batch writers write in.
pub trait Writer {
    fn backend(&self) -> Backend;

    /// Inserts `rows` into `table`; `columns` (comma-separated) are the rows' fields,
    /// in order; `tail` follows the statement (`ON CONFLICT …`). Returns how many went
    /// in.
    fn insert_rows<T: Serialize>(
        &mut self,
        table: &str,
        columns: &str,
        rows: &[T],
        tail: &str,
    ) -> impl Future<Output = anyhow::Result<u64>>;

    /// The team's enabled webhooks, for fanning its events out.
    fn subscribers(&mut self, team_id: &str) -> impl Future<Output = anyhow::Result<Vec<Subscriber>>>;

    /// Serialises appends to the team's event log until this transaction ends, so log
    /// order is commit order, and tells every node, when it commits, that the log grew:
    /// on PostgreSQL one statement, a transaction-scoped advisory lock and a `NOTIFY`.
    /// SQLite's write lock already serialises, and its one node's bus is rung by the
    /// committer.
    fn lock_log(&mut self, team_id: &str) -> impl Future<Output = anyhow::Result<()>>;

    /// Reserves an idempotency key: `None` when this call took it, otherwise what the
    /// request that holds it left. An expired key is taken over.
    fn idempotency_reserve(
        &mut self,
        key: &IdempotencyKey<'_>,
    ) -> impl Future<Output = anyhow::Result<Option<IdempotencyRow>>>;

    /// Stores the answer of the request that reserved `key`.
    fn idempotency_save(
        &mut self,
        key: &IdempotencyKey<'_>,
        status: i64,
        response: &str,
    ) -> impl Future<Output = anyhow::Result<()>>;
}

/// An idempotency key of a send request, scoped to its team and delivery group.
pub struct IdempotencyKey<'a> {
    pub team_id: &'a str,
    pub scope: &'a str,
    pub key: &'a str,
    /// SHA-256 of the request body, hex.
    pub hash: &'a str,
    pub now: i64,
    /// Keys older than this are expired.
    pub ttl_ms: i64,
}

const SUBSCRIBERS: &str = "SELECT id, event_types, mailbox_ids FROM webhooks WHERE team_id = $1 AND enabled = 1";
const IDEMPOTENCY_EXPIRE: &str =
    "DELETE FROM idempotency_keys WHERE team_id = $1 AND scope = $2 AND idem_key = $3 AND created_at < $4";
const IDEMPOTENCY_INSERT: &str = "INSERT INTO idempotency_keys (team_id, scope, idem_key, request_hash, created_at) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (team_id, scope, idem_key) DO NOTHING";
const IDEMPOTENCY_GET: &str = "SELECT request_hash, status_code, response FROM idempotency_keys WHERE team_id = $1 AND scope = $2 AND idem_key = $3";
const IDEMPOTENCY_SAVE: &str =
    "UPDATE idempotency_keys SET status_code = $4, response = $5 WHERE team_id = $1 AND scope = $2 AND idem_key = $3";

impl Writer for super::Tx {
    fn backend(&self) -> Backend {
        if (***self).backend_name().eq_ignore_ascii_case("sqlite") { Backend::Sqlite } else { Backend::Postgres }
    }

    /// One statement for the rows, which travel as one JSON parameter — or a few, each
    /// at most [`JSON_PARAMETER_BYTES`] long (a PostgreSQL message holds at most 1 GB,
    /// and a group of accepted mail with large attachments could exceed it).
    async fn insert_rows<T: Serialize>(
        &mut self,
        table: &str,
        columns: &str,
        rows: &[T],
        tail: &str,
    ) -> anyhow::Result<u64> {
        let backend = self.backend();
        let mut inserted = 0;
        let mut array = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            array.push(if array.is_empty() { b'[' } else { b',' });
            serde_json::to_writer(&mut array, row)?;
            if array.len() >= JSON_PARAMETER_BYTES || i + 1 == rows.len() {
                array.push(b']');
                let json = String::from_utf8(std::mem::take(&mut array))?;
                inserted += super::insert_json(self, backend, table, columns, json, tail).await?;
            }
        }
        Ok(inserted)
    }

    async fn subscribers(&mut self, team_id: &str) -> anyhow::Result<Vec<Subscriber>> {
        Ok(sqlx::query_as(SUBSCRIBERS).bind(team_id).fetch_all(&mut ***self).await?)
    }

    async fn lock_log(&mut self, team_id: &str) -> anyhow::Result<()> {
        if self.backend() == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7)), pg_notify('sendmux_events', $1)")
                .bind(team_id)
                .execute(&mut ***self)
                .await?;
        }
        Ok(())
    }

    async fn idempotency_reserve(&mut self, k: &IdempotencyKey<'_>) -> anyhow::Result<Option<IdempotencyRow>> {
        sqlx::query(IDEMPOTENCY_EXPIRE)
            .bind(k.team_id)
            .bind(k.scope)
            .bind(k.key)
            .bind(k.now - k.ttl_ms)
            .execute(&mut ***self)
            .await?;
        let done = sqlx::query(IDEMPOTENCY_INSERT)
            .bind(k.team_id)
            .bind(k.scope)
            .bind(k.key)
            .bind(k.hash)
            .bind(k.now)
            .execute(&mut ***self)
            .await?;
        if done.rows_affected() == 1 {
            return Ok(None);
        }
        Ok(sqlx::query_as(IDEMPOTENCY_GET)
            .bind(k.team_id)
            .bind(k.scope)
            .bind(k.key)
            .fetch_optional(&mut ***self)
            .await?)
    }

    async fn idempotency_save(&mut self, k: &IdempotencyKey<'_>, status: i64, response: &str) -> anyhow::Result<()> {
        sqlx::query(IDEMPOTENCY_SAVE)
            .bind(k.team_id)
            .bind(k.scope)
            .bind(k.key)
            .bind(status)
            .bind(response)
            .execute(&mut ***self)
            .await?;
        Ok(())
    }
}

/// Group committers of one kind on PostgreSQL: each holds a pool connection while it
/// writes. Two, not more: where the database shares the node's cores, throughput is
/// bound by its CPU, and every extra committer splits the waiting work into smaller
/// batches, each paying a transaction's fixed statements (inbound on a 2-core machine:
/// 1,030-1,160 msg/s with one, 1,030-1,090 with two, 980-1,000 with four). Two keep
/// one slow group — a team whose log is held up — from stopping everyone.
pub const POSTGRES_COMMITTERS: usize = 2;

/// What a group committer writes in one transaction.
pub trait Batch {
    fn write(&mut self, w: &mut impl Writer) -> impl Future<Output = anyhow::Result<()>>;
}

/// Where a group committer writes its batches: on SQLite a connection of its own,
/// used only from the committer's thread; on PostgreSQL the pool, from a task of the
/// shared runtime (a pool connection stays tied to the runtime that opened it).
pub enum BatchConn {
    Direct(rusqlite::Connection, super::Store),
    Pool(super::Store),
}

impl BatchConn {
    pub fn open(store: &super::Store) -> anyhow::Result<BatchConn> {
        match store.sqlite_path() {
            Some(path) => {
                let conn = rusqlite::Connection::open(path)?;
                conn.execute_batch(super::SQLITE_PRAGMAS)?;
                Ok(BatchConn::Direct(conn, store.clone()))
            }
            None => Ok(BatchConn::Pool(store.clone())),
        }
    }

    /// The committers of one kind a store runs at once. SQLite: one, on the one write
    /// lock. PostgreSQL: [`POSTGRES_COMMITTERS`] (fewer on a small pool), whose
    /// transactions overlap — while one waits for its commit's WAL flush the next
    /// writes its rows — so a group no longer waits for the one before it to end.
    pub fn open_all(store: &super::Store) -> anyhow::Result<Vec<BatchConn>> {
        match store.sqlite_path() {
            Some(_) => Ok(vec![BatchConn::open(store)?]),
            None => {
                let pool = store.pool().options().get_max_connections() as usize;
                let n = (pool / 4).clamp(1, POSTGRES_COMMITTERS);
                Ok((0..n).map(|_| BatchConn::Pool(store.clone())).collect())
            }
        }
    }

    /// Writes `batch` in one transaction that holds the write lock from its start (as
    /// `Store::begin` does) and commits it; nothing of it is kept on an error.
    pub async fn write(&mut self, batch: &mut impl Batch) -> anyhow::Result<()> {
        match self {
            BatchConn::Direct(conn, store) => {
                let _turn = store.write_turn().await;
                let mut tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                in_place(batch.write(&mut tx))?;
                Ok(tx.commit()?)
            }
            BatchConn::Pool(store) => {
                let mut tx = store.begin().await?;
                batch.write(&mut tx).await?;
                Ok(tx.commit().await?)
            }
        }
    }

    /// Runs `committer`, a loop that ends when its queue closes, where its connection
    /// wants it: a thread of its own for a direct connection, else the shared runtime.
    pub fn spawn<F>(self, name: &str, committer: impl FnOnce(BatchConn) -> F + Send + 'static) -> anyhow::Result<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        match self {
            BatchConn::Direct(..) => {
                std::thread::Builder::new()
                    .name(name.to_owned())
                    .spawn(move || futures::executor::block_on(committer(self)))?;
            }
            BatchConn::Pool(_) => {
                tokio::spawn(committer(self));
            }
        }
        Ok(())
    }
}

/// Runs a write on the direct connection, whose futures never wait: one poll, in place.
/// (Not an executor's `block_on`: the committer's own loop already runs in one.)
fn in_place<T>(write: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    let mut write = std::pin::pin!(write);
    match write.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(result) => result,
        std::task::Poll::Pending => Err(anyhow::anyhow!("a direct SQLite write waited; it never should")),
    }
}

/// The statement texts above with SQLite's numbered parameters: to SQLite `$4` is a
/// parameter *named* "$4", numbered by first appearance; `?4` is the fourth.
fn numbered(sql: &str) -> String {
    sql.replace('$', "?")
}

impl Writer for rusqlite::Transaction<'_> {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    /// A prepared insert run once per row, its parameters bound straight from the rows.
    async fn insert_rows<T: Serialize>(
        &mut self,
        table: &str,
        columns: &str,
        rows: &[T],
        tail: &str,
    ) -> anyhow::Result<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        let names: Vec<&str> = columns.split(',').map(str::trim).collect();
        let params: Vec<String> = (1..=names.len()).map(|i| format!("?{i}")).collect();
        let sql = format!("INSERT INTO {table} ({columns}) VALUES ({}) {tail}", params.join(", "));
        let mut stmt = self.prepare_cached(&sql)?;
        let mut inserted = 0;
        for row in rows {
            super::bind::bind_row(&mut stmt, &names, row)?;
            inserted += stmt.raw_execute()? as u64;
        }
        Ok(inserted)
    }

    async fn subscribers(&mut self, team_id: &str) -> anyhow::Result<Vec<Subscriber>> {
        let mut stmt = self.prepare_cached(&numbered(SUBSCRIBERS))?;
        let rows = stmt.query_map([team_id], |r| {
            Ok(Subscriber { id: r.get(0)?, event_types: r.get(1)?, mailbox_ids: r.get(2)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    async fn lock_log(&mut self, _team_id: &str) -> anyhow::Result<()> {
        Ok(())
    }

    async fn idempotency_reserve(&mut self, k: &IdempotencyKey<'_>) -> anyhow::Result<Option<IdempotencyRow>> {
        use rusqlite::OptionalExtension;
        self.prepare_cached(&numbered(IDEMPOTENCY_EXPIRE))?.execute(rusqlite::params![
            k.team_id,
            k.scope,
            k.key,
            k.now - k.ttl_ms
        ])?;
        let taken = self
            .prepare_cached(&numbered(IDEMPOTENCY_INSERT))?
            .execute(rusqlite::params![k.team_id, k.scope, k.key, k.hash, k.now])?;
        if taken == 1 {
            return Ok(None);
        }
        Ok(self
            .prepare_cached(&numbered(IDEMPOTENCY_GET))?
            .query_row(rusqlite::params![k.team_id, k.scope, k.key], |r| {
                Ok(IdempotencyRow { request_hash: r.get(0)?, status_code: r.get(1)?, response: r.get(2)? })
            })
            .optional()?)
    }

    async fn idempotency_save(&mut self, k: &IdempotencyKey<'_>, status: i64, response: &str) -> anyhow::Result<()> {
        self.prepare_cached(&numbered(IDEMPOTENCY_SAVE))?
            .execute(rusqlite::params![k.team_id, k.scope, k.key, status, response])?;
        Ok(())
    }
}

/// What fanning an event out needs of an enabled webhook.
#[derive(sqlx::FromRow, Debug, Clone)]
pub struct Subscriber {
    pub id: String,
    /// Comma list.
    pub event_types: String,
    /// Comma list; None means every mailbox.
    pub mailbox_ids: Option<String>,
}

impl Subscriber {
    /// Whether an event of `kind` about `mailbox_id` goes to this endpoint.
    pub fn wants(&self, kind: &str, mailbox_id: Option<&str>) -> bool {
        let type_ok = self.event_types.split(',').any(|t| t == kind);
        let mailbox_ok = match (&self.mailbox_ids, mailbox_id) {
            (None, _) => true,
            (Some(ids), Some(m)) => ids.split(',').any(|id| id == m),
            (Some(_), None) => false,
        };
        type_ok && mailbox_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    struct Filler(Vec<String>);

    impl Batch for Filler {
        async fn write(&mut self, w: &mut impl Writer) -> anyhow::Result<()> {
            #[derive(Serialize)]
            struct Row<'a> {
                name: &'a str,
                value: &'a str,
            }
            let rows: Vec<Row> = self.0.iter().map(|v| Row { name: v, value: v }).collect();
            w.insert_rows("instance_settings", "name, value", &rows, "").await.map(|_| ())
        }
    }

    /// Under a steady stream of batches, with the background checkpoint running as
    /// `serve` runs it, the log is restarted near its threshold rather than growing
    /// (without the restart it grows with every batch: the connections' own backstop is
    /// 16,384 frames, 256 MiB at 16 KiB pages).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_write_ahead_log_stays_short_under_steady_batches() {
        let dir = tempfile::tempdir().unwrap();
        let env = vec![("SENDMUX_DATA_DIR".to_owned(), dir.path().display().to_string())];
        let store = super::super::Store::connect(&Settings::from_sources(None, &env).unwrap()).await.unwrap();
        store.migrate().await.unwrap();
        let wal = store.sqlite_path().unwrap().with_extension("db-wal");
        let checkpoints = {
            let store = store.clone();
            tokio::spawn(async move {
                loop {
                    store.checkpoint().await.unwrap();
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            })
        };
        let mut conn = BatchConn::open(&store).unwrap();
        let mut longest = 0;
        // About 160 MiB of rows, in batches of 1 MiB.
        for n in 0..160 {
            let values = (0..256).map(|i| format!("{n}-{i}-{}", "x".repeat(4000))).collect();
            conn.write(&mut Filler(values)).await.unwrap();
            longest = longest.max(std::fs::metadata(&wal).unwrap().len());
        }
        checkpoints.abort();
        // Restarted at 16 MiB it stays near that (53 MiB seen with the checkpoint task
        // starved by a parallel test run); left alone it reaches ~258 MiB.
        assert!(longest < 128 << 20, "the log grew to {} MiB", longest >> 20);
        let kept: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM instance_settings").fetch_one(store.pool()).await.unwrap();
        assert!(kept >= 160 * 256, "{kept}");
    }
}
