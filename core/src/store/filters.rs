//! Stored sync filters, numbered per user.

use ruma::UserId;

use super::{Result, Store, StoreError};

/// Tries at allocating a filter ID before giving up under contention.
const FILTER_ID_ATTEMPTS: usize = 8;

impl Store {
    /// Stores the filter (canonical JSON text) and returns its ID; storing the same filter again
    /// returns the existing ID, as Synapse does, so clients that re-upload on every start do not
    /// grow the table.
    pub async fn create_filter(&self, user_id: &UserId, filter: &str) -> Result<i64> {
        let (user_id, filter) = (user_id.to_string(), filter.to_owned());
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    // Locks the user's row (PostgreSQL) so one user's uploads allocate IDs one
                    // at a time; SQLite's single writer serializes them anyway.
                    sqlx::query("UPDATE users SET is_admin = is_admin WHERE user_id = $1")
                        .bind(&user_id)
                        .execute(&mut *conn)
                        .await?;
                    let existing: Option<i64> = sqlx::query_scalar(
                        "SELECT filter_id FROM filters WHERE user_id = $1 AND filter = $2",
                    )
                    .bind(&user_id)
                    .bind(&filter)
                    .fetch_optional(&mut *conn)
                    .await?;
                    if let Some(id) = existing {
                        return Ok(id);
                    }
                    // Without an account row there is no lock: two uploads may pick the same
                    // next ID, and the loser sees the conflict and picks again.
                    for _ in 0..FILTER_ID_ATTEMPTS {
                        let id: Option<i64> = sqlx::query_scalar(
                            "INSERT INTO filters (user_id, filter_id, filter) \
                             SELECT $1, COALESCE(MAX(filter_id) + 1, 0), $2 FROM filters WHERE user_id = $1 \
                             ON CONFLICT (user_id, filter_id) DO NOTHING RETURNING filter_id",
                        )
                        .bind(&user_id)
                        .bind(&filter)
                        .fetch_optional(&mut *conn)
                        .await?;
                        if let Some(id) = id {
                            return Ok(id);
                        }
                    }
                    Err(StoreError::Contention("filter id allocation"))
                })
            })
            .await
    }

    pub async fn filter(&self, user_id: &UserId, filter_id: i64) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT filter FROM filters WHERE user_id = $1 AND filter_id = $2")
                .bind(user_id.as_str())
                .bind(filter_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}

#[cfg(test)]
mod tests {
    use ruma::user_id;

    use crate::store::testing::test_store;

    #[tokio::test]
    async fn filter_ids_count_per_user_and_dedupe() {
        let (store, _db) = test_store().await;
        let alice = user_id!("@alice:example.org");
        let bob = user_id!("@bob:example.org");
        assert_eq!(store.create_filter(alice, "{\"a\":1}").await.unwrap(), 0);
        assert_eq!(store.create_filter(alice, "{\"a\":2}").await.unwrap(), 1);
        assert_eq!(store.create_filter(alice, "{\"a\":1}").await.unwrap(), 0);
        assert_eq!(store.create_filter(bob, "{\"a\":2}").await.unwrap(), 0);
        assert_eq!(
            store.filter(alice, 1).await.unwrap().as_deref(),
            Some("{\"a\":2}")
        );
        assert_eq!(store.filter(bob, 1).await.unwrap(), None);
    }

    #[tokio::test]
    async fn concurrent_uploads_get_distinct_ids() {
        let (store, _db) = test_store().await;
        let alice = user_id!("@alice:example.org");
        let account = crate::store::NewAccount {
            user_id: alice,
            password_hash: None,
            displayname: None,
            admin: false,
            created_ts: 1,
        };
        assert!(store.create_account(account).await.unwrap());
        let uploads = (0..32).map(|i| {
            let store = store.clone();
            async move { store.create_filter(alice, &format!("{{\"n\":{i}}}")).await }
        });
        let mut ids: Vec<i64> = futures::future::join_all(uploads)
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
        ids.sort_unstable();
        assert_eq!(ids, (0..32).collect::<Vec<_>>());
    }
}
