//! Server-side key backup (spec: "Server-side key backups"): versions with opaque auth data,
//! and per version the encrypted room keys, one per (room, session).

use ruma::{OwnedRoomId, RoomId, UserId};
use sqlx::{AnyConnection, Row, any::AnyRow};

use super::{Result, Store, flag, stored_id};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupVersion {
    pub version: i64,
    pub algorithm: String,
    pub auth_data: String,
    pub etag: i64,
    pub count: i64,
}

/// One backed-up room key; `session_data` is the encrypted key as the client sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupKey {
    pub room_id: OwnedRoomId,
    pub session_id: String,
    pub first_message_index: i64,
    pub forwarded_count: i64,
    pub is_verified: bool,
    pub session_data: String,
}

/// Which keys of a version a read or delete covers.
#[derive(Clone, Copy)]
pub enum BackupKeyScope<'a> {
    All,
    Room(&'a RoomId),
    Session(&'a RoomId, &'a str),
}

/// After keys changed: the version's key count and etag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupKeysState {
    pub count: i64,
    pub etag: i64,
}

/// The outcome of storing keys: only the current version takes keys.
#[derive(Debug, PartialEq, Eq)]
pub enum PutBackupKeys {
    Stored(BackupKeysState),
    /// The version is not the current one; the current one, if there is any.
    NotCurrent(Option<i64>),
}

/// Whether `new` should replace `existing`: the spec's rule lives in core.
pub type ReplaceRule = fn(existing: &BackupKey, new: &BackupKey) -> bool;

const KEY_COLUMNS: &str =
    "room_id, session_id, first_message_index, forwarded_count, is_verified, session_data";

fn key_from_row(row: &AnyRow) -> Result<BackupKey> {
    Ok(BackupKey {
        room_id: stored_id(row.try_get::<String, _>(0)?)?,
        session_id: row.try_get(1)?,
        first_message_index: row.try_get(2)?,
        forwarded_count: row.try_get(3)?,
        is_verified: row.try_get::<i64, _>(4)? != 0,
        session_data: row.try_get(5)?,
    })
}

/// `AND ...` restricting a query on `backup_keys` to a scope; its parameters start at `$3`.
fn scope_filter(scope: BackupKeyScope<'_>) -> &'static str {
    match scope {
        BackupKeyScope::All => "",
        BackupKeyScope::Room(_) => " AND room_id = $3",
        BackupKeyScope::Session(..) => " AND room_id = $3 AND session_id = $4",
    }
}

async fn current_version(conn: &mut AnyConnection, user_id: &str) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar(
        "SELECT MAX(version) FROM backup_versions WHERE user_id = $1 AND deleted = 0",
    )
    .bind(user_id)
    .fetch_one(&mut *conn)
    .await?)
}

async fn keys_state(
    conn: &mut AnyConnection,
    user_id: &str,
    version: i64,
) -> Result<BackupKeysState> {
    let count: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM backup_keys WHERE user_id = $1 AND version = $2")
            .bind(user_id)
            .bind(version)
            .fetch_one(&mut *conn)
            .await?;
    let etag: i64 =
        sqlx::query_scalar("SELECT etag FROM backup_versions WHERE user_id = $1 AND version = $2")
            .bind(user_id)
            .bind(version)
            .fetch_one(&mut *conn)
            .await?;
    Ok(BackupKeysState { count, etag })
}

async fn bump_etag(conn: &mut AnyConnection, user_id: &str, version: i64) -> Result<()> {
    sqlx::query("UPDATE backup_versions SET etag = etag + 1 WHERE user_id = $1 AND version = $2")
        .bind(user_id)
        .bind(version)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl Store {
    /// Creates the user's next backup version, which becomes the current one.
    pub async fn create_backup_version(
        &self,
        user_id: &UserId,
        algorithm: &str,
        auth_data: &str,
    ) -> Result<i64> {
        let (user_id, algorithm, auth_data) = (
            user_id.to_string(),
            algorithm.to_owned(),
            auth_data.to_owned(),
        );
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    let last: Option<i64> = sqlx::query_scalar(
                        "SELECT MAX(version) FROM backup_versions WHERE user_id = $1",
                    )
                    .bind(&user_id)
                    .fetch_one(&mut *conn)
                    .await?;
                    let version = last.unwrap_or(0) + 1;
                    sqlx::query(
                        "INSERT INTO backup_versions (user_id, version, algorithm, auth_data) \
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(&user_id)
                    .bind(version)
                    .bind(algorithm)
                    .bind(auth_data)
                    .execute(&mut *conn)
                    .await?;
                    Ok(version)
                })
            })
            .await
    }

    /// A version that was not deleted; the current one when `version` is `None`.
    pub async fn backup_version(
        &self,
        user_id: &UserId,
        version: Option<i64>,
    ) -> Result<Option<BackupVersion>> {
        let mut conn = self.pool.acquire().await?;
        let version = match version {
            Some(version) => version,
            None => match current_version(&mut conn, user_id.as_str()).await? {
                Some(version) => version,
                None => return Ok(None),
            },
        };
        let row = sqlx::query(
            "SELECT algorithm, auth_data, etag FROM backup_versions \
             WHERE user_id = $1 AND version = $2 AND deleted = 0",
        )
        .bind(user_id.as_str())
        .bind(version)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let state = keys_state(&mut conn, user_id.as_str(), version).await?;
        Ok(Some(BackupVersion {
            version,
            algorithm: row.try_get(0)?,
            auth_data: row.try_get(1)?,
            etag: row.try_get(2)?,
            count: state.count,
        }))
    }

    /// Replaces a version's auth data; `false` if there is no such version.
    pub async fn update_backup_version(
        &self,
        user_id: &UserId,
        version: i64,
        auth_data: &str,
    ) -> Result<bool> {
        let updated = self
            .writer
            .execute(
                "UPDATE backup_versions SET auth_data = $3 \
                 WHERE user_id = $1 AND version = $2 AND deleted = 0",
                vec![user_id.as_str().into(), version.into(), auth_data.into()],
            )
            .await?;
        Ok(updated == 1)
    }

    /// Deletes a version and its keys; `false` if there is no such version.
    pub async fn delete_backup_version(&self, user_id: &UserId, version: i64) -> Result<bool> {
        let user_id = user_id.to_string();
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    let deleted = sqlx::query(
                        "UPDATE backup_versions SET deleted = 1 \
                         WHERE user_id = $1 AND version = $2 AND deleted = 0",
                    )
                    .bind(&user_id)
                    .bind(version)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                    sqlx::query("DELETE FROM backup_keys WHERE user_id = $1 AND version = $2")
                        .bind(&user_id)
                        .bind(version)
                        .execute(&mut *conn)
                        .await?;
                    Ok(deleted == 1)
                })
            })
            .await
    }

    /// Stores keys in the current version, each replacing the stored key of its session only
    /// where `replaces` says so.
    pub async fn put_backup_keys(
        &self,
        user_id: &UserId,
        version: i64,
        keys: Vec<BackupKey>,
        replaces: ReplaceRule,
    ) -> Result<PutBackupKeys> {
        let user_id = user_id.to_string();
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    let current = current_version(conn, &user_id).await?;
                    if current != Some(version) {
                        return Ok(PutBackupKeys::NotCurrent(current));
                    }
                    let mut changed = false;
                    for key in keys {
                        let existing = sqlx::query(&format!(
                            "SELECT {KEY_COLUMNS} FROM backup_keys \
                             WHERE user_id = $1 AND version = $2 AND room_id = $3 AND session_id = $4"
                        ))
                        .bind(&user_id)
                        .bind(version)
                        .bind(key.room_id.as_str())
                        .bind(&key.session_id)
                        .fetch_optional(&mut *conn)
                        .await?;
                        if let Some(existing) = existing
                            && !replaces(&key_from_row(&existing)?, &key)
                        {
                            continue;
                        }
                        sqlx::query(&format!(
                            "INSERT INTO backup_keys (user_id, version, {KEY_COLUMNS}) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                             ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET \
                             first_message_index = excluded.first_message_index, \
                             forwarded_count = excluded.forwarded_count, \
                             is_verified = excluded.is_verified, session_data = excluded.session_data"
                        ))
                        .bind(&user_id)
                        .bind(version)
                        .bind(key.room_id.as_str())
                        .bind(&key.session_id)
                        .bind(key.first_message_index)
                        .bind(key.forwarded_count)
                        .bind(flag(key.is_verified))
                        .bind(&key.session_data)
                        .execute(&mut *conn)
                        .await?;
                        changed = true;
                    }
                    if changed {
                        bump_etag(conn, &user_id, version).await?;
                    }
                    Ok(PutBackupKeys::Stored(keys_state(conn, &user_id, version).await?))
                })
            })
            .await
    }

    /// The version's keys within `scope`, by room and session.
    pub async fn backup_keys(
        &self,
        user_id: &UserId,
        version: i64,
        scope: BackupKeyScope<'_>,
    ) -> Result<Vec<BackupKey>> {
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM backup_keys WHERE user_id = $1 AND version = $2{} \
             ORDER BY room_id, session_id",
            scope_filter(scope)
        );
        let mut query = sqlx::query(&sql).bind(user_id.as_str()).bind(version);
        match scope {
            BackupKeyScope::All => {}
            BackupKeyScope::Room(room_id) => query = query.bind(room_id.as_str()),
            BackupKeyScope::Session(room_id, session_id) => {
                query = query.bind(room_id.as_str()).bind(session_id);
            }
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(key_from_row).collect()
    }

    /// Deletes the version's keys within `scope`; `None` if there is no such version.
    pub async fn delete_backup_keys(
        &self,
        user_id: &UserId,
        version: i64,
        scope: BackupKeyScope<'_>,
    ) -> Result<Option<BackupKeysState>> {
        let user_id = user_id.to_string();
        let (room_id, session_id) = match scope {
            BackupKeyScope::All => (None, None),
            BackupKeyScope::Room(room_id) => (Some(room_id.to_string()), None),
            BackupKeyScope::Session(room_id, session_id) => {
                (Some(room_id.to_string()), Some(session_id.to_owned()))
            }
        };
        let filter = scope_filter(scope);
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    let exists: Option<i64> = sqlx::query_scalar(
                        "SELECT version FROM backup_versions \
                         WHERE user_id = $1 AND version = $2 AND deleted = 0",
                    )
                    .bind(&user_id)
                    .bind(version)
                    .fetch_optional(&mut *conn)
                    .await?;
                    if exists.is_none() {
                        return Ok(None);
                    }
                    let sql = format!(
                        "DELETE FROM backup_keys WHERE user_id = $1 AND version = $2{filter}"
                    );
                    let mut query = sqlx::query(&sql).bind(&user_id).bind(version);
                    if let Some(room_id) = &room_id {
                        query = query.bind(room_id);
                    }
                    if let Some(session_id) = &session_id {
                        query = query.bind(session_id);
                    }
                    if query.execute(&mut *conn).await?.rows_affected() > 0 {
                        bump_etag(conn, &user_id, version).await?;
                    }
                    Ok(Some(keys_state(conn, &user_id, version).await?))
                })
            })
            .await
    }
}
