//! Device and key queries of other servers about this one's users (spec: Server-Server API,
//! "End-to-End Encryption", "Device Management").

use std::sync::Arc;

use axum::extract::State;
use ruma::{
    UInt,
    api::federation::{
        device::get_devices::{self, v1::UserDevice},
        keys::{claim_keys, get_keys},
    },
};
use tessera_core::Services;

use crate::{
    edge::{ApiError, RumaResponse},
    extract::Signed,
};

/// `GET /_matrix/federation/v1/user/devices/{userId}`: the devices that have keys, and the
/// user's master and self-signing keys.
pub async fn devices(
    State(s): State<Arc<Services>>,
    request: Signed<get_devices::v1::Request>,
) -> Result<RumaResponse<get_devices::v1::Response>, ApiError> {
    let user_id = request.body.user_id;
    if user_id.server_name() != s.config.server_name {
        return Err(ApiError::invalid_param(format!(
            "{user_id} is not a user of this server"
        )));
    }
    let keys = s
        .e2ee
        .local_keys(None, &[(user_id.clone(), Vec::new())].into())
        .await?;
    let stream_id = UInt::try_from(s.store.device_list_position()).unwrap_or_default();
    let mut response = get_devices::v1::Response::new(user_id.clone(), stream_id);
    let names: std::collections::HashMap<_, _> = s
        .users
        .devices(&user_id)
        .await?
        .into_iter()
        .map(|device| (device.device_id, device.display_name))
        .collect();
    for (device_id, device_keys) in keys.device_keys.into_values().flatten() {
        let mut device = UserDevice::new(device_id.clone(), device_keys);
        device.device_display_name = names.get(&device_id).cloned().flatten();
        response.devices.push(device);
    }
    response.master_key = keys.master_keys.into_values().next();
    response.self_signing_key = keys.self_signing_keys.into_values().next();
    Ok(RumaResponse(response))
}

/// `POST /_matrix/federation/v1/user/keys/query`: keys of this server's users only.
pub async fn keys_query(
    State(s): State<Arc<Services>>,
    request: Signed<get_keys::v1::Request>,
) -> Result<RumaResponse<get_keys::v1::Response>, ApiError> {
    let keys = s.e2ee.local_keys(None, &request.body.device_keys).await?;
    let mut response = get_keys::v1::Response::new(keys.device_keys);
    response.master_keys = keys.master_keys;
    response.self_signing_keys = keys.self_signing_keys;
    Ok(RumaResponse(response))
}

/// `POST /_matrix/federation/v1/user/keys/claim`: one-time keys of this server's devices.
pub async fn keys_claim(
    State(s): State<Arc<Services>>,
    request: Signed<claim_keys::v1::Request>,
) -> Result<RumaResponse<claim_keys::v1::Response>, ApiError> {
    let claimed = s.e2ee.claim_local_keys(&request.body.one_time_keys).await?;
    Ok(RumaResponse(claim_keys::v1::Response::new(claimed)))
}
