//! Open-loop send schedule: message `k` of a sender is due at `start + offset + k·period`,
//! whatever happened to message `k-1`. Latency is measured from the due time, so a stalled
//! server or client shows up in the latency instead of silently lowering the send rate
//! (coordinated omission).

use std::time::{Duration, Instant};

/// One sender's schedule.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    start: Instant,
    end: Instant,
    period: Duration,
    offset: Duration,
    /// Next message index.
    pub next: u64,
}

impl Schedule {
    /// `rate` messages/s for this sender, between `start` and `end`; `slot` in `[0,1)` spreads
    /// senders evenly over one period so they do not all fire at once.
    pub fn new(start: Instant, end: Instant, rate: f64, slot: f64) -> Option<Schedule> {
        if !(rate.is_finite() && rate > 0.0) {
            return None;
        }
        let period = Duration::from_secs_f64(1.0 / rate);
        Some(Schedule {
            start,
            end,
            period,
            offset: period.mul_f64(slot.clamp(0.0, 1.0)),
            next: 0,
        })
    }

    /// When message `k` is due.
    pub fn due(&self, k: u64) -> Instant {
        self.start + self.offset + self.period.mul_f64(k as f64)
    }

    /// When the next message is due, or `None` past the end.
    pub fn next_due(&self) -> Option<Instant> {
        let t = self.due(self.next);
        (t < self.end).then_some(t)
    }

    /// Indices (with due times) of every message due by `now`, advancing the schedule.
    pub fn take_due(&mut self, now: Instant) -> impl Iterator<Item = (u64, Instant)> + '_ {
        std::iter::from_fn(move || {
            let t = self.next_due()?;
            if t > now {
                return None;
            }
            let k = self.next;
            self.next += 1;
            Some((k, t))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_wake_up_sends_every_missed_message_with_its_own_due_time() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, t0 + Duration::from_secs(1), 10.0, 0.0).expect("rate > 0");
        // Woken 350 ms late: messages 0..=3 are due, each stamped with its scheduled time.
        let due: Vec<_> = s.take_due(t0 + Duration::from_millis(350)).collect();
        assert_eq!(due.len(), 4);
        assert_eq!(due[3].1, t0 + Duration::from_millis(300));
        assert_eq!(s.next_due(), Some(t0 + Duration::from_millis(400)));
        let rest = s.take_due(t0 + Duration::from_secs(5)).count();
        assert_eq!(rest, 6, "stops at the end of the phase");
        assert_eq!(s.next_due(), None);
        assert!(Schedule::new(t0, t0, 0.0, 0.0).is_none());
    }
}
