//! Room aliases (spec: "Room aliases", `/directory/room/{roomAlias}`): creating, resolving and
//! deleting local aliases, and listing a room's local aliases. Who may do what follows
//! Synapse: members create, the creator or a room moderator deletes, server admins do anything.

use ruma::{
    OwnedRoomAliasId, OwnedRoomId, OwnedServerName, OwnedUserId, RoomAliasId, RoomId, UserId,
    events::{
        StateEventType,
        room::power_levels::{RoomPowerLevels, RoomPowerLevelsEventContent},
    },
};
use serde_json::Value as JsonValue;

use crate::{Error, Result};

use super::{RoomState, Rooms};

impl Rooms {
    /// `PUT /directory/room/{roomAlias}`.
    pub async fn create_alias(
        &self,
        user_id: &UserId,
        alias: &RoomAliasId,
        room_id: &RoomId,
    ) -> Result<()> {
        if alias.server_name() != self.config.server_name {
            return Err(Error::InvalidParam(format!(
                "Room alias {alias} must be on this server ({})",
                self.config.server_name
            )));
        }
        // Server admins need not be in the room, but it must exist.
        if self.is_server_admin(user_id).await? {
            if self.store.room_version(room_id).await?.is_none() {
                return Err(Error::NotFound(format!("Room {room_id} not found")));
            }
        } else if self.membership(room_id, user_id).await?.as_deref() != Some("join") {
            return Err(Error::Forbidden(
                "You must be in the room to create an alias for it".to_owned(),
            ));
        }
        if !self.store.create_alias(alias, room_id, user_id).await? {
            return Err(Error::Conflict(format!(
                "Room alias {alias} already exists"
            )));
        }
        Ok(())
    }

    /// `GET /directory/room/{roomAlias}` for a local alias: the room and the servers that can
    /// help join it, this one first.
    pub async fn resolve_alias(
        &self,
        alias: &RoomAliasId,
    ) -> Result<(OwnedRoomId, Vec<OwnedServerName>)> {
        let room_id = self
            .store
            .alias_room(alias)
            .await?
            .ok_or_else(|| Error::NotFound(format!("Room alias {alias} not found")))?;
        let mut others: Vec<OwnedServerName> = self
            .store
            .joined_members(&room_id)
            .await?
            .iter()
            .map(|user| user.server_name().to_owned())
            .filter(|server| *server != self.config.server_name)
            .collect();
        others.sort();
        others.dedup();
        let mut servers = vec![self.config.server_name.clone()];
        servers.extend(others);
        Ok((room_id, servers))
    }

    /// `DELETE /directory/room/{roomAlias}`: by the alias's creator, a member who may change
    /// the room's canonical alias, or a server admin. The alias also leaves the room's
    /// `m.room.canonical_alias` when the deleting user may change it.
    pub async fn delete_alias(&self, user_id: &UserId, alias: &RoomAliasId) -> Result<()> {
        let (room_id, creator) = self
            .store
            .alias(alias)
            .await?
            .ok_or_else(|| Error::NotFound(format!("Room alias {alias} not found")))?;
        let allowed = creator == user_id
            || self.is_server_admin(user_id).await?
            || self.may_edit_room_listing(user_id, &room_id).await?;
        if !allowed {
            return Err(Error::Forbidden(
                "You may only delete aliases you created, unless you moderate the room".to_owned(),
            ));
        }
        if !self.store.delete_alias(alias).await? {
            return Err(Error::NotFound(format!("Room alias {alias} not found")));
        }
        let canonical = {
            let guard = self.lock(&room_id).await?;
            guard
                .as_ref()
                .and_then(|room| room.get(&StateEventType::RoomCanonicalAlias, ""))
                .map(|pdu| pdu.content_value())
        };
        let Some(content) = canonical.and_then(|c| without_alias(&c, alias)) else {
            return Ok(());
        };
        // The spec recommends deleting the alias even when the canonical alias event cannot be
        // updated by this user.
        match self
            .send_state(
                user_id,
                &room_id,
                StateEventType::RoomCanonicalAlias,
                String::new(),
                content,
            )
            .await
        {
            Ok(_) | Err(Error::Forbidden(_) | Error::BadAlias(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `GET /rooms/{roomId}/aliases`: for members, anyone if the room is world readable, and
    /// server admins.
    pub async fn local_aliases(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
    ) -> Result<Vec<OwnedRoomAliasId>> {
        let joined = self.membership(room_id, user_id).await?.as_deref() == Some("join");
        if !joined && !self.is_server_admin(user_id).await? {
            let world_readable = match self.lock(room_id).await {
                Ok(guard) => guard.as_ref().is_some_and(is_world_readable),
                Err(Error::NotFound(_)) => false,
                Err(e) => return Err(e),
            };
            if !world_readable {
                return Err(Error::Forbidden(format!(
                    "You are not a member of room {room_id}"
                )));
            }
        }
        Ok(self.store.room_aliases(room_id).await?)
    }

    pub(super) async fn is_server_admin(&self, user_id: &UserId) -> Result<bool> {
        if user_id.server_name() != self.config.server_name {
            return Ok(false);
        }
        Ok(self
            .store
            .account(user_id)
            .await?
            .is_some_and(|account| account.admin))
    }

    /// Whether the user moderates the room's listing: joined, with the power to change its
    /// canonical alias (Synapse's rule for aliases and directory visibility).
    pub(super) async fn may_edit_room_listing(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
    ) -> Result<bool> {
        if self.membership(room_id, user_id).await?.as_deref() != Some("join") {
            return Ok(false);
        }
        let guard = self.lock(room_id).await?;
        Ok(guard.as_ref().is_some_and(|room| {
            power_levels(room).user_can_send_state(user_id, StateEventType::RoomCanonicalAlias)
        }))
    }
}

/// The room's power levels as the auth rules read them, creators included.
pub(super) fn power_levels(room: &RoomState) -> RoomPowerLevels {
    let content = room
        .get(&StateEventType::RoomPowerLevels, "")
        .and_then(|pdu| {
            serde_json::from_str::<RoomPowerLevelsEventContent>(pdu.content.get()).ok()
        });
    RoomPowerLevels::new(content.into(), &room.rules.authorization, creators(room))
}

/// The sender of the create event and, where the room version has them, its additional
/// creators.
pub(super) fn creators(room: &RoomState) -> Vec<OwnedUserId> {
    let Some(create) = room.get(&StateEventType::RoomCreate, "") else {
        return Vec::new();
    };
    let mut creators = vec![create.sender.clone()];
    if room.rules.authorization.additional_room_creators {
        let content = create.content_value();
        let additional = content
            .get("additional_creators")
            .and_then(JsonValue::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str().and_then(|c| UserId::parse(c).ok()));
        creators.extend(additional);
    }
    creators
}

pub(super) fn is_world_readable(room: &RoomState) -> bool {
    room.get(&StateEventType::RoomHistoryVisibility, "")
        .is_some_and(|pdu| {
            pdu.content_value()
                .get("history_visibility")
                .and_then(JsonValue::as_str)
                == Some("world_readable")
        })
}

/// The canonical alias content without `alias`, if it named it.
fn without_alias(content: &JsonValue, alias: &RoomAliasId) -> Option<JsonValue> {
    let mut content = content.as_object()?.clone();
    let mut changed = false;
    if content.get("alias").and_then(JsonValue::as_str) == Some(alias.as_str()) {
        content.remove("alias");
        changed = true;
    }
    if let Some(JsonValue::Array(alt)) = content.get_mut("alt_aliases") {
        let before = alt.len();
        alt.retain(|a| a.as_str() != Some(alias.as_str()));
        changed |= alt.len() != before;
    }
    changed.then_some(JsonValue::Object(content))
}

#[cfg(test)]
mod tests {
    use ruma::room_alias_id;
    use serde_json::json;

    use super::without_alias;

    #[test]
    fn a_deleted_alias_leaves_the_canonical_alias_content() {
        let alias = room_alias_id!("#a:x.org");
        let content = json!({ "alias": "#a:x.org", "alt_aliases": ["#a:x.org", "#b:x.org"] });
        assert_eq!(
            without_alias(&content, alias),
            Some(json!({ "alt_aliases": ["#b:x.org"] }))
        );
        let content = json!({ "alias": "#b:x.org", "alt_aliases": ["#a:x.org"] });
        assert_eq!(
            without_alias(&content, alias),
            Some(json!({ "alias": "#b:x.org", "alt_aliases": [] }))
        );
        assert_eq!(without_alias(&json!({ "alias": "#b:x.org" }), alias), None);
    }
}
