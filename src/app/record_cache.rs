//! A node's cache of records read by key (M2M clients, protected
//! resources), so that issuing a token or passing a request through the
//! gateway costs no database read. It is only trusted while it can hear
//! about changes: changes made through this node evict at once, changes made
//! by other nodes arrive as PostgreSQL notifications when they commit, and
//! while the notification listener is down the cache is bypassed altogether.

use crate::store::Invalidation;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// A backstop: an entry is re-read after this long even without news.
const ENTRY_TTL: Duration = Duration::from_secs(60);
/// More entries than this, and the cache starts over (a script asking for
/// many distinct records must not grow the process).
const CAPACITY: usize = 20_000;

/// Records are shared, not copied, with every request that reads them: a
/// hit costs no allocation.
pub struct RecordCache<V> {
    entries: RwLock<HashMap<String, (Arc<V>, Instant)>>,
    /// Bumped by every eviction, so that a read racing an eviction cannot
    /// put back what was just evicted.
    generation: AtomicU64,
    enabled: AtomicBool,
    /// The key of this cache's record that an announcement names, if any.
    names: fn(&Invalidation) -> Option<&str>,
}

impl<V> RecordCache<V> {
    pub fn new(enabled: bool, names: fn(&Invalidation) -> Option<&str>) -> Self {
        RecordCache {
            entries: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            enabled: AtomicBool::new(enabled),
            names,
        }
    }

    fn get(&self, key: &str) -> Option<Arc<V>> {
        if !self.enabled.load(Ordering::Acquire) {
            return None;
        }
        let entries = self.entries.read().expect("record cache lock");
        entries.get(key).filter(|(_, at)| at.elapsed() < ENTRY_TTL).map(|(r, _)| Arc::clone(r))
    }

    /// Taken before reading the store; see [`RecordCache::put`].
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Caches `record` read from the store, unless anything was evicted
    /// since `generation` was taken.
    fn put(&self, key: &str, record: &Arc<V>, generation: u64) {
        if !self.enabled.load(Ordering::Acquire) {
            return;
        }
        let mut entries = self.entries.write().expect("record cache lock");
        if self.generation.load(Ordering::Acquire) == generation {
            if entries.len() >= CAPACITY {
                entries.clear();
            }
            entries.insert(key.to_string(), (Arc::clone(record), Instant::now()));
        }
    }

    /// The record under `key`: cached, or read by `read` (and then cached,
    /// unless an eviction raced the read).
    pub async fn get_or_read<E>(
        &self,
        key: &str,
        read: impl Future<Output = Result<Option<V>, E>>,
    ) -> Result<Option<Arc<V>>, E> {
        if let Some(record) = self.get(key) {
            return Ok(Some(record));
        }
        let generation = self.generation();
        let record = read.await?.map(Arc::new);
        if let Some(r) = &record {
            self.put(key, r, generation);
        }
        Ok(record)
    }

    pub fn apply(&self, invalidation: &Invalidation) {
        let enabled = match invalidation {
            Invalidation::All => true,
            Invalidation::Lost => false,
            named => {
                if let Some(key) = (self.names)(named) {
                    let mut entries = self.entries.write().expect("record cache lock");
                    self.generation.fetch_add(1, Ordering::AcqRel);
                    entries.remove(key);
                }
                return;
            }
        };
        let mut entries = self.entries.write().expect("record cache lock");
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
        self.enabled.store(enabled, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Role;
    use crate::domain::client::M2mClient;
    use crate::store::M2mClientRecord;

    type ClientCache = RecordCache<M2mClientRecord>;

    fn clients(enabled: bool) -> ClientCache {
        RecordCache::new(enabled, Invalidation::client)
    }

    fn record(id: &str) -> Arc<M2mClientRecord> {
        Arc::new(M2mClientRecord {
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
        })
    }

    #[test]
    fn a_read_that_raced_an_eviction_is_not_cached() {
        let cache = clients(true);
        let before = cache.generation();
        cache.apply(&Invalidation::Client("a".into()));
        cache.put("a", &record("a"), before);
        assert!(cache.get("a").is_none());
        cache.put("a", &record("a"), cache.generation());
        assert!(cache.get("a").is_some());
    }

    #[test]
    fn only_its_own_records_are_evicted_by_name() {
        let cache = clients(true);
        cache.put("a", &record("a"), cache.generation());
        for other in [
            Invalidation::Resource("a".into()),
            Invalidation::Revocations,
            Invalidation::Keys,
            Invalidation::Client("b".into()),
        ] {
            cache.apply(&other);
            assert!(cache.get("a").is_some(), "{other:?} is not about client a");
        }
        cache.apply(&Invalidation::Client("a".into()));
        assert!(cache.get("a").is_none());
    }

    #[test]
    fn lost_disables_until_all() {
        let cache = clients(false);
        cache.put("a", &record("a"), cache.generation());
        assert!(cache.get("a").is_none(), "disabled until watching starts");
        cache.apply(&Invalidation::All);
        cache.put("a", &record("a"), cache.generation());
        assert!(cache.get("a").is_some());
        cache.apply(&Invalidation::Lost);
        assert!(cache.get("a").is_none());
        cache.put("a", &record("a"), cache.generation());
        assert!(cache.get("a").is_none());
    }
}
