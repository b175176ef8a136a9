//! Room aliases (`/directory/room/{roomAlias}`, `/rooms/{roomId}/aliases`), the published room
//! directory (`/publicRooms`, `/directory/list/room/{roomId}`) and room summaries
//! (`/room_summary/{roomIdOrAlias}`).

use std::sync::Arc;

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{Request, State},
    handler::Handler,
    middleware,
};
use ruma::{
    api::client::{
        alias::{create_alias, delete_alias, get_alias},
        directory::{
            get_public_rooms, get_public_rooms_filtered, get_room_visibility, set_room_visibility,
        },
        room::{Visibility, aliases, get_summary},
    },
    directory::{Filter, RoomNetwork},
    events::room::member::MembershipState,
};
use serde_json::Value as JsonValue;
use tessera_core::Services;
use tessera_federation::edge::{ApiError, RumaResponse, read_body};

use crate::{route::RumaRoutes, ruma_wrapper::Ruma};

type ApiResult<T> = Result<RumaResponse<T>, ApiError>;

pub(crate) fn routes(
    router: Router<Arc<Services>>,
    services: &Arc<Services>,
) -> Router<Arc<Services>> {
    router
        .ruma::<create_alias::v3::Request, _, _>(create)
        .ruma::<get_alias::v3::Request, _, _>(resolve)
        .ruma::<delete_alias::v3::Request, _, _>(delete)
        .ruma::<aliases::v3::Request, _, _>(local_aliases)
        .ruma::<get_public_rooms::v3::Request, _, _>(public_rooms)
        .ruma::<get_public_rooms_filtered::v3::Request, _, _>(public_rooms_filtered)
        .ruma::<get_room_visibility::v3::Request, _, _>(visibility)
        .ruma::<set_room_visibility::v3::Request, _, _>(set_visibility.layer(
            middleware::map_request_with_state(Arc::clone(services), public_by_default),
        ))
        .ruma::<get_summary::v1::Request, _, _>(summary)
}

async fn create(
    State(s): State<Arc<Services>>,
    req: Ruma<create_alias::v3::Request>,
) -> ApiResult<create_alias::v3::Response> {
    let caller = req.caller()?;
    s.rooms
        .create_alias(&caller.user_id, &req.body.room_alias, &req.body.room_id)
        .await?;
    Ok(RumaResponse(create_alias::v3::Response::new()))
}

async fn resolve(
    State(s): State<Arc<Services>>,
    req: Ruma<get_alias::v3::Request>,
) -> ApiResult<get_alias::v3::Response> {
    let (room_id, servers) = s.resolve_alias(&req.body.room_alias).await?;
    Ok(RumaResponse(get_alias::v3::Response::new(room_id, servers)))
}

async fn delete(
    State(s): State<Arc<Services>>,
    req: Ruma<delete_alias::v3::Request>,
) -> ApiResult<delete_alias::v3::Response> {
    let caller = req.caller()?;
    s.rooms
        .delete_alias(&caller.user_id, &req.body.room_alias)
        .await?;
    Ok(RumaResponse(delete_alias::v3::Response::new()))
}

async fn local_aliases(
    State(s): State<Arc<Services>>,
    req: Ruma<aliases::v3::Request>,
) -> ApiResult<aliases::v3::Response> {
    let caller = req.caller()?;
    let aliases = s
        .rooms
        .local_aliases(&caller.user_id, &req.body.room_id)
        .await?;
    Ok(RumaResponse(aliases::v3::Response::new(aliases)))
}

async fn public_rooms(
    State(s): State<Arc<Services>>,
    req: Ruma<get_public_rooms::v3::Request>,
) -> ApiResult<get_public_rooms::v3::Response> {
    let body = req.body;
    let page = s
        .public_rooms(
            body.server.as_deref(),
            body.limit,
            body.since,
            Filter::default(),
            RoomNetwork::Matrix,
        )
        .await?;
    let mut response = get_public_rooms::v3::Response::new(page.chunk);
    response.next_batch = page.next_batch;
    response.prev_batch = page.prev_batch;
    response.total_room_count_estimate = Some(page.total_room_count_estimate);
    Ok(RumaResponse(response))
}

async fn public_rooms_filtered(
    State(s): State<Arc<Services>>,
    req: Ruma<get_public_rooms_filtered::v3::Request>,
) -> ApiResult<get_public_rooms_filtered::v3::Response> {
    let body = req.body;
    let page = s
        .public_rooms(
            body.server.as_deref(),
            body.limit,
            body.since,
            body.filter,
            body.room_network,
        )
        .await?;
    let mut response = get_public_rooms_filtered::v3::Response::new();
    response.chunk = page.chunk;
    response.next_batch = page.next_batch;
    response.prev_batch = page.prev_batch;
    response.total_room_count_estimate = Some(page.total_room_count_estimate);
    Ok(RumaResponse(response))
}

async fn visibility(
    State(s): State<Arc<Services>>,
    req: Ruma<get_room_visibility::v3::Request>,
) -> ApiResult<get_room_visibility::v3::Response> {
    let public = s.rooms.directory_visibility(&req.body.room_id).await?;
    Ok(RumaResponse(get_room_visibility::v3::Response::new(
        if public {
            Visibility::Public
        } else {
            Visibility::Private
        },
    )))
}

/// The spec defaults `visibility` to `public` where ruma's request type requires it, so a body
/// without the key is given it before the request is parsed (as Synapse reads it).
async fn public_by_default(
    State(s): State<Arc<Services>>,
    request: Request,
) -> Result<Request, ApiError> {
    let (mut parts, body) = request.into_parts();
    let bytes = read_body(&parts.headers, body, s.config.limits.max_request_body_bytes).await?;
    let bytes = match serde_json::from_slice::<serde_json::Map<String, JsonValue>>(&bytes) {
        Ok(mut object) if !object.contains_key("visibility") => {
            object.insert("visibility".to_owned(), JsonValue::from("public"));
            parts.headers.remove(http::header::CONTENT_LENGTH);
            Bytes::from(serde_json::to_vec(&object).expect("a JSON map serializes"))
        }
        _ => bytes,
    };
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

async fn set_visibility(
    State(s): State<Arc<Services>>,
    req: Ruma<set_room_visibility::v3::Request>,
) -> ApiResult<set_room_visibility::v3::Response> {
    let caller = req.caller()?;
    let public = match &req.body.visibility {
        Visibility::Public => true,
        Visibility::Private => false,
        other => {
            return Err(ApiError::new(
                http::StatusCode::BAD_REQUEST,
                "M_INVALID_PARAM",
                format!("Unknown visibility {:?}", other.as_str()),
            ));
        }
    };
    s.rooms
        .set_directory_visibility(&caller.user_id, &req.body.room_id, public)
        .await?;
    Ok(RumaResponse(set_room_visibility::v3::Response::new()))
}

async fn summary(
    State(s): State<Arc<Services>>,
    req: Ruma<get_summary::v1::Request>,
) -> ApiResult<get_summary::v1::Response> {
    let caller = req.caller().ok().map(|caller| &*caller.user_id);
    let (summary, membership) = s
        .rooms
        .room_summary(caller, &req.body.room_id_or_alias)
        .await?;
    let mut response = get_summary::v1::Response::new(summary);
    response.membership = membership.as_deref().map(MembershipState::from);
    Ok(RumaResponse(response))
}
