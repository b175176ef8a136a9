//! Spec: Server-Server API, "Checks performed on receipt of a PDU", step 4: an event must pass
//! the auth rules against its own auth events. This is the check for events whose state before
//! them this server does not hold: the state a join brings, and backfilled history.

use std::collections::HashMap;

use ruma::{
    EventId,
    events::StateEventType,
    room_version_rules::RoomVersionRules,
    state_res::{self, Event as _},
};

use crate::events::Pdu;

/// Whether `pdu` passes the auth rules against its auth events, found through `lookup`;
/// `create` is the room's create event, which v12 events do not list but the rules read.
pub fn check_against_auth_events<'a>(
    rules: &RoomVersionRules,
    pdu: &Pdu,
    create: Option<&'a Pdu>,
    lookup: impl Fn(&EventId) -> Option<&'a Pdu>,
) -> Result<(), String> {
    let auth_events = pdu
        .auth_events
        .iter()
        .map(|id| lookup(id).ok_or_else(|| format!("its auth event {id} is not known")))
        .collect::<Result<Vec<&Pdu>, String>>()?;
    let by_key: HashMap<(StateEventType, &str), &Pdu> = auth_events
        .iter()
        .copied()
        .chain(create)
        .filter_map(|p| {
            Some((
                (StateEventType::from(p.kind.to_string()), p.state_key()?),
                p,
            ))
        })
        .collect();
    state_res::check_state_independent_auth_rules(&rules.authorization, pdu, |id| {
        auth_events
            .iter()
            .copied()
            .chain(create)
            .find(|p| &*p.event_id == id)
    })?;
    state_res::check_state_dependent_auth_rules(&rules.authorization, pdu, |kind, key| {
        by_key.get(&(kind.clone(), key)).copied()
    })
}
