//! The durable outbound federation queue and the record of inbound transactions.

use sqlx::Row;

use super::{Result, Store};

impl Store {
    /// Destinations with events waiting to be sent.
    pub async fn outbox_destinations(&self) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT DISTINCT destination FROM federation_outbox")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// The oldest `limit` events queued for `destination`: (position, PDU JSON).
    pub async fn outbox_batch(&self, destination: &str, limit: i64) -> Result<Vec<(i64, String)>> {
        let rows = sqlx::query(
            "SELECT o.stream_ordering, e.json FROM federation_outbox o \
             JOIN events e ON e.stream_ordering = o.stream_ordering \
             WHERE o.destination = $1 ORDER BY o.stream_ordering LIMIT $2",
        )
        .bind(destination)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect()
    }

    /// `destination` accepted everything queued for it up to `position`.
    pub async fn outbox_sent(&self, destination: &str, position: i64) -> Result<()> {
        self.writer
            .execute(
                "DELETE FROM federation_outbox WHERE destination = $1 AND stream_ordering <= $2",
                vec![destination.into(), position.into()],
            )
            .await?;
        Ok(())
    }

    /// The response given to an inbound transaction already processed.
    pub async fn inbound_transaction(&self, origin: &str, txn_id: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT response FROM federation_inbound_transactions WHERE origin = $1 AND txn_id = $2",
        )
        .bind(origin)
        .bind(txn_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn save_inbound_transaction(
        &self,
        origin: &str,
        txn_id: &str,
        response: String,
        received_ts: i64,
    ) -> Result<()> {
        self.writer
            .execute(
                "INSERT INTO federation_inbound_transactions (origin, txn_id, response, received_ts) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (origin, txn_id) DO NOTHING",
                vec![
                    origin.into(),
                    txn_id.into(),
                    response.into(),
                    received_ts.into(),
                ],
            )
            .await?;
        Ok(())
    }
}
