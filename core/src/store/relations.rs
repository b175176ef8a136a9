//! Event relations (`m.relates_to`): children of events, thread summaries and thread lists,
//! and events by timestamp. Redacted children never count: a redaction removes the relation.

use ruma::{EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};
use sqlx::Row;

use super::{
    Result, Store, StoreError, placeholders,
    rooms::{EVENT_COLUMNS, EventRow, event_row},
};

/// Replies (`m.in_reply_to`) are recorded beside true relations but are not relations of the
/// spec's relations API: they have no `rel_type`.
const REPLY: &str = "m.in_reply_to";

/// A child event pointing at a parent, without its JSON.
#[derive(Debug, Clone)]
pub struct ChildRelation {
    pub parent: OwnedEventId,
    pub rel_type: String,
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    pub sender: OwnedUserId,
    pub event_type: String,
    pub is_state: bool,
    pub origin_server_ts: i64,
}

/// The `m.thread` children of a thread root.
#[derive(Debug, Clone)]
pub struct ThreadSummary {
    pub root: OwnedEventId,
    pub count: i64,
    /// The stream ordering of the latest reply.
    pub latest: i64,
}

/// One page of `GET /relations/{eventId}`.
pub struct RelationsQuery<'a> {
    pub room_id: &'a RoomId,
    pub parent: &'a EventId,
    pub rel_type: Option<&'a str>,
    pub event_type: Option<&'a str>,
    /// 1 for direct children only; more follows relations of relations.
    pub max_depth: i64,
    /// Rows after this position going forward, at or before it going backward.
    pub from: i64,
    pub forward: bool,
    pub limit: i64,
}

/// A thread root of `GET /threads`, with the position of its latest reply.
#[derive(Debug, Clone)]
pub struct ThreadRoot {
    pub root: OwnedEventId,
    pub latest: i64,
}

fn event_id(text: String) -> Result<OwnedEventId> {
    super::stored_id::<OwnedEventId>(text)
}

impl Store {
    /// The unredacted children of `parents` with one of `rel_types`, oldest first.
    pub async fn child_relations(
        &self,
        parents: &[OwnedEventId],
        rel_types: &[&str],
    ) -> Result<Vec<ChildRelation>> {
        if parents.is_empty() || rel_types.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT relates_to, rel_type, event_id, room_id, sender, event_type, \
             CASE WHEN state_key IS NULL THEN 0 ELSE 1 END, origin_server_ts FROM events \
             WHERE relates_to IN ({}) AND rel_type IN ({}) AND redacted_by IS NULL \
             ORDER BY stream_ordering ASC",
            placeholders(1, parents.len()),
            placeholders(parents.len() + 1, rel_types.len()),
        );
        let mut query = sqlx::query(&sql);
        for parent in parents {
            query = query.bind(parent.as_str());
        }
        for rel_type in rel_types {
            query = query.bind(*rel_type);
        }
        query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                let corrupt = |e: ruma::IdParseError| StoreError::Corrupt(e.to_string());
                Ok(ChildRelation {
                    parent: event_id(row.try_get(0)?)?,
                    rel_type: row.try_get(1)?,
                    event_id: event_id(row.try_get(2)?)?,
                    room_id: OwnedRoomId::try_from(row.try_get::<String, _>(3)?)
                        .map_err(corrupt)?,
                    sender: OwnedUserId::try_from(row.try_get::<String, _>(4)?).map_err(corrupt)?,
                    event_type: row.try_get(5)?,
                    is_state: row.try_get::<i64, _>(6)? != 0,
                    origin_server_ts: row.try_get(7)?,
                })
            })
            .collect()
    }

    /// Reply count and latest reply of each thread rooted at one of `roots`, leaving out
    /// replies by `ignored` senders.
    pub async fn thread_summaries(
        &self,
        roots: &[OwnedEventId],
        ignored: &[OwnedUserId],
    ) -> Result<Vec<ThreadSummary>> {
        if roots.is_empty() {
            return Ok(Vec::new());
        }
        let not_ignored = if ignored.is_empty() {
            String::new()
        } else {
            format!(
                "AND sender NOT IN ({})",
                placeholders(roots.len() + 1, ignored.len())
            )
        };
        let sql = format!(
            "SELECT relates_to, COUNT(*), MAX(stream_ordering) FROM events \
             WHERE relates_to IN ({}) AND rel_type = 'm.thread' AND redacted_by IS NULL \
             {not_ignored} GROUP BY relates_to",
            placeholders(1, roots.len()),
        );
        let mut query = sqlx::query(&sql);
        for root in roots {
            query = query.bind(root.as_str());
        }
        for user in ignored {
            query = query.bind(user.as_str());
        }
        query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                Ok(ThreadSummary {
                    root: event_id(row.try_get(0)?)?,
                    count: row.try_get(1)?,
                    latest: row.try_get(2)?,
                })
            })
            .collect()
    }

    /// The roots among `roots` of threads `user_id` replied in.
    pub async fn threads_replied_in(
        &self,
        roots: &[OwnedEventId],
        user_id: &UserId,
    ) -> Result<Vec<OwnedEventId>> {
        if roots.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT DISTINCT relates_to FROM events WHERE relates_to IN ({}) \
             AND rel_type = 'm.thread' AND redacted_by IS NULL AND sender = ${}",
            placeholders(1, roots.len()),
            roots.len() + 1,
        );
        let mut query = sqlx::query_scalar::<_, String>(&sql);
        for root in roots {
            query = query.bind(root.as_str());
        }
        query
            .bind(user_id.as_str())
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(event_id)
            .collect()
    }

    /// The events at the given stream orderings, in no particular order.
    pub async fn events_at(&self, positions: &[i64]) -> Result<Vec<EventRow>> {
        if positions.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE stream_ordering IN ({})",
            placeholders(1, positions.len())
        );
        let mut query = sqlx::query(&sql);
        for position in positions {
            query = query.bind(*position);
        }
        query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(event_row)
            .collect()
    }

    /// Unredacted events relating to the parent, directly or (up to `max_depth`) through
    /// other relations, in the query's direction.
    pub async fn relations_page(&self, q: RelationsQuery<'_>) -> Result<Vec<EventRow>> {
        let mut filters = String::new();
        let mut next = 6;
        if q.rel_type.is_some() {
            filters.push_str(&format!(" AND rel_type = ${next}"));
            next += 1;
        }
        if q.event_type.is_some() {
            filters.push_str(&format!(" AND event_type = ${next}"));
        }
        let (bound, order) = if q.forward {
            ("stream_ordering > $4", "ASC")
        } else {
            ("stream_ordering <= $4", "DESC")
        };
        let sql = format!(
            "WITH RECURSIVE related(event_id, depth) AS ( \
                 SELECT event_id, 1 FROM events \
                 WHERE relates_to = $1 AND rel_type <> '{REPLY}' AND redacted_by IS NULL \
                 UNION ALL \
                 SELECT e.event_id, related.depth + 1 FROM events e \
                 JOIN related ON e.relates_to = related.event_id \
                 WHERE related.depth < $2 AND e.rel_type <> '{REPLY}' AND e.redacted_by IS NULL \
             ) \
             SELECT {EVENT_COLUMNS} FROM events \
             WHERE event_id IN (SELECT event_id FROM related) AND room_id = $3 AND {bound}{filters} \
             ORDER BY stream_ordering {order} LIMIT $5"
        );
        let mut query = sqlx::query(&sql)
            .bind(q.parent.as_str())
            .bind(q.max_depth)
            .bind(q.room_id.as_str())
            .bind(q.from)
            .bind(q.limit);
        if let Some(rel_type) = q.rel_type {
            query = query.bind(rel_type);
        }
        if let Some(event_type) = q.event_type {
            query = query.bind(event_type);
        }
        query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(event_row)
            .collect()
    }

    /// Thread roots of the room whose latest reply is at or before `before`, latest first;
    /// with `participant`, only threads that user started or replied in.
    pub async fn thread_roots(
        &self,
        room_id: &RoomId,
        before: i64,
        participant: Option<&UserId>,
        limit: i64,
    ) -> Result<Vec<ThreadRoot>> {
        let participated = if participant.is_some() {
            "AND (root.sender = $4 OR MAX(CASE WHEN t.sender = $4 THEN 1 ELSE 0 END) = 1)"
        } else {
            ""
        };
        let sql = format!(
            "SELECT t.relates_to, MAX(t.stream_ordering) AS latest FROM events t \
             JOIN events root ON root.event_id = t.relates_to \
             WHERE t.room_id = $1 AND root.room_id = $1 AND t.rel_type = 'm.thread' \
             AND t.redacted_by IS NULL \
             GROUP BY t.relates_to, root.sender \
             HAVING MAX(t.stream_ordering) <= $2 {participated} \
             ORDER BY latest DESC LIMIT $3"
        );
        let mut query = sqlx::query(&sql)
            .bind(room_id.as_str())
            .bind(before)
            .bind(limit);
        if let Some(user) = participant {
            query = query.bind(user.as_str());
        }
        query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                Ok(ThreadRoot {
                    root: event_id(row.try_get(0)?)?,
                    latest: row.try_get(1)?,
                })
            })
            .collect()
    }

    /// Up to `limit` events of the room ordered by `(origin_server_ts, stream_ordering)`
    /// strictly after (`forward`) or before the key `after`, in that direction.
    pub async fn events_by_timestamp(
        &self,
        room_id: &RoomId,
        after: (i64, i64),
        forward: bool,
        limit: i64,
    ) -> Result<Vec<(i64, EventRow)>> {
        let (compare, order) = if forward { (">", "ASC") } else { ("<", "DESC") };
        let sql = format!(
            "SELECT origin_server_ts, {EVENT_COLUMNS} FROM events WHERE room_id = $1 \
             AND (origin_server_ts {compare} $2 OR (origin_server_ts = $2 AND stream_ordering {compare} $3)) \
             ORDER BY origin_server_ts {order}, stream_ordering {order} LIMIT $4"
        );
        sqlx::query(&sql)
            .bind(room_id.as_str())
            .bind(after.0)
            .bind(after.1)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| Ok((row.try_get("origin_server_ts")?, event_row(row)?)))
            .collect()
    }
}
