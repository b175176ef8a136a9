//! Invites across servers (spec: Server-Server API, "Inviting to a room"): a local user
//! inviting a user of another server has that server sign the invite first; an invite from
//! another server to a local user is signed here and, when this server is not in the room,
//! kept for the user's sync.

use std::sync::Arc;

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, OwnedRoomId, OwnedServerName, OwnedUserId, RoomId,
    ServerName, UserId,
    api::federation::membership::{RawStrippedState, create_invite},
    signatures::hash_and_sign_event,
};
use serde_json::{Value as JsonValue, value::RawValue};

use super::{FEDERATED_ROOM_VERSIONS, join::pdu_of};
use crate::{
    Error, Result, Services,
    im::{IncomingInvite, moments::PROFILE_TYPE},
    rooms::{CreateRoom, MembershipChange, RemoteInvite},
};

/// Stripped state events kept per invite; more is refused as oversized.
const MAX_INVITE_STATE_EVENTS: usize = 50;

impl Services {
    /// Creates a room (see [`crate::rooms::Rooms::create_room`]), then invites the users of
    /// other servers among `invite`. A failed remote invite leaves the room in place and is
    /// logged: the room exists and the inviter can invite again, whereas an error would hide
    /// the new room's ID from the client.
    pub async fn create_room(&self, creator: &UserId, request: CreateRoom) -> Result<OwnedRoomId> {
        let is_direct = request.is_direct;
        let remote: Vec<OwnedUserId> = request
            .invite
            .iter()
            .filter(|user| user.server_name() != self.config.server_name)
            .cloned()
            .collect();
        let room_id = self.rooms.create_room(creator, request).await?;
        for invitee in &remote {
            let change = MembershipChange {
                sender: creator,
                target: invitee,
                membership: "invite",
                reason: None,
            };
            if let Err(e) = self.invite(&room_id, change, is_direct).await {
                tracing::warn!(%room_id, %invitee, error = %e, "the invite of a new room failed");
            }
        }
        Ok(room_id)
    }

    /// Invites `change.target` to the room: a local user directly, a user of another server
    /// through that server.
    pub async fn invite(
        &self,
        room_id: &RoomId,
        change: MembershipChange<'_>,
        is_direct: bool,
    ) -> Result<()> {
        self.invite_with(room_id, change, is_direct, &JsonValue::Null)
            .await
    }

    /// [`Services::invite`] with the fields of `extra` (an object, or null) added to the
    /// invite's content: the IM layer marks friend requests so.
    pub async fn invite_with(
        &self,
        room_id: &RoomId,
        change: MembershipChange<'_>,
        is_direct: bool,
        extra: &JsonValue,
    ) -> Result<()> {
        let server = change.target.server_name().to_owned();
        if server == self.config.server_name {
            return self
                .rooms
                .change_membership_with(room_id, change, is_direct, extra)
                .await;
        }
        self.rooms
            .invite_remote(room_id, change, is_direct, extra, async |invite| {
                self.countersigned_invite(&server, invite).await
            })
            .await
    }

    /// Sends the invite to the invitee's server and returns it with that server's signature.
    async fn countersigned_invite(
        &self,
        server: &OwnedServerName,
        invite: RemoteInvite,
    ) -> Result<Arc<str>> {
        let rules = invite
            .version
            .rules()
            .ok_or_else(|| Error::UnsupportedRoomVersion(invite.version.to_string()))?;
        let raw = |json: &str| {
            RawValue::from_string(json.to_owned()).map_err(|e| Error::Internal(e.to_string()))
        };
        let invite_room_state = invite
            .invite_room_state
            .iter()
            .map(|json| raw(json).map(RawStrippedState::Pdu))
            .collect::<Result<Vec<_>>>()?;
        let request = create_invite::v2::Request::new(
            invite.room_id.clone(),
            invite.event_id.clone(),
            invite.version.clone(),
            raw(&invite.event)?,
            invite_room_state,
        );
        let response = self.federation.client.send(server, request).await?;
        let checked = self
            .federation
            .keys
            .check_pdu_signed_by(server, &invite.room_id, &rules, &response.event, server)
            .await?;
        if checked.event_id != invite.event_id || checked.redacted {
            return Err(Error::Federation(super::FederationError::BadResponse {
                server: server.clone(),
                reason: format!("it did not return the invite {} as sent", invite.event_id),
            }));
        }
        serde_json::to_string(&checked.object)
            .map(Arc::from)
            .map_err(|e| Error::Internal(e.to_string()))
    }

    /// `PUT /invite/v2`: another server invites a local user. The invite is checked, signed
    /// by this server and returned; if this server is not in the room, it is kept so that the
    /// user's sync shows it (with the stripped state sent along).
    pub async fn receive_invite(
        &self,
        origin: &ServerName,
        request: &create_invite::v2::Request,
    ) -> Result<Box<RawValue>> {
        let room_id = &request.room_id;
        let version = &request.room_version;
        if !FEDERATED_ROOM_VERSIONS.contains(version) {
            return Err(Error::IncompatibleRoomVersion(version.clone()));
        }
        if request.invite_room_state.len() > MAX_INVITE_STATE_EVENTS {
            return Err(Error::TooLarge(format!(
                "An invite carries at most {MAX_INVITE_STATE_EVENTS} stripped state events"
            )));
        }
        let rules = version
            .rules()
            .ok_or_else(|| Error::UnsupportedRoomVersion(version.to_string()))?;
        let checked = self
            .federation
            .keys
            .check_pdu(origin, room_id, &rules, &request.event)
            .await
            .map_err(|e| Error::BadJson(e.to_string()))?;
        if checked.event_id != request.event_id {
            return Err(Error::BadJson(format!(
                "The event's ID is {}, not {}",
                checked.event_id, request.event_id
            )));
        }
        if checked.redacted {
            return Err(Error::BadJson(format!(
                "The content hash of {} does not match",
                checked.event_id
            )));
        }
        let (inviter, invitee) = parties(&checked.object, origin, &self.config.server_name)?;
        if self
            .store
            .account(&invitee)
            .await?
            .is_none_or(|account| account.deactivated)
        {
            return Err(Error::NotFound(format!("{invitee} does not exist")));
        }
        // In a room this server takes part in, the room's server ACL applies to the inviter.
        let participating = self.rooms.is_participating(room_id).await?;
        if participating {
            self.rooms.check_server_acl(room_id, origin).await?;
        }
        let content = checked
            .object
            .get("content")
            .map(|content| JsonValue::from(content.clone()))
            .unwrap_or_default();
        let stripped: Vec<JsonValue> = request
            .invite_room_state
            .iter()
            .filter_map(stripped_event)
            .collect();
        let profile_room = stripped.iter().any(|event| {
            event["type"] == "m.room.create" && event["content"]["type"] == PROFILE_TYPE
        });
        self.im
            .incoming_invite(IncomingInvite {
                inviter: &inviter,
                invitee: &invitee,
                room_id,
                content: &content,
                profile_room,
            })
            .await?;
        let mut object = checked.object;
        hash_and_sign_event(
            self.config.server_name.as_str(),
            self.signing_key.pair(),
            &mut object,
            &rules.redaction,
        )
        .map_err(|e| Error::Internal(format!("cannot sign the invite: {e}")))?;
        let pdu = pdu_of(checked.event_id, room_id, &object)?;
        if !participating {
            self.rooms
                .store_out_of_band_membership(&pdu, Some((version.clone(), stripped, None)))
                .await?;
        }
        RawValue::from_string(pdu.json.to_string()).map_err(|e| Error::Internal(e.to_string()))
    }
}

/// The remote inviter and the local invitee of an invite PDU from `origin`; anything else is
/// refused.
fn parties(
    object: &CanonicalJsonObject,
    origin: &ServerName,
    own_server: &ServerName,
) -> Result<(OwnedUserId, OwnedUserId)> {
    let field = |name: &str| object.get(name).and_then(CanonicalJsonValue::as_str);
    let membership = object
        .get("content")
        .and_then(CanonicalJsonValue::as_object)
        .and_then(|content| content.get("membership"))
        .and_then(CanonicalJsonValue::as_str);
    if field("type") != Some("m.room.member") || membership != Some("invite") {
        return Err(Error::BadJson("The event is not an invite".to_owned()));
    }
    let inviter = field("sender")
        .and_then(|s| UserId::parse(s).ok())
        .filter(|sender| sender.server_name() == origin)
        .ok_or_else(|| {
            Error::Forbidden(format!("The invite's sender is not a user of {origin}"))
        })?;
    let invitee = field("state_key")
        .and_then(|key| UserId::parse(key).ok())
        .filter(|user| user.server_name() == own_server)
        .ok_or_else(|| Error::BadJson(format!("The invite is not for a user of {own_server}")))?;
    Ok((inviter, invitee))
}

/// A stripped state event sent with an invite, as shown to the invitee's client; events that
/// are not state events are dropped. Since v1.16 these arrive as full PDUs (whose signatures
/// are not checked: they are only descriptive, as the spec allows).
pub(super) fn stripped_event(state: &RawStrippedState) -> Option<JsonValue> {
    let json = match state {
        RawStrippedState::Pdu(json) => json.get(),
        #[allow(deprecated)]
        RawStrippedState::Stripped(raw) => raw.json().get(),
        _ => return None,
    };
    let event: JsonValue = serde_json::from_str(json).ok()?;
    let field = |name: &str| event.get(name).filter(|value| value.is_string()).cloned();
    Some(serde_json::json!({
        "type": field("type")?,
        "state_key": field("state_key")?,
        "sender": field("sender")?,
        "content": event.get("content").filter(|c| c.is_object())?.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use ruma::server_name;
    use serde_json::json;

    use super::*;

    fn object(value: JsonValue) -> CanonicalJsonObject {
        match CanonicalJsonValue::try_from(value).unwrap() {
            CanonicalJsonValue::Object(object) => object,
            _ => unreachable!(),
        }
    }

    fn invite(sender: &str, state_key: &str, membership: &str) -> CanonicalJsonObject {
        object(json!({
            "type": "m.room.member",
            "sender": sender,
            "state_key": state_key,
            "content": { "membership": membership },
        }))
    }

    #[test]
    fn only_invites_from_the_origin_to_local_users_are_taken() {
        let origin = server_name!("a.test");
        let own = server_name!("b.test");
        let invitee_of = |event| parties(&event, origin, own).map(|(_, invitee)| invitee);
        assert_eq!(
            invitee_of(invite("@alice:a.test", "@bob:b.test", "invite")).unwrap(),
            "@bob:b.test"
        );
        // The spec's invite endpoint is for invites only.
        assert!(invitee_of(invite("@alice:a.test", "@bob:b.test", "join")).is_err());
        // A server invites on behalf of its own users only.
        assert!(matches!(
            invitee_of(invite("@mallory:c.test", "@bob:b.test", "invite")),
            Err(Error::Forbidden(_))
        ));
        // And only users of the server asked.
        assert!(invitee_of(invite("@alice:a.test", "@carol:c.test", "invite")).is_err());
    }

    #[test]
    fn stripped_events_keep_only_the_client_fields() {
        let pdu = RawValue::from_string(
            json!({
                "type": "m.room.name", "state_key": "", "sender": "@alice:a.test",
                "content": { "name": "Trip" }, "auth_events": [], "prev_events": [],
                "signatures": {}, "hashes": {}, "depth": 3
            })
            .to_string(),
        )
        .unwrap();
        assert_eq!(
            stripped_event(&RawStrippedState::Pdu(pdu)),
            Some(json!({
                "type": "m.room.name", "state_key": "", "sender": "@alice:a.test",
                "content": { "name": "Trip" }
            }))
        );
        let message = RawValue::from_string(
            json!({ "type": "m.room.message", "sender": "@alice:a.test", "content": {} })
                .to_string(),
        )
        .unwrap();
        assert_eq!(stripped_event(&RawStrippedState::Pdu(message)), None);
    }
}
