//! PDUs: building, hashing, signing and identifying events per room version, the client format
//! they are served in, and redaction.

mod build;
mod client_format;
mod pdu;
mod reference;

pub use build::{EventError, GraphPosition, NewEvent, build_pdu};
pub use client_format::{Unsigned, client_event_json, event_json_in};
pub use pdu::{Pdu, PduParseError};
pub use reference::{
    ReferenceHashes, is_format_v1, received_event_id, reference_event_id, reference_list,
    reference_sha256, sign_and_identify,
};

/// The largest PDU the spec allows, in bytes of canonical JSON (spec: "Size limits").
pub const MAX_PDU_BYTES: usize = 65_536;
