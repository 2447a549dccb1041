//! The librdkafka side: client contexts (callbacks that run on librdkafka's threads and only
//! record into [`Signals`]), client construction with the documented settings, and topic
//! creation.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, DeliveryResult, ProducerContext};
use rdkafka::statistics::{Statistics, Window};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::config::{group_id, RelayConfig};
use super::counters::RelayCounters;
use super::{ProduceFailure, RelayStartError};

/// Delivery tag `shard` value of a control/analytics event (no shard to report to).
pub(crate) const EVENT_TAG: u32 = u32::MAX;
/// Longest failure reason text kept (librdkafka reasons are short; this bounds copies).
const MAX_REASON_LEN: usize = 200;
/// Most delivery failures parked for the producer pump; the librdkafka queue bound
/// (`producer_queue`) already bounds them, this guards against a pump that stopped.
pub(crate) const MAX_PARKED_FAILURES: usize = 1 << 20;

/// What librdkafka's callbacks tell the relay executor. Written on librdkafka threads, read
/// by the relay executor after each poll returns (so never on a shard).
#[derive(Debug)]
pub(crate) struct Signals {
    /// Why the relay was lost, set by a callback; taken by the health loop.
    pub lost: Mutex<Option<String>>,
    /// A transport error was seen: the health loop probes the broker to decide.
    pub suspect: AtomicBool,
    /// The (idempotent) producer hit a fatal error and must be rebuilt.
    pub producer_fatal: AtomicBool,
    /// A delivery to a node failed since the health loop last looked.
    pub delivery_failed: AtomicBool,
    /// Partitions the consumer holds now (0 before the first assignment / after revoke).
    pub assigned: AtomicUsize,
    /// Partitions the broker reports for this node's delivery topic, as of the last
    /// metadata probe (0 = unknown or topic missing).
    pub topic_partitions: AtomicUsize,
    /// Failed deliveries `(shard, failure)` waiting for the producer pump.
    pub failures: Mutex<Vec<(u32, ProduceFailure)>>,
    /// The shared counters.
    pub counters: Arc<RelayCounters>,
    /// Generation of the live producer / consumer: callbacks of a discarded client (still
    /// closing on the retirement thread) must not raise health signals.
    pub producer_gen: AtomicU64,
    pub consumer_gen: AtomicU64,
}

impl Signals {
    pub(crate) fn new(counters: Arc<RelayCounters>) -> Self {
        Self {
            lost: Mutex::new(None),
            suspect: AtomicBool::new(false),
            producer_fatal: AtomicBool::new(false),
            delivery_failed: AtomicBool::new(false),
            assigned: AtomicUsize::new(0),
            topic_partitions: AtomicUsize::new(0),
            failures: Mutex::new(Vec::new()),
            counters,
            producer_gen: AtomicU64::new(0),
            consumer_gen: AtomicU64::new(0),
        }
    }

    pub(crate) fn flag_lost(&self, reason: String) {
        let mut lost = self.lost.lock().unwrap_or_else(|e| e.into_inner());
        if lost.is_none() {
            *lost = Some(reason);
        }
    }

    pub(crate) fn take_lost(&self) -> Option<String> {
        self.lost.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn client_error(&self, error: &KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            // librdkafka also reports "0/1 brokers are down" under this code (a bootstrap
            // connection replaced by the real broker's): only a probe can tell.
            Some(RDKafkaErrorCode::AllBrokersDown) if reason.starts_with("0/") => {
                self.suspect.store(true, Ordering::Relaxed);
            }
            Some(RDKafkaErrorCode::AllBrokersDown) => {
                self.flag_lost(format!("all brokers down: {}", short(reason)));
            }
            Some(RDKafkaErrorCode::BrokerTransportFailure) => {
                RelayCounters::bump(&self.counters.transport_errors);
                self.suspect.store(true, Ordering::Relaxed);
            }
            // The broker forgot this idempotent producer (it restarted without storage):
            // librdkafka refuses every record from now on; a new producer fixes it.
            Some(
                RDKafkaErrorCode::UnknownProducerId
                | RDKafkaErrorCode::InvalidProducerEpoch
                | RDKafkaErrorCode::OutOfOrderSequenceNumber
                | RDKafkaErrorCode::InvalidProducerIdMapping,
            ) => {
                self.producer_fatal.store(true, Ordering::Relaxed);
            }
            Some(RDKafkaErrorCode::Fatal) => {
                self.producer_fatal.store(true, Ordering::Relaxed);
                self.flag_lost(format!("fatal client error: {}", short(reason)));
            }
            _ => {
                tracing::debug!(%error, reason, "kafka client error");
            }
        }
    }
}

fn short(s: &str) -> String {
    let mut end = s.len().min(MAX_REASON_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

fn log_to_tracing(level: RDKafkaLogLevel, fac: &str, msg: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::warn!(fac, msg, "librdkafka"),
        _ => tracing::debug!(fac, msg, "librdkafka"),
    }
}

/// `avg/p50/p99` of a librdkafka latency window, in µs (`-` when absent or empty).
fn window(w: Option<&Window>) -> String {
    match w {
        Some(w) if w.cnt > 0 => format!("{}/{}/{}", w.avg, w.p50, w.p99),
        _ => "-".into(),
    }
}

/// One log line per broker of a client's statistics (`KAFKA_STATS_MS`): cumulative request
/// counts (all, Produce, Fetch) and the latency windows of the last interval — librdkafka's
/// producer queue (`int_latency`: enqueue → put in a request), request queue
/// (`outbuf_latency`: request built → written to the socket) and broker round trip (`rtt`).
fn log_stats(client: &str, stats: &Statistics) {
    for b in stats.brokers.values().filter(|b| b.nodeid >= 0) {
        let req = |k: &str| b.req.get(k).copied().unwrap_or(0);
        tracing::info!(
            client,
            broker = %b.name,
            msgs_tx = stats.txmsgs,
            msgs_rx = stats.rxmsgs,
            requests_tx = b.tx,
            produce_requests = req("Produce"),
            fetch_requests = req("Fetch"),
            int_latency_us = %window(b.int_latency.as_ref()),
            outbuf_latency_us = %window(b.outbuf_latency.as_ref()),
            rtt_us = %window(b.rtt.as_ref()),
            "relay kafka stats"
        );
    }
}

/// Which shard (or [`EVENT_TAG`]) a produce belongs to, and the shard's token for it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tag {
    pub shard: u32,
    pub token: u64,
}

/// Producer callbacks: delivery reports are counted; failures are parked for the pump.
#[derive(Debug)]
pub(crate) struct ProducerCtx {
    pub signals: Arc<Signals>,
    /// This producer's generation (see [`Signals::producer_gen`]).
    pub gen: u64,
}

impl ProducerCtx {
    fn live(&self) -> bool {
        self.signals.producer_gen.load(Ordering::Relaxed) == self.gen
    }
}

impl ClientContext for ProducerCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_to_tracing(level, fac, log_message);
    }
    fn stats(&self, statistics: Statistics) {
        log_stats("producer", &statistics);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        if self.live() {
            self.signals.client_error(&error, reason);
        }
    }
}

impl ProducerContext for ProducerCtx {
    type DeliveryOpaque = Box<Tag>;

    fn delivery(&self, result: &DeliveryResult<'_>, tag: Box<Tag>) {
        let c = &self.signals.counters;
        match (result, tag.shard == EVENT_TAG) {
            (Ok(_), false) => RelayCounters::bump(&c.produced),
            (Ok(_), true) => RelayCounters::bump(&c.events_published),
            (Err(_), true) => RelayCounters::bump(&c.events_failed),
            (Err((e, _)), false) => {
                RelayCounters::bump(&c.produce_failed);
                self.signals.delivery_failed.store(true, Ordering::Relaxed);
                if e.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) && self.live() {
                    self.signals.producer_fatal.store(true, Ordering::Relaxed);
                }
                let mut f = self
                    .signals
                    .failures
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if f.len() < MAX_PARKED_FAILURES {
                    f.push((
                        tag.shard,
                        ProduceFailure {
                            token: tag.token,
                            reason: short(&e.to_string()),
                        },
                    ));
                }
            }
        }
    }
}

/// Consumer callbacks: assignment changes and errors.
#[derive(Debug)]
pub(crate) struct ConsumerCtx {
    pub signals: Arc<Signals>,
    /// This consumer's generation (see [`Signals::consumer_gen`]).
    pub gen: u64,
}

impl ConsumerCtx {
    fn live(&self) -> bool {
        self.signals.consumer_gen.load(Ordering::Relaxed) == self.gen
    }
}

impl ClientContext for ConsumerCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_to_tracing(level, fac, log_message);
    }
    fn stats(&self, statistics: Statistics) {
        log_stats("consumer", &statistics);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        if self.live() {
            self.signals.client_error(&error, reason);
        }
    }
}

// No rebalance callbacks: the consumer assigns itself its partitions (see `consumer`), so
// there is no group membership to gain or lose.
impl ConsumerContext for ConsumerCtx {}

pub(crate) type Producer = BaseProducer<ProducerCtx>;
pub(crate) type ConsumerClient = BaseConsumer<ConsumerCtx>;

/// Settings shared by every client: fast failure detection, small reconnect backoff.
fn base_config(cfg: &RelayConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("client.id", format!("{}-{}", cfg.prefix, cfg.node_id))
        // Reconnect quickly after a broker restart; the defaults back off to 10 s.
        .set("reconnect.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "1000")
        // Notice a re-created topic soon (its metadata changed under us).
        .set("topic.metadata.refresh.interval.ms", "5000")
        .set("socket.keepalive.enable", "true")
        // TCP_NODELAY: librdkafka leaves Nagle on by default, which holds a small request
        // written while an earlier one is unacknowledged (a produce behind a produce, a
        // fetch behind a heartbeat). Every relay request is small and latency-bound.
        .set("socket.nagle.disable", "true")
        // Never let a metadata request create a topic. librdkafka's producer asks the
        // broker to auto-create any topic it looks up (its default), and the broker then
        // creates it with *its* default partition count (tansu: 4), not ours (8). After a
        // broker restart without storage, the relay's first metadata probe (or a peer's
        // produce to this node's topic) recreated `<prefix>.deliver.<node>` that way before
        // `ensure_topics` ran; "already exists" was accepted, and the node's consumer held
        // all 4 partitions of a topic that should have had 8 — a silent misconfiguration.
        // Only `ensure_topics` creates topics now.
        .set("allow.auto.create.topics", "false");
    c
}

/// Statistics (when asked for) and the operator's extra settings, applied last.
fn with_stats_and_extra(c: &mut ClientConfig, stats_ms: u64, extra: &[(String, String)]) {
    if stats_ms > 0 {
        c.set("statistics.interval.ms", stats_ms.to_string());
    }
    for (k, v) in extra {
        c.set(k, v);
    }
}

/// The producer: `linger.ms` ≤ 1, idempotent with `acks=all`.
pub(crate) fn producer(
    cfg: &RelayConfig,
    signals: &Arc<Signals>,
) -> Result<Producer, RelayStartError> {
    let mut c = base_config(cfg);
    c.set("linger.ms", cfg.linger_ms.to_string())
        .set("acks", cfg.acks.as_str())
        .set(
            "enable.idempotence",
            if cfg.acks == super::config::Acks::All {
                "true"
            } else {
                "false"
            },
        )
        .set(
            "max.in.flight.requests.per.connection",
            cfg.max_in_flight.to_string(),
        )
        .set("message.timeout.ms", cfg.message_timeout_ms.to_string())
        .set(
            "queue.buffering.max.messages",
            cfg.producer_queue.to_string(),
        )
        // Records are small JSON-bearing envelopes; compression costs latency for little.
        .set("compression.type", "none");
    with_stats_and_extra(&mut c, cfg.stats_ms, &cfg.producer_extra);
    let gen = signals.producer_gen.fetch_add(1, Ordering::Relaxed) + 1;
    c.create_with_context(ProducerCtx {
        signals: signals.clone(),
        gen,
    })
    .map_err(|e| RelayStartError::Kafka(format!("creating producer: {e}")))
}

/// The consumer of this node's delivery topic, holding all of its `partitions` partitions.
///
/// It *assigns* itself every partition instead of subscribing: a node is the only reader of
/// its delivery topic, so a consumer group's membership buys nothing and costs a lot against
/// a broker that restarts without storage — a joining member waits for members of the old
/// group (a discarded consumer whose close hangs) to rejoin or time out, and a new consumer
/// made in the meantime can end up never assigned, or sharing the partitions with a zombie.
/// The group id only names where offsets are committed (a restarted node resumes near
/// where it stopped). Partitions are counted from the broker's metadata by the caller.
pub(crate) fn consumer(
    cfg: &RelayConfig,
    signals: &Arc<Signals>,
    partitions: usize,
) -> Result<ConsumerClient, RelayStartError> {
    let mut c = base_config(cfg);
    c.set("group.id", group_id(&cfg.prefix, &cfg.node_id))
        .set("session.timeout.ms", cfg.session_timeout_ms.to_string())
        .set(
            "heartbeat.interval.ms",
            (cfg.session_timeout_ms / 3).max(100).to_string(),
        )
        .set("fetch.wait.max.ms", cfg.fetch_wait_ms.to_string())
        .set("fetch.min.bytes", "1")
        // A brand-new group (or a partition wiped by a broker restart) starts at the
        // beginning: nothing produced before the first join is skipped; replays are
        // deduplicated by the session core (client message id).
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.partition.eof", "false");
    with_stats_and_extra(&mut c, cfg.stats_ms, &cfg.consumer_extra);
    let gen = signals.consumer_gen.fetch_add(1, Ordering::Relaxed) + 1;
    signals.assigned.store(0, Ordering::Relaxed);
    let consumer: ConsumerClient = c
        .create_with_context(ConsumerCtx {
            signals: signals.clone(),
            gen,
        })
        .map_err(|e| RelayStartError::Kafka(format!("creating consumer: {e}")))?;
    let topic = cfg.delivery_topic();
    let mut tpl = TopicPartitionList::with_capacity(partitions);
    for p in 0..partitions {
        let p = i32::try_from(p).map_err(|_| RelayStartError::Config("partition count"))?;
        tpl.add_partition_offset(&topic, p, Offset::Stored)
            .map_err(|e| RelayStartError::Kafka(format!("assigning: {e}")))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| RelayStartError::Kafka(format!("assigning: {e}")))?;
    signals.assigned.store(partitions, Ordering::Relaxed);
    tracing::info!(partitions, %topic, "relay consumer assigned");
    Ok(consumer)
}

/// The admin client (topic creation).
pub(crate) fn admin(cfg: &RelayConfig) -> Result<AdminClient<AdminCtx>, RelayStartError> {
    base_config(cfg)
        .create_with_context(AdminCtx)
        .map_err(|e| RelayStartError::Kafka(format!("creating admin client: {e}")))
}

/// Admin client callbacks: logs only (its errors surface as request results).
#[derive(Debug)]
pub(crate) struct AdminCtx;

impl ClientContext for AdminCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        log_to_tracing(level, fac, log_message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(%error, reason, "kafka admin client error");
    }
}

/// Creates this node's delivery topic and the two events topics; "already exists" is
/// success. Run at start and after every recovery (an in-memory broker forgets topics).
pub(crate) async fn ensure_topics(
    admin: &AdminClient<AdminCtx>,
    cfg: &RelayConfig,
    timeout: Duration,
) -> Result<(), String> {
    let names = [
        cfg.delivery_topic(),
        super::events::EventTopic::Control.name(&cfg.prefix),
        super::events::EventTopic::Analytics.name(&cfg.prefix),
    ];
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            // Events topics need no spread: one partition keeps them in order.
            let parts = if i == 0 { cfg.partitions } else { 1 };
            NewTopic::new(n, parts, TopicReplication::Fixed(cfg.replication))
        })
        .collect();
    let opts = AdminOptions::new().request_timeout(Some(timeout));
    let results = admin
        .create_topics(&topics, &opts)
        .await
        .map_err(|e| format!("create topics: {e}"))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(format!("create topic {name}: {code}")),
        }
    }
    Ok(())
}

/// Raises this node's delivery topic to [`RelayConfig::partitions`] partitions. Needed when
/// the topic exists with fewer (created by someone else — e.g. a client that still lets the
/// broker auto-create topics — with the broker's default count).
pub(crate) async fn grow_delivery_topic(
    admin: &AdminClient<AdminCtx>,
    cfg: &RelayConfig,
    timeout: Duration,
) -> Result<(), String> {
    let topic = cfg.delivery_topic();
    let total = usize::try_from(cfg.partitions).map_err(|_| "partitions < 0".to_string())?;
    let opts = AdminOptions::new().request_timeout(Some(timeout));
    let results = admin
        .create_partitions(&[NewPartitions::new(&topic, total)], &opts)
        .await
        .map_err(|e| format!("create partitions: {e}"))?;
    for r in results {
        if let Err((name, code)) = r {
            return Err(format!("create partitions of {name}: {code}"));
        }
    }
    Ok(())
}

/// Partitions the broker reports for `topic` (0: it does not know the topic). Blocking (a
/// metadata round trip of at most `timeout`): call it off the relay executor.
pub(crate) fn topic_partitions<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
    timeout: Duration,
) -> Result<usize, String> {
    client
        .fetch_metadata(Some(topic), timeout)
        .map(|md| {
            md.topics()
                .iter()
                .find(|t| t.name() == topic && t.error().is_none())
                .map_or(0, |t| t.partitions().len())
        })
        .map_err(|e| e.to_string())
}

/// One consumed record, copied out of librdkafka's buffer.
#[derive(Debug)]
pub(crate) struct Consumed {
    pub partition: i32,
    pub offset: i64,
    pub value: Vec<u8>,
}

/// Blocks up to `wait` for the first record, then takes whatever else is ready, up to `max`.
/// Runs on a blocking thread. Errors other than the benign ones are returned for the health
/// loop.
pub(crate) fn poll_batch(
    consumer: &ConsumerClient,
    wait: Duration,
    max: usize,
) -> (Vec<Consumed>, Option<String>) {
    let mut out = Vec::new();
    let mut error = None;
    let mut timeout = wait;
    while out.len() < max {
        match consumer.poll(timeout) {
            None => break,
            Some(Ok(m)) => out.push(Consumed {
                partition: m.partition(),
                offset: m.offset(),
                value: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            }),
            Some(Err(e)) => {
                error = Some(short(&e.to_string()));
                break;
            }
        }
        timeout = Duration::ZERO;
    }
    (out, error)
}
