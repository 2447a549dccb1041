//! `control`: owns the weighted consistent-hash ring, node membership (heartbeats), client
//! placement (`/v1/connect`), the autoscaling decision, and the operator's CLI and live
//! dashboard. One binary: `control serve` runs the service, every other subcommand is a client
//! of a running one (except `ring simulate`, which computes locally).
//!
//! # Quick start
//!
//! ```text
//! control serve                                   # 127.0.0.1:8081, in-memory, dashboard at /
//! control ring add gw-1 --weight 2 --ws-url ws://127.0.0.1:9001/ws
//! control nodes                                   # or let gateways join by heartbeat
//! control resolve alice
//! RING_SECRET=… control serve                     # /v1/connect then signs connect tokens
//! REDIS_URL=redis://127.0.0.1:6379/ control serve # persisted ring, one leader among replicas
//! KAFKA_BROKERS=127.0.0.1:9092 control serve      # + events to rtc.events.control
//! ```
//!
//! Every setting is a flag and an environment variable (`control serve --help`); see
//! [`config::Config`]. Membership, versions and leadership are described in `LIFECYCLE.md`.
//!
//! # Layout
//!
//! - `config.rs` — the one [`config::Config`] of `control serve` (flags, env, defaults,
//!   `validate()`), and every bound as a named constant.
//! - `scaling.rs` — the autoscaling formula and its safety bounds; pure, time passed in.
//! - `state/` — the ring, membership rules (`membership.rs`, pure), persistence and the
//!   leader lease (`store.rs`), and the async shell that serializes changes (`mod.rs`).
//! - `http/` — the axum API: nodes and heartbeats, ring and long-poll, placement, ops,
//!   auth, write forwarding from followers, JSON errors.
//! - `dashboard/` — the self-contained live page served at `/`.
//! - `events.rs` — ring versions, drains and scaling decisions to Kafka
//!   (`<prefix>.events.control`, schema `rtc_protocol::control::ControlEvent`), off the API's
//!   path: bounded queue, one producer thread, drops counted.
//! - `metrics.rs` — every metric name, declared once, and the Prometheus text output.
//! - `cli/` — the operator commands (HTTP client, human tables, `--json`) and `serve` startup.
//! - `LIFECYCLE.md` (beside `Cargo.toml`) — a node's life in the ring, a version's life,
//!   leadership and takeover.
//!
//! # The HTTP API
//!
//! | endpoint | what |
//! |---|---|
//! | `POST /v1/nodes/heartbeat` | node report → `{accepted, ringVersion, maybeScale}`; an unknown node joins |
//! | `GET /v1/ring[?since=V&wait=S]` | the ring snapshot; long-poll until the version passes V |
//! | `GET /v1/ring/history` | recent versions and the change that made each |
//! | `GET /v1/resolve?userId=X` | `{nodeId, publicWsUrl, version}` |
//! | `GET /v1/connect?userId=X` | `{wsUrl, token, ringVersion}` (app key when `CONNECT_API_KEYS`) |
//! | `GET /v1/nodes`, `POST /v1/nodes` | list / add (admin token when `ADMIN_TOKEN`) |
//! | `POST /v1/nodes/{id}/drain`, `…/activate`, `PUT …/weight`, `DELETE /v1/nodes/{id}` | one ring diff each |
//! | `GET /v1/scale` | the scaling decision with its inputs |
//! | `GET /healthz`, `GET /metrics`, `GET /` | health, Prometheus, dashboard |

#![warn(missing_docs)]

pub mod cli;
pub mod config;
pub mod dashboard;
pub mod events;
pub mod http;
pub mod metrics;
pub mod scaling;
pub mod state;
