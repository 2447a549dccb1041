//! `--verify`'s checker detects a dropped, a duplicated and a reordered message.

use loadgen::verify::{StreamVerifier, VerifySummary};

fn stream(acked: &[u64], delivered: &[u64]) -> StreamVerifier {
    let mut v = StreamVerifier::default();
    for s in acked {
        v.on_acked(*s);
    }
    for s in delivered {
        v.on_delivered(*s);
    }
    v
}

#[test]
fn detects_dropped_duplicated_and_reordered_messages() {
    let acked: Vec<u64> = (0..10).collect();
    let clean = stream(&acked, &acked).verdict();
    assert!(clean.is_clean());

    let dropped = stream(&acked, &[0, 1, 2, 3, 5, 6, 7, 8, 9]).verdict();
    assert_eq!(
        (dropped.lost, dropped.duplicated, dropped.out_of_order),
        (1, 0, 0)
    );

    let duplicated = stream(&acked, &[0, 1, 2, 3, 4, 4, 5, 6, 7, 8, 9]).verdict();
    assert_eq!(
        (
            duplicated.lost,
            duplicated.duplicated,
            duplicated.out_of_order
        ),
        (0, 1, 0)
    );

    let reordered = stream(&acked, &[0, 1, 3, 2, 4, 5, 6, 7, 8, 9]).verdict();
    assert_eq!(
        (reordered.lost, reordered.duplicated, reordered.out_of_order),
        (0, 0, 1)
    );

    let mut summary = VerifySummary::default();
    for (user, v) in [
        ("clean", clean),
        ("d", dropped),
        ("u", duplicated),
        ("r", reordered),
    ] {
        summary.add_stream(user, v);
    }
    assert_eq!(summary.streams, 4);
    assert_eq!(
        (
            summary.totals.lost,
            summary.totals.duplicated,
            summary.totals.out_of_order
        ),
        (1, 1, 1)
    );
    let named: Vec<&str> = summary.problems.iter().map(|p| p.user.as_str()).collect();
    assert_eq!(named, ["d", "u", "r"]);
}
