//! `control serve` with `KAFKA_BROKERS` publishes ring versions, drains and scaling
//! decisions to `<prefix>.events.control` ([`ControlEvent`] JSON), read back here with a
//! real rdkafka consumer against a real broker. Also: no scaling decision is made before a
//! node has reported (the first one used to see "current 0").

mod support;

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;
use rtc_protocol::control::{control_events_topic, ControlEvent, RING_EVENT_KEY, SCALE_EVENT_KEY};
use rtc_ring::{Diff, NodeState};
use support::{eventually, unique, Broker, ControlProc, FakeNode, Http};

/// Generous: a loaded 2-core machine, a broker's first group join.
const DEADLINE: Duration = Duration::from_secs(120);

/// Reads `topic` from the beginning until `done` holds for what was read (or the deadline).
fn consume_until(
    brokers: &str,
    topic: &str,
    done: impl Fn(&[(String, ControlEvent)]) -> bool,
) -> Vec<(String, ControlEvent)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("events-test"))
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut seen = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while !done(&seen) {
        assert!(
            Instant::now() < deadline,
            "timed out; events read so far: {seen:#?}"
        );
        // Errors (the topic may not exist yet: control creates it in the background) and
        // empty polls just mean "not yet".
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            let ev: ControlEvent =
                serde_json::from_slice(m.payload().unwrap_or_default()).expect("event JSON");
            seen.push((key, ev));
        }
    }
    seen
}

fn ring_version_with(seen: &[(String, ControlEvent)], want: impl Fn(&Diff) -> bool) -> bool {
    seen.iter().any(|(key, e)| {
        matches!(e, ControlEvent::RingVersion { diffs, version, .. }
            if key == RING_EVENT_KEY && *version > 0 && diffs.iter().any(&want))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_versions_drains_and_scale_decisions_reach_the_events_topic() {
    let broker = Broker::any();
    let prefix = unique("cev").replace('-', "_");
    let c = ControlProc::start(&[
        ("KAFKA_BROKERS", broker.addr.as_str()),
        ("KAFKA_TOPIC_PREFIX", prefix.as_str()),
        ("SCALING_INTERVAL_SEC", "1"),
    ])
    .await;
    let h = Http::new(&c.url);

    // An operator ring change; no node has reported yet, so no decision may be made.
    assert_eq!(h.add_node("op-1", 1, "ws://op-1.test:9000/ws").await, 201);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        h.get("/v1/scale").await["decision"].is_null(),
        "a decision before any node reported"
    );

    // A node joins by heartbeat: a ring version (cause heartbeat) and, now, decisions.
    let _node = FakeNode::start(&c.url, "gw-1", 1, 40, None);
    eventually(DEADLINE, "a scaling decision", || async {
        (!h.get("/v1/scale").await["decision"].is_null()).then_some(())
    })
    .await;

    // A drain (what a node's SIGTERM asks for too).
    let (s, v) = h.call("POST", "/v1/nodes/op-1/drain", None, None).await;
    assert_eq!(s, 200, "{v}");

    let topic = control_events_topic(&prefix);
    let brokers = broker.addr.clone();
    let seen = tokio::task::spawn_blocking(move || {
        consume_until(&brokers, &topic, |seen| {
            let added =
                ring_version_with(seen, |d| matches!(d, Diff::AddNode(n) if n.id == "op-1"));
            let joined =
                ring_version_with(seen, |d| matches!(d, Diff::AddNode(n) if n.id == "gw-1"));
            let drained = ring_version_with(
                seen,
                |d| matches!(d, Diff::SetState { id, state: NodeState::Draining } if id == "op-1"),
            );
            let drain = seen.iter().any(|(k, e)| {
                matches!(e, ControlEvent::Drain { node_id, cause, .. }
                    if k == "op-1" && node_id == "op-1" && cause == "operator")
            });
            let scaled = seen.iter().any(|(k, e)| {
                matches!(e, ControlEvent::ScaleDecision { .. }) && k == SCALE_EVENT_KEY
            });
            added && joined && drained && drain && scaled
        })
    })
    .await
    .expect("consumer thread");

    // Versions arrive in order (one partition), each once.
    let versions: Vec<u64> = seen
        .iter()
        .filter_map(|(_, e)| match e {
            ControlEvent::RingVersion { version, .. } => Some(*version),
            _ => None,
        })
        .collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
    // Every decision saw the reporting node (none counted an empty fleet).
    for (_, e) in &seen {
        if let ControlEvent::ScaleDecision {
            current,
            total_conn,
            ..
        } = e
        {
            assert!(*current >= 1 && *total_conn >= 40, "{e:?}");
        }
    }
    let m = h.text("/metrics").await;
    assert!(
        !m.contains("rtc_lb_events_total{outcome=\"published\"} 0\n"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_is_down_never_blocks_the_api_and_overflow_is_counted() {
    // A port nobody listens on, and room for two events: every ring change still answers
    // at once, and the events past the bound are counted (dropped from the queue or
    // refused by librdkafka's queue of the same bound), none published.
    let dead = format!("127.0.0.1:{}", support::free_port());
    let c = ControlProc::start(&[
        ("KAFKA_BROKERS", dead.as_str()),
        ("KAFKA_TOPIC_PREFIX", "dead"),
        ("CONTROL_EVENT_QUEUE", "2"),
    ])
    .await;
    let h = Http::new(&c.url);
    for i in 0..5 {
        let id = format!("op-{i}");
        assert_eq!(
            h.add_node(&id, 1, &format!("ws://{id}.test:9000/ws")).await,
            201
        );
    }
    let (s, v) = h.call("POST", "/v1/nodes/op-0/drain", None, None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(h.version().await, 6);
    let counted = |m: &str, outcome: &str| -> u64 {
        let prefix = format!("rtc_lb_events_total{{outcome=\"{outcome}\"}} ");
        m.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    // 6 ring versions + 1 drain = 7 events; at most 2 in the queue and 2 in librdkafka.
    let m = eventually(DEADLINE, "the overflow counted", || async {
        let m = h.text("/metrics").await;
        (counted(&m, "dropped") + counted(&m, "failed") >= 3).then_some(m)
    })
    .await;
    assert_eq!(counted(&m, "published"), 0, "{m}");
}
