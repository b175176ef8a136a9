//! What changed lately, in memory, so that a woken sync finds its news without asking the
//! database: the rooms each recent timeline position belongs to (and whose membership it set),
//! and each syncing user's current memberships.
//!
//! Both are filled in by the write path after a batch commits and before its positions are
//! released to readers, so a sync that may read a position also sees its change here.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use ruma::{OwnedRoomId, OwnedUserId, UserId};

use crate::store::MembershipRow;

/// Changes remembered; a sync from a token older than these asks the database.
const CAPACITY: usize = 100_000;
/// Users whose memberships are remembered before the memory starts over.
const MAX_USERS: usize = 100_000;

/// One event's place in the timeline.
pub(super) struct Change {
    pub position: i64,
    pub room_id: OwnedRoomId,
    /// The user whose membership the event sets, for member events.
    pub member: Option<OwnedUserId>,
}

/// The rooms with events in a range of positions.
pub(super) struct RangeChanges {
    /// Room → its last position in the range.
    pub rooms: HashMap<OwnedRoomId, i64>,
    /// Whether some event in the range set the user's membership.
    pub membership_changed: bool,
}

struct Inner {
    changes: VecDeque<Change>,
    /// Every change after this position is in `changes`.
    floor: i64,
    memberships: HashMap<OwnedUserId, Arc<[MembershipRow]>>,
    /// Bumped by every membership change: a read of memberships from the database that raced
    /// with one must not be remembered.
    generation: u64,
}

pub(super) struct RecentChanges {
    inner: Mutex<Inner>,
}

impl RecentChanges {
    /// `floor`: the last position written before this process started.
    pub(super) fn new(floor: i64) -> Self {
        Self {
            inner: Mutex::new(Inner {
                changes: VecDeque::new(),
                floor,
                memberships: HashMap::new(),
                generation: 0,
            }),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Each update leaves the structure consistent: a panic elsewhere cannot break it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records committed events (before their positions are released).
    pub(super) fn committed(&self, changes: Vec<Change>) {
        let mut inner = self.inner();
        for change in changes {
            if let Some(member) = &change.member {
                inner.memberships.remove(member);
                inner.generation += 1;
            }
            if inner.changes.len() == CAPACITY
                && let Some(evicted) = inner.changes.pop_front()
            {
                inner.floor = inner.floor.max(evicted.position);
            }
            // Kept in position order; commits land nearly in order, so this is near the end.
            let at = inner
                .changes
                .partition_point(|c| c.position < change.position);
            inner.changes.insert(at, change);
        }
    }

    /// The changes in `(since, upto]` concerning `user_id`'s view, if memory reaches back that
    /// far.
    pub(super) fn between(&self, since: i64, upto: i64, user_id: &UserId) -> Option<RangeChanges> {
        let inner = self.inner();
        if since < inner.floor {
            return None;
        }
        let mut range = RangeChanges {
            rooms: HashMap::new(),
            membership_changed: false,
        };
        // Newest first: the range is usually at the end.
        for change in inner.changes.iter().rev() {
            if change.position <= since {
                break;
            }
            if change.position > upto {
                continue;
            }
            let last = range.rooms.entry(change.room_id.clone()).or_insert(0);
            *last = (*last).max(change.position);
            if change.member.as_deref() == Some(user_id) {
                range.membership_changed = true;
            }
        }
        Some(range)
    }

    pub(super) fn memberships(&self, user_id: &UserId) -> (Option<Arc<[MembershipRow]>>, u64) {
        let inner = self.inner();
        (inner.memberships.get(user_id).cloned(), inner.generation)
    }

    /// Remembers memberships read from the database, unless a membership changed since the
    /// read began (`generation` taken before it).
    pub(super) fn remember_memberships(
        &self,
        user_id: &UserId,
        rows: Arc<[MembershipRow]>,
        generation: u64,
    ) {
        let mut inner = self.inner();
        if inner.generation != generation {
            return;
        }
        if inner.memberships.len() >= MAX_USERS {
            inner.memberships.clear();
        }
        inner.memberships.insert(user_id.to_owned(), rows);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ruma::{owned_event_id, owned_room_id, owned_user_id, user_id};

    use super::{Change, RecentChanges};
    use crate::store::MembershipRow;

    fn change(position: i64, room: &str, member: Option<&str>) -> Change {
        Change {
            position,
            room_id: room.try_into().unwrap(),
            member: member.map(|m| m.try_into().unwrap()),
        }
    }

    #[test]
    fn ranges_are_answered_from_memory_after_the_floor() {
        let recent = RecentChanges::new(10);
        recent.committed(vec![
            change(12, "!b:x", None),
            change(11, "!a:x", Some("@u:x")),
        ]);
        assert!(recent.between(9, 12, user_id!("@u:x")).is_none());
        let range = recent.between(10, 12, user_id!("@u:x")).unwrap();
        assert_eq!(range.rooms.len(), 2);
        assert!(range.membership_changed);
        let range = recent.between(11, 12, user_id!("@u:x")).unwrap();
        assert_eq!(
            range.rooms.keys().cloned().collect::<Vec<_>>(),
            [owned_room_id!("!b:x")]
        );
        assert!(!range.membership_changed);
    }

    #[test]
    fn memberships_read_during_a_membership_change_are_not_remembered() {
        let recent = RecentChanges::new(0);
        let user = owned_user_id!("@u:x");
        let rows: Arc<[MembershipRow]> = Arc::from(vec![MembershipRow {
            room_id: owned_room_id!("!a:x"),
            membership: "join".to_owned(),
            event_id: owned_event_id!("$e"),
            stream_ordering: 1,
        }]);
        let (_, generation) = recent.memberships(&user);
        recent.committed(vec![change(1, "!a:x", Some("@u:x"))]);
        recent.remember_memberships(&user, rows.clone(), generation);
        assert!(recent.memberships(&user).0.is_none());
        let (_, generation) = recent.memberships(&user);
        recent.remember_memberships(&user, rows, generation);
        assert!(recent.memberships(&user).0.is_some());
        // Any change of the user's membership forgets it.
        recent.committed(vec![change(2, "!b:x", Some("@u:x"))]);
        assert!(recent.memberships(&user).0.is_none());
    }
}
