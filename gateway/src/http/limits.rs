//! Handshake admission limits shared by every shard: the node-wide handshake rate (GCRA token
//! bucket in one atomic) and open connections per client IP (a fixed table of atomic counters).
//!
//! These sit on the handshake path only, never on the message path; both are a single atomic
//! operation, so shards do not serialise on them.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Slots of the per-IP table. Two addresses hashing to one slot share a count: the limit is
/// conservative (may refuse early under a collision, never admits more than the limit).
pub const PER_IP_SLOTS: usize = 1 << 16;

/// Node-wide handshake rate limiter: generic cell rate algorithm over one `AtomicU64`
/// ("theoretical arrival time" in nanoseconds since the limiter was made), burst = one second.
#[derive(Debug)]
pub struct HandshakeRate {
    /// Nanoseconds between two handshakes at the sustained rate; 0 = unlimited.
    interval_ns: u64,
    /// How far ahead of now the arrival time may run (the burst).
    tolerance_ns: u64,
    tat_ns: AtomicU64,
}

impl HandshakeRate {
    /// `per_second` = 0 disables the limit.
    pub fn new(per_second: u32) -> Self {
        let interval_ns = if per_second == 0 {
            0
        } else {
            1_000_000_000 / u64::from(per_second)
        };
        Self {
            interval_ns,
            tolerance_ns: 1_000_000_000,
            tat_ns: AtomicU64::new(0),
        }
    }

    /// Takes one token at `now_ns` (monotonic, nanoseconds). `Err(retry_after)` when over.
    pub fn try_acquire(&self, now_ns: u64) -> Result<(), Duration> {
        if self.interval_ns == 0 {
            return Ok(());
        }
        let mut tat = self.tat_ns.load(Ordering::Relaxed);
        loop {
            let start = tat.max(now_ns);
            let next = start + self.interval_ns;
            if next > now_ns + self.tolerance_ns {
                return Err(Duration::from_nanos(next - now_ns - self.tolerance_ns));
            }
            match self
                .tat_ns
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(seen) => tat = seen,
            }
        }
    }
}

/// Open connections per client IP, counted in [`PER_IP_SLOTS`] atomic slots.
#[derive(Debug)]
pub struct PerIpLimit {
    limit: u32,
    slots: Box<[AtomicU32]>,
}

impl PerIpLimit {
    /// `limit` = 0 disables the limit (and allocates no table).
    pub fn new(limit: u32) -> Self {
        let n = if limit == 0 { 0 } else { PER_IP_SLOTS };
        Self {
            limit,
            slots: (0..n).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    fn slot(&self, ip: IpAddr) -> Option<&AtomicU32> {
        if self.slots.is_empty() {
            return None;
        }
        let h = match ip {
            IpAddr::V4(v4) => rtc_ring::hash_key(&v4.octets()),
            IpAddr::V6(v6) => rtc_ring::hash_key(&v6.octets()),
        };
        self.slots.get((h as usize) % self.slots.len())
    }

    /// Counts one more connection from `ip`; `false` (nothing counted) when over the limit.
    pub fn try_acquire(&self, ip: IpAddr) -> bool {
        let Some(slot) = self.slot(ip) else {
            return true;
        };
        let prev = slot.fetch_add(1, Ordering::Relaxed);
        if prev >= self.limit {
            slot.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Uncounts a connection admitted by [`PerIpLimit::try_acquire`].
    pub fn release(&self, ip: IpAddr) {
        if let Some(slot) = self.slot(ip) {
            let _ = slot.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_allows_one_second_burst_then_refuses() {
        let r = HandshakeRate::new(10);
        let now = 5_000_000_000;
        for _ in 0..10 {
            assert!(r.try_acquire(now).is_ok());
        }
        let retry = r
            .try_acquire(now)
            .expect_err("11th in the same instant is over");
        assert!(retry <= Duration::from_millis(100));
        // A tenth of a second later one more token is there.
        assert!(r.try_acquire(now + 100_000_000).is_ok());
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let r = HandshakeRate::new(0);
        for _ in 0..10_000 {
            assert!(r.try_acquire(0).is_ok());
        }
    }

    #[test]
    fn per_ip_counts_and_releases() {
        let l = PerIpLimit::new(2);
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        assert!(l.try_acquire(ip));
        assert!(l.try_acquire(ip));
        assert!(!l.try_acquire(ip));
        l.release(ip);
        assert!(l.try_acquire(ip));
    }
}
