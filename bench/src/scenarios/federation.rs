//! `federation`: how fast rooms work across two homeservers, driven through the Client-Server
//! API of both. Server A (`--base-url`) is the rooms' origin, server B (`--remote-url`) has the
//! remote users: messages sent on A timed until B's live sync returns them (`delivery to
//! remote`), and users of B joining a room of many members on A (`join room of N`).

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;

use super::{Accounts, CommonArgs, RegisteredUser, register_all};
use crate::client::{CsClient, SyncBatch, SyncQuery};
use crate::load::{run_setup, run_workers};
use crate::stats::{Latencies, OperationReport, ScenarioReport};

/// How long a live sync's long-poll may wait for something new, as clients typically ask.
const LONG_POLL: Duration = Duration::from_secs(30);

/// How long a live sync waits after a failed poll before polling again.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// The delivery receiver's filter. Its timeline limit is Tessera's largest page
/// (`limits.max_page_size`): an answer holding more new messages than the limit would skip
/// the older ones, and a burst of hundreds can pile up between two polls.
const DELIVERY_FILTER: &str = r#"{"room":{"timeline":{"limit":1000},"state":{"lazy_load_members":true}},"presence":{"types":[]}}"#;

/// The joiners' filter, a client's: a short timeline, so that the first answer after joining a
/// big room does not carry hundreds of its join events, and members lazy-loaded (without it
/// Synapse leaves a room it joined with partial state out of `/sync`).
const JOINER_FILTER: &str = r#"{"room":{"timeline":{"limit":10},"state":{"lazy_load_members":true}},"presence":{"types":[]}}"#;

/// The body of the `i`th timed message starts with this, followed by `i`.
const MESSAGE_PREFIX: &str = "federation ";

#[derive(Args)]
pub struct FederationArgs {
    /// Server A, the rooms' origin, is --base-url.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Client-Server API of server B, whose users join A's rooms over federation.
    #[arg(long)]
    pub remote_url: String,
    /// A's server name, which B's joins name in `?server_name=` so that B asks A to let them in.
    #[arg(long)]
    pub origin_server_name: String,
    /// `delivery to remote`: messages sent on A, each timed until B's live sync returns it.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub messages: u32,
    /// `delivery to remote`: users of A sending those messages side by side, each sending its
    /// next one when the previous one is answered.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub senders: u32,
    /// `join room of N`: members on A of the room B's users join, its creator included. A
    /// comma-separated list measures a room of each size, e.g. --members 1000,5000.
    #[arg(
        long,
        value_delimiter = ',',
        action = clap::ArgAction::Set,
        default_value = "5000",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub members: Vec<u32>,
    /// `join room of N`: users of B joining each room one after another; the first makes B
    /// join the room, the others join a room B is already in.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub joins: u32,
}

pub async fn run(args: &FederationArgs) -> Result<ScenarioReport, String> {
    let common = &args.common;
    let senders = args.senders as usize;
    let mut room_sizes: Vec<usize> = args.members.iter().map(|&n| n as usize).collect();
    room_sizes.sort_unstable();
    room_sizes.dedup();
    let largest_room = *room_sizes.last().expect("clap requires --members");
    let joins = args.joins as usize;
    let origin = common.client(senders)?;
    let remote = common.client_of(&args.remote_url, 1)?;
    let accounts = Accounts::generate();
    // The senders are also the first members of the big rooms, and each room of N has the
    // first N users: no operation minds sharing them.
    let origin_users = register_all(
        "federation: origin",
        &origin,
        common,
        &accounts,
        senders.max(largest_room),
    )
    .await?;
    // The delivery receiver, then `--joins` joiners per room.
    let remote_users = register_all(
        "federation: remote",
        &remote,
        common,
        &accounts,
        1 + joins * room_sizes.len(),
    )
    .await?;
    let (receiver, joiners) = remote_users.split_first().expect("the receiver registered");

    // Delivery runs first, so that by the time of the timed joins each server has the other's
    // signing keys and a connection to it, as servers that federate do.
    let mut operations =
        delivery(&origin, &remote, args, &origin_users[..senders], receiver).await?;
    for (size, joiners) in room_sizes.iter().zip(joiners.chunks(joins)) {
        let members = &origin_users[..*size];
        operations.extend(remote_joins(&origin, &remote, args, members, joiners).await?);
    }

    Ok(ScenarioReport {
        scenario: "federation".into(),
        base_url: common.base_url.clone(),
        parameters: json!({
            "remote_url": args.remote_url,
            "origin_server_name": args.origin_server_name,
            "messages": args.messages,
            "senders": args.senders,
            "members": args.members,
            "joins": args.joins,
            "long_poll_ms": LONG_POLL.as_millis(),
            "concurrency": common.concurrency,
            "registration": common.registration_kind(),
        }),
        operations,
    })
}

/// `delivery to remote`: the senders and B's receiver share a room created on A; the senders
/// send `--messages` messages side by side while the receiver's live sync on B collects them.
/// Returns the senders' row (`send on origin`) and the delivery row.
async fn delivery(
    origin: &CsClient,
    remote: &CsClient,
    args: &FederationArgs,
    senders: &[RegisteredUser],
    receiver: &RegisteredUser,
) -> Result<Vec<OperationReport>, String> {
    let common = &args.common;
    let room_id = room_on_origin(origin, senders, common.concurrency(), "delivery").await?;
    remote
        .join_room_via(receiver.token(), &room_id, &args.origin_server_name)
        .await
        .map_err(|e| format!("delivery: the remote receiver cannot join the room: {e}"))?;
    // Synapse joins with partial state when the other server offers it and fetches the rest in
    // the background, processing incoming events differently until done; waiting for the
    // member list lets delivery time federation in its steady state.
    remote
        .member_count(receiver.token(), &room_id)
        .await
        .map_err(|e| format!("delivery: the remote receiver cannot list the members: {e}"))?;
    let mut live = RemoteSync::start(remote, receiver, DELIVERY_FILTER)
        .await
        .map_err(|e| format!("delivery: the receiver's initial sync: {e}"))?;
    let timeout = Duration::from_secs(common.timeout_secs);

    // The first message between the two servers over this room is untimed: it proves the way
    // works end to end before anything is measured.
    let warm_up = "federation warm-up";
    origin
        .send_text(senders[0].token(), &room_id, "warm-up", warm_up)
        .await
        .map_err(|e| format!("delivery: cannot send the warm-up message: {e}"))?;
    live.wait_for(warm_up, Instant::now(), timeout)
        .await
        .map_err(|e| format!("delivery: the warm-up message: {e}"))?;

    let count = args.messages as usize;
    eprintln!(
        "federation: delivery: {count} messages from {} senders on the origin",
        senders.len()
    );
    let send_starts = Mutex::new(vec![None; count]);
    let started = Instant::now();
    let sends = run_workers("send on origin", senders.len(), count, |sender, i| {
        let (room_id, send_starts) = (&room_id, &send_starts);
        async move {
            let send_start = Instant::now();
            let body = format!("{MESSAGE_PREFIX}{i}");
            let sent = origin
                .send_text(senders[sender].token(), room_id, &format!("f{i}"), &body)
                .await;
            // A failed send has no message to wait for.
            if sent.is_ok() {
                send_starts.lock().expect("no sender panics")[i] = Some(send_start);
            }
            sent
        }
    })
    .await;
    let send_starts = send_starts.into_inner().expect("no sender panics");
    let arrivals = live.collect_messages(&send_starts, timeout).await;

    let mut latencies = Latencies::default();
    let mut last_arrival = started;
    for (send_start, arrival) in send_starts.iter().zip(&arrivals) {
        match (send_start, arrival) {
            (None, _) => latencies.record_error(
                "not sent: its send on the origin failed (see `send on origin`)".into(),
            ),
            (Some(sent), Some(seen)) if *seen - *sent <= timeout => {
                latencies.record_success(*seen - *sent);
                last_arrival = last_arrival.max(*seen);
            }
            (Some(sent), Some(seen)) => latencies.record_error(format!(
                "seen in the remote's sync {:.1} s after its send started, over --timeout-secs",
                (*seen - *sent).as_secs_f64()
            )),
            (Some(_), None) => latencies.record_error(live.why_missing(timeout)),
        }
    }
    // End to end: from the first send's start to the last message seen on B.
    Ok(vec![
        sends,
        latencies.report("delivery to remote", last_arrival - started),
    ])
}

/// A public room on the origin, created by the first of `users` and joined by the others
/// (untimed setup); `phase` names the part of the scenario in errors.
async fn room_on_origin(
    origin: &CsClient,
    users: &[RegisteredUser],
    concurrency: usize,
    phase: &str,
) -> Result<String, String> {
    let (creator, others) = users.split_first().expect("a room needs a creator");
    let room_id = origin
        .create_room(creator.token(), "public_chat")
        .await
        .map_err(|e| format!("{phase}: cannot create the room: {e}"))?;
    run_setup(
        &format!("federation: {phase}: members joined"),
        concurrency,
        others.len(),
        |i| {
            let room_id = &room_id;
            async move { ("join", origin.join_room(others[i].token(), room_id).await) }
        },
    )
    .await?;
    Ok(room_id)
}

/// `join room of N`: a room on A gets `members` as its members (untimed), then each of
/// `joiners` joins it from B, one after another. Each join is timed until it answers, and then a message
/// sent on A right after it is timed until the joiner's live sync returns it. The first joiner
/// makes B join a room it is not in yet; the later ones join a room B is already in, so they
/// get rows of their own.
async fn remote_joins(
    origin: &CsClient,
    remote: &CsClient,
    args: &FederationArgs,
    members: &[RegisteredUser],
    joiners: &[RegisteredUser],
) -> Result<Vec<OperationReport>, String> {
    let common = &args.common;
    eprintln!(
        "federation: remote join: {} members joining a room on the origin",
        members.len()
    );
    let started = Instant::now();
    let room_id = room_on_origin(origin, members, common.concurrency(), "remote join").await?;
    eprintln!(
        "federation: remote join: room of {} members filled in {:.1} s",
        members.len(),
        started.elapsed().as_secs_f64()
    );

    eprintln!(
        "federation: remote join: {} remote users joining one after another",
        joiners.len()
    );
    let timeout = Duration::from_secs(common.timeout_secs);
    // Index 0: the first joiner's samples; index 1: the later joiners'.
    let mut joins = [Latencies::default(), Latencies::default()];
    let mut messages = [Latencies::default(), Latencies::default()];
    let started = Instant::now();
    for (j, joiner) in joiners.iter().enumerate() {
        let row = usize::from(j > 0);
        // Its initial sync comes before the join, so the live sync sees the room arrive.
        let mut live = RemoteSync::start(remote, joiner, JOINER_FILTER)
            .await
            .map_err(|e| format!("remote join: a joiner's initial sync: {e}"))?;
        let join = remote.join_room_via(joiner.token(), &room_id, &args.origin_server_name);
        if joins[row].time(join).await.is_none() {
            messages[row].record_error("not sent: the join failed".into());
            continue;
        }
        // The creator sends into every room: the transaction ID names the room's size too.
        let body = format!("after join {j} of room of {}", members.len());
        let sent = Instant::now();
        let txn_id = format!("j{j}-{}", members.len());
        match origin
            .send_text(members[0].token(), &room_id, &txn_id, &body)
            .await
        {
            Ok(()) => match live.wait_for(&body, sent, timeout).await {
                Ok(seen) => messages[row].record_success(seen - sent),
                Err(error) => messages[row].record_error(error),
            },
            Err(error) => messages[row].record_error(format!("its send failed: {error}")),
        }
    }
    let wall = started.elapsed();

    let room = format!("room of {}", members.len());
    let [first_join, later_joins] = joins;
    let [first_message, later_messages] = messages;
    let mut reports = vec![
        first_join.report(&format!("join {room}: first remote user"), wall),
        first_message.report(
            &format!("message after join {room}: first remote user"),
            wall,
        ),
    ];
    if joiners.len() > 1 {
        reports.push(later_joins.report(&format!("join {room}: later remote users"), wall));
        reports.push(later_messages.report(
            &format!("message after join {room}: later remote users"),
            wall,
        ));
    }
    Ok(reports)
}

/// One answer of a live sync and when it came, or why a poll failed.
type SyncAnswer = Result<(Instant, SyncBatch), String>;

/// A user of B's live sync: a task long-polling `/sync` again and again, as a client does,
/// handing every answer over. Stops when dropped.
struct RemoteSync {
    answers: UnboundedReceiver<SyncAnswer>,
    task: JoinHandle<()>,
    /// The first failed poll, kept for the error of a message that never came.
    poll_error: Option<String>,
    /// Whether some answer's timeline skipped events, which may be why a message never came.
    skipped_events: bool,
}

impl RemoteSync {
    /// Untimed: the user's initial sync, then its live sync from there.
    async fn start(
        client: &CsClient,
        user: &RegisteredUser,
        filter: &'static str,
    ) -> Result<Self, crate::client::RequestError> {
        let initial = client.sync(user.token(), &live_query(None, filter)).await?;
        let (reports, answers) = mpsc::unbounded_channel();
        let task = tokio::spawn(live_sync(
            client.clone(),
            user.token().to_owned(),
            initial.next_batch,
            filter,
            reports,
        ));
        Ok(Self {
            answers,
            task,
            poll_error: None,
            skipped_events: false,
        })
    }

    /// The next answer before `deadline`, noting failed polls and skipped events; `None` once
    /// the deadline has passed.
    async fn next_batch(&mut self, deadline: Instant) -> Option<(Instant, Vec<String>)> {
        let deadline = tokio::time::Instant::from_std(deadline);
        loop {
            // The channel only closes if the task panicked, which the deadline then reports.
            match tokio::time::timeout_at(deadline, self.answers.recv()).await {
                Ok(Some(Ok((at, batch)))) => {
                    self.skipped_events |= batch.limited;
                    return Some((at, batch.message_bodies));
                }
                Ok(Some(Err(error))) => {
                    self.poll_error.get_or_insert(error);
                }
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// When the message with `body`, sent at `sent`, was seen, if within `timeout` of that.
    async fn wait_for(
        &mut self,
        body: &str,
        sent: Instant,
        timeout: Duration,
    ) -> Result<Instant, String> {
        while let Some((at, bodies)) = self.next_batch(sent + timeout).await {
            if bodies.iter().any(|seen| seen == body) {
                return Ok(at);
            }
        }
        Err(self.why_missing(timeout))
    }

    /// The error of a message never seen.
    fn why_missing(&self, timeout: Duration) -> String {
        let mut why = format!(
            "not seen in the remote's sync within {} s of its send",
            timeout.as_secs()
        );
        if self.skipped_events {
            why.push_str("; a sync answer's timeline was limited (skipped messages)");
        }
        if let Some(error) = &self.poll_error {
            let _ = write!(why, "; a poll failed: {error}");
        }
        why
    }

    /// When each timed message (body [`MESSAGE_PREFIX`] and its index) whose send started at
    /// `send_starts[i]` was seen, collected until all of them came or `timeout` after the last
    /// send started.
    async fn collect_messages(
        &mut self,
        send_starts: &[Option<Instant>],
        timeout: Duration,
    ) -> Vec<Option<Instant>> {
        let mut seen_at = vec![None; send_starts.len()];
        let mut missing = send_starts.iter().flatten().count();
        let Some(deadline) = send_starts.iter().flatten().max().map(|s| *s + timeout) else {
            return seen_at;
        };
        while missing > 0 {
            let Some((at, bodies)) = self.next_batch(deadline).await else {
                break;
            };
            for index in bodies.iter().filter_map(|body| message_index(body)) {
                if send_starts.get(index).is_some_and(Option::is_some) && seen_at[index].is_none() {
                    seen_at[index] = Some(at);
                    missing -= 1;
                }
            }
        }
        seen_at
    }
}

impl Drop for RemoteSync {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The index of a timed message, from its body.
fn message_index(body: &str) -> Option<usize> {
    body.strip_prefix(MESSAGE_PREFIX)?.parse().ok()
}

/// A live sync's query; `set_presence=offline` keeps presence out of what wakes it.
fn live_query<'a>(since: Option<&'a str>, filter: &'a str) -> SyncQuery<'a> {
    SyncQuery {
        since,
        timeout: since.map(|_| LONG_POLL),
        filter: Some(filter),
        set_presence: Some("offline"),
    }
}

/// A client's sync loop: polls from `since`, sending each poll as soon as the previous one
/// answered, until aborted or nobody listens any more.
async fn live_sync(
    client: CsClient,
    token: String,
    mut since: String,
    filter: &'static str,
    answers: UnboundedSender<SyncAnswer>,
) {
    loop {
        let polled = client.sync(&token, &live_query(Some(&since), filter)).await;
        let at = Instant::now();
        let answer = match polled {
            Ok(batch) => {
                since.clone_from(&batch.next_batch);
                Ok((at, batch))
            }
            Err(error) => Err(error.to_string()),
        };
        let failed = answer.is_err();
        if answers.send(answer).is_err() {
            return;
        }
        if failed {
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_index_reads_only_timed_messages() {
        assert_eq!(message_index("federation 17"), Some(17));
        assert_eq!(message_index("federation warm-up"), None);
        assert_eq!(message_index("after join 0"), None);
    }
}
