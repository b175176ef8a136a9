//! Stored filters: `POST /user/{userId}/filter`, `GET /user/{userId}/filter/{filterId}`.

use std::sync::Arc;

use axum::{Json, Router, extract::State};
use ruma::api::client::filter::{create_filter, get_filter};
use serde_json::value::RawValue;
use tessera_core::Services;
use tessera_federation::edge::{ApiError, RumaResponse};

use crate::{route::RumaRoutes, ruma_wrapper::Ruma};

pub(crate) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<create_filter::v3::Request, _, _>(create)
        .ruma::<get_filter::v3::Request, _, _>(get)
}

async fn create(
    State(s): State<Arc<Services>>,
    req: Ruma<create_filter::v3::Request>,
) -> Result<RumaResponse<create_filter::v3::Response>, ApiError> {
    req.caller_is(&req.body.user_id, "create filters for")?;
    let raw: &RawValue = serde_json::from_slice(&req.raw_body)
        .map_err(|e| ApiError::not_json(format!("Request body is not valid JSON: {e}")))?;
    let id = s
        .users
        .create_filter(&req.body.user_id, &req.body.filter, raw)
        .await?;
    Ok(RumaResponse(create_filter::v3::Response::new(id)))
}

/// Answers with the stored JSON itself rather than ruma's re-serialization, which would drop
/// the fields the client set to their defaults.
async fn get(
    State(s): State<Arc<Services>>,
    req: Ruma<get_filter::v3::Request>,
) -> Result<Json<Box<RawValue>>, ApiError> {
    req.caller_is(&req.body.user_id, "read the filters of")?;
    Ok(Json(
        s.users
            .filter(&req.body.user_id, &req.body.filter_id)
            .await?,
    ))
}
