//! Users: validation of what an admin or the CLI may create.

use super::role::Role;
use serde::Serialize;

pub type UserId = i64;

pub const USERNAME_MAX: usize = 150;
pub const PASSWORD_MIN: usize = 8;
/// Longer passwords only cost argon2 time; 1 KiB is far beyond any passphrase.
pub const PASSWORD_MAX: usize = 1024;

/// How a user signs in. SSO-only users have no password at keyward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthSource {
    Password,
    Sso,
}

/// A user as every layer sees it. The password hash never leaves the store
/// except through [`crate::store::Store::password_hash`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub role: Role,
    pub auth_source: AuthSource,
    pub disabled: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
    /// The user's access tokens issued before this (unix seconds) are
    /// refused: set when their credentials end.
    #[serde(skip)]
    pub tokens_not_before: Option<i64>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserInputError {
    #[error(
        "username must be 1 to {USERNAME_MAX} characters without spaces, control or invisible characters, \
         in Unicode normal form NFKC (no fullwidth or look-alike letters)"
    )]
    BadUsername,
    #[error("password must be {PASSWORD_MIN} to {PASSWORD_MAX} bytes")]
    BadPassword,
}

/// Usernames are compared case-insensitively (they are often e-mail
/// addresses); this is the key the store keeps unique.
pub fn username_key(username: &str) -> String {
    username.to_lowercase()
}

pub fn validate_username(username: &str) -> Result<(), UserInputError> {
    let ok = !username.is_empty()
        && username.chars().count() <= USERNAME_MAX
        && !username.chars().any(|c| c.is_whitespace() || c.is_control() || is_format_char(c))
        && is_nfkc(username);
    if ok { Ok(()) } else { Err(UserInputError::BadUsername) }
}

/// Whether a name is in Unicode normal form NFKC. Names in another form
/// look like a name in it (fullwidth `ａｄｍｉｎ` like `admin`, `e` with a
/// combining accent like `é`) and would be two accounts.
fn is_nfkc(name: &str) -> bool {
    use unicode_normalization::UnicodeNormalization;
    name.nfkc().eq(name.chars())
}

/// Unicode `Cf` (format) characters are invisible: zero-width joiners, bidi
/// overrides. In a name they make two accounts look alike.
pub fn is_format_char(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    c.general_category() == GeneralCategory::Format
}

pub fn validate_password(password: &str) -> Result<(), UserInputError> {
    if (PASSWORD_MIN..=PASSWORD_MAX).contains(&password.len()) {
        Ok(())
    } else {
        Err(UserInputError::BadPassword)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(validate_username("jane.doe@example.com").is_ok());
        assert!(validate_username("").is_err());
        assert!(validate_username("a b").is_err());
        assert!(validate_username("a\u{0}b").is_err());
        for invisible in ["adm\u{200b}in", "\u{202e}nimda", "admin\u{feff}", "a\u{2066}b"] {
            assert!(validate_username(invisible).is_err(), "{invisible:?}");
        }
        assert!(validate_username("zoë").is_ok());
        // Look-alikes of names in normal form are not names.
        for lookalike in ["\u{ff41}\u{ff44}\u{ff4d}\u{ff49}\u{ff4e}", "zoe\u{308}", "\u{210c}ank", "ﬁona"] {
            assert!(validate_username(lookalike).is_err(), "{lookalike:?}");
        }
        assert!(validate_username(&"x".repeat(USERNAME_MAX)).is_ok());
        assert!(validate_username(&"x".repeat(USERNAME_MAX + 1)).is_err());
        assert_eq!(username_key("Jane@Example.COM"), "jane@example.com");
    }

    #[test]
    fn passwords() {
        assert!(validate_password("short").is_err());
        assert!(validate_password("long enough").is_ok());
        assert!(validate_password(&"p".repeat(PASSWORD_MAX + 1)).is_err());
    }
}
