//! The room graph: creating rooms, adding events (auth rules, state snapshots, extremities),
//! membership, and reading history back with the history visibility rules.
//!
//! One writer per room: each room's state sits behind an async lock, taken while an event is
//! built, signed, authorized and queued for the database. On SQLite the lock is released once
//! the write has its place in the commit queue, so events of one room share grouped commits;
//! the writer checks that an event's predecessors were persisted, so nothing is built on a
//! write that failed. On PostgreSQL the write commits before the lock is released.

mod aggregations;
mod aliases;
mod auth_events;
mod backfill;
mod context;
mod create;
mod directory;
mod fork;
mod gap;
mod hierarchy;
mod lazy_loaded;
mod membership;
mod out_of_band;
mod push;
mod read;
mod receipts;
mod recent;
mod relations;
mod remote;
pub mod resolve;
mod search;
mod send;
mod served;
mod server_acl;
mod state;
mod state_entries;
mod stream;
mod sync;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
pub mod token;
mod transactions;
mod typing;
mod upgrade;
mod visibility;

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
};

use ruma::{
    MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedServerName, OwnedUserId, RoomId,
    UInt, UserId,
    events::{StateEventType, TimelineEventType},
};
use serde::Deserialize;
use tokio::sync::Mutex;

pub use auth_events::check_against_auth_events;
pub use backfill::BackfillPoint;
pub use context::ContextPage;
pub use create::{CREATABLE_VERSIONS, CreateRoom};
pub use directory::{PublicRoomsPage, PublicRoomsQuery, RoomView, Viewer};
pub use hierarchy::{SpaceChild, in_space_order};
pub use membership::{MembershipChange, RemoteInvite};
pub use push::{NotificationCounts, NotificationsPage, NotificationsQuery, UnreadCounts};
pub use read::{Direction, Members, MessagesPage, MessagesQuery};
pub use read::{allowed_by, pattern_matches};
pub use receipts::{ReceiptKind, ReceiptThread};
pub use relations::{RELATIONS_RECURSION_DEPTH, RelationsPage, RelationsRequest, ThreadsPage};
pub use search::{
    ContextRequest, SearchContext, SearchGroup, SearchRequest, SearchResult, SearchResults,
};
pub use send::member_content;
pub use served::{MAX_SERVED_EVENTS, ServedEvents};
pub use state::RoomState;
pub use sync::{RoomPositions, RoomsSyncRequest, account_data_event};
pub use typing::{MAX_TYPING_TIMEOUT, TypingSnapshot};

use crate::{
    Config, Error, Result,
    events::{
        GraphPosition, NewEvent, Pdu, ReferenceHashes, build_pdu, is_format_v1, reference_sha256,
    },
    federation::edus::EduQueue,
    keys::SigningKey,
    store::{
        AfterCommit, EventBatch, EventRow, NewEventRow, NewRoom, Pending, ResolvedState, Store,
    },
    sync::Notifier,
};

type RoomSlot = Arc<Mutex<Option<RoomState>>>;

pub struct Rooms {
    store: Store,
    config: Arc<Config>,
    signing_key: Arc<SigningKey>,
    rooms: std::sync::Mutex<HashMap<OwnedRoomId, RoomSlot>>,
    timeline: stream::TimelineStream,
    recent: Arc<recent::RecentChanges>,
    notifier: Arc<Notifier>,
    next_state_group: AtomicI64,
    /// The next (negative) timeline position for events backfilled from other servers.
    backfill_position: AtomicI64,
    /// The timestamp of the last v12 create event: each gets a later one, so two identical
    /// createRoom requests in one millisecond still get distinct room IDs (the create event's
    /// hash).
    last_create_ts: std::sync::atomic::AtomicU64,
    typing: typing::Typing,
    lazy_loaded: lazy_loaded::LazyLoaded,
    visibility_cache: visibility::VisibilityCache,
    state_entries: state_entries::StateEntries,
    recent_transactions: std::sync::Mutex<transactions::RecentTransactions>,
    push_rules: Arc<crate::users::PushRules>,
    /// Typing notices and receipts for other servers; its wake-up is also rung when events
    /// were queued for them (the federation sender waits on it).
    edus: Arc<EduQueue>,
    outbound: Arc<tokio::sync::Notify>,
}

/// Where the events of a write come from: they are sent to the room's other servers only when
/// this server made them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventSource {
    Local,
    /// Received from another server in a room this server is in.
    Received,
    /// A member event another server sent through this one (`send_join`, `send_leave`,
    /// `send_knock`): as the resident server, this server passes it on to the room's other
    /// servers (spec: Server-Server API, "Joining Rooms"), not back to the sender's server.
    Relayed,
    /// Joining a room held by other servers: the join event, built on events unknown here.
    RemoteJoin,
}

/// How a client request that sends an event is identified, for idempotent retries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Transaction {
    pub device_id: ruma::OwnedDeviceId,
    /// The endpoint the transaction was sent to: the same ID on another endpoint is another
    /// transaction.
    pub scope: String,
    pub txn_id: String,
}

impl Rooms {
    pub async fn new(
        store: Store,
        config: Arc<Config>,
        signing_key: Arc<SigningKey>,
        notifier: Arc<Notifier>,
        push_rules: Arc<crate::users::PushRules>,
        edus: Arc<EduQueue>,
    ) -> Result<Self> {
        let last_position = store.max_stream_ordering().await?;
        let timeline = stream::TimelineStream::new(last_position);
        let recent = Arc::new(recent::RecentChanges::new(last_position));
        let next_state_group = AtomicI64::new(store.max_state_group().await? + 1);
        let backfill_position = AtomicI64::new(store.min_stream_ordering().await?.min(0) - 1);
        Ok(Self {
            store,
            config,
            signing_key,
            rooms: std::sync::Mutex::default(),
            timeline,
            recent,
            notifier,
            next_state_group,
            backfill_position,
            last_create_ts: std::sync::atomic::AtomicU64::new(0),
            typing: typing::Typing::default(),
            lazy_loaded: lazy_loaded::LazyLoaded::default(),
            visibility_cache: visibility::VisibilityCache::default(),
            state_entries: state_entries::StateEntries::default(),
            recent_transactions: std::sync::Mutex::default(),
            push_rules,
            outbound: edus.wake(),
            edus,
        })
    }

    fn slot(&self, room_id: &RoomId) -> RoomSlot {
        // A poisoned map only means another request panicked mid-insert; the map is still valid.
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        rooms.entry(room_id.to_owned()).or_default().clone()
    }

    /// The room's state, loaded from the database on first use. The guard is the room's lock.
    async fn lock(
        &self,
        room_id: &RoomId,
    ) -> Result<tokio::sync::OwnedMutexGuard<Option<RoomState>>> {
        let slot = self.slot(room_id);
        let mut guard = slot.lock_owned().await;
        if guard.is_none() {
            *guard = self.load(room_id).await?;
        }
        let Some(room) = guard.as_mut() else {
            return Err(Error::NotFound(format!("Unknown room {room_id}")));
        };
        self.fill_extremity_hashes(room).await?;
        Ok(guard)
    }

    /// Room versions 1 and 2: reads the reference hashes of extremities the room does not hold
    /// yet (after a load, or when remote events became extremities), and forgets the others.
    async fn fill_extremity_hashes(&self, room: &mut RoomState) -> Result<()> {
        if !is_format_v1(&room.rules) {
            return Ok(());
        }
        room.extremity_hashes
            .retain(|id, _| room.extremities.contains(id));
        let missing: Vec<OwnedEventId> = room
            .extremities
            .iter()
            .filter(|id| !room.extremity_hashes.contains_key(*id))
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        for row in self.store.events(&missing).await? {
            let hash = reference_sha256(&row.json, &room.rules)?;
            room.extremity_hashes.insert(row.event_id, hash);
        }
        Ok(())
    }

    async fn load(&self, room_id: &RoomId) -> Result<Option<RoomState>> {
        // Writes queued before this point (possibly of this room) land first.
        self.store.barrier().await?;
        let Some(stored) = self.store.load_room(room_id).await? else {
            return Ok(None);
        };
        let rules = stored.version.rules().ok_or_else(|| {
            Error::Internal(format!(
                "room {room_id} has unknown version {}",
                stored.version
            ))
        })?;
        let ids: Vec<OwnedEventId> = stored
            .current_state
            .iter()
            .map(|e| e.event_id.clone())
            .collect();
        let rows = self.store.events(&ids).await?;
        let mut by_id = HashMap::new();
        for row in rows {
            let pdu = Pdu::from_json(row.event_id.clone(), room_id, row.json)
                .map_err(|e| Error::Internal(e.to_string()))?;
            by_id.insert(row.event_id, Arc::new(pdu));
        }
        let mut state = HashMap::new();
        for entry in stored.current_state {
            let pdu = by_id.get(&entry.event_id).ok_or_else(|| {
                Error::Internal(format!("state event {} is missing", entry.event_id))
            })?;
            state.insert(
                (StateEventType::from(entry.event_type), entry.state_key),
                pdu.clone(),
            );
        }
        let depth = stored
            .extremities
            .iter()
            .map(|(_, depth)| *depth)
            .max()
            .unwrap_or_default();
        Ok(Some(RoomState {
            room_id: room_id.to_owned(),
            version: stored.version,
            rules,
            state,
            state_group: stored.state_group,
            chain_length: stored.chain_length,
            extremities: stored.extremities.into_iter().map(|(id, _)| id).collect(),
            extremity_hashes: ReferenceHashes::new(),
            depth: UInt::try_from(depth).unwrap_or_default(),
            local_audience: None,
            remote_servers: None,
            push_context: None,
        }))
    }

    /// Forgets the cached state of a room whose write failed: the next event reloads it from
    /// what was committed.
    async fn invalidate(&self, room_id: &RoomId) {
        let slot = self.slot(room_id);
        *slot.lock().await = None;
    }

    /// Builds, signs and authorizes one event on top of the room's current state, and advances
    /// that state. Nothing is stored yet: the caller collects rows and queues them.
    fn append(
        &self,
        room: &mut RoomState,
        sender: &UserId,
        new: NewEvent,
        transaction: Option<(&UserId, &Transaction)>,
    ) -> Result<(Arc<Pdu>, NewEventRow)> {
        let content = serde_json::value::to_raw_value(&new.content)
            .map_err(|e| Error::BadJson(e.to_string()))?;
        let auth_events = room
            .auth_events_for(&new.kind, sender, new.state_key.as_deref(), &content)
            .map_err(Error::BadJson)?;
        let v12_create =
            room.rules.authorization.room_create_event_id_as_room_id && room.state.is_empty();
        let now = if v12_create {
            self.unique_create_ts()
        } else {
            MilliSecondsSinceUnixEpoch::now()
        };
        let reference_hashes = room.reference_hashes(&auth_events)?;
        let pdu = build_pdu(
            new,
            sender,
            GraphPosition {
                rules: &room.rules,
                room_id: (!v12_create).then_some(&*room.room_id),
                prev_events: room.extremities.clone(),
                auth_events: auth_events.iter().map(|p| p.event_id.clone()).collect(),
                reference_hashes: &reference_hashes,
                depth: room.depth.saturating_add(UInt::from(1u32)),
                origin_server_ts: now,
                server_name: &self.config.server_name,
                key: self.signing_key.pair(),
            },
        )?;
        let limit = self.config.limits.max_event_bytes;
        if pdu.json.len() > limit {
            return Err(Error::TooLarge(format!(
                "The event is {} bytes, over this server's limit of {limit} bytes",
                pdu.json.len()
            )));
        }
        self.accept(room, pdu, &auth_events, transaction)
    }

    /// Authorizes a built or received event against the room's current state (the state
    /// before it, for an event on the current extremities) and its `auth_events`, advances the
    /// state, and makes the row to store.
    fn accept(
        &self,
        room: &mut RoomState,
        pdu: Pdu,
        auth_events: &[Arc<Pdu>],
        transaction: Option<(&UserId, &Transaction)>,
    ) -> Result<(Arc<Pdu>, NewEventRow)> {
        room.authorize(&pdu, auth_events).map_err(|reason| {
            Error::Forbidden(format!("The event is not allowed in this room: {reason}"))
        })?;
        room.note_reference_hash(&pdu)?;
        let pdu = Arc::new(pdu);
        let state_before = room.state_group;
        let replaces_state = pdu
            .state_key
            .as_ref()
            .and_then(|key| room.get(&StateEventType::from(pdu.kind.to_string()), key))
            .map(|previous| previous.event_id.clone());
        let state_group = room.advance(&pdu, || {
            self.next_state_group.fetch_add(1, Ordering::Relaxed)
        });
        let row = NewEventRow {
            state_before,
            state_after: room.state_group,
            state_group,
            replaces_state,
            transaction: transaction.map(|(user, txn)| {
                (
                    user.to_string(),
                    txn.device_id.to_string(),
                    txn.scope.clone(),
                    txn.txn_id.clone(),
                )
            }),
            ..event_row(&pdu)
        };
        if let Some(target) = &pdu.redacts {
            redact_cached_state(room, target);
        }
        Ok((pdu, row))
    }

    fn recent_transactions(&self) -> std::sync::MutexGuard<'_, transactions::RecentTransactions> {
        // A poisoned lock only means a panic elsewhere; the map itself stays consistent.
        self.recent_transactions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn unique_create_ts(&self) -> MilliSecondsSinceUnixEpoch {
        let now: u64 = MilliSecondsSinceUnixEpoch::now().get().into();
        let previous = self
            .last_create_ts
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                Some(now.max(last + 1))
            })
            .unwrap_or(now);
        let ts = now.max(previous + 1);
        MilliSecondsSinceUnixEpoch(UInt::try_from(ts).unwrap_or(UInt::MAX))
    }

    /// Queues the rows of events just appended, while the room lock is still held. The rows
    /// get their timeline positions here; once the write commits, the positions are released
    /// to readers and the local users concerned are woken.
    async fn enqueue(
        &self,
        room: &mut RoomState,
        rows: Vec<NewEventRow>,
        new_room: Option<NewRoom>,
        source: EventSource,
        resolved: Option<ResolvedState>,
    ) -> Result<Pending<()>> {
        let mut batch = self.batch(room, rows, new_room, source).await?;
        batch.resolved = resolved;
        Ok(self.store.enqueue_events(batch).await?)
    }

    /// [`Rooms::enqueue`] of one event's row (and the room's state, if its branches merged),
    /// with the room's lock: if it cannot be queued, the room's cached state (which already
    /// holds the event) is dropped.
    async fn enqueue_locked(
        &self,
        guard: &mut tokio::sync::OwnedMutexGuard<Option<RoomState>>,
        row: NewEventRow,
        source: EventSource,
        resolved: Option<ResolvedState>,
    ) -> Result<Pending<()>> {
        let room = guard
            .as_mut()
            .ok_or_else(|| Error::Internal("room not loaded".to_owned()))?;
        let queued = self.enqueue(room, vec![row], None, source, resolved).await;
        if queued.is_err() {
            **guard = None;
        }
        queued
    }

    /// [`Rooms::enqueue_locked`], then releases the lock and waits for the commit.
    async fn commit_locked(
        &self,
        mut guard: tokio::sync::OwnedMutexGuard<Option<RoomState>>,
        row: NewEventRow,
        source: EventSource,
        resolved: Option<ResolvedState>,
    ) -> Result<()> {
        let pending = self
            .enqueue_locked(&mut guard, row, source, resolved)
            .await?;
        let room_id = guard
            .as_ref()
            .map(|room| room.room_id.clone())
            .ok_or_else(|| Error::Internal("room not loaded".to_owned()))?;
        drop(guard);
        self.committed(&room_id, pending).await
    }

    /// The write of events just appended: their timeline positions, push actions, where they
    /// are sent, and what happens once they commit.
    async fn batch(
        &self,
        room: &mut RoomState,
        mut rows: Vec<NewEventRow>,
        new_room: Option<NewRoom>,
        source: EventSource,
    ) -> Result<EventBatch> {
        self.evaluate_push_rules(room, &mut rows).await?;
        let allocation = self.timeline.allocate(rows.len());
        for (position, row) in (allocation.start..).zip(&mut rows) {
            row.stream_ordering = position;
        }
        let audience = room.local_audience(&self.config.server_name);
        // This server sends its own events to the others; received events were sent by theirs.
        // The room's servers are counted after the events: a remote member who left, was
        // kicked or banned is added back, as their server must hear of it.
        let remote_servers: Vec<OwnedServerName> = match source {
            EventSource::Local | EventSource::Relayed => {
                let mut servers = room.remote_servers(&self.config.server_name).to_vec();
                let departed = rows
                    .iter()
                    .filter(|row| matches!(row.membership.as_deref(), Some("leave" | "ban")))
                    .filter_map(|row| UserId::parse(row.state_key.as_deref()?).ok());
                for member in departed {
                    let server = member.server_name();
                    if server != self.config.server_name && !servers.iter().any(|s| s == server) {
                        servers.push(server.to_owned());
                    }
                }
                if source == EventSource::Relayed {
                    let senders: Vec<OwnedUserId> = rows
                        .iter()
                        .filter_map(|row| UserId::parse(&row.sender).ok())
                        .collect();
                    servers
                        .retain(|server| !senders.iter().any(|user| user.server_name() == server));
                }
                servers
            }
            EventSource::Received | EventSource::RemoteJoin => Vec::new(),
        };
        let prev_events_local = source == EventSource::Local;
        let sender_wake = (!remote_servers.is_empty()).then(|| self.outbound.clone());
        // A member leaving, kicked or banned is no longer in the audience but must hear of it.
        let members_changed: Vec<OwnedUserId> = rows
            .iter()
            .filter(|row| row.membership.is_some())
            .filter_map(|row| row.state_key.as_deref())
            .filter_map(|key| UserId::parse(key).ok())
            .filter(|user| user.server_name() == self.config.server_name)
            .collect();
        let changes: Vec<recent::Change> = rows
            .iter()
            .map(|row| recent::Change {
                position: row.stream_ordering,
                room_id: room.room_id.clone(),
                member: row
                    .membership
                    .as_ref()
                    .and(row.state_key.as_deref())
                    .and_then(|key| UserId::parse(key).ok()),
                relates_to: row.relates_to.as_ref().map(|(target, _)| target.clone()),
                redacts: row.redacts.clone(),
                row: Some(EventRow {
                    stream_ordering: row.stream_ordering,
                    event_id: row.event_id.clone(),
                    room_id: room.room_id.clone(),
                    state_before: row.state_before,
                    state_after: row.state_after,
                    replaces_state: row.replaces_state.clone(),
                    redacted_by: None,
                    json: row.json.clone(),
                }),
            })
            .collect();
        let notifier = self.notifier.clone();
        let recent = self.recent.clone();
        let after_commit: AfterCommit = Box::new(move || {
            // Recorded before the positions are released: a sync that may read them finds
            // them here too.
            recent.committed(changes);
            drop(allocation);
            notifier.wake(audience.iter().chain(&members_changed).map(|u| &**u));
            if let Some(outbound) = sender_wake {
                outbound.notify_one();
            }
        });
        Ok(EventBatch {
            room_id: room.room_id.clone(),
            new_room,
            events: rows,
            extremities: room.extremities.clone(),
            redaction_rules: room.rules.redaction.clone(),
            remote_servers,
            prev_events_local,
            after_commit: Some(after_commit),
            resolved: None,
        })
    }

    /// Waits for a queued write; on failure the room's cache is dropped so that nothing more is
    /// built on an event that does not exist.
    async fn committed(&self, room_id: &RoomId, pending: Pending<()>) -> Result<()> {
        if let Err(e) = pending.committed().await {
            self.invalidate(room_id).await;
            return Err(e.into());
        }
        Ok(())
    }

    /// Notified whenever events were queued for other servers.
    pub fn outbound_events(&self) -> Arc<tokio::sync::Notify> {
        self.outbound.clone()
    }

    /// The timeline position up to which every event is readable: `/messages` backwards from
    /// "now" and sync tokens start here.
    pub fn current_position(&self) -> i64 {
        self.timeline.persisted()
    }
}

/// The row of `pdu` before it has its place: no timeline position (handed out when rows are
/// queued, in queue order), state groups, transaction or push actions (evaluated when the rows
/// are queued, on the room's state after all of them).
fn event_row(pdu: &Pdu) -> NewEventRow {
    NewEventRow {
        stream_ordering: 0,
        event_id: pdu.event_id.clone(),
        event_type: pdu.kind.to_string(),
        state_key: pdu.state_key.clone(),
        sender: pdu.sender.to_string(),
        origin_server_ts: i64::from(pdu.origin_server_ts.get()),
        depth: i64::try_from(u64::from(pdu.depth)).unwrap_or(i64::MAX),
        prev_events: pdu.prev_events.clone(),
        state_before: 0,
        state_after: 0,
        state_group: None,
        membership: pdu.membership(),
        replaces_state: None,
        relates_to: relation(pdu),
        transaction: None,
        redacts: pdu.redacts.clone(),
        json: pdu.json.clone(),
        push_actions: Vec::new(),
    }
}

/// `content["m.relates_to"]`: the event this one relates to and how.
fn relation(pdu: &Pdu) -> Option<(OwnedEventId, String)> {
    #[derive(Deserialize)]
    struct Content {
        #[serde(rename = "m.relates_to")]
        relates_to: Option<RelatesTo>,
    }
    #[derive(Deserialize)]
    struct RelatesTo {
        rel_type: Option<String>,
        event_id: Option<OwnedEventId>,
        #[serde(rename = "m.in_reply_to")]
        in_reply_to: Option<InReplyTo>,
    }
    #[derive(Deserialize)]
    struct InReplyTo {
        event_id: OwnedEventId,
    }
    if pdu.kind == TimelineEventType::RoomRedaction {
        return None;
    }
    let relates_to = serde_json::from_str::<Content>(pdu.content.get())
        .ok()?
        .relates_to?;
    match (
        relates_to.rel_type,
        relates_to.event_id,
        relates_to.in_reply_to,
    ) {
        (Some(rel_type), Some(event_id), _) => Some((event_id, rel_type)),
        (None, _, Some(reply)) => Some((reply.event_id, "m.in_reply_to".to_owned())),
        _ => None,
    }
}

/// A redaction of a current state event prunes the cached copy as the store prunes its own.
pub(super) fn redact_cached_state(room: &mut RoomState, target: &ruma::EventId) {
    let Some((key, pdu)) = room
        .state
        .iter()
        .find(|(_, pdu)| &*pdu.event_id == target)
        .map(|(key, pdu)| (key.clone(), pdu.clone()))
    else {
        return;
    };
    let Ok(object) = serde_json::from_str::<ruma::CanonicalJsonObject>(&pdu.json) else {
        return;
    };
    let Ok(redacted) = ruma::canonical_json::redact(object, &room.rules.redaction, None) else {
        return;
    };
    let Ok(json) = serde_json::to_string(&redacted) else {
        return;
    };
    if let Ok(pruned) = Pdu::from_json(pdu.event_id.clone(), &room.room_id, Arc::from(json)) {
        room.state.insert(key, Arc::new(pruned));
        room.push_context = None;
    }
}
