//! The ring's JSON form: what control stores in Redis and publishes, and what every node
//! loads. Only the membership travels; the points are rebuilt on load (they are a pure
//! function of the nodes and `vnodesPerWeight`).
//!
//! Rolling upgrades: readers ignore unknown fields, so a newer writer may add fields
//! without bumping `formatVersion`; it bumps `formatVersion` only for a change older readers
//! would misread, and they then refuse the snapshot (`UnsupportedFormat`) instead of
//! routing by a ring they do not understand. A missing `formatVersion` reads as 1.

use serde::{Deserialize, Serialize};

use crate::error::RingError;
use crate::limits::FORMAT_VERSION;
use crate::node::Node;
use crate::ring::Ring;

/// The serialized ring: `{"formatVersion":1,"version":7,"vnodesPerWeight":150,"nodes":[…]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RingSnapshot {
    /// Layout version of this JSON (see module doc).
    #[serde(default = "format_v1")]
    pub format_version: u32,
    /// The ring version.
    pub version: u64,
    /// Points per unit of weight.
    pub vnodes_per_weight: u32,
    /// Members, sorted by id.
    pub nodes: Vec<Node>,
}

fn format_v1() -> u32 {
    1
}

/// First pass of a load: only the format, so a newer layout is refused by version rather
/// than by whatever field it happens to break.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FormatProbe {
    #[serde(default = "format_v1")]
    format_version: u32,
}

impl Ring {
    /// This ring's serializable form.
    pub fn snapshot(&self) -> RingSnapshot {
        RingSnapshot {
            format_version: FORMAT_VERSION,
            version: self.version(),
            vnodes_per_weight: self.vnodes_per_weight(),
            nodes: self.nodes().to_vec(),
        }
    }

    /// Rebuilds a ring from a snapshot, validating it like a diff would (ids, URLs,
    /// weights, duplicates, limits). Lookups equal the ring that wrote it.
    pub fn from_snapshot(snapshot: RingSnapshot) -> Result<Ring, RingError> {
        check_format(snapshot.format_version)?;
        Ring::from_parts(snapshot.version, snapshot.vnodes_per_weight, snapshot.nodes)
    }

    /// The snapshot as JSON.
    pub fn to_json(&self) -> String {
        // Strings, integers and unit enums: serde_json cannot fail on these.
        serde_json::to_string(&self.snapshot()).expect("ring snapshot always serializes")
    }

    /// Loads a ring from snapshot JSON (unknown fields ignored).
    pub fn from_json(json: &str) -> Result<Ring, RingError> {
        let probe: FormatProbe =
            serde_json::from_str(json).map_err(|e| RingError::Json(e.to_string()))?;
        check_format(probe.format_version)?;
        let snapshot: RingSnapshot =
            serde_json::from_str(json).map_err(|e| RingError::Json(e.to_string()))?;
        Ring::from_snapshot(snapshot)
    }
}

fn check_format(found: u32) -> Result<(), RingError> {
    if found > FORMAT_VERSION {
        return Err(RingError::UnsupportedFormat {
            found,
            supported: FORMAT_VERSION,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::Diff;
    use crate::node::NodeState;

    fn ring() -> Ring {
        Ring::new(40)
            .apply_all(&[
                Diff::AddNode(Node::new("b", 2, "ws://b/ws")),
                Diff::AddNode(Node::new("a", 1, "wss://a.example/ws")),
                Diff::AddNode(Node {
                    id: "c".into(),
                    weight: 1,
                    url: "ws://c/ws".into(),
                    state: NodeState::Draining,
                }),
            ])
            .unwrap()
    }

    #[test]
    fn json_shape_and_round_trip() {
        let r = ring();
        let j = r.to_json();
        assert!(
            j.starts_with(
                r#"{"formatVersion":1,"version":1,"vnodesPerWeight":40,"nodes":[{"id":"a""#
            ),
            "{j}"
        );
        let back = Ring::from_json(&j).unwrap();
        assert_eq!(back.version(), 1);
        assert_eq!(back.nodes(), r.nodes());
        assert_eq!(back.table(), r.table());
    }

    #[test]
    fn unknown_fields_ignored_and_missing_format_is_v1() {
        let j = r#"{"version":9,"vnodesPerWeight":10,"future":{"x":1},
            "nodes":[{"id":"n","weight":1,"url":"ws://n","zone":"eu-1"}]}"#;
        let r = Ring::from_json(j).unwrap();
        assert_eq!(r.version(), 9);
        assert_eq!(r.owner("k").unwrap().id, "n");
    }

    #[test]
    fn newer_format_is_refused_by_version() {
        let j = r#"{"formatVersion":2,"ring":"something else entirely"}"#;
        assert_eq!(
            Ring::from_json(j).unwrap_err(),
            RingError::UnsupportedFormat {
                found: 2,
                supported: 1
            }
        );
    }

    #[test]
    fn invalid_snapshots_are_errors() {
        let bad = [
            "",
            "null",
            "{",
            r#"{"version":1,"nodes":[]}"#,
            r#"{"version":1,"vnodesPerWeight":0,"nodes":[]}"#,
            r#"{"version":1,"vnodesPerWeight":10,"nodes":[{"id":"a","weight":0,"url":"ws://a"}]}"#,
            r#"{"version":1,"vnodesPerWeight":10,"nodes":[{"id":"a","weight":1,"url":"ws://a"},{"id":"a","weight":2,"url":"ws://b"}]}"#,
            r#"{"version":1,"vnodesPerWeight":10,"nodes":[{"id":"a","weight":1,"url":"ws://a","state":"gone"}]}"#,
            r#"{"version":-1,"vnodesPerWeight":10,"nodes":[]}"#,
        ];
        for j in bad {
            assert!(Ring::from_json(j).is_err(), "{j}");
        }
    }
}
