//! The published room directory: which rooms are listed, pages of them ordered by joined
//! members, and the current state events a directory entry or room summary is built from.

use std::sync::Arc;

use ruma::{OwnedRoomId, OwnedUserId, RoomId};
use sqlx::Row;

use super::{Result, Store, accounts::parse_user_id, flag, placeholders};

/// Where a page of the directory starts: after (or before) the room with this joined member
/// count and ID, in the order of most joined members first, then room ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryPosition {
    pub joined_members: i64,
    pub room_id: OwnedRoomId,
}

/// One current state event of a room: its type and stored PDU JSON.
#[derive(Debug, Clone)]
pub struct RoomStateJson {
    pub room_id: OwnedRoomId,
    pub event_type: String,
    pub json: Arc<str>,
}

/// Joined members per room, over the room table: rooms without members count 0.
const PUBLISHED_WITH_MEMBERS: &str = "SELECT r.room_id AS room_id, COUNT(m.state_key) AS joined \
     FROM rooms r LEFT JOIN current_state m ON m.room_id = r.room_id \
     AND m.event_type = 'm.room.member' AND m.membership = 'join' \
     WHERE r.published = 1 GROUP BY r.room_id";

fn room_id(raw: String) -> Result<OwnedRoomId> {
    super::stored_id::<OwnedRoomId>(raw)
}

impl Store {
    /// Whether the room is listed in the directory; `None` for an unknown room.
    pub async fn room_published(&self, room_id: &RoomId) -> Result<Option<bool>> {
        let published: Option<i64> =
            sqlx::query_scalar("SELECT published FROM rooms WHERE room_id = $1")
                .bind(room_id.as_str())
                .fetch_optional(&self.pool)
                .await?;
        Ok(published.map(|p| p != 0))
    }

    pub async fn set_room_published(&self, room_id: &RoomId, published: bool) -> Result<()> {
        self.writer
            .execute(
                "UPDATE rooms SET published = $1 WHERE room_id = $2",
                vec![flag(published).into(), room_id.as_str().into()],
            )
            .await?;
        Ok(())
    }

    pub async fn published_room_count(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM rooms WHERE published = 1")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Up to `limit` published rooms with their joined member counts: after `from` in the
    /// directory's order (most joined members first, then room ID) when `forward`, else before
    /// it, nearest first.
    pub async fn published_rooms(
        &self,
        from: Option<&DirectoryPosition>,
        forward: bool,
        limit: i64,
    ) -> Result<Vec<(OwnedRoomId, i64)>> {
        let (after, order) = if forward {
            (
                "joined < $1 OR (joined = $1 AND room_id > $2)",
                "joined DESC, room_id ASC",
            )
        } else {
            (
                "joined > $1 OR (joined = $1 AND room_id < $2)",
                "joined ASC, room_id DESC",
            )
        };
        let rows = match from {
            Some(position) => {
                sqlx::query(&format!(
                    "SELECT room_id, joined FROM ({PUBLISHED_WITH_MEMBERS}) t \
                     WHERE {after} ORDER BY {order} LIMIT $3"
                ))
                .bind(position.joined_members)
                .bind(position.room_id.as_str())
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT room_id, joined FROM ({PUBLISHED_WITH_MEMBERS}) t \
                     ORDER BY {order} LIMIT $1"
                ))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter()
            .map(|row| Ok((room_id(row.try_get(0)?)?, row.try_get::<i64, _>(1)?)))
            .collect()
    }

    /// The users whose current membership in the room is `join`.
    pub async fn joined_members(&self, room_id: &RoomId) -> Result<Vec<OwnedUserId>> {
        let users: Vec<String> = sqlx::query_scalar(
            "SELECT state_key FROM current_state \
             WHERE room_id = $1 AND event_type = 'm.room.member' AND membership = 'join'",
        )
        .bind(room_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        users.into_iter().map(parse_user_id).collect()
    }

    /// The current state events with an empty state key of the given types, for each room.
    pub async fn room_state_json(
        &self,
        rooms: &[OwnedRoomId],
        event_types: &[&str],
    ) -> Result<Vec<RoomStateJson>> {
        if rooms.is_empty() || event_types.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            // State a remote join brought in is stored as outliers, not timeline events.
            "SELECT s.room_id, s.event_type, COALESCE(e.json, o.json) FROM current_state s \
             LEFT JOIN events e ON e.event_id = s.event_id \
             LEFT JOIN outliers o ON o.event_id = s.event_id \
             WHERE s.state_key = '' AND s.room_id IN ({}) AND s.event_type IN ({}) \
             AND COALESCE(e.json, o.json) IS NOT NULL",
            placeholders(1, rooms.len()),
            placeholders(rooms.len() + 1, event_types.len()),
        );
        let mut query = sqlx::query(&sql);
        for room in rooms {
            query = query.bind(room.as_str());
        }
        for kind in event_types {
            query = query.bind(*kind);
        }
        query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                Ok(RoomStateJson {
                    room_id: room_id(row.try_get(0)?)?,
                    event_type: row.try_get(1)?,
                    json: Arc::from(row.try_get::<String, _>(2)?),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use ruma::{OwnedRoomId, RoomVersionId};

    use super::DirectoryPosition;
    use crate::store::{EventBatch, NewRoom, Store, testing::test_store};

    async fn room(store: &Store, id: &str, published: bool) -> OwnedRoomId {
        let room_id = OwnedRoomId::try_from(id).unwrap();
        store
            .enqueue_events(EventBatch {
                room_id: room_id.clone(),
                new_room: Some(NewRoom {
                    version: RoomVersionId::V11,
                    creator: "@a:x.org".to_owned(),
                    created_ts: 0,
                    published,
                }),
                events: Vec::new(),
                extremities: Vec::new(),
                redaction_rules: RoomVersionId::V11.rules().unwrap().redaction,
                remote_servers: Vec::new(),
                prev_events_local: true,
                after_commit: None,
                resolved: None,
            })
            .await
            .unwrap()
            .committed()
            .await
            .unwrap();
        room_id
    }

    #[tokio::test]
    async fn published_rooms_page_in_both_directions() {
        let (store, _db) = test_store().await;
        let a = room(&store, "!a:x.org", true).await;
        let b = room(&store, "!b:x.org", true).await;
        let c = room(&store, "!c:x.org", true).await;
        room(&store, "!hidden:x.org", false).await;
        assert_eq!(store.published_room_count().await.unwrap(), 3);
        assert_eq!(store.room_published(&b).await.unwrap(), Some(true));

        let first = store.published_rooms(None, true, 2).await.unwrap();
        assert_eq!(first, vec![(a.clone(), 0), (b.clone(), 0)]);
        let after_b = DirectoryPosition {
            joined_members: 0,
            room_id: b.clone(),
        };
        let next = store
            .published_rooms(Some(&after_b), true, 2)
            .await
            .unwrap();
        assert_eq!(next, vec![(c.clone(), 0)]);
        let before_c = DirectoryPosition {
            joined_members: 0,
            room_id: c.clone(),
        };
        let back = store
            .published_rooms(Some(&before_c), false, 5)
            .await
            .unwrap();
        assert_eq!(back, vec![(b.clone(), 0), (a, 0)]);

        store.set_room_published(&b, false).await.unwrap();
        assert_eq!(store.room_published(&b).await.unwrap(), Some(false));
        assert_eq!(store.published_room_count().await.unwrap(), 2);
        let unknown = OwnedRoomId::try_from("!nope:x.org").unwrap();
        assert_eq!(store.room_published(&unknown).await.unwrap(), None);
    }
}
