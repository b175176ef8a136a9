//! The current positions of the streams whose writes bump a position row (receipts, account
//! data, device lists, to-device), kept in memory so that every sync does not read them back. Every write goes through
//! this process and moves the position after it commits; positions only grow.

use std::sync::atomic::{AtomicI64, Ordering};

use sqlx::AnyPool;

use super::Result;

pub(super) struct StreamPositions {
    receipts: AtomicI64,
    account_data: AtomicI64,
    device_lists: AtomicI64,
    to_device: AtomicI64,
}

impl StreamPositions {
    pub(super) async fn load(pool: &AnyPool) -> Result<Self> {
        let receipts: i64 = sqlx::query_scalar("SELECT position FROM receipts_stream")
            .fetch_one(pool)
            .await?;
        let account_data: i64 = sqlx::query_scalar("SELECT position FROM account_data_stream")
            .fetch_one(pool)
            .await?;
        let device_lists: i64 = sqlx::query_scalar("SELECT position FROM device_list_stream")
            .fetch_one(pool)
            .await?;
        let to_device: i64 = sqlx::query_scalar("SELECT position FROM to_device_stream")
            .fetch_one(pool)
            .await?;
        Ok(Self {
            receipts: AtomicI64::new(receipts),
            account_data: AtomicI64::new(account_data),
            device_lists: AtomicI64::new(device_lists),
            to_device: AtomicI64::new(to_device),
        })
    }

    pub(super) fn receipts(&self) -> i64 {
        self.receipts.load(Ordering::Acquire)
    }

    pub(super) fn account_data(&self) -> i64 {
        self.account_data.load(Ordering::Acquire)
    }

    pub(super) fn device_lists(&self) -> i64 {
        self.device_lists.load(Ordering::Acquire)
    }

    pub(super) fn to_device(&self) -> i64 {
        self.to_device.load(Ordering::Acquire)
    }

    /// A receipt write at `position` committed (with PostgreSQL's row lock on the position
    /// row, every lower position has committed too).
    pub(super) fn receipt_committed(&self, position: i64) {
        self.receipts.fetch_max(position, Ordering::AcqRel);
    }

    pub(super) fn account_data_committed(&self, position: i64) {
        self.account_data.fetch_max(position, Ordering::AcqRel);
    }

    pub(super) fn device_lists_committed(&self, position: i64) {
        self.device_lists.fetch_max(position, Ordering::AcqRel);
    }

    pub(super) fn to_device_committed(&self, position: i64) {
        self.to_device.fetch_max(position, Ordering::AcqRel);
    }
}
