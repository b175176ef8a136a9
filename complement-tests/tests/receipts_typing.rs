//! Receipts (`POST /rooms/{roomId}/receipt/{receiptType}/{eventId}`), read markers
//! (`POST /rooms/{roomId}/read_markers`) and typing (`PUT /rooms/{roomId}/typing/{userId}`).
//!
//! Receipts and typing notices are read back only through sync, so these tests check what a
//! client sees here: status codes, errors, and the `m.fully_read` room account data.

use complement_tests::rooms::{event_id_of, room_path};
use complement_tests::{TestServer, User, V3, Value, enc, json};

const PASSWORD: &str = "receipts-typing-pw";

async fn register(server: &TestServer, name: &str) -> User {
    server.client().register(name, PASSWORD).await
}

fn receipt_path(room_id: &str, receipt_type: &str, event_id: &str) -> String {
    room_path(
        room_id,
        &format!("receipt/{}/{}", enc(receipt_type), enc(event_id)),
    )
}

fn typing_path(room_id: &str, user_id: &str) -> String {
    room_path(room_id, &format!("typing/{}", enc(user_id)))
}

fn fully_read_path(user: &User, room_id: &str) -> String {
    format!(
        "{V3}/user/{}/rooms/{}/account_data/m.fully_read",
        enc(&user.user_id),
        enc(room_id)
    )
}

/// Alice's public room with Bob joined and three messages from Alice.
async fn room_with_messages(server: &TestServer) -> (User, User, String, Vec<String>) {
    let alice = register(server, "alice").await;
    let bob = register(server, "bob").await;
    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join_room(&room_id).await;
    let mut events = Vec::new();
    for body in ["one", "two", "three"] {
        events.push(alice.send_text(&room_id, body).await);
    }
    (alice, bob, room_id, events)
}

async fn react(user: &User, room_id: &str, target: &str) -> String {
    event_id_of(
        user.send_event(
            room_id,
            "m.reaction",
            json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": target, "key": "👀" } }),
        )
        .await,
    )
}

async fn fully_read(user: &User, room_id: &str) -> Value {
    user.client.get(&fully_read_path(user, room_id)).await.ok()
}

#[tokio::test]
async fn read_receipts_are_accepted_for_joined_users() {
    let server = TestServer::start().await;
    let (alice, bob, room_id, events) = room_with_messages(&server).await;

    for (receipt_type, event) in [
        ("m.read", &events[1]),
        ("m.read.private", &events[2]),
        // An older event than the current receipt is accepted and changes nothing.
        ("m.read", &events[0]),
    ] {
        let body = bob
            .client
            .post(&receipt_path(&room_id, receipt_type, event), json!({}))
            .await
            .ok();
        assert_eq!(body, json!({}), "{receipt_type}");
    }
    // The sender may acknowledge their own events too.
    alice
        .client
        .post(&receipt_path(&room_id, "m.read", &events[2]), json!({}))
        .await
        .assert_status(200);

    let charlie = register(&server, "charlie").await;
    charlie
        .client
        .post(&receipt_path(&room_id, "m.read", &events[2]), json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");

    bob.client
        .post(
            &receipt_path(&room_id, "m.read", "$unknown:localhost"),
            json!({}),
        )
        .await
        .assert_error(404, "M_NOT_FOUND");
    // An event of another room is not an event of this one.
    let other_room = bob.create_room(json!({})).await;
    let elsewhere = bob.send_text(&other_room, "elsewhere").await;
    bob.client
        .post(&receipt_path(&room_id, "m.read", &elsewhere), json!({}))
        .await
        .assert_error(404, "M_NOT_FOUND");

    bob.client
        .post(&receipt_path(&room_id, "m.bogus", &events[2]), json!({}))
        .await
        .assert_error(400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn threaded_receipts_are_validated() {
    let server = TestServer::start().await;
    let (alice, bob, room_id, events) = room_with_messages(&server).await;
    let root = &events[0];
    let reply = event_id_of(
        alice
            .send_event(
                &room_id,
                "m.room.message",
                json!({
                    "msgtype": "m.text",
                    "body": "in the thread",
                    "m.relates_to": { "rel_type": "m.thread", "event_id": root },
                }),
            )
            .await,
    );

    for (event, thread_id) in [(&reply, root.as_str()), (root, root), (&events[1], "main")] {
        bob.client
            .post(
                &receipt_path(&room_id, "m.read", event),
                json!({ "thread_id": thread_id }),
            )
            .await
            .assert_status(200);
    }
    bob.client
        .post(
            &receipt_path(&room_id, "m.read.private", &reply),
            json!({ "thread_id": root }),
        )
        .await
        .assert_status(200);
    // A reaction to a thread event is in the thread; a reaction to the root is not (the root
    // and its non-thread relations are in the main timeline).
    let in_thread = react(&alice, &room_id, &reply).await;
    bob.client
        .post(
            &receipt_path(&room_id, "m.read", &in_thread),
            json!({ "thread_id": root }),
        )
        .await
        .assert_status(200);
    let on_root = react(&alice, &room_id, root).await;
    bob.client
        .post(
            &receipt_path(&room_id, "m.read", &on_root),
            json!({ "thread_id": root }),
        )
        .await
        .assert_error(400, "M_INVALID_PARAM");

    // Not "main" nor an event ID, empty, or not a string.
    for thread_id in [json!("bogus"), json!("")] {
        bob.client
            .post(
                &receipt_path(&room_id, "m.read", &events[1]),
                json!({ "thread_id": thread_id }),
            )
            .await
            .assert_error(400, "M_INVALID_PARAM");
    }
    bob.client
        .post(
            &receipt_path(&room_id, "m.read", &events[1]),
            json!({ "thread_id": 42 }),
        )
        .await
        .assert_status(400);
    // An event outside the thread named.
    bob.client
        .post(
            &receipt_path(&room_id, "m.read", &events[2]),
            json!({ "thread_id": root }),
        )
        .await
        .assert_error(400, "M_INVALID_PARAM");
    // The fully read marker is not per thread.
    bob.client
        .post(
            &receipt_path(&room_id, "m.fully_read", &events[1]),
            json!({ "thread_id": "main" }),
        )
        .await
        .assert_error(400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn fully_read_marker_is_room_account_data_and_only_moves_forward() {
    let server = TestServer::start().await;
    let (_alice, bob, room_id, events) = room_with_messages(&server).await;

    bob.client
        .get(&fully_read_path(&bob, &room_id))
        .await
        .assert_error(404, "M_NOT_FOUND");

    // `m.fully_read` through the receipt endpoint is the read marker.
    bob.client
        .post(
            &receipt_path(&room_id, "m.fully_read", &events[1]),
            json!({}),
        )
        .await
        .assert_status(200);
    assert_eq!(
        fully_read(&bob, &room_id).await,
        json!({ "event_id": events[1] })
    );

    let body = bob
        .client
        .post(
            &room_path(&room_id, "read_markers"),
            json!({ "m.fully_read": events[2], "m.read": events[2], "m.read.private": events[1] }),
        )
        .await
        .ok();
    assert_eq!(body, json!({}));
    assert_eq!(
        fully_read(&bob, &room_id).await,
        json!({ "event_id": events[2] })
    );

    // Moving the marker back to an older event is accepted and ignored.
    bob.client
        .post(
            &room_path(&room_id, "read_markers"),
            json!({ "m.fully_read": events[0] }),
        )
        .await
        .assert_status(200);
    assert_eq!(
        fully_read(&bob, &room_id).await,
        json!({ "event_id": events[2] })
    );

    // Nothing to set is fine; an unknown event fails the whole request.
    bob.client
        .post(&room_path(&room_id, "read_markers"), json!({}))
        .await
        .assert_status(200);
    bob.client
        .post(
            &room_path(&room_id, "read_markers"),
            json!({ "m.fully_read": events[0], "m.read": "$unknown:localhost" }),
        )
        .await
        .assert_error(404, "M_NOT_FOUND");
    assert_eq!(
        fully_read(&bob, &room_id).await,
        json!({ "event_id": events[2] })
    );

    // The marker is the server's to set: not through the generic account data API.
    bob.client
        .put(
            &fully_read_path(&bob, &room_id),
            json!({ "event_id": events[0] }),
        )
        .await
        .assert_status(405);

    let charlie = register(&server, "charlie").await;
    charlie
        .client
        .post(
            &room_path(&room_id, "read_markers"),
            json!({ "m.fully_read": events[2] }),
        )
        .await
        .assert_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn typing_is_only_for_yourself_in_rooms_you_joined() {
    let server = TestServer::start().await;
    let (alice, bob, room_id, _) = room_with_messages(&server).await;

    for body in [
        json!({ "typing": true, "timeout": 30_000 }),
        // Renewing, and a very long timeout (capped by the server).
        json!({ "typing": true, "timeout": 30_000 }),
        json!({ "typing": true, "timeout": 86_400_000 }),
        json!({ "typing": false }),
        // Stopping when not typing is fine too.
        json!({ "typing": false }),
    ] {
        let resp = bob
            .client
            .put(&typing_path(&room_id, &bob.user_id), body.clone())
            .await;
        assert_eq!(resp.ok(), json!({}), "{body}");
    }

    bob.client
        .put(
            &typing_path(&room_id, &alice.user_id),
            json!({ "typing": true, "timeout": 30_000 }),
        )
        .await
        .assert_error(403, "M_FORBIDDEN");

    let charlie = register(&server, "charlie").await;
    charlie
        .client
        .put(
            &typing_path(&room_id, &charlie.user_id),
            json!({ "typing": true, "timeout": 30_000 }),
        )
        .await
        .assert_error(403, "M_FORBIDDEN");

    // Typing without a timeout, or without saying whether.
    for body in [json!({ "typing": true }), json!({ "timeout": 1000 })] {
        bob.client
            .put(&typing_path(&room_id, &bob.user_id), body.clone())
            .await
            .assert_status(400);
    }

    // After leaving, typing is refused.
    bob.leave_room(&room_id).await;
    bob.client
        .put(
            &typing_path(&room_id, &bob.user_id),
            json!({ "typing": true, "timeout": 30_000 }),
        )
        .await
        .assert_error(403, "M_FORBIDDEN");
}
