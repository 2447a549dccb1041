//! Hot paths of `rtc-protocol`: tokens, client-frame parsing, server-frame encoding and the
//! relay envelope. One function per question; figures go to `benches/RESULTS.md`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rtc_protocol::frames::{parse_with_serde, ClientFrame, ClientFrameParser, ServerFrame};
use rtc_protocol::relay::{DestKind, Envelope, EnvelopeKind};
use rtc_protocol::token::{sign_connect, verify_connect, ConnectClaims, TokenKeys};

fn claims() -> ConnectClaims {
    ConnectClaims {
        user: "user-0012345".into(),
        node: "node-7".into(),
        ring_version: 42,
        expires_at: 2_000_000_000,
    }
}

fn token_sign(c: &mut Criterion) {
    let keys = TokenKeys::new(b"bench-secret-0123456789abcdef", None);
    let claims = claims();
    c.bench_function("token_sign", |b| {
        b.iter(|| sign_connect(&keys, black_box(&claims)))
    });
}

fn token_verify(c: &mut Criterion) {
    let keys = TokenKeys::new(b"bench-secret-0123456789abcdef", Some(b"previous-secret"));
    let token = sign_connect(&keys, &claims());
    c.bench_function("token_verify", |b| {
        b.iter(|| verify_connect(&keys, black_box(&token), 1_700_000_000))
    });
}

/// A direct message of about `size` bytes in total.
fn message_frame(size: usize) -> Vec<u8> {
    let head = r#"{"type":"message","to":"user-0012345","clientMsgId":"c-000001","payload":{"n":17,"text":""#;
    let tail = r#""}}"#;
    let fill = size.saturating_sub(head.len() + tail.len());
    let text: String = "lorem ipsum dolor sit amet, "
        .chars()
        .cycle()
        .take(fill)
        .collect();
    format!("{head}{text}{tail}").into_bytes()
}

fn parse_client_message_simd_vs_serde(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse_client_message_simd_vs_serde");
    for size in [100usize, 1229, 4096] {
        let input = message_frame(size);
        assert!(matches!(
            ClientFrame::parse(&input),
            Ok(ClientFrame::Message { .. })
        ));
        g.throughput(Throughput::Bytes(input.len() as u64));
        let mut parser = ClientFrameParser::new();
        g.bench_with_input(
            BenchmarkId::new("simd_json_tape", input.len()),
            &input,
            |b, i| b.iter(|| parser.parse_simd(black_box(i)).map(|f| f.type_str())),
        );
        g.bench_with_input(
            BenchmarkId::new("serde_json_raw_value", input.len()),
            &input,
            |b, i| b.iter(|| parse_with_serde(black_box(i)).map(|f| f.type_str())),
        );
        // What a shard runs: simd-json up to SIMD_PARSE_MAX_LEN, serde_json above.
        let mut shard = ClientFrameParser::new();
        g.bench_with_input(
            BenchmarkId::new("shard_parser", input.len()),
            &input,
            |b, i| b.iter(|| shard.parse(black_box(i)).map(|f| f.type_str())),
        );
    }
    g.finish();
}

fn encode_deliver(c: &mut Criterion) {
    let payload = br#"{"n":17,"text":"lorem ipsum dolor sit amet, lorem ipsum dolor sit"}"#;
    let frame = ServerFrame::Deliver {
        msg_id: 123_456_789,
        offset: 98_765,
        from: "user-0012345",
        payload,
        ts: 1_700_000_000_123,
    };
    let mut out = Vec::with_capacity(256);
    c.bench_function("encode_deliver", |b| {
        b.iter(|| {
            out.clear();
            black_box(&frame).encode(&mut out);
            out.len()
        })
    });
}

fn relay_binary_vs_json(c: &mut Criterion) {
    let payload = br#"{"n":17,"text":"lorem ipsum dolor sit amet, lorem ipsum dolor sit"}"#;
    let env = Envelope {
        kind: EnvelopeKind::Message,
        dest_kind: DestKind::User,
        dest: "user-0054321",
        from: "user-0012345",
        client_msg_id: "c-000001",
        msg_id: 123_456_789,
        offset: 98_765,
        ts: 1_700_000_000_123,
        payload,
    };
    let mut g = c.benchmark_group("relay_binary_vs_json");
    let mut out = Vec::with_capacity(512);
    g.bench_function("binary_encode_decode", |b| {
        b.iter(|| {
            out.clear();
            black_box(&env).encode(&mut out);
            Envelope::decode(&out).map(|e| e.msg_id)
        })
    });
    g.bench_function("json_encode_decode", |b| {
        b.iter(|| {
            out.clear();
            black_box(&env).encode_json(&mut out);
            Envelope::decode_json(&out).map(|e| e.msg_id)
        })
    });
    let (mut bin, mut json) = (Vec::new(), Vec::new());
    env.encode(&mut bin);
    env.encode_json(&mut json);
    println!(
        "relay envelope sizes: binary {} B, json {} B",
        bin.len(),
        json.len()
    );
    g.finish();
}

criterion_group!(
    benches,
    token_sign,
    token_verify,
    parse_client_message_simd_vs_serde,
    encode_deliver,
    relay_binary_vs_json
);
criterion_main!(benches);
