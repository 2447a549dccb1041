//! Weighted consistent-hash ring with versioned, immutable snapshots.
//!
//! Pure: no I/O, no clock, no randomness. Control owns the authoritative ring; every
//! gateway shard holds its own copy and swaps it whole when a new version arrives (see
//! `LIFECYCLE.md`).
//!
//! # Placement
//!
//! A node with weight `w` gets `w × vnodes_per_weight` points on a 64-bit ring; point `i`
//! of node `id` sits at `xxh3_64("{id}#{i}")` (decimal `i`, from 0). A key `k` hashes to
//! [`hash_key`]`(k)` = `xxh3_64(k)` and is owned by the first point at or after it,
//! wrapping past `2^64 - 1` to the first point. Equal points are ordered by node id (the
//! smallest id owns the key on that exact position), so lookups never depend on insertion
//! order. Draining nodes have no points in the lookup table: their keys fall to the next
//! active successor, and nobody else's keys move. Inside a node, a user's home shard is
//! [`shard_of`] = `hash_key(user) % shard_count`.
//!
//! Changes are typed [`Diff`]s applied by [`Ring::apply`] / [`Ring::apply_all`], each
//! returning a new snapshot with `version + 1` or a [`RingError`] (never a panic).
//!
//! # Choosing `vnodes_per_weight`
//!
//! More points per node balance load better but cost memory per copy (each shard holds
//! one) and a little lookup time. Measured on the build machine (2 shared cores, see
//! `benches/RESULTS.md` for the command): max/mean is the most loaded node's exact share
//! of the hash space over the mean, for 10 equal nodes; lookup is `owner(&str)` including
//! the hash, 10 equal nodes; bytes is the lookup table of those 10 nodes.
//!
//! | vnodes_per_weight | max/mean (10 nodes) | lookup | table bytes (10 nodes) |
//! |---|---|---|---|
//! | 10 | 1.750 | 8.6 ns | 1,716 (100 points) |
//! | 150 (default) | 1.137 | 10.1 ns | 26,196 (1,500 points) |
//! | 1000 | 1.053 | 10.5 ns | 185,540 (10,000 points) |
//!
//! (2026-11-30; lookup at 100 nodes × 150 is 15.3 ns ≈ 65 M/s, table 245,540 bytes.)
//! Lookup time barely moves with the point count because of the bucket index; the price
//! of more points is memory per copy and build time. Rule of thumb: the relative spread of
//! one node's share is about `1/sqrt(points)`, so 150 points give ~8% standard deviation
//! and 1000 give ~3%. 150 is the default: ±14% worst node at 10 nodes for 26 KB a copy.
//!
//! # Layout
//!
//! - `hash.rs` — [`hash_key`], [`shard_of`], the point-key format.
//! - `node.rs` — [`Node`], [`NodeState`], validation of ids, weights, URLs.
//! - `diff.rs` — [`Diff`], the typed ring changes.
//! - `ring.rs` — [`Ring`]: the snapshot, `apply`/`apply_all`, lookups.
//! - `table.rs` — the sorted point table with a bucket index (the lookup hot path).
//! - `keyspace.rs` — exact [`Ring::shares`], [`moved_between`], [`moved_fraction`].
//! - `snapshot.rs` — [`RingSnapshot`] JSON (`formatVersion`, rolling upgrades).
//! - `simulate.rs` — [`simulate`] for `control ring simulate`.
//! - `limits.rs` — every bound, named once.
//! - `error.rs` — [`RingError`].

#![warn(missing_docs)]

mod diff;
mod error;
mod hash;
mod keyspace;
mod limits;
mod node;
mod ring;
mod simulate;
mod snapshot;
mod table;

pub use diff::Diff;
pub use error::RingError;
pub use hash::{hash_key, point_hash, shard_of};
pub use keyspace::{moved_between, moved_fraction, NodeChange};
pub use limits::{
    DEFAULT_VNODES_PER_WEIGHT, FORMAT_VERSION, MAX_NODES, MAX_NODE_ID_LEN, MAX_POINTS,
    MAX_SIMULATE_KEYS, MAX_URL_LEN, MAX_VNODES_PER_WEIGHT, MAX_WEIGHT,
};
pub use node::{Node, NodeState};
pub use ring::Ring;
pub use simulate::{simulate, NodeLoad, Simulation};
pub use snapshot::RingSnapshot;
