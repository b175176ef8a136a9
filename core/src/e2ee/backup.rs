//! Server-side key backup (spec: "Server-side key backups"): versions and the encrypted room
//! keys stored in them. The server checks the shape of what it keeps, never its content.

use std::collections::BTreeMap;

use ruma::{
    OwnedRoomId, UserId,
    api::client::backup::{BackupAlgorithm, KeyBackupData},
    serde::Raw,
};
use serde::Deserialize;

use super::E2ee;
use crate::{
    Error, Result,
    store::{BackupKey, BackupKeyScope, BackupKeysState, BackupVersion, PutBackupKeys},
};

/// Room → session ID → key, as `PUT /room_keys/keys` carries them.
pub type KeysToBackUp = BTreeMap<OwnedRoomId, BTreeMap<String, Raw<KeyBackupData>>>;

/// A version's algorithm and auth data as the client sent them.
#[derive(Deserialize)]
struct AlgorithmAndAuthData {
    algorithm: String,
    auth_data: serde_json::Map<String, serde_json::Value>,
}

fn algorithm_and_auth_data(algorithm: &Raw<BackupAlgorithm>) -> Result<(String, String)> {
    let parsed: AlgorithmAndAuthData = serde_json::from_str(algorithm.json().get())
        .map_err(|e| Error::BadJson(format!("Invalid backup version: {e}")))?;
    let auth_data = serde_json::to_string(&parsed.auth_data)
        .map_err(|e| Error::Internal(format!("auth data does not serialise: {e}")))?;
    Ok((parsed.algorithm, auth_data))
}

/// The spec's rule for a second key of the same session: keep the verified one, then the one
/// with the lower first message index, then the one forwarded fewer times.
pub(super) fn replaces(existing: &BackupKey, new: &BackupKey) -> bool {
    if existing.is_verified != new.is_verified {
        return new.is_verified;
    }
    if existing.first_message_index != new.first_message_index {
        return new.first_message_index < existing.first_message_index;
    }
    new.forwarded_count < existing.forwarded_count
}

/// A version as the client names it; one that is not a number is no version of ours.
fn parse_version(version: &str) -> Result<i64> {
    version
        .parse()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| unknown_version(version))
}

fn unknown_version(version: &str) -> Error {
    Error::NotFound(format!("Unknown backup version {version}"))
}

/// The fields of a backed-up key the server reads.
#[derive(Deserialize)]
struct KeyMetadata {
    first_message_index: u64,
    forwarded_count: u64,
    is_verified: bool,
    session_data: serde_json::Map<String, serde_json::Value>,
}

fn backup_key(
    room_id: &OwnedRoomId,
    session_id: &str,
    key: &Raw<KeyBackupData>,
) -> Result<BackupKey> {
    let metadata: KeyMetadata = serde_json::from_str(key.json().get()).map_err(|e| {
        Error::BadJson(format!(
            "Invalid key for session {session_id} in {room_id}: {e}"
        ))
    })?;
    let number = |value: u64| {
        i64::try_from(value).map_err(|_| {
            Error::BadJson(format!(
                "Invalid key for session {session_id}: number too large"
            ))
        })
    };
    Ok(BackupKey {
        room_id: room_id.clone(),
        session_id: session_id.to_owned(),
        first_message_index: number(metadata.first_message_index)?,
        forwarded_count: number(metadata.forwarded_count)?,
        is_verified: metadata.is_verified,
        session_data: serde_json::to_string(&metadata.session_data)
            .map_err(|e| Error::Internal(format!("session data does not serialise: {e}")))?,
    })
}

impl E2ee {
    /// `POST /room_keys/version`: a new version, which becomes the current one.
    pub async fn create_backup_version(
        &self,
        user_id: &UserId,
        algorithm: &Raw<BackupAlgorithm>,
    ) -> Result<String> {
        let (algorithm, auth_data) = algorithm_and_auth_data(algorithm)?;
        let version = self
            .store
            .create_backup_version(user_id, &algorithm, &auth_data)
            .await?;
        Ok(version.to_string())
    }

    /// `GET /room_keys/version[/{version}]`: the version named, or the current one.
    pub async fn backup_version(
        &self,
        user_id: &UserId,
        version: Option<&str>,
    ) -> Result<BackupVersion> {
        let number = version.map(parse_version).transpose()?;
        self.store
            .backup_version(user_id, number)
            .await?
            .ok_or_else(|| match version {
                Some(version) => unknown_version(version),
                None => Error::NotFound("No current backup version".to_owned()),
            })
    }

    /// `PUT /room_keys/version/{version}`: new auth data; the algorithm cannot change.
    pub async fn update_backup_version(
        &self,
        user_id: &UserId,
        version: &str,
        algorithm: &Raw<BackupAlgorithm>,
    ) -> Result<()> {
        let current = self.backup_version(user_id, Some(version)).await?;
        let body: serde_json::Value = serde_json::from_str(algorithm.json().get())
            .map_err(|e| Error::BadJson(format!("Invalid backup version: {e}")))?;
        if let Some(named) = body.get("version")
            && named.as_str() != Some(version)
        {
            return Err(Error::InvalidParam(format!(
                "The body names version {named}, the path {version}"
            )));
        }
        let (algorithm, auth_data) = algorithm_and_auth_data(algorithm)?;
        if algorithm != current.algorithm {
            return Err(Error::InvalidParam(format!(
                "The algorithm of a backup version cannot change (it is {})",
                current.algorithm
            )));
        }
        if !self
            .store
            .update_backup_version(user_id, current.version, &auth_data)
            .await?
        {
            return Err(unknown_version(version));
        }
        Ok(())
    }

    /// `DELETE /room_keys/version/{version}`: the version and its keys.
    pub async fn delete_backup_version(&self, user_id: &UserId, version: &str) -> Result<()> {
        if !self
            .store
            .delete_backup_version(user_id, parse_version(version)?)
            .await?
        {
            return Err(unknown_version(version));
        }
        Ok(())
    }

    /// `PUT /room_keys/keys...`: stores keys in the current version, keeping the better key
    /// where a session has two.
    pub async fn put_backup_keys(
        &self,
        user_id: &UserId,
        version: &str,
        keys: &KeysToBackUp,
    ) -> Result<BackupKeysState> {
        let number = parse_version(version)?;
        let mut rows = Vec::new();
        for (room_id, sessions) in keys {
            for (session_id, key) in sessions {
                rows.push(backup_key(room_id, session_id, key)?);
            }
        }
        match self
            .store
            .put_backup_keys(user_id, number, rows, replaces)
            .await?
        {
            PutBackupKeys::Stored(state) => Ok(state),
            PutBackupKeys::NotCurrent(current) => Err(Error::WrongRoomKeysVersion {
                message: format!("Version {version} is not the current backup version"),
                current_version: current.map(|v| v.to_string()),
            }),
        }
    }

    /// `GET /room_keys/keys...`: the keys within `scope` of an existing version.
    pub async fn backup_keys(
        &self,
        user_id: &UserId,
        version: &str,
        scope: BackupKeyScope<'_>,
    ) -> Result<Vec<(BackupKey, Raw<KeyBackupData>)>> {
        let number = self.backup_version(user_id, Some(version)).await?.version;
        self.store
            .backup_keys(user_id, number, scope)
            .await?
            .into_iter()
            .map(|key| {
                let json = format!(
                    r#"{{"first_message_index":{},"forwarded_count":{},"is_verified":{},"session_data":{}}}"#,
                    key.first_message_index, key.forwarded_count, key.is_verified, key.session_data
                );
                let raw = serde_json::value::RawValue::from_string(json)
                    .map(Raw::from_json)
                    .map_err(|e| Error::Internal(format!("stored backup key: {e}")))?;
                Ok((key, raw))
            })
            .collect()
    }

    /// `DELETE /room_keys/keys...`: removes the keys within `scope`.
    pub async fn delete_backup_keys(
        &self,
        user_id: &UserId,
        version: &str,
        scope: BackupKeyScope<'_>,
    ) -> Result<BackupKeysState> {
        self.store
            .delete_backup_keys(user_id, parse_version(version)?, scope)
            .await?
            .ok_or_else(|| unknown_version(version))
    }
}

#[cfg(test)]
mod tests {
    use ruma::owned_room_id;

    use super::*;

    fn key(is_verified: bool, first_message_index: i64, forwarded_count: i64) -> BackupKey {
        BackupKey {
            room_id: owned_room_id!("!r:x"),
            session_id: "s".to_owned(),
            first_message_index,
            forwarded_count,
            is_verified,
            session_data: "{}".to_owned(),
        }
    }

    /// Spec: "Server-side key backups", choosing between two keys of a session.
    #[test]
    fn the_verified_then_earlier_then_less_forwarded_key_wins() {
        assert!(replaces(&key(false, 0, 0), &key(true, 5, 5)));
        assert!(!replaces(&key(true, 5, 5), &key(false, 0, 0)));
        assert!(replaces(&key(true, 5, 0), &key(true, 4, 9)));
        assert!(!replaces(&key(true, 4, 0), &key(true, 5, 0)));
        assert!(replaces(&key(false, 3, 2), &key(false, 3, 1)));
        assert!(!replaces(&key(false, 3, 1), &key(false, 3, 1)));
        assert!(!replaces(&key(false, 3, 1), &key(false, 3, 2)));
    }
}
