//! Federation between Tessera servers over real TLS (spec: Server-Server API): signing keys
//! published, fetched and vouched for by a notary, rotated with the old key still published; requests signed with `X-Matrix` and refused
//! when the signature, origin or destination is wrong; profile, alias and device-key queries
//! answered across servers.

use std::time::Duration;

use complement_tests::{
    TestServer, V3, Value, enc,
    federation::{Federation, federated_server_name},
    json,
    rooms::{chunk, message_bodies, room_path},
    run_tessera, wait_until,
};
use vodozemac::olm::Account;

const PASSWORD: &str = "federation-pw";

async fn get_json(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let response = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn profiles_and_aliases_are_queried_across_servers() {
    let federation = Federation::start(2).await;
    let (hs0, hs1) = (&federation.servers[0], &federation.servers[1]);
    let alice = hs0.client().register("alice", PASSWORD).await;
    alice
        .client
        .put(
            &format!("{V3}/profile/{}/displayname", enc(&alice.user_id)),
            json!({ "displayname": "Alice of hs0" }),
        )
        .await
        .ok();
    let bob = hs1.client().register("bob", PASSWORD).await;

    // Bob's server asks Alice's: a signed request over TLS, verified with a fetched key.
    let profile = bob
        .client
        .get(&format!("{V3}/profile/{}", enc(&alice.user_id)))
        .await
        .ok();
    assert_eq!(profile["displayname"], "Alice of hs0", "{profile}");
    let name = bob
        .client
        .get(&format!("{V3}/profile/{}/displayname", enc(&alice.user_id)))
        .await
        .ok();
    assert_eq!(name["displayname"], "Alice of hs0");
    // A user the remote server does not have: its 404 is passed on.
    let ghost = format!("@ghost:{}", federated_server_name(0));
    bob.client
        .get(&format!("{V3}/profile/{}", enc(&ghost)))
        .await
        .assert_error(404, "M_NOT_FOUND");

    let room = alice
        .client
        .post(
            &format!("{V3}/createRoom"),
            json!({ "room_alias_name": "lobby", "preset": "public_chat" }),
        )
        .await
        .ok();
    let alias = format!("#lobby:{}", federated_server_name(0));
    let resolved = bob
        .client
        .get(&format!("{V3}/directory/room/{}", enc(&alias)))
        .await
        .ok();
    assert_eq!(resolved["room_id"], room["room_id"]);
    assert_eq!(resolved["servers"][0], federated_server_name(0));
    bob.client
        .get(&format!(
            "{V3}/directory/room/{}",
            enc(&format!("#nowhere:{}", federated_server_name(0)))
        ))
        .await
        .assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn keys_are_published_and_vouched_for_by_a_notary() {
    let federation = Federation::start(2).await;
    let https = federation.https_client();
    let (status, own) = get_json(
        &https,
        &format!("{}/_matrix/key/v2/server", federation.federation_url(1)),
    )
    .await;
    assert_eq!(status, 200, "{own}");
    assert_eq!(own["server_name"], federated_server_name(1));
    let key_id = own["verify_keys"]
        .as_object()
        .and_then(|keys| keys.keys().next().cloned())
        .expect("a verify key");

    // hs0 as notary for hs1: the same key, signed by hs1 and by hs0.
    let (status, relayed) = get_json(
        &https,
        &format!(
            "{}/_matrix/key/v2/query/{}",
            federation.federation_url(0),
            federated_server_name(1)
        ),
    )
    .await;
    assert_eq!(status, 200, "{relayed}");
    let response = &relayed["server_keys"][0];
    assert_eq!(response["verify_keys"], own["verify_keys"], "{relayed}");
    assert!(response["signatures"][federated_server_name(1)][&key_id].is_string());
    assert!(
        response["signatures"][federated_server_name(0)]
            .as_object()
            .is_some_and(|s| !s.is_empty()),
        "{relayed}"
    );

    let batch = https
        .post(format!(
            "{}/_matrix/key/v2/query",
            federation.federation_url(0)
        ))
        .json(&json!({ "server_keys": {
            federated_server_name(1): {},
            "unreachable.invalid": {},
        } }))
        .send()
        .await
        .unwrap();
    assert_eq!(batch.status(), 200);
    let batch: Value = batch.json().await.unwrap();
    let servers: Vec<&str> = batch["server_keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["server_name"].as_str())
        .collect();
    // A server whose keys cannot be had is left out, not an error.
    assert_eq!(servers, vec![federated_server_name(1).as_str()], "{batch}");
}

#[tokio::test]
async fn requests_with_bad_authorization_are_refused() {
    let federation = Federation::start(2).await;
    let https = federation.https_client();
    let alice = federation.register(0, "alice", PASSWORD).await;
    let url = format!(
        "{}/_matrix/federation/v1/query/profile?user_id={}",
        federation.federation_url(0),
        enc(&alice.user_id)
    );
    let (_, keys) = get_json(
        &https,
        &format!("{}/_matrix/key/v2/server", federation.federation_url(1)),
    )
    .await;
    let key_id = keys["verify_keys"]
        .as_object()
        .and_then(|k| k.keys().next().cloned())
        .unwrap();
    let forged_sig = "a".repeat(86);
    let cases = [
        ("no Authorization header".to_owned(), None),
        (
            "a signature that does not verify".to_owned(),
            Some(format!(
                "X-Matrix origin=\"{}\",destination=\"{}\",key=\"{key_id}\",sig=\"{forged_sig}\"",
                federated_server_name(1),
                federated_server_name(0)
            )),
        ),
        (
            "another destination".to_owned(),
            Some(format!(
                "X-Matrix origin=\"{}\",destination=\"elsewhere.example\",key=\"{key_id}\",sig=\"{forged_sig}\"",
                federated_server_name(1)
            )),
        ),
        (
            "an origin whose keys cannot be had".to_owned(),
            Some(format!(
                "X-Matrix origin=\"unreachable.invalid\",destination=\"{}\",key=\"ed25519:x\",sig=\"{forged_sig}\"",
                federated_server_name(0)
            )),
        ),
    ];
    for (case, header) in cases {
        let mut request = https.get(&url);
        if let Some(header) = header {
            request = request.header("Authorization", header);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{case}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["errcode"], "M_UNAUTHORIZED", "{case}: {body}");
    }
}

#[tokio::test]
async fn device_keys_are_queried_and_claimed_across_servers() {
    let federation = Federation::start(2).await;
    let alice = federation.register(0, "alice", PASSWORD).await;
    let bob = federation.register(1, "bob", PASSWORD).await;
    let mut account = Account::new();
    let identity = account.identity_keys();
    let mut device_keys = json!({
        "user_id": alice.user_id,
        "device_id": alice.device_id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {
            format!("curve25519:{}", alice.device_id): identity.curve25519.to_base64(),
            format!("ed25519:{}", alice.device_id): identity.ed25519.to_base64(),
        },
    });
    let signature = account
        .sign(serde_json::to_string(&device_keys).unwrap())
        .to_base64();
    device_keys["signatures"] =
        json!({ (alice.user_id.clone()): { format!("ed25519:{}", alice.device_id): signature } });
    account.generate_one_time_keys(1);
    let (otk_id, otk) = account
        .one_time_keys()
        .into_iter()
        .next()
        .map(|(id, key)| (id.to_base64(), key.to_base64()))
        .unwrap();
    let mut signed_otk = json!({ "key": otk });
    let otk_signature = account
        .sign(serde_json::to_string(&signed_otk).unwrap())
        .to_base64();
    signed_otk["signatures"] = json!({ (alice.user_id.clone()): {
        format!("ed25519:{}", alice.device_id): otk_signature } });
    alice
        .client
        .post(
            &format!("{V3}/keys/upload"),
            json!({
                "device_keys": device_keys,
                "one_time_keys": { format!("signed_curve25519:{otk_id}"): signed_otk },
            }),
        )
        .await
        .ok();

    let queried = bob
        .client
        .post(
            &format!("{V3}/keys/query"),
            json!({ "device_keys": {
                (alice.user_id.clone()): [],
                "@nobody:unreachable.invalid": [],
            } }),
        )
        .await
        .ok();
    let got = &queried["device_keys"][&alice.user_id][&alice.device_id];
    assert_eq!(got["keys"], device_keys["keys"], "{queried}");
    assert_eq!(got["signatures"], device_keys["signatures"]);
    assert!(
        queried["failures"]["unreachable.invalid"].is_object(),
        "{queried}"
    );

    let claim_body = json!({ "one_time_keys": { (alice.user_id.clone()): {
        (alice.device_id.clone()): "signed_curve25519" } } });
    let claim_path = format!("{V3}/keys/claim");
    let claimed = bob.client.post(&claim_path, claim_body.clone()).await.ok();
    let keys = &claimed["one_time_keys"][&alice.user_id][&alice.device_id];
    assert_eq!(
        keys[format!("signed_curve25519:{otk_id}")]["key"],
        otk,
        "{claimed}"
    );
    // The key was consumed on Alice's server: a second claim gets nothing.
    let again = bob.client.post(&claim_path, claim_body).await.ok();
    assert!(
        again["one_time_keys"][&alice.user_id][&alice.device_id]
            .as_object()
            .is_none_or(|k| k.is_empty()),
        "{again}"
    );
}

#[tokio::test]
async fn private_addresses_are_refused_unless_allowed() {
    let target = TestServer::start().await;
    let asking = TestServer::start().await;
    let bob = asking.client().register("bob", PASSWORD).await;
    // `localhost:<port>` resolves to loopback, which federation may not reach by default.
    let response = bob
        .client
        .get(&format!("{V3}/profile/{}", enc(&target.user_id("anyone"))))
        .await;
    response.assert_error(502, "M_UNKNOWN");
    assert!(
        response.json["error"]
            .as_str()
            .is_some_and(|e| e.contains("may not connect")),
        "{}",
        response.json
    );
}

/// Spec: `GET/POST /publicRooms` with `server`, answered through the Server-Server API's
/// `/publicRooms`.
#[tokio::test]
async fn the_room_directory_of_another_server_is_listed() {
    let federation = Federation::start(2).await;
    let alice = federation.register(0, "alice", PASSWORD).await;
    let bob = federation.register(1, "bob", PASSWORD).await;
    let room_id = alice
        .create_room(json!({
            "preset": "public_chat", "visibility": "public", "name": "Lobby of hs0",
        }))
        .await;
    alice
        .create_room(json!({ "preset": "public_chat", "name": "Unlisted" }))
        .await;
    let hs0 = enc(&federated_server_name(0));

    let listed = bob
        .client
        .get(&format!("{V3}/publicRooms?server={hs0}"))
        .await
        .ok();
    let chunk = listed["chunk"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(chunk.len(), 1, "{listed}");
    assert_eq!(chunk[0]["room_id"], room_id, "{listed}");
    assert_eq!(chunk[0]["name"], "Lobby of hs0", "{listed}");
    assert_eq!(listed["total_room_count_estimate"], 1, "{listed}");

    let search = |term: &str| json!({ "filter": { "generic_search_term": term }, "limit": 10 });
    let found = bob
        .client
        .post(&format!("{V3}/publicRooms?server={hs0}"), search("lobby"))
        .await
        .ok();
    assert_eq!(found["chunk"][0]["room_id"], room_id, "{found}");
    let none = bob
        .client
        .post(
            &format!("{V3}/publicRooms?server={hs0}"),
            search("nothing like it"),
        )
        .await
        .ok();
    assert_eq!(none["chunk"], json!([]), "{none}");
    // Bob's own server lists nothing: the rooms are hs0's.
    let own = bob.client.get(&format!("{V3}/publicRooms")).await.ok();
    assert_eq!(own["chunk"], json!([]), "{own}");
}

/// Spec: "OpenID": a user's token, checked by a third party through the federation API.
#[tokio::test]
async fn openid_tokens_prove_who_the_user_is() {
    let federation = Federation::start(1).await;
    let alice = federation.register(0, "alice", PASSWORD).await;
    let bob = federation.register(0, "bob", PASSWORD).await;
    let request = |user: &str| format!("{V3}/user/{}/openid/request_token", enc(user));
    let token = alice
        .client
        .post(&request(&alice.user_id), json!({}))
        .await
        .ok();
    assert_eq!(token["token_type"], "Bearer", "{token}");
    assert_eq!(
        token["matrix_server_name"],
        federated_server_name(0),
        "{token}"
    );
    assert_eq!(token["expires_in"], 3600, "{token}");
    alice
        .client
        .post(&request(&bob.user_id), json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");

    // The third party asks without any signature, by the token alone.
    let https = federation.https_client();
    let userinfo = |token: &str| {
        format!(
            "{}/_matrix/federation/v1/openid/userinfo?access_token={}",
            federation.federation_url(0),
            enc(token)
        )
    };
    let access_token = token["access_token"].as_str().unwrap();
    let (status, body) = get_json(&https, &userinfo(access_token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sub"], alice.user_id, "{body}");
    // It stays valid until it expires.
    let (status, _) = get_json(&https, &userinfo(access_token)).await;
    assert_eq!(status, 200);
    let (status, body) = get_json(&https, &userinfo("not-a-token")).await;
    assert_eq!(
        (status, body["errcode"].clone()),
        (401, json!("M_UNKNOWN_TOKEN")),
        "{body}"
    );
    // An access token of the Client-Server API is no OpenID token.
    let (status, _) = get_json(&https, &userinfo(&alice.access_token)).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_rotated_key_stays_published_as_old_so_what_it_signed_still_verifies() {
    // Spec: Server-Server API, "Publishing Keys": a key no longer used is listed in
    // `old_verify_keys` with `expired_ts`, and still verifies what it signed before then.
    let mut federation = Federation::start(2).await;
    let https = federation.https_client();
    let keys_url = format!("{}/_matrix/key/v2/server", federation.federation_url(0));
    let alice = federation.register(0, "alice", PASSWORD).await;
    let room_id = alice
        .create_room(json!({ "preset": "public_chat", "room_alias_name": "lobby" }))
        .await;
    let (_, before) = get_json(&https, &keys_url).await;
    let (old_id, old_key) = before["verify_keys"]
        .as_object()
        .and_then(|keys| keys.iter().next())
        .map(|(id, key)| (id.clone(), key["key"].clone()))
        .expect("a verify key");

    federation.servers[0].stop();
    let config = federation.servers[0].config_path().display().to_string();
    let rotated = run_tessera(&["key", "rotate", "--config", &config]).await;
    assert_eq!(rotated.code, Some(0), "{rotated}");
    assert!(rotated.stdout.contains(&old_id), "{rotated}");
    federation.servers[0].run().await;

    let (status, after) = get_json(&https, &keys_url).await;
    assert_eq!(status, 200, "{after}");
    let new_id = after["verify_keys"]
        .as_object()
        .and_then(|keys| keys.keys().next().cloned())
        .expect("a verify key");
    assert_ne!(new_id, old_id);
    assert!(after["signatures"][federated_server_name(0)][&new_id].is_string());
    let old = &after["old_verify_keys"][&old_id];
    assert_eq!(old["key"], old_key, "{after}");
    assert!(
        old["expired_ts"].as_u64().is_some_and(|ts| ts > 0),
        "{after}"
    );

    // A server that never saw the old key joins: the room's state it receives was signed with
    // the old key, its new messages with the new one.
    let carol = federation.register(1, "carol", PASSWORD).await;
    let alias = format!("#lobby:{}", federated_server_name(0));
    let joined = carol
        .client
        .post(&format!("{V3}/join/{}", enc(&alias)), json!({}))
        .await
        .ok();
    assert_eq!(joined["room_id"], room_id.as_str(), "{joined}");
    alice.send_text(&room_id, "signed with the new key").await;
    wait_until(
        "carol to receive a message signed with the new key",
        Duration::from_secs(30),
        || async {
            let page = carol
                .client
                .get(&format!(
                    "{}?dir=b&limit=10",
                    room_path(&room_id, "messages")
                ))
                .await
                .ok();
            message_bodies(chunk(&page))
                .contains(&"signed with the new key".to_owned())
                .then_some(())
        },
    )
    .await;
}
