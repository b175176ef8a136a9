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
            run_async(serve::serve(config))
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
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // An idle blocking thread goes after a second, not tokio's ten: its allocator heap still
        // holds what its last password hash used (~19 MiB), which only the thread's exit returns.
        .thread_keep_alive(Duration::from_secs(1))
        .build()
    {
        Ok(runtime) => runtime.block_on(future),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}
