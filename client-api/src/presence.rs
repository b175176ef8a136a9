//! Presence: `GET` and `PUT /presence/{userId}/status`.

use std::{sync::Arc, time::Duration};

use axum::{Router, extract::State};
use ruma::api::client::presence::{get_presence, set_presence};
use tessera_core::Services;
use tessera_federation::edge::{ApiError, RumaResponse};

use crate::{route::RumaRoutes, ruma_wrapper::Ruma};

type ApiResult<T> = Result<RumaResponse<T>, ApiError>;

pub(crate) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<get_presence::v3::Request, _, _>(get_status)
        .ruma::<set_presence::v3::Request, _, _>(set_status)
}

async fn get_status(
    State(s): State<Arc<Services>>,
    req: Ruma<get_presence::v3::Request>,
) -> ApiResult<get_presence::v3::Response> {
    let caller = req.caller()?;
    let content = s.presence.get(&caller.user_id, &req.body.user_id).await?;
    let mut response = get_presence::v3::Response::new(content.presence);
    response.status_msg = content.status_msg;
    response.currently_active = content.currently_active;
    response.last_active_ago = content
        .last_active_ago
        .map(|ms| Duration::from_millis(ms.into()));
    Ok(RumaResponse(response))
}

async fn set_status(
    State(s): State<Arc<Services>>,
    req: Ruma<set_presence::v3::Request>,
) -> ApiResult<set_presence::v3::Response> {
    req.caller_is(&req.body.user_id, "set the presence of")?;
    let body = req.body;
    s.presence
        .set(&body.user_id, &body.presence, body.status_msg)
        .await?;
    Ok(RumaResponse(set_presence::v3::Response::new()))
}
