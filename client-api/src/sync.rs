//! `GET /sync` (spec: "Syncing").

use std::sync::Arc;

use axum::{Router, extract::State};
use ruma::api::client::sync::sync_events;
use tessera_core::{Services, sync::SyncRequest};
use tessera_federation::edge::{ApiError, RumaResponse};

use crate::{route::RumaRoutes, ruma_wrapper::Ruma};

pub(crate) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router.ruma::<sync_events::v3::Request, _, _>(sync)
}

async fn sync(
    State(s): State<Arc<Services>>,
    req: Ruma<sync_events::v3::Request>,
) -> Result<RumaResponse<sync_events::v3::Response>, ApiError> {
    let caller = req.caller()?.clone();
    let body = req.body;
    let filter = s.sync_filter(&caller.user_id, body.filter).await?;
    let response = s
        .sync(SyncRequest {
            user_id: caller.user_id,
            device_id: caller.device_id,
            since: body.since,
            filter,
            full_state: body.full_state,
            use_state_after: body.use_state_after,
            timeout: body.timeout,
            set_presence: body.set_presence,
        })
        .await?;
    Ok(RumaResponse(response))
}
