//! Control events to Kafka: every ring version (with its diffs), every drain and every
//! scaling decision, as [`ControlEvent`] JSON records on `<prefix>.events.control` — the
//! topic gateway nodes also create (one partition, so one order), named once in
//! `rtc_protocol::control::control_events_topic`. Schema and keys: [`ControlEvent`].
//!
//! On when `KAFKA_BROKERS` is set (`KAFKA_TOPIC_PREFIX`, default `rtc`). Only the leader
//! publishes (only the leader applies changes and decides), so an event is published once.
//!
//! # Never in the API's way
//! [`EventSink::publish`] is a `try_send` into a bounded queue ([`Config::event_queue`],
//! default [`DEFAULT_EVENT_QUEUE`]) and returns at once; a full queue drops the event and
//! counts it (`rtc_lb_events_total{outcome="dropped"}`). One thread of its own owns the
//! librdkafka producer: it takes events off the queue, hands them to librdkafka (whose own
//! queue is bounded by the same limit; a refusal counts `failed`), serves delivery reports
//! (`published` / `failed`), and creates the topic — at start, and again after a failed
//! delivery (a broker restarted without storage forgets it). A broker that is down only
//! makes events wait in librdkafka up to [`MESSAGE_TIMEOUT`], then count `failed`.
//!
//! # Producer settings and why
//! `acks=all` with one request in flight: retries cannot reorder events; idempotence off
//! (an idempotent producer gets stuck on a broker that forgot its producer id, and a rare
//! duplicate event is harmless: consumers key on `version` / `atMs`).
//! `allow.auto.create.topics=false`: only explicit creation, with one partition (a broker's
//! auto-created topic would get its default partition count and lose the single order).
//! `linger.ms=5`: events are rare and not latency-critical.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rtc_protocol::control::{control_events_topic, ControlEvent, CONTROL_EVENT_VERSION};
use rtc_ring::{Diff, NodeState};

use crate::scaling::Decision;

/// Default events queue bound (`CONTROL_EVENT_QUEUE`): far above what control produces
/// (a few events per ring change, one per scaling interval), so only a long broker outage
/// under heavy churn fills it.
pub const DEFAULT_EVENT_QUEUE: usize = 1024;
/// Largest `CONTROL_EVENT_QUEUE` accepted.
pub const MAX_EVENT_QUEUE: usize = 1_000_000;
/// How long the producer thread waits for an event before serving delivery reports.
const POLL: Duration = Duration::from_millis(100);
/// Least time between two topic-creation attempts.
const ENSURE_RETRY: Duration = Duration::from_secs(2);
/// Timeout of one topic-creation request.
const ENSURE_TIMEOUT: Duration = Duration::from_secs(3);
/// An event not acknowledged by then counts `failed` (librdkafka `message.timeout.ms`).
pub const MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest the thread flushes at shutdown.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

/// Why the event publisher could not start.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// librdkafka refused the client configuration.
    #[error("kafka client: {0}")]
    Kafka(String),
    /// The producer thread could not be started.
    #[error("events thread: {0}")]
    Thread(String),
}

/// What happened to published events (rendered as `rtc_lb_events_total{outcome=…}`).
#[derive(Debug, Default)]
pub struct EventCounters {
    /// Acknowledged by the broker.
    pub published: AtomicU64,
    /// Refused by librdkafka or not acknowledged within [`MESSAGE_TIMEOUT`].
    pub failed: AtomicU64,
    /// Dropped because the bounded queue was full (or the thread had stopped).
    pub dropped: AtomicU64,
}

/// Where the leader sends its events. Cheap to clone; `publish` never blocks.
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: SyncSender<ControlEvent>,
    counters: Arc<EventCounters>,
}

impl EventSink {
    /// Starts the producer thread for `brokers` (topic `<prefix>.events.control`, queue
    /// bound `queue`), counting into `counters`. Returns at once: the broker may be down.
    pub fn start(
        brokers: &str,
        prefix: &str,
        queue: usize,
        counters: Arc<EventCounters>,
    ) -> Result<EventSink, EventsError> {
        let queue = queue.clamp(1, MAX_EVENT_QUEUE);
        let topic = control_events_topic(prefix);
        let mut base = ClientConfig::new();
        base.set("bootstrap.servers", brokers)
            .set("client.id", format!("{prefix}-control"))
            .set("allow.auto.create.topics", "false")
            .set("reconnect.backoff.ms", "50")
            .set("reconnect.backoff.max.ms", "1000");
        let admin: AdminClient<DefaultClientContext> = base
            .create()
            .map_err(|e| EventsError::Kafka(format!("admin client: {e}")))?;
        let topic_gone = Arc::new(AtomicBool::new(false));
        let mut pc = base.clone();
        pc.set("acks", "all")
            .set("enable.idempotence", "false")
            .set("max.in.flight.requests.per.connection", "1")
            .set("linger.ms", "5")
            .set(
                "message.timeout.ms",
                MESSAGE_TIMEOUT.as_millis().to_string(),
            )
            .set("queue.buffering.max.messages", queue.to_string());
        let producer: BaseProducer<Ctx> = pc
            .create_with_context(Ctx {
                counters: counters.clone(),
                topic_gone: topic_gone.clone(),
            })
            .map_err(|e| EventsError::Kafka(format!("producer: {e}")))?;
        let (tx, rx) = mpsc::sync_channel::<ControlEvent>(queue);
        let c = counters.clone();
        std::thread::Builder::new()
            .name("control-events".into())
            .spawn(move || run(rx, producer, admin, topic, topic_gone, c))
            .map_err(|e| EventsError::Thread(e.to_string()))?;
        Ok(EventSink { tx, counters })
    }

    /// Queues `event` without waiting; a full queue drops it (counted).
    pub fn publish(&self, event: ControlEvent) {
        match self.tx.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Publishes a new ring version made by `diffs`, and a `drain` event for each node
    /// they set draining.
    pub fn ring_changed(
        &self,
        version: u64,
        nodes: usize,
        diffs: &[Diff],
        cause: &str,
        at_ms: u64,
    ) {
        self.publish(ControlEvent::RingVersion {
            v: CONTROL_EVENT_VERSION,
            version,
            at_ms,
            cause: cause.to_owned(),
            diffs: diffs.to_vec(),
            nodes: u32::try_from(nodes).unwrap_or(u32::MAX),
        });
        for d in diffs {
            if let Diff::SetState {
                id,
                state: NodeState::Draining,
            } = d
            {
                self.publish(ControlEvent::Drain {
                    v: CONTROL_EVENT_VERSION,
                    node_id: id.clone(),
                    version,
                    at_ms,
                    cause: cause.to_owned(),
                });
            }
        }
    }

    /// Publishes a scaling decision.
    pub fn decided(&self, d: &Decision) {
        self.publish(ControlEvent::ScaleDecision {
            v: CONTROL_EVENT_VERSION,
            at_ms: d.at_ms,
            decision: d.kind.as_str().to_owned(),
            desired: d.desired,
            current: d.inputs.current,
            target: d.terms.target,
            total_conn: d.inputs.total_conn,
            total_mps: d.inputs.total_mps,
            p95_ms: d.inputs.p95_ms,
            reason: d.reason.clone(),
        });
    }
}

/// Producer callbacks (librdkafka's threads): count delivery reports.
struct Ctx {
    counters: Arc<EventCounters>,
    /// A delivery failed: the topic may be gone (broker restarted); re-create it.
    topic_gone: Arc<AtomicBool>,
}

impl ClientContext for Ctx {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::warn!(fac, msg = log_message, "librdkafka")
            }
            _ => tracing::debug!(fac, msg = log_message, "librdkafka"),
        }
    }
}

impl ProducerContext for Ctx {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.counters.published.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                self.topic_gone.store(true, Ordering::Relaxed);
                tracing::debug!(error = %e, "control event not delivered");
            }
        }
    }
}

/// The producer thread: until every [`EventSink`] is dropped.
fn run(
    rx: mpsc::Receiver<ControlEvent>,
    producer: BaseProducer<Ctx>,
    admin: AdminClient<DefaultClientContext>,
    topic: String,
    topic_gone: Arc<AtomicBool>,
    counters: Arc<EventCounters>,
) {
    // The admin API is async; a one-thread runtime of our own keeps it off control's.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "control events: no runtime; events are dropped");
            return;
        }
    };
    let mut topic_ok = false;
    let mut last_ensure: Option<Instant> = None;
    loop {
        if topic_gone.swap(false, Ordering::Relaxed) {
            topic_ok = false;
        }
        if !topic_ok && last_ensure.is_none_or(|t| t.elapsed() >= ENSURE_RETRY) {
            last_ensure = Some(Instant::now());
            match rt.block_on(ensure_topic(&admin, &topic)) {
                Ok(()) => topic_ok = true,
                Err(e) => tracing::debug!(error = %e, %topic, "control events topic not ready"),
            }
        }
        match rx.recv_timeout(POLL) {
            Ok(event) => {
                send(&producer, &topic, &event, &counters);
                // Take whatever else is queued before serving reports.
                while let Ok(event) = rx.try_recv() {
                    send(&producer, &topic, &event, &counters);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        producer.poll(Duration::ZERO);
    }
    let _ = producer.flush(FLUSH_TIMEOUT);
}

fn send(producer: &BaseProducer<Ctx>, topic: &str, event: &ControlEvent, c: &EventCounters) {
    let json = match serde_json::to_vec(event) {
        Ok(j) => j,
        Err(_) => {
            c.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let record = BaseRecord::to(topic).key(event.key()).payload(&json);
    if let Err((e, _)) = producer.send(record) {
        c.failed.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(error = %e, "control event refused by librdkafka");
    }
}

/// Creates the events topic with one partition; "already exists" is success.
async fn ensure_topic(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
) -> Result<(), String> {
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().request_timeout(Some(ENSURE_TIMEOUT));
    let results = admin
        .create_topics([&new], &opts)
        .await
        .map_err(|e| e.to_string())?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(format!("create {name}: {code}")),
        }
    }
    Ok(())
}
