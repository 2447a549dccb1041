//! `/metrics` is valid Prometheus text (`promtool check metrics`) and counts what happened;
//! `/healthz` and `/readyz` answer.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::json;
use support::{metric_sum, Gateway};

#[test]
fn metrics_pass_promtool_and_count_traffic() {
    let gw = Gateway::start(&["--shards", "2"], &[]);
    assert_eq!(gw.get("/healthz").0, 200);
    assert_eq!(gw.get("/readyz").0, 200);
    let mut a = gw.client("m-a");
    let mut b = gw.client("m-b");
    for i in 0..5 {
        a.send_msg("m-b", &format!("{i}"), json!(i));
    }
    for _ in 0..5 {
        b.recv_type("message");
    }
    // Each shard publishes its counters every 250 ms: wait until both have.
    let text = gw.metrics_until(|t| {
        metric_sum(t, "rtc_socket_delivered_total", "") >= 5.0
            && metric_sum(t, "rtc_socket_active_connections", "") >= 2.0
    });
    let body = text.split("\r\n\r\n").nth(1).expect("body");
    assert_eq!(metric_sum(body, "rtc_socket_delivered_total", ""), 5.0);
    assert_eq!(metric_sum(body, "rtc_socket_active_connections", ""), 2.0);
    assert!(metric_sum(body, "rtc_socket_handshakes_total", "result=\"ok\"") >= 2.0);
    assert_eq!(metric_sum(body, "rtc_socket_latency_count", ""), 5.0);
    for name in [
        "rtc_socket_queue_depth",
        "rtc_socket_reconnects_total",
        "rtc_socket_resume_success_total",
        "rtc_socket_drops_total",
    ] {
        assert!(body.contains(&format!("# TYPE {name} ")), "{name} declared");
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package `prometheus`; scripts/test installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
