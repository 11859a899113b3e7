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
