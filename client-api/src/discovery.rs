//! Server discovery and what the server supports: `/versions`, `/.well-known/matrix/*`,
//! `/capabilities`.

use std::{collections::BTreeMap, sync::Arc};

use axum::{Json, Router, extract::State, routing::get};
use ruma::{
    RoomVersionId,
    api::client::discovery::{
        discover_homeserver::{self, HomeserverInfo},
        get_capabilities::{
            self,
            v3::{
                Capabilities, ChangePasswordCapability, GetLoginTokenCapability,
                ProfileFieldsCapability, RoomVersionStability, RoomVersionsCapability,
                ThirdPartyIdChangesCapability,
            },
        },
        get_supported_versions,
    },
};
use serde_json::{Value as JsonValue, json};
use tessera_core::Services;
use tessera_federation::edge::{ApiError, RumaResponse};

use crate::{route::RumaRoutes, ruma_wrapper::Ruma};

pub(crate) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<get_supported_versions::Request, _, _>(versions)
        .ruma::<discover_homeserver::Request, _, _>(well_known_client)
        .route("/.well-known/matrix/server", get(well_known_server))
        .ruma::<get_capabilities::v3::Request, _, _>(capabilities)
}

/// The spec versions whose client-server API this server follows.
const SPEC_VERSIONS: [&str; 19] = [
    "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11",
    "v1.12", "v1.13", "v1.14", "v1.15", "v1.16", "v1.17", "v1.18", "v1.19",
];

async fn versions(
    _: Ruma<get_supported_versions::Request>,
) -> RumaResponse<get_supported_versions::Response> {
    let versions = SPEC_VERSIONS.iter().map(|v| (*v).to_owned()).collect();
    RumaResponse(get_supported_versions::Response::new(versions))
}

async fn well_known_client(
    State(services): State<Arc<Services>>,
    _: Ruma<discover_homeserver::Request>,
) -> RumaResponse<discover_homeserver::Response> {
    RumaResponse(discover_homeserver::Response::new(HomeserverInfo::new(
        services.config.client_base_url(),
    )))
}

/// `{"m.server": "host:port"}` when configured (delegation); otherwise there is nothing to
/// delegate to and other servers fall back to the server name itself.
async fn well_known_server(
    State(services): State<Arc<Services>>,
) -> Result<Json<JsonValue>, ApiError> {
    match &services.config.well_known_server {
        Some(server) => Ok(Json(json!({ "m.server": server }))),
        None => Err(ApiError::new(
            http::StatusCode::NOT_FOUND,
            "M_NOT_FOUND",
            "No server delegation is configured",
        )),
    }
}

async fn capabilities(
    _: Ruma<get_capabilities::v3::Request>,
) -> RumaResponse<get_capabilities::v3::Response> {
    let mut capabilities = Capabilities::new();
    capabilities.change_password = ChangePasswordCapability::new(true);
    // The versions rooms are created in; the default is the spec's recommendation.
    let available: BTreeMap<RoomVersionId, RoomVersionStability> =
        [RoomVersionId::V10, RoomVersionId::V11, RoomVersionId::V12]
            .into_iter()
            .map(|version| (version, RoomVersionStability::Stable))
            .collect();
    capabilities.room_versions = RoomVersionsCapability::new(RoomVersionId::V12, available);
    capabilities.thirdparty_id_changes = ThirdPartyIdChangesCapability::new(false);
    capabilities.get_login_token = GetLoginTokenCapability::new(true);
    // Supersedes m.set_displayname and m.set_avatar_url since v1.16: every field may be set.
    capabilities.profile_fields = Some(ProfileFieldsCapability::new(true));
    RumaResponse(get_capabilities::v3::Response::new(capabilities))
}
