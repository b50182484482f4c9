//! Answers to a team's frequent reads (its keys, a mailbox key's mailbox), kept in
//! memory on a single node (SQLite) so the request path does no store round trip.
//!
//! Correctness rests on two rules: every change to a team bumps the team's generation
//! *after* its transaction commits ([`crate::state::AppState::commit`]), and an answer
//! is stored only under the generation read before it was loaded, so a load racing a
//! change can never hide it. Entries also expire after [`TTL_MS`], which bounds how
//! stale time-derived fields (a key's `expired` status, `last_used_at`) can get.
//! With PostgreSQL other nodes write too, so the cache is off.

use parking_lot::RwLock;
use std::collections::HashMap;

pub const TTL_MS: i64 = 1_000;

#[derive(Default)]
pub struct ReadCache {
    enabled: bool,
    generations: RwLock<HashMap<String, u64>>,
    entries: RwLock<HashMap<(String, String), Entry>>,
}

struct Entry {
    generation: u64,
    loaded_at: i64,
    body: bytes::Bytes,
}

impl ReadCache {
    pub fn new(enabled: bool) -> Self {
        Self { enabled, ..Default::default() }
    }

    /// The team's current generation; pass it to [`ReadCache::put`] after loading.
    pub fn generation(&self, team_id: &str) -> u64 {
        self.generations.read().get(team_id).copied().unwrap_or(0)
    }

    pub fn get(&self, team_id: &str, key: &str, now: i64) -> Option<bytes::Bytes> {
        if !self.enabled {
            return None;
        }
        let generation = self.generation(team_id);
        let entries = self.entries.read();
        let entry = entries.get(&(team_id.to_owned(), key.to_owned()))?;
        (entry.generation == generation && now - entry.loaded_at < TTL_MS).then(|| entry.body.clone())
    }

    pub fn put(&self, team_id: &str, key: &str, generation: u64, loaded_at: i64, body: bytes::Bytes) {
        if !self.enabled {
            return;
        }
        let mut entries = self.entries.write();
        if self.generation(team_id) != generation {
            return;
        }
        if entries.len() > 20_000 {
            entries.clear();
        }
        entries.insert((team_id.to_owned(), key.to_owned()), Entry { generation, loaded_at, body });
    }

    /// Forget the team's answers: call after a change to it has committed.
    pub fn invalidate(&self, team_id: &str) {
        if !self.enabled {
            return;
        }
        *self.generations.write().entry(team_id.to_owned()).or_insert(0) += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_hides_earlier_answers_and_racing_loads() {
        let c = ReadCache::new(true);
        let g = c.generation("t");
        c.put("t", "k", g, 0, "one".into());
        assert_eq!(c.get("t", "k", 10).as_deref(), Some(b"one".as_slice()));
        assert!(c.get("t", "k", TTL_MS).is_none(), "expired");
        // A load that started before a change is not stored.
        let before = c.generation("t");
        c.invalidate("t");
        c.put("t", "k", before, 10, "stale".into());
        assert!(c.get("t", "k", 11).is_none());
        assert!(c.get("other", "k", 11).is_none());
        let disabled = ReadCache::new(false);
        disabled.put("t", "k", 0, 0, "x".into());
        assert!(disabled.get("t", "k", 1).is_none());
    }
}
