//! Every wire type shared by the gateway, control and loadgen.
//!
//! The crate is a *pure core*: no I/O, no clock, no randomness. Time ("now", expiries) and
//! random draws are arguments, so every function here is deterministic and testable without
//! a socket. Peer input never panics the parsers and never sizes an allocation on its own:
//! every variable-length field has a named limit.
//!
//! The human-readable description of the wire protocol (one example of every frame, the
//! close-code table, the token format) is `protocol/SPEC.md`.
//!
//! # Layout
//!
//! - [`user`] — user id validation (the one definition of a valid user id).
//! - [`frames`] — client ↔ server JSON text frames: zero-copy client-frame parser, hand-written
//!   server-frame encoder, owned serde forms for clients and tests.
//! - [`close`] — WebSocket close codes and HTTP statuses the gateway uses, with reasons.
//! - [`token`] — HMAC-SHA256 connect and resume tokens with key rotation.
//! - [`relay`] — versioned binary envelope for node-to-node delivery.
//! - [`control`] — JSON bodies of the control plane's HTTP API (heartbeats, placement).
//! - [`client`] — pure client-side delivery logic (inbox, acks, outbox, backoff) shared by
//!   loadgen and the tests.
//! - [`ws`] — RFC 6455 WebSocket codec: frame decode/encode, message assembler (fragmentation,
//!   incremental UTF-8, limits), close frames.
//! - [`http`] — HTTP/1.1 upgrade request parsing and response builders, server and client side.
#![warn(missing_docs)]

pub mod client;
pub mod close;
pub mod control;
pub mod frames;
pub mod http;
pub mod relay;
pub mod token;
pub mod user;
pub mod ws;
