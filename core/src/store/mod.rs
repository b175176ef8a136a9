//! The only place with SQL. One API over SQLite (embedded default) and PostgreSQL.
//!
//! Queries are written once in the dialect both backends share (`$N` placeholders, `ON CONFLICT`,
//! `RETURNING`) and run through sqlx's `Any` driver. SQLite gets a dedicated single-connection
//! writer pool so that writers queue in-process instead of contending for the file lock.

mod account_data;
mod accounts;
mod devices;
mod filters;
mod profiles;
mod tokens;

use std::{str::FromStr, time::Duration};

use sqlx::{
    AnyPool,
    any::AnyPoolOptions,
    migrate::{MigrateError, Migrator},
};

pub use accounts::{Account, NewAccount};
pub use devices::{Device, NewSession};
pub use tokens::AccessTokenInfo;

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
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    /// Reads (and, on PostgreSQL, writes).
    pool: AnyPool,
    /// Writes. On SQLite a single connection; on PostgreSQL the same pool as `pool`.
    writer: AnyPool,
    backend: Backend,
}

impl Store {
    /// Connects, creating the SQLite file if needed, and brings the schema up to date.
    pub async fn open(url: &str, max_connections: u32) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let store = match backend {
            Backend::Sqlite => {
                let url = sqlite_url(url);
                let writer = pool_options(1).connect(&url).await?;
                // WAL lets readers run beside the writer; it is persistent in the file.
                sqlx::query("PRAGMA journal_mode = WAL")
                    .execute(&writer)
                    .await?;
                let pool = pool_options(max_connections).connect(&url).await?;
                Self {
                    pool,
                    writer,
                    backend,
                }
            }
            Backend::Postgres => {
                let pool = pool_options(max_connections).connect(url).await?;
                Self {
                    writer: pool.clone(),
                    pool,
                    backend,
                }
            }
        };
        store.migrate().await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    fn migrator(&self) -> &'static Migrator {
        match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    async fn migrate(&self) -> Result<()> {
        let migrator = self.migrator();
        match migrator.run(&self.writer).await {
            Ok(()) => Ok(()),
            Err(MigrateError::VersionMissing(found)) => Err(StoreError::SchemaTooNew {
                found,
                known: migrator.iter().map(|m| m.version).max().unwrap_or_default(),
            }),
            Err(e) => Err(StoreError::Migration(e)),
        }
    }

    /// The newest schema version applied to the database.
    pub async fn schema_version(&self) -> Result<i64> {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_one(&self.pool)
                .await?;
        Ok(version.unwrap_or_default())
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }
}

fn pool_options(max_connections: u32) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(30))
}

/// Ensures the SQLite file is created on first open (`mode=rwc`).
fn sqlite_url(url: &str) -> String {
    match sqlx::sqlite::SqliteConnectOptions::from_str(url) {
        Ok(_) if url.contains("mode=") => url.to_owned(),
        _ if url.contains('?') => format!("{url}&mode=rwc"),
        _ => format!("{url}?mode=rwc"),
    }
}

/// Booleans are stored as 0/1 integers: the one representation both backends decode alike
/// through the `Any` driver.
fn flag(value: bool) -> i64 {
    i64::from(value)
}

#[cfg(test)]
pub(crate) mod testing {
    use super::Store;

    /// A fresh SQLite store in a temporary directory (kept alive by the returned guard).
    pub async fn sqlite_store() -> (Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        (Store::open(&url, 4).await.unwrap(), dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn migrations_record_the_schema_version() {
        let (store, _dir) = testing::sqlite_store().await;
        assert_eq!(store.schema_version().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_newer_schema_is_refused() {
        let (store, dir) = testing::sqlite_store().await;
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (9999, 'from the future', TRUE, x'00', 0)",
        )
        .execute(&store.writer)
        .await
        .unwrap();
        store.close().await;
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        match Store::open(&url, 2).await {
            Err(StoreError::SchemaTooNew {
                found: 9999,
                known: 1,
            }) => {}
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("a newer schema must be refused"),
        }
    }
}
