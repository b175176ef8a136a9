//! Friends: requests, acceptance, deletion, blocking and the privacy setting.
//!
//! A request is an invite to the pair's DM room whose member event is marked
//! `im.tessera.friend_request` (with the optional message), indexed in `im_friend_requests`;
//! accepting joins the room, and joining it through the plain `/join` counts as accepting. The
//! friends list, its categories and the privacy setting are the account data
//! `im.tessera.friends` of each user, so every device syncs them. Blocking is the spec's
//! `m.ignored_user_list`.

use std::collections::BTreeMap;

use ruma::{MilliSecondsSinceUnixEpoch, OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as JsonValue, json};

use super::Im;
use crate::{Error, Result, rooms::MembershipChange, store::FriendRequestRow};

/// The account data type of the friends list, its categories and the privacy setting.
pub const FRIENDS_DATA: &str = "im.tessera.friends";
/// The member event content key that marks an invite as a friend request.
pub(super) const REQUEST_MARK: &str = "im.tessera.friend_request";
/// The spec's list of ignored (here: blocked) users.
const IGNORED_USERS: &str = "m.ignored_user_list";
/// Longest message a friend request may carry, in characters.
pub const MAX_REQUEST_MESSAGE_CHARS: usize = 500;

/// `im.tessera.friends`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FriendsData {
    #[serde(default)]
    pub friends: BTreeMap<OwnedUserId, Friend>,
    /// In the user's order.
    #[serde(default)]
    pub categories: Vec<Category>,
    #[serde(default)]
    pub privacy: Privacy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Friend {
    /// The pair's DM room.
    pub room_id: OwnedRoomId,
    /// The ID of the friend's category, if any (at most one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// When the friendship started (ms since the epoch).
    pub since: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Category {
    pub id: String,
    pub name: String,
}

/// Who may send the user friend requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Privacy {
    #[default]
    Anyone,
    Nobody,
    FriendsOfFriends,
}

impl std::str::FromStr for Privacy {
    type Err = Error;

    fn from_str(value: &str) -> Result<Self> {
        match value {
            "anyone" => Ok(Self::Anyone),
            "nobody" => Ok(Self::Nobody),
            "friends_of_friends" => Ok(Self::FriendsOfFriends),
            other => Err(Error::InvalidParam(format!(
                "Unknown privacy setting {other:?}: use \"anyone\", \"nobody\" or \"friends_of_friends\""
            ))),
        }
    }
}

/// `m.ignored_user_list`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct IgnoredUsers {
    #[serde(default)]
    ignored_users: BTreeMap<String, JsonValue>,
    #[serde(flatten)]
    other: Map<String, JsonValue>,
}

/// A friend as the list shows them.
#[derive(Debug, Clone, PartialEq)]
pub struct FriendView {
    pub user_id: OwnedUserId,
    pub friend: Friend,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

/// A pending request as the lists show it, with the other user's profile.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestView {
    pub request: FriendRequestRow,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

pub(super) fn now_ms() -> u64 {
    MilliSecondsSinceUnixEpoch::now().get().into()
}

impl Im {
    pub async fn friends_data(&self, user_id: &UserId) -> Result<FriendsData> {
        self.read_account_data(user_id, None, FRIENDS_DATA).await
    }

    /// Whether `other` is in the user's friends list.
    pub async fn is_friend(&self, user_id: &UserId, other: &UserId) -> Result<bool> {
        Ok(self
            .friends_data(user_id)
            .await?
            .friends
            .contains_key(other))
    }

    async fn blocks(&self, user_id: &UserId, other: &UserId) -> Result<bool> {
        if user_id.server_name() != self.config.server_name {
            return Ok(false);
        }
        let ignored: IgnoredUsers = self.read_account_data(user_id, None, IGNORED_USERS).await?;
        Ok(ignored.ignored_users.contains_key(other.as_str()))
    }

    /// Whether the local user `target` takes a friend request from `requester` (of this
    /// server or another): not if they blocked the requester, and as their privacy setting
    /// says. Refusals are `M_FORBIDDEN` with the reason.
    pub(super) async fn check_request_allowed(
        &self,
        requester: &UserId,
        target: &UserId,
    ) -> Result<()> {
        if self.blocks(target, requester).await? {
            return Err(Error::Forbidden(format!(
                "{target} does not accept friend requests from you"
            )));
        }
        let theirs = self.friends_data(target).await?;
        match theirs.privacy {
            Privacy::Anyone => Ok(()),
            Privacy::Nobody => Err(Error::Forbidden(format!(
                "{target} does not accept friend requests"
            ))),
            Privacy::FriendsOfFriends => {
                if self.common_friend(requester, &theirs).await? {
                    Ok(())
                } else {
                    Err(Error::Forbidden(format!(
                        "{target} accepts friend requests only from friends of their friends"
                    )))
                }
            }
        }
    }

    /// Whether one of the friends in `theirs` is a friend of `requester`. Friendship is
    /// recorded on both sides, so a local requester's or local friend's own list answers; a
    /// friend of a remote requester on a third server cannot be asked and does not count.
    async fn common_friend(&self, requester: &UserId, theirs: &FriendsData) -> Result<bool> {
        if requester.server_name() == self.config.server_name {
            let mine = self.friends_data(requester).await?;
            if mine.friends.keys().any(|f| theirs.friends.contains_key(f)) {
                return Ok(true);
            }
        }
        for friend in theirs.friends.keys() {
            if friend.server_name() == self.config.server_name
                && self.is_friend(friend, requester).await?
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Sends a friend request (or accepts theirs, if `target` already asked the requester).
    /// Returns the pair's DM room.
    pub async fn request_friend(
        &self,
        requester: &UserId,
        target: &UserId,
        message: Option<String>,
    ) -> Result<OwnedRoomId> {
        if requester == target {
            return Err(Error::InvalidParam(
                "You cannot send a friend request to yourself".to_owned(),
            ));
        }
        if let Some(message) = &message
            && message.chars().count() > MAX_REQUEST_MESSAGE_CHARS
        {
            return Err(Error::InvalidParam(format!(
                "The message is longer than {MAX_REQUEST_MESSAGE_CHARS} characters"
            )));
        }
        self.require_user(target).await?;
        let mine = self.friends_data(requester).await?;
        if mine.friends.contains_key(target) {
            return Err(Error::InvalidParam(format!(
                "{target} is already your friend"
            )));
        }
        if self.blocks(requester, target).await? {
            return Err(Error::Forbidden(format!(
                "You have blocked {target}: unblock them before sending a friend request"
            )));
        }
        if target.server_name() == self.config.server_name {
            self.check_request_allowed(requester, target).await?;
        }
        if self
            .store
            .friend_request(target, requester)
            .await?
            .is_some()
        {
            return self.accept_friend(requester, target).await;
        }
        let mark = json!({ REQUEST_MARK: { "message": message } });
        let room = self.direct_room_with(requester, target, mark).await?;
        self.store
            .put_friend_request(&FriendRequestRow {
                requester: requester.to_owned(),
                target: target.to_owned(),
                room_id: room.room_id.clone(),
                message,
                created_ts: i64::try_from(now_ms()).unwrap_or(i64::MAX),
            })
            .await?;
        Ok(room.room_id)
    }

    /// The requests sent to the user (`incoming`) or by the user, with the other side's
    /// profile.
    pub async fn friend_requests(
        &self,
        user_id: &UserId,
        incoming: bool,
    ) -> Result<Vec<RequestView>> {
        let mut views = Vec::new();
        for request in self.store.friend_requests(user_id, incoming).await? {
            let other = if incoming {
                &request.requester
            } else {
                &request.target
            };
            let (displayname, avatar_url) = self.profile(other).await?;
            views.push(RequestView {
                request,
                displayname,
                avatar_url,
            });
        }
        Ok(views)
    }

    /// Accepts `requester`'s request: the user joins the DM room and both become friends.
    pub async fn accept_friend(&self, user_id: &UserId, requester: &UserId) -> Result<OwnedRoomId> {
        if self
            .store
            .friend_request(requester, user_id)
            .await?
            .is_none()
        {
            return Err(Error::NotFound(format!(
                "There is no friend request from {requester}"
            )));
        }
        let room = self.direct_room(user_id, requester).await?;
        self.befriend(user_id, requester, &room.room_id).await?;
        Ok(room.room_id)
    }

    /// A user joined a room (through any endpoint): if it carries a friend request to them,
    /// that counts as accepting it.
    pub async fn joined(&self, user_id: &UserId, room_id: &RoomId) -> Result<()> {
        for request in self.store.friend_requests(user_id, true).await? {
            if request.room_id == room_id {
                self.befriend(user_id, &request.requester, room_id).await?;
            }
        }
        Ok(())
    }

    /// Records the friendship on both (local) sides and drops the requests between them.
    async fn befriend(&self, one: &UserId, other: &UserId, room_id: &RoomId) -> Result<()> {
        let since = now_ms();
        for (owner, friend) in [(one, other), (other, one)] {
            if owner.server_name() != self.config.server_name {
                continue;
            }
            self.update_account_data(owner, None, FRIENDS_DATA, |data: &mut FriendsData| {
                let entry = data.friends.entry(friend.to_owned()).or_insert(Friend {
                    room_id: room_id.to_owned(),
                    category: None,
                    since,
                });
                entry.room_id = room_id.to_owned();
                Ok(())
            })
            .await?;
        }
        // Only now: the pair is never neither friends nor asked (an invite to the other's
        // profile room from their server is accepted on either ground).
        self.store.delete_friend_request(one, other).await?;
        self.store.delete_friend_request(other, one).await?;
        self.friendship_started(one, other).await
    }

    /// Rejects `requester`'s request, declining the invite that carried it.
    pub async fn reject_friend(&self, user_id: &UserId, requester: &UserId) -> Result<()> {
        let request = self
            .store
            .friend_request(requester, user_id)
            .await?
            .ok_or_else(|| {
                Error::NotFound(format!("There is no friend request from {requester}"))
            })?;
        self.store.delete_friend_request(requester, user_id).await?;
        self.withdraw_invite(
            &request.room_id,
            user_id,
            user_id,
            "Friend request rejected",
        )
        .await
    }

    /// Withdraws the user's request to `target`, and the invite that carried it.
    pub async fn cancel_friend_request(&self, user_id: &UserId, target: &UserId) -> Result<()> {
        let request = self
            .store
            .friend_request(user_id, target)
            .await?
            .ok_or_else(|| {
                Error::NotFound(format!("You have no pending friend request to {target}"))
            })?;
        self.store.delete_friend_request(user_id, target).await?;
        self.withdraw_invite(
            &request.room_id,
            user_id,
            target,
            "Friend request withdrawn",
        )
        .await
    }

    /// Ends `target`'s invite to the room that carried a friend request, if still pending:
    /// declined by the target (through the inviting server when this one is not in the room),
    /// or withdrawn by the sender.
    async fn withdraw_invite(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        target: &UserId,
        reason: &str,
    ) -> Result<()> {
        if self.membership_of(room_id, target).await?.as_deref() != Some("invite") {
            return Ok(());
        }
        if sender == target {
            return self.services()?.leave(target, room_id, Some(reason)).await;
        }
        self.rooms
            .change_membership(
                room_id,
                MembershipChange {
                    sender,
                    target,
                    membership: "leave",
                    reason: Some(reason),
                },
                false,
            )
            .await
    }

    /// Ends a friendship: the friend leaves both lists and the user leaves the DM room (which
    /// tells a friend on another server that it ended).
    pub async fn remove_friend(&self, user_id: &UserId, friend: &UserId) -> Result<()> {
        let removed = self
            .forget_friend(user_id, friend)
            .await?
            .ok_or_else(|| Error::NotFound(format!("{friend} is not your friend")))?;
        if friend.server_name() == self.config.server_name {
            self.forget_friend(friend, user_id).await?;
        }
        if self
            .rooms
            .membership(&removed.room_id, user_id)
            .await?
            .as_deref()
            == Some("join")
        {
            self.rooms
                .change_membership(
                    &removed.room_id,
                    MembershipChange {
                        sender: user_id,
                        target: user_id,
                        membership: "leave",
                        reason: None,
                    },
                    false,
                )
                .await?;
        }
        self.friendship_ended(user_id, friend).await
    }

    /// Takes `friend` out of the local user's list, and their DM room out of its category's
    /// tag. The friend as they were listed, `None` if they were not.
    pub(super) async fn forget_friend(
        &self,
        user_id: &UserId,
        friend: &UserId,
    ) -> Result<Option<Friend>> {
        let removed = self
            .update_account_data(user_id, None, FRIENDS_DATA, |data: &mut FriendsData| {
                Ok(data.friends.remove(friend))
            })
            .await?;
        if let Some(removed) = &removed
            && let Some(category) = &removed.category
        {
            let data = self.friends_data(user_id).await?;
            if let Some(name) = category_name(&data, category) {
                self.retag(user_id, &removed.room_id, Some(&name), None)
                    .await?;
            }
        }
        Ok(removed)
    }

    /// The user's friends with their profiles, ordered by user ID.
    pub async fn friends(&self, user_id: &UserId) -> Result<(Vec<FriendView>, FriendsData)> {
        let data = self.friends_data(user_id).await?;
        let mut views = Vec::with_capacity(data.friends.len());
        for (friend_id, friend) in &data.friends {
            let (displayname, avatar_url) = self.profile(friend_id).await?;
            views.push(FriendView {
                user_id: friend_id.clone(),
                friend: friend.clone(),
                displayname,
                avatar_url,
            });
        }
        Ok((views, data))
    }

    pub async fn set_privacy(&self, user_id: &UserId, privacy: Privacy) -> Result<()> {
        self.update_account_data(user_id, None, FRIENDS_DATA, |data: &mut FriendsData| {
            data.privacy = privacy;
            Ok(())
        })
        .await
    }

    /// Blocks `other` (`m.ignored_user_list`): a friendship ends, requests between the two are
    /// dropped, and further requests from them are refused.
    pub async fn block(&self, user_id: &UserId, other: &UserId) -> Result<()> {
        if user_id == other {
            return Err(Error::InvalidParam("You cannot block yourself".to_owned()));
        }
        self.update_account_data(
            user_id,
            None,
            IGNORED_USERS,
            |ignored: &mut IgnoredUsers| {
                ignored
                    .ignored_users
                    .insert(other.to_string(), JsonValue::Object(Map::new()));
                Ok(())
            },
        )
        .await?;
        if self.is_friend(user_id, other).await? {
            self.remove_friend(user_id, other).await?;
        }
        if self.store.friend_request(other, user_id).await?.is_some() {
            self.reject_friend(user_id, other).await?;
        }
        if self.store.friend_request(user_id, other).await?.is_some() {
            self.cancel_friend_request(user_id, other).await?;
        }
        Ok(())
    }

    /// The users the user blocked, from `m.ignored_user_list`.
    pub async fn blocked(&self, user_id: &UserId) -> Result<Vec<String>> {
        let ignored: IgnoredUsers = self.read_account_data(user_id, None, IGNORED_USERS).await?;
        Ok(ignored.ignored_users.into_keys().collect())
    }

    /// Unblocks `other`; `M_NOT_FOUND` if they were not blocked.
    pub async fn unblock(&self, user_id: &UserId, other: &UserId) -> Result<()> {
        let removed = self
            .update_account_data(
                user_id,
                None,
                IGNORED_USERS,
                |ignored: &mut IgnoredUsers| {
                    Ok(ignored.ignored_users.remove(other.as_str()).is_some())
                },
            )
            .await?;
        if !removed {
            return Err(Error::NotFound(format!("{other} is not blocked")));
        }
        Ok(())
    }

    /// Display name and avatar of a local user's profile.
    pub(super) async fn profile(
        &self,
        user_id: &UserId,
    ) -> Result<(Option<String>, Option<String>)> {
        if user_id.server_name() != self.config.server_name {
            return Ok((None, None));
        }
        let profile = self.store.profile(user_id).await?;
        let field = |name: &str| {
            profile
                .get(name)
                .and_then(JsonValue::as_str)
                .map(str::to_owned)
        };
        Ok((field("displayname"), field("avatar_url")))
    }
}

pub(super) fn category_name(data: &FriendsData, id: &str) -> Option<String> {
    data.categories
        .iter()
        .find(|c| c.id == id)
        .map(|c| c.name.clone())
}
