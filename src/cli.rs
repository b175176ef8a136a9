//! Command-line surface and config loading shared by every command.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::{Parser, Subcommand};
use tessera_core::Config;

use crate::EXIT_CONFIG;

/// Tessera, a Matrix homeserver.
#[derive(Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The config file read when `--config` is not given, if it exists.
const DEFAULT_CONFIG: &str = "tessera.toml";

#[derive(Subcommand)]
pub enum Command {
    /// Run the homeserver. Without --config, reads ./tessera.toml if present, otherwise runs on
    /// the embedded default (SQLite in ./data, listening on 127.0.0.1:8008).
    Serve {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Write the documented example configuration (every key with its default).
    GenerateConfig {
        /// Write to this file instead of standard output (never overwrites).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Validate a configuration file and exit (0 valid, 2 invalid).
    CheckConfig {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Manage the server's signing key.
    Key {
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: KeyAction,
    },
    /// Manage local users directly in the database (the server may be running or not).
    User {
        #[arg(long, short, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: UserAction,
    },
}

#[derive(Subcommand)]
pub enum KeyAction {
    /// Replace the signing key with a new one. The old key's public half stays published in
    /// `old_verify_keys` (listed in `<signing key>.old`), so other servers can still check
    /// what it signed. Restart the server to sign with the new key.
    Rotate,
}

#[derive(Subcommand)]
pub enum UserAction {
    /// Create a user.
    Create {
        /// The localpart (`alice` for @alice:server).
        localpart: String,
        /// The password; if omitted, read from the TESSERA_PASSWORD environment variable.
        #[arg(long)]
        password: Option<String>,
        /// Make the user a server admin.
        #[arg(long)]
        admin: bool,
    },
    /// Set a new password and log out every device of the user.
    ResetPassword {
        localpart: String,
        /// The password; if omitted, read from the TESSERA_PASSWORD environment variable.
        #[arg(long)]
        password: Option<String>,
    },
    /// Deactivate a user for good: sessions, devices and profile are removed.
    Deactivate { localpart: String },
    /// List every user.
    List,
}

/// Loads the config for a command; on failure prints why and returns the exit code.
pub fn load_config(path: Option<&Path>) -> Result<(Config, String), ExitCode> {
    let (result, source) = match path {
        Some(path) => (Config::load(path), path.display().to_string()),
        None if Path::new(DEFAULT_CONFIG).exists() => (
            Config::load(Path::new(DEFAULT_CONFIG)),
            DEFAULT_CONFIG.to_owned(),
        ),
        None => (
            Ok(Config::embedded_default()),
            "embedded default".to_owned(),
        ),
    };
    match result {
        Ok(config) => Ok((config, source)),
        Err(e) => {
            eprintln!("error: {source}: {e}");
            Err(ExitCode::from(EXIT_CONFIG))
        }
    }
}

pub fn generate_config(output: Option<&Path>) -> ExitCode {
    let Some(path) = output else {
        print!("{}", tessera_core::config::EXAMPLE);
        return ExitCode::SUCCESS;
    };
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .and_then(|mut file| {
            std::io::Write::write_all(&mut file, tessera_core::config::EXAMPLE.as_bytes())
        });
    match written {
        Ok(()) => {
            println!("wrote {}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}

/// `tessera key rotate`.
pub fn rotate_key(config: &Config) -> ExitCode {
    let path = config.signing_key_path();
    if !path.exists() {
        eprintln!(
            "error: there is no signing key at {} to rotate (the server makes one when it first starts)",
            path.display()
        );
        return ExitCode::FAILURE;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        });
    match tessera_core::keys::SigningKey::rotate(&path, now) {
        Ok((old, new)) => {
            println!(
                "{} replaces {} in {}; {} is published as an old verify key (listed in {}). \
                 Restart the server to sign with the new key.",
                new.key_id(),
                old.key_id(),
                path.display(),
                old.key_id(),
                tessera_core::keys::old_keys_path(&path).display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
