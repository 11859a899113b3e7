//! Machine-to-machine clients, announced to every node's cache on change.

use super::*;
use crate::domain::audit::AuditEvent;
use crate::domain::client::M2mClient;
use crate::domain::{Role, from_micros, now, to_micros};
use sqlx::{AnyConnection, FromRow};

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
    pub token_exchange: Option<bool>,
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

pub(super) const M2M_COLUMNS: &str = "client_id, name, role, access_token_duration, disabled_at, created_at, \
     secret_rotated_at, secret_hash, previous_secret_hash, previous_secret_expires_at, is_service, tokens_not_before, token_exchange";

table!(M2mClientRow, "m2m_clients", M2M_COLUMNS);

#[derive(FromRow)]
pub(super) struct M2mClientRow {
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
    token_exchange: i64,
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
                token_exchange: r.token_exchange != 0,
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

/// The client a write `… RETURNING {M2M_COLUMNS}` returned; `NotFound` if none.
async fn returned_client(conn: &mut AnyConnection, sql: String, params: Params) -> StoreResult<M2mClient> {
    let record = find::<M2mClientRow, M2mClientRecord>(conn, sqlx::AssertSqlSafe(sql), params).await?;
    Ok(record.ok_or(StoreError::NotFound)?.client)
}

impl Store {
    pub async fn create_m2m_client(&self, client: NewM2mClient, event: AuditEvent) -> StoreResult<M2mClient> {
        self.write(event, None, async |tx, _| {
            let at = to_micros(now());
            let sql = format!(
                "INSERT INTO m2m_clients (client_id, name, role, access_token_duration, secret_hash, created_at, \
                 updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING {M2M_COLUMNS}"
            );
            let params = params![
                &client.client_id,
                &client.name,
                client.role.as_str(),
                client.access_token_duration,
                &client.secret_hash,
                at,
            ];
            returned_client(tx, sql, params).await.map_err(conflict("a client with this id"))
        })
        .await
    }

    pub async fn m2m_client(&self, client_id: &str) -> StoreResult<Option<M2mClientRecord>> {
        select_one::<M2mClientRow, _>(&self.pool, "WHERE client_id = $1", params![client_id]).await
    }

    pub async fn list_m2m_clients(&self) -> StoreResult<Vec<M2mClient>> {
        let order = "ORDER BY created_at, client_id";
        let records = select::<M2mClientRow, M2mClientRecord>(&self.pool, order, params![]).await?;
        Ok(records.into_iter().map(|r| r.client).collect())
    }

    pub async fn update_m2m_client(
        &self,
        client_id: &str,
        update: M2mClientUpdate,
        event: AuditEvent,
    ) -> StoreResult<M2mClient> {
        self.write(event, Some(&format!("client:{client_id}")), async |tx, _| {
            let sql = format!(
                "UPDATE m2m_clients SET name = COALESCE($2, name), role = COALESCE($3, role), \
                 access_token_duration = COALESCE($4, access_token_duration), \
                 disabled_at = CASE WHEN $5 = 1 THEN COALESCE(disabled_at, $6) WHEN $5 = 0 THEN NULL \
                 ELSE disabled_at END, tokens_not_before = CASE WHEN $5 = 1 THEN $8 ELSE tokens_not_before END, \
                 is_service = COALESCE($7, is_service), token_exchange = COALESCE($9, token_exchange), updated_at = $6 WHERE client_id = $1 \
                 RETURNING {M2M_COLUMNS}"
            );
            let params = params![
                client_id,
                update.name,
                update.role.map(Role::as_str),
                update.access_token_duration,
                update.disabled.map(i64::from),
                to_micros(now()),
                update.is_service.map(i64::from),
                now().unix_timestamp(),
                update.token_exchange.map(i64::from),
            ];
            returned_client(tx, sql, params).await
        })
        .await
    }

    pub async fn delete_m2m_client(
        &self,
        client_id: &str,
        principal: &str,
        event: AuditEvent,
    ) -> StoreResult<()> {
        self.write(event, Some(&format!("client:{client_id}")), async |tx, _| {
            exec_one(&mut *tx, "DELETE FROM m2m_clients WHERE client_id = $1", params![client_id]).await?;
            delete_principal_credentials_in(tx, principal).await
        })
        .await
    }

    /// Replaces the secret; the current one keeps verifying until
    /// `previous_expires_at`.
    pub async fn rotate_m2m_client_secret(
        &self,
        client_id: &str,
        secret_hash: &str,
        previous_expires_at: i64,
        event: AuditEvent,
    ) -> StoreResult<M2mClient> {
        self.write(event, Some(&format!("client:{client_id}")), async |tx, _| {
            let at = to_micros(now());
            let sql = format!(
                "UPDATE m2m_clients SET previous_secret_hash = secret_hash, previous_secret_expires_at = $3, \
                 secret_hash = $2, secret_rotated_at = $4, updated_at = $4 WHERE client_id = $1 \
                 RETURNING {M2M_COLUMNS}"
            );
            returned_client(tx, sql, params![client_id, secret_hash, previous_expires_at, at]).await
        })
        .await
    }
}
