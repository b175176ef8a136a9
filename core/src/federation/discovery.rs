//! Server discovery (spec: Server-Server API, "Resolving server names"): from a server name to
//! the host and port to connect to, the name its TLS certificate must carry, and the `Host`
//! header. Results are cached: for a `.well-known` answer as long as it says (at most 48 hours),
//! otherwise an hour.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

use hickory_resolver::TokioResolver;
use reqwest::header;
use ruma::{OwnedServerName, ServerName};
use serde::Deserialize;

use super::FederationError;
use crate::{config::FederationConfig, outbound_address::AddressPolicy};

/// The port of a server name that names none.
const DEFAULT_PORT: u16 = 8448;
/// How long a discovery result without `.well-known` caching headers is kept.
const DEFAULT_CACHE: Duration = Duration::from_secs(60 * 60);
/// The spec's recommended upper bound on caching a `.well-known` response.
const MAX_WELL_KNOWN_CACHE: Duration = Duration::from_secs(48 * 60 * 60);
/// `.well-known/matrix/server` bodies are tiny; anything bigger is not one.
const MAX_WELL_KNOWN_BYTES: usize = 64 * 1024;
const WELL_KNOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Where to send requests for a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The host of the request URL: the name the TLS certificate must be valid for (or an IP).
    pub tls_name: String,
    pub port: u16,
    /// The `Host` header the spec prescribes for this route.
    pub host_header: String,
    /// Addresses decided by discovery (an SRV target's, an override's); `None` to resolve
    /// `tls_name` itself.
    pub addresses: Option<Vec<IpAddr>>,
}

impl Destination {
    pub fn base_url(&self) -> String {
        match self.tls_name.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => format!("https://[{ip}]:{}", self.port),
            _ => format!("https://{}:{}", self.tls_name, self.port),
        }
    }
}

pub struct Discovery {
    config: FederationConfig,
    /// For `.well-known` lookups: the same TLS roots and address checks as federation requests.
    http: reqwest::Client,
    dns: Option<TokioResolver>,
    cache: Mutex<HashMap<OwnedServerName, (Destination, Instant)>>,
}

#[derive(Deserialize)]
struct WellKnown {
    #[serde(rename = "m.server")]
    server: String,
}

/// A host and optional port, split from a server name or a delegated name.
fn split_host_port(name: &str) -> (String, Option<u16>) {
    if let Some(rest) = name.strip_prefix('[')
        && let Some((host, port)) = rest.split_once(']')
    {
        let port = port.strip_prefix(':').and_then(|p| p.parse().ok());
        return (host.to_owned(), port);
    }
    match name.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host.to_owned(), port.parse().ok()),
        _ => (name.to_owned(), None),
    }
}

impl Discovery {
    pub fn new(config: FederationConfig, http: reqwest::Client) -> Self {
        let dns = match TokioResolver::builder_tokio() {
            Ok(builder) => Some(builder.build()),
            Err(e) => {
                tracing::warn!(error = %e, "no system DNS configuration: SRV records are not used");
                None
            }
        };
        Self {
            config,
            http,
            dns,
            cache: Mutex::default(),
        }
    }

    pub async fn resolve(
        &self,
        server: &ServerName,
        policy: &AddressPolicy,
    ) -> Result<Destination, FederationError> {
        if let Some((target_host, port)) = self.config.resolve_override(server) {
            let (host, _) = split_host_port(server.as_str());
            let addresses = match target_host.parse::<IpAddr>() {
                Ok(ip) => vec![ip],
                // Override targets are the admin's word: not filtered by the address policy.
                Err(_) => lookup_any(&target_host).await.map_err(|reason| {
                    FederationError::Unreachable {
                        server: server.to_owned(),
                        reason,
                    }
                })?,
            };
            return Ok(Destination {
                tls_name: host,
                port,
                host_header: server.to_string(),
                addresses: Some(addresses),
            });
        }
        if let Some(cached) = self.cached(server) {
            return Ok(cached);
        }
        let (destination, lifetime) = self.discover(server, policy).await?;
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(
            server.to_owned(),
            (destination.clone(), Instant::now() + lifetime),
        );
        Ok(destination)
    }

    fn cached(&self, server: &ServerName) -> Option<Destination> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let (destination, expires) = cache.get(server)?;
        (*expires > Instant::now()).then(|| destination.clone())
    }

    async fn discover(
        &self,
        server: &ServerName,
        policy: &AddressPolicy,
    ) -> Result<(Destination, Duration), FederationError> {
        let (host, port) = split_host_port(server.as_str());
        // Steps 1 and 2: an IP literal, or an explicit port.
        if host.parse::<IpAddr>().is_ok() || port.is_some() {
            return Ok((
                Destination {
                    tls_name: host,
                    port: port.unwrap_or(DEFAULT_PORT),
                    host_header: server.to_string(),
                    addresses: None,
                },
                DEFAULT_CACHE,
            ));
        }
        // Step 3: delegation through `.well-known`.
        if let Some((delegated, lifetime)) = self.well_known(&host).await {
            let (delegated_host, delegated_port) = split_host_port(&delegated);
            if delegated_host.parse::<IpAddr>().is_ok() || delegated_port.is_some() {
                return Ok((
                    Destination {
                        tls_name: delegated_host,
                        port: delegated_port.unwrap_or(DEFAULT_PORT),
                        host_header: delegated,
                        addresses: None,
                    },
                    lifetime,
                ));
            }
            let destination = self.srv_or_default(&delegated_host, server, policy).await?;
            return Ok((destination, lifetime));
        }
        // Steps 4 to 6: SRV records of the server name itself, then port 8448.
        Ok((
            self.srv_or_default(&host, server, policy).await?,
            DEFAULT_CACHE,
        ))
    }

    /// `_matrix-fed._tcp.<host>`, then the deprecated `_matrix._tcp.<host>`, then `<host>:8448`.
    /// The certificate is checked against `host` in every case.
    async fn srv_or_default(
        &self,
        host: &str,
        server: &ServerName,
        policy: &AddressPolicy,
    ) -> Result<Destination, FederationError> {
        for service in ["_matrix-fed._tcp", "_matrix._tcp"] {
            if let Some((target, port)) = self.srv(&format!("{service}.{host}.")).await {
                let addresses = crate::outbound_address::lookup(policy, &target)
                    .await
                    .map_err(|e| FederationError::Unreachable {
                        server: server.to_owned(),
                        reason: format!("SRV target {target}: {e}"),
                    })?;
                return Ok(Destination {
                    tls_name: host.to_owned(),
                    port,
                    host_header: host.to_owned(),
                    addresses: Some(addresses.into_iter().map(|a| a.ip()).collect()),
                });
            }
        }
        Ok(Destination {
            tls_name: host.to_owned(),
            port: DEFAULT_PORT,
            host_header: host.to_owned(),
            addresses: None,
        })
    }

    /// The best SRV record (lowest priority, then highest weight) as (target, port).
    async fn srv(&self, name: &str) -> Option<(String, u16)> {
        let dns = self.dns.as_ref()?;
        let lookup = dns.srv_lookup(name).await.ok()?;
        let best = lookup
            .iter()
            .min_by_key(|srv| (srv.priority(), std::cmp::Reverse(srv.weight())))?;
        let target = best.target().to_utf8();
        let target = target.trim_end_matches('.').to_owned();
        // "." as the target means the service is decidedly not available there.
        (!target.is_empty()).then_some((target, best.port()))
    }

    /// The delegated server name from `https://<host>/.well-known/matrix/server`, and how long
    /// to keep it; `None` when there is no valid one.
    async fn well_known(&self, host: &str) -> Option<(String, Duration)> {
        let url = format!("https://{host}/.well-known/matrix/server");
        let response = self
            .http
            .get(&url)
            .timeout(WELL_KNOWN_TIMEOUT)
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        let lifetime = cache_lifetime(response.headers());
        if response
            .content_length()
            .is_some_and(|len| len > MAX_WELL_KNOWN_BYTES as u64)
        {
            return None;
        }
        let body = response.bytes().await.ok()?;
        if body.len() > MAX_WELL_KNOWN_BYTES {
            return None;
        }
        let well_known: WellKnown = serde_json::from_slice(&body).ok()?;
        ServerName::parse(&well_known.server).ok()?;
        Some((well_known.server, lifetime))
    }
}

/// `Cache-Control: max-age` of a `.well-known` response, capped; an hour without one.
fn cache_lifetime(headers: &header::HeaderMap) -> Duration {
    let max_age = headers
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .find_map(|d| d.trim().strip_prefix("max-age=")?.parse::<u64>().ok())
        });
    max_age.map_or(DEFAULT_CACHE, |secs| {
        Duration::from_secs(secs).min(MAX_WELL_KNOWN_CACHE)
    })
}

/// Every address of `host`, unfiltered (for override targets).
async fn lookup_any(host: &str) -> Result<Vec<IpAddr>, String> {
    let addrs: Vec<IpAddr> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .map(|a| a.ip())
        .collect();
    if addrs.is_empty() {
        return Err(format!("{host} has no addresses"));
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> AddressPolicy {
        AddressPolicy {
            allow_private: true,
            whitelist: Vec::new(),
        }
    }

    fn discovery(overrides: &[(&str, &str)]) -> Discovery {
        let mut config = FederationConfig::default();
        for (server, target) in overrides {
            config
                .resolve_overrides
                .insert(ServerName::parse(*server).unwrap(), (*target).to_owned());
        }
        Discovery::new(config, reqwest::Client::new())
    }

    #[test]
    fn host_and_port_split() {
        assert_eq!(
            split_host_port("example.org:8448"),
            ("example.org".to_owned(), Some(8448))
        );
        assert_eq!(
            split_host_port("example.org"),
            ("example.org".to_owned(), None)
        );
        assert_eq!(split_host_port("[::1]:80"), ("::1".to_owned(), Some(80)));
        assert_eq!(split_host_port("[::1]"), ("::1".to_owned(), None));
        assert_eq!(split_host_port("1.2.3.4"), ("1.2.3.4".to_owned(), None));
    }

    #[tokio::test]
    async fn ip_literals_and_explicit_ports_skip_delegation() {
        let discovery = discovery(&[]);
        let ip = discovery
            .resolve(ServerName::parse("1.2.3.4").unwrap().as_ref(), &policy())
            .await
            .unwrap();
        assert_eq!((ip.tls_name.as_str(), ip.port), ("1.2.3.4", 8448));
        assert_eq!(ip.base_url(), "https://1.2.3.4:8448");
        let v6 = discovery
            .resolve(ServerName::parse("[::1]:9000").unwrap().as_ref(), &policy())
            .await
            .unwrap();
        assert_eq!(v6.base_url(), "https://[::1]:9000");
        assert_eq!(v6.host_header, "[::1]:9000");
        let named = discovery
            .resolve(
                ServerName::parse("example.org:8000").unwrap().as_ref(),
                &policy(),
            )
            .await
            .unwrap();
        assert_eq!(named.tls_name, "example.org");
        assert_eq!(named.host_header, "example.org:8000");
        assert_eq!(named.addresses, None);
    }

    #[tokio::test]
    async fn overrides_win() {
        let discovery = discovery(&[("hs.example", "127.0.0.1:4443")]);
        let destination = discovery
            .resolve(ServerName::parse("hs.example").unwrap().as_ref(), &policy())
            .await
            .unwrap();
        assert_eq!(destination.tls_name, "hs.example");
        assert_eq!(destination.port, 4443);
        assert_eq!(destination.host_header, "hs.example");
        assert_eq!(
            destination.addresses,
            Some(vec!["127.0.0.1".parse::<IpAddr>().unwrap()])
        );
    }

    #[test]
    fn well_known_cache_lifetime() {
        let mut headers = header::HeaderMap::new();
        assert_eq!(cache_lifetime(&headers), DEFAULT_CACHE);
        headers.insert(
            header::CACHE_CONTROL,
            "public, max-age=600".parse().unwrap(),
        );
        assert_eq!(cache_lifetime(&headers), Duration::from_secs(600));
        headers.insert(header::CACHE_CONTROL, "max-age=99999999".parse().unwrap());
        assert_eq!(cache_lifetime(&headers), MAX_WELL_KNOWN_CACHE);
    }
}
