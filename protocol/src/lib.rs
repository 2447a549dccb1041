//! Every wire type shared by gateway, control and loadgen (pure: no I/O, no clock).
//!
//! # Layout
//! - `ws/`: RFC 6455 WebSocket codec (frames, assembler, close frames, encoders).
//! - `http/`: HTTP/1.1 upgrade request parsing and response builders, server and client side.
#![warn(missing_docs)]

pub mod http;
pub mod ws;
