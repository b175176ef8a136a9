//! Transactions sent recently or still in flight, so that a retry racing its first attempt is
//! answered from memory under the room lock; older ones are found in the database before the
//! lock is taken.

use std::collections::{HashMap, VecDeque};

use ruma::{OwnedEventId, OwnedUserId};

use super::Transaction;

/// Enough to cover any retry that could have missed the database check (it would have to wait
/// for the room lock while this many other transactions committed).
const REMEMBERED: usize = 65_536;

type Key = (OwnedUserId, Transaction);

#[derive(Default)]
pub(super) struct RecentTransactions {
    events: HashMap<Key, OwnedEventId>,
    order: VecDeque<Key>,
}

impl RecentTransactions {
    pub(super) fn get(&self, key: &Key) -> Option<OwnedEventId> {
        self.events.get(key).cloned()
    }

    pub(super) fn insert(&mut self, key: Key, event_id: OwnedEventId) {
        if self.events.insert(key.clone(), event_id).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > REMEMBERED {
            if let Some(oldest) = self.order.pop_front() {
                self.events.remove(&oldest);
            }
        }
    }

    /// Forgets a transaction whose event was not committed: a retry must send it again.
    pub(super) fn remove(&mut self, key: &Key) {
        if self.events.remove(key).is_some() {
            self.order.retain(|k| k != key);
        }
    }
}

#[cfg(test)]
mod tests {
    use ruma::{OwnedEventId, owned_device_id, owned_user_id};

    use super::{REMEMBERED, RecentTransactions};
    use crate::rooms::Transaction;

    fn key(n: usize) -> (ruma::OwnedUserId, Transaction) {
        let txn = Transaction {
            device_id: owned_device_id!("D"),
            scope: "send/!r:x/m.room.message".to_owned(),
            txn_id: n.to_string(),
        };
        (owned_user_id!("@a:x.test"), txn)
    }

    #[test]
    fn remembers_the_newest_and_forgets_removed_ones() {
        let mut recent = RecentTransactions::default();
        let event = OwnedEventId::try_from("$e").unwrap();
        for n in 0..=REMEMBERED {
            recent.insert(key(n), event.clone());
        }
        assert_eq!(recent.get(&key(0)), None, "the oldest is forgotten");
        assert_eq!(recent.get(&key(REMEMBERED)), Some(event.clone()));
        recent.remove(&key(REMEMBERED));
        assert_eq!(recent.get(&key(REMEMBERED)), None);
    }
}
