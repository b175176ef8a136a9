//! Unit tests of the authorization rules as the engine applies them (spec: "Authorization
//! rules" of room versions 2 and 10-12) and of state resolution (spec: room version 2 "State
//! resolution", v2.1 in room version 12). Events are real signed PDUs built by `build_pdu`.

use std::{collections::HashMap, sync::Arc};

use ruma::{
    MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId, RoomVersionId, UInt,
    UserId,
    events::{StateEventType, TimelineEventType},
    server_name,
    signatures::Ed25519KeyPair,
    state_res::StateMap,
};
use serde_json::{Value as JsonValue, json};

use super::{RoomState, check_against_auth_events, resolve::resolve_state};
use crate::events::{GraphPosition, NewEvent, Pdu, ReferenceHashes, build_pdu};

/// A room driven event by event through the engine's auth path, with every event kept.
#[derive(Clone)]
struct TestRoom {
    state: RoomState,
    key: Arc<Ed25519KeyPair>,
    events: HashMap<OwnedEventId, Arc<Pdu>>,
    next_group: i64,
    clock: u64,
}

const ALICE: &str = "@alice:a.test";
const BOB: &str = "@bob:a.test";
const CHARLIE: &str = "@charlie:a.test";

fn user(id: &str) -> OwnedUserId {
    UserId::parse(id).expect("test user IDs are valid")
}

fn member(membership: &str) -> JsonValue {
    json!({ "membership": membership })
}

impl TestRoom {
    /// Alice's room: create, her join, power levels (`users` as given), join rules.
    fn new(version: RoomVersionId, users: JsonValue, join_rule: &str) -> Self {
        Self::with_create(version, json!({}), users, join_rule)
    }

    fn with_create(
        version: RoomVersionId,
        mut create: JsonValue,
        users: JsonValue,
        join_rule: &str,
    ) -> Self {
        let rules = version.rules().expect("known room version");
        create["room_version"] = json!(version.as_str());
        if !rules.authorization.use_room_create_sender {
            create["creator"] = json!(ALICE);
        }
        let key = Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), "1".to_owned())
            .expect("a freshly generated key parses");
        let mut room = Self {
            state: RoomState {
                room_id: OwnedRoomId::try_from("!room:a.test").expect("valid room ID"),
                version,
                rules,
                state: HashMap::new(),
                state_group: 0,
                chain_length: 0,
                extremities: Vec::new(),
                extremity_hashes: ReferenceHashes::new(),
                depth: UInt::from(0u32),
                local_audience: None,
                remote_servers: None,
                push_context: None,
            },
            key: Arc::new(key),
            events: HashMap::new(),
            next_group: 1,
            clock: 1_000,
        };
        let create = room
            .state_event(ALICE, "m.room.create", "", create)
            .expect("create is allowed");
        if room
            .state
            .rules
            .authorization
            .room_create_event_id_as_room_id
        {
            room.state.room_id = create.room_id.clone();
        }
        room.state_event(ALICE, "m.room.member", ALICE, member("join"))
            .expect("creator joins");
        room.state_event(
            ALICE,
            "m.room.power_levels",
            "",
            json!({ "users": users, "state_default": 50, "events_default": 0, "ban": 50, "kick": 50, "invite": 0, "redact": 50 }),
        )
        .expect("creator sets power levels");
        room.state_event(
            ALICE,
            "m.room.join_rules",
            "",
            json!({ "join_rule": join_rule }),
        )
        .expect("creator sets join rules");
        room
    }

    /// The event `sender` would add on the room's latest events, built and signed but not
    /// authorized, with the auth events chosen for it.
    fn build(&mut self, sender: &str, new: NewEvent) -> Result<(Pdu, Vec<Arc<Pdu>>), String> {
        let sender = user(sender);
        let content = serde_json::value::to_raw_value(&new.content).map_err(|e| e.to_string())?;
        let auth_events =
            self.state
                .auth_events_for(&new.kind, &sender, new.state_key.as_deref(), &content)?;
        self.clock += 1;
        let v12_create = self
            .state
            .rules
            .authorization
            .room_create_event_id_as_room_id
            && self.state.state.is_empty();
        let reference_hashes = self
            .state
            .reference_hashes(&auth_events)
            .map_err(|e| e.to_string())?;
        let pdu = build_pdu(
            new,
            &sender,
            GraphPosition {
                rules: &self.state.rules,
                room_id: (!v12_create).then_some(&*self.state.room_id),
                prev_events: self.state.extremities.clone(),
                auth_events: auth_events.iter().map(|p| p.event_id.clone()).collect(),
                reference_hashes: &reference_hashes,
                depth: self.state.depth.saturating_add(UInt::from(1u32)),
                origin_server_ts: MilliSecondsSinceUnixEpoch(UInt::from(self.clock as u32)),
                server_name: server_name!("a.test"),
                key: &self.key,
            },
        )
        .map_err(|e| e.to_string())?;
        Ok((pdu, auth_events))
    }

    fn send(&mut self, sender: &str, new: NewEvent) -> Result<Arc<Pdu>, String> {
        let (pdu, auth_events) = self.build(sender, new)?;
        self.state.authorize(&pdu, &auth_events)?;
        self.state
            .note_reference_hash(&pdu)
            .map_err(|e| e.to_string())?;
        let pdu = Arc::new(pdu);
        let next = &mut self.next_group;
        self.state.advance(&pdu, || {
            *next += 1;
            *next
        });
        self.events.insert(pdu.event_id.clone(), pdu.clone());
        Ok(pdu)
    }

    fn state_event(
        &mut self,
        sender: &str,
        kind: &str,
        key: &str,
        content: JsonValue,
    ) -> Result<Arc<Pdu>, String> {
        self.send(
            sender,
            NewEvent::state(TimelineEventType::from(kind), key, content),
        )
    }

    fn message(&mut self, sender: &str, body: &str) -> Result<Arc<Pdu>, String> {
        self.send(
            sender,
            NewEvent::message(
                TimelineEventType::RoomMessage,
                json!({ "msgtype": "m.text", "body": body }),
            ),
        )
    }

    fn state_map(&self) -> StateMap<OwnedEventId> {
        self.state
            .state
            .iter()
            .map(|(key, pdu)| (key.clone(), pdu.event_id.clone()))
            .collect()
    }
}

/// Resolves the states of two forks of one room, over the events both know.
fn resolve(a: &TestRoom, b: &TestRoom) -> StateMap<OwnedEventId> {
    let mut events = a.events.clone();
    events.extend(b.events.clone());
    resolve_state(&a.state.rules, &[a.state_map(), b.state_map()], |id| {
        events.get(id).map(|pdu| &**pdu)
    })
    .expect("state resolution succeeds")
}

fn resolved_content(
    a: &TestRoom,
    b: &TestRoom,
    resolved: &StateMap<OwnedEventId>,
    kind: &str,
    key: &str,
) -> JsonValue {
    let id = &resolved[&(StateEventType::from(kind), key.to_owned())];
    a.events
        .get(id)
        .or_else(|| b.events.get(id))
        .expect("resolved state names known events")
        .content_value()
}

#[test]
fn members_below_state_default_cannot_send_state_but_can_send_messages() {
    let mut room = TestRoom::new(RoomVersionId::V10, json!({ ALICE: 100 }), "public");
    room.state_event(BOB, "m.room.member", BOB, member("join"))
        .unwrap();
    room.message(BOB, "hello").unwrap();
    let refused = room
        .state_event(BOB, "m.room.name", "", json!({ "name": "Bob's" }))
        .unwrap_err();
    assert!(refused.contains("power"), "{refused}");
    room.state_event(ALICE, "m.room.name", "", json!({ "name": "Alice's" }))
        .unwrap();
}

#[test]
fn a_user_cannot_raise_power_levels_above_their_own() {
    let mut room = TestRoom::new(RoomVersionId::V11, json!({ ALICE: 100, BOB: 50 }), "public");
    room.state_event(BOB, "m.room.member", BOB, member("join"))
        .unwrap();
    let refused = room
        .state_event(
            BOB,
            "m.room.power_levels",
            "",
            json!({ "users": { ALICE: 100, BOB: 100 }, "state_default": 50 }),
        )
        .unwrap_err();
    assert!(!refused.is_empty());
}

#[test]
fn invite_only_rooms_refuse_uninvited_joins_and_accept_invited_ones() {
    let mut room = TestRoom::new(RoomVersionId::V10, json!({ ALICE: 100 }), "invite");
    assert!(
        room.state_event(BOB, "m.room.member", BOB, member("join"))
            .is_err()
    );
    room.state_event(ALICE, "m.room.member", BOB, member("invite"))
        .unwrap();
    room.state_event(BOB, "m.room.member", BOB, member("join"))
        .unwrap();
}

#[test]
fn banned_users_cannot_join_until_unbanned() {
    let mut room = TestRoom::new(RoomVersionId::V11, json!({ ALICE: 100 }), "public");
    room.state_event(BOB, "m.room.member", BOB, member("join"))
        .unwrap();
    room.state_event(ALICE, "m.room.member", BOB, member("ban"))
        .unwrap();
    assert!(
        room.state_event(BOB, "m.room.member", BOB, member("join"))
            .is_err()
    );
    assert!(room.message(BOB, "still here?").is_err());
    room.state_event(ALICE, "m.room.member", BOB, member("leave"))
        .unwrap();
    room.state_event(BOB, "m.room.member", BOB, member("join"))
        .unwrap();
}

#[test]
fn members_without_ban_power_cannot_ban() {
    let mut room = TestRoom::new(RoomVersionId::V10, json!({ ALICE: 100 }), "public");
    room.state_event(BOB, "m.room.member", BOB, member("join"))
        .unwrap();
    room.state_event(CHARLIE, "m.room.member", CHARLIE, member("join"))
        .unwrap();
    assert!(
        room.state_event(BOB, "m.room.member", CHARLIE, member("ban"))
            .is_err()
    );
}

#[test]
fn knocking_needs_a_knock_join_rule() {
    let mut room = TestRoom::new(RoomVersionId::V10, json!({ ALICE: 100 }), "invite");
    assert!(
        room.state_event(BOB, "m.room.member", BOB, member("knock"))
            .is_err()
    );
    room.state_event(
        ALICE,
        "m.room.join_rules",
        "",
        json!({ "join_rule": "knock" }),
    )
    .unwrap();
    room.state_event(BOB, "m.room.member", BOB, member("knock"))
        .unwrap();
    // A knock is not a join: the knocker still needs an invite.
    assert!(
        room.state_event(BOB, "m.room.member", BOB, member("join"))
            .is_err()
    );
    room.state_event(ALICE, "m.room.member", BOB, member("invite"))
        .unwrap();
    room.state_event(BOB, "m.room.member", BOB, member("join"))
        .unwrap();
}

/// Spec: restricted rooms, auth rule 4.3.3 — the join must name a joined member who may invite.
#[test]
fn restricted_joins_need_an_authorising_member_with_invite_power() {
    let mut room = TestRoom::new(RoomVersionId::V10, json!({ ALICE: 100 }), "public");
    room.state_event(CHARLIE, "m.room.member", CHARLIE, member("join"))
        .unwrap();
    room.state_event(
        ALICE,
        "m.room.join_rules",
        "",
        json!({ "join_rule": "restricted", "allow": [{ "type": "m.room_membership", "room_id": "!other:a.test" }] }),
    )
    .unwrap();
    room.state_event(
        ALICE,
        "m.room.power_levels",
        "",
        json!({ "users": { ALICE: 100 }, "invite": 50 }),
    )
    .unwrap();
    assert!(
        room.state_event(BOB, "m.room.member", BOB, member("join"))
            .is_err()
    );
    let via_charlie = json!({ "membership": "join", "join_authorised_via_users_server": CHARLIE });
    assert!(
        room.state_event(BOB, "m.room.member", BOB, via_charlie)
            .is_err(),
        "Charlie cannot invite"
    );
    let via_alice = json!({ "membership": "join", "join_authorised_via_users_server": ALICE });
    room.state_event(BOB, "m.room.member", BOB, via_alice)
        .unwrap();
}

/// Spec v12: creators have unlimited power and may not appear in `users`.
#[test]
fn v12_creators_are_privileged_without_being_listed() {
    let mut room = TestRoom::new(RoomVersionId::V12, json!({ BOB: 100 }), "public");
    assert_eq!(
        room.state.room_id.as_str()[1..],
        room.state
            .get(&StateEventType::RoomCreate, "")
            .unwrap()
            .event_id
            .as_str()[1..]
    );
    room.state_event(BOB, "m.room.member", BOB, member("join"))
        .unwrap();
    // Bob (100) cannot touch the creator, who is above every level.
    assert!(
        room.state_event(BOB, "m.room.member", ALICE, member("ban"))
            .is_err()
    );
    let listing_creator = json!({ "users": { ALICE: 100, BOB: 100 } });
    assert!(
        room.state_event(ALICE, "m.room.power_levels", "", listing_creator)
            .is_err()
    );
    room.state_event(
        ALICE,
        "m.room.power_levels",
        "",
        json!({ "users": { BOB: 0 } }),
    )
    .unwrap();
    room.state_event(ALICE, "m.room.member", BOB, member("ban"))
        .unwrap();
}

#[test]
fn v12_additional_creators_are_privileged_too() {
    let mut room = TestRoom::with_create(
        RoomVersionId::V12,
        json!({ "additional_creators": [BOB] }),
        json!({}),
        "public",
    );
    room.state_event(BOB, "m.room.member", BOB, member("join"))
        .unwrap();
    room.state_event(BOB, "m.room.name", "", json!({ "name": "co-owned" }))
        .unwrap();
    room.state_event(
        BOB,
        "m.room.power_levels",
        "",
        json!({ "users": { CHARLIE: 50 } }),
    )
    .unwrap();
}

/// Spec: state resolution v2 — power events are ordered by the sender's power first, so a
/// demotion by the room admin wins over a ban by the moderator being demoted, whichever the
/// forks saw first.
fn ban_versus_power_change_race(version: RoomVersionId) {
    let users = if version == RoomVersionId::V12 {
        json!({ BOB: 50 })
    } else {
        json!({ ALICE: 100, BOB: 50 })
    };
    let mut base = TestRoom::new(version.clone(), users, "public");
    base.state_event(BOB, "m.room.member", BOB, member("join"))
        .unwrap();
    base.state_event(CHARLIE, "m.room.member", CHARLIE, member("join"))
        .unwrap();

    let mut demoted = base.clone();
    let demoted_users = if version == RoomVersionId::V12 {
        json!({ BOB: 0 })
    } else {
        json!({ ALICE: 100, BOB: 0 })
    };
    demoted
        .state_event(
            ALICE,
            "m.room.power_levels",
            "",
            json!({ "users": demoted_users, "ban": 50 }),
        )
        .unwrap();
    let mut banned = base.clone();
    banned
        .state_event(BOB, "m.room.member", CHARLIE, member("ban"))
        .unwrap();

    for (a, b) in [(&demoted, &banned), (&banned, &demoted)] {
        let resolved = resolve(a, b);
        assert_eq!(
            resolved_content(a, b, &resolved, "m.room.member", CHARLIE)["membership"],
            "join"
        );
        assert_eq!(
            resolved_content(a, b, &resolved, "m.room.power_levels", "")["users"][BOB],
            0
        );
    }
}

#[test]
fn demotion_beats_a_concurrent_ban_by_the_demoted_moderator() {
    ban_versus_power_change_race(RoomVersionId::V10);
}

#[test]
fn demotion_beats_a_concurrent_ban_in_v12_rooms() {
    ban_versus_power_change_race(RoomVersionId::V12);
}

/// Room version 2 (spec: rooms/v2): the event format of version 1 (server-chosen event IDs,
/// references with hashes) with state resolution v2.
#[test]
fn demotion_beats_a_concurrent_ban_in_v2_rooms() {
    ban_versus_power_change_race(RoomVersionId::V2);
}

/// Spec: Server-Server API, "Checks performed on receipt of a PDU", step 4, as applied to
/// backfilled history: each event passes or fails the auth rules against its own auth events.
#[test]
fn events_are_checked_against_their_own_auth_events() {
    let mut room = TestRoom::new(RoomVersionId::V11, json!({ ALICE: 100 }), "public");
    room.state_event(BOB, "m.room.member", BOB, member("join"))
        .unwrap();
    let words = room.message(BOB, "hello").unwrap();
    // Bob (power level 0) banning Alice, and Charlie, who never joined, sending a message.
    let (ban, _) = room
        .build(
            BOB,
            NewEvent::state(TimelineEventType::RoomMember, ALICE, member("ban")),
        )
        .unwrap();
    let (intruder, _) = room
        .build(
            CHARLIE,
            NewEvent::message(TimelineEventType::RoomMessage, json!({"body": "hi"})),
        )
        .unwrap();
    let rules = &room.state.rules;
    let create = room.state.get(&StateEventType::RoomCreate, "").cloned();
    let lookup = |id: &ruma::EventId| room.events.get(id).map(|pdu| &**pdu);
    let check = |pdu: &Pdu| check_against_auth_events(rules, pdu, create.as_deref(), lookup);
    assert_eq!(check(&words), Ok(()));
    assert!(check(&ban).is_err());
    assert!(check(&intruder).is_err());
    // An event whose auth events are unknown fails too.
    let unknown = check_against_auth_events(rules, &words, create.as_deref(), |_| None);
    assert!(unknown.unwrap_err().contains("is not known"));
}

/// Room versions 1 and 2 (spec: rooms/v1 "Event format"): the sending server names each
/// event, and events refer to their predecessors and auth events with reference hashes.
#[test]
fn v2_rooms_build_format_v1_events_under_their_auth_rules() {
    let mut room = TestRoom::new(RoomVersionId::V2, json!({ ALICE: 100 }), "public");
    room.send(
        ALICE,
        NewEvent::message(TimelineEventType::RoomMessage, json!({"body": "hi"})),
    )
    .unwrap();
    let last = room.state.extremities[0].clone();
    assert!(last.as_str().ends_with(":a.test"), "{last}");
    let hash = room.state.extremity_hashes[&last].clone();
    let next = room
        .send(
            ALICE,
            NewEvent::message(TimelineEventType::RoomMessage, json!({"body": "again"})),
        )
        .unwrap();
    let json: JsonValue = serde_json::from_str(&next.json).unwrap();
    assert_eq!(json["event_id"], next.event_id.as_str());
    assert_eq!(
        json["prev_events"],
        json!([[last.as_str(), { "sha256": hash }]])
    );
    assert!(json["auth_events"][0][1]["sha256"].is_string());
}

/// Spec: state resolution v2 step 4 — other conflicted state is ordered by mainline, then
/// origin_server_ts; the last applied wins.
#[test]
fn conflicting_topics_resolve_to_the_later_one_on_the_same_mainline() {
    let mut base = TestRoom::new(RoomVersionId::V11, json!({ ALICE: 100 }), "public");
    let mut early = base.clone();
    early
        .state_event(ALICE, "m.room.topic", "", json!({ "topic": "early" }))
        .unwrap();
    base.clock += 10;
    let mut late = base.clone();
    late.state_event(ALICE, "m.room.topic", "", json!({ "topic": "late" }))
        .unwrap();
    for (a, b) in [(&early, &late), (&late, &early)] {
        let resolved = resolve(a, b);
        assert_eq!(
            resolved_content(a, b, &resolved, "m.room.topic", "")["topic"],
            "late"
        );
    }
}

#[test]
fn unconflicted_state_passes_through_resolution() {
    let base = TestRoom::new(RoomVersionId::V10, json!({ ALICE: 100 }), "public");
    let mut named = base.clone();
    named
        .state_event(ALICE, "m.room.name", "", json!({ "name": "only here" }))
        .unwrap();
    let mut joined = base.clone();
    joined
        .state_event(BOB, "m.room.member", BOB, member("join"))
        .unwrap();
    let resolved = resolve(&named, &joined);
    assert_eq!(
        resolved_content(&named, &joined, &resolved, "m.room.name", "")["name"],
        "only here"
    );
    assert_eq!(
        resolved_content(&named, &joined, &resolved, "m.room.member", BOB)["membership"],
        "join"
    );
    assert_eq!(resolved.len(), named.state.state.len() + 1);
}

/// Events of a losing branch are re-checked against the resolved state (spec: iterative auth
/// checks): an invite by a moderator demoted in the other fork is dropped.
#[test]
fn invites_by_a_concurrently_demoted_moderator_are_dropped() {
    let mut base = TestRoom::new(RoomVersionId::V11, json!({ ALICE: 100 }), "invite");
    base.state_event(
        ALICE,
        "m.room.power_levels",
        "",
        json!({ "users": { ALICE: 100, BOB: 50 }, "invite": 50 }),
    )
    .unwrap();
    base.state_event(ALICE, "m.room.member", BOB, member("invite"))
        .unwrap();
    base.state_event(BOB, "m.room.member", BOB, member("join"))
        .unwrap();
    let mut demoted = base.clone();
    demoted
        .state_event(
            ALICE,
            "m.room.power_levels",
            "",
            json!({ "users": { ALICE: 100, BOB: 0 }, "invite": 50 }),
        )
        .unwrap();
    let mut invited = base.clone();
    invited
        .state_event(BOB, "m.room.member", CHARLIE, member("invite"))
        .unwrap();
    for (a, b) in [(&demoted, &invited), (&invited, &demoted)] {
        let resolved = resolve(a, b);
        assert_eq!(
            resolved_content(a, b, &resolved, "m.room.power_levels", "")["users"][BOB],
            0
        );
        assert!(
            !resolved.contains_key(&(StateEventType::RoomMember, CHARLIE.to_owned())),
            "Charlie's invite was authorised only by Bob's lost power"
        );
    }
}

#[test]
fn room_version_1_state_resolution_is_refused() {
    let room = TestRoom::new(RoomVersionId::V10, json!({ ALICE: 100 }), "public");
    let v1 = RoomVersionId::V1.rules().unwrap();
    let outcome = resolve_state(&v1, &[room.state_map()], |id| {
        room.events.get(id).map(|p| &**p)
    });
    assert!(outcome.is_err());
}

/// The current state replaced by a resolution (see `fork`): changed entries go into a delta
/// over the room's group, with their memberships for `current_state`; an entry taken away
/// needs a full snapshot, as a delta cannot remove one.
#[test]
fn a_resolved_state_is_written_as_a_delta_unless_it_drops_an_entry() {
    let base = TestRoom::new(RoomVersionId::V11, json!({ ALICE: 100 }), "public");
    let mut joined = base.clone();
    joined
        .state_event(BOB, "m.room.member", BOB, member("join"))
        .unwrap();
    let mut room = base.state.clone();
    let before = room.state_group;
    let resolved = room.replace_state(joined.state.state.clone(), || 100);
    let [group] = &resolved.groups[..] else {
        panic!("one group: {resolved:?}");
    };
    assert_eq!((group.group_id, group.prev_group), (100, Some(before)));
    assert_eq!(group.entries.len(), 1);
    assert_eq!(resolved.current_group, 100);
    assert_eq!(
        resolved.changed[0].1.as_deref(),
        Some("join"),
        "{resolved:?}"
    );
    assert!(resolved.removed.is_empty());

    let resolved = room.replace_state(base.state.state.clone(), || 101);
    assert_eq!(
        resolved.removed,
        [("m.room.member".to_owned(), BOB.to_owned())]
    );
    assert_eq!(resolved.groups[0].prev_group, None, "a full snapshot");
    assert_eq!(resolved.groups[0].entries.len(), base.state.state.len());
    assert_eq!(room.state_group, 101);

    let unchanged = room.replace_state(base.state.state.clone(), || 102);
    assert!(unchanged.groups.is_empty() && unchanged.changed.is_empty());
    assert_eq!(unchanged.current_group, 101);
}
