//! `thpsim check`: run each scenario on the model (under the host's kernel profile) and on
//! the host, and report every observable that differs. Counters that other processes move
//! on a live machine are compared one-sidedly or not at all, and say so; known deviations
//! come from a file and are reported but do not fail the check.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use thpsim_kernel::observe::Smaps;
use thpsim_kernel::vmstat::VmItem;
use thpsim_scenario::engine::{self, ExpectStatus, RunResult, Variant, SCHEMA_VERSION};
use thpsim_scenario::sim::SimBackend;
use thpsim_scenario::Scenario;

/// How a counter is compared between model and host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Exact,
    /// Other processes can only add to it on the host.
    HostAtLeast,
    /// The host may have done it before the scenario (the huge zero folio outlives processes).
    HostAtMost,
    /// Not attributable on a live host.
    Skip,
}

fn counter_mode(
    key: &str,
    always_sizes: &[String],
    pmd_always: bool,
    pmd_always_here: bool,
    khugepaged_controlled: bool,
) -> Mode {
    if key.starts_with("khugepaged.") && !khugepaged_controlled {
        return Mode::Skip;
    }
    // The host's free lists and pageblocks are system-wide and no scenario owns them:
    // observed on both sides, never compared.
    if ["buddyinfo.", "pagetypeinfo.", "sim."]
        .iter()
        .any(|p| key.starts_with(p))
    {
        return Mode::Skip;
    }
    // memory.usage_in_bytes holds the per-CPU charge stock of every CPU the run's tasks
    // (and kernel work on their behalf) charged on, and slab objects accounted through
    // obj_cgroup, which the model does not have (FINDINGS §33): observed, not compared.
    if key == "memcg.usage" {
        return Mode::Skip;
    }
    // NR_SWAPCACHE is a node counter: CPU-local deltas reach the global value only past a
    // threshold or at the next vmstat update, so the host's SwapCached lags (FINDINGS §23).
    if key == "meminfo.SwapCached" {
        return Mode::Skip;
    }
    // PMD THP `always` system-wide during this scenario puts other processes' mms on
    // khugepaged's list (their faults register them): its passes then also scan and collapse
    // those, so full scans are not attributable and collapses only add. (Processes that
    // registered in an earlier scenario's window and are still alive are not covered: on a
    // quiet machine there are none.)
    if pmd_always_here && key == "khugepaged.full_scans" {
        return Mode::Skip;
    }
    if pmd_always_here && key == "khugepaged.pages_collapsed" {
        return Mode::HostAtLeast;
    }
    if let Some(name) = key.strip_prefix("vmstat.") {
        if VmItem::from_name(name).is_some_and(|i| i.host_noisy()) {
            return Mode::Skip;
        }
        if name == "thp_zero_page_alloc" {
            return Mode::HostAtMost;
        }
        if pmd_always && name.starts_with("thp_") {
            return Mode::HostAtLeast;
        }
        // Other processes' THPs come and go while PMD THP is `always` system-wide.
        if pmd_always && name == "nr_anon_transparent_hugepages" {
            return Mode::Skip;
        }
    }
    if let Some(rest) = key.strip_prefix("mthp.") {
        if always_sizes
            .iter()
            .any(|s| rest.starts_with(&format!("{s}.")))
        {
            return if rest.ends_with(".nr_anon") || rest.ends_with(".nr_anon_partially_mapped") {
                Mode::Skip
            } else {
                Mode::HostAtLeast
            };
        }
    }
    Mode::Exact
}

/// The host's knob values as they were before this process pinned any (its boot state,
/// unless someone changed them): read once, at the start of `check`, `probe` or `fuzz`.
static HOST_START: std::sync::OnceLock<thpsim_kernel::sysfs::Sysfs> = std::sync::OnceLock::new();

/// Reads the host's current knob values into [`HOST_START`] (first call only).
pub(crate) fn remember_host_knobs() {
    HOST_START.get_or_init(|| {
        let mut s = thpsim_kernel::sysfs::Sysfs::default();
        for k in thpsim_kernel::sysfs::knobs() {
            if let Ok(v) = thpsim_host::sysfs::read_knob(&k.path) {
                let _ = s.set(&k.name, &v);
            }
        }
        s
    });
}

/// The host just before a scenario's run: its knob values, and the mTHP sizes (not the PMD
/// size) of which other processes already hold folios — system-wide `nr_anon` above 0, e.g.
/// left by another thpsim process's scenario that made the size `always` while compilers ran.
/// Those processes split and free such folios while the scenario runs, whatever it pins.
#[derive(Default)]
pub(crate) struct HostBefore {
    pub(crate) knobs: Vec<(String, String)>,
    pub(crate) held_sizes: Vec<String>,
}

impl HostBefore {
    pub(crate) fn read() -> Self {
        let counters = thpsim_host::observe::counters();
        let pmd = format!("{}kB", 4u64 << thpsim_kernel::types::HPAGE_PMD_ORDER);
        let held_sizes = counters
            .iter()
            .filter_map(|(k, &v)| {
                let size = k.strip_prefix("mthp.")?.strip_suffix(".nr_anon")?;
                (v > 0 && size != pmd).then(|| size.to_string())
            })
            .collect();
        HostBefore {
            knobs: thpsim_host::host_knobs(),
            held_sizes,
        }
    }
}

/// Sizes (`64kB`) that the scenario enables with `always` system-wide, or that the host had
/// `always` at the start of this process's run or just before this scenario (`before`), or
/// that an earlier scenario made `always`, or of which other processes held folios just before
/// the scenario: other processes then hold folios of that size, which they split and free
/// while the scenario runs even when it pins the size to `never`.
/// Also whether the PMD size is among them.
fn system_wide_always(plan: &engine::Plan, before: &HostBefore) -> (Vec<String>, bool) {
    let host_before = &before.knobs;
    let mut s = thpsim_kernel::sysfs::Sysfs::default();
    for (k, v) in &plan.setup.sysfs {
        let _ = s.set(k, v);
    }
    let (mut sizes, mut pmd) = always_sizes(&s);
    let mut add = |(hs, hp): (Vec<String>, bool)| {
        for x in hs {
            if !sizes.contains(&x) {
                sizes.push(x);
            }
        }
        pmd |= hp;
    };
    if let Some(h) = HOST_START.get() {
        add(always_sizes(h));
    }
    add(EVER_ALWAYS.lock().map(|e| e.clone()).unwrap_or_default());
    if !host_before.is_empty() {
        let mut h = thpsim_kernel::sysfs::Sysfs::default();
        for (k, v) in host_before {
            let _ = h.set(k, v);
        }
        add(always_sizes(&h));
    }
    add((before.held_sizes.clone(), false));
    (sizes, pmd)
}

/// Sizes that some scenario of this run made `always` system-wide (in its setup or midway):
/// every process on the machine may have faulted folios of that size meanwhile, and splits
/// and frees them later, during other scenarios.
static EVER_ALWAYS: std::sync::Mutex<(Vec<String>, bool)> = std::sync::Mutex::new((vec![], false));

/// Adds the sizes a scenario makes `always` at any point (its setup, or a mid-run `sysfs` op
/// that ran, also inside `repeat`) to [`EVER_ALWAYS`], before its comparison.
fn remember_always(plan: &engine::Plan, ops: &[engine::OpRecord]) {
    let (sizes, pmd) = always_during(plan, ops);
    let Ok(mut e) = EVER_ALWAYS.lock() else {
        return;
    };
    for x in sizes {
        if !e.0.contains(&x) {
            e.0.push(x);
        }
    }
    e.1 |= pmd;
}

/// Every size the scenario makes `always` system-wide at some point — in its setup or by a
/// mid-run `sysfs` op that ran (`sysfs KNOB=VALUE` op records) — and whether the PMD size is
/// among them.
fn always_during(plan: &engine::Plan, ops: &[engine::OpRecord]) -> (Vec<String>, bool) {
    let mut s = thpsim_kernel::sysfs::Sysfs::default();
    for (k, v) in &plan.setup.sysfs {
        let _ = s.set(k, v);
    }
    let (mut sizes, mut pmd) = always_sizes(&s);
    for o in ops {
        if let Some((k, v)) =
            o.op.strip_prefix("sysfs ")
                .and_then(|kv| kv.split_once('='))
        {
            let _ = s.set(k, v);
            let (more, p) = always_sizes(&s);
            for x in more {
                if !sizes.contains(&x) {
                    sizes.push(x);
                }
            }
            pmd |= p;
        }
    }
    (sizes, pmd)
}

fn always_sizes(s: &thpsim_kernel::sysfs::Sysfs) -> (Vec<String>, bool) {
    let mut sizes = vec![];
    let mut pmd = false;
    for o in thpsim_kernel::sysfs::ANON_ORDERS {
        let always = match s.size_enabled[o as usize] {
            thpsim_kernel::sysfs::ThpEnabled::Always => true,
            thpsim_kernel::sysfs::ThpEnabled::Inherit => {
                s.enabled == thpsim_kernel::sysfs::ThpEnabled::Always
            }
            _ => false,
        };
        if always {
            sizes.push(format!("{}kB", thpsim_kernel::sysfs::order_to_size_kb(o)));
            pmd |= o == 9;
        }
    }
    (sizes, pmd)
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Difference {
    pub line: u32,
    pub at: String,
    pub observable: String,
    pub model: String,
    pub host: String,
    /// The reason from the deviation list, if this difference is a known deviation.
    pub deviation: Option<String>,
}

#[derive(Debug, serde::Serialize)]
pub struct FileCheck {
    pub file: String,
    pub compared: usize,
    pub differences: Vec<Difference>,
    /// Set when the scenario could not run on one side.
    pub error: Option<String>,
    /// Set when the scenario is not meant for the host (model-only switches).
    pub skipped: Option<String>,
    pub model_secs: f64,
    pub host_secs: f64,
    pub warnings: Vec<String>,
}

pub(crate) struct Deviation {
    pub(crate) file: String,
    pub(crate) observable: String,
    pub(crate) reason: String,
}

/// `FILE-GLOB | OBSERVABLE-PREFIX | reason` per line; `#` comments.
pub(crate) fn load_deviations(path: &Path) -> Result<Vec<Deviation>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut v = vec![];
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parts: Vec<&str> = line.splitn(3, '|').map(str::trim).collect();
        if parts.len() != 3 || parts[2].is_empty() {
            return Err(format!(
                "{}:{}: expected `FILE-GLOB | OBSERVABLE-PREFIX | reason`",
                path.display(),
                i + 1
            ));
        }
        v.push(Deviation {
            file: parts[0].into(),
            observable: parts[1].into(),
            reason: parts[2].into(),
        });
    }
    Ok(v)
}

/// Whether a deviation's FILE-GLOB names `s`: without `*`, the path or its last
/// components; with `*` (any run of characters, several allowed), the whole path or its file
/// name.
pub(crate) fn glob_match(pat: &str, s: &str) -> bool {
    if !pat.contains('*') {
        return s == pat || s.ends_with(&format!("/{pat}"));
    }
    let name = s.rsplit('/').next().unwrap_or(s);
    wildcard(pat.as_bytes(), s.as_bytes()) || wildcard(pat.as_bytes(), name.as_bytes())
}

/// `*`-only wildcard matching of the whole of `s` (greedy with backtracking to the last star).
fn wildcard(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// The smaps fields `check` compares for one mapping: (name, model, host). For a mapping
/// of 1 GiB hugetlb pages (`KernelPageSize` 1 GiB on the model) the host's split between
/// Shared_Hugetlb and Private_Hugetlb is not deterministic (a page mapped once reads as
/// shared in some runs: smaps_hugetlb_range asks hugetlb_pmd_shared(), PMD-table sharing
/// state, of the PUD table that holds the entry; FINDINGS §34), so their sum is compared,
/// under the name `Shared_Hugetlb+Private_Hugetlb`.
fn smaps_compared(model: &Smaps, host: &Smaps) -> Vec<(&'static str, u64, u64)> {
    let pud_mapped = model.kernel_page_size >= 1 << 20;
    let mut v = Vec::new();
    for f in Smaps::FIELDS {
        match *f {
            "Private_Hugetlb" if pud_mapped => {}
            "Shared_Hugetlb" if pud_mapped => {
                let sum = |s: &Smaps| s.shared_hugetlb + s.private_hugetlb;
                v.push(("Shared_Hugetlb+Private_Hugetlb", sum(model), sum(host)));
            }
            _ => v.push((*f, model.field(f).unwrap_or(0), host.field(f).unwrap_or(0))),
        }
    }
    v
}

pub(crate) fn compare(
    model: &RunResult,
    host: &RunResult,
    plan: &engine::Plan,
    host_before: &HostBefore,
    khugepaged_controlled: bool,
    diffs: &mut Vec<Difference>,
) -> usize {
    let mut n = 0;
    let mut d = |line: u32, at: &str, obs: String, m: String, h: String| {
        diffs.push(Difference {
            line,
            at: at.to_string(),
            observable: obs,
            model: m,
            host: h,
            deviation: None,
        })
    };
    for (mo, ho) in model.ops.iter().zip(&host.ops) {
        let at = format!("op `{}`", mo.op);
        n += 3;
        if mo.result != ho.result {
            d(
                mo.line,
                &at,
                "result".into(),
                mo.result.clone(),
                ho.result.clone(),
            );
        }
        if mo.minflt != ho.minflt {
            d(
                mo.line,
                &at,
                "minflt".into(),
                mo.minflt.to_string(),
                ho.minflt.to_string(),
            );
        }
        if mo.majflt != ho.majflt {
            d(
                mo.line,
                &at,
                "majflt".into(),
                mo.majflt.to_string(),
                ho.majflt.to_string(),
            );
        }
    }
    if model.ops.len() != host.ops.len() {
        d(
            0,
            "run",
            "ops executed".into(),
            model.ops.len().to_string(),
            host.ops.len().to_string(),
        );
    }
    let (sizes, pmd_always) = system_wide_always(plan, host_before);
    let pmd_here = always_during(plan, &model.ops).1;
    for (mc, hc) in model.checkpoints.iter().zip(&host.checkpoints) {
        let at = format!("checkpoint `{}`", mc.label);
        n += 2;
        if mc.uffd_last != hc.uffd_last {
            let t = |u: Option<(u32, u64)>| {
                u.map(|(f, a)| format!("flags {f:#x} at {a:#x}"))
                    .unwrap_or_else(|| "none".into())
            };
            d(
                mc.line,
                &at,
                "uffd last message".into(),
                t(mc.uffd_last),
                t(hc.uffd_last),
            );
        }
        if mc.minflt != hc.minflt {
            d(
                mc.line,
                &at,
                "minflt".into(),
                mc.minflt.to_string(),
                hc.minflt.to_string(),
            );
        }
        for (k, mv) in &mc.counters {
            let Some(hv) = hc.counters.get(k) else {
                continue;
            };
            let ok = match counter_mode(k, &sizes, pmd_always, pmd_here, khugepaged_controlled) {
                Mode::Skip => continue,
                Mode::Exact => mv == hv,
                Mode::HostAtLeast => hv >= mv,
                Mode::HostAtMost => hv <= mv,
            };
            n += 1;
            if !ok {
                d(mc.line, &at, k.clone(), mv.to_string(), hv.to_string());
            }
        }
        for (mm, hm) in mc.mappings.iter().zip(&hc.mappings) {
            for (f, a, b) in smaps_compared(&mm.smaps, &hm.smaps) {
                n += 1;
                if a != b {
                    d(
                        mc.line,
                        &at,
                        format!("smaps({}).{f}", mm.name),
                        a.to_string(),
                        b.to_string(),
                    );
                }
            }
            n += 1;
            if mm.pages != hm.pages {
                let t = |p: &[(String, u64)]| {
                    p.iter()
                        .map(|(b, n)| format!("{b}×{n}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                d(
                    mc.line,
                    &at,
                    format!("pages({})", mm.name),
                    t(&mm.pages),
                    t(&hm.pages),
                );
            }
        }
    }
    for e in &host.expects {
        n += 1;
        if e.status == ExpectStatus::Fail {
            d(
                e.line,
                "expect",
                e.text.clone(),
                "(holds on the model)".into(),
                format!("fails on the host: actual {}", e.actual),
            );
        }
    }
    for e in &model.expects {
        if e.status == ExpectStatus::Fail {
            d(
                e.line,
                "expect",
                e.text.clone(),
                format!("fails on the model: actual {}", e.actual),
                "".into(),
            );
        }
    }
    n
}

/// Without `--allow-sysfs` the model starts from the host's knob values: the scenario with
/// a leading `sysfs` line for every knob the host has at another value than the scenario
/// assumes (and the scenario does not set; those make the host run not runnable). Returns
/// it and a note naming the knobs.
fn from_host_knobs(
    scn: &Scenario,
    plan: &engine::Plan,
) -> Result<(Scenario, Option<String>), String> {
    use thpsim_scenario::ast::{Op, Setting, Span, Stmt};
    let diffs: Vec<_> = thpsim_host::knob_diffs(&plan.setup.sysfs)?
        .into_iter()
        .filter(|d| !d.explicit)
        .collect();
    if diffs.is_empty() {
        return Ok((scn.clone(), None));
    }
    let note = format!(
        "the model starts from the host's knob values where they differ from its defaults: {}",
        diffs
            .iter()
            .map(|d| format!("{}={} (model default {})", d.name, d.host, d.scenario))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let settings = diffs
        .into_iter()
        .map(|d| Setting {
            key: d.name,
            value: d.host,
            span: Span::default(),
        })
        .collect();
    let mut s = scn.clone();
    s.stmts.insert(
        0,
        Stmt {
            span: Span::default(),
            op: Op::Sysfs { settings },
        },
    );
    Ok((s, Some(note)))
}

impl FileCheck {
    pub(crate) fn named(file: String) -> FileCheck {
        FileCheck {
            file,
            compared: 0,
            differences: vec![],
            error: None,
            skipped: None,
            model_secs: 0.0,
            host_secs: 0.0,
            warnings: vec![],
        }
    }
}

fn check_file(
    path: &PathBuf,
    opts: thpsim_host::HostOptions,
    force: bool,
    devs: &[Deviation],
    sets: &[(String, String)],
) -> FileCheck {
    let mut fc = FileCheck::named(path.display().to_string());
    let scn: Scenario = match crate::load(path) {
        Ok(s) => s,
        Err(_) => {
            fc.error = Some("does not parse".into());
            return fc;
        }
    };
    check_scenario(fc, &scn, opts, force, devs, sets)
}

/// Runs a parsed scenario on the model and on the host and compares them (`fc` names it).
/// `sets` are sysfs knobs (`check --set`): both sides start from them, the host pinned to
/// them as to the scenario's own `sysfs` lines.
pub(crate) fn check_scenario(
    mut fc: FileCheck,
    scn: &Scenario,
    opts: thpsim_host::HostOptions,
    force: bool,
    devs: &[Deviation],
    sets: &[(String, String)],
) -> FileCheck {
    let allow_sysfs = opts.allow_sysfs;
    let file = fc.file.clone();
    let scn = scn.clone();
    let host_kernel = thpsim_host::host_kernel_profile();
    // A scenario pinned to another kernel states that kernel's answers: running it under the
    // host's profile would check something it does not claim.
    let pinned = scn.stmts.iter().find_map(|s| match &s.op {
        thpsim_scenario::ast::Op::Kernel { profile } => Some(profile.clone()),
        _ => None,
    });
    if let Some(p) = pinned.filter(|p| *p != host_kernel) {
        fc.skipped = Some(format!(
            "not checkable on this host: the scenario is pinned to kernel {p}, this host runs {host_kernel}"
        ));
        return fc;
    }
    let variant = Variant {
        profile: Some(host_kernel),
        sets: sets.to_vec(),
    };
    let plan = match engine::plan(&scn, &variant) {
        Ok(p) => p,
        Err(e) => {
            fc.error = Some(e.to_string());
            return fc;
        }
    };
    // The host cannot change its kernel's behaviour: a scenario that sets switches away from
    // the host profile's values is model-only.
    let host_profile = thpsim_kernel::profile::profile(&plan.setup.profile)
        .expect("host profile is a known profile");
    let differing: Vec<String> = plan
        .switches
        .iter()
        .filter(|(k, v)| host_profile.switches.get(k).as_deref() != Some(v.as_str()))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !differing.is_empty() {
        fc.skipped = Some(format!(
            "model-only: switches {} differ from the host kernel",
            differing.join(" ")
        ));
        return fc;
    }
    if plan.setup.swap > 0 && !opts.allow_swap {
        fc.skipped = Some(
            "needs swap (a `swap` line): rerun with --allow-swap to let the run set up its swap device"
                .into(),
        );
        return fc;
    }
    if plan.setup.memcg.is_some() && !opts.allow_memcg {
        fc.skipped = Some(
            "needs a memory cgroup (a `memcg` line): rerun with --allow-memcg to let the run make one"
                .into(),
        );
        return fc;
    }
    let mut gmem = false;
    scn.for_each_op(|op| gmem |= matches!(op, thpsim_scenario::ast::Op::Gmem { .. }));
    if gmem {
        if let Err(e) = thpsim_host::guest_memfd::host_support() {
            fc.skipped = Some(format!("not for this host: {e}"));
            return fc;
        }
    }
    match thpsim_host::estimate::check_memory(&scn, force) {
        Ok(note) => fc.warnings.extend(note),
        Err(e) => {
            fc.error = Some(format!("host: not runnable: {e}"));
            return fc;
        }
    }
    let (model_scn, plan) = if allow_sysfs {
        (scn.clone(), plan)
    } else {
        let (m, note) = match from_host_knobs(&scn, &plan) {
            Ok(x) => x,
            Err(e) => {
                fc.error = Some(format!("host: not runnable: {e}"));
                return fc;
            }
        };
        fc.warnings.extend(note);
        match engine::plan(&m, &variant) {
            Ok(p) => (m, p),
            Err(e) => {
                fc.error = Some(e.to_string());
                return fc;
            }
        }
    };
    let host_before = HostBefore::read();
    if !host_before.held_sizes.is_empty() {
        fc.warnings.push(format!(
            "other processes held {} folios when the scenario started (system-wide nr_anon > 0): those sizes' mthp gauges are skipped and their events compared one-sided (host >= model)",
            host_before.held_sizes.join(" ")
        ));
    }
    let mut hb = thpsim_host::HostBackend::new(opts);
    let t1 = std::time::Instant::now();
    let host = engine::run(&scn, &mut hb, &variant);
    fc.host_secs = t1.elapsed().as_secs_f64();
    fc.warnings.extend(hb.warnings().iter().cloned());
    // With sysfs writes allowed the host keeps khugepaged under control with a sentinel mm on
    // its list; the model gets the same mm, and the other processes' mms the host found
    // ahead of it, so that passes and full scans match. (The host runs first for that.)
    let t0 = std::time::Instant::now();
    let mut sim = SimBackend::new();
    sim.khugepaged_sentinel = allow_sysfs;
    sim.khugepaged_foreign = hb.khugepaged_foreign().to_vec();
    sim.zswap_ever_enabled = hb.zswap_ever_enabled().unwrap_or(false);
    let model = engine::run(&model_scn, &mut sim, &variant);
    fc.model_secs = t0.elapsed().as_secs_f64();
    match (model, host) {
        (Ok(mut m), Ok(mut h)) => {
            if !sets.is_empty() {
                // The scenario's expectations state its answers under its own knobs; under
                // `--set` only what the two kernels observe is compared.
                m.expects.clear();
                h.expects.clear();
                fc.warnings.push(
                    "expectations not compared: --set changes the knobs they were written for"
                        .into(),
                );
            }
            remember_always(&plan, &m.ops);
            fc.compared = compare(
                &m,
                &h,
                &plan,
                &host_before,
                allow_sysfs,
                &mut fc.differences,
            );
            fc.warnings.extend(h.warnings);
        }
        (Err(e), _) => fc.error = Some(format!("model: {}", e.message())),
        (_, Err(e)) => {
            fc.error = Some(format!(
                "host: {}{}",
                if e.is_not_runnable() {
                    "not runnable: "
                } else {
                    ""
                },
                e.message()
            ))
        }
    }
    for d in &mut fc.differences {
        d.deviation = devs
            .iter()
            .find(|v| glob_match(&v.file, &file) && d.observable.starts_with(&v.observable))
            .map(|v| v.reason.clone());
    }
    fc
}

pub fn main(
    files: &[PathBuf],
    opts: thpsim_host::HostOptions,
    force: bool,
    deviations: Option<PathBuf>,
    json: bool,
    sets: &[(String, String)],
    quiet: bool,
) -> ExitCode {
    if let Err(e) = thpsim_host::preflight() {
        eprintln!("thpsim check: cannot run on this host: {e}");
        return ExitCode::from(crate::EXIT_CANNOT_RUN);
    }
    let dev_path = deviations.or_else(|| {
        Some(PathBuf::from("scenarios/conformance/deviations.txt")).filter(|p| p.exists())
    });
    let devs = match dev_path.as_deref().map(load_deviations).transpose() {
        Ok(d) => d.unwrap_or_default(),
        Err(e) => {
            eprintln!("thpsim check: {e}");
            return ExitCode::from(2);
        }
    };
    remember_host_knobs();
    if !json {
        out!("{}", inventory_text(&thpsim_host::inventory::take()));
    }
    let mut results = vec![];
    let bar = crate::progress::bar(files.len() as u64, "check", quiet);
    for f in files {
        bar.set_message(f.display().to_string());
        let fc = check_file(f, opts, force, &devs, sets);
        if !json {
            bar.suspend(|| out!("{}", file_text(&fc)));
        }
        bar.inc(1);
        results.push(fc);
    }
    bar.finish_and_clear();
    let skipped = results.iter().filter(|r| r.skipped.is_some()).count();
    let agree = results
        .iter()
        .filter(|r| {
            r.skipped.is_none()
                && r.error.is_none()
                && r.differences.iter().all(|d| d.deviation.is_some())
        })
        .count();
    let exact = results
        .iter()
        .filter(|r| r.skipped.is_none() && r.error.is_none() && r.differences.is_empty())
        .count();
    let compared: usize = results.iter().map(|r| r.compared).sum();
    let differing: usize = results
        .iter()
        .map(|r| {
            r.differences
                .iter()
                .filter(|d| d.deviation.is_none())
                .count()
        })
        .sum();
    let listed: usize = results
        .iter()
        .map(|r| {
            r.differences
                .iter()
                .filter(|d| d.deviation.is_some())
                .count()
        })
        .sum();
    let (ms, hs): (f64, f64) = (
        results.iter().map(|r| r.model_secs).sum(),
        results.iter().map(|r| r.host_secs).sum(),
    );
    if json {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            schema: u32,
            scenarios: usize,
            skipped: usize,
            agree: usize,
            exact: usize,
            observables_compared: usize,
            differences: usize,
            listed_deviations: usize,
            model_secs: f64,
            host_secs: f64,
            files: &'a [FileCheck],
        }
        outln!(
            "{}",
            serde_json::to_string_pretty(&Out {
                schema: SCHEMA_VERSION,
                scenarios: results.len(),
                skipped,
                agree,
                exact,
                observables_compared: compared,
                differences: differing,
                listed_deviations: listed,
                model_secs: ms,
                host_secs: hs,
                files: &results
            })
            .expect("json")
        );
    } else {
        outln!(
            "\ncheck: {} scenarios ({skipped} skipped: model-only or not for this host), {agree} agree ({exact} exactly, {} with listed deviations), {} differ; {compared} observables compared, {differing} differences, {listed} listed deviations; model {:.3}s, host {:.3}s",
            results.len(),
            agree - exact,
            results.len() - agree - skipped,
            ms,
            hs
        );
    }
    if !json {
        let mut sizes: Vec<String> = HOST_START
            .get()
            .map(|h| always_sizes(h).0)
            .unwrap_or_default();
        for x in EVER_ALWAYS.lock().map(|e| e.0.clone()).unwrap_or_default() {
            if !sizes.contains(&x) {
                sizes.push(x);
            }
        }
        if !sizes.is_empty() {
            outln!(
                "note: sizes {} were `always` system-wide at the start or during this run, so other processes hold such folios: their mthp gauges (nr_anon, nr_anon_partially_mapped) were skipped and their mthp events compared one-sided (host >= model) from then on",
                sizes.join(" ")
            );
        }
    }
    if agree + skipped == results.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn file_text(fc: &FileCheck) -> String {
    let mut o = String::new();
    if let Some(e) = &fc.error {
        let _ = writeln!(o, "ERROR {}: {e}", fc.file);
        return o;
    }
    if let Some(s) = &fc.skipped {
        let _ = writeln!(o, "skip {}: {s}", fc.file);
        return o;
    }
    let unlisted = fc
        .differences
        .iter()
        .filter(|d| d.deviation.is_none())
        .count();
    let status = if unlisted > 0 { "DIFF " } else { "ok   " };
    let _ = writeln!(
        o,
        "{status}{} ({} observables, {} differences)",
        fc.file,
        fc.compared,
        fc.differences.len()
    );
    for d in &fc.differences {
        let tag = d
            .deviation
            .as_ref()
            .map(|r| format!("  [known deviation: {r}]"))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "    {}:{} {} {}: model {} host {}{tag}",
            fc.file, d.line, d.at, d.observable, d.model, d.host
        );
    }
    for w in &fc.warnings {
        let _ = writeln!(o, "    warning: {w}");
    }
    o
}

/// What the host has that the model does not know: printed before any comparison, so that a
/// patched kernel's extra knob or stat is seen first, not as a mysterious difference later.
pub(crate) fn inventory_text(inv: &thpsim_host::inventory::Inventory) -> String {
    let mut o = String::new();
    let lines = inv.lines();
    if lines.is_empty() {
        return o;
    }
    let _ = writeln!(
        o,
        "host {}: {} name(s) the model does not know or model (not compared):",
        thpsim_host::sys::uname_release(),
        lines.len()
    );
    for l in lines {
        let _ = writeln!(o, "    {l}");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deviation_globs_match_paths_and_file_names() {
        let f = "scenarios/conformance/672-swap-disk-partially-mapped-thp-refault.thps";
        assert!(glob_match(
            "672-swap-disk-partially-mapped-thp-refault.thps",
            f
        ));
        assert!(!glob_match(
            "72-swap-disk-partially-mapped-thp-refault.thps",
            f
        ));
        assert!(glob_match("*-disk*", f));
        assert!(glob_match("*swap-disk*thp*", f));
        assert!(glob_match("scenarios/*/672-*", f));
        assert!(!glob_match("*-zram*", f));
        assert!(!glob_match("6*-file*", f));
        assert!(glob_match("fuzz", "fuzz"));
        assert!(glob_match("*", "x"));
    }

    fn hugetlb(page_kb: u64, shared: u64, private: u64) -> Smaps {
        Smaps {
            kernel_page_size: page_kb,
            shared_hugetlb: shared,
            private_hugetlb: private,
            ..Smaps::default()
        }
    }

    fn differing(m: &Smaps, h: &Smaps) -> Vec<&'static str> {
        smaps_compared(m, h)
            .into_iter()
            .filter(|(_, a, b)| a != b)
            .map(|(f, _, _)| f)
            .collect()
    }

    #[test]
    fn gigantic_hugetlb_split_is_compared_as_a_sum() {
        let g = 1 << 20;
        // The host read the page as shared: the sum agrees.
        assert!(differing(&hugetlb(g, 0, g), &hugetlb(g, g, 0)).is_empty());
        // A page missing on the host is still a difference.
        assert_eq!(
            differing(&hugetlb(g, 0, g), &hugetlb(g, 0, 0)),
            ["Shared_Hugetlb+Private_Hugetlb"]
        );
        // 2 MiB pages: the split is compared field by field.
        let m = 2048;
        assert_eq!(
            differing(&hugetlb(m, 0, m), &hugetlb(m, m, 0)),
            ["Shared_Hugetlb", "Private_Hugetlb"]
        );
        // Every other field is compared once, by its name.
        let n = smaps_compared(&hugetlb(g, 0, 0), &hugetlb(g, 0, 0)).len();
        assert_eq!(n, Smaps::FIELDS.len() - 1);
    }
}
