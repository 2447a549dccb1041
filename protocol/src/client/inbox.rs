//! What a client has received: the last contiguous offset, the holes above it, and a
//! bounded memory of recent message ids for duplicate detection.

use std::collections::{HashSet, VecDeque};

/// Most separate missing-offset ranges tracked; past it the two closest ranges are merged
/// (conservative: offsets between them count as missing again, and are then recognised as
/// duplicates by message id, or delivered twice — at-least-once, never lost).
pub const MAX_MISSING_RANGES: usize = 64;
/// How many recent message ids are remembered for duplicate detection.
pub const RECENT_MSG_IDS: usize = 4096;

/// What [`Inbox::receive`] decided about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    /// First time seen: hand it to the application.
    New,
    /// Seen before (by offset or by message id): drop it.
    Duplicate,
}

/// Received-offset tracking for one user's stream (offsets start at 1; 0 means "none").
#[derive(Debug, Clone)]
pub struct Inbox {
    /// Every offset ≤ this was received (or the client started here).
    last_contiguous: u64,
    /// Highest offset received or announced by a `gap`.
    highest: u64,
    /// Missing offsets above `last_contiguous`, as sorted, disjoint, inclusive ranges.
    missing: Vec<(u64, u64)>,
    /// Recent message ids, oldest first, bounded by `recent_cap`.
    recent: VecDeque<u64>,
    /// The same ids, for O(1) lookup.
    recent_set: HashSet<u64>,
    /// Bound on `recent`.
    recent_cap: usize,
    /// Bound on `missing`.
    max_ranges: usize,
    /// Messages dropped as duplicates.
    duplicates: u64,
    /// Times two missing ranges were merged because of the bound.
    merges: u64,
}

impl Default for Inbox {
    fn default() -> Self {
        Self::new(0)
    }
}

impl Inbox {
    /// An inbox that has everything up to `last_offset` (0 for a new user; the `offset` of a
    /// `welcome`, or a stored value when resuming).
    pub fn new(last_offset: u64) -> Self {
        Self::with_limits(last_offset, MAX_MISSING_RANGES, RECENT_MSG_IDS)
    }

    /// Like [`Inbox::new`] with explicit bounds (each at least 1).
    pub fn with_limits(last_offset: u64, max_ranges: usize, recent_ids: usize) -> Self {
        let recent_cap = recent_ids.max(1);
        Inbox {
            last_contiguous: last_offset,
            highest: last_offset,
            missing: Vec::new(),
            recent: VecDeque::with_capacity(recent_cap.min(1024)),
            recent_set: HashSet::with_capacity(recent_cap.min(1024)),
            recent_cap,
            max_ranges: max_ranges.max(1),
            duplicates: 0,
            merges: 0,
        }
    }

    /// Records a delivered message. Offset 0 means "no offset": only the message id is checked.
    pub fn receive(&mut self, offset: u64, msg_id: u64) -> Receipt {
        // Take the offset even for a known id, so a hole widened by a merge still closes.
        let fresh_offset = offset == 0 || self.take_offset(offset);
        if !fresh_offset || self.recent_set.contains(&msg_id) {
            self.duplicates += 1;
            return Receipt::Duplicate;
        }
        self.remember(msg_id);
        Receipt::New
    }

    /// Records a `gap {from, to}`: the server dropped those offsets; they (and anything
    /// between the highest offset seen and `from`) are missing until resumed.
    pub fn gap(&mut self, from: u64, to: u64) {
        // Delivery is in offset order, so offsets between `highest` and `from` were not
        // delivered either: everything above `highest` up to `to` is missing.
        let _ = from;
        if to > self.highest {
            self.add_missing(self.highest + 1, to);
            self.highest = to;
            self.settle();
        }
    }

    /// Every offset ≤ this was received: the `lastOffset` to resume from and the largest
    /// safe cumulative ack.
    pub fn last_contiguous(&self) -> u64 {
        self.last_contiguous
    }

    /// The highest offset received or announced.
    pub fn highest(&self) -> u64 {
        self.highest
    }

    /// Missing offsets, as sorted inclusive ranges.
    pub fn missing(&self) -> &[(u64, u64)] {
        &self.missing
    }

    /// True when some offsets are missing (a resume would fetch them).
    pub fn has_holes(&self) -> bool {
        !self.missing.is_empty()
    }

    /// Messages dropped as duplicates so far.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Times two missing ranges were merged because of [`MAX_MISSING_RANGES`].
    pub fn merges(&self) -> u64 {
        self.merges
    }

    /// Marks `offset` received; false if it already was.
    fn take_offset(&mut self, offset: u64) -> bool {
        if offset <= self.last_contiguous {
            return false;
        }
        if offset > self.highest {
            if offset > self.highest + 1 {
                self.add_missing(self.highest + 1, offset - 1);
            }
            self.highest = offset;
            self.settle();
            return true;
        }
        // Inside the known range: new only if it fills (part of) a hole.
        let Some(i) = self
            .missing
            .iter()
            .position(|&(a, b)| a <= offset && offset <= b)
        else {
            return false;
        };
        let (a, b) = self.missing[i];
        match (offset == a, offset == b) {
            (true, true) => {
                self.missing.remove(i);
            }
            (true, false) => self.missing[i].0 = a + 1,
            (false, true) => self.missing[i].1 = b - 1,
            (false, false) => {
                self.missing[i].1 = offset - 1;
                self.missing.insert(i + 1, (offset + 1, b));
                self.enforce_bound();
            }
        }
        self.settle();
        true
    }

    /// Appends a missing range above every existing one.
    fn add_missing(&mut self, a: u64, b: u64) {
        match self.missing.last_mut() {
            Some(last) if last.1 + 1 >= a => last.1 = last.1.max(b),
            _ => self.missing.push((a, b)),
        }
        self.enforce_bound();
    }

    fn enforce_bound(&mut self) {
        while self.missing.len() > self.max_ranges {
            // Merge the adjacent pair with the fewest received offsets between them.
            let i = (0..self.missing.len() - 1)
                .min_by_key(|&i| self.missing[i + 1].0 - self.missing[i].1)
                .unwrap_or(0);
            let next = self.missing.remove(i + 1);
            self.missing[i].1 = next.1;
            self.merges += 1;
        }
    }

    /// Recomputes `last_contiguous` from the holes.
    fn settle(&mut self) {
        self.last_contiguous = match self.missing.first() {
            Some(&(a, _)) => a - 1,
            None => self.highest,
        };
    }

    fn remember(&mut self, msg_id: u64) {
        if self.recent.len() == self.recent_cap {
            if let Some(old) = self.recent.pop_front() {
                self.recent_set.remove(&old);
            }
        }
        self.recent.push_back(msg_id);
        self.recent_set.insert(msg_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_and_duplicates() {
        let mut ib = Inbox::new(0);
        assert_eq!(ib.receive(1, 100), Receipt::New);
        assert_eq!(ib.receive(2, 101), Receipt::New);
        assert_eq!(ib.receive(2, 101), Receipt::Duplicate);
        assert_eq!(ib.receive(1, 555), Receipt::Duplicate, "old offset, new id");
        assert_eq!(ib.receive(3, 100), Receipt::Duplicate, "replayed id");
        assert_eq!(
            ib.last_contiguous(),
            3,
            "the offset is taken even for a known id"
        );
        assert_eq!(ib.duplicates(), 3);
    }

    #[test]
    fn holes_fill_out_of_order() {
        let mut ib = Inbox::new(10);
        assert_eq!(ib.receive(13, 1), Receipt::New);
        assert_eq!(ib.missing(), &[(11, 12)]);
        assert_eq!(ib.last_contiguous(), 10);
        assert_eq!(ib.receive(12, 2), Receipt::New);
        assert_eq!(ib.receive(12, 3), Receipt::Duplicate);
        assert_eq!(ib.last_contiguous(), 10);
        assert_eq!(ib.receive(11, 4), Receipt::New);
        assert_eq!(ib.last_contiguous(), 13);
        assert!(!ib.has_holes());
    }

    #[test]
    fn gap_marks_missing_until_replayed() {
        let mut ib = Inbox::new(0);
        ib.receive(1, 1);
        ib.gap(2, 4);
        assert_eq!(ib.missing(), &[(2, 4)]);
        assert_eq!(ib.receive(5, 5), Receipt::New);
        assert_eq!(ib.last_contiguous(), 1);
        for o in 2..=4 {
            assert_eq!(ib.receive(o, o), Receipt::New);
        }
        assert_eq!(ib.last_contiguous(), 5);
        ib.gap(1, 3); // stale gap: nothing changes
        assert_eq!(ib.last_contiguous(), 5);
    }

    #[test]
    fn splitting_holes_stays_bounded_and_never_advances_past_a_hole() {
        let mut ib = Inbox::with_limits(0, 4, 16);
        ib.gap(1, 100);
        for o in (2..100).step_by(2) {
            assert_eq!(ib.receive(o, 1000 + o), Receipt::New);
            assert!(ib.missing().len() <= 4);
            assert_eq!(ib.last_contiguous(), 0);
        }
        assert!(ib.merges() > 0);
        // Everything eventually arrives (a resume replays all of it): all holes close.
        for o in 1..=100 {
            ib.receive(o, 1000 + o);
        }
        assert_eq!(ib.last_contiguous(), 100);
        assert!(!ib.has_holes());
    }
}
