//! Data products and warehouse credentials.

use super::*;
use crate::domain::audit::AuditEvent;
use crate::domain::{now, to_micros};
use sqlx::{AnyConnection, FromRow};

#[derive(Debug, Clone)]
pub struct CredentialRecord {
    pub principal: String,
    pub dp_id: String,
    pub state: String,
    pub username: String,
    pub sealed_password: String,
    pub updated_at: i64,
}

#[derive(FromRow)]
pub(super) struct CredentialRow {
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

pub(super) fn data_product_from(
    dp_id: String,
    name: String,
    warehouse: &str,
) -> StoreResult<crate::domain::vault::DataProduct> {
    let warehouse = serde_json::from_str(warehouse)
        .map_err(|e| StoreError::Corrupt(format!("data product {dp_id} has a bad warehouse: {e}")))?;
    Ok(crate::domain::vault::DataProduct { dp_id, name, warehouse })
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

    pub async fn data_product(&self, dp_id: &str) -> StoreResult<Option<crate::domain::vault::DataProduct>> {
        let row: Option<(String, String, String)> = sqlx::query_as_with(
            "SELECT dp_id, name, warehouse FROM data_products WHERE dp_id = $1",
            params![dp_id]?,
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(id, name, w)| data_product_from(id, name, &w)).transpose()
    }

    pub async fn data_products(&self) -> StoreResult<Vec<crate::domain::vault::DataProduct>> {
        let rows: Vec<(String, String, String)> =
            sqlx::query_as("SELECT dp_id, name, warehouse FROM data_products ORDER BY dp_id")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter().map(|(id, name, w)| data_product_from(id, name, &w)).collect()
    }

    pub async fn delete_data_product(&self, dp_id: &str, event: AuditEvent) -> StoreResult<()> {
        self.delete_one("DELETE FROM data_products WHERE dp_id = $1", dp_id, None, event).await
    }

    /// Stores credentials, replacing the principal's earlier ones for the product.
    pub async fn put_credentials(&self, c: &CredentialRecord, event: AuditEvent) -> StoreResult<()> {
        self.write(event, None, async |tx, _| {
            exec(
                &mut *tx,
                "INSERT INTO warehouse_credentials (principal, dp_id, state, username, password, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (principal, dp_id) DO UPDATE SET state = excluded.state, \
                 username = excluded.username, password = excluded.password, updated_at = excluded.updated_at",
                params![&c.principal, &c.dp_id, &c.state, &c.username, &c.sealed_password, c.updated_at],
            )
            .await?;
            Ok(())
        })
        .await
    }

    pub async fn credentials(&self, principal: &str, dp_id: &str) -> StoreResult<Option<CredentialRecord>> {
        let row: Option<CredentialRow> = sqlx::query_as_with(
            "SELECT principal, dp_id, state, username, password, updated_at FROM warehouse_credentials \
             WHERE principal = $1 AND dp_id = $2",
            params![principal, dp_id]?,
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    pub async fn credentials_of(&self, principal: &str) -> StoreResult<Vec<CredentialRecord>> {
        let rows: Vec<CredentialRow> = sqlx::query_as_with(
            "SELECT principal, dp_id, state, username, password, updated_at FROM warehouse_credentials \
             WHERE principal = $1 ORDER BY dp_id",
            params![principal]?,
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    pub async fn delete_credentials(
        &self,
        principal: &str,
        dp_id: &str,
        event: AuditEvent,
    ) -> StoreResult<()> {
        self.write(event, None, async |tx, _| {
            exec_one(
                &mut *tx,
                "DELETE FROM warehouse_credentials WHERE principal = $1 AND dp_id = $2",
                params![principal, dp_id],
            )
            .await
        })
        .await
    }
}
