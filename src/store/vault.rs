//! Data products and warehouse credentials.

use super::*;
use crate::domain::audit::AuditEvent;
use crate::domain::vault::DataProduct;
use crate::domain::{now, to_micros};
use sqlx::{AnyConnection, FromRow};

#[derive(Debug, Clone, FromRow)]
pub struct CredentialRecord {
    pub principal: String,
    pub dp_id: String,
    pub state: String,
    pub username: String,
    #[sqlx(rename = "password")]
    pub sealed_password: String,
    pub updated_at: i64,
}

const CREDENTIAL_COLUMNS: &str = "principal, dp_id, state, username, password, updated_at";

table!(CredentialRecord, "warehouse_credentials", CREDENTIAL_COLUMNS);

/// `(dp_id, name, warehouse)` as stored.
type DataProductRow = (String, String, String);

impl TryFrom<DataProductRow> for DataProduct {
    type Error = StoreError;
    fn try_from((dp_id, name, warehouse): DataProductRow) -> StoreResult<Self> {
        let warehouse = serde_json::from_str(&warehouse)
            .map_err(|e| StoreError::Corrupt(format!("data product {dp_id} has a bad warehouse: {e}")))?;
        Ok(DataProduct { dp_id, name, warehouse })
    }
}

/// A deleted principal's warehouse credentials go with it.
pub(super) async fn delete_principal_credentials_in(
    conn: &mut AnyConnection,
    principal: &str,
) -> StoreResult<()> {
    exec(&mut *conn, "DELETE FROM warehouse_credentials WHERE principal = $1", params![principal]).await?;
    Ok(())
}

impl Store {
    /// Creates or replaces a data product.
    pub async fn put_data_product(
        &self,
        dp: &crate::domain::vault::DataProduct,
        event: AuditEvent,
    ) -> StoreResult<()> {
        self.write(event, None, async |tx, _| {
            let at = to_micros(now());
            exec(
                &mut *tx,
                "INSERT INTO data_products (dp_id, name, warehouse, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) \
                 ON CONFLICT (dp_id) DO UPDATE SET name = excluded.name, warehouse = excluded.warehouse, \
                 updated_at = excluded.updated_at",
                params![
                    &dp.dp_id,
                    &dp.name,
                    serde_json::to_string(&dp.warehouse).expect("warehouse serializes"),
                    at,
                ],
            )
            .await?;
            Ok(())
        })
        .await
    }

    pub async fn data_product(&self, dp_id: &str) -> StoreResult<Option<DataProduct>> {
        let sql = "SELECT dp_id, name, warehouse FROM data_products WHERE dp_id = $1";
        find::<DataProductRow, _>(&self.pool, sql, params![dp_id]).await
    }

    pub async fn data_products(&self) -> StoreResult<Vec<DataProduct>> {
        let sql = "SELECT dp_id, name, warehouse FROM data_products ORDER BY dp_id";
        find_all::<DataProductRow, _>(&self.pool, sql, params![]).await
    }

    pub async fn delete_data_product(&self, dp_id: &str, event: AuditEvent) -> StoreResult<()> {
        self.write_one(event, None, "DELETE FROM data_products WHERE dp_id = $1", params![dp_id]).await
    }

    /// Stores credentials, replacing the principal's earlier ones for the product.
    pub async fn put_credentials(&self, c: &CredentialRecord, event: AuditEvent) -> StoreResult<()> {
        self.write_one(
            event,
            None,
            "INSERT INTO warehouse_credentials (principal, dp_id, state, username, password, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (principal, dp_id) DO UPDATE SET state = excluded.state, \
             username = excluded.username, password = excluded.password, updated_at = excluded.updated_at",
            params![&c.principal, &c.dp_id, &c.state, &c.username, &c.sealed_password, c.updated_at],
        )
        .await
    }

    pub async fn credentials(&self, principal: &str, dp_id: &str) -> StoreResult<Option<CredentialRecord>> {
        select_one::<CredentialRecord, _>(
            &self.pool,
            "WHERE principal = $1 AND dp_id = $2",
            params![principal, dp_id],
        )
        .await
    }

    pub async fn credentials_of(&self, principal: &str) -> StoreResult<Vec<CredentialRecord>> {
        select::<CredentialRecord, _>(&self.pool, "WHERE principal = $1 ORDER BY dp_id", params![principal])
            .await
    }

    pub async fn delete_credentials(
        &self,
        principal: &str,
        dp_id: &str,
        event: AuditEvent,
    ) -> StoreResult<()> {
        self.write_one(
            event,
            None,
            "DELETE FROM warehouse_credentials WHERE principal = $1 AND dp_id = $2",
            params![principal, dp_id],
        )
        .await
    }
}
