//! The Server-Server API (`/_matrix/federation`, `/_matrix/key`), and the HTTP edge shared with
//! the client API: request parsing into ruma types and the one mapping of errors to errcodes.

pub mod edge;
mod events;
mod extract;
mod keys;
mod media;
mod membership;
mod openid;
mod query;
mod transactions;
mod user;
mod version;

use std::sync::Arc;

use axum::{
    Router,
    routing::{get, post, put},
};
use tessera_core::Services;

/// Routes of the federation listener.
pub fn router() -> Router<Arc<Services>> {
    Router::new()
        .route("/_matrix/key/v2/server", get(keys::server_keys))
        .route("/_matrix/key/v2/server/{key_id}", get(keys::server_keys))
        .route("/_matrix/key/v2/query", post(keys::query_batch))
        .route("/_matrix/key/v2/query/{server_name}", get(keys::query_one))
        .route(
            "/_matrix/federation/v1/version",
            get(version::server_version),
        )
        .route("/_matrix/federation/v1/query/profile", get(query::profile))
        .route(
            "/_matrix/federation/v1/openid/userinfo",
            get(openid::userinfo),
        )
        .route(
            "/_matrix/federation/v1/publicRooms",
            get(query::public_rooms).post(query::public_rooms_filtered),
        )
        .route(
            "/_matrix/federation/v1/query/directory",
            get(query::directory),
        )
        .route(
            "/_matrix/federation/v1/user/devices/{user_id}",
            get(user::devices),
        )
        .route(
            "/_matrix/federation/v1/user/keys/query",
            post(user::keys_query),
        )
        .route(
            "/_matrix/federation/v1/user/keys/claim",
            post(user::keys_claim),
        )
        .route(
            "/_matrix/federation/v1/make_join/{room_id}/{user_id}",
            get(membership::make_join),
        )
        .route(
            "/_matrix/federation/v2/send_join/{room_id}/{event_id}",
            put(membership::send_join),
        )
        .route(
            "/_matrix/federation/v1/make_leave/{room_id}/{user_id}",
            get(membership::make_leave),
        )
        .route(
            "/_matrix/federation/v2/send_leave/{room_id}/{event_id}",
            put(membership::send_leave),
        )
        .route(
            "/_matrix/federation/v1/make_knock/{room_id}/{user_id}",
            get(membership::make_knock),
        )
        .route(
            "/_matrix/federation/v1/send_knock/{room_id}/{event_id}",
            put(membership::send_knock),
        )
        .route(
            "/_matrix/federation/v2/invite/{room_id}/{event_id}",
            put(membership::invite),
        )
        .route(
            "/_matrix/federation/v1/event/{event_id}",
            get(events::event),
        )
        .route("/_matrix/federation/v1/state/{room_id}", get(events::state))
        .route(
            "/_matrix/federation/v1/hierarchy/{room_id}",
            get(query::hierarchy),
        )
        .route(
            "/_matrix/federation/v1/timestamp_to_event/{room_id}",
            get(events::timestamp_to_event),
        )
        .route(
            "/_matrix/federation/v1/state_ids/{room_id}",
            get(events::state_ids),
        )
        .route(
            "/_matrix/federation/v1/event_auth/{room_id}/{event_id}",
            get(events::event_auth),
        )
        .route(
            "/_matrix/federation/v1/backfill/{room_id}",
            get(events::backfill),
        )
        .route(
            "/_matrix/federation/v1/get_missing_events/{room_id}",
            post(events::missing_events),
        )
        .route(
            "/_matrix/federation/v1/media/download/{media_id}",
            get(media::download),
        )
        .route(
            "/_matrix/federation/v1/media/thumbnail/{media_id}",
            get(media::thumbnail),
        )
        .route(
            "/_matrix/federation/v1/send/{txn_id}",
            put(transactions::send),
        )
}
