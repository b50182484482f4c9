//! Fixed-window rate limiting per credential. With SQLite (one node) the windows live in
//! memory; with PostgreSQL they live in the shared `rate_windows` table so the limit
//! holds for a key across every node.

use parking_lot::Mutex;
use std::collections::HashMap;

use crate::store::{Backend, Conn, Store, limits as q};

pub const WINDOW_MS: i64 = 60_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: i64,
    pub remaining: i64,
    /// Seconds until the window resets.
    pub reset_secs: u64,
}

impl Decision {
    fn from_window(limit: i64, start: i64, count: i64, now: i64) -> Self {
        let reset_ms = (start + WINDOW_MS - now).max(0);
        Decision {
            allowed: count <= limit,
            limit,
            remaining: (limit - count).max(0),
            reset_secs: (reset_ms as u64).div_ceil(1000).max(1),
        }
    }
}

pub struct RateLimiter {
    store: Store,
    local: Mutex<HashMap<String, (i64, i64)>>,
}

impl RateLimiter {
    pub fn new(store: Store) -> Self {
        Self { store, local: Mutex::new(HashMap::new()) }
    }

    /// Counts one request against `bucket` and says whether it may proceed.
    pub async fn hit(&self, bucket: &str, limit: i64, now: i64) -> sqlx::Result<Decision> {
        let (start, count) = match self.store.backend() {
            Backend::Sqlite => {
                let mut map = self.local.lock();
                if map.len() > 100_000 {
                    map.retain(|_, (start, _)| *start + WINDOW_MS > now);
                }
                let entry = map.entry(bucket.to_owned()).or_insert((now, 0));
                if entry.0 + WINDOW_MS <= now {
                    *entry = (now, 0);
                }
                entry.1 += 1;
                *entry
            }
            Backend::Postgres => {
                let mut conn = self.store.pool().acquire().await?;
                q::hit_window_pg(&mut conn, bucket, WINDOW_MS).await?
            }
        };
        // On PostgreSQL windows run on the database's clock, shared by every node.
        let now = if self.store.backend() == Backend::Postgres { start.max(now) } else { now };
        Ok(Decision::from_window(limit, start, count, now))
    }

    /// The bucket's running window without counting anything: the requests counted in
    /// it and the seconds until it resets; None when no window is running.
    pub async fn window(&self, bucket: &str, now: i64) -> sqlx::Result<Option<(i64, u64)>> {
        let window = match self.store.backend() {
            Backend::Sqlite => self.local.lock().get(bucket).copied(),
            Backend::Postgres => q::window(&mut *self.store.pool().acquire().await?, bucket).await?,
        };
        Ok(window
            .filter(|(start, _)| start + WINDOW_MS > now)
            .map(|(start, count)| (count, ((start + WINDOW_MS - now) as u64).div_ceil(1000).max(1))))
    }

    /// Requests counted in the bucket's current window. Reads through the caller's
    /// connection so a handler holding one never waits for a second.
    pub async fn used(&self, conn: &mut Conn, bucket: &str, now: i64) -> sqlx::Result<i64> {
        let window = match self.store.backend() {
            Backend::Sqlite => self.local.lock().get(bucket).copied(),
            Backend::Postgres => q::window(conn, bucket).await?,
        };
        Ok(window.filter(|(start, _)| start + WINDOW_MS > now).map(|(_, c)| c).unwrap_or(0))
    }
}
