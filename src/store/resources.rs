//! Protected resources an admin declared.

use super::*;
use crate::domain::audit::AuditEvent;
use crate::domain::from_micros;
use crate::domain::resource::{ProtectedResource, ScopeSpec};
use sqlx::FromRow;

const RESOURCE_COLUMNS: &str =
    "name, resource, display_name, scopes, required_scopes, upstream_url, created_at";

table!(ResourceRow, "protected_resources", RESOURCE_COLUMNS);

#[derive(FromRow)]
struct ResourceRow {
    name: String,
    resource: String,
    display_name: String,
    scopes: String,
    required_scopes: String,
    upstream_url: Option<String>,
    created_at: i64,
}

impl TryFrom<ResourceRow> for ProtectedResource {
    type Error = StoreError;
    fn try_from(r: ResourceRow) -> StoreResult<Self> {
        let corrupt = || StoreError::Corrupt(format!("resource {} has bad scopes", r.name));
        let scopes: Vec<ScopeSpec> = serde_json::from_str(&r.scopes).map_err(|_| corrupt())?;
        let required_scopes: Vec<String> = serde_json::from_str(&r.required_scopes).map_err(|_| corrupt())?;
        Ok(ProtectedResource {
            name: r.name,
            resource: r.resource,
            display_name: r.display_name,
            scopes,
            required_scopes,
            upstream_url: r.upstream_url,
            created_at: from_micros(r.created_at),
        })
    }
}

impl Store {
    /// Creates resource `r.name`, or replaces it (`replace`); `Conflict` when
    /// another resource has its indicator.
    pub async fn put_resource(
        &self,
        r: &ProtectedResource,
        replace: bool,
        event: AuditEvent,
    ) -> StoreResult<()> {
        let scopes = serde_json::to_string(&r.scopes).expect("scopes serialize");
        let required = serde_json::to_string(&r.required_scopes).expect("scopes serialize");
        let at = to_micros(now());
        let announce = format!("{RESOURCE_PREFIX}{}", r.name);
        self.write(event, Some(&announce), async |tx, _| {
            let sql = if replace {
                "UPDATE protected_resources SET resource = $2, display_name = $3, scopes = $4, \
                 required_scopes = $5, upstream_url = $6, updated_at = $7 WHERE name = $1"
            } else {
                "INSERT INTO protected_resources (name, resource, display_name, scopes, required_scopes, \
                 upstream_url, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)"
            };
            exec_one(
                &mut *tx,
                sql,
                params![
                    &r.name,
                    &r.resource,
                    &r.display_name,
                    &scopes,
                    &required,
                    r.upstream_url.clone(),
                    at
                ],
            )
            .await
            .map_err(conflict("a resource with this name or indicator"))
        })
        .await
    }

    pub async fn resource(&self, name: &str) -> StoreResult<Option<ProtectedResource>> {
        select_one::<ResourceRow, _>(&self.pool, "WHERE name = $1", params![name]).await
    }

    pub async fn resources(&self) -> StoreResult<Vec<ProtectedResource>> {
        select::<ResourceRow, _>(&self.pool, "ORDER BY name", params![]).await
    }

    /// The declared resources among `indicators` (normalized).
    pub async fn resources_by_indicator(&self, indicators: &[String]) -> StoreResult<Vec<ProtectedResource>> {
        let mut found = Vec::new();
        for indicator in indicators {
            let by_indicator = "WHERE resource = $1";
            found.extend(select_one::<ResourceRow, _>(&self.pool, by_indicator, params![indicator]).await?);
        }
        Ok(found)
    }

    pub async fn delete_resource(&self, name: &str, event: AuditEvent) -> StoreResult<()> {
        let announce = format!("{RESOURCE_PREFIX}{name}");
        let sql = "DELETE FROM protected_resources WHERE name = $1";
        self.write_one(event, Some(&announce), sql, params![name]).await
    }
}
