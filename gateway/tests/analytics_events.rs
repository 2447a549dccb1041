//! Analytics events reach Kafka: a clustered node (Redis + broker + control) publishes a
//! `connect` when a user is attached and a `disconnect` when that connection ends, keyed by
//! the user, on `<prefix>.events.analytics` (`protocol::control::AnalyticsEvent`). Uses the
//! suite's shared Redis and broker when `scripts/test` runs them, else starts its own;
//! deadlines of minutes, no latency assertion; every child killed on drop.

mod support;

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;
use rtc_protocol::control::{analytics_events_topic, AnalyticsEvent};
use support::{Control, Gateway};
use testkit::{Broker, RedisServer};

const DEADLINE: Duration = Duration::from_secs(120);

#[test]
fn connects_and_disconnects_are_published_keyed_by_user() {
    let (brokers, _own_broker) = match testkit::shared_kafka() {
        Some(a) => (a, None),
        None => {
            let b = Broker::start();
            (b.addr(), Some(b))
        }
    };
    let (redis_url, _own_redis) = match testkit::shared_redis_url() {
        Some(u) => (u, None),
        None => {
            let r = RedisServer::start();
            (r.url(), Some(r))
        }
    };
    let prefix = testkit::unique("tana").replace('-', "_");
    let control = Control::start(&[]);
    let gw = Gateway::start(
        &["--shards", "1"],
        &[
            ("LOAD_BALANCER_URL", control.url.as_str()),
            ("NODE_ID", "node-a"),
            ("HEARTBEAT_INTERVAL_SEC", "0.5"),
            ("REDIS_URL", redis_url.as_str()),
            ("KAFKA_BROKERS", brokers.as_str()),
            ("KAFKA_TOPIC_PREFIX", prefix.as_str()),
        ],
    );
    control.until("/v1/ring", DEADLINE, |r| {
        r["nodes"].as_array().is_some_and(|n| n.len() == 1)
    });
    // Serving once the node follows the ring and its relay is up (topics created).
    gw.metrics_until(|t| {
        support::metric_sum(t, "rtc_socket_relay_total", "outcome=\"restored\"") >= 1.0
    });
    let deadline = Instant::now() + DEADLINE;
    while gw.get("/readyz").0 != 200 {
        assert!(Instant::now() < deadline, "node never ready");
        std::thread::sleep(Duration::from_millis(200));
    }

    let c = gw.client("ana-1");
    assert_eq!(c.welcome["user"], "ana-1");
    c.close();

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", testkit::unique("analytics-test"))
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer
        .subscribe(&[&analytics_events_topic(&prefix)])
        .expect("subscribe");
    let mut seen: Vec<(String, AnalyticsEvent)> = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    let done = |seen: &[(String, AnalyticsEvent)]| {
        seen.iter()
            .any(|(_, e)| matches!(e, AnalyticsEvent::Disconnect { .. }))
    };
    while !done(&seen) {
        assert!(
            Instant::now() < deadline,
            "timed out; analytics events so far: {seen:#?}"
        );
        // Errors (topic not there yet) and empty polls just mean "not yet".
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            let e: AnalyticsEvent =
                serde_json::from_slice(m.payload().unwrap_or_default()).expect("event JSON");
            seen.push((key, e));
        }
    }
    let connect = seen
        .iter()
        .find_map(|(k, e)| match e {
            AnalyticsEvent::Connect {
                user,
                node_id,
                conn,
                resumed,
                ..
            } => Some((k.clone(), user.clone(), node_id.clone(), *conn, *resumed)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no connect event before the disconnect: {seen:#?}"));
    assert_eq!(
        connect,
        (
            "ana-1".into(),
            "ana-1".into(),
            "node-a".into(),
            connect.3,
            false
        )
    );
    let disconnect_conn = seen.iter().find_map(|(k, e)| match e {
        AnalyticsEvent::Disconnect { user, conn, .. } if k == "ana-1" && user == "ana-1" => {
            Some(*conn)
        }
        _ => None,
    });
    assert_eq!(
        disconnect_conn,
        Some(connect.3),
        "the disconnect names the connection of the connect: {seen:#?}"
    );
}
