//! The six platform roles of SPEC §4, in ascending order of power.

use super::excerpt;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A platform role. The derive order *is* the privilege order: a route that
/// needs `Steward` admits `CatalogAdmin` and `ServerAdmin` too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Explorer,
    Composer,
    Steward,
    CatalogAdmin,
    ServerAdmin,
}

impl Role {
    pub const ALL: [Role; 6] =
        [Role::Viewer, Role::Explorer, Role::Composer, Role::Steward, Role::CatalogAdmin, Role::ServerAdmin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Explorer => "explorer",
            Role::Composer => "composer",
            Role::Steward => "steward",
            Role::CatalogAdmin => "catalog_admin",
            Role::ServerAdmin => "server_admin",
        }
    }

    /// Whether a caller holding `self` may use a route that needs `required`.
    pub fn satisfies(self, required: Role) -> bool {
        self >= required
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "unknown role {0:?}; expected one of viewer, explorer, composer, steward, catalog_admin, server_admin"
)]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| UnknownRole(excerpt(s, 64).to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_ascending_privilege() {
        assert!(Role::ServerAdmin.satisfies(Role::CatalogAdmin));
        assert!(Role::CatalogAdmin.satisfies(Role::CatalogAdmin));
        assert!(!Role::Steward.satisfies(Role::CatalogAdmin));
        assert!(!Role::Viewer.satisfies(Role::Explorer));
        let mut sorted = Role::ALL;
        sorted.sort();
        assert_eq!(sorted, Role::ALL);
    }

    #[test]
    fn parses_its_own_names_only() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert!("admin".parse::<Role>().is_err());
        assert!("Server_Admin".parse::<Role>().is_err());
    }
}
