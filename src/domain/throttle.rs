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

/// Failures of one account from all addresses together before it locks:
/// high, so that an attacker at one address cannot lock the real user out
/// at another, yet a spread-out attack still meets a wall.
pub const FREE_ACCOUNT_FAILURES: i64 = 50;

/// How long an address (or an account at one address) is locked after its
/// `failures`-th failure, in seconds.
pub fn lock_after(failures: i64) -> i64 {
    growing_lock(failures, FREE_FAILURES)
}

/// The same for an account across all addresses.
pub fn account_lock_after(failures: i64) -> i64 {
    growing_lock(failures, FREE_ACCOUNT_FAILURES)
}

fn growing_lock(failures: i64, free: i64) -> i64 {
    if failures < free {
        return 0;
    }
    let doublings = (failures - free).min(20) as u32;
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
        assert_eq!(account_lock_after(49), 0);
        assert_eq!(account_lock_after(50), 1);
    }
}
