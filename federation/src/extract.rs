//! Extractors for the Server-Server API: `Signed<T>` verifies the `X-Matrix` request signature
//! (spec: "Request Authentication") and names the origin server; `Unsigned<T>` parses the
//! endpoints that need none (the key endpoints).

use std::{collections::BTreeMap, sync::Arc};

use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use bytes::Bytes;
use ruma::{
    MilliSecondsSinceUnixEpoch, OwnedServerName,
    api::{IncomingRequest, federation::authentication::XMatrix},
    serde::Base64,
};
use tessera_core::Services;

use crate::edge::{ApiError, parse_request, read_body};

/// A request of another server, its signature verified.
pub struct Signed<T> {
    pub origin: OwnedServerName,
    pub body: T,
}

pub struct Unsigned<T>(pub T);

async fn body_and_args(
    request: Request,
    services: &Arc<Services>,
) -> Result<(http::request::Parts, Bytes, Vec<String>), ApiError> {
    let (mut parts, body) = request.into_parts();
    let limit = services.config.limits.max_request_body_bytes;
    let bytes = read_body(&parts.headers, body, limit).await?;
    let params = RawPathParams::from_request_parts(&mut parts, services)
        .await
        .map_err(|e| ApiError::invalid_param(e.to_string()))?;
    let args = params.iter().map(|(_, value)| value.to_owned()).collect();
    Ok((parts, bytes, args))
}

impl<T> FromRequest<Arc<Services>> for Unsigned<T>
where
    T: IncomingRequest + Send + 'static,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, services: &Arc<Services>) -> Result<Self, ApiError> {
        let (parts, bytes, args) = body_and_args(request, services).await?;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Ok(Self(parse_request::<T>(parts, &bytes, &args)?))
    }
}

impl<T> FromRequest<Arc<Services>> for Signed<T>
where
    T: IncomingRequest + Send + 'static,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, services: &Arc<Services>) -> Result<Self, ApiError> {
        let (parts, bytes, args) = body_and_args(request, services).await?;
        let origin = verify(&parts, &bytes, services).await?;
        tracing::Span::current().record("user", origin.as_str());
        services.federation.outbound.server_is_up(&origin);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let body = parse_request::<T>(parts, &bytes, &args)?;
        Ok(Self { origin, body })
    }
}

/// Checks the `X-Matrix` authorization of a request: addressed to this server, signed by a
/// current key of its origin over method, URI, origin, destination and body.
async fn verify(
    parts: &http::request::Parts,
    body: &Bytes,
    services: &Services,
) -> Result<OwnedServerName, ApiError> {
    let our_name = &services.config.server_name;
    // A request may carry several X-Matrix headers (one per key); the first valid one counts.
    let headers: Vec<XMatrix> = parts
        .headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| XMatrix::parse(value).ok())
        .collect();
    if headers.is_empty() {
        return Err(ApiError::unauthorized(
            "Missing or malformed X-Matrix Authorization header",
        ));
    }
    let request = http::Request::builder()
        .method(parts.method.clone())
        .uri(parts.uri.clone())
        .body(body.as_ref())
        .map_err(|e| ApiError::bad_json(e.to_string()))?;
    let mut failure = String::new();
    for header in headers {
        if header.destination.as_ref().is_some_and(|d| d != our_name) {
            failure = format!(
                "The request is addressed to {}, not to this server ({our_name})",
                header.destination.as_deref().map_or("", |d| d.as_str())
            );
            continue;
        }
        if header.origin == *our_name {
            failure = "A request cannot come from this server's own name".to_owned();
            continue;
        }
        let now: u64 = MilliSecondsSinceUnixEpoch::now().get().into();
        let key = match services
            .federation
            .keys
            .verify_key(&header.origin, header.key.as_str(), now)
            .await
        {
            Ok(key) => key,
            Err(e) => {
                failure = format!("Cannot verify the request signature: {e}");
                continue;
            }
        };
        let Ok(key) = Base64::parse(&key) else {
            failure = format!("The key {} of {} is not base64", header.key, header.origin);
            continue;
        };
        let map = BTreeMap::from([(
            header.origin.to_string(),
            BTreeMap::from([(header.key.to_string(), key)]),
        )]);
        match header.verify_http_request(&request, our_name, &map) {
            Ok(()) => return Ok(header.origin),
            Err(e) => failure = format!("The request signature does not verify: {e}"),
        }
    }
    Err(ApiError::unauthorized(failure))
}
