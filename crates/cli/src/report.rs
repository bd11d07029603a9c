//! Text and JSON reports for `run`, `host` and `compare`.

use std::fmt::Write;

use thpsim_kernel::observe::Smaps;
use thpsim_scenario::engine::{ExpectStatus, RunResult, SCHEMA_VERSION};

/// Text output options.
#[derive(Clone, Copy, Debug, Default)]
pub struct TextOpts {
    /// Print every page map in full (`--pages-full`), not summarised past `PAGES_WIDTH`.
    pub pages_full: bool,
}

/// Widest page map printed as is; longer ones are summarised (run count, per-class totals).
pub const PAGES_WIDTH: usize = 120;

/// Failed ops listed per run in text output; the rest are counted.
const FAILED_OPS_SHOWN: usize = 20;

fn pages_text(pages: &[(String, u64)]) -> String {
    pages
        .iter()
        .map(|(b, n)| format!("{b}×{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The page map as text, summarised when longer than `PAGES_WIDTH` unless `full`:
/// `1234 runs: anon 1000, thp_pte 512, none 24 (--pages-full for the map)`.
fn pages_shown(pages: &[(String, u64)], full: bool) -> String {
    let text = pages_text(pages);
    if full || text.chars().count() <= PAGES_WIDTH {
        return text;
    }
    format!("{} (--pages-full for the map)", pages_summary(pages))
}

/// `1234 runs: anon 1000, thp_pte 512, none 24`: run count and per-class totals.
fn pages_summary(pages: &[(String, u64)]) -> String {
    let mut totals: Vec<(&str, u64)> = Vec::new();
    for (b, n) in pages {
        match totals.iter_mut().find(|(c, _)| c == b) {
            Some(t) => t.1 += n,
            None => totals.push((b, *n)),
        }
    }
    let classes: Vec<String> = totals.iter().map(|(c, n)| format!("{c} {n}")).collect();
    format!("{} runs: {}", pages.len(), classes.join(", "))
}

/// Killed processes, failed ops and records left out, as lines for a run's text output.
fn failures_text(r: &RunResult, indent: &str) -> String {
    let mut o = String::new();
    for k in &r.killed {
        let _ = writeln!(
            o,
            "{indent}KILLED: process `{}` by {} at {}:{}{}",
            k.process,
            k.signal,
            r.file,
            k.line,
            match k.ops_not_run {
                0 => String::new(),
                1 => "; its 1 later op was not run".to_string(),
                n => format!("; its {n} later ops were not run"),
            }
        );
    }
    let failed: Vec<_> = r
        .failed_ops()
        .filter(|op| !op.result.starts_with("not run"))
        .collect();
    if !failed.is_empty() {
        let _ = writeln!(o, "{indent}ops that failed (errno or signal):");
        for op in failed.iter().take(FAILED_OPS_SHOWN) {
            let _ = writeln!(o, "{indent}  line {}: {} → {}", op.line, op.op, op.result);
        }
        if failed.len() > FAILED_OPS_SHOWN {
            let _ = writeln!(
                o,
                "{indent}  … and {} more",
                failed.len() - FAILED_OPS_SHOWN
            );
        }
    }
    if r.ops_omitted > 0 {
        let _ = writeln!(
            o,
            "{indent}note: {} ops past the first {} are not recorded",
            r.ops_omitted,
            r.ops.len()
        );
    }
    if r.checkpoints_omitted > 0 {
        let _ = writeln!(
            o,
            "{indent}note: {} checkpoints past the first {} are not shown",
            r.checkpoints_omitted,
            r.checkpoints.len()
        );
    }
    o
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

pub fn run_text(r: &RunResult, opts: TextOpts) -> String {
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
    o.push_str(&failures_text(r, ""));
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
            let _ = writeln!(
                o,
                "  {:<10} pages: {}",
                "",
                pages_shown(&m.pages, opts.pages_full)
            );
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
    let om = &r.expects_omitted;
    let (p, f, s) = (p + om.pass, f + om.fail, s + om.skipped);
    if p + f + s > 0 {
        let _ = writeln!(o);
        o.push_str(&lines);
        if om.fail > 0 {
            let _ = writeln!(
                o,
                "FAIL {}: {} more failed expectations past the first {} results",
                r.file,
                om.fail,
                r.expects.len()
            );
        }
        let _ = writeln!(o, "expects: {p} passed, {f} failed, {s} skipped");
    }
    if !r.killed.is_empty() {
        let _ = writeln!(
            o,
            "{} process(es) killed by a signal (see KILLED above)",
            r.killed.len()
        );
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

pub fn compare_text(results: &[RunResult], all: bool, opts: TextOpts) -> String {
    let mut rows = compare_rows(results, all);
    let mut summarised = false;
    if !opts.pages_full {
        // `differs` was decided on the full maps; only what is shown is summarised.
        for r in rows
            .iter_mut()
            .filter(|r| r.observable.starts_with("pages("))
        {
            if r.values.iter().any(|v| v.chars().count() > PAGES_WIDTH) {
                for v in r.values.iter_mut() {
                    *v = pages_summary(&parse_pages_text(v));
                }
                summarised = true;
            }
        }
    }
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
    if summarised {
        let _ = writeln!(
            o,
            "\npage maps longer than {PAGES_WIDTH} characters are summarised (run count, pages per class); --pages-full prints them"
        );
    }
    for r in results {
        let f = failures_text(r, "  ");
        if !f.is_empty() {
            let _ = writeln!(o, "\n[{}]:\n{f}", r.variant);
        }
    }
    o
}

/// The inverse of `pages_text` (for summarising compare rows).
fn parse_pages_text(v: &str) -> Vec<(String, u64)> {
    v.split(' ')
        .filter_map(|run| {
            let (b, n) = run.split_once('×')?;
            Some((b.to_string(), n.parse().ok()?))
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use thpsim_scenario::engine::{Killed, OpRecord};

    fn result() -> RunResult {
        let mut r = RunResult::empty("t.thps", "host", "6.18");
        r.ops.push(OpRecord {
            line: 1,
            op: "mmap 0x0 0x10000000000 rw".into(),
            result: "ENOMEM".into(),
            minflt: 0,
            majflt: 0,
            failed: true,
        });
        r
    }

    #[test]
    fn a_refused_mmap_is_reported() {
        let t = run_text(&result(), TextOpts::default());
        assert!(
            t.contains(
                "ops that failed (errno or signal):\n  line 1: mmap 0x0 0x10000000000 rw → ENOMEM"
            ),
            "{t}"
        );
    }

    #[test]
    fn kills_and_omitted_records_are_reported() {
        let mut r = result();
        r.killed.push(Killed {
            process: "child".into(),
            line: 4,
            signal: "SIGKILL".into(),
            ops_not_run: 1,
        });
        r.ops_omitted = 5;
        r.expects_omitted.fail = 2;
        let t = run_text(&r, TextOpts::default());
        assert!(
            t.contains(
                "KILLED: process `child` by SIGKILL at t.thps:4; its 1 later op was not run"
            ),
            "{t}"
        );
        assert!(
            t.contains("note: 5 ops past the first 1 are not recorded"),
            "{t}"
        );
        assert!(t.contains("expects: 0 passed, 2 failed, 0 skipped"), "{t}");
    }

    #[test]
    fn page_summary_has_run_count_and_class_totals() {
        let pages: Vec<(String, u64)> = (0..100)
            .flat_map(|i| [("anon".to_string(), i + 1), ("none".to_string(), 1)])
            .collect();
        assert_eq!(
            pages_shown(&pages, false),
            "200 runs: anon 5050, none 100 (--pages-full for the map)"
        );
        assert_eq!(pages_shown(&pages, true), pages_text(&pages));
        assert_eq!(parse_pages_text(&pages_text(&pages)), pages);
    }
}
