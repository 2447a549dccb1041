//! Every metric `control` exports, declared once, and their Prometheus text rendering.
//!
//! Counters are plain atomics bumped where the event happens; gauges are read from the state
//! when `/metrics` is scraped, so they cannot drift from what the API shows.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::scaling::DecisionKind;

/// Nodes in the ring (gauge).
pub const RING_NODES: &str = "rtc_lb_ring_nodes";
/// Points on the ring (gauge).
pub const RING_VNODES: &str = "rtc_lb_ring_vnodes";
/// Current ring version (gauge).
pub const RING_VERSION: &str = "rtc_lb_ring_version";
/// Scaling decisions made, by `decision` (counter).
pub const SCALING_DECISIONS: &str = "rtc_lb_scaling_decisions_total";
/// Replicas the last decision asked for (gauge; the KEDA/HPA target).
pub const DESIRED_REPLICAS: &str = "rtc_lb_desired_replicas";
/// Nodes removed because their heartbeats stopped (counter).
pub const NODES_EXPIRED: &str = "rtc_lb_nodes_expired_total";
/// Heartbeats received, by `result` (counter).
pub const HEARTBEATS: &str = "rtc_lb_heartbeats_total";
/// Long-polls refused because `MAX_LONG_POLLS` were already waiting (counter).
pub const LONG_POLLS_REFUSED: &str = "rtc_lb_long_polls_refused_total";
/// Whether this instance holds the leader lease (gauge 0/1).
pub const IS_LEADER: &str = "rtc_lb_is_leader";
/// Control events for Kafka, by `outcome`: `published`, `failed`, `dropped` (counter).
pub const EVENTS: &str = "rtc_lb_events_total";
/// HTTP requests, by `route` and `status` (counter).
pub const HTTP_REQUESTS: &str = "rtc_lb_http_requests_total";
/// HTTP request latency, by `route` (histogram).
pub const HTTP_DURATION: &str = "rtc_lb_http_request_duration_seconds";

/// Upper bounds of the latency histogram buckets, seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Distinct (route, status) pairs tracked; routes are the router's templates, so this is
/// never reached in practice, and anything past it is folded into one overflow series.
const MAX_HTTP_SERIES: usize = 512;

#[derive(Debug, Default)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The process's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    decisions: [AtomicU64; 3],
    /// Nodes expired by the heartbeat sweeper.
    pub nodes_expired: AtomicU64,
    /// Heartbeats accepted.
    pub heartbeats_accepted: AtomicU64,
    /// Heartbeats refused (bad input, quarantined, auth).
    pub heartbeats_refused: AtomicU64,
    /// Long-polls refused.
    pub long_polls_refused: AtomicU64,
    /// Control events (shared with the Kafka producer thread, `events.rs`).
    pub events: std::sync::Arc<crate::events::EventCounters>,
    http: Mutex<HttpSeries>,
}

#[derive(Debug, Default)]
struct HttpSeries {
    requests: BTreeMap<(String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
}

/// Values read from the state at scrape time.
#[derive(Debug, Clone, Copy)]
pub struct Gauges {
    /// Nodes in the ring.
    pub ring_nodes: u64,
    /// Points on the ring.
    pub ring_vnodes: u64,
    /// Ring version.
    pub ring_version: u64,
    /// Desired replicas (last decision).
    pub desired_replicas: u64,
    /// Whether this instance leads.
    pub is_leader: bool,
}

fn kind_index(k: DecisionKind) -> usize {
    match k {
        DecisionKind::ScaleOut => 0,
        DecisionKind::ScaleIn => 1,
        DecisionKind::Hold => 2,
    }
}

impl Metrics {
    /// Counts one scaling decision.
    pub fn decision(&self, kind: DecisionKind) {
        self.decisions[kind_index(kind)].fetch_add(1, Ordering::Relaxed);
    }

    /// Records one HTTP request.
    pub fn request(&self, route: &str, status: u16, seconds: f64) {
        let Ok(mut s) = self.http.lock() else { return };
        let key = if s.requests.len() >= MAX_HTTP_SERIES
            && !s.requests.contains_key(&(route.to_owned(), status))
        {
            ("other".to_owned(), 0)
        } else {
            (route.to_owned(), status)
        };
        let hist_key = key.0.clone();
        *s.requests.entry(key).or_default() += 1;
        let h = s.latency.entry(hist_key).or_default();
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            if seconds <= *le {
                h.buckets[i] += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
    }

    /// The Prometheus text exposition.
    pub fn render(&self, g: Gauges) -> String {
        let mut o = String::with_capacity(4096);
        let gauge = |o: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        let counter = |o: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        gauge(&mut o, RING_NODES, "Nodes in the ring.", g.ring_nodes);
        gauge(&mut o, RING_VNODES, "Points on the ring.", g.ring_vnodes);
        gauge(
            &mut o,
            RING_VERSION,
            "Current ring version.",
            g.ring_version,
        );
        gauge(
            &mut o,
            DESIRED_REPLICAS,
            "Replicas the last scaling decision asked for.",
            g.desired_replicas,
        );
        gauge(
            &mut o,
            IS_LEADER,
            "1 when this instance holds the leader lease.",
            u64::from(g.is_leader),
        );
        let _ = writeln!(
            o,
            "# HELP {SCALING_DECISIONS} Scaling decisions made.\n# TYPE {SCALING_DECISIONS} counter"
        );
        for k in DecisionKind::ALL {
            let v = self.decisions[kind_index(k)].load(Ordering::Relaxed);
            let _ = writeln!(o, "{SCALING_DECISIONS}{{decision=\"{}\"}} {v}", k.as_str());
        }
        counter(
            &mut o,
            NODES_EXPIRED,
            "Nodes removed because their heartbeats stopped.",
            self.nodes_expired.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            o,
            "# HELP {HEARTBEATS} Heartbeats received.\n# TYPE {HEARTBEATS} counter"
        );
        let _ = writeln!(
            o,
            "{HEARTBEATS}{{result=\"accepted\"}} {}\n{HEARTBEATS}{{result=\"refused\"}} {}",
            self.heartbeats_accepted.load(Ordering::Relaxed),
            self.heartbeats_refused.load(Ordering::Relaxed)
        );
        counter(
            &mut o,
            LONG_POLLS_REFUSED,
            "Ring long-polls refused because too many were waiting.",
            self.long_polls_refused.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            o,
            "# HELP {EVENTS} Control events for Kafka by outcome.\n# TYPE {EVENTS} counter"
        );
        for (outcome, v) in [
            ("published", &self.events.published),
            ("failed", &self.events.failed),
            ("dropped", &self.events.dropped),
        ] {
            let _ = writeln!(
                o,
                "{EVENTS}{{outcome=\"{outcome}\"}} {}",
                v.load(Ordering::Relaxed)
            );
        }
        if let Ok(s) = self.http.lock() {
            let _ = writeln!(
                o,
                "# HELP {HTTP_REQUESTS} HTTP requests served.\n# TYPE {HTTP_REQUESTS} counter"
            );
            for ((route, status), v) in &s.requests {
                let _ = writeln!(
                    o,
                    "{HTTP_REQUESTS}{{route=\"{route}\",status=\"{status}\"}} {v}"
                );
            }
            let _ = writeln!(
                o,
                "# HELP {HTTP_DURATION} HTTP request latency.\n# TYPE {HTTP_DURATION} histogram"
            );
            for (route, h) in &s.latency {
                for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
                    let _ = writeln!(
                        o,
                        "{HTTP_DURATION}_bucket{{route=\"{route}\",le=\"{le}\"}} {}",
                        h.buckets[i]
                    );
                }
                let _ = writeln!(
                    o,
                    "{HTTP_DURATION}_bucket{{route=\"{route}\",le=\"+Inf\"}} {}\n{HTTP_DURATION}_sum{{route=\"{route}\"}} {}\n{HTTP_DURATION}_count{{route=\"{route}\"}} {}",
                    h.count, h.sum, h.count
                );
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_declared_name() {
        let m = Metrics::default();
        m.decision(DecisionKind::ScaleOut);
        m.request("/v1/ring", 200, 0.002);
        let text = m.render(Gauges {
            ring_nodes: 2,
            ring_vnodes: 300,
            ring_version: 7,
            desired_replicas: 3,
            is_leader: true,
        });
        for name in [
            RING_NODES,
            RING_VNODES,
            RING_VERSION,
            SCALING_DECISIONS,
            DESIRED_REPLICAS,
            HTTP_REQUESTS,
            HTTP_DURATION,
        ] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
        }
        assert!(text.contains("rtc_lb_ring_version 7"));
        assert!(text.contains("rtc_lb_scaling_decisions_total{decision=\"scale_out\"} 1"));
        assert!(text.contains("route=\"/v1/ring\",le=\"0.0025\"} 1"));
        assert!(text.contains("route=\"/v1/ring\",le=\"0.001\"} 0"));
    }
}
