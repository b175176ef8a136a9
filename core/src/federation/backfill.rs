//! Backfilling (spec: Server-Server API, "Backfilling and retrieving missing events"): when
//! `/messages` pages backwards past the start of this server's history of a room (it joined
//! through another server), the room's other servers are asked for the events before it.

use ruma::{
    EventId, RoomId, ServerName, UInt, UserId,
    api::federation::{authorization::get_event_authorization, backfill::get_backfill},
    room_version_rules::RoomVersionRules,
};

use crate::{
    Error, Result, Services,
    events::Pdu,
    rooms::{BackfillPoint, Direction, MessagesPage, MessagesQuery},
};

/// The fewest events asked for per round: a short page still brings a useful stretch.
const MIN_BACKFILL: usize = 20;
/// The most events asked for per round (the largest `/messages` page).
const MAX_BACKFILL: usize = 100;

impl Services {
    /// `/messages`: a backwards page that reaches the start of this server's history of the
    /// room is completed from the room's other servers, when they have older events.
    pub async fn messages_for(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        query: MessagesQuery<'_>,
    ) -> Result<MessagesPage> {
        let page = self.rooms.messages_for(user_id, room_id, query).await?;
        if query.dir != Direction::Backward || page.end.is_some() || page.chunk.len() >= query.limit
        {
            return Ok(page);
        }
        let Some(point) = self.rooms.backfill_point(room_id).await? else {
            return Ok(page);
        };
        let wanted = (query.limit - page.chunk.len()).clamp(MIN_BACKFILL, MAX_BACKFILL);
        if self.backfill(room_id, &point, wanted).await?.is_empty() {
            return Ok(page);
        }
        self.rooms.messages_for(user_id, room_id, query).await
    }

    /// Fetches up to `limit` of the events before `event_id` that this server lacks (as
    /// after a join, which brings state but no timeline). Returns those stored, with their
    /// (negative) stream positions.
    pub async fn backfill_before(
        &self,
        room_id: &RoomId,
        event_id: &EventId,
        limit: usize,
    ) -> Result<Vec<(i64, Pdu)>> {
        match self.rooms.backfill_point_before(event_id).await? {
            Some(point) => self.backfill(room_id, &point, limit).await,
            None => Ok(Vec::new()),
        }
    }

    /// Asks the room's other servers, one after the other until one answers, for up to
    /// `limit` events before `point`; stores what they send. Returns those that were new.
    async fn backfill(
        &self,
        room_id: &RoomId,
        point: &BackfillPoint,
        limit: usize,
    ) -> Result<Vec<(i64, Pdu)>> {
        let version = self
            .rooms
            .room_version(room_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("Unknown room {room_id}")))?;
        let rules = version.rules().ok_or_else(|| {
            Error::Internal(format!("room {room_id} has unknown version {version}"))
        })?;
        for server in self.rooms.remote_servers(room_id).await?.iter() {
            let request = get_backfill::v1::Request::new(
                room_id.to_owned(),
                point.missing.clone(),
                UInt::try_from(limit).unwrap_or(UInt::MAX),
            );
            let response = match self.federation.client.send(server, request).await {
                Ok(response) => response,
                Err(e) => {
                    tracing::info!(%server, %room_id, error = %e, "backfill failed; trying the next server");
                    continue;
                }
            };
            let mut events = Vec::with_capacity(response.pdus.len());
            for json in &response.pdus {
                // An event that does not check out is left out; the rest is still history.
                match self.checked_pdu(server, room_id, &rules, json).await {
                    Ok(pdu) => events.push(pdu),
                    Err(e) => {
                        tracing::info!(%server, %room_id, error = %e, "a backfilled event was refused");
                    }
                }
            }
            let auth_chains = self
                .auth_chains_of(server, room_id, &rules, &events)
                .await?;
            return self
                .rooms
                .persist_backfilled(room_id, point, events, auth_chains)
                .await;
        }
        Ok(Vec::new())
    }

    /// The auth chains, from `server`, of those `events` whose auth events are not known here
    /// (spec: "Checks performed on receipt of a PDU", step 4 needs them). An auth chain that
    /// cannot be had leaves its event to fail the auth rules.
    async fn auth_chains_of(
        &self,
        server: &ServerName,
        room_id: &RoomId,
        rules: &RoomVersionRules,
        events: &[Pdu],
    ) -> Result<Vec<Pdu>> {
        let mut chains = Vec::new();
        for event_id in self.rooms.lacking_auth_events(events).await? {
            let request =
                get_event_authorization::v1::Request::new(room_id.to_owned(), event_id.clone());
            let response = match self.federation.client.send(server, request).await {
                Ok(response) => response,
                Err(e) => {
                    tracing::info!(%server, %event_id, error = %e, "cannot fetch the auth chain of a backfilled event");
                    continue;
                }
            };
            for json in &response.auth_chain {
                match self.checked_pdu(server, room_id, rules, json).await {
                    Ok(pdu) => chains.push(pdu),
                    Err(e) => {
                        tracing::info!(%server, %event_id, error = %e, "an auth event was refused");
                    }
                }
            }
        }
        Ok(chains)
    }
}
