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

/// How long a key is locked after its n-th counted attempt, in seconds.
pub type LockPolicy<'a> = &'a (dyn Fn(i64) -> i64 + Sync);

/// The network a caller is counted as: its IPv4 address, or the /64 its
/// IPv6 address is in (one subscriber's share, which it can fill with
/// addresses at will).
pub fn network_of(addr: std::net::IpAddr) -> String {
    match addr {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// The /48 an IPv6 caller is in (a site's allocation: 65,536 /64s, which a
/// free tunnel broker hands out); `None` for IPv4.
pub fn site_of(addr: std::net::IpAddr) -> Option<String> {
    let std::net::IpAddr::V6(v6) = addr else { return None };
    if v6.to_ipv4_mapped().is_some() {
        return None;
    }
    let s = v6.segments();
    Some(format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2]))
}

/// A share per clock hour: after the `share`-th attempt of the hour, wait
/// until the hour ends (`left` seconds). The hour is part of the key, so
/// the count starts again each hour whatever the traffic.
pub fn hourly_share(attempts: i64, share: i64, left: i64) -> i64 {
    if attempts >= share { left } else { 0 }
}

/// How long an address (or an account at one address) is locked after its
/// `failures`-th failure, in seconds.
pub fn lock_after(failures: i64) -> i64 {
    growing_lock(failures, FREE_FAILURES)
}

/// The sign-in throttle's key of an account, whether or not it exists.
pub fn account_key(username: &str) -> String {
    format!("user:{}", super::user::username_key(username))
}

/// How long a network an account signed in from (with its password) is
/// remembered: while it is, it passes the account-wide lock (never the
/// locks of its own address), so that guesses spread over many addresses
/// cannot lock the owner out where they usually sign in.
pub const KNOWN_NETWORK_SECONDS: i64 = 30 * 86_400;

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
        assert_eq!(growing_lock(299, 300), 0);
        assert_eq!(growing_lock(301, 300), 2);
    }

    #[test]
    fn an_hourly_share_ends_with_the_hour() {
        assert_eq!(hourly_share(4, 5, 600), 0);
        assert_eq!(hourly_share(5, 5, 600), 600);
        assert_eq!(hourly_share(9, 5, 1), 1);
        assert_eq!(site_of("2001:db8:1:2::1".parse().unwrap()).unwrap(), "2001:db8:1::/48");
        assert_eq!(
            site_of("2001:db8:1:ffff::1".parse().unwrap()),
            site_of("2001:db8:1:2::9".parse().unwrap())
        );
        assert_eq!(site_of("192.0.2.1".parse().unwrap()), None);
        assert_eq!(site_of("::ffff:192.0.2.1".parse().unwrap()), None);
    }

    #[test]
    fn an_ipv6_caller_is_counted_by_its_64() {
        let net = |s: &str| network_of(s.parse().unwrap());
        assert_eq!(net("192.0.2.7"), "192.0.2.7");
        assert_eq!(net("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(net("2001:db8:1:2:aaaa::1"), net("2001:db8:1:2:ffff:1:2:3"));
        assert_eq!(net("2001:db8:1:2::9"), "2001:db8:1:2::/64");
        assert_ne!(net("2001:db8:1:2::1"), net("2001:db8:1:3::1"));
    }
}
