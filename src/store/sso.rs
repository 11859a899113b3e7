//! Upstream OpenID Connect providers and the accounts linked through them.

use super::users::insert_user;
use super::*;
use crate::domain::audit::AuditEvent;
use crate::domain::sso::SsoProvider;
use crate::domain::{User, UserId};

/// A provider as stored: its settings and its sealed client secret.
#[derive(Debug, Clone)]
pub struct SsoProviderRecord {
    pub provider: SsoProvider,
    pub sealed_client_secret: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

type ProviderRow = (String, Option<String>, i64, i64);

impl TryFrom<ProviderRow> for SsoProviderRecord {
    type Error = StoreError;
    fn try_from((settings, sealed_client_secret, created_at, updated_at): ProviderRow) -> StoreResult<Self> {
        let provider = serde_json::from_str(&settings)
            .map_err(|e| StoreError::Corrupt(format!("an SSO provider's settings do not parse: {e}")))?;
        Ok(SsoProviderRecord { provider, sealed_client_secret, created_at, updated_at })
    }
}

const PROVIDER_COLUMNS: &str = "settings, sealed_client_secret, created_at, updated_at";

table!(ProviderRow, "sso_providers", PROVIDER_COLUMNS);

impl Store {
    /// Creates provider `r.provider.id`, or replaces it (`replace`; a
    /// `None` secret then keeps the stored one).
    pub async fn put_sso_provider(
        &self,
        r: &SsoProviderRecord,
        replace: bool,
        event: AuditEvent,
    ) -> StoreResult<()> {
        let settings = serde_json::to_string(&r.provider).expect("provider settings serialize");
        let sql = if replace {
            "UPDATE sso_providers SET settings = $2, sealed_client_secret = COALESCE($3, sealed_client_secret), \
             updated_at = $4 WHERE id = $1"
        } else {
            "INSERT INTO sso_providers (id, settings, sealed_client_secret, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4)"
        };
        let params = params![&r.provider.id, settings, r.sealed_client_secret.clone(), r.updated_at];
        self.write(event, None, async |tx, _| {
            exec_one(&mut *tx, sql, params).await.map_err(conflict("an SSO provider with this id"))
        })
        .await
    }

    pub async fn sso_provider(&self, id: &str) -> StoreResult<Option<SsoProviderRecord>> {
        select_one::<ProviderRow, _>(&self.pool, "WHERE id = $1", params![id]).await
    }

    pub async fn sso_providers(&self) -> StoreResult<Vec<SsoProviderRecord>> {
        select::<ProviderRow, _>(&self.pool, "ORDER BY id", params![]).await
    }

    /// Deletes a provider and its links (its users stay, without a way in
    /// until linked again).
    pub async fn delete_sso_provider(&self, id: &str, event: AuditEvent) -> StoreResult<()> {
        self.write(event, None, async |tx, _| {
            exec(&mut *tx, "DELETE FROM sso_identities WHERE provider_id = $1", params![id]).await?;
            exec_one(&mut *tx, "DELETE FROM sso_providers WHERE id = $1", params![id]).await
        })
        .await
    }

    /// The user an upstream subject is linked to.
    pub async fn sso_linked_user(&self, provider_id: &str, subject: &str) -> StoreResult<Option<UserId>> {
        Ok(sqlx::query_scalar_with(
            "SELECT user_id FROM sso_identities WHERE provider_id = $1 AND subject = $2",
            params![provider_id, subject]?,
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Marks a pending sign-in's state used; false when it was already.
    pub async fn spend_sso_state(&self, state_hash: &str, expires_at: i64) -> StoreResult<bool> {
        let added = exec(
            &self.pool,
            "INSERT INTO sso_spent_states (state_hash, expires_at) VALUES ($1, $2) ON CONFLICT (state_hash) DO NOTHING",
            params![state_hash, expires_at],
        )
        .await?;
        Ok(added == 1)
    }

    /// How many upstream accounts are linked to `user_id`.
    pub async fn sso_links_of(&self, user_id: UserId) -> StoreResult<i64> {
        Ok(sqlx::query_scalar_with(
            "SELECT COUNT(*) FROM sso_identities WHERE user_id = $1",
            params![user_id]?,
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Links an upstream subject to `user` (an existing SSO user no subject
    /// is linked to yet, else `NotFound`; or a new one when `user` is
    /// `Err(new)`), atomically with its audit record; `Conflict` when
    /// another sign-in linked the subject first.
    pub async fn link_sso_identity(
        &self,
        provider_id: &str,
        subject: &str,
        user: Result<UserId, NewUser>,
        event: AuditEvent,
    ) -> StoreResult<User> {
        self.write(event, None, async |tx, event| {
            let user = match user {
                Ok(id) => {
                    // Only a user nobody signs in as through a provider yet (two
                    // first sign-ins racing meet the unique index on user_id).
                    let sql = format!(
                        "SELECT {} FROM users WHERE id = $1 AND auth_source = 'sso' \
                         AND NOT EXISTS (SELECT 1 FROM sso_identities WHERE user_id = $1)",
                        super::users::USER_COLUMNS
                    );
                    let row: Option<super::users::UserRow> =
                        sqlx::query_as_with(sqlx::AssertSqlSafe(sql), params![id]?).fetch_optional(&mut *tx).await?;
                    row.ok_or(StoreError::NotFound)?.try_into()?
                }
                Err(new) => insert_user(tx, &new).await?,
            };
            event.target = Some(format!("user:{}", user.id));
            exec(
                &mut *tx,
                "INSERT INTO sso_identities (provider_id, subject, user_id, created_at) VALUES ($1, $2, $3, $4)",
                params![provider_id, subject, user.id, to_micros(now())],
            )
            .await
            .map_err(conflict("a link of this account"))?;
            Ok(user)
        })
        .await
    }
}
