//! Events served to other servers (spec: Server-Server API, "Retrieving events", "Backfilling
//! and retrieving missing events", "Room State Resolution"): single events, the state at an
//! event with its auth chain, an event's auth chain, history before given events, and the
//! events missing between two sets.
//!
//! A server reads a room's events only while one of its users is joined to it and the room's
//! server ACL allows it. Each event is then checked against the history visibility at the
//! time (spec: "History visibility", as Synapse applies it to servers): under `invited` or
//! `joined`, an event none of the server's users could see then (invited, or joined) is
//! served redacted, which keeps the graph whole while its content stays hidden. The state
//! at an event and auth chains are served as they are.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Arc,
};

use ruma::{
    CanonicalJsonObject, EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, RoomId, ServerName,
    UInt, UserId,
};

use super::{Direction, Rooms, read::parse, visibility::HistoryVisibility};
use crate::{Error, Result, events::Pdu, store::EventRow};

/// Stored PDUs by event ID.
pub type ServedEvents = HashMap<OwnedEventId, Arc<str>>;

/// The most events one `/backfill` or `/get_missing_events` answer holds.
pub const MAX_SERVED_EVENTS: usize = 100;

/// Events read per round while walking the graph.
const WALK_BATCH: usize = 500;

impl Rooms {
    /// Whether one of `server`'s users is joined to the room.
    pub(super) async fn has_joined_member(
        &self,
        room_id: &RoomId,
        server: &ServerName,
    ) -> Result<bool> {
        Ok(self
            .store
            .joined_members(room_id)
            .await?
            .iter()
            .any(|user| user.server_name() == server))
    }

    /// Refuses `server` unless one of its users is joined to the room and its ACL allows it.
    async fn check_server_in_room(&self, room_id: &RoomId, server: &ServerName) -> Result<()> {
        if !self.has_joined_member(room_id, server).await? {
            return Err(Error::Forbidden(format!(
                "{server} has no user in {room_id}"
            )));
        }
        self.check_server_acl(room_id, server).await
    }

    /// `GET /timestamp_to_event/{roomId}`: the event closest to `ts` in direction `dir`.
    pub async fn event_at_timestamp_for_server(
        &self,
        server: &ServerName,
        room_id: &RoomId,
        ts: MilliSecondsSinceUnixEpoch,
        dir: Direction,
    ) -> Result<(OwnedEventId, MilliSecondsSinceUnixEpoch)> {
        self.check_server_in_room(room_id, server).await?;
        self.scan_by_timestamp(room_id, ts, dir, None).await
    }

    /// `GET /event/{eventId}`: the stored PDU.
    pub async fn event_for_server(
        &self,
        server: &ServerName,
        event_id: &EventId,
    ) -> Result<Arc<str>> {
        let row = self
            .store
            .event(event_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("Unknown event {event_id}")))?;
        self.check_server_in_room(&row.room_id, server).await?;
        let mut served = ServerView::new(self, server, &row.room_id).await?;
        served.json(&row.json, row.state_before).await
    }

    /// `GET /state/{roomId}` and `/state_ids/{roomId}`: the room's state before `event_id`
    /// (as Synapse serves it) and that state's auth chain, by event ID.
    pub async fn state_for_server(
        &self,
        server: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<(ServedEvents, ServedEvents)> {
        self.check_server_in_room(room_id, server).await?;
        self.state_and_auth_chain_by_id(room_id, event_id).await
    }

    /// `GET /event_auth/{roomId}/{eventId}`: the event's full auth chain.
    pub async fn auth_chain_for_server(
        &self,
        server: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<Vec<Arc<str>>> {
        self.check_server_in_room(room_id, server).await?;
        let row = self.event_in_room(room_id, event_id).await?;
        let chain = self.auth_chain_of(parse(&row)?.auth_events).await?;
        Ok(chain.into_values().collect())
    }

    /// `GET /backfill/{roomId}`: up to `limit` events of the room's history, from the events
    /// `from` backwards through their predecessors, newest first (the `from` events
    /// included, as Synapse does).
    pub async fn backfill_for_server(
        &self,
        server: &ServerName,
        room_id: &RoomId,
        from: &[OwnedEventId],
        limit: UInt,
    ) -> Result<Vec<Arc<str>>> {
        self.check_server_in_room(room_id, server).await?;
        let limit = served_limit(limit);
        let mut found = self
            .walk_back(room_id, from.to_vec(), &HashSet::new(), 0, limit)
            .await?;
        found.sort_by_key(|(pdu, _)| std::cmp::Reverse(pdu.depth));
        self.as_seen_by(server, room_id, found).await
    }

    /// `POST /get_missing_events/{roomId}`: up to `limit` predecessors of `latest` (not
    /// `latest` themselves) back to `earliest`, none deeper than `min_depth`, oldest first.
    pub async fn missing_events_for_server(
        &self,
        server: &ServerName,
        room_id: &RoomId,
        earliest: &[OwnedEventId],
        latest: &[OwnedEventId],
        limit: UInt,
        min_depth: UInt,
    ) -> Result<Vec<Arc<str>>> {
        self.check_server_in_room(room_id, server).await?;
        let limit = served_limit(limit);
        let mut start = Vec::new();
        for event_id in latest {
            start.extend(parse(&self.event_in_room(room_id, event_id).await?)?.prev_events);
        }
        let stop: HashSet<OwnedEventId> = earliest.iter().chain(latest).cloned().collect();
        let mut found = self
            .walk_back(room_id, start, &stop, u64::from(min_depth), limit)
            .await?;
        found.sort_by_key(|(pdu, row)| (pdu.depth, row.stream_ordering));
        self.as_seen_by(server, room_id, found).await
    }

    /// The events as `server` may see them, in order.
    async fn as_seen_by(
        &self,
        server: &ServerName,
        room_id: &RoomId,
        events: Vec<(Pdu, EventRow)>,
    ) -> Result<Vec<Arc<str>>> {
        let mut view = ServerView::new(self, server, room_id).await?;
        let mut served = Vec::with_capacity(events.len());
        for (pdu, row) in events {
            served.push(view.json(&pdu.json, row.state_before).await?);
        }
        Ok(served)
    }

    /// Timeline events of the room reached from `start` through `prev_events`, breadth first,
    /// up to `limit`; `stop` events and those below `min_depth` are neither taken nor walked
    /// through. Each comes with its stored row.
    async fn walk_back(
        &self,
        room_id: &RoomId,
        start: Vec<OwnedEventId>,
        stop: &HashSet<OwnedEventId>,
        min_depth: u64,
        limit: usize,
    ) -> Result<Vec<(Pdu, EventRow)>> {
        let mut seen: HashSet<OwnedEventId> = stop.clone();
        let mut queue: VecDeque<OwnedEventId> = VecDeque::new();
        for id in start {
            if seen.insert(id.clone()) {
                queue.push_back(id);
            }
        }
        let mut found = Vec::new();
        while !queue.is_empty() && found.len() < limit {
            let batch: Vec<OwnedEventId> = queue.drain(..queue.len().min(WALK_BATCH)).collect();
            let rows = self.store.events(&batch).await?;
            let by_id: HashMap<&OwnedEventId, &EventRow> =
                rows.iter().map(|row| (&row.event_id, row)).collect();
            for id in &batch {
                let Some(row) = by_id.get(id) else {
                    continue;
                };
                if row.room_id != room_id || !row.has_state() {
                    continue;
                }
                let pdu = parse(row)?;
                if u64::from(pdu.depth) < min_depth {
                    continue;
                }
                for prev in &pdu.prev_events {
                    if seen.insert(prev.clone()) {
                        queue.push_back(prev.clone());
                    }
                }
                found.push((pdu, (*row).clone()));
                if found.len() == limit {
                    break;
                }
            }
        }
        Ok(found)
    }
}

/// Decides, per state group, whether a server's users could see the events sent on it.
struct ServerView<'a> {
    rooms: &'a Rooms,
    server: &'a ServerName,
    rules: ruma::room_version_rules::RedactionRules,
    by_group: HashMap<i64, bool>,
}

impl<'a> ServerView<'a> {
    async fn new(rooms: &'a Rooms, server: &'a ServerName, room_id: &RoomId) -> Result<Self> {
        let rules = rooms
            .room_version(room_id)
            .await?
            .and_then(|version| version.rules())
            .ok_or_else(|| Error::NotFound(format!("Unknown room {room_id}")))?
            .redaction;
        Ok(Self {
            rooms,
            server,
            rules,
            by_group: HashMap::new(),
        })
    }

    /// The event's JSON as the server may see it: whole, or redacted.
    async fn json(&mut self, json: &Arc<str>, state_before: i64) -> Result<Arc<str>> {
        if self.sees(state_before).await? {
            return Ok(json.clone());
        }
        let object: CanonicalJsonObject = serde_json::from_str(json)
            .map_err(|e| Error::Internal(format!("a stored event is not JSON: {e}")))?;
        let redacted = ruma::canonical_json::redact(object, &self.rules, None)
            .map_err(|e| Error::Internal(format!("cannot redact a stored event: {e}")))?;
        Ok(serde_json::to_string(&redacted)
            .map_err(|e| Error::Internal(e.to_string()))?
            .into())
    }

    /// Whether one of the server's users could see what was sent on state group `group`.
    async fn sees(&mut self, group: i64) -> Result<bool> {
        if let Some(known) = self.by_group.get(&group) {
            return Ok(*known);
        }
        let visibility = self
            .rooms
            .state_content_at(group, "m.room.history_visibility", "")
            .await?;
        let visibility = HistoryVisibility::parse(
            visibility
                .as_ref()
                .and_then(|content| content.get("history_visibility"))
                .and_then(|v| v.as_str()),
        );
        let wanted: &[&str] = match visibility {
            HistoryVisibility::WorldReadable | HistoryVisibility::Shared => &[],
            HistoryVisibility::Invited => &["invite", "join"],
            HistoryVisibility::Joined => &["join"],
        };
        let sees = wanted.is_empty() || {
            let mut any = false;
            for entry in self.rooms.store.state_group(group).await?.iter() {
                let local_member = entry.event_type == "m.room.member"
                    && UserId::parse(&entry.state_key)
                        .is_ok_and(|user| user.server_name() == self.server);
                if !local_member {
                    continue;
                }
                let membership = self
                    .rooms
                    .state_content_at(group, "m.room.member", &entry.state_key)
                    .await?
                    .and_then(|content| {
                        content
                            .get("membership")
                            .and_then(|v| v.as_str())
                            .map(str::to_owned)
                    });
                if membership.is_some_and(|m| wanted.contains(&m.as_str())) {
                    any = true;
                    break;
                }
            }
            any
        };
        self.by_group.insert(group, sees);
        Ok(sees)
    }
}

fn served_limit(limit: UInt) -> usize {
    usize::try_from(u64::from(limit))
        .unwrap_or(usize::MAX)
        .min(MAX_SERVED_EVENTS)
}

#[cfg(test)]
mod tests {
    use ruma::{server_name, uint};

    use super::*;
    use crate::rooms::testing::{TestRooms, user};

    #[tokio::test]
    async fn history_is_walked_back_and_missing_events_found_between_two_sets() {
        let rooms = TestRooms::start().await;
        let room_id = rooms.room(&[]).await;
        let mut messages = Vec::new();
        for n in 0..6 {
            messages.push(rooms.text(&user("alice"), &room_id, &format!("m{n}")).await);
        }
        let own = server_name!("a.test");
        let bodies = |jsons: Vec<Arc<str>>| -> Vec<String> {
            jsons
                .iter()
                .filter_map(|json| {
                    let event: serde_json::Value = serde_json::from_str(json).ok()?;
                    event["content"]["body"].as_str().map(str::to_owned)
                })
                .collect()
        };

        // Backfill from m5: m5 itself and its predecessors, newest first, up to the limit.
        let backfilled = rooms
            .rooms
            .backfill_for_server(own, &room_id, &messages[5..], uint!(3))
            .await
            .unwrap();
        assert_eq!(bodies(backfilled), ["m5", "m4", "m3"]);

        // Missing between m1 (known to the asker) and m5 (what it received): m2..m4, in order.
        let missing = rooms
            .rooms
            .missing_events_for_server(
                own,
                &room_id,
                &messages[1..2],
                &messages[5..],
                uint!(10),
                uint!(0),
            )
            .await
            .unwrap();
        assert_eq!(bodies(missing), ["m2", "m3", "m4"]);

        // A server without a user in the room reads nothing of it.
        let outsider = server_name!("elsewhere.test");
        assert!(matches!(
            rooms.rooms.event_for_server(outsider, &messages[0]).await,
            Err(Error::Forbidden(_))
        ));
        assert!(matches!(
            rooms
                .rooms
                .backfill_for_server(outsider, &room_id, &messages[5..], uint!(3))
                .await,
            Err(Error::Forbidden(_))
        ));
        assert!(
            rooms
                .rooms
                .event_for_server(own, &messages[0])
                .await
                .is_ok()
        );
    }
}
