//! Group administration under `/_matrix/client/unstable/im.tessera/groups/{roomId}`:
//! announcements, a generated avatar, mute all, mute one member for a while, join approval,
//! ownership transfer.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::State,
    routing::{get, post, put},
};
use ruma::{OwnedRoomId, OwnedUserId};
use serde::Deserialize;
use serde_json::{Value as JsonValue, json};
use tessera_core::Services;
use tessera_federation::edge::ApiError;

use super::{
    PREFIX,
    extract::{Authed, PathParams},
};
use crate::json_body::JsonBody;

type ApiResult = Result<Json<JsonValue>, ApiError>;

pub(super) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    let path = |rest: &str| format!("{PREFIX}/groups/{{room_id}}{rest}");
    router
        .route(&path("/announcement"), put(announce))
        .route(&path("/avatar"), post(generate_avatar))
        .route(&path("/mute_all"), put(mute_all))
        .route(&path("/mutes/{user_id}"), put(mute).delete(unmute))
        .route(&path("/knocks"), get(knocks))
        .route(&path("/knocks/{user_id}/approve"), post(approve))
        .route(&path("/knocks/{user_id}/deny"), post(deny))
        .route(&path("/owner"), post(transfer_ownership))
}

#[derive(Deserialize)]
struct Announcement {
    text: String,
}

async fn announce(
    State(s): State<Arc<Services>>,
    Authed(caller): Authed,
    params: PathParams,
    JsonBody(body): JsonBody<Announcement>,
) -> ApiResult {
    let room_id: OwnedRoomId = params.get("room_id")?;
    let event_id = s.im.announce(&caller.user_id, &room_id, &body.text).await?;
    Ok(Json(json!({ "event_id": event_id })))
}

#[derive(Deserialize)]
struct MuteAll {
    muted: bool,
}

async fn mute_all(
    State(s): State<Arc<Services>>,
    Authed(caller): Authed,
    params: PathParams,
    JsonBody(body): JsonBody<MuteAll>,
) -> ApiResult {
    let room_id: OwnedRoomId = params.get("room_id")?;
    s.im.mute_all(&caller.user_id, &room_id, body.muted).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct Mute {
    duration_secs: u64,
}

async fn mute(
    State(s): State<Arc<Services>>,
    Authed(caller): Authed,
    params: PathParams,
    JsonBody(body): JsonBody<Mute>,
) -> ApiResult {
    let room_id: OwnedRoomId = params.get("room_id")?;
    let target: OwnedUserId = params.get("user_id")?;
    let until =
        s.im.mute_member(&caller.user_id, &room_id, &target, body.duration_secs)
            .await?;
    Ok(Json(json!({ "until_ts": until })))
}

async fn unmute(
    State(s): State<Arc<Services>>,
    Authed(caller): Authed,
    params: PathParams,
) -> ApiResult {
    let room_id: OwnedRoomId = params.get("room_id")?;
    let target: OwnedUserId = params.get("user_id")?;
    s.im.unmute_member(&caller.user_id, &room_id, &target)
        .await?;
    Ok(Json(json!({})))
}

async fn knocks(
    State(s): State<Arc<Services>>,
    Authed(caller): Authed,
    params: PathParams,
) -> ApiResult {
    let room_id: OwnedRoomId = params.get("room_id")?;
    let knocks = s.im.knocks(&caller.user_id, &room_id).await?;
    let knocks: Vec<JsonValue> = knocks
        .into_iter()
        .map(|(user_id, reason)| json!({ "user_id": user_id, "reason": reason }))
        .collect();
    Ok(Json(json!({ "knocks": knocks })))
}

async fn approve(
    State(s): State<Arc<Services>>,
    Authed(caller): Authed,
    params: PathParams,
) -> ApiResult {
    let room_id: OwnedRoomId = params.get("room_id")?;
    let knocker: OwnedUserId = params.get("user_id")?;
    s.im.answer_knock(&caller.user_id, &room_id, &knocker, true)
        .await?;
    Ok(Json(json!({})))
}

async fn deny(
    State(s): State<Arc<Services>>,
    Authed(caller): Authed,
    params: PathParams,
) -> ApiResult {
    let room_id: OwnedRoomId = params.get("room_id")?;
    let knocker: OwnedUserId = params.get("user_id")?;
    s.im.answer_knock(&caller.user_id, &room_id, &knocker, false)
        .await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct NewOwner {
    user_id: OwnedUserId,
}

async fn transfer_ownership(
    State(s): State<Arc<Services>>,
    Authed(caller): Authed,
    params: PathParams,
    JsonBody(body): JsonBody<NewOwner>,
) -> ApiResult {
    let room_id: OwnedRoomId = params.get("room_id")?;
    let room_id =
        s.im.transfer_ownership(&caller.user_id, &room_id, &body.user_id)
            .await?;
    Ok(Json(json!({ "room_id": room_id })))
}

async fn generate_avatar(
    State(s): State<Arc<Services>>,
    Authed(caller): Authed,
    params: PathParams,
) -> ApiResult {
    let room_id: OwnedRoomId = params.get("room_id")?;
    let url = s.generate_group_avatar(&caller.user_id, &room_id).await?;
    Ok(Json(json!({ "url": url })))
}
