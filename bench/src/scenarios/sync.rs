//! `sync`: how fast `/sync` hands out what happens: one message to one live sync (`delivery`),
//! one message to a room full of live syncs (`fan-out`), and the first sync of a user in many
//! rooms (`initial sync`).

use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinSet;

use super::{Accounts, CommonArgs, RegisteredUser, register_all};
use crate::client::{CsClient, RequestError, Session, SyncQuery};
use crate::load::run_setup;
use crate::stats::{Latencies, OperationReport, ScenarioReport};

/// How long a live sync's long-poll may wait for something new, as clients typically ask.
const LONG_POLL: Duration = Duration::from_secs(30);

/// The live syncs' filter: a short timeline, members lazy-loaded and no presence, so that a
/// response carries little besides the new message.
const LIVE_FILTER: &str = r#"{"room":{"timeline":{"limit":10},"state":{"lazy_load_members":true}},"presence":{"types":[]}}"#;

/// Members of each room of the `initial sync` user, that user included.
const ROOM_MEMBERS: usize = 4;

/// How long a live sync waits after a failed poll before polling again.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// The shortest pauses between two timed messages; see [`LiveSyncs::time_messages`].
const DELIVERY_SETTLE: Duration = Duration::from_millis(10);
const FAN_OUT_SETTLE: Duration = Duration::from_secs(1);

#[derive(Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// `delivery`: messages timed from the start of their send to their arrival in the other
    /// member's live sync, one at a time.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub messages: u32,
    /// `fan-out`: members of the room, each with a live sync that must receive every message.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub members: u32,
    /// `fan-out`: messages timed until every member's live sync received them, one at a time.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub fanout_rounds: u32,
    /// `initial sync`: rooms the syncing user is in.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub sync_rooms: u32,
    /// `initial sync`: messages in each of those rooms.
    #[arg(long, default_value_t = 20)]
    pub history: u32,
    /// `initial sync`: syncs timed, one at a time, each by a new device of the user.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub initial_syncs: u32,
}

pub async fn run(args: &SyncArgs) -> Result<ScenarioReport, String> {
    let members = args.members as usize;
    // An idle connection kept for every live sync, so that each long-poll sent again after an
    // answer reuses its connection rather than opening one while a timed message is under way.
    let client = args.common.client(members + 1)?;
    let accounts = Accounts::generate();
    let count = 2 + members + ROOM_MEMBERS;
    let mut users = register_all("sync", &client, &args.common, &accounts, count).await?;
    // Each operation has users of its own, so no one's sync carries another operation's rooms.
    let sync_users = users.split_off(2 + members);
    let fan_out_members = users.split_off(2);
    let transports = transports(&client, &users[0]).await?;
    let mut operations =
        delivery(&client, &args.common, &users, args.messages, &transports).await?;
    operations.extend(
        fan_out(
            &client,
            &args.common,
            &fan_out_members,
            args.fanout_rounds,
            &transports,
        )
        .await?,
    );
    operations.push(initial_sync(&client, &args.common, &accounts, &sync_users, args).await?);

    Ok(ScenarioReport {
        scenario: "sync".into(),
        base_url: args.common.base_url.clone(),
        parameters: json!({
            "messages": args.messages,
            "members": args.members,
            "fanout_rounds": args.fanout_rounds,
            "sync_rooms": args.sync_rooms,
            "history": args.history,
            "room_members": ROOM_MEMBERS,
            "initial_syncs": args.initial_syncs,
            "long_poll_ms": LONG_POLL.as_millis(),
            "concurrency": args.common.concurrency,
            "registration": args.common.registration_kind(),
        }),
        operations,
    })
}

/// How a live sync hears of news: `/sync` long-polls, which every server has, or Tessera's
/// WebSocket transport.
#[derive(Clone, Copy, PartialEq)]
enum Transport {
    LongPoll,
    WebSocket,
}

impl Transport {
    /// The operation's name over this transport: long-polls keep the plain names.
    fn operation(self, name: &str) -> &'static str {
        match self {
            Self::LongPoll => leak(name.to_owned()),
            Self::WebSocket => leak(format!("{name} (websocket)")),
        }
    }
}

/// Operation names are `&'static str`; the scenario makes a handful per run.
fn leak(name: String) -> &'static str {
    Box::leak(name.into_boxed_str())
}

/// The transports the server offers: long-polls, and the WebSocket transport if it has one.
async fn transports(client: &CsClient, user: &RegisteredUser) -> Result<Vec<Transport>, String> {
    let probe = client.sync_socket(user.token(), &live_query(None)).await?;
    if probe.is_none() {
        eprintln!("sync: the server has no WebSocket sync transport; long-polls only");
    }
    Ok(match probe {
        Some(_) => vec![Transport::LongPoll, Transport::WebSocket],
        None => vec![Transport::LongPoll],
    })
}

/// `delivery`: a sender and a receiver in one room, the receiver's live sync timing each
/// message, once per transport.
async fn delivery(
    client: &CsClient,
    common: &CommonArgs,
    pair: &[RegisteredUser],
    messages: u32,
    transports: &[Transport],
) -> Result<Vec<OperationReport>, String> {
    let (sender, receiver) = pair
        .split_first()
        .expect("two users registered for delivery");
    let room_id = shared_room("delivery", client, common, sender, receiver).await?;
    let mut reports = Vec::new();
    for &transport in transports {
        let operation = transport.operation("delivery");
        let live = LiveSyncs::start(operation, client, common, receiver, transport).await?;
        eprintln!(
            "sync: {operation}: {messages} messages, each sent once the previous one arrived"
        );
        reports.push(
            live.time_messages(sender, &room_id, messages, DELIVERY_SETTLE)
                .await?,
        );
    }
    Ok(reports)
}

/// `fan-out`: every member of one room has a live sync; each message is timed until the last of
/// them received it, once per transport.
async fn fan_out(
    client: &CsClient,
    common: &CommonArgs,
    members: &[RegisteredUser],
    rounds: u32,
    transports: &[Transport],
) -> Result<Vec<OperationReport>, String> {
    let (sender, others) = members.split_first().expect("--members is at least 1");
    let room_id = shared_room("fan-out", client, common, sender, others).await?;
    let mut reports = Vec::new();
    for &transport in transports {
        let operation = transport.operation("fan-out");
        let live = LiveSyncs::start(operation, client, common, members, transport).await?;
        eprintln!(
            "sync: {operation}: {rounds} messages, each to {} live syncs",
            members.len()
        );
        reports.push(
            live.time_messages(sender, &room_id, rounds, FAN_OUT_SETTLE)
                .await?,
        );
    }
    Ok(reports)
}

/// Untimed setup: `creator` creates a public room and `joiners` join it at `--concurrency`.
async fn shared_room(
    operation: &str,
    client: &CsClient,
    common: &CommonArgs,
    creator: &RegisteredUser,
    joiners: &[RegisteredUser],
) -> Result<String, String> {
    let room_id = client
        .create_room(creator.token(), "public_chat")
        .await
        .map_err(|e| format!("{operation}: cannot create the room: {e}"))?;
    let label = format!("sync: {operation}: joined");
    run_setup(&label, common.concurrency(), joiners.len(), |i| {
        let room_id = &room_id;
        async move { ("join", client.join_room(joiners[i].token(), room_id).await) }
    })
    .await?;
    Ok(room_id)
}

/// What a live sync saw, and when: a message's body, or why a poll failed.
struct Arrival {
    member: usize,
    at: Instant,
    message: Result<String, String>,
}

/// How one timed message fared.
enum Delivery {
    /// Every live sync received it, this long after its send started.
    Delivered(Duration),
    /// Its send failed, or a poll failed while it was awaited.
    Failed(String),
    /// Not every live sync had it by the deadline: they are not keeping up, and timing further
    /// messages would only wait out more deadlines.
    Lost(String),
}

/// One live sync per member: a task long-polling `/sync` again and again, as a client does (or
/// reading a WebSocket's sync frames), reporting every message it receives on a channel shared
/// by all of them.
struct LiveSyncs {
    operation: &'static str,
    client: CsClient,
    /// How long after its send a message may take to reach every live sync.
    timeout: Duration,
    members: usize,
    arrivals: UnboundedReceiver<Arrival>,
    tasks: JoinSet<()>,
}

impl LiveSyncs {
    /// Untimed: every member's initial sync, at `--concurrency`, then its live sync from there.
    async fn start(
        operation: &'static str,
        client: &CsClient,
        common: &CommonArgs,
        members: &[RegisteredUser],
        transport: Transport,
    ) -> Result<Self, String> {
        let label = format!("sync: {operation}: initial syncs");
        let positions = run_setup(&label, common.concurrency(), members.len(), |member| {
            let token = members[member].token();
            async move {
                let synced = client.sync(token, &live_query(None)).await;
                (
                    "initial sync",
                    synced.map(|batch| (member, batch.next_batch)),
                )
            }
        })
        .await?;
        let (reports, arrivals) = mpsc::unbounded_channel();
        let mut tasks = JoinSet::new();
        for (member, since) in positions {
            let token = members[member].token().to_owned();
            let (client, reports) = (client.clone(), reports.clone());
            match transport {
                Transport::LongPoll => {
                    tasks.spawn(live_sync(client, token, since, member, reports))
                }
                Transport::WebSocket => {
                    tasks.spawn(live_socket(client, token, since, member, reports))
                }
            };
        }
        Ok(Self {
            operation,
            client: client.clone(),
            timeout: Duration::from_secs(common.timeout_secs),
            members: members.len(),
            arrivals,
            tasks,
        })
    }

    /// Sends an untimed warm-up message, then `count` timed ones, one at a time, and stops the
    /// live syncs. A sample is the time from the start of a message's send until the last live
    /// sync received it.
    ///
    /// Each sample should time parked long-polls being woken, not polls that find the message
    /// already there when they come in. A poll is parked once the server has taken it in and
    /// found nothing to report, which a client cannot observe, so: every live sync receiving
    /// the warm-up message proves that each loop is alive, and each loop sends its next poll
    /// right after an answer. Before each message the sender then pauses for as long as the
    /// previous message took to reach every live sync (at least `settle`): taking in N polls
    /// with nothing to report costs a server less than answering N polls with a message. A poll
    /// that was not parked yet still gets the message, from its `since` token, just without
    /// waiting for it.
    async fn time_messages(
        mut self,
        sender: &RegisteredUser,
        room_id: &str,
        count: u32,
        settle: Duration,
    ) -> Result<OperationReport, String> {
        let operation = self.operation;
        let warm_up = format!("{operation} warm-up");
        // Each operation's transaction IDs are its own: a repeated one would not send anew.
        let txn: String = operation
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        let warm_up_txn = format!("{txn}-warm-up");
        let mut previous = match self.deliver(sender, room_id, &warm_up_txn, &warm_up).await {
            Delivery::Delivered(latency) => latency,
            Delivery::Failed(error) | Delivery::Lost(error) => {
                return Err(format!("{operation}: the warm-up message: {error}"));
            }
        };
        let started = Instant::now();
        let mut latencies = Latencies::default();
        for i in 0..count {
            tokio::time::sleep(previous.max(settle)).await;
            let body = format!("{operation} {i}");
            match self
                .deliver(sender, room_id, &format!("{txn}-m{i}"), &body)
                .await
            {
                Delivery::Delivered(latency) => {
                    latencies.record_success(latency);
                    previous = latency;
                }
                Delivery::Failed(error) => latencies.record_error(error),
                Delivery::Lost(error) => {
                    let unsent = count - i - 1;
                    latencies.record_error(format!("{error}; {unsent} further messages not sent"));
                    break;
                }
            }
        }
        let report = latencies.report(operation, started.elapsed());
        self.tasks.shutdown().await;
        Ok(report)
    }

    /// Sends `body` and waits until every live sync has received it, or until the timeout after
    /// the send started.
    async fn deliver(
        &mut self,
        sender: &RegisteredUser,
        room_id: &str,
        txn_id: &str,
        body: &str,
    ) -> Delivery {
        // Late reports about earlier messages say nothing about this one.
        while self.arrivals.try_recv().is_ok() {}
        let started = Instant::now();
        let sent = self.client.send_text(sender.token(), room_id, txn_id, body);
        if let Err(error) = sent.await {
            return Delivery::Failed(error.to_string());
        }
        let deadline = tokio::time::Instant::from_std(started + self.timeout);
        let mut received = vec![false; self.members];
        let mut missing = self.members;
        let mut last = started;
        let mut poll_error = None;
        while missing > 0 {
            // `None` would mean that every live sync ended, which only panics do.
            let Ok(Some(arrival)) = tokio::time::timeout_at(deadline, self.arrivals.recv()).await
            else {
                return Delivery::Lost(format!(
                    "{missing} of {} live syncs had not received it {} s after it was sent",
                    self.members,
                    self.timeout.as_secs()
                ));
            };
            match arrival.message {
                Ok(arrived) if arrived == body && !received[arrival.member] => {
                    received[arrival.member] = true;
                    missing -= 1;
                    last = last.max(arrival.at);
                }
                Ok(_) => {}
                Err(error) => {
                    poll_error.get_or_insert(error);
                }
            }
        }
        match poll_error {
            Some(error) => Delivery::Failed(format!("a live sync's poll failed: {error}")),
            None => Delivery::Delivered(last - started),
        }
    }
}

/// The live syncs' query. `set_presence=offline` keeps their syncs from marking the members
/// online: a thousand users coming online at once would wake every long-poll in the room a
/// thousand times on a server that tracks presence, and this scenario times room events.
fn live_query(since: Option<&str>) -> SyncQuery<'_> {
    SyncQuery {
        since,
        timeout: since.map(|_| LONG_POLL),
        filter: Some(LIVE_FILTER),
        set_presence: Some("offline"),
    }
}

/// A client's sync loop: polls from `since`, sending each poll as soon as the previous one
/// answered, until aborted or nobody listens any more.
async fn live_sync(
    client: CsClient,
    token: String,
    mut since: String,
    member: usize,
    reports: UnboundedSender<Arrival>,
) {
    loop {
        let polled = client.sync(&token, &live_query(Some(&since))).await;
        let at = Instant::now();
        let report = |message| {
            reports
                .send(Arrival {
                    member,
                    at,
                    message,
                })
                .is_ok()
        };
        match polled {
            Ok(batch) => {
                since = batch.next_batch;
                if !batch.message_bodies.into_iter().map(Ok).all(&report) {
                    return;
                }
            }
            Err(error) => {
                if !report(Err(error.to_string())) {
                    return;
                }
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}

/// A client's WebSocket: connects from `since` and reports the messages of every sync frame;
/// after a failure, reconnects from the last frame's `next_batch`.
async fn live_socket(
    client: CsClient,
    token: String,
    mut since: String,
    member: usize,
    reports: UnboundedSender<Arrival>,
) {
    let report = |message| {
        reports
            .send(Arrival {
                member,
                at: Instant::now(),
                message,
            })
            .is_ok()
    };
    loop {
        let failure = match client.sync_socket(&token, &live_query(Some(&since))).await {
            Ok(Some(mut socket)) => loop {
                match socket.next_sync().await {
                    Ok(batch) => {
                        since = batch.next_batch;
                        if !batch.message_bodies.into_iter().map(Ok).all(&report) {
                            return;
                        }
                    }
                    Err(error) => break error,
                }
            },
            Ok(None) => "the WebSocket endpoint is gone (404)".to_owned(),
            Err(error) => error,
        };
        if !report(Err(failure)) {
            return;
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// `initial sync`: a user in `--sync-rooms` rooms of [`ROOM_MEMBERS`] members and `--history`
/// messages each; each sample is a `/sync` without `since` or filter by a new device.
async fn initial_sync(
    client: &CsClient,
    common: &CommonArgs,
    accounts: &Accounts,
    users: &[RegisteredUser],
    args: &SyncArgs,
) -> Result<OperationReport, String> {
    let (rooms, history) = (args.sync_rooms as usize, args.history as usize);
    let concurrency = common.concurrency();
    let (user, others) = users.split_first().expect("room members registered");
    eprintln!(
        "sync: initial sync: {rooms} rooms of {} members with {history} messages each",
        users.len()
    );
    let started = Instant::now();
    let room_ids = run_setup(
        "sync: initial sync: rooms created",
        concurrency,
        rooms,
        |_| async {
            (
                "createRoom",
                client.create_room(user.token(), "public_chat").await,
            )
        },
    )
    .await?;
    run_setup(
        "sync: initial sync: joined",
        concurrency,
        rooms * others.len(),
        |i| {
            // Consecutive joins go to different rooms, so they do not queue on one room.
            let (member, room_id) = (&others[i / rooms], &room_ids[i % rooms]);
            async move { ("join", client.join_room(member.token(), room_id).await) }
        },
    )
    .await?;
    run_setup(
        "sync: initial sync: messages sent",
        concurrency,
        rooms * history,
        |i| {
            // The rooms' n-th messages go out before their (n+1)-th, sent by the members in turn.
            let (n, room_id) = (i / rooms, &room_ids[i % rooms]);
            let member = &users[n % users.len()];
            async move {
                let text = format!("history message {n}");
                let sent = client
                    .send_text(member.token(), room_id, &format!("h{i}"), &text)
                    .await;
                ("send", sent)
            }
        },
    )
    .await?;
    eprintln!(
        "sync: initial sync: rooms filled in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Synapse keeps each device's sync responses for a while (sync_response_cache_duration, two
    // minutes by default) and would answer a repeated initial sync of one device from there, so
    // each sample is a new device's first sync, as when the user signs in on a new client.
    let devices = run_setup(
        "sync: initial sync: devices logged in",
        concurrency,
        args.initial_syncs as usize,
        |_| async {
            (
                "login",
                client.login(&user.username, &accounts.password).await,
            )
        },
    )
    .await?;
    eprintln!("sync: initial sync: {} syncs one at a time", devices.len());
    let started = Instant::now();
    let mut latencies = Latencies::default();
    for device in &devices {
        latencies
            .time(complete_initial_sync(client, device, rooms, history))
            .await;
    }
    Ok(latencies.report("initial sync", started.elapsed()))
}

/// An initial sync that must list every room, each with its newest messages: a response missing
/// some would be cheaper than the one asked for.
async fn complete_initial_sync(
    client: &CsClient,
    device: &Session,
    rooms: usize,
    history: usize,
) -> Result<(), RequestError> {
    let batch = client
        .sync(&device.access_token, &SyncQuery::default())
        .await?;
    if batch.joined_rooms != rooms {
        return Err(RequestError::Malformed(format!(
            "the initial sync lists {} joined rooms, not {rooms}",
            batch.joined_rooms
        )));
    }
    if history > 0 && batch.message_bodies.len() < rooms {
        return Err(RequestError::Malformed(format!(
            "the initial sync's timelines hold {} messages in all, fewer than one per room",
            batch.message_bodies.len()
        )));
    }
    Ok(())
}
