//! Failed-login throttling (SPEC §3): counted per account and per client
//! address, shared by every node through the store. After a few free
//! failures each further one locks the key for twice as long as the last,
//! up to a ceiling; a success clears the account's count.

/// Failures allowed before any lock.
pub const FREE_FAILURES: i64 = 5;
/// The first lock, in seconds; each further failure doubles it.
pub const FIRST_LOCK_SECONDS: i64 = 1;
pub const MAX_LOCK_SECONDS: i64 = 15 * 60;
/// Failures older than this are forgotten.
pub const WINDOW_SECONDS: i64 = 60 * 60;

/// How long a key is locked after its `failures`-th failure, in seconds.
pub fn lock_after(failures: i64) -> i64 {
    if failures < FREE_FAILURES {
        return 0;
    }
    let doublings = (failures - FREE_FAILURES).min(20) as u32;
    (FIRST_LOCK_SECONDS << doublings).min(MAX_LOCK_SECONDS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_grow_and_cap() {
        assert_eq!(lock_after(1), 0);
        assert_eq!(lock_after(4), 0);
        assert_eq!(lock_after(5), 1);
        assert_eq!(lock_after(6), 2);
        assert_eq!(lock_after(9), 16);
        assert_eq!(lock_after(100), MAX_LOCK_SECONDS);
    }
}
