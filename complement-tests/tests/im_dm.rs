//! Direct chats: `POST /_matrix/client/unstable/im.tessera/dm` returns the pair's one DM room,
//! creating it on first use (`is_direct` invite, `m.direct` of both sides), and concurrent calls
//! never create two rooms.

use complement_tests::im::IM;
use complement_tests::{TestServer, User, json};

const PASSWORD: &str = "im-dm-pw";

async fn register(server: &TestServer, name: &str) -> User {
    server.client().register(name, PASSWORD).await
}

fn direct_rooms(direct: &serde_json::Value, user_id: &str) -> Vec<String> {
    direct[user_id]
        .as_array()
        .map(|rooms| {
            rooms
                .iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn the_first_call_creates_the_room_and_later_calls_return_it() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;

    let (room_id, created) = alice.dm(&bob.user_id).await;
    assert!(created, "the first call creates the room");
    assert_eq!(
        alice.membership_of(&room_id, &bob.user_id).await.as_deref(),
        Some("invite")
    );
    let invite = alice
        .state_content(&room_id, "m.room.member", &bob.user_id)
        .await;
    assert_eq!(invite["is_direct"], true, "{invite}");

    let alice_direct = alice.account_data("m.direct").await.expect("m.direct set");
    assert_eq!(
        direct_rooms(&alice_direct, &bob.user_id),
        vec![room_id.clone()]
    );
    let bob_direct = bob.account_data("m.direct").await.expect("m.direct set");
    assert_eq!(
        direct_rooms(&bob_direct, &alice.user_id),
        vec![room_id.clone()]
    );

    let (again, created) = alice.dm(&bob.user_id).await;
    assert_eq!(again, room_id);
    assert!(!created);

    // Bob asking for his DM with Alice gets the same room and is joined to it.
    let (bobs, created) = bob.dm(&alice.user_id).await;
    assert_eq!(bobs, room_id);
    assert!(!created);
    assert_eq!(
        alice.membership_of(&room_id, &bob.user_id).await.as_deref(),
        Some("join")
    );
    let bob_direct = bob.account_data("m.direct").await.expect("m.direct set");
    assert_eq!(direct_rooms(&bob_direct, &alice.user_id), vec![room_id]);
}

#[tokio::test]
async fn concurrent_calls_from_both_sides_make_one_room() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;

    let mut calls = Vec::new();
    for i in 0..12 {
        let (caller, other) = if i % 2 == 0 {
            (alice.clone(), bob.user_id.clone())
        } else {
            (bob.clone(), alice.user_id.clone())
        };
        calls.push(tokio::spawn(async move { caller.dm(&other).await }));
    }
    let mut rooms = Vec::new();
    for call in calls {
        rooms.push(call.await.expect("task"));
    }
    let first = rooms[0].0.clone();
    assert!(
        rooms.iter().all(|(room, _)| *room == first),
        "all calls answer one room: {rooms:?}"
    );
    assert_eq!(
        rooms.iter().filter(|(_, created)| *created).count(),
        1,
        "exactly one call created it: {rooms:?}"
    );
    assert_eq!(alice.joined_rooms().await, vec![first.clone()]);
    assert_eq!(bob.joined_rooms().await, vec![first.clone()]);
    let direct = alice.account_data("m.direct").await.expect("m.direct set");
    assert_eq!(direct_rooms(&direct, &bob.user_id), vec![first]);
}

#[tokio::test]
async fn a_member_who_left_gets_a_new_room_and_the_other_is_invited_back() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let (room_id, _) = alice.dm(&bob.user_id).await;
    bob.join_room(&room_id).await;

    // Bob leaves: Alice's next call keeps the room and invites him back.
    bob.leave_room(&room_id).await;
    let (again, created) = alice.dm(&bob.user_id).await;
    assert_eq!((again.as_str(), created), (room_id.as_str(), false));
    assert_eq!(
        alice.membership_of(&room_id, &bob.user_id).await.as_deref(),
        Some("invite")
    );

    // Alice leaves the invite-only room: she cannot get back in, so a new room is made.
    alice.leave_room(&room_id).await;
    let (fresh, created) = alice.dm(&bob.user_id).await;
    assert!(created);
    assert_ne!(fresh, room_id);
    let direct = alice.account_data("m.direct").await.expect("m.direct set");
    assert_eq!(direct_rooms(&direct, &bob.user_id), vec![room_id, fresh]);
}

#[tokio::test]
async fn bad_requests_get_matrix_errors() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let unknown = server.user_id("nobody");

    alice
        .dm_raw(&unknown)
        .await
        .assert_error(404, "M_NOT_FOUND");
    alice
        .dm_raw(&alice.user_id)
        .await
        .assert_error(400, "M_INVALID_PARAM");
    alice
        .dm_raw("not a user id")
        .await
        .assert_error(400, "M_INVALID_PARAM");
    alice
        .client
        .post(&format!("{IM}/dm"), json!({ "user": "@x:y" }))
        .await
        .assert_error(400, "M_BAD_JSON");
    alice
        .client
        .request_bytes(
            complement_tests::Method::POST,
            &format!("{IM}/dm"),
            b"{not json".to_vec(),
            "application/json",
        )
        .await
        .assert_error(400, "M_NOT_JSON");
    server
        .client()
        .post(&format!("{IM}/dm"), json!({ "user_id": alice.user_id }))
        .await
        .assert_error(401, "M_MISSING_TOKEN");
    alice
        .client
        .get(&format!("{IM}/dm"))
        .await
        .assert_error(405, "M_UNRECOGNIZED");
    alice
        .client
        .get(&format!("{IM}/no-such-endpoint"))
        .await
        .assert_error(404, "M_UNRECOGNIZED");
}
