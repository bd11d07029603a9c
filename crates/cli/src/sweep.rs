//! `thpsim sweep`: one scenario (a file or a generated workload) under the cartesian product
//! of settings (`--grid KEY=V1,V2`, `--kernel`), a listed set (`--variant`) or seeded random
//! samples of the grid (`--sample N --seed S`), run on every core; `--shard I/N` runs every
//! N-th variant so that a cluster's array job splits a sweep, and `sweep merge` joins the
//! shards into exactly the file an unsharded run writes.
//!
//! Outputs (by `--out` extension): CSV and Parquet with one row per variant × checkpoint ×
//! observable (typed value, stable column names, the schema version and the variant on every
//! row), and JSON lines (a header line, then one line per variant).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rayon::prelude::*;
use thpsim_scenario::engine::{self, RunResult, Variant};
use thpsim_scenario::Scenario;

use crate::obs;

/// Schema of sweep outputs (CSV columns, JSON lines fields, Parquet schema).
pub const SWEEP_SCHEMA: u32 = 1;

/// One swept dimension: a canonical settings key and its values, in the order given.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Axis {
    pub key: String,
    pub values: Vec<String>,
}

/// What a sweep varies, resolved from the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Design {
    /// Column keys, in order (`kernel` first when given).
    pub axes: Vec<Axis>,
    /// Every variant: one value per axis, in axis order.
    pub points: Vec<Vec<String>>,
}

/// Parses `KEY=V1,V2,…` (values may also be `A..B` or `A..B:STEP` integer ranges).
pub fn parse_axis(item: &str) -> Result<Axis, String> {
    let (k, vals) = item
        .split_once('=')
        .ok_or_else(|| format!("--grid `{item}` is not KEY=V1,V2,…"))?;
    let mut values = Vec::new();
    for v in vals.split(',').map(str::trim).filter(|v| !v.is_empty()) {
        match int_range(v) {
            Some(r) => values.extend(r?.into_iter().map(|x| x.to_string())),
            None => values.push(v.to_string()),
        }
    }
    if values.is_empty() {
        return Err(format!("--grid `{item}` has no values"));
    }
    // Canonical key (file forms name the same knob); every value is checked up front.
    let mut key = None;
    for v in &values {
        let s = thpsim_scenario::settings::classify(k.trim(), v)?;
        key = Some(s.key);
    }
    let key = key.expect("values is not empty");
    let mut seen = std::collections::BTreeSet::new();
    if let Some(d) = values.iter().find(|v| !seen.insert(v.as_str())) {
        return Err(format!("--grid {key}: value `{d}` is listed twice"));
    }
    Ok(Axis { key, values })
}

/// `A..B` (inclusive) or `A..B:STEP`; `None` when `v` is not a range.
fn int_range(v: &str) -> Option<Result<Vec<i64>, String>> {
    let (range, step) = match v.split_once(':') {
        Some((r, s)) => (r, Some(s)),
        None => (v, None),
    };
    let (a, b) = range.split_once("..")?;
    let parse = |s: &str| {
        s.trim()
            .parse::<i64>()
            .map_err(|_| format!("`{v}` is not a range A..B[:STEP] of integers"))
    };
    Some((|| {
        let (a, b) = (parse(a)?, parse(b)?);
        let step = step.map(parse).transpose()?.unwrap_or(1);
        if step <= 0 || b < a {
            return Err(format!("`{v}`: a range needs A <= B and STEP > 0"));
        }
        Ok((a..=b).step_by(step as usize).collect())
    })())
}

impl Design {
    /// The cartesian product of `axes` (the first axis outermost), or `sample` distinct points
    /// of it drawn with `seed` (kept in product order).
    pub fn grid(axes: Vec<Axis>, sample: Option<usize>, seed: u64) -> Result<Design, String> {
        let total = axes
            .iter()
            .try_fold(1usize, |n, a| n.checked_mul(a.values.len()))
            .ok_or("the grid has too many points")?;
        let point = |mut i: usize| -> Vec<String> {
            let mut p = vec![String::new(); axes.len()];
            for (j, a) in axes.iter().enumerate().rev() {
                p[j] = a.values[i % a.values.len()].clone();
                i /= a.values.len();
            }
            p
        };
        let indices: Vec<usize> = match sample {
            Some(n) if n < total => {
                // Floyd's algorithm: n distinct indices without building the whole product.
                let mut st = seed;
                let mut chosen = std::collections::BTreeSet::new();
                for j in (total - n)..total {
                    let t =
                        (thpsim_scenario::pattern::splitmix64(&mut st) % (j as u64 + 1)) as usize;
                    if !chosen.insert(t) {
                        chosen.insert(j);
                    }
                }
                chosen.into_iter().collect()
            }
            _ => {
                if total > 10_000_000 {
                    return Err(format!(
                        "the grid has {total} points; use --sample N to draw some of them"
                    ));
                }
                (0..total).collect()
            }
        };
        let points = indices.into_iter().map(point).collect();
        Ok(Design { axes, points })
    }

    /// A listed set: each `--variant "k=v k=v"` one point; the axes are the keys named, in
    /// first-seen order; a key a variant leaves out takes the scenario's value (`-`).
    pub fn listed(items: &[String]) -> Result<Design, String> {
        let mut axes: Vec<Axis> = Vec::new();
        let mut rows: Vec<Vec<(String, String)>> = Vec::new();
        for item in items {
            let words: Vec<String> = item.split_whitespace().map(str::to_string).collect();
            let sets = crate::parse_sets(&words)?;
            for (k, v) in &sets {
                match axes.iter_mut().find(|a| a.key == *k) {
                    Some(a) if !a.values.contains(v) => a.values.push(v.clone()),
                    Some(_) => {}
                    None => axes.push(Axis {
                        key: k.clone(),
                        values: vec![v.clone()],
                    }),
                }
            }
            rows.push(sets);
        }
        let points = rows
            .iter()
            .map(|sets| {
                axes.iter()
                    .map(|a| {
                        sets.iter()
                            .rev()
                            .find(|(k, _)| *k == a.key)
                            .map(|(_, v)| v.clone())
                            .unwrap_or_else(|| UNSET.to_string())
                    })
                    .collect()
            })
            .collect();
        Ok(Design { axes, points })
    }

    pub fn variant(&self, i: usize) -> Variant {
        Variant {
            profile: None,
            sets: self
                .axes
                .iter()
                .zip(&self.points[i])
                .filter(|(_, v)| *v != UNSET)
                .map(|(a, v)| (a.key.clone(), v.clone()))
                .collect(),
        }
    }

    /// `kernel=6.18 khugepaged.max_ptes_none=0`.
    pub fn describe(&self, i: usize) -> String {
        self.axes
            .iter()
            .zip(&self.points[i])
            .map(|(a, v)| format!("{}={v}", a.key))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A listed variant's value for a key it does not set.
pub const UNSET: &str = "-";

/// `I/N`: shard I (0-based, as `SLURM_ARRAY_TASK_ID` with `--array=0-(N-1)` and a Kubernetes
/// Indexed Job's `JOB_COMPLETION_INDEX`) of N.
pub fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let bad = || format!("--shard `{s}` is not I/N with 0 <= I < N");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

/// One variant's outcome, in the shape every output is written from.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VariantOut {
    pub schema: u32,
    pub file: String,
    pub variant_index: usize,
    pub variant_count: usize,
    /// The swept settings, `key=value` space-separated.
    pub variant: String,
    /// The swept settings by key (axis order), as given.
    pub params: Vec<(String, String)>,
    pub profile: String,
    /// Every behaviour switch's effective value.
    pub switches: BTreeMap<String, String>,
    /// Every sysfs knob's value at the start.
    pub sysfs: BTreeMap<String, String>,
    /// Why the run failed (not runnable, a run error); no checkpoints then.
    pub error: Option<String>,
    pub expects: ExpectCounts,
    pub checkpoints: Vec<CheckpointOut>,
    /// Each mapping's page map at the last checkpoint, kept for the HTML report only.
    #[serde(skip)]
    pub maps: Vec<(String, Vec<(String, u64)>)>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExpectCounts {
    pub passed: u64,
    pub failed: u64,
    pub skipped: u64,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CheckpointOut {
    pub label: String,
    pub line: u32,
    /// `(group, observable, value)` in report order.
    pub values: Vec<(String, String, i64)>,
}

impl VariantOut {
    fn new(
        design: &Design,
        i: usize,
        file: &str,
        run: Result<RunResult, String>,
        keep_maps: bool,
    ) -> Self {
        let mut v = VariantOut {
            schema: SWEEP_SCHEMA,
            file: file.to_string(),
            variant_index: i,
            variant_count: design.points.len(),
            variant: design.describe(i),
            params: design
                .axes
                .iter()
                .zip(&design.points[i])
                .map(|(a, v)| (a.key.clone(), v.clone()))
                .collect(),
            profile: String::new(),
            switches: BTreeMap::new(),
            sysfs: BTreeMap::new(),
            error: None,
            expects: ExpectCounts::default(),
            checkpoints: vec![],
            maps: vec![],
        };
        match run {
            Err(e) => v.error = Some(e),
            Ok(r) => {
                v.profile = r.profile.clone();
                v.switches = r.switches.clone();
                v.sysfs = r.sysfs.clone();
                for e in &r.expects {
                    match e.status {
                        engine::ExpectStatus::Pass => v.expects.passed += 1,
                        engine::ExpectStatus::Fail => v.expects.failed += 1,
                        engine::ExpectStatus::Skipped => v.expects.skipped += 1,
                    }
                }
                v.expects.passed += r.expects_omitted.pass;
                v.expects.failed += r.expects_omitted.fail;
                v.expects.skipped += r.expects_omitted.skipped;
                if keep_maps {
                    if let Some(c) = r.checkpoints.last() {
                        v.maps = c
                            .mappings
                            .iter()
                            .map(|m| (m.name.clone(), m.pages.clone()))
                            .collect();
                    }
                }
                v.checkpoints = r
                    .checkpoints
                    .iter()
                    .map(|c| CheckpointOut {
                        label: c.label.clone(),
                        line: c.line,
                        values: obs::checkpoint_obs(c, false)
                            .into_iter()
                            .filter_map(|o| Some((o.group.to_string(), o.name, o.value.int()?)))
                            .collect(),
                    })
                    .collect();
            }
        }
        v
    }

    /// The rows of the long form: every checkpoint's observables, then the run's own
    /// (`run` group: expectations, `error` 0/1) at checkpoint index = number of checkpoints.
    pub fn rows(&self) -> Vec<(usize, &str, u32, String, String, i64)> {
        let mut rows = Vec::new();
        for (ci, c) in self.checkpoints.iter().enumerate() {
            for (g, n, v) in &c.values {
                rows.push((ci, c.label.as_str(), c.line, g.clone(), n.clone(), *v));
            }
        }
        let n = self.checkpoints.len();
        let e = &self.expects;
        for (name, v) in [
            ("expects_passed", e.passed as i64),
            ("expects_failed", e.failed as i64),
            ("expects_skipped", e.skipped as i64),
            ("error", self.error.is_some() as i64),
        ] {
            rows.push((n, "(run)", 0, "run".into(), name.into(), v));
        }
        rows
    }
}

/// Knobs whose start value differs from the model's defaults, `k=v` space-separated.
fn sysfs_changed(sysfs: &BTreeMap<String, String>) -> String {
    let d = thpsim_kernel::sysfs::Sysfs::default();
    sysfs
        .iter()
        .filter(|(k, v)| d.get(k).as_deref() != Some(v.as_str()))
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn kv_join(m: &BTreeMap<String, String>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The fixed CSV/Parquet columns before and after the per-axis columns.
const HEAD_COLS: &[&str] = &[
    "schema",
    "file",
    "variant_index",
    "variant_count",
    "variant",
    "profile",
];
const TAIL_COLS: &[&str] = &[
    "checkpoint_index",
    "checkpoint",
    "checkpoint_line",
    "group",
    "observable",
    "value",
    "switches",
    "sysfs_changed",
];

/// Axis columns are named `param.<key>`, so that no knob can clash with a fixed column.
fn header(axes: &[String]) -> Vec<String> {
    HEAD_COLS
        .iter()
        .map(|s| s.to_string())
        .chain(axes.iter().map(|k| format!("param.{k}")))
        .chain(TAIL_COLS.iter().map(|s| s.to_string()))
        .collect()
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Splits one CSV record (RFC 4180 quoting; records never span lines here: no field holds a
/// newline).
fn csv_split(line: &str) -> Vec<String> {
    let mut out = vec![];
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Typed long-form table, built from variants or read back from CSV: what CSV and Parquet
/// are written from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    pub axes: Vec<String>,
    pub rows: Vec<TableRow>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TableRow {
    pub schema: u32,
    pub file: String,
    pub variant_index: usize,
    pub variant_count: usize,
    pub variant: String,
    pub profile: String,
    pub params: Vec<String>,
    pub checkpoint_index: usize,
    pub checkpoint: String,
    pub checkpoint_line: u32,
    pub group: String,
    pub observable: String,
    pub value: i64,
    pub switches: String,
    pub sysfs_changed: String,
}

impl Table {
    pub fn from_variants(axes: &[Axis], vs: &[VariantOut]) -> Table {
        let mut t = Table {
            axes: axes.iter().map(|a| a.key.clone()).collect(),
            rows: vec![],
        };
        for v in vs {
            let (switches, changed) = (kv_join(&v.switches), sysfs_changed(&v.sysfs));
            for (ci, label, line, g, n, val) in v.rows() {
                t.rows.push(TableRow {
                    schema: v.schema,
                    file: v.file.clone(),
                    variant_index: v.variant_index,
                    variant_count: v.variant_count,
                    variant: v.variant.clone(),
                    profile: v.profile.clone(),
                    params: v.params.iter().map(|(_, x)| x.clone()).collect(),
                    checkpoint_index: ci,
                    checkpoint: label.to_string(),
                    checkpoint_line: line,
                    group: g,
                    observable: n,
                    value: val,
                    switches: switches.clone(),
                    sysfs_changed: changed.clone(),
                });
            }
        }
        t
    }

    pub fn to_csv(&self) -> String {
        let mut o = header(&self.axes).join(",");
        o.push('\n');
        for r in &self.rows {
            let mut f: Vec<String> = vec![
                r.schema.to_string(),
                csv_field(&r.file),
                r.variant_index.to_string(),
                r.variant_count.to_string(),
                csv_field(&r.variant),
                csv_field(&r.profile),
            ];
            f.extend(r.params.iter().map(|p| csv_field(p)));
            f.extend([
                r.checkpoint_index.to_string(),
                csv_field(&r.checkpoint),
                r.checkpoint_line.to_string(),
                csv_field(&r.group),
                csv_field(&r.observable),
                r.value.to_string(),
                csv_field(&r.switches),
                csv_field(&r.sysfs_changed),
            ]);
            o.push_str(&f.join(","));
            o.push('\n');
        }
        o
    }

    /// Reads a CSV this module wrote (any shard of any sweep with the same columns).
    pub fn from_csv(name: &str, text: &str) -> Result<Table, String> {
        let mut lines = text.lines();
        let head = csv_split(lines.next().ok_or(format!("{name}: empty file"))?);
        let na = head.len().checked_sub(HEAD_COLS.len() + TAIL_COLS.len());
        let ok = na.is_some_and(|na| {
            head[..HEAD_COLS.len()] == *HEAD_COLS
                && head[HEAD_COLS.len() + na..] == *TAIL_COLS
                && head[HEAD_COLS.len()..HEAD_COLS.len() + na]
                    .iter()
                    .all(|c| c.starts_with("param."))
        });
        let Some(na) = na.filter(|_| ok) else {
            return Err(format!(
                "{name}:1: not a thpsim sweep CSV (schema {SWEEP_SCHEMA}) header"
            ));
        };
        let axes = head[HEAD_COLS.len()..HEAD_COLS.len() + na]
            .iter()
            .map(|c| c["param.".len()..].to_string())
            .collect();
        let mut t = Table { axes, rows: vec![] };
        for (ln, line) in lines.enumerate() {
            let at = |col: usize, e: &dyn std::fmt::Display| {
                format!("{name}:{}: column {} ({}): {e}", ln + 2, col + 1, head[col])
            };
            let f = csv_split(line);
            if f.len() != head.len() {
                return Err(format!(
                    "{name}:{}: {} fields, the header has {}",
                    ln + 2,
                    f.len(),
                    head.len()
                ));
            }
            let num = |col: usize| f[col].parse::<i64>().map_err(|e| at(col, &e));
            let b = HEAD_COLS.len() + na;
            let schema = num(0)? as u32;
            if schema != SWEEP_SCHEMA {
                return Err(at(
                    0,
                    &format!("schema {schema}, this thpsim reads {SWEEP_SCHEMA}"),
                ));
            }
            t.rows.push(TableRow {
                schema,
                file: f[1].clone(),
                variant_index: num(2)? as usize,
                variant_count: num(3)? as usize,
                variant: f[4].clone(),
                profile: f[5].clone(),
                params: f[HEAD_COLS.len()..b].to_vec(),
                checkpoint_index: num(b)? as usize,
                checkpoint: f[b + 1].clone(),
                checkpoint_line: num(b + 2)? as u32,
                group: f[b + 3].clone(),
                observable: f[b + 4].clone(),
                value: num(b + 5)?,
                switches: f[b + 6].clone(),
                sysfs_changed: f[b + 7].clone(),
            });
        }
        Ok(t)
    }
}

/// The JSON lines form: a header line, then one line per variant in index order.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct JsonHeader {
    pub schema: u32,
    pub kind: String,
    pub file: String,
    pub variant_count: usize,
    pub axes: Vec<Axis>,
}

pub fn to_jsonl(header: &JsonHeader, vs: &[VariantOut]) -> String {
    let mut o = serde_json::to_string(header).expect("json");
    o.push('\n');
    for v in vs {
        o.push_str(&serde_json::to_string(v).expect("json"));
        o.push('\n');
    }
    o
}

/// Output kinds, by file extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Jsonl,
    Parquet,
}

pub fn format_of(p: &Path) -> Result<Format, String> {
    match p.extension().and_then(|e| e.to_str()) {
        Some("csv") => Ok(Format::Csv),
        Some("jsonl" | "ndjson") => Ok(Format::Jsonl),
        Some("parquet") => Ok(Format::Parquet),
        _ => Err(format!(
            "{}: the output format comes from the extension: .csv, .jsonl (or .ndjson), .parquet",
            p.display()
        )),
    }
}

fn write_file(p: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(p, bytes).map_err(|e| format!("cannot write {}: {e}", p.display()))
}

/// Everything `sweep` needs from the command line.
pub struct SweepOpts {
    pub scenario: Scenario,
    pub design: Design,
    pub shard: Option<(usize, usize)>,
    pub out: Vec<PathBuf>,
    pub html: Option<PathBuf>,
    pub quiet: bool,
    pub jobs: Option<usize>,
}

/// Runs the variants of a design (or of one shard) on all cores; results in index order.
pub fn run_design(
    scn: &Scenario,
    design: &Design,
    shard: Option<(usize, usize)>,
    quiet: bool,
    keep_maps: bool,
) -> Vec<VariantOut> {
    let idx: Vec<usize> = (0..design.points.len())
        .filter(|i| shard.is_none_or(|(s, n)| i % n == s))
        .collect();
    let bar = crate::progress::bar(idx.len() as u64, "sweep", quiet);
    let out: Vec<VariantOut> = idx
        .par_iter()
        .map(|&i| {
            let v = design.variant(i);
            let mut be = crate::model_backend();
            let r = engine::run(scn, &mut be, &v).map_err(|e| e.message());
            bar.inc(1);
            VariantOut::new(design, i, &scn.file, r, keep_maps)
        })
        .collect();
    bar.finish_and_clear();
    out
}

pub fn main(o: SweepOpts) -> ExitCode {
    if let Some(j) = o.jobs {
        // Only the first call configures the global pool; `sweep` makes just this one.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(j)
            .build_global();
    }
    for p in &o.out {
        if let Err(e) = format_of(p) {
            return crate::usage_error(e);
        }
    }
    // A bad setting combination (e.g. a profile the scenario cannot take) is a usage error
    // before anything runs.
    if let Some(i) = (0..o.design.points.len()).next() {
        if let Err(e) = engine::plan(&o.scenario, &o.design.variant(i)) {
            return crate::usage_error(e);
        }
    }
    let t0 = std::time::Instant::now();
    let vs = run_design(&o.scenario, &o.design, o.shard, o.quiet, o.html.is_some());
    let secs = t0.elapsed().as_secs_f64();
    let failed: Vec<&VariantOut> = vs.iter().filter(|v| v.error.is_some()).collect();
    for v in &failed {
        eprintln!(
            "thpsim sweep: variant {} ({}): {}",
            v.variant_index,
            v.variant,
            v.error.as_deref().unwrap_or_default()
        );
    }
    let header = JsonHeader {
        schema: SWEEP_SCHEMA,
        kind: "thpsim-sweep".into(),
        file: o.scenario.file.clone(),
        variant_count: o.design.points.len(),
        axes: o.design.axes.clone(),
    };
    let table = Table::from_variants(&o.design.axes, &vs);
    for p in &o.out {
        if let Err(e) = write_out(p, &header, &vs, &table) {
            eprintln!("thpsim sweep: {e}");
            return ExitCode::from(1);
        }
    }
    if let Some(h) = &o.html {
        let page = crate::html::sweep_page(&header, &vs);
        if let Err(e) = write_file(h, page.as_bytes()) {
            eprintln!("thpsim sweep: {e}");
            return ExitCode::from(1);
        }
    }
    if !o.quiet {
        let mut s = String::new();
        let _ = write!(
            s,
            "sweep {}: {} of {} variants{} in {secs:.2}s ({:.1} variants/s on {} threads), {} rows",
            o.scenario.file,
            vs.len(),
            o.design.points.len(),
            o.shard
                .map(|(i, n)| format!(" (shard {i}/{n})"))
                .unwrap_or_default(),
            vs.len() as f64 / secs.max(1e-9),
            rayon::current_num_threads(),
            table.rows.len()
        );
        for p in o.out.iter().chain(&o.html) {
            let _ = write!(s, "; wrote {}", p.display());
        }
        eprintln!("{s}");
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn write_out(
    p: &Path,
    header: &JsonHeader,
    vs: &[VariantOut],
    table: &Table,
) -> Result<(), String> {
    match format_of(p)? {
        Format::Csv => write_file(p, table.to_csv().as_bytes()),
        Format::Jsonl => write_file(p, to_jsonl(header, vs).as_bytes()),
        Format::Parquet => crate::parquet_out::write(p, table),
    }
}

/// Joins shard outputs: every input of the same kind (CSV or JSON lines) and the same sweep
/// (header, variant count); the variants in index order, each once; all present unless
/// `partial`. CSV inputs can also be written as Parquet.
pub fn merge(inputs: &[PathBuf], out: &[PathBuf], partial: bool) -> Result<String, String> {
    if inputs.is_empty() || out.is_empty() {
        return Err("sweep merge needs input files and --out".into());
    }
    let kinds: Vec<Format> = inputs
        .iter()
        .map(|p| format_of(p))
        .collect::<Result<_, _>>()?;
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    let check_complete = |idx: &[usize], count: usize| -> Result<(), String> {
        let mut seen = vec![false; count];
        for &i in idx {
            if i >= count || std::mem::replace(&mut seen[i], true) {
                return Err(format!(
                    "variant {i} appears in two inputs (or past the variant count {count})"
                ));
            }
        }
        let missing: Vec<String> = (0..count)
            .filter(|i| !seen[*i])
            .map(|i| i.to_string())
            .collect();
        if !missing.is_empty() && !partial {
            return Err(format!(
                "{} of {count} variants are missing (a shard not run?): {}{}",
                missing.len(),
                missing
                    .iter()
                    .take(10)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" "),
                if missing.len() > 10 { " …" } else { "" }
            ));
        }
        Ok(())
    };
    match kinds[0] {
        _ if kinds.iter().any(|k| *k != kinds[0]) => {
            Err("sweep merge: every input must be of one kind (all .csv or all .jsonl)".into())
        }
        Format::Csv => {
            let mut all = Table::default();
            // Each input's variants (its rows are grouped by variant), to find one in two.
            let mut idx: Vec<usize> = vec![];
            for (n, p) in inputs.iter().enumerate() {
                let t = Table::from_csv(&p.display().to_string(), &read(p)?)?;
                let mut mine: Vec<usize> = t.rows.iter().map(|r| r.variant_index).collect();
                mine.sort_unstable();
                mine.dedup();
                idx.extend(mine);
                if n > 0 && t.axes != all.axes {
                    return Err(format!(
                        "{}: its swept keys differ from {}",
                        p.display(),
                        inputs[0].display()
                    ));
                }
                all.axes = t.axes;
                all.rows.extend(t.rows);
            }
            // Stable: rows of one variant stay in their written order.
            all.rows.sort_by_key(|r| r.variant_index);
            let count = all.rows.first().map(|r| r.variant_count).unwrap_or(0);
            if all.rows.iter().any(|r| r.variant_count != count) {
                return Err("the inputs come from sweeps of different sizes".into());
            }
            check_complete(&idx, count)?;
            for p in out {
                match format_of(p)? {
                    Format::Csv => write_file(p, all.to_csv().as_bytes())?,
                    Format::Parquet => crate::parquet_out::write(p, &all)?,
                    Format::Jsonl => {
                        return Err(format!(
                            "{}: CSV inputs merge into .csv or .parquet",
                            p.display()
                        ))
                    }
                }
            }
            Ok(format!(
                "merged {} inputs: {} variants, {} rows",
                inputs.len(),
                idx.len(),
                all.rows.len()
            ))
        }
        Format::Jsonl => {
            let mut header: Option<JsonHeader> = None;
            let mut vs: Vec<VariantOut> = vec![];
            for p in inputs {
                let text = read(p)?;
                let mut lines = text.lines();
                let h: JsonHeader = serde_json::from_str(lines.next().unwrap_or(""))
                    .map_err(|e| format!("{}:1: not a thpsim sweep header: {e}", p.display()))?;
                if header.as_ref().is_some_and(|h0| *h0 != h) {
                    return Err(format!(
                        "{}: its header differs from {} (another sweep?)",
                        p.display(),
                        inputs[0].display()
                    ));
                }
                header = Some(h);
                for (ln, l) in lines.enumerate() {
                    vs.push(
                        serde_json::from_str(l)
                            .map_err(|e| format!("{}:{}: {e}", p.display(), ln + 2))?,
                    );
                }
            }
            let header = header.expect("one input at least");
            vs.sort_by_key(|v| v.variant_index);
            let idx: Vec<usize> = vs.iter().map(|v| v.variant_index).collect();
            check_complete(&idx, header.variant_count)?;
            let table = Table::from_variants(&header.axes, &vs);
            for p in out {
                write_out(p, &header, &vs, &table)?;
            }
            Ok(format!(
                "merged {} inputs: {} variants, {} rows",
                inputs.len(),
                vs.len(),
                table.rows.len()
            ))
        }
        Format::Parquet => Err(
            "sweep merge reads the .csv or .jsonl shards (write those per shard; the merge can write .parquet)".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario() -> Scenario {
        let src = "kernel 6.18\nmemory 64M\nmmap buf 4M anon private rw align=2M\nmadvise buf HUGEPAGE\nread buf\ncheckpoint read\nwrite buf+0 4K\n";
        thpsim_scenario::parse("t.thps", src).expect("parses")
    }

    fn design() -> Design {
        let axes = vec![
            parse_axis("kernel=6.12,6.18").unwrap(),
            parse_axis("khugepaged/max_ptes_none=0..511:255").unwrap(),
            parse_axis("use_zero_page=0,1").unwrap(),
        ];
        Design::grid(axes, None, 1).unwrap()
    }

    #[test]
    fn axes_are_canonical_and_checked() {
        let a = parse_axis("khugepaged/max_ptes_none=0..511:255").unwrap();
        assert_eq!(a.key, "khugepaged.max_ptes_none");
        assert_eq!(a.values, vec!["0", "255", "510"]);
        assert!(parse_axis("khugepaged.max_ptes_none=0,512")
            .unwrap_err()
            .contains("0..=511"));
        assert!(parse_axis("enabled=always,always")
            .unwrap_err()
            .contains("twice"));
        assert!(parse_axis("enabeld=always")
            .unwrap_err()
            .contains("`enabled`"));
    }

    #[test]
    fn the_grid_is_the_product_in_order_and_samples_are_seeded() {
        let d = design();
        assert_eq!(d.points.len(), 12);
        assert_eq!(
            d.describe(0),
            "kernel=6.12 khugepaged.max_ptes_none=0 use_zero_page=0"
        );
        assert_eq!(
            d.describe(1),
            "kernel=6.12 khugepaged.max_ptes_none=0 use_zero_page=1"
        );
        assert_eq!(
            d.describe(11),
            "kernel=6.18 khugepaged.max_ptes_none=510 use_zero_page=1"
        );
        let s1 = Design::grid(d.axes.clone(), Some(5), 7).unwrap();
        let s2 = Design::grid(d.axes.clone(), Some(5), 7).unwrap();
        assert_eq!(s1, s2);
        assert_eq!(s1.points.len(), 5);
        let mut uniq = s1.points.clone();
        uniq.dedup();
        assert_eq!(uniq.len(), 5);
        assert!(s1.points.iter().all(|p| d.points.contains(p)));
        assert_ne!(s1, Design::grid(d.axes, Some(5), 8).unwrap());
    }

    #[test]
    fn shards_merge_into_the_unsharded_output() {
        let scn = scenario();
        let d = design();
        let dir = std::env::temp_dir().join(format!("thpsim-sweep-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let header = JsonHeader {
            schema: SWEEP_SCHEMA,
            kind: "thpsim-sweep".into(),
            file: scn.file.clone(),
            variant_count: d.points.len(),
            axes: d.axes.clone(),
        };
        let full = run_design(&scn, &d, None, true, false);
        assert!(full.iter().all(|v| v.error.is_none()));
        let full_csv = Table::from_variants(&d.axes, &full).to_csv();
        let full_jsonl = to_jsonl(&header, &full);
        let (mut csvs, mut jsons) = (vec![], vec![]);
        for s in 0..3 {
            let part = run_design(&scn, &d, Some((s, 3)), true, false);
            assert_eq!(part.len(), 4);
            let c = dir.join(format!("s{s}.csv"));
            let j = dir.join(format!("s{s}.jsonl"));
            std::fs::write(&c, Table::from_variants(&d.axes, &part).to_csv()).unwrap();
            std::fs::write(&j, to_jsonl(&header, &part)).unwrap();
            csvs.push(c);
            jsons.push(j);
        }
        // Shards in any order.
        csvs.reverse();
        let (mc, mj) = (dir.join("m.csv"), dir.join("m.jsonl"));
        merge(&csvs, std::slice::from_ref(&mc), false).unwrap();
        merge(&jsons, std::slice::from_ref(&mj), false).unwrap();
        assert_eq!(std::fs::read_to_string(&mc).unwrap(), full_csv);
        assert_eq!(std::fs::read_to_string(&mj).unwrap(), full_jsonl);
        // A missing shard is refused, a duplicated one too.
        let e = merge(&csvs[..2], std::slice::from_ref(&mc), false).unwrap_err();
        assert!(e.contains("4 of 12 variants are missing"), "{e}");
        let twice = vec![csvs[0].clone(), csvs[0].clone()];
        assert!(merge(&twice, std::slice::from_ref(&mc), false)
            .unwrap_err()
            .contains("appears in two inputs"));
        // Parquet from merged shards is byte-identical to Parquet from the unsharded run.
        let (pm, pf) = (dir.join("m.parquet"), dir.join("f.parquet"));
        merge(&csvs, std::slice::from_ref(&pm), false).unwrap();
        crate::parquet_out::write(&pf, &Table::from_variants(&d.axes, &full)).unwrap();
        assert_eq!(std::fs::read(&pm).unwrap(), std::fs::read(&pf).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rows_are_typed_and_reflect_the_knobs() {
        let scn = scenario();
        let d = Design::grid(vec![parse_axis("use_zero_page=0,1").unwrap()], None, 1).unwrap();
        let vs = run_design(&scn, &d, None, true, false);
        let t = Table::from_variants(&d.axes, &vs);
        let get = |vi: usize, ci: usize, obs: &str| {
            t.rows
                .iter()
                .find(|r| r.variant_index == vi && r.checkpoint_index == ci && r.observable == obs)
                .map(|r| r.value)
        };
        // A read of a 4 MiB MADV_HUGEPAGE mapping: the huge zero page twice with
        // use_zero_page=1, PMD THPs allocated on read with use_zero_page=0.
        assert_eq!(get(1, 0, "pages(buf).huge_zero"), Some(1024));
        assert_eq!(get(0, 0, "pages(buf).huge_zero"), Some(0));
        assert_eq!(get(0, 0, "vmstat.thp_fault_alloc"), Some(2));
        assert_eq!(get(1, 0, "minflt"), Some(2));
        assert_eq!(get(1, 2, "expects_failed"), Some(0));
        let back = Table::from_csv("x.csv", &t.to_csv()).unwrap();
        assert_eq!(back, t);
        assert_eq!(t.rows[0].schema, SWEEP_SCHEMA);
        assert!(t
            .rows
            .iter()
            .all(|r| r.variant.starts_with("use_zero_page=")));
        assert_eq!(t.axes, vec!["use_zero_page"]);
    }
}
