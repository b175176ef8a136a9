//! Ignoring users (spec: Client-Server API, "Ignoring Users", `m.ignored_user_list`): a user
//! is not sent the events of users they ignore, except state events; nor their invites; and
//! nothing they send notifies. Un-ignoring sends their later events again.

use complement_tests::{
    TestServer, User, V3, enc, json,
    rooms::{chunk, message_bodies, room_path},
    sync::{bodies, room, timeline},
};

const PASSWORD: &str = "ignore-users-pw";

async fn ignore(user: &User, ignored: &[&str]) {
    let ignored: serde_json::Map<String, serde_json::Value> = ignored
        .iter()
        .map(|user_id| ((*user_id).to_owned(), json!({})))
        .collect();
    user.client
        .put(
            &format!(
                "{V3}/user/{}/account_data/m.ignored_user_list",
                enc(&user.user_id)
            ),
            json!({ "ignored_users": ignored }),
        )
        .await
        .assert_status(200);
}

#[tokio::test]
async fn events_and_invites_of_ignored_users_are_not_sent_and_do_not_notify() {
    let server = TestServer::start().await;
    let client = server.client();
    let alice = client.register("alice", PASSWORD).await;
    let bob = client.register("bob", PASSWORD).await;
    let carol = client.register("carol", PASSWORD).await;
    let room_id = alice
        .create_room(json!({
            "preset": "public_chat",
            "power_level_content_override": { "users": { bob.user_id.as_str(): 100 } },
        }))
        .await;
    bob.join_room(&room_id).await;
    carol.join_room(&room_id).await;
    ignore(&alice, &[&bob.user_id]).await;

    let hidden = bob.send_text(&room_id, "from bob").await;
    bob.set_state(
        &room_id,
        "m.room.topic",
        "",
        json!({ "topic": "bob's topic" }),
    )
    .await;
    carol.send_text(&room_id, "from carol").await;

    let sync = alice.initial_sync().await;
    let events = timeline(&sync, &room_id);
    assert_eq!(bodies(&events), ["from carol"], "{sync}");
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "m.room.topic" && e["sender"] == bob.user_id.as_str()),
        "state events of ignored users are still sent: {sync}"
    );
    // Carol's message notifies Alice; Bob's does not.
    assert_eq!(
        room(&sync, "join", &room_id)["unread_notifications"]["notification_count"],
        1,
        "{sync}"
    );
    let page = alice.messages(&room_id, "dir=b&limit=50").await;
    assert_eq!(message_bodies(chunk(&page)), ["from carol"], "{page}");
    alice
        .client
        .get(&room_path(&room_id, &format!("event/{}", enc(&hidden))))
        .await
        .assert_error(404, "M_NOT_FOUND");

    // Bob's invite is not sent; Carol's is.
    let bobs_room = bob.create_room(json!({ "invite": [alice.user_id] })).await;
    let carols_room = carol
        .create_room(json!({ "invite": [alice.user_id] }))
        .await;
    let sync = alice.initial_sync().await;
    let invites = &sync["rooms"]["invite"];
    assert!(invites.get(&bobs_room).is_none(), "{sync}");
    assert!(invites.get(&carols_room).is_some(), "{sync}");

    // Un-ignored, Bob's later messages are sent again.
    ignore(&alice, &[]).await;
    bob.send_text(&room_id, "bob again").await;
    let sync = alice.initial_sync().await;
    let events = timeline(&sync, &room_id);
    assert!(bodies(&events).contains(&"bob again".to_owned()), "{sync}");
}
