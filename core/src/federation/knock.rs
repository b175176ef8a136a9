//! Knocking on a room held by other servers (spec: Server-Server API, "Knocking upon a
//! room"): ask one of them for a knock template (`make_knock`), sign it, send it
//! (`send_knock`), and keep the knock with the room's stripped state that comes back, for the
//! user's sync. Being let in arrives later as an invite.

use ruma::{
    OwnedServerName, RoomId, UserId,
    api::federation::membership::{create_knock_event, prepare_knock_event},
};

use super::{
    FEDERATED_ROOM_VERSIONS,
    invite::stripped_event,
    join::{RemoteMembership, pdu_of},
};
use crate::{
    Error, Result, Services,
    rooms::{MembershipChange, member_content},
};

impl Services {
    /// `user_id` knocks on the room: locally if this server is in it, otherwise through the
    /// first of `servers` that takes the knock. A room this server knows but left is knocked
    /// on through the servers last known in it too, as its copy here is stale (see
    /// [`Services::join`]).
    pub async fn knock(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        servers: &[OwnedServerName],
        reason: Option<&str>,
    ) -> Result<()> {
        let mut candidates = servers.to_vec();
        if self.rooms.room_version(room_id).await?.is_some() {
            let Some(known) = self.rooms.rejoin_servers(room_id).await? else {
                let change = MembershipChange {
                    sender: user_id,
                    target: user_id,
                    membership: "knock",
                    reason,
                };
                return self.rooms.change_membership(room_id, change, false).await;
            };
            candidates.extend(known);
        }
        self.through_first_of(
            &candidates,
            user_id,
            room_id,
            RemoteMembership::Knock,
            reason,
        )
        .await
    }

    pub(super) async fn knock_through(
        &self,
        server: &OwnedServerName,
        user_id: &UserId,
        room_id: &RoomId,
        reason: Option<&str>,
    ) -> Result<()> {
        let client = &self.federation.client;
        let mut request =
            prepare_knock_event::v1::Request::new(room_id.to_owned(), user_id.to_owned());
        request.ver = FEDERATED_ROOM_VERSIONS.to_vec();
        let template = client.send(server, request).await?;
        let version = template.room_version;
        let rules = version
            .rules()
            .filter(|_| FEDERATED_ROOM_VERSIONS.contains(&version))
            .ok_or_else(|| {
                Error::UnsupportedRoomVersion(format!(
                    "{room_id} is version {version}, which this server cannot knock on"
                ))
            })?;
        let content = self
            .rooms
            .with_profile(user_id, member_content("knock", reason))
            .await?;
        let (event_id, object) =
            self.sign_member_template(&template.event, user_id, room_id, content, &rules)?;
        let pdu =
            serde_json::value::to_raw_value(&object).map_err(|e| Error::Internal(e.to_string()))?;
        let response = client
            .send(
                server,
                create_knock_event::v1::Request::new(room_id.to_owned(), event_id.clone(), pdu),
            )
            .await?;
        let stripped = response
            .knock_room_state
            .iter()
            .filter_map(stripped_event)
            .collect();
        let knock = pdu_of(event_id, room_id, &object)?;
        self.rooms
            .store_out_of_band_membership(&knock, Some((version, stripped, Some(server.clone()))))
            .await
    }
}
