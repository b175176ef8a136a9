//! Presence (spec: "Presence"): each local user's state (online, unavailable, offline), status
//! message and last activity, kept in memory and shown to the users who share a room with them.
//!
//! Every visible change (state, status message, `currently_active`) takes the next position of
//! the presence stream, so a sync can ask what changed since its token; the change is stored,
//! so that a restart keeps status messages and the stream's position, and it wakes the live
//! syncs of everyone who may see it.
//!
//! Timeouts follow Synapse: an online user without activity for `idle_timeout_secs` becomes
//! unavailable; a user with no sync in progress and none for `offline_timeout_secs` becomes
//! offline.
//!
//! Over federation (spec: Server-Server API, "Presence"), a local user's change goes to every
//! server sharing a room with them as an `m.presence` EDU, and users of other servers are kept
//! as their servers report them. Their own server applies their timeouts; here a user of
//! another server who has not been reported for [`FEDERATION_TIMEOUT_MS`] goes offline, as
//! Synapse does, since their server may have gone away without a word. One background task applies them as they fall due, since the users who must see a
//! user go offline are not that user's syncs. The state machine ([`Table`]) takes the time as an
//! argument, so that tests run it on a clock of their choosing.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BinaryHeap, HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard, Weak},
    time::Duration,
};

use ruma::{
    OwnedUserId, ServerName, UInt, UserId,
    api::federation::transactions::edu::{PresenceContent, PresenceUpdate},
    events::presence::{PresenceEvent, PresenceEventContent},
    presence::PresenceState,
};
use tokio::sync::Notify;

use crate::{
    Error, Result,
    config::PresenceConfig,
    federation::edus::EduQueue,
    store::{Store, StoreError, StoredPresence},
    sync::Notifier,
    time::now_ms,
};

/// How long `currently_active` stays true after an activity (Synapse's granularity of the last
/// active time): while it is true, clients count the user as active and get no update of the
/// last active time, so its end is itself a change to publish.
const ACTIVE_WINDOW_MS: i64 = 60_000;

/// How long a user of another server stays as last reported without a new report.
const FEDERATION_TIMEOUT_MS: i64 = 30 * 60 * 1000;

/// The longest status message accepted, in bytes. The spec sets no limit, but every room-mate's
/// sync carries the message. A longer one is refused with 400 `M_INVALID_PARAM`: the request is
/// within the body size limit, only this one field is not (Synapse has no limit at all).
pub const MAX_STATUS_MSG_BYTES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Availability {
    Online,
    Unavailable,
    Offline,
}

impl Availability {
    /// The three states of the spec; `None` for any other.
    fn parse(state: &PresenceState) -> Option<Self> {
        match state {
            PresenceState::Online => Some(Self::Online),
            PresenceState::Unavailable => Some(Self::Unavailable),
            PresenceState::Offline => Some(Self::Offline),
            _ => None,
        }
    }

    fn requested(state: &PresenceState) -> Result<Self> {
        Self::parse(state).ok_or_else(|| {
            Error::InvalidParam(format!(
                "Unknown presence state {state}: expected online, unavailable or offline"
            ))
        })
    }

    fn state(self) -> PresenceState {
        match self {
            Self::Online => PresenceState::Online,
            Self::Unavailable => PresenceState::Unavailable,
            Self::Offline => PresenceState::Offline,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Timeouts {
    idle_ms: i64,
    offline_ms: i64,
}

impl Timeouts {
    fn new(config: &PresenceConfig) -> Self {
        let ms = |secs: u64| i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        Self {
            idle_ms: ms(config.idle_timeout_secs),
            offline_ms: ms(config.offline_timeout_secs),
        }
    }
}

/// What the users who may see a user are shown; a change of it is a change to publish.
type Published = (Availability, Option<String>, bool);

#[derive(Debug, Clone)]
struct Record {
    availability: Availability,
    status_msg: Option<String>,
    /// The user's last activity (ms since the epoch); `None` before the first.
    last_active_ts: Option<i64>,
    /// Whether the user was active within [`ACTIVE_WINDOW_MS`], as last published.
    currently_active: bool,
    /// The user's syncs in progress (long-polls, WebSockets).
    connections: usize,
    /// The last moment the user was known to be connected: a sync ended, or a request that
    /// keeps them online arrived.
    last_seen_ts: i64,
    /// The presence stream position of the last published change; 0 for none.
    position: i64,
    /// The deadline queued for the user in [`Table::deadlines`], if any.
    scheduled: Option<i64>,
    /// For a user of another server: when the last report lapses.
    reported_until: Option<i64>,
}

impl Record {
    fn new(now: i64) -> Self {
        Self {
            availability: Availability::Offline,
            status_msg: None,
            last_active_ts: None,
            currently_active: false,
            connections: 0,
            last_seen_ts: now,
            position: 0,
            scheduled: None,
            reported_until: None,
        }
    }

    fn published(&self) -> Published {
        (
            self.availability,
            self.status_msg.clone(),
            self.currently_active,
        )
    }

    /// Activity: the user is online and was active and connected just now.
    fn activity(&mut self, now: i64) {
        self.availability = Availability::Online;
        self.last_active_ts = Some(now);
        self.last_seen_ts = now;
    }

    /// The state a client asked for (by `PUT /presence` or a sync's `set_presence`).
    fn request(&mut self, availability: Availability, now: i64) {
        match availability {
            Availability::Online => self.activity(now),
            Availability::Unavailable => {
                self.availability = Availability::Unavailable;
                self.last_seen_ts = now;
            }
            Availability::Offline => self.availability = Availability::Offline,
        }
    }

    fn apply_timeouts(&mut self, timeouts: Timeouts, now: i64) {
        if let Some(until) = self.reported_until {
            // Another server's user: as reported, until the report lapses.
            if now >= until {
                self.availability = Availability::Offline;
                self.currently_active = false;
            }
            return;
        }
        let since = |ts: i64| now.saturating_sub(ts);
        if self.availability == Availability::Online
            && self
                .last_active_ts
                .is_none_or(|ts| since(ts) >= timeouts.idle_ms)
        {
            self.availability = Availability::Unavailable;
        }
        if self.availability != Availability::Offline
            && self.connections == 0
            && since(self.last_seen_ts) >= timeouts.offline_ms
        {
            self.availability = Availability::Offline;
        }
        self.currently_active = self.active_at(now);
    }

    fn active_at(&self, now: i64) -> bool {
        self.availability == Availability::Online
            && self
                .last_active_ts
                .is_some_and(|ts| now.saturating_sub(ts) < ACTIVE_WINDOW_MS)
    }

    /// When [`Record::apply_timeouts`] next changes something, if ever without new input.
    fn deadline(&self, timeouts: Timeouts) -> Option<i64> {
        if let Some(until) = self.reported_until {
            return (self.availability != Availability::Offline).then_some(until);
        }
        let mut deadlines = Vec::with_capacity(3);
        if self.availability == Availability::Online
            && let Some(ts) = self.last_active_ts
        {
            deadlines.push(ts.saturating_add(timeouts.idle_ms));
            if self.currently_active {
                deadlines.push(ts.saturating_add(ACTIVE_WINDOW_MS));
            }
        }
        if self.availability != Availability::Offline && self.connections == 0 {
            deadlines.push(self.last_seen_ts.saturating_add(timeouts.offline_ms));
        }
        deadlines.into_iter().min()
    }

    fn content(&self, now: i64) -> PresenceEventContent {
        let mut content = PresenceEventContent::new(self.availability.state());
        content.status_msg = self.status_msg.clone();
        content.last_active_ago = self
            .last_active_ts
            .and_then(|ts| UInt::try_from(now.saturating_sub(ts).max(0)).ok());
        // Only meaningful while online (spec: "Last active ago"); Synapse sends it only then.
        content.currently_active =
            (self.availability == Availability::Online).then_some(self.currently_active);
        content
    }

    fn stored(&self, user_id: &UserId) -> StoredPresence {
        StoredPresence {
            user_id: user_id.to_owned(),
            state: self.availability.state(),
            status_msg: self.status_msg.clone(),
            last_active_ts: self.last_active_ts,
            stream_position: self.position,
        }
    }
}

fn offline() -> PresenceEventContent {
    PresenceEventContent::new(PresenceState::Offline)
}

/// The presence of every user seen, and the transitions pending.
struct Table {
    timeouts: Timeouts,
    position: i64,
    users: HashMap<OwnedUserId, Record>,
    /// Each user at the position of their last change: the users changed after a position.
    by_position: BTreeMap<i64, OwnedUserId>,
    /// Pending deadlines, earliest first. An entry superseded by an earlier one for the same
    /// user stays queued; when due it is a harmless re-check.
    deadlines: BinaryHeap<Reverse<(i64, OwnedUserId)>>,
}

impl Table {
    fn new(timeouts: Timeouts) -> Self {
        Self {
            timeouts,
            position: 0,
            users: HashMap::new(),
            by_position: BTreeMap::new(),
            deadlines: BinaryHeap::new(),
        }
    }

    /// Takes the stored states back after a start. Nobody is connected yet: users stored as
    /// online or unavailable go offline `offline_timeout` from `now` unless they sync. Timeouts
    /// that fell due while the server was down are left to [`Table::expire`], so that they are
    /// published like any other.
    fn load(&mut self, stored: Vec<StoredPresence>, now: i64) {
        for row in stored {
            let mut record = Record::new(now);
            // The store returns only the three states of the spec.
            record.availability = Availability::parse(&row.state).unwrap_or(Availability::Offline);
            record.status_msg = row.status_msg;
            record.last_active_ts = row.last_active_ts;
            record.position = row.stream_position;
            record.currently_active = record.active_at(now);
            self.position = self.position.max(row.stream_position);
            self.by_position
                .insert(row.stream_position, row.user_id.clone());
            self.users.insert(row.user_id.clone(), record);
            self.schedule(&row.user_id);
        }
    }

    /// Queues the user's next deadline unless one at least as early is queued already.
    fn schedule(&mut self, user_id: &UserId) {
        let Some(record) = self.users.get_mut(user_id) else {
            return;
        };
        if let Some(deadline) = record.deadline(self.timeouts)
            && record.scheduled.is_none_or(|queued| deadline < queued)
        {
            record.scheduled = Some(deadline);
            self.deadlines.push(Reverse((deadline, user_id.to_owned())));
        }
    }

    /// Applies `update` to the user's record and then the timeouts due at `now`. If what others
    /// see differs from before, the change takes the next stream position and is returned.
    fn update(
        &mut self,
        user_id: &UserId,
        now: i64,
        update: impl FnOnce(&mut Record),
    ) -> Option<StoredPresence> {
        let record = self
            .users
            .entry(user_id.to_owned())
            .or_insert_with(|| Record::new(now));
        let before = record.published();
        update(record);
        record.apply_timeouts(self.timeouts, now);
        let change = if record.published() == before {
            None
        } else {
            self.position += 1;
            if record.position != 0 {
                self.by_position.remove(&record.position);
            }
            record.position = self.position;
            self.by_position.insert(self.position, user_id.to_owned());
            Some(record.stored(user_id))
        };
        self.schedule(user_id);
        change
    }

    /// `PUT /presence`: the state asked for, and the status message (`None` clears it).
    fn set(
        &mut self,
        user_id: &UserId,
        availability: Availability,
        status_msg: Option<String>,
        now: i64,
    ) -> Option<StoredPresence> {
        self.update(user_id, now, |record| {
            record.status_msg = status_msg;
            record.request(availability, now);
        })
    }

    /// A sync starts with `set_presence` online or unavailable; the status message stays.
    fn sync_started(
        &mut self,
        user_id: &UserId,
        availability: Availability,
        now: i64,
    ) -> Option<StoredPresence> {
        self.update(user_id, now, |record| {
            record.connections += 1;
            record.request(availability, now);
        })
    }

    /// A sync ends: the user stays connected for the offline timeout from now. Nothing visible
    /// changes here; timeouts already due are the timeout task's to publish.
    fn sync_ended(&mut self, user_id: &UserId, now: i64) {
        if let Some(record) = self.users.get_mut(user_id) {
            record.connections = record.connections.saturating_sub(1);
            record.last_seen_ts = now;
        }
        self.schedule(user_id);
    }

    /// Activity other than a sync or `PUT /presence` (sending an event). An offline user only
    /// gets a new last active time: a bot that never syncs does not flicker online with every
    /// message (Synapse's `bump_presence_active_time`).
    fn bump_active(&mut self, user_id: &UserId, now: i64) -> Option<StoredPresence> {
        self.update(user_id, now, |record| match record.availability {
            Availability::Offline => record.last_active_ts = Some(now),
            Availability::Online | Availability::Unavailable => record.activity(now),
        })
    }

    /// A user of another server as their server reports them at `now`.
    fn report(&mut self, user_id: &UserId, report: Report, now: i64) -> Option<StoredPresence> {
        self.update(user_id, now, |record| {
            record.availability = report.availability;
            record.status_msg = report.status_msg;
            record.last_active_ts = Some(now.saturating_sub(report.last_active_ago));
            record.currently_active =
                report.availability == Availability::Online && report.currently_active;
            record.last_seen_ts = now;
            record.reported_until = Some(now.saturating_add(FEDERATION_TIMEOUT_MS));
        })
    }

    /// Applies every timeout due at `now`, returning the changes.
    fn expire(&mut self, now: i64) -> Vec<StoredPresence> {
        let mut changes = Vec::new();
        while self
            .deadlines
            .peek()
            .is_some_and(|Reverse((at, _))| *at <= now)
        {
            let Some(Reverse((at, user_id))) = self.deadlines.pop() else {
                break;
            };
            if let Some(record) = self.users.get_mut(&user_id)
                && record.scheduled == Some(at)
            {
                record.scheduled = None;
            }
            changes.extend(self.update(&user_id, now, |_| ()));
        }
        changes
    }

    fn next_deadline(&self) -> Option<i64> {
        self.deadlines.peek().map(|Reverse((at, _))| *at)
    }

    fn get(&self, user_id: &UserId, now: i64) -> PresenceEventContent {
        self.users
            .get(user_id)
            .map_or_else(offline, |record| record.content(now))
    }

    fn changes_since(&self, since: i64, now: i64) -> Vec<(OwnedUserId, PresenceEventContent)> {
        self.by_position
            .range(since.saturating_add(1)..)
            .filter_map(|(_, user_id)| {
                let record = self.users.get(user_id)?;
                Some((user_id.clone(), record.content(now)))
            })
            .collect()
    }
}

/// What another server reports of one of its users.
#[derive(Debug, Clone)]
struct Report {
    availability: Availability,
    status_msg: Option<String>,
    /// Milliseconds since the user's last activity when reported.
    last_active_ago: i64,
    currently_active: bool,
}

/// The presence service, one per server (held by [`crate::Services`]).
pub struct Presence {
    enabled: bool,
    table: Mutex<Table>,
    store: Store,
    notifier: Arc<Notifier>,
    /// Where local users' changes go to the servers sharing a room with them.
    edus: Arc<EduQueue>,
    /// Tells the timeout task that the earliest deadline moved, or that the service is gone.
    timer: Arc<Notify>,
}

/// A sync in progress: its user counts as connected until the guard is dropped.
#[must_use = "the user counts as connected only while the guard lives"]
pub struct SyncGuard {
    connection: Option<(Arc<Presence>, OwnedUserId)>,
}

impl Drop for SyncGuard {
    fn drop(&mut self) {
        if let Some((presence, user_id)) = self.connection.take() {
            presence.change(|table| table.sync_ended(&user_id, now_ms()));
        }
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        // Lets the timeout task find the service gone and end.
        self.timer.notify_one();
    }
}

impl Presence {
    /// Loads the stored presence and starts the task that applies timeouts. With presence
    /// disabled, neither: the service then accepts and ignores every change.
    pub async fn start(
        store: Store,
        config: &PresenceConfig,
        notifier: Arc<Notifier>,
        edus: Arc<EduQueue>,
    ) -> Result<Arc<Self>, StoreError> {
        let mut table = Table::new(Timeouts::new(config));
        if config.enabled {
            table.load(store.presence_states().await?, now_ms());
        }
        let presence = Arc::new(Self {
            enabled: config.enabled,
            table: Mutex::new(table),
            store,
            notifier,
            edus,
            timer: Arc::new(Notify::new()),
        });
        if config.enabled {
            tokio::spawn(apply_timeouts(
                Arc::downgrade(&presence),
                presence.timer.clone(),
            ));
        }
        Ok(presence)
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // The table is consistent after every statement; a panic elsewhere cannot break it.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `change` on the table and tells the timeout task when the earliest deadline moved.
    fn change<T>(&self, change: impl FnOnce(&mut Table) -> T) -> T {
        let mut table = self.table();
        let before = table.next_deadline();
        let result = change(&mut table);
        if table.next_deadline() != before {
            self.timer.notify_one();
        }
        result
    }

    /// Stores a change, then wakes the syncs of the user and of everyone sharing a room with
    /// them; a local user's change also goes to the other servers sharing a room with them.
    async fn publish(&self, change: StoredPresence) -> Result<()> {
        let user_id = change.user_id.clone();
        self.store.set_presence(change).await?;
        self.notifier.wake_room_mates(&self.store, &user_id).await?;
        if user_id.server_name() != self.edus.server_name() {
            return Ok(());
        }
        let now = now_ms();
        let content = self.table().get(&user_id, now);
        let mut update = PresenceUpdate::new(
            user_id.clone(),
            content.presence,
            content.last_active_ago.unwrap_or_default(),
        );
        update.currently_active = content.currently_active.unwrap_or(false);
        update.status_msg = content.status_msg;
        let edu = serde_json::to_value(PresenceContent::new(vec![update]))
            .map_err(|e| Error::Internal(format!("a presence EDU does not serialise: {e}")))?;
        // Stale once the receiver would have timed it out anyway.
        self.edus
            .to_room_mates(
                &user_id,
                "m.presence",
                edu,
                Some(now.saturating_add(FEDERATION_TIMEOUT_MS)),
            )
            .await
    }

    /// `m.presence` from `origin` about one of its users (others are ignored, as are unknown
    /// states and over-long status messages).
    pub async fn receive_remote(&self, origin: &ServerName, update: &PresenceUpdate) -> Result<()> {
        let user_id = &update.user_id;
        if !self.enabled || user_id.server_name() != origin {
            return Ok(());
        }
        let Some(availability) = Availability::parse(&update.presence) else {
            return Ok(());
        };
        if update
            .status_msg
            .as_ref()
            .is_some_and(|msg| msg.len() > MAX_STATUS_MSG_BYTES)
        {
            return Ok(());
        }
        let report = Report {
            availability,
            status_msg: update.status_msg.clone(),
            last_active_ago: i64::try_from(u64::from(update.last_active_ago)).unwrap_or(i64::MAX),
            currently_active: update.currently_active,
        };
        let change = self.change(|table| table.report(user_id, report, now_ms()));
        if let Some(change) = change {
            self.publish(change).await?;
        }
        Ok(())
    }

    /// The presence stream's current position, for sync tokens.
    pub fn position(&self) -> i64 {
        self.table().position
    }

    /// The users whose presence changed after stream position `since`, each once with their
    /// presence now, whoever may see them ([`Presence::visible_changes`] filters).
    pub fn changes_since(&self, since: i64) -> Vec<(OwnedUserId, PresenceEventContent)> {
        self.table().changes_since(since, now_ms())
    }

    /// The `m.presence` events for a sync of `observer` since stream position `since` (0 for an
    /// initial sync): the changed users who share a joined room with the observer, and the
    /// observer themself.
    pub async fn visible_changes(
        &self,
        observer: &UserId,
        since: i64,
    ) -> Result<Vec<PresenceEvent>> {
        let changes = self.changes_since(since);
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let visible: HashSet<OwnedUserId> = self
            .store
            .users_sharing_a_room(observer)
            .await?
            .into_iter()
            .collect();
        Ok(changes
            .into_iter()
            .filter(|(user_id, _)| user_id == observer || visible.contains(user_id))
            .map(|(sender, content)| PresenceEvent { content, sender })
            .collect())
    }

    /// Marks the start of a sync (long-poll or WebSocket) of the user with the sync's
    /// `set_presence`: `online` (the default) is activity, `unavailable` makes the user
    /// unavailable, and `offline` leaves presence alone, as in Synapse. The user stays connected
    /// while the returned guard lives, and goes offline `offline_timeout_secs` after the last
    /// guard is dropped unless another sync starts. Unknown states are refused
    /// (`M_INVALID_PARAM`).
    pub async fn set_from_sync(
        self: &Arc<Self>,
        user_id: &UserId,
        set_presence: &PresenceState,
    ) -> Result<SyncGuard> {
        let availability = Availability::requested(set_presence)?;
        if !self.enabled || availability == Availability::Offline {
            return Ok(SyncGuard { connection: None });
        }
        let change = self.change(|table| table.sync_started(user_id, availability, now_ms()));
        // From here on the sync counts as connected: the guard must exist before any await
        // that may fail, so that the connection is always ended.
        let guard = SyncGuard {
            connection: Some((self.clone(), user_id.to_owned())),
        };
        if let Some(change) = change {
            self.publish(change).await?;
        }
        Ok(guard)
    }

    /// Marks activity other than a sync or `PUT /presence`, such as sending an event: an
    /// unavailable user is online again and the last active time moves. An offline user stays
    /// offline, with a new last active time (as Synapse: a bot that never syncs does not flicker
    /// online with each message).
    pub async fn bump_active(&self, user_id: &UserId) -> Result<()> {
        if !self.enabled {
            return Ok(());
        }
        if let Some(change) = self.change(|table| table.bump_active(user_id, now_ms())) {
            self.publish(change).await?;
        }
        Ok(())
    }

    /// `PUT /presence/{userId}/status` for oneself: the new state and status message (absent
    /// clears it). Setting `online` is activity. With presence disabled the request is
    /// validated, accepted and ignored, as Synapse does.
    pub async fn set(
        &self,
        user_id: &UserId,
        state: &PresenceState,
        status_msg: Option<String>,
    ) -> Result<()> {
        let availability = Availability::requested(state)?;
        if status_msg
            .as_ref()
            .is_some_and(|msg| msg.len() > MAX_STATUS_MSG_BYTES)
        {
            return Err(Error::InvalidParam(format!(
                "status_msg is longer than {MAX_STATUS_MSG_BYTES} bytes"
            )));
        }
        if !self.enabled {
            return Ok(());
        }
        let change = self.change(|table| table.set(user_id, availability, status_msg, now_ms()));
        if let Some(change) = change {
            self.publish(change).await?;
        }
        Ok(())
    }

    /// `GET /presence/{userId}/status` by `observer`: the user's presence, if the observer is
    /// the user or shares a joined room with them (403 `M_FORBIDDEN` otherwise, as Synapse; a
    /// user who does not exist shares no room either). A user never seen is offline. With
    /// presence disabled everyone is offline to everyone, as Synapse answers.
    pub async fn get(&self, observer: &UserId, user_id: &UserId) -> Result<PresenceEventContent> {
        if !self.enabled {
            return Ok(offline());
        }
        if observer != user_id && !self.store.share_a_room(observer, user_id).await? {
            return Err(Error::Forbidden(
                "You are not allowed to see their presence".to_owned(),
            ));
        }
        Ok(self.table().get(user_id, now_ms()))
    }
}

/// The timeout task: applies the timeouts as they fall due and publishes the changes; ends once
/// the service is gone.
async fn apply_timeouts(presence: Weak<Presence>, timer: Arc<Notify>) {
    loop {
        let next = {
            let Some(presence) = presence.upgrade() else {
                return;
            };
            let changes = presence.table().expire(now_ms());
            for change in changes {
                let user_id = change.user_id.clone();
                if let Err(e) = presence.publish(change).await {
                    tracing::warn!(%user_id, "cannot publish a presence timeout: {e}");
                }
            }
            presence.table().next_deadline()
        };
        match next {
            Some(at) => {
                let wait = u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0);
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(wait)) => {}
                    () = timer.notified() => {}
                }
            }
            None => timer.notified().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use ruma::{owned_user_id, presence::PresenceState, room_id, user_id};

    use super::{
        ACTIVE_WINDOW_MS, Availability, EduQueue, FEDERATION_TIMEOUT_MS, Presence, Report, Table,
        Timeouts,
    };
    use crate::{
        config::PresenceConfig,
        store::testing::test_store,
        sync::{Notifier, Subscription},
    };

    const IDLE: i64 = 300_000;
    const OFFLINE: i64 = 30_000;
    const START: i64 = 1_000_000;

    fn table() -> Table {
        Table::new(Timeouts {
            idle_ms: IDLE,
            offline_ms: OFFLINE,
        })
    }

    /// The service on `store`, its EDUs queued for a server named `example.org`.
    async fn start(
        store: &crate::store::Store,
        config: &PresenceConfig,
        notifier: Arc<Notifier>,
    ) -> Arc<Presence> {
        let edus = Arc::new(EduQueue::new(
            store.clone(),
            ruma::owned_server_name!("example.org"),
        ));
        Presence::start(store.clone(), config, notifier, edus)
            .await
            .unwrap()
    }

    #[test]
    fn users_of_other_servers_stay_as_reported_until_the_report_lapses() {
        let mut table = table();
        let remote = user_id!("@bob:elsewhere.example");
        let report = |availability| Report {
            availability,
            status_msg: Some("on a train".to_owned()),
            last_active_ago: 5_000,
            currently_active: true,
        };
        let online = table
            .report(remote, report(Availability::Online), START)
            .unwrap();
        assert_eq!(online.state, PresenceState::Online);
        assert_eq!(online.last_active_ts, Some(START - 5_000));
        // No local timeout applies (their server applies its own), only the report's lapse.
        assert_eq!(table.next_deadline(), Some(START + FEDERATION_TIMEOUT_MS));
        assert!(table.expire(START + 2 * IDLE).is_empty());
        let content = table.get(remote, START + 2 * IDLE);
        assert_eq!(content.presence, PresenceState::Online);
        assert_eq!(content.status_msg.as_deref(), Some("on a train"));

        // A new report moves the lapse; the same report again changes nothing visible.
        let later = START + 2 * IDLE;
        assert!(
            table
                .report(remote, report(Availability::Online), later)
                .is_none()
        );
        assert_eq!(table.next_deadline(), Some(START + FEDERATION_TIMEOUT_MS));
        assert!(table.expire(START + FEDERATION_TIMEOUT_MS).is_empty());
        let lapsed = table.expire(later + FEDERATION_TIMEOUT_MS);
        assert_eq!(lapsed.len(), 1);
        assert_eq!(lapsed[0].state, PresenceState::Offline);
        assert_eq!(table.next_deadline(), None);
    }

    #[test]
    fn online_then_unavailable_then_offline_each_a_new_position() {
        let mut table = table();
        let alice = user_id!("@alice:example.org");

        let online = table
            .sync_started(alice, Availability::Online, START)
            .unwrap();
        assert_eq!(online.state, PresenceState::Online);
        assert_eq!(online.stream_position, 1);
        let content = table.get(alice, START + 10);
        assert_eq!(content.currently_active, Some(true));
        assert_eq!(content.last_active_ago, Some(10u32.into()));

        // Connected but idle: first no longer currently active, then unavailable.
        assert_eq!(table.next_deadline(), Some(START + ACTIVE_WINDOW_MS));
        assert!(table.expire(START + ACTIVE_WINDOW_MS - 1).is_empty());
        let inactive = table.expire(START + ACTIVE_WINDOW_MS);
        assert_eq!(inactive.len(), 1);
        assert_eq!(inactive[0].stream_position, 2);
        assert_eq!(
            table.get(alice, START + ACTIVE_WINDOW_MS).currently_active,
            Some(false)
        );
        assert_eq!(table.next_deadline(), Some(START + IDLE));
        let idle = table.expire(START + IDLE);
        assert_eq!(idle[0].state, PresenceState::Unavailable);
        assert_eq!(idle[0].stream_position, 3);
        // A sync in progress keeps an unavailable user from going offline.
        assert_eq!(table.next_deadline(), None);
        assert!(table.expire(START + 10 * IDLE).is_empty());

        let end = START + 10 * IDLE;
        table.sync_ended(alice, end);
        assert_eq!(table.next_deadline(), Some(end + OFFLINE));
        assert!(table.expire(end + OFFLINE - 1).is_empty());
        let gone = table.expire(end + OFFLINE);
        assert_eq!(gone[0].state, PresenceState::Offline);
        assert_eq!(gone[0].stream_position, 4);
        assert_eq!(table.position, 4);
        assert_eq!(table.next_deadline(), None);
        let content = table.get(alice, end + OFFLINE);
        assert_eq!(content.presence, PresenceState::Offline);
        assert_eq!(content.currently_active, None);
        assert!(content.last_active_ago.is_some());
    }

    #[test]
    fn a_new_sync_before_the_timeout_keeps_the_user_online() {
        let mut table = table();
        let alice = user_id!("@alice:example.org");
        table.sync_started(alice, Availability::Online, START);
        table.sync_ended(alice, START + 1_000);
        // The next long-poll starts within the timeout: nothing visible happens.
        assert!(
            table
                .sync_started(alice, Availability::Online, START + 2_000)
                .is_none()
        );
        assert!(table.expire(START + 1_000 + OFFLINE).is_empty());
        assert_eq!(
            table.get(alice, START + 1_000 + OFFLINE).presence,
            PresenceState::Online
        );
        assert_eq!(table.position, 1);
    }

    #[test]
    fn status_messages_survive_syncs_and_timeouts() {
        let mut table = table();
        let alice = user_id!("@alice:example.org");
        let set = table
            .set(
                alice,
                Availability::Unavailable,
                Some("at lunch".to_owned()),
                START,
            )
            .unwrap();
        assert_eq!(set.status_msg.as_deref(), Some("at lunch"));
        assert_eq!(set.last_active_ts, None);

        // A sync online brings the user back but keeps the message.
        table.sync_started(alice, Availability::Online, START + 1);
        table.sync_ended(alice, START + 2);
        let content = table.get(alice, START + 2);
        assert_eq!(content.presence, PresenceState::Online);
        assert_eq!(content.status_msg.as_deref(), Some("at lunch"));

        table.expire(START + 2 + OFFLINE);
        let content = table.get(alice, START + 2 + OFFLINE);
        assert_eq!(content.presence, PresenceState::Offline);
        assert_eq!(content.status_msg.as_deref(), Some("at lunch"));

        // Setting presence without a message clears it.
        let cleared = table
            .set(alice, Availability::Online, None, START + 3 * OFFLINE)
            .unwrap();
        assert_eq!(cleared.status_msg, None);
        // Setting the same again is no change.
        assert!(
            table
                .set(alice, Availability::Online, None, START + 3 * OFFLINE + 1)
                .is_none()
        );
    }

    #[test]
    fn changes_since_names_each_changed_user_once() {
        let mut table = table();
        let alice = user_id!("@alice:example.org");
        let bob = user_id!("@bob:example.org");
        table.set(alice, Availability::Online, None, START);
        table.set(bob, Availability::Online, None, START);
        let after_both = table.position;
        table.set(alice, Availability::Online, Some("hi".to_owned()), START);
        table.set(
            alice,
            Availability::Unavailable,
            Some("hi".to_owned()),
            START,
        );

        let all = table.changes_since(0, START);
        let users: Vec<_> = all.iter().map(|(user, _)| user.as_str()).collect();
        assert_eq!(users, [bob.as_str(), alice.as_str()]);
        let later = table.changes_since(after_both, START);
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].0, alice);
        assert_eq!(later[0].1.presence, PresenceState::Unavailable);
        assert!(table.changes_since(table.position, START).is_empty());
    }

    #[test]
    fn activity_brings_back_unavailable_users_but_not_offline_ones() {
        let mut table = table();
        let alice = user_id!("@alice:example.org");
        let bob = user_id!("@bob:example.org");
        table.set(alice, Availability::Unavailable, None, START);
        let back = table.bump_active(alice, START + 1).unwrap();
        assert_eq!(back.state, PresenceState::Online);
        assert_eq!(back.last_active_ts, Some(START + 1));

        assert!(table.bump_active(bob, START).is_none());
        let content = table.get(bob, START + 5);
        assert_eq!(content.presence, PresenceState::Offline);
        assert_eq!(content.last_active_ago, Some(5u32.into()));
    }

    #[test]
    fn loaded_states_keep_messages_and_positions_and_time_out() {
        let mut table = table();
        let alice = user_id!("@alice:example.org");
        table.set(
            alice,
            Availability::Online,
            Some("back soon".to_owned()),
            START,
        );
        let stored = table.users[alice].stored(alice);

        let mut restarted = self::table();
        let later = START + 1_000;
        restarted.load(vec![stored], later);
        assert_eq!(restarted.position, 1);
        assert_eq!(restarted.changes_since(0, later).len(), 1);
        let content = restarted.get(alice, later);
        assert_eq!(content.presence, PresenceState::Online);
        assert_eq!(content.status_msg.as_deref(), Some("back soon"));
        // Nobody syncs after the restart: offline once the timeout has passed since the start.
        let gone = restarted.expire(later + OFFLINE);
        assert_eq!(gone.last().map(|c| &c.state), Some(&PresenceState::Offline));
        assert_eq!(
            restarted.get(alice, later + OFFLINE).status_msg.as_deref(),
            Some("back soon")
        );
    }

    #[tokio::test]
    async fn status_messages_are_stored_and_reloaded() {
        let (store, _db) = test_store().await;
        let config = PresenceConfig::default();
        let alice = owned_user_id!("@alice:example.org");
        let presence = start(&store, &config, Arc::new(Notifier::default())).await;
        presence
            .set(&alice, &PresenceState::Unavailable, Some("away".to_owned()))
            .await
            .unwrap();
        assert_eq!(presence.position(), 1);
        drop(presence);

        let presence = start(&store, &config, Arc::new(Notifier::default())).await;
        assert_eq!(presence.position(), 1);
        let content = presence.get(&alice, &alice).await.unwrap();
        assert_eq!(content.presence, PresenceState::Unavailable);
        assert_eq!(content.status_msg.as_deref(), Some("away"));
    }

    async fn woken(subscription: &mut Subscription) -> Result<(), tokio::time::error::Elapsed> {
        tokio::time::timeout(Duration::from_secs(10), subscription.changed()).await
    }

    #[tokio::test]
    async fn changes_and_timeouts_wake_room_mates_syncs() {
        let (store, _db) = test_store().await;
        let room = room_id!("!room:example.org");
        let alice = owned_user_id!("@alice:example.org");
        let bob = owned_user_id!("@bob:example.org");
        let stranger = owned_user_id!("@stranger:example.org");
        store.set_test_membership(room, &alice, "join").await;
        store.set_test_membership(room, &bob, "join").await;
        let config = PresenceConfig {
            idle_timeout_secs: 1,
            offline_timeout_secs: 1,
            ..PresenceConfig::default()
        };
        let notifier = Arc::new(Notifier::default());
        let presence = start(&store, &config, notifier.clone()).await;
        let mut bobs_sync = notifier.subscribe(&bob);
        let mut strangers_sync = notifier.subscribe(&stranger);

        let sync = presence
            .set_from_sync(&alice, &PresenceState::Online)
            .await
            .unwrap();
        woken(&mut bobs_sync).await.expect("bob sees alice online");
        let seen = presence.visible_changes(&bob, 0).await.unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].sender, alice);
        assert!(
            presence
                .visible_changes(&stranger, 0)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(presence.get(&stranger, &alice).await.is_err());

        // No activity while the sync lasts: the timeout task makes alice unavailable.
        woken(&mut bobs_sync).await.expect("bob sees alice idle");
        let position = presence.position();
        assert_eq!(
            presence.get(&bob, &alice).await.unwrap().presence,
            PresenceState::Unavailable
        );
        // Once the sync ends, she goes offline a second later.
        drop(sync);
        woken(&mut bobs_sync).await.expect("bob sees alice offline");
        assert_eq!(
            presence.get(&bob, &alice).await.unwrap().presence,
            PresenceState::Offline
        );
        let changes = presence.changes_since(position);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].1.presence, PresenceState::Offline);
        assert!(
            tokio::time::timeout(Duration::ZERO, strangers_sync.changed())
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn requests_are_validated_and_ignored_when_disabled() {
        let (store, _db) = test_store().await;
        let config = PresenceConfig {
            enabled: false,
            ..PresenceConfig::default()
        };
        let alice = owned_user_id!("@alice:example.org");
        let presence = start(&store, &config, Arc::new(Notifier::default())).await;
        let too_long = "x".repeat(super::MAX_STATUS_MSG_BYTES + 1);
        assert!(
            presence
                .set(&alice, &PresenceState::Online, Some(too_long))
                .await
                .is_err()
        );
        assert!(
            presence
                .set(&alice, &PresenceState::from("busy"), None)
                .await
                .is_err()
        );
        presence
            .set(&alice, &PresenceState::Online, Some("here".to_owned()))
            .await
            .unwrap();
        let _sync = presence
            .set_from_sync(&alice, &PresenceState::Online)
            .await
            .unwrap();
        assert_eq!(presence.position(), 0);
        let content = presence.get(&alice, &alice).await.unwrap();
        assert_eq!(content.presence, PresenceState::Offline);
        assert_eq!(content.status_msg, None);
    }
}
