//! Events another server built on other events than this server's latest ones (spec:
//! Server-Server API, "Checks performed on receipt of a PDU"). The state before such an event
//! is the state after its predecessors, resolved when they differ. The event must pass the
//! auth rules against that state; if it does not also pass them against the room's current
//! state it is soft-failed: kept with its state, but not shown to clients nor built on.
//! Otherwise the room's branches merge: its current state becomes the resolution of the
//! current state and the state after the event (spec: room versions, "State resolution").

use std::{collections::HashMap, sync::Arc, sync::atomic::Ordering};

use ruma::{OwnedEventId, room_version_rules::RoomVersionRules, state_res::StateMap};

use super::{
    RoomState, Rooms,
    resolve::resolve_state,
    state::{StateKey, snapshot},
};
use crate::{
    Error, Result,
    events::Pdu,
    store::{NewStateGroup, ResolvedState},
};

pub(super) type State = HashMap<StateKey, Arc<Pdu>>;

/// The state before a received event.
pub(super) enum StateBefore {
    /// The room's current state: the event extends the room as an event of its own would.
    Current,
    /// Another state: the room as it was there, and the state group written for it when
    /// resolving the states after the event's predecessors made a new one.
    Branch {
        room: Box<RoomState>,
        group: Option<NewStateGroup>,
    },
}

impl Rooms {
    /// The state before `pdu`, from the states after its predecessors, which must be events
    /// of the room whose state this server knows (the gap before a PDU is filled first).
    pub(super) async fn state_before(&self, room: &RoomState, pdu: &Pdu) -> Result<StateBefore> {
        let mut prev = pdu.prev_events.clone();
        prev.sort();
        let mut latest = room.extremities.clone();
        latest.sort();
        if prev == latest {
            return Ok(StateBefore::Current);
        }
        let rows = self.store.events(&pdu.prev_events).await?;
        let mut groups = Vec::with_capacity(pdu.prev_events.len());
        for prev in &pdu.prev_events {
            let row = rows
                .iter()
                .find(|row| &row.event_id == prev && row.room_id == room.room_id)
                .filter(|row| row.has_state())
                .ok_or_else(|| {
                    Error::Unknown(format!(
                        "{} follows {prev}, which this server does not have in {} \
                         with its state",
                        pdu.event_id, room.room_id
                    ))
                })?;
            groups.push(row.state_after);
        }
        groups.sort_unstable();
        groups.dedup();
        if groups == [room.state_group] {
            return Ok(StateBefore::Current);
        }
        let mut branch = room.clone();
        branch.local_audience = None;
        branch.remote_servers = None;
        branch.push_context = None;
        if let [group] = groups[..] {
            branch.state = self.state_of_group(group).await?;
            // The same state under another group (taken in at the edge of a gap, or resolved
            // to the same): the event's successors then find the current group.
            if same_state(&branch.state, &room.state) {
                return Ok(StateBefore::Current);
            }
            branch.state_group = group;
            branch.chain_length = self.store.state_chain_length(group).await?;
            return Ok(StateBefore::Branch {
                room: Box::new(branch),
                group: None,
            });
        }
        let mut states = Vec::with_capacity(groups.len());
        for group in groups {
            states.push(self.state_of_group(group).await?);
        }
        branch.state = self.resolve_states(room, &states).await?;
        if same_state(&branch.state, &room.state) {
            return Ok(StateBefore::Current);
        }
        branch.state_group = self.next_state_group.fetch_add(1, Ordering::Relaxed);
        branch.chain_length = 0;
        let group = snapshot(branch.state_group, &branch.state);
        Ok(StateBefore::Branch {
            room: Box::new(branch),
            group: Some(group),
        })
    }

    /// Merges `branch` (the state after a received event) into the room's current state.
    pub(super) async fn merge_branch(
        &self,
        room: &mut RoomState,
        branch: &RoomState,
    ) -> Result<ResolvedState> {
        let resolved = if same_state(&room.state, &branch.state) {
            room.state.clone()
        } else {
            self.resolve_states(room, &[room.state.clone(), branch.state.clone()])
                .await?
        };
        Ok(room.replace_state(resolved, || {
            self.next_state_group.fetch_add(1, Ordering::Relaxed)
        }))
    }

    /// Resolves `states` of the room, with every event of their auth chains.
    async fn resolve_states(&self, room: &RoomState, states: &[State]) -> Result<State> {
        let mut events: HashMap<OwnedEventId, Arc<Pdu>> = states
            .iter()
            .flat_map(HashMap::values)
            .map(|pdu| (pdu.event_id.clone(), pdu.clone()))
            .collect();
        let auth_events: Vec<OwnedEventId> = events
            .values()
            .flat_map(|pdu| pdu.auth_events.iter().cloned())
            .collect();
        for (event_id, json) in self.auth_chain_of(auth_events).await? {
            if let std::collections::hash_map::Entry::Vacant(slot) = events.entry(event_id) {
                let pdu = Pdu::from_json(slot.key().clone(), &room.room_id, json)
                    .map_err(|e| Error::Internal(e.to_string()))?;
                slot.insert(Arc::new(pdu));
            }
        }
        resolve_with(&room.rules, states, &events)
    }
}

/// State resolution of `states` over `events`, which hold every event the algorithm reads.
fn resolve_with(
    rules: &RoomVersionRules,
    states: &[State],
    events: &HashMap<OwnedEventId, Arc<Pdu>>,
) -> Result<State> {
    let maps: Vec<StateMap<OwnedEventId>> = states
        .iter()
        .map(|state| {
            state
                .iter()
                .map(|(key, pdu)| (key.clone(), pdu.event_id.clone()))
                .collect()
        })
        .collect();
    let resolved = resolve_state(rules, &maps, |id| events.get(id).map(|pdu| &**pdu))
        .map_err(|e| Error::Internal(e.to_string()))?;
    resolved
        .into_iter()
        .map(|(key, event_id)| {
            events
                .get(&event_id)
                .cloned()
                .map(|pdu| (key, pdu))
                .ok_or_else(|| Error::Internal(format!("resolved to {event_id}, not loaded")))
        })
        .collect()
}

/// Whether two states hold the same events.
fn same_state(a: &State, b: &State) -> bool {
    a.len() == b.len()
        && a.iter().all(|(key, pdu)| {
            b.get(key)
                .is_some_and(|other| other.event_id == pdu.event_id)
        })
}

/// The room's forward extremities once `pdu` is added: it follows its predecessors.
pub(super) fn extremities_with(previous: &[OwnedEventId], pdu: &Pdu) -> Vec<OwnedEventId> {
    let mut extremities: Vec<OwnedEventId> = previous
        .iter()
        .filter(|id| !pdu.prev_events.contains(id))
        .cloned()
        .collect();
    extremities.push(pdu.event_id.clone());
    extremities
}
