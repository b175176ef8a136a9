//! What changed lately, in memory, so that a woken sync finds its news without asking the
//! database: the events of recent timeline positions (their room, whose membership they set,
//! what they relate to, and the row itself to serve), and each syncing user's current
//! memberships. A message that wakes a thousand syncs is then read once, from here.
//!
//! Both are filled in by the write path after a batch commits and before its positions are
//! released to readers, so a sync that may read a position also sees its change here.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use ruma::{EventId, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};

use crate::store::{EventRow, MembershipRow};

/// Changes remembered; a sync from a token older than these asks the database.
const CAPACITY: usize = 100_000;
/// Users whose memberships are remembered before the memory starts over.
const MAX_USERS: usize = 100_000;

/// One committed event.
pub(super) struct Change {
    pub position: i64,
    pub room_id: OwnedRoomId,
    /// The user whose membership the event sets, for member events.
    pub member: Option<OwnedUserId>,
    /// The event it relates to (`m.relates_to`), if any.
    pub relates_to: Option<OwnedEventId>,
    /// The event it redacts, if it is a redaction.
    pub redacts: Option<OwnedEventId>,
    /// The row as stored; dropped once the event is redacted (the stored one is pruned).
    pub row: Option<EventRow>,
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
    /// Relation target → how many remembered events relate to it.
    related: HashMap<OwnedEventId, usize>,
    /// Every change after this position is in `changes`.
    floor: i64,
    memberships: HashMap<OwnedUserId, Arc<[MembershipRow]>>,
    /// Bumped by every membership change: a read of memberships from the database that raced
    /// with one must not be remembered.
    generation: u64,
}

impl Inner {
    /// A redacted event's row is pruned in the database: memory must not serve the old one.
    fn forget_row(&mut self, event_id: &EventId) {
        if let Some(change) = self
            .changes
            .iter_mut()
            .rev()
            .find(|c| c.row.as_ref().is_some_and(|row| row.event_id == event_id))
        {
            change.row = None;
        }
    }
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
                related: HashMap::new(),
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
            if let Some(target) = &change.redacts {
                inner.forget_row(target);
            }
            if let Some(target) = &change.relates_to {
                *inner.related.entry(target.clone()).or_default() += 1;
            }
            if inner.changes.len() == CAPACITY
                && let Some(evicted) = inner.changes.pop_front()
            {
                inner.floor = inner.floor.max(evicted.position);
                if let Some(target) = &evicted.relates_to
                    && let Some(count) = inner.related.get_mut(target)
                {
                    *count -= 1;
                    if *count == 0 {
                        inner.related.remove(target);
                    }
                }
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

    /// Whether any event in `(since, upto]` set someone's membership in any room; `None` if
    /// memory does not reach back that far.
    pub(super) fn any_membership_between(&self, since: i64, upto: i64) -> Option<bool> {
        let inner = self.inner();
        if since < inner.floor {
            return None;
        }
        Some(
            inner
                .changes
                .iter()
                .rev()
                .take_while(|change| change.position > since)
                .any(|change| change.position <= upto && change.member.is_some()),
        )
    }

    /// The room's events in `(since, upto]`, oldest first, if memory holds all of them as
    /// stored.
    pub(super) fn room_events(
        &self,
        room_id: &RoomId,
        since: i64,
        upto: i64,
    ) -> Option<Vec<EventRow>> {
        let inner = self.inner();
        if since < inner.floor {
            return None;
        }
        let mut rows = Vec::new();
        for change in inner.changes.iter().rev() {
            if change.position <= since {
                break;
            }
            if change.position > upto || change.room_id != room_id {
                continue;
            }
            rows.push(change.row.clone()?);
        }
        rows.reverse();
        Some(rows)
    }

    /// Whether no event relates to any of these, as far as memory can tell: each must be a
    /// remembered event (its children came after it, so they are remembered too).
    pub(super) fn have_no_children(&self, rows: &[EventRow]) -> bool {
        let inner = self.inner();
        rows.iter().all(|row| {
            row.stream_ordering > inner.floor && !inner.related.contains_key(&row.event_id)
        })
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

    use ruma::{owned_event_id, owned_room_id, owned_user_id, room_id, user_id};

    use super::{Change, RecentChanges};
    use crate::store::{EventRow, MembershipRow};

    fn change(position: i64, room: &str, member: Option<&str>) -> Change {
        Change {
            position,
            room_id: room.try_into().unwrap(),
            member: member.map(|m| m.try_into().unwrap()),
            relates_to: None,
            redacts: None,
            row: None,
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

    fn event(position: i64, room: &str, id: &str) -> Change {
        Change {
            row: Some(EventRow {
                stream_ordering: position,
                event_id: id.try_into().unwrap(),
                room_id: room.try_into().unwrap(),
                state_before: 1,
                state_after: 1,
                replaces_state: None,
                redacted_by: None,
                json: Arc::from("{}"),
            }),
            ..change(position, room, None)
        }
    }

    #[test]
    fn room_events_come_from_memory_until_one_is_redacted() {
        let recent = RecentChanges::new(0);
        let mut reply = event(3, "!a:x", "$3");
        reply.relates_to = Some(owned_event_id!("$1"));
        recent.committed(vec![event(1, "!a:x", "$1"), event(2, "!b:x", "$2"), reply]);
        let rows = recent.room_events(room_id!("!a:x"), 0, 3).unwrap();
        let ids: Vec<&str> = rows.iter().map(|r| r.event_id.as_str()).collect();
        assert_eq!(ids, ["$1", "$3"]);
        // $1 has a child; $3 has none.
        assert!(!recent.have_no_children(&rows[..1]));
        assert!(recent.have_no_children(&rows[1..]));

        let mut redaction = event(4, "!a:x", "$4");
        redaction.redacts = Some(owned_event_id!("$3"));
        recent.committed(vec![redaction]);
        assert!(recent.room_events(room_id!("!a:x"), 0, 4).is_none());
        // Ranges after the redacted event are still served.
        assert_eq!(recent.room_events(room_id!("!a:x"), 3, 4).unwrap().len(), 1);
    }
}
