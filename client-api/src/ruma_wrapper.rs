//! `Ruma<T>`: the extractor that turns any ruma request type into a typed request plus the
//! authenticated caller, so a handler's signature is the spec's endpoint.

use std::{
    any::TypeId,
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use axum::extract::{ConnectInfo, FromRequest, RawPathParams, Request};
use http::header;
use ruma::api::{
    IncomingRequest,
    auth_scheme::{AccessToken, AccessTokenOptional, AppserviceToken},
};
use tessera_core::{
    Services,
    client_address::{client_address, rate_limit_key},
    users::Caller,
};
use tessera_federation::edge::{ApiError, parse_request, read_body};

use crate::route::EmptyStateKey;

pub struct Ruma<T> {
    pub body: T,
    /// The body as received, for the few endpoints that keep the client's own JSON.
    pub raw_body: bytes::Bytes,
    caller: Option<Caller>,
    pub ip: Option<IpAddr>,
}

impl<T> Ruma<T> {
    /// The authenticated caller: present for every endpoint whose scheme requires a token,
    /// since the extractor refuses such requests without one.
    pub fn caller(&self) -> Result<&Caller, ApiError> {
        self.caller.as_ref().ok_or_else(ApiError::missing_token)
    }

    /// The caller, if it is `user_id`: users may only touch their own profile, account data
    /// and filters. `action` completes "You cannot ... another user".
    pub fn caller_is(&self, user_id: &ruma::UserId, action: &str) -> Result<&Caller, ApiError> {
        let caller = self.caller()?;
        if caller.user_id != user_id {
            return Err(ApiError::forbidden(format!(
                "You cannot {action} another user"
            )));
        }
        Ok(caller)
    }

    pub fn ip_key(&self) -> String {
        ClientIp(self.ip).key()
    }
}

/// The client's address: the TCP peer, or behind a trusted proxy the one it names.
fn client_ip(parts: &http::request::Parts, services: &Services) -> Option<IpAddr> {
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>()?.0.ip();
    let forwarded_for = parts
        .headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    Some(client_address(
        peer,
        forwarded_for,
        &services.config.trusted_proxies,
    ))
}

/// The client's address, the key of per-address rate limits.
pub struct ClientIp(Option<IpAddr>);

impl ClientIp {
    pub fn key(&self) -> String {
        self.0.map_or_else(|| "unknown".to_owned(), rate_limit_key)
    }
}

impl axum::extract::FromRequestParts<Arc<Services>> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        services: &Arc<Services>,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(client_ip(parts, services)))
    }
}

enum TokenRule {
    Required,
    Optional,
    None,
}

fn token_rule<T: IncomingRequest>() -> TokenRule
where
    T::Authentication: 'static,
{
    // `AppserviceTokenOptional` (`/login`, `/register`) only matters to application services,
    // which come later; a user's stale token there is ignored, as Synapse does, so a client
    // holding a dead session can still log in again.
    let scheme = TypeId::of::<T::Authentication>();
    if scheme == TypeId::of::<AccessToken>() || scheme == TypeId::of::<AppserviceToken>() {
        TokenRule::Required
    } else if scheme == TypeId::of::<AccessTokenOptional>() {
        TokenRule::Optional
    } else {
        TokenRule::None
    }
}

/// The access token from `Authorization: Bearer` or, as older clients send it, `?access_token=`.
pub(crate) fn access_token(parts: &http::request::Parts) -> Option<String> {
    if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        return value.strip_prefix("Bearer ").map(|t| t.trim().to_owned());
    }
    let query = parts.uri.query()?;
    form_urlencoded_value(query, "access_token")
}

pub(crate) fn form_urlencoded_value(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(input: &str) -> String {
    let hex = |b: u8| {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    };
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| Some(hex(bytes[i + 1])? * 16 + hex(bytes[i + 2])?))
            .flatten();
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl<T> FromRequest<Arc<Services>> for Ruma<T>
where
    T: IncomingRequest + Send + 'static,
    T::Authentication: 'static,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, services: &Arc<Services>) -> Result<Self, ApiError> {
        let (mut parts, body) = request.into_parts();
        let ip = client_ip(&parts, services);

        let caller = match (token_rule::<T>(), access_token(&parts)) {
            (TokenRule::None, _) | (TokenRule::Optional, None) => None,
            (TokenRule::Required, None) => return Err(ApiError::missing_token()),
            (TokenRule::Required | TokenRule::Optional, Some(token)) => {
                let caller = services.users.authenticate(&token).await?;
                tracing::Span::current().record("user", caller.user_id.as_str());
                Some(caller)
            }
        };

        let limit = services.config.limits.max_request_body_bytes;
        let bytes = read_body(&parts.headers, body, limit).await?;

        use axum::extract::FromRequestParts;
        let params = RawPathParams::from_request_parts(&mut parts, services)
            .await
            .map_err(|e| {
                ApiError::new(
                    http::StatusCode::BAD_REQUEST,
                    "M_INVALID_PARAM",
                    e.to_string(),
                )
            })?;
        let mut path_args: Vec<&str> = params.iter().map(|(_, value)| value).collect();
        if parts.extensions.get::<EmptyStateKey>().is_some() {
            path_args.push("");
        }
        let body = parse_request::<T>(parts, &bytes, &path_args)?;
        Ok(Self {
            body,
            raw_body: bytes,
            caller,
            ip,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_token_is_percent_decoded() {
        assert_eq!(
            form_urlencoded_value("a=1&access_token=tsr_a%2Bb", "access_token").as_deref(),
            Some("tsr_a+b")
        );
        assert_eq!(form_urlencoded_value("a=1", "access_token"), None);
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
