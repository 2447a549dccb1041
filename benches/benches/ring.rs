//! Ring benchmarks: one function per question (see `benches/RESULTS.md`, section `ring`).
//!
//! - `lookup_10_nodes` / `lookup_100_nodes` / `lookup_1000_nodes`: how fast is
//!   `ring.owner(user)` (hash included) at 150 vnodes? Goal: ≥ 10 M/s at 100 nodes.
//! - `lookup_by_vnodes`: what does `vnodes_per_weight` (10 / 150 / 1000) cost a lookup?
//! - `build_100_nodes`: how long does building a 100-node ring from scratch take?
//! - `apply_add_node_100`: how long does one `AddNode` on a 100-node ring take?
//! - `balance_10_nodes`: how even is the load over 10 equal nodes at 10 / 150 / 1000
//!   vnodes (printed: exact max/mean of hash-space shares, max/mean of 1 M keys, table
//!   bytes)? Goal: max/mean ≤ 1.10 at 1000. Timed part: `shares()` at 150.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rtc_ring::{simulate, Diff, Node, Ring, DEFAULT_VNODES_PER_WEIGHT};

/// Distinct keys cycled through, so lookups hit the whole table rather than one cached arc.
const KEYS: usize = 4096;

fn add_diffs(n: usize) -> Vec<Diff> {
    (0..n)
        .map(|i| {
            Diff::AddNode(Node::new(
                format!("node-{i}"),
                1,
                format!("ws://10.0.{}.{}:8080/ws", i / 256, i % 256),
            ))
        })
        .collect()
}

fn ring(nodes: usize, vnodes: u32) -> Ring {
    Ring::new(vnodes)
        .apply_all(&add_diffs(nodes))
        .expect("valid ring")
}

fn keys() -> Vec<String> {
    (0..KEYS).map(|i| format!("user-{i}")).collect()
}

fn bench_lookup(c: &mut Criterion, name: &str, nodes: usize) {
    let r = ring(nodes, DEFAULT_VNODES_PER_WEIGHT);
    let keys = keys();
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("owner", |b| {
        b.iter(|| {
            i = (i + 1) & (KEYS - 1);
            black_box(r.owner(black_box(&keys[i])))
        })
    });
    g.finish();
}

fn lookup_10_nodes(c: &mut Criterion) {
    bench_lookup(c, "lookup_10_nodes", 10);
}

fn lookup_100_nodes(c: &mut Criterion) {
    bench_lookup(c, "lookup_100_nodes", 100);
}

fn lookup_1000_nodes(c: &mut Criterion) {
    bench_lookup(c, "lookup_1000_nodes", 1000);
}

fn lookup_by_vnodes(c: &mut Criterion) {
    let keys = keys();
    let mut g = c.benchmark_group("lookup_by_vnodes");
    g.throughput(Throughput::Elements(1));
    for vnodes in [10u32, 150, 1000] {
        let r = ring(10, vnodes);
        let mut i = 0usize;
        g.bench_with_input(BenchmarkId::new("10_nodes", vnodes), &r, |b, r| {
            b.iter(|| {
                i = (i + 1) & (KEYS - 1);
                black_box(r.owner(black_box(&keys[i])))
            })
        });
    }
    g.finish();
}

fn build_100_nodes(c: &mut Criterion) {
    let diffs = add_diffs(100);
    c.bench_function("build_100_nodes", |b| {
        b.iter(|| Ring::new(DEFAULT_VNODES_PER_WEIGHT).apply_all(black_box(&diffs)))
    });
}

fn apply_add_node_100(c: &mut Criterion) {
    let r = ring(100, DEFAULT_VNODES_PER_WEIGHT);
    let add = Diff::AddNode(Node::new("node-new", 1, "ws://10.1.0.1:8080/ws"));
    c.bench_function("apply_add_node_100", |b| {
        b.iter(|| r.apply(black_box(&add)))
    });
}

fn balance_10_nodes(c: &mut Criterion) {
    println!("balance over 10 equal nodes (exact = hash-space arc lengths; keys = 1 M user-N):");
    println!("vnodes  exact max/mean  keys max/mean  table bytes  points");
    for vnodes in [10u32, 150, 1000] {
        let r = ring(10, vnodes);
        let shares = r.shares();
        let max = shares.iter().map(|s| s.1).fold(0.0, f64::max);
        let exact = max * shares.len() as f64;
        let sim = simulate(10, vnodes, 1_000_000, 0, 0).expect("valid simulation");
        println!(
            "{vnodes:>6}  {exact:>14.4}  {:>13.4}  {:>11}  {:>6}",
            sim.before_max_over_mean,
            r.table_bytes(),
            r.point_count()
        );
    }
    let r = ring(10, DEFAULT_VNODES_PER_WEIGHT);
    c.bench_function("balance_10_nodes/shares_150", |b| {
        b.iter(|| black_box(&r).shares())
    });
}

criterion_group!(
    benches,
    lookup_10_nodes,
    lookup_100_nodes,
    lookup_1000_nodes,
    lookup_by_vnodes,
    build_100_nodes,
    apply_add_node_100,
    balance_10_nodes
);
criterion_main!(benches);
