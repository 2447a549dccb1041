//! Per-shard plain counters, published off the hot path and rendered in Prometheus text format.
//!
//! Each shard counts into [`ShardMetrics`] (plain `Cell`s: only its own core touches them) and
//! copies them into its [`Published`] snapshot (atomics with one writer) every
//! [`PUBLISH_INTERVAL`]; `GET /metrics`, served by any shard, reads every shard's snapshot and
//! renders them with [`render`]. Nothing on the message path is shared between cores.
//!
//! # Layout
//! - `names.rs` — every metric name, once.
//! - this file — the counter/gauge tables, the latency histogram, snapshot and rendering.

pub mod names;

use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How often a shard copies its counters into its published snapshot.
pub const PUBLISH_INTERVAL: Duration = Duration::from_millis(250);

/// Upper bounds (seconds) of the commit→write latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

macro_rules! counters {
    ($( $(#[$doc:meta])* $var:ident => ($family:expr, $labels:expr) ),* $(,)?) => {
        /// A per-shard counter: one series of a metric family.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(usize)]
        pub enum Counter { $( $(#[$doc])* $var ),* }
        /// `(family, labels)` of each [`Counter`], in declaration order.
        const COUNTER_SERIES: &[(&str, &str)] = &[ $( ($family, $labels) ),* ];
    };
}

counters! {
    /// Handshake upgraded.
    HandshakeOk => (names::HANDSHAKES_TOTAL, "result=\"ok\""),
    /// Malformed request (400).
    HandshakeBadRequest => (names::HANDSHAKES_TOTAL, "result=\"bad_request\""),
    /// Unsupported WebSocket version (426).
    HandshakeBadVersion => (names::HANDSHAKES_TOTAL, "result=\"bad_version\""),
    /// Request head over the limit (431).
    HandshakeTooLarge => (names::HANDSHAKES_TOTAL, "result=\"headers_too_large\""),
    /// Request head not complete before the header timeout.
    HandshakeTimeout => (names::HANDSHAKES_TOTAL, "result=\"timeout\""),
    /// No identity or a bad token (401).
    HandshakeUnauthorized => (names::HANDSHAKES_TOTAL, "result=\"unauthorized\""),
    /// Origin not allowed (403).
    HandshakeForbidden => (names::HANDSHAKES_TOTAL, "result=\"forbidden\""),
    /// Over the handshake rate (503).
    HandshakeRateLimited => (names::HANDSHAKES_TOTAL, "result=\"rate_limited\""),
    /// Over the per-IP connection limit (429).
    HandshakePerIpLimit => (names::HANDSHAKES_TOTAL, "result=\"per_ip_limit\""),
    /// Refused while draining (503).
    HandshakeDraining => (names::HANDSHAKES_TOTAL, "result=\"draining\""),
    /// Unknown path (404).
    HandshakeNotFound => (names::HANDSHAKES_TOTAL, "result=\"not_found\""),
    /// A message written to its recipient's socket.
    Delivered => (names::DELIVERED_TOTAL, ""),
    /// A client `message` frame received.
    Received => (names::RECEIVED_TOTAL, ""),
    /// A connection with a resume token.
    Reconnect => (names::RECONNECTS_TOTAL, ""),
    /// A resume whose replay covered the client's offset.
    ResumeSuccess => (names::RESUME_SUCCESS_TOTAL, ""),
    /// A store request failed: Redis unavailable or erring (`error unavailable`, 503).
    DropStoreUnavailable => (names::DROPS_TOTAL, "reason=\"store_unavailable\""),
    /// The shard's outstanding store requests hit their bound: the request was refused.
    DropStoreQueueFull => (names::DROPS_TOTAL, "reason=\"store_queue_full\""),
    /// Refused because the store (Redis) is unavailable (503).
    HandshakeStoreUnavailable => (names::HANDSHAKES_TOTAL, "result=\"store_unavailable\""),
    /// The relay ring of the shard was full: a committed message was not produced (the
    /// owner reads it from Redis at its next hole or reconcile).
    DropRelayRingFull => (names::DROPS_TOTAL, "reason=\"relay_ring_full\""),
    /// A produce to Kafka failed (same recovery as above).
    DropRelayProduceFailed => (names::DROPS_TOTAL, "reason=\"relay_produce_failed\""),
    /// The relay reported a possible loss of records.
    RelayLost => (names::RELAY_EVENTS_TOTAL, "event=\"lost\""),
    /// The relay was restored: connected users were reconciled against Redis.
    RelayReconcile => (names::RELAY_EVENTS_TOTAL, "event=\"restored\""),
    /// A cross-shard ring was full: the item was refused (`error unavailable` to the sender).
    DropRingFull => (names::DROPS_TOTAL, "reason=\"ring_full\""),
    /// The outbound buffer was full: its oldest message was dropped (client told the gap).
    DropOutboundFull => (names::DROPS_TOTAL, "reason=\"outbound_full\""),
    /// The recipient's resume log was full: its oldest unacked message was trimmed.
    DropLogFull => (names::DROPS_TOTAL, "reason=\"log_full\""),
    /// An offline user's log was evicted to keep the shard's offline byte budget.
    DropEvicted => (names::DROPS_TOTAL, "reason=\"offline_evicted\""),
    /// A message outlived `RESUME_TTL_SEC` unacked.
    DropExpired => (names::DROPS_TOTAL, "reason=\"expired\""),
    /// A slow consumer was disconnected (4005).
    DropSlowConsumer => (names::DROPS_TOTAL, "reason=\"slow_consumer\""),
    /// A handed-off connection could not reach its home shard (ring full): closed 1013.
    DropHandoff => (names::DROPS_TOTAL, "reason=\"handoff_ring_full\""),
    /// A bad client frame (invalid JSON, unknown type) answered with an `error` frame.
    DropBadFrame => (names::DROPS_TOTAL, "reason=\"bad_frame\""),
    /// Closed: protocol error (1002).
    Close1002 => (names::CLOSES_TOTAL, "code=\"1002\""),
    /// Closed: invalid UTF-8 (1007).
    Close1007 => (names::CLOSES_TOTAL, "code=\"1007\""),
    /// Closed: message too big (1009).
    Close1009 => (names::CLOSES_TOTAL, "code=\"1009\""),
    /// Closed: replaced by a newer login (4002).
    Close4002 => (names::CLOSES_TOTAL, "code=\"4002\""),
    /// Closed: slow consumer (4005).
    Close4005 => (names::CLOSES_TOTAL, "code=\"4005\""),
    /// Closed: idle timeout (4006).
    Close4006 => (names::CLOSES_TOTAL, "code=\"4006\""),
    /// Closed: drained (4007).
    Close4007 => (names::CLOSES_TOTAL, "code=\"4007\""),
    /// Closed: too many bad frames (4008).
    Close4008 => (names::CLOSES_TOTAL, "code=\"4008\""),
    /// Closed: not the owner (4003, after a `redirect` frame).
    Close4003 => (names::CLOSES_TOTAL, "code=\"4003\""),
    /// Redirected handshakes (closed 4003 after the `redirect` frame).
    Redirect => (names::REDIRECTS_TOTAL, ""),
    /// Users drained because a ring change moved them to another node.
    RebalanceDrain => (names::REBALANCE_DRAINS_TOTAL, ""),
}

const N_COUNTERS: usize = COUNTER_SERIES.len();

/// A per-shard gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Gauge {
    /// Open WebSocket connections on the shard.
    ActiveConnections,
    /// Messages waiting in the shard's outbound buffers.
    QueueDepth,
}
const GAUGE_SERIES: &[&str] = &[names::ACTIVE_CONNECTIONS, names::QUEUE_DEPTH];
const N_GAUGES: usize = GAUGE_SERIES.len();
const N_BUCKETS: usize = LATENCY_BUCKETS.len() + 1; // + the +Inf bucket

fn help(family: &str) -> (&'static str, &'static str) {
    match family {
        names::ACTIVE_CONNECTIONS => ("gauge", "Open WebSocket connections."),
        names::HANDSHAKES_TOTAL => ("counter", "Handshakes by result."),
        names::DELIVERED_TOTAL => ("counter", "Messages written to their recipient's socket."),
        names::RECEIVED_TOTAL => ("counter", "Client message frames received."),
        names::QUEUE_DEPTH => ("gauge", "Messages waiting in outbound buffers."),
        names::RECONNECTS_TOTAL => ("counter", "Connections that came with a resume token."),
        names::RESUME_SUCCESS_TOTAL => ("counter", "Resumes replayed from the client's offset."),
        names::DROPS_TOTAL => ("counter", "Dropped items by reason."),
        names::CLOSES_TOTAL => (
            "counter",
            "Connections closed by the server, by close code.",
        ),
        names::REDIRECTS_TOTAL => (
            "counter",
            "Handshakes redirected to the user's owner (close 4003).",
        ),
        names::REBALANCE_DRAINS_TOTAL => (
            "counter",
            "Users drained (4007) because a ring change moved them away.",
        ),
        names::RELAY_EVENTS_TOTAL => (
            "counter",
            "Relay health events seen by the shards (restored: users reconciled).",
        ),
        _ => ("untyped", ""),
    }
}

/// One shard's counters: plain cells, touched only by that shard's thread.
#[derive(Debug)]
pub struct ShardMetrics {
    counters: [Cell<u64>; N_COUNTERS],
    gauges: [Cell<u64>; N_GAUGES],
    buckets: [Cell<u64>; N_BUCKETS],
    latency_sum_ns: Cell<u64>,
}

impl Default for ShardMetrics {
    fn default() -> Self {
        Self {
            counters: std::array::from_fn(|_| Cell::new(0)),
            gauges: std::array::from_fn(|_| Cell::new(0)),
            buckets: std::array::from_fn(|_| Cell::new(0)),
            latency_sum_ns: Cell::new(0),
        }
    }
}

impl ShardMetrics {
    /// Adds one to `c`.
    #[inline]
    pub fn inc(&self, c: Counter) {
        self.add(c, 1);
    }

    /// Adds `n` to `c`.
    #[inline]
    pub fn add(&self, c: Counter, n: u64) {
        let cell = &self.counters[c as usize];
        cell.set(cell.get().wrapping_add(n));
    }

    /// Current value of `c` (tests, logs).
    pub fn get(&self, c: Counter) -> u64 {
        self.counters[c as usize].get()
    }

    /// Sets gauge `g`.
    #[inline]
    pub fn set(&self, g: Gauge, v: u64) {
        self.gauges[g as usize].set(v);
    }

    /// Adds a signed delta to gauge `g` (saturating at 0).
    #[inline]
    pub fn gauge_add(&self, g: Gauge, delta: i64) {
        let cell = &self.gauges[g as usize];
        cell.set(cell.get().saturating_add_signed(delta));
    }

    /// Records one commit→write latency.
    #[inline]
    pub fn observe_latency(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(N_BUCKETS - 1);
        let cell = &self.buckets[i];
        cell.set(cell.get() + 1);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.latency_sum_ns
            .set(self.latency_sum_ns.get().saturating_add(ns));
    }

    /// Copies every value into the shard's published snapshot.
    pub fn publish(&self, to: &Published) {
        for (a, c) in to.counters.iter().zip(&self.counters) {
            a.store(c.get(), Ordering::Relaxed);
        }
        for (a, c) in to.gauges.iter().zip(&self.gauges) {
            a.store(c.get(), Ordering::Relaxed);
        }
        for (a, c) in to.buckets.iter().zip(&self.buckets) {
            a.store(c.get(), Ordering::Relaxed);
        }
        to.latency_sum_ns
            .store(self.latency_sum_ns.get(), Ordering::Relaxed);
    }
}

/// A shard's published snapshot: written by that shard only, read by `/metrics`.
#[derive(Debug)]
pub struct Published {
    counters: [AtomicU64; N_COUNTERS],
    gauges: [AtomicU64; N_GAUGES],
    buckets: [AtomicU64; N_BUCKETS],
    latency_sum_ns: AtomicU64,
}

impl Default for Published {
    fn default() -> Self {
        Self {
            counters: std::array::from_fn(|_| AtomicU64::new(0)),
            gauges: std::array::from_fn(|_| AtomicU64::new(0)),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            latency_sum_ns: AtomicU64::new(0),
        }
    }
}

impl Published {
    /// Published value of counter `c`.
    pub fn counter(&self, c: Counter) -> u64 {
        self.counters[c as usize].load(Ordering::Relaxed)
    }

    /// Published per-bucket counts of the latency histogram (`LATENCY_BUCKETS`, then +Inf),
    /// not cumulative.
    pub fn latency_buckets(&self) -> [u64; N_BUCKETS] {
        std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed))
    }

    /// Published value of gauge `g`.
    pub fn gauge(&self, g: Gauge) -> u64 {
        self.gauges[g as usize].load(Ordering::Relaxed)
    }
}

fn header(out: &mut String, family: &str, kind: &str, text: &str) {
    let _ = writeln!(out, "# HELP {family} {text}");
    let _ = writeln!(out, "# TYPE {family} {kind}");
}

/// Renders every shard's snapshot (index = shard id) as Prometheus text.
pub fn render<P: AsRef<Published>>(shards: &[P], draining: bool, out: &mut String) {
    // Counter families, in table order, each series per shard.
    let mut done: Vec<&str> = Vec::new();
    for (i, (family, _)) in COUNTER_SERIES.iter().enumerate() {
        if done.contains(family) {
            continue;
        }
        done.push(family);
        let (kind, text) = help(family);
        header(out, family, kind, text);
        for (j, (f2, labels)) in COUNTER_SERIES.iter().enumerate().skip(i) {
            if f2 != family {
                continue;
            }
            for (s, p) in shards.iter().enumerate() {
                let v = p.as_ref().counters[j].load(Ordering::Relaxed);
                let sep = if labels.is_empty() { "" } else { "," };
                let _ = writeln!(out, "{family}{{shard=\"{s}\"{sep}{labels}}} {v}");
            }
        }
    }
    for (g, family) in GAUGE_SERIES.iter().enumerate() {
        let (kind, text) = help(family);
        header(out, family, kind, text);
        for (s, p) in shards.iter().enumerate() {
            let v = p.as_ref().gauges[g].load(Ordering::Relaxed);
            let _ = writeln!(out, "{family}{{shard=\"{s}\"}} {v}");
        }
    }
    // The latency histogram, summed over shards (per-shard latency is rarely what one asks).
    header(
        out,
        names::LATENCY,
        "histogram",
        "Seconds from commit to the socket write.",
    );
    let mut cumulative = 0u64;
    for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
        cumulative += shards
            .iter()
            .map(|p| p.as_ref().buckets[i].load(Ordering::Relaxed))
            .sum::<u64>();
        let _ = writeln!(
            out,
            "{}_bucket{{le=\"{bound}\"}} {cumulative}",
            names::LATENCY
        );
    }
    cumulative += shards
        .iter()
        .map(|p| p.as_ref().buckets[N_BUCKETS - 1].load(Ordering::Relaxed))
        .sum::<u64>();
    let _ = writeln!(out, "{}_bucket{{le=\"+Inf\"}} {cumulative}", names::LATENCY);
    let sum_ns: u64 = shards
        .iter()
        .map(|p| p.as_ref().latency_sum_ns.load(Ordering::Relaxed))
        .sum();
    let _ = writeln!(out, "{}_sum {}", names::LATENCY, sum_ns as f64 / 1e9);
    let _ = writeln!(out, "{}_count {cumulative}", names::LATENCY);
    header(
        out,
        names::DRAINING,
        "gauge",
        "1 while the node drains (readiness false).",
    );
    let _ = writeln!(out, "{} {}", names::DRAINING, u8::from(draining));
    header(
        out,
        names::SHARDS,
        "gauge",
        "Shards (pinned executors) of this node.",
    );
    let _ = writeln!(out, "{} {}", names::SHARDS, shards.len());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn renders_published_values_per_shard() {
        let m = ShardMetrics::default();
        m.inc(Counter::HandshakeOk);
        m.add(Counter::Delivered, 5);
        m.set(Gauge::ActiveConnections, 3);
        m.observe_latency(Duration::from_micros(300));
        let p = Arc::new(Published::default());
        m.publish(&p);
        let mut out = String::new();
        render(
            &[p.clone(), Arc::new(Published::default())],
            false,
            &mut out,
        );
        assert!(
            out.contains("rtc_socket_handshakes_total{shard=\"0\",result=\"ok\"} 1"),
            "{out}"
        );
        assert!(out.contains("rtc_socket_delivered_total{shard=\"0\"} 5"));
        assert!(out.contains("rtc_socket_delivered_total{shard=\"1\"} 0"));
        assert!(out.contains("rtc_socket_active_connections{shard=\"0\"} 3"));
        assert!(out.contains("rtc_socket_latency_bucket{le=\"0.0005\"} 1"));
        assert!(out.contains("rtc_socket_latency_bucket{le=\"0.00025\"} 0"));
        assert!(out.contains("rtc_socket_latency_count 1"));
        // Every family has exactly one TYPE line.
        assert_eq!(out.matches("# TYPE rtc_socket_handshakes_total").count(), 1);
    }
}
