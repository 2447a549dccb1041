//! One shard: a pinned glommio executor that owns a SO_REUSEPORT listener, the connections of
//! the users whose home it is, their session state, and its end of the shard mesh.
//!
//! # Layout
//! - `mesh.rs` — the SPSC rings between shards ([`mesh::Mesh`], [`mesh::Inbox`],
//!   [`mesh::RING_CAPACITY`]).
//! - `msg.rs` — [`msg::ShardMsg`], what travels on those rings (hand-offs, commits, `sent`).
//! - `messaging.rs` — attach, client frames, routing to the recipient's home shard, `sent`.
//! - `datapath.rs` — the same with `REDIS_URL`: Redis is the commit point, the session core
//!   a cache; replay from Redis at attach, acks and session records in Redis.
//! - `relaypath.rs` — with `KAFKA_BROKERS` too: committed messages for users owned by another
//!   node go through Kafka to it; holes and relay losses are filled from Redis.
//! - `analytics.rs` — connect/disconnect analytics events to Kafka (best effort, counted).
//! - this file — [`Node`] (the little the shards share: config, drain flag, admission
//!   limits, published metrics), [`Shard`] (per-core state) and [`run`], the shard's life:
//!   listen, connect the mesh, then accept, route, sweep, publish metrics and drain.

pub mod analytics;
pub mod datapath;
pub mod mesh;
pub mod messaging;
pub mod msg;
pub mod relaypath;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use glommio::net::TcpListener;
use glommio::timer::sleep;

use crate::config::Config;
use crate::conn::ConnShared;
use crate::http::limits::{HandshakeRate, PerIpLimit};
use crate::metrics::{Counter, Gauge, Published, ShardMetrics, PUBLISH_INTERVAL};
use mesh::{Mesh, MeshPlan};
use messaging::SessionGlue;
use msg::ShardMsg;
use rtc_protocol::close;

/// Size of each shard's read scratch buffer: every connection of the shard reads into it.
pub const READ_SCRATCH_BYTES: usize = 64 * 1024;
/// How often the shard sweeps its connections for pings and idle timeouts.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(500);
/// A connection that sent its close frame is dropped if the peer has not closed by then.
pub const CLOSE_GRACE: Duration = Duration::from_secs(3);

/// What every shard shares: read-only configuration plus a few atomics off the message path.
#[derive(Debug)]
pub struct Node {
    /// The configuration.
    pub config: Config,
    /// The bound listen address (port resolved).
    pub bound: SocketAddr,
    /// `ws://…` URL of this node.
    pub public_url: String,
    /// Number of shards.
    pub shards: usize,
    /// Set by SIGTERM: readiness false, new handshakes refused, clients drained.
    pub draining: AtomicBool,
    /// Unix milliseconds at which the drain ends (0 = not draining).
    pub drain_deadline_ms: AtomicU64,
    /// Open WebSocket connections on the whole node (the drain waits for 0).
    pub live: AtomicUsize,
    /// Node-wide handshake rate.
    pub rate: HandshakeRate,
    /// Open connections per client IP.
    pub per_ip: PerIpLimit,
    /// Each shard's published metrics, index = shard id.
    pub published: Vec<Arc<Published>>,
    /// Monotonic origin of the shards' clocks.
    pub started: Instant,
    /// Token keys (connect and resume tokens).
    pub keys: rtc_protocol::token::TokenKeys,
    /// Cluster membership: control's client, the shards' ring mailboxes (`cluster/`).
    pub cluster: crate::cluster::Membership,
    /// The store's health (`REDIS_URL` set): `/readyz` and handshakes look at it.
    pub store_health: Option<crate::store::StoreHealth>,
    /// The relay's per-shard ends (`KAFKA_BROKERS`), each taken by its shard at start.
    pub relay_plan: Option<crate::relay::RelayPlan>,
    /// The relay's counters (`KAFKA_BROKERS`), rendered on `/metrics`.
    pub relay_counters: Option<Arc<crate::relay::RelayCounters>>,
    /// Each shard's store handle until the shard takes it, index = shard id.
    pub store_handles: std::sync::Mutex<Vec<Option<crate::store::StoreHandle>>>,
}

impl Node {
    /// The shared state for `shards` shards listening on `bound`.
    pub fn new(config: Config, bound: SocketAddr, shards: usize) -> Self {
        let secret = if config.ring_secret.is_empty() {
            random_secret()
        } else {
            config.ring_secret.clone().into_bytes()
        };
        let previous = (!config.ring_secret_previous.is_empty())
            .then(|| config.ring_secret_previous.as_bytes().to_vec());
        let keys = rtc_protocol::token::TokenKeys::new(&secret, previous.as_deref());
        Self {
            public_url: config.public_url(bound),
            rate: HandshakeRate::new(config.handshake_rate_limit),
            per_ip: PerIpLimit::new(config.max_conn_per_ip),
            published: (0..shards)
                .map(|_| Arc::new(Published::default()))
                .collect(),
            draining: AtomicBool::new(false),
            drain_deadline_ms: AtomicU64::new(0),
            live: AtomicUsize::new(0),
            started: Instant::now(),
            cluster: crate::cluster::Membership::new(&config, shards),
            store_health: None,
            relay_plan: None,
            relay_counters: None,
            store_handles: std::sync::Mutex::new(Vec::new()),
            bound,
            shards,
            keys,
            config,
        }
    }

    /// Starts the drain (idempotent).
    pub fn start_drain(&self) {
        let deadline = unix_ms() + self.config.drain_timeout_sec * 1000;
        self.drain_deadline_ms.store(deadline, Ordering::Release);
        self.draining.store(true, Ordering::Release);
    }

    /// Shard `id`'s store handle (once).
    pub fn take_store_handle(&self, id: usize) -> Option<crate::store::StoreHandle> {
        let mut handles = self.store_handles.lock().ok()?;
        handles.get_mut(id).and_then(Option::take)
    }

    /// False when a store is configured and Redis is not reachable.
    pub fn store_ready(&self) -> bool {
        self.store_health.as_ref().is_none_or(|h| h.is_healthy())
    }

    /// Whether the node is draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Nanoseconds since the node started (monotonic).
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Wall-clock unix milliseconds (message timestamps, token expiry).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A per-process random secret when `RING_SECRET` is not set: tokens from this process are
/// then only valid for this process. Drawn from the kernel (`/dev/urandom`).
fn random_secret() -> Vec<u8> {
    use std::io::Read;
    let mut buf = vec![0u8; 32];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_err()
    {
        // Fall back to time-derived bytes: still unguessable enough for a local dev node.
        let t = unix_ms() ^ u64::from(std::process::id());
        buf[..8].copy_from_slice(&t.to_le_bytes());
    }
    buf
}

/// Per-core state. Only this shard's thread touches it, so plain `Cell`/`RefCell` suffice.
#[derive(Debug)]
pub struct Shard {
    /// Shard index.
    pub id: usize,
    /// Shared node state.
    pub node: Arc<Node>,
    /// Rings to the other shards.
    pub mesh: Mesh<ShardMsg>,
    /// This shard's counters.
    pub metrics: ShardMetrics,
    /// The read scratch buffer every connection of the shard reads into.
    pub read_buf: RefCell<Box<[u8]>>,
    /// Open connections by id (sweeps, drain, closes asked by the session core).
    pub conns: RefCell<HashMap<u64, Rc<ConnShared>>>,
    /// Next connection id (shard id in the top bits: ids are node-unique).
    next_conn: Cell<u64>,
    /// Seconds since node start, refreshed by the sweep (cheap clock for idle checks).
    pub clock_s: Cell<u32>,
    /// The session core and the glue that drives it.
    pub session: SessionGlue,
    /// This shard's copy of the ring: admission, redirects, rebalance (`cluster/`).
    pub placement: crate::cluster::ShardRing,
    /// The shared store (`REDIS_URL`): the commit point when set (`datapath.rs`).
    pub store: Option<Rc<datapath::StoreLink>>,
    /// The cross-node relay (`KAFKA_BROKERS`, `relaypath.rs`).
    pub relay: Option<crate::relay::RelayShard>,
}

impl Shard {
    /// A node-unique connection id.
    pub fn next_conn_id(&self) -> u64 {
        let n = self.next_conn.get();
        self.next_conn.set(n + 1);
        ((self.id as u64) << 48) | n
    }

    /// Registers an open connection.
    pub fn register(&self, conn: Rc<ConnShared>) {
        self.conns.borrow_mut().insert(conn.id, conn);
        self.metrics.gauge_add(Gauge::ActiveConnections, 1);
        self.node.live.fetch_add(1, Ordering::AcqRel);
    }

    /// Unregisters a closed connection.
    pub fn unregister(&self, id: u64) {
        if self.conns.borrow_mut().remove(&id).is_some() {
            self.metrics.gauge_add(Gauge::ActiveConnections, -1);
            self.node.live.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Asks connection `id` to close with `code` (after what is already queued).
    pub fn close_conn(&self, id: u64, code: close::CloseCode) {
        let conn = self.conns.borrow().get(&id).cloned();
        if let Some(c) = conn {
            c.request_close(code);
        }
    }

    /// Wakes connection `id`'s task (something was queued for it).
    pub fn wake_conn(&self, id: u64) {
        if let Some(c) = self.conns.borrow().get(&id) {
            c.wake();
        }
    }

    /// Monotonic "now" in milliseconds since node start (session core clock).
    pub fn now_ms(&self) -> u64 {
        self.node.now_ns() / 1_000_000
    }

    /// Sends `msg` to shard `to`, counting a full ring as a drop. Returns the item on failure
    /// so the caller can answer the client (`error unavailable`).
    pub fn send_to(&self, to: usize, msg: ShardMsg) -> Result<(), Option<ShardMsg>> {
        let r = self.mesh.try_send(to, msg);
        if r.is_err() {
            self.metrics.inc(Counter::DropRingFull);
        }
        r
    }
}

/// A shard's whole life. Reports start-up success on `ready`, then runs until the process
/// exits.
pub async fn run(
    id: usize,
    node: Arc<Node>,
    plan: Arc<MeshPlan<ShardMsg>>,
    ready: mpsc::Sender<anyhow::Result<()>>,
) {
    let listener = match TcpListener::bind(node.bound) {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send(Err(anyhow::anyhow!(
                "shard {id}: binding {}: {e}",
                node.bound
            )));
            return;
        }
    };
    let Some((mesh, inbox)) = plan.take(id) else {
        let _ = ready.send(Err(anyhow::anyhow!("shard {id}: mesh ends taken twice")));
        return;
    };
    let session = match SessionGlue::new(id, &node.config) {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let (relay, relay_rx) = match node.relay_plan.as_ref().and_then(|p| p.take(id)) {
        Some(ends) => {
            let (tx, rx) = ends.connect().await;
            (Some(tx), Some(rx))
        }
        None => (None, None),
    };
    let shard = Rc::new(Shard {
        id,
        mesh,
        metrics: ShardMetrics::default(),
        read_buf: RefCell::new(vec![0u8; READ_SCRATCH_BYTES].into_boxed_slice()),
        conns: RefCell::new(HashMap::new()),
        next_conn: Cell::new(1),
        clock_s: Cell::new(0),
        session,
        placement: crate::cluster::ShardRing::default(),
        store: node
            .take_store_handle(id)
            .map(|h| Rc::new(datapath::StoreLink::new(h))),
        relay,
        node: node.clone(),
    });
    {
        let shard = shard.clone();
        glommio::spawn_local(inbox.run(move |m| msg::handle(&shard, m))).detach();
    }
    glommio::spawn_local(datapath::run(shard.clone())).detach();
    if let Some(rx) = relay_rx {
        glommio::spawn_local(relaypath::run(shard.clone(), rx)).detach();
        glommio::spawn_local(relaypath::sweep(shard.clone())).detach();
    }
    glommio::spawn_local(datapath::refresh_loop(shard.clone())).detach();
    glommio::spawn_local(publish_loop(shard.clone())).detach();
    glommio::spawn_local(sweep_loop(shard.clone())).detach();
    glommio::spawn_local(crate::cluster::placement::run(shard.clone())).detach();
    let _ = ready.send(Ok(()));
    drop(ready);
    tracing::debug!(shard = id, "accepting");
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(crate::http::serve(shard.clone(), stream)).detach();
            }
            Err(e) => {
                // EMFILE/ENFILE: back off instead of spinning; the backlog holds the rest.
                tracing::warn!(shard = id, error = %e, "accept failed");
                sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn publish_loop(shard: Rc<Shard>) {
    let published = shard.node.published[shard.id].clone();
    let mut pacing = false;
    loop {
        shard.session.publish_gauges(&shard.metrics);
        shard.metrics.publish(&published);
        // The drain flag is checked on this existing tick rather than by a task of its own:
        // every timer wake-up of an idle shard costs a trip through io_uring_enter.
        if !pacing && shard.node.is_draining() {
            pacing = true;
            glommio::spawn_local(crate::drain::pace(shard.clone())).detach();
        }
        sleep(PUBLISH_INTERVAL).await;
    }
}

/// Pings connections every `PING_INTERVAL_SEC`, spread over the interval by connection id so
/// they do not all fire at once, and closes those idle for `IDLE_TIMEOUT_SEC` (4006) or stuck
/// in closing.
async fn sweep_loop(shard: Rc<Shard>) {
    let ping_every = shard.node.config.ping_interval_sec.max(1) as u32;
    let idle_after = shard.node.config.idle_timeout_sec as u32;
    let grace = CLOSE_GRACE.as_secs() as u32;
    let mut last_second = u32::MAX;
    loop {
        sleep(SWEEP_INTERVAL).await;
        let now = shard.node.started.elapsed().as_secs() as u32;
        shard.clock_s.set(now);
        shard.session.tick(&shard);
        if now == last_second {
            continue;
        }
        last_second = now;
        let conns: Vec<Rc<ConnShared>> = shard.conns.borrow().values().cloned().collect();
        for c in conns {
            if let Some(since) = c.closing_since() {
                if now.saturating_sub(since) >= grace {
                    c.abort();
                }
                continue;
            }
            let quiet = now.saturating_sub(c.last_rx.get());
            if quiet >= idle_after {
                shard.metrics.inc(Counter::Close4006);
                c.request_close(close::IDLE_TIMEOUT);
            } else if c.user.is_some() && (now.wrapping_add(c.id as u32)) % ping_every == 0 {
                // `/ws` only: an unsolicited ping on `/echo` would disturb conformance runs.
                c.request_ping();
            }
        }
    }
}
