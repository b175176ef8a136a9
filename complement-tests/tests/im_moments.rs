//! Moments: profile rooms (MSC4501), posting, likes, comments and replies, reposts, deletion,
//! the feed's order, pagination and WeChat visibility, one user's moments, and notifications of
//! likes and comments reaching the owner through sync.

use complement_tests::im::IM;
use complement_tests::rooms::txn_id;
use complement_tests::{Response, TestServer, User, V3, Value, enc, json};

const PASSWORD: &str = "im-moments-pw";

async fn register(server: &TestServer, name: &str) -> User {
    server.client().register(name, PASSWORD).await
}

async fn befriend(one: &User, other: &User) {
    one.client
        .post(
            &format!("{IM}/friends/requests"),
            json!({ "user_id": other.user_id }),
        )
        .await
        .ok();
    other
        .client
        .post(
            &format!("{IM}/friends/requests/{}/accept", enc(&one.user_id)),
            json!({}),
        )
        .await
        .ok();
}

async fn post_raw(user: &User, body: Value) -> Response {
    user.client
        .put(&format!("{IM}/moments/post/{}", txn_id()), body)
        .await
}

async fn post(user: &User, text: &str) -> String {
    let body = post_raw(user, json!({ "text": text })).await.ok();
    body["event_id"].as_str().expect("event_id").to_owned()
}

async fn comment(user: &User, moment: &str, text: &str, reply_to: Option<&str>) -> String {
    let mut body = json!({ "text": text });
    if let Some(reply_to) = reply_to {
        body["reply_to"] = json!(reply_to);
    }
    let resp = user
        .client
        .put(
            &format!("{IM}/moments/posts/{}/comment/{}", enc(moment), txn_id()),
            body,
        )
        .await
        .ok();
    resp["event_id"].as_str().expect("event_id").to_owned()
}

async fn like(user: &User, moment: &str) -> Response {
    user.client
        .put(
            &format!("{IM}/moments/posts/{}/like", enc(moment)),
            json!({}),
        )
        .await
}

async fn feed(user: &User, query: &str) -> Value {
    user.client
        .get(&format!("{IM}/moments/feed{query}"))
        .await
        .ok()
}

fn chunk(page: &Value) -> Vec<Value> {
    page["chunk"].as_array().cloned().unwrap_or_default()
}

fn bodies(page: &Value) -> Vec<String> {
    chunk(page)
        .iter()
        .filter_map(|item| item["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn the_profile_room_follows_msc4501_and_holds_exactly_the_friends() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    befriend(&alice, &bob).await;
    let room = alice
        .client
        .get(&format!("{IM}/moments/profile_room"))
        .await
        .ok();
    let room_id = room["room_id"].as_str().expect("room_id").to_owned();
    let create = alice.state_content(&room_id, "m.room.create", "").await;
    assert_eq!(
        create["type"], "org.matrix.msc4501.social.profile",
        "{create}"
    );
    let owner = alice
        .state_content(&room_id, "org.matrix.msc4501.social.profile_user_id", "")
        .await;
    assert_eq!(owner["user_id"], alice.user_id.as_str());
    let rules = alice.state_content(&room_id, "m.room.join_rules", "").await;
    assert_eq!(rules["join_rule"], "invite");
    let field = alice
        .client
        .get(&format!(
            "{V3}/profile/{}/org.matrix.msc4501.social.profile_room_id",
            enc(&alice.user_id)
        ))
        .await
        .ok();
    assert_eq!(
        field["org.matrix.msc4501.social.profile_room_id"],
        room_id.as_str()
    );
    assert_eq!(
        alice.membership_of(&room_id, &bob.user_id).await.as_deref(),
        Some("join")
    );
    // Only the owner posts.
    bob.send_event(
        &room_id,
        "org.matrix.msc4501.social.post",
        json!({ "msgtype": "m.text", "body": "x" }),
    )
    .await
    .assert_error(403, "M_FORBIDDEN");
    // Ending the friendship removes Bob.
    alice
        .client
        .request(
            complement_tests::Method::DELETE,
            &format!("{IM}/friends/{}", enc(&bob.user_id)),
            None,
        )
        .await
        .ok();
    assert_eq!(
        alice.membership_of(&room_id, &bob.user_id).await.as_deref(),
        Some("leave")
    );
}

#[tokio::test]
async fn feed_merges_friends_moments_newest_first_with_stable_pages() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let carol = register(&server, "carol").await;
    let stranger = register(&server, "stranger").await;
    befriend(&alice, &bob).await;
    befriend(&alice, &carol).await;
    post(&stranger, "stranger's moment").await;
    post(&bob, "bob 1").await;
    post(&alice, "alice 1").await;
    post(&carol, "carol 1").await;
    post(&bob, "bob 2").await;

    let first = feed(&alice, "?limit=3").await;
    assert_eq!(
        bodies(&first),
        vec!["bob 2", "carol 1", "alice 1"],
        "{first}"
    );
    let token = first["next_batch"].as_str().expect("next_batch").to_owned();
    // A new moment does not shift the next page.
    post(&carol, "carol 2").await;
    let second = feed(&alice, &format!("?limit=3&from={}", enc(&token))).await;
    assert_eq!(bodies(&second), vec!["bob 1"], "{second}");
    assert!(second.get("next_batch").is_none(), "{second}");
    assert_eq!(bodies(&feed(&alice, "?limit=1").await), vec!["carol 2"]);

    // Bob sees his friend Alice's and his own, not Carol's (not his friend).
    assert_eq!(
        bodies(&feed(&bob, "").await),
        vec!["bob 2", "alice 1", "bob 1"]
    );
    // A non-friend sees nothing of Alice's.
    assert_eq!(
        bodies(&feed(&stranger, "").await),
        vec!["stranger's moment"]
    );
    stranger
        .client
        .get(&format!("{IM}/moments/user/{}", enc(&alice.user_id)))
        .await
        .assert_error(403, "M_FORBIDDEN");
    let bobs = bob
        .client
        .get(&format!("{IM}/moments/user/{}", enc(&alice.user_id)))
        .await
        .ok();
    assert_eq!(bodies(&bobs), vec!["alice 1"]);

    alice
        .client
        .get(&format!("{IM}/moments/feed?limit=0"))
        .await
        .assert_error(400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn likes_and_comments_follow_the_wechat_visibility_rule() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let carol = register(&server, "carol").await;
    // Bob and Carol are both Alice's friends but not each other's.
    befriend(&alice, &bob).await;
    befriend(&alice, &carol).await;
    let moment = post(&alice, "sunset").await;

    like(&bob, &moment).await.ok();
    like(&bob, &moment).await.ok();
    like(&carol, &moment).await.ok();
    let bobs_comment = comment(&bob, &moment, "beautiful", None).await;
    let carols_comment = comment(&carol, &moment, "where is this?", None).await;
    let alices_reply = comment(&alice, &moment, "the beach", Some(&carols_comment)).await;
    let alices_reply_to_bob = comment(&alice, &moment, "thanks", Some(&bobs_comment)).await;

    // Alice (owner) sees everything; one like per user.
    let item = chunk(&feed(&alice, "").await)[0].clone();
    assert_eq!(item["like_count"], 2, "{item}");
    assert_eq!(item["comment_count"], 4, "{item}");
    assert_eq!(item["liked"], false);

    // Bob sees his and Alice's, not Carol's like or comment, nor Alice's reply to Carol.
    let item = chunk(&feed(&bob, "").await)[0].clone();
    assert_eq!(item["likes"], json!([bob.user_id]), "{item}");
    assert_eq!(item["liked"], true);
    let ids: Vec<&str> = item["comments"]
        .as_array()
        .expect("comments")
        .iter()
        .filter_map(|c| c["event_id"].as_str())
        .collect();
    assert_eq!(
        ids,
        vec![bobs_comment.as_str(), alices_reply_to_bob.as_str()],
        "{item}"
    );
    assert_eq!(
        item["comments"][1]["in_reply_to"]["sender"],
        bob.user_id.as_str()
    );
    assert!(!ids.contains(&alices_reply.as_str()));

    // Unlike, delete a comment.
    bob.client
        .request(
            complement_tests::Method::DELETE,
            &format!("{IM}/moments/posts/{}/like", enc(&moment)),
            None,
        )
        .await
        .ok();
    bob.client
        .request(
            complement_tests::Method::DELETE,
            &format!("{IM}/moments/comments/{}", enc(&bobs_comment)),
            None,
        )
        .await
        .ok();
    carol
        .client
        .request(
            complement_tests::Method::DELETE,
            &format!("{IM}/moments/comments/{}", enc(&alices_reply)),
            None,
        )
        .await
        .assert_error(403, "M_FORBIDDEN");
    let item = chunk(&feed(&alice, "").await)[0].clone();
    assert_eq!(item["likes"], json!([carol.user_id]), "{item}");
    assert_eq!(item["comment_count"], 3, "{item}");
}

#[tokio::test]
async fn likes_and_comments_reach_the_owner_through_sync_as_notifications() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    befriend(&alice, &bob).await;
    let moment = post(&alice, "new haircut").await;
    like(&bob, &moment).await.ok();
    comment(&bob, &moment, "nice", None).await;
    let notifications = alice.client.get(&format!("{V3}/notifications")).await.ok();
    let kinds: Vec<&str> = notifications["notifications"]
        .as_array()
        .expect("notifications")
        .iter()
        .filter_map(|n| n["event"]["type"].as_str())
        .collect();
    assert!(kinds.contains(&"m.reaction"), "{notifications}");
    assert!(kinds.contains(&"m.room.message"), "{notifications}");
    let room_id = alice
        .client
        .get(&format!("{IM}/moments/profile_room"))
        .await
        .ok()["room_id"]
        .as_str()
        .expect("room_id")
        .to_owned();
    let sync = alice.client.get(&format!("{V3}/sync?timeout=0")).await.ok();
    let room = &sync["rooms"]["join"][room_id.as_str()];
    assert!(
        room["unread_notifications"]["notification_count"].as_u64() >= Some(2),
        "{room}"
    );
}

#[tokio::test]
async fn reposts_media_deletion_and_bad_input() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let stranger = register(&server, "stranger").await;
    befriend(&alice, &bob).await;
    let moment = post(&alice, "original").await;

    let repost = bob
        .client
        .put(
            &format!("{IM}/moments/posts/{}/repost/{}", enc(&moment), txn_id()),
            json!({ "text": "look at this" }),
        )
        .await
        .ok();
    let item = chunk(&feed(&bob, "").await)[0].clone();
    assert_eq!(item["event_id"], repost["event_id"]);
    let reference = &item["content"]["org.matrix.msc4501.social.relates_to"];
    assert_eq!(
        reference["rel_type"], "org.matrix.msc4501.social.repost",
        "{item}"
    );
    assert_eq!(reference["event_id"], moment.as_str());
    assert_eq!(reference["sender"], alice.user_id.as_str());
    assert_eq!(reference["content"]["body"], "original");

    // Nine images at most, images or a video, mxc URIs only.
    let images: Vec<String> = (0..9).map(|i| format!("mxc://localhost/img{i}")).collect();
    let nine = post_raw(
        &alice,
        json!({ "text": "trip", "images": images, "location": "Lisbon" }),
    )
    .await
    .ok();
    let item = chunk(&feed(&alice, "").await)[0].clone();
    assert_eq!(item["event_id"], nine["event_id"]);
    assert_eq!(
        item["content"]["im.tessera.media"].as_array().map(Vec::len),
        Some(9)
    );
    assert_eq!(item["content"]["im.tessera.location"], "Lisbon");
    let ten: Vec<String> = (0..10).map(|i| format!("mxc://localhost/img{i}")).collect();
    post_raw(&alice, json!({ "images": ten }))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    post_raw(
        &alice,
        json!({ "images": ["mxc://localhost/a"], "video": "mxc://localhost/v" }),
    )
    .await
    .assert_error(400, "M_INVALID_PARAM");
    post_raw(&alice, json!({ "images": ["https://example.org/a.png"] }))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    post_raw(&alice, json!({}))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    post_raw(&alice, json!({ "text": 5 }))
        .await
        .assert_error(400, "M_BAD_JSON");
    alice
        .client
        .get(&format!("{IM}/moments/feed?limit=1000"))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    alice
        .client
        .get(&format!("{IM}/moments/feed?from=garbage"))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    // A stranger cannot see, like or comment on the moment.
    like(&stranger, &moment)
        .await
        .assert_error(404, "M_NOT_FOUND");

    // A retried post (same transaction) is one moment.
    let txn = txn_id();
    let path = format!("{IM}/moments/post/{txn}");
    let first = alice
        .client
        .put(&path, json!({ "text": "once" }))
        .await
        .ok();
    let again = alice
        .client
        .put(&path, json!({ "text": "once" }))
        .await
        .ok();
    assert_eq!(first["event_id"], again["event_id"]);

    // Only the author deletes a moment; then it is gone from every feed.
    bob.client
        .request(
            complement_tests::Method::DELETE,
            &format!("{IM}/moments/posts/{}", enc(&moment)),
            None,
        )
        .await
        .assert_error(403, "M_FORBIDDEN");
    alice
        .client
        .request(
            complement_tests::Method::DELETE,
            &format!("{IM}/moments/posts/{}", enc(&moment)),
            None,
        )
        .await
        .ok();
    assert!(!bodies(&feed(&bob, "?limit=100").await).contains(&"original".to_owned()));
}
