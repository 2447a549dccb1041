//! The gateway socket node: one pinned glommio executor ("shard") per core, each owning the
//! users whose home shard it is, talking to the other shards only through bounded SPSC rings.
//!
//! A single node runs with in-memory defaults (`cargo run --release -p gateway` serves
//! `ws://127.0.0.1:8080/ws`). TLS is terminated in front of the node; `TRUSTED_PROXIES` names
//! the terminators whose `X-Forwarded-For` is believed for per-IP limits.
//!
//! # Layout
//! - `config.rs` — [`config::Config`]: every knob, defaults, `validate()`, precedence
//!   flag > env > TOML > default.
//! - `node.rs` — start-up: bind, spawn the pinned shards, print the bound address.
//! - `drain.rs` — SIGTERM: readiness off, paced `drain` + 4007 to every client, exit.
//! - `shard/` — the per-core runtime: shard state, the SPSC mesh, messages between shards,
//!   the session core driven (attach, routing, `sent`), sweeps (ping/idle) and drain pacing.
//! - `http/` — the public port: request head, `/healthz`, `/readyz`, `/metrics`, the upgrade
//!   with its admission checks (rate, Origin, identity, per-IP).
//! - `conn/` — one upgraded connection: the read/write future and the hand-off to the home
//!   shard.
//! - `session/` — the pure per-shard session core (users, offsets, resume logs, dedup,
//!   drop-oldest windows, acks); see `LIFECYCLE.md`.
//! - `metrics/` — metric names (declared once), per-shard counters, Prometheus rendering.
#![warn(missing_docs)]

pub mod config;
pub mod conn;
pub mod drain;
pub mod http;
pub mod metrics;
pub mod node;
pub mod session;
pub mod shard;
