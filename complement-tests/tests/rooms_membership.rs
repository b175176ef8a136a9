//! Membership: join (by ID through both endpoints), join rules public / invite / knock /
//! restricted, invite, leave (and rejecting an invite), kick, ban and unban, forget,
//! `GET /joined_rooms`, `GET /rooms/{roomId}/members` with `membership`, `not_membership` and
//! `at`, `GET /rooms/{roomId}/joined_members`, and profile changes reaching joined rooms.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use complement_tests::rooms::{chunk, room_path, state_path, text};
use complement_tests::{Response, TestServer, User, V3, Value, enc, json, wait_until};

const PASSWORD: &str = "rooms-membership-pw";

async fn register(server: &TestServer, name: &str) -> User {
    server.client().register(name, PASSWORD).await
}

async fn post(user: &User, room_id: &str, action: &str, body: Value) -> Response {
    user.client.post(&room_path(room_id, action), body).await
}

/// `POST /join/{roomIdOrAlias}`.
async fn join_by_id_or_alias(user: &User, room: &str, body: Value) -> Response {
    user.client
        .post(&format!("{V3}/join/{}", enc(room)), body)
        .await
}

/// The member events of `GET /rooms/{roomId}/members?{query}` as user ID -> membership.
async fn members(user: &User, room_id: &str, query: &str) -> BTreeMap<String, String> {
    let path = if query.is_empty() {
        room_path(room_id, "members")
    } else {
        room_path(room_id, &format!("members?{query}"))
    };
    let body = user.client.get(&path).await.ok();
    chunk(&body)
        .iter()
        .map(|e| {
            assert_eq!(e["type"], "m.room.member", "{e}");
            assert_eq!(e["room_id"], room_id, "{e}");
            (
                e["state_key"]
                    .as_str()
                    .unwrap_or_else(|| panic!("member event without state_key: {e}"))
                    .to_owned(),
                e["content"]["membership"]
                    .as_str()
                    .unwrap_or_else(|| panic!("member event without membership: {e}"))
                    .to_owned(),
            )
        })
        .collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

async fn set_power(alice: &User, room_id: &str, user_id: &str, level: i64) {
    let mut power_levels = alice
        .state_content(room_id, "m.room.power_levels", "")
        .await;
    power_levels["users"][user_id] = json!(level);
    alice
        .put_state(room_id, "m.room.power_levels", "", power_levels)
        .await
        .assert_status(200);
}

#[tokio::test]
async fn join_public_room_through_both_endpoints() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let carol = register(&server, "carol").await;
    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;

    let body = join_by_id_or_alias(&bob, &room_id, json!({ "reason": "hi all" }))
        .await
        .ok();
    assert_eq!(body["room_id"], room_id.as_str(), "{body}");
    let body = post(&carol, &room_id, "join", json!({})).await.ok();
    assert_eq!(body["room_id"], room_id.as_str(), "{body}");

    let content = alice
        .state_content(&room_id, "m.room.member", &bob.user_id)
        .await;
    assert_eq!(content["membership"], "join", "{content}");
    // joining.yaml: `reason` goes on the membership event.
    assert_eq!(content["reason"], "hi all", "{content}");
    assert_eq!(
        members(&alice, &room_id, "").await,
        map(&[
            (&alice.user_id, "join"),
            (&bob.user_id, "join"),
            (&carol.user_id, "join"),
        ])
    );
    assert_eq!(bob.joined_rooms().await, vec![room_id.clone()]);
    // Joining again while joined is harmless.
    post(&bob, &room_id, "join", json!({}))
        .await
        .assert_status(200);
    assert_eq!(
        alice.membership_of(&room_id, &bob.user_id).await.as_deref(),
        Some("join")
    );
    bob.send_text(&room_id, "now a member").await;
}

#[tokio::test]
async fn joining_an_unknown_room_fails() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let unknown = format!("!nosuchroom:{}", server.server_name());
    // Synapse: 404 when no server is known to be in the room.
    let resp = join_by_id_or_alias(&alice, &unknown, json!({})).await;
    assert_eq!(resp.status, 404, "{resp}");
    assert!(resp.errcode().is_some(), "{resp}");
    let resp = post(&alice, &unknown, "join", json!({})).await;
    assert_eq!(resp.status, 404, "{resp}");
    assert!(alice.joined_rooms().await.is_empty());
}

#[tokio::test]
async fn invite_only_room_needs_an_invite() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let carol = register(&server, "carol").await;
    let room_id = alice.create_room(json!({ "preset": "private_chat" })).await;

    // joining.yaml 403: "The room is invite-only and the user was not invited."
    post(&carol, &room_id, "join", json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    join_by_id_or_alias(&carol, &room_id, json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");

    post(
        &alice,
        &room_id,
        "invite",
        json!({ "user_id": bob.user_id, "reason": "come along" }),
    )
    .await
    .assert_status(200);
    let invite = alice
        .state_content(&room_id, "m.room.member", &bob.user_id)
        .await;
    assert_eq!(invite["membership"], "invite", "{invite}");
    assert_eq!(invite["reason"], "come along", "{invite}");
    assert_eq!(
        members(&alice, &room_id, "").await,
        map(&[(&alice.user_id, "join"), (&bob.user_id, "invite")])
    );

    bob.join_room(&room_id).await;
    assert_eq!(
        alice.membership_of(&room_id, &bob.user_id).await.as_deref(),
        Some("join")
    );
    // Carol still cannot, and a non-member cannot invite her.
    post(&carol, &room_id, "join", json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    let dave = register(&server, "dave").await;
    post(
        &dave,
        &room_id,
        "invite",
        json!({ "user_id": carol.user_id }),
    )
    .await
    .assert_error(403, "M_FORBIDDEN");
    assert_eq!(alice.membership_of(&room_id, &carol.user_id).await, None);
}

#[tokio::test]
async fn invite_rules() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let carol = register(&server, "carol").await;
    let room_id = alice
        .create_room(json!({
            "preset": "public_chat",
            "power_level_content_override": { "invite": 50 },
        }))
        .await;
    bob.join_room(&room_id).await;

    // Auth rule 5.4.4: the sender needs the invite level.
    post(
        &bob,
        &room_id,
        "invite",
        json!({ "user_id": carol.user_id }),
    )
    .await
    .assert_error(403, "M_FORBIDDEN");
    assert_eq!(alice.membership_of(&room_id, &carol.user_id).await, None);
    // Auth rule 5.4.3: a joined user cannot be invited.
    post(
        &alice,
        &room_id,
        "invite",
        json!({ "user_id": bob.user_id }),
    )
    .await
    .assert_error(403, "M_FORBIDDEN");
    assert_eq!(
        alice.membership_of(&room_id, &bob.user_id).await.as_deref(),
        Some("join")
    );
    // A body without user_id is malformed.
    post(&alice, &room_id, "invite", json!({}))
        .await
        .assert_error_in(400, &["M_BAD_JSON", "M_MISSING_PARAM"]);
    // With the level, it works.
    set_power(&alice, &room_id, &bob.user_id, 50).await;
    post(
        &bob,
        &room_id,
        "invite",
        json!({ "user_id": carol.user_id }),
    )
    .await
    .assert_status(200);
    assert_eq!(
        alice
            .membership_of(&room_id, &carol.user_id)
            .await
            .as_deref(),
        Some("invite")
    );
}

#[tokio::test]
async fn leave_and_reject_invite() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let carol = register(&server, "carol").await;
    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join_room(&room_id).await;

    post(&bob, &room_id, "leave", json!({ "reason": "bye" }))
        .await
        .assert_status(200);
    let content = alice
        .state_content(&room_id, "m.room.member", &bob.user_id)
        .await;
    assert_eq!(content["membership"], "leave", "{content}");
    assert_eq!(content["reason"], "bye", "{content}");
    assert!(bob.joined_rooms().await.is_empty());
    bob.send_event(&room_id, "m.room.message", text("still here?"))
        .await
        .assert_error(403, "M_FORBIDDEN");
    // A public room may be joined again.
    bob.join_room(&room_id).await;
    assert_eq!(bob.joined_rooms().await, vec![room_id.clone()]);

    // leaving.yaml: leaving a room one is invited to rejects the invite.
    alice.invite_user(&room_id, &carol.user_id).await;
    carol.leave_room(&room_id).await;
    assert_eq!(
        alice
            .membership_of(&room_id, &carol.user_id)
            .await
            .as_deref(),
        Some("leave")
    );
    assert!(carol.joined_rooms().await.is_empty());

    // Auth rule 5.5.1: leaving a room one never was in is refused.
    let dave = register(&server, "dave").await;
    post(&dave, &room_id, "leave", json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    assert_eq!(alice.membership_of(&room_id, &dave.user_id).await, None);
}

#[tokio::test]
async fn kick_with_reason() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let carol = register(&server, "carol").await;
    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join_room(&room_id).await;
    carol.join_room(&room_id).await;

    // Bob (0) is below the kick level (50).
    post(&bob, &room_id, "kick", json!({ "user_id": carol.user_id }))
        .await
        .assert_error(403, "M_FORBIDDEN");
    assert_eq!(
        alice
            .membership_of(&room_id, &carol.user_id)
            .await
            .as_deref(),
        Some("join")
    );

    post(
        &alice,
        &room_id,
        "kick",
        json!({ "user_id": bob.user_id, "reason": "Telling unfunny jokes" }),
    )
    .await
    .assert_status(200);
    // kicking.yaml: "adjusts the target member's membership state to be leave with an
    // optional reason".
    let path = format!(
        "{}?format=event",
        state_path(&room_id, "m.room.member", &bob.user_id)
    );
    let event = alice.client.get(&path).await.ok();
    assert_eq!(event["content"]["membership"], "leave", "{event}");
    assert_eq!(
        event["content"]["reason"], "Telling unfunny jokes",
        "{event}"
    );
    assert_eq!(event["sender"], alice.user_id.as_str(), "{event}");
    assert!(bob.joined_rooms().await.is_empty());
    bob.send_event(&room_id, "m.room.message", text("kicked"))
        .await
        .assert_error(403, "M_FORBIDDEN");
    // A kicked user may rejoin a public room.
    bob.join_room(&room_id).await;
}

#[tokio::test]
async fn kicked_user_needs_a_new_invite_for_an_invite_only_room() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room_id = alice
        .create_room(json!({ "preset": "private_chat", "invite": [bob.user_id] }))
        .await;
    bob.join_room(&room_id).await;
    post(&alice, &room_id, "kick", json!({ "user_id": bob.user_id }))
        .await
        .assert_status(200);
    post(&bob, &room_id, "join", json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    alice.invite_user(&room_id, &bob.user_id).await;
    bob.join_room(&room_id).await;
}

#[tokio::test]
async fn v12_creator_cannot_be_kicked_or_banned() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join_room(&room_id).await;
    // Bob gets the highest level a power_levels event can give; the creator's is infinite.
    set_power(&alice, &room_id, &bob.user_id, 100).await;
    post(&bob, &room_id, "kick", json!({ "user_id": alice.user_id }))
        .await
        .assert_error(403, "M_FORBIDDEN");
    post(&bob, &room_id, "ban", json!({ "user_id": alice.user_id }))
        .await
        .assert_error(403, "M_FORBIDDEN");
    assert_eq!(
        bob.membership_of(&room_id, &alice.user_id).await.as_deref(),
        Some("join")
    );
    // The creator can kick Bob despite his 100.
    post(&alice, &room_id, "kick", json!({ "user_id": bob.user_id }))
        .await
        .assert_status(200);
}

#[tokio::test]
async fn ban_and_unban() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let carol = register(&server, "carol").await;
    let dave = register(&server, "dave").await;
    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join_room(&room_id).await;
    carol.join_room(&room_id).await;

    post(&carol, &room_id, "ban", json!({ "user_id": bob.user_id }))
        .await
        .assert_error(403, "M_FORBIDDEN");
    post(
        &alice,
        &room_id,
        "ban",
        json!({ "user_id": bob.user_id, "reason": "spam" }),
    )
    .await
    .assert_status(200);
    let content = alice
        .state_content(&room_id, "m.room.member", &bob.user_id)
        .await;
    assert_eq!(content["membership"], "ban", "{content}");
    assert_eq!(content["reason"], "spam", "{content}");
    assert!(bob.joined_rooms().await.is_empty());

    // banning.yaml: a banned user "may not join it or be invited to it until they are
    // unbanned".
    post(&bob, &room_id, "join", json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    post(
        &alice,
        &room_id,
        "invite",
        json!({ "user_id": bob.user_id }),
    )
    .await
    .assert_error(403, "M_FORBIDDEN");
    bob.send_event(&room_id, "m.room.message", text("banned"))
        .await
        .assert_error(403, "M_FORBIDDEN");
    // Someone who never was in the room can be banned too.
    post(&alice, &room_id, "ban", json!({ "user_id": dave.user_id }))
        .await
        .assert_status(200);
    post(&dave, &room_id, "join", json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");

    // Unban needs the power too; afterwards the user has left and may join again.
    post(&carol, &room_id, "unban", json!({ "user_id": bob.user_id }))
        .await
        .assert_error(403, "M_FORBIDDEN");
    post(
        &alice,
        &room_id,
        "unban",
        json!({ "user_id": bob.user_id, "reason": "second chance" }),
    )
    .await
    .assert_status(200);
    let content = alice
        .state_content(&room_id, "m.room.member", &bob.user_id)
        .await;
    assert_eq!(content["membership"], "leave", "{content}");
    assert_eq!(content["reason"], "second chance", "{content}");
    bob.join_room(&room_id).await;
    assert_eq!(
        alice
            .membership_of(&room_id, &dave.user_id)
            .await
            .as_deref(),
        Some("ban")
    );
}

#[tokio::test]
async fn knock_then_invite_then_join() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let carol = register(&server, "carol").await;
    let room_id = alice
        .create_room(json!({
            "preset": "private_chat",
            "initial_state": [
                { "type": "m.room.join_rules", "content": { "join_rule": "knock" } },
            ],
        }))
        .await;
    let knock_path = format!("{V3}/knock/{}", enc(&room_id));

    // A knock room still needs an invite to join.
    post(&bob, &room_id, "join", json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    let body = bob
        .client
        .post(&knock_path, json!({ "reason": "let me in" }))
        .await
        .ok();
    assert_eq!(body["room_id"], room_id.as_str(), "{body}");
    let content = alice
        .state_content(&room_id, "m.room.member", &bob.user_id)
        .await;
    assert_eq!(content["membership"], "knock", "{content}");
    assert_eq!(content["reason"], "let me in", "{content}");
    assert_eq!(
        members(&alice, &room_id, "membership=knock").await,
        map(&[(&bob.user_id, "knock")])
    );
    assert!(bob.joined_rooms().await.is_empty());

    // "Users who are currently in the room, already invited, or banned cannot knock".
    alice
        .client
        .post(&knock_path, json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");

    // Accepting the knock is an invite; then Bob joins.
    alice.invite_user(&room_id, &bob.user_id).await;
    assert_eq!(
        alice.membership_of(&room_id, &bob.user_id).await.as_deref(),
        Some("invite")
    );
    bob.client
        .post(&knock_path, json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    bob.join_room(&room_id).await;
    assert_eq!(bob.joined_rooms().await, vec![room_id.clone()]);

    // A knock can be retracted by leaving.
    carol
        .client
        .post(&knock_path, json!({}))
        .await
        .assert_status(200);
    carol.leave_room(&room_id).await;
    assert_eq!(
        alice
            .membership_of(&room_id, &carol.user_id)
            .await
            .as_deref(),
        Some("leave")
    );
}

#[tokio::test]
async fn knock_is_refused_unless_the_join_rule_allows_it() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let invite_only = alice.create_room(json!({ "preset": "private_chat" })).await;
    // Auth rule 5.7.1: knocking needs join rule knock or knock_restricted.
    bob.client
        .post(&format!("{V3}/knock/{}", enc(&invite_only)), json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    assert_eq!(alice.membership_of(&invite_only, &bob.user_id).await, None);

    // A banned user cannot knock either.
    let knock_room = alice
        .create_room(json!({
            "initial_state": [
                { "type": "m.room.join_rules", "content": { "join_rule": "knock" } },
            ],
        }))
        .await;
    post(
        &alice,
        &knock_room,
        "ban",
        json!({ "user_id": bob.user_id }),
    )
    .await
    .assert_status(200);
    bob.client
        .post(&format!("{V3}/knock/{}", enc(&knock_room)), json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    assert_eq!(
        alice
            .membership_of(&knock_room, &bob.user_id)
            .await
            .as_deref(),
        Some("ban")
    );
}

#[tokio::test]
async fn restricted_room_admits_members_of_the_allowed_room() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let carol = register(&server, "carol").await;
    let dave = register(&server, "dave").await;
    let space = alice.create_room(json!({ "preset": "public_chat" })).await;
    let restricted = alice
        .create_room(json!({
            "initial_state": [{
                "type": "m.room.join_rules",
                "content": {
                    "join_rule": "restricted",
                    "allow": [{ "type": "m.room_membership", "room_id": space }],
                },
            }],
        }))
        .await;
    bob.join_room(&space).await;

    // "Restricted rooms": a joined member of an allowed room may join...
    bob.join_room(&restricted).await;
    let content = alice
        .state_content(&restricted, "m.room.member", &bob.user_id)
        .await;
    assert_eq!(content["membership"], "join", "{content}");
    // ... authorised by a local user able to invite (auth rule 5.3.5.2): here only Alice.
    assert_eq!(
        content["join_authorised_via_users_server"],
        alice.user_id.as_str(),
        "{content}"
    );

    // Others may not.
    post(&carol, &restricted, "join", json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    assert_eq!(alice.membership_of(&restricted, &carol.user_id).await, None);
    // Membership must be a join: an invite to the allowed room is not enough.
    alice.invite_user(&space, &carol.user_id).await;
    post(&carol, &restricted, "join", json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");
    // "If the user has an invite to the room then the restrictions will not affect them."
    alice.invite_user(&restricted, &dave.user_id).await;
    dave.join_room(&restricted).await;
    assert_eq!(
        members(&alice, &restricted, "membership=join")
            .await
            .into_keys()
            .collect::<BTreeSet<_>>(),
        [&alice.user_id, &bob.user_id, &dave.user_id]
            .into_iter()
            .cloned()
            .collect::<BTreeSet<_>>()
    );
}

#[tokio::test]
async fn forget_after_leaving() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join_room(&room_id).await;
    bob.send_text(&room_id, "remember me").await;

    // leaving.yaml: "If the user is currently joined to the room, they must leave the room
    // before calling this API" (400, M_UNKNOWN in the spec's example and in Synapse).
    post(&bob, &room_id, "forget", json!({}))
        .await
        .assert_error(400, "M_UNKNOWN");
    bob.send_text(&room_id, "still joined").await;

    bob.leave_room(&room_id).await;
    // Still allowed to read what they saw before forgetting.
    bob.messages(&room_id, "dir=b&limit=5").await;
    let body = post(&bob, &room_id, "forget", json!({})).await.ok();
    assert_eq!(body, json!({}));
    // "After this API is called, however, a user will no longer be able to retrieve history
    // for this room."
    bob.client
        .get(&room_path(&room_id, "messages?dir=b&limit=5"))
        .await
        .assert_error(403, "M_FORBIDDEN");
    assert!(bob.joined_rooms().await.is_empty());
    // The room itself is unaffected, and Bob may come back.
    alice.send_text(&room_id, "still here").await;
    bob.join_room(&room_id).await;
    bob.messages(&room_id, "dir=b&limit=5").await;
}

#[tokio::test]
async fn joined_rooms_lists_only_joined_rooms() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    assert!(bob.joined_rooms().await.is_empty());
    let own = bob.create_room(json!({})).await;
    let joined = alice.create_room(json!({ "preset": "public_chat" })).await;
    let left = alice.create_room(json!({ "preset": "public_chat" })).await;
    let invited = alice.create_room(json!({ "invite": [bob.user_id] })).await;
    let banned = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join_room(&joined).await;
    bob.join_room(&left).await;
    bob.leave_room(&left).await;
    bob.join_room(&banned).await;
    post(&alice, &banned, "ban", json!({ "user_id": bob.user_id }))
        .await
        .assert_status(200);

    let mut got = bob.joined_rooms().await;
    got.sort();
    let mut want = vec![own, joined];
    want.sort();
    assert_eq!(got, want, "invited {invited}, left {left}, banned {banned}");
    server
        .client()
        .get(&format!("{V3}/joined_rooms"))
        .await
        .assert_error(401, "M_MISSING_TOKEN");
}

/// A room with one member in each membership state: Alice and Bob joined, Carol invited,
/// Dave left, Eve banned.
struct Crowd {
    alice: User,
    bob: User,
    carol: User,
    dave: User,
    eve: User,
    room_id: String,
}

async fn crowd(server: &TestServer) -> Crowd {
    let alice = register(server, "alice").await;
    let bob = register(server, "bob").await;
    let carol = register(server, "carol").await;
    let dave = register(server, "dave").await;
    let eve = register(server, "eve").await;
    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join_room(&room_id).await;
    alice.invite_user(&room_id, &carol.user_id).await;
    dave.join_room(&room_id).await;
    dave.leave_room(&room_id).await;
    eve.join_room(&room_id).await;
    post(&alice, &room_id, "ban", json!({ "user_id": eve.user_id }))
        .await
        .assert_status(200);
    Crowd {
        alice,
        bob,
        carol,
        dave,
        eve,
        room_id,
    }
}

#[tokio::test]
async fn members_filters_by_membership() {
    let server = TestServer::start().await;
    let Crowd {
        alice,
        bob,
        carol,
        dave,
        eve,
        room_id,
    } = crowd(&server).await;
    let (a, b, c, d, e) = (
        alice.user_id.as_str(),
        bob.user_id.as_str(),
        carol.user_id.as_str(),
        dave.user_id.as_str(),
        eve.user_id.as_str(),
    );

    assert_eq!(
        members(&bob, &room_id, "").await,
        map(&[
            (a, "join"),
            (b, "join"),
            (c, "invite"),
            (d, "leave"),
            (e, "ban")
        ])
    );
    assert_eq!(
        members(&bob, &room_id, "membership=join").await,
        map(&[(a, "join"), (b, "join")])
    );
    assert_eq!(
        members(&bob, &room_id, "membership=invite").await,
        map(&[(c, "invite")])
    );
    assert_eq!(
        members(&bob, &room_id, "membership=leave").await,
        map(&[(d, "leave")])
    );
    assert_eq!(
        members(&bob, &room_id, "membership=ban").await,
        map(&[(e, "ban")])
    );
    assert_eq!(
        members(&bob, &room_id, "not_membership=leave").await,
        map(&[(a, "join"), (b, "join"), (c, "invite"), (e, "ban")])
    );
    assert_eq!(
        members(&bob, &room_id, "not_membership=join").await,
        map(&[(c, "invite"), (d, "leave"), (e, "ban")])
    );
}

#[tokio::test]
async fn members_and_joined_members_are_for_members_only() {
    let server = TestServer::start().await;
    let Crowd {
        alice,
        carol,
        dave,
        room_id,
        ..
    } = crowd(&server).await;
    let mallory = register(&server, "mallory").await;
    // Neither a stranger nor someone merely invited is a member.
    for user in [&mallory, &carol] {
        user.client
            .get(&room_path(&room_id, "members"))
            .await
            .assert_error(403, "M_FORBIDDEN");
        user.client
            .get(&room_path(&room_id, "joined_members"))
            .await
            .assert_error(403, "M_FORBIDDEN");
    }

    // Frank joins after Dave left.
    let frank = register(&server, "frank").await;
    frank.join_room(&room_id).await;
    assert_eq!(
        alice
            .membership_of(&room_id, &frank.user_id)
            .await
            .as_deref(),
        Some("join")
    );
    // rooms.yaml: "If you have left the room then this will be the members of the room when
    // you left."
    let at_leave = members(&dave, &room_id, "").await;
    assert_eq!(
        at_leave.get(&dave.user_id).map(String::as_str),
        Some("leave"),
        "{at_leave:?}"
    );
    assert_eq!(
        at_leave.get(&alice.user_id).map(String::as_str),
        Some("join"),
        "{at_leave:?}"
    );
    assert!(!at_leave.contains_key(&frank.user_id), "{at_leave:?}");
    // joined_members needs a current membership (rooms.yaml: "You aren't a member").
    dave.client
        .get(&room_path(&room_id, "joined_members"))
        .await
        .assert_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn members_at_a_pagination_token() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let carol = register(&server, "carol").await;
    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join_room(&room_id).await;
    alice.send_text(&room_id, "checkpoint").await;

    // A token for "now": the `start` of a /messages request without `from`.
    let page = alice.messages(&room_id, "dir=b&limit=1").await;
    let token = page["start"]
        .as_str()
        .unwrap_or_else(|| panic!("no start token: {page}"))
        .to_owned();

    carol.join_room(&room_id).await;
    bob.leave_room(&room_id).await;

    // rooms.yaml `at`: "The point in time (pagination token) to return members for".
    assert_eq!(
        members(&alice, &room_id, &format!("at={}", enc(&token))).await,
        map(&[(&alice.user_id, "join"), (&bob.user_id, "join")])
    );
    assert_eq!(
        members(
            &alice,
            &room_id,
            &format!("at={}&membership=join", enc(&token))
        )
        .await,
        map(&[(&alice.user_id, "join"), (&bob.user_id, "join")])
    );
    assert_eq!(
        members(&alice, &room_id, "").await,
        map(&[
            (&alice.user_id, "join"),
            (&bob.user_id, "leave"),
            (&carol.user_id, "join"),
        ])
    );

    // A token from backwards pagination works too: the state before the checkpoint message
    // already had Bob joined and no Carol.
    let end = page["end"]
        .as_str()
        .unwrap_or_else(|| panic!("no end token: {page}"))
        .to_owned();
    assert_eq!(
        members(&alice, &room_id, &format!("at={}", enc(&end))).await,
        map(&[(&alice.user_id, "join"), (&bob.user_id, "join")])
    );
}

#[tokio::test]
async fn joined_members_has_display_names_and_avatars() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let carol = register(&server, "carol").await;
    let avatar = format!("mxc://{}/bobface", server.server_name());
    for (user, name) in [(&alice, "Alice A."), (&bob, "Bob B.")] {
        user.client
            .put(
                &format!("{V3}/profile/{}/displayname", enc(&user.user_id)),
                json!({ "displayname": name }),
            )
            .await
            .assert_status(200);
    }
    bob.client
        .put(
            &format!("{V3}/profile/{}/avatar_url", enc(&bob.user_id)),
            json!({ "avatar_url": avatar }),
        )
        .await
        .assert_status(200);
    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join_room(&room_id).await;
    carol.join_room(&room_id).await;
    // Invited and left users are not "joined".
    let dave = register(&server, "dave").await;
    alice.invite_user(&room_id, &dave.user_id).await;

    let body = carol
        .client
        .get(&room_path(&room_id, "joined_members"))
        .await
        .ok();
    let joined = body["joined"]
        .as_object()
        .unwrap_or_else(|| panic!("no joined object: {body}"));
    let ids: BTreeSet<&str> = joined.keys().map(String::as_str).collect();
    assert_eq!(
        ids,
        BTreeSet::from([
            alice.user_id.as_str(),
            bob.user_id.as_str(),
            carol.user_id.as_str()
        ]),
        "{body}"
    );
    assert_eq!(joined[&alice.user_id]["display_name"], "Alice A.", "{body}");
    assert_eq!(joined[&bob.user_id]["display_name"], "Bob B.", "{body}");
    assert_eq!(
        joined[&bob.user_id]["avatar_url"],
        avatar.as_str(),
        "{body}"
    );
    assert!(joined[&carol.user_id]["avatar_url"].is_null(), "{body}");

    // "When homeservers emit room membership events for their own users, they should include
    // the display name and avatar URL".
    let content = carol
        .state_content(&room_id, "m.room.member", &bob.user_id)
        .await;
    assert_eq!(content["displayname"], "Bob B.", "{content}");
    assert_eq!(content["avatar_url"], avatar.as_str(), "{content}");
}

#[tokio::test]
async fn profile_changes_reach_joined_rooms() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join_room(&room_id).await;
    bob.client
        .put(
            &format!("{V3}/profile/{}/displayname", enc(&bob.user_id)),
            json!({ "displayname": "Robert" }),
        )
        .await
        .assert_status(200);
    // "Events on Change of Profile Information": an m.room.member event is sent to every
    // room the user is a member of. Synapse does this in the background, hence the wait.
    wait_until(
        "Bob's new name in the room",
        Duration::from_secs(20),
        || async {
            let body = alice
                .client
                .get(&room_path(&room_id, "joined_members"))
                .await
                .ok();
            (body["joined"][&bob.user_id]["display_name"] == "Robert").then_some(())
        },
    )
    .await;
    let content = alice
        .state_content(&room_id, "m.room.member", &bob.user_id)
        .await;
    assert_eq!(content["membership"], "join", "{content}");
    assert_eq!(content["displayname"], "Robert", "{content}");
}
