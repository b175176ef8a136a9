//! `POST /createRoom`: room versions 10/11/12 and the v12 room ID, presets, name and topic,
//! invites (`is_direct`, `trusted_private_chat`), `initial_state`, `creation_content`,
//! `power_level_content_override`, unsupported versions and oversized events.
//!
//! Everything is checked through what a client reads back: `GET /state`,
//! `GET /state/{type}/{key}`, `/members`, `/joined_rooms`, and what the room then allows.

use complement_tests::rooms::{room_path, state_path, text};
use complement_tests::{Response, TestServer, User, V3, Value, enc, json};

const PASSWORD: &str = "rooms-create-pw";

async fn register(server: &TestServer, name: &str) -> User {
    server.client().register(name, PASSWORD).await
}

async fn create_raw(user: &User, body: Value) -> Response {
    user.client.post(&format!("{V3}/createRoom"), body).await
}

/// `GET /rooms/{roomId}/state` as an array of events.
async fn full_state(user: &User, room_id: &str) -> Vec<Value> {
    let body = user.client.get(&room_path(room_id, "state")).await.ok();
    body.as_array()
        .unwrap_or_else(|| panic!("GET /state is not an array: {body}"))
        .clone()
}

/// The event of `state` with this type and state key.
#[track_caller]
fn find_state<'a>(state: &'a [Value], event_type: &str, state_key: &str) -> &'a Value {
    state
        .iter()
        .find(|e| e["type"] == event_type && e["state_key"] == state_key)
        .unwrap_or_else(|| panic!("no {event_type}/{state_key:?} in the room state: {state:#?}"))
}

/// The `(type, state_key)` of every event in `state`.
fn keys(state: &[Value]) -> Vec<(String, String)> {
    state
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or_default().to_owned(),
                e["state_key"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// `state_default` of a power levels content (50 when absent, per `m.room.power_levels`).
fn state_default(power_levels: &Value) -> i64 {
    power_levels["state_default"].as_i64().unwrap_or(50)
}

#[tokio::test]
async fn default_room_is_version_12_with_a_hash_room_id() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let room_id = alice.create_room(json!({})).await;

    // Rooms v12, "Event format": the room ID is the create event's reference hash (URL-safe
    // unpadded base64 of a SHA-256, 43 characters) with the `!` sigil and no domain.
    let opaque = room_id
        .strip_prefix('!')
        .unwrap_or_else(|| panic!("room ID without `!`: {room_id}"));
    assert!(!opaque.contains(':'), "v12 room ID has a domain: {room_id}");
    assert_eq!(opaque.len(), 43, "not a base64 SHA-256: {room_id}");
    assert!(
        opaque
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "not URL-safe base64: {room_id}"
    );

    let state = full_state(&alice, &room_id).await;
    let create = find_state(&state, "m.room.create", "");
    // Appendices, "Room IDs": the room ID is the create event's ID with `!` instead of `$`.
    assert_eq!(create["event_id"], format!("${opaque}"), "{create}");
    assert_eq!(create["sender"], alice.user_id.as_str(), "{create}");
    assert_eq!(create["content"]["room_version"], "12", "{create}");
    // `creator` is "only present in room versions 1 - 10" (m.room.create schema).
    assert!(create["content"].get("creator").is_none(), "{create}");

    let member = find_state(&state, "m.room.member", &alice.user_id);
    assert_eq!(member["content"]["membership"], "join", "{member}");
    assert_eq!(member["sender"], alice.user_id.as_str(), "{member}");

    // v12 creators have infinite power and cannot be listed in power_levels (auth rule 10.4).
    let power_levels = &find_state(&state, "m.room.power_levels", "")["content"];
    assert!(
        power_levels["users"].get(&alice.user_id).is_none(),
        "the v12 creator is listed in power_levels: {power_levels}"
    );
    // createRoom: in v12 rooms "the power level for sending m.room.tombstone events MUST
    // explicitly be higher than state_default".
    let tombstone = power_levels["events"]["m.room.tombstone"]
        .as_i64()
        .unwrap_or_else(|| panic!("no explicit m.room.tombstone level: {power_levels}"));
    assert!(
        tombstone > state_default(power_levels),
        "tombstone level not above state_default: {power_levels}"
    );

    // No preset and private visibility means private_chat.
    let join_rules = find_state(&state, "m.room.join_rules", "");
    assert_eq!(join_rules["content"]["join_rule"], "invite", "{join_rules}");

    for event in &state {
        assert_eq!(event["room_id"], room_id.as_str(), "{event}");
        assert!(
            event["event_id"]
                .as_str()
                .is_some_and(|id| id.starts_with('$')),
            "{event}"
        );
        assert!(event["sender"].is_string(), "{event}");
        assert!(event["origin_server_ts"].is_u64(), "{event}");
        assert!(event["content"].is_object(), "{event}");
    }
    assert_eq!(alice.joined_rooms().await, vec![room_id.clone()]);

    // The default is the one /capabilities advertises.
    let caps = alice.client.get(&format!("{V3}/capabilities")).await.ok();
    assert_eq!(
        caps["capabilities"]["m.room_versions"]["default"], "12",
        "{caps}"
    );
}

#[tokio::test]
async fn room_versions_10_and_11_have_server_room_ids() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    for version in ["10", "11"] {
        let room_id = alice.create_room(json!({ "room_version": version })).await;
        let suffix = format!(":{}", server.server_name());
        assert!(
            room_id.starts_with('!') && room_id.ends_with(&suffix),
            "v{version} room ID is not !opaque:{}: {room_id}",
            server.server_name()
        );
        let state = full_state(&alice, &room_id).await;
        let create = find_state(&state, "m.room.create", "");
        assert_eq!(create["content"]["room_version"], version, "{create}");
        assert_eq!(create["sender"], alice.user_id.as_str(), "{create}");
        if version == "10" {
            assert_eq!(
                create["content"]["creator"],
                alice.user_id.as_str(),
                "{create}"
            );
        } else {
            assert!(create["content"].get("creator").is_none(), "{create}");
        }
        // Before v12 the creator is an ordinary user with power 100.
        let power_levels = &find_state(&state, "m.room.power_levels", "")["content"];
        assert_eq!(power_levels["users"][&alice.user_id], 100, "{power_levels}");
        // The room works: a message can be sent and read back.
        let event_id = alice.send_text(&room_id, "hello").await;
        let event = alice
            .client
            .get(&room_path(&room_id, &format!("event/{}", enc(&event_id))))
            .await
            .ok();
        assert_eq!(event["content"]["body"], "hello", "{event}");
    }
}

#[tokio::test]
async fn unsupported_room_version_is_rejected() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    for version in ["9999", "org.example.unknown"] {
        create_raw(&alice, json!({ "room_version": version }))
            .await
            .assert_error(400, "M_UNSUPPORTED_ROOM_VERSION");
    }
    assert!(alice.joined_rooms().await.is_empty());
}

#[tokio::test]
async fn presets_set_join_rules_history_visibility_and_guest_access() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    // createRoom, the preset table.
    let cases = [
        (json!({ "preset": "private_chat" }), "invite", "can_join"),
        (
            json!({ "preset": "trusted_private_chat" }),
            "invite",
            "can_join",
        ),
        (json!({ "preset": "public_chat" }), "public", "forbidden"),
        // Without a preset, visibility decides: public means public_chat.
        (json!({ "visibility": "public" }), "public", "forbidden"),
        (json!({ "visibility": "private" }), "invite", "can_join"),
    ];
    for (body, join_rule, guest_access) in cases {
        let room_id = alice.create_room(body.clone()).await;
        let state = full_state(&alice, &room_id).await;
        let got = find_state(&state, "m.room.join_rules", "");
        assert_eq!(got["content"]["join_rule"], join_rule, "{body}: {got}");
        let got = find_state(&state, "m.room.history_visibility", "");
        assert_eq!(
            got["content"]["history_visibility"], "shared",
            "{body}: {got}"
        );
        let got = find_state(&state, "m.room.guest_access", "");
        assert_eq!(
            got["content"]["guest_access"], guest_access,
            "{body}: {got}"
        );
    }
}

#[tokio::test]
async fn public_chat_can_be_joined_and_private_chat_cannot() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let public = alice.create_room(json!({ "preset": "public_chat" })).await;
    let private = alice.create_room(json!({ "preset": "private_chat" })).await;

    bob.join_room(&public).await;
    bob.client
        .post(&room_path(&private, "join"), json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    assert_eq!(bob.joined_rooms().await, vec![public.clone()]);
    assert_eq!(
        alice.membership_of(&public, &bob.user_id).await.as_deref(),
        Some("join")
    );
    assert_eq!(alice.membership_of(&private, &bob.user_id).await, None);
}

#[tokio::test]
async fn name_and_topic_become_state() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let room_id = alice
        .create_room(json!({
            "name": "The Grand Duke Pub",
            "topic": "All about happy hour",
        }))
        .await;
    let name = alice.state_content(&room_id, "m.room.name", "").await;
    assert_eq!(name["name"], "The Grand Duke Pub", "{name}");
    let topic = alice.state_content(&room_id, "m.room.topic", "").await;
    assert_eq!(topic["topic"], "All about happy hour", "{topic}");

    // Without them, there is no such state.
    let bare = alice.create_room(json!({})).await;
    alice
        .client
        .get(&state_path(&bare, "m.room.name", ""))
        .await
        .assert_error(404, "M_NOT_FOUND");
    alice
        .client
        .get(&state_path(&bare, "m.room.topic", ""))
        .await
        .assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn invite_with_is_direct_invites_and_the_invitee_can_join() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room_id = alice
        .create_room(json!({ "invite": [bob.user_id], "is_direct": true }))
        .await;

    // The creator sees the invite in /members and in the state.
    let members = alice.client.get(&room_path(&room_id, "members")).await.ok();
    let invite = members["chunk"]
        .as_array()
        .unwrap_or_else(|| panic!("no chunk: {members}"))
        .iter()
        .find(|e| e["state_key"] == bob.user_id.as_str())
        .unwrap_or_else(|| panic!("bob not in /members: {members}"))
        .clone();
    assert_eq!(invite["type"], "m.room.member", "{invite}");
    assert_eq!(invite["sender"], alice.user_id.as_str(), "{invite}");
    assert_eq!(invite["content"]["membership"], "invite", "{invite}");
    // createRoom `is_direct`: "set the is_direct flag on the m.room.member events sent to
    // the users in invite".
    assert_eq!(invite["content"]["is_direct"], true, "{invite}");

    // An invite is not a joined room.
    assert!(bob.joined_rooms().await.is_empty());
    bob.join_room(&room_id).await;
    assert_eq!(bob.joined_rooms().await, vec![room_id.clone()]);
    assert_eq!(
        alice.membership_of(&room_id, &bob.user_id).await.as_deref(),
        Some("join")
    );
    // Without is_direct the flag is not set.
    let other = alice.create_room(json!({ "invite": [bob.user_id] })).await;
    let content = alice
        .state_content(&other, "m.room.member", &bob.user_id)
        .await;
    assert_eq!(content["membership"], "invite", "{content}");
    assert_ne!(content["is_direct"], true, "{content}");
}

#[tokio::test]
async fn trusted_private_chat_makes_invitees_creators_in_v12() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let carol = register(&server, "carol").await;
    let room_id = alice
        .create_room(json!({ "preset": "trusted_private_chat", "invite": [bob.user_id] }))
        .await;

    // createRoom: for trusted_private_chat the invitees "SHOULD also be appended to
    // additional_creators" (v12: they cannot be given power in m.room.power_levels).
    let create = alice.state_content(&room_id, "m.room.create", "").await;
    assert_eq!(
        create["additional_creators"],
        json!([bob.user_id]),
        "{create}"
    );
    let power_levels = alice
        .state_content(&room_id, "m.room.power_levels", "")
        .await;
    assert!(
        power_levels["users"].get(&bob.user_id).is_none()
            && power_levels["users"].get(&alice.user_id).is_none(),
        "creators listed in power_levels: {power_levels}"
    );

    // As a creator Bob has unlimited power once joined: he may change power levels.
    bob.join_room(&room_id).await;
    let mut new_levels = power_levels.clone();
    new_levels["users"] = json!({ carol.user_id.clone(): 100 });
    bob.put_state(&room_id, "m.room.power_levels", "", new_levels)
        .await
        .assert_status(200);
    let got = alice
        .state_content(&room_id, "m.room.power_levels", "")
        .await;
    assert_eq!(got["users"][&carol.user_id], 100, "{got}");
}

#[tokio::test]
async fn trusted_private_chat_gives_invitees_creator_power_before_v12() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room_id = alice
        .create_room(json!({
            "preset": "trusted_private_chat",
            "invite": [bob.user_id],
            "room_version": "11",
        }))
        .await;
    // Preset table: "All invitees are given the same power level as the room creator."
    let power_levels = alice
        .state_content(&room_id, "m.room.power_levels", "")
        .await;
    assert_eq!(power_levels["users"][&alice.user_id], 100, "{power_levels}");
    assert_eq!(power_levels["users"][&bob.user_id], 100, "{power_levels}");
    let create = alice.state_content(&room_id, "m.room.create", "").await;
    assert_eq!(create["room_version"], "11", "{create}");

    // With private_chat the invitee gets nothing extra.
    let plain = alice
        .create_room(json!({
            "preset": "private_chat",
            "invite": [bob.user_id],
            "room_version": "11",
        }))
        .await;
    let power_levels = alice.state_content(&plain, "m.room.power_levels", "").await;
    assert!(
        power_levels["users"].get(&bob.user_id).is_none(),
        "{power_levels}"
    );
}

#[tokio::test]
async fn initial_state_overrides_presets_and_name_overrides_initial_state() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let room_id = alice
        .create_room(json!({
            "preset": "public_chat",
            "name": "Explicit name",
            "initial_state": [
                { "type": "m.room.history_visibility", "content": { "history_visibility": "joined" } },
                { "type": "m.room.name", "state_key": "", "content": { "name": "Initial name" } },
                { "type": "org.example.custom", "state_key": "k1", "content": { "v": 1 } },
                { "type": "org.example.custom", "content": { "v": "default key" } },
            ],
        }))
        .await;
    // createRoom: initial_state "takes precedence over events set by preset, but gets
    // overridden by name and topic keys"; state_key defaults to "".
    let state = full_state(&alice, &room_id).await;
    let history = find_state(&state, "m.room.history_visibility", "");
    assert_eq!(
        history["content"]["history_visibility"], "joined",
        "{history}"
    );
    let join_rules = find_state(&state, "m.room.join_rules", "");
    assert_eq!(join_rules["content"]["join_rule"], "public", "{join_rules}");
    let name = find_state(&state, "m.room.name", "");
    assert_eq!(name["content"]["name"], "Explicit name", "{name}");
    let custom = find_state(&state, "org.example.custom", "k1");
    assert_eq!(custom["content"], json!({ "v": 1 }), "{custom}");
    let custom = find_state(&state, "org.example.custom", "");
    assert_eq!(custom["content"], json!({ "v": "default key" }), "{custom}");

    // The state holds each (type, state_key) once.
    let mut all = keys(&state);
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), total, "duplicate state keys: {state:#?}");
}

#[tokio::test]
async fn creation_content_is_kept_and_room_version_is_the_servers() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let room_id = alice
        .create_room(json!({
            "creation_content": {
                "type": "m.space",
                "m.federate": false,
                "org.example.extra": [1, 2],
                "room_version": "1",
            },
            "room_version": "11",
        }))
        .await;
    let create = alice.state_content(&room_id, "m.room.create", "").await;
    assert_eq!(create["type"], "m.space", "{create}");
    assert_eq!(create["m.federate"], false, "{create}");
    assert_eq!(create["org.example.extra"], json!([1, 2]), "{create}");
    // createRoom `creation_content`: "The server will overwrite the following keys:
    // creator, room_version."
    assert_eq!(create["room_version"], "11", "{create}");

    // A space created with the default version is a v12 room like any other.
    let space = alice
        .create_room(json!({ "creation_content": { "type": "m.space" } }))
        .await;
    let create = alice.state_content(&space, "m.room.create", "").await;
    assert_eq!(create["type"], "m.space", "{create}");
    assert_eq!(create["room_version"], "12", "{create}");
}

#[tokio::test]
async fn power_level_content_override_is_applied() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room_id = alice
        .create_room(json!({
            "preset": "public_chat",
            "power_level_content_override": {
                "state_default": 70,
                "events_default": 20,
                "users": { bob.user_id.clone(): 30 },
            },
        }))
        .await;
    let power_levels = alice
        .state_content(&room_id, "m.room.power_levels", "")
        .await;
    assert_eq!(power_levels["state_default"], 70, "{power_levels}");
    assert_eq!(power_levels["events_default"], 20, "{power_levels}");
    assert_eq!(power_levels["users"][&bob.user_id], 30, "{power_levels}");
    // The v12 creator still is not listed.
    assert!(
        power_levels["users"].get(&alice.user_id).is_none(),
        "{power_levels}"
    );

    // And the room enforces it: Bob (30) may send messages (20) but not custom state (70).
    bob.join_room(&room_id).await;
    bob.send_text(&room_id, "allowed").await;
    bob.put_state(&room_id, "org.example.setting", "", json!({ "x": 1 }))
        .await
        .assert_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn oversized_initial_state_event_is_rejected() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    // Size limits: "The complete event MUST NOT be larger than 65536 bytes".
    let huge = "x".repeat(70_000);
    let resp = create_raw(
        &alice,
        json!({
            "initial_state": [
                { "type": "org.example.big", "state_key": "", "content": { "blob": huge } },
            ],
        }),
    )
    .await;
    // Synapse answers 413 M_TOO_LARGE; a 400 is acceptable as well.
    assert!(
        (resp.status == 413 && resp.errcode() == Some("M_TOO_LARGE"))
            || (resp.status == 400 && resp.errcode().is_some()),
        "expected 413 M_TOO_LARGE (or a 400 error): {resp}"
    );

    // A large but legal event is fine.
    let big = "x".repeat(60_000);
    let room_id = alice
        .create_room(json!({
            "initial_state": [
                { "type": "org.example.big", "state_key": "", "content": { "blob": big } },
            ],
        }))
        .await;
    let content = alice.state_content(&room_id, "org.example.big", "").await;
    assert_eq!(content["blob"].as_str().map(str::len), Some(60_000));
}

#[tokio::test]
async fn create_room_requires_authentication_and_valid_fields() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    server
        .client()
        .post(&format!("{V3}/createRoom"), json!({}))
        .await
        .assert_error(401, "M_MISSING_TOKEN");
    // Not a user ID in `invite`, or `preset` of the wrong type.
    for body in [
        json!({ "invite": ["not-a-user-id"] }),
        json!({ "preset": 5 }),
        json!({ "preset": "no_such_preset" }),
    ] {
        let resp = create_raw(&alice, body.clone()).await;
        assert_eq!(resp.status, 400, "{body}: {resp}");
        assert!(resp.errcode().is_some(), "{body}: {resp}");
    }
    // A valid room still can be created, and messages sent in it.
    let room_id = alice.create_room(json!({ "name": "ok" })).await;
    alice
        .send_event(&room_id, "m.room.message", text("hi"))
        .await
        .assert_status(200);
}
