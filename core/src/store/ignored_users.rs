//! The users each user ignores (spec: "Ignoring Users", the global account data
//! `m.ignored_user_list`). Every sync, history read and push evaluation asks, so a list once
//! read is kept in memory; this process's writes of that account data replace it at once, and
//! another process's reach this one when the entry expires.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use ruma::{OwnedUserId, UserId};
use serde_json::Value as JsonValue;

use super::{Result, Store};

/// The account data type of the ignore list.
pub const IGNORED_USER_LIST: &str = "m.ignored_user_list";
const TTL: Duration = Duration::from_secs(5);
/// Beyond this many entries the cache starts over, bounding its memory.
const MAX_ENTRIES: usize = 100_000;

pub type IgnoredUsers = Arc<HashSet<OwnedUserId>>;

#[derive(Default)]
pub(super) struct IgnoredUsersCache {
    entries: Mutex<HashMap<OwnedUserId, (IgnoredUsers, Instant)>>,
}

impl IgnoredUsersCache {
    fn entries(&self) -> MutexGuard<'_, HashMap<OwnedUserId, (IgnoredUsers, Instant)>> {
        // A poisoned lock only means a panic elsewhere; the map itself stays consistent.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers `ignored`: as written (`replace`), or as read, which does not overwrite a list
    /// a write put there meanwhile.
    pub(super) fn remember(&self, user_id: &UserId, ignored: IgnoredUsers, replace: bool) {
        let mut entries = self.entries();
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        let fresh = entries
            .get(user_id)
            .is_some_and(|(_, cached_at)| cached_at.elapsed() < TTL);
        if replace || !fresh {
            entries.insert(user_id.to_owned(), (ignored, Instant::now()));
        }
    }
}

/// The users an `m.ignored_user_list` content names; anything malformed names no one.
pub(super) fn parse_ignored(content: &str) -> IgnoredUsers {
    let content: JsonValue = serde_json::from_str(content).unwrap_or_default();
    let users = content
        .get("ignored_users")
        .and_then(JsonValue::as_object)
        .into_iter()
        .flat_map(|users| users.keys())
        .filter_map(|user| OwnedUserId::try_from(user.as_str()).ok())
        .collect();
    Arc::new(users)
}

impl Store {
    /// The users `user_id` ignores.
    pub async fn ignored_users(&self, user_id: &UserId) -> Result<IgnoredUsers> {
        if let Some((ignored, cached_at)) = self.ignored_users.entries().get(user_id)
            && cached_at.elapsed() < TTL
        {
            return Ok(ignored.clone());
        }
        let ignored = match self.account_data(user_id, None, IGNORED_USER_LIST).await? {
            Some(content) => parse_ignored(&content),
            None => IgnoredUsers::default(),
        };
        self.ignored_users.remember(user_id, ignored.clone(), false);
        Ok(ignored)
    }
}
