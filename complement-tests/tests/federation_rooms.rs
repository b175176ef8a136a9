//! Rooms across Tessera servers (spec: Server-Server API, "Joining Rooms", "Transactions"):
//! a user joins a room held by another server through `make_join`/`send_join`, and messages
//! flow both ways through the durable outbound queue, also after the receiving server was down.

use std::time::Duration;

use complement_tests::{
    User, V3, enc,
    federation::{Federation, federated_server_name},
    json,
    rooms::{chunk, message_bodies, room_path},
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

/// Alice on hs0 with a public room `#lobby`, Bob on hs1 joined to it by alias.
async fn joined(federation: &Federation) -> (User, User, String) {
    let alice = federation.servers[0]
        .client()
        .register("alice", PASSWORD)
        .await;
    let bob = federation.servers[1]
        .client()
        .register("bob", PASSWORD)
        .await;
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
    let bob = federation.servers[1]
        .client()
        .register("bob", PASSWORD)
        .await;
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
