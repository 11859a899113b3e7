//! A node's memory of access tokens it verified (signature, claims, not
//! revoked), so that a resource server, the gateway or introspection asking
//! about the same JWT again costs neither a signature check nor a database
//! read. It is trusted as the client cache is: any revocation committed on
//! this node forgets everything at once, other nodes' revocations arrive as
//! PostgreSQL notifications, and while the listener is down nothing is
//! remembered. Who the token speaks for (a disabled client or user) is
//! checked on every use, outside this memory.

use crate::domain::token::AccessTokenClaims;
use crate::store::Invalidation;
use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// More tokens than this, and the memory starts over (tokens live minutes
/// to hours; a burst of distinct ones must not grow the process).
const CAPACITY: usize = 20_000;

pub struct VerifiedTokens {
    /// (audience asked for, JWT) → claims.
    entries: RwLock<HashMap<(Option<String>, String), AccessTokenClaims>>,
    /// Bumped by every revocation, so that a verification racing one cannot
    /// remember a token the revocation covered.
    generation: AtomicU64,
    enabled: AtomicBool,
}

impl VerifiedTokens {
    pub fn new(enabled: bool) -> Self {
        VerifiedTokens {
            entries: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            enabled: AtomicBool::new(enabled),
        }
    }

    /// The claims of `jwt`, verified for `audience` before, while unexpired.
    pub fn get(&self, jwt: &str, audience: Option<&str>, now: i64) -> Option<AccessTokenClaims> {
        if !self.enabled.load(Ordering::Acquire) {
            return None;
        }
        let entries = self.entries.read().expect("verified tokens lock");
        // The borrowed key needs an owned pair; the lookup is by value.
        let key = (audience.map(str::to_owned), jwt.to_owned());
        entries.get(&key).filter(|c| c.exp > now).cloned()
    }

    /// Call before verifying; pass to [`VerifiedTokens::put`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Remembers a token verified (revocation included) since `generation`
    /// was taken, unless a revocation came in between.
    pub fn put(&self, jwt: &str, audience: Option<&str>, claims: &AccessTokenClaims, generation: u64) {
        if !self.enabled.load(Ordering::Acquire) {
            return;
        }
        let mut entries = self.entries.write().expect("verified tokens lock");
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert((audience.map(str::to_owned), jwt.to_owned()), claims.clone());
    }

    pub fn apply(&self, invalidation: &Invalidation) {
        let forget = |enabled: Option<bool>| {
            let mut entries = self.entries.write().expect("verified tokens lock");
            self.generation.fetch_add(1, Ordering::AcqRel);
            entries.clear();
            if let Some(enabled) = enabled {
                self.enabled.store(enabled, Ordering::Release);
            }
        };
        match invalidation {
            // A client's change is seen where its record is read (the client cache).
            Invalidation::Client(_) => {}
            Invalidation::Revocations => forget(None),
            Invalidation::All => forget(Some(true)),
            Invalidation::Lost => forget(Some(false)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Role;
    use crate::domain::token::Audience;

    fn claims(exp: i64) -> AccessTokenClaims {
        AccessTokenClaims {
            iss: "i".into(),
            sub: "s".into(),
            aud: Audience::One("a".into()),
            exp,
            iat: 0,
            nbf: 0,
            jti: "j".into(),
            client_id: "c".into(),
            scope: "api".into(),
            role: Role::Viewer,
        }
    }

    #[test]
    fn a_revocation_forgets_and_wins_a_race() {
        let cache = VerifiedTokens::new(true);
        let before = cache.generation();
        cache.put("t", None, &claims(100), before);
        assert!(cache.get("t", None, 50).is_some());
        assert!(cache.get("t", Some("other"), 50).is_none(), "per audience");
        assert!(cache.get("t", None, 100).is_none(), "expired");
        cache.apply(&Invalidation::Revocations);
        assert!(cache.get("t", None, 50).is_none());
        // A verification that started before the revocation is not remembered.
        cache.put("t", None, &claims(100), before);
        assert!(cache.get("t", None, 50).is_none());
        cache.apply(&Invalidation::Client("c".into()));
        cache.put("t", None, &claims(100), cache.generation());
        assert!(cache.get("t", None, 50).is_some());
    }

    #[test]
    fn lost_disables_until_all() {
        let cache = VerifiedTokens::new(false);
        cache.put("t", None, &claims(100), cache.generation());
        assert!(cache.get("t", None, 50).is_none(), "disabled until watching starts");
        cache.apply(&Invalidation::All);
        cache.put("t", None, &claims(100), cache.generation());
        assert!(cache.get("t", None, 50).is_some());
        cache.apply(&Invalidation::Lost);
        assert!(cache.get("t", None, 50).is_none());
        cache.put("t", None, &claims(100), cache.generation());
        assert!(cache.get("t", None, 50).is_none());
    }
}
