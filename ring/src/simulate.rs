//! `simulate`: what a ring of N equal nodes does with K synthetic keys, and what a change
//! (add / remove nodes) moves. `control ring simulate` prints its `Display` form. Pure and
//! deterministic: keys are `user-0 … user-{K-1}`, nodes `node-0 …`.

use std::fmt::{self, Write as _};

use crate::diff::Diff;
use crate::error::RingError;
use crate::hash::hash_key;
use crate::keyspace::moved_fraction;
use crate::limits::{MAX_NODES, MAX_SIMULATE_KEYS};
use crate::node::Node;
use crate::ring::Ring;

/// One node's load in a simulation.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeLoad {
    /// The node.
    pub id: String,
    /// Synthetic keys it owns.
    pub keys: u64,
    /// `keys / total keys`.
    pub key_share: f64,
    /// Exact share of the hash space (arc lengths).
    pub space_share: f64,
}

/// Result of [`simulate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Simulation {
    /// Nodes before the change.
    pub nodes: u32,
    /// Points per unit of weight (every node has weight 1).
    pub vnodes_per_weight: u32,
    /// Synthetic keys hashed.
    pub keys: u64,
    /// Nodes added by the change (`node-N …`).
    pub added: u32,
    /// Nodes removed by the change (`node-0 …`).
    pub removed: u32,
    /// Per-node load before the change.
    pub before: Vec<NodeLoad>,
    /// Per-node load after the change (same as `before` when nothing changes).
    pub after: Vec<NodeLoad>,
    /// Most loaded node's keys over the mean, before.
    pub before_max_over_mean: f64,
    /// Most loaded node's keys over the mean, after.
    pub after_max_over_mean: f64,
    /// Keys whose owner changed.
    pub moved_keys: u64,
    /// `moved_keys / keys`.
    pub moved_key_fraction: f64,
    /// Exact fraction of the hash space whose owner changed.
    pub moved_space_fraction: f64,
    /// The least any ring could move for this change with equal weights: the removed
    /// nodes' keys plus what survivors must hand to new nodes.
    pub ideal_moved_fraction: f64,
}

/// Simulates `nodes` equal nodes (weight 1) at `vnodes_per_weight`, hashes `keys` synthetic
/// keys, then adds `add` nodes and removes `remove` of the original ones in one change.
/// Errors (never panics) on out-of-range arguments: no nodes, no keys, more than
/// `MAX_SIMULATE_KEYS` keys, more than `MAX_NODES` nodes, removing every node.
pub fn simulate(
    nodes: u32,
    vnodes_per_weight: u32,
    keys: u64,
    add: u32,
    remove: u32,
) -> Result<Simulation, RingError> {
    if nodes == 0 {
        return Err(RingError::InvalidSimulation("need at least one node"));
    }
    if keys == 0 || keys > MAX_SIMULATE_KEYS {
        return Err(RingError::InvalidSimulation(
            "keys must be in 1..=MAX_SIMULATE_KEYS (100 M)",
        ));
    }
    if u64::from(nodes) + u64::from(add) > MAX_NODES as u64 {
        return Err(RingError::InvalidSimulation("more than MAX_NODES nodes"));
    }
    if remove >= nodes {
        return Err(RingError::InvalidSimulation(
            "must keep at least one original node",
        ));
    }
    let base = Ring::try_new(vnodes_per_weight)?;
    let sim_node = |i: u32| Node::new(format!("node-{i}"), 1, format!("ws://node-{i}.sim/ws"));
    let adds: Vec<Diff> = (0..nodes).map(|i| Diff::AddNode(sim_node(i))).collect();
    let before = base.apply_all(&adds)?;
    let mut change: Vec<Diff> = (nodes..nodes + add)
        .map(|i| Diff::AddNode(sim_node(i)))
        .collect();
    change.extend((0..remove).map(|i| Diff::RemoveNode {
        id: format!("node-{i}"),
    }));
    let after = if change.is_empty() {
        before.clone()
    } else {
        before.apply_all(&change)?
    };

    // Index of each `after` node in `before`, to compare owners without string compares.
    let same: Vec<Option<usize>> = after
        .nodes()
        .iter()
        .map(|n| before.nodes().iter().position(|b| b.id == n.id))
        .collect();
    let mut count_before = vec![0u64; before.nodes().len()];
    let mut count_after = vec![0u64; after.nodes().len()];
    let mut moved_keys = 0u64;
    let mut key = String::with_capacity(32);
    for k in 0..keys {
        key.clear();
        // Writing into a String cannot fail.
        let _ = write!(key, "user-{k}");
        let h = hash_key(key.as_bytes());
        let (Some(b), Some(a)) = (before.table().successor(h), after.table().successor(h)) else {
            continue; // unreachable: both rings keep at least one active node
        };
        count_before[b as usize] += 1;
        count_after[a as usize] += 1;
        if same[a as usize] != Some(b as usize) {
            moved_keys += 1;
        }
    }

    let survivors = f64::from(nodes - remove);
    let total_after = survivors + f64::from(add);
    let n = f64::from(nodes);
    let ideal = f64::from(remove) / n + survivors * (1.0 / n - 1.0 / total_after).max(0.0);
    let loads = |ring: &Ring, counts: &[u64]| -> Vec<NodeLoad> {
        ring.nodes()
            .iter()
            .zip(ring.shares())
            .zip(counts)
            .map(|((node, (_, space)), &c)| NodeLoad {
                id: node.id.clone(),
                keys: c,
                key_share: c as f64 / keys as f64,
                space_share: space,
            })
            .collect()
    };
    let before_loads = loads(&before, &count_before);
    let after_loads = loads(&after, &count_after);
    Ok(Simulation {
        nodes,
        vnodes_per_weight,
        keys,
        added: add,
        removed: remove,
        before_max_over_mean: max_over_mean(&before_loads, keys),
        after_max_over_mean: max_over_mean(&after_loads, keys),
        before: before_loads,
        after: after_loads,
        moved_keys,
        moved_key_fraction: moved_keys as f64 / keys as f64,
        moved_space_fraction: moved_fraction(&before, &after),
        ideal_moved_fraction: ideal,
    })
}

fn max_over_mean(loads: &[NodeLoad], keys: u64) -> f64 {
    let max = loads.iter().map(|l| l.keys).max().unwrap_or(0);
    let mean = keys as f64 / loads.len().max(1) as f64;
    max as f64 / mean
}

impl fmt::Display for Simulation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "ring simulation: {} equal nodes x {} vnodes, {} keys; change: +{} / -{} nodes",
            self.nodes, self.vnodes_per_weight, self.keys, self.added, self.removed
        )?;
        writeln!(
            f,
            "{:<12} {:>12} {:>9} {:>9}   {:>12} {:>9} {:>9}",
            "node", "keys", "key%", "space%", "keys after", "key%", "space%"
        )?;
        let mut ids: Vec<&str> = self
            .before
            .iter()
            .chain(&self.after)
            .map(|l| l.id.as_str())
            .collect();
        ids.sort_unstable_by_key(|id| (id.len(), *id)); // node-2 before node-10
        ids.dedup();
        let cell = |loads: &[NodeLoad], id: &str| match loads.iter().find(|l| l.id == id) {
            Some(l) => format!(
                "{:>12} {:>8.3}% {:>8.3}%",
                l.keys,
                l.key_share * 100.0,
                l.space_share * 100.0
            ),
            None => format!("{:>12} {:>9} {:>9}", "-", "-", "-"),
        };
        for id in ids {
            writeln!(
                f,
                "{:<12} {}   {}",
                id,
                cell(&self.before, id),
                cell(&self.after, id)
            )?;
        }
        writeln!(
            f,
            "max/mean keys: before {:.4}, after {:.4}",
            self.before_max_over_mean, self.after_max_over_mean
        )?;
        write!(
            f,
            "moved: {} keys ({:.3}%), exact key space {:.3}%, ideal {:.3}%",
            self.moved_keys,
            self.moved_key_fraction * 100.0,
            self.moved_space_fraction * 100.0,
            self.ideal_moved_fraction * 100.0
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_one_node_to_ten() {
        let s = simulate(10, 150, 200_000, 1, 0).unwrap();
        assert_eq!(s.before.len(), 10);
        assert_eq!(s.after.len(), 11);
        assert_eq!(s.before.iter().map(|l| l.keys).sum::<u64>(), 200_000);
        assert_eq!(s.after.iter().map(|l| l.keys).sum::<u64>(), 200_000);
        assert!((s.ideal_moved_fraction - 1.0 / 11.0).abs() < 1e-12);
        // Only the new node gains keys, so what moved is exactly what node-10 owns.
        let new = s.after.iter().find(|l| l.id == "node-10").unwrap();
        assert_eq!(s.moved_keys, new.keys);
        assert!((s.moved_key_fraction - s.moved_space_fraction).abs() < 0.01);
        assert!(s.before_max_over_mean > 1.0 && s.before_max_over_mean < 1.4);
        let text = s.to_string();
        assert!(
            text.contains("node-10") && text.contains("max/mean"),
            "{text}"
        );
    }

    #[test]
    fn remove_and_no_change() {
        let s = simulate(5, 100, 50_000, 0, 1).unwrap();
        let gone = s.before.iter().find(|l| l.id == "node-0").unwrap();
        assert_eq!(s.moved_keys, gone.keys, "only node-0's keys move");
        assert!((s.ideal_moved_fraction - 0.2).abs() < 1e-12);
        let same = simulate(3, 10, 1_000, 0, 0).unwrap();
        assert_eq!(same.moved_keys, 0);
        assert_eq!(same.before, same.after);
    }

    #[test]
    fn bad_arguments_are_errors() {
        for (n, v, k, a, r) in [
            (0, 150, 10, 0, 0),
            (3, 0, 10, 0, 0),
            (3, 150, 0, 0, 0),
            (3, 150, MAX_SIMULATE_KEYS + 1, 0, 0),
            (3, 150, 10, 0, 3),
            (3, 150, 10, MAX_NODES as u32, 0),
            (3, 150, 10, u32::MAX, 0),
        ] {
            assert!(simulate(n, v, k, a, r).is_err(), "{n} {v} {k} {a} {r}");
        }
    }
}
