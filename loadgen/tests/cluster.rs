//! The cluster scenarios of the issue, end to end with real processes: control, 2–3 gateway
//! nodes, Redis and the tansu broker on loopback, driven by the real
//! `loadgen direct --control URL --verify --json FILE`, whose users reconnect like clients
//! (backoff, placed again by control, resume token + last offset).
//!
//! Scenarios: two-hop relay between nodes; SIGTERM drain; control drain (`POST
//! /v1/nodes/{id}/drain`, the rebalance path); kill -9; Redis restarted; broker restarted.
//! Each breaks one thing mid-run and asserts on loadgen's report:
//! - no acknowledged message lost (`verify.lost`: `sent` received, never delivered);
//! - no reordering per sender (`verify.out_of_order`);
//! - every user whose connection was lost came back (`recovery.users_not_back`);
//!
//! and prints the figures (duplicates, resends, reconnects, `recovery.all_resumed_ms`).
//!
//! Sized for a loaded 2-core machine (the bounds): 400 users, 150 msg/s in total,
//! 25 s of sending, outcomes within generous deadlines, never a latency. The tests run one at
//! a time (one lock for the whole file); every child runs in its own process group, killed
//! when the test ends, even on failure (`support::cluster`). On failure the tail of every
//! child's log is printed; `SCENARIO_LOG=info` raises the nodes' log level, and
//! `SCENARIO_HOLD_SECS=N` keeps a cluster that lost messages up for N seconds (its Redis, to
//! look at the logs of the users named in the report).

mod support;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::cluster::{figure, metric_sum, summary, until, Cluster, ClusterSpec, Loadgen, SETTLE};

/// Users (= connections), in pairs.
const USERS: &str = "400";
/// Messages per second, all users together.
const RATE: &str = "150";
/// Seconds of sending.
const DURATION: &str = "25";
/// Longest a whole loadgen run may take (ramp + sending + the bounded drain).
const RUN_DEADLINE: Duration = Duration::from_secs(120);
/// Sending time before something is broken.
const BEFORE_FAULT: Duration = Duration::from_secs(6);

/// One scenario at a time: each starts a whole cluster.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts loadgen against `c` and waits until every user is connected and sending has begun.
fn start_load(c: &Cluster, users: &str) -> Loadgen {
    let lg = c.loadgen_direct(&[
        "--users",
        users,
        "--rate",
        RATE,
        "--duration",
        DURATION,
        "--ramp",
        "200",
        "--payload",
        "64",
        "--connect-timeout",
        "30",
        // Bounded: the drain ends as soon as everyone is back and everything has arrived.
        "--drain",
        "45",
        "--label",
        "scenario",
    ]);
    let n: f64 = users.parse().expect("users");
    until("every user connected", SETTLE, || {
        c.metric_total("rtc_socket_active_connections", "") >= n
    });
    std::thread::sleep(BEFORE_FAULT);
    lg
}

/// The assertions every scenario shares: nothing acked lost, nothing reordered, everyone back.
fn assert_no_loss(name: &str, r: &Value) {
    let s = summary(r);
    eprintln!("{name}: {s}");
    if figure(r, "verify.lost") > 0.0 {
        if let Some(secs) = std::env::var("SCENARIO_HOLD_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            eprintln!("{name}: problems {}", r["verify"]["problems"]);
            std::thread::sleep(Duration::from_secs(secs));
        }
    }
    assert!(figure(r, "msg.sent") > 0.0, "{name}: nothing sent: {s}");
    assert!(figure(r, "msg.acked") > 0.0, "{name}: nothing acked: {s}");
    assert_eq!(
        figure(r, "verify.lost"),
        0.0,
        "{name}: acked messages lost: {s}\n{}",
        r["verify"]["problems"]
    );
    assert_eq!(
        figure(r, "verify.out_of_order"),
        0.0,
        "{name}: reordered: {s}\n{}",
        r["verify"]["problems"]
    );
    assert_eq!(
        figure(r, "recovery.users_not_back"),
        0.0,
        "{name}: users never reconnected: {s}"
    );
    // Accounting: every written message was answered (`sent` or `error`) or is reported
    // unacked; none vanished from the report.
    let answered = figure(r, "msg.acked") + figure(r, "msg.nacked") + figure(r, "msg.unacked");
    assert_eq!(answered, figure(r, "msg.sent"), "{name}: {s}");
}

#[test]
fn two_hop_relay_between_nodes_keeps_order() {
    let _one = serial();
    let c = Cluster::start("relay", &ClusterSpec::default());
    let lg = start_load(&c, USERS);
    let r = lg.report(RUN_DEADLINE);
    assert_no_loss("relay", &r);
    let s = summary(&r);
    // Nothing broke: every message acked and delivered once, no reconnect.
    assert_eq!(figure(&r, "msg.acked"), figure(&r, "msg.sent"), "{s}");
    assert!(
        figure(&r, "msg.delivered") >= figure(&r, "msg.acked"),
        "{s}"
    );
    assert_eq!(figure(&r, "verify.duplicated"), 0.0, "{s}");
    assert_eq!(figure(&r, "recovery.lost_connections"), 0.0, "{s}");
    // Messages really crossed nodes through Kafka.
    let produced = c.metric_total("rtc_socket_relay_total", "outcome=\"produced\"");
    let consumed = c.metric_total("rtc_socket_relay_total", "outcome=\"consumed\"");
    eprintln!("relay: produced {produced} consumed {consumed}");
    assert!(
        produced > 0.0 && consumed > 0.0,
        "no record went through the relay"
    );
}

#[test]
fn sigterm_drain_under_load_delivers_everything_after_resume() {
    let _one = serial();
    let mut c = Cluster::start(
        "drain",
        &ClusterSpec {
            nodes: 3,
            ..ClusterSpec::default()
        },
    );
    let lg = start_load(&c, USERS);
    // SIGTERM: the node asks control to drain it, sends every client `drain` + 4007 at
    // DRAIN_RATE, and exits; its users reconnect through control and resume elsewhere.
    let node = c.node_mut("node-2");
    node.group.sigterm();
    assert!(
        node.group.wait_exit(SETTLE),
        "node-2 did not finish draining"
    );
    until("node-2 off control's ring", SETTLE, || {
        !c.control.ring().1.iter().any(|id| id == "node-2")
    });
    let r = lg.report(RUN_DEADLINE);
    assert_no_loss("drain", &r);
    let s = summary(&r);
    assert!(figure(&r, "cluster.drains") > 0.0, "no drain frame: {s}");
    assert!(figure(&r, "recovery.reconnects") > 0.0, "{s}");
    assert!(figure(&r, "recovery.resumes") > 0.0, "{s}");
    // A drain loses nothing in flight: what was unanswered was sent again and answered.
    assert_eq!(figure(&r, "msg.unacked"), 0.0, "{s}");
    assert_resumed_elsewhere(&c, &r);
}

#[test]
fn control_drain_under_load_moves_users_with_nothing_lost() {
    let _one = serial();
    let c = Cluster::start(
        "cdrain",
        &ClusterSpec {
            nodes: 3,
            ..ClusterSpec::default()
        },
    );
    let lg = start_load(&c, USERS);
    // The operator path: control marks node-2 draining, the ring moves its users, and the
    // node (still running) drains them at DRAIN_RATE to their new owners.
    let (status, body) = support::cluster::http(c.control.addr, "POST", "/v1/nodes/node-2/drain");
    assert_eq!(status, 200, "drain: {body}");
    let node2 = c.node("node-2");
    until("node-2 drained of its users", SETTLE, || {
        let m = node2.metrics();
        metric_sum(&m, "rtc_socket_rebalance_drains_total", "") > 0.0
            && metric_sum(&m, "rtc_socket_active_connections", "") == 0.0
    });
    let r = lg.report(RUN_DEADLINE);
    assert_no_loss("cdrain", &r);
    let s = summary(&r);
    assert!(figure(&r, "cluster.drains") > 0.0, "no drain frame: {s}");
    assert_eq!(figure(&r, "msg.unacked"), 0.0, "{s}");
    assert_resumed_elsewhere(&c, &r);
}

/// The users that lost their node resumed on the others with the tokens it had issued
/// (`rtc_socket_resume_success_total`: a resume token verified, the log replayed from the
/// client's offset).
fn assert_resumed_elsewhere(c: &Cluster, r: &Value) {
    let resumed = c.metric_total("rtc_socket_resume_success_total", "");
    let lost = figure(r, "recovery.lost_connections");
    assert!(
        lost > 0.0 && resumed >= lost,
        "{lost} users lost their node, {resumed} resumed on the others"
    );
}

#[test]
fn kill_9_under_load_users_resume_through_control_with_nothing_acked_lost() {
    let _one = serial();
    let mut c = Cluster::start(
        "kill9",
        &ClusterSpec {
            nodes: 3,
            ..ClusterSpec::default()
        },
    );
    let lg = start_load(&c, USERS);
    let killed = Instant::now();
    c.node_mut("node-2").group.kill9();
    // Control drops it after the heartbeat grace; its users are placed on the others.
    until("node-2 off control's ring", SETTLE, || {
        !c.control.ring().1.iter().any(|id| id == "node-2")
    });
    eprintln!(
        "kill9: node-2 off the ring {} ms after kill -9",
        killed.elapsed().as_millis()
    );
    let r = lg.report(RUN_DEADLINE);
    assert_no_loss("kill9", &r);
    let s = summary(&r);
    assert!(figure(&r, "recovery.lost_connections") > 0.0, "{s}");
    assert!(figure(&r, "recovery.resumes") > 0.0, "{s}");
    assert!(
        r["figures"]["recovery.all_resumed_ms"].is_number(),
        "no recovery time: {s}"
    );
    assert_resumed_elsewhere(&c, &r);
}

#[test]
fn redis_restart_mid_run_loses_nothing_acked() {
    let _one = serial();
    let mut c = Cluster::start(
        "redis",
        &ClusterSpec {
            redis_appendonly: true,
            ..ClusterSpec::default()
        },
    );
    let mut lg = start_load(&c, USERS);
    let scratch = c.scratch.0.clone();
    c.redis.restart(&scratch, Duration::from_secs(2));
    // The nodes recover by themselves: ready again once their store is healthy.
    until("nodes ready after the Redis restart", SETTLE, || {
        c.nodes
            .iter()
            .all(|n| support::cluster::http(n.addr, "GET", "/readyz").0 == 200)
    });
    assert!(lg.running(), "loadgen ended during the Redis restart");
    let r = lg.report(RUN_DEADLINE);
    assert_no_loss("redis", &r);
    // The restart was felt: sends during it were refused (`error unavailable`), not lost.
    assert!(figure(&r, "msg.nacked") > 0.0, "{}", summary(&r));
}

#[test]
fn broker_restart_mid_run_loses_nothing_acked() {
    let _one = serial();
    let mut c = Cluster::start(
        "broker",
        &ClusterSpec {
            own_broker: true,
            ..ClusterSpec::default()
        },
    );
    let lg = start_load(&c, USERS);
    let restored_before = c.metric_total("rtc_socket_relay_events_total", "restored");
    let scratch = c.scratch.0.clone();
    c.broker.restart(&scratch, Duration::from_secs(1));
    let r = lg.report(RUN_DEADLINE);
    assert_no_loss("broker", &r);
    // The relay noticed and reconciled its users against Redis.
    until(
        "the nodes reconcile after the broker restart",
        SETTLE,
        || c.metric_total("rtc_socket_relay_events_total", "restored") > restored_before,
    );
    let restored_after = c.metric_total("rtc_socket_relay_events_total", "restored");
    eprintln!("broker: relay restored events {restored_before} → {restored_after}");
}
