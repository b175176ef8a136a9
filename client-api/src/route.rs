//! Registers a handler on every path a ruma endpoint type declares (stable, legacy r0 and
//! unstable prefixes), with the endpoint's method.

use std::{collections::BTreeSet, sync::Arc};

use axum::{
    Extension, Router,
    handler::Handler,
    routing::{MethodFilter, on},
};
use ruma::api::{Metadata, path_builder::PathBuilder};
use tessera_core::Services;

/// Marks a route whose trailing `{state_key}` parameter was left out: it is the empty string.
#[derive(Clone, Copy)]
pub(crate) struct EmptyStateKey;

pub(crate) trait RumaRoutes {
    fn ruma<E: Metadata, H: Handler<X, Arc<Services>>, X: 'static>(self, handler: H) -> Self;
}

impl RumaRoutes for Router<Arc<Services>> {
    fn ruma<E: Metadata, H: Handler<X, Arc<Services>>, X: 'static>(self, handler: H) -> Self {
        // Every method ruma endpoints use (GET, POST, PUT, DELETE) has a filter.
        let filter =
            MethodFilter::try_from(E::METHOD).expect("ruma endpoints use standard methods");
        let paths: BTreeSet<&'static str> = E::PATH_BUILDER.all_paths().collect();
        paths.into_iter().fold(self, |router, path| {
            let router = router.route(path, on(filter, handler.clone()));
            // The state key may be empty (`/state/m.room.name/` or `/state/m.room.name`), which
            // no path segment matches: those spellings get routes of their own.
            match path.strip_suffix("/{state_key}") {
                Some(prefix) => {
                    [prefix.to_owned(), format!("{prefix}/")]
                        .iter()
                        .fold(router, |router, path| {
                            router.route(
                                path,
                                on(filter, handler.clone()).layer(Extension(EmptyStateKey)),
                            )
                        })
                }
                None => router,
            }
        })
    }
}
