//! [`Store`] on sqlx's `Any` driver: one implementation, one SQL text for
//! SQLite and PostgreSQL. The SQL is kept to the common dialect (`$N`
//! placeholders, `RETURNING`, `ON CONFLICT`); timestamps are BIGINT unix
//! microseconds so no type differs between backends. The few statements that
//! must differ branch on [`Backend`].

use super::*;
use crate::domain::client::M2mClient;
use crate::domain::delegated::{ClientType, DelegatedClient};
use crate::domain::user::username_key;
use crate::domain::{AuthSource, from_micros, now, to_micros};
use sqlx::AnyConnection;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Connection, FromRow};
use std::time::Duration;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Per-connection SQLite settings: WAL for concurrent readers, FULL sync so a
/// commit survives power loss (a token is handed out only after it), foreign
/// keys on, and a busy timeout instead of immediate SQLITE_BUSY.
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;";

pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    /// Kept for the change listener's own connection (PostgreSQL).
    url: String,
}

/// The PostgreSQL notification channel of cache invalidations.
const INVALIDATION_CHANNEL: &str = "keyward_invalidations";

impl SqlStore {
    /// Connects, configures and migrates. `url` is `sqlite://PATH?mode=rwc` or
    /// `postgres://…`.
    pub async fn open(url: &str) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::Database(sqlx::Error::Configuration(
                "database URL must start with sqlite:, postgres:// or postgresql://".into(),
            )));
        };
        let max = match backend {
            Backend::Sqlite => 8,
            Backend::Postgres => 16,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        sqlx::raw_sql(SQLITE_PRAGMAS).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        Ok(SqlStore { pool, backend, url: url.to_string() })
    }

    /// A write transaction. SQLite's must take the write lock up front
    /// (`BEGIN IMMEDIATE`): a deferred one that reads and then writes fails
    /// with SQLITE_BUSY when another writer got there first.
    async fn begin_write(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// Runs `sql` (a DELETE of one row by `$1`) with its audit event in one
    /// transaction; `NotFound` when it deleted nothing.
    async fn delete_one(
        &self,
        sql: &'static str,
        key: &str,
        announce: Option<String>,
        event: AuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        if sqlx::query(sql).bind(key).execute(&mut *tx).await?.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        if let Some(what) = announce {
            self.announce(&mut tx, &what).await?;
        }
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Announces `what` to every node's cache when `tx` commits.
    async fn announce(&self, tx: &mut AnyConnection, what: &str) -> StoreResult<()> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(INVALIDATION_CHANNEL)
                .bind(what)
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }

    /// The ids of the active server admins, locked until `tx` ends, so that two
    /// concurrent demotions cannot each see the other as the remaining admin.
    /// (SQLite's write transactions are exclusive already; PostgreSQL needs
    /// the row locks.)
    async fn lock_active_admins(&self, tx: &mut AnyConnection) -> StoreResult<Vec<i64>> {
        let lock = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        };
        let sql = format!(
            "SELECT id FROM users WHERE role = 'server_admin' AND disabled_at IS NULL ORDER BY id{lock}"
        );
        let rows: Vec<(i64,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(&mut *tx).await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }
}

fn conflict(what: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what),
        _ => StoreError::Database(e),
    }
}

/// The stored form of an event's detail: a JSON object, `{}` when empty.
fn detail_text(event: &AuditEvent) -> String {
    if event.detail.is_null() { "{}".to_string() } else { event.detail.to_string() }
}

async fn insert_audit(conn: &mut AnyConnection, event: &AuditEvent) -> StoreResult<()> {
    let detail = detail_text(event);
    sqlx::query(
        "INSERT INTO audit_events (at, actor, action, target, outcome, client_addr, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(to_micros(now()))
    .bind(event.actor.to_string())
    .bind(event.action)
    .bind(event.target.clone())
    .bind(event.outcome.as_str())
    .bind(event.client_addr.clone())
    .bind(detail)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

const USER_COLUMNS: &str = "id, username, role, auth_source, disabled_at, created_at";

#[derive(FromRow)]
struct UserRow {
    id: i64,
    username: String,
    role: String,
    auth_source: String,
    disabled_at: Option<i64>,
    created_at: i64,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;
    fn try_from(r: UserRow) -> StoreResult<User> {
        let role = r
            .role
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("user {} has role {:?}", r.id, r.role)))?;
        let auth_source = match r.auth_source.as_str() {
            "password" => AuthSource::Password,
            "sso" => AuthSource::Sso,
            other => return Err(StoreError::Corrupt(format!("user {} has auth source {other:?}", r.id))),
        };
        Ok(User {
            id: r.id,
            username: r.username,
            role,
            auth_source,
            disabled: r.disabled_at.is_some(),
            created_at: from_micros(r.created_at),
        })
    }
}

#[derive(FromRow)]
struct UserCredentialRow {
    #[sqlx(flatten)]
    user: UserRow,
    password_hash: Option<String>,
}

#[derive(FromRow)]
struct AuditRow {
    id: i64,
    at: i64,
    actor: String,
    action: String,
    target: Option<String>,
    outcome: String,
    client_addr: Option<String>,
    detail: String,
}

#[derive(FromRow)]
struct RefreshTokenRow {
    id: i64,
    user_id: i64,
    name: String,
    created_at: i64,
    expires_at: i64,
    revoked_at: Option<i64>,
    last_used_at: Option<i64>,
}

#[derive(FromRow)]
struct ApiAccessTokenRow {
    id: i64,
    refresh_token_id: i64,
    user_id: i64,
    created_at: i64,
    expires_at: i64,
    revoked_at: Option<i64>,
    last_used_at: Option<i64>,
}

#[derive(FromRow)]
struct ApiAccessTokenGrantRow {
    token_id: i64,
    expires_at: i64,
    revoked_at: Option<i64>,
    refresh_revoked_at: Option<i64>,
    #[sqlx(flatten)]
    user: UserRow,
}

const M2M_COLUMNS: &str = "client_id, name, role, access_token_duration, disabled_at, created_at, \
     secret_rotated_at, secret_hash, previous_secret_hash, previous_secret_expires_at, is_service, tokens_not_before";

#[derive(FromRow)]
struct M2mClientRow {
    client_id: String,
    name: String,
    role: String,
    access_token_duration: i64,
    disabled_at: Option<i64>,
    created_at: i64,
    secret_rotated_at: Option<i64>,
    secret_hash: String,
    previous_secret_hash: Option<String>,
    previous_secret_expires_at: Option<i64>,
    is_service: i64,
    tokens_not_before: Option<i64>,
}

impl TryFrom<M2mClientRow> for M2mClientRecord {
    type Error = StoreError;
    fn try_from(r: M2mClientRow) -> StoreResult<Self> {
        let role = r
            .role
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("client {} has role {:?}", r.client_id, r.role)))?;
        Ok(M2mClientRecord {
            client: M2mClient {
                client_id: r.client_id,
                name: r.name,
                role,
                access_token_duration: r.access_token_duration,
                disabled: r.disabled_at.is_some(),
                is_service: r.is_service != 0,
                created_at: from_micros(r.created_at),
                secret_rotated_at: r.secret_rotated_at.map(from_micros),
                tokens_not_before: r.tokens_not_before,
            },
            secret_hash: r.secret_hash,
            previous_secret_hash: r.previous_secret_hash,
            previous_secret_expires_at: r.previous_secret_expires_at,
        })
    }
}

#[derive(FromRow)]
struct SigningKeyRow {
    kid: String,
    alg: String,
    private_key: String,
    active: Option<i64>,
    created_at: i64,
    retire_after: Option<i64>,
}

/// Stores a new refresh token; its id.
async fn insert_refresh_token(conn: &mut AnyConnection, token: &NewRefreshToken) -> StoreResult<i64> {
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO refresh_tokens (user_id, name, token_hash, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(token.user_id)
    .bind(&token.name)
    .bind(&token.token_hash)
    .bind(token.created_at)
    .bind(token.expires_at)
    .fetch_one(&mut *conn)
    .await
    .map_err(conflict("a refresh token with this hash"))?;
    Ok(id)
}

/// Revokes the active access tokens made from a refresh token; how many.
async fn revoke_access_tokens_of(
    conn: &mut AnyConnection,
    refresh_token_id: i64,
    at: i64,
) -> StoreResult<u64> {
    Ok(sqlx::query(
        "UPDATE api_access_tokens SET revoked_at = $2 WHERE refresh_token_id = $1 AND revoked_at IS NULL",
    )
    .bind(refresh_token_id)
    .bind(at)
    .execute(&mut *conn)
    .await?
    .rows_affected())
}

const OAUTH_CLIENT_COLUMNS: &str = "client_id, name, redirect_uris, client_type, secret_hash, \
     refresh_token_lifetime, access_token_lifetime, pkce_enabled, created_at";

#[derive(FromRow)]
struct OAuthClientRow {
    client_id: String,
    name: String,
    redirect_uris: String,
    client_type: String,
    secret_hash: Option<String>,
    refresh_token_lifetime: i64,
    access_token_lifetime: i64,
    pkce_enabled: i64,
    created_at: i64,
}

impl TryFrom<OAuthClientRow> for OAuthClientRecord {
    type Error = StoreError;
    fn try_from(r: OAuthClientRow) -> StoreResult<Self> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("OAuth client {} has {what}", r.client_id));
        let redirect_uris =
            serde_json::from_str(&r.redirect_uris).map_err(|_| corrupt("bad redirect URIs"))?;
        let grant_type = match r.client_type.as_str() {
            "confidential" => ClientType::Confidential,
            "public" => ClientType::Public,
            _ => return Err(corrupt("an unknown type")),
        };
        Ok(OAuthClientRecord {
            client: DelegatedClient {
                client_id: r.client_id,
                name: r.name,
                redirect_uris,
                grant_type,
                refresh_token_lifetime: r.refresh_token_lifetime,
                access_token_lifetime: r.access_token_lifetime,
                pkce_enabled: r.pkce_enabled != 0,
                created_at: from_micros(r.created_at),
            },
            secret_hash: r.secret_hash,
        })
    }
}

#[derive(FromRow)]
struct OutboundRow {
    id: String,
    settings: String,
    client_secret: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<OutboundRow> for OutboundClientRecord {
    type Error = StoreError;
    fn try_from(r: OutboundRow) -> StoreResult<Self> {
        let settings = serde_json::from_str(&r.settings)
            .map_err(|e| StoreError::Corrupt(format!("outbound client {} has bad settings: {e}", r.id)))?;
        Ok(OutboundClientRecord {
            id: r.id,
            settings,
            sealed_secret: r.client_secret,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

const CONNECTION_COLUMNS: &str = "id, outbound_client_id, user_id, name, status, status_detail, access_token, \
     refresh_token, obtained_at, access_expires_at, created_at";

#[derive(FromRow)]
struct ConnectionRow {
    id: String,
    outbound_client_id: String,
    user_id: i64,
    name: String,
    status: String,
    status_detail: Option<String>,
    access_token: Option<String>,
    refresh_token: Option<String>,
    obtained_at: Option<i64>,
    access_expires_at: Option<i64>,
    created_at: i64,
}

impl From<ConnectionRow> for ConnectionRecord {
    fn from(r: ConnectionRow) -> Self {
        ConnectionRecord {
            id: r.id,
            outbound_client_id: r.outbound_client_id,
            user_id: r.user_id,
            name: r.name,
            status: r.status,
            status_detail: r.status_detail,
            sealed_access_token: r.access_token,
            sealed_refresh_token: r.refresh_token,
            obtained_at: r.obtained_at,
            access_expires_at: r.access_expires_at,
            created_at: r.created_at,
        }
    }
}

#[derive(FromRow)]
struct CredentialRow {
    principal: String,
    dp_id: String,
    state: String,
    username: String,
    password: String,
    updated_at: i64,
}

impl From<CredentialRow> for CredentialRecord {
    fn from(r: CredentialRow) -> Self {
        CredentialRecord {
            principal: r.principal,
            dp_id: r.dp_id,
            state: r.state,
            username: r.username,
            sealed_password: r.password,
            updated_at: r.updated_at,
        }
    }
}

fn data_product_from(
    dp_id: String,
    name: String,
    warehouse: &str,
) -> StoreResult<crate::domain::vault::DataProduct> {
    let warehouse = serde_json::from_str(warehouse)
        .map_err(|e| StoreError::Corrupt(format!("data product {dp_id} has a bad warehouse: {e}")))?;
    Ok(crate::domain::vault::DataProduct { dp_id, name, warehouse })
}

#[derive(FromRow)]
struct CodeRow {
    client_id: String,
    user_id: i64,
    redirect_uri: String,
    scope: String,
    resources: String,
    code_challenge: Option<String>,
    created_at: i64,
    expires_at: i64,
}

#[derive(FromRow)]
struct RefreshStateRow {
    grant_id: i64,
    client_id: String,
    user_id: i64,
    scope: String,
    resources: String,
    grant_revoked_at: Option<i64>,
    expires_at: i64,
    rotated_at: Option<i64>,
    successor: Option<String>,
    revoked_at: Option<i64>,
}

fn resources_json(resources: &[String]) -> String {
    serde_json::to_string(resources).expect("strings serialize")
}

fn resources_from(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

/// Stores the refresh token and the JWT id issued within a grant.
async fn insert_issued(
    conn: &mut AnyConnection,
    grant_id: i64,
    issued: &IssuedInGrant,
    now: i64,
) -> StoreResult<()> {
    if let Some((hash, expires_at)) = &issued.refresh {
        sqlx::query(
            "INSERT INTO oauth_refresh_tokens (token_hash, grant_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(hash)
        .bind(grant_id)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *conn)
        .await
        .map_err(conflict("a refresh token with this hash"))?;
    }
    sqlx::query("INSERT INTO oauth_grant_jtis (jti, grant_id, expires_at) VALUES ($1, $2, $3)")
        .bind(&issued.jti)
        .bind(grant_id)
        .bind(issued.jti_expires_at)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Revokes grant `grant_id`, its refresh tokens and its JWTs, in `conn`'s
/// transaction.
async fn revoke_grant_in(conn: &mut AnyConnection, grant_id: i64, now: i64) -> StoreResult<()> {
    sqlx::query("UPDATE oauth_grants SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1")
        .bind(grant_id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE oauth_refresh_tokens SET revoked_at = COALESCE(revoked_at, $2), successor = NULL WHERE grant_id = $1")
        .bind(grant_id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO revoked_tokens (jti, expires_at, revoked_at) \
         SELECT jti, expires_at, $2 FROM oauth_grant_jtis WHERE grant_id = $1 ON CONFLICT (jti) DO NOTHING",
    )
    .bind(grant_id)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Ends everything a user is signed in with: browser sessions, refresh and
/// API access tokens, and delegated grants (with their access tokens).
async fn end_user_credentials_in(conn: &mut AnyConnection, user_id: UserId, now: i64) -> StoreResult<()> {
    sqlx::query("DELETE FROM user_sessions WHERE user_id = $1").bind(user_id).execute(&mut *conn).await?;
    for table in ["refresh_tokens", "api_access_tokens"] {
        let sql = format!("UPDATE {table} SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL");
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user_id).bind(now).execute(&mut *conn).await?;
    }
    let grants: Vec<(i64,)> =
        sqlx::query_as("SELECT id FROM oauth_grants WHERE user_id = $1 AND revoked_at IS NULL")
            .bind(user_id)
            .fetch_all(&mut *conn)
            .await?;
    for (grant_id,) in grants {
        revoke_grant_in(conn, grant_id, now).await?;
    }
    Ok(())
}

/// A deleted principal's warehouse credentials go with it.
async fn delete_principal_credentials_in(conn: &mut AnyConnection, principal: &str) -> StoreResult<()> {
    sqlx::query("DELETE FROM warehouse_credentials WHERE principal = $1")
        .bind(principal)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn insert_user(conn: &mut AnyConnection, user: &NewUser) -> StoreResult<User> {
    let at = to_micros(now());
    let source = if user.password_hash.is_some() { "password" } else { "sso" };
    let sql = format!(
        "INSERT INTO users (username, username_key, password_hash, auth_source, role, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING {USER_COLUMNS}"
    );
    let row: UserRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(&user.username)
        .bind(username_key(&user.username))
        .bind(user.password_hash.clone())
        .bind(source)
        .bind(user.role.as_str())
        .bind(at)
        .fetch_one(&mut *conn)
        .await
        .map_err(conflict("a user with this username"))?;
    row.try_into()
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> Backend {
        self.backend
    }

    async fn ping(&self) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await?;
        conn.ping().await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    fn is_shared(&self) -> bool {
        self.backend == Backend::Postgres
    }

    async fn watch_invalidations(&self, sink: InvalidationSink) {
        if self.backend != Backend::Postgres {
            return;
        }
        loop {
            match sqlx::postgres::PgListener::connect(&self.url).await {
                Ok(mut listener) => match listener.listen(INVALIDATION_CHANNEL).await {
                    Ok(()) => {
                        sink(Invalidation::All);
                        // `None` or an error: the connection is gone, and
                        // with it any notification sent meanwhile.
                        while let Ok(Some(n)) = listener.try_recv().await {
                            match n.payload().strip_prefix("client:") {
                                Some(id) => sink(Invalidation::Client(id.to_string())),
                                None => sink(Invalidation::All),
                            }
                        }
                        sink(Invalidation::Lost);
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot listen for cache invalidations"),
                },
                Err(e) => tracing::warn!(error = %e, "cannot connect the cache invalidation listener"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn meta_get_or_init(&self, name: &str, value: &str) -> StoreResult<String> {
        sqlx::query("INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(value)
            .execute(&self.pool)
            .await?;
        let (stored,): (String,) =
            sqlx::query_as("SELECT value FROM meta WHERE name = $1").bind(name).fetch_one(&self.pool).await?;
        Ok(stored)
    }

    async fn meta_get(&self, name: &str) -> StoreResult<Option<String>> {
        let row: Option<(String,)> = sqlx::query_as("SELECT value FROM meta WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|(v,)| v))
    }

    async fn meta_put(&self, name: &str, value: &str, event: AuditEvent) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value")
            .bind(name)
            .bind(value)
            .execute(&mut *tx)
            .await?;
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn meta_delete_prefix(&self, prefix: &str, keep: &str, event: AuditEvent) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let names: Vec<(String,)> = sqlx::query_as("SELECT name FROM meta").fetch_all(&mut *tx).await?;
        let mut deleted = 0;
        for (name,) in names.iter().filter(|(n,)| n.starts_with(prefix) && n != keep) {
            deleted += sqlx::query("DELETE FROM meta WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(deleted)
    }

    async fn bootstrap_admin(&self, admin: NewUser, event: AuditEvent) -> StoreResult<Option<User>> {
        let mut tx = self.begin_write().await?;
        let claimed = sqlx::query(
            "INSERT INTO meta (name, value) VALUES ('bootstrapped', 'admin') ON CONFLICT (name) DO NOTHING",
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed == 0 {
            return Ok(None);
        }
        let user = insert_user(&mut tx, &admin).await?;
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(Some(user))
    }

    async fn create_user(&self, user: NewUser, event: AuditEvent) -> StoreResult<User> {
        let mut tx = self.begin_write().await?;
        let created = insert_user(&mut tx, &user).await?;
        let event = AuditEvent { target: Some(format!("user:{}", created.id)), ..event };
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(created)
    }

    async fn user(&self, id: UserId) -> StoreResult<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row: Option<UserRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await?;
        row.map(User::try_from).transpose()
    }

    async fn user_credentials(&self, username: &str) -> StoreResult<Option<(User, Option<String>)>> {
        let sql = format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE username_key = $1");
        let row: Option<UserCredentialRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(username_key(username))
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((User::try_from(r.user)?, r.password_hash))).transpose()
    }

    async fn list_users(&self, limit: i64, offset: i64) -> StoreResult<Vec<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY id LIMIT $1 OFFSET $2");
        let rows: Vec<UserRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(limit).bind(offset).fetch_all(&self.pool).await?;
        rows.into_iter().map(User::try_from).collect()
    }

    async fn update_user(&self, id: UserId, update: UserUpdate, event: AuditEvent) -> StoreResult<User> {
        let mut tx = self.begin_write().await?;
        let admins = self.lock_active_admins(&mut tx).await?;
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let current: User = sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?
            .try_into()?;
        let stays_active_admin = update.role.unwrap_or(current.role) == Role::ServerAdmin
            && !update.disabled.unwrap_or(current.disabled);
        if admins == [id] && !stays_active_admin {
            return Err(StoreError::LastServerAdmin);
        }
        let at = to_micros(now());
        let sql = format!(
            "UPDATE users SET role = COALESCE($2, role), password_hash = COALESCE($3, password_hash), \
             auth_source = CASE WHEN $3 IS NULL THEN auth_source ELSE 'password' END, \
             disabled_at = CASE WHEN $4 = 1 THEN COALESCE(disabled_at, $5) WHEN $4 = 0 THEN NULL ELSE disabled_at END, \
             updated_at = $5 WHERE id = $1 RETURNING {USER_COLUMNS}"
        );
        let row: UserRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(update.role.map(Role::as_str))
            .bind(update.password_hash)
            .bind(update.disabled.map(i64::from))
            .bind(at)
            .fetch_one(&mut *tx)
            .await?;
        if update.end_credentials {
            end_user_credentials_in(&mut tx, id, at).await?;
        }
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        row.try_into()
    }

    async fn delete_user(&self, id: UserId, principal: &str, event: AuditEvent) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let admins = self.lock_active_admins(&mut tx).await?;
        if admins == [id] {
            return Err(StoreError::LastServerAdmin);
        }
        let deleted = sqlx::query("DELETE FROM users WHERE id = $1").bind(id).execute(&mut *tx).await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        delete_principal_credentials_in(&mut tx, principal).await?;
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn setting(&self, key: &str) -> StoreResult<Option<String>> {
        let row: Option<(String,)> = sqlx::query_as("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|(v,)| v))
    }

    async fn settings(&self) -> StoreResult<Vec<(String, String)>> {
        Ok(sqlx::query_as("SELECT key, value FROM settings ORDER BY key").fetch_all(&self.pool).await?)
    }

    async fn put_setting(&self, key: &str, value: &str, event: AuditEvent) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO settings (key, value, updated_at, updated_by) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at, \
             updated_by = excluded.updated_by",
        )
        .bind(key)
        .bind(value)
        .bind(to_micros(now()))
        .bind(event.actor.to_string())
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_setting(&self, key: &str, event: AuditEvent) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM settings WHERE key = $1").bind(key).execute(&mut *tx).await?;
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn append_audit(&self, event: AuditEvent) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await?;
        insert_audit(&mut conn, &event).await
    }

    async fn audit_events(&self, query: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT id, at, actor, action, target, outcome, client_addr, detail FROM audit_events \
             WHERE ($1 IS NULL OR action = $1) AND ($2 IS NULL OR actor = $2) AND ($3 IS NULL OR id < $3) \
             ORDER BY id DESC LIMIT $4",
        )
        .bind(query.action.clone())
        .bind(query.actor.clone())
        .bind(query.before_id)
        .bind(query.limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| AuditRecord {
                id: r.id,
                at: from_micros(r.at),
                actor: r.actor,
                action: r.action,
                target: r.target,
                outcome: r.outcome,
                client_addr: r.client_addr,
                detail: serde_json::from_str(&r.detail).unwrap_or(serde_json::Value::Null),
            })
            .collect())
    }

    async fn create_refresh_token(&self, token: NewRefreshToken, event: AuditEvent) -> StoreResult<i64> {
        let mut tx = self.begin_write().await?;
        if self.backend == Backend::Postgres {
            // Concurrent creations for one user count one after the other.
            sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
                .bind(token.user_id)
                .execute(&mut *tx)
                .await?;
        }
        let (active,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM refresh_tokens WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2",
        )
        .bind(token.user_id)
        .bind(token.created_at)
        .fetch_one(&mut *tx)
        .await?;
        if active >= token.max_active {
            return Err(StoreError::LimitReached(token.max_active));
        }
        let id = insert_refresh_token(&mut tx, &token).await?;
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn create_api_access_token(&self, token: NewApiAccessToken, event: AuditEvent) -> StoreResult<i64> {
        let mut tx = self.begin_write().await?;
        // Marks the refresh token used, only if it is still active; on
        // PostgreSQL this also locks it, so that concurrent creations from
        // one refresh token run one after the other and the last one wins.
        let active = sqlx::query(
            "UPDATE refresh_tokens SET last_used_at = $2 WHERE id = $1 AND user_id = $3 \
             AND revoked_at IS NULL AND expires_at > $2",
        )
        .bind(token.refresh_token_id)
        .bind(token.created_at)
        .bind(token.user_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if active == 0 {
            return Err(StoreError::NotFound);
        }
        revoke_access_tokens_of(&mut tx, token.refresh_token_id, token.created_at).await?;
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO api_access_tokens (refresh_token_id, user_id, token_hash, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(token.refresh_token_id)
        .bind(token.user_id)
        .bind(&token.token_hash)
        .bind(token.created_at)
        .bind(token.expires_at)
        .fetch_one(&mut *tx)
        .await
        .map_err(conflict("an API access token with this hash"))?;
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn refresh_token_by_hash(&self, token_hash: &str) -> StoreResult<Option<RefreshTokenRecord>> {
        let row: Option<RefreshTokenRow> = sqlx::query_as(
            "SELECT id, user_id, name, created_at, expires_at, revoked_at, last_used_at FROM refresh_tokens \
             WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| RefreshTokenRecord {
            id: r.id,
            user_id: r.user_id,
            name: r.name,
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            last_used_at: r.last_used_at,
        }))
    }

    async fn api_access_token_by_hash(&self, token_hash: &str) -> StoreResult<Option<ApiAccessTokenRecord>> {
        let row: Option<ApiAccessTokenRow> = sqlx::query_as(
            "SELECT id, refresh_token_id, user_id, created_at, expires_at, revoked_at, last_used_at \
             FROM api_access_tokens WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| ApiAccessTokenRecord {
            id: r.id,
            refresh_token_id: r.refresh_token_id,
            user_id: r.user_id,
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            last_used_at: r.last_used_at,
        }))
    }

    async fn regenerate_refresh_token(
        &self,
        old_id: i64,
        new: NewRefreshToken,
        event: AuditEvent,
    ) -> StoreResult<i64> {
        let mut tx = self.begin_write().await?;
        let revoked = sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $2 WHERE id = $1 AND user_id = $3 \
             AND revoked_at IS NULL AND expires_at > $2",
        )
        .bind(old_id)
        .bind(new.created_at)
        .bind(new.user_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if revoked == 0 {
            return Err(StoreError::NotFound);
        }
        revoke_access_tokens_of(&mut tx, old_id, new.created_at).await?;
        let id = insert_refresh_token(&mut tx, &new).await?;
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn revoke_api_access_tokens(
        &self,
        refresh_token_id: i64,
        at: i64,
        event: AuditEvent,
    ) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let revoked = revoke_access_tokens_of(&mut tx, refresh_token_id, at).await?;
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(revoked)
    }

    async fn touch_api_access_tokens(&self, uses: &[(i64, i64)]) -> StoreResult<()> {
        if uses.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for (id, at) in uses {
            sqlx::query(
                "UPDATE api_access_tokens SET last_used_at = $2 WHERE id = $1 \
                 AND (last_used_at IS NULL OR last_used_at < $2)",
            )
            .bind(id)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn reserve_login_attempt(
        &self,
        keys: &[(String, fn(i64) -> i64)],
        now: i64,
        window_start: i64,
        unit: i64,
    ) -> StoreResult<Option<i64>> {
        // SQLite: the write transaction serializes attempts. PostgreSQL: the
        // upsert locks the row and sees the latest lock, which this
        // transaction sets before it commits.
        let mut tx = self.begin_write().await?;
        for (key, lock_for) in keys {
            let counted: Option<(i64,)> = sqlx::query_as(
                "INSERT INTO login_throttle (key, failures, last_failure_at, locked_until) VALUES ($1, 1, $2, 0) \
                 ON CONFLICT (key) DO UPDATE SET \
                 failures = CASE WHEN login_throttle.last_failure_at < $3 THEN 1 ELSE login_throttle.failures + 1 END, \
                 last_failure_at = $2 WHERE login_throttle.locked_until <= $2 RETURNING failures",
            )
            .bind(key)
            .bind(now)
            .bind(window_start)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((failures,)) = counted else {
                let (until,): (i64,) =
                    sqlx::query_as("SELECT locked_until FROM login_throttle WHERE key = $1")
                        .bind(key)
                        .fetch_one(&mut *tx)
                        .await?;
                tx.rollback().await?;
                return Ok(Some(until));
            };
            let lock = lock_for(failures);
            if lock > 0 {
                sqlx::query("UPDATE login_throttle SET locked_until = $2 WHERE key = $1")
                    .bind(key)
                    .bind(now + lock * unit)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(None)
    }

    async fn purge_expired(
        &self,
        now: i64,
        now_ms: i64,
        codes_before: i64,
        throttle_before: i64,
    ) -> StoreResult<u64> {
        let statements: [(&str, i64); 6] = [
            ("DELETE FROM user_sessions WHERE expires_at < $1", now),
            ("DELETE FROM revoked_tokens WHERE expires_at < $1", now),
            ("DELETE FROM oauth_grant_jtis WHERE expires_at < $1", now),
            ("DELETE FROM connection_authorizations WHERE expires_at < $1", now_ms),
            ("DELETE FROM oauth_authorization_codes WHERE expires_at < $1", codes_before),
            ("DELETE FROM login_throttle WHERE last_failure_at < $1 AND locked_until < $2", throttle_before),
        ];
        let mut purged = 0;
        for (sql, before) in statements {
            let mut query = sqlx::query(sql).bind(before);
            if sql.contains("$2") {
                query = query.bind(now);
            }
            purged += query.execute(&self.pool).await?.rows_affected();
        }
        Ok(purged)
    }

    async fn release_login_attempt(&self, key: &str) -> StoreResult<()> {
        sqlx::query("UPDATE login_throttle SET failures = failures - 1 WHERE key = $1 AND failures > 0")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn clear_login_failures(&self, keys: &[String]) -> StoreResult<()> {
        for key in keys {
            sqlx::query("DELETE FROM login_throttle WHERE key = $1").bind(key).execute(&self.pool).await?;
        }
        Ok(())
    }

    async fn api_access_token_grant(&self, token_hash: &str) -> StoreResult<Option<ApiAccessTokenGrant>> {
        let row: Option<ApiAccessTokenGrantRow> = sqlx::query_as(
            "SELECT t.id AS token_id, t.expires_at, t.revoked_at, r.revoked_at AS refresh_revoked_at, \
                    u.id, u.username, u.role, u.auth_source, u.disabled_at, u.created_at \
             FROM api_access_tokens t \
             JOIN refresh_tokens r ON r.id = t.refresh_token_id \
             JOIN users u ON u.id = t.user_id \
             WHERE t.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(ApiAccessTokenGrant {
                token_id: r.token_id,
                expires_at: r.expires_at,
                revoked_at: r.revoked_at,
                refresh_revoked_at: r.refresh_revoked_at,
                user: r.user.try_into()?,
            })
        })
        .transpose()
    }

    async fn append_audit_batch(&self, events: Vec<AuditEvent>) -> StoreResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        // Multi-row INSERTs: one statement per 500 events instead of one each.
        // SQLite gets anonymous `?` placeholders: it resolves a named one
        // (`$N`) by a linear search, quadratic over thousands of parameters.
        let mut tx = self.begin_write().await?;
        let at = to_micros(now());
        for chunk in events.chunks(500) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| match self.backend {
                    Backend::Sqlite => "(?, ?, ?, ?, ?, ?, ?)".to_string(),
                    Backend::Postgres => {
                        let n: Vec<String> = (1..=7).map(|k| format!("${}", i * 7 + k)).collect();
                        format!("({})", n.join(", "))
                    }
                })
                .collect();
            let sql = format!(
                "INSERT INTO audit_events (at, actor, action, target, outcome, client_addr, detail) VALUES {}",
                rows.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for event in chunk {
                query = query
                    .bind(at)
                    .bind(event.actor.to_string())
                    .bind(event.action)
                    .bind(event.target.clone())
                    .bind(event.outcome.as_str())
                    .bind(event.client_addr.clone())
                    .bind(detail_text(event));
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn create_m2m_client(&self, client: NewM2mClient, event: AuditEvent) -> StoreResult<M2mClient> {
        let mut tx = self.begin_write().await?;
        let at = to_micros(now());
        let sql = format!(
            "INSERT INTO m2m_clients (client_id, name, role, access_token_duration, secret_hash, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING {M2M_COLUMNS}"
        );
        let row: M2mClientRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&client.client_id)
            .bind(&client.name)
            .bind(client.role.as_str())
            .bind(client.access_token_duration)
            .bind(&client.secret_hash)
            .bind(at)
            .fetch_one(&mut *tx)
            .await
            .map_err(conflict("a client with this id"))?;
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(M2mClientRecord::try_from(row)?.client)
    }

    async fn m2m_client(&self, client_id: &str) -> StoreResult<Option<M2mClientRecord>> {
        let sql = format!("SELECT {M2M_COLUMNS} FROM m2m_clients WHERE client_id = $1");
        let row: Option<M2mClientRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(client_id).fetch_optional(&self.pool).await?;
        row.map(M2mClientRecord::try_from).transpose()
    }

    async fn list_m2m_clients(&self) -> StoreResult<Vec<M2mClient>> {
        let sql = format!("SELECT {M2M_COLUMNS} FROM m2m_clients ORDER BY created_at, client_id");
        let rows: Vec<M2mClientRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?;
        rows.into_iter().map(|r| Ok(M2mClientRecord::try_from(r)?.client)).collect()
    }

    async fn update_m2m_client(
        &self,
        client_id: &str,
        update: M2mClientUpdate,
        event: AuditEvent,
    ) -> StoreResult<M2mClient> {
        let mut tx = self.begin_write().await?;
        let sql = format!(
            "UPDATE m2m_clients SET name = COALESCE($2, name), role = COALESCE($3, role), \
             access_token_duration = COALESCE($4, access_token_duration), \
             disabled_at = CASE WHEN $5 = 1 THEN COALESCE(disabled_at, $6) WHEN $5 = 0 THEN NULL \
             ELSE disabled_at END, tokens_not_before = CASE WHEN $5 = 1 THEN $8 ELSE tokens_not_before END, \
             is_service = COALESCE($7, is_service), updated_at = $6 WHERE client_id = $1 \
             RETURNING {M2M_COLUMNS}"
        );
        let row: M2mClientRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(client_id)
            .bind(update.name)
            .bind(update.role.map(Role::as_str))
            .bind(update.access_token_duration)
            .bind(update.disabled.map(i64::from))
            .bind(to_micros(now()))
            .bind(update.is_service.map(i64::from))
            .bind(now().unix_timestamp())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        self.announce(&mut tx, &format!("client:{client_id}")).await?;
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(M2mClientRecord::try_from(row)?.client)
    }

    async fn delete_m2m_client(
        &self,
        client_id: &str,
        principal: &str,
        event: AuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query("DELETE FROM m2m_clients WHERE client_id = $1")
            .bind(client_id)
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        delete_principal_credentials_in(&mut tx, principal).await?;
        self.announce(&mut tx, &format!("client:{client_id}")).await?;
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn rotate_m2m_client_secret(
        &self,
        client_id: &str,
        secret_hash: &str,
        previous_expires_at: i64,
        event: AuditEvent,
    ) -> StoreResult<M2mClient> {
        let mut tx = self.begin_write().await?;
        let at = to_micros(now());
        let sql = format!(
            "UPDATE m2m_clients SET previous_secret_hash = secret_hash, previous_secret_expires_at = $3, \
             secret_hash = $2, secret_rotated_at = $4, updated_at = $4 WHERE client_id = $1 \
             RETURNING {M2M_COLUMNS}"
        );
        let row: M2mClientRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(client_id)
            .bind(secret_hash)
            .bind(previous_expires_at)
            .bind(at)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        self.announce(&mut tx, &format!("client:{client_id}")).await?;
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(M2mClientRecord::try_from(row)?.client)
    }

    async fn signing_keys(&self, now: i64) -> StoreResult<Vec<StoredSigningKey>> {
        let rows: Vec<SigningKeyRow> = sqlx::query_as(
            "SELECT kid, alg, private_key, active, created_at, retire_after FROM signing_keys \
             WHERE active = 1 OR retire_after > $1 ORDER BY created_at DESC",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| StoredSigningKey {
                kid: r.kid,
                alg: r.alg,
                private_key: r.private_key,
                active: r.active == Some(1),
                created_at: r.created_at,
                retire_after: r.retire_after,
            })
            .collect())
    }

    async fn add_signing_key(
        &self,
        key: StoredSigningKey,
        retire_current_after: Option<i64>,
        event: AuditEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        match retire_current_after {
            Some(after) => {
                sqlx::query("UPDATE signing_keys SET active = NULL, retire_after = $1 WHERE active = 1")
                    .bind(after)
                    .execute(&mut *tx)
                    .await?;
            }
            None => {
                let existing: Option<(String,)> =
                    sqlx::query_as("SELECT kid FROM signing_keys WHERE active = 1")
                        .fetch_optional(&mut *tx)
                        .await?;
                if existing.is_some() {
                    return Ok(false);
                }
            }
        }
        let inserted = sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_key, active, created_at) VALUES ($1, $2, $3, 1, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&key.kid)
        .bind(&key.alg)
        .bind(&key.private_key)
        .bind(key.created_at)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            // Another node's first start won the race for the active slot.
            return Ok(false);
        }
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn create_oauth_client(
        &self,
        client: NewOAuthClient,
        event: AuditEvent,
    ) -> StoreResult<DelegatedClient> {
        let mut tx = self.begin_write().await?;
        let at = to_micros(now());
        let sql = format!(
            "INSERT INTO oauth_clients (client_id, name, redirect_uris, client_type, secret_hash, \
             refresh_token_lifetime, access_token_lifetime, pkce_enabled, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING {OAUTH_CLIENT_COLUMNS}"
        );
        let row: OAuthClientRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&client.client_id)
            .bind(&client.name)
            .bind(resources_json(&client.redirect_uris))
            .bind(client.client_type.as_str())
            .bind(client.secret_hash.clone())
            .bind(client.refresh_token_lifetime)
            .bind(client.access_token_lifetime)
            .bind(i64::from(client.pkce_enabled))
            .bind(at)
            .fetch_one(&mut *tx)
            .await
            .map_err(conflict("an OAuth client with this id"))?;
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(OAuthClientRecord::try_from(row)?.client)
    }

    async fn oauth_client(&self, client_id: &str) -> StoreResult<Option<OAuthClientRecord>> {
        let sql = format!("SELECT {OAUTH_CLIENT_COLUMNS} FROM oauth_clients WHERE client_id = $1");
        let row: Option<OAuthClientRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(client_id).fetch_optional(&self.pool).await?;
        row.map(OAuthClientRecord::try_from).transpose()
    }

    async fn list_oauth_clients(&self) -> StoreResult<Vec<DelegatedClient>> {
        let sql = format!("SELECT {OAUTH_CLIENT_COLUMNS} FROM oauth_clients ORDER BY created_at, client_id");
        let rows: Vec<OAuthClientRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?;
        rows.into_iter().map(|r| Ok(OAuthClientRecord::try_from(r)?.client)).collect()
    }

    async fn replace_oauth_client(
        &self,
        client: NewOAuthClient,
        event: AuditEvent,
    ) -> StoreResult<DelegatedClient> {
        let mut tx = self.begin_write().await?;
        let sql = format!(
            "UPDATE oauth_clients SET name = $2, redirect_uris = $3, refresh_token_lifetime = $4, \
             access_token_lifetime = $5, pkce_enabled = $6, updated_at = $7 WHERE client_id = $1 \
             RETURNING {OAUTH_CLIENT_COLUMNS}"
        );
        let row: OAuthClientRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&client.client_id)
            .bind(&client.name)
            .bind(resources_json(&client.redirect_uris))
            .bind(client.refresh_token_lifetime)
            .bind(client.access_token_lifetime)
            .bind(i64::from(client.pkce_enabled))
            .bind(to_micros(now()))
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(OAuthClientRecord::try_from(row)?.client)
    }

    async fn delete_oauth_client(&self, client_id: &str, event: AuditEvent) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let at = to_micros(now());
        let grants: Vec<(i64,)> = sqlx::query_as("SELECT id FROM oauth_grants WHERE client_id = $1")
            .bind(client_id)
            .fetch_all(&mut *tx)
            .await?;
        for (grant_id,) in grants {
            revoke_grant_in(&mut tx, grant_id, at).await?;
        }
        let deleted = sqlx::query("DELETE FROM oauth_clients WHERE client_id = $1")
            .bind(client_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(StoreError::NotFound);
        }
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_oauth_client_secret(
        &self,
        client_id: &str,
        secret_hash: &str,
        event: AuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE oauth_clients SET secret_hash = $2, updated_at = $3 WHERE client_id = $1 \
             AND client_type = 'confidential'",
        )
        .bind(client_id)
        .bind(secret_hash)
        .bind(to_micros(now()))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound);
        }
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_session(
        &self,
        id_hash: &str,
        user_id: UserId,
        created_at: i64,
        expires_at: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO user_sessions (id_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(id_hash)
        .bind(user_id)
        .bind(created_at)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn session_user(&self, id_hash: &str, now: i64) -> StoreResult<Option<User>> {
        let sql = format!(
            "SELECT {} FROM user_sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.id_hash = $1 AND s.expires_at > $2 AND u.disabled_at IS NULL",
            USER_COLUMNS.split(", ").map(|c| format!("u.{c}")).collect::<Vec<_>>().join(", ")
        );
        let row: Option<UserRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id_hash)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        row.map(User::try_from).transpose()
    }

    async fn has_consent(&self, user_id: UserId, client_id: &str, scope: &str) -> StoreResult<bool> {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT created_at FROM oauth_consents WHERE user_id = $1 AND client_id = $2 AND scope = $3",
        )
        .bind(user_id)
        .bind(client_id)
        .bind(scope)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    async fn add_consent(
        &self,
        user_id: UserId,
        client_id: &str,
        scope: &str,
        event: AuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO oauth_consents (user_id, client_id, scope, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(user_id)
        .bind(client_id)
        .bind(scope)
        .bind(to_micros(now()))
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn consents(&self, user_id: UserId) -> StoreResult<Vec<(String, String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT client_id, scope, created_at FROM oauth_consents WHERE user_id = $1 ORDER BY client_id, scope",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn revoke_consents(
        &self,
        user_id: UserId,
        client_id: &str,
        now: i64,
        event: AuditEvent,
    ) -> StoreResult<u64> {
        let mut tx = self.begin_write().await?;
        let forgotten = sqlx::query("DELETE FROM oauth_consents WHERE user_id = $1 AND client_id = $2")
            .bind(user_id)
            .bind(client_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let grants: Vec<(i64,)> = sqlx::query_as(
            "SELECT id FROM oauth_grants WHERE user_id = $1 AND client_id = $2 AND revoked_at IS NULL",
        )
        .bind(user_id)
        .bind(client_id)
        .fetch_all(&mut *tx)
        .await?;
        for (grant_id,) in grants {
            revoke_grant_in(&mut tx, grant_id, now).await?;
        }
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(forgotten)
    }

    async fn insert_authorization_code(&self, code: NewAuthorizationCode) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO oauth_authorization_codes (code_hash, client_id, user_id, redirect_uri, scope, resources, \
             code_challenge, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&code.code_hash)
        .bind(&code.client_id)
        .bind(code.user_id)
        .bind(&code.redirect_uri)
        .bind(&code.scope)
        .bind(resources_json(&code.resources))
        .bind(code.code_challenge.clone())
        .bind(code.created_at)
        .bind(code.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn redeem_authorization_code(
        &self,
        code_hash: &str,
        client_id: &str,
        now: i64,
    ) -> StoreResult<CodeRedemption> {
        let mut tx = self.begin_write().await?;
        let row: Option<CodeRow> = sqlx::query_as(
            "UPDATE oauth_authorization_codes SET used_at = $3 \
             WHERE code_hash = $1 AND client_id = $2 AND used_at IS NULL AND expires_at > $3 \
             RETURNING client_id, user_id, redirect_uri, scope, resources, code_challenge, created_at, expires_at",
        )
        .bind(code_hash)
        .bind(client_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let outcome = match row {
            Some(r) => CodeRedemption::Redeemed(NewAuthorizationCode {
                code_hash: code_hash.to_string(),
                client_id: r.client_id,
                user_id: r.user_id,
                redirect_uri: r.redirect_uri,
                scope: r.scope,
                resources: resources_from(&r.resources),
                code_challenge: r.code_challenge,
                created_at: r.created_at,
                expires_at: r.expires_at,
            }),
            None => {
                let used: Option<(Option<i64>, Option<i64>)> = sqlx::query_as(
                    "SELECT used_at, grant_id FROM oauth_authorization_codes WHERE code_hash = $1 AND client_id = $2",
                )
                .bind(code_hash)
                .bind(client_id)
                .fetch_optional(&mut *tx)
                .await?;
                match used {
                    Some((Some(_), grant_id)) => CodeRedemption::Replayed { grant_id },
                    _ => CodeRedemption::Invalid,
                }
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn create_grant(
        &self,
        code_hash: &str,
        code: &NewAuthorizationCode,
        issued: IssuedInGrant,
        event: AuditEvent,
    ) -> StoreResult<i64> {
        let mut tx = self.begin_write().await?;
        let at = to_micros(now());
        let (grant_id,): (i64,) = sqlx::query_as(
            "INSERT INTO oauth_grants (client_id, user_id, scope, resources, created_at) VALUES ($1, $2, $3, $4, $5) \
             RETURNING id",
        )
        .bind(&code.client_id)
        .bind(code.user_id)
        .bind(&code.scope)
        .bind(resources_json(&code.resources))
        .bind(at)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("UPDATE oauth_authorization_codes SET grant_id = $2 WHERE code_hash = $1")
            .bind(code_hash)
            .bind(grant_id)
            .execute(&mut *tx)
            .await?;
        insert_issued(&mut tx, grant_id, &issued, at).await?;
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(grant_id)
    }

    async fn oauth_refresh_token(&self, token_hash: &str) -> StoreResult<Option<OAuthRefreshState>> {
        let row: Option<RefreshStateRow> = sqlx::query_as(
            "SELECT g.id AS grant_id, g.client_id, g.user_id, g.scope, g.resources, g.revoked_at AS grant_revoked_at, \
                    t.expires_at, t.rotated_at, t.successor, t.revoked_at \
             FROM oauth_refresh_tokens t JOIN oauth_grants g ON g.id = t.grant_id WHERE t.token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| OAuthRefreshState {
            grant: GrantRecord {
                id: r.grant_id,
                client_id: r.client_id,
                user_id: r.user_id,
                scope: r.scope,
                resources: resources_from(&r.resources),
                revoked: r.grant_revoked_at.is_some(),
            },
            expires_at: r.expires_at,
            rotated_at: r.rotated_at,
            successor: r.successor,
            revoked: r.revoked_at.is_some(),
        }))
    }

    async fn rotate_oauth_refresh_token(
        &self,
        old_hash: &str,
        grant_id: i64,
        now: i64,
        successor: &str,
        issued: IssuedInGrant,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        // The conditional update is the race's referee: on PostgreSQL the
        // loser waits for the winner's commit and then matches no row.
        let won = sqlx::query(
            "UPDATE oauth_refresh_tokens SET rotated_at = $2, successor = $3 \
             WHERE token_hash = $1 AND rotated_at IS NULL AND revoked_at IS NULL",
        )
        .bind(old_hash)
        .bind(now)
        .bind(successor)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if won == 0 {
            return Ok(false);
        }
        insert_issued(&mut tx, grant_id, &issued, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn record_grant_jti(&self, grant_id: i64, jti: &str, expires_at: i64) -> StoreResult<()> {
        sqlx::query("INSERT INTO oauth_grant_jtis (jti, grant_id, expires_at) VALUES ($1, $2, $3)")
            .bind(jti)
            .bind(grant_id)
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn drop_successors(&self, before: i64) -> StoreResult<()> {
        sqlx::query("UPDATE oauth_refresh_tokens SET successor = NULL WHERE successor IS NOT NULL AND rotated_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn revoke_grant(&self, grant_id: i64, now: i64, event: AuditEvent) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        revoke_grant_in(&mut tx, grant_id, now).await?;
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn create_outbound_client(
        &self,
        client: OutboundClientRecord,
        event: AuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO outbound_clients (id, settings, client_secret, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(&client.id)
        .bind(serde_json::to_string(&client.settings).expect("settings serialize"))
        .bind(client.sealed_secret.clone())
        .bind(client.created_at)
        .execute(&mut *tx)
        .await
        .map_err(conflict("an outbound client with this id"))?;
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn outbound_client(&self, id: &str) -> StoreResult<Option<OutboundClientRecord>> {
        let row: Option<OutboundRow> = sqlx::query_as(
            "SELECT id, settings, client_secret, created_at, updated_at FROM outbound_clients WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(OutboundClientRecord::try_from).transpose()
    }

    async fn list_outbound_clients(&self) -> StoreResult<Vec<OutboundClientRecord>> {
        let rows: Vec<OutboundRow> = sqlx::query_as(
            "SELECT id, settings, client_secret, created_at, updated_at FROM outbound_clients ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(OutboundClientRecord::try_from).collect()
    }

    async fn update_outbound_client(
        &self,
        id: &str,
        settings: &crate::domain::outbound::OutboundClientSettings,
        sealed_secret: Option<&str>,
        reset_connections: Option<(&str, &str)>,
        event: AuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        if let Some((status, detail)) = reset_connections {
            sqlx::query(
                "UPDATE connections SET access_token = NULL, refresh_token = NULL, obtained_at = NULL, \
                 access_expires_at = NULL, lease_until = NULL, status = $2, status_detail = $3, updated_at = $4 \
                 WHERE outbound_client_id = $1 AND status <> 'revoked'",
            )
            .bind(id)
            .bind(status)
            .bind(detail)
            .bind(to_micros(now()))
            .execute(&mut *tx)
            .await?;
        }
        let updated = sqlx::query(
            "UPDATE outbound_clients SET settings = $2, client_secret = COALESCE($3, client_secret), updated_at = $4 \
             WHERE id = $1",
        )
        .bind(id)
        .bind(serde_json::to_string(settings).expect("settings serialize"))
        .bind(sealed_secret)
        .bind(to_micros(now()))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound);
        }
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_outbound_client(&self, id: &str, event: AuditEvent) -> StoreResult<()> {
        self.delete_one("DELETE FROM outbound_clients WHERE id = $1", id, None, event).await
    }

    async fn create_connection(&self, c: ConnectionRecord, event: AuditEvent) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO connections (id, outbound_client_id, user_id, name, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(&c.id)
        .bind(&c.outbound_client_id)
        .bind(c.user_id)
        .bind(&c.name)
        .bind(&c.status)
        .bind(c.created_at)
        .execute(&mut *tx)
        .await
        .map_err(conflict("a connection with this id"))?;
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn connection(&self, id: &str) -> StoreResult<Option<ConnectionRecord>> {
        let sql = format!("SELECT {CONNECTION_COLUMNS} FROM connections WHERE id = $1");
        let row: Option<ConnectionRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await?;
        Ok(row.map(Into::into))
    }

    async fn connections_of(&self, user_id: UserId) -> StoreResult<Vec<ConnectionRecord>> {
        let sql = format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections WHERE user_id = $1 ORDER BY created_at, id"
        );
        let rows: Vec<ConnectionRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(user_id).fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn delete_connection(&self, id: &str, event: AuditEvent) -> StoreResult<()> {
        self.delete_one("DELETE FROM connections WHERE id = $1", id, None, event).await
    }

    async fn take_connection_lease(
        &self,
        id: &str,
        now: i64,
        until: i64,
        seen: Option<i64>,
    ) -> StoreResult<bool> {
        let taken = sqlx::query(
            "UPDATE connections SET lease_until = $3 WHERE id = $1 AND (lease_until IS NULL OR lease_until < $2) \
             AND COALESCE(obtained_at, -1) = $4",
        )
        .bind(id)
        .bind(now)
        .bind(until)
        .bind(seen.unwrap_or(-1))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(taken == 1)
    }

    async fn store_connection_tokens(
        &self,
        id: &str,
        sealed_access: &str,
        sealed_refresh: Option<&str>,
        obtained_at: i64,
        access_expires_at: i64,
        client_version: i64,
        event: AuditEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let stored = sqlx::query(
            "UPDATE connections SET access_token = $2, refresh_token = COALESCE($3, refresh_token), obtained_at = $4, \
             access_expires_at = $5, status = 'active', status_detail = NULL, lease_until = NULL, updated_at = $6 \
             WHERE id = $1 AND EXISTS (SELECT 1 FROM outbound_clients o \
             WHERE o.id = connections.outbound_client_id AND o.updated_at = $7)",
        )
        .bind(id)
        .bind(sealed_access)
        .bind(sealed_refresh)
        .bind(obtained_at)
        .bind(access_expires_at)
        .bind(to_micros(now()))
        .bind(client_version)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if stored == 0 {
            return Ok(false);
        }
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn set_connection_status(
        &self,
        id: &str,
        status: &str,
        detail: Option<&str>,
        event: AuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE connections SET status = $2, status_detail = $3, lease_until = NULL, updated_at = $4 WHERE id = $1")
            .bind(id)
            .bind(status)
            .bind(detail)
            .bind(to_micros(now()))
            .execute(&mut *tx)
            .await?;
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn connections_due(
        &self,
        expiring_before: i64,
        idle_before: i64,
        limit: i64,
    ) -> StoreResult<Vec<ConnectionRecord>> {
        let sql = format!(
            "SELECT {CONNECTION_COLUMNS} FROM connections WHERE status = 'active' \
             AND (access_expires_at < $1 OR obtained_at < $2) ORDER BY access_expires_at LIMIT $3"
        );
        let rows: Vec<ConnectionRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(expiring_before)
            .bind(idle_before)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn revoke_connection(&self, id: &str, event: AuditEvent) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE connections SET status = 'revoked', status_detail = NULL, access_token = NULL, refresh_token = NULL, \
             obtained_at = NULL, access_expires_at = NULL, lease_until = NULL, updated_at = $2 WHERE id = $1",
        )
        .bind(id)
        .bind(to_micros(now()))
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn release_connection_lease(&self, id: &str) -> StoreResult<()> {
        sqlx::query("UPDATE connections SET lease_until = NULL WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn insert_connection_authorization(
        &self,
        state_hash: &str,
        connection_id: &str,
        user_id: UserId,
        sealed_verifier: Option<&str>,
        created_at: i64,
        expires_at: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO connection_authorizations (state_hash, connection_id, user_id, code_verifier, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(state_hash)
        .bind(connection_id)
        .bind(user_id)
        .bind(sealed_verifier)
        .bind(created_at)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn pending_connection_authorization(
        &self,
        state_hash: &str,
        now: i64,
    ) -> StoreResult<Option<String>> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT connection_id FROM connection_authorizations WHERE state_hash = $1 AND used_at IS NULL \
             AND expires_at > $2",
        )
        .bind(state_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(id,)| id))
    }

    async fn bind_connection_authorization(
        &self,
        state_hash: &str,
        browser_hash: &str,
        user_id: UserId,
        now: i64,
    ) -> StoreResult<BindOutcome> {
        let row: Option<(String, Option<String>)> = sqlx::query_as(
            "UPDATE connection_authorizations SET browser_hash = $2 \
             WHERE state_hash = $1 AND user_id = $3 AND browser_hash IS NULL AND used_at IS NULL \
             AND expires_at > $4 RETURNING connection_id, code_verifier",
        )
        .bind(state_hash)
        .bind(browser_hash)
        .bind(user_id)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        if let Some((connection_id, sealed_verifier)) = row {
            return Ok(BindOutcome::Bound { connection_id, sealed_verifier });
        }
        let other: Option<(i64,)> = sqlx::query_as(
            "SELECT user_id FROM connection_authorizations WHERE state_hash = $1 AND user_id <> $2 \
             AND used_at IS NULL AND expires_at > $3",
        )
        .bind(state_hash)
        .bind(user_id)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(if other.is_some() { BindOutcome::OtherUser } else { BindOutcome::Unusable })
    }

    async fn redeem_connection_authorization(
        &self,
        state_hash: &str,
        user_id: UserId,
        browser_hash: &str,
        now: i64,
    ) -> StoreResult<Option<(String, Option<String>)>> {
        let row: Option<(String, Option<String>)> = sqlx::query_as(
            "UPDATE connection_authorizations SET used_at = $2 \
             WHERE state_hash = $1 AND used_at IS NULL AND expires_at > $2 AND user_id = $3 AND browser_hash = $4 \
             RETURNING connection_id, code_verifier",
        )
        .bind(state_hash)
        .bind(now)
        .bind(user_id)
        .bind(browser_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row)
    }

    async fn put_data_product(
        &self,
        dp: &crate::domain::vault::DataProduct,
        event: AuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let at = to_micros(now());
        sqlx::query(
            "INSERT INTO data_products (dp_id, name, warehouse, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) \
             ON CONFLICT (dp_id) DO UPDATE SET name = excluded.name, warehouse = excluded.warehouse, \
             updated_at = excluded.updated_at",
        )
        .bind(&dp.dp_id)
        .bind(&dp.name)
        .bind(serde_json::to_string(&dp.warehouse).expect("warehouse serializes"))
        .bind(at)
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn data_product(&self, dp_id: &str) -> StoreResult<Option<crate::domain::vault::DataProduct>> {
        let row: Option<(String, String, String)> =
            sqlx::query_as("SELECT dp_id, name, warehouse FROM data_products WHERE dp_id = $1")
                .bind(dp_id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|(id, name, w)| data_product_from(id, name, &w)).transpose()
    }

    async fn data_products(&self) -> StoreResult<Vec<crate::domain::vault::DataProduct>> {
        let rows: Vec<(String, String, String)> =
            sqlx::query_as("SELECT dp_id, name, warehouse FROM data_products ORDER BY dp_id")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter().map(|(id, name, w)| data_product_from(id, name, &w)).collect()
    }

    async fn delete_data_product(&self, dp_id: &str, event: AuditEvent) -> StoreResult<()> {
        self.delete_one("DELETE FROM data_products WHERE dp_id = $1", dp_id, None, event).await
    }

    async fn put_credentials(&self, c: &CredentialRecord, event: AuditEvent) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO warehouse_credentials (principal, dp_id, state, username, password, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (principal, dp_id) DO UPDATE SET state = excluded.state, \
             username = excluded.username, password = excluded.password, updated_at = excluded.updated_at",
        )
        .bind(&c.principal)
        .bind(&c.dp_id)
        .bind(&c.state)
        .bind(&c.username)
        .bind(&c.sealed_password)
        .bind(c.updated_at)
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn credentials(&self, principal: &str, dp_id: &str) -> StoreResult<Option<CredentialRecord>> {
        let row: Option<CredentialRow> = sqlx::query_as(
            "SELECT principal, dp_id, state, username, password, updated_at FROM warehouse_credentials \
             WHERE principal = $1 AND dp_id = $2",
        )
        .bind(principal)
        .bind(dp_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn credentials_of(&self, principal: &str) -> StoreResult<Vec<CredentialRecord>> {
        let rows: Vec<CredentialRow> = sqlx::query_as(
            "SELECT principal, dp_id, state, username, password, updated_at FROM warehouse_credentials \
             WHERE principal = $1 ORDER BY dp_id",
        )
        .bind(principal)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn delete_credentials(&self, principal: &str, dp_id: &str, event: AuditEvent) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query("DELETE FROM warehouse_credentials WHERE principal = $1 AND dp_id = $2")
            .bind(principal)
            .bind(dp_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(StoreError::NotFound);
        }
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn revoke_jti(&self, jti: &str, expires_at: i64, event: AuditEvent) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let at = to_micros(now());
        sqlx::query(
            "INSERT INTO revoked_tokens (jti, expires_at, revoked_at) VALUES ($1, $2, $3) \
             ON CONFLICT (jti) DO NOTHING",
        )
        .bind(jti)
        .bind(expires_at)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        // Entries past their token's expiry can no longer matter.
        sqlx::query("DELETE FROM revoked_tokens WHERE expires_at < $1").bind(at).execute(&mut *tx).await?;
        insert_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn is_jti_revoked(&self, jti: &str) -> StoreResult<bool> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT expires_at FROM revoked_tokens WHERE jti = $1")
            .bind(jti)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }
}

#[cfg(test)]
mod tests {
    /// The two migration directories are one sequence in two dialects.
    #[test]
    fn migrations_are_in_lockstep() {
        let versions = |m: &sqlx::migrate::Migrator| {
            m.iter().map(|m| (m.version, m.description.to_string())).collect::<Vec<_>>()
        };
        let sqlite = versions(&super::SQLITE_MIGRATIONS);
        assert!(!sqlite.is_empty());
        assert_eq!(sqlite, versions(&super::POSTGRES_MIGRATIONS));
    }
}
