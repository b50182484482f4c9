//! Fixed-window rate limiting per credential. With SQLite (one node) the windows live in
//! memory. With PostgreSQL the window lives in the shared `rate_windows` table and each
//! node *leases* a share of it at a time ([`lease_size`] requests, fewer as the window
//! runs out), then admits requests from its lease in memory: most requests make no
//! database round trip, and the limit holds across every node.
//!
//! The bound, per window: the requests admitted by all nodes together never exceed the
//! limit (every admission spends a leased token, and the database leases at most the
//! limit). A node may refuse while another still holds unspent tokens: at most
//! `(nodes - 1) × lease_size(limit)` requests, under 2 % of the limit per other node,
//! fewer near the end where leases shrink to a quarter of what is left.

use parking_lot::Mutex;
use std::collections::HashMap;

use crate::store::{Backend, Conn, Store, limits as q};

pub const WINDOW_MS: i64 = 60_000;

/// Requests one lease asks for: a fiftieth of the limit, 1 to 1,000.
pub fn lease_size(limit: i64) -> i64 {
    (limit / 50).clamp(1, 1_000)
}

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

/// This node's share of a bucket's window on PostgreSQL.
#[derive(Clone, Copy, Debug)]
struct Lease {
    /// The window's start on the database's clock: identifies the window.
    start: i64,
    /// When the window ends on this node's clock.
    ends_at: i64,
    /// Tokens leased and not yet spent here.
    tokens: i64,
    /// Requests leased in the window by every node, as of this node's last lease.
    leased: i64,
}

pub struct RateLimiter {
    store: Store,
    local: Mutex<HashMap<String, (i64, i64)>>,
    leases: Mutex<HashMap<String, Lease>>,
}

impl RateLimiter {
    pub fn new(store: Store) -> Self {
        Self { store, local: Mutex::new(HashMap::new()), leases: Mutex::new(HashMap::new()) }
    }

    /// Counts one request against `bucket` and says whether it may proceed.
    pub async fn hit(&self, bucket: &str, limit: i64, now: i64) -> sqlx::Result<Decision> {
        match self.store.backend() {
            Backend::Sqlite => {
                let (start, count) = {
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
                };
                Ok(Decision::from_window(limit, start, count, now))
            }
            Backend::Postgres => self.hit_leased(bucket, limit, now).await,
        }
    }

    async fn hit_leased(&self, bucket: &str, limit: i64, now: i64) -> sqlx::Result<Decision> {
        if let Some(decision) = self.spend(bucket, limit, now) {
            return Ok(decision);
        }
        let (start, leased, granted, db_now) = {
            let mut conn = self.store.pool().acquire().await?;
            q::lease_pg(&mut conn, bucket, WINDOW_MS, lease_size(limit), limit).await?
        };
        // The window's end on this node's clock, whatever the skew between the two.
        let ends_at = now + (start + WINDOW_MS - db_now).max(0);
        let mut leases = self.leases.lock();
        if leases.len() > 100_000 {
            leases.retain(|_, l| l.ends_at > now);
        }
        let lease = leases.entry(bucket.to_owned()).or_insert(Lease { start, ends_at, tokens: 0, leased });
        if lease.start != start {
            *lease = Lease { start, ends_at, tokens: 0, leased };
        }
        // Concurrent requests here may each have leased: their tokens add up.
        lease.tokens += granted;
        lease.leased = lease.leased.max(leased);
        Ok(take(lease, limit, now))
    }

    /// Spends a token of this node's lease, or refuses while the window is known to be
    /// used up; None when the database must be asked.
    fn spend(&self, bucket: &str, limit: i64, now: i64) -> Option<Decision> {
        let mut leases = self.leases.lock();
        let lease = leases.get_mut(bucket).filter(|l| l.ends_at > now)?;
        if lease.tokens == 0 && lease.leased < limit {
            return None;
        }
        Some(take(lease, limit, now))
    }

    /// Requests counted in the bucket's running window by every node, and the seconds
    /// until it resets; None when no window is running. Does not count a request.
    pub async fn window(&self, bucket: &str, now: i64) -> sqlx::Result<Option<(i64, u64)>> {
        let window = match self.store.backend() {
            Backend::Sqlite => self.local.lock().get(bucket).copied(),
            Backend::Postgres => self.shared_window(&mut *self.store.pool().acquire().await?, bucket).await?,
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
            Backend::Postgres => self.shared_window(conn, bucket).await?,
        };
        Ok(window.filter(|(start, _)| start + WINDOW_MS > now).map(|(_, c)| c).unwrap_or(0))
    }

    /// The shared window on the database's clock: what every node leased, less the
    /// tokens this node holds unspent.
    async fn shared_window(&self, conn: &mut Conn, bucket: &str) -> sqlx::Result<Option<(i64, i64)>> {
        let Some((start, leased)) = q::window(conn, bucket).await? else { return Ok(None) };
        let unspent = self.leases.lock().get(bucket).filter(|l| l.start == start).map_or(0, |l| l.tokens);
        // The start is on the database's clock; callers compare it with their own. The
        // nodes' clocks agree to well within a window, and this is for display.
        Ok(Some((start, (leased - unspent).max(0))))
    }
}

/// One request against `lease`: admitted if it holds a token.
fn take(lease: &mut Lease, limit: i64, now: i64) -> Decision {
    let allowed = lease.tokens > 0;
    if allowed {
        lease.tokens -= 1;
    }
    Decision {
        allowed,
        limit,
        remaining: (limit - lease.leased).max(0) + lease.tokens,
        // `now` may predate the lease another request just took: never past a window.
        reset_secs: ((lease.ends_at - now).clamp(0, WINDOW_MS) as u64).div_ceil(1000).max(1),
    }
}
