//! State resolution (spec: room versions 2+, "State resolution"; v2.1 from room version 12):
//! merges the states of branches of the room graph. Forks arrive with federation; the engine
//! resolves them here, over any source of events (the store, or a federation fetch).

use std::collections::{HashMap, HashSet};

use ruma::{
    EventId, OwnedEventId,
    room_version_rules::{RoomVersionRules, StateResolutionVersion},
    state_res::{self, StateMap, utils::event_id_set::EventIdSet},
};

use crate::events::Pdu;

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("room versions using state resolution v1 are not supported")]
    UnsupportedVersion,
    #[error("state resolution failed: {0}")]
    Failed(String),
}

/// Resolves `states` (one state map per branch) into the room's state. `fetch` gives any event
/// of the room by ID; events it does not know are left out, as the algorithm requires.
pub fn resolve_state<'a>(
    rules: &RoomVersionRules,
    states: &[StateMap<OwnedEventId>],
    fetch: impl Fn(&EventId) -> Option<&'a Pdu>,
) -> Result<StateMap<OwnedEventId>, ResolveError> {
    let StateResolutionVersion::V2(state_res_rules) = &rules.state_res else {
        return Err(ResolveError::UnsupportedVersion);
    };
    let auth_chains = states
        .iter()
        .map(|state| auth_chain(state.values(), &fetch))
        .collect();
    state_res::resolve(
        &rules.authorization,
        state_res_rules,
        states,
        auth_chains,
        &fetch,
        |conflicted| Some(conflicted_state_subgraph(conflicted, &fetch)),
    )
    .map_err(|e| ResolveError::Failed(e.to_string()))
}

/// Every event reachable from `events` through `auth_events`, excluding `events` themselves
/// unless reachable from another.
pub fn auth_chain<'a, 'b>(
    events: impl IntoIterator<Item = &'b OwnedEventId>,
    fetch: &impl Fn(&EventId) -> Option<&'a Pdu>,
) -> EventIdSet<OwnedEventId> {
    let mut chain = EventIdSet::new();
    let mut stack: Vec<OwnedEventId> = events
        .into_iter()
        .filter_map(|id| fetch(id))
        .flat_map(|pdu| pdu.auth_events.iter().cloned())
        .collect();
    while let Some(id) = stack.pop() {
        if chain.contains(&id) {
            continue;
        }
        if let Some(pdu) = fetch(&id) {
            stack.extend(pdu.auth_events.iter().cloned());
        }
        chain.insert(id);
    }
    chain
}

/// The events on `auth_events` paths between two events of the conflicted state set,
/// endpoints included (spec v12: "Conflicted state subgraph").
fn conflicted_state_subgraph<'a>(
    conflicted: &StateMap<Vec<OwnedEventId>>,
    fetch: &impl Fn(&EventId) -> Option<&'a Pdu>,
) -> EventIdSet<OwnedEventId> {
    let conflicted: HashSet<&EventId> = conflicted.values().flatten().map(|id| &**id).collect();
    // Everything reachable from a conflicted event (itself included).
    let mut reachable: Vec<OwnedEventId> = Vec::new();
    let mut seen: HashSet<OwnedEventId> = HashSet::new();
    let mut stack: Vec<OwnedEventId> = conflicted.iter().map(|id| (*id).to_owned()).collect();
    while let Some(id) = stack.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        if let Some(pdu) = fetch(&id) {
            stack.extend(pdu.auth_events.iter().cloned());
        }
        reachable.push(id);
    }
    // Of those, the ones from which a conflicted event can be reached (itself included).
    let mut reaches: HashMap<OwnedEventId, bool> = HashMap::new();
    reachable
        .into_iter()
        .filter(|id| reaches_conflicted(id, &conflicted, fetch, &mut reaches))
        .collect()
}

fn reaches_conflicted<'a>(
    start: &EventId,
    conflicted: &HashSet<&EventId>,
    fetch: &impl Fn(&EventId) -> Option<&'a Pdu>,
    memo: &mut HashMap<OwnedEventId, bool>,
) -> bool {
    // Iterative post-order walk: auth chains can be deep enough to overflow a recursive one.
    let mut stack = vec![(start.to_owned(), false)];
    while let Some((id, children_done)) = stack.pop() {
        if memo.contains_key(&id) {
            continue;
        }
        let auth_events = fetch(&id)
            .map(|pdu| pdu.auth_events.as_slice())
            .unwrap_or_default();
        if conflicted.contains(&*id) {
            memo.insert(id, true);
        } else if children_done {
            let value = auth_events
                .iter()
                .any(|a| memo.get(a).copied().unwrap_or(false));
            memo.insert(id, value);
        } else {
            stack.push((id.clone(), true));
            stack.extend(
                auth_events
                    .iter()
                    .filter(|a| !memo.contains_key(*a))
                    .map(|a| (a.clone(), false)),
            );
        }
    }
    memo.get(start).copied().unwrap_or(false)
}
