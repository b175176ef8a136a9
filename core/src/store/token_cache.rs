//! Access tokens recently looked up, so that a request costs no database read to authenticate.
//!
//! Every write of this process that revokes tokens empties the cache. Revocations by another
//! process (the `tessera user` CLI, another server process on the same database) reach this one
//! when entries expire, after [`TOKEN_CACHE_TTL`].

use std::{
    collections::HashMap,
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use super::AccessTokenInfo;

pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(5);
/// Beyond this many entries the cache starts over, bounding its memory.
const MAX_ENTRIES: usize = 100_000;

#[derive(Default)]
pub(super) struct TokenCache {
    entries: Mutex<HashMap<String, (AccessTokenInfo, Instant)>>,
    /// Bumped by every revocation: a lookup that raced one does not cache what it read.
    generation: AtomicU64,
}

impl TokenCache {
    fn entries(&self) -> MutexGuard<'_, HashMap<String, (AccessTokenInfo, Instant)>> {
        // A poisoned lock only means a panic elsewhere; the map itself stays consistent.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn get(&self, token_hash: &str) -> Option<AccessTokenInfo> {
        let entries = self.entries();
        let (info, cached_at) = entries.get(token_hash)?;
        (cached_at.elapsed() < TOKEN_CACHE_TTL).then(|| info.clone())
    }

    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Caches what a lookup that started at `generation` found, unless a revocation happened
    /// meanwhile. Tokens still to retire a refresh predecessor are not cached: their first use
    /// must reach the database.
    pub(super) fn insert(&self, token_hash: &str, info: &AccessTokenInfo, generation: u64) {
        if info.predecessor_refresh_hash.is_some() {
            return;
        }
        let mut entries = self.entries();
        if self.generation() != generation {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(token_hash.to_owned(), (info.clone(), Instant::now()));
    }

    /// After any write that deletes or replaces tokens.
    pub(super) fn clear(&self) {
        let mut entries = self.entries();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use ruma::{owned_device_id, owned_user_id};

    use super::TokenCache;
    use crate::store::AccessTokenInfo;

    fn info(predecessor: Option<&str>) -> AccessTokenInfo {
        AccessTokenInfo {
            user_id: owned_user_id!("@a:x.test"),
            device_id: owned_device_id!("D"),
            expires_ts: None,
            predecessor_refresh_hash: predecessor.map(str::to_owned),
        }
    }

    #[test]
    fn a_revocation_empties_the_cache_and_voids_lookups_in_flight() {
        let cache = TokenCache::default();
        let before = cache.generation();
        cache.insert("h", &info(None), before);
        assert_eq!(cache.get("h"), Some(info(None)));
        let in_flight = cache.generation();
        cache.clear();
        assert_eq!(cache.get("h"), None);
        cache.insert("h", &info(None), in_flight);
        assert_eq!(
            cache.get("h"),
            None,
            "a lookup that raced a revocation is not cached"
        );
        cache.insert("r", &info(Some("p")), cache.generation());
        assert_eq!(
            cache.get("r"),
            None,
            "tokens with a refresh predecessor are not cached"
        );
    }
}
