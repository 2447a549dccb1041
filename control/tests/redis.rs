//! State in Redis: a restarted control keeps the ring and never reuses a version; with two
//! instances one leads, the other answers reads and forwards writes, and takes over within
//! the lease TTL after the leader is killed with SIGKILL.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{eventually, heartbeat, unique, ControlProc, Http, Redis};

async fn is_leader(h: &Http) -> bool {
    h.get("/healthz").await["leader"].as_bool() == Some(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_the_ring_and_never_reuses_a_version() {
    let redis = Redis::dedicated();
    let prefix = unique("restart");
    let env = [
        ("REDIS_URL", redis.url.as_str()),
        ("REDIS_PREFIX", prefix.as_str()),
        ("HEARTBEAT_GRACE_SEC", "5"),
        ("LEADER_LEASE_MS", "1000"),
    ];
    let mut a = ControlProc::start(&env).await;
    let h = Http::new(&a.url);
    eventually(
        Duration::from_secs(20),
        "the only instance leads",
        || async { is_leader(&h).await.then_some(()) },
    )
    .await;
    for (id, w) in [("op-1", 1), ("op-2", 4)] {
        assert_eq!(h.add_node(id, w, &format!("ws://{id}/ws")).await, 201);
    }
    let (s, _) = h
        .call(
            "POST",
            "/v1/nodes/heartbeat",
            Some(heartbeat("hb-1", "ws://hb-1/ws", 1, 0)),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = h.call("POST", "/v1/nodes/op-1/drain", None, None).await;
    assert_eq!(s, 200);
    let before = h.get("/v1/ring").await;
    assert_eq!(before["version"], 4);

    // Crash, restart on the same address.
    a.child.kill9();
    let b = ControlProc::start_on(a.port, &env).await;
    let h = Http::new(&b.url);
    assert_eq!(
        h.get("/v1/ring").await,
        before,
        "same ring, same version after restart"
    );
    let hist = h.get("/v1/ring/history").await;
    let causes: Vec<&str> = hist["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["cause"].as_str())
        .collect();
    assert_eq!(
        causes,
        ["operator", "operator", "heartbeat", "operator"],
        "history survives"
    );
    eventually(
        Duration::from_secs(20),
        "the restarted instance leads",
        || async { is_leader(&h).await.then_some(()) },
    )
    .await;
    let (s, v) = h
        .call(
            "PUT",
            "/v1/nodes/op-2/weight",
            Some(json!({"weight": 2})),
            None,
        )
        .await;
    assert_eq!((s, v["version"].as_u64()), (200, Some(5)), "{v}");
    // The restarted control still knows hb-1 joined by heartbeat: silent, it expires
    // (a new version), while operator nodes stay.
    let r = eventually(
        Duration::from_secs(30),
        "hb-1 expires after restart",
        || async {
            let r = h.get("/v1/ring").await;
            let ids: Vec<String> = r["nodes"]
                .as_array()?
                .iter()
                .filter_map(|n| n["id"].as_str().map(str::to_owned))
                .collect();
            (!ids.iter().any(|i| i == "hb-1")).then_some(r)
        },
    )
    .await;
    assert_eq!(r["version"], 6);
    assert_eq!(r["nodes"].as_array().map(Vec::len), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_forwards_and_a_follower_takes_over_after_kill9() {
    let redis = Redis::dedicated();
    let prefix = unique("takeover");
    let env = [
        ("REDIS_URL", redis.url.as_str()),
        ("REDIS_PREFIX", prefix.as_str()),
        ("LEADER_LEASE_MS", "1500"),
        ("HEARTBEAT_GRACE_SEC", "60"),
    ];
    let a = ControlProc::start(&env).await;
    let b = ControlProc::start(&env).await;
    let (ha, hb) = (Http::new(&a.url), Http::new(&b.url));
    // (leader pid, leader client, follower client)
    let (leader, hl, hf) = eventually(Duration::from_secs(20), "exactly one leader", || async {
        match (is_leader(&ha).await, is_leader(&hb).await) {
            (true, false) => Some((a.child.pid(), ha.clone(), hb.clone())),
            (false, true) => Some((b.child.pid(), hb.clone(), ha.clone())),
            _ => None,
        }
    })
    .await;

    // A write sent to the follower is forwarded to the leader.
    let (s, v) = hf
        .call(
            "POST",
            "/v1/nodes",
            Some(json!({"id": "n1", "weight": 1, "url": "ws://n1/ws"})),
            None,
        )
        .await;
    assert_eq!((s, v["version"].as_u64()), (201, Some(1)), "{v}");
    let (s, v) = hf
        .call(
            "POST",
            "/v1/nodes/heartbeat",
            Some(heartbeat("n2", "ws://n2/ws", 2, 5)),
            None,
        )
        .await;
    assert_eq!((s, v["ringVersion"].as_u64()), (200, Some(2)), "{v}");
    // The follower serves reads and catches up with the leader's ring.
    eventually(
        Duration::from_secs(10),
        "the follower sees version 2",
        || async { (hf.version().await == 2).then_some(()) },
    )
    .await;
    assert_eq!(hf.get("/v1/ring").await, hl.get("/v1/ring").await);
    // A long-poll on the follower answers when a write lands at the leader.
    let waiter = {
        let hf = hf.clone();
        tokio::spawn(async move { hf.get("/v1/ring?since=2&wait=30").await })
    };
    let (s, _) = hl.call("POST", "/v1/nodes/n1/drain", None, None).await;
    assert_eq!(s, 200);
    let v = tokio::time::timeout(Duration::from_secs(20), waiter)
        .await
        .expect("answered")
        .expect("task");
    assert_eq!(v["version"], 3);
    // Any instance's dashboard shows the same history.
    let versions = |v: serde_json::Value| -> Vec<u64> {
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["version"].as_u64())
            .collect()
    };
    assert_eq!(versions(hf.get("/v1/ring/history").await), [1, 2, 3]);
    assert_eq!(versions(hl.get("/v1/ring/history").await), [1, 2, 3]);
    // Node reports and scaling live at the leader; a follower shows the leader's.
    let nodes = hf.get("/v1/nodes").await;
    let n2 = nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "n2")
        .cloned()
        .expect("n2 listed");
    assert_eq!(n2["report"]["activeConn"], 5, "{nodes}");
    assert!(!hf.get("/v1/scale").await["decision"].is_null());

    // kill -9 the leader: the follower takes over within the lease TTL (generous margin for
    // a loaded machine) and versions keep increasing.
    let killed_at = Instant::now();
    kill9(leader);
    eventually(
        Duration::from_secs(20),
        "the follower takes over",
        || async { is_leader(&hf).await.then_some(()) },
    )
    .await;
    let took = killed_at.elapsed();
    let (s, v) = hf.call("POST", "/v1/nodes/n1/activate", None, None).await;
    assert_eq!((s, v["version"].as_u64()), (200, Some(4)), "{v}");
    assert!(took < Duration::from_secs(20), "took over after {took:?}");
    let ring = hf.get("/v1/ring").await;
    assert_eq!(ring["nodes"].as_array().map(Vec::len), Some(2));
}

/// SIGKILL by pid (the test's guard still reaps the process when dropped).
fn kill9(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -9 {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stored_record_is_the_ring_snapshot_and_its_version() {
    // The shared test Redis when scripts/test provides one; keys are under a unique prefix.
    let redis = Redis::any();
    let prefix = unique("record");
    let c = ControlProc::start(&[
        ("REDIS_URL", redis.url.as_str()),
        ("REDIS_PREFIX", prefix.as_str()),
    ])
    .await;
    let h = Http::new(&c.url);
    eventually(Duration::from_secs(20), "leading", || async {
        is_leader(&h).await.then_some(())
    })
    .await;
    let (s, _) = h
        .call(
            "POST",
            "/v1/nodes/heartbeat",
            Some(heartbeat("hb-9", "ws://hb-9/ws", 3, 1)),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(h.add_node("op-9", 1, "ws://op-9/ws").await, 201);

    let client = redis::Client::open(redis.url.as_str()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let (version, ring, origins): (u64, String, String) = redis::cmd("HMGET")
        .arg(format!("{prefix}:state"))
        .arg("version")
        .arg("ring")
        .arg("origins")
        .query_async(&mut conn)
        .await
        .expect("stored state");
    assert_eq!(version, 2);
    let stored = rtc_ring::Ring::from_json(&ring).expect("stored ring parses");
    assert_eq!(stored.version(), 2);
    assert_eq!(stored.node("hb-9").map(|n| n.weight), Some(3));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&origins).unwrap()["heartbeatJoined"],
        json!(["hb-9"])
    );
    let holder: String = redis::cmd("GET")
        .arg(format!("{prefix}:leader"))
        .query_async(&mut conn)
        .await
        .expect("lease");
    assert!(holder.ends_with(&format!("|{}", c.url)), "{holder}");
    // Clean up the shared Redis.
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}:state"))
        .arg(format!("{prefix}:leader"))
        .arg(format!("{prefix}:history"))
        .query_async(&mut conn)
        .await
        .expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_refuses_writes_keeps_reads_and_recovers() {
    let mut redis = Redis::dedicated();
    let port: u16 = redis
        .url
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port in the Redis URL");
    let prefix = unique("outage");
    let env = [
        ("REDIS_URL", redis.url.as_str()),
        ("REDIS_PREFIX", prefix.as_str()),
        ("LEADER_LEASE_MS", "1000"),
    ];
    let c = ControlProc::start(&env).await;
    let h = Http::new(&c.url);
    eventually(Duration::from_secs(20), "leading", || async {
        is_leader(&h).await.then_some(())
    })
    .await;
    let add = |id: &str| json!({"id": id, "weight": 1, "url": format!("ws://{id}/ws")});
    let (s, _) = h.call("POST", "/v1/nodes", Some(add("n1")), None).await;
    assert_eq!(s, 201);

    // Redis dies: writes are refused with a JSON 503, nothing changes, reads keep working.
    if let Some(mut server) = redis.server.take() {
        server.kill();
    }
    let (s, v) = eventually(Duration::from_secs(30), "writes refused", || async {
        let (s, v) = h.call("POST", "/v1/nodes", Some(add("n2")), None).await;
        (s == 503).then_some((s, v))
    })
    .await;
    assert!(
        ["not_leader", "store_unavailable"].contains(&v["error"].as_str().unwrap_or("")),
        "{s} {v}"
    );
    assert_eq!(h.version().await, 1);
    assert_eq!(h.get("/v1/resolve?userId=u").await["nodeId"], "n1");

    // Redis comes back (empty: no persistence in this test): the instance leads again and
    // continues from the version it holds, never below it.
    let _back = Redis::dedicated_on(port);
    let v = eventually(Duration::from_secs(30), "writes accepted again", || async {
        let (s, v) = h.call("POST", "/v1/nodes", Some(add("n2")), None).await;
        (s == 201).then_some(v)
    })
    .await;
    assert_eq!(v["version"], 2, "{v}");
}
