//! `messages`: paginating backwards through a deep room with `/messages`.

use std::time::Instant;

use clap::Args;
use serde_json::json;

use super::{Accounts, CommonArgs, RegisteredUser, register_all};
use crate::client::{CsClient, MessagesPage, RequestError};
use crate::load::run_phase;
use crate::stats::{Latencies, OperationReport, ScenarioReport};

/// Events per page, as clients typically ask for.
const PAGE_LIMIT: u32 = 50;

#[derive(Args)]
pub struct MessagesArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Messages to fill the room with before measuring. A comma-separated list measures at each
    /// depth in turn, filling on between them, e.g. --depth 5000,100000.
    #[arg(
        long,
        value_delimiter = ',',
        action = clap::ArgAction::Set,
        default_value = "100000",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub depth: Vec<u32>,
    /// Requests for the newest page (no `from` token) at each depth.
    #[arg(long, default_value_t = 100)]
    pub first_pages: u32,
    /// Page requests at each depth following `end` tokens backwards, starting over from the
    /// newest page whenever the start of the room is reached.
    #[arg(long, default_value_t = 500)]
    pub pages: u32,
    /// Messages in flight while filling the room (filling is not timed).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub fill_concurrency: u16,
}

pub async fn run(args: &MessagesArgs) -> Result<ScenarioReport, String> {
    let fill_concurrency = usize::from(args.fill_concurrency);
    let client = args.common.client(fill_concurrency)?;
    let accounts = Accounts::generate();
    let users = register_all("messages", &client, &args.common, &accounts, 1).await?;
    let user = &users[0];
    let room_id = client
        .create_room(user.token(), "private_chat")
        .await
        .map_err(|e| format!("cannot create the room: {e}"))?;

    let mut depths = args.depth.clone();
    depths.sort_unstable();
    depths.dedup();
    let mut filled = 0;
    let mut operations = Vec::new();
    for depth in depths {
        fill(&client, user, &room_id, filled, depth, fill_concurrency).await?;
        filled = depth;
        eprintln!("messages: depth {depth}: paginating");
        operations.push(first_pages(&client, user, &room_id, depth, args.first_pages).await);
        operations.push(page_back(&client, user, &room_id, depth, args.pages).await);
    }

    Ok(ScenarioReport {
        scenario: "messages".into(),
        base_url: args.common.base_url.clone(),
        parameters: json!({
            "depth": args.depth,
            "first_pages": args.first_pages,
            "pages": args.pages,
            "limit": PAGE_LIMIT,
            "fill_concurrency": args.fill_concurrency,
        }),
        operations,
    })
}

/// Untimed setup: sends messages `from..to` into the room.
async fn fill(
    client: &CsClient,
    user: &RegisteredUser,
    room_id: &str,
    from: u32,
    to: u32,
    concurrency: usize,
) -> Result<(), String> {
    eprintln!("messages: filling the room from {from} to {to} messages");
    let started = Instant::now();
    let phase = run_phase(concurrency, (to - from) as usize, |i| async move {
        let n = from as usize + i;
        let text = format!("fill message {n}");
        let sent = client
            .send_text(user.token(), room_id, &format!("fill{n}"), &text)
            .await;
        ("send", sent)
    })
    .await;
    phase.check_complete()?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "messages: filled in {secs:.1} s ({:.0} msg/s)",
        f64::from(to - from) / secs
    );
    Ok(())
}

/// The newest page, requested `count` times one after another.
async fn first_pages(
    client: &CsClient,
    user: &RegisteredUser,
    room_id: &str,
    depth: u32,
    count: u32,
) -> OperationReport {
    let started = Instant::now();
    let mut latencies = Latencies::default();
    for _ in 0..count {
        latencies.time(page(client, user, room_id, None)).await;
    }
    latencies.report(&format!("first page depth={depth}"), started.elapsed())
}

/// `count` requests one after another, each from the previous page's `end` token; a fresh
/// walk from the newest page begins at the start of the room and after a failed request.
async fn page_back(
    client: &CsClient,
    user: &RegisteredUser,
    room_id: &str,
    depth: u32,
    count: u32,
) -> OperationReport {
    let started = Instant::now();
    let mut latencies = Latencies::default();
    let mut from: Option<String> = None;
    let mut walks = 0;
    for _ in 0..count {
        if from.is_none() {
            walks += 1;
        }
        let next = latencies
            .time(page(client, user, room_id, from.as_deref()))
            .await;
        from = next.and_then(|page| page.end);
    }
    eprintln!("messages: depth {depth}: {count} pages back in {walks} walks from the newest");
    latencies.report(&format!("page back depth={depth}"), started.elapsed())
}

/// One page back. An empty page ends a walk like a missing `end` token does, so a server that
/// keeps handing out tokens at the start of the room cannot trap the walk there.
async fn page(
    client: &CsClient,
    user: &RegisteredUser,
    room_id: &str,
    from: Option<&str>,
) -> Result<MessagesPage, RequestError> {
    let mut page = client
        .messages_backwards(user.token(), room_id, from, PAGE_LIMIT)
        .await?;
    if page.events == 0 {
        if from.is_none() {
            return Err(RequestError::Malformed(
                "the newest page of a filled room is empty".into(),
            ));
        }
        page.end = None;
    }
    Ok(page)
}
