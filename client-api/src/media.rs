//! The content repository (spec: "Content repository"): authenticated media under
//! `/_matrix/client/v1/media`, uploads under `/_matrix/media`, and the deprecated
//! unauthenticated `/_matrix/media/v3` downloads, which serve only media from before the freeze.

// ruma marks the legacy endpoints deprecated; serving them (frozen) is what the spec asks.
#![allow(deprecated)]

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    body::{Body, BodyDataStream},
    extract::{FromRequest, Request, State},
    response::{IntoResponse, Response},
};
use futures::StreamExt;
use http::{HeaderValue, header};
use ruma::{
    OwnedServerName,
    api::client::{
        authenticated_media as authed,
        media::{
            create_content, create_content_async, create_mxc_uri, get_content,
            get_content_as_filename, get_content_thumbnail, get_media_config, get_media_preview,
        },
    },
};
use serde_json::value::to_raw_value;
use tessera_core::{
    Services,
    media::{Access, Content, ThumbnailRequest, UploadInfo, content_disposition},
    ratelimit::Action,
    users::Caller,
};
use tessera_federation::edge::{ApiError, DRAIN_LIMIT, RumaResponse};

use crate::{
    route::RumaRoutes,
    ruma_wrapper::{Ruma, access_token, form_urlencoded_value},
};

type ApiResult<T> = Result<RumaResponse<T>, ApiError>;

/// The spec's recommended policy for served content.
const CONTENT_SECURITY_POLICY: &str = "sandbox; default-src 'none'; script-src 'none'; \
     plugin-types application/pdf; style-src 'unsafe-inline'; object-src 'self';";

pub(crate) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<authed::get_media_config::v1::Request, _, _>(config)
        .ruma::<get_media_config::v3::Request, _, _>(legacy_config)
        .ruma::<authed::get_content::v1::Request, _, _>(download)
        .ruma::<authed::get_content_as_filename::v1::Request, _, _>(download_as)
        .ruma::<get_content::v3::Request, _, _>(legacy_download)
        .ruma::<get_content_as_filename::v3::Request, _, _>(legacy_download_as)
        .ruma::<authed::get_content_thumbnail::v1::Request, _, _>(thumbnail)
        .ruma::<get_content_thumbnail::v3::Request, _, _>(legacy_thumbnail)
        .ruma::<authed::get_media_preview::v1::Request, _, _>(preview)
        .ruma::<get_media_preview::v3::Request, _, _>(legacy_preview)
        .ruma::<create_content::v3::Request, _, _>(upload)
        .ruma::<create_mxc_uri::v1::Request, _, _>(create)
        .ruma::<create_content_async::v3::Request, _, _>(upload_reserved)
}

async fn config(
    State(s): State<Arc<Services>>,
    _req: Ruma<authed::get_media_config::v1::Request>,
) -> ApiResult<authed::get_media_config::v1::Response> {
    Ok(RumaResponse(authed::get_media_config::v1::Response::new(
        s.media.max_upload_size(),
    )))
}

async fn legacy_config(
    State(s): State<Arc<Services>>,
    _req: Ruma<get_media_config::v3::Request>,
) -> ApiResult<get_media_config::v3::Response> {
    Ok(RumaResponse(get_media_config::v3::Response::new(
        s.media.max_upload_size(),
    )))
}

async fn download(
    State(s): State<Arc<Services>>,
    req: Ruma<authed::get_content::v1::Request>,
) -> Result<Response, ApiError> {
    let r = req.body;
    let content = s
        .download_media(
            &r.server_name,
            &r.media_id,
            r.timeout_ms,
            Access::Authenticated,
        )
        .await?;
    Ok(content_response(content, None))
}

async fn download_as(
    State(s): State<Arc<Services>>,
    req: Ruma<authed::get_content_as_filename::v1::Request>,
) -> Result<Response, ApiError> {
    let r = req.body;
    let content = s
        .download_media(
            &r.server_name,
            &r.media_id,
            r.timeout_ms,
            Access::Authenticated,
        )
        .await?;
    Ok(content_response(content, Some(&r.filename)))
}

async fn legacy_download(
    State(s): State<Arc<Services>>,
    req: Ruma<get_content::v3::Request>,
) -> Result<Response, ApiError> {
    let r = req.body;
    let content = s
        .download_media(&r.server_name, &r.media_id, r.timeout_ms, Access::Legacy)
        .await?;
    Ok(content_response(content, None))
}

async fn legacy_download_as(
    State(s): State<Arc<Services>>,
    req: Ruma<get_content_as_filename::v3::Request>,
) -> Result<Response, ApiError> {
    let r = req.body;
    let content = s
        .download_media(&r.server_name, &r.media_id, r.timeout_ms, Access::Legacy)
        .await?;
    Ok(content_response(content, Some(&r.filename)))
}

async fn thumbnail(
    State(s): State<Arc<Services>>,
    req: Ruma<authed::get_content_thumbnail::v1::Request>,
) -> Result<Response, ApiError> {
    let r = req.body;
    let request = ThumbnailRequest::parse(r.width, r.height, r.method, r.animated)?;
    thumbnail_response(
        &s,
        &r.server_name,
        &r.media_id,
        request,
        r.timeout_ms,
        Access::Authenticated,
    )
    .await
}

async fn legacy_thumbnail(
    State(s): State<Arc<Services>>,
    req: Ruma<get_content_thumbnail::v3::Request>,
) -> Result<Response, ApiError> {
    let r = req.body;
    let request = ThumbnailRequest::parse(r.width, r.height, r.method, r.animated)?;
    thumbnail_response(
        &s,
        &r.server_name,
        &r.media_id,
        request,
        r.timeout_ms,
        Access::Legacy,
    )
    .await
}

async fn thumbnail_response(
    s: &Services,
    server_name: &OwnedServerName,
    media_id: &str,
    request: ThumbnailRequest,
    timeout: Duration,
    access: Access,
) -> Result<Response, ApiError> {
    let content = s
        .thumbnail_media(server_name, media_id, request, timeout, access)
        .await?;
    Ok(content_response(content, None))
}

async fn preview(
    State(s): State<Arc<Services>>,
    req: Ruma<authed::get_media_preview::v1::Request>,
) -> ApiResult<authed::get_media_preview::v1::Response> {
    let og = s.media.preview_url(&req.body.url).await?;
    let raw = to_raw_value(&og).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(RumaResponse(
        authed::get_media_preview::v1::Response::from_raw_value(raw),
    ))
}

async fn legacy_preview(
    State(s): State<Arc<Services>>,
    req: Ruma<get_media_preview::v3::Request>,
) -> ApiResult<get_media_preview::v3::Response> {
    let og = s.media.preview_url(&req.body.url).await?;
    let raw = to_raw_value(&og).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(RumaResponse(
        get_media_preview::v3::Response::from_raw_value(raw),
    ))
}

async fn create(
    State(s): State<Arc<Services>>,
    req: Ruma<create_mxc_uri::v1::Request>,
) -> ApiResult<create_mxc_uri::v1::Response> {
    let user_id = &req.caller()?.user_id;
    s.rate_limiter
        .check(Action::MediaCreate, user_id.as_str())?;
    let (content_uri, expires_at) = s.media.create(user_id).await?;
    let mut response = create_mxc_uri::v1::Response::new(content_uri);
    response.unused_expires_at = Some(expires_at);
    Ok(RumaResponse(response))
}

async fn upload(
    State(s): State<Arc<Services>>,
    mut upload: Upload,
) -> ApiResult<create_content::v3::Response> {
    let outcome = s
        .media
        .upload(
            &upload.caller.user_id,
            upload.info.clone(),
            &mut upload.body,
        )
        .await;
    let content_uri = upload.finish(outcome).await?;
    Ok(RumaResponse(create_content::v3::Response::new(content_uri)))
}

/// Answers `{}`: ruma's empty response type has no public constructor.
async fn upload_reserved(
    State(s): State<Arc<Services>>,
    mut upload: Upload,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let (server_name, media_id) = upload.target.take().ok_or_else(|| {
        ApiError::unrecognized("This upload endpoint needs /{serverName}/{mediaId}")
    })?;
    let outcome = s
        .media
        .upload_reserved(
            &upload.caller.user_id,
            &server_name,
            &media_id,
            upload.info.clone(),
            &mut upload.body,
        )
        .await;
    upload.finish(outcome).await?;
    Ok(axum::Json(serde_json::json!({})))
}

/// An upload request: the authenticated caller, what the headers and query say about the
/// content, and the body as a stream, so that it goes to storage without being held in memory.
struct Upload {
    caller: Caller,
    info: UploadInfo,
    /// `/{serverName}/{mediaId}` of an upload to a reserved ID.
    target: Option<(OwnedServerName, String)>,
    body: BodyDataStream,
}

impl Upload {
    /// Maps the outcome; what is left of a refused body is read (up to the drain limit) first,
    /// so that the client gets the error instead of a reset connection.
    async fn finish<T>(mut self, outcome: tessera_core::media::Result<T>) -> Result<T, ApiError> {
        if outcome.is_err() {
            let mut drained = 0;
            while drained < DRAIN_LIMIT {
                match self.body.next().await {
                    Some(Ok(chunk)) => drained += chunk.len(),
                    _ => break,
                }
            }
        }
        Ok(outcome?)
    }
}

impl FromRequest<Arc<Services>> for Upload {
    type Rejection = ApiError;

    async fn from_request(request: Request, services: &Arc<Services>) -> Result<Self, ApiError> {
        let (mut parts, body) = request.into_parts();
        let token = access_token(&parts).ok_or_else(ApiError::missing_token)?;
        let caller = services.users.authenticate(&token).await?;
        tracing::Span::current().record("user", caller.user_id.as_str());
        let header_value = |name| {
            parts
                .headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let info = UploadInfo {
            content_type: header_value(header::CONTENT_TYPE),
            filename: parts
                .uri
                .query()
                .and_then(|q| form_urlencoded_value(q, "filename")),
            declared_length: header_value(header::CONTENT_LENGTH).and_then(|v| v.parse().ok()),
        };
        use axum::extract::FromRequestParts;
        let params = axum::extract::RawPathParams::from_request_parts(&mut parts, services)
            .await
            .map_err(|e| {
                ApiError::new(
                    http::StatusCode::BAD_REQUEST,
                    "M_INVALID_PARAM",
                    e.to_string(),
                )
            })?;
        let mut values = params.iter().map(|(_, value)| value);
        let target = match (values.next(), values.next()) {
            (Some(server_name), Some(media_id)) => {
                let server_name = OwnedServerName::try_from(server_name).map_err(|e| {
                    ApiError::new(
                        http::StatusCode::BAD_REQUEST,
                        "M_INVALID_PARAM",
                        format!("Invalid server name: {e}"),
                    )
                })?;
                Some((server_name, media_id.to_owned()))
            }
            _ => None,
        };
        Ok(Self {
            caller,
            info,
            target,
            body: Body::new(body).into_data_stream(),
        })
    }
}

/// Content with the spec's safety headers: `inline` only for safe types, a sandboxing CSP,
/// no sniffing, readable cross-origin.
fn content_response(content: Content, filename: Option<&str>) -> Response {
    let filename = filename.or(content.filename.as_deref());
    let disposition = content_disposition(&content.content_type, filename);
    let mut response = Body::from_stream(content.body).into_response();
    let headers = response.headers_mut();
    let value = |v: &str| {
        HeaderValue::from_str(v)
            .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"))
    };
    headers.insert(header::CONTENT_TYPE, value(&content.content_type));
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&disposition)
            .unwrap_or_else(|_| HeaderValue::from_static("attachment")),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(content.length));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("cross-origin"),
    );
    response
}
