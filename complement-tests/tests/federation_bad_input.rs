//! Bad input on the Server-Server API, sent as a real server would sign it (the test signs with
//! a test server's own key): each request gets the spec's error and nothing stored changes.

use complement_tests::{
    Method, User, V3, enc,
    federation::{Federation, federated_server_name},
    json,
    rooms::{chunk, room_path},
};

const PASSWORD: &str = "federation-bad-input-pw";
const FED: &str = "/_matrix/federation/v1";

/// Alice on hs0 with a public room that Bob of hs1 joined; hs2 has no one in it.
async fn room(federation: &Federation) -> (User, String) {
    let alice = federation.register(0, "alice", PASSWORD).await;
    let bob = federation.register(1, "bob", PASSWORD).await;
    let room_id = alice
        .create_room(json!({ "preset": "public_chat", "room_alias_name": "bad-input" }))
        .await;
    let alias = format!("#bad-input:{}", federated_server_name(0));
    bob.client
        .post(&format!("{V3}/join/{}", enc(&alias)), json!({}))
        .await
        .ok();
    (alice, room_id)
}

#[tokio::test]
async fn served_reads_refuse_bad_requests() {
    let federation = Federation::start(3).await;
    let (alice, room_id) = room(&federation).await;
    let latest = alice.send_text(&room_id, "latest").await;
    let room = enc(&room_id);

    federation
        .signed_request(
            1,
            0,
            Method::GET,
            &format!("{FED}/event/{}", enc("$nosuchevent")),
            None,
        )
        .await
        .assert_error(404, "M_NOT_FOUND");
    // A server with no one in the room reads nothing of it.
    let state_ids = format!("{FED}/state_ids/{room}?event_id={}", enc(&latest));
    federation
        .signed_request(2, 0, Method::GET, &state_ids, None)
        .await
        .assert_error(403, "M_FORBIDDEN");
    let answer = federation
        .signed_request(1, 0, Method::GET, &state_ids, None)
        .await
        .ok();
    assert!(
        answer["pdu_ids"]
            .as_array()
            .is_some_and(|ids| !ids.is_empty()),
        "{answer}"
    );
    // The event ID is required.
    let missing = federation
        .signed_request(1, 0, Method::GET, &format!("{FED}/state_ids/{room}"), None)
        .await;
    missing.assert_status(400);

    // Backfill answers at most 100 events, whatever the limit asked for.
    for n in 0..110 {
        alice.send_text(&room_id, &format!("filler {n}")).await;
    }
    let newest = alice.send_text(&room_id, "newest").await;
    let backfill = format!("{FED}/backfill/{room}?v={}&limit=1000", enc(&newest));
    let answer = federation
        .signed_request(1, 0, Method::GET, &backfill, None)
        .await
        .ok();
    assert_eq!(
        answer["pdus"].as_array().map(Vec::len),
        Some(100),
        "{answer}"
    );

    // A server asks for a join template only for its own users.
    let intruder = format!("@mallory:{}", federated_server_name(2));
    federation
        .signed_request(
            1,
            0,
            Method::GET,
            &format!(
                "{FED}/make_join/{room}/{}?ver=10&ver=11&ver=12",
                enc(&intruder)
            ),
            None,
        )
        .await
        .assert_error(403, "M_FORBIDDEN");
    // A directory token this server never gave out.
    federation
        .signed_request(
            1,
            0,
            Method::GET,
            &format!("{FED}/publicRooms?since=bogus"),
            None,
        )
        .await
        .assert_error(400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn bad_transactions_are_refused_and_bad_pdus_rejected_alone() {
    let federation = Federation::start(2).await;
    let (alice, room_id) = room(&federation).await;
    let bob_id = format!("@bob:{}", federated_server_name(1));
    let origin = federated_server_name(1);
    let send = |txn: &str| format!("{FED}/send/{txn}");

    // More PDUs than the spec allows in one transaction.
    let many: Vec<_> = (0..51).map(|n| json!({ "n": n })).collect();
    federation
        .signed_request(
            1,
            0,
            Method::PUT,
            &send("too-many"),
            Some(json!({ "origin": origin, "origin_server_ts": 1, "pdus": many })),
        )
        .await
        .assert_error(413, "M_TOO_LARGE");
    // A transaction claiming another origin than the server that signed it.
    federation
        .signed_request(
            1,
            0,
            Method::PUT,
            &send("spoofed"),
            Some(json!({ "origin": "elsewhere.example", "origin_server_ts": 1, "pdus": [] })),
        )
        .await
        .assert_error(403, "M_FORBIDDEN");

    // A message PDU whose hashes and signatures are made up is rejected; the transaction
    // itself succeeds.
    let forged = json!({
        "room_id": room_id,
        "type": "m.room.message",
        "sender": bob_id,
        "content": { "msgtype": "m.text", "body": "forged message" },
        "origin_server_ts": 1,
        "depth": 100,
        "prev_events": [],
        "auth_events": [],
        "hashes": { "sha256": "aGFzaA" },
        "signatures": { (origin.clone()): { "ed25519:a_fake": "c2ln" } },
    });
    let answer = federation
        .signed_request(
            1,
            0,
            Method::PUT,
            &send("forged"),
            Some(json!({ "origin": origin, "origin_server_ts": 1, "pdus": [forged] })),
        )
        .await
        .ok();
    let results = answer["pdus"]
        .as_object()
        .unwrap_or_else(|| panic!("{answer}"));
    assert_eq!(results.len(), 1, "{answer}");
    let result = results.values().next().unwrap();
    assert!(result["error"].is_string(), "{answer}");

    let messages = alice
        .client
        .get(&room_path(&room_id, "messages?dir=b&limit=50"))
        .await
        .ok();
    assert!(
        chunk(&messages)
            .iter()
            .all(|event| event["content"]["body"] != "forged message"),
        "{messages}"
    );
}

/// Spec: `GET /_matrix/federation/v1/timestamp_to_event/{roomId}`, for servers in the room.
#[tokio::test]
async fn timestamp_to_event_answers_servers_in_the_room() {
    let federation = Federation::start(3).await;
    let (alice, room_id) = room(&federation).await;
    let latest = alice.send_text(&room_id, "latest").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 60_000;
    let path = |ts: u128, dir: &str| {
        format!(
            "{FED}/timestamp_to_event/{}?ts={ts}&dir={dir}",
            enc(&room_id)
        )
    };
    let answer = federation
        .signed_request(1, 0, Method::GET, &path(now, "b"), None)
        .await
        .ok();
    assert_eq!(answer["event_id"], latest, "{answer}");
    assert!(answer["origin_server_ts"].is_u64(), "{answer}");
    federation
        .signed_request(1, 0, Method::GET, &path(now, "f"), None)
        .await
        .assert_error(404, "M_NOT_FOUND");
    federation
        .signed_request(2, 0, Method::GET, &path(now, "b"), None)
        .await
        .assert_error(403, "M_FORBIDDEN");
}

/// Spec: Client-Server API, "Redactions" (room versions 3+): a server applies a redaction only
/// when its sender is of the same server as the redacted event's sender, or may redact by the
/// room's power levels. Bob of hs1, without that power, sends redactions hs1 would not send
/// itself (the test builds and signs them with hs1's key): both pass the auth rules and are
/// kept, but only the one of Bob's own message prunes anything.
#[tokio::test]
async fn a_remote_redaction_without_the_power_to_redact_is_not_applied() {
    let federation = Federation::start(2).await;
    let alice = federation.register(0, "alice", PASSWORD).await;
    let bob = federation.register(1, "bob", PASSWORD).await;
    let (hs0, hs1) = (federated_server_name(0), federated_server_name(1));
    let room_id = alice
        .create_room(json!({ "preset": "public_chat", "room_version": "11" }))
        .await;
    bob.client
        .post(
            &format!("{V3}/join/{}?server_name={}", enc(&room_id), enc(&hs0)),
            json!({}),
        )
        .await
        .ok();
    let alices = alice.send_text(&room_id, "alice's words").await;
    let bobs = bob.send_text(&room_id, "bob's words").await;
    complement_tests::wait_until(
        "Bob's message to reach hs0",
        std::time::Duration::from_secs(30),
        || async {
            let event = alice
                .client
                .get(&room_path(&room_id, &format!("event/{}", enc(&bobs))))
                .await;
            (event.status == 200).then_some(())
        },
    )
    .await;
    let mut prev = chunk(&alice.messages(&room_id, "dir=b&limit=1").await)[0]["event_id"]
        .as_str()
        .expect("the latest event")
        .to_owned();
    for (txn, target) in [("redact-alices", &alices), ("redact-bobs", &bobs)] {
        let (event_id, pdu) = federation
            .signed_redaction((1, 0), &alice, &room_id, &bob.user_id, target, &prev)
            .await;
        let answer = federation
            .signed_request(
                1,
                0,
                Method::PUT,
                &format!("{FED}/send/{txn}"),
                Some(json!({ "origin": hs1, "origin_server_ts": 1, "pdus": [pdu] })),
            )
            .await
            .ok();
        assert_eq!(answer["pdus"][&event_id], json!({}), "{answer}");
        alice
            .client
            .get(&room_path(&room_id, &format!("event/{}", enc(&event_id))))
            .await
            .assert_status(200);
        prev = event_id;
    }
    let content = |event_id: String| {
        let alice = &alice;
        let room_id = &room_id;
        async move {
            alice
                .client
                .get(&room_path(room_id, &format!("event/{}", enc(&event_id))))
                .await
                .ok()["content"]
                .clone()
        }
    };
    assert_eq!(content(alices).await["body"], "alice's words");
    assert_eq!(content(bobs).await, json!({}));
}
