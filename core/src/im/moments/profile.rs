//! Profile rooms (MSC4501 `social.profile`, unstable prefix): one per user, created on first
//! use, invite-only, whose members are exactly the owner's friends; only the owner posts.

use ruma::{OwnedRoomId, RoomId, UserId};
use serde_json::json;

use super::{POST_TYPE, PROFILE_ROOM_FIELD, PROFILE_TYPE, PROFILE_USER_ID};
use crate::{
    Result,
    im::Im,
    rooms::{CreateRoom, MembershipChange},
};

impl Im {
    /// The user's profile room, created (with their current friends as members) if missing.
    pub async fn profile_room(&self, user_id: &UserId) -> Result<OwnedRoomId> {
        if let Some(room_id) = self.store.profile_room(user_id).await? {
            return Ok(room_id);
        }
        let _guard = self.profile_locks.lock(&user_id.to_owned()).await;
        if let Some(room_id) = self.store.profile_room(user_id).await? {
            return Ok(room_id);
        }
        let request = CreateRoom {
            creation_content: Some(json!({ "type": PROFILE_TYPE })),
            initial_state: vec![(
                PROFILE_USER_ID.to_owned(),
                String::new(),
                json!({ "user_id": user_id }),
            )],
            power_level_content_override: Some(json!({
                "events": {
                    POST_TYPE: 100,
                    PROFILE_USER_ID: 100,
                    "m.room.power_levels": 100,
                    "m.room.history_visibility": 100,
                    "m.room.name": 100,
                    "m.room.avatar": 100,
                    "m.room.tombstone": 100,
                    "m.room.server_acl": 100,
                    "m.room.encryption": 100,
                },
                "invite": 100,
            })),
            preset: Some("private_chat".to_owned()),
            ..CreateRoom::default()
        };
        let created = self.rooms.create_room(user_id, request).await?;
        let room_id = self.store.claim_profile_room(user_id, &created).await?;
        self.store
            .set_profile_field(user_id, PROFILE_ROOM_FIELD, &json!(room_id))
            .await?;
        self.store.follow_moments(user_id, &room_id).await?;
        for friend in self.friends_data(user_id).await?.friends.keys() {
            self.add_follower(&room_id, user_id, friend).await?;
        }
        Ok(room_id)
    }

    /// Makes `friend` a member of the owner's profile room: invited, and joined when local
    /// (a friend on another server is joined by their server, see `federated.rs`).
    pub(in crate::im) async fn add_follower(
        &self,
        room_id: &RoomId,
        owner: &UserId,
        friend: &UserId,
    ) -> Result<()> {
        let membership = self.rooms.membership(room_id, friend).await?;
        if !matches!(membership.as_deref(), Some("invite" | "join")) {
            let invite = MembershipChange {
                sender: owner,
                target: friend,
                membership: "invite",
                reason: None,
            };
            // A friend on another server joins when their server takes the invite. If it
            // cannot be reached, the friendship still stands; the invite is sent again the
            // next time the friendship starts.
            if let Err(e) = self.services()?.invite(room_id, invite, false).await {
                if friend.server_name() == self.config.server_name {
                    return Err(e);
                }
                tracing::warn!(%room_id, %friend, error = %e, "cannot invite a remote friend to a profile room");
            }
        }
        if friend.server_name() == self.config.server_name && membership.as_deref() != Some("join")
        {
            self.rooms.join(friend, room_id, None).await?;
            self.store.follow_moments(friend, room_id).await?;
        }
        Ok(())
    }

    /// Removes a former friend from the owner's profile room and its moments from their feed.
    async fn remove_follower(
        &self,
        room_id: &RoomId,
        owner: &UserId,
        friend: &UserId,
    ) -> Result<()> {
        if matches!(
            self.rooms.membership(room_id, friend).await?.as_deref(),
            Some("invite" | "join" | "knock")
        ) {
            self.rooms
                .change_membership(
                    room_id,
                    MembershipChange {
                        sender: owner,
                        target: friend,
                        membership: "leave",
                        reason: Some("No longer friends"),
                    },
                    false,
                )
                .await?;
        }
        self.store.unfollow_moments(friend, room_id).await?;
        Ok(())
    }

    /// Each local side's profile room gains the other as a member.
    pub(in crate::im) async fn friendship_started(
        &self,
        one: &UserId,
        other: &UserId,
    ) -> Result<()> {
        for (owner, friend) in [(one, other), (other, one)] {
            if owner.server_name() != self.config.server_name {
                continue;
            }
            let room_id = self.profile_room(owner).await?;
            self.add_follower(&room_id, owner, friend).await?;
        }
        Ok(())
    }

    /// Each local side's profile room loses the other.
    pub(in crate::im) async fn friendship_ended(&self, one: &UserId, other: &UserId) -> Result<()> {
        for (owner, friend) in [(one, other), (other, one)] {
            if owner.server_name() != self.config.server_name {
                continue;
            }
            if let Some(room_id) = self.store.profile_room(owner).await? {
                self.remove_follower(&room_id, owner, friend).await?;
            }
        }
        Ok(())
    }
}
