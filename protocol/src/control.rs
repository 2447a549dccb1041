//! JSON bodies of the control plane's HTTP API (camelCase on the wire).
//!
//! - `POST /v1/heartbeat` — [`Heartbeat`] in, [`HeartbeatResponse`] out.
//! - `GET /v1/connect?userId=U` — [`ConnectResponse`] (where to connect, with a token).
//! - `GET /v1/resolve?userId=U` — [`ResolveResponse`] (who owns a user, no token).
//! - Errors — [`ApiError`] with the HTTP status from [`crate::close::http`].
//! - Kafka `<prefix>.events.control` — [`ControlEvent`] records published by control.
//! - Kafka `<prefix>.events.analytics` — [`AnalyticsEvent`] records published by gateway nodes.
//!
//! Unknown fields are ignored when parsing and optional fields have defaults, so a node and
//! a control plane one version apart still understand each other; [`HEARTBEAT_VERSION`]
//! says which fields a sender knows about.

use serde::{Deserialize, Serialize};

/// The heartbeat schema version this crate writes.
pub const HEARTBEAT_VERSION: u32 = 1;

fn heartbeat_version() -> u32 {
    HEARTBEAT_VERSION
}

fn default_weight() -> u32 {
    1
}

/// A node's periodic report to control (also its registration: the first heartbeat from an
/// unknown node adds it to the ring).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Heartbeat {
    /// The node's id (stable across restarts).
    pub node_id: String,
    /// Open client connections.
    pub active_conn: u64,
    /// Messages delivered per second (recent average).
    pub mps: f64,
    /// 95th percentile delivery latency in ms (recent window).
    pub p95_latency_ms: f64,
    /// Messages queued in outbound buffers and inter-shard rings.
    pub queue_depth: u64,
    /// CPU use as a fraction of the node's cores, 0.0..=1.0.
    pub cpu: f64,
    /// Resident memory, bytes.
    pub mem: u64,
    /// When the heartbeat was taken, unix ms.
    pub ts: u64,
    /// The URL clients connect to (`ws://host:port/ws`).
    #[serde(default)]
    pub public_ws_url: String,
    /// The node's capacity weight on the ring.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Heartbeat schema version the sender writes.
    #[serde(default = "heartbeat_version")]
    pub version: u32,
    /// The ring version the node currently serves under.
    #[serde(default)]
    pub ring_version: u64,
    /// True while the node drains (it must not receive new users).
    #[serde(default)]
    pub draining: bool,
}

/// Control's answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatResponse {
    /// False if control refused the heartbeat (e.g. unknown node while membership is frozen).
    pub accepted: bool,
    /// The ring version control holds: a node behind it fetches the new ring.
    pub ring_version: u64,
    /// The current scaling decision, when one was made.
    #[serde(default)]
    pub maybe_scale: Option<ScaleSignal>,
}

/// Where a user should connect (`/v1/connect`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectResponse {
    /// WebSocket URL to connect to, token included in the query.
    pub ws_url: String,
    /// The connect token (also in `ws_url`).
    pub token: String,
    /// The ring version the placement was made under.
    pub ring_version: u64,
    /// The node chosen.
    #[serde(default)]
    pub node_id: String,
}

/// Who owns a user (`/v1/resolve`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolveResponse {
    /// The owning node.
    pub node_id: String,
    /// Its client URL.
    pub public_ws_url: String,
    /// The ring version the answer holds for.
    pub version: u64,
}

/// The autoscaling decision: `target = max(r_conn, r_mps, r_lat)`, bounded per step and
/// held for a cool-down.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleSignal {
    /// Nodes now.
    pub current: u32,
    /// Nodes wanted.
    pub target: u32,
    /// Nodes needed by connection count.
    pub r_conn: f64,
    /// Nodes needed by message rate.
    pub r_mps: f64,
    /// Nodes needed by latency.
    pub r_lat: f64,
    /// Which ratio decided, or why the decision was held (e.g. "cooldown").
    pub reason: String,
    /// When it was decided, unix ms.
    pub ts: u64,
}

/// Schema version of [`ControlEvent`] (the `v` field of every event).
pub const CONTROL_EVENT_VERSION: u32 = 1;
/// Record key of [`ControlEvent::RingVersion`] (every version in one key: one order).
pub const RING_EVENT_KEY: &str = "ring";
/// Record key of [`ControlEvent::ScaleDecision`].
pub const SCALE_EVENT_KEY: &str = "scale";

/// `<prefix>.events.control`: the Kafka topic of control events (`KAFKA_TOPIC_PREFIX`,
/// default `rtc`). One partition (whoever creates it first — control or a gateway node —
/// creates it so), so consumers see every event in the order control published it.
pub fn control_events_topic(prefix: &str) -> String {
    format!("{prefix}.events.control")
}

/// `<prefix>.events.analytics`: the Kafka topic of analytics events (connects,
/// disconnects), published by gateway nodes.
pub fn analytics_events_topic(prefix: &str) -> String {
    format!("{prefix}.events.analytics")
}

/// One control event: a JSON record on [`control_events_topic`], internally tagged by
/// `type`, camelCase fields, keyed as [`ControlEvent::key`] says.
///
/// ```json
/// {"type":"ringVersion","v":1,"version":4,"atMs":1700000000000,"cause":"operator",
///  "diffs":[{"op":"setState","id":"gw-2","state":"draining"}],"nodes":3}
/// {"type":"drain","v":1,"nodeId":"gw-2","version":4,"atMs":1700000000000,"cause":"operator"}
/// {"type":"scaleDecision","v":1,"atMs":1700000000500,"decision":"scale_out","desired":3,
///  "current":2,"target":3,"totalConn":12000,"totalMps":800.0,"p95Ms":12.5,
///  "reason":"target above current"}
/// ```
///
/// Consumers must ignore unknown fields and unknown `type`s (newer control versions add
/// them); `v` changes only when a field's meaning does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ControlEvent {
    /// A new ring version: the typed diffs that made it (a batch is one version, e.g. a
    /// node's URL change is remove + add).
    #[serde(rename_all = "camelCase")]
    RingVersion {
        /// [`CONTROL_EVENT_VERSION`].
        v: u32,
        /// The version this change produced.
        version: u64,
        /// When it was applied, unix ms.
        at_ms: u64,
        /// Who made it: `operator`, `heartbeat` (a node joined), `expiry` (a node went
        /// silent), `url change`.
        cause: String,
        /// The diffs, in the order applied (`{"op":"addNode",…}`, see `rtc_ring::Diff`).
        diffs: Vec<rtc_ring::Diff>,
        /// Nodes in the ring after the change.
        nodes: u32,
    },
    /// A node was set draining (by an operator, or by the node itself on SIGTERM); its
    /// users move to their new owners. Also published as part of its `ringVersion`.
    #[serde(rename_all = "camelCase")]
    Drain {
        /// [`CONTROL_EVENT_VERSION`].
        v: u32,
        /// The draining node.
        node_id: String,
        /// The ring version that drains it.
        version: u64,
        /// When, unix ms.
        at_ms: u64,
        /// Who asked (see `RingVersion::cause`).
        cause: String,
    },
    /// An autoscaling decision (every decision, `hold` included; one per
    /// `SCALING_INTERVAL_SEC` at most).
    #[serde(rename_all = "camelCase")]
    ScaleDecision {
        /// [`CONTROL_EVENT_VERSION`].
        v: u32,
        /// When it was made, unix ms.
        at_ms: u64,
        /// `scale_out`, `scale_in` or `hold`.
        decision: String,
        /// Replicas to run (the exported metric).
        desired: u32,
        /// Replicas running (live active nodes).
        current: u32,
        /// The raw formula target `max(r_conn, r_mps, r_lat)`.
        target: u32,
        /// Connections over live nodes.
        total_conn: u64,
        /// Messages per second over live nodes.
        total_mps: f64,
        /// Connection-weighted p95 latency, ms.
        p95_ms: f64,
        /// Why `desired` is what it is, in words.
        reason: String,
    },
}

impl ControlEvent {
    /// The record key: [`RING_EVENT_KEY`], the node id of a drain, or [`SCALE_EVENT_KEY`].
    pub fn key(&self) -> &str {
        match self {
            ControlEvent::RingVersion { .. } => RING_EVENT_KEY,
            ControlEvent::Drain { node_id, .. } => node_id,
            ControlEvent::ScaleDecision { .. } => SCALE_EVENT_KEY,
        }
    }
}

/// Schema version of [`AnalyticsEvent`] (the `v` field of every event).
pub const ANALYTICS_EVENT_VERSION: u32 = 1;

/// One analytics event: a JSON record on [`analytics_events_topic`], published by the node
/// that served the connection, keyed by the user id (one user's events stay in order),
/// internally tagged by `type`, camelCase fields.
///
/// ```json
/// {"type":"connect","v":1,"user":"alice","nodeId":"gw-1","shard":0,"conn":17,
///  "atMs":1700000000000,"resumed":false}
/// {"type":"disconnect","v":1,"user":"alice","nodeId":"gw-1","shard":0,"conn":17,
///  "atMs":1700000090000,"connectedMs":90000}
/// ```
///
/// Best effort: events are produced after the fact and never delay a client; one that
/// cannot be queued is counted (`rtc_socket_relay_total{outcome="events_failed"}`) and
/// dropped. Consumers ignore unknown fields and `type`s, as for [`ControlEvent`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum AnalyticsEvent {
    /// A user's connection was attached (its `welcome` was sent).
    #[serde(rename_all = "camelCase")]
    Connect {
        /// [`ANALYTICS_EVENT_VERSION`].
        v: u32,
        /// The user.
        user: String,
        /// The node serving it.
        node_id: String,
        /// The user's home shard on that node.
        shard: u32,
        /// The node's connection id (pairs a connect with its disconnect).
        conn: u64,
        /// When, unix ms.
        at_ms: u64,
        /// Whether the client presented a resume token.
        resumed: bool,
    },
    /// An attached connection ended (any reason: close, drop, drain, replacement).
    #[serde(rename_all = "camelCase")]
    Disconnect {
        /// [`ANALYTICS_EVENT_VERSION`].
        v: u32,
        /// The user.
        user: String,
        /// The node that served it.
        node_id: String,
        /// The user's home shard on that node.
        shard: u32,
        /// The connection id of its [`AnalyticsEvent::Connect`].
        conn: u64,
        /// When, unix ms.
        at_ms: u64,
        /// How long it was attached, ms.
        connected_ms: u64,
    },
}

impl AnalyticsEvent {
    /// The record key: the user id.
    pub fn key(&self) -> &str {
        match self {
            AnalyticsEvent::Connect { user, .. } | AnalyticsEvent::Disconnect { user, .. } => user,
        }
    }
}

/// An error body: `{"error":"not_found","message":"no such node"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Machine-readable code (snake_case).
    pub error: String,
    /// Human-readable detail.
    pub message: String,
}

impl ApiError {
    /// An error body from a code and a message.
    pub fn new(error: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            error: error.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_seed_fields_and_forward_compat() {
        // The seed's fields only, plus one this version does not know: defaults fill in.
        let json = r#"{"nodeId":"n1","activeConn":10,"mps":5.5,"p95LatencyMs":3.2,"queueDepth":0,
            "cpu":0.4,"mem":1048576,"ts":1700000000000,"futureField":{"x":1}}"#;
        let hb: Heartbeat = serde_json::from_str(json).unwrap();
        assert_eq!(hb.node_id, "n1");
        assert_eq!(hb.weight, 1);
        assert_eq!(hb.version, HEARTBEAT_VERSION);
        assert_eq!(hb.public_ws_url, "");
        let back: Heartbeat = serde_json::from_str(&serde_json::to_string(&hb).unwrap()).unwrap();
        assert_eq!(back, hb);
        assert!(serde_json::to_string(&hb)
            .unwrap()
            .contains("\"p95LatencyMs\""));
    }

    #[test]
    fn control_events_are_tagged_camel_case_and_keyed() {
        let e = ControlEvent::RingVersion {
            v: CONTROL_EVENT_VERSION,
            version: 4,
            at_ms: 1,
            cause: "operator".into(),
            diffs: vec![rtc_ring::Diff::SetState {
                id: "gw-2".into(),
                state: rtc_ring::NodeState::Draining,
            }],
            nodes: 3,
        };
        let s = serde_json::to_string(&e).unwrap();
        assert!(
            s.starts_with(r#"{"type":"ringVersion","v":1,"version":4,"atMs":1,"#),
            "{s}"
        );
        assert!(s.contains(r#""diffs":[{"op":"setState","id":"gw-2","state":"draining"}]"#));
        assert_eq!(serde_json::from_str::<ControlEvent>(&s).unwrap(), e);
        assert_eq!(e.key(), RING_EVENT_KEY);
        let d: ControlEvent = serde_json::from_str(
            r#"{"type":"drain","v":1,"nodeId":"gw-2","version":4,"atMs":1,"cause":"operator","new":0}"#,
        )
        .unwrap();
        assert_eq!(d.key(), "gw-2");
        assert_eq!(control_events_topic("rtc"), "rtc.events.control");
    }

    #[test]
    fn responses_round_trip() {
        let r = HeartbeatResponse {
            accepted: true,
            ring_version: 3,
            maybe_scale: Some(ScaleSignal {
                current: 2,
                target: 3,
                r_conn: 2.4,
                r_mps: 1.0,
                r_lat: 0.5,
                reason: "conn".into(),
                ts: 1,
            }),
        };
        let s = serde_json::to_string(&r).unwrap();
        assert!(s.contains("\"maybeScale\"") && s.contains("\"rConn\""));
        assert_eq!(serde_json::from_str::<HeartbeatResponse>(&s).unwrap(), r);
        let c: ConnectResponse =
            serde_json::from_str(r#"{"wsUrl":"ws://x/ws?token=t","token":"t","ringVersion":1}"#)
                .unwrap();
        assert_eq!(c.node_id, "");
        let e = ApiError::new("bad_user", "user id is empty");
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"error":"bad_user","message":"user id is empty"}"#
        );
    }

    #[test]
    fn analytics_events_round_trip_with_the_documented_shape() {
        let e = AnalyticsEvent::Disconnect {
            v: ANALYTICS_EVENT_VERSION,
            user: "alice".into(),
            node_id: "gw-1".into(),
            shard: 0,
            conn: 17,
            at_ms: 1_700_000_090_000,
            connected_ms: 90_000,
        };
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            json,
            r#"{"type":"disconnect","v":1,"user":"alice","nodeId":"gw-1","shard":0,"conn":17,"atMs":1700000090000,"connectedMs":90000}"#
        );
        assert_eq!(serde_json::from_str::<AnalyticsEvent>(&json).unwrap(), e);
        assert_eq!(e.key(), "alice");
    }
}
