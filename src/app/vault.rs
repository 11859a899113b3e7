//! The vault (SPEC §1.2, §4): data products, and the warehouse credentials
//! principals store for them — sealed, never shown again, read back only by
//! service identities for the platform's SQL tools, every read audited.

use super::{App, AppError};
use crate::domain::audit::{AuditEvent, Outcome};
use crate::domain::throttle::{LockPolicy, WINDOW_SECONDS, account_lock_after, lock_after};
use crate::domain::vault::{DataProduct, Warehouse, validate_credentials, validate_data_product};
use crate::domain::{Actor, Caller, excerpt, from_micros, now, to_micros};
use crate::store::{CredentialRecord, StoreError};
use serde::Serialize;
use serde_json::json;
use std::time::Duration;

/// How the vault names whose credentials these are.
/// (`user:<id>` or `client:<client_id>`: the audit log's name for them.)
pub fn principal_key(caller: &Caller) -> String {
    caller.actor().to_string()
}

fn context(principal: &str, dp_id: &str) -> Vec<u8> {
    format!("warehouse_credential:{principal}:{dp_id}").into_bytes()
}

/// Stored credentials as their owner sees them: no password.
#[derive(Debug, Serialize)]
pub struct CredentialView {
    pub dp_id: String,
    pub state: String,
    pub username: String,
    pub verified: Option<bool>,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: time::OffsetDateTime,
}

/// What a service identity gets for a SQL tool.
#[derive(Debug, Serialize)]
pub struct WarehouseLogin {
    pub principal: String,
    pub dp_id: String,
    pub username: String,
    pub password: String,
    pub warehouse: Warehouse,
}

fn view(c: &CredentialRecord, verified: Option<bool>) -> CredentialView {
    CredentialView {
        dp_id: c.dp_id.clone(),
        state: c.state.clone(),
        username: c.username.clone(),
        verified,
        updated_at: from_micros(c.updated_at),
    }
}

/// Logs in to the warehouse once; the warehouse's error, never the password.
async fn warehouse_login(warehouse: &Warehouse, username: &str, password: &str) -> Result<(), String> {
    use sqlx::Connection;
    match warehouse {
        Warehouse::Postgresql { host, port, database } => {
            let options = sqlx::postgres::PgConnectOptions::new()
                .host(host)
                .port(*port)
                .database(database)
                .username(username)
                .password(password);
            let connect = sqlx::PgConnection::connect_with(&options);
            match tokio::time::timeout(Duration::from_secs(10), connect).await {
                Ok(Ok(conn)) => {
                    let _ = conn.close().await;
                    Ok(())
                }
                Ok(Err(sqlx::Error::Database(e))) => Err(e.message().to_string()),
                Ok(Err(e)) => {
                    Err(format!("cannot reach the warehouse ({})", e.to_string().replace(password, "***")))
                }
                Err(_) => Err("the warehouse did not answer within 10 seconds".into()),
            }
        }
    }
}

fn not_found(dp_id: &str) -> AppError {
    AppError::NotFound(format!("no data product {:?}", excerpt(dp_id, 100)))
}

impl App {
    pub async fn put_data_product(&self, actor: Actor, dp: DataProduct) -> Result<DataProduct, AppError> {
        validate_data_product(&dp).map_err(AppError::Invalid)?;
        let event = AuditEvent::success(actor, "data_product.saved", format!("data_product:{}", dp.dp_id))
            .with_detail(json!({"name": dp.name, "warehouse": dp.warehouse}));
        self.store.put_data_product(&dp, event).await?;
        Ok(dp)
    }

    /// Creates a data product; `Conflict` when its id is taken.
    pub async fn create_data_product(&self, actor: Actor, dp: DataProduct) -> Result<DataProduct, AppError> {
        if self.store.data_product(&dp.dp_id).await?.is_some() {
            return Err(AppError::Conflict(format!("data product {:?} already exists", dp.dp_id)));
        }
        self.put_data_product(actor, dp).await
    }

    /// Every data product (the account page offers them).
    pub async fn data_products(&self) -> Result<Vec<DataProduct>, AppError> {
        Ok(self.store.data_products().await?)
    }

    pub async fn data_product(&self, dp_id: &str) -> Result<DataProduct, AppError> {
        self.store.data_product(dp_id).await?.ok_or_else(|| not_found(dp_id))
    }

    pub async fn delete_data_product(&self, actor: Actor, dp_id: &str) -> Result<(), AppError> {
        let event = AuditEvent::success(actor, "data_product.deleted", format!("data_product:{dp_id}"));
        self.store.delete_data_product(dp_id, event).await.map_err(|e| match e {
            StoreError::NotFound => not_found(dp_id),
            e => e.into(),
        })
    }

    /// Stores the caller's credentials for a data product, replacing earlier
    /// ones; with `verify`, logs in to the warehouse first.
    pub async fn store_credentials(
        &self,
        caller: &Caller,
        dp_id: &str,
        state: &str,
        username: &str,
        password: &str,
        verify: bool,
    ) -> Result<CredentialView, AppError> {
        validate_credentials(state, username, password).map_err(AppError::Invalid)?;
        let dp = self.data_product(dp_id).await?;
        let principal = principal_key(caller);
        if verify {
            // Verification is a password oracle against the warehouse:
            // throttled like a login, per principal and per warehouse user
            // (whoever asks), with each attempt counted before it is made.
            let warehouse = serde_json::to_string(&dp.warehouse).unwrap_or_default();
            let keys = [
                (format!("vault-principal:{principal}"), &lock_after as LockPolicy),
                // As for a login's account: only attempts a principal was
                // allowed count here, and many more before a lock, so that
                // one principal cannot lock everyone out of verifying.
                (format!("vault-warehouse-user:{warehouse}|{username}"), &account_lock_after),
            ];
            let at = to_micros(now());
            let window_start = at - WINDOW_SECONDS * 1_000_000;
            if let Some(until) = self.store.reserve_attempt(&keys, at, window_start, 1_000_000).await? {
                return Err(AppError::TooManyRequests { retry_after: ((until - at) / 1_000_000).max(1) });
            }
            if let Err(why) = warehouse_login(&dp.warehouse, username, password).await {
                let event = AuditEvent {
                    actor: caller.actor(),
                    action: "credential.verification_failed",
                    target: Some(format!("data_product:{dp_id}")),
                    outcome: Outcome::Failure,
                    client_addr: None,
                    detail: json!({"principal": principal, "username": username}),
                };
                self.audit.record(event);
                return Err(AppError::Invalid(format!("the warehouse refused the login: {why}")));
            }
            let [(principal_key, _), (warehouse_key, _)] = keys;
            self.store.clear_attempts(&[principal_key, warehouse_key]).await?;
        }
        let record = CredentialRecord {
            principal: principal.clone(),
            dp_id: dp_id.to_string(),
            state: state.to_string(),
            username: username.to_string(),
            sealed_password: self.data_key.seal_text(&context(&principal, dp_id), password.as_bytes()),
            updated_at: to_micros(now()),
        };
        let event = AuditEvent::success(caller.actor(), "credential.stored", format!("data_product:{dp_id}"))
            .with_detail(json!({"principal": principal, "username": username, "verified": verify}));
        self.store.put_credentials(&record, event).await?;
        Ok(view(&record, verify.then_some(true)))
    }

    pub async fn credentials_of(&self, caller: &Caller) -> Result<Vec<CredentialView>, AppError> {
        Ok(self.store.credentials_of(&principal_key(caller)).await?.iter().map(|c| view(c, None)).collect())
    }

    pub async fn delete_credentials(&self, caller: &Caller, dp_id: &str) -> Result<(), AppError> {
        let principal = principal_key(caller);
        let event =
            AuditEvent::success(caller.actor(), "credential.deleted", format!("data_product:{dp_id}"))
                .with_detail(json!({"principal": principal}));
        self.store.delete_credentials(&principal, dp_id, event).await.map_err(|e| match e {
            StoreError::NotFound => AppError::NotFound(format!("no stored credentials for {dp_id:?}")),
            e => e.into(),
        })
    }

    /// The internal read for the platform's SQL tools: only a service
    /// identity may, and every attempt is audited (who, for whom, which data
    /// product).
    pub async fn read_credentials(
        &self,
        caller: &Caller,
        principal: &str,
        dp_id: &str,
    ) -> Result<WarehouseLogin, AppError> {
        let allowed = caller.is_service();
        let event = AuditEvent {
            actor: caller.actor(),
            action: if allowed { "credential.read" } else { "credential.read_refused" },
            target: Some(format!("data_product:{dp_id}")),
            outcome: if allowed { Outcome::Success } else { Outcome::Failure },
            client_addr: None,
            detail: json!({"for_principal": principal}),
        };
        self.store.append_audit(event).await?;
        if !allowed {
            return Err(AppError::Forbidden("only a service identity may read stored credentials".into()));
        }
        let dp = self.data_product(dp_id).await?;
        let record = self
            .store
            .credentials(principal, dp_id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("{principal} has no credentials for {dp_id:?}")))?;
        let password =
            self.data_key.open_string(&context(principal, dp_id), &record.sealed_password).map_err(|_| {
                AppError::Internal(anyhow::anyhow!("credentials of {principal} for {dp_id} do not decrypt"))
            })?;
        Ok(WarehouseLogin {
            principal: principal.to_string(),
            dp_id: dp_id.to_string(),
            username: record.username,
            password,
            warehouse: dp.warehouse,
        })
    }
}
