//! Server CPU seconds per 100k WebSocket echo round trips (the DESIGN.md reference method:
//! 1000 connections × 32-byte messages, 8 in flight per connection).
//!
//! Starts `target/release/gateway --echo --shards 1` (or `$GATEWAY_BIN`), opens the
//! connections, runs a warm-up, then reads the gateway's utime+stime from /proc before and
//! after `ROUND_TRIPS` echoes and prints CPU seconds per 100k.
//!
//! ```sh
//! cargo build --release -p gateway --examples
//! target/release/examples/echo_cpu 1000 400000    # connections, round trips
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Instant;

const IN_FLIGHT: usize = 8;
const MSG: &[u8; 32] = b"0123456789abcdef0123456789abcdef";
const CLIENT_THREADS: usize = 4;

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the ")" of the command name: utime is the 12th, stime the 13th.
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

fn masked(payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut out = vec![0x82, 0x80 | payload.len() as u8];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    write!(
        s,
        "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )?;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b)?;
        head.push(b[0]);
    }
    Ok(s)
}

/// Runs `rounds` rounds over `conns`: write 8 frames to each, then read 8 echoes from each.
fn run(conns: &mut [TcpStream], rounds: usize) -> std::io::Result<()> {
    let batch: Vec<u8> = (0..IN_FLIGHT).flat_map(|_| masked(MSG)).collect();
    let want = IN_FLIGHT * (2 + MSG.len());
    let mut buf = vec![0u8; want];
    for _ in 0..rounds {
        for c in conns.iter_mut() {
            c.write_all(&batch)?;
        }
        for c in conns.iter_mut() {
            c.read_exact(&mut buf)?;
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(1000), |a| a.parse())?;
    let total: usize = args.next().map_or(Ok(400_000), |a| a.parse())?;
    let bin = std::env::var("GATEWAY_BIN").unwrap_or_else(|_| "target/release/gateway".into());
    let mut child = Command::new(&bin)
        .args(["--listen", "127.0.0.1:0", "--shards", "1", "--echo"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("stdout")?).read_line(&mut line)?;
    let addr: SocketAddr = line.trim().trim_start_matches("listening on ").parse()?;
    let pid = child.id();
    let mut groups: Vec<Vec<TcpStream>> = (0..CLIENT_THREADS).map(|_| Vec::new()).collect();
    for i in 0..n {
        groups[i % CLIENT_THREADS].push(connect(addr)?);
    }
    let per_round = n * IN_FLIGHT;
    let rounds = total.div_ceil(per_round);
    let go = |groups: Vec<Vec<TcpStream>>, rounds: usize| -> Vec<Vec<TcpStream>> {
        let handles: Vec<_> = groups
            .into_iter()
            .map(|mut g| {
                std::thread::spawn(move || {
                    run(&mut g, rounds).expect("echo round");
                    g
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("client thread"))
            .collect()
    };
    let groups = go(groups, (rounds / 10).max(1)); // warm-up
    let ticks0 = cpu_ticks(pid);
    let t0 = Instant::now();
    let groups = go(groups, rounds);
    let wall = t0.elapsed();
    let ticks = cpu_ticks(pid) - ticks0;
    let hz = 100.0; // USER_HZ on Linux
    let done = rounds * per_round;
    let cpu = ticks as f64 / hz;
    println!(
        "{done} round trips over {n} connections ({IN_FLIGHT} in flight, 32 B): server CPU {cpu:.2} s \
         = {:.3} s per 100k; wall {:.2} s ({:.0} round trips/s)",
        cpu / done as f64 * 100_000.0,
        wall.as_secs_f64(),
        done as f64 / wall.as_secs_f64()
    );
    drop(groups);
    let _ = child.kill();
    let _ = child.wait();
    Ok(())
}
