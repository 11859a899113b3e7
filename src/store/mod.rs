//! Storage: one interface ([`Store`]) over SQLite and PostgreSQL.
//!
//! The store keeps what the domain decides; it never decides anything itself
//! (no validation, no policy), except the integrity rules that must be atomic
//! with a write (uniqueness, "never remove the last server admin").
//! Every write that is security-relevant takes its [`AuditEvent`] and commits
//! both in one transaction, so no change exists without its audit record.

mod sql;

pub use sql::SqlStore;

use crate::domain::audit::{AuditEvent, AuditRecord};
use crate::domain::client::M2mClient;
use crate::domain::delegated::{ClientType, DelegatedClient};
use crate::domain::{Role, User, UserId};
use async_trait::async_trait;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error("not found")]
    NotFound,
    #[error("this would leave no active server_admin")]
    LastServerAdmin,
    #[error("at most {0} may be active at once; revoke some first")]
    LimitReached(i64),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type StoreResult<T> = Result<T, StoreError>;

pub struct NewUser {
    pub username: String,
    /// argon2id PHC string; `None` for SSO-only users.
    pub password_hash: Option<String>,
    pub role: Role,
}

#[derive(Default)]
pub struct UserUpdate {
    pub role: Option<Role>,
    pub password_hash: Option<String>,
    pub disabled: Option<bool>,
    /// End the user's sessions, tokens and grants in the same transaction.
    pub end_credentials: bool,
}

#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub action: Option<String>,
    pub actor: Option<String>,
    /// Only events with an id below this one (paging backwards in time).
    pub before_id: Option<i64>,
    pub limit: i64,
}

pub struct NewRefreshToken {
    /// How many of the user's refresh tokens may be active at once,
    /// counting this one.
    pub max_active: i64,
    pub user_id: UserId,
    pub name: String,
    pub token_hash: String,
    pub created_at: i64,
    pub expires_at: i64,
}

pub struct NewApiAccessToken {
    pub refresh_token_id: i64,
    pub user_id: UserId,
    pub token_hash: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// What authentication needs to know about an API access token: its state,
/// its refresh token's state and its user.
#[derive(Debug, Clone)]
pub struct ApiAccessTokenGrant {
    pub token_id: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub refresh_revoked_at: Option<i64>,
    pub user: User,
}

pub struct NewM2mClient {
    pub client_id: String,
    pub name: String,
    pub role: Role,
    pub access_token_duration: i64,
    pub secret_hash: String,
}

#[derive(Default)]
pub struct M2mClientUpdate {
    pub is_service: Option<bool>,
    pub name: Option<String>,
    pub role: Option<Role>,
    pub access_token_duration: Option<i64>,
    pub disabled: Option<bool>,
}

/// A client with what authenticating it needs.
#[derive(Debug, Clone)]
pub struct M2mClientRecord {
    pub client: M2mClient,
    pub secret_hash: String,
    pub previous_secret_hash: Option<String>,
    pub previous_secret_expires_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct StoredSigningKey {
    pub kid: String,
    pub alg: String,
    /// Sealed PKCS#8, base64.
    pub private_key: String,
    pub active: bool,
    pub created_at: i64,
    pub retire_after: Option<i64>,
}

/// What a node's caches must forget because some node changed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// One M2M client changed (updated, disabled, deleted, secret rotated).
    Client(String),
    /// Watching (re)started: anything cached before may be stale.
    All,
    /// Watching stopped: caches must not be trusted until `All` comes.
    Lost,
}

pub type InvalidationSink = Box<dyn Fn(Invalidation) + Send + Sync>;

/// A refresh token as stored (never the token itself).
#[derive(Debug, Clone)]
pub struct RefreshTokenRecord {
    pub id: i64,
    pub user_id: UserId,
    pub name: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

/// An API access token as stored (never the token itself).
#[derive(Debug, Clone)]
pub struct ApiAccessTokenRecord {
    pub id: i64,
    pub refresh_token_id: i64,
    pub user_id: UserId,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

pub struct NewOAuthClient {
    pub client_id: String,
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub client_type: ClientType,
    pub secret_hash: Option<String>,
    pub refresh_token_lifetime: i64,
    pub access_token_lifetime: i64,
    pub pkce_enabled: bool,
}

#[derive(Debug, Clone)]
pub struct OAuthClientRecord {
    pub client: DelegatedClient,
    pub secret_hash: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewAuthorizationCode {
    pub code_hash: String,
    pub client_id: String,
    pub user_id: UserId,
    pub redirect_uri: String,
    pub scope: String,
    pub resources: Vec<String>,
    pub code_challenge: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

pub enum CodeRedemption {
    /// The code, now used up.
    Redeemed(NewAuthorizationCode),
    /// Used before: what it issued must be revoked.
    Replayed { grant_id: Option<i64> },
    /// Unknown, expired, or another client's.
    Invalid,
}

/// A family of tokens descending from one authorization code.
#[derive(Debug, Clone)]
pub struct GrantRecord {
    pub id: i64,
    pub client_id: String,
    pub user_id: UserId,
    pub scope: String,
    pub resources: Vec<String>,
    pub revoked: bool,
}

/// A delegated refresh token's state.
#[derive(Debug, Clone)]
pub struct OAuthRefreshState {
    pub grant: GrantRecord,
    pub expires_at: i64,
    pub rotated_at: Option<i64>,
    /// Sealed successor response, while the grace window lasts.
    pub successor: Option<String>,
    pub revoked: bool,
}

/// Tokens issued in a grant: the refresh token (if a new one) and the JWT id.
pub struct IssuedInGrant {
    pub refresh: Option<(String, i64)>,
    pub jti: String,
    pub jti_expires_at: i64,
}

/// An outbound client as stored: settings, and the sealed secret.
#[derive(Debug, Clone)]
pub struct OutboundClientRecord {
    pub id: String,
    pub settings: crate::domain::outbound::OutboundClientSettings,
    pub sealed_secret: Option<String>,
    pub created_at: i64,
    /// Changes with every update: tokens fetched under one version are
    /// stored only while it is still the current one.
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct ConnectionRecord {
    pub id: String,
    pub outbound_client_id: String,
    pub user_id: UserId,
    pub name: String,
    pub status: String,
    pub status_detail: Option<String>,
    pub sealed_access_token: Option<String>,
    pub sealed_refresh_token: Option<String>,
    pub obtained_at: Option<i64>,
    pub access_expires_at: Option<i64>,
    pub created_at: i64,
}

/// What binding a pending connection authorization to a browser did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindOutcome {
    Bound {
        connection_id: String,
        sealed_verifier: Option<String>,
    },
    /// It exists, unused, but was started for another user: left as it is.
    OtherUser,
    /// Unknown, expired, used or already bound.
    Unusable,
}

#[derive(Debug, Clone)]
pub struct CredentialRecord {
    pub principal: String,
    pub dp_id: String,
    pub state: String,
    pub username: String,
    pub sealed_password: String,
    pub updated_at: i64,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> Backend;

    /// Whether the database answers (for `/readyz`).
    async fn ping(&self) -> StoreResult<()>;

    /// Closes the connections once requests in flight are done.
    async fn close(&self);

    /// Whether other processes may change the store behind this node's back
    /// (PostgreSQL with several nodes); if not, local eviction suffices.
    fn is_shared(&self) -> bool;

    /// Reports every change any node commits that caches must forget, until
    /// the task running it is dropped. Changes are announced inside the
    /// writing transaction, so they are delivered exactly when they commit.
    async fn watch_invalidations(&self, sink: InvalidationSink);

    /// Returns the value stored under `name`, storing `value` first if there
    /// is none. Concurrent first starts agree on one value.
    async fn meta_get_or_init(&self, name: &str, value: &str) -> StoreResult<String>;
    async fn meta_get(&self, name: &str) -> StoreResult<Option<String>>;
    /// Stores `value` under `name`, replacing what was there.
    async fn meta_put(&self, name: &str, value: &str, event: AuditEvent) -> StoreResult<()>;
    /// Deletes every meta record whose name starts with `prefix`, but `keep`.
    async fn meta_delete_prefix(&self, prefix: &str, keep: &str, event: AuditEvent) -> StoreResult<u64>;

    /// Creates the first admin exactly once in the store's life; `None` when
    /// that already happened (on this node or another).
    async fn bootstrap_admin(&self, admin: NewUser, event: AuditEvent) -> StoreResult<Option<User>>;

    async fn create_user(&self, user: NewUser, event: AuditEvent) -> StoreResult<User>;
    async fn user(&self, id: UserId) -> StoreResult<Option<User>>;
    /// A user by (case-insensitive) username, with the password hash.
    async fn user_credentials(&self, username: &str) -> StoreResult<Option<(User, Option<String>)>>;
    async fn list_users(&self, limit: i64, offset: i64) -> StoreResult<Vec<User>>;
    async fn update_user(&self, id: UserId, update: UserUpdate, event: AuditEvent) -> StoreResult<User>;
    async fn delete_user(&self, id: UserId, principal: &str, event: AuditEvent) -> StoreResult<()>;

    async fn setting(&self, key: &str) -> StoreResult<Option<String>>;
    async fn settings(&self) -> StoreResult<Vec<(String, String)>>;
    async fn put_setting(&self, key: &str, value: &str, event: AuditEvent) -> StoreResult<()>;
    async fn delete_setting(&self, key: &str, event: AuditEvent) -> StoreResult<()>;

    async fn append_audit(&self, event: AuditEvent) -> StoreResult<()>;
    async fn audit_events(&self, query: &AuditQuery) -> StoreResult<Vec<AuditRecord>>;

    async fn create_refresh_token(&self, token: NewRefreshToken, event: AuditEvent) -> StoreResult<i64>;
    /// Stores a new API access token and revokes every other active one made
    /// from the same refresh token, atomically; `NotFound` unless the refresh
    /// token is still active at `token.created_at`.
    async fn create_api_access_token(&self, token: NewApiAccessToken, event: AuditEvent) -> StoreResult<i64>;
    async fn refresh_token_by_hash(&self, token_hash: &str) -> StoreResult<Option<RefreshTokenRecord>>;
    async fn api_access_token_by_hash(&self, token_hash: &str) -> StoreResult<Option<ApiAccessTokenRecord>>;
    /// Revokes refresh token `old_id` (if still active at `new.created_at`)
    /// and the access tokens made from it, and stores `new`, atomically.
    /// `NotFound` when `old_id` was no longer active: two concurrent
    /// regenerations cannot both succeed.
    async fn regenerate_refresh_token(
        &self,
        old_id: i64,
        new: NewRefreshToken,
        event: AuditEvent,
    ) -> StoreResult<i64>;
    /// Revokes the active access tokens made from a refresh token; how many.
    async fn revoke_api_access_tokens(
        &self,
        refresh_token_id: i64,
        at: i64,
        event: AuditEvent,
    ) -> StoreResult<u64>;
    /// Records last use, batched: `(token id, unix µs)` pairs.
    async fn touch_api_access_tokens(&self, uses: &[(i64, i64)]) -> StoreResult<()>;

    /// Counts one login attempt against each key, in order, before its
    /// password is checked, as one atomic step (across nodes): if a key is
    /// locked at `now`, nothing is counted and the end of the lock is the
    /// answer. Otherwise each count grows by one (starting over when the
    /// last failure is older than `window_start`) and the key is locked
    /// for `lock_for(count) * unit`.
    async fn reserve_login_attempt(
        &self,
        keys: &[(String, fn(i64) -> i64)],
        now: i64,
        window_start: i64,
        unit: i64,
    ) -> StoreResult<Option<i64>>;
    /// Gives back the slot an attempt that succeeded had reserved.
    async fn release_login_attempt(&self, key: &str) -> StoreResult<()>;
    async fn clear_login_failures(&self, keys: &[String]) -> StoreResult<()>;
    /// Deletes rows nothing needs any more: sessions, revoked JWT ids and
    /// grant JWT ids past their expiry (`now`, µs), pending connection
    /// authorizations past theirs (`now_ms`), authorization codes that
    /// expired before `codes_before` (kept a while to catch replays), and
    /// unlocked throttle counts last touched before `throttle_before`. How
    /// many rows went.
    async fn purge_expired(
        &self,
        now: i64,
        now_ms: i64,
        codes_before: i64,
        throttle_before: i64,
    ) -> StoreResult<u64>;
    async fn api_access_token_grant(&self, token_hash: &str) -> StoreResult<Option<ApiAccessTokenGrant>>;

    /// Writes many audit events in one transaction (for high-rate events).
    async fn append_audit_batch(&self, events: Vec<AuditEvent>) -> StoreResult<()>;

    async fn create_m2m_client(&self, client: NewM2mClient, event: AuditEvent) -> StoreResult<M2mClient>;
    async fn m2m_client(&self, client_id: &str) -> StoreResult<Option<M2mClientRecord>>;
    async fn list_m2m_clients(&self) -> StoreResult<Vec<M2mClient>>;
    async fn update_m2m_client(
        &self,
        client_id: &str,
        update: M2mClientUpdate,
        event: AuditEvent,
    ) -> StoreResult<M2mClient>;
    async fn delete_m2m_client(&self, client_id: &str, principal: &str, event: AuditEvent)
    -> StoreResult<()>;
    /// Replaces the secret; the current one keeps verifying until
    /// `previous_expires_at`.
    async fn rotate_m2m_client_secret(
        &self,
        client_id: &str,
        secret_hash: &str,
        previous_expires_at: i64,
        event: AuditEvent,
    ) -> StoreResult<M2mClient>;

    /// Signing keys still published (active, or retiring after `now`).
    async fn signing_keys(&self, now: i64) -> StoreResult<Vec<StoredSigningKey>>;
    /// Adds `key` as the active key. With `retire_current_after`, the current
    /// active key becomes a retiring one; without, the insert is skipped
    /// (returning false) if an active key exists, so that concurrent first
    /// starts agree on one key.
    async fn add_signing_key(
        &self,
        key: StoredSigningKey,
        retire_current_after: Option<i64>,
        event: AuditEvent,
    ) -> StoreResult<bool>;

    async fn create_oauth_client(
        &self,
        client: NewOAuthClient,
        event: AuditEvent,
    ) -> StoreResult<DelegatedClient>;
    async fn oauth_client(&self, client_id: &str) -> StoreResult<Option<OAuthClientRecord>>;
    async fn list_oauth_clients(&self) -> StoreResult<Vec<DelegatedClient>>;
    /// Replaces name, redirect URIs, lifetimes and PKCE (the type and secret stay).
    async fn replace_oauth_client(
        &self,
        client: NewOAuthClient,
        event: AuditEvent,
    ) -> StoreResult<DelegatedClient>;
    /// Deletes the client and, with it, its grants, codes and consents.
    async fn delete_oauth_client(&self, client_id: &str, event: AuditEvent) -> StoreResult<()>;
    async fn set_oauth_client_secret(
        &self,
        client_id: &str,
        secret_hash: &str,
        event: AuditEvent,
    ) -> StoreResult<()>;

    async fn create_session(
        &self,
        id_hash: &str,
        user_id: UserId,
        created_at: i64,
        expires_at: i64,
    ) -> StoreResult<()>;
    /// The active user of an unexpired session.
    async fn session_user(&self, id_hash: &str, now: i64) -> StoreResult<Option<User>>;

    async fn has_consent(&self, user_id: UserId, client_id: &str, scope: &str) -> StoreResult<bool>;
    async fn add_consent(
        &self,
        user_id: UserId,
        client_id: &str,
        scope: &str,
        event: AuditEvent,
    ) -> StoreResult<()>;
    /// `(client_id, scope, created_at)` of a user's remembered consents.
    async fn consents(&self, user_id: UserId) -> StoreResult<Vec<(String, String, i64)>>;
    /// Forgets a user's consents to a client and revokes the grants (and
    /// their tokens) the client holds for the user; how many consents.
    async fn revoke_consents(
        &self,
        user_id: UserId,
        client_id: &str,
        now: i64,
        event: AuditEvent,
    ) -> StoreResult<u64>;

    async fn insert_authorization_code(&self, code: NewAuthorizationCode) -> StoreResult<()>;
    /// Uses up `code_hash` of `client_id` if it is unused and unexpired.
    async fn redeem_authorization_code(
        &self,
        code_hash: &str,
        client_id: &str,
        now: i64,
    ) -> StoreResult<CodeRedemption>;
    /// Opens the grant of a redeemed code with its first tokens.
    async fn create_grant(
        &self,
        code_hash: &str,
        code: &NewAuthorizationCode,
        issued: IssuedInGrant,
        event: AuditEvent,
    ) -> StoreResult<i64>;
    async fn oauth_refresh_token(&self, token_hash: &str) -> StoreResult<Option<OAuthRefreshState>>;
    /// Marks `old_hash` rotated, keeping `successor` (sealed) for replays in
    /// the grace window, and stores what `issued` lists — if and only if
    /// `old_hash` was not rotated yet (false: another request won).
    async fn rotate_oauth_refresh_token(
        &self,
        old_hash: &str,
        grant_id: i64,
        now: i64,
        successor: &str,
        issued: IssuedInGrant,
    ) -> StoreResult<bool>;
    /// Records a JWT issued within a grant without rotating anything.
    async fn record_grant_jti(&self, grant_id: i64, jti: &str, expires_at: i64) -> StoreResult<()>;
    /// Forgets sealed successors rotated before `before`.
    async fn drop_successors(&self, before: i64) -> StoreResult<()>;
    /// Revokes a grant: its refresh tokens and every JWT issued in it.
    async fn revoke_grant(&self, grant_id: i64, now: i64, event: AuditEvent) -> StoreResult<()>;

    async fn create_outbound_client(
        &self,
        client: OutboundClientRecord,
        event: AuditEvent,
    ) -> StoreResult<()>;
    async fn outbound_client(&self, id: &str) -> StoreResult<Option<OutboundClientRecord>>;
    async fn list_outbound_clients(&self) -> StoreResult<Vec<OutboundClientRecord>>;
    /// Replaces settings, and the sealed secret when `Some`.
    async fn update_outbound_client(
        &self,
        id: &str,
        settings: &crate::domain::outbound::OutboundClientSettings,
        sealed_secret: Option<&str>,
        reset_connections: Option<(&str, &str)>,
        event: AuditEvent,
    ) -> StoreResult<()>;
    async fn delete_outbound_client(&self, id: &str, event: AuditEvent) -> StoreResult<()>;

    async fn create_connection(&self, c: ConnectionRecord, event: AuditEvent) -> StoreResult<()>;
    async fn connection(&self, id: &str) -> StoreResult<Option<ConnectionRecord>>;
    async fn connections_of(&self, user_id: UserId) -> StoreResult<Vec<ConnectionRecord>>;
    async fn delete_connection(&self, id: &str, event: AuditEvent) -> StoreResult<()>;
    /// Takes the connection's lease until `until` (ms) if nobody holds one at
    /// `now` (ms) and its tokens are still those obtained at `seen` (the
    /// caller's read): whoever gets it talks to the provider. The second
    /// condition stops a caller that read before another's refresh from
    /// refreshing again after it.
    async fn take_connection_lease(
        &self,
        id: &str,
        now: i64,
        until: i64,
        seen: Option<i64>,
    ) -> StoreResult<bool>;
    /// Stores new tokens (a `None` refresh token keeps the old one), marks
    /// the connection active and gives the lease back.
    async fn store_connection_tokens(
        &self,
        id: &str,
        sealed_access: &str,
        sealed_refresh: Option<&str>,
        obtained_at: i64,
        access_expires_at: i64,
        client_version: i64,
        event: AuditEvent,
    ) -> StoreResult<bool>;
    /// Forgets the connection's tokens and marks it revoked.
    async fn revoke_connection(&self, id: &str, event: AuditEvent) -> StoreResult<()>;
    /// Sets the status (and the provider's error) and gives the lease back.
    async fn set_connection_status(
        &self,
        id: &str,
        status: &str,
        detail: Option<&str>,
        event: AuditEvent,
    ) -> StoreResult<()>;
    async fn release_connection_lease(&self, id: &str) -> StoreResult<()>;
    /// Active connections whose access token expires before `expiring_before`
    /// or that were last refreshed before `idle_before` (all ms).
    async fn connections_due(
        &self,
        expiring_before: i64,
        idle_before: i64,
        limit: i64,
    ) -> StoreResult<Vec<ConnectionRecord>>;
    #[allow(clippy::too_many_arguments)]
    async fn insert_connection_authorization(
        &self,
        state_hash: &str,
        connection_id: &str,
        user_id: UserId,
        sealed_verifier: Option<&str>,
        created_at: i64,
        expires_at: i64,
    ) -> StoreResult<()>;
    /// The connection of a pending (unused, unexpired) authorization.
    async fn pending_connection_authorization(
        &self,
        state_hash: &str,
        now: i64,
    ) -> StoreResult<Option<String>>;
    /// Binds a pending authorization to a browser (once), if `user_id` is
    /// the one it was started for.
    async fn bind_connection_authorization(
        &self,
        state_hash: &str,
        browser_hash: &str,
        user_id: UserId,
        now: i64,
    ) -> StoreResult<BindOutcome>;
    /// Uses up a pending authorization if unused, unexpired, and arriving
    /// for `user_id` in the browser it was bound to (anyone else leaves it
    /// as it is): `(connection_id, sealed_verifier)`.
    async fn redeem_connection_authorization(
        &self,
        state_hash: &str,
        user_id: UserId,
        browser_hash: &str,
        now: i64,
    ) -> StoreResult<Option<(String, Option<String>)>>;

    /// Creates or replaces a data product.
    async fn put_data_product(
        &self,
        dp: &crate::domain::vault::DataProduct,
        event: AuditEvent,
    ) -> StoreResult<()>;
    async fn data_product(&self, dp_id: &str) -> StoreResult<Option<crate::domain::vault::DataProduct>>;
    async fn data_products(&self) -> StoreResult<Vec<crate::domain::vault::DataProduct>>;
    async fn delete_data_product(&self, dp_id: &str, event: AuditEvent) -> StoreResult<()>;
    /// Stores credentials, replacing the principal's earlier ones for the product.
    async fn put_credentials(&self, c: &CredentialRecord, event: AuditEvent) -> StoreResult<()>;
    async fn credentials(&self, principal: &str, dp_id: &str) -> StoreResult<Option<CredentialRecord>>;
    async fn credentials_of(&self, principal: &str) -> StoreResult<Vec<CredentialRecord>>;
    async fn delete_credentials(&self, principal: &str, dp_id: &str, event: AuditEvent) -> StoreResult<()>;

    /// Refuses the JWT `jti` from now on (kept until it would expire anyway).
    async fn revoke_jti(&self, jti: &str, expires_at: i64, event: AuditEvent) -> StoreResult<()>;
    async fn is_jti_revoked(&self, jti: &str) -> StoreResult<bool>;
}

pub type DynStore = Arc<dyn Store>;
