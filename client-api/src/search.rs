//! Server-side search: `POST /search` (category `room_events`).

use std::{collections::BTreeMap, sync::Arc};

use axum::{Router, extract::State};
use ruma::{
    OwnedMxcUri, UInt,
    api::client::search::search_events::v3::{
        EventContextResult, GroupingKey, OrderBy, Request, Response, ResultCategories, ResultGroup,
        ResultGroupMap, ResultGroupMapsByGroupingKey, ResultRoomEvents, SearchResult, UserProfile,
    },
    serde::Raw,
};
use serde_json::Value as JsonValue;
use tessera_core::{
    Error, Services,
    rooms::{ContextRequest, SearchGroup, SearchRequest},
    store::SearchOrder,
};
use tessera_federation::edge::{ApiError, RumaResponse};

use crate::{route::RumaRoutes, ruma_wrapper::Ruma};

pub(crate) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router.ruma::<Request, _, _>(search)
}

fn result_group(group: SearchGroup) -> ResultGroup {
    let mut result = ResultGroup::new();
    result.order = Some(UInt::try_from(group.order).unwrap_or(UInt::MAX));
    result.results = group.results;
    result.next_batch = group.next_batch;
    result
}

async fn search(
    State(s): State<Arc<Services>>,
    req: Ruma<Request>,
) -> Result<RumaResponse<Response>, ApiError> {
    let caller = req.caller()?;
    // Room events are the only category; a request without them finds nothing (as Synapse).
    let Some(criteria) = &req.body.search_categories.room_events else {
        return Ok(RumaResponse(Response::new(ResultCategories::new())));
    };
    let order = match &criteria.order_by {
        None | Some(OrderBy::Rank) => SearchOrder::Rank,
        Some(OrderBy::Recent) => SearchOrder::Recent,
        Some(other) => {
            return Err(
                Error::InvalidParam(format!("Unknown order_by {:?}", other.as_str())).into(),
            );
        }
    };
    let (mut group_by_room, mut group_by_sender) = (false, false);
    for grouping in &criteria.groupings.group_by {
        match &grouping.key {
            Some(GroupingKey::RoomId) => group_by_room = true,
            Some(GroupingKey::Sender) => group_by_sender = true,
            None => {}
            Some(other) => {
                return Err(Error::InvalidParam(format!(
                    "Unknown grouping key {:?}",
                    other.as_str()
                ))
                .into());
            }
        }
    }
    // Context is returned only when asked for; ruma fills in the defaults of an absent
    // `event_context`, so whether it was sent is read from the body itself.
    let context_requested = serde_json::from_slice::<JsonValue>(&req.raw_body)
        .ok()
        .and_then(|body| {
            body.pointer("/search_categories/room_events/event_context")
                .map(|c| !c.is_null())
        })
        .unwrap_or(false);
    let limit = |n: UInt| usize::try_from(u64::from(n)).unwrap_or(usize::MAX);
    let request = SearchRequest {
        search_term: criteria.search_term.clone(),
        keys: criteria
            .keys
            .as_ref()
            .map(|keys| keys.iter().map(|k| k.as_str().to_owned()).collect()),
        filter: criteria.filter.clone(),
        order,
        event_context: context_requested.then(|| ContextRequest {
            before_limit: limit(criteria.event_context.before_limit),
            after_limit: limit(criteria.event_context.after_limit),
            include_profile: criteria.event_context.include_profile,
        }),
        include_state: criteria.include_state.unwrap_or(false),
        group_by_room,
        group_by_sender,
        next_batch: req.body.next_batch.clone(),
    };
    let found = s.rooms.search(&caller.user_id, request).await?;

    let mut room_events = ResultRoomEvents::new();
    room_events.count = Some(UInt::try_from(found.count).unwrap_or(UInt::MAX));
    room_events.highlights = found.highlights;
    room_events.next_batch = found.next_batch;
    room_events.results = found
        .results
        .into_iter()
        .map(|hit| {
            let mut result = SearchResult::new();
            result.rank = Some(hit.rank);
            result.result = Some(Raw::from_json(hit.event));
            if let Some(context) = hit.context {
                let mut around = EventContextResult::new();
                around.events_before = context
                    .events_before
                    .into_iter()
                    .map(Raw::from_json)
                    .collect();
                around.events_after = context
                    .events_after
                    .into_iter()
                    .map(Raw::from_json)
                    .collect();
                around.start = Some(context.start.to_string());
                around.end = Some(context.end.to_string());
                around.profile_info = context
                    .profiles
                    .into_iter()
                    .map(|(user, (displayname, avatar_url))| {
                        let mut profile = UserProfile::new();
                        profile.displayname = displayname;
                        profile.avatar_url = avatar_url.map(OwnedMxcUri::from);
                        (user, profile)
                    })
                    .collect();
                result.context = around;
            }
            result
        })
        .collect();
    room_events.state = found
        .state
        .into_iter()
        .map(|(room, events)| (room, events.into_iter().map(Raw::from_json).collect()))
        .collect();
    let mut groups = ResultGroupMapsByGroupingKey::new();
    if let Some(by_room) = found.room_groups {
        groups.insert(ResultGroupMap::RoomId(
            by_room
                .into_iter()
                .map(|(k, g)| (k, result_group(g)))
                .collect::<BTreeMap<_, _>>(),
        ));
    }
    if let Some(by_sender) = found.sender_groups {
        groups.insert(ResultGroupMap::Sender(
            by_sender
                .into_iter()
                .map(|(k, g)| (k, result_group(g)))
                .collect::<BTreeMap<_, _>>(),
        ));
    }
    room_events.groups = groups;
    let mut categories = ResultCategories::new();
    categories.room_events = room_events;
    Ok(RumaResponse(Response::new(categories)))
}
