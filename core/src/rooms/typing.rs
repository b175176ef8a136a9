//! Typing notifications (spec: "Typing Notifications"): in memory, per room, each user's
//! notice expiring after the timeout they gave. Every change of a room's set of typing users
//! takes the next position of the typing stream, so sync can tell which rooms changed.
//!
//! Expiry is applied when the state is read or written, with the time passed in, so that the
//! logic is tested with a clock of the test's choosing.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};

use crate::{Result, time::now_ms};

use super::Rooms;

/// The longest a typing notice lasts without being renewed. Clients ask for ~30 s; longer
/// requests are capped, as Synapse caps them at 120 s, so a client that disappears does not
/// stay "typing" for long.
pub const MAX_TYPING_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a typing notice from another server lasts: `m.typing` carries no timeout, and
/// senders renew it while the user types (Synapse's receiving side waits 30 s too).
const REMOTE_TYPING_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct RoomTyping {
    /// User → when their notice expires (ms since the epoch).
    expires: HashMap<OwnedUserId, i64>,
    /// The typing stream position of the last change.
    position: i64,
}

#[derive(Default)]
struct TypingState {
    position: i64,
    rooms: HashMap<OwnedRoomId, RoomTyping>,
}

impl TypingState {
    fn bump(&mut self) -> i64 {
        self.position += 1;
        self.position
    }

    /// Drops expired notices of the room, taking a new position if any was dropped.
    fn expire(&mut self, room_id: &RoomId, now: i64) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let before = room.expires.len();
        room.expires.retain(|_, expires| *expires > now);
        if room.expires.len() != before {
            self.position += 1;
            room.position = self.position;
        }
    }
}

/// The users typing in a room and the typing stream position of the room's last change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypingSnapshot {
    pub user_ids: Vec<OwnedUserId>,
    pub position: i64,
}

#[derive(Default)]
pub struct Typing {
    state: Mutex<TypingState>,
}

impl Typing {
    fn state(&self) -> std::sync::MutexGuard<'_, TypingState> {
        // The state is consistent after every statement; a panic elsewhere cannot break it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks the user as typing until `now + timeout` (capped), or as not typing with `None`.
    /// Renewing a notice only moves its expiry: the set of typing users does not change.
    /// Returns whether the room's set of typing users changed.
    pub fn set(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        timeout: Option<Duration>,
        now: i64,
    ) -> bool {
        let mut state = self.state();
        let before = state.position;
        state.expire(room_id, now);
        match timeout {
            Some(timeout) => {
                let timeout = timeout.min(MAX_TYPING_TIMEOUT);
                let expires =
                    now.saturating_add(i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX));
                let room = state.rooms.entry(room_id.to_owned()).or_default();
                if room.expires.insert(user_id.to_owned(), expires).is_none() {
                    let position = state.bump();
                    state.rooms.entry(room_id.to_owned()).or_default().position = position;
                }
            }
            None => {
                let removed = state
                    .rooms
                    .get_mut(room_id)
                    .is_some_and(|room| room.expires.remove(user_id).is_some());
                if removed {
                    let position = state.bump();
                    if let Some(room) = state.rooms.get_mut(room_id) {
                        room.position = position;
                    }
                }
            }
        }
        state.position != before
    }

    /// Who is typing in the room at `now`, sorted.
    pub fn snapshot(&self, room_id: &RoomId, now: i64) -> TypingSnapshot {
        let mut state = self.state();
        state.expire(room_id, now);
        let Some(room) = state.rooms.get(room_id) else {
            return TypingSnapshot {
                user_ids: Vec::new(),
                position: 0,
            };
        };
        let mut user_ids: Vec<OwnedUserId> = room.expires.keys().cloned().collect();
        user_ids.sort();
        TypingSnapshot {
            user_ids,
            position: room.position,
        }
    }

    /// The typing stream's position at `now`, after expiring every room's stale notices.
    pub fn position(&self, now: i64) -> i64 {
        let mut state = self.state();
        let rooms: Vec<OwnedRoomId> = state.rooms.keys().cloned().collect();
        for room_id in rooms {
            state.expire(&room_id, now);
        }
        state.position
    }

    /// The earliest moment a notice of the room expires: when a waiting sync should look again.
    pub fn next_expiry(&self, room_id: &RoomId) -> Option<i64> {
        self.state()
            .rooms
            .get(room_id)
            .and_then(|room| room.expires.values().min().copied())
    }
}

impl Rooms {
    /// `PUT /rooms/{roomId}/typing/{userId}`: only for oneself, in a room one is joined to.
    pub async fn set_typing(
        &self,
        sender: &UserId,
        room_id: &RoomId,
        user_id: &UserId,
        timeout: Option<Duration>,
    ) -> Result<()> {
        if sender != user_id {
            return Err(crate::Error::Forbidden(
                "You cannot set the typing state of another user".to_owned(),
            ));
        }
        self.require_joined(user_id, room_id).await?;
        let timeout_given = timeout.is_some();
        let now = now_ms();
        if self.typing.set(room_id, user_id, timeout, now) {
            self.wake_room(room_id).await?;
        }
        // Renewals are sent too: other servers expire a notice that is not renewed. One not
        // sent within its timeout is not sent at all.
        let timeout = timeout
            .unwrap_or(REMOTE_TYPING_TIMEOUT)
            .min(MAX_TYPING_TIMEOUT);
        let expires = now.saturating_add(i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX));
        let content = serde_json::json!({
            "room_id": room_id,
            "user_id": user_id,
            "typing": timeout_given,
        });
        let servers = self.remote_servers(room_id).await?;
        self.edus
            .to_servers(&servers, "m.typing", content, Some(expires))
            .await
    }

    /// An `m.typing` EDU of `origin`: applied when its user is of that server and joined.
    pub async fn receive_typing(
        &self,
        origin: &ruma::ServerName,
        room_id: &RoomId,
        user_id: &UserId,
        typing: bool,
    ) -> Result<()> {
        if user_id.server_name() != origin
            || self.membership(room_id, user_id).await?.as_deref() != Some("join")
        {
            return Ok(());
        }
        let timeout = typing.then_some(REMOTE_TYPING_TIMEOUT);
        if self.typing.set(room_id, user_id, timeout, now_ms()) {
            self.wake_room(room_id).await?;
        }
        Ok(())
    }

    /// The users typing in the room now, for sync.
    pub fn typing_users(&self, room_id: &RoomId) -> TypingSnapshot {
        self.typing.snapshot(room_id, now_ms())
    }

    /// The typing stream's current position, for sync tokens.
    pub fn typing_position(&self) -> i64 {
        self.typing.position(now_ms())
    }

    /// When the room's next typing notice expires, if any is live.
    pub(super) fn typing_next_expiry(&self, room_id: &RoomId) -> Option<i64> {
        self.typing.next_expiry(room_id)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ruma::{owned_room_id, user_id};

    use super::{MAX_TYPING_TIMEOUT, Typing};

    #[test]
    fn notices_expire_and_changes_take_stream_positions() {
        let typing = Typing::default();
        let room = owned_room_id!("!room:example.org");
        let other = owned_room_id!("!other:example.org");
        let alice = user_id!("@alice:example.org");
        let bob = user_id!("@bob:example.org");
        let start = 1_000_000;

        typing.set(&room, alice, Some(Duration::from_secs(10)), start);
        typing.set(&room, bob, Some(Duration::from_secs(30)), start);
        let both = typing.snapshot(&room, start + 1);
        assert_eq!(both.user_ids, [alice.to_owned(), bob.to_owned()]);
        assert_eq!(both.position, 2);
        assert!(typing.snapshot(&other, start).user_ids.is_empty());

        // Renewing a notice moves its expiry but is no change of the set.
        typing.set(&room, alice, Some(Duration::from_secs(10)), start + 5_000);
        assert_eq!(typing.snapshot(&room, start + 5_001).position, 2);
        assert_eq!(typing.next_expiry(&room), Some(start + 15_000));

        // Alice's renewed notice lasts until 15 s, then she drops out: a change.
        assert_eq!(typing.snapshot(&room, start + 14_999).user_ids.len(), 2);
        let after = typing.snapshot(&room, start + 15_000);
        assert_eq!(after.user_ids, [bob.to_owned()]);
        assert_eq!(after.position, 3);
        assert_eq!(typing.position(start + 15_000), 3);

        // Stopping is a change; stopping again is not.
        typing.set(&room, bob, None, start + 16_000);
        let stopped = typing.snapshot(&room, start + 16_000);
        assert!(stopped.user_ids.is_empty());
        assert_eq!(stopped.position, 4);
        typing.set(&room, bob, None, start + 17_000);
        assert_eq!(typing.position(start + 17_000), 4);
    }

    #[test]
    fn timeouts_are_capped() {
        let typing = Typing::default();
        let room = owned_room_id!("!room:example.org");
        let alice = user_id!("@alice:example.org");
        typing.set(&room, alice, Some(Duration::from_secs(86_400)), 0);
        let cap = i64::try_from(MAX_TYPING_TIMEOUT.as_millis()).unwrap();
        assert_eq!(typing.next_expiry(&room), Some(cap));
        assert_eq!(typing.snapshot(&room, cap - 1).user_ids.len(), 1);
        assert!(typing.snapshot(&room, cap).user_ids.is_empty());
        // An expiry found by a stream position read is a change as well.
        typing.set(&room, alice, Some(Duration::from_secs(1)), cap);
        let before = typing.position(cap);
        assert_eq!(typing.position(cap + 1_000), before + 1);
    }
}
