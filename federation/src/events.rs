//! Events served to other servers in a room (spec: Server-Server API, "Retrieving events",
//! "Backfilling and retrieving missing events"): the logic and the room-membership guard are
//! in `tessera_core::rooms` (`served.rs`).

use std::sync::Arc;

use axum::extract::State;
use ruma::{
    MilliSecondsSinceUnixEpoch,
    api::{
        Direction as ApiDirection,
        federation::{
            authorization::get_event_authorization,
            backfill::get_backfill,
            event::{
                get_event, get_event_by_timestamp, get_missing_events, get_room_state,
                get_room_state_ids,
            },
        },
    },
};
use serde_json::value::RawValue;
use tessera_core::{Services, rooms::Direction};

use crate::{
    edge::{ApiError, RumaResponse},
    extract::Signed,
};

/// Stored PDUs as the raw JSON of an answer.
pub(crate) fn raw_pdus(jsons: Vec<Arc<str>>) -> Result<Vec<Box<RawValue>>, ApiError> {
    jsons
        .into_iter()
        .map(|json| RawValue::from_string(json.to_string()))
        .collect::<Result<_, _>>()
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// `GET /_matrix/federation/v1/event/{eventId}`.
pub async fn event(
    State(s): State<Arc<Services>>,
    request: Signed<get_event::v1::Request>,
) -> Result<RumaResponse<get_event::v1::Response>, ApiError> {
    let json = s
        .rooms
        .event_for_server(&request.origin, &request.body.event_id)
        .await?;
    let pdu = raw_pdus(vec![json])?.remove(0);
    Ok(RumaResponse(get_event::v1::Response::new(
        s.config.server_name.clone(),
        MilliSecondsSinceUnixEpoch::now(),
        pdu,
    )))
}

/// `GET /_matrix/federation/v1/state/{roomId}?event_id=`.
pub async fn state(
    State(s): State<Arc<Services>>,
    request: Signed<get_room_state::v1::Request>,
) -> Result<RumaResponse<get_room_state::v1::Response>, ApiError> {
    let body = &request.body;
    let (state, auth_chain) = s
        .rooms
        .state_for_server(&request.origin, &body.room_id, &body.event_id)
        .await?;
    Ok(RumaResponse(get_room_state::v1::Response::new(
        raw_pdus(auth_chain.into_values().collect())?,
        raw_pdus(state.into_values().collect())?,
    )))
}

/// `GET /_matrix/federation/v1/state_ids/{roomId}?event_id=`.
pub async fn state_ids(
    State(s): State<Arc<Services>>,
    request: Signed<get_room_state_ids::v1::Request>,
) -> Result<RumaResponse<get_room_state_ids::v1::Response>, ApiError> {
    let body = &request.body;
    let (state, auth_chain) = s
        .rooms
        .state_for_server(&request.origin, &body.room_id, &body.event_id)
        .await?;
    Ok(RumaResponse(get_room_state_ids::v1::Response::new(
        auth_chain.into_keys().collect(),
        state.into_keys().collect(),
    )))
}

/// `GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}`.
pub async fn event_auth(
    State(s): State<Arc<Services>>,
    request: Signed<get_event_authorization::v1::Request>,
) -> Result<RumaResponse<get_event_authorization::v1::Response>, ApiError> {
    let body = &request.body;
    let chain = s
        .rooms
        .auth_chain_for_server(&request.origin, &body.room_id, &body.event_id)
        .await?;
    Ok(RumaResponse(get_event_authorization::v1::Response::new(
        raw_pdus(chain)?,
    )))
}

/// `GET /_matrix/federation/v1/backfill/{roomId}?v=&limit=`.
pub async fn backfill(
    State(s): State<Arc<Services>>,
    request: Signed<get_backfill::v1::Request>,
) -> Result<RumaResponse<get_backfill::v1::Response>, ApiError> {
    let body = &request.body;
    let pdus = s
        .rooms
        .backfill_for_server(&request.origin, &body.room_id, &body.v, body.limit)
        .await?;
    Ok(RumaResponse(get_backfill::v1::Response::new(
        s.config.server_name.clone(),
        MilliSecondsSinceUnixEpoch::now(),
        raw_pdus(pdus)?,
    )))
}

/// `POST /_matrix/federation/v1/get_missing_events/{roomId}`.
pub async fn missing_events(
    State(s): State<Arc<Services>>,
    request: Signed<get_missing_events::v1::Request>,
) -> Result<RumaResponse<get_missing_events::v1::Response>, ApiError> {
    let body = &request.body;
    let events = s
        .rooms
        .missing_events_for_server(
            &request.origin,
            &body.room_id,
            &body.earliest_events,
            &body.latest_events,
            body.limit,
            body.min_depth,
        )
        .await?;
    Ok(RumaResponse(get_missing_events::v1::Response::new(
        raw_pdus(events)?,
    )))
}

/// `GET /_matrix/federation/v1/timestamp_to_event/{roomId}`.
pub async fn timestamp_to_event(
    State(s): State<Arc<Services>>,
    request: Signed<get_event_by_timestamp::v1::Request>,
) -> Result<RumaResponse<get_event_by_timestamp::v1::Response>, ApiError> {
    let body = &request.body;
    let dir = match body.dir {
        ApiDirection::Forward => Direction::Forward,
        _ => Direction::Backward,
    };
    let (event_id, origin_server_ts) = s
        .rooms
        .event_at_timestamp_for_server(&request.origin, &body.room_id, body.ts, dir)
        .await?;
    Ok(RumaResponse(get_event_by_timestamp::v1::Response::new(
        event_id,
        origin_server_ts,
    )))
}
