//! Sending and reading events: send, state, redact, `/event`, `/state`, `/messages`.

use std::sync::Arc;

use axum::{Router, extract::State};
use ruma::{
    api::{
        Direction as ApiDirection,
        client::{
            message::{get_message_events, send_message_event},
            redact::redact_event,
            room::get_room_event,
            state::{get_state_event_for_key, get_state_events, send_state_event},
        },
    },
    events::TimelineEventType,
    serde::Raw,
};
use serde_json::{Value as JsonValue, json};
use tessera_core::{
    Services,
    ratelimit::Action,
    rooms::{Direction, MessagesQuery, Transaction, token::StreamToken},
};
use tessera_federation::edge::{ApiError, RumaResponse};

use crate::{route::RumaRoutes, ruma_wrapper::Ruma};

type ApiResult<T> = Result<RumaResponse<T>, ApiError>;

/// `/messages` pages without a `limit` (the spec's default).
const DEFAULT_PAGE: usize = 10;

pub(crate) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<send_message_event::v3::Request, _, _>(send)
        .ruma::<send_state_event::v3::Request, _, _>(send_state)
        .ruma::<redact_event::v3::Request, _, _>(redact)
        .ruma::<get_room_event::v3::Request, _, _>(event)
        .ruma::<get_state_events::v3::Request, _, _>(state)
        .ruma::<get_state_event_for_key::v3::Request, _, _>(state_for_key)
        .ruma::<get_message_events::v3::Request, _, _>(messages)
}

fn content_of<T>(raw: &Raw<T>) -> Result<JsonValue, ApiError> {
    let content: JsonValue =
        serde_json::from_str(raw.json().get()).map_err(|e| ApiError::bad_json(e.to_string()))?;
    if !content.is_object() {
        return Err(ApiError::bad_json(
            "The event content must be a JSON object",
        ));
    }
    Ok(content)
}

async fn send(
    State(s): State<Arc<Services>>,
    req: Ruma<send_message_event::v3::Request>,
) -> ApiResult<send_message_event::v3::Response> {
    let caller = req.caller()?;
    s.rate_limiter
        .check(Action::Message, caller.user_id.as_str())?;
    let transaction = Transaction {
        device_id: caller.device_id.clone(),
        scope: format!("send/{}/{}", req.body.room_id, req.body.event_type),
        txn_id: req.body.txn_id.to_string(),
    };
    let event_id = s
        .rooms
        .send_message(
            &caller.user_id,
            &req.body.room_id,
            TimelineEventType::from(req.body.event_type.to_string()),
            content_of(&req.body.body)?,
            &transaction,
        )
        .await?;
    s.presence.bump_active(&caller.user_id).await?;
    Ok(RumaResponse(send_message_event::v3::Response::new(
        event_id,
    )))
}

async fn send_state(
    State(s): State<Arc<Services>>,
    req: Ruma<send_state_event::v3::Request>,
) -> ApiResult<send_state_event::v3::Response> {
    let caller = req.caller()?;
    s.rate_limiter
        .check(Action::Message, caller.user_id.as_str())?;
    let event_id = s
        .rooms
        .send_state(
            &caller.user_id,
            &req.body.room_id,
            req.body.event_type.clone(),
            req.body.state_key.clone(),
            content_of(&req.body.body)?,
        )
        .await?;
    Ok(RumaResponse(send_state_event::v3::Response::new(event_id)))
}

async fn redact(
    State(s): State<Arc<Services>>,
    req: Ruma<redact_event::v3::Request>,
) -> ApiResult<redact_event::v3::Response> {
    let caller = req.caller()?;
    s.rate_limiter
        .check(Action::Message, caller.user_id.as_str())?;
    let transaction = Transaction {
        device_id: caller.device_id.clone(),
        scope: format!("redact/{}/{}", req.body.room_id, req.body.event_id),
        txn_id: req.body.txn_id.to_string(),
    };
    let mut content = json!({});
    if let Some(reason) = &req.body.reason {
        content["reason"] = JsonValue::String(reason.clone());
    }
    let event_id = s
        .rooms
        .redact(
            &caller.user_id,
            &req.body.room_id,
            &req.body.event_id,
            content,
            Some(&transaction),
        )
        .await?;
    Ok(RumaResponse(redact_event::v3::Response::new(event_id)))
}

async fn event(
    State(s): State<Arc<Services>>,
    req: Ruma<get_room_event::v3::Request>,
) -> ApiResult<get_room_event::v3::Response> {
    let caller = req.caller()?;
    let event = s
        .rooms
        .event_for(&caller.user_id, &req.body.room_id, &req.body.event_id)
        .await?;
    Ok(RumaResponse(get_room_event::v3::Response::new(
        Raw::from_json(event),
    )))
}

async fn state(
    State(s): State<Arc<Services>>,
    req: Ruma<get_state_events::v3::Request>,
) -> ApiResult<get_state_events::v3::Response> {
    let caller = req.caller()?;
    let events = s
        .rooms
        .state_for(&caller.user_id, &req.body.room_id)
        .await?
        .into_iter()
        .map(Raw::from_json)
        .collect();
    Ok(RumaResponse(get_state_events::v3::Response::new(events)))
}

async fn state_for_key(
    State(s): State<Arc<Services>>,
    req: Ruma<get_state_event_for_key::v3::Request>,
) -> ApiResult<get_state_event_for_key::v3::Response> {
    let caller = req.caller()?;
    let event = s
        .rooms
        .state_event_for(
            &caller.user_id,
            &req.body.room_id,
            &req.body.event_type.to_string(),
            &req.body.state_key,
        )
        .await?;
    let body = match req.body.format {
        get_state_event_for_key::v3::StateEventFormat::Event => event,
        _ => {
            let event: JsonValue =
                serde_json::from_str(event.get()).map_err(|e| ApiError::internal(e.to_string()))?;
            serde_json::value::to_raw_value(&event["content"])
                .map_err(|e| ApiError::internal(e.to_string()))?
        }
    };
    Ok(RumaResponse(get_state_event_for_key::v3::Response::new(
        body,
    )))
}

async fn messages(
    State(s): State<Arc<Services>>,
    req: Ruma<get_message_events::v3::Request>,
) -> ApiResult<get_message_events::v3::Response> {
    let caller = req.caller()?;
    let body = &req.body;
    let token = |t: &Option<String>| t.as_deref().map(str::parse::<StreamToken>).transpose();
    let max = s.config.limits.max_page_size as usize;
    let limit = match usize::try_from(u64::from(body.limit)).unwrap_or(usize::MAX) {
        0 => DEFAULT_PAGE,
        limit => limit.min(max),
    };
    let dir = match body.dir {
        ApiDirection::Forward => Direction::Forward,
        _ => Direction::Backward,
    };
    let page = s
        .messages_for(
            &caller.user_id,
            &body.room_id,
            MessagesQuery {
                from: token(&body.from)?,
                to: token(&body.to)?,
                dir,
                limit,
                filter: &body.filter,
            },
        )
        .await?;
    let mut response = get_message_events::v3::Response::new();
    response.start = page.start.to_string();
    response.end = page.end.map(|t| t.to_string());
    response.chunk = page.chunk.into_iter().map(Raw::from_json).collect();
    response.state = page.state.into_iter().map(Raw::from_json).collect();
    Ok(RumaResponse(response))
}
