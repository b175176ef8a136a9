//! Sync helpers: `GET /sync` with a since token, filter and timeout, and accessors for the
//! parts of a response the tests look at.

use serde_json::{Value, json};

use crate::V3;
use crate::client::{Response, User};
use crate::util::enc;

/// The query of one `/sync` request.
#[derive(Default, Clone)]
pub struct SyncQuery<'a> {
    pub since: Option<&'a str>,
    /// A filter ID or inline JSON.
    pub filter: Option<&'a str>,
    pub timeout_ms: Option<u64>,
    pub full_state: bool,
}

impl SyncQuery<'_> {
    pub fn path(&self) -> String {
        let mut params = Vec::new();
        if let Some(since) = self.since {
            params.push(format!("since={}", enc(since)));
        }
        if let Some(filter) = self.filter {
            params.push(format!("filter={}", enc(filter)));
        }
        if let Some(timeout) = self.timeout_ms {
            params.push(format!("timeout={timeout}"));
        }
        if self.full_state {
            params.push("full_state=true".to_owned());
        }
        format!("{V3}/sync?{}", params.join("&"))
    }
}

impl User {
    /// `GET /sync` as given; the raw response.
    pub async fn sync_raw(&self, query: &SyncQuery<'_>) -> Response {
        self.client.get(&query.path()).await
    }

    /// `GET /sync`; asserts 200.
    pub async fn sync(&self, query: &SyncQuery<'_>) -> Value {
        self.sync_raw(query).await.ok()
    }

    /// An initial sync; asserts 200.
    pub async fn initial_sync(&self) -> Value {
        self.sync(&SyncQuery::default()).await
    }

    /// An incremental sync from `since` that returns at once.
    pub async fn sync_since(&self, since: &str) -> Value {
        self.sync(&SyncQuery {
            since: Some(since),
            timeout_ms: Some(0),
            ..SyncQuery::default()
        })
        .await
    }
}

/// `next_batch` of a sync response.
#[track_caller]
pub fn next_batch(sync: &Value) -> String {
    sync["next_batch"]
        .as_str()
        .unwrap_or_else(|| panic!("no next_batch in {sync}"))
        .to_owned()
}

/// `rooms.<section>.<room_id>`, or `Value::Null` if the room is not there.
pub fn room<'a>(sync: &'a Value, section: &str, room_id: &str) -> &'a Value {
    &sync["rooms"][section][room_id]
}

/// The events of `rooms.join.<room_id>.timeline`, empty if the room is not there.
pub fn timeline<'a>(sync: &'a Value, room_id: &str) -> Vec<&'a Value> {
    room(sync, "join", room_id)["timeline"]["events"]
        .as_array()
        .map(|events| events.iter().collect())
        .unwrap_or_default()
}

/// The events of `rooms.join.<room_id>.state`, empty if there are none.
pub fn state<'a>(sync: &'a Value, room_id: &str) -> Vec<&'a Value> {
    room(sync, "join", room_id)["state"]["events"]
        .as_array()
        .map(|events| events.iter().collect())
        .unwrap_or_default()
}

/// The bodies of the `m.room.message` events among `events`, in order.
pub fn bodies(events: &[&Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

/// The ephemeral event of `kind` in the joined room, if any.
pub fn ephemeral<'a>(sync: &'a Value, room_id: &str, kind: &str) -> Option<&'a Value> {
    room(sync, "join", room_id)["ephemeral"]["events"]
        .as_array()?
        .iter()
        .find(|e| e["type"] == kind)
}

/// An inline filter with this timeline limit, and lazy-loaded members if asked.
pub fn timeline_filter(limit: u64, lazy_load_members: bool) -> String {
    json!({
        "room": {
            "timeline": { "limit": limit },
            "state": { "lazy_load_members": lazy_load_members },
        }
    })
    .to_string()
}

/// Waits until at least `count` syncs are parked on the server, waiting to be woken (the
/// `tessera_sync_waiting` gauge of `/metrics`), so that what a test does next must wake them.
pub async fn wait_for_parked_syncs(server: &crate::TestServer, count: u64) {
    let client = server.client();
    crate::wait_until(
        &format!("{count} parked syncs"),
        std::time::Duration::from_secs(20),
        || {
            let client = client.clone();
            async move {
                let resp = client.get("/metrics").await;
                resp.text
                    .lines()
                    .find_map(|line| line.strip_prefix("tessera_sync_waiting "))
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .filter(|n| *n >= count)
            }
        },
    )
    .await;
}
