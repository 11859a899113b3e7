//! Delegated OAuth: clients, consents, authorization codes, grants and refresh-token families.

use super::*;
use crate::domain::audit::AuditEvent;
use crate::domain::delegated::{ClientType, DelegatedClient, OfflineAccess};
use crate::domain::registration::{RegisteredMetadata, Registration};
use crate::domain::{UserId, from_micros, now, to_micros};
use sqlx::{AnyConnection, FromRow};

/// A delegated client as stored: what every layer sees, and what only the
/// store and authentication need. Also what a new client is created from.
#[derive(Debug, Clone)]
pub struct OAuthClientRecord {
    pub client: DelegatedClient,
    pub secret_hash: Option<String>,
    pub metadata: Option<RegisteredMetadata>,
    pub registration_token_hash: Option<String>,
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

pub(super) const OAUTH_CLIENT_COLUMNS: &str = "client_id, name, redirect_uris, client_type, secret_hash, \
     refresh_token_lifetime, access_token_lifetime, pkce_enabled, created_at, registration, metadata, \
     registration_token_hash, offline_access";

#[derive(FromRow)]
pub(super) struct OAuthClientRow {
    client_id: String,
    name: String,
    redirect_uris: String,
    client_type: String,
    secret_hash: Option<String>,
    refresh_token_lifetime: i64,
    access_token_lifetime: i64,
    pkce_enabled: i64,
    created_at: i64,
    registration: String,
    metadata: String,
    registration_token_hash: Option<String>,
    offline_access: String,
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
        let registration =
            Registration::parse(&r.registration).ok_or_else(|| corrupt("an unknown registration"))?;
        let offline_access =
            OfflineAccess::parse(&r.offline_access).ok_or_else(|| corrupt("an unknown offline_access"))?;
        let metadata = match registration {
            Registration::Admin | Registration::MetadataDocument => None,
            Registration::Dynamic => {
                Some(serde_json::from_str(&r.metadata).map_err(|_| corrupt("bad metadata"))?)
            }
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
                registration,
                offline_access,
            },
            secret_hash: r.secret_hash,
            metadata,
            registration_token_hash: r.registration_token_hash,
        })
    }
}

#[derive(FromRow)]
pub(super) struct CodeRow {
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
pub(super) struct RefreshStateRow {
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

pub(super) fn resources_json(resources: &[String]) -> String {
    serde_json::to_string(resources).expect("strings serialize")
}

fn metadata_json(metadata: &RegisteredMetadata) -> String {
    serde_json::to_string(metadata).expect("metadata serializes")
}

pub(super) fn resources_from(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

/// Stores the refresh token and the JWT id issued within a grant.
pub(super) async fn insert_issued(
    conn: &mut AnyConnection,
    grant_id: i64,
    issued: &IssuedInGrant,
    now: i64,
) -> StoreResult<()> {
    if let Some((hash, expires_at)) = &issued.refresh {
        exec(
            &mut *conn,
            "INSERT INTO oauth_refresh_tokens (token_hash, grant_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
            params![hash, grant_id, now, expires_at],
        )
        .await
        .map_err(conflict("a refresh token with this hash"))?;
    }
    exec(
        &mut *conn,
        "INSERT INTO oauth_grant_jtis (jti, grant_id, expires_at) VALUES ($1, $2, $3)",
        params![&issued.jti, grant_id, issued.jti_expires_at],
    )
    .await?;
    Ok(())
}

/// Revokes grant `grant_id`, its refresh tokens and its JWTs, in `conn`'s
/// transaction.
pub(super) async fn revoke_grant_in(conn: &mut AnyConnection, grant_id: i64, now: i64) -> StoreResult<()> {
    for sql in [
        "UPDATE oauth_grants SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1",
        "UPDATE oauth_refresh_tokens SET revoked_at = COALESCE(revoked_at, $2), successor = NULL WHERE grant_id = $1",
        "INSERT INTO revoked_tokens (jti, expires_at, revoked_at) \
         SELECT jti, expires_at, $2 FROM oauth_grant_jtis WHERE grant_id = $1 ON CONFLICT (jti) DO NOTHING",
    ] {
        exec(&mut *conn, sql, params![grant_id, now]).await?;
    }
    Ok(())
}

/// Revokes, like [`revoke_grant_in`], every grant whose id `select_ids` finds.
pub(super) async fn revoke_grants_in(
    conn: &mut AnyConnection,
    select_ids: &'static str,
    params: Params,
    now: i64,
) -> StoreResult<()> {
    let ids: Vec<i64> = sqlx::query_scalar_with(select_ids, params?).fetch_all(&mut *conn).await?;
    for grant_id in ids {
        revoke_grant_in(conn, grant_id, now).await?;
    }
    Ok(())
}

/// Inserts a delegated client in `conn`'s transaction.
pub(super) async fn insert_oauth_client(
    conn: &mut AnyConnection,
    record: &OAuthClientRecord,
) -> StoreResult<DelegatedClient> {
    let client = &record.client;
    let sql = format!(
        "INSERT INTO oauth_clients (client_id, name, redirect_uris, client_type, secret_hash, \
         refresh_token_lifetime, access_token_lifetime, pkce_enabled, created_at, updated_at, \
         registration, metadata, registration_token_hash, offline_access) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10, $11, $12, $13) RETURNING {OAUTH_CLIENT_COLUMNS}"
    );
    let row: OAuthClientRow = sqlx::query_as_with(
        sqlx::AssertSqlSafe(sql),
        params![
            &client.client_id,
            &client.name,
            resources_json(&client.redirect_uris),
            client.grant_type.as_str(),
            record.secret_hash.clone(),
            client.refresh_token_lifetime,
            client.access_token_lifetime,
            i64::from(client.pkce_enabled),
            to_micros(client.created_at),
            client.registration.as_str(),
            record.metadata.as_ref().map_or_else(|| "{}".to_string(), metadata_json),
            record.registration_token_hash.clone(),
            client.offline_access.as_str(),
        ]?,
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(conflict("an OAuth client with this id"))?;
    Ok(OAuthClientRecord::try_from(row)?.client)
}

impl Store {
    pub async fn create_oauth_client(
        &self,
        record: OAuthClientRecord,
        event: AuditEvent,
    ) -> StoreResult<DelegatedClient> {
        self.write(event, None, async |tx, _| insert_oauth_client(tx, &record).await).await
    }

    /// Inserts or refreshes the record of a client whose id is its
    /// metadata document's URL (as last fetched).
    pub async fn upsert_metadata_document_client(&self, client: &DelegatedClient) -> StoreResult<()> {
        exec(
            &self.pool,
            "INSERT INTO oauth_clients (client_id, name, redirect_uris, client_type, secret_hash, \
             refresh_token_lifetime, access_token_lifetime, pkce_enabled, created_at, updated_at, registration, \
             offline_access, first_authorized_at) \
             VALUES ($1, $2, $3, 'public', NULL, $4, $5, 1, $6, $6, 'metadata_document', $7, $6) \
             ON CONFLICT (client_id) DO UPDATE SET name = excluded.name, redirect_uris = excluded.redirect_uris, \
             offline_access = excluded.offline_access, updated_at = excluded.updated_at \
             WHERE oauth_clients.registration = 'metadata_document'",
            params![
                &client.client_id,
                &client.name,
                resources_json(&client.redirect_uris),
                client.refresh_token_lifetime,
                client.access_token_lifetime,
                to_micros(now()),
                client.offline_access.as_str(),
            ],
        )
        .await?;
        Ok(())
    }

    pub async fn oauth_client(&self, client_id: &str) -> StoreResult<Option<OAuthClientRecord>> {
        let sql = format!("SELECT {OAUTH_CLIENT_COLUMNS} FROM oauth_clients WHERE client_id = $1");
        let row: Option<OAuthClientRow> = sqlx::query_as_with(sqlx::AssertSqlSafe(sql), params![client_id]?)
            .fetch_optional(&self.pool)
            .await?;
        row.map(OAuthClientRecord::try_from).transpose()
    }

    pub async fn list_oauth_clients(&self) -> StoreResult<Vec<DelegatedClient>> {
        let sql = format!("SELECT {OAUTH_CLIENT_COLUMNS} FROM oauth_clients ORDER BY created_at, client_id");
        let rows: Vec<OAuthClientRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(&self.pool).await?;
        rows.into_iter().map(|r| Ok(OAuthClientRecord::try_from(r)?.client)).collect()
    }

    /// Replaces name, redirect URIs, lifetimes and PKCE (the type and secret stay).
    /// Keeps the record's type, secret, registration and creation time; its
    /// metadata only when it has some.
    pub async fn replace_oauth_client(
        &self,
        record: OAuthClientRecord,
        event: AuditEvent,
    ) -> StoreResult<DelegatedClient> {
        let client = &record.client;
        self.write(event, None, async |tx, _| {
            let sql = format!(
                "UPDATE oauth_clients SET name = $2, redirect_uris = $3, refresh_token_lifetime = $4, \
                 access_token_lifetime = $5, pkce_enabled = $6, updated_at = $7, metadata = COALESCE($8, metadata), offline_access = $9 \
                 WHERE client_id = $1 RETURNING {OAUTH_CLIENT_COLUMNS}"
            );
            let row: OAuthClientRow = sqlx::query_as_with(
                sqlx::AssertSqlSafe(sql),
                params![
                    &client.client_id,
                    &client.name,
                    resources_json(&client.redirect_uris),
                    client.refresh_token_lifetime,
                    client.access_token_lifetime,
                    i64::from(client.pkce_enabled),
                    to_micros(now()),
                    record.metadata.as_ref().map(metadata_json),
                    client.offline_access.as_str(),
                ]?,
            )
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
            Ok(OAuthClientRecord::try_from(row)?.client)
        })
        .await
    }

    /// Deletes the client and, with it, its grants, codes and consents.
    pub async fn delete_oauth_client(&self, client_id: &str, event: AuditEvent) -> StoreResult<()> {
        self.write(event, Some(REVOCATIONS), async |tx, _| {
            let at = to_micros(now());
            revoke_grants_in(tx, "SELECT id FROM oauth_grants WHERE client_id = $1", params![client_id], at)
                .await?;
            exec_one(&mut *tx, "DELETE FROM oauth_clients WHERE client_id = $1", params![client_id]).await?;
            Ok(())
        })
        .await
    }

    pub async fn set_oauth_client_secret(
        &self,
        client_id: &str,
        secret_hash: &str,
        event: AuditEvent,
    ) -> StoreResult<()> {
        self.write(event, None, async |tx, _| {
            exec_one(
                &mut *tx,
                "UPDATE oauth_clients SET secret_hash = $2, updated_at = $3 WHERE client_id = $1 \
                 AND client_type = 'confidential'",
                params![client_id, secret_hash, to_micros(now())],
            )
            .await?;
            Ok(())
        })
        .await
    }

    /// Whether the user consented to exactly this scope for exactly these
    /// resources (sorted).
    pub async fn has_consent(
        &self,
        user_id: UserId,
        client_id: &str,
        scope: &str,
        resources: &[String],
    ) -> StoreResult<bool> {
        let row: Option<(i64,)> = sqlx::query_as_with(
            "SELECT created_at FROM oauth_consents WHERE user_id = $1 AND client_id = $2 AND scope = $3 \
             AND resources = $4",
            params![user_id, client_id, scope, resources_json(resources)]?,
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    pub async fn add_consent(
        &self,
        user_id: UserId,
        client_id: &str,
        scope: &str,
        resources: &[String],
        event: AuditEvent,
    ) -> StoreResult<()> {
        self.write(event, None, async |tx, _| {
            // One remembered resource set per scope: the latest approved.
            exec(
                &mut *tx,
                "INSERT INTO oauth_consents (user_id, client_id, scope, created_at, resources) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (user_id, client_id, scope) DO UPDATE SET resources = excluded.resources, \
                 created_at = excluded.created_at",
                params![user_id, client_id, scope, to_micros(now()), resources_json(resources)],
            )
            .await?;
            Ok(())
        })
        .await
    }

    /// `(client_id, scope, created_at)` of a user's remembered consents.
    pub async fn consents(&self, user_id: UserId) -> StoreResult<Vec<(String, String, i64)>> {
        Ok(sqlx::query_as_with(
            "SELECT client_id, scope, created_at FROM oauth_consents WHERE user_id = $1 ORDER BY client_id, scope",
            params![user_id]?,
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Forgets a user's consents to a client and revokes the grants (and
    /// their tokens) the client holds for the user; how many consents.
    pub async fn revoke_consents(
        &self,
        user_id: UserId,
        client_id: &str,
        now: i64,
        event: AuditEvent,
    ) -> StoreResult<u64> {
        self.write(event, Some(REVOCATIONS), async |tx, _| {
            let forgotten = exec(
                &mut *tx,
                "DELETE FROM oauth_consents WHERE user_id = $1 AND client_id = $2",
                params![user_id, client_id],
            )
            .await?;
            exec(
                &mut *tx,
                "DELETE FROM oauth_authorization_codes WHERE user_id = $1 AND client_id = $2 AND used_at IS NULL",
                params![user_id, client_id],
            )
            .await?;
            revoke_grants_in(
                tx,
                "SELECT id FROM oauth_grants WHERE user_id = $1 AND client_id = $2 AND revoked_at IS NULL",
                params![user_id, client_id],
                now,
            )
            .await?;
            Ok(forgotten)
        })
        .await
    }

    pub async fn insert_authorization_code(&self, code: NewAuthorizationCode) -> StoreResult<()> {
        exec(
            &self.pool,
            "INSERT INTO oauth_authorization_codes (code_hash, client_id, user_id, redirect_uri, scope, resources, \
             code_challenge, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            params![
                &code.code_hash,
                &code.client_id,
                code.user_id,
                &code.redirect_uri,
                &code.scope,
                resources_json(&code.resources),
                code.code_challenge.clone(),
                code.created_at,
                code.expires_at,
            ],
        )
        .await?;
        Ok(())
    }

    /// Uses up `code_hash` of `client_id` if it is unused and unexpired.
    pub async fn redeem_authorization_code(
        &self,
        code_hash: &str,
        client_id: &str,
        now: i64,
    ) -> StoreResult<CodeRedemption> {
        let mut tx = self.begin_write().await?;
        let row: Option<CodeRow> = sqlx::query_as_with(
            "UPDATE oauth_authorization_codes SET used_at = $3 \
             WHERE code_hash = $1 AND client_id = $2 AND used_at IS NULL AND expires_at > $3 \
             RETURNING client_id, user_id, redirect_uri, scope, resources, code_challenge, created_at, expires_at",
            params![code_hash, client_id, now]?,
        )
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
                let used: Option<(Option<i64>, Option<i64>)> = sqlx::query_as_with(
                    "SELECT used_at, grant_id FROM oauth_authorization_codes WHERE code_hash = $1 AND client_id = $2",
                    params![code_hash, client_id]?,
                )
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

    /// Opens the grant of a redeemed code with its first tokens.
    pub async fn create_grant(
        &self,
        code_hash: &str,
        code: &NewAuthorizationCode,
        issued: IssuedInGrant,
        event: AuditEvent,
    ) -> StoreResult<i64> {
        self.write(event, None, async |tx, _| {
            let at = to_micros(now());
            let (grant_id,): (i64,) = sqlx::query_as_with(
                "INSERT INTO oauth_grants (client_id, user_id, scope, resources, created_at) VALUES ($1, $2, $3, $4, $5) \
                 RETURNING id",
                params![&code.client_id, code.user_id, &code.scope, resources_json(&code.resources), at]?,
            )
            .fetch_one(&mut *tx)
            .await?;
            exec(
                &mut *tx,
                "UPDATE oauth_authorization_codes SET grant_id = $2 WHERE code_hash = $1",
                params![code_hash, grant_id],
            )
            .await?;
            insert_issued(tx, grant_id, &issued, at).await?;
            Ok(grant_id)
        })
        .await
    }

    pub async fn oauth_refresh_token(&self, token_hash: &str) -> StoreResult<Option<OAuthRefreshState>> {
        let row: Option<RefreshStateRow> = sqlx::query_as_with(
            "SELECT g.id AS grant_id, g.client_id, g.user_id, g.scope, g.resources, g.revoked_at AS grant_revoked_at, \
                    t.expires_at, t.rotated_at, t.successor, t.revoked_at \
             FROM oauth_refresh_tokens t JOIN oauth_grants g ON g.id = t.grant_id WHERE t.token_hash = $1",
            params![token_hash]?,
        )
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

    /// Marks `old_hash` rotated, keeping `successor` (sealed) for replays in
    /// the grace window, and stores what `issued` lists — if and only if
    /// `old_hash` was not rotated yet (false: another request won).
    pub async fn rotate_oauth_refresh_token(
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
        let won = exec(
            &mut *tx,
            "UPDATE oauth_refresh_tokens SET rotated_at = $2, successor = $3 \
             WHERE token_hash = $1 AND rotated_at IS NULL AND revoked_at IS NULL",
            params![old_hash, now, successor],
        )
        .await?;
        if won == 0 {
            return Ok(false);
        }
        insert_issued(&mut tx, grant_id, &issued, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Records a JWT issued within a grant without rotating anything.
    pub async fn record_grant_jti(&self, grant_id: i64, jti: &str, expires_at: i64) -> StoreResult<()> {
        exec(
            &self.pool,
            "INSERT INTO oauth_grant_jtis (jti, grant_id, expires_at) VALUES ($1, $2, $3)",
            params![jti, grant_id, expires_at],
        )
        .await?;
        Ok(())
    }

    /// Forgets sealed successors rotated before `before`.
    pub async fn drop_successors(&self, before: i64) -> StoreResult<()> {
        exec(
            &self.pool,
            "UPDATE oauth_refresh_tokens SET successor = NULL WHERE successor IS NOT NULL AND rotated_at < $1",
            params![before],
        )
        .await?;
        Ok(())
    }

    /// Revokes a grant: its refresh tokens and every JWT issued in it.
    pub async fn revoke_grant(&self, grant_id: i64, now: i64, event: AuditEvent) -> StoreResult<()> {
        self.write(event, Some(REVOCATIONS), async |tx, _| {
            revoke_grant_in(tx, grant_id, now).await?;
            Ok(())
        })
        .await
    }
}
