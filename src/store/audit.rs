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

/// The events of [`Store::append_audit_batch`] (`$2`, a JSON array), in
/// their order, all at `$1`.
const AUDIT_BATCH_SQLITE: &str = "INSERT INTO audit_events (at, actor, action, target, outcome, client_addr, detail) \
     SELECT $1, value ->> 'actor', value ->> 'action', value ->> 'target', value ->> 'outcome', \
     value ->> 'client_addr', value ->> 'detail' FROM json_each($2) ORDER BY key";
const AUDIT_BATCH_POSTGRES: &str = "INSERT INTO audit_events (at, actor, action, target, outcome, client_addr, detail) \
     SELECT $1, e.value ->> 'actor', e.value ->> 'action', e.value ->> 'target', e.value ->> 'outcome', \
     e.value ->> 'client_addr', e.value ->> 'detail' \
     FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS e(value, n) ORDER BY e.n";

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
    /// Writes a batch of events in one statement, whatever its size: the
    /// events go as one JSON array that the database unpacks, so no
    /// statement is prepared per batch size (each size used to stay in every
    /// connection's statement cache) and nothing is bound field by field.
    /// One statement is atomic by itself: no transaction around it.
    pub async fn append_audit_batch(&self, events: Vec<AuditEvent>) -> StoreResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let rows: Vec<serde_json::Value> = events
            .iter()
            .map(|e| {
                serde_json::json!({
                    "actor": e.actor.to_string(), "action": e.action, "target": e.target,
                    "outcome": e.outcome.as_str(), "client_addr": e.client_addr, "detail": detail_text(e),
                })
            })
            .collect();
        let sql = match self.backend {
            Backend::Sqlite => AUDIT_BATCH_SQLITE,
            Backend::Postgres => AUDIT_BATCH_POSTGRES,
        };
        let batch = serde_json::Value::Array(rows).to_string();
        exec(&self.pool, sql, params![to_micros(now()), batch]).await?;
        Ok(())
    }
}
