//! Produce → consume latency of the relay at a moderate rate, through a real broker.
//!
//! `RTC_TEST_KAFKA=127.0.0.1:PORT cargo run --release -p gateway --example relay_latency`
//! (or `RTC_TANSU_BIN=/path/to/tansu` to start a private in-memory broker). Two relays (nodes
//! `a` and `b`, one shard each) in this process; a shard of `a` sends `RATE` messages/s for
//! `SECONDS` to users of `b`; `b`'s shard measures, per message, the time from `try_send` on
//! `a` to the batch arriving on `b`'s shard (same process clock). Prints p50/p99/max.

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gateway::relay::{ProduceRequest, Relay, RelayConfig, RelayEvent, RelayInbound};
use rtc_protocol::relay::{DestKind, Envelope, EnvelopeKind};

const RATE: u64 = 1000;
const SECONDS: u64 = 5;

fn main() {
    let mut broker_child = None;
    let brokers = match std::env::var("RTC_TEST_KAFKA") {
        Ok(a) if !a.is_empty() => a,
        _ => {
            let bin = std::env::var("RTC_TANSU_BIN").expect("set RTC_TEST_KAFKA or RTC_TANSU_BIN");
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let url = format!("tcp://127.0.0.1:{port}");
            broker_child = Some(
                Command::new(bin)
                    .args([
                        "broker",
                        "--listener-url",
                        &url,
                        "--advertised-listener-url",
                        &url,
                        "--storage-engine",
                        "memory://tansu/",
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("tansu"),
            );
            let addr = format!("127.0.0.1:{port}");
            while TcpStream::connect(&addr).is_err() {
                std::thread::sleep(Duration::from_millis(50));
            }
            addr
        }
    };
    let prefix = format!("lat{}", std::process::id());
    // Other knobs from the environment (e.g. `KAFKA_FETCH_WAIT_MS`, `KAFKA_ACKS`).
    let cfg = |node: &str| RelayConfig {
        brokers: brokers.clone(),
        prefix: prefix.clone(),
        ..RelayConfig::from_env(node).expect("relay config")
    };
    let epoch = Instant::now();
    let (b, b_plan) = Relay::start(cfg("b"), 1).expect("relay b");
    let (a, a_plan) = Relay::start(cfg("a"), 1).expect("relay a");
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let (lat_tx, lat_rx) = mpsc::channel::<Vec<u64>>();
    let b_ends = b_plan.take(0).unwrap();
    let total = RATE * SECONDS;
    let rx_thread = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(256 * 1024)
        .spawn(move || async move {
            let (_tx, rx) = b_ends.connect().await;
            let mut lat = Vec::with_capacity(total as usize);
            while let Some(item) = rx.recv().await {
                match item {
                    RelayInbound::Event(RelayEvent::Restored) => {
                        let _ = ready_tx.send(());
                    }
                    RelayInbound::Deliveries(v) => {
                        let now = epoch.elapsed().as_nanos() as u64;
                        for d in v {
                            if let Ok(env) = d.envelope() {
                                lat.push(now.saturating_sub(env.offset));
                            }
                        }
                        if lat.len() as u64 >= total {
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let _ = lat_tx.send(lat);
        })
        .unwrap();
    ready_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("b never restored");
    let a_ends = a_plan.take(0).unwrap();
    let tx_thread = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(256 * 1024)
        .spawn(move || async move {
            let (tx, _rx) = a_ends.connect().await;
            let start = Instant::now();
            let mut refused = 0u64;
            for i in 0..total {
                let due = start + Duration::from_nanos(i * 1_000_000_000 / RATE);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    glommio::timer::sleep(wait).await;
                }
                let to = format!("user-{}", i % 100);
                let env = Envelope {
                    kind: EnvelopeKind::Message,
                    dest_kind: DestKind::User,
                    dest: &to,
                    from: "sender",
                    client_msg_id: "",
                    msg_id: i + 1,
                    // The send instant rides in `offset` (not assigned on this hop).
                    offset: epoch.elapsed().as_nanos() as u64,
                    ts: 0,
                    payload: br#"{"text":"hello"}"#,
                };
                if tx
                    .try_send(ProduceRequest::envelope("b", &env, i).unwrap())
                    .is_err()
                {
                    refused += 1;
                }
            }
            refused
        })
        .unwrap();
    let refused = tx_thread.join().unwrap();
    let mut lat = lat_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("not all delivered");
    let _ = rx_thread.join();
    lat.sort_unstable();
    let q = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize] as f64 / 1e6;
    println!(
        "relay produce→consume latency, {RATE} msg/s for {SECONDS} s, fetch.wait.max.ms {}, acks {}, {} messages ({refused} refused): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        a.config().fetch_wait_ms,
        a.config().acks.as_str(),
        lat.len(),
        q(0.50),
        q(0.99),
        q(1.0)
    );
    println!(
        "a: {:?}\nb: {:?}",
        a.counters().snapshot(),
        b.counters().snapshot()
    );
    drop(a);
    drop(b);
    if let Some(mut c) = broker_child {
        let _ = c.kill();
    }
}
