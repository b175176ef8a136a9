//! Sessions: `/login` (flows; password and token), `/login/get_token`, `/logout`,
//! `/logout/all`, `/refresh`.

use std::{sync::Arc, time::Duration};

use axum::{Router, extract::State};
use ruma::api::client::session::{
    get_login_token,
    get_login_types::{
        self,
        v3::{LoginType, PasswordLoginType, TokenLoginType},
    },
    login::{self, v3::LoginInfo},
    logout, logout_all, refresh_token,
};
use tessera_core::{
    Services,
    ratelimit::Action,
    users::{LoginIdentifier, SessionRequest},
};
use tessera_federation::edge::{ApiError, RumaResponse};

use crate::{route::RumaRoutes, ruma_wrapper::Ruma};

type ApiResult<T> = Result<RumaResponse<T>, ApiError>;

pub(crate) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<get_login_types::v3::Request, _, _>(login_flows)
        .ruma::<login::v3::Request, _, _>(login)
        .ruma::<get_login_token::v1::Request, _, _>(login_token)
        .ruma::<logout::v3::Request, _, _>(logout)
        .ruma::<logout_all::v3::Request, _, _>(logout_all)
        .ruma::<refresh_token::v3::Request, _, _>(refresh)
}

async fn login_flows(
    _: Ruma<get_login_types::v3::Request>,
) -> RumaResponse<get_login_types::v3::Response> {
    let mut token = TokenLoginType::new();
    token.get_login_token = true;
    RumaResponse(get_login_types::v3::Response::new(vec![
        LoginType::Password(PasswordLoginType::new()),
        LoginType::Token(token),
    ]))
}

async fn login(
    State(s): State<Arc<Services>>,
    req: Ruma<login::v3::Request>,
) -> ApiResult<login::v3::Response> {
    s.rate_limiter.check(Action::Login, &req.ip_key())?;
    let who = match &req.body.login_info {
        LoginInfo::Password(password) => {
            #[allow(deprecated)] // Older clients still send the top-level `user` field.
            let identifier = match (&password.identifier, &password.user) {
                (Some(identifier), _) => LoginIdentifier::from_ruma(identifier),
                (None, Some(user)) => LoginIdentifier::User(user),
                (None, None) => {
                    return Err(ApiError::bad_json("m.login.password needs an identifier"));
                }
            };
            s.users
                .password_login(identifier, &password.password)
                .await?
        }
        LoginInfo::Token(token) => s.users.token_login(&token.token).await?,
        other => {
            return Err(ApiError::new(
                http::StatusCode::BAD_REQUEST,
                "M_UNKNOWN",
                format!("Login type {} is not supported", other.login_type()),
            ));
        }
    };
    let ip = req.ip_key();
    let session = s
        .users
        .open_session(
            &who,
            SessionRequest {
                device_id: req.body.device_id.as_deref(),
                display_name: req.body.initial_device_display_name.as_deref(),
                refresh_token: req.body.refresh_token,
                ip: Some(&ip),
            },
        )
        .await?;
    let mut response =
        login::v3::Response::new(session.user_id, session.access_token, session.device_id);
    response.refresh_token = session.refresh_token;
    response.expires_in = session.expires_in_ms.map(Duration::from_millis);
    Ok(RumaResponse(response))
}

async fn login_token(
    State(s): State<Arc<Services>>,
    req: Ruma<get_login_token::v1::Request>,
) -> ApiResult<get_login_token::v1::Response> {
    let caller = req.caller()?;
    s.users
        .confirm_with_password("get_login_token", &caller.user_id, req.body.auth.as_ref())
        .await?;
    let (token, lifetime_ms) = s.users.create_login_token(&caller.user_id).await?;
    Ok(RumaResponse(get_login_token::v1::Response::new(
        Duration::from_millis(lifetime_ms),
        token,
    )))
}

async fn logout(
    State(s): State<Arc<Services>>,
    req: Ruma<logout::v3::Request>,
) -> ApiResult<logout::v3::Response> {
    s.users.logout(req.caller()?).await?;
    Ok(RumaResponse(logout::v3::Response::new()))
}

async fn logout_all(
    State(s): State<Arc<Services>>,
    req: Ruma<logout_all::v3::Request>,
) -> ApiResult<logout_all::v3::Response> {
    s.users.logout_all(&req.caller()?.user_id).await?;
    Ok(RumaResponse(logout_all::v3::Response::new()))
}

async fn refresh(
    State(s): State<Arc<Services>>,
    req: Ruma<refresh_token::v3::Request>,
) -> ApiResult<refresh_token::v3::Response> {
    let session = s.users.refresh(&req.body.refresh_token).await?;
    let mut response = refresh_token::v3::Response::new(session.access_token);
    response.refresh_token = session.refresh_token;
    response.expires_in_ms = session.expires_in_ms.map(Duration::from_millis);
    Ok(RumaResponse(response))
}
