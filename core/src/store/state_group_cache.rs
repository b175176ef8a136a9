//! Full states of state groups, in memory. A group never changes once written, so a state read
//! once stays true: every sync that shows a room whole (an initial sync, a join) asks for the
//! state at its timeline's start, which for members of one room is mostly the same few groups.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

use super::rooms::StateEntry;

/// State entries kept, across groups, before the memory starts over.
const MAX_ENTRIES: usize = 1_000_000;

#[derive(Default)]
pub(super) struct StateGroupCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    groups: HashMap<i64, Arc<[StateEntry]>>,
    entries: usize,
}

impl StateGroupCache {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        // Each update is one map operation: a panic elsewhere cannot leave it half done.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn get(&self, group_id: i64) -> Option<Arc<[StateEntry]>> {
        self.inner().groups.get(&group_id).cloned()
    }

    pub(super) fn insert(&self, group_id: i64, state: Arc<[StateEntry]>) {
        let mut inner = self.inner();
        if inner.entries + state.len() > MAX_ENTRIES {
            inner.groups.clear();
            inner.entries = 0;
        }
        inner.entries += state.len();
        if let Some(replaced) = inner.groups.insert(group_id, state) {
            inner.entries -= replaced.len();
        }
    }
}
