//! Grouped commits: on SQLite every write runs on one writer thread, which takes all the writes
//! waiting at that moment, runs each inside its own savepoint of one transaction, and commits
//! once, so concurrent writers share a single fsync. A write's caller hears back only after the
//! commit, so an acknowledged write is durable. A failing write rolls back to its savepoint and
//! leaves the others of its batch intact. With SQLite's write-ahead log the commit itself is not
//! synced: [`LogSync`] syncs the log beside the writer and reports the commits it covers.
//!
//! PostgreSQL groups concurrent commits itself; there each write is its own transaction.

use futures::future::BoxFuture;
use sqlx::{Any, AnyConnection, AnyPool};
use tokio::sync::{mpsc, oneshot};

use super::{Result, StoreError, checkpointer::Checkpointer, log_sync::LogSync};

/// Most writes committed together; bounds the latency one batch adds to its first write.
const MAX_BATCH: usize = 256;
/// Writes waiting beyond this make callers wait for room (backpressure, bounded memory).
const QUEUE_LENGTH: usize = 4096;

/// What a write reports once its batch's commit is known.
pub(super) type Completion = Box<dyn FnOnce(Option<&StoreError>) + Send>;
/// A write: runs on the writer's connection and says whether it succeeded.
type Job =
    Box<dyn for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, (bool, Completion)> + Send>;

#[derive(Clone)]
pub(super) enum Writer {
    Grouped(mpsc::Sender<Job>),
    Direct(AnyPool),
}

impl Writer {
    /// Starts the writer on a single-connection pool (SQLite); `checkpointer` hears of each
    /// commit, and commits are reported once `log` has synced them (at once without a log: an
    /// in-memory database). The writer runs on a thread and runtime of its own: each of its
    /// round trips to the database thread would otherwise wait its turn behind request handling
    /// on the shared runtime, and every write waits for the writer.
    pub(super) fn grouped(
        pool: AnyPool,
        checkpointer: Checkpointer,
        log: Option<LogSync>,
    ) -> Result<Self> {
        let (sender, receiver) = mpsc::channel(QUEUE_LENGTH);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(StoreError::Thread)?;
        std::thread::Builder::new()
            .name("tessera-writer".to_owned())
            .spawn(move || runtime.block_on(run(pool, checkpointer, log, receiver)))
            .map_err(StoreError::Thread)?;
        Ok(Self::Grouped(sender))
    }

    /// Runs `write` in a transaction (its own, or a savepoint of a grouped one) and returns its
    /// result once committed.
    pub(super) async fn write<T, F>(&self, write: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        self.enqueue(write).await?.committed().await
    }

    /// Queues `write` and returns once it has its place in the commit order: writes enqueued
    /// one after the other run in that order. On PostgreSQL the write runs and commits here.
    pub(super) async fn enqueue<T, F>(&self, write: F) -> Result<Pending<T>>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        match self {
            Self::Direct(pool) => {
                let mut tx = pool.begin().await?;
                let value = write(&mut tx).await?;
                tx.commit().await?;
                Ok(Pending::Done(Ok(value)))
            }
            Self::Grouped(sender) => {
                let (reply, result) = oneshot::channel();
                let job: Job = Box::new(move |conn| {
                    Box::pin(async move {
                        let outcome = write(conn).await;
                        let ok = outcome.is_ok();
                        let completion: Completion = Box::new(move |commit_error| {
                            let result = match (outcome, commit_error) {
                                (Ok(value), None) => Ok(value),
                                (Ok(_), Some(e)) => Err(StoreError::CommitFailed(e.to_string())),
                                (Err(e), _) => Err(e),
                            };
                            // The caller may have gone away (request cancelled); nothing to tell.
                            let _ = reply.send(result);
                        });
                        (ok, completion)
                    })
                });
                sender
                    .send(job)
                    .await
                    .map_err(|_| StoreError::WriterUnavailable)?;
                Ok(Pending::Queued(result))
            }
        }
    }
}

/// A write that has its place in the commit order; await [`Pending::committed`] for its outcome.
pub enum Pending<T> {
    Done(Result<T>),
    Queued(oneshot::Receiver<Result<T>>),
}

impl<T> Pending<T> {
    pub async fn committed(self) -> Result<T> {
        match self {
            Self::Done(result) => result,
            Self::Queued(receiver) => receiver.await.map_err(|_| StoreError::WriterUnavailable)?,
        }
    }
}

async fn run(
    pool: AnyPool,
    checkpointer: Checkpointer,
    log: Option<LogSync>,
    mut jobs: mpsc::Receiver<Job>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut connection = None;
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let outcome = match WriterConnection::get(&pool, &mut connection).await {
            Ok(writer) => writer.commit_batch(&mut batch).await,
            Err(e) => {
                // Dropped, the jobs tell their callers the writer is unavailable.
                batch.clear();
                Err((Vec::new(), e))
            }
        };
        match &outcome {
            Ok(_) => checkpointer.committed(),
            Err((_, error)) => tracing::error!("grouped commit failed: {error}"),
        }
        match &log {
            Some(log) => log.report(outcome).await,
            None => complete(outcome),
        }
    }
}

/// A batch's completions, and the error that ended it if it did not commit.
pub(super) type BatchOutcome = std::result::Result<Vec<Completion>, (Vec<Completion>, StoreError)>;

/// Tells the batch's callers how their writes ended.
pub(super) fn complete(outcome: BatchOutcome) {
    let (completions, error) = match outcome {
        Ok(completions) => (completions, None),
        Err((completions, error)) => (completions, Some(error)),
    };
    for completion in completions {
        completion(error.as_ref());
    }
}

/// The writer's connection, taken from its pool once and kept (giving it back after each batch
/// and taking it again would cost a task hop each time), with a transaction left open for the
/// next batch: a batch ends with `COMMIT; BEGIN`, one round trip to the database thread. A
/// deferred `BEGIN` takes no lock and no snapshot until its first statement, so the idle
/// transaction holds nothing back.
struct WriterConnection {
    conn: AnyConnection,
    in_transaction: bool,
}

impl WriterConnection {
    async fn get<'w>(pool: &AnyPool, held: &'w mut Option<Self>) -> Result<&'w mut Self> {
        if held.is_none() {
            *held = Some(Self {
                conn: pool.acquire().await?.detach(),
                in_transaction: false,
            });
        }
        held.as_mut().ok_or(StoreError::WriterUnavailable)
    }

    /// Runs one batch. A job that cannot be started is dropped, which tells its caller through
    /// the closed reply channel ([`StoreError::WriterUnavailable`]). A job alone in its batch
    /// needs no savepoint (two round trips): if it fails, the transaction is rolled back.
    async fn commit_batch(&mut self, batch: &mut Vec<Job>) -> BatchOutcome {
        let mut completions = Vec::with_capacity(batch.len());
        if !self.in_transaction {
            if let Err(e) = execute(&mut self.conn, "BEGIN").await {
                return Err((completions, e));
            }
            self.in_transaction = true;
        }
        let ended = if batch.len() == 1
            && let Some(job) = batch.pop()
        {
            let (ok, completion) = job(&mut self.conn).await;
            completions.push(completion);
            self.end(if ok {
                "COMMIT; BEGIN"
            } else {
                "ROLLBACK; BEGIN"
            })
            .await
        } else {
            match in_savepoints(&mut self.conn, batch, &mut completions).await {
                Ok(()) => self.end("COMMIT; BEGIN").await,
                Err(e) => {
                    self.abandon().await;
                    Err(e)
                }
            }
        };
        match ended {
            Ok(()) => Ok(completions),
            Err(e) => Err((completions, e)),
        }
    }

    /// Ends the batch's transaction and opens the next one. On failure the batch is reported
    /// failed and the next one begins afresh. (Only a failing `BEGIN` after a good `COMMIT`
    /// would report a committed batch as failed, and a deferred `BEGIN` does not fail.)
    async fn end(&mut self, statements: &str) -> Result<()> {
        let ended = execute(&mut self.conn, statements).await;
        if ended.is_err() {
            self.abandon().await;
        }
        ended
    }

    async fn abandon(&mut self) {
        // Fails only when no transaction is open, which is what it is for.
        let _ = execute(&mut self.conn, "ROLLBACK").await;
        self.in_transaction = false;
    }
}

/// Each job in a savepoint of its own: a failing one is rolled back alone.
async fn in_savepoints(
    conn: &mut AnyConnection,
    batch: &mut Vec<Job>,
    completions: &mut Vec<Completion>,
) -> Result<()> {
    for job in batch.drain(..) {
        execute(conn, "SAVEPOINT grouped_write").await?;
        let (ok, completion) = job(conn).await;
        completions.push(completion);
        // ROLLBACK TO keeps the savepoint open, so both paths end with RELEASE.
        let end = if ok {
            "RELEASE grouped_write"
        } else {
            "ROLLBACK TO grouped_write; RELEASE grouped_write"
        };
        execute(conn, end).await?;
    }
    Ok(())
}

async fn execute(conn: &mut AnyConnection, statements: &str) -> Result<()> {
    sqlx::query(statements).execute(&mut *conn).await?;
    Ok(())
}

/// A bound value of a one-statement write.
pub(super) enum Arg {
    Text(String),
    NullableText(Option<String>),
    Int(i64),
    NullableInt(Option<i64>),
}

impl From<&str> for Arg {
    fn from(value: &str) -> Self {
        Self::Text(value.to_owned())
    }
}

impl From<String> for Arg {
    fn from(value: String) -> Self {
        Self::Text(value)
    }
}

impl From<Option<&str>> for Arg {
    fn from(value: Option<&str>) -> Self {
        Self::NullableText(value.map(str::to_owned))
    }
}

impl From<i64> for Arg {
    fn from(value: i64) -> Self {
        Self::Int(value)
    }
}

impl From<Option<String>> for Arg {
    fn from(value: Option<String>) -> Self {
        Self::NullableText(value)
    }
}

impl From<Option<i64>> for Arg {
    fn from(value: Option<i64>) -> Self {
        Self::NullableInt(value)
    }
}

/// Binds one argument of a statement built at run time.
pub(super) fn bind_arg<'q>(
    query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    arg: Arg,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
    match arg {
        Arg::Text(v) => query.bind(v),
        Arg::NullableText(v) => query.bind(v),
        Arg::Int(v) => query.bind(v),
        Arg::NullableInt(v) => query.bind(v),
    }
}

impl Writer {
    /// One statement as a write; returns the number of rows it affected.
    pub(super) async fn execute(&self, sql: &'static str, args: Vec<Arg>) -> Result<u64> {
        self.write(move |conn| {
            Box::pin(async move {
                let mut query = sqlx::query(sql);
                for arg in args {
                    query = bind_arg(query, arg);
                }
                Ok(query.execute(&mut *conn).await?.rows_affected())
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use futures::future::join_all;

    use crate::store::testing::test_store;

    /// Many concurrent writes share batches; a failing write leaves no trace and does not
    /// disturb the writes committed with it.
    #[tokio::test]
    async fn a_failed_write_rolls_back_alone_within_its_batch() {
        let (store, _db) = test_store().await;
        let writes = (0..64).map(|i| {
            let writer = store.writer.clone();
            async move {
                writer
                    .write(move |conn| {
                        Box::pin(async move {
                            sqlx::query("INSERT INTO filters (user_id, filter_id, filter) VALUES ($1, 0, '{}')")
                                .bind(format!("@u{i}:example.org"))
                                .execute(&mut *conn)
                                .await?;
                            if i % 2 == 1 {
                                sqlx::query("INSERT INTO no_such_table VALUES (1)").execute(&mut *conn).await?;
                            }
                            Ok(i)
                        })
                    })
                    .await
            }
        });
        let results = join_all(writes).await;
        for (i, result) in results.iter().enumerate() {
            assert_eq!(result.is_ok(), i % 2 == 0, "write {i}: {result:?}");
        }
        let stored: Vec<String> =
            sqlx::query_scalar("SELECT user_id FROM filters ORDER BY user_id")
                .fetch_all(&store.pool)
                .await
                .unwrap();
        let mut expected: Vec<String> = (0..64)
            .step_by(2)
            .map(|i| format!("@u{i}:example.org"))
            .collect();
        expected.sort();
        assert_eq!(stored, expected);
    }
}
