//! Every metric name, declared once (Prometheus text format, `rtc_socket_` prefix).

/// Gauge: open WebSocket connections (after the upgrade), per shard.
pub const ACTIVE_CONNECTIONS: &str = "rtc_socket_active_connections";
/// Counter: HTTP/WebSocket handshakes by result (`ok` or why it was refused), per shard.
pub const HANDSHAKES_TOTAL: &str = "rtc_socket_handshakes_total";
/// Counter: messages written to a recipient's socket (the deliver rate is its `rate()`).
pub const DELIVERED_TOTAL: &str = "rtc_socket_delivered_total";
/// Counter: client messages received (`type: message`).
pub const RECEIVED_TOTAL: &str = "rtc_socket_received_total";
/// Histogram: seconds from commit (append to the recipient's log) to the socket write.
pub const LATENCY: &str = "rtc_socket_latency";
/// Gauge: messages waiting in outbound buffers, per shard.
pub const QUEUE_DEPTH: &str = "rtc_socket_queue_depth";
/// Counter: connections that came with a resume token.
pub const RECONNECTS_TOTAL: &str = "rtc_socket_reconnects_total";
/// Counter: resumes whose replay started from the client's offset.
pub const RESUME_SUCCESS_TOTAL: &str = "rtc_socket_resume_success_total";
/// Counter: dropped items by reason (full ring, drop-oldest, slow consumer, …).
pub const DROPS_TOTAL: &str = "rtc_socket_drops_total";
/// Counter: connections closed by the server, by close code.
pub const CLOSES_TOTAL: &str = "rtc_socket_server_closes_total";
/// Gauge: 1 while the node drains (readiness false).
pub const DRAINING: &str = "rtc_socket_draining";
/// Gauge: shards (executors) of this node.
pub const SHARDS: &str = "rtc_socket_shards";
/// Gauge: the ring version this node places users under (0 = no ring: standalone).
pub const RING_VERSION: &str = "rtc_socket_ring_version";
/// Counter: heartbeats to control by result (`sent`, `refused`, `failed`).
pub const HEARTBEATS_TOTAL: &str = "rtc_socket_heartbeats_total";
/// Counter: handshakes answered `redirect` + 4003 (the user is owned by another node).
pub const REDIRECTS_TOTAL: &str = "rtc_socket_redirects_total";
/// Counter: connected users sent `drain` + 4007 because a ring change moved them away.
pub const REBALANCE_DRAINS_TOTAL: &str = "rtc_socket_rebalance_drains_total";
/// Counter: relay health events seen by the shards (`lost`, `restored` → reconcile).
pub const RELAY_EVENTS_TOTAL: &str = "rtc_socket_relay_events_total";
/// Counter: relay outcomes counted by the relay thread (`RelayCounters`), by `outcome`.
pub const RELAY_TOTAL: &str = "rtc_socket_relay_total";
/// Gauge: partitions of this node's delivery topic its relay consumer holds now.
pub const RELAY_ASSIGNED_PARTITIONS: &str = "rtc_socket_relay_assigned_partitions";
/// Gauge: partitions the broker reports for this node's delivery topic (0 = missing).
pub const RELAY_TOPIC_PARTITIONS: &str = "rtc_socket_relay_topic_partitions";
