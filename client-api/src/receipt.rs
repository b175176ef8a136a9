//! Receipts, read markers and typing notifications: `POST /rooms/{roomId}/receipt/...`,
//! `POST /rooms/{roomId}/read_markers` and `PUT /rooms/{roomId}/typing/{userId}`.

use std::sync::Arc;

use axum::{Router, extract::State};
use ruma::{
    api::client::{
        read_marker::set_read_marker,
        receipt::create_receipt,
        typing::create_typing_event::{self, v3::Typing},
    },
    events::receipt::ReceiptThread as ApiReceiptThread,
};
use tessera_core::{Error, Services, rooms::ReceiptThread};
use tessera_federation::edge::{ApiError, RumaResponse};

use crate::{route::RumaRoutes, ruma_wrapper::Ruma};

type ApiResult<T> = Result<RumaResponse<T>, ApiError>;

pub(crate) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<create_receipt::v3::Request, _, _>(receipt)
        .ruma::<set_read_marker::v3::Request, _, _>(read_markers)
        .ruma::<create_typing_event::v3::Request, _, _>(typing)
}

fn thread_of(thread: &ApiReceiptThread) -> Result<ReceiptThread, ApiError> {
    Ok(match thread {
        ApiReceiptThread::Unthreaded => ReceiptThread::Unthreaded,
        ApiReceiptThread::Main => ReceiptThread::Main,
        ApiReceiptThread::Thread(root) => ReceiptThread::Thread(root.clone()),
        _ => {
            return Err(Error::InvalidParam(
                "thread_id must be \"main\" or the event ID of a thread root".to_owned(),
            )
            .into());
        }
    })
}

async fn receipt(
    State(s): State<Arc<Services>>,
    req: Ruma<create_receipt::v3::Request>,
) -> ApiResult<create_receipt::v3::Response> {
    let caller = req.caller()?;
    let body = &req.body;
    let thread = thread_of(&body.thread)?;
    s.rooms
        .post_receipt(
            &caller.user_id,
            &body.room_id,
            body.receipt_type.as_str(),
            &body.event_id,
            thread,
        )
        .await?;
    Ok(RumaResponse(create_receipt::v3::Response::new()))
}

async fn read_markers(
    State(s): State<Arc<Services>>,
    req: Ruma<set_read_marker::v3::Request>,
) -> ApiResult<set_read_marker::v3::Response> {
    let caller = req.caller()?;
    let body = &req.body;
    s.rooms
        .set_read_markers(
            &caller.user_id,
            &body.room_id,
            body.fully_read.as_deref(),
            body.read_receipt.as_deref(),
            body.private_read_receipt.as_deref(),
        )
        .await?;
    Ok(RumaResponse(set_read_marker::v3::Response::new()))
}

async fn typing(
    State(s): State<Arc<Services>>,
    req: Ruma<create_typing_event::v3::Request>,
) -> ApiResult<create_typing_event::v3::Response> {
    let caller = req.caller()?;
    let timeout = match req.body.state {
        Typing::Yes(info) => Some(info.timeout),
        Typing::No => None,
    };
    s.rooms
        .set_typing(
            &caller.user_id,
            &req.body.room_id,
            &req.body.user_id,
            timeout,
        )
        .await?;
    Ok(RumaResponse(create_typing_event::v3::Response::new()))
}
