//! `GET /sync` (spec: "Syncing"): initial and incremental syncs, long-polling, limited
//! timelines continued with `/messages`, lazy-loaded members, the invite / join / leave
//! sections, ephemeral events, account data and the errors for tokens never issued.

use std::time::{Duration, Instant};

use complement_tests::rooms::{alice_and_bob_room, event_id_of, room_path, txn_id};
use complement_tests::sync::{
    SyncQuery, bodies, ephemeral, next_batch, room, state, timeline, timeline_filter,
    wait_for_parked_syncs,
};
use complement_tests::{TestServer, User, V3, Value, enc, json};

const PASSWORD: &str = "sync-tests-pw";

async fn register(server: &TestServer, name: &str) -> User {
    server.client().register(name, PASSWORD).await
}

/// Alice's public room with Bob joined.
async fn shared_room(server: &TestServer) -> (User, User, String) {
    alice_and_bob_room(server, PASSWORD).await
}

/// An initial sync with an inline filter.
async fn initial_sync_with(user: &User, filter: &Value) -> Value {
    let filter = filter.to_string();
    user.sync(&SyncQuery {
        filter: Some(&filter),
        ..SyncQuery::default()
    })
    .await
}

fn state_keys_of_type(events: &[&Value], kind: &str) -> Vec<String> {
    let mut keys: Vec<String> = events
        .iter()
        .filter(|e| e["type"] == kind)
        .filter_map(|e| e["state_key"].as_str().map(str::to_owned))
        .collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn initial_sync_shows_joined_rooms_with_state_timeline_and_summary() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = shared_room(&server).await;
    alice.send_text(&room_id, "hello").await;

    let sync = bob.initial_sync().await;
    assert!(next_batch(&sync).starts_with('s'), "{sync}");
    let joined = room(&sync, "join", &room_id);
    // `limited: false` may be left out.
    assert_ne!(joined["timeline"]["limited"], true, "{joined}");
    let events = timeline(&sync, &room_id);
    assert_eq!(bodies(&events), ["hello"]);
    // Timeline and state together hold the whole room; the create event is somewhere.
    let all: Vec<&Value> = state(&sync, &room_id).into_iter().chain(events).collect();
    assert!(all.iter().any(|e| e["type"] == "m.room.create"), "{joined}");
    assert_eq!(
        state_keys_of_type(&all, "m.room.member"),
        [alice.user_id.clone(), bob.user_id.clone()]
    );
    assert_eq!(joined["summary"]["m.joined_member_count"], 2, "{joined}");
    assert_eq!(joined["summary"]["m.invited_member_count"], 0, "{joined}");
    assert_eq!(
        joined["summary"]["m.heroes"],
        json!([alice.user_id]),
        "{joined}"
    );
}

/// Spec: "Syncing", room summaries: each room of an initial sync has its own counts and up to
/// five heroes (joined or invited members other than the user, here in user ID order, as
/// Synapse picks them when the room has no name).
#[tokio::test]
async fn an_initial_sync_summarises_each_room_with_its_own_members() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let mut others = Vec::new();
    for name in ["m1", "m2", "m3", "m4", "m5", "m6", "m7"] {
        others.push(register(&server, name).await);
    }
    let big = alice.create_room(json!({ "preset": "public_chat" })).await;
    for member in &others[..6] {
        member.join_room(&big).await;
    }
    alice.invite_user(&big, &others[6].user_id).await;
    let small = alice.create_room(json!({ "preset": "private_chat" })).await;
    alice.invite_user(&small, &others[0].user_id).await;

    let sync = alice.initial_sync().await;
    let summary = &room(&sync, "join", &big)["summary"];
    assert_eq!(summary["m.joined_member_count"], 7, "{summary}");
    assert_eq!(summary["m.invited_member_count"], 1, "{summary}");
    let mut expected: Vec<&str> = others.iter().map(|u| u.user_id.as_str()).collect();
    expected.sort_unstable();
    assert_eq!(summary["m.heroes"], json!(expected[..5]), "{summary}");
    let summary = &room(&sync, "join", &small)["summary"];
    assert_eq!(summary["m.joined_member_count"], 1, "{summary}");
    assert_eq!(summary["m.invited_member_count"], 1, "{summary}");
    assert_eq!(summary["m.heroes"], json!([others[0].user_id]), "{summary}");
}

#[tokio::test]
async fn a_message_wakes_a_pending_long_poll_and_arrives_once_in_order() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = shared_room(&server).await;
    let since = next_batch(&bob.initial_sync().await);

    let poll_since = since.clone();
    let bob_client = bob.clone();
    let started = Instant::now();
    let poll = tokio::spawn(async move {
        bob_client
            .sync(&SyncQuery {
                since: Some(&poll_since),
                timeout_ms: Some(30_000),
                ..SyncQuery::default()
            })
            .await
    });
    // The long-poll is parked with nothing to report: the send must wake it.
    wait_for_parked_syncs(&server, 1).await;
    alice.send_text(&room_id, "wake up").await;
    let woken = tokio::time::timeout(Duration::from_secs(20), poll)
        .await
        .expect("the long-poll returned before its timeout")
        .expect("the poll task did not panic");
    assert!(started.elapsed() < Duration::from_secs(20));
    let mut seen = bodies(&timeline(&woken, &room_id));
    let mut token = next_batch(&woken);

    // More messages; whatever the first poll did not carry comes next, once, in order.
    for body in ["two", "three"] {
        alice.send_text(&room_id, body).await;
    }
    while seen.len() < 3 {
        let sync = bob
            .sync(&SyncQuery {
                since: Some(&token),
                timeout_ms: Some(10_000),
                ..SyncQuery::default()
            })
            .await;
        seen.extend(bodies(&timeline(&sync, &room_id)));
        token = next_batch(&sync);
    }
    assert_eq!(seen, ["wake up", "two", "three"]);
    let after = bob.sync_since(&token).await;
    assert!(timeline(&after, &room_id).is_empty(), "{after}");
}

#[tokio::test]
async fn an_idle_long_poll_returns_empty_at_its_timeout() {
    let server = TestServer::start().await;
    let (_alice, bob, _room_id) = shared_room(&server).await;
    let since = next_batch(&bob.initial_sync().await);
    let started = Instant::now();
    let sync = bob
        .sync(&SyncQuery {
            since: Some(&since),
            timeout_ms: Some(300),
            ..SyncQuery::default()
        })
        .await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(
        sync["rooms"]["join"]
            .as_object()
            .is_none_or(|r| r.is_empty()),
        "{sync}"
    );
    // The token stays usable.
    bob.sync_since(&next_batch(&sync)).await;
}

#[tokio::test]
async fn a_gap_beyond_the_timeline_limit_is_limited_and_prev_batch_continues_with_messages() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = shared_room(&server).await;
    alice.send_text(&room_id, "before").await;
    let filter = timeline_filter(3, false);
    let since = next_batch(
        &bob.sync(&SyncQuery {
            filter: Some(&filter),
            ..SyncQuery::default()
        })
        .await,
    );
    let sent: Vec<String> = (1..=8).map(|i| format!("m{i}")).collect();
    for body in &sent {
        alice.send_text(&room_id, body).await;
    }
    let sync = bob
        .sync(&SyncQuery {
            since: Some(&since),
            filter: Some(&filter),
            timeout_ms: Some(0),
            ..SyncQuery::default()
        })
        .await;
    let joined = room(&sync, "join", &room_id);
    assert_eq!(joined["timeline"]["limited"], true, "{joined}");
    assert_eq!(bodies(&timeline(&sync, &room_id)), ["m6", "m7", "m8"]);
    let prev_batch = joined["timeline"]["prev_batch"]
        .as_str()
        .expect("prev_batch");

    let page = bob
        .messages(&room_id, &format!("dir=b&limit=6&from={}", enc(prev_batch)))
        .await;
    let older: Vec<&Value> = page["chunk"].as_array().expect("chunk").iter().collect();
    assert_eq!(bodies(&older), ["m5", "m4", "m3", "m2", "m1", "before"]);
}

/// An initial sync reads its rooms' newest events together; each room still gets its own
/// newest events, `limited` where there were more, and a `prev_batch` that continues there.
#[tokio::test]
async fn an_initial_sync_in_many_rooms_shows_each_rooms_newest_events() {
    let server = TestServer::start().await;
    let (alice, bob, busy) = shared_room(&server).await;
    let quiet = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join_room(&quiet).await;
    let empty = alice.create_room(json!({ "preset": "public_chat" })).await;
    for i in 1..=6 {
        alice.send_text(&busy, &format!("busy {i}")).await;
    }
    alice.send_text(&quiet, "quiet 1").await;
    let filter = timeline_filter(3, false);
    let sync = bob
        .sync(&SyncQuery {
            filter: Some(&filter),
            ..SyncQuery::default()
        })
        .await;
    let joined = room(&sync, "join", &busy);
    assert_eq!(joined["timeline"]["limited"], true, "{joined}");
    assert_eq!(
        bodies(&timeline(&sync, &busy)),
        ["busy 4", "busy 5", "busy 6"]
    );
    let prev_batch = joined["timeline"]["prev_batch"]
        .as_str()
        .expect("prev_batch");
    let page = bob
        .messages(&busy, &format!("dir=b&limit=3&from={}", enc(prev_batch)))
        .await;
    let older: Vec<&Value> = page["chunk"].as_array().expect("chunk").iter().collect();
    assert_eq!(bodies(&older), ["busy 3", "busy 2", "busy 1"]);
    // Bob's join and Alice's message: the timeline's last three events.
    let quiet_timeline = timeline(&sync, &quiet);
    assert_eq!(quiet_timeline.len(), 3, "{quiet_timeline:?}");
    assert_eq!(bodies(&quiet_timeline), ["quiet 1"]);
    assert!(
        sync["rooms"]["join"].get(&empty).is_none(),
        "Bob is not in Alice's third room: {sync}"
    );
}

#[tokio::test]
async fn lazy_loading_sends_only_the_members_the_timeline_needs() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = shared_room(&server).await;
    let carol = register(&server, "carol").await;
    carol.join_room(&room_id).await;
    for i in 0..5 {
        carol.send_text(&room_id, &format!("carol {i}")).await;
    }
    let filter = timeline_filter(3, true);
    let sync = alice
        .sync(&SyncQuery {
            filter: Some(&filter),
            ..SyncQuery::default()
        })
        .await;
    let events = timeline(&sync, &room_id);
    assert_eq!(bodies(&events), ["carol 2", "carol 3", "carol 4"]);
    // Carol, who sent the timeline, and Alice herself; not Bob.
    assert_eq!(
        state_keys_of_type(&state(&sync, &room_id), "m.room.member"),
        [alice.user_id.clone(), carol.user_id.clone()]
    );
    // Without lazy loading everyone is there.
    let full = alice
        .sync(&SyncQuery {
            filter: Some(&timeline_filter(3, false)),
            ..SyncQuery::default()
        })
        .await;
    assert_eq!(
        state_keys_of_type(&state(&full, &room_id), "m.room.member"),
        [alice.user_id, bob.user_id, carol.user_id]
    );
}

#[tokio::test]
async fn invites_joins_and_leaves_move_rooms_between_sections() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room_id = alice
        .create_room(json!({ "preset": "private_chat", "name": "Secret plans" }))
        .await;
    let mut since = next_batch(&bob.initial_sync().await);

    alice.invite_user(&room_id, &bob.user_id).await;
    let sync = bob.sync_since(&since).await;
    let invite_state = room(&sync, "invite", &room_id)["invite_state"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no invite for the room: {sync}"))
        .clone();
    assert!(
        invite_state
            .iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Secret plans"),
        "{sync}"
    );
    assert!(
        invite_state.iter().any(|e| e["type"] == "m.room.member"
            && e["state_key"] == bob.user_id.as_str()
            && e["content"]["membership"] == "invite"),
        "{sync}"
    );
    // Stripped state is stripped: no event IDs.
    assert!(invite_state.iter().all(|e| e.get("event_id").is_none()));
    since = next_batch(&sync);

    bob.join_room(&room_id).await;
    let sync = bob.sync_since(&since).await;
    let joined = room(&sync, "join", &room_id);
    assert!(joined.is_object(), "{sync}");
    // Newly joined: the room's state comes whole.
    let all: Vec<&Value> = state(&sync, &room_id)
        .into_iter()
        .chain(timeline(&sync, &room_id))
        .collect();
    assert!(all.iter().any(|e| e["type"] == "m.room.create"), "{sync}");
    since = next_batch(&sync);

    bob.leave_room(&room_id).await;
    let sync = bob.sync_since(&since).await;
    let left = room(&sync, "leave", &room_id);
    let leave_events = left["timeline"]["events"]
        .as_array()
        .expect("leave timeline");
    assert!(
        leave_events.iter().any(|e| e["type"] == "m.room.member"
            && e["state_key"] == bob.user_id.as_str()
            && e["content"]["membership"] == "leave"),
        "{sync}"
    );
    assert!(room(&sync, "join", &room_id).is_null());

    // An initial sync leaves left rooms out unless include_leave is set.
    let initial = bob.initial_sync().await;
    assert!(room(&initial, "leave", &room_id).is_null(), "{initial}");
    let include_leave = json!({ "room": { "include_leave": true } }).to_string();
    let initial = bob
        .sync(&SyncQuery {
            filter: Some(&include_leave),
            ..SyncQuery::default()
        })
        .await;
    assert!(room(&initial, "leave", &room_id).is_object(), "{initial}");
}

#[tokio::test]
async fn typing_and_receipts_arrive_as_ephemeral_events() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = shared_room(&server).await;
    let event_id = alice.send_text(&room_id, "read me").await;
    let since = next_batch(&bob.initial_sync().await);

    alice
        .client
        .put(
            &room_path(&room_id, &format!("typing/{}", enc(&alice.user_id))),
            json!({ "typing": true, "timeout": 30_000 }),
        )
        .await
        .assert_status(200);
    let sync = bob.sync_since(&since).await;
    let typing = ephemeral(&sync, &room_id, "m.typing").expect("m.typing");
    assert_eq!(typing["content"]["user_ids"], json!([alice.user_id]));
    let since = next_batch(&sync);

    bob.client
        .post(
            &room_path(&room_id, &format!("receipt/m.read/{}", enc(&event_id))),
            json!({}),
        )
        .await
        .assert_status(200);
    let sync = alice.sync_since(&since).await;
    let receipt = ephemeral(&sync, &room_id, "m.receipt").expect("m.receipt");
    assert!(
        receipt["content"][&event_id]["m.read"][&bob.user_id]["ts"].is_u64(),
        "{receipt}"
    );

    // A typing notice that stops wakes a waiting sync with the empty list.
    let since = next_batch(&bob.sync_since(&since).await);
    let bob_client = bob.clone();
    let poll = tokio::spawn(async move {
        bob_client
            .sync(&SyncQuery {
                since: Some(&since),
                timeout_ms: Some(20_000),
                ..SyncQuery::default()
            })
            .await
    });
    wait_for_parked_syncs(&server, 1).await;
    alice
        .client
        .put(
            &room_path(&room_id, &format!("typing/{}", enc(&alice.user_id))),
            json!({ "typing": false }),
        )
        .await
        .assert_status(200);
    let sync = poll.await.expect("poll task");
    let typing = ephemeral(&sync, &room_id, "m.typing").expect("m.typing");
    assert_eq!(typing["content"]["user_ids"], json!([]));
}

#[tokio::test]
async fn account_data_reaches_sync_globally_and_per_room() {
    let server = TestServer::start().await;
    let (_alice, bob, room_id) = shared_room(&server).await;
    let since = next_batch(&bob.initial_sync().await);
    bob.client
        .put(
            &format!(
                "{V3}/user/{}/account_data/org.example.theme",
                enc(&bob.user_id)
            ),
            json!({ "dark": true }),
        )
        .await
        .assert_status(200);
    bob.client
        .put(
            &format!(
                "{V3}/user/{}/rooms/{}/account_data/m.tag",
                enc(&bob.user_id),
                enc(&room_id)
            ),
            json!({ "tags": { "u.work": {} } }),
        )
        .await
        .assert_status(200);
    let sync = bob.sync_since(&since).await;
    let global = sync["account_data"]["events"]
        .as_array()
        .expect("account data");
    assert!(
        global
            .iter()
            .any(|e| e["type"] == "org.example.theme" && e["content"]["dark"] == true),
        "{sync}"
    );
    let room_data = room(&sync, "join", &room_id)["account_data"]["events"]
        .as_array()
        .expect("room account data");
    assert!(room_data.iter().any(|e| e["type"] == "m.tag"), "{sync}");
    // Only changes: the next sync has none.
    let again = bob.sync_since(&next_batch(&sync)).await;
    assert!(again["account_data"]["events"].is_null(), "{again}");
    // An initial sync has all of it, and the push rules (the defaults: never changed).
    let initial = bob.initial_sync().await;
    assert!(
        initial["account_data"]["events"]
            .as_array()
            .expect("account data")
            .iter()
            .any(|e| e["type"] == "m.push_rules" && e["content"]["global"]["override"].is_array()),
        "{initial}"
    );
    assert!(
        initial["account_data"]["events"]
            .as_array()
            .expect("account data")
            .iter()
            .any(|e| e["type"] == "org.example.theme"),
        "{initial}"
    );
}

#[tokio::test]
async fn the_sending_device_sees_its_transaction_id() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = shared_room(&server).await;
    let txn = txn_id();
    let event_id = event_id_of(
        alice
            .client
            .put(
                &room_path(&room_id, &format!("send/m.room.message/{txn}")),
                json!({ "msgtype": "m.text", "body": "mine" }),
            )
            .await,
    );
    let find = |sync: &Value| {
        timeline(sync, &room_id)
            .into_iter()
            .find(|e| e["event_id"] == event_id.as_str())
            .cloned()
            .expect("the event is in the timeline")
    };
    let own = find(&alice.initial_sync().await);
    assert_eq!(own["unsigned"]["transaction_id"], txn.as_str(), "{own}");
    let other = find(&bob.initial_sync().await);
    assert!(other["unsigned"].get("transaction_id").is_none(), "{other}");

    // In more rooms, where a device that sent nothing is not looked up room by room: the
    // sending device still sees its transaction ID, Alice's new login does not.
    alice.create_room(json!({ "preset": "private_chat" })).await;
    let own = find(&alice.initial_sync().await);
    assert_eq!(own["unsigned"]["transaction_id"], txn.as_str(), "{own}");
    let new_login = server.client().login(&alice.user_id, PASSWORD).await;
    let other_device = find(&new_login.initial_sync().await);
    assert!(
        other_device["unsigned"].get("transaction_id").is_none(),
        "{other_device}"
    );
}

#[tokio::test]
async fn filters_apply_by_id_and_inline() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = shared_room(&server).await;
    let other_room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join_room(&other_room).await;
    alice.send_text(&room_id, "text").await;
    alice
        .send_event(&room_id, "org.example.custom", json!({ "x": 1 }))
        .await
        .assert_status(200);

    let definition = json!({
        "room": {
            "not_rooms": [other_room],
            "timeline": { "types": ["org.example.*"] },
        }
    });
    let filter_id = bob
        .client
        .post(
            &format!("{V3}/user/{}/filter", enc(&bob.user_id)),
            definition.clone(),
        )
        .await
        .ok()["filter_id"]
        .as_str()
        .expect("filter_id")
        .to_owned();
    for filter in [filter_id, definition.to_string()] {
        let sync = bob
            .sync(&SyncQuery {
                filter: Some(&filter),
                ..SyncQuery::default()
            })
            .await;
        assert!(room(&sync, "join", &other_room).is_null(), "{sync}");
        let events = timeline(&sync, &room_id);
        assert!(!events.is_empty(), "{sync}");
        assert!(
            events.iter().all(|e| e["type"] == "org.example.custom"),
            "{sync}"
        );
    }
}

#[tokio::test]
async fn timeline_and_state_filters_select_rooms_of_their_own() {
    // Spec: RoomEventFilter `rooms` / `not_rooms` in the timeline and state filters: the room
    // is still in the sync (the room filter keeps it), without the events those filters leave
    // out.
    let server = TestServer::start().await;
    let (alice, bob, room_id) = shared_room(&server).await;
    let other_room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join_room(&other_room).await;
    alice.send_text(&room_id, "in the first room").await;
    alice.send_text(&other_room, "in the other room").await;

    let filter = json!({
        "room": {
            "timeline": { "not_rooms": [other_room] },
            "state": { "rooms": [other_room] },
        }
    })
    .to_string();
    let sync = bob
        .sync(&SyncQuery {
            filter: Some(&filter),
            ..SyncQuery::default()
        })
        .await;
    assert!(!room(&sync, "join", &other_room).is_null(), "{sync}");
    assert!(timeline(&sync, &other_room).is_empty(), "{sync}");
    assert!(!state(&sync, &other_room).is_empty(), "{sync}");
    assert!(
        bodies(&timeline(&sync, &room_id)).contains(&"in the first room".to_owned()),
        "{sync}"
    );
    assert!(state(&sync, &room_id).is_empty(), "{sync}");
}

#[tokio::test]
async fn full_state_resends_the_whole_state() {
    let server = TestServer::start().await;
    let (_alice, bob, room_id) = shared_room(&server).await;
    let since = next_batch(&bob.initial_sync().await);
    let incremental = bob.sync_since(&since).await;
    assert!(
        room(&incremental, "join", &room_id).is_null(),
        "{incremental}"
    );
    let full = bob
        .sync(&SyncQuery {
            since: Some(&since),
            full_state: true,
            ..SyncQuery::default()
        })
        .await;
    assert!(
        state(&full, &room_id)
            .iter()
            .any(|e| e["type"] == "m.room.create"),
        "{full}"
    );
}

#[tokio::test]
async fn tokens_the_server_never_issued_are_refused() {
    let server = TestServer::start().await;
    let bob = register(&server, "bob").await;
    for since in [
        "garbage",
        "s1",
        "s999999_0_0_0_0_0_0",
        "s0_999999_0_0_0_0_0",
        "s0_0_0_0_0_999999_0",
    ] {
        bob.sync_raw(&SyncQuery {
            since: Some(since),
            timeout_ms: Some(0),
            ..SyncQuery::default()
        })
        .await
        .assert_error(400, "M_INVALID_PARAM");
    }
    bob.sync_raw(&SyncQuery {
        filter: Some("{not json"),
        ..SyncQuery::default()
    })
    .await
    .assert_error_in(400, &["M_BAD_JSON", "M_NOT_JSON", "M_INVALID_PARAM"]);
    bob.sync_raw(&SyncQuery {
        filter: Some("12345"),
        ..SyncQuery::default()
    })
    .await
    .assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn presence_of_room_mates_arrives_through_sync() {
    let server = TestServer::start().await;
    let (alice, bob, _room_id) = shared_room(&server).await;
    let stranger = register(&server, "stranger").await;
    let since = next_batch(&alice.initial_sync().await);
    for user in [&bob, &stranger] {
        user.client
            .put(
                &format!("{V3}/presence/{}/status", enc(&user.user_id)),
                json!({ "presence": "online", "status_msg": "at lunch" }),
            )
            .await
            .assert_status(200);
    }
    let sync = alice.sync_since(&since).await;
    let events = sync["presence"]["events"]
        .as_array()
        .expect("presence events");
    let bob_presence = events
        .iter()
        .find(|e| e["sender"] == bob.user_id.as_str())
        .unwrap_or_else(|| panic!("no presence of bob in {sync}"));
    assert_eq!(bob_presence["type"], "m.presence");
    assert_eq!(bob_presence["content"]["presence"], "online");
    assert_eq!(bob_presence["content"]["status_msg"], "at lunch");
    // Presence is for users who share a room.
    assert!(
        events
            .iter()
            .all(|e| e["sender"] != stranger.user_id.as_str()),
        "{sync}"
    );
    // A filter can turn presence off.
    let no_presence = json!({ "presence": { "not_types": ["*"] } }).to_string();
    let filtered = alice
        .sync(&SyncQuery {
            since: Some(&since),
            filter: Some(&no_presence),
            timeout_ms: Some(0),
            ..SyncQuery::default()
        })
        .await;
    assert!(filtered["presence"]["events"].is_null(), "{filtered}");
}

#[tokio::test]
async fn lazy_loading_skips_members_the_device_already_has() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = shared_room(&server).await;
    let carol = register(&server, "carol").await;
    carol.join_room(&room_id).await;
    carol.send_text(&room_id, "carol speaks").await;
    let lazy = timeline_filter(10, true);
    let lazy_sync = |since: Option<String>, filter: String| {
        let alice = alice.clone();
        async move {
            alice
                .sync(&SyncQuery {
                    since: since.as_deref(),
                    filter: Some(&filter),
                    timeout_ms: Some(0),
                    ..SyncQuery::default()
                })
                .await
        }
    };
    // Only Carol's message in the first timeline: Bob's join is never sent.
    let initial = lazy_sync(None, timeline_filter(1, true)).await;
    assert_eq!(
        state_keys_of_type(&state(&initial, &room_id), "m.room.member"),
        [alice.user_id.clone(), carol.user_id.clone()],
        "{initial}"
    );
    let since = next_batch(&initial);

    // Carol again, and Bob for the first time: Bob joined long ago but was never sent.
    carol.send_text(&room_id, "carol again").await;
    bob.send_text(&room_id, "bob speaks").await;
    let sync = lazy_sync(Some(since.clone()), lazy.clone()).await;
    assert_eq!(
        bodies(&timeline(&sync, &room_id)),
        ["carol again", "bob speaks"]
    );
    assert_eq!(
        state_keys_of_type(&state(&sync, &room_id), "m.room.member"),
        std::slice::from_ref(&bob.user_id),
        "{sync}"
    );

    // Asking for redundant members gets Carol's again.
    let redundant = json!({
        "room": { "state": { "lazy_load_members": true, "include_redundant_members": true } }
    })
    .to_string();
    let sync = lazy_sync(Some(since), redundant).await;
    let members = state_keys_of_type(&state(&sync, &room_id), "m.room.member");
    assert!(members.contains(&carol.user_id), "{sync}");
    assert!(members.contains(&bob.user_id), "{sync}");
}

#[tokio::test]
async fn unread_counts_rise_with_messages_and_fall_with_a_read_receipt() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = shared_room(&server).await;
    let counts = |sync: &Value| {
        let unread = &room(sync, "join", &room_id)["unread_notifications"];
        (
            unread["notification_count"].as_u64(),
            unread["highlight_count"].as_u64(),
        )
    };
    let initial = bob.initial_sync().await;
    assert_eq!(counts(&initial), (Some(0), Some(0)), "{initial}");
    let since = next_batch(&initial);

    alice.send_text(&room_id, "one").await;
    let last = alice.send_text(&room_id, "two").await;
    let sync = bob.sync_since(&since).await;
    assert_eq!(counts(&sync), (Some(2), Some(0)), "{sync}");
    // A mention of Bob highlights.
    alice
        .send_event(
            &room_id,
            "m.room.message",
            json!({ "msgtype": "m.text", "body": "hey bob", "m.mentions": { "user_ids": [bob.user_id] } }),
        )
        .await
        .assert_status(200);
    let sync = bob.sync_since(&next_batch(&sync)).await;
    assert_eq!(counts(&sync), (Some(3), Some(1)), "{sync}");

    // A receipt for the second message leaves only the mention unread.
    bob.client
        .post(
            &room_path(&room_id, &format!("receipt/m.read/{}", enc(&last))),
            json!({}),
        )
        .await
        .assert_status(200);
    let sync = bob.sync_since(&next_batch(&sync)).await;
    assert_eq!(counts(&sync), (Some(1), Some(1)), "{sync}");
    // Counts read after the receipt keep following new messages, incremental or initial sync.
    alice.send_text(&room_id, "three").await;
    let sync = bob.sync_since(&next_batch(&sync)).await;
    assert_eq!(counts(&sync), (Some(2), Some(1)), "{sync}");
    let initial = bob.initial_sync().await;
    assert_eq!(counts(&initial), (Some(2), Some(1)), "{initial}");
    // Alice's own messages never count for her.
    let alice_sync = alice.initial_sync().await;
    assert_eq!(
        room(&alice_sync, "join", &room_id)["unread_notifications"]["notification_count"],
        0,
        "{alice_sync}"
    );
}

/// Spec: "Filtering", `event_fields`: the rooms' timeline and state events carry only the
/// listed fields; a backslash escapes a dot inside a key.
#[tokio::test]
async fn event_fields_keep_only_the_listed_fields_of_room_events() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = shared_room(&server).await;
    let reply = json!({
        "msgtype": "m.text", "body": "a reply",
        "m.relates_to": { "m.in_reply_to": { "event_id": "$elsewhere" } },
    });
    event_id_of(bob.send_event(&room_id, "m.room.message", reply).await);
    let filter = json!({
        "event_fields": ["type", "content.body", "content.m\\.relates_to"],
        "room": { "state": { "types": ["m.room.create"] } },
    });
    let sync = initial_sync_with(&alice, &filter).await;
    let events = timeline(&sync, &room_id);
    let message = events
        .iter()
        .find(|e| e["content"]["body"] == "a reply")
        .unwrap_or_else(|| panic!("{sync}"));
    assert_eq!(
        **message,
        json!({
            "type": "m.room.message",
            "content": {
                "body": "a reply",
                "m.relates_to": { "m.in_reply_to": { "event_id": "$elsewhere" } },
            },
        })
    );
    let create = state(&sync, &room_id)
        .into_iter()
        .chain(events.iter().copied())
        .find(|e| e["type"] == "m.room.create")
        .unwrap_or_else(|| panic!("{sync}"));
    assert_eq!(*create, json!({ "type": "m.room.create" }));
}

/// Spec: "Filtering", `event_format: federation`: the rooms' events are the raw PDUs as servers
/// exchange them (hashes, signatures, prev and auth events), with their event ID and `unsigned`.
#[tokio::test]
async fn event_format_federation_serves_the_raw_pdus() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = shared_room(&server).await;
    let sent = event_id_of(
        bob.send_event(
            &room_id,
            "m.room.message",
            json!({ "msgtype": "m.text", "body": "raw" }),
        )
        .await,
    );
    let sync = initial_sync_with(&alice, &json!({ "event_format": "federation" })).await;
    let events = timeline(&sync, &room_id);
    let message = events
        .iter()
        .find(|e| e["event_id"] == sent.as_str())
        .unwrap_or_else(|| panic!("{sync}"));
    assert_eq!(message["room_id"], room_id.as_str(), "{message}");
    assert_eq!(message["content"]["body"], "raw", "{message}");
    assert!(message["hashes"]["sha256"].is_string(), "{message}");
    assert!(message["signatures"].is_object(), "{message}");
    assert!(
        !message["prev_events"]
            .as_array()
            .unwrap_or_else(|| panic!("{message}"))
            .is_empty()
    );
    assert!(
        !message["auth_events"]
            .as_array()
            .unwrap_or_else(|| panic!("{message}"))
            .is_empty()
    );
    assert!(message["depth"].is_u64(), "{message}");
    assert!(message["unsigned"]["age"].is_i64(), "{message}");

    // Without the filter the same event is in the client format.
    let plain = alice.sync(&SyncQuery::default()).await;
    let events = timeline(&plain, &room_id);
    let message = events
        .iter()
        .find(|e| e["event_id"] == sent.as_str())
        .unwrap_or_else(|| panic!("{plain}"));
    assert!(message.get("hashes").is_none(), "{message}");
    assert!(message.get("prev_events").is_none(), "{message}");
}
