//! Durability of SQLite's grouped commits, off the writer. The writer's connection commits with
//! `synchronous = NORMAL`: a commit's pages reach the write-ahead log but are not synced, so the
//! writer starts on the next batch at once. This thread syncs the log and only then reports the
//! commits the sync covers: a write is acknowledged, and the stream positions it took are
//! released to readers, only once it is on disk. Commits made while one sync runs share the
//! next, so the writer never waits for the disk and the disk never waits for the writer.
//!
//! A sync covers every page written to the file before it began, by whichever connection, so
//! one `fdatasync` after a commit returned makes that commit durable. The log file stays the
//! same while the writer's connection is open (SQLite deletes it only when the last connection
//! closes), which is why the writer's connection is never recycled.

use std::{fs::File, path::Path};

use tokio::sync::mpsc;

use super::{
    Result, StoreError,
    writer::{BatchOutcome, complete},
};

/// Commits waiting for a sync; beyond this the writer waits (the disk has fallen far behind).
const QUEUE_LENGTH: usize = 1024;

/// Hands committed batches to the sync thread.
#[derive(Clone)]
pub(super) struct LogSync {
    outcomes: mpsc::Sender<BatchOutcome>,
}

impl LogSync {
    /// Opens the log at `wal` and starts the thread that syncs it; the thread ends once every
    /// [`LogSync`] is dropped and what they sent is reported.
    pub(super) fn start(wal: &Path) -> Result<Self> {
        let log = File::open(wal).map_err(StoreError::LogFile)?;
        let (outcomes, receiver) = mpsc::channel(QUEUE_LENGTH);
        std::thread::Builder::new()
            .name("tessera-log-sync".to_owned())
            .spawn(move || run(&log, receiver))
            .map_err(StoreError::Thread)?;
        Ok(Self { outcomes })
    }

    /// Reports `outcome` to its callers once the log holding it is synced (at once if it
    /// failed: nothing of it is in the log). Outcomes are reported in the order they come.
    pub(super) async fn report(&self, outcome: BatchOutcome) {
        // The thread is gone only if a sync failed, and then the process is ending.
        let _ = self.outcomes.send(outcome).await;
    }
}

fn run(log: &File, mut outcomes: mpsc::Receiver<BatchOutcome>) {
    let mut ready = Vec::new();
    while let Some(first) = outcomes.blocking_recv() {
        ready.push(first);
        while let Ok(next) = outcomes.try_recv() {
            ready.push(next);
        }
        if ready.iter().any(Result::is_ok)
            && let Err(e) = log.sync_data()
        {
            // After a failed sync the kernel may have dropped the pages it could not write, so
            // what is on disk is unknown while readers already see the commits: carrying on
            // could acknowledge writes that are lost. Stopping lets SQLite recover, on restart,
            // from what the disk really holds.
            tracing::error!("syncing the SQLite write-ahead log failed, stopping: {e}");
            std::process::abort();
        }
        ready.drain(..).for_each(complete);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::sync::oneshot;

    use super::LogSync;
    use crate::store::{StoreError, writer::Completion};

    /// Each completion records its number and whether it was told of an error, then signals.
    fn recording(
        number: usize,
        reports: &Arc<Mutex<Vec<(usize, bool)>>>,
    ) -> (Completion, oneshot::Receiver<()>) {
        let (done, reported) = oneshot::channel();
        let reports = reports.clone();
        let completion: Completion = Box::new(move |error| {
            reports
                .lock()
                .expect("reports lock")
                .push((number, error.is_some()));
            let _ = done.send(());
        });
        (completion, reported)
    }

    /// Commits are reported after the sync in the order they came; a batch that did not commit
    /// is reported with its error, in its place.
    #[tokio::test]
    async fn batches_are_reported_in_order_with_their_own_outcome() {
        let dir = tempfile::tempdir().expect("temp dir");
        let wal = dir.path().join("db-wal");
        std::fs::write(&wal, b"frames").expect("write the log");
        let log = LogSync::start(&wal).expect("start");
        let reports = Arc::new(Mutex::new(Vec::new()));
        let (first, first_done) = recording(0, &reports);
        let (second, second_done) = recording(1, &reports);
        let (failed, failed_done) = recording(2, &reports);
        let (last, last_done) = recording(3, &reports);
        log.report(Ok(vec![first, second])).await;
        log.report(Err((vec![failed], StoreError::WriterUnavailable)))
            .await;
        log.report(Ok(vec![last])).await;
        let all = async {
            for done in [first_done, second_done, failed_done, last_done] {
                done.await.expect("reported");
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), all)
            .await
            .expect("every batch reported within 10 s");
        assert_eq!(
            *reports.lock().expect("reports lock"),
            vec![(0, false), (1, false), (2, true), (3, false)]
        );
    }

    /// A log that does not exist cannot be synced: opening the store fails instead of
    /// acknowledging writes it could not make durable.
    #[test]
    fn a_missing_log_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(LogSync::start(&dir.path().join("absent-wal")).is_err());
    }
}
