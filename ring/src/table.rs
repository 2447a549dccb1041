//! The lookup table: the ring's points, sorted, with a bucket index so a lookup is one
//! bucket read plus a search over ~1 point instead of a binary search over all of them.

use std::fmt;

/// Largest bucket index (`2^22` buckets, 16 MiB) — reached only near `MAX_POINTS`.
const MAX_INDEX_BITS: u32 = 22;

/// Points of the active nodes, sorted by `(hash, node index)`.
///
/// Node indices follow node ids (the ring keeps its nodes sorted by id), so equal hashes
/// are ordered by node id, and the first of them — the smallest id — owns the key that
/// hashes exactly there. Draining nodes have no points here: a key in one of their arcs
/// finds the next active point, which is "skip to the next active successor".
#[derive(Clone, PartialEq, Eq, Default)]
pub(crate) struct Table {
    /// Point positions, ascending. Kept apart from `owners` so the search touches 8 bytes
    /// per point instead of 16 (a `(u64, u32)` pads to 16).
    hashes: Vec<u64>,
    /// `owners[i]` is the node index of point `i`.
    owners: Vec<u32>,
    /// `index[b]` is the first point whose top bits are `>= b`; one extra entry at the end
    /// holds `hashes.len()`, so `index[b]..index[b + 1]` is bucket `b`.
    index: Vec<u32>,
    /// `64 - index bits`: a hash's bucket is `h >> shift`.
    shift: u32,
}

impl Table {
    /// Sorts `points` and builds the table.
    pub(crate) fn from_unsorted(mut points: Vec<(u64, u32)>) -> Table {
        points.sort_unstable();
        Table::from_sorted(&points)
    }

    /// Builds the table from points already sorted by `(hash, node index)`.
    pub(crate) fn from_sorted(points: &[(u64, u32)]) -> Table {
        debug_assert!(points.windows(2).all(|w| w[0] <= w[1]));
        let len = points.len();
        // About one point per bucket: the bucket read is the only likely cache miss.
        let bits = (len.max(2).next_power_of_two().trailing_zeros()).min(MAX_INDEX_BITS);
        let shift = 64 - bits;
        let buckets = 1usize << bits;
        let hashes: Vec<u64> = points.iter().map(|p| p.0).collect();
        let owners: Vec<u32> = points.iter().map(|p| p.1).collect();
        let mut index = Vec::with_capacity(buckets + 1);
        let mut pos = 0usize;
        for b in 0..buckets as u64 {
            while pos < len && (hashes[pos] >> shift) < b {
                pos += 1;
            }
            index.push(pos as u32);
        }
        index.push(len as u32);
        Table {
            hashes,
            owners,
            index,
            shift,
        }
    }

    /// A new table from this one: points of surviving nodes renumbered by `remap`
    /// (old index → new index, `None` drops the node's points), merged with `fresh` points
    /// (sorted, already carrying new indices). `remap` must keep the order of surviving
    /// indices (it does: both rings number nodes by id), so the result is sorted without a
    /// sort — an O(points) merge, which is what makes a one-node change cheap.
    pub(crate) fn merged(&self, remap: &[Option<u32>], fresh: &[(u64, u32)]) -> Table {
        let mut out = Vec::with_capacity(self.hashes.len() + fresh.len());
        let mut fresh = fresh.iter().copied().peekable();
        for (&h, &o) in self.hashes.iter().zip(&self.owners) {
            let Some(Some(n)) = remap.get(o as usize) else {
                continue;
            };
            let item = (h, *n);
            while let Some(f) = fresh.next_if(|f| *f < item) {
                out.push(f);
            }
            out.push(item);
        }
        out.extend(fresh);
        Table::from_sorted(&out)
    }

    /// Node index owning hash `h`: the first point at or after `h`, wrapping to the first
    /// point. `None` when there are no points.
    #[inline]
    pub(crate) fn successor(&self, h: u64) -> Option<u32> {
        let b = (h >> self.shift) as usize;
        // `index` has 2^bits + 1 entries and b < 2^bits, except for the empty default table.
        let (&lo, &hi) = (self.index.get(b)?, self.index.get(b + 1)?);
        let (lo, hi) = (lo as usize, hi as usize);
        let pos = lo + self.hashes[lo..hi].partition_point(|&p| p < h);
        let pos = if pos == self.hashes.len() { 0 } else { pos };
        self.owners.get(pos).copied()
    }

    /// Number of points.
    pub(crate) fn len(&self) -> usize {
        self.hashes.len()
    }

    /// The points, ascending.
    pub(crate) fn points(&self) -> impl ExactSizeIterator<Item = (u64, u32)> + '_ {
        self.hashes.iter().copied().zip(self.owners.iter().copied())
    }

    /// Heap bytes of the table (points plus bucket index).
    pub(crate) fn memory_bytes(&self) -> usize {
        self.hashes.capacity() * 8 + self.owners.capacity() * 4 + self.index.capacity() * 4
    }
}

impl fmt::Debug for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Thousands of points help nobody reading a log line.
        f.debug_struct("Table")
            .field("points", &self.hashes.len())
            .field("buckets", &self.index.len().saturating_sub(1))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference: first point >= h by linear scan, wrapping.
    fn naive(points: &[(u64, u32)], h: u64) -> Option<u32> {
        let mut sorted = points.to_vec();
        sorted.sort_unstable();
        sorted
            .iter()
            .find(|p| p.0 >= h)
            .or(sorted.first())
            .map(|p| p.1)
    }

    #[test]
    fn empty_table_owns_nothing() {
        assert_eq!(Table::default().successor(5), None);
        assert_eq!(Table::from_unsorted(Vec::new()).successor(u64::MAX), None);
    }

    #[test]
    fn successor_wraps_and_matches_naive() {
        let points = vec![(100, 0), (u64::MAX - 5, 1), (1 << 63, 2), (100, 3), (7, 4)];
        let t = Table::from_unsorted(points.clone());
        for h in [
            0,
            6,
            7,
            8,
            99,
            100,
            101,
            1 << 63,
            (1 << 63) + 1,
            u64::MAX - 5,
            u64::MAX,
        ] {
            assert_eq!(t.successor(h), naive(&points, h), "h={h}");
        }
        assert_eq!(t.successor(u64::MAX), Some(4), "wraps to the first point");
    }

    #[test]
    fn equal_hashes_are_ordered_by_node_index() {
        // Two nodes on the same position: the smaller index (smaller id) owns it, whatever
        // the order the points arrived in.
        let a = Table::from_unsorted(vec![(50, 9), (50, 2), (50, 5), (10, 1)]);
        let b = Table::from_unsorted(vec![(50, 5), (10, 1), (50, 2), (50, 9)]);
        assert_eq!(a, b);
        assert_eq!(a.successor(50), Some(2));
        assert_eq!(a.successor(11), Some(2));
        assert_eq!(a.successor(51), Some(1));
    }

    #[test]
    fn single_point_owns_everything() {
        let t = Table::from_unsorted(vec![(12345, 3)]);
        for h in [0, 12345, 12346, u64::MAX] {
            assert_eq!(t.successor(h), Some(3));
        }
    }

    #[test]
    fn merged_equals_rebuilt() {
        // Deterministic pseudo-random points without pulling in a RNG.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let old: Vec<(u64, u32)> = (0..3000).map(|i| (next(), i % 6)).collect();
        let t = Table::from_unsorted(old.clone());
        // Drop node 2, renumber 3..6 down by one, add node 5 (new numbering) fresh.
        let remap = [Some(0), Some(1), None, Some(2), Some(3), Some(4)];
        let mut fresh: Vec<(u64, u32)> = (0..500).map(|_| (next(), 5)).collect();
        fresh.sort_unstable();
        let merged = t.merged(&remap, &fresh);
        let mut expect: Vec<(u64, u32)> = old
            .iter()
            .filter_map(|&(h, o)| remap[o as usize].map(|n| (h, n)))
            .collect();
        expect.extend(&fresh);
        assert_eq!(merged, Table::from_unsorted(expect));
        for _ in 0..10_000 {
            let h = next();
            let _ = merged.successor(h);
        }
    }

    proptest::proptest! {
        /// Equal hash points are ordered by node index (= node id order) whatever order
        /// they arrive in, and the smallest index owns the key on that exact position.
        #[test]
        fn ties_ordered_by_node_index(
            mut points in proptest::collection::vec((0u64..8, 0u32..6), 1..40),
            seed in proptest::prelude::any::<u64>(),
            h in 0u64..10,
        ) {
            let sorted = Table::from_unsorted(points.clone());
            // A different arrival order (rotation by a seed-chosen amount).
            let len = points.len();
            points.rotate_left((seed % len as u64) as usize);
            proptest::prop_assert_eq!(&sorted, &Table::from_unsorted(points.clone()));
            let want = points.iter().filter(|p| p.0 >= h).min().or(points.iter().min()).map(|p| p.1);
            proptest::prop_assert_eq!(sorted.successor(h), want);
        }
    }
}
