//! The cross-node data path end to end: control + two gateway nodes + one Redis + one Kafka
//! broker (tansu). 50 users, each connected to its ring owner, send each other messages at
//! about 125 msg/s in total; the broker is restarted mid-run. Every message answered `sent`
//! must reach its recipient, and each recipient must see its offsets in increasing order
//! (repeats allowed and counted, no `gap`).
//!
//! Starts its own Redis and broker (it restarts the broker). Sized for a loaded 2-core
//! machine: 50 users, deadlines of minutes, no latency assertion; every child killed on drop.
//! `CLUSTER_RELAY_NO_RESTART=1` skips the broker restart (to tell relay from restart issues).

mod support;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{metric_sum, Client, Control, Gateway};
use testkit::{Broker, RedisServer};

const USERS: usize = 50;
const MSGS_PER_USER: usize = 16;
/// Pause between one user's sends: 50 users → about 125 msg/s.
const PACE: Duration = Duration::from_millis(400);
const DEADLINE: Duration = Duration::from_secs(120);

fn until(what: &str, pred: impl FnMut() -> bool) {
    testkit::until(what, DEADLINE, pred);
}

/// What one user's thread saw.
#[derive(Default)]
struct Seen {
    /// Offsets of `message` frames, in arrival order.
    received: Vec<u64>,
    gaps: usize,
}

#[test]
fn acked_messages_reach_their_recipients_in_order_across_a_broker_restart() {
    let redis = RedisServer::start();
    let redis_url = redis.url();
    let mut broker = Broker::start();
    let brokers = broker.addr();
    let control = Control::start(&[]);
    let prefix = format!("crelay{}", std::process::id());
    let env = |id: &'static str| -> Vec<(&'static str, String)> {
        vec![
            ("LOAD_BALANCER_URL", control.url.clone()),
            ("NODE_ID", id.to_owned()),
            ("HEARTBEAT_INTERVAL_SEC", "0.5".to_owned()),
            ("REDIS_URL", redis_url.clone()),
            ("KAFKA_BROKERS", brokers.clone()),
            ("KAFKA_TOPIC_PREFIX", prefix.clone()),
        ]
    };
    let start = |id: &'static str| {
        let e = env(id);
        let refs: Vec<(&str, &str)> = e.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Gateway::start(&["--shards", "2"], &refs)
    };
    let a = start("node-a");
    let b = start("node-b");
    // Both nodes on the ring, and every shard's relay delivering (first `Restored`).
    until("both nodes on the ring", || {
        control.ring().nodes().len() == 2
    });
    let want = control.ring().version() as f64;
    for gw in [&a, &b] {
        until("ring applied and relay restored", || {
            let (_, t) = gw.get("/metrics");
            metric_sum(&t, "rtc_socket_ring_version", "") >= want
                && metric_sum(&t, "rtc_socket_relay_events_total", "restored") >= 2.0
        });
    }
    let ring = control.ring();
    let users: Vec<String> = (0..USERS).map(|i| format!("user{i}")).collect();
    let owners: Vec<String> = users
        .iter()
        .map(|u| ring.owner(u).expect("an owner").url.clone())
        .collect();
    assert!(
        owners.iter().any(|o| *o != owners[0]),
        "users spread over both nodes"
    );

    let acked: Arc<Mutex<HashMap<String, BTreeSet<u64>>>> = Arc::default();
    let seen: Arc<Mutex<HashMap<String, Seen>>> = Arc::default();
    let sending = Arc::new(AtomicUsize::new(USERS));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for (i, user) in users.iter().enumerate() {
        let url = format!("{}?userId={user}", owners[i]);
        let user = user.clone();
        let users = users.clone();
        let (acked, seen, sending, stop) =
            (acked.clone(), seen.clone(), sending.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let mut c = Client::connect(&url).expect("connect to the owner");
            c.stream()
                .set_read_timeout(Some(Duration::from_millis(200)))
                .expect("timeout");
            let mut mine = Seen::default();
            let record = |v: &serde_json::Value, mine: &mut Seen| match v["type"].as_str() {
                Some("message") => mine.received.push(v["offset"].as_u64().expect("offset")),
                Some("gap") => mine.gaps += 1,
                _ => {}
            };
            for n in 0..MSGS_PER_USER {
                let to = &users[(i + 1 + (n * 7) % (USERS - 1)) % USERS];
                assert_ne!(*to, user);
                let cmid = format!("{user}-{n}");
                let deadline = Instant::now() + DEADLINE;
                c.send_msg(to, &cmid, json!({"n": n}));
                loop {
                    assert!(Instant::now() < deadline, "{user}: no sent for {cmid}");
                    let Some(v) = c.recv() else { continue };
                    if v["clientMsgId"] == cmid.as_str() && v["type"] == "sent" {
                        let off = v["offset"].as_u64().expect("offset");
                        acked
                            .lock()
                            .unwrap()
                            .entry(to.clone())
                            .or_default()
                            .insert(off);
                        break;
                    }
                    if v["clientMsgId"] == cmid.as_str() && v["type"] == "error" {
                        // Unavailable: retry the same clientMsgId (deduplicated if it landed).
                        std::thread::sleep(Duration::from_millis(300));
                        c.send_msg(to, &cmid, json!({"n": n}));
                        continue;
                    }
                    record(&v, &mut mine);
                }
                std::thread::sleep(PACE);
            }
            sending.fetch_sub(1, Ordering::SeqCst);
            while !stop.load(Ordering::SeqCst) {
                if let Some(v) = c.recv() {
                    record(&v, &mut mine);
                }
                seen.lock()
                    .unwrap()
                    .entry(user.clone())
                    .or_default()
                    .received
                    .clone_from(&mine.received);
            }
            seen.lock().unwrap().insert(user.clone(), mine);
        }));
    }

    // Mid-run: the broker restarts with empty (in-memory) storage.
    std::thread::sleep(Duration::from_secs(3));
    if std::env::var_os("CLUSTER_RELAY_NO_RESTART").is_none() {
        broker.kill();
        std::thread::sleep(Duration::from_secs(1));
        broker.spawn();
    }

    until("every user sent everything", || {
        sending.load(Ordering::SeqCst) == 0
    });
    let missing = || -> Vec<(String, Vec<u64>)> {
        let acked = acked.lock().unwrap();
        let seen = seen.lock().unwrap();
        acked
            .iter()
            .filter_map(|(to, offs)| {
                let got: BTreeSet<u64> = seen
                    .get(to)
                    .map(|s| s.received.iter().copied().collect())
                    .unwrap_or_default();
                let lost: Vec<u64> = offs.difference(&got).copied().collect();
                (!lost.is_empty()).then(|| (to.clone(), lost))
            })
            .collect()
    };
    let deadline = Instant::now() + DEADLINE;
    loop {
        let m = missing();
        if m.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            for gw in [&a, &b] {
                let (_, t) = gw.get("/metrics");
                for l in t.lines().filter(|l| {
                    !l.starts_with('#') && (l.contains("drops_total") || l.contains("relay"))
                }) {
                    eprintln!("{}: {l}", gw.addr);
                }
            }
            panic!("acked but not delivered: {m:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().expect("user thread");
    }

    let acked = acked.lock().unwrap();
    let seen = seen.lock().unwrap();
    let total: usize = acked.values().map(BTreeSet::len).sum();
    assert_eq!(total, USERS * MSGS_PER_USER, "every send was answered once");
    let mut duplicates = 0;
    for (user, s) in seen.iter() {
        assert_eq!(s.gaps, 0, "{user} was told a gap");
        let mut max = 0;
        let mut got = BTreeSet::new();
        for &off in &s.received {
            if off <= max {
                assert!(got.contains(&off), "{user}: offset {off} after {max}");
                duplicates += 1;
            } else {
                // In order: everything between was delivered before (no holes).
                assert_eq!(off, max + 1, "{user}: offset {off} skips after {max}");
                max = off;
                got.insert(off);
            }
        }
    }
    eprintln!("{total} messages acked and delivered in order, {duplicates} repeats");
    drop(broker);
}
