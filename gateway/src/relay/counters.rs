//! [`RelayCounters`]: the relay's plain counters, shared by the relay thread and the shards.
//!
//! Atomics with relaxed ordering: each is an independent tally read off the hot path
//! (metrics rendering), and the relay thread does most of the writing.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::metrics::names;

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
    /// Times the consumer held fewer partitions than its delivery topic has for longer than
    /// the relay's assignment grace (each raised `Lost` and rebuilt the consumer).
    pub assignment_incomplete: AtomicU64,
    /// Times the delivery topic was found with fewer partitions than configured (created
    /// by someone else with the broker's default) and the relay tried to grow it.
    pub topic_short: AtomicU64,
    /// Gauge: partitions of the delivery topic the consumer holds now.
    pub assigned_partitions: AtomicU64,
    /// Gauge: partitions the broker reports for the delivery topic (last probe; 0 = missing
    /// or not probed yet).
    pub topic_partitions: AtomicU64,
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
    pub assignment_incomplete: u64,
    pub topic_short: u64,
    pub assigned_partitions: u64,
    pub topic_partitions: u64,
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
            assignment_incomplete: r(&self.assignment_incomplete),
            topic_short: r(&self.topic_short),
            assigned_partitions: r(&self.assigned_partitions),
            topic_partitions: r(&self.topic_partitions),
        }
    }
}

impl RelayCountersSnapshot {
    /// Appends these counters to a `/metrics` page (Prometheus text): one counter family
    /// with an `outcome` label, plus the two partition gauges.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP {0} Relay outcomes counted by the relay thread.\n# TYPE {0} counter",
            names::RELAY_TOTAL
        );
        for (outcome, v) in [
            ("produced", self.produced),
            ("produce_failed", self.produce_failed),
            ("ring_full", self.ring_full),
            ("inbound_ring_full", self.inbound_ring_full),
            ("consumed", self.consumed),
            ("decode_errors", self.decode_errors),
            ("events_published", self.events_published),
            ("events_failed", self.events_failed),
            ("lost", self.lost),
            ("restored", self.restored),
            ("clients_recreated", self.clients_recreated),
            ("transport_errors", self.transport_errors),
            ("assignment_incomplete", self.assignment_incomplete),
            ("topic_short", self.topic_short),
        ] {
            let _ = writeln!(out, "{}{{outcome=\"{outcome}\"}} {v}", names::RELAY_TOTAL);
        }
        let _ = writeln!(
            out,
            "# HELP {0} Partitions of this node's delivery topic its relay consumer holds.\n# TYPE {0} gauge\n{0} {1}",
            names::RELAY_ASSIGNED_PARTITIONS,
            self.assigned_partitions
        );
        let _ = writeln!(
            out,
            "# HELP {0} Partitions the broker reports for this node's delivery topic (0 = missing).\n# TYPE {0} gauge\n{0} {1}",
            names::RELAY_TOPIC_PARTITIONS,
            self.topic_partitions
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_outcomes_and_partition_gauges() {
        let c = RelayCounters::default();
        RelayCounters::bump(&c.assignment_incomplete);
        c.assigned_partitions.store(8, Ordering::Relaxed);
        c.topic_partitions.store(8, Ordering::Relaxed);
        let mut out = String::new();
        c.snapshot().render(&mut out);
        assert!(out.contains("rtc_socket_relay_total{outcome=\"assignment_incomplete\"} 1\n"));
        assert!(out.contains("rtc_socket_relay_total{outcome=\"lost\"} 0\n"));
        assert!(out.contains("\nrtc_socket_relay_assigned_partitions 8\n"));
        assert!(out.contains("\nrtc_socket_relay_topic_partitions 8\n"));
    }
}
