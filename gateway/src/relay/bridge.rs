//! The relay executor: one unpinned glommio thread between the shards and librdkafka.
//!
//! - one *feed* task per shard takes produce requests off that shard's ring and enqueues
//!   them into librdkafka (a non-blocking call);
//! - the *producer pump* blocks in `poll` on a blocking-pool thread (delivery reports) and
//!   hands failures back to their shards, one batch per shard per poll;
//! - the *consumer pump* blocks in `poll` likewise, takes up to `consume_batch` records,
//!   decodes each envelope, and hands each shard one batch;
//! - the *health loop* (this executor's main future) turns librdkafka's signals into
//!   [`RelayEvent`]s, re-creates topics and rebuilds clients during recovery.
//!
//! Blocking calls never run on the executor itself: `spawn_blocking` wakes it through its
//! io_uring when they return, so an idle relay sleeps (no busy polling).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::channels::shared_channel::{ConnectedSender, SharedReceiver, SharedSender};
use rdkafka::admin::AdminClient;
use rdkafka::producer::{BaseRecord, Producer as _};
use rtc_protocol::relay::Envelope;

use super::config::{delivery_topic, RelayConfig};
use super::counters::RelayCounters;
use super::events::ProducerSlot;
use super::kafka::{self, AdminCtx, ConsumerClient, Signals, Tag};
use super::{Delivery, ProduceFailure, ProduceRequest, RelayEvent, RelayInbound};

/// Longest a blocking `poll` waits before the pump looks at its stop flag again.
const POLL_WAIT: Duration = Duration::from_millis(100);
/// Health loop period.
const HEALTH_TICK: Duration = Duration::from_millis(200);
/// Timeout of a metadata probe / topic creation during recovery.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a healthy relay compares its consumer's assignment with the delivery topic's
/// partition count in the broker's metadata (one metadata request each time).
const ASSIGNMENT_CHECK: Duration = Duration::from_secs(2);
/// How long the consumer may hold fewer partitions than its topic has before the relay
/// calls it lost and rebuilds the consumer. Long enough for a normal rebalance after the
/// topic grew (metadata refresh 5 s + a group rejoin of about half the session timeout).
const ASSIGNMENT_GRACE: Duration = Duration::from_secs(15);
/// Least time between two attempts to grow a delivery topic that has too few partitions
/// (a broker without CreatePartitions — tansu 0.6 — refuses every time).
const GROW_RETRY: Duration = Duration::from_secs(60);
/// Longest the executor waits at stop for the pumps to return from librdkafka.
const STOP_WAIT: Duration = Duration::from_secs(3);
/// Most destination topic names cached (node ids are few; the cache is cleared past this).
const MAX_TOPIC_CACHE: usize = 1024;
/// Most discarded clients being closed at once. Closing a librdkafka client whose broker
/// vanished can hang, so each is closed on a thread of its own (in parallel: one hung close
/// must not keep the next consumer in its group); past this many, a client is leaked (a
/// consumer only after it unsubscribed, so it holds no group membership).
const MAX_RETIRING: usize = 8;

/// Closes discarded clients off the relay thread.
#[derive(Debug, Clone, Default)]
pub(crate) struct Retirer {
    active: Arc<std::sync::atomic::AtomicUsize>,
}

/// The closing work for one discarded client.
pub(crate) type Retired = Box<dyn FnOnce() + Send>;

fn retire(r: &Retirer, item: Retired) {
    if r.active.fetch_add(1, Ordering::Relaxed) >= MAX_RETIRING {
        r.active.fetch_sub(1, Ordering::Relaxed);
        tracing::warn!("relay: too many clients closing; leaking one");
        std::mem::forget(item);
        return;
    }
    let active = r.active.clone();
    let spawned = std::thread::Builder::new()
        .name("relay-retire".into())
        .spawn(move || {
            item();
            active.fetch_sub(1, Ordering::Relaxed);
        });
    if spawned.is_err() {
        r.active.fetch_sub(1, Ordering::Relaxed);
        tracing::warn!("relay: no thread to close a client; leaking it");
    }
}

/// Closing work for a consumer: leave the group first (so a slow close cannot leave a
/// member that still takes partitions), then drop.
fn consumer_closer(c: Arc<ConsumerClient>) -> Retired {
    Box::new(move || {
        use rdkafka::consumer::Consumer as _;
        c.unsubscribe();
        drop(c);
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    /// Not yet assigned for the first time.
    Starting,
    /// Delivering.
    Up,
    /// Lost since `since`; clients last rebuilt at `rebuilt`; `fresh_producer` once the
    /// producer was rebuilt after a broker answered again in this episode.
    Lost {
        since: Instant,
        rebuilt: Instant,
        fresh_producer: bool,
    },
}

/// The relay executor's state (lives on the relay thread only).
pub(crate) struct Bridge {
    pub cfg: RelayConfig,
    pub signals: Arc<Signals>,
    pub slot: Arc<ProducerSlot>,
    /// The consumer; `None` while lost: it is dropped on loss and built again only once
    /// the topics exist again (see `lose`).
    pub consumer: RefCell<Option<Arc<ConsumerClient>>>,
    pub admin: RefCell<Arc<AdminClient<AdminCtx>>>,
    pub stop: Arc<AtomicBool>,
    pub retire: Retirer,
    pub to_shards: RefCell<Vec<Rc<ConnectedSender<RelayInbound>>>>,
    topics: RefCell<HashMap<String, String>>,
    health: Cell<Health>,
    /// Pumps still running: at stop the executor waits for them so no blocking call is
    /// left answering an executor that is gone.
    pumps: Cell<usize>,
    /// When the producer was last built (rebuilds on failing deliveries are rate-limited).
    producer_built: Cell<Instant>,
    /// When a healthy relay last compared its assignment with the topic metadata.
    last_check: Cell<Instant>,
    /// Since when the consumer holds fewer partitions than the topic has (`None`: it holds
    /// them all).
    short_since: Cell<Option<Instant>>,
    /// When the relay last tried to grow a delivery topic that has too few partitions.
    last_grow: Cell<Option<Instant>>,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("node", &self.cfg.node_id)
            .field("health", &self.health.get())
            .finish()
    }
}

impl Bridge {
    pub(crate) fn new(
        cfg: RelayConfig,
        signals: Arc<Signals>,
        slot: Arc<ProducerSlot>,
        consumer: ConsumerClient,
        admin: AdminClient<AdminCtx>,
        stop: Arc<AtomicBool>,
        retire: Retirer,
    ) -> Self {
        Self {
            cfg,
            signals,
            slot,
            consumer: RefCell::new(Some(Arc::new(consumer))),
            admin: RefCell::new(Arc::new(admin)),
            stop,
            retire,
            to_shards: RefCell::new(Vec::new()),
            topics: RefCell::new(HashMap::new()),
            health: Cell::new(Health::Starting),
            pumps: Cell::new(0),
            producer_built: Cell::new(Instant::now()),
            last_check: Cell::new(Instant::now()),
            short_since: Cell::new(None),
            last_grow: Cell::new(None),
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Connects the relay's ends of every shard ring (completes when the shards connect
    /// theirs), then starts the feed tasks and pumps. Runs as a task: the health loop does
    /// not wait for the shards.
    pub(crate) async fn run_pipes(
        self: Rc<Self>,
        from_shards: Vec<SharedReceiver<ProduceRequest>>,
        to_shards: Vec<SharedSender<RelayInbound>>,
    ) {
        let mut rx_connects = Vec::with_capacity(from_shards.len());
        for rx in from_shards {
            rx_connects.push(glommio::spawn_local(rx.connect()));
        }
        let mut senders = Vec::with_capacity(to_shards.len());
        for tx in to_shards {
            senders.push(Rc::new(tx.connect().await));
        }
        *self.to_shards.borrow_mut() = senders;
        for (shard, c) in rx_connects.into_iter().enumerate() {
            let rx = c.await;
            let me = self.clone();
            glommio::spawn_local(async move {
                while let Some(req) = rx.recv().await {
                    me.produce(shard as u32, req).await;
                }
            })
            .detach();
        }
        self.pumps.set(2);
        glommio::spawn_local(self.clone().producer_pump()).detach();
        glommio::spawn_local(self.clone().consumer_pump()).detach();
    }

    async fn produce(&self, shard: u32, req: ProduceRequest) {
        let topic = {
            let mut cache = self.topics.borrow_mut();
            if !cache.contains_key(&req.node) {
                if cache.len() >= MAX_TOPIC_CACHE {
                    cache.clear();
                }
                cache.insert(
                    req.node.clone(),
                    delivery_topic(&self.cfg.prefix, &req.node),
                );
            }
            cache.get(&req.node).cloned().unwrap_or_default()
        };
        let record = BaseRecord::with_opaque_to(
            &topic,
            Box::new(Tag {
                shard,
                token: req.token,
            }),
        )
        .key(req.key.as_bytes())
        .payload(&req.value);
        if let Err((e, _)) = self.slot.get().send(record) {
            RelayCounters::bump(&self.signals.counters.produce_failed);
            if e.rdkafka_error_code() != Some(rdkafka::types::RDKafkaErrorCode::QueueFull) {
                // Not backpressure: the producer may be broken (see the health loop).
                self.signals.delivery_failed.store(true, Ordering::Relaxed);
            }
            let failure = ProduceFailure {
                token: req.token,
                reason: format!("enqueue refused: {e}"),
            };
            self.to_shard(shard as usize, RelayInbound::ProduceFailed(vec![failure]))
                .await;
        }
    }

    /// Hands `item` to shard `shard`, waiting (counted) when its ring is full.
    async fn to_shard(&self, shard: usize, item: RelayInbound) {
        let tx = match self.to_shards.borrow().get(shard) {
            Some(tx) => tx.clone(),
            None => return,
        };
        match tx.try_send(item) {
            Ok(()) => {}
            Err(glommio::GlommioError::WouldBlock(glommio::ResourceType::Channel(item))) => {
                RelayCounters::bump(&self.signals.counters.inbound_ring_full);
                let _ = tx.send(item).await;
            }
            Err(_) => {}
        }
    }

    async fn broadcast(&self, event: RelayEvent) {
        let n = self.to_shards.borrow().len();
        for s in 0..n {
            self.to_shard(s, RelayInbound::Event(event.clone())).await;
        }
    }

    async fn producer_pump(self: Rc<Self>) {
        while !self.stopping() {
            let p = self.slot.get();
            let p = glommio::executor()
                .spawn_blocking(move || {
                    p.poll(POLL_WAIT);
                    p
                })
                .await;
            self.release_producer(p);
            let failures = std::mem::take(
                &mut *self
                    .signals
                    .failures
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()),
            );
            if failures.is_empty() {
                continue;
            }
            let n = self.to_shards.borrow().len();
            let mut per: Vec<Vec<ProduceFailure>> = (0..n).map(|_| Vec::new()).collect();
            for (shard, f) in failures {
                if let Some(v) = per.get_mut(shard as usize) {
                    v.push(f);
                }
            }
            for (shard, v) in per.into_iter().enumerate() {
                if !v.is_empty() {
                    self.to_shard(shard, RelayInbound::ProduceFailed(v)).await;
                }
            }
        }
        self.pumps.set(self.pumps.get().saturating_sub(1));
    }

    async fn consumer_pump(self: Rc<Self>) {
        let shards = self.to_shards.borrow().len();
        let max = self.cfg.consume_batch;
        while !self.stopping() {
            let Some(c) = self.consumer.borrow().clone() else {
                glommio::timer::sleep(POLL_WAIT).await;
                continue;
            };
            let (c, batch, error) = glommio::executor()
                .spawn_blocking(move || {
                    let (batch, error) = kafka::poll_batch(&c, POLL_WAIT, max);
                    (c, batch, error)
                })
                .await;
            self.release_consumer(c);
            if let Some(e) = error {
                self.signals.flag_lost(format!("consumer error: {e}"));
            }
            if batch.is_empty() || shards == 0 || self.stopping() {
                continue;
            }
            let mut per: Vec<Vec<Delivery>> = (0..shards).map(|_| Vec::new()).collect();
            for rec in batch {
                let shard = match Envelope::decode(&rec.value) {
                    Ok(env) => rtc_ring::shard_of(env.dest, shards),
                    Err(e) => {
                        RelayCounters::bump(&self.signals.counters.decode_errors);
                        tracing::debug!(error = %e, partition = rec.partition, offset = rec.offset, "bad relay envelope skipped");
                        continue;
                    }
                };
                if let Some(v) = per.get_mut(shard) {
                    v.push(Delivery {
                        partition: rec.partition,
                        offset: rec.offset,
                        bytes: rec.value,
                    });
                }
            }
            for (shard, v) in per.into_iter().enumerate() {
                if !v.is_empty() {
                    RelayCounters::add(&self.signals.counters.consumed, v.len() as u64);
                    self.to_shard(shard, RelayInbound::Deliveries(v)).await;
                }
            }
        }
        self.pumps.set(self.pumps.get().saturating_sub(1));
    }

    /// Metadata round trip through the producer: does a broker answer, and how many
    /// partitions does this node's delivery topic have (0: the broker does not know it —
    /// one that restarted without storage answers but has forgotten it, and records for
    /// this node may have been lost with it)? The count is kept for `/metrics` and for the
    /// assignment check. (The lookup cannot create the topic: see `allow.auto.create.topics`
    /// in `kafka.rs`.)
    async fn probe(&self) -> Result<usize, String> {
        let p = self.slot.get();
        let topic = self.cfg.delivery_topic();
        let (p, r) = glommio::executor()
            .spawn_blocking(move || {
                let r = p
                    .client()
                    .fetch_metadata(Some(&topic), PROBE_TIMEOUT)
                    .map(|md| {
                        md.topics()
                            .iter()
                            .find(|t| t.name() == topic && t.error().is_none())
                            .map_or(0, |t| t.partitions().len())
                    })
                    .map_err(|e| e.to_string());
                (p, r)
            })
            .await;
        self.release_producer(p);
        if let Ok(n) = r {
            self.signals.topic_partitions.store(n, Ordering::Relaxed);
            self.signals
                .counters
                .topic_partitions
                .store(n as u64, Ordering::Relaxed);
        }
        r
    }

    /// The delivery topic exists with `parts` partitions: fewer than configured means
    /// someone else created it with the broker's default. Counted and logged; grown (at
    /// most once per [`GROW_RETRY`]) where the broker supports it — the consumer's group
    /// then rebalances onto the new partitions by itself. Where it cannot be grown the
    /// consumer still owns every partition the topic has, so nothing goes unread; only the
    /// spread is smaller than configured.
    async fn grow_if_short(&self, parts: usize) {
        let want = usize::try_from(self.cfg.partitions).unwrap_or(0);
        if parts == 0 || parts >= want {
            return;
        }
        if self
            .last_grow
            .get()
            .is_some_and(|t| t.elapsed() < GROW_RETRY)
        {
            return;
        }
        self.last_grow.set(Some(Instant::now()));
        RelayCounters::bump(&self.signals.counters.topic_short);
        let admin = self.admin.borrow().clone();
        let r = kafka::grow_delivery_topic(&admin, &self.cfg, PROBE_TIMEOUT).await;
        tracing::warn!(
            node = %self.cfg.node_id,
            topic = %self.cfg.delivery_topic(),
            partitions = parts,
            configured = want,
            result = ?r,
            "relay: delivery topic has too few partitions; growing it"
        );
    }

    /// Whether the consumer holds every partition of its topic, as of the last probe.
    fn fully_assigned(&self) -> bool {
        let assigned = self.signals.assigned.load(Ordering::Relaxed);
        let parts = self.signals.topic_partitions.load(Ordering::Relaxed);
        assigned > 0 && assigned >= parts
    }

    /// Drops a producer handle; one the slot no longer holds may be the last and close the
    /// client, which is done off this thread.
    fn release_producer(&self, p: Arc<kafka::Producer>) {
        if !Arc::ptr_eq(&p, &self.slot.get()) {
            retire(&self.retire, Box::new(move || drop(p)));
        }
    }

    fn release_consumer(&self, c: Arc<ConsumerClient>) {
        let current = matches!(&*self.consumer.borrow(), Some(cur) if Arc::ptr_eq(cur, &c));
        if !current {
            retire(&self.retire, consumer_closer(c));
        }
    }

    /// Discards the consumer. librdkafka 2.12's fetcher crashes (NULL topic name in
    /// `rd_kafka_metadata_update_op`) when a broker answers a fetch with a leader hint but
    /// no topic id, which tansu does for a partition it no longer knows, i.e. right after a
    /// restart without storage. So a lost relay stops fetching at once and subscribes again
    /// with a new consumer only after its topics were re-created.
    fn drop_consumer(&self) {
        // Bumping the generation first mutes the old consumer's callbacks.
        self.signals.consumer_gen.fetch_add(1, Ordering::Relaxed);
        self.signals.assigned.store(0, Ordering::Relaxed);
        if let Some(old) = self.consumer.borrow_mut().take() {
            retire(&self.retire, consumer_closer(old));
        }
    }

    fn new_consumer(&self) {
        match kafka::consumer(&self.cfg, &self.signals) {
            Ok(c) => {
                if let Some(old) = self.consumer.borrow_mut().replace(Arc::new(c)) {
                    retire(&self.retire, consumer_closer(old));
                }
            }
            Err(e) => tracing::warn!(error = %e, "relay: consumer rebuild failed"),
        }
    }

    /// Throws the clients away and builds new ones (the known cure for librdkafka stuck
    /// against a broker that restarted with no memory of the group or producer id).
    fn rebuild(&self, producer_too: bool) {
        RelayCounters::bump(&self.signals.counters.clients_recreated);
        tracing::warn!(producer_too, "relay: rebuilding kafka clients");
        self.drop_consumer();
        match kafka::admin(&self.cfg) {
            Ok(a) => {
                let old = std::mem::replace(&mut *self.admin.borrow_mut(), Arc::new(a));
                retire(&self.retire, Box::new(move || drop(old)));
            }
            Err(e) => tracing::warn!(error = %e, "relay: admin rebuild failed"),
        }
        if producer_too {
            self.rebuild_producer();
        }
    }

    fn rebuild_producer(&self) {
        RelayCounters::bump(&self.signals.counters.clients_recreated);
        self.producer_built.set(Instant::now());
        self.signals.producer_fatal.store(false, Ordering::Relaxed);
        match kafka::producer(&self.cfg, &self.signals) {
            Ok(p) => {
                let old = self.slot.replace(p);
                retire(&self.retire, Box::new(move || drop(old)));
            }
            Err(e) => tracing::warn!(error = %e, "relay: producer rebuild failed"),
        }
    }

    /// A healthy relay's assignment against the topic's `parts` partitions: `Some(reason)`
    /// once the consumer has held fewer for longer than [`ASSIGNMENT_GRACE`] (counted,
    /// logged; losing the relay rebuilds the consumer and reconciles the users).
    fn check_assignment(&self, parts: usize) -> Option<String> {
        if self.health.get() != Health::Up {
            return None;
        }
        let assigned = self.signals.assigned.load(Ordering::Relaxed);
        if assigned >= parts {
            self.short_since.set(None);
            return None;
        }
        let since = match self.short_since.get() {
            Some(t) => t,
            None => {
                self.short_since.set(Some(Instant::now()));
                return None;
            }
        };
        if since.elapsed() < ASSIGNMENT_GRACE {
            return None;
        }
        self.short_since.set(None);
        RelayCounters::bump(&self.signals.counters.assignment_incomplete);
        tracing::warn!(
            node = %self.cfg.node_id,
            assigned,
            partitions = parts,
            "relay: consumer holds only part of its delivery topic; rebuilding it"
        );
        Some(format!(
            "consumer holds {assigned} of {parts} partitions of its delivery topic"
        ))
    }

    async fn lose(&self, reason: String) {
        let now = Instant::now();
        tracing::warn!(node = %self.cfg.node_id, %reason, "relay lost");
        self.health.set(Health::Lost {
            since: now,
            rebuilt: now,
            fresh_producer: false,
        });
        RelayCounters::bump(&self.signals.counters.lost);
        self.short_since.set(None);
        self.drop_consumer();
        self.broadcast(RelayEvent::Lost { reason }).await;
    }

    async fn restore(&self) {
        tracing::info!(node = %self.cfg.node_id, "relay restored");
        self.health.set(Health::Up);
        RelayCounters::bump(&self.signals.counters.restored);
        self.broadcast(RelayEvent::Restored).await;
    }

    /// The main future: runs until the stop flag is set.
    pub(crate) async fn health_loop(self: Rc<Self>) {
        while !self.stopping() {
            glommio::timer::sleep(HEALTH_TICK).await;
            self.signals.counters.assigned_partitions.store(
                self.signals.assigned.load(Ordering::Relaxed) as u64,
                Ordering::Relaxed,
            );
            if self.signals.producer_fatal.load(Ordering::Relaxed) {
                self.rebuild_producer();
            }
            let flagged = self.signals.take_lost();
            match self.health.get() {
                Health::Starting | Health::Up => {
                    let suspect = self.signals.suspect.swap(false, Ordering::Relaxed);
                    let failing = self.signals.delivery_failed.swap(false, Ordering::Relaxed);
                    if suspect || failing || flagged.is_some() {
                        tracing::debug!(node = %self.cfg.node_id, suspect, failing, ?flagged, "relay up: signals");
                    }
                    // Starting: probe every tick (restoring needs the partition count).
                    // Up: also every ASSIGNMENT_CHECK, to compare the assignment with it.
                    let check_due = self.health.get() == Health::Starting
                        || self.last_check.get().elapsed() >= ASSIGNMENT_CHECK;
                    if check_due {
                        self.last_check.set(Instant::now());
                    }
                    let reason = match flagged {
                        Some(r) => Some(r),
                        // A transport error or a failed delivery: look. Either is often a
                        // blip, but a broker that restarted quickly (no AllBrokersDown seen)
                        // shows up here as a forgotten topic.
                        None if suspect || failing || check_due => match self.probe().await {
                            // A routine check that times out is librdkafka's to report
                            // (all brokers down); only a suspicion makes it a loss.
                            Err(e) if suspect || failing => {
                                Some(format!("broker unreachable: {e}"))
                            }
                            Err(e) => {
                                tracing::debug!(error = %e, "relay: assignment check failed");
                                None
                            }
                            Ok(0) => Some("delivery topic gone (broker restarted?)".into()),
                            Ok(parts) => {
                                self.grow_if_short(parts).await;
                                if failing
                                    && self.producer_built.get().elapsed()
                                        >= self.cfg.recreate_after
                                {
                                    // Deliveries fail while the broker answers: the
                                    // idempotent producer may be stuck on a producer id the
                                    // broker forgot. A new one costs little.
                                    self.rebuild_producer();
                                }
                                self.check_assignment(parts)
                            }
                        },
                        None => None,
                    };
                    if let Some(reason) = reason {
                        self.lose(reason).await;
                    } else if self.health.get() == Health::Starting && self.fully_assigned() {
                        self.restore().await;
                    }
                }
                Health::Lost {
                    since,
                    rebuilt,
                    fresh_producer,
                } => {
                    let probe = self.probe().await;
                    let mut ready = probe.is_ok();
                    self.signals.delivery_failed.store(false, Ordering::Relaxed);
                    if ready && !fresh_producer {
                        // A broker answers again. The idempotent producer's id and sequence
                        // numbers may be unknown to it now (a broker without storage
                        // restarted), which leaves librdkafka timing out every record:
                        // start a new producer (records queued in the old one come back
                        // as failures).
                        self.rebuild_producer();
                        self.health.set(Health::Lost {
                            since,
                            rebuilt,
                            fresh_producer: true,
                        });
                    }
                    if ready {
                        let admin = self.admin.borrow().clone();
                        let created = kafka::ensure_topics(&admin, &self.cfg, PROBE_TIMEOUT).await;
                        if !Arc::ptr_eq(&admin, &self.admin.borrow()) {
                            retire(&self.retire, Box::new(move || drop(admin)));
                        }
                        if let Err(e) = created {
                            tracing::debug!(error = %e, "relay: topics not ready");
                            ready = false;
                        }
                    }
                    if ready && self.consumer.borrow().is_none() {
                        // Topics exist again: subscribe afresh (see `drop_consumer`), and
                        // give the new member a full `recreate_after` to join.
                        self.new_consumer();
                        self.health.set(Health::Lost {
                            since,
                            rebuilt: Instant::now(),
                            fresh_producer: true,
                        });
                        continue;
                    }
                    // Anything flagged while we were lost restarts the wait for a clean run.
                    let quiet = self.signals.take_lost().is_none() && flagged.is_none();
                    if let Ok(parts) = probe {
                        self.grow_if_short(parts).await;
                    }
                    tracing::debug!(
                        node = %self.cfg.node_id,
                        ?probe,
                        ready,
                        quiet,
                        assigned = self.signals.assigned.load(Ordering::Relaxed),
                        "relay lost: recovery tick"
                    );
                    // Restored only once the consumer holds every partition the topic has
                    // (a partial assignment would leave some users' records unread).
                    if ready && quiet && matches!(probe, Ok(p) if p > 0) && self.fully_assigned() {
                        self.signals.suspect.store(false, Ordering::Relaxed);
                        self.restore().await;
                    } else if rebuilt.elapsed() >= self.cfg.recreate_after {
                        self.rebuild(probe.is_err());
                        self.health.set(Health::Lost {
                            since,
                            rebuilt: Instant::now(),
                            fresh_producer: probe.is_ok(),
                        });
                    }
                }
            }
        }
        // Let the pumps finish their blocking poll (≤ POLL_WAIT) and exit. A pump stuck on
        // a full shard ring is abandoned after STOP_WAIT.
        let deadline = Instant::now() + STOP_WAIT;
        while self.pumps.get() > 0 && Instant::now() < deadline {
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
    }
}
