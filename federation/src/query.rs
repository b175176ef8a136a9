//! Queries other servers make about this one's users, aliases, published rooms and spaces
//! (spec: Server-Server API, "Query", "Public Room Directory", "Spaces").

use std::sync::Arc;

use axum::extract::State;
use ruma::{
    api::federation::{
        directory::{get_public_rooms, get_public_rooms_filtered},
        query::{get_profile_information, get_room_information},
        space::get_hierarchy,
    },
    directory::Filter,
};
use tessera_core::{Services, rooms::PublicRoomsQuery};

use crate::{
    edge::{ApiError, RumaResponse},
    extract::Signed,
};

/// `GET /_matrix/federation/v1/query/profile`: the whole profile, or the one field asked for.
pub async fn profile(
    State(s): State<Arc<Services>>,
    request: Signed<get_profile_information::v1::Request>,
) -> Result<RumaResponse<get_profile_information::v1::Response>, ApiError> {
    let user_id = &request.body.user_id;
    if user_id.server_name() != s.config.server_name {
        return Err(ApiError::invalid_param(format!(
            "{user_id} is not a user of this server"
        )));
    }
    let mut fields = s.users.profile(user_id).await?;
    if let Some(field) = &request.body.field {
        fields.retain(|name, _| name == field.as_str());
    }
    let mut response = get_profile_information::v1::Response::new();
    for (name, value) in fields {
        response.data.set(name, value);
    }
    Ok(RumaResponse(response))
}

/// `GET /_matrix/federation/v1/query/directory`: a local alias's room and resident servers.
pub async fn directory(
    State(s): State<Arc<Services>>,
    request: Signed<get_room_information::v1::Request>,
) -> Result<RumaResponse<get_room_information::v1::Response>, ApiError> {
    let alias = &request.body.room_alias;
    if alias.server_name() != s.config.server_name {
        return Err(ApiError::invalid_param(format!(
            "{alias} is not an alias of this server"
        )));
    }
    let (room_id, servers) = s.rooms.resolve_alias(alias).await?;
    Ok(RumaResponse(get_room_information::v1::Response::new(
        room_id, servers,
    )))
}

/// `GET /_matrix/federation/v1/publicRooms`: a page of this server's published rooms.
pub async fn public_rooms(
    State(s): State<Arc<Services>>,
    request: Signed<get_public_rooms::v1::Request>,
) -> Result<RumaResponse<get_public_rooms::v1::Response>, ApiError> {
    let body = request.body;
    let query = PublicRoomsQuery::filtered(
        body.limit,
        body.since,
        &Filter::default(),
        &body.room_network,
    );
    let page = s.rooms.public_rooms(query).await?;
    let mut response = get_public_rooms::v1::Response::new();
    response.chunk = page.chunk;
    response.next_batch = page.next_batch;
    response.prev_batch = page.prev_batch;
    response.total_room_count_estimate = Some(page.total_room_count_estimate);
    Ok(RumaResponse(response))
}

/// `POST /_matrix/federation/v1/publicRooms`: the same, filtered.
pub async fn public_rooms_filtered(
    State(s): State<Arc<Services>>,
    request: Signed<get_public_rooms_filtered::v1::Request>,
) -> Result<RumaResponse<get_public_rooms_filtered::v1::Response>, ApiError> {
    let body = request.body;
    let query =
        PublicRoomsQuery::filtered(body.limit, body.since, &body.filter, &body.room_network);
    let page = s.rooms.public_rooms(query).await?;
    let mut response = get_public_rooms_filtered::v1::Response::new();
    response.chunk = page.chunk;
    response.next_batch = page.next_batch;
    response.prev_batch = page.prev_batch;
    response.total_room_count_estimate = Some(page.total_room_count_estimate);
    Ok(RumaResponse(response))
}

/// `GET /_matrix/federation/v1/hierarchy/{roomId}`.
pub async fn hierarchy(
    State(s): State<Arc<Services>>,
    request: Signed<get_hierarchy::v1::Request>,
) -> Result<RumaResponse<get_hierarchy::v1::Response>, ApiError> {
    let body = &request.body;
    Ok(RumaResponse(
        s.served_hierarchy(&request.origin, &body.room_id, body.suggested_only)
            .await?,
    ))
}
