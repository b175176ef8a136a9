//! Talking to other homeservers: finding them (server discovery), requests signed with this
//! server's key (`X-Matrix`), and their signing keys, fetched, verified and cached.
//!
//! This lives in core, not in the federation crate, because core services (profiles, device
//! keys, aliases) ask remote servers too; the federation crate serves the inbound side.

mod backfill;
mod client;
mod discovery;
pub mod edus;
pub mod hierarchy;
mod inbound;
mod invite;
mod join;
pub mod joining;
mod knock;
mod leave;
mod media;
mod missing;
mod multipart;
mod pdu;
mod queries;
pub mod sender;
mod server_keys;

use std::sync::Arc;

use http::StatusCode;
use ruma::OwnedServerName;

pub use client::FederationClient;
pub use inbound::PduResults;
pub use join::FEDERATED_ROOM_VERSIONS;
pub use pdu::CheckedPdu;
pub use server_keys::{ServerKeys, key_response_with_notary_signature};

use crate::{Config, keys::SigningKey, store::Store};

#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    /// No connection could be made, or it broke before a response arrived.
    #[error("cannot reach {server}: {reason}")]
    Unreachable {
        server: OwnedServerName,
        reason: String,
    },
    /// The server answered with a Matrix error.
    #[error("{server} answered {status} {errcode}: {message}")]
    Remote {
        server: OwnedServerName,
        status: StatusCode,
        errcode: String,
        message: String,
    },
    /// The server answered, but not with what the endpoint promises.
    #[error("{server} sent an invalid response: {reason}")]
    BadResponse {
        server: OwnedServerName,
        reason: String,
    },
    /// The server's signing keys could not be obtained or did not verify.
    #[error("cannot verify signatures of {server}: {reason}")]
    Keys {
        server: OwnedServerName,
        reason: String,
    },
    /// Our own request could not be built (a bug, or an identifier ruma refuses).
    #[error("cannot build the request to {server}: {reason}")]
    Request {
        server: OwnedServerName,
        reason: String,
    },
}

/// The federation services: the outbound client and the key cache that uses it.
pub struct Federation {
    pub client: Arc<FederationClient>,
    pub keys: ServerKeys,
    pub outbound: sender::Outbound,
    pub joins: joining::JoinsInProgress,
}

impl Federation {
    pub fn new(
        config: Arc<Config>,
        store: Store,
        signing_key: Arc<SigningKey>,
    ) -> Result<Self, FederationError> {
        let client = Arc::new(FederationClient::new(config.clone(), signing_key.clone())?);
        let keys = ServerKeys::new(config, store, signing_key, client.clone());
        Ok(Self {
            client,
            keys,
            outbound: sender::Outbound::default(),
            joins: joining::JoinsInProgress::default(),
        })
    }
}
