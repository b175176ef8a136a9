//! The room graph's side of federation: the join and leave templates another server asks
//! for (`make_join`, `make_leave`), events received from other servers, the state handed to a joining server,
//! and persisting a room this server joins through another.
//!
//! Received events built on other events than this server's latest ones are placed on their
//! branch of the room graph and merged in `fork`.

use std::{collections::HashMap, sync::Arc};

use ruma::{
    EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedUserId, RoomId, RoomVersionId,
    ServerName, UInt, UserId,
    events::{StateEventType, TimelineEventType},
};
use serde_json::{Value as JsonValue, json};

use super::{
    EventSource, RoomState, Rooms,
    fork::{StateBefore, extremities_with},
    read::parse,
    send::{power_level, required_level},
    state::{StateKey, snapshot},
};
use crate::{
    Error, Result,
    events::{Pdu, ReferenceHashes, reference_list},
    store::{NewRoom, OutlierWithState},
};

/// The most events sent to a joining server for having been added while its join was made.
const CONCURRENT_EVENTS_LIMIT: i64 = 100;
/// Events read per round while walking an auth chain.
const AUTH_CHAIN_BATCH: usize = 500;

impl Rooms {
    /// After a remote user's join (`send_join`) is stored: the events this server added to
    /// the room while the join was being made (after its template, so not among its
    /// ancestors) are sent to the joining server too. Otherwise it would not hear of them
    /// until a later event pointed at them, which in a quiet room may be never.
    pub async fn send_concurrent_events(
        &self,
        room_id: &RoomId,
        join: &EventId,
        server: &ServerName,
    ) -> Result<()> {
        let Some(row) = self.store.event(join).await? else {
            return Ok(());
        };
        let pdu = parse(&row)?;
        let template_end = self
            .store
            .events(&pdu.prev_events)
            .await?
            .iter()
            .map(|prev| prev.stream_ordering)
            .max()
            .unwrap_or(row.stream_ordering);
        let concurrent: Vec<i64> = self
            .store
            .room_events(room_id, template_end, true, CONCURRENT_EVENTS_LIMIT)
            .await?
            .iter()
            .map(|event| event.stream_ordering)
            .filter(|position| *position < row.stream_ordering)
            .collect();
        if concurrent.is_empty() {
            return Ok(());
        }
        self.store.queue_for(server.as_str(), &concurrent).await?;
        self.outbound.notify_one();
        Ok(())
    }

    /// The version of a room this server knows.
    pub async fn room_version(&self, room_id: &RoomId) -> Result<Option<RoomVersionId>> {
        Ok(self.store.room_version(room_id).await?)
    }

    /// The other servers with users joined to the room, as cached with its state.
    pub async fn remote_servers(&self, room_id: &RoomId) -> Result<Arc<[ruma::OwnedServerName]>> {
        let mut guard = self.lock(room_id).await?;
        Ok(guard
            .as_mut()
            .map(|room| room.remote_servers(&self.config.server_name))
            .unwrap_or_default())
    }

    /// For a join: the servers to join a room through when this server knows the room but
    /// no longer takes part in it (no user of its own is joined), so that its copy is stale;
    /// `None` when this server is in the room, or no other server is known to be.
    pub async fn rejoin_servers(
        &self,
        room_id: &RoomId,
    ) -> Result<Option<Vec<ruma::OwnedServerName>>> {
        if self
            .has_joined_member(room_id, &self.config.server_name)
            .await?
        {
            return Ok(None);
        }
        let servers = self.remote_servers(room_id).await?;
        Ok((!servers.is_empty()).then(|| servers.to_vec()))
    }

    /// The room's forward extremities: its latest events, which nothing here follows yet.
    pub async fn extremities(&self, room_id: &RoomId) -> Result<Vec<OwnedEventId>> {
        let guard = self.lock(room_id).await?;
        Ok(guard
            .as_ref()
            .map(|room| room.extremities.clone())
            .unwrap_or_default())
    }

    /// `make_join` and `make_leave`: an unsigned member event of `user_id` with `membership`
    /// on the room's latest events, if the room's rules allow it and (for joins) the user's
    /// server supports the room's version.
    pub async fn member_template(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        membership: &str,
        supported_versions: Option<&[RoomVersionId]>,
    ) -> Result<(RoomVersionId, JsonValue)> {
        self.check_server_acl(room_id, user_id.server_name())
            .await?;
        let guard = self.lock(room_id).await?;
        let room = guard
            .as_ref()
            .ok_or_else(|| Error::NotFound(format!("Unknown room {room_id}")))?;
        if supported_versions.is_some_and(|versions| !versions.contains(&room.version)) {
            return Err(Error::IncompatibleRoomVersion(room.version.clone()));
        }
        // A group's member limit holds for users of other servers too; an invited user's
        // place is already counted.
        let current = room
            .get(&StateEventType::RoomMember, user_id.as_str())
            .and_then(|pdu| pdu.membership());
        if membership == "join" && current.as_deref() != Some("invite") {
            crate::im::group_admin::check_member_limit(room, self.config.im.group_member_limit)?;
        }
        let content = json!({ "membership": membership });
        let raw_content = serde_json::value::to_raw_value(&content)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let auth_events = room
            .auth_events_for(
                &TimelineEventType::RoomMember,
                user_id,
                Some(user_id.as_str()),
                &raw_content,
            )
            .map_err(Error::BadJson)?;
        let hashes = room.reference_hashes(&auth_events)?;
        let auth_ids: Vec<OwnedEventId> = auth_events.iter().map(|p| p.event_id.clone()).collect();
        let template = json!({
            "room_id": room_id,
            "sender": user_id,
            "state_key": user_id,
            "type": "m.room.member",
            "content": content,
            "prev_events": reference_list(&room.extremities, &hashes, &room.rules)?,
            "auth_events": reference_list(&auth_ids, &hashes, &room.rules)?,
            "depth": room.depth.saturating_add(UInt::from(1u32)),
            "origin_server_ts": MilliSecondsSinceUnixEpoch::now(),
        });
        // The template as an event, to ask the auth rules whether the join would be allowed.
        let probe_id = OwnedEventId::try_from("$member_template")
            .map_err(|e| Error::Internal(e.to_string()))?;
        let probe = Pdu::from_json(probe_id, room_id, Arc::from(template.to_string()))
            .map_err(|e| Error::Internal(e.to_string()))?;
        room.authorize(&probe, &auth_events).map_err(|reason| {
            Error::Forbidden(format!(
                "{user_id} may not {membership} in {room_id}: {reason}"
            ))
        })?;
        Ok((room.version.clone(), template))
    }

    /// Persists an event another server sent, whose signatures and hashes were checked. Its
    /// predecessors must be known here with their state; it must pass the auth rules against
    /// its auth events and the state before it, and is soft-failed (kept, not shown) if it does
    /// not pass them against the room's current state. An event already stored is accepted
    /// again without change.
    pub async fn receive_pdu(
        &self,
        room_id: &RoomId,
        event_id: &EventId,
        json: Arc<str>,
    ) -> Result<()> {
        self.receive_pdu_from(room_id, event_id, json, EventSource::Received)
            .await
    }

    /// [`Rooms::receive_pdu`] of an event whose `source` says whether this server passes it on.
    pub async fn receive_pdu_from(
        &self,
        room_id: &RoomId,
        event_id: &EventId,
        json: Arc<str>,
        source: EventSource,
    ) -> Result<()> {
        let mut pdu = Pdu::from_json(event_id.to_owned(), room_id, json)
            .map_err(|e| Error::BadJson(e.to_string()))?;
        let redaction_target = self.redaction_target(room_id, &pdu).await?;
        let mut guard = self.lock(room_id).await?;
        // Under the room's lock: the same event from two servers at once is stored once.
        if self
            .store
            .event(event_id)
            .await?
            .is_some_and(|row| row.has_state())
        {
            return Ok(());
        }
        let room = guard
            .as_mut()
            .ok_or_else(|| Error::NotFound(format!("Unknown room {room_id}")))?;
        let auth_events = self.known_events(room_id, &pdu.auth_events).await?;
        let previous = room.extremities.clone();
        match self.state_before(room, &pdu).await? {
            StateBefore::Current => {
                let pending =
                    withhold_unpermitted_redaction(room, &mut pdu, redaction_target.as_deref());
                let (pdu, row) = self.accept(room, pdu, &auth_events, None)?;
                room.extremities = extremities_with(&previous, &pdu);
                self.commit_locked(guard, row, source, None).await?;
                self.keep_pending_redaction(&pdu, pending).await
            }
            StateBefore::Branch {
                room: mut branch,
                group,
            } => {
                let pending =
                    withhold_unpermitted_redaction(&branch, &mut pdu, redaction_target.as_deref());
                let (pdu, row) =
                    self.accept(&mut branch, pdu, &auth_events, None)
                        .map_err(|e| match e {
                            Error::Forbidden(reason) => Error::Forbidden(format!(
                                "{event_id} is not allowed by the state before it: {reason}"
                            )),
                            other => other,
                        })?;
                if let Err(reason) = room.authorize(&pdu, &auth_events) {
                    tracing::info!(%room_id, %event_id, %reason, "soft-failed a received event");
                    let groups = group.into_iter().chain(row.state_group.clone()).collect();
                    let event = OutlierWithState {
                        event_id: row.event_id,
                        json: row.json,
                        state_before: row.state_before,
                        state_after: row.state_after,
                    };
                    return Ok(self
                        .store
                        .persist_outlier_with_state(room_id, event, groups, Vec::new())
                        .await?);
                }
                if let Some(target) = &pdu.redacts {
                    super::redact_cached_state(room, target);
                }
                let mut resolved = self.merge_branch(room, &branch).await?;
                resolved.groups.splice(0..0, group);
                room.extremities = extremities_with(&previous, &pdu);
                room.depth = room.depth.max(pdu.depth);
                self.commit_locked(guard, row, source, Some(resolved))
                    .await?;
                self.keep_pending_redaction(&pdu, pending).await
            }
        }
    }

    /// Remembers a redaction whose target is not stored here, to apply when it is.
    pub(super) async fn keep_pending_redaction(
        &self,
        redaction: &Pdu,
        pending: Option<PendingRedaction>,
    ) -> Result<()> {
        let Some(pending) = pending else {
            return Ok(());
        };
        Ok(self
            .store
            .add_pending_redaction(
                &redaction.room_id,
                &redaction.event_id,
                &pending.target,
                &redaction.sender,
                pending.may_redact,
            )
            .await?)
    }

    /// The sender of the event a redaction redacts, when it is an event of this room known
    /// here (a redaction of an unknown event has nothing to prune).
    pub(super) async fn redaction_target(
        &self,
        room_id: &RoomId,
        pdu: &Pdu,
    ) -> Result<Option<OwnedUserId>> {
        let Some(target) = &pdu.redacts else {
            return Ok(None);
        };
        match self.store.event(target).await? {
            Some(row) if row.room_id == room_id => Ok(Some(parse(&row)?.sender)),
            _ => Ok(None),
        }
    }

    /// The state of a stored state group, as the PDUs.
    pub(super) async fn state_of_group(&self, group: i64) -> Result<HashMap<StateKey, Arc<Pdu>>> {
        let entries = self.store.state_group(group).await?;
        let ids: Vec<OwnedEventId> = entries.iter().map(|entry| entry.event_id.clone()).collect();
        let pdus: HashMap<OwnedEventId, Arc<Pdu>> = self
            .store
            .events(&ids)
            .await?
            .iter()
            .map(|row| parse(row).map(|pdu| (row.event_id.clone(), Arc::new(pdu))))
            .collect::<Result<_>>()?;
        entries
            .iter()
            .map(|entry| {
                let pdu = pdus.get(&entry.event_id).cloned().ok_or_else(|| {
                    Error::Internal(format!("state event {} is missing", entry.event_id))
                })?;
                Ok((
                    (
                        StateEventType::from(entry.event_type.as_str()),
                        entry.state_key.clone(),
                    ),
                    pdu,
                ))
            })
            .collect()
    }

    /// Events of the room by ID (timeline or outliers); every one must be known.
    async fn known_events(&self, room_id: &RoomId, ids: &[OwnedEventId]) -> Result<Vec<Arc<Pdu>>> {
        let rows = self.store.events(ids).await?;
        if let Some(missing) = ids
            .iter()
            .find(|id| !rows.iter().any(|row| &row.event_id == *id))
        {
            return Err(Error::Unknown(format!(
                "the auth event {missing} is not known to this server"
            )));
        }
        rows.iter()
            .filter(|row| row.room_id == room_id)
            .map(|row| parse(row).map(Arc::new))
            .collect()
    }

    /// For `send_join`: the room's state before `event_id`, and the auth chain of that state,
    /// as the stored PDUs.
    pub async fn state_and_auth_chain_before(
        &self,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<(Vec<Arc<str>>, Vec<Arc<str>>)> {
        let (state, chain) = self.state_and_auth_chain_by_id(room_id, event_id).await?;
        Ok((state.into_values().collect(), chain.into_values().collect()))
    }

    /// [`Rooms::state_and_auth_chain_before`] by event ID.
    pub(super) async fn state_and_auth_chain_by_id(
        &self,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<(
        HashMap<OwnedEventId, Arc<str>>,
        HashMap<OwnedEventId, Arc<str>>,
    )> {
        let row = self.event_in_room(room_id, event_id).await?;
        let state_ids: Vec<OwnedEventId> = self
            .store
            .state_group(row.state_before)
            .await?
            .iter()
            .map(|entry| entry.event_id.clone())
            .collect();
        let state = self.store.events(&state_ids).await?;
        let mut auth_events = Vec::new();
        for row in &state {
            auth_events.extend(parse(row)?.auth_events);
        }
        let chain = self.auth_chain_of(auth_events).await?;
        Ok((
            state
                .into_iter()
                .map(|row| (row.event_id, row.json))
                .collect(),
            chain,
        ))
    }

    /// `events` and every event they reach through `auth_events`, as stored.
    pub(super) async fn auth_chain_of(
        &self,
        mut next: Vec<OwnedEventId>,
    ) -> Result<HashMap<OwnedEventId, Arc<str>>> {
        let mut chain: HashMap<OwnedEventId, Arc<str>> = HashMap::new();
        while !next.is_empty() {
            next.retain(|id| !chain.contains_key(id));
            next.sort();
            next.dedup();
            let batch: Vec<OwnedEventId> = next.drain(..next.len().min(AUTH_CHAIN_BATCH)).collect();
            for row in self.store.events(&batch).await? {
                let pdu = parse(&row)?;
                next.extend(
                    pdu.auth_events
                        .iter()
                        .filter(|id| !chain.contains_key(*id))
                        .cloned(),
                );
                chain.insert(row.event_id, row.json);
            }
        }
        Ok(chain)
    }

    /// Persists a room joined through another server: `state` is the room's state before the
    /// `join` event (verified by the caller), `auth_chain` the events it rests on. The join
    /// must pass the auth rules against that state.
    pub async fn persist_remote_join(
        &self,
        version: RoomVersionId,
        room_id: &RoomId,
        state: Vec<Pdu>,
        auth_chain: Vec<Pdu>,
        join: Pdu,
    ) -> Result<()> {
        let rules = version.rules().ok_or_else(|| {
            Error::UnsupportedRoomVersion(format!("Unknown room version {version}"))
        })?;
        let slot = self.slot(room_id);
        let mut guard = slot.lock_owned().await;
        // A room this server left is joined again on the state that came with the join; its
        // old copy stays as history.
        let known = self.store.room_version(room_id).await?.is_some();
        if known
            && self
                .has_joined_member(room_id, &self.config.server_name)
                .await?
        {
            return Err(Error::Conflict(format!(
                "{room_id} is already joined by users of this server"
            )));
        }
        let mut by_key = HashMap::new();
        let mut memberships = HashMap::new();
        let mut outliers = Vec::new();
        let mut by_id: HashMap<OwnedEventId, Arc<Pdu>> = HashMap::new();
        for pdu in auth_chain {
            outliers.push((pdu.event_id.clone(), pdu.json.clone()));
            by_id.insert(pdu.event_id.clone(), Arc::new(pdu));
        }
        for pdu in state {
            let Some(state_key) = pdu.state_key.clone() else {
                return Err(Error::BadJson(format!(
                    "{} in the room state is not a state event",
                    pdu.event_id
                )));
            };
            if let Some(membership) = pdu.membership() {
                memberships.insert(pdu.event_id.clone(), membership);
            }
            outliers.push((pdu.event_id.clone(), pdu.json.clone()));
            let pdu = Arc::new(pdu);
            by_id.insert(pdu.event_id.clone(), pdu.clone());
            by_key.insert((StateEventType::from(pdu.kind.to_string()), state_key), pdu);
        }
        let create = by_key
            .get(&(StateEventType::RoomCreate, String::new()))
            .cloned()
            .ok_or_else(|| Error::BadJson("The room state has no m.room.create".to_owned()))?;
        let created_version = create
            .content_value()
            .get("room_version")
            .and_then(JsonValue::as_str)
            .unwrap_or("1")
            .to_owned();
        if created_version != version.as_str() {
            return Err(Error::BadJson(format!(
                "The room was created as version {created_version}, not {version}"
            )));
        }
        let auth_events = join
            .auth_events
            .iter()
            .map(|id| {
                by_id.get(id).cloned().ok_or_else(|| {
                    Error::BadJson(format!("The join's auth event {id} was not sent"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let snapshot_id = self
            .next_state_group
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let snapshot = snapshot(snapshot_id, &by_key);
        let mut room = RoomState {
            room_id: room_id.to_owned(),
            version: version.clone(),
            rules,
            state: by_key,
            state_group: snapshot_id,
            chain_length: 0,
            extremities: join.prev_events.clone(),
            extremity_hashes: ReferenceHashes::new(),
            depth: join.depth,
            local_audience: None,
            remote_servers: None,
            push_context: None,
        };
        let (_, row) = self.accept(&mut room, join, &auth_events, None)?;
        let new_room = (!known).then(|| NewRoom {
            version,
            creator: create.sender.to_string(),
            created_ts: MilliSecondsSinceUnixEpoch::now().get().into(),
            published: false,
        });
        let batch = self
            .batch(&mut room, vec![row], new_room, EventSource::RemoteJoin)
            .await?;
        self.store
            .persist_remote_join(outliers, snapshot, memberships, batch)
            .await?;
        *guard = Some(room);
        Ok(())
    }
}

/// A redaction of an event this server does not have yet: applied when that event is stored.
pub(super) struct PendingRedaction {
    pub target: OwnedEventId,
    /// Whether the redaction's sender held the room's `redact` power level.
    pub may_redact: bool,
}

/// Spec (Client-Server API, "Redactions"; room versions 3+ "Redactions"): a redaction takes
/// effect only when its sender is of the same server as the redacted event's sender, or holds
/// the room's `redact` power level in the state before the redaction. Another one is kept as an
/// event (it passed the auth rules) but prunes nothing. A redaction of an event not stored
/// here (`target_sender` unknown) prunes nothing now and is returned, to be applied when the
/// event arrives.
pub(super) fn withhold_unpermitted_redaction(
    state_before: &RoomState,
    redaction: &mut Pdu,
    target_sender: Option<&UserId>,
) -> Option<PendingRedaction> {
    let target = redaction.redacts.clone()?;
    let may_redact =
        power_level(state_before, &redaction.sender) >= required_level(state_before, "redact", 50);
    let Some(target_sender) = target_sender else {
        redaction.redacts = None;
        return Some(PendingRedaction { target, may_redact });
    };
    if !may_redact && redaction.sender.server_name() != target_sender.server_name() {
        tracing::info!(
            redaction = %redaction.event_id,
            sender = %redaction.sender,
            "a redaction without the power to redact is not applied"
        );
        redaction.redacts = None;
    }
    None
}
