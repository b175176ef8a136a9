//! EDUs between Tessera servers (spec: Server-Server API, "Typing Notifications",
//! "Receipts", "Send-to-device messaging", "Device Management", "Presence"): what a user does on one
//! server shows in the syncs of users on the other.

use std::time::Duration;

use complement_tests::{
    User, V3, Value, enc,
    federation::{Federation, federated_server_name},
    json,
    rooms::room_path,
    sync::{ephemeral, next_batch},
    wait_until,
};

const PASSWORD: &str = "federation-edus-pw";
const DELIVERY: Duration = Duration::from_secs(30);

/// Alice on hs0 with a public room `#edus`, Bob on hs1 joined to it.
async fn joined(federation: &Federation) -> (User, User, String) {
    let alice = federation.register(0, "alice", PASSWORD).await;
    let bob = federation.register(1, "bob", PASSWORD).await;
    let room_id = alice
        .create_room(json!({ "preset": "public_chat", "room_alias_name": "edus" }))
        .await;
    let alias = format!("#edus:{}", federated_server_name(0));
    bob.client
        .post(&format!("{V3}/join/{}", enc(&alias)), json!({}))
        .await
        .ok();
    (alice, bob, room_id)
}

/// Waits until `check` finds what it looks for in `user`'s initial sync.
async fn wait_for_sync<T>(user: &User, what: &str, check: impl Fn(&Value) -> Option<T>) -> T {
    wait_until(what, DELIVERY, || async {
        check(&user.initial_sync().await)
    })
    .await
}

fn typing_users(sync: &Value, room_id: &str) -> Vec<Value> {
    ephemeral(sync, room_id, "m.typing")
        .and_then(|typing| typing["content"]["user_ids"].as_array().cloned())
        .unwrap_or_default()
}

#[tokio::test]
async fn typing_notices_reach_the_other_server() {
    let federation = Federation::start(2).await;
    let (alice, bob, room_id) = joined(&federation).await;
    let typing = room_path(&room_id, &format!("typing/{}", enc(&bob.user_id)));

    bob.client
        .put(&typing, json!({ "typing": true, "timeout": 20_000 }))
        .await
        .ok();
    wait_for_sync(&alice, "Alice to see Bob typing", |sync| {
        typing_users(sync, &room_id)
            .contains(&json!(bob.user_id))
            .then_some(())
    })
    .await;

    bob.client
        .put(&typing, json!({ "typing": false }))
        .await
        .ok();
    wait_for_sync(&alice, "Alice to see Bob stop typing", |sync| {
        (!typing_users(sync, &room_id).contains(&json!(bob.user_id))).then_some(())
    })
    .await;
}

#[tokio::test]
async fn read_receipts_reach_the_other_server() {
    let federation = Federation::start(2).await;
    let (alice, bob, room_id) = joined(&federation).await;
    let event_id = alice.send_text(&room_id, "did you read this?").await;
    // Bob's server has the event once his history shows it.
    wait_until("Bob's server to have the message", DELIVERY, || async {
        let context = bob
            .client
            .get(&room_path(&room_id, &format!("event/{}", enc(&event_id))))
            .await;
        (context.status == 200).then_some(())
    })
    .await;
    bob.client
        .post(
            &room_path(&room_id, &format!("receipt/m.read/{}", enc(&event_id))),
            json!({}),
        )
        .await
        .ok();

    let receipt = wait_for_sync(&alice, "Alice to see Bob's receipt", |sync| {
        let receipts = ephemeral(sync, &room_id, "m.receipt")?;
        let read = &receipts["content"][&event_id]["m.read"][&bob.user_id];
        read.is_object().then(|| read.clone())
    })
    .await;
    assert!(receipt["ts"].is_u64(), "{receipt}");
}

#[tokio::test]
async fn to_device_messages_reach_devices_on_the_other_server_once() {
    let federation = Federation::start(2).await;
    let (alice, bob, _room_id) = joined(&federation).await;
    let send = format!("{V3}/sendToDevice/m.room_key_request/txn-remote");
    let body = json!({ "messages": { (bob.user_id.clone()): {
        (bob.device_id.clone()): { "action": "request", "request_id": "r1" },
    } } });
    alice.client.put(&send, body.clone()).await.ok();
    // A retry of the same transaction is not delivered again.
    alice.client.put(&send, body).await.ok();

    let events = wait_for_sync(&bob, "Bob to receive the message", |sync| {
        let events = sync["to_device"]["events"].as_array()?;
        (!events.is_empty()).then(|| events.clone())
    })
    .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["sender"], alice.user_id.as_str());
    assert_eq!(events[0]["type"], "m.room_key_request");
    assert_eq!(events[0]["content"]["request_id"], "r1");
    // A later message with another transaction ID arrives too, to every device ("*").
    alice
        .client
        .put(
            &format!("{V3}/sendToDevice/m.room_key_request/txn-remote-2"),
            json!({ "messages": { (bob.user_id.clone()): { "*": { "request_id": "r2" } } } }),
        )
        .await
        .ok();
    wait_for_sync(&bob, "Bob to receive the second message", |sync| {
        sync["to_device"]["events"]
            .as_array()?
            .iter()
            .any(|event| event["content"]["request_id"] == "r2")
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn device_list_changes_reach_the_other_server() {
    let federation = Federation::start(2).await;
    let (alice, bob, _room_id) = joined(&federation).await;
    let since = next_batch(&alice.initial_sync().await);
    // Bob signs in on a second device and signs out of it again: the device is deleted.
    let second = federation.servers[1].client().login("bob", PASSWORD).await;
    assert_ne!(second.device_id, bob.device_id);
    second
        .client
        .post(&format!("{V3}/logout"), json!({}))
        .await
        .ok();

    wait_until("Alice's sync to list Bob as changed", DELIVERY, || async {
        let sync = alice.sync_since(&since).await;
        sync["device_lists"]["changed"]
            .as_array()?
            .contains(&json!(bob.user_id))
            .then_some(())
    })
    .await;
}

fn presence_of<'a>(sync: &'a Value, user_id: &str) -> Option<&'a Value> {
    sync["presence"]["events"]
        .as_array()?
        .iter()
        .find(|event| event["sender"] == user_id)
        .map(|event| &event["content"])
}

#[tokio::test]
async fn presence_reaches_the_other_server() {
    // Spec: Server-Server API, "Presence": Alice's changes reach Bob's server as `m.presence`
    // EDUs, and Bob sees them through GET /presence and sync.
    let federation = Federation::start(2).await;
    let (alice, bob, _room_id) = joined(&federation).await;
    let alice_status = format!("{V3}/presence/{}/status", enc(&alice.user_id));

    alice
        .client
        .put(
            &alice_status,
            json!({ "presence": "online", "status_msg": "hiking" }),
        )
        .await
        .ok();
    wait_until("Bob to see Alice online and hiking", DELIVERY, || async {
        let seen = bob.client.get(&alice_status).await.ok();
        (seen["presence"] == "online" && seen["status_msg"] == "hiking").then_some(())
    })
    .await;
    let content = wait_for_sync(&bob, "Alice's presence in Bob's sync", |sync| {
        presence_of(sync, &alice.user_id).cloned()
    })
    .await;
    assert_eq!(content["presence"], "online", "{content}");
    assert_eq!(content["status_msg"], "hiking", "{content}");

    alice
        .client
        .put(&alice_status, json!({ "presence": "unavailable" }))
        .await
        .ok();
    wait_until("Bob to see Alice away", DELIVERY, || async {
        let seen = bob.client.get(&alice_status).await.ok();
        (seen["presence"] == "unavailable" && seen.get("status_msg").is_none_or(Value::is_null))
            .then_some(())
    })
    .await;

    // Someone sharing no room with Alice sees nothing of her.
    let carol = federation.register(1, "carol", PASSWORD).await;
    carol
        .client
        .get(&alice_status)
        .await
        .assert_error(403, "M_FORBIDDEN");
}
