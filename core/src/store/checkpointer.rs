//! WAL checkpoints off the write path (SQLite). SQLite's own checkpoint runs inside the commit
//! that crosses its threshold, copying a thousand pages into the database file and syncing it
//! while every writer waits. Here a connection of its own copies committed pages back soon
//! after commits, without blocking the writer (a passive checkpoint). The writer's own
//! automatic checkpoint stays as a backstop, at a threshold this task keeps the log below.

use std::{sync::Arc, time::Duration};

use sqlx::AnyPool;
use tokio::sync::Notify;

/// The writer's automatic checkpoint threshold, in pages: only reached if this task falls far
/// behind (a reader holding an old snapshot for long).
pub(super) const WRITER_CHECKPOINT_PAGES: &str = "PRAGMA wal_autocheckpoint = 16384";

/// Least time between two checkpoints: each copies all pages committed since the last, so
/// spacing them out copies a page changed by many commits once.
const SPACING: Duration = Duration::from_millis(100);

/// Wakes the checkpoint task; the writer calls [`Checkpointer::committed`] after each commit.
#[derive(Clone)]
pub(super) struct Checkpointer {
    pool: AnyPool,
    commits: Arc<Notify>,
}

impl Checkpointer {
    /// Starts the task on `pool`, a connection to the same database as the writer's.
    pub(super) fn start(pool: AnyPool) -> Self {
        let commits = Arc::new(Notify::new());
        tokio::spawn(run(pool.clone(), commits.clone()));
        Self { pool, commits }
    }

    pub(super) fn committed(&self) {
        self.commits.notify_one();
    }

    /// Closes the connection; the task ends at the next commit.
    pub(super) async fn close(&self) {
        self.pool.close().await;
    }
}

async fn run(pool: AnyPool, commits: Arc<Notify>) {
    loop {
        commits.notified().await;
        if pool.is_closed() {
            return;
        }
        // A failed checkpoint leaves the pages in the log, where readers find them, and the
        // next one retries; the writer's own threshold bounds the log meanwhile.
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::warn!("WAL checkpoint failed: {e}");
        }
        tokio::time::sleep(SPACING).await;
    }
}
