//! Text and JSON reports for `run`, `host` and `compare`.

use std::fmt::Write;

use thpsim_kernel::observe::Smaps;
use thpsim_scenario::engine::{ExpectStatus, RunResult, SCHEMA_VERSION};

fn pages_text(pages: &[(String, u64)]) -> String {
    pages
        .iter()
        .map(|(b, n)| format!("{b}×{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn smaps_text(s: &Smaps, all: bool) -> String {
    Smaps::FIELDS
        .iter()
        .filter_map(|f| {
            let v = s.field(f).unwrap_or(0);
            (all || v != 0).then(|| {
                if *f == "THPeligible" {
                    format!("{f} {v}")
                } else {
                    format!("{f} {v} kB")
                }
            })
        })
        .collect::<Vec<_>>()
        .join("  ")
}

pub fn run_text(r: &RunResult) -> String {
    let mut o = String::new();
    let sw: Vec<String> = r.switches.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = writeln!(
        o,
        "{} on {} — kernel {} ({})",
        r.file,
        r.backend,
        r.profile,
        sw.join(" ")
    );
    for w in &r.warnings {
        let _ = writeln!(o, "warning: {w}");
    }
    for c in &r.checkpoints {
        let _ = writeln!(o, "\n── checkpoint `{}` (line {}) ──", c.label, c.line);
        let _ = writeln!(o, "  minflt {}  majflt {}", c.minflt, c.majflt);
        let changed: Vec<String> = c
            .counters
            .iter()
            .filter(|(_, v)| **v != 0)
            .map(|(k, v)| format!("{k} {v:+}"))
            .collect();
        if changed.is_empty() {
            let _ = writeln!(o, "  counters: no change");
        } else {
            for chunk in changed.chunks(4) {
                let _ = writeln!(o, "  {}", chunk.join("  "));
            }
        }
        for m in &c.mappings {
            let _ = writeln!(o, "  {:<10} {}", m.name, smaps_text(&m.smaps, false));
            let _ = writeln!(o, "  {:<10} pages: {}", "", pages_text(&m.pages));
        }
    }
    let (mut p, mut f, mut s) = (0, 0, 0);
    let mut lines = String::new();
    for e in &r.expects {
        match e.status {
            ExpectStatus::Pass => p += 1,
            ExpectStatus::Skipped => s += 1,
            ExpectStatus::Fail => {
                f += 1;
                let _ = writeln!(
                    lines,
                    "FAIL {}:{}:{}: {} (actual {})",
                    r.file, e.line, e.col, e.text, e.actual
                );
            }
        }
    }
    if !r.expects.is_empty() {
        let _ = writeln!(o);
        o.push_str(&lines);
        let _ = writeln!(o, "expects: {p} passed, {f} failed, {s} skipped");
    }
    o
}

/// One row of a comparison: an observable at a checkpoint, a value per variant.
#[derive(serde::Serialize)]
pub struct Row {
    pub checkpoint: String,
    pub observable: String,
    pub values: Vec<String>,
    pub differs: bool,
}

pub fn compare_rows(results: &[RunResult], all: bool) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    let first = &results[0];
    for (ci, c) in first.checkpoints.iter().enumerate() {
        let at = |r: &RunResult| r.checkpoints.get(ci).cloned();
        let mut push =
            |obs: String, f: &dyn Fn(&RunResult) -> String, nonzero: &dyn Fn(&str) -> bool| {
                let values: Vec<String> = results.iter().map(f).collect();
                let differs = values.windows(2).any(|w| w[0] != w[1]);
                if all || differs || values.iter().any(|v| nonzero(v)) {
                    rows.push(Row {
                        checkpoint: c.label.clone(),
                        observable: obs,
                        values,
                        differs,
                    });
                }
            };
        let nz = |v: &str| v != "0" && v != "+0" && !v.is_empty();
        push(
            "minflt".into(),
            &|r| at(r).map(|c| c.minflt.to_string()).unwrap_or_default(),
            &nz,
        );
        for key in c.counters.keys() {
            push(
                key.clone(),
                &|r| {
                    at(r)
                        .and_then(|c| c.counters.get(key).map(|v| format!("{v:+}")))
                        .unwrap_or_default()
                },
                &nz,
            );
        }
        for (mi, m) in c.mappings.iter().enumerate() {
            for f in Smaps::FIELDS {
                push(
                    format!("smaps({}).{f}", m.name),
                    &|r| {
                        at(r)
                            .map(|c| c.mappings[mi].smaps.field(f).unwrap_or(0).to_string())
                            .unwrap_or_default()
                    },
                    &nz,
                );
            }
            push(
                format!("pages({})", m.name),
                &|r| {
                    at(r)
                        .map(|c| pages_text(&c.mappings[mi].pages))
                        .unwrap_or_default()
                },
                &|_| true,
            );
        }
    }
    // Differences first, each group in checkpoint order.
    rows.sort_by_key(|r| !r.differs);
    rows
}

pub fn compare_text(results: &[RunResult], all: bool) -> String {
    let rows = compare_rows(results, all);
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{} — {} variants on {}",
        results[0].file,
        results.len(),
        results[0].backend
    );
    let headers: Vec<String> = results.iter().map(|r| r.variant.clone()).collect();
    let w0 = rows
        .iter()
        .map(|r| r.checkpoint.len() + r.observable.len() + 3)
        .max()
        .unwrap_or(10)
        .max(11);
    let widths: Vec<usize> = (0..results.len())
        .map(|i| {
            rows.iter()
                .map(|r| r.values[i].chars().count())
                .max()
                .unwrap_or(0)
                .max(headers[i].chars().count())
                .min(60)
        })
        .collect();
    let _ = write!(o, "\n{:<w0$}", "observable");
    for (h, w) in headers.iter().zip(&widths) {
        let _ = write!(o, "  {h:>w$}");
    }
    let _ = writeln!(o);
    let mut shown_same = false;
    for r in &rows {
        if !r.differs && !shown_same {
            let _ = writeln!(o, "{:-<w0$}", "-- same in all variants ");
            shown_same = true;
        }
        let _ = write!(o, "{:<w0$}", format!("{} · {}", r.checkpoint, r.observable));
        for (v, w) in r.values.iter().zip(&widths) {
            let _ = write!(o, "  {v:>w$}");
        }
        let _ = writeln!(o, "{}", if r.differs { "  *" } else { "" });
    }
    let mut fails = String::new();
    for r in results {
        for e in r.failed_expects() {
            let _ = writeln!(
                fails,
                "  [{}] line {}: {} (actual {})",
                r.variant, e.line, e.text, e.actual
            );
        }
    }
    if !fails.is_empty() {
        let _ = writeln!(o, "\nexpectations that do not hold in a variant:\n{fails}");
    }
    o
}

#[derive(serde::Serialize)]
pub struct CompareJson<'a> {
    schema: u32,
    file: &'a str,
    variants: Vec<&'a str>,
    rows: Vec<Row>,
    runs: &'a [RunResult],
}

impl<'a> CompareJson<'a> {
    pub fn new(results: &'a [RunResult]) -> Self {
        CompareJson {
            schema: SCHEMA_VERSION,
            file: &results[0].file,
            variants: results.iter().map(|r| r.variant.as_str()).collect(),
            rows: compare_rows(results, true),
            runs: results,
        }
    }
}

pub fn knobs_text() -> String {
    let mut o = String::new();
    let _ = writeln!(o, "kernel profiles:");
    for p in thpsim_kernel::profile::profiles() {
        let sw: Vec<String> = thpsim_kernel::profile::SWITCHES
            .iter()
            .map(|(k, _, _)| format!("{k}={}", p.switches.get(k).unwrap_or_default()))
            .collect();
        let _ = writeln!(o, "  {:<6} {}", p.name, sw.join(" "));
    }
    let _ = writeln!(
        o,
        "\nbehaviour switches (`set KEY=VALUE`, `--set KEY=VALUE`):"
    );
    for (k, v, doc) in thpsim_kernel::profile::SWITCHES {
        let _ = writeln!(o, "  {k}={v}\n      {doc}");
    }
    let _ = writeln!(
        o,
        "\nsysfs knobs (`sysfs KEY=VALUE`), under /sys/kernel/mm/transparent_hugepage/:"
    );
    let d = thpsim_kernel::sysfs::Sysfs::default();
    for k in thpsim_kernel::sysfs::knobs() {
        let _ = writeln!(
            o,
            "  {:<36} {:<28} default {}",
            k.name,
            k.values,
            d.get(&k.name).unwrap_or_default()
        );
    }
    o
}
