//! Rooms across Tessera servers (spec: Server-Server API, "Joining Rooms", "Inviting to a
//! room", "Leaving Rooms (Rejecting Invites)", "Transactions"): a user joins a room held by
//! another server through `make_join`/`send_join`, is invited across servers and joins or
//! rejects, and messages flow both ways through the durable outbound queue, also after the
//! receiving server was down.

use std::time::Duration;

use complement_tests::{
    Method, User, V3, Value, enc,
    federation::{Federation, federated_server_name},
    json,
    rooms::{chunk, message_bodies, room_path},
    sync::{next_batch, room},
    wait_until,
};

const PASSWORD: &str = "federation-pw";
const DELIVERY: Duration = Duration::from_secs(30);

/// The room's messages as `user` sees them, oldest first.
async fn history(user: &User, room_id: &str) -> Vec<String> {
    let page = user
        .client
        .get(&format!(
            "{}?dir=b&limit=100",
            room_path(room_id, "messages")
        ))
        .await
        .ok();
    let mut bodies = message_bodies(chunk(&page));
    bodies.reverse();
    bodies
}

async fn wait_for_history(user: &User, room_id: &str, expected: &[&str]) {
    let expected: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
    wait_until(
        &format!("{} to see {expected:?}", user.user_id),
        DELIVERY,
        || async {
            let seen = history(user, room_id).await;
            (seen == expected).then_some(())
        },
    )
    .await;
}

/// Joins `user` to the room by ID through hs0.
async fn join_through_hs0(user: &User, room_id: &str) {
    let joined = user
        .client
        .post(
            &format!(
                "{V3}/join/{}?server_name={}",
                enc(room_id),
                federated_server_name(0)
            ),
            json!({}),
        )
        .await
        .ok();
    assert_eq!(joined["room_id"], room_id, "{joined}");
}

/// Waits until `body` is among the messages `user` sees in the room.
async fn wait_for_body(user: &User, room_id: &str, body: &str) {
    wait_until(
        &format!("{} to see {body:?}", user.user_id),
        DELIVERY,
        || async {
            history(user, room_id)
                .await
                .contains(&body.to_owned())
                .then_some(())
        },
    )
    .await;
}

/// Every event of the room `user` sees, newest first, paging back `limit` at a time to the
/// end (at most 100 pages).
async fn all_events_back(user: &User, room_id: &str, limit: usize) -> Vec<Value> {
    let mut events: Vec<Value> = Vec::new();
    let mut from: Option<String> = None;
    for _ in 0..100 {
        let query = match &from {
            Some(token) => format!("dir=b&limit={limit}&from={}", enc(token)),
            None => format!("dir=b&limit={limit}"),
        };
        let page = user.messages(room_id, &query).await;
        events.extend(chunk(&page).iter().cloned());
        match page["end"].as_str() {
            Some(end) => from = Some(end.to_owned()),
            None => return events,
        }
    }
    panic!(
        "{}'s history of {room_id} did not end within 100 pages",
        user.user_id
    )
}

/// Alice on hs0 with a public room `#lobby`, Bob on hs1 joined to it by alias.
async fn joined(federation: &Federation) -> (User, User, String) {
    let alice = federation.register(0, "alice", PASSWORD).await;
    let bob = federation.register(1, "bob", PASSWORD).await;
    let room_id = alice
        .create_room(json!({ "preset": "public_chat", "room_alias_name": "lobby" }))
        .await;
    let alias = format!("#lobby:{}", federated_server_name(0));
    let joined = bob
        .client
        .post(&format!("{V3}/join/{}", enc(&alias)), json!({}))
        .await
        .ok();
    assert_eq!(joined["room_id"], room_id.as_str(), "{joined}");
    (alice, bob, room_id)
}

#[tokio::test]
async fn a_remote_user_joins_and_messages_flow_both_ways() {
    let federation = Federation::start(2).await;
    let (alice, bob, room_id) = joined(&federation).await;

    // Bob's server holds the room's state: its name and members, Alice and Bob joined.
    assert_eq!(
        bob.membership_of(&room_id, &alice.user_id).await.as_deref(),
        Some("join")
    );
    assert_eq!(
        alice.membership_of(&room_id, &bob.user_id).await.as_deref(),
        Some("join")
    );

    alice.send_text(&room_id, "hello from hs0").await;
    wait_for_history(&bob, &room_id, &["hello from hs0"]).await;
    bob.send_text(&room_id, "hi from hs1").await;
    wait_for_history(&alice, &room_id, &["hello from hs0", "hi from hs1"]).await;
    alice.send_text(&room_id, "second from hs0").await;
    let all = ["hello from hs0", "hi from hs1", "second from hs0"];
    wait_for_history(&bob, &room_id, &all).await;
    wait_for_history(&alice, &room_id, &all).await;
}

#[tokio::test]
async fn messages_sent_while_a_server_is_down_arrive_when_it_is_back() {
    let mut federation = Federation::start(2).await;
    let (alice, bob, room_id) = joined(&federation).await;
    alice.send_text(&room_id, "before").await;
    wait_for_history(&bob, &room_id, &["before"]).await;

    federation.servers[1].stop();
    for body in ["while down 1", "while down 2", "while down 3"] {
        alice.send_text(&room_id, body).await;
    }
    federation.servers[1].run().await;
    wait_for_history(
        &bob,
        &room_id,
        &["before", "while down 1", "while down 2", "while down 3"],
    )
    .await;
}

#[tokio::test]
async fn joining_an_unknown_remote_room_fails_cleanly() {
    let federation = Federation::start(2).await;
    let bob = federation.register(1, "bob", PASSWORD).await;
    let alias = format!("#missing:{}", federated_server_name(0));
    bob.client
        .post(&format!("{V3}/join/{}", enc(&alias)), json!({}))
        .await
        .assert_error(404, "M_NOT_FOUND");
    // A room ID hs0 does not have: its make_join answers 404, which Bob's server passes on.
    let unknown = format!("!nothing:{}", federated_server_name(0));
    bob.client
        .post(&format!("{V3}/join/{}", enc(&unknown)), json!({}))
        .await
        .assert_error(404, "M_NOT_FOUND");
}

/// The state events of an invite in a sync response, by type.
fn invite_state(sync: &serde_json::Value, room_id: &str) -> Vec<serde_json::Value> {
    room(sync, "invite", room_id)["invite_state"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits until `user`'s sync shows an invite to `room_id`; returns its stripped state.
async fn wait_for_invite(user: &User, room_id: &str) -> Vec<serde_json::Value> {
    wait_until(
        &format!("{} to be invited to {room_id}", user.user_id),
        DELIVERY,
        || async {
            let state = invite_state(&user.initial_sync().await, room_id);
            (!state.is_empty()).then_some(state)
        },
    )
    .await
}

async fn wait_for_membership(viewer: &User, room_id: &str, user_id: &str, expected: &str) {
    wait_until(
        &format!(
            "{} to see {user_id} {expected} in {room_id}",
            viewer.user_id
        ),
        DELIVERY,
        || async {
            (viewer.membership_of(room_id, user_id).await.as_deref() == Some(expected))
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_remote_invite_reaches_the_invitee_who_joins_through_the_inviting_server() {
    // Spec: Server-Server API, "Inviting to a room": the invitee's server signs the invite,
    // keeps it with the room's stripped state, and the invitee joins through the inviter's
    // server without naming it.
    let federation = Federation::start(2).await;
    let alice = federation.register(0, "alice", PASSWORD).await;
    let bob = federation.register(1, "bob", PASSWORD).await;
    let room_id = alice
        .create_room(json!({ "preset": "private_chat", "name": "Trip planning" }))
        .await;
    let since = next_batch(&bob.initial_sync().await);
    alice.invite_user(&room_id, &bob.user_id).await;

    // Alice's server stored the invite with Bob's server's signature on it.
    assert_eq!(
        alice.membership_of(&room_id, &bob.user_id).await.as_deref(),
        Some("invite")
    );
    // Bob's incremental sync reports it, with the room's name and who invited him.
    let incremental = bob.sync_since(&since).await;
    let state = invite_state(&incremental, &room_id);
    assert!(
        state
            .iter()
            .any(|event| event["type"] == "m.room.name"
                && event["content"]["name"] == "Trip planning"),
        "{incremental}"
    );
    assert!(
        state.iter().any(|event| event["type"] == "m.room.member"
            && event["state_key"] == bob.user_id.as_str()
            && event["sender"] == alice.user_id.as_str()
            && event["content"]["membership"] == "invite"),
        "{incremental}"
    );
    assert_eq!(wait_for_invite(&bob, &room_id).await.len(), state.len());

    // Joining by room ID alone goes through Alice's server.
    bob.join_room(&room_id).await;
    wait_for_membership(&alice, &room_id, &bob.user_id, "join").await;
    let synced = bob.initial_sync().await;
    assert!(room(&synced, "invite", &room_id).is_null(), "{synced}");
    assert!(!room(&synced, "join", &room_id).is_null(), "{synced}");
    bob.send_text(&room_id, "count me in").await;
    wait_for_history(&alice, &room_id, &["count me in"]).await;
}

#[tokio::test]
async fn a_remote_invite_can_be_rejected() {
    // Spec: Server-Server API, "Leaving Rooms (Rejecting Invites)": make_leave/send_leave
    // through the inviting server.
    let federation = Federation::start(2).await;
    let alice = federation.register(0, "alice", PASSWORD).await;
    let bob = federation.register(1, "bob", PASSWORD).await;
    let room_id = alice
        .create_room(json!({ "preset": "private_chat", "invite": [bob.user_id] }))
        .await;
    wait_for_invite(&bob, &room_id).await;
    bob.leave_room(&room_id).await;

    // The rejection reached the room: Alice sees Bob's leave.
    wait_for_membership(&alice, &room_id, &bob.user_id, "leave").await;
    // Bob's sync no longer shows the invite; the room is among those he left.
    let synced = bob
        .sync(&complement_tests::sync::SyncQuery {
            filter: Some(r#"{"room":{"include_leave":true}}"#),
            ..Default::default()
        })
        .await;
    assert!(room(&synced, "invite", &room_id).is_null(), "{synced}");
    assert!(!room(&synced, "leave", &room_id).is_null(), "{synced}");
    // Alice can invite him again, and he can join this time.
    alice.invite_user(&room_id, &bob.user_id).await;
    wait_for_invite(&bob, &room_id).await;
    bob.join_room(&room_id).await;
    wait_for_membership(&alice, &room_id, &bob.user_id, "join").await;
}

#[tokio::test]
async fn an_invite_the_remote_server_refuses_is_not_stored() {
    let federation = Federation::start(2).await;
    let alice = federation.register(0, "alice", PASSWORD).await;
    let room_id = alice.create_room(json!({ "preset": "private_chat" })).await;
    let nobody = format!("@nobody:{}", federated_server_name(1));
    alice
        .client
        .post(&room_path(&room_id, "invite"), json!({ "user_id": nobody }))
        .await
        .assert_error(404, "M_NOT_FOUND");
    assert_eq!(alice.membership_of(&room_id, &nobody).await, None);
    // The room is intact: Alice still sends to it.
    alice.send_text(&room_id, "still here").await;
    wait_for_history(&alice, &room_id, &["still here"]).await;
}

#[tokio::test]
async fn messages_sent_on_both_servers_at_once_reach_both() {
    // Each server sends a message the other has not seen: the room's graph forks (both
    // messages name the same predecessor), each server accepts the other's as a concurrent
    // event, and the next message names both, merging the branches.
    let mut federation = Federation::start(2).await;
    let (alice, bob, room_id) = joined(&federation).await;
    alice.send_text(&room_id, "base").await;
    wait_for_history(&bob, &room_id, &["base"]).await;

    federation.servers[1].stop();
    alice.send_text(&room_id, "from alice").await;
    federation.servers[0].stop();
    federation.servers[1].run().await;
    bob.send_text(&room_id, "from bob").await;
    federation.servers[0].run().await;

    for user in [&alice, &bob] {
        wait_until(
            &format!("{} to see both messages", user.user_id),
            DELIVERY,
            || async {
                let mut seen = history(user, &room_id).await;
                seen.sort();
                (seen == ["base", "from alice", "from bob"]).then_some(())
            },
        )
        .await;
    }
    alice.send_text(&room_id, "merged").await;
    for user in [&alice, &bob] {
        wait_until(
            &format!("{} to see the merging message", user.user_id),
            DELIVERY,
            || async {
                let seen = history(user, &room_id).await;
                (seen.len() == 4 && seen.last().map(String::as_str) == Some("merged")).then_some(())
            },
        )
        .await;
    }
}

#[tokio::test]
async fn a_server_that_missed_events_fetches_them_from_the_sender_of_the_next() {
    // Spec: Server-Server API, "Backfilling and retrieving missing events": hs2 missed Alice's
    // messages (it was down, and Alice's server is down now). Bob's reply names the last as its
    // predecessor, so hs2 asks Bob's server for the events between: more than one request
    // brings (a server answers at most 20 events per request).
    let mut federation = Federation::start(3).await;
    let (alice, bob, room_id) = joined(&federation).await;
    let carol = federation.register(2, "carol", PASSWORD).await;
    join_through_hs0(&carol, &room_id).await;
    alice.send_text(&room_id, "base").await;
    wait_for_history(&carol, &room_id, &["base"]).await;
    // hs1 learns Carol's join from hs2 itself, not from hs0: until Bob sees "base", hs1 may not
    // yet have hs2's signing key, which it could not fetch once hs2 is down.
    wait_for_history(&bob, &room_id, &["base"]).await;

    federation.servers[2].stop();
    let mut expected: Vec<String> = vec!["base".to_owned()];
    for i in 0..45 {
        let body = format!("while hs2 is down {i}");
        alice.send_text(&room_id, &body).await;
        expected.push(body);
    }
    let expected_refs: Vec<&str> = expected.iter().map(String::as_str).collect();
    wait_for_history(&bob, &room_id, &expected_refs).await;
    federation.servers[0].stop();
    bob.send_text(&room_id, "reply from hs1").await;
    federation.servers[2].run().await;

    expected.push("reply from hs1".to_owned());
    let expected_refs: Vec<&str> = expected.iter().map(String::as_str).collect();
    wait_for_history(&carol, &room_id, &expected_refs).await;
}

/// A private room of Alice's on hs0 that others knock to enter, and Bob on hs1.
async fn knock_room(federation: &Federation) -> (User, User, String) {
    let alice = federation.register(0, "alice", PASSWORD).await;
    let bob = federation.register(1, "bob", PASSWORD).await;
    let room_id = alice
        .create_room(json!({
            "preset": "private_chat",
            "name": "Book club",
            "initial_state": [{
                "type": "m.room.join_rules", "state_key": "", "content": { "join_rule": "knock" },
            }],
        }))
        .await;
    (alice, bob, room_id)
}

async fn knock(user: &User, room_id: &str) {
    let knocked = user
        .client
        .post(
            &format!(
                "{V3}/knock/{}?via={}",
                enc(room_id),
                federated_server_name(0)
            ),
            json!({ "reason": "I read a lot" }),
        )
        .await
        .ok();
    assert_eq!(knocked["room_id"], room_id, "{knocked}");
}

#[tokio::test]
async fn a_remote_user_knocks_and_is_let_in() {
    // Spec: Server-Server API, "Knocking upon a room": make_knock/send_knock through the
    // room's server; being let in is an invite, then a join.
    let federation = Federation::start(2).await;
    let (alice, bob, room_id) = knock_room(&federation).await;
    knock(&bob, &room_id).await;

    wait_for_membership(&alice, &room_id, &bob.user_id, "knock").await;
    // Bob's sync shows the knock, with the room's name from the knock's answer.
    let synced = bob.initial_sync().await;
    let knock_state = room(&synced, "knock", &room_id)["knock_state"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        knock_state
            .iter()
            .any(|event| event["type"] == "m.room.name" && event["content"]["name"] == "Book club"),
        "{synced}"
    );

    alice.invite_user(&room_id, &bob.user_id).await;
    wait_for_invite(&bob, &room_id).await;
    bob.join_room(&room_id).await;
    wait_for_membership(&alice, &room_id, &bob.user_id, "join").await;
}

#[tokio::test]
async fn a_user_knocks_on_a_room_their_server_left_through_a_server_still_in_it() {
    // Bob (hs1) was in Alice's knock room and left: hs1 knows the room but takes no part in it,
    // so its copy is stale. Carol (hs1) knocking goes through Alice's server (spec:
    // "Knocking upon a room"), not onto the stale copy, which Alice's server would never see.
    let federation = Federation::start(2).await;
    let (alice, bob, room_id) = knock_room(&federation).await;
    let carol = federation.register(1, "carol", PASSWORD).await;
    alice.invite_user(&room_id, &bob.user_id).await;
    wait_for_invite(&bob, &room_id).await;
    bob.join_room(&room_id).await;
    wait_for_membership(&alice, &room_id, &bob.user_id, "join").await;
    bob.leave_room(&room_id).await;
    wait_for_membership(&alice, &room_id, &bob.user_id, "leave").await;

    let knocked = carol
        .client
        .post(&format!("{V3}/knock/{}", enc(&room_id)), json!({}))
        .await
        .ok();
    assert_eq!(knocked["room_id"], room_id.as_str(), "{knocked}");
    wait_for_membership(&alice, &room_id, &carol.user_id, "knock").await;
    alice.invite_user(&room_id, &carol.user_id).await;
    wait_for_invite(&carol, &room_id).await;
    carol.join_room(&room_id).await;
    wait_for_membership(&alice, &room_id, &carol.user_id, "join").await;
}

#[tokio::test]
async fn a_remote_knock_can_be_rescinded() {
    let federation = Federation::start(2).await;
    let (alice, bob, room_id) = knock_room(&federation).await;
    knock(&bob, &room_id).await;
    wait_for_membership(&alice, &room_id, &bob.user_id, "knock").await;
    // Leaving rescinds the knock through the server knocked through.
    bob.leave_room(&room_id).await;
    wait_for_membership(&alice, &room_id, &bob.user_id, "leave").await;
    let synced = bob.initial_sync().await;
    assert!(room(&synced, "knock", &room_id).is_null(), "{synced}");
}

#[tokio::test]
async fn the_group_member_limit_holds_for_remote_joins() {
    let federation = Federation::start_with(2, |i, builder| {
        if i == 0 {
            builder.set("im.group_member_limit", 2)
        } else {
            builder
        }
    })
    .await;
    let alice = federation.register(0, "alice", PASSWORD).await;
    let carol = federation.register(0, "carol", PASSWORD).await;
    let bob = federation.register(1, "bob", PASSWORD).await;
    let room_id = alice
        .create_room(json!({ "preset": "public_chat", "room_alias_name": "full" }))
        .await;
    carol.join_room(&room_id).await;
    let alias = format!("#full:{}", federated_server_name(0));
    let refused = bob
        .client
        .post(&format!("{V3}/join/{}", enc(&alias)), json!({}))
        .await;
    refused.assert_error(403, "M_FORBIDDEN");
    assert!(
        refused.json["error"]
            .as_str()
            .unwrap_or_default()
            .contains("limit of 2 members"),
        "{}",
        refused.json
    );
    assert_eq!(alice.membership_of(&room_id, &bob.user_id).await, None);
}

#[tokio::test]
async fn a_state_change_and_a_message_sent_at_once_reach_both_servers() {
    // The topic changes on one server while a message is sent on the other: each server takes
    // the other's event as concurrent (hs0 checks Bob's message against the state it was sent
    // on, before the topic), and both end with the new topic and both events.
    let mut federation = Federation::start(2).await;
    let (alice, bob, room_id) = joined(&federation).await;
    alice.send_text(&room_id, "base").await;
    wait_for_history(&bob, &room_id, &["base"]).await;

    federation.servers[1].stop();
    alice
        .set_state(
            &room_id,
            "m.room.topic",
            "",
            json!({ "topic": "Alice's topic" }),
        )
        .await;
    federation.servers[0].stop();
    federation.servers[1].run().await;
    bob.send_text(&room_id, "from bob").await;
    federation.servers[0].run().await;

    for user in [&alice, &bob] {
        wait_until(
            &format!("{} to see both events", user.user_id),
            DELIVERY,
            || async {
                let mut seen = history(user, &room_id).await;
                seen.sort();
                let topic = user
                    .client
                    .get(&complement_tests::rooms::state_path(
                        &room_id,
                        "m.room.topic",
                        "",
                    ))
                    .await;
                (seen == ["base", "from bob"] && topic.json["topic"] == "Alice's topic")
                    .then_some(())
            },
        )
        .await;
    }
    alice.send_text(&room_id, "merged").await;
    wait_for_history(&bob, &room_id, &["base", "from bob", "merged"]).await;
}

#[tokio::test]
async fn a_server_denied_by_the_room_acl_is_kept_out() {
    // Spec: Server-Server API, "Server Access Control Lists": PDUs from a denied server are
    // dropped and its users cannot join.
    let federation = Federation::start(3).await;
    let (alice, bob, room_id) = joined(&federation).await;
    // A second room without an ACL, to know when hs0 has processed what hs1 sent before.
    let probe_room = alice
        .create_room(json!({ "preset": "public_chat", "room_alias_name": "probe" }))
        .await;
    let probe_alias = format!("#probe:{}", federated_server_name(0));
    bob.client
        .post(&format!("{V3}/join/{}", enc(&probe_alias)), json!({}))
        .await
        .ok();
    bob.send_text(&room_id, "before the ACL").await;
    wait_for_history(&alice, &room_id, &["before the ACL"]).await;

    alice
        .set_state(
            &room_id,
            "m.room.server_acl",
            "",
            json!({
                "allow": ["*"],
                "deny": [federated_server_name(1), federated_server_name(2)],
                "allow_ip_literals": false,
            }),
        )
        .await;
    // Bob's server learns of the ACL (it applies it too) before Bob sends again.
    wait_until("hs1 to have the ACL", DELIVERY, || async {
        let acl = bob
            .client
            .get(&complement_tests::rooms::state_path(
                &room_id,
                "m.room.server_acl",
                "",
            ))
            .await;
        (acl.status == 200).then_some(())
    })
    .await;
    bob.send_text(&room_id, "after the ACL").await;
    bob.send_text(&probe_room, "probe").await;
    // hs1 sends to hs0 in order: once the probe is in, the denied message was seen and dropped.
    wait_for_history(&alice, &probe_room, &["probe"]).await;
    assert_eq!(history(&alice, &room_id).await, ["before the ACL"]);

    // A user of another denied server cannot join the room (hs1's own users still can join
    // there: a server does not apply a room's ACL to itself).
    let dave = federation.register(2, "dave", PASSWORD).await;
    let alias = format!("#lobby:{}", federated_server_name(0));
    dave.client
        .post(&format!("{V3}/join/{}", enc(&alias)), json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn a_user_rejoins_a_room_their_server_left_through_a_server_still_in_it() {
    // Bob's server leaves the room with him; meanwhile the room moves on (a new topic). His
    // server's copy of the room is stale, so rejoining goes through Alice's server (spec:
    // "Joining Rooms"), not on the stale state, which Alice's server would refuse.
    let federation = Federation::start(2).await;
    let (alice, bob, room_id) = joined(&federation).await;
    bob.leave_room(&room_id).await;
    wait_for_membership(&alice, &room_id, &bob.user_id, "leave").await;
    alice
        .set_state(
            &room_id,
            "m.room.topic",
            "",
            json!({ "topic": "While Bob was away" }),
        )
        .await;
    alice.send_text(&room_id, "you missed this").await;

    let rejoined = bob
        .client
        .post(&format!("{V3}/join/{}", enc(&room_id)), json!({}))
        .await
        .ok();
    assert_eq!(rejoined["room_id"], room_id.as_str(), "{rejoined}");
    wait_for_membership(&alice, &room_id, &bob.user_id, "join").await;
    // Bob's server has the room as it is now.
    let topic = bob
        .client
        .get(&format!("{}/m.room.topic/", room_path(&room_id, "state")))
        .await
        .ok();
    assert_eq!(topic["topic"], "While Bob was away", "{topic}");
    alice.send_text(&room_id, "welcome back").await;
    wait_for_body(&bob, &room_id, "welcome back").await;
    bob.send_text(&room_id, "glad to be back").await;
    wait_for_body(&alice, &room_id, "glad to be back").await;
}

#[tokio::test]
async fn events_a_server_could_not_see_are_served_to_it_redacted() {
    // Spec: "History visibility", as Synapse applies it to servers: under `joined`, what was
    // said before any user of hs1 joined reaches hs1 only redacted, even though hs1 is in the
    // room now; what follows its join comes whole.
    let federation = Federation::start(2).await;
    let alice = federation.register(0, "alice", PASSWORD).await;
    let bob = federation.register(1, "bob", PASSWORD).await;
    let room_id = alice
        .create_room(json!({
            "preset": "public_chat",
            "initial_state": [{
                "type": "m.room.history_visibility", "state_key": "",
                "content": { "history_visibility": "joined" },
            }],
        }))
        .await;
    let before = alice.send_text(&room_id, "before Bob came").await;
    join_through_hs0(&bob, &room_id).await;
    let after = alice.send_text(&room_id, "after Bob came").await;

    let event = |event_id: String| {
        let federation = &federation;
        async move {
            let response = federation
                .signed_request(
                    1,
                    0,
                    Method::GET,
                    &format!("/_matrix/federation/v1/event/{}", enc(&event_id)),
                    None,
                )
                .await;
            assert_eq!(response.status, 200, "{}", response.json);
            response.json["pdus"][0].clone()
        }
    };
    let hidden = event(before.clone()).await;
    assert_eq!(hidden["content"], json!({}), "{hidden}");
    assert_eq!(hidden["type"], "m.room.message");
    let shown = event(after.clone()).await;
    assert_eq!(shown["content"]["body"], "after Bob came", "{shown}");

    // Backfill from the newest event: the same, event by event.
    let backfill = federation
        .signed_request(
            1,
            0,
            Method::GET,
            &format!(
                "/_matrix/federation/v1/backfill/{}?v={}&limit=20",
                enc(&room_id),
                enc(&after)
            ),
            None,
        )
        .await;
    assert_eq!(backfill.status, 200, "{}", backfill.json);
    let pdus = backfill.json["pdus"].as_array().expect("pdus");
    let messages: Vec<&Value> = pdus
        .iter()
        .filter(|pdu| pdu["type"] == "m.room.message")
        .collect();
    assert_eq!(messages.len(), 2, "{}", backfill.json);
    let bodies: Vec<&Value> = messages.iter().map(|pdu| &pdu["content"]["body"]).collect();
    assert!(bodies.contains(&&json!("after Bob came")), "{bodies:?}");
    assert!(!bodies.contains(&&json!("before Bob came")), "{bodies:?}");
}

/// `user`'s level in the room's `m.room.power_levels` as `viewer` sees it (`None` when the
/// event does not list them).
async fn power_of(viewer: &User, room_id: &str, user: &User) -> Option<i64> {
    viewer
        .state_content(room_id, "m.room.power_levels", "")
        .await["users"][&user.user_id]
        .as_i64()
}

#[tokio::test]
async fn a_ban_and_a_demotion_made_at_once_resolve_the_same_on_both_servers() {
    // Spec: room versions, "State resolution" (v2): power events are applied in order of
    // their senders' power. Alice (hs0, room creator) demotes Bob while Bob (hs1, level 50,
    // enough to ban) bans Carol, neither server having seen the other's event. Alice's change
    // goes first, and Bob's ban, checked against the state it leaves, fails: both servers end
    // with Carol joined and Bob without his level. Spec: Server-Server API, "Soft failure":
    // hs0 takes the ban (it passes against the state it was sent on) but not into its
    // timeline, as it fails against hs0's current state. Bob's next message names both
    // branches; hs0 takes it on their resolved state.
    let mut federation = Federation::start(2).await;
    let (alice, bob, room_id) = joined(&federation).await;
    let carol = federation.register(0, "carol", PASSWORD).await;
    carol.join_room(&room_id).await;
    let mut levels = alice
        .state_content(&room_id, "m.room.power_levels", "")
        .await;
    levels["ban"] = json!(50);
    levels["users"][&bob.user_id] = json!(50);
    alice
        .set_state(&room_id, "m.room.power_levels", "", levels.clone())
        .await;
    wait_until(
        "Bob to hold level 50 with Carol joined",
        DELIVERY,
        || async {
            let carol_joined =
                bob.membership_of(&room_id, &carol.user_id).await.as_deref() == Some("join");
            (carol_joined && power_of(&bob, &room_id, &bob).await == Some(50)).then_some(())
        },
    )
    .await;

    federation.servers[1].stop();
    levels["users"]
        .as_object_mut()
        .expect("users is an object")
        .remove(&bob.user_id);
    alice
        .set_state(&room_id, "m.room.power_levels", "", levels)
        .await;
    federation.servers[0].stop();
    federation.servers[1].run().await;
    bob.client
        .post(
            &room_path(&room_id, "ban"),
            json!({ "user_id": carol.user_id, "reason": "racing the demotion" }),
        )
        .await
        .assert_status(200);
    assert_eq!(
        bob.membership_of(&room_id, &carol.user_id).await.as_deref(),
        Some("ban"),
        "hs1 has not seen the demotion yet"
    );
    federation.servers[0].run().await;

    wait_until("hs1 to resolve the ban away", DELIVERY, || async {
        let carol_joined =
            bob.membership_of(&room_id, &carol.user_id).await.as_deref() == Some("join");
        (carol_joined && power_of(&bob, &room_id, &bob).await.is_none()).then_some(())
    })
    .await;
    bob.send_text(&room_id, "after the race").await;
    wait_for_body(&alice, &room_id, "after the race").await;
    for viewer in [&alice, &bob, &carol] {
        assert_eq!(
            viewer
                .membership_of(&room_id, &carol.user_id)
                .await
                .as_deref(),
            Some("join"),
            "Carol's membership as {} sees it",
            viewer.user_id
        );
        assert_eq!(power_of(viewer, &room_id, &bob).await, None);
    }
    let timeline = alice.messages(&room_id, "dir=b&limit=100").await;
    let bans: Vec<&Value> = timeline["chunk"]
        .as_array()
        .expect("a chunk")
        .iter()
        .filter(|event| event["content"]["membership"] == "ban")
        .collect();
    assert!(bans.is_empty(), "hs0 showed the soft-failed ban: {bans:?}");
    // Carol is still in the room: she can speak, and Bob's server takes it.
    carol.send_text(&room_id, "still here").await;
    wait_for_body(&bob, &room_id, "still here").await;
}

#[tokio::test]
async fn a_user_who_joined_through_another_server_pages_back_into_the_history_before() {
    // Spec: Server-Server API, "Backfilling and retrieving missing events": hs1's history of
    // the room begins with Bob's join. Paging back past it, hs1 asks hs0 for the events
    // before, round after round, until the room's creation: every earlier message once, in
    // order, and the room's first event last.
    let federation = Federation::start(2).await;
    let alice = federation.register(0, "alice", PASSWORD).await;
    let bob = federation.register(1, "bob", PASSWORD).await;
    let room_id = alice
        .create_room(json!({ "preset": "public_chat", "room_alias_name": "archive" }))
        .await;
    let sent: Vec<String> = (0..45).map(|i| format!("old {i}")).collect();
    for body in &sent {
        alice.send_text(&room_id, body).await;
    }
    let alias = format!("#archive:{}", federated_server_name(0));
    bob.client
        .post(&format!("{V3}/join/{}", enc(&alias)), json!({}))
        .await
        .assert_status(200);

    let events = all_events_back(&bob, &room_id, 10).await;
    let mut bodies = message_bodies(&events);
    bodies.reverse();
    assert_eq!(
        bodies, sent,
        "the messages before Bob's join, once each, in order"
    );
    assert_eq!(
        events.last().map(|event| event["type"].clone()),
        Some(json!("m.room.create")),
        "paging ends at the room's creation"
    );
    let mut ids: Vec<&str> = events
        .iter()
        .filter_map(|event| event["event_id"].as_str())
        .collect();
    let total = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), total, "no event twice");

    // Paging forwards from the start of the room (no `from`) begins with that history too.
    let forward = bob.messages(&room_id, "dir=f&limit=100").await;
    assert_eq!(
        chunk(&forward).first().map(|event| event["type"].clone()),
        Some(json!("m.room.create")),
        "{forward}"
    );
    assert_eq!(message_bodies(chunk(&forward)), sent, "{forward}");
}

/// Spec: Client-Server API, "Redactions", across "Backfilling": hs1 receives a redaction (by
/// Carol of hs2, a moderator) of a message from before its join, which it does not have. The
/// servers it backfills from never saw that redaction and serve the message whole; hs1 prunes
/// it as it arrives. (The redaction is built and signed with hs2's key and sent to hs1 alone,
/// as a redaction that reached hs1 but not the others would be.)
#[tokio::test]
async fn a_redaction_of_a_message_not_yet_backfilled_prunes_it_when_it_arrives() {
    let federation = Federation::start(3).await;
    let alice = federation.register(0, "alice", PASSWORD).await;
    let bob = federation.register(1, "bob", PASSWORD).await;
    let carol = federation.register(2, "carol", PASSWORD).await;
    let (hs0, hs2) = (federated_server_name(0), federated_server_name(2));
    let room_id = alice
        .create_room(json!({
            "preset": "public_chat",
            "room_version": "11",
            "power_level_content_override": { "users": { alice.user_id.as_str(): 100, carol.user_id.as_str(): 50 } },
        }))
        .await;
    let recalled = alice.send_text(&room_id, "recalled words").await;
    for user in [&bob, &carol] {
        user.client
            .post(
                &format!("{V3}/join/{}?server_name={}", enc(&room_id), enc(&hs0)),
                json!({}),
            )
            .await
            .assert_status(200);
    }
    // The redaction's auth events are Carol's join as hs1 has it: wait for it to arrive.
    wait_for_membership(&bob, &room_id, &carol.user_id, "join").await;
    let latest = bob.send_text(&room_id, "bob is here").await;
    let (redaction_id, redaction) = federation
        .signed_redaction((2, 1), &bob, &room_id, &carol.user_id, &recalled, &latest)
        .await;
    let answer = federation
        .signed_request(
            2,
            1,
            Method::PUT,
            "/_matrix/federation/v1/send/early-redaction",
            Some(json!({ "origin": hs2, "origin_server_ts": 1, "pdus": [redaction] })),
        )
        .await
        .ok();
    assert_eq!(answer["pdus"][&redaction_id], json!({}), "{answer}");

    let events = all_events_back(&bob, &room_id, 10).await;
    let message = events
        .iter()
        .find(|event| event["event_id"] == recalled.as_str())
        .unwrap_or_else(|| panic!("the message is in hs1's history: {events:?}"));
    assert_eq!(message["content"], json!({}), "{message}");
    // The servers that never saw the redaction still have the message whole.
    let on_hs0 = alice
        .client
        .get(&room_path(&room_id, &format!("event/{}", enc(&recalled))))
        .await
        .ok();
    assert_eq!(on_hs0["content"]["body"], "recalled words", "{on_hs0}");
}

#[tokio::test]
async fn a_server_down_for_long_catches_up_from_the_newest_event() {
    // hs1 is down while Alice sends 1,050 messages, more than hs0 keeps queued for a server
    // that is down (1,000): hs0 keeps only the room's newest event for it. Back up, hs1 takes
    // that event and fetches the 1,000 before it (spec: Server-Server API, "Backfilling and
    // retrieving missing events", 20 per request); the older ones are left out, the oldest
    // fetched event being placed on the state before its missing predecessor, which hs1 asks
    // hs0 for (`/event`, `/state`). Bob sees the newest messages without a break after the
    // gap, and the room goes on both ways.
    let mut federation = Federation::start(2).await;
    let (alice, bob, room_id) = joined(&federation).await;
    alice.send_text(&room_id, "base").await;
    wait_for_history(&bob, &room_id, &["base"]).await;

    federation.servers[1].stop();
    let sent: Vec<String> = (0..1050).map(|i| format!("n {i}")).collect();
    for body in &sent {
        alice.send_text(&room_id, body).await;
    }
    // A restarted server trims what it kept for a server that is down.
    federation.servers[0].stop();
    federation.servers[0].run().await;
    federation.servers[1].run().await;
    wait_for_body(&bob, &room_id, "n 1049").await;

    let events = all_events_back(&bob, &room_id, 100).await;
    let mut bodies = message_bodies(&events);
    bodies.reverse();
    assert_eq!(
        bodies.first().map(String::as_str),
        Some("base"),
        "{bodies:?}"
    );
    let after_gap = &bodies[1..];
    assert!(
        after_gap.len() >= 1000 && after_gap.len() < sent.len(),
        "the newest 1,000 messages or more, not all: {} of them",
        after_gap.len()
    );
    assert_eq!(
        after_gap,
        &sent[sent.len() - after_gap.len()..],
        "the newest messages, in order, without a break"
    );

    bob.send_text(&room_id, "caught up").await;
    wait_for_body(&alice, &room_id, "caught up").await;
    alice.send_text(&room_id, "and on").await;
    wait_for_body(&bob, &room_id, "and on").await;
}
