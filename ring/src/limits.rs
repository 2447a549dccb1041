//! Every bound of the ring, named once. A ring is built from operator input and from JSON
//! read back from Redis, so each size it allocates from is capped here.

/// Points per unit of weight when the operator does not say (`Ring::new`'s usual argument).
pub const DEFAULT_VNODES_PER_WEIGHT: u32 = 150;
/// Largest accepted `vnodes_per_weight`; past ~1000 balance barely improves (see crate doc).
pub const MAX_VNODES_PER_WEIGHT: u32 = 10_000;
/// Largest node weight.
pub const MAX_WEIGHT: u32 = 1_000;
/// Most nodes in one ring.
pub const MAX_NODES: usize = 10_000;
/// Most ring points (sum of `weight × vnodes_per_weight` over all nodes, draining ones
/// included since they may come back): 4 Mi points ≈ 70 MB of lookup table per copy.
pub const MAX_POINTS: u64 = 1 << 22;
/// Longest node id in bytes.
pub const MAX_NODE_ID_LEN: usize = 64;
/// Longest node URL in bytes.
pub const MAX_URL_LEN: usize = 2_048;
/// Most synthetic keys one `simulate` run may hash (about a second of work per 10 M).
pub const MAX_SIMULATE_KEYS: u64 = 100_000_000;
/// Snapshot JSON layout written by this version (see `snapshot`).
pub const FORMAT_VERSION: u32 = 1;
