//! Reconnect delays: `min(max, base·2^attempt) + U(0, jitter)`.

use std::time::Duration;

/// Jittered exponential backoff. The random draw is an argument so the policy stays pure
/// (and a million simulated clients can share one seeded generator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry (attempt 0), before jitter.
    pub base: Duration,
    /// Cap on the exponential part.
    pub max: Duration,
    /// Upper bound of the uniform jitter added on top, spreading a reconnect storm.
    pub jitter: Duration,
}

impl Default for Backoff {
    /// 100 ms doubling to 10 s, plus up to 1 s of jitter.
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(10),
            jitter: Duration::from_secs(1),
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (0-based), with `random_unit` a uniform draw
    /// in `[0, 1)` (values outside are clamped, NaN counts as 0).
    pub fn delay(&self, attempt: u32, random_unit: f64) -> Duration {
        let exp = if attempt >= 32 {
            self.max
        } else {
            self.base.saturating_mul(1u32 << attempt).min(self.max)
        };
        let u = if random_unit.is_nan() {
            0.0
        } else {
            random_unit.clamp(0.0, 1.0)
        };
        exp.saturating_add(self.jitter.mul_f64(u))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_jitters() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(2),
            jitter: Duration::from_millis(500),
        };
        assert_eq!(b.delay(0, 0.0), Duration::from_millis(100));
        assert_eq!(b.delay(3, 0.0), Duration::from_millis(800));
        assert_eq!(b.delay(5, 0.0), Duration::from_secs(2));
        assert_eq!(b.delay(u32::MAX, 0.0), Duration::from_secs(2));
        assert_eq!(b.delay(0, 0.5), Duration::from_millis(350));
        assert_eq!(b.delay(0, f64::NAN), Duration::from_millis(100));
        assert_eq!(b.delay(0, 7.0), Duration::from_millis(600));
        assert_eq!(b.delay(0, -1.0), Duration::from_millis(100));
    }
}
