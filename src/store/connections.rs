//! Outbound OAuth clients, connections, their leases and pending authorizations.

use super::*;
use crate::domain::audit::AuditEvent;
use crate::domain::{UserId, now, to_micros};
use sqlx::FromRow;

/// An outbound client as stored: settings, and the sealed secret.
#[derive(Debug, Clone)]
pub struct OutboundClientRecord {
    pub id: String,
    pub settings: crate::domain::outbound::OutboundClientSettings,
    pub sealed_secret: Option<String>,
    pub created_at: i64,
    /// Changes when the endpoints or the secret change: tokens fetched
    /// under one version are stored (and leases taken) only while it is
    /// still the current one.
    pub endpoints_version: i64,
}

#[derive(Debug, Clone, FromRow)]
pub struct ConnectionRecord {
    pub id: String,
    pub outbound_client_id: String,
    pub user_id: UserId,
    pub name: String,
    pub status: String,
    pub status_detail: Option<String>,
    #[sqlx(rename = "access_token")]
    pub sealed_access_token: Option<String>,
    #[sqlx(rename = "refresh_token")]
    pub sealed_refresh_token: Option<String>,
    pub obtained_at: Option<i64>,
    pub access_expires_at: Option<i64>,
    /// When the refresh token held dies (ms); `None`: never, or unknown.
    pub refresh_expires_at: Option<i64>,
    pub created_at: i64,
}

/// A connection's authorization waiting for its owner's browser.
#[derive(Debug, Clone, FromRow)]
pub struct PendingAuthorization {
    pub connection_id: String,
    pub user_id: UserId,
    /// The agent (M2M client id) the link was made for, if not the owner.
    pub requested_by: Option<String>,
    /// 1 once followed in a browser (on its way to the provider), else 0.
    pub bound: i64,
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

const OUTBOUND_COLUMNS: &str = "id, settings, client_secret, created_at, endpoints_version";

table!(OutboundRow, "outbound_clients", OUTBOUND_COLUMNS);

#[derive(FromRow)]
pub(super) struct OutboundRow {
    id: String,
    settings: String,
    client_secret: Option<String>,
    created_at: i64,
    endpoints_version: i64,
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
            endpoints_version: r.endpoints_version,
        })
    }
}

pub(super) const CONNECTION_COLUMNS: &str = "id, outbound_client_id, user_id, name, status, status_detail, access_token, \
     refresh_token, obtained_at, access_expires_at, refresh_expires_at, created_at";

table!(ConnectionRecord, "connections", CONNECTION_COLUMNS);

impl Store {
    pub async fn create_outbound_client(
        &self,
        client: OutboundClientRecord,
        event: AuditEvent,
    ) -> StoreResult<()> {
        self.write_one(
            event,
            None,
            "INSERT INTO outbound_clients (id, settings, client_secret, created_at, updated_at, endpoints_version) \
             VALUES ($1, $2, $3, $4, $4, $5)",
            params![
                &client.id,
                serde_json::to_string(&client.settings).expect("settings serialize"),
                client.sealed_secret.clone(),
                client.created_at,
                client.endpoints_version,
            ],
        )
        .await
        .map_err(conflict("an outbound client with this id"))
    }

    pub async fn outbound_client(&self, id: &str) -> StoreResult<Option<OutboundClientRecord>> {
        select_one::<OutboundRow, _>(&self.pool, "WHERE id = $1", params![id]).await
    }

    pub async fn list_outbound_clients(&self) -> StoreResult<Vec<OutboundClientRecord>> {
        select::<OutboundRow, _>(&self.pool, "ORDER BY created_at, id", params![]).await
    }

    /// Replaces settings, and the sealed secret when `Some`.
    pub async fn update_outbound_client(
        &self,
        id: &str,
        settings: &crate::domain::outbound::OutboundClientSettings,
        sealed_secret: Option<&str>,
        reset_connections: Option<(&str, &str)>,
        event: AuditEvent,
    ) -> StoreResult<()> {
        self.write(event, None, async |tx, _| {
            if let Some((status, detail)) = reset_connections {
                // Pending authorizations were started at the old endpoints.
                exec(
                    &mut *tx,
                    "DELETE FROM connection_authorizations WHERE connection_id IN \
                     (SELECT id FROM connections WHERE outbound_client_id = $1)",
                    params![id],
                )
                .await?;
                exec(
                    &mut *tx,
                    "UPDATE connections SET access_token = NULL, refresh_token = NULL, obtained_at = NULL, \
                     access_expires_at = NULL, refresh_expires_at = NULL, lease_until = NULL, status = $2, status_detail = $3, updated_at = $4 \
                     WHERE outbound_client_id = $1 AND status <> 'revoked'",
                    params![id, status, detail, to_micros(now())],
                )
                .await?;
            }
            exec_one(&mut *tx,
                "UPDATE outbound_clients SET settings = $2, client_secret = COALESCE($3, client_secret), updated_at = $4, \
                 endpoints_version = CASE WHEN $5 = 1 THEN $4 ELSE endpoints_version END WHERE id = $1",
                params![
                    id,
                    serde_json::to_string(settings).expect("settings serialize"),
                    sealed_secret,
                    to_micros(now()),
                    i64::from(reset_connections.is_some() || sealed_secret.is_some()),
                ]).await?;
            Ok(())
        })
        .await
    }

    pub async fn delete_outbound_client(&self, id: &str, event: AuditEvent) -> StoreResult<()> {
        self.write_one(event, None, "DELETE FROM outbound_clients WHERE id = $1", params![id]).await
    }

    pub async fn create_connection(&self, c: ConnectionRecord, event: AuditEvent) -> StoreResult<()> {
        self.write_one(
            event,
            None,
            "INSERT INTO connections (id, outbound_client_id, user_id, name, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
            params![&c.id, &c.outbound_client_id, c.user_id, &c.name, &c.status, c.created_at],
        )
        .await
        .map_err(conflict("a connection with this id"))
    }

    pub async fn connection(&self, id: &str) -> StoreResult<Option<ConnectionRecord>> {
        select_one::<ConnectionRecord, _>(&self.pool, "WHERE id = $1", params![id]).await
    }

    pub async fn connections_of(&self, user_id: UserId) -> StoreResult<Vec<ConnectionRecord>> {
        select::<ConnectionRecord, _>(
            &self.pool,
            "WHERE user_id = $1 ORDER BY created_at, id",
            params![user_id],
        )
        .await
    }

    pub async fn delete_connection(&self, id: &str, event: AuditEvent) -> StoreResult<()> {
        self.write_one(event, None, "DELETE FROM connections WHERE id = $1", params![id]).await
    }

    /// Takes the connection's lease until `until` (ms) if nobody holds one at
    /// `now` (ms) and its tokens are still those obtained at `seen` (the
    /// caller's read): whoever gets it talks to the provider. The second
    /// condition stops a caller that read before another's refresh from
    /// refreshing again after it.
    pub async fn take_connection_lease(
        &self,
        id: &str,
        now: i64,
        until: i64,
        seen: Option<i64>,
        client_version: i64,
    ) -> StoreResult<bool> {
        let taken = exec(
            &self.pool,
            "UPDATE connections SET lease_until = $3 WHERE id = $1 AND (lease_until IS NULL OR lease_until < $2) \
             AND COALESCE(obtained_at, -1) = $4 AND EXISTS (SELECT 1 FROM outbound_clients o \
             WHERE o.id = connections.outbound_client_id AND o.endpoints_version = $5)",
            params![id, now, until, seen.unwrap_or(-1), client_version],
        )
        .await?;
        Ok(taken == 1)
    }

    /// Stores new tokens (on a refresh, a `None` refresh token keeps the old
    /// one and its expiry; a new one comes with `refresh_expires_at`; a new
    /// authorization replaces both), marks the connection active and gives
    /// the lease back.
    pub async fn store_connection_tokens(
        &self,
        id: &str,
        sealed_access: &str,
        sealed_refresh: Option<&str>,
        obtained_at: i64,
        access_expires_at: i64,
        refresh_expires_at: Option<i64>,
        client_version: i64,
        authorized: bool,
        event: AuditEvent,
    ) -> StoreResult<bool> {
        self.write_if(event, None, async |tx, _| {
            // A refresh that returns after its owner revoked the connection
            // stores nothing; only a new authorization revives it.
            let stored = exec(
                &mut *tx,
                "UPDATE connections SET access_token = $2, refresh_token = CASE WHEN $8 = 1 THEN $3 ELSE COALESCE($3, refresh_token) END, \
                 obtained_at = $4, access_expires_at = $5, \
                 refresh_expires_at = CASE WHEN $8 = 1 OR $3 IS NOT NULL THEN $9 ELSE refresh_expires_at END, \
                 status = 'active', status_detail = NULL, lease_until = NULL, updated_at = $6 WHERE id = $1 AND ($8 = 1 OR status <> 'revoked') AND EXISTS (SELECT 1 FROM outbound_clients o \
                 WHERE o.id = connections.outbound_client_id AND o.endpoints_version = $7)",
                params![
                    id,
                    sealed_access,
                    sealed_refresh,
                    obtained_at,
                    access_expires_at,
                    to_micros(now()),
                    client_version,
                    i64::from(authorized),
                    refresh_expires_at,
                ],
            )
            .await?;
            Ok((stored > 0).then_some(()))
        })
        .await
        .map(|stored| stored.is_some())
    }

    /// Sets the status (and the provider's error) and gives the lease back;
    /// a revoked connection stays revoked (its owner's word is the last).
    pub async fn set_connection_status(
        &self,
        id: &str,
        status: &str,
        detail: Option<&str>,
        event: AuditEvent,
    ) -> StoreResult<()> {
        self.write_statement(
            event,
            None,
            "UPDATE connections SET status = $2, status_detail = $3, lease_until = NULL, updated_at = $4 \
             WHERE id = $1 AND status <> 'revoked'",
            params![id, status, detail, to_micros(now())],
        )
        .await
        .map(drop)
    }

    /// Active connections whose access token expires before `expiring_before`
    /// or that were last refreshed before `idle_before` (all ms).
    pub async fn connections_due(
        &self,
        expiring_before: i64,
        idle_before: i64,
        limit: i64,
    ) -> StoreResult<Vec<ConnectionRecord>> {
        select::<ConnectionRecord, _>(
            &self.pool,
            "WHERE status = 'active' \
             AND (access_expires_at < $1 OR obtained_at < $2) ORDER BY access_expires_at LIMIT $3",
            params![expiring_before, idle_before, limit],
        )
        .await
    }

    /// Moves an active connection whose refresh token dies at `refresh_expires_at`
    /// to `needs_reauth`, unless it changed since it was read (revoked, or
    /// authorized again): whether it did.
    pub async fn mark_refresh_expiring(
        &self,
        id: &str,
        refresh_expires_at: i64,
        detail: &str,
        event: AuditEvent,
    ) -> StoreResult<bool> {
        self.write_if(event, None, async |tx, _| {
            let changed = exec(
                &mut *tx,
                "UPDATE connections SET status = 'needs_reauth', status_detail = $3, lease_until = NULL, \
                 updated_at = $4 WHERE id = $1 AND status = 'active' AND refresh_expires_at = $2",
                params![id, refresh_expires_at, detail, to_micros(now())],
            )
            .await?;
            Ok((changed > 0).then_some(()))
        })
        .await
        .map(|changed| changed.is_some())
    }

    /// The connections through outbound client `id`.
    pub async fn connections_through(&self, outbound_client_id: &str) -> StoreResult<Vec<ConnectionRecord>> {
        select::<ConnectionRecord, _>(
            &self.pool,
            "WHERE outbound_client_id = $1 ORDER BY created_at, id",
            params![outbound_client_id],
        )
        .await
    }

    /// Active connections whose refresh token dies before `before` (ms).
    pub async fn connections_losing_refresh(
        &self,
        before: i64,
        limit: i64,
    ) -> StoreResult<Vec<ConnectionRecord>> {
        select::<ConnectionRecord, _>(
            &self.pool,
            "WHERE status = 'active' \
             AND refresh_expires_at < $1 ORDER BY refresh_expires_at LIMIT $2",
            params![before, limit],
        )
        .await
    }

    /// Forgets the connection's tokens and marks it revoked.
    pub async fn revoke_connection(&self, id: &str, event: AuditEvent) -> StoreResult<()> {
        self.write_statement(
            event,
            None,
            "UPDATE connections SET status = 'revoked', status_detail = NULL, access_token = NULL, refresh_token = NULL, \
             obtained_at = NULL, access_expires_at = NULL, refresh_expires_at = NULL, lease_until = NULL, \
             updated_at = $2 WHERE id = $1",
            params![id, to_micros(now())],
        )
        .await
        .map(drop)
    }

    pub async fn release_connection_lease(&self, id: &str) -> StoreResult<()> {
        exec(&self.pool, "UPDATE connections SET lease_until = NULL WHERE id = $1", params![id]).await?;
        Ok(())
    }

    pub async fn insert_connection_authorization(
        &self,
        state_hash: &str,
        connection_id: &str,
        user_id: UserId,
        sealed_verifier: Option<&str>,
        requested_by: Option<&str>,
        created_at: i64,
        expires_at: i64,
    ) -> StoreResult<()> {
        exec(
            &self.pool,
            "INSERT INTO connection_authorizations (state_hash, connection_id, user_id, code_verifier, \
             requested_by, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            params![
                state_hash,
                connection_id,
                user_id,
                sealed_verifier,
                requested_by,
                created_at,
                expires_at
            ],
        )
        .await?;
        Ok(())
    }

    /// A pending (unused, unexpired) authorization.
    pub async fn pending_connection_authorization(
        &self,
        state_hash: &str,
        now: i64,
    ) -> StoreResult<Option<PendingAuthorization>> {
        find::<PendingAuthorization, _>(
            &self.pool,
            "SELECT connection_id, user_id, requested_by, \
             CAST(CASE WHEN browser_hash IS NULL THEN 0 ELSE 1 END AS BIGINT) AS bound FROM connection_authorizations \
             WHERE state_hash = $1 AND used_at IS NULL AND expires_at > $2",
            params![state_hash, now],
        )
        .await
    }

    /// Uses up a pending, unbound authorization of `user_id` that they
    /// declined: whether there was one.
    pub async fn decline_connection_authorization(
        &self,
        state_hash: &str,
        user_id: UserId,
        now: i64,
    ) -> StoreResult<bool> {
        let declined = exec(
            &self.pool,
            "UPDATE connection_authorizations SET used_at = $3 WHERE state_hash = $1 AND user_id = $2 \
             AND used_at IS NULL AND browser_hash IS NULL AND expires_at > $3",
            params![state_hash, user_id, now],
        )
        .await?;
        Ok(declined > 0)
    }

    /// Binds a pending authorization to a browser (once), if `user_id` is
    /// the one it was started for.
    pub async fn bind_connection_authorization(
        &self,
        state_hash: &str,
        browser_hash: &str,
        user_id: UserId,
        now: i64,
    ) -> StoreResult<BindOutcome> {
        let row = find::<(String, Option<String>), _>(
            &self.pool,
            "UPDATE connection_authorizations SET browser_hash = $2 \
                 WHERE state_hash = $1 AND user_id = $3 AND browser_hash IS NULL AND used_at IS NULL \
                 AND expires_at > $4 RETURNING connection_id, code_verifier",
            params![state_hash, browser_hash, user_id, now],
        )
        .await?;
        if let Some((connection_id, sealed_verifier)) = row {
            return Ok(BindOutcome::Bound { connection_id, sealed_verifier });
        }
        let other = find::<(i64,), (i64,)>(
            &self.pool,
            "SELECT user_id FROM connection_authorizations WHERE state_hash = $1 AND user_id <> $2 \
                 AND used_at IS NULL AND expires_at > $3",
            params![state_hash, user_id, now],
        )
        .await?;
        Ok(if other.is_some() { BindOutcome::OtherUser } else { BindOutcome::Unusable })
    }

    /// Uses up a pending authorization if unused, unexpired, and arriving
    /// for `user_id` in the browser it was bound to (anyone else leaves it
    /// as it is): `(connection_id, sealed_verifier)`.
    pub async fn redeem_connection_authorization(
        &self,
        state_hash: &str,
        user_id: UserId,
        browser_hash: &str,
        now: i64,
    ) -> StoreResult<Option<(String, Option<String>)>> {
        find::<(String, Option<String>), _>(&self.pool, "UPDATE connection_authorizations SET used_at = $2 \
             WHERE state_hash = $1 AND used_at IS NULL AND expires_at > $2 AND user_id = $3 AND browser_hash = $4 \
             RETURNING connection_id, code_verifier",
            params![state_hash, now, user_id, browser_hash],
        )
        .await
    }
}
