//! Every kind of bad input against the real binary: each is refused with the right HTTP
//! status or close code, and a bystander connection keeps being served throughout.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{
    masked_frame, raw_read_close, raw_request, raw_ws, upgrade_request, Client, ConnectError,
    Gateway,
};

fn bystander_still_served(c: &mut Client) {
    c.send(&json!({"type":"ping","nonce":42}));
    assert_eq!(c.recv_type("pong")["nonce"].as_u64(), Some(42));
}

#[test]
fn malformed_upgrades_get_400_426_431() {
    let gw = Gateway::start(&["--shards", "2"], &[]);
    let mut by = gw.client("bystander");
    // No Sec-WebSocket-Key.
    let req =
        "GET /ws?userId=a HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
               Sec-WebSocket-Version: 13\r\n\r\n";
    assert_eq!(raw_request(gw.addr, req.as_bytes()).0, 400);
    // Garbage request line.
    assert_eq!(raw_request(gw.addr, b"HELLO\r\n\r\n").0, 400);
    // Wrong version: 426 naming the supported one.
    let req = upgrade_request("/ws?userId=a", "").replace("Version: 13", "Version: 8");
    let (status, text) = raw_request(gw.addr, req.as_bytes());
    assert_eq!(status, 426);
    assert!(
        text.to_ascii_lowercase()
            .contains("sec-websocket-version: 13"),
        "{text}"
    );
    // Headers too large.
    let huge = format!("X-Filler: {}\r\n", "a".repeat(20_000));
    let (status, _) = raw_request(gw.addr, upgrade_request("/ws?userId=a", &huge).as_bytes());
    assert_eq!(status, 431);
    // Unknown path.
    assert_eq!(gw.get("/nope").0, 404);
    bystander_still_served(&mut by);
}

#[test]
fn slow_headers_are_cut_at_the_header_timeout() {
    let gw = Gateway::start(&[], &[("HEADER_TIMEOUT_MS", "300")]);
    let mut by = gw.client("bystander");
    let mut s = TcpStream::connect(gw.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s.write_all(b"GET /ws?userId=slow HTTP/1.1\r\nHost: t\r\n")
        .expect("write");
    let started = Instant::now();
    let mut buf = Vec::new();
    // Keep trickling a header byte now and then; the server must still cut us off.
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(100));
        if s.write_all(b"X").is_err() {
            break;
        }
    }
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "closed at the header timeout"
    );
    bystander_still_served(&mut by);
}

#[test]
fn identity_is_required_and_checked() {
    let secret = "test-secret";
    let gw = Gateway::start(&["--require-token"], &[("RING_SECRET", secret)]);
    // No identity.
    match Client::connect(&gw.url("/ws")) {
        Err(ConnectError::Status(401, _)) => {}
        other => panic!("expected 401, got {:?}", other.err()),
    }
    // userId alone is not enough when tokens are required.
    assert!(matches!(
        Client::connect(&gw.url("/ws?userId=a")),
        Err(ConnectError::Status(401, _))
    ));
    // A forged token.
    assert!(matches!(
        Client::connect(&gw.url("/ws?token=abc.def")),
        Err(ConnectError::Status(401, _))
    ));
    // A token signed with the right secret works.
    let keys = rtc_protocol::token::TokenKeys::new(secret.as_bytes(), None);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = rtc_protocol::token::ConnectClaims {
        user: "dave".into(),
        node: "node-1".into(),
        ring_version: 0,
        expires_at: now + 600,
    };
    let token = rtc_protocol::token::sign_connect(&keys, &claims);
    let c = Client::connect(&gw.url(&format!("/ws?token={token}"))).expect("valid token");
    assert_eq!(c.welcome["user"], "dave");
    // Signed with another secret.
    let other = rtc_protocol::token::TokenKeys::new(b"other", None);
    let bad = rtc_protocol::token::sign_connect(&other, &claims);
    assert!(matches!(
        Client::connect(&gw.url(&format!("/ws?token={bad}"))),
        Err(ConnectError::Status(401, _))
    ));
    // An invalid user id in no-token mode.
    let open = Gateway::start(&[], &[]);
    assert!(matches!(
        Client::connect(&open.url("/ws?userId=bad%20id")),
        Err(ConnectError::Status(401, _))
    ));
}

#[test]
fn origin_allow_list_gives_403() {
    let gw = Gateway::start(
        &[],
        &[("ALLOWED_ORIGINS", "https://ok.example,https://also.example")],
    );
    let (status, _) = raw_request(
        gw.addr,
        upgrade_request("/ws?userId=a", "Origin: https://evil.example\r\n").as_bytes(),
    );
    assert_eq!(status, 403);
    let (status, _) = raw_request(gw.addr, upgrade_request("/ws?userId=a", "").as_bytes());
    assert_eq!(status, 403, "no Origin when an allow-list is set");
    let mut s = TcpStream::connect(gw.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s.write_all(upgrade_request("/ws?userId=a", "Origin: https://ok.example\r\n").as_bytes())
        .expect("write");
    let mut b = [0u8; 12];
    s.read_exact(&mut b).expect("read");
    assert_eq!(&b, b"HTTP/1.1 101");
}

#[test]
fn handshake_rate_limit_gives_503_with_retry_after() {
    let gw = Gateway::start(&["--shards", "1"], &[("HANDSHAKE_RATE_LIMIT", "3")]);
    let mut limited = None;
    let mut clients = Vec::new();
    for i in 0..20 {
        match Client::connect(&gw.url(&format!("/ws?userId=u{i}"))) {
            Ok(c) => clients.push(c),
            Err(ConnectError::Status(503, retry)) => {
                limited = Some(retry);
                break;
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    let retry = limited.expect("20 handshakes at once exceed 3/s");
    assert!(
        retry
            .and_then(|r| r.parse::<u32>().ok())
            .is_some_and(|s| s >= 1),
        "Retry-After present"
    );
    assert!(!clients.is_empty(), "the first ones were admitted");
    for c in &mut clients {
        bystander_still_served(c);
    }
}

#[test]
fn per_ip_connection_limit_gives_429() {
    let gw = Gateway::start(&["--shards", "2"], &[("MAX_CONN_PER_IP", "2")]);
    let a = gw.client("ip1");
    let b = gw.client("ip2");
    match Client::connect(&gw.url("/ws?userId=ip3")) {
        Err(ConnectError::Status(429, _)) => {}
        other => panic!("expected 429, got {:?}", other.err()),
    }
    drop(a);
    // The slot frees once the server saw the close.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match Client::connect(&gw.url("/ws?userId=ip3")) {
            Ok(_) => break,
            Err(ConnectError::Status(429, _)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => panic!("slot not released: {e:?}"),
        }
    }
    drop(b);
}

#[test]
fn trusted_proxy_forwarded_for_is_used_for_per_ip_limits() {
    let gw = Gateway::start(
        &[],
        &[("MAX_CONN_PER_IP", "1"), ("TRUSTED_PROXIES", "127.0.0.1")],
    );
    // Two clients behind the proxy, different forwarded addresses: both admitted.
    let mut s1 = raw_ws_with(&gw, "/ws?userId=p1", "X-Forwarded-For: 203.0.113.1\r\n");
    let mut s2 = raw_ws_with(&gw, "/ws?userId=p2", "X-Forwarded-For: 203.0.113.2\r\n");
    // A second one from 203.0.113.1: refused.
    let (status, _) = raw_request(
        gw.addr,
        upgrade_request("/ws?userId=p3", "X-Forwarded-For: 203.0.113.1\r\n").as_bytes(),
    );
    assert_eq!(status, 429);
    let _ = (s1.flush(), s2.flush());
}

fn raw_ws_with(gw: &Gateway, path: &str, extra: &str) -> TcpStream {
    let mut s = TcpStream::connect(gw.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s.write_all(upgrade_request(path, extra).as_bytes())
        .expect("write");
    let mut b = [0u8; 12];
    s.read_exact(&mut b).expect("read");
    assert_eq!(&b, b"HTTP/1.1 101");
    s
}

#[test]
fn frame_level_violations_get_their_close_codes() {
    let gw = Gateway::start(&["--shards", "2"], &[("MAX_MESSAGE_BYTES", "1024")]);
    let mut by = gw.client("bystander");
    // Message over the limit → 1009.
    let mut s = raw_ws(gw.addr, "/ws?userId=big");
    s.write_all(&masked_frame(0x81, &vec![b'a'; 2000]))
        .expect("write");
    assert_eq!(raw_read_close(&mut s), Some(1009));
    // Invalid UTF-8 in a text frame → 1007.
    let mut s = raw_ws(gw.addr, "/ws?userId=utf");
    s.write_all(&masked_frame(0x81, &[0xff, 0xfe, 0xfd]))
        .expect("write");
    assert_eq!(raw_read_close(&mut s), Some(1007));
    // Protocol violation: reserved bits set → 1002.
    let mut s = raw_ws(gw.addr, "/ws?userId=rsv");
    s.write_all(&masked_frame(0xF1, b"{}")).expect("write");
    assert_eq!(raw_read_close(&mut s), Some(1002));
    // Protocol violation: an unmasked client frame → 1002.
    let mut s = raw_ws(gw.addr, "/ws?userId=unmasked");
    s.write_all(&[0x81, 0x02, b'{', b'}']).expect("write");
    assert_eq!(raw_read_close(&mut s), Some(1002));
    bystander_still_served(&mut by);
}

#[test]
fn bad_json_gets_error_frames_then_4008() {
    let gw = Gateway::start(&["--shards", "2"], &[("MAX_FRAME_ERRORS", "3")]);
    let mut by = gw.client("bystander");
    let mut c = gw.client("sloppy");
    c.send_text("not json");
    let e = c.recv_type("error");
    assert_eq!(e["code"], "bad_frame");
    c.send(&json!({"type":"teleport"}));
    assert_eq!(c.recv_type("error")["code"], "unknown_type");
    // Still served between errors.
    bystander_still_served(&mut c);
    c.send_text("{");
    assert_eq!(c.close_code(), Some(4008));
    bystander_still_served(&mut by);
}
