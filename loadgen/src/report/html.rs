//! `--html`: one self-contained page (no external URL: inline CSS, inline SVG drawn by
//! plotters) with the figures table and the plots: latency percentile distribution (log
//! scale), throughput and connections over time, server memory over time, p99 over time.

use std::fmt::Write as _;

use anyhow::anyhow;
use plotters::prelude::*;

use super::{fmt_value, RunReport};

const W: u32 = 760;
const H: u32 = 340;

/// Renders the report page.
pub fn render(r: &RunReport) -> anyhow::Result<String> {
    let mut page = String::new();
    let title = format!("loadgen {} — {}", r.scenario, r.label);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title><style>\
         body{{font-family:sans-serif;margin:2em;color:#222}} table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}} td:first-child{{text-align:left}}\
         .plots svg{{display:block;margin:1em 0}} code{{word-break:break-all}}</style></head><body>\n<h1>{t}</h1>\n",
        t = esc(&title)
    );
    let m = &r.machine;
    let _ = writeln!(
        page,
        "<p>{} · {} cores · kernel {} · {} · {} worker(s) · {:.1} s</p>",
        esc(&m.date),
        m.cores,
        esc(&m.kernel),
        esc(&m.cpu_model),
        r.workers,
        r.wall_secs
    );
    let params = serde_json::to_string(&r.params).unwrap_or_default();
    let _ = writeln!(page, "<p><code>{}</code></p>", esc(&params));
    page.push_str("<h2>Figures</h2>\n<table><tr><th>figure</th><th>value</th></tr>\n");
    for (k, v) in &r.figures {
        let _ = writeln!(
            page,
            "<tr><td>{}</td><td>{}</td></tr>",
            esc(k),
            esc(&fmt_value(k, *v))
        );
    }
    page.push_str("</table>\n<h2>Plots</h2>\n<div class=\"plots\">\n");
    page.push_str(&latency_plot(r)?);
    page.push_str(&time_plot(
        r,
        "Throughput (messages/s)",
        &[
            ("sent/s", |s| s.sent as f64),
            ("delivered/s", |s| s.delivered as f64),
        ],
    )?);
    page.push_str(&time_plot(
        r,
        "Connections",
        &[
            ("open", |s| s.connected as f64),
            ("new/s", |s| s.connects as f64),
        ],
    )?);
    page.push_str(&time_plot(
        r,
        "p99 latency per second (ms)",
        &[("p99", |s| s.p99_us as f64 / 1000.0)],
    )?);
    if r.targets.iter().any(|t| !t.samples.is_empty()) {
        page.push_str(&memory_plot(r)?);
    } else {
        page.push_str("<p>No target memory: run with <code>--target-pid PID</code>.</p>\n");
    }
    page.push_str("</div></body></html>\n");
    Ok(page)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plot: {e:?}")
}

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

fn latency_plot(r: &RunReport) -> anyhow::Result<String> {
    let curves: Vec<(&str, Vec<(f64, f64)>)> = [
        ("message latency", &r.messages.distribution),
        ("handshake (connect → ready)", &r.connect.distribution),
    ]
    .into_iter()
    .filter(|(_, d)| !d.is_empty())
    // x = 1/(1-q): 1 at the minimum, 10 at p90, 100 at p99, …
    .map(|(name, d)| {
        (
            name,
            d.iter()
                .map(|(q, v)| (1.0 / (1.0 - q).max(1e-9), (*v as f64 / 1000.0).max(0.001)))
                .collect(),
        )
    })
    .collect();
    let all = || curves.iter().flat_map(|(_, c)| c.iter());
    let xmax = all().map(|p| p.0).fold(10.0, f64::max) * 1.2;
    let ymax = all().map(|p| p.1).fold(1.0, f64::max) * 1.5;
    let ymin = all().map(|p| p.1).fold(ymax, f64::min).max(0.001) / 1.5;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Latency by percentile (ms, log scale)", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d((1.0..xmax).log_scale(), (ymin..ymax).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("ms")
            .x_label_formatter(&|x| format!("{}%", trim(100.0 - 100.0 / x)))
            .draw()
            .map_err(err)?;
        for (i, (name, pts)) in curves.iter().enumerate() {
            let c = COLORS[i % COLORS.len()];
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))
                .map_err(err)?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c));
        }
        if curves.is_empty() {
            root.draw_text(
                "no samples",
                &("sans-serif", 16).into_text_style(&root),
                (W as i32 / 2 - 40, H as i32 / 2),
            )
            .map_err(err)?;
        } else {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

fn trim(v: f64) -> String {
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

type Series = (&'static str, fn(&super::Second) -> f64);

fn time_plot(r: &RunReport, title: &str, series: &[Series]) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let tmax = r.timeline.last().map_or(1, |s| s.t).max(1) as f64;
        let ymax = series
            .iter()
            .flat_map(|(_, f)| r.timeline.iter().map(f))
            .fold(1.0, f64::max)
            * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..tmax, 0.0..ymax)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .draw()
            .map_err(err)?;
        for (i, (name, f)) in series.iter().enumerate() {
            let c = COLORS[i % COLORS.len()];
            chart
                .draw_series(LineSeries::new(
                    r.timeline.iter().map(|s| (s.t as f64, f(s))),
                    c.stroke_width(2),
                ))
                .map_err(err)?
                .label(*name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

fn memory_plot(r: &RunReport) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let tmax = r
            .targets
            .iter()
            .flat_map(|t| t.samples.iter().map(|s| s.0))
            .fold(1.0, f64::max);
        let ymax = r
            .targets
            .iter()
            .flat_map(|t| t.samples.iter().map(|s| mib(s.1)))
            .fold(1.0, f64::max)
            * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .caption("Server memory (RSS, MiB)", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..tmax, 0.0..ymax)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .draw()
            .map_err(err)?;
        for (i, t) in r.targets.iter().enumerate() {
            let c = COLORS[i % COLORS.len()];
            chart
                .draw_series(LineSeries::new(
                    t.samples.iter().map(|s| (s.0, mib(s.1))),
                    c.stroke_width(2),
                ))
                .map_err(err)?
                .label(format!("pid {}", t.pid))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}
