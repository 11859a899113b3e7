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
         in Unicode normal form NFKC (no fullwidth or other compatibility forms)"
    )]
    BadUsername,
    #[error("password must be {PASSWORD_MIN} to {PASSWORD_MAX} bytes")]
    BadPassword,
    #[error(
        "the password is too easy to guess: a very common password, the username, one character repeated \
         or a run such as 12345678"
    )]
    GuessablePassword,
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
/// (Look-alikes from other scripts, Cyrillic `а` for Latin `a`, are not
/// caught: that needs Unicode's confusables, UTS #39.)
fn is_nfkc(name: &str) -> bool {
    unicode_normalization::is_nfkc(name)
}

/// Unicode `Cf` (format) characters are invisible: zero-width joiners, bidi
/// overrides. In a name they make two accounts look alike.
pub fn is_format_char(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    c.general_category() == GeneralCategory::Format
}

/// Checks a password being set for `username` (NIST SP 800-63B §5.1.1.2):
/// its length, and that it is none of what a guesser tries first — a very
/// common password, the username itself, one character repeated, or a run
/// such as `12345678` or `abcdefgh`. Passwords already set are not judged
/// again at sign-in.
pub fn validate_password(username: &str, password: &str) -> Result<(), UserInputError> {
    if !(PASSWORD_MIN..=PASSWORD_MAX).contains(&password.len()) {
        return Err(UserInputError::BadPassword);
    }
    let lower = password.to_lowercase();
    let chars: Vec<char> = lower.chars().collect();
    let repeated = chars.windows(2).all(|w| w[0] == w[1]);
    let step = |w: &[char]| w[1] as i64 - w[0] as i64;
    let run = chars.windows(2).all(|w| step(w) == 1) || chars.windows(2).all(|w| step(w) == -1);
    if repeated || run || lower == username.to_lowercase() || COMMON_PASSWORDS.contains(&lower.as_str()) {
        return Err(UserInputError::GuessablePassword);
    }
    Ok(())
}

/// Passwords of eight characters or more that top every published list of
/// the most used ones, lowercase (runs and repeats are caught by rule).
const COMMON_PASSWORDS: &[&str] = &[
    "password",
    "password1",
    "password12",
    "password123",
    "password1234",
    "passw0rd",
    "p@ssw0rd",
    "p@ssword",
    "1234567890",
    "0987654321",
    "123123123",
    "12341234",
    "11223344",
    "12344321",
    "1q2w3e4r",
    "1q2w3e4r5t",
    "1qaz2wsx",
    "zaq12wsx",
    "12qwaszx",
    "q1w2e3r4",
    "qwertyui",
    "qwertyuiop",
    "qwerty12",
    "qwerty123",
    "qwerty1234",
    "asdfghjk",
    "asdfghjkl",
    "zxcvbnm1",
    "123qweasd",
    "qweasdzxc",
    "aa123456",
    "a1b2c3d4",
    "abc12345",
    "abcd1234",
    "iloveyou",
    "iloveyou1",
    "sunshine",
    "sunshine1",
    "princess",
    "princess1",
    "football",
    "football1",
    "baseball",
    "basketball",
    "superman",
    "starwars",
    "trustno1",
    "welcome1",
    "welcome123",
    "letmein1",
    "letmein123",
    "admin123",
    "admin1234",
    "administrator",
    "changeme",
    "changeme1",
    "computer",
    "internet",
    "whatever",
    "jennifer",
    "michael1",
    "charlie1",
    "monkey123",
    "dragon123",
    "master123",
    "shadow123",
    "secret123",
    "test1234",
    "testtest",
    "1password",
    "keyward1",
    "keyward123",
];

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
        assert!(validate_password("jane", "short").is_err());
        assert!(validate_password("jane", "long enough").is_ok());
        assert!(validate_password("jane", &"p".repeat(PASSWORD_MAX + 1)).is_err());
        // What a guesser tries first (found by an outside probe: all were accepted).
        for guessable in
            ["password", "PassW0rd", "12345678", "87654321", "abcdefgh", "        ", "aaaaaaaaaa"]
        {
            assert_eq!(
                validate_password("jane", guessable),
                Err(UserInputError::GuessablePassword),
                "{guessable:?}"
            );
        }
        assert!(validate_password("jane.doe@example.com", "Jane.Doe@example.com").is_err());
        for fine in ["password-123", "12345679", "correct horse battery", "zoë-und-ärger"] {
            assert!(validate_password("jane", fine).is_ok(), "{fine:?}");
        }
    }
}
