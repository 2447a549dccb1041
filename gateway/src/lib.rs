//! The gateway socket node (work in progress on this branch).
//!
//! # Layout
//! - `session/` — the pure per-shard session core: users, offsets, resume logs, outbound buffers.
pub mod session;
