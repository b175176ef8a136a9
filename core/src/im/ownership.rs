//! Transferring a group's ownership (WeChat/QQ: the owner hands the group to a member and
//! becomes an ordinary member).
//!
//! The owner is whoever holds the room's highest power. Before room version 12 that is power
//! level 100, which one `m.room.power_levels` event moves: the new owner gets 100 and the old
//! one drops to the default. From version 12 on, the room's creators hold unlimited power for
//! the room's whole life (spec: "Room version 12", MSC4289) and no event takes it away, so
//! ownership passes the only way the spec allows: the new owner upgrades the room (to the same
//! version) and is the creator of the replacement, which this server does on their behalf.
//! The members follow: local ones are moved in, those of other servers are invited (their
//! clients also see the old room's tombstone). A new owner on another server cannot be made
//! to upgrade by this server, so in such rooms they must be a local user.

use ruma::{OwnedRoomId, RoomId, UserId};
use serde_json::{Value as JsonValue, json};

use super::{
    Im,
    group_admin::{ANNOUNCEMENT, check_not_profile_room, level, power_levels, state_content},
};
use crate::{Error, Result, rooms::MembershipChange, store::MuteRow};

impl Im {
    /// Makes `new_owner` (a joined member) the group's owner in place of `owner`. Returns the
    /// group's room afterwards: the same one, or its replacement when the room version made an
    /// upgrade necessary.
    pub async fn transfer_ownership(
        &self,
        owner: &UserId,
        room_id: &RoomId,
        new_owner: &UserId,
    ) -> Result<OwnedRoomId> {
        if owner == new_owner {
            return Err(Error::InvalidParam(
                "You already own this group: name another member".to_owned(),
            ));
        }
        self.require_joined(owner, room_id).await?;
        check_not_profile_room(&self.store, room_id).await?;
        if self.rooms.membership(room_id, new_owner).await?.as_deref() != Some("join") {
            return Err(Error::InvalidParam(format!(
                "{new_owner} is not a member of this group"
            )));
        }
        let version = self
            .rooms
            .room_version(room_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("Room {room_id} not found")))?;
        let rules = version
            .rules()
            .ok_or_else(|| Error::UnsupportedRoomVersion(version.to_string()))?;
        let mut levels = power_levels(&self.store, room_id).await?;
        if !rules.authorization.explicitly_privilege_room_creators {
            if level_of(&levels, owner) < OWNER_LEVEL {
                return Err(not_owner());
            }
            levels["users"][new_owner.as_str()] = json!(OWNER_LEVEL);
            if let Some(users) = levels["users"].as_object_mut() {
                users.remove(owner.as_str());
            }
            self.send_power_levels(owner, room_id, levels).await?;
            self.hand_over_mutes(room_id, room_id, owner, new_owner)
                .await?;
            return Ok(room_id.to_owned());
        }
        if !self
            .rooms
            .creators(room_id)
            .await?
            .iter()
            .any(|c| c == owner)
        {
            return Err(not_owner());
        }
        if new_owner.server_name() != self.config.server_name {
            return Err(Error::InvalidParam(format!(
                "In this room version ownership passes by an upgrade the new owner makes, \
                 which {} would have to do: choose a member of this server",
                new_owner.server_name()
            )));
        }
        // The new owner needs the power to send the tombstone that ends the old room.
        let tombstone_level = level(&levels["events"]["m.room.tombstone"])
            .or_else(|| level(&levels["state_default"]))
            .unwrap_or(OWNER_LEVEL);
        levels["users"][new_owner.as_str()] = json!(tombstone_level);
        self.send_power_levels(owner, room_id, levels).await?;
        let replacement = self
            .rooms
            .upgrade_room(new_owner, room_id, &version, Vec::new())
            .await?;
        self.move_members(room_id, &replacement, new_owner).await?;
        self.carry_announcement(room_id, &replacement, new_owner)
            .await?;
        self.hand_over_mutes(room_id, &replacement, owner, new_owner)
            .await?;
        Ok(replacement)
    }

    /// The group's announcement, if any, set again in the replacement room (as it was) and
    /// pinned there: pinned events of the old room are not carried by an upgrade.
    async fn carry_announcement(
        &self,
        old: &RoomId,
        replacement: &RoomId,
        new_owner: &UserId,
    ) -> Result<()> {
        if let Some(announcement) = state_content(&self.store, old, ANNOUNCEMENT, "").await? {
            self.publish_announcement(new_owner, replacement, announcement)
                .await?;
        }
        Ok(())
    }

    /// Mutes still running go on under the new owner: the old one may lack the power to lift
    /// them now. Moving to a replacement room (`to`, whose levels the upgrade copied, the
    /// lowered ones included), all of them move; in the same room, only the old owner's need
    /// a new name.
    async fn hand_over_mutes(
        &self,
        from: &RoomId,
        to: &RoomId,
        owner: &UserId,
        new_owner: &UserId,
    ) -> Result<()> {
        let moving = from != to;
        for mute in self.store.room_mutes(from).await? {
            if !moving && mute.muted_by != owner {
                continue;
            }
            if moving {
                self.store.delete_mute(from, &mute.user_id).await?;
            }
            self.store
                .put_mute(&MuteRow {
                    room_id: to.to_owned(),
                    muted_by: new_owner.to_owned(),
                    ..mute
                })
                .await?;
        }
        self.mutes.changed.notify_one();
        Ok(())
    }

    /// The joined members of the old room, the new owner aside, into its replacement: local
    /// ones invited and joined, others invited.
    async fn move_members(
        &self,
        old: &RoomId,
        replacement: &RoomId,
        new_owner: &UserId,
    ) -> Result<()> {
        let services = self.services()?;
        for member in self.store.joined_members(old).await? {
            if member == new_owner {
                continue;
            }
            let invite = MembershipChange {
                sender: new_owner,
                target: &member,
                membership: "invite",
                reason: Some("The group has a new owner"),
            };
            if let Err(e) = services.invite(replacement, invite, false).await {
                // A member whose server cannot be reached can still follow the tombstone.
                tracing::warn!(room_id = %replacement, %member, error = %e, "cannot invite a member to the replaced group");
                continue;
            }
            if member.server_name() == self.config.server_name {
                self.rooms.join(&member, replacement, None).await?;
            }
        }
        Ok(())
    }
}

/// The power level of an owner before room version 12.
const OWNER_LEVEL: i64 = 100;

fn level_of(levels: &JsonValue, user_id: &UserId) -> i64 {
    level(&levels["users"][user_id.as_str()])
        .or_else(|| level(&levels["users_default"]))
        .unwrap_or(0)
}

fn not_owner() -> Error {
    Error::Forbidden("Only the group's owner can transfer it".to_owned())
}
