//! Refresh tokens: `refresh_token: true` at login/register, `/refresh`, expiring access tokens.

use std::time::Duration;

use complement_tests::{Client, TestServer, User, V3, Value, json, wait_until};

const PASSWORD: &str = "refresh-password-1";

fn refresh_path() -> String {
    format!("{V3}/refresh")
}

fn expires_in_ms(body: &Value) -> u64 {
    body["expires_in_ms"]
        .as_u64()
        .filter(|ms| *ms > 0)
        .unwrap_or_else(|| panic!("expires_in_ms must be a positive integer: {body}"))
}

/// Refreshes and returns the new (access token, refresh token).
async fn refresh(client: &Client, refresh_token: &str) -> (String, String) {
    let body = client
        .anonymous()
        .post(&refresh_path(), json!({ "refresh_token": refresh_token }))
        .await
        .ok();
    expires_in_ms(&body);
    let access = body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token: {body}"));
    let refresh = body["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no new refresh_token: {body}"));
    (access.to_owned(), refresh.to_owned())
}

fn refresh_token_of(user: &User) -> String {
    user.refresh_token
        .clone()
        .unwrap_or_else(|| panic!("{} got no refresh_token", user.user_id))
}

#[tokio::test]
async fn login_and_register_issue_refresh_tokens_on_request() {
    let server = TestServer::start().await;
    let client = server.client();

    let resp = client
        .register_dummy(json!({ "username": "alice", "password": PASSWORD, "refresh_token": true }))
        .await;
    let registered = client.user_from(&resp, PASSWORD);
    expires_in_ms(&resp.json);
    refresh_token_of(&registered);

    let resp = client
        .login_raw(json!({
            "type": "m.login.password",
            "identifier": { "type": "m.id.user", "user": "alice" },
            "password": PASSWORD,
            "refresh_token": true,
        }))
        .await;
    let logged_in = client.user_from(&resp, PASSWORD);
    expires_in_ms(&resp.json);
    refresh_token_of(&logged_in);

    // Without asking, no refresh token and a non-expiring access token.
    let plain = client.login_password("alice", PASSWORD).await.ok();
    assert!(plain.get("refresh_token").is_none(), "{plain}");
    assert!(plain.get("expires_in_ms").is_none(), "{plain}");
}

#[tokio::test]
async fn refresh_rotates_tokens() {
    let server = TestServer::start().await;
    let client = server.client();
    client.register("alice", PASSWORD).await;
    let alice = client
        .login_with("alice", PASSWORD, json!({ "refresh_token": true }))
        .await;
    let old_refresh = refresh_token_of(&alice);

    let (access, new_refresh) = refresh(&client, &old_refresh).await;
    assert_ne!(access, alice.access_token);
    assert_ne!(new_refresh, old_refresh);

    // The new access token belongs to the same user and device.
    let refreshed = User {
        access_token: access.clone(),
        client: client.with_token(&access),
        refresh_token: Some(new_refresh.clone()),
        ..alice.clone()
    };
    refreshed.assert_token_valid().await;

    // Once the new access token has been used, the old refresh token is revoked.
    client
        .anonymous()
        .post(&refresh_path(), json!({ "refresh_token": old_refresh }))
        .await
        .assert_error(401, "M_UNKNOWN_TOKEN");

    // The new refresh token keeps working.
    let (access2, _) = refresh(&client, &new_refresh).await;
    client
        .with_token(&access2)
        .get(&format!("{V3}/account/whoami"))
        .await
        .assert_status(200);
}

/// Spec (`POST /refresh`): "The old refresh token remains valid until the new access token or
/// refresh token is used", so a client that lost the response can refresh again. The pair it
/// never received is then replaced.
#[tokio::test]
async fn a_lost_refresh_response_can_be_retried() {
    let server = TestServer::start().await;
    let client = server.client();
    client.register("alice", PASSWORD).await;
    let alice = client
        .login_with("alice", PASSWORD, json!({ "refresh_token": true }))
        .await;
    let old_refresh = refresh_token_of(&alice);

    let (lost_access, lost_refresh) = refresh(&client, &old_refresh).await;
    let (access, new_refresh) = refresh(&client, &old_refresh).await;
    assert_ne!(access, lost_access);

    // The pair whose response was lost is gone; the retried one works.
    let whoami = format!("{V3}/account/whoami");
    client
        .with_token(&lost_access)
        .get(&whoami)
        .await
        .assert_error(401, "M_UNKNOWN_TOKEN");
    client
        .anonymous()
        .post(&refresh_path(), json!({ "refresh_token": lost_refresh }))
        .await
        .assert_error(401, "M_UNKNOWN_TOKEN");
    client
        .with_token(&access)
        .get(&whoami)
        .await
        .assert_status(200);

    // Using the new access token revoked the old refresh token.
    client
        .anonymous()
        .post(&refresh_path(), json!({ "refresh_token": old_refresh }))
        .await
        .assert_error(401, "M_UNKNOWN_TOKEN");
    refresh(&client, &new_refresh).await;
}

#[tokio::test]
async fn unknown_refresh_token_is_rejected() {
    let server = TestServer::start().await;
    let client = server.client();
    let alice = client
        .register_with(json!({ "username": "alice", "password": PASSWORD }))
        .await;
    for token in ["not-a-refresh-token", "", alice.access_token.as_str()] {
        client
            .post(&refresh_path(), json!({ "refresh_token": token }))
            .await
            .assert_error(401, "M_UNKNOWN_TOKEN");
    }
}

#[tokio::test]
async fn logout_revokes_the_refresh_token() {
    let server = TestServer::start().await;
    let client = server.client();
    client.register("alice", PASSWORD).await;
    let alice = client
        .login_with("alice", PASSWORD, json!({ "refresh_token": true }))
        .await;
    alice
        .client
        .post(&format!("{V3}/logout"), json!({}))
        .await
        .assert_status(200);
    client
        .post(
            &refresh_path(),
            json!({ "refresh_token": refresh_token_of(&alice) }),
        )
        .await
        .assert_error(401, "M_UNKNOWN_TOKEN");
}

#[tokio::test]
async fn expired_access_token_is_a_soft_logout_and_refresh_recovers() {
    const LIFETIME_MS: u64 = 1500;
    let server = TestServer::builder()
        .access_token_lifetime_ms(LIFETIME_MS as i64)
        .start()
        .await;
    let client = server.client();
    client.register("alice", PASSWORD).await;
    let resp = client
        .login_raw(json!({
            "type": "m.login.password",
            "identifier": { "type": "m.id.user", "user": "alice" },
            "password": PASSWORD,
            "refresh_token": true,
        }))
        .await;
    let alice = client.user_from(&resp, PASSWORD);
    let lifetime = expires_in_ms(&resp.json);
    assert!(
        lifetime <= LIFETIME_MS,
        "expires_in_ms {lifetime} exceeds the configured lifetime {LIFETIME_MS}"
    );
    // A token without refresh never expires: this one must outlive alice's.
    let plain = client.login("alice", PASSWORD).await;

    let expired = wait_until(
        "the access token to expire",
        Duration::from_millis(LIFETIME_MS) + Duration::from_secs(20),
        || async {
            let resp = alice.whoami().await;
            (resp.status != 200).then_some(resp)
        },
    )
    .await;
    expired.assert_error(401, "M_UNKNOWN_TOKEN");
    assert_eq!(
        expired.json["soft_logout"], true,
        "an expired token is a soft logout: {expired}"
    );
    plain.assert_token_valid().await;

    let (access, _) = refresh(&client, &refresh_token_of(&alice)).await;
    let body = client
        .with_token(&access)
        .get(&format!("{V3}/account/whoami"))
        .await
        .ok();
    assert_eq!(body["user_id"], alice.user_id.as_str(), "{body}");
    assert_eq!(body["device_id"], alice.device_id.as_str(), "{body}");
}
