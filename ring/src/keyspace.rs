//! Exact key-space accounting: how much of the 2^64 hash space each node owns, and how much
//! changed hands between two versions. Computed from arc lengths, not by sampling keys, so
//! the figures are exact (up to the final conversion to `f64`).

use std::collections::BTreeMap;

use crate::ring::Ring;

/// Size of the hash space, as the unit of an exact arc length.
const SPACE: u128 = 1 << 64;

/// How much key space one node gained and lost between two ring versions (fractions of the
/// whole space: 0.1 = a tenth of all keys).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeChange {
    /// The node.
    pub id: String,
    /// Fraction of the space it owns in the new version and did not own in the old.
    pub gained: f64,
    /// Fraction of the space it owned in the old version and does not own in the new.
    pub lost: f64,
}

impl Ring {
    /// Exact arc lengths owned by each node index (indices as in `nodes()`).
    pub(crate) fn arc_lengths(&self) -> Vec<u128> {
        let mut arcs = vec![0u128; self.nodes().len()];
        let table = self.table();
        let Some((last, _)) = table.points().last() else {
            return arcs;
        };
        let mut prev = last;
        for (i, (h, owner)) in table.points().enumerate() {
            // Point i owns (previous point, h]; the first point's arc wraps through 2^64 - 1.
            let len = if i == 0 {
                SPACE - u128::from(last) + u128::from(h)
            } else {
                u128::from(h - prev)
            };
            arcs[owner as usize] += len;
            prev = h;
        }
        arcs
    }

    /// Each node's exact share of the hash space (arc lengths / 2^64), in `nodes()` order.
    /// Draining nodes have 0; the shares of a non-empty ring sum to 1.
    pub fn shares(&self) -> Vec<(String, f64)> {
        self.nodes()
            .iter()
            .zip(self.arc_lengths())
            .map(|(n, arc)| (n.id.clone(), arc as f64 / SPACE as f64))
            .collect()
    }
}

/// Which nodes gained and lost key space from `old` to `new`, sorted by id; nodes with no
/// change are left out. Exact: walks every interval between the points of both rings.
pub fn moved_between(old: &Ring, new: &Ring) -> Vec<NodeChange> {
    let mut changes: BTreeMap<&str, (u128, u128)> = BTreeMap::new();
    for_each_interval(old, new, |len, before, after| {
        if before != after {
            if let Some(b) = before {
                changes.entry(b).or_default().1 += len;
            }
            if let Some(a) = after {
                changes.entry(a).or_default().0 += len;
            }
        }
    });
    changes
        .into_iter()
        .map(|(id, (gained, lost))| NodeChange {
            id: id.to_owned(),
            gained: gained as f64 / SPACE as f64,
            lost: lost as f64 / SPACE as f64,
        })
        .collect()
}

/// Fraction of the key space whose owner differs between `old` and `new` (keys that would
/// have to move). Exact, like `moved_between`.
pub fn moved_fraction(old: &Ring, new: &Ring) -> f64 {
    let mut moved = 0u128;
    for_each_interval(old, new, |len, before, after| {
        if before != after {
            moved += len;
        }
    });
    moved as f64 / SPACE as f64
}

/// Calls `f(length, owner in old, owner in new)` for every interval of the hash space
/// between consecutive points of either ring. Inside such an interval neither ring has a
/// point, so each ring's owner is constant: that of the interval's upper end.
fn for_each_interval<'a>(
    old: &'a Ring,
    new: &'a Ring,
    mut f: impl FnMut(u128, Option<&'a str>, Option<&'a str>),
) {
    let mut bounds: Vec<u64> = old
        .table()
        .points()
        .chain(new.table().points())
        .map(|p| p.0)
        .collect();
    bounds.sort_unstable();
    bounds.dedup();
    let Some(&last) = bounds.last() else {
        return;
    };
    let mut prev = last;
    for (i, &b) in bounds.iter().enumerate() {
        let len = if i == 0 {
            SPACE - u128::from(last) + u128::from(b)
        } else {
            u128::from(b - prev)
        };
        prev = b;
        let before = old.owner_hash(b).map(|n| n.id.as_str());
        let after = new.owner_hash(b).map(|n| n.id.as_str());
        f(len, before, after);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::Diff;
    use crate::node::{Node, NodeState};

    fn ring(ids: &[(&str, u32)], vnodes: u32) -> Ring {
        let diffs: Vec<Diff> = ids
            .iter()
            .map(|(id, w)| Diff::AddNode(Node::new(*id, *w, format!("ws://{id}"))))
            .collect();
        Ring::new(vnodes).apply_all(&diffs).unwrap()
    }

    #[test]
    fn shares_sum_to_one_and_drained_is_zero() {
        assert!(Ring::new(10).shares().is_empty());
        let one = ring(&[("solo", 1)], 1);
        assert_eq!(one.shares(), vec![("solo".to_owned(), 1.0)]);
        let r = ring(&[("a", 1), ("b", 2), ("c", 1)], 100);
        let total: u128 = r.arc_lengths().iter().sum();
        assert_eq!(total, SPACE, "exact arcs cover the space exactly");
        let d = r
            .apply(&Diff::SetState {
                id: "b".into(),
                state: NodeState::Draining,
            })
            .unwrap();
        let s = d.shares();
        assert_eq!(s[1], ("b".to_owned(), 0.0));
        assert!((s[0].1 + s[2].1 - 1.0).abs() < 1e-12);
    }

    #[test]
    fn shares_agree_with_sampled_keys() {
        let r = ring(&[("a", 1), ("b", 3), ("c", 2)], 150);
        let mut counts = [0u32; 3];
        let n = 300_000;
        for i in 0..n {
            let owner = r.owner(&format!("user-{i}")).unwrap();
            counts[r.nodes().iter().position(|x| x.id == owner.id).unwrap()] += 1;
        }
        for ((_, share), c) in r.shares().iter().zip(counts) {
            let sampled = f64::from(c) / f64::from(n);
            assert!((share - sampled).abs() < 0.01, "{share} vs {sampled}");
        }
    }

    #[test]
    fn moved_between_add_and_remove() {
        let r = ring(&[("a", 1), ("b", 1), ("c", 1)], 150);
        assert!(moved_between(&r, &r).is_empty());
        assert_eq!(moved_fraction(&r, &r), 0.0);
        let added = r
            .apply(&Diff::AddNode(Node::new("d", 1, "ws://d")))
            .unwrap();
        let ch = moved_between(&r, &added);
        let d = ch.iter().find(|c| c.id == "d").unwrap();
        assert_eq!(d.lost, 0.0);
        let d_share = added.shares().iter().find(|s| s.0 == "d").unwrap().1;
        assert!(
            (d.gained - d_share).abs() < 1e-12,
            "d gains exactly its share"
        );
        let lost: f64 = ch.iter().map(|c| c.lost).sum();
        assert!((lost - d.gained).abs() < 1e-12);
        assert!((moved_fraction(&r, &added) - d.gained).abs() < 1e-12);
        // And back: removing d moves exactly what it had.
        let back = moved_between(&added, &r);
        let d2 = back.iter().find(|c| c.id == "d").unwrap();
        assert!((d2.lost - d_share).abs() < 1e-12);
        assert_eq!(d2.gained, 0.0);
        // From an empty ring everything is gained, nothing lost.
        let from_empty = moved_between(&Ring::new(150), &r);
        let gained: f64 = from_empty.iter().map(|c| c.gained).sum();
        assert!((gained - 1.0).abs() < 1e-12);
    }
}
