//! State group lookups, remembered: a state group never changes once written, so which event
//! holds `(type, state_key)` in it stays true for good. Lazy-loading syncs ask this for every
//! sender of every timeline they send, and a lookup walks the group's delta chain.

use std::{collections::HashMap, sync::Mutex};

use ruma::OwnedEventId;

use super::Rooms;
use crate::Result;

/// Lookups remembered before the memory starts over.
const MAX_ENTRIES: usize = 200_000;

type Key = (i64, String, String);

#[derive(Default)]
pub(super) struct StateEntries {
    entries: Mutex<HashMap<Key, Option<OwnedEventId>>>,
}

impl StateEntries {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Option<OwnedEventId>>> {
        // Each update is one map operation: a panic elsewhere cannot leave it half done.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Rooms {
    /// The event holding `(kind, key)` in state group `group`.
    pub(super) async fn state_entry(
        &self,
        group: i64,
        kind: &str,
        key: &str,
    ) -> Result<Option<OwnedEventId>> {
        let cache_key = (group, kind.to_owned(), key.to_owned());
        if let Some(known) = self.state_entries.entries().get(&cache_key) {
            return Ok(known.clone());
        }
        let found = self.store.state_group_entry(group, kind, key).await?;
        let mut entries = self.state_entries.entries();
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(cache_key, found.clone());
        Ok(found)
    }
}
