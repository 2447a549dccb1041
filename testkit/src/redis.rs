//! [`RedisServer`]: a `redis-server` of the test's own on a loopback port.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, unique, wait_listening, ChildGuard, STARTUP};

/// The `redis-server` binary: `RTC_REDIS_BIN`, else the one on `PATH`.
pub fn redis_bin() -> String {
    std::env::var("RTC_REDIS_BIN").unwrap_or_else(|_| "redis-server".to_owned())
}

/// The suite's shared Redis (`RTC_TEST_REDIS_URL`), when one runs.
pub fn shared_redis_url() -> Option<String> {
    std::env::var("RTC_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

/// A `redis-server` on `127.0.0.1:port` with its own data directory, killed on drop (the
/// directory is removed then). Restartable on the same port; with [`RedisServer::persistent`]
/// its data survives a kill (AOF, fsync on every write).
#[derive(Debug)]
pub struct RedisServer {
    child: ChildGuard,
    port: u16,
    dir: PathBuf,
    persistent: bool,
}

impl RedisServer {
    /// A server on a free port, no persistence.
    pub fn start() -> RedisServer {
        Self::start_on(free_port(), false)
    }

    /// A server on a free port whose data survives [`RedisServer::kill`] +
    /// [`RedisServer::spawn`].
    pub fn persistent() -> RedisServer {
        Self::start_on(free_port(), true)
    }

    /// A server on `port` (e.g. the port of one that was stopped).
    pub fn start_on(port: u16, persistent: bool) -> RedisServer {
        let dir = std::env::temp_dir().join(unique("rtc-test-redis"));
        std::fs::create_dir_all(&dir).expect("redis data dir");
        let mut s = RedisServer {
            child: ChildGuard(None),
            port,
            dir,
            persistent,
        };
        s.spawn();
        s
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts the server process (again, after [`RedisServer::kill`]) and waits until it
    /// listens.
    pub fn spawn(&mut self) {
        let bin = redis_bin();
        let mut cmd = Command::new(&bin);
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", ""])
            .arg("--dir")
            .arg(&self.dir);
        if self.persistent {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin} (apt-get install redis-server): {e}"));
        self.child = ChildGuard::new(child);
        let addr = format!("127.0.0.1:{}", self.port);
        wait_listening(&addr, STARTUP);
        // Listening is not serving: a restarted persistent server answers `-LOADING` while
        // it replays its log. Wait for a real PONG.
        let deadline = Instant::now() + STARTUP;
        while !pong(&addr) {
            assert!(
                Instant::now() < deadline,
                "redis-server on {addr} never answered PING"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, like a crash.
    pub fn kill(&mut self) {
        self.child.kill9();
    }

    /// Kill, then start again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One inline `PING` on a fresh connection; true on `+PONG`.
fn pong(addr: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}
