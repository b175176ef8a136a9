//! Friends, requests, categories, privacy and blocking under
//! `/_matrix/client/unstable/im.tessera/friends`.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::State,
    routing::{delete, get, post, put},
};
use ruma::{OwnedUserId, UserId};
use serde::Deserialize;
use serde_json::{Value as JsonValue, json};
use tessera_core::{
    Services,
    im::{Category, FriendView, Privacy, RequestView},
};
use tessera_federation::edge::ApiError;

use super::{
    PREFIX,
    extract::{Authed, PathParams, invalid},
};
use crate::json_body::JsonBody;

type ApiResult = Result<Json<JsonValue>, ApiError>;

pub(super) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    let path = |rest: &str| format!("{PREFIX}/friends{rest}");
    router
        .route(&path(""), get(list_friends))
        .route(&path("/{user_id}"), delete(remove_friend))
        .route(&path("/{user_id}/category"), put(set_category))
        .route(&path("/requests"), get(list_requests).post(send_request))
        .route(&path("/requests/{user_id}"), delete(cancel_request))
        .route(&path("/requests/{user_id}/accept"), post(accept_request))
        .route(&path("/requests/{user_id}/reject"), post(reject_request))
        .route(&path("/categories"), post(create_category))
        .route(
            &path("/categories/{category_id}"),
            put(rename_category).delete(delete_category),
        )
        .route(&path("/category_order"), put(order_categories))
        .route(&path("/privacy"), get(get_privacy).put(set_privacy))
        .route(&path("/blocked"), get(list_blocked).post(block))
        .route(&path("/blocked/{user_id}"), delete(unblock))
}

fn user_id(value: &str, field: &str) -> Result<OwnedUserId, ApiError> {
    UserId::parse(value).map_err(|e| invalid(format!("Invalid {field} {value:?}: {e}")))
}

fn privacy_name(privacy: Privacy) -> &'static str {
    match privacy {
        Privacy::Anyone => "anyone",
        Privacy::Nobody => "nobody",
        Privacy::FriendsOfFriends => "friends_of_friends",
    }
}

fn categories_json(categories: &[Category]) -> JsonValue {
    categories
        .iter()
        .map(|c| json!({ "category_id": c.id, "name": c.name }))
        .collect()
}

fn friend_json(view: &FriendView) -> JsonValue {
    json!({
        "user_id": view.user_id,
        "room_id": view.friend.room_id,
        "category_id": view.friend.category,
        "since": view.friend.since,
        "displayname": view.displayname,
        "avatar_url": view.avatar_url,
    })
}

fn request_json(view: &RequestView) -> JsonValue {
    let r = &view.request;
    json!({
        "requester": r.requester,
        "target": r.target,
        "room_id": r.room_id,
        "message": r.message,
        "created_ts": r.created_ts,
        "displayname": view.displayname,
        "avatar_url": view.avatar_url,
    })
}

async fn list_friends(State(s): State<Arc<Services>>, Authed(caller): Authed) -> ApiResult {
    let (friends, data) = s.im.friends(&caller.user_id).await?;
    Ok(Json(json!({
        "friends": friends.iter().map(friend_json).collect::<Vec<_>>(),
        "categories": categories_json(&data.categories),
    })))
}

async fn remove_friend(
    State(s): State<Arc<Services>>,
    Authed(caller): Authed,
    params: PathParams,
) -> ApiResult {
    let friend: OwnedUserId = params.get("user_id")?;
    s.im.remove_friend(&caller.user_id, &friend).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct SetCategory {
    category_id: Option<String>,
}

async fn set_category(
    State(s): State<Arc<Services>>,
    Authed(caller): Authed,
    params: PathParams,
    JsonBody(body): JsonBody<SetCategory>,
) -> ApiResult {
    let friend: OwnedUserId = params.get("user_id")?;
    s.im.set_friend_category(&caller.user_id, &friend, body.category_id.as_deref())
        .await?;
    Ok(Json(json!({})))
}

async fn list_requests(State(s): State<Arc<Services>>, Authed(caller): Authed) -> ApiResult {
    let incoming = s.im.friend_requests(&caller.user_id, true).await?;
    let outgoing = s.im.friend_requests(&caller.user_id, false).await?;
    Ok(Json(json!({
        "incoming": incoming.iter().map(request_json).collect::<Vec<_>>(),
        "outgoing": outgoing.iter().map(request_json).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
struct SendRequest {
    user_id: String,
    message: Option<String>,
}

async fn send_request(
    State(s): State<Arc<Services>>,
    Authed(caller): Authed,
    JsonBody(body): JsonBody<SendRequest>,
) -> ApiResult {
    let target = user_id(&body.user_id, "user_id")?;
    let room_id =
        s.im.request_friend(&caller.user_id, &target, body.message)
            .await?;
    Ok(Json(json!({ "room_id": room_id })))
}

async fn cancel_request(
    State(s): State<Arc<Services>>,
    Authed(caller): Authed,
    params: PathParams,
) -> ApiResult {
    let target: OwnedUserId = params.get("user_id")?;
    s.im.cancel_friend_request(&caller.user_id, &target).await?;
    Ok(Json(json!({})))
}

async fn accept_request(
    State(s): State<Arc<Services>>,
    Authed(caller): Authed,
    params: PathParams,
) -> ApiResult {
    let requester: OwnedUserId = params.get("user_id")?;
    let room_id = s.im.accept_friend(&caller.user_id, &requester).await?;
    Ok(Json(json!({ "room_id": room_id })))
}

async fn reject_request(
    State(s): State<Arc<Services>>,
    Authed(caller): Authed,
    params: PathParams,
) -> ApiResult {
    let requester: OwnedUserId = params.get("user_id")?;
    s.im.reject_friend(&caller.user_id, &requester).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct CategoryName {
    name: String,
}

async fn create_category(
    State(s): State<Arc<Services>>,
    Authed(caller): Authed,
    JsonBody(body): JsonBody<CategoryName>,
) -> ApiResult {
    let id = s.im.create_category(&caller.user_id, &body.name).await?;
    Ok(Json(json!({ "category_id": id })))
}

async fn rename_category(
    State(s): State<Arc<Services>>,
    Authed(caller): Authed,
    params: PathParams,
    JsonBody(body): JsonBody<CategoryName>,
) -> ApiResult {
    let id: String = params.get("category_id")?;
    s.im.rename_category(&caller.user_id, &id, &body.name)
        .await?;
    Ok(Json(json!({})))
}

async fn delete_category(
    State(s): State<Arc<Services>>,
    Authed(caller): Authed,
    params: PathParams,
) -> ApiResult {
    let id: String = params.get("category_id")?;
    s.im.delete_category(&caller.user_id, &id).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct CategoryOrder {
    order: Vec<String>,
}

async fn order_categories(
    State(s): State<Arc<Services>>,
    Authed(caller): Authed,
    JsonBody(body): JsonBody<CategoryOrder>,
) -> ApiResult {
    s.im.order_categories(&caller.user_id, &body.order).await?;
    Ok(Json(json!({})))
}

async fn get_privacy(State(s): State<Arc<Services>>, Authed(caller): Authed) -> ApiResult {
    let data = s.im.friends_data(&caller.user_id).await?;
    Ok(Json(json!({ "requests_from": privacy_name(data.privacy) })))
}

#[derive(Deserialize)]
struct SetPrivacy {
    requests_from: String,
}

async fn set_privacy(
    State(s): State<Arc<Services>>,
    Authed(caller): Authed,
    JsonBody(body): JsonBody<SetPrivacy>,
) -> ApiResult {
    let privacy: Privacy = body.requests_from.parse()?;
    s.im.set_privacy(&caller.user_id, privacy).await?;
    Ok(Json(json!({})))
}

async fn list_blocked(State(s): State<Arc<Services>>, Authed(caller): Authed) -> ApiResult {
    let blocked = s.im.blocked(&caller.user_id).await?;
    Ok(Json(json!({ "blocked": blocked })))
}

#[derive(Deserialize)]
struct Block {
    user_id: String,
}

async fn block(
    State(s): State<Arc<Services>>,
    Authed(caller): Authed,
    JsonBody(body): JsonBody<Block>,
) -> ApiResult {
    let other = user_id(&body.user_id, "user_id")?;
    s.im.block(&caller.user_id, &other).await?;
    Ok(Json(json!({})))
}

async fn unblock(
    State(s): State<Arc<Services>>,
    Authed(caller): Authed,
    params: PathParams,
) -> ApiResult {
    let other: OwnedUserId = params.get("user_id")?;
    s.im.unblock(&caller.user_id, &other).await?;
    Ok(Json(json!({})))
}
