//! Pure client-side delivery logic, shared by loadgen and the tests (and a model for SDKs).
//!
//! A client keeps an [`Inbox`] (which offsets it has, which it is missing, which messages
//! are duplicates), an [`AckBatcher`] (when to send `ack` and with what: a cumulative
//! `upTo` never covers a hole), an [`Outbox`] (messages sent but not yet confirmed by
//! `sent`, resent after a reconnect under the same `clientMsgId`) and a [`Backoff`]
//! (reconnect delays). None of them reads a clock or draws randomness: `now` and the
//! random draw are arguments.
//!
//! # Layout
//!
//! - `inbox.rs` — [`Inbox`]: received offsets, holes, duplicate detection.
//! - `ack.rs` — [`AckBatcher`].
//! - `outbox.rs` — [`Outbox`].
//! - `backoff.rs` — [`Backoff`].

mod ack;
mod backoff;
mod inbox;
mod outbox;

pub use ack::{AckBatcher, DEFAULT_ACK_DELAY_MS, DEFAULT_ACK_EVERY};
pub use backoff::Backoff;
pub use inbox::{Inbox, Receipt, MAX_MISSING_RANGES, RECENT_MSG_IDS};
pub use outbox::{Outbox, PendingSend, MAX_OUTBOX};
