//! Harness for loadgen's integration tests (the one place for it): builds and starts the
//! servers under test on free loopback ports, runs the loadgen binary, reads its JSON report.
//! Every child process is killed when its guard is dropped, even when a test fails.
#![allow(dead_code)] // each test file uses a different part of the harness

pub mod cluster;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A child process killed on drop.
pub struct Proc {
    /// The process.
    pub child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Proc {
    /// Its pid (for `--target-pid`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The loadgen binary under test.
pub fn loadgen_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_loadgen"))
}

/// `target/<profile>/` of this build.
fn target_dir() -> PathBuf {
    loadgen_bin()
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// Builds a binary of another workspace package (same profile) and returns its path, or the
/// build's stderr if it does not build.
pub fn build_bin(package: &str, bin: &str) -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-q", "-p", package, "--bin", bin]);
    if target_dir().ends_with("release") {
        cmd.arg("--release");
    }
    let out = cmd.output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(target_dir().join(bin))
}

/// A free loopback port (bound then released).
pub fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("local addr")
}

/// Starts `bin args…` and waits (up to 60 s) until `addr` accepts connections.
pub fn start(bin: &PathBuf, args: &[String], addr: SocketAddr) -> Proc {
    let child = Command::new(bin)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
    let mut p = Proc { child, addr };
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(addr).is_err() {
        if let Ok(Some(status)) = p.child.try_wait() {
            panic!("{} exited early: {status}", bin.display());
        }
        assert!(
            Instant::now() < deadline,
            "{} never listened on {addr}",
            bin.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    p
}

/// Builds and starts the baseline server.
pub fn baseline() -> Proc {
    let bin = build_bin("benches", "baseline-server")
        .unwrap_or_else(|e| panic!("baseline-server does not build: {e}"));
    let addr = free_addr();
    start(
        &bin,
        &[
            "--listen".into(),
            addr.to_string(),
            "--threads".into(),
            "2".into(),
        ],
        addr,
    )
}

/// Builds and starts the gateway with one shard and `/echo`, or `None` (with the reason
/// printed) when the gateway has no working binary yet.
pub fn gateway() -> Option<Proc> {
    gateway_with(&[])
}

/// Like [`gateway`], with more flags.
pub fn gateway_with(extra: &[&str]) -> Option<Proc> {
    // LOADGEN_TEST_GATEWAY_BIN: test against another gateway build (e.g. a branch's).
    let built = match std::env::var_os("LOADGEN_TEST_GATEWAY_BIN") {
        Some(p) => Ok(PathBuf::from(p)),
        None => build_bin("gateway", "gateway"),
    };
    let bin = match built {
        Ok(b) => b,
        Err(e) => {
            eprintln!("SKIP gateway: it does not build: {e}");
            return None;
        }
    };
    // A placeholder binary exits at once; a real one keeps running and listens.
    let addr = free_addr();
    let child = Command::new(&bin)
        .args(["--listen", &addr.to_string(), "--shards", "1", "--echo"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            eprintln!("SKIP gateway: cannot start {}: {e}", bin.display());
            return None;
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if TcpStream::connect(addr).is_ok() {
            return Some(Proc { child, addr });
        }
        if let Ok(Some(status)) = child.try_wait() {
            eprintln!("SKIP gateway: the binary exited ({status}) without listening");
            return None;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("gateway never listened on {addr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs loadgen with `args` (plus `--quiet` and generous deadlines for a scenario), optionally under `prlimit --nofile=N`.
pub fn run_loadgen(args: &[String], nofile: Option<u32>) -> Output {
    let mut cmd = match nofile {
        Some(n) => {
            let mut c = Command::new("prlimit");
            c.arg(format!("--nofile={n}")).arg(loadgen_bin());
            c
        }
        None => Command::new(loadgen_bin()),
    };
    cmd.args(args);
    if args.first().is_some_and(|a| a != "compare") {
        // Generous bounds for a loaded 2-core machine: the drain ends as soon as everything
        // in flight has arrived, so these only matter when the machine stalls.
        cmd.args(["--quiet", "--drain", "30", "--connect-timeout", "30"]);
    }
    let out = cmd.output().expect("running loadgen");
    assert!(
        out.status.success(),
        "loadgen {args:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A temporary file path unique to this test process.
pub fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("loadgen-test-{}-{name}", std::process::id()))
}

/// Runs a scenario with `--json` and returns the parsed report.
pub fn run_json(scenario: &str, args: &[&str], nofile: Option<u32>) -> serde_json::Value {
    let json = temp_path(&format!("{scenario}-{}.json", args.len()));
    let mut all: Vec<String> = vec![scenario.into()];
    all.extend(args.iter().map(|s| s.to_string()));
    all.extend(["--json".into(), json.display().to_string()]);
    run_loadgen(&all, nofile);
    let text = std::fs::read(&json).expect("report written");
    let _ = std::fs::remove_file(&json);
    serde_json::from_slice(&text).expect("report is JSON")
}

/// A figure of a report.
pub fn fig(report: &serde_json::Value, name: &str) -> f64 {
    report["figures"][name]
        .as_f64()
        .unwrap_or_else(|| panic!("no figure {name} in {}", report["figures"]))
}

/// The smoke `direct` run every server gets: 20 users, 200 msg/s for 2 s with `--verify`,
/// through `target` (`["--url", ws]` or `["--control", url]`). Asserts every message was
/// acknowledged and delivered exactly once, in order; returns the report for more checks.
pub fn direct_smoke(target: [&str; 2]) -> serde_json::Value {
    let mut args = target.to_vec();
    args.extend([
        "--users",
        "20",
        "--rate",
        "200",
        "--duration",
        "2",
        "--verify",
    ]);
    let r = run_json("direct", &args, None);
    let sent = fig(&r, "msg.sent");
    assert!(sent >= 200.0, "sent {sent}");
    assert_eq!(fig(&r, "msg.acked"), sent);
    assert_eq!(fig(&r, "msg.delivered"), sent);
    assert_eq!(fig(&r, "verify.lost"), 0.0);
    assert_eq!(fig(&r, "verify.duplicated"), 0.0);
    assert_eq!(fig(&r, "verify.out_of_order"), 0.0);
    assert_eq!(fig(&r, "errors.total"), 0.0);
    r
}

/// A stand-in for control's placement API on a free port: `GET /v1/connect?userId=U` answers
/// `{wsUrl: ws://<ws>/ws?userId=U, token, ringVersion}` (the shape of
/// `protocol::control::ConnectResponse`). Returns its base URL and the number of placements
/// it served so far.
pub fn fake_control(ws: SocketAddr) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read as _, Write as _};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind control");
    let addr = listener.local_addr().expect("addr");
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]);
            let user = req
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.strip_prefix("/v1/connect?userId="))
                .unwrap_or("")
                .to_owned();
            let body = format!(
                r#"{{"wsUrl":"ws://{ws}/ws?userId={user}","token":"t-{user}","ringVersion":7}}"#
            );
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes());
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    (format!("http://{addr}"), served)
}
