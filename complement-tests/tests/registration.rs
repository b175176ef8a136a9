//! `POST /register` (User-Interactive Auth with m.login.dummy / m.login.registration_token),
//! `/register/available`, the registration token validity endpoint, username rules.

use complement_tests::{Client, TestServer, V3, enc, json};

fn is_valid_localpart(localpart: &str) -> bool {
    !localpart.is_empty()
        && localpart
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b"-.=_/+".contains(&b))
}

#[tokio::test]
async fn open_registration_uses_uia_with_dummy_stage() {
    let server = TestServer::start().await;
    let client = server.client();
    let body = json!({ "username": "alice", "password": "alice-password-1" });

    let first = client.register_raw(body.clone()).await;
    let session = first.uia_session(&["m.login.dummy"]);

    let resp = client
        .register_raw(complement_tests::with_auth(
            body,
            json!({ "type": "m.login.dummy", "session": session }),
        ))
        .await;
    let alice = client.user_from(&resp, "alice-password-1");
    assert_eq!(alice.user_id, server.user_id("alice"), "{resp}");
    alice.assert_token_valid().await;
}

#[tokio::test]
async fn registration_without_auth_never_succeeds() {
    // "A request to an endpoint that uses User-Interactive Authentication never succeeds
    // without auth": the account must not exist after the 401.
    let server = TestServer::start().await;
    let client = server.client();
    client
        .register_raw(json!({ "username": "carol", "password": "carol-password" }))
        .await
        .assert_status(401);
    client
        .get(&format!("{V3}/register/available?username=carol"))
        .await
        .assert_status(200);
}

#[tokio::test]
async fn register_with_device_id_and_display_name() {
    let server = TestServer::start().await;
    let alice = server
        .client()
        .register_with(json!({
            "username": "alice",
            "password": "alice-password-1",
            "device_id": "ALICEPHONE",
            "initial_device_display_name": "Alice's phone",
        }))
        .await;
    assert_eq!(alice.device_id, "ALICEPHONE");
    let device = alice
        .client
        .get(&format!("{V3}/devices/ALICEPHONE"))
        .await
        .ok();
    assert_eq!(device["device_id"], "ALICEPHONE", "{device}");
    assert_eq!(device["display_name"], "Alice's phone", "{device}");
}

#[tokio::test]
async fn register_without_username_generates_a_valid_user_id() {
    let server = TestServer::start().await;
    let user = server
        .client()
        .register_with(json!({ "password": "some-password-1" }))
        .await;
    let suffix = format!(":{}", server.server_name());
    let localpart = user
        .user_id
        .strip_prefix('@')
        .and_then(|rest| rest.strip_suffix(&suffix))
        .unwrap_or_else(|| panic!("generated user ID {} is not on this server", user.user_id));
    assert!(
        is_valid_localpart(localpart),
        "generated localpart {localpart:?} breaks the grammar"
    );
    user.assert_token_valid().await;
    server
        .client()
        .login(&user.user_id, "some-password-1")
        .await;
}

#[tokio::test]
async fn inhibit_login_creates_the_account_without_a_session() {
    let server = TestServer::start().await;
    let client = server.client();
    let resp = client
        .register_dummy(json!({
            "username": "quiet",
            "password": "quiet-password-1",
            "inhibit_login": true,
        }))
        .await;
    resp.assert_status(200);
    assert_eq!(resp.json["user_id"], server.user_id("quiet"), "{resp}");
    // Omitted, not null: when present both are strings in the spec's schema.
    assert!(resp.json.get("access_token").is_none(), "{resp}");
    assert!(
        resp.json.get("device_id").is_none(),
        "device_id must be omitted with inhibit_login: {resp}"
    );
    let quiet = client.login("quiet", "quiet-password-1").await;
    let devices = quiet.client.get(&format!("{V3}/devices")).await.ok();
    assert_eq!(
        devices["devices"].as_array().map(Vec::len),
        Some(1),
        "only the login's device should exist: {devices}"
    );
}

#[tokio::test]
async fn taken_username_is_rejected_before_uia() {
    let server = TestServer::start().await;
    let client = server.client();
    client.register("alice", "alice-password-1").await;
    // The spec: homeservers MUST perform these checks before User-Interactive Authentication.
    client
        .register_raw(json!({ "username": "alice", "password": "other-password" }))
        .await
        .assert_error(400, "M_USER_IN_USE");
    client
        .register_dummy(json!({ "username": "alice", "password": "other-password" }))
        .await
        .assert_error(400, "M_USER_IN_USE");
    // The original password still works, the attempted one does not.
    client.login("alice", "alice-password-1").await;
    client
        .login_password("alice", "other-password")
        .await
        .assert_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn reserved_localparts_are_invalid() {
    let server = TestServer::start().await;
    let client = server.client();
    for name in [
        "admin",
        "root",
        "administrator",
        "matrix",
        "support",
        "system",
    ] {
        client
            .register_raw(json!({ "username": name, "password": "reserved-password" }))
            .await
            .assert_error(400, "M_INVALID_USERNAME");
        client
            .get(&format!("{V3}/register/available?username={name}"))
            .await
            .assert_error(400, "M_INVALID_USERNAME");
    }
}

#[tokio::test]
async fn user_id_length_limit_is_255_bytes() {
    let server = TestServer::start().await;
    let client = server.client();
    // "@" + localpart + ":" + server_name must not exceed 255 bytes.
    let longest = 255 - 2 - server.server_name().len();
    let fits = "a".repeat(longest);
    let user = client.register(&fits, "long-password-1").await;
    assert_eq!(user.user_id.len(), 255, "{}", user.user_id);

    let too_long = "b".repeat(longest + 1);
    client
        .register_dummy(json!({ "username": too_long, "password": "long-password-1" }))
        .await
        .assert_error(400, "M_INVALID_USERNAME");
}

#[tokio::test]
async fn username_availability() {
    let server = TestServer::start().await;
    let client = server.client();
    let available = |name: &str| format!("{V3}/register/available?username={}", enc(name));

    let body = client.get(&available("alice")).await.ok();
    assert_eq!(body["available"], true, "{body}");

    client.register("alice", "alice-password-1").await;
    client
        .get(&available("alice"))
        .await
        .assert_error(400, "M_USER_IN_USE");
    client
        .get(&available("not valid"))
        .await
        .assert_error(400, "M_INVALID_USERNAME");
}

#[tokio::test]
async fn disabled_registration_is_forbidden() {
    let server = TestServer::builder()
        .registration_mode("disabled")
        .start()
        .await;
    let client = server.client();
    let body = json!({ "username": "alice", "password": "alice-password-1" });
    client
        .register_raw(body.clone())
        .await
        .assert_error(403, "M_FORBIDDEN");
    client
        .register_raw(complement_tests::with_auth(
            body,
            json!({ "type": "m.login.dummy" }),
        ))
        .await
        .assert_error(403, "M_FORBIDDEN");
    // "The homeserver does not permit registration and thus all tokens are considered invalid."
    client
        .get("/_matrix/client/v1/register/m.login.registration_token/validity?token=anything")
        .await
        .assert_error(403, "M_FORBIDDEN");
    client
        .login_password("alice", "alice-password-1")
        .await
        .assert_error(403, "M_FORBIDDEN");
}

async fn register_with_token(
    client: &Client,
    username: &str,
    token: &str,
) -> complement_tests::Response {
    let body = json!({ "username": username, "password": "token-password-1" });
    let first = client.register_raw(body.clone()).await;
    let session = first.uia_session(&["m.login.registration_token"]);
    client
        .register_raw(complement_tests::with_auth(
            body,
            json!({ "type": "m.login.registration_token", "token": token, "session": session }),
        ))
        .await
}

#[tokio::test]
async fn token_registration_requires_a_valid_token() {
    let server = TestServer::builder()
        .registration_tokens(&["letmein", "second-token"])
        .start()
        .await;
    let client = server.client();

    // Only the token flow is offered, and m.login.dummy does not get around it.
    let body = json!({ "username": "dodger", "password": "token-password-1" });
    let first = client.register_raw(body.clone()).await;
    let session = first.uia_session(&["m.login.registration_token"]);
    let dummy = client
        .register_raw(complement_tests::with_auth(
            body,
            json!({ "type": "m.login.dummy", "session": session }),
        ))
        .await;
    assert!(
        dummy.status == 401 || dummy.status == 400 || dummy.status == 403,
        "m.login.dummy must not register in token mode: {dummy}"
    );

    // A wrong token is a failed stage: 401 again, with an error, and no account.
    let wrong = register_with_token(&client, "mallory", "wrong-token").await;
    wrong.assert_status(401);
    assert!(
        wrong.errcode().is_some(),
        "a failed stage carries an errcode: {wrong}"
    );
    assert!(wrong.json["flows"].is_array(), "{wrong}");

    let ok = register_with_token(&client, "tina", "letmein").await;
    let tina = client.user_from(&ok, "token-password-1");
    assert_eq!(tina.user_id, server.user_id("tina"));
    tina.assert_token_valid().await;

    for name in ["dodger", "mallory"] {
        client
            .login_password(name, "token-password-1")
            .await
            .assert_error(403, "M_FORBIDDEN");
        client
            .get(&format!("{V3}/register/available?username={name}"))
            .await
            .assert_status(200);
    }
}

#[tokio::test]
async fn registration_token_validity() {
    let server = TestServer::builder()
        .registration_tokens(&["letmein"])
        .start()
        .await;
    let client = server.client();
    let validity = |token: &str| {
        format!(
            "/_matrix/client/v1/register/m.login.registration_token/validity?token={}",
            enc(token)
        )
    };
    let body = client.get(&validity("letmein")).await.ok();
    assert_eq!(body["valid"], true, "{body}");
    let body = client.get(&validity("nope")).await.ok();
    assert_eq!(body["valid"], false, "{body}");
}

/// With registration disabled, availability checks are refused too, so a closed server does not
/// tell strangers which accounts exist (as Synapse).
#[tokio::test]
async fn availability_is_refused_while_registration_is_disabled() {
    let server = TestServer::builder()
        .registration_mode("disabled")
        .start()
        .await;
    server
        .client()
        .get(&format!("{V3}/register/available?username=alice"))
        .await
        .assert_error(403, "M_FORBIDDEN");
}
