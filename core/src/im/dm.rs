//! Direct chats: one DM room per pair of users (`is_direct`, `m.direct`), created on first use
//! and returned ever after. A per-pair lock serialises this server's calls for one pair, and
//! the recorded mapping (`im_dm_rooms`, first writer wins) keeps concurrent calls, even from
//! several processes, on one room.

use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde_json::{Map, Value as JsonValue, json};

use super::Im;
use crate::{
    Error, Result,
    events::Pdu,
    rooms::{CreateRoom, MembershipChange},
};

/// The account data type of the spec's DM list.
const M_DIRECT: &str = "m.direct";

/// What `POST .../dm` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectRoom {
    pub room_id: OwnedRoomId,
    /// Whether this call created the room.
    pub created: bool,
}

impl Im {
    /// The DM room of `user_id` and `other`, created (with `other` invited) if there is none
    /// the user can still use. The caller ends up joined; `other` joined or invited.
    pub async fn direct_room(&self, user_id: &UserId, other: &UserId) -> Result<DirectRoom> {
        self.direct_room_with(user_id, other, JsonValue::Null).await
    }

    /// [`Im::direct_room`], with `invite_extra` merged into the invite of `other` when one is
    /// sent (a friend request marks its invite so).
    pub(super) async fn direct_room_with(
        &self,
        user_id: &UserId,
        other: &UserId,
        invite_extra: JsonValue,
    ) -> Result<DirectRoom> {
        if user_id == other {
            return Err(Error::InvalidParam(
                "A direct chat needs another user than yourself".to_owned(),
            ));
        }
        self.require_user(other).await?;
        let pair = pair_key(user_id, other);
        let _guard = self.dm_locks.lock(&pair).await;
        if let Some(room_id) = self.store.dm_room(user_id, other).await? {
            if self
                .reenter(user_id, other, &room_id, &invite_extra)
                .await?
            {
                self.note_direct(user_id, other, &room_id).await?;
                return Ok(DirectRoom {
                    room_id,
                    created: false,
                });
            }
            let fresh = self.create_direct(user_id, other, &invite_extra).await?;
            let room_id = self
                .store
                .replace_dm_room(user_id, other, &room_id, &fresh)
                .await?;
            self.note_direct(user_id, other, &room_id).await?;
            return Ok(DirectRoom {
                created: room_id == fresh,
                room_id,
            });
        }
        let fresh = self.create_direct(user_id, other, &invite_extra).await?;
        let room_id = self.store.claim_dm_room(user_id, other, &fresh).await?;
        if room_id != fresh {
            // Another process recorded its room first: this one is given up.
            self.leave_quietly(user_id, &fresh).await;
            self.reenter(user_id, other, &room_id, &invite_extra)
                .await?;
        }
        self.note_direct(user_id, other, &room_id).await?;
        Ok(DirectRoom {
            created: room_id == fresh,
            room_id,
        })
    }

    /// The recorded DM room as `user_id` may use it again: joined (accepting an invite, which
    /// for a room held by another server is a join through it), with `other` invited again if
    /// they left. `false` when the user cannot get back in (they left an invite-only room, or
    /// were banned), or a friend request cannot be carried by it, so a new room is needed.
    async fn reenter(
        &self,
        user_id: &UserId,
        other: &UserId,
        room_id: &RoomId,
        invite_extra: &JsonValue,
    ) -> Result<bool> {
        let others = self.rooms.membership(room_id, other).await?;
        // A marked invite is how another server learns of a friend request: a remote user
        // already in the room cannot be invited, so a new room carries the request.
        let must_invite = !invite_extra.is_null() && other.server_name() != self.config.server_name;
        if must_invite && others.as_deref() == Some("join") {
            return Ok(false);
        }
        match self.membership_of(room_id, user_id).await?.as_deref() {
            Some("join") => {}
            Some("invite") => self.services()?.join(user_id, room_id, &[], None).await?,
            _ => return Ok(false),
        }
        if others.as_deref() == Some("leave") {
            self.invite(room_id, user_id, other, invite_extra).await?;
        }
        Ok(true)
    }

    /// The user's membership of the room, an invite from another server to a room this server
    /// is not in included.
    pub(super) async fn membership_of(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<Option<String>> {
        if let Some(membership) = self.rooms.membership(room_id, user_id).await? {
            return Ok(Some(membership));
        }
        Ok(self
            .rooms
            .pending_membership(room_id, user_id)
            .await?
            .and_then(|pending| {
                Pdu::from_json(pending.event.event_id, room_id, pending.event.json)
                    .ok()?
                    .membership()
            }))
    }

    async fn create_direct(
        &self,
        user_id: &UserId,
        other: &UserId,
        invite_extra: &JsonValue,
    ) -> Result<OwnedRoomId> {
        let room_id = self
            .rooms
            .create_room(
                user_id,
                CreateRoom {
                    is_direct: true,
                    preset: Some("trusted_private_chat".to_owned()),
                    ..CreateRoom::default()
                },
            )
            .await?;
        if let Err(e) = self.invite(&room_id, user_id, other, invite_extra).await {
            // The other user's server refused the invite or could not be reached: the new room
            // would be an empty DM, so it is given up.
            self.leave_quietly(user_id, &room_id).await;
            return Err(e);
        }
        Ok(room_id)
    }

    async fn leave_quietly(&self, user_id: &UserId, room_id: &RoomId) {
        let leave = MembershipChange {
            sender: user_id,
            target: user_id,
            membership: "leave",
            reason: None,
        };
        if let Err(e) = self.rooms.change_membership(room_id, leave, false).await {
            tracing::warn!(%room_id, error = %e, "cannot leave an unused DM room");
        }
    }

    async fn invite(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        other: &UserId,
        invite_extra: &JsonValue,
    ) -> Result<()> {
        let change = MembershipChange {
            sender: user_id,
            target: other,
            membership: "invite",
            reason: None,
        };
        self.services()?
            .invite_with(room_id, change, true, invite_extra)
            .await
    }

    /// Lists the room under the other user in `m.direct` of each local side.
    async fn note_direct(&self, user_id: &UserId, other: &UserId, room_id: &RoomId) -> Result<()> {
        for (owner, peer) in [(user_id, other), (other, user_id)] {
            if owner.server_name() != self.config.server_name {
                continue;
            }
            self.update_account_data(
                owner,
                None,
                M_DIRECT,
                |direct: &mut Map<String, JsonValue>| {
                    let rooms = direct.entry(peer.to_string()).or_insert_with(|| json!([]));
                    if !rooms.is_array() {
                        *rooms = json!([]);
                    }
                    if let Some(rooms) = rooms.as_array_mut()
                        && !rooms.iter().any(|r| r.as_str() == Some(room_id.as_str()))
                    {
                        rooms.push(JsonValue::String(room_id.to_string()));
                    }
                    Ok(())
                },
            )
            .await?;
        }
        Ok(())
    }

    /// A local user must exist and be active; remote users are taken on trust (their server
    /// answers the invite).
    pub(super) async fn require_user(&self, user_id: &UserId) -> Result<()> {
        if user_id.server_name() != self.config.server_name {
            return Ok(());
        }
        match self.store.account(user_id).await? {
            Some(account) if !account.deactivated => Ok(()),
            _ => Err(Error::NotFound(format!("User {user_id} does not exist"))),
        }
    }
}

fn pair_key(one: &UserId, other: &UserId) -> (OwnedUserId, OwnedUserId) {
    if one <= other {
        (one.to_owned(), other.to_owned())
    } else {
        (other.to_owned(), one.to_owned())
    }
}
