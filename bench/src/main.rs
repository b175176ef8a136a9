//! tessera-bench: a load generator for any Matrix homeserver, one subcommand per scenario.

mod client;
mod compare;
mod load;
mod process;
mod scenarios;
mod stats;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::scenarios::CommonArgs;
use crate::stats::ScenarioReport;

#[derive(Parser)]
#[command(about = "Load generator for Matrix homeservers (Client-Server API)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// In the scenarios the last occurrence of an option wins, so a wrapper script can pass defaults
// that options given after them replace.
#[derive(Subcommand)]
enum Command {
    /// Register --users users, then run --requests password logins and whoami calls.
    #[command(args_override_self = true)]
    Auth(scenarios::auth::AuthArgs),
    /// Concurrent senders sending --messages text messages into --rooms rooms.
    #[command(args_override_self = true)]
    Send(scenarios::send::SendArgs),
    /// Fill a room to --depth messages, then page backwards through it with /messages.
    #[command(args_override_self = true)]
    Messages(scenarios::messages::MessagesArgs),
    /// Create --count rooms, then join a room of --members members --joins times.
    #[command(args_override_self = true)]
    Rooms(scenarios::rooms::RoomsArgs),
    /// Time a message's way to live syncs (one, then a room of --members), and initial syncs.
    #[command(args_override_self = true)]
    Sync(scenarios::sync::SyncArgs),
    /// Upload and download throughput, thumbnail latency, server memory during a large download.
    #[command(args_override_self = true)]
    Media(scenarios::media::MediaArgs),
    /// Time /keys/query and /keys/claim for --devices devices and sendToDevice to
    /// --fanout-devices devices, each in one request.
    #[command(args_override_self = true)]
    E2ee(scenarios::e2ee::E2eeArgs),
    /// Tessera's moments feed: --friends friends post --posts moments each, then the reader
    /// pages through the feed.
    #[command(args_override_self = true)]
    Feed(scenarios::feed::FeedArgs),
    /// Hold --connections idle /sync long-polls: the server's memory with them, and one
    /// message's way to all of them.
    #[command(args_override_self = true)]
    IdleSyncs(scenarios::idle::IdleArgs),
    /// The same with Tessera's WebSocket sync transport.
    #[command(args_override_self = true)]
    IdleWebsockets(scenarios::idle::IdleArgs),
    /// Federation between --base-url (the rooms' origin) and --remote-url: --messages messages
    /// from --senders senders on the origin delivered to a remote live sync, then remote users
    /// joining a room of --members members.
    #[command(args_override_self = true)]
    Federation(scenarios::federation::FederationArgs),
    /// Print reports saved with --json, and the ratios between two of them.
    Compare(compare::CompareArgs),
}

/// Exit codes: 0 all requests succeeded, 1 the run finished but some requests failed,
/// 2 the run could not be carried out.
#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match &cli.command {
        Command::Auth(args) => publish(scenarios::auth::run(args).await, &args.common),
        Command::Send(args) => publish(scenarios::send::run(args).await, &args.common),
        Command::Messages(args) => publish(scenarios::messages::run(args).await, &args.common),
        Command::Rooms(args) => publish(scenarios::rooms::run(args).await, &args.common),
        Command::Sync(args) => publish(scenarios::sync::run(args).await, &args.common),
        Command::Media(args) => publish(scenarios::media::run(args).await, &args.common),
        Command::E2ee(args) => publish(scenarios::e2ee::run(args).await, &args.common),
        Command::Feed(args) => publish(scenarios::feed::run(args).await, &args.common),
        Command::IdleSyncs(args) => publish(
            scenarios::idle::run(args, scenarios::idle::Transport::LongPoll).await,
            &args.common,
        ),
        Command::IdleWebsockets(args) => publish(
            scenarios::idle::run(args, scenarios::idle::Transport::WebSocket).await,
            &args.common,
        ),
        Command::Federation(args) => publish(scenarios::federation::run(args).await, &args.common),
        Command::Compare(args) => compare::run(args).map(|output| {
            print!("{output}");
            ExitCode::SUCCESS
        }),
    };
    outcome.unwrap_or_else(|e| {
        eprintln!("tessera-bench: {e}");
        ExitCode::from(2)
    })
}

fn publish(
    outcome: Result<ScenarioReport, String>,
    common: &CommonArgs,
) -> Result<ExitCode, String> {
    let report = outcome?;
    print!("{}", report.table());
    if let Some(path) = &common.json {
        let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(path, json + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(if report.has_errors() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
