//! Push actions: the outcome of push rule evaluation for each local recipient of an event
//! (written with the event, see the event writer), read back as unread counts and as the
//! `/notifications` list. Both compare them with the user's read receipts: a receipt in a
//! thread covers that thread, an unthreaded receipt covers everything before it.

use ruma::{OwnedEventId, OwnedRoomId, UserId};
use sqlx::Row;

use super::{Result, Store};

/// The `thread_id` of push actions (and receipts) of the main timeline.
pub(super) const MAIN_THREAD: &str = "main";

/// Rooms per query: each is bound once, well under the backends' bound-parameter limits.
pub(super) const ROOMS_PER_QUERY: usize = 256;

/// Receipts that mark events as read, each user's latest per room, receipt type and thread.
/// `$1` is the user; `{rooms}` selects the rooms.
const READ_UP_TO: &str = "SELECT room_id, thread_id, MAX(event_stream_ordering) AS pos \
     FROM receipts WHERE room_id IN ({rooms}) AND user_id = $1 \
     AND receipt_type IN ('m.read', 'm.read.private') GROUP BY room_id, thread_id";

/// Unread push actions of one thread of a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadPushCount {
    pub room_id: OwnedRoomId,
    /// The thread root, or `None` for the main timeline.
    pub thread_id: Option<OwnedEventId>,
    pub notifications: u64,
    pub highlights: u64,
}

/// One notification of a user: an event whose push actions notify or highlight them.
#[derive(Debug, Clone)]
pub struct PushNotification {
    pub room_id: OwnedRoomId,
    pub event_id: OwnedEventId,
    pub stream_ordering: i64,
    /// The actions of the rule that matched, as JSON.
    pub actions: String,
    pub ts: i64,
    /// Whether a read receipt of the user covers the event.
    pub read: bool,
}

fn thread(stored: String) -> Result<Option<OwnedEventId>> {
    if stored == MAIN_THREAD {
        return Ok(None);
    }
    super::stored_id::<OwnedEventId>(stored).map(Some)
}

fn count(row: &sqlx::any::AnyRow, column: &str) -> Result<u64> {
    // A COUNT is never negative.
    Ok(u64::try_from(row.try_get::<i64, _>(column)?).unwrap_or_default())
}

impl Store {
    /// The user's unread push actions in each of `room_ids`, per thread; threads without any
    /// are left out. Every timeline position up to `upto` must be committed: what is read from
    /// the database counts up to there, and is kept in memory from then on (`unread_cache`).
    pub async fn unread_push_counts(
        &self,
        user_id: &UserId,
        room_ids: &[OwnedRoomId],
        upto: i64,
    ) -> Result<Vec<UnreadPushCount>> {
        let lookup = self.unread_counts.lookup(user_id, room_ids);
        if lookup.missing.is_empty() {
            return Ok(lookup.counts);
        }
        let read = self
            .read_unread_push_counts(user_id, &lookup.missing, upto)
            .await?;
        self.unread_counts.remember(user_id, &lookup, &read, upto);
        let mut counts = lookup.counts;
        counts.extend(read);
        Ok(counts)
    }

    async fn read_unread_push_counts(
        &self,
        user_id: &UserId,
        room_ids: &[OwnedRoomId],
        upto: i64,
    ) -> Result<Vec<UnreadPushCount>> {
        let mut counts = Vec::new();
        for chunk in room_ids.chunks(ROOMS_PER_QUERY) {
            let rooms = super::placeholders(3, chunk.len());
            let read_up_to = READ_UP_TO.replace("{rooms}", &rooms);
            let sql = format!(
                "WITH read_up_to AS ({read_up_to}) \
                 SELECT a.room_id, a.thread_id, \
                 COUNT(CASE WHEN a.notify <> 0 THEN 1 END) AS notifications, \
                 COUNT(CASE WHEN a.highlight <> 0 THEN 1 END) AS highlights \
                 FROM event_push_actions a \
                 LEFT JOIN read_up_to t ON t.room_id = a.room_id AND t.thread_id = a.thread_id \
                 LEFT JOIN read_up_to u ON u.room_id = a.room_id AND u.thread_id = '' \
                 WHERE a.user_id = $1 AND a.room_id IN ({rooms}) \
                 AND a.stream_ordering <= $2 \
                 AND a.stream_ordering > COALESCE(t.pos, 0) \
                 AND a.stream_ordering > COALESCE(u.pos, 0) \
                 GROUP BY a.room_id, a.thread_id"
            );
            let mut query = sqlx::query(&sql).bind(user_id.as_str()).bind(upto);
            for room_id in chunk {
                query = query.bind(room_id.as_str());
            }
            for row in query.fetch_all(&self.pool).await? {
                counts.push(UnreadPushCount {
                    room_id: super::stored_id(row.try_get::<String, _>("room_id")?)?,
                    thread_id: thread(row.try_get("thread_id")?)?,
                    notifications: count(&row, "notifications")?,
                    highlights: count(&row, "highlights")?,
                });
            }
        }
        Ok(counts)
    }

    /// Up to `limit` of the user's notifications before stream position `before` (all if
    /// `None`), newest first; only those that highlight if `only_highlight`. Push actions are
    /// indexed by user and room only (each index costs every message a page per recipient),
    /// so the newest of each room are read and merged here.
    pub async fn push_notifications(
        &self,
        user_id: &UserId,
        before: Option<i64>,
        only_highlight: bool,
        limit: usize,
    ) -> Result<Vec<PushNotification>> {
        let rooms = self.push_action_rooms(user_id).await?;
        let mut page = Vec::new();
        for chunk in rooms.chunks(super::ROOMS_PER_UNION) {
            page.extend(
                self.newest_push_notifications(user_id, chunk, before, only_highlight, limit)
                    .await?,
            );
        }
        page.sort_unstable_by_key(|notification| std::cmp::Reverse(notification.stream_ordering));
        page.truncate(limit);
        Ok(page)
    }

    /// The rooms in which the user has push actions: one index seek per room, not a scan of
    /// all their rows.
    async fn push_action_rooms(&self, user_id: &UserId) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "WITH RECURSIVE room(id) AS ( \
                 SELECT MIN(room_id) FROM event_push_actions WHERE user_id = $1 \
                 UNION ALL \
                 SELECT (SELECT MIN(room_id) FROM event_push_actions \
                         WHERE user_id = $1 AND room_id > room.id) \
                 FROM room WHERE room.id IS NOT NULL) \
             SELECT id FROM room WHERE id IS NOT NULL",
        )
        .bind(user_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok(row.try_get::<String, _>(0)?))
            .collect()
    }

    /// Up to `limit` of the newest notifications of the user in each of `rooms`, before
    /// `before`.
    async fn newest_push_notifications(
        &self,
        user_id: &UserId,
        rooms: &[String],
        before: Option<i64>,
        only_highlight: bool,
        limit: usize,
    ) -> Result<Vec<PushNotification>> {
        let highlight = if only_highlight {
            " AND highlight <> 0"
        } else {
            ""
        };
        let per_room = super::per_room_union(rooms.len(), |i| {
            format!(
                "SELECT room_id, stream_ordering, event_id, thread_id, actions, ts \
                 FROM event_push_actions WHERE user_id = $1 AND room_id = ${} \
                 AND stream_ordering < $2{highlight} \
                 ORDER BY stream_ordering DESC LIMIT $3",
                i + 4
            )
        });
        let read_up_to = READ_UP_TO.replace("{rooms}", "SELECT room_id FROM page");
        let sql = format!(
            "WITH page AS ({per_room}), \
             read_up_to AS ({read_up_to}) \
             SELECT p.room_id, p.stream_ordering, p.event_id, p.actions, p.ts, \
             CASE WHEN p.stream_ordering <= COALESCE(t.pos, 0) \
             OR p.stream_ordering <= COALESCE(u.pos, 0) THEN 1 ELSE 0 END AS is_read \
             FROM page p \
             LEFT JOIN read_up_to t ON t.room_id = p.room_id AND t.thread_id = p.thread_id \
             LEFT JOIN read_up_to u ON u.room_id = p.room_id AND u.thread_id = '' \
             ORDER BY p.stream_ordering DESC LIMIT $3"
        );
        let mut query = sqlx::query(&sql)
            .bind(user_id.as_str())
            .bind(before.unwrap_or(i64::MAX))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX));
        for room_id in rooms {
            query = query.bind(room_id.as_str());
        }
        query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                Ok(PushNotification {
                    room_id: super::stored_id(row.try_get::<String, _>("room_id")?)?,
                    event_id: super::stored_id(row.try_get::<String, _>("event_id")?)?,
                    stream_ordering: row.try_get("stream_ordering")?,
                    actions: row.try_get("actions")?,
                    ts: row.try_get("ts")?,
                    read: row.try_get::<i64, _>("is_read")? != 0,
                })
            })
            .collect()
    }
}
