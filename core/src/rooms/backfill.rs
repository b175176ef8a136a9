//! The room graph's side of backfilling (spec: Server-Server API, "Backfilling and retrieving
//! missing events"): where this server's history of a room begins, and storing the older
//! events other servers send back below it in the timeline.
//!
//! Backfilled events are history: they take negative timeline positions, lower with each
//! round, so `/messages` pages on into them while sync (which only reads forwards from its
//! token) never sees them; the room's current state and latest events stay as they are. Their
//! state is taken to be the state at the start of this server's history (before its first
//! join), which is what history visibility is judged on: a user of this server was not in
//! the room then, so `joined` and `invited` history stays hidden while `shared` and
//! `world_readable` history shows.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, atomic::Ordering},
};

use ruma::{EventId, OwnedEventId, RoomId, events::StateEventType};

use super::{
    Rooms, check_against_auth_events, read::parse, remote::withhold_unpermitted_redaction,
};
use crate::{
    Error, Result,
    events::Pdu,
    store::{EventRow, NewEventRow},
};

/// Where this server's history of a room begins, when older events exist elsewhere.
#[derive(Debug, Clone)]
pub struct BackfillPoint {
    /// The predecessors of the room's earliest event here, which this server lacks.
    pub missing: Vec<OwnedEventId>,
    /// The state group of that earliest event's state before it.
    state_group: i64,
}

impl Rooms {
    /// Where the room's history here begins, if it has older events this server lacks: the
    /// room was joined through another server (or backfilled only in part).
    pub async fn backfill_point(&self, room_id: &RoomId) -> Result<Option<BackfillPoint>> {
        match self
            .store
            .room_events(room_id, i64::MIN, true, 1)
            .await?
            .pop()
        {
            Some(earliest) => self.gap_before(earliest).await,
            None => Ok(None),
        }
    }

    /// The events just before `event_id` (a timeline event) that this server lacks, if any:
    /// after a join, the events between an earlier invite and the join.
    pub async fn backfill_point_before(&self, event_id: &EventId) -> Result<Option<BackfillPoint>> {
        match self.store.event(event_id).await? {
            Some(row) if row.stream_ordering != 0 => self.gap_before(row).await,
            _ => Ok(None),
        }
    }

    async fn gap_before(&self, earliest: EventRow) -> Result<Option<BackfillPoint>> {
        let pdu = parse(&earliest)?;
        if pdu.prev_events.is_empty() {
            return Ok(None);
        }
        let known = self.store.events(&pdu.prev_events).await?;
        let missing: Vec<OwnedEventId> = pdu
            .prev_events
            .iter()
            .filter(|id| {
                !known
                    .iter()
                    .any(|row| &row.event_id == *id && row.stream_ordering != 0)
            })
            .cloned()
            .collect();
        Ok((!missing.is_empty()).then_some(BackfillPoint {
            missing,
            state_group: earliest.state_before,
        }))
    }

    /// Of `events` (backfilled), those with auth events that are neither among them nor
    /// stored here: their sender must be asked for these events' auth chains.
    pub async fn lacking_auth_events(&self, events: &[Pdu]) -> Result<Vec<OwnedEventId>> {
        let in_batch: HashSet<&EventId> = events.iter().map(|pdu| &*pdu.event_id).collect();
        let wanted: Vec<OwnedEventId> = events
            .iter()
            .flat_map(|pdu| &pdu.auth_events)
            .filter(|id| !in_batch.contains(&***id))
            .cloned()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let stored: HashSet<OwnedEventId> = self
            .store
            .events(&wanted)
            .await?
            .into_iter()
            .map(|row| row.event_id)
            .collect();
        Ok(events
            .iter()
            .filter(|pdu| {
                pdu.auth_events
                    .iter()
                    .any(|id| !in_batch.contains(&**id) && !stored.contains(id))
            })
            .map(|pdu| pdu.event_id.clone())
            .collect())
    }

    /// Stores `events` (checked PDUs another server sent for `point`) below the room's
    /// history, newest first; events already in the timeline are skipped. Each must pass the
    /// auth rules against its own auth events, found among `events`, `auth_chains` (fetched
    /// for them) and the stored events; one that does not is left out. A redaction among them
    /// prunes its target (stored, among them, or once it arrives) when its sender may redact
    /// it, and so does a redaction stored earlier of one of them. Returns those
    /// stored, with their stream positions.
    pub async fn persist_backfilled(
        &self,
        room_id: &RoomId,
        point: &BackfillPoint,
        mut events: Vec<Pdu>,
        auth_chains: Vec<Pdu>,
    ) -> Result<Vec<(i64, Pdu)>> {
        let ids: Vec<OwnedEventId> = events.iter().map(|pdu| pdu.event_id.clone()).collect();
        let stored = self.store.events(&ids).await?;
        let (room, create) = {
            let guard = self.lock(room_id).await?;
            let room = guard
                .as_ref()
                .ok_or_else(|| Error::NotFound(format!("Unknown room {room_id}")))?;
            let create = room
                .get(&StateEventType::RoomCreate, "")
                .cloned()
                .ok_or_else(|| Error::Internal(format!("room {room_id} has no create event")))?;
            (room.with_state(HashMap::new()), create)
        };
        let mut known: HashMap<OwnedEventId, Arc<Pdu>> = events
            .iter()
            .chain(&auth_chains)
            .map(|pdu| (pdu.event_id.clone(), Arc::new(pdu.clone())))
            .collect();
        let unknown: Vec<OwnedEventId> = events
            .iter()
            .flat_map(|pdu| pdu.auth_events.iter().chain(&pdu.redacts))
            .filter(|id| !known.contains_key(*id))
            .cloned()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        for row in self.store.events(&unknown).await? {
            if row.room_id == room_id {
                known.insert(row.event_id.clone(), Arc::new(parse(&row)?));
            }
        }
        // Oldest first, so that an event rejected here authorizes none after it.
        events.sort_by_key(|pdu| pdu.depth);
        let mut pdus = Vec::with_capacity(events.len());
        let mut pending_redactions = Vec::new();
        for mut pdu in events {
            if stored
                .iter()
                .any(|row| row.event_id == pdu.event_id && row.stream_ordering != 0)
            {
                continue;
            }
            let lookup = |id: &EventId| known.get(id).map(|pdu| &**pdu);
            if let Err(reason) =
                check_against_auth_events(&room.rules, &pdu, Some(&*create), lookup)
            {
                tracing::info!(%room_id, event_id = %pdu.event_id, %reason, "a backfilled event fails the auth rules");
                known.remove(&pdu.event_id);
                continue;
            }
            if let Some(target) = &pdu.redacts {
                let target_sender = known.get(target).map(|target| target.sender.clone());
                let auth_state = pdu
                    .auth_events
                    .iter()
                    .filter_map(|id| known.get(id))
                    .chain([&create])
                    .filter_map(|auth| {
                        let key = (
                            StateEventType::from(auth.kind.to_string()),
                            auth.state_key.clone()?,
                        );
                        Some((key, auth.clone()))
                    })
                    .collect();
                let pending = withhold_unpermitted_redaction(
                    &room.with_state(auth_state),
                    &mut pdu,
                    target_sender.as_deref(),
                );
                pending_redactions.extend(pending.map(|pending| (pdu.event_id.clone(), pending)));
            }
            pdus.push(pdu);
        }
        pdus.sort_by(|a, b| {
            (b.depth, b.origin_server_ts, &b.event_id).cmp(&(
                a.depth,
                a.origin_server_ts,
                &a.event_id,
            ))
        });
        let count = i64::try_from(pdus.len()).unwrap_or(i64::MAX);
        let first = self.backfill_position.fetch_sub(count, Ordering::Relaxed);
        let rows: Vec<NewEventRow> = pdus
            .iter()
            .zip((0..).map(|i: i64| first - i))
            .map(|(pdu, position)| NewEventRow {
                stream_ordering: position,
                state_before: point.state_group,
                state_after: point.state_group,
                ..super::event_row(pdu)
            })
            .collect();
        let positions: Vec<i64> = rows.iter().map(|row| row.stream_ordering).collect();
        self.store
            .persist_backfilled(room_id, rows, room.rules.redaction.clone())
            .await?;
        for (redaction_id, pending) in pending_redactions {
            if let Some(redaction) = pdus.iter().find(|pdu| pdu.event_id == redaction_id) {
                self.keep_pending_redaction(redaction, Some(pending))
                    .await?;
            }
        }
        Ok(positions.into_iter().zip(pdus).collect())
    }
}
