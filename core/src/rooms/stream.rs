//! The timeline stream's positions (stream orderings). A position is handed out before its
//! event is written, and writes of different rooms commit in any order; a reader must never
//! read past a position whose write is still in flight, or it would skip that event for good
//! once it lands. [`TimelineStream::persisted`] is the highest position below every write in
//! flight: everything at or before it that will ever exist is in the database.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

struct Positions {
    next: i64,
    /// First position of each allocation in flight → its length.
    in_flight: BTreeMap<i64, i64>,
}

pub(super) struct TimelineStream {
    positions: Arc<Mutex<Positions>>,
}

/// Positions in flight; dropping it (committed, failed or abandoned) releases them.
pub(super) struct Allocation {
    positions: Arc<Mutex<Positions>>,
    pub start: i64,
}

impl Drop for Allocation {
    fn drop(&mut self) {
        lock(&self.positions).in_flight.remove(&self.start);
    }
}

fn lock(positions: &Mutex<Positions>) -> std::sync::MutexGuard<'_, Positions> {
    // Every update is a single map operation: a panic elsewhere cannot leave it half done.
    positions.lock().unwrap_or_else(|e| e.into_inner())
}

impl TimelineStream {
    /// `last`: the highest position already stored.
    pub(super) fn new(last: i64) -> Self {
        Self {
            positions: Arc::new(Mutex::new(Positions {
                next: last + 1,
                in_flight: BTreeMap::new(),
            })),
        }
    }

    /// `count` consecutive positions, in flight until the allocation is dropped.
    pub(super) fn allocate(&self, count: usize) -> Allocation {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        let mut positions = lock(&self.positions);
        let start = positions.next;
        positions.next += count;
        positions.in_flight.insert(start, count);
        Allocation {
            positions: self.positions.clone(),
            start,
        }
    }

    pub(super) fn persisted(&self) -> i64 {
        let positions = lock(&self.positions);
        match positions.in_flight.keys().next() {
            Some(first) => first - 1,
            None => positions.next - 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TimelineStream;

    #[test]
    fn persisted_stops_below_the_oldest_write_in_flight() {
        let stream = TimelineStream::new(10);
        assert_eq!(stream.persisted(), 10);
        let a = stream.allocate(2);
        let b = stream.allocate(1);
        assert_eq!((a.start, b.start), (11, 13));
        assert_eq!(stream.persisted(), 10);
        // The later write lands first: still nothing past 10 is safe to read.
        drop(b);
        assert_eq!(stream.persisted(), 10);
        drop(a);
        assert_eq!(stream.persisted(), 13);
    }
}
