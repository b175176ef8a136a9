//! History visibility (spec: "History visibility"): which events of a room a user may read,
//! decided from the state at each event, cached per state group while reading one page.

use std::collections::HashMap;

use ruma::{RoomId, UserId};

use crate::{Result, store::EventRow};

use super::Rooms;

#[derive(Clone, Copy, PartialEq, Eq)]
enum HistoryVisibility {
    WorldReadable,
    Shared,
    Invited,
    Joined,
}

impl HistoryVisibility {
    fn parse(value: Option<&str>) -> Self {
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
    by_group: HashMap<i64, (HistoryVisibility, Option<String>)>,
}

impl<'a> VisibilityFilter<'a> {
    pub(super) async fn new(
        rooms: &'a Rooms,
        room_id: &RoomId,
        user_id: &'a UserId,
    ) -> Result<Self> {
        let currently_joined = rooms.membership(room_id, user_id).await?.as_deref() == Some("join");
        Ok(Self {
            rooms,
            user_id,
            currently_joined,
            by_group: HashMap::new(),
        })
    }

    async fn at_group(&mut self, group: i64) -> Result<(HistoryVisibility, Option<String>)> {
        if let Some(known) = self.by_group.get(&group) {
            return Ok(known.clone());
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
        Ok(known)
    }

    /// Whether the user may see `event`. A user's own membership event counts with the
    /// membership it sets, so a joiner sees their own join.
    pub(super) async fn allows(
        &mut self,
        event: &EventRow,
        own_membership: Option<&str>,
    ) -> Result<bool> {
        let (visibility, membership_before) = self.at_group(event.state_before).await?;
        let membership = own_membership.or(membership_before.as_deref());
        Ok(match visibility {
            HistoryVisibility::WorldReadable => true,
            _ if membership == Some("join") => true,
            HistoryVisibility::Shared => self.currently_joined,
            HistoryVisibility::Invited => membership == Some("invite"),
            HistoryVisibility::Joined => false,
        })
    }
}
