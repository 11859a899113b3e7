//! Runtime settings shared by every node.

use super::*;
use crate::domain::audit::AuditEvent;
use crate::domain::{now, to_micros};

impl Store {
    pub async fn setting(&self, key: &str) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar_with("SELECT value FROM settings WHERE key = $1", params![key]?)
            .fetch_optional(&self.pool)
            .await?)
    }

    pub async fn settings(&self) -> StoreResult<Vec<(String, String)>> {
        Ok(sqlx::query_as("SELECT key, value FROM settings ORDER BY key").fetch_all(&self.pool).await?)
    }

    pub async fn put_setting(&self, key: &str, value: &str, event: AuditEvent) -> StoreResult<()> {
        self.write(event, None, async |tx, event| {
            exec(
                &mut *tx,
                "INSERT INTO settings (key, value, updated_at, updated_by) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at, \
                 updated_by = excluded.updated_by",
                params![key, value, to_micros(now()), event.actor.to_string()],
            )
            .await?;
            Ok(())
        })
        .await
    }

    pub async fn delete_setting(&self, key: &str, event: AuditEvent) -> StoreResult<()> {
        let deleted = self.write_statement(event, None, "DELETE FROM settings WHERE key = $1", params![key]);
        deleted.await.map(drop)
    }
}
