//! Two standalone gateway nodes sharing one Redis (`REDIS_URL`): the Redis resume log is the
//! commit point, so a message sent on node A to an offline user is delivered when that user
//! connects to node B, acks made on B hold when the user resumes on A, and Redis going away
//! turns handshakes into 503 + Retry-After and sends into `error unavailable` until it is
//! back. Starts its own `redis-server` (it kills it); every child is killed on drop.

mod support;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{metric_sum, Client, ConnectError, Gateway};

const DEADLINE: Duration = Duration::from_secs(60);

/// A `redis-server` child on a loopback port, killed on drop.
struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    fn start() -> Self {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("addr").port()
        };
        let dir = std::env::temp_dir().join(format!("rtc-cluster-redis-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut s = Self {
            child: None,
            port,
            dir,
        };
        s.spawn();
        s
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn spawn(&mut self) {
        let bin = std::env::var("RTC_REDIS_BIN").unwrap_or_else(|_| "redis-server".to_owned());
        let child = Command::new(bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + DEADLINE;
        while !self.ping() {
            assert!(Instant::now() < deadline, "redis-server did not answer");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ping(&self) -> bool {
        self.conn()
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
    }

    fn conn(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
    }

    /// The user's cumulative acked offset in Redis.
    fn acked(&self, user: &str) -> u64 {
        self.conn()
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

    /// SIGKILL, like a crash.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
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

fn until(what: &str, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
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
    let mut redis = RedisServer::start();
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
    until("bob's ack in redis", || redis.acked("bob") == 2);
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
