//! Room state: `PUT /rooms/{roomId}/state/{eventType}/{stateKey}` (with and without the
//! state key), `GET /state`, `GET /state/{eventType}/{stateKey}` (and `?format=event`), the
//! power-level and state-key rules that apply, v12 creator rules, and what a former member
//! still sees.

use complement_tests::rooms::{room_path, state_path};
use complement_tests::{TestServer, User, V3, Value, enc, json};

const PASSWORD: &str = "rooms-state-pw";

async fn register(server: &TestServer, name: &str) -> User {
    server.client().register(name, PASSWORD).await
}

/// Alice's public room with Bob joined (Bob has the default power level 0).
async fn public_room_with_bob(server: &TestServer) -> (User, User, String) {
    let alice = register(server, "alice").await;
    let bob = register(server, "bob").await;
    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join_room(&room_id).await;
    (alice, bob, room_id)
}

async fn full_state(user: &User, room_id: &str) -> Vec<Value> {
    let body = user.client.get(&room_path(room_id, "state")).await.ok();
    body.as_array()
        .unwrap_or_else(|| panic!("GET /state is not an array: {body}"))
        .clone()
}

fn find<'a>(state: &'a [Value], event_type: &str, state_key: &str) -> Option<&'a Value> {
    state
        .iter()
        .find(|e| e["type"] == event_type && e["state_key"] == state_key)
}

/// Sets `user_id`'s power level with Alice's (the creator's) power.
async fn set_power(alice: &User, room_id: &str, user_id: &str, level: i64) {
    let mut power_levels = alice
        .state_content(room_id, "m.room.power_levels", "")
        .await;
    power_levels["users"][user_id] = json!(level);
    alice
        .put_state(room_id, "m.room.power_levels", "", power_levels)
        .await
        .assert_status(200);
}

#[tokio::test]
async fn state_round_trip_with_and_without_state_key() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = public_room_with_bob(&server).await;

    // room_state.yaml / rooms.yaml: the state key "Defaults to the empty string. When an
    // empty string, the trailing slash on this endpoint is optional."
    let no_slash = format!("{V3}/rooms/{}/state/m.room.topic", enc(&room_id));
    let slash = format!("{no_slash}/");
    let resp = alice
        .client
        .put(&no_slash, json!({ "topic": "first" }))
        .await
        .ok();
    let first_id = resp["event_id"].as_str().unwrap_or_default().to_owned();
    assert!(first_id.starts_with('$'), "{resp}");
    assert_eq!(
        bob.client.get(&no_slash).await.ok(),
        json!({ "topic": "first" })
    );
    assert_eq!(
        bob.client.get(&slash).await.ok(),
        json!({ "topic": "first" })
    );

    // With the trailing slash, overwriting the same (type, state_key).
    let resp = alice
        .client
        .put(&slash, json!({ "topic": "second" }))
        .await
        .ok();
    let second_id = resp["event_id"].as_str().unwrap_or_default().to_owned();
    assert!(second_id.starts_with('$'), "{resp}");
    assert_ne!(second_id, first_id);
    assert_eq!(
        bob.client.get(&no_slash).await.ok(),
        json!({ "topic": "second" })
    );
    assert_eq!(
        bob.client.get(&slash).await.ok(),
        json!({ "topic": "second" })
    );

    // A non-empty state key is a separate entry.
    alice
        .set_state(&room_id, "org.example.thing", "k1", json!({ "v": 1 }))
        .await;
    alice
        .set_state(&room_id, "org.example.thing", "k2", json!({ "v": 2 }))
        .await;
    assert_eq!(
        bob.state_content(&room_id, "org.example.thing", "k1").await,
        json!({ "v": 1 })
    );
    assert_eq!(
        bob.state_content(&room_id, "org.example.thing", "k2").await,
        json!({ "v": 2 })
    );

    // GET /state has each entry once, with the latest content.
    let state = full_state(&bob, &room_id).await;
    let topics: Vec<&Value> = state
        .iter()
        .filter(|e| e["type"] == "m.room.topic")
        .collect();
    assert_eq!(topics.len(), 1, "{state:#?}");
    assert_eq!(topics[0]["content"]["topic"], "second", "{state:#?}");
    assert_eq!(topics[0]["event_id"], second_id.as_str(), "{state:#?}");
    assert_eq!(topics[0]["sender"], alice.user_id.as_str(), "{state:#?}");
    assert!(
        find(&state, "org.example.thing", "k1").is_some(),
        "{state:#?}"
    );
    assert!(
        find(&state, "org.example.thing", "k2").is_some(),
        "{state:#?}"
    );
    for event in &state {
        assert!(event["state_key"].is_string(), "{event}");
        assert!(event["event_id"].is_string(), "{event}");
        assert_eq!(event["room_id"], room_id.as_str(), "{event}");
    }
}

#[tokio::test]
async fn state_format_event_returns_the_whole_event() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = public_room_with_bob(&server).await;
    let event_id = alice
        .set_state(&room_id, "m.room.name", "", json!({ "name": "Room" }))
        .await;
    // GET /state/{eventType}/{stateKey}: `format=event` (v1.16) returns the client event.
    let path = format!("{}?format=event", state_path(&room_id, "m.room.name", ""));
    let event = bob.client.get(&path).await.ok();
    assert_eq!(event["event_id"], event_id.as_str(), "{event}");
    assert_eq!(event["type"], "m.room.name", "{event}");
    assert_eq!(event["state_key"], "", "{event}");
    assert_eq!(event["sender"], alice.user_id.as_str(), "{event}");
    assert_eq!(event["room_id"], room_id.as_str(), "{event}");
    assert_eq!(event["content"], json!({ "name": "Room" }), "{event}");
    assert!(event["origin_server_ts"].is_u64(), "{event}");
    // format=content is the default.
    let path = format!("{}?format=content", state_path(&room_id, "m.room.name", ""));
    assert_eq!(bob.client.get(&path).await.ok(), json!({ "name": "Room" }));
}

#[tokio::test]
async fn absent_state_is_not_found() {
    let server = TestServer::start().await;
    let (alice, _bob, room_id) = public_room_with_bob(&server).await;
    alice
        .client
        .get(&state_path(&room_id, "org.example.never", ""))
        .await
        .assert_error(404, "M_NOT_FOUND");
    alice
        .set_state(&room_id, "org.example.keyed", "present", json!({}))
        .await;
    alice
        .client
        .get(&state_path(&room_id, "org.example.keyed", "absent"))
        .await
        .assert_error(404, "M_NOT_FOUND");
    alice
        .client
        .get(&state_path(&room_id, "org.example.keyed", ""))
        .await
        .assert_error(404, "M_NOT_FOUND");
    // An empty content is present, not absent.
    assert_eq!(
        alice
            .state_content(&room_id, "org.example.keyed", "present")
            .await,
        json!({})
    );
}

#[tokio::test]
async fn non_members_cannot_read_or_write_state() {
    let server = TestServer::start().await;
    let (alice, _bob, room_id) = public_room_with_bob(&server).await;
    let mallory = register(&server, "mallory").await;
    alice
        .set_state(&room_id, "m.room.name", "", json!({ "name": "Secret" }))
        .await;

    // rooms.yaml: 403 when "You aren't a member of the room and weren't previously a
    // member of the room".
    mallory
        .client
        .get(&room_path(&room_id, "state"))
        .await
        .assert_error(403, "M_FORBIDDEN");
    mallory
        .client
        .get(&state_path(&room_id, "m.room.name", ""))
        .await
        .assert_error(403, "M_FORBIDDEN");
    mallory
        .put_state(&room_id, "m.room.name", "", json!({ "name": "Pwned" }))
        .await
        .assert_error(403, "M_FORBIDDEN");
    assert_eq!(
        alice.state_content(&room_id, "m.room.name", "").await,
        json!({ "name": "Secret" })
    );
}

#[tokio::test]
async fn power_levels_gate_state_events() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = public_room_with_bob(&server).await;

    // Bob has 0: below state_default (50) and the m.room.name level (50).
    bob.put_state(&room_id, "m.room.name", "", json!({ "name": "Bob's" }))
        .await
        .assert_error(403, "M_FORBIDDEN");
    bob.put_state(&room_id, "org.example.setting", "", json!({ "x": 1 }))
        .await
        .assert_error(403, "M_FORBIDDEN");
    alice
        .client
        .get(&state_path(&room_id, "m.room.name", ""))
        .await
        .assert_error(404, "M_NOT_FOUND");

    set_power(&alice, &room_id, &bob.user_id, 50).await;
    bob.set_state(&room_id, "m.room.name", "", json!({ "name": "Bob's" }))
        .await;
    bob.set_state(&room_id, "org.example.setting", "", json!({ "x": 1 }))
        .await;
    assert_eq!(
        alice.state_content(&room_id, "m.room.name", "").await,
        json!({ "name": "Bob's" })
    );

    // Power levels themselves need 100 by default.
    let mut power_levels = alice
        .state_content(&room_id, "m.room.power_levels", "")
        .await;
    power_levels["ban"] = json!(10);
    bob.put_state(&room_id, "m.room.power_levels", "", power_levels)
        .await
        .assert_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn users_cannot_raise_themselves_above_their_own_level() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = public_room_with_bob(&server).await;
    let carol = register(&server, "carol").await;
    carol.join_room(&room_id).await;
    // Bob may send power levels (events level 50 here) but holds only 50 himself.
    let mut power_levels = alice
        .state_content(&room_id, "m.room.power_levels", "")
        .await;
    power_levels["events"]["m.room.power_levels"] = json!(50);
    power_levels["users"][&bob.user_id] = json!(50);
    alice
        .put_state(&room_id, "m.room.power_levels", "", power_levels.clone())
        .await
        .assert_status(200);

    // Auth rules 10.10: no new value above the sender's own level.
    let mut raise_self = power_levels.clone();
    raise_self["users"][&bob.user_id] = json!(100);
    bob.put_state(&room_id, "m.room.power_levels", "", raise_self)
        .await
        .assert_error(403, "M_FORBIDDEN");
    let mut raise_carol = power_levels.clone();
    raise_carol["users"][&carol.user_id] = json!(75);
    bob.put_state(&room_id, "m.room.power_levels", "", raise_carol)
        .await
        .assert_error(403, "M_FORBIDDEN");
    // Up to his own level is fine.
    let mut ok = power_levels.clone();
    ok["users"][&carol.user_id] = json!(50);
    bob.put_state(&room_id, "m.room.power_levels", "", ok)
        .await
        .assert_status(200);
    let got = alice
        .state_content(&room_id, "m.room.power_levels", "")
        .await;
    assert_eq!(got["users"][&carol.user_id], 50, "{got}");
    assert_eq!(got["users"][&bob.user_id], 50, "{got}");
}

#[tokio::test]
async fn v12_creators_cannot_be_listed_in_power_levels() {
    let server = TestServer::start().await;
    let (alice, _bob, room_id) = public_room_with_bob(&server).await;
    let power_levels = alice
        .state_content(&room_id, "m.room.power_levels", "")
        .await;
    // Rooms v12 auth rule 10.4: `users` must not contain a creator.
    let mut with_creator = power_levels.clone();
    with_creator["users"][&alice.user_id] = json!(100);
    alice
        .put_state(&room_id, "m.room.power_levels", "", with_creator)
        .await
        .assert_error(403, "M_FORBIDDEN");
    assert_eq!(
        alice
            .state_content(&room_id, "m.room.power_levels", "")
            .await,
        power_levels
    );

    // In a v11 room the creator is an ordinary entry and may set it.
    let v11 = alice
        .create_room(json!({ "room_version": "11", "preset": "public_chat" }))
        .await;
    let mut levels = alice.state_content(&v11, "m.room.power_levels", "").await;
    assert_eq!(levels["users"][&alice.user_id], 100, "{levels}");
    levels["users"][&alice.user_id] = json!(90);
    alice
        .put_state(&v11, "m.room.power_levels", "", levels)
        .await
        .assert_status(200);
    let got = alice.state_content(&v11, "m.room.power_levels", "").await;
    assert_eq!(got["users"][&alice.user_id], 90, "{got}");
}

#[tokio::test]
async fn state_keys_naming_other_users_are_reserved() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = public_room_with_bob(&server).await;
    set_power(&alice, &room_id, &bob.user_id, 50).await;
    // Auth rule 9: a state_key starting with `@` must match the sender.
    bob.put_state(
        &room_id,
        "org.example.profile",
        &alice.user_id,
        json!({ "x": 1 }),
    )
    .await
    .assert_error(403, "M_FORBIDDEN");
    bob.set_state(
        &room_id,
        "org.example.profile",
        &bob.user_id,
        json!({ "x": 2 }),
    )
    .await;
    assert_eq!(
        alice
            .state_content(&room_id, "org.example.profile", &bob.user_id)
            .await,
        json!({ "x": 2 })
    );
    alice
        .client
        .get(&state_path(&room_id, "org.example.profile", &alice.user_id))
        .await
        .assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn member_state_key_must_be_a_user_id() {
    let server = TestServer::start().await;
    let (alice, _bob, room_id) = public_room_with_bob(&server).await;
    for key in ["not-a-user", "", "@"] {
        let resp = alice
            .put_state(
                &room_id,
                "m.room.member",
                key,
                json!({ "membership": "join" }),
            )
            .await;
        resp.assert_error_in(400, &["M_INVALID_PARAM", "M_BAD_JSON"]);
    }
    // Membership through the state endpoint works for a valid key (here: Alice's own
    // display name change).
    alice
        .set_state(
            &room_id,
            "m.room.member",
            &alice.user_id,
            json!({ "membership": "join", "displayname": "Alice in room" }),
        )
        .await;
    let content = alice
        .state_content(&room_id, "m.room.member", &alice.user_id)
        .await;
    assert_eq!(content["displayname"], "Alice in room", "{content}");
    assert_eq!(content["membership"], "join", "{content}");
}

#[tokio::test]
async fn state_over_the_size_limits_is_rejected() {
    let server = TestServer::start().await;
    let (alice, _bob, room_id) = public_room_with_bob(&server).await;
    alice
        .put_state(
            &room_id,
            "org.example.big",
            "",
            json!({ "blob": "x".repeat(66_000) }),
        )
        .await
        .assert_error(413, "M_TOO_LARGE");
    alice
        .client
        .get(&state_path(&room_id, "org.example.big", ""))
        .await
        .assert_error(404, "M_NOT_FOUND");
    // Size limits: "state_key MUST NOT exceed 255 bytes", "type MUST NOT exceed 255 bytes".
    // Synapse answers 413 M_TOO_LARGE.
    let long_key = "k".repeat(256);
    alice
        .put_state(&room_id, "org.example.keyed", &long_key, json!({}))
        .await
        .assert_error_in(413, &["M_TOO_LARGE"]);
    let long_type = format!("org.example.{}", "t".repeat(244));
    alice
        .put_state(&room_id, &long_type, "", json!({}))
        .await
        .assert_error_in(413, &["M_TOO_LARGE"]);
    // 255 bytes is still allowed.
    let max_key = "k".repeat(255);
    alice
        .set_state(
            &room_id,
            "org.example.keyed",
            &max_key,
            json!({ "ok": true }),
        )
        .await;
}

#[tokio::test]
async fn former_member_sees_state_as_it_was_when_leaving() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = public_room_with_bob(&server).await;
    alice
        .set_state(&room_id, "m.room.name", "", json!({ "name": "Before" }))
        .await;
    bob.leave_room(&room_id).await;
    alice
        .set_state(&room_id, "m.room.name", "", json!({ "name": "After" }))
        .await;
    alice
        .set_state(&room_id, "org.example.later", "", json!({}))
        .await;

    // rooms.yaml: "If the user has left the room then the state is taken from the state of
    // the room when they left."
    assert_eq!(
        bob.state_content(&room_id, "m.room.name", "").await,
        json!({ "name": "Before" })
    );
    let state = full_state(&bob, &room_id).await;
    let name = find(&state, "m.room.name", "").unwrap_or_else(|| panic!("{state:#?}"));
    assert_eq!(name["content"]["name"], "Before", "{name}");
    assert!(
        find(&state, "org.example.later", "").is_none(),
        "{state:#?}"
    );
    let own = find(&state, "m.room.member", &bob.user_id).unwrap_or_else(|| panic!("{state:#?}"));
    assert_eq!(own["content"]["membership"], "leave", "{own}");
    // But they can no longer change it.
    bob.put_state(&room_id, "m.room.name", "", json!({ "name": "Ghost" }))
        .await
        .assert_error(403, "M_FORBIDDEN");
    assert_eq!(
        alice.state_content(&room_id, "m.room.name", "").await,
        json!({ "name": "After" })
    );
}
