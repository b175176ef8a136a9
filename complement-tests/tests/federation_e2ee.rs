//! End-to-end encryption between users of two Tessera servers (spec: Server-Server API,
//! "End-to-End Encryption", "Send-to-device messaging", "Device Management"): keys are queried
//! and claimed through the users' servers, room keys travel as `m.direct_to_device` EDUs, and
//! the Megolm-encrypted message arrives as an ordinary PDU.

use std::time::Duration;

use complement_tests::{
    V3, Value,
    e2ee::{
        CrossSigning, Device, enable_encryption, inbound_session, megolm_decrypt, query_keys,
        send_megolm_message,
    },
    enc,
    federation::{Federation, federated_server_name},
    json,
    sync::{next_batch, timeline},
    wait_until,
};

const PASSWORD: &str = "federation-e2ee-pw";
const DELIVERY: Duration = Duration::from_secs(30);

#[tokio::test]
async fn olm_and_megolm_work_across_servers() {
    let federation = Federation::start(2).await;
    let alice = federation.register(0, "alice", PASSWORD).await;
    let bob = federation.register(1, "bob", PASSWORD).await;
    let room_id = alice
        .create_room(json!({ "preset": "public_chat", "room_alias_name": "secrets" }))
        .await;
    enable_encryption(&alice, &room_id).await;
    let alias = format!("#secrets:{}", federated_server_name(0));
    bob.client
        .post(&format!("{V3}/join/{}", enc(&alias)), json!({}))
        .await
        .ok();
    let bob_since = next_batch(&bob.initial_sync().await);

    // Alice's new keys reach Bob's sync through an m.device_list_update.
    let mut alice_device = Device::of(&alice);
    alice_device.upload(&alice, 3).await;
    wait_until("Bob to see Alice's keys change", DELIVERY, || async {
        let sync = bob.sync_since(&bob_since).await;
        sync["device_lists"]["changed"]
            .as_array()
            .is_some_and(|users| users.contains(&json!(alice.user_id)))
            .then_some(())
    })
    .await;

    // Bob's server asks Alice's for her keys.
    let query = query_keys(&bob, &[&alice.user_id]).await;
    assert_eq!(
        query["device_keys"][&alice.user_id][&alice.device_id],
        alice_device.device_keys(),
        "{query}"
    );
    assert!(
        query["failures"].as_object().is_none_or(|f| f.is_empty()),
        "{query}"
    );

    // Bob claims a one-time key of Alice's device through the servers, shares a Megolm
    // session with it over Olm, then encrypts a message.
    let mut bob_device = Device::of(&bob);
    bob_device.upload(&bob, 0).await;
    let secret = "across the federation, in confidence";
    let event_id = send_megolm_message(&bob, &bob_device, &alice_device, &room_id, secret).await;

    let (to_device, event) =
        wait_until("Alice to get the key and the message", DELIVERY, || async {
            let sync = alice.initial_sync().await;
            let to_device: Vec<Value> = sync["to_device"]["events"].as_array().cloned()?;
            let event = timeline(&sync, &room_id)
                .into_iter()
                .find(|event| event["event_id"] == event_id)
                .cloned()?;
            (!to_device.is_empty()).then_some((to_device, event))
        })
        .await;
    assert_eq!(to_device.len(), 1, "{to_device:?}");
    assert_eq!(to_device[0]["sender"], bob.user_id);
    let room_key = alice_device.olm_decrypt(&to_device[0]);
    assert_eq!(room_key["sender"], bob.user_id, "{room_key}");
    let mut inbound = inbound_session(&room_key);
    let decrypted = megolm_decrypt(&mut inbound, &event);
    assert_eq!(decrypted["content"]["body"], secret, "{decrypted}");
}

/// Spec: `POST /keys/query`, `failures`: a server that cannot be reached is listed there and the
/// rest of the answer stands.
#[tokio::test]
async fn an_unreachable_server_is_listed_in_failures() {
    let federation = Federation::start(1).await;
    let alice = federation.register(0, "alice", PASSWORD).await;
    Device::of(&alice).upload(&alice, 0).await;
    let query = query_keys(&alice, &[&alice.user_id, "@nobody:unreachable.invalid"]).await;
    assert!(
        query["failures"].get("unreachable.invalid").is_some(),
        "{query}"
    );
    assert!(
        query["device_keys"][&alice.user_id]
            .get(&alice.device_id)
            .is_some(),
        "{query}"
    );
}

/// Spec: "Cross-signing": a user's user-signing key signs the master key of a user on another
/// server; the signature is checked against the key that server serves, and only the signer
/// sees it.
#[tokio::test]
async fn a_user_signs_the_master_key_of_a_remote_user() {
    let federation = Federation::start(2).await;
    let alice = federation.register(0, "alice", PASSWORD).await;
    let bob = federation.register(1, "bob", PASSWORD).await;
    let alice_keys = CrossSigning::default();
    let bob_keys = CrossSigning::default();
    for (user, keys) in [(&alice, &alice_keys), (&bob, &bob_keys)] {
        user.client
            .post(
                &format!("{V3}/keys/device_signing/upload"),
                keys.upload_body(&user.user_id),
            )
            .await
            .ok();
    }
    let upload = |master: Value| {
        let bob = &bob;
        let key = alice_keys.master.public();
        let alice_id = alice.user_id.clone();
        async move {
            bob.client
                .post(
                    &format!("{V3}/keys/signatures/upload"),
                    json!({ (alice_id): { (key): master } }),
                )
                .await
                .ok()
        }
    };

    // A signature by the wrong key fails; one by Bob's user-signing key is kept.
    let mut forged = alice_keys.master.key_object(&alice.user_id, "master", None);
    let mut by_self_signing = forged.clone();
    bob_keys
        .self_signing
        .sign(&bob.user_id, &mut by_self_signing);
    forged["signatures"] = json!({ (bob.user_id.clone()): {
        (bob_keys.user_signing.key_id()):
            by_self_signing["signatures"][&bob.user_id][bob_keys.self_signing.key_id()],
    } });
    let answer = upload(forged).await;
    assert_eq!(
        answer["failures"][&alice.user_id][alice_keys.master.public()]["errcode"],
        "M_INVALID_SIGNATURE",
        "{answer}"
    );
    let mut signed = alice_keys.master.key_object(&alice.user_id, "master", None);
    bob_keys.user_signing.sign(&bob.user_id, &mut signed);
    let answer = upload(signed).await;
    assert!(
        answer["failures"].as_object().is_none_or(|f| f.is_empty()),
        "{answer}"
    );

    let by_bob = query_keys(&bob, &[&alice.user_id]).await;
    let master = &by_bob["master_keys"][&alice.user_id];
    assert!(
        master["signatures"][&bob.user_id][bob_keys.user_signing.key_id()].is_string(),
        "{by_bob}"
    );
    let by_alice = query_keys(&alice, &[&alice.user_id]).await;
    assert!(
        by_alice["master_keys"][&alice.user_id]["signatures"]
            .get(&bob.user_id)
            .is_none(),
        "{by_alice}"
    );
}
