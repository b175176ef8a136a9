//! Joining a room held by other servers (spec: Server-Server API, "Joining Rooms"): ask one of
//! them for a join template (`make_join`), sign it, send it (`send_join`), check the room state
//! and auth chain that come back, and persist the room as a participant.

use std::{collections::HashMap, sync::Arc};

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, MilliSecondsSinceUnixEpoch, OwnedEventId,
    OwnedServerName, RoomId, RoomVersionId, UserId,
    api::federation::membership::{create_join_event, prepare_join_event},
    room_version_rules::RoomVersionRules,
};
use serde_json::value::RawValue;

use crate::{
    Error, Result, Services,
    events::{Pdu, sign_and_identify},
    rooms::{check_against_auth_events, member_content},
};

/// The room versions this server can take part in over federation: all but version 1, whose
/// state resolution (v1) ruma-state-res does not implement.
pub const FEDERATED_ROOM_VERSIONS: [RoomVersionId; 11] = [
    RoomVersionId::V2,
    RoomVersionId::V3,
    RoomVersionId::V4,
    RoomVersionId::V5,
    RoomVersionId::V6,
    RoomVersionId::V7,
    RoomVersionId::V8,
    RoomVersionId::V9,
    RoomVersionId::V10,
    RoomVersionId::V11,
    RoomVersionId::V12,
];

/// What is asked of a remote server for a room this server is not in.
#[derive(Clone, Copy)]
pub(super) enum RemoteMembership {
    Join,
    Knock,
}

impl Services {
    /// Joins `user_id` to `room_id`: locally if this server is in the room, otherwise through
    /// the first of `servers` that lets them in. A room this server knows but left (none of
    /// its users is joined) is joined again through the servers last known in it too, since
    /// a join on the stale copy would not be built on the room's latest events.
    pub async fn join(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        servers: &[OwnedServerName],
        reason: Option<&str>,
    ) -> Result<()> {
        let mut candidates = servers.to_vec();
        if self.rooms.room_version(room_id).await?.is_some() {
            let Some(known) = self.rooms.rejoin_servers(room_id).await? else {
                return self.rooms.join(user_id, room_id, reason).await;
            };
            candidates.extend(known);
        }
        self.through_first_of(
            &candidates,
            user_id,
            room_id,
            RemoteMembership::Join,
            reason,
        )
        .await
    }

    /// Joins or knocks through each server that may be in the room: the given `servers`,
    /// then the one a pending invite or knock names, until one succeeds.
    pub(super) async fn through_first_of(
        &self,
        servers: &[OwnedServerName],
        user_id: &UserId,
        room_id: &RoomId,
        membership: RemoteMembership,
        reason: Option<&str>,
    ) -> Result<()> {
        let what = match membership {
            RemoteMembership::Join => "join",
            RemoteMembership::Knock => "knock",
        };
        // An invite from another server names a server in the room (its sender's), as does a
        // knock (the one knocked through).
        let resident = match self.rooms.pending_membership(room_id, user_id).await? {
            Some(invite) => Some(invite.resident_server()?),
            None => None,
        };
        let mut candidates: Vec<&OwnedServerName> = Vec::new();
        for server in servers.iter().chain(&resident) {
            if *server != self.config.server_name && !candidates.contains(&server) {
                candidates.push(server);
            }
        }
        if candidates.is_empty() {
            return Err(Error::NotFound(format!(
                "Room {room_id} is not known to this server, and no server to {what} it through was given"
            )));
        }
        let mut last_error = None;
        for server in candidates {
            let attempt = match membership {
                RemoteMembership::Join => self.join_through(server, user_id, room_id, reason).await,
                RemoteMembership::Knock => {
                    self.knock_through(server, user_id, room_id, reason).await
                }
            };
            match attempt {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::info!(%room_id, %server, error = %e, "remote {what} failed");
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| Error::NotFound(room_id.to_string())))
    }

    async fn join_through(
        &self,
        server: &OwnedServerName,
        user_id: &UserId,
        room_id: &RoomId,
        reason: Option<&str>,
    ) -> Result<()> {
        let _joining = self.federation.joins.start(room_id).await;
        let client = &self.federation.client;
        let mut request =
            prepare_join_event::v1::Request::new(room_id.to_owned(), user_id.to_owned());
        request.ver = FEDERATED_ROOM_VERSIONS.to_vec();
        let template = client.send(server, request).await?;
        let version = template.room_version.unwrap_or(RoomVersionId::V1);
        if !FEDERATED_ROOM_VERSIONS.contains(&version) {
            return Err(Error::UnsupportedRoomVersion(format!(
                "{room_id} is version {version}, which this server cannot join"
            )));
        }
        let rules = version
            .rules()
            .ok_or_else(|| Error::UnsupportedRoomVersion(version.to_string()))?;
        let content = self
            .rooms
            .with_profile(user_id, member_content("join", reason))
            .await?;
        let (event_id, object) =
            self.sign_member_template(&template.event, user_id, room_id, content, &rules)?;
        let pdu =
            serde_json::value::to_raw_value(&object).map_err(|e| Error::Internal(e.to_string()))?;
        let response = client
            .send(
                server,
                create_join_event::v2::Request::new(room_id.to_owned(), event_id.clone(), pdu),
            )
            .await?;
        let room_state = response.room_state;
        let state = self
            .checked_pdus(server, room_id, &rules, room_state.state)
            .await?;
        let auth_chain = self
            .checked_pdus(server, room_id, &rules, room_state.auth_chain)
            .await?;
        check_auth(&rules, &state, &auth_chain)?;
        // A resident server may add its signature (restricted joins); otherwise ours stands.
        let join_json = match &room_state.event {
            Some(event) => {
                let checked = self
                    .federation
                    .keys
                    .check_pdu(server, room_id, &rules, event)
                    .await?;
                if checked.event_id != event_id {
                    return Err(Error::BadJson(format!(
                        "{server} returned another join event than {event_id}"
                    )));
                }
                checked.object
            }
            None => object,
        };
        let join = pdu_of(event_id, room_id, &join_json)?;
        self.rooms
            .persist_remote_join(version, room_id, state, auth_chain, join)
            .await
    }

    /// A member event template of another server (`make_join`, `make_leave`) with `content`
    /// and this server's fields filled in, hashed and signed.
    pub(super) fn sign_member_template(
        &self,
        template: &RawValue,
        user_id: &UserId,
        room_id: &RoomId,
        content: serde_json::Value,
        rules: &RoomVersionRules,
    ) -> Result<(OwnedEventId, CanonicalJsonObject)> {
        let mut object: CanonicalJsonObject = serde_json::from_str(template.get())
            .map_err(|e| Error::BadJson(format!("The template is not an event: {e}")))?;
        let field = |name: &str| object.get(name).and_then(CanonicalJsonValue::as_str);
        if field("type") != Some("m.room.member")
            || field("sender") != Some(user_id.as_str())
            || field("state_key") != Some(user_id.as_str())
            || field("room_id").is_some_and(|id| id != room_id.as_str())
        {
            return Err(Error::BadJson(
                "The template is not a member event of this user in this room".to_owned(),
            ));
        }
        object.insert(
            "content".to_owned(),
            CanonicalJsonValue::try_from(content).map_err(|e| Error::Internal(e.to_string()))?,
        );
        object.insert(
            "origin_server_ts".to_owned(),
            CanonicalJsonValue::Integer(MilliSecondsSinceUnixEpoch::now().get().into()),
        );
        object.remove("signatures");
        object.remove("hashes");
        let event_id = sign_and_identify(
            &mut object,
            rules,
            &self.config.server_name,
            self.signing_key.pair(),
        )
        .map_err(|e| Error::Internal(format!("cannot sign the member event: {e}")))?;
        Ok((event_id, object))
    }

    /// Checks each PDU's signatures and hashes (redacting those whose hash fails).
    async fn checked_pdus(
        &self,
        server: &OwnedServerName,
        room_id: &RoomId,
        rules: &RoomVersionRules,
        pdus: Vec<Box<RawValue>>,
    ) -> Result<Vec<Pdu>> {
        let checked = self
            .federation
            .keys
            .check_pdus(server, room_id, rules, pdus)
            .await;
        checked
            .into_iter()
            .map(|pdu| {
                let pdu = pdu?;
                pdu_of(pdu.event_id, room_id, &pdu.object)
            })
            .collect()
    }
}

pub(super) fn pdu_of(
    event_id: OwnedEventId,
    room_id: &RoomId,
    object: &CanonicalJsonObject,
) -> Result<Pdu> {
    let json = serde_json::to_string(object).map_err(|e| Error::Internal(e.to_string()))?;
    Pdu::from_json(event_id, room_id, Arc::from(json)).map_err(|e| Error::BadJson(e.to_string()))
}

/// Every state event must pass the auth rules against its own auth events (spec: checks on
/// receipt of a PDU, step 4), all of which the joining server was sent.
fn check_auth(rules: &RoomVersionRules, state: &[Pdu], auth_chain: &[Pdu]) -> Result<()> {
    let by_id: HashMap<&EventId, &Pdu> = state
        .iter()
        .chain(auth_chain)
        .map(|pdu| (&*pdu.event_id, pdu))
        .collect();
    let create = state
        .iter()
        .find(|pdu| pdu.kind.to_string() == "m.room.create")
        .ok_or_else(|| Error::BadJson("The room state has no m.room.create".to_owned()))?;
    for pdu in state.iter().chain(auth_chain) {
        check_against_auth_events(rules, pdu, Some(create), |id| by_id.get(id).copied()).map_err(
            |reason| {
                Error::Forbidden(format!(
                    "{} in the room state fails the auth rules: {reason}",
                    pdu.event_id
                ))
            },
        )?;
    }
    Ok(())
}
