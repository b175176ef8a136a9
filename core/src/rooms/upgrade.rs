//! `POST /rooms/{roomId}/upgrade` (spec: "Room Upgrades", server behaviour): a replacement room
//! of the new version with the old room's transferable state, bans and local aliases, then a
//! tombstone in the old room and power levels there that stop ordinary members talking.

use ruma::{
    Int, OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomAliasId, RoomId, RoomVersionId, UserId,
    events::{StateEventType, room::power_levels::UserPowerLevel},
};
use serde_json::{Map, Value as JsonValue, json};

use crate::{Error, Result};

use super::{
    CREATABLE_VERSIONS, CreateRoom, MembershipChange, Rooms,
    aliases::{creators, power_levels},
};

/// The state copied into the replacement room (the spec's recommended list; power levels are
/// handled apart).
const TRANSFERRED_STATE: [&str; 8] = [
    "m.room.server_acl",
    "m.room.encryption",
    "m.room.name",
    "m.room.avatar",
    "m.room.topic",
    "m.room.guest_access",
    "m.room.history_visibility",
    "m.room.join_rules",
];

/// The spec's defaults for power level keys absent from the content.
const POWER_LEVEL_DEFAULTS: [(&str, i64); 7] = [
    ("users_default", 0),
    ("events_default", 0),
    ("state_default", 50),
    ("ban", 50),
    ("kick", 50),
    ("redact", 50),
    ("invite", 0),
];

/// What the upgrade takes from the old room, read under its lock.
struct OldRoom {
    create: JsonValue,
    last_event: Option<ruma::OwnedEventId>,
    state: Vec<(String, JsonValue)>,
    power_levels: Map<String, JsonValue>,
    canonical_alias: Option<JsonValue>,
    bans: Vec<(OwnedUserId, Option<String>)>,
    /// The upgrader was a creator with unlimited power (room version 12 and later).
    upgrader_privileged: bool,
    public_join_rule: bool,
}

impl Rooms {
    /// Upgrades the room; returns the replacement room's ID.
    pub async fn upgrade_room(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        new_version: &RoomVersionId,
        additional_creators: Vec<OwnedUserId>,
    ) -> Result<OwnedRoomId> {
        if !CREATABLE_VERSIONS.contains(new_version) {
            return Err(Error::UnsupportedRoomVersion(format!(
                "This server cannot create rooms of version {new_version}; it creates versions 10, 11 and 12"
            )));
        }
        let rules = new_version
            .rules()
            .ok_or_else(|| Error::Internal(format!("no rules for room version {new_version}")))?;
        let old = self.read_old_room(user_id, room_id).await?;
        let creators_privileged = rules.authorization.explicitly_privilege_room_creators;

        let mut create = Map::new();
        let mut predecessor = json!({ "room_id": room_id });
        if let Some(event_id) = &old.last_event {
            predecessor["event_id"] = json!(event_id);
        }
        create.insert("predecessor".to_owned(), predecessor);
        if let Some(kind) = old.create.get("type") {
            create.insert("type".to_owned(), kind.clone());
        }
        if old.create.get("m.federate") == Some(&JsonValue::Bool(false)) {
            create.insert("m.federate".to_owned(), JsonValue::Bool(false));
        }
        if rules.authorization.additional_room_creators && !additional_creators.is_empty() {
            create.insert("additional_creators".to_owned(), json!(additional_creators));
        }

        let mut final_levels = old.power_levels.clone();
        if creators_privileged {
            // Creators of the new room have unlimited power and may not be listed.
            remove_users(
                &mut final_levels,
                std::iter::once(user_id).chain(additional_creators.iter().map(|u| &**u)),
            );
        } else if old.upgrader_privileged {
            set_user_level(&mut final_levels, user_id, 100);
        }
        let mut initial_levels = final_levels.clone();
        let raised = !creators_privileged && raise_to_send_everything(&mut initial_levels, user_id);

        let request = CreateRoom {
            creation_content: Some(JsonValue::Object(create)),
            initial_state: old
                .state
                .iter()
                .map(|(kind, content)| (kind.clone(), String::new(), content.clone()))
                .collect(),
            power_level_content_override: Some(JsonValue::Object(initial_levels)),
            preset: Some(
                if old.public_join_rule {
                    "public_chat"
                } else {
                    "private_chat"
                }
                .to_owned(),
            ),
            room_version: Some(new_version.clone()),
            public: self.store.room_published(room_id).await?.unwrap_or(false),
            ..CreateRoom::default()
        };
        let new_room = self.create_room(user_id, request).await?;

        for (banned, reason) in &old.bans {
            let ban = MembershipChange {
                sender: user_id,
                target: banned,
                membership: "ban",
                reason: reason.as_deref(),
            };
            self.change_membership(&new_room, ban, false).await?;
        }
        if raised {
            self.send_state(
                user_id,
                &new_room,
                StateEventType::RoomPowerLevels,
                String::new(),
                JsonValue::Object(final_levels),
            )
            .await?;
        }

        self.send_state(
            user_id,
            room_id,
            StateEventType::RoomTombstone,
            String::new(),
            json!({ "body": "This room has been replaced", "replacement_room": new_room }),
        )
        .await?;
        self.move_aliases(user_id, room_id, &new_room, old.canonical_alias)
            .await?;
        self.restrict_old_room(user_id, room_id, old.power_levels)
            .await?;
        if self.store.room_published(room_id).await? == Some(true) {
            self.store.set_room_published(room_id, false).await?;
        }
        Ok(new_room)
    }

    /// Checks the upgrader may send the tombstone and reads what moves to the new room.
    async fn read_old_room(&self, user_id: &UserId, room_id: &RoomId) -> Result<OldRoom> {
        let not_allowed = || Error::Forbidden("You cannot upgrade this room".to_owned());
        if self.membership(room_id, user_id).await?.as_deref() != Some("join") {
            return Err(not_allowed());
        }
        let guard = self.lock(room_id).await?;
        let room = guard
            .as_ref()
            .ok_or_else(|| Error::NotFound(format!("Room {room_id} not found")))?;
        let levels = power_levels(room);
        if !levels.user_can_send_state(user_id, StateEventType::RoomTombstone) {
            return Err(not_allowed());
        }
        let content = |kind: StateEventType| room.get(&kind, "").map(|pdu| pdu.content_value());
        let state = TRANSFERRED_STATE
            .iter()
            .filter_map(|kind| Some((kind.to_string(), content(StateEventType::from(*kind))?)))
            .collect();
        let mut power_levels = match content(StateEventType::RoomPowerLevels) {
            Some(JsonValue::Object(levels)) => levels,
            _ => Map::new(),
        };
        with_defaults(&mut power_levels);
        if power_levels
            .get("users")
            .is_none_or(|users| !users.is_object())
            && !room.rules.authorization.explicitly_privilege_room_creators
        {
            // Without power levels, the creator has 100 (spec: auth rules).
            let mut users = Map::new();
            for creator in creators(room) {
                users.insert(creator.to_string(), json!(100));
            }
            power_levels.insert("users".to_owned(), JsonValue::Object(users));
        }
        let bans = room
            .state
            .iter()
            .filter(|((kind, _), pdu)| {
                *kind == StateEventType::RoomMember && pdu.membership().as_deref() == Some("ban")
            })
            .filter_map(|((_, key), pdu)| {
                let reason = pdu
                    .content_value()
                    .get("reason")
                    .and_then(JsonValue::as_str)
                    .map(str::to_owned);
                Some((UserId::parse(key).ok()?, reason))
            })
            .collect();
        let public_join_rule = content(StateEventType::RoomJoinRules)
            .is_some_and(|c| c.get("join_rule").and_then(JsonValue::as_str) == Some("public"));
        Ok(OldRoom {
            create: content(StateEventType::RoomCreate).unwrap_or_default(),
            last_event: room.extremities.first().cloned(),
            state,
            power_levels,
            canonical_alias: content(StateEventType::RoomCanonicalAlias),
            bans,
            upgrader_privileged: levels.for_user(user_id) == UserPowerLevel::Infinite,
            public_join_rule,
        })
    }

    /// Local aliases now point to the new room; the canonical alias moves with them.
    async fn move_aliases(
        &self,
        user_id: &UserId,
        old_room: &RoomId,
        new_room: &RoomId,
        canonical_alias: Option<JsonValue>,
    ) -> Result<()> {
        let moved = self.store.room_aliases(old_room).await?;
        self.store.repoint_aliases(old_room, new_room).await?;
        let Some(canonical) = canonical_alias else {
            return Ok(());
        };
        let named = canonical_aliases(&canonical);
        if named.is_empty() {
            return Ok(());
        }
        match self
            .send_state(
                user_id,
                old_room,
                StateEventType::RoomCanonicalAlias,
                String::new(),
                json!({}),
            )
            .await
        {
            Ok(_) | Err(Error::Forbidden(_)) => {}
            Err(e) => return Err(e),
        }
        if let Some(content) = canonical_alias_for(&canonical, &moved) {
            self.send_state(
                user_id,
                new_room,
                StateEventType::RoomCanonicalAlias,
                String::new(),
                content,
            )
            .await?;
        }
        Ok(())
    }

    /// Raises `events_default` and `invite` in the old room so that ordinary members can
    /// neither talk nor invite, as the spec suggests; skipped if the upgrader may not.
    async fn restrict_old_room(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        mut levels: Map<String, JsonValue>,
    ) -> Result<()> {
        if !restrict(&mut levels) {
            return Ok(());
        }
        match self
            .send_state(
                user_id,
                room_id,
                StateEventType::RoomPowerLevels,
                String::new(),
                JsonValue::Object(levels),
            )
            .await
        {
            Ok(_) | Err(Error::Forbidden(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn level(levels: &Map<String, JsonValue>, key: &str) -> i64 {
    levels.get(key).and_then(JsonValue::as_i64).unwrap_or(0)
}

/// Fills in the spec's defaults, so that the content means the same in the new room whatever
/// defaults room creation would apply.
fn with_defaults(levels: &mut Map<String, JsonValue>) {
    for (key, default) in POWER_LEVEL_DEFAULTS {
        levels.entry(key).or_insert(json!(default));
    }
    levels.entry("events").or_insert(json!({}));
    levels
        .entry("notifications")
        .or_insert(json!({ "room": 50 }));
}

fn remove_users<'a>(levels: &mut Map<String, JsonValue>, users: impl Iterator<Item = &'a UserId>) {
    if let Some(JsonValue::Object(listed)) = levels.get_mut("users") {
        for user in users {
            listed.remove(user.as_str());
        }
    }
}

fn set_user_level(levels: &mut Map<String, JsonValue>, user_id: &UserId, value: i64) {
    let users = levels
        .entry("users")
        .or_insert_with(|| JsonValue::Object(Map::new()));
    if !users.is_object() {
        *users = JsonValue::Object(Map::new());
    }
    users[user_id.as_str()] = json!(value);
}

/// Gives the upgrader the level to send every event the copy needs (Synapse's approach);
/// `true` if their level had to change.
fn raise_to_send_everything(levels: &mut Map<String, JsonValue>, user_id: &UserId) -> bool {
    let events_max = levels
        .get("events")
        .and_then(JsonValue::as_object)
        .into_iter()
        .flat_map(|events| events.values())
        .filter_map(JsonValue::as_i64)
        .max()
        .unwrap_or(i64::MIN);
    let needed = [
        level(levels, "state_default"),
        level(levels, "ban"),
        events_max,
    ]
    .into_iter()
    .max()
    .unwrap_or_default();
    let current = levels
        .get("users")
        .and_then(|users| users.get(user_id.as_str()))
        .and_then(JsonValue::as_i64)
        .unwrap_or_else(|| level(levels, "users_default"));
    if current >= needed {
        return false;
    }
    set_user_level(levels, user_id, needed);
    true
}

/// Sets `events_default` and `invite` to at least `max(50, users_default + 1)`; `true` if
/// anything changed.
fn restrict(levels: &mut Map<String, JsonValue>) -> bool {
    let restricted = level(levels, "users_default")
        .saturating_add(1)
        .clamp(50, i64::from(Int::MAX));
    let mut changed = false;
    for key in ["events_default", "invite"] {
        if level(levels, key) < restricted {
            levels.insert(key.to_owned(), json!(restricted));
            changed = true;
        }
    }
    changed
}

/// The aliases a canonical alias content names.
fn canonical_aliases(content: &JsonValue) -> Vec<OwnedRoomAliasId> {
    let alt = content
        .get("alt_aliases")
        .and_then(JsonValue::as_array)
        .into_iter()
        .flatten();
    content
        .get("alias")
        .into_iter()
        .chain(alt)
        .filter_map(|a| a.as_str().and_then(|a| RoomAliasId::parse(a).ok()))
        .collect()
}

/// The canonical alias content for the new room: the old one's aliases that moved with it.
fn canonical_alias_for(content: &JsonValue, moved: &[OwnedRoomAliasId]) -> Option<JsonValue> {
    let kept = |value: &JsonValue| {
        value
            .as_str()
            .is_some_and(|a| moved.iter().any(|m| m.as_str() == a))
    };
    let mut new = Map::new();
    if let Some(alias) = content.get("alias").filter(|a| kept(a)) {
        new.insert("alias".to_owned(), alias.clone());
    }
    let alt: Vec<JsonValue> = content
        .get("alt_aliases")
        .and_then(JsonValue::as_array)
        .into_iter()
        .flatten()
        .filter(|a| kept(a))
        .cloned()
        .collect();
    if !alt.is_empty() {
        new.insert("alt_aliases".to_owned(), JsonValue::Array(alt));
    }
    (!new.is_empty()).then_some(JsonValue::Object(new))
}

#[cfg(test)]
mod tests {
    use ruma::{owned_room_alias_id, user_id};
    use serde_json::{Map, Value as JsonValue, json};

    use super::{canonical_alias_for, raise_to_send_everything, restrict, with_defaults};

    fn object(value: JsonValue) -> Map<String, JsonValue> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn the_upgrader_is_raised_to_the_highest_needed_level() {
        let mut levels = object(json!({
            "users": { "@a:x.org": 60 },
            "events": { "m.room.server_acl": 90, "m.room.tombstone": 60 },
        }));
        with_defaults(&mut levels);
        assert!(raise_to_send_everything(&mut levels, user_id!("@a:x.org")));
        assert_eq!(levels["users"]["@a:x.org"], 90);
        assert!(!raise_to_send_everything(&mut levels, user_id!("@a:x.org")));
        assert_eq!(levels["state_default"], 50);
        assert_eq!(levels["invite"], 0);
    }

    #[test]
    fn the_old_room_is_restricted_above_ordinary_members() {
        let mut levels = object(json!({ "users_default": 0, "events_default": 0, "invite": 0 }));
        assert!(restrict(&mut levels));
        assert_eq!(levels["events_default"], 50);
        assert_eq!(levels["invite"], 50);
        assert!(!restrict(&mut levels));

        let mut levels = object(json!({ "users_default": 70, "events_default": 0, "invite": 100 }));
        assert!(restrict(&mut levels));
        assert_eq!(levels["events_default"], 71);
        assert_eq!(levels["invite"], 100);
    }

    #[test]
    fn only_moved_aliases_stay_canonical() {
        let content = json!({ "alias": "#a:x.org", "alt_aliases": ["#b:x.org", "#c:y.org"] });
        let moved = [
            owned_room_alias_id!("#a:x.org"),
            owned_room_alias_id!("#b:x.org"),
        ];
        assert_eq!(
            canonical_alias_for(&content, &moved),
            Some(json!({ "alias": "#a:x.org", "alt_aliases": ["#b:x.org"] }))
        );
        assert_eq!(canonical_alias_for(&content, &[]), None);
    }
}
