//! Leaving rooms, including rejecting an invite from another server to a room this server is
//! not in (spec: Server-Server API, "Leaving Rooms (Rejecting Invites)"): the leave is made
//! through the inviting server with `make_leave`/`send_leave`.

use ruma::{
    CanonicalJsonValue, MilliSecondsSinceUnixEpoch, OwnedServerName, RoomId, UserId,
    api::federation::membership::{create_leave_event, prepare_leave_event},
};
use serde_json::json;

use super::join::pdu_of;
use crate::{
    Error, Result, Services,
    events::{
        Pdu, ReferenceHashes, is_format_v1, reference_list, reference_sha256, sign_and_identify,
    },
    rooms::{MembershipChange, member_content},
    store::PendingMembership,
};

impl Services {
    /// `user_id` leaves the room, rejects their invite to it, or rescinds their knock.
    pub async fn leave(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        reason: Option<&str>,
    ) -> Result<()> {
        let change = MembershipChange {
            sender: user_id,
            target: user_id,
            membership: "leave",
            reason,
        };
        if self.rooms.room_version(room_id).await?.is_none()
            && let Some(pending) = self.rooms.pending_membership(room_id, user_id).await?
        {
            return self
                .leave_out_of_band(user_id, room_id, reason, pending)
                .await;
        }
        self.rooms.change_membership(room_id, change, false).await
    }

    /// Rejects an invite through the server that sent it, or rescinds a knock through the
    /// server knocked through. When that server cannot be reached or refuses, it is still
    /// done here (as Synapse does): the user asked to be rid of it, and the room's servers
    /// only learn of it later, if ever.
    async fn leave_out_of_band(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        reason: Option<&str>,
        pending: PendingMembership,
    ) -> Result<()> {
        let server = pending.resident_server()?;
        let leave = match self.remote_leave(&server, user_id, room_id, reason).await {
            Ok(leave) => leave,
            Err(e) => {
                tracing::info!(%room_id, %server, error = %e, "rejecting the invite here only");
                self.local_rejection(user_id, room_id, reason, &pending)?
            }
        };
        self.rooms.store_out_of_band_membership(&leave, None).await
    }

    async fn remote_leave(
        &self,
        server: &OwnedServerName,
        user_id: &UserId,
        room_id: &RoomId,
        reason: Option<&str>,
    ) -> Result<Pdu> {
        let client = &self.federation.client;
        let template = client
            .send(
                server,
                prepare_leave_event::v1::Request::new(room_id.to_owned(), user_id.to_owned()),
            )
            .await?;
        let version = template.room_version.unwrap_or(ruma::RoomVersionId::V1);
        let rules = version
            .rules()
            .filter(|_| super::FEDERATED_ROOM_VERSIONS.contains(&version))
            .ok_or_else(|| Error::UnsupportedRoomVersion(version.to_string()))?;
        let (event_id, object) = self.sign_member_template(
            &template.event,
            user_id,
            room_id,
            member_content("leave", reason),
            &rules,
        )?;
        let pdu =
            serde_json::value::to_raw_value(&object).map_err(|e| Error::Internal(e.to_string()))?;
        client
            .send(
                server,
                create_leave_event::v2::Request::new(room_id.to_owned(), event_id.clone(), pdu),
            )
            .await?;
        pdu_of(event_id, room_id, &object)
    }

    /// A leave built here on the invite alone, for when the inviting server cannot take it.
    fn local_rejection(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        reason: Option<&str>,
        pending: &PendingMembership,
    ) -> Result<Pdu> {
        let version = &pending.room.version;
        let rules = version
            .rules()
            .ok_or_else(|| Error::UnsupportedRoomVersion(version.to_string()))?;
        let depth = serde_json::from_str::<serde_json::Value>(&pending.event.json)
            .ok()
            .and_then(|event| event["depth"].as_u64())
            .unwrap_or(0);
        let invite = [pending.event.event_id.clone()];
        let hashes: ReferenceHashes = if is_format_v1(&rules) {
            let hash = reference_sha256(&pending.event.json, &rules)?;
            [(pending.event.event_id.clone(), hash)].into()
        } else {
            ReferenceHashes::new()
        };
        let references = reference_list(&invite, &hashes, &rules)?;
        let event = json!({
            "room_id": room_id,
            "sender": user_id,
            "state_key": user_id,
            "type": "m.room.member",
            "content": member_content("leave", reason),
            "prev_events": references,
            "auth_events": references,
            "depth": depth.saturating_add(1),
            "origin_server_ts": MilliSecondsSinceUnixEpoch::now(),
        });
        let mut object = match CanonicalJsonValue::try_from(event) {
            Ok(CanonicalJsonValue::Object(object)) => object,
            _ => return Err(Error::Internal("the leave is not an object".to_owned())),
        };
        let event_id = sign_and_identify(
            &mut object,
            &rules,
            &self.config.server_name,
            self.signing_key.pair(),
        )
        .map_err(|e| Error::Internal(format!("cannot sign the leave: {e}")))?;
        pdu_of(event_id, room_id, &object)
    }
}
