//! Direct messages through the real binary with two shards: cross-shard delivery, order,
//! `sent`, acks, offline delivery, resume, retry dedup, duplicate login, ping/pong,
//! drop-oldest under a reader that stopped reading.

mod support;

use serde_json::json;
use support::{metric_sum, users_on_different_shards, Client, Gateway};

#[test]
fn welcome_describes_the_session() {
    let gw = Gateway::start(&["--shards", "2"], &[]);
    let c = gw.client("alice");
    let w = &c.welcome;
    assert_eq!(w["user"], "alice");
    assert_eq!(w["nodeId"], "node-1");
    assert_eq!(
        w["shard"].as_u64(),
        Some(rtc_ring::shard_of("alice", 2) as u64)
    );
    assert!(w["resumeToken"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(w["pingIntervalMs"].as_u64(), Some(25_000));
    assert_eq!(w["offset"].as_u64(), Some(0));
}

#[test]
fn messages_cross_shards_in_order_with_sent() {
    let gw = Gateway::start(&["--shards", "2"], &[]);
    let (a, b) = users_on_different_shards(2);
    let mut ca = gw.client(&a);
    let mut cb = gw.client(&b);
    const N: u64 = 200;
    for i in 1..=N {
        ca.send_msg(&b, &format!("m{i}"), json!({"n": i}));
    }
    for i in 1..=N {
        let m = cb.recv_type("message");
        assert_eq!(m["from"], a.as_str());
        assert_eq!(
            m["offset"].as_u64(),
            Some(i),
            "offsets are contiguous and in order"
        );
        assert_eq!(m["payload"]["n"].as_u64(), Some(i), "payload in send order");
    }
    for i in 1..=N {
        let s = ca.recv_type("sent");
        assert_eq!(s["clientMsgId"], format!("m{i}"));
        assert_eq!(s["offset"].as_u64(), Some(i));
        assert_eq!(s["to"], b.as_str());
    }
    // And back the other way.
    cb.send_msg(&a, "r1", json!("hi"));
    let m = ca.recv_type("message");
    assert_eq!(m["payload"], "hi");
    assert_eq!(cb.recv_type("sent")["clientMsgId"], "r1");
}

#[test]
fn offline_delivery_acks_and_resume() {
    let gw = Gateway::start(&["--shards", "2"], &[]);
    let (a, b) = users_on_different_shards(2);
    let mut ca = gw.client(&a);
    // b is offline: messages wait in its resume log.
    for i in 1..=3 {
        ca.send_msg(&b, &format!("o{i}"), json!(i));
        assert_eq!(ca.recv_type("sent")["offset"].as_u64(), Some(i));
    }
    let mut cb = gw.client(&b);
    assert_eq!(cb.welcome["offset"].as_u64(), Some(3));
    for i in 1..=3 {
        assert_eq!(
            cb.recv_type("message")["offset"].as_u64(),
            Some(i),
            "offline delivery"
        );
    }
    // Ack the first two; the third stays unacked.
    cb.send(&json!({"type":"ack","upTo":2}));
    cb.send(&json!({"type":"ping","nonce":7}));
    assert_eq!(cb.recv_type("pong")["nonce"].as_u64(), Some(7));
    let token = cb.welcome["resumeToken"]
        .as_str()
        .expect("token")
        .to_owned();
    cb.close();
    for i in 4..=5 {
        ca.send_msg(&b, &format!("o{i}"), json!(i));
        assert_eq!(ca.recv_type("sent")["offset"].as_u64(), Some(i));
    }
    // Resume from offset 3: only 4 and 5 are replayed.
    let mut cb = Client::connect(&gw.url(&format!("/ws?userId={b}&resume={token}&lastOffset=3")))
        .expect("resume");
    assert_eq!(cb.recv_type("message")["offset"].as_u64(), Some(4));
    assert_eq!(cb.recv_type("message")["offset"].as_u64(), Some(5));
    cb.send(&json!({"type":"ack","upTo":5}));
    cb.send(&json!({"type":"ping"}));
    cb.recv_type("pong");
    cb.close();
    // Everything acked: a fresh connect replays nothing (the next frame is our pong).
    let mut cb = gw.client(&b);
    cb.send(&json!({"type":"ping","nonce":1}));
    let f = cb.recv().expect("frame");
    assert_eq!(
        f["type"], "pong",
        "nothing replayed after a full ack, got {f}"
    );
    let text = gw.metrics_until(|t| metric_sum(t, "rtc_socket_resume_success_total", "") >= 1.0);
    assert!(metric_sum(&text, "rtc_socket_resume_success_total", "") >= 1.0);
    assert!(metric_sum(&text, "rtc_socket_reconnects_total", "") >= 1.0);
}

#[test]
fn retry_with_same_client_msg_id_is_delivered_once() {
    let gw = Gateway::start(&["--shards", "2"], &[]);
    let (a, b) = users_on_different_shards(2);
    let mut ca = gw.client(&a);
    let mut cb = gw.client(&b);
    ca.send_msg(&b, "same", json!(1));
    ca.send_msg(&b, "same", json!(1));
    ca.send_msg(&b, "other", json!(2));
    let s1 = ca.recv_type("sent");
    let s2 = ca.recv_type("sent");
    assert_eq!(
        s1["msgId"], s2["msgId"],
        "the retry is answered with the first commit"
    );
    assert_eq!(s1["offset"], s2["offset"]);
    assert_eq!(cb.recv_type("message")["payload"], 1);
    let next = cb.recv_type("message");
    assert_eq!(next["payload"], 2, "the duplicate was not delivered");
    assert_eq!(next["offset"].as_u64(), Some(2));
}

#[test]
fn duplicate_login_closes_the_old_connection_4002() {
    let gw = Gateway::start(&["--shards", "2"], &[]);
    let mut old = gw.client("carol");
    let mut new = gw.client("carol");
    assert_eq!(old.close_code(), Some(4002));
    new.send(&json!({"type":"ping","nonce":3}));
    assert_eq!(new.recv_type("pong")["nonce"].as_u64(), Some(3));
}

#[test]
fn a_reader_that_stops_reading_gets_gaps_not_unbounded_memory() {
    let gw = Gateway::start(&["--shards", "2"], &[("PER_CONN_BUFFER_SIZE", "8")]);
    let (a, b) = users_on_different_shards(2);
    let mut ca = gw.client(&a);
    // b's socket has a tiny receive buffer and b does not read for a while.
    let mut cb = Client::connect_with(&gw.url(&format!("/ws?userId={b}")), Some(4096)).expect("b");
    let big = "x".repeat(16 * 1024);
    const N: usize = 600; // ~10 MB: far more than the kernel buffers hold
    for i in 0..N {
        ca.send_msg(&b, &format!("f{i}"), json!(big));
        if i % 50 == 49 {
            // Keep a's own socket drained of `sent` frames.
            for _ in 0..50 {
                ca.recv_type("sent");
            }
        }
    }
    let drops = |t: &str| {
        ["outbound_full", "log_full", "slow_consumer"]
            .iter()
            .map(|r| metric_sum(t, "rtc_socket_drops_total", &format!("reason=\"{r}\"")))
            .sum::<f64>()
    };
    let window = |t: &str| metric_sum(t, "rtc_socket_drops_total", "reason=\"outbound_full\"");
    let text = gw.metrics_until(|t| window(t) > 0.0);
    assert!(
        window(&text) > 0.0,
        "drop-oldest of the outbound window is counted:\n{text}"
    );
    assert!(drops(&text) >= window(&text));
    // Now read: the stream has a gap (or was closed 4005 as a slow consumer), still in order.
    let mut offsets = Vec::new();
    let mut gap_seen = false;
    let code = loop {
        match cb.recv() {
            Some(f) if f["type"] == "gap" => gap_seen = true,
            Some(f) if f["type"] == "message" => {
                let o = f["offset"].as_u64().expect("offset");
                offsets.push(o);
                if gap_seen || o == N as u64 {
                    break None;
                }
            }
            Some(_) => {}
            None => break cb.last_close,
        }
    };
    assert!(
        gap_seen || code == Some(4005),
        "a gap frame or close 4005; close {code:?}"
    );
    assert!(
        offsets.windows(2).all(|w| w[0] < w[1]),
        "still in order: {offsets:?}"
    );
}
