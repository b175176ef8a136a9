//! Typed configuration: one TOML file, every key documented in `config.example.toml`.
//!
//! Loading never half-succeeds: any unknown key, wrong type or invalid value is reported as a
//! [`ConfigError`] naming the key path and, where known, the line.

mod federation;
mod im;
mod media;
mod secret;

use std::{
    fmt,
    net::IpAddr,
    path::{Path, PathBuf},
};

use ruma::{OwnedServerName, RoomVersionId};
use serde::Deserialize;

pub use federation::FederationConfig;
pub use im::ImConfig;
pub use media::{MediaConfig, MediaStorage, S3Config};
pub use secret::Secret;

/// The text `tessera generate-config` writes: the documented example, so the two never drift.
pub const EXAMPLE: &str = include_str!("../../config.example.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server_name: OwnedServerName,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub public_baseurl: Option<String>,
    #[serde(default)]
    pub well_known_server: Option<String>,
    #[serde(default)]
    pub trusted_proxies: Vec<IpAddr>,
    #[serde(default = "default_listeners")]
    pub listeners: Vec<ListenerConfig>,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub registration: RegistrationConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub rate_limits: RateLimitsConfig,
    #[serde(default)]
    pub logging: LoggingConfig,
    #[serde(default)]
    pub rooms: RoomsConfig,
    #[serde(default)]
    pub presence: PresenceConfig,
    #[serde(default)]
    pub sync: SyncConfig,
    #[serde(default)]
    pub media: MediaConfig,
    #[serde(default)]
    pub federation: FederationConfig,
    #[serde(default)]
    pub im: ImConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomsConfig {
    /// The version of rooms created without `room_version`: 10, 11 or 12.
    #[serde(default = "default_room_version")]
    pub default_room_version: RoomVersionId,
}

impl Default for RoomsConfig {
    fn default() -> Self {
        Self {
            default_room_version: default_room_version(),
        }
    }
}

/// The spec's recommended default (v1.16+).
fn default_room_version() -> RoomVersionId {
    RoomVersionId::V12
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
    #[serde(default = "default_offline_timeout_secs")]
    pub offline_timeout_secs: u64,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            idle_timeout_secs: default_idle_timeout_secs(),
            offline_timeout_secs: default_offline_timeout_secs(),
        }
    }
}

/// Synapse's idle timer: five minutes without activity and an online user is unavailable.
fn default_idle_timeout_secs() -> u64 {
    300
}

/// Synapse's sync timeout: a user with no sync for this long is offline.
fn default_offline_timeout_secs() -> u64 {
    30
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// Seconds between the server's pings on a sync WebSocket; a connection silent for two
    /// intervals is closed.
    #[serde(default = "default_websocket_ping_secs")]
    pub websocket_ping_secs: u64,
    /// Frames queued for a sync WebSocket before it is closed as a slow consumer.
    #[serde(default = "default_websocket_send_buffer")]
    pub websocket_send_buffer: usize,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            websocket_ping_secs: default_websocket_ping_secs(),
            websocket_send_buffer: default_websocket_send_buffer(),
        }
    }
}

/// Often enough to keep NATs and proxies (commonly 60 s idle timeouts) from dropping the
/// connection, rarely enough that idle clients (a ping and a token check each) cost little.
fn default_websocket_ping_secs() -> u64 {
    30
}

/// Room for a burst of acks and sync frames while the client reads at its own pace.
fn default_websocket_send_buffer() -> usize {
    64
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    pub bind: IpAddr,
    pub port: u16,
    pub apis: Vec<Api>,
    #[serde(default)]
    pub tls_certificate: Option<PathBuf>,
    #[serde(default)]
    pub tls_private_key: Option<PathBuf>,
}

impl ListenerConfig {
    pub fn serves(&self, api: Api) -> bool {
        self.apis.contains(&api)
    }

    pub fn tls(&self) -> Option<(&Path, &Path)> {
        Some((
            self.tls_certificate.as_deref()?,
            self.tls_private_key.as_deref()?,
        ))
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls().is_some() {
            "https"
        } else {
            "http"
        };
        match self.bind {
            IpAddr::V6(ip) => format!("{scheme}://[{ip}]:{}", self.port),
            IpAddr::V4(ip) => format!("{scheme}://{ip}:{}", self.port),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    Client,
    Federation,
    Metrics,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    #[serde(default)]
    pub url: Secret,
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: Secret::default(),
            max_connections: default_max_connections(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationMode {
    #[default]
    Disabled,
    Open,
    Token,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationConfig {
    #[serde(default)]
    pub mode: RegistrationMode,
    #[serde(default)]
    pub tokens: Vec<Secret>,
    #[serde(default)]
    pub shared_secret: Secret,
    #[serde(default = "yes")]
    pub refresh_tokens: bool,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        Self {
            mode: RegistrationMode::default(),
            tokens: Vec::new(),
            shared_secret: Secret::default(),
            refresh_tokens: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default = "default_access_token_lifetime_ms")]
    pub access_token_lifetime_ms: u64,
    #[serde(default = "default_reserved_localparts")]
    pub reserved_localparts: Vec<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            access_token_lifetime_ms: default_access_token_lifetime_ms(),
            reserved_localparts: default_reserved_localparts(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    #[serde(default = "default_max_request_body_bytes")]
    pub max_request_body_bytes: usize,
    #[serde(default = "default_max_event_bytes")]
    pub max_event_bytes: usize,
    #[serde(default = "default_max_page_size")]
    pub max_page_size: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_request_body_bytes: default_max_request_body_bytes(),
            max_event_bytes: default_max_event_bytes(),
            max_page_size: default_max_page_size(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_login_rate")]
    pub login: RateLimit,
    #[serde(default = "default_register_rate")]
    pub register: RateLimit,
    #[serde(default = "default_login_failures_rate")]
    pub login_failures: RateLimit,
    #[serde(default = "default_message_rate")]
    pub message: RateLimit,
    #[serde(default = "default_media_create_rate")]
    pub media_create: RateLimit,
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            login: default_login_rate(),
            register: default_register_rate(),
            login_failures: default_login_failures_rate(),
            message: default_message_rate(),
            media_create: default_media_create_rate(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    #[serde(default = "default_log_level")]
    pub level: String,
    #[serde(default)]
    pub format: LogFormat,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            level: default_log_level(),
            format: LogFormat::default(),
        }
    }
}

/// The slowest refill accepted: one token a day. Slower rates are almost surely typos, and
/// waits computed from them would overflow.
const MIN_RATE_PER_SECOND: f64 = 1.0 / 86_400.0;
/// The longest presence timeout accepted; longer ones are typos, and a year keeps every deadline
/// far from overflowing.
const MAX_PRESENCE_TIMEOUT_SECS: u64 = 365 * 86_400;

/// Pings further apart than an hour would let dead connections pile up unnoticed.
const MAX_WEBSOCKET_PING_SECS: u64 = 3600;
/// Each queued frame may hold a whole sync response: a bound on the memory one slow client pins.
const MAX_WEBSOCKET_SEND_BUFFER: usize = 65_536;

fn yes() -> bool {
    true
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}
fn default_listeners() -> Vec<ListenerConfig> {
    vec![ListenerConfig {
        bind: IpAddr::from([127, 0, 0, 1]),
        port: 8008,
        apis: vec![Api::Client, Api::Federation, Api::Metrics],
        tls_certificate: None,
        tls_private_key: None,
    }]
}
fn default_max_connections() -> u32 {
    16
}
fn default_access_token_lifetime_ms() -> u64 {
    300_000
}
fn default_reserved_localparts() -> Vec<String> {
    [
        "admin",
        "root",
        "administrator",
        "matrix",
        "support",
        "system",
    ]
    .map(String::from)
    .to_vec()
}
fn default_max_request_body_bytes() -> usize {
    1024 * 1024
}
fn default_max_event_bytes() -> usize {
    65536
}
fn default_max_page_size() -> u32 {
    1000
}
fn default_login_rate() -> RateLimit {
    RateLimit {
        per_second: 0.5,
        burst: 10,
    }
}
fn default_register_rate() -> RateLimit {
    RateLimit {
        per_second: 0.2,
        burst: 5,
    }
}
fn default_login_failures_rate() -> RateLimit {
    RateLimit {
        per_second: 0.17,
        burst: 3,
    }
}
fn default_message_rate() -> RateLimit {
    RateLimit {
        per_second: 10.0,
        burst: 50,
    }
}
/// Synapse's `rc_media_create`.
fn default_media_create_rate() -> RateLimit {
    RateLimit {
        per_second: 10.0,
        burst: 50,
    }
}
fn default_log_level() -> String {
    "info".to_owned()
}

/// A configuration problem, naming the key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub line: Option<usize>,
    pub message: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            line: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = if self.key.is_empty() {
            "(top level)"
        } else {
            &self.key
        };
        match self.line {
            Some(line) => write!(f, "config key `{key}` (line {line}): {}", self.message),
            None => write!(f, "config key `{key}`: {}", self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads, parses, resolves secrets in and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(
                "",
                format!("cannot read config file {}: {e}", path.display()),
            )
        })?;
        Self::parse(&text)
    }

    /// The configuration used when no file is given: SQLite in `./data`, open on localhost.
    pub fn embedded_default() -> Self {
        Self::parse("server_name = \"localhost\"").expect("the embedded default config is valid")
    }

    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let deserializer = toml::de::Deserializer::parse(text).map_err(|e| ConfigError {
            key: String::new(),
            line: e.span().map(|s| line_of(s.start)),
            message: e.message().to_owned(),
        })?;
        let mut config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            ConfigError {
                key: if path == "." { String::new() } else { path },
                line: inner.span().map(|s| line_of(s.start)),
                message: inner.message().to_owned(),
            }
        })?;
        config.resolve_secrets()?;
        config.validate()?;
        Ok(config)
    }

    fn resolve_secrets(&mut self) -> Result<(), ConfigError> {
        self.database.url.resolve("database.url")?;
        self.registration
            .shared_secret
            .resolve("registration.shared_secret")?;
        for (i, token) in self.registration.tokens.iter_mut().enumerate() {
            token.resolve(&format!("registration.tokens[{i}]"))?;
        }
        self.media.resolve_secrets()?;
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !crate::rooms::CREATABLE_VERSIONS.contains(&self.rooms.default_room_version) {
            return Err(ConfigError::new(
                "rooms.default_room_version",
                "must be \"10\", \"11\" or \"12\"",
            ));
        }
        if self.listeners.is_empty() {
            return Err(ConfigError::new(
                "listeners",
                "at least one listener is required",
            ));
        }
        for (i, listener) in self.listeners.iter().enumerate() {
            let key = |k: &str| format!("listeners[{i}].{k}");
            if listener.port == 0 {
                return Err(ConfigError::new(key("port"), "must be between 1 and 65535"));
            }
            if listener.apis.is_empty() {
                return Err(ConfigError::new(key("apis"), "must name at least one API"));
            }
            if listener.tls_certificate.is_some() != listener.tls_private_key.is_some() {
                return Err(ConfigError::new(
                    key("tls_certificate"),
                    "tls_certificate and tls_private_key must be given together",
                ));
            }
        }
        if let Some(url) = &self.public_baseurl
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::new(
                "public_baseurl",
                "must start with http:// or https://",
            ));
        }
        if let Some(server) = &self.well_known_server
            && <&ruma::ServerName>::try_from(server.as_str()).is_err()
        {
            return Err(ConfigError::new(
                "well_known_server",
                "must be a host with optional port",
            ));
        }
        let db_url = self.database.url.value();
        if !(db_url.is_empty()
            || db_url.starts_with("postgres://")
            || db_url.starts_with("postgresql://")
            || db_url.starts_with("sqlite:"))
        {
            return Err(ConfigError::new(
                "database.url",
                "must be empty (SQLite in data_dir), sqlite:PATH or postgres://...",
            ));
        }
        if self.database.max_connections == 0 {
            return Err(ConfigError::new(
                "database.max_connections",
                "must be at least 1",
            ));
        }
        if self.registration.mode == RegistrationMode::Token && self.registration.tokens.is_empty()
        {
            return Err(ConfigError::new(
                "registration.tokens",
                "registration mode \"token\" needs at least one token",
            ));
        }
        if self.limits.max_request_body_bytes < 1024 {
            return Err(ConfigError::new(
                "limits.max_request_body_bytes",
                "must be at least 1024",
            ));
        }
        if self.limits.max_page_size == 0 {
            return Err(ConfigError::new(
                "limits.max_page_size",
                "must be at least 1",
            ));
        }
        for (name, limit) in [
            ("login", self.rate_limits.login),
            ("register", self.rate_limits.register),
            ("login_failures", self.rate_limits.login_failures),
            ("message", self.rate_limits.message),
            ("media_create", self.rate_limits.media_create),
        ] {
            if !(limit.per_second.is_finite() && limit.per_second >= MIN_RATE_PER_SECOND) {
                return Err(ConfigError::new(
                    format!("rate_limits.{name}.per_second"),
                    "must be at least 1/86400 (one per day)",
                ));
            }
            if limit.burst == 0 {
                return Err(ConfigError::new(
                    format!("rate_limits.{name}.burst"),
                    "must be at least 1",
                ));
            }
        }
        for (name, secs) in [
            ("idle_timeout_secs", self.presence.idle_timeout_secs),
            ("offline_timeout_secs", self.presence.offline_timeout_secs),
        ] {
            if !(1..=MAX_PRESENCE_TIMEOUT_SECS).contains(&secs) {
                return Err(ConfigError::new(
                    format!("presence.{name}"),
                    "must be between 1 and 31536000 (a year)",
                ));
            }
        }
        if !(1..=MAX_WEBSOCKET_PING_SECS).contains(&self.sync.websocket_ping_secs) {
            return Err(ConfigError::new(
                "sync.websocket_ping_secs",
                "must be between 1 and 3600",
            ));
        }
        if !(1..=MAX_WEBSOCKET_SEND_BUFFER).contains(&self.sync.websocket_send_buffer) {
            return Err(ConfigError::new(
                "sync.websocket_send_buffer",
                "must be between 1 and 65536",
            ));
        }
        self.media.validate()?;
        self.federation.validate()?;
        if !valid_log_level(&self.logging.level) {
            return Err(ConfigError::new(
                "logging.level",
                "must be trace, debug, info, warn, error or a filter like \"info,tessera=debug\"",
            ));
        }
        Ok(())
    }

    /// The base URL clients are told to use.
    pub fn client_base_url(&self) -> String {
        if let Some(url) = &self.public_baseurl {
            return url.trim_end_matches('/').to_owned();
        }
        // A wildcard bind address is no address a client can reach: fall back to the server
        // name, as Synapse does.
        self.listeners
            .iter()
            .find(|l| l.serves(Api::Client) && !l.bind.is_unspecified())
            .map(ListenerConfig::url)
            .unwrap_or_else(|| format!("https://{}", self.server_name))
    }

    /// The database URL, with the embedded SQLite default filled in.
    pub fn database_url(&self) -> String {
        let url = self.database.url.value();
        if url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("tessera.db").display())
        } else {
            url.to_owned()
        }
    }

    pub fn signing_key_path(&self) -> PathBuf {
        self.data_dir.join("signing.key")
    }

    /// Where the filesystem media store keeps its files.
    pub fn media_path(&self) -> PathBuf {
        self.media
            .path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("media"))
    }
}

fn valid_log_level(level: &str) -> bool {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    level.split(',').all(|directive| {
        let level = directive.rsplit('=').next().unwrap_or_default().trim();
        let target_ok = directive.split('=').count() <= 2;
        target_ok && LEVELS.contains(&level.to_ascii_lowercase().as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_parses_to_the_defaults() {
        let config = Config::parse(EXAMPLE).unwrap();
        assert_eq!(config.server_name.as_str(), "localhost");
        assert_eq!(config.listeners[0].port, 8008);
        assert_eq!(config.registration.mode, RegistrationMode::Disabled);
        assert_eq!(config.limits.max_event_bytes, 65536);
        assert_eq!(config.rate_limits.login, default_login_rate());
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err = Config::parse("server_name = \"a.org\"\n[limits]\nmax_bodyy = 3\n").unwrap_err();
        assert_eq!(err.line, Some(3));
        assert!(err.message.contains("max_bodyy"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_key_path() {
        let err = Config::parse(
            "server_name = \"a.org\"\n[[listeners]]\nbind = \"127.0.0.1\"\nport = 70000\napis = [\"client\"]\n",
        )
        .unwrap_err();
        assert_eq!(err.key, "listeners[0].port");
        assert_eq!(err.line, Some(4));
    }

    #[test]
    fn invalid_server_name_is_refused() {
        let err = Config::parse("server_name = \"bad name!\"").unwrap_err();
        assert_eq!(err.key, "server_name");
    }

    #[test]
    fn token_mode_needs_tokens() {
        let err = Config::parse("server_name = \"a.org\"\n[registration]\nmode = \"token\"\n")
            .unwrap_err();
        assert_eq!(err.key, "registration.tokens");
    }

    #[test]
    fn every_rate_limit_is_validated() {
        let err = Config::parse(
            "server_name = \"a.org\"\n[rate_limits]\nlogin_failures = { per_second = 0.0, burst = 3 }\n",
        )
        .unwrap_err();
        assert_eq!(err.key, "rate_limits.login_failures.per_second");
    }

    #[test]
    fn client_base_url_never_advertises_a_wildcard_address() {
        let local = Config::parse("server_name = \"a.org\"").unwrap();
        assert_eq!(local.client_base_url(), "http://127.0.0.1:8008");
        let wildcard = Config::parse(
            "server_name = \"a.org\"\n[[listeners]]\nbind = \"0.0.0.0\"\nport = 8008\napis = [\"client\"]\n",
        )
        .unwrap();
        assert_eq!(wildcard.client_base_url(), "https://a.org");
    }

    #[test]
    fn presence_timeouts_are_validated() {
        let config = Config::parse("server_name = \"a.org\"").unwrap();
        assert!(config.presence.enabled);
        assert_eq!(config.presence.idle_timeout_secs, 300);
        assert_eq!(config.presence.offline_timeout_secs, 30);
        let err = Config::parse("server_name = \"a.org\"\n[presence]\noffline_timeout_secs = 0\n")
            .unwrap_err();
        assert_eq!(err.key, "presence.offline_timeout_secs");
    }

    #[test]
    fn media_defaults_and_validation() {
        let config = Config::parse(EXAMPLE).unwrap();
        assert_eq!(config.media.max_upload_size, 50 * 1024 * 1024);
        assert_eq!(config.media.storage, MediaStorage::Filesystem);
        assert!(!config.media.url_preview_enabled);
        assert_eq!(config.media_path(), PathBuf::from("./data/media"));
        let err =
            Config::parse("server_name = \"a.org\"\n[media]\nstorage = \"s3\"\n").unwrap_err();
        assert_eq!(err.key, "media.s3");
        let err = Config::parse(
            "server_name = \"a.org\"\n[media]\nurl_preview_ip_range_whitelist = [\"nonsense\"]\n",
        )
        .unwrap_err();
        assert_eq!(err.key, "media.url_preview_ip_range_whitelist[0]");
    }

    #[test]
    fn log_levels() {
        assert!(valid_log_level("info"));
        assert!(valid_log_level("info,tessera_core=debug"));
        assert!(!valid_log_level("loud"));
    }
}
