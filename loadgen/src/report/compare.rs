//! `loadgen compare A.json B.json …`: every figure side by side, with each run's ratio to the
//! first.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{fmt_value, RunReport};

/// The part of a report `compare` reads (so reports from older or newer loadgen versions
/// still compare).
#[derive(Debug, Deserialize)]
struct Summary {
    label: String,
    scenario: String,
    figures: BTreeMap<String, f64>,
}

/// Reads the reports and renders the comparison table.
pub fn compare(files: &[PathBuf]) -> anyhow::Result<String> {
    let mut reports = Vec::new();
    for f in files {
        let text = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        let r: Summary = serde_json::from_slice(&text)
            .with_context(|| format!("{} is not a loadgen --json report", f.display()))?;
        reports.push(r);
    }
    Ok(render_summaries(&reports))
}

/// The comparison table of already loaded reports.
pub fn render(reports: &[RunReport]) -> String {
    let s: Vec<Summary> = reports
        .iter()
        .map(|r| Summary {
            label: r.label.clone(),
            scenario: r.scenario.clone(),
            figures: r.figures.clone(),
        })
        .collect();
    render_summaries(&s)
}

fn render_summaries(reports: &[Summary]) -> String {
    let names: BTreeSet<&String> = reports.iter().flat_map(|r| r.figures.keys()).collect();
    let width = 16;
    let mut s = String::new();
    let _ = write!(s, "{:<34}", "figure");
    for r in reports {
        let l: String = format!("{} {}", r.scenario, r.label)
            .chars()
            .take(width * 2)
            .collect();
        let _ = write!(s, " {l:>w$}", w = width * 2 - 1);
    }
    s.push('\n');
    for name in names {
        let _ = write!(s, "{name:<34}");
        let base = reports.first().and_then(|r| r.figures.get(name)).copied();
        for (i, r) in reports.iter().enumerate() {
            let cell = match r.figures.get(name) {
                None => "-".to_owned(),
                Some(v) if i == 0 => fmt_value(name, *v),
                Some(v) => match base {
                    Some(b) if b != 0.0 => format!("{} (×{:.2})", fmt_value(name, *v), v / b),
                    _ => fmt_value(name, *v),
                },
            };
            let _ = write!(s, " {cell:>w$}", w = width * 2 - 1);
        }
        s.push('\n');
    }
    s
}
