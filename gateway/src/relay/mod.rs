//! The cross-node relay: messages for users owned by another node travel through Kafka.
//!
//! A message for a user whose ring owner is node `N` is produced once to `N`'s delivery
//! topic, keyed by the recipient's user id (so one user's records share a partition and keep
//! their order), and `N` consumes it into the recipient's home shard
//! (`rtc_ring::shard_of(user, shards)`). Records are [`rtc_protocol::relay::Envelope`]s
//! (binary, versioned); a record that does not decode is skipped and counted.
//!
//! # Names
//! | what | name |
//! |---|---|
//! | delivery topic of node `N` (created by `N`, [`RelayConfig::partitions`] partitions, default 8) | `<prefix>.deliver.<N>` |
//! | group id of node `N` (its committed offsets; no group membership, see below) | `<prefix>-node-<N>` |
//! | control events (ring versions, drains, scale decisions; published by `control`, JSON [`rtc_protocol::control::ControlEvent`]) | `<prefix>.events.control` (1 partition) |
//! | analytics events (connect/disconnect…) | `<prefix>.events.analytics` |
//!
//! `prefix` is `KAFKA_TOPIC_PREFIX` (default `rtc`). Each node creates its own delivery
//! topic and both events topics at start (admin client; "already exists" is fine) and again
//! after every recovery, because a broker that restarts without storage forgets them.
//!
//! # Settings and why
//! - Producer: `linger.ms=0` (`KAFKA_LINGER_MS`, ≤ 1 allowed): a relay hop is on the
//!   message's latency path. `max.in.flight.requests.per.connection=1`
//!   (`KAFKA_MAX_IN_FLIGHT`, 1..=5): while one produce request is out, new records collect
//!   into the next one in librdkafka's queue rather than in the broker's (at low load a
//!   record waits at most one produce round trip, ~0.5 ms on loopback; see *Measured*
//!   below). `acks` from `KAFKA_ACKS`:
//!   - `all` (default): the producer is idempotent (`enable.idempotence=true`), so a retry
//!     cannot duplicate or reorder a user's records, and a record the broker acknowledged
//!     is on every in-sync replica;
//!   - `1`: leader only; idempotence off (librdkafka requires `all` for it). With one
//!     request in flight a retry still cannot reorder, but it can duplicate (the recipient's
//!     shard drops a repeated offset). A leader lost before replicating loses the record
//!     from Kafka only;
//!   - `0`: fire and forget, no delivery failure is ever reported.
//!
//!   Whatever the level, nothing acknowledged to a sender is lost: the commit point is the
//!   recipient's resume log in Redis, written before the produce; a record Kafka loses is
//!   found by the reconcile/anti-entropy pass (`shard/relaypath.rs`). `acks` only decides
//!   how often the fast path has to fall back to that. `message.timeout.ms` 5 s: a produce
//!   that cannot complete by then is reported to the sender's shard rather than held
//!   indefinitely. No compression.
//! - Consumer: `fetch.wait.max.ms=5` (`KAFKA_FETCH_WAIT_MS`; an empty fetch returns within 5 ms so a new record
//!   waits little), manual assignment of *every* partition of the delivery topic (counted
//!   from the broker's metadata) instead of a group subscription — a node is the only
//!   reader of its topic, and group membership against a broker that restarts without
//!   storage produced stuck joins and zombie members (a new consumer never assigned, or
//!   sharing the partitions with a discarded one); `KAFKA_SESSION_TIMEOUT_MS` is still
//!   passed to librdkafka but no group is joined. `auto.offset.reset=earliest` (a new group or a partition wiped
//!   by a broker restart skips nothing; replays are deduplicated downstream), offsets
//!   auto-committed every second (a restarted node resumes near where it stopped; Kafka is
//!   not the record — the resume log is).
//! - All clients: `socket.nagle.disable=true` (librdkafka leaves Nagle on; every relay
//!   request is small and latency-bound).
//! - Tuning without a rebuild: `KAFKA_PRODUCER_EXTRA` / `KAFKA_CONSUMER_EXTRA`
//!   (`key=value,…`, librdkafka names, applied last; the producer's may not break the
//!   invariants above). `KAFKA_STATS_MS=1000` logs librdkafka's statistics once a second
//!   per client (`relay kafka stats`: produce/fetch request counts, producer queue,
//!   request queue and broker round-trip windows) — the way to see where relay time goes.
//!
//! # Measured (2 nodes, 1,000 users, tansu 0.6 in memory, this 2-core machine)
//! Where a cross-node message's time goes at moderate load (500 msg/s, librdkafka
//! statistics): the sender's Redis commit (as for a same-node message, ~1–1.5 ms p50), the
//! produce round trip (~0.3–0.5 ms), then the wait for the recipient's next fetch — about
//! half of `fetch.wait.max.ms` on average, the whole of it at worst: tansu answers a fetch
//! at once only if the partition has data when the fetch *arrives*; otherwise it sleeps the
//! whole wait and looks again (Kafka itself answers a held fetch as soon as data comes).
//! So p50 ≈ same-node p50 + ~3 ms, p99 ≈ same-node p99 + ~5 ms.
//!
//! What limits it is the broker's CPU, and two tansu traits set the trade-offs:
//! - every fetch that finds data *lists every batch the partition holds* (its memory
//!   engine keeps one object per produced batch and implements neither retention nor
//!   DeleteRecords), so a broker's cost per fetch grows with everything produced since it
//!   started: the same 500 msg/s run repeated six times on one broker went from p50 4.2 ms /
//!   p99 9.2 ms (tansu 30 % of a core) to p50 9.3 ms / p99 509 ms (72 %);
//! - fetches are the dominant cost: `fetch.wait.max.ms` 1 or 2 saturated tansu at
//!   1,000 msg/s (98 %, 85 %) where 5 ms used 55–65 %; 100 ms halves its CPU but adds
//!   ~30 ms p50. 5 ms stays the default.
//!
//! Producer side: up to ~500 msg/s per node each record travels in its own produce request
//! whatever the settings (records arrive ~2 ms apart, a round trip takes ~0.5 ms); past
//! that librdkafka batches by itself (~2 records per request at 1,000 msg/s per node with
//! 1 or 5 in flight alike). One request in flight changes where a saturated broker's
//! backlog waits: the produce round trip fell from 9–11 ms to 1.6–2 ms on average (likely
//! because tansu rewrites one shared producer-state object, `meta.json`, under a version
//! check for every idempotent produce), the records waiting in librdkafka's queue instead;
//! end to end, the difference at ≤ 1,000 msg/s is within this machine's noise.
//! `socket.nagle.disable` cut the cross-node p99 at 1,000 msg/s from 28 to 12 ms in one
//! paired run (noisy). One partition per delivery topic is worse (each fetch then lists the
//! whole topic: p50 30 ms on a second 1,000 msg/s run against 8 ms with 8), so 8 stays the
//! default; 16 and 32 were not clearly better. `linger.ms=1` added ~1 ms at low load for no
//! clear gain, so 0 stays.
//!
//! `benches/run-cluster direct` (USERS=1000, N=2, a fresh cluster per run), before (5 in
//! flight, Nagle on) and after (1 in flight, Nagle off), three interleaved rounds at load
//! averages 1–5; cross-node p50 / p99 in ms, median of the three (same-node p50 was 0.9–1.7):
//!
//! | msg/s | before | after | the three "after" runs |
//! |---|---|---|---|
//! | 500 | 4.2 / 10.4 | 3.8 / 7.3 | 3.9/8.2, 3.6/7.3, 3.8/6.7 |
//! | 1,000 | 5.2 / 13.4 | 4.1 / 9.8 | 5.0/42.6, 3.7/9.8, 4.1/9.6 |
//! | 2,000 | 12.6 / 55.7 | 7.8 / 36.5 | 7.8/36.5, 7.6/35.2, 8.9/46.3 |
//!
//! On a quiet machine (the third round) before and after were equal at 500 and 1,000 msg/s
//! (3.7/6.6 vs 3.8/6.7, 4.4/10.2 vs 4.1/9.6); the gain is in the loaded runs and at
//! 2,000 msg/s, where the broker saturates.
//! - Both: reconnect backoff 50 ms..1 s (recover quickly after a broker restart).
//! - All clients: `allow.auto.create.topics=false`. Only the node creates its topics, with
//!   its partition count. (librdkafka's producer otherwise asks the broker to auto-create
//!   every topic it looks up, and after a restart without storage the relay's first
//!   metadata probe — or a peer's produce — recreated `<prefix>.deliver.<node>` with the
//!   broker's default of 4 partitions before the node could create it with 8: the
//!   consumer then held "all" 4 and no loss was raised.)
//!
//! # Threads and rings
//! librdkafka runs on its own threads plus one relay thread (an unpinned glommio executor
//! with a small blocking pool, see `bridge.rs`). Each shard is joined to it by two bounded
//! glommio `shared_channel` rings (the shard mesh uses its own `ArrayQueue` rings instead, see
//! `shard/mesh.rs`), so a shard awaits its relay ring as a task and an idle relay costs no
//! polling:
//! - shard → relay ([`RelayShard::try_send`], capacity [`RelayConfig::outbound_ring`]):
//!   a full ring hands the request back (`Err(Full(req))`, counted `ring_full`) and the
//!   shard answers the sender with an error frame;
//! - relay → shard ([`RelayInbound`], capacity [`RelayConfig::inbound_ring`] *batches*):
//!   consumed envelopes, produce failures and health events, batched per shard per poll so a
//!   busy relay wakes a shard once per batch, not per message. When a shard's ring is full
//!   the relay waits (counted `inbound_ring_full`): the records stay in Kafka meanwhile.
//!
//! A produce that fails (librdkafka refuses it or its delivery report is an error) is counted
//! `produce_failed` and comes back to its shard as [`RelayInbound::ProduceFailed`] carrying
//! the shard's token. A successful produce is only counted: the sender's `sent` comes from
//! the recipient node's receipt envelope, the commit point being the recipient's log.
//!
//! # Health
//! The shards get [`RelayEvent::Lost`] when the relay may have missed records — all brokers
//! down; a transport error or a failed delivery followed by a metadata probe that fails or
//! finds this node's delivery topic gone (a broker that restarted without storage, quickly
//! enough that librdkafka never reported all brokers down); a consumer error (e.g. its
//! partitions vanished); a fatal producer error — and
//! [`RelayEvent::Restored`] once a broker answers, the topics exist again and the consumer
//! holds every partition the broker reports for its delivery topic (the first `Restored`
//! also marks the end of start-up). On `Restored` the node reconciles its connected users
//! against their logs.
//!
//! Assignment check: every 2 s a healthy relay compares the partitions its consumer holds
//! with the delivery topic's partition count in the broker's metadata. Fewer (the topic
//! grew) in two checks in a row counts `assignment_incomplete`, logs a warning and raises
//! `Lost` (a consumer holding them all is built, users reconciled). A topic
//! with fewer partitions than configured (created by someone else) counts `topic_short`
//! and the relay asks the broker to grow it (tansu 0.6 refuses; the consumer still owns
//! every partition there is). `/metrics` shows `rtc_socket_relay_assigned_partitions`,
//! `rtc_socket_relay_topic_partitions` and `rtc_socket_relay_total{outcome=…}` (every
//! [`RelayCounters`] field).
//!
//! Recovery, and the librdkafka hazards it works around (all seen against tansu restarting
//! with in-memory storage):
//! - on loss the consumer is discarded at once and a new one assigns itself the partitions
//!   only after the topics were re-created: librdkafka 2.12.1 dereferences a NULL topic name (SIGSEGV in
//!   `rd_kafka_metadata_update_op`) when a fetch answer carries a leader hint without a
//!   topic id, which is what a restarted broker sends for a partition it no longer knows;
//! - when a broker answers again the producer is rebuilt: the idempotent producer's id and
//!   sequence numbers are unknown to the new broker and every record would time out (also
//!   done, at most once per `recreate_after`, when deliveries fail while the broker answers);
//! - still lost after [`RelayConfig::recreate_after`] → every client is rebuilt (a fatal
//!   producer error rebuilds the producer at once);
//! - discarded clients are closed on a separate thread (closing one against a dead broker
//!   can hang) and their callbacks are muted (a generation number), so a late error from
//!   an old client cannot raise a spurious `Lost`.
//!
//! Residual risk: between a broker's restart and the relay noticing it (≤ one health tick
//! plus a probe, ~0.2–2 s) the old clients may still talk to the new broker and hit the
//! librdkafka crash above (SIGSEGV in `strcmp` ← `rd_kafka_metadata_cache_find` ←
//! `rd_kafka_metadata_update_op` on librdkafka's main thread). With a pause of 1 s between
//! the broker's stop and start (the tests) it has not been seen since the consumer is
//! dropped on loss; a broker restarted *at once* (kill, then start within ~0.1 s) crashes
//! the node most times (seen 2026-11-30, with and without the assignment fix; capping the
//! protocol with `api.version.request=false` / `broker.version.fallback=2.8.0` did not
//! help). A librdkafka release fixing `rd_kafka_metadata_update_op` removes it.
//!
//! # Wiring (what the node calls)
//! 1. Main thread: `let (relay, plan) = Relay::start(RelayConfig::from_env(node_id)?, shards)?;`
//!    keep `relay` for the node's life (its `counters()` for `/metrics`, `events()` for
//!    control/analytics events); share `plan` with the shards (`Arc`).
//! 2. Each shard: `let (relay_tx, relay_rx) = plan.take(shard_id).expect(..).connect().await;`
//!    (every shard must connect; like the mesh, connecting completes when both sides have).
//! 3. Send: `relay_tx.try_send(ProduceRequest::envelope(owner_node, &env, token)?)`;
//!    `Err(Full(req))` → error frame to the sender.
//! 4. Receive: a task `while let Some(item) = relay_rx.recv().await { match item { .. } }`.
//!
//! # Layout
//! - `config.rs` — [`RelayConfig`], [`Acks`], topic/group naming.
//! - `counters.rs` — [`RelayCounters`].
//! - `kafka.rs` — librdkafka contexts, client settings, topic creation, batch polling.
//! - `bridge.rs` — the relay executor: feed tasks, pumps, health loop.
//! - `events.rs` — [`EventPublisher`] for the control and analytics topics.

mod bridge;
pub mod config;
pub mod counters;
pub mod events;
mod kafka;

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use glommio::channels::shared_channel::{
    self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};
use rtc_protocol::relay::{Envelope, RelayError};

pub use config::{Acks, RelayConfig};
pub use counters::{RelayCounters, RelayCountersSnapshot};
pub use events::{EventPublisher, EventTopic};

/// Io memory of the relay executor: it does no file or socket I/O of its own.
const RELAY_IO_MEMORY: usize = 256 * 1024;
/// Blocking-pool threads of the relay executor: producer poll, consumer poll, probes.
const RELAY_BLOCKING_THREADS: usize = 3;
/// Longest dropping a [`Relay`] waits for its thread to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum RelayStartError {
    /// A configuration value is out of range.
    #[error("relay config: {0}")]
    Config(&'static str),
    /// librdkafka refused a client configuration or the broker did not answer in time.
    #[error("kafka: {0}")]
    Kafka(String),
    /// The relay thread could not be started.
    #[error("relay thread: {0}")]
    Thread(String),
}

/// A message (or receipt) to relay to another node. The shard encodes the envelope; the
/// relay only routes bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceRequest {
    /// Owner node of the recipient: the record goes to `<prefix>.deliver.<node>`.
    pub node: String,
    /// Record key: the recipient (per-user order).
    pub key: String,
    /// The encoded envelope.
    pub value: Vec<u8>,
    /// The shard's handle for this request, returned in [`ProduceFailure::token`].
    pub token: u64,
}

impl ProduceRequest {
    /// Encodes `env` for `node`, keyed by `env.dest`.
    pub fn envelope(node: &str, env: &Envelope<'_>, token: u64) -> Result<Self, RelayError> {
        // `encode` is infallible once the fields are valid; an invalid envelope (an over-long
        // id) is refused here rather than truncated on the wire.
        env.validate()?;
        let mut value = Vec::with_capacity(env.encoded_len());
        env.encode(&mut value);
        Ok(Self {
            node: node.to_string(),
            key: env.dest.to_string(),
            value,
            token,
        })
    }
}

/// A full shard → relay ring: the request comes back to the caller.
#[derive(Debug, PartialEq, Eq)]
pub struct Full<T>(pub T);

/// One consumed record for this shard (already checked to decode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Kafka partition it came from.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
    /// The encoded envelope.
    pub bytes: Vec<u8>,
}

impl Delivery {
    /// The envelope, borrowing from this record (the relay decoded it once already to pick
    /// the shard, so this does not fail for records it hands out).
    pub fn envelope(&self) -> Result<Envelope<'_>, RelayError> {
        Envelope::decode(&self.bytes)
    }
}

/// A produce that did not reach the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceFailure {
    /// The token the shard gave in [`ProduceRequest::token`].
    pub token: u64,
    /// librdkafka's reason, for logs.
    pub reason: String,
}

/// Relay health as seen by the shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayEvent {
    /// Records may have been missed from now on (see the module doc for the triggers).
    Lost {
        /// What happened, for logs.
        reason: String,
    },
    /// Delivering again (also sent once when start-up completes).
    Restored,
}

/// What the relay hands a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayInbound {
    /// Records for users whose home shard this is, in partition order.
    Deliveries(Vec<Delivery>),
    /// Produce requests of this shard that failed.
    ProduceFailed(Vec<ProduceFailure>),
    /// A health change.
    Event(RelayEvent),
}

/// A shard's connected sending end.
#[derive(Debug)]
pub struct RelayShard {
    tx: ConnectedSender<ProduceRequest>,
    counters: Arc<RelayCounters>,
    events: EventPublisher,
}

impl RelayShard {
    /// Queues `req` for the relay without waiting. A full (or closed) ring hands it back;
    /// counted `ring_full`.
    pub fn try_send(&self, req: ProduceRequest) -> Result<(), Full<ProduceRequest>> {
        match self.tx.try_send(req) {
            Ok(()) => Ok(()),
            Err(
                glommio::GlommioError::WouldBlock(glommio::ResourceType::Channel(req))
                | glommio::GlommioError::Closed(glommio::ResourceType::Channel(req)),
            ) => {
                RelayCounters::bump(&self.counters.ring_full);
                Err(Full(req))
            }
            Err(e) => {
                // glommio consumed the item in some other failure; still a counted refusal.
                RelayCounters::bump(&self.counters.ring_full);
                tracing::warn!(error = %e, "relay ring send failed");
                Ok(())
            }
        }
    }

    /// The events publisher.
    pub fn events(&self) -> &EventPublisher {
        &self.events
    }

    /// The relay counters.
    pub fn counters(&self) -> &Arc<RelayCounters> {
        &self.counters
    }
}

/// One shard's not-yet-connected ends.
#[derive(Debug)]
pub struct RelayEnds {
    tx: SharedSender<ProduceRequest>,
    rx: SharedReceiver<RelayInbound>,
    counters: Arc<RelayCounters>,
    events: EventPublisher,
}

impl RelayEnds {
    /// Connects both ends on the calling shard (completes once the relay connected its own).
    pub async fn connect(self) -> (RelayShard, ConnectedReceiver<RelayInbound>) {
        let rx = glommio::spawn_local(self.rx.connect());
        let tx = self.tx.connect().await;
        let rx = rx.await;
        (
            RelayShard {
                tx,
                counters: self.counters,
                events: self.events,
            },
            rx,
        )
    }
}

/// Every shard's ends, taken once per shard. The `Mutex` is touched at start-up only.
#[derive(Debug)]
pub struct RelayPlan {
    ends: Mutex<Vec<Option<RelayEnds>>>,
}

impl RelayPlan {
    /// Takes shard `id`'s ends (once).
    pub fn take(&self, id: usize) -> Option<RelayEnds> {
        let mut ends = self.ends.lock().unwrap_or_else(|e| e.into_inner());
        ends.get_mut(id).and_then(Option::take)
    }
}

/// The running relay. Dropping it stops the relay thread.
#[derive(Debug)]
pub struct Relay {
    config: RelayConfig,
    counters: Arc<RelayCounters>,
    events: EventPublisher,
    stop: Arc<AtomicBool>,
    done: mpsc::Receiver<()>,
}

impl Relay {
    /// Validates `config`, starts the relay thread, creates the topics and the clients, and
    /// returns once they exist (or with an error after [`RelayConfig::start_timeout`]). The
    /// first health tick that sees the consumer holding every partition sends
    /// [`RelayEvent::Restored`] to the shards.
    pub fn start(
        config: RelayConfig,
        shards: usize,
    ) -> Result<(Relay, RelayPlan), RelayStartError> {
        config.validate()?;
        if shards == 0 {
            return Err(RelayStartError::Config("shards must be ≥ 1"));
        }
        let counters = Arc::new(RelayCounters::default());
        let signals = Arc::new(kafka::Signals::new(counters.clone()));
        let producer = kafka::producer(&config, &signals)?;
        let admin = kafka::admin(&config)?;
        let slot = Arc::new(events::ProducerSlot::new(producer));
        let events = EventPublisher {
            slot: slot.clone(),
            control_topic: EventTopic::Control.name(&config.prefix).into(),
            analytics_topic: EventTopic::Analytics.name(&config.prefix).into(),
            counters: counters.clone(),
        };

        let mut from_shards = Vec::with_capacity(shards);
        let mut to_shards = Vec::with_capacity(shards);
        let mut ends = Vec::with_capacity(shards);
        for _ in 0..shards {
            let (tx, rx) = shared_channel::new_bounded(config.outbound_ring);
            let (in_tx, in_rx) = shared_channel::new_bounded(config.inbound_ring);
            from_shards.push(rx);
            to_shards.push(in_tx);
            ends.push(Some(RelayEnds {
                tx,
                rx: in_rx,
                counters: counters.clone(),
                events: events.clone(),
            }));
        }

        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), RelayStartError>>();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let cfg = config.clone();
        let stop2 = stop.clone();
        let builder = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .name(&format!("relay-{}", config.node_id))
            .io_memory(RELAY_IO_MEMORY)
            .blocking_thread_pool_placement(glommio::PoolPlacement::Unbound(
                RELAY_BLOCKING_THREADS,
            ));
        let thread = builder
            .spawn(move || async move {
                let deadline = Instant::now() + cfg.start_timeout;
                loop {
                    let last_err =
                        match kafka::ensure_topics(&admin, &cfg, Duration::from_secs(3)).await {
                            Ok(()) => break,
                            Err(e) => e,
                        };
                    if Instant::now() >= deadline {
                        let _ = ready_tx.send(Err(RelayStartError::Kafka(format!(
                            "topics not created within {:?} ({}): {last_err}",
                            cfg.start_timeout, cfg.brokers
                        ))));
                        let _ = done_tx.send(());
                        return;
                    }
                    glommio::timer::sleep(Duration::from_millis(200)).await;
                }
                // The consumer assigns itself every partition the broker reports.
                let parts = {
                    use rdkafka::producer::Producer as _;
                    let p = slot.get();
                    let topic = cfg.delivery_topic();
                    glommio::executor()
                        .spawn_blocking(move || {
                            kafka::topic_partitions(p.client(), &topic, Duration::from_secs(3))
                        })
                        .await
                };
                let parts = match parts {
                    Ok(n) if n > 0 => n,
                    other => {
                        let _ = ready_tx.send(Err(RelayStartError::Kafka(format!(
                            "delivery topic {} has no partitions the broker reports: {other:?}",
                            cfg.delivery_topic()
                        ))));
                        let _ = done_tx.send(());
                        return;
                    }
                };
                let consumer = match kafka::consumer(&cfg, &signals, parts) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        let _ = done_tx.send(());
                        return;
                    }
                };
                let retire = bridge::Retirer::default();
                let bridge = Rc::new(bridge::Bridge::new(
                    cfg, signals, slot, consumer, admin, stop2, retire,
                ));
                let _ = ready_tx.send(Ok(()));
                glommio::spawn_local(bridge.clone().run_pipes(from_shards, to_shards)).detach();
                bridge.health_loop().await;
                let _ = done_tx.send(());
            })
            .map_err(|e| RelayStartError::Thread(e.to_string()))?;
        // The thread ends on its own once `stop` is set; it is never joined (a hung
        // librdkafka close must not hang the node), see `Drop`.
        drop(thread);
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(RelayStartError::Thread("relay thread died".into())),
        }
        let relay = Relay {
            config,
            counters,
            events,
            stop,
            done: done_rx,
        };
        let plan = RelayPlan {
            ends: Mutex::new(ends),
        };
        Ok((relay, plan))
    }

    /// The configuration in force.
    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    /// The counters (for `/metrics`).
    pub fn counters(&self) -> &Arc<RelayCounters> {
        &self.counters
    }

    /// A publisher for control/analytics events.
    pub fn events(&self) -> EventPublisher {
        self.events.clone()
    }

    /// Waits up to `timeout` for librdkafka to hand every queued produce and event to the
    /// broker (e.g. before a drained node exits).
    pub fn flush(&self, timeout: Duration) -> bool {
        use rdkafka::producer::Producer as _;
        self.events.slot.get().flush(timeout).is_ok()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if self.done.recv_timeout(STOP_TIMEOUT).is_err() {
            tracing::warn!("relay thread did not stop in time; leaving it");
        }
    }
}
