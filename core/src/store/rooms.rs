//! Rooms, events, state groups, the current state, forward extremities and transaction IDs.

use std::{collections::HashMap, sync::Arc};

use ruma::{
    CanonicalJsonObject, DeviceId, EventId, OwnedEventId, OwnedRoomId, OwnedServerName,
    OwnedUserId, RoomId, RoomVersionId, UserId, canonical_json::redact,
    room_version_rules::RedactionRules,
};
use sqlx::{AnyConnection, Row};

use super::{Result, Store, StoreError, writer::Pending};

/// A stored event: its PDU JSON and where it sits.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub stream_ordering: i64,
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    pub state_before: i64,
    pub state_after: i64,
    pub replaces_state: Option<OwnedEventId>,
    pub redacted_by: Option<OwnedEventId>,
    pub json: Arc<str>,
}

impl EventRow {
    /// Whether the event is in the room graph with the state around it: a timeline event or a
    /// soft-failed one; not an outlier, whose state this server does not know.
    pub fn has_state(&self) -> bool {
        self.state_after != 0
    }
}

/// An event kept outside the timeline with its state (see
/// [`Store::persist_outlier_with_state`]).
#[derive(Debug, Clone)]
pub struct OutlierWithState {
    pub event_id: OwnedEventId,
    pub json: Arc<str>,
    pub state_before: i64,
    pub state_after: i64,
}

/// A state group written with an event: a delta over `prev_group`, or a full snapshot.
#[derive(Debug, Clone)]
pub struct NewStateGroup {
    pub group_id: i64,
    pub prev_group: Option<i64>,
    pub chain_length: i64,
    pub entries: Vec<StateEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateEntry {
    pub event_type: String,
    pub state_key: String,
    pub event_id: OwnedEventId,
}

/// One event to persist, with everything that changes with it.
#[derive(Debug, Clone)]
pub struct NewEventRow {
    pub stream_ordering: i64,
    pub event_id: OwnedEventId,
    pub event_type: String,
    pub state_key: Option<String>,
    pub sender: String,
    pub origin_server_ts: i64,
    pub depth: i64,
    /// The PDU's `prev_events`, as parsed when it was built.
    pub prev_events: Vec<OwnedEventId>,
    pub state_before: i64,
    pub state_after: i64,
    pub state_group: Option<NewStateGroup>,
    /// For state events: the membership, denormalised into `current_state`.
    pub membership: Option<String>,
    pub replaces_state: Option<OwnedEventId>,
    pub relates_to: Option<(OwnedEventId, String)>,
    /// `(user, device, scope, txn_id)` of the client request that sent it.
    pub transaction: Option<(String, String, String, String)>,
    /// For redactions: the event whose stored JSON is pruned.
    pub redacts: Option<OwnedEventId>,
    pub json: Arc<str>,
    /// The local users the event notifies or highlights, by their push rules.
    pub push_actions: Vec<PushActionRow>,
}

/// One recipient's push rule outcome for an event that notifies or highlights them.
#[derive(Debug, Clone)]
pub struct PushActionRow {
    pub user_id: OwnedUserId,
    /// The thread root for events in a thread; `None` for the main timeline.
    pub thread_id: Option<OwnedEventId>,
    pub notify: bool,
    pub highlight: bool,
    /// The matched rule's actions, as JSON.
    pub actions: String,
}

/// A batch of events of one room, persisted in one transaction.
pub struct EventBatch {
    pub room_id: OwnedRoomId,
    /// Set when the batch creates the room.
    pub new_room: Option<NewRoom>,
    pub events: Vec<NewEventRow>,
    /// The room's forward extremities after the batch.
    pub extremities: Vec<OwnedEventId>,
    pub redaction_rules: RedactionRules,
    /// Remote servers in the room, to which the batch's events are queued for sending (in the
    /// same transaction): empty for events received from other servers.
    pub remote_servers: Vec<OwnedServerName>,
    /// Whether the events' `prev_events` must be events of this server's timeline, checked at
    /// commit; not so for an event joining a remote room, whose predecessors are unknown here.
    pub prev_events_local: bool,
    /// Run once the batch has committed (never if it fails): releases the events' positions
    /// to readers and wakes their syncs. Runs even if the request that queued it went away.
    pub after_commit: Option<AfterCommit>,
    /// Set when branches of the room merged: the room's current state is then not its events'
    /// state after them, but the state resolved from its branches.
    pub resolved: Option<ResolvedState>,
}

impl EventBatch {
    /// Runs `hook` once the batch has committed, before the hooks already set.
    fn first_after_commit(&mut self, hook: impl FnOnce() + Send + Sync + 'static) {
        let then = self.after_commit.take();
        self.after_commit = Some(Box::new(move || {
            hook();
            if let Some(then) = then {
                then();
            }
        }));
    }
}

/// The current state of a room whose branches were merged by state resolution.
#[derive(Debug, Clone)]
pub struct ResolvedState {
    /// State groups written with no event: a resolved state before an event, the resolved
    /// current state.
    pub groups: Vec<NewStateGroup>,
    /// The group of the room's current state.
    pub current_group: i64,
    /// Entries of the current state that changed, with their membership for member events.
    pub changed: Vec<(StateEntry, Option<String>)>,
    /// `(type, state key)` of entries no longer in the current state.
    pub removed: Vec<(String, String)>,
}

pub type AfterCommit = Box<dyn FnOnce() + Send + Sync>;

pub struct NewRoom {
    pub version: RoomVersionId,
    pub creator: String,
    pub created_ts: i64,
    /// Listed in the public room directory.
    pub published: bool,
}

/// A room as loaded into the engine's cache.
pub struct StoredRoom {
    pub version: RoomVersionId,
    pub state_group: i64,
    pub chain_length: i64,
    pub current_state: Vec<StateEntry>,
    pub extremities: Vec<(OwnedEventId, i64)>,
}

pub(super) fn event_row(row: &sqlx::any::AnyRow) -> Result<EventRow> {
    let id = |column: &str| -> Result<OwnedEventId> {
        let text: String = row.try_get(column)?;
        super::stored_id::<OwnedEventId>(text)
    };
    let optional_id = |column: &str| -> Result<Option<OwnedEventId>> {
        let text: Option<String> = row.try_get(column)?;
        text.map(super::stored_id::<OwnedEventId>).transpose()
    };
    let room: String = row.try_get("room_id")?;
    Ok(EventRow {
        stream_ordering: row.try_get("stream_ordering")?,
        event_id: id("event_id")?,
        room_id: super::stored_id::<OwnedRoomId>(room)?,
        state_before: row.try_get("state_before")?,
        state_after: row.try_get("state_after")?,
        replaces_state: optional_id("replaces_state")?,
        redacted_by: optional_id("redacted_by")?,
        json: Arc::from(row.try_get::<String, _>("json")?),
    })
}

/// The events that `events` redact, whose stored rows their write prunes.
fn redaction_targets(events: &[NewEventRow]) -> Vec<OwnedEventId> {
    events
        .iter()
        .filter_map(|event| event.redacts.clone())
        .collect()
}

/// One row per event from the `events` rows and the `outliers` rows of the same IDs. An
/// out-of-band membership (a timeline row without state, see
/// [`Store::persist_out_of_band_membership`]) that was later received into the room graph and
/// soft-failed there keeps its place and takes the state stored with its outlier row.
fn one_row_per_event(mut timeline: Vec<EventRow>, outliers: Vec<EventRow>) -> Vec<EventRow> {
    let stateless: HashMap<OwnedEventId, usize> = timeline
        .iter()
        .enumerate()
        .filter(|(_, row)| !row.has_state())
        .map(|(i, row)| (row.event_id.clone(), i))
        .collect();
    for outlier in outliers {
        match stateless.get(&outlier.event_id) {
            Some(&i) => {
                timeline[i].state_before = outlier.state_before;
                timeline[i].state_after = outlier.state_after;
            }
            None => timeline.push(outlier),
        }
    }
    timeline
}

/// The groups of a state group's delta chain (`$1`), numbered from the group itself (`n` = 0)
/// back to its snapshot: entries of lower `n` override those of higher.
const STATE_CHAIN: &str = "WITH RECURSIVE chain(group_id, prev_group, n) AS ( \
     SELECT group_id, prev_group, 0 FROM state_groups WHERE group_id = $1 \
     UNION ALL \
     SELECT g.group_id, g.prev_group, chain.n + 1 FROM state_groups g \
     JOIN chain ON g.group_id = chain.prev_group)";

/// An outlier read as an [`EventRow`]: no timeline position; state groups only for a
/// soft-failed event.
const OUTLIER_COLUMNS: &str = "CAST(0 AS BIGINT) AS stream_ordering, event_id, room_id, \
     state_before, state_after, \
     CAST(NULL AS TEXT) AS replaces_state, CAST(NULL AS TEXT) AS redacted_by, json";

pub(super) const EVENT_COLUMNS: &str = "stream_ordering, event_id, room_id, state_before, state_after, replaces_state, redacted_by, json";

impl Store {
    /// Queues the batch behind every write queued before it; await the result for the commit.
    /// Fails (and writes nothing) if an event's prev_events were not persisted, so events built
    /// on a write that failed fail too.
    pub async fn enqueue_events(&self, mut batch: EventBatch) -> Result<Pending<()>> {
        self.remember_transactions(&batch.events);
        // The caches follow the commit before the positions are released (the batch's own
        // hook releases them).
        if let Some(raised) = super::unread_cache::Raised::by(&batch.room_id, &batch.events) {
            let unread = self.unread_counts.clone();
            batch.first_after_commit(move || unread.committed(&raised));
        }
        let redacted = redaction_targets(&batch.events);
        if !redacted.is_empty() {
            let event_rows = self.event_rows.clone();
            batch.first_after_commit(move || event_rows.forget(redacted.iter().map(|id| &**id)));
        }
        match &self.event_writer {
            Some(event_writer) => event_writer.enqueue(batch).await,
            None => {
                let after_commit = batch.after_commit.take();
                let pending = self
                    .writer
                    .enqueue(move |conn| {
                        Box::pin(async move { super::event_writer::write_one(conn, batch).await })
                    })
                    .await?;
                // Without an event writer the writer is direct: the write has committed.
                if let (Pending::Done(Ok(())), Some(after_commit)) = (&pending, after_commit) {
                    after_commit();
                }
                Ok(pending)
            }
        }
    }

    pub async fn max_stream_ordering(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(stream_ordering) FROM events")
                .fetch_one(&self.pool)
                .await?
                .unwrap_or(0),
        )
    }

    /// The lowest timeline position: events of other servers' history taken in later are
    /// placed below it (negative positions; 0 marks outliers).
    pub async fn min_stream_ordering(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar::<_, Option<i64>>("SELECT MIN(stream_ordering) FROM events")
                .fetch_one(&self.pool)
                .await?
                .unwrap_or(0),
        )
    }

    /// Stores events of a room's history that other servers sent back (`/backfill`), at the
    /// (negative) positions they were given: rows and search entries only, as the room's
    /// current state, latest events and sync are untouched by its past.
    pub async fn persist_backfilled(
        &self,
        room_id: &RoomId,
        rows: Vec<NewEventRow>,
        redaction_rules: RedactionRules,
    ) -> Result<()> {
        let room = room_id.to_string();
        // Redactions among them prune events stored before; pending redactions prune them.
        let changed: Vec<OwnedEventId> = redaction_targets(&rows)
            .into_iter()
            .chain(rows.iter().map(|row| row.event_id.clone()))
            .collect();
        let written = self
            .writer
            .write(move |conn| {
                Box::pin(async move {
                    super::event_writer::write_backfilled(conn, &room, &rows, &redaction_rules)
                        .await
                })
            })
            .await;
        self.event_rows.forget(changed.iter().map(|id| &**id));
        written
    }

    /// Remembers a redaction of an event not stored here, to apply when it is backfilled.
    pub async fn add_pending_redaction(
        &self,
        room_id: &RoomId,
        redaction: &EventId,
        target: &EventId,
        redactor: &UserId,
        may_redact: bool,
    ) -> Result<()> {
        self.writer
            .execute(
                "INSERT INTO pending_redactions (target_event_id, redaction_event_id, room_id, \
                 redactor, redactor_may_redact) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (target_event_id, redaction_event_id) DO NOTHING",
                vec![
                    target.as_str().into(),
                    redaction.as_str().into(),
                    room_id.as_str().into(),
                    redactor.as_str().into(),
                    i64::from(may_redact).into(),
                ],
            )
            .await?;
        Ok(())
    }

    pub async fn max_state_group(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(group_id) FROM state_groups")
                .fetch_one(&self.pool)
                .await?
                .unwrap_or(0),
        )
    }

    pub async fn room_version(&self, room_id: &RoomId) -> Result<Option<RoomVersionId>> {
        let version: Option<String> =
            sqlx::query_scalar("SELECT room_version FROM rooms WHERE room_id = $1")
                .bind(room_id.as_str())
                .fetch_optional(&self.pool)
                .await?;
        version.map(super::stored_id::<RoomVersionId>).transpose()
    }

    /// Persists a room joined over federation: the state and auth chain received with the
    /// join as outliers, the state before the join as a full snapshot `state` (with each
    /// member's membership for `current_state`), and the batch of the join event itself.
    pub async fn persist_remote_join(
        &self,
        outliers: Vec<(OwnedEventId, Arc<str>)>,
        state: NewStateGroup,
        memberships: HashMap<OwnedEventId, String>,
        mut batch: EventBatch,
    ) -> Result<()> {
        self.remember_transactions(&batch.events);
        let after_commit = batch.after_commit.take();
        let redacted = redaction_targets(&batch.events);
        let room = batch.room_id.to_string();
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    // Multi-row statements: a room of thousands of members is as many rows.
                    let insert_rows = super::event_writer::insert_rows;
                    insert_outliers(conn, &room, &outliers).await?;
                    sqlx::query(
                        "INSERT INTO state_groups (group_id, room_id, prev_group, chain_length) \
                         VALUES ($1, $2, NULL, 0)",
                    )
                    .bind(state.group_id)
                    .bind(&room)
                    .execute(&mut *conn)
                    .await?;
                    let entry_rows = state.entries.iter().map(|entry| {
                        vec![
                            state.group_id.into(),
                            entry.event_type.as_str().into(),
                            entry.state_key.as_str().into(),
                            entry.event_id.as_str().into(),
                        ]
                    });
                    insert_rows(
                        conn,
                        "INSERT INTO state_group_entries (group_id, event_type, state_key, event_id)",
                        "",
                        entry_rows.collect(),
                    )
                    .await?;
                    let current_rows = state.entries.iter().map(|entry| {
                        vec![
                            room.as_str().into(),
                            entry.event_type.as_str().into(),
                            entry.state_key.as_str().into(),
                            entry.event_id.as_str().into(),
                            memberships.get(&entry.event_id).cloned().into(),
                        ]
                    });
                    insert_rows(
                        conn,
                        "INSERT INTO current_state (room_id, event_type, state_key, event_id, membership)",
                        " ON CONFLICT (room_id, event_type, state_key) \
                         DO UPDATE SET event_id = excluded.event_id, membership = excluded.membership",
                        current_rows.collect(),
                    )
                    .await?;
                    super::event_writer::write_one(conn, batch).await
                })
            })
            .await?;
        self.event_rows.forget(redacted.iter().map(|id| &**id));
        if let Some(after_commit) = after_commit {
            after_commit();
        }
        Ok(())
    }

    /// Keeps an event outside the timeline but with the state groups around it (see the
    /// migration of `outliers`): a soft-failed event, or one at the edge of a gap in the
    /// room's history. `groups` are the state groups written for it; `outliers` are other
    /// events it rests on (its state and auth chain), kept as plain outliers. A stored outlier
    /// of the same ID gains the state.
    pub async fn persist_outlier_with_state(
        &self,
        room_id: &RoomId,
        event: OutlierWithState,
        groups: Vec<NewStateGroup>,
        outliers: Vec<(OwnedEventId, Arc<str>)>,
    ) -> Result<()> {
        let room = room_id.to_string();
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    let mut group_rows = Vec::new();
                    let mut entry_rows = Vec::new();
                    for group in &groups {
                        super::event_writer::state_group_rows(
                            &room,
                            group,
                            &mut group_rows,
                            &mut entry_rows,
                        );
                    }
                    super::event_writer::insert_rows(
                        conn,
                        "INSERT INTO state_groups (group_id, room_id, prev_group, chain_length)",
                        "",
                        group_rows,
                    )
                    .await?;
                    super::event_writer::insert_rows(
                        conn,
                        "INSERT INTO state_group_entries (group_id, event_type, state_key, event_id)",
                        "",
                        entry_rows,
                    )
                    .await?;
                    insert_outliers(conn, &room, &outliers).await?;
                    sqlx::query(
                        "INSERT INTO outliers (event_id, room_id, json, state_before, state_after) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO UPDATE \
                         SET state_before = excluded.state_before, state_after = excluded.state_after",
                    )
                    .bind(event.event_id.as_str())
                    .bind(&room)
                    .bind(&*event.json)
                    .bind(event.state_before)
                    .bind(event.state_after)
                    .execute(&mut *conn)
                    .await?;
                    Ok(())
                })
            })
            .await
    }

    /// The number of deltas between a state group and its full snapshot.
    pub async fn state_chain_length(&self, group_id: i64) -> Result<i64> {
        Ok(sqlx::query_scalar::<_, i64>(
            "SELECT chain_length FROM state_groups WHERE group_id = $1",
        )
        .bind(group_id)
        .fetch_optional(&self.pool)
        .await?
        .unwrap_or_default())
    }

    pub async fn load_room(&self, room_id: &RoomId) -> Result<Option<StoredRoom>> {
        let Some(row) = sqlx::query(
            "SELECT r.room_version, r.state_group, COALESCE(g.chain_length, 0) FROM rooms r \
             LEFT JOIN state_groups g ON g.group_id = r.state_group WHERE r.room_id = $1",
        )
        .bind(room_id.as_str())
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let version: String = row.try_get(0)?;
        let version = super::stored_id::<RoomVersionId>(version)?;
        let state_group: i64 = row.try_get(1)?;
        let chain_length: i64 = row.try_get(2)?;
        let current_state = sqlx::query(
            "SELECT event_type, state_key, event_id FROM current_state WHERE room_id = $1",
        )
        .bind(room_id.as_str())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(state_entry)
        .collect::<Result<_>>()?;
        let extremities = sqlx::query(
            "SELECT e.event_id, e.depth FROM forward_extremities f \
             JOIN events e ON e.event_id = f.event_id WHERE f.room_id = $1",
        )
        .bind(room_id.as_str())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| {
            let id: String = row.try_get(0)?;
            let id = super::stored_id::<OwnedEventId>(id)?;
            Ok((id, row.try_get::<i64, _>(1)?))
        })
        .collect::<Result<_>>()?;
        Ok(Some(StoredRoom {
            version,
            state_group,
            chain_length,
            current_state,
            extremities,
        }))
    }

    pub async fn event(&self, event_id: &EventId) -> Result<Option<EventRow>> {
        let (found, _, start) = self.event_rows.get(&[event_id.to_owned()]);
        if let Some(row) = found.into_iter().next() {
            return Ok(Some(row));
        }
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE event_id = $1 \
             UNION ALL SELECT {OUTLIER_COLUMNS} FROM outliers WHERE event_id = $1"
        ))
        .bind(event_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        let (timeline, outliers): (Vec<EventRow>, Vec<EventRow>) = rows
            .iter()
            .map(event_row)
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .partition(|row| row.stream_ordering != 0);
        self.event_rows.remember(start, &timeline);
        Ok(one_row_per_event(timeline, outliers).into_iter().next())
    }

    /// The events among `ids` that are stored, in no particular order.
    pub async fn events(&self, ids: &[OwnedEventId]) -> Result<Vec<EventRow>> {
        let (mut found, missing, start) = self.event_rows.get(ids);
        if !missing.is_empty() {
            let read = self.read_events(&missing).await?;
            // Only rows as the `events` table holds them: an out-of-band row given its
            // outlier's state may still be taken into the room (see [`one_row_per_event`]).
            self.event_rows.remember(start, &read.0);
            found.extend(one_row_per_event(read.0, read.1));
        }
        Ok(found)
    }

    /// The `events` rows among `ids`, and the `outliers` rows of those without state there.
    async fn read_events(&self, ids: &[OwnedEventId]) -> Result<(Vec<EventRow>, Vec<EventRow>)> {
        let placeholders = super::placeholders(1, ids.len());
        let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE event_id IN ({placeholders})");
        let mut query = sqlx::query(&sql);
        for id in ids {
            query = query.bind(id.as_str());
        }
        let rows: Vec<EventRow> = query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(event_row)
            .collect::<Result<_>>()?;
        // Outliers: events not in the timeline, and the state of out-of-band memberships
        // later received into the room graph (see [`one_row_per_event`]).
        let in_timeline: std::collections::HashSet<&EventId> = rows
            .iter()
            .filter(|row| row.has_state())
            .map(|row| &*row.event_id)
            .collect();
        if in_timeline.len() < ids.len() {
            let wanted: Vec<&OwnedEventId> = ids
                .iter()
                .filter(|id| !in_timeline.contains(&***id))
                .collect();
            let placeholders = super::placeholders(1, wanted.len());
            let sql = format!(
                "SELECT {OUTLIER_COLUMNS} FROM outliers WHERE event_id IN ({placeholders})"
            );
            let mut query = sqlx::query(&sql);
            for id in wanted {
                query = query.bind(id.as_str());
            }
            let outliers = query
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(event_row)
                .collect::<Result<_>>()?;
            return Ok((rows, outliers));
        }
        Ok((rows, Vec::new()))
    }

    /// [`Store::events`], by event ID.
    pub async fn events_by_id(
        &self,
        ids: &[OwnedEventId],
    ) -> Result<HashMap<OwnedEventId, EventRow>> {
        Ok(self
            .events(ids)
            .await?
            .into_iter()
            .map(|row| (row.event_id.clone(), row))
            .collect())
    }

    /// Up to `limit` events of the room after (`forward`) or at-and-before position `from`,
    /// in that direction's order.
    pub async fn room_events(
        &self,
        room_id: &RoomId,
        from: i64,
        forward: bool,
        limit: i64,
    ) -> Result<Vec<EventRow>> {
        let sql = if forward {
            format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE room_id = $1 AND stream_ordering > $2 \
                 ORDER BY stream_ordering ASC LIMIT $3"
            )
        } else {
            format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE room_id = $1 AND stream_ordering <= $2 \
                 ORDER BY stream_ordering DESC LIMIT $3"
            )
        };
        sqlx::query(&sql)
            .bind(room_id.as_str())
            .bind(from)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(event_row)
            .collect()
    }

    /// For each of `rooms`, its newest events at or before position `upto`, at most `limit`,
    /// newest first: [`Store::room_events`] backwards for many rooms, a statement per
    /// [`super::ROOMS_PER_UNION`] rooms.
    pub async fn newest_room_events(
        &self,
        rooms: &[OwnedRoomId],
        upto: i64,
        limit: i64,
    ) -> Result<HashMap<OwnedRoomId, Vec<EventRow>>> {
        let mut pages: HashMap<OwnedRoomId, Vec<EventRow>> = rooms
            .iter()
            .map(|room_id| (room_id.clone(), Vec::new()))
            .collect();
        for chunk in rooms.chunks(super::ROOMS_PER_UNION) {
            let sql = super::per_room_union(chunk.len(), |i| {
                format!(
                    "SELECT {EVENT_COLUMNS} FROM events \
                     WHERE room_id = ${} AND stream_ordering <= $1 \
                     ORDER BY stream_ordering DESC LIMIT $2",
                    i + 3
                )
            });
            let mut query = sqlx::query(&sql).bind(upto).bind(limit);
            for room_id in chunk {
                query = query.bind(room_id.as_str());
            }
            for row in query.fetch_all(&self.pool).await?.iter().map(event_row) {
                let row = row?;
                if let Some(page) = pages.get_mut(&row.room_id) {
                    page.push(row);
                }
            }
        }
        for page in pages.values_mut() {
            page.sort_unstable_by_key(|row| std::cmp::Reverse(row.stream_ordering));
        }
        Ok(pages)
    }

    /// The full state of a state group: the chain of deltas back to its snapshot, nearest first.
    /// Shared with the cache of state groups, which keeps it once read.
    pub async fn state_group(&self, group_id: i64) -> Result<Arc<[StateEntry]>> {
        if let Some(state) = self.state_groups.get(group_id) {
            return Ok(state);
        }
        let rows = sqlx::query(&format!(
            "{STATE_CHAIN} SELECT s.event_type, s.state_key, s.event_id FROM state_group_entries s \
                 JOIN chain ON s.group_id = chain.group_id ORDER BY chain.n ASC"
        ))
        .bind(group_id)
        .fetch_all(&self.pool)
        .await?;
        let mut seen = HashMap::new();
        for row in &rows {
            let entry = state_entry(row)?;
            seen.entry((entry.event_type.clone(), entry.state_key.clone()))
                .or_insert(entry);
        }
        let state: Arc<[StateEntry]> = seen.into_values().collect();
        // Nothing is read of a group that is not committed yet (or of none): only a group
        // with state is kept.
        if !state.is_empty() {
            self.state_groups.insert(group_id, state.clone());
        }
        Ok(state)
    }

    /// One entry of a state group's state.
    pub async fn state_group_entry(
        &self,
        group_id: i64,
        event_type: &str,
        state_key: &str,
    ) -> Result<Option<OwnedEventId>> {
        if let Some(state) = self.state_groups.get(group_id) {
            return Ok(state
                .iter()
                .find(|entry| entry.event_type == event_type && entry.state_key == state_key)
                .map(|entry| entry.event_id.clone()));
        }
        let id: Option<String> = sqlx::query_scalar(&format!(
            "{STATE_CHAIN} SELECT s.event_id FROM state_group_entries s \
                 JOIN chain ON s.group_id = chain.group_id \
                 WHERE s.event_type = $2 AND s.state_key = $3 ORDER BY chain.n ASC LIMIT 1"
        ))
        .bind(group_id)
        .bind(event_type)
        .bind(state_key)
        .fetch_optional(&self.pool)
        .await?;
        id.map(super::stored_id::<OwnedEventId>).transpose()
    }

    /// The rooms the user's current membership in is `membership`.
    pub async fn rooms_with_membership(
        &self,
        user_id: &UserId,
        membership: &str,
    ) -> Result<Vec<OwnedRoomId>> {
        let rooms: Vec<String> = sqlx::query_scalar(
            "SELECT room_id FROM current_state \
             WHERE state_key = $1 AND event_type = 'm.room.member' AND membership = $2",
        )
        .bind(user_id.as_str())
        .bind(membership)
        .fetch_all(&self.pool)
        .await?;
        rooms
            .into_iter()
            .map(super::stored_id::<OwnedRoomId>)
            .collect()
    }

    pub async fn transaction_event(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        scope: &str,
        txn_id: &str,
    ) -> Result<Option<OwnedEventId>> {
        if let Some(filter) = &self.transaction_filter
            && filter.certainly_absent(user_id.as_str(), device_id.as_str(), scope, txn_id)
        {
            return Ok(None);
        }
        let id: Option<String> = sqlx::query_scalar(
            "SELECT event_id FROM event_transactions \
             WHERE user_id = $1 AND device_id = $2 AND scope = $3 AND txn_id = $4",
        )
        .bind(user_id.as_str())
        .bind(device_id.as_str())
        .bind(scope)
        .bind(txn_id)
        .fetch_optional(&self.pool)
        .await?;
        id.map(super::stored_id::<OwnedEventId>).transpose()
    }

    /// Puts the events' transaction IDs in the filter before they are written: once a write
    /// commits, no lookup of its IDs can miss them.
    fn remember_transactions(&self, events: &[NewEventRow]) {
        let Some(filter) = &self.transaction_filter else {
            return;
        };
        for (user, device, scope, txn_id) in events.iter().filter_map(|e| e.transaction.as_ref()) {
            filter.insert(user, device, scope, txn_id);
        }
    }

    /// The user's current membership in the room, as committed.
    pub async fn current_membership(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<Option<(String, OwnedEventId)>> {
        let row = sqlx::query(
            "SELECT membership, event_id FROM current_state \
             WHERE room_id = $1 AND event_type = 'm.room.member' AND state_key = $2",
        )
        .bind(room_id.as_str())
        .bind(user_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            let id: String = row.try_get(1)?;
            Ok((
                row.try_get::<Option<String>, _>(0)?.unwrap_or_default(),
                super::stored_id::<OwnedEventId>(id)?,
            ))
        })
        .transpose()
    }

    /// The room's current state, as committed: `(type, state_key, event_id)`.
    pub async fn current_state(&self, room_id: &RoomId) -> Result<Vec<StateEntry>> {
        sqlx::query("SELECT event_type, state_key, event_id FROM current_state WHERE room_id = $1")
            .bind(room_id.as_str())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(state_entry)
            .collect()
    }

    /// The state group after the room's last event at or before `position`.
    pub async fn state_group_at(&self, room_id: &RoomId, position: i64) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT state_after FROM events WHERE room_id = $1 AND stream_ordering <= $2 \
             ORDER BY stream_ordering DESC LIMIT 1",
        )
        .bind(room_id.as_str())
        .bind(position)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn forget_room(&self, user_id: &UserId, room_id: &RoomId) -> Result<()> {
        self.writer
            .execute(
                "INSERT INTO forgotten_rooms (user_id, room_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                vec![user_id.as_str().into(), room_id.as_str().into()],
            )
            .await?;
        Ok(())
    }

    pub async fn is_forgotten(&self, user_id: &UserId, room_id: &RoomId) -> Result<bool> {
        Ok(sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM forgotten_rooms WHERE user_id = $1 AND room_id = $2",
        )
        .bind(user_id.as_str())
        .bind(room_id.as_str())
        .fetch_one(&self.pool)
        .await?
            > 0)
    }
}

fn state_entry(row: &sqlx::any::AnyRow) -> Result<StateEntry> {
    let event_id: String = row.try_get(2)?;
    Ok(StateEntry {
        event_type: row.try_get(0)?,
        state_key: row.try_get(1)?,
        event_id: super::stored_id::<OwnedEventId>(event_id)?,
    })
}

/// Keeps events outside the timeline; those kept already stay as they are.
async fn insert_outliers(
    conn: &mut AnyConnection,
    room: &str,
    outliers: &[(OwnedEventId, Arc<str>)],
) -> Result<()> {
    let rows = outliers
        .iter()
        .map(|(id, json)| vec![id.as_str().into(), room.into(), (**json).into()])
        .collect();
    super::event_writer::insert_rows(
        conn,
        "INSERT INTO outliers (event_id, room_id, json)",
        " ON CONFLICT (event_id) DO NOTHING",
        rows,
    )
    .await
}

/// Replaces the stored JSON of a redacted event by its redacted form (spec: "Redactions"): the
/// content the sender asked to remove is gone from the server, not only hidden.
pub(super) async fn prune_redacted(
    conn: &mut AnyConnection,
    room: &str,
    target: &EventId,
    redaction: &EventId,
    rules: &RedactionRules,
) -> Result<()> {
    let json: Option<String> = sqlx::query_scalar(
        "SELECT json FROM events WHERE event_id = $1 AND room_id = $2 AND redacted_by IS NULL",
    )
    .bind(target.as_str())
    .bind(room)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(json) = json else {
        return Ok(());
    };
    let object: CanonicalJsonObject =
        serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let redacted = redact(object, rules, None).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let redacted =
        serde_json::to_string(&redacted).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    sqlx::query("UPDATE events SET json = $1, redacted_by = $2 WHERE event_id = $3")
        .bind(redacted)
        .bind(redaction.as_str())
        .bind(target.as_str())
        .execute(&mut *conn)
        .await?;
    super::search::unindex_event(conn, target).await?;
    Ok(())
}
