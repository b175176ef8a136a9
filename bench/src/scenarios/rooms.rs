//! `rooms`: room creation rate, and joining a room that already has many members.

use std::time::Instant;

use clap::Args;
use serde_json::json;

use super::{Accounts, CommonArgs, register_all};
use crate::load::run_phase;
use crate::stats::{Latencies, ScenarioReport};

#[derive(Args)]
pub struct RoomsArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Rooms to create (private_chat preset), --concurrency at a time, spread over as many
    /// creators.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub count: u32,
    /// Members of the public room the timed joins go into, its creator included.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub members: u32,
    /// Further users joining that room one after another, each join timed.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub joins: u32,
}

pub async fn run(args: &RoomsArgs) -> Result<ScenarioReport, String> {
    let concurrency = args.common.concurrency();
    let client = args.common.client(concurrency)?;
    let accounts = Accounts::generate();
    let members = args.members as usize;
    let users = register_all(
        "rooms",
        &client,
        &args.common,
        &accounts,
        members + args.joins as usize,
    )
    .await?;
    let (members, joiners) = users.split_at(members);

    eprintln!("rooms: creating {} rooms", args.count);
    let creators = &members[..concurrency.min(members.len())];
    let creation = run_phase(concurrency, args.count as usize, |i| {
        let (client, creator) = (&client, &creators[i % creators.len()]);
        async move {
            let created = client.create_room(creator.token(), "private_chat").await;
            ("create room", created)
        }
    })
    .await;
    let mut operations = creation.reports();

    let room_id = client
        .create_room(members[0].token(), "public_chat")
        .await
        .map_err(|e| format!("cannot create the room to join: {e}"))?;
    eprintln!("rooms: {} members joining the room", members.len());
    let populating = run_phase(concurrency, members.len() - 1, |i| {
        let (client, member, room_id) = (&client, &members[i + 1], &room_id);
        async move {
            (
                "join (populating)",
                client.join_room(member.token(), room_id).await,
            )
        }
    })
    .await;
    // The timed joins must meet a room of exactly --members members for their row to say so.
    populating.check_complete()?;
    operations.extend(populating.reports());

    eprintln!("rooms: {} joins one after another", joiners.len());
    let started = Instant::now();
    let mut latencies = Latencies::default();
    for joiner in joiners {
        latencies
            .time(client.join_room(joiner.token(), &room_id))
            .await;
    }
    operations.push(latencies.report(
        &format!("join (room of {})", members.len()),
        started.elapsed(),
    ));

    Ok(ScenarioReport {
        scenario: "rooms".into(),
        base_url: args.common.base_url.clone(),
        parameters: json!({
            "count": args.count,
            "concurrency": args.common.concurrency,
            "members": args.members,
            "joins": args.joins,
            "registration": args.common.registration_kind(),
        }),
        operations,
    })
}
