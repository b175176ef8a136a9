//! Recall: members may redact their own messages within `im.recall_window_secs`; room admins
//! (power level >= the room's `redact` level) at any time; past the window the redaction is
//! refused with 403 `M_FORBIDDEN` and the reason, whichever endpoint it is sent through.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use complement_tests::rooms::{room_path, txn_id};
use complement_tests::{Response, TestServer, User, Value, enc, json, wait_until};

const PASSWORD: &str = "im-recall-pw";

async fn redact(user: &User, room_id: &str, event_id: &str) -> Response {
    let path = room_path(
        room_id,
        &format!("redact/{}/{}", enc(event_id), enc(&txn_id())),
    );
    user.client.put(&path, json!({ "reason": "recall" })).await
}

async fn event(user: &User, room_id: &str, event_id: &str) -> Value {
    user.client
        .get(&room_path(room_id, &format!("event/{}", enc(event_id))))
        .await
        .ok()
}

/// Waits until the window since the event was sent has passed by the server's clock (the
/// same machine's), with a deadline.
async fn wait_past_window(sent: &Value, window_secs: u64) {
    let sent_ms = sent["origin_server_ts"].as_u64().expect("origin_server_ts");
    let until = sent_ms + window_secs * 1000 + 100;
    wait_until(
        "the recall window to pass",
        Duration::from_secs(window_secs + 10),
        || async move {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or_default();
            (now > u128::from(until)).then_some(())
        },
    )
    .await;
}

/// Alice's room (she is its admin) with Bob joined as an ordinary member.
async fn room(server: &TestServer) -> (User, User, String) {
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let room_id = alice
        .create_room(json!({ "preset": "public_chat", "room_version": "11" }))
        .await;
    bob.join_room(&room_id).await;
    (alice, bob, room_id)
}

#[tokio::test]
async fn recall_inside_the_window_prunes_the_message_and_shows_who_recalled_it() {
    let server = TestServer::builder()
        .set("im.recall_window_secs", 60)
        .start()
        .await;
    let (alice, bob, room_id) = room(&server).await;
    let event_id = bob.send_text(&room_id, "sent to the wrong chat").await;
    let redaction = redact(&bob, &room_id, &event_id).await.ok();
    let seen = event(&alice, &room_id, &event_id).await;
    assert_eq!(seen["content"], json!({}), "pruned: {seen}");
    let because = &seen["unsigned"]["redacted_because"];
    assert_eq!(because["sender"], bob.user_id.as_str(), "{seen}");
    assert_eq!(because["event_id"], redaction["event_id"], "{seen}");
}

#[tokio::test]
async fn past_the_window_members_are_refused_and_admins_are_not() {
    let server = TestServer::builder()
        .set("im.recall_window_secs", 1)
        .start()
        .await;
    let (alice, bob, room_id) = room(&server).await;
    let bobs = bob.send_text(&room_id, "bob's old message").await;
    let alices = alice.send_text(&room_id, "alice's old message").await;
    let sent = event(&bob, &room_id, &alices).await;
    wait_past_window(&sent, 1).await;

    let refused = redact(&bob, &room_id, &bobs).await;
    refused.assert_error(403, "M_FORBIDDEN");
    let reason = refused.json["error"].as_str().unwrap_or_default();
    assert!(reason.contains("within 1 seconds"), "{}", refused.json);
    // The same through /send: the window is the server's policy, not one endpoint's.
    bob.send_event(&room_id, "m.room.redaction", json!({ "redacts": bobs }))
        .await
        .assert_error(403, "M_FORBIDDEN");
    let still = event(&alice, &room_id, &bobs).await;
    assert_eq!(still["content"]["body"], "bob's old message", "{still}");

    // The admin recalls anything at any time: her own message and Bob's.
    redact(&alice, &room_id, &alices).await.ok();
    redact(&alice, &room_id, &bobs).await.ok();
    let pruned = event(&bob, &room_id, &bobs).await;
    assert_eq!(pruned["content"], json!({}), "{pruned}");
    assert_eq!(
        pruned["unsigned"]["redacted_because"]["sender"],
        alice.user_id.as_str(),
        "{pruned}"
    );
}

#[tokio::test]
async fn a_member_given_the_redact_level_is_an_admin_for_recall() {
    let server = TestServer::builder()
        .set("im.recall_window_secs", 1)
        .start()
        .await;
    let (alice, bob, room_id) = room(&server).await;
    let mut levels = alice
        .state_content(&room_id, "m.room.power_levels", "")
        .await;
    levels["users"][bob.user_id.as_str()] = json!(50);
    alice
        .set_state(&room_id, "m.room.power_levels", "", levels)
        .await;
    let bobs = bob.send_text(&room_id, "moderator's message").await;
    let sent = event(&bob, &room_id, &bobs).await;
    wait_past_window(&sent, 1).await;
    redact(&bob, &room_id, &bobs).await.ok();
}

#[tokio::test]
async fn a_window_of_zero_is_unlimited() {
    let server = TestServer::builder()
        .set("im.recall_window_secs", 0)
        .start()
        .await;
    let (_alice, bob, room_id) = room(&server).await;
    let bobs = bob.send_text(&room_id, "any time").await;
    let sent = event(&bob, &room_id, &bobs).await;
    wait_past_window(&sent, 1).await;
    redact(&bob, &room_id, &bobs).await.ok();
}
