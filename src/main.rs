//! `tessera`: the homeserver binary and its admin commands.

mod cli;
mod serve;
mod user;

use std::{process::ExitCode, time::Duration};

use clap::Parser;

use cli::{Cli, Command};

/// glibc's malloc keeps what each thread's arena once held, for good: every password hash
/// (argon2id, ~19 MiB on a blocking thread) stayed resident, and an idle server that had
/// registered a hundred users held ~570 MiB. mimalloc returns a thread's memory at the latest
/// when the thread exits (see `thread_keep_alive` below).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for a configuration problem (missing file, unknown key, invalid value).
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::GenerateConfig { output } => cli::generate_config(output.as_deref()),
        Command::CheckConfig { config } => match cli::load_config(config.as_deref()) {
            Ok((_, source)) => {
                println!("{source}: configuration is valid");
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Serve { config } => {
            let config = match cli::load_config(config.as_deref()) {
                Ok((config, _)) => config,
                Err(code) => return code,
            };
            let workers = request_workers(&config.database_url());
            run_async_with(serve::serve(config), workers)
        }
        Command::Key { config, action } => {
            let config = match cli::load_config(config.as_deref()) {
                Ok((config, _)) => config,
                Err(code) => return code,
            };
            match action {
                cli::KeyAction::Rotate => cli::rotate_key(&config),
            }
        }
        Command::User { config, action } => {
            let config = match cli::load_config(config.as_deref()) {
                Ok((config, _)) => config,
                Err(code) => return code,
            };
            run_async(user::run(config, action))
        }
    }
}

fn run_async(future: impl Future<Output = ExitCode>) -> ExitCode {
    run_async_with(future, None)
}

/// Threads for request handling when serving: with SQLite, one core fewer than the machine
/// has (at least one), as the database's own threads (the writer, its connection's thread and
/// the log sync) are busy beside them on every write; with their core taken by the runtime,
/// each of their round trips waits for a turn (on two cores, one worker sends 12% more
/// messages than two). PostgreSQL runs elsewhere: all cores. `TOKIO_WORKER_THREADS` overrides.
fn request_workers(database_url: &str) -> Option<usize> {
    if std::env::var_os("TOKIO_WORKER_THREADS").is_some() || !database_url.starts_with("sqlite:") {
        return None;
    }
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    Some(cores.saturating_sub(1).max(1))
}

fn run_async_with(future: impl Future<Output = ExitCode>, workers: Option<usize>) -> ExitCode {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder
        .enable_all()
        // An idle blocking thread goes after a second, not tokio's ten: its allocator heap still
        // holds what its last password hash used (~19 MiB), which only the thread's exit returns.
        .thread_keep_alive(Duration::from_secs(1));
    if let Some(workers) = workers {
        builder.worker_threads(workers);
    }
    match builder.build() {
        Ok(runtime) => runtime.block_on(future),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}
