//! Command line: the scenarios, their common options, and what the parent hands a worker.
//!
//! Precedence: flags, then `LOADGEN_*` environment variables, then the defaults below (which
//! give a small run against a local server).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand};
use serde::{Deserialize, Serialize};

use crate::client::pairing::Pairing;

/// Most source addresses `--source-ips` may name.
pub const MAX_SOURCE_IPS: usize = 4096;
/// Most `--target-pid` processes sampled.
pub const MAX_TARGETS: usize = 64;

/// `loadgen <scenario> [options]` and `loadgen compare A.json B.json …`.
#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "WebSocket load generator for the gateway and its peers"
)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ramp users at `--ramp`/s and hold them idle for `--duration` (server pings answered).
    Connect(RunArgs),
    /// Users in pairs send each other direct messages at `--rate` msg/s in total (open loop).
    Direct(RunArgs),
    /// Plain WebSocket echo against any server (`--url ws://host:port/echo`).
    Echo(RunArgs),
    /// Users disconnect and reconnect with resume, `--rate` reconnects/s in total.
    Churn(RunArgs),
    /// Print every figure of several `--json` reports side by side, with ratios to the first.
    Compare {
        /// Reports written by `--json`.
        #[arg(required = true, num_args = 2..)]
        files: Vec<PathBuf>,
    },
    /// Internal: run as a worker process (reads its spec as JSON on stdin).
    #[command(name = "__worker", hide = true)]
    Worker,
}

/// Which scenario a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScenarioKind {
    /// See [`Command::Connect`].
    Connect,
    /// See [`Command::Direct`].
    Direct,
    /// See [`Command::Echo`].
    Echo,
    /// See [`Command::Churn`].
    Churn,
}

impl ScenarioKind {
    /// The subcommand name.
    pub fn name(self) -> &'static str {
        match self {
            ScenarioKind::Connect => "connect",
            ScenarioKind::Direct => "direct",
            ScenarioKind::Echo => "echo",
            ScenarioKind::Churn => "churn",
        }
    }
}

/// Options common to every scenario.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct RunArgs {
    /// WebSocket URL: `ws://host:port/ws` (users get `?userId=U`) or `ws://host:port/echo`.
    #[arg(long, env = "LOADGEN_URL")]
    pub url: Option<String>,
    /// Control plane base URL: each user is placed through `GET /v1/connect?userId=U`.
    #[arg(long, env = "LOADGEN_CONTROL", conflicts_with = "url")]
    pub control: Option<String>,
    /// Number of users (= connections).
    #[arg(long, default_value_t = 100)]
    pub users: u64,
    /// New connections per second, in total.
    #[arg(long, default_value_t = 1000.0)]
    pub ramp: f64,
    /// Messages per second in total (direct, echo); reconnects per second (churn).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds of the measured phase (after the ramp): hold, send, or churn.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Bytes of each message's payload: a JSON object `{"seq","t","p"}` padded to this size
    /// (never smaller than its sequence number and timestamp, ~20–35 bytes).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Source addresses for client sockets: `127.0.0.1-127.0.0.40` or a comma list.
    #[arg(long)]
    pub source_ips: Option<String>,
    /// Worker processes: a number, or `auto` (enough to stay well under the open-files limit).
    #[arg(long, default_value = "auto")]
    pub workers: String,
    /// Check per-sender sequence numbers: report lost, duplicated and out-of-order messages.
    #[arg(long)]
    pub verify: bool,
    /// Write every figure, the parameters and machine info as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a self-contained HTML report with SVG plots here.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// A server process to sample (RSS, CPU seconds) once a second; repeatable.
    #[arg(long = "target-pid")]
    pub target_pids: Vec<u32>,
    /// Prefix of generated user ids (`<prefix>-<n>`).
    #[arg(long, default_value = "lg")]
    pub user_prefix: String,
    /// `direct` with `--control`: put both users of each pair on the same node, or on two
    /// different nodes (ids chosen from control's ring), to measure cross-node delivery.
    #[arg(long, value_enum, default_value_t = Pairing::Any)]
    #[serde(default)]
    pub pairing: Pairing,
    /// Seconds a connect (TCP + upgrade + welcome) may take before it counts as a timeout.
    #[arg(long, default_value_t = 10.0)]
    pub connect_timeout: f64,
    /// Most seconds to wait after the measured phase for what is still in flight: users
    /// reconnecting, messages not yet answered, acked messages not yet delivered (the wait
    /// ends as soon as all of it is done).
    #[arg(long, default_value_t = 3.0)]
    pub drain: f64,
    /// Plain WebSocket (connect scenario against any server): dial `--url` as given and
    /// expect no `welcome`.
    #[arg(long)]
    pub plain: bool,
    /// No live progress line.
    #[arg(long)]
    pub quiet: bool,
    /// A label for this run in reports and `compare` (default: the server's URL).
    #[arg(long)]
    pub label: Option<String>,
}

impl RunArgs {
    /// Checks the options that clap cannot.
    pub fn validate(&self, kind: ScenarioKind) -> anyhow::Result<()> {
        if self.url.is_none() && self.control.is_none() {
            bail!("give --url ws://host:port/path or --control http://host:port");
        }
        if kind == ScenarioKind::Echo && self.url.is_none() {
            bail!("echo needs --url ws://host:port/echo");
        }
        if self.users == 0 {
            bail!("--users must be at least 1");
        }
        if kind == ScenarioKind::Direct && self.users < 2 {
            bail!("direct needs at least 2 users (they send in pairs)");
        }
        if self.pairing != Pairing::Any && (kind != ScenarioKind::Direct || self.control.is_none())
        {
            bail!("--pairing applies to direct with --control (it reads control's ring)");
        }
        for (name, v) in [("--ramp", self.ramp), ("--duration", self.duration)] {
            if !(v.is_finite() && v > 0.0) {
                bail!("{name} must be a positive number");
            }
        }
        if !(self.rate.is_finite() && self.rate >= 0.0) {
            bail!("--rate must be a non-negative number");
        }
        if self.target_pids.len() > MAX_TARGETS {
            bail!("at most {MAX_TARGETS} --target-pid");
        }
        self.source_ip_list()?;
        self.worker_count_request()?;
        Ok(())
    }

    /// `--workers` as `None` (auto) or a fixed count.
    pub fn worker_count_request(&self) -> anyhow::Result<Option<usize>> {
        if self.workers == "auto" {
            return Ok(None);
        }
        let n: usize = self
            .workers
            .parse()
            .context("--workers is a number or `auto`")?;
        if n == 0 {
            bail!("--workers must be at least 1");
        }
        Ok(Some(n))
    }

    /// `--source-ips` parsed (empty: let the kernel choose).
    pub fn source_ip_list(&self) -> anyhow::Result<Vec<IpAddr>> {
        match &self.source_ips {
            None => Ok(Vec::new()),
            Some(s) => parse_source_ips(s),
        }
    }
}

/// Parses `a.b.c.d-e.f.g.h` (inclusive IPv4 range) or a comma list of addresses.
pub fn parse_source_ips(s: &str) -> anyhow::Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let a: Ipv4Addr = a
                .trim()
                .parse()
                .with_context(|| format!("bad address {a:?}"))?;
            let b: Ipv4Addr = b
                .trim()
                .parse()
                .with_context(|| format!("bad address {b:?}"))?;
            let (a, b) = (u32::from(a), u32::from(b));
            if b < a {
                bail!("empty range {part}");
            }
            if (b - a) as usize >= MAX_SOURCE_IPS {
                bail!("at most {MAX_SOURCE_IPS} source addresses");
            }
            out.extend((a..=b).map(|v| IpAddr::V4(Ipv4Addr::from(v))));
        } else {
            out.push(
                part.parse()
                    .with_context(|| format!("bad address {part:?}"))?,
            );
        }
        if out.len() > MAX_SOURCE_IPS {
            bail!("at most {MAX_SOURCE_IPS} source addresses");
        }
    }
    if out.is_empty() {
        bail!("--source-ips names no address");
    }
    Ok(out)
}

/// What the parent hands one worker (JSON on the worker's stdin).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerSpec {
    /// The scenario.
    pub scenario: ScenarioKind,
    /// The run's options (the same for every worker).
    pub args: RunArgs,
    /// This worker's index.
    pub worker: usize,
    /// How many workers the run has (rates and the ramp are divided among them).
    pub workers: usize,
    /// First user index of this worker.
    pub first_user: u64,
    /// Number of users of this worker.
    pub users: u64,
    /// Total users of the run.
    pub total_users: u64,
}

impl WorkerSpec {
    /// This worker's share of a run-wide rate.
    pub fn share(&self, total_rate: f64) -> f64 {
        total_rate * self.users as f64 / self.total_users.max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_ip_ranges_and_lists() {
        let v = parse_source_ips("127.0.0.1-127.0.0.3").expect("range");
        assert_eq!(v.len(), 3);
        assert_eq!(v[2], "127.0.0.3".parse::<IpAddr>().expect("ip"));
        assert_eq!(
            parse_source_ips("127.0.0.1, 127.0.0.9")
                .expect("list")
                .len(),
            2
        );
        assert!(parse_source_ips("127.0.0.3-127.0.0.1").is_err());
        assert!(parse_source_ips("10.0.0.0-10.1.0.0").is_err());
        assert!(parse_source_ips("nope").is_err());
    }

    #[test]
    fn cli_parses_a_direct_run() {
        let cli = Cli::try_parse_from([
            "loadgen",
            "direct",
            "--url",
            "ws://127.0.0.1:1/ws",
            "--users",
            "10",
            "--verify",
            "--target-pid",
            "1",
            "--target-pid",
            "2",
            "--workers",
            "3",
        ])
        .expect("parses");
        let Command::Direct(a) = cli.command else {
            panic!("not direct")
        };
        assert!(a.verify);
        assert_eq!(a.target_pids, vec![1, 2]);
        assert_eq!(a.worker_count_request().expect("n"), Some(3));
        a.validate(ScenarioKind::Direct).expect("valid");
    }
}
