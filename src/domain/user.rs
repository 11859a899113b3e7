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
        && !username.chars().any(|c| c.is_whitespace() || c.is_control() || is_invisible(c))
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

/// Characters that show as nothing, or as a blank: Unicode `Cf` (format:
/// zero-width joiners, bidi overrides), the other default-ignorable code
/// points (fillers, variation selectors, the combining grapheme joiner;
/// Unicode's DerivedCoreProperties), enclosing marks and the braille blank.
/// In a name they make two accounts look alike.
pub fn is_invisible(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    const IGNORABLE: &[(char, char)] = &[
        ('\u{00AD}', '\u{00AD}'),
        ('\u{034F}', '\u{034F}'),
        ('\u{061C}', '\u{061C}'),
        ('\u{115F}', '\u{1160}'),
        ('\u{17B4}', '\u{17B5}'),
        ('\u{180B}', '\u{180F}'),
        ('\u{200B}', '\u{200F}'),
        ('\u{202A}', '\u{202E}'),
        ('\u{2060}', '\u{206F}'),
        ('\u{2800}', '\u{2800}'),
        ('\u{3164}', '\u{3164}'),
        ('\u{FE00}', '\u{FE0F}'),
        ('\u{FEFF}', '\u{FEFF}'),
        ('\u{FFA0}', '\u{FFA0}'),
        ('\u{FFF0}', '\u{FFF8}'),
        ('\u{1BCA0}', '\u{1BCA3}'),
        ('\u{1D173}', '\u{1D17A}'),
        ('\u{E0000}', '\u{E0FFF}'),
    ];
    matches!(c.general_category(), GeneralCategory::Format | GeneralCategory::EnclosingMark)
        || IGNORABLE.iter().any(|(from, to)| (*from..=*to).contains(&c))
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
    // Judged as a guesser would try it: in compatibility form, without
    // invisible characters or surrounding whitespace, in lowercase.
    use unicode_normalization::UnicodeNormalization;
    let visible: String = password.nfkc().filter(|c| !is_invisible(*c)).collect();
    let folded = visible.trim().to_lowercase();
    let chars: Vec<char> = folded.chars().collect();
    // One unit over and over: `aaaaaaaa`, `abababab`, `adminadmin`.
    let repeated =
        (1..=chars.len() / 2).any(|n| chars.len() % n == 0 && chars.chunks(n).all(|c| c == &chars[..n]));
    // Digits count round the dial: `2345678901` is a run too.
    let step = |w: &[char]| match (w[0].to_digit(10), w[1].to_digit(10)) {
        (Some(a), Some(b)) => [0, 1, 0, 0, 0, 0, 0, 0, 0, -1][((b + 10 - a) % 10) as usize],
        _ => w[1] as i64 - w[0] as i64,
    };
    let run = chars.windows(2).all(|w| step(w) == 1) || chars.windows(2).all(|w| step(w) == -1);
    let name = username.to_lowercase();
    let guessable = chars.len() < 4
        || repeated
        || run
        || folded == name
        || folded.strip_prefix(name.as_str()).is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit()))
        || COMMON_PASSWORDS.contains(&folded.as_str());
    if guessable {
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
        // Nor are names padded with what shows as nothing (found by an
        // outside probe: fillers, the combining grapheme joiner, …).
        for padded in [
            "admin\u{1160}",
            "admin\u{34f}",
            "admin\u{fe0f}",
            "admin\u{17b4}",
            "admin\u{2800}",
            "admin\u{20e0}",
            "\u{34f}",
        ] {
            assert!(validate_username(padded).is_err(), "{padded:?}");
        }
        assert!(
            validate_username("\u{939}\u{93f}\u{928}\u{94d}\u{926}\u{940}").is_ok(),
            "combining vowel signs are letters' parts"
        );
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
        // … however it is dressed up (found by an outside probe).
        for dressed in [
            "password ",
            "\tpassword",
            "pass\u{200b}word",
            "\u{34f}password",
            "\u{ff50}\u{ff41}\u{ff53}\u{ff53}\u{ff57}\u{ff4f}\u{ff52}\u{ff44}",
            "abababab",
            "12121212",
            "2345678901",
            "passwordpassword",
            "a       ",
        ] {
            assert_eq!(
                validate_password("jane", dressed),
                Err(UserInputError::GuessablePassword),
                "{dressed:?}"
            );
        }
        assert!(validate_password("pwuser01", "Pwuser01").is_err());
        assert!(validate_password("admin", "adminadmin").is_err());
        assert!(validate_password("administrator1", "Administrator123").is_err());
        for fine in ["password-123", "12345679", "correct horse battery", "zoë-und-ärger"] {
            assert!(validate_password("jane", fine).is_ok(), "{fine:?}");
        }
    }
}
