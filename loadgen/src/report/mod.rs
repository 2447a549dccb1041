//! The run's report: every figure, the parameters and the machine; printed as a table,
//! written as JSON (`--json`) and HTML (`--html`), compared across runs (`loadgen compare`).

pub mod compare;
pub mod html;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::config::RunArgs;
use crate::process::MachineInfo;
use crate::stats::histogram::Percentiles;
use crate::stats::{Counters, ErrorCounts, Recovery};
use crate::verify::VerifySummary;

/// Everything a run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    /// `--label`, or the server URL.
    pub label: String,
    /// Scenario name.
    pub scenario: String,
    /// The options the run was started with.
    pub params: RunArgs,
    /// Where it ran.
    pub machine: MachineInfo,
    /// Worker processes used.
    pub workers: usize,
    /// Wall-clock seconds of the whole run.
    pub wall_secs: f64,
    /// Totals over all workers.
    pub counters: Counters,
    /// Errors by kind.
    pub errors: ErrorCounts,
    /// Connection figures.
    pub connect: ConnectFigures,
    /// Message figures (direct, echo).
    pub messages: MessageFigures,
    /// loadgen's own resident memory per open connection (bytes), over all workers.
    pub client_bytes_per_conn: f64,
    /// `--verify` results.
    pub verify: Option<VerifySummary>,
    /// How users came back after lost connections.
    #[serde(default)]
    pub recovery: Recovery,
    /// `--target-pid` processes.
    pub targets: Vec<TargetFigures>,
    /// One entry per second.
    pub timeline: Vec<Second>,
    /// Flat `name → value` view of the figures above (what `compare` and the table show).
    pub figures: BTreeMap<String, f64>,
}

/// Connection figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectFigures {
    /// Most connections open at once.
    pub peak_connected: u64,
    /// Successful connects per second during the ramp, measured (first connect started →
    /// last connect completed), not the `--ramp` asked for.
    pub connect_rate: f64,
    /// Connect start → ready, µs.
    pub handshake_us: Percentiles,
    /// (quantile, µs) points of the handshake latency distribution, for plots.
    #[serde(default)]
    pub distribution: Vec<(f64, u64)>,
}

/// Message figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageFigures {
    /// Seconds of the measured phase.
    pub measure_secs: f64,
    /// Messages written per second of the measured phase.
    pub sent_per_sec: f64,
    /// Messages delivered per second of the measured phase.
    pub delivered_per_sec: f64,
    /// End-to-end latency from the scheduled send time, µs.
    pub latency_us: Percentiles,
    /// Scheduled send → `sent` ack, µs.
    pub ack_latency_us: Percentiles,
    /// (quantile, µs) points of the latency distribution, for plots.
    pub distribution: Vec<(f64, u64)>,
}

/// One sampled server process.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetFigures {
    /// Process id.
    pub pid: u32,
    /// RSS before the first connection (bytes).
    pub rss_start: u64,
    /// RSS when the ramp had settled (bytes).
    pub rss_connected: u64,
    /// Highest RSS seen.
    pub rss_peak: u64,
    /// RSS per open connection: (rss_connected − rss_start) / connections then.
    pub bytes_per_conn: f64,
    /// CPU seconds over the whole run.
    pub cpu_secs: f64,
    /// CPU seconds over the measured phase and drain.
    pub cpu_secs_measured: f64,
    /// Measured CPU seconds per 100,000 delivered messages.
    pub cpu_secs_per_100k: f64,
    /// (second, RSS bytes, CPU seconds) once a second.
    pub samples: Vec<(f64, u64, f64)>,
}

/// One second of the run, all workers together.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Second {
    /// Seconds since the start.
    pub t: u64,
    /// Connections open.
    pub connected: u64,
    /// Connects completed in this second.
    pub connects: u64,
    /// Messages written.
    pub sent: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Errors.
    pub errors: u64,
    /// p99 latency of the messages delivered in this second (exact merge), µs.
    pub p99_us: u64,
}

impl RunReport {
    /// Fills [`RunReport::figures`] from the structured fields.
    pub fn compute_figures(&mut self) {
        let mut f = BTreeMap::new();
        let c = &self.counters;
        f.insert(
            "connect.peak_connected".into(),
            self.connect.peak_connected as f64,
        );
        f.insert("connect.rate_per_s".into(), self.connect.connect_rate);
        put_pct(&mut f, "connect.handshake", &self.connect.handshake_us);
        f.insert("errors.total".into(), self.errors.total() as f64);
        for (k, v) in &self.errors.0 {
            f.insert(format!("errors.{k}"), *v as f64);
        }
        f.insert("client.bytes_per_conn".into(), self.client_bytes_per_conn);
        if c.sent > 0 || c.delivered > 0 {
            f.insert("msg.sent".into(), c.sent as f64);
            f.insert("msg.acked".into(), c.acked as f64);
            f.insert("msg.delivered".into(), c.delivered as f64);
            f.insert("msg.sent_per_s".into(), self.messages.sent_per_sec);
            f.insert(
                "msg.delivered_per_s".into(),
                self.messages.delivered_per_sec,
            );
            put_pct(&mut f, "msg.latency", &self.messages.latency_us);
            if self.messages.ack_latency_us.count > 0 {
                put_pct(&mut f, "msg.ack_latency", &self.messages.ack_latency_us);
            }
        }
        if c.reconnects > 0 {
            f.insert("churn.reconnects".into(), c.reconnects as f64);
            f.insert("churn.resumes".into(), c.resumes as f64);
        }
        if c.sent > 0 {
            // Every written message ends up in exactly one of acked / nacked / unacked.
            f.insert("msg.nacked".into(), c.nacked as f64);
            f.insert("msg.unacked".into(), c.unacked as f64);
            f.insert("msg.resent".into(), c.resent as f64);
            f.insert("msg.duplicates_dropped".into(), c.duplicates_dropped as f64);
            f.insert("msg.gaps".into(), c.gaps as f64);
        }
        if c.drains > 0 || c.redirects > 0 {
            f.insert("cluster.drains".into(), c.drains as f64);
            f.insert("cluster.redirects".into(), c.redirects as f64);
        }
        let r = &self.recovery;
        if r.lost_connections > 0 {
            f.insert(
                "recovery.lost_connections".into(),
                r.lost_connections as f64,
            );
            f.insert("recovery.reconnects".into(), c.reconnects as f64);
            f.insert("recovery.resumes".into(), c.resumes as f64);
            f.insert("recovery.max_outage_ms".into(), r.max_outage_ms as f64);
            f.insert("recovery.users_not_back".into(), r.users_not_back as f64);
            if let Some(ms) = r.all_resumed_ms() {
                f.insert("recovery.all_resumed_ms".into(), ms as f64);
            }
        }
        if let Some(v) = &self.verify {
            f.insert("verify.lost".into(), v.totals.lost as f64);
            f.insert("verify.duplicated".into(), v.totals.duplicated as f64);
            f.insert("verify.out_of_order".into(), v.totals.out_of_order as f64);
            f.insert(
                "verify.delivered_unacked".into(),
                v.totals.delivered_unacked as f64,
            );
        }
        for (i, t) in self.targets.iter().enumerate() {
            let p = if self.targets.len() == 1 {
                "server".to_owned()
            } else {
                format!("server{i}")
            };
            f.insert(format!("{p}.rss_connected_bytes"), t.rss_connected as f64);
            f.insert(format!("{p}.rss_peak_bytes"), t.rss_peak as f64);
            f.insert(format!("{p}.bytes_per_conn"), t.bytes_per_conn);
            f.insert(format!("{p}.cpu_secs"), t.cpu_secs);
            if c.delivered > 0 {
                f.insert(format!("{p}.cpu_secs_per_100k"), t.cpu_secs_per_100k);
            }
        }
        self.figures = f;
    }

    /// The final summary table.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "== loadgen {} — {} ({} workers, {:.1} s)",
            self.scenario, self.label, self.workers, self.wall_secs
        );
        for (k, v) in &self.figures {
            let _ = writeln!(s, "  {k:<34} {}", fmt_value(k, *v));
        }
        if let Some(v) = &self.verify {
            for p in v.problems.iter().take(10) {
                let _ = writeln!(
                    s,
                    "  verify: {} lost {} duplicated {} out-of-order {}",
                    p.user, p.verdict.lost, p.verdict.duplicated, p.verdict.out_of_order
                );
            }
        }
        s
    }
}

fn put_pct(f: &mut BTreeMap<String, f64>, name: &str, p: &Percentiles) {
    for (k, v) in [
        ("p50", p.p50),
        ("p90", p.p90),
        ("p99", p.p99),
        ("p999", p.p999),
        ("max", p.max),
    ] {
        f.insert(format!("{name}_{k}_us"), v as f64);
    }
}

/// A figure formatted for people: integers plainly, rates with one decimal.
pub fn fmt_value(name: &str, v: f64) -> String {
    if name.ends_with("_bytes") || name.ends_with("bytes_per_conn") {
        if v >= 1024.0 * 1024.0 {
            return format!("{:.1} MiB", v / (1024.0 * 1024.0));
        }
        return format!("{v:.0} B");
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}
