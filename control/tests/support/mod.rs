//! Harness shared by the integration tests (free ports, child guards and the servers come
//! from the `testkit` crate): child processes killed on drop,
//! a running `control`, fake heartbeating nodes, Redis, HTTP and CLI helpers.
#![allow(dead_code)] // each test file uses a different part of the harness

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// Generous: the machine is shared and loaded.
pub const STARTUP: Duration = Duration::from_secs(30);

pub use testkit::{free_port, ChildGuard};

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
/// shared one from `RTC_TEST_REDIS_URL` for [`Redis::any`] when it is set.
#[derive(Debug)]
pub struct Redis {
    /// `redis://127.0.0.1:PORT/`.
    pub url: String,
    /// The server, when we started it (take and drop it to kill it).
    pub server: Option<testkit::RedisServer>,
}

impl Redis {
    /// Shared Redis when provided, else a dedicated one.
    pub fn any() -> Redis {
        match testkit::shared_redis_url() {
            Some(url) => Redis { url, server: None },
            None => Self::dedicated(),
        }
    }

    /// A redis-server of our own (restart and takeover tests control its life).
    pub fn dedicated() -> Redis {
        Self::dedicated_on(free_port())
    }

    /// A redis-server of our own on `port` (an outage test restarts it on the same port).
    pub fn dedicated_on(port: u16) -> Redis {
        let server = testkit::RedisServer::start_on(port, false);
        Redis {
            url: server.url(),
            server: Some(server),
        }
    }
}

/// A Kafka-protocol broker for a test: `RTC_TEST_KAFKA` when set (shared; tests use unique
/// topic prefixes), else a tansu of our own, killed on drop.
#[derive(Debug)]
pub struct Broker {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The broker, when we started it.
    pub own: Option<testkit::Broker>,
}

impl Broker {
    /// The shared broker when provided, else one of our own.
    pub fn any() -> Broker {
        match testkit::shared_kafka() {
            Some(addr) => Broker { addr, own: None },
            None => {
                let b = testkit::Broker::start();
                Broker {
                    addr: b.addr(),
                    own: Some(b),
                }
            }
        }
    }
}
