//! Control and analytics events: JSON records to `<prefix>.events.control` and
//! `<prefix>.events.analytics`, fire-and-forget but counted.
//!
//! An [`EventPublisher`] enqueues straight into librdkafka (a non-blocking call, safe from
//! any thread, shards included): events are rare next to messages and need no shard ring.
//! A refused enqueue and a failed delivery both count `events_failed`; an acknowledged one
//! counts `events_published`.

use std::sync::{Arc, RwLock};

use rdkafka::producer::BaseRecord;

use super::counters::RelayCounters;
use super::kafka::{Producer, Tag, EVENT_TAG};

/// The two events topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventTopic {
    /// `<prefix>.events.control`: ring versions, drains, scale decisions
    /// ([`rtc_protocol::control::ControlEvent`], published by control).
    Control,
    /// `<prefix>.events.analytics`: connects, disconnects, per-user activity.
    Analytics,
}

impl EventTopic {
    /// The topic name under `prefix`.
    pub fn name(self, prefix: &str) -> String {
        // Named once, in the protocol crate: control publishes to the same topic.
        match self {
            EventTopic::Control => rtc_protocol::control::control_events_topic(prefix),
            EventTopic::Analytics => rtc_protocol::control::analytics_events_topic(prefix),
        }
    }
}

/// The current producer; replaced whole when the relay rebuilds its clients.
pub(crate) struct ProducerSlot {
    current: RwLock<Arc<Producer>>,
}

impl std::fmt::Debug for ProducerSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProducerSlot")
    }
}

impl ProducerSlot {
    pub(crate) fn new(p: Producer) -> Self {
        Self {
            current: RwLock::new(Arc::new(p)),
        }
    }
    pub(crate) fn get(&self) -> Arc<Producer> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    /// Installs `p`, returning the old producer (for retirement off this thread).
    pub(crate) fn replace(&self, p: Producer) -> Arc<Producer> {
        let mut cur = self.current.write().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *cur, Arc::new(p))
    }
}

/// Publishes control/analytics events. Cheap to clone; usable from any thread.
#[derive(Debug, Clone)]
pub struct EventPublisher {
    pub(crate) slot: Arc<ProducerSlot>,
    pub(crate) control_topic: Arc<str>,
    pub(crate) analytics_topic: Arc<str>,
    pub(crate) counters: Arc<RelayCounters>,
}

impl EventPublisher {
    /// Enqueues one JSON event keyed by `key` (e.g. the node or user id, so one key's events
    /// stay in order). `false` when librdkafka refused it at once (queue full, unknown
    /// topic…); counted either way.
    pub fn publish(&self, topic: EventTopic, key: &str, json: &[u8]) -> bool {
        let name: &str = match topic {
            EventTopic::Control => &self.control_topic,
            EventTopic::Analytics => &self.analytics_topic,
        };
        let record = BaseRecord::with_opaque_to(
            name,
            Box::new(Tag {
                shard: EVENT_TAG,
                token: 0,
            }),
        )
        .key(key)
        .payload(json);
        match self.slot.get().send(record) {
            Ok(()) => true,
            Err((e, _)) => {
                tracing::debug!(error = %e, "event not enqueued");
                RelayCounters::bump(&self.counters.events_failed);
                false
            }
        }
    }

    /// [`EventPublisher::publish`] of a JSON value.
    pub fn publish_value(&self, topic: EventTopic, key: &str, event: &serde_json::Value) -> bool {
        match serde_json::to_vec(event) {
            Ok(bytes) => self.publish(topic, key, &bytes),
            Err(_) => {
                RelayCounters::bump(&self.counters.events_failed);
                false
            }
        }
    }
}
