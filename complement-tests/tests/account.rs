//! `/account/password` and `/account/deactivate`, both behind User-Interactive Auth.

use complement_tests::{Method, TestServer, V3, json, password_auth, with_auth};

const OLD: &str = "old password 1";
const NEW: &str = "new password 2";

#[tokio::test]
async fn password_change_requires_uia() {
    let server = TestServer::start().await;
    let alice = server.client().register("alice", OLD).await;
    alice
        .client
        .uia_start(
            Method::POST,
            &format!("{V3}/account/password"),
            json!({ "new_password": NEW }),
            "m.login.password",
        )
        .await;
    // Nothing changed by the unauthenticated attempt.
    server.client().login("alice", OLD).await;
}

#[tokio::test]
async fn password_change_logs_out_other_devices() {
    let server = TestServer::start().await;
    let client = server.client();
    let current = client.register("alice", OLD).await;
    let other = client.login("alice", OLD).await;

    let body = current
        .uia_password(
            Method::POST,
            &format!("{V3}/account/password"),
            json!({ "new_password": NEW, "logout_devices": true }),
        )
        .await
        .ok();
    assert_eq!(body, json!({}));

    other.assert_token_invalid().await;
    current.assert_token_valid().await;
    client
        .login_password("alice", OLD)
        .await
        .assert_error(403, "M_FORBIDDEN");
    client.login("alice", NEW).await;
}

#[tokio::test]
async fn password_change_logs_out_other_devices_by_default() {
    let server = TestServer::start().await;
    let client = server.client();
    let current = client.register("alice", OLD).await;
    let other = client.login("alice", OLD).await;
    current
        .uia_password(
            Method::POST,
            &format!("{V3}/account/password"),
            json!({ "new_password": NEW }),
        )
        .await
        .assert_status(200);
    other.assert_token_invalid().await;
    current.assert_token_valid().await;
}

#[tokio::test]
async fn password_change_can_keep_other_devices() {
    let server = TestServer::start().await;
    let client = server.client();
    let current = client.register("alice", OLD).await;
    let other = client.login("alice", OLD).await;
    current
        .uia_password(
            Method::POST,
            &format!("{V3}/account/password"),
            json!({ "new_password": NEW, "logout_devices": false }),
        )
        .await
        .assert_status(200);
    other.assert_token_valid().await;
    current.assert_token_valid().await;
    client.login("alice", NEW).await;
}

#[tokio::test]
async fn password_change_with_wrong_password_fails() {
    let server = TestServer::start().await;
    let client = server.client();
    let alice = client.register("alice", OLD).await;
    let path = format!("{V3}/account/password");
    let body = json!({ "new_password": NEW });
    let session = alice
        .client
        .uia_start(Method::POST, &path, body.clone(), "m.login.password")
        .await;
    let resp = alice
        .client
        .post(
            &path,
            with_auth(body, password_auth(&session, &alice.user_id, "wrong")),
        )
        .await;
    resp.assert_error(401, "M_FORBIDDEN");
    assert!(resp.json["flows"].is_array(), "{resp}");
    alice.assert_token_valid().await;
    client.login("alice", OLD).await;
    client
        .login_password("alice", NEW)
        .await
        .assert_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn password_change_cannot_authenticate_as_someone_else() {
    let server = TestServer::start().await;
    let client = server.client();
    let alice = client.register("alice", OLD).await;
    let mallory = client.register("mallory", "mallory-password").await;
    // Mallory's session, but UIA with Alice's credentials: must not change anyone's password.
    let path = format!("{V3}/account/password");
    let body = json!({ "new_password": NEW });
    let session = mallory
        .client
        .uia_start(Method::POST, &path, body.clone(), "m.login.password")
        .await;
    let resp = mallory
        .client
        .post(
            &path,
            with_auth(body, password_auth(&session, &alice.user_id, OLD)),
        )
        .await;
    assert!(
        resp.status == 401 || resp.status == 403,
        "UIA for another user than the session's must fail: {resp}"
    );
    client.login("alice", OLD).await;
    client.login("mallory", "mallory-password").await;
}

#[tokio::test]
async fn deactivate_account() {
    let server = TestServer::start().await;
    let client = server.client();
    let alice = client.register("alice", OLD).await;
    let other_device = client.login("alice", OLD).await;
    let bob = client.register("bob", "bob-password-1").await;

    let path = format!("{V3}/account/deactivate");
    alice
        .client
        .uia_start(Method::POST, &path, json!({}), "m.login.password")
        .await;
    alice.assert_token_valid().await;

    let body = alice
        .uia_password(Method::POST, &path, json!({}))
        .await
        .ok();
    let unbind = body["id_server_unbind_result"].as_str();
    assert!(
        matches!(unbind, Some("success" | "no-support")),
        "id_server_unbind_result must be success or no-support: {body}"
    );

    alice.assert_token_invalid().await;
    other_device.assert_token_invalid().await;
    // Servers may say M_USER_DEACTIVATED or M_FORBIDDEN.
    client
        .login_password("alice", OLD)
        .await
        .assert_error_in(403, &["M_FORBIDDEN", "M_USER_DEACTIVATED"]);
    bob.assert_token_valid().await;
    client.login("bob", "bob-password-1").await;
}

#[tokio::test]
async fn deactivate_with_wrong_password_keeps_the_account() {
    let server = TestServer::start().await;
    let client = server.client();
    let alice = client.register("alice", OLD).await;
    let path = format!("{V3}/account/deactivate");
    let session = alice
        .client
        .uia_start(Method::POST, &path, json!({}), "m.login.password")
        .await;
    alice
        .client
        .post(
            &path,
            with_auth(json!({}), password_auth(&session, &alice.user_id, "wrong")),
        )
        .await
        .assert_error(401, "M_FORBIDDEN");
    alice.assert_token_valid().await;
    client.login("alice", OLD).await;
}
