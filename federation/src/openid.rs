//! `GET /_matrix/federation/v1/openid/userinfo` (spec: Server-Server API, "OpenID"): a third
//! party checks a token a user gave it. Authenticated by the token, not by a server signature.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::federation::openid::get_openid_userinfo;
use tessera_core::Services;

use crate::{
    edge::{ApiError, RumaResponse},
    extract::Unsigned,
};

pub async fn userinfo(
    State(s): State<Arc<Services>>,
    Unsigned(request): Unsigned<get_openid_userinfo::v1::Request>,
) -> Result<RumaResponse<get_openid_userinfo::v1::Response>, ApiError> {
    let user_id = s.users.openid_token_user(&request.access_token).await?;
    Ok(RumaResponse(get_openid_userinfo::v1::Response::new(
        user_id,
    )))
}
