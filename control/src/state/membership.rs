//! Node membership: who is in the ring, how each got there, when each was last heard from.
//!
//! Pure (no I/O, no clock: `now_ms` is an argument), so the join/expire/quarantine rules are
//! unit-tested without a server. The rules:
//! - a heartbeat from an unknown node plans an `AddNode` (the node joined *by heartbeat*);
//! - a heartbeat from a known node only refreshes its report: weight and state are the
//!   operator's (a heartbeat never changes them);
//! - a heartbeat-joined node silent longer than the grace leaves the ring;
//! - an operator-added node stays until the operator removes it (shown as "no heartbeat");
//! - a node the operator removed cannot re-join by heartbeat for the quarantine period, so an
//!   operator's removal is not undone one second later by the node's next heartbeat.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use rtc_protocol::control::Heartbeat;
use rtc_ring::{Diff, Node, NodeState, Ring};
use serde::{Deserialize, Serialize};

use crate::config::{MAX_RING_HISTORY, MAX_TOMBSTONES};
use crate::scaling::ScalingInputs;

/// How a node entered the ring (decides whether silence removes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Origin {
    /// Joined by its own heartbeat; removed when silent past the grace.
    Heartbeat,
    /// Added by an operator (`ring add`); stays until removed.
    Operator,
}

/// The last report a node sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeReport {
    /// Open client connections.
    pub active_conn: u64,
    /// Messages per second.
    pub mps: f64,
    /// p95 delivery latency, milliseconds.
    pub p95_latency_ms: f64,
    /// Messages queued.
    pub queue_depth: u64,
    /// CPU use (as the node reports it).
    pub cpu: f64,
    /// Resident memory, bytes.
    pub mem: u64,
    /// The node's clock when it sent the report (unix ms).
    pub ts: u64,
    /// The ring version the node runs.
    pub ring_version: u64,
    /// The node says it is draining itself (e.g. on SIGTERM). Shown, never applied: the
    /// ring state is the operator's.
    pub draining: bool,
}

impl NodeReport {
    /// The report part of a heartbeat.
    pub fn from_heartbeat(hb: &Heartbeat) -> Self {
        NodeReport {
            active_conn: hb.active_conn,
            mps: hb.mps,
            p95_latency_ms: hb.p95_latency_ms,
            queue_depth: hb.queue_depth,
            cpu: hb.cpu,
            mem: hb.mem,
            ts: hb.ts,
            ring_version: hb.ring_version,
            draining: hb.draining,
        }
    }
}

/// What control knows about one ring node besides the ring itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Liveness {
    /// How it joined.
    pub origin: Origin,
    /// When this instance last heard a heartbeat (unix ms); `None`: never.
    pub last_heartbeat_ms: Option<u64>,
    /// The silence clock of a heartbeat-joined node starts here (join or takeover time), so a
    /// freshly elected leader gives every node a full grace before expiring it.
    pub since_ms: u64,
    /// The last report.
    pub report: Option<NodeReport>,
}

/// One ring version, for the history view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RingEvent {
    /// The version this change produced.
    pub version: u64,
    /// When (unix ms).
    pub at_ms: u64,
    /// The change.
    pub diff: Diff,
    /// Who made it: `operator`, `heartbeat` (a node joined) or `expiry` (a node went silent).
    pub cause: String,
}

impl RingEvent {
    /// The event for a version made by `diffs`. A batch is one version; its last diff says
    /// what the version is about (a URL change is remove + add of the same node: the add
    /// shows the new URL).
    pub fn of(version: u64, diffs: &[Diff], cause: &str, at_ms: u64) -> Option<RingEvent> {
        diffs.last().map(|d| RingEvent {
            version,
            at_ms,
            diff: d.clone(),
            cause: cause.to_owned(),
        })
    }
}

/// What a heartbeat leads to.
#[derive(Debug, Clone, PartialEq)]
pub enum HeartbeatPlan {
    /// The node is in the ring: record the report.
    Known,
    /// A new node: apply this `AddNode`, then record the report.
    Join(Diff),
    /// A heartbeat-joined node now reports another public URL (e.g. a restarted pod with a
    /// new address): re-register it in one version. Its points are seeded by its id, so no
    /// key moves. Operator-added nodes keep the operator's URL.
    NewUrl(Vec<Diff>),
    /// The operator removed this node recently: refuse, change nothing.
    Quarantined {
        /// Until when (unix ms).
        until_ms: u64,
    },
}

/// Persisted with the ring so a restarted or newly elected control knows which nodes expire.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Origins {
    /// Ids of nodes that joined by heartbeat (every other ring node is operator-added).
    pub heartbeat_joined: Vec<String>,
}

/// The membership table (see the module doc for its rules).
#[derive(Debug)]
pub struct Membership {
    ring: Arc<Ring>,
    live: HashMap<String, Liveness>,
    tombstones: HashMap<String, u64>,
    history: VecDeque<RingEvent>,
    grace_ms: u64,
    quarantine_ms: u64,
}

impl Membership {
    /// A table for `ring` (loaded or new). Heartbeat-joined nodes get a full grace from `now_ms`.
    pub fn new(
        ring: Ring,
        origins: &Origins,
        grace_ms: u64,
        quarantine_ms: u64,
        now_ms: u64,
    ) -> Self {
        let mut live = HashMap::new();
        for n in ring.nodes() {
            let origin = if origins.heartbeat_joined.iter().any(|h| h == &n.id) {
                Origin::Heartbeat
            } else {
                Origin::Operator
            };
            live.insert(
                n.id.clone(),
                Liveness {
                    origin,
                    last_heartbeat_ms: None,
                    since_ms: now_ms,
                    report: None,
                },
            );
        }
        Membership {
            ring: Arc::new(ring),
            live,
            tombstones: HashMap::new(),
            history: VecDeque::new(),
            grace_ms,
            quarantine_ms,
        }
    }

    /// The current ring.
    pub fn ring(&self) -> &Arc<Ring> {
        &self.ring
    }

    /// Liveness of a ring node.
    pub fn liveness(&self, id: &str) -> Option<&Liveness> {
        self.live.get(id)
    }

    /// Recent ring versions, oldest first.
    pub fn history(&self) -> impl Iterator<Item = &RingEvent> {
        self.history.iter()
    }

    /// What to persist beside the ring.
    pub fn origins(&self) -> Origins {
        let mut heartbeat_joined: Vec<String> = self
            .live
            .iter()
            .filter(|(_, l)| l.origin == Origin::Heartbeat)
            .map(|(id, _)| id.clone())
            .collect();
        heartbeat_joined.sort();
        Origins { heartbeat_joined }
    }

    /// Whether a heartbeat-joined node has been silent past the grace (operator nodes never are).
    pub fn is_stale(&self, id: &str, now_ms: u64) -> bool {
        self.live.get(id).is_some_and(|l| {
            l.origin == Origin::Heartbeat
                && now_ms.saturating_sub(l.last_heartbeat_ms.unwrap_or(l.since_ms)) > self.grace_ms
        })
    }

    /// Whether a node was heard from within the grace.
    pub fn is_live(&self, id: &str, now_ms: u64) -> bool {
        self.live.get(id).is_some_and(|l| {
            l.last_heartbeat_ms
                .is_some_and(|t| now_ms.saturating_sub(t) <= self.grace_ms)
        })
    }

    /// Decides what a (validated) heartbeat does.
    pub fn plan_heartbeat(&self, hb: &Heartbeat, now_ms: u64) -> HeartbeatPlan {
        if let Some(n) = self.ring.node(&hb.node_id) {
            let joined_by_heartbeat = self
                .live
                .get(&n.id)
                .is_some_and(|l| l.origin == Origin::Heartbeat);
            if joined_by_heartbeat && !hb.public_ws_url.is_empty() && hb.public_ws_url != n.url {
                let moved = Node {
                    url: hb.public_ws_url.clone(),
                    ..n.clone()
                };
                return HeartbeatPlan::NewUrl(vec![
                    Diff::RemoveNode { id: n.id.clone() },
                    Diff::AddNode(moved),
                ]);
            }
            return HeartbeatPlan::Known;
        }
        if let Some(&until_ms) = self.tombstones.get(&hb.node_id) {
            if now_ms < until_ms {
                return HeartbeatPlan::Quarantined { until_ms };
            }
        }
        HeartbeatPlan::Join(Diff::AddNode(Node {
            id: hb.node_id.clone(),
            weight: hb.weight,
            url: hb.public_ws_url.clone(),
            state: NodeState::Active,
        }))
    }

    /// Stores a known node's report.
    pub fn record_heartbeat(&mut self, hb: &Heartbeat, now_ms: u64) {
        if let Some(l) = self.live.get_mut(&hb.node_id) {
            l.last_heartbeat_ms = Some(now_ms);
            l.report = Some(NodeReport::from_heartbeat(hb));
        }
    }

    /// Heartbeat-joined nodes silent past the grace, to remove.
    pub fn stale(&self, now_ms: u64) -> Vec<String> {
        let mut ids: Vec<String> = self
            .live
            .keys()
            .filter(|id| self.is_stale(id, now_ms))
            .cloned()
            .collect();
        ids.sort();
        ids
    }

    /// Installs `ring` (the result of applying `diffs`, one version) and updates the table: a
    /// new node gets `origin`; an operator removal leaves a tombstone.
    pub fn commit(&mut self, ring: Ring, diffs: &[Diff], origin: Origin, cause: &str, now_ms: u64) {
        for diff in diffs {
            match diff {
                Diff::AddNode(n) => {
                    self.tombstones.remove(&n.id);
                    self.live.insert(
                        n.id.clone(),
                        Liveness {
                            origin,
                            last_heartbeat_ms: None,
                            since_ms: now_ms,
                            report: None,
                        },
                    );
                }
                Diff::RemoveNode { id } => {
                    self.live.remove(id);
                    if origin == Origin::Operator {
                        self.tombstone(id, now_ms);
                    }
                }
                Diff::SetWeight { .. } | Diff::SetState { .. } => {}
            }
        }
        if let Some(e) = RingEvent::of(ring.version(), diffs, cause, now_ms) {
            if self.history.len() >= MAX_RING_HISTORY {
                self.history.pop_front();
            }
            self.history.push_back(e);
        }
        self.ring = Arc::new(ring);
    }

    /// Replaces the history with the stored one (oldest first, cut to `MAX_RING_HISTORY`).
    pub fn set_history(&mut self, events: Vec<RingEvent>) {
        let skip = events.len().saturating_sub(MAX_RING_HISTORY);
        self.history = events.into_iter().skip(skip).collect();
    }

    /// Replaces the ring with one loaded from the store (a follower catching up, a new leader).
    pub fn reload(&mut self, ring: Ring, origins: &Origins, now_ms: u64) {
        let fresh = Membership::new(ring, origins, self.grace_ms, self.quarantine_ms, now_ms);
        // Keep what we heard from nodes still in the ring; forget the rest.
        let mut live = fresh.live;
        for (id, l) in live.iter_mut() {
            if let Some(old) = self.live.get(id) {
                l.last_heartbeat_ms = old.last_heartbeat_ms;
                l.report = old.report.clone();
            }
        }
        self.live = live;
        self.ring = fresh.ring;
    }

    fn tombstone(&mut self, id: &str, now_ms: u64) {
        if self.quarantine_ms == 0 {
            return;
        }
        self.tombstones.retain(|_, until| *until > now_ms);
        if self.tombstones.len() >= MAX_TOMBSTONES {
            // Forget the one closest to expiry: bounded memory beats a perfect memory.
            if let Some(k) = self
                .tombstones
                .iter()
                .min_by_key(|(_, until)| **until)
                .map(|(k, _)| k.clone())
            {
                self.tombstones.remove(&k);
            }
        }
        self.tombstones
            .insert(id.to_owned(), now_ms.saturating_add(self.quarantine_ms));
    }

    /// The autoscaler's inputs from live, active nodes.
    pub fn scaling_inputs(&self, now_ms: u64) -> ScalingInputs {
        let mut total_conn = 0u64;
        let mut total_mps = 0.0;
        let mut lat_weighted = 0.0;
        let mut lat_sum = 0.0;
        let mut reporting = 0u32;
        let mut current = 0u32;
        for n in self.ring.nodes() {
            let Some(l) = self.live.get(&n.id) else {
                continue;
            };
            let live = self.is_live(&n.id, now_ms);
            // Operator nodes without heartbeats still count as capacity; stale ones do not.
            if n.state == NodeState::Active && (live || l.origin == Origin::Operator) {
                current += 1;
            }
            if !live {
                continue;
            }
            if let Some(r) = &l.report {
                total_conn = total_conn.saturating_add(r.active_conn);
                total_mps += r.mps.max(0.0);
                lat_weighted += r.p95_latency_ms.max(0.0) * r.active_conn as f64;
                lat_sum += r.p95_latency_ms.max(0.0);
                reporting += 1;
            }
        }
        // Connection-weighted mean: one sick node with few users should be drained, not make
        // the whole fleet grow. With no connections anywhere, the plain mean.
        let p95_ms = if total_conn > 0 {
            lat_weighted / total_conn as f64
        } else if reporting > 0 {
            lat_sum / f64::from(reporting)
        } else {
            0.0
        };
        ScalingInputs {
            total_conn,
            total_mps,
            p95_ms,
            current,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(id: &str, conn: u64, p95: f64) -> Heartbeat {
        Heartbeat {
            node_id: id.into(),
            active_conn: conn,
            mps: 10.0,
            p95_latency_ms: p95,
            queue_depth: 0,
            cpu: 0.1,
            mem: 1 << 20,
            ts: 1_000,
            public_ws_url: format!("ws://{id}.local/ws"),
            weight: 1,
            version: rtc_protocol::control::HEARTBEAT_VERSION,
            ring_version: 0,
            draining: false,
        }
    }

    fn table() -> Membership {
        Membership::new(Ring::new(10), &Origins::default(), 5_000, 60_000, 0)
    }

    fn apply(m: &mut Membership, d: Diff, origin: Origin, now: u64) {
        let r = m.ring().apply(&d).unwrap();
        m.commit(r, std::slice::from_ref(&d), origin, "test", now);
    }

    #[test]
    fn join_by_heartbeat_then_expire() {
        let mut m = table();
        let HeartbeatPlan::Join(d) = m.plan_heartbeat(&hb("a", 1, 1.0), 0) else {
            panic!("unknown node joins")
        };
        apply(&mut m, d, Origin::Heartbeat, 0);
        m.record_heartbeat(&hb("a", 1, 1.0), 0);
        assert_eq!(m.plan_heartbeat(&hb("a", 1, 1.0), 1), HeartbeatPlan::Known);
        assert!(m.stale(5_000).is_empty());
        assert_eq!(m.stale(5_001), ["a"]);
        assert_eq!(m.origins().heartbeat_joined, ["a"]);
        assert_eq!(m.history().count(), 1);
    }

    #[test]
    fn operator_nodes_never_expire_and_removal_quarantines() {
        let mut m = table();
        apply(
            &mut m,
            Diff::AddNode(Node::new("op", 2, "ws://op/ws")),
            Origin::Operator,
            0,
        );
        assert!(m.stale(1_000_000).is_empty());
        assert!(!m.is_live("op", 0));
        apply(
            &mut m,
            Diff::RemoveNode { id: "op".into() },
            Origin::Operator,
            10,
        );
        assert_eq!(
            m.plan_heartbeat(&hb("op", 0, 0.0), 20),
            HeartbeatPlan::Quarantined { until_ms: 60_010 }
        );
        assert!(matches!(
            m.plan_heartbeat(&hb("op", 0, 0.0), 60_010),
            HeartbeatPlan::Join(_)
        ));
    }

    #[test]
    fn a_heartbeat_node_with_a_new_url_is_re_registered_without_moving_keys() {
        let mut m = table();
        let HeartbeatPlan::Join(d) = m.plan_heartbeat(&hb("a", 0, 0.0), 0) else {
            panic!("joins")
        };
        apply(&mut m, d, Origin::Heartbeat, 0);
        let mut moved = hb("a", 0, 0.0);
        moved.public_ws_url = "ws://a.new/ws".into();
        let HeartbeatPlan::NewUrl(diffs) = m.plan_heartbeat(&moved, 1) else {
            panic!("url change planned")
        };
        let before = m.ring().clone();
        let r = m.ring().apply_all(&diffs).unwrap();
        m.commit(r, &diffs, Origin::Heartbeat, "url change", 1);
        assert_eq!(m.ring().version(), 2);
        assert_eq!(m.ring().node("a").unwrap().url, "ws://a.new/ws");
        assert_eq!(rtc_ring::moved_fraction(&before, m.ring()), 0.0);
        assert_eq!(m.liveness("a").unwrap().origin, Origin::Heartbeat);
        // An operator node keeps the operator's URL.
        apply(
            &mut m,
            Diff::AddNode(Node::new("op", 1, "ws://op/ws")),
            Origin::Operator,
            2,
        );
        let mut h = hb("op", 0, 0.0);
        h.public_ws_url = "ws://elsewhere/ws".into();
        assert_eq!(m.plan_heartbeat(&h, 3), HeartbeatPlan::Known);
    }

    #[test]
    fn heartbeat_never_changes_weight() {
        let mut m = table();
        apply(
            &mut m,
            Diff::AddNode(Node::new("a", 3, "ws://a/ws")),
            Origin::Operator,
            0,
        );
        let mut h = hb("a", 0, 0.0);
        h.weight = 9;
        assert_eq!(m.plan_heartbeat(&h, 1), HeartbeatPlan::Known);
        m.record_heartbeat(&h, 1);
        assert_eq!(m.ring().node("a").unwrap().weight, 3);
    }

    #[test]
    fn scaling_inputs_weight_latency_by_connections() {
        let mut m = table();
        for id in ["a", "b"] {
            apply(
                &mut m,
                Diff::AddNode(Node::new(id, 1, format!("ws://{id}/ws"))),
                Origin::Heartbeat,
                0,
            );
        }
        m.record_heartbeat(&hb("a", 900, 100.0), 0);
        m.record_heartbeat(&hb("b", 100, 1000.0), 0);
        let i = m.scaling_inputs(1);
        assert_eq!(i.total_conn, 1000);
        assert_eq!(i.current, 2);
        assert!((i.p95_ms - 190.0).abs() < 1e-9, "{}", i.p95_ms);
        assert!((i.total_mps - 20.0).abs() < 1e-9);
        // Both silent: nothing counts.
        assert_eq!(m.scaling_inputs(10_000).current, 0);
    }

    #[test]
    fn reload_keeps_reports_of_remaining_nodes() {
        let mut m = table();
        apply(
            &mut m,
            Diff::AddNode(Node::new("a", 1, "ws://a/ws")),
            Origin::Heartbeat,
            0,
        );
        m.record_heartbeat(&hb("a", 5, 1.0), 100);
        let r = m
            .ring()
            .apply(&Diff::AddNode(Node::new("b", 1, "ws://b/ws")))
            .unwrap();
        let origins = Origins {
            heartbeat_joined: vec!["a".into()],
        };
        m.reload(r, &origins, 200);
        assert_eq!(m.liveness("a").unwrap().last_heartbeat_ms, Some(100));
        assert_eq!(m.liveness("b").unwrap().origin, Origin::Operator);
    }
}
