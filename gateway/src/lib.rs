//! The gateway socket node: one pinned glommio executor ("shard") per core, each owning the
//! users whose home shard it is, talking to the other shards only through bounded SPSC rings.
//!
//! A single node runs with in-memory defaults (`cargo run --release -p gateway` serves
//! `ws://127.0.0.1:8080/ws`). TLS is terminated in front of the node; `TRUSTED_PROXIES` names
//! the terminators whose `X-Forwarded-For` is believed for per-IP limits.
//!
//! # Running
//! - `gateway --help` lists every knob (flag, environment variable, TOML key); precedence is
//!   flag > env > TOML > default (see `config.rs`). `--listen 127.0.0.1:0` picks a free port;
//!   the bound address is the first line on stdout (`listening on ADDR`).
//! - Endpoints: `GET /ws?userId=U` (or `?token=T`; resume with `&resume=R&lastOffset=N`),
//!   `/healthz`, `/readyz` (503 while draining), `/metrics` (Prometheus text), and with
//!   `--echo` a plain WebSocket echo on `/echo` (16 MiB messages, for Autobahn).
//! - Logs: `tracing` to stderr, `--log-json` for JSON lines, level from `RUST_LOG`. Each
//!   connection has a `conn` span (id, user, shard, peer) at DEBUG: an enabled span stays in
//!   the subscriber's registry for the connection's life (~600 B measured per idle
//!   connection), so at the default INFO level connections do not pay for it.
//! - Cluster: `--control http://HOST:PORT` (`LOAD_BALANCER_URL`, alias `CONTROL_URL`) joins
//!   control's ring by heartbeat (`HEARTBEAT_INTERVAL_SEC`, `NODE_WEIGHT`); the node then serves
//!   only the users it owns and redirects the others (`cluster/`, `LIFECYCLE.md`).
//! - Measurements: `examples/idle_rss.rs` (user-space RSS per idle connection) and
//!   `examples/echo_cpu.rs` (server CPU per 100k echo round trips).
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
//! - `relay/` — cross-node delivery over Kafka: per-shard bounded rings to a relay thread,
//!   delivery topics per node, health events, control/analytics events.
//! - `session/` — the pure per-shard session core (users, offsets, resume logs, dedup,
//!   drop-oldest windows, acks); see `LIFECYCLE.md`.
//! - `metrics/` — metric names (declared once), per-shard counters, Prometheus rendering.
//! - `cluster/` — membership and placement with `--control`: heartbeats, following the
//!   ring's versions, redirects of users owned elsewhere, the paced rebalance drain.
//! - `store/` — the Redis store of a cluster (resume logs, offsets, dedup, acks, sessions),
//!   driven by bridge threads off the shards.
#![warn(missing_docs)]

pub mod cluster;
pub mod config;
pub mod conn;
pub mod drain;
pub mod http;
pub mod metrics;
pub mod node;
pub mod relay;
pub mod session;
pub mod shard;
pub mod store;
