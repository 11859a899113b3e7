//! A node's memory of credentials it checked, so that the same access token
//! presented again costs less: JWTs it verified (signature and claims) and
//! API access tokens it looked up (with their user). On a store no one else
//! writes (SQLite, one node) the memory is the whole answer, and any write
//! committed on the node that revokes tokens or changes a user forgets
//! everything at once. With several nodes (PostgreSQL) only a JWT's
//! signature check is spared: its revocation is read per request, and API
//! access tokens are not remembered, so that a revocation on one node holds
//! on every node from the next request on (a notification arrives a moment
//! too late for that). A JWT's subject is checked on every use.

use crate::store::Invalidation;
use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// More entries than this, and the memory starts over (tokens live minutes
/// to hours; a burst of distinct ones must not grow the process).
const CAPACITY: usize = 20_000;
/// A backstop: an entry is checked again after this long even without news
/// (a change made behind the node's back, say by hand in the database).
const ENTRY_TTL: Duration = Duration::from_secs(60);

pub struct Remembered<V> {
    entries: RwLock<HashMap<String, (V, Instant)>>,
    /// Bumped by every revocation, so that a check racing one cannot
    /// remember what the revocation covered.
    generation: AtomicU64,
    enabled: AtomicBool,
    /// A memory made off stays off, whatever it hears.
    allowed: bool,
}

impl<V: Clone> Remembered<V> {
    pub fn new(enabled: bool) -> Self {
        Remembered {
            entries: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            enabled: AtomicBool::new(enabled),
            allowed: enabled,
        }
    }

    /// What was remembered under `key`, if `still_good` says it still is.
    pub fn get(&self, key: &str, still_good: impl Fn(&V) -> bool) -> Option<V> {
        if !self.enabled.load(Ordering::Acquire) {
            return None;
        }
        let entries = self.entries.read().expect("remembered lock");
        entries.get(key).filter(|(v, at)| at.elapsed() < ENTRY_TTL && still_good(v)).map(|(v, _)| v.clone())
    }

    /// Call before checking; pass to [`Remembered::put`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Remembers what was checked (revocation included) since `generation`
    /// was taken, unless a revocation came in between.
    pub fn put(&self, key: String, value: V, generation: u64) {
        if !self.enabled.load(Ordering::Acquire) {
            return;
        }
        let mut entries = self.entries.write().expect("remembered lock");
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(key, (value, Instant::now()));
    }

    pub fn apply(&self, invalidation: &Invalidation) {
        let forget = |enabled: Option<bool>| {
            let mut entries = self.entries.write().expect("remembered lock");
            self.generation.fetch_add(1, Ordering::AcqRel);
            entries.clear();
            if let Some(enabled) = enabled {
                self.enabled.store(enabled, Ordering::Release);
            }
        };
        match invalidation {
            // A client's change is seen where its record is read (the client cache).
            Invalidation::Client(_) | Invalidation::Resource(_) | Invalidation::Keys => {}
            Invalidation::Revocations => forget(None),
            Invalidation::All => forget(Some(self.allowed)),
            Invalidation::Lost => forget(Some(false)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good(exp: &i64) -> bool {
        *exp > 50
    }

    #[test]
    fn a_revocation_forgets_and_wins_a_race() {
        let memory = Remembered::new(true);
        let before = memory.generation();
        memory.put("t".into(), 100, before);
        assert_eq!(memory.get("t", good), Some(100));
        assert_eq!(memory.get("t", |_| false), None, "no longer good");
        assert_eq!(memory.get("u", good), None);
        memory.apply(&Invalidation::Revocations);
        assert_eq!(memory.get("t", good), None);
        // A check that started before the revocation is not remembered.
        memory.put("t".into(), 100, before);
        assert_eq!(memory.get("t", good), None);
        memory.apply(&Invalidation::Client("c".into()));
        memory.put("t".into(), 100, memory.generation());
        assert_eq!(memory.get("t", good), Some(100));
    }

    #[test]
    fn lost_disables_until_all_and_off_stays_off() {
        let off = Remembered::new(false);
        off.apply(&Invalidation::All);
        off.put("t".into(), 100, off.generation());
        assert_eq!(off.get("t", good), None, "made off, never on");
        let memory = Remembered::new(true);
        memory.apply(&Invalidation::Lost);
        memory.put("t".into(), 100, memory.generation());
        assert_eq!(memory.get("t", good), None, "off while not hearing");
        memory.apply(&Invalidation::All);
        memory.put("t".into(), 100, memory.generation());
        assert_eq!(memory.get("t", good), Some(100));
        memory.apply(&Invalidation::Lost);
        assert_eq!(memory.get("t", good), None);
        memory.put("t".into(), 100, memory.generation());
        assert_eq!(memory.get("t", good), None);
    }
}
