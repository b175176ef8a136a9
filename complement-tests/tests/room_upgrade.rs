//! `POST /rooms/{roomId}/upgrade`: the replacement room, its create event and copied state,
//! moved aliases and directory listing, the tombstone and restricted old room, and refusals.

use complement_tests::rooms::{room_path, text};
use complement_tests::{TestServer, User, V3, Value, enc, json};

const PASSWORD: &str = "room-upgrade-pw-1";

/// The content of the room's `event_type` state with the empty state key, if any, read from
/// `GET /rooms/{roomId}/state`.
async fn state_if_any(user: &User, room_id: &str, event_type: &str) -> Option<Value> {
    let events = user.client.get(&room_path(room_id, "state")).await.ok();
    events
        .as_array()
        .unwrap_or_else(|| panic!("GET /state is not an array: {events}"))
        .iter()
        .find(|e| e["type"] == event_type && e["state_key"] == "")
        .map(|e| e["content"].clone())
}

/// Like [`state_if_any`], asserting the state exists.
async fn state(user: &User, room_id: &str, event_type: &str) -> Value {
    state_if_any(user, room_id, event_type)
        .await
        .unwrap_or_else(|| panic!("no {event_type} in {room_id}"))
}

async fn register(server: &TestServer, name: &str) -> User {
    server.client().register(name, PASSWORD).await
}

/// Upgrades the room; asserts 200 and returns the replacement room's ID.
async fn upgrade(user: &User, room_id: &str, body: Value) -> String {
    let resp = user
        .client
        .post(&room_path(room_id, "upgrade"), body)
        .await
        .ok();
    resp["replacement_room"]
        .as_str()
        .unwrap_or_else(|| panic!("no replacement_room: {resp}"))
        .to_owned()
}

fn alias_path(alias: &str) -> String {
    format!("{V3}/directory/room/{}", enc(alias))
}

#[tokio::test]
async fn upgrading_copies_state_and_tombstones_the_old_room() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let mallory = register(&server, "mallory").await;
    let old = alice
        .create_room(json!({
            "room_version": "11",
            "visibility": "public",
            "preset": "public_chat",
            "name": "Cheese",
            "topic": "About cheese",
            "room_alias_name": "cheese",
            "creation_content": { "type": "org.example.kind" },
            "power_level_content_override": {
                "users": { alice.user_id.as_str(): 100, bob.user_id.as_str(): 42 },
                "events": { "org.example.custom": 75, "m.room.tombstone": 100 },
            },
        }))
        .await;
    let alias = format!("#cheese:{}", server.server_name());
    let other = format!("#fromage:{}", server.server_name());
    alice
        .client
        .put(&alias_path(&other), json!({ "room_id": old }))
        .await
        .assert_status(200);
    bob.join_room(&old).await;
    mallory.join_room(&old).await;
    alice
        .client
        .post(
            &room_path(&old, "ban"),
            json!({ "user_id": mallory.user_id, "reason": "spam" }),
        )
        .await
        .assert_status(200);
    let last_before = alice.send_text(&old, "last words").await;

    let new = upgrade(&alice, &old, json!({ "new_version": "11" })).await;
    assert_ne!(new, old);

    // The new room: its create event points back, with the old room's type.
    let create = state(&alice, &new, "m.room.create").await;
    assert_eq!(create["room_version"], "11", "{create}");
    assert_eq!(create["predecessor"]["room_id"], old.as_str(), "{create}");
    assert_eq!(
        create["predecessor"]["event_id"],
        last_before.as_str(),
        "{create}"
    );
    assert_eq!(create["type"], "org.example.kind", "{create}");

    // Copied state.
    let name = state(&alice, &new, "m.room.name").await;
    assert_eq!(name["name"], "Cheese");
    let topic = state(&alice, &new, "m.room.topic").await;
    assert_eq!(topic["topic"], "About cheese");
    let join_rules = state(&alice, &new, "m.room.join_rules").await;
    assert_eq!(join_rules["join_rule"], "public");
    let new_levels = state(&alice, &new, "m.room.power_levels").await;
    assert_eq!(
        new_levels["users"][bob.user_id.as_str()],
        42,
        "{new_levels}"
    );
    assert_eq!(
        new_levels["users"][alice.user_id.as_str()],
        100,
        "{new_levels}"
    );
    assert_eq!(
        new_levels["events"]["org.example.custom"], 75,
        "{new_levels}"
    );
    assert_eq!(new_levels["events_default"], 0, "{new_levels}");
    assert_eq!(
        alice.membership_of(&new, &mallory.user_id).await.as_deref(),
        Some("ban")
    );
    assert_eq!(alice.membership_of(&new, &bob.user_id).await, None);

    // Aliases and the canonical alias moved; the listing moved.
    let resolved = server.client().get(&alias_path(&alias)).await.ok();
    assert_eq!(resolved["room_id"], new.as_str(), "{resolved}");
    let resolved = server.client().get(&alias_path(&other)).await.ok();
    assert_eq!(resolved["room_id"], new.as_str(), "{resolved}");
    let canonical = state(&alice, &new, "m.room.canonical_alias").await;
    assert_eq!(canonical, json!({ "alias": alias }));
    let old_canonical = state(&alice, &old, "m.room.canonical_alias").await;
    assert_eq!(old_canonical, json!({}));
    let directory = server.client().get(&format!("{V3}/publicRooms")).await.ok();
    let listed: Vec<&str> = directory["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["room_id"].as_str())
        .collect();
    assert_eq!(listed, vec![new.as_str()], "{directory}");

    // The old room: tombstoned, and ordinary members can no longer talk or invite.
    let tombstone = state(&alice, &old, "m.room.tombstone").await;
    assert_eq!(tombstone["replacement_room"], new.as_str(), "{tombstone}");
    assert!(tombstone["body"].is_string(), "{tombstone}");
    let old_levels = state(&alice, &old, "m.room.power_levels").await;
    assert_eq!(old_levels["events_default"], 50, "{old_levels}");
    assert_eq!(old_levels["invite"], 50, "{old_levels}");
    bob.send_event(&old, "m.room.message", text("still here?"))
        .await
        .assert_error(403, "M_FORBIDDEN");

    // Members follow by joining the new room.
    bob.join_room(&new).await;
    bob.send_text(&new, "moved").await;
}

#[tokio::test]
async fn upgrading_to_version_12_privileges_the_creators() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let old = alice
        .create_room(json!({ "room_version": "10", "preset": "private_chat", "name": "Old" }))
        .await;

    let new = upgrade(
        &alice,
        &old,
        json!({ "new_version": "12", "additional_creators": [bob.user_id] }),
    )
    .await;
    let create = state(&alice, &new, "m.room.create").await;
    assert_eq!(create["room_version"], "12", "{create}");
    assert_eq!(create["predecessor"]["room_id"], old.as_str(), "{create}");
    assert_eq!(
        create["additional_creators"],
        json!([bob.user_id]),
        "{create}"
    );
    let levels = state(&alice, &new, "m.room.power_levels").await;
    assert!(
        levels["users"].get(alice.user_id.as_str()).is_none(),
        "creators are not listed in v12 power levels: {levels}"
    );
    let join_rules = state(&alice, &new, "m.room.join_rules").await;
    assert_eq!(join_rules["join_rule"], "invite");
    let name = state(&alice, &new, "m.room.name").await;
    assert_eq!(name["name"], "Old");
}

#[tokio::test]
async fn upgrades_are_refused_without_power_or_a_known_version() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let carol = register(&server, "carol").await;
    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join_room(&room_id).await;

    // Bob is an ordinary member; Carol is not in the room.
    bob.client
        .post(
            &room_path(&room_id, "upgrade"),
            json!({ "new_version": "12" }),
        )
        .await
        .assert_error(403, "M_FORBIDDEN");
    carol
        .client
        .post(
            &room_path(&room_id, "upgrade"),
            json!({ "new_version": "12" }),
        )
        .await
        .assert_error(403, "M_FORBIDDEN");
    alice
        .client
        .post(
            &room_path(&room_id, "upgrade"),
            json!({ "new_version": "9001" }),
        )
        .await
        .assert_error(400, "M_UNSUPPORTED_ROOM_VERSION");
    alice
        .client
        .post(
            &room_path(&room_id, "upgrade"),
            json!({ "new_version": "1" }),
        )
        .await
        .assert_error(400, "M_UNSUPPORTED_ROOM_VERSION");
    // Nothing was tombstoned.
    assert_eq!(
        state_if_any(&alice, &room_id, "m.room.tombstone").await,
        None
    );
}
