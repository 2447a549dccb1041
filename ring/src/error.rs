//! Why a ring change, a snapshot or a simulation was refused.

use thiserror::Error;

use crate::limits::{MAX_NODES, MAX_POINTS, MAX_VNODES_PER_WEIGHT, MAX_WEIGHT};

/// Everything the ring refuses. Applying a diff never panics; it returns one of these and
/// the ring it was applied to stays as it was (snapshots are immutable).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RingError {
    /// A diff named a node id the ring does not have.
    #[error("unknown node {0:?}")]
    UnknownNode(String),
    /// `AddNode` with an id the ring already has.
    #[error("node {0:?} is already in the ring")]
    DuplicateNode(String),
    /// A weight of 0 (a node that should own nothing is drained or removed, not weighted 0).
    #[error("node {0:?}: weight must be at least 1")]
    ZeroWeight(String),
    /// A weight above `MAX_WEIGHT`.
    #[error("node {id:?}: weight {weight} is above the maximum {MAX_WEIGHT}")]
    WeightTooLarge {
        /// The node.
        id: String,
        /// The refused weight.
        weight: u32,
    },
    /// An id that is empty, longer than 64 bytes or outside `[A-Za-z0-9_.:-]`.
    #[error("invalid node id {0:?} (1..=64 bytes of [A-Za-z0-9_.:-])")]
    InvalidNodeId(String),
    /// A URL that is not `ws://host…` or `wss://host…` (printable ASCII, ≤ 2048 bytes).
    #[error("node {id:?}: invalid public URL {url:?} (want ws://host… or wss://host…)")]
    InvalidUrl {
        /// The node.
        id: String,
        /// The refused URL (cut to 128 bytes).
        url: String,
    },
    /// `vnodes_per_weight` of 0 or above `MAX_VNODES_PER_WEIGHT`.
    #[error("vnodes per weight {0} is outside 1..={MAX_VNODES_PER_WEIGHT}")]
    InvalidVnodes(u32),
    /// The change would make the ring hold more than `MAX_NODES` nodes.
    #[error("more than {MAX_NODES} nodes")]
    TooManyNodes,
    /// The change would make the ring hold more than `MAX_POINTS` points.
    #[error("{points} ring points is above the maximum {MAX_POINTS}")]
    TooManyPoints {
        /// Points the ring would have held.
        points: u64,
    },
    /// `apply_all` with an empty list (a new version that changes nothing is a mistake).
    #[error("empty list of ring changes")]
    EmptyBatch,
    /// One diff of an `apply_all` batch failed; none of the batch was applied.
    #[error("ring change #{index}: {source}")]
    InBatch {
        /// Position of the failing diff in the batch (0-based).
        index: usize,
        /// Why it failed.
        source: Box<RingError>,
    },
    /// Snapshot JSON that does not parse or lacks a required field.
    #[error("bad ring snapshot JSON: {0}")]
    Json(String),
    /// A snapshot written by a newer, incompatible version of this crate.
    #[error("ring snapshot format {found} is newer than the supported {supported}")]
    UnsupportedFormat {
        /// `formatVersion` found in the snapshot.
        found: u32,
        /// Newest format this build reads.
        supported: u32,
    },
    /// `simulate` arguments out of range.
    #[error("invalid simulation: {0}")]
    InvalidSimulation(&'static str),
}
