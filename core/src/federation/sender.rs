//! The durable outbound sender: events queued for other servers (the `federation_outbox`
//! rows written with each local event) and EDUs (`federation_outbox_edus`) are sent per
//! destination in transactions of at most 50 PDUs and 100 EDUs, in order. A destination that
//! fails is retried with exponential backoff, at once when it contacts this server; the queue
//! is in the database, so a restart resumes it. A destination left far behind catches up:
//! only the newest event of each room is sent, and it fetches what it missed.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use ruma::{
    MilliSecondsSinceUnixEpoch, OwnedServerName, OwnedTransactionId, ServerName,
    api::federation::transactions::send_transaction_message, serde::Raw,
};
use serde_json::value::RawValue;
use tokio::sync::Notify;

use super::inbound::{MAX_TRANSACTION_EDUS, MAX_TRANSACTION_PDUS};
use crate::Services;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60 * 60);
/// New events cut a backoff short, but no sooner than this after the last attempt: a room
/// that goes on reaches a destination that came back within seconds, without one attempt
/// per event while it is down.
const QUEUED_RETRY: Duration = Duration::from_secs(5);
/// Events queued for a destination that is down beyond which only the newest of each room is
/// kept: it fetches up to 1,000 missing events per gap itself (`get_missing_events`).
const CATCH_UP_BACKLOG: i64 = 1_000;

/// Wakes destination workers: when events are queued for them, or when they come back.
#[derive(Default)]
pub struct Outbound {
    workers: Mutex<HashMap<OwnedServerName, Arc<Wake>>>,
}

/// What wakes a destination's worker.
#[derive(Default)]
struct Wake {
    /// Events or EDUs were queued for the destination: an idle worker sends them.
    queued: Notify,
    /// The destination contacted this server: a worker waiting out a backoff tries again now.
    /// New events cut a backoff short only after [`QUEUED_RETRY`], or a server that is down
    /// would be tried once per event sent.
    up: Notify,
}

impl Outbound {
    /// `server` just sent this server a request: it is up, so a worker waiting out a backoff
    /// for it tries again now.
    pub fn server_is_up(&self, server: &ServerName) {
        if let Some(wake) = self.lock().get(server) {
            wake.up.notify_one();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<OwnedServerName, Arc<Wake>>> {
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
        wake.queued.notify_one();
        return;
    }
    let wake = Arc::new(Wake::default());
    workers.insert(destination.clone(), wake.clone());
    tokio::spawn(worker(services.clone(), destination, wake));
}

async fn worker(services: Arc<Services>, destination: OwnedServerName, wake: Arc<Wake>) {
    let mut backoff = FIRST_BACKOFF;
    // A backlog found on start-up was left by a destination that was down.
    catch_up(&services, &destination).await;
    loop {
        match send_next(&services, &destination).await {
            Ok(true) => backoff = FIRST_BACKOFF,
            Ok(false) => wake.queued.notified().await,
            Err(e) => {
                tracing::info!(%destination, error = %e, retry_in = ?backoff, "federation send failed");
                catch_up(&services, &destination).await;
                let failed_at = tokio::time::Instant::now();
                tokio::select! {
                    () = tokio::time::sleep_until(failed_at + backoff) => {}
                    () = wake.up.notified() => {}
                    () = async {
                        tokio::time::sleep_until(failed_at + QUEUED_RETRY.min(backoff)).await;
                        wake.queued.notified().await;
                    } => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Keeps a destination that is down from piling up events without bound (see
/// [`crate::store::Store::outbox_catch_up`]).
async fn catch_up(services: &Services, destination: &ServerName) {
    match services
        .store
        .outbox_catch_up(destination.as_str(), CATCH_UP_BACKLOG)
        .await
    {
        Ok(0) => {}
        Ok(dropped) => {
            tracing::info!(%destination, dropped, "the destination fell behind: only the newest event of each room is kept for it");
        }
        Err(e) => tracing::warn!(%destination, error = %e, "cannot trim the federation queue"),
    }
}

/// Sends the oldest queued events and EDUs in one transaction; `false` when there were none.
async fn send_next(services: &Services, destination: &ServerName) -> Result<bool, String> {
    let store = &services.store;
    let batch = store
        .outbox_batch(destination.as_str(), MAX_TRANSACTION_PDUS as i64)
        .await
        .map_err(|e| e.to_string())?;
    let edus = store
        .outbox_edus(destination.as_str(), MAX_TRANSACTION_EDUS as i64)
        .await
        .map_err(|e| e.to_string())?;
    let pdu_range = batch.first().zip(batch.last()).map(|(f, l)| (f.0, l.0));
    let edu_range = edus.first().zip(edus.last()).map(|(f, l)| (f.0, l.0));
    if pdu_range.is_none() && edu_range.is_none() {
        return Ok(false);
    }
    // The same events and EDUs make the same transaction ID, so a retry the destination
    // already processed is answered from its record rather than processed twice.
    let range = |r: Option<(i64, i64)>| r.map_or_else(String::new, |(f, l)| format!("{f}-{l}"));
    let txn_id = OwnedTransactionId::from(format!("{}.{}", range(pdu_range), range(edu_range)));
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
    let now = crate::time::now_ms();
    for (_, json, expires_ts) in edus {
        // A typing notice sent late would show someone typing who has stopped.
        if expires_ts.is_none_or(|expires| expires > now) {
            request.edus.push(Raw::from_json(
                RawValue::from_string(json).map_err(|e| e.to_string())?,
            ));
        }
    }
    if !request.pdus.is_empty() || !request.edus.is_empty() {
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
    }
    if let Some((_, last)) = pdu_range {
        store
            .outbox_sent(destination.as_str(), last)
            .await
            .map_err(|e| e.to_string())?;
    }
    if let Some((_, last)) = edu_range {
        store
            .outbox_edus_sent(destination.as_str(), last)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(true)
}
