//! Cluster membership and placement against the REAL `control` binary (built on first use by
//! `support::control_bin`, or named by `CONTROL_BIN`): two gateway nodes join by heartbeat,
//! a user at the wrong node is redirected to its owner (4003), ring changes reach the nodes,
//! moved users are drained at the configured pace, a ring that gives users back stops their
//! drain, and SIGTERM asks control to drain the node.
//!
//! Sized for a loaded 2-core machine: 2 shards per node, heartbeats every 0.5 s, at most a
//! few dozen users, deadlines of many seconds; every child is killed on drop.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{metric_sum, Client, Control, Gateway};

/// A generous deadline for anything the cluster does on its own (join, apply a ring).
const SETTLE: Duration = Duration::from_secs(10);

/// Starts node `id` of the cluster at `control` with 0.5 s heartbeats.
fn node(control: &Control, id: &str, env: &[(&str, &str)]) -> Gateway {
    let mut all = vec![
        ("LOAD_BALANCER_URL", control.url.as_str()),
        ("NODE_ID", id),
        ("HEARTBEAT_INTERVAL_SEC", "0.5"),
    ];
    all.extend_from_slice(env);
    Gateway::start(&["--shards", "2"], &all)
}

/// Waits until control lists every id live with a report, and every node serves under
/// control's ring version. Returns `/v1/nodes`.
fn joined(control: &Control, nodes: &[(&str, &Gateway)]) -> Value {
    let ids: Vec<&str> = nodes.iter().map(|(id, _)| *id).collect();
    let v = control.until("/v1/nodes", SETTLE, |v| {
        ids.iter().all(|id| {
            v["nodes"].as_array().is_some_and(|ns| {
                ns.iter()
                    .any(|n| n["id"] == *id && n["health"] == "live" && n["report"].is_object())
            })
        })
    });
    for (_, gw) in nodes {
        applied(control, gw);
    }
    v
}

/// Waits (< 10 s) until `gw` places users under control's current ring version.
fn applied(control: &Control, gw: &Gateway) {
    let want = control.ring().version() as f64;
    let started = Instant::now();
    let text = gw.metrics_until(|t| metric_sum(t, "rtc_socket_ring_version", "") >= want);
    assert!(
        metric_sum(&text, "rtc_socket_ring_version", "") >= want,
        "ring version {want} not applied: {text}"
    );
    assert!(started.elapsed() < SETTLE, "ring applied too late");
}

/// `count` user ids owned by `owner` under `ring`.
fn users_of(ring: &rtc_ring::Ring, owner: &str, count: usize, tag: &str) -> Vec<String> {
    (0..100_000)
        .map(|i| format!("{tag}{i}"))
        .filter(|u| ring.owner(u).is_some_and(|n| n.id == owner))
        .take(count)
        .collect()
}

fn node_view<'a>(nodes: &'a Value, id: &str) -> &'a Value {
    nodes["nodes"]
        .as_array()
        .and_then(|ns| ns.iter().find(|n| n["id"] == id))
        .unwrap_or_else(|| panic!("{id} not in {nodes}"))
}

#[test]
fn nodes_join_by_heartbeat_with_live_figures_and_follow_ring_changes() {
    let control = Control::start(&[]);
    let a = node(&control, "node-a", &[("NODE_WEIGHT", "2")]);
    let b = node(&control, "node-b", &[]);
    joined(&control, &[("node-a", &a), ("node-b", &b)]);
    let ring = control.ring();
    // A user node-a owns before and after the weight change made below.
    let after = ring
        .apply(&rtc_ring::Diff::SetWeight {
            id: "node-b".into(),
            weight: 3,
        })
        .expect("weight change");
    let user = &users_of(&ring, "node-a", 200, "j")
        .into_iter()
        .find(|u| after.owner(u).is_some_and(|n| n.id == "node-a"))
        .expect("a user that stays");
    let mut c = Client::connect(&a.url(&format!("/ws?userId={user}"))).expect("connect");
    assert_eq!(c.welcome["nodeId"], "node-a");
    assert_eq!(c.welcome["ringVersion"].as_u64(), Some(ring.version()));
    // The next heartbeats carry the connection, the node's memory, URL and ring version.
    let nodes = control.until("/v1/nodes", SETTLE, |v| {
        node_view(v, "node-a")["report"]["activeConn"].as_u64() == Some(1)
    });
    let va = node_view(&nodes, "node-a");
    assert_eq!(va["weight"], 2, "NODE_WEIGHT joins with its weight: {va}");
    assert_eq!(va["url"], a.url("/ws"));
    assert_eq!(va["origin"], "heartbeat");
    let report = &va["report"];
    assert!(
        report["mem"].as_u64().is_some_and(|m| m > 1 << 20),
        "{report}"
    );
    assert!(report["cpu"]
        .as_f64()
        .is_some_and(|c| (0.0..=1.0).contains(&c)));
    assert_eq!(report["ringVersion"].as_u64(), Some(ring.version()));
    assert_eq!(report["draining"], false);
    let vb = node_view(&nodes, "node-b");
    assert_eq!(vb["report"]["activeConn"].as_u64(), Some(0), "{vb}");
    assert_eq!(vb["url"], b.url("/ws"));

    // An operator's weight change is a new version both nodes apply.
    let (status, body) = control.request("PUT", "/v1/nodes/node-b/weight", r#"{"weight":3}"#);
    assert_eq!(status, 200, "{body}");
    applied(&control, &a);
    applied(&control, &b);
    let text = a.metrics_until(|t| metric_sum(t, "rtc_socket_heartbeats_total", "sent") >= 2.0);
    assert!(metric_sum(&text, "rtc_socket_heartbeats_total", "sent") >= 2.0);
    // The user stays served through the change (node-a still owns it).
    c.send(&serde_json::json!({"type": "ping", "nonce": 7}));
    assert_eq!(c.recv_type("pong")["nonce"], 7);
}

#[test]
fn wrong_node_redirects_to_the_owner_with_a_token() {
    let secret = "membership-test-secret-0123456789";
    let control = Control::start(&[("RING_SECRET", secret)]);
    let env = [("RING_SECRET", secret)];
    let a = node(&control, "node-a", &env);
    let b = node(&control, "node-b", &env);
    joined(&control, &[("node-a", &a), ("node-b", &b)]);
    let ring = control.ring();
    let user = &users_of(&ring, "node-b", 1, "r")[0];

    // `?userId=` at the wrong node: upgrade, `redirect` with the owner's URL + token, 4003.
    let mut c = Client::open(&a.url(&format!("/ws?userId={user}")), None).expect("upgrade");
    let frame = c.recv().expect("a redirect frame");
    assert_eq!(frame["type"], "redirect", "{frame}");
    let ws_url = frame["wsUrl"].as_str().expect("wsUrl").to_owned();
    assert!(
        ws_url.starts_with(&format!("{}?token=", b.url("/ws"))),
        "{ws_url}"
    );
    assert_eq!(c.close_code(), Some(4003));
    // Following it reaches the owner.
    let ok = Client::connect(&ws_url).expect("the redirect URL connects");
    assert_eq!(ok.welcome["nodeId"], "node-b");
    assert_eq!(ok.welcome["user"], user.as_str());
    ok.close();

    // A connect token from control for node-b, presented at node-a: the same redirect.
    let placed = control.get_json(&format!("/v1/connect?userId={user}"));
    let token = placed["token"].as_str().expect("token");
    let mut c = Client::open(&a.url(&format!("/ws?token={token}")), None).expect("upgrade");
    let frame = c.recv().expect("a redirect frame");
    assert_eq!(frame["type"], "redirect", "{frame}");
    assert!(frame["wsUrl"]
        .as_str()
        .is_some_and(|u| u.starts_with(&b.url("/ws"))));
    assert_eq!(c.close_code(), Some(4003));
    let text = a.metrics_until(|t| metric_sum(t, "rtc_socket_redirects_total", "") >= 2.0);
    assert!(metric_sum(&text, "rtc_socket_redirects_total", "") >= 2.0);
    assert!(metric_sum(&text, "rtc_socket_server_closes_total", "code=\"4003\"") >= 2.0);
}

/// What one client saw after a ring change.
struct Seen {
    drain_at: Option<Instant>,
    drain: Option<Value>,
    close: Option<u16>,
}

/// Reads every client on its own thread until it closes (or `stop` is set and it is idle).
fn watch(clients: Vec<Client>) -> Vec<std::thread::JoinHandle<Seen>> {
    clients
        .into_iter()
        .map(|mut c| {
            std::thread::spawn(move || {
                let mut seen = Seen {
                    drain_at: None,
                    drain: None,
                    close: None,
                };
                while let Some(f) = c.recv() {
                    if f["type"] == "drain" && seen.drain.is_none() {
                        seen.drain_at = Some(Instant::now());
                        seen.drain = Some(f);
                    }
                }
                seen.close = c.last_close;
                seen
            })
        })
        .collect()
}

#[test]
fn ring_change_drains_moved_users_at_the_configured_pace() {
    const USERS: usize = 40;
    const RATE: f64 = 20.0;
    let control = Control::start(&[]);
    let a = node(
        &control,
        "node-a",
        &[
            ("DRAIN_RATE", "20"),
            ("PING_INTERVAL_SEC", "60"),
            ("IDLE_TIMEOUT_SEC", "120"),
        ],
    );
    let b = node(&control, "node-b", &[]);
    joined(&control, &[("node-a", &a), ("node-b", &b)]);
    let ring = control.ring();
    let users = users_of(&ring, "node-a", USERS, "p");
    let clients: Vec<Client> = users
        .iter()
        .map(|u| Client::connect(&a.url(&format!("/ws?userId={u}"))).expect("connect"))
        .collect();
    let threads = watch(clients);

    // The operator drains node-a in the ring: every one of its users moves to node-b.
    let (status, body) = control.request("POST", "/v1/nodes/node-a/drain", "");
    assert_eq!(status, 200, "{body}");
    applied(&control, &a);
    let seen: Vec<Seen> = threads
        .into_iter()
        .map(|t| t.join().expect("client thread"))
        .collect();
    let mut times = Vec::new();
    for s in &seen {
        let d = s
            .drain
            .as_ref()
            .expect("every moved user gets a drain frame");
        assert_eq!(d["reason"], "rebalance", "{d}");
        assert!(d["resumeToken"].as_str().is_some_and(|t| !t.is_empty()));
        assert_eq!(s.close, Some(4007));
        times.push(s.drain_at.expect("time"));
    }
    let first = *times.iter().min().expect("first");
    let last = *times.iter().max().expect("last");
    let lower = Duration::from_secs_f64(0.8 * USERS as f64 / RATE);
    assert!(
        last - first >= lower,
        "drain not paced: {:?} between first and last, expected >= {lower:?}",
        last - first
    );
    // They reconnect to their new owner; node-a now redirects them there.
    let mut c = Client::open(&a.url(&format!("/ws?userId={}", users[0])), None).expect("upgrade");
    let frame = c.recv().expect("redirect");
    assert_eq!(frame["type"], "redirect");
    assert_eq!(c.close_code(), Some(4003));
    let moved = Client::connect(&b.url(&format!("/ws?userId={}", users[0]))).expect("new owner");
    assert_eq!(moved.welcome["nodeId"], "node-b");
    let text =
        a.metrics_until(|t| metric_sum(t, "rtc_socket_rebalance_drains_total", "") >= USERS as f64);
    assert_eq!(
        metric_sum(&text, "rtc_socket_rebalance_drains_total", ""),
        USERS as f64
    );
}

#[test]
fn users_given_back_stop_being_drained() {
    const USERS: usize = 20;
    let control = Control::start(&[]);
    // 1 user per second: the full drain would take 20 s.
    let a = node(
        &control,
        "node-a",
        &[
            ("DRAIN_RATE", "1"),
            ("PING_INTERVAL_SEC", "60"),
            ("IDLE_TIMEOUT_SEC", "120"),
        ],
    );
    let b = node(&control, "node-b", &[]);
    joined(&control, &[("node-a", &a), ("node-b", &b)]);
    let users = users_of(&control.ring(), "node-a", USERS, "g");
    let clients: Vec<Client> = users
        .iter()
        .map(|u| Client::connect(&a.url(&format!("/ws?userId={u}"))).expect("connect"))
        .collect();
    let drained = Arc::new(Mutex::new(0usize));
    let mut keep = Vec::new();
    for mut c in clients {
        let drained = drained.clone();
        keep.push(std::thread::spawn(move || {
            while let Some(f) = c.recv() {
                if f["type"] == "drain" {
                    *drained.lock().expect("lock") += 1;
                }
            }
        }));
    }
    let (status, _) = control.request("POST", "/v1/nodes/node-a/drain", "");
    assert_eq!(status, 200);
    applied(&control, &a);
    // The paced drain has begun…
    let deadline = Instant::now() + SETTLE;
    while *drained.lock().expect("lock") == 0 {
        assert!(
            Instant::now() < deadline,
            "no drain after the ring moved the users"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // …when the next ring gives the users back.
    let (status, _) = control.request("POST", "/v1/nodes/node-a/activate", "");
    assert_eq!(status, 200);
    applied(&control, &a);
    let at_give_back = *drained.lock().expect("lock");
    // Well past the pace at which more would have gone (several seconds at 1/s).
    std::thread::sleep(Duration::from_secs(4));
    let later = *drained.lock().expect("lock");
    assert!(
        later <= at_give_back + 2,
        "drains continued after the users were given back: {at_give_back} then {later}"
    );
    assert!(later < USERS, "everyone was drained: {later}");
    // The users kept are served as before.
    let kept = (USERS - later) as f64;
    let text = a.metrics_until(|t| metric_sum(t, "rtc_socket_active_connections", "") == kept);
    assert_eq!(
        metric_sum(&text, "rtc_socket_active_connections", "") as usize,
        USERS - later
    );
    drop(a);
    for t in keep {
        let _ = t.join();
    }
}

#[test]
fn sigterm_asks_control_to_drain_the_node() {
    // With control's admin and node tokens: heartbeats and the drain request carry them.
    let tokens = [
        ("ADMIN_TOKEN", "admin-secret"),
        ("NODE_TOKEN", "node-secret"),
    ];
    let control = Control::start(&tokens);
    let mut a = node(
        &control,
        "node-a",
        &[tokens[0], tokens[1], ("DRAIN_TIMEOUT_SEC", "5")],
    );
    let b = node(&control, "node-b", &tokens);
    joined(&control, &[("node-a", &a), ("node-b", &b)]);
    a.sigterm();
    let nodes = control.until("/v1/nodes", SETTLE, |v| {
        node_view(v, "node-a")["state"] == "draining"
    });
    assert_eq!(node_view(&nodes, "node-b")["state"], "active");
    let status = a.wait_exit(Duration::from_secs(30)).expect("node-a exits");
    assert!(status.success(), "{status:?}");
    // New placements go to node-b.
    let placed = control.get_json("/v1/connect?userId=anyone");
    assert!(placed["wsUrl"]
        .as_str()
        .is_some_and(|u| u.starts_with(&b.url("/ws"))));
    // Without the node token, control refuses heartbeats; the node counts them.
    let c = node(&control, "node-c", &[]);
    let text = c.metrics_until(|t| metric_sum(t, "rtc_socket_heartbeats_total", "refused") >= 2.0);
    assert!(metric_sum(&text, "rtc_socket_heartbeats_total", "refused") >= 2.0);
    assert_eq!(
        metric_sum(&text, "rtc_socket_heartbeats_total", "sent"),
        0.0
    );
}

#[test]
fn nodes_follow_a_restarted_control_back_to_its_lower_version() {
    let mut control = Control::start(&[]);
    let a = node(&control, "node-a", &[]);
    let b = node(&control, "node-b", &[]);
    joined(&control, &[("node-a", &a), ("node-b", &b)]);
    // Push the version well above what a fresh control reaches when both nodes rejoin (2).
    for w in [2, 3, 4] {
        let (status, body) = control.request(
            "PUT",
            "/v1/nodes/node-a/weight",
            &format!("{{\"weight\":{w}}}"),
        );
        assert_eq!(status, 200, "{body}");
    }
    applied(&control, &a);
    let before = metric_sum(&a.get("/metrics").1, "rtc_socket_ring_version", "");
    assert!(before >= 5.0, "{before}");
    // An in-memory control restarts with nothing: the nodes rejoin by heartbeat and, since
    // the fresh control repeats its lower version, apply it.
    control.restart(&[]);
    let fresh = control.until("/v1/nodes", SETTLE, |v| {
        v["nodes"].as_array().is_some_and(|ns| ns.len() == 2) && v["version"].as_u64() == Some(2)
    });
    assert_eq!(fresh["version"], 2, "{fresh}");
    for gw in [&a, &b] {
        let started = Instant::now();
        let text = gw.metrics_until(|t| metric_sum(t, "rtc_socket_ring_version", "") == 2.0);
        assert_eq!(
            metric_sum(&text, "rtc_socket_ring_version", ""),
            2.0,
            "the node kept its old ring"
        );
        assert!(started.elapsed() < SETTLE);
    }
    // Placement works under the new ring: node-a redirects node-b's users.
    let user = &users_of(&control.ring(), "node-b", 1, "x")[0];
    let mut c = Client::open(&a.url(&format!("/ws?userId={user}")), None).expect("upgrade");
    assert_eq!(c.recv().expect("redirect")["type"], "redirect");
    assert_eq!(c.close_code(), Some(4003));
}
