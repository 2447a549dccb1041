//! The harness the integration tests share (a dev-dependency only, never shipped): loopback
//! ports, child processes killed on drop, polling with a deadline, and the real servers the
//! cluster tests run against — `redis-server` and the tansu Kafka-protocol broker.
//!
//! Standard library only, so it builds in no time and drags nothing into the crates that use
//! it. Every helper panics with a clear message on failure (it runs inside tests).
//!
//! # Environment (exported by `scripts/test`)
//! | variable | used by |
//! |---|---|
//! | `RTC_TEST_REDIS_URL` | [`shared_redis_url`]: a running, shared Redis (tests use their own key prefixes) |
//! | `RTC_TEST_KAFKA` | [`shared_kafka`]: a running, shared broker (tests use their own topic prefixes) |
//! | `RTC_REDIS_BIN` | [`redis_bin`]: the `redis-server` to start (default: from `PATH`) |
//! | `RTC_TANSU_BIN` | [`tansu_bin`]: the `tansu` to start (default: `.tools/` of the workspace) |
//!
//! # Layout
//! - `process.rs` — [`ChildGuard`]: a child killed (and reaped) on drop; [`listening_addr`].
//! - `net.rs` — [`free_port`], [`wait_listening`], [`until`].
//! - `metrics.rs` — [`metric_sum`] over Prometheus text.
//! - `redis.rs` — [`RedisServer`] (optionally persistent, restartable on its port).
//! - `broker.rs` — [`Broker`] (tansu with in-memory storage, restartable on its port).

#![warn(missing_docs)]

mod broker;
mod metrics;
mod net;
mod process;
mod redis;

pub use broker::{shared_kafka, tansu_bin, Broker};
pub use metrics::metric_sum;
pub use net::{free_port, until, wait_listening};
pub use process::{listening_addr, ChildGuard};
pub use redis::{redis_bin, shared_redis_url, RedisServer};

/// How long a server may take to start listening on a loaded 2-core machine.
pub const STARTUP: std::time::Duration = std::time::Duration::from_secs(30);

/// A name unique to this process and call (key prefixes, topic prefixes, temp dirs):
/// `TAG-PID-N`.
pub fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
