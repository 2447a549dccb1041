//! Latency histograms and their wire form between worker and parent.
//!
//! Workers never send percentiles: they send whole HdrHistograms, serialized in the V2 format
//! and base64-encoded on one JSON line, and the parent adds them together. Adding histograms
//! with the same bounds is exact (counts per bucket add up), so the merged p99.9 is the p99.9
//! of all samples, which averaging per-worker percentiles would not give.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency a histogram records, in microseconds (one hour): larger values saturate.
pub const LATENCY_MAX_US: u64 = 3_600_000_000;
/// Significant decimal digits kept by every histogram (0.1 % relative error).
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// Why a serialized histogram could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum HistogramError {
    /// The text was not valid base64.
    #[error("histogram is not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// The bytes were not a V2 histogram.
    #[error("histogram is not V2: {0}")]
    Decode(String),
    /// The histogram could not be added (incompatible bounds).
    #[error("histogram merge failed: {0}")]
    Add(String),
}

/// A new latency histogram (1 µs .. [`LATENCY_MAX_US`], [`SIGNIFICANT_DIGITS`]).
pub fn new_latency() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, LATENCY_MAX_US, SIGNIFICANT_DIGITS) {
        Ok(h) => h,
        // The bounds are constants that hdrhistogram accepts; this arm is unreachable.
        Err(e) => panic!("constant histogram bounds rejected: {e}"),
    }
}

/// Records one latency in microseconds; 0 is counted as 1 µs and huge values saturate.
pub fn record(h: &mut Histogram<u64>, micros: u64) {
    h.saturating_record(micros.clamp(1, LATENCY_MAX_US));
}

/// Serializes a histogram (V2 format, base64) for one JSON line.
pub fn encode(h: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    // Writing into a Vec cannot fail; a failure here would be a bug in hdrhistogram.
    if let Err(e) = V2Serializer::new().serialize(h, &mut bytes) {
        panic!("V2 serialization into memory failed: {e:?}");
    }
    STANDARD.encode(bytes)
}

/// Reads a histogram written by [`encode`].
pub fn decode(text: &str) -> Result<Histogram<u64>, HistogramError> {
    let bytes = STANDARD.decode(text)?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| HistogramError::Decode(format!("{e:?}")))
}

/// Adds the serialized histogram `text` into `acc` (exact: bucket counts add up).
pub fn merge_into(acc: &mut Histogram<u64>, text: &str) -> Result<(), HistogramError> {
    let h = decode(text)?;
    acc.add(&h)
        .map_err(|e| HistogramError::Add(format!("{e:?}")))
}

/// The figures a report shows for one histogram, in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Number of samples.
    pub count: u64,
    /// Smallest sample.
    pub min: u64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest sample.
    pub max: u64,
}

impl Percentiles {
    /// Reads the figures out of a histogram (all zero when it is empty).
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            min: h.min(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// Points of the percentile distribution (quantile, value µs) for the report's log-scale plot:
/// the classic HdrHistogram view, with quantiles 0, 0.5, 0.75, 0.875, … up to the maximum.
pub fn distribution(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    let mut out = Vec::new();
    if h.is_empty() {
        return out;
    }
    let mut q = 0.0_f64;
    // 24 halvings reach 1 - 6e-8: past any sample count a run produces.
    for _ in 0..24 {
        out.push((q, h.value_at_quantile(q)));
        q = 1.0 - (1.0 - q) / 2.0;
        if (1.0 - q) * (h.len() as f64) < 0.5 {
            break;
        }
    }
    out.push((1.0 - 0.5 / h.len() as f64, h.max()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip_keeps_every_count() {
        let mut h = new_latency();
        for v in [1, 5, 5, 900, 12_345, 7_000_000] {
            record(&mut h, v);
        }
        let back = decode(&encode(&h)).expect("decodes");
        assert_eq!(back, h);
    }

    #[test]
    fn zero_and_huge_values_are_clamped_not_lost() {
        let mut h = new_latency();
        record(&mut h, 0);
        record(&mut h, u64::MAX);
        assert_eq!(h.len(), 2);
        assert!(h.max() >= LATENCY_MAX_US / 2);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode("not base64!").is_err());
        assert!(decode(&STANDARD.encode(b"\x01\x02junk")).is_err());
    }

    #[test]
    fn distribution_ends_at_max() {
        let mut h = new_latency();
        for v in 1..=1000 {
            record(&mut h, v);
        }
        let d = distribution(&h);
        assert_eq!(d.first().map(|p| p.0), Some(0.0));
        assert_eq!(d.last().map(|p| p.1), Some(h.max()));
        assert!(d.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
    }
}
