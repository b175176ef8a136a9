//! Relations between events: edits, reactions, threads, references and replies, through
//! `/relations`, `/threads`, `/context`, `/timestamp_to_event`, and the bundled aggregations
//! (`unsigned["m.relations"]`) of `/event`, `/messages` and the others.

use complement_tests::rooms::{chunk, event_id_of, room_path, txn_id};
use complement_tests::{TestServer, User, Value, enc, json};

const PASSWORD: &str = "relations-pw";
const V1: &str = "/_matrix/client/v1";

async fn register(server: &TestServer, name: &str) -> User {
    server.client().register(name, PASSWORD).await
}

/// Alice's public room with Bob joined.
async fn room_with_bob(server: &TestServer) -> (User, User, String) {
    let alice = register(server, "alice").await;
    let bob = register(server, "bob").await;
    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join_room(&room_id).await;
    (alice, bob, room_id)
}

fn v1_room_path(room_id: &str, rest: &str) -> String {
    format!("{V1}/rooms/{}/{rest}", enc(room_id))
}

fn relations_path(room_id: &str, event_id: &str, rest: &str) -> String {
    v1_room_path(room_id, &format!("relations/{}{rest}", enc(event_id)))
}

async fn send(user: &User, room_id: &str, event_type: &str, content: Value) -> String {
    event_id_of(user.send_event(room_id, event_type, content).await)
}

async fn edit(user: &User, room_id: &str, original: &str, body: &str) -> String {
    send(
        user,
        room_id,
        "m.room.message",
        json!({
            "msgtype": "m.text",
            "body": format!("* {body}"),
            "m.new_content": { "msgtype": "m.text", "body": body },
            "m.relates_to": { "rel_type": "m.replace", "event_id": original },
        }),
    )
    .await
}

async fn react(user: &User, room_id: &str, target: &str, key: &str) -> String {
    send(
        user,
        room_id,
        "m.reaction",
        json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": target, "key": key } }),
    )
    .await
}

async fn thread_reply(user: &User, room_id: &str, root: &str, body: &str) -> String {
    send(
        user,
        room_id,
        "m.room.message",
        json!({
            "msgtype": "m.text",
            "body": body,
            "m.relates_to": {
                "rel_type": "m.thread",
                "event_id": root,
                "is_falling_back": true,
                "m.in_reply_to": { "event_id": root },
            },
        }),
    )
    .await
}

async fn redact(user: &User, room_id: &str, event_id: &str) {
    user.client
        .put(
            &room_path(room_id, &format!("redact/{}/{}", enc(event_id), txn_id())),
            json!({}),
        )
        .await
        .assert_status(200);
}

async fn event(user: &User, room_id: &str, event_id: &str) -> Value {
    user.client
        .get(&room_path(room_id, &format!("event/{}", enc(event_id))))
        .await
        .ok()
}

/// The event IDs of a chunk.
fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["event_id"].as_str().expect("event_id").to_owned())
        .collect()
}

async fn relation_ids(user: &User, room_id: &str, event_id: &str, rest: &str) -> Vec<String> {
    let body = user
        .client
        .get(&relations_path(room_id, event_id, rest))
        .await
        .ok();
    ids(chunk(&body))
}

/// The most recent of some edits by the spec's rule: `origin_server_ts`, then event ID.
async fn most_recent(user: &User, room_id: &str, edits: &[&str]) -> String {
    let mut keyed = Vec::new();
    for id in edits {
        let e = event(user, room_id, id).await;
        keyed.push((e["origin_server_ts"].as_u64().unwrap(), id.to_string()));
    }
    keyed.into_iter().max().unwrap().1
}

#[tokio::test]
async fn edits_are_bundled_without_replacing_content() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = room_with_bob(&server).await;
    let original = alice.send_text(&room_id, "hello").await;
    let first = edit(&alice, &room_id, &original, "hello again").await;
    let second = edit(&alice, &room_id, &original, "hello at last").await;
    // Invalid edits: by someone else, and without m.new_content.
    edit(&bob, &room_id, &original, "not yours").await;
    send(
        &alice,
        &room_id,
        "m.room.message",
        json!({
            "msgtype": "m.text",
            "body": "* no new content",
            "m.relates_to": { "rel_type": "m.replace", "event_id": original },
        }),
    )
    .await;

    let latest = most_recent(&alice, &room_id, &[&first, &second]).await;
    let served = event(&bob, &room_id, &original).await;
    assert_eq!(
        served["content"]["body"], "hello",
        "the original content stays"
    );
    let replace = &served["unsigned"]["m.relations"]["m.replace"];
    assert_eq!(replace["event_id"], latest.as_str(), "{served}");
    assert_eq!(replace["sender"], alice.user_id.as_str());
    assert_eq!(replace["type"], "m.room.message");
    assert!(replace["content"]["m.new_content"]["body"].is_string());

    // /messages bundles the same; edits themselves get no aggregations.
    let page = bob.messages(&room_id, "dir=b&limit=10").await;
    let events = chunk(&page);
    let in_page = events
        .iter()
        .find(|e| e["event_id"] == original.as_str())
        .expect("the original in /messages");
    assert_eq!(in_page["content"]["body"], "hello");
    assert_eq!(
        in_page["unsigned"]["m.relations"]["m.replace"]["event_id"],
        latest.as_str()
    );
    let edit_event = events
        .iter()
        .find(|e| e["event_id"] == first.as_str())
        .expect("the first edit in /messages");
    assert!(edit_event["unsigned"].get("m.relations").is_none());

    // Redacting the latest edit falls back to the other one.
    redact(&alice, &room_id, &latest).await;
    let other = if latest == first { &second } else { &first };
    let served = event(&bob, &room_id, &original).await;
    assert_eq!(
        served["unsigned"]["m.relations"]["m.replace"]["event_id"],
        other.as_str()
    );
    // /relations lists edits whether valid or not, but no redacted ones.
    let listed = relation_ids(&bob, &room_id, &original, "/m.replace").await;
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(listed.contains(other) && !listed.contains(&latest));

    // Redacting the original drops the edit from its bundle.
    redact(&alice, &room_id, &original).await;
    let served = event(&bob, &room_id, &original).await;
    assert!(
        served["unsigned"]["m.relations"].get("m.replace").is_none(),
        "{served}"
    );
}

#[tokio::test]
async fn relations_are_filtered_and_paginated() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = room_with_bob(&server).await;
    let target = alice.send_text(&room_id, "react to me").await;
    let thumbs = react(&bob, &room_id, &target, "👍").await;
    let edit_id = edit(&alice, &room_id, &target, "react to me, please").await;
    let heart = react(&alice, &room_id, &target, "❤️").await;
    // Not relations of the target: a plain message and a reply.
    alice.send_text(&room_id, "unrelated").await;
    let reply = send(
        &bob,
        &room_id,
        "m.room.message",
        json!({
            "msgtype": "m.text",
            "body": "a reply",
            "m.relates_to": { "m.in_reply_to": { "event_id": target } },
        }),
    )
    .await;

    let newest_first = [heart.clone(), edit_id.clone(), thumbs.clone()];
    assert_eq!(
        relation_ids(&bob, &room_id, &target, "").await,
        newest_first
    );
    assert_eq!(
        relation_ids(&bob, &room_id, &target, "?dir=f").await,
        [thumbs.clone(), edit_id.clone(), heart.clone()]
    );
    assert_eq!(
        relation_ids(&bob, &room_id, &target, "/m.annotation").await,
        [heart.clone(), thumbs.clone()]
    );
    assert_eq!(
        relation_ids(&bob, &room_id, &target, "/m.annotation/m.reaction").await,
        [heart.clone(), thumbs.clone()]
    );
    assert!(
        relation_ids(&bob, &room_id, &target, "/m.annotation/m.room.message")
            .await
            .is_empty()
    );
    // Replies carry no rel_type: they are not relations.
    assert!(
        relation_ids(&bob, &room_id, &target, "/m.in_reply_to")
            .await
            .is_empty()
    );
    let reply_event = event(&bob, &room_id, &reply).await;
    assert_eq!(
        reply_event["content"]["m.relates_to"]["m.in_reply_to"]["event_id"],
        target.as_str()
    );

    // One at a time, following next_batch; prev_batch names where a page started.
    let mut seen = Vec::new();
    let mut from: Option<String> = None;
    loop {
        let query = match &from {
            Some(token) => format!("?limit=1&from={}", enc(token)),
            None => "?limit=1".to_owned(),
        };
        let body = bob
            .client
            .get(&relations_path(&room_id, &target, &query))
            .await
            .ok();
        assert!(body.get("recursion_depth").is_none());
        assert_eq!(body["prev_batch"].as_str(), from.as_deref(), "{body}");
        seen.extend(ids(chunk(&body)));
        match body["next_batch"].as_str() {
            Some(next) => from = Some(next.to_owned()),
            None => break,
        }
        assert!(seen.len() <= 3, "pagination does not end: {seen:?}");
    }
    assert_eq!(seen, newest_first);

    // `to` stops a page.
    let first = bob
        .client
        .get(&relations_path(&room_id, &target, "?limit=1"))
        .await
        .ok();
    let to = first["next_batch"].as_str().unwrap();
    let body = bob
        .client
        .get(&relations_path(
            &room_id,
            &target,
            &format!("?dir=f&to={}", enc(to)),
        ))
        .await
        .ok();
    assert_eq!(ids(chunk(&body)), [thumbs.clone(), edit_id.clone()]);

    // A redacted reaction is no longer a relation.
    redact(&bob, &room_id, &thumbs).await;
    assert_eq!(
        relation_ids(&bob, &room_id, &target, "/m.annotation").await,
        [heart.as_str()]
    );

    // Unknown events, events of other rooms, bad tokens and limits.
    bob.client
        .get(&relations_path(&room_id, "$unknown:localhost", ""))
        .await
        .assert_error(404, "M_NOT_FOUND");
    let other_room = bob.create_room(json!({})).await;
    bob.client
        .get(&relations_path(&other_room, &target, ""))
        .await
        .assert_error(404, "M_NOT_FOUND");
    bob.client
        .get(&relations_path(&room_id, &target, "?from=nonsense"))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    bob.client
        .get(&relations_path(&room_id, &target, "?limit=0"))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    // Outsiders of a room with shared history cannot read it.
    let charlie = register(&server, "charlie").await;
    charlie
        .client
        .get(&relations_path(&room_id, &target, ""))
        .await
        .assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn threads_are_summarised_listed_and_recursed() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = room_with_bob(&server).await;
    let charlie = register(&server, "charlie").await;
    charlie.join_room(&room_id).await;

    let root = alice.send_text(&room_id, "thread root").await;
    let bob_reply = thread_reply(&bob, &room_id, &root, "bob in thread").await;
    let alice_reply = thread_reply(&alice, &room_id, &root, "alice in thread").await;
    let latest_edit = edit(&alice, &room_id, &alice_reply, "alice, edited").await;
    let reaction = react(&bob, &room_id, &alice_reply, "🎉").await;

    let served = event(&bob, &room_id, &root).await;
    let thread = &served["unsigned"]["m.relations"]["m.thread"];
    assert_eq!(thread["count"], 2, "{served}");
    assert_eq!(thread["current_user_participated"], true);
    assert_eq!(thread["latest_event"]["event_id"], alice_reply.as_str());
    assert_eq!(
        thread["latest_event"]["content"]["body"], "alice in thread",
        "the latest event keeps its content"
    );
    assert_eq!(
        thread["latest_event"]["unsigned"]["m.relations"]["m.replace"]["event_id"],
        latest_edit.as_str(),
        "the latest event has its own aggregations"
    );
    // The root's sender took part; Charlie did not.
    let for_alice = event(&alice, &room_id, &root).await;
    assert_eq!(
        for_alice["unsigned"]["m.relations"]["m.thread"]["current_user_participated"],
        true
    );
    let for_charlie = event(&charlie, &room_id, &root).await;
    assert_eq!(
        for_charlie["unsigned"]["m.relations"]["m.thread"]["current_user_participated"],
        false
    );

    // The thread's events; with recursion, the edit of and reaction to a reply as well.
    assert_eq!(
        relation_ids(&bob, &room_id, &root, "/m.thread").await,
        [alice_reply.clone(), bob_reply.clone()]
    );
    let recursed = bob
        .client
        .get(&relations_path(&room_id, &root, "?recurse=true"))
        .await
        .ok();
    assert_eq!(
        ids(chunk(&recursed)),
        [
            reaction.clone(),
            latest_edit.clone(),
            alice_reply.clone(),
            bob_reply.clone()
        ]
    );
    assert_eq!(recursed["recursion_depth"], 3);

    // Threads are listed by latest activity.
    let second_root = bob.send_text(&room_id, "second root").await;
    thread_reply(&bob, &room_id, &second_root, "second thread").await;
    let threads = |user: &User, query: &'static str| {
        let path = v1_room_path(&room_id, &format!("threads{query}"));
        let client = user.client.clone();
        async move { ids(chunk(&client.get(&path).await.ok())) }
    };
    assert_eq!(threads(&bob, "").await, [second_root.clone(), root.clone()]);
    thread_reply(&charlie, &room_id, &root, "charlie joins in").await;
    assert_eq!(threads(&bob, "").await, [root.clone(), second_root.clone()]);
    assert_eq!(
        threads(&alice, "?include=participated").await,
        [root.as_str()]
    );
    assert_eq!(
        threads(&charlie, "?include=participated").await,
        [root.as_str()]
    );

    // Paging one thread at a time.
    let first = bob
        .client
        .get(&v1_room_path(&room_id, "threads?limit=1"))
        .await
        .ok();
    assert_eq!(ids(chunk(&first)), [root.as_str()]);
    assert_eq!(
        chunk(&first)[0]["unsigned"]["m.relations"]["m.thread"]["count"],
        3,
        "thread roots come with their aggregations"
    );
    let next = first["next_batch"].as_str().expect("a next_batch");
    let second = bob
        .client
        .get(&v1_room_path(
            &room_id,
            &format!("threads?limit=1&from={}", enc(next)),
        ))
        .await
        .ok();
    assert_eq!(ids(chunk(&second)), [second_root.as_str()]);

    bob.client
        .get(&v1_room_path(&room_id, "threads?include=some"))
        .await
        .assert_status(400);
    let outsider = register(&server, "dave").await;
    let private = alice.create_room(json!({ "preset": "private_chat" })).await;
    outsider
        .client
        .get(&v1_room_path(&private, "threads"))
        .await
        .assert_error(403, "M_FORBIDDEN");

    // Redacted replies do not count.
    redact(
        &charlie,
        &room_id,
        &chunk_last_reply(&bob, &room_id, &root).await,
    )
    .await;
    let served = event(&bob, &room_id, &root).await;
    assert_eq!(served["unsigned"]["m.relations"]["m.thread"]["count"], 2);
    assert_eq!(
        served["unsigned"]["m.relations"]["m.thread"]["latest_event"]["event_id"],
        alice_reply.as_str()
    );

    // Replies of ignored users are left out of the summary.
    alice
        .client
        .put(
            &format!(
                "/_matrix/client/v3/user/{}/account_data/m.ignored_user_list",
                enc(&alice.user_id)
            ),
            json!({ "ignored_users": { bob.user_id.as_str(): {} } }),
        )
        .await
        .assert_status(200);
    let for_alice = event(&alice, &room_id, &root).await;
    assert_eq!(for_alice["unsigned"]["m.relations"]["m.thread"]["count"], 1);
}

/// The newest event of a thread, by `/relations`.
async fn chunk_last_reply(user: &User, room_id: &str, root: &str) -> String {
    relation_ids(user, room_id, root, "/m.thread?limit=1")
        .await
        .remove(0)
}

#[tokio::test]
async fn references_are_bundled() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = room_with_bob(&server).await;
    let target = alice.send_text(&room_id, "referenced").await;
    let mut references = Vec::new();
    for user in [&alice, &bob] {
        references.push(
            send(
                user,
                &room_id,
                "m.room.message",
                json!({
                    "msgtype": "m.text",
                    "body": "see above",
                    "m.relates_to": { "rel_type": "m.reference", "event_id": target },
                }),
            )
            .await,
        );
    }
    let served = event(&bob, &room_id, &target).await;
    let chunk_ids: Vec<String> = served["unsigned"]["m.relations"]["m.reference"]["chunk"]
        .as_array()
        .expect("a reference chunk")
        .iter()
        .map(|r| r["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(chunk_ids, references);
    // No other aggregation appears without children of that kind.
    let relations = served["unsigned"]["m.relations"].as_object().unwrap();
    assert_eq!(relations.len(), 1, "{served}");
    let plain = alice.send_text(&room_id, "nothing points here").await;
    assert!(
        event(&bob, &room_id, &plain).await["unsigned"]
            .get("m.relations")
            .is_none()
    );
}

#[tokio::test]
async fn context_surrounds_an_event() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = room_with_bob(&server).await;
    let mut messages = Vec::new();
    for i in 0..6 {
        let sender = if i % 2 == 0 { &alice } else { &bob };
        messages.push(sender.send_text(&room_id, &format!("m{i}")).await);
        // Reactions between the messages, which the filter below leaves out.
        react(&alice, &room_id, &messages[i], "👀").await;
    }
    let edit_id = edit(&alice, &room_id, &messages[2], "m2, edited").await;

    let filter = enc(&json!({ "not_types": ["m.reaction"] }).to_string());
    let context_path = |event_id: &str, query: String| {
        room_path(&room_id, &format!("context/{}?{query}", enc(event_id)))
    };
    let body = bob
        .client
        .get(&context_path(
            &messages[2],
            format!("limit=4&filter={filter}"),
        ))
        .await
        .ok();
    assert_eq!(body["event"]["event_id"], messages[2].as_str());
    assert_eq!(
        body["event"]["unsigned"]["m.relations"]["m.replace"]["event_id"],
        edit_id.as_str(),
        "the event has its aggregations"
    );
    assert_eq!(
        ids(body["events_before"].as_array().unwrap()),
        [messages[1].clone(), messages[0].clone()]
    );
    assert_eq!(
        ids(body["events_after"].as_array().unwrap()),
        [messages[3].clone(), messages[4].clone()]
    );
    // Without lazy loading the state is the whole room state.
    let state = body["state"].as_array().expect("state");
    assert!(state.iter().any(|e| e["type"] == "m.room.create"));

    // The tokens page on from the edges.
    let start = body["start"].as_str().unwrap();
    let end = body["end"].as_str().unwrap();
    let after = bob
        .messages(
            &room_id,
            &format!("dir=f&limit=20&from={}&filter={filter}", enc(end)),
        )
        .await;
    assert_eq!(
        ids(chunk(&after))[..2],
        [messages[5].clone(), edit_id.clone()]
    );
    let before = bob
        .messages(
            &room_id,
            &format!("dir=b&limit=20&from={}&filter={filter}", enc(start)),
        )
        .await;
    assert!(
        chunk(&before).iter().all(|e| e["type"] != "m.room.message"),
        "nothing older than m0 is a message: {before}"
    );
    assert_eq!(chunk(&before)[0]["type"], "m.room.member");

    // Lazy-loaded members: those of the senders shown.
    let lazy = enc(&json!({ "lazy_load_members": true, "not_types": ["m.reaction"] }).to_string());
    let body = bob
        .client
        .get(&context_path(
            &messages[2],
            format!("limit=2&filter={lazy}"),
        ))
        .await
        .ok();
    let mut members: Vec<&str> = body["state"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["type"], "m.room.member");
            e["state_key"].as_str().unwrap()
        })
        .collect();
    members.sort_unstable();
    let mut expected = vec![alice.user_id.as_str(), bob.user_id.as_str()];
    expected.sort_unstable();
    assert_eq!(members, expected);

    // The default limit; no filter: reactions surround the event.
    let body = bob
        .client
        .get(&context_path(&messages[2], String::new()))
        .await
        .ok();
    assert_eq!(body["events_before"].as_array().unwrap().len(), 5);
    assert_eq!(body["events_after"][0]["type"], "m.reaction");

    bob.client
        .get(&context_path("$unknown:localhost", String::new()))
        .await
        .assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn timestamp_to_event_finds_the_closest_visible_event() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = room_with_bob(&server).await;
    let mut sent = Vec::new();
    for i in 0..4 {
        let id = alice.send_text(&room_id, &format!("t{i}")).await;
        let ts = event(&bob, &room_id, &id).await["origin_server_ts"]
            .as_u64()
            .unwrap();
        sent.push((id, ts));
    }
    // Every event of the room, in timeline order, with its timestamp.
    let all = bob.messages(&room_id, "dir=f&limit=100").await;
    let timeline: Vec<(String, u64)> = chunk(&all)
        .iter()
        .map(|e| {
            (
                e["event_id"].as_str().unwrap().to_owned(),
                e["origin_server_ts"].as_u64().unwrap(),
            )
        })
        .collect();
    let lookup = |ts: u64, dir: &str| {
        let path = v1_room_path(&room_id, &format!("timestamp_to_event?ts={ts}&dir={dir}"));
        let client = bob.client.clone();
        async move { client.get(&path).await }
    };

    let (_, target_ts) = &sent[2];
    let forward = lookup(*target_ts, "f").await.ok();
    let expected = timeline.iter().find(|(_, ts)| ts >= target_ts).unwrap();
    assert_eq!(forward["event_id"], expected.0.as_str(), "{forward}");
    assert_eq!(forward["origin_server_ts"], expected.1);
    let backward = lookup(*target_ts, "b").await.ok();
    let expected = timeline
        .iter()
        .rev()
        .find(|(_, ts)| ts <= target_ts)
        .unwrap();
    assert_eq!(backward["event_id"], expected.0.as_str(), "{backward}");

    // Beyond either end there is nothing.
    let (_, last_ts) = sent.last().unwrap();
    lookup(last_ts + 60_000, "f")
        .await
        .assert_error(404, "M_NOT_FOUND");
    lookup(1, "b").await.assert_error(404, "M_NOT_FOUND");
    let newest = lookup(last_ts + 60_000, "b").await.ok();
    assert_eq!(newest["event_id"], timeline.last().unwrap().0.as_str());

    // Bad parameters and outsiders.
    bob.client
        .get(&v1_room_path(&room_id, "timestamp_to_event?dir=f"))
        .await
        .assert_status(400);
    lookup(*target_ts, "x").await.assert_status(400);
    let charlie = register(&server, "charlie").await;
    let private = alice.create_room(json!({ "preset": "private_chat" })).await;
    alice.send_text(&private, "secret").await;
    charlie
        .client
        .get(&v1_room_path(
            &private,
            &format!("timestamp_to_event?ts={target_ts}&dir=b"),
        ))
        .await
        .assert_error(403, "M_FORBIDDEN");
}

/// Spec: "Threading" — a thread cannot start from an event that itself has a relation
/// (400 `M_UNKNOWN`); a reply is not a relation, so it can be a thread root.
#[tokio::test]
async fn threads_cannot_start_from_events_with_relations() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = room_with_bob(&server).await;
    let original = alice.send_text(&room_id, "original").await;
    let edited = edit(&alice, &room_id, &original, "edited").await;
    let thread_reply = |root: &str| {
        json!({
            "msgtype": "m.text",
            "body": "in thread",
            "m.relates_to": { "rel_type": "m.thread", "event_id": root },
        })
    };
    bob.send_event(&room_id, "m.room.message", thread_reply(&edited))
        .await
        .assert_error(400, "M_UNKNOWN");
    let reply = send(
        &alice,
        &room_id,
        "m.room.message",
        json!({
            "msgtype": "m.text",
            "body": "a reply",
            "m.relates_to": { "m.in_reply_to": { "event_id": original } },
        }),
    )
    .await;
    bob.send_event(&room_id, "m.room.message", thread_reply(&reply))
        .await
        .assert_status(200);
    bob.send_event(&room_id, "m.room.message", thread_reply(&original))
        .await
        .assert_status(200);
}

/// A thread summary's `latest_event` is one the reader may see (spec: "History visibility"): a
/// user who left sees the latest reply from before they left, and no summary of a thread all of
/// whose replies came after.
#[tokio::test]
async fn thread_summaries_show_only_replies_the_reader_may_see() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = room_with_bob(&server).await;
    let root = send(
        &alice,
        &room_id,
        "m.room.message",
        json!({ "msgtype": "m.text", "body": "root" }),
    )
    .await;
    let other_root = send(
        &alice,
        &room_id,
        "m.room.message",
        json!({ "msgtype": "m.text", "body": "other root" }),
    )
    .await;
    let before = thread_reply(&bob, &room_id, &root, "before bob left").await;
    bob.leave_room(&room_id).await;
    let after = thread_reply(&alice, &room_id, &root, "after bob left").await;
    thread_reply(&alice, &room_id, &other_root, "only after bob left").await;

    let for_alice = event(&alice, &room_id, &root).await;
    let thread = &for_alice["unsigned"]["m.relations"]["m.thread"];
    assert_eq!(
        thread["latest_event"]["event_id"],
        after.as_str(),
        "{for_alice}"
    );
    assert_eq!(thread["count"], 2);

    let for_bob = event(&bob, &room_id, &root).await;
    let thread = &for_bob["unsigned"]["m.relations"]["m.thread"];
    assert_eq!(
        thread["latest_event"]["event_id"],
        before.as_str(),
        "{for_bob}"
    );
    assert_eq!(thread["latest_event"]["content"]["body"], "before bob left");
    assert_eq!(thread["current_user_participated"], true);

    let for_bob = event(&bob, &room_id, &other_root).await;
    assert!(
        for_bob["unsigned"]["m.relations"]["m.thread"].is_null(),
        "{for_bob}"
    );
}
