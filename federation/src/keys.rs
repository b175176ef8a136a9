//! Publishing this server's signing key (spec: "Publishing Keys", `GET /_matrix/key/v2/server`).

use std::{sync::Arc, time::Duration};

use axum::{Json, extract::State};
use ruma::{
    CanonicalJsonValue, MilliSecondsSinceUnixEpoch, OwnedServerSigningKeyId,
    api::federation::discovery::{ServerSigningKeys, VerifyKey},
    serde::Base64,
};
use tessera_core::Services;

use crate::edge::ApiError;

/// How long other servers may cache our key response: Synapse's default, one day.
const KEY_VALIDITY: Duration = Duration::from_secs(24 * 60 * 60);

/// The server's current key, signed by itself. The optional `{key_id}` path segment is
/// deprecated; the full response is correct for it too.
pub async fn server_keys(
    State(services): State<Arc<Services>>,
) -> Result<Json<CanonicalJsonValue>, ApiError> {
    let key = &services.signing_key;
    let valid_until =
        MilliSecondsSinceUnixEpoch::from_system_time(std::time::SystemTime::now() + KEY_VALIDITY)
            .ok_or_else(|| ApiError::internal("clock out of range"))?;
    let mut keys = ServerSigningKeys::new(services.config.server_name.clone(), valid_until);
    let key_id: OwnedServerSigningKeyId = key
        .key_id()
        .try_into()
        .map_err(|e| ApiError::internal(format!("signing key id: {e}")))?;
    let public = Base64::parse(key.public_key_base64())
        .map_err(|e| ApiError::internal(format!("public key: {e}")))?;
    keys.verify_keys.insert(key_id, VerifyKey::new(public));
    let CanonicalJsonValue::Object(mut object) = ruma::canonical_json::to_canonical_value(&keys)
        .map_err(|e| ApiError::internal(e.to_string()))?
    else {
        return Err(ApiError::internal(
            "server keys did not serialize to an object",
        ));
    };
    ruma::signatures::sign_json(
        services.config.server_name.as_str(),
        key.pair(),
        &mut object,
    )
    .map_err(|e| ApiError::internal(format!("signing failed: {e}")))?;
    Ok(Json(CanonicalJsonValue::Object(object)))
}
