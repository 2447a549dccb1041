//! [`StoreConfig`]: every knob of the Redis store, with a named default and `validate()`.
//!
//! The environment variable named on each field is the name the node's configuration uses for
//! it (the node parses flags/env/TOML; this module only holds and checks the values).

use thiserror::Error;

/// Default Redis URL (`REDIS_URL`).
pub const REDIS_URL: &str = "redis://127.0.0.1:6379/";
/// Default key prefix (`REDIS_PREFIX`): every key is `PREFIX:{user}:…`.
pub const KEY_PREFIX: &str = "rtc";
/// Default resume-log length per user in Redis (`BUFFER_MAX`), same default as the in-memory
/// session core.
pub const BUFFER_MAX: usize = crate::session::BUFFER_MAX;
/// Default resume-log time to live in seconds (`RESUME_TTL_SEC`): the user's log keys expire
/// this long after the last write, and entries older than this are trimmed.
pub const RESUME_TTL_SEC: u64 = crate::session::RESUME_TTL_SEC;
/// Default session-record time to live in seconds (`SESSION_TTL_SEC`); the node refreshes
/// connected users' records well within it (e.g. every third of it).
pub const SESSION_TTL_SEC: u64 = 30;
/// Default number of `(from, clientMsgId)` pairs remembered per recipient (`DEDUP_MAX`).
pub const DEDUP_MAX: usize = crate::session::DEDUP_MAX;
/// Default number of requests one shard may have outstanding (`STORE_SHARD_CAPACITY`):
/// queued, in flight and completed-but-not-yet-received together. Beyond it `try_submit`
/// hands the request back (`Full`).
pub const SHARD_CAPACITY: usize = 4096;
/// Default maximum number of commands written in one pipelined round trip
/// (`STORE_PIPELINE_BATCH`).
pub const PIPELINE_BATCH: usize = 512;
/// Default byte budget of one pipelined round trip (`STORE_PIPELINE_MAX_BYTES`): a batch
/// stops growing once its requests' payloads and ids add up to this (at least one request is
/// always sent).
pub const PIPELINE_MAX_BYTES: usize = 4 << 20;
/// Default byte budget of one `Replay` answer's payloads (`STORE_REPLAY_MAX_BYTES`): the
/// script stops adding entries once past it (at least one entry is always returned).
pub const REPLAY_MAX_BYTES: usize = 1 << 20;
/// Default and largest number of entries one `Replay` returns (`STORE_REPLAY_BATCH_MAX`);
/// a larger replay is read in several requests.
pub const REPLAY_BATCH_MAX: usize = 256;
/// Default largest payload accepted in a commit, bytes (`STORE_MAX_PAYLOAD_BYTES`).
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;
/// Default number of bridge threads (`STORE_BRIDGE_THREADS`); shard `i` uses bridge
/// `i % bridge_threads`, so one shard's requests stay in one FIFO.
pub const BRIDGE_THREADS: usize = 1;
/// Default connect timeout in milliseconds (`STORE_CONNECT_TIMEOUT_MS`).
pub const CONNECT_TIMEOUT_MS: u64 = 1000;
/// Default read/write timeout of one round trip in milliseconds (`STORE_IO_TIMEOUT_MS`): a
/// Redis that stops answering is declared down after this.
pub const IO_TIMEOUT_MS: u64 = 2000;
/// Default first reconnect delay in milliseconds (`STORE_RECONNECT_BASE_MS`).
pub const RECONNECT_BASE_MS: u64 = 50;
/// Default largest reconnect delay in milliseconds (`STORE_RECONNECT_MAX_MS`).
pub const RECONNECT_MAX_MS: u64 = 2000;
/// Default idle health-check interval in milliseconds (`STORE_HEALTH_INTERVAL_MS`): an idle
/// bridge PINGs this often so `health()` turns false even with no traffic.
pub const HEALTH_INTERVAL_MS: u64 = 1000;
/// Largest offset the store handles: Redis Lua numbers are doubles, exact to 2^53. Client
/// supplied offsets (`lastOffset`, `ack upTo`) are clamped to it.
pub const MAX_OFFSET: u64 = (1 << 53) - 1;

/// Checks a key prefix (`REDIS_PREFIX`): non-empty, and none of `{`, `}`, `:` (they would
/// change the key layout `PREFIX:{user}:…` and its hash tag). Two clusters sharing one
/// Redis use two prefixes; none of their keys can collide.
pub fn check_prefix(prefix: &str) -> Result<(), StoreConfigError> {
    if prefix.is_empty() || prefix.contains(['{', '}', ':']) {
        return Err(StoreConfigError::BadPrefix(prefix.to_owned()));
    }
    Ok(())
}

/// Configuration of the Redis store. `Default` works against a local Redis on port 6379.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Redis URL (`REDIS_URL`). Default [`REDIS_URL`].
    pub redis_url: String,
    /// Key prefix (`REDIS_PREFIX`). Default [`KEY_PREFIX`].
    pub key_prefix: String,
    /// Resume-log entries kept per user (`BUFFER_MAX`). Default [`BUFFER_MAX`].
    pub buffer_max: usize,
    /// Resume-log time to live, seconds (`RESUME_TTL_SEC`). Default [`RESUME_TTL_SEC`].
    pub resume_ttl_sec: u64,
    /// Session-record time to live, seconds (`SESSION_TTL_SEC`). Default [`SESSION_TTL_SEC`].
    pub session_ttl_sec: u64,
    /// Retry-dedup memory per recipient (`DEDUP_MAX`). Default [`DEDUP_MAX`].
    pub dedup_max: usize,
    /// Outstanding requests per shard (`STORE_SHARD_CAPACITY`). Default [`SHARD_CAPACITY`].
    pub shard_capacity: usize,
    /// Commands per round trip (`STORE_PIPELINE_BATCH`). Default [`PIPELINE_BATCH`].
    pub pipeline_batch: usize,
    /// Bytes per round trip (`STORE_PIPELINE_MAX_BYTES`). Default [`PIPELINE_MAX_BYTES`].
    pub pipeline_max_bytes: usize,
    /// Entries per `Replay` at most (`STORE_REPLAY_BATCH_MAX`). Default [`REPLAY_BATCH_MAX`].
    pub replay_batch_max: usize,
    /// Payload bytes per `Replay` answer (`STORE_REPLAY_MAX_BYTES`). Default
    /// [`REPLAY_MAX_BYTES`].
    pub replay_max_bytes: usize,
    /// Largest commit payload, bytes (`STORE_MAX_PAYLOAD_BYTES`). Default [`MAX_PAYLOAD_BYTES`].
    pub max_payload_bytes: usize,
    /// Bridge threads (`STORE_BRIDGE_THREADS`). Default [`BRIDGE_THREADS`].
    pub bridge_threads: usize,
    /// Connect timeout, ms (`STORE_CONNECT_TIMEOUT_MS`). Default [`CONNECT_TIMEOUT_MS`].
    pub connect_timeout_ms: u64,
    /// Round-trip read/write timeout, ms (`STORE_IO_TIMEOUT_MS`). Default [`IO_TIMEOUT_MS`].
    pub io_timeout_ms: u64,
    /// First reconnect delay, ms (`STORE_RECONNECT_BASE_MS`). Default [`RECONNECT_BASE_MS`].
    pub reconnect_base_ms: u64,
    /// Largest reconnect delay, ms (`STORE_RECONNECT_MAX_MS`). Default [`RECONNECT_MAX_MS`].
    pub reconnect_max_ms: u64,
    /// Idle health-check interval, ms (`STORE_HEALTH_INTERVAL_MS`). Default
    /// [`HEALTH_INTERVAL_MS`].
    pub health_interval_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            redis_url: REDIS_URL.to_owned(),
            key_prefix: KEY_PREFIX.to_owned(),
            buffer_max: BUFFER_MAX,
            resume_ttl_sec: RESUME_TTL_SEC,
            session_ttl_sec: SESSION_TTL_SEC,
            dedup_max: DEDUP_MAX,
            shard_capacity: SHARD_CAPACITY,
            pipeline_batch: PIPELINE_BATCH,
            pipeline_max_bytes: PIPELINE_MAX_BYTES,
            replay_batch_max: REPLAY_BATCH_MAX,
            replay_max_bytes: REPLAY_MAX_BYTES,
            max_payload_bytes: MAX_PAYLOAD_BYTES,
            bridge_threads: BRIDGE_THREADS,
            connect_timeout_ms: CONNECT_TIMEOUT_MS,
            io_timeout_ms: IO_TIMEOUT_MS,
            reconnect_base_ms: RECONNECT_BASE_MS,
            reconnect_max_ms: RECONNECT_MAX_MS,
            health_interval_ms: HEALTH_INTERVAL_MS,
        }
    }
}

/// A [`StoreConfig`] that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StoreConfigError {
    /// A knob that must be at least 1 is 0.
    #[error("store setting `{0}` must be greater than zero")]
    Zero(&'static str),
    /// `REDIS_URL` does not parse as a Redis URL.
    #[error("REDIS_URL `{0}` is not a redis:// URL: {1}")]
    BadUrl(String, String),
    /// The key prefix contains a character that would change the key layout.
    #[error("key prefix `{0}` must be non-empty and contain no `{{`, `}}` or `:`")]
    BadPrefix(String),
    /// The reconnect delays are inverted.
    #[error("reconnect_base_ms ({base}) must not exceed reconnect_max_ms ({max})")]
    BackoffInverted {
        /// `reconnect_base_ms`.
        base: u64,
        /// `reconnect_max_ms`.
        max: u64,
    },
    /// A value would not fit the store's number range (offset arithmetic is in Lua doubles).
    #[error("store setting `{0}` is too large")]
    TooLarge(&'static str),
}

impl StoreConfig {
    /// Checks the knobs are usable together (does not contact Redis).
    pub fn validate(&self) -> Result<(), StoreConfigError> {
        let nonzero: [(&'static str, bool); 15] = [
            ("buffer_max", self.buffer_max > 0),
            ("resume_ttl_sec", self.resume_ttl_sec > 0),
            ("session_ttl_sec", self.session_ttl_sec > 0),
            ("dedup_max", self.dedup_max > 0),
            ("shard_capacity", self.shard_capacity > 0),
            ("pipeline_batch", self.pipeline_batch > 0),
            ("pipeline_max_bytes", self.pipeline_max_bytes > 0),
            ("replay_batch_max", self.replay_batch_max > 0),
            ("replay_max_bytes", self.replay_max_bytes > 0),
            ("max_payload_bytes", self.max_payload_bytes > 0),
            ("bridge_threads", self.bridge_threads > 0),
            ("connect_timeout_ms", self.connect_timeout_ms > 0),
            ("io_timeout_ms", self.io_timeout_ms > 0),
            ("reconnect_base_ms", self.reconnect_base_ms > 0),
            ("health_interval_ms", self.health_interval_ms > 0),
        ];
        if let Some((name, _)) = nonzero.iter().find(|(_, ok)| !ok) {
            return Err(StoreConfigError::Zero(name));
        }
        check_prefix(&self.key_prefix)?;
        if let Err(e) = redis::Client::open(self.redis_url.as_str()) {
            return Err(StoreConfigError::BadUrl(
                self.redis_url.clone(),
                e.to_string(),
            ));
        }
        if self.reconnect_base_ms > self.reconnect_max_ms {
            return Err(StoreConfigError::BackoffInverted {
                base: self.reconnect_base_ms,
                max: self.reconnect_max_ms,
            });
        }
        // Redis EXPIRE takes seconds up to i64; the age trim works in milliseconds in Lua.
        if self.resume_ttl_sec > MAX_OFFSET / 1000 || self.session_ttl_sec > MAX_OFFSET / 1000 {
            return Err(StoreConfigError::TooLarge("ttl"));
        }
        // A user's whole log may be read in one trim; keep it to what one Lua call handles.
        if self.buffer_max > 1_000_000 {
            return Err(StoreConfigError::TooLarge("buffer_max"));
        }
        if self.pipeline_batch > 65_536 {
            return Err(StoreConfigError::TooLarge("pipeline_batch"));
        }
        Ok(())
    }

    /// Resume TTL in milliseconds (age trim).
    pub(crate) fn resume_ttl_ms(&self) -> u64 {
        self.resume_ttl_sec * 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        assert_eq!(StoreConfig::default().validate(), Ok(()));
    }

    #[test]
    fn zero_knobs_are_rejected_by_name() {
        let c = StoreConfig {
            pipeline_batch: 0,
            ..StoreConfig::default()
        };
        assert_eq!(c.validate(), Err(StoreConfigError::Zero("pipeline_batch")));
        let c = StoreConfig {
            shard_capacity: 0,
            ..StoreConfig::default()
        };
        assert_eq!(c.validate(), Err(StoreConfigError::Zero("shard_capacity")));
    }

    #[test]
    fn bad_url_prefix_and_backoff_are_rejected() {
        let c = StoreConfig {
            redis_url: "http://nope".into(),
            ..StoreConfig::default()
        };
        assert!(matches!(c.validate(), Err(StoreConfigError::BadUrl(..))));
        let c = StoreConfig {
            key_prefix: "a{b".into(),
            ..StoreConfig::default()
        };
        assert!(matches!(c.validate(), Err(StoreConfigError::BadPrefix(_))));
        let c = StoreConfig {
            reconnect_base_ms: 10_000,
            reconnect_max_ms: 100,
            ..StoreConfig::default()
        };
        assert!(matches!(
            c.validate(),
            Err(StoreConfigError::BackoffInverted { .. })
        ));
    }
}
