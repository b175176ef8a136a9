//! `POST /_matrix/client/unstable/im.tessera/dm`: the caller's direct chat with a user.

use std::sync::Arc;

use axum::{Json, Router, extract::State, routing::post};
use ruma::OwnedUserId;
use serde::Deserialize;
use serde_json::{Value as JsonValue, json};
use tessera_core::Services;
use tessera_federation::edge::ApiError;

use super::{
    PREFIX,
    extract::{Authed, invalid},
};
use crate::json_body::JsonBody;

pub(super) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router.route(&format!("{PREFIX}/dm"), post(direct_room))
}

#[derive(Deserialize)]
struct DirectRoomRequest {
    user_id: String,
}

async fn direct_room(
    State(s): State<Arc<Services>>,
    Authed(caller): Authed,
    JsonBody(req): JsonBody<DirectRoomRequest>,
) -> Result<Json<JsonValue>, ApiError> {
    let other = OwnedUserId::try_from(req.user_id.as_str())
        .map_err(|e| invalid(format!("Invalid user_id {:?}: {e}", req.user_id)))?;
    let room = s.im.direct_room(&caller.user_id, &other).await?;
    Ok(Json(
        json!({ "room_id": room.room_id, "created": room.created }),
    ))
}
