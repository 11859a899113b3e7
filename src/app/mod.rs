//! Application services: the one place where domain rules meet the store.
//! The CLI and the HTTP layer both call these, so each operation (create a
//! user, change a setting, authenticate a caller) has exactly one
//! implementation. No HTTP and no SQL here either.

mod api_tokens;
mod audit_sink;
mod auth;
mod client_cache;
mod clients;
mod delegated;
mod error;
mod keys;
mod settings;
mod tokens;
mod usage;
mod users;

pub use audit_sink::AuditSink;
pub use auth::Credential;
pub use clients::{ClientPatch, ClientWithSecret};
pub use delegated::{
    AuthorizationRequest, AuthorizeError, AuthorizeParams, ClientRegistration, SESSION_LIFETIME_SECONDS,
    TokenResponse, redirect_with,
};
pub use error::AppError;
pub use keys::{KeySet, Keyring};
pub use tokens::{IssuedToken, Rejected};
pub use users::UserPatch;

use crate::crypto::{MasterKey, PasswordHasher, SecretHasher, random_bytes};
use crate::store::DynStore;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::sync::Arc;

/// Everything a request or a command needs, shared by reference.
pub struct App {
    pub store: DynStore,
    pub passwords: PasswordHasher,
    pub secrets: SecretHasher,
    pub master_key: Arc<MasterKey>,
    pub keys: Keyring,
    pub audit: AuditSink,
    pub usage: usage::UsageRecorder,
    clients: Arc<client_cache::ClientCache>,
    /// The issuer, byte-identical wherever it appears (SPEC §5).
    pub issuer: String,
}

/// Meta record holding the secret-hashing data key, wrapped by the master key.
const SECRET_HASH_KEY: &str = "secret_hash_key";

impl App {
    /// Loads (or, on the store's first start, creates) the data keys, and
    /// refuses a master key that is not the one the store was set up with.
    pub async fn new(store: DynStore, master_key: MasterKey, issuer: String) -> Result<Self, AppError> {
        let fresh = STANDARD.encode(master_key.seal(SECRET_HASH_KEY.as_bytes(), &random_bytes::<32>()));
        let stored = store.meta_get_or_init(SECRET_HASH_KEY, &fresh).await?;
        let key: [u8; 32] = STANDARD
            .decode(stored)
            .ok()
            .and_then(|sealed| master_key.open(SECRET_HASH_KEY.as_bytes(), &sealed).ok())
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| {
                AppError::Startup(
                    "the master key does not match the one this database was set up with \
                     (set KEYWARD_MASTER_KEY to that key on every node)"
                        .into(),
                )
            })?;
        let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let keys = Keyring::load(store.as_ref(), &master_key).await?;
        // A store no one else writes needs no listener: local eviction is
        // all the news there is.
        let clients = Arc::new(client_cache::ClientCache::new(!store.is_shared()));
        if store.is_shared() {
            let (watched, cache) = (store.clone(), clients.clone());
            tokio::spawn(async move { watched.watch_invalidations(Box::new(move |i| cache.apply(i))).await });
        }
        Ok(App {
            usage: usage::UsageRecorder::default(),
            clients,
            audit: AuditSink::spawn(store.clone()),
            store,
            passwords: PasswordHasher::new(workers),
            secrets: SecretHasher::new(&key),
            master_key: Arc::new(master_key),
            keys,
            issuer,
        })
    }
}
