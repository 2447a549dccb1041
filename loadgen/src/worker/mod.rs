//! A worker process: one single-threaded tokio runtime driving its share of the users.
//!
//! The parent re-executes the loadgen binary as `loadgen __worker` and writes a
//! [`WorkerSpec`] as JSON to its stdin. The worker drives users `first_user ..
//! first_user + users`, writes a [`Tick`] JSON line per second to stdout and a final
//! [`WorkerFinal`] line, then exits. Everything lives on one thread (`Rc`, `Cell`), so there is
//! no locking on the per-message path and one scratch read buffer serves every connection.

mod session;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs as _};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use tokio::sync::watch;

use crate::client::pairing::{self, Pairing};
use crate::client::url::Url;
use crate::config::{ScenarioKind, WorkerSpec};
use crate::process;
use crate::stats::histogram::{self, encode};
use crate::stats::{Counters, ErrorCounts, Recovery, Tick, WorkerFinal, WorkerLine};
use crate::verify::{StreamVerifier, VerifySummary};

pub use session::{connect_plain, connect_user, reconnect, Welcome, MAX_RECONNECT_ATTEMPTS};

/// Largest worker spec read from stdin.
const MAX_SPEC_BYTES: usize = 1024 * 1024;
/// Most distinct server addresses a worker resolves and remembers (placements through control
/// may name many nodes).
const MAX_RESOLVED_ADDRS: usize = 4096;

/// Mutable figures of the worker (one thread: `RefCell`, never borrowed across an await).
#[derive(Debug)]
pub struct Figures {
    /// Totals.
    pub counters: Counters,
    /// Errors by kind.
    pub errors: ErrorCounts,
    /// End-to-end latency, whole run.
    pub latency: Histogram<u64>,
    /// End-to-end latency of the current second.
    pub latency_tick: Histogram<u64>,
    /// Send → `sent` ack latency.
    pub ack_latency: Histogram<u64>,
    /// Connect → ready latency.
    pub handshake: Histogram<u64>,
}

/// The measured phase, known once the ramp has settled.
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    /// Start of the measured phase.
    pub start: Instant,
    /// End of the measured phase.
    pub end: Instant,
}

/// Shared state of one worker process.
#[derive(Debug)]
pub struct Worker {
    /// What to do.
    pub spec: WorkerSpec,
    /// Time zero of this worker (payload timestamps are µs since it).
    pub epoch: Instant,
    /// The server URL (`--url`), or control's (`--control`).
    pub url: Url,
    /// Whether users are placed through control.
    pub via_control: bool,
    /// `--source-ips`.
    pub source_ips: Vec<IpAddr>,
    /// Counters and histograms.
    pub figures: RefCell<Figures>,
    /// Connections open now.
    pub connected: Cell<u64>,
    /// Most connections open at once.
    pub peak_connected: Cell<u64>,
    /// Users whose first connect finished (either way).
    pub settled: Cell<u64>,
    /// When the last connect of the ramp completed (connect rate = ramp connects / this).
    pub last_ramp_connect: Cell<Option<Instant>>,
    /// Users whose connection was lost (not closed by us) and who are reconnecting now.
    pub away: Cell<u64>,
    /// Messages written and not yet answered (`sent` or `error`), over all users: the drain
    /// waits for this to reach 0.
    pub unanswered: Cell<u64>,
    /// Acked messages not delivered yet, over this worker's streams (`--verify` only: exact
    /// per sequence number): the drain waits for this to reach 0.
    pub awaiting: Cell<u64>,
    /// Recovery from lost connections (see [`Recovery`]).
    pub recovery: Cell<Recovery>,
    /// Verification streams, indexed by the receiving user's local index.
    pub verifiers: RefCell<Vec<StreamVerifier>>,
    /// Resolved server addresses.
    addrs: RefCell<HashMap<String, SocketAddr>>,
    /// This worker's user ids when `--pairing` chose them (index - `first_user`).
    ids: Option<Vec<String>>,
    /// The measured phase, published when the ramp has settled.
    pub phase: watch::Sender<Option<Phase>>,
    /// Set when the run is over (after the drain): every user closes.
    pub stop: watch::Sender<bool>,
}

impl Worker {
    /// Builds the worker state from its spec.
    pub fn new(spec: WorkerSpec) -> anyhow::Result<Worker> {
        let (url, via_control) = match (&spec.args.url, &spec.args.control) {
            (Some(u), _) => (Url::parse(u, "ws")?, false),
            (None, Some(c)) => (Url::parse(c, "http")?, true),
            (None, None) => anyhow::bail!("no --url and no --control"),
        };
        let source_ips = spec.args.source_ip_list()?;
        let ids = if spec.args.pairing == Pairing::Any {
            None
        } else {
            let addr = url
                .authority()
                .to_socket_addrs()
                .ok()
                .and_then(|mut it| it.next())
                .with_context(|| format!("cannot resolve control at {}", url.authority()))?;
            let ring = pairing::fetch_ring(&url, addr)?;
            let ids = pairing::pair_ids(
                &ring,
                &spec.args.user_prefix,
                spec.first_user,
                spec.users,
                spec.args.pairing,
            )?;
            Some(ids)
        };
        let verifiers = if spec.args.verify {
            vec![StreamVerifier::default(); spec.users as usize]
        } else {
            Vec::new()
        };
        Ok(Worker {
            epoch: Instant::now(),
            url,
            via_control,
            source_ips,
            figures: RefCell::new(Figures {
                counters: Counters::default(),
                errors: ErrorCounts::default(),
                latency: histogram::new_latency(),
                latency_tick: histogram::new_latency(),
                ack_latency: histogram::new_latency(),
                handshake: histogram::new_latency(),
            }),
            connected: Cell::new(0),
            peak_connected: Cell::new(0),
            settled: Cell::new(0),
            last_ramp_connect: Cell::new(None),
            away: Cell::new(0),
            unanswered: Cell::new(0),
            awaiting: Cell::new(0),
            recovery: Cell::new(Recovery::default()),
            verifiers: RefCell::new(verifiers),
            addrs: RefCell::new(HashMap::new()),
            ids,
            phase: watch::channel(None).0,
            stop: watch::channel(false).0,
            spec,
        })
    }

    /// The user id of global user index `i`.
    pub fn user_id(&self, i: u64) -> String {
        let chosen = self.ids.as_ref().and_then(|ids| {
            let local = i.checked_sub(self.spec.first_user)?;
            ids.get(usize::try_from(local).ok()?)
        });
        match chosen {
            Some(id) => id.clone(),
            None => format!("{}-{i}", self.spec.args.user_prefix),
        }
    }

    /// µs since the worker's epoch.
    pub fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// µs since the epoch of an instant.
    pub fn us_of(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_micros() as u64
    }

    /// Source address for the `n`-th connection (round robin over `--source-ips`).
    pub fn source_for(&self, n: u64) -> Option<IpAddr> {
        if self.source_ips.is_empty() {
            None
        } else {
            Some(self.source_ips[(n % self.source_ips.len() as u64) as usize])
        }
    }

    /// Resolves `host:port` once and remembers it.
    pub fn resolve(&self, u: &Url) -> Result<SocketAddr, crate::client::conn::ConnError> {
        let key = u.authority();
        if let Some(a) = self.addrs.borrow().get(&key) {
            return Ok(*a);
        }
        let addr = key
            .to_socket_addrs()
            .ok()
            .and_then(|mut it| it.next())
            .ok_or(crate::client::conn::ConnError::Setup("cannot resolve host"))?;
        let mut m = self.addrs.borrow_mut();
        if m.len() < MAX_RESOLVED_ADDRS {
            m.insert(key, addr);
        }
        Ok(addr)
    }

    /// Counts one error of `kind`.
    pub fn error(&self, kind: &str) {
        self.figures.borrow_mut().errors.count(kind);
    }

    /// Applies `f` to the counters.
    pub fn count(&self, f: impl FnOnce(&mut Counters)) {
        f(&mut self.figures.borrow_mut().counters);
    }

    /// Records an end-to-end latency (µs).
    pub fn record_latency(&self, us: u64) {
        let mut f = self.figures.borrow_mut();
        histogram::record(&mut f.latency, us);
        histogram::record(&mut f.latency_tick, us);
    }

    /// A connection opened.
    pub fn conn_up(&self) {
        let c = self.connected.get() + 1;
        self.connected.set(c);
        if c > self.peak_connected.get() {
            self.peak_connected.set(c);
        }
    }

    /// A connection ended.
    pub fn conn_down(&self) {
        self.connected.set(self.connected.get().saturating_sub(1));
        self.count(|c| c.disconnects += 1);
    }

    /// Verification: the acked message `seq` of the stream received by local user `receiver`.
    pub fn verify_acked(&self, receiver: usize, seq: u64) {
        if let Some(v) = self.verifiers.borrow_mut().get_mut(receiver) {
            if v.on_acked(seq) {
                self.awaiting.set(self.awaiting.get() + 1);
            }
        }
    }

    /// Verification: local user `receiver` got message `seq` of its stream.
    pub fn verify_delivered(&self, receiver: usize, seq: u64) {
        if let Some(v) = self.verifiers.borrow_mut().get_mut(receiver) {
            if v.on_delivered(seq) {
                self.awaiting.set(self.awaiting.get().saturating_sub(1));
            }
        }
    }

    /// A user's connection was lost without our asking (server close, reset, node gone): it
    /// is now reconnecting. Returns the moment, to hand to [`Worker::user_back`] or
    /// [`Worker::user_gave_up`].
    pub fn user_lost(&self) -> Instant {
        let now = Instant::now();
        let mut r = self.recovery.get();
        r.lost_connections += 1;
        if r.first_loss_unix_ms == 0 {
            r.first_loss_unix_ms = process::unix_ms();
        }
        self.recovery.set(r);
        self.away.set(self.away.get() + 1);
        now
    }

    /// A user lost at `lost_at` is connected again (its `welcome` arrived).
    pub fn user_back(&self, lost_at: Instant) {
        let mut r = self.recovery.get();
        r.max_outage_ms = r.max_outage_ms.max(lost_at.elapsed().as_millis() as u64);
        let away = self.away.get().saturating_sub(1);
        self.away.set(away);
        if away == 0 {
            r.all_back_unix_ms = process::unix_ms();
        }
        self.recovery.set(r);
    }

    /// A user lost at `lost_at` stopped trying (the run ended, or every attempt failed).
    pub fn user_gave_up(&self, _lost_at: Instant) {
        let mut r = self.recovery.get();
        r.users_not_back += 1;
        self.recovery.set(r);
        self.away.set(self.away.get().saturating_sub(1));
    }

    /// Waits for the measured phase to be published.
    pub async fn phase(&self) -> Phase {
        let mut rx = self.phase.subscribe();
        loop {
            if let Some(p) = *rx.borrow_and_update() {
                return p;
            }
            if rx.changed().await.is_err() {
                // The sender lives in `self`: it cannot be dropped while we hold `&self`.
                return Phase {
                    start: Instant::now(),
                    end: Instant::now(),
                };
            }
        }
    }

    /// Waits until the run is over.
    pub async fn stopped(&self) {
        let mut rx = self.stop.subscribe();
        // `wait_for` fails only if the sender is dropped, which `&self` rules out.
        let _ = rx.wait_for(|s| *s).await;
    }

    /// This worker's connect rate (its share of `--ramp`).
    pub fn ramp_rate(&self) -> f64 {
        self.spec.share(self.spec.args.ramp).max(1e-3)
    }

    /// When user `local` (0-based within this worker) starts connecting.
    pub fn connect_at(&self, local: u64) -> Instant {
        self.epoch + Duration::from_secs_f64(local as f64 / self.ramp_rate())
    }
}

/// Entry point of `loadgen __worker`: reads the spec from stdin, runs, streams JSON lines.
pub fn main() -> anyhow::Result<()> {
    let mut input = Vec::new();
    std::io::stdin()
        .take(MAX_SPEC_BYTES as u64)
        .read_to_end(&mut input)
        .context("reading the worker spec")?;
    let spec: WorkerSpec = serde_json::from_slice(&input).context("parsing the worker spec")?;
    process::raise_nofile_limit();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, run(spec))
}

async fn run(spec: WorkerSpec) -> anyhow::Result<()> {
    let w = Rc::new(Worker::new(spec)?);
    // Touch the scratch buffer now so it is part of the "before" memory figure.
    crate::client::conn::init_scratch();
    let rss_before = process::self_rss_bytes();
    let rss_at = Rc::new(Cell::new((0u64, 0u64)));
    let ticker = tokio::task::spawn_local(ticks(w.clone()));
    {
        // Read our RSS once the measured phase starts: every connection of the ramp is open.
        let (w, rss_at) = (w.clone(), rss_at.clone());
        tokio::task::spawn_local(async move {
            w.phase().await;
            rss_at.set((process::self_rss_bytes(), w.connected.get()));
        });
    }
    crate::scenario::run(w.clone()).await;
    let phase = *w.phase.borrow();
    ticker.abort();
    emit_tick(&w, (w.epoch.elapsed().as_secs_f64().ceil() as u64).max(1));
    let f = w.figures.borrow();
    let verify = w.spec.args.verify.then(|| verify_summary(&w));
    let (rss_connected, conns_at_rss) = rss_at.get();
    let fin = WorkerFinal {
        worker: w.spec.worker,
        users: w.spec.users,
        counters: f.counters,
        errors: f.errors.clone(),
        latency: encode(&f.latency),
        ack_latency: encode(&f.ack_latency),
        handshake: encode(&f.handshake),
        peak_connected: w.peak_connected.get(),
        rss_before,
        rss_connected,
        conns_at_rss,
        ramp_secs: w
            .last_ramp_connect
            .get()
            .map_or(0.0, |t| (t - w.epoch).as_secs_f64()),
        measure_secs: phase.map_or(0.0, |p| (p.end - p.start).as_secs_f64()),
        measure_start_secs: phase.map_or(0.0, |p| (p.start - w.epoch).as_secs_f64()),
        measure_end_secs: phase.map_or(0.0, |p| (p.end - w.epoch).as_secs_f64()),
        recovery: w.recovery.get(),
        verify,
    };
    write_line(&WorkerLine::Done(Box::new(fin)));
    Ok(())
}

/// Verification streams: user `i` receives from its pair `i ^ 1` (direct) or from itself
/// (echo).
fn verify_summary(w: &Worker) -> VerifySummary {
    let mut s = VerifySummary::default();
    let sc = w.spec.scenario;
    for (i, v) in w.verifiers.borrow().iter().enumerate() {
        let user = w.spec.first_user + i as u64;
        let has_stream = match sc {
            ScenarioKind::Direct => (user ^ 1) < w.spec.total_users,
            _ => true,
        };
        if has_stream {
            s.add_stream_lost(&w.user_id(user), v.verdict(), v.first_lost());
        }
    }
    s
}

async fn ticks(w: Rc<Worker>) {
    let mut last = Counters::default();
    let mut last_err = ErrorCounts::default();
    let mut sec = 0u64;
    loop {
        sec += 1;
        tokio::time::sleep_until((w.epoch + Duration::from_secs(sec)).into()).await;
        let (c, e) = {
            let f = w.figures.borrow();
            (f.counters, f.errors.clone())
        };
        emit(&w, sec, &mut last, &mut last_err, c, e);
    }
}

fn emit_tick(w: &Worker, sec: u64) {
    // The final partial second: the ticker's deltas are folded into the final totals anyway,
    // this line only carries the latencies recorded since the last whole second.
    let mut f = w.figures.borrow_mut();
    if f.latency_tick.is_empty() {
        return;
    }
    let tick = Tick {
        worker: w.spec.worker,
        sec,
        connected: w.connected.get(),
        delta: Counters::default(),
        errors: ErrorCounts::default(),
        latency: encode(&f.latency_tick),
        rss: process::self_rss_bytes(),
    };
    f.latency_tick.reset();
    drop(f);
    write_line(&WorkerLine::Tick(Box::new(tick)));
}

fn emit(
    w: &Worker,
    sec: u64,
    last: &mut Counters,
    last_err: &mut ErrorCounts,
    c: Counters,
    e: ErrorCounts,
) {
    let latency = {
        let mut f = w.figures.borrow_mut();
        let s = encode(&f.latency_tick);
        f.latency_tick.reset();
        s
    };
    let tick = Tick {
        worker: w.spec.worker,
        sec,
        connected: w.connected.get(),
        delta: c.since(last),
        errors: e.since(last_err),
        latency,
        rss: process::self_rss_bytes(),
    };
    *last = c;
    *last_err = e;
    write_line(&WorkerLine::Tick(Box::new(tick)));
}

fn write_line(line: &WorkerLine) {
    let Ok(mut text) = serde_json::to_string(line) else {
        return;
    };
    text.push('\n');
    let mut out = std::io::stdout().lock();
    // The parent reads our stdout until EOF; if it is gone there is nobody to report to.
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}
