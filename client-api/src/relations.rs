//! Relations and threads: `GET /rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]`
//! and `GET /rooms/{roomId}/threads`.

use std::sync::Arc;

use axum::{Router, extract::State};
use ruma::{
    EventId, OwnedEventId, OwnedRoomId, UInt,
    api::{
        Direction as ApiDirection,
        client::{
            relations::{
                get_relating_events, get_relating_events_with_rel_type,
                get_relating_events_with_rel_type_and_event_type,
            },
            threads::get_threads::{self, v1::IncludeThreads},
        },
    },
    serde::Raw,
};
use tessera_core::{
    Error, Services,
    rooms::{Direction, RelationsPage, RelationsRequest, token::StreamToken},
};
use tessera_federation::edge::{ApiError, RumaResponse};

use crate::{route::RumaRoutes, ruma_wrapper::Ruma};

type ApiResult<T> = Result<RumaResponse<T>, ApiError>;

/// Pages without a `limit` (Synapse's default for both endpoints).
const DEFAULT_PAGE: usize = 5;

pub(crate) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<get_relating_events::v1::Request, _, _>(relations)
        .ruma::<get_relating_events_with_rel_type::v1::Request, _, _>(relations_of_type)
        .ruma::<get_relating_events_with_rel_type_and_event_type::v1::Request, _, _>(
            relations_of_type_and_event_type,
        )
        .ruma::<get_threads::v1::Request, _, _>(threads)
}

/// The page size asked for, defaulted and capped; zero is refused (the spec asks for a limit
/// "greater than zero").
fn page_limit(s: &Services, limit: Option<UInt>) -> Result<usize, ApiError> {
    let max = s.config.limits.max_page_size as usize;
    match limit.map(|l| usize::try_from(u64::from(l)).unwrap_or(usize::MAX)) {
        None => Ok(DEFAULT_PAGE.min(max)),
        Some(0) => Err(Error::InvalidParam("limit must be greater than zero".to_owned()).into()),
        Some(limit) => Ok(limit.min(max)),
    }
}

fn token(token: &Option<String>) -> Result<Option<StreamToken>, ApiError> {
    Ok(token
        .as_deref()
        .map(str::parse::<StreamToken>)
        .transpose()?)
}

/// The query parameters all three relations endpoints share.
struct Common<'a> {
    room_id: &'a OwnedRoomId,
    event_id: &'a OwnedEventId,
    from: &'a Option<String>,
    to: &'a Option<String>,
    dir: ApiDirection,
    limit: Option<UInt>,
    recurse: bool,
}

async fn relations_page(
    s: &Services,
    user_id: &ruma::UserId,
    common: Common<'_>,
    rel_type: Option<&str>,
    event_type: Option<&str>,
) -> Result<RelationsPage, ApiError> {
    let request = RelationsRequest {
        rel_type,
        event_type,
        from: token(common.from)?,
        to: token(common.to)?,
        dir: match common.dir {
            ApiDirection::Forward => Direction::Forward,
            _ => Direction::Backward,
        },
        limit: page_limit(s, common.limit)?,
        recurse: common.recurse,
    };
    let event_id: &EventId = common.event_id;
    Ok(s.rooms
        .relations_for(user_id, common.room_id, event_id, request)
        .await?)
}

/// The response fields all three endpoints share.
struct Page {
    chunk: Vec<Raw<ruma::events::AnyMessageLikeEvent>>,
    next_batch: Option<String>,
    prev_batch: Option<String>,
    recursion_depth: Option<UInt>,
}

impl From<RelationsPage> for Page {
    fn from(page: RelationsPage) -> Self {
        Self {
            chunk: page.chunk.into_iter().map(Raw::from_json).collect(),
            next_batch: page.next_batch.map(|t| t.to_string()),
            prev_batch: page.prev_batch.map(|t| t.to_string()),
            recursion_depth: page.recursion_depth.map(UInt::from),
        }
    }
}

async fn relations(
    State(s): State<Arc<Services>>,
    req: Ruma<get_relating_events::v1::Request>,
) -> ApiResult<get_relating_events::v1::Response> {
    let caller = req.caller()?;
    let b = &req.body;
    let common = Common {
        room_id: &b.room_id,
        event_id: &b.event_id,
        from: &b.from,
        to: &b.to,
        dir: b.dir,
        limit: b.limit,
        recurse: b.recurse,
    };
    let page = Page::from(relations_page(&s, &caller.user_id, common, None, None).await?);
    let mut response = get_relating_events::v1::Response::new(page.chunk);
    response.next_batch = page.next_batch;
    response.prev_batch = page.prev_batch;
    response.recursion_depth = page.recursion_depth;
    Ok(RumaResponse(response))
}

async fn relations_of_type(
    State(s): State<Arc<Services>>,
    req: Ruma<get_relating_events_with_rel_type::v1::Request>,
) -> ApiResult<get_relating_events_with_rel_type::v1::Response> {
    let caller = req.caller()?;
    let b = &req.body;
    let common = Common {
        room_id: &b.room_id,
        event_id: &b.event_id,
        from: &b.from,
        to: &b.to,
        dir: b.dir,
        limit: b.limit,
        recurse: b.recurse,
    };
    let rel_type = b.rel_type.to_string();
    let page =
        Page::from(relations_page(&s, &caller.user_id, common, Some(&rel_type), None).await?);
    let mut response = get_relating_events_with_rel_type::v1::Response::new(page.chunk);
    response.next_batch = page.next_batch;
    response.prev_batch = page.prev_batch;
    response.recursion_depth = page.recursion_depth;
    Ok(RumaResponse(response))
}

async fn relations_of_type_and_event_type(
    State(s): State<Arc<Services>>,
    req: Ruma<get_relating_events_with_rel_type_and_event_type::v1::Request>,
) -> ApiResult<get_relating_events_with_rel_type_and_event_type::v1::Response> {
    let caller = req.caller()?;
    let b = &req.body;
    let common = Common {
        room_id: &b.room_id,
        event_id: &b.event_id,
        from: &b.from,
        to: &b.to,
        dir: b.dir,
        limit: b.limit,
        recurse: b.recurse,
    };
    let rel_type = b.rel_type.to_string();
    let event_type = b.event_type.to_string();
    let page = Page::from(
        relations_page(
            &s,
            &caller.user_id,
            common,
            Some(&rel_type),
            Some(&event_type),
        )
        .await?,
    );
    let mut response =
        get_relating_events_with_rel_type_and_event_type::v1::Response::new(page.chunk);
    response.next_batch = page.next_batch;
    response.prev_batch = page.prev_batch;
    response.recursion_depth = page.recursion_depth;
    Ok(RumaResponse(response))
}

async fn threads(
    State(s): State<Arc<Services>>,
    req: Ruma<get_threads::v1::Request>,
) -> ApiResult<get_threads::v1::Response> {
    let caller = req.caller()?;
    let b = &req.body;
    let participated = match b.include {
        IncludeThreads::All => false,
        IncludeThreads::Participated => true,
        _ => {
            return Err(Error::InvalidParam(format!(
                "include must be \"all\" or \"participated\", not {:?}",
                b.include.as_str()
            ))
            .into());
        }
    };
    let page = s
        .rooms
        .threads_for(
            &caller.user_id,
            &b.room_id,
            participated,
            token(&b.from)?,
            page_limit(&s, b.limit)?,
        )
        .await?;
    let mut response =
        get_threads::v1::Response::new(page.chunk.into_iter().map(Raw::from_json).collect());
    response.next_batch = page.next_batch.map(|t| t.to_string());
    Ok(RumaResponse(response))
}
