//! `[federation]`: how this server reaches others (name resolution overrides, which addresses
//! it may connect to, extra CAs) and whom it trusts for other servers' keys.

use std::{collections::BTreeMap, path::PathBuf};

use ipnet::IpNet;
use ruma::OwnedServerName;
use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationConfig {
    /// Server name -> `host:port` to connect to, bypassing discovery (like curl's `--resolve`).
    /// The TLS certificate must still be valid for the server name's host.
    #[serde(default)]
    pub resolve_overrides: BTreeMap<OwnedServerName, String>,
    /// Connect to loopback, private and other non-public addresses. Off by default, so a
    /// server name cannot point this server at its own network.
    #[serde(default)]
    pub allow_private_addresses: bool,
    /// Non-public ranges that may be reached even so.
    #[serde(default)]
    pub ip_range_whitelist: Vec<IpNet>,
    /// PEM files of CAs trusted beside the system's roots for federation TLS.
    #[serde(default)]
    pub extra_ca_files: Vec<PathBuf>,
    /// Notary servers asked for another server's keys when it cannot be reached directly.
    #[serde(default)]
    pub trusted_key_servers: Vec<OwnedServerName>,
    /// Time limit of one outbound federation request.
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: u64,
}

impl Default for FederationConfig {
    fn default() -> Self {
        Self {
            resolve_overrides: BTreeMap::new(),
            allow_private_addresses: false,
            ip_range_whitelist: Vec::new(),
            extra_ca_files: Vec::new(),
            trusted_key_servers: Vec::new(),
            request_timeout_secs: default_request_timeout_secs(),
        }
    }
}

/// Synapse waits up to 60 s per federation request; interactive lookups should fail sooner.
fn default_request_timeout_secs() -> u64 {
    30
}

/// Longest allowed outbound request time limit.
const MAX_REQUEST_TIMEOUT_SECS: u64 = 600;

impl FederationConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (server, target) in &self.resolve_overrides {
            if parse_host_port(target).is_none() {
                return Err(ConfigError::new(
                    format!("federation.resolve_overrides.\"{server}\""),
                    format!("{target:?} is not host:port"),
                ));
            }
        }
        for (i, path) in self.extra_ca_files.iter().enumerate() {
            if !path.is_file() {
                return Err(ConfigError::new(
                    format!("federation.extra_ca_files[{i}]"),
                    format!("{} is not a readable file", path.display()),
                ));
            }
        }
        if !(1..=MAX_REQUEST_TIMEOUT_SECS).contains(&self.request_timeout_secs) {
            return Err(ConfigError::new(
                "federation.request_timeout_secs",
                "must be between 1 and 600",
            ));
        }
        Ok(())
    }

    /// The `host:port` an override names for `server`.
    pub fn resolve_override(&self, server: &ruma::ServerName) -> Option<(String, u16)> {
        self.resolve_overrides
            .get(server)
            .and_then(|target| parse_host_port(target))
    }
}

/// `host:port` or `[v6]:port`, with a non-zero port.
fn parse_host_port(target: &str) -> Option<(String, u16)> {
    let (host, port) = target.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty()).then(|| (host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::parse_host_port;

    #[test]
    fn override_targets() {
        assert_eq!(
            parse_host_port("127.0.0.1:8448"),
            Some(("127.0.0.1".to_owned(), 8448))
        );
        assert_eq!(parse_host_port("[::1]:443"), Some(("::1".to_owned(), 443)));
        assert_eq!(parse_host_port("example.org"), None);
        assert_eq!(parse_host_port("example.org:0"), None);
        assert_eq!(parse_host_port(":80"), None);
    }
}
