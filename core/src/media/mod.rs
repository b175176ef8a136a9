//! The content repository (spec: "Content repository"): uploads (in one step or reserved with
//! `/create` first), streamed downloads, thumbnails, the freeze of the unauthenticated legacy
//! endpoints, and URL previews.
//!
//! Media of other servers are served from a cache here, filled over federation by
//! `Services::download_media` (see `crate::federation::media`).

mod disposition;
mod preview;
mod storage;
pub mod thumbnail;

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use futures::Stream;
use rand::{Rng, distributions::Alphanumeric};
use ruma::{MilliSecondsSinceUnixEpoch, OwnedMxcUri, ServerName, UInt, UserId};
use tokio::sync::{Notify, Semaphore};

pub use disposition::{content_disposition, is_inline_safe, served_content_type};
pub use storage::ByteStream;
pub use thumbnail::Method;

use crate::{
    Config,
    store::{MediaRow, NewMedia, Store, StoreError, ThumbnailRow},
    time::now_ms,
};
use preview::Previewer;
use storage::Storage;

/// Length of generated media IDs: 32 alphanumerics, about 190 bits, beyond guessing.
const MEDIA_ID_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// 404 `M_NOT_FOUND`.
    #[error("{0}")]
    NotFound(String),
    /// 400 `M_INVALID_PARAM`.
    #[error("{0}")]
    InvalidParam(String),
    /// 413 `M_TOO_LARGE`.
    #[error("{0}")]
    TooLarge(String),
    /// 403 `M_FORBIDDEN`.
    #[error("{0}")]
    Forbidden(String),
    /// 409 `M_CANNOT_OVERWRITE_MEDIA`.
    #[error("The media already has content")]
    CannotOverwrite,
    /// 504 `M_NOT_YET_UPLOADED`.
    #[error("The content has not been uploaded yet")]
    NotYetUploaded,
    /// 429 `M_LIMIT_EXCEEDED`.
    #[error("{0}")]
    LimitExceeded(String),
    /// 400 `M_UNKNOWN`: the spec's answer for content that cannot be thumbnailed.
    #[error("{0}")]
    CannotThumbnail(String),
    /// 404 `M_UNRECOGNIZED`: a feature switched off in the config.
    #[error("{0}")]
    Disabled(String),
    /// The client's body broke off (400 `M_UNKNOWN`).
    #[error("cannot read the request body: {0}")]
    BodyRead(String),
    /// A URL preview could not be made (502 `M_UNKNOWN`... see the edge).
    #[error("{0}")]
    PreviewFailed(String),
    /// Media of another server could not be fetched from it (502 `M_UNKNOWN`).
    #[error("{0}")]
    Remote(String),
    #[error(transparent)]
    Storage(#[from] object_store::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = MediaError> = std::result::Result<T, E>;

/// What the uploader says about the content.
#[derive(Debug, Clone, Default)]
pub struct UploadInfo {
    pub content_type: Option<String>,
    pub filename: Option<String>,
    /// The `Content-Length`, when given: refused at once if over the limit.
    pub declared_length: Option<u64>,
}

/// Content ready to be sent: its labels and a stream of its bytes.
pub struct Content {
    pub content_type: String,
    pub filename: Option<String>,
    pub length: u64,
    pub body: ByteStream,
}

/// Which endpoint family asks: the legacy unauthenticated ones serve only media from before
/// the freeze.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Authenticated,
    Legacy,
}

pub struct ThumbnailRequest {
    pub width: u32,
    pub height: u32,
    pub method: Method,
    pub animated: bool,
}

impl ThumbnailRequest {
    /// A thumbnail request as the client and federation endpoints take it.
    pub fn parse(
        width: UInt,
        height: UInt,
        method: Option<ruma::media::Method>,
        animated: Option<bool>,
    ) -> Result<Self> {
        let method = match method {
            Some(ruma::media::Method::Crop) => Method::Crop,
            // Scale when unspecified, as Synapse does.
            None | Some(ruma::media::Method::Scale) => Method::Scale,
            Some(other) => {
                return Err(MediaError::InvalidParam(format!(
                    "Unknown thumbnail method {other:?}; use crop or scale"
                )));
            }
        };
        let dimension = |value: UInt, name: &str| {
            u32::try_from(value)
                .map_err(|_| MediaError::CannotThumbnail(format!("{name} is too large")))
        };
        Ok(Self {
            width: dimension(width, "width")?,
            height: dimension(height, "height")?,
            method,
            animated: animated.unwrap_or(false),
        })
    }
}

pub struct Media {
    config: Arc<Config>,
    store: Store,
    storage: Storage,
    previewer: Previewer,
    /// Reserved IDs whose content is being uploaded right now: a second PUT for one of them is
    /// refused instead of racing the first. Per process: several processes sharing a database
    /// would need this claim in the store.
    uploading: Mutex<HashSet<String>>,
    /// Woken whenever a reserved ID gets its content, for downloads waiting on it.
    uploaded: Notify,
    /// Thumbnails generated at once: decoding a large image takes hundreds of MiB, so requests
    /// beyond one per core wait instead of multiplying that.
    thumbnailers: Semaphore,
}

impl Media {
    pub fn new(config: Arc<Config>, store: Store) -> Result<Self> {
        Ok(Self {
            storage: Storage::open(&config)?,
            previewer: Previewer::new(&config.media)?,
            config,
            store,
            uploading: Mutex::default(),
            uploaded: Notify::new(),
            thumbnailers: Semaphore::new(
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            ),
        })
    }

    pub fn max_upload_size(&self) -> UInt {
        UInt::new_saturating(self.config.media.max_upload_size)
    }

    /// Stores an upload under a new media ID (`POST /upload`).
    pub async fn upload<S, E>(
        &self,
        uploader: &UserId,
        info: UploadInfo,
        body: S,
    ) -> Result<OwnedMxcUri>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        self.check_declared_length(&info)?;
        let media_id = new_media_id();
        let size = self
            .storage
            .write(
                &content_key(&media_id),
                body,
                self.config.media.max_upload_size,
            )
            .await?;
        self.store
            .insert_media(NewMedia {
                media_id: &media_id,
                uploader: Some(uploader.as_str()),
                content_type: info.content_type.as_deref(),
                filename: info.filename.as_deref(),
                size: i64::try_from(size).unwrap_or(i64::MAX),
                now: now_ms(),
            })
            .await?;
        Ok(self.mxc(&media_id))
    }

    /// Reserves a media ID for a later upload (`POST /create`): the URI and when it lapses.
    pub async fn create(
        &self,
        uploader: &UserId,
    ) -> Result<(OwnedMxcUri, MilliSecondsSinceUnixEpoch)> {
        let media_id = new_media_id();
        let now = now_ms();
        let expiry_ms = i64::try_from(self.config.media.unused_expiry_secs.saturating_mul(1000))
            .unwrap_or(i64::MAX);
        let expires = now.saturating_add(expiry_ms);
        let reserved = self
            .store
            .create_pending_media(
                &media_id,
                uploader.as_str(),
                now,
                expires,
                self.config.media.max_pending_uploads,
            )
            .await?;
        if !reserved {
            return Err(MediaError::LimitExceeded(format!(
                "You have {} uploads pending; finish one before creating another",
                self.config.media.max_pending_uploads
            )));
        }
        let expires_at = MilliSecondsSinceUnixEpoch(UInt::new_saturating(
            u64::try_from(expires).unwrap_or_default(),
        ));
        Ok((self.mxc(&media_id), expires_at))
    }

    /// Uploads the content of a reserved media ID (`PUT /upload/{serverName}/{mediaId}`).
    pub async fn upload_reserved<S, E>(
        &self,
        uploader: &UserId,
        server_name: &ServerName,
        media_id: &str,
        info: UploadInfo,
        body: S,
    ) -> Result<()>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        let unknown =
            || MediaError::NotFound("Unknown media ID; create it with /create first".to_owned());
        if server_name != self.config.server_name || !is_valid_media_id(media_id) {
            return Err(unknown());
        }
        let row = self.store.media(media_id).await?.ok_or_else(unknown)?;
        if row.uploaded_ts.is_some() {
            return Err(MediaError::CannotOverwrite);
        }
        if row.uploader.as_deref() != Some(uploader.as_str()) {
            return Err(MediaError::Forbidden(
                "This media ID was created by another user".to_owned(),
            ));
        }
        if row.unused_expires_ts.is_some_and(|t| t <= now_ms()) {
            return Err(MediaError::NotFound("This media ID has expired".to_owned()));
        }
        self.check_declared_length(&info)?;
        let _claim = UploadClaim::take(&self.uploading, media_id)?;
        let key = content_key(media_id);
        let size = self
            .storage
            .write(&key, body, self.config.media.max_upload_size)
            .await?;
        let completed = self
            .store
            .complete_pending_media(NewMedia {
                media_id,
                uploader: Some(uploader.as_str()),
                content_type: info.content_type.as_deref(),
                filename: info.filename.as_deref(),
                size: i64::try_from(size).unwrap_or(i64::MAX),
                now: now_ms(),
            })
            .await?;
        if !completed {
            // The reservation lapsed while the body was arriving.
            self.storage.delete(&key).await?;
            return Err(MediaError::NotFound("This media ID has expired".to_owned()));
        }
        self.uploaded.notify_waiters();
        Ok(())
    }

    /// The content of `mxc://server_name/media_id`, waiting up to `timeout` for a reserved ID
    /// to be uploaded.
    pub async fn download(
        &self,
        server_name: &ServerName,
        media_id: &str,
        timeout: Duration,
        access: Access,
    ) -> Result<Content> {
        let row = self
            .uploaded_row(server_name, media_id, timeout, access)
            .await?;
        let body = self.storage.read(&content_key(&row.media_id)).await?;
        Ok(Content {
            content_type: served_content_type(row.content_type.as_deref()),
            filename: row.filename,
            length: u64::try_from(row.size.unwrap_or_default()).unwrap_or_default(),
            body,
        })
    }

    /// A thumbnail of `mxc://server_name/media_id`, generated on first request and cached.
    pub async fn thumbnail(
        &self,
        server_name: &ServerName,
        media_id: &str,
        request: ThumbnailRequest,
        timeout: Duration,
        access: Access,
    ) -> Result<Content> {
        let (width, height) =
            thumbnail::served_size(request.width, request.height, request.method)?;
        let requested_media_id = media_id;
        let row = self
            .uploaded_row(server_name, media_id, timeout, access)
            .await?;
        let content_type = served_content_type(row.content_type.as_deref());
        if !content_type.starts_with("image/") {
            return Err(MediaError::CannotThumbnail(format!(
                "Cannot make a thumbnail of {content_type} content"
            )));
        }
        let method = request.method.as_str();
        // Remote media are cached under their server's name (see `stored_id`).
        let media_id = row.media_id.as_str();
        let key = thumbnail_key(media_id, width, height, method, request.animated);
        let cached = self
            .cached_thumbnail(media_id, width, height, method, request.animated)
            .await?;
        if let Some(cached) = cached {
            return Ok(cached);
        }
        let _permit = self
            .thumbnailers
            .acquire()
            .await
            .map_err(|e| MediaError::Internal(format!("thumbnail semaphore: {e}")))?;
        // Another request may have made it while this one waited.
        let cached = self
            .cached_thumbnail(media_id, width, height, method, request.animated)
            .await?;
        if let Some(cached) = cached {
            return Ok(cached);
        }
        let source = self.storage.read_all(&content_key(media_id)).await?;
        let max_pixels = self.config.media.max_image_pixels;
        let (method_enum, animated) = (request.method, request.animated);
        let outcome = tokio::task::spawn_blocking(move || {
            thumbnail::generate(&source, width, height, method_enum, animated, max_pixels)
        })
        .await
        .map_err(|e| MediaError::Internal(format!("thumbnailing panicked: {e}")))??;
        match outcome {
            thumbnail::Outcome::Original => {
                self.download(server_name, requested_media_id, Duration::ZERO, access)
                    .await
            }
            thumbnail::Outcome::Thumbnail(thumb) => {
                let bytes = Bytes::from(thumb.bytes);
                self.storage.put(&key, bytes.clone()).await?;
                let row = ThumbnailRow {
                    width: width.into(),
                    height: height.into(),
                    method: method.to_owned(),
                    animated: request.animated,
                    content_type: thumb.content_type.to_owned(),
                    size: i64::try_from(bytes.len()).unwrap_or(i64::MAX),
                };
                self.store.insert_media_thumbnail(media_id, &row).await?;
                Ok(Content {
                    content_type: thumb.content_type.to_owned(),
                    filename: None,
                    length: bytes.len() as u64,
                    body: Box::pin(futures::stream::once(async move { Ok(bytes) })),
                })
            }
        }
    }

    async fn cached_thumbnail(
        &self,
        media_id: &str,
        width: u32,
        height: u32,
        method: &str,
        animated: bool,
    ) -> Result<Option<Content>> {
        let Some(cached) = self
            .store
            .media_thumbnail(media_id, width.into(), height.into(), method, animated)
            .await?
        else {
            return Ok(None);
        };
        let key = thumbnail_key(media_id, width, height, method, animated);
        Ok(Some(Content {
            content_type: cached.content_type,
            filename: None,
            length: u64::try_from(cached.size).unwrap_or_default(),
            body: self.storage.read(&key).await?,
        }))
    }

    /// The OpenGraph data of `url` (`GET /preview_url`), as JSON.
    pub async fn preview_url(&self, url: &str) -> Result<serde_json::Value> {
        if !self.config.media.url_preview_enabled {
            return Err(MediaError::Disabled(
                "URL previews are disabled on this server".to_owned(),
            ));
        }
        let max_age_ms = i64::try_from(
            self.config
                .media
                .url_preview_cache_secs
                .saturating_mul(1000),
        )
        .unwrap_or(i64::MAX);
        if let Some((fetched, og)) = self.store.url_preview(url).await?
            && now_ms().saturating_sub(fetched) < max_age_ms
            && let Ok(og) = serde_json::from_str(&og)
        {
            return Ok(og);
        }
        let preview = self.previewer.fetch(url).await?;
        let mut og = preview.og;
        if let Some(image) = preview.image {
            let media_id = new_media_id();
            let size = image.bytes.len();
            self.storage
                .put(&content_key(&media_id), image.bytes)
                .await?;
            self.store
                .insert_media(NewMedia {
                    media_id: &media_id,
                    uploader: None,
                    content_type: Some(&image.content_type),
                    filename: None,
                    size: i64::try_from(size).unwrap_or(i64::MAX),
                    now: now_ms(),
                })
                .await?;
            og.insert(
                "og:image".to_owned(),
                self.mxc(&media_id).to_string().into(),
            );
            og.insert("og:image:type".to_owned(), image.content_type.into());
            og.insert("matrix:image:size".to_owned(), size.into());
            if let Some((width, height)) = image.dimensions {
                og.insert("og:image:width".to_owned(), width.into());
                og.insert("og:image:height".to_owned(), height.into());
            }
        }
        let og = serde_json::Value::Object(og);
        self.store
            .set_url_preview(url, now_ms(), &og.to_string())
            .await?;
        Ok(og)
    }

    fn check_declared_length(&self, info: &UploadInfo) -> Result<()> {
        let limit = self.config.media.max_upload_size;
        if info.declared_length.is_some_and(|len| len > limit) {
            return Err(MediaError::TooLarge(format!(
                "The upload exceeds the limit of {limit} bytes"
            )));
        }
        Ok(())
    }

    /// The row of uploaded local media, after waiting for a reserved one to be uploaded.
    async fn uploaded_row(
        &self,
        server_name: &ServerName,
        media_id: &str,
        timeout: Duration,
        access: Access,
    ) -> Result<MediaRow> {
        if !is_valid_media_id(media_id) {
            return Err(MediaError::InvalidParam(
                "Media IDs consist of A-Z, a-z, 0-9, _ and - only".to_owned(),
            ));
        }
        if server_name != self.config.server_name {
            let row = self
                .store
                .media(&remote_media_id(server_name, media_id))
                .await?
                .ok_or_else(|| {
                    MediaError::NotFound(format!(
                        "mxc://{server_name}/{media_id} is not cached on this server"
                    ))
                })?;
            return self.check_legacy_cutoff(row, access);
        }
        let timeout = timeout.min(Duration::from_millis(
            self.config.media.max_download_wait_ms,
        ));
        let deadline = tokio::time::Instant::now() + timeout;
        let not_found = || MediaError::NotFound("Unknown media".to_owned());
        let row = loop {
            // Registered before reading, so an upload finishing in between still wakes us.
            let uploaded = self.uploaded.notified();
            let row = self.store.media(media_id).await?.ok_or_else(not_found)?;
            if row.uploaded_ts.is_some() {
                break row;
            }
            if row.unused_expires_ts.is_some_and(|t| t <= now_ms()) {
                return Err(not_found());
            }
            if tokio::time::timeout_at(deadline, uploaded).await.is_err() {
                return Err(MediaError::NotYetUploaded);
            }
        };
        self.check_legacy_cutoff(row, access)
    }

    /// The legacy endpoints serve only media uploaded (or, for remote media, fetched) before
    /// the freeze.
    fn check_legacy_cutoff(&self, row: MediaRow, access: Access) -> Result<MediaRow> {
        let cutoff =
            i64::try_from(self.config.media.unauthenticated_media_cutoff_ms).unwrap_or(i64::MAX);
        if access == Access::Legacy && row.uploaded_ts.is_some_and(|t| t >= cutoff) {
            return Err(MediaError::NotFound(
                "This media is only served by the authenticated endpoints \
                 (/_matrix/client/v1/media/...)"
                    .to_owned(),
            ));
        }
        Ok(row)
    }

    /// Whether `mxc://server_name/media_id` of another server is cached here.
    pub async fn is_cached(&self, server_name: &ServerName, media_id: &str) -> Result<bool> {
        Ok(self
            .store
            .media(&remote_media_id(server_name, media_id))
            .await?
            .is_some())
    }

    /// Caches media of another server, fetched over federation. A copy cached meanwhile by
    /// another request stands.
    pub async fn cache_remote<S, E>(
        &self,
        server_name: &ServerName,
        media_id: &str,
        content_type: Option<&str>,
        filename: Option<&str>,
        body: S,
    ) -> Result<()>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        let stored_id = remote_media_id(server_name, media_id);
        let size = self
            .storage
            .write(
                &content_key(&stored_id),
                body,
                self.config.media.max_upload_size,
            )
            .await?;
        let inserted = self
            .store
            .insert_media(NewMedia {
                media_id: &stored_id,
                uploader: None,
                content_type,
                filename,
                size: i64::try_from(size).unwrap_or(i64::MAX),
                now: now_ms(),
            })
            .await;
        match inserted {
            Ok(()) => Ok(()),
            Err(_) if self.store.media(&stored_id).await?.is_some() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn mxc(&self, media_id: &str) -> OwnedMxcUri {
        format!("mxc://{}/{media_id}", self.config.server_name).into()
    }
}

/// A reserved ID's claim to be the one upload in progress; released when dropped.
struct UploadClaim<'a> {
    set: &'a Mutex<HashSet<String>>,
    media_id: String,
}

impl<'a> UploadClaim<'a> {
    fn take(set: &'a Mutex<HashSet<String>>, media_id: &str) -> Result<Self> {
        let mut uploading = set
            .lock()
            .map_err(|_| MediaError::Internal("upload set poisoned".to_owned()))?;
        if !uploading.insert(media_id.to_owned()) {
            return Err(MediaError::CannotOverwrite);
        }
        Ok(Self {
            set,
            media_id: media_id.to_owned(),
        })
    }
}

impl Drop for UploadClaim<'_> {
    fn drop(&mut self) {
        if let Ok(mut uploading) = self.set.lock() {
            uploading.remove(&self.media_id);
        }
    }
}

fn new_media_id() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(MEDIA_ID_LEN)
        .map(char::from)
        .collect()
}

/// The spec's media ID alphabet; anything else could escape the storage layout.
pub fn is_valid_media_id(media_id: &str) -> bool {
    !media_id.is_empty()
        && media_id.len() <= 255
        && media_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The ID remote media are cached under: their server's name and media ID. Local media IDs
/// never hold a `/`, so the two cannot meet.
fn remote_media_id(server_name: &ServerName, media_id: &str) -> String {
    format!("{server_name}/{media_id}")
}

/// Storage key of content, fanned out by the ID's first characters.
fn content_key(media_id: &str) -> String {
    let fan = media_id.get(..2).unwrap_or(media_id);
    format!("local/{fan}/{media_id}")
}

fn thumbnail_key(media_id: &str, width: u32, height: u32, method: &str, animated: bool) -> String {
    let fan = media_id.get(..2).unwrap_or(media_id);
    let animated = if animated { "-animated" } else { "" };
    format!("thumbnails/{fan}/{media_id}/{width}x{height}-{method}{animated}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_ids_are_long_and_in_the_spec_alphabet() {
        let id = new_media_id();
        assert_eq!(id.len(), MEDIA_ID_LEN);
        assert!(is_valid_media_id(&id));
        assert!(!is_valid_media_id("../etc"));
        assert!(!is_valid_media_id(""));
        assert!(!is_valid_media_id("a.b"));
    }
}
