//! `JsonBody<T>`: a JSON body for the few endpoints ruma has no type for (Synapse's admin API),
//! with the same limits and errcodes as `Ruma<T>`.

use std::sync::Arc;

use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;
use tessera_core::Services;
use tessera_federation::edge::{ApiError, read_body};

pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<Services>> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, services: &Arc<Services>) -> Result<Self, ApiError> {
        let (parts, body) = request.into_parts();
        let bytes = read_body(
            &parts.headers,
            body,
            services.config.limits.max_request_body_bytes,
        )
        .await?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::not_json(format!("Request body is not valid JSON: {e}")))?;
        serde_json::from_value(value)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_json(format!("Request body has the wrong shape: {e}")))
    }
}
