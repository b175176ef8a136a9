//! Cross-signing (spec: "Cross-signing", `POST /keys/device_signing/upload`,
//! `POST /keys/signatures/upload`), with real ed25519 keys: uploads, when they need a password,
//! which signatures are accepted, and who sees them.

use complement_tests::{
    Method, TestServer, User, V3, Value,
    e2ee::{CrossSigning, Device, SigningKey, query_keys},
    json,
};

const PASSWORD: &str = "cross-signing-pw";
const SIGNING_UPLOAD: &str = "/_matrix/client/v3/keys/device_signing/upload";

async fn upload_signatures(user: &User, body: Value) -> Value {
    user.client
        .post(&format!("{V3}/keys/signatures/upload"), body)
        .await
        .ok()
}

fn signature<'a>(key: &'a Value, signer: &User, key_id: &str) -> &'a Value {
    &key["signatures"][&signer.user_id][key_id]
}

#[tokio::test]
async fn replacing_cross_signing_keys_takes_the_password() {
    let server = TestServer::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let keys = CrossSigning::default();

    // The first upload needs no authentication (spec v1.11), nor does the same upload again.
    let body = keys.upload_body(&alice.user_id);
    alice.client.post(SIGNING_UPLOAD, body.clone()).await.ok();
    alice.client.post(SIGNING_UPLOAD, body).await.ok();
    let query = query_keys(&alice, &[&alice.user_id]).await;
    let master = &query["master_keys"][&alice.user_id];
    assert_eq!(
        master["keys"][keys.master.key_id()],
        keys.master.public(),
        "{query}"
    );
    assert_eq!(
        query["self_signing_keys"][&alice.user_id]["keys"][keys.self_signing.key_id()],
        keys.self_signing.public(),
        "{query}"
    );

    // New keys replace the old ones only through User-Interactive Authentication.
    let new_keys = CrossSigning::default();
    let body = new_keys.upload_body(&alice.user_id);
    let challenge = alice.client.post(SIGNING_UPLOAD, body.clone()).await;
    challenge.uia_session(&["m.login.password"]);
    let query = query_keys(&alice, &[&alice.user_id]).await;
    assert_eq!(
        query["master_keys"][&alice.user_id]["keys"][keys.master.key_id()],
        keys.master.public(),
        "an unauthenticated upload changed nothing: {query}"
    );
    alice
        .uia_password(Method::POST, SIGNING_UPLOAD, body)
        .await
        .ok();
    let query = query_keys(&alice, &[&alice.user_id]).await;
    assert_eq!(
        query["master_keys"][&alice.user_id]["keys"][new_keys.master.key_id()],
        new_keys.master.public(),
        "{query}"
    );

    // A self-signing key the master key did not sign is refused, and the stored one stays.
    let stray = SigningKey::new();
    let unsigned = json!({
        "self_signing_key": stray.key_object(&alice.user_id, "self_signing", Some(&SigningKey::new())),
    });
    alice
        .uia_password(Method::POST, SIGNING_UPLOAD, unsigned)
        .await
        .assert_error(400, "M_INVALID_PARAM");
    // A key of another user is refused at once, before any password is asked for.
    let foreign = json!({ "master_key": stray.key_object("@bob:localhost", "master", None) });
    alice
        .client
        .post(SIGNING_UPLOAD, foreign)
        .await
        .assert_error(400, "M_INVALID_PARAM");
    let query = query_keys(&alice, &[&alice.user_id]).await;
    assert_eq!(
        query["self_signing_keys"][&alice.user_id]["keys"][new_keys.self_signing.key_id()],
        new_keys.self_signing.public(),
        "{query}"
    );
}

#[tokio::test]
async fn signatures_are_verified_and_user_signing_ones_shown_only_to_the_signer() {
    let server = TestServer::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let carol = server.client().register("carol", PASSWORD).await;
    let mut alice_device = Device::of(&alice);
    alice_device.upload(&alice, 0).await;
    let alice_keys = CrossSigning::default();
    let bob_keys = CrossSigning::default();
    alice
        .client
        .post(SIGNING_UPLOAD, alice_keys.upload_body(&alice.user_id))
        .await
        .ok();
    bob.client
        .post(SIGNING_UPLOAD, bob_keys.upload_body(&bob.user_id))
        .await
        .ok();

    // Alice's self-signing key signs her device, her device signs her master key, and her
    // user-signing key signs Bob's master key.
    let mut device_keys = alice_device.device_keys();
    alice_keys
        .self_signing
        .sign(&alice.user_id, &mut device_keys);
    let mut alice_master = alice_keys.master.key_object(&alice.user_id, "master", None);
    alice_device.sign(&mut alice_master);
    let mut bob_master = bob_keys.master.key_object(&bob.user_id, "master", None);
    alice_keys
        .user_signing
        .sign(&alice.user_id, &mut bob_master);
    let answer = upload_signatures(
        &alice,
        json!({
            (alice.user_id.clone()): {
                (alice.device_id.clone()): device_keys,
                (alice_keys.master.public()): alice_master,
            },
            (bob.user_id.clone()): { (bob_keys.master.public()): bob_master },
        }),
    )
    .await;
    assert!(
        answer["failures"].as_object().is_none_or(|f| f.is_empty()),
        "{answer}"
    );

    // A signature that does not verify, and one on a device that does not exist, fail alone.
    let mut forged = alice_device.device_keys();
    alice_keys.user_signing.sign(&alice.user_id, &mut forged);
    let user_signing_id = alice_keys.user_signing.key_id();
    let self_signing_id = alice_keys.self_signing.key_id();
    let forged_signature = forged["signatures"][&alice.user_id][&user_signing_id].clone();
    forged["signatures"][&alice.user_id]
        .as_object_mut()
        .unwrap()
        .remove(&user_signing_id);
    forged["signatures"][&alice.user_id][&self_signing_id] = forged_signature;
    let mut unknown = Device::new(&alice.user_id, "NOSUCHDEVICE").device_keys();
    alice_keys.self_signing.sign(&alice.user_id, &mut unknown);
    let answer = upload_signatures(
        &alice,
        json!({ (alice.user_id.clone()): {
            (alice.device_id.clone()): forged,
            "NOSUCHDEVICE": unknown,
        } }),
    )
    .await;
    let failures = &answer["failures"][&alice.user_id];
    assert_eq!(
        failures[&alice.device_id]["errcode"], "M_INVALID_SIGNATURE",
        "{answer}"
    );
    assert_eq!(
        failures["NOSUCHDEVICE"]["errcode"], "M_INVALID_SIGNATURE",
        "{answer}"
    );

    // Everyone sees Alice's own signatures.
    let by_carol = query_keys(&carol, &[&alice.user_id, &bob.user_id]).await;
    let device = &by_carol["device_keys"][&alice.user_id][&alice.device_id];
    assert!(
        signature(device, &alice, &self_signing_id).is_string(),
        "{by_carol}"
    );
    let master = &by_carol["master_keys"][&alice.user_id];
    let device_key_id = format!("ed25519:{}", alice.device_id);
    assert!(
        signature(master, &alice, &device_key_id).is_string(),
        "{by_carol}"
    );
    // Only Alice sees her signature on Bob's master key, and her user-signing key.
    let bob_master = &by_carol["master_keys"][&bob.user_id];
    assert!(
        signature(bob_master, &alice, &user_signing_id).is_null(),
        "{by_carol}"
    );
    assert!(
        by_carol["user_signing_keys"].get(&alice.user_id).is_none(),
        "{by_carol}"
    );
    let by_bob = query_keys(&bob, &[&bob.user_id]).await;
    let bob_master = &by_bob["master_keys"][&bob.user_id];
    assert!(
        signature(bob_master, &alice, &user_signing_id).is_null(),
        "{by_bob}"
    );
    let by_alice = query_keys(&alice, &[&alice.user_id, &bob.user_id]).await;
    let bob_master = &by_alice["master_keys"][&bob.user_id];
    assert!(
        signature(bob_master, &alice, &user_signing_id).is_string(),
        "{by_alice}"
    );
    assert_eq!(
        by_alice["user_signing_keys"][&alice.user_id]["keys"][&user_signing_id],
        alice_keys.user_signing.public(),
        "{by_alice}"
    );
}
