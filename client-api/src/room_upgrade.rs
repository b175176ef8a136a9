//! `POST /rooms/{roomId}/upgrade` (spec: "Room Upgrades").

use std::sync::Arc;

use axum::{Router, extract::State};
use ruma::api::client::room::upgrade_room;
use tessera_core::Services;
use tessera_federation::edge::{ApiError, RumaResponse};

use crate::{route::RumaRoutes, ruma_wrapper::Ruma};

pub(crate) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router.ruma::<upgrade_room::v3::Request, _, _>(upgrade)
}

async fn upgrade(
    State(s): State<Arc<Services>>,
    req: Ruma<upgrade_room::v3::Request>,
) -> Result<RumaResponse<upgrade_room::v3::Response>, ApiError> {
    let caller = req.caller()?;
    let body = &req.body;
    let replacement = s
        .rooms
        .upgrade_room(
            &caller.user_id,
            &body.room_id,
            &body.new_version,
            body.additional_creators.clone(),
        )
        .await?;
    Ok(RumaResponse(upgrade_room::v3::Response::new(replacement)))
}
