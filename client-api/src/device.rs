//! Device management: list, get, rename, delete (with UIA), `delete_devices`.

use std::sync::Arc;

use axum::{Router, extract::State};
use ruma::{
    MilliSecondsSinceUnixEpoch, UInt,
    api::client::device::{
        self as api, delete_device, delete_devices, get_device, get_devices, update_device,
    },
};
use tessera_core::{Services, store::Device};
use tessera_federation::edge::{ApiError, RumaResponse};

use crate::{route::RumaRoutes, ruma_wrapper::Ruma};

type ApiResult<T> = Result<RumaResponse<T>, ApiError>;

pub(crate) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<get_devices::v3::Request, _, _>(list)
        .ruma::<get_device::v3::Request, _, _>(get)
        .ruma::<update_device::v3::Request, _, _>(rename)
        .ruma::<delete_device::v3::Request, _, _>(delete)
        .ruma::<delete_devices::v3::Request, _, _>(delete_many)
}

fn to_api(device: Device) -> api::Device {
    let mut out = api::Device::new(device.device_id);
    out.display_name = device.display_name;
    out.last_seen_ip = device.last_seen_ip;
    out.last_seen_ts = device
        .last_seen_ts
        .and_then(|ts| UInt::try_from(ts).ok())
        .map(MilliSecondsSinceUnixEpoch);
    out
}

async fn list(
    State(s): State<Arc<Services>>,
    req: Ruma<get_devices::v3::Request>,
) -> ApiResult<get_devices::v3::Response> {
    let devices = s.users.devices(&req.caller()?.user_id).await?;
    Ok(RumaResponse(get_devices::v3::Response::new(
        devices.into_iter().map(to_api).collect(),
    )))
}

async fn get(
    State(s): State<Arc<Services>>,
    req: Ruma<get_device::v3::Request>,
) -> ApiResult<get_device::v3::Response> {
    let device = s
        .users
        .device(&req.caller()?.user_id, &req.body.device_id)
        .await?;
    Ok(RumaResponse(get_device::v3::Response::new(to_api(device))))
}

async fn rename(
    State(s): State<Arc<Services>>,
    req: Ruma<update_device::v3::Request>,
) -> ApiResult<update_device::v3::Response> {
    let caller = req.caller()?;
    s.users
        .rename_device(
            &caller.user_id,
            &req.body.device_id,
            req.body.display_name.as_deref(),
        )
        .await?;
    Ok(RumaResponse(update_device::v3::Response::new()))
}

async fn delete(
    State(s): State<Arc<Services>>,
    req: Ruma<delete_device::v3::Request>,
) -> ApiResult<delete_device::v3::Response> {
    let caller = req.caller()?;
    // 404 before UIA, so a client is not asked for a password to delete nothing.
    s.users.device(&caller.user_id, &req.body.device_id).await?;
    s.users
        .confirm_with_password("delete_device", &caller.user_id, req.body.auth.as_ref())
        .await?;
    s.users
        .delete_devices(&caller.user_id, std::slice::from_ref(&req.body.device_id))
        .await?;
    Ok(RumaResponse(delete_device::v3::Response::new()))
}

async fn delete_many(
    State(s): State<Arc<Services>>,
    req: Ruma<delete_devices::v3::Request>,
) -> ApiResult<delete_devices::v3::Response> {
    let caller = req.caller()?;
    s.users
        .confirm_with_password("delete_devices", &caller.user_id, req.body.auth.as_ref())
        .await?;
    s.users
        .delete_devices(&caller.user_id, &req.body.devices)
        .await?;
    Ok(RumaResponse(delete_devices::v3::Response::new()))
}
