//! The immutable, versioned ring snapshot and the one function that changes it.

use crate::diff::Diff;
use crate::error::RingError;
use crate::hash::{hash_key, push_node_points};
use crate::limits::{MAX_NODES, MAX_POINTS, MAX_VNODES_PER_WEIGHT};
use crate::node::{validate_weight, Node};
use crate::table::Table;

/// One version of the ring. Immutable: a change makes a new `Ring` with `version + 1`, and
/// each holder (every shard, control) swaps its copy whole — nothing is ever edited in place.
#[derive(Debug, Clone)]
pub struct Ring {
    /// Bumped by exactly one per `apply`/`apply_all`; tokens and redirects carry it so a
    /// node can tell a stale placement from a fresh one.
    version: u64,
    /// Points per unit of weight (the balance / speed / memory knob, see crate doc).
    vnodes_per_weight: u32,
    /// Members sorted by id: node indices in `table` follow id order, which makes lookups
    /// independent of insertion order and orders equal hash points by id.
    nodes: Vec<Node>,
    /// Points of the active nodes.
    table: Table,
}

/// What an edit did to the node list, so `apply` can patch the table instead of rebuilding.
enum Edit {
    /// A node was inserted at this (new) index.
    Inserted(usize),
    /// The node at this (old) index was removed.
    Removed(usize),
    /// The node at this index changed weight or state: drop its points, regenerate them if
    /// it is active now. `redo` is false when the diff changed nothing.
    Changed { pos: usize, redo: bool },
}

impl Ring {
    /// An empty ring, version 0. `vnodes_per_weight` is clamped into
    /// `1..=MAX_VNODES_PER_WEIGHT` (use [`Ring::try_new`] to refuse instead).
    pub fn new(vnodes_per_weight: u32) -> Ring {
        Ring {
            version: 0,
            vnodes_per_weight: vnodes_per_weight.clamp(1, MAX_VNODES_PER_WEIGHT),
            nodes: Vec::new(),
            table: Table::default(),
        }
    }

    /// An empty ring, version 0, or `InvalidVnodes` outside `1..=MAX_VNODES_PER_WEIGHT`.
    pub fn try_new(vnodes_per_weight: u32) -> Result<Ring, RingError> {
        check_vnodes(vnodes_per_weight)?;
        Ok(Ring::new(vnodes_per_weight))
    }

    /// A ring with exactly these nodes and this version, all points built from scratch
    /// (snapshot load). Validates everything a diff would.
    pub(crate) fn from_parts(
        version: u64,
        vnodes_per_weight: u32,
        mut nodes: Vec<Node>,
    ) -> Result<Ring, RingError> {
        check_vnodes(vnodes_per_weight)?;
        if nodes.len() > MAX_NODES {
            return Err(RingError::TooManyNodes);
        }
        for n in &nodes {
            n.validate()?;
        }
        nodes.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        if let Some(w) = nodes.windows(2).find(|w| w[0].id == w[1].id) {
            return Err(RingError::DuplicateNode(w[0].id.clone()));
        }
        check_points(vnodes_per_weight, &nodes)?;
        let table = build_table(vnodes_per_weight, &nodes);
        Ok(Ring {
            version,
            vnodes_per_weight,
            nodes,
            table,
        })
    }

    /// Applies one change and returns the next version; `self` is untouched. Errors on an
    /// unknown node, a duplicate id, an invalid id/URL/weight or a limit, never panics.
    ///
    /// Cost is O(points) (a merge of the surviving points with the changed node's fresh
    /// ones), not a full rebuild.
    pub fn apply(&self, diff: &Diff) -> Result<Ring, RingError> {
        let mut nodes = self.nodes.clone();
        let edit = edit(&mut nodes, self.vnodes_per_weight, diff)?;
        let old_len = self.nodes.len();
        let mut remap: Vec<Option<u32>> = (0..old_len as u32).map(Some).collect();
        let mut fresh_for = None;
        match edit {
            Edit::Inserted(pos) => {
                for r in remap.iter_mut().skip(pos).flatten() {
                    *r += 1;
                }
                fresh_for = Some(pos);
            }
            Edit::Removed(pos) => {
                remap[pos] = None;
                for r in remap.iter_mut().skip(pos + 1).flatten() {
                    *r -= 1;
                }
            }
            Edit::Changed { pos, redo: true } => {
                remap[pos] = None;
                fresh_for = Some(pos);
            }
            Edit::Changed { redo: false, .. } => {}
        }
        let mut fresh = Vec::new();
        if let Some(pos) = fresh_for.filter(|&p| nodes[p].is_active()) {
            let n = &nodes[pos];
            push_node_points(
                &n.id,
                n.weight * self.vnodes_per_weight,
                pos as u32,
                &mut fresh,
            );
            fresh.sort_unstable();
        }
        let table = self.table.merged(&remap, &fresh);
        Ok(Ring {
            version: self.version + 1,
            vnodes_per_weight: self.vnodes_per_weight,
            nodes,
            table,
        })
    }

    /// Applies a list of changes atomically: either all succeed and the result is ONE new
    /// version (`version + 1`), or the first failure is returned as `InBatch` and nothing
    /// changes. An empty list is `EmptyBatch`.
    pub fn apply_all(&self, diffs: &[Diff]) -> Result<Ring, RingError> {
        if diffs.is_empty() {
            return Err(RingError::EmptyBatch);
        }
        let mut nodes = self.nodes.clone();
        for (index, diff) in diffs.iter().enumerate() {
            edit(&mut nodes, self.vnodes_per_weight, diff).map_err(|e| RingError::InBatch {
                index,
                source: Box::new(e),
            })?;
        }
        let table = build_table(self.vnodes_per_weight, &nodes);
        Ok(Ring {
            version: self.version + 1,
            vnodes_per_weight: self.vnodes_per_weight,
            nodes,
            table,
        })
    }

    /// The snapshot's version (0 for a new ring).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Points per unit of weight.
    pub fn vnodes_per_weight(&self) -> u32 {
        self.vnodes_per_weight
    }

    /// All members (active and draining), sorted by id.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The member with this id.
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.position(id).map(|i| &self.nodes[i])
    }

    /// The active node owning `key` (a user id, room or queue name); `None` when no node
    /// is active.
    #[inline]
    pub fn owner(&self, key: &str) -> Option<&Node> {
        self.owner_hash(hash_key(key.as_bytes()))
    }

    /// The active node owning hash `h` (`hash_key` of the key): the node of the first
    /// point at or after `h`, wrapping around.
    #[inline]
    pub fn owner_hash(&self, h: u64) -> Option<&Node> {
        self.table
            .successor(h)
            .and_then(|i| self.nodes.get(i as usize))
    }

    /// Number of points in the lookup table (active nodes only).
    pub fn point_count(&self) -> usize {
        self.table.len()
    }

    /// Heap bytes of the lookup table (what each shard's copy costs beyond the node list).
    pub fn table_bytes(&self) -> usize {
        self.table.memory_bytes()
    }

    pub(crate) fn table(&self) -> &Table {
        &self.table
    }

    fn position(&self, id: &str) -> Option<usize> {
        self.nodes.binary_search_by(|n| n.id.as_str().cmp(id)).ok()
    }
}

/// Applies `diff` to the sorted node list, validating it first.
fn edit(nodes: &mut Vec<Node>, vnodes: u32, diff: &Diff) -> Result<Edit, RingError> {
    let find = |nodes: &[Node], id: &str| {
        nodes
            .binary_search_by(|n| n.id.as_str().cmp(id))
            .map_err(|_| RingError::UnknownNode(id.to_owned()))
    };
    match diff {
        Diff::AddNode(node) => {
            node.validate()?;
            let pos = match nodes.binary_search_by(|n| n.id.cmp(&node.id)) {
                Ok(_) => return Err(RingError::DuplicateNode(node.id.clone())),
                Err(pos) => pos,
            };
            if nodes.len() >= MAX_NODES {
                return Err(RingError::TooManyNodes);
            }
            nodes.insert(pos, node.clone());
            if let Err(e) = check_points(vnodes, nodes) {
                nodes.remove(pos);
                return Err(e);
            }
            Ok(Edit::Inserted(pos))
        }
        Diff::RemoveNode { id } => {
            let pos = find(nodes, id)?;
            nodes.remove(pos);
            Ok(Edit::Removed(pos))
        }
        Diff::SetWeight { id, weight } => {
            let pos = find(nodes, id)?;
            validate_weight(id, *weight)?;
            let old = nodes[pos].weight;
            nodes[pos].weight = *weight;
            if let Err(e) = check_points(vnodes, nodes) {
                nodes[pos].weight = old;
                return Err(e);
            }
            Ok(Edit::Changed {
                pos,
                redo: old != *weight,
            })
        }
        Diff::SetState { id, state } => {
            let pos = find(nodes, id)?;
            let redo = nodes[pos].state != *state;
            nodes[pos].state = *state;
            Ok(Edit::Changed { pos, redo })
        }
    }
}

fn check_vnodes(vnodes: u32) -> Result<(), RingError> {
    if (1..=MAX_VNODES_PER_WEIGHT).contains(&vnodes) {
        Ok(())
    } else {
        Err(RingError::InvalidVnodes(vnodes))
    }
}

/// Refuses rings past `MAX_POINTS`, counting draining nodes (they may come back).
fn check_points(vnodes: u32, nodes: &[Node]) -> Result<(), RingError> {
    let points: u64 = nodes
        .iter()
        .map(|n| u64::from(n.weight) * u64::from(vnodes))
        .sum();
    if points > MAX_POINTS {
        return Err(RingError::TooManyPoints { points });
    }
    Ok(())
}

/// All points of the active nodes, from scratch.
fn build_table(vnodes: u32, nodes: &[Node]) -> Table {
    let mut points = Vec::new();
    for (i, n) in nodes.iter().enumerate().filter(|(_, n)| n.is_active()) {
        // Bounded by check_points: weight × vnodes ≤ MAX_POINTS < u32::MAX.
        push_node_points(&n.id, n.weight * vnodes, i as u32, &mut points);
    }
    Table::from_unsorted(points)
}

#[cfg(test)]
impl Ring {
    /// The same ring rebuilt from scratch (tests compare it with incremental applies).
    pub(crate) fn rebuilt(&self) -> Ring {
        Ring::from_parts(self.version, self.vnodes_per_weight, self.nodes.clone())
            .expect("a valid ring rebuilds")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::NodeState;

    fn node(id: &str, w: u32) -> Node {
        Node::new(id, w, format!("ws://{id}:8080/ws"))
    }

    #[test]
    fn new_ring_is_empty_version_0() {
        let r = Ring::new(150);
        assert_eq!(r.version(), 0);
        assert!(r.owner("alice").is_none());
        assert_eq!(Ring::new(0).vnodes_per_weight(), 1);
        assert!(matches!(Ring::try_new(0), Err(RingError::InvalidVnodes(0))));
        assert!(Ring::try_new(MAX_VNODES_PER_WEIGHT + 1).is_err());
    }

    #[test]
    fn apply_bumps_version_and_keeps_old_snapshot() {
        let r0 = Ring::new(50);
        let r1 = r0.apply(&Diff::AddNode(node("a", 1))).unwrap();
        let r2 = r1.apply(&Diff::AddNode(node("b", 2))).unwrap();
        assert_eq!((r0.version(), r1.version(), r2.version()), (0, 1, 2));
        assert_eq!(r1.nodes().len(), 1);
        assert_eq!(r2.point_count(), 150);
        assert_eq!(r1.owner("x").unwrap().id, "a");
        assert_eq!(r2.node("b").unwrap().weight, 2);
        assert!(r2.node("c").is_none());
    }

    #[test]
    fn every_error_variant_of_apply() {
        let r = Ring::new(10)
            .apply_all(&[Diff::AddNode(node("a", 1)), Diff::AddNode(node("b", 1))])
            .unwrap();
        let cases = [
            (
                Diff::RemoveNode { id: "z".into() },
                RingError::UnknownNode("z".into()),
            ),
            (
                Diff::SetWeight {
                    id: "z".into(),
                    weight: 3,
                },
                RingError::UnknownNode("z".into()),
            ),
            (
                Diff::SetState {
                    id: "z".into(),
                    state: NodeState::Draining,
                },
                RingError::UnknownNode("z".into()),
            ),
            (
                Diff::AddNode(node("a", 1)),
                RingError::DuplicateNode("a".into()),
            ),
            (
                Diff::AddNode(node("c", 0)),
                RingError::ZeroWeight("c".into()),
            ),
            (
                Diff::SetWeight {
                    id: "a".into(),
                    weight: 0,
                },
                RingError::ZeroWeight("a".into()),
            ),
            (
                Diff::AddNode(node("c d", 1)),
                RingError::InvalidNodeId("c d".into()),
            ),
            (
                Diff::AddNode(Node::new("c", 1, "http://c")),
                RingError::InvalidUrl {
                    id: "c".into(),
                    url: "http://c".into(),
                },
            ),
        ];
        for (diff, want) in cases {
            assert_eq!(r.apply(&diff).unwrap_err(), want, "{diff:?}");
        }
        assert!(matches!(
            r.apply(&Diff::SetWeight {
                id: "a".into(),
                weight: crate::MAX_WEIGHT + 1
            }),
            Err(RingError::WeightTooLarge { .. })
        ));
        // Untouched after all those errors.
        assert_eq!(r.version(), 1);
        assert_eq!(r.nodes().len(), 2);
    }

    #[test]
    fn point_limit_is_enforced_without_allocating() {
        let r = Ring::new(MAX_VNODES_PER_WEIGHT);
        // 1000 × 10000 = 10 M points > MAX_POINTS: refused before any point is hashed.
        let err = r.apply(&Diff::AddNode(node("a", 1000))).unwrap_err();
        assert!(matches!(err, RingError::TooManyPoints { .. }), "{err}");
        let r = r.apply(&Diff::AddNode(node("a", 400))).unwrap();
        let err = r
            .apply(&Diff::SetWeight {
                id: "a".into(),
                weight: 500,
            })
            .unwrap_err();
        assert!(matches!(err, RingError::TooManyPoints { .. }));
        assert_eq!(r.node("a").unwrap().weight, 400);
    }

    #[test]
    fn apply_all_is_atomic_and_one_version() {
        let r = Ring::new(20).apply(&Diff::AddNode(node("a", 1))).unwrap();
        let ok = r
            .apply_all(&[
                Diff::AddNode(node("b", 1)),
                Diff::AddNode(node("c", 3)),
                Diff::SetState {
                    id: "a".into(),
                    state: NodeState::Draining,
                },
            ])
            .unwrap();
        assert_eq!(ok.version(), 2);
        assert_eq!(ok.point_count(), 80);
        let err = r
            .apply_all(&[
                Diff::AddNode(node("b", 1)),
                Diff::RemoveNode { id: "nope".into() },
            ])
            .unwrap_err();
        assert_eq!(
            err,
            RingError::InBatch {
                index: 1,
                source: Box::new(RingError::UnknownNode("nope".into()))
            }
        );
        assert_eq!(r.apply_all(&[]).unwrap_err(), RingError::EmptyBatch);
        // A diff inside a batch sees the earlier ones: add then remove the same node is fine.
        let r2 = r
            .apply_all(&[
                Diff::AddNode(node("b", 1)),
                Diff::RemoveNode { id: "b".into() },
            ])
            .unwrap();
        assert_eq!(r2.nodes().len(), 1);
    }

    #[test]
    fn draining_nodes_own_nothing_and_keys_go_to_next_active() {
        let r = Ring::new(100)
            .apply_all(&[
                Diff::AddNode(node("a", 1)),
                Diff::AddNode(node("b", 1)),
                Diff::AddNode(node("c", 1)),
            ])
            .unwrap();
        let d = r
            .apply(&Diff::SetState {
                id: "b".into(),
                state: NodeState::Draining,
            })
            .unwrap();
        assert_eq!(d.table(), d.rebuilt().table());
        let mut moved = 0;
        for i in 0..20_000 {
            let k = format!("k{i}");
            let before = r.owner(&k).unwrap();
            let after = d.owner(&k).unwrap();
            assert_ne!(after.id, "b");
            if before.id != "b" {
                assert_eq!(before.id, after.id, "only b's keys move");
            } else {
                moved += 1;
                // The next active successor: walk b's ring positions by hand.
                let h = hash_key(k.as_bytes());
                let mut next = r.table().points().find(|p| p.0 >= h && p.1 != 1);
                if next.is_none() {
                    next = r.table().points().find(|p| p.1 != 1);
                }
                let want = &r.nodes()[next.unwrap().1 as usize].id;
                assert_eq!(&after.id, want);
            }
        }
        assert!(moved > 3_000, "b owned about a third: {moved}");
        let back = d
            .apply(&Diff::SetState {
                id: "b".into(),
                state: NodeState::Active,
            })
            .unwrap();
        assert_eq!(
            back.table(),
            r.table(),
            "reactivating restores the same points"
        );
        // All draining: nobody owns anything.
        let none = d
            .apply_all(&[
                Diff::SetState {
                    id: "a".into(),
                    state: NodeState::Draining,
                },
                Diff::SetState {
                    id: "c".into(),
                    state: NodeState::Draining,
                },
            ])
            .unwrap();
        assert!(none.owner("x").is_none());
    }

    #[test]
    fn incremental_apply_matches_full_rebuild() {
        let mut r = Ring::new(30);
        let diffs = [
            Diff::AddNode(node("m", 2)),
            Diff::AddNode(node("a", 1)),
            Diff::AddNode(node("z", 3)),
            Diff::AddNode(node("f", 1)),
            Diff::SetWeight {
                id: "a".into(),
                weight: 4,
            },
            Diff::SetState {
                id: "m".into(),
                state: NodeState::Draining,
            },
            Diff::SetWeight {
                id: "m".into(),
                weight: 1,
            },
            Diff::RemoveNode { id: "f".into() },
            Diff::SetState {
                id: "m".into(),
                state: NodeState::Active,
            },
            Diff::RemoveNode { id: "a".into() },
            Diff::SetState {
                id: "z".into(),
                state: NodeState::Active,
            },
        ];
        for d in &diffs {
            r = r.apply(d).unwrap();
            assert_eq!(r.table(), r.rebuilt().table(), "after {d:?}");
        }
        assert_eq!(r.version(), diffs.len() as u64);
    }
}
