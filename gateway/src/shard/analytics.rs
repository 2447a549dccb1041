//! Analytics events: a `connect` when a user's connection is attached (its `welcome` sent)
//! and a `disconnect` when an attached connection ends, as
//! [`rtc_protocol::control::AnalyticsEvent`] JSON records on `<prefix>.events.analytics`,
//! keyed by user (`KAFKA_BROKERS` only).
//!
//! Best effort by design: the record is handed to librdkafka's bounded queue from the shard
//! (a non-blocking call, [`crate::relay::EventPublisher`]) after the fact, so a slow or absent
//! broker never delays a client; a record that cannot be queued is counted
//! (`rtc_socket_relay_total{outcome="events_failed"}`) and dropped.

use rtc_protocol::control::{AnalyticsEvent, ANALYTICS_EVENT_VERSION};

use super::unix_ms;
use super::Shard;
use crate::conn::ConnShared;
use crate::relay::EventTopic;

/// `conn` of `user` was attached; `resumed` when the client presented a resume token.
pub fn connected(shard: &Shard, conn: &ConnShared, user: &str, resumed: bool) {
    let now = unix_ms();
    conn.attached_at_ms.set(now);
    publish(
        shard,
        AnalyticsEvent::Connect {
            v: ANALYTICS_EVENT_VERSION,
            user: user.to_owned(),
            node_id: shard.node.config.node_id.clone(),
            shard: shard.id as u32,
            conn: conn.id,
            at_ms: now,
            resumed,
        },
    );
}

/// `conn` of `user` ended; nothing when it was never attached (refused before `welcome`).
pub fn disconnected(shard: &Shard, conn: &ConnShared, user: &str) {
    let since = conn.attached_at_ms.replace(0);
    if since == 0 {
        return;
    }
    let now = unix_ms();
    publish(
        shard,
        AnalyticsEvent::Disconnect {
            v: ANALYTICS_EVENT_VERSION,
            user: user.to_owned(),
            node_id: shard.node.config.node_id.clone(),
            shard: shard.id as u32,
            conn: conn.id,
            at_ms: now,
            connected_ms: now.saturating_sub(since),
        },
    );
}

fn publish(shard: &Shard, event: AnalyticsEvent) {
    let Some(relay) = shard.relay.as_ref() else {
        return;
    };
    match serde_json::to_vec(&event) {
        Ok(json) => {
            relay
                .events()
                .publish(EventTopic::Analytics, event.key(), &json);
        }
        Err(e) => tracing::warn!(shard = shard.id, error = %e, "analytics event not encoded"),
    }
}
