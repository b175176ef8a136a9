//! Profile fields (`displayname`, `avatar_url` and custom fields), values stored as JSON.

use std::collections::BTreeMap;

use ruma::UserId;
use serde_json::Value as JsonValue;
use sqlx::Row;

use super::{Result, Store, StoreError};

fn parse_json(field: &str, raw: &str) -> Result<JsonValue> {
    serde_json::from_str(raw)
        .map_err(|e| StoreError::Corrupt(format!("profile field {field}: {e}")))
}

impl Store {
    pub async fn profile(&self, user_id: &UserId) -> Result<BTreeMap<String, JsonValue>> {
        let rows = sqlx::query("SELECT field, value FROM profile_fields WHERE user_id = $1")
            .bind(user_id.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let field: String = row.try_get(0)?;
                let value = parse_json(&field, &row.try_get::<String, _>(1)?)?;
                Ok((field, value))
            })
            .collect()
    }

    pub async fn profile_field(&self, user_id: &UserId, field: &str) -> Result<Option<JsonValue>> {
        let raw: Option<String> = sqlx::query_scalar(
            "SELECT value FROM profile_fields WHERE user_id = $1 AND field = $2",
        )
        .bind(user_id.as_str())
        .bind(field)
        .fetch_optional(&self.pool)
        .await?;
        raw.map(|raw| parse_json(field, &raw)).transpose()
    }

    pub async fn set_profile_field(
        &self,
        user_id: &UserId,
        field: &str,
        value: &JsonValue,
    ) -> Result<()> {
        self.writer
            .execute(
                "INSERT INTO profile_fields (user_id, field, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (user_id, field) DO UPDATE SET value = excluded.value",
                vec![
                    user_id.as_str().into(),
                    field.into(),
                    value.to_string().into(),
                ],
            )
            .await?;
        Ok(())
    }

    pub async fn delete_profile_field(&self, user_id: &UserId, field: &str) -> Result<()> {
        self.writer
            .execute(
                "DELETE FROM profile_fields WHERE user_id = $1 AND field = $2",
                vec![user_id.as_str().into(), field.into()],
            )
            .await?;
        Ok(())
    }
}
