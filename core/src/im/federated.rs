//! The IM layer across servers. What a local user does reaches the other server as ordinary
//! room events (a friend request is a marked DM invite, accepting it a join, ending a
//! friendship a leave); this module is the receiving side:
//!
//! - an invite carrying a friend request is checked against the invitee's blocks and privacy
//!   setting (a refusal is the invite's 403) and recorded as a pending request; it and a
//!   plain DM invite make the room the pair's DM room here too;
//! - an invite to a friend's profile room is accepted on the invitee's behalf, so that the
//!   friend's moments reach their feed;
//! - a remote user's join of a DM room that carries a local user's request to them makes
//!   the two friends, and their leave of a friend's DM room ends the friendship;
//! - moments posted (and deleted) in a followed remote profile room enter (and leave) the
//!   feeds of its local members.
//!
//! Events received over federation are handled in a task of their own, so that the sending
//! server's transaction is not held up by what they cause here.

use std::time::Duration;

use ruma::{EventId, OwnedRoomId, OwnedServerName, OwnedUserId, RoomId, UserId};
use serde_json::Value as JsonValue;

use super::{
    Im,
    friends::{REQUEST_MARK, now_ms},
    group_admin::state_content,
    moments::{POST_TYPE, PROFILE_USER_ID},
};
use crate::{Result, events::Pdu, store::FriendRequestRow, store::MomentRow};

/// Joins of a friend's profile room are tried this often: the inviting server stores its
/// invite only once this server has signed it, so a join may reach it before the invite.
const PROFILE_JOIN_ATTEMPTS: u32 = 6;
const PROFILE_JOIN_FIRST_DELAY: Duration = Duration::from_millis(200);
/// How many of a remote profile room's latest events are fetched when a user first follows
/// it: its recent moments, with their likes and comments.
const PROFILE_HISTORY: usize = 100;

/// An invite another server sends a local user, as the IM layer reads it.
pub struct IncomingInvite<'a> {
    pub inviter: &'a UserId,
    pub invitee: &'a UserId,
    pub room_id: &'a RoomId,
    pub content: &'a JsonValue,
    /// Whether the invite's stripped state makes the room a profile room.
    pub profile_room: bool,
}

impl Im {
    /// An invite from another server to a local user, before this server signs it.
    pub async fn incoming_invite(&self, invite: IncomingInvite<'_>) -> Result<()> {
        let IncomingInvite {
            inviter,
            invitee,
            room_id,
            content,
            profile_room,
        } = invite;
        if let Some(mark) = content.get(REQUEST_MARK) {
            self.check_request_allowed(inviter, invitee).await?;
            let message = mark
                .get("message")
                .and_then(JsonValue::as_str)
                .map(str::to_owned);
            // The requester's server made this room the pair's DM room: both sides use it.
            let recorded = self.store.claim_dm_room(invitee, inviter, room_id).await?;
            if recorded != room_id {
                self.store
                    .replace_dm_room(invitee, inviter, &recorded, room_id)
                    .await?;
            }
            self.store
                .put_friend_request(&FriendRequestRow {
                    requester: inviter.to_owned(),
                    target: invitee.to_owned(),
                    room_id: room_id.to_owned(),
                    message,
                    created_ts: i64::try_from(now_ms()).unwrap_or(i64::MAX),
                })
                .await?;
        } else if content.get("is_direct") == Some(&JsonValue::Bool(true)) {
            // A plain DM invite: the pair's DM room unless they have one already.
            self.store.claim_dm_room(invitee, inviter, room_id).await?;
        }
        if profile_room && self.knows_as_friend(invitee, inviter).await? {
            self.follow_remote_profile(
                invitee.to_owned(),
                room_id.to_owned(),
                inviter.server_name().to_owned(),
            );
        }
        Ok(())
    }

    /// Whether `other` is the user's friend, or becoming one: the friendship may be recorded
    /// here only after the other server's invite to its profile room arrives.
    async fn knows_as_friend(&self, user_id: &UserId, other: &UserId) -> Result<bool> {
        Ok(self.is_friend(user_id, other).await?
            || self.store.friend_request(user_id, other).await?.is_some()
            || self.store.friend_request(other, user_id).await?.is_some())
    }

    /// Joins the local user to a friend's profile room on another server, in the background.
    fn follow_remote_profile(
        &self,
        user_id: OwnedUserId,
        room_id: OwnedRoomId,
        via: OwnedServerName,
    ) {
        let services = self.services.clone();
        tokio::spawn(async move {
            let mut delay = PROFILE_JOIN_FIRST_DELAY;
            for attempt in 1..=PROFILE_JOIN_ATTEMPTS {
                let Some(services) = services.upgrade() else {
                    return;
                };
                let joined = services
                    .join(&user_id, &room_id, std::slice::from_ref(&via), None)
                    .await;
                match joined {
                    Ok(()) => {
                        if let Err(e) = services.im.follow_joined_profile(&user_id, &room_id).await
                        {
                            tracing::warn!(%room_id, %user_id, error = %e, "cannot follow the profile room");
                        }
                        return;
                    }
                    Err(e) if attempt == PROFILE_JOIN_ATTEMPTS => {
                        tracing::warn!(%room_id, %user_id, error = %e, "cannot join a friend's profile room");
                    }
                    Err(_) => {}
                }
                drop(services);
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        });
    }

    /// Puts a remote profile room the user just joined in their feed: a join brings the
    /// room's state but no timeline, so its latest moments are fetched first.
    async fn follow_joined_profile(&self, user_id: &UserId, room_id: &RoomId) -> Result<()> {
        let services = self.services()?;
        let Some((_, join)) = self.store.current_membership(room_id, user_id).await? else {
            return Ok(());
        };
        let fetched = services
            .backfill_before(room_id, &join, PROFILE_HISTORY)
            .await?;
        for (position, pdu) in fetched {
            // A redacted moment comes back without its content.
            let deleted = pdu.content.get() == "{}";
            if pdu.kind.to_string() == POST_TYPE && !deleted {
                self.index_remote_moment(room_id, &pdu, position).await?;
            }
        }
        self.store.follow_moments(user_id, room_id).await?;
        Ok(())
    }

    /// An event another server sent, now in the room's timeline: what it means to the IM
    /// layer is worked out in the background.
    pub fn received(&self, room_id: &RoomId, event_id: &EventId, kind: &str) {
        // Only these types mean anything here: the rest is not worth a task and a read.
        if !matches!(kind, "m.room.member" | "m.room.redaction" | POST_TYPE) {
            return;
        }
        let services = self.services.clone();
        let (room_id, event_id) = (room_id.to_owned(), event_id.to_owned());
        tokio::spawn(async move {
            let Some(services) = services.upgrade() else {
                return;
            };
            if let Err(e) = services.im.apply_received(&room_id, &event_id).await {
                tracing::warn!(%room_id, %event_id, error = %e, "IM handling of a received event failed");
            }
        });
    }

    async fn apply_received(&self, room_id: &RoomId, event_id: &EventId) -> Result<()> {
        // Soft-failed events and outliers (stream position 0) and backfilled history
        // (negative) are not new to the room.
        let Some(row) = self.store.event(event_id).await? else {
            return Ok(());
        };
        if row.stream_ordering <= 0 {
            return Ok(());
        }
        let pdu = Pdu::from_json(row.event_id.clone(), room_id, row.json.clone())
            .map_err(|e| crate::Error::Internal(e.to_string()))?;
        let kind = pdu.kind.to_string();
        if let Some(membership) = pdu.membership() {
            let Some(member) = pdu
                .state_key
                .as_deref()
                .and_then(|key| UserId::parse(key).ok())
            else {
                return Ok(());
            };
            if member.server_name() == self.config.server_name {
                return Ok(());
            }
            return match membership.as_str() {
                "join" => self.joined(&member, room_id).await,
                "leave" | "ban" => self.remote_left(&member, room_id).await,
                _ => Ok(()),
            };
        }
        // Received events are handled concurrently: a moment whose redaction was handled
        // first is already marked redacted, and is not indexed.
        if kind == POST_TYPE && row.redacted_by.is_none() {
            return self
                .index_remote_moment(room_id, &pdu, row.stream_ordering)
                .await;
        }
        if let Some(redacted) = &pdu.redacts
            && self.store.moment(redacted).await?.is_some()
        {
            self.store.delete_moment(redacted).await?;
        }
        Ok(())
    }

    /// A remote user left (or was banned from) a room: a pending request to them through it
    /// was declined, and if it is a local user's DM room with them as a friend, the
    /// friendship is over on this side too.
    async fn remote_left(&self, member: &UserId, room_id: &RoomId) -> Result<()> {
        for request in self.store.friend_requests(member, true).await? {
            if request.room_id == room_id {
                self.store
                    .delete_friend_request(&request.requester, member)
                    .await?;
            }
        }
        for (one, other) in self.store.dm_pairs_of(room_id).await? {
            let local = match (one == member, other == member) {
                (true, _) => other,
                (_, true) => one,
                _ => continue,
            };
            if local.server_name() != self.config.server_name {
                continue;
            }
            let is_their_dm = self
                .friends_data(&local)
                .await?
                .friends
                .get(member)
                .is_some_and(|friend| friend.room_id == room_id);
            if is_their_dm {
                self.forget_friend(&local, member).await?;
                self.friendship_ended(&local, member).await?;
            }
        }
        Ok(())
    }

    /// A moment posted by the owner of a profile room this server follows: indexed and put in
    /// the feeds of its local members.
    async fn index_remote_moment(&self, room_id: &RoomId, pdu: &Pdu, position: i64) -> Result<()> {
        let owner = state_content(&self.store, room_id, PROFILE_USER_ID, "")
            .await?
            .and_then(|content| content["user_id"].as_str().map(str::to_owned));
        if owner.as_deref() != Some(pdu.sender.as_str()) {
            return Ok(());
        }
        self.index_moment(
            MomentRow {
                position,
                event_id: pdu.event_id.clone(),
                room_id: room_id.to_owned(),
            },
            &pdu.sender,
        )
        .await
    }
}
