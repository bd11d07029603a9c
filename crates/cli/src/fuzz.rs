//! `thpsim fuzz --against-host N`: differential fuzzing of the model against this machine's
//! kernel. Each program comes from `thpsim_scenario::progen` (every op and option the language
//! has, host-runnable ones only, every THP knob randomised per program), gets a checkpoint
//! after every top-level op so the first difference is pinned to one op, and is run by the same
//! comparison as `thpsim check --allow-sysfs` (every knob pinned, khugepaged controlled).
//!
//! A program that differs is rerun: a difference that does not come back identically is host
//! noise (reported as such, with its observable, never silently dropped); one that does is a
//! reproducible disagreement, classified by (op at the first difference, observable class),
//! and shrunk to a minimal program by deleting statements while the signature stays the same.
//! Deviations listed in `scenarios/conformance/deviations.txt` with the file glob `fuzz` and
//! an observable prefix of the kind (e.g. `fuzz | write -> smaps.Locked | reason`) are
//! reported but do not fail the run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use thpsim_scenario::progen::{self, SeedRng, Weights};

use crate::check::{self, Deviation, FileCheck};

/// What one program gave.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub(crate) enum Outcome {
    Agree,
    /// Differences that did not come back identically on a rerun: host noise.
    Noise {
        first: String,
    },
    /// The same first difference on every run.
    Disagree {
        kind: String,
        first: String,
    },
    /// Listed in the deviation file.
    Listed {
        kind: String,
    },
    /// Not comparable: a run error on one side, or not runnable on the host.
    Error {
        what: String,
    },
    Skipped {
        why: String,
    },
}

#[derive(Clone, Debug, serde::Serialize)]
struct ProgramResult {
    seed: u64,
    outcome: Outcome,
    /// The minimised program, for disagreements.
    minimal: Option<String>,
}

pub(crate) struct FuzzOpts {
    pub programs: u32,
    pub seed: u64,
    /// `anon_beside_full=1` and every mTHP size on in every program.
    pub abf: bool,
    /// `op=weight` overrides.
    pub weights: Vec<(String, u32)>,
    /// Where minimised reproducers are written (one file per kind).
    pub out: Option<PathBuf>,
    /// Host runs a shrink may spend.
    pub shrink_runs: u32,
    /// Programs with a `swap` line get zram0 (`HostOptions::allow_swap`).
    pub allow_swap: bool,
    pub json: bool,
    pub verbose: bool,
}

/// SplitMix64 of (campaign seed, index): program seeds independent of N.
fn program_seed(seed: u64, i: u64) -> u64 {
    let mut z = seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

pub(crate) fn weights(overrides: &[(String, u32)]) -> Result<Weights, String> {
    let mut w = Weights::host();
    // Random `expect` lines assert nothing about the kernel; checkpoints are added after every
    // op below.
    w.set("expect", 0);
    w.set("checkpoint", 0);
    w.knob_percent = 40;
    for (op, v) in overrides {
        let Some(name) = w.ops.iter().map(|(n, _)| *n).find(|n| n == op) else {
            let names: Vec<&str> = w.ops.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "unknown op `{op}` in --weight (ops: {})",
                names.join(" ")
            ));
        };
        w.set(name, *v);
    }
    Ok(w)
}

const SETUP_OPS: &[&str] = &["kernel", "memory", "swap", "set", "sysfs", "catch"];

fn first_word(l: &str) -> &str {
    l.split('#')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .next()
        .unwrap_or("")
}

/// The program for one seed: progen's text, with `anon_beside_full=1` and every mTHP size on
/// when asked, and a checkpoint after every top-level op.
pub(crate) fn program(seed: u64, w: &Weights, abf: bool) -> String {
    let text = progen::generate(&mut SeedRng::new(seed), w);
    let mut out = String::new();
    let mut depth = 0u32;
    let mut in_setup = true;
    let mut n = 0;
    for line in text.lines() {
        let op = first_word(line);
        // The host harness holds khugepaged/scan_sleep_millisecs at 24 h to keep khugepaged
        // under control; a mid-run write would let it scan on its own timer (with 0: without
        // pause), which no model can line up with. Such writes are left out of the programs
        // (setup values are reported by the host as not applied, and only `sleep` uses them).
        if !in_setup && op == "sysfs" && line.contains("khugepaged.scan_sleep_millisecs=") {
            let kept: Vec<&str> = line
                .split_whitespace()
                .filter(|w| !w.starts_with("khugepaged.scan_sleep_millisecs="))
                .collect();
            if kept.len() > 1 {
                let indent = &line[..line.len() - line.trim_start().len()];
                let _ = writeln!(out, "{indent}{}", kept.join(" "));
            }
            continue;
        }
        if in_setup && !op.is_empty() && !SETUP_OPS.contains(&op) {
            in_setup = false;
            if abf {
                let mut s = String::from("sysfs anon_beside_full=1");
                for o in thpsim_kernel::sysfs::ANON_ORDERS {
                    if o < thpsim_kernel::types::HPAGE_PMD_ORDER {
                        let kb = thpsim_kernel::sysfs::order_to_size_kb(o);
                        // Mostly `madvise` (attributable counters), some `always`.
                        let v = if program_seed(seed, o as u64) % 4 == 0 {
                            "always"
                        } else {
                            "madvise"
                        };
                        let _ = write!(s, " hugepages-{kb}kB.enabled={v}");
                    }
                }
                let _ = writeln!(out, "{s}");
            }
        }
        let _ = writeln!(out, "{line}");
        match op {
            "repeat" => depth += 1,
            "end" => depth = depth.saturating_sub(1),
            _ => {}
        }
        if !in_setup && depth == 0 && !op.is_empty() && !matches!(op, "checkpoint" | "expect") {
            n += 1;
            let _ = writeln!(out, "checkpoint f{n}");
        }
    }
    out
}

/// The statement (first word, and madvise advice or uffd subcommand) at or before `line`
/// that is not a checkpoint: the op a difference belongs to.
fn op_at(text: &str, line: u32) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut i = (line as usize).min(lines.len());
    while i > 0 {
        let l = lines[i - 1];
        let op = first_word(l);
        if !op.is_empty() && !matches!(op, "checkpoint" | "expect" | "end") {
            let words: Vec<&str> = l
                .split('#')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect();
            return match op {
                "madvise" => format!("madvise:{}", words.last().unwrap_or(&"")),
                "uffd" => format!("uffd:{}", words.get(1).unwrap_or(&"")),
                "mmap" if words.contains(&"populate") => "mmap:populate".into(),
                _ => op.to_string(),
            };
        }
        i -= 1;
    }
    "setup".into()
}

/// `smaps(buf).Rss` → `smaps.Rss`, `pages(buf)` → `pages`, op fields → `op.*`.
fn observable_class(at: &str, obs: &str) -> String {
    if let Some(rest) = obs.strip_prefix("smaps(") {
        return format!(
            "smaps.{}",
            rest.split_once(").").map(|x| x.1).unwrap_or(rest)
        );
    }
    if obs.starts_with("pages(") {
        return "pages".into();
    }
    if at.starts_with("op ") {
        return format!("op.{obs}");
    }
    obs.to_string()
}

/// A difference's kind: `OP -> OBSERVABLE-CLASS`.
fn kind_of(text: &str, d: &check::Difference) -> String {
    format!(
        "{} -> {}",
        op_at(text, d.line),
        observable_class(&d.at, &d.observable)
    )
}

/// (kind, full first difference) of a check, or None if it agrees.
fn signature(fc: &FileCheck, text: &str) -> Option<(String, String)> {
    let d = fc.differences.iter().find(|d| d.deviation.is_none())?;
    let kind = kind_of(text, d);
    let first = format!(
        "line {} {} {}: model {} host {}",
        d.line, d.at, d.observable, d.model, d.host
    );
    Some((kind, first))
}

/// The line of a run error reported as `NAME:LINE:COL: error: …`.
fn error_line(e: &str, name: &str) -> Option<u32> {
    let rest = &e[e.find(name)? + name.len()..];
    let rest = rest.strip_prefix(':')?;
    let (line, rest) = rest.split_once(':')?;
    rest.split_once(": error:")?;
    line.parse().ok()
}

struct Runner<'a> {
    opts: thpsim_host::HostOptions,
    devs: &'a [Deviation],
    host_runs: u64,
}

impl Runner<'_> {
    fn check(&mut self, name: &str, text: &str) -> Result<FileCheck, String> {
        let scn = thpsim_scenario::parse(name, text).map_err(|d| {
            format!(
                "generated program does not parse: {}",
                thpsim_scenario::diag::render_all(&d, text)
            )
        })?;
        self.host_runs += 1;
        let mut fc = check::check_scenario(
            FileCheck::named(name.to_string()),
            &scn,
            self.opts,
            false,
            &[],
            &[],
        );
        // Fuzz deviations are matched on the kind, not on a generated file's name.
        for d in &mut fc.differences {
            let kind = kind_of(text, d);
            d.deviation = self
                .devs
                .iter()
                .find(|v| check::glob_match(&v.file, "fuzz") && kind.starts_with(&v.observable))
                .map(|v| v.reason.clone());
        }
        Ok(fc)
    }

    fn classify(&mut self, name: &str, text: &str) -> Result<(Outcome, Option<String>), String> {
        let fc = self.check(name, text)?;
        if let Some(s) = &fc.skipped {
            return Ok((Outcome::Skipped { why: s.clone() }, None));
        }
        if let Some(e) = &fc.error {
            // A run error at a line (e.g. `as` of a process whose parent was killed): both
            // backends stop there, so compare the program up to that line instead.
            if let Some(line) = error_line(e, name).filter(|&l| l > 1) {
                let cut: String = text
                    .lines()
                    .take(line as usize - 1)
                    .map(|l| format!("{l}\n"))
                    .collect();
                if cut.len() < text.len() && thpsim_scenario::parse(name, &cut).is_ok() {
                    return self.classify(name, &cut);
                }
            }
            return Ok((Outcome::Error { what: e.clone() }, None));
        }
        let Some((kind, first)) = signature(&fc, text) else {
            if let Some(d) = fc.differences.first() {
                let kind = kind_of(text, d);
                return Ok((Outcome::Listed { kind }, None));
            }
            return Ok((Outcome::Agree, None));
        };
        // Rerun to confirm: the same first difference twice more, or it is noise.
        for _ in 0..2 {
            let again = self.check(name, text)?;
            if signature(&again, text).map(|s| s.1) != Some(first.clone()) {
                return Ok((Outcome::Noise { first }, None));
            }
        }
        Ok((
            Outcome::Disagree {
                kind: kind.clone(),
                first,
            },
            None,
        ))
    }

    /// Deletes statements (a `repeat` block as a whole, or single lines) while the kind stays
    /// the same, within `budget` host runs.
    fn shrink(&mut self, text: &str, kind: &str, budget: u32) -> String {
        let mut cur: Vec<String> = text.lines().map(str::to_string).collect();
        let mut runs = 0u32;
        // First drop checkpoints (they only localise) and big chunks of body lines (ddmin
        // style, halves then quarters, …), then single statements.
        let keeps = |this: &mut Self, cand: &[String], runs: &mut u32| -> bool {
            let t = cand.join("\n") + "\n";
            if thpsim_scenario::parse("shrink", &t).is_err() {
                return false;
            }
            *runs += 1;
            this.check("shrink.thps", &t)
                .ok()
                .and_then(|fc| signature(&fc, &t))
                .is_some_and(|s| s.0 == kind)
        };
        let no_ckpt: Vec<String> = cur
            .iter()
            .filter(|l| first_word(l) != "checkpoint")
            .cloned()
            .collect();
        if no_ckpt.len() < cur.len() && keeps(self, &no_ckpt, &mut runs) {
            cur = no_ckpt;
        }
        let mut chunk = cur.len() / 2;
        while chunk >= 2 && runs < budget {
            let mut start = cur.len();
            while start > 0 && runs < budget {
                let from = start.saturating_sub(chunk);
                let mut cand = cur.clone();
                cand.drain(from..start);
                if keeps(self, &cand, &mut runs) {
                    cur = cand;
                }
                start = from;
            }
            chunk /= 2;
        }
        let mut changed = true;
        while changed && runs < budget {
            changed = false;
            let mut i = cur.len();
            while i > 0 && runs < budget {
                i -= 1;
                let op = first_word(&cur[i]);
                if op.is_empty() || op == "end" || op == "kernel" {
                    continue;
                }
                // The block a `repeat` opens goes with it.
                let mut j = i + 1;
                if op == "repeat" {
                    let mut depth = 1;
                    while j < cur.len() && depth > 0 {
                        match first_word(&cur[j]) {
                            "repeat" => depth += 1,
                            "end" => depth -= 1,
                            _ => {}
                        }
                        j += 1;
                    }
                }
                let mut cand = cur.clone();
                cand.drain(i..j);
                if keeps(self, &cand, &mut runs) {
                    cur = cand;
                    changed = true;
                }
            }
        }
        cur.join("\n") + "\n"
    }
}

pub(crate) fn main(o: FuzzOpts) -> ExitCode {
    if let Err(e) = thpsim_host::preflight() {
        eprintln!("thpsim fuzz: cannot run on this host: {e}");
        return ExitCode::from(crate::EXIT_CANNOT_RUN);
    }
    crate::check::remember_host_knobs();
    let mut w = match weights(&o.weights) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("thpsim fuzz: {e}");
            return ExitCode::from(2);
        }
    };
    // Programs with a `swap` line need zram0 set up for them: only with --allow-swap (then at
    // the model's default weight unless --weight says otherwise).
    let swap_set = o.weights.iter().any(|(k, _)| k == "swap");
    if o.allow_swap && !swap_set {
        w.set("swap", Weights::model().weight("swap"));
    } else if !o.allow_swap && w.weight("swap") > 0 {
        eprintln!("thpsim fuzz: --weight swap=N needs --allow-swap");
        return ExitCode::from(2);
    }
    // A host whose KVM has no guest_memfd cannot run `gmem` programs: generate none (said,
    // so that a seed's programs are known to differ from a host that has it).
    if w.weight("gmem") > 0 {
        if let Err(e) = thpsim_host::guest_memfd::host_support() {
            eprintln!("thpsim fuzz: no `gmem` ops in these programs: {e}");
            w.set("gmem", 0);
        }
    }
    let dev_path = PathBuf::from("scenarios/conformance/deviations.txt");
    let devs = if dev_path.exists() {
        match check::load_deviations(&dev_path) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("thpsim fuzz: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        vec![]
    };
    if let Some(dir) = &o.out {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("thpsim fuzz: cannot create {}: {e}", dir.display());
            return ExitCode::from(2);
        }
    }
    let mut r = Runner {
        opts: thpsim_host::HostOptions {
            allow_sysfs: true,
            no_wait: false,
            allow_swap: o.allow_swap,
            allow_memcg: false,
        },
        devs: &devs,
        host_runs: 0,
    };
    if !o.json {
        out!("{}", check::inventory_text(&thpsim_host::inventory::take()));
        outln!(
            "fuzz: {} programs, seed {}, anon_beside_full {}",
            o.programs,
            o.seed,
            if o.abf {
                "1 (every mTHP size on)"
            } else {
                "random"
            }
        );
    }
    let t0 = Instant::now();
    let mut results = vec![];
    let mut minimal: BTreeMap<String, (u64, String, String)> = BTreeMap::new();
    for i in 0..o.programs as u64 {
        let seed = program_seed(o.seed, i);
        let text = program(seed, &w, o.abf);
        let name = format!("fuzz-{seed:016x}.thps");
        let (outcome, _) = match r.classify(&name, &text) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("thpsim fuzz: seed {seed:#x}: {e}");
                return ExitCode::from(1);
            }
        };
        let mut min = None;
        if let Outcome::Disagree { kind, first } = &outcome {
            // Shrink the first program of each kind only.
            if !minimal.contains_key(kind) {
                let m = r.shrink(&text, kind, o.shrink_runs);
                minimal.insert(kind.clone(), (seed, m.clone(), first.clone()));
                min = Some(m);
            }
        }
        if o.verbose && !o.json {
            outln!("  {seed:016x}: {outcome:?}");
        }
        let done = i + 1;
        if done % 25 == 0 && done < o.programs as u64 {
            let bad = results
                .iter()
                .filter(|p: &&ProgramResult| matches!(p.outcome, Outcome::Disagree { .. }))
                .count()
                + matches!(outcome, Outcome::Disagree { .. }) as usize;
            eprintln!(
                "fuzz: {done}/{} programs, {bad} disagreeing, {:.0} programs/min",
                o.programs,
                60.0 * done as f64 / t0.elapsed().as_secs_f64().max(1e-9)
            );
        }
        results.push(ProgramResult {
            seed,
            outcome,
            minimal: min,
        });
    }
    let secs = t0.elapsed().as_secs_f64();
    let n = results.len().max(1) as f64;
    let count = |f: &dyn Fn(&Outcome) -> bool| results.iter().filter(|p| f(&p.outcome)).count();
    let agree = count(&|x| matches!(x, Outcome::Agree));
    let listed = count(&|x| matches!(x, Outcome::Listed { .. }));
    let noise = count(&|x| matches!(x, Outcome::Noise { .. }));
    let disagree = count(&|x| matches!(x, Outcome::Disagree { .. }));
    let errors = count(&|x| matches!(x, Outcome::Error { .. }));
    let skipped = count(&|x| matches!(x, Outcome::Skipped { .. }));
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let mut noise_kinds: BTreeMap<String, usize> = BTreeMap::new();
    let mut error_kinds: BTreeMap<String, usize> = BTreeMap::new();
    for p in &results {
        match &p.outcome {
            Outcome::Disagree { kind, .. } => *kinds.entry(kind.clone()).or_default() += 1,
            Outcome::Noise { first } => {
                let obs = first.split(": model").next().unwrap_or(first);
                let obs = obs.rsplit(' ').next().unwrap_or(obs).to_string();
                *noise_kinds.entry(obs).or_default() += 1
            }
            Outcome::Error { what } => {
                let w: String = what.chars().take(90).collect();
                *error_kinds.entry(w).or_default() += 1
            }
            _ => {}
        }
    }
    if let Some(dir) = &o.out {
        for (kind, (seed, text, first)) in &minimal {
            let file: String = kind
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            let body = format!(
                "# thpsim fuzz: minimised from seed {seed:#x} (campaign seed {}).\n# kind: {kind}\n# first difference: {first}\n{text}",
                o.seed
            );
            let _ = std::fs::write(dir.join(format!("{file}.thps")), body);
        }
    }
    let pct = |x: usize| 100.0 * x as f64 / n;
    let comparable = (results.len() - errors - skipped).max(1) as f64;
    let agree_rate = 100.0 * (agree + listed + noise) as f64 / comparable;
    if o.json {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            schema: u32,
            seed: u64,
            programs: usize,
            anon_beside_full: bool,
            agree: usize,
            listed: usize,
            noise: usize,
            disagree: usize,
            errors: usize,
            skipped: usize,
            agreement_percent: f64,
            kinds: &'a BTreeMap<String, usize>,
            noise_observables: &'a BTreeMap<String, usize>,
            host_runs: u64,
            seconds: f64,
            programs_per_minute: f64,
            results: &'a [ProgramResult],
        }
        outln!(
            "{}",
            serde_json::to_string_pretty(&Out {
                schema: thpsim_scenario::engine::SCHEMA_VERSION,
                seed: o.seed,
                programs: results.len(),
                anon_beside_full: o.abf,
                agree,
                listed,
                noise,
                disagree,
                errors,
                skipped,
                agreement_percent: agree_rate,
                kinds: &kinds,
                noise_observables: &noise_kinds,
                host_runs: r.host_runs,
                seconds: secs,
                programs_per_minute: 60.0 * results.len() as f64 / secs.max(1e-9),
                results: &results,
            })
            .expect("json")
        );
    } else {
        let mut t = String::new();
        let _ = writeln!(t, "\n| outcome | programs | share |\n|---|---|---|");
        for (label, x) in [
            ("agree", agree),
            ("agree but for listed deviations", listed),
            ("host noise only (not reproducible on rerun)", noise),
            ("reproducible disagreement", disagree),
            ("not comparable (run error)", errors),
            ("skipped", skipped),
        ] {
            let _ = writeln!(t, "| {label} | {x} | {:.1} % |", pct(x));
        }
        let _ = writeln!(
            t,
            "\nagreement (agree + listed + noise, of comparable programs): {agree_rate:.2} %"
        );
        if !kinds.is_empty() {
            let _ = writeln!(
                t,
                "\ndisagreement kinds (op at the first difference -> observable):"
            );
            let mut v: Vec<_> = kinds.iter().collect();
            v.sort_by(|a, b| b.1.cmp(a.1));
            for (k, c) in v {
                let (seed, _, first) = &minimal[k];
                let _ = writeln!(t, "  {c:>4}  {k}    (e.g. seed {seed:#x}: {first})");
            }
        }
        if !noise_kinds.is_empty() {
            let _ = writeln!(
                t,
                "\nhost noise (first differing observable, not reproducible):"
            );
            for (k, c) in &noise_kinds {
                let _ = writeln!(t, "  {c:>4}  {k}");
            }
        }
        if !error_kinds.is_empty() {
            let _ = writeln!(t, "\nnot comparable:");
            for (k, c) in &error_kinds {
                let _ = writeln!(t, "  {c:>4}  {k}");
            }
        }
        let _ = writeln!(
            t,
            "\n{} programs in {secs:.1} s ({:.0} programs/min), {} host runs",
            results.len(),
            60.0 * results.len() as f64 / secs.max(1e-9),
            r.host_runs
        );
        if let Some(dir) = &o.out {
            let _ = writeln!(t, "minimised reproducers in {}", dir.display());
        }
        out!("{t}");
    }
    if disagree > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_deterministic_and_checkpointed() {
        let w = weights(&[]).unwrap();
        let a = program(7, &w, false);
        assert_eq!(a, program(7, &w, false));
        assert!(thpsim_scenario::parse("t", &a).is_ok(), "{a}");
        // Every top-level op is followed by a checkpoint.
        let lines: Vec<&str> = a.lines().collect();
        let mut depth = 0;
        let mut setup = true;
        for (i, l) in lines.iter().enumerate() {
            let op = first_word(l);
            if setup && !op.is_empty() && !SETUP_OPS.contains(&op) {
                setup = false;
            }
            match op {
                "repeat" => depth += 1,
                "end" => depth -= 1,
                _ => {}
            }
            if !setup && depth == 0 && !op.is_empty() && op != "checkpoint" {
                assert!(lines[i + 1].starts_with("checkpoint f"), "{a}");
            }
        }
        let b = program(7, &w, true);
        assert!(
            b.contains("sysfs anon_beside_full=1 hugepages-16kB.enabled="),
            "{b}"
        );
        assert!(thpsim_scenario::parse("t", &b).is_ok(), "{b}");
    }

    #[test]
    fn kinds() {
        let t =
            "mmap a 2M anon private rw\ncheckpoint f1\nmadvise a+0 2M COLLAPSE\ncheckpoint f2\n";
        assert_eq!(op_at(t, 4), "madvise:COLLAPSE");
        assert_eq!(op_at(t, 1), "mmap");
        assert_eq!(
            observable_class("checkpoint `f2`", "smaps(a).Rss"),
            "smaps.Rss"
        );
        assert_eq!(observable_class("op `write`", "minflt"), "op.minflt");
        assert_eq!(observable_class("checkpoint `f2`", "pages(a)"), "pages");
        assert_eq!(
            observable_class("checkpoint `f2`", "vmstat.thp_fault_alloc"),
            "vmstat.thp_fault_alloc"
        );
    }

    #[test]
    fn run_error_lines() {
        let e = "model: fuzz-1.thps:72:1: error: process `p1` does not exist";
        assert_eq!(error_line(e, "fuzz-1.thps"), Some(72));
        assert_eq!(error_line("host: not runnable: x", "fuzz-1.thps"), None);
    }

    #[test]
    fn unknown_weight_is_an_error() {
        assert!(weights(&[("wrte".into(), 3)])
            .unwrap_err()
            .contains("unknown op"));
        assert_eq!(weights(&[("write".into(), 0)]).unwrap().weight("write"), 0);
    }
}
