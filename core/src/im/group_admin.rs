//! Group administration on top of power levels: announcements (a state event, also pinned),
//! muting everyone (raising the send level), muting one member for a while (lowering their
//! level below it, restored automatically, also after a restart), join approval (the spec's
//! knocking: approving invites, denying kicks the knock) and the member limit.

use std::{sync::Arc, time::Duration};

use ruma::{OwnedEventId, OwnedUserId, RoomId, UserId, events::StateEventType};
use serde_json::{Value as JsonValue, json};
use tokio::sync::Notify;

use super::{Im, friends::now_ms, moments::PROFILE_TYPE};
use crate::{
    Error, Result,
    rooms::{MembershipChange, RoomState, Rooms},
    store::{MuteRow, Store},
};

/// The state event of a group's announcement.
pub const ANNOUNCEMENT: &str = "im.tessera.announcement";
/// Longest announcement, in characters.
pub const MAX_ANNOUNCEMENT_CHARS: usize = 2000;
/// Longest a member can be muted for: 30 days.
pub const MAX_MUTE_SECS: u64 = 30 * 24 * 3600;
/// The send level while everyone is muted: moderators and admins still speak.
const MUTED_SEND_LEVEL: i64 = 50;

/// Refuses a new member (join or invite) of a room that has `limit` members joined or invited
/// already. Profile rooms are not groups: their members are the owner's friends.
pub fn check_member_limit(room: &RoomState, limit: u32) -> Result<()> {
    let room_type = room
        .get(&StateEventType::RoomCreate, "")
        .and_then(|create| create.content_value()["type"].as_str().map(str::to_owned));
    if room_type.as_deref() == Some(PROFILE_TYPE) {
        return Ok(());
    }
    let members = room
        .state
        .iter()
        .filter(|((kind, _), pdu)| {
            *kind == StateEventType::RoomMember
                && matches!(pdu.membership().as_deref(), Some("join" | "invite"))
        })
        .count();
    if members >= usize::try_from(limit).unwrap_or(usize::MAX) {
        return Err(Error::Forbidden(format!(
            "This group is full: it has reached this server's limit of {limit} members"
        )));
    }
    Ok(())
}

/// Refuses group administration of a moments profile room: it is not a group.
pub(super) async fn check_not_profile_room(store: &Store, room_id: &RoomId) -> Result<()> {
    let create = state_content(store, room_id, "m.room.create", "").await?;
    if create.is_some_and(|content| content["type"] == PROFILE_TYPE) {
        return Err(Error::InvalidParam(
            "A moments profile room is not a group".to_owned(),
        ));
    }
    Ok(())
}

/// The current content of a room's state entry.
pub(super) async fn state_content(
    store: &Store,
    room_id: &RoomId,
    kind: &str,
    state_key: &str,
) -> Result<Option<JsonValue>> {
    let Some(entry) = store
        .current_state(room_id)
        .await?
        .into_iter()
        .find(|e| e.event_type == kind && e.state_key == state_key)
    else {
        return Ok(None);
    };
    Ok(store
        .event(&entry.event_id)
        .await?
        .and_then(|row| serde_json::from_str::<JsonValue>(&row.json).ok())
        .map(|mut event| event["content"].take()))
}

pub(super) async fn power_levels(store: &Store, room_id: &RoomId) -> Result<JsonValue> {
    state_content(store, room_id, "m.room.power_levels", "")
        .await?
        .filter(JsonValue::is_object)
        .ok_or_else(|| Error::NotFound(format!("Room {room_id} has no power levels")))
}

pub(super) fn level(value: &JsonValue) -> Option<i64> {
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

/// Restores muted members when their time is up: one task, sleeping until the next expiry or
/// until a new mute is recorded.
#[derive(Clone)]
pub(super) struct Mutes {
    store: Store,
    rooms: Arc<Rooms>,
    pub(super) changed: Arc<Notify>,
}

impl Mutes {
    pub(super) fn start(store: Store, rooms: Arc<Rooms>) -> Self {
        let mutes = Self {
            store,
            rooms,
            changed: Arc::new(Notify::new()),
        };
        tokio::spawn(mutes.clone().run());
        mutes
    }

    async fn run(self) {
        loop {
            let now = i64::try_from(now_ms()).unwrap_or(i64::MAX);
            let next = match self.store.due_mutes(now).await {
                Ok((due, next)) => {
                    for mute in due {
                        if let Err(e) = self.restore(&mute).await {
                            tracing::warn!(room_id = %mute.room_id, user_id = %mute.user_id, "mute not lifted: {e}");
                            // A mute that cannot be lifted (the admin lost their power) is
                            // dropped, not retried forever.
                            if let Err(e) =
                                self.store.delete_mute(&mute.room_id, &mute.user_id).await
                            {
                                tracing::warn!("cannot drop a mute: {e}");
                            }
                        }
                    }
                    next
                }
                Err(e) => {
                    tracing::warn!("cannot read mutes: {e}");
                    Some(now + 5_000)
                }
            };
            let wait = next.map_or(Duration::from_secs(3600), |until| {
                Duration::from_millis(u64::try_from(until - now).unwrap_or(0))
            });
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.changed.notified() => {}
            }
        }
    }

    /// Gives the member their level back and forgets the mute.
    async fn restore(&self, mute: &MuteRow) -> Result<()> {
        let mut levels = power_levels(&self.store, &mute.room_id).await?;
        match mute.previous_level {
            Some(previous) => levels["users"][mute.user_id.as_str()] = json!(previous),
            None => {
                if let Some(users) = levels["users"].as_object_mut() {
                    users.remove(mute.user_id.as_str());
                }
            }
        }
        self.rooms
            .send_state(
                &mute.muted_by,
                &mute.room_id,
                StateEventType::RoomPowerLevels,
                String::new(),
                levels,
            )
            .await?;
        self.store.delete_mute(&mute.room_id, &mute.user_id).await?;
        Ok(())
    }
}

impl Im {
    /// Posts the group's announcement (`im.tessera.announcement`: text, author, time) and pins
    /// it in place of the previous one.
    pub async fn announce(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        text: &str,
    ) -> Result<OwnedEventId> {
        let text = text.trim();
        if text.is_empty() {
            return Err(Error::InvalidParam("An announcement needs text".to_owned()));
        }
        if text.chars().count() > MAX_ANNOUNCEMENT_CHARS {
            return Err(Error::InvalidParam(format!(
                "An announcement is at most {MAX_ANNOUNCEMENT_CHARS} characters"
            )));
        }
        self.publish_announcement(
            user_id,
            room_id,
            json!({ "text": text, "author": user_id, "ts": now_ms() }),
        )
        .await
    }

    /// Sets the announcement state event and pins it in place of the previous one.
    pub(super) async fn publish_announcement(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        content: JsonValue,
    ) -> Result<OwnedEventId> {
        let previous = self
            .store
            .current_state(room_id)
            .await?
            .into_iter()
            .find(|e| e.event_type == ANNOUNCEMENT && e.state_key.is_empty())
            .map(|e| e.event_id);
        let event_id = self
            .rooms
            .send_state(
                user_id,
                room_id,
                StateEventType::from(ANNOUNCEMENT),
                String::new(),
                content,
            )
            .await?;
        let pinned = state_content(&self.store, room_id, "m.room.pinned_events", "")
            .await?
            .unwrap_or_default();
        let mut list = vec![JsonValue::String(event_id.to_string())];
        list.extend(
            pinned["pinned"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|id| {
                    previous
                        .as_ref()
                        .is_none_or(|p| id.as_str() != Some(p.as_str()))
                })
                .cloned(),
        );
        self.rooms
            .send_state(
                user_id,
                room_id,
                StateEventType::RoomPinnedEvents,
                String::new(),
                json!({ "pinned": list }),
            )
            .await?;
        Ok(event_id)
    }

    /// Mutes (or unmutes) everyone below moderator: the room's send level goes to 50 (or 0).
    pub async fn mute_all(&self, user_id: &UserId, room_id: &RoomId, muted: bool) -> Result<()> {
        self.require_joined(user_id, room_id).await?;
        let mut levels = power_levels(&self.store, room_id).await?;
        levels["events_default"] = json!(if muted { MUTED_SEND_LEVEL } else { 0 });
        self.send_power_levels(user_id, room_id, levels).await?;
        Ok(())
    }

    /// Mutes one member for `duration_secs`: their level drops below the send level until
    /// then. Returns when the mute ends (ms since the epoch).
    pub async fn mute_member(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        target: &UserId,
        duration_secs: u64,
    ) -> Result<u64> {
        if duration_secs == 0 || duration_secs > MAX_MUTE_SECS {
            return Err(Error::InvalidParam(format!(
                "duration_secs must be between 1 and {MAX_MUTE_SECS}"
            )));
        }
        self.require_joined(user_id, room_id).await?;
        if self.rooms.membership(room_id, target).await?.as_deref() != Some("join") {
            return Err(Error::NotFound(format!(
                "{target} is not a member of this group"
            )));
        }
        if user_id == target {
            return Err(Error::InvalidParam("You cannot mute yourself".to_owned()));
        }
        let mut levels = power_levels(&self.store, room_id).await?;
        let explicit = levels["users"].get(target.as_str()).and_then(level);
        let send_level = level(&levels["events_default"])
            .unwrap_or(0)
            .min(level(&levels["events"]["m.room.message"]).unwrap_or(i64::MAX));
        let until = now_ms().saturating_add(duration_secs.saturating_mul(1000));
        let existing = self.store.mute(room_id, target).await?;
        levels["users"][target.as_str()] = json!(send_level - 1);
        self.send_power_levels(user_id, room_id, levels).await?;
        self.store
            .put_mute(&MuteRow {
                room_id: room_id.to_owned(),
                user_id: target.to_owned(),
                muted_by: user_id.to_owned(),
                until_ts: i64::try_from(until).unwrap_or(i64::MAX),
                previous_level: existing.map_or(explicit, |mute| mute.previous_level),
            })
            .await?;
        self.mutes.changed.notify_one();
        Ok(until)
    }

    /// Ends a member's mute now.
    pub async fn unmute_member(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        target: &UserId,
    ) -> Result<()> {
        self.require_joined(user_id, room_id).await?;
        let mut mute = self
            .store
            .mute(room_id, target)
            .await?
            .ok_or_else(|| Error::NotFound(format!("{target} is not muted")))?;
        mute.muted_by = user_id.to_owned();
        self.mutes.restore(&mute).await
    }

    /// Users asking to join (knocking), with the reason they gave.
    pub async fn knocks(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
    ) -> Result<Vec<(OwnedUserId, Option<String>)>> {
        self.require_joined(user_id, room_id).await?;
        let mut knocks = Vec::new();
        for (knocker, event_id) in self.store.members_with_membership(room_id, "knock").await? {
            let reason = self
                .store
                .event(&event_id)
                .await?
                .and_then(|row| serde_json::from_str::<JsonValue>(&row.json).ok())
                .and_then(|event| event["content"]["reason"].as_str().map(str::to_owned));
            knocks.push((knocker, reason));
        }
        Ok(knocks)
    }

    /// Approves (invites) or denies (kicks) a knock; the room's power levels decide who may.
    pub async fn answer_knock(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        knocker: &UserId,
        approve: bool,
    ) -> Result<()> {
        self.require_joined(user_id, room_id).await?;
        if self.rooms.membership(room_id, knocker).await?.as_deref() != Some("knock") {
            return Err(Error::NotFound(format!(
                "{knocker} is not asking to join this group"
            )));
        }
        let change = MembershipChange {
            sender: user_id,
            target: knocker,
            membership: if approve { "invite" } else { "leave" },
            reason: (!approve).then_some("Join request denied"),
        };
        self.rooms.change_membership(room_id, change, false).await
    }

    /// Sends the room's power levels as `sender`.
    pub(super) async fn send_power_levels(
        &self,
        sender: &UserId,
        room_id: &RoomId,
        levels: JsonValue,
    ) -> Result<()> {
        self.rooms
            .send_state(
                sender,
                room_id,
                StateEventType::RoomPowerLevels,
                String::new(),
                levels,
            )
            .await?;
        Ok(())
    }

    pub(super) async fn require_joined(&self, user_id: &UserId, room_id: &RoomId) -> Result<()> {
        if self.rooms.membership(room_id, user_id).await?.as_deref() != Some("join") {
            return Err(Error::Forbidden(format!(
                "You are not a member of room {room_id}"
            )));
        }
        Ok(())
    }
}
