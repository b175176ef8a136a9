//! The Server-Server API (`/_matrix/federation`, `/_matrix/key`), and the HTTP edge shared with
//! the client API: request parsing into ruma types and the one mapping of errors to errcodes.

pub mod edge;
mod keys;
mod version;

use std::sync::Arc;

use axum::{Router, routing::get};
use tessera_core::Services;

/// Routes of the federation listener.
pub fn router() -> Router<Arc<Services>> {
    Router::new()
        .route("/_matrix/key/v2/server", get(keys::server_keys))
        .route("/_matrix/key/v2/server/{key_id}", get(keys::server_keys))
        .route(
            "/_matrix/federation/v1/version",
            get(version::server_version),
        )
}
