//! Server pings every `PING_INTERVAL_SEC`; a connection that sends nothing is closed 4006
//! after `IDLE_TIMEOUT_SEC`, while one that answers pings stays.

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{masked_frame, raw_read_until_close, raw_ws, Gateway};

#[test]
fn silent_connection_is_closed_4006_and_a_live_one_is_pinged() {
    let gw = Gateway::start(
        &[],
        &[("PING_INTERVAL_SEC", "1"), ("IDLE_TIMEOUT_SEC", "3")],
    );
    // tungstenite answers pings while reading, so this client stays alive.
    let mut live = gw.client("live");
    let mut silent = raw_ws(gw.addr, "/ws?userId=silent");
    let started = Instant::now();
    // Keep the live client reading (and so answering pings) while the silent one times out.
    let t = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(6);
        while Instant::now() < deadline {
            live.send(&json!({"type":"ping"}));
            live.recv_type("pong");
            std::thread::sleep(Duration::from_millis(300));
        }
        live
    });
    let (code, opcodes) = raw_read_until_close(&mut silent);
    assert_eq!(code, Some(4006));
    assert!(
        opcodes.contains(&0x9),
        "server pinged the silent client first: {opcodes:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "not before the idle timeout"
    );
    let _ = silent.write_all(&masked_frame(0x88, &[0x03, 0xE8]));
    let mut live = t.join().expect("live client thread");
    live.send(&json!({"type":"ping","nonce":9}));
    assert_eq!(
        live.recv_type("pong")["nonce"].as_u64(),
        Some(9),
        "the active one is still served"
    );
}
