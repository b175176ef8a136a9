//! `POST /createRoom` (spec: "Creation"): the create event, the creator's join, power levels,
//! alias, preset, initial state, name, topic and invites, persisted as one write.

use std::{collections::HashMap, sync::Arc};

use rand::{Rng, distributions::Alphanumeric};
use ruma::{
    MilliSecondsSinceUnixEpoch, OwnedRoomAliasId, OwnedRoomId, OwnedUserId, RoomVersionId, UInt,
    UserId, events::TimelineEventType,
};
use serde_json::{Map, Value as JsonValue, json};
use tokio::sync::Mutex;

use crate::{
    Error, Result,
    events::{NewEvent, ReferenceHashes},
    store::NewRoom,
};

use super::{EventSource, RoomState, Rooms};

/// Room versions new rooms may be created in.
pub const CREATABLE_VERSIONS: [RoomVersionId; 3] =
    [RoomVersionId::V10, RoomVersionId::V11, RoomVersionId::V12];

/// A createRoom request, its JSON parts as the client sent them.
#[derive(Debug, Default)]
pub struct CreateRoom {
    pub creation_content: Option<JsonValue>,
    /// `(type, state_key, content)` of each initial state event.
    pub initial_state: Vec<(String, String, JsonValue)>,
    pub invite: Vec<OwnedUserId>,
    pub is_direct: bool,
    pub name: Option<String>,
    pub topic: Option<String>,
    pub power_level_content_override: Option<JsonValue>,
    /// `private_chat`, `trusted_private_chat` or `public_chat`.
    pub preset: Option<String>,
    pub room_alias_name: Option<String>,
    pub room_version: Option<RoomVersionId>,
    /// `visibility: public`: listed in the public room directory.
    pub public: bool,
}

impl Rooms {
    pub async fn create_room(&self, creator: &UserId, request: CreateRoom) -> Result<OwnedRoomId> {
        let version = request
            .room_version
            .clone()
            .unwrap_or_else(|| self.config.rooms.default_room_version.clone());
        if !CREATABLE_VERSIONS.contains(&version) {
            return Err(Error::UnsupportedRoomVersion(format!(
                "This server cannot create rooms of version {version}; it creates versions 10, 11 and 12"
            )));
        }
        let rules = version
            .rules()
            .ok_or_else(|| Error::Internal(format!("no rules for room version {version}")))?;
        let preset = match request.preset.as_deref() {
            Some(preset @ ("private_chat" | "trusted_private_chat" | "public_chat")) => preset,
            Some(other) => {
                return Err(Error::InvalidParam(format!("Unknown preset {other:?}")));
            }
            None if request.public => "public_chat",
            None => "private_chat",
        };
        let alias = request
            .room_alias_name
            .as_deref()
            .map(|name| self.local_alias(name))
            .transpose()?;
        for (kind, _, _) in &request.initial_state {
            if kind == "m.room.create" || kind == "m.room.member" {
                return Err(Error::InvalidParam(format!(
                    "initial_state may not contain {kind} events"
                )));
            }
        }

        let v12 = rules.authorization.explicitly_privilege_room_creators;
        let trusted = preset == "trusted_private_chat";
        let mut create = match request.creation_content.clone() {
            Some(JsonValue::Object(content)) => content,
            None => Map::new(),
            Some(_) => {
                return Err(Error::BadJson(
                    "creation_content must be an object".to_owned(),
                ));
            }
        };
        create.insert(
            "room_version".to_owned(),
            JsonValue::String(version.to_string()),
        );
        if !rules.authorization.use_room_create_sender {
            create.insert("creator".to_owned(), JsonValue::String(creator.to_string()));
        }
        if v12 && trusted {
            let mut creators: Vec<JsonValue> = create
                .get("additional_creators")
                .and_then(JsonValue::as_array)
                .cloned()
                .unwrap_or_default();
            for invitee in &request.invite {
                let invitee = JsonValue::String(invitee.to_string());
                if !creators.contains(&invitee) {
                    creators.push(invitee);
                }
            }
            create.insert("additional_creators".to_owned(), JsonValue::Array(creators));
        }

        let room_id = if rules.authorization.room_create_event_id_as_room_id {
            None
        } else {
            Some(self.new_room_id()?)
        };
        let mut room = RoomState {
            room_id: room_id.clone().unwrap_or_else(|| {
                // Replaced by the create event's ID below; never stored.
                OwnedRoomId::try_from("!pending").expect("a syntactically valid room ID")
            }),
            version: version.clone(),
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
        };

        let mut events = vec![NewEvent::state(
            TimelineEventType::RoomCreate,
            "",
            JsonValue::Object(create),
        )];
        let join = self
            .with_profile(creator, json!({ "membership": "join" }))
            .await?;
        events.push(NewEvent::state(
            TimelineEventType::RoomMember,
            creator.as_str(),
            join,
        ));
        events.push(NewEvent::state(
            TimelineEventType::RoomPowerLevels,
            "",
            power_levels(creator, &request, preset, v12)?,
        ));
        if let Some(alias) = &alias {
            events.push(NewEvent::state(
                TimelineEventType::RoomCanonicalAlias,
                "",
                json!({ "alias": alias }),
            ));
        }
        let given = |kind: &str| {
            request
                .initial_state
                .iter()
                .any(|(k, key, _)| k == kind && key.is_empty())
        };
        let (join_rule, guest_access) = match preset {
            "public_chat" => ("public", "forbidden"),
            _ => ("invite", "can_join"),
        };
        if !given("m.room.join_rules") {
            events.push(NewEvent::state(
                TimelineEventType::RoomJoinRules,
                "",
                json!({ "join_rule": join_rule }),
            ));
        }
        if !given("m.room.history_visibility") {
            events.push(NewEvent::state(
                TimelineEventType::RoomHistoryVisibility,
                "",
                json!({ "history_visibility": "shared" }),
            ));
        }
        if !given("m.room.guest_access") {
            events.push(NewEvent::state(
                TimelineEventType::RoomGuestAccess,
                "",
                json!({ "guest_access": guest_access }),
            ));
        }
        for (kind, state_key, content) in &request.initial_state {
            events.push(NewEvent::state(
                TimelineEventType::from(kind.as_str()),
                state_key.as_str(),
                content.clone(),
            ));
        }
        if let Some(name) = &request.name {
            events.push(NewEvent::state(
                TimelineEventType::RoomName,
                "",
                json!({ "name": name }),
            ));
        }
        if let Some(topic) = &request.topic {
            events.push(NewEvent::state(
                TimelineEventType::RoomTopic,
                "",
                json!({ "topic": topic, "m.topic": [{ "body": topic, "mimetype": "text/plain" }] }),
            ));
        }
        // Users of other servers are invited once the room exists, through their servers
        // (`Services::create_room`).
        for invitee in request
            .invite
            .iter()
            .filter(|user| user.server_name() == self.config.server_name)
        {
            let mut content = self
                .with_profile(invitee, json!({ "membership": "invite" }))
                .await?;
            if request.is_direct {
                content["is_direct"] = JsonValue::Bool(true);
            }
            events.push(NewEvent::state(
                TimelineEventType::RoomMember,
                invitee.as_str(),
                content,
            ));
        }

        let mut rows = Vec::with_capacity(events.len());
        for (i, new) in events.into_iter().enumerate() {
            let (pdu, row) = self
                .append(&mut room, creator, new, None)
                .map_err(|e| match e {
                    Error::Forbidden(reason) => Error::InvalidRoomState(reason),
                    other => other,
                })?;
            if i == 0 && room_id.is_none() {
                room.room_id = pdu.room_id.clone();
            }
            rows.push(row);
        }
        let room_id = room.room_id.clone();
        if let Some(alias) = &alias
            && !self.store.create_alias(alias, &room_id, creator).await?
        {
            return Err(Error::RoomInUse(format!(
                "The alias {alias} is already in use"
            )));
        }
        let slot = Arc::new(Mutex::new(None));
        let mut guard = slot.clone().lock_owned().await;
        self.rooms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(room_id.clone(), slot);
        let new_room = NewRoom {
            version,
            creator: creator.to_string(),
            created_ts: i64::from(MilliSecondsSinceUnixEpoch::now().get()),
            published: request.public,
        };
        let pending = self
            .enqueue(&mut room, rows, Some(new_room), EventSource::Local, None)
            .await;
        *guard = Some(room);
        drop(guard);
        let outcome = match pending {
            Ok(pending) => self.committed(&room_id, pending).await,
            Err(e) => {
                self.invalidate(&room_id).await;
                Err(e)
            }
        };
        if let Err(e) = outcome {
            if let Some(alias) = &alias {
                self.store.delete_alias(alias).await?;
            }
            return Err(e);
        }
        Ok(room_id)
    }

    fn new_room_id(&self) -> Result<OwnedRoomId> {
        let localpart: String = rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(18)
            .map(char::from)
            .collect();
        OwnedRoomId::try_from(format!("!{localpart}:{}", self.config.server_name))
            .map_err(|e| Error::Internal(e.to_string()))
    }

    /// `#name:our.server` from a `room_alias_name`.
    pub(super) fn local_alias(&self, name: &str) -> Result<OwnedRoomAliasId> {
        if name.is_empty() || name.contains([':', '#']) || name.chars().any(char::is_whitespace) {
            return Err(Error::InvalidParam(format!(
                "room_alias_name {name:?} may not be empty or contain ':', '#' or whitespace"
            )));
        }
        OwnedRoomAliasId::try_from(format!("#{name}:{}", self.config.server_name))
            .map_err(|e| Error::InvalidParam(format!("Invalid room alias: {e}")))
    }
}

/// Synapse's default power levels, the preset's tweaks, then the client's override on top.
fn power_levels(
    creator: &UserId,
    request: &CreateRoom,
    preset: &str,
    creators_privileged: bool,
) -> Result<JsonValue> {
    let mut users = Map::new();
    if !creators_privileged {
        users.insert(creator.to_string(), json!(100));
        if preset == "trusted_private_chat" {
            for invitee in &request.invite {
                users.insert(invitee.to_string(), json!(100));
            }
        }
    }
    let mut content = json!({
        "users": users,
        "users_default": 0,
        "events": {
            "m.room.name": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50,
            "m.room.avatar": 50,
            "m.room.tombstone": 100,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": if preset == "public_chat" { 50 } else { 0 },
        "historical": 100,
        "notifications": { "room": 50 },
    });
    match &request.power_level_content_override {
        None => {}
        Some(JsonValue::Object(overrides)) => {
            for (key, value) in overrides {
                content[key.as_str()] = value.clone();
            }
        }
        Some(_) => {
            return Err(Error::BadJson(
                "power_level_content_override must be an object".to_owned(),
            ));
        }
    }
    Ok(content)
}

#[cfg(test)]
mod tests {
    use ruma::user_id;

    use super::{CreateRoom, power_levels};

    #[test]
    fn creators_of_v12_rooms_are_not_listed_in_power_levels() {
        let request = CreateRoom::default();
        let v11 = power_levels(user_id!("@a:x.org"), &request, "private_chat", false).unwrap();
        assert_eq!(v11["users"]["@a:x.org"], 100);
        let v12 = power_levels(user_id!("@a:x.org"), &request, "private_chat", true).unwrap();
        assert!(v12["users"].as_object().unwrap().is_empty());
    }

    #[test]
    fn the_override_replaces_top_level_keys() {
        let request = CreateRoom {
            power_level_content_override: Some(
                serde_json::json!({ "events_default": 50, "users": {} }),
            ),
            ..CreateRoom::default()
        };
        let levels = power_levels(user_id!("@a:x.org"), &request, "public_chat", false).unwrap();
        assert_eq!(levels["events_default"], 50);
        assert_eq!(levels["invite"], 50);
        assert!(levels["users"].as_object().unwrap().is_empty());
    }
}
