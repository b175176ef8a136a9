//! Media of other servers (spec: "Content repository", Server-Server API "Content
//! Repository"): fetched once through the server's authenticated federation endpoint
//! (following the `Location` it may answer with instead, and falling back to the legacy
//! unauthenticated endpoint of servers that lack it), streamed into the media store within
//! the upload size limit, then served (and thumbnailed) from the cache like local media.

use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, stream::BoxStream};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use ruma::{
    ServerName, api::federation::authenticated_media::get_content, http_headers::ContentDisposition,
};

use super::{
    FederationError,
    client::Streamed,
    multipart::{MediaPart, boundary_of, media_part},
};
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
        let mut request = get_content::v1::Request::new(media_id.to_owned());
        request.timeout_ms = timeout;
        let client = &self.federation.client;
        let failed = |e| fetch_error(server_name, media_id, e);
        let file = match client.send_streamed(server_name, request).await {
            Ok(answer) => {
                let boundary = answer
                    .header(header::CONTENT_TYPE)
                    .and_then(boundary_of)
                    .ok_or_else(|| {
                        MediaError::Remote(format!(
                            "{server_name} answered a media download without a multipart body"
                        ))
                    })?;
                let body = answer.body.map(|chunk| chunk.map_err(|e| e.to_string()));
                match media_part(&boundary, body.boxed())
                    .await
                    .map_err(|e| MediaError::Remote(format!("{server_name}: {e}")))?
                {
                    MediaPart::File { headers, body } => RemoteFile::new(&headers, body),
                    MediaPart::Location(url) => client
                        .located_media(server_name, &url)
                        .await
                        .map(RemoteFile::from)
                        .map_err(failed)?,
                }
            }
            // A server older than Matrix v1.11 does not know the federation media endpoint.
            Err(FederationError::Remote { errcode, .. }) if errcode == "M_UNRECOGNIZED" => client
                .legacy_media(server_name, media_id, timeout)
                .await
                .map(RemoteFile::from)
                .map_err(failed)?,
            Err(e) => return Err(failed(e)),
        };
        self.media
            .cache_remote(
                server_name,
                media_id,
                file.content_type.as_deref(),
                file.filename.as_deref(),
                file.body,
            )
            .await
            .map_err(|e| match e {
                // The remote's file, not the client's request, is too large or broke off.
                MediaError::TooLarge(reason) | MediaError::BodyRead(reason) => {
                    MediaError::Remote(format!("{server_name}: {reason}"))
                }
                other => other,
            })
    }
}

/// Media of another server as it arrives, before it is cached.
struct RemoteFile {
    content_type: Option<String>,
    filename: Option<String>,
    body: BoxStream<'static, Result<Bytes, String>>,
}

impl RemoteFile {
    fn new(headers: &HeaderMap, body: BoxStream<'static, Result<Bytes, String>>) -> Self {
        let header = |name| {
            headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
        };
        Self {
            content_type: header(header::CONTENT_TYPE).map(ToOwned::to_owned),
            filename: header(header::CONTENT_DISPOSITION)
                .and_then(|value| value.parse::<ContentDisposition>().ok())
                .and_then(|disposition| disposition.filename),
            body,
        }
    }
}

impl From<Streamed> for RemoteFile {
    fn from(answer: Streamed) -> Self {
        let body = answer
            .body
            .map(|chunk| chunk.map_err(|e| e.to_string()))
            .boxed();
        Self::new(&answer.headers, body)
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
