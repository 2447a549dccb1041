//! Benchmarks live in `benches/`; this crate also hosts the baseline server binary.
