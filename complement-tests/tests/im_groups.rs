//! Group administration: announcements (state event, pinned), mute all, muting one member for a
//! while (lifted automatically, also across a restart), the member limit and the generated
//! group avatar.

use std::time::Duration;

use complement_tests::im::IM;
use complement_tests::media::{encoded, get_bytes, upload};
use complement_tests::rooms::text;
use complement_tests::{Response, TestServer, User, V3, enc, json, wait_until};
use image::{DynamicImage, ImageFormat, Rgb, RgbImage};

const PASSWORD: &str = "im-groups-pw";

/// Alice's public group with Bob joined as an ordinary member.
async fn group(server: &TestServer) -> (User, User, String) {
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let room_id = alice
        .create_room(json!({ "preset": "public_chat", "name": "Hiking" }))
        .await;
    bob.join_room(&room_id).await;
    (alice, bob, room_id)
}

fn group_path(room_id: &str, rest: &str) -> String {
    format!("{IM}/groups/{}{rest}", enc(room_id))
}

async fn mute(admin: &User, room_id: &str, user_id: &str, secs: u64) -> Response {
    admin
        .client
        .put(
            &group_path(room_id, &format!("/mutes/{}", enc(user_id))),
            json!({ "duration_secs": secs }),
        )
        .await
}

/// Waits until `user` may send in the room again.
async fn wait_until_unmuted(user: &User, room_id: &str) {
    wait_until("the mute to be lifted", Duration::from_secs(30), || {
        let user = user.clone();
        let room_id = room_id.to_owned();
        async move {
            let resp = user
                .send_event(&room_id, "m.room.message", text("back"))
                .await;
            (resp.status == 200).then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn announcements_are_state_and_pinned_and_need_admin_power() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = group(&server).await;
    let first = alice
        .client
        .put(
            &group_path(&room_id, "/announcement"),
            json!({ "text": "Meet at 8" }),
        )
        .await
        .ok();
    let state = alice
        .state_content(&room_id, "im.tessera.announcement", "")
        .await;
    assert_eq!(state["text"], "Meet at 8");
    assert_eq!(state["author"], alice.user_id.as_str());
    assert!(state["ts"].as_u64().is_some(), "{state}");
    let second = alice
        .client
        .put(
            &group_path(&room_id, "/announcement"),
            json!({ "text": "Meet at 9 instead" }),
        )
        .await
        .ok();
    let pinned = bob
        .state_content(&room_id, "m.room.pinned_events", "")
        .await;
    assert_eq!(
        pinned["pinned"],
        json!([second["event_id"]]),
        "{pinned} {first}"
    );

    bob.client
        .put(
            &group_path(&room_id, "/announcement"),
            json!({ "text": "me!" }),
        )
        .await
        .assert_error(403, "M_FORBIDDEN");
    alice
        .client
        .put(
            &group_path(&room_id, "/announcement"),
            json!({ "text": " " }),
        )
        .await
        .assert_error(400, "M_INVALID_PARAM");
    alice
        .client
        .put(
            &group_path(&room_id, "/announcement"),
            json!({ "text": "a".repeat(2001) }),
        )
        .await
        .assert_error(400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn mute_all_silences_members_but_not_admins() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = group(&server).await;
    alice
        .client
        .put(&group_path(&room_id, "/mute_all"), json!({ "muted": true }))
        .await
        .ok();
    bob.send_event(&room_id, "m.room.message", text("hello?"))
        .await
        .assert_error(403, "M_FORBIDDEN");
    alice.send_text(&room_id, "quiet please").await;
    bob.client
        .put(
            &group_path(&room_id, "/mute_all"),
            json!({ "muted": false }),
        )
        .await
        .assert_error(403, "M_FORBIDDEN");
    alice
        .client
        .put(
            &group_path(&room_id, "/mute_all"),
            json!({ "muted": false }),
        )
        .await
        .ok();
    bob.send_text(&room_id, "thanks").await;
    alice
        .client
        .put(
            &group_path(&room_id, "/mute_all"),
            json!({ "muted": "yes" }),
        )
        .await
        .assert_error(400, "M_BAD_JSON");
}

#[tokio::test]
async fn a_muted_member_speaks_again_when_the_time_is_up() {
    let server = TestServer::start().await;
    let (alice, bob, room_id) = group(&server).await;
    let resp = mute(&alice, &room_id, &bob.user_id, 1).await.ok();
    assert!(resp["until_ts"].as_u64().is_some(), "{resp}");
    bob.send_event(&room_id, "m.room.message", text("can I talk?"))
        .await
        .assert_error(403, "M_FORBIDDEN");
    wait_until_unmuted(&bob, &room_id).await;
    let levels = alice
        .state_content(&room_id, "m.room.power_levels", "")
        .await;
    assert!(
        levels["users"].get(bob.user_id.as_str()).is_none(),
        "{levels}"
    );

    // Bad input and power.
    mute(&alice, &room_id, &bob.user_id, 0)
        .await
        .assert_error(400, "M_INVALID_PARAM");
    mute(&alice, &room_id, &bob.user_id, 31 * 24 * 3600)
        .await
        .assert_error(400, "M_INVALID_PARAM");
    mute(&bob, &room_id, &alice.user_id, 60)
        .await
        .assert_error(403, "M_FORBIDDEN");
    mute(&alice, &room_id, &server.user_id("nobody"), 60)
        .await
        .assert_error(404, "M_NOT_FOUND");

    // Lifted early by hand.
    mute(&alice, &room_id, &bob.user_id, 3600).await.ok();
    alice
        .client
        .request(
            complement_tests::Method::DELETE,
            &group_path(&room_id, &format!("/mutes/{}", enc(&bob.user_id))),
            None,
        )
        .await
        .ok();
    bob.send_text(&room_id, "free").await;
}

#[tokio::test]
async fn a_mute_is_lifted_after_a_restart_too() {
    let mut server = TestServer::start().await;
    let (alice, bob, room_id) = group(&server).await;
    mute(&alice, &room_id, &bob.user_id, 5).await.ok();
    server.stop();
    server.run().await;
    let bob = User {
        client: server.client().with_token(&bob.access_token),
        ..bob
    };
    bob.send_event(&room_id, "m.room.message", text("still muted?"))
        .await
        .assert_status(403);
    wait_until_unmuted(&bob, &room_id).await;
}

#[tokio::test]
async fn joins_and_invites_beyond_the_member_limit_are_refused() {
    let server = TestServer::builder()
        .set("im.group_member_limit", 3)
        .start()
        .await;
    let (alice, _bob, room_id) = group(&server).await;
    let carol = server.client().register("carol", PASSWORD).await;
    let dave = server.client().register("dave", PASSWORD).await;
    carol.join_room(&room_id).await;
    let refused = dave
        .client
        .post(
            &format!("/_matrix/client/v3/rooms/{}/join", enc(&room_id)),
            json!({}),
        )
        .await;
    refused.assert_error(403, "M_FORBIDDEN");
    assert!(
        refused.json["error"]
            .as_str()
            .unwrap_or_default()
            .contains("limit of 3 members"),
        "{}",
        refused.json
    );
    alice
        .client
        .post(
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&room_id)),
            json!({ "user_id": dave.user_id }),
        )
        .await
        .assert_error(403, "M_FORBIDDEN");
    carol.leave_room(&room_id).await;
    dave.join_room(&room_id).await;
}

#[tokio::test]
async fn join_requests_by_knock_are_approved_or_denied_by_admins() {
    let server = TestServer::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let carol = server.client().register("carol", PASSWORD).await;
    let dave = server.client().register("dave", PASSWORD).await;
    let room_id = alice
        .create_room(json!({
            "preset": "private_chat",
            "invite": [bob.user_id],
            "initial_state": [{ "type": "m.room.join_rules", "state_key": "", "content": { "join_rule": "knock" } }],
        }))
        .await;
    bob.join_room(&room_id).await;
    for (knocker, reason) in [(&carol, "friend of Bob"), (&dave, "hi")] {
        knocker
            .client
            .post(
                &format!("/_matrix/client/v3/knock/{}", enc(&room_id)),
                json!({ "reason": reason }),
            )
            .await
            .ok();
    }
    let knocks = alice
        .client
        .get(&group_path(&room_id, "/knocks"))
        .await
        .ok();
    assert_eq!(
        knocks["knocks"],
        json!([
            { "user_id": carol.user_id, "reason": "friend of Bob" },
            { "user_id": dave.user_id, "reason": "hi" },
        ]),
        "{knocks}"
    );
    let answer = |user: &User, knocker: &User, verdict: &str| {
        let path = group_path(
            &room_id,
            &format!("/knocks/{}/{verdict}", enc(&knocker.user_id)),
        );
        let client = user.client.clone();
        async move { client.post(&path, json!({})).await }
    };
    // Denying kicks the knock: Bob lacks the kick level.
    answer(&bob, &dave, "deny")
        .await
        .assert_error(403, "M_FORBIDDEN");
    answer(&alice, &carol, "approve").await.ok();
    carol.join_room(&room_id).await;
    answer(&alice, &dave, "deny").await.ok();
    assert_eq!(
        alice
            .membership_of(&room_id, &dave.user_id)
            .await
            .as_deref(),
        Some("leave")
    );
    answer(&alice, &dave, "approve")
        .await
        .assert_error(404, "M_NOT_FOUND");
    dave.client
        .get(&group_path(&room_id, "/knocks"))
        .await
        .assert_error(403, "M_FORBIDDEN");
}

/// Uploads a solid-coloured PNG as the user's avatar (before they join rooms, so that their
/// member events carry it).
async fn set_solid_avatar(server: &TestServer, user: &User, colour: [u8; 3]) {
    let picture = DynamicImage::ImageRgb8(RgbImage::from_pixel(64, 64, Rgb(colour)));
    let mxc = upload(
        server,
        user,
        encoded(picture, ImageFormat::Png),
        "image/png",
        None,
    )
    .await;
    let resp = user
        .client
        .put(
            &format!("{V3}/profile/{}/avatar_url", enc(&user.user_id)),
            json!({ "avatar_url": format!("mxc://{mxc}") }),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.json);
}

#[tokio::test]
async fn a_generated_group_avatar_tiles_the_first_members_avatars() {
    let server = TestServer::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let carol = server.client().register("carol", PASSWORD).await;
    set_solid_avatar(&server, &alice, [255, 0, 0]).await;
    set_solid_avatar(&server, &bob, [0, 0, 255]).await;
    let room_id = alice
        .create_room(json!({ "preset": "public_chat", "name": "Hiking" }))
        .await;
    bob.join_room(&room_id).await;
    carol.join_room(&room_id).await;

    // Bob may not set the room's avatar (50 by the preset's power levels).
    let refused = bob
        .client
        .post(&group_path(&room_id, "/avatar"), json!({}))
        .await;
    refused.assert_error(403, "M_FORBIDDEN");

    let generated = alice
        .client
        .post(&group_path(&room_id, "/avatar"), json!({}))
        .await
        .ok();
    let url = generated["url"].as_str().expect("an mxc URI").to_owned();
    let avatar = alice.state_content(&room_id, "m.room.avatar", "").await;
    assert_eq!(avatar["url"], url.as_str(), "{avatar}");
    assert_eq!(avatar["im.tessera.generated"], true, "{avatar}");

    let png = get_bytes(
        &server,
        &format!(
            "/_matrix/client/v1/media/download/{}",
            url.trim_start_matches("mxc://")
        ),
        Some(&carol.access_token),
    )
    .await;
    assert_eq!(png.status, 200);
    assert_eq!(png.header("content-type"), "image/png");
    let picture = image::load_from_memory(&png.bytes)
        .expect("a decodable PNG")
        .to_rgb8();
    assert_eq!(picture.dimensions(), (240, 240));
    // Three members: two on the first row (Alice, then Bob, in the order they joined), Carol
    // (no avatar: a coloured tile) alone and centred on the second.
    assert_eq!(picture.get_pixel(60, 60), &Rgb([255, 0, 0]));
    assert_eq!(picture.get_pixel(180, 60), &Rgb([0, 0, 255]));
    let carols = *picture.get_pixel(120, 180);
    assert!(
        ![Rgb([255, 0, 0]), Rgb([0, 0, 255]), Rgb([221, 222, 224])].contains(&carols),
        "{carols:?}"
    );

    // Generated again (members change), it is replaced; a member's own choice is not.
    alice
        .client
        .post(&group_path(&room_id, "/avatar"), json!({}))
        .await
        .ok();
    alice
        .set_state(
            &room_id,
            "m.room.avatar",
            "",
            json!({ "url": format!("mxc://{}", url.trim_start_matches("mxc://")) }),
        )
        .await;
    alice
        .client
        .post(&group_path(&room_id, "/avatar"), json!({}))
        .await
        .assert_error(409, "M_UNKNOWN");

    // Someone outside the group cannot.
    let dave = server.client().register("dave", PASSWORD).await;
    dave.client
        .post(&group_path(&room_id, "/avatar"), json!({}))
        .await
        .assert_error(403, "M_FORBIDDEN");
}

async fn transfer(owner: &User, room_id: &str, new_owner: &str) -> Response {
    owner
        .client
        .post(
            &group_path(room_id, "/owner"),
            json!({ "user_id": new_owner }),
        )
        .await
}

#[tokio::test]
async fn ownership_before_room_version_12_moves_with_the_power_levels() {
    let server = TestServer::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let carol = server.client().register("carol", PASSWORD).await;
    let room_id = alice
        .create_room(json!({ "preset": "public_chat", "room_version": "11" }))
        .await;
    bob.join_room(&room_id).await;
    carol.join_room(&room_id).await;
    mute(&alice, &room_id, &carol.user_id, 4).await.ok();

    // Only the owner hands the group on, to a member other than themselves.
    transfer(&bob, &room_id, &alice.user_id)
        .await
        .assert_error(403, "M_FORBIDDEN");
    transfer(&alice, &room_id, &alice.user_id)
        .await
        .assert_error(400, "M_INVALID_PARAM");
    transfer(&alice, &room_id, "@nobody:localhost")
        .await
        .assert_error(400, "M_INVALID_PARAM");

    let moved = transfer(&alice, &room_id, &bob.user_id).await.ok();
    assert_eq!(moved["room_id"], room_id.as_str(), "{moved}");
    let levels = alice
        .state_content(&room_id, "m.room.power_levels", "")
        .await;
    assert_eq!(levels["users"][&bob.user_id], 100, "{levels}");
    assert!(levels["users"].get(&alice.user_id).is_none(), "{levels}");
    // Alice is an ordinary member now: no more owner's powers.
    alice
        .put_state(&room_id, "m.room.name", "", json!({ "name": "Mine" }))
        .await
        .assert_error(403, "M_FORBIDDEN");
    transfer(&alice, &room_id, &bob.user_id)
        .await
        .assert_error(403, "M_FORBIDDEN");
    bob.set_state(&room_id, "m.room.name", "", json!({ "name": "Bob's" }))
        .await;
    // Alice's mute of Carol still ends, though Alice no longer has the power to lift it.
    carol
        .send_event(&room_id, "m.room.message", text("hello?"))
        .await
        .assert_error(403, "M_FORBIDDEN");
    wait_until_unmuted(&carol, &room_id).await;
}

#[tokio::test]
async fn ownership_of_a_version_12_group_passes_by_an_upgrade_the_new_owner_makes() {
    let server = TestServer::start().await;
    let alice = server.client().register("alice", PASSWORD).await;
    let bob = server.client().register("bob", PASSWORD).await;
    let carol = server.client().register("carol", PASSWORD).await;
    let room_id = alice
        .create_room(json!({ "preset": "private_chat", "name": "Climbing", "room_version": "12" }))
        .await;
    for member in [&bob, &carol] {
        alice.invite_user(&room_id, &member.user_id).await;
        member.join_room(&room_id).await;
    }

    alice
        .client
        .put(
            &group_path(&room_id, "/announcement"),
            json!({ "text": "Meet at the gym" }),
        )
        .await
        .ok();
    mute(&alice, &room_id, &carol.user_id, 4).await.ok();

    let moved = transfer(&alice, &room_id, &bob.user_id).await.ok();
    let new_room = moved["room_id"].as_str().expect("room_id").to_owned();
    assert_ne!(
        new_room, room_id,
        "a version 12 creator's power ends only with the room"
    );
    let tombstone = alice.state_content(&room_id, "m.room.tombstone", "").await;
    assert_eq!(
        tombstone["replacement_room"],
        new_room.as_str(),
        "{tombstone}"
    );
    // Bob created the replacement; everyone was moved in, and the name came along.
    let create = bob.state_content(&new_room, "m.room.create", "").await;
    assert_eq!(
        create["predecessor"]["room_id"],
        room_id.as_str(),
        "{create}"
    );
    for member in [&alice, &bob, &carol] {
        assert_eq!(
            bob.membership_of(&new_room, &member.user_id)
                .await
                .as_deref(),
            Some("join"),
            "{}",
            member.user_id
        );
    }
    assert_eq!(
        carol.state_content(&new_room, "m.room.name", "").await["name"],
        "Climbing"
    );
    // Alice is an ordinary member of the new room; Bob owns it.
    alice
        .put_state(&new_room, "m.room.name", "", json!({ "name": "Mine" }))
        .await
        .assert_error(403, "M_FORBIDDEN");
    transfer(&alice, &new_room, &carol.user_id)
        .await
        .assert_error(403, "M_FORBIDDEN");
    // The announcement came along, pinned; Carol's mute runs on in the new room, and ends.
    let announcement = carol
        .state_content(&new_room, "im.tessera.announcement", "")
        .await;
    assert_eq!(announcement["text"], "Meet at the gym", "{announcement}");
    let pinned = carol
        .state_content(&new_room, "m.room.pinned_events", "")
        .await;
    assert_eq!(
        pinned["pinned"].as_array().map(Vec::len),
        Some(1),
        "{pinned}"
    );
    carol
        .send_event(&new_room, "m.room.message", text("hello?"))
        .await
        .assert_error(403, "M_FORBIDDEN");
    wait_until_unmuted(&carol, &new_room).await;

    let back = transfer(&bob, &new_room, &alice.user_id).await.ok();
    assert_ne!(back["room_id"], new_room.as_str());
}
