//! Stored sync filters (spec: "Filtering").

use ruma::{UserId, api::client::filter::FilterDefinition};

use super::Users;
use crate::{Error, Result};

impl Users {
    /// Stores a filter and returns its ID as a string, as the API wants it.
    pub async fn create_filter(
        &self,
        user_id: &UserId,
        filter: &FilterDefinition,
    ) -> Result<String> {
        let json = serde_json::to_string(filter)
            .map_err(|e| Error::BadJson(format!("Invalid filter: {e}")))?;
        Ok(self.store.create_filter(user_id, &json).await?.to_string())
    }

    pub async fn filter(&self, user_id: &UserId, filter_id: &str) -> Result<FilterDefinition> {
        let not_found = || Error::NotFound("No such filter".to_owned());
        let id: i64 = filter_id.parse().map_err(|_| not_found())?;
        let json = self
            .store
            .filter(user_id, id)
            .await?
            .ok_or_else(not_found)?;
        serde_json::from_str(&json)
            .map_err(|e| Error::Internal(format!("stored filter is invalid: {e}")))
    }
}
