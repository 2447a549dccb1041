//! The HTTP API of a real `control serve` process on a loopback port.

mod support;

use std::time::Duration;

use rtc_protocol::token::{verify_connect_for_user, TokenKeys};
use rtc_ring::Ring;
use serde_json::{json, Value};
use support::{eventually, heartbeat, now_ms, ControlProc, FakeNode, Http};

const SECRET: &str = "test-secret-0123456789";
const OLD_SECRET: &str = "old-secret-9876543210";

async fn ring_of(h: &Http) -> Ring {
    let v = h.get("/v1/ring").await;
    Ring::from_json(&v.to_string()).expect("ring snapshot parses")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_join_by_heartbeat_go_stale_and_leave() {
    let c = ControlProc::start(&[("HEARTBEAT_GRACE_SEC", "3")]).await;
    let h = Http::new(&c.url);
    assert_eq!(h.version().await, 0);

    let (s, v) = h
        .call(
            "POST",
            "/v1/nodes/heartbeat",
            Some(heartbeat("gw-1", "ws://gw-1:9000/ws", 2, 7)),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["accepted"], true);
    assert_eq!(v["ringVersion"], 1);
    let ring = ring_of(&h).await;
    assert_eq!(ring.node("gw-1").map(|n| n.weight), Some(2));

    // A heartbeat never changes a known node's weight; the operator's change wins.
    let (s, _) = h
        .call(
            "PUT",
            "/v1/nodes/gw-1/weight",
            Some(json!({"weight": 5})),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let (s, v) = h
        .call(
            "POST",
            "/v1/nodes/heartbeat",
            Some(heartbeat("gw-1", "ws://gw-1:9000/ws", 2, 7)),
            None,
        )
        .await;
    assert_eq!((s, v["ringVersion"].as_u64()), (200, Some(2)));
    assert_eq!(ring_of(&h).await.node("gw-1").map(|n| n.weight), Some(5));

    // An operator-added node stays without heartbeats, shown as such.
    assert_eq!(h.add_node("op-1", 1, "ws://op-1:9000/ws").await, 201);
    let nodes = h.get("/v1/nodes").await;
    let op = nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "op-1")
        .cloned()
        .unwrap();
    assert_eq!(op["health"], "no heartbeat");
    let gw = nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "gw-1")
        .cloned()
        .unwrap();
    assert_eq!(gw["health"], "live");
    assert_eq!(gw["report"]["activeConn"], 7);

    // gw-1 goes silent: removed with a new version; op-1 stays.
    let v = eventually(Duration::from_secs(20), "gw-1 expires", || async {
        let r = ring_of(&h).await;
        (r.node("gw-1").is_none()).then_some(r)
    })
    .await;
    assert_eq!(v.version(), 4);
    assert!(v.node("op-1").is_some());
    let metrics = h.text("/metrics").await;
    assert!(
        metrics.contains("rtc_lb_nodes_expired_total 1"),
        "{metrics}"
    );
    let hist = h.get("/v1/ring/history").await;
    let causes: Vec<&str> = hist["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["cause"].as_str().unwrap())
        .collect();
    assert_eq!(causes, ["heartbeat", "operator", "operator", "expiry"]);

    // An operator removal is not undone by the node's next heartbeat.
    let (s, _) = h.call("DELETE", "/v1/nodes/op-1", None, None).await;
    assert_eq!(s, 200);
    let (s, v) = h
        .call(
            "POST",
            "/v1/nodes/heartbeat",
            Some(heartbeat("op-1", "ws://op-1:9000/ws", 1, 0)),
            None,
        )
        .await;
    assert_eq!((s, &v["accepted"]), (200, &json!(false)), "{v}");
    assert!(ring_of(&h).await.node("op-1").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_and_connect_agree_with_the_ring_and_tokens_verify() {
    let c = ControlProc::start(&[
        ("RING_SECRET", SECRET),
        ("RING_SECRET_PREVIOUS", OLD_SECRET),
    ])
    .await;
    let h = Http::new(&c.url);
    let _a = FakeNode::start(&c.url, "gw-a", 1, 0, None);
    let _b = FakeNode::start(&c.url, "gw-b", 3, 0, None);
    eventually(Duration::from_secs(20), "both nodes joined", || async {
        (ring_of(&h).await.nodes().len() == 2).then_some(())
    })
    .await;
    let ring = ring_of(&h).await;
    let keys = TokenKeys::new(SECRET.as_bytes(), None);
    let mut owners = std::collections::HashSet::new();
    for i in 0..40 {
        let user = format!("user-{i}");
        let owner = ring.owner(&user).expect("owner");
        owners.insert(owner.id.clone());
        let r = h.get(&format!("/v1/resolve?userId={user}")).await;
        assert_eq!(r["nodeId"], owner.id.as_str());
        assert_eq!(r["publicWsUrl"], owner.url.as_str());
        assert_eq!(r["version"], ring.version());
        let c = h.get(&format!("/v1/connect?userId={user}")).await;
        let token = c["token"].as_str().unwrap();
        assert_eq!(c["wsUrl"], format!("{}?token={token}", owner.url));
        assert_eq!(c["ringVersion"], ring.version());
        let claims =
            verify_connect_for_user(&keys, token, now_ms() / 1000, &user).expect("token verifies");
        assert_eq!(claims.node, owner.id);
        assert_eq!(claims.ring_version, ring.version());
    }
    assert_eq!(owners.len(), 2, "40 users spread over both nodes");
    // A node still on the old secret (rotation) does not accept tokens it cannot know;
    // a node with both keys accepts tokens from the new one.
    let rotated = TokenKeys::new(SECRET.as_bytes(), Some(OLD_SECRET.as_bytes()));
    let c = h.get("/v1/connect?userId=zed").await;
    assert!(verify_connect_for_user(
        &rotated,
        c["token"].as_str().unwrap(),
        now_ms() / 1000,
        "zed"
    )
    .is_ok());
    let stale = TokenKeys::new(OLD_SECRET.as_bytes(), None);
    assert!(
        verify_connect_for_user(&stale, c["token"].as_str().unwrap(), now_ms() / 1000, "zed")
            .is_err()
    );

    // Draining the owner moves the user; resolve follows the ring.
    let owner = h.get("/v1/resolve?userId=zed").await["nodeId"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, _) = h
        .call("POST", &format!("/v1/nodes/{owner}/drain"), None, None)
        .await;
    assert_eq!(s, 200);
    let moved = h.get("/v1/resolve?userId=zed").await;
    assert_ne!(moved["nodeId"], owner.as_str());
    let (s, _) = h
        .call("POST", &format!("/v1/nodes/{owner}/activate"), None, None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        h.get("/v1/resolve?userId=zed").await["nodeId"],
        owner.as_str()
    );

    // Bad user ids are refused per protocol.
    for bad in ["", "a%20b", "%C3%A9"] {
        let (s, v) = h
            .call("GET", &format!("/v1/resolve?userId={bad}"), None, None)
            .await;
        assert_eq!(
            (s, v["error"].as_str()),
            (400, Some("bad_user")),
            "{bad}: {v}"
        );
    }
    let long = "u".repeat(129);
    let (s, _) = h
        .call("GET", &format!("/v1/connect?userId={long}"), None, None)
        .await;
    assert_eq!(s, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_json_and_changes_nothing() {
    let c = ControlProc::start(&[]).await;
    let h = Http::new(&c.url);
    assert_eq!(h.add_node("n1", 1, "ws://n1/ws").await, 201);
    let before = h.get("/v1/ring").await;

    let mut future = heartbeat("n2", "ws://n2/ws", 1, 0);
    future["ts"] = json!(now_ms() + 3_600_000);
    let mut zero = heartbeat("n3", "ws://n3/ws", 1, 0);
    zero["weight"] = json!(0);
    let cases: Vec<(&str, String, Option<Value>, u16, &str)> = vec![
        (
            "POST",
            "/v1/nodes".into(),
            Some(Value::String("{not json".into())),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/nodes/heartbeat".into(),
            Some(Value::String("[]".into())),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/nodes/heartbeat".into(),
            Some(future),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/nodes/heartbeat".into(),
            Some(zero),
            400,
            "bad_weight",
        ),
        (
            "POST",
            "/v1/nodes".into(),
            Some(json!({"id": "n9", "weight": 0, "url": "ws://n9/ws"})),
            400,
            "bad_weight",
        ),
        (
            "POST",
            "/v1/nodes".into(),
            Some(json!({"id": "n9", "weight": -3, "url": "ws://n9/ws"})),
            400,
            "bad_weight",
        ),
        (
            "POST",
            "/v1/nodes".into(),
            Some(json!({"id": "n9", "weight": 1, "url": "http://n9"})),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/nodes".into(),
            Some(json!({"id": "n1", "weight": 1, "url": "ws://n1/ws"})),
            409,
            "duplicate_node",
        ),
        (
            "PUT",
            "/v1/nodes/n1/weight".into(),
            Some(json!({"weight": 0})),
            400,
            "bad_weight",
        ),
        (
            "PUT",
            "/v1/nodes/n1/weight".into(),
            Some(json!({"weight": -1})),
            400,
            "bad_weight",
        ),
        (
            "PUT",
            "/v1/nodes/nope/weight".into(),
            Some(json!({"weight": 2})),
            404,
            "unknown_node",
        ),
        (
            "POST",
            "/v1/nodes/nope/drain".into(),
            None,
            404,
            "unknown_node",
        ),
        (
            "POST",
            "/v1/nodes/nope/activate".into(),
            None,
            404,
            "unknown_node",
        ),
        ("DELETE", "/v1/nodes/nope".into(), None, 404, "unknown_node"),
        (
            "GET",
            "/v1/ring?since=x&wait=1".into(),
            None,
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/nodes".into(),
            Some(Value::String(format!(
                "{{\"id\":\"{}\"}}",
                "x".repeat(100_000)
            ))),
            413,
            "too_large",
        ),
        ("GET", "/v1/nope".into(), None, 404, "not_found"),
        ("DELETE", "/v1/ring".into(), None, 405, "method_not_allowed"),
    ];
    for (m, path, body, status, code) in cases {
        let (s, v) = h.call(m, &path, body.clone(), None).await;
        assert_eq!(s, status, "{m} {path} {body:?}: {v}");
        assert_eq!(v["error"], code, "{m} {path}: {v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
    assert_eq!(h.get("/v1/ring").await, before, "nothing changed");
    let (s, v) = h.call("GET", "/v1/resolve?userId=x", None, None).await;
    assert_eq!((s, v["nodeId"].as_str()), (200, Some("n1")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_guard_connect_writes_and_heartbeats() {
    let c = ControlProc::start(&[
        ("CONNECT_API_KEYS", "app-key-1,app-key-2"),
        ("ADMIN_TOKEN", "admin-t"),
        ("NODE_TOKEN", "node-t"),
        ("RING_SECRET", SECRET),
    ])
    .await;
    let h = Http::new(&c.url);
    let add = json!({"id": "n1", "weight": 1, "url": "ws://n1/ws"});
    let (s, v) = h.call("POST", "/v1/nodes", Some(add.clone()), None).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("unauthorized")));
    let (s, _) = h
        .call("POST", "/v1/nodes", Some(add.clone()), Some("wrong"))
        .await;
    assert_eq!(s, 403);
    assert_eq!(h.version().await, 0);
    let (s, _) = h
        .call("POST", "/v1/nodes", Some(add), Some("admin-t"))
        .await;
    assert_eq!(s, 201);

    let hb = heartbeat("n2", "ws://n2/ws", 1, 0);
    let (s, _) = h
        .call("POST", "/v1/nodes/heartbeat", Some(hb.clone()), None)
        .await;
    assert_eq!(s, 401);
    let (s, _) = h
        .call(
            "POST",
            "/v1/nodes/heartbeat",
            Some(hb.clone()),
            Some("admin-t"),
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = h
        .call("POST", "/v1/nodes/heartbeat", Some(hb), Some("node-t"))
        .await;
    assert_eq!(s, 200);

    let (s, _) = h.call("GET", "/v1/connect?userId=u1", None, None).await;
    assert_eq!(s, 401);
    let (s, _) = h
        .call("GET", "/v1/connect?userId=u1", None, Some("nope"))
        .await;
    assert_eq!(s, 403);
    let (s, v) = h
        .call("GET", "/v1/connect?userId=u1", None, Some("app-key-2"))
        .await;
    assert_eq!(s, 200, "{v}");
    // Reads stay open.
    let (s, _) = h.call("GET", "/v1/resolve?userId=u1", None, None).await;
    assert_eq!(s, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_answers_when_the_version_passes() {
    let c = ControlProc::start(&[]).await;
    let h = Http::new(&c.url);
    // Nothing changes: the wait ends with the same version.
    let v = h.get("/v1/ring?since=0&wait=1").await;
    assert_eq!(v["version"], 0);
    // Already past: immediate.
    assert_eq!(h.add_node("n1", 1, "ws://n1/ws").await, 201);
    assert_eq!(h.get("/v1/ring?since=0&wait=30").await["version"], 1);
    // Waiting, then a change arrives.
    let waiter = {
        let h = h.clone();
        tokio::spawn(async move { h.get("/v1/ring?since=1&wait=30").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiter.is_finished(),
        "the long-poll waits for a new version"
    );
    let (s, _) = h.call("POST", "/v1/nodes/n1/drain", None, None).await;
    assert_eq!(s, 200);
    let v = tokio::time::timeout(Duration::from_secs(20), waiter)
        .await
        .expect("long-poll answered")
        .expect("task");
    assert_eq!(v["version"], 2);
    assert_eq!(v["nodes"][0]["state"], "draining");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_decision_follows_load_and_is_a_metric() {
    let c = ControlProc::start(&[
        ("SCALING_INTERVAL_SEC", "1"),
        ("MIN_NODES", "1"),
        ("MAX_NODES", "10"),
        ("MAX_SCALE_STEP", "3"),
    ])
    .await;
    let h = Http::new(&c.url);
    // 2 nodes × 40,000 connections: r_conn = ceil(0.4·80000/5000) = 7 → +3 per step → 5.
    let _a = FakeNode::start(&c.url, "gw-a", 1, 40_000, None);
    let _b = FakeNode::start(&c.url, "gw-b", 1, 40_000, None);
    let d = eventually(Duration::from_secs(30), "a scale-out decision", || async {
        let v = h.get("/v1/scale").await;
        let d = v["decision"].clone();
        (d["kind"] == "scale_out" && d["inputs"]["current"] == 2).then_some(v)
    })
    .await;
    assert_eq!(d["decision"]["desired"], 5, "{d}");
    assert_eq!(d["decision"]["terms"]["rConn"], 7);
    assert_eq!(d["params"]["alpha"], 0.4);
    let m = h.text("/metrics").await;
    assert!(m.contains("rtc_lb_desired_replicas 5"), "{m}");
    assert!(
        !m.contains("rtc_lb_scaling_decisions_total{decision=\"scale_out\"} 0"),
        "{m}"
    );
    // The heartbeat answer carries the decision too.
    let (_, v) = h
        .call(
            "POST",
            "/v1/nodes/heartbeat",
            Some(heartbeat("gw-a", "ws://gw-a.test:9000/ws", 1, 40_000)),
            None,
        )
        .await;
    assert_eq!(v["maybeScale"]["target"], 5, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_dashboard_are_served() {
    let c = ControlProc::start(&[]).await;
    let h = Http::new(&c.url);
    let v = h.get("/healthz").await;
    assert_eq!(
        (v["status"].as_str(), v["leader"].as_bool()),
        (Some("ok"), Some(true))
    );
    let m = h.text("/metrics").await;
    for name in [
        "rtc_lb_ring_nodes",
        "rtc_lb_ring_vnodes",
        "rtc_lb_ring_version",
        "rtc_lb_scaling_decisions_total",
        "rtc_lb_desired_replicas",
        "rtc_lb_http_requests_total",
        "rtc_lb_http_request_duration_seconds",
    ] {
        assert!(
            m.contains(&format!("# TYPE {name} ")),
            "{name} missing:\n{m}"
        );
    }
    let page = h.text("/").await;
    assert!(page.contains("<title>rtc control</title>"));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no external URL"
    );
}
