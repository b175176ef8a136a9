//! The IM layer's indexes (migration 0012): the DM room of each pair of users, pending friend
//! requests.

use ruma::{EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use sqlx::Row;

use super::{Result, Store};

/// A pair in its stored order, so (a, b) and (b, a) are one key.
fn pair<'a>(one: &'a UserId, other: &'a UserId) -> (&'a str, &'a str) {
    if one.as_str() <= other.as_str() {
        (one.as_str(), other.as_str())
    } else {
        (other.as_str(), one.as_str())
    }
}

impl Store {
    /// The recorded DM room of two users.
    pub async fn dm_room(&self, one: &UserId, other: &UserId) -> Result<Option<OwnedRoomId>> {
        let (a, b) = pair(one, other);
        let room: Option<String> =
            sqlx::query_scalar("SELECT room_id FROM im_dm_rooms WHERE user_a = $1 AND user_b = $2")
                .bind(a)
                .bind(b)
                .fetch_optional(&self.pool)
                .await?;
        room.map(super::stored_id::<OwnedRoomId>).transpose()
    }

    /// The pairs whose DM room `room_id` is (one, unless a pair's mapping was replaced
    /// concurrently).
    pub async fn dm_pairs_of(&self, room_id: &RoomId) -> Result<Vec<(OwnedUserId, OwnedUserId)>> {
        let rows = sqlx::query("SELECT user_a, user_b FROM im_dm_rooms WHERE room_id = $1")
            .bind(room_id.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    super::stored_id(row.try_get(0)?)?,
                    super::stored_id(row.try_get(1)?)?,
                ))
            })
            .collect()
    }

    /// Records `room_id` as the pair's DM room unless one is recorded already; returns the room
    /// that is recorded afterwards (the first one wins).
    pub async fn claim_dm_room(
        &self,
        one: &UserId,
        other: &UserId,
        room_id: &RoomId,
    ) -> Result<OwnedRoomId> {
        let (a, b) = pair(one, other);
        self.writer
            .execute(
                "INSERT INTO im_dm_rooms (user_a, user_b, room_id) VALUES ($1, $2, $3) \
                 ON CONFLICT (user_a, user_b) DO NOTHING",
                vec![a.into(), b.into(), room_id.as_str().into()],
            )
            .await?;
        Ok(self
            .dm_room(one, other)
            .await?
            .unwrap_or_else(|| room_id.to_owned()))
    }

    /// Replaces the pair's DM room `stale` (one that can no longer be used) by `room_id`.
    pub async fn replace_dm_room(
        &self,
        one: &UserId,
        other: &UserId,
        stale: &RoomId,
        room_id: &RoomId,
    ) -> Result<OwnedRoomId> {
        let (a, b) = pair(one, other);
        self.writer
            .execute(
                "UPDATE im_dm_rooms SET room_id = $4 WHERE user_a = $1 AND user_b = $2 AND room_id = $3",
                vec![
                    a.into(),
                    b.into(),
                    stale.as_str().into(),
                    room_id.as_str().into(),
                ],
            )
            .await?;
        Ok(self
            .dm_room(one, other)
            .await?
            .unwrap_or_else(|| room_id.to_owned()))
    }
}

/// A pending friend request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FriendRequestRow {
    pub requester: OwnedUserId,
    pub target: OwnedUserId,
    pub room_id: OwnedRoomId,
    pub message: Option<String>,
    pub created_ts: i64,
}

const FRIEND_REQUEST_COLUMNS: &str = "requester, target, room_id, message, created_ts";

fn friend_request(row: &sqlx::any::AnyRow) -> Result<FriendRequestRow> {
    Ok(FriendRequestRow {
        requester: super::stored_id(row.try_get(0)?)?,
        target: super::stored_id(row.try_get(1)?)?,
        room_id: super::stored_id(row.try_get(2)?)?,
        message: row.try_get(3)?,
        created_ts: row.try_get(4)?,
    })
}

impl Store {
    /// Records a request, replacing an earlier one of the same pair and direction.
    pub async fn put_friend_request(&self, request: &FriendRequestRow) -> Result<()> {
        self.writer
            .execute(
                "INSERT INTO im_friend_requests (requester, target, room_id, message, created_ts) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (requester, target) DO UPDATE SET \
                 room_id = excluded.room_id, message = excluded.message, created_ts = excluded.created_ts",
                vec![
                    request.requester.as_str().into(),
                    request.target.as_str().into(),
                    request.room_id.as_str().into(),
                    request.message.clone().into(),
                    request.created_ts.into(),
                ],
            )
            .await?;
        Ok(())
    }

    pub async fn friend_request(
        &self,
        requester: &UserId,
        target: &UserId,
    ) -> Result<Option<FriendRequestRow>> {
        let row = sqlx::query(&format!(
            "SELECT {FRIEND_REQUEST_COLUMNS} FROM im_friend_requests WHERE requester = $1 AND target = $2"
        ))
        .bind(requester.as_str())
        .bind(target.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(friend_request).transpose()
    }

    /// Requests sent to the user (`incoming`) or by the user, newest first.
    pub async fn friend_requests(
        &self,
        user_id: &UserId,
        incoming: bool,
    ) -> Result<Vec<FriendRequestRow>> {
        let column = if incoming { "target" } else { "requester" };
        let rows = sqlx::query(&format!(
            "SELECT {FRIEND_REQUEST_COLUMNS} FROM im_friend_requests WHERE {column} = $1 \
             ORDER BY created_ts DESC, requester, target"
        ))
        .bind(user_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(friend_request).collect()
    }

    /// Removes the request; `false` if there was none.
    pub async fn delete_friend_request(&self, requester: &UserId, target: &UserId) -> Result<bool> {
        Ok(self
            .writer
            .execute(
                "DELETE FROM im_friend_requests WHERE requester = $1 AND target = $2",
                vec![requester.as_str().into(), target.as_str().into()],
            )
            .await?
            == 1)
    }
}

/// A moment in a feed or a user's list, newest first by `position`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MomentRow {
    pub position: i64,
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
}

fn moment(row: &sqlx::any::AnyRow) -> Result<MomentRow> {
    Ok(MomentRow {
        position: row.try_get(0)?,
        event_id: super::stored_id(row.try_get(1)?)?,
        room_id: super::stored_id(row.try_get(2)?)?,
    })
}

impl Store {
    pub async fn profile_room(&self, user_id: &UserId) -> Result<Option<OwnedRoomId>> {
        let room: Option<String> =
            sqlx::query_scalar("SELECT room_id FROM im_profile_rooms WHERE user_id = $1")
                .bind(user_id.as_str())
                .fetch_optional(&self.pool)
                .await?;
        room.map(super::stored_id::<OwnedRoomId>).transpose()
    }

    /// Records the user's profile room unless one is recorded; returns the recorded one.
    pub async fn claim_profile_room(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
    ) -> Result<OwnedRoomId> {
        self.writer
            .execute(
                "INSERT INTO im_profile_rooms (user_id, room_id) VALUES ($1, $2) \
                 ON CONFLICT (user_id) DO NOTHING",
                vec![user_id.as_str().into(), room_id.as_str().into()],
            )
            .await?;
        Ok(self
            .profile_room(user_id)
            .await?
            .unwrap_or_else(|| room_id.to_owned()))
    }

    /// Indexes a posted moment and puts it in the feeds of `viewers`.
    pub async fn add_moment(
        &self,
        moment: &MomentRow,
        owner: &UserId,
        viewers: &[OwnedUserId],
    ) -> Result<()> {
        let (event_id, room_id, owner, position) = (
            moment.event_id.to_string(),
            moment.room_id.to_string(),
            owner.to_string(),
            moment.position,
        );
        let viewers: Vec<String> = viewers.iter().map(ToString::to_string).collect();
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO im_moments (event_id, room_id, owner, position) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (event_id) DO NOTHING",
                    )
                    .bind(&event_id)
                    .bind(&room_id)
                    .bind(&owner)
                    .bind(position)
                    .execute(&mut *conn)
                    .await?;
                    for viewer in &viewers {
                        sqlx::query(
                            "INSERT INTO im_feed (viewer, position, event_id, room_id) \
                             VALUES ($1, $2, $3, $4) ON CONFLICT (viewer, position) DO NOTHING",
                        )
                        .bind(viewer)
                        .bind(position)
                        .bind(&event_id)
                        .bind(&room_id)
                        .execute(&mut *conn)
                        .await?;
                    }
                    Ok(())
                })
            })
            .await
    }

    /// Removes a moment from the index and every feed.
    pub async fn delete_moment(&self, event_id: &EventId) -> Result<()> {
        let event_id = event_id.to_string();
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    sqlx::query("DELETE FROM im_feed WHERE event_id = $1")
                        .bind(&event_id)
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("DELETE FROM im_moments WHERE event_id = $1")
                        .bind(&event_id)
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            })
            .await
    }

    /// Puts every moment of a profile room in the viewer's feed (they joined it).
    pub async fn follow_moments(&self, viewer: &UserId, room_id: &RoomId) -> Result<()> {
        self.writer
            .execute(
                "INSERT INTO im_feed (viewer, position, event_id, room_id) \
                 SELECT $1, position, event_id, room_id FROM im_moments WHERE room_id = $2 \
                 ON CONFLICT (viewer, position) DO NOTHING",
                vec![viewer.as_str().into(), room_id.as_str().into()],
            )
            .await?;
        Ok(())
    }

    /// Takes a profile room's moments out of the viewer's feed (they left it).
    pub async fn unfollow_moments(&self, viewer: &UserId, room_id: &RoomId) -> Result<()> {
        self.writer
            .execute(
                "DELETE FROM im_feed WHERE viewer = $1 AND room_id = $2",
                vec![viewer.as_str().into(), room_id.as_str().into()],
            )
            .await?;
        Ok(())
    }

    /// A page of the viewer's feed: moments before position `before` (all when `None`),
    /// newest first.
    pub async fn feed_page(
        &self,
        viewer: &UserId,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<MomentRow>> {
        // Only rooms the viewer is still joined to: leaving a profile room through the plain
        // API hides its moments at once.
        let rows = sqlx::query(
            "SELECT f.position, f.event_id, f.room_id FROM im_feed f \
             JOIN current_state m ON m.room_id = f.room_id AND m.event_type = 'm.room.member' \
             AND m.state_key = f.viewer AND m.membership = 'join' \
             WHERE f.viewer = $1 AND f.position < $2 ORDER BY f.position DESC LIMIT $3",
        )
        .bind(viewer.as_str())
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(moment).collect()
    }

    /// A page of one user's moments, newest first.
    pub async fn user_moments_page(
        &self,
        owner: &UserId,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<MomentRow>> {
        let rows = sqlx::query(
            "SELECT position, event_id, room_id FROM im_moments \
             WHERE owner = $1 AND position < $2 ORDER BY position DESC LIMIT $3",
        )
        .bind(owner.as_str())
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(moment).collect()
    }
}

impl Store {
    /// An indexed moment and its owner.
    pub async fn moment(&self, event_id: &EventId) -> Result<Option<(MomentRow, OwnedUserId)>> {
        let row = sqlx::query(
            "SELECT position, event_id, room_id, owner FROM im_moments WHERE event_id = $1",
        )
        .bind(event_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| Ok((moment(&row)?, super::stored_id(row.try_get(3)?)?)))
            .transpose()
    }
}

/// A member muted until `until_ts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MuteRow {
    pub room_id: OwnedRoomId,
    pub user_id: OwnedUserId,
    pub muted_by: OwnedUserId,
    pub until_ts: i64,
    pub previous_level: Option<i64>,
}

impl Store {
    /// Records a mute, replacing one of the same member (keeping the level to restore).
    pub async fn put_mute(&self, mute: &MuteRow) -> Result<()> {
        self.writer
            .execute(
                "INSERT INTO im_mutes (room_id, user_id, muted_by, until_ts, previous_level) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (room_id, user_id) DO UPDATE SET \
                 muted_by = excluded.muted_by, until_ts = excluded.until_ts",
                vec![
                    mute.room_id.as_str().into(),
                    mute.user_id.as_str().into(),
                    mute.muted_by.as_str().into(),
                    mute.until_ts.into(),
                    mute.previous_level.into(),
                ],
            )
            .await?;
        Ok(())
    }

    pub async fn mute(&self, room_id: &RoomId, user_id: &UserId) -> Result<Option<MuteRow>> {
        let row = sqlx::query(
            "SELECT room_id, user_id, muted_by, until_ts, previous_level FROM im_mutes \
             WHERE room_id = $1 AND user_id = $2",
        )
        .bind(room_id.as_str())
        .bind(user_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(mute_row).transpose()
    }

    /// The room's members muted now.
    pub async fn room_mutes(&self, room_id: &RoomId) -> Result<Vec<MuteRow>> {
        let rows = sqlx::query(
            "SELECT room_id, user_id, muted_by, until_ts, previous_level FROM im_mutes \
             WHERE room_id = $1",
        )
        .bind(room_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(mute_row).collect()
    }

    /// Mutes that end at or before `now`, and the end of the next one after.
    pub async fn due_mutes(&self, now: i64) -> Result<(Vec<MuteRow>, Option<i64>)> {
        let rows = sqlx::query(
            "SELECT room_id, user_id, muted_by, until_ts, previous_level FROM im_mutes \
             WHERE until_ts <= $1 ORDER BY until_ts",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let next: Option<i64> =
            sqlx::query_scalar("SELECT MIN(until_ts) FROM im_mutes WHERE until_ts > $1")
                .bind(now)
                .fetch_one(&self.pool)
                .await?;
        Ok((rows.iter().map(mute_row).collect::<Result<_>>()?, next))
    }

    pub async fn delete_mute(&self, room_id: &RoomId, user_id: &UserId) -> Result<()> {
        self.writer
            .execute(
                "DELETE FROM im_mutes WHERE room_id = $1 AND user_id = $2",
                vec![room_id.as_str().into(), user_id.as_str().into()],
            )
            .await?;
        Ok(())
    }
}

fn mute_row(row: &sqlx::any::AnyRow) -> Result<MuteRow> {
    Ok(MuteRow {
        room_id: super::stored_id(row.try_get(0)?)?,
        user_id: super::stored_id(row.try_get(1)?)?,
        muted_by: super::stored_id(row.try_get(2)?)?,
        until_ts: row.try_get(3)?,
        previous_level: row.try_get(4)?,
    })
}

impl Store {
    /// The users whose current membership in the room is `membership` (e.g. knocking).
    pub async fn members_with_membership(
        &self,
        room_id: &RoomId,
        membership: &str,
    ) -> Result<Vec<(OwnedUserId, OwnedEventId)>> {
        let rows = sqlx::query(
            "SELECT state_key, event_id FROM current_state \
             WHERE room_id = $1 AND event_type = 'm.room.member' AND membership = $2 \
             ORDER BY state_key",
        )
        .bind(room_id.as_str())
        .bind(membership)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    super::stored_id(row.try_get(0)?)?,
                    super::stored_id(row.try_get(1)?)?,
                ))
            })
            .collect()
    }
}
