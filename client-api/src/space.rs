//! `GET /rooms/{roomId}/hierarchy` (spec: "Spaces"): the space tree below a room.

use std::sync::Arc;

use axum::{Router, extract::State};
use ruma::api::client::space::{SpaceHierarchyRoomsChunk, get_hierarchy};
use tessera_core::{Services, federation::hierarchy::HierarchyQuery};
use tessera_federation::edge::{ApiError, RumaResponse};

use crate::{route::RumaRoutes, ruma_wrapper::Ruma};

pub(crate) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router.ruma::<get_hierarchy::v1::Request, _, _>(hierarchy)
}

async fn hierarchy(
    State(s): State<Arc<Services>>,
    req: Ruma<get_hierarchy::v1::Request>,
) -> Result<RumaResponse<get_hierarchy::v1::Response>, ApiError> {
    let caller = req.caller()?;
    let body = &req.body;
    let page = s
        .space_hierarchy(
            &caller.user_id,
            &body.room_id,
            HierarchyQuery {
                from: body.from.clone(),
                limit: body.limit,
                max_depth: body.max_depth,
                suggested_only: body.suggested_only,
            },
        )
        .await?;
    let mut response = get_hierarchy::v1::Response::new();
    response.next_batch = page.next_batch;
    response.rooms = page
        .rooms
        .into_iter()
        .map(|room| SpaceHierarchyRoomsChunk::new(room.summary, room.children_state))
        .collect();
    Ok(RumaResponse(response))
}
