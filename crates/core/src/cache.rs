//! Answers to a team's frequent reads (its keys, a mailbox key's mailbox), kept in
//! memory on a single node (SQLite) so the request path does no store round trip.
//!
//! Correctness rests on two rules: every change to a team bumps the team's generation
//! *after* its transaction commits ([`crate::Core::commit`]), and an answer
//! is stored only under the generation read before it was loaded, so a load racing a
//! change can never hide it. Entries also expire after [`TTL_MS`], which bounds how
//! stale time-derived fields (a key's `expired` status, `last_used_at`) can get.
//! With PostgreSQL other nodes write too: every change also sends `NOTIFY
//! sendmux_changes` inside its transaction, and each node's listener
//! ([`crate::jobs::listen_for_changes`]) bumps the team's generation when it arrives. The
//! cache is on only while that listener is connected; losing it turns the cache off and
//! forgets everything ([`ReadCache::set_enabled`]).
//!
//! The answers are bounded by bytes: a budget for all teams
//! (`SENDMUX_READ_CACHE_BYTES`), of which one team holds at most a [`TEAM_SHARE`]th, so
//! a caller choosing a new cursor for every read pushes out only its own team's
//! answers. When full, the answer stored longest ago goes first: an answer's worth
//! ends [`TTL_MS`] after it was loaded whatever its reads, so this is the least
//! recently used one that still matters.

use parking_lot::RwLock;
use std::collections::{BTreeMap, HashMap};

pub const TTL_MS: i64 = 1_000;
/// The default byte budget of the answers of all teams.
pub const DEFAULT_BUDGET_BYTES: usize = 32 << 20;
/// One team holds at most this fraction (1/n) of the budget.
pub const TEAM_SHARE: usize = 8;
/// What an entry costs besides its body and key (map slots, order entries).
const ENTRY_OVERHEAD: usize = 160;

#[derive(Default)]
pub struct ReadCache {
    enabled: std::sync::atomic::AtomicBool,
    generations: RwLock<Generations>,
    entries: RwLock<Entries>,
    /// Answers looked up by a key that names no team (a recipient address), each kept
    /// with the team it turned out to belong to.
    shared: RwLock<HashMap<String, Shared>>,
}

#[derive(Default)]
struct Generations {
    teams: HashMap<String, u64>,
    /// Bumped when everything is forgotten at once; the high half of every generation.
    base: u64,
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
    /// When it was stored (its place in `Entries::order`), and what it costs.
    stored: u64,
    cost: usize,
}

/// The stored answers, with their order and bytes overall and per team.
#[derive(Default)]
struct Entries {
    map: HashMap<(String, String), Entry>,
    order: BTreeMap<u64, (String, String)>,
    teams: HashMap<String, TeamUse>,
    bytes: usize,
    budget: usize,
    stores: u64,
}

#[derive(Default)]
struct TeamUse {
    bytes: usize,
    order: BTreeMap<u64, String>,
}

impl Entries {
    fn team_budget(&self) -> usize {
        self.budget / TEAM_SHARE
    }

    fn remove(&mut self, team_id: &str, key: &str) {
        let Some(entry) = self.map.remove(&(team_id.to_owned(), key.to_owned())) else { return };
        self.order.remove(&entry.stored);
        self.bytes -= entry.cost;
        if let Some(team) = self.teams.get_mut(team_id) {
            team.order.remove(&entry.stored);
            team.bytes -= entry.cost;
            if team.order.is_empty() {
                self.teams.remove(team_id);
            }
        }
    }

    fn remove_team(&mut self, team_id: &str) {
        let Some(team) = self.teams.remove(team_id) else { return };
        for (stored, key) in team.order {
            self.order.remove(&stored);
            if let Some(entry) = self.map.remove(&(team_id.to_owned(), key)) {
                self.bytes -= entry.cost;
            }
        }
    }

    /// Stores the answer, first letting go of the team's oldest answers beyond its share
    /// and then of the oldest of all beyond the budget. An answer larger than a team's
    /// share is not stored.
    fn insert(&mut self, team_id: &str, key: &str, generation: u64, loaded_at: i64, body: bytes::Bytes) {
        self.remove(team_id, key);
        let cost = body.len() + team_id.len() + key.len() + ENTRY_OVERHEAD;
        if cost > self.team_budget() {
            return;
        }
        while let Some(team) = self.teams.get(team_id).filter(|t| t.bytes + cost > self.team_budget()) {
            let Some(oldest) = team.order.values().next().cloned() else { break };
            self.remove(team_id, &oldest);
        }
        while self.bytes + cost > self.budget {
            let Some((team, oldest)) = self.order.values().next().cloned() else { break };
            self.remove(&team, &oldest);
        }
        self.stores += 1;
        let stored = self.stores;
        self.order.insert(stored, (team_id.to_owned(), key.to_owned()));
        let team = self.teams.entry(team_id.to_owned()).or_default();
        team.order.insert(stored, key.to_owned());
        team.bytes += cost;
        self.bytes += cost;
        self.map.insert((team_id.to_owned(), key.to_owned()), Entry { generation, loaded_at, body, stored, cost });
    }
}

impl ReadCache {
    pub fn new(enabled: bool) -> Self {
        Self::with_budget(enabled, DEFAULT_BUDGET_BYTES)
    }

    /// A cache whose answers take at most `budget` bytes, a team's at most an eighth.
    pub fn with_budget(enabled: bool, budget: usize) -> Self {
        let cache = Self { enabled: enabled.into(), ..Default::default() };
        cache.entries.write().budget = budget;
        cache
    }

    fn enabled(&self) -> bool {
        self.enabled.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Turns the cache on or off, forgetting every answer either way: on PostgreSQL it
    /// is on only while this node hears the other nodes' changes.
    pub fn set_enabled(&self, on: bool) {
        if !on {
            self.enabled.store(false, std::sync::atomic::Ordering::Release);
        }
        self.invalidate_all();
        if on {
            self.enabled.store(true, std::sync::atomic::Ordering::Release);
        }
    }

    /// Forget every team's answers; loads that began before are not stored.
    pub fn invalidate_all(&self) {
        {
            let mut generations = self.generations.write();
            generations.base += 1;
            generations.epoch += 1;
        }
        self.shared.write().clear();
        let mut entries = self.entries.write();
        let budget = entries.budget;
        *entries = Entries { budget, ..Default::default() };
    }

    /// Bytes the stored answers take (bodies, keys and bookkeeping).
    pub fn bytes_held(&self) -> usize {
        self.entries.read().bytes
    }

    /// The team's current generation; pass it to [`ReadCache::put`] after loading.
    pub fn generation(&self, team_id: &str) -> u64 {
        let generations = self.generations.read();
        generations.teams.get(team_id).copied().unwrap_or(0) | (generations.base << 32)
    }

    /// The count of changes to any team; pass it to [`ReadCache::put_shared`].
    pub fn epoch(&self) -> u64 {
        self.generations.read().epoch
    }

    /// An answer stored by [`ReadCache::put_shared`], while its team is unchanged.
    pub fn get_shared<T: Clone + 'static>(&self, key: &str, now: i64) -> Option<T> {
        if !self.enabled() {
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
        if !self.enabled() {
            return;
        }
        let mut shared = self.shared.write();
        let generations = self.generations.read();
        if generations.epoch != epoch {
            return;
        }
        let generation = generations.teams.get(team_id).copied().unwrap_or(0) | (generations.base << 32);
        if shared.len() > 20_000 {
            shared.clear();
        }
        let value = std::sync::Arc::new(value);
        shared.insert(key.to_owned(), Shared { team_id: team_id.to_owned(), generation, loaded_at, value });
    }

    pub fn get(&self, team_id: &str, key: &str, now: i64) -> Option<bytes::Bytes> {
        if !self.enabled() {
            return None;
        }
        let generation = self.generation(team_id);
        let entries = self.entries.read();
        let entry = entries.map.get(&(team_id.to_owned(), key.to_owned()))?;
        (entry.generation == generation && now - entry.loaded_at < TTL_MS).then(|| entry.body.clone())
    }

    pub fn put(&self, team_id: &str, key: &str, generation: u64, loaded_at: i64, body: bytes::Bytes) {
        if !self.enabled() {
            return;
        }
        let mut entries = self.entries.write();
        if self.generation(team_id) != generation {
            return;
        }
        entries.insert(team_id, key, generation, loaded_at, body);
    }

    /// Forget the team's answers: call after a change to it has committed.
    pub fn invalidate(&self, team_id: &str) {
        {
            let mut generations = self.generations.write();
            let team = generations.teams.entry(team_id.to_owned()).or_insert(0);
            // The low half of a generation: wraps long before it could reach the base.
            *team = (*team + 1) & u64::from(u32::MAX);
            generations.epoch += 1;
        }
        // Its answers can no longer be served: give their bytes back now. (Not under
        // the generations lock: `put` takes the two locks the other way round.)
        self.entries.write().remove_team(team_id);
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

    /// PostgreSQL: the cache is on only while the node hears the other nodes. Turning it
    /// off or on forgets every answer, and a load that began before cannot be stored.
    #[test]
    fn switching_the_cache_forgets_everything_and_racing_loads() {
        let c = ReadCache::new(false);
        c.put("t", "k", c.generation("t"), 0, "off".into());
        assert!(c.get("t", "k", 1).is_none(), "off: nothing is stored");
        let before = c.generation("t");
        let epoch = c.epoch();
        c.set_enabled(true);
        c.put("t", "k", before, 1, "began while off".into());
        c.put_shared("rcpt:a@x", "t", epoch, 1, 1u8);
        assert!(c.get("t", "k", 2).is_none(), "a load that began before the switch");
        assert!(c.get_shared::<u8>("rcpt:a@x", 2).is_none());
        c.put("t", "k", c.generation("t"), 2, "on".into());
        c.put_shared("rcpt:a@x", "t", c.epoch(), 2, 2u8);
        c.put("u", "k", c.generation("u"), 2, "other".into());
        assert_eq!(c.get("t", "k", 3).as_deref(), Some(b"on".as_slice()));
        assert_eq!(c.get_shared::<u8>("rcpt:a@x", 3), Some(2));
        // A lost listener: everything goes, for every team, and stays gone when back on.
        c.set_enabled(false);
        assert!(c.get("t", "k", 4).is_none() && c.get("u", "k", 4).is_none());
        assert_eq!(c.bytes_held(), 0);
        c.set_enabled(true);
        assert!(c.get("t", "k", 5).is_none() && c.get("u", "k", 5).is_none());
        assert!(c.get_shared::<u8>("rcpt:a@x", 5).is_none());
    }

    /// A caller choosing a new cursor for every read (3,000 reads of ~38 KB answers took
    /// a node from 79 to 269 MB) holds at most its team's share of the cache and cannot
    /// push the other teams' answers out.
    #[test]
    fn one_team_holds_at_most_its_share_and_cannot_evict_the_others() {
        let c = ReadCache::new(true);
        let body = bytes::Bytes::from(vec![b'x'; 38 * 1024]);
        let others: Vec<String> = (0..7).map(|t| format!("team_{t}")).collect();
        for team in &others {
            for k in 0..10 {
                c.put(team, &format!("keys?cursor={k}"), c.generation(team), 0, body.clone());
            }
        }
        let small = bytes::Bytes::from(vec![b'y'; 200]);
        for k in 0..25_000 {
            let answer = if k % 2 == 0 { &body } else { &small };
            c.put("hostile", &format!("keys?cursor={k}"), 0, 0, answer.clone());
        }
        let held: usize =
            (0..25_000).filter_map(|k| c.get("hostile", &format!("keys?cursor={k}"), 1)).map(|b| b.len()).sum();
        // A team's share: an eighth of the default 32 MiB.
        assert!(held <= 4 << 20, "one team holds {held} bytes");
        assert!(held > 0, "the team's newest answers are kept");
        assert!(c.get("hostile", "keys?cursor=24999", 1).is_some(), "the newest answer is kept");
        for team in &others {
            for k in 0..10 {
                assert!(c.get(team, &format!("keys?cursor={k}"), 1).is_some(), "{team} lost answer {k}");
            }
        }
    }

    /// Bytes held never exceed the budget however many teams write, and the least
    /// recently stored answers go first.
    #[test]
    fn the_cache_stays_within_its_byte_budget() {
        let budget = 256 * 1024;
        let c = ReadCache::with_budget(true, budget);
        for i in 0..5_000usize {
            let team = format!("team_{}", i % 97);
            let body = bytes::Bytes::from(vec![b'z'; 100 + (i * 7919) % 9_000]);
            c.put(&team, &format!("k{i}"), c.generation(&team), 0, body);
            assert!(c.bytes_held() <= budget, "{} bytes held after {i} answers", c.bytes_held());
        }
        assert!(c.bytes_held() > budget / 2, "the budget is used");
        assert!(c.get("team_52", "k4999", 1).is_some(), "the newest answer stays");
        assert!(c.get("team_0", "k0", 1).is_none(), "the oldest answers went first");
        // An answer larger than a team's share is not kept.
        c.put("big", "k", 0, 0, bytes::Bytes::from(vec![0u8; budget / TEAM_SHARE + 1]));
        assert!(c.get("big", "k", 1).is_none());
        // A team's change lets go of its answers at once.
        let before = c.bytes_held();
        c.invalidate("team_52");
        assert!(c.bytes_held() < before);
        assert!(c.get("team_52", "k4999", 1).is_none());
    }
}
