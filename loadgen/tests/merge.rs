//! Histograms merged across workers are exact: the merged histogram equals the one a single
//! process recording every sample would have, and a real multi-worker run's merged latency
//! histogram counts every delivered message.

mod support;

use loadgen::stats::histogram::{decode, encode, merge_into, new_latency, record, Percentiles};

#[test]
fn merge_of_serialized_worker_histograms_equals_one_histogram_of_all_samples() {
    let mut all = new_latency();
    let mut merged = new_latency();
    // Four "workers" with very different latency shapes, including outliers.
    for w in 0..4u64 {
        let mut h = new_latency();
        for i in 0..10_000u64 {
            let v = match w {
                0 => 100 + i % 50,
                1 => 1_000 + (i * 7919) % 9_000,
                2 => {
                    if i % 1000 == 0 {
                        2_000_000
                    } else {
                        300
                    }
                }
                _ => 1 + i,
            };
            record(&mut h, v);
            record(&mut all, v);
        }
        let wire = encode(&h);
        assert_eq!(decode(&wire).expect("round trip"), h);
        merge_into(&mut merged, &wire).expect("merges");
    }
    assert_eq!(merged, all, "bucket counts add up exactly");
    assert_eq!(Percentiles::of(&merged), Percentiles::of(&all));
    for q in [0.5, 0.9, 0.99, 0.999, 0.9999, 1.0] {
        assert_eq!(
            merged.value_at_quantile(q),
            all.value_at_quantile(q),
            "quantile {q}"
        );
    }
}

#[test]
fn three_worker_run_merges_every_latency_sample() {
    let server = support::baseline();
    let url = format!("ws://{}/ws", server.addr);
    let r = support::run_json(
        "direct",
        &[
            "--url",
            &url,
            "--users",
            "30",
            "--rate",
            "600",
            "--duration",
            "2",
            "--workers",
            "3",
        ],
        None,
    );
    assert_eq!(r["workers"], 3);
    let delivered = r["counters"]["delivered"].as_u64().expect("delivered");
    assert!(delivered > 0);
    assert_eq!(
        r["messages"]["latencyUs"]["count"].as_u64(),
        Some(delivered)
    );
    // The per-second histograms merged in the timeline also cover every delivery.
    assert!(r["timeline"].as_array().is_some_and(|t| !t.is_empty()));
}
