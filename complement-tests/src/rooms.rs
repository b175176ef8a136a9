//! Room helpers shared by the room tests: paths, transaction IDs and thin wrappers over the
//! room endpoints that assert success, so that a test spells out only what it is about.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use crate::client::{Response, User};
use crate::util::enc;
use crate::{TestServer, V3};

static TXN_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A transaction ID not used before by this test process.
pub fn txn_id() -> String {
    format!("t{}", TXN_COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// `/_matrix/client/v3/rooms/{roomId}/{rest}` with the room ID percent-encoded (`rest` as is).
pub fn room_path(room_id: &str, rest: &str) -> String {
    format!("{V3}/rooms/{}/{rest}", enc(room_id))
}

/// `GET /_matrix/client/v1/rooms/{roomId}/hierarchy` with `query` (`""` or `"?..."`).
pub fn hierarchy_path(room_id: &str, query: &str) -> String {
    format!("/_matrix/client/v1/rooms/{}/hierarchy{query}", enc(room_id))
}

/// The room IDs of a `/hierarchy` page, in order.
pub fn hierarchy_room_ids(page: &Value) -> Vec<String> {
    page["rooms"]
        .as_array()
        .unwrap_or_else(|| panic!("no rooms in {page}"))
        .iter()
        .map(|room| room["room_id"].as_str().expect("room_id").to_owned())
        .collect()
}

/// `/rooms/{roomId}/state/{eventType}/{stateKey}`, both encoded. For the empty state key the
/// path ends with the event type: the spec makes the trailing slash optional then, and the room
/// tests test both spellings explicitly where that is the point.
pub fn state_path(room_id: &str, event_type: &str, state_key: &str) -> String {
    if state_key.is_empty() {
        room_path(room_id, &format!("state/{}", enc(event_type)))
    } else {
        room_path(
            room_id,
            &format!("state/{}/{}", enc(event_type), enc(state_key)),
        )
    }
}

/// Alice's public room with Bob joined, both registered with `password`.
pub async fn alice_and_bob_room(server: &TestServer, password: &str) -> (User, User, String) {
    let alice = server.client().register("alice", password).await;
    let bob = server.client().register("bob", password).await;
    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join_room(&room_id).await;
    (alice, bob, room_id)
}

/// The `m.text` content of a message with this body.
pub fn text(body: &str) -> Value {
    json!({ "msgtype": "m.text", "body": body })
}

/// The `chunk` array of a `/messages` or `/members` response.
#[track_caller]
pub fn chunk(body: &Value) -> &Vec<Value> {
    body["chunk"]
        .as_array()
        .unwrap_or_else(|| panic!("no chunk array in {body}"))
}

/// The bodies of the `m.room.message` events in `events`, in order.
pub fn message_bodies(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

impl User {
    /// `POST /createRoom` with `body`; asserts 200 and returns the room ID.
    pub async fn create_room(&self, body: Value) -> String {
        let resp = self.client.post(&format!("{V3}/createRoom"), body).await;
        let json = resp.ok();
        json["room_id"]
            .as_str()
            .unwrap_or_else(|| panic!("createRoom without a room_id string: {json}"))
            .to_owned()
    }

    /// `PUT /rooms/{roomId}/send/{eventType}/{txnId}` with a fresh transaction ID.
    pub async fn send_event(&self, room_id: &str, event_type: &str, content: Value) -> Response {
        let path = room_path(room_id, &format!("send/{}/{}", enc(event_type), txn_id()));
        self.client.put(&path, content).await
    }

    /// Sends an `m.text` message; asserts 200 and returns its event ID.
    pub async fn send_text(&self, room_id: &str, body: &str) -> String {
        let resp = self.send_event(room_id, "m.room.message", text(body)).await;
        event_id_of(resp)
    }

    /// `PUT /rooms/{roomId}/state/{eventType}/{stateKey}`.
    pub async fn put_state(
        &self,
        room_id: &str,
        event_type: &str,
        state_key: &str,
        content: Value,
    ) -> Response {
        self.client
            .put(&state_path(room_id, event_type, state_key), content)
            .await
    }

    /// Sets a state event; asserts 200 and returns its event ID.
    pub async fn set_state(
        &self,
        room_id: &str,
        event_type: &str,
        state_key: &str,
        content: Value,
    ) -> String {
        event_id_of(
            self.put_state(room_id, event_type, state_key, content)
                .await,
        )
    }

    /// The content of a state event, asserting 200.
    pub async fn state_content(&self, room_id: &str, event_type: &str, state_key: &str) -> Value {
        self.client
            .get(&state_path(room_id, event_type, state_key))
            .await
            .ok()
    }

    /// `user_id`'s membership in the room as this user sees it (`None` when there is no
    /// member event); asserts the state request itself is allowed.
    pub async fn membership_of(&self, room_id: &str, user_id: &str) -> Option<String> {
        let resp = self
            .client
            .get(&state_path(room_id, "m.room.member", user_id))
            .await;
        if resp.status == 404 {
            return None;
        }
        let content = resp.ok();
        Some(
            content["membership"]
                .as_str()
                .unwrap_or_else(|| panic!("member event without membership: {content}"))
                .to_owned(),
        )
    }

    /// `POST /rooms/{roomId}/join`; asserts 200 with the room ID.
    pub async fn join_room(&self, room_id: &str) {
        let body = self
            .client
            .post(&room_path(room_id, "join"), json!({}))
            .await
            .ok();
        assert_eq!(body["room_id"], room_id, "{body}");
    }

    /// `POST /rooms/{roomId}/invite`; asserts 200.
    pub async fn invite_user(&self, room_id: &str, user_id: &str) {
        self.client
            .post(&room_path(room_id, "invite"), json!({ "user_id": user_id }))
            .await
            .assert_status(200);
    }

    /// `POST /rooms/{roomId}/leave`; asserts 200.
    pub async fn leave_room(&self, room_id: &str) {
        self.client
            .post(&room_path(room_id, "leave"), json!({}))
            .await
            .assert_status(200);
    }

    /// `GET /rooms/{roomId}/messages?{query}`; asserts 200 and returns the body.
    pub async fn messages(&self, room_id: &str, query: &str) -> Value {
        self.client
            .get(&room_path(room_id, &format!("messages?{query}")))
            .await
            .ok()
    }

    /// The room IDs of `GET /joined_rooms`.
    pub async fn joined_rooms(&self) -> Vec<String> {
        let body = self.client.get(&format!("{V3}/joined_rooms")).await.ok();
        body["joined_rooms"]
            .as_array()
            .unwrap_or_else(|| panic!("no joined_rooms array: {body}"))
            .iter()
            .map(|r| {
                r.as_str()
                    .unwrap_or_else(|| panic!("non-string room ID in {body}"))
                    .to_owned()
            })
            .collect()
    }
}

/// The `event_id` of a successful send; asserts 200 and the `$` sigil.
#[track_caller]
pub fn event_id_of(resp: Response) -> String {
    let body = resp.ok();
    let event_id = body["event_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no event_id string: {body}"))
        .to_owned();
    assert!(event_id.starts_with('$'), "event ID without `$`: {body}");
    event_id
}
