//! The only place with SQL. One API over SQLite (embedded default) and PostgreSQL.
//!
//! Queries are written once in the dialect both backends share (`$N` placeholders, `ON CONFLICT`,
//! `RETURNING`) and run through sqlx's `Any` driver. SQLite gets a dedicated single-connection
//! writer pool so that writers queue in-process instead of contending for the file lock.

mod account_data;
mod accounts;
mod aliases;
mod checkpointer;
mod dehydrated_devices;
mod device_lists;
mod devices;
mod directory;
mod e2e_keys;
mod event_row_cache;
mod event_writer;
mod federation_queue;
mod filters;
mod ignored_users;
mod im;
mod key_backup;
mod log_sync;
mod media;
mod out_of_band;
mod positions;
mod presence;
mod profiles;
mod push;
mod receipts;
mod relations;
mod rooms;
mod search;
mod server_keys;
mod state_group_cache;
mod statements;
mod sync;
mod to_device;
mod token_cache;
mod tokens;
mod transaction_filter;
mod unread_cache;
mod writer;

use std::{str::FromStr, sync::Arc, time::Duration};

use sqlx::{
    AnyPool,
    any::AnyPoolOptions,
    migrate::{MigrateError, Migrator},
};

pub use account_data::AccountDataEntry;
pub use accounts::{Account, KeepSessions, NewAccount};
use checkpointer::Checkpointer;
pub use dehydrated_devices::NewDehydratedDevice;
pub use devices::{Device, NewSession};
pub use directory::{DirectoryPosition, RoomStateJson};
pub use e2e_keys::{
    ClaimedKey, KeyClaim, KeyUpload, StoredDeviceKeys, StoredSignature, UploadedKey,
};
use event_writer::EventWriter;
pub use ignored_users::{IGNORED_USER_LIST, IgnoredUsers};
pub use im::{FriendRequestRow, MomentRow, MuteRow};
pub use key_backup::{
    BackupKey, BackupKeyScope, BackupKeysState, BackupVersion, PutBackupKeys, ReplaceRule,
};
use log_sync::LogSync;
pub use media::{MediaRow, NewMedia, ThumbnailRow};
pub use out_of_band::{OutOfBandMembership, OutOfBandRoom, PendingMembership};
pub use presence::StoredPresence;
pub use push::{PushNotification, UnreadPushCount};
pub use receipts::{NewReceipt, Receipt};
pub use relations::{ChildRelation, RelationsQuery, ThreadRoot, ThreadSummary};
pub use rooms::{
    AfterCommit, EventBatch, EventRow, NewEventRow, NewRoom, NewStateGroup, OutlierWithState,
    PushActionRow, ResolvedState, StateEntry, StoredRoom,
};
pub use search::{SEARCH_KEYS, SearchHit, SearchOrder, SearchPosition, SearchQuery};
pub use server_keys::StoredServerKey;
pub use sync::{MemberCounts, MembershipRow};
pub use to_device::{OutgoingToDevice, ToDeviceMessage};
pub use token_cache::TOKEN_CACHE_TTL;
pub use tokens::{AccessTokenInfo, ShortLivedToken};
use transaction_filter::TransactionFilter;
pub use writer::Pending;
use writer::Writer;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error(
        "the database schema is at version {found}, newer than this binary knows (up to {known}); \
         run a newer tessera or restore a backup"
    )]
    SchemaTooNew { found: i64, known: i64 },
    #[error("database migration failed: {0}")]
    Migration(MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("the write was not committed: {0}")]
    CommitFailed(String),
    #[error("SQLite kept the journal mode {0:?} instead of WAL; the database file must allow WAL")]
    NoWriteAheadLog(String),
    #[error("cannot open the database's write-ahead log: {0}")]
    LogFile(std::io::Error),
    #[error("cannot start a database thread: {0}")]
    Thread(std::io::Error),
    #[error("the database writer could not run this write")]
    WriterUnavailable,
    #[error("too much contention on {0}; try again")]
    Contention(&'static str),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    /// Reads.
    pool: AnyPool,
    /// The connections writes use: on SQLite a single one; on PostgreSQL the read pool.
    writer_pool: AnyPool,
    /// SQLite's WAL checkpoints, off the writer's connection.
    checkpointer: Option<Checkpointer>,
    writer: Writer,
    /// For the few queries whose SQL differs between the backends (full-text search).
    backend: Backend,
    /// Coalesces room event writes (SQLite); PostgreSQL writes each batch in its own transaction.
    event_writer: Option<EventWriter>,
    token_cache: Arc<token_cache::TokenCache>,
    ignored_users: Arc<ignored_users::IgnoredUsersCache>,
    unread_counts: Arc<unread_cache::UnreadCache>,
    state_groups: Arc<state_group_cache::StateGroupCache>,
    event_rows: Arc<event_row_cache::EventRowCache>,
    positions: Arc<positions::StreamPositions>,
    to_device_inboxes: Arc<to_device::Inboxes>,
    /// Transaction IDs certainly never used (SQLite only: see the module).
    transaction_filter: Option<Arc<TransactionFilter>>,
}

impl Store {
    /// Connects, creating the SQLite file if needed, and brings the schema up to date.
    pub async fn open(url: &str, max_connections: u32) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if url.starts_with("sqlite:") {
            (Backend::Sqlite, sqlite_url(url))
        } else {
            (Backend::Postgres, url.to_owned())
        };
        let (pool, writer_pool, checkpointer) = match backend {
            Backend::Sqlite => {
                let writer_pool = sqlite_pool_options(1, WRITER_PRAGMAS)
                    .max_lifetime(None)
                    .idle_timeout(None)
                    .connect(&url)
                    .await?;
                (
                    sqlite_pool_options(max_connections, &[])
                        .connect(&url)
                        .await?,
                    writer_pool,
                    Some(Checkpointer::start(
                        sqlite_pool_options(1, &[]).connect(&url).await?,
                    )),
                )
            }
            Backend::Postgres => {
                let pool = pool_options(max_connections).connect(&url).await?;
                (pool.clone(), pool, None)
            }
        };
        migrate(backend, &writer_pool).await?;
        // SQLite: grouped commits on one writer, event batches coalesced, transaction IDs
        // filtered in memory; PostgreSQL: each write its own transaction.
        let (writer, event_writer, transaction_filter) = match &checkpointer {
            Some(checkpointer) => {
                let log = write_ahead_log(&url, &writer_pool).await?;
                let writer = Writer::grouped(writer_pool.clone(), checkpointer.clone(), log)?;
                (
                    writer.clone(),
                    Some(EventWriter::new(writer)),
                    Some(transaction_filter(&pool).await?),
                )
            }
            None => (Writer::Direct(writer_pool.clone()), None, None),
        };
        let positions = Arc::new(positions::StreamPositions::load(&pool).await?);
        let to_device_inboxes = Arc::new(to_device::Inboxes::load(&pool).await?);
        Ok(Self {
            pool,
            writer_pool,
            checkpointer,
            writer,
            backend,
            event_writer,
            token_cache: Arc::default(),
            ignored_users: Arc::default(),
            unread_counts: Arc::default(),
            state_groups: Arc::default(),
            event_rows: Arc::default(),
            positions,
            to_device_inboxes,
            transaction_filter,
        })
    }

    /// A write that may delete or replace access tokens: the token cache forgets everything
    /// once it is done.
    async fn revoking_write<T, F>(&self, write: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut sqlx::AnyConnection) -> futures::future::BoxFuture<'c, Result<T>>
            + Send
            + 'static,
    {
        let outcome = self.writer.write(write).await;
        self.token_cache.clear();
        outcome
    }

    /// Returns once every write queued before it has committed (or failed).
    pub async fn barrier(&self) -> Result<()> {
        if let Some(event_writer) = &self.event_writer {
            event_writer.barrier().await?;
        }
        self.writer.write(|_| Box::pin(async { Ok(()) })).await
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.writer_pool.close().await;
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.close().await;
        }
    }
}

fn migrator(backend: Backend) -> &'static Migrator {
    match backend {
        Backend::Sqlite => &SQLITE_MIGRATIONS,
        Backend::Postgres => &POSTGRES_MIGRATIONS,
    }
}

async fn migrate(backend: Backend, pool: &AnyPool) -> Result<()> {
    let migrator = migrator(backend);
    match migrator.run(pool).await {
        Ok(()) => Ok(()),
        Err(MigrateError::VersionMissing(found)) => Err(StoreError::SchemaTooNew {
            found,
            known: migrator.iter().map(|m| m.version).max().unwrap_or_default(),
        }),
        Err(e) => Err(StoreError::Migration(e)),
    }
}

fn pool_options(max_connections: u32) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(30))
}

/// Reads map the database file instead of copying each page out of the kernel's cache into
/// every connection's own: an initial sync of hundreds of rooms touches thousands of pages. Writes
/// still go through the journal as before.
const MMAP_SIZE: &str = "PRAGMA mmap_size = 1073741824";

/// A connection to a local file does not go stale: checking it before each use (a round trip
/// to its thread) would only slow every query down. Temporary storage stays in memory: each
/// grouped write runs in savepoints, whose sub-journals would otherwise be a temporary file
/// created, written and deleted on every commit. `pragmas` run on each new connection after
/// those.
fn sqlite_pool_options(max_connections: u32, pragmas: &'static [&'static str]) -> AnyPoolOptions {
    pool_options(max_connections)
        .test_before_acquire(false)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                for pragma in ["PRAGMA temp_store = MEMORY", MMAP_SIZE]
                    .iter()
                    .chain(pragmas)
                {
                    sqlx::query(pragma).execute(&mut *conn).await?;
                }
                Ok(())
            })
        })
}

/// The writer's connection. WAL lets readers run beside the writer (it is persistent in the
/// file); commits are not synced by SQLite but by [`LogSync`], beside the writer.
const WRITER_PRAGMAS: &[&str] = &[
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    checkpointer::WRITER_CHECKPOINT_PAGES,
];

/// A filter sized for the transaction IDs stored, filled in the background: a large table takes
/// a while to read, and until it is read the filter sends every question to the database.
async fn transaction_filter(pool: &AnyPool) -> Result<Arc<TransactionFilter>> {
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM event_transactions")
        .fetch_one(pool)
        .await?;
    let filter = Arc::new(TransactionFilter::with_capacity(
        u64::try_from(stored).unwrap_or_default(),
    ));
    let (loading, pool) = (filter.clone(), pool.clone());
    tokio::spawn(async move {
        if let Err(e) = loading.load(&pool).await {
            tracing::warn!("transaction IDs not loaded, each send asks the database: {e}");
        }
    });
    Ok(filter)
}

/// Starts syncing the database's write-ahead log. An in-memory database has none (and nothing to
/// make durable); a file whose log could not be turned on is refused, as its unsynced commits
/// could be torn by a crash.
async fn write_ahead_log(url: &str, writer_pool: &AnyPool) -> Result<Option<LogSync>> {
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(writer_pool)
        .await?;
    match mode.to_ascii_lowercase().as_str() {
        "wal" => {
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)?;
            let mut log = options.get_filename().as_os_str().to_owned();
            log.push("-wal");
            Ok(Some(LogSync::start(std::path::Path::new(&log))?))
        }
        "memory" => Ok(None),
        other => Err(StoreError::NoWriteAheadLog(other.to_owned())),
    }
}

/// Ensures the SQLite file is created on first open (`mode=rwc`).
fn sqlite_url(url: &str) -> String {
    match sqlx::sqlite::SqliteConnectOptions::from_str(url) {
        Ok(_) if url.contains("mode=") => url.to_owned(),
        _ if url.contains('?') => format!("{url}&mode=rwc"),
        _ => format!("{url}?mode=rwc"),
    }
}

/// Most identifiers bound in one `IN (...)` list: well under both backends' parameter limits.
const MAX_BOUND_IDS: usize = 256;

/// `$from, $from+1, ...`: `count` numbered placeholders, for `IN (...)` lists.
fn placeholders(from: usize, count: usize) -> String {
    (from..from + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Rooms per statement of per-room subqueries ([`per_room_union`]).
const ROOMS_PER_UNION: usize = 100;

/// `subquery(0) UNION ALL subquery(1) ...` for `rooms` rooms, each a derived table so that its
/// own `ORDER BY ... LIMIT` holds (both backends): the first rows of many rooms in one statement.
fn per_room_union(rooms: usize, subquery: impl Fn(usize) -> String) -> String {
    (0..rooms)
        .map(|i| format!("SELECT * FROM ({}) AS room{i}", subquery(i)))
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

/// `($1, ..., $columns), ($columns+1, ...)`: the placeholders of a multi-row `VALUES` list.
fn row_placeholders(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|row| format!("({})", placeholders(row * columns + 1, columns)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An identifier read back from the database; one that does not parse means the data is corrupt.
fn stored_id<T>(text: String) -> Result<T>
where
    T: TryFrom<String>,
    T::Error: std::fmt::Display,
{
    T::try_from(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Booleans are stored as 0/1 integers: the one representation both backends decode alike
/// through the `Any` driver.
fn flag(value: bool) -> i64 {
    i64::from(value)
}

#[cfg(test)]
pub(crate) mod testing {
    use rand::{Rng, distributions::Alphanumeric};
    use sqlx::{Connection, PgConnection};

    use super::Store;

    /// Where a test store lives; removed when dropped.
    pub enum TestDatabase {
        Sqlite {
            _dir: tempfile::TempDir,
            url: String,
        },
        Postgres {
            admin_url: String,
            name: String,
            url: String,
        },
    }

    impl TestDatabase {
        pub fn url(&self) -> &str {
            match self {
                Self::Sqlite { url, .. } | Self::Postgres { url, .. } => url,
            }
        }
    }

    impl Drop for TestDatabase {
        fn drop(&mut self) {
            let Self::Postgres {
                admin_url, name, ..
            } = self
            else {
                return;
            };
            let (admin_url, sql) = (
                admin_url.clone(),
                format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            );
            // Drop runs inside the test's runtime; the clean-up needs a runtime of its own.
            let cleanup = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                runtime.block_on(async {
                    let mut conn = PgConnection::connect(&admin_url).await.ok()?;
                    sqlx::raw_sql(&sql).execute(&mut conn).await.ok()?;
                    conn.close().await.ok()
                })
            });
            if cleanup.join().ok().flatten().is_none() {
                eprintln!("note: could not drop test database {name}");
            }
        }
    }

    /// A fresh, migrated store: PostgreSQL when `TESSERA_TEST_DATABASE_URL` names a cluster
    /// (a new database per test), SQLite in a temporary directory otherwise.
    pub async fn test_store() -> (Store, TestDatabase) {
        let db = match std::env::var("TESSERA_TEST_DATABASE_URL") {
            Ok(admin_url) if !admin_url.is_empty() => {
                let suffix: String = rand::thread_rng()
                    .sample_iter(&Alphanumeric)
                    .take(16)
                    .map(|b| char::from(b).to_ascii_lowercase())
                    .collect();
                let name = format!("tessera_t_unit_{suffix}");
                let mut conn = PgConnection::connect(&admin_url)
                    .await
                    .expect("connect to PostgreSQL");
                sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .expect("create database");
                let base = admin_url
                    .rsplit_once('/')
                    .map_or(admin_url.as_str(), |(base, _)| base);
                let url = format!("{base}/{name}");
                TestDatabase::Postgres {
                    admin_url,
                    name,
                    url,
                }
            }
            _ => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let url = format!("sqlite://{}", dir.path().join("t.db").display());
                TestDatabase::Sqlite { _dir: dir, url }
            }
        };
        let store = Store::open(db.url(), 4).await.expect("open test store");
        (store, db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The writer leaves syncing to the log thread; readers keep SQLite's defaults. The
    /// settings hold for the writer's connection itself, not just the first statement's.
    #[tokio::test]
    async fn the_sqlite_writer_commits_to_a_log_synced_beside_it() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::open(&url, 2).await.expect("open");
        let number = |pool: AnyPool, pragma: &'static str| async move {
            sqlx::query_scalar::<_, i64>(pragma)
                .fetch_one(&pool)
                .await
                .expect(pragma)
        };
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&store.writer_pool)
            .await
            .expect("journal mode");
        assert_eq!(mode, "wal");
        let writer = store.writer_pool.clone();
        assert_eq!(number(writer.clone(), "PRAGMA synchronous").await, 1);
        assert_eq!(number(writer, "PRAGMA wal_autocheckpoint").await, 16384);
        assert_eq!(number(store.pool.clone(), "PRAGMA synchronous").await, 2);
        assert!(dir.path().join("t.db-wal").exists());
        store.close().await;
    }

    #[tokio::test]
    async fn migrations_record_the_schema_version() {
        let (store, _db) = testing::test_store().await;
        let latest = SQLITE_MIGRATIONS.iter().map(|m| m.version).max().unwrap();
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_one(&store.pool)
                .await
                .unwrap();
        assert_eq!(applied, Some(latest));
    }

    #[tokio::test]
    async fn a_newer_schema_is_refused() {
        let (store, db) = testing::test_store().await;
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (9999, 'from the future', TRUE, $1, 0)",
        )
        .bind(vec![0u8])
        .execute(&store.writer_pool)
        .await
        .unwrap();
        store.close().await;
        match Store::open(db.url(), 2).await {
            Err(StoreError::SchemaTooNew { found: 9999, known }) => {
                assert_eq!(
                    known,
                    SQLITE_MIGRATIONS.iter().map(|m| m.version).max().unwrap()
                );
            }
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("a newer schema must be refused"),
        }
    }
}
