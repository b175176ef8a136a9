//! Server-side search: `POST /search`, category `room_events`. Substring matching in any script
//! (Chinese without spaces included), both orders, pagination through `next_batch`, context,
//! state, groupings, and what a user must never find: other people's rooms and redacted text.

use std::collections::HashSet;

use complement_tests::rooms::{room_path, txn_id};
use complement_tests::{Response, TestServer, User, V3, Value, enc, json};

const PASSWORD: &str = "search-pw";

async fn register(server: &TestServer, name: &str) -> User {
    server.client().register(name, PASSWORD).await
}

async fn search_raw(user: &User, body: Value, next_batch: Option<&str>) -> Response {
    let path = match next_batch {
        Some(token) => format!("{V3}/search?next_batch={}", enc(token)),
        None => format!("{V3}/search"),
    };
    user.client.post(&path, body).await
}

/// `room_events` of a search with these criteria; asserts 200.
async fn search(user: &User, criteria: Value) -> Value {
    search_page(user, criteria, None).await
}

async fn search_page(user: &User, criteria: Value, next_batch: Option<&str>) -> Value {
    let body = json!({ "search_categories": { "room_events": criteria } });
    let resp = search_raw(user, body, next_batch).await;
    resp.ok()["search_categories"]["room_events"].clone()
}

/// The `content.body` (or name/topic) of each result, in order.
fn texts(room_events: &Value) -> Vec<String> {
    results(room_events)
        .iter()
        .map(|r| {
            let content = &r["result"]["content"];
            ["body", "name", "topic"]
                .iter()
                .find_map(|k| content[k].as_str())
                .unwrap_or_else(|| panic!("a result without text: {r}"))
                .to_owned()
        })
        .collect()
}

fn results(room_events: &Value) -> Vec<Value> {
    room_events["results"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn result_ids(room_events: &Value) -> Vec<String> {
    results(room_events)
        .iter()
        .map(|r| r["result"]["event_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn redact(user: &User, room_id: &str, event_id: &str) {
    let path = room_path(
        room_id,
        &format!("redact/{}/{}", enc(event_id), enc(&txn_id())),
    );
    user.client.put(&path, json!({})).await.ok();
}

#[tokio::test]
async fn chinese_is_found_by_substring_and_english_by_words() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let room = alice.create_room(json!({ "name": "世界 chat" })).await;
    for body in [
        "你好世界",
        "世界和平",
        "今天天气很好",
        "Hello World",
        "hello there",
        "goodbye",
    ] {
        alice.send_text(&room, body).await;
    }

    // Two characters: shorter than a trigram, still found inside longer text.
    let found = search(
        &alice,
        json!({ "search_term": "世界", "order_by": "recent" }),
    )
    .await;
    assert_eq!(
        texts(&found),
        ["世界和平", "你好世界", "世界 chat"],
        "{found}"
    );
    assert_eq!(found["count"], 3);
    assert_eq!(found["highlights"], json!(["世界"]));
    let found = search(&alice, json!({ "search_term": "好世界" })).await;
    assert_eq!(texts(&found), ["你好世界"]);
    let found = search(&alice, json!({ "search_term": "天气很" })).await;
    assert_eq!(texts(&found), ["今天天气很好"]);
    let found = search(
        &alice,
        json!({ "search_term": "世界", "keys": ["content.body"], "order_by": "recent" }),
    )
    .await;
    assert_eq!(texts(&found), ["世界和平", "你好世界"]);
    let found = search(
        &alice,
        json!({ "search_term": "世界", "keys": ["content.name"] }),
    )
    .await;
    assert_eq!(texts(&found), ["世界 chat"]);

    // Case-insensitive; every word must occur.
    let found = search(
        &alice,
        json!({ "search_term": "HELLO", "order_by": "recent" }),
    )
    .await;
    assert_eq!(texts(&found), ["hello there", "Hello World"]);
    let found = search(&alice, json!({ "search_term": "world hello" })).await;
    assert_eq!(texts(&found), ["Hello World"]);
    assert_eq!(found["highlights"], json!(["world", "hello"]));
    let found = search(&alice, json!({ "search_term": "\"hello there\"" })).await;
    assert_eq!(texts(&found), ["hello there"]);
    let found = search(&alice, json!({ "search_term": "nowhere" })).await;
    assert!(results(&found).is_empty());
    assert_eq!(found["count"], 0);
    assert!(found.get("next_batch").is_none());

    // Each result is a client-format event with a rank.
    let found = search(&alice, json!({ "search_term": "goodbye" })).await;
    let result = &results(&found)[0];
    assert!(result["rank"].as_f64().unwrap() > 0.0);
    assert_eq!(result["result"]["room_id"], room);
    assert_eq!(result["result"]["sender"], alice.user_id);
    assert_eq!(result["result"]["type"], "m.room.message");
}

#[tokio::test]
async fn rank_puts_the_closest_match_first_and_recent_the_newest() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let room = alice.create_room(json!({})).await;
    for body in [
        "an apple a day keeps the doctor away, they say",
        "apple",
        "apple pie",
    ] {
        alice.send_text(&room, body).await;
    }
    let ranked = search(&alice, json!({ "search_term": "apple" })).await;
    assert_eq!(
        texts(&ranked),
        [
            "apple",
            "apple pie",
            "an apple a day keeps the doctor away, they say"
        ]
    );
    let ranks: Vec<f64> = results(&ranked)
        .iter()
        .map(|r| r["rank"].as_f64().unwrap())
        .collect();
    assert!(ranks.windows(2).all(|w| w[0] >= w[1]), "{ranks:?}");
    let recent = search(
        &alice,
        json!({ "search_term": "apple", "order_by": "recent" }),
    )
    .await;
    assert_eq!(
        texts(&recent),
        [
            "apple pie",
            "apple",
            "an apple a day keeps the doctor away, they say"
        ]
    );
}

#[tokio::test]
async fn next_batch_pages_through_every_result_once() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let room = alice.create_room(json!({})).await;
    let mut sent = HashSet::new();
    for i in 0..25 {
        sent.insert(alice.send_text(&room, &format!("numbered note {i}")).await);
    }
    alice.send_text(&room, "unrelated").await;
    for order in ["recent", "rank"] {
        let criteria = json!({
            "search_term": "note",
            "order_by": order,
            "filter": { "limit": 10 },
        });
        let mut seen = Vec::new();
        let mut page_sizes = Vec::new();
        let mut next_batch: Option<String> = None;
        loop {
            let page = search_page(&alice, criteria.clone(), next_batch.as_deref()).await;
            assert_eq!(page["count"], 25, "{page}");
            page_sizes.push(results(&page).len());
            seen.extend(result_ids(&page));
            match page["next_batch"].as_str() {
                Some(token) => next_batch = Some(token.to_owned()),
                None => break,
            }
            assert!(page_sizes.len() < 5, "too many pages: {page_sizes:?}");
        }
        assert_eq!(page_sizes, [10, 10, 5], "{order}");
        let unique: HashSet<String> = seen.iter().cloned().collect();
        assert_eq!(unique.len(), 25, "{order}: duplicates in {seen:?}");
        assert_eq!(unique, sent, "{order}");
    }
    // The recent order is newest first across pages.
    let first = search(
        &alice,
        json!({ "search_term": "note", "order_by": "recent", "filter": { "limit": 1 } }),
    )
    .await;
    assert_eq!(texts(&first), ["numbered note 24"]);

    // A token of one order is refused by the other; garbage is refused.
    let recent = search(
        &alice,
        json!({ "search_term": "note", "order_by": "recent", "filter": { "limit": 10 } }),
    )
    .await;
    let token = recent["next_batch"].as_str().unwrap();
    let body = json!({ "search_categories": { "room_events": {
        "search_term": "note", "order_by": "rank" } } });
    search_raw(&alice, body.clone(), Some(token))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    search_raw(&alice, body, Some("not-a-token"))
        .await
        .assert_error(400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn event_context_returns_the_events_around_each_result() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join_room(&room).await;
    alice.send_text(&room, "first").await;
    bob.send_text(&room, "second").await;
    let target = alice.send_text(&room, "the needle").await;
    bob.send_text(&room, "fourth").await;
    alice.send_text(&room, "fifth").await;

    let found = search(
        &alice,
        json!({
            "search_term": "needle",
            "event_context": { "before_limit": 2, "after_limit": 1, "include_profile": true },
        }),
    )
    .await;
    assert_eq!(result_ids(&found), [target.as_str()]);
    let context = &results(&found)[0]["context"];
    let bodies = |key: &str| -> Vec<String> {
        context[key]
            .as_array()
            .unwrap_or_else(|| panic!("no {key} in {context}"))
            .iter()
            .map(|e| e["content"]["body"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(bodies("events_before"), ["second", "first"]);
    assert_eq!(bodies("events_after"), ["fourth"]);
    assert_eq!(
        context["profile_info"][&alice.user_id]["displayname"],
        "alice"
    );
    assert_eq!(context["profile_info"][&bob.user_id]["displayname"], "bob");
    // The tokens page /messages on from the edges of the context.
    let start = context["start"].as_str().unwrap();
    let older = alice
        .client
        .get(&room_path(
            &room,
            &format!("messages?dir=b&limit=1&from={}", enc(start)),
        ))
        .await
        .ok();
    assert_ne!(older["chunk"][0]["content"]["body"], "first");
    assert_ne!(older["chunk"][0]["content"]["body"], "second");
    let end = context["end"].as_str().unwrap();
    let newer = alice
        .client
        .get(&room_path(
            &room,
            &format!("messages?dir=f&limit=1&from={}", enc(end)),
        ))
        .await
        .ok();
    assert_eq!(newer["chunk"][0]["content"]["body"], "fifth");

    // Without event_context, no context.
    let found = search(&alice, json!({ "search_term": "needle" })).await;
    assert!(results(&found)[0].get("context").is_none(), "{found}");
}

#[tokio::test]
async fn include_state_and_groupings_describe_the_rooms_with_results() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let first = alice.create_room(json!({ "name": "First" })).await;
    let second = alice.create_room(json!({ "name": "Second" })).await;
    let quiet = alice.create_room(json!({ "name": "Quiet" })).await;
    let a1 = alice.send_text(&first, "meeting at noon").await;
    let b1 = alice.send_text(&second, "meeting moved").await;
    let a2 = alice.send_text(&first, "meeting cancelled").await;
    alice.send_text(&quiet, "nothing to see").await;

    let found = search(
        &alice,
        json!({
            "search_term": "meeting",
            "order_by": "recent",
            "include_state": true,
            "groupings": { "group_by": [{ "key": "room_id" }, { "key": "sender" }] },
        }),
    )
    .await;
    assert_eq!(result_ids(&found), [a2.clone(), b1.clone(), a1.clone()]);
    let state = found["state"].as_object().unwrap();
    let mut rooms: Vec<&String> = state.keys().collect();
    rooms.sort();
    let mut expected = vec![&first, &second];
    expected.sort();
    assert_eq!(rooms, expected);
    let name_of = |room: &str| {
        state[room]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == "m.room.name")
            .map(|e| e["content"]["name"].clone())
    };
    assert_eq!(name_of(&first), Some(json!("First")));
    assert_eq!(name_of(&second), Some(json!("Second")));

    let by_room = &found["groups"]["room_id"];
    assert_eq!(by_room[&first]["results"], json!([a2, a1]));
    assert_eq!(by_room[&second]["results"], json!([b1]));
    assert_eq!(by_room[&first]["order"], 0);
    assert_eq!(by_room[&second]["order"], 1);
    assert!(by_room.get(&quiet).is_none());
    let by_sender = &found["groups"]["sender"];
    assert_eq!(by_sender[&alice.user_id]["results"], json!([a2, b1, a1]));

    // Filters: rooms, not_rooms, senders, types.
    let only_second = search(
        &alice,
        json!({ "search_term": "meeting", "filter": { "rooms": [second] } }),
    )
    .await;
    assert_eq!(result_ids(&only_second), [b1.as_str()]);
    let not_first = search(
        &alice,
        json!({ "search_term": "meeting", "filter": { "not_rooms": [first] } }),
    )
    .await;
    assert_eq!(result_ids(&not_first), [b1]);
    let nobody = search(
        &alice,
        json!({ "search_term": "meeting", "filter": { "senders": ["@nobody:example.org"] } }),
    )
    .await;
    assert!(results(&nobody).is_empty());

    // A group's next_batch pages through its room alone.
    let paged = search(
        &alice,
        json!({
            "search_term": "meeting",
            "order_by": "recent",
            "filter": { "limit": 1 },
            "groupings": { "group_by": [{ "key": "room_id" }] },
        }),
    )
    .await;
    assert_eq!(result_ids(&paged), [a2]);
    let token = paged["groups"]["room_id"][&first]["next_batch"]
        .as_str()
        .unwrap();
    let rest = search_page(
        &alice,
        json!({ "search_term": "meeting", "order_by": "recent", "filter": { "limit": 5 } }),
        Some(token),
    )
    .await;
    assert_eq!(result_ids(&rest), [a1]);
}

#[tokio::test]
async fn other_peoples_rooms_and_redacted_messages_are_never_found() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let private = bob.create_room(json!({ "preset": "private_chat" })).await;
    bob.send_text(&private, "bob's secret 世界").await;
    let public = bob.create_room(json!({ "preset": "public_chat" })).await;
    bob.send_text(&public, "public secret").await;

    let found = search(&alice, json!({ "search_term": "secret" })).await;
    assert!(results(&found).is_empty(), "{found}");
    assert_eq!(found["count"], 0);
    let named = search(
        &alice,
        json!({ "search_term": "世界", "filter": { "rooms": [private] } }),
    )
    .await;
    assert!(results(&named).is_empty(), "{named}");
    // Joining makes a room searchable.
    alice.join_room(&public).await;
    let found = search(&alice, json!({ "search_term": "secret" })).await;
    assert_eq!(texts(&found), ["public secret"]);

    let doomed = bob.send_text(&public, "regrettable words").await;
    let found = search(&alice, json!({ "search_term": "regrettable" })).await;
    assert_eq!(result_ids(&found), [doomed.as_str()]);
    redact(&bob, &public, &doomed).await;
    for user in [&alice, &bob] {
        let found = search(user, json!({ "search_term": "regrettable" })).await;
        assert!(results(&found).is_empty(), "{found}");
        assert_eq!(found["count"], 0);
    }
}

#[tokio::test]
async fn bad_requests_get_the_spec_errors() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let room = alice.create_room(json!({})).await;
    alice.send_text(&room, "something").await;

    let anonymous = server.client();
    anonymous
        .post(
            &format!("{V3}/search"),
            json!({ "search_categories": { "room_events": { "search_term": "x" } } }),
        )
        .await
        .assert_error(401, "M_MISSING_TOKEN");
    for body in [
        json!({}),
        json!({ "search_categories": { "room_events": {} } }),
        json!({ "search_categories": { "room_events": { "search_term": 5 } } }),
    ] {
        search_raw(&alice, body, None)
            .await
            .assert_error(400, "M_BAD_JSON");
    }
    for criteria in [
        json!({ "search_term": "x", "order_by": "loudest" }),
        json!({ "search_term": "x", "keys": ["content.nope"] }),
        json!({ "search_term": "x", "groupings": { "group_by": [{ "key": "origin" }] } }),
    ] {
        let body = json!({ "search_categories": { "room_events": criteria } });
        search_raw(&alice, body, None)
            .await
            .assert_error(400, "M_INVALID_PARAM");
    }
    // An empty search term finds nothing (as Synapse); no room_events category, no results.
    let found = search(&alice, json!({ "search_term": "  " })).await;
    assert_eq!(found["count"], 0);
    assert!(results(&found).is_empty());
    let none = search_raw(&alice, json!({ "search_categories": {} }), None).await;
    assert_eq!(none.ok(), json!({ "search_categories": {} }));
}
