//! The edge of a gap in a room's history (spec: Server-Server API, "Checks performed on
//! receipt of a PDU": "the server may ask for the state at the missing event"): when the
//! events before a received PDU cannot all be fetched, this server takes the missing
//! predecessor with the state before it, as another server sent them, and places the PDU on
//! that state. The events in between stay unknown.

use std::{collections::HashMap, sync::Arc, sync::atomic::Ordering};

use ruma::{OwnedEventId, RoomId, events::StateEventType};

use super::{Rooms, fork::State, state::snapshot};
use crate::{Error, Result, events::Pdu, store::OutlierWithState};

impl Rooms {
    /// Keeps `event` (checked) outside the timeline with `state` (the room's state before it,
    /// checked) and the state after it, once it passes the auth rules against that state;
    /// `auth_chain` holds the events the state rests on.
    pub async fn persist_event_with_state(
        &self,
        room_id: &RoomId,
        event: Pdu,
        state: Vec<Pdu>,
        auth_chain: Vec<Pdu>,
    ) -> Result<()> {
        let guard = self.lock(room_id).await?;
        let room = guard
            .as_ref()
            .ok_or_else(|| Error::NotFound(format!("Unknown room {room_id}")))?;
        let mut outliers: Vec<(OwnedEventId, Arc<str>)> = Vec::new();
        let mut by_id: HashMap<OwnedEventId, Arc<Pdu>> = HashMap::new();
        let mut by_key: State = HashMap::new();
        for pdu in auth_chain {
            outliers.push((pdu.event_id.clone(), pdu.json.clone()));
            by_id.insert(pdu.event_id.clone(), Arc::new(pdu));
        }
        for pdu in state {
            let state_key = pdu.state_key.clone().ok_or_else(|| {
                Error::BadJson(format!(
                    "{} in the state is not a state event",
                    pdu.event_id
                ))
            })?;
            outliers.push((pdu.event_id.clone(), pdu.json.clone()));
            let pdu = Arc::new(pdu);
            by_id.insert(pdu.event_id.clone(), pdu.clone());
            by_key.insert((StateEventType::from(pdu.kind.to_string()), state_key), pdu);
        }
        if !by_key.contains_key(&(StateEventType::RoomCreate, String::new())) {
            return Err(Error::BadJson(format!(
                "The state before {} has no m.room.create",
                event.event_id
            )));
        }
        let auth_events = event
            .auth_events
            .iter()
            .map(|id| {
                by_id.get(id).cloned().ok_or_else(|| {
                    Error::BadJson(format!(
                        "{id}, an auth event of {}, was not sent",
                        event.event_id
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut branch = room.clone();
        drop(guard);
        branch.state = by_key;
        branch.state_group = self.next_state_group.fetch_add(1, Ordering::Relaxed);
        branch.chain_length = 0;
        branch.local_audience = None;
        branch.remote_servers = None;
        branch.push_context = None;
        branch.authorize(&event, &auth_events).map_err(|reason| {
            Error::Forbidden(format!(
                "{} is not allowed by the state before it: {reason}",
                event.event_id
            ))
        })?;
        let mut groups = vec![snapshot(branch.state_group, &branch.state)];
        let state_before = branch.state_group;
        let event = Arc::new(event);
        groups.extend(branch.advance(&event, || {
            self.next_state_group.fetch_add(1, Ordering::Relaxed)
        }));
        let event = OutlierWithState {
            event_id: event.event_id.clone(),
            json: event.json.clone(),
            state_before,
            state_after: branch.state_group,
        };
        Ok(self
            .store
            .persist_outlier_with_state(room_id, event, groups, outliers)
            .await?)
    }
}
