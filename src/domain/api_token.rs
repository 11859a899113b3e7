//! Refresh tokens and API access tokens of the `/integration/v1` API
//! (SPEC §1.3): their statuses and limits.

use serde::Serialize;

/// Status as the reference's sample responses show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TokenStatus {
    Active,
    Expired,
    Revoked,
}

impl TokenStatus {
    /// Revocation wins over expiry: a revoked token says so even after it
    /// would have expired.
    pub fn of(revoked_at: Option<i64>, expires_at: i64, now: i64) -> TokenStatus {
        if revoked_at.is_some() {
            TokenStatus::Revoked
        } else if expires_at <= now {
            TokenStatus::Expired
        } else {
            TokenStatus::Active
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TokenStatus::Active => "ACTIVE",
            TokenStatus::Expired => "EXPIRED",
            TokenStatus::Revoked => "REVOKED",
        }
    }
}

pub const TOKEN_NAME_MAX: usize = 255;

pub fn validate_token_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() || name.chars().count() > TOKEN_NAME_MAX || name.chars().any(char::is_control) {
        Err(format!("name must be 1 to {TOKEN_NAME_MAX} characters without control characters"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_order() {
        assert_eq!(TokenStatus::of(None, 10, 5), TokenStatus::Active);
        assert_eq!(TokenStatus::of(None, 10, 10), TokenStatus::Expired);
        assert_eq!(TokenStatus::of(Some(1), 10, 20), TokenStatus::Revoked);
        assert_eq!(serde_json::to_value(TokenStatus::Expired).unwrap(), "EXPIRED");
    }

    #[test]
    fn names() {
        assert!(validate_token_name("My Precious Token").is_ok());
        assert!(validate_token_name(" ").is_err());
        assert!(validate_token_name(&"n".repeat(256)).is_err());
    }
}
