//! When to send `ack`, and what it says.

use super::Inbox;
use crate::frames::{OwnedClientFrame, MAX_ACK_IDS};

/// Send an ack after this many new messages.
pub const DEFAULT_ACK_EVERY: usize = 32;
/// Or once the oldest unacked message is this old, in ms.
pub const DEFAULT_ACK_DELAY_MS: u64 = 100;

/// Batches acknowledgements: a cumulative `upTo` (always the inbox's last contiguous
/// offset, so it never covers a hole) plus the ids of messages received beyond a hole.
#[derive(Debug, Clone)]
pub struct AckBatcher {
    /// Flush after this many new messages.
    every: usize,
    /// Flush once the oldest pending message is this old (ms).
    max_delay_ms: u64,
    /// The `upTo` last sent.
    acked_up_to: u64,
    /// New messages since the last flush.
    pending: usize,
    /// When the oldest pending message arrived (ms), if any.
    pending_since: Option<u64>,
    /// (offset, msgId) of messages received above a hole, at most [`MAX_ACK_IDS`].
    beyond_hole: Vec<(u64, u64)>,
}

impl Default for AckBatcher {
    fn default() -> Self {
        Self::new(DEFAULT_ACK_EVERY, DEFAULT_ACK_DELAY_MS)
    }
}

impl AckBatcher {
    /// A batcher flushing every `every` messages (at least 1) or after `max_delay_ms`.
    pub fn new(every: usize, max_delay_ms: u64) -> Self {
        AckBatcher {
            every: every.max(1),
            max_delay_ms,
            acked_up_to: 0,
            pending: 0,
            pending_since: None,
            beyond_hole: Vec::new(),
        }
    }

    /// Notes a message the inbox accepted as new (call after [`Inbox::receive`]).
    pub fn on_new(&mut self, inbox: &Inbox, offset: u64, msg_id: u64, now_ms: u64) {
        self.pending += 1;
        self.pending_since.get_or_insert(now_ms);
        if offset > inbox.last_contiguous() && self.beyond_hole.len() < MAX_ACK_IDS {
            self.beyond_hole.push((offset, msg_id));
        }
    }

    /// The ack to send now, if the batch is full or old enough.
    pub fn poll(&mut self, inbox: &Inbox, now_ms: u64) -> Option<OwnedClientFrame> {
        let due = self.pending >= self.every
            || self.beyond_hole.len() >= MAX_ACK_IDS
            || self
                .pending_since
                .is_some_and(|t| now_ms.saturating_sub(t) >= self.max_delay_ms);
        if due {
            self.flush(inbox)
        } else {
            None
        }
    }

    /// The ack to send now regardless of batching (e.g. before a clean close), if any.
    pub fn flush(&mut self, inbox: &Inbox) -> Option<OwnedClientFrame> {
        self.pending = 0;
        self.pending_since = None;
        let last = inbox.last_contiguous();
        let up_to = (last > self.acked_up_to).then_some(last);
        // Ids now covered by the cumulative ack need not travel.
        let msg_ids: Vec<u64> = self
            .beyond_hole
            .drain(..)
            .filter(|&(o, _)| o > last)
            .map(|(_, id)| id)
            .collect();
        if let Some(u) = up_to {
            self.acked_up_to = u;
        }
        if up_to.is_none() && msg_ids.is_empty() {
            return None;
        }
        Some(OwnedClientFrame::Ack { up_to, msg_ids })
    }

    /// The cumulative offset acked so far.
    pub fn acked_up_to(&self) -> u64 {
        self.acked_up_to
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Receipt;

    #[test]
    fn batches_by_count_and_by_time() {
        let mut ib = Inbox::new(0);
        let mut ab = AckBatcher::new(3, 50);
        for o in 1..=2 {
            assert_eq!(ib.receive(o, o), Receipt::New);
            ab.on_new(&ib, o, o, 0);
            assert_eq!(ab.poll(&ib, 0), None);
        }
        assert_eq!(
            ab.poll(&ib, 50),
            Some(OwnedClientFrame::Ack {
                up_to: Some(2),
                msg_ids: vec![]
            })
        );
        for o in 3..=5 {
            ib.receive(o, o);
            ab.on_new(&ib, o, o, 60);
        }
        assert_eq!(
            ab.poll(&ib, 60),
            Some(OwnedClientFrame::Ack {
                up_to: Some(5),
                msg_ids: vec![]
            })
        );
        assert_eq!(ab.flush(&ib), None);
    }

    #[test]
    fn cumulative_ack_never_covers_a_hole() {
        let mut ib = Inbox::new(0);
        let mut ab = AckBatcher::new(100, 1000);
        for (o, id) in [(1, 11), (2, 12), (5, 15), (6, 16)] {
            ib.receive(o, id);
            ab.on_new(&ib, o, id, 0);
        }
        assert_eq!(
            ab.flush(&ib),
            Some(OwnedClientFrame::Ack {
                up_to: Some(2),
                msg_ids: vec![15, 16]
            })
        );
        for (o, id) in [(3, 13), (4, 14)] {
            ib.receive(o, id);
            ab.on_new(&ib, o, id, 0);
        }
        assert_eq!(
            ab.flush(&ib),
            Some(OwnedClientFrame::Ack {
                up_to: Some(6),
                msg_ids: vec![]
            })
        );
    }
}
