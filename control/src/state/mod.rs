//! The control state: the ring, membership, scaling decisions, and the one path that changes
//! them.
//!
//! Every ring change goes through [`Control::change`]: apply the typed diff to the current
//! snapshot (refused changes leave everything as it was), persist the new version (fenced by
//! the leader lease when Redis is used), and only then publish it to readers and long-polls.
//! Persist-before-publish is what makes "never reuse a version" hold across a crash: no node
//! ever sees a version that is not stored.
//!
//! Layout: `membership.rs` (pure rules), `store.rs` (memory / Redis + lease), this file (the
//! async shell: locking, publishing, the background loops).

pub mod membership;
pub mod store;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rtc_protocol::control::Heartbeat;
use rtc_protocol::token::TokenKeys;
use rtc_ring::{Diff, Ring, RingError};
use tokio::sync::{watch, Mutex, Semaphore};

use crate::config::{Config, MAX_LONG_POLLS, MAX_SCALE_HISTORY};
use crate::events::EventSink;
use crate::metrics::{Gauges, Metrics};
use crate::scaling::{self, Decision, ScalingParams, ScalingState};
use membership::{HeartbeatPlan, Membership, Origin, Origins};
use store::{Persisted, Store, StoreError};

/// How often the leader expires silent nodes and considers a scaling decision.
pub const TICK: Duration = Duration::from_millis(500);
/// How often a follower checks the stored version (a node sees a change within 2 s).
pub const FOLLOW_POLL: Duration = Duration::from_millis(250);

/// Why a state operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The ring refused the change.
    #[error(transparent)]
    Ring(#[from] RingError),
    /// Input that is not acceptable (message says why).
    #[error("{0}")]
    BadInput(String),
    /// This instance is a follower; writes go to the leader.
    #[error("this control instance is not the leader")]
    NotLeader {
        /// The leader's advertised URL, when known.
        leader: Option<String>,
    },
    /// The store failed; nothing changed.
    #[error("state store: {0}")]
    Store(String),
    /// The Kafka event publisher could not start (`KAFKA_BROKERS`).
    #[error("kafka events: {0}")]
    Events(String),
}

/// Milliseconds since the Unix epoch (the shell's clock; the cores take it as an argument).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Scaling state and history.
#[derive(Debug, Default)]
struct Scaler {
    /// Whether any node has reported (a heartbeat) to this instance. Decisions wait for
    /// it: before the first report the formula would see an empty fleet ("current 0") and
    /// publish a meaningless scale-out. Operator-only rings (no heartbeats) get no decisions:
    /// there are no load figures to decide on.
    reported: bool,
    state: ScalingState,
    last: Option<Decision>,
    history: VecDeque<Decision>,
}

/// Everything behind the write lock.
#[derive(Debug)]
struct Inner {
    members: Membership,
    scaler: Scaler,
}

/// A read-only view for the API and dashboard.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    /// Node id.
    pub id: String,
    /// Weight.
    pub weight: u32,
    /// `active` / `draining`.
    pub state: rtc_ring::NodeState,
    /// Public WebSocket URL.
    pub url: String,
    /// Exact share of the key space (0..1).
    pub share: f64,
    /// `heartbeat` or `operator`.
    pub origin: Origin,
    /// `live`, `stale` (silent past the grace) or `no heartbeat` (never heard from).
    pub health: &'static str,
    /// Milliseconds since the last heartbeat.
    pub last_heartbeat_ago_ms: Option<u64>,
    /// The last report.
    pub report: Option<membership::NodeReport>,
}

/// The shared control state (one per process, behind an `Arc`).
#[derive(Debug)]
pub struct Control {
    /// Settings.
    pub cfg: Config,
    /// Counters.
    pub metrics: Metrics,
    scaling: ScalingParams,
    inner: Mutex<Inner>,
    ring_tx: watch::Sender<Arc<Ring>>,
    store: Store,
    leader: AtomicBool,
    leader_url: StdMutex<Option<String>>,
    /// Bounds concurrent long-polls.
    pub long_polls: Semaphore,
    /// App keys for `/v1/connect` (empty: open).
    pub api_keys: Vec<String>,
    /// Connect-token keys (`None`: no `RING_SECRET`, nodes run in no-token mode).
    pub token_keys: Option<TokenKeys>,
    /// Client for forwarding writes to the leader.
    pub http: reqwest::Client,
    /// This instance's URL as other instances reach it.
    pub advertise_url: String,
    /// Kafka events (`KAFKA_BROKERS`); published by the leader only.
    events: Option<EventSink>,
}

impl Control {
    /// Builds the state: loads the stored ring when Redis is configured.
    pub async fn start(
        cfg: Config,
        store: Store,
        advertise_url: String,
    ) -> Result<Arc<Control>, StateError> {
        let now = now_ms();
        let (ring, origins, history) = match &store {
            Store::Memory => (
                Ring::try_new(cfg.vnodes_per_weight)?,
                Origins::default(),
                Vec::new(),
            ),
            Store::Redis(r) => load_or_new(r, cfg.vnodes_per_weight).await?,
        };
        let mut members = Membership::new(
            ring,
            &origins,
            cfg.grace_ms(),
            cfg.rejoin_quarantine_sec.saturating_mul(1000),
            now,
        );
        members.set_history(history);
        let (ring_tx, _) = watch::channel(members.ring().clone());
        let leader = matches!(store, Store::Memory);
        let metrics = Metrics::default();
        let events = match &cfg.kafka_brokers {
            Some(b) if !b.trim().is_empty() => Some(
                EventSink::start(
                    b,
                    &cfg.kafka_topic_prefix,
                    cfg.event_queue,
                    metrics.events.clone(),
                )
                .map_err(|e| StateError::Events(e.to_string()))?,
            ),
            _ => None,
        };
        let token_keys = cfg.ring_secret.as_deref().map(|s| {
            TokenKeys::new(
                s.as_bytes(),
                cfg.ring_secret_previous.as_deref().map(str::as_bytes),
            )
        });
        Ok(Arc::new(Control {
            api_keys: cfg.api_keys(),
            token_keys,
            http: reqwest::Client::new(),
            advertise_url,
            scaling: cfg.scaling(),
            cfg,
            metrics,
            events,
            inner: Mutex::new(Inner {
                members,
                scaler: Scaler::default(),
            }),
            ring_tx,
            store,
            leader: AtomicBool::new(leader),
            leader_url: StdMutex::new(None),
            long_polls: Semaphore::new(MAX_LONG_POLLS),
        }))
    }

    /// The current ring (lock-free read).
    pub fn ring(&self) -> Arc<Ring> {
        self.ring_tx.borrow().clone()
    }

    /// A receiver that sees every published ring (for long-polls).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Ring>> {
        self.ring_tx.subscribe()
    }

    /// Whether this instance may write.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire)
    }

    /// The leader's URL as last seen (followers forward writes there).
    pub fn leader_url(&self) -> Option<String> {
        self.leader_url.lock().ok().and_then(|g| g.clone())
    }

    fn not_leader(&self) -> StateError {
        StateError::NotLeader {
            leader: self.leader_url(),
        }
    }

    /// Applies one operator diff (the `/v1/nodes` write endpoints).
    pub async fn change(&self, diff: Diff) -> Result<Arc<Ring>, StateError> {
        let mut inner = self.inner.lock().await;
        self.apply_locked(&mut inner, &diff, Origin::Operator, "operator")
            .await
    }

    async fn apply_locked(
        &self,
        inner: &mut Inner,
        diff: &Diff,
        origin: Origin,
        cause: &str,
    ) -> Result<Arc<Ring>, StateError> {
        self.apply_batch_locked(inner, std::slice::from_ref(diff), origin, cause)
            .await
    }

    /// Applies `diffs` as ONE new version: persist (fenced), then commit, then publish.
    async fn apply_batch_locked(
        &self,
        inner: &mut Inner,
        diffs: &[Diff],
        origin: Origin,
        cause: &str,
    ) -> Result<Arc<Ring>, StateError> {
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        let next = match diffs {
            [one] => inner.members.ring().apply(one)?,
            many => inner.members.ring().apply_all(many)?,
        };
        let now = now_ms();
        if let Store::Redis(r) = &self.store {
            // The origins as they will be after this change.
            let mut origins = inner.members.origins();
            for diff in diffs {
                match diff {
                    Diff::AddNode(n) if origin == Origin::Heartbeat => {
                        origins.heartbeat_joined.push(n.id.clone())
                    }
                    Diff::RemoveNode { id } => origins.heartbeat_joined.retain(|h| h != id),
                    _ => {}
                }
            }
            let p = Persisted {
                version: next.version(),
                ring: next.to_json(),
                origins,
                history: Vec::new(),
            };
            let event = membership::RingEvent::of(next.version(), diffs, cause, now);
            let saved = match &event {
                Some(e) => r.save(&p, e).await,
                None => Err(StoreError::Corrupt("empty change".to_owned())),
            };
            if let Err(e) = saved {
                return Err(self.store_failed(e));
            }
        }
        tracing::info!(version = next.version(), change = ?diffs, cause, "ring changed");
        inner.members.commit(next, diffs, origin, cause, now);
        let ring = inner.members.ring().clone();
        self.ring_tx.send_replace(ring.clone());
        if let Some(ev) = &self.events {
            ev.ring_changed(ring.version(), ring.nodes().len(), diffs, cause, now);
        }
        Ok(ring)
    }

    fn store_failed(&self, e: StoreError) -> StateError {
        match e {
            StoreError::NotLeader | StoreError::StaleVersion { .. } => {
                // Someone else leads now: stop acting; the follow loop catches up.
                tracing::warn!(error = %e, "lost leadership while writing; stepping down");
                self.leader.store(false, Ordering::Release);
                self.not_leader()
            }
            other => StateError::Store(other.to_string()),
        }
    }

    /// Handles one heartbeat (validated by the caller for shape; checked here for meaning).
    pub async fn heartbeat(&self, hb: &Heartbeat) -> Result<(bool, u64), StateError> {
        let now = now_ms();
        if hb.ts > now.saturating_add(self.cfg.max_clock_skew_ms) {
            return Err(StateError::BadInput(format!(
                "heartbeat ts {} is {} ms ahead of control's clock (allowed {} ms)",
                hb.ts,
                hb.ts - now,
                self.cfg.max_clock_skew_ms
            )));
        }
        if hb.weight == 0 {
            return Err(StateError::Ring(RingError::ZeroWeight(hb.node_id.clone())));
        }
        for (name, v) in [
            ("mps", hb.mps),
            ("p95LatencyMs", hb.p95_latency_ms),
            ("cpu", hb.cpu),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(StateError::BadInput(format!(
                    "{name} must be a finite number ≥ 0"
                )));
            }
        }
        let mut inner = self.inner.lock().await;
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        match inner.members.plan_heartbeat(hb, now) {
            HeartbeatPlan::Known => {}
            HeartbeatPlan::Join(diff) => {
                self.apply_locked(&mut inner, &diff, Origin::Heartbeat, "heartbeat")
                    .await?;
                tracing::info!(node = %hb.node_id, url = %hb.public_ws_url, "node joined by heartbeat");
            }
            HeartbeatPlan::NewUrl(diffs) => {
                self.apply_batch_locked(&mut inner, &diffs, Origin::Heartbeat, "url change")
                    .await?;
                tracing::info!(node = %hb.node_id, url = %hb.public_ws_url, "node moved to a new public URL");
            }
            HeartbeatPlan::Quarantined { until_ms } => {
                tracing::debug!(node = %hb.node_id, until_ms, "heartbeat from a removed node refused");
                return Ok((false, inner.members.ring().version()));
            }
        }
        inner.members.record_heartbeat(hb, now);
        inner.scaler.reported = true;
        Ok((true, inner.members.ring().version()))
    }

    /// Leader duty, every [`TICK`]: expire silent nodes, maybe decide on scaling.
    pub async fn tick(&self) {
        if !self.is_leader() {
            return;
        }
        let now = now_ms();
        let mut inner = self.inner.lock().await;
        for id in inner.members.stale(now) {
            let diff = Diff::RemoveNode { id: id.clone() };
            match self
                .apply_locked(&mut inner, &diff, Origin::Heartbeat, "expiry")
                .await
            {
                Ok(r) => {
                    self.metrics.nodes_expired.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(node = %id, version = r.version(), grace_sec = self.cfg.heartbeat_grace_sec,
                        "node silent past the heartbeat grace: removed from the ring");
                }
                Err(e) => {
                    tracing::warn!(node = %id, error = %e, "could not remove a silent node");
                    return;
                }
            }
        }
        if !inner.scaler.reported {
            return;
        }
        let inputs = inner.members.scaling_inputs(now);
        let Inner { scaler, .. } = &mut *inner;
        if let Some(d) = scaling::decide(&self.scaling, &mut scaler.state, inputs, now) {
            self.metrics.decision(d.kind);
            if let Some(ev) = &self.events {
                ev.decided(&d);
            }
            if scaler.last.as_ref().map(|l| (l.kind, l.desired)) != Some((d.kind, d.desired)) {
                tracing::info!(decision = d.kind.as_str(), desired = d.desired, reason = %d.reason, "scaling decision");
            }
            if scaler.history.len() >= MAX_SCALE_HISTORY {
                scaler.history.pop_front();
            }
            scaler.history.push_back(d.clone());
            scaler.last = Some(d);
        }
    }

    /// The current decision and recent ones (oldest first).
    pub async fn scale(&self) -> (Option<Decision>, Vec<Decision>) {
        let inner = self.inner.lock().await;
        (
            inner.scaler.last.clone(),
            inner.scaler.history.iter().cloned().collect(),
        )
    }

    /// The scaling parameters in force.
    pub fn scaling_params(&self) -> &ScalingParams {
        &self.scaling
    }

    /// Current inputs of the formula (what the next decision would use).
    pub async fn scaling_inputs(&self) -> scaling::ScalingInputs {
        self.inner.lock().await.members.scaling_inputs(now_ms())
    }

    /// Nodes with their shares and liveness.
    pub async fn nodes(&self) -> (u64, Vec<NodeView>) {
        let now = now_ms();
        let inner = self.inner.lock().await;
        let ring = inner.members.ring().clone();
        let shares = ring.shares();
        let views = ring
            .nodes()
            .iter()
            .map(|n| {
                let l = inner.members.liveness(&n.id);
                let last = l.and_then(|l| l.last_heartbeat_ms);
                let health = match last {
                    None => "no heartbeat",
                    Some(_) if inner.members.is_live(&n.id, now) => "live",
                    Some(_) => "stale",
                };
                NodeView {
                    id: n.id.clone(),
                    weight: n.weight,
                    state: n.state,
                    url: n.url.clone(),
                    share: shares
                        .iter()
                        .find(|(id, _)| id == &n.id)
                        .map_or(0.0, |(_, s)| *s),
                    origin: l.map_or(Origin::Operator, |l| l.origin),
                    health,
                    last_heartbeat_ago_ms: last.map(|t| now.saturating_sub(t)),
                    report: l.and_then(|l| l.report.clone()),
                }
            })
            .collect();
        (ring.version(), views)
    }

    /// Recent ring versions.
    pub async fn history(&self) -> Vec<membership::RingEvent> {
        self.inner.lock().await.members.history().cloned().collect()
    }

    /// Values for `/metrics`.
    pub async fn gauges(&self) -> Gauges {
        let ring = self.ring();
        let desired = self
            .inner
            .lock()
            .await
            .scaler
            .last
            .as_ref()
            .map_or(0, |d| u64::from(d.desired));
        Gauges {
            ring_nodes: ring.nodes().len() as u64,
            ring_vnodes: ring.point_count() as u64,
            ring_version: ring.version(),
            desired_replicas: desired,
            is_leader: self.is_leader(),
        }
    }

    /// Runs the background loops until the process ends.
    pub fn spawn_loops(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut t = tokio::time::interval(TICK);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                t.tick().await;
                me.tick().await;
            }
        });
        if let Store::Redis(r) = &self.store {
            let me = self.clone();
            let r = r.clone();
            tokio::spawn(async move { me.lease_loop(r).await });
        }
    }

    /// Holds or seeks the lease; as a follower, keeps the ring in step with the store.
    async fn lease_loop(self: Arc<Self>, r: store::RedisStore) {
        let renew_every = self.cfg.lease_ttl() / 3;
        let mut last_renew: Option<tokio::time::Instant> = None;
        loop {
            if last_renew.is_none_or(|t| t.elapsed() >= renew_every) {
                last_renew = Some(tokio::time::Instant::now());
                let was = self.is_leader();
                match r.acquire().await {
                    Ok(true) if !was => {
                        // Take over: read the newest stored ring under the lock before acting.
                        let mut inner = self.inner.lock().await;
                        match r.load().await {
                            Ok(p) => {
                                if let Some(p) = p {
                                    if let Err(e) = self.install(&mut inner, &p) {
                                        tracing::error!(error = %e, "stored ring does not load; not taking over");
                                        continue;
                                    }
                                }
                                self.leader.store(true, Ordering::Release);
                                tracing::info!(
                                    version = inner.members.ring().version(),
                                    "leader lease acquired: this instance acts"
                                );
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "lease acquired but state unreadable; retrying")
                            }
                        }
                    }
                    Ok(true) => {}
                    Ok(false) => {
                        if was {
                            tracing::warn!(
                                "leader lease lost: this instance now only answers reads"
                            );
                            self.leader.store(false, Ordering::Release);
                        }
                    }
                    Err(e) => {
                        if was {
                            tracing::warn!(error = %e, "cannot renew the leader lease: stepping down");
                            self.leader.store(false, Ordering::Release);
                        }
                    }
                }
                if let Ok(url) = r.leader_url().await {
                    if let Ok(mut g) = self.leader_url.lock() {
                        *g = url;
                    }
                }
            }
            if !self.is_leader() {
                self.follow(&r).await;
            }
            tokio::time::sleep(FOLLOW_POLL).await;
        }
    }

    async fn follow(&self, r: &store::RedisStore) {
        let Ok(Some(stored)) = r.version().await else {
            return;
        };
        if stored <= self.ring().version() {
            return;
        }
        let mut inner = self.inner.lock().await;
        if let Ok(Some(p)) = r.load().await {
            if let Err(e) = self.install(&mut inner, &p) {
                tracing::warn!(error = %e, "stored ring does not load");
            }
        }
    }

    fn install(&self, inner: &mut Inner, p: &Persisted) -> Result<(), StateError> {
        let ring = Ring::from_json(&p.ring)?;
        if ring.version() < inner.members.ring().version() {
            return Ok(());
        }
        inner.members.reload(ring, &p.origins, now_ms());
        inner.members.set_history(p.history.clone());
        self.ring_tx.send_replace(inner.members.ring().clone());
        Ok(())
    }

    /// Clean shutdown: hand the lease over at once instead of after the TTL.
    pub async fn shutdown(&self) {
        if let Store::Redis(r) = &self.store {
            if self.is_leader() {
                self.leader.store(false, Ordering::Release);
                let _ = r.release().await;
            }
        }
    }
}

async fn load_or_new(
    r: &store::RedisStore,
    vnodes: u32,
) -> Result<(Ring, Origins, Vec<membership::RingEvent>), StateError> {
    match r
        .load()
        .await
        .map_err(|e| StateError::Store(e.to_string()))?
    {
        Some(p) => Ok((Ring::from_json(&p.ring)?, p.origins, p.history)),
        None => Ok((Ring::try_new(vnodes)?, Origins::default(), Vec::new())),
    }
}
