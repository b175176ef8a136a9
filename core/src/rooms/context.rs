//! `GET /rooms/{roomId}/context/{eventId}` (spec: "Event Context") and
//! `GET /rooms/{roomId}/timestamp_to_event`.

use ruma::{
    EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, RoomId, UserId,
    api::client::filter::RoomEventFilter,
};
use serde_json::value::RawValue;

use crate::{Error, Result};

use super::{
    Direction, Rooms,
    read::{TimelineScan, parse},
    token::StreamToken,
    visibility::VisibilityFilter,
};

/// Rows read at most while looking for a visible event near a timestamp.
const MAX_TIMESTAMP_SCAN: usize = 2_000;
const TIMESTAMP_BATCH: usize = 100;

pub struct ContextPage {
    /// Pages backwards from before `events_before`.
    pub start: StreamToken,
    /// Pages forwards from after `events_after`.
    pub end: StreamToken,
    /// Newest first.
    pub events_before: Vec<Box<RawValue>>,
    pub event: Box<RawValue>,
    /// Oldest first.
    pub events_after: Vec<Box<RawValue>>,
    pub state: Vec<Box<RawValue>>,
}

impl Rooms {
    /// The event and up to `limit` visible events around it: `limit / 2` (rounded down)
    /// before and the rest after, as Synapse splits it. The filter applies to the surrounding
    /// events, not to the event asked for. `state` is the state at the last event returned,
    /// only the senders' member events when members are lazy-loaded.
    pub async fn context_for(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        event_id: &EventId,
        limit: usize,
        filter: &RoomEventFilter,
    ) -> Result<ContextPage> {
        let row = self.visible_event(user_id, room_id, event_id).await?;
        let left_at = self.history_access(user_id, room_id).await?;
        let before_limit = limit / 2;
        let mut visibility = VisibilityFilter::new(self, room_id, user_id).await?;
        let scan = |start, dir, limit| TimelineScan {
            room_id,
            left_at,
            start,
            to: None,
            dir,
            limit,
            filter,
            first_page: None,
        };
        let before = self
            .scan_timeline(
                &mut visibility,
                scan(row.stream_ordering - 1, Direction::Backward, before_limit),
            )
            .await?;
        let after = self
            .scan_timeline(
                &mut visibility,
                scan(
                    row.stream_ordering,
                    Direction::Forward,
                    limit - before_limit,
                ),
            )
            .await?;
        let last = after.rows.last().unwrap_or(&row);
        let state = if filter.lazy_load_options.is_disabled() {
            let ids: Vec<OwnedEventId> = self
                .store
                .state_group(last.state_after)
                .await?
                .iter()
                .map(|entry| entry.event_id.clone())
                .collect();
            let mut rows = self.store.events(&ids).await?;
            rows.sort_by_key(|row| row.stream_ordering);
            self.serve(&rows, user_id).await?
        } else {
            let mut around: Vec<_> = before.rows.clone();
            around.push(row.clone());
            around.extend(after.rows.iter().cloned());
            self.member_events_at(last.state_after, &around, user_id)
                .await?
        };
        let mut served = self.serve(&[row], user_id).await?;
        Ok(ContextPage {
            start: before.position,
            end: after.position,
            events_before: self.serve(&before.rows, user_id).await?,
            event: served.remove(0),
            events_after: self.serve(&after.rows, user_id).await?,
            state,
        })
    }

    /// The visible event closest to `ts`: the first at or after it going forward, the last at
    /// or before it going backward; ties in time go by stream order.
    pub async fn event_at_timestamp(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        ts: MilliSecondsSinceUnixEpoch,
        dir: Direction,
    ) -> Result<(OwnedEventId, MilliSecondsSinceUnixEpoch)> {
        self.history_access(user_id, room_id).await?;
        let visibility = VisibilityFilter::new(self, room_id, user_id).await?;
        self.scan_by_timestamp(room_id, ts, dir, Some(visibility))
            .await
    }

    /// The first event from `ts` in direction `dir` that `reader` (a user and their visibility
    /// filter; `None` for a server in the room, which reads every event) may see.
    pub(super) async fn scan_by_timestamp(
        &self,
        room_id: &RoomId,
        ts: MilliSecondsSinceUnixEpoch,
        dir: Direction,
        mut reader: Option<VisibilityFilter<'_>>,
    ) -> Result<(OwnedEventId, MilliSecondsSinceUnixEpoch)> {
        let forward = dir == Direction::Forward;
        let ts = i64::from(ts.get());
        // Exclusive keys just outside `ts`, so that events at `ts` itself are included.
        let mut key = if forward { (ts, -1) } else { (ts, i64::MAX) };
        let mut scanned = 0;
        while scanned < MAX_TIMESTAMP_SCAN {
            let rows = self
                .store
                .events_by_timestamp(room_id, key, forward, TIMESTAMP_BATCH as i64)
                .await?;
            let last_batch = rows.len() < TIMESTAMP_BATCH;
            for (origin_server_ts, row) in rows {
                scanned += 1;
                key = (origin_server_ts, row.stream_ordering);
                let pdu = parse(&row)?;
                let visible = match &mut reader {
                    Some(visibility) => visibility.allows(&row, &pdu).await?,
                    None => true,
                };
                if visible {
                    return Ok((pdu.event_id, pdu.origin_server_ts));
                }
            }
            if last_batch {
                break;
            }
        }
        let direction = if forward { "after" } else { "before" };
        Err(Error::NotFound(format!(
            "No event found {direction} {ts} in room {room_id}"
        )))
    }
}
