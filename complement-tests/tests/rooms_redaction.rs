//! Redaction: `PUT /rooms/{roomId}/redact/{eventId}/{txnId}` and `m.room.redaction` through
//! `/send`: who may redact what, the pruned event as clients then read it (`GET /event`,
//! `/messages`, state), `unsigned.redacted_because`, and transaction idempotency.

use complement_tests::rooms::{chunk, room_path, state_path, text, txn_id};
use complement_tests::{Response, TestServer, User, Value, enc, json};

const PASSWORD: &str = "rooms-redaction-pw";

async fn register(server: &TestServer, name: &str) -> User {
    server.client().register(name, PASSWORD).await
}

fn redact_path(room_id: &str, event_id: &str, txn: &str) -> String {
    room_path(room_id, &format!("redact/{}/{}", enc(event_id), enc(txn)))
}

async fn redact(user: &User, room_id: &str, event_id: &str, body: Value) -> Response {
    user.client
        .put(&redact_path(room_id, event_id, &txn_id()), body)
        .await
}

async fn get_event(user: &User, room_id: &str, event_id: &str) -> Value {
    user.client
        .get(&room_path(room_id, &format!("event/{}", enc(event_id))))
        .await
        .ok()
}

/// Alice's public room (v12 unless `version` says otherwise) with Bob and Carol joined.
async fn room_of_three(server: &TestServer, version: Option<&str>) -> (User, User, User, String) {
    let alice = register(server, "alice").await;
    let bob = register(server, "bob").await;
    let carol = register(server, "carol").await;
    let mut body = json!({ "preset": "public_chat" });
    if let Some(version) = version {
        body["room_version"] = json!(version);
    }
    let room_id = alice.create_room(body).await;
    bob.join_room(&room_id).await;
    carol.join_room(&room_id).await;
    (alice, bob, carol, room_id)
}

fn rich_message(body: &str) -> Value {
    json!({
        "msgtype": "m.text",
        "body": body,
        "format": "org.matrix.custom.html",
        "formatted_body": format!("<b>{body}</b>"),
        "org.example.extra": { "nested": true },
    })
}

#[tokio::test]
async fn sender_redacts_own_message_and_everyone_sees_it_pruned() {
    let server = TestServer::start().await;
    let (alice, bob, _carol, room_id) = room_of_three(&server, None).await;
    let resp = bob
        .send_event(&room_id, "m.room.message", rich_message("oops"))
        .await;
    let event_id = resp.ok()["event_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // Read before the redaction, so that a copy kept in memory would show if it outlived it.
    let before = get_event(&alice, &room_id, &event_id).await;
    assert_eq!(before["content"]["body"], "oops", "{before}");

    let body = redact(&bob, &room_id, &event_id, json!({ "reason": "typo" }))
        .await
        .ok();
    let redaction_id = body["event_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no event_id: {body}"))
        .to_owned();
    assert!(redaction_id.starts_with('$'), "{body}");
    assert_ne!(redaction_id, event_id);

    // Rooms v11 redaction algorithm: an m.room.message keeps no content keys.
    let event = get_event(&alice, &room_id, &event_id).await;
    assert_eq!(event["content"], json!({}), "{event}");
    assert_eq!(event["type"], "m.room.message", "{event}");
    assert_eq!(event["sender"], bob.user_id.as_str(), "{event}");
    assert_eq!(event["event_id"], event_id.as_str(), "{event}");
    let because = &event["unsigned"]["redacted_because"];
    assert_eq!(because["event_id"], redaction_id.as_str(), "{event}");
    assert_eq!(because["type"], "m.room.redaction", "{event}");
    assert_eq!(because["sender"], bob.user_id.as_str(), "{event}");
    assert_eq!(because["content"]["reason"], "typo", "{event}");
    // From room version 11, `redacts` is a content property.
    assert_eq!(because["content"]["redacts"], event_id.as_str(), "{event}");

    // The redaction itself is an event in the timeline, after the message, which is pruned
    // there too.
    let page = alice.messages(&room_id, "dir=b&limit=2").await;
    let events = chunk(&page);
    assert_eq!(events[0]["event_id"], redaction_id.as_str(), "{page}");
    assert_eq!(events[0]["type"], "m.room.redaction", "{page}");
    assert_eq!(events[0]["content"]["redacts"], event_id.as_str(), "{page}");
    assert_eq!(events[0]["content"]["reason"], "typo", "{page}");
    assert_eq!(events[1]["event_id"], event_id.as_str(), "{page}");
    assert_eq!(events[1]["content"], json!({}), "{page}");
    assert!(!page.to_string().contains("oops"), "{page}");

    // GET /event of the redaction works as for any event.
    let redaction = get_event(&alice, &room_id, &redaction_id).await;
    assert_eq!(
        redaction["content"]["redacts"],
        event_id.as_str(),
        "{redaction}"
    );
}

#[tokio::test]
async fn plain_member_cannot_redact_others_events() {
    let server = TestServer::start().await;
    let (alice, bob, _carol, room_id) = room_of_three(&server, None).await;
    let event_id = alice.send_text(&room_id, "mine").await;
    // redaction.yaml: only users at the `redact` level may redact events of others.
    redact(&bob, &room_id, &event_id, json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    let event = get_event(&bob, &room_id, &event_id).await;
    assert_eq!(event["content"], text("mine"), "{event}");
    assert!(
        event["unsigned"].get("redacted_because").is_none(),
        "{event}"
    );
    // No redaction event appeared.
    let page = bob.messages(&room_id, "dir=b&limit=1").await;
    assert_eq!(chunk(&page)[0]["event_id"], event_id.as_str(), "{page}");
}

#[tokio::test]
async fn moderators_can_redact_others_events() {
    let server = TestServer::start().await;
    let (alice, bob, carol, room_id) = room_of_three(&server, None).await;
    let first = bob.send_text(&room_id, "first").await;
    let second = bob.send_text(&room_id, "second").await;
    let by_alice = alice.send_text(&room_id, "from the creator").await;

    // The creator redacts Bob's event.
    redact(&alice, &room_id, &first, json!({ "reason": "off topic" }))
        .await
        .assert_status(200);
    let event = get_event(&bob, &room_id, &first).await;
    assert_eq!(event["content"], json!({}), "{event}");
    assert_eq!(
        event["unsigned"]["redacted_because"]["sender"],
        alice.user_id.as_str(),
        "{event}"
    );

    // Carol at the redact level (50) may redact anybody's events: the rule looks only at
    // her level (redaction.yaml), not at the original sender's.
    let mut power_levels = alice
        .state_content(&room_id, "m.room.power_levels", "")
        .await;
    power_levels["users"][&carol.user_id] = json!(50);
    alice
        .put_state(&room_id, "m.room.power_levels", "", power_levels)
        .await
        .assert_status(200);
    redact(&carol, &room_id, &second, json!({}))
        .await
        .assert_status(200);
    redact(&carol, &room_id, &by_alice, json!({}))
        .await
        .assert_status(200);
    for event_id in [&second, &by_alice] {
        let event = get_event(&bob, &room_id, event_id).await;
        assert_eq!(event["content"], json!({}), "{event}");
    }
}

#[tokio::test]
async fn non_members_cannot_redact() {
    let server = TestServer::start().await;
    let (alice, bob, _carol, room_id) = room_of_three(&server, None).await;
    let mallory = register(&server, "mallory").await;
    let event_id = alice.send_text(&room_id, "safe").await;
    redact(&mallory, &room_id, &event_id, json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    // Nor can someone who left, even for their own events.
    let own = bob.send_text(&room_id, "bob's").await;
    bob.leave_room(&room_id).await;
    redact(&bob, &room_id, &own, json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    assert_eq!(
        get_event(&alice, &room_id, &event_id).await["content"],
        text("safe")
    );
    assert_eq!(
        get_event(&alice, &room_id, &own).await["content"],
        text("bob's")
    );
}

#[tokio::test]
async fn redaction_transaction_id_is_idempotent() {
    let server = TestServer::start().await;
    let (alice, _bob, _carol, room_id) = room_of_three(&server, None).await;
    let event_id = alice.send_text(&room_id, "to go").await;
    let txn = txn_id();
    let path = redact_path(&room_id, &event_id, &txn);
    let first = alice.client.put(&path, json!({ "reason": "a" })).await.ok();
    let again = alice.client.put(&path, json!({ "reason": "a" })).await.ok();
    assert_eq!(first["event_id"], again["event_id"], "{first} vs {again}");
    // Only one redaction event in the timeline.
    let page = alice.messages(&room_id, "dir=b&limit=10").await;
    let redactions = chunk(&page)
        .iter()
        .filter(|e| e["type"] == "m.room.redaction")
        .count();
    assert_eq!(redactions, 1, "{page}");
}

#[tokio::test]
async fn redaction_sent_through_send_endpoint() {
    let server = TestServer::start().await;
    let (alice, bob, _carol, room_id) = room_of_three(&server, None).await;
    let event_id = bob.send_text(&room_id, "remove me").await;
    // room_send.yaml (v1.18): servers MUST allow m.room.redaction through /send; in v11+
    // rooms `redacts` is in the content.
    let redaction_id = bob
        .send_event(
            &room_id,
            "m.room.redaction",
            json!({ "redacts": event_id, "reason": "via send" }),
        )
        .await
        .ok()["event_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let event = get_event(&alice, &room_id, &event_id).await;
    assert_eq!(event["content"], json!({}), "{event}");
    assert_eq!(
        event["unsigned"]["redacted_because"]["event_id"],
        redaction_id.as_str(),
        "{event}"
    );
}

#[tokio::test]
async fn redacted_state_events_keep_only_protected_keys() {
    let server = TestServer::start().await;
    let (alice, bob, _carol, room_id) = room_of_three(&server, None).await;
    let name_id = alice
        .set_state(
            &room_id,
            "m.room.name",
            "",
            json!({ "name": "Secret plans" }),
        )
        .await;
    bob.set_state(
        &room_id,
        "m.room.member",
        &bob.user_id,
        json!({ "membership": "join", "displayname": "Bob the Builder" }),
    )
    .await;
    let member = bob
        .client
        .get(&format!(
            "{}?format=event",
            state_path(&room_id, "m.room.member", &bob.user_id)
        ))
        .await
        .ok();
    let member_id = member["event_id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        bob.state_content(&room_id, "m.room.name", "").await,
        json!({ "name": "Secret plans" })
    );

    redact(&alice, &room_id, &name_id, json!({}))
        .await
        .assert_status(200);
    redact(&alice, &room_id, &member_id, json!({}))
        .await
        .assert_status(200);

    // The current state is the redacted event: m.room.name keeps nothing, m.room.member
    // keeps `membership` (rooms v11 redaction algorithm).
    assert_eq!(
        bob.state_content(&room_id, "m.room.name", "").await,
        json!({})
    );
    assert_eq!(
        alice
            .state_content(&room_id, "m.room.member", &bob.user_id)
            .await,
        json!({ "membership": "join" })
    );
    // Bob is still joined and can still talk.
    bob.send_text(&room_id, "still here").await;
    let event = get_event(&bob, &room_id, &member_id).await;
    assert_eq!(event["content"], json!({ "membership": "join" }), "{event}");
    assert_eq!(event["state_key"], bob.user_id.as_str(), "{event}");
}

#[tokio::test]
async fn redaction_in_a_v10_room_has_top_level_redacts() {
    let server = TestServer::start().await;
    let (alice, bob, _carol, room_id) = room_of_three(&server, Some("10")).await;
    let event_id = bob
        .send_event(&room_id, "m.room.message", rich_message("old style"))
        .await
        .ok()["event_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let redaction_id = redact(&bob, &room_id, &event_id, json!({ "reason": "why" }))
        .await
        .ok()["event_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let event = get_event(&alice, &room_id, &event_id).await;
    assert_eq!(event["content"], json!({}), "{event}");
    // Before room version 11 the redacted event ID is a top-level `redacts`.
    let redaction = get_event(&alice, &room_id, &redaction_id).await;
    assert_eq!(redaction["redacts"], event_id.as_str(), "{redaction}");
    assert_eq!(redaction["content"]["reason"], "why", "{redaction}");
}
