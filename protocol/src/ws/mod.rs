//! RFC 6455 WebSocket codec: pure, no I/O, no clock, no randomness (masks are arguments).
//!
//! Built for a server that reads every socket into one per-shard scratch buffer: the
//! [`MessageAssembler`] consumes whatever bytes a read produced, unmasks them in place and
//! hands complete messages out *by reference into that buffer* when a message arrived whole.
//! It keeps bytes of its own only while a message spans several frames or reads, and drops
//! that allocation once the message is handed out, so an idle connection costs the size of
//! the assembler struct (112 bytes on x86-64) and no heap.
//!
//! # Layout
//! - `frame.rs`: [`OpCode`], [`FrameHeader`], [`decode_header`] / [`decode_frame`] with every
//!   per-frame RFC 6455 rule (RSV bits, reserved opcodes, control frame size/fragmentation,
//!   masking direction, 64-bit length MSB).
//! - `mask.rs`: [`apply_mask`], word-at-a-time XOR unmasking in place.
//! - `assembler.rs`: [`MessageAssembler`], the per-connection receive state machine
//!   (fragmentation, interleaved control frames, incremental UTF-8, size limits).
//! - `close.rs`: close frame payloads ([`CloseFrame`], [`parse_close_payload`],
//!   [`is_valid_close_code`]).
//! - `encode.rs`: frame encoders for servers (unmasked) and clients (masked), close frames.
//!
//! # Errors
//! Every [`WsError`] maps to the close code the connection must be failed with
//! ([`WsError::close_code`]): 1002 protocol error, 1007 invalid payload, 1009 too big.

mod assembler;
mod close;
mod encode;
mod frame;
mod mask;

pub use assembler::{Feed, Limits, Message, MessageAssembler};
pub use close::{is_valid_close_code, parse_close_payload, CloseFrame, MAX_CLOSE_REASON};
pub use encode::{
    encode_close, encode_close_masked, encode_frame, encode_frame_masked, write_header,
};
pub use frame::{decode_frame, decode_header, Decoded, FrameHeader, OpCode, MAX_HEADER_LEN};
pub use mask::apply_mask;

use crate::close::{CloseCode, INVALID_PAYLOAD, MESSAGE_TOO_BIG, PROTOCOL_ERROR};

/// Largest payload of a control frame (ping, pong, close), RFC 6455 §5.5.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Default largest data frame payload a peer may send (the gateway's `/ws` uses this).
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024;

/// Default largest message (sum of its fragments) a peer may send.
pub const DEFAULT_MAX_MESSAGE: usize = 64 * 1024;

/// Which end of the connection this codec runs on; decides the masking rule for frames
/// it *receives* (RFC 6455 §5.1: clients mask, servers do not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// We are the server: every received frame must be masked.
    Server,
    /// We are the client: no received frame may be masked.
    Client,
}

/// Why a received byte stream is not acceptable WebSocket traffic. Each variant ends the
/// connection with the close code given by [`WsError::close_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    /// RSV1/2/3 set while no extension was negotiated.
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    /// Opcode 0x3-0x7 or 0xB-0xF.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// A control frame with FIN clear.
    #[error("fragmented control frame")]
    FragmentedControl,
    /// A control frame with more than 125 payload bytes.
    #[error("control frame payload of {0} bytes (max 125)")]
    ControlTooLong(u64),
    /// A server received an unmasked frame.
    #[error("client frame not masked")]
    UnmaskedFrame,
    /// A client received a masked frame.
    #[error("server frame masked")]
    MaskedFrame,
    /// The 64-bit payload length had its most significant bit set.
    #[error("64-bit payload length with the most significant bit set")]
    LengthMsbSet,
    /// A continuation frame arrived with no fragmented message in progress.
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    /// A new text/binary frame arrived while a fragmented message was unfinished.
    #[error("new data frame while a fragmented message is unfinished")]
    ExpectedContinuation,
    /// A close frame with a one-byte payload (a code needs two).
    #[error("close frame payload of one byte")]
    CloseTooShort,
    /// A close frame carried a code that may not be sent on the wire.
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// A text message or close reason was not valid UTF-8.
    #[error("invalid UTF-8 in text message or close reason")]
    InvalidUtf8,
    /// A data frame's declared payload exceeds the endpoint's frame limit.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// Declared payload length.
        len: u64,
        /// Configured limit.
        max: usize,
    },
    /// The message (all fragments so far plus the next frame) exceeds the message limit.
    #[error("message exceeds the limit of {max} bytes")]
    MessageTooLarge {
        /// Configured limit.
        max: usize,
    },
}

impl WsError {
    /// The close code to fail the connection with (RFC 6455 §7.4.1).
    pub fn close_code(&self) -> CloseCode {
        match self {
            WsError::InvalidUtf8 => INVALID_PAYLOAD,
            WsError::FrameTooLarge { .. } | WsError::MessageTooLarge { .. } => MESSAGE_TOO_BIG,
            _ => PROTOCOL_ERROR,
        }
    }
}
