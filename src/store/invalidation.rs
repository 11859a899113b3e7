//! What a write announces to every node, and what each node's caches must
//! forget when they hear it.

/// What a node's caches must forget because some node changed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// One M2M client changed (updated, disabled, deleted, secret rotated).
    Client(String),
    /// One protected resource changed (declared again, deleted).
    Resource(String),
    /// Watching (re)started: anything cached before may be stale.
    All,
    /// Watching stopped: caches must not be trusted until `All` comes.
    Lost,
    /// Some access tokens were revoked (grants, consents, a user's
    /// credentials, a client, one JWT, API access tokens) or a user changed:
    /// remembered tokens must be checked again.
    Revocations,
    /// The signing keys changed (a rotation): read them again.
    Keys,
}

/// What a write that revokes access tokens, or changes a user, announces.
pub const REVOCATIONS: &str = "revocations";

/// What a write of protected resource `name` announces, after this prefix.
pub(super) const RESOURCE_PREFIX: &str = "resource:";

/// What a write of the signing keys announces.
pub const KEYS: &str = "keys";

impl Invalidation {
    /// The invalidation an announcement stands for.
    pub(super) fn of(announced: &str) -> Invalidation {
        if let Some(id) = announced.strip_prefix("client:") {
            return Invalidation::Client(id.to_string());
        }
        if let Some(name) = announced.strip_prefix(RESOURCE_PREFIX) {
            return Invalidation::Resource(name.to_string());
        }
        match announced {
            REVOCATIONS => Invalidation::Revocations,
            KEYS => Invalidation::Keys,
            _ => Invalidation::All,
        }
    }

    /// The M2M client this names, if it names one.
    pub fn client(&self) -> Option<&str> {
        match self {
            Invalidation::Client(id) => Some(id),
            _ => None,
        }
    }

    /// The protected resource this names, if it names one.
    pub fn resource(&self) -> Option<&str> {
        match self {
            Invalidation::Resource(name) => Some(name),
            _ => None,
        }
    }
}

pub type InvalidationSink = Box<dyn Fn(Invalidation) + Send + Sync>;
