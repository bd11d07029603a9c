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

use crate::obs::{self, pages_text, Val};

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

/// One row of a comparison: an observable at a checkpoint, a typed value per variant
/// (`null` in JSON where a variant has no such checkpoint).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Row {
    pub checkpoint: String,
    pub group: &'static str,
    pub observable: String,
    pub values: Vec<Option<Val>>,
    pub differs: bool,
}

impl Row {
    /// The page map as text (`pages(NAME)`), not one of its per-class totals.
    fn is_map(&self) -> bool {
        self.values
            .iter()
            .flatten()
            .any(|v| matches!(v, Val::Text(_)))
    }
}

/// Counter deltas print with a sign in text tables (`+512`); JSON keeps numbers.
fn is_delta(observable: &str) -> bool {
    ["vmstat.", "mthp.", "khugepaged."]
        .iter()
        .any(|p| observable.starts_with(p))
}

fn cell(v: &Option<Val>, observable: &str) -> String {
    match v {
        None => String::new(),
        Some(Val::Int(i)) if is_delta(observable) => format!("{i:+}"),
        Some(v) => v.to_string(),
    }
}

/// The rows of a comparison: differences first, then by group (`obs::GROUPS`), each in
/// checkpoint order. Without `all`, rows that are the same and zero everywhere are left out
/// (page maps are always shown).
pub fn compare_rows(results: &[RunResult], all: bool) -> Vec<Row> {
    let mut rows: Vec<(usize, Row)> = Vec::new();
    let first = &results[0];
    for (ci, c) in first.checkpoints.iter().enumerate() {
        // Each variant's observables are built once and moved into the rows (no clones).
        let mut others: Vec<Option<std::collections::HashMap<String, Val>>> = results[1..]
            .iter()
            .map(|r| {
                r.checkpoints.get(ci).map(|c| {
                    obs::checkpoint_obs(c, true)
                        .into_iter()
                        .map(|o| (o.name, o.value))
                        .collect()
                })
            })
            .collect();
        for o in obs::checkpoint_obs(c, true) {
            let mut values: Vec<Option<Val>> = Vec::with_capacity(results.len());
            values.push(Some(o.value));
            values.extend(
                others
                    .iter_mut()
                    .map(|m| m.as_mut().and_then(|m| m.remove(&o.name))),
            );
            let differs = values.windows(2).any(|w| w[0] != w[1]);
            let is_map = matches!(values[0], Some(Val::Text(_)));
            let nonzero = values.iter().flatten().any(|v| !v.is_zero());
            if all || differs || nonzero || is_map {
                rows.push((
                    ci,
                    Row {
                        checkpoint: c.label.clone(),
                        group: o.group,
                        observable: o.name,
                        values,
                        differs,
                    },
                ));
            }
        }
    }
    let gi = |g: &str| {
        obs::GROUPS
            .iter()
            .position(|x| *x == g)
            .unwrap_or(usize::MAX)
    };
    rows.sort_by_key(|(ci, r)| (!r.differs, gi(r.group), *ci));
    rows.into_iter().map(|(_, r)| r).collect()
}

/// One line per variant: how it differs from the first (the baseline) and its expectations.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Verdict {
    pub variant: String,
    /// Observables that differ from the first variant.
    pub differences: usize,
    pub expects_failed: u64,
    pub killed: usize,
    pub text: String,
}

/// Observables named in a verdict line before "…".
const VERDICT_SHOWN: usize = 3;

pub fn verdicts(results: &[RunResult], rows: &[Row]) -> Vec<Verdict> {
    let base = &results[0].variant;
    results
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let diffs: Vec<&Row> = rows
                .iter()
                // The page map itself is counted by its per-class totals.
                .filter(|row| row.values[i] != row.values[0] && !row.is_map())
                .collect();
            let failed = r.failed_expects().count() as u64 + r.expects_omitted.fail;
            let mut t = if i == 0 {
                "baseline".to_string()
            } else if diffs.is_empty() {
                format!("same as {base}")
            } else {
                let named: Vec<String> = diffs
                    .iter()
                    .take(VERDICT_SHOWN)
                    .map(|row| {
                        format!(
                            "{} {} → {}",
                            row.observable,
                            cell(&row.values[0], &row.observable),
                            cell(&row.values[i], &row.observable)
                        )
                    })
                    .collect();
                format!(
                    "{} observable(s) differ from {base}: {}{}",
                    diffs.len(),
                    named.join(", "),
                    if diffs.len() > VERDICT_SHOWN {
                        ", …"
                    } else {
                        ""
                    }
                )
            };
            t.push_str(&match failed {
                0 => "; expectations hold".to_string(),
                n => format!("; {n} expectation(s) FAIL"),
            });
            if !r.killed.is_empty() {
                t.push_str(&format!("; {} process(es) killed", r.killed.len()));
            }
            Verdict {
                variant: r.variant.clone(),
                differences: if i == 0 { 0 } else { diffs.len() },
                expects_failed: failed,
                killed: r.killed.len(),
                text: t,
            }
        })
        .collect()
}

/// Text cells of the rows, long page maps summarised unless `pages_full`; whether any was.
fn shown_cells(rows: &[Row], opts: TextOpts) -> (Vec<Vec<String>>, bool) {
    let mut summarised = false;
    let cells = rows
        .iter()
        .map(|r| {
            let mut c: Vec<String> = r.values.iter().map(|v| cell(v, &r.observable)).collect();
            // `differs` was decided on the full maps; only what is shown is summarised.
            if r.is_map() && !opts.pages_full && c.iter().any(|v| v.chars().count() > PAGES_WIDTH) {
                for v in c.iter_mut() {
                    *v = pages_summary(&parse_pages_text(v));
                }
                summarised = true;
            }
            c
        })
        .collect();
    (cells, summarised)
}

pub fn compare_text(results: &[RunResult], all: bool, opts: TextOpts) -> String {
    let rows = compare_rows(results, all);
    let (cells, summarised) = shown_cells(&rows, opts);
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
            cells
                .iter()
                .map(|c| c[i].chars().count())
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
    let mut section: Option<(bool, &str)> = None;
    for (r, c) in rows.iter().zip(&cells) {
        if section != Some((r.differs, r.group)) {
            if !r.differs && section.is_none_or(|s| s.0) {
                let _ = writeln!(o, "{:-<w0$}", "-- same in all variants ");
            }
            let _ = writeln!(o, "[{}]", r.group);
            section = Some((r.differs, r.group));
        }
        let _ = write!(o, "{:<w0$}", format!("{} · {}", r.checkpoint, r.observable));
        for (v, w) in c.iter().zip(&widths) {
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
    let _ = writeln!(o, "\nverdict:");
    for v in verdicts(results, &rows) {
        let _ = writeln!(o, "  {}: {}", v.variant, v.text);
    }
    o
}

/// A Markdown cell: pipes escaped, so page maps and labels cannot break the table.
fn md(s: &str) -> String {
    s.replace('|', "\\|")
}

/// `compare --format md`: a GitHub-flavoured Markdown table to paste into a mail or an
/// issue: differences first (their values in bold), grouped, then one verdict per variant.
pub fn compare_md(results: &[RunResult], all: bool, opts: TextOpts) -> String {
    let rows = compare_rows(results, all);
    let (cells, summarised) = shown_cells(&rows, opts);
    let mut o = String::new();
    let _ = writeln!(
        o,
        "**{}** — {} variants on {}\n",
        md(&results[0].file),
        results.len(),
        results[0].backend
    );
    let _ = write!(o, "| checkpoint | group | observable |");
    for r in results {
        let _ = write!(o, " `{}` |", md(&r.variant));
    }
    let _ = write!(o, "\n|---|---|---|");
    for _ in results {
        o.push_str("---:|");
    }
    o.push('\n');
    for (r, c) in rows.iter().zip(&cells) {
        let _ = write!(
            o,
            "| {} | {} | {} |",
            md(&r.checkpoint),
            r.group,
            md(&r.observable)
        );
        for v in c {
            if r.differs {
                let _ = write!(o, " **{}** |", md(v));
            } else {
                let _ = write!(o, " {} |", md(v));
            }
        }
        o.push('\n');
    }
    if summarised {
        let _ = writeln!(
            o,
            "\nPage maps longer than {PAGES_WIDTH} characters are summarised (run count, pages per class)."
        );
    }
    let _ = writeln!(o, "\nVerdict:\n");
    for v in verdicts(results, &rows) {
        let _ = writeln!(o, "- `{}`: {}", md(&v.variant), md(&v.text));
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
    /// Observable groups in the order rows use them.
    groups: &'static [&'static str],
    rows: Vec<Row>,
    verdicts: Vec<Verdict>,
    runs: &'a [RunResult],
}

impl<'a> CompareJson<'a> {
    pub fn new(results: &'a [RunResult]) -> Self {
        let rows = compare_rows(results, true);
        CompareJson {
            schema: SCHEMA_VERSION,
            file: &results[0].file,
            variants: results.iter().map(|r| r.variant.as_str()).collect(),
            groups: obs::GROUPS,
            verdicts: verdicts(results, &rows),
            rows,
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
