//! End-to-end encryption (spec: "End-to-End Encryption"), with real cryptography: vodozemac
//! accounts make genuine device and one-time keys, sign them, establish Olm sessions through
//! the server's key claim and to-device delivery, and share Megolm sessions for room messages.

use complement_tests::{
    Method, TestServer, User, V3, Value,
    e2ee::{
        Device, claim_one_time_key, enable_encryption, inbound_session, megolm_decrypt, query_keys,
        send_megolm_message, send_to_device, upload_keys,
    },
    enc, json,
    rooms::alice_and_bob_room,
    sync::{next_batch, timeline},
};
use vodozemac::olm::Account;

const PASSWORD: &str = "e2ee-pw";

fn to_device_events(sync: &Value) -> Vec<Value> {
    sync["to_device"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn listed(sync: &Value, list: &str, user: &User) -> bool {
    sync["device_lists"][list]
        .as_array()
        .is_some_and(|users| users.contains(&json!(user.user_id)))
}

#[tokio::test]
async fn an_olm_session_is_established_through_claimed_keys_and_to_device() {
    let server = TestServer::start().await;
    let (alice, bob, _room) = alice_and_bob_room(&server, PASSWORD).await;
    let mut alice_device = Device::of(&alice);
    let mut bob_device = Device::of(&bob);
    let bob_since = next_batch(&bob.initial_sync().await);

    let counts = alice_device.upload(&alice, 5).await;
    assert_eq!(
        counts["one_time_key_counts"]["signed_curve25519"], 5,
        "{counts}"
    );
    bob_device.upload(&bob, 0).await;

    // Bob shares a room with Alice: her new keys show in his sync's device lists.
    let sync = bob.sync_since(&bob_since).await;
    assert!(listed(&sync, "changed", &alice), "{sync}");

    // Bob queries Alice's device keys: exactly what she signed.
    let query = query_keys(&bob, &[&alice.user_id]).await;
    let alice_keys = &query["device_keys"][&alice.user_id][&alice.device_id];
    assert_eq!(
        alice_keys["keys"][format!("curve25519:{}", alice.device_id)],
        alice_device.curve25519(),
        "{query}"
    );

    // Bob claims one one-time key (an unknown device gets nothing); Alice's count drops.
    let claim = bob
        .client
        .post(
            &format!("{V3}/keys/claim"),
            json!({ "one_time_keys": { (alice.user_id.clone()): {
                (alice.device_id.clone()): "signed_curve25519",
                "NOSUCHDEVICE": "signed_curve25519",
            } } }),
        )
        .await
        .ok();
    let claimed = claim["one_time_keys"][&alice.user_id][&alice.device_id]
        .as_object()
        .unwrap_or_else(|| panic!("{claim}"));
    assert_eq!(claimed.len(), 1, "{claim}");
    assert!(
        claim["one_time_keys"][&alice.user_id]
            .get("NOSUCHDEVICE")
            .is_none(),
        "{claim}"
    );
    let otk = claimed.values().next().unwrap()["key"].as_str().unwrap();

    // An Olm session from Bob to Alice, its first message delivered as a to-device event.
    let content = bob_device.olm_encrypt(
        &alice_device.curve25519(),
        otk,
        &json!({ "type": "m.dummy", "content": { "secret": "from bob" } }),
    );
    let send = format!("{V3}/sendToDevice/m.room.encrypted/txn1");
    let body =
        json!({ "messages": { (alice.user_id.clone()): { (alice.device_id.clone()): content } } });
    bob.client.put(&send, body.clone()).await.ok();
    // A retry with the same transaction ID delivers nothing more.
    bob.client.put(&send, body).await.ok();

    let sync = alice.initial_sync().await;
    let events = to_device_events(&sync);
    assert_eq!(events.len(), 1, "{sync}");
    assert_eq!(events[0]["sender"], bob.user_id);
    assert_eq!(events[0]["type"], "m.room.encrypted");
    assert_eq!(
        sync["device_one_time_keys_count"]["signed_curve25519"], 4,
        "{sync}"
    );
    let plaintext = alice_device.olm_decrypt(&events[0]);
    assert_eq!(plaintext["content"]["secret"], "from bob");

    // Syncing on from that token acknowledges the message: it is not delivered again.
    let sync = alice.sync_since(&next_batch(&sync)).await;
    assert!(to_device_events(&sync).is_empty(), "{sync}");
}

/// Spec: "Messaging Algorithms", `m.megolm.v1.aes-sha2`: the sender shares its outbound
/// session over Olm (`m.room_key`), then encrypts room messages with it.
#[tokio::test]
async fn a_megolm_room_message_is_decrypted_by_the_other_member() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = alice_and_bob_room(&server, PASSWORD).await;
    enable_encryption(&alice, &room_id).await;
    let mut alice_device = Device::of(&alice);
    let mut bob_device = Device::of(&bob);
    alice_device.upload(&alice, 0).await;
    bob_device.upload(&bob, 3).await;
    let bob_since = next_batch(&bob.initial_sync().await);

    let secret = "only for bob's eyes";
    let event_id = send_megolm_message(&alice, &alice_device, &bob_device, &room_id, secret).await;

    let sync = bob.sync_since(&bob_since).await;
    let events = to_device_events(&sync);
    assert_eq!(events.len(), 1, "{sync}");
    let room_key = bob_device.olm_decrypt(&events[0]);
    assert_eq!(room_key["sender"], alice.user_id, "{room_key}");
    assert_eq!(room_key["content"]["room_id"], room_id, "{room_key}");
    let mut inbound = inbound_session(&room_key);
    let event = timeline(&sync, &room_id)
        .into_iter()
        .find(|event| event["event_id"] == event_id)
        .unwrap_or_else(|| panic!("the encrypted event is not in Bob's timeline: {sync}"))
        .clone();
    assert!(!event.to_string().contains(secret), "{event}");
    let decrypted = megolm_decrypt(&mut inbound, &event);
    assert_eq!(decrypted["content"]["body"], secret, "{decrypted}");
    assert_eq!(decrypted["room_id"], room_id, "{decrypted}");
}

/// Spec: `GET /keys/changes` and sync's `device_lists`: users whose keys changed while sharing
/// a room, and users who no longer share any.
#[tokio::test]
async fn key_changes_and_left_users_follow_shared_rooms() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = alice_and_bob_room(&server, PASSWORD).await;
    let carol = server.client().register("carol", PASSWORD).await;
    let start = next_batch(&alice.initial_sync().await);

    Device::of(&bob).upload(&bob, 1).await;
    // Carol shares no room with Alice: her keys are none of Alice's business.
    Device::of(&carol).upload(&carol, 1).await;
    let sync = alice.sync_since(&start).await;
    assert!(listed(&sync, "changed", &bob), "{sync}");
    assert!(!listed(&sync, "changed", &carol), "{sync}");
    let after_keys = next_batch(&sync);
    let changes =
        |from: &str, to: &str| format!("{V3}/keys/changes?from={}&to={}", enc(from), enc(to));
    let listed_changes = alice.client.get(&changes(&start, &after_keys)).await.ok();
    assert_eq!(
        listed_changes["changed"],
        json!([bob.user_id]),
        "{listed_changes}"
    );

    // A new device name is a change too: clients show the names of others' devices.
    bob.client
        .put(
            &format!("{V3}/devices/{}", enc(&bob.device_id)),
            json!({ "display_name": "Bob's phone" }),
        )
        .await
        .ok();
    let sync = alice.sync_since(&after_keys).await;
    assert!(listed(&sync, "changed", &bob), "{sync}");
    let after_rename = next_batch(&sync);

    bob.leave_room(&room_id).await;
    let sync = alice.sync_since(&after_rename).await;
    assert!(listed(&sync, "left", &bob), "{sync}");
    let after_leave = next_batch(&sync);
    let left = alice
        .client
        .get(&changes(&after_rename, &after_leave))
        .await
        .ok();
    assert_eq!(left["left"], json!([bob.user_id]), "{left}");
    assert!(
        !left["changed"]
            .as_array()
            .is_some_and(|users| users.contains(&json!(bob.user_id))),
        "{left}"
    );

    alice
        .client
        .get(&changes("not-a-token", &after_leave))
        .await
        .assert_error(400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn bad_device_keys_are_refused() {
    let server = TestServer::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let device = Device::of(&alice);
    let keys = device.device_keys();

    // A signature that does not match the keys.
    let mut forged = keys.clone();
    forged["keys"][format!("curve25519:{}", alice.device_id)] =
        json!(Account::new().identity_keys().curve25519.to_base64());
    upload_keys(&alice, json!({ "device_keys": forged }))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    // Keys of another device.
    let other = Device::new(&alice.user_id, "OTHERDEVICE").device_keys();
    upload_keys(&alice, json!({ "device_keys": other }))
        .await
        .assert_error(400, "M_INVALID_PARAM");

    upload_keys(&alice, json!({ "device_keys": keys.clone() }))
        .await
        .ok();
    // The same keys again are fine; different keys for the same device are not.
    upload_keys(&alice, json!({ "device_keys": keys.clone() }))
        .await
        .ok();
    upload_keys(
        &alice,
        json!({ "device_keys": Device::of(&alice).device_keys() }),
    )
    .await
    .assert_error(400, "M_INVALID_PARAM");
    let query = query_keys(&alice, &[&alice.user_id]).await;
    assert_eq!(query["device_keys"][&alice.user_id][&alice.device_id], keys);
}

/// A device holds at most 1,000 unclaimed one-time keys; an upload past that is refused whole.
#[tokio::test]
async fn one_time_keys_are_capped_per_device() {
    let server = TestServer::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let keys = |from: usize, count: usize| {
        let keys: serde_json::Map<String, Value> = (from..from + count)
            .map(|n| {
                (
                    format!("signed_curve25519:K{n:05}"),
                    json!(format!("key{n}")),
                )
            })
            .collect();
        json!({ "one_time_keys": keys })
    };
    let counts = upload_keys(&alice, keys(0, 600)).await.ok();
    assert_eq!(
        counts["one_time_key_counts"]["signed_curve25519"], 600,
        "{counts}"
    );
    upload_keys(&alice, keys(600, 401))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    upload_keys(&alice, keys(0, 1001))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    // Uploading stored keys again adds nothing, so it stays allowed; up to the cap is fine.
    let counts = upload_keys(&alice, keys(300, 700)).await.ok();
    assert_eq!(
        counts["one_time_key_counts"]["signed_curve25519"], 1000,
        "{counts}"
    );
}

const DEHYDRATED: &str = "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device";

/// The body of `PUT /dehydrated_device` for `device`, with `count` one-time keys.
fn dehydrated_device_body(device: &mut Device, count: usize, pickle: &str) -> Value {
    json!({
        "device_id": device.device_id,
        "initial_device_display_name": "Dehydrated device",
        "device_data": { "algorithm": "org.matrix.msc3814.v2", "device_pickle": pickle, "nonce": "n" },
        "device_keys": device.device_keys(),
        "one_time_keys": device.one_time_keys(count),
    })
}

/// MSC3814: a dehydrated device receives room keys while its user has no device online; a new
/// login downloads it and reads what it was sent.
#[tokio::test]
async fn a_dehydrated_device_receives_messages_until_its_user_comes_back() {
    let server = TestServer::start().await;
    let (alice, bob, _room) = alice_and_bob_room(&server, PASSWORD).await;
    alice
        .client
        .get(DEHYDRATED)
        .await
        .assert_error(404, "M_NOT_FOUND");

    let mut dehydrated = Device::new(&alice.user_id, "DEHYDRATED1");
    let put = alice
        .client
        .put(
            DEHYDRATED,
            dehydrated_device_body(&mut dehydrated, 3, "pickle-1"),
        )
        .await
        .ok();
    assert_eq!(put["device_id"], "DEHYDRATED1", "{put}");
    // The device ID of a logged-in device is not taken over, and forged keys are refused.
    let mut taken = Device::of(&alice);
    alice
        .client
        .put(DEHYDRATED, dehydrated_device_body(&mut taken, 1, "x"))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    let mut forged = dehydrated_device_body(&mut Device::new(&alice.user_id, "FORGED"), 0, "x");
    forged["device_keys"]["keys"]["ed25519:FORGED"] =
        json!(Account::new().identity_keys().ed25519.to_base64());
    alice
        .client
        .put(DEHYDRATED, forged)
        .await
        .assert_error(400, "M_INVALID_PARAM");

    // Bob sees the device like any other and sends it a message.
    let query = query_keys(&bob, &[&alice.user_id]).await;
    assert_eq!(
        query["device_keys"][&alice.user_id]["DEHYDRATED1"]["keys"]["curve25519:DEHYDRATED1"],
        dehydrated.curve25519(),
        "{query}"
    );
    let bob_device = Device::of(&bob);
    for n in 0..2 {
        let otk = claim_one_time_key(&bob, &alice.user_id, "DEHYDRATED1").await;
        let content = bob_device.olm_encrypt(
            &dehydrated.curve25519(),
            &otk,
            &json!({ "type": "m.dummy", "content": { "n": n } }),
        );
        send_to_device(
            &bob,
            &alice.user_id,
            "DEHYDRATED1",
            content,
            &format!("d{n}"),
        )
        .await;
    }

    // Alice logs in again, downloads the device and reads its messages.
    let rehydrating = server.client().login("alice", PASSWORD).await;
    let stored = rehydrating.client.get(DEHYDRATED).await.ok();
    assert_eq!(stored["device_id"], "DEHYDRATED1", "{stored}");
    assert_eq!(
        stored["device_data"]["device_pickle"], "pickle-1",
        "{stored}"
    );
    let events_path = format!("{DEHYDRATED}/DEHYDRATED1/events");
    let batch = rehydrating.client.post(&events_path, json!({})).await.ok();
    let events = batch["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{batch}"));
    assert_eq!(events.len(), 2, "{batch}");
    for (n, event) in events.iter().enumerate() {
        assert_eq!(event["sender"], bob.user_id, "{event}");
        assert_eq!(dehydrated.olm_decrypt(event)["content"]["n"], n, "{event}");
    }
    // The token acknowledges them: the next batch is empty, and stays so.
    let next = json!({ "next_batch": batch["next_batch"] });
    let batch = rehydrating
        .client
        .post(&events_path, next.clone())
        .await
        .ok();
    assert_eq!(batch["events"], json!([]), "{batch}");
    let batch = rehydrating.client.post(&events_path, json!({})).await.ok();
    assert_eq!(batch["events"], json!([]), "{batch}");

    rehydrating
        .client
        .post(&events_path, json!({ "next_batch": "bogus" }))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    rehydrating
        .client
        .post(
            &format!("{DEHYDRATED}/{}/events", rehydrating.device_id),
            json!({}),
        )
        .await
        .assert_error(403, "M_FORBIDDEN");
    bob.client
        .post(&events_path, json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");

    // A new dehydrated device replaces the old one, which goes with its keys.
    let mut replacement = Device::new(&alice.user_id, "DEHYDRATED2");
    rehydrating
        .client
        .put(
            DEHYDRATED,
            dehydrated_device_body(&mut replacement, 1, "pickle-2"),
        )
        .await
        .ok();
    // The replacement is synchronous: the old device and its keys are gone at once.
    let query = query_keys(&bob, &[&alice.user_id]).await;
    let devices = &query["device_keys"][&alice.user_id];
    assert!(devices.get("DEHYDRATED1").is_none(), "{devices}");
    assert!(devices.get("DEHYDRATED2").is_some(), "{devices}");
    let deleted = rehydrating
        .client
        .request(Method::DELETE, DEHYDRATED, None)
        .await
        .ok();
    assert_eq!(deleted["device_id"], "DEHYDRATED2", "{deleted}");
    rehydrating
        .client
        .get(DEHYDRATED)
        .await
        .assert_error(404, "M_NOT_FOUND");
    let query = query_keys(&bob, &[&alice.user_id]).await;
    assert!(
        query["device_keys"][&alice.user_id]
            .get("DEHYDRATED2")
            .is_none(),
        "{query}"
    );
}

#[tokio::test]
async fn key_backup_keeps_the_better_key_and_refuses_old_versions() {
    let server = TestServer::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let version_path = format!("{V3}/room_keys/version");
    alice
        .client
        .get(&version_path)
        .await
        .assert_error(404, "M_NOT_FOUND");
    let algorithm = json!({
        "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2",
        "auth_data": { "public_key": "abcdefg" },
    });
    let v1 = alice
        .client
        .post(&version_path, algorithm.clone())
        .await
        .ok()["version"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = |index: u64, verified: bool| {
        json!({
            "first_message_index": index, "forwarded_count": 0, "is_verified": verified,
            "session_data": { "ephemeral": "e", "ciphertext": "c", "mac": "m" },
        })
    };
    let session_path =
        |version: &str| format!("{V3}/room_keys/keys/!room:x/session1?version={version}");
    let put = alice
        .client
        .put(&session_path(&v1), key(5, false))
        .await
        .ok();
    assert_eq!(put["count"], 1, "{put}");
    let etag = put["etag"].clone();
    // A key starting later does not replace the stored one, and the etag stays.
    let put = alice
        .client
        .put(&session_path(&v1), key(9, false))
        .await
        .ok();
    assert_eq!(put["etag"], etag, "{put}");
    // A verified key does.
    let put = alice
        .client
        .put(&session_path(&v1), key(9, true))
        .await
        .ok();
    assert_ne!(put["etag"], etag, "{put}");
    let stored = alice.client.get(&session_path(&v1)).await.ok();
    assert_eq!(stored["first_message_index"], 9, "{stored}");
    assert_eq!(stored["is_verified"], true, "{stored}");

    // A newer version makes the first one read-only.
    let v2 = alice.client.post(&version_path, algorithm).await.ok()["version"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused = alice.client.put(&session_path(&v1), key(1, true)).await;
    refused.assert_error(403, "M_WRONG_ROOM_KEYS_VERSION");
    let current = alice.client.get(&version_path).await.ok();
    assert_eq!(current["version"], v2, "{current}");
    assert_eq!(current["count"], 0, "{current}");
}
