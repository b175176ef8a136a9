//! Reading a room: single events, state, members, and history pages, each through the
//! membership and history visibility rules.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use ruma::{
    MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedUserId, RoomId, UserId,
    api::client::filter::{EventFormat, RoomEventFilter},
};
use serde_json::{Map, Value as JsonValue, value::RawValue};

use crate::{
    Error, Result,
    events::{Pdu, Unsigned, client_event_json, event_json_in},
    store::{EventRow, StateEntry},
};

use super::{Rooms, token::StreamToken, visibility::VisibilityFilter};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Backward,
}

/// Which page of `/messages`.
#[derive(Clone, Copy)]
pub struct MessagesQuery<'a> {
    pub from: Option<StreamToken>,
    pub to: Option<StreamToken>,
    pub dir: Direction,
    pub limit: usize,
    pub filter: &'a RoomEventFilter,
}

pub struct MessagesPage {
    pub start: StreamToken,
    pub end: Option<StreamToken>,
    pub chunk: Vec<Box<RawValue>>,
    pub state: Vec<Box<RawValue>>,
}

/// Which members `/members` returns.
#[derive(Default)]
pub struct Members {
    pub at: Option<StreamToken>,
    pub membership: Option<String>,
    pub not_membership: Option<String>,
}

/// Most rows read from the database for one `/messages` page: a page of hidden events ends
/// early, with a token to go on from.
const MAX_SCANNED: usize = 2_000;

impl Rooms {
    pub async fn membership(&self, room_id: &RoomId, user_id: &UserId) -> Result<Option<String>> {
        Ok(self
            .store
            .current_membership(room_id, user_id)
            .await?
            .map(|(membership, _)| membership))
    }

    /// The room's creators: its create event's sender and, from room version 12, its
    /// `additional_creators`.
    pub async fn creators(&self, room_id: &RoomId) -> Result<Vec<ruma::OwnedUserId>> {
        let guard = self.lock(room_id).await?;
        Ok(guard
            .as_ref()
            .map(super::aliases::creators)
            .unwrap_or_default())
    }

    /// The content of the state entry `(kind, key)` of a state group.
    pub(super) async fn state_content_at(
        &self,
        group: i64,
        kind: &str,
        key: &str,
    ) -> Result<Option<JsonValue>> {
        let Some(event_id) = self.state_entry(group, kind, key).await? else {
            return Ok(None);
        };
        let Some(row) = self.store.event(&event_id).await? else {
            return Ok(None);
        };
        let pdu = parse(&row)?;
        Ok(Some(pdu.content_value()))
    }

    /// The rooms the user is joined to.
    pub async fn joined_rooms(&self, user_id: &UserId) -> Result<Vec<ruma::OwnedRoomId>> {
        Ok(self.store.rooms_with_membership(user_id, "join").await?)
    }

    /// Events in the client format, with `unsigned` filled in: `redacted_because` for redacted
    /// events, `prev_content` and `replaces_state` for state events that replaced others, and
    /// the bundled aggregations (`m.relations`) of their child events as `user_id` sees them.
    pub(super) async fn serve(
        &self,
        rows: &[EventRow],
        user_id: &UserId,
    ) -> Result<Vec<Box<RawValue>>> {
        self.serve_with_transactions(rows, user_id, &HashMap::new(), true, &EventFormat::Client)
            .await
    }

    /// [`Rooms::serve`] for the device that sent some of the events: those get
    /// `unsigned.transaction_id`, which is how a client matches its local echo. Without
    /// `may_have_children` (known to have none) no aggregations are looked up. The events are
    /// in `format` (a sync filter may ask for the federation format).
    pub(super) async fn serve_with_transactions(
        &self,
        rows: &[EventRow],
        user_id: &UserId,
        transaction_ids: &HashMap<OwnedEventId, String>,
        may_have_children: bool,
        format: &EventFormat,
    ) -> Result<Vec<Box<RawValue>>> {
        let mut bundles = if may_have_children {
            self.bundled_aggregations(rows, user_id).await?
        } else {
            HashMap::new()
        };
        let mut related: Vec<OwnedEventId> = rows
            .iter()
            .flat_map(|row| row.redacted_by.iter().chain(row.replaces_state.iter()))
            .cloned()
            .collect();
        related.sort();
        related.dedup();
        let related: HashMap<OwnedEventId, Pdu> = self
            .store
            .events(&related)
            .await?
            .iter()
            .map(|row| Ok((row.event_id.clone(), parse(row)?)))
            .collect::<Result<_>>()?;
        let now = MilliSecondsSinceUnixEpoch::now();
        rows.iter()
            .map(|row| {
                let pdu = parse(row)?;
                let mut unsigned = Unsigned::new();
                if let Some(redaction) = row.redacted_by.as_ref().and_then(|id| related.get(id)) {
                    let because = client_event_json(redaction, &Unsigned::new(), now);
                    unsigned.insert(
                        "redacted_because".to_owned(),
                        serde_json::from_str(because.get()).unwrap_or_default(),
                    );
                }
                if let Some(previous) = row.replaces_state.as_ref().and_then(|id| related.get(id)) {
                    unsigned.insert("prev_content".to_owned(), previous.content_value());
                    unsigned.insert(
                        "replaces_state".to_owned(),
                        JsonValue::String(previous.event_id.to_string()),
                    );
                    unsigned.insert(
                        "prev_sender".to_owned(),
                        JsonValue::String(previous.sender.to_string()),
                    );
                }
                if let Some(relations) = bundles.remove(&row.event_id) {
                    unsigned.insert("m.relations".to_owned(), relations);
                }
                if let Some(txn_id) = transaction_ids.get(&row.event_id) {
                    unsigned.insert(
                        "transaction_id".to_owned(),
                        JsonValue::String(txn_id.clone()),
                    );
                }
                Ok(event_json_in(format, &pdu, &unsigned, now))
            })
            .collect()
    }

    /// One event, if the user may see it (spec: `GET /rooms/{roomId}/event/{eventId}`).
    pub async fn event_for(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        event_id: &ruma::EventId,
    ) -> Result<Box<RawValue>> {
        let row = self.visible_event(user_id, room_id, event_id).await?;
        Ok(self.serve(&[row], user_id).await?.remove(0))
    }

    /// The event, if it is in the room and the user may see it; 404 otherwise, so that
    /// hidden events are not told apart from missing ones.
    pub(super) async fn visible_event(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        event_id: &ruma::EventId,
    ) -> Result<EventRow> {
        let not_found = || Error::NotFound("Event not found".to_owned());
        let row = self.store.event(event_id).await?.ok_or_else(not_found)?;
        if row.room_id != room_id {
            return Err(not_found());
        }
        let pdu = parse(&row)?;
        let mut visibility = VisibilityFilter::new(self, room_id, user_id).await?;
        if !visibility.allows(&row, &pdu).await? {
            return Err(not_found());
        }
        Ok(row)
    }

    /// The state group whose state the user may read: the current state while joined (or if
    /// the room is world readable), the state when they left otherwise.
    async fn readable_state(&self, user_id: &UserId, room_id: &RoomId) -> Result<ReadableState> {
        if self.store.room_version(room_id).await?.is_none()
            || self.store.is_forgotten(user_id, room_id).await?
        {
            return Err(Error::Forbidden(format!(
                "You are not a member of room {room_id}"
            )));
        }
        match self.store.current_membership(room_id, user_id).await? {
            Some((membership, _)) if membership == "join" => return Ok(ReadableState::Current),
            Some((membership, event_id)) if membership == "leave" || membership == "ban" => {
                if let Some(row) = self.store.event(&event_id).await? {
                    let was_member = self
                        .state_content_at(row.state_before, "m.room.member", user_id.as_str())
                        .await?
                        .is_some_and(|c| {
                            c.get("membership").and_then(JsonValue::as_str) == Some("join")
                        });
                    if was_member {
                        return Ok(ReadableState::Group(row.state_after));
                    }
                }
            }
            _ => {}
        }
        let current = self.store.current_state(room_id).await?;
        if let Some(entry) = current
            .iter()
            .find(|e| e.event_type == "m.room.history_visibility" && e.state_key.is_empty())
            && let Some(row) = self.store.event(&entry.event_id).await?
            && parse(&row)?
                .content_value()
                .get("history_visibility")
                .and_then(JsonValue::as_str)
                == Some("world_readable")
        {
            return Ok(ReadableState::Current);
        }
        Err(Error::Forbidden(format!(
            "You are not a member of room {room_id}"
        )))
    }

    async fn state_rows(&self, room_id: &RoomId, readable: ReadableState) -> Result<Vec<EventRow>> {
        let entries: Arc<[StateEntry]> = match readable {
            ReadableState::Current => self.store.current_state(room_id).await?.into(),
            ReadableState::Group(group) => self.store.state_group(group).await?,
        };
        let ids: Vec<OwnedEventId> = entries.iter().map(|e| e.event_id.clone()).collect();
        let mut rows = self.store.events(&ids).await?;
        rows.sort_by_key(|row| row.stream_ordering);
        Ok(rows)
    }

    /// `GET /rooms/{roomId}/state`.
    pub async fn state_for(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
    ) -> Result<Vec<Box<RawValue>>> {
        let readable = self.readable_state(user_id, room_id).await?;
        let rows = self.state_rows(room_id, readable).await?;
        self.serve(&rows, user_id).await
    }

    /// `GET /rooms/{roomId}/state/{eventType}/{stateKey}`: the content, or the whole event.
    pub async fn state_event_for(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        kind: &str,
        state_key: &str,
    ) -> Result<Box<RawValue>> {
        let readable = self.readable_state(user_id, room_id).await?;
        let event_id = match readable {
            ReadableState::Current => self
                .store
                .current_state(room_id)
                .await?
                .into_iter()
                .find(|e| e.event_type == kind && e.state_key == state_key)
                .map(|e| e.event_id),
            ReadableState::Group(group) => {
                self.store.state_group_entry(group, kind, state_key).await?
            }
        };
        let not_found = || {
            Error::NotFound(format!(
                "The room has no state {kind} with key {state_key:?}"
            ))
        };
        let row = self
            .store
            .event(&event_id.ok_or_else(not_found)?)
            .await?
            .ok_or_else(not_found)?;
        Ok(self.serve(&[row], user_id).await?.remove(0))
    }

    /// `GET /rooms/{roomId}/members`.
    pub async fn members_for(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        query: Members,
    ) -> Result<Vec<Box<RawValue>>> {
        let readable = self.readable_state(user_id, room_id).await?;
        let readable = match (query.at, readable) {
            (Some(at), ReadableState::Current) => {
                match self.store.state_group_at(room_id, at.0).await? {
                    Some(group) => ReadableState::Group(group),
                    None => ReadableState::Current,
                }
            }
            (_, readable) => readable,
        };
        let rows = self.state_rows(room_id, readable).await?;
        let mut members = Vec::new();
        for row in rows {
            let pdu = parse(&row)?;
            let Some(membership) = pdu.membership() else {
                continue;
            };
            if query.membership.as_ref().is_some_and(|m| *m != membership)
                || query
                    .not_membership
                    .as_ref()
                    .is_some_and(|m| *m == membership)
            {
                continue;
            }
            members.push(row);
        }
        self.serve(&members, user_id).await
    }

    /// `GET /rooms/{roomId}/joined_members`: display name and avatar per joined user.
    pub async fn joined_members_for(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
    ) -> Result<BTreeMap<OwnedUserId, (Option<String>, Option<String>)>> {
        // Unlike `/members`, the list is only for current members (or world-readable rooms).
        let readable = match self.readable_state(user_id, room_id).await? {
            ReadableState::Current => ReadableState::Current,
            ReadableState::Group(_) => {
                return Err(Error::Forbidden(format!(
                    "You are not a member of room {room_id}"
                )));
            }
        };
        let rows = self.state_rows(room_id, readable).await?;
        let mut joined = BTreeMap::new();
        for row in rows {
            let pdu = parse(&row)?;
            if pdu.membership().as_deref() != Some("join") {
                continue;
            }
            let Some(member) = pdu
                .state_key
                .as_deref()
                .and_then(|k| OwnedUserId::try_from(k).ok())
            else {
                continue;
            };
            let content = pdu.content_value();
            let text = |field: &str| {
                content
                    .get(field)
                    .and_then(JsonValue::as_str)
                    .map(str::to_owned)
            };
            joined.insert(member, (text("displayname"), text("avatar_url")));
        }
        Ok(joined)
    }

    /// `GET /rooms/{roomId}/messages`.
    pub async fn messages_for(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        query: MessagesQuery<'_>,
    ) -> Result<MessagesPage> {
        let MessagesQuery {
            from,
            to,
            dir,
            limit,
            filter,
        } = query;
        let left_at = self.history_access(user_id, room_id).await?;
        let start = from.unwrap_or(match dir {
            // From the very start: below 0 lies history backfilled from other servers.
            Direction::Forward => StreamToken(i64::MIN),
            Direction::Backward => StreamToken(self.current_position()),
        });
        let mut visibility = VisibilityFilter::new(self, room_id, user_id).await?;
        let scan = self
            .scan_timeline(
                &mut visibility,
                TimelineScan {
                    room_id,
                    left_at,
                    start: start.0,
                    to,
                    dir,
                    limit,
                    filter,
                    first_page: None,
                },
            )
            .await?;
        let state = if !filter.lazy_load_options.is_disabled() {
            self.lazy_members(&scan.rows, user_id).await?
        } else {
            Vec::new()
        };
        Ok(MessagesPage {
            start,
            end: scan.end,
            chunk: self.serve(&scan.rows, user_id).await?,
            state,
        })
    }

    /// Whether the user may page through the room's history at all, and for a user who left
    /// (of a room that is not world readable) the stream ordering of their leave, beyond which
    /// they read nothing.
    pub(super) async fn history_access(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
    ) -> Result<Option<i64>> {
        if self.store.is_forgotten(user_id, room_id).await? {
            return Err(Error::Forbidden(format!(
                "You have forgotten room {room_id}"
            )));
        }
        let membership = self
            .store
            .current_membership(room_id, user_id)
            .await?
            // Invited and knocking users have not seen the room (Synapse: "not in room").
            .filter(|(m, _)| matches!(m.as_str(), "join" | "leave" | "ban"));
        let world_readable = matches!(
            self.readable_state(user_id, room_id).await,
            Ok(ReadableState::Current)
        );
        if membership.is_none() && !world_readable {
            return Err(Error::Forbidden(format!(
                "You are not a member of room {room_id}"
            )));
        }
        Ok(match &membership {
            Some((m, event_id)) if m != "join" && !world_readable => self
                .store
                .event(event_id)
                .await?
                .map(|row| row.stream_ordering),
            _ => None,
        })
    }

    /// Reads the room's timeline from `start` in one direction, keeping the events that pass
    /// the filter and the visibility rules, until `limit` are found, `to` or the end is
    /// reached, or too many rows were scanned.
    pub(super) async fn scan_timeline(
        &self,
        visibility: &mut VisibilityFilter<'_>,
        scan: TimelineScan<'_>,
    ) -> Result<ScannedTimeline> {
        let TimelineScan {
            room_id,
            left_at,
            start,
            to,
            dir,
            limit,
            filter,
            mut first_page,
        } = scan;
        let forward = dir == Direction::Forward;
        // A user who left reads no further than their leave (spec: history visibility).
        let mut position = match (dir, left_at) {
            (Direction::Backward, Some(left)) => start.min(left),
            _ => start,
        };
        let mut rows = Vec::with_capacity(limit);
        let batch = scan_page_size(limit);
        let mut scanned = 0;
        // Whether the last row in this direction (or `to`) was reached: then there is no `end`.
        let mut exhausted = false;
        'pages: while rows.len() < limit && scanned < MAX_SCANNED {
            let batch_rows = match first_page.take() {
                Some(rows) => rows,
                None => {
                    self.store
                        .room_events(room_id, position, forward, batch as i64)
                        .await?
                }
            };
            let last_batch = batch_rows.len() < batch;
            for row in batch_rows {
                scanned += 1;
                let beyond = match (dir, to, left_at) {
                    (Direction::Forward, _, Some(left)) if row.stream_ordering > left => true,
                    (Direction::Forward, Some(to), _) => row.stream_ordering > to.0,
                    (Direction::Backward, Some(to), _) => row.stream_ordering <= to.0,
                    _ => false,
                };
                if beyond {
                    exhausted = true;
                    break 'pages;
                }
                position = if forward {
                    row.stream_ordering
                } else {
                    row.stream_ordering - 1
                };
                let pdu = parse(&row)?;
                if !matches_filter(&pdu, filter) || !visibility.allows(&row, &pdu).await? {
                    continue;
                }
                rows.push(row);
                if rows.len() == limit {
                    break 'pages;
                }
            }
            if last_batch {
                exhausted = true;
                break;
            }
        }
        Ok(ScannedTimeline {
            rows,
            position: StreamToken(position),
            end: (!exhausted).then_some(StreamToken(position)),
        })
    }

    /// The member events of the senders of a page, as of the page's oldest event.
    pub(super) async fn lazy_members(
        &self,
        chunk: &[EventRow],
        user_id: &UserId,
    ) -> Result<Vec<Box<RawValue>>> {
        let Some(oldest) = chunk.iter().min_by_key(|row| row.stream_ordering) else {
            return Ok(Vec::new());
        };
        self.member_events_at(oldest.state_after, chunk, user_id)
            .await
    }

    /// The member events of the senders of `events` in state group `group`.
    pub(super) async fn member_events_at(
        &self,
        group: i64,
        chunk: &[EventRow],
        user_id: &UserId,
    ) -> Result<Vec<Box<RawValue>>> {
        let mut senders: Vec<OwnedUserId> = chunk
            .iter()
            .map(parse)
            .map(|pdu| pdu.map(|p| p.sender))
            .collect::<Result<_>>()?;
        senders.sort();
        senders.dedup();
        let mut ids = Vec::new();
        for sender in senders {
            if let Some(id) = self
                .state_entry(group, "m.room.member", sender.as_str())
                .await?
            {
                ids.push(id);
            }
        }
        let rows = self.store.events(&ids).await?;
        self.serve(&rows, user_id).await
    }
}

/// What [`Rooms::scan_timeline`] reads.
pub(super) struct TimelineScan<'a> {
    pub room_id: &'a RoomId,
    /// From [`Rooms::history_access`].
    pub left_at: Option<i64>,
    /// The stream position to start from: rows after it going forward, at or before it going
    /// backward.
    pub start: i64,
    pub to: Option<StreamToken>,
    pub dir: Direction,
    pub limit: usize,
    pub filter: &'a RoomEventFilter,
    /// The first page of rows from `start`, if already read (see [`scan_page_size`]).
    pub first_page: Option<Vec<EventRow>>,
}

/// Rows read per page of a scan for `limit` events.
pub(super) fn scan_page_size(limit: usize) -> usize {
    (limit * 2).clamp(20, 500)
}

pub(super) struct ScannedTimeline {
    pub rows: Vec<EventRow>,
    /// Where the scan stopped: the token to go on from.
    pub position: StreamToken,
    /// `position`, unless the scan reached the end (or `to`).
    pub end: Option<StreamToken>,
}

enum ReadableState {
    Current,
    Group(i64),
}

pub(super) fn parse(row: &EventRow) -> Result<Pdu> {
    Pdu::from_json(row.event_id.clone(), &row.room_id, Arc::clone(&row.json))
        .map_err(|e| Error::Internal(e.to_string()))
}

/// For the user's own member event, the membership it sets.
pub(super) fn own_membership(pdu: &Pdu, user_id: &UserId) -> Option<String> {
    (pdu.state_key.as_deref() == Some(user_id.as_str()))
        .then(|| pdu.membership())
        .flatten()
}

/// A type or sender pattern of a filter: `*` matches any run of characters.
pub fn pattern_matches(pattern: &str, value: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == value,
        Some((prefix, rest)) => {
            let Some(tail) = value.strip_prefix(prefix) else {
                return false;
            };
            (0..=tail.len())
                .filter(|i| tail.is_char_boundary(*i))
                .any(|i| pattern_matches(rest, &tail[i..]))
        }
    }
}

/// The include and exclude lists of a filter (types, senders, rooms): a value passes if no
/// `exclude` entry matches it and, when there is an `include` list, one of its entries does.
pub fn allowed_by<T>(include: Option<&[T]>, exclude: &[T], matches: impl Fn(&T) -> bool) -> bool {
    !exclude.iter().any(&matches) && include.is_none_or(|include| include.iter().any(&matches))
}

/// Whether an event passes a room event filter's `types`, `not_types`, `senders`,
/// `not_senders` and `contains_url`.
pub(super) fn matches_filter(pdu: &Pdu, filter: &RoomEventFilter) -> bool {
    let kind = pdu.kind.to_string();
    if !allowed_by(filter.types.as_deref(), &filter.not_types, |t| {
        pattern_matches(t, &kind)
    }) || !allowed_by(filter.senders.as_deref(), &filter.not_senders, |s| {
        *s == pdu.sender
    }) {
        return false;
    }
    if let Some(contains_url) = filter.url_filter {
        let has_url = serde_json::from_str::<Map<String, JsonValue>>(pdu.content.get())
            .is_ok_and(|c| c.contains_key("url"));
        if has_url != (contains_url == ruma::api::client::filter::UrlFilter::EventsWithUrl) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::pattern_matches;

    #[test]
    fn filter_patterns_match_with_wildcards() {
        assert!(pattern_matches("m.room.message", "m.room.message"));
        assert!(!pattern_matches("m.room.message", "m.room.member"));
        assert!(pattern_matches("m.room.*", "m.room.member"));
        assert!(pattern_matches("*", "anything"));
        assert!(pattern_matches("m.*.topic", "m.room.topic"));
        assert!(!pattern_matches("m.*.topic", "m.room.name"));
    }
}
