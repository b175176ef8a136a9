//! `send`: concurrent senders posting text messages into one or more rooms.

use std::time::Instant;

use clap::Args;
use serde_json::json;

use super::{Accounts, CommonArgs, RegisteredUser, register_all};
use crate::client::CsClient;
use crate::load::{run_phase, run_workers};
use crate::stats::ScenarioReport;

#[derive(Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Concurrent senders, each its own user sending one message at a time. A comma-separated
    /// list runs every combination with --rooms, e.g. --senders 1,8,10,64.
    #[arg(
        long,
        value_delimiter = ',',
        action = clap::ArgAction::Set,
        default_value = "10",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub senders: Vec<u32>,
    /// Rooms the messages are spread over, each sender going through them round-robin. A
    /// comma-separated list runs every combination with --senders, e.g. --rooms 1,64.
    #[arg(
        long,
        value_delimiter = ',',
        action = clap::ArgAction::Set,
        default_value = "1",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub rooms: Vec<u32>,
    /// Messages sent per combination, spread evenly over its senders.
    #[arg(long, default_value_t = 2000)]
    pub messages: u32,
}

pub async fn run(args: &SendArgs) -> Result<ScenarioReport, String> {
    let most_senders = args.senders.iter().copied().max().unwrap_or(1) as usize;
    let client = args.common.client(most_senders)?;
    let accounts = Accounts::generate();
    let users = register_all("send", &client, &args.common, &accounts, most_senders).await?;

    let mut operations = Vec::new();
    for (combination, (&rooms, &senders)) in args
        .rooms
        .iter()
        .flat_map(|rooms| args.senders.iter().map(move |senders| (rooms, senders)))
        .enumerate()
    {
        let name = format!("send s={senders} r={rooms}");
        let senders = &users[..senders as usize];
        // Fresh rooms per combination, so each room's members are exactly its senders and no
        // combination sends into history left by another.
        let room_ids = rooms_joined_by(&client, &args.common, senders, rooms as usize).await?;
        eprintln!("send: {name}: {} messages", args.messages);
        let report = run_workers(&name, senders.len(), args.messages as usize, |sender, i| {
            // i = sender + n * senders for the sender's n-th message; starting each sender
            // at its own room spreads them over the rooms from the first message on.
            let room_id = &room_ids[(sender + i / senders.len()) % room_ids.len()];
            let token = senders[sender].token();
            let client = &client;
            async move {
                let txn_id = format!("c{combination}m{i}");
                let text = format!("bench message {i}");
                client.send_text(token, room_id, &txn_id, &text).await
            }
        })
        .await;
        operations.push(report);
    }

    Ok(ScenarioReport {
        scenario: "send".into(),
        base_url: args.common.base_url.clone(),
        parameters: json!({
            "senders": args.senders,
            "rooms": args.rooms,
            "messages_per_combination": args.messages,
            "registration": args.common.registration_kind(),
        }),
        operations,
    })
}

/// Untimed setup: the first sender creates `count` public rooms and the others join all of them.
async fn rooms_joined_by(
    client: &CsClient,
    common: &CommonArgs,
    senders: &[RegisteredUser],
    count: usize,
) -> Result<Vec<String>, String> {
    let started = Instant::now();
    let creator = &senders[0];
    let creation = run_phase(common.concurrency(), count, |_| async {
        (
            "createRoom",
            client.create_room(creator.token(), "public_chat").await,
        )
    })
    .await;
    creation.check_complete()?;
    let room_ids = creation.outputs;

    let joiners = &senders[1..];
    let joins = run_phase(common.concurrency(), joiners.len() * count, |i| {
        // Consecutive joins go to different rooms, so they do not queue on one room.
        let (room_id, joiner) = (&room_ids[i % count], &joiners[i / count]);
        async move { ("join", client.join_room(joiner.token(), room_id).await) }
    })
    .await;
    joins.check_complete()?;
    eprintln!(
        "send: created {count} rooms with {} members each in {:.1} s",
        senders.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(room_ids)
}
