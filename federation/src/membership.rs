//! Other servers' users joining and leaving rooms on this server (spec: Server-Server API,
//! "Joining Rooms", "Leaving Rooms (Rejecting Invites)"): templates and the signed events; and
//! invites of local users by other servers ("Inviting to a room").

use std::sync::Arc;

use axum::extract::State;
use ruma::api::federation::membership::{
    RawStrippedState, create_invite,
    create_join_event::{self, v2::RoomState},
    create_knock_event, create_leave_event, prepare_join_event, prepare_knock_event,
    prepare_leave_event,
};
use serde_json::value::RawValue;
use tessera_core::Services;

use crate::{
    edge::{ApiError, RumaResponse},
    events::raw_pdus,
    extract::Signed,
};

/// `GET /_matrix/federation/v1/make_join/{roomId}/{userId}`.
pub async fn make_join(
    State(s): State<Arc<Services>>,
    request: Signed<prepare_join_event::v1::Request>,
) -> Result<RumaResponse<prepare_join_event::v1::Response>, ApiError> {
    let body = &request.body;
    check_user_of_origin(&request.origin, &body.user_id)?;
    let (version, template) = s
        .rooms
        .member_template(&body.room_id, &body.user_id, "join", Some(&body.ver))
        .await?;
    let event = raw_template(&template)?;
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
    s.receive_member_event(&request.origin, room_id, &body.event_id, &body.pdu, "join")
        .await?;
    let (state, auth_chain) = s
        .rooms
        .state_and_auth_chain_before(room_id, &body.event_id)
        .await?;
    let mut room_state = RoomState::new();
    room_state.state = raw_pdus(state)?;
    room_state.auth_chain = raw_pdus(auth_chain)?;
    Ok(RumaResponse(create_join_event::v2::Response::new(
        room_state,
    )))
}

/// `GET /_matrix/federation/v1/make_leave/{roomId}/{userId}`.
pub async fn make_leave(
    State(s): State<Arc<Services>>,
    request: Signed<prepare_leave_event::v1::Request>,
) -> Result<RumaResponse<prepare_leave_event::v1::Response>, ApiError> {
    let body = &request.body;
    check_user_of_origin(&request.origin, &body.user_id)?;
    let (version, template) = s
        .rooms
        .member_template(&body.room_id, &body.user_id, "leave", None)
        .await?;
    Ok(RumaResponse(prepare_leave_event::v1::Response::new(
        Some(version),
        raw_template(&template)?,
    )))
}

/// `PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}`.
pub async fn send_leave(
    State(s): State<Arc<Services>>,
    request: Signed<create_leave_event::v2::Request>,
) -> Result<RumaResponse<create_leave_event::v2::Response>, ApiError> {
    let body = &request.body;
    s.receive_member_event(
        &request.origin,
        &body.room_id,
        &body.event_id,
        &body.pdu,
        "leave",
    )
    .await?;
    Ok(RumaResponse(create_leave_event::v2::Response::new()))
}

/// `GET /_matrix/federation/v1/make_knock/{roomId}/{userId}`.
pub async fn make_knock(
    State(s): State<Arc<Services>>,
    request: Signed<prepare_knock_event::v1::Request>,
) -> Result<RumaResponse<prepare_knock_event::v1::Response>, ApiError> {
    let body = &request.body;
    check_user_of_origin(&request.origin, &body.user_id)?;
    let (version, template) = s
        .rooms
        .member_template(&body.room_id, &body.user_id, "knock", Some(&body.ver))
        .await?;
    Ok(RumaResponse(prepare_knock_event::v1::Response::new(
        version,
        raw_template(&template)?,
    )))
}

/// `PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}`: checks and persists the knock,
/// then answers with the room's descriptive state for the knocking user's client.
pub async fn send_knock(
    State(s): State<Arc<Services>>,
    request: Signed<create_knock_event::v1::Request>,
) -> Result<RumaResponse<create_knock_event::v1::Response>, ApiError> {
    let body = &request.body;
    s.receive_member_event(
        &request.origin,
        &body.room_id,
        &body.event_id,
        &body.pdu,
        "knock",
    )
    .await?;
    let state = raw_pdus(s.rooms.invite_state(&body.room_id).await?)?
        .into_iter()
        .map(RawStrippedState::Pdu)
        .collect();
    Ok(RumaResponse(create_knock_event::v1::Response::new(state)))
}

/// `PUT /_matrix/federation/v2/invite/{roomId}/{eventId}`: an invite of a local user, answered
/// with this server's signature added.
pub async fn invite(
    State(s): State<Arc<Services>>,
    request: Signed<create_invite::v2::Request>,
) -> Result<RumaResponse<create_invite::v2::Response>, ApiError> {
    let event = s.receive_invite(&request.origin, &request.body).await?;
    Ok(RumaResponse(create_invite::v2::Response::new(event)))
}

fn check_user_of_origin(origin: &ruma::ServerName, user_id: &ruma::UserId) -> Result<(), ApiError> {
    if user_id.server_name() != origin {
        return Err(ApiError::forbidden(format!(
            "{origin} cannot act for {user_id}"
        )));
    }
    Ok(())
}

fn raw_template(template: &serde_json::Value) -> Result<Box<RawValue>, ApiError> {
    serde_json::value::to_raw_value(template).map_err(|e| ApiError::internal(e.to_string()))
}
