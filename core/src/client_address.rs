//! Which address a request comes from, for per-address rate limits: the TCP peer, or, behind a
//! trusted reverse proxy, the client that proxy names in `X-Forwarded-For`.

use std::net::IpAddr;

/// The client's address. `X-Forwarded-For` is believed only from `trusted_proxies`, and read
/// from the right (the entries the trusted proxies appended), skipping further trusted
/// proxies; entries further left are the client's own claims and are never believed.
pub fn client_address(
    peer: IpAddr,
    forwarded_for: Option<&str>,
    trusted_proxies: &[IpAddr],
) -> IpAddr {
    if !trusted_proxies.contains(&peer) {
        return peer;
    }
    let Some(header) = forwarded_for else {
        return peer;
    };
    let mut client = peer;
    for entry in header.rsplit(',') {
        let Ok(address) = entry.trim().parse::<IpAddr>() else {
            break;
        };
        client = address;
        if !trusted_proxies.contains(&address) {
            break;
        }
    }
    client
}

/// The rate-limit key of an address. An IPv6 client usually holds a whole /64, so the /64 is
/// the key; otherwise one client would have 2^64 buckets.
pub fn rate_limit_key(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxy = [ip("10.0.0.1")];
        assert_eq!(
            client_address(ip("10.0.0.1"), Some("203.0.113.7"), &proxy),
            ip("203.0.113.7")
        );
        // An untrusted peer's header is ignored.
        assert_eq!(
            client_address(ip("198.51.100.2"), Some("203.0.113.7"), &proxy),
            ip("198.51.100.2")
        );
        // Claims left of the trusted hops are the client's own and not believed.
        assert_eq!(
            client_address(ip("10.0.0.1"), Some("1.1.1.1, 203.0.113.7"), &proxy),
            ip("203.0.113.7")
        );
        // Chains of trusted proxies are walked through.
        let proxies = [ip("10.0.0.1"), ip("10.0.0.2")];
        assert_eq!(
            client_address(ip("10.0.0.1"), Some("203.0.113.7, 10.0.0.2"), &proxies),
            ip("203.0.113.7")
        );
        // Garbage stops the walk at the last good address.
        assert_eq!(
            client_address(ip("10.0.0.1"), Some("nonsense"), &proxy),
            ip("10.0.0.1")
        );
        assert_eq!(client_address(ip("10.0.0.1"), None, &proxy), ip("10.0.0.1"));
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_slash_64() {
        assert_eq!(
            rate_limit_key(ip("2001:db8:1:2:aaaa::1")),
            rate_limit_key(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            rate_limit_key(ip("2001:db8:1:2::1")),
            rate_limit_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(rate_limit_key(ip("::ffff:192.0.2.1")), "192.0.2.1");
        assert_eq!(rate_limit_key(ip("192.0.2.1")), "192.0.2.1");
    }
}
