//! Measures the gateway's user-space memory per idle WebSocket connection.
//!
//! Starts `target/release/gateway` (or `$GATEWAY_BIN`) on a free port, reads its RSS, opens N
//! `/ws` connections (each gets its `welcome`, then stays idle), waits for the process to
//! settle, reads RSS again and prints `(after - before) / N`.
//!
//! ```sh
//! cargo build --release -p gateway --examples
//! target/release/examples/idle_rss 10000 2      # connections, shards
//! ```
//! Keep N under the per-process open-file limit (this process holds the client sockets).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(10_000), |a| a.parse())?;
    let shards: usize = args.next().map_or(Ok(2), |a| a.parse())?;
    let bin = std::env::var("GATEWAY_BIN").unwrap_or_else(|_| "target/release/gateway".into());
    let mut child = Command::new(&bin)
        .args(["--listen", "127.0.0.1:0", "--shards", &shards.to_string()])
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("stdout")?).read_line(&mut line)?;
    let addr: SocketAddr = line.trim().trim_start_matches("listening on ").parse()?;
    let pid = child.id();
    std::thread::sleep(Duration::from_millis(500));
    let before = (rss_kib(pid, "VmRSS:"), rss_kib(pid, "RssAnon:"));
    let mut conns = Vec::with_capacity(n);
    let mut buf = [0u8; 4096];
    for i in 0..n {
        let mut s = TcpStream::connect(addr)?;
        write!(
            s,
            "GET /ws?userId=idle{i} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )?;
        // 101 + welcome frame: read until the welcome's closing brace arrived.
        let mut got = Vec::new();
        while !(got.starts_with(b"HTTP/1.1 101") && got.ends_with(b"}")) {
            let k = s.read(&mut buf)?;
            if k == 0 {
                return Err(format!("connection {i} closed during handshake").into());
            }
            got.extend_from_slice(&buf[..k]);
        }
        conns.push(s);
    }
    std::thread::sleep(Duration::from_secs(2));
    let after = (rss_kib(pid, "VmRSS:"), rss_kib(pid, "RssAnon:"));
    let per = |b: u64, a: u64| (a.saturating_sub(b) * 1024) as f64 / n as f64;
    println!(
        "{n} idle connections, {shards} shards: VmRSS {} -> {} KiB ({:.0} B/conn), RssAnon {} -> {} KiB ({:.0} B/conn)",
        before.0,
        after.0,
        per(before.0, after.0),
        before.1,
        after.1,
        per(before.1, after.1)
    );
    drop(conns);
    let _ = child.kill();
    let _ = child.wait();
    Ok(())
}
