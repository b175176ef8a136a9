//! One module per scenario. Each takes [`CommonArgs`] plus its own options and returns a
//! [`ScenarioReport`](crate::stats::ScenarioReport).

pub mod auth;
pub mod e2ee;
pub mod federation;
pub mod feed;
pub mod idle;
pub mod media;
pub mod messages;
pub mod rooms;
pub mod send;
pub mod sync;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use rand::Rng;

use crate::client::{CsClient, RequestError, Session};
use crate::load::run_setup;

/// Options every scenario takes.
#[derive(Args)]
pub struct CommonArgs {
    /// Homeserver to load, e.g. http://127.0.0.1:8008. Point it only at servers you run.
    #[arg(long)]
    pub base_url: String,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
    /// Per-request timeout in seconds; a request over it counts as an error.
    #[arg(long, default_value_t = 60)]
    pub timeout_secs: u64,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Register through the Synapse-compatible shared-secret admin API instead of open
    /// registration with m.login.dummy.
    #[arg(long)]
    pub shared_secret: Option<String>,
}

impl CommonArgs {
    pub fn concurrency(&self) -> usize {
        usize::from(self.concurrency)
    }

    /// A client keeping enough idle connections for `--concurrency` and for `max_in_flight`,
    /// whichever is larger.
    pub fn client(&self, max_in_flight: usize) -> Result<CsClient, String> {
        self.client_of(&self.base_url, max_in_flight)
    }

    /// [`CommonArgs::client`] for another server than `--base-url`.
    pub fn client_of(&self, base_url: &str, max_in_flight: usize) -> Result<CsClient, String> {
        CsClient::new(
            base_url,
            self.concurrency().max(max_in_flight),
            Duration::from_secs(self.timeout_secs),
        )
        .map_err(|e| format!("cannot build HTTP client: {e}"))
    }

    pub fn registration_kind(&self) -> &'static str {
        if self.shared_secret.is_some() {
            "shared-secret"
        } else {
            "open"
        }
    }
}

/// One run's account names and password. The prefix is random per run, so reruns against the
/// same database do not collide.
pub struct Accounts {
    pub prefix: String,
    pub password: String,
}

impl Accounts {
    pub fn generate() -> Self {
        let mut rng = rand::thread_rng();
        Self {
            prefix: format!("bench{:08x}", rng.r#gen::<u32>()),
            password: format!("pw-{:016x}", rng.r#gen::<u64>()),
        }
    }

    pub fn username(&self, i: usize) -> String {
        format!("{}_{i}", self.prefix)
    }
}

pub struct RegisteredUser {
    pub username: String,
    pub session: Session,
}

impl RegisteredUser {
    pub fn token(&self) -> &str {
        &self.session.access_token
    }
}

/// Registers one account, as the `register` operation of a phase.
pub async fn register(
    client: &CsClient,
    common: &CommonArgs,
    username: String,
    password: &str,
) -> (&'static str, Result<RegisteredUser, RequestError>) {
    let result = match &common.shared_secret {
        Some(secret) => {
            client
                .register_shared_secret(secret, &username, password)
                .await
        }
        None => client.register_open(&username, password).await,
    };
    (
        "register",
        result.map(|session| RegisteredUser { username, session }),
    )
}

/// Setup of the room scenarios: registers `count` users at `--concurrency`, untimed, and fails
/// unless every one of them could register.
pub async fn register_all(
    scenario: &str,
    client: &CsClient,
    common: &CommonArgs,
    accounts: &Accounts,
    count: usize,
) -> Result<Vec<RegisteredUser>, String> {
    eprintln!(
        "{scenario}: registering {count} users as {}_*",
        accounts.prefix
    );
    let started = Instant::now();
    let users = run_setup(
        &format!("{scenario}: registered"),
        common.concurrency(),
        count,
        |i| register(client, common, accounts.username(i), &accounts.password),
    )
    .await?;
    eprintln!(
        "{scenario}: registered {count} users in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(users)
}
