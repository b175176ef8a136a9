//! Tessera's engine: everything a homeserver does, without HTTP.

pub mod client_address;
pub mod config;
pub mod e2ee;
pub mod error;
pub mod events;
pub mod federation;
pub mod im;
pub mod keys;
pub mod media;
pub mod outbound_address;
pub mod ratelimit;
pub mod rooms;
mod services;
pub mod store;
pub mod sync;
pub mod time;
pub mod uia;
pub mod users;

pub use config::Config;
pub use error::{Error, Result};
pub use services::{Services, StartError};
