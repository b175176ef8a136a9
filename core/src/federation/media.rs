//! Media of other servers (spec: "Content repository", Server-Server API "Content
//! Repository"): fetched once through the server's authenticated federation endpoint
//! (following the `Location` it may answer with instead, and falling back to the legacy
//! unauthenticated endpoint of servers that lack it), cached, then served (and thumbnailed)
//! from the cache like local media.

use std::time::Duration;

use http::{StatusCode, header};
use ruma::{
    ServerName,
    api::federation::authenticated_media::{FileOrLocation, get_content},
    http_headers::ContentDisposition,
};

use super::{FederationError, client::Answer};
use crate::{
    Services,
    media::{Access, Content, MediaError, Result, ThumbnailRequest, is_valid_media_id},
};

impl Services {
    /// `mxc://server_name/media_id`, from this server or, fetched and cached, from its own.
    pub async fn download_media(
        &self,
        server_name: &ServerName,
        media_id: &str,
        timeout: Duration,
        access: Access,
    ) -> Result<Content> {
        self.cache_remote_media(server_name, media_id, timeout)
            .await?;
        self.media
            .download(server_name, media_id, timeout, access)
            .await
    }

    /// A thumbnail of `mxc://server_name/media_id`; of remote media, made here from the
    /// cached original.
    pub async fn thumbnail_media(
        &self,
        server_name: &ServerName,
        media_id: &str,
        request: ThumbnailRequest,
        timeout: Duration,
        access: Access,
    ) -> Result<Content> {
        self.cache_remote_media(server_name, media_id, timeout)
            .await?;
        self.media
            .thumbnail(server_name, media_id, request, timeout, access)
            .await
    }

    async fn cache_remote_media(
        &self,
        server_name: &ServerName,
        media_id: &str,
        timeout: Duration,
    ) -> Result<()> {
        if server_name == self.config.server_name
            || !is_valid_media_id(media_id)
            || self.media.is_cached(server_name, media_id).await?
        {
            return Ok(());
        }
        let limit = usize::try_from(self.config.media.max_upload_size).unwrap_or(usize::MAX);
        let mut request = get_content::v1::Request::new(media_id.to_owned());
        request.timeout_ms = timeout;
        let client = &self.federation.client;
        let file = match client.send(server_name, request).await {
            Ok(response) => match response.content {
                FileOrLocation::File(content) => RemoteFile {
                    filename: content
                        .content_disposition
                        .and_then(|disposition| disposition.filename),
                    content_type: content.content_type,
                    bytes: content.file,
                },
                FileOrLocation::Location(url) => client
                    .located_media(server_name, &url, limit)
                    .await
                    .map(RemoteFile::from)
                    .map_err(|e| fetch_error(server_name, media_id, e))?,
                _ => {
                    return Err(MediaError::Remote(format!(
                        "{server_name} answered with content of an unknown form"
                    )));
                }
            },
            // A server older than Matrix v1.11 does not know the federation media endpoint.
            Err(FederationError::Remote { errcode, .. }) if errcode == "M_UNRECOGNIZED" => client
                .legacy_media(server_name, media_id, timeout, limit)
                .await
                .map(RemoteFile::from)
                .map_err(|e| fetch_error(server_name, media_id, e))?,
            Err(e) => return Err(fetch_error(server_name, media_id, e)),
        };
        self.media
            .cache_remote(
                server_name,
                media_id,
                file.content_type.as_deref(),
                file.filename.as_deref(),
                file.bytes,
            )
            .await
    }
}

/// Media of another server as it arrived, before it is cached.
struct RemoteFile {
    content_type: Option<String>,
    filename: Option<String>,
    bytes: Vec<u8>,
}

impl From<Answer> for RemoteFile {
    fn from(answer: Answer) -> Self {
        Self {
            content_type: answer.header(header::CONTENT_TYPE).map(ToOwned::to_owned),
            filename: answer
                .header(header::CONTENT_DISPOSITION)
                .and_then(|value| value.parse::<ContentDisposition>().ok())
                .and_then(|disposition| disposition.filename),
            bytes: answer.body.into(),
        }
    }
}

/// The remote server's 404 stays a 404; any other failure is the remote's (502).
fn fetch_error(server_name: &ServerName, media_id: &str, error: FederationError) -> MediaError {
    match error {
        FederationError::Remote {
            status: StatusCode::NOT_FOUND,
            ..
        } => MediaError::NotFound(format!("{server_name} has no media {media_id}")),
        other => MediaError::Remote(other.to_string()),
    }
}
