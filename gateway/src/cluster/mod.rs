//! Cluster membership and placement: how a node started with `--control URL`
//! (`LOAD_BALANCER_URL`, alias `CONTROL_URL`) joins control's ring, follows its versions, and
//! serves only the users it owns.
//!
//! - **Membership.** A heartbeat thread (not a shard: it blocks on HTTP) posts the node's real
//!   figures to `POST /v1/nodes/heartbeat` every `HEARTBEAT_INTERVAL_SEC` (default 2,
//!   fractions allowed): open connections, messages/s, p95 latency (from the latency
//!   histogram's recent buckets), queue depth, CPU (`/proc/self/stat` deltas), RSS
//!   (`VmRSS`), its public URL, `NODE_WEIGHT`, the ring version it serves under and whether
//!   it drains. The first heartbeat joins the node (control adds unknown nodes).
//! - **Ring versions.** After the first heartbeat a follower thread long-polls
//!   `GET /v1/ring?since=V&wait=S` and hands each newer snapshot to every shard's
//!   [`Mailbox`] (each shard gets its own copy). A shard looks at its mailbox every
//!   [`placement::RING_CHECK_INTERVAL`] — one atomic load — and swaps its ring whole; nothing
//!   on the message path takes a lock. An older version is applied only when control repeats
//!   it (a control that lost its state and started counting again). The heartbeat answer
//!   carries control's version: when two answers in a row disagree with the applied one
//!   (a long-poll still waiting on a restarted control, say), the heartbeat thread fetches
//!   the ring itself and offers it to the same rule.
//! - **Placement.** A new handshake for a user whose `ring.owner(user)` is another node is
//!   upgraded, sent `redirect {wsUrl}` (the owner's URL with a fresh connect token when
//!   `RING_SECRET` is set, else `?userId=`) and closed 4003. A connect token naming another
//!   node gets the same redirect. With no ring yet (or standalone) every user is served.
//! - **Rebalance.** When a new ring moves connected users away, the shard keeps serving them
//!   while it drains them, paced at its share of `DRAIN_RATE`: `drain {reason: "rebalance",
//!   resumeToken}` then close 4007; they reconnect through control to their new owner. Users
//!   a later ring gives back are no longer drained. A ring without this node (an operator
//!   removed it) moves every user away. See `LIFECYCLE.md`.
//! - **SIGTERM.** A clustered node first asks control to drain it
//!   (`POST /v1/nodes/{id}/drain`, `ADMIN_TOKEN` as bearer) so placement stops sending users
//!   here, then drains as a standalone node does (`drain.rs`).
//!
//! The data path uses this ring too: with `REDIS_URL` the Redis log is the commit point
//! (`shard/datapath.rs`), and with `KAFKA_BROKERS` a committed message whose recipient the
//! ring places on another node is relayed there (`shard/relaypath.rs`, which reads the
//! shard's ring through [`ShardRing::with_ring`]). See `LIFECYCLE.md`.
//!
//! # Layout
//! - this file — [`Membership`] (the node-wide part: per-shard mailboxes, the version each
//!   shard serves under, the version gate, heartbeat counters), [`start`], [`on_sigterm`], [`render_metrics`].
//! - `client.rs` — the small blocking HTTP/1.1 client for control's JSON API.
//! - `heartbeat.rs` — the heartbeat thread and the figures it reports ([`heartbeat::Sampler`]).
//! - `follow.rs` — the ring long-poll thread and its version rule ([`follow::VersionGate`]).
//! - `placement.rs` — the per-shard ring ([`placement::ShardRing`]): admission decisions,
//!   redirect URLs, the swap and the paced rebalance drain.
//! - `redirect.rs` — answering a redirected handshake (101, `redirect`, close 4003).

pub mod client;
pub mod follow;
pub mod heartbeat;
pub mod placement;
pub mod redirect;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::bail;
use rtc_ring::Ring;

use crate::config::Config;
use crate::metrics::names;
use crate::shard::Node;
use client::ControlClient;

pub use placement::{Admission, ShardRing};

/// Default `HEARTBEAT_INTERVAL_SEC`.
pub const DEFAULT_HEARTBEAT_INTERVAL_SEC: f64 = 2.0;
/// Shortest heartbeat interval accepted (tests use 0.5 s).
pub const MIN_HEARTBEAT_INTERVAL_SEC: f64 = 0.05;
/// Longest heartbeat interval accepted.
pub const MAX_HEARTBEAT_INTERVAL_SEC: f64 = 300.0;
/// How long the SIGTERM drain request to control may take before the node drains anyway.
pub const SIGTERM_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// Checks the cluster knobs (called from `Config::validate`).
pub fn validate(c: &Config) -> anyhow::Result<()> {
    if !c.control_url.is_empty() {
        if let Err(e) = ControlClient::new(&c.control_url) {
            bail!("LOAD_BALANCER_URL: {e}");
        }
    }
    if !(MIN_HEARTBEAT_INTERVAL_SEC..=MAX_HEARTBEAT_INTERVAL_SEC)
        .contains(&c.heartbeat_interval_sec)
    {
        bail!(
            "HEARTBEAT_INTERVAL_SEC must be in {MIN_HEARTBEAT_INTERVAL_SEC}..={MAX_HEARTBEAT_INTERVAL_SEC}"
        );
    }
    if c.node_weight == 0 || c.node_weight > rtc_ring::MAX_WEIGHT {
        bail!("NODE_WEIGHT must be in 1..={}", rtc_ring::MAX_WEIGHT);
    }
    Ok(())
}

/// One shard's inbox for ring snapshots: the follower thread drops the newest copy in, the
/// shard takes it on its next check. `seq` changes with every delivery so the shard's check is
/// a single atomic load; the mutex is touched only when there is something to take, never on
/// the message path. Holds at most one ring: a newer delivery replaces an untaken one.
#[derive(Debug, Default)]
pub struct Mailbox {
    /// Bumped after each delivery.
    seq: AtomicU64,
    /// The undelivered snapshot, if any.
    slot: Mutex<Option<Ring>>,
}

impl Mailbox {
    /// Puts `ring` in (replacing one not yet taken).
    pub fn deliver(&self, ring: Ring) {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        *slot = Some(ring);
        drop(slot);
        self.seq.fetch_add(1, Ordering::Release);
    }

    /// The delivery counter (compare with the last one seen).
    pub fn seq(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    /// Takes the snapshot waiting, if any.
    pub fn take(&self) -> Option<Ring> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// The node-wide part of cluster membership (in [`Node`]).
#[derive(Debug)]
pub struct Membership {
    /// Control's client, `None` when standalone.
    pub control: Option<ControlClient>,
    /// One mailbox per shard, index = shard id.
    pub mailboxes: Vec<Mailbox>,
    /// The version each shard has swapped in, index = shard id (0 = none yet).
    pub shard_versions: Vec<AtomicU64>,
    /// Heartbeats control accepted.
    pub heartbeats_sent: AtomicU64,
    /// Heartbeats control refused (`accepted: false`, or a 4xx).
    pub heartbeats_refused: AtomicU64,
    /// Heartbeats that did not reach control (connect, timeout, 5xx).
    pub heartbeats_failed: AtomicU64,
    /// The version rule, shared by the follower and the heartbeat thread's safety net (two
    /// threads off the shards; never touched on the message path).
    gate: Mutex<follow::VersionGate>,
}

impl Membership {
    /// Membership for `shards` shards; standalone when `CONTROL_URL` is empty.
    pub fn new(config: &Config, shards: usize) -> Self {
        let control = (!config.control_url.is_empty())
            .then(|| ControlClient::new(&config.control_url).ok())
            .flatten();
        Self {
            control,
            mailboxes: (0..shards).map(|_| Mailbox::default()).collect(),
            shard_versions: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            heartbeats_sent: AtomicU64::new(0),
            heartbeats_refused: AtomicU64::new(0),
            heartbeats_failed: AtomicU64::new(0),
            gate: Mutex::new(follow::VersionGate::default()),
        }
    }

    /// Whether this node is part of a cluster.
    pub fn clustered(&self) -> bool {
        self.control.is_some()
    }

    /// The ring version the node serves under: the one every shard has swapped in (the
    /// lowest shard version while a swap is under way).
    pub fn serving_version(&self) -> u64 {
        self.shard_versions
            .iter()
            .map(|v| v.load(Ordering::Acquire))
            .min()
            .unwrap_or(0)
    }

    /// The applied version and whether an older one waits for confirmation.
    pub fn gate_state(&self) -> (Option<u64>, bool) {
        let g = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        (g.applied(), g.confirming())
    }

    /// Judges a snapshot fetched from control by the version rule ([`follow::VersionGate`])
    /// and hands it to the shards when it is to be applied.
    pub fn offer(&self, ring: Ring, node_id: &str) -> follow::Verdict {
        // Held while publishing so two fetchers cannot publish out of order.
        let mut gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        let verdict = gate.offer(ring.version());
        match verdict {
            follow::Verdict::Apply => {
                tracing::info!(
                    version = ring.version(),
                    nodes = ring.nodes().len(),
                    this_node = ?ring.node(node_id).map(|n| n.state),
                    "ring applied"
                );
                self.publish(&ring);
            }
            follow::Verdict::Skip => {}
            follow::Verdict::Confirm => tracing::warn!(
                offered = ring.version(),
                applied = ?gate.applied(),
                "control offers an older ring version; applying it only if repeated"
            ),
        }
        verdict
    }

    /// Hands `ring` to every shard (each its own copy; they record the version they swap in).
    pub fn publish(&self, ring: &Ring) {
        for m in &self.mailboxes {
            m.deliver(ring.clone());
        }
    }
}

/// Starts the heartbeat thread (which starts the ring follower after its first beat).
/// Does nothing on a standalone node.
pub fn start(node: &Arc<Node>) -> anyhow::Result<()> {
    if !node.cluster.clustered() {
        return Ok(());
    }
    let n = node.clone();
    std::thread::Builder::new()
        .name("heartbeat".into())
        .spawn(move || heartbeat::run(&n))
        .map_err(|e| anyhow::anyhow!("starting the heartbeat thread: {e}"))?;
    tracing::info!(control = %node.config.control_url, "joining the cluster");
    Ok(())
}

/// At SIGTERM, before the local drain: asks control to drain this node so placement stops
/// sending users here and the ring moves its keys away. Failure is logged, not fatal: the
/// node drains anyway (control expires it once heartbeats stop).
pub fn on_sigterm(node: &Node) {
    let Some(control) = &node.cluster.control else {
        return;
    };
    let path = format!("/v1/nodes/{}/drain", node.config.node_id);
    let token = Some(node.config.admin_token.as_str()).filter(|t| !t.is_empty());
    match control.post(&path, None, token, SIGTERM_REQUEST_TIMEOUT) {
        Ok(_) => tracing::info!("control marked this node draining"),
        Err(e) => tracing::warn!(error = %e, "asking control to drain this node failed"),
    }
}

/// Appends the node-level cluster metrics (ring version, heartbeats) to a `/metrics` answer.
pub fn render_metrics(node: &Node, out: &mut String) {
    let m = &node.cluster;
    let _ = writeln!(
        out,
        "# HELP {0} Ring version every shard of this node places users under (0 = none).\n# TYPE {0} gauge\n{0} {1}",
        names::RING_VERSION,
        m.serving_version()
    );
    let _ = writeln!(
        out,
        "# HELP {0} Heartbeats to control by result.\n# TYPE {0} counter",
        names::HEARTBEATS_TOTAL
    );
    for (result, v) in [
        ("sent", &m.heartbeats_sent),
        ("refused", &m.heartbeats_refused),
        ("failed", &m.heartbeats_failed),
    ] {
        let _ = writeln!(
            out,
            "{}{{result=\"{result}\"}} {}",
            names::HEARTBEATS_TOTAL,
            v.load(Ordering::Relaxed)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailbox_keeps_only_the_newest() {
        let m = Mailbox::default();
        assert_eq!(m.seq(), 0);
        assert!(m.take().is_none());
        let r1 = Ring::new(10)
            .apply(&rtc_ring::Diff::AddNode(rtc_ring::Node::new(
                "a",
                1,
                "ws://a/ws",
            )))
            .expect("add");
        let r2 = r1
            .apply(&rtc_ring::Diff::AddNode(rtc_ring::Node::new(
                "b",
                1,
                "ws://b/ws",
            )))
            .expect("add");
        m.deliver(r1);
        m.deliver(r2);
        assert_eq!(m.seq(), 2);
        assert_eq!(m.take().map(|r| r.version()), Some(2));
        assert!(m.take().is_none());
    }

    #[test]
    fn cluster_knobs_validate() {
        let mut c = Config {
            control_url: "http://127.0.0.1:8081".into(),
            heartbeat_interval_sec: 0.5,
            ..Config::default()
        };
        c.validate().expect("valid");
        c.heartbeat_interval_sec = 0.0;
        assert!(c.validate().is_err());
        c.heartbeat_interval_sec = 2.0;
        c.control_url = "ftp://x".into();
        assert!(c.validate().is_err());
        c.control_url.clear();
        c.node_weight = 0;
        assert!(c.validate().is_err());
    }
}
