//! The content repository for other servers (spec: Server-Server API, "Content Repository"):
//! this server's media, downloaded or thumbnailed, as `multipart/mixed` answers.

use std::sync::Arc;

use axum::extract::State;
use futures::TryStreamExt;
use ruma::{
    api::federation::authenticated_media::{
        Content as FederationContent, ContentMetadata, FileOrLocation, get_content,
        get_content_thumbnail,
    },
    http_headers::{ContentDisposition, ContentDispositionType},
};
use tessera_core::{
    Services,
    media::{Access, Content, ThumbnailRequest, is_inline_safe},
};

use crate::{
    edge::{ApiError, RumaResponse},
    extract::Signed,
};

/// `GET /_matrix/federation/v1/media/download/{mediaId}`.
pub async fn download(
    State(s): State<Arc<Services>>,
    request: Signed<get_content::v1::Request>,
) -> Result<RumaResponse<get_content::v1::Response>, ApiError> {
    let body = &request.body;
    let content = s
        .media
        .download(
            &s.config.server_name,
            &body.media_id,
            body.timeout_ms,
            Access::Authenticated,
        )
        .await?;
    Ok(RumaResponse(get_content::v1::Response::new(
        ContentMetadata::new(),
        file(content).await?,
    )))
}

/// `GET /_matrix/federation/v1/media/thumbnail/{mediaId}`.
pub async fn thumbnail(
    State(s): State<Arc<Services>>,
    request: Signed<get_content_thumbnail::v1::Request>,
) -> Result<RumaResponse<get_content_thumbnail::v1::Response>, ApiError> {
    let body = &request.body;
    let thumbnail =
        ThumbnailRequest::parse(body.width, body.height, body.method.clone(), body.animated)?;
    let content = s
        .media
        .thumbnail(
            &s.config.server_name,
            &body.media_id,
            thumbnail,
            body.timeout_ms,
            Access::Authenticated,
        )
        .await?;
    Ok(RumaResponse(get_content_thumbnail::v1::Response::new(
        ContentMetadata::new(),
        file(content).await?,
    )))
}

/// The content read whole (media are bounded by the upload limit), labelled as the client
/// endpoints label it.
async fn file(content: Content) -> Result<FileOrLocation, ApiError> {
    let bytes: Vec<u8> = content
        .body
        .map_ok(|chunk| chunk.to_vec())
        .try_concat()
        .await
        .map_err(|e| ApiError::internal(format!("media storage: {e}")))?;
    let disposition_type = if is_inline_safe(&content.content_type) {
        ContentDispositionType::Inline
    } else {
        ContentDispositionType::Attachment
    };
    let disposition = ContentDisposition::new(disposition_type).with_filename(content.filename);
    Ok(FileOrLocation::File(FederationContent::new(
        bytes,
        content.content_type,
        disposition,
    )))
}
