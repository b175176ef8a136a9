//! PDUs: building, hashing, signing and identifying events per room version, the client format
//! they are served in, and redaction.

mod build;
mod client_format;
mod pdu;

pub use build::{EventError, GraphPosition, NewEvent, build_pdu, reference_event_id};
pub use client_format::{Unsigned, client_event_json};
pub use pdu::{Pdu, PduParseError};

/// The largest PDU the spec allows, in bytes of canonical JSON (spec: "Size limits").
pub const MAX_PDU_BYTES: usize = 65_536;
