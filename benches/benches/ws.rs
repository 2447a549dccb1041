//! WebSocket codec hot paths: what one received frame, one sent frame and one handshake cost.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rtc_protocol::http::{self, Parsed};
use rtc_protocol::ws::{
    apply_mask, encode_frame, encode_frame_masked, Limits, Message, MessageAssembler, OpCode, Role,
};

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// One masked text frame of `len` bytes of JSON-ish ASCII, as a client sends it.
fn masked_text_frame(len: usize) -> Vec<u8> {
    let payload: Vec<u8> = b"{\"type\":\"message\",\"to\":\"u1\",\"payload\":\"abc\"}"
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect();
    let mut frame = Vec::new();
    encode_frame_masked(OpCode::Text, true, &payload, MASK, &mut frame);
    frame
}

/// Decoding a frame into a message: header checks, unmask in place, UTF-8 validation.
/// Each iteration first copies the frame into the scratch buffer (unmasking is destructive),
/// as a socket read would.
fn decode(c: &mut Criterion, name: &str, len: usize) {
    let frame = masked_text_frame(len);
    let mut scratch = frame.clone();
    let mut asm = MessageAssembler::new(Role::Server, Limits::default());
    let mut g = c.benchmark_group("ws");
    g.throughput(Throughput::Bytes(frame.len() as u64));
    g.bench_function(name, |b| {
        b.iter(|| {
            scratch.copy_from_slice(&frame);
            let feed = asm.feed(black_box(&mut scratch)).expect("valid frame");
            match feed.message {
                Some(Message::Text(s)) => black_box(s.len()),
                _ => unreachable!("one text message per frame"),
            }
        })
    });
    g.finish();
}

fn decode_masked_32b(c: &mut Criterion) {
    decode(c, "decode_masked_32b", 32);
}

fn decode_masked_1k(c: &mut Criterion) {
    decode(c, "decode_masked_1k", 1024);
}

fn unmask_64k(c: &mut Criterion) {
    let mut buf = vec![0x5au8; 64 * 1024];
    let mut g = c.benchmark_group("ws");
    g.throughput(Throughput::Bytes(buf.len() as u64));
    g.bench_function("unmask_64k", |b| {
        b.iter(|| apply_mask(black_box(&mut buf), black_box(MASK), 0))
    });
    g.finish();
}

fn encode_32b(c: &mut Criterion) {
    let payload = [b'x'; 32];
    let mut out = Vec::with_capacity(64);
    c.benchmark_group("ws").bench_function("encode_32b", |b| {
        b.iter(|| {
            out.clear();
            encode_frame(OpCode::Text, true, black_box(&payload), &mut out);
            black_box(out.len())
        })
    });
}

/// A browser-like upgrade request: parse, validate the upgrade, read the user id.
fn parse_upgrade_request(c: &mut Criterion) {
    let req: &[u8] = b"GET /ws?userId=user-123456&lastOffset=42 HTTP/1.1\r\n\
Host: gw-1.example.com:8080\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: https://app.example.com\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
\r\n";
    let mut g = c.benchmark_group("ws");
    g.throughput(Throughput::Bytes(req.len() as u64));
    g.bench_function("parse_upgrade_request", |b| {
        b.iter(|| match http::parse_request(black_box(req)) {
            Ok(Parsed::Complete(r)) => {
                let up = r
                    .websocket()
                    .expect("valid upgrade")
                    .expect("is an upgrade");
                let user = r.query_param("userId").expect("valid query");
                black_box((up.key.len(), user.map(|u| u.len())))
            }
            _ => unreachable!("complete request"),
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    decode_masked_32b,
    decode_masked_1k,
    unmask_64k,
    encode_32b,
    parse_upgrade_request
);
criterion_main!(benches);
