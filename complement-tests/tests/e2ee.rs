//! End-to-end encryption (spec: "End-to-End Encryption"), with real cryptography: vodozemac
//! accounts make genuine device and one-time keys, sign them, and establish an Olm session
//! through the server's key claim and to-device delivery.

use complement_tests::{TestServer, User, V3, Value, json, sync::next_batch};
use vodozemac::olm::{Account, OlmMessage, SessionConfig};

const PASSWORD: &str = "e2ee-pw";

/// Canonical JSON of a value without `signatures` and `unsigned` (spec: "Signing JSON");
/// serde_json's maps are sorted, so its compact form is canonical for these objects.
fn signed_bytes(value: &Value) -> String {
    let mut value = value.clone();
    let object = value.as_object_mut().unwrap();
    object.remove("signatures");
    object.remove("unsigned");
    serde_json::to_string(&value).unwrap()
}

fn device_keys(account: &Account, user: &User) -> Value {
    let keys = account.identity_keys();
    let mut device_keys = json!({
        "user_id": user.user_id,
        "device_id": user.device_id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {
            format!("curve25519:{}", user.device_id): keys.curve25519.to_base64(),
            format!("ed25519:{}", user.device_id): keys.ed25519.to_base64(),
        },
    });
    let signature = account.sign(signed_bytes(&device_keys)).to_base64();
    device_keys["signatures"] =
        json!({ (user.user_id.clone()): { format!("ed25519:{}", user.device_id): signature } });
    device_keys
}

fn one_time_keys(account: &mut Account, user: &User, count: usize) -> Value {
    account.generate_one_time_keys(count);
    let mut keys = serde_json::Map::new();
    for (id, key) in account.one_time_keys() {
        let mut signed = json!({ "key": key.to_base64() });
        let signature = account.sign(signed_bytes(&signed)).to_base64();
        signed["signatures"] =
            json!({ (user.user_id.clone()): { format!("ed25519:{}", user.device_id): signature } });
        keys.insert(format!("signed_curve25519:{}", id.to_base64()), signed);
    }
    account.mark_keys_as_published();
    Value::Object(keys)
}

async fn upload(user: &User, body: Value) -> complement_tests::Response {
    user.client.post(&format!("{V3}/keys/upload"), body).await
}

#[tokio::test]
async fn an_olm_session_is_established_through_claimed_keys_and_to_device() {
    let server = TestServer::start().await;
    let (alice, bob, _room) = complement_tests::rooms::alice_and_bob_room(&server, PASSWORD).await;
    let mut alice_account = Account::new();
    let bob_account = Account::new();
    let bob_since = next_batch(&bob.initial_sync().await);

    let otks = one_time_keys(&mut alice_account, &alice, 5);
    let counts = upload(
        &alice,
        json!({ "device_keys": device_keys(&alice_account, &alice), "one_time_keys": otks }),
    )
    .await
    .ok();
    assert_eq!(
        counts["one_time_key_counts"]["signed_curve25519"], 5,
        "{counts}"
    );
    upload(
        &bob,
        json!({ "device_keys": device_keys(&bob_account, &bob) }),
    )
    .await
    .ok();

    // Bob shares a room with Alice: her new keys show in his sync's device lists.
    let sync = bob.sync_since(&bob_since).await;
    let changed = sync["device_lists"]["changed"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(changed.contains(&json!(alice.user_id)), "{sync}");

    // Bob queries Alice's device keys: exactly what she signed.
    let query = bob
        .client
        .post(
            &format!("{V3}/keys/query"),
            json!({ "device_keys": { (alice.user_id.clone()): [] } }),
        )
        .await
        .ok();
    let alice_keys = &query["device_keys"][&alice.user_id][&alice.device_id];
    assert_eq!(
        alice_keys["keys"][format!("curve25519:{}", alice.device_id)],
        alice_account.identity_keys().curve25519.to_base64(),
        "{query}"
    );

    // Bob claims one one-time key; Alice's count drops by one.
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
    let mut session = bob_account.create_outbound_session(
        SessionConfig::version_1(),
        alice_account.identity_keys().curve25519,
        vodozemac::Curve25519PublicKey::from_base64(otk).unwrap(),
    );
    let OlmMessage::PreKey(message) = session.encrypt("secret from bob") else {
        panic!("the first message of a session is a pre-key message");
    };
    let content = json!({
        "algorithm": "m.olm.v1.curve25519-aes-sha2",
        "sender_key": bob_account.identity_keys().curve25519.to_base64(),
        "ciphertext": { alice_account.identity_keys().curve25519.to_base64(): {
            "type": 0, "body": message.to_base64(),
        } },
    });
    let send = format!("{V3}/sendToDevice/m.room.encrypted/txn1");
    let body =
        json!({ "messages": { (alice.user_id.clone()): { (alice.device_id.clone()): content } } });
    bob.client.put(&send, body.clone()).await.ok();
    // A retry with the same transaction ID delivers nothing more.
    bob.client.put(&send, body).await.ok();

    let sync = alice.initial_sync().await;
    let events = sync["to_device"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{sync}"));
    assert_eq!(events.len(), 1, "{sync}");
    assert_eq!(events[0]["sender"], bob.user_id);
    assert_eq!(events[0]["type"], "m.room.encrypted");
    assert_eq!(
        sync["device_one_time_keys_count"]["signed_curve25519"], 4,
        "{sync}"
    );
    let body = events[0]["content"]["ciphertext"]
        [alice_account.identity_keys().curve25519.to_base64()]["body"]
        .as_str()
        .unwrap();
    let pre_key = vodozemac::olm::PreKeyMessage::from_base64(body).unwrap();
    let inbound = alice_account
        .create_inbound_session(bob_account.identity_keys().curve25519, &pre_key)
        .unwrap();
    assert_eq!(inbound.plaintext, b"secret from bob");

    // Syncing on from that token acknowledges the message: it is not delivered again.
    let sync = alice.sync_since(&next_batch(&sync)).await;
    assert!(
        sync["to_device"]["events"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{sync}"
    );
}

#[tokio::test]
async fn bad_device_keys_are_refused() {
    let server = TestServer::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let account = Account::new();
    let mut keys = device_keys(&account, &alice);

    // A signature that does not match the keys.
    let mut forged = keys.clone();
    forged["keys"][format!("curve25519:{}", alice.device_id)] =
        json!(Account::new().identity_keys().curve25519.to_base64());
    upload(&alice, json!({ "device_keys": forged }))
        .await
        .assert_error(400, "M_INVALID_PARAM");

    upload(&alice, json!({ "device_keys": keys.clone() }))
        .await
        .ok();
    // The same keys again are fine; different keys for the same device are not.
    upload(&alice, json!({ "device_keys": keys.clone() }))
        .await
        .ok();
    keys = device_keys(&Account::new(), &alice);
    upload(&alice, json!({ "device_keys": keys }))
        .await
        .assert_error(400, "M_INVALID_PARAM");
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
