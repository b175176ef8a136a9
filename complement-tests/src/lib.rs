//! Black-box test harness for Tessera.
//!
//! Every test starts real `tessera` processes ([`TestServer`]) in temporary directories on free
//! loopback ports and talks to them over HTTP only ([`Client`]). Nothing here links against the
//! server's crates: what the tests see is what a Matrix client sees.
//!
//! Environment:
//! - `TESSERA_BIN`: the server binary (default: `tessera` next to the test executable's `deps/`
//!   directory, i.e. what `cargo build --bin tessera` produces).
//! - `TESSERA_TEST_DATABASE_URL`: a PostgreSQL URL (e.g. `postgres://postgres@127.0.0.1:5432/test`);
//!   when set, each server gets its own fresh database on that cluster instead of SQLite.
//! - `TESSERA_TEST_LOG_LEVEL`: the server's `logging.level` (default `info`).

mod client;
pub mod e2ee;
pub mod federation;
pub mod im;
pub mod media;
pub mod older_server;
mod postgres;
pub mod rooms;
mod server;
pub mod synapse;
pub mod sync;
mod util;

pub use client::{Client, Response, User, password_auth, password_login_body, with_auth};
pub use reqwest::Method;
pub use serde_json::{Value, json};
pub use server::{CliOutput, ServerBuilder, TestServer, run_tessera};
pub use util::{admin_register_mac, enc, wait_until};

/// Path prefix of the Client-Server API, version 3.
pub const V3: &str = "/_matrix/client/v3";
