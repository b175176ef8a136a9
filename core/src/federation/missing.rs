//! Filling a gap before a received PDU (spec: Server-Server API, "Backfilling and retrieving
//! missing events"): when a PDU names predecessors this server lacks, the sending server is
//! asked for the events between this server's latest events and the PDU, round after round
//! (a server answers at most a few dozen events per request) until the gap is closed; the
//! events are then taken oldest first. A gap too wide to close is bridged with the state at
//! its edge (see `rooms::gap`).

use std::{collections::HashMap, sync::Arc};

use ruma::{
    OwnedEventId, RoomId, ServerName, UInt,
    api::federation::event::{get_event, get_missing_events, get_room_state},
    room_version_rules::RoomVersionRules,
};

use crate::{Error, Result, Services, events::Pdu};

/// The most events asked for per request (Synapse answers at most 20).
const MISSING_EVENTS_LIMIT: u32 = 20;
/// The most requests for one gap: a gap of up to 1,000 events is closed. Beyond that the
/// events in between are left out: the oldest fetched events are placed on the state before
/// their missing predecessors, asked for instead.
const MAX_GAP_ROUNDS: usize = 50;
/// The most missing predecessors taken with their state for one PDU (each costs the room's
/// whole state); a PDU with more is judged on what is at hand.
const MAX_HOLES: usize = 5;

impl Services {
    /// Takes the events missing before `event_id` (whose predecessors are `prev_events`)
    /// from `origin`, if any are missing. Failures are logged: the PDU is then judged alone.
    pub(super) async fn fill_gap(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        rules: &RoomVersionRules,
        event_id: &OwnedEventId,
        prev_events: &[OwnedEventId],
    ) {
        if let Err(e) = self
            .try_fill_gap(origin, room_id, rules, event_id, prev_events)
            .await
        {
            tracing::info!(%origin, %room_id, %event_id, error = %e, "cannot fill the gap before a PDU");
        }
    }

    async fn try_fill_gap(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        rules: &RoomVersionRules,
        event_id: &OwnedEventId,
        prev_events: &[OwnedEventId],
    ) -> Result<()> {
        // Most PDUs extend the room's latest events, held in memory: no query for those.
        let extremities = self.rooms.extremities(room_id).await?;
        if prev_events.iter().all(|id| extremities.contains(id)) {
            return Ok(());
        }
        let mut fetched: HashMap<OwnedEventId, Pdu> = HashMap::new();
        // Events whose predecessors are not all at hand: the next request walks back from them.
        let mut frontier = vec![(event_id.clone(), prev_events.to_vec())];
        for _ in 0..MAX_GAP_ROUNDS {
            let wanted: Vec<OwnedEventId> = frontier
                .iter()
                .flat_map(|(_, prev)| prev.iter())
                .filter(|id| !fetched.contains_key(*id))
                .cloned()
                .collect();
            let known = self.store.events(&wanted).await?;
            let missing = |id: &OwnedEventId| {
                !fetched.contains_key(id)
                    && !known
                        .iter()
                        .any(|row| &row.event_id == id && row.has_state())
            };
            frontier.retain(|(_, prev)| prev.iter().any(missing));
            if frontier.is_empty() {
                break;
            }
            let mut request = get_missing_events::v1::Request::new(
                room_id.to_owned(),
                extremities.clone(),
                frontier.iter().map(|(id, _)| id.clone()).collect(),
            );
            request.limit = UInt::from(MISSING_EVENTS_LIMIT);
            let response = self.federation.client.send(origin, request).await?;
            let mut new = Vec::new();
            for json in &response.events {
                let pdu = self.checked_pdu(origin, room_id, rules, json).await?;
                if fetched.contains_key(&pdu.event_id) {
                    continue;
                }
                new.push((pdu.event_id.clone(), pdu.prev_events.clone()));
                fetched.insert(pdu.event_id.clone(), pdu);
            }
            if new.is_empty() {
                break;
            }
            frontier.extend(new);
        }
        // Predecessors the rounds did not reach: each is taken with the state before it.
        let mut holes: Vec<OwnedEventId> = fetched
            .values()
            .flat_map(|pdu| pdu.prev_events.iter())
            .chain(prev_events)
            .filter(|id| !fetched.contains_key(*id))
            .cloned()
            .collect();
        holes.sort();
        holes.dedup();
        let known = self.store.events(&holes).await?;
        holes.retain(|id| {
            !known
                .iter()
                .any(|row| &row.event_id == id && row.has_state())
        });
        for hole in holes.iter().take(MAX_HOLES) {
            self.take_state_at(origin, room_id, rules, hole).await?;
        }
        let mut events: Vec<Pdu> = fetched.into_values().collect();
        events.sort_by_key(|pdu| pdu.depth);
        for pdu in events {
            self.rooms
                .receive_pdu(room_id, &pdu.event_id, pdu.json.clone())
                .await?;
        }
        Ok(())
    }

    /// Takes `event_id` from `origin` with the room's state before it (`/event`, `/state`),
    /// for the edge of a gap in the room's history.
    async fn take_state_at(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        rules: &RoomVersionRules,
        event_id: &OwnedEventId,
    ) -> Result<()> {
        let response = self
            .federation
            .client
            .send(origin, get_event::v1::Request::new(event_id.clone()))
            .await?;
        let event = self
            .checked_pdu(origin, room_id, rules, &response.pdu)
            .await?;
        if &event.event_id != event_id {
            return Err(Error::BadJson(format!(
                "{origin} sent {} when asked for {event_id}",
                event.event_id
            )));
        }
        let response = self
            .federation
            .client
            .send(
                origin,
                get_room_state::v1::Request::new(event_id.clone(), room_id.to_owned()),
            )
            .await?;
        let mut state = Vec::with_capacity(response.pdus.len());
        for json in &response.pdus {
            state.push(self.checked_pdu(origin, room_id, rules, json).await?);
        }
        let mut auth_chain = Vec::with_capacity(response.auth_chain.len());
        for json in &response.auth_chain {
            auth_chain.push(self.checked_pdu(origin, room_id, rules, json).await?);
        }
        self.rooms
            .persist_event_with_state(room_id, event, state, auth_chain)
            .await
    }

    /// A PDU of `origin`'s answer, checked (signatures, hashes) and parsed.
    pub(super) async fn checked_pdu(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        rules: &RoomVersionRules,
        json: &serde_json::value::RawValue,
    ) -> Result<Pdu> {
        let checked = self
            .federation
            .keys
            .check_pdu(origin, room_id, rules, json)
            .await?;
        let json =
            serde_json::to_string(&checked.object).map_err(|e| Error::Internal(e.to_string()))?;
        Pdu::from_json(checked.event_id, room_id, Arc::from(json))
            .map_err(|e| Error::BadJson(e.to_string()))
    }
}
