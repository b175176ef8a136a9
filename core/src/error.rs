//! The engine's error: each variant is one Matrix error condition, mapped to an errcode and HTTP
//! status once, at the HTTP edge.

use crate::{events::EventError, store::StoreError, uia::Challenge};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadJson(String),
    #[error("{0}")]
    InvalidParam(String),
    #[error("{0}")]
    InvalidUsername(String),
    #[error("{0}")]
    WeakPassword(String),
    /// The profile would exceed the spec's 64 KiB (400 `M_PROFILE_TOO_LARGE`).
    #[error("{0}")]
    ProfileTooLarge(String),
    /// A profile key over 255 bytes (400 `M_KEY_TOO_LARGE`).
    #[error("{0}")]
    KeyTooLarge(String),
    /// The client tried to write data only the server may write (405 `M_BAD_JSON`).
    #[error("{0}")]
    ServerControlled(String),
    /// An event or request over a size limit (413 `M_TOO_LARGE`).
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    UnsupportedRoomVersion(String),
    /// A server cannot join a room of a version it does not support (400
    /// `M_INCOMPATIBLE_ROOM_VERSION`, with the room's version).
    #[error("The room is version {0}, which the joining server does not support")]
    IncompatibleRoomVersion(ruma::RoomVersionId),
    /// The alias (or another unique room name) is taken (400 `M_ROOM_IN_USE`).
    #[error("{0}")]
    RoomInUse(String),
    /// The thing to create exists already, e.g. a room alias (409 `M_UNKNOWN`).
    #[error("{0}")]
    Conflict(String),
    /// A canonical alias that does not point to the room (400 `M_BAD_ALIAS`).
    #[error("{0}")]
    BadAlias(String),
    /// The requested state cannot be applied (400 `M_INVALID_ROOM_STATE`).
    #[error("{0}")]
    InvalidRoomState(String),
    /// Room keys sent to a backup version that is not the current one (403
    /// `M_WRONG_ROOM_KEYS_VERSION`, with the current version if there is one).
    #[error("{message}")]
    WrongRoomKeysVersion {
        message: String,
        current_version: Option<String>,
    },
    #[error("User ID already taken")]
    UserInUse,
    #[error("This account has been deactivated")]
    UserDeactivated,
    #[error("{0}")]
    Unknown(String),
    #[error("Unknown or expired access token")]
    UnknownToken { soft_logout: bool },
    #[error("Too many requests")]
    LimitExceeded { retry_after_ms: u64 },
    /// User-Interactive Authentication must continue: the client gets the challenge (401).
    #[error("Additional authentication is required")]
    AuthRequired(Box<Challenge>),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Another server could not be asked, or refused.
    #[error(transparent)]
    Federation(#[from] crate::federation::FederationError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<EventError> for Error {
    fn from(e: EventError) -> Self {
        match e {
            EventError::TooLarge { .. } | EventError::FieldTooLong { .. } => {
                Self::TooLarge(e.to_string())
            }
            EventError::InvalidContent(_) => Self::BadJson(e.to_string()),
            EventError::Signing(_) => Self::Internal(e.to_string()),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
