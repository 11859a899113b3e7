//! Refresh tokens and API access tokens (`/integration/v1`).

use super::*;
use crate::domain::audit::AuditEvent;
use crate::domain::{User, UserId};
use sqlx::{AnyConnection, FromRow};

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

/// A refresh token as stored (never the token itself).
#[derive(Debug, Clone, FromRow)]
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
#[derive(Debug, Clone, FromRow)]
pub struct ApiAccessTokenRecord {
    pub id: i64,
    pub refresh_token_id: i64,
    pub user_id: UserId,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

#[derive(FromRow)]
pub(super) struct ApiAccessTokenGrantRow {
    token_id: i64,
    expires_at: i64,
    revoked_at: Option<i64>,
    refresh_revoked_at: Option<i64>,
    #[sqlx(flatten)]
    user: UserRow,
}

impl TryFrom<ApiAccessTokenGrantRow> for ApiAccessTokenGrant {
    type Error = StoreError;
    fn try_from(r: ApiAccessTokenGrantRow) -> StoreResult<Self> {
        Ok(ApiAccessTokenGrant {
            token_id: r.token_id,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            refresh_revoked_at: r.refresh_revoked_at,
            user: r.user.try_into()?,
        })
    }
}

const REFRESH_TOKEN_COLUMNS: &str = "id, user_id, name, created_at, expires_at, revoked_at, last_used_at";

table!(RefreshTokenRecord, "refresh_tokens", REFRESH_TOKEN_COLUMNS);

/// Stores a new refresh token; its id.
pub(super) async fn insert_refresh_token(
    conn: &mut AnyConnection,
    token: &NewRefreshToken,
) -> StoreResult<i64> {
    let (id,): (i64,) = sqlx::query_as_with(
        "INSERT INTO refresh_tokens (user_id, name, token_hash, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
        params![token.user_id, &token.name, &token.token_hash, token.created_at, token.expires_at]?,
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(conflict("a refresh token with this hash"))?;
    Ok(id)
}

/// Revokes the active access tokens made from a refresh token; how many.
pub(super) async fn revoke_access_tokens_of(
    conn: &mut AnyConnection,
    refresh_token_id: i64,
    at: i64,
) -> StoreResult<u64> {
    Ok(exec(
        &mut *conn,
        "UPDATE api_access_tokens SET revoked_at = $2 WHERE refresh_token_id = $1 AND revoked_at IS NULL",
        params![refresh_token_id, at],
    )
    .await?)
}

impl Store {
    pub async fn create_refresh_token(&self, token: NewRefreshToken, event: AuditEvent) -> StoreResult<i64> {
        self.write(event, Some(REVOCATIONS), async |tx, _| {
            if self.backend == Backend::Postgres {
                // Concurrent creations for one user count one after the other.
                exec(
                    &mut *tx,
                    "SELECT id FROM users WHERE id = $1 FOR UPDATE",
                    params![token.user_id],
                )
                .await?;
            }
            let (active,): (i64,) = sqlx::query_as_with(
                "SELECT COUNT(*) FROM refresh_tokens WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2",
                params![token.user_id, token.created_at]?,
            )
            .fetch_one(&mut *tx)
            .await?;
            if active >= token.max_active {
                return Err(StoreError::LimitReached(token.max_active));
            }
            insert_refresh_token(tx, &token).await
        })
        .await
    }

    /// Stores a new API access token and revokes every other active one made
    /// from the same refresh token, atomically; `NotFound` unless the refresh
    /// token is still active at `token.created_at`.
    pub async fn create_api_access_token(
        &self,
        token: NewApiAccessToken,
        event: AuditEvent,
    ) -> StoreResult<i64> {
        self.write(event, Some(REVOCATIONS), async |tx, _| {
            // Marks the refresh token used, only if it is still active; on
            // PostgreSQL this also locks it, so that concurrent creations from
            // one refresh token run one after the other and the last one wins.
            exec_one(&mut *tx,
                "UPDATE refresh_tokens SET last_used_at = $2 WHERE id = $1 AND user_id = $3 \
                 AND revoked_at IS NULL AND expires_at > $2",
                params![token.refresh_token_id, token.created_at, token.user_id]).await?;
            revoke_access_tokens_of(tx, token.refresh_token_id, token.created_at).await?;
            let (id,): (i64,) = sqlx::query_as_with(
                "INSERT INTO api_access_tokens (refresh_token_id, user_id, token_hash, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
                params![
                    token.refresh_token_id,
                    token.user_id,
                    &token.token_hash,
                    token.created_at,
                    token.expires_at,
                ]?,
            )
            .fetch_one(&mut *tx)
            .await
            .map_err(conflict("an API access token with this hash"))?;
            Ok(id)
        })
        .await
    }

    pub async fn refresh_token_by_hash(&self, token_hash: &str) -> StoreResult<Option<RefreshTokenRecord>> {
        select_one::<RefreshTokenRecord, _>(&self.pool, "WHERE token_hash = $1", params![token_hash]).await
    }

    /// A user's refresh tokens, newest first, whatever their status.
    pub async fn refresh_tokens_of(&self, user_id: UserId) -> StoreResult<Vec<RefreshTokenRecord>> {
        select::<RefreshTokenRecord, _>(
            &self.pool,
            "WHERE user_id = $1 ORDER BY created_at DESC, id DESC",
            params![user_id],
        )
        .await
    }

    /// Revokes refresh token `id` of `user_id` and its access tokens;
    /// `NotFound` unless it was this user's and still active.
    pub async fn revoke_refresh_token(
        &self,
        id: i64,
        user_id: UserId,
        at: i64,
        event: AuditEvent,
    ) -> StoreResult<()> {
        self.write(event, Some(REVOCATIONS), async |tx, _| {
            exec_one(&mut *tx,
                    "UPDATE refresh_tokens SET revoked_at = $3 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
                    params![id, user_id, at]).await?;
            revoke_access_tokens_of(tx, id, at).await?;
            Ok(())
        })
        .await
    }

    pub async fn api_access_token_by_hash(
        &self,
        token_hash: &str,
    ) -> StoreResult<Option<ApiAccessTokenRecord>> {
        find::<ApiAccessTokenRecord, _>(
            &self.pool,
            "SELECT id, refresh_token_id, user_id, created_at, expires_at, revoked_at, last_used_at \
             FROM api_access_tokens WHERE token_hash = $1",
            params![token_hash],
        )
        .await
    }

    /// Revokes refresh token `old_id` (if still active at `new.created_at`)
    /// and the access tokens made from it, and stores `new`, atomically.
    /// `NotFound` when `old_id` was no longer active: two concurrent
    /// regenerations cannot both succeed.
    pub async fn regenerate_refresh_token(
        &self,
        old_id: i64,
        new: NewRefreshToken,
        event: AuditEvent,
    ) -> StoreResult<i64> {
        self.write(event, Some(REVOCATIONS), async |tx, _| {
            exec_one(
                &mut *tx,
                "UPDATE refresh_tokens SET revoked_at = $2 WHERE id = $1 AND user_id = $3 \
                 AND revoked_at IS NULL AND expires_at > $2",
                params![old_id, new.created_at, new.user_id],
            )
            .await?;
            revoke_access_tokens_of(tx, old_id, new.created_at).await?;
            insert_refresh_token(tx, &new).await
        })
        .await
    }

    /// Revokes the active access tokens made from a refresh token; how many.
    pub async fn revoke_api_access_tokens(
        &self,
        refresh_token_id: i64,
        at: i64,
        event: AuditEvent,
    ) -> StoreResult<u64> {
        self.write(event, Some(REVOCATIONS), async |tx, _| {
            revoke_access_tokens_of(tx, refresh_token_id, at).await
        })
        .await
    }

    /// Records last use, batched: `(token id, unix µs)` pairs.
    pub async fn touch_api_access_tokens(&self, uses: &[(i64, i64)]) -> StoreResult<()> {
        if uses.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for (id, at) in uses {
            exec(
                &mut *tx,
                "UPDATE api_access_tokens SET last_used_at = $2 WHERE id = $1 \
                 AND (last_used_at IS NULL OR last_used_at < $2)",
                params![id, at],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn api_access_token_grant(&self, token_hash: &str) -> StoreResult<Option<ApiAccessTokenGrant>> {
        find::<ApiAccessTokenGrantRow, _>(
            &self.pool,
            "SELECT t.id AS token_id, t.expires_at, t.revoked_at, r.revoked_at AS refresh_revoked_at, \
                    u.id, u.username, u.role, u.auth_source, u.disabled_at, u.created_at, u.tokens_not_before \
             FROM api_access_tokens t \
             JOIN refresh_tokens r ON r.id = t.refresh_token_id \
             JOIN users u ON u.id = t.user_id \
             WHERE t.token_hash = $1",
            params![token_hash],
        )
        .await
    }
}
