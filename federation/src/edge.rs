//! The HTTP edge shared by the client and federation APIs: turning a request into a ruma type,
//! a ruma response into HTTP, and every error into Matrix error JSON with the right status.

use axum::{
    Json,
    body::Body,
    response::{IntoResponse, Response},
};
use bytes::{Bytes, BytesMut};
use http::{HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use ruma::api::{
    IncomingRequest, IncomingRequestExt, OutgoingResponse, OutgoingResponseExt,
    error::{DeserializationError, FromHttpRequestError},
};
use serde_json::{Map, Value as JsonValue, json};
use tessera_core::{
    Error as CoreError, federation::FederationError, media::MediaError, uia::Challenge,
};

/// A Matrix error response: status, errcode, message and any errcode-specific fields.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub errcode: &'static str,
    pub message: String,
    extra: Map<String, JsonValue>,
    retry_after_ms: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, errcode: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            errcode,
            message: message.into(),
            extra: Map::new(),
            retry_after_ms: None,
        }
    }

    pub fn unrecognized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "M_UNRECOGNIZED", message)
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "M_UNRECOGNIZED",
            "Method not allowed for this endpoint",
        )
    }

    pub fn not_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "M_NOT_JSON", message)
    }

    pub fn bad_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "M_BAD_JSON", message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "M_TOO_LARGE", message)
    }

    pub fn invalid_param(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "M_INVALID_PARAM", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "M_FORBIDDEN", message)
    }

    pub fn missing_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "M_MISSING_TOKEN",
            "Missing access token",
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        let message = message.into();
        tracing::error!(%message, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "M_UNKNOWN",
            "Internal server error",
        )
    }

    fn with(mut self, key: &str, value: JsonValue) -> Self {
        self.extra.insert(key.to_owned(), value);
        self
    }
}

impl From<CoreError> for ApiError {
    fn from(error: CoreError) -> Self {
        use StatusCode as S;
        let message = error.to_string();
        match error {
            CoreError::Forbidden(_) => Self::forbidden(message),
            CoreError::NotFound(_) => Self::new(S::NOT_FOUND, "M_NOT_FOUND", message),
            CoreError::BadJson(_) => Self::bad_json(message),
            CoreError::InvalidParam(_) => Self::new(S::BAD_REQUEST, "M_INVALID_PARAM", message),
            CoreError::InvalidUsername(_) => {
                Self::new(S::BAD_REQUEST, "M_INVALID_USERNAME", message)
            }
            CoreError::WeakPassword(_) => Self::new(S::BAD_REQUEST, "M_WEAK_PASSWORD", message),
            CoreError::ProfileTooLarge(_) => {
                Self::new(S::BAD_REQUEST, "M_PROFILE_TOO_LARGE", message)
            }
            CoreError::KeyTooLarge(_) => Self::new(S::BAD_REQUEST, "M_KEY_TOO_LARGE", message),
            CoreError::ServerControlled(_) => {
                Self::new(S::METHOD_NOT_ALLOWED, "M_BAD_JSON", message)
            }
            CoreError::TooLarge(_) => Self::too_large(message),
            CoreError::UnsupportedRoomVersion(_) => {
                Self::new(S::BAD_REQUEST, "M_UNSUPPORTED_ROOM_VERSION", message)
            }
            CoreError::IncompatibleRoomVersion(version) => {
                Self::new(S::BAD_REQUEST, "M_INCOMPATIBLE_ROOM_VERSION", message)
                    .with("room_version", JsonValue::String(version.to_string()))
            }
            CoreError::RoomInUse(_) => Self::new(S::BAD_REQUEST, "M_ROOM_IN_USE", message),
            CoreError::Conflict(_) => Self::new(S::CONFLICT, "M_UNKNOWN", message),
            CoreError::BadAlias(_) => Self::new(S::BAD_REQUEST, "M_BAD_ALIAS", message),
            CoreError::InvalidRoomState(_) => {
                Self::new(S::BAD_REQUEST, "M_INVALID_ROOM_STATE", message)
            }
            CoreError::WrongRoomKeysVersion {
                current_version, ..
            } => {
                let error = Self::new(S::FORBIDDEN, "M_WRONG_ROOM_KEYS_VERSION", message);
                match current_version {
                    Some(version) => error.with("current_version", JsonValue::String(version)),
                    None => error,
                }
            }
            CoreError::UserInUse => Self::new(S::BAD_REQUEST, "M_USER_IN_USE", message),
            CoreError::UserDeactivated => Self::new(S::FORBIDDEN, "M_USER_DEACTIVATED", message),
            CoreError::Unknown(_) => Self::new(S::BAD_REQUEST, "M_UNKNOWN", message),
            CoreError::UnknownToken { soft_logout } => {
                let error = Self::new(S::UNAUTHORIZED, "M_UNKNOWN_TOKEN", message);
                if soft_logout {
                    error.with("soft_logout", JsonValue::Bool(true))
                } else {
                    error
                }
            }
            CoreError::LimitExceeded { retry_after_ms } => {
                let mut error = Self::new(S::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED", message)
                    .with("retry_after_ms", json!(retry_after_ms));
                error.retry_after_ms = Some(retry_after_ms);
                error
            }
            CoreError::AuthRequired(challenge) => uia_challenge(&challenge),
            CoreError::Federation(e) => e.into(),
            CoreError::Store(e) => Self::internal(e.to_string()),
            CoreError::Internal(e) => Self::internal(e),
        }
    }
}

impl From<FederationError> for ApiError {
    /// A remote server's own Matrix error is passed on (status and errcode); a server that
    /// cannot be reached or answers nonsense is a 502.
    fn from(error: FederationError) -> Self {
        let message = error.to_string();
        match error {
            FederationError::Remote {
                status, errcode, ..
            } => Self::new(
                StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
                known_errcode(&errcode),
                message,
            ),
            FederationError::Unreachable { .. }
            | FederationError::BadResponse { .. }
            | FederationError::Keys { .. } => {
                Self::new(StatusCode::BAD_GATEWAY, "M_UNKNOWN", message)
            }
            FederationError::Request { .. } => Self::internal(message),
        }
    }
}

/// A remote errcode as one of ours (the type holds static strings); unknown ones are
/// `M_UNKNOWN`, their text still in the message.
fn known_errcode(errcode: &str) -> &'static str {
    const KNOWN: [&str; 12] = [
        "M_NOT_FOUND",
        "M_FORBIDDEN",
        "M_UNRECOGNIZED",
        "M_UNAUTHORIZED",
        "M_LIMIT_EXCEEDED",
        "M_INVALID_PARAM",
        "M_BAD_JSON",
        "M_NOT_JSON",
        "M_TOO_LARGE",
        "M_UNSUPPORTED_ROOM_VERSION",
        "M_INCOMPATIBLE_ROOM_VERSION",
        "M_MISSING_PARAM",
    ];
    KNOWN
        .into_iter()
        .find(|known| *known == errcode)
        .unwrap_or("M_UNKNOWN")
}

impl From<MediaError> for ApiError {
    fn from(error: MediaError) -> Self {
        use StatusCode as S;
        let message = error.to_string();
        match error {
            MediaError::NotFound(_) => Self::new(S::NOT_FOUND, "M_NOT_FOUND", message),
            MediaError::InvalidParam(_) => Self::new(S::BAD_REQUEST, "M_INVALID_PARAM", message),
            MediaError::TooLarge(_) => Self::too_large(message),
            MediaError::Forbidden(_) => Self::forbidden(message),
            MediaError::CannotOverwrite => {
                Self::new(S::CONFLICT, "M_CANNOT_OVERWRITE_MEDIA", message)
            }
            MediaError::NotYetUploaded => {
                Self::new(S::GATEWAY_TIMEOUT, "M_NOT_YET_UPLOADED", message)
            }
            // No retry time: a pending upload ends when the client finishes or it expires.
            MediaError::LimitExceeded(_) => {
                Self::new(S::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED", message)
            }
            MediaError::CannotThumbnail(_) | MediaError::BodyRead(_) => {
                Self::new(S::BAD_REQUEST, "M_UNKNOWN", message)
            }
            MediaError::Disabled(_) => Self::unrecognized(message),
            MediaError::PreviewFailed(_) | MediaError::Remote(_) => {
                Self::new(S::BAD_GATEWAY, "M_UNKNOWN", message)
            }
            MediaError::Store(e) => Self::internal(e.to_string()),
            MediaError::Storage(e) => Self::internal(format!("media storage: {e}")),
            MediaError::Internal(e) => Self::internal(e),
        }
    }
}

/// The 401 body of User-Interactive Authentication (spec: "User-interactive API in the REST API").
fn uia_challenge(challenge: &Challenge) -> ApiError {
    let (errcode, message) = challenge.error.clone().unwrap_or(("", String::new()));
    let mut error = ApiError::new(StatusCode::UNAUTHORIZED, errcode, message)
        .with(
            "flows",
            json!(
                challenge
                    .flows
                    .iter()
                    .map(|stages| json!({ "stages": stages }))
                    .collect::<Vec<_>>()
            ),
        )
        .with("params", json!({}))
        .with("session", json!(challenge.session));
    if !challenge.completed.is_empty() {
        error = error.with("completed", json!(challenge.completed));
    }
    error
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = self.extra;
        // A UIA challenge without a failed stage carries no errcode at all.
        if !self.errcode.is_empty() {
            body.insert("errcode".to_owned(), json!(self.errcode));
            body.insert("error".to_owned(), json!(self.message));
        }
        let mut response = (self.status, Json(body)).into_response();
        if let Some(ms) = self.retry_after_ms
            && let Ok(value) = HeaderValue::from_str(&ms.div_ceil(1000).to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// A ruma response, serialized by ruma.
pub struct RumaResponse<T>(pub T);

impl<T: OutgoingResponse> IntoResponse for RumaResponse<T> {
    fn into_response(self) -> Response {
        match self.0.try_into_http_response::<Vec<u8>>() {
            Ok(response) => response.map(Body::from),
            Err(e) => {
                ApiError::internal(format!("response serialization failed: {e}")).into_response()
            }
        }
    }
}

/// Parses a request into the ruma type `T`, with the spec's errcodes for each way it can fail:
/// a body that is not JSON is `M_NOT_JSON`; JSON of the wrong shape `M_BAD_JSON`; a malformed
/// identifier or query parameter `M_INVALID_PARAM`.
pub fn parse_request<T: IncomingRequest>(
    parts: http::request::Parts,
    body: &Bytes,
    path_args: &[&str],
) -> Result<T, ApiError> {
    // Bodiless requests parse as `{}`, so endpoints whose body fields are all optional accept
    // the empty body clients send to them.
    let received: &[u8] = body;
    let body: &[u8] = if body.is_empty() && parts.method != http::Method::GET {
        b"{}"
    } else {
        body
    };
    // The parts move into the request: nothing is copied on this per-request path.
    let request = http::Request::from_parts(parts, body);
    let shape_error = |detail: String| {
        if received.is_empty() && body != received {
            ApiError::not_json("Request body is empty; this endpoint expects JSON")
        } else if serde_json::from_slice::<JsonValue>(received).is_err() {
            ApiError::not_json(format!("Request body is not valid JSON: {detail}"))
        } else {
            ApiError::bad_json(format!("Request body has the wrong shape: {detail}"))
        }
    };
    // Some ruma deserializers index into maps and panic on input that lacks a key (e.g. a login
    // body without `type`); bad input must get an errcode, never a dropped connection.
    let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        T::try_from_http_request(request, path_args)
    }))
    .map_err(|_| shape_error("required fields are missing".to_owned()))?;
    parsed.map_err(|error| match error {
        FromHttpRequestError::MethodMismatch { .. } => ApiError::method_not_allowed(),
        FromHttpRequestError::Deserialization(DeserializationError::Json(e)) => {
            shape_error(e.to_string())
        }
        FromHttpRequestError::Deserialization(DeserializationError::Ident(e)) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
            format!("Invalid identifier: {e}"),
        ),
        FromHttpRequestError::Deserialization(DeserializationError::Query(e)) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
            format!("Invalid path or query parameter: {e}"),
        ),
        FromHttpRequestError::Deserialization(e) => ApiError::bad_json(e.to_string()),
        other => ApiError::bad_json(other.to_string()),
    })
}

/// Beyond the body limit, up to this many bytes are still read (and dropped) before answering
/// 413: a server that answers without reading closes on unread data, and the client then sees a
/// connection reset instead of the error. Larger bodies are cut off.
pub const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

/// Reads the whole body, refusing more than `limit` bytes with 413 `M_TOO_LARGE`.
pub async fn read_body(
    headers: &http::HeaderMap,
    mut body: Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let too_large =
        || ApiError::too_large(format!("Request body exceeds the limit of {limit} bytes"));
    if declared_length.is_some_and(|len| len > DRAIN_LIMIT) {
        return Err(too_large());
    }
    let mut received = BytesMut::with_capacity(declared_length.unwrap_or(0).min(limit));
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::bad_json(format!("Cannot read the request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if received.len() + data.len() > limit {
            drain(
                body,
                DRAIN_LIMIT.saturating_sub(received.len() + data.len()),
            )
            .await;
            return Err(too_large());
        }
        received.extend_from_slice(&data);
    }
    Ok(received.freeze())
}

async fn drain(mut body: Body, mut budget: usize) {
    while budget > 0 {
        match body.frame().await {
            Some(Ok(frame)) => {
                budget = budget.saturating_sub(frame.data_ref().map_or(0, Bytes::len))
            }
            _ => return,
        }
    }
}
