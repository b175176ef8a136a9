//! Send-to-device messaging (spec: `PUT /sendToDevice/{eventType}/{txnId}`).

use std::sync::Arc;

use axum::{Router, extract::State};
use ruma::api::client::to_device::send_event_to_device;
use tessera_core::Services;
use tessera_federation::edge::{ApiError, RumaResponse};

use crate::{route::RumaRoutes, ruma_wrapper::Ruma};

pub(crate) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router.ruma::<send_event_to_device::v3::Request, _, _>(send)
}

async fn send(
    State(s): State<Arc<Services>>,
    req: Ruma<send_event_to_device::v3::Request>,
) -> Result<RumaResponse<send_event_to_device::v3::Response>, ApiError> {
    let caller = req.caller()?;
    s.e2ee
        .send_to_device(
            caller,
            &req.body.event_type.to_string(),
            req.body.txn_id.as_str(),
            &req.body.messages,
        )
        .await?;
    Ok(RumaResponse(send_event_to_device::v3::Response::new()))
}
