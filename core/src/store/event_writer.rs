//! Writing room events. Each event of a busy room would otherwise cost a handful of statements,
//! each a round trip to the database thread; instead, the batches queued while the previous
//! write ran are written together, one multi-row statement per table. If that combined write
//! fails, each batch is retried alone in its own savepoint, so one bad batch fails by itself.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard},
};

use ruma::{EventId, OwnedEventId, room_version_rules::RedactionRules};
use sqlx::{AnyConnection, Row};
use tokio::sync::oneshot;

use super::{
    Result, StoreError,
    rooms::{AfterCommit, EventBatch, NewEventRow, NewStateGroup, prune_redacted},
    search,
    statements::{ROWS_PER_STATEMENT, Statements, push_parameters},
    writer::{Arg, Pending, Writer},
};

type Reply = oneshot::Sender<Result<()>>;

enum Item {
    Batch(Box<EventBatch>, Reply),
    /// Answered once everything queued before it has committed.
    Barrier(Reply),
}

/// Batches waiting to be written, and whether a write that will take them is already queued.
#[derive(Default)]
struct Queue {
    items: Vec<Item>,
    drain_queued: bool,
}

/// Batches wait here until the writer runs the write that takes them: that write takes every
/// batch queued by then, including all that arrived during the previous commit.
#[derive(Clone)]
pub(super) struct EventWriter {
    writer: Writer,
    queue: Arc<Mutex<Queue>>,
}

impl EventWriter {
    pub(super) fn new(writer: Writer) -> Self {
        Self {
            writer,
            queue: Arc::default(),
        }
    }

    /// Queues the batch behind every batch queued before it.
    pub(super) async fn enqueue(&self, batch: EventBatch) -> Result<Pending<()>> {
        let (reply, result) = oneshot::channel();
        self.push(Item::Batch(Box::new(batch), reply)).await?;
        Ok(Pending::Queued(result))
    }

    pub(super) async fn barrier(&self) -> Result<()> {
        let (reply, result) = oneshot::channel();
        self.push(Item::Barrier(reply)).await?;
        result.await.map_err(|_| StoreError::WriterUnavailable)?
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        // A poisoned lock only means a panic elsewhere; the queue itself stays consistent.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues the item; the first item after a drain also queues the write that will take
    /// them. That is done by a task of its own, so a caller that goes away (a cancelled
    /// request) cannot leave items queued with no write to take them.
    async fn push(&self, item: Item) -> Result<()> {
        let queue_write = {
            let mut queue = self.queue();
            queue.items.push(item);
            !std::mem::replace(&mut queue.drain_queued, true)
        };
        if !queue_write {
            return Ok(());
        }
        let writer = self.writer.clone();
        let queue = self.queue.clone();
        tokio::spawn(async move {
            let drain_queue = queue.clone();
            let queued = writer
                .enqueue(move |conn| Box::pin(async move { drain(conn, &drain_queue).await }))
                .await;
            let pending = match queued {
                Ok(pending) => pending,
                Err(e) => {
                    tracing::error!("cannot queue the event write: {e}");
                    // Nothing will write what is queued: its callers hear of it (closed replies).
                    let mut queue = queue.lock().unwrap_or_else(|e| e.into_inner());
                    queue.items.clear();
                    queue.drain_queued = false;
                    return;
                }
            };
            // On a failed commit the replies and hooks are dropped: callers see the writer
            // fail, and the events' positions are released without waking anyone.
            if let Ok(done) = pending.committed().await {
                for (reply, outcome, after_commit) in done {
                    if let (Ok(()), Some(after_commit)) = (&outcome, after_commit) {
                        after_commit();
                    }
                    let _ = reply.send(outcome);
                }
            }
        });
        Ok(())
    }
}

/// What a drained batch reports once the write that took it commits.
type Done = (Reply, Result<()>, Option<AfterCommit>);

/// The write queued by `push`: takes every batch queued until now and writes them. Returns the
/// replies to send once the write commits; failures are answered at once.
async fn drain(conn: &mut AnyConnection, queue: &Mutex<Queue>) -> Result<Vec<Done>> {
    let items = {
        let mut queue = queue.lock().unwrap_or_else(|e| e.into_inner());
        queue.drain_queued = false;
        std::mem::take(&mut queue.items)
    };
    let mut batches = Vec::with_capacity(items.len());
    let mut replies = Vec::with_capacity(items.len());
    let mut hooks = Vec::with_capacity(items.len());
    let mut barriers = Vec::new();
    for item in items {
        match item {
            Item::Batch(mut batch, reply) => {
                hooks.push(batch.after_commit.take());
                batches.push(*batch);
                replies.push(reply);
            }
            Item::Barrier(reply) => barriers.push(reply),
        }
    }
    match write_coalesced(conn, &batches).await {
        Ok(outcomes) => Ok(replies
            .into_iter()
            .zip(outcomes)
            .zip(hooks)
            .map(|((reply, outcome), hook)| (reply, outcome, hook))
            .chain(barriers.into_iter().map(|reply| (reply, Ok(()), None)))
            .collect()),
        Err(e) => {
            let message = e.to_string();
            for reply in replies {
                let _ = reply.send(Err(StoreError::CommitFailed(message.clone())));
            }
            for barrier in barriers {
                let _ = barrier.send(Ok(()));
            }
            Err(e)
        }
    }
}

/// Writes all batches together, or each alone when together fails; one outcome per batch.
/// Each failed batch leaves nothing behind (savepoints), so the enclosing write may commit.
async fn write_coalesced(
    conn: &mut AnyConnection,
    batches: &[EventBatch],
) -> Result<Vec<Result<()>>> {
    match batches {
        [] => return Ok(Vec::new()),
        // Alone, a failure fails the enclosing write, which rolls it back.
        [batch] => {
            write_batches(conn, std::slice::from_ref(batch), None).await?;
            return Ok(vec![Ok(())]);
        }
        _ => {}
    }
    if in_savepoint(conn, "events_together", batches)
        .await?
        .is_ok()
    {
        return Ok(batches.iter().map(|_| Ok(())).collect());
    }
    let mut outcomes = Vec::with_capacity(batches.len());
    for batch in batches {
        outcomes.push(in_savepoint(conn, "events_alone", std::slice::from_ref(batch)).await?);
    }
    Ok(outcomes)
}

/// One batch in the caller's transaction (PostgreSQL, where each write is its own).
pub(super) async fn write_one(conn: &mut AnyConnection, batch: EventBatch) -> Result<()> {
    write_batches(conn, std::slice::from_ref(&batch), None).await
}

/// The outer result fails only if the savepoint itself cannot be managed. The write's own
/// script opens the savepoint and, if it gets that far, releases it: two round trips fewer.
async fn in_savepoint(
    conn: &mut AnyConnection,
    name: &str,
    batches: &[EventBatch],
) -> Result<Result<()>> {
    let outcome = write_batches(conn, batches, Some(name)).await;
    if outcome.is_err() {
        // A script stops at its first failing statement: the savepoint is still open.
        for statement in [format!("ROLLBACK TO {name}"), format!("RELEASE {name}")] {
            sqlx::query(&statement).execute(&mut *conn).await?;
        }
    }
    Ok(outcome)
}

/// `head VALUES (...), (...) tail` for many rows, in as few statements as the parameter limits
/// allow.
pub(super) async fn insert_rows(
    conn: &mut AnyConnection,
    head: &str,
    tail: &str,
    rows: Vec<Vec<Arg>>,
) -> Result<()> {
    let mut statements = Statements::default();
    statements.insert_rows(head, tail, rows);
    statements.run(conn).await
}

/// The engine hands out an event's place in the graph before the write of its predecessor
/// commits; if that write failed, the events built on it must fail too rather than point at
/// nothing. A statement of the write inserts each predecessor that is neither in the write nor
/// in `events` into `unpersisted_prev_events`, whose check refuses any row.
fn check_prev_events_persisted(statements: &mut Statements, batches: &[EventBatch]) {
    let written: HashSet<&EventId> = batches
        .iter()
        .flat_map(|b| b.events.iter().map(|e| &*e.event_id))
        .collect();
    let outside: HashSet<&OwnedEventId> = batches
        .iter()
        .filter(|b| b.prev_events_local)
        .flat_map(|b| &b.events)
        .flat_map(|event| &event.prev_events)
        .filter(|p| !written.contains(&***p))
        .collect();
    let outside: Vec<&OwnedEventId> = outside.into_iter().collect();
    for chunk in outside.chunks(ROWS_PER_STATEMENT) {
        let mut sql = String::from(
            "INSERT INTO unpersisted_prev_events (event_id) SELECT column1 FROM (VALUES ",
        );
        for i in 0..chunk.len() {
            sql.push_str(if i == 0 {
                "(CAST(? AS TEXT))"
            } else {
                ", (CAST(? AS TEXT))"
            });
        }
        sql.push_str(
            ") AS prev_events WHERE NOT EXISTS \
             (SELECT 1 FROM events WHERE events.event_id = prev_events.column1)",
        );
        statements.push(sql, chunk.iter().map(|id| id.as_str().into()).collect());
    }
}

/// A `current_state` row as a write leaves it: `(event ID, membership)`, or `None` when it goes
/// (branches merged without it).
type CurrentEntry<'a> = Option<(&'a str, Option<&'a str>)>;

/// The rows of all batches go in one script of statements (see [`Statements`]), after the
/// check of their predecessors; redactions, which read what they prune, follow it. Within
/// `savepoint`, if named: the script opens it and the write releases it once it succeeded.
async fn write_batches(
    conn: &mut AnyConnection,
    batches: &[EventBatch],
    savepoint: Option<&str>,
) -> Result<()> {
    let mut statements = Statements::default();
    if let Some(name) = savepoint {
        statements.push(format!("SAVEPOINT {name}"), Vec::new());
    }
    check_prev_events_persisted(&mut statements, batches);
    for batch in batches {
        if let Some(new_room) = &batch.new_room {
            let current_group = batch
                .events
                .iter()
                .rev()
                .find_map(|e| e.state_group.as_ref().map(|g| g.group_id))
                .unwrap_or_default();
            statements.push(
                "INSERT INTO rooms (room_id, room_version, creator, state_group, published, created_ts) \
                 VALUES (?, ?, ?, ?, ?, ?)",
                vec![
                    batch.room_id.as_str().into(),
                    new_room.version.as_str().into(),
                    new_room.creator.as_str().into(),
                    current_group.into(),
                    super::flag(new_room.published).into(),
                    new_room.created_ts.into(),
                ],
            );
        }
    }

    let mut events = Vec::new();
    let mut groups = Vec::new();
    let mut group_entries = Vec::new();
    let mut current_state: HashMap<(&str, &str, &str), CurrentEntry> = HashMap::new();
    let mut transactions = Vec::new();
    let mut search_entries = Vec::new();
    let mut push_actions = Vec::new();
    let mut rejoined = Vec::new();
    let mut outbox = Vec::new();
    for batch in batches {
        let room = batch.room_id.as_str();
        for event in &batch.events {
            for server in &batch.remote_servers {
                outbox.push(vec![server.as_str().into(), event.stream_ordering.into()]);
            }
            events.push(event_args(room, event));
            if let Some(group) = &event.state_group {
                state_group_rows(room, group, &mut groups, &mut group_entries);
            }
            if let Some(state_key) = &event.state_key {
                if batch.resolved.is_none() {
                    current_state.insert(
                        (room, event.event_type.as_str(), state_key.as_str()),
                        Some((event.event_id.as_str(), event.membership.as_deref())),
                    );
                }
                if event.event_type == "m.room.member"
                    && matches!(
                        event.membership.as_deref(),
                        Some("join" | "invite" | "knock")
                    )
                {
                    rejoined.push((state_key.as_str(), room));
                }
            }
            if let Some((user, device, scope, txn)) = &event.transaction {
                transactions.push(vec![
                    user.as_str().into(),
                    device.as_str().into(),
                    scope.as_str().into(),
                    txn.as_str().into(),
                    event.event_id.as_str().into(),
                    event.stream_ordering.into(),
                ]);
            }
            search_entries.extend(search::search_entry(event));
            for action in &event.push_actions {
                let thread = action
                    .thread_id
                    .as_ref()
                    .map_or(super::push::MAIN_THREAD, |root| root.as_str());
                push_actions.push(vec![
                    action.user_id.as_str().into(),
                    room.into(),
                    event.stream_ordering.into(),
                    event.event_id.as_str().into(),
                    thread.into(),
                    super::flag(action.notify).into(),
                    super::flag(action.highlight).into(),
                    action.actions.as_str().into(),
                    event.origin_server_ts.into(),
                ]);
            }
        }
        if let Some(resolved) = &batch.resolved {
            for group in &resolved.groups {
                state_group_rows(room, group, &mut groups, &mut group_entries);
            }
            for (entry, membership) in &resolved.changed {
                current_state.insert(
                    (room, entry.event_type.as_str(), entry.state_key.as_str()),
                    Some((entry.event_id.as_str(), membership.as_deref())),
                );
            }
            for (kind, key) in &resolved.removed {
                current_state.insert((room, kind.as_str(), key.as_str()), None);
            }
        }
    }
    statements.insert_rows(INSERT_EVENTS, TAKE_OVER_OUT_OF_BAND, events);
    statements.insert_rows(
        "INSERT INTO state_groups (group_id, room_id, prev_group, chain_length)",
        "",
        groups,
    );
    statements.insert_rows(
        "INSERT INTO state_group_entries (group_id, event_type, state_key, event_id)",
        "",
        group_entries,
    );
    let mut removed_state = Vec::new();
    let current_state = current_state
        .into_iter()
        .filter_map(|((room, kind, key), entry)| match entry {
            Some((event_id, membership)) => Some(vec![
                room.into(),
                kind.into(),
                key.into(),
                event_id.into(),
                membership.into(),
            ]),
            None => {
                removed_state.push((room, kind, key));
                None
            }
        })
        .collect();
    for (room, kind, key) in removed_state {
        statements.push(
            "DELETE FROM current_state WHERE room_id = ? AND event_type = ? AND state_key = ?",
            vec![room.into(), kind.into(), key.into()],
        );
    }
    statements.insert_rows(
        "INSERT INTO current_state (room_id, event_type, state_key, event_id, membership)",
        " ON CONFLICT (room_id, event_type, state_key) \
         DO UPDATE SET event_id = excluded.event_id, membership = excluded.membership",
        current_state,
    );
    // Their IDs are in the store's transaction filter already (`remember_transactions`).
    statements.insert_rows(
        "INSERT INTO event_transactions (user_id, device_id, scope, txn_id, event_id, \
         stream_ordering)",
        "",
        transactions,
    );
    statements.insert_rows(
        "INSERT INTO event_push_actions (user_id, room_id, stream_ordering, event_id, thread_id, \
         notify, highlight, actions, ts)",
        "",
        push_actions,
    );
    statements.insert_rows(
        "INSERT INTO federation_outbox (destination, stream_ordering)",
        "",
        outbox,
    );
    search::index_entries(conn, &mut statements, search_entries);
    // A room forgotten by a user is remembered again when they come back to it.
    for (user, room) in rejoined {
        statements.push(
            "DELETE FROM forgotten_rooms WHERE user_id = ? AND room_id = ?",
            vec![user.into(), room.into()],
        );
    }
    room_heads(&mut statements, batches);
    let redactions: Vec<(&EventBatch, &NewEventRow, &OwnedEventId)> = batches
        .iter()
        .flat_map(|batch| batch.events.iter().map(move |event| (batch, event)))
        .filter_map(|(batch, event)| Some((batch, event, event.redacts.as_ref()?)))
        .collect();
    // The savepoint is released by the script unless redactions follow it.
    let release_after = match savepoint {
        Some(name) if redactions.is_empty() => {
            statements.push(format!("RELEASE {name}"), Vec::new());
            None
        }
        Some(name) => Some(format!("RELEASE {name}")),
        None => None,
    };
    statements.run(conn).await?;
    for (batch, event, target) in redactions {
        prune_redacted(
            conn,
            batch.room_id.as_str(),
            target,
            &event.event_id,
            &batch.redaction_rules,
        )
        .await?;
    }
    if let Some(release) = release_after {
        sqlx::query(&release).execute(&mut *conn).await?;
    }
    Ok(())
}

/// The `events` row of an event of `room`, in the column order of [`INSERT_EVENTS`].
fn event_args(room: &str, event: &NewEventRow) -> Vec<Arg> {
    let (relates_to, rel_type) = match &event.relates_to {
        Some((id, rel)) => (Some(id.to_string()), Some(rel.clone())),
        None => (None, None),
    };
    vec![
        event.stream_ordering.into(),
        event.event_id.as_str().into(),
        room.into(),
        event.event_type.as_str().into(),
        event.state_key.clone().into(),
        event.sender.as_str().into(),
        event.origin_server_ts.into(),
        event.depth.into(),
        event.state_before.into(),
        event.state_after.into(),
        event
            .replaces_state
            .as_ref()
            .map(ToString::to_string)
            .into(),
        relates_to.into(),
        rel_type.into(),
        (*event.json).into(),
    ]
}

/// Inserts events of another server's history, older than any of the room's (see
/// [`crate::store::Store::persist_backfilled`]): their rows and search entries, nothing of the
/// room's current state.
pub(super) async fn write_backfilled(
    conn: &mut AnyConnection,
    room: &str,
    events: &[NewEventRow],
    redaction_rules: &RedactionRules,
) -> Result<()> {
    let mut statements = Statements::default();
    statements.insert_rows(
        INSERT_EVENTS,
        "",
        events.iter().map(|event| event_args(room, event)).collect(),
    );
    search::index_entries(
        conn,
        &mut statements,
        events.iter().filter_map(search::search_entry).collect(),
    );
    statements.run(conn).await?;
    // After the inserts, so that a redaction prunes a target backfilled with it.
    for event in events {
        if let Some(target) = &event.redacts {
            prune_redacted(conn, room, target, &event.event_id, redaction_rules).await?;
        }
    }
    apply_pending_redactions(conn, room, events, redaction_rules).await
}

/// The server part of a user ID.
fn server_of(user_id: &str) -> Option<&str> {
    user_id.split_once(':').map(|(_, server)| server)
}

/// Prunes those of `events` that redactions stored before them redact, where the redaction's
/// sender may: by the power they held, or as a user of the same server as the event's sender.
async fn apply_pending_redactions(
    conn: &mut AnyConnection,
    room: &str,
    events: &[NewEventRow],
    redaction_rules: &RedactionRules,
) -> Result<()> {
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "SELECT target_event_id, redaction_event_id, redactor, redactor_may_redact \
             FROM pending_redactions WHERE target_event_id IN ({})",
            super::placeholders(1, chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for event in chunk {
            query = query.bind(event.event_id.as_str());
        }
        for row in query.fetch_all(&mut *conn).await? {
            let target: String = row.try_get(0)?;
            let redaction: String = row.try_get(1)?;
            let redactor: String = row.try_get(2)?;
            let may_redact: i64 = row.try_get(3)?;
            let Some(event) = chunk.iter().find(|event| event.event_id == target.as_str()) else {
                continue;
            };
            if may_redact == 1 || server_of(&redactor) == server_of(&event.sender) {
                let redaction = super::stored_id::<OwnedEventId>(redaction.clone())?;
                prune_redacted(conn, room, &event.event_id, &redaction, redaction_rules).await?;
            }
            sqlx::query(
                "DELETE FROM pending_redactions WHERE target_event_id = $1 \
                 AND redaction_event_id = $2",
            )
            .bind(&target)
            .bind(&redaction)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

const INSERT_EVENTS: &str = "INSERT INTO events (stream_ordering, event_id, room_id, event_type, \
     state_key, sender, origin_server_ts, depth, state_before, state_after, replaces_state, \
     relates_to, rel_type, json)";

/// An event stored out of band (an invite, knock or leave this server heard of while not in the
/// room: a timeline row without state) that is later received into the room graph becomes a
/// room event at its new position, with its state.
const TAKE_OVER_OUT_OF_BAND: &str = " ON CONFLICT (event_id) DO UPDATE SET \
     stream_ordering = excluded.stream_ordering, depth = excluded.depth, \
     state_before = excluded.state_before, state_after = excluded.state_after, \
     replaces_state = excluded.replaces_state, relates_to = excluded.relates_to, \
     rel_type = excluded.rel_type, json = excluded.json WHERE events.state_after = 0";

/// The rows of a state group and of its entries.
pub(super) fn state_group_rows(
    room: &str,
    group: &NewStateGroup,
    groups: &mut Vec<Vec<Arg>>,
    group_entries: &mut Vec<Vec<Arg>>,
) {
    groups.push(vec![
        group.group_id.into(),
        room.into(),
        group.prev_group.into(),
        group.chain_length.into(),
    ]);
    for entry in &group.entries {
        group_entries.push(vec![
            group.group_id.into(),
            entry.event_type.as_str().into(),
            entry.state_key.as_str().into(),
            entry.event_id.as_str().into(),
        ]);
    }
}

/// Each room's latest state group and forward extremities, from its last batch.
fn room_heads(statements: &mut Statements, batches: &[EventBatch]) {
    let mut heads: HashMap<&str, &EventBatch> = HashMap::new();
    let mut state_groups: HashMap<&str, i64> = HashMap::new();
    for batch in batches {
        heads.insert(batch.room_id.as_str(), batch);
        let current_group = match &batch.resolved {
            Some(resolved) => Some(resolved.current_group),
            None => batch
                .events
                .iter()
                .rev()
                .find_map(|e| e.state_group.as_ref().map(|group| group.group_id)),
        };
        if let Some(group) = current_group {
            state_groups.insert(batch.room_id.as_str(), group);
        }
    }
    for (room, group) in state_groups {
        statements.push(
            "UPDATE rooms SET state_group = ? WHERE room_id = ?",
            vec![group.into(), room.into()],
        );
    }
    let rooms: Vec<&str> = heads.keys().copied().collect();
    for chunk in rooms.chunks(ROWS_PER_STATEMENT) {
        let mut sql = "DELETE FROM forward_extremities WHERE room_id IN (".to_owned();
        push_parameters(&mut sql, chunk.len());
        sql.push(')');
        statements.push(sql, chunk.iter().map(|room| Arg::from(*room)).collect());
    }
    let extremities = heads
        .values()
        .flat_map(|batch| {
            batch
                .extremities
                .iter()
                .map(|id| vec![batch.room_id.as_str().into(), id.as_str().into()])
        })
        .collect();
    statements.insert_rows(
        "INSERT INTO forward_extremities (room_id, event_id)",
        "",
        extremities,
    );
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures::future::join_all;
    use ruma::{OwnedEventId, OwnedRoomId, RoomVersionId, room_version_rules::RedactionRules};

    use crate::store::{EventBatch, NewEventRow, NewRoom, testing::test_store};

    fn message(stream_ordering: i64, id: &str, prev: Option<&str>) -> NewEventRow {
        NewEventRow {
            stream_ordering,
            event_id: OwnedEventId::try_from(id).unwrap(),
            event_type: "m.room.message".to_owned(),
            state_key: None,
            sender: "@a:x.test".to_owned(),
            origin_server_ts: stream_ordering,
            depth: stream_ordering,
            prev_events: prev
                .map(|p| OwnedEventId::try_from(p).unwrap())
                .into_iter()
                .collect(),
            state_before: 0,
            state_after: 0,
            state_group: None,
            membership: None,
            replaces_state: None,
            relates_to: None,
            transaction: None,
            redacts: None,
            json: Arc::from(format!(r#"{{"content":{{"body":"{id}"}}}}"#)),
            push_actions: Vec::new(),
        }
    }

    fn batch(room: &str, events: Vec<NewEventRow>, new_room: bool) -> EventBatch {
        let extremities = events
            .last()
            .map(|e| vec![e.event_id.clone()])
            .unwrap_or_default();
        EventBatch {
            room_id: OwnedRoomId::try_from(room).unwrap(),
            new_room: new_room.then(|| NewRoom {
                version: RoomVersionId::V11,
                creator: "@a:x.test".to_owned(),
                created_ts: 0,
                published: false,
            }),
            events,
            extremities,
            redaction_rules: RedactionRules::V9,
            remote_servers: Vec::new(),
            prev_events_local: true,
            after_commit: None,
            resolved: None,
        }
    }

    /// Batches queued together are written together; one whose predecessor was never
    /// persisted fails alone, and the others commit.
    #[tokio::test]
    async fn a_batch_built_on_a_missing_event_fails_alone() {
        let (store, _db) = test_store().await;
        let first = batch("!a:x.test", vec![message(2, "$a1", None)], true);
        // Queued one after the other (as the room lock orders them), committed together.
        let mut queued = Vec::new();
        for batch in [
            first,
            batch("!a:x.test", vec![message(3, "$a2", Some("$a1"))], false),
            batch(
                "!a:x.test",
                vec![message(4, "$bad", Some("$nowhere"))],
                false,
            ),
            batch("!a:x.test", vec![message(5, "$a3", Some("$a2"))], false),
        ] {
            // PostgreSQL writes while enqueueing, and may fail there.
            queued.push(store.enqueue_events(batch).await);
        }
        let outcomes: Vec<bool> = join_all(queued.into_iter().map(|queued| async move {
            match queued {
                Ok(pending) => pending.committed().await.is_ok(),
                Err(_) => false,
            }
        }))
        .await;
        assert_eq!(outcomes, [true, true, false, true]);
        let stored: Vec<String> =
            sqlx::query_scalar("SELECT event_id FROM events ORDER BY stream_ordering")
                .fetch_all(&store.pool)
                .await
                .unwrap();
        assert_eq!(stored, ["$a1", "$a2", "$a3"]);
        let extremities: Vec<String> = sqlx::query_scalar(
            "SELECT event_id FROM forward_extremities WHERE room_id = '!a:x.test'",
        )
        .fetch_all(&store.pool)
        .await
        .unwrap();
        assert_eq!(extremities, ["$a3"]);
    }

    /// A redaction among batches written together prunes its target inside their savepoint,
    /// which is released only after it: everything commits, the target pruned.
    #[tokio::test]
    async fn a_redaction_written_together_with_other_batches_prunes_its_target() {
        let (store, _db) = test_store().await;
        let mut target = message(1, "$a1", None);
        target.json =
            Arc::from(r#"{"type":"m.room.message","sender":"@a:x.test","content":{"body":"$a1"}}"#);
        let mut redaction = message(3, "$r", Some("$a2"));
        redaction.redacts = Some(OwnedEventId::try_from("$a1").unwrap());
        let mut queued = Vec::new();
        for batch in [
            batch("!a:x.test", vec![target], true),
            batch("!a:x.test", vec![message(2, "$a2", Some("$a1"))], false),
            batch("!a:x.test", vec![redaction], false),
            batch("!a:x.test", vec![message(4, "$a3", Some("$r"))], false),
        ] {
            queued.push(store.enqueue_events(batch).await);
        }
        for queued in queued {
            queued
                .expect("queued")
                .committed()
                .await
                .expect("committed");
        }
        let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT event_id, json, redacted_by FROM events ORDER BY stream_ordering",
        )
        .fetch_all(&store.pool)
        .await
        .unwrap();
        let ids: Vec<&str> = rows.iter().map(|(id, _, _)| id.as_str()).collect();
        assert_eq!(ids, ["$a1", "$a2", "$r", "$a3"]);
        let (_, pruned, redacted_by) = &rows[0];
        assert!(!pruned.contains("body"), "{pruned}");
        assert_eq!(redacted_by.as_deref(), Some("$r"));
        assert!(rows[1].1.contains("body"), "{}", rows[1].1);
    }
}
