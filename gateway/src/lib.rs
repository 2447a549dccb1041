//! The gateway socket node (work in progress on this branch).
//!
//! # Layout
//! - `session/` — the pure per-shard session core: users, offsets, resume logs, outbound buffers.
//! - `store/` — the Redis store of a cluster (resume logs, offsets, dedup, acks, sessions),
//!   driven by bridge threads off the shards.
pub mod session;
pub mod store;
