//! Other servers' signing keys and the signed responses they came in.

use ruma::ServerName;
use sqlx::Row;

use super::{Result, Store};

/// One verify key of a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredServerKey {
    pub key_id: String,
    /// Unpadded base64 of the ed25519 public key.
    pub verify_key: String,
    pub valid_until_ts: i64,
}

impl Store {
    pub async fn server_signing_keys(&self, server: &ServerName) -> Result<Vec<StoredServerKey>> {
        let rows = sqlx::query(
            "SELECT key_id, verify_key, valid_until_ts FROM server_signing_keys \
             WHERE server_name = $1",
        )
        .bind(server.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(StoredServerKey {
                    key_id: row.try_get("key_id")?,
                    verify_key: row.try_get("verify_key")?,
                    valid_until_ts: row.try_get("valid_until_ts")?,
                })
            })
            .collect()
    }

    /// The latest key response of `server` and its validity.
    pub async fn server_key_response(&self, server: &ServerName) -> Result<Option<(String, i64)>> {
        let row = sqlx::query(
            "SELECT json, valid_until_ts FROM server_key_responses WHERE server_name = $1",
        )
        .bind(server.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| Ok((row.try_get("json")?, row.try_get("valid_until_ts")?)))
            .transpose()
    }

    /// Records a verified key response and its keys. A key already known keeps the longer of
    /// its two validities.
    pub async fn save_server_keys(
        &self,
        server: &ServerName,
        response_json: String,
        valid_until_ts: i64,
        keys: Vec<StoredServerKey>,
    ) -> Result<()> {
        let server = server.to_string();
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO server_key_responses (server_name, valid_until_ts, json) \
                         VALUES ($1, $2, $3) ON CONFLICT (server_name) DO UPDATE SET \
                         valid_until_ts = excluded.valid_until_ts, json = excluded.json",
                    )
                    .bind(&server)
                    .bind(valid_until_ts)
                    .bind(response_json)
                    .execute(&mut *conn)
                    .await?;
                    for key in keys {
                        sqlx::query(
                            "INSERT INTO server_signing_keys \
                             (server_name, key_id, verify_key, valid_until_ts) \
                             VALUES ($1, $2, $3, $4) ON CONFLICT (server_name, key_id) DO UPDATE \
                             SET verify_key = excluded.verify_key, valid_until_ts = CASE \
                             WHEN excluded.valid_until_ts > server_signing_keys.valid_until_ts \
                             THEN excluded.valid_until_ts \
                             ELSE server_signing_keys.valid_until_ts END",
                        )
                        .bind(&server)
                        .bind(key.key_id)
                        .bind(key.verify_key)
                        .bind(key.valid_until_ts)
                        .execute(&mut *conn)
                        .await?;
                    }
                    Ok(())
                })
            })
            .await
    }
}
