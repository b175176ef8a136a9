//! Synapse-compatible shared-secret registration: `GET/POST /_synapse/admin/v1/register`.
//! Not part of the Matrix spec, but bots, scripts and test harnesses rely on it.

use std::sync::Arc;

use axum::{Json, Router, extract::State, routing::get};
use ruma::{OwnedDeviceId, OwnedServerName, OwnedUserId};
use serde::{Deserialize, Serialize};
use tessera_core::{Services, ratelimit::Action, users::SharedSecretRegistration};
use tessera_federation::edge::ApiError;

use crate::{json_body::JsonBody, ruma_wrapper::ClientIp};

pub(crate) fn routes(router: axum::Router<Arc<Services>>) -> Router<Arc<Services>> {
    router.route("/_synapse/admin/v1/register", get(nonce).post(register))
}

#[derive(Serialize)]
struct NonceResponse {
    nonce: String,
}

async fn nonce(
    State(s): State<Arc<Services>>,
    ip: ClientIp,
) -> Result<Json<NonceResponse>, ApiError> {
    s.rate_limiter.check(Action::Register, &ip.key())?;
    Ok(Json(NonceResponse {
        nonce: s.users.shared_secret_nonce()?,
    }))
}

#[derive(Deserialize)]
struct RegisterRequest {
    nonce: String,
    username: String,
    password: String,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    user_type: Option<String>,
    #[serde(default)]
    displayname: Option<String>,
    mac: String,
}

#[derive(Serialize)]
struct RegisterResponse {
    user_id: OwnedUserId,
    access_token: String,
    device_id: OwnedDeviceId,
    home_server: OwnedServerName,
}

async fn register(
    State(s): State<Arc<Services>>,
    ip: ClientIp,
    JsonBody(req): JsonBody<RegisterRequest>,
) -> Result<Json<RegisterResponse>, ApiError> {
    s.rate_limiter.check(Action::Register, &ip.key())?;
    let (session, home_server) = s
        .users
        .register_with_shared_secret(SharedSecretRegistration {
            nonce: &req.nonce,
            username: &req.username,
            password: &req.password,
            admin: req.admin,
            user_type: req.user_type.as_deref(),
            displayname: req.displayname.as_deref(),
            mac: &req.mac,
        })
        .await?;
    Ok(Json(RegisterResponse {
        user_id: session.user_id,
        access_token: session.access_token,
        device_id: session.device_id,
        home_server,
    }))
}
