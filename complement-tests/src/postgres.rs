//! A fresh PostgreSQL database per test server, dropped again at teardown.

use reqwest::Url;
use sqlx::{Connection, PgConnection};

use crate::util::random_string;

/// One database `tessera_t_<random>` on the cluster of `TESSERA_TEST_DATABASE_URL`.
pub(crate) struct TestDatabase {
    admin_url: String,
    name: String,
    /// URL of the new database, for the server's `database.url`.
    pub(crate) url: String,
}

impl TestDatabase {
    /// Creates the database, connecting to `admin_url` (any database on the cluster).
    pub(crate) async fn create(admin_url: &str) -> Self {
        let name = format!("tessera_t_{}", random_string(16));
        let mut conn = PgConnection::connect(admin_url).await.unwrap_or_else(|e| {
            panic!("TESSERA_TEST_DATABASE_URL={admin_url}: cannot connect to PostgreSQL: {e}")
        });
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name} on {admin_url} failed: {e}"));
        // Best effort: the connection is dropped anyway.
        let _ = conn.close().await;
        let mut url = Url::parse(admin_url)
            .unwrap_or_else(|e| panic!("TESSERA_TEST_DATABASE_URL={admin_url} is not a URL: {e}"));
        url.set_path(&format!("/{name}"));
        TestDatabase {
            admin_url: admin_url.to_owned(),
            name,
            url: url.into(),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop may run inside a tokio runtime (or while unwinding from a failed test), so the
        // clean-up gets its own thread and runtime. Best effort: a leftover database is harmless.
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
            eprintln!("note: could not drop test database {}", self.name);
        }
    }
}
