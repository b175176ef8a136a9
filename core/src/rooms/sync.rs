//! The rooms part of a `/sync` response (spec: "Syncing"): which rooms changed for a user
//! between two tokens, and for each its timeline, state, summary, ephemeral events and room
//! account data.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::Arc,
};

use futures::StreamExt;
use ruma::{
    DeviceId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UInt, UserId,
    api::client::{
        filter::{EventFormat, LazyLoadOptions, RoomEventFilter, RoomFilter},
        sync::sync_events::{
            UnreadNotificationsCount,
            v3::{
                Ephemeral, InviteState, InvitedRoom, JoinedRoom, KnockState, KnockedRoom, LeftRoom,
                RoomAccountData, RoomSummary, Rooms as RoomsUpdate, State, StateEvents, Timeline,
            },
        },
    },
    events::TimelineEventType,
    serde::Raw,
};
use serde_json::{Value as JsonValue, json};

use crate::{
    Result,
    store::{AccountDataEntry, EventRow, MemberCounts, MembershipRow, Receipt},
};

use super::{
    Direction, Rooms,
    out_of_band::stripped,
    push::NotificationCounts,
    read::{TimelineScan, allowed_by, matches_filter, parse},
    token::StreamToken,
    visibility::VisibilityFilter,
};

/// Timeline events per room when the filter sets no limit (Synapse's default).
const DEFAULT_TIMELINE_LIMIT: usize = 10;
/// The state types shown for an invite or a knock (spec: "Stripped state").
pub(super) const STRIPPED_STATE_TYPES: [&str; 7] = [
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.topic",
    "m.room.canonical_alias",
    "m.room.encryption",
];

/// Stream positions a rooms sync reads between; see `crate::sync::SyncToken`.
#[derive(Debug, Clone, Copy)]
pub struct RoomPositions {
    pub timeline: i64,
    pub receipts: i64,
    pub typing: i64,
}

/// What the caller asks of the rooms part of a sync.
pub struct RoomsSyncRequest<'a> {
    pub user_id: &'a UserId,
    pub device_id: &'a DeviceId,
    pub filter: &'a RoomFilter,
    pub event_format: &'a EventFormat,
    /// `None` for an initial sync.
    pub since: Option<RoomPositions>,
    pub upto: RoomPositions,
    pub full_state: bool,
    pub use_state_after: bool,
    /// The user's room account data changed since the token (all of it on an initial sync).
    pub account_data: &'a [AccountDataEntry],
}

/// A room's place in this sync: the user's membership as of `upto` and its event (read when
/// needed).
struct Membership {
    membership: String,
    event_id: OwnedEventId,
    event: Option<EventRow>,
}

/// What every room of one sync shares.
struct SyncContext<'r, 'a> {
    request: &'r RoomsSyncRequest<'a>,
    /// Rooms whose membership of the user changed since the token.
    changed: &'r HashMap<OwnedRoomId, EventRow>,
    /// Rooms with events since the token.
    with_events: &'r HashMap<OwnedRoomId, i64>,
    receipts: &'r HashMap<OwnedRoomId, Vec<Receipt>>,
    /// Read ahead for the rooms a sync shows whole.
    summaries: &'r HashMap<OwnedRoomId, RoomSummary>,
    forgotten: &'r HashSet<OwnedRoomId>,
    /// The first timeline pages of an initial sync's joined rooms, read ahead together.
    first_pages: &'r HashMap<OwnedRoomId, Vec<EventRow>>,
    /// False if the device has sent no event with a transaction ID (up to `upto`): its
    /// events' `transaction_id` need not be looked up room by room.
    device_has_sent: bool,
}

/// One room's part of the response, by section.
enum RoomEntry {
    Join(Box<JoinedRoom>),
    Invite(InvitedRoom),
    Knock(KnockedRoom),
    Leave(Box<LeftRoom>),
}

/// Rooms of one sync built at once.
const ROOMS_IN_PARALLEL: usize = 8;

/// Whether a room's state is sent whole or as what changed since the token.
#[derive(Clone, Copy, PartialEq, Eq)]
enum StateMode {
    Full,
    Since(i64),
}

impl Rooms {
    /// The `rooms` section of a sync response. Rooms are built concurrently: an initial sync
    /// of hundreds of rooms is a few small reads per room.
    pub async fn sync_rooms(&self, request: &RoomsSyncRequest<'_>) -> Result<RoomsUpdate> {
        let user_id = request.user_id;
        let upto = request.upto.timeline;
        let since = request.since.map(|s| s.timeline);
        let memberships = self.memberships_at(user_id, upto).await?;
        let (changed, with_events) = self.timeline_changes(user_id, since, upto).await?;
        let receipts = self.receipts_for_sync(request, &memberships).await?;
        let summaries = self.summaries(request, &memberships).await?;
        let forgotten = if memberships
            .values()
            .any(|m| matches!(m.membership.as_str(), "leave" | "ban"))
        {
            self.store.forgotten_rooms(user_id).await?
        } else {
            HashSet::new()
        };
        // A first sync of many rooms is usually a new login's, which has sent nothing yet: one
        // look spares one per room. Events up to `upto` committed with their transactions.
        let device_has_sent = since.is_some()
            || memberships.len() < 2
            || self
                .store
                .device_has_transactions(user_id, request.device_id)
                .await?;
        let first_pages = self.first_timeline_pages(request, &memberships).await?;
        let context = SyncContext {
            request,
            changed: &changed,
            with_events: &with_events,
            receipts: &receipts,
            summaries: &summaries,
            forgotten: &forgotten,
            first_pages: &first_pages,
            device_has_sent,
        };
        let mut entries = futures::stream::iter(
            memberships
                .into_iter()
                .filter(|(room_id, _)| room_selected(request.filter, room_id)),
        )
        // Boxed: a waker that outlives a finished room's task (heaptrack showed one per parked
        // sync) keeps the task node allocated, and the node is as large as its future's type.
        .map(|(room_id, membership)| Box::pin(self.sync_room(&context, room_id, membership)))
        .buffer_unordered(ROOMS_IN_PARALLEL);
        let mut update = RoomsUpdate::default();
        while let Some(entry) = entries.next().await {
            match entry? {
                Some((room_id, RoomEntry::Join(room))) => {
                    update.join.insert(room_id, *room);
                }
                Some((room_id, RoomEntry::Invite(room))) => {
                    update.invite.insert(room_id, room);
                }
                Some((room_id, RoomEntry::Knock(room))) => {
                    update.knock.insert(room_id, room);
                }
                Some((room_id, RoomEntry::Leave(room))) => {
                    update.leave.insert(room_id, *room);
                }
                None => {}
            }
        }
        drop(entries);
        self.add_unread_counts(request, &mut update).await?;
        Ok(update)
    }

    /// One room of a sync, if it has anything to say.
    async fn sync_room(
        &self,
        context: &SyncContext<'_, '_>,
        room_id: OwnedRoomId,
        membership: Membership,
    ) -> Result<Option<(OwnedRoomId, RoomEntry)>> {
        let request = context.request;
        let user_id = request.user_id;
        let upto = request.upto.timeline;
        let since = request.since.map(|s| s.timeline);
        let changed_here = context.changed.contains_key(&room_id);
        let entry = match membership.membership.as_str() {
            "join" => {
                let newly_joined = match (since, changed_here) {
                    (Some(since), true) => !self.was_joined(user_id, &room_id, since).await?,
                    _ => false,
                };
                let state_mode = match since {
                    Some(since) if !newly_joined && !request.full_state => StateMode::Since(since),
                    _ => StateMode::Full,
                };
                let room_receipts = context
                    .receipts
                    .get(&room_id)
                    .map_or(&[][..], Vec::as_slice);
                let typing = self.typing_users(&room_id);
                let typing_changed = match request.since {
                    Some(since) => typing.position > since.typing,
                    None => !typing.user_ids.is_empty(),
                };
                let account_data = room_account_data(request, &room_id);
                let anything = state_mode == StateMode::Full
                    || changed_here
                    || context.with_events.contains_key(&room_id)
                    || !room_receipts.is_empty()
                    || typing_changed
                    || !account_data.events.is_empty();
                if !anything {
                    return Ok(None);
                }
                let mut joined = JoinedRoom::new();
                let (timeline, state) = self
                    .timeline_and_state(context, &room_id, (upto, true), since, state_mode)
                    .await?;
                let members_changed = state_mode == StateMode::Full
                    || has_member_event(&timeline.events)
                    || match &state {
                        State::Before(events) | State::After(events) => {
                            has_member_event(&events.events)
                        }
                        _ => false,
                    };
                if members_changed {
                    joined.summary = match context.summaries.get(&room_id) {
                        Some(summary) => summary.clone(),
                        None => self.summary(&room_id, user_id).await?,
                    };
                }
                joined.timeline = timeline;
                joined.state = state;
                joined.account_data = account_data;
                joined.ephemeral = ephemeral(
                    request,
                    &room_id,
                    typing_changed.then_some(&typing.user_ids[..]),
                    room_receipts,
                );
                RoomEntry::Join(Box::new(joined))
            }
            "invite" | "knock" if since.is_none() || changed_here => {
                let event = self.membership_event(&membership).await?;
                // Invites from ignored users are not sent (spec: "Ignoring Users").
                if membership.membership == "invite"
                    && self
                        .store
                        .ignored_users(user_id)
                        .await?
                        .contains(&parse(&event)?.sender)
                {
                    return Ok(None);
                }
                let stripped = self.stripped_state(&event).await?;
                if membership.membership == "invite" {
                    let mut invited = InvitedRoom::new();
                    invited.invite_state = InviteState::from(stripped);
                    RoomEntry::Invite(invited)
                } else {
                    let mut knocked = KnockedRoom::new();
                    knocked.knock_state = KnockState::new();
                    knocked.knock_state.events = stripped;
                    RoomEntry::Knock(knocked)
                }
            }
            "leave" | "ban" => {
                let include = match since {
                    Some(_) => changed_here,
                    None => request.filter.include_leave,
                };
                if !include || context.forgotten.contains(&room_id) {
                    return Ok(None);
                }
                let left_at = self.membership_event(&membership).await?.stream_ordering;
                let state_mode = match since {
                    Some(since) if self.was_joined(user_id, &room_id, since).await? => {
                        StateMode::Since(since)
                    }
                    _ => StateMode::Full,
                };
                let (timeline, state) = self
                    .timeline_and_state(context, &room_id, (left_at, false), since, state_mode)
                    .await?;
                let mut left = LeftRoom::new();
                left.timeline = timeline;
                left.state = state;
                left.account_data = room_account_data(request, &room_id);
                RoomEntry::Leave(Box::new(left))
            }
            _ => return Ok(None),
        };
        Ok(Some((room_id, entry)))
    }

    /// `unread_notifications` of every joined room in the response, and per thread when the
    /// filter asks for `unread_thread_notifications`.
    async fn add_unread_counts(
        &self,
        request: &RoomsSyncRequest<'_>,
        update: &mut RoomsUpdate,
    ) -> Result<()> {
        let room_ids: Vec<OwnedRoomId> = update.join.keys().cloned().collect();
        if room_ids.is_empty() {
            return Ok(());
        }
        let mut counts = self
            .unread_counts_in(request.user_id, &room_ids, request.upto.timeline)
            .await?;
        let by_thread = request.filter.timeline.unread_thread_notifications;
        for (room_id, joined) in &mut update.join {
            let room = counts.remove(room_id).unwrap_or_default();
            if by_thread {
                joined.unread_notifications = unread(room.main);
                joined.unread_thread_notifications = room
                    .threads
                    .into_iter()
                    .map(|(root, thread)| (root, unread(thread)))
                    .collect();
            } else {
                joined.unread_notifications = unread(room.total());
            }
        }
        Ok(())
    }

    /// The user's membership of each room as of timeline position `upto`: the current one,
    /// unless it changed after `upto` (a write that landed after the token was taken).
    async fn memberships_at(
        &self,
        user_id: &UserId,
        upto: i64,
    ) -> Result<HashMap<OwnedRoomId, Membership>> {
        let current = self.current_memberships(user_id).await?;
        let mut memberships = HashMap::with_capacity(current.len());
        for row in current.iter() {
            if row.stream_ordering <= upto {
                memberships.insert(
                    row.room_id.clone(),
                    Membership {
                        membership: row.membership.clone(),
                        event_id: row.event_id.clone(),
                        event: None,
                    },
                );
            } else if let Some(event) = self
                .store
                .membership_event_at(user_id, &row.room_id, upto)
                .await?
            {
                memberships.insert(
                    row.room_id.clone(),
                    Membership {
                        membership: parse(&event)?.membership().unwrap_or_default(),
                        event_id: event.event_id.clone(),
                        event: Some(event),
                    },
                );
            }
        }
        Ok(memberships)
    }

    /// The user's current memberships, from memory when no membership changed since they were
    /// last read.
    async fn current_memberships(&self, user_id: &UserId) -> Result<Arc<[MembershipRow]>> {
        let (known, generation) = self.recent.memberships(user_id);
        if let Some(known) = known {
            return Ok(known);
        }
        let rows: Arc<[MembershipRow]> = Arc::from(self.store.memberships(user_id).await?);
        self.recent
            .remember_memberships(user_id, rows.clone(), generation);
        Ok(rows)
    }

    /// Whether any membership changed between two timeline positions (device lists follow
    /// memberships). When memory does not reach back that far, the answer is yes.
    pub fn memberships_changed_between(&self, since: i64, upto: i64) -> bool {
        since < upto
            && self
                .recent
                .any_membership_between(since, upto)
                .unwrap_or(true)
    }

    /// When the next typing notice in one of the user's joined rooms runs out (ms since the
    /// epoch): a waiting sync reports it then. From the remembered memberships, since every
    /// parked sync asks.
    pub async fn next_typing_expiry(&self, user_id: &UserId) -> Result<Option<i64>> {
        Ok(self
            .current_memberships(user_id)
            .await?
            .iter()
            .filter(|row| row.membership == "join")
            .filter_map(|row| self.typing_next_expiry(&row.room_id))
            .min())
    }

    /// The member event behind a membership.
    async fn membership_event(&self, membership: &Membership) -> Result<EventRow> {
        if let Some(event) = &membership.event {
            return Ok(event.clone());
        }
        self.store
            .event(&membership.event_id)
            .await?
            .ok_or_else(|| {
                crate::Error::Internal(format!("member event {} is missing", membership.event_id))
            })
    }

    /// The rooms where the user's membership changed in `(since, upto]` (with the last member
    /// event), and the rooms with events in that range: from memory when it reaches back to
    /// `since`, else from the database. Nothing for an initial sync or an unmoved timeline.
    async fn timeline_changes(
        &self,
        user_id: &UserId,
        since: Option<i64>,
        upto: i64,
    ) -> Result<(HashMap<OwnedRoomId, EventRow>, HashMap<OwnedRoomId, i64>)> {
        let Some(since) = since.filter(|since| *since < upto) else {
            return Ok((HashMap::new(), HashMap::new()));
        };
        let (with_events, membership_changed) = match self.recent.between(since, upto, user_id) {
            Some(range) => (range.rooms, range.membership_changed),
            None => (self.store.rooms_with_events(since, upto).await?, true),
        };
        let changed = if membership_changed {
            self.store
                .membership_changes(user_id, since, upto)
                .await?
                .into_iter()
                .map(|row| (row.room_id.clone(), row))
                .collect()
        } else {
            HashMap::new()
        };
        Ok((changed, with_events))
    }

    async fn was_joined(&self, user_id: &UserId, room_id: &RoomId, at: i64) -> Result<bool> {
        Ok(
            match self.store.membership_event_at(user_id, room_id, at).await? {
                Some(event) => parse(&event)?.membership().as_deref() == Some("join"),
                None => false,
            },
        )
    }

    /// Receipts to send, per room: all of the joined rooms' on an initial sync, those changed
    /// since the token otherwise. Private receipts go only to their owner.
    async fn receipts_for_sync(
        &self,
        request: &RoomsSyncRequest<'_>,
        memberships: &HashMap<OwnedRoomId, Membership>,
    ) -> Result<HashMap<OwnedRoomId, Vec<Receipt>>> {
        let receipts = match request.since {
            Some(since) if since.receipts == request.upto.receipts => Vec::new(),
            Some(since) => {
                self.store
                    .receipts_between(since.receipts, request.upto.receipts)
                    .await?
            }
            None => {
                let joined: Vec<OwnedRoomId> = memberships
                    .iter()
                    .filter(|(_, m)| m.membership == "join")
                    .map(|(room_id, _)| room_id.clone())
                    .collect();
                self.store.receipts_of_rooms(&joined).await?
            }
        };
        let mut by_room: HashMap<OwnedRoomId, Vec<Receipt>> = HashMap::new();
        for receipt in receipts {
            if receipt.stream_position > request.upto.receipts
                || (receipt.receipt_type == "m.read.private" && receipt.user_id != request.user_id)
            {
                continue;
            }
            by_room
                .entry(receipt.room_id.clone())
                .or_default()
                .push(receipt);
        }
        Ok(by_room)
    }

    /// The room's timeline up to `upto` (after `since`, unless the state is sent whole) and
    /// the state to go with it.
    /// `(upto, joined)`: where the timeline ends and whether the user is joined there.
    async fn timeline_and_state(
        &self,
        context: &SyncContext<'_, '_>,
        room_id: &RoomId,
        (upto, joined): (i64, bool),
        since: Option<i64>,
        state_mode: StateMode,
    ) -> Result<(Timeline, State)> {
        let request = context.request;
        let filter = &request.filter.timeline;
        let limit = self.timeline_limit(filter);
        // A room joined since the token shows its recent history, not just what followed.
        let lower = match state_mode {
            StateMode::Since(since) => Some(since),
            StateMode::Full => since.filter(|_| request.full_state),
        };
        let ignored = self.store.ignored_users(request.user_id).await?;
        let mut visibility =
            VisibilityFilter::with_membership(self, request.user_id, joined, ignored);
        let remembered = lower.and_then(|lower| self.recent.room_events(room_id, lower, upto));
        let (rows, limited) = match remembered {
            // The timeline filter's `rooms`/`not_rooms` leave this room's events out.
            _ if !sub_filter_selects(filter, room_id) => (Vec::new(), false),
            // The whole range is in memory (the usual case for a live sync): keep the newest
            // `limit` events that pass the filter and the visibility rules.
            Some(range) => {
                let mut rows = Vec::with_capacity(limit.min(range.len()));
                let mut limited = false;
                for row in range.into_iter().rev() {
                    let pdu = parse(&row)?;
                    if !matches_filter(&pdu, filter) || !visibility.allows(&row, &pdu).await? {
                        continue;
                    }
                    if rows.len() == limit {
                        limited = true;
                        break;
                    }
                    rows.push(row);
                }
                rows.reverse();
                (rows, limited)
            }
            None => {
                let scan = self
                    .scan_timeline(
                        &mut visibility,
                        TimelineScan {
                            room_id,
                            left_at: None,
                            start: upto,
                            to: lower.map(StreamToken),
                            dir: Direction::Backward,
                            limit,
                            filter,
                            first_page: context
                                .first_pages
                                .get(room_id)
                                .filter(|_| lower.is_none() && upto == request.upto.timeline)
                                .cloned(),
                        },
                    )
                    .await?;
                let mut rows = scan.rows;
                rows.reverse();
                (rows, scan.end.is_some())
            }
        };
        let prev_batch = match rows.first() {
            Some(first) => StreamToken(first.stream_ordering - 1),
            None => StreamToken(upto),
        };
        let transaction_ids = if context.device_has_sent {
            let own: Vec<i64> = rows
                .iter()
                .filter(|row| parse(row).is_ok_and(|pdu| pdu.sender == request.user_id))
                .map(|row| row.stream_ordering)
                .collect();
            self.store
                .transaction_ids(request.user_id, request.device_id, &own)
                .await?
        } else {
            HashMap::new()
        };
        let events = self
            .serve_with_transactions(
                &rows,
                request.user_id,
                &transaction_ids,
                !self.recent.have_no_children(&rows),
                request.event_format,
            )
            .await?;
        let mut timeline = Timeline::new();
        timeline.limited = limited;
        timeline.prev_batch = Some(prev_batch.to_string());
        timeline.events = events.into_iter().map(Raw::from_json).collect();

        let state = self
            .sync_state(request, room_id, upto, &rows, limited, state_mode)
            .await?;
        Ok((timeline, state))
    }

    /// Events per room timeline, as the filter asks within the server's page size.
    fn timeline_limit(&self, filter: &RoomEventFilter) -> usize {
        filter
            .limit
            .map_or(DEFAULT_TIMELINE_LIMIT, |l| {
                usize::try_from(u64::from(l)).unwrap_or(usize::MAX)
            })
            .clamp(
                1,
                usize::try_from(self.config.limits.max_page_size).unwrap_or(usize::MAX),
            )
    }

    /// An initial sync's joined rooms' first timeline pages (see [`Rooms::scan_timeline`]), read
    /// together: one statement for many rooms rather than one each.
    async fn first_timeline_pages(
        &self,
        request: &RoomsSyncRequest<'_>,
        memberships: &HashMap<OwnedRoomId, Membership>,
    ) -> Result<HashMap<OwnedRoomId, Vec<EventRow>>> {
        let filter = &request.filter.timeline;
        let rooms: Vec<OwnedRoomId> = selected_joined_rooms(request, memberships)
            .filter(|room_id| sub_filter_selects(filter, room_id))
            .cloned()
            .collect();
        if request.since.is_some() || rooms.len() < 2 {
            return Ok(HashMap::new());
        }
        let page = super::read::scan_page_size(self.timeline_limit(filter));
        Ok(self
            .store
            .newest_room_events(&rooms, request.upto.timeline, page as i64)
            .await?)
    }

    /// The `state` (or `state_after`) of a room in a sync: the state at the start of the
    /// timeline (end, with `use_state_after`), whole or as the entries that changed since the
    /// token. With lazy-loaded members, member events only for the timeline's senders and the
    /// user, and of those only the ones this device was not sent before (unless it asks for
    /// redundant members).
    async fn sync_state(
        &self,
        request: &RoomsSyncRequest<'_>,
        room_id: &RoomId,
        upto: i64,
        timeline: &[EventRow],
        limited: bool,
        state_mode: StateMode,
    ) -> Result<State> {
        let filter = &request.filter.state;
        let lazy = match filter.lazy_load_options {
            LazyLoadOptions::Enabled {
                include_redundant_members,
            } => Some(include_redundant_members),
            _ => None,
        };
        // Without a gap the timeline itself carries every change since the token: only
        // lazy-loaded members the device lacks are left to send.
        let whole_delta =
            !matches!(state_mode, StateMode::Since(_)) || limited || request.use_state_after;
        let group = match (request.use_state_after, timeline.first(), timeline.last()) {
            (false, Some(first), _) => Some(first.state_before),
            (true, _, Some(last)) => Some(last.state_after),
            _ => self.store.state_group_at(room_id, upto).await?,
        };
        let mut ids: Vec<OwnedEventId> = Vec::new();
        if let Some(group) = group {
            if whole_delta {
                let entries = self.store.state_group(group).await?;
                let before = match state_mode {
                    StateMode::Since(since) => self.state_ids_at(room_id, since).await?,
                    StateMode::Full => HashSet::new(),
                };
                ids.extend(
                    entries
                        .iter()
                        .filter(|entry| !before.contains(&entry.event_id))
                        .filter(|entry| lazy.is_none() || entry.event_type != "m.room.member")
                        .map(|entry| entry.event_id.clone()),
                );
            }
            if let Some(include_redundant) = lazy {
                for member in lazy_members(timeline, request.user_id)? {
                    let Some(event_id) = self.state_entry(group, "m.room.member", &member).await?
                    else {
                        continue;
                    };
                    if include_redundant
                        || !self
                            .lazy_loaded
                            .already_sent(request, room_id, &member, &event_id)
                    {
                        ids.push(event_id);
                    }
                }
            }
        }
        let in_timeline: HashSet<&OwnedEventId> = if request.use_state_after {
            HashSet::new()
        } else {
            timeline.iter().map(|row| &row.event_id).collect()
        };
        ids.retain(|id| !in_timeline.contains(id));
        ids.sort();
        ids.dedup();
        if !sub_filter_selects(filter, room_id) {
            ids.clear();
        }
        let mut rows = self.store.events(&ids).await?;
        rows.retain(|row| parse(row).is_ok_and(|pdu| matches_filter(&pdu, filter)));
        rows.sort_by_key(|row| row.stream_ordering);
        if lazy.is_some() {
            let sent_members = rows
                .iter()
                .chain(timeline)
                .filter_map(|row| parse(row).ok())
                .filter(|pdu| pdu.kind == TimelineEventType::RoomMember)
                .filter_map(|pdu| Some((pdu.state_key.clone()?, pdu.event_id.clone())));
            self.lazy_loaded.record(request, room_id, sent_members);
        }
        let events = self
            .serve_with_transactions(
                &rows,
                request.user_id,
                &HashMap::new(),
                true,
                request.event_format,
            )
            .await?;
        let state = StateEvents::with_events(events.into_iter().map(Raw::from_json).collect());
        Ok(if request.use_state_after {
            State::After(state)
        } else {
            State::Before(state)
        })
    }

    /// The IDs of the room's state events as of timeline position `at`.
    async fn state_ids_at(&self, room_id: &RoomId, at: i64) -> Result<HashSet<OwnedEventId>> {
        Ok(match self.store.state_group_at(room_id, at).await? {
            Some(group) => self
                .store
                .state_group(group)
                .await?
                .iter()
                .map(|entry| entry.event_id.clone())
                .collect(),
            None => HashSet::new(),
        })
    }

    async fn summary(&self, room_id: &RoomId, user_id: &UserId) -> Result<RoomSummary> {
        let counts = self
            .store
            .member_counts(&[room_id.to_owned()], user_id)
            .await?
            .remove(room_id)
            .unwrap_or_default();
        Ok(summary_of(counts))
    }

    /// The summaries of all the rooms a sync shows whole (an initial or `full_state` sync),
    /// read together; other syncs read them room by room, as members change.
    async fn summaries(
        &self,
        request: &RoomsSyncRequest<'_>,
        memberships: &HashMap<OwnedRoomId, Membership>,
    ) -> Result<HashMap<OwnedRoomId, RoomSummary>> {
        if request.since.is_some() && !request.full_state {
            return Ok(HashMap::new());
        }
        let joined: Vec<OwnedRoomId> = selected_joined_rooms(request, memberships)
            .cloned()
            .collect();
        Ok(self
            .store
            .member_counts(&joined, request.user_id)
            .await?
            .into_iter()
            .map(|(room_id, counts)| (room_id, summary_of(counts)))
            .collect())
    }

    /// The stripped state shown with an invite or a knock: a few descriptive state events as
    /// of the membership event, and the membership event itself.
    /// An invite from another server to a room this server is not in shows the stripped
    /// state that server sent.
    async fn stripped_state<T>(&self, membership: &EventRow) -> Result<Vec<Raw<T>>> {
        let mut events = match self.invite_stripped_state(membership).await? {
            Some(sent) => sent,
            None => {
                let entries = self.store.state_group(membership.state_before).await?;
                let ids: Vec<OwnedEventId> = entries
                    .iter()
                    .filter(|entry| STRIPPED_STATE_TYPES.contains(&entry.event_type.as_str()))
                    .map(|entry| entry.event_id.clone())
                    .collect();
                self.store
                    .events(&ids)
                    .await?
                    .iter()
                    .map(|row| parse(row).map(|pdu| stripped(&pdu)))
                    .collect::<Result<_>>()?
            }
        };
        events.push(stripped(&parse(membership)?));
        Ok(events.iter().map(raw).collect())
    }

    /// Wakes the room's local joined members' syncs (a receipt or typing change).
    pub(super) async fn wake_room(&self, room_id: &RoomId) -> Result<()> {
        let server_name = &self.config.server_name;
        let members = self.store.joined_members(room_id).await?;
        self.notifier.wake(
            members
                .iter()
                .filter(|user| user.server_name() == server_name)
                .map(|user| &**user),
        );
        Ok(())
    }
}

/// The rooms the user is joined to that the sync's room filter selects.
fn selected_joined_rooms<'m>(
    request: &RoomsSyncRequest<'_>,
    memberships: &'m HashMap<OwnedRoomId, Membership>,
) -> impl Iterator<Item = &'m OwnedRoomId> {
    memberships
        .iter()
        .filter(|(room_id, m)| m.membership == "join" && room_selected(request.filter, room_id))
        .map(|(room_id, _)| room_id)
}

fn summary_of(counts: MemberCounts) -> RoomSummary {
    let mut summary = RoomSummary::new();
    summary.heroes = counts.heroes;
    summary.joined_member_count = Some(UInt::try_from(counts.joined).unwrap_or(UInt::MAX));
    summary.invited_member_count = Some(UInt::try_from(counts.invited).unwrap_or(UInt::MAX));
    summary
}

fn unread(counts: NotificationCounts) -> UnreadNotificationsCount {
    let mut unread = UnreadNotificationsCount::new();
    unread.notification_count =
        Some(UInt::try_from(counts.notification_count).unwrap_or(UInt::MAX));
    unread.highlight_count = Some(UInt::try_from(counts.highlight_count).unwrap_or(UInt::MAX));
    unread
}

fn room_selected(filter: &RoomFilter, room_id: &RoomId) -> bool {
    allowed_by(filter.rooms.as_deref(), &filter.not_rooms, |r| r == room_id)
}

fn room_account_data(request: &RoomsSyncRequest<'_>, room_id: &RoomId) -> RoomAccountData {
    let filter = &request.filter.account_data;
    let mut data = RoomAccountData::new();
    if !sub_filter_selects(filter, room_id) {
        return data;
    }
    data.events = request
        .account_data
        .iter()
        .filter(|entry| entry.room_id.as_deref() == Some(room_id))
        .filter(|entry| type_selected(filter, &entry.data_type))
        .filter_map(account_data_event)
        .collect();
    data
}

/// The `rooms` / `not_rooms` of one part of a room filter (timeline, state, ephemeral,
/// account data).
fn sub_filter_selects(filter: &RoomEventFilter, room_id: &RoomId) -> bool {
    allowed_by(filter.rooms.as_deref(), &filter.not_rooms, |r| r == room_id)
}

/// `{"type", "content"}` of an account data entry; content that is not JSON (never stored so)
/// is left out rather than failing the whole sync.
pub fn account_data_event<T>(entry: &AccountDataEntry) -> Option<Raw<T>> {
    let content: JsonValue = serde_json::from_str(&entry.content).ok()?;
    Some(raw(&json!({ "type": entry.data_type, "content": content })))
}

fn raw<T>(value: &JsonValue) -> Raw<T> {
    // A serde_json Value always serialises.
    Raw::from_json(serde_json::value::to_raw_value(value).expect("JSON value serialises"))
}

fn ephemeral(
    request: &RoomsSyncRequest<'_>,
    room_id: &RoomId,
    typing: Option<&[OwnedUserId]>,
    receipts: &[Receipt],
) -> Ephemeral {
    let filter = &request.filter.ephemeral;
    let wanted = |kind: &str| sub_filter_selects(filter, room_id) && type_selected(filter, kind);
    let mut events = Vec::new();
    if let Some(user_ids) = typing
        && wanted("m.typing")
    {
        events.push(raw(
            &json!({ "type": "m.typing", "content": { "user_ids": user_ids } }),
        ));
    }
    if !receipts.is_empty() && wanted("m.receipt") {
        let mut content: BTreeMap<&str, BTreeMap<&str, BTreeMap<&str, JsonValue>>> =
            BTreeMap::new();
        for receipt in receipts {
            let mut data = json!({ "ts": receipt.ts });
            if let Some(thread) = &receipt.thread_id {
                data["thread_id"] = JsonValue::String(thread.clone());
            }
            content
                .entry(receipt.event_id.as_str())
                .or_default()
                .entry(receipt.receipt_type.as_str())
                .or_default()
                .insert(receipt.user_id.as_str(), data);
        }
        events.push(raw(&json!({ "type": "m.receipt", "content": content })));
    }
    let mut ephemeral = Ephemeral::new();
    ephemeral.events = events;
    ephemeral
}

fn type_selected(filter: &RoomEventFilter, kind: &str) -> bool {
    allowed_by(filter.types.as_deref(), &filter.not_types, |t| {
        super::pattern_matches(t, kind)
    })
}

/// The members lazy loading sends: the timeline's senders and the syncing user.
fn lazy_members(timeline: &[EventRow], user_id: &UserId) -> Result<BTreeSet<String>> {
    let mut needed: BTreeSet<String> = timeline
        .iter()
        .map(|row| parse(row).map(|pdu| pdu.sender.to_string()))
        .collect::<Result<_>>()?;
    needed.insert(user_id.to_string());
    Ok(needed)
}

fn has_member_event<T>(events: &[Raw<T>]) -> bool {
    events.iter().any(|event| {
        event
            .get_field::<String>("type")
            .ok()
            .flatten()
            .is_some_and(|kind| kind == "m.room.member")
    })
}
