//! Answers to a team's frequent reads (its keys, a mailbox key's mailbox), kept in
//! memory on a single node (SQLite) so the request path does no store round trip.
//!
//! Correctness rests on two rules: every change to a team bumps the team's generation
//! *after* its transaction commits ([`crate::Core::commit`]), and an answer
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
    generations: RwLock<Generations>,
    entries: RwLock<HashMap<(String, String), Entry>>,
    /// Answers looked up by a key that names no team (a recipient address), each kept
    /// with the team it turned out to belong to.
    shared: RwLock<HashMap<String, Shared>>,
}

#[derive(Default)]
struct Generations {
    teams: HashMap<String, u64>,
    /// Bumped with every team's generation: a load that cannot name its team before it
    /// runs is stored only if no change at all committed meanwhile.
    epoch: u64,
}

struct Shared {
    team_id: String,
    generation: u64,
    loaded_at: i64,
    value: std::sync::Arc<dyn std::any::Any + Send + Sync>,
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
        self.generations.read().teams.get(team_id).copied().unwrap_or(0)
    }

    /// The count of changes to any team; pass it to [`ReadCache::put_shared`].
    pub fn epoch(&self) -> u64 {
        self.generations.read().epoch
    }

    /// An answer stored by [`ReadCache::put_shared`], while its team is unchanged.
    pub fn get_shared<T: Clone + 'static>(&self, key: &str, now: i64) -> Option<T> {
        if !self.enabled {
            return None;
        }
        let shared = self.shared.read();
        let entry = shared.get(key)?;
        let fresh = entry.generation == self.generation(&entry.team_id) && now - entry.loaded_at < TTL_MS;
        fresh.then(|| entry.value.downcast_ref::<T>().cloned()).flatten()
    }

    /// Stores `value`, found under `key` and belonging to `team_id`, unless any team
    /// changed since `epoch` was read (before loading it).
    pub fn put_shared<T: Send + Sync + 'static>(&self, key: &str, team_id: &str, epoch: u64, loaded_at: i64, value: T) {
        if !self.enabled {
            return;
        }
        let mut shared = self.shared.write();
        let generations = self.generations.read();
        if generations.epoch != epoch {
            return;
        }
        let generation = generations.teams.get(team_id).copied().unwrap_or(0);
        if shared.len() > 20_000 {
            shared.clear();
        }
        let value = std::sync::Arc::new(value);
        shared.insert(key.to_owned(), Shared { team_id: team_id.to_owned(), generation, loaded_at, value });
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
        let mut generations = self.generations.write();
        *generations.teams.entry(team_id.to_owned()).or_insert(0) += 1;
        generations.epoch += 1;
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
        // Shared answers: hidden by a change to their team, never stored across any change.
        let epoch = c.epoch();
        c.put_shared("rcpt:a@x", "t", epoch, 20, 7u32);
        assert_eq!(c.get_shared::<u32>("rcpt:a@x", 21), Some(7));
        assert_eq!(c.get_shared::<u32>("rcpt:a@x", 20 + TTL_MS), None, "expired");
        c.invalidate("other");
        assert_eq!(c.get_shared::<u32>("rcpt:a@x", 22), Some(7), "another team's change");
        c.invalidate("t");
        assert_eq!(c.get_shared::<u32>("rcpt:a@x", 23), None);
        let before = c.epoch();
        c.invalidate("other");
        c.put_shared("rcpt:b@x", "t", before, 24, 8u32);
        assert_eq!(c.get_shared::<u32>("rcpt:b@x", 25), None, "a change raced the load");
        let disabled = ReadCache::new(false);
        disabled.put("t", "k", 0, 0, "x".into());
        assert!(disabled.get("t", "k", 1).is_none());
    }
}
