//! Range reads for sync: which rooms changed between two stream positions, a user's
//! membership changes, and the small per-room facts a sync response carries.

use std::collections::{HashMap, HashSet};

use ruma::{DeviceId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use sqlx::Row;

use super::{
    EventRow, Result, Store,
    push::ROOMS_PER_QUERY,
    rooms::{EVENT_COLUMNS, event_row},
    stored_id,
};

/// A user's current membership in a room, with the member event's timeline position.
#[derive(Debug, Clone)]
pub struct MembershipRow {
    pub room_id: OwnedRoomId,
    pub membership: String,
    pub event_id: OwnedEventId,
    pub stream_ordering: i64,
}

/// Who is in a room, for the sync summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberCounts {
    pub joined: u64,
    pub invited: u64,
    /// Up to five joined or invited members other than the syncing user, sorted.
    pub heroes: Vec<OwnedUserId>,
}

/// The spec's "up to 5" heroes of a room summary.
const MAX_HEROES: usize = 5;

impl Store {
    /// The user's current membership of every room they have one in.
    pub async fn memberships(&self, user_id: &UserId) -> Result<Vec<MembershipRow>> {
        let rows = sqlx::query(
            "SELECT c.room_id, c.membership, c.event_id, e.stream_ordering FROM current_state c \
             JOIN events e ON e.event_id = c.event_id \
             WHERE c.state_key = $1 AND c.event_type = 'm.room.member'",
        )
        .bind(user_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(MembershipRow {
                    room_id: stored_id(row.try_get("room_id")?)?,
                    membership: row
                        .try_get::<Option<String>, _>("membership")?
                        .unwrap_or_default(),
                    event_id: stored_id(row.try_get("event_id")?)?,
                    stream_ordering: row.try_get("stream_ordering")?,
                })
            })
            .collect()
    }

    /// The user's member events with positions in `(since, upto]`, oldest first.
    pub async fn membership_changes(
        &self,
        user_id: &UserId,
        since: i64,
        upto: i64,
    ) -> Result<Vec<EventRow>> {
        sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE event_type = 'm.room.member' \
             AND state_key = $1 AND stream_ordering > $2 AND stream_ordering <= $3 \
             ORDER BY stream_ordering"
        ))
        .bind(user_id.as_str())
        .bind(since)
        .bind(upto)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(event_row)
        .collect()
    }

    /// The user's last member event in the room at or before position `upto`.
    pub async fn membership_event_at(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        upto: i64,
    ) -> Result<Option<EventRow>> {
        sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE event_type = 'm.room.member' \
             AND state_key = $1 AND room_id = $2 AND stream_ordering <= $3 \
             ORDER BY stream_ordering DESC LIMIT 1"
        ))
        .bind(user_id.as_str())
        .bind(room_id.as_str())
        .bind(upto)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(event_row)
        .transpose()
    }

    /// Every room with events in `(since, upto]`, with its last position in that range.
    pub async fn rooms_with_events(
        &self,
        since: i64,
        upto: i64,
    ) -> Result<HashMap<OwnedRoomId, i64>> {
        let rows = sqlx::query(
            "SELECT room_id, MAX(stream_ordering) AS last FROM events \
             WHERE stream_ordering > $1 AND stream_ordering <= $2 GROUP BY room_id",
        )
        .bind(since)
        .bind(upto)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((stored_id(row.try_get("room_id")?)?, row.try_get("last")?)))
            .collect()
    }

    /// The joined and invited members of each of `room_ids` as the user's sync summary shows
    /// them (two queries per few hundred rooms). Every room given has an entry.
    pub async fn member_counts(
        &self,
        room_ids: &[OwnedRoomId],
        user_id: &UserId,
    ) -> Result<HashMap<OwnedRoomId, MemberCounts>> {
        let mut counts: HashMap<OwnedRoomId, MemberCounts> = room_ids
            .iter()
            .map(|room_id| (room_id.clone(), MemberCounts::default()))
            .collect();
        for chunk in room_ids.chunks(ROOMS_PER_QUERY) {
            let sql = format!(
                "SELECT room_id, membership, COUNT(*) AS n FROM current_state \
                 WHERE room_id IN ({}) AND event_type = 'm.room.member' \
                 AND membership IN ('join', 'invite') GROUP BY room_id, membership",
                super::placeholders(1, chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for room_id in chunk {
                query = query.bind(room_id.as_str());
            }
            for row in query.fetch_all(&self.pool).await? {
                let room_id: OwnedRoomId = stored_id(row.try_get::<String, _>("room_id")?)?;
                let n = u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or_default();
                let entry = counts.entry(room_id).or_default();
                match row.try_get::<String, _>("membership")?.as_str() {
                    "join" => entry.joined = n,
                    _ => entry.invited = n,
                }
            }
            // Ranking reads every member, as the count above does: twice the reading, not more.
            let rooms = super::placeholders(2, chunk.len());
            let sql = format!(
                "SELECT room_id, state_key FROM (SELECT room_id, state_key, \
                 ROW_NUMBER() OVER (PARTITION BY room_id ORDER BY state_key) AS hero \
                 FROM current_state WHERE room_id IN ({rooms}) \
                 AND event_type = 'm.room.member' AND membership IN ('join', 'invite') \
                 AND state_key <> $1) ranked \
                 WHERE hero <= {MAX_HEROES} ORDER BY room_id, hero"
            );
            let mut query = sqlx::query(&sql).bind(user_id.as_str());
            for room_id in chunk {
                query = query.bind(room_id.as_str());
            }
            for row in query.fetch_all(&self.pool).await? {
                let room_id: OwnedRoomId = stored_id(row.try_get::<String, _>("room_id")?)?;
                let hero: OwnedUserId = stored_id(row.try_get::<String, _>("state_key")?)?;
                counts.entry(room_id).or_default().heroes.push(hero);
            }
        }
        Ok(counts)
    }

    /// The rooms the user has forgotten.
    pub async fn forgotten_rooms(&self, user_id: &UserId) -> Result<HashSet<OwnedRoomId>> {
        let rooms: Vec<String> =
            sqlx::query_scalar("SELECT room_id FROM forgotten_rooms WHERE user_id = $1")
                .bind(user_id.as_str())
                .fetch_all(&self.pool)
                .await?;
        rooms.into_iter().map(stored_id).collect()
    }

    /// Whether the device has sent any event with a transaction ID.
    pub async fn device_has_transactions(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
    ) -> Result<bool> {
        Ok(sqlx::query(
            "SELECT 1 FROM event_transactions WHERE user_id = $1 AND device_id = $2 LIMIT 1",
        )
        .bind(user_id.as_str())
        .bind(device_id.as_str())
        .fetch_optional(&self.pool)
        .await?
        .is_some())
    }

    /// The transaction IDs this device sent events with, of the events at the given timeline
    /// positions, by event ID. An event has one transaction at most, so the rows are read by
    /// position alone and the device picked here: a condition on the device would have SQLite
    /// walk all of the device's transactions instead.
    pub async fn transaction_ids(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        positions: &[i64],
    ) -> Result<HashMap<OwnedEventId, String>> {
        let mut ids = HashMap::new();
        for chunk in positions.chunks(super::MAX_BOUND_IDS) {
            let sql = format!(
                "SELECT user_id, device_id, event_id, txn_id FROM event_transactions \
                 WHERE stream_ordering IN ({})",
                super::placeholders(1, chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for position in chunk {
                query = query.bind(*position);
            }
            for row in query.fetch_all(&self.pool).await? {
                if row.try_get::<&str, _>("user_id")? == user_id.as_str()
                    && row.try_get::<&str, _>("device_id")? == device_id.as_str()
                {
                    ids.insert(stored_id(row.try_get("event_id")?)?, row.try_get("txn_id")?);
                }
            }
        }
        Ok(ids)
    }
}
