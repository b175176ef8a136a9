//! Dehydrated devices (MSC3814, `/_matrix/client/unstable/org.matrix.msc3814.v1/`).

use std::sync::Arc;

use axum::{Router, extract::State};
use ruma::{
    api::client::dehydrated_device::{
        delete_dehydrated_device, get_dehydrated_device, get_events, put_dehydrated_device,
    },
    serde::Raw,
};
use tessera_core::Services;
use tessera_federation::edge::{ApiError, RumaResponse};

use crate::{route::RumaRoutes, ruma_wrapper::Ruma};

type ApiResult<T> = Result<RumaResponse<T>, ApiError>;

pub(crate) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<put_dehydrated_device::unstable::Request, _, _>(put)
        .ruma::<get_dehydrated_device::unstable::Request, _, _>(get)
        .ruma::<delete_dehydrated_device::unstable::Request, _, _>(delete)
        .ruma::<get_events::unstable::Request, _, _>(events)
}

async fn put(
    State(s): State<Arc<Services>>,
    req: Ruma<put_dehydrated_device::unstable::Request>,
) -> ApiResult<put_dehydrated_device::unstable::Response> {
    let user_id = req.caller()?.user_id.clone();
    let device_id = s.e2ee.put_dehydrated_device(&user_id, req.body).await?;
    Ok(RumaResponse(
        put_dehydrated_device::unstable::Response::new(device_id),
    ))
}

async fn get(
    State(s): State<Arc<Services>>,
    req: Ruma<get_dehydrated_device::unstable::Request>,
) -> ApiResult<get_dehydrated_device::unstable::Response> {
    let caller = req.caller()?;
    let (device_id, device_data) = s.e2ee.dehydrated_device(&caller.user_id).await?;
    let device_data = serde_json::value::RawValue::from_string(device_data)
        .map(Raw::from_json)
        .map_err(|e| ApiError::internal(format!("stored dehydrated device: {e}")))?;
    Ok(RumaResponse(
        get_dehydrated_device::unstable::Response::new(device_id, device_data),
    ))
}

async fn delete(
    State(s): State<Arc<Services>>,
    req: Ruma<delete_dehydrated_device::unstable::Request>,
) -> ApiResult<delete_dehydrated_device::unstable::Response> {
    let caller = req.caller()?;
    let device_id = s.e2ee.delete_dehydrated_device(&caller.user_id).await?;
    Ok(RumaResponse(
        delete_dehydrated_device::unstable::Response::new(device_id),
    ))
}

async fn events(
    State(s): State<Arc<Services>>,
    req: Ruma<get_events::unstable::Request>,
) -> ApiResult<get_events::unstable::Response> {
    let caller = req.caller()?;
    let batch = s
        .e2ee
        .dehydrated_device_events(&caller.user_id, &req.body)
        .await?;
    let mut response = get_events::unstable::Response::new(batch.events);
    response.next_batch = Some(batch.next_batch);
    Ok(RumaResponse(response))
}
