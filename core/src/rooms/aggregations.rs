//! Bundled aggregations (spec: "Aggregations of child events"): `unsigned["m.relations"]` of
//! served events, with the latest valid edit (`m.replace`), the thread summary (`m.thread`) and
//! the references (`m.reference`). A page of events costs a fixed number of queries.
//!
//! Which events get which aggregation follows Synapse: state events get none (as the spec
//! says); edits and annotations get none, since nothing may relate to them; only events that
//! relate to nothing can be thread roots; a redacted event keeps its references but bundles no
//! edit (spec: "Redactions of edited events") and no thread.

use std::collections::{HashMap, HashSet};

use ruma::{EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedUserId, UserId};
use serde_json::{Map, Value as JsonValue, json};

use crate::{
    Result,
    events::{Unsigned, client_event_json},
    store::{ChildRelation, EventRow, RelationsQuery},
};

use super::{
    Rooms,
    read::parse,
    relation,
    visibility::{RoomVisibilityFilters, VisibilityFilter},
};

pub(super) const THREAD: &str = "m.thread";
const REPLACE: &str = "m.replace";
const REFERENCE: &str = "m.reference";
const ANNOTATION: &str = "m.annotation";
/// Thread replies read at a time, and at most, looking for the latest one a user may see.
const REPLIES_PAGE: i64 = 50;
const MAX_SCANNED_REPLIES: usize = 2_000;

/// What an edit is checked against (spec: "Validity of replacement events").
struct Parent {
    room_id: OwnedRoomId,
    sender: OwnedUserId,
    kind: String,
    redacted: bool,
}

impl Parent {
    fn accepts_edit(&self, edit: &ChildRelation) -> bool {
        !self.redacted
            && edit.room_id == self.room_id
            && edit.sender == self.sender
            && edit.event_type == self.kind
            && !edit.is_state
    }
}

impl Rooms {
    /// `m.relations` of each of `rows` that has any, as `user_id` sees them.
    pub(super) async fn bundled_aggregations(
        &self,
        rows: &[EventRow],
        user_id: &UserId,
    ) -> Result<HashMap<OwnedEventId, JsonValue>> {
        let mut parents: HashMap<OwnedEventId, Parent> = HashMap::new();
        let mut thread_roots = Vec::new();
        for row in rows {
            let pdu = parse(row)?;
            let own_relation = relation(&pdu);
            if pdu.is_state()
                || own_relation
                    .as_ref()
                    .is_some_and(|(_, rel)| rel == REPLACE || rel == ANNOTATION)
            {
                continue;
            }
            let redacted = row.redacted_by.is_some();
            if own_relation.is_none() && !redacted {
                thread_roots.push((pdu.event_id.clone(), pdu.sender == user_id));
            }
            parents.insert(
                pdu.event_id.clone(),
                Parent {
                    room_id: pdu.room_id,
                    sender: pdu.sender,
                    kind: pdu.kind.to_string(),
                    redacted,
                },
            );
        }
        if parents.is_empty() {
            return Ok(HashMap::new());
        }

        let (threads, latest_rows) = self.thread_summaries(&thread_roots, user_id).await?;
        // The latest event of a thread is bundled with its own aggregations (edits and
        // references: a thread reply cannot be a thread root).
        for row in &latest_rows {
            let pdu = parse(row)?;
            parents.insert(
                pdu.event_id.clone(),
                Parent {
                    room_id: pdu.room_id,
                    sender: pdu.sender,
                    kind: pdu.kind.to_string(),
                    redacted: false,
                },
            );
        }
        let ids: Vec<OwnedEventId> = parents.keys().cloned().collect();
        let children = self
            .store
            .child_relations(&ids, &[REPLACE, REFERENCE])
            .await?;
        let mut references: HashMap<OwnedEventId, Vec<JsonValue>> = HashMap::new();
        let mut edit_candidates: HashMap<OwnedEventId, Vec<ChildRelation>> = HashMap::new();
        for child in children {
            let Some(parent) = parents.get(&child.parent) else {
                continue;
            };
            if child.rel_type == REFERENCE {
                if child.room_id == parent.room_id {
                    references
                        .entry(child.parent.clone())
                        .or_default()
                        .push(json!({ "event_id": child.event_id }));
                }
            } else if parent.accepts_edit(&child) {
                edit_candidates
                    .entry(child.parent.clone())
                    .or_default()
                    .push(child);
            }
        }
        let edits = self.latest_edits(edit_candidates).await?;

        let now = MilliSecondsSinceUnixEpoch::now();
        let mut bundles: HashMap<OwnedEventId, Map<String, JsonValue>> = HashMap::new();
        for (parent, edit) in edits {
            bundles
                .entry(parent)
                .or_default()
                .insert(REPLACE.to_owned(), edit);
        }
        for (parent, chunk) in references {
            bundles
                .entry(parent)
                .or_default()
                .insert(REFERENCE.to_owned(), json!({ "chunk": chunk }));
        }
        let latest_by_id: HashMap<OwnedEventId, &EventRow> = latest_rows
            .iter()
            .map(|row| (row.event_id.clone(), row))
            .collect();
        for (root, (latest_id, count, participated)) in threads {
            let Some(row) = latest_by_id.get(&latest_id) else {
                continue;
            };
            let mut unsigned = Unsigned::new();
            if let Some(relations) = bundles.get(&latest_id) {
                unsigned.insert(
                    "m.relations".to_owned(),
                    JsonValue::Object(relations.clone()),
                );
            }
            let latest = client_event_json(&parse(row)?, &unsigned, now);
            let latest: JsonValue = serde_json::from_str(latest.get()).unwrap_or_default();
            bundles.entry(root).or_default().insert(
                THREAD.to_owned(),
                json!({
                    "latest_event": latest,
                    "count": count,
                    "current_user_participated": participated,
                }),
            );
        }
        // Bundles of latest thread events come along; the caller looks up only its own rows.
        Ok(bundles
            .into_iter()
            .map(|(id, relations)| (id, JsonValue::Object(relations)))
            .collect())
    }

    /// For each thread among `roots` (with whether the user sent the root): the latest
    /// reply's ID, the reply count and whether the user took part (sent the root or a reply),
    /// leaving out replies by users they ignore, the latest being one they may see; and the rows
    /// of the latest replies.
    async fn thread_summaries(
        &self,
        roots: &[(OwnedEventId, bool)],
        user_id: &UserId,
    ) -> Result<(
        HashMap<OwnedEventId, (OwnedEventId, i64, bool)>,
        Vec<EventRow>,
    )> {
        if roots.is_empty() {
            return Ok((HashMap::new(), Vec::new()));
        }
        let ignored: Vec<OwnedUserId> = self
            .store
            .ignored_users(user_id)
            .await?
            .iter()
            .cloned()
            .collect();
        let ids: Vec<OwnedEventId> = roots.iter().map(|(id, _)| id.clone()).collect();
        let summaries = self.store.thread_summaries(&ids, &ignored).await?;
        if summaries.is_empty() {
            return Ok((HashMap::new(), Vec::new()));
        }
        let with_replies: Vec<OwnedEventId> = summaries.iter().map(|s| s.root.clone()).collect();
        let replied: HashSet<OwnedEventId> = self
            .store
            .threads_replied_in(&with_replies, user_id)
            .await?
            .into_iter()
            .collect();
        let started: HashSet<&OwnedEventId> = roots
            .iter()
            .filter(|(_, own)| *own)
            .map(|(id, _)| id)
            .collect();
        let positions: Vec<i64> = summaries.iter().map(|s| s.latest).collect();
        let mut rows_at: HashMap<i64, EventRow> = self
            .store
            .events_at(&positions)
            .await?
            .into_iter()
            .map(|row| (row.stream_ordering, row))
            .collect();
        let mut visibility = RoomVisibilityFilters::new(self, user_id);
        let mut threads = HashMap::new();
        let mut latest_rows = Vec::new();
        for summary in summaries {
            let Some(latest) = rows_at.remove(&summary.latest) else {
                continue;
            };
            let filter = visibility.of(&latest.room_id).await?;
            let Some(latest) = self
                .latest_visible_reply(filter, &summary.root, latest)
                .await?
            else {
                continue;
            };
            let participated = replied.contains(&summary.root) || started.contains(&summary.root);
            threads.insert(
                summary.root,
                (latest.event_id.clone(), summary.count, participated),
            );
            latest_rows.push(latest);
        }
        Ok((threads, latest_rows))
    }

    /// `latest` if the user may see it, else the thread's latest earlier reply they may see (a
    /// user who left sees no reply sent after; Synapse leaves this unfiltered), or none. The
    /// count stays that of all replies, as Synapse's.
    async fn latest_visible_reply(
        &self,
        visibility: &mut VisibilityFilter<'_>,
        root: &EventId,
        latest: EventRow,
    ) -> Result<Option<EventRow>> {
        if visibility.allows(&latest, &parse(&latest)?).await? {
            return Ok(Some(latest));
        }
        let mut position = latest.stream_ordering - 1;
        let mut scanned = 0;
        while scanned < MAX_SCANNED_REPLIES {
            let rows = self
                .store
                .relations_page(RelationsQuery {
                    room_id: &latest.room_id,
                    parent: root,
                    rel_type: Some(THREAD),
                    event_type: None,
                    max_depth: 1,
                    from: position,
                    forward: false,
                    limit: REPLIES_PAGE,
                })
                .await?;
            let last_page = rows.len() < REPLIES_PAGE as usize;
            for row in rows {
                scanned += 1;
                position = row.stream_ordering - 1;
                if visibility.allows(&row, &parse(&row)?).await? {
                    return Ok(Some(row));
                }
            }
            if last_page {
                break;
            }
        }
        Ok(None)
    }

    /// The most recent valid edit of each parent (spec: by `origin_server_ts`, then the
    /// lexicographically largest event ID), in the client format.
    async fn latest_edits(
        &self,
        mut candidates: HashMap<OwnedEventId, Vec<ChildRelation>>,
    ) -> Result<HashMap<OwnedEventId, JsonValue>> {
        let ids: Vec<OwnedEventId> = candidates
            .values()
            .flatten()
            .map(|edit| edit.event_id.clone())
            .collect();
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let rows = self.store.events_by_id(&ids).await?;
        let now = MilliSecondsSinceUnixEpoch::now();
        let mut edits = HashMap::new();
        for (parent, edits_of_parent) in &mut candidates {
            edits_of_parent.sort_by(|a, b| {
                (b.origin_server_ts, &b.event_id).cmp(&(a.origin_server_ts, &a.event_id))
            });
            for edit in edits_of_parent.iter() {
                let Some(row) = rows.get(&edit.event_id) else {
                    continue;
                };
                let pdu = parse(row)?;
                // An encrypted edit carries `m.new_content` in its ciphertext.
                let has_new_content = edit.event_type == "m.room.encrypted"
                    || pdu
                        .content_value()
                        .get("m.new_content")
                        .is_some_and(JsonValue::is_object);
                if !has_new_content {
                    continue;
                }
                let served = client_event_json(&pdu, &Unsigned::new(), now);
                edits.insert(
                    parent.clone(),
                    serde_json::from_str(served.get()).unwrap_or_default(),
                );
                break;
            }
        }
        Ok(edits)
    }
}
