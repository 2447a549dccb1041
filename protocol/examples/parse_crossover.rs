//! Where does the simd-json client-frame parser stop beating serde_json? Prints, per frame
//! size, the best per-parse time of 60 interleaved runs of 5,000 parses each. The minimum
//! is robust to other processes on a shared machine, where criterion's mean is not; this
//! is what `rtc_protocol::frames::SIMD_PARSE_MAX_LEN` was chosen from.
//!
//! `cargo run --release -p rtc-protocol --example parse_crossover`

use rtc_protocol::frames::{parse_with_serde, ClientFrameParser};
use std::hint::black_box;
use std::time::Instant;

fn frame(size: usize) -> Vec<u8> {
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

fn main() {
    println!(
        "frame size, best ns/parse: simd-json tape | serde_json RawValue | ClientFrameParser::parse"
    );
    let mut p = ClientFrameParser::new();
    for size in [100usize, 200, 300, 400, 700, 1229, 4096] {
        let input = frame(size);
        let (mut best_simd, mut best_serde, mut best_auto) = (f64::MAX, f64::MAX, f64::MAX);
        for _ in 0..60 {
            let n = 5000;
            let t = Instant::now();
            for _ in 0..n {
                black_box(p.parse_simd(black_box(&input)).is_ok());
            }
            best_simd = best_simd.min(t.elapsed().as_nanos() as f64 / n as f64);
            let t = Instant::now();
            for _ in 0..n {
                black_box(parse_with_serde(black_box(&input)).is_ok());
            }
            best_serde = best_serde.min(t.elapsed().as_nanos() as f64 / n as f64);
            let t = Instant::now();
            for _ in 0..n {
                black_box(p.parse(black_box(&input)).is_ok());
            }
            best_auto = best_auto.min(t.elapsed().as_nanos() as f64 / n as f64);
        }
        println!(
            "{:5} B  simd {:7.1} ns  serde {:7.1} ns  ClientFrameParser::parse {:7.1} ns",
            input.len(),
            best_simd,
            best_serde,
            best_auto
        );
    }
}
