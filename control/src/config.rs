//! The one `Config` of `control serve`: every knob, its environment variable and its default.
//!
//! Precedence: a command-line flag wins over its environment variable, which wins over the
//! default. The defaults give a working single machine: in-memory state, no secrets required
//! except `RING_SECRET` for signed connect tokens (without it `/v1/connect` answers 503 and the
//! gateway must run in its no-token mode, reached through `/v1/resolve`).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use clap::Args;

use crate::scaling::ScalingParams;

/// Default `--listen` host when only `HTTP_PORT` is given.
pub const DEFAULT_HOST: &str = "127.0.0.1";
/// Default port.
pub const DEFAULT_PORT: u16 = 8081;
/// Longest long-poll wait a client may ask for on `GET /v1/ring?wait=S`.
pub const MAX_LONG_POLL_SEC: u64 = 60;
/// Long-polls held at once; more are refused with 503 (and counted).
pub const MAX_LONG_POLLS: usize = 4096;
/// Ring versions kept for the history endpoint and the dashboard.
pub const MAX_RING_HISTORY: usize = 256;
/// Scaling decisions kept for the history endpoint and the dashboard.
pub const MAX_SCALE_HISTORY: usize = 256;
/// Operator-removed node ids remembered so their heartbeats cannot re-add them.
pub const MAX_TOMBSTONES: usize = 1024;
/// Largest request body accepted by any endpoint.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Connect API keys accepted from `CONNECT_API_KEYS`.
pub const MAX_API_KEYS: usize = 256;

/// Settings of `control serve` (flags and environment; see the module doc for precedence).
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on; overrides HTTP_HOST/HTTP_PORT.
    #[arg(long, env = "CONTROL_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Port to listen on when --listen is not given.
    #[arg(long, env = "HTTP_PORT", default_value_t = DEFAULT_PORT)]
    pub http_port: u16,
    /// Host to listen on when --listen is not given.
    #[arg(long, env = "HTTP_HOST", default_value = DEFAULT_HOST)]
    pub http_host: String,
    /// URL other control instances use to reach this one (forwarded writes).
    /// Default: http://LISTEN_ADDR.
    #[arg(long, env = "CONTROL_ADVERTISE_URL")]
    pub advertise_url: Option<String>,

    /// Redis URL; when set the ring and its version persist there and a lease elects one
    /// acting instance. Unset: in-memory state, always the leader.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key this control uses.
    #[arg(long, env = "REDIS_PREFIX", default_value = "rtc:control")]
    pub redis_prefix: String,
    /// Leader lease time-to-live (a dead leader is replaced within this), milliseconds.
    #[arg(long, env = "LEADER_LEASE_MS", default_value_t = 5000)]
    pub lease_ttl_ms: u64,

    /// Secret shared with the nodes; signs connect tokens.
    #[arg(long, env = "RING_SECRET", hide_env_values = true)]
    pub ring_secret: Option<String>,
    /// The previous secret during a rotation (nodes still accept tokens signed with it).
    #[arg(long, env = "RING_SECRET_PREVIOUS", hide_env_values = true)]
    pub ring_secret_previous: Option<String>,
    /// Connect token lifetime, seconds.
    #[arg(long, env = "CONNECT_TOKEN_TTL_SEC", default_value_t = 60)]
    pub connect_token_ttl_sec: u64,
    /// Comma-separated app keys; when set, `/v1/connect` requires `Authorization: Bearer KEY`.
    #[arg(long, env = "CONNECT_API_KEYS", hide_env_values = true)]
    pub connect_api_keys: Option<String>,
    /// When set, write endpoints require `Authorization: Bearer ADMIN_TOKEN`.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// When set, heartbeats require `Authorization: Bearer NODE_TOKEN`.
    #[arg(long, env = "NODE_TOKEN", hide_env_values = true)]
    pub node_token: Option<String>,

    /// A node that joined by heartbeat and is silent longer than this leaves the ring, seconds.
    #[arg(long, env = "HEARTBEAT_GRACE_SEC", default_value_t = 15)]
    pub heartbeat_grace_sec: u64,
    /// How far a heartbeat's `ts` may be ahead of this clock, milliseconds.
    #[arg(long, env = "MAX_CLOCK_SKEW_MS", default_value_t = 30_000)]
    pub max_clock_skew_ms: u64,
    /// How long an operator-removed node's heartbeats are refused instead of re-adding it, seconds.
    #[arg(long, env = "REJOIN_QUARANTINE_SEC", default_value_t = 300)]
    pub rejoin_quarantine_sec: u64,
    /// Ring points per unit of weight.
    #[arg(long, env = "VNODES_PER_WEIGHT", default_value_t = rtc_ring::DEFAULT_VNODES_PER_WEIGHT)]
    pub vnodes_per_weight: u32,

    /// Autoscaling: weight of the connection term.
    #[arg(long, env = "ALPHA", default_value_t = 0.4)]
    pub alpha: f64,
    /// Autoscaling: weight of the messages-per-second term.
    #[arg(long, env = "BETA", default_value_t = 0.4)]
    pub beta: f64,
    /// Autoscaling: base of the latency term.
    #[arg(long, env = "GAMMA", default_value_t = 0.2)]
    pub gamma: f64,
    /// Autoscaling: steepness of the latency term.
    #[arg(long, env = "DELTA", default_value_t = 2.0)]
    pub delta: f64,
    /// Autoscaling: p95 latency objective, milliseconds.
    #[arg(long, env = "L_SLO_MS", default_value_t = 500.0)]
    pub l_slo_ms: f64,
    /// Autoscaling: connections per pod.
    #[arg(long, env = "CONN_PER_POD", default_value_t = 5000.0)]
    pub conn_per_pod: f64,
    /// Autoscaling: messages per second per pod.
    #[arg(long, env = "MPS_PER_POD", default_value_t = 2500.0)]
    pub mps_per_pod: f64,
    /// Autoscaling: fewest replicas.
    #[arg(long, env = "MIN_NODES", default_value_t = 1)]
    pub min_nodes: u32,
    /// Autoscaling: most replicas.
    #[arg(long, env = "MAX_NODES", default_value_t = 100)]
    pub max_nodes: u32,
    /// Autoscaling: largest change per decision.
    #[arg(long, env = "MAX_SCALE_STEP", default_value_t = 2)]
    pub max_scale_step: u32,
    /// Autoscaling: seconds between decisions.
    #[arg(long, env = "SCALING_INTERVAL_SEC", default_value_t = 30)]
    pub scaling_interval_sec: u64,
    /// Autoscaling: seconds the target must stay below the current count before scaling in.
    #[arg(long, env = "SCALE_IN_DELAY_SEC", default_value_t = 300)]
    pub scale_in_delay_sec: u64,
    /// Kafka brokers (comma separated); when set, ring versions, drains and scaling
    /// decisions are published to `<KAFKA_TOPIC_PREFIX>.events.control` (see `events.rs`).
    #[arg(long, env = "KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Prefix of the Kafka topic names (the same as the gateway nodes').
    #[arg(long, env = "KAFKA_TOPIC_PREFIX", default_value = "rtc")]
    pub kafka_topic_prefix: String,
    /// Control events waiting for the Kafka producer; past it an event is dropped (counted).
    #[arg(long, env = "CONTROL_EVENT_QUEUE", default_value_t = crate::events::DEFAULT_EVENT_QUEUE)]
    pub event_queue: usize,
}

impl Default for Config {
    fn default() -> Self {
        let s = ScalingParams::default();
        Config {
            listen: None,
            http_port: DEFAULT_PORT,
            http_host: DEFAULT_HOST.to_owned(),
            advertise_url: None,
            redis_url: None,
            redis_prefix: "rtc:control".to_owned(),
            lease_ttl_ms: 5000,
            ring_secret: None,
            ring_secret_previous: None,
            connect_token_ttl_sec: 60,
            connect_api_keys: None,
            admin_token: None,
            node_token: None,
            heartbeat_grace_sec: 15,
            max_clock_skew_ms: 30_000,
            rejoin_quarantine_sec: 300,
            vnodes_per_weight: rtc_ring::DEFAULT_VNODES_PER_WEIGHT,
            alpha: s.alpha,
            beta: s.beta,
            gamma: s.gamma,
            delta: s.delta,
            l_slo_ms: s.l_slo_ms,
            conn_per_pod: s.conn_per_pod,
            mps_per_pod: s.mps_per_pod,
            min_nodes: s.min_nodes,
            max_nodes: s.max_nodes,
            max_scale_step: s.max_step,
            scaling_interval_sec: 30,
            scale_in_delay_sec: 300,
            kafka_brokers: None,
            kafka_topic_prefix: "rtc".to_owned(),
            event_queue: crate::events::DEFAULT_EVENT_QUEUE,
        }
    }
}

impl Config {
    /// Refuses settings that cannot work, with the variable to fix.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.listen_addr()?;
        ensure!(
            self.lease_ttl_ms >= 300,
            "LEADER_LEASE_MS must be at least 300"
        );
        ensure!(
            self.heartbeat_grace_sec >= 1,
            "HEARTBEAT_GRACE_SEC must be at least 1"
        );
        ensure!(
            self.connect_token_ttl_sec >= 1,
            "CONNECT_TOKEN_TTL_SEC must be at least 1"
        );
        ensure!(
            self.vnodes_per_weight >= 1,
            "VNODES_PER_WEIGHT must be at least 1"
        );
        for (name, v) in [
            ("ALPHA", self.alpha),
            ("BETA", self.beta),
            ("GAMMA", self.gamma),
            ("DELTA", self.delta),
        ] {
            ensure!(
                v.is_finite() && v >= 0.0,
                "{name} must be a finite number ≥ 0"
            );
        }
        for (name, v) in [
            ("L_SLO_MS", self.l_slo_ms),
            ("CONN_PER_POD", self.conn_per_pod),
            ("MPS_PER_POD", self.mps_per_pod),
        ] {
            ensure!(
                v.is_finite() && v > 0.0,
                "{name} must be a finite number > 0"
            );
        }
        ensure!(
            self.min_nodes <= self.max_nodes,
            "MIN_NODES ({}) is above MAX_NODES ({})",
            self.min_nodes,
            self.max_nodes
        );
        ensure!(
            self.max_scale_step >= 1,
            "MAX_SCALE_STEP must be at least 1"
        );
        if let Some(s) = &self.ring_secret {
            ensure!(s.len() >= 16, "RING_SECRET must be at least 16 bytes");
        }
        if let Some(keys) = &self.connect_api_keys {
            let n = self.api_keys().len();
            ensure!(
                n >= 1 || keys.trim().is_empty(),
                "CONNECT_API_KEYS has no key"
            );
            ensure!(
                n <= MAX_API_KEYS,
                "CONNECT_API_KEYS has more than {MAX_API_KEYS} keys"
            );
        }
        ensure!(
            (1..=crate::events::MAX_EVENT_QUEUE).contains(&self.event_queue),
            "CONTROL_EVENT_QUEUE must be 1..={}",
            crate::events::MAX_EVENT_QUEUE
        );
        ensure!(
            !self.kafka_topic_prefix.is_empty()
                && self.kafka_topic_prefix.len() <= 64
                && self
                    .kafka_topic_prefix
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
            "KAFKA_TOPIC_PREFIX must be 1..=64 characters of [A-Za-z0-9._-]"
        );
        if let Some(url) = &self.redis_url {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                bail!("REDIS_URL must start with redis:// or rediss://");
            }
        }
        Ok(())
    }

    /// The socket address to bind.
    pub fn listen_addr(&self) -> anyhow::Result<SocketAddr> {
        if let Some(a) = self.listen {
            return Ok(a);
        }
        format!("{}:{}", self.http_host, self.http_port)
            .parse()
            .with_context(|| format!("HTTP_HOST {:?} is not an IP address", self.http_host))
    }

    /// The connect API keys (empty: `/v1/connect` is open).
    pub fn api_keys(&self) -> Vec<String> {
        self.connect_api_keys
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The autoscaling parameters.
    pub fn scaling(&self) -> ScalingParams {
        ScalingParams {
            alpha: self.alpha,
            beta: self.beta,
            gamma: self.gamma,
            delta: self.delta,
            l_slo_ms: self.l_slo_ms,
            conn_per_pod: self.conn_per_pod,
            mps_per_pod: self.mps_per_pod,
            min_nodes: self.min_nodes,
            max_nodes: self.max_nodes,
            max_step: self.max_scale_step,
            interval_ms: self.scaling_interval_sec.saturating_mul(1000),
            scale_in_delay_ms: self.scale_in_delay_sec.saturating_mul(1000),
        }
    }

    /// Heartbeat grace as a duration in ms.
    pub fn grace_ms(&self) -> u64 {
        self.heartbeat_grace_sec.saturating_mul(1000)
    }

    /// Lease TTL.
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_millis(self.lease_ttl_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        Config::default().validate().unwrap();
        assert_eq!(
            Config::default().listen_addr().unwrap().to_string(),
            "127.0.0.1:8081"
        );
    }

    #[test]
    fn bad_settings_are_refused() {
        let bad = [
            Config {
                min_nodes: 5,
                max_nodes: 2,
                ..Config::default()
            },
            Config {
                conn_per_pod: 0.0,
                ..Config::default()
            },
            Config {
                ring_secret: Some("short".into()),
                ..Config::default()
            },
            Config {
                redis_url: Some("http://x".into()),
                ..Config::default()
            },
            Config {
                http_host: "not an ip".into(),
                ..Config::default()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
    }

    #[test]
    fn api_keys_split() {
        let c = Config {
            connect_api_keys: Some(" a, b ,,c".into()),
            ..Config::default()
        };
        assert_eq!(c.api_keys(), ["a", "b", "c"]);
    }
}
