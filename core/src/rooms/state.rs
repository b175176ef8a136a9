//! A room as the engine holds it between events: its current state (the PDUs, for the auth
//! rules), forward extremities and depth; and how one more event changes that.

use std::{collections::HashMap, sync::Arc};

use ruma::{
    OwnedEventId, OwnedRoomId, OwnedServerName, OwnedUserId, RoomVersionId, ServerName, UInt,
    UserId,
    events::StateEventType,
    room_version_rules::RoomVersionRules,
    state_res::{self, Event as _},
};

use super::push::PushContext;
use crate::{
    events::{EventError, Pdu, ReferenceHashes, is_format_v1, reference_sha256},
    store::{NewStateGroup, ResolvedState, StateEntry},
};

/// Longest chain of state deltas before a full snapshot is written: bounds the rows read to
/// rebuild any historical state.
const MAX_DELTA_CHAIN: i64 = 64;

pub type StateKey = (StateEventType, String);

#[derive(Clone)]
pub struct RoomState {
    pub room_id: OwnedRoomId,
    pub version: RoomVersionId,
    pub rules: RoomVersionRules,
    pub state: HashMap<StateKey, Arc<Pdu>>,
    pub state_group: i64,
    pub chain_length: i64,
    pub extremities: Vec<OwnedEventId>,
    /// Room versions 1 and 2 only: the reference hashes of the extremities, which new events
    /// carry in `prev_events`. Filled when the room is locked, kept as events are added.
    pub extremity_hashes: ReferenceHashes,
    pub depth: UInt,
    /// The local users who hear of the room's events (see [`RoomState::local_audience`]),
    /// kept until a member event changes them.
    pub local_audience: Option<Arc<[OwnedUserId]>>,
    /// The other servers with joined members, kept until a member event changes them.
    pub remote_servers: Option<Arc<[OwnedServerName]>>,
    /// What push rule evaluation needs of the state (recipients, member count, power levels),
    /// kept until the state changes or a state event is redacted.
    pub(super) push_context: Option<Box<PushContext>>,
}

impl RoomState {
    pub fn get(&self, kind: &StateEventType, state_key: &str) -> Option<&Arc<Pdu>> {
        self.state.get(&(kind.clone(), state_key.to_owned()))
    }

    /// The users of `server_name` who are joined, invited or knocking: whose syncs an event of
    /// the room concerns. Computed once per membership change, not per event.
    pub fn local_audience(&mut self, server_name: &ServerName) -> Arc<[OwnedUserId]> {
        if let Some(audience) = &self.local_audience {
            return audience.clone();
        }
        let audience: Arc<[OwnedUserId]> = self
            .state
            .iter()
            .filter(|((kind, _), _)| *kind == StateEventType::RoomMember)
            .filter_map(|((_, key), pdu)| {
                let user_id = UserId::parse(key.as_str()).ok()?;
                let concerned = matches!(
                    pdu.membership().as_deref(),
                    Some("join" | "invite" | "knock")
                );
                (concerned && user_id.server_name() == server_name).then_some(user_id)
            })
            .collect();
        self.local_audience = Some(audience.clone());
        audience
    }

    /// The servers other than `server_name` with joined members: where this server's events
    /// of the room go.
    pub fn remote_servers(&mut self, server_name: &ServerName) -> Arc<[OwnedServerName]> {
        if let Some(servers) = &self.remote_servers {
            return servers.clone();
        }
        let mut servers: Vec<OwnedServerName> = self
            .state
            .iter()
            .filter(|((kind, _), pdu)| {
                *kind == StateEventType::RoomMember && pdu.membership().as_deref() == Some("join")
            })
            .filter_map(|((_, key), _)| UserId::parse(key.as_str()).ok())
            .map(|user| user.server_name().to_owned())
            .filter(|server| server != server_name)
            .collect();
        servers.sort();
        servers.dedup();
        let servers: Arc<[OwnedServerName]> = servers.into();
        self.remote_servers = Some(servers.clone());
        servers
    }

    /// The `auth_events` of an event of this shape (spec: "Auth events selection").
    pub fn auth_events_for(
        &self,
        pdu_kind: &ruma::events::TimelineEventType,
        sender: &ruma::UserId,
        state_key: Option<&str>,
        content: &serde_json::value::RawValue,
    ) -> Result<Vec<Arc<Pdu>>, String> {
        let types = state_res::auth_types_for_event(
            pdu_kind,
            sender,
            state_key,
            content,
            &self.rules.authorization,
        )?;
        Ok(types
            .iter()
            .filter_map(|(kind, key)| self.get(kind, key))
            .cloned()
            .collect())
    }

    /// The room's identity and rules with another state: a branch of it, or the state that an
    /// event's auth events make.
    pub fn with_state(&self, state: HashMap<StateKey, Arc<Pdu>>) -> Self {
        Self {
            room_id: self.room_id.clone(),
            version: self.version.clone(),
            rules: self.rules.clone(),
            state,
            state_group: self.state_group,
            chain_length: self.chain_length,
            extremities: self.extremities.clone(),
            extremity_hashes: self.extremity_hashes.clone(),
            depth: self.depth,
            local_audience: None,
            remote_servers: None,
            push_context: None,
        }
    }

    /// The reference hashes an event on the extremities with these auth events refers to them
    /// by (room versions 1 and 2; empty for later versions, which refer by ID alone).
    pub fn reference_hashes(
        &self,
        auth_events: &[Arc<Pdu>],
    ) -> Result<ReferenceHashes, EventError> {
        if !is_format_v1(&self.rules) {
            return Ok(ReferenceHashes::new());
        }
        let mut hashes = self.extremity_hashes.clone();
        for pdu in auth_events {
            hashes.insert(
                pdu.event_id.clone(),
                reference_sha256(&pdu.json, &self.rules)?,
            );
        }
        Ok(hashes)
    }

    /// Remembers the reference hash of `pdu`, which becomes an extremity (room versions 1 and 2).
    pub fn note_reference_hash(&mut self, pdu: &Pdu) -> Result<(), EventError> {
        if is_format_v1(&self.rules) {
            let hash = reference_sha256(&pdu.json, &self.rules)?;
            self.extremity_hashes.insert(pdu.event_id.clone(), hash);
        }
        Ok(())
    }

    /// Runs the authorization rules for `pdu` against the current state (which, for an event
    /// built on the extremities, is the state before it). `auth_events` are the ones
    /// `auth_events_for` chose for it.
    pub fn authorize(&self, pdu: &Pdu, auth_events: &[Arc<Pdu>]) -> Result<(), String> {
        // v12 events do not list the create event, but the rules read it (the room ID names it).
        let create = self.get(&StateEventType::RoomCreate, "");
        state_res::check_state_independent_auth_rules(&self.rules.authorization, pdu, |id| {
            auth_events
                .iter()
                .chain(create)
                .find(|p| &*p.event_id == id)
                .map(|p| &**p)
        })?;
        state_res::check_state_dependent_auth_rules(&self.rules.authorization, pdu, |kind, key| {
            self.get(kind, key).map(|p| &**p)
        })
    }

    /// Makes `pdu` the room's newest event; returns the state group written with it, if it
    /// changes the state.
    pub fn advance(
        &mut self,
        pdu: &Arc<Pdu>,
        next_group: impl FnOnce() -> i64,
    ) -> Option<NewStateGroup> {
        self.extremities = vec![pdu.event_id.clone()];
        self.depth = self.depth.max(pdu.depth);
        let state_key = pdu.state_key.as_ref()?;
        let key = (
            StateEventType::from(pdu.event_type().to_string()),
            state_key.clone(),
        );
        if key.0 == StateEventType::RoomMember {
            self.local_audience = None;
            self.remote_servers = None;
        }
        self.push_context = None;
        self.state.insert(key, pdu.clone());
        let changed = vec![StateEntry {
            event_type: pdu.kind.to_string(),
            state_key: state_key.clone(),
            event_id: pdu.event_id.clone(),
        }];
        Some(self.write_group(changed, false, next_group()))
    }

    /// Makes `state` the room's current state, as resolved from its branches: the entries of
    /// the current state that change, and the state group written for them (none if nothing
    /// changed).
    pub fn replace_state(
        &mut self,
        state: HashMap<StateKey, Arc<Pdu>>,
        next_group: impl FnOnce() -> i64,
    ) -> ResolvedState {
        let changed: Vec<(StateEntry, Option<String>)> = state
            .iter()
            .filter(|(key, pdu)| {
                self.state
                    .get(*key)
                    .is_none_or(|current| current.event_id != pdu.event_id)
            })
            .map(|((kind, key), pdu)| {
                let entry = StateEntry {
                    event_type: kind.to_string(),
                    state_key: key.clone(),
                    event_id: pdu.event_id.clone(),
                };
                (entry, pdu.membership())
            })
            .collect();
        let removed: Vec<(String, String)> = self
            .state
            .keys()
            .filter(|key| !state.contains_key(*key))
            .map(|(kind, key)| (kind.to_string(), key.clone()))
            .collect();
        let mut groups = Vec::new();
        if !changed.is_empty() || !removed.is_empty() {
            self.local_audience = None;
            self.remote_servers = None;
            self.push_context = None;
            self.state = state;
            let entries = changed.iter().map(|(entry, _)| entry.clone()).collect();
            // A delta cannot take entries away: a removal needs a full snapshot.
            groups.push(self.write_group(entries, !removed.is_empty(), next_group()));
        }
        ResolvedState {
            groups,
            current_group: self.state_group,
            changed,
            removed,
        }
    }

    /// The state group `group_id` of the current state, as a delta of `changed` entries over the
    /// previous group or, every so often (or when `full` is asked for), as a full snapshot; it
    /// becomes the room's group.
    fn write_group(
        &mut self,
        changed: Vec<StateEntry>,
        full: bool,
        group_id: i64,
    ) -> NewStateGroup {
        let delta = !full && self.chain_length < MAX_DELTA_CHAIN && self.state_group > 0;
        let entries = if delta {
            changed
        } else {
            snapshot(group_id, &self.state).entries
        };
        let group = NewStateGroup {
            group_id,
            prev_group: delta.then_some(self.state_group),
            chain_length: if delta { self.chain_length + 1 } else { 0 },
            entries,
        };
        self.state_group = group_id;
        self.chain_length = group.chain_length;
        group
    }
}

/// A state group holding all of `state` (a full snapshot, no delta).
pub fn snapshot(group_id: i64, state: &HashMap<StateKey, Arc<Pdu>>) -> NewStateGroup {
    NewStateGroup {
        group_id,
        prev_group: None,
        chain_length: 0,
        entries: state
            .iter()
            .map(|((kind, key), pdu)| StateEntry {
                event_type: kind.to_string(),
                state_key: key.clone(),
                event_id: pdu.event_id.clone(),
            })
            .collect(),
    }
}
