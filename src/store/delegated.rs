//! Delegated OAuth clients (their consents, codes, grants and refresh-token
//! families are in `grants.rs`).

use super::*;
use crate::domain::audit::AuditEvent;
use crate::domain::delegated::{ClientType, DelegatedClient, OfflineAccess};
use crate::domain::registration::{RegisteredMetadata, Registration};
use crate::domain::{from_micros, now, to_micros};
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

pub(super) const OAUTH_CLIENT_COLUMNS: &str = "client_id, name, redirect_uris, client_type, secret_hash, \
     refresh_token_lifetime, access_token_lifetime, pkce_enabled, created_at, registration, metadata, \
     registration_token_hash, offline_access";

table!(OAuthClientRow, "oauth_clients", OAUTH_CLIENT_COLUMNS);

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

pub(super) fn resources_json(resources: &[String]) -> String {
    serde_json::to_string(resources).expect("strings serialize")
}

fn metadata_json(metadata: &RegisteredMetadata) -> String {
    serde_json::to_string(metadata).expect("metadata serializes")
}

/// The values of a client's columns, in the order of [`INSERT_CLIENT`]
/// (`$14` is the time of the write).
fn client_params(record: &OAuthClientRecord) -> Params {
    let client = &record.client;
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
        record.metadata.as_ref().map(metadata_json),
        record.registration_token_hash.clone(),
        client.offline_access.as_str(),
        to_micros(now()),
    ]
}

const INSERT_CLIENT: &str = "INSERT INTO oauth_clients (client_id, name, redirect_uris, client_type, secret_hash, \
     refresh_token_lifetime, access_token_lifetime, pkce_enabled, created_at, registration, metadata, \
     registration_token_hash, offline_access, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, COALESCE($11, '{}'), $12, $13, $14)";

/// Replaces what an admin or the client itself may change (never the type,
/// secret, registration or creation time; the metadata only with new).
const UPDATE_CLIENT: &str = "UPDATE oauth_clients SET name = $2, redirect_uris = $3, refresh_token_lifetime = $6, \
     access_token_lifetime = $7, pkce_enabled = $8, metadata = COALESCE($11, metadata), offline_access = $13, \
     updated_at = $14 WHERE client_id = $1";

/// Runs [`INSERT_CLIENT`] or [`UPDATE_CLIENT`] for `record` in `conn`'s
/// transaction: the client as stored, `NotFound` when no row was touched.
pub(super) async fn write_oauth_client(
    conn: &mut AnyConnection,
    statement: &'static str,
    record: &OAuthClientRecord,
) -> StoreResult<DelegatedClient> {
    let sql = format!("{statement} RETURNING {OAUTH_CLIENT_COLUMNS}");
    let row: Option<OAuthClientRow> = sqlx::query_as_with(sqlx::AssertSqlSafe(sql), client_params(record)?)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(OAuthClientRecord::try_from(row.ok_or(StoreError::NotFound)?)?.client)
}

/// Inserts a delegated client in `conn`'s transaction.
pub(super) async fn insert_oauth_client(
    conn: &mut AnyConnection,
    record: &OAuthClientRecord,
) -> StoreResult<DelegatedClient> {
    write_oauth_client(conn, INSERT_CLIENT, record).await.map_err(conflict("an OAuth client with this id"))
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
    /// metadata document's URL (as last fetched: a document may turn a
    /// public client confidential, `private_key_jwt`, or back). PKCE is
    /// always required of them; they hold no secret here.
    pub async fn upsert_metadata_document_client(&self, client: &DelegatedClient) -> StoreResult<()> {
        exec(
            &self.pool,
            "INSERT INTO oauth_clients (client_id, name, redirect_uris, client_type, secret_hash, \
             refresh_token_lifetime, access_token_lifetime, pkce_enabled, created_at, updated_at, registration, \
             offline_access, first_authorized_at) \
             VALUES ($1, $2, $3, $8, NULL, $4, $5, 1, $6, $6, 'metadata_document', $7, $6) \
             ON CONFLICT (client_id) DO UPDATE SET name = excluded.name, redirect_uris = excluded.redirect_uris, \
             client_type = excluded.client_type, offline_access = excluded.offline_access, \
             updated_at = excluded.updated_at \
             WHERE oauth_clients.registration = 'metadata_document'",
            params![
                &client.client_id,
                &client.name,
                resources_json(&client.redirect_uris),
                client.refresh_token_lifetime,
                client.access_token_lifetime,
                to_micros(now()),
                client.offline_access.as_str(),
                client.grant_type.as_str(),
            ],
        )
        .await?;
        Ok(())
    }

    pub async fn oauth_client(&self, client_id: &str) -> StoreResult<Option<OAuthClientRecord>> {
        select_one::<OAuthClientRow, _>(&self.pool, "WHERE client_id = $1", params![client_id]).await
    }

    pub async fn list_oauth_clients(&self) -> StoreResult<Vec<DelegatedClient>> {
        let order = "ORDER BY created_at, client_id";
        let records = select::<OAuthClientRow, OAuthClientRecord>(&self.pool, order, params![]).await?;
        Ok(records.into_iter().map(|r| r.client).collect())
    }

    /// Replaces name, redirect URIs, lifetimes, PKCE and offline access
    /// (see [`UPDATE_CLIENT`]).
    pub async fn replace_oauth_client(
        &self,
        record: OAuthClientRecord,
        event: AuditEvent,
    ) -> StoreResult<DelegatedClient> {
        self.write(event, None, async |tx, _| write_oauth_client(tx, UPDATE_CLIENT, &record).await).await
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
        self.write_one(
            event,
            None,
            "UPDATE oauth_clients SET secret_hash = $2, updated_at = $3 WHERE client_id = $1 \
             AND client_type = 'confidential'",
            params![client_id, secret_hash, to_micros(now())],
        )
        .await
    }

    /// Spends a client assertion (its keyed hash), kept until `expires_at`
    /// (µs), unless the assertions of `host`'s clients still unexpired at
    /// `now` number `cap` already.
    pub async fn spend_client_assertion(
        &self,
        assertion_hash: &str,
        host: &str,
        now: i64,
        expires_at: i64,
        cap: i64,
    ) -> StoreResult<AssertionSpending> {
        let spent = exec(
            &self.pool,
            "INSERT INTO spent_client_assertions (assertion_hash, host, expires_at) SELECT $1, $2, $3 \
             WHERE (SELECT COUNT(*) FROM spent_client_assertions WHERE host = $2 AND expires_at > $4) < $5 \
             ON CONFLICT (assertion_hash) DO NOTHING",
            params![assertion_hash, host, expires_at, now, cap],
        )
        .await?;
        if spent == 1 {
            return Ok(AssertionSpending::Spent);
        }
        let known = find::<(i64,), (i64,)>(
            &self.pool,
            "SELECT expires_at FROM spent_client_assertions WHERE assertion_hash = $1",
            params![assertion_hash],
        )
        .await?;
        Ok(if known.is_some() { AssertionSpending::UsedBefore } else { AssertionSpending::TooMany })
    }
}

/// What spending a client assertion did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssertionSpending {
    Spent,
    UsedBefore,
    /// The host's clients have this many unexpired assertions already.
    TooMany,
}
