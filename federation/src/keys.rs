//! Publishing this server's signing key (spec: "Publishing Keys", `GET /_matrix/key/v2/server`)
//! and answering for other servers' keys as a notary (`/_matrix/key/v2/query`).

use std::sync::Arc;

use axum::{Json, extract::State};
use ruma::{
    CanonicalJsonObject, MilliSecondsSinceUnixEpoch, ServerName,
    api::federation::discovery::{get_remote_server_keys, get_remote_server_keys_batch},
    serde::Raw,
};
use tessera_core::Services;

use crate::{
    edge::{ApiError, RumaResponse},
    extract::Unsigned,
};

/// The server's current key, signed by itself. The optional `{key_id}` path segment is
/// deprecated; the full response is correct for it too.
pub async fn server_keys(
    State(services): State<Arc<Services>>,
) -> Result<Json<CanonicalJsonObject>, ApiError> {
    Ok(Json(services.federation.keys.own_response()?))
}

/// Servers asked about in one notary request: each may mean a fetch.
const MAX_BATCH_SERVERS: usize = 100;

/// `GET /_matrix/key/v2/query/{serverName}`.
pub async fn query_one(
    State(services): State<Arc<Services>>,
    Unsigned(request): Unsigned<get_remote_server_keys::v2::Request>,
) -> Result<RumaResponse<get_remote_server_keys::v2::Response>, ApiError> {
    let minimum = request.minimum_valid_until_ts.get().into();
    let keys = responses_for(&services, &request.server_name, minimum).await?;
    Ok(RumaResponse(get_remote_server_keys::v2::Response::new(
        keys,
    )))
}

/// `POST /_matrix/key/v2/query`.
pub async fn query_batch(
    State(services): State<Arc<Services>>,
    Unsigned(request): Unsigned<get_remote_server_keys_batch::v2::Request>,
) -> Result<RumaResponse<get_remote_server_keys_batch::v2::Response>, ApiError> {
    if request.server_keys.len() > MAX_BATCH_SERVERS {
        return Err(ApiError::too_large(format!(
            "At most {MAX_BATCH_SERVERS} servers can be queried at once"
        )));
    }
    let mut all = Vec::new();
    for (server, criteria) in &request.server_keys {
        // The strictest criterion of the key IDs asked for applies to the response.
        let minimum = criteria
            .values()
            .filter_map(|c| c.minimum_valid_until_ts)
            .map(|ts| u64::from(ts.get()))
            .max()
            .unwrap_or_else(|| MilliSecondsSinceUnixEpoch::now().get().into());
        all.extend(responses_for(&services, server, minimum).await?);
    }
    Ok(RumaResponse(
        get_remote_server_keys_batch::v2::Response::new(all),
    ))
}

/// The key responses of `server`, as raw JSON; none when they cannot be obtained (the spec
/// leaves such a server out of the answer).
async fn responses_for<T>(
    services: &Services,
    server: &ServerName,
    minimum_valid_until: u64,
) -> Result<Vec<Raw<T>>, ApiError> {
    let objects = match services
        .federation
        .keys
        .notary_responses(server, minimum_valid_until)
        .await
    {
        Ok(objects) => objects,
        Err(e) => {
            tracing::info!(%server, error = %e, "notary: no keys to return");
            return Ok(Vec::new());
        }
    };
    objects
        .iter()
        .map(|object| {
            serde_json::value::to_raw_value(object)
                .map(Raw::from_json)
                .map_err(|e| ApiError::internal(e.to_string()))
        })
        .collect()
}
