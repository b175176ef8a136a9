//! The IM extension endpoints under `/_matrix/client/unstable/im.tessera/` (docs/im-api.md):
//! thin handlers over `tessera_core::im`, answering errors in the Matrix format.

mod dm;
mod extract;
mod friends;
mod groups;
mod moments;

use std::sync::Arc;

use axum::Router;
use tessera_core::Services;

/// The path prefix of every IM extension endpoint.
const PREFIX: &str = "/_matrix/client/unstable/im.tessera";

pub(crate) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    let router = dm::routes(router);
    let router = friends::routes(router);
    let router = groups::routes(router);
    moments::routes(router)
}
