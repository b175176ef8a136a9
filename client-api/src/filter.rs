//! Stored filters: `POST /user/{userId}/filter`, `GET /user/{userId}/filter/{filterId}`.

use std::sync::Arc;

use axum::{Router, extract::State};
use ruma::api::client::filter::{create_filter, get_filter};
use tessera_core::Services;
use tessera_federation::edge::{ApiError, RumaResponse};

use crate::{route::RumaRoutes, ruma_wrapper::Ruma};

type ApiResult<T> = Result<RumaResponse<T>, ApiError>;

pub(crate) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<create_filter::v3::Request, _, _>(create)
        .ruma::<get_filter::v3::Request, _, _>(get)
}

async fn create(
    State(s): State<Arc<Services>>,
    req: Ruma<create_filter::v3::Request>,
) -> ApiResult<create_filter::v3::Response> {
    if req.caller()?.user_id != req.body.user_id {
        return Err(ApiError::forbidden(
            "You cannot create filters for another user",
        ));
    }
    let id = s
        .users
        .create_filter(&req.body.user_id, &req.body.filter)
        .await?;
    Ok(RumaResponse(create_filter::v3::Response::new(id)))
}

async fn get(
    State(s): State<Arc<Services>>,
    req: Ruma<get_filter::v3::Request>,
) -> ApiResult<get_filter::v3::Response> {
    if req.caller()?.user_id != req.body.user_id {
        return Err(ApiError::forbidden(
            "You cannot read another user's filters",
        ));
    }
    let filter = s
        .users
        .filter(&req.body.user_id, &req.body.filter_id)
        .await?;
    Ok(RumaResponse(get_filter::v3::Response::new(filter)))
}
