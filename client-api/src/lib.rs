//! The Client-Server API (`/_matrix/client`, `/.well-known`, Synapse's admin registration) and
//! the assembly of each listener's router.

mod account;
mod account_data;
mod admin;
mod context;
mod dehydrated_device;
mod device;
mod directory;
mod discovery;
mod filter;
mod im;
mod json_body;
mod key_backup;
mod keys;
mod media;
mod membership;
mod message;
mod metrics;
mod openid;
mod presence;
mod profile;
mod push_rules;
mod receipt;
mod relations;
mod room;
mod room_upgrade;
mod route;
mod ruma_wrapper;
mod search;
mod session;
mod space;
mod sync;
mod to_device;
mod websocket;

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    extract::{MatchedPath, Request},
    response::{IntoResponse, Response},
};
use http::{Method, header};
use tessera_core::{Services, config::Api};
use tessera_federation::edge::ApiError;
use tower_http::{
    catch_panic::CatchPanicLayer,
    cors::{Any, CorsLayer},
    trace::TraceLayer,
};

pub use metrics::Metrics;

/// The router for one listener, serving the APIs it is configured for.
pub fn router(services: Arc<Services>, apis: &[Api], metrics: Arc<Metrics>) -> Router {
    let mut router = Router::new();
    if apis.contains(&Api::Client) {
        router = router.merge(client_routes(&services));
    }
    if apis.contains(&Api::Federation) {
        router = router.merge(tessera_federation::router());
    }
    if apis.contains(&Api::Metrics) {
        router = router.merge(metrics::routes());
    }
    router
        .fallback(|| async { ApiError::unrecognized("Unrecognized request") })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(axum::middleware::from_fn_with_state(metrics.clone(), metrics::record))
        .layer(axum::Extension(metrics))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    let path = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
                    tracing::info_span!("request", method = %request.method(), path, user = tracing::field::Empty)
                })
                // One line per request at debug: at info it costs a quarter of the send path's
                // throughput. Failures (5xx) are logged at error by the layer itself.
                .on_response(|response: &Response, latency: Duration, _span: &tracing::Span| {
                    tracing::debug!(status = response.status().as_u16(), latency_ms = latency.as_secs_f64() * 1000.0, "response");
                }),
        )
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal("a request handler panicked").into_response()
        }))
        .layer(cors())
        .with_state(services)
}

/// Web clients (Element Web) call from other origins; Matrix access is token-based, so any
/// origin may call (spec: "Web Browser Clients").
fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            "x-requested-with".parse().expect("static header name"),
        ])
}

fn client_routes(services: &Arc<Services>) -> Router<Arc<Services>> {
    let router = Router::new();
    let router = discovery::routes(router);
    let router = account::routes(router);
    let router = session::routes(router);
    let router = openid::routes(router);
    let router = space::routes(router);
    let router = device::routes(router);
    let router = profile::routes(router);
    let router = account_data::routes(router);
    let router = filter::routes(router);
    let router = room::routes(router);
    let router = directory::routes(router, services);
    let router = room_upgrade::routes(router);
    let router = membership::routes(router);
    let router = message::routes(router);
    let router = receipt::routes(router);
    let router = push_rules::routes(router);
    let router = presence::routes(router);
    let router = relations::routes(router);
    let router = context::routes(router);
    let router = search::routes(router);
    let router = sync::routes(router);
    let router = keys::routes(router);
    let router = to_device::routes(router);
    let router = dehydrated_device::routes(router);
    let router = key_backup::routes(router);
    let router = websocket::routes(router);
    let router = media::routes(router);
    let router = im::routes(router);
    admin::routes(router)
}
