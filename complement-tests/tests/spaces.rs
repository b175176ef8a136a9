//! Spaces (spec: Client-Server API "Spaces", `GET /rooms/{roomId}/hierarchy`; Server-Server API
//! "Spaces"): the tree walked depth first, children in the spec's order, rooms a user may not
//! see left out, `max_depth`, `suggested_only`, pagination, and rooms of another server asked of
//! it over federation.

use complement_tests::{
    TestServer, User, Value, enc,
    federation::{Federation, federated_server_name},
    json,
    rooms::{hierarchy_path, hierarchy_room_ids},
};

const PASSWORD: &str = "spaces-pw";

/// A public space (`m.space` room type) named `name`.
async fn create_space(user: &User, name: &str) -> String {
    user.create_room(json!({
        "preset": "public_chat",
        "name": name,
        "creation_content": { "type": "m.space" },
    }))
    .await
}

/// Lists `child` in `space` with `via` this server and the given `order`/`suggested`.
async fn add_child(user: &User, space: &str, child: &str, server: &str, extra: Value) {
    let mut content = json!({ "via": [server] });
    if let (Some(content), Some(extra)) = (content.as_object_mut(), extra.as_object()) {
        content.extend(extra.clone());
    }
    user.set_state(space, "m.space.child", child, content).await;
}

struct Tree {
    space: String,
    lobby: String,
    private: String,
    subspace: String,
    deep: String,
}

impl Tree {
    /// The rooms someone outside the invite-only room sees, in the walk's order.
    fn open_rooms(&self) -> [&str; 4] {
        [&self.space, &self.lobby, &self.subspace, &self.deep]
    }
}

/// Alice's space: `lobby` (public, order "b"), `private` (invite-only, order "a", suggested),
/// `subspace` (a public space, no order) holding `deep` (public). Rooms with an `order` come
/// first, in its order; then by the child event's time.
async fn tree(alice: &User, server_name: &str) -> Tree {
    let space = create_space(alice, "Hiking club").await;
    let lobby = alice
        .create_room(json!({ "preset": "public_chat", "name": "Lobby" }))
        .await;
    let private = alice
        .create_room(json!({ "preset": "private_chat", "name": "Committee" }))
        .await;
    let subspace = create_space(alice, "Trips").await;
    let deep = alice
        .create_room(json!({ "preset": "public_chat", "name": "Alps 2027" }))
        .await;
    add_child(alice, &space, &lobby, server_name, json!({ "order": "b" })).await;
    add_child(
        alice,
        &space,
        &private,
        server_name,
        json!({ "order": "a", "suggested": true }),
    )
    .await;
    add_child(alice, &space, &subspace, server_name, json!({})).await;
    add_child(alice, &subspace, &deep, server_name, json!({})).await;
    // A removed child (no `via`) is not part of the tree.
    let gone = alice
        .create_room(json!({ "preset": "public_chat", "name": "Gone" }))
        .await;
    alice
        .set_state(&space, "m.space.child", &gone, json!({}))
        .await;
    Tree {
        space,
        lobby,
        private,
        subspace,
        deep,
    }
}

#[tokio::test]
async fn the_hierarchy_walks_the_tree_in_order_and_hides_what_the_user_may_not_see() {
    let server = TestServer::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let t = tree(&alice, server.server_name()).await;

    let page = alice.client.get(&hierarchy_path(&t.space, "")).await.ok();
    assert_eq!(
        hierarchy_room_ids(&page),
        [
            t.space.as_str(),
            t.private.as_str(),
            t.lobby.as_str(),
            t.subspace.as_str(),
            t.deep.as_str()
        ],
        "{page}"
    );
    assert!(page.get("next_batch").is_none(), "{page}");
    let root = &page["rooms"][0];
    assert_eq!(root["room_type"], "m.space");
    assert_eq!(root["name"], "Hiking club");
    // The spec's default join rule: a public room's summary may leave it out.
    assert!(
        root.get("join_rule").is_none_or(|rule| rule == "public"),
        "{root}"
    );
    assert_eq!(root["num_joined_members"], 1);
    let children = root["children_state"].as_array().expect("children_state");
    assert_eq!(children.len(), 3, "{root}");
    assert!(
        children
            .iter()
            .all(|child| child["type"] == "m.space.child" && child["origin_server_ts"].is_u64()),
        "{root}"
    );
    // A room that is not a space lists no children.
    assert_eq!(page["rooms"][2]["children_state"], json!([]));

    // Bob is in none of them: the invite-only room is left out.
    let page = bob.client.get(&hierarchy_path(&t.space, "")).await.ok();
    assert_eq!(hierarchy_room_ids(&page), t.open_rooms(), "{page}");

    // max_depth=1 stops below the space's own children; suggested_only keeps the suggested.
    let page = alice
        .client
        .get(&hierarchy_path(&t.space, "?max_depth=1"))
        .await
        .ok();
    assert_eq!(
        hierarchy_room_ids(&page),
        [
            t.space.as_str(),
            t.private.as_str(),
            t.lobby.as_str(),
            t.subspace.as_str()
        ]
    );
    let page = alice
        .client
        .get(&hierarchy_path(&t.space, "?suggested_only=true"))
        .await
        .ok();
    assert_eq!(
        hierarchy_room_ids(&page),
        [t.space.as_str(), t.private.as_str()]
    );
}

#[tokio::test]
async fn hierarchy_pages_follow_next_batch_and_bad_requests_are_refused() {
    let server = TestServer::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let t = tree(&alice, server.server_name()).await;

    let mut seen = Vec::new();
    let mut from: Option<String> = None;
    for _ in 0..10 {
        let query = match &from {
            Some(token) => format!("?limit=2&from={}", enc(token)),
            None => "?limit=2".to_owned(),
        };
        let page = alice
            .client
            .get(&hierarchy_path(&t.space, &query))
            .await
            .ok();
        let ids = hierarchy_room_ids(&page);
        assert!(ids.len() <= 2, "{page}");
        seen.extend(ids);
        match page["next_batch"].as_str() {
            Some(token) => from = Some(token.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            t.space.as_str(),
            t.private.as_str(),
            t.lobby.as_str(),
            t.subspace.as_str(),
            t.deep.as_str()
        ]
    );

    alice
        .client
        .get(&hierarchy_path(&t.space, "?limit=0"))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    alice
        .client
        .get(&hierarchy_path(&t.space, "?from=nonsense"))
        .await
        .assert_error(400, "M_INVALID_PARAM");
    // A token cannot change the walk's settings.
    let first = alice
        .client
        .get(&hierarchy_path(&t.space, "?limit=1"))
        .await
        .ok();
    let token = first["next_batch"].as_str().expect("a next page");
    alice
        .client
        .get(&hierarchy_path(
            &t.space,
            &format!("?limit=1&max_depth=1&from={}", enc(token)),
        ))
        .await
        .assert_error(400, "M_INVALID_PARAM");

    // A private room's tree is not shown to outsiders, nor an unknown room's.
    let bob = server.client().register("bob", PASSWORD).await;
    bob.client
        .get(&hierarchy_path(&t.private, ""))
        .await
        .assert_error(403, "M_FORBIDDEN");
    let unknown = format!("!nowhere:{}", server.server_name());
    bob.client
        .get(&hierarchy_path(&unknown, ""))
        .await
        .assert_error(403, "M_FORBIDDEN");
    bob.client
        .get(&hierarchy_path("not-a-room-id", ""))
        .await
        .assert_error_in(400, &["M_INVALID_PARAM", "M_UNRECOGNIZED", "M_BAD_JSON"]);
}

#[tokio::test]
async fn rooms_of_another_server_are_asked_of_it() {
    // Spec: Server-Server API, "Spaces": Bob's server is in the space but not in its rooms,
    // so it asks Alice's server (the children's `via`) about them.
    let federation = Federation::start(2).await;
    let alice = federation.register(0, "alice", PASSWORD).await;
    let bob = federation.register(1, "bob", PASSWORD).await;
    let hs0 = federated_server_name(0);
    let t = tree(&alice, &hs0).await;
    let joined = bob
        .client
        .post(
            &format!(
                "/_matrix/client/v3/join/{}?server_name={hs0}",
                enc(&t.space)
            ),
            json!({}),
        )
        .await
        .ok();
    assert_eq!(joined["room_id"], t.space.as_str(), "{joined}");
    // Bob's server describes the space from the state the join brought.
    let summary = bob
        .client
        .get(&format!(
            "/_matrix/client/v1/room_summary/{}",
            enc(&t.space)
        ))
        .await
        .ok();
    assert_eq!(summary["name"], "Hiking club", "{summary}");
    assert_eq!(summary["room_type"], "m.space", "{summary}");

    let page = bob.client.get(&hierarchy_path(&t.space, "")).await.ok();
    assert_eq!(hierarchy_room_ids(&page), t.open_rooms(), "{page}");
    let lobby = &page["rooms"][1];
    assert_eq!(lobby["name"], "Lobby");
    assert_eq!(lobby["num_joined_members"], 1);
    let subspace = &page["rooms"][2];
    assert_eq!(subspace["room_type"], "m.space");
    assert_eq!(
        subspace["children_state"][0]["state_key"],
        t.deep.as_str(),
        "{subspace}"
    );

    // The federation endpoint itself: the private child is listed as inaccessible to hs1.
    let answer = federation
        .signed_request(
            1,
            0,
            complement_tests::Method::GET,
            &format!("/_matrix/federation/v1/hierarchy/{}", enc(&t.space)),
            None,
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.json);
    assert_eq!(answer.json["room"]["room_id"], t.space.as_str());
    assert_eq!(
        answer.json["inaccessible_children"],
        json!([t.private]),
        "{}",
        answer.json
    );
    let children: Vec<&str> = answer.json["children"]
        .as_array()
        .expect("children")
        .iter()
        .filter_map(|child| child["room_id"].as_str())
        .collect();
    assert!(
        children.contains(&t.lobby.as_str()) && children.contains(&t.subspace.as_str()),
        "{}",
        answer.json
    );
    let private = federation
        .signed_request(
            1,
            0,
            complement_tests::Method::GET,
            &format!("/_matrix/federation/v1/hierarchy/{}", enc(&t.private)),
            None,
        )
        .await;
    private.assert_error(404, "M_NOT_FOUND");
}
