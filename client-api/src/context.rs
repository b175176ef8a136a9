//! `GET /rooms/{roomId}/context/{eventId}` and `GET /rooms/{roomId}/timestamp_to_event`.

use std::sync::Arc;

use axum::{Router, extract::State};
use ruma::{
    api::{
        Direction as ApiDirection,
        client::{context::get_context, room::get_event_by_timestamp},
    },
    serde::Raw,
};
use tessera_core::{Services, rooms::Direction};
use tessera_federation::edge::{ApiError, RumaResponse};

use crate::{route::RumaRoutes, ruma_wrapper::Ruma};

type ApiResult<T> = Result<RumaResponse<T>, ApiError>;

pub(crate) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<get_context::v3::Request, _, _>(context)
        .ruma::<get_event_by_timestamp::v1::Request, _, _>(timestamp_to_event)
}

async fn context(
    State(s): State<Arc<Services>>,
    req: Ruma<get_context::v3::Request>,
) -> ApiResult<get_context::v3::Response> {
    let caller = req.caller()?;
    let b = &req.body;
    let max = s.config.limits.max_page_size as usize;
    let limit = usize::try_from(u64::from(b.limit))
        .unwrap_or(usize::MAX)
        .min(max);
    let page = s
        .rooms
        .context_for(&caller.user_id, &b.room_id, &b.event_id, limit, &b.filter)
        .await?;
    let mut response = get_context::v3::Response::new();
    response.start = Some(page.start.to_string());
    response.end = Some(page.end.to_string());
    response.events_before = page.events_before.into_iter().map(Raw::from_json).collect();
    response.event = Some(Raw::from_json(page.event));
    response.events_after = page.events_after.into_iter().map(Raw::from_json).collect();
    response.state = page.state.into_iter().map(Raw::from_json).collect();
    Ok(RumaResponse(response))
}

async fn timestamp_to_event(
    State(s): State<Arc<Services>>,
    req: Ruma<get_event_by_timestamp::v1::Request>,
) -> ApiResult<get_event_by_timestamp::v1::Response> {
    let caller = req.caller()?;
    let b = &req.body;
    let dir = match b.dir {
        ApiDirection::Forward => Direction::Forward,
        _ => Direction::Backward,
    };
    let (event_id, origin_server_ts) = s
        .rooms
        .event_at_timestamp(&caller.user_id, &b.room_id, b.ts, dir)
        .await?;
    Ok(RumaResponse(get_event_by_timestamp::v1::Response::new(
        event_id,
        origin_server_ts,
    )))
}
