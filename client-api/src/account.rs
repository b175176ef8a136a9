//! Accounts: `/register` (+ availability and token validity), `/account/whoami`,
//! `/account/password`, `/account/deactivate`.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::State,
    response::{IntoResponse, Response},
};
use ruma::api::client::account::{
    ThirdPartyIdRemovalStatus, change_password, check_registration_token_validity, deactivate,
    get_username_availability, register, whoami,
};
use serde_json::json;
use tessera_core::{
    Services,
    ratelimit::Action,
    store::KeepSessions,
    users::{Registration, SessionRequest},
};
use tessera_federation::edge::{ApiError, RumaResponse};

use crate::{route::RumaRoutes, ruma_wrapper::Ruma};

type ApiResult<T> = Result<RumaResponse<T>, ApiError>;

pub(crate) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<register::v3::Request, _, _>(register)
        .ruma::<get_username_availability::v3::Request, _, _>(username_available)
        .ruma::<check_registration_token_validity::v1::Request, _, _>(registration_token_validity)
        .ruma::<whoami::v3::Request, _, _>(whoami)
        .ruma::<change_password::v3::Request, _, _>(change_password)
        .ruma::<deactivate::v3::Request, _, _>(deactivate)
}

async fn register(
    State(s): State<Arc<Services>>,
    req: Ruma<register::v3::Request>,
) -> Result<Response, ApiError> {
    s.rate_limiter.check(Action::Register, &req.ip_key())?;
    let body = &req.body;
    if body.kind == register::RegistrationKind::Guest {
        return Err(ApiError::forbidden(
            "Guest access is disabled on this server",
        ));
    }
    if body.login_type.is_some() {
        return Err(ApiError::forbidden(
            "Application service registration is not available",
        ));
    }
    let ip = req.ip_key();
    let (user_id, session) = s
        .users
        .register(Registration {
            localpart: body.username.as_deref(),
            password: body.password.as_deref(),
            auth: body.auth.as_ref(),
            inhibit_login: body.inhibit_login,
            session: SessionRequest {
                device_id: body.device_id.as_deref(),
                display_name: body.initial_device_display_name.as_deref(),
                refresh_token: body.refresh_token,
                ip: Some(&ip),
            },
        })
        .await?;
    let Some(session) = session else {
        // With inhibit_login the spec omits device_id; ruma's type would send it as null.
        return Ok(Json(json!({ "user_id": user_id })).into_response());
    };
    let mut response = register::v3::Response::new(user_id);
    response.access_token = Some(session.access_token);
    response.device_id = Some(session.device_id);
    response.refresh_token = session.refresh_token;
    response.expires_in = session.expires_in_ms.map(std::time::Duration::from_millis);
    Ok(RumaResponse(response).into_response())
}

async fn username_available(
    State(s): State<Arc<Services>>,
    req: Ruma<get_username_availability::v3::Request>,
) -> ApiResult<get_username_availability::v3::Response> {
    s.rate_limiter.check(Action::Register, &req.ip_key())?;
    s.users.username_available(&req.body.username).await?;
    Ok(RumaResponse(get_username_availability::v3::Response::new(
        true,
    )))
}

async fn registration_token_validity(
    State(s): State<Arc<Services>>,
    req: Ruma<check_registration_token_validity::v1::Request>,
) -> ApiResult<check_registration_token_validity::v1::Response> {
    s.rate_limiter.check(Action::Register, &req.ip_key())?;
    let valid = s.users.registration_token_valid(&req.body.token)?;
    Ok(RumaResponse(
        check_registration_token_validity::v1::Response::new(valid),
    ))
}

async fn whoami(req: Ruma<whoami::v3::Request>) -> ApiResult<whoami::v3::Response> {
    let caller = req.caller()?;
    let mut response = whoami::v3::Response::new(caller.user_id.clone(), false);
    response.device_id = Some(caller.device_id.clone());
    Ok(RumaResponse(response))
}

async fn change_password(
    State(s): State<Arc<Services>>,
    req: Ruma<change_password::v3::Request>,
) -> ApiResult<change_password::v3::Response> {
    let caller = req.caller()?;
    s.users
        .confirm_with_password("change_password", &caller.user_id, req.body.auth.as_ref())
        .await?;
    let keep = if req.body.logout_devices {
        KeepSessions::Only(&caller.device_id)
    } else {
        KeepSessions::All
    };
    s.users
        .set_password(&caller.user_id, &req.body.new_password, keep)
        .await?;
    Ok(RumaResponse(change_password::v3::Response::new()))
}

async fn deactivate(
    State(s): State<Arc<Services>>,
    req: Ruma<deactivate::v3::Request>,
) -> ApiResult<deactivate::v3::Response> {
    let caller = req.caller()?;
    s.users
        .confirm_with_password("deactivate", &caller.user_id, req.body.auth.as_ref())
        .await?;
    s.users.deactivate(&caller.user_id).await?;
    // No identity server bindings are ever made, so there is nothing to unbind.
    Ok(RumaResponse(deactivate::v3::Response::new(
        ThirdPartyIdRemovalStatus::NoSupport,
    )))
}
