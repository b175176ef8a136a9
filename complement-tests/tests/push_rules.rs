//! Push rules (`/pushrules/...`) and the notifications list (`GET /notifications`).

use std::time::Duration;

use complement_tests::rooms::room_path;
use complement_tests::sync::{SyncQuery, room};
use complement_tests::{Method, TestServer, User, V3, Value, enc, json, wait_until};

const PASSWORD: &str = "push-rules-pw";

async fn register(server: &TestServer, name: &str) -> User {
    server.client().register(name, PASSWORD).await
}

fn rule_path(kind: &str, rule_id: &str) -> String {
    format!("{V3}/pushrules/global/{kind}/{}", enc(rule_id))
}

/// The rule IDs of one kind, in priority order.
async fn rule_ids(user: &User, kind: &str) -> Vec<String> {
    let global = user
        .client
        .get(&format!("{V3}/pushrules/global/"))
        .await
        .ok();
    global[kind]
        .as_array()
        .unwrap_or_else(|| panic!("no {kind} rules in {global}"))
        .iter()
        .map(|rule| rule["rule_id"].as_str().expect("rule_id").to_owned())
        .collect()
}

async fn put_rule(user: &User, kind: &str, rule_id: &str, query: &str, body: Value) -> Value {
    user.client
        .put(&format!("{}{query}", rule_path(kind, rule_id)), body)
        .await
        .ok()
}

fn keyword_rule(pattern: &str) -> Value {
    json!({ "pattern": pattern, "actions": ["notify"] })
}

#[tokio::test]
async fn new_users_have_the_server_default_rules() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;

    let all = alice.client.get(&format!("{V3}/pushrules/")).await.ok();
    let global = alice
        .client
        .get(&format!("{V3}/pushrules/global/"))
        .await
        .ok();
    assert_eq!(all["global"], global);
    let overrides = rule_ids(&alice, "override").await;
    assert_eq!(overrides[0], ".m.rule.master");
    assert!(overrides.contains(&".m.rule.is_user_mention".to_owned()));
    let underrides = rule_ids(&alice, "underride").await;
    assert!(underrides.contains(&".m.rule.room_one_to_one".to_owned()));
    assert!(underrides.contains(&".m.rule.message".to_owned()));

    let master = alice
        .client
        .get(&rule_path("override", ".m.rule.master"))
        .await
        .ok();
    assert_eq!(master["default"], true);
    assert_eq!(master["enabled"], false);
    let enabled = alice
        .client
        .get(&format!(
            "{}/enabled",
            rule_path("override", ".m.rule.master")
        ))
        .await
        .ok();
    assert_eq!(enabled, json!({ "enabled": false }));
    let actions = alice
        .client
        .get(&format!(
            "{}/actions",
            rule_path("underride", ".m.rule.message")
        ))
        .await
        .ok();
    assert_eq!(actions, json!({ "actions": ["notify"] }));
}

#[tokio::test]
async fn custom_rules_are_placed_by_before_and_after() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;

    put_rule(&alice, "content", "a", "", keyword_rule("apple")).await;
    // A new rule without before/after is the most important of its kind.
    put_rule(&alice, "content", "b", "", keyword_rule("banana")).await;
    put_rule(&alice, "content", "c", "?after=a", keyword_rule("cherry")).await;
    put_rule(&alice, "content", "d", "?before=b", keyword_rule("date")).await;
    let content = rule_ids(&alice, "content").await;
    assert_eq!(content[..4], ["d", "b", "a", "c"]);

    let rule = alice.client.get(&rule_path("content", "c")).await.ok();
    assert_eq!(rule["pattern"], "cherry");
    assert_eq!(rule["actions"], json!(["notify"]));
    assert_eq!(rule["default"], false);
    // Rules are created enabled.
    assert_eq!(rule["enabled"], true);

    // Updating a rule keeps its place unless told otherwise.
    put_rule(&alice, "content", "a", "", keyword_rule("apricot")).await;
    assert_eq!(rule_ids(&alice, "content").await[..4], ["d", "b", "a", "c"]);
    let rule = alice.client.get(&rule_path("content", "a")).await.ok();
    assert_eq!(rule["pattern"], "apricot");

    // User-defined override rules come after the master rule.
    let conditions = json!({
        "conditions": [{ "kind": "event_match", "key": "type", "pattern": "m.room.topic" }],
        "actions": [],
    });
    put_rule(&alice, "override", "topics", "", conditions).await;
    assert_eq!(
        rule_ids(&alice, "override").await[..2],
        [".m.rule.master", "topics"]
    );

    // Room and sender rules are named by the room or user they are about.
    let room_id = alice.create_room(json!({})).await;
    put_rule(&alice, "room", &room_id, "", json!({ "actions": [] })).await;
    assert_eq!(rule_ids(&alice, "room").await, [room_id]);
}

#[tokio::test]
async fn rules_are_enabled_disabled_and_given_actions() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    put_rule(&alice, "content", "cake", "", keyword_rule("cake")).await;

    for (kind, rule_id) in [("content", "cake"), ("underride", ".m.rule.message")] {
        let enabled = format!("{}/enabled", rule_path(kind, rule_id));
        let body = alice
            .client
            .put(&enabled, json!({ "enabled": false }))
            .await
            .ok();
        assert_eq!(body, json!({}));
        assert_eq!(
            alice.client.get(&enabled).await.ok(),
            json!({ "enabled": false }),
            "{rule_id}"
        );
        alice
            .client
            .put(&enabled, json!({ "enabled": true }))
            .await
            .ok();
        assert_eq!(alice.client.get(&enabled).await.ok()["enabled"], true);

        let actions = format!("{}/actions", rule_path(kind, rule_id));
        let new_actions = json!(["notify", { "set_tweak": "highlight" }]);
        alice
            .client
            .put(&actions, json!({ "actions": new_actions }))
            .await
            .ok();
        assert_eq!(
            alice.client.get(&actions).await.ok(),
            json!({ "actions": new_actions }),
            "{rule_id}"
        );
    }
    // A rule keeps its enabled state when it is replaced.
    let enabled = format!("{}/enabled", rule_path("content", "cake"));
    alice
        .client
        .put(&enabled, json!({ "enabled": false }))
        .await
        .ok();
    put_rule(&alice, "content", "cake", "", keyword_rule("cakes")).await;
    assert_eq!(alice.client.get(&enabled).await.ok()["enabled"], false);

    // The changes reach the account data every device syncs.
    let stored = alice
        .client
        .get(&format!(
            "{V3}/user/{}/account_data/m.push_rules",
            enc(&alice.user_id)
        ))
        .await
        .ok();
    let content = stored["global"]["content"]
        .as_array()
        .expect("content rules");
    assert!(
        content
            .iter()
            .any(|r| r["rule_id"] == "cake" && r["enabled"] == false)
    );
}

#[tokio::test]
async fn deleting_rules_and_refused_changes() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    put_rule(&alice, "content", "cake", "", keyword_rule("cake")).await;

    let path = rule_path("content", "cake");
    let deleted = alice.client.request(Method::DELETE, &path, None).await.ok();
    assert_eq!(deleted, json!({}));
    alice
        .client
        .get(&path)
        .await
        .assert_error(404, "M_NOT_FOUND");
    alice
        .client
        .request(Method::DELETE, &path, None)
        .await
        .assert_error(404, "M_NOT_FOUND");
    // Server-default rules can be disabled, not deleted (Synapse: 404, no such user rule).
    alice
        .client
        .request(
            Method::DELETE,
            &rule_path("override", ".m.rule.master"),
            None,
        )
        .await
        .assert_error(404, "M_NOT_FOUND");
    assert_eq!(rule_ids(&alice, "override").await[0], ".m.rule.master");

    // Unknown rules.
    for suffix in ["", "/enabled", "/actions"] {
        alice
            .client
            .get(&format!("{}{suffix}", rule_path("underride", "nope")))
            .await
            .assert_error(404, "M_NOT_FOUND");
    }
    alice
        .client
        .put(
            &format!("{}/enabled", rule_path("content", "nope")),
            json!({ "enabled": true }),
        )
        .await
        .assert_error(404, "M_NOT_FOUND");
    alice
        .client
        .put(
            &format!("{}/actions", rule_path("content", "nope")),
            json!({ "actions": [] }),
        )
        .await
        .assert_error(404, "M_NOT_FOUND");

    // Rules that cannot be written.
    put_rule(&alice, "content", "first", "", keyword_rule("first")).await;
    for (rule_id, query, errcode) in [
        // Reserved for server-default rules.
        (".m.rule.master", "", "M_UNKNOWN"),
        (".my.rule", "", "M_UNKNOWN"),
        ("back\\slash", "", "M_INVALID_PARAM"),
        ("new", "?before=nowhere", "M_UNKNOWN"),
        ("new", "?after=.m.rule.contains_user_name", "M_UNKNOWN"),
    ] {
        let resp = alice
            .client
            .put(
                &format!("{}{query}", rule_path("content", rule_id)),
                keyword_rule("x"),
            )
            .await;
        resp.assert_error(400, errcode);
    }
    // A content rule needs a pattern, every rule actions.
    let resp = alice
        .client
        .put(
            &rule_path("content", "new"),
            json!({ "actions": ["notify"] }),
        )
        .await;
    assert_eq!(resp.status, 400, "{resp}");
    let resp = alice
        .client
        .put(&rule_path("underride", "new"), json!({ "conditions": [] }))
        .await;
    assert_eq!(resp.status, 400, "{resp}");
    assert_eq!(rule_ids(&alice, "content").await[0], "first");
    assert!(
        !rule_ids(&alice, "content")
            .await
            .contains(&"new".to_owned())
    );
}

fn receipt_path(room_id: &str, event_id: &str) -> String {
    room_path(room_id, &format!("receipt/m.read/{}", enc(event_id)))
}

async fn notifications(user: &User, query: &str) -> Value {
    user.client
        .get(&format!("{V3}/notifications{query}"))
        .await
        .ok()
}

fn event_ids(page: &Value) -> Vec<String> {
    page["notifications"]
        .as_array()
        .unwrap_or_else(|| panic!("no notifications array in {page}"))
        .iter()
        .map(|n| {
            n["event"]["event_id"]
                .as_str()
                .expect("event_id")
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn notifications_list_the_events_that_notified() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join_room(&room_id).await;

    let first = alice.send_text(&room_id, "hello").await;
    let mention = alice
        .send_event(
            &room_id,
            "m.room.message",
            json!({
                "msgtype": "m.text",
                "body": "bob: look",
                "m.mentions": { "user_ids": [bob.user_id] },
            }),
        )
        .await
        .ok()["event_id"]
        .as_str()
        .expect("event_id")
        .to_owned();
    let last = alice.send_text(&room_id, "bye").await;
    // Bob's own messages do not notify him, but Alice.
    let reply = bob.send_text(&room_id, "I am here").await;
    let all = vec![last.clone(), mention.clone(), first.clone()];

    let page = notifications(&bob, "").await;
    assert_eq!(event_ids(&page), all);
    assert!(page.get("next_token").is_none(), "{page}");
    let newest = &page["notifications"][0];
    assert_eq!(newest["room_id"], room_id);
    assert_eq!(newest["read"], false);
    assert!(newest["ts"].as_u64().is_some(), "{newest}");
    assert_eq!(newest["event"]["content"]["body"], "bye");
    assert_eq!(newest["event"]["sender"], alice.user_id);
    assert!(
        newest["actions"]
            .as_array()
            .is_some_and(|a| a.contains(&json!("notify"))),
        "{newest}"
    );
    assert_eq!(event_ids(&notifications(&alice, "").await), [reply]);

    let highlights = notifications(&bob, "?only=highlight").await;
    assert_eq!(event_ids(&highlights), std::slice::from_ref(&mention));
    assert!(
        highlights["notifications"][0]["actions"]
            .as_array()
            .is_some_and(|a| a.contains(&json!({ "set_tweak": "highlight" }))),
        "{highlights}"
    );

    // Paging.
    let mut seen = Vec::new();
    let mut query = "?limit=2".to_owned();
    loop {
        let page = notifications(&bob, &query).await;
        seen.extend(event_ids(&page));
        match page["next_token"].as_str() {
            Some(token) => query = format!("?limit=2&from={}", enc(token)),
            None => break,
        }
    }
    assert_eq!(seen, all);
    bob.client
        .get(&format!("{V3}/notifications?from=nonsense"))
        .await
        .assert_error(400, "M_INVALID_PARAM");

    // A read receipt marks what it covers as read.
    bob.client
        .post(&receipt_path(&room_id, &mention), json!({}))
        .await
        .ok();
    let page = notifications(&bob, "").await;
    let read: Vec<bool> = page["notifications"]
        .as_array()
        .expect("notifications")
        .iter()
        .map(|n| n["read"].as_bool().expect("read"))
        .collect();
    assert_eq!(read, [false, true, true]);
}

#[tokio::test]
async fn notifications_of_several_rooms_come_newest_first_across_them() {
    // Push actions are stored by user and room: the list merges the rooms' newest.
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let mut rooms = Vec::new();
    for _ in 0..3 {
        let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;
        bob.join_room(&room_id).await;
        rooms.push(room_id);
    }
    let mut sent = Vec::new();
    // Rooms take turns in varying order, so no room's events are all newer.
    for (round, order) in [[0, 1, 2], [2, 0, 1], [1, 2, 0]].into_iter().enumerate() {
        for i in order {
            let room_id = &rooms[i];
            let event_id = alice.send_text(room_id, &format!("message {round}")).await;
            sent.push((room_id.clone(), event_id));
        }
    }
    sent.reverse();
    let expected: Vec<String> = sent.iter().map(|(_, id)| id.clone()).collect();

    let page = notifications(&bob, "").await;
    assert_eq!(event_ids(&page), expected);
    let page_rooms: Vec<&str> = page["notifications"]
        .as_array()
        .expect("notifications")
        .iter()
        .map(|n| n["room_id"].as_str().expect("room_id"))
        .collect();
    let sent_rooms: Vec<&str> = sent.iter().map(|(room, _)| room.as_str()).collect();
    assert_eq!(page_rooms, sent_rooms);

    let mut seen = Vec::new();
    let mut query = "?limit=4".to_owned();
    loop {
        let page = notifications(&bob, &query).await;
        let ids = event_ids(&page);
        assert!(ids.len() <= 4, "{page}");
        seen.extend(ids);
        match page["next_token"].as_str() {
            Some(token) => query = format!("?limit=4&from={}", enc(token)),
            None => break,
        }
    }
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn an_invite_notifies_the_invitee() {
    // Spec: the default `.m.rule.invite_for_me`: the invitee is not a member yet, and is still
    // notified of the invite.
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room_id = alice.create_room(json!({ "preset": "private_chat" })).await;
    alice.invite_user(&room_id, &bob.user_id).await;
    let page = notifications(&bob, "").await;
    let invites: Vec<&Value> = page["notifications"]
        .as_array()
        .expect("notifications")
        .iter()
        .filter(|n| {
            n["room_id"] == room_id.as_str()
                && n["event"]["type"] == "m.room.member"
                && n["event"]["state_key"] == bob.user_id.as_str()
        })
        .collect();
    assert_eq!(invites.len(), 1, "{page}");
    assert_eq!(invites[0]["event"]["content"]["membership"], "invite");
    // Alice, who sent it, is not notified of her own invite.
    assert!(event_ids(&notifications(&alice, "").await).is_empty());
}

#[tokio::test]
async fn muted_rooms_do_not_notify() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join_room(&room_id).await;

    put_rule(&bob, "room", &room_id, "", json!({ "actions": [] })).await;
    alice.send_text(&room_id, "psst").await;
    assert_eq!(notifications(&bob, "").await["notifications"], json!([]));

    bob.client
        .request(Method::DELETE, &rule_path("room", &room_id), None)
        .await
        .ok();
    let loud = alice.send_text(&room_id, "hello?").await;
    assert_eq!(event_ids(&notifications(&bob, "").await), [loud]);
}

/// Waits until `unread_notifications` (and with `by_thread`, `unread_thread_notifications`) of
/// the room in an initial sync are `expected`.
async fn wait_for_unread(user: &User, room_id: &str, by_thread: bool, expected: Value) {
    let filter = json!({
        "room": { "timeline": { "limit": 1, "unread_thread_notifications": by_thread } }
    })
    .to_string();
    let (filter, expected) = (&filter, &expected);
    wait_until(
        &format!("{} to have unread counts {expected}", user.user_id),
        Duration::from_secs(10),
        || async move {
            let sync = user
                .sync(&SyncQuery {
                    filter: Some(filter),
                    ..SyncQuery::default()
                })
                .await;
            let joined = room(&sync, "join", room_id);
            let mut counts = json!({ "unread_notifications": joined["unread_notifications"] });
            if by_thread {
                counts["unread_thread_notifications"] =
                    joined["unread_thread_notifications"].clone();
            }
            (counts == *expected).then_some(())
        },
    )
    .await;
}

fn counts(notifications: u64, highlights: u64) -> Value {
    json!({ "notification_count": notifications, "highlight_count": highlights })
}

#[tokio::test]
async fn unread_counts_in_sync_rise_with_messages_and_fall_with_receipts() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join_room(&room_id).await;
    let unread = |n, h| json!({ "unread_notifications": counts(n, h) });

    wait_for_unread(&bob, &room_id, false, unread(0, 0)).await;
    alice.send_text(&room_id, "one").await;
    let root = alice.send_text(&room_id, "two").await;
    wait_for_unread(&bob, &room_id, false, unread(2, 0)).await;
    alice
        .send_event(
            &room_id,
            "m.room.message",
            json!({
                "msgtype": "m.text",
                "body": "bob, in a thread",
                "m.mentions": { "user_ids": [bob.user_id] },
                "m.relates_to": { "rel_type": "m.thread", "event_id": root },
            }),
        )
        .await
        .ok();
    // Without threaded counts, the thread counts in the room's.
    wait_for_unread(&bob, &room_id, false, unread(3, 1)).await;
    let mut threaded = unread(2, 0);
    threaded["unread_thread_notifications"] = json!({ root.clone(): counts(1, 1) });
    wait_for_unread(&bob, &room_id, true, threaded).await;
    // The sender's own messages never count.
    wait_for_unread(&alice, &room_id, false, unread(0, 0)).await;

    // A receipt for the main timeline leaves the thread unread.
    bob.client
        .post(
            &room_path(&room_id, &format!("receipt/m.read/{}", enc(&root))),
            json!({ "thread_id": "main" }),
        )
        .await
        .ok();
    wait_for_unread(&bob, &room_id, false, unread(1, 1)).await;
    // An unthreaded receipt of the newest event reads everything.
    let last = alice.send_text(&room_id, "three").await;
    wait_for_unread(&bob, &room_id, false, unread(2, 1)).await;
    bob.client
        .post(
            &room_path(&room_id, &format!("receipt/m.read/{}", enc(&last))),
            json!({}),
        )
        .await
        .ok();
    wait_for_unread(&bob, &room_id, false, unread(0, 0)).await;
}
