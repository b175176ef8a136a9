//! `[media]`: the content repository's storage, limits, the legacy-endpoint freeze and URL
//! previews.

use std::path::PathBuf;

use ipnet::IpNet;
use serde::Deserialize;

use super::{ConfigError, Secret};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MediaStorage {
    #[default]
    Filesystem,
    S3,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaConfig {
    #[serde(default)]
    pub storage: MediaStorage,
    /// Directory of the filesystem store; default `<data_dir>/media`.
    #[serde(default)]
    pub path: Option<PathBuf>,
    #[serde(default)]
    pub s3: Option<S3Config>,
    #[serde(default = "default_max_upload_size")]
    pub max_upload_size: u64,
    #[serde(default = "default_max_image_pixels")]
    pub max_image_pixels: u64,
    #[serde(default = "default_max_pending_uploads")]
    pub max_pending_uploads: u32,
    #[serde(default = "default_unused_expiry_secs")]
    pub unused_expiry_secs: u64,
    #[serde(default = "default_max_download_wait_ms")]
    pub max_download_wait_ms: u64,
    #[serde(default)]
    pub unauthenticated_media_cutoff_ms: u64,
    #[serde(default)]
    pub url_preview_enabled: bool,
    #[serde(default)]
    pub url_preview_allow_private: bool,
    #[serde(default)]
    pub url_preview_ip_range_whitelist: Vec<IpNet>,
    #[serde(default = "default_url_preview_max_bytes")]
    pub url_preview_max_bytes: u64,
    #[serde(default = "default_url_preview_timeout_secs")]
    pub url_preview_timeout_secs: u64,
    #[serde(default = "default_url_preview_cache_secs")]
    pub url_preview_cache_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    #[serde(default = "default_region")]
    pub region: String,
    /// Empty: AWS itself; otherwise the URL of an S3-compatible service (MinIO, Ceph, ...).
    #[serde(default)]
    pub endpoint: String,
    #[serde(default)]
    pub access_key_id: Secret,
    #[serde(default)]
    pub secret_access_key: Secret,
    #[serde(default)]
    pub allow_http: bool,
    /// Key prefix inside the bucket, so that several servers can share one.
    #[serde(default)]
    pub prefix: String,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            storage: MediaStorage::default(),
            path: None,
            s3: None,
            max_upload_size: default_max_upload_size(),
            max_image_pixels: default_max_image_pixels(),
            max_pending_uploads: default_max_pending_uploads(),
            unused_expiry_secs: default_unused_expiry_secs(),
            max_download_wait_ms: default_max_download_wait_ms(),
            unauthenticated_media_cutoff_ms: 0,
            url_preview_enabled: false,
            url_preview_allow_private: false,
            url_preview_ip_range_whitelist: Vec::new(),
            url_preview_max_bytes: default_url_preview_max_bytes(),
            url_preview_timeout_secs: default_url_preview_timeout_secs(),
            url_preview_cache_secs: default_url_preview_cache_secs(),
        }
    }
}

/// Synapse's default `max_upload_size` (50M).
fn default_max_upload_size() -> u64 {
    50 * 1024 * 1024
}
/// Synapse's `max_image_pixels`: larger images are not decoded for thumbnails.
fn default_max_image_pixels() -> u64 {
    32_000_000
}
/// Synapse's `max_pending_media_uploads`.
fn default_max_pending_uploads() -> u32 {
    5
}
/// The spec's recommended 24 hours for unused `/create` IDs.
fn default_unused_expiry_secs() -> u64 {
    86_400
}
/// The cap on a download's `timeout_ms` (the spec's default wait is 20 s).
fn default_max_download_wait_ms() -> u64 {
    60_000
}
/// Synapse's `max_spider_size`.
fn default_url_preview_max_bytes() -> u64 {
    10 * 1024 * 1024
}
fn default_url_preview_timeout_secs() -> u64 {
    10
}
fn default_url_preview_cache_secs() -> u64 {
    3600
}
fn default_region() -> String {
    "us-east-1".to_owned()
}

impl MediaConfig {
    pub(super) fn resolve_secrets(&mut self) -> Result<(), ConfigError> {
        if let Some(s3) = &mut self.s3 {
            s3.access_key_id.resolve("media.s3.access_key_id")?;
            s3.secret_access_key.resolve("media.s3.secret_access_key")?;
        }
        Ok(())
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.storage == MediaStorage::S3 {
            let Some(s3) = &self.s3 else {
                return Err(ConfigError::new(
                    "media.s3",
                    "storage \"s3\" needs a [media.s3] table with at least `bucket`",
                ));
            };
            if s3.bucket.is_empty() {
                return Err(ConfigError::new("media.s3.bucket", "must not be empty"));
            }
            if !(s3.endpoint.is_empty()
                || s3.endpoint.starts_with("http://")
                || s3.endpoint.starts_with("https://"))
            {
                return Err(ConfigError::new(
                    "media.s3.endpoint",
                    "must be empty (AWS) or start with http:// or https://",
                ));
            }
        }
        if self.max_upload_size == 0 {
            return Err(ConfigError::new(
                "media.max_upload_size",
                "must be at least 1",
            ));
        }
        if self.max_image_pixels == 0 {
            return Err(ConfigError::new(
                "media.max_image_pixels",
                "must be at least 1",
            ));
        }
        if self.unused_expiry_secs == 0 {
            return Err(ConfigError::new(
                "media.unused_expiry_secs",
                "must be at least 1",
            ));
        }
        if !(1..=600).contains(&self.url_preview_timeout_secs) {
            return Err(ConfigError::new(
                "media.url_preview_timeout_secs",
                "must be between 1 and 600",
            ));
        }
        if self.url_preview_max_bytes < 1024 {
            return Err(ConfigError::new(
                "media.url_preview_max_bytes",
                "must be at least 1024",
            ));
        }
        Ok(())
    }
}
