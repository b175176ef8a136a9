//! Account data, global and per room.
//!
//! Rooms do not exist yet in this server, but the spec does not make per-room account data
//! depend on the room existing or on membership (it only rejects IDs that are not room IDs,
//! with M_INVALID_PARAM), and Synapse accepts any well-formed room ID. So the per-room tests
//! use a well-formed room ID on this server that no room has.

use complement_tests::{TestServer, User, V3, enc, json};

fn global_path(user: &str, event_type: &str) -> String {
    format!("{V3}/user/{}/account_data/{}", enc(user), enc(event_type))
}

fn room_path(user: &str, room_id: &str, event_type: &str) -> String {
    format!(
        "{V3}/user/{}/rooms/{}/account_data/{}",
        enc(user),
        enc(room_id),
        enc(event_type)
    )
}

async fn register(server: &TestServer, name: &str) -> User {
    server.client().register(name, "account-data-pw").await
}

#[tokio::test]
async fn global_account_data_round_trip() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let path = global_path(&alice.user_id, "org.example.settings");

    let body = alice
        .client
        .put(
            &path,
            json!({ "theme": "dark", "n": [1, 2, { "x": null }] }),
        )
        .await
        .ok();
    assert_eq!(body, json!({}));
    let got = alice.client.get(&path).await.ok();
    assert_eq!(got, json!({ "theme": "dark", "n": [1, 2, { "x": null }] }));

    // Overwrite replaces the whole content.
    alice
        .client
        .put(&path, json!({ "theme": "light" }))
        .await
        .assert_status(200);
    let got = alice.client.get(&path).await.ok();
    assert_eq!(got, json!({ "theme": "light" }));

    // Another device of the same user sees it too.
    let other = server.client().login("alice", "account-data-pw").await;
    let got = other.client.get(&path).await.ok();
    assert_eq!(got, json!({ "theme": "light" }));
}

#[tokio::test]
async fn unknown_account_data_is_not_found() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    alice
        .client
        .get(&global_path(&alice.user_id, "org.example.never_set"))
        .await
        .assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn account_data_of_other_users_is_forbidden() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let mallory = register(&server, "mallory").await;
    let path = global_path(&alice.user_id, "org.example.secret");
    alice
        .client
        .put(&path, json!({ "pin": "1234" }))
        .await
        .assert_status(200);

    mallory
        .client
        .get(&path)
        .await
        .assert_error(403, "M_FORBIDDEN");
    mallory
        .client
        .put(&path, json!({ "pin": "0000" }))
        .await
        .assert_error(403, "M_FORBIDDEN");
    let room_id = format!("!someroom:{}", server.server_name());
    mallory
        .client
        .put(
            &room_path(&alice.user_id, &room_id, "org.example.secret"),
            json!({ "pin": "0000" }),
        )
        .await
        .assert_error(403, "M_FORBIDDEN");
    let got = alice.client.get(&path).await.ok();
    assert_eq!(got, json!({ "pin": "1234" }));
}

#[tokio::test]
async fn account_data_must_be_an_object() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let path = global_path(&alice.user_id, "org.example.list");
    let resp = alice.client.put(&path, json!([1, 2, 3])).await;
    // The spec allows either code for a body that is not a JSON object.
    resp.assert_error_in(400, &["M_BAD_JSON", "M_NOT_JSON"]);
    alice
        .client
        .get(&path)
        .await
        .assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn room_account_data_round_trip_and_is_separate_from_global() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let room_a = format!("!roomA:{}", server.server_name());
    let room_b = format!("!roomB:{}", server.server_name());
    let event_type = "org.example.room_pref";

    alice
        .client
        .put(
            &room_path(&alice.user_id, &room_a, event_type),
            json!({ "muted": true }),
        )
        .await
        .assert_status(200);
    let got = alice
        .client
        .get(&room_path(&alice.user_id, &room_a, event_type))
        .await
        .ok();
    assert_eq!(got, json!({ "muted": true }));

    alice
        .client
        .get(&room_path(&alice.user_id, &room_b, event_type))
        .await
        .assert_error(404, "M_NOT_FOUND");
    alice
        .client
        .get(&global_path(&alice.user_id, event_type))
        .await
        .assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn room_account_data_rejects_invalid_room_ids() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    alice
        .client
        .put(
            &room_path(&alice.user_id, "not-a-room-id", "org.example.x"),
            json!({ "a": 1 }),
        )
        .await
        .assert_error(400, "M_INVALID_PARAM");
    alice
        .client
        .get(&room_path(&alice.user_id, "not-a-room-id", "org.example.x"))
        .await
        .assert_error(400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn fully_read_marker_is_server_controlled() {
    // "This type of account data is controlled by the server; it cannot be modified by
    // clients. Errcode: M_BAD_JSON", with m.fully_read as the spec's example.
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let room_id = format!("!room:{}", server.server_name());
    alice
        .client
        .put(
            &room_path(&alice.user_id, &room_id, "m.fully_read"),
            json!({ "event_id": "$abc" }),
        )
        .await
        .assert_error(405, "M_BAD_JSON");
}
