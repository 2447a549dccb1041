//! The node's configuration: one [`Config`] with documented defaults and [`Config::validate`].
//!
//! # Precedence
//! **command-line flag > environment variable > TOML file (`--config FILE.toml`) > default.**
//! Every knob is a flag and an environment variable (clap's `env`, the seed's names such as
//! `NODE_ID`, `HTTP_PORT`, `RING_SECRET`, `BUFFER_MAX`, …) and a snake_case key in the TOML file.
//! [`Settings`] is that layer of optional overrides; [`Config::from_settings`] folds
//! default ← TOML ← flags/env into one [`Config`]. `HTTP_PORT` (or `--http-port`) replaces the
//! port of the listen address when `--listen` itself is not given.
//!
//! The defaults run a working single node on `127.0.0.1:8080` with no token required.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use serde::Deserialize;

use crate::session as limits;
use crate::session::SessionLimits;

/// Message size limit of `/echo` (Autobahn 9.* sends 16 MiB messages).
pub const ECHO_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Largest `--shards` accepted: the shard mesh has shards² rings.
pub const MAX_SHARDS: usize = 256;
/// Default io_uring depth per ring (glommio's own default is 128). 4096 gives the kernel's
/// poll-cancellation hash its largest size (256 buckets) and costs about 1.2 MiB of ring
/// memory per shard (three rings); measured in `benches/RESULTS.md` (perf section).
pub const IO_RING_DEPTH: usize = 4096;
/// The kernel's largest io_uring submission queue (`IORING_MAX_ENTRIES`).
pub const MAX_IO_RING_DEPTH: usize = 32_768;

/// The node's whole configuration, after precedence has been applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Address of the one public port (a SO_REUSEPORT listener per shard). Port 0 picks a free
    /// port; the bound address is printed on stdout as `listening on ADDR`.
    pub listen: SocketAddr,
    /// Number of shards (glommio executors, one per core, pinned). 0 = every core the process
    /// may use.
    pub shards: usize,
    /// This node's id, sent in `welcome` and signed into tokens.
    pub node_id: String,
    /// The public WebSocket URL clients reach this node at (TLS is terminated in front of the
    /// node). Empty = `ws://LISTEN/ws`.
    pub public_ws_url: String,
    /// HMAC secret for connect and resume tokens. Empty = a per-process random secret
    /// (resume tokens then do not survive a restart, connect tokens cannot be verified).
    pub ring_secret: String,
    /// The previous HMAC secret, still accepted during a key rotation.
    pub ring_secret_previous: String,
    /// Refuse `?userId=` and accept only a signed connect token (`?token=`).
    pub require_token: bool,
    /// Serve `GET /echo`, a plain WebSocket echo (for the Autobahn suite).
    pub echo: bool,
    /// Resume-log length per user, in messages (the last unacked ones are kept for offline
    /// delivery and resume; past it the oldest is trimmed, counted).
    pub buffer_max: usize,
    /// Byte cap of one user's resume log.
    pub log_max_bytes: usize,
    /// Summed resume-log bytes of the offline users of one shard (least recently touched
    /// evicted first, counted).
    pub max_offline_log_bytes: usize,
    /// Outbound buffer per connection, in messages (live messages not yet written); past it
    /// the oldest is dropped and the client told the `gap`.
    pub per_conn_buffer_size: usize,
    /// Outbound buffer per connection, in bytes.
    pub per_conn_buffer_bytes: usize,
    /// Drops without a completed write before a slow consumer is closed 4005.
    pub slow_consumer_max_drops: u32,
    /// Milliseconds of dropping without a completed write before close 4005.
    pub slow_consumer_timeout_ms: u64,
    /// `(from, clientMsgId)` pairs remembered per recipient for retry dedup.
    pub dedup_max: usize,
    /// User records (online, or offline with a log) per shard.
    pub max_users_per_shard: usize,
    /// How long a user's resume log is kept after the user left, in seconds.
    pub resume_ttl_sec: u64,
    /// New handshakes per second the node accepts (token bucket, burst = one second's worth);
    /// over it → 503 + `Retry-After`. 0 = unlimited.
    pub handshake_rate_limit: u32,
    /// Open connections per client IP; over it → 429. 0 = unlimited.
    pub max_conn_per_ip: u32,
    /// Server `ping` frames every this many seconds.
    pub ping_interval_sec: u64,
    /// A connection that sent nothing (not even a pong) for this long is closed 4006.
    pub idle_timeout_sec: u64,
    /// Largest WebSocket message (and frame) accepted on `/ws`; over it → close 1009.
    pub max_message_bytes: usize,
    /// The request head must be complete within this many milliseconds (slowloris guard).
    pub header_timeout_ms: u64,
    /// Bad frames (invalid JSON, unknown type) tolerated per connection before close 4008.
    pub max_frame_errors: u32,
    /// Clients sent `drain` + close 4007 per second while draining (paced, not all at once).
    pub drain_rate: u32,
    /// The node exits at the latest this many seconds after SIGTERM.
    pub drain_timeout_sec: u64,
    /// Allowed `Origin` values; empty = any origin (and requests without Origin) allowed.
    pub allowed_origins: Vec<String>,
    /// Peers whose `X-Forwarded-For` is believed for per-IP limits (the TLS terminator).
    pub trusted_proxies: Vec<IpAddr>,
    /// io_uring pinned buffer memory per shard, in KiB (glommio `io_memory`).
    pub io_memory_kib: usize,
    /// Submission-queue entries of each of a shard's io_uring rings (glommio `ring_depth`; the
    /// completion queue is twice as deep). Besides concurrency it sizes the kernel's
    /// cancellation hash of armed polls: about `2·depth/32` buckets (at most 256). glommio
    /// cancels and re-arms a timeout on the ring that holds every connection's poll at each
    /// reactor turn, and that cancel walks one bucket, so with many idle connections a small
    /// ring makes every turn cost O(connections / buckets). See [`IO_RING_DEPTH`].
    pub io_ring_depth: usize,
    /// Let the OS scheduler place the shards instead of pinning shard i to the i-th CPU. Pinned
    /// is right on a machine the node has to itself; when other busy processes share the
    /// cores (a load generator on the same box) a pinned shard waits for its CPU and every
    /// hand-off between shards is a cross-core wake-up (measured in `benches/RESULTS.md`).
    pub unpinned_shards: bool,
    /// Log as JSON lines instead of human-readable text.
    pub log_json: bool,
    /// Base URL of `control` (`http://host:port`). Empty = standalone: no heartbeats, no
    /// ring, every user served here. See `cluster/`.
    pub control_url: String,
    /// Seconds between heartbeats to control (fractions allowed).
    pub heartbeat_interval_sec: f64,
    /// This node's capacity weight on the ring, reported in heartbeats.
    pub node_weight: u32,
    /// Bearer token for control's write endpoints (the drain request at SIGTERM).
    pub admin_token: String,
    /// Bearer token for heartbeats, when control requires one.
    pub node_token: String,
    /// `redis://…` of the shared store. Empty = no store: the in-memory session log is the
    /// commit point. Set: the Redis resume log is (see `shard/datapath.rs`).
    pub redis_url: String,
    /// Prefix of every Redis key this node uses (`PREFIX:{user}:…`), so several clusters
    /// can share one Redis. Default [`crate::store::KEY_PREFIX`] (`rtc`, today's key names).
    pub redis_prefix: String,
    /// Kafka bootstrap brokers of the relay (needs `redis_url` and `control_url`). Empty = no
    /// relay: no live delivery between nodes (`shard/relaypath.rs`).
    pub kafka_brokers: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            shards: 0,
            node_id: "node-1".to_owned(),
            public_ws_url: String::new(),
            ring_secret: String::new(),
            ring_secret_previous: String::new(),
            require_token: false,
            echo: false,
            buffer_max: limits::BUFFER_MAX,
            log_max_bytes: limits::LOG_MAX_BYTES,
            max_offline_log_bytes: limits::MAX_OFFLINE_LOG_BYTES,
            per_conn_buffer_size: limits::PER_CONN_BUFFER_SIZE,
            per_conn_buffer_bytes: limits::PER_CONN_BUFFER_BYTES,
            slow_consumer_max_drops: limits::SLOW_CONSUMER_MAX_DROPS,
            slow_consumer_timeout_ms: limits::SLOW_CONSUMER_TIMEOUT_MS,
            dedup_max: limits::DEDUP_MAX,
            max_users_per_shard: limits::MAX_USERS_PER_SHARD,
            resume_ttl_sec: limits::RESUME_TTL_SEC,
            handshake_rate_limit: 0,
            max_conn_per_ip: 0,
            ping_interval_sec: 25,
            idle_timeout_sec: 75,
            max_message_bytes: 64 * 1024,
            header_timeout_ms: 5_000,
            max_frame_errors: 16,
            drain_rate: 2_000,
            drain_timeout_sec: 30,
            allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            io_memory_kib: 1024,
            io_ring_depth: IO_RING_DEPTH,
            unpinned_shards: false,
            log_json: false,
            control_url: String::new(),
            heartbeat_interval_sec: crate::cluster::DEFAULT_HEARTBEAT_INTERVAL_SEC,
            node_weight: 1,
            admin_token: String::new(),
            node_token: String::new(),
            redis_url: String::new(),
            redis_prefix: crate::store::KEY_PREFIX.to_owned(),
            kafka_brokers: String::new(),
        }
    }
}

impl Config {
    /// Checks the values against each other and against hard limits.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.shards > MAX_SHARDS {
            bail!("--shards {} is over the limit {MAX_SHARDS}", self.shards);
        }
        if self.node_id.is_empty() || self.node_id.len() > 128 {
            bail!("NODE_ID must be 1..=128 bytes");
        }
        if self.require_token && self.ring_secret.is_empty() {
            bail!("--require-token needs RING_SECRET to verify connect tokens");
        }
        let session = self.session_limits();
        session.validate().context("session limits")?;
        if self.max_message_bytes + limits::MESSAGE_OVERHEAD + 256 > session.max_message_cost() {
            bail!(
                "MAX_MESSAGE_BYTES ({}) does not fit LOG_MAX_BYTES / PER_CONN_BUFFER_BYTES ({})",
                self.max_message_bytes,
                session.max_message_cost()
            );
        }
        if self.ping_interval_sec == 0 || self.idle_timeout_sec <= self.ping_interval_sec {
            bail!("PING_INTERVAL_SEC must be > 0 and below IDLE_TIMEOUT_SEC");
        }
        if self.max_message_bytes < 125 || self.max_message_bytes > ECHO_MAX_MESSAGE_BYTES {
            bail!("MAX_MESSAGE_BYTES must be in 125..={ECHO_MAX_MESSAGE_BYTES}");
        }
        if self.header_timeout_ms == 0 || self.drain_rate == 0 || self.drain_timeout_sec == 0 {
            bail!("HEADER_TIMEOUT_MS, DRAIN_RATE and DRAIN_TIMEOUT_SEC must be > 0");
        }
        if self.max_frame_errors == 0 {
            bail!("MAX_FRAME_ERRORS must be > 0");
        }
        if self.io_memory_kib < 64 {
            bail!("IO_MEMORY_KIB must be >= 64");
        }
        if !self.io_ring_depth.is_power_of_two()
            || !(16..=MAX_IO_RING_DEPTH).contains(&self.io_ring_depth)
        {
            bail!("IO_RING_DEPTH must be a power of two in 16..={MAX_IO_RING_DEPTH}");
        }
        crate::cluster::validate(self)?;
        crate::store::check_prefix(&self.redis_prefix).context("REDIS_PREFIX")?;
        if !self.kafka_brokers.is_empty()
            && (self.redis_url.is_empty() || self.control_url.is_empty())
        {
            bail!("KAFKA_BROKERS needs REDIS_URL (the commit point) and a control URL (the ring)");
        }
        Ok(())
    }

    /// The session core's bounds.
    pub fn session_limits(&self) -> SessionLimits {
        SessionLimits {
            buffer_max: self.buffer_max,
            resume_ttl_ms: self.resume_ttl_sec.saturating_mul(1000),
            log_max_bytes: self.log_max_bytes,
            max_offline_log_bytes: self.max_offline_log_bytes,
            per_conn_buffer_size: self.per_conn_buffer_size,
            per_conn_buffer_bytes: self.per_conn_buffer_bytes,
            slow_consumer_max_drops: self.slow_consumer_max_drops,
            slow_consumer_timeout_ms: self.slow_consumer_timeout_ms,
            dedup_max: self.dedup_max,
            max_users: self.max_users_per_shard,
        }
    }

    /// Effective shard count: `shards`, or every core this process may run on.
    pub fn shard_count(&self) -> usize {
        if self.shards > 0 {
            return self.shards;
        }
        std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_SHARDS))
    }

    /// The URL put in tokens and redirects.
    pub fn public_url(&self, bound: SocketAddr) -> String {
        if self.public_ws_url.is_empty() {
            format!("ws://{bound}/ws")
        } else {
            self.public_ws_url.clone()
        }
    }

    /// Ping interval as a duration.
    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ping_interval_sec)
    }

    /// Parses flags + environment (+ the TOML file they name) into a validated config.
    pub fn load() -> anyhow::Result<Self> {
        let settings = Settings::parse();
        let file = match &settings.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config file {}", path.display()))?;
                toml::from_str::<Settings>(&text)
                    .with_context(|| format!("parsing config file {}", path.display()))?
            }
            None => Settings::default(),
        };
        let config = Self::from_settings(&file, &settings)?;
        config.validate()?;
        Ok(config)
    }

    /// default ← `file` ← `cli` (flags and environment), then `HTTP_PORT`.
    pub fn from_settings(file: &Settings, cli: &Settings) -> anyhow::Result<Self> {
        let mut c = Config::default();
        file.apply(&mut c);
        cli.apply(&mut c);
        // HTTP_PORT sets the port unless --listen itself was given on the command line/env.
        // CONTROL_URL is an alias of LOAD_BALANCER_URL (clap takes one env name per flag).
        if cli.control_url.is_none() {
            if let Some(url) = std::env::var("CONTROL_URL").ok().filter(|u| !u.is_empty()) {
                c.control_url = url;
            }
        }
        let port = cli.http_port.or(file.http_port);
        if let (Some(port), None) = (port, &cli.listen) {
            c.listen.set_port(port);
        }
        Ok(c)
    }
}

/// One layer of optional settings: the command line + environment, or the TOML file.
/// `None` (or `false` for switches) means "not set here".
#[derive(Debug, Clone, Default, Parser, Deserialize)]
#[command(
    name = "gateway",
    version,
    about = "The shard-per-core WebSocket gateway node (GET /ws, /healthz, /readyz, /metrics)",
    after_help = "Precedence: flag > environment variable > TOML file (--config) > default.\n\
                  TLS is terminated in front of the node; set TRUSTED_PROXIES to the \
                  terminator's address so X-Forwarded-For is believed for per-IP limits."
)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// TOML file with any of these settings as snake_case keys.
    #[arg(long, env = "GATEWAY_CONFIG", value_name = "FILE.toml")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Listen address (one public port) [default: 127.0.0.1:8080]; port 0 = any free port.
    #[arg(long, env = "LISTEN_ADDR")]
    pub listen: Option<SocketAddr>,
    /// Port of the listen address, when --listen is not given.
    #[arg(long, env = "HTTP_PORT")]
    pub http_port: Option<u16>,
    /// Shards (pinned executors) [default: 0 = every core the process may use].
    #[arg(long, env = "SHARDS")]
    pub shards: Option<usize>,
    /// Node id [default: node-1].
    #[arg(long, env = "NODE_ID")]
    pub node_id: Option<String>,
    /// Public WebSocket URL of this node [default: ws://LISTEN/ws].
    #[arg(long, env = "PUBLIC_WS_URL")]
    pub public_ws_url: Option<String>,
    /// HMAC secret of connect/resume tokens [default: random per process].
    #[arg(long, env = "RING_SECRET", hide_env_values = true)]
    pub ring_secret: Option<String>,
    /// Previous HMAC secret still accepted during rotation.
    #[arg(long, env = "RING_SECRET_PREVIOUS", hide_env_values = true)]
    pub ring_secret_previous: Option<String>,
    /// Accept only signed connect tokens (no ?userId=).
    #[arg(long, env = "REQUIRE_TOKEN")]
    #[serde(default)]
    pub require_token: bool,
    /// Serve GET /echo (plain WebSocket echo, 16 MiB messages) for conformance tests.
    #[arg(long, env = "ECHO")]
    #[serde(default)]
    pub echo: bool,
    /// Resume-log length per user, messages [default: 1000].
    #[arg(long, env = "BUFFER_MAX")]
    pub buffer_max: Option<usize>,
    /// Byte cap of one user's resume log [default: 4194304].
    #[arg(long, env = "LOG_MAX_BYTES")]
    pub log_max_bytes: Option<usize>,
    /// Resume-log bytes of offline users per shard [default: 67108864].
    #[arg(long, env = "MAX_OFFLINE_LOG_BYTES")]
    pub max_offline_log_bytes: Option<usize>,
    /// Outbound buffer per connection, messages (drop-oldest past it) [default: 256].
    #[arg(long, env = "PER_CONN_BUFFER_SIZE")]
    pub per_conn_buffer_size: Option<usize>,
    /// Outbound buffer per connection, bytes [default: 1048576].
    #[arg(long, env = "PER_CONN_BUFFER_BYTES")]
    pub per_conn_buffer_bytes: Option<usize>,
    /// Drops without a completed write before close 4005 [default: 1024].
    #[arg(long, env = "SLOW_CONSUMER_MAX_DROPS")]
    pub slow_consumer_max_drops: Option<u32>,
    /// Milliseconds of dropping without progress before close 4005 [default: 10000].
    #[arg(long, env = "SLOW_CONSUMER_TIMEOUT_MS")]
    pub slow_consumer_timeout_ms: Option<u64>,
    /// Retry-dedup memory per recipient, (from, clientMsgId) pairs [default: 256].
    #[arg(long, env = "DEDUP_MAX")]
    pub dedup_max: Option<usize>,
    /// User records per shard [default: 1000000].
    #[arg(long, env = "MAX_USERS_PER_SHARD")]
    pub max_users_per_shard: Option<usize>,
    /// Resume log lifetime after the user left, seconds [default: 300].
    #[arg(long, env = "RESUME_TTL_SEC")]
    pub resume_ttl_sec: Option<u64>,
    /// Handshakes per second (token bucket), over it 503 + Retry-After [default: 0 = off].
    #[arg(long, env = "HANDSHAKE_RATE_LIMIT")]
    pub handshake_rate_limit: Option<u32>,
    /// Open connections per client IP, over it 429 [default: 0 = off].
    #[arg(long, env = "MAX_CONN_PER_IP")]
    pub max_conn_per_ip: Option<u32>,
    /// Server ping interval, seconds [default: 25].
    #[arg(long, env = "PING_INTERVAL_SEC")]
    pub ping_interval_sec: Option<u64>,
    /// Idle timeout (close 4006), seconds [default: 75].
    #[arg(long, env = "IDLE_TIMEOUT_SEC")]
    pub idle_timeout_sec: Option<u64>,
    /// Largest message/frame on /ws, bytes (close 1009 past it) [default: 65536].
    #[arg(long, env = "MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Request head deadline, milliseconds (slowloris guard) [default: 5000].
    #[arg(long, env = "HEADER_TIMEOUT_MS")]
    pub header_timeout_ms: Option<u64>,
    /// Bad frames per connection before close 4008 [default: 16].
    #[arg(long, env = "MAX_FRAME_ERRORS")]
    pub max_frame_errors: Option<u32>,
    /// Clients drained per second after SIGTERM [default: 2000].
    #[arg(long, env = "DRAIN_RATE")]
    pub drain_rate: Option<u32>,
    /// Drain deadline after SIGTERM, seconds [default: 30].
    #[arg(long, env = "DRAIN_TIMEOUT_SEC")]
    pub drain_timeout_sec: Option<u64>,
    /// Allowed Origin values, comma-separated [default: any].
    #[arg(long, env = "ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Option<Vec<String>>,
    /// Proxies whose X-Forwarded-For is believed, comma-separated IPs [default: none].
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<IpAddr>>,
    /// io_uring memory per shard, KiB [default: 1024].
    #[arg(long, env = "IO_MEMORY_KIB")]
    pub io_memory_kib: Option<usize>,
    /// io_uring submission entries per ring (power of two; sizes the kernel's poll
    /// cancellation hash) [default: 4096].
    #[arg(long, env = "IO_RING_DEPTH")]
    pub io_ring_depth: Option<usize>,
    /// Do not pin shards to CPUs (for machines shared with other busy processes).
    #[arg(long, env = "UNPINNED_SHARDS")]
    #[serde(default)]
    pub unpinned_shards: bool,
    /// Log JSON lines (level from RUST_LOG, default info).
    #[arg(long, env = "LOG_JSON")]
    #[serde(default)]
    pub log_json: bool,
    /// Control URL (http://host:port); joins the cluster. Env alias: CONTROL_URL [default: standalone].
    #[arg(long = "control", env = "LOAD_BALANCER_URL")]
    pub control_url: Option<String>,
    /// Seconds between heartbeats to control, fractions allowed [default: 2].
    #[arg(long, env = "HEARTBEAT_INTERVAL_SEC")]
    pub heartbeat_interval_sec: Option<f64>,
    /// Capacity weight of this node on the ring [default: 1].
    #[arg(long, env = "NODE_WEIGHT")]
    pub node_weight: Option<u32>,
    /// Bearer token for control's write endpoints (drain at SIGTERM).
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Bearer token for heartbeats (control's NODE_TOKEN).
    #[arg(long, env = "NODE_TOKEN", hide_env_values = true)]
    pub node_token: Option<String>,
    /// Shared Redis store (`redis://host:port/db`): the resume log there is the commit
    /// point, so users resume on any node. Empty = in-memory only.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key of this node [default: rtc]; clusters sharing one Redis
    /// use different ones (no `{`, `}` or `:`).
    #[arg(long, env = "REDIS_PREFIX")]
    pub redis_prefix: Option<String>,
    /// Kafka brokers of the cross-node relay (`host:port,…`); needs REDIS_URL and a control
    /// URL. Other relay knobs: `KAFKA_TOPIC_PREFIX`, `KAFKA_ACKS`, … (see `relay/`).
    #[arg(long, env = "KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
}

impl Settings {
    fn apply(&self, c: &mut Config) {
        fn set<T: Clone>(dst: &mut T, src: &Option<T>) {
            if let Some(v) = src {
                *dst = v.clone();
            }
        }
        set(&mut c.listen, &self.listen);
        set(&mut c.shards, &self.shards);
        set(&mut c.node_id, &self.node_id);
        set(&mut c.public_ws_url, &self.public_ws_url);
        set(&mut c.ring_secret, &self.ring_secret);
        set(&mut c.ring_secret_previous, &self.ring_secret_previous);
        c.require_token |= self.require_token;
        c.echo |= self.echo;
        c.log_json |= self.log_json;
        c.unpinned_shards |= self.unpinned_shards;
        set(&mut c.buffer_max, &self.buffer_max);
        set(&mut c.log_max_bytes, &self.log_max_bytes);
        set(&mut c.max_offline_log_bytes, &self.max_offline_log_bytes);
        set(&mut c.per_conn_buffer_size, &self.per_conn_buffer_size);
        set(&mut c.per_conn_buffer_bytes, &self.per_conn_buffer_bytes);
        set(
            &mut c.slow_consumer_max_drops,
            &self.slow_consumer_max_drops,
        );
        set(
            &mut c.slow_consumer_timeout_ms,
            &self.slow_consumer_timeout_ms,
        );
        set(&mut c.dedup_max, &self.dedup_max);
        set(&mut c.max_users_per_shard, &self.max_users_per_shard);
        set(&mut c.resume_ttl_sec, &self.resume_ttl_sec);
        set(&mut c.handshake_rate_limit, &self.handshake_rate_limit);
        set(&mut c.max_conn_per_ip, &self.max_conn_per_ip);
        set(&mut c.ping_interval_sec, &self.ping_interval_sec);
        set(&mut c.idle_timeout_sec, &self.idle_timeout_sec);
        set(&mut c.max_message_bytes, &self.max_message_bytes);
        set(&mut c.header_timeout_ms, &self.header_timeout_ms);
        set(&mut c.max_frame_errors, &self.max_frame_errors);
        set(&mut c.drain_rate, &self.drain_rate);
        set(&mut c.drain_timeout_sec, &self.drain_timeout_sec);
        set(&mut c.allowed_origins, &self.allowed_origins);
        set(&mut c.trusted_proxies, &self.trusted_proxies);
        set(&mut c.io_memory_kib, &self.io_memory_kib);
        set(&mut c.io_ring_depth, &self.io_ring_depth);
        set(&mut c.control_url, &self.control_url);
        set(&mut c.heartbeat_interval_sec, &self.heartbeat_interval_sec);
        set(&mut c.node_weight, &self.node_weight);
        set(&mut c.admin_token, &self.admin_token);
        set(&mut c.node_token, &self.node_token);
        set(&mut c.redis_url, &self.redis_url);
        set(&mut c.redis_prefix, &self.redis_prefix);
        set(&mut c.kafka_brokers, &self.kafka_brokers);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        Config::default().validate().expect("defaults are valid");
    }

    #[test]
    fn flag_beats_file_beats_default() {
        let file: Settings =
            toml::from_str("shards = 3\nnode_id = \"from-file\"\nbuffer_max = 7\n")
                .expect("toml parses");
        let cli = Settings::parse_from(["gateway", "--shards", "2"]);
        let c = Config::from_settings(&file, &cli).expect("merge");
        assert_eq!(c.shards, 2);
        assert_eq!(c.node_id, "from-file");
        assert_eq!(c.buffer_max, 7);
        assert_eq!(c.ping_interval_sec, 25);
    }

    #[test]
    fn redis_prefix_from_flag_or_file_defaults_to_todays_keys_and_is_checked() {
        let c = Config::from_settings(&Settings::default(), &Settings::parse_from(["gateway"]))
            .expect("merge");
        assert_eq!(c.redis_prefix, "rtc");
        let file: Settings = toml::from_str("redis_prefix = \"blue\"\n").expect("toml parses");
        let c = Config::from_settings(&file, &Settings::parse_from(["gateway"])).expect("merge");
        assert_eq!(c.redis_prefix, "blue");
        let cli = Settings::parse_from(["gateway", "--redis-prefix", "green"]);
        let c = Config::from_settings(&file, &cli).expect("merge");
        assert_eq!(c.redis_prefix, "green");
        c.validate().expect("valid prefix");
        for bad in ["", "a:b", "a{b", "a}b"] {
            let c = Config {
                redis_prefix: bad.to_owned(),
                ..Config::default()
            };
            assert!(c.validate().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn http_port_sets_port_unless_listen_given() {
        let cli = Settings::parse_from(["gateway", "--http-port", "9001"]);
        let c = Config::from_settings(&Settings::default(), &cli).expect("merge");
        assert_eq!(c.listen.port(), 9001);
        let cli = Settings::parse_from([
            "gateway",
            "--http-port",
            "9001",
            "--listen",
            "127.0.0.1:9002",
        ]);
        let c = Config::from_settings(&Settings::default(), &cli).expect("merge");
        assert_eq!(c.listen.port(), 9002);
    }

    #[test]
    fn unknown_toml_key_is_an_error() {
        assert!(toml::from_str::<Settings>("no_such_knob = 1").is_err());
    }

    #[test]
    fn io_ring_depth_must_be_a_power_of_two() {
        for (depth, ok) in [
            (4096, true),
            (16, true),
            (1000, false),
            (8, false),
            (65_536, false),
        ] {
            let c = Config {
                io_ring_depth: depth,
                ..Config::default()
            };
            assert_eq!(c.validate().is_ok(), ok, "depth {depth}");
        }
        let cli = Settings::parse_from(["gateway", "--io-ring-depth", "256"]);
        let c = Config::from_settings(&Settings::default(), &cli).expect("merge");
        assert_eq!(c.io_ring_depth, 256);
    }

    #[test]
    fn shards_are_pinned_unless_asked() {
        let c = Config::from_settings(&Settings::default(), &Settings::parse_from(["gateway"]))
            .expect("merge");
        assert!(!c.unpinned_shards);
        let file: Settings = toml::from_str("unpinned_shards = true").expect("toml parses");
        let c = Config::from_settings(&file, &Settings::parse_from(["gateway"])).expect("merge");
        assert!(c.unpinned_shards);
    }

    #[test]
    fn require_token_needs_secret() {
        let c = Config {
            require_token: true,
            ..Config::default()
        };
        assert!(c.validate().is_err());
    }
}
