//! Dynamic client registration: how many self-registered clients wait for
//! a first approval, what one holds, and initial access tokens.

use super::delegated::insert_oauth_client;
use super::*;
use crate::domain::audit::AuditEvent;
use crate::domain::delegated::DelegatedClient;

/// Self-registered clients no user has approved yet.
const COUNT_UNAPPROVED: &str =
    "SELECT COUNT(*) FROM oauth_clients WHERE registration = 'dynamic' AND first_authorized_at IS NULL";

impl Store {
    /// Self-registered clients no user has approved yet.
    pub async fn count_unapproved_dynamic_clients(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(COUNT_UNAPPROVED).fetch_one(&self.pool).await?)
    }

    /// What `client_id` holds at `now`: unexpired codes and active grants.
    pub async fn client_usage(&self, client_id: &str, now: i64) -> StoreResult<(i64, i64)> {
        let codes: i64 = sqlx::query_scalar_with(
            "SELECT COUNT(*) FROM oauth_authorization_codes WHERE client_id = $1 AND expires_at > $2",
            params![client_id, now]?,
        )
        .fetch_one(&self.pool)
        .await?;
        let grants: i64 = sqlx::query_scalar_with(
            "SELECT COUNT(*) FROM oauth_grants WHERE client_id = $1 AND revoked_at IS NULL",
            params![client_id]?,
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((codes, grants))
    }

    /// Creates a self-registered client if fewer than `cap` wait for a first
    /// approval, counted in the same write transaction (serialized with
    /// other registrations); `None` when the cap is reached.
    pub async fn create_unapproved_client(
        &self,
        record: OAuthClientRecord,
        cap: i64,
        event: AuditEvent,
    ) -> StoreResult<Option<DelegatedClient>> {
        let backend = self.backend;
        self.write_if(event, None, async |tx, _| {
            if backend == Backend::Postgres {
                // SQLite's BEGIN IMMEDIATE already serializes writers.
                sqlx::query("SELECT pg_advisory_xact_lock(7591)").execute(&mut *tx).await?;
            }
            let waiting: i64 = sqlx::query_scalar(COUNT_UNAPPROVED).fetch_one(&mut *tx).await?;
            if waiting >= cap {
                return Ok(None);
            }
            Ok(Some(insert_oauth_client(tx, &record).await?))
        })
        .await
    }

    /// Notes the first time a user approved `client_id` (kept once set).
    pub async fn mark_client_approved(&self, client_id: &str, at: i64) -> StoreResult<()> {
        exec(
            &self.pool,
            "UPDATE oauth_clients SET first_authorized_at = $2 \
             WHERE client_id = $1 AND first_authorized_at IS NULL",
            params![client_id, at],
        )
        .await?;
        Ok(())
    }

    /// Removes self-registered clients that nobody approved and that were
    /// registered before `before`; how many.
    pub async fn purge_unapproved_dynamic_clients(&self, before: i64) -> StoreResult<u64> {
        exec(
            &self.pool,
            "DELETE FROM oauth_clients WHERE registration = 'dynamic' AND first_authorized_at IS NULL \
             AND created_at < $1",
            params![before],
        )
        .await
    }

    pub async fn create_initial_access_token(
        &self,
        token_hash: &str,
        name: &str,
        created_at: i64,
        expires_at: i64,
        uses: i64,
        event: AuditEvent,
    ) -> StoreResult<()> {
        self.write_one(
            event,
            None,
            "INSERT INTO initial_access_tokens (token_hash, name, created_at, expires_at, uses_left) \
             VALUES ($1, $2, $3, $4, $5)",
            params![token_hash, name, created_at, expires_at, uses],
        )
        .await
        .map_err(conflict("an initial access token with this hash"))
    }

    /// Uses up one use of an initial access token if it is unexpired and
    /// has uses left; false otherwise.
    pub async fn use_initial_access_token(&self, token_hash: &str, now: i64) -> StoreResult<bool> {
        let used = exec(
            &self.pool,
            "UPDATE initial_access_tokens SET uses_left = uses_left - 1 \
             WHERE token_hash = $1 AND uses_left > 0 AND expires_at > $2",
            params![token_hash, now],
        )
        .await?;
        Ok(used > 0)
    }

    /// Forgets initial access tokens that expired or were used up.
    pub async fn purge_initial_access_tokens(&self, now: i64) -> StoreResult<u64> {
        exec(
            &self.pool,
            "DELETE FROM initial_access_tokens WHERE expires_at < $1 OR uses_left <= 0",
            params![now],
        )
        .await
    }
}
