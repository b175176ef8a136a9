//! Federation with Synapse, the reference homeserver, over real TLS on loopback (spec:
//! Server-Server API): a Synapse user joins a Tessera room and a Tessera user a Synapse room,
//! whose earlier history Tessera backfills from Synapse; messages flow both ways, invites cross in both directions; device keys are queried and
//! claimed across, Olm and Megolm work both ways, media and profiles are fetched across;
//! typing notices, read receipts and presence cross as EDUs; each server asks the other
//! about the rooms of a space.
//!
//! Synapse runs from `$TESSERA_SYNAPSE_PYTHON` (default `python3`); if it cannot import
//! `synapse`, this test FAILS rather than being skipped (`.ci/run` installs it).

use std::time::Duration;

use complement_tests::{
    Client, TestServer, User, V3, Value,
    e2ee::{
        Device, enable_encryption, inbound_session, megolm_decrypt, query_keys, send_megolm_message,
    },
    enc,
    federation::TestCa,
    json,
    media::pattern,
    rooms::{chunk, hierarchy_path, hierarchy_room_ids, message_bodies, room_path},
    synapse::{Synapse, tessera_beside_synapse},
    sync::{SyncQuery, ephemeral, next_batch, timeline},
    wait_until,
};

const PASSWORD: &str = "synapse-interop-pw";
const DELIVERY: Duration = Duration::from_secs(60);

async fn wait_for_message(user: &User, room_id: &str, body: &str) {
    wait_until(
        &format!("{} to receive {body:?}", user.user_id),
        DELIVERY,
        || async {
            let page = user
                .client
                .get(&format!(
                    "{}?dir=b&limit=50",
                    room_path(room_id, "messages")
                ))
                .await;
            (page.status == 200 && message_bodies(chunk(&page.json)).contains(&body.to_owned()))
                .then_some(())
        },
    )
    .await;
}

async fn join_through(user: &User, room_id: &str, server: &str) {
    let joined = user
        .client
        .post(
            &format!("{V3}/join/{}?server_name={}", enc(room_id), enc(server)),
            json!({}),
        )
        .await
        .ok();
    assert_eq!(joined["room_id"], room_id, "{joined}");
}

/// A Synapse and a Tessera federating, Alice on Tessera and Bob on Synapse.
struct Pair {
    synapse: Synapse,
    tessera: TestServer,
    alice: User,
    bob: User,
    /// Holds the certificates both servers use.
    _ca: TestCa,
}

impl Pair {
    async fn start() -> Self {
        let ca = TestCa::new();
        let synapse = Synapse::start(&ca).await;
        let tessera = tessera_beside_synapse(&ca).await;
        let alice = tessera.client().register("alice", PASSWORD).await;
        let bob = synapse.client().register("bob", PASSWORD).await;
        Self {
            synapse,
            tessera,
            alice,
            bob,
            _ca: ca,
        }
    }
}

#[tokio::test]
async fn rooms_messages_and_invites_cross_between_tessera_and_synapse() {
    let pair = Pair::start().await;
    let (synapse, tessera, alice, bob) = (&pair.synapse, &pair.tessera, &pair.alice, &pair.bob);

    // Bob (Synapse) joins Alice's room on Tessera.
    let tessera_room = alice
        .create_room(json!({ "preset": "public_chat", "name": "Made on Tessera" }))
        .await;
    join_through(bob, &tessera_room, tessera.server_name()).await;
    let name = bob
        .client
        .get(&format!(
            "{}/m.room.name/",
            room_path(&tessera_room, "state")
        ))
        .await
        .ok();
    assert_eq!(name["name"], "Made on Tessera", "{name}");
    alice.send_text(&tessera_room, "hello from Tessera").await;
    wait_for_message(bob, &tessera_room, "hello from Tessera").await;
    bob.send_text(&tessera_room, "hello from Synapse").await;
    wait_for_message(alice, &tessera_room, "hello from Synapse").await;

    // Alice (Tessera) joins Bob's room on Synapse.
    let synapse_room = bob
        .create_room(json!({ "preset": "public_chat", "name": "Made on Synapse" }))
        .await;
    let earlier: Vec<String> = (0..5).map(|i| format!("before Alice {i}")).collect();
    for body in &earlier {
        bob.send_text(&synapse_room, body).await;
    }
    join_through(alice, &synapse_room, &synapse.server_name).await;
    // Tessera's history of the room begins with Alice's join: the messages before it are
    // backfilled from Synapse.
    let page = alice
        .client
        .get(&format!(
            "{}?dir=b&limit=50",
            room_path(&synapse_room, "messages")
        ))
        .await
        .ok();
    let mut backfilled = message_bodies(chunk(&page));
    backfilled.reverse();
    assert_eq!(backfilled, earlier, "{page}");
    bob.send_text(&synapse_room, "welcome to Synapse").await;
    wait_for_message(alice, &synapse_room, "welcome to Synapse").await;
    alice.send_text(&synapse_room, "thanks from Tessera").await;
    wait_for_message(bob, &synapse_room, "thanks from Tessera").await;

    // Invites both ways, into private rooms, accepted by joining.
    let tessera_private = alice
        .create_room(json!({ "preset": "private_chat", "invite": [bob.user_id] }))
        .await;
    wait_until("Bob's invite to reach Synapse", DELIVERY, || async {
        let sync = bob.client.get(&format!("{V3}/sync")).await.ok();
        sync["rooms"]["invite"].get(&tessera_private).map(|_| ())
    })
    .await;
    join_through(bob, &tessera_private, tessera.server_name()).await;
    bob.send_text(&tessera_private, "invited by Tessera").await;
    wait_for_message(alice, &tessera_private, "invited by Tessera").await;

    let synapse_private = bob
        .create_room(json!({ "preset": "private_chat", "invite": [alice.user_id] }))
        .await;
    wait_until("Alice's invite to reach Tessera", DELIVERY, || async {
        let sync = alice.client.get(&format!("{V3}/sync")).await.ok();
        sync["rooms"]["invite"].get(&synapse_private).map(|_| ())
    })
    .await;
    join_through(alice, &synapse_private, &synapse.server_name).await;
    alice
        .send_text(&synapse_private, "invited by Synapse")
        .await;
    wait_for_message(bob, &synapse_private, "invited by Synapse").await;
}

/// Device keys without `unsigned`.
fn signed_part(keys: &Value) -> Value {
    let mut keys = keys.clone();
    if let Some(object) = keys.as_object_mut() {
        object.remove("unsigned");
    }
    keys
}

/// Follows `user`'s sync from `since` until `check` finds what it looks for, each request from
/// the last answer's `next_batch`, as a client does (Synapse answers a repeated request from
/// its cache).
async fn sync_until<T>(
    user: &User,
    since: &str,
    what: &str,
    mut check: impl FnMut(&Value) -> Option<T>,
) -> T {
    let mut since = since.to_owned();
    let deadline = std::time::Instant::now() + DELIVERY;
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {DELIVERY:?} waiting for {what}"
        );
        let sync = user
            .sync(&SyncQuery {
                since: Some(&since),
                timeout_ms: Some(1_000),
                ..SyncQuery::default()
            })
            .await;
        if let Some(found) = check(&sync) {
            return found;
        }
        since = next_batch(&sync);
    }
}

/// Follows `recipient`'s sync from `since` until the room key and the encrypted event have
/// both arrived, and decrypts the event.
async fn receive_megolm(
    recipient: &User,
    device: &mut Device,
    since: &str,
    room_id: &str,
    event_id: &str,
) -> Value {
    let mut room_key: Option<Value> = None;
    let mut event: Option<Value> = None;
    let (room_key, event) = sync_until(recipient, since, "a room key and a message", |sync| {
        if room_key.is_none() {
            room_key = sync["to_device"]["events"]
                .as_array()
                .and_then(|events| events.iter().find(|e| e["type"] == "m.room.encrypted"))
                .cloned();
        }
        if event.is_none() {
            event = timeline(sync, room_id)
                .into_iter()
                .find(|e| e["event_id"] == event_id)
                .cloned();
        }
        room_key.clone().zip(event.clone())
    })
    .await;
    let room_key = device.olm_decrypt(&room_key);
    megolm_decrypt(&mut inbound_session(&room_key), &event)
}

#[tokio::test]
async fn encryption_and_media_work_between_tessera_and_synapse() {
    let pair = Pair::start().await;
    let (synapse, tessera, alice, bob) = (&pair.synapse, &pair.tessera, &pair.alice, &pair.bob);
    let room_id = alice
        .create_room(json!({ "preset": "public_chat", "name": "Secrets" }))
        .await;
    enable_encryption(alice, &room_id).await;
    join_through(bob, &room_id, tessera.server_name()).await;

    // Device keys, queried through each other's servers.
    let mut alice_device = Device::of(alice);
    alice_device.upload(alice, 3).await;
    let mut bob_device = Device::of(bob);
    bob_device.upload(bob, 3).await;
    // (Synapse adds an empty `unsigned`, which is not part of the signed keys.)
    let query = query_keys(bob, &[&alice.user_id]).await;
    assert_eq!(
        signed_part(&query["device_keys"][&alice.user_id][&alice.device_id]),
        alice_device.device_keys(),
        "{query}"
    );
    let query = query_keys(alice, &[&bob.user_id]).await;
    assert_eq!(
        signed_part(&query["device_keys"][&bob.user_id][&bob.device_id]),
        bob_device.device_keys(),
        "{query}"
    );

    // Olm and Megolm both ways: one-time keys claimed across, room keys as to-device EDUs.
    let alice_since = next_batch(&alice.initial_sync().await);
    let bob_since = next_batch(&bob.initial_sync().await);
    let from_bob = "Synapse to Tessera, in confidence";
    let event_id = send_megolm_message(bob, &bob_device, &alice_device, &room_id, from_bob).await;
    let decrypted =
        receive_megolm(alice, &mut alice_device, &alice_since, &room_id, &event_id).await;
    assert_eq!(decrypted["content"]["body"], from_bob, "{decrypted}");
    let from_alice = "Tessera to Synapse, in confidence";
    let event_id =
        send_megolm_message(alice, &alice_device, &bob_device, &room_id, from_alice).await;
    let decrypted = receive_megolm(bob, &mut bob_device, &bob_since, &room_id, &event_id).await;
    assert_eq!(decrypted["content"]["body"], from_alice, "{decrypted}");

    // Media each way, through the authenticated federation media endpoints.
    let on_synapse = pattern(300_000);
    let mxc = upload_to(&synapse.client(), bob, on_synapse.clone()).await;
    let got = download(alice, &mxc).await;
    assert!(
        got == on_synapse,
        "Tessera served other bytes than Synapse stores"
    );
    let on_tessera = pattern(200_003);
    let mxc = upload_to(&tessera.client(), alice, on_tessera.clone()).await;
    let got = download(bob, &mxc).await;
    assert!(
        got == on_tessera,
        "Synapse served other bytes than Tessera stores"
    );

    // Profiles across.
    let profile = alice
        .client
        .get(&format!("{V3}/profile/{}", enc(&bob.user_id)))
        .await
        .ok();
    assert_eq!(profile["displayname"], "bob", "{profile}");
}

/// Uploads `bytes` as `user` to the server `client` talks to; the `mxc://` URI.
async fn upload_to(client: &Client, user: &User, bytes: Vec<u8>) -> String {
    let response = reqwest::Client::new()
        .post(format!("{}/_matrix/media/v3/upload", client.base_url()))
        .bearer_auth(&user.access_token)
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status().as_u16(), 200);
    let json: Value = response.json().await.expect("JSON");
    json["content_uri"]
        .as_str()
        .expect("content_uri")
        .to_owned()
}

/// Downloads `mxc` through `user`'s own server (authenticated media), waiting out a remote
/// server's first answer.
async fn download(user: &User, mxc: &str) -> Vec<u8> {
    let path = mxc.strip_prefix("mxc://").expect("an mxc URI");
    let response = reqwest::Client::new()
        .get(format!(
            "{}/_matrix/client/v1/media/download/{path}",
            user.client.base_url()
        ))
        .bearer_auth(&user.access_token)
        .send()
        .await
        .expect("download");
    assert_eq!(response.status().as_u16(), 200, "download of {mxc}");
    response.bytes().await.expect("the body").to_vec()
}

#[tokio::test]
async fn typing_receipts_and_presence_cross_between_tessera_and_synapse() {
    let pair = Pair::start().await;
    let (tessera, alice, bob) = (&pair.tessera, &pair.alice, &pair.bob);
    let room_id = alice
        .create_room(json!({ "preset": "public_chat", "name": "Chatter" }))
        .await;
    join_through(bob, &room_id, tessera.server_name()).await;
    let event_id = alice.send_text(&room_id, "anyone there?").await;
    wait_for_message(bob, &room_id, "anyone there?").await;
    let alice_since = next_batch(&alice.initial_sync().await);
    let bob_since = next_batch(&bob.initial_sync().await);

    // Typing, each way.
    for (typist, other, since) in [(alice, &bob, &bob_since), (bob, &alice, &alice_since)] {
        typist
            .client
            .put(
                &room_path(&room_id, &format!("typing/{}", enc(&typist.user_id))),
                json!({ "typing": true, "timeout": 30_000 }),
            )
            .await
            .ok();
        sync_until(other, since, "a typing notice across", |sync| {
            ephemeral(sync, &room_id, "m.typing")?["content"]["user_ids"]
                .as_array()?
                .contains(&json!(typist.user_id))
                .then_some(())
        })
        .await;
    }

    // Bob's read receipt reaches Alice.
    bob.client
        .post(
            &room_path(&room_id, &format!("receipt/m.read/{}", enc(&event_id))),
            json!({}),
        )
        .await
        .ok();
    sync_until(alice, &alice_since, "Bob's receipt on Tessera", |sync| {
        let receipts = ephemeral(sync, &room_id, "m.receipt")?;
        receipts["content"][&event_id]["m.read"][&bob.user_id]
            .is_object()
            .then_some(())
    })
    .await;

    // Presence, each way: a status message set on one server shows on the other.
    let status = |user: &User| format!("{V3}/presence/{}/status", enc(&user.user_id));
    alice
        .client
        .put(
            &status(alice),
            json!({ "presence": "online", "status_msg": "on Tessera" }),
        )
        .await
        .ok();
    bob.client
        .put(
            &status(bob),
            json!({ "presence": "online", "status_msg": "on Synapse" }),
        )
        .await
        .ok();
    for (observer, user, message) in [(bob, &alice, "on Tessera"), (alice, &bob, "on Synapse")] {
        wait_until(
            &format!("{} to see {}'s status", observer.user_id, user.user_id),
            DELIVERY,
            || async {
                let seen = observer.client.get(&status(user)).await;
                (seen.status == 200 && seen.json["status_msg"] == message).then_some(())
            },
        )
        .await;
    }
}

/// A public space of `owner` on `server` with one public child room; (space, child).
async fn space_with_child(owner: &User, server: &str) -> (String, String) {
    let space = owner
        .create_room(json!({
            "preset": "public_chat",
            "name": "A space",
            "creation_content": { "type": "m.space" },
        }))
        .await;
    let child = owner
        .create_room(json!({ "preset": "public_chat", "name": "A child" }))
        .await;
    owner
        .set_state(&space, "m.space.child", &child, json!({ "via": [server] }))
        .await;
    (space, child)
}

#[tokio::test]
async fn space_hierarchies_are_asked_across_tessera_and_synapse() {
    // Spec: Server-Server API, "Spaces": each server asks the other about the child rooms it
    // is not in, through `GET /_matrix/federation/v1/hierarchy`.
    let pair = Pair::start().await;
    let (synapse, tessera, alice, bob) = (&pair.synapse, &pair.tessera, &pair.alice, &pair.bob);

    let (tessera_space, tessera_child) = space_with_child(alice, tessera.server_name()).await;
    join_through(bob, &tessera_space, tessera.server_name()).await;
    let page = bob
        .client
        .get(&hierarchy_path(&tessera_space, ""))
        .await
        .ok();
    assert_eq!(
        hierarchy_room_ids(&page),
        [tessera_space.as_str(), tessera_child.as_str()],
        "{page}"
    );
    assert_eq!(page["rooms"][1]["name"], "A child", "{page}");

    let (synapse_space, synapse_child) = space_with_child(bob, &synapse.server_name).await;
    join_through(alice, &synapse_space, &synapse.server_name).await;
    let page = alice
        .client
        .get(&hierarchy_path(&synapse_space, ""))
        .await
        .ok();
    assert_eq!(
        hierarchy_room_ids(&page),
        [synapse_space.as_str(), synapse_child.as_str()],
        "{page}"
    );
    assert_eq!(page["rooms"][1]["name"], "A child", "{page}");
}

/// Room version 2 (spec: rooms/v2, with the event format of rooms/v1): events name themselves
/// (`$id:server`, chosen by the sending server) and refer to their predecessors and auth
/// events as `[event_id, {"sha256": reference hash}]`. Tessera does not create such rooms but
/// takes part in them: it joins one on Synapse (its history backfilled), sends messages and
/// state Synapse accepts, sees Synapse's redactions, accepts an invite and leaves.
#[tokio::test]
async fn tessera_takes_part_in_room_version_2_rooms_on_synapse() {
    let pair = Pair::start().await;
    let (synapse, tessera, alice, bob) = (&pair.synapse, &pair.tessera, &pair.alice, &pair.bob);
    let room = bob
        .create_room(json!({
            "preset": "public_chat",
            "room_version": "2",
            "power_level_content_override": {
                "users": { bob.user_id.as_str(): 100, alice.user_id.as_str(): 100 }
            },
        }))
        .await;
    let earlier: Vec<String> = (0..3).map(|i| format!("v2 before Alice {i}")).collect();
    for body in &earlier {
        bob.send_text(&room, body).await;
    }
    join_through(alice, &room, &synapse.server_name).await;
    let page = alice.messages(&room, "dir=b&limit=50").await;
    let mut backfilled = message_bodies(chunk(&page));
    backfilled.reverse();
    assert_eq!(backfilled, earlier, "{page}");

    let sent = alice.send_text(&room, "from Tessera in a v2 room").await;
    assert!(
        sent.ends_with(&format!(":{}", tessera.server_name())),
        "Tessera names its events in v2 rooms: {sent}"
    );
    wait_for_message(bob, &room, "from Tessera in a v2 room").await;
    alice
        .set_state(
            &room,
            "m.room.topic",
            "",
            json!({ "topic": "set on Tessera" }),
        )
        .await;
    wait_until("Alice's topic to reach Synapse", DELIVERY, || async {
        let topic = bob
            .client
            .get(&format!("{}/m.room.topic/", room_path(&room, "state")))
            .await;
        (topic.status == 200 && topic.json["topic"] == "set on Tessera").then_some(())
    })
    .await;

    let doomed = bob.send_text(&room, "v2 message to redact").await;
    wait_for_message(alice, &room, "v2 message to redact").await;
    bob.client
        .put(
            &room_path(
                &room,
                &format!("redact/{}/{}", enc(&doomed), "v2-redaction"),
            ),
            json!({ "reason": "test" }),
        )
        .await
        .assert_status(200);
    wait_until("Bob's redaction to reach Tessera", DELIVERY, || async {
        let event = alice
            .client
            .get(&room_path(&room, &format!("event/{}", enc(&doomed))))
            .await
            .ok();
        (event["content"] == json!({})).then_some(())
    })
    .await;

    let private = bob
        .create_room(json!({
            "preset": "private_chat", "room_version": "2", "invite": [alice.user_id],
        }))
        .await;
    wait_until("Alice's v2 invite to reach Tessera", DELIVERY, || async {
        let sync = alice.client.get(&format!("{V3}/sync")).await.ok();
        sync["rooms"]["invite"].get(&private).map(|_| ())
    })
    .await;
    join_through(alice, &private, &synapse.server_name).await;
    alice.send_text(&private, "accepted a v2 invite").await;
    wait_for_message(bob, &private, "accepted a v2 invite").await;
    alice.leave_room(&private).await;
    wait_until("Alice's leave to reach Synapse", DELIVERY, || async {
        (bob.membership_of(&private, &alice.user_id).await.as_deref() == Some("leave"))
            .then_some(())
    })
    .await;
}
