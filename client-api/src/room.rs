//! Room creation (`POST /createRoom`) and `GET /joined_rooms`.

use std::sync::Arc;

use axum::{Router, extract::State};
use ruma::api::client::{
    membership::joined_rooms,
    room::{Visibility, create_room},
};
use serde_json::Value as JsonValue;
use tessera_core::{Services, rooms::CreateRoom};
use tessera_federation::edge::{ApiError, RumaResponse};

use crate::{route::RumaRoutes, ruma_wrapper::Ruma};

type ApiResult<T> = Result<RumaResponse<T>, ApiError>;

pub(crate) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<create_room::v3::Request, _, _>(create)
        .ruma::<joined_rooms::v3::Request, _, _>(joined)
}

fn json_of<T>(raw: &ruma::serde::Raw<T>) -> Result<JsonValue, ApiError> {
    serde_json::from_str(raw.json().get()).map_err(|e| ApiError::bad_json(e.to_string()))
}

async fn create(
    State(s): State<Arc<Services>>,
    req: Ruma<create_room::v3::Request>,
) -> ApiResult<create_room::v3::Response> {
    let caller = req.caller()?;
    let body = &req.body;
    let mut initial_state = Vec::with_capacity(body.initial_state.len());
    for event in &body.initial_state {
        let event = json_of(event)?;
        let kind = event
            .get("type")
            .and_then(JsonValue::as_str)
            .ok_or_else(|| {
                ApiError::bad_json("Each initial_state event needs a string \"type\"")
            })?;
        let state_key = event
            .get("state_key")
            .map(|k| {
                k.as_str()
                    .ok_or_else(|| ApiError::bad_json("state_key must be a string"))
            })
            .transpose()?
            .unwrap_or_default();
        let content = event.get("content").cloned().unwrap_or_default();
        initial_state.push((kind.to_owned(), state_key.to_owned(), content));
    }
    let request = CreateRoom {
        creation_content: body.creation_content.as_ref().map(json_of).transpose()?,
        initial_state,
        invite: body.invite.clone(),
        is_direct: body.is_direct,
        name: body.name.clone(),
        topic: body.topic.clone(),
        power_level_content_override: body
            .power_level_content_override
            .as_ref()
            .map(json_of)
            .transpose()?,
        preset: body.preset.as_ref().map(|p| p.as_str().to_owned()),
        room_alias_name: body.room_alias_name.clone(),
        room_version: body.room_version.clone(),
        public: body.visibility == Visibility::Public,
    };
    let room_id = s.create_room(&caller.user_id, request).await?;
    Ok(RumaResponse(create_room::v3::Response::new(room_id)))
}

async fn joined(
    State(s): State<Arc<Services>>,
    req: Ruma<joined_rooms::v3::Request>,
) -> ApiResult<joined_rooms::v3::Response> {
    let caller = req.caller()?;
    let rooms = s.rooms.joined_rooms(&caller.user_id).await?;
    Ok(RumaResponse(joined_rooms::v3::Response::new(rooms)))
}
