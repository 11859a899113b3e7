//! Application services: the one place where domain rules meet the store.
//! The CLI and the HTTP layer both call these, so each operation (create a
//! user, change a setting, authenticate a caller) has exactly one
//! implementation. No HTTP and no SQL here either.

mod api_tokens;
mod audit_sink;
mod auth;
mod client_metadata;
mod clients;
mod connections;
mod delegated;
mod error;
mod housekeeping;
mod id_jag;
mod keys;
mod outbound;
mod outbound_http;
mod proxy;
mod record_cache;
mod registration;
mod remembered;
mod resources;
mod sessions;
mod settings;
mod sso;
mod token_exchange;
mod tokens;
mod usage;
mod users;
mod vault;

pub use api_tokens::REFRESH_TOKENS_PER_USER;
pub use audit_sink::AuditSink;
pub use auth::Credential;
pub use clients::{ClientPatch, ClientWithSecret};
pub use connections::{ConnectRequest, ConnectionToken, ConnectionView, START_PATH};
pub use delegated::{
    AuthorizationRequest, AuthorizeError, AuthorizeParams, ClientProof, ClientRegistration,
    DELEGATED_CLIENT_PREFIX, redirect_with,
};
pub use error::AppError;
pub(crate) use error::oauth_app_error;
pub use keys::{KeySet, Keyring, PUBLISH_BEFORE_SIGNING};
pub use proxy::{FORWARDED_REQUEST_HEADERS, FORWARDED_RESPONSE_HEADERS, ProxyRequest};
pub use registration::{DynamicClient, RegistrationFailure};
pub use resources::{GatewayRefusal, ResourceDeclaration};
pub use sessions::{SignIn, SignedIn};
pub use sso::{SIGN_IN_WINDOW_SECONDS as SSO_SIGN_IN_WINDOW_SECONDS, SsoAnswer, SsoProviderView};
pub use token_exchange::{ExchangeRequest, ExchangedToken};
pub use tokens::{Rejected, TokenResponse};
pub use users::UserPatch;
pub use vault::{CredentialView, WarehouseLogin};

use crate::crypto::{AeadKey, MasterKey, PasswordHasher, SecretHasher, random_bytes};
use crate::store::{DynStore, Invalidation};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::sync::Arc;

/// Everything a request or a command needs, shared by reference.
pub struct App {
    pub store: DynStore,
    pub passwords: PasswordHasher,
    pub secrets: SecretHasher,
    pub master_key: Arc<MasterKey>,
    /// Seals every record that must be recovered (signing keys, …).
    pub data_key: AeadKey,
    pub keys: Arc<Keyring>,
    pub audit: AuditSink,
    pub usage: usage::UsageRecorder,
    /// For talking to other systems: through [`App::outbound_http`] only.
    http: outbound_http::OutboundHttp,
    clients: Arc<record_cache::RecordCache<crate::store::M2mClientRecord>>,
    resources: Arc<record_cache::RecordCache<crate::domain::resource::ProtectedResource>>,
    /// JWTs this node verified and nobody revoked since, by audience and token.
    verified: Arc<remembered::Remembered<crate::domain::token::AccessTokenClaims>>,
    /// API access tokens this node looked up, by their HMAC.
    api_tokens: Arc<remembered::Remembered<crate::store::ApiAccessTokenGrant>>,
    /// Client metadata documents fetched by this node.
    metadata_documents: client_metadata::DocumentCache,
    /// SSO providers' discovery documents and keys, on this node.
    sso: sso::SsoCache,
    /// The issuer, byte-identical wherever it appears (SPEC §5).
    pub issuer: String,
}

/// The keys that protect data at rest, as the master key wraps them. They
/// never change; the master key that wraps them can.
#[derive(serde::Serialize, serde::Deserialize)]
struct KeyMaterial {
    /// HMAC key of stored secret hashes (base64).
    secret_hash_key: String,
    /// AES-256-GCM key of every sealed record (base64).
    data_key: String,
}

/// Meta records `keyring:<master key fingerprint>` hold the key material
/// wrapped by that master key; several exist while a rotation is under way.
const KEYRING_PREFIX: &str = "keyring:";
/// The fingerprint of the master key the store was set up with.
const KEYRING_OWNER: &str = "keyring_owner";
const KEYRING_CONTEXT: &[u8] = b"keyward keyring";

fn mismatch() -> AppError {
    AppError::Startup(
        "the master key does not match the one this database was set up with \
         (set KEYWARD_MASTER_KEY to that key on every node)"
            .into(),
    )
}

/// The key material wrapped by `master`, created on the store's first start.
async fn key_material(store: &crate::store::Store, master: &MasterKey) -> Result<KeyMaterial, AppError> {
    let name = format!("{KEYRING_PREFIX}{}", master.fingerprint());
    let wrapped = match store.meta_get(&name).await? {
        Some(w) => w,
        None => {
            if store.meta_get_or_init(KEYRING_OWNER, master.fingerprint()).await? != master.fingerprint() {
                return Err(mismatch());
            }
            let fresh = KeyMaterial {
                secret_hash_key: STANDARD.encode(random_bytes::<32>()),
                data_key: STANDARD.encode(random_bytes::<32>()),
            };
            let sealed =
                master.seal(KEYRING_CONTEXT, &serde_json::to_vec(&fresh).expect("key material serializes"));
            store.meta_get_or_init(&name, &STANDARD.encode(sealed)).await?
        }
    };
    STANDARD
        .decode(wrapped)
        .ok()
        .and_then(|sealed| master.open(KEYRING_CONTEXT, &sealed).ok())
        .and_then(|plain| serde_json::from_slice(&plain).ok())
        .ok_or_else(mismatch)
}

fn key32(b64: &str) -> Result<[u8; 32], AppError> {
    STANDARD
        .decode(b64)
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| AppError::Startup("stored key material is damaged".into()))
}

impl App {
    /// Loads (or, on the store's first start, creates) the data keys, and
    /// refuses a master key that is not one the store knows.
    pub async fn new(store: DynStore, master_key: MasterKey, issuer: String) -> Result<Self, AppError> {
        let material = key_material(store.as_ref(), &master_key).await?;
        let data_key = AeadKey::from_bytes(&key32(&material.data_key)?);
        let secrets = SecretHasher::new(&key32(&material.secret_hash_key)?);
        let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let keys = Keyring::load(store.as_ref(), &data_key).await?;
        // A store no one else writes needs no listener: local eviction is
        // all the news there is.
        let clients = Arc::new(record_cache::RecordCache::new(!store.is_shared(), Invalidation::client));
        let resources = Arc::new(record_cache::RecordCache::new(!store.is_shared(), Invalidation::resource));
        // Tokens checked before: on a store no one else writes, remembered
        // whole (this node's own writes are all the news there is); with
        // several nodes, a JWT's signature only, and revocation and API
        // access tokens are read per request, so that a revocation on one
        // node holds on every node from the next request on.
        let verified = Arc::new(remembered::Remembered::new(true));
        let api_tokens = Arc::new(remembered::Remembered::new(!store.is_shared()));
        let keys = Arc::new(keys);
        let local = {
            let (clients, resources) = (clients.clone(), resources.clone());
            let (verified, api_tokens) = (verified.clone(), api_tokens.clone());
            move |i: Invalidation| {
                verified.apply(&i);
                api_tokens.apply(&i);
                clients.apply(&i);
                resources.apply(&i);
            }
        };
        // This node's own changes reach its caches as they commit.
        store.on_local_change(Box::new(local));
        if store.is_shared() {
            let (watched, keyring) = (store.clone(), keys.clone());
            let (clients, resources) = (clients.clone(), resources.clone());
            tokio::spawn(async move {
                watched
                    .watch_invalidations(Box::new(move |i| {
                        match i {
                            // Another node rotated the keys: read them now.
                            Invalidation::Keys => keyring.changed.notify_one(),
                            // For operators to alert on: a node that hears
                            // no other node serves with its caches off.
                            Invalidation::All => {
                                metrics::gauge!("keyward_change_listener_connected").set(1.0)
                            }
                            Invalidation::Lost => {
                                metrics::gauge!("keyward_change_listener_connected").set(0.0);
                                metrics::counter!("keyward_change_listener_losses_total").increment(1);
                            }
                            _ => {}
                        }
                        clients.apply(&i);
                        resources.apply(&i);
                    }))
                    .await
            });
        }
        Ok(App {
            usage: usage::UsageRecorder::default(),
            http: outbound_http::OutboundHttp::new()?,
            metadata_documents: Default::default(),
            sso: Default::default(),
            clients,
            resources,
            verified,
            api_tokens,
            audit: AuditSink::spawn(store.clone()),
            store,
            passwords: PasswordHasher::new(workers),
            secrets,
            master_key: Arc::new(master_key),
            data_key,
            keys,
            issuer,
        })
    }
}

impl App {
    /// Wraps the key material under `new` too, so that nodes may restart
    /// with either master key; nothing sealed changes and running nodes go on.
    pub async fn add_master_key(&self, actor: crate::domain::Actor, new: &MasterKey) -> Result<(), AppError> {
        let material = key_material(self.store.as_ref(), &self.master_key).await?;
        let sealed =
            new.seal(KEYRING_CONTEXT, &serde_json::to_vec(&material).expect("key material serializes"));
        let event = crate::domain::audit::AuditEvent::success(
            actor,
            "master_key.added",
            format!("master_key:{}", new.fingerprint()),
        );
        self.store
            .meta_put(&format!("{KEYRING_PREFIX}{}", new.fingerprint()), &STANDARD.encode(sealed), event)
            .await?;
        Ok(())
    }

    /// Forgets every master key but this node's: nodes must all use it now.
    pub async fn retire_other_master_keys(&self, actor: crate::domain::Actor) -> Result<u64, AppError> {
        use crate::domain::audit::AuditEvent;
        let fingerprint = self.master_key.fingerprint();
        let mine = format!("{KEYRING_PREFIX}{fingerprint}");
        // The owner record decides first starts: from now on, only this key's.
        let owner =
            AuditEvent::success(actor.clone(), "master_key.owner", format!("master_key:{fingerprint}"));
        self.store.meta_put(KEYRING_OWNER, fingerprint, owner).await?;
        let retired =
            AuditEvent::success(actor, "master_key.retired_others", format!("master_key:{fingerprint}"));
        Ok(self.store.meta_delete_prefix(KEYRING_PREFIX, &mine, retired).await?)
    }
}
