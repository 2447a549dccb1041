//! JSON bodies of the control plane's HTTP API (camelCase on the wire).
//!
//! - `POST /v1/heartbeat` — [`Heartbeat`] in, [`HeartbeatResponse`] out.
//! - `GET /v1/connect?userId=U` — [`ConnectResponse`] (where to connect, with a token).
//! - `GET /v1/resolve?userId=U` — [`ResolveResponse`] (who owns a user, no token).
//! - Errors — [`ApiError`] with the HTTP status from [`crate::close::http`].
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
}
