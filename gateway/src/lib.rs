//! The gateway socket node (work in progress on this branch).
//!
//! # Layout
//! - `relay/` — cross-node delivery over Kafka: per-shard bounded rings to a relay thread,
//!   delivery topics per node, health events, control/analytics events.
//! - `session/` — the pure per-shard session core: users, offsets, resume logs, outbound buffers.
pub mod relay;
pub mod session;
