//! Friends: the request lifecycle (request, accept, reject, cancel, delete), categories with
//! their `m.tag` mirror, the privacy setting and blocking, with the account data
//! `im.tessera.friends` as a second device of the user sees it.

use complement_tests::im::IM;
use complement_tests::sync::next_batch;
use complement_tests::{Response, TestServer, User, V3, Value, enc, json};

const PASSWORD: &str = "im-friends-pw";

async fn register(server: &TestServer, name: &str) -> User {
    server.client().register(name, PASSWORD).await
}

async fn request(from: &User, to: &User, message: &str) -> Response {
    from.client
        .post(
            &format!("{IM}/friends/requests"),
            json!({ "user_id": to.user_id, "message": message }),
        )
        .await
}

async fn accept(user: &User, requester: &User) -> Response {
    user.client
        .post(
            &format!("{IM}/friends/requests/{}/accept", enc(&requester.user_id)),
            json!({}),
        )
        .await
}

async fn befriend(one: &User, other: &User) -> String {
    let room = request(one, other, "hi").await.ok();
    accept(other, one).await.ok();
    room["room_id"].as_str().unwrap_or_default().to_owned()
}

async fn friend_ids(user: &User) -> Vec<String> {
    let body = user.client.get(&format!("{IM}/friends")).await.ok();
    body["friends"]
        .as_array()
        .unwrap_or_else(|| panic!("no friends array: {body}"))
        .iter()
        .filter_map(|f| f["user_id"].as_str().map(str::to_owned))
        .collect()
}

/// The content of `im.tessera.friends` in a sync of `device` (a second login of the user).
async fn synced_friends(device: &User, since: Option<&str>) -> (Option<Value>, String) {
    let path = match since {
        Some(since) => format!("{V3}/sync?timeout=0&since={}", enc(since)),
        None => format!("{V3}/sync?timeout=0"),
    };
    let body = device.client.get(&path).await.ok();
    let data = body["account_data"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["type"] == "im.tessera.friends")
        .map(|e| e["content"].clone());
    (data, next_batch(&body))
}

#[tokio::test]
async fn request_accept_categories_and_delete_as_a_second_device_sees_them() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let alice_phone = server.client().login(&alice.user_id, PASSWORD).await;
    let (_, token) = synced_friends(&alice_phone, None).await;

    let room = request(&alice, &bob, "It's Alice from work").await.ok();
    let room_id = room["room_id"].as_str().expect("room_id").to_owned();
    // Bob sees an ordinary DM invite, marked as a friend request.
    let invite = alice
        .state_content(&room_id, "m.room.member", &bob.user_id)
        .await;
    assert_eq!(invite["membership"], "invite");
    assert_eq!(invite["is_direct"], true);
    assert_eq!(
        invite["im.tessera.friend_request"]["message"],
        "It's Alice from work"
    );
    let requests = bob.client.get(&format!("{IM}/friends/requests")).await.ok();
    assert_eq!(
        requests["incoming"][0]["requester"],
        alice.user_id.as_str(),
        "{requests}"
    );
    assert_eq!(requests["incoming"][0]["message"], "It's Alice from work");
    let outgoing = alice
        .client
        .get(&format!("{IM}/friends/requests"))
        .await
        .ok();
    assert_eq!(
        outgoing["outgoing"][0]["target"],
        bob.user_id.as_str(),
        "{outgoing}"
    );

    let accepted = accept(&bob, &alice).await.ok();
    assert_eq!(accepted["room_id"], room_id.as_str());
    assert_eq!(friend_ids(&alice).await, vec![bob.user_id.clone()]);
    assert_eq!(friend_ids(&bob).await, vec![alice.user_id.clone()]);
    let requests = bob.client.get(&format!("{IM}/friends/requests")).await.ok();
    assert_eq!(requests["incoming"], json!([]), "{requests}");

    // Categories: create, assign, rename; the DM room carries the tag.
    let family = alice
        .client
        .post(
            &format!("{IM}/friends/categories"),
            json!({ "name": "Family" }),
        )
        .await
        .ok()["category_id"]
        .as_str()
        .expect("category_id")
        .to_owned();
    let work = alice
        .client
        .post(
            &format!("{IM}/friends/categories"),
            json!({ "name": "Work" }),
        )
        .await
        .ok()["category_id"]
        .as_str()
        .expect("category_id")
        .to_owned();
    alice
        .client
        .put(
            &format!("{IM}/friends/{}/category", enc(&bob.user_id)),
            json!({ "category_id": work }),
        )
        .await
        .ok();
    let tags_path = format!(
        "{V3}/user/{}/rooms/{}/account_data/m.tag",
        enc(&alice.user_id),
        enc(&room_id)
    );
    let tags = alice.client.get(&tags_path).await.ok();
    assert!(tags["tags"].get("u.Work").is_some(), "{tags}");
    alice
        .client
        .put(
            &format!("{IM}/friends/categories/{}", enc(&work)),
            json!({ "name": "Colleagues" }),
        )
        .await
        .ok();
    let tags = alice.client.get(&tags_path).await.ok();
    assert!(tags["tags"].get("u.Colleagues").is_some(), "{tags}");
    assert!(tags["tags"].get("u.Work").is_none(), "{tags}");
    alice
        .client
        .put(
            &format!("{IM}/friends/category_order"),
            json!({ "order": [work, family] }),
        )
        .await
        .ok();

    // The second device sees the list, the category and the order through sync.
    let (data, token) = synced_friends(&alice_phone, Some(&token)).await;
    let data = data.expect("im.tessera.friends in the second device's sync");
    assert_eq!(
        data["friends"][bob.user_id.as_str()]["category"],
        work.as_str(),
        "{data}"
    );
    assert_eq!(data["categories"][0]["name"], "Colleagues", "{data}");
    assert_eq!(data["categories"][1]["name"], "Family", "{data}");

    // Deleting the category leaves Bob without one and drops the tag.
    alice
        .client
        .request(
            complement_tests::Method::DELETE,
            &format!("{IM}/friends/categories/{}", enc(&work)),
            None,
        )
        .await
        .ok();
    let tags = alice.client.get(&tags_path).await.ok();
    assert_eq!(tags["tags"], json!({}), "{tags}");

    // Deleting the friend removes it on both sides and leaves the DM room.
    alice
        .client
        .request(
            complement_tests::Method::DELETE,
            &format!("{IM}/friends/{}", enc(&bob.user_id)),
            None,
        )
        .await
        .ok();
    assert!(friend_ids(&alice).await.is_empty());
    assert!(friend_ids(&bob).await.is_empty());
    assert_eq!(
        bob.membership_of(&room_id, &alice.user_id).await.as_deref(),
        Some("leave")
    );
    let (data, _) = synced_friends(&alice_phone, Some(&token)).await;
    let data = data.expect("the removal reaches the second device");
    assert_eq!(data["friends"], json!({}), "{data}");
}

#[tokio::test]
async fn joining_the_invite_through_the_plain_api_accepts_the_request() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = request(&alice, &bob, "").await.ok();
    let room_id = room["room_id"].as_str().expect("room_id").to_owned();
    bob.join_room(&room_id).await;
    assert_eq!(friend_ids(&alice).await, vec![bob.user_id.clone()]);
    assert_eq!(friend_ids(&bob).await, vec![alice.user_id.clone()]);
}

#[tokio::test]
async fn reject_and_cancel_withdraw_the_invite() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let carol = register(&server, "carol").await;

    let room = request(&alice, &bob, "").await.ok();
    let room_id = room["room_id"].as_str().expect("room_id").to_owned();
    bob.client
        .post(
            &format!("{IM}/friends/requests/{}/reject", enc(&alice.user_id)),
            json!({}),
        )
        .await
        .ok();
    assert_eq!(
        alice.membership_of(&room_id, &bob.user_id).await.as_deref(),
        Some("leave")
    );
    accept(&bob, &alice).await.assert_error(404, "M_NOT_FOUND");

    let room = request(&alice, &carol, "").await.ok();
    let room_id = room["room_id"].as_str().expect("room_id").to_owned();
    alice
        .client
        .request(
            complement_tests::Method::DELETE,
            &format!("{IM}/friends/requests/{}", enc(&carol.user_id)),
            None,
        )
        .await
        .ok();
    assert_eq!(
        alice
            .membership_of(&room_id, &carol.user_id)
            .await
            .as_deref(),
        Some("leave")
    );
    let requests = carol
        .client
        .get(&format!("{IM}/friends/requests"))
        .await
        .ok();
    assert_eq!(requests["incoming"], json!([]), "{requests}");
}

#[tokio::test]
async fn privacy_and_blocking_refuse_requests_with_a_reason() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let carol = register(&server, "carol").await;
    let dave = register(&server, "dave").await;

    let privacy = |user: &User, value: &str| {
        let user = user.clone();
        let value = value.to_owned();
        async move {
            user.client
                .put(
                    &format!("{IM}/friends/privacy"),
                    json!({ "requests_from": value }),
                )
                .await
        }
    };
    privacy(&bob, "nobody").await.ok();
    let refused = request(&alice, &bob, "").await;
    refused.assert_error(403, "M_FORBIDDEN");
    assert!(
        refused.json["error"]
            .as_str()
            .unwrap_or_default()
            .contains("does not accept"),
        "{}",
        refused.json
    );

    // Friends of friends: Carol may ask Bob once both know Dave.
    privacy(&bob, "friends_of_friends").await.ok();
    request(&carol, &bob, "")
        .await
        .assert_error(403, "M_FORBIDDEN");
    befriend(&bob, &dave).await;
    befriend(&carol, &dave).await;
    request(&carol, &bob, "").await.ok();
    let got = bob.client.get(&format!("{IM}/friends/privacy")).await.ok();
    assert_eq!(got["requests_from"], "friends_of_friends");
    privacy(&bob, "everyone")
        .await
        .assert_error(400, "M_INVALID_PARAM");

    // Blocking: listed in m.ignored_user_list, ends the friendship, refuses requests.
    befriend(&alice, &dave).await;
    alice
        .client
        .post(
            &format!("{IM}/friends/blocked"),
            json!({ "user_id": dave.user_id }),
        )
        .await
        .ok();
    let ignored = alice
        .account_data("m.ignored_user_list")
        .await
        .expect("set");
    assert!(
        ignored["ignored_users"]
            .get(dave.user_id.as_str())
            .is_some(),
        "{ignored}"
    );
    assert!(friend_ids(&alice).await.is_empty());
    assert!(!friend_ids(&dave).await.contains(&alice.user_id));
    request(&dave, &alice, "")
        .await
        .assert_error(403, "M_FORBIDDEN");
    request(&alice, &dave, "")
        .await
        .assert_error(403, "M_FORBIDDEN");
    alice
        .client
        .request(
            complement_tests::Method::DELETE,
            &format!("{IM}/friends/blocked/{}", enc(&dave.user_id)),
            None,
        )
        .await
        .ok();
    request(&dave, &alice, "").await.ok();
}

#[tokio::test]
async fn bad_input_and_limits() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;

    request(&alice, &alice, "")
        .await
        .assert_error(400, "M_INVALID_PARAM");
    alice
        .client
        .post(
            &format!("{IM}/friends/requests"),
            json!({ "user_id": "bob" }),
        )
        .await
        .assert_error(400, "M_INVALID_PARAM");
    alice
        .client
        .post(
            &format!("{IM}/friends/requests"),
            json!({ "user_id": server.user_id("ghost") }),
        )
        .await
        .assert_error(404, "M_NOT_FOUND");
    request(&alice, &bob, &"x".repeat(501))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    alice
        .client
        .post(
            &format!("{IM}/friends/requests"),
            json!({ "message": "hi" }),
        )
        .await
        .assert_error(400, "M_BAD_JSON");
    accept(&alice, &bob).await.assert_error(404, "M_NOT_FOUND");
    alice
        .client
        .put(
            &format!("{IM}/friends/{}/category", enc(&bob.user_id)),
            json!({ "category_id": null }),
        )
        .await
        .assert_error(404, "M_NOT_FOUND");
    alice
        .client
        .post(&format!("{IM}/friends/categories"), json!({ "name": "  " }))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    alice
        .client
        .post(
            &format!("{IM}/friends/categories"),
            json!({ "name": "n".repeat(65) }),
        )
        .await
        .assert_error(400, "M_INVALID_PARAM");
    alice
        .client
        .post(
            &format!("{IM}/friends/categories"),
            json!({ "name": "Same" }),
        )
        .await
        .ok();
    alice
        .client
        .post(
            &format!("{IM}/friends/categories"),
            json!({ "name": "Same" }),
        )
        .await
        .assert_error(400, "M_INVALID_PARAM");
    alice
        .client
        .put(
            &format!("{IM}/friends/category_order"),
            json!({ "order": ["nope"] }),
        )
        .await
        .assert_error(400, "M_INVALID_PARAM");
    request(&alice, &bob, "").await.ok();
    accept(&bob, &alice).await.ok();
    request(&alice, &bob, "")
        .await
        .assert_error(400, "M_INVALID_PARAM");
    // The friends list is the server's: the generic account data API cannot overwrite it.
    alice
        .client
        .put(
            &format!(
                "{V3}/user/{}/account_data/im.tessera.friends",
                enc(&alice.user_id)
            ),
            json!({ "friends": {} }),
        )
        .await
        .assert_error(405, "M_BAD_JSON");
    assert_eq!(friend_ids(&alice).await, vec![bob.user_id]);
}
