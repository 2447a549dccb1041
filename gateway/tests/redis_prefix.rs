//! `REDIS_PREFIX` / `--redis-prefix`: two gateways on one Redis under different prefixes
//! are two clusters — neither sees the other's resume logs or sessions — while a node with
//! the same prefix does. Starts its own `redis-server`; every child is killed on drop.

mod support;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::Gateway;

const DEADLINE: Duration = Duration::from_secs(60);

struct Redis {
    child: Option<Child>,
    port: u16,
}

impl Redis {
    fn start() -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let bin = std::env::var("RTC_REDIS_BIN").unwrap_or_else(|_| "redis-server".to_owned());
        let child = Command::new(bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (apt-get install redis-server)");
        let r = Redis {
            child: Some(child),
            port,
        };
        let deadline = Instant::now() + DEADLINE;
        while r.keys("*").is_none() {
            assert!(Instant::now() < deadline, "redis-server did not answer");
            std::thread::sleep(Duration::from_millis(20));
        }
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// `KEYS pattern`, sorted (`None` while Redis does not answer).
    fn keys(&self, pattern: &str) -> Option<Vec<String>> {
        let mut c = redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
            .ok()?;
        let mut keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query(&mut c).ok()?;
        keys.sort();
        Some(keys)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A standalone node on `redis`; `prefix` as an environment variable or a flag.
fn node(redis: &Redis, prefix: &str, as_flag: bool) -> Gateway {
    let url = redis.url();
    let mut env = vec![
        ("REDIS_URL", url.as_str()),
        ("RING_SECRET", "redis-prefix-test-secret"),
    ];
    let mut args = vec!["--shards", "1"];
    if as_flag {
        args.extend(["--redis-prefix", prefix]);
    } else {
        env.push(("REDIS_PREFIX", prefix));
    }
    let g = Gateway::start(&args, &env);
    let deadline = Instant::now() + DEADLINE;
    while g.get("/readyz").0 != 200 {
        assert!(Instant::now() < deadline, "node on {prefix} not ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    g
}

#[test]
fn two_prefixes_on_one_redis_do_not_see_each_others_logs_or_sessions() {
    let redis = Redis::start();
    let blue = node(&redis, "blue", false);
    let green = node(&redis, "green", true);

    // alice on blue writes to bob (offline): blue's Redis log for bob gets offsets 1..=3.
    let mut alice = blue.client("alice");
    for n in 1..=3u64 {
        alice.send_msg("bob", &format!("m{n}"), json!({"n": n}));
        assert_eq!(alice.recv_type("sent")["offset"], n);
    }
    let keys = redis.keys("*").expect("redis answers");
    assert!(
        keys.iter().any(|k| k == "blue:{bob}:log") && keys.iter().any(|k| k == "blue:{alice}:sess"),
        "{keys:?}"
    );
    assert!(
        keys.iter().all(|k| k.starts_with("blue:")),
        "only blue's keys so far (none under the default `rtc`): {keys:?}"
    );

    // bob on green: green's log for bob is empty — nothing replayed, his offsets start anew.
    let mut bob = green.client("bob");
    assert_eq!(bob.welcome["offset"], 0, "{}", bob.welcome);
    let mut carol = green.client("carol");
    carol.send_msg("bob", "c1", json!("from green"));
    assert_eq!(carol.recv_type("sent")["offset"], 1);
    let m = bob.recv_type("message");
    assert_eq!(
        (m["from"].as_str(), m["offset"].as_u64()),
        (Some("carol"), Some(1))
    );
    bob.close();
    let keys = redis.keys("green:*").expect("redis answers");
    assert!(
        keys.iter().any(|k| k == "green:{bob}:log")
            && keys.iter().any(|k| k == "green:{carol}:sess"),
        "{keys:?}"
    );

    // A second blue node shares blue's log: bob there gets alice's three messages, and
    // nothing from green.
    let blue2 = node(&redis, "blue", true);
    let mut bob = blue2.client("bob");
    assert_eq!(bob.welcome["offset"], 3, "{}", bob.welcome);
    for n in 1..=3u64 {
        let m = bob.recv_type("message");
        assert_eq!(
            (m["from"].as_str(), m["offset"].as_u64()),
            (Some("alice"), Some(n))
        );
    }
    let blue_keys = redis.keys("blue:*").expect("redis answers");
    assert!(
        !blue_keys.iter().any(|k| k.contains("carol")),
        "{blue_keys:?}"
    );
}
