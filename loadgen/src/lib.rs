//! loadgen: drives many-user WebSocket benchmarks against the gateway (or any WebSocket
//! server) and writes a report a person can read.
//!
//! `loadgen <connect|direct|echo|churn> [options]` runs a scenario; the parent process
//! splits the users across worker processes (one single-threaded tokio runtime each, so a
//! million users fit under a 20,000 open-files limit), streams their per-second stats back
//! as JSON lines, merges their HdrHistograms exactly, and prints/writes the report.
//! `loadgen compare A.json B.json` puts reports side by side.
//!
//! Measurement rules: sends are open loop (scheduled; latency counted from the scheduled
//! time, so stalls are not hidden by coordinated omission); percentiles come only from merged
//! histograms, never from averaging; every error is counted by kind.
//!
//! # Layout
//! - [`config`] — the command line, its validation, the spec handed to a worker.
//! - [`parent`] — worker count and split, spawning, progress line, target sampling, merge.
//! - [`worker`] — a worker process: its runtime, shared state, per-second ticks, sessions.
//! - [`scenario`] — one file per scenario (`connect`, `direct`, `echo`, `churn`) plus the
//!   shared ramp/measure/drain timeline and the open-loop schedule.
//! - [`client`] — one connection: URL, control placement, socket + RFC 6455 framing (through
//!   `rtc_protocol::ws`) with no idle read buffer, the gateway's JSON frames.
//! - [`stats`] — counters, error table, histograms and their V2 wire form.
//! - [`verify`] — `--verify`: lost / duplicated / out-of-order per sender stream.
//! - [`report`] — the report: table, JSON, HTML with SVG plots, compare.
//! - [`process`] — `/proc` sampling, open-files limit, machine facts.
#![warn(missing_docs)]

pub mod client;
pub mod config;
pub mod parent;
pub mod process;
pub mod report;
pub mod scenario;
pub mod stats;
pub mod verify;
pub mod worker;
