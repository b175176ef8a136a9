//! Presence: `GET` and `PUT /presence/{userId}/status`.
//!
//! Presence is visible to the user themself and to users who share a joined room with them;
//! anyone else gets 403 `M_FORBIDDEN` (as Synapse). Status messages are limited to 4096 bytes
//! (400 `M_INVALID_PARAM`). With `presence.enabled = false`, `PUT` is accepted and ignored and
//! `GET` answers `offline` for everyone.

use std::time::Duration;

use complement_tests::{TestServer, User, V3, Value, enc, json, wait_until};

const PASSWORD: &str = "presence-pw";

async fn register(server: &TestServer, name: &str) -> User {
    server.client().register(name, PASSWORD).await
}

fn status_path(user_id: &str) -> String {
    format!("{V3}/presence/{}/status", enc(user_id))
}

async fn set_presence(user: &User, body: Value) {
    let response = user.client.put(&status_path(&user.user_id), body).await;
    assert_eq!(response.ok(), json!({}));
}

async fn presence_of(viewer: &User, user_id: &str) -> Value {
    viewer.client.get(&status_path(user_id)).await.ok()
}

#[tokio::test]
async fn own_presence_and_status_message_round_trip() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;

    set_presence(
        &alice,
        json!({ "presence": "online", "status_msg": "Making cupcakes" }),
    )
    .await;
    let own = presence_of(&alice, &alice.user_id).await;
    assert_eq!(own["presence"], "online", "{own}");
    assert_eq!(own["status_msg"], "Making cupcakes", "{own}");
    assert_eq!(own["currently_active"], true, "{own}");
    assert!(own["last_active_ago"].is_u64(), "{own}");

    // Setting presence without a message clears the message.
    set_presence(&alice, json!({ "presence": "unavailable" })).await;
    let own = presence_of(&alice, &alice.user_id).await;
    assert_eq!(own["presence"], "unavailable", "{own}");
    assert!(own.get("status_msg").is_none(), "{own}");
    assert!(own.get("currently_active").is_none(), "{own}");

    set_presence(
        &alice,
        json!({ "presence": "offline", "status_msg": "gone fishing" }),
    )
    .await;
    let own = presence_of(&alice, &alice.user_id).await;
    assert_eq!(own["presence"], "offline", "{own}");
    assert_eq!(own["status_msg"], "gone fishing", "{own}");

    let path = status_path(&alice.user_id);
    for body in [
        json!({ "presence": "busy" }),
        json!({ "presence": "online", "status_msg": "x".repeat(4097) }),
    ] {
        alice
            .client
            .put(&path, body)
            .await
            .assert_error(400, "M_INVALID_PARAM");
    }
    alice
        .client
        .put(&path, json!({ "status_msg": "no state" }))
        .await
        .assert_error(400, "M_BAD_JSON");
    // The limit is inclusive.
    set_presence(
        &alice,
        json!({ "presence": "online", "status_msg": "x".repeat(4096) }),
    )
    .await;
}

#[tokio::test]
async fn presence_is_only_set_for_oneself() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    bob.client
        .put(
            &status_path(&alice.user_id),
            json!({ "presence": "online", "status_msg": "impostor" }),
        )
        .await
        .assert_error(403, "M_FORBIDDEN");
    let own = presence_of(&alice, &alice.user_id).await;
    assert!(own.get("status_msg").is_none(), "{own}");
}

#[tokio::test]
async fn presence_is_visible_to_room_mates_only() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    set_presence(
        &alice,
        json!({ "presence": "online", "status_msg": "Hello" }),
    )
    .await;

    let path = status_path(&alice.user_id);
    bob.client.get(&path).await.assert_error(403, "M_FORBIDDEN");
    // A user who does not exist shares no room with anyone.
    bob.client
        .get(&status_path(&server.user_id("nobody")))
        .await
        .assert_error(403, "M_FORBIDDEN");

    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;
    // An invitation is no shared room yet.
    alice.invite_user(&room_id, &bob.user_id).await;
    bob.client.get(&path).await.assert_error(403, "M_FORBIDDEN");

    bob.join_room(&room_id).await;
    let seen = presence_of(&bob, &alice.user_id).await;
    assert_eq!(seen["presence"], "online", "{seen}");
    assert_eq!(seen["status_msg"], "Hello", "{seen}");
    // A room-mate who never set presence is offline.
    let bobs = presence_of(&alice, &bob.user_id).await;
    assert_eq!(bobs["presence"], "offline", "{bobs}");

    bob.leave_room(&room_id).await;
    bob.client.get(&path).await.assert_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn idle_users_become_unavailable_then_offline() {
    let server = TestServer::builder()
        .set("presence.idle_timeout_secs", 1)
        .set("presence.offline_timeout_secs", 3)
        .start()
        .await;
    let alice = register(&server, "alice").await;
    set_presence(&alice, json!({ "presence": "online", "status_msg": "brb" })).await;

    for state in ["unavailable", "offline"] {
        let seen = wait_until(
            &format!("alice to become {state}"),
            Duration::from_secs(15),
            || async {
                let own = presence_of(&alice, &alice.user_id).await;
                (own["presence"] == state).then_some(own)
            },
        )
        .await;
        assert_eq!(seen["status_msg"], "brb", "{seen}");
    }

    // Setting presence online is activity: online again at once.
    set_presence(
        &alice,
        json!({ "presence": "online", "status_msg": "back" }),
    )
    .await;
    let own = presence_of(&alice, &alice.user_id).await;
    assert_eq!(own["presence"], "online", "{own}");
}

#[tokio::test]
async fn status_message_survives_a_restart() {
    let mut server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    set_presence(
        &alice,
        json!({ "presence": "unavailable", "status_msg": "In a meeting" }),
    )
    .await;

    server.stop();
    server.run().await;

    let alice = User {
        client: server.client().with_token(&alice.access_token),
        ..alice
    };
    let own = presence_of(&alice, &alice.user_id).await;
    assert_eq!(own["status_msg"], "In a meeting", "{own}");
    // Nobody has synced since the restart: unavailable until the offline timeout passes.
    assert_eq!(own["presence"], "unavailable", "{own}");
}

#[tokio::test]
async fn disabled_presence_accepts_and_ignores_updates() {
    let server = TestServer::builder()
        .set("presence.enabled", false)
        .start()
        .await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;

    set_presence(
        &alice,
        json!({ "presence": "online", "status_msg": "here" }),
    )
    .await;
    assert_eq!(
        presence_of(&alice, &alice.user_id).await,
        json!({ "presence": "offline" })
    );
    // Nothing is tracked, so nothing is hidden either.
    assert_eq!(
        presence_of(&bob, &alice.user_id).await,
        json!({ "presence": "offline" })
    );
    bob.client
        .put(
            &status_path(&alice.user_id),
            json!({ "presence": "online" }),
        )
        .await
        .assert_error(403, "M_FORBIDDEN");
}
