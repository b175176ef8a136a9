//! Receipts and read markers (spec: "Receipts", "Fully read markers").
//!
//! `m.read` and `m.read.private` receipts are stored per (room, type, user, thread) and never
//! move backwards: a receipt for an event older (in stream order) than the one already held
//! is accepted and ignored, as Synapse does. The fully read marker is the room account data
//! `m.fully_read`, which only moves forward too. Each stored receipt gets a position in the
//! receipts stream, which sync reads with [`Rooms::receipts_since`].

use ruma::{EventId, OwnedEventId, RoomId, UserId};
use serde_json::{Value as JsonValue, json};

use crate::{
    Error, Result,
    store::{EventRow, NewReceipt},
    time::now_ms,
};

use super::{Rooms, aggregations::THREAD, read::parse, relation};

/// The receipt types stored as receipts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptKind {
    Read,
    ReadPrivate,
}

impl ReceiptKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "m.read",
            Self::ReadPrivate => "m.read.private",
        }
    }
}

/// Which thread a receipt is for (spec: "Threaded read receipts").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptThread {
    Unthreaded,
    /// The main timeline: events not in any thread.
    Main,
    /// The thread with this root.
    Thread(OwnedEventId),
}

impl ReceiptThread {
    fn stored(&self) -> Option<String> {
        match self {
            Self::Unthreaded => None,
            Self::Main => Some("main".to_owned()),
            Self::Thread(root) => Some(root.to_string()),
        }
    }
}

const FULLY_READ: &str = "m.fully_read";
const REPLY: &str = "m.in_reply_to";
/// How many relations are followed to find an event's thread (the spec recommends 3).
const THREAD_HOPS: usize = 3;

impl Rooms {
    /// `POST /rooms/{roomId}/receipt/{m.read|m.read.private}/{eventId}`.
    pub async fn set_receipt(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        kind: ReceiptKind,
        event_id: &EventId,
        thread: ReceiptThread,
    ) -> Result<()> {
        self.require_joined(user_id, room_id).await?;
        let row = self.event_in_room(room_id, event_id).await?;
        if let ReceiptThread::Thread(root) = &thread {
            self.check_in_thread(&row, root).await?;
        }
        self.store_receipt(user_id, room_id, kind, &row, &thread)
            .await
    }

    /// A receipt of any type the receipt endpoint takes: `m.read`, `m.read.private`, or
    /// `m.fully_read` (the read marker, which has no thread).
    pub async fn post_receipt(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        receipt_type: &str,
        event_id: &EventId,
        thread: ReceiptThread,
    ) -> Result<()> {
        let kind = match receipt_type {
            "m.read" => ReceiptKind::Read,
            "m.read.private" => ReceiptKind::ReadPrivate,
            "m.fully_read" if thread == ReceiptThread::Unthreaded => {
                return self
                    .set_read_markers(user_id, room_id, Some(event_id), None, None)
                    .await;
            }
            "m.fully_read" => {
                return Err(Error::InvalidParam(
                    "thread_id is not compatible with m.fully_read".to_owned(),
                ));
            }
            other => {
                return Err(Error::InvalidParam(format!(
                    "Unknown receipt type {other}: expected m.read, m.read.private or m.fully_read"
                )));
            }
        };
        self.set_receipt(user_id, room_id, kind, event_id, thread)
            .await
    }

    /// `POST /rooms/{roomId}/read_markers` and `m.fully_read` receipts: each given marker
    /// and receipt is checked before any is stored.
    pub async fn set_read_markers(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        fully_read: Option<&EventId>,
        read: Option<&EventId>,
        read_private: Option<&EventId>,
    ) -> Result<()> {
        self.require_joined(user_id, room_id).await?;
        let fully_read = match fully_read {
            Some(id) => Some(self.event_in_room(room_id, id).await?),
            None => None,
        };
        let mut receipts = Vec::new();
        for (kind, id) in [
            (ReceiptKind::Read, read),
            (ReceiptKind::ReadPrivate, read_private),
        ] {
            if let Some(id) = id {
                receipts.push((kind, self.event_in_room(room_id, id).await?));
            }
        }
        if let Some(row) = fully_read {
            self.move_fully_read(user_id, room_id, &row).await?;
        }
        for (kind, row) in receipts {
            self.store_receipt(user_id, room_id, kind, &row, &ReceiptThread::Unthreaded)
                .await?;
        }
        Ok(())
    }

    /// The receipts stream's current position.
    pub fn receipts_position(&self) -> i64 {
        self.store.receipts_position()
    }

    pub(super) async fn require_joined(&self, user_id: &UserId, room_id: &RoomId) -> Result<()> {
        if self.membership(room_id, user_id).await?.as_deref() != Some("join") {
            return Err(Error::Forbidden(format!(
                "You are not joined to room {room_id}"
            )));
        }
        Ok(())
    }

    pub(super) async fn event_in_room(
        &self,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<EventRow> {
        self.store
            .event(event_id)
            .await?
            .filter(|row| row.room_id == room_id)
            .ok_or_else(|| Error::NotFound(format!("Event {event_id} not found in {room_id}")))
    }

    /// A receipt for a thread must be for an event of that thread (spec: 400 when "the
    /// `event_id` is not related to the `thread_id`"): one with an `m.thread` relation to the
    /// root, or relating to such an event within [`THREAD_HOPS`] relations. The root itself
    /// is accepted too, as clients acknowledge it from the thread view.
    async fn check_in_thread(&self, row: &EventRow, root: &EventId) -> Result<()> {
        if row.event_id == root {
            return Ok(());
        }
        let not_in_thread =
            || Error::InvalidParam(format!("Event {} is not in thread {root}", row.event_id));
        let mut current = parse(row)?;
        for _ in 0..THREAD_HOPS {
            match relation(&current) {
                Some((parent, rel_type)) if rel_type == THREAD => {
                    return if parent == root {
                        Ok(())
                    } else {
                        Err(not_in_thread())
                    };
                }
                // Replies carry no relation type: they do not put an event in a thread.
                Some((parent, rel_type)) if rel_type != REPLY => {
                    let parent = self.store.event(&parent).await?.ok_or_else(not_in_thread)?;
                    current = parse(&parent)?;
                }
                _ => break,
            }
        }
        Err(not_in_thread())
    }

    async fn store_receipt(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        kind: ReceiptKind,
        row: &EventRow,
        thread: &ReceiptThread,
    ) -> Result<()> {
        let ts = now_ms();
        let stored = self
            .store
            .put_receipt(NewReceipt {
                room_id: room_id.to_owned(),
                receipt_type: kind.as_str().to_owned(),
                user_id: user_id.to_owned(),
                thread_id: thread.stored(),
                event_id: row.event_id.clone(),
                event_stream_ordering: row.stream_ordering,
                ts,
            })
            .await?;
        if stored.is_none() {
            return Ok(());
        }
        // A private receipt is the user's alone; either kind resets their unread counts.
        if kind == ReceiptKind::ReadPrivate {
            self.notifier.wake([user_id]);
            return Ok(());
        }
        self.wake_room(room_id).await?;
        if user_id.server_name() != self.config.server_name {
            return Ok(());
        }
        let mut data = serde_json::json!({ "ts": ts });
        if let Some(thread_id) = thread.stored() {
            data["thread_id"] = thread_id.into();
        }
        let content = serde_json::json!({
            room_id.as_str(): { "m.read": { user_id.as_str(): {
                "event_ids": [row.event_id],
                "data": data,
            } } }
        });
        let servers = self.remote_servers(room_id).await?;
        self.edus
            .to_servers(&servers, "m.receipt", content, None)
            .await
    }

    /// An `m.receipt` EDU of `origin`: each `m.read` receipt of one of its users joined to the
    /// room, for an event this server has, is stored as if the user had sent it here.
    pub async fn receive_read_receipt(
        &self,
        origin: &ruma::ServerName,
        room_id: &RoomId,
        user_id: &UserId,
        event_id: &EventId,
        thread_id: Option<&str>,
    ) -> Result<()> {
        if user_id.server_name() != origin
            || self.membership(room_id, user_id).await?.as_deref() != Some("join")
        {
            return Ok(());
        }
        let Ok(row) = self.event_in_room(room_id, event_id).await else {
            return Ok(());
        };
        let thread = match thread_id {
            None => ReceiptThread::Unthreaded,
            Some("main") => ReceiptThread::Main,
            Some(root) => match EventId::parse(root) {
                Ok(root) => ReceiptThread::Thread(root),
                Err(_) => return Ok(()),
            },
        };
        self.store_receipt(user_id, room_id, ReceiptKind::Read, &row, &thread)
            .await
    }

    /// Moves the `m.fully_read` marker to the event unless it already points at a later one.
    async fn move_fully_read(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        row: &EventRow,
    ) -> Result<()> {
        if let Some(current) = self
            .store
            .account_data(user_id, Some(room_id), FULLY_READ)
            .await?
        {
            let current: JsonValue = serde_json::from_str(&current).unwrap_or_default();
            let current = current
                .get("event_id")
                .and_then(JsonValue::as_str)
                .and_then(|id| OwnedEventId::try_from(id).ok());
            if let Some(current) = current
                && let Some(current) = self.store.event(&current).await?
                && current.stream_ordering >= row.stream_ordering
            {
                return Ok(());
            }
        }
        let content = json!({ "event_id": row.event_id }).to_string();
        self.store
            .set_account_data(user_id, Some(room_id), FULLY_READ, &content)
            .await?;
        self.notifier.wake([user_id]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, owned_event_id, owned_room_id, user_id};

    use crate::store::{NewReceipt, testing::test_store};

    fn receipt(
        user: &OwnedUserId,
        room: &OwnedRoomId,
        thread: Option<&str>,
        event: OwnedEventId,
        position: i64,
    ) -> NewReceipt {
        NewReceipt {
            room_id: room.clone(),
            receipt_type: "m.read".to_owned(),
            user_id: user.clone(),
            thread_id: thread.map(str::to_owned),
            event_id: event,
            event_stream_ordering: position,
            ts: 1_000 + position,
        }
    }

    #[tokio::test]
    async fn receipts_move_forward_only_and_get_stream_positions() {
        let (store, _db) = test_store().await;
        let alice = user_id!("@alice:example.org").to_owned();
        let bob = user_id!("@bob:example.org").to_owned();
        let room = owned_room_id!("!room:example.org");
        let other_room = owned_room_id!("!other:example.org");
        assert_eq!(store.receipts_position(), 0);

        let first = store
            .put_receipt(receipt(&alice, &room, None, owned_event_id!("$e5"), 5))
            .await
            .unwrap()
            .expect("a first receipt is stored");
        // An older or the same event does not move the receipt, nor the stream.
        for (event, position) in [(owned_event_id!("$e3"), 3), (owned_event_id!("$e5"), 5)] {
            let ignored = store
                .put_receipt(receipt(&alice, &room, None, event, position))
                .await
                .unwrap();
            assert_eq!(ignored, None);
        }
        assert_eq!(store.receipts_position(), first);

        // Threads, users and rooms are independent of each other.
        let main = store
            .put_receipt(receipt(
                &alice,
                &room,
                Some("main"),
                owned_event_id!("$e2"),
                2,
            ))
            .await
            .unwrap()
            .expect("the main thread has its own receipt");
        let bob_position = store
            .put_receipt(receipt(&bob, &room, None, owned_event_id!("$e1"), 1))
            .await
            .unwrap()
            .expect("bob has his own receipt");
        store
            .put_receipt(receipt(&alice, &other_room, None, owned_event_id!("$x"), 9))
            .await
            .unwrap()
            .expect("another room has its own receipts");
        let later = store
            .put_receipt(receipt(&alice, &room, None, owned_event_id!("$e7"), 7))
            .await
            .unwrap()
            .expect("a later event moves the receipt");
        assert!(first < main && main < bob_position && bob_position < later);

        let all = store
            .receipts_of_rooms(std::slice::from_ref(&room))
            .await
            .unwrap();
        let summary: Vec<(&str, Option<&str>, &str)> = all
            .iter()
            .map(|r| {
                (
                    r.user_id.as_str(),
                    r.thread_id.as_deref(),
                    r.event_id.as_str(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("@alice:example.org", Some("main"), "$e2"),
                ("@bob:example.org", None, "$e1"),
                ("@alice:example.org", None, "$e7"),
            ]
        );
        // Across rooms: the other room's receipt came between Bob's and the last.
        let since = store.receipts_between(bob_position, later).await.unwrap();
        assert_eq!(since.len(), 2);
        assert_eq!(since[0].room_id, other_room);
        let since = &since[1..];
        assert_eq!(since[0].event_id, "$e7");
        assert_eq!(since[0].stream_position, later);
        assert_eq!(since[0].ts, 1_007);
        assert!(
            store
                .receipts_between(later, later + 10)
                .await
                .unwrap()
                .is_empty()
        );
    }
}
