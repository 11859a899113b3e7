//! Who a caller is by address: the peer of its connection or, when that
//! peer is a proxy the operator named, the address the proxy forwarded.
//! Throttles, lockouts, registration shares and audit records all key on
//! this, so behind a load balancer they must not all see the balancer.

use axum::http::HeaderMap;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// The proxies (load balancers, ingress controllers) whose
/// `X-Forwarded-For` is believed; none by default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// From a comma-separated list of addresses and networks, such as
    /// `10.0.1.0/24, 192.0.2.7`. Every host in the list can name any caller,
    /// so what looks like a typo is refused: a network with host bits set
    /// (`192.0.2.7/2`), one that holds everyone (`/0`), and an IPv4 network
    /// written as IPv6 (callers are compared as IPv4).
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut networks = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let network = match entry.parse::<IpNet>() {
                Ok(network) if network != network.trunc() => {
                    return Err(format!("{entry:?} has host bits set; did you mean {}?", network.trunc()));
                }
                // A /8 is the widest private range; wider would let much
                // of the Internet name any caller.
                Ok(IpNet::V4(v4)) if v4.prefix_len() < 8 => {
                    return Err(format!("{entry:?} is wider than a /8: name the balancers only"));
                }
                Ok(IpNet::V6(v6)) if v6.prefix_len() < 16 => {
                    return Err(format!("{entry:?} is wider than a /16: name the balancers only"));
                }
                Ok(network) => network,
                Err(_) => match entry.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => {
                        return Err(format!("{entry:?} is neither an address nor a network (a.b.c.d/n)"));
                    }
                },
            };
            // Mapped (`::ffff:a.b.c.d`) and the old compatible (`::a.b.c.d`)
            // forms; `::1` is IPv6's own loopback.
            if let IpNet::V6(v6) = network
                && v6.network().to_ipv4().is_some()
                && !v6.network().is_loopback()
            {
                return Err(format!("{entry:?}: write IPv4 addresses and networks as IPv4"));
            }
            networks.push(network);
        }
        Ok(TrustedProxies(networks))
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|network| network.contains(&ip.to_canonical()))
    }

    /// The caller's address: `peer`, unless `peer` is a trusted proxy;
    /// then `X-Forwarded-For` is read from the right (the entries proxies
    /// appended) up to the first address that is not a trusted proxy. The
    /// entries left of it were written by the caller and prove nothing. An
    /// entry that is not an address ends the walk at the proxy that passed
    /// it on. A forwarded caller's port is unknown (0).
    pub fn caller(&self, peer: SocketAddr, headers: &HeaderMap) -> SocketAddr {
        if self.0.is_empty() || !self.trusts(peer.ip()) {
            return peer;
        }
        let mut caller = peer;
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .rev()
            .flat_map(|value| value.as_bytes().rsplit(|b| *b == b','));
        for hop in hops {
            let Some(ip) = std::str::from_utf8(hop).ok().and_then(|hop| hop_address(hop.trim())) else {
                break;
            };
            caller = SocketAddr::new(ip, 0);
            if !self.trusts(ip) {
                break;
            }
        }
        caller
    }
}

/// One `X-Forwarded-For` entry: an address, perhaps with a port (some
/// proxies add one; IPv6 then in brackets).
fn hop_address(hop: &str) -> Option<IpAddr> {
    let ip = hop.parse::<IpAddr>().or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip())).ok()?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append("x-forwarded-for", v.parse().unwrap());
        }
        headers
    }

    fn caller(proxies: &str, peer: &str, values: &[&str]) -> String {
        let proxies = TrustedProxies::parse(proxies).unwrap();
        proxies.caller(peer.parse().unwrap(), &forwarded(values)).ip().to_string()
    }

    #[test]
    fn a_peer_that_is_not_trusted_is_the_caller() {
        assert_eq!(caller("", "198.51.100.1:5000", &["203.0.113.9"]), "198.51.100.1");
        assert_eq!(caller("10.0.0.0/8", "198.51.100.1:5000", &["203.0.113.9"]), "198.51.100.1");
    }

    #[test]
    fn the_nearest_untrusted_hop_is_the_caller() {
        let lb = "10.0.0.0/8, 192.0.2.7";
        assert_eq!(caller(lb, "10.1.2.3:80", &["203.0.113.9"]), "203.0.113.9");
        // What the caller wrote itself, left of its own address, is not believed.
        assert_eq!(caller(lb, "10.1.2.3:80", &["1.1.1.1, 203.0.113.9"]), "203.0.113.9");
        assert_eq!(caller(lb, "10.1.2.3:80", &["1.1.1.1", "203.0.113.9, 192.0.2.7"]), "203.0.113.9");
        // A chain of trusted proxies is walked through.
        assert_eq!(caller(lb, "10.1.2.3:80", &["203.0.113.9, 10.9.9.9, 192.0.2.7"]), "203.0.113.9");
        // Ports, brackets and IPv4 written as IPv6.
        assert_eq!(caller(lb, "10.1.2.3:80", &["203.0.113.9:4711"]), "203.0.113.9");
        assert_eq!(caller(lb, "10.1.2.3:80", &["[2001:db8::1]:443"]), "2001:db8::1");
        assert_eq!(caller(lb, "[::ffff:10.1.2.3]:80", &["::ffff:203.0.113.9"]), "203.0.113.9");
    }

    #[test]
    fn without_a_usable_entry_the_proxy_is_the_caller() {
        let lb = "10.0.0.0/8";
        assert_eq!(caller(lb, "10.1.2.3:80", &[]), "10.1.2.3");
        assert_eq!(caller(lb, "10.1.2.3:80", &["unknown"]), "10.1.2.3");
        assert_eq!(caller(lb, "10.1.2.3:80", &["203.0.113.9, junk"]), "10.1.2.3");
        // Only trusted hops: the farthest one is all that is known.
        assert_eq!(caller(lb, "10.1.2.3:80", &["10.7.7.7"]), "10.7.7.7");
    }

    #[test]
    fn lists_of_proxies_are_checked() {
        assert_eq!(TrustedProxies::parse(" ").unwrap(), TrustedProxies::default());
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("10.0.0.0/8, lb.example").unwrap_err().contains("lb.example"));
        // What looks like a typo is refused, not widened or ignored.
        assert!(TrustedProxies::parse("192.0.2.7/2").unwrap_err().contains("192.0.0.0/2"));
        assert!(TrustedProxies::parse("0.0.0.0/0").is_err());
        assert!(TrustedProxies::parse("::/0").is_err());
        assert!(TrustedProxies::parse("0.0.0.0/1").is_err());
        assert!(TrustedProxies::parse("::/1").is_err());
        assert!(TrustedProxies::parse("::127.0.0.2").is_err());
        assert!(TrustedProxies::parse("::1, 10.0.0.0/8, fd00::/8").is_err(), "fd00::/8 is wider than a /16");
        assert!(TrustedProxies::parse("::1, 10.0.0.0/8, fd00:1::/32").is_ok());
        assert!(TrustedProxies::parse("::ffff:10.0.0.0/104").is_err());
        assert!(TrustedProxies::parse("::ffff:10.0.0.1").is_err());
        assert!(TrustedProxies::parse("2001:db8::/32, 10.0.1.0/24").is_ok());
    }
}
