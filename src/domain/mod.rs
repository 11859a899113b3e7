//! Domain logic: the rules of users, roles, settings and audit, with no HTTP
//! and no SQL in sight, so it is tested by plain unit tests.

pub mod api_token;
pub mod audit;
pub mod caller;
pub mod client;
pub mod client_metadata;
pub mod connection;
pub mod delegated;
pub mod exchange;
pub mod id_jag;
pub mod oauth;
pub mod outbound;
pub mod proxy;
pub mod registration;
pub mod resource;
pub mod role;
pub mod settings;
pub mod signed_jwt;
pub mod sso;
pub mod throttle;
pub mod token;
pub mod user;
pub mod vault;

pub use caller::{Actor, Caller, Principal};
pub use role::Role;
pub use user::{AuthSource, User, UserId};

/// Microseconds in a second.
pub const MICROS: i64 = 1_000_000;

/// Unix microseconds, the one time representation in storage.
pub fn to_micros(t: time::OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000) as i64
}

pub fn from_micros(us: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(us as i128 * 1_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

pub fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// The first `max_chars` characters of `s`: how caller input is quoted in
/// messages and audit records, so that a huge value is never echoed whole.
pub fn excerpt(s: &str, max_chars: usize) -> &str {
    match s.char_indices().nth(max_chars) {
        Some((cut, _)) => &s[..cut],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::excerpt;

    #[test]
    fn excerpts_count_characters_not_bytes() {
        assert_eq!(excerpt("abcdef", 3), "abc");
        assert_eq!(excerpt("ab", 3), "ab");
        assert_eq!(excerpt("", 3), "");
        assert_eq!(excerpt("ééé€x", 4), "ééé€");
        assert_eq!(excerpt("abc", 0), "");
    }
}
