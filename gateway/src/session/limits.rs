//! Every bound of the session core: a named default constant and a knob in [`SessionLimits`].

use thiserror::Error;

/// Default resume-log length per user: the last `BUFFER_MAX` unacknowledged messages are kept.
pub const BUFFER_MAX: usize = 1000;
/// Default resume-log time to live, in seconds: older entries are dropped (counted as expired).
pub const RESUME_TTL_SEC: u64 = 300;
/// Default byte cap of one user's resume log (cost of each entry, see [`MESSAGE_OVERHEAD`]).
/// Keeps one user with a stalled client from holding the shard's memory.
pub const LOG_MAX_BYTES: usize = 4 << 20;
/// Default cap of the summed resume-log bytes of the users of one shard that are NOT
/// connected. Least recently touched logs are evicted first.
pub const MAX_OFFLINE_LOG_BYTES: usize = 64 << 20;
/// Default outbound window per connection, in messages (live messages not yet handed to the
/// socket; drop-oldest beyond it).
pub const PER_CONN_BUFFER_SIZE: usize = 256;
/// Default outbound window per connection, in bytes (same accounting as the log).
pub const PER_CONN_BUFFER_BYTES: usize = 1 << 20;
/// Default number of drops without a completed write after which the connection is a slow
/// consumer (closed with 4005).
pub const SLOW_CONSUMER_MAX_DROPS: u32 = 1024;
/// Default time, in milliseconds, a connection may keep dropping (first drop since the last
/// completed write) before it is a slow consumer.
pub const SLOW_CONSUMER_TIMEOUT_MS: u64 = 10_000;
/// Default number of `(from, clientMsgId)` pairs remembered per recipient for retry dedup.
pub const DEDUP_MAX: usize = 256;
/// Default maximum number of user records (connected, or offline with state) per shard.
pub const MAX_USERS_PER_SHARD: usize = 1_000_000;
/// Fixed per-message bookkeeping cost added to `payload.len() + from.len()` when counting log
/// and window bytes: the shared message header, the log slot and the allocator's rounding.
pub const MESSAGE_OVERHEAD: usize = 96;

/// Configuration of one shard's session core. `Default` gives a working single machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionLimits {
    /// Resume-log length per user, in messages. Default [`BUFFER_MAX`].
    pub buffer_max: usize,
    /// Resume-log and dedup time to live, in milliseconds. Default [`RESUME_TTL_SEC`] × 1000.
    pub resume_ttl_ms: u64,
    /// Byte cap of one user's log. Default [`LOG_MAX_BYTES`].
    pub log_max_bytes: usize,
    /// Summed log bytes of offline users on the shard. Default [`MAX_OFFLINE_LOG_BYTES`].
    pub max_offline_log_bytes: usize,
    /// Outbound window per connection, messages. Default [`PER_CONN_BUFFER_SIZE`].
    pub per_conn_buffer_size: usize,
    /// Outbound window per connection, bytes. Default [`PER_CONN_BUFFER_BYTES`].
    pub per_conn_buffer_bytes: usize,
    /// Drops without a completed write before 4005. Default [`SLOW_CONSUMER_MAX_DROPS`].
    pub slow_consumer_max_drops: u32,
    /// Milliseconds of dropping without a completed write before 4005.
    /// Default [`SLOW_CONSUMER_TIMEOUT_MS`].
    pub slow_consumer_timeout_ms: u64,
    /// Retry-dedup memory per recipient. Default [`DEDUP_MAX`].
    pub dedup_max: usize,
    /// User records per shard. Default [`MAX_USERS_PER_SHARD`].
    pub max_users: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            buffer_max: BUFFER_MAX,
            resume_ttl_ms: RESUME_TTL_SEC * 1000,
            log_max_bytes: LOG_MAX_BYTES,
            max_offline_log_bytes: MAX_OFFLINE_LOG_BYTES,
            per_conn_buffer_size: PER_CONN_BUFFER_SIZE,
            per_conn_buffer_bytes: PER_CONN_BUFFER_BYTES,
            slow_consumer_max_drops: SLOW_CONSUMER_MAX_DROPS,
            slow_consumer_timeout_ms: SLOW_CONSUMER_TIMEOUT_MS,
            dedup_max: DEDUP_MAX,
            max_users: MAX_USERS_PER_SHARD,
        }
    }
}

/// A [`SessionLimits`] that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LimitsError {
    /// A limit that must be at least 1 is 0.
    #[error("session limit `{0}` must be greater than zero")]
    Zero(&'static str),
    /// One user's log could never fit in the offline budget.
    #[error("log_max_bytes ({log}) must not exceed max_offline_log_bytes ({offline})")]
    LogExceedsOffline {
        /// `log_max_bytes`.
        log: usize,
        /// `max_offline_log_bytes`.
        offline: usize,
    },
    /// The smallest possible message does not fit in a log or a connection window.
    #[error("byte limits must be at least {MESSAGE_OVERHEAD} (one empty message)")]
    BytesTooSmall,
    /// More user records than the slab's `u32` indices can name.
    #[error("max_users must be below 2^32 - 1")]
    TooManyUsers,
}

impl SessionLimits {
    /// Largest message cost ([`MESSAGE_OVERHEAD`] + sender id + payload) `commit` accepts:
    /// one message must fit both a user's log and a connection's live window, or it could
    /// only ever reach the client through a resume.
    pub fn max_message_cost(&self) -> usize {
        self.log_max_bytes.min(self.per_conn_buffer_bytes)
    }

    /// Checks the limits are usable together.
    pub fn validate(&self) -> Result<(), LimitsError> {
        let nonzero: [(&'static str, bool); 9] = [
            ("buffer_max", self.buffer_max > 0),
            ("resume_ttl_ms", self.resume_ttl_ms > 0),
            ("log_max_bytes", self.log_max_bytes > 0),
            ("max_offline_log_bytes", self.max_offline_log_bytes > 0),
            ("per_conn_buffer_size", self.per_conn_buffer_size > 0),
            ("per_conn_buffer_bytes", self.per_conn_buffer_bytes > 0),
            (
                "slow_consumer_timeout_ms",
                self.slow_consumer_timeout_ms > 0,
            ),
            ("dedup_max", self.dedup_max > 0),
            ("max_users", self.max_users > 0),
        ];
        if let Some((name, _)) = nonzero.iter().find(|(_, ok)| !ok) {
            return Err(LimitsError::Zero(name));
        }
        if self.log_max_bytes > self.max_offline_log_bytes {
            return Err(LimitsError::LogExceedsOffline {
                log: self.log_max_bytes,
                offline: self.max_offline_log_bytes,
            });
        }
        if self.log_max_bytes < MESSAGE_OVERHEAD || self.per_conn_buffer_bytes < MESSAGE_OVERHEAD {
            return Err(LimitsError::BytesTooSmall);
        }
        if self.max_users >= u32::MAX as usize {
            return Err(LimitsError::TooManyUsers);
        }
        Ok(())
    }
}
