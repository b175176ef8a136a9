//! `/login` (flows, m.login.password, m.login.token), `/logout`, `/logout/all`,
//! `/account/whoami`, access token transport.

use complement_tests::{Method, TestServer, V3, enc, json};

const PASSWORD: &str = "correct horse battery staple";

#[tokio::test]
async fn login_flows_offer_password() {
    let server = TestServer::start().await;
    let body = server.client().get(&format!("{V3}/login")).await.ok();
    let flows = body["flows"]
        .as_array()
        .unwrap_or_else(|| panic!("no flows: {body}"));
    assert!(
        flows.iter().all(|f| f["type"].is_string()),
        "every flow needs a type: {body}"
    );
    assert!(
        flows.iter().any(|f| f["type"] == "m.login.password"),
        "m.login.password not offered: {body}"
    );
}

#[tokio::test]
async fn password_login_with_localpart_or_user_id() {
    let server = TestServer::start().await;
    let client = server.client();
    let registered = client.register("alice", PASSWORD).await;

    let by_localpart = client.login("alice", PASSWORD).await;
    let by_user_id = client.login(&server.user_id("alice"), PASSWORD).await;
    for user in [&by_localpart, &by_user_id] {
        assert_eq!(user.user_id, registered.user_id);
        user.assert_token_valid().await;
    }
    let mut expected = vec![
        registered.device_id.clone(),
        by_localpart.device_id.clone(),
        by_user_id.device_id.clone(),
    ];
    expected.sort();
    expected.dedup();
    assert_eq!(expected.len(), 3, "every login gets its own device");
    assert_eq!(registered.device_ids().await, expected);
}

#[tokio::test]
async fn login_with_device_id_and_display_name() {
    let server = TestServer::start().await;
    let client = server.client();
    client.register("alice", PASSWORD).await;
    let laptop = client
        .login_with(
            "alice",
            PASSWORD,
            json!({ "device_id": "LAPTOP", "initial_device_display_name": "Work laptop" }),
        )
        .await;
    assert_eq!(laptop.device_id, "LAPTOP");
    laptop.assert_token_valid().await;
    let device = laptop
        .client
        .get(&format!("{V3}/devices/LAPTOP"))
        .await
        .ok();
    assert_eq!(device["display_name"], "Work laptop", "{device}");

    // Logging in again with the same device_id reuses the device instead of adding one, and
    // keeps its display name ("Ignored if device_id corresponds to a known device").
    let again = client
        .login_with(
            "alice",
            PASSWORD,
            json!({ "device_id": "LAPTOP", "initial_device_display_name": "Renamed?" }),
        )
        .await;
    assert_eq!(again.device_id, "LAPTOP");
    again.assert_token_valid().await;
    let ids = again.device_ids().await;
    assert_eq!(
        ids.iter().filter(|id| *id == "LAPTOP").count(),
        1,
        "{ids:?}"
    );
    let device = again.client.get(&format!("{V3}/devices/LAPTOP")).await.ok();
    assert_eq!(device["display_name"], "Work laptop", "{device}");
}

#[tokio::test]
async fn wrong_password_and_unknown_user_are_forbidden() {
    let server = TestServer::start().await;
    let client = server.client();
    client.register("alice", PASSWORD).await;
    client
        .login_password("alice", "wrong password")
        .await
        .assert_error(403, "M_FORBIDDEN");
    client
        .login_password("nobody", PASSWORD)
        .await
        .assert_error(403, "M_FORBIDDEN");
    client
        .login_password(&format!("@alice:{}x", server.server_name()), PASSWORD)
        .await
        .assert_error(403, "M_FORBIDDEN");
    client
        .login_password("alice", "")
        .await
        .assert_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn unknown_login_type_is_rejected() {
    let server = TestServer::start().await;
    let resp = server
        .client()
        .login_raw(json!({ "type": "m.login.bogus", "user": "alice", "password": "x" }))
        .await;
    // The spec's example uses M_UNKNOWN ("Bad login type."); any 400 Matrix error is fine.
    resp.assert_error_in(
        400,
        &[
            "M_UNKNOWN",
            "M_BAD_JSON",
            "M_INVALID_PARAM",
            "M_UNRECOGNIZED",
        ],
    );
}

#[tokio::test]
async fn token_login() {
    let server = TestServer::start().await;
    let client = server.client();
    let alice = client.register("alice", PASSWORD).await;

    client
        .login_raw(json!({ "type": "m.login.token", "token": "not-a-real-token" }))
        .await
        .assert_error(403, "M_FORBIDDEN");

    // When the server says it issues login tokens, the whole round trip must work.
    let flows = client.get(&format!("{V3}/login")).await.ok();
    let issues_tokens = flows["flows"].as_array().is_some_and(|flows| {
        flows
            .iter()
            .any(|f| f["type"] == "m.login.token" && f["get_login_token"] == true)
    });
    if !issues_tokens {
        return;
    }
    let path = "/_matrix/client/v1/login/get_token";
    let resp = alice.uia_password(Method::POST, path, json!({})).await;
    let body = resp.ok();
    let token = body["login_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no login_token: {body}"))
        .to_owned();
    assert!(body["expires_in_ms"].is_u64(), "{body}");
    let resp = client
        .login_raw(json!({ "type": "m.login.token", "token": token }))
        .await;
    let second = client.user_from(&resp, PASSWORD);
    assert_eq!(second.user_id, alice.user_id);
    assert_ne!(second.device_id, alice.device_id);
    // Single use.
    client
        .login_raw(json!({ "type": "m.login.token", "token": token }))
        .await
        .assert_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn whoami_reports_user_and_device() {
    let server = TestServer::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let body = alice.whoami().await.ok();
    assert_eq!(body["user_id"], alice.user_id.as_str(), "{body}");
    assert_eq!(body["device_id"], alice.device_id.as_str(), "{body}");
    if let Some(is_guest) = body.get("is_guest") {
        assert_eq!(is_guest, false, "{body}");
    }
}

#[tokio::test]
async fn access_token_in_query_string_is_accepted() {
    let server = TestServer::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let body = server
        .client()
        .get(&format!(
            "{V3}/account/whoami?access_token={}",
            enc(&alice.access_token)
        ))
        .await
        .ok();
    assert_eq!(body["user_id"], alice.user_id.as_str(), "{body}");
}

#[tokio::test]
async fn logout_invalidates_the_token_and_deletes_the_device() {
    let server = TestServer::start().await;
    let client = server.client();
    let phone = client.register("alice", PASSWORD).await;
    let laptop = client.login("alice", PASSWORD).await;

    let body = phone
        .client
        .post(&format!("{V3}/logout"), json!({}))
        .await
        .ok();
    assert_eq!(body, json!({}));

    let resp = phone.whoami().await;
    resp.assert_error(401, "M_UNKNOWN_TOKEN");
    assert_ne!(
        resp.json["soft_logout"], true,
        "a logged-out token is not a soft logout: {resp}"
    );
    laptop.assert_token_valid().await;
    assert_eq!(laptop.device_ids().await, vec![laptop.device_id.clone()]);

    // Logging out again with the dead token is an unknown token.
    phone
        .client
        .post(&format!("{V3}/logout"), json!({}))
        .await
        .assert_error(401, "M_UNKNOWN_TOKEN");
}

#[tokio::test]
async fn logout_all_invalidates_every_token() {
    let server = TestServer::start().await;
    let client = server.client();
    let bob = client.register("bob", "bob-password-1").await;
    let sessions = [
        client.register("alice", PASSWORD).await,
        client.login("alice", PASSWORD).await,
        client.login("alice", PASSWORD).await,
    ];
    let body = sessions[1]
        .client
        .post(&format!("{V3}/logout/all"), json!({}))
        .await
        .ok();
    assert_eq!(body, json!({}));
    for session in &sessions {
        session.assert_token_invalid().await;
    }
    // Other users are untouched; alice can log in again and has only the new device.
    bob.assert_token_valid().await;
    let fresh = client.login("alice", PASSWORD).await;
    assert_eq!(fresh.device_ids().await, vec![fresh.device_id.clone()]);
}

/// An empty device ID would be a device that "delete all but one" logic could miss; it is
/// refused, and so is an absurdly long one.
#[tokio::test]
async fn empty_or_huge_device_ids_are_refused() {
    let server = TestServer::start().await;
    let client = server.client();
    client.register("alice", "device-id-password").await;
    for device_id in [String::new(), "D".repeat(300)] {
        let mut body = complement_tests::password_login_body("alice", "device-id-password");
        body["device_id"] = json!(device_id);
        client
            .login_raw(body)
            .await
            .assert_error(400, "M_INVALID_PARAM");
    }
    // Nothing was created by the refused logins.
    let alice = client.login("alice", "device-id-password").await;
    let devices = alice.client.get(&format!("{V3}/devices")).await.ok();
    assert_eq!(
        devices["devices"].as_array().map(Vec::len),
        Some(2),
        "{devices}"
    );
}

/// A client holding a dead session sends its old token along when it logs in again; that must
/// not stop the login (Synapse ignores it too).
#[tokio::test]
async fn a_stale_token_does_not_block_login() {
    let server = TestServer::start().await;
    let client = server.client();
    let alice = client.register("alice", "stale-token-password").await;
    alice
        .client
        .post(&format!("{V3}/logout"), json!({}))
        .await
        .assert_status(200);
    // `alice.client` still sends the revoked token.
    let resp = alice
        .client
        .post(
            &format!("{V3}/login"),
            complement_tests::password_login_body("alice", "stale-token-password"),
        )
        .await;
    resp.assert_status(200);
}
