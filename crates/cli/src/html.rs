//! Self-contained HTML reports (`--html FILE` on `run`, `compare` and `sweep`): one file
//! with inline CSS and SVG, no script and nothing fetched from the network, so it opens
//! anywhere and can be attached to a mail or a CI run.
//!
//! - `run`/`compare`: per-checkpoint bar plots of the counters across variants, line plots of
//!   headline observables over the checkpoints, the comparison table (differences first) and
//!   an address-space map per mapping and checkpoint — a strip coloured by what backs each
//!   page (none, zero, huge zero, PMD THP, mTHP by order, order-0 anon, marker, swap), drawn
//!   from the run-length page map in at most `MAP_WIDTH` rectangles whatever the mapping's
//!   size (runs narrower than a pixel are merged into one bucket, coloured by its majority
//!   and titled with its mix), each with a hover title giving its range;
//! - `sweep`: one plot per observable that varies, observable vs the first numeric axis,
//!   one line per value of the other axes (the kernel profile first), and a variant table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use thpsim_scenario::engine::RunResult;

use crate::obs::{self, Val};
use crate::sweep::{JsonHeader, VariantOut};

/// Width of an address-space strip in SVG units (pixels at 100 %).
pub const MAP_WIDTH: f64 = 1000.0;
const MAP_HEIGHT: f64 = 22.0;

/// Series colours (Tableau 10).
const PALETTE: &[&str] = &[
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The colour of a page-map label (`thp_pte:o4` by order: light to dark orange).
pub fn backing_colour(label: &str) -> String {
    if let Some(o) = label.strip_prefix("thp_pte:o") {
        let o: u32 = o.parse().unwrap_or(4);
        // Orders 2..=8: from #fdd0a2 to #a63603.
        let t = (o.clamp(2, 8) - 2) as f64 / 6.0;
        let mix = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * t).round() as u8;
        return format!(
            "#{:02x}{:02x}{:02x}",
            mix(0xfd, 0xa6),
            mix(0xd0, 0x36),
            mix(0xa2, 0x03)
        );
    }
    match label {
        "none" => "#f0f0f0",
        "zero" => "#9ecae1",
        "huge_zero" => "#3182bd",
        "thp_pmd" => "#31a354",
        "thp_pte" => "#fd8d3c",
        "anon" => "#de2d26",
        "marker" => "#756bb1",
        "swap" => "#636363",
        _ => "#000000",
    }
    .to_string()
}

fn human_bytes(b: u64) -> String {
    const U: &[(&str, u64)] = &[
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (n, s) in U {
        if b >= *s && b % (*s / 1024).max(1) == 0 {
            let v = b as f64 / *s as f64;
            return if v.fract() == 0.0 {
                format!("{v:.0} {n}")
            } else {
                format!("{v:.2} {n}")
            };
        }
    }
    format!("{b} B")
}

/// Draws one strip rectangle: (svg, first page, end page, colour, opacity, hover title).
type DrawRect<'a> = dyn FnMut(&mut String, u64, u64, &str, f64, String) + 'a;

/// One strip: the run-length map drawn in at most `MAP_WIDTH` buckets.
pub fn map_svg(name: &str, pages: &[(String, u64)]) -> String {
    let total: u64 = pages.iter().map(|(_, n)| n).sum();
    let mut o = String::new();
    let _ = write!(
        o,
        "<svg class=\"asmap\" data-mapping=\"{}\" data-pages=\"{total}\" viewBox=\"0 0 {MAP_WIDTH} {MAP_HEIGHT}\" width=\"{MAP_WIDTH}\" height=\"{MAP_HEIGHT}\" preserveAspectRatio=\"none\">",
        esc(name)
    );
    if total == 0 {
        o.push_str("</svg>");
        return o;
    }
    let px = total as f64 / MAP_WIDTH; // pages per unit
    let range = |from: u64, to: u64| {
        format!(
            "{:#x}–{:#x} ({})",
            from * 4096,
            to * 4096 - 1,
            human_bytes((to - from) * 4096)
        )
    };
    let mut rects = 0usize;
    let mut rect = |o: &mut String,
                    from: u64,
                    to: u64,
                    colour: &str,
                    opacity: f64,
                    title: String| {
        let x = from as f64 / px;
        let w = ((to - from) as f64 / px).max(0.5);
        rects += 1;
        let op = if opacity < 1.0 {
            format!(" fill-opacity=\"{opacity:.2}\"")
        } else {
            String::new()
        };
        let _ = write!(
            o,
            "<rect x=\"{x:.2}\" y=\"0\" width=\"{w:.2}\" height=\"{MAP_HEIGHT}\" fill=\"{colour}\"{op}><title>{}</title></rect>",
            esc(&title)
        );
    };
    // A bucket of sub-pixel runs: its start and the pages of each label in it.
    let mut bucket: Option<(u64, BTreeMap<&str, u64>)> = None;
    let flush = |o: &mut String,
                 bucket: &mut Option<(u64, BTreeMap<&str, u64>)>,
                 end: u64,
                 rect: &mut DrawRect| {
        if let Some((start, mix)) = bucket.take() {
            // The largest backed class, so that sparse THPs or zero pages in a mostly
            // empty stretch stay visible; its opacity is the bucket's backed share.
            let backed: u64 = mix
                .iter()
                .filter(|(l, _)| **l != "none")
                .map(|(_, n)| n)
                .sum();
            let top = mix
                .iter()
                .filter(|(l, _)| backed == 0 || **l != "none")
                .max_by_key(|(_, n)| **n)
                .map(|(l, _)| *l)
                .expect("a bucket has runs");
            let all: u64 = mix.values().sum();
            let opacity = if backed == 0 {
                1.0
            } else {
                (backed as f64 / all as f64).max(0.35)
            };
            let parts: Vec<String> = mix.iter().map(|(l, n)| format!("{l} {n}")).collect();
            let title = format!("{}: mixed, pages {}", range(start, end), parts.join(", "));
            rect(o, start, end, &backing_colour(top), opacity, title);
        }
    };
    let mut pos = 0u64;
    for (label, n) in pages {
        let (from, to) = (pos, pos + n);
        pos = to;
        let wide = (*n as f64) >= px;
        if wide {
            flush(&mut o, &mut bucket, from, &mut rect);
            rect(
                &mut o,
                from,
                to,
                &backing_colour(label),
                1.0,
                format!("{}: {label}, {n} pages", range(from, to)),
            );
            continue;
        }
        let b = bucket.get_or_insert_with(|| (from, BTreeMap::new()));
        *b.1.entry(label.as_str()).or_insert(0) += n;
        if (to - b.0) as f64 >= px {
            flush(&mut o, &mut bucket, to, &mut rect);
        }
    }
    flush(&mut o, &mut bucket, pos, &mut rect);
    let _ = rects;
    o.push_str("</svg>");
    o
}

fn legend() -> String {
    let mut o = String::from("<div class=\"legend\">");
    let mut labels: Vec<String> = ["none", "zero", "huge_zero", "thp_pmd"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    labels.extend((2..=8).map(|o| format!("thp_pte:o{o}")));
    labels.extend(["anon", "marker", "swap"].iter().map(|s| s.to_string()));
    for l in labels {
        let _ = write!(
            o,
            "<span><i style=\"background:{}\"></i>{}</span>",
            backing_colour(&l),
            esc(&l)
        );
    }
    o.push_str("</div>");
    o
}

fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// A line plot: x positions (numeric or categorical), one polyline per series.
pub fn line_plot(
    title: &str,
    kind: &str,
    x_label: &str,
    xs: &[String],
    series: &[(String, Vec<Option<f64>>)],
) -> String {
    let (w, h, ml, mr, mt, mb) = (460.0, 250.0, 56.0, 12.0, 26.0, 40.0);
    let numeric: Option<Vec<f64>> = xs.iter().map(|x| x.parse::<f64>().ok()).collect();
    let xpos: Vec<f64> = match &numeric {
        Some(v) if v.len() > 1 => {
            let (lo, hi) = (
                v.iter().cloned().fold(f64::MAX, f64::min),
                v.iter().cloned().fold(f64::MIN, f64::max),
            );
            v.iter()
                .map(|x| if hi > lo { (x - lo) / (hi - lo) } else { 0.5 })
                .collect()
        }
        _ => (0..xs.len())
            .map(|i| {
                if xs.len() > 1 {
                    i as f64 / (xs.len() - 1) as f64
                } else {
                    0.5
                }
            })
            .collect(),
    };
    let all: Vec<f64> = series
        .iter()
        .flat_map(|(_, v)| v.iter().flatten().cloned())
        .collect();
    let ymin = all.iter().cloned().fold(0.0f64, f64::min);
    let mut ymax = all.iter().cloned().fold(0.0f64, f64::max);
    if ymax <= ymin {
        ymax = ymin + 1.0;
    }
    let px = |x: f64| ml + x * (w - ml - mr);
    let py = |y: f64| mt + (1.0 - (y - ymin) / (ymax - ymin)) * (h - mt - mb);
    let mut o = figure_open("plotbox", kind, title, w, h);
    for i in 0..=4 {
        let y = ymin + (ymax - ymin) * i as f64 / 4.0;
        let _ = write!(
            o,
            "<line x1=\"{ml}\" x2=\"{}\" y1=\"{y0:.1}\" y2=\"{y0:.1}\" class=\"grid\"/><text x=\"{}\" y=\"{:.1}\" class=\"yl\">{}</text>",
            w - mr,
            ml - 4.0,
            py(y) + 4.0,
            fmt_num(y),
            y0 = py(y)
        );
    }
    for (i, x) in xs.iter().enumerate() {
        let _ = write!(
            o,
            "<text x=\"{:.1}\" y=\"{}\" class=\"xl\">{}</text>",
            px(xpos[i]),
            h - mb + 14.0,
            esc(x)
        );
    }
    let _ = write!(
        o,
        "<text x=\"{}\" y=\"{}\" class=\"xt\">{}</text>",
        (ml + w - mr) / 2.0,
        h - 6.0,
        esc(x_label)
    );
    for (si, (name, vals)) in series.iter().enumerate() {
        let c = PALETTE[si % PALETTE.len()];
        let pts: Vec<String> = vals
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| format!("{:.1},{:.1}", px(xpos[i]), py(v))))
            .collect();
        let _ = write!(
            o,
            "<polyline class=\"series\" data-series=\"{}\" fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" stroke-dasharray=\"{}\" points=\"{}\"/>",
            esc(name),
            // Later series dashed, so that one drawn over an equal one still shows.
            ["none", "6 3", "2 3", "8 3 2 3"][si % 4],
            pts.join(" ")
        );
        for (i, v) in vals.iter().enumerate() {
            if let Some(v) = v {
                let _ = write!(
                    o,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{c}\"><title>{}: {} = {}</title></circle>",
                    px(xpos[i]),
                    py(*v),
                    esc(name),
                    esc(&xs[i]),
                    fmt_num(*v)
                );
            }
        }
    }
    figure_close(&mut o, series.iter().map(|(n, _)| n.as_str()));
    o
}

/// Horizontal bars: one row per observable, one bar per variant, each row scaled to its
/// own largest magnitude (counters differ by orders of magnitude).
pub fn bars_plot(title: &str, rows: &[(String, Vec<i64>)], variants: &[String]) -> String {
    let nv = variants.len().max(1) as f64;
    let (bar, gap, lw, w) = (9.0, 8.0, 300.0, 760.0);
    let rh = bar * nv + gap;
    let h = 30.0 + rh * rows.len() as f64;
    let mut o = figure_open("plotbox wide", "checkpoint", title, w, h);
    let zero = lw + (w - lw - 80.0) / 2.0;
    let half = (w - lw - 80.0) / 2.0;
    for (ri, (name, vals)) in rows.iter().enumerate() {
        let y0 = 26.0 + ri as f64 * rh;
        let max = vals
            .iter()
            .map(|v| v.unsigned_abs())
            .max()
            .unwrap_or(0)
            .max(1) as f64;
        let _ = write!(
            o,
            "<text x=\"{}\" y=\"{:.1}\" class=\"rl\">{}</text><line x1=\"{zero}\" x2=\"{zero}\" y1=\"{y0}\" y2=\"{:.1}\" class=\"axis\"/>",
            lw - 6.0,
            y0 + rh / 2.0,
            esc(name),
            y0 + rh - gap
        );
        for (vi, v) in vals.iter().enumerate() {
            let len = *v as f64 / max * half;
            let x = if len < 0.0 { zero + len } else { zero };
            let _ = write!(
                o,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bar}\" fill=\"{}\"><title>{}: {}</title></rect><text x=\"{:.1}\" y=\"{:.1}\" class=\"bv\">{}</text>",
                y0 + vi as f64 * bar,
                len.abs().max(0.5),
                PALETTE[vi % PALETTE.len()],
                esc(&variants[vi]),
                v,
                zero + half + 4.0,
                y0 + vi as f64 * bar + bar - 1.0,
                fmt_num(*v as f64)
            );
        }
    }
    figure_close(&mut o, variants.iter().map(|n| n.as_str()));
    o
}

/// A plot's figure and SVG opening, with its title.
fn figure_open(class: &str, kind: &str, title: &str, w: f64, h: f64) -> String {
    format!(
        "<figure class=\"{class}\"><svg class=\"plot\" data-kind=\"{kind}\" data-title=\"{t}\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\"><text x=\"{}\" y=\"16\" class=\"t\">{t}</text>",
        w / 2.0,
        t = esc(title)
    )
}

/// Closes a plot's SVG and figure with a legend of its series, in palette order.
fn figure_close<'a>(o: &mut String, names: impl Iterator<Item = &'a str>) {
    o.push_str("</svg><figcaption>");
    for (i, name) in names.enumerate() {
        let _ = write!(
            o,
            "<span><i style=\"background:{}\"></i>{}</span>",
            PALETTE[i % PALETTE.len()],
            esc(name)
        );
    }
    o.push_str("</figcaption></figure>");
}

const CSS: &str = "body{font:14px system-ui,sans-serif;margin:20px;color:#222}h1{font-size:20px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}h3{font-size:14px;margin:14px 0 4px}\
.plots{display:flex;flex-wrap:wrap;gap:12px}.plotbox{margin:0;border:1px solid #e4e4e4;padding:4px;background:#fff}\
svg text{font:11px system-ui,sans-serif;fill:#333}.t{text-anchor:middle;font-weight:600}.yl{text-anchor:end}.xl{text-anchor:middle}.xt{text-anchor:middle;fill:#666}.rl{text-anchor:end}.bv{font-size:9px}\
.grid{stroke:#eee}.axis{stroke:#999}figcaption span,.legend span{display:inline-block;margin-right:12px;font-size:12px}figcaption i,.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;border:1px solid #aaa}\
.asmap{display:block;border:1px solid #ccc;margin:2px 0 8px;max-width:100%;height:22px}table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:2px 6px;text-align:right}td:first-child,td:nth-child(2),td:nth-child(3){text-align:left}tr.d td{background:#fff5e6}.verdict li{margin:2px 0}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"generator\" content=\"thpsim {}\"><title>{}</title><style>{CSS}</style></head><body>\n<h1>{}</h1>\n{body}\n</body></html>\n",
        env!("CARGO_PKG_VERSION"),
        esc(title),
        esc(title)
    )
}

/// Headline observables, plotted over the checkpoints when they change.
const HEADLINE: &[&str] = &[
    "minflt",
    "vmstat.thp_fault_alloc",
    "vmstat.thp_fault_fallback",
    "vmstat.thp_split_pmd",
    "vmstat.thp_collapse_alloc",
    "khugepaged.pages_collapsed",
];

/// The report of one run or a comparison (`run --html`, `compare --html`).
pub fn runs_page(rs: &[RunResult]) -> String {
    let Some(first) = rs.first() else {
        return page("thpsim: no runs", "");
    };
    let variants: Vec<String> = rs.iter().map(|r| r.variant.clone()).collect();
    let mut b = String::new();
    let _ = writeln!(
        b,
        "<p>{} variant(s) on the {} backend: {}</p>",
        rs.len(),
        esc(&first.backend),
        variants
            .iter()
            .map(|v| format!("<code>{}</code>", esc(v)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let rows = crate::report::compare_rows(rs, false);
    let verdicts = crate::report::verdicts(rs, &rows);
    b.push_str("<h2>Verdict</h2><ul class=\"verdict\">");
    for v in &verdicts {
        let _ = write!(
            b,
            "<li><code>{}</code>: {}</li>",
            esc(&v.variant),
            esc(&v.text)
        );
    }
    b.push_str("</ul>");
    // Every variant's numeric observables per checkpoint, built once (the plots look values
    // up by name; rebuilding a checkpoint's list per observable was quadratic).
    let ints: Vec<Vec<std::collections::HashMap<String, i64>>> = rs
        .iter()
        .map(|r| {
            r.checkpoints
                .iter()
                .map(|c| {
                    obs::checkpoint_obs(c, false)
                        .into_iter()
                        .filter_map(|o| o.value.int().map(|v| (o.name, v)))
                        .collect()
                })
                .collect()
        })
        .collect();
    let int_at =
        |ri: usize, ci: usize, name: &str| ints[ri].get(ci).and_then(|m| m.get(name)).copied();
    // Per-checkpoint counter plots across variants.
    b.push_str("<h2>Counters per checkpoint</h2><div class=\"plots\" id=\"checkpoint-plots\">");
    for (ci, c) in first.checkpoints.iter().enumerate() {
        let mut bars: Vec<(String, Vec<i64>)> = Vec::new();
        for o in obs::checkpoint_obs(c, false) {
            if matches!(o.group, "smaps" | "pages") {
                continue;
            }
            let vals: Vec<i64> = (0..rs.len())
                .map(|ri| int_at(ri, ci, &o.name).unwrap_or(0))
                .collect();
            if vals.iter().any(|v| *v != 0) {
                bars.push((o.name, vals));
            }
        }
        bars.truncate(40);
        let title = format!("checkpoint `{}` (line {})", c.label, c.line);
        if bars.is_empty() {
            bars.push(("minflt".into(), vec![0; rs.len()]));
        }
        b.push_str(&bars_plot(&title, &bars, &variants));
    }
    b.push_str("</div>");
    // Headline observables over the checkpoints.
    if first.checkpoints.len() > 1 {
        b.push_str("<h2>Over the checkpoints</h2><div class=\"plots\" id=\"timeline-plots\">");
        let xs: Vec<String> = first.checkpoints.iter().map(|c| c.label.clone()).collect();
        let mut names: Vec<String> = HEADLINE.iter().map(|s| s.to_string()).collect();
        names.extend(
            first.checkpoints[0]
                .mappings
                .iter()
                .map(|m| format!("smaps({}).AnonHugePages", m.name)),
        );
        for name in names {
            let series: Vec<(String, Vec<Option<f64>>)> = rs
                .iter()
                .enumerate()
                .map(|(ri, r)| {
                    let v = (0..r.checkpoints.len())
                        .map(|ci| int_at(ri, ci, &name).map(|v| v as f64))
                        .collect();
                    (r.variant.clone(), v)
                })
                .collect();
            if series
                .iter()
                .any(|(_, v)| v.iter().flatten().any(|x| *x != 0.0))
            {
                b.push_str(&line_plot(&name, "timeline", "checkpoint", &xs, &series));
            }
        }
        b.push_str("</div>");
    }
    // Address-space maps.
    b.push_str("<h2>Address-space maps</h2>");
    b.push_str(&legend());
    b.push_str("<div id=\"maps\">");
    for r in rs {
        let _ = write!(b, "<h3>{}</h3>", esc(&r.variant));
        for c in &r.checkpoints {
            for m in &c.mappings {
                let total: u64 = m.pages.iter().map(|(_, n)| n).sum();
                let _ = write!(
                    b,
                    "<div class=\"maplabel\"><code>{}</code> at <code>{}</code>: {}, {} runs</div>",
                    esc(&m.name),
                    esc(&c.label),
                    human_bytes(total * 4096),
                    m.pages.len()
                );
                b.push_str(&map_svg(&m.name, &m.pages));
            }
        }
    }
    b.push_str("</div>");
    // The table (page maps as their per-class totals: a raw map can be millions of runs).
    b.push_str("<h2>Observables</h2><table id=\"observables\"><tr><th>checkpoint</th><th>group</th><th>observable</th>");
    for v in &variants {
        let _ = write!(b, "<th>{}</th>", esc(v));
    }
    b.push_str("</tr>");
    for row in rows
        .iter()
        .filter(|r| r.values.iter().flatten().all(|v| matches!(v, Val::Int(_))))
    {
        let _ = write!(
            b,
            "<tr{}><td>{}</td><td>{}</td><td>{}</td>",
            if row.differs { " class=\"d\"" } else { "" },
            esc(&row.checkpoint),
            row.group,
            esc(&row.observable)
        );
        for v in &row.values {
            let _ = write!(
                b,
                "<td>{}</td>",
                v.as_ref().map(|v| v.to_string()).unwrap_or_default()
            );
        }
        b.push_str("</tr>");
    }
    b.push_str("</table>");
    page(&format!("thpsim — {}", first.file), &b)
}

/// The report of a sweep (`sweep --html`).
pub fn sweep_page(h: &JsonHeader, vs: &[VariantOut]) -> String {
    let mut b = String::new();
    let axes: Vec<String> = h
        .axes
        .iter()
        .map(|a| {
            format!(
                "<code>{}</code> = {}",
                esc(&a.key),
                esc(&a.values.join(", "))
            )
        })
        .collect();
    let _ = writeln!(
        b,
        "<p>{} variant(s) of {} (this file: {}); axes: {}</p>",
        h.variant_count,
        esc(&h.file),
        vs.len(),
        axes.join("; ")
    );
    // x: the first axis whose values are all numbers (not the kernel), else the last axis.
    let xi = h
        .axes
        .iter()
        .position(|a| a.key != "kernel" && a.values.iter().all(|v| v.parse::<f64>().is_ok()))
        .or(h.axes.len().checked_sub(1));
    let ok: Vec<&VariantOut> = vs.iter().filter(|v| v.error.is_none()).collect();
    if let (Some(xi), Some(v0)) = (xi, ok.first()) {
        let xkey = &h.axes[xi].key;
        let xs = h.axes[xi].values.clone();
        // Lines: every combination of the other axes, in the order variants come.
        let line_of = |v: &VariantOut| {
            v.params
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != xi)
                .map(|(_, (k, val))| format!("{k}={val}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut lines: Vec<String> = Vec::new();
        for v in &ok {
            let l = line_of(v);
            if !lines.contains(&l) {
                lines.push(l);
            }
        }
        let last = v0.checkpoints.len().saturating_sub(1);
        let cp = v0
            .checkpoints
            .get(last)
            .map(|c| c.label.clone())
            .unwrap_or_default();
        // Observables of the last checkpoint that vary across the variants.
        let value = |v: &VariantOut, name: &str| {
            v.checkpoints
                .get(last)
                .and_then(|c| c.values.iter().find(|(_, n, _)| n == name).map(|x| x.2))
        };
        let names: Vec<&(String, String, i64)> = v0
            .checkpoints
            .get(last)
            .map(|c| c.values.iter().collect())
            .unwrap_or_default();
        let mut varying: Vec<&str> = names
            .iter()
            .map(|(_, n, _)| n.as_str())
            .filter(|n| {
                let first = value(v0, n);
                ok.iter().any(|v| value(v, n) != first)
            })
            .collect();
        varying.truncate(24);
        let _ = write!(
            b,
            "<h2>Sweep: observables at checkpoint <code>{}</code> vs <code>{}</code></h2><div class=\"plots\" id=\"sweep-plots\">",
            esc(&cp),
            esc(xkey)
        );
        if varying.is_empty() {
            b.push_str("<p>No observable varies across these variants.</p>");
        }
        for name in varying {
            let series: Vec<(String, Vec<Option<f64>>)> = lines
                .iter()
                .map(|l| {
                    let vals = xs
                        .iter()
                        .map(|x| {
                            ok.iter()
                                .find(|v| line_of(v) == *l && v.params[xi].1 == *x)
                                .and_then(|v| value(v, name))
                                .map(|v| v as f64)
                        })
                        .collect();
                    (
                        if l.is_empty() {
                            "all".to_string()
                        } else {
                            l.clone()
                        },
                        vals,
                    )
                })
                .collect();
            b.push_str(&line_plot(name, "sweep", xkey, &xs, &series));
        }
        b.push_str("</div>");
    }
    if vs.iter().any(|v| !v.maps.is_empty()) {
        b.push_str("<h2>Address-space maps at the last checkpoint</h2>");
        b.push_str(&legend());
        b.push_str("<div id=\"maps\">");
        for v in vs {
            for (name, pages) in &v.maps {
                let total: u64 = pages.iter().map(|(_, n)| n).sum();
                let _ = write!(
                    b,
                    "<div class=\"maplabel\">{} · <code>{}</code>: {}, {} runs</div>",
                    esc(&v.variant),
                    esc(name),
                    human_bytes(total * 4096),
                    pages.len()
                );
                b.push_str(&map_svg(name, pages));
            }
        }
        b.push_str("</div>");
    }
    b.push_str("<h2>Variants</h2><table id=\"variants\"><tr><th>#</th><th>variant</th><th>profile</th><th>expects passed</th><th>failed</th><th>error</th></tr>");
    for v in vs {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            v.variant_index,
            esc(&v.variant),
            esc(&v.profile),
            v.expects.passed,
            v.expects.failed,
            esc(v.error.as_deref().unwrap_or(""))
        );
    }
    b.push_str("</table>");
    page(&format!("thpsim sweep — {}", h.file), &b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_map_draws_in_bounded_rectangles_with_ranges() {
        // 1 TiB: 2^28 pages, alternating 511 thp_pmd-sized… runs of mixed backings.
        let mut pages = Vec::new();
        let mut total = 0u64;
        while total < 1 << 28 {
            for (l, n) in [
                ("thp_pmd", 512u64),
                ("anon", 3),
                ("none", 509),
                ("thp_pte:o4", 16),
            ] {
                pages.push((l.to_string(), n));
                total += n;
            }
        }
        let svg = map_svg("ram", &pages);
        let rects = svg.matches("<rect").count();
        assert!(rects <= MAP_WIDTH as usize + 1, "{rects} rectangles");
        assert!(rects >= MAP_WIDTH as usize - 1, "{rects} rectangles");
        assert!(
            svg.contains("mixed, pages anon"),
            "bucket titles give the mix"
        );
        assert!(svg.contains(&format!("data-pages=\"{total}\"")));
        // A small map draws one rectangle per run with its exact range.
        let small = map_svg("buf", &[("thp_pmd".into(), 512), ("none".into(), 512)]);
        assert_eq!(small.matches("<rect").count(), 2);
        assert!(
            small.contains("0x0–0x1fffff (2 MiB): thp_pmd, 512 pages"),
            "{small}"
        );
        assert!(
            small.contains("0x200000–0x3fffff (2 MiB): none, 512 pages"),
            "{small}"
        );
        assert!(small.contains(&format!("fill=\"{}\"", backing_colour("thp_pmd"))));
    }

    #[test]
    fn mthp_orders_get_distinct_colours() {
        let c: std::collections::BTreeSet<String> = (2..=8)
            .map(|o| backing_colour(&format!("thp_pte:o{o}")))
            .collect();
        assert_eq!(c.len(), 7);
        assert_eq!(backing_colour("thp_pte:o2"), "#fdd0a2");
    }
}
