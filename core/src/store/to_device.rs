//! To-device messages (spec: "Send-to-Device messaging"): each device has an inbox; a message
//! stays in it until a sync token past its position acknowledges it.
//!
//! Which inboxes hold anything is kept in memory, so a sync of a device with an empty inbox,
//! the common case, reads and writes nothing. The entry of a deleted device goes stale
//! harmlessly: its rows went with the device, so reading it finds nothing.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
};

use ruma::{DeviceId, OwnedDeviceId, OwnedUserId, UserId};
use sqlx::{AnyPool, Row};

use super::{Result, Store, row_placeholders, stored_id};

/// Messages stored per `INSERT` statement (six parameters each, well under SQLite's limit).
const ROWS_PER_INSERT: usize = 100;

/// A message to store: for one device, or (`device_id` = `None`) for every device of the user.
pub struct OutgoingToDevice {
    pub user_id: OwnedUserId,
    pub device_id: Option<OwnedDeviceId>,
    pub content: String,
}

/// A message as a recipient's sync delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToDeviceMessage {
    pub position: i64,
    pub sender: OwnedUserId,
    pub event_type: String,
    pub content: String,
}

/// The inbox of a device with messages in it.
#[derive(Clone, Copy)]
struct Inbox {
    /// The newest message's position.
    newest: i64,
    /// Every message up to here is acknowledged and deleted.
    acked: i64,
}

#[derive(Default)]
pub(super) struct Inboxes(Mutex<HashMap<(OwnedUserId, OwnedDeviceId), Inbox>>);

impl Inboxes {
    pub(super) async fn load(pool: &AnyPool) -> Result<Self> {
        let rows = sqlx::query(
            "SELECT user_id, device_id, MAX(position) FROM to_device_messages \
             GROUP BY user_id, device_id",
        )
        .fetch_all(pool)
        .await?;
        let mut inboxes = HashMap::with_capacity(rows.len());
        for row in rows {
            let key = (
                stored_id(row.try_get::<String, _>(0)?)?,
                stored_id(row.try_get::<String, _>(1)?)?,
            );
            let newest: i64 = row.try_get(2)?;
            inboxes.insert(key, Inbox { newest, acked: 0 });
        }
        Ok(Self(Mutex::new(inboxes)))
    }

    fn map(&self) -> MutexGuard<'_, HashMap<(OwnedUserId, OwnedDeviceId), Inbox>> {
        // Every update leaves the map consistent: a panic elsewhere cannot break it.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, user_id: &UserId, device_id: &DeviceId) -> Option<Inbox> {
        self.map()
            .get(&(user_id.to_owned(), device_id.to_owned()))
            .copied()
    }
}

impl Store {
    /// The to-device stream's current position.
    pub fn to_device_position(&self) -> i64 {
        self.positions.to_device()
    }

    /// Stores the messages of one `sendToDevice` request, unless the sender's device used
    /// `txn_id` before (then `None`: the retry changes nothing). Messages for devices that do
    /// not exist are dropped. Returns the users with new messages.
    pub async fn send_to_device(
        &self,
        sender: &UserId,
        sender_device: &DeviceId,
        txn_id: &str,
        event_type: &str,
        messages: Vec<OutgoingToDevice>,
    ) -> Result<Option<Vec<OwnedUserId>>> {
        let (sender, sender_device, txn_id, event_type) = (
            sender.to_owned(),
            sender_device.to_owned(),
            txn_id.to_owned(),
            event_type.to_owned(),
        );
        let stored = self
            .writer
            .write(move |conn| {
                Box::pin(async move {
                    let first_use = sqlx::query(
                        "INSERT INTO to_device_transactions (user_id, device_id, txn_id) \
                         VALUES ($1, $2, $3) ON CONFLICT (user_id, device_id, txn_id) DO NOTHING",
                    )
                    .bind(sender.as_str())
                    .bind(sender_device.as_str())
                    .bind(&txn_id)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                    if first_use == 0 {
                        return Ok(None);
                    }
                    let mut devices_of: HashMap<&UserId, Vec<OwnedDeviceId>> = HashMap::new();
                    for message in &messages {
                        if devices_of.contains_key(&*message.user_id) {
                            continue;
                        }
                        let devices: Vec<String> =
                            sqlx::query_scalar("SELECT device_id FROM devices WHERE user_id = $1")
                                .bind(message.user_id.as_str())
                                .fetch_all(&mut *conn)
                                .await?;
                        let devices = devices
                            .into_iter()
                            .map(stored_id)
                            .collect::<Result<Vec<OwnedDeviceId>>>()?;
                        devices_of.insert(&message.user_id, devices);
                    }
                    let deliveries: Vec<(&OwnedUserId, &OwnedDeviceId, &String)> = messages
                        .iter()
                        .flat_map(|message| {
                            devices_of[&*message.user_id]
                                .iter()
                                .filter(|device_id| {
                                    message.device_id.as_ref().is_none_or(|d| d == *device_id)
                                })
                                .map(move |device_id| {
                                    (&message.user_id, device_id, &message.content)
                                })
                        })
                        .collect();
                    let count = i64::try_from(deliveries.len()).unwrap_or(i64::MAX);
                    let last: i64 = sqlx::query_scalar(
                        "UPDATE to_device_stream SET position = position + $1 RETURNING position",
                    )
                    .bind(count)
                    .fetch_one(&mut *conn)
                    .await?;
                    let stored: Vec<(OwnedUserId, OwnedDeviceId, i64)> = deliveries
                        .iter()
                        .zip(last - count + 1..)
                        .map(|((user_id, device_id, _), position)| {
                            ((*user_id).clone(), (*device_id).clone(), position)
                        })
                        .collect();
                    // A fan-out to a thousand devices is a few statements, not a thousand.
                    for (rows, positions) in deliveries
                        .chunks(ROWS_PER_INSERT)
                        .zip(stored.chunks(ROWS_PER_INSERT))
                    {
                        let sql = format!(
                            "INSERT INTO to_device_messages \
                             (position, user_id, device_id, sender, event_type, content) \
                             VALUES {}",
                            row_placeholders(rows.len(), 6)
                        );
                        let mut insert = sqlx::query(&sql);
                        for ((user_id, device_id, content), (_, _, position)) in
                            rows.iter().zip(positions)
                        {
                            insert = insert
                                .bind(*position)
                                .bind(user_id.as_str())
                                .bind(device_id.as_str())
                                .bind(sender.as_str())
                                .bind(&event_type)
                                .bind(*content);
                        }
                        insert.execute(&mut *conn).await?;
                    }
                    Ok(Some((stored, last)))
                })
            })
            .await?;
        let Some((stored, last)) = stored else {
            return Ok(None);
        };
        // The inboxes learn of the messages before the position moves past them: a sync that
        // sees the new position finds them.
        let mut recipients = Vec::new();
        {
            let mut inboxes = self.to_device_inboxes.map();
            for (user_id, device_id, position) in stored {
                let inbox = inboxes
                    .entry((user_id.clone(), device_id))
                    .or_insert(Inbox {
                        newest: position,
                        acked: 0,
                    });
                inbox.newest = inbox.newest.max(position);
                if !recipients.contains(&user_id) {
                    recipients.push(user_id);
                }
            }
        }
        self.positions.to_device_committed(last);
        Ok(Some(recipients))
    }

    /// Deletes the device's messages up to `acked` (a sync token the device came back with).
    pub async fn acknowledge_to_device(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        acked: i64,
    ) -> Result<()> {
        let Some(inbox) = self.to_device_inboxes.get(user_id, device_id) else {
            return Ok(());
        };
        if acked <= inbox.acked {
            return Ok(());
        }
        self.writer
            .execute(
                "DELETE FROM to_device_messages \
                 WHERE user_id = $1 AND device_id = $2 AND position <= $3",
                vec![
                    user_id.as_str().into(),
                    device_id.as_str().into(),
                    acked.into(),
                ],
            )
            .await?;
        let key = (user_id.to_owned(), device_id.to_owned());
        let mut inboxes = self.to_device_inboxes.map();
        if let Some(inbox) = inboxes.get_mut(&key) {
            if inbox.newest <= acked {
                inboxes.remove(&key);
            } else {
                inbox.acked = inbox.acked.max(acked);
            }
        }
        Ok(())
    }

    /// The device's messages after position `since` and up to `upto`, oldest first, at most
    /// `limit`.
    pub async fn to_device_messages(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        since: i64,
        upto: i64,
        limit: i64,
    ) -> Result<Vec<ToDeviceMessage>> {
        if self
            .to_device_inboxes
            .get(user_id, device_id)
            .is_none_or(|inbox| inbox.newest <= since)
        {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT position, sender, event_type, content FROM to_device_messages \
             WHERE user_id = $1 AND device_id = $2 AND position > $3 AND position <= $4 \
             ORDER BY position LIMIT $5",
        )
        .bind(user_id.as_str())
        .bind(device_id.as_str())
        .bind(since)
        .bind(upto)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ToDeviceMessage {
                    position: row.try_get(0)?,
                    sender: stored_id(row.try_get::<String, _>(1)?)?,
                    event_type: row.try_get(2)?,
                    content: row.try_get(3)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use ruma::{device_id, user_id};

    use super::*;
    use crate::store::testing::test_store;

    #[tokio::test]
    async fn a_large_fan_out_is_stored_in_order_with_one_position_each() {
        let (store, _db) = test_store().await;
        let alice = user_id!("@alice:example.org");
        let bob = user_id!("@bob:example.org");
        for device in ["D1", "D2", "D3"] {
            sqlx::query("INSERT INTO devices (user_id, device_id) VALUES ($1, $2)")
                .bind(alice.as_str())
                .bind(device)
                .execute(&store.writer_pool)
                .await
                .unwrap();
        }
        // More messages than one INSERT statement takes, then one for every device.
        let mut messages: Vec<OutgoingToDevice> = (0..250)
            .map(|n| OutgoingToDevice {
                user_id: alice.to_owned(),
                device_id: Some(device_id!("D1").to_owned()),
                content: format!(r#"{{"n":{n}}}"#),
            })
            .collect();
        messages.push(OutgoingToDevice {
            user_id: alice.to_owned(),
            device_id: None,
            content: r#"{"n":"all"}"#.to_owned(),
        });
        let recipients = store
            .send_to_device(bob, device_id!("BOBDEVICE"), "txn", "m.test", messages)
            .await
            .unwrap();
        assert_eq!(recipients, Some(vec![alice.to_owned()]));
        let upto = store.to_device_position();
        assert_eq!(upto, 253);

        let d1 = store
            .to_device_messages(alice, device_id!("D1"), 0, upto, 1000)
            .await
            .unwrap();
        let contents: Vec<&str> = d1.iter().map(|m| m.content.as_str()).collect();
        let expected: Vec<String> = (0..250)
            .map(|n| format!(r#"{{"n":{n}}}"#))
            .chain([r#"{"n":"all"}"#.to_owned()])
            .collect();
        assert_eq!(contents, expected);
        assert!(d1.windows(2).all(|w| w[0].position < w[1].position));
        for device in [device_id!("D2"), device_id!("D3")] {
            let messages = store
                .to_device_messages(alice, device, 0, upto, 1000)
                .await
                .unwrap();
            assert_eq!(messages.len(), 1);
            assert_eq!(messages[0].content, r#"{"n":"all"}"#);
            assert_eq!(messages[0].sender, bob);
        }
        // The same transaction again stores nothing.
        let again = store
            .send_to_device(bob, device_id!("BOBDEVICE"), "txn", "m.test", Vec::new())
            .await
            .unwrap();
        assert_eq!(again, None);
    }
}
