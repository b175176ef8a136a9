//! `POST /user/{userId}/openid/request_token` (spec: "OpenID").

use std::{sync::Arc, time::Duration};

use axum::{Router, extract::State};
use ruma::{api::client::account::request_openid_token, authentication::TokenType};
use tessera_core::Services;
use tessera_federation::edge::{ApiError, RumaResponse};

use crate::{route::RumaRoutes, ruma_wrapper::Ruma};

pub(crate) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router.ruma::<request_openid_token::v3::Request, _, _>(request_token)
}

async fn request_token(
    State(s): State<Arc<Services>>,
    req: Ruma<request_openid_token::v3::Request>,
) -> Result<RumaResponse<request_openid_token::v3::Response>, ApiError> {
    let caller = req.caller()?;
    let (token, lifetime_ms) = s
        .users
        .create_openid_token(&caller.user_id, &req.body.user_id)
        .await?;
    Ok(RumaResponse(request_openid_token::v3::Response::new(
        token,
        TokenType::Bearer,
        s.config.server_name.clone(),
        Duration::from_millis(lifetime_ms),
    )))
}
