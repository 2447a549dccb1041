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
//! # Usage
//! ```text
//! loadgen connect --url ws://127.0.0.1:8080/ws --users 15000 --ramp 3000 --duration 10 \
//!     --source-ips 127.0.0.1-127.0.0.8 --target-pid $(pidof gateway) --json idle.json --html idle.html
//! loadgen direct  --url ws://127.0.0.1:8080/ws --users 1000 --rate 5000 --duration 10 --verify
//! loadgen direct  --control http://127.0.0.1:7000 --users 1000000 --ramp 20000 --rate 50000
//! loadgen echo    --url ws://127.0.0.1:9001/echo --users 1000 --rate 20000 --payload 32
//! loadgen churn   --url ws://127.0.0.1:8080/ws --users 10000 --rate 2000 --duration 30
//! loadgen compare gateway.json baseline.json
//! ```
//! # Failures under load (`direct --control URL --verify`)
//! A user whose connection is lost (node killed, `drain` + 4007, 4003 redirect, reset) reconnects
//! like a real client: jittered exponential backoff (`rtc_protocol::client::Backoff`), placed
//! again by control on every attempt, resume token (the welcome's, or the `drain` frame's) and
//! last contiguous offset; redirects are followed. What the report counts:
//! - `msg.acked`: `sent` received — the server's commit point, a promise to deliver;
//! - `verify.lost`: **acked but never delivered** (the only loss; must be 0);
//! - `msg.nacked`: answered `error` (e.g. `unavailable` while Redis restarts): refused, not
//!   retried (a retry would overtake later messages);
//! - `msg.resent`: written again after a reconnect because no answer had come (same
//!   `clientMsgId`: the server deduplicates one that did commit);
//! - `msg.unacked`: still unanswered at the end (never promised: not delivering it is not a
//!   loss, but it is reported); `acked + nacked + unacked = sent`;
//! - `msg.duplicates_dropped` (replays the client dropped by offset) and `verify.duplicated`
//!   (delivered twice with different offsets): at-least-once, allowed, reported;
//! - `verify.out_of_order`: a sender's message delivered after a later one (must be 0);
//! - `verify.delivered_unacked`: delivered although its sender got no `sent` (refused or
//!   unanswered, yet committed — e.g. Redis applied the write but the reply was lost);
//! - `recovery.lost_connections`, `recovery.reconnects`, `recovery.resumes` (reconnects that
//!   presented a token), `recovery.max_outage_ms` (longest loss → `welcome`),
//!   `recovery.all_resumed_ms` (**first lost connection → every user connected again**, e.g.
//!   kill -9 → all resumed), `recovery.users_not_back`.
//!
//! The drain after the measured phase waits (up to `--drain` s) until every user is back,
//! every written message answered and every acked one delivered.
//!
//! `benches/run-loadgen [idle|direct|connect|echo]` runs a scenario against the gateway and
//! the baseline server and compares them. Idle connections keep alive by answering the
//! server's WebSocket pings (no client `ping` frames: they would cost a timer per connection).
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
