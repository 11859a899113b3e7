//! The keyring: JWT signing keys shared by every node through the store,
//! sealed under the master key, parsed once per node and refreshed in the
//! background (and at once when a token names a key this node has not seen
//! but the store has).

use super::{App, AppError};
use crate::crypto::{AeadKey, SigningAlgorithm, SigningKey, random_string};
use crate::domain::audit::AuditEvent;
use crate::domain::settings::{SIGNING_ALGORITHM, SIGNING_KEY_OVERLAP};
use crate::domain::{Actor, now, to_micros};
use crate::store::{Store, StoredSigningKey};
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::Jwk;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// A published key: what verification needs, with the algorithm pinned.
pub struct VerifyingKey {
    pub alg: SigningAlgorithm,
    pub key: DecodingKey,
}

/// How long a new key is published before any node signs with it: every
/// node (and every resource server that fetched the JWKS meanwhile) knows
/// it by then. Nodes hear of a rotation at once through the change
/// channel; this covers one that missed it and reads the keys on its
/// next round. Only where several nodes share the store.
pub const PUBLISH_BEFORE_SIGNING: std::time::Duration = std::time::Duration::from_secs(35);

/// One consistent view of the keys.
pub struct KeySet {
    /// The key tokens are signed with now (see [`KeySet::signing_key`]).
    signer: Arc<SigningKey>,
    /// A key published but not signed with yet, and from when (µs) it is.
    next: Option<(Arc<SigningKey>, i64)>,
    pub verifiers: HashMap<String, VerifyingKey>,
    /// The JWKS document (RFC 7517 §5).
    pub jwks: Value,
}

impl KeySet {
    /// The key to sign with: the active one once it has been published long
    /// enough, until then the one it replaced.
    pub fn signing_key(&self) -> &Arc<SigningKey> {
        match &self.next {
            Some((next, from)) if to_micros(now()) >= *from => next,
            _ => &self.signer,
        }
    }
}

pub struct Keyring {
    current: RwLock<Arc<KeySet>>,
    /// Told when any node rotated the keys: they are read again at once.
    pub changed: tokio::sync::Notify,
}

fn context(kid: &str) -> Vec<u8> {
    format!("signing_key:{kid}").into_bytes()
}

impl Keyring {
    pub(super) async fn load(store: &Store, master: &AeadKey) -> Result<Keyring, AppError> {
        let set = load_set(store, master).await?;
        Ok(Keyring { current: RwLock::new(Arc::new(set)), changed: tokio::sync::Notify::new() })
    }

    pub fn current(&self) -> Arc<KeySet> {
        self.current.read().expect("keyring lock").clone()
    }

    fn replace(&self, set: KeySet) {
        *self.current.write().expect("keyring lock") = Arc::new(set);
    }
}

/// Reads the published keys; on a store without an active key (first start)
/// creates one, agreeing with concurrent first starts on a single key.
async fn load_set(store: &Store, master: &AeadKey) -> Result<KeySet, AppError> {
    let mut keys = store.signing_keys(to_micros(now())).await?;
    if !keys.iter().any(|k| k.active) {
        let alg = match store.setting(SIGNING_ALGORITHM).await? {
            Some(name) => name.parse().map_err(AppError::Invalid)?,
            None => SigningAlgorithm::Es256,
        };
        let event = |kid: &str| {
            AuditEvent::success(Actor::System, "signing_key.created", format!("signing_key:{kid}"))
                .with_detail(json!({"alg": alg.as_str(), "first_start": true}))
        };
        let key = new_stored_key(master, alg);
        let ev = event(&key.kid);
        store.add_signing_key(key, None, ev).await?;
        keys = store.signing_keys(to_micros(now())).await?;
    }
    build_set(master, &keys, signing_delay(store))
}

/// How long a new key is published before it signs: with several nodes,
/// long enough for every one to publish it; alone, not at all.
fn signing_delay(store: &crate::store::Store) -> std::time::Duration {
    if store.is_shared() { PUBLISH_BEFORE_SIGNING } else { std::time::Duration::ZERO }
}

fn new_stored_key(master: &AeadKey, alg: SigningAlgorithm) -> StoredSigningKey {
    let kid = random_string::<12>();
    let der = SigningKey::generate_pkcs8(alg);
    StoredSigningKey {
        private_key: master.seal_text(&context(&kid), &der),
        kid,
        alg: alg.as_str().to_string(),
        active: true,
        created_at: to_micros(now()),
        retire_after: None,
    }
}

/// `keys` (newest first) parsed; the active one signs once it has been
/// published for `delay`, the newest retiring one until then.
fn build_set(
    master: &AeadKey,
    keys: &[StoredSigningKey],
    delay: std::time::Duration,
) -> Result<KeySet, AppError> {
    let corrupt =
        |kid: &str, why: &str| AppError::Startup(format!("signing key {kid} cannot be used: {why}"));
    let mut signer = None;
    let mut previous = None;
    let mut verifiers = HashMap::new();
    let mut published = Vec::new();
    for stored in keys {
        let alg: SigningAlgorithm = stored.alg.parse().map_err(|e: String| corrupt(&stored.kid, &e))?;
        let der = master
            .open_text(&context(&stored.kid), &stored.private_key)
            .map_err(|_| corrupt(&stored.kid, "it does not decrypt under the data key"))?;
        let key = SigningKey::from_pkcs8(&stored.kid, alg, &der)
            .map_err(|e| corrupt(&stored.kid, &e.to_string()))?;
        let jwk_json = key.public_jwk();
        let jwk: Jwk =
            serde_json::from_value(jwk_json.clone()).map_err(|e| corrupt(&stored.kid, &e.to_string()))?;
        let decoding = DecodingKey::from_jwk(&jwk).map_err(|e| corrupt(&stored.kid, &e.to_string()))?;
        verifiers.insert(stored.kid.clone(), VerifyingKey { alg, key: decoding });
        published.push(jwk_json);
        if stored.active {
            signer = Some((Arc::new(key), stored.created_at));
        } else if previous.is_none() {
            previous = Some(Arc::new(key));
        }
    }
    let (active, created_at) = signer.ok_or_else(|| AppError::Startup("no active signing key".into()))?;
    let signs_from = created_at + delay.as_micros() as i64;
    let (signer, next) = match previous {
        Some(previous) if signs_from > to_micros(now()) => (previous, Some((active, signs_from))),
        _ => (active, None),
    };
    Ok(KeySet { signer, next, verifiers, jwks: json!({"keys": published}) })
}

impl App {
    /// Re-reads the keys from the store (after a rotation on any node).
    pub async fn refresh_keys(&self) -> Result<(), AppError> {
        let set = load_set(self.store.as_ref(), &self.data_key).await?;
        self.keys.replace(set);
        Ok(())
    }

    /// The key set holding `kid`. A kid unknown here may be a key another
    /// node just made: the store is asked (one small read, like the
    /// revocation check every verification makes), and keys are rebuilt only
    /// when it is really there, so made-up kids cost no key parsing.
    pub(super) async fn verifying_key(&self, kid: &str) -> Result<Option<Arc<KeySet>>, AppError> {
        let set = self.keys.current();
        if set.verifiers.contains_key(kid) {
            return Ok(Some(set));
        }
        let stored = self.store.signing_keys(to_micros(now())).await?;
        if !stored.iter().any(|k| k.kid == kid) {
            return Ok(None);
        }
        self.keys.replace(build_set(&self.data_key, &stored, signing_delay(&self.store))?);
        let set = self.keys.current();
        Ok(set.verifiers.contains_key(kid).then_some(set))
    }

    /// Makes a new active signing key; the old one keeps verifying for the
    /// configured overlap so tokens in flight stay valid.
    pub async fn rotate_signing_key(
        &self,
        actor: Actor,
        alg: Option<SigningAlgorithm>,
    ) -> Result<(String, SigningAlgorithm), AppError> {
        let alg = match alg {
            Some(a) => a,
            None => self.setting(SIGNING_ALGORITHM).await?.value.parse().map_err(AppError::Invalid)?,
        };
        let overlap = self.setting(SIGNING_KEY_OVERLAP).await?.as_i64().unwrap_or(259_500);
        let key = new_stored_key(&self.data_key, alg);
        let kid = key.kid.clone();
        let event = AuditEvent::success(actor, "signing_key.rotated", format!("signing_key:{kid}"))
            .with_detail(json!({"alg": alg.as_str(), "previous_retires_in_seconds": overlap}));
        let retire_after = to_micros(now()) + overlap * 1_000_000;
        self.store.add_signing_key(key, Some(retire_after), event).await?;
        self.refresh_keys().await?;
        Ok((kid, alg))
    }
}
