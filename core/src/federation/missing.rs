//! Filling a gap before a received PDU (spec: Server-Server API, "Backfilling and retrieving
//! missing events"): when a PDU names predecessors this server lacks, the sending server is
//! asked for the events between this server's latest events and the PDU, which are then
//! taken oldest first.

use ruma::{
    CanonicalJsonValue, OwnedEventId, RoomId, ServerName, UInt,
    api::federation::event::get_missing_events, room_version_rules::RoomVersionRules,
};

use crate::{Result, Services};

/// The most events asked for to fill one gap; a wider gap is left, and the PDU refused.
const MISSING_EVENTS_LIMIT: u32 = 20;

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
        let known = self.store.events(prev_events).await?;
        let missing = prev_events.iter().any(|id| {
            !known
                .iter()
                .any(|row| &row.event_id == id && row.has_state())
        });
        if !missing {
            return Ok(());
        }
        let mut request = get_missing_events::v1::Request::new(
            room_id.to_owned(),
            extremities,
            vec![event_id.clone()],
        );
        request.limit = UInt::from(MISSING_EVENTS_LIMIT);
        let response = self.federation.client.send(origin, request).await?;
        let mut events = Vec::with_capacity(response.events.len());
        for json in &response.events {
            let checked = self
                .federation
                .keys
                .check_pdu(origin, room_id, rules, json)
                .await?;
            let depth = match checked.object.get("depth") {
                Some(CanonicalJsonValue::Integer(depth)) => i64::from(*depth),
                _ => 0,
            };
            events.push((depth, checked));
        }
        events.sort_by_key(|(depth, _)| *depth);
        for (_, checked) in events {
            let json = serde_json::to_string(&checked.object)
                .map_err(|e| crate::Error::Internal(e.to_string()))?;
            self.rooms
                .receive_pdu(room_id, &checked.event_id, json.into())
                .await?;
        }
        Ok(())
    }
}
