//! Async locks by key: one per DM pair or per user's IM account data, so read-modify-write
//! sequences of one key run one at a time while other keys proceed in parallel.

use std::{collections::HashMap, hash::Hash, sync::Arc};

use tokio::sync::{Mutex, OwnedMutexGuard};

pub struct KeyedLocks<K> {
    locks: std::sync::Mutex<HashMap<K, Arc<Mutex<()>>>>,
}

impl<K> Default for KeyedLocks<K> {
    fn default() -> Self {
        Self {
            locks: std::sync::Mutex::default(),
        }
    }
}

impl<K: Eq + Hash + Clone> KeyedLocks<K> {
    pub async fn lock(&self, key: &K) -> OwnedMutexGuard<()> {
        let lock = {
            // A poisoned map only means a panic elsewhere mid-insert; the map is still valid.
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            // Locks nobody holds or waits for are dropped, so the map stays as small as the
            // number of keys in use.
            locks.retain(|_, lock| Arc::strong_count(lock) > 1);
            locks.entry(key.clone()).or_default().clone()
        };
        lock.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::KeyedLocks;

    #[tokio::test]
    async fn one_key_is_held_by_one_task_at_a_time() {
        let locks = Arc::new(KeyedLocks::<u32>::default());
        let guard = locks.lock(&1).await;
        let other = tokio::time::timeout(Duration::from_millis(50), locks.lock(&2)).await;
        assert!(other.is_ok(), "another key is not blocked");
        let same = tokio::time::timeout(Duration::from_millis(50), locks.lock(&1)).await;
        assert!(same.is_err(), "the held key blocks");
        drop(guard);
        let again = tokio::time::timeout(Duration::from_secs(5), locks.lock(&1)).await;
        assert!(again.is_ok(), "released after the guard is dropped");
    }
}
