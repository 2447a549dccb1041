//! The heartbeat thread: every `HEARTBEAT_INTERVAL_SEC` it samples the node's figures and
//! posts them to control. The first beat (success or not) starts the ring follower, so the
//! first ring the node fetches already names it when control is reachable.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc_protocol::control::{Heartbeat, HeartbeatResponse, HEARTBEAT_VERSION};

use super::client::ClientError;
use crate::metrics::{Counter, Gauge, LATENCY_BUCKETS};
use crate::shard::{unix_ms, Node};

/// Heartbeat answers in a row naming another ring version before the heartbeat thread
/// fetches the ring itself.
const DISAGREE_BEATS: u32 = 2;
/// Longest a heartbeat request may take (it must not delay the next one much).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// Clock ticks per second of `/proc/*/stat` times: the kernel reports them in USER_HZ, which
/// is 100 on every Linux ABI (so no `sysconf` call, and no `unsafe`, is needed).
const USER_HZ: f64 = 100.0;

/// Runs forever (the process exits around it).
pub fn run(node: &Arc<Node>) {
    let Some(control) = node.cluster.control.clone() else {
        return;
    };
    let interval = Duration::from_secs_f64(node.config.heartbeat_interval_sec);
    let mut sampler = Sampler::new(node);
    let mut follower_started = false;
    let mut next = Instant::now();
    let mut warned = false;
    // Consecutive heartbeat answers whose ring version differs from the applied one.
    let mut disagree = 0u32;
    loop {
        let hb = sampler.sample(node);
        let body = match serde_json::to_vec(&hb) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "encoding a heartbeat");
                return;
            }
        };
        let token = Some(node.config.node_token.as_str()).filter(|t| !t.is_empty());
        let m = &node.cluster;
        match control.post("/v1/nodes/heartbeat", Some(&body), token, REQUEST_TIMEOUT) {
            Ok(answer) => match serde_json::from_slice::<HeartbeatResponse>(&answer) {
                Ok(r) if r.accepted => {
                    m.heartbeats_sent.fetch_add(1, Ordering::Relaxed);
                    disagree = match m.gate_state().0 {
                        Some(v) if v != r.ring_version => disagree + 1,
                        _ => 0,
                    };
                    if disagree >= DISAGREE_BEATS {
                        // The follower normally applies a change within a round trip; two
                        // beats without it mean it is stuck (e.g. long-polling for a version
                        // a restarted control will not reach soon): fetch here.
                        match super::follow::fetch(&control, "/v1/ring", REQUEST_TIMEOUT) {
                            Ok(ring) => {
                                m.offer(ring, &node.config.node_id);
                            }
                            Err(e) => tracing::debug!(error = %e, "ring fetch after heartbeat"),
                        }
                    }
                    if warned {
                        tracing::info!("heartbeats reach control again");
                        warned = false;
                    }
                }
                Ok(_) => {
                    m.heartbeats_refused.fetch_add(1, Ordering::Relaxed);
                    if !warned {
                        tracing::warn!(
                            "control refused the heartbeat (node removed by an operator?)"
                        );
                        warned = true;
                    }
                }
                Err(e) => {
                    m.heartbeats_failed.fetch_add(1, Ordering::Relaxed);
                    if !warned {
                        tracing::warn!(error = %e, "unreadable heartbeat answer");
                        warned = true;
                    }
                }
            },
            Err(e) => {
                let counter = match &e {
                    ClientError::Status { status, .. } if *status < 500 => &m.heartbeats_refused,
                    _ => &m.heartbeats_failed,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                if !warned {
                    tracing::warn!(error = %e, "heartbeat to control failed");
                    warned = true;
                }
            }
        }
        if !follower_started {
            follower_started = true;
            let n = node.clone();
            if let Err(e) = std::thread::Builder::new()
                .name("ring-follow".into())
                .spawn(move || super::follow::run(&n))
            {
                tracing::error!(error = %e, "starting the ring follower");
            }
        }
        // Fixed-rate schedule; after a long stall, start afresh instead of bursting.
        next += interval;
        let now = Instant::now();
        if next <= now {
            next = now + interval;
        }
        std::thread::sleep(next - now);
    }
}

/// Turns the node's cumulative counters into per-interval figures.
#[derive(Debug)]
pub struct Sampler {
    at: Instant,
    delivered: u64,
    buckets: Vec<u64>,
    cpu_ticks: Option<u64>,
    ticks_per_sec: f64,
    cores: f64,
}

impl Sampler {
    /// A sampler whose first interval starts now.
    pub fn new(node: &Node) -> Self {
        let (delivered, buckets) = totals(node);
        Self {
            at: Instant::now(),
            delivered,
            buckets,
            cpu_ticks: cpu_ticks(),
            ticks_per_sec: USER_HZ,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()) as f64,
        }
    }

    /// The heartbeat for the interval since the last sample.
    pub fn sample(&mut self, node: &Node) -> Heartbeat {
        let now = Instant::now();
        let dt = now.duration_since(self.at).as_secs_f64().max(1e-3);
        let (delivered, buckets) = totals(node);
        let mps = delivered.saturating_sub(self.delivered) as f64 / dt;
        let recent: Vec<u64> = buckets
            .iter()
            .zip(&self.buckets)
            .map(|(a, b)| a.saturating_sub(*b))
            .collect();
        let ticks = cpu_ticks();
        let cpu = match (ticks, self.cpu_ticks) {
            (Some(t), Some(t0)) => {
                (t.saturating_sub(t0) as f64 / self.ticks_per_sec / dt / self.cores).clamp(0.0, 1.0)
            }
            _ => 0.0,
        };
        self.at = now;
        self.delivered = delivered;
        self.buckets = buckets;
        self.cpu_ticks = ticks;
        let queue_depth = node
            .published
            .iter()
            .map(|p| p.gauge(Gauge::QueueDepth))
            .sum();
        Heartbeat {
            node_id: node.config.node_id.clone(),
            active_conn: node.live.load(Ordering::Acquire) as u64,
            mps,
            p95_latency_ms: p95_ms(&recent),
            queue_depth,
            cpu,
            mem: rss_bytes(),
            ts: unix_ms(),
            public_ws_url: node.public_url.clone(),
            weight: node.config.node_weight,
            version: HEARTBEAT_VERSION,
            ring_version: node.cluster.serving_version(),
            draining: node.is_draining(),
        }
    }
}

/// Delivered messages and the latency histogram's per-bucket counts, summed over shards.
fn totals(node: &Node) -> (u64, Vec<u64>) {
    let mut delivered = 0;
    let mut buckets = vec![0u64; LATENCY_BUCKETS.len() + 1];
    for p in &node.published {
        delivered += p.counter(Counter::Delivered);
        for (acc, v) in buckets.iter_mut().zip(p.latency_buckets()) {
            *acc += v;
        }
    }
    (delivered, buckets)
}

/// The 95th percentile in ms from per-bucket counts (`LATENCY_BUCKETS`, then +Inf): the upper
/// bound of the bucket holding it (the last finite bound for +Inf); 0 with no samples.
pub fn p95_ms(counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let rank = (total as f64 * 0.95).ceil() as u64;
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            let bound = LATENCY_BUCKETS
                .get(i)
                .or(LATENCY_BUCKETS.last())
                .copied()
                .unwrap_or(0.0);
            return bound * 1000.0;
        }
    }
    LATENCY_BUCKETS.last().copied().unwrap_or(0.0) * 1000.0
}

/// utime + stime of this process, in clock ticks (`/proc/self/stat` fields 14 and 15).
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; the fields after its ')' are plain.
    let after = stat.rsplit_once(')')?.1;
    let mut fields = after.split_whitespace();
    // `after` starts at field 3 (state): utime is field 14 → index 11.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Resident memory in bytes (`VmRSS` of `/proc/self/status`).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p95_is_the_bound_of_its_bucket() {
        let mut counts = vec![0u64; LATENCY_BUCKETS.len() + 1];
        assert_eq!(p95_ms(&counts), 0.0);
        counts[0] = 94; // ≤ 0.1 ms
        counts[3] = 6; // ≤ 1 ms
        assert!((p95_ms(&counts) - 1.0).abs() < 1e-9);
        counts[0] = 96;
        counts[3] = 4;
        assert!((p95_ms(&counts) - 0.1).abs() < 1e-9);
        let last = counts.len() - 1;
        counts[last] = 1000; // +Inf → the last finite bound
        assert!((p95_ms(&counts) - 2500.0).abs() < 1e-9);
    }

    #[test]
    fn reads_own_cpu_and_rss() {
        assert!(cpu_ticks().is_some());
        assert!(rss_bytes() > 0);
    }
}
