//! `--verify`: per-sender sequence numbers checked at the receiver.
//!
//! Every message of a sender carries the next sequence number of that sender (0, 1, 2, …).
//! One [`StreamVerifier`] follows one sender → receiver stream: the sender marks a sequence
//! number *acked* when the server's `sent` frame for it arrives (the server's commit point), the
//! receiver marks it *delivered*. At the end:
//! - **lost** = acked but never delivered (the server promised it and did not keep the promise);
//! - **duplicated** = delivered more than once (after the client's own duplicate drop by offset,
//!   so a replay the client recognises is not counted here);
//! - **out of order** = delivered after a higher sequence number of the same sender.

use serde::{Deserialize, Serialize};

/// Highest sequence number tracked per stream (bounds the bitmaps to 512 KiB per stream);
/// messages past it are counted as `untracked`, not verified.
pub const MAX_TRACKED_SEQ: u64 = 1 << 22;
/// Most users listed by name in a summary; the totals still count everyone.
pub const MAX_REPORTED_USERS: usize = 100;
/// Lost sequence numbers listed per reported stream (to find them in the server's logs).
pub const MAX_LISTED_LOST: usize = 8;

/// A growable bitmap of sequence numbers, bounded by [`MAX_TRACKED_SEQ`].
#[derive(Debug, Default, Clone)]
struct SeqBits(Vec<u64>);

impl SeqBits {
    /// Whether `seq` is set.
    fn get(&self, seq: u64) -> bool {
        self.0
            .get((seq / 64) as usize)
            .is_some_and(|w| w & (1 << (seq % 64)) != 0)
    }

    /// Sets `seq`; returns whether it was already set.
    fn set(&mut self, seq: u64) -> bool {
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if word >= self.0.len() {
            self.0.resize(word + 1, 0);
        }
        let was = self.0[word] & (1 << bit) != 0;
        self.0[word] |= 1 << bit;
        was
    }
}

/// What happened to one sender → receiver stream.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    /// Acked by the server but never delivered.
    pub lost: u64,
    /// Delivered more than once.
    pub duplicated: u64,
    /// Delivered after a higher sequence number.
    pub out_of_order: u64,
    /// Past [`MAX_TRACKED_SEQ`]: not verified.
    pub untracked: u64,
    /// Delivered although the sender never got its `sent` (refused with `error` or unanswered,
    /// yet committed): not a fault of delivery, but the sender was told less than happened.
    #[serde(default)]
    pub delivered_unacked: u64,
}

impl Verdict {
    /// True when nothing was lost, duplicated or reordered.
    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.out_of_order == 0
    }
}

/// Follows one sender → receiver stream (see the module doc).
#[derive(Debug, Default, Clone)]
pub struct StreamVerifier {
    acked: SeqBits,
    delivered: SeqBits,
    highest_delivered: Option<u64>,
    duplicated: u64,
    out_of_order: u64,
    untracked: u64,
}

impl StreamVerifier {
    /// The server acknowledged (`sent`) the message with this sequence number. True when it
    /// is newly acked and not delivered yet: the run now waits for its delivery.
    pub fn on_acked(&mut self, seq: u64) -> bool {
        if seq >= MAX_TRACKED_SEQ {
            return false;
        }
        !self.acked.set(seq) && !self.delivered.get(seq)
    }

    /// The receiver got the message with this sequence number. True when this first delivery
    /// completes an acked message (one the run was waiting for).
    pub fn on_delivered(&mut self, seq: u64) -> bool {
        if seq >= MAX_TRACKED_SEQ {
            self.untracked += 1;
            return false;
        }
        if self.delivered.set(seq) {
            self.duplicated += 1;
            return false;
        }
        let awaited = self.acked.get(seq);
        match self.highest_delivered {
            Some(h) if seq < h => self.out_of_order += 1,
            _ => self.highest_delivered = Some(seq),
        }
        awaited
    }

    /// The first lost sequence numbers (at most [`MAX_LISTED_LOST`]).
    pub fn first_lost(&self) -> Vec<u64> {
        let mut out = Vec::new();
        for (i, a) in self.acked.0.iter().enumerate() {
            let d = self.delivered.0.get(i).copied().unwrap_or(0);
            let mut lost = a & !d;
            while lost != 0 && out.len() < MAX_LISTED_LOST {
                let bit = lost.trailing_zeros() as u64;
                out.push(i as u64 * 64 + bit);
                lost &= lost - 1;
            }
            if out.len() >= MAX_LISTED_LOST {
                break;
            }
        }
        out
    }

    /// The verdict so far (call after the run has drained).
    pub fn verdict(&self) -> Verdict {
        let lost = self
            .acked
            .0
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let d = self.delivered.0.get(i).copied().unwrap_or(0);
                (a & !d).count_ones() as u64
            })
            .sum();
        let delivered_unacked = self
            .delivered
            .0
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let a = self.acked.0.get(i).copied().unwrap_or(0);
                (d & !a).count_ones() as u64
            })
            .sum();
        Verdict {
            lost,
            duplicated: self.duplicated,
            out_of_order: self.out_of_order,
            untracked: self.untracked,
            delivered_unacked,
        }
    }
}

/// One user whose stream was not clean.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserProblem {
    /// The receiving user.
    pub user: String,
    /// What went wrong.
    #[serde(flatten)]
    pub verdict: Verdict,
    /// The first lost sequence numbers of the stream (≤ [`MAX_LISTED_LOST`]).
    #[serde(default)]
    pub lost_seqs: Vec<u64>,
}

/// Verification totals over many streams (a worker's, or the merged run's).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifySummary {
    /// Streams verified.
    pub streams: u64,
    /// Sum over streams.
    #[serde(flatten)]
    pub totals: Verdict,
    /// Streams that were not clean, by receiving user (at most [`MAX_REPORTED_USERS`]).
    pub problems: Vec<UserProblem>,
}

impl VerifySummary {
    /// Adds one stream's verdict.
    pub fn add_stream(&mut self, receiver: &str, v: Verdict) {
        self.add_stream_lost(receiver, v, Vec::new());
    }

    /// Adds one stream's verdict with its first lost sequence numbers.
    pub fn add_stream_lost(&mut self, receiver: &str, v: Verdict, lost_seqs: Vec<u64>) {
        self.streams += 1;
        self.totals.lost += v.lost;
        self.totals.duplicated += v.duplicated;
        self.totals.out_of_order += v.out_of_order;
        self.totals.untracked += v.untracked;
        self.totals.delivered_unacked += v.delivered_unacked;
        if !v.is_clean() && self.problems.len() < MAX_REPORTED_USERS {
            self.problems.push(UserProblem {
                user: receiver.to_owned(),
                verdict: v,
                lost_seqs,
            });
        }
    }

    /// Adds another summary (a worker's) into this one.
    pub fn merge(&mut self, o: &VerifySummary) {
        self.streams += o.streams;
        self.totals.lost += o.totals.lost;
        self.totals.duplicated += o.totals.duplicated;
        self.totals.out_of_order += o.totals.out_of_order;
        self.totals.untracked += o.totals.untracked;
        self.totals.delivered_unacked += o.totals.delivered_unacked;
        for p in &o.problems {
            if self.problems.len() >= MAX_REPORTED_USERS {
                break;
            }
            self.problems.push(p.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(acked: &[u64], delivered: &[u64]) -> Verdict {
        let mut v = StreamVerifier::default();
        for s in acked {
            v.on_acked(*s);
        }
        for s in delivered {
            v.on_delivered(*s);
        }
        v.verdict()
    }

    #[test]
    fn clean_stream_is_clean() {
        assert!(run(&[0, 1, 2, 3], &[0, 1, 2, 3]).is_clean());
    }

    #[test]
    fn dropped_message_is_lost() {
        let v = run(&[0, 1, 2, 3], &[0, 1, 3]);
        assert_eq!(
            v,
            Verdict {
                lost: 1,
                duplicated: 0,
                out_of_order: 0,
                untracked: 0,
                delivered_unacked: 0,
            }
        );
    }

    #[test]
    fn duplicate_is_counted_once_per_extra_copy() {
        let v = run(&[0, 1, 2], &[0, 1, 1, 2, 1]);
        assert_eq!(v.duplicated, 2);
        assert_eq!(v.lost, 0);
        assert_eq!(v.out_of_order, 0);
    }

    #[test]
    fn reordering_is_out_of_order() {
        let v = run(&[0, 1, 2, 3], &[0, 2, 1, 3]);
        assert_eq!(v.out_of_order, 1);
        assert_eq!(v.lost, 0);
        assert_eq!(v.duplicated, 0);
    }

    #[test]
    fn unacked_undelivered_is_not_lost() {
        // The server never promised seq 2 (no `sent`): not delivering it is not a loss.
        assert!(run(&[0, 1], &[0, 1]).is_clean());
        assert_eq!(run(&[0, 1], &[0]).lost, 1);
        // Delivered without a `sent` (refused, yet committed): clean, and counted.
        let v = run(&[0], &[0, 1]);
        assert!(v.is_clean());
        assert_eq!(v.delivered_unacked, 1);
    }

    #[test]
    fn acked_messages_are_awaited_until_delivered_in_either_order() {
        let mut v = StreamVerifier::default();
        assert!(v.on_acked(0), "acked first: awaited");
        assert!(!v.on_acked(0), "a repeated ack adds nothing");
        assert!(v.on_delivered(0), "its delivery ends the wait");
        assert!(!v.on_delivered(0), "a duplicate ends nothing");
        assert!(
            !v.on_delivered(1),
            "delivered before its ack: nothing awaited"
        );
        assert!(
            !v.on_acked(1),
            "acked after its delivery: nothing to wait for"
        );
        assert!(!v.on_delivered(2), "never acked (nacked but committed)");
    }

    #[test]
    fn sequence_numbers_past_the_bound_are_untracked() {
        let v = run(&[MAX_TRACKED_SEQ], &[MAX_TRACKED_SEQ]);
        assert_eq!(v.untracked, 1);
        assert!(v.is_clean());
    }

    #[test]
    fn summary_lists_only_unclean_streams() {
        let mut s = VerifySummary::default();
        s.add_stream("a", Verdict::default());
        s.add_stream(
            "b",
            Verdict {
                lost: 2,
                ..Verdict::default()
            },
        );
        assert_eq!(s.streams, 2);
        assert_eq!(s.totals.lost, 2);
        assert_eq!(s.problems.len(), 1);
        assert_eq!(s.problems[0].user, "b");
    }
}
