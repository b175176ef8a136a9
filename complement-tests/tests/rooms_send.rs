//! `PUT /rooms/{roomId}/send/{eventType}/{txnId}` and `GET /rooms/{roomId}/event/{eventId}`:
//! the event as stored, transaction-ID idempotency, the 64 KiB event limit, membership and
//! power-level checks, unknown and malformed room IDs.

use std::time::{SystemTime, UNIX_EPOCH};

use complement_tests::rooms::{chunk, message_bodies, room_path, text, txn_id};
use complement_tests::{Method, TestServer, User, V3, Value, enc, json};

const PASSWORD: &str = "rooms-send-pw";

async fn register(server: &TestServer, name: &str) -> User {
    server.client().register(name, PASSWORD).await
}

fn send_path(room_id: &str, event_type: &str, txn: &str) -> String {
    room_path(room_id, &format!("send/{}/{}", enc(event_type), enc(txn)))
}

fn event_path(room_id: &str, event_id: &str) -> String {
    room_path(room_id, &format!("event/{}", enc(event_id)))
}

/// Alice's public room with Bob joined.
async fn public_room_with_bob(server: &TestServer) -> (User, User, String) {
    let alice = register(server, "alice").await;
    let bob = register(server, "bob").await;
    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join_room(&room_id).await;
    (alice, bob, room_id)
}

/// Every `m.room.message` body in the room, oldest first (one page is enough here).
async fn all_bodies(user: &User, room_id: &str) -> Vec<String> {
    let body = user.messages(room_id, "dir=f&limit=1000").await;
    message_bodies(chunk(&body))
}

fn now_ms() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    u64::try_from(now.as_millis()).expect("milliseconds fit in u64")
}

#[tokio::test]
async fn sent_event_can_be_fetched_with_all_fields() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = public_room_with_bob(&server).await;
    let content = json!({
        "msgtype": "m.text",
        "body": "hello",
        "org.example.extra": { "nested": [1, 2, { "x": null }], "unicode": "🐇 ü" },
    });
    let before = now_ms();
    let resp = alice
        .client
        .put(
            &send_path(&room_id, "m.room.message", &txn_id()),
            content.clone(),
        )
        .await;
    let body = resp.ok();
    let event_id = body["event_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no event_id: {body}"))
        .to_owned();
    assert!(event_id.starts_with('$'), "{body}");

    // Another member reads it back with GET /event.
    let event = bob.client.get(&event_path(&room_id, &event_id)).await.ok();
    assert_eq!(event["event_id"], event_id.as_str(), "{event}");
    assert_eq!(event["type"], "m.room.message", "{event}");
    assert_eq!(event["room_id"], room_id.as_str(), "{event}");
    assert_eq!(event["sender"], alice.user_id.as_str(), "{event}");
    assert_eq!(event["content"], content, "{event}");
    assert!(
        event.get("state_key").is_none(),
        "message with a state_key: {event}"
    );
    let ts = event["origin_server_ts"]
        .as_u64()
        .unwrap_or_else(|| panic!("origin_server_ts is not a timestamp: {event}"));
    assert!(
        ts + 60_000 >= before && ts <= now_ms() + 60_000,
        "origin_server_ts {ts} is not now ({before}): {event}"
    );
    assert!(event["unsigned"].is_object(), "no unsigned object: {event}");

    // The sender sees the same event.
    let own = alice
        .client
        .get(&event_path(&room_id, &event_id))
        .await
        .ok();
    assert_eq!(own["content"], content, "{own}");
    assert_eq!(own["event_id"], event_id.as_str(), "{own}");
}

#[tokio::test]
async fn get_event_unknown_or_not_visible() {
    let server = TestServer::start().await;
    let (alice, _bob, room_id) = public_room_with_bob(&server).await;
    let mallory = register(&server, "mallory").await;
    let event_id = alice.send_text(&room_id, "members only").await;

    alice
        .client
        .get(&event_path(&room_id, "$doesnotexist"))
        .await
        .assert_error(404, "M_NOT_FOUND");
    // The spec answers 404 for "not found or no permission"; Synapse answers 403 to a
    // non-member. Either way the content must not leak.
    let resp = mallory.client.get(&event_path(&room_id, &event_id)).await;
    assert!(
        (resp.status == 404 && resp.errcode() == Some("M_NOT_FOUND"))
            || (resp.status == 403 && resp.errcode() == Some("M_FORBIDDEN")),
        "a non-member read an event: {resp}"
    );
    assert!(!resp.text.contains("members only"), "{resp}");

    // An event is not found through another room's ID.
    let other_room = alice.create_room(json!({})).await;
    alice
        .client
        .get(&event_path(&other_room, &event_id))
        .await
        .assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn same_transaction_id_on_the_same_device_is_idempotent() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let room_id = alice.create_room(json!({})).await;
    let txn = txn_id();
    let path = send_path(&room_id, "m.room.message", &txn);

    let first = alice.client.put(&path, text("once")).await.ok();
    // "Transaction identifiers": a retransmission gets the same response, even with
    // another body.
    let again = alice.client.put(&path, text("once")).await.ok();
    let changed = alice.client.put(&path, text("changed body")).await.ok();
    assert!(first["event_id"].is_string(), "{first}");
    assert_eq!(again["event_id"], first["event_id"], "{again} vs {first}");
    assert_eq!(
        changed["event_id"], first["event_id"],
        "{changed} vs {first}"
    );

    let bodies = all_bodies(&alice, &room_id).await;
    assert_eq!(
        bodies,
        vec!["once".to_owned()],
        "exactly one event expected"
    );
}

#[tokio::test]
async fn same_transaction_id_on_another_path_or_device_is_a_new_event() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let laptop = server.client().login("alice", PASSWORD).await;
    assert_ne!(alice.device_id, laptop.device_id);
    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;
    let other_room = alice.create_room(json!({ "preset": "public_chat" })).await;
    let txn = "shared-txn";

    let phone_event = alice
        .client
        .put(
            &send_path(&room_id, "m.room.message", txn),
            text("from phone"),
        )
        .await
        .ok();
    // "The scope of a transaction ID is for a single device".
    let laptop_event = laptop
        .client
        .put(
            &send_path(&room_id, "m.room.message", txn),
            text("from laptop"),
        )
        .await
        .ok();
    assert_ne!(phone_event["event_id"], laptop_event["event_id"]);
    // ... and a retransmission is identified by the same path: another event type or
    // another room is another request.
    let other_type = alice
        .client
        .put(
            &send_path(&room_id, "org.example.ping", txn),
            json!({ "n": 1 }),
        )
        .await
        .ok();
    let other_room_event = alice
        .client
        .put(
            &send_path(&other_room, "m.room.message", txn),
            text("elsewhere"),
        )
        .await
        .ok();
    assert_ne!(other_type["event_id"], phone_event["event_id"]);
    assert_ne!(other_room_event["event_id"], phone_event["event_id"]);

    assert_eq!(
        all_bodies(&alice, &room_id).await,
        vec!["from phone".to_owned(), "from laptop".to_owned()]
    );
    assert_eq!(
        all_bodies(&alice, &other_room).await,
        vec!["elsewhere".to_owned()]
    );
    let ping = alice
        .client
        .get(&event_path(
            &room_id,
            other_type["event_id"].as_str().unwrap_or_default(),
        ))
        .await
        .ok();
    assert_eq!(ping["type"], "org.example.ping", "{ping}");
    assert_eq!(ping["content"], json!({ "n": 1 }), "{ping}");
}

#[tokio::test]
async fn event_over_64_kib_is_rejected_and_not_stored() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let room_id = alice.create_room(json!({})).await;
    // Size limits: "The complete event MUST NOT be larger than 65536 bytes". The content
    // alone is over that here, yet well within the request body limit.
    let huge = json!({ "msgtype": "m.text", "body": "too big", "pad": "x".repeat(66_000) });
    alice
        .send_event(&room_id, "m.room.message", huge)
        .await
        .assert_error(413, "M_TOO_LARGE");
    // An event that fits is accepted.
    let fits = json!({ "msgtype": "m.text", "body": "fits", "pad": "x".repeat(60_000) });
    let resp = alice.send_event(&room_id, "m.room.message", fits).await;
    resp.assert_status(200);

    assert_eq!(all_bodies(&alice, &room_id).await, vec!["fits".to_owned()]);
}

#[tokio::test]
async fn only_members_can_send() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = public_room_with_bob(&server).await;
    let mallory = register(&server, "mallory").await;

    mallory
        .send_event(&room_id, "m.room.message", text("intruder"))
        .await
        .assert_error(403, "M_FORBIDDEN");
    // An invited user is not joined yet.
    alice.invite_user(&room_id, &mallory.user_id).await;
    mallory
        .send_event(&room_id, "m.room.message", text("invited"))
        .await
        .assert_error(403, "M_FORBIDDEN");
    // A user who left cannot send either.
    bob.send_text(&room_id, "bye").await;
    bob.leave_room(&room_id).await;
    bob.send_event(&room_id, "m.room.message", text("after leaving"))
        .await
        .assert_error(403, "M_FORBIDDEN");

    assert_eq!(all_bodies(&alice, &room_id).await, vec!["bye".to_owned()]);
}

#[tokio::test]
async fn unknown_and_malformed_room_ids() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    // Synapse answers 403 for a room it does not know, the same as for a room the user is not
    // in, so that sending does not reveal which rooms exist.
    let unknown_v11 = format!("!nosuchroom:{}", server.server_name());
    let unknown_v12 = format!("!{}", "A".repeat(43));
    for room_id in [&unknown_v11, &unknown_v12] {
        alice
            .send_event(room_id, "m.room.message", text("hello?"))
            .await
            .assert_error(403, "M_FORBIDDEN");
    }
    // Not a room ID at all (no `!` sigil): the path parameter is invalid.
    for room_id in ["not-a-room", "#alias:localhost", "@user:localhost"] {
        alice
            .send_event(room_id, "m.room.message", text("hello?"))
            .await
            .assert_error(400, "M_INVALID_PARAM");
    }
}

#[tokio::test]
async fn send_needs_a_token_and_a_json_object() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let room_id = alice.create_room(json!({})).await;
    let path = send_path(&room_id, "m.room.message", &txn_id());
    server
        .client()
        .put(&path, text("anonymous"))
        .await
        .assert_error(401, "M_MISSING_TOKEN");
    alice
        .client
        .put(&path, json!(["not", "an", "object"]))
        .await
        .assert_error_in(400, &["M_BAD_JSON", "M_NOT_JSON"]);
    alice
        .client
        .request_bytes(Method::PUT, &path, "{ not json", "application/json")
        .await
        .assert_error(400, "M_NOT_JSON");
    assert!(all_bodies(&alice, &room_id).await.is_empty());
}

#[tokio::test]
async fn power_levels_gate_message_events() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = public_room_with_bob(&server).await;
    let mut power_levels = alice
        .state_content(&room_id, "m.room.power_levels", "")
        .await;
    power_levels["events_default"] = json!(50);
    power_levels["events"]["org.example.open"] = json!(0);
    power_levels["events"]["org.example.locked"] = json!(60);
    power_levels["users"][&bob.user_id] = json!(55);
    alice
        .put_state(&room_id, "m.room.power_levels", "", power_levels)
        .await
        .assert_status(200);

    // Bob (55) passes events_default (50) and the open type, not the locked one (60).
    bob.send_text(&room_id, "bob speaks").await;
    bob.send_event(&room_id, "org.example.open", json!({}))
        .await
        .assert_status(200);
    bob.send_event(&room_id, "org.example.locked", json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");

    // Carol has the users_default (0): only the open type.
    let carol = register(&server, "carol").await;
    carol.join_room(&room_id).await;
    carol
        .send_event(&room_id, "m.room.message", text("carol speaks"))
        .await
        .assert_error(403, "M_FORBIDDEN");
    carol
        .send_event(&room_id, "org.example.open", json!({}))
        .await
        .assert_status(200);

    // The v12 creator is above every level.
    alice
        .send_event(&room_id, "org.example.locked", json!({}))
        .await
        .assert_status(200);
    assert_eq!(
        all_bodies(&alice, &room_id).await,
        vec!["bob speaks".to_owned()]
    );
}

#[tokio::test]
async fn sent_events_show_up_in_messages_in_order() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = public_room_with_bob(&server).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let sender = if i % 2 == 0 { &alice } else { &bob };
        ids.push(sender.send_text(&room_id, &format!("m{i}")).await);
    }
    let body = bob.messages(&room_id, "dir=b&limit=5").await;
    let got: Vec<Value> = chunk(&body).iter().map(|e| e["event_id"].clone()).collect();
    let want: Vec<Value> = ids.iter().rev().map(|id| json!(id)).collect();
    assert_eq!(got, want, "{body}");
    // Unknown endpoint shapes are still refused: /send needs a txnId.
    let resp = alice
        .client
        .put(
            &format!("{V3}/rooms/{}/send/m.room.message", enc(&room_id)),
            text("no txn"),
        )
        .await;
    assert!(
        resp.status == 404 || resp.status == 405,
        "PUT /send without a txnId: {resp}"
    );
}

/// A message is acknowledged only once it is on disk: every message acknowledged to two users
/// sending at once (their writes share commits and log syncs) is there, in each sender's
/// order, after the server is killed without a chance to shut down and is started again. A
/// retry of a transaction made before the restart still returns its event ("Transaction
/// identifiers"), and a new transaction ID still makes a new event.
#[tokio::test]
async fn acknowledged_messages_survive_the_server_being_killed() {
    const EACH: usize = 40;
    let mut server = TestServer::start().await;
    let (alice, bob, room_id) = public_room_with_bob(&server).await;
    let send_all = |user: &User, name: &'static str| {
        let (user, room_id) = (user.clone(), room_id.clone());
        async move {
            for i in 0..EACH {
                user.send_text(&room_id, &format!("{name} {i}")).await;
            }
        }
    };
    tokio::join!(send_all(&alice, "alice"), send_all(&bob, "bob"));
    let before = send_path(&room_id, "m.room.message", &txn_id());
    let first = alice.client.put(&before, text("before")).await.ok();
    server.stop();
    server.run().await;
    let retried = alice.client.put(&before, text("before")).await.ok();
    assert_eq!(
        retried["event_id"], first["event_id"],
        "{retried} vs {first}"
    );
    let after = send_path(&room_id, "m.room.message", &txn_id());
    let new = alice.client.put(&after, text("after")).await.ok();
    assert_ne!(new["event_id"], first["event_id"], "{new}");
    let bodies = all_bodies(&bob, &room_id).await;
    assert_eq!(
        bodies
            .iter()
            .filter(|b| *b == "before" || *b == "after")
            .collect::<Vec<_>>(),
        ["before", "after"],
        "one event per transaction"
    );
    for name in ["alice", "bob"] {
        let prefix = format!("{name} ");
        let sent: Vec<String> = bodies
            .iter()
            .filter(|body| body.starts_with(&prefix))
            .cloned()
            .collect();
        let acknowledged: Vec<String> = (0..EACH).map(|i| format!("{name} {i}")).collect();
        assert_eq!(sent, acknowledged, "{name}'s messages after the restart");
    }
}

#[tokio::test]
async fn event_type_over_255_bytes_is_rejected() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let room_id = alice.create_room(json!({})).await;
    // Size limits: "type MUST NOT exceed 255 bytes" (Synapse: 413 M_TOO_LARGE).
    let too_long = format!("org.example.{}", "t".repeat(244));
    assert_eq!(too_long.len(), 256);
    alice
        .send_event(&room_id, &too_long, json!({}))
        .await
        .assert_error(413, "M_TOO_LARGE");
    let longest = format!("org.example.{}", "t".repeat(243));
    alice
        .send_event(&room_id, &longest, json!({}))
        .await
        .assert_status(200);
    let body = alice.messages(&room_id, "dir=b&limit=1").await;
    assert_eq!(chunk(&body)[0]["type"], longest.as_str(), "{body}");
}
