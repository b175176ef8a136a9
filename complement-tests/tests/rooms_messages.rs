//! `GET /rooms/{roomId}/messages`: both directions with and without `from`, `to`, `limit`
//! (default 10), the `start`/`end`/`chunk` shape and `end` disappearing at the end of history,
//! `filter` (types, not_types, senders, wildcards), access (non-members, history visibility,
//! former members), and 120 messages paginated in pages of 50 without gaps or duplicates.

use std::collections::BTreeSet;

use complement_tests::rooms::{chunk, message_bodies, room_path};
use complement_tests::{TestServer, User, Value, enc, json};

const PASSWORD: &str = "rooms-messages-pw";
/// More pages than any test here needs: a pagination that never ends fails instead of hanging.
const MAX_PAGES: usize = 100;

async fn register(server: &TestServer, name: &str) -> User {
    server.client().register(name, PASSWORD).await
}

fn event_ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            e["event_id"]
                .as_str()
                .unwrap_or_else(|| panic!("event without event_id: {e}"))
                .to_owned()
        })
        .collect()
}

/// `query` plus `&from=<token>` when given.
fn with_from(query: &str, from: Option<&str>) -> String {
    match from {
        Some(token) => format!("{query}&from={}", enc(token)),
        None => query.to_owned(),
    }
}

/// Pages through the whole history in direction `dir`, starting without `from`, until a
/// response has no `end`. Returns every event in order and the size of every page. Checks the
/// response shape on the way.
async fn paginate(
    user: &User,
    room_id: &str,
    dir: &str,
    limit: usize,
    filter: Option<&Value>,
) -> (Vec<Value>, Vec<usize>) {
    let mut query = format!("dir={dir}&limit={limit}");
    if let Some(filter) = filter {
        query.push_str(&format!("&filter={}", enc(&filter.to_string())));
    }
    let mut from: Option<String> = None;
    let mut events = Vec::new();
    let mut sizes = Vec::new();
    for _ in 0..MAX_PAGES {
        let body = user
            .messages(room_id, &with_from(&query, from.as_deref()))
            .await;
        let start = body["start"]
            .as_str()
            .unwrap_or_else(|| panic!("no start token: {body}"));
        // message_pagination.yaml: `start` "will be the same as the value given in from".
        if let Some(from) = &from {
            assert_eq!(start, from, "start differs from from: {body}");
        }
        let page = chunk(&body);
        assert!(
            page.len() <= limit,
            "more than limit={limit} events: {body}"
        );
        for event in page {
            assert_eq!(event["room_id"], room_id, "{event}");
            assert!(event["type"].is_string(), "{event}");
            assert!(event["sender"].is_string(), "{event}");
            assert!(event["origin_server_ts"].is_u64(), "{event}");
            assert!(event["content"].is_object(), "{event}");
        }
        sizes.push(page.len());
        events.extend(page.iter().cloned());
        match body["end"].as_str() {
            Some(end) => from = Some(end.to_owned()),
            None => return (events, sizes),
        }
    }
    panic!("pagination did not end within {MAX_PAGES} pages");
}

/// Asserts no event appears twice.
#[track_caller]
fn assert_unique(events: &[Value]) {
    let ids = event_ids(events);
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "duplicate events: {ids:?}");
}

#[tokio::test]
async fn backwards_from_the_end_and_forwards_from_the_start() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let room_id = alice.create_room(json!({})).await;
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(alice.send_text(&room_id, &format!("m{i}")).await);
    }

    // Without `from`, dir=b starts at the latest event: reverse chronological order.
    let body = alice.messages(&room_id, "dir=b&limit=3").await;
    assert_eq!(
        event_ids(chunk(&body)),
        vec![sent[4].clone(), sent[3].clone(), sent[2].clone()],
        "{body}"
    );
    assert!(body["start"].is_string(), "{body}");
    assert!(
        body["end"].is_string(),
        "more history exists, so end is expected: {body}"
    );

    // Without `from`, dir=f starts at the beginning: the create event, the creator's join,
    // then the power levels (createRoom's event order).
    let body = alice.messages(&room_id, "dir=f&limit=3").await;
    let events = chunk(&body);
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        types,
        vec!["m.room.create", "m.room.member", "m.room.power_levels"],
        "{body}"
    );
    assert_eq!(events[1]["state_key"], alice.user_id.as_str(), "{body}");
    assert_eq!(events[1]["content"]["membership"], "join", "{body}");
    assert!(body["end"].is_string(), "{body}");
}

#[tokio::test]
async fn end_is_omitted_once_history_is_exhausted() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let room_id = alice.create_room(json!({ "name": "small" })).await;
    let last = alice.send_text(&room_id, "only message").await;

    // message_pagination.yaml `end`: "If no further events are available ... this property
    // is omitted". A server may notice that on the last page or on the next (empty) one.
    for dir in ["b", "f"] {
        let body = alice
            .messages(&room_id, &format!("dir={dir}&limit=100"))
            .await;
        let events = chunk(&body).clone();
        if dir == "b" {
            assert_eq!(
                events.first().map(|e| &e["event_id"]),
                Some(&json!(last)),
                "{body}"
            );
            assert_eq!(
                events.last().map(|e| &e["type"]),
                Some(&json!("m.room.create")),
                "{body}"
            );
        } else {
            assert_eq!(
                events.first().map(|e| &e["type"]),
                Some(&json!("m.room.create")),
                "{body}"
            );
            assert_eq!(
                events.last().map(|e| &e["event_id"]),
                Some(&json!(last)),
                "{body}"
            );
        }
        if let Some(end) = body["end"].as_str() {
            let next = alice
                .messages(&room_id, &format!("dir={dir}&limit=100&from={}", enc(end)))
                .await;
            assert!(chunk(&next).is_empty(), "events beyond the end: {next}");
            assert!(
                next.get("end").is_none(),
                "end still given after the last page: {next}"
            );
        }
    }
}

#[tokio::test]
async fn from_and_to_tokens_bound_the_range() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let room_id = alice.create_room(json!({})).await;
    let mut m = Vec::new();
    for i in 1..=5 {
        m.push(alice.send_text(&room_id, &format!("m{i}")).await);
    }
    let (m1, m2, m3, m4, m5) = (&m[0], &m[1], &m[2], &m[3], &m[4]);

    let page1 = alice.messages(&room_id, "dir=b&limit=2").await;
    assert_eq!(
        event_ids(chunk(&page1)),
        vec![m5.clone(), m4.clone()],
        "{page1}"
    );
    let e1 = page1["end"]
        .as_str()
        .unwrap_or_else(|| panic!("no end: {page1}"))
        .to_owned();
    let page2 = alice
        .messages(&room_id, &format!("dir=b&limit=2&from={}", enc(&e1)))
        .await;
    assert_eq!(page2["start"], e1.as_str(), "{page2}");
    assert_eq!(
        event_ids(chunk(&page2)),
        vec![m3.clone(), m2.clone()],
        "{page2}"
    );
    let e2 = page2["end"]
        .as_str()
        .unwrap_or_else(|| panic!("no end: {page2}"))
        .to_owned();
    let page3 = alice
        .messages(&room_id, &format!("dir=b&limit=1&from={}", enc(&e2)))
        .await;
    assert_eq!(event_ids(chunk(&page3)), vec![m1.clone()], "{page3}");

    // Tokens are positions between events: e2 lies between m1 and m2, e1 between m3 and m4.
    let forward = alice
        .messages(
            &room_id,
            &format!("dir=f&limit=10&from={}&to={}", enc(&e2), enc(&e1)),
        )
        .await;
    assert_eq!(
        event_ids(chunk(&forward)),
        vec![m2.clone(), m3.clone()],
        "{forward}"
    );
    let backward = alice
        .messages(
            &room_id,
            &format!("dir=b&limit=10&from={}&to={}", enc(&e1), enc(&e2)),
        )
        .await;
    assert_eq!(
        event_ids(chunk(&backward)),
        vec![m3.clone(), m2.clone()],
        "{backward}"
    );

    // Turning around at a backwards token goes forward without a gap.
    let onwards = alice
        .messages(&room_id, &format!("dir=f&limit=10&from={}", enc(&e2)))
        .await;
    assert_eq!(
        event_ids(chunk(&onwards)),
        vec![m2.clone(), m3.clone(), m4.clone(), m5.clone()],
        "{onwards}"
    );
}

#[tokio::test]
async fn limit_defaults_to_ten_and_is_respected() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let room_id = alice.create_room(json!({})).await;
    for i in 0..15 {
        alice.send_text(&room_id, &format!("m{i}")).await;
    }
    // message_pagination.yaml `limit`: "Default: 10."
    let body = alice.messages(&room_id, "dir=b").await;
    let want: Vec<String> = (5..15).rev().map(|i| format!("m{i}")).collect();
    assert_eq!(message_bodies(chunk(&body)), want, "{body}");
    assert_eq!(chunk(&body).len(), 10, "{body}");

    let body = alice.messages(&room_id, "dir=b&limit=1").await;
    assert_eq!(
        message_bodies(chunk(&body)),
        vec!["m14".to_owned()],
        "{body}"
    );
    let body = alice.messages(&room_id, "dir=b&limit=4").await;
    assert_eq!(chunk(&body).len(), 4, "{body}");
}

#[tokio::test]
async fn filter_by_types_not_types_and_senders() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join_room(&room_id).await;
    for i in 0..4 {
        alice.send_text(&room_id, &format!("alice {i}")).await;
        alice
            .send_event(&room_id, "org.example.ping", json!({ "n": i }))
            .await
            .assert_status(200);
        bob.send_text(&room_id, &format!("bob {i}")).await;
        bob.send_event(&room_id, "org.example.pong", json!({ "n": i }))
            .await
            .assert_status(200);
    }
    let all_messages: Vec<String> = (0..4)
        .flat_map(|i| [format!("alice {i}"), format!("bob {i}")])
        .collect();

    // Small pages, so that the filter must apply across pages without losing events.
    let only_messages = json!({ "types": ["m.room.message"] });
    let (events, _) = paginate(&alice, &room_id, "f", 3, Some(&only_messages)).await;
    assert!(
        events.iter().all(|e| e["type"] == "m.room.message"),
        "{events:#?}"
    );
    assert_eq!(message_bodies(&events), all_messages);

    let no_messages = json!({ "not_types": ["m.room.message"] });
    let (events, _) = paginate(&alice, &room_id, "b", 5, Some(&no_messages)).await;
    assert!(
        events.iter().all(|e| e["type"] != "m.room.message"),
        "{events:#?}"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e["type"] == "org.example.ping")
            .count(),
        4
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e["type"] == "org.example.pong")
            .count(),
        4
    );
    assert_eq!(
        events.last().map(|e| &e["type"]),
        Some(&json!("m.room.create"))
    );

    // Filters: "A '*' can be used as a wildcard to match any sequence of characters".
    let wildcard = json!({ "types": ["org.example.*"], "not_types": ["org.example.pong"] });
    let (events, _) = paginate(&alice, &room_id, "f", 50, Some(&wildcard)).await;
    let ns: Vec<&Value> = events.iter().map(|e| &e["content"]["n"]).collect();
    assert!(
        events.iter().all(|e| e["type"] == "org.example.ping"),
        "{events:#?}"
    );
    assert_eq!(ns, vec![&json!(0), &json!(1), &json!(2), &json!(3)]);

    let bobs = json!({ "senders": [bob.user_id], "types": ["m.room.message"] });
    let (events, _) = paginate(&alice, &room_id, "b", 2, Some(&bobs)).await;
    let want: Vec<String> = (0..4).rev().map(|i| format!("bob {i}")).collect();
    assert_eq!(message_bodies(&events), want);
    assert_eq!(events.len(), 4, "{events:#?}");
}

#[tokio::test]
async fn history_of_120_messages_in_pages_of_50() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let room_id = alice.create_room(json!({ "name": "long history" })).await;
    let mut sent = Vec::new();
    for i in 0..120 {
        sent.push(alice.send_text(&room_id, &format!("msg-{i:03}")).await);
    }
    let bodies: Vec<String> = (0..120).map(|i| format!("msg-{i:03}")).collect();

    let (backward, sizes) = paginate(&alice, &room_id, "b", 50, None).await;
    assert_unique(&backward);
    // The latest 100 events are messages, so the first two pages are full.
    assert_eq!(sizes[..2], [50, 50], "page sizes {sizes:?}");
    let mut reversed = bodies.clone();
    reversed.reverse();
    assert_eq!(message_bodies(&backward), reversed);
    assert_eq!(
        event_ids(&backward[..120]),
        sent.iter().rev().cloned().collect::<Vec<_>>()
    );
    assert_eq!(
        backward.last().map(|e| &e["type"]),
        Some(&json!("m.room.create"))
    );

    let (forward, sizes) = paginate(&alice, &room_id, "f", 50, None).await;
    assert_unique(&forward);
    assert_eq!(sizes[0], 50, "page sizes {sizes:?}");
    assert_eq!(message_bodies(&forward), bodies);
    assert_eq!(
        forward.first().map(|e| &e["type"]),
        Some(&json!("m.room.create"))
    );

    // Both directions saw the same events, in mirrored order.
    let mut forward_ids = event_ids(&forward);
    forward_ids.reverse();
    assert_eq!(forward_ids, event_ids(&backward));
}

#[tokio::test]
async fn non_members_cannot_read_messages() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let mallory = register(&server, "mallory").await;
    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;
    alice.send_text(&room_id, "members only").await;
    let path = room_path(&room_id, "messages?dir=b");
    let resp = mallory.client.get(&path).await;
    resp.assert_error(403, "M_FORBIDDEN");
    assert!(!resp.text.contains("members only"), "{resp}");
    server
        .client()
        .get(&path)
        .await
        .assert_error(401, "M_MISSING_TOKEN");
    // Invited is not joined either.
    alice.invite_user(&room_id, &mallory.user_id).await;
    mallory
        .client
        .get(&path)
        .await
        .assert_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn world_readable_rooms_can_be_read_by_anyone() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let mallory = register(&server, "mallory").await;
    let room_id = alice
        .create_room(json!({
            "preset": "public_chat",
            "initial_state": [{
                "type": "m.room.history_visibility",
                "content": { "history_visibility": "world_readable" },
            }],
        }))
        .await;
    alice.send_text(&room_id, "hello world").await;
    // History visibility: world_readable events "may be shared ... with any authenticated
    // user, regardless of whether they have ever joined the room".
    let body = mallory.messages(&room_id, "dir=b&limit=5").await;
    assert_eq!(
        message_bodies(chunk(&body)),
        vec!["hello world".to_owned()],
        "{body}"
    );
}

#[tokio::test]
async fn joined_visibility_hides_history_from_before_joining() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room_id = alice
        .create_room(json!({
            "preset": "public_chat",
            "initial_state": [{
                "type": "m.room.history_visibility",
                "content": { "history_visibility": "joined" },
            }],
        }))
        .await;
    alice.send_text(&room_id, "before bob").await;
    bob.join_room(&room_id).await;
    alice.send_text(&room_id, "after bob").await;

    let (events, _) = paginate(&bob, &room_id, "b", 10, None).await;
    assert_eq!(
        message_bodies(&events),
        vec!["after bob".to_owned()],
        "{events:#?}"
    );
    // Bob's own join is visible to him.
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "m.room.member" && e["state_key"] == bob.user_id.as_str()),
        "{events:#?}"
    );
    // Alice sees everything.
    let (events, _) = paginate(&alice, &room_id, "b", 10, None).await;
    assert_eq!(
        message_bodies(&events),
        vec!["after bob".to_owned(), "before bob".to_owned()]
    );
}

#[tokio::test]
async fn shared_visibility_shows_earlier_history_to_new_members() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;
    alice.send_text(&room_id, "before bob").await;
    bob.join_room(&room_id).await;
    alice.send_text(&room_id, "after bob").await;
    let (events, _) = paginate(&bob, &room_id, "f", 10, None).await;
    assert_eq!(
        message_bodies(&events),
        vec!["before bob".to_owned(), "after bob".to_owned()]
    );
}

#[tokio::test]
async fn former_members_see_history_up_to_leaving() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join_room(&room_id).await;
    alice.send_text(&room_id, "while bob is here").await;
    bob.leave_room(&room_id).await;
    alice.send_text(&room_id, "after bob left").await;

    // leaving.yaml: the user "will still be allowed to retrieve history from the room which
    // they were previously allowed to see" - and nothing after leaving.
    let (events, _) = paginate(&bob, &room_id, "b", 10, None).await;
    assert_eq!(
        message_bodies(&events),
        vec!["while bob is here".to_owned()],
        "{events:#?}"
    );
}

#[tokio::test]
async fn invalid_parameters_are_rejected() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let room_id = alice.create_room(json!({})).await;
    alice
        .client
        .get(&room_path(&room_id, "messages?dir=sideways"))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    let resp = alice
        .client
        .get(&room_path(&room_id, "messages?dir=b&from=not-a-token"))
        .await;
    assert_eq!(resp.status, 400, "{resp}");
    assert!(resp.errcode().is_some(), "{resp}");
    alice
        .client
        .get(&room_path(&room_id, "messages?dir=b&limit=ten"))
        .await
        .assert_error(400, "M_INVALID_PARAM");
}
