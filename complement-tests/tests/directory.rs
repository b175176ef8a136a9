//! Room aliases (`/directory/room/{roomAlias}`, `/rooms/{roomId}/aliases`), the published room
//! directory (`/publicRooms`, `/directory/list/room/{roomId}`) and room summaries
//! (`/_matrix/client/v1/room_summary/{roomIdOrAlias}`).

use complement_tests::rooms::room_path;
use complement_tests::{Method, TestServer, User, V3, Value, enc, json};

const PASSWORD: &str = "directory-pw-1";

/// The content of the room's `event_type` state with the empty state key, if any, read from
/// `GET /rooms/{roomId}/state`.
async fn state_if_any(user: &User, room_id: &str, event_type: &str) -> Option<Value> {
    let events = user.client.get(&room_path(room_id, "state")).await.ok();
    events
        .as_array()
        .unwrap_or_else(|| panic!("GET /state is not an array: {events}"))
        .iter()
        .find(|e| e["type"] == event_type && e["state_key"] == "")
        .map(|e| e["content"].clone())
}

/// Like [`state_if_any`], asserting the state exists.
async fn state(user: &User, room_id: &str, event_type: &str) -> Value {
    state_if_any(user, room_id, event_type)
        .await
        .unwrap_or_else(|| panic!("no {event_type} in {room_id}"))
}

async fn register(server: &TestServer, name: &str) -> User {
    server.client().register(name, PASSWORD).await
}

async fn register_admin(server: &TestServer, name: &str) -> User {
    let client = server.client();
    let resp = client
        .admin_register(server.shared_secret(), name, PASSWORD, true)
        .await;
    client.user_from(&resp, PASSWORD)
}

fn alias_path(alias: &str) -> String {
    format!("{V3}/directory/room/{}", enc(alias))
}

fn listing_path(room_id: &str) -> String {
    format!("{V3}/directory/list/room/{}", enc(room_id))
}

fn summary_path(room: &str) -> String {
    format!("/_matrix/client/v1/room_summary/{}", enc(room))
}

/// The room IDs of a `/publicRooms` chunk, in order.
fn room_ids(body: &Value) -> Vec<String> {
    body["chunk"]
        .as_array()
        .unwrap_or_else(|| panic!("no chunk in {body}"))
        .iter()
        .map(|room| room["room_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn aliases_are_created_resolved_listed_and_deleted() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let room_id = alice.create_room(json!({})).await;
    let alias = format!("#cheese:{}", server.server_name());

    let body = alice
        .client
        .put(&alias_path(&alias), json!({ "room_id": room_id }))
        .await
        .ok();
    assert_eq!(body, json!({}));

    // Anyone may resolve it, even without an access token; this server comes first.
    let resolved = server.client().get(&alias_path(&alias)).await.ok();
    assert_eq!(resolved["room_id"], room_id.as_str(), "{resolved}");
    assert_eq!(resolved["servers"][0], server.server_name(), "{resolved}");

    let listed = alice.client.get(&room_path(&room_id, "aliases")).await.ok();
    assert_eq!(listed["aliases"], json!([alias]), "{listed}");

    // Taken: 409 M_UNKNOWN, also for the same room.
    alice
        .client
        .put(&alias_path(&alias), json!({ "room_id": room_id }))
        .await
        .assert_error(409, "M_UNKNOWN");

    alice
        .client
        .request(Method::DELETE, &alias_path(&alias), None)
        .await
        .assert_status(200);
    server
        .client()
        .get(&alias_path(&alias))
        .await
        .assert_error(404, "M_NOT_FOUND");
    alice
        .client
        .request(Method::DELETE, &alias_path(&alias), None)
        .await
        .assert_error(404, "M_NOT_FOUND");
    let listed = alice.client.get(&room_path(&room_id, "aliases")).await.ok();
    assert_eq!(listed["aliases"], json!([]), "{listed}");
}

#[tokio::test]
async fn alias_creation_is_refused_when_not_allowed() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let room_id = alice.create_room(json!({})).await;

    // Another server's alias.
    alice
        .client
        .put(
            &alias_path("#cheese:elsewhere.example"),
            json!({ "room_id": room_id }),
        )
        .await
        .assert_error(400, "M_INVALID_PARAM");
    // Not an alias at all.
    alice
        .client
        .put(&alias_path("cheese"), json!({ "room_id": room_id }))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    // Bob is not in the room.
    let alias = format!("#bobs:{}", server.server_name());
    bob.client
        .put(&alias_path(&alias), json!({ "room_id": room_id }))
        .await
        .assert_error(403, "M_FORBIDDEN");
    // A room that does not exist: nobody is in it.
    bob.client
        .put(
            &alias_path(&alias),
            json!({ "room_id": format!("!nowhere:{}", server.server_name()) }),
        )
        .await
        .assert_error(403, "M_FORBIDDEN");
    // Unknown aliases do not resolve.
    server
        .client()
        .get(&alias_path(&alias))
        .await
        .assert_error(404, "M_NOT_FOUND");
    // A remote alias is asked of its server; one that cannot be reached is a 502 naming it.
    let unreachable = server
        .client()
        .get(&alias_path("#someone:elsewhere.invalid"))
        .await;
    unreachable.assert_error(502, "M_UNKNOWN");
    assert!(
        unreachable.json["error"]
            .as_str()
            .is_some_and(|e| e.contains("elsewhere.invalid")),
        "{}",
        unreachable.json
    );
}

#[tokio::test]
async fn alias_deletion_needs_the_creator_a_moderator_or_an_admin() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let carol = register(&server, "carol").await;
    let admin = register_admin(&server, "admin").await;
    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join_room(&room_id).await;
    carol.join_room(&room_id).await;

    let bobs = format!("#bobs:{}", server.server_name());
    bob.client
        .put(&alias_path(&bobs), json!({ "room_id": room_id }))
        .await
        .assert_status(200);
    // Carol is an ordinary member: not hers to delete.
    carol
        .client
        .request(Method::DELETE, &alias_path(&bobs), None)
        .await
        .assert_error(403, "M_FORBIDDEN");
    // Alice (power 100) moderates the room.
    alice
        .client
        .request(Method::DELETE, &alias_path(&bobs), None)
        .await
        .assert_status(200);

    let carols = format!("#carols:{}", server.server_name());
    carol
        .client
        .put(&alias_path(&carols), json!({ "room_id": room_id }))
        .await
        .assert_status(200);
    // The creator may delete their own alias.
    carol
        .client
        .request(Method::DELETE, &alias_path(&carols), None)
        .await
        .assert_status(200);

    // A server admin may create and delete aliases without being in the room.
    let admins = format!("#admins:{}", server.server_name());
    admin
        .client
        .put(&alias_path(&admins), json!({ "room_id": room_id }))
        .await
        .assert_status(200);
    admin
        .client
        .request(Method::DELETE, &alias_path(&admins), None)
        .await
        .assert_status(200);
}

#[tokio::test]
async fn deleting_the_canonical_alias_updates_the_room() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let room_id = alice
        .create_room(json!({ "room_alias_name": "main" }))
        .await;
    let main = format!("#main:{}", server.server_name());
    let content = state(&alice, &room_id, "m.room.canonical_alias").await;
    assert_eq!(content, json!({ "alias": main }));

    alice
        .client
        .request(Method::DELETE, &alias_path(&main), None)
        .await
        .assert_status(200);
    let content = state(&alice, &room_id, "m.room.canonical_alias").await;
    assert_eq!(content, json!({}));
}

#[tokio::test]
async fn local_aliases_need_membership_or_world_readable_history() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let hidden = alice
        .create_room(json!({ "room_alias_name": "hidden" }))
        .await;
    bob.client
        .get(&room_path(&hidden, "aliases"))
        .await
        .assert_error(403, "M_FORBIDDEN");
    bob.client
        .get(&room_path(
            &format!("!unknown:{}", server.server_name()),
            "aliases",
        ))
        .await
        .assert_error(403, "M_FORBIDDEN");

    let readable = alice
        .create_room(json!({
            "room_alias_name": "readable",
            "initial_state": [{
                "type": "m.room.history_visibility",
                "content": { "history_visibility": "world_readable" },
            }],
        }))
        .await;
    let listed = bob.client.get(&room_path(&readable, "aliases")).await.ok();
    assert_eq!(
        listed["aliases"],
        json!([format!("#readable:{}", server.server_name())]),
        "{listed}"
    );
}

#[tokio::test]
async fn published_rooms_are_listed_with_their_details() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let avatar = format!("mxc://{}/avatar", server.server_name());
    let room_id = alice
        .create_room(json!({
            "visibility": "public",
            "preset": "public_chat",
            "name": "Cheese Lovers",
            "topic": "All about brie",
            "room_alias_name": "cheese",
            "initial_state": [
                { "type": "m.room.avatar", "content": { "url": avatar } },
                { "type": "m.room.history_visibility",
                  "content": { "history_visibility": "world_readable" } },
                { "type": "m.room.guest_access", "content": { "guest_access": "can_join" } },
            ],
        }))
        .await;
    let _private = alice.create_room(json!({ "name": "Secret" })).await;
    bob.join_room(&room_id).await;

    // GET works without an access token.
    let body = server.client().get(&format!("{V3}/publicRooms")).await.ok();
    assert_eq!(room_ids(&body), vec![room_id.clone()], "{body}");
    assert_eq!(body["total_room_count_estimate"], 1, "{body}");
    let entry = &body["chunk"][0];
    assert_eq!(entry["name"], "Cheese Lovers", "{entry}");
    assert_eq!(entry["topic"], "All about brie", "{entry}");
    assert_eq!(
        entry["canonical_alias"],
        format!("#cheese:{}", server.server_name())
    );
    assert_eq!(entry["num_joined_members"], 2, "{entry}");
    assert_eq!(entry["world_readable"], true, "{entry}");
    assert_eq!(entry["guest_can_join"], true, "{entry}");
    assert_eq!(entry["avatar_url"], avatar.as_str(), "{entry}");
    // `join_rule` defaults to public when absent.
    assert!(
        entry.get("join_rule").is_none() || entry["join_rule"] == "public",
        "{entry}"
    );
    assert!(body.get("next_batch").is_none(), "{body}");
    assert!(body.get("prev_batch").is_none(), "{body}");

    // POST needs an access token.
    server
        .client()
        .post(&format!("{V3}/publicRooms"), json!({}))
        .await
        .assert_error(401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn the_directory_is_ordered_paginated_and_searchable() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let carol = register(&server, "carol").await;
    let mut rooms = Vec::new();
    for name in ["Alpha cheese", "Beta wine", "Gamma bread"] {
        rooms.push(
            alice
                .create_room(
                    json!({ "visibility": "public", "preset": "public_chat", "name": name }),
                )
                .await,
        );
    }
    let space = alice
        .create_room(json!({
            "visibility": "public",
            "preset": "public_chat",
            "name": "A space",
            "creation_content": { "type": "m.space" },
        }))
        .await;
    // Gamma has 3 members, Beta 2, Alpha and the space 1.
    bob.join_room(&rooms[2]).await;
    carol.join_room(&rooms[2]).await;
    bob.join_room(&rooms[1]).await;
    let mut ones = [rooms[0].clone(), space.clone()];
    ones.sort();
    let expected = vec![
        rooms[2].clone(),
        rooms[1].clone(),
        ones[0].clone(),
        ones[1].clone(),
    ];

    let all = bob
        .client
        .post(&format!("{V3}/publicRooms"), json!({}))
        .await
        .ok();
    assert_eq!(room_ids(&all), expected, "{all}");
    assert_eq!(all["total_room_count_estimate"], 4);

    // Pages of two, forwards then back.
    let first = server
        .client()
        .get(&format!("{V3}/publicRooms?limit=2"))
        .await
        .ok();
    assert_eq!(room_ids(&first), expected[..2].to_vec(), "{first}");
    assert!(first.get("prev_batch").is_none(), "{first}");
    let next = first["next_batch"]
        .as_str()
        .expect("a next_batch")
        .to_owned();
    let second = server
        .client()
        .get(&format!("{V3}/publicRooms?limit=2&since={}", enc(&next)))
        .await
        .ok();
    assert_eq!(room_ids(&second), expected[2..].to_vec(), "{second}");
    assert!(second.get("next_batch").is_none(), "{second}");
    let prev = second["prev_batch"]
        .as_str()
        .expect("a prev_batch")
        .to_owned();
    let back = bob
        .client
        .post(
            &format!("{V3}/publicRooms"),
            json!({ "limit": 2, "since": prev }),
        )
        .await
        .ok();
    assert_eq!(room_ids(&back), expected[..2].to_vec(), "{back}");
    assert!(back.get("prev_batch").is_none(), "{back}");
    assert!(back.get("next_batch").is_some(), "{back}");

    // Search over names, case-insensitively.
    let found = bob
        .client
        .post(
            &format!("{V3}/publicRooms"),
            json!({ "filter": { "generic_search_term": "WINE" } }),
        )
        .await
        .ok();
    assert_eq!(room_ids(&found), vec![rooms[1].clone()], "{found}");

    // Room types: spaces only, then rooms without a type only.
    let spaces = bob
        .client
        .post(
            &format!("{V3}/publicRooms"),
            json!({ "filter": { "room_types": ["m.space"] } }),
        )
        .await
        .ok();
    assert_eq!(room_ids(&spaces), vec![space.clone()], "{spaces}");
    assert_eq!(spaces["chunk"][0]["room_type"], "m.space");
    let plain = bob
        .client
        .post(
            &format!("{V3}/publicRooms"),
            json!({ "filter": { "room_types": [null] } }),
        )
        .await
        .ok();
    assert_eq!(plain["chunk"].as_array().unwrap().len(), 3, "{plain}");
    assert!(!room_ids(&plain).contains(&space), "{plain}");

    // No third-party networks are bridged here.
    let bridged = bob
        .client
        .post(
            &format!("{V3}/publicRooms"),
            json!({ "third_party_instance_id": "irc-libera" }),
        )
        .await
        .ok();
    assert_eq!(room_ids(&bridged), Vec::<String>::new(), "{bridged}");
    let everything = bob
        .client
        .post(
            &format!("{V3}/publicRooms"),
            json!({ "include_all_networks": true }),
        )
        .await
        .ok();
    assert_eq!(room_ids(&everything), expected, "{everything}");

    // A token this server never handed out.
    bob.client
        .post(
            &format!("{V3}/publicRooms"),
            json!({ "since": "not-a-token" }),
        )
        .await
        .assert_error(400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn directory_visibility_is_read_and_set_by_moderators() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let admin = register_admin(&server, "admin").await;
    let room_id = alice.create_room(json!({ "preset": "public_chat" })).await;
    bob.join_room(&room_id).await;

    let read = server.client().get(&listing_path(&room_id)).await.ok();
    assert_eq!(read, json!({ "visibility": "private" }));

    // Bob is an ordinary member.
    bob.client
        .put(&listing_path(&room_id), json!({ "visibility": "public" }))
        .await
        .assert_error(403, "M_FORBIDDEN");
    alice
        .client
        .put(&listing_path(&room_id), json!({ "visibility": "public" }))
        .await
        .assert_status(200);
    let read = server.client().get(&listing_path(&room_id)).await.ok();
    assert_eq!(read, json!({ "visibility": "public" }));
    let listed = server.client().get(&format!("{V3}/publicRooms")).await.ok();
    assert_eq!(room_ids(&listed), vec![room_id.clone()]);

    // A server admin need not be in the room.
    admin
        .client
        .put(&listing_path(&room_id), json!({ "visibility": "private" }))
        .await
        .assert_status(200);
    let listed = server.client().get(&format!("{V3}/publicRooms")).await.ok();
    assert_eq!(room_ids(&listed), Vec::<String>::new());

    // `visibility` defaults to `public` (client-server API, "Room directory").
    alice
        .client
        .put(&listing_path(&room_id), json!({}))
        .await
        .assert_status(200);
    let read = server.client().get(&listing_path(&room_id)).await.ok();
    assert_eq!(read, json!({ "visibility": "public" }));
    alice
        .client
        .put(&listing_path(&room_id), json!({ "visibility": "hidden" }))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    let read = server.client().get(&listing_path(&room_id)).await.ok();
    assert_eq!(read, json!({ "visibility": "public" }));

    let unknown = format!("!unknown:{}", server.server_name());
    server
        .client()
        .get(&listing_path(&unknown))
        .await
        .assert_error(404, "M_NOT_FOUND");
    alice
        .client
        .put(&listing_path(&unknown), json!({ "visibility": "public" }))
        .await
        .assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn room_summaries_follow_the_rooms_visibility() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let public = alice
        .create_room(json!({
            "preset": "public_chat",
            "name": "Open",
            "topic": "Come in",
            "room_alias_name": "open",
            "initial_state": [
                { "type": "m.room.encryption", "content": { "algorithm": "m.megolm.v1.aes-sha2" } },
            ],
        }))
        .await;
    let private = alice
        .create_room(json!({ "preset": "private_chat", "name": "Closed" }))
        .await;

    // A public room: anyone, even without a token, by ID or alias.
    let summary = server.client().get(&summary_path(&public)).await.ok();
    assert_eq!(summary["room_id"], public.as_str(), "{summary}");
    assert_eq!(summary["name"], "Open", "{summary}");
    assert_eq!(summary["topic"], "Come in", "{summary}");
    assert_eq!(summary["num_joined_members"], 1, "{summary}");
    assert_eq!(summary["world_readable"], false, "{summary}");
    assert_eq!(summary["guest_can_join"], false, "{summary}");
    assert_eq!(summary["encryption"], "m.megolm.v1.aes-sha2", "{summary}");
    assert_eq!(summary["room_version"], "12", "{summary}");
    assert!(summary.get("membership").is_none(), "{summary}");
    let alias = format!("#open:{}", server.server_name());
    let by_alias = bob.client.get(&summary_path(&alias)).await.ok();
    assert_eq!(by_alias["room_id"], public.as_str(), "{by_alias}");
    assert_eq!(by_alias["canonical_alias"], alias.as_str(), "{by_alias}");
    assert_eq!(by_alias["membership"], "leave", "{by_alias}");
    let own = alice.client.get(&summary_path(&public)).await.ok();
    assert_eq!(own["membership"], "join", "{own}");

    // A private room: hidden from outsiders, shown to members and invitees.
    bob.client
        .get(&summary_path(&private))
        .await
        .assert_error(404, "M_NOT_FOUND");
    server
        .client()
        .get(&summary_path(&private))
        .await
        .assert_error(404, "M_NOT_FOUND");
    let own = alice.client.get(&summary_path(&private)).await.ok();
    assert_eq!(own["join_rule"], "invite", "{own}");
    alice.invite_user(&private, &bob.user_id).await;
    let invited = bob.client.get(&summary_path(&private)).await.ok();
    assert_eq!(invited["name"], "Closed", "{invited}");
    assert_eq!(invited["membership"], "invite", "{invited}");

    // Unknown rooms and aliases.
    bob.client
        .get(&summary_path(&format!("!unknown:{}", server.server_name())))
        .await
        .assert_error(404, "M_NOT_FOUND");
    bob.client
        .get(&summary_path(&format!("#unknown:{}", server.server_name())))
        .await
        .assert_error(404, "M_NOT_FOUND");
}

#[tokio::test]
async fn restricted_rooms_are_summarised_for_members_of_an_allowed_room() {
    let server = TestServer::start().await;
    let alice = register(&server, "alice").await;
    let bob = register(&server, "bob").await;
    let carol = register(&server, "carol").await;
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

    let summary = bob.client.get(&summary_path(&restricted)).await.ok();
    assert_eq!(summary["join_rule"], "restricted", "{summary}");
    assert_eq!(summary["allowed_room_ids"], json!([space]), "{summary}");
    carol
        .client
        .get(&summary_path(&restricted))
        .await
        .assert_error(404, "M_NOT_FOUND");
}
