//! Moments under `/_matrix/client/unstable/im.tessera/moments`: posting, likes, comments,
//! reposts, the feed and one user's moments.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::State,
    routing::{delete, get, put},
};
use http::request::Parts;
use ruma::{OwnedEventId, OwnedUserId};
use serde::Deserialize;
use serde_json::{Value as JsonValue, json};
use tessera_core::{
    Services,
    im::moments::{FeedItem, FeedPage, NewMoment},
};
use tessera_federation::edge::ApiError;

use super::{
    PREFIX,
    extract::{Authed, PathParams, invalid},
};
use crate::{json_body::JsonBody, ruma_wrapper::form_urlencoded_value};

type ApiResult = Result<Json<JsonValue>, ApiError>;

pub(super) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    let path = |rest: &str| format!("{PREFIX}/moments{rest}");
    router
        .route(&path("/post/{txn_id}"), put(post_moment))
        .route(&path("/posts/{event_id}"), delete(delete_moment))
        .route(&path("/posts/{event_id}/like"), put(like).delete(unlike))
        .route(&path("/posts/{event_id}/comment/{txn_id}"), put(comment))
        .route(&path("/posts/{event_id}/repost/{txn_id}"), put(repost))
        .route(&path("/comments/{event_id}"), delete(delete_comment))
        .route(&path("/feed"), get(feed))
        .route(&path("/user/{user_id}"), get(user_moments))
        .route(&path("/profile_room"), get(profile_room))
}

/// `from` and `limit` of a page request.
pub struct PageQuery {
    from: Option<String>,
    limit: Option<u32>,
}

impl axum::extract::FromRequestParts<Arc<Services>> for PageQuery {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        _services: &Arc<Services>,
    ) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let limit = form_urlencoded_value(query, "limit")
            .map(|limit| {
                limit
                    .parse::<u32>()
                    .map_err(|_| invalid(format!("limit {limit:?} is not a positive integer")))
            })
            .transpose()?;
        Ok(Self {
            from: form_urlencoded_value(query, "from"),
            limit,
        })
    }
}

fn item_json(item: &FeedItem) -> JsonValue {
    json!({
        "event_id": item.event_id,
        "room_id": item.room_id,
        "sender": item.sender,
        "origin_server_ts": item.origin_server_ts,
        "content": item.content,
        "likes": item.likes,
        "like_count": item.likes.len(),
        "liked": item.liked,
        "comment_count": item.comments.len(),
        "comments": item.comments.iter().map(|c| {
            let mut comment = json!({
                "event_id": c.event_id,
                "sender": c.sender,
                "body": c.body,
                "origin_server_ts": c.origin_server_ts,
            });
            if let Some((event_id, sender)) = &c.in_reply_to {
                comment["in_reply_to"] = json!({ "event_id": event_id, "sender": sender });
            }
            comment
        }).collect::<Vec<_>>(),
    })
}

fn page_json(page: &FeedPage) -> JsonValue {
    let mut body = json!({ "chunk": page.items.iter().map(item_json).collect::<Vec<_>>() });
    if let Some(next) = &page.next_batch {
        body["next_batch"] = json!(next);
    }
    body
}

#[derive(Deserialize)]
struct PostBody {
    text: Option<String>,
    #[serde(default)]
    images: Vec<String>,
    video: Option<String>,
    location: Option<String>,
}

async fn post_moment(
    State(s): State<Arc<Services>>,
    Authed(caller): Authed,
    params: PathParams,
    JsonBody(body): JsonBody<PostBody>,
) -> ApiResult {
    let txn_id: String = params.get("txn_id")?;
    let moment = NewMoment {
        text: body.text,
        images: body.images,
        video: body.video,
        location: body.location,
    };
    let event_id =
        s.im.post_moment(&caller.user_id, &caller.device_id, &txn_id, &moment)
            .await?;
    Ok(Json(json!({ "event_id": event_id })))
}

async fn delete_moment(
    State(s): State<Arc<Services>>,
    Authed(caller): Authed,
    params: PathParams,
) -> ApiResult {
    let event_id: OwnedEventId = params.get("event_id")?;
    s.im.delete_moment(&caller.user_id, &event_id).await?;
    Ok(Json(json!({})))
}

async fn like(
    State(s): State<Arc<Services>>,
    Authed(caller): Authed,
    params: PathParams,
) -> ApiResult {
    let event_id: OwnedEventId = params.get("event_id")?;
    s.im.like(&caller.user_id, &caller.device_id, &event_id)
        .await?;
    Ok(Json(json!({})))
}

async fn unlike(
    State(s): State<Arc<Services>>,
    Authed(caller): Authed,
    params: PathParams,
) -> ApiResult {
    let event_id: OwnedEventId = params.get("event_id")?;
    s.im.unlike(&caller.user_id, &event_id).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct CommentBody {
    text: String,
    reply_to: Option<String>,
}

async fn comment(
    State(s): State<Arc<Services>>,
    Authed(caller): Authed,
    params: PathParams,
    JsonBody(body): JsonBody<CommentBody>,
) -> ApiResult {
    let event_id: OwnedEventId = params.get("event_id")?;
    let txn_id: String = params.get("txn_id")?;
    let reply_to = body
        .reply_to
        .as_deref()
        .map(|id| {
            OwnedEventId::try_from(id).map_err(|e| invalid(format!("Invalid reply_to {id:?}: {e}")))
        })
        .transpose()?;
    let comment_id =
        s.im.comment(
            &caller.user_id,
            &caller.device_id,
            &txn_id,
            &event_id,
            &body.text,
            reply_to.as_deref(),
        )
        .await?;
    Ok(Json(json!({ "event_id": comment_id })))
}

#[derive(Deserialize)]
struct RepostBody {
    text: Option<String>,
}

async fn repost(
    State(s): State<Arc<Services>>,
    Authed(caller): Authed,
    params: PathParams,
    JsonBody(body): JsonBody<RepostBody>,
) -> ApiResult {
    let event_id: OwnedEventId = params.get("event_id")?;
    let txn_id: String = params.get("txn_id")?;
    let repost_id =
        s.im.repost(
            &caller.user_id,
            &caller.device_id,
            &txn_id,
            &event_id,
            body.text.as_deref(),
        )
        .await?;
    Ok(Json(json!({ "event_id": repost_id })))
}

async fn delete_comment(
    State(s): State<Arc<Services>>,
    Authed(caller): Authed,
    params: PathParams,
) -> ApiResult {
    let event_id: OwnedEventId = params.get("event_id")?;
    s.im.delete_comment(&caller.user_id, &event_id).await?;
    Ok(Json(json!({})))
}

async fn feed(
    State(s): State<Arc<Services>>,
    Authed(caller): Authed,
    query: PageQuery,
) -> ApiResult {
    let page =
        s.im.feed(&caller.user_id, query.from.as_deref(), query.limit)
            .await?;
    Ok(Json(page_json(&page)))
}

async fn user_moments(
    State(s): State<Arc<Services>>,
    Authed(caller): Authed,
    params: PathParams,
    query: PageQuery,
) -> ApiResult {
    let owner: OwnedUserId = params.get("user_id")?;
    let page =
        s.im.user_moments(&caller.user_id, &owner, query.from.as_deref(), query.limit)
            .await?;
    Ok(Json(page_json(&page)))
}

async fn profile_room(State(s): State<Arc<Services>>, Authed(caller): Authed) -> ApiResult {
    let room_id = s.im.profile_room(&caller.user_id).await?;
    Ok(Json(json!({ "room_id": room_id })))
}
