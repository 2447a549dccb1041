//! The one test harness: starts the real `gateway` binary on a free port (`--listen
//! 127.0.0.1:0`, the bound address read from its stdout), a blocking WebSocket client
//! (tungstenite) speaking the JSON protocol, and raw-socket helpers for bad input.
//! Child processes are killed on drop.
#![allow(dead_code)] // each test file uses a different part of the harness

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, WebSocket};

/// Generous: the machine is loaded with parallel builds.
pub const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// A running gateway process.
pub struct Gateway {
    child: Option<Child>,
    /// The bound address.
    pub addr: SocketAddr,
}

impl Gateway {
    /// Starts `gateway --listen 127.0.0.1:0 ARGS` with extra environment variables.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
        cmd.arg("--listen").arg("127.0.0.1:0").args(args);
        // Isolate from the developer's environment.
        for var in [
            "HTTP_PORT",
            "LISTEN_ADDR",
            "RING_SECRET",
            "SHARDS",
            "GATEWAY_CONFIG",
            "LOAD_BALANCER_URL",
            "CONTROL_URL",
            "ADMIN_TOKEN",
            "NODE_TOKEN",
            "NODE_ID",
            "PUBLIC_WS_URL",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("RUST_LOG", "warn");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn gateway");
        let addr = testkit::listening_addr(&mut child, "gateway");
        Self {
            child: Some(child),
            addr,
        }
    }

    /// `ws://ADDR/PATH_AND_QUERY`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("ws://{}{}", self.addr, path_and_query)
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .expect("kill");
        assert!(ok.success());
    }

    /// Waits for the process to exit (None on timeout).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A plain HTTP GET; returns (status, whole response text).
    pub fn get(&self, path: &str) -> (u16, String) {
        let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
        raw_request(self.addr, req.as_bytes())
    }

    /// Connects a JSON client: `/ws?userId=USER` plus `extra` query (e.g. `&resume=…`).
    pub fn client(&self, user: &str) -> Client {
        Client::connect(&self.url(&format!("/ws?userId={user}"))).expect("connect")
    }

    /// Polls `/metrics` until `pred` holds for the text (metrics are published every 250 ms).
    pub fn metrics_until(&self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + READ_TIMEOUT;
        loop {
            let (status, text) = self.get("/metrics");
            assert_eq!(status, 200);
            if pred(&text) || Instant::now() > deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[allow(unused_imports)] // each test binary compiles this module; not all of them read metrics
pub use testkit::metric_sum;

/// Writes `req`, reads until the server closes (or times out); returns (status, text).
pub fn raw_request(addr: SocketAddr, req: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(READ_TIMEOUT)).expect("timeout");
    s.write_all(req).expect("write");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    (status_of(&text), text)
}

/// Status code of an HTTP response text (0 when none).
pub fn status_of(text: &str) -> u16 {
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// An upgrade request for `path_and_query` with the usual headers plus `extra` lines.
pub fn upgrade_request(path_and_query: &str, extra: &str) -> String {
    format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// A raw upgraded socket (for sending frames tungstenite refuses to send).
pub fn raw_ws(addr: SocketAddr, path_and_query: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(READ_TIMEOUT)).expect("timeout");
    s.write_all(upgrade_request(path_and_query, "").as_bytes())
        .expect("write");
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).expect("read 101");
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

/// A masked client frame.
pub fn masked_frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut out = vec![first_byte];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Reads server frames from a raw socket until a close frame; returns its code
/// (None if the socket closed without one). Data frames before it are skipped.
pub fn raw_read_close(s: &mut TcpStream) -> Option<u16> {
    raw_read_until_close(s).0
}

/// Like [`raw_read_close`], also returning the opcodes of the frames before the close.
pub fn raw_read_until_close(s: &mut TcpStream) -> (Option<u16>, Vec<u8>) {
    let mut opcodes = Vec::new();
    let code = read_frames(s, &mut opcodes);
    (code, opcodes)
}

fn read_frames(s: &mut TcpStream, opcodes: &mut Vec<u8>) -> Option<u16> {
    loop {
        let mut h = [0u8; 2];
        s.read_exact(&mut h).ok()?;
        let len = match h[1] & 0x7F {
            126 => {
                let mut b = [0u8; 2];
                s.read_exact(&mut b).ok()?;
                u64::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                s.read_exact(&mut b).ok()?;
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        let mut payload = vec![0u8; len as usize];
        s.read_exact(&mut payload).ok()?;
        opcodes.push(h[0] & 0x0F);
        if h[0] & 0x0F == 0x8 {
            return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
        }
    }
}

/// A blocking JSON-protocol client.
pub struct Client {
    ws: WebSocket<TcpStream>,
    /// The `welcome` frame.
    pub welcome: Value,
    /// Close code of the server's close frame, once received.
    pub last_close: Option<u16>,
}

/// Why a connect failed.
#[derive(Debug)]
pub enum ConnectError {
    /// The server answered an HTTP status instead of 101.
    Status(u16, Option<String>),
    /// Anything else.
    Other(String),
}

impl Client {
    /// Connects to `url` (ws://…) and reads the `welcome` frame.
    pub fn connect(url: &str) -> Result<Client, ConnectError> {
        Self::connect_with(url, None)
    }

    /// Like [`Client::connect`], with an optional small receive buffer (drop-oldest tests).
    pub fn connect_with(url: &str, rcvbuf: Option<usize>) -> Result<Client, ConnectError> {
        let mut c = Self::open(url, rcvbuf)?;
        let w = c
            .recv()
            .ok_or(ConnectError::Other("closed before welcome".into()))?;
        if w["type"] != "welcome" {
            return Err(ConnectError::Other(format!(
                "first frame is not welcome: {w}"
            )));
        }
        c.welcome = w;
        Ok(c)
    }

    /// Upgrades to `url` without reading anything (`welcome` stays `Null`): for answers
    /// that are not a welcome, such as `redirect`.
    pub fn open(url: &str, rcvbuf: Option<usize>) -> Result<Client, ConnectError> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or(ConnectError::Other("not ws://".into()))?;
        let host = rest.split('/').next().unwrap_or(rest);
        let addr: SocketAddr = host
            .parse()
            .map_err(|e| ConnectError::Other(format!("{e}")))?;
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .map_err(|e| ConnectError::Other(e.to_string()))?;
        if let Some(n) = rcvbuf {
            sock.set_recv_buffer_size(n)
                .map_err(|e| ConnectError::Other(e.to_string()))?;
        }
        sock.connect(&addr.into())
            .map_err(|e| ConnectError::Other(e.to_string()))?;
        let stream: TcpStream = sock.into();
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .expect("timeout");
        let (ws, _resp) = match tungstenite::client(url, stream) {
            Ok(x) => x,
            Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
                let retry = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                return Err(ConnectError::Status(resp.status().as_u16(), retry));
            }
            Err(e) => return Err(ConnectError::Other(e.to_string())),
        };
        Ok(Client {
            ws,
            welcome: Value::Null,
            last_close: None,
        })
    }

    /// Sends a JSON frame.
    pub fn send(&mut self, v: &Value) {
        self.ws.send(Message::text(v.to_string())).expect("send");
    }

    /// Sends raw text.
    pub fn send_text(&mut self, t: &str) {
        self.ws.send(Message::text(t.to_owned())).expect("send");
    }

    /// `message` to `to` with `clientMsgId` and payload.
    pub fn send_msg(&mut self, to: &str, cmid: &str, payload: Value) {
        self.send(&json!({"type":"message","to":to,"clientMsgId":cmid,"payload":payload}));
    }

    /// Next JSON text frame; `None` when the connection closed (see [`Client::close_code`]).
    pub fn recv(&mut self) -> Option<Value> {
        loop {
            match self.ws.read() {
                Ok(Message::Text(t)) => {
                    return Some(serde_json::from_str(&t).expect("server sent JSON"))
                }
                Ok(Message::Close(f)) => {
                    self.last_close = f.map(|f: CloseFrame<'_>| u16::from(f.code));
                    return None;
                }
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// Next frame of type `ty`, skipping others; panics if the connection closes first.
    pub fn recv_type(&mut self, ty: &str) -> Value {
        loop {
            match self.recv() {
                Some(v) if v["type"] == ty => return v,
                Some(_) => continue,
                None => panic!("closed (code {:?}) while waiting for {ty}", self.last_close),
            }
        }
    }

    /// Reads until the server closes; returns the close code it sent.
    pub fn close_code(&mut self) -> Option<u16> {
        while self.recv().is_some() {}
        self.last_close
    }

    /// The frames received until the server closes, and its close code.
    pub fn drain_until_close(&mut self) -> (Vec<Value>, Option<u16>) {
        let mut v = Vec::new();
        while let Some(f) = self.recv() {
            v.push(f);
        }
        (v, self.last_close)
    }

    /// Closes normally.
    pub fn close(mut self) {
        let _ = self.ws.close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }));
        let _ = self.ws.flush();
        while self.ws.read().is_ok() {}
    }

    /// The socket, e.g. to stop reading.
    pub fn stream(&self) -> &TcpStream {
        self.ws.get_ref()
    }
}

/// Two user ids whose home shards differ for `shards` shards.
pub fn users_on_different_shards(shards: usize) -> (String, String) {
    let a = "alice".to_owned();
    let home = rtc_ring::shard_of(&a, shards);
    for i in 0..1000 {
        let b = format!("bob{i}");
        if rtc_ring::shard_of(&b, shards) != home {
            return (a, b);
        }
    }
    panic!("no two users on different shards");
}

/// The real `control` binary (another crate's binary: `CARGO_BIN_EXE_control` exists only in
/// control's own tests). `CONTROL_BIN=PATH` names one; otherwise it is built once per test
/// process with `cargo build -p control` into this test's own target directory and profile
/// (a no-op when it is fresh; cargo has released the build lock while tests run).
pub fn control_bin() -> std::path::PathBuf {
    use std::path::{Path, PathBuf};
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("CONTROL_BIN") {
            return PathBuf::from(p);
        }
        // The test executable is TARGET/PROFILE/deps/NAME-HASH.
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test executable under TARGET/PROFILE/deps");
        let target_dir = profile_dir.parent().expect("TARGET dir");
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(workspace)
            .args([
                "build",
                "-q",
                "-p",
                "control",
                "--bin",
                "control",
                "--target-dir",
            ])
            .arg(target_dir);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build -p control");
        assert!(
            status.success(),
            "cargo build -p control failed: {status:?}"
        );
        let bin = profile_dir.join("control");
        assert!(bin.exists(), "no control binary at {}", bin.display());
        bin
    })
    .clone()
}

/// A running `control serve` on a free loopback port, killed on drop.
pub struct Control {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Its address.
    pub addr: SocketAddr,
}

impl Control {
    /// Starts `control serve --listen 127.0.0.1:PORT` (in-memory) with `env`, and waits until
    /// `/healthz` answers.
    pub fn start(env: &[(&str, &str)]) -> Self {
        let port = testkit::free_port();
        Self::start_on(([127, 0, 0, 1], port).into(), env)
    }

    /// Kills this control (`kill -9`: all its in-memory state is lost) and starts a fresh
    /// one on the same address.
    pub fn restart(&mut self, env: &[(&str, &str)]) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        *self = Self::start_on(self.addr, env);
    }

    /// Starts `control serve` on `addr`.
    pub fn start_on(addr: SocketAddr, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(control_bin());
        cmd.arg("serve")
            .arg("--listen")
            .arg(addr.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .env("RUST_LOG", "warn");
        for var in [
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
        ] {
            cmd.env_remove(var);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn control");
        let c = Control {
            child: Some(child),
            url: format!("http://{addr}"),
            addr,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect(addr).is_ok() && c.request("GET", "/healthz", "").0 == 200 {
                return c;
            }
            assert!(Instant::now() < deadline, "control did not start on {addr}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `METHOD path` with a JSON body (may be empty); (status, body text).
    pub fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: control\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let (status, text) = raw_request(self.addr, req.as_bytes());
        let body = text
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_owned();
        (status, body)
    }

    /// `GET path` as JSON (panics on a non-200 answer).
    pub fn get_json(&self, path: &str) -> Value {
        let (status, body) = self.request("GET", path, "");
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// The current ring, as the gateway reads it.
    pub fn ring(&self) -> rtc_ring::Ring {
        let (status, body) = self.request("GET", "/v1/ring", "");
        assert_eq!(status, 200, "{body}");
        rtc_ring::Ring::from_json(&body).expect("ring snapshot")
    }

    /// Polls `GET path` until `pred` holds for its JSON (panics after `within`).
    pub fn until(&self, path: &str, within: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let v = self.get_json(path);
            if pred(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "GET {path} never matched: {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
