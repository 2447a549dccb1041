//! The Redis store of a cluster node: resume logs (so a user can resume on another node than
//! the one it left), offsets, retry dedup, acks and session records (user → node, shard).
//!
//! The shards never talk to Redis themselves. Each shard gets a [`StoreHandle`] and submits
//! [`Request`]s with a non-blocking [`StoreHandle::try_submit`]; one or more **bridge
//! threads** (plain OS threads, off the shards' cores' executors) batch the requests of all
//! their shards into one pipelined round trip on a synchronous Redis connection and send each
//! [`Completion`] back to the shard that asked, which awaits [`StoreHandle::recv_batch`]
//! (see `handle.rs` for why this fits glommio without busy polling).
//!
//! # Layout
//! - `config.rs` — [`StoreConfig`]: every knob with its named default, `validate()`.
//! - `types.rs` — [`Request`], [`Reply`], [`Completion`], [`StoreError`], [`Full`], counters.
//! - `scripts.rs` — key names and the Lua scripts (the commit point is one of them).
//! - `handle.rs` — [`StoreHandle`]: the shard's lane (bounded lock-free rings + waker).
//! - `bridge.rs` — the bridge thread: batching, pipelining, decoding, reconnect with backoff.
//! - this file — [`Store`]: starts the bridges, health flag, counters, shutdown.
//!
//! # Keys (`PREFIX` = `REDIS_PREFIX`, default `rtc`)
//! The user id is wrapped in braces, a Redis Cluster hash tag, so all keys of a user live in
//! one slot and one script may touch them together. User ids are checked with
//! `protocol::user::validate_user_id` (no braces possible) before any key is built.
//!
//! `REDIS_PREFIX` (flag `--redis-prefix`, TOML `redis_prefix`) lets several clusters share
//! one Redis: each uses its own prefix and no key of one can be a key of another. Control's
//! keys under the same prefix (`PREFIX:leader`, `PREFIX:state`, `PREFIX:history`) never
//! collide with a node's (always `PREFIX:{user}:…`), so one `REDIS_PREFIX` per cluster can
//! be given to control and nodes alike.
//!
//! | key | type | holds | lifetime |
//! |---|---|---|---|
//! | `PREFIX:{u}:log` | stream | the resume log: entry id `OFFSET-0`, fields `m` msgId, `f` from, `p` payload (raw JSON), `t` commit unix ms | at most `BUFFER_MAX` entries, none older than `RESUME_TTL_SEC` (trimmed in the scripts); key TTL `RESUME_TTL_SEC`, refreshed by every write |
//! | `PREFIX:{u}:meta` | hash | `head` (last offset assigned), `acked` (cumulative ack), `lost` (highest offset trimmed unacked) | same TTL |
//! | `PREFIX:{u}:dedup` | hash | `len(from):from clientMsgId` → `msgId:offset` | at most `DEDUP_MAX` fields (oldest evicted), same TTL |
//! | `PREFIX:{u}:dedupq` | list | the dedup fields, oldest first (eviction order) | same |
//! | `PREFIX:{u}:mid` | hash | msgId → offset of entries still in the log (ack by id) | same |
//! | `PREFIX:{u}:sess` | hash | `node`, `shard`, `conn`, `at` (connect unix ms) | TTL `SESSION_TTL_SEC`, refreshed by heartbeats |
//!
//! # Delivery semantics kept here
//! - **Commit point** ([`Request::Commit`], one `EVALSHA`, atomic): dedup check → next offset
//!   (`HINCRBY head`) → append to the log → remember the dedup pair and msgId → trim to
//!   `BUFFER_MAX` and the TTL → refresh TTLs → `(msgId, offset, duplicate)`. Only after its
//!   completion does the sender get `sent`.
//! - Offsets per user start at 1 and only grow: the head lives in Redis, so a user resuming on
//!   another node continues the same sequence. If the head counter were lost while the log
//!   survived, the script continues above the log's last id. If *all* of a user's keys are
//!   lost (TTL passed, or a Redis without persistence restarted) offsets restart at 1: run
//!   Redis with AOF (`appendonly yes`, `appendfsync always` for no loss at all) and a
//!   `noeviction` policy.
//! - `StoreError::Unavailable` on a commit means the outcome is unknown (the connection broke
//!   with the command in flight): the sender's retry with the same `clientMsgId` is answered
//!   from the dedup memory, so retries never duplicate a committed message.
//! - Acks: [`Request::AckUpTo`] moves the cumulative acked offset (never backwards, never past
//!   the head) and removes those entries; [`Request::AckIds`] removes single entries. Replays
//!   start after `max(lastOffset, acked)`; `LogHead::lost` tells the node which offsets a
//!   resume can no longer get (the `gap`).
//! - Message ids are chosen by the committing node (`session::MsgIdGen`); they are unique per
//!   node, so two nodes could in principle give one user the same id. Ack by id then removes the
//!   most recent entry with that id. Clients dedup by offset across nodes.
//!
//! # Cost (measured)
//! `cargo test --release -p gateway --test redis_store -- --ignored --nocapture commit_rate`
//! (2 glommio shards → 1 bridge thread → Redis 7.0 on loopback, 200-byte payloads, 1,000
//! users, a loaded 2-core machine): 66,000–76,000 commits/s, 511 commands per round trip, CPU
//! per commit 12–13 µs in redis-server (the commit script: ~13 Redis calls) and 1.4–1.5 µs on
//! the bridge thread. Redis's single core is the limit; one bridge thread could feed several.
//!
//! # Not here (yet)
//! - Redis Cluster routing: keys are hash-tagged per user, but the bridge talks to one
//!   endpoint; a `MOVED` answer surfaces as `StoreError::Redis`.
//! - TLS to Redis (`rediss://`) needs the `redis` crate's TLS feature.
//!
//! # Wiring it into the node
//! | when | call |
//! |---|---|
//! | start-up (main thread) | [`Store::start`]`(config, shards)` → `(Store, Vec<StoreHandle>)`; move handle `i` into shard `i`; keep the `Store` (dropping it stops the bridges) |
//! | each shard, once | spawn one task: `loop { handle.recv_batch(&mut buf, 256).await; for c in buf.drain(..) { dispatch(c.tag, c.result) } }` |
//! | message for a user homed here | `try_submit(tag, Request::Commit{..})`; on the completion answer `sent`, deliver live; `Err(Full)` / `Unavailable` → `error unavailable` |
//! | handshake with resume | `SetSession`, then `Replay{after: lastOffset}` (again after the last offset while `more`); `Unavailable` → 503 + Retry-After |
//! | `ack` frames | `AckUpTo` / `AckIds` (may be coalesced per user) |
//! | every `SESSION_TTL_SEC / 3` per connected user | `RefreshSession`; `Owned(false)` → the user connected elsewhere: close 4002 |
//! | clean disconnect | `RemoveSession` (compare-and-delete: only if still this node's connection) |
//! | lost relay / reconciling | `Head` per connected user, `Replay` from what the connection last got |
//! | `/readyz`, metrics | [`Store::health`] / [`StoreHealth`], [`StoreHandle::counters`], [`Store::counters`] |
//!
//! ```no_run
//! use gateway::store::{Completion, Request, Store, StoreConfig};
//!
//! let config = StoreConfig { redis_url: "redis://127.0.0.1:6379/".into(), ..StoreConfig::default() };
//! let (store, handles) = Store::start(config, 2).expect("valid config");
//! let readyz = store.health_probe(); // Clone + Send + Sync: `readyz.is_healthy()`
//! for handle in handles {
//!     glommio::LocalExecutorBuilder::default()
//!         .spawn(move || async move {
//!             let handle = std::rc::Rc::new(handle);
//!             // The shard's one completion task.
//!             let rx = handle.clone();
//!             glommio::spawn_local(async move {
//!                 let mut batch: Vec<Completion> = Vec::new();
//!                 loop {
//!                     rx.recv_batch(&mut batch, 256).await;
//!                     for c in batch.drain(..) {
//!                         // look up what `c.tag` was for, answer the client
//!                         let _ = (c.tag, c.result);
//!                     }
//!                 }
//!             })
//!             .detach();
//!             // Anywhere on the shard: never blocks.
//!             let commit = Request::Commit {
//!                 to: "bob".into(),
//!                 from: "alice".into(),
//!                 client_msg_id: "c1".into(),
//!                 msg_id: 1,
//!                 payload: b"{}".to_vec().into_boxed_slice(),
//!                 ts_ms: 1_700_000_000_000,
//!             };
//!             if let Err(full) = handle.try_submit(42, commit) {
//!                 let _refused = full.0; // answer `error unavailable`, count the drop
//!             }
//!         })
//!         .expect("executor");
//! }
//! # drop((store, readyz));
//! ```

mod bridge;
mod config;
mod handle;
mod scripts;
mod types;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use thiserror::Error;

pub use config::{
    check_prefix, StoreConfig, StoreConfigError, BRIDGE_THREADS, BUFFER_MAX, CONNECT_TIMEOUT_MS,
    DEDUP_MAX, HEALTH_INTERVAL_MS, IO_TIMEOUT_MS, KEY_PREFIX, MAX_OFFSET, MAX_PAYLOAD_BYTES,
    PIPELINE_BATCH, PIPELINE_MAX_BYTES, RECONNECT_BASE_MS, RECONNECT_MAX_MS, REDIS_URL,
    REPLAY_BATCH_MAX, REPLAY_MAX_BYTES, RESUME_TTL_SEC, SESSION_TTL_SEC, SHARD_CAPACITY,
};
pub use handle::{RecvBatch, StoreHandle};
pub use types::{
    BridgeCounters, CommitReply, Completion, Full, HandleCounters, LogEntry, LogHead, Reply,
    Request, SessionRecord, StoreError,
};

use handle::{BridgeShared, Lane};

/// Why the store could not start.
#[derive(Debug, Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] StoreConfigError),
    /// Zero shards were asked for.
    #[error("the store needs at least one shard")]
    NoShards,
    /// A bridge thread could not be spawned.
    #[error("spawning a store bridge thread: {0}")]
    Spawn(#[from] std::io::Error),
}

/// The running store: owns the bridge threads. Dropping it stops them (requests still queued
/// complete with `Unavailable`; later submits too).
#[derive(Debug)]
pub struct Store {
    bridges: Vec<Arc<BridgeShared>>,
    threads: Vec<JoinHandle<()>>,
}

/// A cheap, cloneable, thread-safe view of the store's health (for `/readyz` on any thread).
#[derive(Debug, Clone)]
pub struct StoreHealth {
    bridges: Vec<Arc<BridgeShared>>,
}

impl StoreHealth {
    /// True when every bridge is connected with its scripts loaded.
    pub fn is_healthy(&self) -> bool {
        self.bridges
            .iter()
            .all(|b| b.healthy.load(Ordering::Acquire))
    }
}

impl Store {
    /// Validates `config`, starts `config.bridge_threads` bridge threads (named
    /// `store-bridge-N`) and returns one handle per shard (index = shard id). Returns at once:
    /// the bridges connect in the background ([`Store::health`] turns true when they have).
    pub fn start(
        config: StoreConfig,
        shards: usize,
    ) -> Result<(Store, Vec<StoreHandle>), StartError> {
        config.validate()?;
        if shards == 0 {
            return Err(StartError::NoShards);
        }
        let config = Arc::new(config);
        let bridge_count = config.bridge_threads.min(shards);
        let lanes: Vec<Arc<Lane>> = (0..shards)
            .map(|_| Arc::new(Lane::new(config.shard_capacity)))
            .collect();
        let bridges: Vec<Arc<BridgeShared>> = (0..bridge_count)
            .map(|b| {
                let mine = lanes
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| i % bridge_count == b)
                    .map(|(_, l)| l.clone())
                    .collect();
                Arc::new(BridgeShared::new(mine))
            })
            .collect();
        let mut store = Store {
            bridges: bridges.clone(),
            threads: Vec::with_capacity(bridge_count),
        };
        for (b, shared) in bridges.iter().enumerate() {
            let bridge = bridge::Bridge::new(shared.clone(), config.clone());
            let thread = std::thread::Builder::new()
                .name(format!("store-bridge-{b}"))
                .spawn(move || bridge.run())?;
            store.threads.push(thread);
        }
        let handles = lanes
            .into_iter()
            .enumerate()
            .map(|(i, lane)| {
                StoreHandle::new(
                    i,
                    lane,
                    bridges[i % bridge_count].clone(),
                    config.shard_capacity,
                )
            })
            .collect();
        Ok((store, handles))
    }

    /// True when every bridge is connected with its scripts loaded.
    pub fn health(&self) -> bool {
        self.health_probe().is_healthy()
    }

    /// A health view to hand to other threads (e.g. the HTTP `/readyz` of every shard).
    pub fn health_probe(&self) -> StoreHealth {
        StoreHealth {
            bridges: self.bridges.clone(),
        }
    }

    /// Blocks the calling thread (not a shard!) until healthy or `timeout`; returns the health.
    /// For start-up and tests.
    pub fn wait_healthy(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.health() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The bridges' counters, summed.
    pub fn counters(&self) -> BridgeCounters {
        let mut sum = BridgeCounters::default();
        for b in &self.bridges {
            let c = b.counters.snapshot();
            sum.batches += c.batches;
            sum.commands += c.commands;
            sum.errors += c.errors;
            sum.unavailable += c.unavailable;
            sum.reconnects += c.reconnects;
            sum.connect_failures += c.connect_failures;
            sum.script_reloads += c.script_reloads;
        }
        sum
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        for b in &self.bridges {
            b.shutdown.store(true, Ordering::SeqCst);
            b.healthy.store(false, Ordering::Release);
            if let Some(t) = b.thread.get() {
                t.unpark();
            }
        }
        for t in self.threads.drain(..) {
            // A bridge in a round trip finishes it first (bounded by the I/O timeout).
            let _ = t.join();
        }
        // Requests pushed after a bridge's last look (see `StoreHandle::try_submit`).
        std::sync::atomic::fence(Ordering::SeqCst);
        for b in &self.bridges {
            for lane in &b.lanes {
                lane.fail_all();
            }
        }
    }
}
