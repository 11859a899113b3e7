//! Machine-to-machine OAuth client applications (SPEC §1.2).

use super::role::Role;
use serde::Serialize;

/// Access token duration bounds of the reference: 5 minutes to 72 hours.
pub const ACCESS_TOKEN_DURATION_MIN: i64 = 300;
pub const ACCESS_TOKEN_DURATION_MAX: i64 = 259_200;
pub const CLIENT_NAME_MAX: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct M2mClient {
    pub client_id: String,
    pub name: String,
    pub role: Role,
    /// Seconds.
    pub access_token_duration: i64,
    pub disabled: bool,
    /// A service identity: may read connection tokens and stored
    /// credentials for the platform's tools.
    pub is_service: bool,
    /// May exchange a user's access token for the user's connection tokens
    /// (RFC 8693 at the token endpoint); an admin grants it.
    pub token_exchange: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub secret_rotated_at: Option<time::OffsetDateTime>,
    /// Tokens issued at or before this (unix seconds) are refused: set when
    /// the client is disabled, so enabling it again revives none of them.
    #[serde(skip)]
    pub tokens_not_before: Option<i64>,
}

pub fn validate_client_name(name: &str) -> Result<(), String> {
    let trimmed = name.trim();
    if trimmed.is_empty() || name.chars().count() > CLIENT_NAME_MAX || name.chars().any(char::is_control) {
        return Err(format!("name must be 1 to {CLIENT_NAME_MAX} characters without control characters"));
    }
    Ok(())
}

pub fn validate_access_token_duration(seconds: i64) -> Result<(), String> {
    if (ACCESS_TOKEN_DURATION_MIN..=ACCESS_TOKEN_DURATION_MAX).contains(&seconds) {
        Ok(())
    } else {
        Err(format!(
            "access_token_duration must be from {ACCESS_TOKEN_DURATION_MIN} to {ACCESS_TOKEN_DURATION_MAX} \
             seconds (5 minutes to 72 hours), got {seconds}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_bounds_are_inclusive() {
        assert!(validate_access_token_duration(300).is_ok());
        assert!(validate_access_token_duration(259_200).is_ok());
        let e = validate_access_token_duration(299).unwrap_err();
        assert!(e.contains("access_token_duration") && e.contains("300") && e.contains("259200"), "{e}");
        assert!(validate_access_token_duration(259_201).is_err());
    }

    #[test]
    fn names() {
        assert!(validate_client_name("Nightly ETL").is_ok());
        assert!(validate_client_name("  ").is_err());
        assert!(validate_client_name("a\nb").is_err());
        assert!(validate_client_name(&"n".repeat(201)).is_err());
    }
}
