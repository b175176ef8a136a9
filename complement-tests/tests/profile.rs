//! Profiles: displayname and avatar_url get/set, `GET /profile/{userId}`.

use complement_tests::{Method, TestServer, V3, enc, json};

fn field_path(user_id: &str, field: &str) -> String {
    format!("{V3}/profile/{}/{field}", enc(user_id))
}

#[tokio::test]
async fn displayname_set_by_owner_is_readable_by_others() {
    let server = TestServer::start().await;
    let client = server.client();
    let alice = client.register("alice", "alice-password-1").await;
    let bob = client.register("bob", "bob-password-1").await;

    let body = alice
        .client
        .put(
            &field_path(&alice.user_id, "displayname"),
            json!({ "displayname": "Alice Liddell" }),
        )
        .await
        .ok();
    assert_eq!(body, json!({}));

    let own = alice
        .client
        .get(&field_path(&alice.user_id, "displayname"))
        .await
        .ok();
    assert_eq!(own["displayname"], "Alice Liddell", "{own}");

    let seen = bob
        .client
        .get(&format!("{V3}/profile/{}", enc(&alice.user_id)))
        .await
        .ok();
    assert_eq!(seen["displayname"], "Alice Liddell", "{seen}");
    let seen = bob
        .client
        .get(&field_path(&alice.user_id, "displayname"))
        .await
        .ok();
    assert_eq!(seen["displayname"], "Alice Liddell", "{seen}");

    // Changing it again replaces it; unicode survives.
    alice
        .client
        .put(
            &field_path(&alice.user_id, "displayname"),
            json!({ "displayname": "爱丽丝 🐇" }),
        )
        .await
        .assert_status(200);
    let seen = bob
        .client
        .get(&field_path(&alice.user_id, "displayname"))
        .await
        .ok();
    assert_eq!(seen["displayname"], "爱丽丝 🐇", "{seen}");
}

#[tokio::test]
async fn avatar_url_round_trip() {
    let server = TestServer::start().await;
    let client = server.client();
    let alice = client.register("alice", "alice-password-1").await;
    let bob = client.register("bob", "bob-password-1").await;
    let avatar = format!("mxc://{}/avatar123", server.server_name());

    // Not set yet: no such field.
    bob.client
        .get(&field_path(&alice.user_id, "avatar_url"))
        .await
        .assert_error(404, "M_NOT_FOUND");

    alice
        .client
        .put(
            &field_path(&alice.user_id, "avatar_url"),
            json!({ "avatar_url": avatar }),
        )
        .await
        .assert_status(200);
    alice
        .client
        .put(
            &field_path(&alice.user_id, "displayname"),
            json!({ "displayname": "Alice" }),
        )
        .await
        .assert_status(200);

    let field = bob
        .client
        .get(&field_path(&alice.user_id, "avatar_url"))
        .await
        .ok();
    assert_eq!(field["avatar_url"], avatar.as_str(), "{field}");
    let profile = bob
        .client
        .get(&format!("{V3}/profile/{}", enc(&alice.user_id)))
        .await
        .ok();
    assert_eq!(profile["avatar_url"], avatar.as_str(), "{profile}");
    assert_eq!(profile["displayname"], "Alice", "{profile}");
}

#[tokio::test]
async fn cannot_change_someone_elses_profile() {
    let server = TestServer::start().await;
    let client = server.client();
    let alice = client.register("alice", "alice-password-1").await;
    let mallory = client.register("mallory", "mallory-password-1").await;
    alice
        .client
        .put(
            &field_path(&alice.user_id, "displayname"),
            json!({ "displayname": "Alice" }),
        )
        .await
        .assert_status(200);

    mallory
        .client
        .put(
            &field_path(&alice.user_id, "displayname"),
            json!({ "displayname": "Pwned" }),
        )
        .await
        .assert_error(403, "M_FORBIDDEN");
    mallory
        .client
        .put(
            &field_path(&alice.user_id, "avatar_url"),
            json!({ "avatar_url": "mxc://evil.example/x" }),
        )
        .await
        .assert_error(403, "M_FORBIDDEN");
    // Without a token it is not even attempted.
    server
        .client()
        .put(
            &field_path(&alice.user_id, "displayname"),
            json!({ "displayname": "Pwned" }),
        )
        .await
        .assert_error(401, "M_MISSING_TOKEN");

    let profile = client
        .get(&format!("{V3}/profile/{}", enc(&alice.user_id)))
        .await
        .ok();
    assert_eq!(profile["displayname"], "Alice", "{profile}");
    assert!(profile.get("avatar_url").is_none(), "{profile}");
}

#[tokio::test]
async fn unknown_user_has_no_profile() {
    let server = TestServer::start().await;
    let alice = server.client().register("alice", "alice-password-1").await;
    let nobody = server.user_id("nobody");
    alice
        .client
        .get(&format!("{V3}/profile/{}", enc(&nobody)))
        .await
        .assert_error(404, "M_NOT_FOUND");
    alice
        .client
        .get(&field_path(&nobody, "displayname"))
        .await
        .assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn displayname_must_be_a_string() {
    let server = TestServer::start().await;
    let alice = server.client().register("alice", "alice-password-1").await;
    let path = field_path(&alice.user_id, "displayname");
    alice
        .client
        .put(&path, json!({ "displayname": "Alice" }))
        .await
        .assert_status(200);
    alice
        .client
        .put(&path, json!({ "displayname": 42 }))
        .await
        .assert_error(400, "M_BAD_JSON");
    let body = alice.client.get(&path).await.ok();
    assert_eq!(body["displayname"], "Alice", "{body}");
}

#[tokio::test]
async fn custom_profile_fields_round_trip_and_delete() {
    let server = TestServer::start().await;
    let client = server.client();
    let alice = client.register("alice", "alice-password-1").await;
    let bob = client.register("bob", "bob-password-1").await;
    let key = "org.example.pronouns";
    alice
        .client
        .put(&field_path(&alice.user_id, key), json!({ key: "she/her" }))
        .await
        .assert_status(200);
    let field = bob.client.get(&field_path(&alice.user_id, key)).await.ok();
    assert_eq!(field[key], "she/her", "{field}");
    let profile = bob
        .client
        .get(&format!("{V3}/profile/{}", enc(&alice.user_id)))
        .await
        .ok();
    assert_eq!(profile[key], "she/her", "{profile}");
    alice
        .client
        .request(Method::DELETE, &field_path(&alice.user_id, key), None)
        .await
        .assert_status(200);
    bob.client
        .get(&field_path(&alice.user_id, key))
        .await
        .assert_error(404, "M_NOT_FOUND");
}

/// `PUT /profile/{userId}/{keyName}`: keys follow the spec's grammar (M_INVALID_PARAM), are at
/// most 255 bytes (M_KEY_TOO_LARGE), and the whole profile stays under 64 KiB
/// (M_PROFILE_TOO_LARGE); a refused write changes nothing.
#[tokio::test]
async fn profile_keys_and_size_are_limited() {
    let server = TestServer::start().await;
    let alice = server.client().register("alice", "alice-password-1").await;
    for key in ["Pronouns", "pronouns", "org..example", "org.Example.x"] {
        alice
            .client
            .put(&field_path(&alice.user_id, key), json!({ key: "x" }))
            .await
            .assert_error(400, "M_INVALID_PARAM");
    }
    let long_key = format!("org.{}", "k".repeat(260));
    alice
        .client
        .put(
            &field_path(&alice.user_id, &long_key),
            json!({ long_key.clone(): "x" }),
        )
        .await
        .assert_error(400, "M_KEY_TOO_LARGE");
    let big = "v".repeat(40_000);
    alice
        .client
        .put(
            &field_path(&alice.user_id, "org.example.one"),
            json!({ "org.example.one": big }),
        )
        .await
        .assert_status(200);
    alice
        .client
        .put(
            &field_path(&alice.user_id, "org.example.two"),
            json!({ "org.example.two": big }),
        )
        .await
        .assert_error(400, "M_PROFILE_TOO_LARGE");
    let profile = alice
        .client
        .get(&format!("{V3}/profile/{}", enc(&alice.user_id)))
        .await
        .ok();
    assert!(
        profile.get("org.example.two").is_none(),
        "refused field was stored"
    );
    assert_eq!(profile["displayname"], "alice", "{profile}");
}
