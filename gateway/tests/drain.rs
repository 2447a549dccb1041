//! SIGTERM: readiness goes false, new handshakes get 503 + Retry-After, every client gets
//! `drain` (deadline, reason, resume token) then close 4007, and the process exits once the
//! last client left.

mod support;

use std::time::{Duration, Instant};

use support::{Client, ConnectError, Gateway};

#[test]
fn sigterm_drains_every_client_then_exits() {
    let mut gw = Gateway::start(
        &["--shards", "2"],
        &[("DRAIN_RATE", "20"), ("DRAIN_TIMEOUT_SEC", "60")],
    );
    assert_eq!(gw.get("/readyz").0, 200);
    let mut clients: Vec<Client> = (0..8).map(|i| gw.client(&format!("d{i}"))).collect();
    let started = Instant::now();
    gw.sigterm();
    // Readiness flips (poll: the signal is handled asynchronously).
    let deadline = Instant::now() + Duration::from_secs(20);
    while gw.get("/readyz").0 != 503 {
        assert!(Instant::now() < deadline, "readyz never became 503");
        std::thread::sleep(Duration::from_millis(20));
    }
    match Client::connect(&gw.url("/ws?userId=late")) {
        Err(ConnectError::Status(503, retry)) => assert!(retry.is_some(), "Retry-After"),
        other => panic!("expected 503 while draining, got {:?}", other.err()),
    }
    for c in &mut clients {
        let (frames, code) = c.drain_until_close();
        let drain = frames
            .iter()
            .find(|f| f["type"] == "drain")
            .expect("a drain frame before the close");
        assert!(drain["resumeToken"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(drain["deadlineMs"].as_u64().is_some());
        assert!(drain["reason"].as_str().is_some());
        assert_eq!(code, Some(4007));
    }
    // 8 clients at 20/s: paced, so it takes a noticeable fraction of a second, not all at once.
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "drain was paced"
    );
    let status = gw
        .wait_exit(Duration::from_secs(30))
        .expect("exits after the last client left");
    assert!(status.success(), "{status:?}");
}
