//! The device list stream (spec: "Tracking the device list for a user"): each change to a user's
//! devices or keys takes the next position, so sync and `/keys/changes` read who changed between
//! two tokens.

use ruma::{OwnedUserId, UserId};
use sqlx::AnyConnection;

use super::{Result, Store, presence::USERS_SHARING_A_ROOM, stored_id};

/// Records, inside a write, that the devices or keys of `user_ids` changed. Returns the last
/// position taken; the caller reports it with [`Store::device_lists_committed`] once the write
/// has committed.
pub(super) async fn record_device_list_changes(
    conn: &mut AnyConnection,
    user_ids: &[&str],
) -> Result<i64> {
    let count = i64::try_from(user_ids.len()).unwrap_or(i64::MAX);
    let last: i64 = sqlx::query_scalar(
        "UPDATE device_list_stream SET position = position + $1 RETURNING position",
    )
    .bind(count)
    .fetch_one(&mut *conn)
    .await?;
    for (position, user_id) in (last - count + 1..).zip(user_ids) {
        sqlx::query("INSERT INTO device_list_changes (position, user_id) VALUES ($1, $2)")
            .bind(position)
            .bind(*user_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(last)
}

/// Members of the rooms `$1` is joined to (`other.state_key`), as a query fragment.
const ROOM_MATES: &str = "current_state mine \
     JOIN current_state other ON other.room_id = mine.room_id \
     AND other.event_type = 'm.room.member' \
     WHERE mine.state_key = $1 AND mine.event_type = 'm.room.member'";

/// Whether the membership of `other.state_key` or of `$1` in the room changed in timeline
/// positions `($2, $3]`.
const MEMBERSHIP_MOVED: &str = "EXISTS (SELECT 1 FROM events e \
     WHERE e.room_id = other.room_id AND e.event_type = 'm.room.member' \
     AND (e.state_key = other.state_key OR e.state_key = $1) \
     AND e.stream_ordering > $2 AND e.stream_ordering <= $3)";

impl Store {
    /// Records that a remote user's devices or keys changed.
    pub async fn record_remote_device_list_change(&self, user_id: &UserId) -> Result<()> {
        let user = user_id.to_string();
        let position = self
            .writer
            .write(move |conn| {
                Box::pin(async move { record_device_list_changes(conn, &[user.as_str()]).await })
            })
            .await?;
        self.device_lists_committed(position);
        Ok(())
    }

    /// The positions of the user's latest device list change and of the one before it: the
    /// `stream_id` and `prev_id` of the `m.device_list_update` that announces the change, so
    /// that a server which saw the previous update applies this one without fetching the whole
    /// list again.
    pub async fn device_list_update_ids(&self, user_id: &UserId) -> Result<(i64, Option<i64>)> {
        let positions: Vec<i64> = sqlx::query_scalar(
            "SELECT position FROM device_list_changes WHERE user_id = $1 \
             ORDER BY position DESC LIMIT 2",
        )
        .bind(user_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        Ok(match positions[..] {
            [latest, previous] => (latest, Some(previous)),
            [latest] => (latest, None),
            _ => (self.device_list_position(), None),
        })
    }

    /// The device list stream's current position.
    pub fn device_list_position(&self) -> i64 {
        self.positions.device_lists()
    }

    /// A write that recorded device list changes up to `position` has committed.
    pub(super) fn device_lists_committed(&self, position: i64) {
        self.positions.device_lists_committed(position);
    }

    /// [`Self::device_lists_committed`], for writes that may have recorded nothing.
    pub(super) fn device_lists_moved(&self, position: Option<i64>) {
        if let Some(position) = position {
            self.device_lists_committed(position);
        }
    }

    /// Users whose devices or keys changed in `(since, upto]` and who are `observer` or share a
    /// joined room with them.
    pub async fn device_list_changes(
        &self,
        observer: &UserId,
        since: i64,
        upto: i64,
    ) -> Result<Vec<OwnedUserId>> {
        let users: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT DISTINCT c.user_id FROM device_list_changes c \
             WHERE c.position > $2 AND c.position <= $3 \
             AND (c.user_id = $1 OR c.user_id IN ({USERS_SHARING_A_ROOM}))"
        ))
        .bind(observer.as_str())
        .bind(since)
        .bind(upto)
        .fetch_all(&self.pool)
        .await?;
        users.into_iter().map(stored_id).collect()
    }

    /// Through membership changes in timeline positions `(since, upto]`: the users who now share
    /// a joined room with `observer` where one of the two joined in that range (their devices
    /// are news to the observer), and the users who stopped sharing a room with the observer
    /// there. The latter may still share another room: callers drop those.
    pub async fn device_list_membership_changes(
        &self,
        observer: &UserId,
        since: i64,
        upto: i64,
    ) -> Result<(Vec<OwnedUserId>, Vec<OwnedUserId>)> {
        let query = |sharing: &str| {
            format!(
                "SELECT DISTINCT other.state_key FROM {ROOM_MATES} AND other.state_key <> $1 \
                 AND {sharing} AND {MEMBERSHIP_MOVED}"
            )
        };
        let fetch = |sql: String| async move {
            let users: Vec<String> = sqlx::query_scalar(&sql)
                .bind(observer.as_str())
                .bind(since)
                .bind(upto)
                .fetch_all(&self.pool)
                .await?;
            users
                .into_iter()
                .map(stored_id)
                .collect::<Result<Vec<OwnedUserId>>>()
        };
        let joined = fetch(query(
            "mine.membership = 'join' AND other.membership = 'join'",
        ))
        .await?;
        let parted = fetch(query(
            "(mine.membership <> 'join' OR other.membership <> 'join')",
        ))
        .await?;
        Ok((joined, parted))
    }
}

#[cfg(test)]
mod tests {
    use ruma::user_id;

    use super::super::testing::test_store;

    #[tokio::test]
    async fn device_list_updates_name_the_previous_one() {
        let (store, _db) = test_store().await;
        let alice = user_id!("@alice:example.org");
        let bob = user_id!("@bob:example.org");
        store.record_remote_device_list_change(alice).await.unwrap();
        let (first, previous) = store.device_list_update_ids(alice).await.unwrap();
        assert_eq!(previous, None);
        store.record_remote_device_list_change(bob).await.unwrap();
        store.record_remote_device_list_change(alice).await.unwrap();
        let (second, previous) = store.device_list_update_ids(alice).await.unwrap();
        assert_eq!(previous, Some(first));
        assert_eq!(second, first + 2);
    }
}
