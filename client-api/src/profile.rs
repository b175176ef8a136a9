//! Profiles: `GET /profile/{userId}` and per-field get/set/delete (`displayname`,
//! `avatar_url`, custom fields).

use std::sync::Arc;

use axum::{Router, extract::State};
use ruma::api::client::profile::{
    ProfileFieldValue, UserProfile, delete_profile_field, get_profile, get_profile_field,
    set_profile_field,
};
use tessera_core::Services;
use tessera_federation::edge::{ApiError, RumaResponse};

use crate::{route::RumaRoutes, ruma_wrapper::Ruma};

type ApiResult<T> = Result<RumaResponse<T>, ApiError>;

pub(crate) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<get_profile::v3::Request, _, _>(profile)
        .ruma::<get_profile_field::v3::Request, _, _>(field)
        .ruma::<set_profile_field::v3::Request, _, _>(set_field)
        .ruma::<delete_profile_field::v3::Request, _, _>(delete_field)
}

async fn profile(
    State(s): State<Arc<Services>>,
    req: Ruma<get_profile::v3::Request>,
) -> ApiResult<get_profile::v3::Response> {
    let fields = s.profile(&req.body.user_id).await?;
    let mut response = get_profile::v3::Response::new();
    response.data = fields.into_iter().collect::<UserProfile>();
    Ok(RumaResponse(response))
}

async fn field(
    State(s): State<Arc<Services>>,
    req: Ruma<get_profile_field::v3::Request>,
) -> ApiResult<get_profile_field::v3::Response> {
    let name = req.body.field.as_str();
    let value = s.profile_field(&req.body.user_id, name).await?;
    let value = ProfileFieldValue::new(name, value)
        .map_err(|e| ApiError::internal(format!("stored profile field {name} is invalid: {e}")))?;
    Ok(RumaResponse(get_profile_field::v3::Response::new(value)))
}

async fn set_field(
    State(s): State<Arc<Services>>,
    req: Ruma<set_profile_field::v3::Request>,
) -> ApiResult<set_profile_field::v3::Response> {
    req.caller_is(&req.body.user_id, "change the profile of")?;
    let value = &req.body.value;
    s.users
        .set_profile_field(
            &req.body.user_id,
            value.field_name().as_str(),
            value.value().into_owned(),
        )
        .await?;
    s.rooms.refresh_member_profiles(&req.body.user_id).await?;
    Ok(RumaResponse(set_profile_field::v3::Response::new()))
}

async fn delete_field(
    State(s): State<Arc<Services>>,
    req: Ruma<delete_profile_field::v3::Request>,
) -> ApiResult<delete_profile_field::v3::Response> {
    req.caller_is(&req.body.user_id, "change the profile of")?;
    s.users
        .delete_profile_field(&req.body.user_id, req.body.field.as_str())
        .await?;
    s.rooms.refresh_member_profiles(&req.body.user_id).await?;
    Ok(RumaResponse(delete_profile_field::v3::Response::new()))
}
