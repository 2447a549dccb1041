//! Client ↔ server JSON text frames.
//!
//! Every frame is one JSON object in one WebSocket text message, with a `type` field and
//! camelCase fields. `protocol/SPEC.md` shows one example of each.
//!
//! - Client → server: [`ClientFrame`] (`message`, `ack`, `ping`), parsed without copying the
//!   payload: the payload comes back as the raw JSON bytes sliced from the input, so the
//!   gateway forwards exactly what the sender wrote.
//! - Server → client: [`ServerFrame`] (`welcome`, `message`, `sent`, `gap`, `pong`, `drain`,
//!   `redirect`, `error`), encoded by hand into a `Vec<u8>`; the payload is copied verbatim.
//! - [`OwnedServerFrame`] / [`OwnedClientFrame`]: serde forms for clients and tests (loadgen
//!   and the integration tests share them).
//!
//! **Forward compatibility.** Rooms, presence, signaling, matchmaking and room state will add
//! new frame types. A server that does not know a client frame's `type` answers
//! [`FrameError::UnknownType`] (the gateway sends an `error` frame with code `unknown_type`
//! and keeps the connection); a client that does not know a server frame's `type` gets
//! [`OwnedServerFrame::Unknown`] and ignores it. Unknown fields are ignored in both directions.
//!
//! # Layout
//!
//! - `client.rs` — [`ClientFrame`] and its two parsers: simd-json ([`ClientFrameParser`],
//!   small frames) and serde_json ([`parse_with_serde`], large frames).
//! - `server.rs` — [`ServerFrame`] and its encoder.
//! - `owned.rs` — [`OwnedServerFrame`], [`OwnedClientFrame`].
//! - `json.rs` — string escaping, integer writing, value skipping.

mod client;
pub(crate) mod json;
mod owned;
mod server;

pub use client::{parse_with_serde, ClientFrame, ClientFrameParser, SIMD_PARSE_MAX_LEN};
pub use owned::{OwnedClientFrame, OwnedServerFrame, RawPayload, ServerFrameError};
pub use server::ServerFrame;

use crate::user::UserIdError;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Most message ids one `ack` frame may carry in `msgIds`.
pub const MAX_ACK_IDS: usize = 256;
/// Longest `clientMsgId` accepted, in bytes (senders use UUIDs or counters).
pub const MAX_CLIENT_MSG_ID_LEN: usize = 64;

/// Why a client frame was refused. Cheap to build (no allocation): a bad frame is answered
/// with an `error` frame carrying [`FrameError::code`], and the connection stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FrameError {
    /// Not valid JSON, not an object, a known field with the wrong JSON type, or a known
    /// field given twice.
    #[error("malformed frame: not a JSON object with well-typed fields")]
    Malformed,
    /// The object has no string `type` field.
    #[error("frame has no \"type\" field")]
    MissingType,
    /// `type` names a frame this server does not know (maybe a newer protocol feature).
    #[error("unknown frame type")]
    UnknownType,
    /// A field the frame type requires is absent (or `null`).
    #[error("missing field \"{0}\"")]
    MissingField(&'static str),
    /// A string field is empty or longer than its limit.
    #[error("field \"{0}\" is empty or too long")]
    BadLength(&'static str),
    /// `msgIds` holds more than [`MAX_ACK_IDS`] ids.
    #[error("ack carries more than {MAX_ACK_IDS} msgIds")]
    TooManyAckIds,
    /// `to` is not a valid user id.
    #[error("bad recipient: {0}")]
    BadRecipient(#[from] UserIdError),
}

impl FrameError {
    /// The `error` frame code the gateway answers with.
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameError::Malformed
            | FrameError::MissingType
            | FrameError::MissingField(_)
            | FrameError::BadLength(_) => ErrorCode::BadFrame,
            FrameError::UnknownType => ErrorCode::UnknownType,
            FrameError::TooManyAckIds => ErrorCode::TooLarge,
            FrameError::BadRecipient(_) => ErrorCode::BadUser,
        }
    }
}

/// The `code` of an `error` frame: what went wrong, machine-readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame could not be parsed (bad JSON, missing or ill-typed field).
    BadFrame,
    /// The frame's `type` is unknown to this server.
    UnknownType,
    /// A user id (e.g. `to`) is invalid.
    BadUser,
    /// The client sends faster than its rate limit; the frame was dropped.
    RateLimited,
    /// The message could not be committed now (store or relay unavailable); retry it.
    Unavailable,
    /// The frame or one of its fields is over a size limit.
    TooLarge,
    /// The server failed unexpectedly while handling the frame.
    Internal,
    /// A code this client version does not know (sent by a newer server).
    #[serde(other)]
    Other,
}

impl ErrorCode {
    /// The wire spelling (`bad_frame`, `unknown_type`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::BadUser => "bad_user",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Internal => "internal",
            ErrorCode::Other => "other",
        }
    }
}
