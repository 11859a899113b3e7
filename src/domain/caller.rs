//! Who is calling: the result of authentication, input to authorization.

use super::role::Role;
use super::user::UserId;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    User {
        id: UserId,
        username: String,
    },
    /// A machine-to-machine client acting for itself.
    Client {
        client_id: String,
        /// A service identity (see `M2mClient::is_service`).
        is_service: bool,
    },
}

/// An authenticated caller of a platform API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub principal: Principal,
    pub role: Role,
    /// The OAuth scopes of the access token (space-separated), or `None` for
    /// an API access token, which is the user's own credential and limited
    /// by the role alone.
    pub scope: Option<String>,
    /// The app a user's OAuth access token was issued to, acting for the
    /// user; `None` for the user's own sign-in or API access token, and
    /// for a machine acting for itself.
    pub via_client: Option<String>,
}

impl Caller {
    /// A user in their own browser session: limited by the role alone, as
    /// with their own API access token.
    pub fn signed_in(user: &super::User) -> Self {
        Caller {
            principal: Principal::User { id: user.id, username: user.username.clone() },
            role: user.role,
            scope: None,
            via_client: None,
        }
    }
}

/// The scope a credential needs for keyward's own REST APIs (SPEC §5): the
/// table in docs/security.md says what each scope allows.
pub const API_SCOPE: &str = "api";

impl Caller {
    /// Whether the credential was granted `scope` (always, for an API access
    /// token).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.as_deref().is_none_or(|granted| granted.split(' ').any(|s| s == scope))
    }

    /// Whether this caller is a service identity.
    pub fn is_service(&self) -> bool {
        matches!(self.principal, Principal::Client { is_service: true, .. })
    }

    pub fn actor(&self) -> Actor {
        match &self.principal {
            Principal::User { id, .. } => Actor::User(*id),
            Principal::Client { client_id, .. } => Actor::Client(client_id.clone()),
        }
    }
}

/// Who did something, as the audit log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    User(UserId),
    Client(String),
    /// The operator at the command line (`keyward conf`, `keyward user add`).
    Cli,
    /// keyward itself (first start, background jobs).
    System,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::User(id) => write!(f, "user:{id}"),
            Actor::Client(id) => write!(f, "client:{id}"),
            Actor::Cli => f.write_str("cli"),
            Actor::System => f.write_str("system"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_limit_jwt_callers_only() {
        let caller = |scope: Option<&str>| Caller {
            principal: Principal::Client { client_id: "c".into(), is_service: false },
            role: Role::ServerAdmin,
            scope: scope.map(str::to_string),
            via_client: None,
        };
        assert!(caller(None).has_scope(API_SCOPE));
        assert!(caller(Some("api mcp")).has_scope(API_SCOPE));
        assert!(!caller(Some("mcp")).has_scope(API_SCOPE));
        assert!(!caller(Some("offline_access")).has_scope(API_SCOPE));
        assert!(!caller(Some("")).has_scope(API_SCOPE));
        assert!(!caller(Some("apix")).has_scope(API_SCOPE));
    }
}
