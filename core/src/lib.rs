//! Tessera's engine: everything a homeserver does, without HTTP.

pub mod client_address;
pub mod config;
pub mod error;
pub mod keys;
pub mod ratelimit;
mod services;
pub mod store;
pub mod time;
pub mod uia;
pub mod users;

pub use config::Config;
pub use error::{Error, Result};
pub use services::{Services, StartError};
