//! The durable outbound federation queue and the record of inbound transactions.

use sqlx::Row;

use super::{Result, Store};

impl Store {
    /// Destinations with events or EDUs waiting to be sent.
    pub async fn outbox_destinations(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT destination FROM federation_outbox \
             UNION SELECT destination FROM federation_outbox_edus",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Queues one EDU (JSON) for each of `destinations`.
    pub async fn queue_edus(
        &self,
        destinations: Vec<String>,
        edu: String,
        expires_ts: Option<i64>,
    ) -> Result<()> {
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    for destination in &destinations {
                        sqlx::query(
                            "INSERT INTO federation_outbox_edus (destination, edu, expires_ts) \
                             VALUES ($1, $2, $3)",
                        )
                        .bind(destination)
                        .bind(&edu)
                        .bind(expires_ts)
                        .execute(&mut *conn)
                        .await?;
                    }
                    Ok(())
                })
            })
            .await
    }

    /// The oldest `limit` EDUs queued for `destination`: (ID, EDU JSON, expiry).
    pub async fn outbox_edus(
        &self,
        destination: &str,
        limit: i64,
    ) -> Result<Vec<(i64, String, Option<i64>)>> {
        let rows = sqlx::query(
            "SELECT id, edu, expires_ts FROM federation_outbox_edus \
             WHERE destination = $1 ORDER BY id LIMIT $2",
        )
        .bind(destination)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
            .collect()
    }

    /// `destination` accepted (or will never need) the EDUs queued for it up to `id`.
    pub async fn outbox_edus_sent(&self, destination: &str, id: i64) -> Result<()> {
        self.writer
            .execute(
                "DELETE FROM federation_outbox_edus WHERE destination = $1 AND id <= $2",
                vec![destination.into(), id.into()],
            )
            .await?;
        Ok(())
    }

    /// The servers other than `own` with a user sharing a joined room with `user_id`.
    pub async fn servers_sharing_a_room(
        &self,
        user_id: &ruma::UserId,
        own: &str,
    ) -> Result<Vec<String>> {
        let users: Vec<String> = sqlx::query_scalar(super::presence::USERS_SHARING_A_ROOM)
            .bind(user_id.as_str())
            .fetch_all(&self.pool)
            .await?;
        Ok(servers_of(users, own))
    }

    /// Catch-up for a destination that fell far behind (down for a while): once more than
    /// `backlog` events are queued for it, only the newest of each room is kept. The
    /// destination fetches the events before it (`get_missing_events`), as far as it wants.
    /// Returns how many were dropped.
    pub async fn outbox_catch_up(&self, destination: &str, backlog: i64) -> Result<u64> {
        self.writer
            .execute(
                "DELETE FROM federation_outbox WHERE destination = $1 \
                 AND (SELECT COUNT(*) FROM federation_outbox WHERE destination = $1) > $2 \
                 AND stream_ordering NOT IN ( \
                   SELECT MAX(o.stream_ordering) FROM federation_outbox o \
                   JOIN events e ON e.stream_ordering = o.stream_ordering \
                   WHERE o.destination = $1 GROUP BY e.room_id)",
                vec![destination.into(), backlog.into()],
            )
            .await
    }

    /// Queues stored events (by stream position) for `destination` once more.
    pub async fn queue_for(&self, destination: &str, positions: &[i64]) -> Result<()> {
        for position in positions {
            self.writer
                .execute(
                    "INSERT INTO federation_outbox (destination, stream_ordering) VALUES ($1, $2) \
                     ON CONFLICT (destination, stream_ordering) DO NOTHING",
                    vec![destination.into(), (*position).into()],
                )
                .await?;
        }
        Ok(())
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

/// The distinct server names of `users` other than `own`, sorted.
fn servers_of(users: Vec<String>, own: &str) -> Vec<String> {
    let mut servers: Vec<String> = users
        .iter()
        .filter_map(|user| user.split_once(':').map(|(_, server)| server))
        .filter(|server| *server != own)
        .map(str::to_owned)
        .collect();
    servers.sort();
    servers.dedup();
    servers
}
