//! Which transaction IDs are certainly new, without a query (SQLite). Every send first asks
//! whether its transaction ID made an event already; almost always it did not, and the query
//! that says so is a round trip to a reader thread on the send's critical path. A Bloom filter
//! of every stored `(user, device, scope, txn_id)` answers "certainly not" for nearly all of
//! them; "perhaps" (a stored one, or a rare false positive) still asks the database.
//!
//! It is exact only because one process owns a SQLite database and every transaction ID it
//! stores passes [`TransactionFilter::insert`] before its write commits. PostgreSQL may be
//! shared by several processes, so there it is not used.

use std::{
    hash::{BuildHasher, RandomState},
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
};

use futures::TryStreamExt;
use sqlx::{AnyPool, Row};

use super::Result;

/// Bits per expected entry at the start: a false positive rate under 1% (4 probes) until the
/// table has grown to twice its size, and a graceful rise after.
const BITS_PER_ENTRY: u64 = 16;
/// The smallest filter: 128 KiB.
const MIN_BITS: u64 = 1 << 20;
const PROBES: u64 = 4;

pub(super) struct TransactionFilter {
    words: Vec<AtomicU64>,
    /// `bits - 1`; the number of bits is a power of two.
    mask: u64,
    hasher: RandomState,
    /// Set once every transaction ID stored before the filter existed is in it.
    loaded: AtomicBool,
}

impl TransactionFilter {
    /// An empty filter sized for `expected` entries; it answers "perhaps" until
    /// [`TransactionFilter::load`] has run.
    pub(super) fn with_capacity(expected: u64) -> Self {
        let bits = expected
            .saturating_mul(BITS_PER_ENTRY)
            .max(MIN_BITS)
            .next_power_of_two();
        let words = (0..bits / 64).map(|_| AtomicU64::new(0)).collect();
        Self {
            words,
            mask: bits - 1,
            hasher: RandomState::new(),
            loaded: AtomicBool::new(false),
        }
    }

    /// Adds every stored transaction ID, then starts answering. IDs inserted meanwhile are
    /// kept: the filter only ever gains bits.
    pub(super) async fn load(&self, pool: &AnyPool) -> Result<()> {
        // Streamed: the table may hold millions of rows.
        let mut rows =
            sqlx::query("SELECT user_id, device_id, scope, txn_id FROM event_transactions")
                .fetch(pool);
        while let Some(row) = rows.try_next().await? {
            self.insert(
                row.try_get("user_id")?,
                row.try_get("device_id")?,
                row.try_get("scope")?,
                row.try_get("txn_id")?,
            );
        }
        self.loaded.store(true, Ordering::Release);
        Ok(())
    }

    pub(super) fn insert(&self, user: &str, device: &str, scope: &str, txn_id: &str) {
        for bit in self.bits(user, device, scope, txn_id) {
            self.words[(bit / 64) as usize].fetch_or(1 << (bit % 64), Ordering::Release);
        }
    }

    /// True only if no event was ever stored with this transaction ID.
    pub(super) fn certainly_absent(
        &self,
        user: &str,
        device: &str,
        scope: &str,
        txn_id: &str,
    ) -> bool {
        self.loaded.load(Ordering::Acquire)
            && self.bits(user, device, scope, txn_id).any(|bit| {
                self.words[(bit / 64) as usize].load(Ordering::Acquire) & (1 << (bit % 64)) == 0
            })
    }

    /// The probed bits: `h1 + i * h2` from one 64-bit hash (Kirsch and Mitzenmacher).
    fn bits(
        &self,
        user: &str,
        device: &str,
        scope: &str,
        txn_id: &str,
    ) -> impl Iterator<Item = u64> {
        let hash = self.hasher.hash_one((user, device, scope, txn_id));
        let (h1, h2) = (hash & 0xffff_ffff, (hash >> 32) | 1);
        let mask = self.mask;
        (0..PROBES).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) & mask)
    }
}

#[cfg(test)]
mod tests {
    use super::TransactionFilter;

    /// What was inserted is never "certainly absent"; nearly everything else is; before it is
    /// loaded the filter knows nothing.
    #[test]
    fn inserted_ids_are_never_certainly_absent() {
        let filter = TransactionFilter::with_capacity(1000);
        filter.insert("@a:x", "D", "send/!r:x/m.room.message", "t0");
        assert!(!filter.certainly_absent("@a:x", "D", "send/!r:x/m.room.message", "t1"));
        filter
            .loaded
            .store(true, std::sync::atomic::Ordering::Release);
        for i in 0..1000 {
            filter.insert("@a:x", "D", "scope", &format!("txn{i}"));
        }
        for i in 0..1000 {
            assert!(!filter.certainly_absent("@a:x", "D", "scope", &format!("txn{i}")));
        }
        assert!(!filter.certainly_absent("@a:x", "D", "send/!r:x/m.room.message", "t0"));
        let new = (0..1000)
            .filter(|i| filter.certainly_absent("@a:x", "D", "scope", &format!("new{i}")))
            .count();
        assert!(new > 980, "only {new} of 1000 new IDs known to be new");
    }
}
