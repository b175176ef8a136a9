//! Queries other servers make about this one's users and aliases (spec: Server-Server API,
//! "Query").

use std::sync::Arc;

use axum::extract::State;
use ruma::api::federation::query::{get_profile_information, get_room_information};
use tessera_core::Services;

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
