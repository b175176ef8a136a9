//! Lookups that a local user's server answers itself and a remote one's server answers over
//! federation: profiles, room aliases and the published room directory.

use std::collections::BTreeMap;

use ruma::{
    OwnedRoomId, OwnedServerName, RoomAliasId, ServerName, UInt, UserId,
    api::federation::{
        directory::get_public_rooms_filtered,
        query::{get_profile_information, get_room_information},
    },
    directory::{Filter, RoomNetwork},
};
use serde_json::Value as JsonValue;

use crate::{
    Error, Result, Services,
    rooms::{PublicRoomsPage, PublicRoomsQuery},
};

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

    /// A page of the published room directory of `server` (this server's by default), asked
    /// over federation when it is another's (`/publicRooms?server=`).
    pub async fn public_rooms(
        &self,
        server: Option<&ServerName>,
        limit: Option<UInt>,
        since: Option<String>,
        filter: Filter,
        room_network: RoomNetwork,
    ) -> Result<PublicRoomsPage> {
        let Some(server) = server.filter(|server| **server != self.config.server_name) else {
            let query = PublicRoomsQuery::filtered(limit, since, &filter, &room_network);
            return self.rooms.public_rooms(query).await;
        };
        let mut request = get_public_rooms_filtered::v1::Request::new();
        request.limit = limit;
        request.since = since;
        request.filter = filter;
        request.room_network = room_network;
        let response = self.federation.client.send(server, request).await?;
        Ok(PublicRoomsPage {
            total_room_count_estimate: response
                .total_room_count_estimate
                .unwrap_or_else(|| UInt::try_from(response.chunk.len()).unwrap_or(UInt::MAX)),
            chunk: response.chunk,
            next_batch: response.next_batch,
            prev_batch: response.prev_batch,
        })
    }
}
