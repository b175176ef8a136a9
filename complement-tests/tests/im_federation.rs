//! The IM layer across two Tessera servers: a friend request to a user of another server is a
//! marked DM invite that the other server checks against the invitee's privacy setting and
//! records; accepting joins the DM room through the requester's server, which then records the
//! friendship too; each side's profile room takes the other in, so moments, likes and comments
//! cross; deleting the friend ends it on both servers, and a rejection reaches the requester's.

use std::time::Duration;

use complement_tests::{
    Response, User, V3, Value, enc, federation::Federation, im::IM, json, rooms::txn_id, wait_until,
};

const PASSWORD: &str = "im-federation-pw";
const DELIVERY: Duration = Duration::from_secs(30);

async fn request(from: &User, to: &User, message: &str) -> Response {
    from.client
        .post(
            &format!("{IM}/friends/requests"),
            json!({ "user_id": to.user_id, "message": message }),
        )
        .await
}

async fn requests(user: &User, direction: &str) -> Vec<Value> {
    let body = user
        .client
        .get(&format!("{IM}/friends/requests"))
        .await
        .ok();
    body[direction].as_array().cloned().unwrap_or_default()
}

async fn friend_ids(user: &User) -> Vec<String> {
    let body = user.client.get(&format!("{IM}/friends")).await.ok();
    body["friends"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["user_id"].as_str().map(str::to_owned))
        .collect()
}

async fn wait_for_friends(user: &User, expected: &[&str]) {
    wait_until(
        &format!("the friends of {} to be {expected:?}", user.user_id),
        DELIVERY,
        || async { (friend_ids(user).await == expected).then_some(()) },
    )
    .await;
}

async fn post(user: &User, text: &str) -> String {
    let body = user
        .client
        .put(
            &format!("{IM}/moments/post/{}", txn_id()),
            json!({ "text": text }),
        )
        .await
        .ok();
    body["event_id"].as_str().expect("event_id").to_owned()
}

async fn feed(user: &User) -> Vec<Value> {
    let body = user.client.get(&format!("{IM}/moments/feed")).await.ok();
    body["chunk"].as_array().cloned().unwrap_or_default()
}

/// Waits until the user's feed holds the moment `event_id` and `check` holds for it.
async fn wait_for_moment(user: &User, event_id: &str, what: &str, check: impl Fn(&Value) -> bool) {
    wait_until(
        &format!("{} to see {what} in their feed", user.user_id),
        DELIVERY,
        || async {
            feed(user)
                .await
                .iter()
                .find(|item| item["event_id"] == event_id)
                .is_some_and(&check)
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_friendship_across_servers_shares_moments_and_ends_on_both() {
    let federation = Federation::start(2).await;
    let alice = federation.register(0, "alice", PASSWORD).await;
    let bob = federation.register(1, "bob", PASSWORD).await;

    let sent = request(&alice, &bob, "Alice from the other server")
        .await
        .ok();
    let room_id = sent["room_id"].as_str().expect("room_id").to_owned();
    // The request reached Bob's server with its message, as soon as the call returned.
    let incoming = requests(&bob, "incoming").await;
    assert_eq!(incoming.len(), 1, "{incoming:?}");
    assert_eq!(incoming[0]["requester"], alice.user_id.as_str());
    assert_eq!(incoming[0]["message"], "Alice from the other server");
    assert_eq!(incoming[0]["room_id"], room_id.as_str());
    assert_eq!(
        requests(&alice, "outgoing").await[0]["target"],
        bob.user_id.as_str()
    );

    let accepted = bob
        .client
        .post(
            &format!("{IM}/friends/requests/{}/accept", enc(&alice.user_id)),
            json!({}),
        )
        .await
        .ok();
    assert_eq!(accepted["room_id"], room_id.as_str(), "{accepted}");
    assert_eq!(friend_ids(&bob).await, [alice.user_id.as_str()]);
    // Alice's server learns of the acceptance from Bob's join.
    wait_for_friends(&alice, &[&bob.user_id]).await;
    wait_until("Alice's request to be settled", DELIVERY, || async {
        requests(&alice, "outgoing").await.is_empty().then_some(())
    })
    .await;
    assert!(requests(&bob, "incoming").await.is_empty());
    let direct = bob.account_data("m.direct").await.expect("m.direct");
    assert_eq!(direct[&alice.user_id], json!([room_id]), "{direct}");

    // Each one's moments reach the other's feed, and likes and comments come back.
    let sunset = post(&alice, "Sunset at the pier").await;
    wait_for_moment(&bob, &sunset, "Alice's moment", |_| true).await;
    bob.client
        .put(
            &format!("{IM}/moments/posts/{}/like", enc(&sunset)),
            json!({}),
        )
        .await
        .ok();
    bob.client
        .put(
            &format!("{IM}/moments/posts/{}/comment/{}", enc(&sunset), txn_id()),
            json!({ "text": "Beautiful" }),
        )
        .await
        .ok();
    wait_for_moment(&alice, &sunset, "Bob's like and comment", |item| {
        item["likes"] == json!([bob.user_id]) && item["comments"][0]["body"] == "Beautiful"
    })
    .await;
    // They reach Alice as notifications too, though they came from another server.
    let notifications = alice.client.get(&format!("{V3}/notifications")).await.ok();
    let from_bob: Vec<&str> = notifications["notifications"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["event"]["sender"] == bob.user_id.as_str())
        .filter_map(|n| n["event"]["type"].as_str())
        .collect();
    assert!(from_bob.contains(&"m.reaction"), "{notifications}");
    assert!(from_bob.contains(&"m.room.message"), "{notifications}");
    let hike = post(&bob, "Hiking today").await;
    wait_for_moment(&alice, &hike, "Bob's moment", |item| {
        item["sender"] == bob.user_id.as_str()
    })
    .await;
    let alices = alice
        .client
        .get(&format!("{IM}/moments/user/{}", enc(&bob.user_id)))
        .await
        .ok();
    assert_eq!(alices["chunk"][0]["event_id"], hike.as_str(), "{alices}");

    // A moment deleted on its owner's server leaves the other's feed.
    alice
        .client
        .delete(&format!("{IM}/moments/posts/{}", enc(&sunset)))
        .await
        .ok();
    wait_until(
        "Alice's deleted moment to leave Bob's feed",
        DELIVERY,
        || async {
            (!feed(&bob)
                .await
                .iter()
                .any(|item| item["event_id"] == sunset.as_str()))
            .then_some(())
        },
    )
    .await;

    // Deleting the friend ends it on both servers, and each one's moments leave the other's feed.
    alice
        .client
        .delete(&format!("{IM}/friends/{}", enc(&bob.user_id)))
        .await
        .ok();
    assert!(friend_ids(&alice).await.is_empty());
    wait_for_friends(&bob, &[]).await;
    wait_until("Bob's moment to leave Alice's feed", DELIVERY, || async {
        (!feed(&alice)
            .await
            .iter()
            .any(|item| item["event_id"] == hike.as_str()))
        .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_remote_request_meets_the_privacy_setting_and_a_rejection_reaches_the_requester() {
    let federation = Federation::start(2).await;
    let alice = federation.register(0, "alice", PASSWORD).await;
    let bob = federation.register(1, "bob", PASSWORD).await;

    let privacy = |value: &'static str| {
        let bob = bob.clone();
        async move {
            bob.client
                .put(
                    &format!("{IM}/friends/privacy"),
                    json!({ "requests_from": value }),
                )
                .await
                .ok();
        }
    };
    // Bob's server refuses the invite, and Alice's answers with its reason.
    privacy("nobody").await;
    let refused = request(&alice, &bob, "").await;
    refused.assert_error(403, "M_FORBIDDEN");
    assert!(
        refused.json["error"]
            .as_str()
            .unwrap_or_default()
            .contains("does not accept friend requests"),
        "{}",
        refused.json
    );
    assert!(requests(&alice, "outgoing").await.is_empty());
    assert!(requests(&bob, "incoming").await.is_empty());
    // Friends of friends: Alice and Bob have none in common.
    privacy("friends_of_friends").await;
    request(&alice, &bob, "")
        .await
        .assert_error(403, "M_FORBIDDEN");
    // No empty DM rooms were left behind on Alice's side.
    let joined = alice.client.get(&format!("{V3}/joined_rooms")).await.ok();
    assert_eq!(joined["joined_rooms"], json!([]), "{joined}");

    privacy("anyone").await;
    request(&alice, &bob, "Let's try again").await.ok();
    bob.client
        .post(
            &format!("{IM}/friends/requests/{}/reject", enc(&alice.user_id)),
            json!({}),
        )
        .await
        .ok();
    assert!(requests(&bob, "incoming").await.is_empty());
    wait_until(
        "the rejection to reach Alice's server",
        DELIVERY,
        || async { requests(&alice, "outgoing").await.is_empty().then_some(()) },
    )
    .await;
    assert!(friend_ids(&alice).await.is_empty());
    assert!(friend_ids(&bob).await.is_empty());
}

#[tokio::test]
async fn a_dm_crosses_servers_and_a_later_request_comes_in_a_new_room() {
    let federation = Federation::start(2).await;
    let alice = federation.register(0, "alice", PASSWORD).await;
    let bob = federation.register(1, "bob", PASSWORD).await;
    let (chat, created) = alice.dm(&bob.user_id).await;
    assert!(created);
    // Bob's server took the DM invite as the pair's DM room: asking for it joins it.
    assert_eq!(bob.dm(&alice.user_id).await, (chat.clone(), false));

    let sent = request(&alice, &bob, "Now as friends").await.ok();
    let room_id = sent["room_id"].as_str().expect("room_id").to_owned();
    assert_ne!(
        room_id, chat,
        "an invite cannot reach Bob in the room he is in"
    );
    let incoming = requests(&bob, "incoming").await;
    assert_eq!(incoming[0]["room_id"], room_id.as_str(), "{incoming:?}");
    bob.client
        .post(
            &format!("{IM}/friends/requests/{}/accept", enc(&alice.user_id)),
            json!({}),
        )
        .await
        .ok();
    wait_for_friends(&alice, &[&bob.user_id]).await;
    // The new room is the pair's DM room on both sides now.
    assert_eq!(alice.dm(&bob.user_id).await, (room_id.clone(), false));
    assert_eq!(bob.dm(&alice.user_id).await, (room_id, false));
}

#[tokio::test]
async fn group_ownership_passes_to_a_remote_member_where_the_room_version_allows() {
    let federation = Federation::start(2).await;
    let alice = federation.register(0, "alice", PASSWORD).await;
    let bob = federation.register(1, "bob", PASSWORD).await;
    let transfer = |room_id: String| {
        let (alice, bob) = (alice.clone(), bob.clone());
        async move {
            alice
                .client
                .post(
                    &format!("{IM}/groups/{}/owner", enc(&room_id)),
                    json!({ "user_id": bob.user_id }),
                )
                .await
        }
    };
    let mut rooms = Vec::new();
    for version in ["11", "12"] {
        let room_id = alice
            .create_room(json!({ "preset": "private_chat", "room_version": version }))
            .await;
        alice.invite_user(&room_id, &bob.user_id).await;
        bob.join_room(&room_id).await;
        rooms.push(room_id);
    }
    // Version 11: one power levels event, which Bob's server applies.
    let moved = transfer(rooms[0].clone()).await.ok();
    assert_eq!(moved["room_id"], rooms[0].as_str());
    wait_until("Bob's server to see him as the owner", DELIVERY, || async {
        let levels = bob
            .state_content(&rooms[0], "m.room.power_levels", "")
            .await;
        (levels["users"][&bob.user_id] == 100).then_some(())
    })
    .await;
    bob.set_state(&rooms[0], "m.room.name", "", json!({ "name": "Bob's now" }))
        .await;
    // Version 12: only Bob's own server could make the upgrade that passes it on.
    transfer(rooms[1].clone())
        .await
        .assert_error(400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn a_recall_and_mute_all_reach_the_other_server() {
    let federation = Federation::start(2).await;
    let alice = federation.register(0, "alice", PASSWORD).await;
    let bob = federation.register(1, "bob", PASSWORD).await;
    let room_id = alice
        .create_room(json!({ "preset": "private_chat", "room_version": "11" }))
        .await;
    alice.invite_user(&room_id, &bob.user_id).await;
    bob.join_room(&room_id).await;

    let event_path =
        |event_id: &str| format!("{V3}/rooms/{}/event/{}", enc(&room_id), enc(event_id));
    let message = bob.send_text(&room_id, "Oops, wrong group").await;
    wait_until(
        "Bob's message to reach Alice's server",
        DELIVERY,
        || async { (alice.client.get(&event_path(&message)).await.status == 200).then_some(()) },
    )
    .await;
    // Bob recalls it (inside the default window): pruned on both servers, showing who did.
    bob.client
        .put(
            &format!(
                "{V3}/rooms/{}/redact/{}/{}",
                enc(&room_id),
                enc(&message),
                txn_id()
            ),
            json!({}),
        )
        .await
        .ok();
    let seen = wait_until("the recall to reach Alice's server", DELIVERY, || async {
        let event = alice.client.get(&event_path(&message)).await.ok();
        (event["content"] == json!({})).then_some(event)
    })
    .await;
    assert_eq!(
        seen["unsigned"]["redacted_because"]["sender"],
        bob.user_id.as_str(),
        "{seen}"
    );

    // Alice mutes everyone: Bob's server applies the raised send level to him.
    alice
        .client
        .put(
            &format!("{IM}/groups/{}/mute_all", enc(&room_id)),
            json!({ "muted": true }),
        )
        .await
        .ok();
    wait_until(
        "Bob's server to see the raised send level",
        DELIVERY,
        || async {
            let levels = bob.state_content(&room_id, "m.room.power_levels", "").await;
            (levels["events_default"] == 50).then_some(())
        },
    )
    .await;
    bob.send_event(
        &room_id,
        "m.room.message",
        json!({ "msgtype": "m.text", "body": "Hello?" }),
    )
    .await
    .assert_error(403, "M_FORBIDDEN");
}
