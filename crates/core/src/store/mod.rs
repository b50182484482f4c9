//! The store: one connection pool over SQLite (embedded default) or PostgreSQL, the
//! migrations of both, and the queries grouped by aggregate. One SQL text serves both
//! engines: `$n` parameters, BIGINT millisecond timestamps, TEXT ids.

pub mod audit;
mod bind;
pub mod changes;
pub mod domains;
pub mod erasures;
pub mod events;
pub mod inbound;
pub mod keys;
pub mod limits;
pub mod mailboxes;
pub mod outbound;
pub mod people;
pub mod providers;
pub mod threads;
pub mod usage;
pub mod webhooks;
pub mod writer;

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::str::FromStr;
use std::time::Duration;

use crate::config::Settings;

pub type Conn = sqlx::AnyConnection;

/// A connection bound to one team: every query of a team-owned table goes through one
/// (the store's functions for those tables take a `Team`, never a team id), so a query
/// without its tenant cannot be written. Made from a [`TeamId`](crate::ids::TeamId) —
/// the caller's, from its credential — with [`TeamScope::team`].
pub struct Team<'a> {
    conn: &'a mut Conn,
    team: &'a crate::ids::TeamId,
}

impl Team<'_> {
    pub fn id(&self) -> &crate::ids::TeamId {
        self.team
    }

    /// The connection and the team's id, for the query functions of this module.
    pub(crate) fn split(&mut self) -> (&mut Conn, &str) {
        (&mut *self.conn, self.team.as_str())
    }
}

/// Binds a connection (or a transaction) to one team.
pub trait TeamScope {
    fn team<'a>(&'a mut self, team: &'a crate::ids::TeamId) -> Team<'a>;
}

impl TeamScope for Conn {
    fn team<'a>(&'a mut self, team: &'a crate::ids::TeamId) -> Team<'a> {
        Team { conn: self, team }
    }
}

/// A write transaction ([`Store::begin`]); it derefs to sqlx's. On SQLite it also holds
/// this process's turn to write (see `Store::writers`).
pub struct Tx {
    inner: sqlx::Transaction<'static, sqlx::Any>,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl std::ops::Deref for Tx {
    type Target = sqlx::Transaction<'static, sqlx::Any>;
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inner
    }
}

impl Tx {
    pub async fn commit(self) -> sqlx::Result<()> {
        self.inner.commit().await
    }
}

/// A pool connection for statements that write outside a transaction
/// ([`Store::write_conn`]); on SQLite it holds this process's turn to write.
pub struct WriteConn {
    conn: sqlx::pool::PoolConnection<sqlx::Any>,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl std::ops::Deref for WriteConn {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.conn
    }
}

impl std::ops::DerefMut for WriteConn {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.conn
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The database file, on SQLite.
    sqlite_path: Option<std::path::PathBuf>,
    /// SQLite: this process's writers take turns here, first come first served, before
    /// `BEGIN IMMEDIATE`. SQLite's own lock is not fair: a writer that finds it taken
    /// sleeps in growing steps (up to 100 ms) and tries again, so against a committer
    /// that writes batch after batch it loses nearly every time — a webhook claim was
    /// seen waiting over a second — and after `busy_timeout` fails.
    writers: Option<std::sync::Arc<tokio::sync::Mutex<()>>>,
}

/// How long a writer waits for its turn, as SQLite's `busy_timeout` would.
const WRITE_TURN_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes of write-ahead log past which [`Store::checkpoint`] starts it over: well under
/// the connections' own backstop (`wal_autocheckpoint` in [`SQLITE_PRAGMAS`]).
pub(crate) const WAL_RESTART_BYTES: i64 = 16 << 20;

/// Every SQLite connection's settings: 16 KiB pages for a new database (a queued
/// message with its ~2 KB request spans fewer pages, so a commit appends fewer log
/// frames, each a write of its own: +9 % accepted sends, measured side by side; a
/// database made before keeps its 4 KiB pages), the write-ahead log, durable commits,
/// foreign keys, waiting for the write lock rather than failing, and checkpoints left to
/// `jobs::checkpoint_loop` (the connections' own backstop is 16,384 frames).
pub const SQLITE_PRAGMAS: &str = "PRAGMA page_size = 16384; PRAGMA journal_mode = WAL; \
     PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; \
     PRAGMA wal_autocheckpoint = 16384; PRAGMA journal_size_limit = 67108864;";

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
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&settings.data_dir)
                    .with_context(|| format!("creating data folder {}", settings.data_dir.display()))?;
                let path = settings.data_dir.join("sendmux.db");
                format!("sqlite://{}?mode=rwc", path.display())
            }
        };
        // SQLite creates its file with 0644 less the umask, and gives the -wal, -shm and
        // journal files the database file's permissions: create it 0600 first (API.md §13).
        if url.starts_with("sqlite:") && url.contains("mode=rwc") {
            let file = sqlx::sqlite::SqliteConnectOptions::from_str(&url).ok().map(|o| o.get_filename().to_path_buf());
            if let Some(file) = file.filter(|f| !f.as_os_str().is_empty() && f.as_os_str() != ":memory:") {
                match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&file) {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e).with_context(|| format!("creating {}", file.display())),
                }
            }
        }
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
                        conn.execute(SQLITE_PRAGMAS).await?;
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
        // The committers open their own connection to the same file (`writer::BatchConn`);
        // an in-memory database cannot be shared that way, and keeps to the pool.
        let sqlite_path = match backend {
            Backend::Sqlite => sqlx::sqlite::SqliteConnectOptions::from_str(&url)
                .ok()
                .map(|o| o.get_filename().to_path_buf())
                .filter(|p| !p.as_os_str().is_empty() && p.as_os_str() != ":memory:"),
            Backend::Postgres => None,
        };
        let writers = (backend == Backend::Sqlite).then(Default::default);
        Ok(Self { pool, backend, sqlite_path, writers })
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

    /// The database file, on SQLite.
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        self.sqlite_path.as_deref()
    }

    /// A transaction that will write. On SQLite it waits for this process's turn to
    /// write, then takes the write lock up front (`BEGIN IMMEDIATE`) so a
    /// read-then-write never fails on a stale snapshot.
    pub async fn begin(&self) -> sqlx::Result<Tx> {
        let turn = self.turn_within(WRITE_TURN_TIMEOUT).await?;
        let inner = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(Tx { inner, _turn: turn })
    }

    /// A connection for statements that write on their own (claims, expiry, sessions),
    /// holding this process's turn to write on SQLite as long as it lives. Reads need
    /// no turn: take them from [`Store::pool`].
    pub async fn write_conn(&self) -> sqlx::Result<WriteConn> {
        let turn = self.turn_within(WRITE_TURN_TIMEOUT).await?;
        Ok(WriteConn { conn: self.pool.acquire().await?, _turn: turn })
    }

    async fn turn_within(&self, limit: Duration) -> sqlx::Result<Option<tokio::sync::OwnedMutexGuard<()>>> {
        match &self.writers {
            Some(writers) => Ok(Some(
                tokio::time::timeout(limit, writers.clone().lock_owned())
                    .await
                    .map_err(|_| sqlx::Error::PoolTimedOut)?,
            )),
            None => Ok(None),
        }
    }

    /// Waits for this process's turn to write on SQLite (see `writers`), however long
    /// it takes; the turn lasts as long as the guard. For the committers, which run
    /// off the runtime and are themselves the writers everyone else waits behind.
    pub(crate) async fn write_turn(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match &self.writers {
            Some(writers) => Some(writers.clone().lock_owned().await),
            None => None,
        }
    }

    /// Serialises writers that check a team-wide count (limits) against each other.
    /// SQLite already holds the database write lock after `BEGIN IMMEDIATE`.
    pub async fn lock_team(&self, tx: &mut Tx, team_id: &str) -> sqlx::Result<()> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT id FROM teams WHERE id = $1 FOR UPDATE")
                .bind(team_id)
                .fetch_optional(&mut ***tx)
                .await?;
        }
        Ok(())
    }

    /// SQLite: copies committed pages from the write-ahead log back into the database
    /// file, without waiting for or blocking writers. `serve` runs it in the background
    /// (`jobs::checkpoint_loop`) so commits do not pay for it.
    ///
    /// The log only starts over when a writer begins after a checkpoint copied all of
    /// it, and under the committers' steady stream of commits no copy ever catches up
    /// between two of them: left alone the log grew past 1 GiB. So once it is long, this
    /// takes a turn at writing — no writer of this process is then inside a transaction,
    /// and the committers wait their turn like everyone (see `writers`) — and restarts
    /// it, copying the little the passive copy left. A reader still on an old snapshot
    /// makes it give up at once rather than hold every writer back; the next round tries
    /// again.
    pub async fn checkpoint(&self) -> sqlx::Result<()> {
        if self.backend != Backend::Sqlite {
            return Ok(());
        }
        let (_, frames, _): (i64, i64, i64) =
            sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&self.pool).await?;
        let page_size: i64 = sqlx::query_scalar("PRAGMA page_size").fetch_one(&self.pool).await?;
        if frames * page_size > WAL_RESTART_BYTES {
            let mut conn = self.write_conn().await?;
            conn.execute("PRAGMA busy_timeout = 0").await?;
            let restarted: sqlx::Result<(i64, i64, i64)> =
                sqlx::query_as("PRAGMA wal_checkpoint(RESTART)").fetch_one(&mut *conn).await;
            conn.execute("PRAGMA busy_timeout = 10000").await?;
            let outcome = if restarted?.0 == 0 { "restarted" } else { "busy" };
            metrics::counter!("sendmux_sqlite_wal_restarts_total", "outcome" => outcome).increment(1);
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

/// Inserts `rows` (a JSON array of objects whose keys are column names) into `table`
/// with one statement and one round trip, whatever their number: the engine unpacks
/// the one JSON parameter (SQLite `jsonb_each`, PostgreSQL `json_populate_recordset`
/// with the table's own column types), in order. `columns` lists the columns to fill,
/// comma-separated; `tail` follows the statement (`ON CONFLICT …`). One statement text
/// per table keeps it in the prepared-statement cache. Used through sqlx
/// (`writer::Writer::insert_rows`), where every statement is a round trip.
async fn insert_json(
    conn: &mut Conn,
    backend: Backend,
    table: &str,
    columns: &str,
    rows: String,
    tail: &str,
) -> sqlx::Result<u64> {
    let sql = json_insert_sql(backend, table, columns, tail);
    Ok(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(rows).execute(conn).await?.rows_affected())
}

fn json_insert_sql(backend: Backend, table: &str, columns: &str, tail: &str) -> String {
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

/// RFC 3339 with second precision in UTC, as API.md §1 shows.
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
        assert_eq!(values_list(Backend::Sqlite, 2, 2), "(?, ?), (?, ?)");
        assert_eq!(values_list(Backend::Postgres, 2, 2), "($1, $2), ($3, $4)");
    }
}
