//! `GET /_matrix/federation/v1/version`.

use ruma::api::federation::discovery::get_server_version::v1::{Response, Server};

use crate::edge::RumaResponse;

pub async fn server_version() -> RumaResponse<Response> {
    let mut server = Server::new();
    server.name = Some("Tessera".to_owned());
    server.version = Some(env!("CARGO_PKG_VERSION").to_owned());
    let mut response = Response::new();
    response.server = Some(server);
    RumaResponse(response)
}
