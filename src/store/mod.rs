//! The store: one connection pool over SQLite (embedded default) or PostgreSQL, the
//! migrations of both, and the queries grouped by aggregate. One SQL text serves both
//! engines: `$n` parameters, BIGINT millisecond timestamps, TEXT ids.

pub mod audit;
pub mod events;
pub mod inbound;
pub mod keys;
pub mod limits;
pub mod mailboxes;
pub mod outbound;
pub mod people;
pub mod providers;
pub mod usage;
pub mod webhooks;

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};
use std::str::FromStr;
use std::time::Duration;

use crate::config::Settings;

pub type Tx = sqlx::Transaction<'static, sqlx::Any>;
pub type Conn = sqlx::AnyConnection;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Store {
    /// Opens the pool named by the settings: PostgreSQL when `database_url` says so,
    /// otherwise a SQLite file (WAL) in the data folder.
    pub async fn connect(settings: &Settings) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let url = match &settings.database_url {
            Some(url) => url.expose().to_owned(),
            None => {
                std::fs::create_dir_all(&settings.data_dir)
                    .with_context(|| format!("creating data folder {}", settings.data_dir.display()))?;
                let path = settings.data_dir.join("sendmux.db");
                format!("sqlite://{}?mode=rwc", path.display())
            }
        };
        let backend = if url.starts_with("postgres") { Backend::Postgres } else { Backend::Sqlite };
        let options = AnyConnectOptions::from_str(&url).context("SENDMUX_DATABASE_URL is not a database URL")?;
        let pool = AnyPoolOptions::new()
            .max_connections(settings.database_max_connections)
            .acquire_timeout(Duration::from_secs(10))
            // A ping before every acquire is a round trip to the connection's worker
            // thread; an SQLite connection is a file handle in this process and cannot
            // go stale. PostgreSQL connections can (a server restart), so they are tested.
            .test_before_acquire(backend == Backend::Postgres)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; \
                             PRAGMA wal_autocheckpoint = 16384; \
                             PRAGMA journal_size_limit = 67108864;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .with_context(|| match backend {
                Backend::Sqlite => "opening the SQLite database in the data folder".to_owned(),
                Backend::Postgres => "connecting to PostgreSQL (SENDMUX_DATABASE_URL)".to_owned(),
            })?;
        Ok(Self { pool, backend })
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATOR,
            Backend::Postgres => &POSTGRES_MIGRATOR,
        };
        migrator.run(&self.pool).await.context("applying migrations")?;
        Ok(())
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A transaction that will write. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`) so a read-then-write never fails on a stale snapshot.
    pub async fn begin(&self) -> sqlx::Result<Tx> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// Serialises writers that check a team-wide count (limits) against each other.
    /// SQLite already holds the database write lock after `BEGIN IMMEDIATE`.
    pub async fn lock_team(&self, tx: &mut Tx, team_id: &str) -> sqlx::Result<()> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT id FROM teams WHERE id = $1 FOR UPDATE")
                .bind(team_id)
                .fetch_optional(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// SQLite: copies committed pages from the write-ahead log back into the database
    /// file, without waiting for or blocking writers. `serve` runs it in the background
    /// (`jobs::checkpoint_loop`) so commits do not pay for it; connections checkpoint by
    /// themselves only as a backstop, once the log reaches 64 MiB.
    pub async fn checkpoint(&self) -> sqlx::Result<()> {
        if self.backend == Backend::Sqlite {
            sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&self.pool).await?;
        }
        Ok(())
    }

    pub async fn ping(&self) -> sqlx::Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(|_| ())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The value stored under `name` in the instance settings table, written once.
    pub async fn instance_setting_or_insert(&self, name: &str, value: &str) -> sqlx::Result<String> {
        sqlx::query("INSERT INTO instance_settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(value)
            .execute(&self.pool)
            .await?;
        sqlx::query_scalar("SELECT value FROM instance_settings WHERE name = $1").bind(name).fetch_one(&self.pool).await
    }
}

/// The `VALUES` list of `rows` rows of `cols` parameters (an `IN (…)` list, for one).
/// SQLite gets anonymous `?` parameters: it resolves a numbered `$n` by scanning the
/// statement's parameter names, which is quadratic in a long list.
pub fn values_list(backend: Backend, rows: usize, cols: usize) -> String {
    let mut out = String::with_capacity(rows * cols * 5);
    for r in 0..rows {
        out.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..cols {
            if c > 0 {
                out.push_str(", ");
            }
            match backend {
                Backend::Sqlite => out.push('?'),
                Backend::Postgres => {
                    out.push('$');
                    out.push_str(&(r * cols + c + 1).to_string());
                }
            }
        }
        out.push(')');
    }
    out
}

/// Rows for [`insert_json`]: a JSON array of objects whose keys are column names.
/// Rows are usually serialised where they are made (`to_json_row`), on the task of the
/// request or session that made them, so a group commit only joins bytes.
#[derive(Debug, Default)]
pub struct JsonRows {
    array: String,
    len: usize,
}

impl JsonRows {
    pub fn new() -> Self {
        Self { array: String::from("["), len: 0 }
    }

    /// Adds one row already serialised as a JSON object.
    pub fn push_json(&mut self, object: &str) {
        if self.len > 0 {
            self.array.push(',');
        }
        self.array.push_str(object);
        self.len += 1;
    }

    /// Adds one row, serialising it.
    pub fn push<T: serde::Serialize>(&mut self, row: &T) {
        self.push_json(&to_json_row(row));
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn finish(mut self) -> String {
        self.array.push(']');
        self.array
    }
}

impl<T: serde::Serialize> FromIterator<T> for JsonRows {
    fn from_iter<I: IntoIterator<Item = T>>(rows: I) -> Self {
        let mut out = JsonRows::new();
        for row in rows {
            out.push(&row);
        }
        out
    }
}

/// One row as a JSON object. Serialising plain rows of strings and numbers cannot fail;
/// should it ever, the row becomes `null` and its insert fails on the NOT NULL columns,
/// inside the transaction, rather than panicking here.
pub fn to_json_row<T: serde::Serialize>(row: &T) -> String {
    serde_json::to_string(row).unwrap_or_else(|_| "null".to_owned())
}

/// Inserts every row of `rows` into `table` with one statement and one round trip,
/// whatever their number: the rows travel as one JSON parameter that the engine
/// unpacks (SQLite `json_each`, PostgreSQL `json_populate_recordset` with the table's
/// own column types), in order. `columns` lists the columns to fill, comma-separated,
/// each a key of the row objects; `tail` follows the statement (`ON CONFLICT …`).
///
/// One statement text per table keeps it in the prepared-statement cache, and on
/// SQLite, where every statement is a round trip to the connection's worker thread,
/// a batch costs one trip instead of one per row or per chunk of rows.
pub async fn insert_json(
    conn: &mut Conn,
    backend: Backend,
    table: &str,
    columns: &str,
    rows: JsonRows,
    tail: &str,
) -> sqlx::Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let sql = json_insert_sql(backend, table, columns, tail);
    Ok(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(rows.finish()).execute(conn).await?.rows_affected())
}

pub fn json_insert_sql(backend: Backend, table: &str, columns: &str, tail: &str) -> String {
    match backend {
        // `WHERE true` keeps an `ON CONFLICT` tail from parsing as a join constraint.
        Backend::Sqlite => {
            let values: Vec<String> = columns.split(',').map(|c| format!("value ->> '{}'", c.trim())).collect();
            format!(
                "INSERT INTO {table} ({columns}) SELECT {} FROM jsonb_each($1) WHERE true {tail}",
                values.join(", ")
            )
        }
        Backend::Postgres => format!(
            "INSERT INTO {table} ({columns}) SELECT {columns} FROM json_populate_recordset(NULL::{table}, $1::json) \
             WITH ORDINALITY AS r ORDER BY r.ordinality {tail}"
        ),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// RFC 3339 with second precision in UTC, as SPEC §1 shows.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub fn rfc3339_opt(ms: Option<i64>) -> Option<String> {
    ms.map(rfc3339)
}

/// A page of rows fetched with one extra row to learn whether another page follows.
pub fn page<T>(mut rows: Vec<T>, limit: usize, id: impl Fn(&T) -> String) -> (Vec<T>, Option<String>) {
    if rows.len() > limit {
        rows.truncate(limit);
        let next = rows.last().map(id);
        (rows, next)
    } else {
        (rows, None)
    }
}

#[cfg(test)]
mod json_rows_tests {
    use super::*;

    #[test]
    fn rows_join_into_one_json_array_in_order() {
        let mut rows: JsonRows = [serde_json::json!({"id": "a", "n": 1})].into_iter().collect();
        rows.push_json(r#"{"id":"b","n":null}"#);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows.finish(), r#"[{"id":"a","n":1},{"id":"b","n":null}]"#);
        assert_eq!(JsonRows::new().finish(), "[]");
        assert_eq!(values_list(Backend::Sqlite, 2, 2), "(?, ?), (?, ?)");
        assert_eq!(values_list(Backend::Postgres, 2, 2), "($1, $2), ($3, $4)");
    }

    #[test]
    fn each_engine_unpacks_the_json_parameter_by_column_name() {
        assert_eq!(
            json_insert_sql(Backend::Sqlite, "t", "id, n", "ON CONFLICT (id) DO NOTHING"),
            "INSERT INTO t (id, n) SELECT value ->> 'id', value ->> 'n' FROM jsonb_each($1) WHERE true \
             ON CONFLICT (id) DO NOTHING"
        );
        assert_eq!(
            json_insert_sql(Backend::Postgres, "t", "id, n", ""),
            "INSERT INTO t (id, n) SELECT id, n FROM json_populate_recordset(NULL::t, $1::json) \
             WITH ORDINALITY AS r ORDER BY r.ordinality "
        );
    }
}
