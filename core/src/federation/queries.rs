//! Lookups that a local user's server answers itself and a remote one's server answers over
//! federation: profiles and room aliases.

use std::collections::BTreeMap;

use ruma::{
    OwnedRoomId, OwnedServerName, RoomAliasId, UserId,
    api::federation::query::{get_profile_information, get_room_information},
};
use serde_json::Value as JsonValue;

use crate::{Error, Result, Services};

impl Services {
    /// A user's whole profile.
    pub async fn profile(&self, user_id: &UserId) -> Result<BTreeMap<String, JsonValue>> {
        if user_id.server_name() == self.config.server_name {
            return self.users.profile(user_id).await;
        }
        let request = get_profile_information::v1::Request::new(user_id.to_owned());
        let response = self
            .federation
            .client
            .send(user_id.server_name(), request)
            .await?;
        Ok(response
            .data
            .iter()
            .map(|(field, value)| (field.clone(), value.clone()))
            .collect())
    }

    /// One field of a user's profile.
    pub async fn profile_field(&self, user_id: &UserId, field: &str) -> Result<JsonValue> {
        if user_id.server_name() == self.config.server_name {
            return self.users.profile_field(user_id, field).await;
        }
        self.profile(user_id)
            .await?
            .remove(field)
            .ok_or_else(|| Error::NotFound(format!("The profile has no field {field:?}")))
    }

    /// The room an alias names and servers that can help join it.
    pub async fn resolve_alias(
        &self,
        alias: &RoomAliasId,
    ) -> Result<(OwnedRoomId, Vec<OwnedServerName>)> {
        if alias.server_name() == self.config.server_name {
            return self.rooms.resolve_alias(alias).await;
        }
        let request = get_room_information::v1::Request::new(alias.to_owned());
        let response = self
            .federation
            .client
            .send(alias.server_name(), request)
            .await?;
        Ok((response.room_id, response.servers))
    }
}
