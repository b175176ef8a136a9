//! Membership changes (spec: "Room membership"): join, invite, knock, leave, kick, ban, unban,
//! forget, with restricted joins authorised by a local member who may invite.

use std::sync::Arc;

use ruma::{
    OwnedEventId, OwnedRoomId, RoomId, RoomOrAliasId, RoomVersionId, UserId,
    events::{StateEventType, TimelineEventType},
};
use serde_json::Value as JsonValue;
use tokio::sync::OwnedMutexGuard;

use crate::{
    Error, Result,
    events::{NewEvent, Pdu},
};

use super::{
    EventSource, RoomState, Rooms,
    out_of_band::invite_state_pdus,
    send::{member_content, power_level, required_level},
};

/// An invite of a user of another server, for that server to sign.
pub struct RemoteInvite {
    pub version: RoomVersionId,
    pub room_id: OwnedRoomId,
    pub event_id: OwnedEventId,
    /// The invite event as this server signed it.
    pub event: Arc<str>,
    /// The room's descriptive state events, for the invitee's client.
    pub invite_room_state: Vec<Arc<str>>,
}

/// A membership change made by one user to another (or themselves).
pub struct MembershipChange<'a> {
    pub sender: &'a UserId,
    pub target: &'a UserId,
    pub membership: &'a str,
    pub reason: Option<&'a str>,
}

fn membership_of(room: &RoomState, user_id: &UserId) -> Option<String> {
    room.get(&StateEventType::RoomMember, user_id.as_str())
        .and_then(|pdu| pdu.membership())
}

impl Rooms {
    /// A room ID, or the room a local alias points to.
    pub async fn resolve(&self, room: &RoomOrAliasId) -> Result<OwnedRoomId> {
        match <&RoomId>::try_from(room) {
            Ok(room_id) => Ok(room_id.to_owned()),
            Err(alias) => self
                .store
                .alias_room(alias)
                .await?
                .ok_or_else(|| Error::NotFound(format!("Room alias {alias} not found"))),
        }
    }

    /// The display name and avatar a member event of this local user carries.
    pub async fn with_profile(
        &self,
        user_id: &UserId,
        mut content: JsonValue,
    ) -> Result<JsonValue> {
        if user_id.server_name() != self.config.server_name {
            return Ok(content);
        }
        let profile = self.store.profile(user_id).await?;
        for field in ["displayname", "avatar_url"] {
            if let Some(value) = profile.get(field).filter(|v| v.is_string()) {
                content[field] = value.clone();
            }
        }
        Ok(content)
    }

    /// `POST /join/{roomIdOrAlias}` and `/rooms/{roomId}/join`. Joining again is a no-op.
    pub async fn join(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        reason: Option<&str>,
    ) -> Result<()> {
        let content = self
            .with_profile(user_id, member_content("join", reason))
            .await?;
        let mut guard = self.lock(room_id).await?;
        let room = guard
            .as_mut()
            .ok_or_else(|| Error::NotFound(room_id.to_string()))?;
        let current = membership_of(room, user_id);
        if current.as_deref() == Some("join") {
            return Ok(());
        }
        if current.as_deref() != Some("invite") {
            crate::im::group_admin::check_member_limit(room, self.config.im.group_member_limit)?;
        }
        let mut content = content;
        if current.as_deref() != Some("invite")
            && let Some(authoriser) = self.restricted_join_authoriser(room, user_id).await?
        {
            content["join_authorised_via_users_server"] = JsonValue::String(authoriser.to_string());
        }
        let new = NewEvent::state(TimelineEventType::RoomMember, user_id.as_str(), content);
        self.append_and_commit(guard, user_id, new, None).await?;
        Ok(())
    }

    /// For a restricted room the user may join through another room's membership: a local
    /// member who may invite, to sign off the join (spec: "Restricted rooms"). `None` when the
    /// room is not restricted or the user meets no allow condition (the auth rules refuse).
    async fn restricted_join_authoriser(
        &self,
        room: &RoomState,
        user_id: &UserId,
    ) -> Result<Option<ruma::OwnedUserId>> {
        let Some(join_rules) = room.get(&StateEventType::RoomJoinRules, "") else {
            return Ok(None);
        };
        let content = join_rules.content_value();
        let rule = content.get("join_rule").and_then(JsonValue::as_str);
        if !matches!(rule, Some("restricted" | "knock_restricted")) {
            return Ok(None);
        }
        let mut allowed = false;
        for condition in content
            .get("allow")
            .and_then(JsonValue::as_array)
            .into_iter()
            .flatten()
        {
            if condition.get("type").and_then(JsonValue::as_str) != Some("m.room_membership") {
                continue;
            }
            let Some(other) = condition
                .get("room_id")
                .and_then(JsonValue::as_str)
                .and_then(|id| RoomId::parse(id).ok())
            else {
                continue;
            };
            if self.membership(&other, user_id).await?.as_deref() == Some("join") {
                allowed = true;
                break;
            }
        }
        if !allowed {
            return Err(Error::Forbidden(
                "You are not invited to this room and do not meet its restricted join conditions"
                    .to_owned(),
            ));
        }
        let invite_level = required_level(room, "invite", 0);
        let authoriser = room
            .state
            .iter()
            .filter(|((kind, _), pdu)| {
                *kind == StateEventType::RoomMember && pdu.membership().as_deref() == Some("join")
            })
            .filter_map(|((_, key), _)| UserId::parse(key).ok())
            .filter(|member| member.server_name() == self.config.server_name)
            .map(|member| (power_level(room, &member), member))
            .filter(|(level, _)| *level >= invite_level)
            .max_by_key(|(level, _)| *level)
            .map(|(_, member)| member);
        match authoriser {
            Some(authoriser) => Ok(Some(authoriser)),
            None => Err(Error::Forbidden(
                "No member of this server can authorise a restricted join to this room".to_owned(),
            )),
        }
    }

    /// Invite, leave, kick, ban, unban and knock: one member event by `sender` about `target`.
    pub async fn change_membership(
        &self,
        room_id: &RoomId,
        change: MembershipChange<'_>,
        is_direct: bool,
    ) -> Result<()> {
        self.change_membership_with(room_id, change, is_direct, &JsonValue::Null)
            .await
    }

    /// [`Rooms::change_membership`] with the fields of `extra` (an object, or null) added to
    /// the member event's content: the IM layer marks friend requests so.
    pub async fn change_membership_with(
        &self,
        room_id: &RoomId,
        change: MembershipChange<'_>,
        is_direct: bool,
        extra: &JsonValue,
    ) -> Result<()> {
        if change.membership == "invite" && change.target.server_name() != self.config.server_name {
            return Err(Error::Forbidden(format!(
                "{} is a user of another server, who is invited through that server",
                change.target
            )));
        }
        let sender = change.sender;
        let (guard, new) = self
            .member_event_of(room_id, change, is_direct, extra)
            .await?;
        self.append_and_commit(guard, sender, new, None).await?;
        Ok(())
    }

    /// Invites a user of another server (spec: Server-Server API, "Inviting to a room"): the
    /// invite is built, then `countersign` has the invitee's server sign it (handing it the
    /// room's stripped state) and returns the event as that server signed it, which is then
    /// stored and sent to the room. The room stays locked meanwhile, so that the invite is
    /// still built on the room's latest events when it is stored.
    pub async fn invite_remote(
        &self,
        room_id: &RoomId,
        change: MembershipChange<'_>,
        is_direct: bool,
        extra: &JsonValue,
        countersign: impl AsyncFnOnce(RemoteInvite) -> Result<Arc<str>>,
    ) -> Result<()> {
        let sender = change.sender;
        let target = change.target.to_owned();
        let (mut guard, new) = self
            .member_event_of(room_id, change, is_direct, extra)
            .await?;
        let room = guard
            .as_mut()
            .ok_or_else(|| Error::NotFound(room_id.to_string()))?;
        let mut invite_room_state = invite_state_pdus(room.state.values());
        if let Some(inviter) = room.get(&StateEventType::RoomMember, sender.as_str()) {
            invite_room_state.push(inviter.json.clone());
        }
        let version = room.version.clone();
        let (pdu, mut row) = self.append(room, sender, new, None)?;
        let signed = countersign(RemoteInvite {
            version,
            room_id: room_id.to_owned(),
            event_id: pdu.event_id.clone(),
            event: pdu.json.clone(),
            invite_room_state,
        })
        .await
        .and_then(|json| {
            Pdu::from_json(pdu.event_id.clone(), room_id, json)
                .map_err(|e| Error::BadJson(e.to_string()))
        });
        let signed = match signed {
            Ok(signed) => Arc::new(signed),
            Err(e) => {
                // The room's cached state already holds the invite: it is reloaded.
                *guard = None;
                return Err(e);
            }
        };
        row.json = signed.json.clone();
        room.state
            .insert((StateEventType::RoomMember, target.to_string()), signed);
        self.commit_locked(guard, row, EventSource::Local, None)
            .await
    }

    /// The member event of a membership change, checked against the room's current state,
    /// with the room's lock.
    async fn member_event_of(
        &self,
        room_id: &RoomId,
        change: MembershipChange<'_>,
        is_direct: bool,
        extra: &JsonValue,
    ) -> Result<(OwnedMutexGuard<Option<RoomState>>, NewEvent)> {
        let MembershipChange {
            sender,
            target,
            membership,
            reason,
        } = change;
        let mut content = member_content(membership, reason);
        if matches!(membership, "invite" | "knock") {
            content = self.with_profile(target, content).await?;
        }
        if is_direct {
            content["is_direct"] = JsonValue::Bool(true);
        }
        if let Some(extra) = extra.as_object() {
            for (key, value) in extra {
                content[key.as_str()] = value.clone();
            }
        }
        let guard = if membership == "knock" {
            self.lock(room_id).await?
        } else {
            self.lock(room_id)
                .await
                .map_err(super::send::not_member(room_id))?
        };
        let room = guard
            .as_ref()
            .ok_or_else(|| Error::NotFound(room_id.to_string()))?;
        let current = membership_of(room, target);
        let refuse = |why: String| Err(Error::Forbidden(why));
        match (membership, sender == target, current.as_deref()) {
            ("leave", false, Some("join" | "invite" | "knock")) => {}
            ("leave", false, _) => return refuse(format!("{target} is not in the room")),
            ("invite", _, Some("join")) => {
                return refuse(format!("{target} is already in the room"));
            }
            ("invite", _, Some("ban")) => {
                return refuse(format!("{target} is banned from the room"));
            }
            ("invite", _, None | Some("leave" | "knock")) => {
                crate::im::group_admin::check_member_limit(
                    room,
                    self.config.im.group_member_limit,
                )?;
            }
            _ => {}
        }
        Ok((
            guard,
            NewEvent::state(TimelineEventType::RoomMember, target.as_str(), content),
        ))
    }

    /// A changed display name or avatar reaches every room the user is joined to as a new
    /// member event (as Synapse does), so other members see it. Rooms where nothing changes, or
    /// where the member event is refused, are left alone.
    pub async fn refresh_member_profiles(&self, user_id: &UserId) -> Result<()> {
        let profile = self.with_profile(user_id, serde_json::json!({})).await?;
        for room_id in self.joined_rooms(user_id).await? {
            let guard = self.lock(&room_id).await?;
            let Some(room) = guard.as_ref() else {
                continue;
            };
            let Some(current) = room.get(&StateEventType::RoomMember, user_id.as_str()) else {
                continue;
            };
            let mut content = current.content_value();
            if current.membership().as_deref() != Some("join") {
                continue;
            }
            for field in ["displayname", "avatar_url"] {
                match profile.get(field) {
                    Some(value) => content[field] = value.clone(),
                    None => {
                        if let Some(object) = content.as_object_mut() {
                            object.remove(field);
                        }
                    }
                }
            }
            if let Some(object) = content.as_object_mut() {
                object.remove("reason");
            }
            if content == current.content_value() {
                continue;
            }
            let new = NewEvent::state(TimelineEventType::RoomMember, user_id.as_str(), content);
            if let Err(e) = self.append_and_commit(guard, user_id, new, None).await {
                tracing::warn!(%room_id, "profile change not propagated: {e}");
            }
        }
        Ok(())
    }

    /// `POST /rooms/{roomId}/unban`: only a banned user can be unbanned.
    pub async fn unban(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        target: &UserId,
        reason: Option<&str>,
    ) -> Result<()> {
        if self.membership(room_id, target).await?.as_deref() != Some("ban") {
            return Err(Error::Forbidden(format!(
                "{target} is not banned from the room"
            )));
        }
        let content = member_content("leave", reason);
        let new = NewEvent::state(TimelineEventType::RoomMember, target.as_str(), content);
        self.send_checked(room_id, sender, new, None).await?;
        Ok(())
    }

    /// `POST /rooms/{roomId}/forget`: only once the user is out of the room.
    pub async fn forget(&self, user_id: &UserId, room_id: &RoomId) -> Result<()> {
        match self.membership(room_id, user_id).await?.as_deref() {
            Some("join" | "invite" | "knock") => Err(Error::Unknown(
                "You must leave the room before forgetting it".to_owned(),
            )),
            None => Err(Error::NotFound(format!(
                "You have no membership in room {room_id}"
            ))),
            Some(_) => Ok(self.store.forget_room(user_id, room_id).await?),
        }
    }
}
