//! `idle-syncs` and `idle-websockets`: what live syncs that wait cost a server. `--connections`
//! of them are opened with nothing to report (`/sync` long-polls, or Tessera's WebSockets),
//! the server's resident memory is read with all of them open, and then one message is sent
//! into the room their users share and timed until every connection has delivered it, which
//! also proves they were all alive.

use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinSet;

use super::{Accounts, CommonArgs, RegisteredUser, register_all};
use crate::client::{CsClient, RequestError, SyncQuery};
use crate::load::run_setup;
use crate::process::{open_fds, rss_kib};
use crate::stats::{Latencies, ScenarioReport};

/// Longer than opening all connections takes; a long-poll answered before the message counts as
/// an error. Tessera's longest wait.
const LONG_POLL: Duration = Duration::from_secs(300);

/// Connections opened together before waiting for the server to have accepted them, so that
/// the server's listen backlog (Twisted's is 50) never overflows into SYN retries.
const OPEN_BATCH: usize = 100;

/// How often the server's memory and descriptors are read.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(200);

/// Memory counts as settled once it moved less than this (or [`SETTLED_KIB`]) over
/// [`SETTLE_WINDOW`].
const SETTLED_FRACTION: f64 = 0.005;
const SETTLED_KIB: u64 = 1024;
const SETTLE_WINDOW: Duration = Duration::from_secs(2);

#[derive(Args)]
pub struct IdleArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Live syncs held open at once, each with a filter of its own (so that no server can
    /// answer two from one computation).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub connections: u32,
    /// Users holding them, in turn, all members of one room.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub users: u32,
    /// The server's process, whose resident memory (`VmRSS`) and open descriptors are read.
    #[arg(long)]
    pub server_pid: u32,
}

/// How the idle live syncs wait.
#[derive(Clone, Copy, PartialEq)]
pub enum Transport {
    LongPoll,
    WebSocket,
}

impl Transport {
    fn scenario(self) -> &'static str {
        match self {
            Self::LongPoll => "idle-syncs",
            Self::WebSocket => "idle-websockets",
        }
    }

    fn connections(self) -> &'static str {
        match self {
            Self::LongPoll => "long-polls",
            Self::WebSocket => "websockets",
        }
    }
}

pub async fn run(args: &IdleArgs, transport: Transport) -> Result<ScenarioReport, String> {
    let scenario = transport.scenario();
    let (connections, pid) = (args.connections as usize, args.server_pid);
    // Every open long-poll holds a connection of its own. The setup's connections are closed
    // before the server's descriptors are counted; the sender's is opened after.
    let idle_client = args.common.client(0)?;
    let client = args.common.client(args.users as usize)?;
    let accounts = Accounts::generate();
    let users = register_all(
        scenario,
        &client,
        &args.common,
        &accounts,
        args.users as usize,
    )
    .await?;
    let room_id = shared_room(scenario, &client, &args.common, &users).await?;
    let positions = run_setup(
        &format!("{scenario}: initial syncs"),
        args.common.concurrency(),
        users.len(),
        |i| {
            let client = &client;
            let token = users[i].token();
            async move {
                let query = SyncQuery {
                    filter: Some(&filter(i)),
                    set_presence: Some("offline"),
                    ..SyncQuery::default()
                };
                (
                    "initial sync",
                    client.sync(token, &query).await.map(|b| b.next_batch),
                )
            }
        },
    )
    .await?;
    drop(client);

    let (before_kib, base_fds) = settled(pid, args.common.timeout_secs).await?;
    eprintln!(
        "{scenario}: server at {} MiB; opening {connections} {}",
        before_kib / 1024,
        transport.connections()
    );
    let (reports, mut arrivals) = mpsc::unbounded_channel();
    let mut tasks = JoinSet::new();
    let opening = Instant::now();
    for first in (0..connections).step_by(OPEN_BATCH) {
        let batch = first..connections.min(first + OPEN_BATCH);
        for i in batch.clone() {
            let user = i % users.len();
            let idle = IdleSync {
                client: idle_client.clone(),
                token: users[user].token().to_owned(),
                since: positions[user].clone(),
                filter: filter(i),
                connection: i,
                reports: reports.clone(),
            };
            match transport {
                Transport::LongPoll => tasks.spawn(idle.long_poll()),
                Transport::WebSocket => tasks.spawn(idle.socket()),
            };
        }
        wait_for_fds(pid, base_fds + batch.end, args.common.timeout_secs).await?;
    }
    let mut latencies = Latencies::default();
    if transport == Transport::WebSocket {
        // A socket is idle once its first frame (the sync since `since`) came.
        collect(
            &mut arrivals,
            connections,
            args.common.timeout_secs,
            |arrival| {
                if let Err(error) = arrival.outcome {
                    latencies.record_error(format!("connection {}: {error}", arrival.connection));
                }
            },
        )
        .await;
    }
    let (with_kib, _) = settled(pid, args.common.timeout_secs).await?;
    let per_connection_kib = with_kib.saturating_sub(before_kib) as f64 / connections as f64;
    eprintln!(
        "{scenario}: {connections} {} open after {:.1} s; server at {} MiB ({per_connection_kib:.1} KiB each)",
        transport.connections(),
        opening.elapsed().as_secs_f64(),
        with_kib / 1024
    );

    // Anything that came in while idle is an answer the server should not have sent.
    while let Ok(early) = arrivals.try_recv() {
        latencies.record_error(format!(
            "connection {} answered before the message: {:?}",
            early.connection, early.outcome
        ));
    }
    let body = format!("{scenario} wake-up");
    let client = args.common.client(1)?;
    let started = Instant::now();
    let sent = client
        .send_text(users[0].token(), &room_id, "wake-up", &body)
        .await;
    if let Err(error) = sent {
        return Err(format!(
            "{scenario}: the message could not be sent: {error}"
        ));
    }
    let mut delivered = vec![false; connections];
    collect(
        &mut arrivals,
        connections,
        args.common.timeout_secs,
        |arrival| match arrival.outcome {
            Ok(bodies) if bodies.contains(&body) && !delivered[arrival.connection] => {
                delivered[arrival.connection] = true;
                latencies.record_success(arrival.at - started);
            }
            Ok(bodies) => latencies.record_error(format!(
                "connection {} answered without the message: {bodies:?}",
                arrival.connection
            )),
            Err(error) => {
                latencies.record_error(format!("connection {}: {error}", arrival.connection))
            }
        },
    )
    .await;
    let missing = delivered.iter().filter(|d| !**d).count();
    if missing > 0 {
        latencies.record_error(format!(
            "{missing} connections had not delivered the message {} s after it was sent",
            args.common.timeout_secs
        ));
    }
    let operation = format!("message to {connections} idle {}", transport.connections());
    let report = latencies.report(&operation, started.elapsed());
    tasks.shutdown().await;

    Ok(ScenarioReport {
        scenario: scenario.into(),
        base_url: args.common.base_url.clone(),
        parameters: json!({
            "connections": connections,
            "users": users.len(),
            "long_poll_ms": LONG_POLL.as_millis(),
            // Measured, not chosen.
            "server_rss": {
                "before_mib": before_kib / 1024,
                "with_connections_mib": with_kib / 1024,
                "per_connection_kib": (per_connection_kib * 10.0).round() / 10.0,
            },
        }),
        operations: vec![report],
    })
}

/// Untimed setup: the first user creates a public room and the others join it.
async fn shared_room(
    scenario: &str,
    client: &CsClient,
    common: &CommonArgs,
    users: &[RegisteredUser],
) -> Result<String, String> {
    let (creator, joiners) = users.split_first().expect("--users is at least 1");
    let room_id = client
        .create_room(creator.token(), "public_chat")
        .await
        .map_err(|e| format!("{scenario}: cannot create the room: {e}"))?;
    run_setup(
        &format!("{scenario}: joined"),
        common.concurrency(),
        joiners.len(),
        |i| {
            let room_id = &room_id;
            async move { ("join", client.join_room(joiners[i].token(), room_id).await) }
        },
    )
    .await?;
    Ok(room_id)
}

/// Connection `i`'s filter: a short timeline, no presence, and an event type of its own left
/// out, so that no two connections share a filter.
fn filter(i: usize) -> String {
    json!({
        "room": {
            "timeline": { "limit": 10, "not_types": [format!("bench.idle.{i}")] },
            "state": { "lazy_load_members": true },
        },
        "presence": { "types": [] },
    })
    .to_string()
}

/// What a connection answered, and when: message bodies, or why it failed.
struct Arrival {
    connection: usize,
    at: Instant,
    outcome: Result<Vec<String>, String>,
}

/// One idle live sync, reporting each answer it gets.
struct IdleSync {
    client: CsClient,
    token: String,
    since: String,
    filter: String,
    connection: usize,
    reports: UnboundedSender<Arrival>,
}

impl IdleSync {
    fn query(&self) -> SyncQuery<'_> {
        SyncQuery {
            since: Some(&self.since),
            timeout: Some(LONG_POLL),
            filter: Some(&self.filter),
            set_presence: Some("offline"),
        }
    }

    fn report(&self, outcome: Result<Vec<String>, String>) -> bool {
        let arrival = Arrival {
            connection: self.connection,
            at: Instant::now(),
            outcome,
        };
        self.reports.send(arrival).is_ok()
    }

    /// One long-poll: its answer is the one report.
    async fn long_poll(self) {
        let polled = self.client.sync(&self.token, &self.query()).await;
        self.report(
            polled
                .map(|batch| batch.message_bodies)
                .map_err(|e: RequestError| e.to_string()),
        );
    }

    /// A WebSocket from `since`: its first frame, then the next, are the reports.
    async fn socket(self) {
        let mut socket = match self.client.sync_socket(&self.token, &self.query()).await {
            Ok(Some(socket)) => socket,
            Ok(None) => {
                self.report(Err(
                    "the server has no WebSocket sync transport (404)".into()
                ));
                return;
            }
            Err(error) => {
                self.report(Err(error));
                return;
            }
        };
        for _ in 0..2 {
            let frame = socket.next_sync().await.map(|batch| batch.message_bodies);
            let failed = frame.is_err();
            if !self.report(frame) || failed {
                return;
            }
        }
        // Held open until the scenario ends, answering pings meanwhile.
        while socket.next_sync().await.is_ok() {}
    }
}

/// Hands `expected` arrivals to `each`, or as many as come before the timeout.
async fn collect(
    arrivals: &mut UnboundedReceiver<Arrival>,
    expected: usize,
    timeout_secs: u64,
    mut each: impl FnMut(Arrival),
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout_secs);
    for _ in 0..expected {
        match tokio::time::timeout_at(deadline, arrivals.recv()).await {
            Ok(Some(arrival)) => each(arrival),
            _ => return,
        }
    }
}

/// Waits until the server holds `fds` descriptors: it has accepted the connections opened.
async fn wait_for_fds(pid: u32, fds: usize, timeout_secs: u64) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    loop {
        let open = open_fds(pid).ok_or("cannot read the server's descriptors")?;
        if open >= fds {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the server holds {open} descriptors {timeout_secs} s on, not the {fds} expected"
            ));
        }
        tokio::time::sleep(SAMPLE_INTERVAL / 4).await;
    }
}

/// The server's resident memory (KiB) and open descriptors once they stopped moving: it has
/// taken in what it was sent, and closed what was closed.
async fn settled(pid: u32, timeout_secs: u64) -> Result<(u64, usize), String> {
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    let window = (SETTLE_WINDOW.as_millis() / SAMPLE_INTERVAL.as_millis()) as usize;
    let mut samples = Vec::new();
    loop {
        let rss = rss_kib(pid).ok_or("cannot read the server's memory")?;
        let fds = open_fds(pid).ok_or("cannot read the server's descriptors")?;
        samples.push((rss, fds));
        if let Some(recent) = samples
            .len()
            .checked_sub(window)
            .map(|from| &samples[from..])
        {
            let low = recent.iter().map(|s| s.0).min().unwrap_or(rss);
            let allowed = SETTLED_KIB.max((rss as f64 * SETTLED_FRACTION) as u64);
            let fds_still = recent.iter().all(|s| s.1 == fds);
            let high = recent.iter().map(|s| s.0).max().unwrap_or(rss);
            if high - low <= allowed && fds_still {
                return Ok((high, fds));
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the server's memory still moves {timeout_secs} s on"
            ));
        }
        tokio::time::sleep(SAMPLE_INTERVAL).await;
    }
}
