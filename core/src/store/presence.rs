//! Presence of local users (the state last published for each), and who shares a room with whom,
//! which decides who may see a user's presence.

use ruma::{OwnedUserId, UserId, presence::PresenceState};
use sqlx::Row;

use super::{Result, Store, StoreError};

/// A user's presence as last published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPresence {
    pub user_id: OwnedUserId,
    pub state: PresenceState,
    pub status_msg: Option<String>,
    pub last_active_ts: Option<i64>,
    /// The presence stream position of this state.
    pub stream_position: i64,
}

fn stored_presence(row: &sqlx::any::AnyRow) -> Result<StoredPresence> {
    let state = match row.try_get::<String, _>("state")?.as_str() {
        "online" => PresenceState::Online,
        "unavailable" => PresenceState::Unavailable,
        "offline" => PresenceState::Offline,
        other => return Err(StoreError::Corrupt(format!("presence state {other:?}"))),
    };
    Ok(StoredPresence {
        user_id: super::stored_id(row.try_get::<String, _>("user_id")?)?,
        state,
        status_msg: row.try_get("status_msg")?,
        last_active_ts: row.try_get("last_active_ts")?,
        stream_position: row.try_get("stream_position")?,
    })
}

/// The users joined to a room `$1` is joined to (`$1` included if it is joined anywhere).
pub(super) const USERS_SHARING_A_ROOM: &str = "SELECT DISTINCT other.state_key FROM current_state mine \
     JOIN current_state other ON other.room_id = mine.room_id \
     WHERE mine.state_key = $1 AND mine.event_type = 'm.room.member' \
     AND mine.membership = 'join' \
     AND other.event_type = 'm.room.member' AND other.membership = 'join'";

impl Store {
    /// Every stored presence.
    pub async fn presence_states(&self) -> Result<Vec<StoredPresence>> {
        sqlx::query(
            "SELECT user_id, state, status_msg, last_active_ts, stream_position FROM presence",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(stored_presence)
        .collect()
    }

    /// Stores the user's presence unless a later one (by stream position) is stored already:
    /// changes are published in position order, but their writes may commit out of order.
    pub async fn set_presence(&self, presence: StoredPresence) -> Result<()> {
        self.writer
            .execute(
                "INSERT INTO presence (user_id, state, status_msg, last_active_ts, stream_position) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (user_id) DO UPDATE SET state = excluded.state, \
                 status_msg = excluded.status_msg, last_active_ts = excluded.last_active_ts, \
                 stream_position = excluded.stream_position \
                 WHERE presence.stream_position < excluded.stream_position",
                vec![
                    presence.user_id.as_str().into(),
                    presence.state.as_str().into(),
                    presence.status_msg.into(),
                    presence.last_active_ts.into(),
                    presence.stream_position.into(),
                ],
            )
            .await?;
        Ok(())
    }

    /// The users, local and remote, joined to any room the user is joined to, the user included
    /// when joined anywhere.
    pub async fn users_sharing_a_room(&self, user_id: &UserId) -> Result<Vec<OwnedUserId>> {
        let users: Vec<String> = sqlx::query_scalar(USERS_SHARING_A_ROOM)
            .bind(user_id.as_str())
            .fetch_all(&self.pool)
            .await?;
        users.into_iter().map(super::stored_id).collect()
    }

    /// Whether both users are joined to some same room.
    pub async fn share_a_room(&self, a: &UserId, b: &UserId) -> Result<bool> {
        let shared: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM current_state mine \
             JOIN current_state other ON other.room_id = mine.room_id \
             WHERE mine.state_key = $1 AND mine.event_type = 'm.room.member' \
             AND mine.membership = 'join' \
             AND other.state_key = $2 AND other.event_type = 'm.room.member' \
             AND other.membership = 'join' \
             LIMIT 1",
        )
        .bind(a.as_str())
        .bind(b.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(shared.is_some())
    }
}

/// Room membership without a room: just the `current_state` row the sharing queries read.
#[cfg(test)]
impl Store {
    pub(crate) async fn set_test_membership(
        &self,
        room_id: &ruma::RoomId,
        user_id: &UserId,
        membership: &str,
    ) {
        sqlx::query(
            "INSERT INTO current_state (room_id, event_type, state_key, event_id, membership) \
             VALUES ($1, 'm.room.member', $2, $3, $4) \
             ON CONFLICT (room_id, event_type, state_key) DO UPDATE SET membership = excluded.membership",
        )
        .bind(room_id.as_str())
        .bind(user_id.as_str())
        .bind(format!("${membership}{}", user_id.localpart()))
        .bind(membership)
        .execute(&self.writer_pool)
        .await
        .expect("membership row written");
    }
}

#[cfg(test)]
mod tests {
    use ruma::{owned_user_id, presence::PresenceState, room_id, user_id};

    use super::StoredPresence;
    use crate::store::testing::test_store;

    #[tokio::test]
    async fn rooms_are_shared_by_joined_members_only() {
        let (store, _db) = test_store().await;
        let room = room_id!("!room:example.org");
        let other = room_id!("!other:example.org");
        let alice = user_id!("@alice:example.org");
        let bob = user_id!("@bob:remote.example");
        let carol = user_id!("@carol:example.org");
        store.set_test_membership(room, alice, "join").await;
        store.set_test_membership(room, bob, "join").await;
        store.set_test_membership(room, carol, "invite").await;
        store.set_test_membership(other, carol, "join").await;

        let mut sharing = store.users_sharing_a_room(alice).await.unwrap();
        sharing.sort();
        assert_eq!(sharing, [alice.to_owned(), bob.to_owned()]);
        assert_eq!(store.users_sharing_a_room(carol).await.unwrap(), [carol]);
        assert!(store.share_a_room(alice, bob).await.unwrap());
        assert!(store.share_a_room(alice, alice).await.unwrap());
        assert!(!store.share_a_room(alice, carol).await.unwrap());

        store.set_test_membership(room, bob, "leave").await;
        assert!(!store.share_a_room(bob, alice).await.unwrap());
        assert!(store.users_sharing_a_room(bob).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_later_state_is_never_overwritten_by_an_earlier_one() {
        let (store, _db) = test_store().await;
        let user_id = owned_user_id!("@alice:example.org");
        let state = |position, state, status_msg: Option<&str>| StoredPresence {
            user_id: user_id.clone(),
            state,
            status_msg: status_msg.map(str::to_owned),
            last_active_ts: Some(1_000),
            stream_position: position,
        };
        store
            .set_presence(state(2, PresenceState::Online, Some("lunch")))
            .await
            .unwrap();
        store
            .set_presence(state(1, PresenceState::Offline, None))
            .await
            .unwrap();
        assert_eq!(
            store.presence_states().await.unwrap(),
            [state(2, PresenceState::Online, Some("lunch"))]
        );
        store
            .set_presence(state(3, PresenceState::Unavailable, None))
            .await
            .unwrap();
        assert_eq!(
            store.presence_states().await.unwrap(),
            [state(3, PresenceState::Unavailable, None)]
        );
    }
}
