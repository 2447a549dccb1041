//! Every CLI command against a running control (human output and `--json`), and the local
//! ring simulation.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{cli, cli_ok, eventually, ControlProc, FakeNode, Http};

fn json_of(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_against_a_running_control() {
    let c = ControlProc::start(&[
        ("ADMIN_TOKEN", "adm"),
        ("RING_SECRET", "cli-test-secret-0123456789"),
        ("SCALING_INTERVAL_SEC", "1"),
    ])
    .await;
    let h = Http::new(&c.url);
    let admin = [("ADMIN_TOKEN", "adm")];
    let url = c.url.clone();
    // The CLI is synchronous: run it off the async workers.
    let run = |args: Vec<&'static str>, env: Vec<(&'static str, &'static str)>| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || cli_ok(&url, &args, &env))
    };

    let _n = FakeNode::start(&c.url, "gw-hb", 1, 10, None);
    eventually(Duration::from_secs(20), "gw-hb joined", || async {
        (h.version().await >= 1).then_some(())
    })
    .await;

    // ring add: human and JSON.
    let out = run(
        vec![
            "ring",
            "add",
            "gw-op",
            "--weight",
            "3",
            "--ws-url",
            "ws://gw-op:9000/ws",
        ],
        admin.to_vec(),
    )
    .await
    .unwrap();
    assert!(
        out.contains("ring version 2: added gw-op (weight 3"),
        "{out}"
    );
    // Without the admin token a write fails with the server's reason and a non-zero exit.
    let url2 = c.url.clone();
    let o = tokio::task::spawn_blocking(move || cli(&url2, &["ring", "remove", "gw-op"], &[]))
        .await
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("401") && err.contains("unauthorized"), "{err}");

    // nodes: both nodes, weights, health.
    let out = run(vec!["nodes"], vec![]).await.unwrap();
    assert!(out.starts_with("ring version 2\n"), "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("gw-op"))
        .expect("gw-op row");
    assert!(
        line.contains("active") && line.contains(" 3 ") && line.contains("no heartbeat"),
        "{line}"
    );
    let line = out
        .lines()
        .find(|l| l.starts_with("gw-hb"))
        .expect("gw-hb row");
    assert!(line.contains("live"), "{line}");
    let v = json_of(&run(vec!["nodes", "--json"], vec![]).await.unwrap());
    assert_eq!(v["nodes"].as_array().map(Vec::len), Some(2));

    // ring show: shares add up; JSON is the snapshot.
    let out = run(vec!["ring", "show"], vec![]).await.unwrap();
    assert!(
        out.starts_with("ring version 2 (600 points, 150 per weight)"),
        "{out}"
    );
    let v = json_of(&run(vec!["ring", "show", "--json"], vec![]).await.unwrap());
    assert_eq!(v["version"], 2);

    // weight, drain, activate, each a new version.
    let out = run(vec!["ring", "weight", "gw-op", "5"], admin.to_vec())
        .await
        .unwrap();
    assert_eq!(out, "ring version 3: gw-op weight → 5\n");
    let out = run(vec!["drain", "gw-op"], admin.to_vec()).await.unwrap();
    assert_eq!(out, "ring version 4: gw-op → draining\n");
    // Every user now resolves to the heartbeating node.
    let out = run(vec!["resolve", "alice"], vec![]).await.unwrap();
    assert!(
        out.starts_with("alice → gw-hb (ws://gw-hb.test:9000/ws) at ring version 4"),
        "{out}"
    );
    let out = run(vec!["activate", "gw-op", "--json"], admin.to_vec())
        .await
        .unwrap();
    assert_eq!(json_of(&out)["version"], 5);

    // resolve and connect agree with each other and with the server.
    let r = json_of(&run(vec!["resolve", "bob", "--json"], vec![]).await.unwrap());
    let c2 = json_of(&run(vec!["connect", "bob", "--json"], vec![]).await.unwrap());
    assert_eq!(r["version"], 5);
    assert_eq!(c2["ringVersion"], 5);
    assert_eq!(c2["nodeId"], r["nodeId"]);
    assert!(c2["wsUrl"]
        .as_str()
        .unwrap()
        .starts_with(r["publicWsUrl"].as_str().unwrap()));
    let out = run(vec!["connect", "bob"], vec![]).await.unwrap();
    assert!(
        out.contains("token        ") && out.contains("?token="),
        "{out}"
    );

    // scale: inputs and a decision.
    let v = eventually(Duration::from_secs(20), "a scaling decision", || async {
        let v = json_of(&run(vec!["scale", "--json"], vec![]).await.unwrap());
        (!v["decision"].is_null()).then_some(v)
    })
    .await;
    assert!(v["termsNow"]["target"].as_u64().is_some());
    let out = run(vec!["scale"], vec![]).await.unwrap();
    assert!(
        out.contains("terms now: r_conn") && out.contains("decision: "),
        "{out}"
    );

    // ring remove.
    let out = run(vec!["ring", "remove", "gw-op"], admin.to_vec())
        .await
        .unwrap();
    assert_eq!(out, "ring version 6: removed gw-op\n");
    let out = run(vec!["ring", "show"], vec![]).await.unwrap();
    assert!(!out.contains("gw-op"), "{out}");

    // Bad input from the CLI: the server's reason, non-zero exit, nothing changed.
    let url3 = c.url.clone();
    let o = tokio::task::spawn_blocking(move || {
        cli(
            &url3,
            &["ring", "weight", "gw-hb", "0"],
            &[("ADMIN_TOKEN", "adm")],
        )
    })
    .await
    .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad_weight"));
    assert_eq!(h.version().await, 6);
}

#[test]
fn simulate_computes_locally() {
    // No control is running at this URL: simulate must not need one.
    let url = format!("http://127.0.0.1:{}", support::free_port());
    let out = cli_ok(
        &url,
        &[
            "ring", "simulate", "--nodes", "10", "--vnodes", "150", "--keys", "100000", "--add",
            "1", "--json",
        ],
        &[],
    );
    let v = json_of(&out);
    assert_eq!(v["nodes"], 10);
    assert_eq!(v["before"].as_array().map(Vec::len), Some(10));
    assert_eq!(v["after"].as_array().map(Vec::len), Some(11));
    let moved = v["movedKeyFraction"].as_f64().unwrap();
    // Adding 1 node to 10 should move about 1/11 of the keys.
    assert!(moved > 0.03 && moved < 0.2, "{moved}");
    let mm = v["beforeMaxOverMean"].as_f64().unwrap();
    assert!((1.0..1.6).contains(&mm), "{mm}");
    let human = cli_ok(
        &url,
        &[
            "ring", "simulate", "--nodes", "4", "--keys", "10000", "--remove", "1",
        ],
        &[],
    );
    assert!(human.contains("node-0"), "{human}");
    // Out-of-range arguments are refused, not a panic.
    let o = cli(&url, &["ring", "simulate", "--nodes", "0"], &[]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("simulating the ring"));
}
