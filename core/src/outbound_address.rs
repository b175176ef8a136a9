//! Which addresses outbound requests (URL previews, federation) may connect to: public ones,
//! plus what the config allows. Checked where the connection is made, by a DNS resolver that
//! drops forbidden addresses, so a name cannot resolve to one between check and connect.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{Arc, RwLock},
};

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

#[derive(Debug)]
pub struct AddressPolicy {
    pub allow_private: bool,
    pub whitelist: Vec<IpNet>,
}

impl AddressPolicy {
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow_private || self.whitelist.iter().any(|net| net.contains(&ip)) || is_public(ip)
    }
}

/// Whether `ip` is an ordinary internet address: not loopback, private, link-local, shared,
/// multicast, documentation, reserved or unspecified.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_public_v4(ip),
        IpAddr::V6(ip) => {
            if let Some(v4) = ip.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let first = ip.segments()[0];
            !(ip.is_loopback()
                || ip.is_unspecified()
                || ip.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || first == 0x2001 && ip.segments()[1] == 0x0db8 // documentation
                || ip.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0]) // NAT64 of anything
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240)
}

/// The error a resolver returns when every address of a name is forbidden.
#[derive(Debug, thiserror::Error)]
#[error("{0} resolves only to addresses this server may not connect to")]
pub struct Blocked(pub String);

/// Host names whose addresses were decided elsewhere (federation discovery: SRV targets and
/// resolve overrides), so that a connection to the name, whose TLS certificate it must present,
/// goes to them.
pub type PinnedAddresses = Arc<RwLock<HashMap<String, Vec<IpAddr>>>>;

/// reqwest's resolver: system DNS, minus the addresses `policy` forbids; pinned names first.
pub struct GuardedResolver {
    pub policy: Arc<AddressPolicy>,
    pub pinned: PinnedAddresses,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let pinned = self
            .pinned
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name.as_str())
            .cloned();
        Box::pin(async move {
            if let Some(ips) = pinned {
                let addrs: Vec<SocketAddr> = ips.into_iter().map(|ip| (ip, 0).into()).collect();
                return Ok(Box::new(addrs.into_iter()) as Addrs);
            }
            let host = name.as_str().to_owned();
            let addrs = lookup(&policy, &host).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// The allowed addresses of `host` (port 0), or an error naming why there are none.
pub async fn lookup(
    policy: &AddressPolicy,
    host: &str,
) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await?
        .filter(|addr| policy.allows(addr.ip()))
        .collect();
    if addrs.is_empty() {
        return Err(Box::new(Blocked(host.to_owned())));
    }
    Ok(addrs)
}

/// The `Blocked` error somewhere in a reqwest error's chain.
pub fn blocked_in(error: &reqwest::Error) -> Option<&Blocked> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(blocked) = e.downcast_ref::<Blocked>() {
            return Some(blocked);
        }
        source = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        assert!(is_public("93.184.216.34".parse().unwrap()));
        assert!(is_public("2606:4700::1111".parse().unwrap()));
        let policy = AddressPolicy {
            allow_private: false,
            whitelist: vec!["127.0.0.0/8".parse().unwrap()],
        };
        assert!(policy.allows("127.0.0.5".parse().unwrap()));
        assert!(!policy.allows("10.0.0.1".parse().unwrap()));
        assert!(!policy.allows(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)));
    }
}
