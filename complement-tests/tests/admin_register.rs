//! Synapse-compatible shared-secret registration: `/_synapse/admin/v1/register`.

use complement_tests::{TestServer, admin_register_mac, json};

const PATH: &str = "/_synapse/admin/v1/register";

#[tokio::test]
async fn shared_secret_registration_works_while_public_registration_is_disabled() {
    let server = TestServer::builder()
        .registration_mode("disabled")
        .start()
        .await;
    let client = server.client();
    for (name, admin) in [("botuser", false), ("boss", true)] {
        let resp = client
            .admin_register(server.shared_secret(), name, "bot-password-1", admin)
            .await;
        let user = client.user_from(&resp, "bot-password-1");
        assert_eq!(user.user_id, server.user_id(name), "{resp}");
        user.assert_token_valid().await;
        client.login(name, "bot-password-1").await;
    }
}

#[tokio::test]
async fn nonces_are_fresh_and_single_use() {
    let server = TestServer::start().await;
    let client = server.client();
    let first = client.admin_register_nonce().await;
    let second = client.admin_register_nonce().await;
    assert_ne!(first, second, "every GET must issue a new nonce");

    let register = |nonce: &str, username: &str| {
        let mac = admin_register_mac(server.shared_secret(), nonce, username, "pw-123456", false);
        json!({
            "nonce": nonce, "username": username, "password": "pw-123456",
            "admin": false, "mac": mac,
        })
    };
    client
        .post(PATH, register(&first, "once"))
        .await
        .assert_status(200);
    let replay = client.post(PATH, register(&first, "twice")).await;
    assert!(
        (400..500).contains(&replay.status) && replay.errcode().is_some(),
        "a used nonce must be refused with a Matrix error: {replay}"
    );
    client
        .login_password("twice", "pw-123456")
        .await
        .assert_error(403, "M_FORBIDDEN");

    let unknown = client.post(PATH, register("made-up-nonce", "forged")).await;
    assert!(
        (400..500).contains(&unknown.status) && unknown.errcode().is_some(),
        "an unknown nonce must be refused with a Matrix error: {unknown}"
    );
    client
        .login_password("forged", "pw-123456")
        .await
        .assert_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn wrong_mac_is_forbidden() {
    let server = TestServer::start().await;
    let client = server.client();
    let cases = [
        // Signed with another secret.
        ("wrongsecret", false, false),
        // admin flag flipped after signing.
        (server.shared_secret(), true, false),
    ];
    for (secret, signed_admin, sent_admin) in cases {
        let nonce = client.admin_register_nonce().await;
        let mac = admin_register_mac(secret, &nonce, "intruder", "pw-123456", signed_admin);
        client
            .post(
                PATH,
                json!({
                    "nonce": nonce, "username": "intruder", "password": "pw-123456",
                    "admin": sent_admin, "mac": mac,
                }),
            )
            .await
            .assert_error(403, "M_FORBIDDEN");
    }
    client
        .login_password("intruder", "pw-123456")
        .await
        .assert_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn username_rules_apply() {
    let server = TestServer::start().await;
    let client = server.client();
    client.register("taken", "pw-123456").await;
    client
        .admin_register(server.shared_secret(), "taken", "other-pw-1", false)
        .await
        .assert_error(400, "M_USER_IN_USE");
    client.login("taken", "pw-123456").await;
    client
        .admin_register(server.shared_secret(), "Not Valid", "pw-123456", false)
        .await
        .assert_error(400, "M_INVALID_USERNAME");
}

#[tokio::test]
async fn endpoint_is_off_without_a_shared_secret() {
    let server = TestServer::builder().shared_secret("").start().await;
    let client = server.client();
    let nonce_resp = client.get(PATH).await;
    let nonce = nonce_resp.json["nonce"].as_str().unwrap_or("nonce");
    // With an empty secret an attacker could compute the MAC; it must not be accepted.
    let mac = admin_register_mac("", nonce, "sneaky", "pw-123456", true);
    let resp = client
        .post(
            PATH,
            json!({
                "nonce": nonce, "username": "sneaky", "password": "pw-123456",
                "admin": true, "mac": mac,
            }),
        )
        .await;
    assert!(
        (400..500).contains(&resp.status) && resp.errcode().is_some(),
        "shared-secret registration must be off: {resp}"
    );
    client
        .login_password("sneaky", "pw-123456")
        .await
        .assert_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn shared_secret_from_a_file_or_an_environment_variable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_file = dir.path().join("shared_secret");
    std::fs::write(&secret_file, "secret-from-a-file").expect("write the secret file");
    let mut from_file = toml::Table::new();
    from_file.insert("file".into(), secret_file.to_string_lossy().as_ref().into());
    let mut from_env = toml::Table::new();
    from_env.insert("env".into(), "TESSERA_TEST_SHARED_SECRET".into());

    let servers = [
        (
            TestServer::builder()
                .set("registration.shared_secret", from_file)
                .start()
                .await,
            "secret-from-a-file",
        ),
        (
            TestServer::builder()
                .env("TESSERA_TEST_SHARED_SECRET", "secret-from-the-environment")
                .set("registration.shared_secret", from_env)
                .start()
                .await,
            "secret-from-the-environment",
        ),
    ];
    for (server, secret) in &servers {
        let client = server.client();
        client
            .admin_register("not-the-secret", "wrongsigner", "pw-123456", false)
            .await
            .assert_error(403, "M_FORBIDDEN");
        let resp = client
            .admin_register(secret, "rightsigner", "pw-123456", false)
            .await;
        client
            .user_from(&resp, "pw-123456")
            .assert_token_valid()
            .await;
    }
}
