//! Security-relevant events (SPEC §4). Each carries who, what, on what and
//! the outcome; never a secret.

use super::caller::Actor;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }
}

/// An event about to be written. `action` names are dotted and stable
/// (`user.created`, `config.changed`, …) so that admins can filter on them.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub actor: Actor,
    pub action: &'static str,
    pub target: Option<String>,
    pub outcome: Outcome,
    pub client_addr: Option<String>,
    /// Free-form JSON object with non-secret details.
    pub detail: serde_json::Value,
}

impl AuditEvent {
    pub fn success(actor: Actor, action: &'static str, target: impl Into<String>) -> Self {
        AuditEvent {
            actor,
            action,
            target: Some(target.into()),
            outcome: Outcome::Success,
            client_addr: None,
            detail: serde_json::Value::Null,
        }
    }

    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }
}

/// A stored audit event, as admins read it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditRecord {
    pub id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: time::OffsetDateTime,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub outcome: String,
    pub client_addr: Option<String>,
    pub detail: serde_json::Value,
}
