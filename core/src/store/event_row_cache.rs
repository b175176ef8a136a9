//! Event rows, in memory. A timeline row with its state (see [`EventRow::has_state`]) changes
//! only when its event is redacted (the JSON is pruned), so a row read once stays true until
//! then: a room's state events are read by every sync that shows the room whole, and by the
//! auth checks of every event that cites them.
//!
//! A redaction's writer forgets its target once the write has committed. A read that raced
//! with it (started before, finished after) may hold the row as it was: the generation, bumped
//! by every forgetting, keeps such a read from being remembered.

use std::{
    collections::{HashMap, HashSet},
    sync::{Mutex, MutexGuard},
};

use ruma::{EventId, OwnedEventId};

use super::rooms::EventRow;

/// Bytes of event JSON kept before the memory starts over.
const MAX_JSON_BYTES: usize = 32 * 1024 * 1024;

#[derive(Default)]
pub(super) struct EventRowCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    rows: HashMap<OwnedEventId, EventRow>,
    json_bytes: usize,
    generation: u64,
}

/// When a read began: what it found is remembered only if nothing was forgotten since.
#[derive(Clone, Copy)]
pub(super) struct ReadStart(u64);

impl EventRowCache {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        // Each update is a few map operations on one lock: a panic elsewhere cannot leave them
        // half done.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The remembered rows among `ids`, and the IDs left to read, with the start of that read.
    pub(super) fn get(
        &self,
        ids: &[OwnedEventId],
    ) -> (Vec<EventRow>, Vec<OwnedEventId>, ReadStart) {
        let inner = self.inner();
        let mut found = Vec::new();
        let mut missing = Vec::new();
        let mut seen = HashSet::with_capacity(ids.len());
        for id in ids {
            if !seen.insert(id) {
                continue;
            }
            match inner.rows.get(id) {
                Some(row) => found.push(row.clone()),
                None => missing.push(id.clone()),
            }
        }
        (found, missing, ReadStart(inner.generation))
    }

    /// Remembers the rows of a read that began at `start` that never change but by redaction.
    pub(super) fn remember<'a>(
        &self,
        start: ReadStart,
        rows: impl IntoIterator<Item = &'a EventRow>,
    ) {
        let mut inner = self.inner();
        if inner.generation != start.0 {
            return;
        }
        for row in rows {
            if row.stream_ordering == 0 || !row.has_state() {
                continue;
            }
            if inner.json_bytes + row.json.len() > MAX_JSON_BYTES {
                inner.rows.clear();
                inner.json_bytes = 0;
            }
            inner.json_bytes += row.json.len();
            if let Some(replaced) = inner.rows.insert(row.event_id.clone(), row.clone()) {
                inner.json_bytes -= replaced.json.len();
            }
        }
    }

    /// Forgets rows whose stored form changed (redacted events).
    pub(super) fn forget<'a>(&self, ids: impl IntoIterator<Item = &'a EventId>) {
        let mut inner = self.inner();
        inner.generation += 1;
        for id in ids {
            if let Some(removed) = inner.rows.remove(id) {
                inner.json_bytes -= removed.json.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ruma::{event_id, owned_room_id};

    use super::*;

    fn row(id: &EventId, stream_ordering: i64, state_after: i64) -> EventRow {
        EventRow {
            stream_ordering,
            event_id: id.to_owned(),
            room_id: owned_room_id!("!r:x"),
            state_before: 1,
            state_after,
            replaces_state: None,
            redacted_by: None,
            json: Arc::from("{}"),
        }
    }

    #[test]
    fn rows_are_remembered_until_forgotten() {
        let cache = EventRowCache::default();
        let id = event_id!("$a");
        let (_, missing, start) = cache.get(&[id.to_owned()]);
        assert_eq!(missing, vec![id.to_owned()]);
        cache.remember(start, [&row(id, 5, 2)]);
        let (found, missing, _) = cache.get(&[id.to_owned()]);
        assert_eq!((found.len(), missing.len()), (1, 0));
        cache.forget([id]);
        let (found, _, _) = cache.get(&[id.to_owned()]);
        assert!(found.is_empty());
    }

    #[test]
    fn a_read_racing_a_redaction_is_not_remembered() {
        let cache = EventRowCache::default();
        let id = event_id!("$a");
        let (_, _, start) = cache.get(&[id.to_owned()]);
        // The redaction commits and forgets its target while the read is under way.
        cache.forget([id]);
        cache.remember(start, [&row(id, 5, 2)]);
        let (found, _, _) = cache.get(&[id.to_owned()]);
        assert!(found.is_empty());
    }

    #[test]
    fn outliers_and_out_of_band_rows_are_not_remembered() {
        let cache = EventRowCache::default();
        let (outlier, out_of_band) = (event_id!("$o"), event_id!("$b"));
        let (_, _, start) = cache.get(&[]);
        cache.remember(start, [&row(outlier, 0, 2), &row(out_of_band, 7, 0)]);
        let (found, _, _) = cache.get(&[outlier.to_owned(), out_of_band.to_owned()]);
        assert!(found.is_empty());
    }
}
