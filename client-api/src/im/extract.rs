//! Extractors of the IM endpoints, which ruma has no types for: the authenticated caller and
//! typed path parameters, refusing bad input with Matrix errcodes.

use std::{str::FromStr, sync::Arc};

use axum::extract::{FromRequestParts, RawPathParams};
use http::{StatusCode, request::Parts};
use tessera_core::{Services, users::Caller};
use tessera_federation::edge::ApiError;

use crate::ruma_wrapper::access_token;

/// The user (and device) the access token belongs to.
pub struct Authed(pub Caller);

impl FromRequestParts<Arc<Services>> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        services: &Arc<Services>,
    ) -> Result<Self, ApiError> {
        let token = access_token(parts).ok_or_else(ApiError::missing_token)?;
        let caller = services.users.authenticate(&token).await?;
        tracing::Span::current().record("user", caller.user_id.as_str());
        Ok(Self(caller))
    }
}

/// The route's path parameters, decoded.
pub struct PathParams(Vec<(String, String)>);

impl PathParams {
    /// The parameter `name`, parsed (a user ID, room ID, ...): `M_INVALID_PARAM` if it does
    /// not parse.
    pub fn get<T: FromStr>(&self, name: &str) -> Result<T, ApiError>
    where
        T::Err: std::fmt::Display,
    {
        let value = self
            .0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .ok_or_else(|| invalid(format!("Missing path parameter {name}")))?;
        value
            .parse()
            .map_err(|e| invalid(format!("Invalid {name} {value:?}: {e}")))
    }
}

impl FromRequestParts<Arc<Services>> for PathParams {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        services: &Arc<Services>,
    ) -> Result<Self, ApiError> {
        let params = RawPathParams::from_request_parts(parts, services)
            .await
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Self(
            params
                .iter()
                .map(|(key, value)| (key.to_owned(), value.to_owned()))
                .collect(),
        ))
    }
}

pub fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "M_INVALID_PARAM", message)
}
