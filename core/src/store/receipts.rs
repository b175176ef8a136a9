//! Receipts: the latest receipt per (room, type, user, thread), each change with a position in
//! the receipts stream.

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId};
use sqlx::Row;

use super::{Result, Store, StoreError};

/// A receipt to store. `thread_id` is `None` for an unthreaded receipt.
#[derive(Debug, Clone)]
pub struct NewReceipt {
    pub room_id: OwnedRoomId,
    pub receipt_type: String,
    pub user_id: OwnedUserId,
    pub thread_id: Option<String>,
    pub event_id: OwnedEventId,
    /// The receipted event's stream ordering: receipts only move forward along it.
    pub event_stream_ordering: i64,
    pub ts: i64,
}

/// A stored receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub room_id: OwnedRoomId,
    pub receipt_type: String,
    pub user_id: OwnedUserId,
    pub thread_id: Option<String>,
    pub event_id: OwnedEventId,
    pub ts: i64,
    pub stream_position: i64,
}

/// The stored form of "no thread": part of the primary key, so not NULL.
const UNTHREADED: &str = "";

const RECEIPT_COLUMNS: &str =
    "room_id, receipt_type, user_id, thread_id, event_id, ts, stream_position";

fn receipt(row: &sqlx::any::AnyRow) -> Result<Receipt> {
    let corrupt = |e: ruma::IdParseError| StoreError::Corrupt(e.to_string());
    let thread_id: String = row.try_get("thread_id")?;
    Ok(Receipt {
        room_id: OwnedRoomId::try_from(row.try_get::<String, _>("room_id")?).map_err(corrupt)?,
        receipt_type: row.try_get("receipt_type")?,
        user_id: OwnedUserId::try_from(row.try_get::<String, _>("user_id")?).map_err(corrupt)?,
        thread_id: (thread_id != UNTHREADED).then_some(thread_id),
        event_id: OwnedEventId::try_from(row.try_get::<String, _>("event_id")?).map_err(corrupt)?,
        ts: row.try_get("ts")?,
        stream_position: row.try_get("stream_position")?,
    })
}

impl Store {
    /// Stores the receipt and returns its stream position, unless the user's receipt of that
    /// type in that thread already points at the same or a later event: then nothing changes
    /// (receipts never move backwards) and the result is `None`.
    pub async fn put_receipt(&self, new: NewReceipt) -> Result<Option<i64>> {
        // A read receipt resets the user's unread counts in the room.
        let read_in = matches!(new.receipt_type.as_str(), "m.read" | "m.read.private")
            .then(|| (new.user_id.clone(), new.room_id.clone()));
        let stored = self
            .writer
            .write(move |conn| {
                Box::pin(async move {
                    let thread = new.thread_id.as_deref().unwrap_or(UNTHREADED);
                    let existing: Option<i64> = sqlx::query_scalar(
                        "SELECT event_stream_ordering FROM receipts WHERE room_id = $1 \
                         AND receipt_type = $2 AND user_id = $3 AND thread_id = $4",
                    )
                    .bind(new.room_id.as_str())
                    .bind(new.receipt_type.as_str())
                    .bind(new.user_id.as_str())
                    .bind(thread)
                    .fetch_optional(&mut *conn)
                    .await?;
                    if existing.is_some_and(|old| old >= new.event_stream_ordering) {
                        return Ok(None);
                    }
                    let position: i64 = sqlx::query_scalar(
                        "UPDATE receipts_stream SET position = position + 1 RETURNING position",
                    )
                    .fetch_one(&mut *conn)
                    .await?;
                    // Conditional, so that a concurrent write of a later receipt (PostgreSQL)
                    // is not overwritten; losing that race only leaves a gap in the stream.
                    let written = sqlx::query(
                        "INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id, \
                         event_stream_ordering, ts, stream_position) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                         ON CONFLICT (room_id, receipt_type, user_id, thread_id) DO UPDATE SET \
                         event_id = excluded.event_id, \
                         event_stream_ordering = excluded.event_stream_ordering, \
                         ts = excluded.ts, stream_position = excluded.stream_position \
                         WHERE receipts.event_stream_ordering < excluded.event_stream_ordering",
                    )
                    .bind(new.room_id.as_str())
                    .bind(new.receipt_type.as_str())
                    .bind(new.user_id.as_str())
                    .bind(thread)
                    .bind(new.event_id.as_str())
                    .bind(new.event_stream_ordering)
                    .bind(new.ts)
                    .bind(position)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                    if written == 0 {
                        return Ok(None);
                    }
                    Ok(Some(position))
                })
            })
            .await?;
        if let Some(position) = stored {
            if let Some((user_id, room_id)) = &read_in {
                self.unread_counts.receipt_moved(user_id, room_id);
            }
            self.positions.receipt_committed(position);
        }
        Ok(stored)
    }

    /// Receipts of every room changed in receipts stream positions `(since, upto]`.
    pub async fn receipts_between(&self, since: i64, upto: i64) -> Result<Vec<Receipt>> {
        sqlx::query(&format!(
            "SELECT {RECEIPT_COLUMNS} FROM receipts WHERE stream_position > $1 \
             AND stream_position <= $2 ORDER BY stream_position ASC"
        ))
        .bind(since)
        .bind(upto)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(receipt)
        .collect()
    }

    /// Every receipt of the given rooms (an initial sync's), oldest change first per room.
    pub async fn receipts_of_rooms(&self, room_ids: &[OwnedRoomId]) -> Result<Vec<Receipt>> {
        let mut receipts = Vec::new();
        for chunk in room_ids.chunks(super::MAX_BOUND_IDS) {
            let sql = format!(
                "SELECT {RECEIPT_COLUMNS} FROM receipts WHERE room_id IN ({}) \
                 ORDER BY stream_position ASC",
                super::placeholders(1, chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for room_id in chunk {
                query = query.bind(room_id.as_str());
            }
            for row in query.fetch_all(&self.pool).await? {
                receipts.push(receipt(&row)?);
            }
        }
        Ok(receipts)
    }

    /// The receipts stream's current position.
    pub fn receipts_position(&self) -> i64 {
        self.positions.receipts()
    }
}
