//! Media of other servers (spec: "Content repository", Server-Server API "Content
//! Repository"): fetched once through the server's authenticated federation endpoint,
//! cached, then served (and thumbnailed) from the cache like local media.

use std::time::Duration;

use http::StatusCode;
use ruma::{
    ServerName,
    api::federation::authenticated_media::{FileOrLocation, get_content},
};

use super::FederationError;
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
        let response = self
            .federation
            .client
            .send(server_name, request)
            .await
            .map_err(|e| fetch_error(server_name, media_id, e))?;
        match response.content {
            FileOrLocation::File(content) => {
                let filename = content
                    .content_disposition
                    .as_ref()
                    .and_then(|disposition| disposition.filename.clone());
                self.media
                    .cache_remote(
                        server_name,
                        media_id,
                        content.content_type.as_deref(),
                        filename.as_deref(),
                        content.file,
                    )
                    .await
            }
            FileOrLocation::Location(url) => Err(MediaError::Remote(format!(
                "{server_name} serves mxc://{server_name}/{media_id} from {url}, which this \
                 server does not follow yet"
            ))),
            _ => Err(MediaError::Remote(format!(
                "{server_name} answered with content of an unknown form"
            ))),
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
