//! History visibility (spec: "History visibility"): which events of a room a user may read,
//! decided from the state at each event, cached per state group while reading one page; and
//! the events of users they ignore (spec: "Ignoring Users"), which they are not sent.

use std::{
    collections::{HashMap, hash_map::Entry},
    sync::Mutex,
};

use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};

use crate::{
    Result,
    events::Pdu,
    store::{EventRow, IgnoredUsers},
};

use super::{Rooms, read::own_membership};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum HistoryVisibility {
    WorldReadable,
    Shared,
    Invited,
    Joined,
}

impl HistoryVisibility {
    pub(super) fn parse(value: Option<&str>) -> Self {
        match value {
            Some("world_readable") => Self::WorldReadable,
            Some("invited") => Self::Invited,
            Some("joined") => Self::Joined,
            // The spec's default, and what unknown values fall back to.
            _ => Self::Shared,
        }
    }
}

/// Decides visibility for one user across many events of one room.
pub(super) struct VisibilityFilter<'a> {
    rooms: &'a Rooms,
    user_id: &'a UserId,
    currently_joined: bool,
    ignored: IgnoredUsers,
    by_group: HashMap<i64, (HistoryVisibility, Option<String>)>,
}

impl<'a> VisibilityFilter<'a> {
    pub(super) async fn new(
        rooms: &'a Rooms,
        room_id: &RoomId,
        user_id: &'a UserId,
    ) -> Result<Self> {
        let currently_joined = rooms.membership(room_id, user_id).await?.as_deref() == Some("join");
        let ignored = rooms.store.ignored_users(user_id).await?;
        Ok(Self::with_membership(
            rooms,
            user_id,
            currently_joined,
            ignored,
        ))
    }

    /// For a reader that already knows whether the user is joined now, and whom they ignore.
    pub(super) fn with_membership(
        rooms: &'a Rooms,
        user_id: &'a UserId,
        currently_joined: bool,
        ignored: IgnoredUsers,
    ) -> Self {
        Self {
            rooms,
            user_id,
            currently_joined,
            ignored,
            by_group: HashMap::new(),
        }
    }

    async fn at_group(&mut self, group: i64) -> Result<(HistoryVisibility, Option<String>)> {
        if let Some(known) = self.by_group.get(&group) {
            return Ok(known.clone());
        }
        let key = (group, self.user_id.to_owned());
        if let Some(known) = self.rooms.visibility_cache.get(&key) {
            self.by_group.insert(group, known.clone());
            return Ok(known);
        }
        let visibility = self
            .rooms
            .state_content_at(group, "m.room.history_visibility", "")
            .await?
            .and_then(|c| {
                c.get("history_visibility")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            });
        let membership = self
            .rooms
            .state_content_at(group, "m.room.member", self.user_id.as_str())
            .await?
            .and_then(|c| {
                c.get("membership")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            });
        let known = (HistoryVisibility::parse(visibility.as_deref()), membership);
        self.by_group.insert(group, known.clone());
        self.rooms.visibility_cache.insert(key, known.clone());
        Ok(known)
    }

    /// Whether the user may see `event` (the row of `pdu`). A user's own membership event
    /// counts with the membership it sets, so a joiner sees their own join. Of the users they
    /// ignore, they see only state events (which keep the room's name and the like the same
    /// for everyone).
    pub(super) async fn allows(&mut self, event: &EventRow, pdu: &Pdu) -> Result<bool> {
        // Users always see their own membership events: otherwise an invite they rejected or a
        // room they were kicked from would never show them leaving (as Synapse does).
        if own_membership(pdu, self.user_id).is_some() {
            return Ok(true);
        }
        if !pdu.is_state() && self.ignored.contains(&pdu.sender) {
            return Ok(false);
        }
        let (visibility, membership) = self.at_group(event.state_before).await?;
        let membership = membership.as_deref();
        Ok(match visibility {
            HistoryVisibility::WorldReadable => true,
            _ if membership == Some("join") => true,
            HistoryVisibility::Shared => self.currently_joined,
            HistoryVisibility::Invited => membership == Some("invite"),
            HistoryVisibility::Joined => false,
        })
    }
}

/// One user's [`VisibilityFilter`]s across rooms, each made when its room first comes up (for
/// pages mixing rooms: notifications, search results, thread summaries).
pub(super) struct RoomVisibilityFilters<'a> {
    rooms: &'a Rooms,
    user_id: &'a UserId,
    filters: HashMap<OwnedRoomId, VisibilityFilter<'a>>,
}

impl<'a> RoomVisibilityFilters<'a> {
    pub(super) fn new(rooms: &'a Rooms, user_id: &'a UserId) -> Self {
        Self {
            rooms,
            user_id,
            filters: HashMap::new(),
        }
    }

    pub(super) async fn of(&mut self, room_id: &RoomId) -> Result<&mut VisibilityFilter<'a>> {
        let (rooms, user_id) = (self.rooms, self.user_id);
        Ok(match self.filters.entry(room_id.to_owned()) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                entry.insert(VisibilityFilter::new(rooms, room_id, user_id).await?)
            }
        })
    }

    /// Whether the user may see `event` (the row of `pdu`), by the rules of its room.
    pub(super) async fn allows(&mut self, event: &EventRow, pdu: &Pdu) -> Result<bool> {
        self.of(&event.room_id).await?.allows(event, pdu).await
    }
}

/// What the visibility rules read of a state group for one user: the history visibility and
/// the user's membership. State groups never change, and a redaction keeps both fields
/// (`history_visibility`, `membership`), so an answer stays true for good. Bounded: when full
/// it starts over.
#[derive(Default)]
pub(super) struct VisibilityCache {
    entries: Mutex<HashMap<(i64, OwnedUserId), GroupVisibility>>,
}

/// A state group's history visibility and the user's membership in it.
type GroupVisibility = (HistoryVisibility, Option<String>);

const MAX_CACHED: usize = 100_000;

impl VisibilityCache {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<(i64, OwnedUserId), GroupVisibility>> {
        // Each update is one map operation: a panic elsewhere cannot leave it half done.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, key: &(i64, OwnedUserId)) -> Option<GroupVisibility> {
        self.entries().get(key).cloned()
    }

    fn insert(&self, key: (i64, OwnedUserId), value: GroupVisibility) {
        let mut entries = self.entries();
        if entries.len() >= MAX_CACHED {
            entries.clear();
        }
        entries.insert(key, value);
    }
}
