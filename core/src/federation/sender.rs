//! The durable outbound sender: events queued for other servers (the `federation_outbox`
//! rows written with each local event) are sent per destination in transactions of at most
//! 50 PDUs, in order. A destination that fails is retried with exponential backoff, at once
//! when it contacts this server; the queue is in the database, so a restart resumes it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use ruma::{
    MilliSecondsSinceUnixEpoch, OwnedServerName, OwnedTransactionId, ServerName,
    api::federation::transactions::send_transaction_message,
};
use serde_json::value::RawValue;
use tokio::sync::Notify;

use super::inbound::MAX_TRANSACTION_PDUS;
use crate::Services;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60 * 60);

/// Wakes destination workers: when events are queued for them, or when they come back.
#[derive(Default)]
pub struct Outbound {
    workers: Mutex<HashMap<OwnedServerName, Arc<Notify>>>,
}

impl Outbound {
    /// `server` just sent this server a request: it is up, so a worker waiting out a backoff
    /// for it tries again now.
    pub fn server_is_up(&self, server: &ServerName) {
        if let Some(wake) = self.lock().get(server) {
            wake.notify_one();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<OwnedServerName, Arc<Notify>>> {
        // A poisoned map is still a valid map.
        self.workers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs the sender until the process ends: a worker per destination with queued events.
pub async fn run(services: Arc<Services>) {
    let queued = services.rooms.outbound_events();
    loop {
        match services.store.outbox_destinations().await {
            Ok(destinations) => {
                for destination in destinations {
                    let Ok(destination) = OwnedServerName::try_from(destination) else {
                        continue;
                    };
                    wake_worker(&services, destination);
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read the federation queue"),
        }
        queued.notified().await;
    }
}

fn wake_worker(services: &Arc<Services>, destination: OwnedServerName) {
    let outbound = &services.federation.outbound;
    let mut workers = outbound.lock();
    if let Some(wake) = workers.get(&destination) {
        wake.notify_one();
        return;
    }
    let wake = Arc::new(Notify::new());
    workers.insert(destination.clone(), wake.clone());
    tokio::spawn(worker(services.clone(), destination, wake));
}

async fn worker(services: Arc<Services>, destination: OwnedServerName, wake: Arc<Notify>) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        match send_next(&services, &destination).await {
            Ok(true) => backoff = FIRST_BACKOFF,
            Ok(false) => wake.notified().await,
            Err(e) => {
                tracing::info!(%destination, error = %e, retry_in = ?backoff, "federation send failed");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = wake.notified() => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Sends the oldest queued events; `false` when there were none.
async fn send_next(services: &Services, destination: &ServerName) -> Result<bool, String> {
    let batch = services
        .store
        .outbox_batch(destination.as_str(), MAX_TRANSACTION_PDUS as i64)
        .await
        .map_err(|e| e.to_string())?;
    let (Some((first, _)), Some((last, _))) = (batch.first(), batch.last()) else {
        return Ok(false);
    };
    let last = *last;
    // The same events make the same transaction ID, so a retry the destination already
    // processed is answered from its record rather than processed twice.
    let txn_id = OwnedTransactionId::from(format!("{first}-{last}"));
    let mut request = send_transaction_message::v1::Request::new(
        txn_id,
        services.config.server_name.clone(),
        MilliSecondsSinceUnixEpoch::now(),
    );
    for (_, json) in batch {
        request
            .pdus
            .push(RawValue::from_string(json).map_err(|e| e.to_string())?);
    }
    let response = services
        .federation
        .client
        .send(destination, request)
        .await
        .map_err(|e| e.to_string())?;
    for (event_id, outcome) in response.pdus {
        if let Err(reason) = outcome {
            // The destination refused it for good; resending would not change that.
            tracing::warn!(%destination, %event_id, %reason, "a PDU was refused");
        }
    }
    services
        .store
        .outbox_sent(destination.as_str(), last)
        .await
        .map_err(|e| e.to_string())?;
    Ok(true)
}
