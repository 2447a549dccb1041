//! Two standalone gateway nodes sharing one Redis (`REDIS_URL`): the Redis resume log is the
//! commit point, so a message sent on node A to an offline user is delivered when that user
//! connects to node B, acks made on B hold when the user resumes on A, and Redis going away
//! turns handshakes into 503 + Retry-After and sends into `error unavailable` until it is
//! back. Starts its own `redis-server` (it kills it); every child is killed on drop.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{metric_sum, Client, ConnectError, Gateway};
use testkit::RedisServer;

const DEADLINE: Duration = Duration::from_secs(60);

/// The user's cumulative acked offset in Redis.
fn acked(redis: &RedisServer, user: &str) -> u64 {
    redis::Client::open(redis.url())
        .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
        .and_then(|mut c| {
            redis::cmd("HGET")
                .arg(format!("rtc:{{{user}}}:meta"))
                .arg("acked")
                .query::<Option<u64>>(&mut c)
        })
        .ok()
        .flatten()
        .unwrap_or(0)
}

fn node(id: &str, redis: &RedisServer) -> Gateway {
    Gateway::start(
        &["--shards", "2"],
        &[
            ("REDIS_URL", redis.url().as_str()),
            ("NODE_ID", id),
            ("RING_SECRET", "cluster-redis-test-secret"),
        ],
    )
}

fn until(what: &str, pred: impl FnMut() -> bool) {
    testkit::until(what, DEADLINE, pred);
}

fn ready(g: &Gateway) -> bool {
    g.get("/readyz").0 == 200
}

/// Next `message` frame (skipping others).
fn next_message(c: &mut Client) -> Value {
    c.recv_type("message")
}

#[test]
fn two_nodes_share_the_resume_log_and_survive_redis_outages() {
    // Persistent (AOF, fsync always): its data survives the outage below.
    let mut redis = RedisServer::persistent();
    let a = node("node-a", &redis);
    let b = node("node-b", &redis);
    until("node a ready", || ready(&a));
    until("node b ready", || ready(&b));

    // alice on A writes to bob, who is offline: Redis assigns bob's offsets.
    let mut alice = a.client("alice");
    for (i, cmid) in ["m1", "m2", "m3"].iter().enumerate() {
        alice.send_msg("bob", cmid, json!({"n": i + 1}));
        let sent = alice.recv_type("sent");
        assert_eq!(sent["clientMsgId"], *cmid);
        assert_eq!(sent["offset"], (i + 1) as u64);
    }
    // A retry of m2 is answered from Redis's dedup memory, nothing appended.
    alice.send_msg("bob", "m2", json!({"n": 2}));
    let dup = alice.recv_type("sent");
    assert_eq!(dup["offset"], 2);

    // bob connects to B: the replay comes from Redis.
    let mut bob = b.client("bob");
    assert_eq!(bob.welcome["offset"], 3);
    for n in 1..=3u64 {
        let m = next_message(&mut bob);
        assert_eq!(m["offset"], n);
        assert_eq!(m["from"], "alice");
        assert_eq!(m["payload"]["n"], n);
    }
    let token = bob.welcome["resumeToken"]
        .as_str()
        .expect("resume token")
        .to_owned();
    bob.send(&json!({"type": "ack", "upTo": 2}));
    until("bob's ack in redis", || acked(&redis, "bob") == 2);
    bob.close();

    // bob resumes on A from an older offset: what he acked on B is not replayed.
    let mut bob = Client::connect(&a.url(&format!("/ws?userId=bob&resume={token}&lastOffset=1")))
        .expect("resume on A");
    assert_eq!(bob.welcome["offset"], 3);
    let m = next_message(&mut bob);
    assert_eq!(m["offset"], 3, "only the unacked message is replayed: {m}");
    // Live delivery on A continues the same sequence.
    alice.send_msg("bob", "m4", json!({"n": 4}));
    assert_eq!(alice.recv_type("sent")["offset"], 4);
    let m = next_message(&mut bob);
    assert_eq!(m["offset"], 4);
    assert_eq!(m["payload"]["n"], 4);

    // Redis goes away: readiness, handshakes and sends say so.
    redis.kill();
    until("node a not ready", || !ready(&a));
    match Client::connect(&a.url("/ws?userId=carol")) {
        Err(ConnectError::Status(503, retry)) => {
            assert!(retry.is_some(), "503 carries Retry-After")
        }
        Err(e) => panic!("expected 503 while redis is down, got {e:?}"),
        Ok(_) => panic!("expected 503 while redis is down, got a connection"),
    }
    alice.send_msg("bob", "m5", json!({"n": 5}));
    let err = alice.recv_type("error");
    assert_eq!(err["code"], "unavailable");
    assert_eq!(err["clientMsgId"], "m5");
    let text = a.metrics_until(|t| {
        metric_sum(t, "rtc_socket_drops_total", "store_unavailable") >= 1.0
            && metric_sum(t, "rtc_socket_handshakes_total", "store_unavailable") >= 1.0
    });
    assert!(metric_sum(&text, "rtc_socket_drops_total", "store_unavailable") >= 1.0);
    assert!(metric_sum(&text, "rtc_socket_handshakes_total", "store_unavailable") >= 1.0);

    // Redis is back (same data: AOF): everything works again by itself.
    redis.spawn();
    until("node a ready again", || ready(&a));
    until("node b ready again", || ready(&b));
    alice.send_msg("bob", "m5", json!({"n": 5}));
    let sent = alice.recv_type("sent");
    assert_eq!(sent["offset"], 5);
    let m = next_message(&mut bob);
    assert_eq!(m["offset"], 5);
    // New handshakes work again (on A: live delivery between nodes is the relay's job).
    let mut carol = a.client("carol");
    alice.send_msg("carol", "c1", json!("hi"));
    assert_eq!(alice.recv_type("sent")["offset"], 1);
    let m = next_message(&mut carol);
    assert_eq!(m["payload"], "hi");
    // And on B, whose replay reads the log A committed to.
    carol.close();
    let mut carol = b.client("carol");
    assert_eq!(carol.welcome["offset"], 1);
    assert_eq!(next_message(&mut carol)["payload"], "hi");
}
