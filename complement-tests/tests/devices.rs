//! Device management: list, get, rename, delete (UIA), `/delete_devices` (UIA).

use complement_tests::{Method, TestServer, V3, enc, json, password_auth, with_auth};

const PASSWORD: &str = "device-password-1";

fn device_path(device_id: &str) -> String {
    format!("{V3}/devices/{}", enc(device_id))
}

#[tokio::test]
async fn list_and_get_devices() {
    let server = TestServer::start().await;
    let client = server.client();
    let phone = client
        .register_with(json!({
            "username": "alice",
            "password": PASSWORD,
            "initial_device_display_name": "Phone",
        }))
        .await;
    let laptop = client
        .login_with(
            "alice",
            PASSWORD,
            json!({ "initial_device_display_name": "Laptop" }),
        )
        .await;

    let body = phone.client.get(&format!("{V3}/devices")).await.ok();
    let devices = body["devices"]
        .as_array()
        .unwrap_or_else(|| panic!("no devices: {body}"));
    assert_eq!(devices.len(), 2, "{body}");
    for (user, name) in [(&phone, "Phone"), (&laptop, "Laptop")] {
        let device = devices
            .iter()
            .find(|d| d["device_id"] == user.device_id.as_str())
            .unwrap_or_else(|| panic!("{} missing from {body}", user.device_id));
        assert_eq!(device["display_name"], name, "{body}");
    }

    let device = laptop.client.get(&device_path(&phone.device_id)).await.ok();
    assert_eq!(device["device_id"], phone.device_id.as_str(), "{device}");
    assert_eq!(device["display_name"], "Phone", "{device}");
}

#[tokio::test]
async fn unknown_and_foreign_devices_are_not_found() {
    let server = TestServer::start().await;
    let client = server.client();
    let alice = client.register("alice", PASSWORD).await;
    let bob = client.register("bob", PASSWORD).await;

    alice
        .client
        .get(&device_path("NOSUCHDEVICE"))
        .await
        .assert_error(404, "M_NOT_FOUND");
    // Bob's device is not one of Alice's.
    alice
        .client
        .get(&device_path(&bob.device_id))
        .await
        .assert_error(404, "M_NOT_FOUND");
    alice
        .client
        .put(
            &device_path(&bob.device_id),
            json!({ "display_name": "hijacked" }),
        )
        .await
        .assert_error(404, "M_NOT_FOUND");
    // Regular clients may only update existing devices, not create them.
    alice
        .client
        .put(&device_path("NEWDEVICE"), json!({ "display_name": "new" }))
        .await
        .assert_error(404, "M_NOT_FOUND");
    assert_eq!(alice.device_ids().await, vec![alice.device_id.clone()]);
    let device = bob.client.get(&device_path(&bob.device_id)).await.ok();
    assert_ne!(device["display_name"], "hijacked", "{device}");
}

#[tokio::test]
async fn rename_device() {
    let server = TestServer::start().await;
    let client = server.client();
    let phone = client.register("alice", PASSWORD).await;
    let laptop = client.login("alice", PASSWORD).await;

    let body = laptop
        .client
        .put(
            &device_path(&phone.device_id),
            json!({ "display_name": "Old phone" }),
        )
        .await
        .ok();
    assert_eq!(body, json!({}));

    let list = phone.client.get(&format!("{V3}/devices")).await.ok();
    let renamed = list["devices"]
        .as_array()
        .and_then(|d| {
            d.iter()
                .find(|d| d["device_id"] == phone.device_id.as_str())
        })
        .unwrap_or_else(|| panic!("device missing: {list}"));
    assert_eq!(renamed["display_name"], "Old phone", "{list}");

    // Omitting display_name leaves it unchanged.
    phone
        .client
        .put(&device_path(&phone.device_id), json!({}))
        .await
        .assert_status(200);
    let device = phone.client.get(&device_path(&phone.device_id)).await.ok();
    assert_eq!(device["display_name"], "Old phone", "{device}");
}

#[tokio::test]
async fn delete_device_requires_uia_and_revokes_its_token() {
    let server = TestServer::start().await;
    let client = server.client();
    let phone = client.register("alice", PASSWORD).await;
    let laptop = client.login("alice", PASSWORD).await;
    let path = device_path(&phone.device_id);

    laptop
        .client
        .uia_start(Method::DELETE, &path, json!({}), "m.login.password")
        .await;
    phone.assert_token_valid().await;

    let body = laptop
        .uia_password(Method::DELETE, &path, json!({}))
        .await
        .ok();
    assert_eq!(body, json!({}));
    phone.assert_token_invalid().await;
    laptop.assert_token_valid().await;
    laptop
        .client
        .get(&path)
        .await
        .assert_error(404, "M_NOT_FOUND");
    assert_eq!(laptop.device_ids().await, vec![laptop.device_id.clone()]);
}

#[tokio::test]
async fn delete_device_with_wrong_password_is_a_failed_stage() {
    let server = TestServer::start().await;
    let client = server.client();
    let phone = client.register("alice", PASSWORD).await;
    let laptop = client.login("alice", PASSWORD).await;
    let path = device_path(&phone.device_id);
    let session = laptop
        .client
        .uia_start(Method::DELETE, &path, json!({}), "m.login.password")
        .await;
    let resp = laptop
        .client
        .request(
            Method::DELETE,
            &path,
            Some(with_auth(
                json!({}),
                password_auth(&session, &laptop.user_id, "wrong password"),
            )),
        )
        .await;
    resp.assert_error(401, "M_FORBIDDEN");
    assert!(
        resp.json["flows"].is_array(),
        "a failed stage repeats the flows: {resp}"
    );
    phone.assert_token_valid().await;
    assert_eq!(laptop.device_ids().await.len(), 2);
}

#[tokio::test]
async fn delete_devices_in_bulk() {
    let server = TestServer::start().await;
    let client = server.client();
    let keep = client.register("alice", PASSWORD).await;
    let doomed = [
        client.login("alice", PASSWORD).await,
        client.login("alice", PASSWORD).await,
    ];
    let path = format!("{V3}/delete_devices");
    let body = json!({
        "devices": [doomed[0].device_id, doomed[1].device_id, "NEVEREXISTED"],
    });
    keep.client
        .uia_start(Method::POST, &path, body.clone(), "m.login.password")
        .await;
    for user in &doomed {
        user.assert_token_valid().await;
    }
    let resp = keep.uia_password(Method::POST, &path, body).await.ok();
    assert_eq!(resp, json!({}));
    for user in &doomed {
        user.assert_token_invalid().await;
    }
    keep.assert_token_valid().await;
    assert_eq!(keep.device_ids().await, vec![keep.device_id.clone()]);
}
