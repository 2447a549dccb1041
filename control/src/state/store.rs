//! Where the ring lives between restarts, and who may change it.
//!
//! - [`Store::Memory`]: nothing persists; this instance is always the leader.
//! - [`Store::Redis`]: the snapshot, its version and the node origins live in one Redis hash
//!   (`PREFIX:state`), the recent history in a capped list (`PREFIX:history`), both written
//!   only through a Lua script that checks, atomically, that the writer still holds the
//!   leader lease and that the version goes up. So a deposed leader cannot overwrite its
//!   successor, and a version is never written twice. The lease is a key set with
//!   `SET NX PX` and renewed by its holder; when the holder dies it expires and another
//!   instance takes it within the TTL.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;
use serde::{Deserialize, Serialize};

use super::membership::{Origins, RingEvent};
use crate::config::MAX_RING_HISTORY;

/// Why the store refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis could not be reached or answered an error.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// This instance does not hold the lease (any more).
    #[error("this control instance does not hold the leader lease")]
    NotLeader,
    /// The stored version is already at or past the one being written.
    #[error("stored ring version {stored} is not below {writing}")]
    StaleVersion {
        /// Version in Redis.
        stored: u64,
        /// Version this instance tried to write.
        writing: u64,
    },
    /// The stored record does not parse.
    #[error("stored state is corrupt: {0}")]
    Corrupt(String),
}

/// The persisted record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Persisted {
    /// Ring version.
    pub version: u64,
    /// The ring snapshot JSON (`Ring::to_json`).
    pub ring: String,
    /// Which nodes joined by heartbeat.
    pub origins: Origins,
    /// Recent versions, oldest first (so any instance's dashboard shows the same history).
    #[serde(default)]
    pub history: Vec<RingEvent>,
}

/// Lua: write the state only while holding the lease and only with a higher version.
const PERSIST_LUA: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local cur = tonumber(redis.call('HGET', KEYS[2], 'version') or '-1')
if cur >= tonumber(ARGV[2]) then return cur end
redis.call('HSET', KEYS[2], 'version', ARGV[2], 'ring', ARGV[3], 'origins', ARGV[4])
redis.call('RPUSH', KEYS[3], ARGV[5])
redis.call('LTRIM', KEYS[3], -tonumber(ARGV[6]), -1)
return -2
";

/// Lua: take the lease if free, or extend it if we hold it. 1 = held, 0 = someone else's.
const ACQUIRE_LUA: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if cur then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

/// Lua: give the lease up if we hold it.
const RELEASE_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Redis connection timeout: a control that cannot reach Redis should say so, not hang.
const REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Redis command timeout.
const REDIS_RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The Redis side.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    lease_key: String,
    state_key: String,
    history_key: String,
    /// `instance-id|advertise-url`: unique per process, and tells followers where to forward.
    holder: String,
    ttl_ms: u64,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("lease_key", &self.lease_key)
            .field("holder", &self.holder)
            .finish()
    }
}

impl RedisStore {
    /// Connects (fails fast when Redis is not there).
    pub async fn connect(
        url: &str,
        prefix: &str,
        instance: &str,
        advertise_url: &str,
        ttl: Duration,
    ) -> Result<Self, StoreError> {
        let client = redis::Client::open(url)?;
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(REDIS_CONNECT_TIMEOUT)
            .set_response_timeout(REDIS_RESPONSE_TIMEOUT)
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_with_config(client, cfg).await?;
        Ok(RedisStore {
            conn,
            lease_key: format!("{prefix}:leader"),
            state_key: format!("{prefix}:state"),
            history_key: format!("{prefix}:history"),
            holder: format!("{instance}|{advertise_url}"),
            ttl_ms: ttl.as_millis() as u64,
        })
    }

    /// Takes or renews the lease; `true` when this instance holds it afterwards.
    pub async fn acquire(&self) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        let held: i64 = Script::new(ACQUIRE_LUA)
            .key(&self.lease_key)
            .arg(&self.holder)
            .arg(self.ttl_ms)
            .invoke_async(&mut c)
            .await?;
        Ok(held == 1)
    }

    /// Gives the lease up (clean shutdown: a successor need not wait for the TTL).
    pub async fn release(&self) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let _: i64 = Script::new(RELEASE_LUA)
            .key(&self.lease_key)
            .arg(&self.holder)
            .invoke_async(&mut c)
            .await?;
        Ok(())
    }

    /// The advertised URL of the current lease holder, if any.
    pub async fn leader_url(&self) -> Result<Option<String>, StoreError> {
        let mut c = self.conn.clone();
        let v: Option<String> = redis::cmd("GET")
            .arg(&self.lease_key)
            .query_async(&mut c)
            .await?;
        Ok(v.and_then(|v| v.split_once('|').map(|(_, url)| url.to_owned())))
    }

    /// The stored version (`None`: nothing stored yet).
    pub async fn version(&self) -> Result<Option<u64>, StoreError> {
        let mut c = self.conn.clone();
        let v: Option<u64> = redis::cmd("HGET")
            .arg(&self.state_key)
            .arg("version")
            .query_async(&mut c)
            .await?;
        Ok(v)
    }

    /// The stored state.
    pub async fn load(&self) -> Result<Option<Persisted>, StoreError> {
        let mut c = self.conn.clone();
        let (version, ring, origins): (Option<u64>, Option<String>, Option<String>) =
            redis::cmd("HMGET")
                .arg(&self.state_key)
                .arg("version")
                .arg("ring")
                .arg("origins")
                .query_async(&mut c)
                .await?;
        let (Some(version), Some(ring)) = (version, ring) else {
            return Ok(None);
        };
        let origins = match origins {
            Some(o) => serde_json::from_str(&o).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            None => Origins::default(),
        };
        let raw: Vec<String> = redis::cmd("LRANGE")
            .arg(&self.history_key)
            .arg(0)
            .arg(-1)
            .query_async(&mut c)
            .await?;
        // An entry this build cannot read is skipped: history is for people, not for placement.
        let history = raw
            .iter()
            .filter_map(|e| serde_json::from_str(e).ok())
            .collect();
        Ok(Some(Persisted {
            version,
            ring,
            origins,
            history,
        }))
    }

    /// Writes a new version and appends its history event (fenced by the lease; see the
    /// module doc). `p.history` is not written: the event is appended instead.
    pub async fn save(&self, p: &Persisted, event: &RingEvent) -> Result<(), StoreError> {
        let origins =
            serde_json::to_string(&p.origins).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let event = serde_json::to_string(event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut c = self.conn.clone();
        let r: i64 = Script::new(PERSIST_LUA)
            .key(&self.lease_key)
            .key(&self.state_key)
            .key(&self.history_key)
            .arg(&self.holder)
            .arg(p.version)
            .arg(&p.ring)
            .arg(origins)
            .arg(event)
            .arg(MAX_RING_HISTORY)
            .invoke_async(&mut c)
            .await?;
        match r {
            -2 => Ok(()),
            -1 => Err(StoreError::NotLeader),
            stored => Err(StoreError::StaleVersion {
                stored: stored.max(0) as u64,
                writing: p.version,
            }),
        }
    }
}

/// Memory or Redis.
#[derive(Debug, Clone)]
pub enum Store {
    /// In-process only.
    Memory,
    /// Redis-backed with a leader lease.
    Redis(RedisStore),
}
