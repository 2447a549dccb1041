//! [`RelayCounters`]: the relay's plain counters, shared by the relay thread and the shards.
//!
//! Atomics with relaxed ordering: each is an independent tally read off the hot path
//! (metrics rendering), and the relay thread does most of the writing.

use std::sync::atomic::{AtomicU64, Ordering};

/// Every relay outcome that is counted.
#[derive(Debug, Default)]
pub struct RelayCounters {
    /// Records the broker acknowledged (delivery topics).
    pub produced: AtomicU64,
    /// Produce requests that failed (enqueue refused or delivery report with an error); each
    /// one was reported back to its shard.
    pub produce_failed: AtomicU64,
    /// `try_send` refused because the shard → relay ring was full (the shard nacks).
    pub ring_full: AtomicU64,
    /// Times the relay → shard ring was full and the consumer waited for the shard
    /// (backpressure: the records stay in Kafka meanwhile).
    pub inbound_ring_full: AtomicU64,
    /// Records consumed from this node's delivery topic and handed to a shard.
    pub consumed: AtomicU64,
    /// Consumed records that were not a valid envelope (skipped).
    pub decode_errors: AtomicU64,
    /// Control/analytics events acknowledged by the broker.
    pub events_published: AtomicU64,
    /// Control/analytics events that could not be published.
    pub events_failed: AtomicU64,
    /// `RelayEvent::Lost` raised.
    pub lost: AtomicU64,
    /// `RelayEvent::Restored` raised.
    pub restored: AtomicU64,
    /// librdkafka clients thrown away and rebuilt during recovery.
    pub clients_recreated: AtomicU64,
    /// Broker transport errors reported by librdkafka.
    pub transport_errors: AtomicU64,
}

/// A copy of [`RelayCounters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)] // field names mirror RelayCounters
pub struct RelayCountersSnapshot {
    pub produced: u64,
    pub produce_failed: u64,
    pub ring_full: u64,
    pub inbound_ring_full: u64,
    pub consumed: u64,
    pub decode_errors: u64,
    pub events_published: u64,
    pub events_failed: u64,
    pub lost: u64,
    pub restored: u64,
    pub clients_recreated: u64,
    pub transport_errors: u64,
}

impl RelayCounters {
    /// Adds one to `c`.
    pub(crate) fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n` to `c`.
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> RelayCountersSnapshot {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RelayCountersSnapshot {
            produced: r(&self.produced),
            produce_failed: r(&self.produce_failed),
            ring_full: r(&self.ring_full),
            inbound_ring_full: r(&self.inbound_ring_full),
            consumed: r(&self.consumed),
            decode_errors: r(&self.decode_errors),
            events_published: r(&self.events_published),
            events_failed: r(&self.events_failed),
            lost: r(&self.lost),
            restored: r(&self.restored),
            clients_recreated: r(&self.clients_recreated),
            transport_errors: r(&self.transport_errors),
        }
    }
}
