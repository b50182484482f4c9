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

/// The `VALUES` list of a multi-row insert of `rows` rows of `cols` columns.
/// SQLite gets anonymous `?` parameters: it resolves a numbered `$n` by scanning the
/// statement's parameter names, which is quadratic in a wide insert.
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

/// Most rows per multi-row insert: 32 rows of up to 19 columns stay well under both
/// engines' parameter limits.
pub const INSERT_CHUNK: usize = 32;

/// Splits `rows` for multi-row inserts into chunks of 32, 16, 8, 4, 2 or 1 rows, so
/// each table's insert has at most six statement texts and they all stay in the
/// connection's prepared-statement cache (a text per batch size would not).
pub fn insert_chunks<T>(rows: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = INSERT_CHUNK.min(1 << rest.len().ilog2());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
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
mod chunk_tests {
    use super::*;

    #[test]
    fn inserts_are_split_into_a_few_fixed_sizes_keeping_every_row_in_order() {
        let rows: Vec<usize> = (0..77).collect();
        let sizes: Vec<usize> = insert_chunks(&rows).map(<[usize]>::len).collect();
        assert_eq!(sizes, [32, 32, 8, 4, 1]);
        assert_eq!(insert_chunks(&rows).flatten().copied().collect::<Vec<_>>(), rows);
        assert_eq!(insert_chunks::<u8>(&[]).count(), 0);
        assert_eq!(values_list(Backend::Sqlite, 2, 2), "(?, ?), (?, ?)");
        assert_eq!(values_list(Backend::Postgres, 2, 2), "($1, $2), ($3, $4)");
    }
}
