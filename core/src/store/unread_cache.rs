//! Unread counts in memory. Every sync reports each joined room's counts, and a message into a
//! room of a thousand wakes a thousand syncs: asking the database each time was most of what a
//! woken sync cost. A user's counts in a room, once read, are kept and then follow the writes
//! that change them:
//!
//! - an event's push actions raise them, applied after the event's batch commits and before its
//!   timeline positions are released to readers;
//! - a read receipt (`m.read`, `m.read.private`) drops them, before its receipts position is
//!   released; they are read again next time.
//!
//! A read from the database counts the push actions up to a timeline position every earlier
//! position of which is committed (the sync's own), so it is exact there. It is remembered only if
//! nothing could have changed the counts since: no receipt moved (`generation`) and no push
//! actions past that position were applied (`applied_through`); otherwise the next sync asks the
//! database again.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
};

use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};

use super::{push::UnreadPushCount, rooms::NewEventRow};

/// Users whose counts are kept before the memory starts over.
const MAX_USERS: usize = 100_000;

#[derive(Default)]
struct Inner {
    /// User → room → the room's counts per thread, as the database reads them.
    users: HashMap<OwnedUserId, HashMap<OwnedRoomId, Vec<UnreadPushCount>>>,
    /// Bumped by every receipt that resets counts.
    generation: u64,
    /// The last timeline position whose push actions were applied.
    applied_through: i64,
}

/// The counts a batch of one room raises: its push actions, up to timeline position `through`.
pub(super) struct Raised {
    room_id: OwnedRoomId,
    through: i64,
    actions: Vec<Raise>,
}

/// What one push action adds to its recipient's counts.
struct Raise {
    user_id: OwnedUserId,
    thread_id: Option<OwnedEventId>,
    notify: bool,
    highlight: bool,
}

impl Raised {
    /// `None` for a batch that notifies nobody.
    pub(super) fn by(room_id: &RoomId, events: &[NewEventRow]) -> Option<Self> {
        let through = events
            .iter()
            .filter(|event| !event.push_actions.is_empty())
            .map(|event| event.stream_ordering)
            .max()?;
        Some(Self {
            room_id: room_id.to_owned(),
            through,
            actions: events
                .iter()
                .flat_map(|event| &event.push_actions)
                .map(|action| Raise {
                    user_id: action.user_id.clone(),
                    thread_id: action.thread_id.clone(),
                    notify: action.notify,
                    highlight: action.highlight,
                })
                .collect(),
        })
    }
}

/// What a sync found in memory, and what it must read.
pub(super) struct Lookup {
    pub counts: Vec<UnreadPushCount>,
    pub missing: Vec<OwnedRoomId>,
    generation: u64,
}

#[derive(Default)]
pub(super) struct UnreadCache {
    inner: Mutex<Inner>,
}

impl UnreadCache {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        // Every update leaves the maps consistent: a panic elsewhere cannot half-apply one.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The user's known counts in `room_ids`, and the rooms not known.
    pub(super) fn lookup(&self, user_id: &UserId, room_ids: &[OwnedRoomId]) -> Lookup {
        let inner = self.inner();
        let known = inner.users.get(user_id);
        let mut lookup = Lookup {
            counts: Vec::new(),
            missing: Vec::new(),
            generation: inner.generation,
        };
        for room_id in room_ids {
            match known.and_then(|rooms| rooms.get(room_id)) {
                Some(threads) => lookup.counts.extend_from_slice(threads),
                None => lookup.missing.push(room_id.clone()),
            }
        }
        lookup
    }

    /// Keeps the counts of `lookup.missing`, read from the database as of timeline position
    /// `upto`, unless something changed them since the lookup.
    pub(super) fn remember(
        &self,
        user_id: &UserId,
        lookup: &Lookup,
        read: &[UnreadPushCount],
        upto: i64,
    ) {
        let mut inner = self.inner();
        if inner.generation != lookup.generation || inner.applied_through > upto {
            return;
        }
        if inner.users.len() >= MAX_USERS && !inner.users.contains_key(user_id) {
            inner.users.clear();
        }
        let rooms = inner.users.entry(user_id.to_owned()).or_default();
        for room_id in &lookup.missing {
            let threads = read
                .iter()
                .filter(|count| count.room_id == *room_id)
                .cloned()
                .collect();
            rooms.insert(room_id.clone(), threads);
        }
    }

    /// A committed batch's push actions, before its positions are released.
    pub(super) fn committed(&self, raised: &Raised) {
        let mut inner = self.inner();
        inner.applied_through = inner.applied_through.max(raised.through);
        for action in &raised.actions {
            let Some(threads) = inner
                .users
                .get_mut(&action.user_id)
                .and_then(|rooms| rooms.get_mut(&raised.room_id))
            else {
                continue;
            };
            let index = match threads
                .iter()
                .position(|thread| thread.thread_id == action.thread_id)
            {
                Some(index) => index,
                None => {
                    threads.push(UnreadPushCount {
                        room_id: raised.room_id.clone(),
                        thread_id: action.thread_id.clone(),
                        notifications: 0,
                        highlights: 0,
                    });
                    threads.len() - 1
                }
            };
            threads[index].notifications += u64::from(action.notify);
            threads[index].highlights += u64::from(action.highlight);
        }
    }

    /// A read receipt moved: the user's counts in the room are read again.
    pub(super) fn receipt_moved(&self, user_id: &UserId, room_id: &RoomId) {
        let mut inner = self.inner();
        inner.generation += 1;
        if let Some(rooms) = inner.users.get_mut(user_id) {
            rooms.remove(room_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use ruma::{owned_room_id, owned_user_id};

    use super::*;

    fn raised(room_id: &RoomId, through: i64, user_id: &UserId, highlight: bool) -> Raised {
        Raised {
            room_id: room_id.to_owned(),
            through,
            actions: vec![Raise {
                user_id: user_id.to_owned(),
                thread_id: None,
                notify: true,
                highlight,
            }],
        }
    }

    fn read(room_id: &RoomId, notifications: u64) -> Vec<UnreadPushCount> {
        vec![UnreadPushCount {
            room_id: room_id.to_owned(),
            thread_id: None,
            notifications,
            highlights: 0,
        }]
    }

    fn known(cache: &UnreadCache, user_id: &UserId, room_id: &OwnedRoomId) -> Option<(u64, u64)> {
        let lookup = cache.lookup(user_id, std::slice::from_ref(room_id));
        if !lookup.missing.is_empty() {
            return None;
        }
        Some(lookup.counts.iter().fold((0, 0), |(n, h), count| {
            (n + count.notifications, h + count.highlights)
        }))
    }

    #[test]
    fn remembered_counts_follow_push_actions_and_receipts() {
        let cache = UnreadCache::default();
        let (alice, room) = (owned_user_id!("@alice:x.test"), owned_room_id!("!r:x.test"));
        let lookup = cache.lookup(&alice, std::slice::from_ref(&room));
        assert_eq!(lookup.missing, std::slice::from_ref(&room));
        cache.remember(&alice, &lookup, &read(&room, 2), 10);
        assert_eq!(known(&cache, &alice, &room), Some((2, 0)));

        cache.committed(&raised(&room, 11, &alice, true));
        assert_eq!(known(&cache, &alice, &room), Some((3, 1)));
        // Another user's push actions leave alice's counts alone.
        cache.committed(&raised(&room, 12, &owned_user_id!("@bob:x.test"), false));
        assert_eq!(known(&cache, &alice, &room), Some((3, 1)));

        cache.receipt_moved(&alice, &room);
        assert_eq!(known(&cache, &alice, &room), None);
    }

    #[test]
    fn a_read_that_raced_a_change_is_not_remembered() {
        let cache = UnreadCache::default();
        let (alice, room) = (owned_user_id!("@alice:x.test"), owned_room_id!("!r:x.test"));

        // Push actions past the read's position were applied before it finished: the read
        // may lack them, and nothing would add them later.
        let lookup = cache.lookup(&alice, std::slice::from_ref(&room));
        cache.committed(&raised(&room, 21, &alice, false));
        cache.remember(&alice, &lookup, &read(&room, 1), 20);
        assert_eq!(known(&cache, &alice, &room), None);

        // A receipt moved while the read ran: it may predate the receipt.
        let lookup = cache.lookup(&alice, std::slice::from_ref(&room));
        cache.receipt_moved(&alice, &room);
        cache.remember(&alice, &lookup, &read(&room, 1), 21);
        assert_eq!(known(&cache, &alice, &room), None);

        // With neither, the read is kept, and a room without unread events is known as such.
        let lookup = cache.lookup(&alice, std::slice::from_ref(&room));
        cache.remember(&alice, &lookup, &[], 21);
        assert_eq!(known(&cache, &alice, &room), Some((0, 0)));
    }
}
