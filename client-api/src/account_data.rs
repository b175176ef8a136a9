//! Account data, global and per room: get and set.

use std::sync::Arc;

use axum::{Router, extract::State};
use ruma::{
    api::client::config::{
        get_global_account_data, get_room_account_data, set_global_account_data,
        set_room_account_data,
    },
    serde::Raw,
};
use tessera_core::Services;
use tessera_federation::edge::{ApiError, RumaResponse};

use crate::{route::RumaRoutes, ruma_wrapper::Ruma};

type ApiResult<T> = Result<RumaResponse<T>, ApiError>;

pub(crate) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<get_global_account_data::v3::Request, _, _>(get_global)
        .ruma::<set_global_account_data::v3::Request, _, _>(set_global)
        .ruma::<get_room_account_data::v3::Request, _, _>(get_room)
        .ruma::<set_room_account_data::v3::Request, _, _>(set_room)
}

async fn get_global(
    State(s): State<Arc<Services>>,
    req: Ruma<get_global_account_data::v3::Request>,
) -> ApiResult<get_global_account_data::v3::Response> {
    req.caller_is(&req.body.user_id, "access the account data of")?;
    let content = s
        .users
        .account_data(&req.body.user_id, None, &req.body.event_type.to_string())
        .await?;
    Ok(RumaResponse(get_global_account_data::v3::Response::new(
        Raw::from_json(content),
    )))
}

async fn set_global(
    State(s): State<Arc<Services>>,
    req: Ruma<set_global_account_data::v3::Request>,
) -> ApiResult<set_global_account_data::v3::Response> {
    req.caller_is(&req.body.user_id, "access the account data of")?;
    let data_type = req.body.event_type.to_string();
    s.users
        .set_account_data(&req.body.user_id, None, &data_type, req.body.data.json())
        .await?;
    Ok(RumaResponse(set_global_account_data::v3::Response::new()))
}

async fn get_room(
    State(s): State<Arc<Services>>,
    req: Ruma<get_room_account_data::v3::Request>,
) -> ApiResult<get_room_account_data::v3::Response> {
    req.caller_is(&req.body.user_id, "access the account data of")?;
    let data_type = req.body.event_type.to_string();
    let content = s
        .users
        .account_data(&req.body.user_id, Some(&req.body.room_id), &data_type)
        .await?;
    Ok(RumaResponse(get_room_account_data::v3::Response::new(
        Raw::from_json(content),
    )))
}

async fn set_room(
    State(s): State<Arc<Services>>,
    req: Ruma<set_room_account_data::v3::Request>,
) -> ApiResult<set_room_account_data::v3::Response> {
    req.caller_is(&req.body.user_id, "access the account data of")?;
    let data_type = req.body.event_type.to_string();
    s.users
        .set_account_data(
            &req.body.user_id,
            Some(&req.body.room_id),
            &data_type,
            req.body.data.json(),
        )
        .await?;
    Ok(RumaResponse(set_room_account_data::v3::Response::new()))
}
