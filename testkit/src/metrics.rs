//! Reading Prometheus text in assertions.

/// Sum of the samples of metric `name` (exactly that family: `name{…} v` or `name v`) whose
/// line contains `label_filter` (e.g. `outcome="produced"`; `""` for all).
pub fn metric_sum(text: &str, name: &str, label_filter: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| l.contains(label_filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_one_family_by_label() {
        let text =
            "# TYPE a_total counter\na_total{k=\"x\"} 2\na_total{k=\"y\"} 3\na_total_more 7\na 1\n";
        assert_eq!(metric_sum(text, "a_total", ""), 5.0);
        assert_eq!(metric_sum(text, "a_total", "k=\"y\""), 3.0);
        assert_eq!(metric_sum(text, "a", ""), 1.0);
    }
}
