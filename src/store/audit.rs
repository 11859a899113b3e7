//! The audit log: single events, batches, queries.

use super::*;
use crate::domain::audit::{AuditEvent, AuditRecord};
use crate::domain::{from_micros, now, to_micros};
use sqlx::FromRow;

#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub action: Option<String>,
    pub actor: Option<String>,
    /// Only events with an id below this one (paging backwards in time).
    pub before_id: Option<i64>,
    pub limit: i64,
}

#[derive(FromRow)]
pub(super) struct AuditRow {
    id: i64,
    at: i64,
    actor: String,
    action: String,
    target: Option<String>,
    outcome: String,
    client_addr: Option<String>,
    detail: String,
}

impl From<AuditRow> for AuditRecord {
    fn from(r: AuditRow) -> Self {
        AuditRecord {
            id: r.id,
            at: from_micros(r.at),
            actor: r.actor,
            action: r.action,
            target: r.target,
            outcome: r.outcome,
            client_addr: r.client_addr,
            detail: serde_json::from_str(&r.detail).unwrap_or(serde_json::Value::Null),
        }
    }
}

impl Store {
    pub async fn append_audit(&self, event: AuditEvent) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await?;
        insert_audit(&mut conn, &event).await
    }

    pub async fn audit_events(&self, query: &AuditQuery) -> StoreResult<Vec<AuditRecord>> {
        find_all::<AuditRow, _>(
            &self.pool,
            "SELECT id, at, actor, action, target, outcome, client_addr, detail FROM audit_events \
             WHERE ($1 IS NULL OR action = $1) AND ($2 IS NULL OR actor = $2) AND ($3 IS NULL OR id < $3) \
             ORDER BY id DESC LIMIT $4",
            params![query.action.clone(), query.actor.clone(), query.before_id, query.limit],
        )
        .await
    }

    /// Writes many audit events in one transaction (for high-rate events).
    pub async fn append_audit_batch(&self, events: Vec<AuditEvent>) -> StoreResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        // Multi-row INSERTs: one statement per 500 events instead of one each.
        // SQLite gets anonymous `?` placeholders: it resolves a named one
        // (`$N`) by a linear search, quadratic over thousands of parameters.
        let mut tx = self.begin_write().await?;
        let at = to_micros(now());
        for chunk in events.chunks(500) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| match self.backend {
                    Backend::Sqlite => "(?, ?, ?, ?, ?, ?, ?)".to_string(),
                    Backend::Postgres => {
                        let n: Vec<String> = (1..=7).map(|k| format!("${}", i * 7 + k)).collect();
                        format!("({})", n.join(", "))
                    }
                })
                .collect();
            let sql = format!(
                "INSERT INTO audit_events (at, actor, action, target, outcome, client_addr, detail) VALUES {}",
                rows.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for event in chunk {
                query = query
                    .bind(at)
                    .bind(event.actor.to_string())
                    .bind(event.action)
                    .bind(event.target.clone())
                    .bind(event.outcome.as_str())
                    .bind(event.client_addr.clone())
                    .bind(detail_text(event));
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
