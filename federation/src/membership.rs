//! Joins of other servers' users to rooms on this server (spec: Server-Server API, "Joining
//! Rooms"): the join template and the signed join.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::federation::membership::{
    create_join_event::{self, v2::RoomState},
    prepare_join_event,
};
use serde_json::value::RawValue;
use tessera_core::Services;

use crate::{
    edge::{ApiError, RumaResponse},
    extract::Signed,
};

/// `GET /_matrix/federation/v1/make_join/{roomId}/{userId}`.
pub async fn make_join(
    State(s): State<Arc<Services>>,
    request: Signed<prepare_join_event::v1::Request>,
) -> Result<RumaResponse<prepare_join_event::v1::Response>, ApiError> {
    let body = &request.body;
    if body.user_id.server_name() != request.origin {
        return Err(ApiError::forbidden(format!(
            "{} cannot ask to join for {}",
            request.origin, body.user_id
        )));
    }
    let (version, template) = s
        .rooms
        .join_template(&body.room_id, &body.user_id, &body.ver)
        .await?;
    let event = serde_json::value::to_raw_value(&template)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut response = prepare_join_event::v1::Response::new(event);
    response.room_version = Some(version);
    Ok(RumaResponse(response))
}

/// `PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}`: checks and persists the join,
/// then answers with the room's state before it and that state's auth chain.
pub async fn send_join(
    State(s): State<Arc<Services>>,
    request: Signed<create_join_event::v2::Request>,
) -> Result<RumaResponse<create_join_event::v2::Response>, ApiError> {
    let body = &request.body;
    let room_id = &body.room_id;
    let version = s.rooms.room_version(room_id).await?.ok_or_else(|| {
        ApiError::new(
            http::StatusCode::NOT_FOUND,
            "M_NOT_FOUND",
            format!("Unknown room {room_id}"),
        )
    })?;
    let rules = version
        .rules()
        .ok_or_else(|| ApiError::internal(format!("unknown room version {version}")))?;
    let checked = s
        .federation
        .keys
        .check_pdu(&request.origin, room_id, &rules, &body.pdu)
        .await
        .map_err(|e| ApiError::bad_json(e.to_string()))?;
    if checked.event_id != body.event_id {
        return Err(ApiError::bad_json(format!(
            "The event's ID is {}, not {}",
            checked.event_id, body.event_id
        )));
    }
    let field = |name: &str| {
        checked
            .object
            .get(name)
            .and_then(ruma::CanonicalJsonValue::as_str)
    };
    let membership = checked
        .object
        .get("content")
        .and_then(ruma::CanonicalJsonValue::as_object)
        .and_then(|c| c.get("membership"))
        .and_then(ruma::CanonicalJsonValue::as_str);
    let sender = field("sender").unwrap_or_default();
    let sender_server = sender.rsplit_once(':').map(|(_, server)| server);
    if field("type") != Some("m.room.member")
        || membership != Some("join")
        || field("state_key") != Some(sender)
        || sender_server.is_none_or(|server| server != request.origin.as_str())
    {
        return Err(ApiError::bad_json(format!(
            "Not a join of a user of {} to {room_id}",
            request.origin
        )));
    }
    let json =
        serde_json::to_string(&checked.object).map_err(|e| ApiError::internal(e.to_string()))?;
    s.rooms
        .receive_pdu(room_id, &checked.event_id, json.into())
        .await?;
    let (state, auth_chain) = s
        .rooms
        .state_and_auth_chain_before(room_id, &checked.event_id)
        .await?;
    let raw = |jsons: Vec<Arc<str>>| {
        jsons
            .into_iter()
            .map(|json| RawValue::from_string(json.to_string()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ApiError::internal(e.to_string()))
    };
    let mut room_state = RoomState::new();
    room_state.state = raw(state)?;
    room_state.auth_chain = raw(auth_chain)?;
    Ok(RumaResponse(create_join_event::v2::Response::new(
        room_state,
    )))
}
