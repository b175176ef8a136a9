//! Stored filters (spec: "Filtering"). A filter is validated against the spec's schema and kept
//! as the client sent it, so reading it back gives the client's own JSON, as Synapse does.

use ruma::{
    UserId,
    api::client::filter::{EventFormat, FilterDefinition},
};
use serde_json::value::RawValue;

use super::Users;
use crate::{Error, Result};

impl Users {
    /// Stores a filter and returns its ID as a string, as the API wants it. `parsed` is `raw`
    /// already deserialized (the shape check).
    pub async fn create_filter(
        &self,
        user_id: &UserId,
        parsed: &FilterDefinition,
        raw: &RawValue,
    ) -> Result<String> {
        if !matches!(
            parsed.event_format,
            EventFormat::Client | EventFormat::Federation
        ) {
            return Err(Error::BadJson(
                "event_format must be \"client\" or \"federation\"".to_owned(),
            ));
        }
        Ok(self
            .store
            .create_filter(user_id, raw.get())
            .await?
            .to_string())
    }

    pub async fn filter(&self, user_id: &UserId, filter_id: &str) -> Result<Box<RawValue>> {
        let not_found = || Error::NotFound("No such filter".to_owned());
        let id: i64 = filter_id.parse().map_err(|_| not_found())?;
        let json = self
            .store
            .filter(user_id, id)
            .await?
            .ok_or_else(not_found)?;
        RawValue::from_string(json)
            .map_err(|e| Error::Internal(format!("stored filter is not JSON: {e}")))
    }
}
