//! Dehydrated devices (MSC3814): a device without a session, kept for the user while none of
//! their devices is online; its keys and to-device inbox are those of any device.

use ruma::{OwnedDeviceId, UserId};
use sqlx::AnyConnection;

use super::{
    KeyUpload, Result, Store,
    device_lists::record_device_list_changes,
    devices::{DEVICE_TABLES, delete_device_rows},
    e2e_keys::upload_keys_in,
    stored_id,
};

/// A dehydrated device to store: the device, its keys and the client's opaque pickle.
pub struct NewDehydratedDevice {
    pub display_name: Option<String>,
    pub device_data: String,
    /// The device's keys; its user and device IDs are the dehydrated device's.
    pub keys: KeyUpload,
}

/// Deletes the user's dehydrated device with its keys and inbox, inside a write. Returns its ID.
async fn delete_dehydrated_in(
    conn: &mut AnyConnection,
    user_id: &str,
) -> Result<Option<OwnedDeviceId>> {
    let device_id: Option<String> =
        sqlx::query_scalar("SELECT device_id FROM dehydrated_devices WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&mut *conn)
            .await?;
    let Some(device_id) = device_id else {
        return Ok(None);
    };
    delete_device_rows(conn, user_id, &device_id, &DEVICE_TABLES).await?;
    Ok(Some(stored_id(device_id)?))
}

impl Store {
    /// The user's dehydrated device and its pickle.
    pub async fn dehydrated_device(
        &self,
        user_id: &UserId,
    ) -> Result<Option<(OwnedDeviceId, String)>> {
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT device_id, device_data FROM dehydrated_devices WHERE user_id = $1",
        )
        .bind(user_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(device_id, data)| Ok((stored_id(device_id)?, data)))
            .transpose()
    }

    /// Replaces the user's dehydrated device (the old one goes with its keys and unread
    /// messages) in one transaction. Returns the replaced device's ID.
    pub async fn replace_dehydrated_device(
        &self,
        device: NewDehydratedDevice,
    ) -> Result<Option<OwnedDeviceId>> {
        let (replaced, position) = self
            .writer
            .write(move |conn| {
                Box::pin(async move {
                    let user_id = device.keys.user_id.to_string();
                    let device_id = device.keys.device_id.to_string();
                    let replaced = delete_dehydrated_in(conn, &user_id).await?;
                    sqlx::query(
                        "INSERT INTO devices (user_id, device_id, display_name) VALUES ($1, $2, $3)",
                    )
                    .bind(&user_id)
                    .bind(&device_id)
                    .bind(&device.display_name)
                    .execute(&mut *conn)
                    .await?;
                    sqlx::query(
                        "INSERT INTO dehydrated_devices (user_id, device_id, device_data) \
                         VALUES ($1, $2, $3)",
                    )
                    .bind(&user_id)
                    .bind(&device_id)
                    .bind(&device.device_data)
                    .execute(&mut *conn)
                    .await?;
                    let position = upload_keys_in(conn, device.keys).await?;
                    Ok((replaced, position))
                })
            })
            .await?;
        self.device_lists_moved(position);
        Ok(replaced)
    }

    /// Deletes the user's dehydrated device; its ID, if there was one.
    pub async fn delete_dehydrated_device(
        &self,
        user_id: &UserId,
    ) -> Result<Option<OwnedDeviceId>> {
        let user_id = user_id.to_string();
        let (deleted, position) = self
            .writer
            .write(move |conn| {
                Box::pin(async move {
                    let deleted = delete_dehydrated_in(conn, &user_id).await?;
                    let position = match deleted {
                        Some(_) => Some(record_device_list_changes(conn, &[&user_id]).await?),
                        None => None,
                    };
                    Ok((deleted, position))
                })
            })
            .await?;
        self.device_lists_moved(position);
        Ok(deleted)
    }
}
