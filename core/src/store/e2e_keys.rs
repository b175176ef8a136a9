//! Public keys of end-to-end encryption: device keys, one-time and fallback keys, cross-signing
//! keys and the signatures added to them later. Key JSON is kept as the client sent it.

use std::collections::HashMap;

use ruma::{DeviceId, OwnedDeviceId, OwnedUserId, UserId};
use sqlx::{AnyConnection, Row};

use super::{
    MAX_BOUND_IDS, Result, Store, device_lists::record_device_list_changes, placeholders, stored_id,
};

/// What one `/keys/upload` stores for the calling device.
pub struct KeyUpload {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    /// Only stored if the device has none yet (device keys are immutable).
    pub device_keys: Option<String>,
    pub one_time_keys: Vec<UploadedKey>,
    pub fallback_keys: Vec<UploadedKey>,
}

pub struct UploadedKey {
    pub algorithm: String,
    /// `<algorithm>:<id>`.
    pub key_id: String,
    pub key_json: String,
}

/// A device's keys as `/keys/query` returns them.
pub struct StoredDeviceKeys {
    pub device_id: OwnedDeviceId,
    pub key_json: String,
    pub display_name: Option<String>,
}

/// One `/keys/claim` request for a device.
pub struct KeyClaim {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub algorithm: String,
}

/// A key handed out by `/keys/claim`: a one-time key, or the fallback key if none was left.
pub struct ClaimedKey {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub key_id: String,
    pub key_json: String,
}

/// A signature uploaded through `/keys/signatures/upload`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSignature {
    pub target_user_id: OwnedUserId,
    /// A device ID, or the public key of a master key.
    pub target_key_id: String,
    pub signer_user_id: OwnedUserId,
    /// `ed25519:<device ID or public key>`.
    pub signer_key_id: String,
    pub signature: String,
}

impl Store {
    pub async fn device_keys_json(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
    ) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT key_json FROM e2e_device_keys WHERE user_id = $1 AND device_id = $2",
        )
        .bind(user_id.as_str())
        .bind(device_id.as_str())
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The device's stored one-time keys among `key_ids`, by key ID.
    pub async fn one_time_keys_named(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        key_ids: &[&str],
    ) -> Result<HashMap<String, String>> {
        let mut found = HashMap::new();
        for chunk in key_ids.chunks(MAX_BOUND_IDS) {
            let sql = format!(
                "SELECT key_id, key_json FROM e2e_one_time_keys \
                 WHERE user_id = $1 AND device_id = $2 AND key_id IN ({})",
                placeholders(3, chunk.len())
            );
            let mut query = sqlx::query(&sql)
                .bind(user_id.as_str())
                .bind(device_id.as_str());
            for key_id in chunk {
                query = query.bind(*key_id);
            }
            for row in query.fetch_all(&self.pool).await? {
                found.insert(row.try_get(0)?, row.try_get(1)?);
            }
        }
        Ok(found)
    }

    /// Stores an upload in one transaction. Returns the device list position if the device's
    /// keys were new (its owner's list changed).
    pub async fn upload_keys(&self, upload: KeyUpload) -> Result<Option<i64>> {
        let position = self
            .writer
            .write(move |conn| Box::pin(async move { upload_keys_in(conn, upload).await }))
            .await?;
        if let Some(position) = position {
            self.device_lists_committed(position);
        }
        Ok(position)
    }

    /// How many unclaimed one-time keys the device has, per algorithm.
    pub async fn one_time_key_counts(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
    ) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT algorithm, COUNT(*) FROM e2e_one_time_keys \
             WHERE user_id = $1 AND device_id = $2 GROUP BY algorithm",
        )
        .bind(user_id.as_str())
        .bind(device_id.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect()
    }

    /// The algorithms of the device's fallback keys that were not claimed yet.
    pub async fn unused_fallback_key_algorithms(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
    ) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT algorithm FROM e2e_fallback_keys \
             WHERE user_id = $1 AND device_id = $2 AND used = 0 ORDER BY algorithm",
        )
        .bind(user_id.as_str())
        .bind(device_id.as_str())
        .fetch_all(&self.pool)
        .await?)
    }

    /// The keys of the user's devices (all of them, or those named), with display names.
    pub async fn device_keys_of(
        &self,
        user_id: &UserId,
        device_ids: &[OwnedDeviceId],
    ) -> Result<Vec<StoredDeviceKeys>> {
        const SELECT: &str = "SELECT k.device_id, k.key_json, d.display_name FROM e2e_device_keys k \
             JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id \
             WHERE k.user_id = $1";
        let rows = if device_ids.is_empty() {
            sqlx::query(SELECT)
                .bind(user_id.as_str())
                .fetch_all(&self.pool)
                .await?
        } else {
            let mut rows = Vec::new();
            for chunk in device_ids.chunks(MAX_BOUND_IDS) {
                let sql = format!(
                    "{SELECT} AND k.device_id IN ({})",
                    placeholders(2, chunk.len())
                );
                let mut query = sqlx::query(&sql).bind(user_id.as_str());
                for device_id in chunk {
                    query = query.bind(device_id.as_str());
                }
                rows.extend(query.fetch_all(&self.pool).await?);
            }
            rows
        };
        rows.iter()
            .map(|row| {
                Ok(StoredDeviceKeys {
                    device_id: stored_id(row.try_get::<String, _>(0)?)?,
                    key_json: row.try_get(1)?,
                    display_name: row.try_get(2)?,
                })
            })
            .collect()
    }

    /// Hands out one key per claim, in one transaction: the device's one-time key of the
    /// algorithm with the lowest ID (deleted as it is handed out), else its fallback key
    /// (marked used, kept). Claims for devices without either key get nothing.
    pub async fn claim_keys(&self, claims: Vec<KeyClaim>) -> Result<Vec<ClaimedKey>> {
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    let mut claimed = Vec::with_capacity(claims.len());
                    for claim in claims {
                        if let Some((key_id, key_json)) = claim_one(conn, &claim).await? {
                            claimed.push(ClaimedKey {
                                user_id: claim.user_id,
                                device_id: claim.device_id,
                                key_id,
                                key_json,
                            });
                        }
                    }
                    Ok(claimed)
                })
            })
            .await
    }

    /// The user's cross-signing keys, by type (`master`, `self_signing`, `user_signing`).
    pub async fn cross_signing_keys(&self, user_id: &UserId) -> Result<HashMap<String, String>> {
        let rows =
            sqlx::query("SELECT key_type, key_json FROM e2e_cross_signing_keys WHERE user_id = $1")
                .bind(user_id.as_str())
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect()
    }

    /// Replaces the given cross-signing keys (type → JSON). A new master key invalidates the
    /// signatures others made on the old one, so those are dropped with it.
    pub async fn set_cross_signing_keys(
        &self,
        user_id: &UserId,
        keys: Vec<(&'static str, String)>,
        replaced_master: Option<String>,
    ) -> Result<()> {
        let user_id = user_id.to_string();
        let position = self
            .writer
            .write(move |conn| {
                Box::pin(async move {
                    for (key_type, key_json) in keys {
                        sqlx::query(
                            "INSERT INTO e2e_cross_signing_keys (user_id, key_type, key_json) \
                             VALUES ($1, $2, $3) ON CONFLICT (user_id, key_type) \
                             DO UPDATE SET key_json = excluded.key_json",
                        )
                        .bind(&user_id)
                        .bind(key_type)
                        .bind(key_json)
                        .execute(&mut *conn)
                        .await?;
                    }
                    if let Some(old_master) = replaced_master {
                        sqlx::query(
                            "DELETE FROM e2e_signatures \
                             WHERE target_user_id = $1 AND target_key_id = $2",
                        )
                        .bind(&user_id)
                        .bind(old_master)
                        .execute(&mut *conn)
                        .await?;
                    }
                    record_device_list_changes(conn, &[&user_id]).await
                })
            })
            .await?;
        self.device_lists_committed(position);
        Ok(())
    }

    /// Signatures on the target user's keys (device IDs or master public keys) made by
    /// `signers`.
    pub async fn signatures_on(
        &self,
        target_user_id: &UserId,
        signers: &[&UserId],
    ) -> Result<Vec<StoredSignature>> {
        let sql = format!(
            "SELECT target_key_id, signer_user_id, signer_key_id, signature FROM e2e_signatures \
             WHERE target_user_id = $1 AND signer_user_id IN ({})",
            placeholders(2, signers.len())
        );
        let mut query = sqlx::query(&sql).bind(target_user_id.as_str());
        for signer in signers {
            query = query.bind(signer.as_str());
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                Ok(StoredSignature {
                    target_user_id: target_user_id.to_owned(),
                    target_key_id: row.try_get(0)?,
                    signer_user_id: stored_id(row.try_get::<String, _>(1)?)?,
                    signer_key_id: row.try_get(2)?,
                    signature: row.try_get(3)?,
                })
            })
            .collect()
    }

    /// Stores verified signatures; the device lists of their target users change.
    pub async fn add_signatures(&self, signatures: Vec<StoredSignature>) -> Result<()> {
        if signatures.is_empty() {
            return Ok(());
        }
        let position = self
            .writer
            .write(move |conn| {
                Box::pin(async move {
                    let mut targets: Vec<&str> = Vec::new();
                    for signature in &signatures {
                        sqlx::query(
                            "INSERT INTO e2e_signatures (target_user_id, target_key_id, \
                             signer_user_id, signer_key_id, signature) VALUES ($1, $2, $3, $4, $5) \
                             ON CONFLICT (target_user_id, target_key_id, signer_user_id, signer_key_id) \
                             DO UPDATE SET signature = excluded.signature",
                        )
                        .bind(signature.target_user_id.as_str())
                        .bind(&signature.target_key_id)
                        .bind(signature.signer_user_id.as_str())
                        .bind(&signature.signer_key_id)
                        .bind(&signature.signature)
                        .execute(&mut *conn)
                        .await?;
                        let target = signature.target_user_id.as_str();
                        if !targets.contains(&target) {
                            targets.push(target);
                        }
                    }
                    record_device_list_changes(conn, &targets).await
                })
            })
            .await?;
        self.device_lists_committed(position);
        Ok(())
    }
}

pub(super) async fn upload_keys_in(
    conn: &mut AnyConnection,
    upload: KeyUpload,
) -> Result<Option<i64>> {
    let (user_id, device_id) = (upload.user_id.as_str(), upload.device_id.as_str());
    let mut position = None;
    if let Some(device_keys) = &upload.device_keys {
        let inserted = sqlx::query(
            "INSERT INTO e2e_device_keys (user_id, device_id, key_json) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id, device_id) DO NOTHING",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(device_keys)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if inserted == 1 {
            position = Some(record_device_list_changes(conn, &[user_id]).await?);
        }
    }
    for key in &upload.one_time_keys {
        sqlx::query(
            "INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, device_id, key_id) DO NOTHING",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(&key.algorithm)
        .bind(&key.key_id)
        .bind(&key.key_json)
        .execute(&mut *conn)
        .await?;
    }
    for key in &upload.fallback_keys {
        // Uploading the same key again keeps whether it was used.
        sqlx::query(
            "INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json, used) \
             VALUES ($1, $2, $3, $4, $5, 0) ON CONFLICT (user_id, device_id, algorithm) \
             DO UPDATE SET key_id = excluded.key_id, key_json = excluded.key_json, \
             used = CASE WHEN e2e_fallback_keys.key_json = excluded.key_json \
             THEN e2e_fallback_keys.used ELSE 0 END",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(&key.algorithm)
        .bind(&key.key_id)
        .bind(&key.key_json)
        .execute(&mut *conn)
        .await?;
    }
    Ok(position)
}

async fn claim_one(conn: &mut AnyConnection, claim: &KeyClaim) -> Result<Option<(String, String)>> {
    let (user_id, device_id) = (claim.user_id.as_str(), claim.device_id.as_str());
    // On PostgreSQL a concurrent claim may take the selected key first: the DELETE then finds
    // nothing, and the next key is tried.
    for _ in 0..3 {
        let key_id: Option<String> = sqlx::query_scalar(
            "SELECT key_id FROM e2e_one_time_keys \
             WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 ORDER BY key_id LIMIT 1",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(&claim.algorithm)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(key_id) = key_id else {
            break;
        };
        let key_json: Option<String> = sqlx::query_scalar(
            "DELETE FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2 AND key_id = $3 \
             RETURNING key_json",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(&key_id)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(key_json) = key_json {
            return Ok(Some((key_id, key_json)));
        }
    }
    let fallback = sqlx::query(
        "UPDATE e2e_fallback_keys SET used = 1 \
         WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 RETURNING key_id, key_json",
    )
    .bind(user_id)
    .bind(device_id)
    .bind(&claim.algorithm)
    .fetch_optional(&mut *conn)
    .await?;
    fallback
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .transpose()
}
