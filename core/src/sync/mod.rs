//! Sync (spec: "Syncing"): the notifier that wakes live syncs, sync tokens, and `/sync`
//! itself: read every stream between the client's token and the current positions, and if
//! nothing concerns the client, wait until something does or the timeout passes.

mod event_fields;
mod notifier;
mod token;

use std::{
    sync::{Arc, LazyLock},
    time::Duration,
};

use ruma::{
    OwnedDeviceId, OwnedUserId, UserId,
    api::client::{
        filter::{Filter as EventFilter, FilterDefinition},
        sync::sync_events::v3::{self, GlobalAccountData},
    },
    presence::PresenceState,
};

pub use notifier::{Notifier, Subscription};
pub use token::SyncToken;

use ruma::serde::Raw;

use crate::{
    Error, Result, Services,
    rooms::{RoomPositions, RoomsSyncRequest, allowed_by, pattern_matches},
    store::AccountDataEntry,
    time::now_ms,
    users::presence::SyncGuard,
};

/// The longest a sync waits, whatever timeout the client asks for.
const MAX_TIMEOUT: Duration = Duration::from_secs(300);

/// A `/sync` request, with the caller.
pub struct SyncRequest {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub since: Option<String>,
    /// The filter, as [`Services::sync_filter`] resolves it: shared, because a WebSocket
    /// keeps one for all its syncs and each parked sync would otherwise hold a copy.
    pub filter: Arc<FilterDefinition>,
    pub full_state: bool,
    pub use_state_after: bool,
    pub timeout: Option<Duration>,
    pub set_presence: PresenceState,
}

impl Services {
    /// `GET /sync`: what changed for the user since `since` (everything, without it). An
    /// incremental sync with nothing to report waits up to `timeout` for something to.
    ///
    /// A parked sync's future is as large as the largest step it may take, and it is held for
    /// as long as the sync waits, by every idle long-poll and WebSocket: the steps that read and
    /// write (the setup, `sync_once`, the typing lookup) are boxed, so that they take memory
    /// only while they run.
    pub async fn sync(&self, request: SyncRequest) -> Result<v3::Response> {
        let (since, _connected) = Box::pin(self.sync_setup(&request)).await?;
        let filter = &*request.filter;
        let timeout = request.timeout.unwrap_or_default().min(MAX_TIMEOUT);
        let deadline = tokio::time::Instant::now() + timeout;
        // Subscribed before reading, so nothing that lands meanwhile is missed.
        let mut subscription = self.notifier.subscribe(&request.user_id);
        loop {
            let upto = self.positions();
            if since == Some(upto) && tokio::time::Instant::now() < deadline {
                // Nothing moved since the token (a wake-up for someone else's news): wait on.
                self.wait(&mut subscription, deadline, &request).await?;
                continue;
            }
            let response = Box::pin(self.sync_once(&request, filter, since, upto)).await?;
            let waits = since.is_some() && !request.full_state && is_empty(&response);
            if !waits || tokio::time::Instant::now() >= deadline {
                return Ok(response);
            }
            self.wait(&mut subscription, deadline, &request).await?;
        }
    }

    /// Waits for a wake-up, the deadline, or the next typing notice to run out.
    async fn wait(
        &self,
        subscription: &mut Subscription,
        deadline: tokio::time::Instant,
        request: &SyncRequest,
    ) -> Result<()> {
        let wake_at = match Box::pin(self.next_typing_expiry(&request.user_id)).await? {
            Some(at) => deadline.min(at),
            None => deadline,
        };
        tokio::select! {
            () = subscription.changed() => {}
            () = tokio::time::sleep_until(wake_at) => {}
        }
        Ok(())
    }

    /// The sync's checked `since`, and the presence guard that keeps the user connected
    /// while the sync runs.
    async fn sync_setup(&self, request: &SyncRequest) -> Result<(Option<SyncToken>, SyncGuard)> {
        let since = match &request.since {
            Some(token) => Some(self.check_since(token.parse()?)?),
            None => None,
        };
        let connected = self
            .presence
            .set_from_sync(&request.user_id, &request.set_presence)
            .await?;
        // Coming back with a token acknowledges the to-device messages it covered.
        if let Some(since) = since {
            self.store
                .acknowledge_to_device(&request.user_id, &request.device_id, since.to_device)
                .await?;
        }
        Ok((since, connected))
    }

    /// The filter a sync asks for: inline, stored under an ID, or none (the default, one
    /// shared by all).
    pub async fn sync_filter(
        &self,
        user_id: &UserId,
        filter: Option<v3::Filter>,
    ) -> Result<Arc<FilterDefinition>> {
        static DEFAULT: LazyLock<Arc<FilterDefinition>> = LazyLock::new(Arc::default);
        Ok(match filter {
            None => DEFAULT.clone(),
            Some(v3::Filter::FilterDefinition(definition)) => Arc::new(definition),
            // ruma falls back to an ID when the JSON does not parse.
            Some(v3::Filter::FilterId(id)) if id.trim_start().starts_with('{') => {
                return Err(Error::BadJson(format!(
                    "The filter is not a valid filter: {id}"
                )));
            }
            Some(v3::Filter::FilterId(id)) => {
                let stored = self.users.filter(user_id, &id).await?;
                Arc::new(serde_json::from_str(stored.get()).map_err(|e| {
                    Error::Internal(format!("stored filter {id} does not parse: {e}"))
                })?)
            }
            Some(_) => return Err(Error::InvalidParam("Unsupported filter".to_owned())),
        })
    }

    /// The positions every stream has reached: what the next token will say.
    fn positions(&self) -> SyncToken {
        SyncToken {
            timeline: self.rooms.current_position(),
            receipts: self.rooms.receipts_position(),
            typing: self.rooms.typing_position(),
            account_data: self.store.account_data_position(),
            presence: self.presence.position(),
            to_device: self.store.to_device_position(),
            device_lists: self.store.device_list_position(),
        }
    }

    /// A token past what the database holds was never issued by this server. Typing lives in
    /// memory and restarts from zero: a token from before a restart counts from zero too.
    fn check_since(&self, mut since: SyncToken) -> Result<SyncToken> {
        let now = self.positions();
        if since.timeline > now.timeline
            || since.receipts > now.receipts
            || since.account_data > now.account_data
            || since.presence > now.presence
            || since.to_device > now.to_device
            || since.device_lists > now.device_lists
        {
            return Err(Error::InvalidParam(format!(
                "The sync token {since} is unknown to this server: sync without since to start \
                 again"
            )));
        }
        if since.typing > now.typing {
            since.typing = 0;
        }
        Ok(since)
    }

    async fn sync_once(
        &self,
        request: &SyncRequest,
        filter: &FilterDefinition,
        since: Option<SyncToken>,
        upto: SyncToken,
    ) -> Result<v3::Response> {
        let account_data_since = since.map_or(0, |s| s.account_data);
        let account_data = if account_data_since < upto.account_data {
            self.store
                .account_data_since(&request.user_id, account_data_since, upto.account_data)
                .await?
        } else {
            Vec::new()
        };
        let room_positions = |token: SyncToken| RoomPositions {
            timeline: token.timeline,
            receipts: token.receipts,
            typing: token.typing,
        };
        let rooms = self
            .rooms
            .sync_rooms(&RoomsSyncRequest {
                user_id: &request.user_id,
                device_id: &request.device_id,
                filter: &filter.room,
                event_format: &filter.event_format,
                since: since.map(room_positions),
                upto: room_positions(upto),
                full_state: request.full_state,
                use_state_after: request.use_state_after,
                account_data: &account_data,
            })
            .await?;
        let memberships_moved = since.is_some_and(|since| {
            self.rooms
                .memberships_changed_between(since.timeline, upto.timeline)
        });
        let device = self
            .e2ee
            .device_sync(
                &request.user_id,
                &request.device_id,
                since,
                upto,
                memberships_moved,
            )
            .await?;
        let next_batch = SyncToken {
            to_device: device.to_device_position,
            ..upto
        };
        let mut response = v3::Response::new(next_batch.to_string());
        response.rooms = rooms;
        response.to_device.events = device.to_device;
        response.device_lists = device.device_lists;
        response.device_one_time_keys_count = device.key_counts.one_time_keys.clone();
        response
            .device_one_time_keys_count
            .entry(ruma::OneTimeKeyAlgorithm::SignedCurve25519)
            .or_default();
        response.device_unused_fallback_key_types =
            Some(device.key_counts.unused_fallback_keys.clone());
        response.account_data = global_account_data(&account_data, &filter.account_data);
        if since.is_none() {
            self.add_default_push_rules(&request.user_id, &account_data, filter, &mut response)
                .await?;
        }
        if event_selected(&filter.presence, "m.presence", None) {
            let changes = self
                .presence
                .visible_changes(&request.user_id, since.map_or(0, |s| s.presence))
                .await?;
            response.presence.events = changes
                .iter()
                .filter(|event| event_selected(&filter.presence, "m.presence", Some(&event.sender)))
                .map(Raw::new)
                .collect::<Result<_, _>>()
                .map_err(|e| Error::Internal(format!("presence event: {e}")))?;
        }
        if let Some(fields) = &filter.event_fields {
            event_fields::apply(&mut response, fields);
        }
        Ok(response)
    }

    /// `GET /keys/changes`: whose device lists changed between two sync tokens.
    pub async fn key_changes(
        &self,
        user_id: &ruma::UserId,
        from: &str,
        to: &str,
    ) -> Result<ruma::api::client::sync::sync_events::DeviceLists> {
        let from = self.check_since(from.parse()?)?;
        let to = self.check_since(to.parse()?)?;
        let memberships_moved = self
            .rooms
            .memberships_changed_between(from.timeline, to.timeline);
        self.e2ee
            .device_list_changes(user_id, from, to, memberships_moved)
            .await
    }

    /// Clients read their push rules from `m.push_rules` account data (spec: "Push Rules").
    /// A user who never changed them has none stored: an initial sync sends the defaults.
    async fn add_default_push_rules(
        &self,
        user_id: &ruma::UserId,
        account_data: &[AccountDataEntry],
        filter: &FilterDefinition,
        response: &mut v3::Response,
    ) -> Result<()> {
        const PUSH_RULES: &str = "m.push_rules";
        let stored = account_data
            .iter()
            .any(|entry| entry.room_id.is_none() && entry.data_type == PUSH_RULES);
        if stored || !event_selected(&filter.account_data, PUSH_RULES, None) {
            return Ok(());
        }
        let ruleset = self.users.push_rules(user_id).await?;
        let event = serde_json::json!({ "type": PUSH_RULES, "content": { "global": &*ruleset } });
        let raw = serde_json::value::to_raw_value(&event)
            .map_err(|e| Error::Internal(format!("push rules do not serialise: {e}")))?;
        response.account_data.events.push(Raw::from_json(raw));
        Ok(())
    }

    /// When a typing notice in one of the user's joined rooms runs out: a waiting sync must
    /// report it then, though nobody sends anything.
    async fn next_typing_expiry(
        &self,
        user_id: &ruma::UserId,
    ) -> Result<Option<tokio::time::Instant>> {
        let Some(at) = self.rooms.next_typing_expiry(user_id).await? else {
            return Ok(None);
        };
        let wait = u64::try_from(at.saturating_sub(now_ms())).unwrap_or_default();
        Ok(Some(
            tokio::time::Instant::now() + Duration::from_millis(wait),
        ))
    }
}

/// Whether a sync response carries no news (what a long-poll waits past).
pub fn is_empty(response: &v3::Response) -> bool {
    response.rooms.is_empty()
        && response.account_data.is_empty()
        && response.presence.is_empty()
        && response.to_device.is_empty()
        && response.device_lists.is_empty()
}

fn global_account_data(entries: &[AccountDataEntry], filter: &EventFilter) -> GlobalAccountData {
    let mut data = GlobalAccountData::new();
    data.events = entries
        .iter()
        .filter(|entry| entry.room_id.is_none() && event_selected(filter, &entry.data_type, None))
        .filter_map(crate::rooms::account_data_event)
        .collect();
    data
}

/// Whether a non-room event passes a filter's types and (if it has one) senders.
fn event_selected(filter: &EventFilter, kind: &str, sender: Option<&ruma::UserId>) -> bool {
    let sender_allowed = sender.is_none_or(|sender| {
        allowed_by(filter.senders.as_deref(), &filter.not_senders, |s| {
            s == sender
        })
    });
    sender_allowed
        && allowed_by(filter.types.as_deref(), &filter.not_types, |t| {
            pattern_matches(t, kind)
        })
}
