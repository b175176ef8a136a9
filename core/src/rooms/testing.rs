//! A room engine over a test database, for unit tests that need stored events: one server
//! `a.test`, its users created on first use.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId, events::TimelineEventType};
use serde_json::{Value as JsonValue, json};

use super::{CreateRoom, Rooms, Transaction};
use crate::{
    Config,
    events::{NewEvent, Pdu},
    federation::edus::EduQueue,
    keys::SigningKey,
    ratelimit::RateLimiter,
    store::testing::{TestDatabase, test_store},
    sync::Notifier,
    users::{PushRules, Users},
};

pub(crate) struct TestRooms {
    pub rooms: Rooms,
    pub users: Users,
    txn: AtomicU64,
    _db: TestDatabase,
    _dir: tempfile::TempDir,
}

/// A user of the test server.
pub(crate) fn user(localpart: &str) -> OwnedUserId {
    UserId::parse(format!("@{localpart}:a.test")).expect("valid user ID")
}

impl TestRooms {
    pub async fn start() -> Self {
        let (store, db) = test_store().await;
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = Arc::new(Config::parse("server_name = \"a.test\"").expect("valid config"));
        let key =
            SigningKey::load_or_generate(&dir.path().join("signing.key")).expect("a signing key");
        let notifier = Arc::new(Notifier::default());
        let push_rules = Arc::new(PushRules::new(store.clone()));
        let edus = Arc::new(EduQueue::new(store.clone(), config.server_name.clone()));
        let users = Users::new(
            store.clone(),
            config.clone(),
            Arc::new(RateLimiter::new(config.rate_limits.clone())),
            notifier.clone(),
            push_rules.clone(),
            edus.clone(),
        );
        let rooms = Rooms::new(store, config, Arc::new(key), notifier, push_rules, edus)
            .await
            .expect("rooms start");
        Self {
            rooms,
            users,
            txn: AtomicU64::new(0),
            _db: db,
            _dir: dir,
        }
    }

    /// A public room of Alice's that the others joined, in that order.
    pub async fn room(&self, others: &[&OwnedUserId]) -> OwnedRoomId {
        let request = CreateRoom {
            preset: Some("public_chat".to_owned()),
            ..CreateRoom::default()
        };
        let room_id = self
            .rooms
            .create_room(&user("alice"), request)
            .await
            .expect("room created");
        for other in others {
            self.rooms
                .join(other, &room_id, None)
                .await
                .expect("joined");
        }
        room_id
    }

    pub async fn send(
        &self,
        sender: &UserId,
        room_id: &RoomId,
        content: JsonValue,
    ) -> OwnedEventId {
        let transaction = Transaction {
            device_id: "DEVICE".into(),
            scope: "send".to_owned(),
            txn_id: self.txn.fetch_add(1, Ordering::Relaxed).to_string(),
        };
        self.rooms
            .send_message(
                sender,
                room_id,
                TimelineEventType::RoomMessage,
                content,
                &transaction,
            )
            .await
            .expect("message sent")
    }

    /// The event `sender` would add on `prev_events` (the room's latest events if `None`),
    /// built and signed but neither authorized against the current state nor stored: what
    /// another server's copy of the room sends here.
    pub async fn unsent(
        &self,
        sender: &UserId,
        room_id: &RoomId,
        new: NewEvent,
        prev_events: Option<Vec<OwnedEventId>>,
    ) -> Arc<Pdu> {
        let mut room = self
            .rooms
            .lock(room_id)
            .await
            .expect("a known room")
            .clone()
            .expect("a loaded room");
        if let Some(prev_events) = prev_events {
            room.extremities = prev_events;
        }
        let (pdu, _) = self
            .rooms
            .append(&mut room, sender, new, None)
            .expect("an event allowed by the current state");
        pdu
    }

    pub async fn text(&self, sender: &UserId, room_id: &RoomId, body: &str) -> OwnedEventId {
        self.send(
            sender,
            room_id,
            json!({ "msgtype": "m.text", "body": body }),
        )
        .await
    }
}
