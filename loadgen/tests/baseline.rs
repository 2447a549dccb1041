//! Smoke runs of the scenarios against the baseline server binary (small numbers, a few
//! seconds): connect, direct with --verify, echo, churn, `--workers auto` under a low
//! open-files limit, and the HTML report.

mod support;

use support::{baseline, direct_smoke, fig, run_json, run_loadgen, temp_path};

#[test]
fn connect_holds_every_user_and_samples_the_server() {
    let server = baseline();
    let url = format!("ws://{}/ws", server.addr);
    let pid = server.pid().to_string();
    let r = run_json(
        "connect",
        &[
            "--url",
            &url,
            "--users",
            "200",
            "--ramp",
            "400",
            "--duration",
            "1",
            "--target-pid",
            &pid,
        ],
        None,
    );
    assert_eq!(fig(&r, "connect.peak_connected"), 200.0);
    assert_eq!(fig(&r, "errors.total"), 0.0);
    assert!(fig(&r, "connect.handshake_p50_us") > 0.0);
    assert!(fig(&r, "server.rss_peak_bytes") > 0.0);
    assert!(r["machine"]["cores"].as_u64().is_some_and(|c| c >= 1));
    assert!(r["machine"]["kernel"]
        .as_str()
        .is_some_and(|k| !k.is_empty()));
}

#[test]
fn direct_with_verify_delivers_everything_acked() {
    let server = baseline();
    let url = format!("ws://{}/ws", server.addr);
    let r = direct_smoke(["--url", &url]);
    assert_eq!(r["verify"]["streams"], 20);
    assert!(fig(&r, "msg.latency_p99_us") > 0.0);
}

#[test]
fn echo_round_trips_every_message() {
    let server = baseline();
    let url = format!("ws://{}/echo", server.addr);
    let r = run_json(
        "echo",
        &[
            "--url",
            &url,
            "--users",
            "10",
            "--rate",
            "300",
            "--duration",
            "2",
            "--verify",
            "--payload",
            "100",
        ],
        None,
    );
    let sent = fig(&r, "msg.sent");
    assert!(sent >= 300.0);
    assert_eq!(fig(&r, "msg.delivered"), sent);
    assert_eq!(fig(&r, "verify.lost"), 0.0);
}

#[test]
fn churn_reconnects_at_the_requested_rate() {
    let server = baseline();
    let url = format!("ws://{}/ws", server.addr);
    let r = run_json(
        "churn",
        &[
            "--url",
            &url,
            "--users",
            "20",
            "--rate",
            "40",
            "--duration",
            "2",
        ],
        None,
    );
    assert!(fig(&r, "churn.reconnects") >= 40.0);
    // The baseline hands out no resume token: reconnects are fresh sessions.
    assert_eq!(fig(&r, "churn.resumes"), 0.0);
    assert_eq!(fig(&r, "errors.total"), 0.0);
}

#[test]
fn auto_workers_stay_under_a_low_open_files_limit() {
    let server = baseline();
    let url = format!("ws://{}/ws", server.addr);
    let r = run_json(
        "connect",
        &[
            "--url",
            &url,
            "--users",
            "3000",
            "--ramp",
            "3000",
            "--duration",
            "1",
        ],
        Some(1024),
    );
    assert!(
        r["workers"].as_u64().is_some_and(|w| w >= 3),
        "workers: {}",
        r["workers"]
    );
    assert_eq!(fig(&r, "connect.peak_connected"), 3000.0);
    assert_eq!(fig(&r, "errors.total"), 0.0);
}

#[test]
fn html_report_is_self_contained_with_plots_and_compare_reads_reports() {
    let server = baseline();
    let url = format!("ws://{}/ws", server.addr);
    let html = temp_path("report.html");
    let (a, b) = (temp_path("a.json"), temp_path("b.json"));
    for json in [&a, &b] {
        run_loadgen(
            &[
                "direct".into(),
                "--url".into(),
                url.clone(),
                "--users".into(),
                "10".into(),
                "--rate".into(),
                "100".into(),
                "--duration".into(),
                "1".into(),
                "--target-pid".into(),
                server.pid().to_string(),
                "--html".into(),
                html.display().to_string(),
                "--json".into(),
                json.display().to_string(),
            ],
            None,
        );
    }
    let page = std::fs::read_to_string(&html).expect("html written");
    assert!(
        page.matches("<svg").count() >= 3,
        "plots: {}",
        page.matches("<svg").count()
    );
    let external: Vec<&str> = page
        .match_indices("http")
        .map(|(i, _)| &page[i..(i + 40).min(page.len())])
        .filter(|s| {
            (s.starts_with("http://") || s.starts_with("https://"))
                && !s.starts_with("http://www.w3.org/2000/svg")
        })
        .collect();
    assert!(external.is_empty(), "external URLs: {external:?}");
    let out = run_loadgen(
        &[
            "compare".into(),
            a.display().to_string(),
            b.display().to_string(),
        ],
        None,
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("msg.delivered_per_s"));
    assert!(table.contains('×'), "ratios shown: {table}");
    for p in [&html, &a, &b] {
        let _ = std::fs::remove_file(p);
    }
}

#[test]
fn users_can_be_placed_through_control() {
    let server = baseline();
    let (control, served) = support::fake_control(server.addr);
    let r = run_json(
        "direct",
        &[
            "--control",
            &control,
            "--users",
            "10",
            "--rate",
            "50",
            "--duration",
            "1",
            "--verify",
        ],
        None,
    );
    assert_eq!(
        served.load(std::sync::atomic::Ordering::Relaxed),
        10,
        "one placement per user"
    );
    assert_eq!(fig(&r, "connect.peak_connected"), 10.0);
    assert_eq!(fig(&r, "msg.delivered"), fig(&r, "msg.sent"));
    assert_eq!(fig(&r, "verify.lost"), 0.0);
}

#[test]
fn plain_connect_holds_connections_on_any_websocket_server() {
    let server = baseline();
    let url = format!("ws://{}/echo", server.addr);
    let r = run_json(
        "connect",
        &[
            "--url",
            &url,
            "--plain",
            "--users",
            "50",
            "--ramp",
            "500",
            "--duration",
            "1",
        ],
        None,
    );
    assert_eq!(fig(&r, "connect.peak_connected"), 50.0);
    assert_eq!(fig(&r, "errors.total"), 0.0);
}
