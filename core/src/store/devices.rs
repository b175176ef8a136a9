//! Devices and the sessions (access and refresh tokens) that belong to them.

use ruma::{DeviceId, OwnedDeviceId, UserId};
use sqlx::{AnyConnection, Row, any::AnyRow};

use super::{Result, Store, device_lists::record_device_list_changes};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub device_id: OwnedDeviceId,
    pub display_name: Option<String>,
    pub last_seen_ts: Option<i64>,
    pub last_seen_ip: Option<String>,
}

/// A login: the device it is for (created if new) and its tokens, as hashes.
pub struct NewSession<'a> {
    pub user_id: &'a UserId,
    pub device_id: &'a DeviceId,
    /// Only applied when the device is new: logging in again keeps the name a user gave it.
    pub display_name: Option<&'a str>,
    pub access_token_hash: &'a str,
    pub refresh_token_hash: Option<&'a str>,
    pub expires_ts: Option<i64>,
    pub now_ts: i64,
    pub ip: Option<&'a str>,
    /// The password hash the login was checked against, if it was a password login: the
    /// session is only created if the account still has it.
    pub verified_password_hash: Option<&'a str>,
}

const DEVICE_COLUMNS: &str = "device_id, display_name, last_seen_ts, last_seen_ip";

fn device_from_row(row: &AnyRow) -> Result<Device> {
    Ok(Device {
        device_id: row.try_get::<String, _>(0)?.into(),
        display_name: row.try_get(1)?,
        last_seen_ts: row.try_get(2)?,
        last_seen_ip: row.try_get(3)?,
    })
}

pub(super) async fn delete_device_rows(
    conn: &mut AnyConnection,
    user_id: &str,
    device_id: &str,
    tables: &[&str],
) -> Result<u64> {
    let mut deleted = 0;
    for table in tables {
        deleted = sqlx::query(&format!(
            "DELETE FROM {table} WHERE user_id = $1 AND device_id = $2"
        ))
        .bind(user_id)
        .bind(device_id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    }
    Ok(deleted)
}

const SESSION_TABLES: [&str; 2] = ["access_tokens", "refresh_tokens"];
/// A device's sessions, keys, to-device inbox and sent transaction IDs go with it. Devices
/// last, so the count returned is that of deleted devices.
pub(super) const DEVICE_TABLES: [&str; 9] = [
    "access_tokens",
    "refresh_tokens",
    "e2e_device_keys",
    "e2e_one_time_keys",
    "e2e_fallback_keys",
    "to_device_messages",
    "to_device_transactions",
    "dehydrated_devices",
    "devices",
];

impl Store {
    /// Creates or reuses the device and gives it a fresh session. Logging in with an existing
    /// device ID revokes that device's previous tokens (spec: "Log in", `device_id`).
    ///
    /// `false`, and nothing written, if the account was deactivated or its password changed
    /// since the login was checked: a login racing a deactivation or a password reset must not
    /// leave a session behind. The no-op UPDATE also locks the account row on PostgreSQL, so
    /// the check and the insert are atomic against those writes.
    pub async fn create_session(&self, session: NewSession<'_>) -> Result<bool> {
        let (user_id, device_id) = (session.user_id.to_string(), session.device_id.to_string());
        let display_name = session.display_name.map(str::to_owned);
        let (now_ts, ip) = (session.now_ts, session.ip.map(str::to_owned));
        let access_hash = session.access_token_hash.to_owned();
        let refresh_hash = session.refresh_token_hash.map(str::to_owned);
        let expires_ts = session.expires_ts;
        let verified_hash = session.verified_password_hash.map(str::to_owned);
        self.revoking_write(move |conn| {
                Box::pin(async move {
                    let still_valid = match verified_hash {
                        Some(hash) => sqlx::query(
                            "UPDATE users SET deactivated = deactivated \
                             WHERE user_id = $1 AND deactivated = 0 AND password_hash = $2",
                        )
                        .bind(&user_id)
                        .bind(hash),
                        None => sqlx::query(
                            "UPDATE users SET deactivated = deactivated \
                             WHERE user_id = $1 AND deactivated = 0",
                        )
                        .bind(&user_id),
                    }
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                    if still_valid == 0 {
                        return Ok(false);
                    }
                    sqlx::query(
                        "INSERT INTO devices (user_id, device_id, display_name, last_seen_ts, last_seen_ip) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, device_id) \
                         DO UPDATE SET last_seen_ts = excluded.last_seen_ts, last_seen_ip = excluded.last_seen_ip",
                    )
                    .bind(&user_id)
                    .bind(&device_id)
                    .bind(display_name)
                    .bind(now_ts)
                    .bind(ip)
                    .execute(&mut *conn)
                    .await?;
                    delete_device_rows(conn, &user_id, &device_id, &SESSION_TABLES).await?;
                    sqlx::query(
                        "INSERT INTO access_tokens (token_hash, user_id, device_id, expires_ts) \
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(access_hash)
                    .bind(&user_id)
                    .bind(&device_id)
                    .bind(expires_ts)
                    .execute(&mut *conn)
                    .await?;
                    if let Some(refresh_hash) = refresh_hash {
                        sqlx::query(
                            "INSERT INTO refresh_tokens (token_hash, user_id, device_id) VALUES ($1, $2, $3)",
                        )
                        .bind(refresh_hash)
                        .bind(&user_id)
                        .bind(&device_id)
                        .execute(&mut *conn)
                        .await?;
                    }
                    Ok(true)
                })
            })
            .await
    }

    pub async fn devices(&self, user_id: &UserId) -> Result<Vec<Device>> {
        let rows = sqlx::query(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE user_id = $1 ORDER BY device_id"
        ))
        .bind(user_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(device_from_row).collect()
    }

    pub async fn device(&self, user_id: &UserId, device_id: &DeviceId) -> Result<Option<Device>> {
        let row = sqlx::query(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE user_id = $1 AND device_id = $2"
        ))
        .bind(user_id.as_str())
        .bind(device_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(device_from_row).transpose()
    }

    /// `false` if there is no such device. A new name is a device list change: other users
    /// show device names.
    pub async fn rename_device(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        display_name: &str,
    ) -> Result<bool> {
        let (user_id, device_id, display_name) = (
            user_id.to_string(),
            device_id.to_string(),
            display_name.to_owned(),
        );
        let position = self
            .writer
            .write(move |conn| {
                Box::pin(async move {
                    let renamed = sqlx::query(
                        "UPDATE devices SET display_name = $3 WHERE user_id = $1 AND device_id = $2",
                    )
                    .bind(&user_id)
                    .bind(&device_id)
                    .bind(&display_name)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                    if renamed == 0 {
                        return Ok(None);
                    }
                    Ok(Some(record_device_list_changes(conn, &[&user_id]).await?))
                })
            })
            .await?;
        self.device_lists_moved(position);
        Ok(position.is_some())
    }

    /// Deletes the devices and their sessions in one transaction; unknown IDs are skipped.
    /// Returns how many devices existed.
    pub async fn delete_devices(
        &self,
        user_id: &UserId,
        device_ids: &[OwnedDeviceId],
    ) -> Result<u64> {
        let user_id = user_id.to_string();
        let device_ids = device_ids.to_vec();
        let (deleted, position) = self
            .revoking_write(move |conn| {
                Box::pin(async move {
                    let mut deleted = 0;
                    for device_id in &device_ids {
                        deleted +=
                            delete_device_rows(conn, &user_id, device_id.as_str(), &DEVICE_TABLES)
                                .await?;
                    }
                    let position = if deleted > 0 {
                        Some(record_device_list_changes(conn, &[&user_id]).await?)
                    } else {
                        None
                    };
                    Ok((deleted, position))
                })
            })
            .await?;
        self.device_lists_moved(position);
        Ok(deleted)
    }

    /// Deletes every device of the user except `keep` (all of them when `keep` is `None`).
    pub async fn delete_devices_except(
        &self,
        user_id: &UserId,
        keep: Option<&DeviceId>,
    ) -> Result<()> {
        let user_id = user_id.to_string();
        let keep = keep.map(|d| d.to_string());
        let position = self
            .revoking_write(move |conn| {
                Box::pin(
                    async move { delete_devices_except_in(conn, &user_id, keep.as_deref()).await },
                )
            })
            .await?;
        self.device_lists_moved(position);
        Ok(())
    }
}

/// Deletes every device of the user but `keep`, with their sessions and keys, inside a write.
/// Returns the device list position recorded if a device went (for
/// [`Store::device_lists_moved`] once committed).
pub(super) async fn delete_devices_except_in(
    conn: &mut AnyConnection,
    user_id: &str,
    keep: Option<&str>,
) -> Result<Option<i64>> {
    let mut deleted = 0;
    for table in DEVICE_TABLES {
        deleted = match keep {
            Some(keep) => {
                sqlx::query(&format!(
                    "DELETE FROM {table} WHERE user_id = $1 AND device_id <> $2"
                ))
                .bind(user_id)
                .bind(keep)
                .execute(&mut *conn)
                .await?
            }
            None => {
                sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                    .bind(user_id)
                    .execute(&mut *conn)
                    .await?
            }
        }
        .rows_affected();
    }
    if deleted == 0 {
        return Ok(None);
    }
    Ok(Some(record_device_list_changes(conn, &[user_id]).await?))
}

#[cfg(test)]
mod tests {
    use ruma::{device_id, user_id};

    use super::*;
    use crate::store::testing::{TestDatabase, test_store};

    /// A fresh store holding the account of `@alice:example.org` (password hash "hash").
    async fn store_with_alice() -> (Store, TestDatabase) {
        let (store, db) = test_store().await;
        let alice = crate::store::NewAccount {
            user_id: user_id!("@alice:example.org"),
            password_hash: Some("hash"),
            displayname: None,
            admin: false,
            created_ts: 1,
        };
        assert!(store.create_account(alice).await.unwrap());
        (store, db)
    }

    fn session<'a>(device_id: &'a DeviceId, token: &'a str) -> NewSession<'a> {
        NewSession {
            user_id: user_id!("@alice:example.org"),
            device_id,
            display_name: Some("phone"),
            access_token_hash: token,
            refresh_token_hash: None,
            expires_ts: None,
            now_ts: 5,
            ip: Some("127.0.0.1"),
            verified_password_hash: Some("hash"),
        }
    }

    #[tokio::test]
    async fn relogin_on_a_device_revokes_its_old_token_and_keeps_its_name() {
        let (store, _db) = store_with_alice().await;
        let alice = user_id!("@alice:example.org");
        assert!(
            store
                .create_session(session(device_id!("D1"), "t1"))
                .await
                .unwrap()
        );
        store
            .rename_device(alice, device_id!("D1"), "renamed")
            .await
            .unwrap();
        assert!(
            store
                .create_session(session(device_id!("D1"), "t2"))
                .await
                .unwrap()
        );
        assert!(store.access_token("t1").await.unwrap().is_none());
        assert!(store.access_token("t2").await.unwrap().is_some());
        let device = store
            .device(alice, device_id!("D1"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(device.display_name.as_deref(), Some("renamed"));
    }

    #[tokio::test]
    async fn deleting_all_devices_includes_one_with_an_empty_id() {
        let (store, _db) = store_with_alice().await;
        let alice = user_id!("@alice:example.org");
        assert!(
            store
                .create_session(session(device_id!("D1"), "t1"))
                .await
                .unwrap()
        );
        assert!(
            store
                .create_session(session(<&DeviceId>::from(""), "t2"))
                .await
                .unwrap()
        );
        store.delete_devices_except(alice, None).await.unwrap();
        assert!(store.devices(alice).await.unwrap().is_empty());
        assert!(store.access_token("t2").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn no_session_after_deactivation_or_password_change() {
        let (store, _db) = store_with_alice().await;
        let alice = user_id!("@alice:example.org");
        store
            .set_password_hash(alice, "new hash", crate::store::KeepSessions::All)
            .await
            .unwrap();
        // Checked against the old hash: refused.
        assert!(
            !store
                .create_session(session(device_id!("D1"), "t1"))
                .await
                .unwrap()
        );
        assert!(store.access_token("t1").await.unwrap().is_none());
        store.deactivate_account(alice).await.unwrap();
        let token_login = NewSession {
            verified_password_hash: None,
            ..session(device_id!("D2"), "t2")
        };
        assert!(!store.create_session(token_login).await.unwrap());
        assert!(store.devices(alice).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn delete_devices_except_keeps_one() {
        let (store, _db) = store_with_alice().await;
        let alice = user_id!("@alice:example.org");
        assert!(
            store
                .create_session(session(device_id!("D1"), "t1"))
                .await
                .unwrap()
        );
        assert!(
            store
                .create_session(session(device_id!("D2"), "t2"))
                .await
                .unwrap()
        );
        store
            .delete_devices_except(alice, Some(device_id!("D2")))
            .await
            .unwrap();
        let devices = store.devices(alice).await.unwrap();
        assert_eq!(devices.len(), 1);
        assert!(store.access_token("t1").await.unwrap().is_none());
        assert!(store.access_token("t2").await.unwrap().is_some());
    }
}
