//! One module per scenario. Each takes [`CommonArgs`] plus its own options and returns a
//! [`ScenarioReport`](crate::stats::ScenarioReport).

pub mod auth;

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::client::CsClient;

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
}

impl CommonArgs {
    pub fn concurrency(&self) -> usize {
        usize::from(self.concurrency)
    }

    pub fn client(&self) -> reqwest::Result<CsClient> {
        CsClient::new(
            &self.base_url,
            self.concurrency(),
            Duration::from_secs(self.timeout_secs),
        )
    }
}
