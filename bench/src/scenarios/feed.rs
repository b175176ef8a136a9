//! `feed`: the moments feed of a user with many friends who all post (Tessera's IM API,
//! docs/im-api.md). Other servers have no such endpoint: there a client would page through
//! every friend's profile room itself, so this scenario runs against Tessera only.

use std::time::Instant;

use clap::Args;
use serde_json::json;

use super::{Accounts, CommonArgs, RegisteredUser, register_all};
use crate::client::{CsClient, FeedPage, RequestError};
use crate::load::run_phase;
use crate::stats::{Latencies, OperationReport, ScenarioReport};

/// Posts per feed page, as the IM API's default.
const PAGE_LIMIT: u32 = 20;

#[derive(Args)]
pub struct FeedArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Friends of the reader, each of whom posts --posts moments.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    pub friends: u32,
    /// Moments each friend posts before measuring.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub posts: u32,
    /// Requests for the newest page (no `from` token).
    #[arg(long, default_value_t = 200)]
    pub first_pages: u32,
    /// Page requests following `next_batch` tokens, starting over from the newest page at the
    /// end of the feed.
    #[arg(long, default_value_t = 500)]
    pub pages: u32,
    /// Setup requests in flight (setup is not timed).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub fill_concurrency: u16,
}

pub async fn run(args: &FeedArgs) -> Result<ScenarioReport, String> {
    let fill_concurrency = usize::from(args.fill_concurrency);
    let client = args.common.client(fill_concurrency)?;
    let accounts = Accounts::generate();
    let friends = args.friends as usize;
    let users = register_all("feed", &client, &args.common, &accounts, friends + 1).await?;
    let (reader, friends) = users.split_first().expect("at least two users");

    befriend(&client, reader, friends, fill_concurrency).await?;
    fill(&client, friends, args.posts, fill_concurrency).await?;

    let total = friends.len() as u64 * u64::from(args.posts);
    let newest = first_pages(&client, reader, args.first_pages).await;
    let deep = pages_back(&client, reader, args.pages).await;
    Ok(ScenarioReport {
        scenario: "feed".into(),
        base_url: args.common.base_url.clone(),
        parameters: json!({
            "friends": args.friends,
            "posts_per_friend": args.posts,
            "posts_in_feed": total,
            "first_pages": args.first_pages,
            "pages": args.pages,
            "limit": PAGE_LIMIT,
        }),
        operations: vec![newest, deep],
    })
}

/// Untimed setup: each friend asks the reader, who accepts.
async fn befriend(
    client: &CsClient,
    reader: &RegisteredUser,
    friends: &[RegisteredUser],
    concurrency: usize,
) -> Result<(), String> {
    eprintln!("feed: {} friendships", friends.len());
    let started = Instant::now();
    let reader_id = reader.session.user_id.as_str();
    run_phase(concurrency, friends.len(), |i| async move {
        (
            "request",
            client.request_friend(friends[i].token(), reader_id).await,
        )
    })
    .await
    .check_complete()?;
    run_phase(concurrency, friends.len(), |i| async move {
        let requester = friends[i].session.user_id.as_str();
        (
            "accept",
            client.accept_friend(reader.token(), requester).await,
        )
    })
    .await
    .check_complete()?;
    eprintln!(
        "feed: befriended in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Untimed setup: every friend posts `posts` moments, friends in turn so that the feed
/// interleaves them.
async fn fill(
    client: &CsClient,
    friends: &[RegisteredUser],
    posts: u32,
    concurrency: usize,
) -> Result<(), String> {
    let count = friends.len() * posts as usize;
    eprintln!("feed: posting {count} moments");
    let started = Instant::now();
    run_phase(concurrency, count, |i| async move {
        let friend = &friends[i % friends.len()];
        let n = i / friends.len();
        let posted = client
            .post_moment(
                friend.token(),
                &format!("moment{n}"),
                &format!("moment {n}"),
            )
            .await;
        ("post", posted)
    })
    .await
    .check_complete()?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "feed: posted in {secs:.1} s ({:.0} posts/s)",
        count as f64 / secs
    );
    Ok(())
}

/// The newest page, requested `count` times one after another.
async fn first_pages(client: &CsClient, reader: &RegisteredUser, count: u32) -> OperationReport {
    let started = Instant::now();
    let mut latencies = Latencies::default();
    for _ in 0..count {
        latencies.time(page(client, reader, None)).await;
    }
    latencies.report("feed first page", started.elapsed())
}

/// `count` pages one after another, each from the previous `next_batch`; a fresh walk starts
/// from the newest page at the end of the feed and after a failed request.
async fn pages_back(client: &CsClient, reader: &RegisteredUser, count: u32) -> OperationReport {
    let started = Instant::now();
    let mut latencies = Latencies::default();
    let mut from: Option<String> = None;
    let mut deepest = 0;
    let mut depth = 0;
    for _ in 0..count {
        if from.is_none() {
            depth = 0;
        }
        let next = latencies.time(page(client, reader, from.as_deref())).await;
        depth += 1;
        deepest = deepest.max(depth);
        from = next.and_then(|page| page.next_batch);
    }
    eprintln!("feed: {count} pages, down to page {deepest}");
    latencies.report("feed page back", started.elapsed())
}

/// One page; an empty page before the end of the feed is an error, not a fast answer.
async fn page(
    client: &CsClient,
    reader: &RegisteredUser,
    from: Option<&str>,
) -> Result<FeedPage, RequestError> {
    let page = client.feed(reader.token(), from, PAGE_LIMIT).await?;
    if page.posts == 0 && page.next_batch.is_some() {
        return Err(RequestError::Malformed(
            "an empty feed page that is not the last".into(),
        ));
    }
    if page.posts == 0 && from.is_none() {
        return Err(RequestError::Malformed(
            "the newest page of a filled feed is empty".into(),
        ));
    }
    Ok(page)
}
