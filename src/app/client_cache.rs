//! A node's cache of M2M client records, so that issuing a token costs no
//! database read. It is only trusted while it can hear about changes:
//! changes made through this node evict at once, changes made by other
//! nodes arrive as PostgreSQL notifications when they commit, and while the
//! notification listener is down the cache is bypassed altogether.

use crate::store::{Invalidation, M2mClientRecord};
use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A backstop: an entry is re-read after this long even without news.
const ENTRY_TTL: Duration = Duration::from_secs(60);

pub struct ClientCache {
    entries: RwLock<HashMap<String, (M2mClientRecord, Instant)>>,
    /// Bumped by every eviction, so that a read racing an eviction cannot
    /// put back what was just evicted.
    generation: AtomicU64,
    enabled: AtomicBool,
}

impl ClientCache {
    pub fn new(enabled: bool) -> Self {
        ClientCache {
            entries: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            enabled: AtomicBool::new(enabled),
        }
    }

    pub fn get(&self, client_id: &str) -> Option<M2mClientRecord> {
        if !self.enabled.load(Ordering::Acquire) {
            return None;
        }
        let entries = self.entries.read().expect("client cache lock");
        entries.get(client_id).filter(|(_, at)| at.elapsed() < ENTRY_TTL).map(|(r, _)| r.clone())
    }

    /// Call before reading the store; pass to [`ClientCache::put`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Caches `record` read from the store, unless anything was evicted
    /// since `generation` was taken.
    pub fn put(&self, record: &M2mClientRecord, generation: u64) {
        if !self.enabled.load(Ordering::Acquire) {
            return;
        }
        let mut entries = self.entries.write().expect("client cache lock");
        if self.generation.load(Ordering::Acquire) == generation {
            entries.insert(record.client.client_id.clone(), (record.clone(), Instant::now()));
        }
    }

    pub fn apply(&self, invalidation: Invalidation) {
        if matches!(invalidation, Invalidation::Revocations | Invalidation::Keys) {
            return;
        }
        let mut entries = self.entries.write().expect("client cache lock");
        self.generation.fetch_add(1, Ordering::AcqRel);
        match invalidation {
            Invalidation::Client(id) => {
                entries.remove(&id);
            }
            Invalidation::All => {
                entries.clear();
                self.enabled.store(true, Ordering::Release);
            }
            Invalidation::Lost => {
                entries.clear();
                self.enabled.store(false, Ordering::Release);
            }
            Invalidation::Revocations | Invalidation::Keys => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Role;
    use crate::domain::client::M2mClient;

    fn record(id: &str) -> M2mClientRecord {
        M2mClientRecord {
            client: M2mClient {
                client_id: id.into(),
                name: "n".into(),
                role: Role::Viewer,
                access_token_duration: 300,
                disabled: false,
                is_service: false,
                token_exchange: false,
                created_at: time::OffsetDateTime::UNIX_EPOCH,
                secret_rotated_at: None,
                tokens_not_before: None,
            },
            secret_hash: "h".into(),
            previous_secret_hash: None,
            previous_secret_expires_at: None,
        }
    }

    #[test]
    fn a_read_that_raced_an_eviction_is_not_cached() {
        let cache = ClientCache::new(true);
        let before = cache.generation();
        cache.apply(Invalidation::Client("a".into()));
        cache.put(&record("a"), before);
        assert!(cache.get("a").is_none());
        cache.put(&record("a"), cache.generation());
        assert!(cache.get("a").is_some());
    }

    #[test]
    fn lost_disables_until_all() {
        let cache = ClientCache::new(false);
        cache.put(&record("a"), cache.generation());
        assert!(cache.get("a").is_none(), "disabled until watching starts");
        cache.apply(Invalidation::All);
        cache.put(&record("a"), cache.generation());
        assert!(cache.get("a").is_some());
        cache.apply(Invalidation::Lost);
        assert!(cache.get("a").is_none());
        cache.put(&record("a"), cache.generation());
        assert!(cache.get("a").is_none());
    }
}
