//! The parent process: splits the users over worker processes, re-executes itself as each
//! worker, reads their JSON lines, prints a progress line per second, samples the target
//! processes, and merges everything (histograms exactly) into a [`RunReport`].

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use hdrhistogram::Histogram;

use crate::config::{RunArgs, ScenarioKind, WorkerSpec};
use crate::process::{self, MachineInfo};
use crate::report::{ConnectFigures, MessageFigures, RunReport, Second, TargetFigures};
use crate::stats::histogram::{self, Percentiles};
use crate::stats::{Counters, ErrorCounts, Recovery, Tick, WorkerFinal, WorkerLine};
use crate::verify::VerifySummary;

/// File descriptors a worker keeps for itself (stdio, runtime, resolver) besides sockets.
pub const RESERVED_FDS: u64 = 64;
/// Most workers a run may start.
pub const MAX_WORKERS: usize = 1024;
/// Longest JSON line accepted from a worker.
const MAX_LINE: usize = 16 * 1024 * 1024;

/// Connections one worker may hold under an open-files limit of `nofile`: three quarters of
/// what is left after [`RESERVED_FDS`] ("well under the limit": room for control placements
/// and reconnects that briefly hold two sockets).
pub fn per_worker_capacity(nofile: u64) -> u64 {
    (nofile.saturating_sub(RESERVED_FDS) * 3 / 4).max(1)
}

/// How many workers: `--workers N`, or enough for the open-files limit.
pub fn worker_count(args: &RunArgs, nofile: u64) -> anyhow::Result<usize> {
    let n = match args.worker_count_request()? {
        Some(n) => n,
        None => args.users.div_ceil(per_worker_capacity(nofile)) as usize,
    };
    if n > MAX_WORKERS {
        bail!("{n} workers needed, at most {MAX_WORKERS}: raise the open-files limit");
    }
    Ok(n.clamp(1, args.users.max(1) as usize))
}

/// `(first_user, users)` of each worker; with `pairs`, every range holds whole pairs.
pub fn split_users(users: u64, workers: usize, pairs: bool) -> Vec<(u64, u64)> {
    let unit = if pairs { 2 } else { 1 };
    let units = users.div_ceil(unit);
    let w = (workers as u64).min(units).max(1);
    let mut out = Vec::new();
    let mut first = 0;
    for i in 0..w {
        let n_units = units / w + u64::from(i < units % w);
        let n = (n_units * unit).min(users - first);
        out.push((first, n));
        first += n;
    }
    out
}

enum Msg {
    Line(usize, WorkerLine),
    Bad(usize, String),
    Eof,
}

/// Per-second aggregation across workers.
struct SecondAgg {
    reported: usize,
    connected: u64,
    delta: Counters,
    errors: ErrorCounts,
    /// Merged latencies of the second until it is printed; then only its p99 is kept (a
    /// full-resolution histogram is a few hundred KiB: one per second of a long run would add
    /// up). Ticks arriving after that still count in the whole-run histogram.
    latency: Option<Histogram<u64>>,
    /// p99 of the second, µs (set when it is printed).
    p99_us: Option<u64>,
}

impl SecondAgg {
    fn finish(&mut self) {
        if let Some(h) = self.latency.take() {
            self.p99_us = Some(if h.is_empty() {
                0
            } else {
                h.value_at_quantile(0.99)
            });
        }
    }
}

/// Kills the workers if the parent leaves early.
struct Workers(Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

/// Runs a scenario to the end and returns its report.
pub fn run(kind: ScenarioKind, args: RunArgs) -> anyhow::Result<RunReport> {
    args.validate(kind)?;
    let nofile = process::raise_nofile_limit();
    let machine = MachineInfo::collect(nofile);
    let n = worker_count(&args, nofile)?;
    let ranges = split_users(args.users, n, kind == ScenarioKind::Direct);
    let n = ranges.len();
    let exe = std::env::current_exe().context("finding the loadgen executable")?;
    let started = Instant::now();
    let mut targets: Vec<TargetFigures> = args
        .target_pids
        .iter()
        .map(|&pid| TargetFigures {
            pid,
            ..TargetFigures::default()
        })
        .collect();
    sample_targets(&mut targets, 0.0);
    for t in &mut targets {
        t.rss_start = t.samples.first().map_or(0, |s| s.1);
    }

    let (tx, rx) = mpsc::channel::<Msg>();
    let mut children = Workers(Vec::new());
    for (i, (first, users)) in ranges.iter().enumerate() {
        let spec = WorkerSpec {
            scenario: kind,
            args: args.clone(),
            worker: i,
            workers: n,
            first_user: *first,
            users: *users,
            total_users: args.users,
        };
        let mut child = Command::new(&exe)
            .arg("__worker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting a worker process")?;
        let mut stdin = child.stdin.take().context("worker stdin")?;
        stdin
            .write_all(&serde_json::to_vec(&spec)?)
            .context("sending the worker its spec")?;
        drop(stdin);
        let stdout = child.stdout.take().context("worker stdout")?;
        let tx = tx.clone();
        std::thread::spawn(move || read_worker(i, stdout, tx));
        children.0.push(child);
    }
    drop(tx);

    let mut seconds: BTreeMap<u64, SecondAgg> = BTreeMap::new();
    let mut finals: Vec<Option<WorkerFinal>> = vec![None; n];
    let mut open = n;
    let mut printed = 0u64;
    let mut next_sample = Duration::from_secs(1);
    while open > 0 {
        let wait = next_sample.saturating_sub(started.elapsed());
        match rx.recv_timeout(wait) {
            Ok(Msg::Line(_, WorkerLine::Tick(t))) => add_tick(&mut seconds, &t)?,
            Ok(Msg::Line(i, WorkerLine::Done(f))) => finals[i] = Some(*f),
            Ok(Msg::Bad(i, e)) => bail!("worker {i} wrote an unreadable line: {e}"),
            Ok(Msg::Eof) => open -= 1,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if started.elapsed() >= next_sample {
            sample_targets(&mut targets, started.elapsed().as_secs_f64());
            next_sample += Duration::from_secs(1);
        }
        // Print every second all live workers have reported (or that a later one exists for).
        let live = finals.iter().filter(|f| f.is_none()).count().max(1);
        while let Some((&sec, agg)) = seconds.range(printed + 1..).next() {
            let complete = agg.reported >= live || seconds.range(sec + 2..).next().is_some();
            if !complete {
                break;
            }
            let Some(agg) = seconds.get_mut(&sec) else {
                break;
            };
            agg.finish();
            if !args.quiet {
                progress_line(sec, agg);
            }
            printed = sec;
        }
    }
    for (i, c) in children.0.iter_mut().enumerate() {
        let status = c.wait().context("waiting for a worker")?;
        if finals[i].is_none() {
            bail!("worker {i} ended ({status}) without its final report");
        }
    }
    sample_targets(&mut targets, started.elapsed().as_secs_f64());
    let finals: Vec<WorkerFinal> = finals.into_iter().flatten().collect();
    build_report(
        kind,
        args,
        machine,
        n,
        started.elapsed().as_secs_f64(),
        &finals,
        &seconds,
        targets,
    )
}

fn read_worker(i: usize, stdout: std::process::ChildStdout, tx: mpsc::Sender<Msg>) {
    let mut r = BufReader::new(stdout);
    let mut line = String::new();
    loop {
        line.clear();
        match r.by_ref().take(MAX_LINE as u64).read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let msg = match serde_json::from_str::<WorkerLine>(&line) {
                    Ok(l) => Msg::Line(i, l),
                    Err(e) => Msg::Bad(i, e.to_string()),
                };
                if tx.send(msg).is_err() {
                    return;
                }
            }
        }
    }
    let _ = tx.send(Msg::Eof);
}

fn add_tick(seconds: &mut BTreeMap<u64, SecondAgg>, t: &Tick) -> anyhow::Result<()> {
    let agg = seconds.entry(t.sec).or_insert_with(|| SecondAgg {
        reported: 0,
        connected: 0,
        delta: Counters::default(),
        errors: ErrorCounts::default(),
        latency: Some(histogram::new_latency()),
        p99_us: None,
    });
    agg.reported += 1;
    agg.connected += t.connected;
    agg.delta.add(&t.delta);
    agg.errors.add(&t.errors);
    if let Some(h) = agg.latency.as_mut() {
        histogram::merge_into(h, &t.latency)?;
    }
    Ok(())
}

fn progress_line(sec: u64, a: &SecondAgg) {
    let p99 = match a.p99_us {
        Some(us) if a.delta.delivered > 0 => format!("{:.2} ms", us as f64 / 1000.0),
        _ => "-".to_owned(),
    };
    eprintln!(
        "[{sec:>4}s] conns {:>8} (+{:<6}) sent/s {:>8} delivered/s {:>8} p99 {:>10} errors {}",
        a.connected,
        a.delta.connects,
        a.delta.sent,
        a.delta.delivered,
        p99,
        a.errors.total()
    );
}

fn sample_targets(targets: &mut [TargetFigures], t: f64) {
    for tg in targets {
        if let (Some(rss), Some(cpu)) = (process::rss_bytes(tg.pid), process::cpu_seconds(tg.pid)) {
            tg.samples.push((t, rss, cpu));
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn build_report(
    kind: ScenarioKind,
    args: RunArgs,
    machine: MachineInfo,
    workers: usize,
    wall_secs: f64,
    finals: &[WorkerFinal],
    seconds: &BTreeMap<u64, SecondAgg>,
    mut targets: Vec<TargetFigures>,
) -> anyhow::Result<RunReport> {
    let mut counters = Counters::default();
    let mut errors = ErrorCounts::default();
    let mut latency = histogram::new_latency();
    let mut ack_latency = histogram::new_latency();
    let mut handshake = histogram::new_latency();
    let mut verify: Option<VerifySummary> = None;
    let mut recovery = Recovery::default();
    let (mut peak, mut rss_delta, mut conns_at_rss) = (0u64, 0f64, 0u64);
    let (mut ramp_secs, mut measure_secs, mut m_start) = (0f64, 0f64, f64::MAX);
    for f in finals {
        counters.add(&f.counters);
        errors.add(&f.errors);
        histogram::merge_into(&mut latency, &f.latency)?;
        histogram::merge_into(&mut ack_latency, &f.ack_latency)?;
        histogram::merge_into(&mut handshake, &f.handshake)?;
        if let Some(v) = &f.verify {
            verify.get_or_insert_with(VerifySummary::default).merge(v);
        }
        recovery.merge(&f.recovery);
        peak += f.peak_connected;
        rss_delta += f.rss_connected.saturating_sub(f.rss_before) as f64;
        conns_at_rss += f.conns_at_rss;
        ramp_secs = ramp_secs.max(f.ramp_secs);
        measure_secs = measure_secs.max(f.measure_secs);
        m_start = m_start.min(f.measure_start_secs);
    }
    let delivered = counters.delivered;
    for t in &mut targets {
        t.rss_peak = t.samples.iter().map(|s| s.1).max().unwrap_or(0);
        // The first sample after the ramp settled: every connection is open then.
        if let Some(s) = t.samples.iter().find(|s| s.0 >= m_start) {
            t.rss_connected = s.1;
            let conns = seconds
                .range(s.0.floor() as u64..)
                .next()
                .map_or(peak, |(_, a)| a.connected);
            if conns > 0 {
                t.bytes_per_conn =
                    t.rss_connected.saturating_sub(t.rss_start) as f64 / conns as f64;
            }
        }
        // CPU at the last sample before the measured phase began.
        let cpu_at = |time: f64| {
            t.samples
                .iter()
                .rev()
                .find(|s| s.0 <= time)
                .or(t.samples.first())
                .map_or(0.0, |s| s.2)
        };
        let first_cpu = t.samples.first().map_or(0.0, |s| s.2);
        t.cpu_secs = t.samples.last().map_or(0.0, |s| s.2) - first_cpu;
        t.cpu_secs_measured = (t.samples.last().map_or(0.0, |s| s.2) - cpu_at(m_start)).max(0.0);
        if delivered > 0 {
            t.cpu_secs_per_100k = t.cpu_secs_measured / delivered as f64 * 100_000.0;
        }
    }
    let timeline = seconds
        .iter()
        .map(|(&t, a)| Second {
            t,
            connected: a.connected,
            connects: a.delta.connects,
            sent: a.delta.sent,
            delivered: a.delta.delivered,
            errors: a.errors.total(),
            p99_us: a.p99_us.unwrap_or_else(|| {
                a.latency.as_ref().map_or(0, |h| {
                    if h.is_empty() {
                        0
                    } else {
                        h.value_at_quantile(0.99)
                    }
                })
            }),
        })
        .collect();
    let m = measure_secs.max(1e-9);
    let mut report = RunReport {
        label: args
            .label
            .clone()
            .or_else(|| args.url.clone())
            .or_else(|| args.control.clone())
            .unwrap_or_default(),
        scenario: kind.name().to_owned(),
        machine,
        workers,
        wall_secs,
        connect: ConnectFigures {
            peak_connected: peak,
            connect_rate: if ramp_secs > 0.0 {
                counters.connects.min(args.users) as f64 / ramp_secs
            } else {
                0.0
            },
            handshake_us: Percentiles::of(&handshake),
            distribution: histogram::distribution(&handshake),
        },
        messages: MessageFigures {
            measure_secs,
            sent_per_sec: counters.sent as f64 / m,
            delivered_per_sec: counters.delivered as f64 / m,
            latency_us: Percentiles::of(&latency),
            ack_latency_us: Percentiles::of(&ack_latency),
            distribution: histogram::distribution(&latency),
        },
        client_bytes_per_conn: if conns_at_rss > 0 {
            rss_delta / conns_at_rss as f64
        } else {
            0.0
        },
        verify,
        recovery,
        targets,
        timeline,
        counters,
        errors,
        params: args,
        figures: BTreeMap::new(),
    };
    report.compute_figures();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_split_in_whole_pairs() {
        let r = split_users(11, 3, true);
        assert_eq!(r.iter().map(|x| x.1).sum::<u64>(), 11);
        assert!(r.iter().all(|(first, _)| first % 2 == 0));
        assert_eq!(r, vec![(0, 4), (4, 4), (8, 3)]);
        let r = split_users(10, 4, false);
        assert_eq!(r.iter().map(|x| x.1).collect::<Vec<_>>(), vec![3, 3, 2, 2]);
        assert_eq!(split_users(3, 8, false).len(), 3);
    }

    #[test]
    fn auto_workers_follow_the_open_files_limit() {
        assert_eq!(per_worker_capacity(1024), 720);
        assert_eq!(per_worker_capacity(20_000), 14_952);
        let cli = <crate::config::Cli as clap::Parser>::try_parse_from([
            "loadgen",
            "connect",
            "--url",
            "ws://h:1/ws",
            "--users",
            "3000",
        ])
        .expect("parses");
        let crate::config::Command::Connect(a) = cli.command else {
            panic!("connect")
        };
        assert_eq!(worker_count(&a, 1024).expect("count"), 5);
        assert_eq!(worker_count(&a, 20_000).expect("count"), 1);
    }
}
