//! Accounts: one row per local user.

use ruma::{DeviceId, OwnedUserId, UserId};
use sqlx::{Row, any::AnyRow};

use super::{Result, Store, StoreError, devices::delete_devices_except_in, flag};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user_id: OwnedUserId,
    pub password_hash: Option<String>,
    pub admin: bool,
    pub deactivated: bool,
}

/// Which sessions survive a password change.
pub enum KeepSessions<'a> {
    All,
    Only(&'a DeviceId),
    None,
}

pub struct NewAccount<'a> {
    pub user_id: &'a UserId,
    pub password_hash: Option<&'a str>,
    /// Stored with the account, in the same write.
    pub displayname: Option<&'a str>,
    pub admin: bool,
    pub created_ts: i64,
}

const ACCOUNT_COLUMNS: &str = "user_id, password_hash, is_admin, deactivated";

fn account_from_row(row: &AnyRow) -> Result<Account> {
    Ok(Account {
        user_id: parse_user_id(row.try_get(0)?)?,
        password_hash: row.try_get(1)?,
        admin: row.try_get::<i64, _>(2)? != 0,
        deactivated: row.try_get::<i64, _>(3)? != 0,
    })
}

pub(super) fn parse_user_id(raw: String) -> Result<OwnedUserId> {
    UserId::parse(raw.as_str()).map_err(|e| StoreError::Corrupt(format!("user id {raw:?}: {e}")))
}

impl Store {
    /// Creates the account; `false` if the user ID is taken (also by a deactivated account,
    /// whose ID is never reused).
    pub async fn create_account(&self, new: NewAccount<'_>) -> Result<bool> {
        let (user_id, hash) = (
            new.user_id.to_string(),
            new.password_hash.map(str::to_owned),
        );
        let (admin, created_ts) = (flag(new.admin), new.created_ts);
        let displayname = new
            .displayname
            .map(|name| serde_json::Value::from(name).to_string());
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    let created = sqlx::query(
                        "INSERT INTO users (user_id, password_hash, is_admin, deactivated, created_ts) \
                         VALUES ($1, $2, $3, 0, $4) ON CONFLICT (user_id) DO NOTHING",
                    )
                    .bind(&user_id)
                    .bind(hash)
                    .bind(admin)
                    .bind(created_ts)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected()
                        == 1;
                    if let (true, Some(displayname)) = (created, displayname) {
                        sqlx::query(
                            "INSERT INTO profile_fields (user_id, field, value) VALUES ($1, 'displayname', $2)",
                        )
                        .bind(&user_id)
                        .bind(displayname)
                        .execute(&mut *conn)
                        .await?;
                    }
                    Ok(created)
                })
            })
            .await
    }

    pub async fn account(&self, user_id: &UserId) -> Result<Option<Account>> {
        let row = sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM users WHERE user_id = $1"
        ))
        .bind(user_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(account_from_row).transpose()
    }

    pub async fn accounts(&self) -> Result<Vec<Account>> {
        let rows = sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM users ORDER BY user_id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(account_from_row).collect()
    }

    pub async fn account_count(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Sets the password hash and ends the sessions `keep` does not keep, in one write, so a
    /// password changed after a compromise never leaves the intruder's sessions behind.
    /// `false` if there is no such active account.
    pub async fn set_password_hash(
        &self,
        user_id: &UserId,
        password_hash: &str,
        keep: KeepSessions<'_>,
    ) -> Result<bool> {
        let (user_id, hash) = (user_id.to_string(), password_hash.to_owned());
        let keep = match keep {
            KeepSessions::All => None,
            KeepSessions::Only(device_id) => Some(Some(device_id.to_string())),
            KeepSessions::None => Some(None),
        };
        let (updated, position) = self
            .revoking_write(move |conn| {
                Box::pin(async move {
                    let updated = sqlx::query(
                        "UPDATE users SET password_hash = $2 WHERE user_id = $1 AND deactivated = 0",
                    )
                    .bind(&user_id)
                    .bind(hash)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                    if updated == 0 {
                        return Ok((false, None));
                    }
                    let position = match keep {
                        Some(keep) => delete_devices_except_in(conn, &user_id, keep.as_deref()).await?,
                        None => None,
                    };
                    Ok((true, position))
                })
            })
            .await?;
        self.device_lists_moved(position);
        Ok(updated)
    }

    /// Marks the account deactivated and removes its password, devices, sessions and profile,
    /// all in one transaction. `false` if there is no such active account.
    pub async fn deactivate_account(&self, user_id: &UserId) -> Result<bool> {
        let user_id = user_id.to_string();
        let (deactivated, position) = self
            .revoking_write(move |conn| {
                Box::pin(async move {
                    let result = sqlx::query(
                        "UPDATE users SET deactivated = 1, password_hash = NULL \
                         WHERE user_id = $1 AND deactivated = 0",
                    )
                    .bind(&user_id)
                    .execute(&mut *conn)
                    .await?;
                    if result.rows_affected() == 0 {
                        return Ok((false, None));
                    }
                    let position = delete_devices_except_in(conn, &user_id, None).await?;
                    for table in ["login_tokens", "profile_fields"] {
                        sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                            .bind(&user_id)
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok((true, position))
                })
            })
            .await?;
        self.device_lists_moved(position);
        Ok(deactivated)
    }
}

#[cfg(test)]
mod tests {
    use ruma::user_id;

    use super::*;
    use crate::store::testing::test_store;

    #[tokio::test]
    async fn create_is_unique_and_deactivation_keeps_the_id_taken() {
        let (store, _db) = test_store().await;
        let alice = user_id!("@alice:example.org");
        let new = || NewAccount {
            user_id: alice,
            password_hash: Some("h"),
            displayname: None,
            admin: false,
            created_ts: 1,
        };
        assert!(store.create_account(new()).await.unwrap());
        assert!(!store.create_account(new()).await.unwrap());
        assert!(store.deactivate_account(alice).await.unwrap());
        let account = store.account(alice).await.unwrap().unwrap();
        assert!(account.deactivated);
        assert_eq!(account.password_hash, None);
        assert!(!store.create_account(new()).await.unwrap());
        assert!(
            !store
                .set_password_hash(alice, "x", KeepSessions::All)
                .await
                .unwrap()
        );
    }
}
