//! The run engine: lays out a scenario's mappings in an arena, turns statements into
//! backend ops, takes snapshots at checkpoints, computes deltas and evaluates `expect`s.
//! Pure: it only talks to a `Backend`.

use std::collections::BTreeMap;

use thpsim_kernel::errno::{OpError, Signal};
use thpsim_kernel::observe::{pagemap_count, pagemap_push, PageMap, Smaps};
use thpsim_kernel::profile;
use thpsim_kernel::types::{page_align_up, PAGE_SIZE, PMD_SIZE};

use crate::ast::{
    Cmp, Condition, Expect, ExpectValue, MapBacking, Observable, Op, RangeRef, Scenario, Span, Stmt,
};
use crate::backend::{Backend, BackendError, BackendOp, Setup, Snapshot};

/// Schema version of run/compare/check JSON output. 2: runs carry every sysfs knob's
/// starting value (`sysfs`); compare rows carry a `group` and typed values (numbers, a page
/// map as text), and a `verdicts` list.
pub const SCHEMA_VERSION: u32 = 2;

/// Default simulated memory when a scenario has no `memory` line.
pub const DEFAULT_MEMORY: u64 = 16 << 30;

/// Unmapped gap left after every mapping, so mappings never merge into one VMA.
pub const LAYOUT_GAP: u64 = PMD_SIZE;

/// Op records a run keeps (`RunResult::ops`); later ops are counted in `ops_omitted`, so a
/// run's memory does not grow with a `repeat` count.
pub const MAX_OP_RECORDS: usize = 100_000;
/// Expectation results a run keeps; later ones are counted in `expects_omitted`.
pub const MAX_EXPECT_RECORDS: usize = 100_000;
/// Checkpoints a run keeps; later ones are taken (they reset the deltas) but not recorded.
pub const MAX_CHECKPOINT_RECORDS: usize = 10_000;

/// What a run varies: the profile and switch overrides (`--kernel`, `--set`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Variant {
    /// Overrides the scenario's `kernel` line.
    pub profile: Option<String>,
    /// Profiles, switches and sysfs knobs (`crate::settings`), applied after the scenario's
    /// `kernel`, `set` and `sysfs` lines.
    pub sets: Vec<(String, String)>,
}

impl Variant {
    pub fn label(&self, scenario_profile: &str) -> String {
        let mut s = self
            .profile
            .clone()
            .unwrap_or_else(|| scenario_profile.to_string());
        for (k, v) in &self.sets {
            // A profile given as a setting is already the label's first word.
            if !crate::settings::PROFILE_KEYS.contains(&k.as_str()) {
                s.push_str(&format!(" {k}={v}"));
            }
        }
        s
    }
}

/// A mapping's place in the arena.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Placed {
    pub name: String,
    pub addr: u64,
    pub len: u64,
}

/// The static plan of a scenario: setup and layout.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Plan {
    pub setup: Setup,
    pub mappings: Vec<Placed>,
    /// Effective switch values (profile + sets), for `when` conditions and reports.
    pub switches: BTreeMap<String, String>,
    pub version: (u32, u32),
    /// Signals the processes catch (`catch`); any other signal kills the process.
    pub caught: Vec<Signal>,
    /// An upper bound of what the scenario can fault in (see [`TouchBound`]).
    pub touch: TouchBound,
}

/// An upper bound of the memory a scenario can make resident, from its text alone: every
/// op that can fault pages in (accesses, `populate`, MADV_POPULATE_*/COLLAPSE, mlock,
/// uffd copy/zeropage) counted once over its whole range (a `repeat` touches the same
/// bytes again), times the number of processes (each can hold its own copies and page
/// tables), and never more than the simulated `memory`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TouchBound {
    /// 4 KiB pages that can be resident at once.
    pub pages: u64,
    /// PTE tables (one per touched 2 MiB region and process) that can exist at once.
    pub pte_tables: u64,
    /// Simulated memory in pages.
    pub memory_pages: u64,
}

/// Host bytes the model needs per resident order-0 page (folio record, PTE, buddy bits;
/// `thpsim bench` measures 28 B), with headroom.
pub const MODEL_BYTES_PER_PAGE: u64 = 40;
/// Host bytes per PTE table of the model (512 entries of 8 bytes).
pub const MODEL_BYTES_PER_PTE_TABLE: u64 = 4096;

impl TouchBound {
    /// The model's memory need for this bound, in host bytes (the buddy allocator's
    /// 2 bits per simulated page included; a fixed 64 MiB for everything else).
    pub fn model_bytes(&self) -> u64 {
        self.pages
            .saturating_mul(MODEL_BYTES_PER_PAGE)
            .saturating_add(self.pte_tables.saturating_mul(MODEL_BYTES_PER_PTE_TABLE))
            .saturating_add(self.memory_pages / 4)
            .saturating_add(64 << 20)
    }
}

fn touch_bound(scn: &Scenario, mappings: &[Placed], memory: u64) -> TouchBound {
    use crate::ast::UffdOp;
    use thpsim_kernel::types::Advice;
    let size_of = |name: &str| {
        mappings
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.len)
            .unwrap_or(0)
    };
    let len_of = |r: &RangeRef| match (r.offset, r.len) {
        (_, Some(l)) => l,
        (None, None) => size_of(&r.mapping),
        (Some(_), None) => 1,
    };
    let (mut bytes, mut regions, mut procs) = (0u64, 0u64, 1u64);
    let mut add = |len: u64| {
        bytes = bytes.saturating_add(len.div_ceil(PAGE_SIZE) * PAGE_SIZE);
        regions = regions.saturating_add(len.div_ceil(PMD_SIZE) + 1);
    };
    scn.for_each_op(|op| match op {
        Op::Access(a) => add(len_of(&a.range)),
        Op::Mmap(m) if m.populate => add(m.size),
        Op::Madvise {
            range,
            advice:
                Advice::PopulateRead
                | Advice::PopulateWrite
                | Advice::PopulatePgtable
                | Advice::Populate
                | Advice::Collapse,
        } => add(len_of(range)),
        Op::Mlock { range, lock: true } => add(len_of(range)),
        Op::Uffd(
            UffdOp::Copy { range, .. }
            | UffdOp::Zeropage { range }
            | UffdOp::Continue { range, .. },
        ) => add(len_of(range)),
        Op::Fork { .. } => procs = procs.saturating_add(1),
        _ => {}
    });
    let memory_pages = memory / PAGE_SIZE;
    TouchBound {
        pages: (bytes / PAGE_SIZE).saturating_mul(procs).min(memory_pages),
        pte_tables: regions.saturating_mul(procs).min(memory_pages),
        memory_pages,
    }
}

/// Why a scenario's setup cannot be resolved under a variant.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("unknown kernel profile `{name}` (known: {})", known.join(", "))]
    UnknownProfile {
        name: String,
        known: Vec<&'static str>,
    },
    /// A switch override the profile refuses (the kernel crate's message).
    #[error("{0}")]
    Switch(String),
    /// A `--set` that is no profile, switch or sysfs knob, or a value it does not take.
    #[error("{0}")]
    Setting(String),
}

/// Lays out the scenario and resolves its setup under a variant.
pub fn plan(scn: &Scenario, variant: &Variant) -> Result<Plan, PlanError> {
    let mut profile_name = profile::DEFAULT_PROFILE.to_string();
    let mut memory = DEFAULT_MEMORY;
    let mut swap = 0;
    let mut swap_device = thpsim_kernel::SwapDevice::Zram;
    let mut memcg = None;
    let mut switches_in = Vec::new();
    let mut sysfs = Vec::new();
    let mut caught = Vec::new();
    for st in &scn.stmts {
        match &st.op {
            Op::Catch { signals } => caught.extend(signals.iter().copied()),
            Op::Kernel { profile } => profile_name = profile.clone(),
            Op::Memory { bytes } => memory = *bytes,
            Op::Swap { bytes, device } => {
                swap = *bytes;
                swap_device = *device;
            }
            Op::Memcg(cfg) => memcg = Some(*cfg),
            Op::Set { settings } => {
                switches_in.extend(settings.iter().map(|s| (s.key.clone(), s.value.clone())))
            }
            Op::Sysfs { settings } => {
                sysfs.extend(settings.iter().map(|s| (s.key.clone(), s.value.clone())))
            }
            _ => break,
        }
    }
    if let Some(p) = &variant.profile {
        profile_name = p.clone();
    }
    // A variant's settings name a profile, a switch or a sysfs knob (see `crate::settings`);
    // knobs apply after the scenario's `sysfs` lines, as switches after its `set` lines.
    for (k, v) in &variant.sets {
        let s = crate::settings::classify(k, v).map_err(PlanError::Setting)?;
        match s.kind {
            crate::settings::SettingKind::Profile => profile_name = s.value,
            crate::settings::SettingKind::Switch => switches_in.push((s.key, s.value)),
            crate::settings::SettingKind::Knob => sysfs.push((s.key, s.value)),
        }
    }
    let mut prof = profile::profile(&profile_name).ok_or_else(|| PlanError::UnknownProfile {
        name: profile_name.clone(),
        known: profile::profiles().iter().map(|p| p.name).collect(),
    })?;
    for (k, v) in &switches_in {
        prof.switches
            .set(k, v)
            .map_err(|e| PlanError::Switch(e.to_string()))?;
    }
    let switches = profile::SWITCHES
        .iter()
        .map(|(k, _, _)| (k.to_string(), prof.switches.get(k).unwrap_or_default()))
        .collect();
    let mut mappings = Vec::new();
    let mut cursor = 0u64;
    // The page size of each hugetlb `memfd` object (object names are unique).
    let mut huge_objects = BTreeMap::new();
    for_each_op(&scn.stmts, &mut |op| {
        if let Op::Memfd {
            name,
            hugetlb: Some(h),
            ..
        } = op
        {
            huge_objects.insert(name.clone(), *h);
        }
    });
    for_each_op(&scn.stmts, &mut |op| {
        let Op::Mmap(m) = op else { return };
        if mappings.iter().any(|p: &Placed| p.name == m.name) {
            return;
        }
        // `at=NAME+OFF`: MAP_FIXED at NAME's place (the parser saw NAME mapped earlier, so
        // it is placed); later mappings go after this one's end too, so that MAP_FIXED
        // replaces only what the scenario asked for.
        let fixed = m.at.as_ref().and_then(|at| {
            let base = mappings.iter().find(|p: &&Placed| p.name == at.mapping)?;
            Some(base.addr + at.offset)
        });
        let addr = match fixed {
            Some(a) => a,
            None => {
                // A hugetlb mapping goes at an address aligned to its page size by default
                // (the kernel's hugetlb_get_unmapped_area does the same).
                let hsize = m
                    .hugetlb
                    .or_else(|| m.object.as_ref().and_then(|o| huge_objects.get(o).copied()));
                let default = hsize.map_or(PMD_SIZE, |h| h.size().max(PMD_SIZE));
                let align = m.align.unwrap_or(default).max(PAGE_SIZE);
                cursor.div_ceil(align) * align + m.offset
            }
        };
        cursor = cursor.max(addr + m.size + LAYOUT_GAP);
        mappings.push(Placed {
            name: m.name.clone(),
            addr,
            len: m.size,
        });
    });
    // An mremap's result (grown in place, or at its destination) may reach past every
    // mapping: the arena covers it, so that both backends have free address space there.
    for_each_op(&scn.stmts, &mut |op| {
        let Op::Mremap { range, dst, size } = op else {
            return;
        };
        let place = |name: &str| mappings.iter().find(|p| p.name == name);
        let (Some(src), at) = (place(&range.mapping), dst.as_ref()) else {
            return;
        };
        // As the run resolves RANGE (`range` below): a bare offset is one byte.
        let len = size.unwrap_or(match (range.offset, range.len) {
            (_, Some(l)) => l,
            (None, None) => src.len,
            (Some(_), None) => 1,
        });
        let start = match at {
            Some(d) => place(&d.mapping).map(|p| p.addr + d.offset.unwrap_or(0)),
            None => Some(src.addr + range.offset.unwrap_or(0)),
        };
        if let Some(end) =
            start.and_then(|s| s.checked_add(page_align_up(len.min(crate::parse::MAX_MAPPING))))
        {
            cursor = cursor.max(end);
        }
    });
    let arena_len = cursor.div_ceil(1 << 30).max(1) << 30;
    let touch = touch_bound(scn, &mappings, memory);
    Ok(Plan {
        setup: Setup {
            profile: profile_name,
            switches: switches_in,
            memory,
            swap,
            swap_device,
            memcg,
            sysfs,
            arena_len,
        },
        mappings,
        switches,
        version: prof.version,
        caught,
        touch,
    })
}

impl Plan {
    /// Every sysfs knob's value at the start (model defaults, then `setup.sysfs` in order).
    pub fn start_sysfs(&self) -> BTreeMap<String, String> {
        let mut s = thpsim_kernel::sysfs::Sysfs::default();
        for (k, v) in &self.setup.sysfs {
            // plan() checked variant knobs; a bad scenario line fails in setup() with its error.
            let _ = s.set(k, v);
        }
        thpsim_kernel::sysfs::knobs()
            .into_iter()
            .map(|k| {
                let v = s.get(&k.name).unwrap_or_default();
                (k.name, v)
            })
            .collect()
    }
}

/// Calls `f` on every op of `stmts`, in order, inside `repeat` bodies too (once each).
fn for_each_op(stmts: &[Stmt], f: &mut impl FnMut(&Op)) {
    for st in stmts {
        match &st.op {
            Op::Repeat { body, .. } => for_each_op(body, f),
            op => f(op),
        }
    }
}

/// One executed op.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct OpRecord {
    pub line: u32,
    pub op: String,
    pub result: String,
    pub minflt: u64,
    pub majflt: u64,
    /// The op returned an error or raised a signal (or was not run: its process was killed).
    pub failed: bool,
}

/// Observations at a checkpoint: counter deltas since the previous one, current state.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Checkpoint {
    pub label: String,
    pub line: u32,
    pub minflt: u64,
    pub majflt: u64,
    /// Every counter's delta (zero deltas included), by observable key.
    pub counters: BTreeMap<String, i64>,
    pub mappings: Vec<MappingState>,
    /// The last userfaultfd message so far: flags and address (arena offset).
    pub uffd_last: Option<(u32, u64)>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MappingState {
    pub name: String,
    pub smaps: Smaps,
    pub pages: Vec<(String, u64)>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum ExpectStatus {
    Pass,
    Fail,
    /// A `when` condition excludes this run.
    Skipped,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ExpectResult {
    pub line: u32,
    pub col: u32,
    pub text: String,
    pub status: ExpectStatus,
    pub actual: String,
}

/// A process killed by a signal it did not catch.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Killed {
    pub process: String,
    /// Line of the op that raised the signal.
    pub line: u32,
    pub signal: String,
    /// Ops of this process after the kill that were not run.
    pub ops_not_run: u64,
}

/// Expectation results past `MAX_EXPECT_RECORDS`, counted by status.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Omitted {
    pub pass: u64,
    pub fail: u64,
    pub skipped: u64,
}

/// Everything a run produced.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RunResult {
    pub schema: u32,
    pub file: String,
    pub backend: String,
    pub variant: String,
    pub profile: String,
    pub switches: BTreeMap<String, String>,
    /// Every sysfs knob's value at the start of the run: the model's defaults, then the
    /// scenario's leading `sysfs` lines and the variant's knob settings.
    pub sysfs: BTreeMap<String, String>,
    pub ops: Vec<OpRecord>,
    pub checkpoints: Vec<Checkpoint>,
    pub expects: Vec<ExpectResult>,
    pub warnings: Vec<String>,
    /// Processes killed by a signal, in order.
    pub killed: Vec<Killed>,
    /// Ops run (or not run, for a killed process) past `MAX_OP_RECORDS`: not in `ops`.
    pub ops_omitted: u64,
    /// Expectation results past `MAX_EXPECT_RECORDS`: not in `expects`.
    pub expects_omitted: Omitted,
    /// Checkpoints past `MAX_CHECKPOINT_RECORDS`: not in `checkpoints`.
    pub checkpoints_omitted: u64,
}

impl RunResult {
    /// A result with nothing recorded yet.
    pub fn empty(file: &str, backend: &str, profile: &str) -> Self {
        RunResult {
            schema: SCHEMA_VERSION,
            file: file.to_string(),
            backend: backend.to_string(),
            variant: profile.to_string(),
            profile: profile.to_string(),
            switches: BTreeMap::new(),
            sysfs: BTreeMap::new(),
            ops: vec![],
            checkpoints: vec![],
            expects: vec![],
            warnings: vec![],
            killed: vec![],
            ops_omitted: 0,
            expects_omitted: Omitted::default(),
            checkpoints_omitted: 0,
        }
    }
    pub fn failed_expects(&self) -> impl Iterator<Item = &ExpectResult> {
        self.expects
            .iter()
            .filter(|e| e.status == ExpectStatus::Fail)
    }
    /// Whether any expectation failed (including those past the record limit).
    pub fn any_failed(&self) -> bool {
        self.expects_omitted.fail > 0 || self.failed_expects().next().is_some()
    }
    /// Recorded ops that failed (an errno or a signal), in order.
    pub fn failed_ops(&self) -> impl Iterator<Item = &OpRecord> {
        self.ops.iter().filter(|o| o.failed)
    }
}

/// What became of a scenario process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProcState {
    Alive,
    Exited {
        line: u32,
    },
    /// Its `fork` failed: the process never existed.
    ForkFailed {
        line: u32,
        err: OpError,
    },
    /// Killed by a signal it did not catch; index into `RunResult::killed`.
    Killed {
        idx: usize,
    },
}

struct Run<'a> {
    plan: &'a Plan,
    backend: &'a mut dyn Backend,
    names: BTreeMap<String, usize>,
    base: Snapshot,
    base_minflt: u64,
    base_majflt: u64,
    minflt: u64,
    majflt: u64,
    /// The current snapshot, if no op ran since it was taken.
    cur: Option<Snapshot>,
    last_result: Option<Result<u64, OpError>>,
    /// Number of ops executed at the last checkpoint, and in all.
    ops_at_checkpoint: u64,
    ops_total: u64,
    /// Process names → engine ids (0 = `main`), what became of each, and the current one.
    procs: BTreeMap<String, u32>,
    names_by_id: Vec<String>,
    /// `memfd` and `file` objects → backend object ids, in creation order.
    objects: BTreeMap<String, u32>,
    /// The objects made by `memfd … hugetlb`.
    hugetlb_objects: std::collections::BTreeSet<u32>,
    next_object: u32,
    /// `tmpfs` instances → backend ids, in creation order.
    mounts: BTreeMap<String, u32>,
    next_mount: u32,
    state: Vec<ProcState>,
    /// Names whose `fork` was not run (the parent had been killed), with the kill's line.
    unforked: BTreeMap<String, u32>,
    current: u32,
    result: RunResult,
}

/// Runs a parsed scenario on a backend under a variant.
pub fn run(
    scn: &Scenario,
    backend: &mut dyn Backend,
    variant: &Variant,
) -> Result<RunResult, BackendError> {
    let plan = plan(scn, variant)?;
    backend.check_plan(&plan)?;
    backend.setup(&plan.setup)?;
    let out = run_planned(scn, &plan, backend, variant);
    let fin = backend.finish();
    let res = out?;
    fin?;
    Ok(res)
}

/// Runs a planned scenario on a backend that `setup` has been called on, without `finish`:
/// the caller goes on with the backend (`thpsim replay` continues from the scenario's state).
pub fn run_planned(
    scn: &Scenario,
    plan: &Plan,
    backend: &mut dyn Backend,
    variant: &Variant,
) -> Result<RunResult, BackendError> {
    let names = plan
        .mappings
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.clone(), i))
        .collect();
    let ranges: Vec<(u64, u64)> = plan.mappings.iter().map(|p| (p.addr, p.len)).collect();
    let base = backend.snapshot(&ranges)?;
    let mut result = RunResult::empty(&scn.file, &backend.name(), &plan.setup.profile);
    result.variant = variant.label(&plan.setup.profile);
    result.switches = plan.switches.clone();
    result.sysfs = plan.start_sysfs();
    let mut r = Run {
        plan,
        backend,
        names,
        cur: Some(base.clone()),
        base,
        base_minflt: 0,
        base_majflt: 0,
        minflt: 0,
        majflt: 0,
        last_result: None,
        ops_at_checkpoint: 0,
        ops_total: 0,
        procs: BTreeMap::from([("main".to_string(), 0)]),
        names_by_id: vec!["main".to_string()],
        objects: BTreeMap::new(),
        hugetlb_objects: std::collections::BTreeSet::new(),
        next_object: 0,
        mounts: BTreeMap::new(),
        next_mount: 0,
        state: vec![ProcState::Alive],
        unforked: BTreeMap::new(),
        current: 0,
        result,
    };
    // The setup section was applied by setup(); the body starts at the first other statement.
    let body_start = scn
        .stmts
        .iter()
        .position(|s| {
            !matches!(
                s.op,
                Op::Kernel { .. }
                    | Op::Memory { .. }
                    | Op::Swap { .. }
                    | Op::Memcg(_)
                    | Op::Set { .. }
                    | Op::Sysfs { .. }
                    | Op::Catch { .. }
            )
        })
        .unwrap_or(scn.stmts.len());
    r.stmts(&scn.stmts[body_start..])?;
    // The implicit final checkpoint, unless an explicit one already closed the run.
    let ops_since = r.ops_total > r.ops_at_checkpoint;
    if ops_since || r.result.checkpoints.is_empty() {
        let last_line = scn.stmts.last().map(|s| s.span.line).unwrap_or(0);
        r.checkpoint("end", last_line)?;
    }
    Ok(r.result)
}

fn fmt_result(r: &Result<u64, OpError>) -> String {
    match r {
        Ok(v) => format!("ok {v:#x}"),
        Err(e) => e.to_string(),
    }
}

impl Run<'_> {
    fn stmts(&mut self, stmts: &[Stmt]) -> Result<(), BackendError> {
        for st in stmts {
            self.stmt(st)?;
        }
        Ok(())
    }

    fn range(&self, r: &RangeRef) -> (u64, u64) {
        let p = &self.plan.mappings[self.names[&r.mapping]];
        match (r.offset, r.len) {
            (None, None) => (p.addr, p.len),
            (None, Some(l)) => (p.addr, l),
            (Some(o), None) => (p.addr + o, 1),
            (Some(o), Some(l)) => (p.addr + o, l),
        }
    }

    fn record(&mut self, rec: impl FnOnce() -> OpRecord) {
        self.ops_total += 1;
        if self.result.ops.len() < MAX_OP_RECORDS {
            self.result.ops.push(rec());
        } else {
            self.result.ops_omitted += 1;
        }
    }

    /// Runs an op of the current process, unless that process was killed.
    fn exec(&mut self, st: &Stmt, op: BackendOp) -> Result<(), BackendError> {
        if let ProcState::Killed { idx } = self.state[self.current as usize] {
            let k = &mut self.result.killed[idx];
            k.ops_not_run += 1;
            let why = format!(
                "not run: process `{}` was killed by {} at line {}",
                k.process, k.signal, k.line
            );
            self.record(|| OpRecord {
                line: st.span.line,
                op: op_text(&op),
                result: why,
                minflt: 0,
                majflt: 0,
                failed: true,
            });
            return Ok(());
        }
        self.exec_always(st, op)
    }

    /// Runs an op whatever became of the current process (`exit`, `as`).
    fn exec_always(&mut self, st: &Stmt, op: BackendOp) -> Result<(), BackendError> {
        let out = self.backend.exec(&op)?;
        self.cur = None;
        self.minflt += out.minflt;
        self.majflt += out.majflt;
        self.last_result = Some(out.result);
        self.record(|| OpRecord {
            line: st.span.line,
            op: op_text(&op),
            result: fmt_result(&out.result),
            minflt: out.minflt,
            majflt: out.majflt,
            failed: out.result.is_err(),
        });
        if let Err(OpError::Signal(sig)) = out.result {
            let cur = self.current as usize;
            let fatal = sig == Signal::Sigkill || !self.plan.caught.contains(&sig);
            if fatal && self.state[cur] == ProcState::Alive {
                self.state[cur] = ProcState::Killed {
                    idx: self.result.killed.len(),
                };
                self.result.killed.push(Killed {
                    process: self.names_by_id[cur].clone(),
                    line: st.span.line,
                    signal: sig.name().to_string(),
                    ops_not_run: 0,
                });
            }
        }
        Ok(())
    }

    fn stmt(&mut self, st: &Stmt) -> Result<(), BackendError> {
        match &st.op {
            Op::Kernel { .. }
            | Op::Memory { .. }
            | Op::Swap { .. }
            | Op::Memcg(_)
            | Op::Set { .. }
            | Op::Catch { .. } => Ok(()),
            Op::Sysfs { settings } => {
                for s in settings {
                    self.exec(
                        st,
                        BackendOp::Sysfs {
                            knob: s.key.clone(),
                            value: s.value.clone(),
                        },
                    )?;
                }
                Ok(())
            }
            Op::Mmap(m) if m.backing == MapBacking::DevZero => {
                let p = &self.plan.mappings[self.names[&m.name]];
                let op = BackendOp::MmapDevZero {
                    addr: p.addr,
                    len: p.len,
                    prot: m.prot,
                    shared: m.shared,
                    populate: m.populate,
                    fixed: m.at.is_some(),
                };
                self.exec(st, op)
            }
            Op::Mmap(m) => {
                let p = &self.plan.mappings[self.names[&m.name]];
                let file = m.object.as_ref().map(|o| (self.objects[o], m.foff));
                let hugetlb = m.hugetlb.is_some()
                    || file.is_some_and(|(obj, _)| self.hugetlb_objects.contains(&obj));
                let op = if hugetlb {
                    BackendOp::MmapHugetlb {
                        addr: p.addr,
                        len: p.len,
                        prot: m.prot,
                        shared: m.shared,
                        populate: m.populate,
                        fixed: m.at.is_some(),
                        noreserve: m.noreserve,
                        file,
                        hsize: m.hugetlb.unwrap_or_default(),
                    }
                } else {
                    BackendOp::Mmap {
                        addr: p.addr,
                        len: p.len,
                        prot: m.prot,
                        shared: m.shared,
                        populate: m.populate,
                        fixed: m.at.is_some(),
                        file,
                    }
                };
                self.exec(st, op)
            }
            Op::Memfd {
                name,
                size,
                hugetlb,
            } => {
                // A `memfd` inside `repeat` makes a new object each time; the name refers to
                // the latest.
                let obj = self.next_object;
                self.next_object += 1;
                self.objects.insert(name.clone(), obj);
                if let Some(hsize) = *hugetlb {
                    self.hugetlb_objects.insert(obj);
                    return self.exec(
                        st,
                        BackendOp::MemfdHugetlb {
                            obj,
                            size: *size,
                            hsize,
                        },
                    );
                }
                self.exec(st, BackendOp::MemfdCreate { obj, size: *size })
            }
            Op::Gmem { name, size, flags } => {
                let obj = self.next_object;
                self.next_object += 1;
                self.objects.insert(name.clone(), obj);
                self.exec(
                    st,
                    BackendOp::GmemCreate {
                        obj,
                        size: *size,
                        flags: *flags,
                    },
                )
            }
            Op::Tmpfs { name, huge, size } => {
                // Like objects, a `tmpfs` inside `repeat` mounts a new instance each time.
                let mnt = self.next_mount;
                self.next_mount += 1;
                self.mounts.insert(name.clone(), mnt);
                self.exec(
                    st,
                    BackendOp::TmpfsMount {
                        mnt,
                        huge: *huge,
                        size: *size,
                    },
                )
            }
            Op::File { name, size, on } => {
                let obj = self.next_object;
                self.next_object += 1;
                self.objects.insert(name.clone(), obj);
                let mnt = self.mounts[on];
                self.exec(
                    st,
                    BackendOp::FileCreate {
                        obj,
                        mnt,
                        size: *size,
                    },
                )
            }
            Op::DiskFile { name, size } => {
                let obj = self.next_object;
                self.next_object += 1;
                self.objects.insert(name.clone(), obj);
                self.exec(st, BackendOp::DiskFileCreate { obj, size: *size })
            }
            Op::Msync { range, flags } => {
                let (addr, len) = self.range(range);
                self.exec(
                    st,
                    BackendOp::Msync {
                        addr,
                        len,
                        flags: *flags,
                    },
                )
            }
            Op::Fsync { obj } => {
                let obj = self.objects[obj];
                self.exec(st, BackendOp::Fsync { obj })
            }
            Op::Ftruncate { obj, size } => {
                let obj = self.objects[obj];
                self.exec(st, BackendOp::Ftruncate { obj, size: *size })
            }
            Op::Fallocate {
                obj,
                offset,
                len,
                keep_size,
                punch_hole,
            } => {
                let obj = self.objects[obj];
                self.exec(
                    st,
                    BackendOp::Fallocate {
                        obj,
                        offset: *offset,
                        len: *len,
                        keep_size: *keep_size,
                        punch_hole: *punch_hole,
                    },
                )
            }
            Op::Munmap { range } => {
                let (addr, len) = self.range(range);
                self.exec(st, BackendOp::Munmap { addr, len })
            }
            Op::Mprotect { range, prot } => {
                let (addr, len) = self.range(range);
                self.exec(
                    st,
                    BackendOp::Mprotect {
                        addr,
                        len,
                        prot: *prot,
                    },
                )
            }
            Op::Madvise { range, advice } => {
                let (addr, len) = self.range(range);
                self.exec(
                    st,
                    BackendOp::Madvise {
                        addr,
                        len,
                        advice: *advice,
                    },
                )
            }
            Op::Access(a) => {
                let (addr, len) = self.range(&a.range);
                self.exec(
                    st,
                    BackendOp::Access {
                        addr,
                        len,
                        stride: a.stride,
                        pattern: a.pattern,
                        subset: a.subset,
                    },
                )
            }
            Op::Repeat { count, body } => {
                for _ in 0..*count {
                    self.stmts(body)?;
                }
                Ok(())
            }
            Op::Checkpoint { label } => self.checkpoint(label, st.span.line),
            Op::Fork { child } => {
                // A `fork` inside `repeat` reuses the name once its process has gone.
                if let Some(&old) = self.procs.get(child) {
                    if matches!(
                        self.state[old as usize],
                        ProcState::Alive | ProcState::Killed { .. }
                    ) {
                        return Err(self.run_error(
                            st,
                            format!("process `{child}` already exists (exit it before forking it again)"),
                        ));
                    }
                }
                if let ProcState::Killed { idx } = self.state[self.current as usize] {
                    // The killed parent does not fork: `child` never exists. The backend
                    // sees no fork, so no process id is used.
                    let line = self.result.killed[idx].line;
                    self.unforked.insert(child.clone(), line);
                    self.procs.remove(child);
                    return self.exec(
                        st,
                        BackendOp::Fork {
                            parent: self.current,
                            child: self.state.len() as u32,
                        },
                    );
                }
                self.unforked.remove(child);
                let id = self.state.len() as u32;
                self.procs.insert(child.clone(), id);
                self.names_by_id.push(child.clone());
                self.state.push(ProcState::Alive);
                self.exec(
                    st,
                    BackendOp::Fork {
                        parent: self.current,
                        child: id,
                    },
                )?;
                if let Some(Err(err)) = self.last_result {
                    self.state[id as usize] = ProcState::ForkFailed {
                        line: st.span.line,
                        err,
                    };
                }
                Ok(())
            }
            Op::As { proc } => {
                let id = self.live_proc(proc, st)?;
                self.current = id;
                self.exec_always(st, BackendOp::Switch { proc: id })
            }
            Op::Exit { proc } => {
                let id = self.live_proc(proc, st)?;
                self.state[id as usize] = ProcState::Exited { line: st.span.line };
                if self.current == id {
                    self.current = 0;
                }
                self.exec_always(st, BackendOp::Exit { proc: id })
            }
            Op::Mremap { range, dst, size } => {
                let (old, len) = self.range(range);
                let new = dst.as_ref().map(|d| {
                    self.plan.mappings[self.names[&d.mapping]].addr + d.offset.unwrap_or(0)
                });
                let new_len = size.unwrap_or(len);
                self.exec(
                    st,
                    BackendOp::Mremap {
                        old,
                        len,
                        new_len,
                        new,
                    },
                )
            }
            Op::Mlock { range, lock } => {
                let (addr, len) = self.range(range);
                self.exec(
                    st,
                    BackendOp::Mlock {
                        addr,
                        len,
                        lock: *lock,
                    },
                )
            }
            Op::Uffd(u) => {
                use crate::ast::UffdOp;
                use crate::backend::UffdReq;
                let req = match u {
                    UffdOp::Open { features } => UffdReq::Open {
                        features: features.clone(),
                    },
                    UffdOp::Register {
                        range,
                        missing,
                        wp,
                        minor,
                    } => {
                        let (addr, len) = self.range(range);
                        UffdReq::Register {
                            addr,
                            len,
                            missing: *missing,
                            wp: *wp,
                            minor: *minor,
                        }
                    }
                    UffdOp::Unregister { range } => {
                        let (addr, len) = self.range(range);
                        UffdReq::Unregister { addr, len }
                    }
                    UffdOp::Writeprotect { range, wp, stride } => {
                        let (addr, len) = self.range(range);
                        UffdReq::Writeprotect {
                            addr,
                            len,
                            wp: *wp,
                            stride: *stride,
                        }
                    }
                    UffdOp::Copy { range, wp } => {
                        let (addr, len) = self.range(range);
                        UffdReq::Copy { addr, len, wp: *wp }
                    }
                    UffdOp::Zeropage { range } => {
                        let (addr, len) = self.range(range);
                        UffdReq::Zeropage { addr, len }
                    }
                    UffdOp::Continue { range, wp } => {
                        let (addr, len) = self.range(range);
                        UffdReq::Continue { addr, len, wp: *wp }
                    }
                    UffdOp::Handler { wp, missing, minor } => UffdReq::Handler {
                        wp: *wp,
                        missing: *missing,
                        minor: *minor,
                    },
                };
                self.exec(st, BackendOp::Uffd(req))
            }
            Op::KhugepagedScan { passes } => {
                self.exec(st, BackendOp::KhugepagedScan { passes: *passes })
            }
            Op::Sleep { ms } => self.exec(st, BackendOp::Sleep { ms: *ms }),
            Op::Shrink => self.exec(st, BackendOp::Shrink),
            Op::Kalloc {
                size,
                order,
                reclaimable,
                scatter,
            } => self.exec(
                st,
                BackendOp::Kalloc {
                    size: *size,
                    order: *order,
                    reclaimable: *reclaimable,
                    scatter: *scatter,
                },
            ),
            Op::Compact => self.exec(st, BackendOp::Compact),
            Op::PrctlSetThpDisable {
                disable,
                except_advised,
            } => self.exec(
                st,
                BackendOp::PrctlSetThpDisable {
                    disable: *disable,
                    flags: if *except_advised { 1 << 1 } else { 0 },
                },
            ),
            Op::Expect(e) => self.expect(e, st.span),
        }
    }

    /// A scenario error found while running, at `st`'s file:line:col.
    fn run_error(&self, st: &Stmt, msg: String) -> BackendError {
        BackendError::Failed(format!(
            "{}:{}:{}: error: {msg}",
            self.result.file, st.span.line, st.span.col
        ))
    }

    /// The id of a process that exists (alive or killed, not exited), or a run error.
    fn live_proc(&self, name: &str, st: &Stmt) -> Result<u32, BackendError> {
        if let Some(line) = self.unforked.get(name) {
            return Err(self.run_error(
                st,
                format!(
                    "process `{name}` does not exist: its parent was killed (at line {line}) before its `fork`"
                ),
            ));
        }
        let Some(&id) = self.procs.get(name) else {
            return Err(self.run_error(
                st,
                format!("process `{name}` does not exist yet (its `fork` has not run)"),
            ));
        };
        match self.state[id as usize] {
            ProcState::Alive | ProcState::Killed { .. } => Ok(id),
            ProcState::Exited { line } => {
                Err(self.run_error(st, format!("process `{name}` has exited (at line {line})")))
            }
            ProcState::ForkFailed { line, err } => Err(self.run_error(
                st,
                format!(
                    "process `{name}` does not exist: its `fork` at line {line} failed ({err})"
                ),
            )),
        }
    }

    /// An arena offset as `NAME+0xOFF` (or the raw offset outside every mapping).
    fn describe_addr(&self, a: i64) -> String {
        if a < 0 {
            return "none".into();
        }
        let a = a as u64;
        match self
            .plan
            .mappings
            .iter()
            .find(|p| p.addr <= a && a < p.addr + p.len)
        {
            Some(p) => format!("{}+{:#x}", p.name, a - p.addr),
            None => format!("{a:#x}"),
        }
    }

    /// Takes a snapshot unless no op ran since the last one.
    fn ensure_snapshot(&mut self) -> Result<(), BackendError> {
        if self.cur.is_none() {
            let ranges: Vec<(u64, u64)> =
                self.plan.mappings.iter().map(|p| (p.addr, p.len)).collect();
            self.cur = Some(self.backend.snapshot(&ranges)?);
        }
        Ok(())
    }

    fn cur(&self) -> &Snapshot {
        self.cur.as_ref().expect("ensure_snapshot() first")
    }

    fn checkpoint(&mut self, label: &str, line: u32) -> Result<(), BackendError> {
        self.ensure_snapshot()?;
        let snap = self.cur().clone();
        let counters = snap
            .counters
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v - self.base.counters.get(k).copied().unwrap_or(0),
                )
            })
            .collect();
        let mappings = self
            .plan
            .mappings
            .iter()
            .zip(&snap.mappings)
            .map(|(p, m)| MappingState {
                name: p.name.clone(),
                smaps: m.smaps,
                pages: m.pages.iter().map(|(b, n)| (b.label(), *n)).collect(),
            })
            .collect();
        if self.result.checkpoints.len() >= MAX_CHECKPOINT_RECORDS {
            self.result.checkpoints_omitted += 1;
            self.base = snap;
            self.ops_at_checkpoint = self.ops_total;
            self.base_minflt = self.minflt;
            self.base_majflt = self.majflt;
            return Ok(());
        }
        self.result.checkpoints.push(Checkpoint {
            label: label.to_string(),
            line,
            minflt: self.minflt - self.base_minflt,
            majflt: self.majflt - self.base_majflt,
            counters,
            mappings,
            uffd_last: snap.uffd_last,
        });
        self.base = snap;
        self.ops_at_checkpoint = self.ops_total;
        self.base_minflt = self.minflt;
        self.base_majflt = self.majflt;
        Ok(())
    }

    fn condition_holds(&self, c: &Condition) -> bool {
        match c {
            Condition::Kernel { cmp, version } => cmp.holds(self.plan.version, *version),
            Condition::Switch { key, value } => {
                // Compare canonically: `on`/`true` mean 1.
                let canon = |v: &str| match v {
                    "on" | "true" => "1".to_string(),
                    "off" | "false" => "0".to_string(),
                    v => v.to_string(),
                };
                self.plan
                    .switches
                    .get(key)
                    .map(|v| canon(v) == canon(value))
                    .unwrap_or(false)
            }
        }
    }

    fn push_expect(&mut self, res: ExpectResult) {
        if self.result.expects.len() < MAX_EXPECT_RECORDS {
            self.result.expects.push(res);
            return;
        }
        let o = &mut self.result.expects_omitted;
        match res.status {
            ExpectStatus::Pass => o.pass += 1,
            ExpectStatus::Fail => o.fail += 1,
            ExpectStatus::Skipped => o.skipped += 1,
        }
    }

    /// Records an expectation as skipped, with a warning (once per line and reason).
    fn skip_expect(&mut self, mut res: ExpectResult, span: Span, why: String) {
        res.status = ExpectStatus::Skipped;
        let w = format!("line {}: {why}", span.line);
        res.actual = why;
        if !self.result.warnings.contains(&w) {
            self.result.warnings.push(w);
        }
        self.push_expect(res);
    }

    fn expect(&mut self, e: &Expect, span: Span) -> Result<(), BackendError> {
        let mut res = ExpectResult {
            line: span.line,
            col: span.col,
            text: e.text.clone(),
            status: ExpectStatus::Pass,
            actual: String::new(),
        };
        if !e.when.iter().all(|c| self.condition_holds(c)) {
            res.status = ExpectStatus::Skipped;
            self.push_expect(res);
            return Ok(());
        }
        let actual: Result<i64, Option<OpError>> = match &e.obs {
            // The last userfaultfd message (-1: none yet).
            Observable::UffdLastFlags => {
                self.ensure_snapshot()?;
                Ok(self.cur().uffd_last.map(|(f, _)| f as i64).unwrap_or(-1))
            }
            Observable::UffdLastAddr => {
                self.ensure_snapshot()?;
                Ok(self.cur().uffd_last.map(|(_, a)| a as i64).unwrap_or(-1))
            }
            Observable::Minflt => Ok((self.minflt - self.base_minflt) as i64),
            Observable::Majflt => Ok((self.majflt - self.base_majflt) as i64),
            Observable::Errno => Err(match self.last_result {
                Some(Err(err)) => Some(err),
                _ => None,
            }),
            Observable::Counter(key) => {
                self.ensure_snapshot()?;
                match (self.cur().counters.get(key), self.base.counters.get(key)) {
                    (Some(now), Some(then)) => Ok(now - then),
                    _ => {
                        let b = self.backend.name();
                        let why = format!("{key} is not available on the {b} backend");
                        self.skip_expect(res, span, why);
                        return Ok(());
                    }
                }
            }
            Observable::Object { object, field } => {
                let key = crate::backend::object_key(self.objects[object], field);
                self.ensure_snapshot()?;
                match self.cur().counters.get(&key) {
                    Some(&v) => Ok(v),
                    None => {
                        // A failed creation, a creator that exited, or a disk file's blocks.
                        let why = format!("obj({object}).{field} is not available here");
                        self.skip_expect(res, span, why);
                        return Ok(());
                    }
                }
            }
            Observable::Smaps { mapping, field, .. } => {
                let i = self.names[mapping];
                self.ensure_snapshot()?;
                Ok(self.cur().mappings[i].smaps.field(field).unwrap_or(0) as i64)
            }
            Observable::Pages { range, class } => {
                let (addr, len) = self.range(range);
                let i = self.names[&range.mapping];
                let p = &self.plan.mappings[i];
                let (from, to) = (
                    (addr - p.addr) / PAGE_SIZE,
                    (addr - p.addr + len).div_ceil(PAGE_SIZE),
                );
                self.ensure_snapshot()?;
                Ok(
                    pagemap_count(&slice_pages(&self.cur().mappings[i].pages, from, to), class)
                        as i64,
                )
            }
        };
        let pass = match (&actual, &e.value) {
            (Ok(a), ExpectValue::Addr(r)) => {
                let want = self.range(r).0 as i64;
                res.actual = self.describe_addr(*a);
                e.cmp.holds(*a, want)
            }
            (Err(_), ExpectValue::Addr(_)) => false,
            (Ok(a), ExpectValue::Int(v)) => {
                res.actual = a.to_string();
                e.cmp.holds(*a, *v)
            }
            (Err(got), ExpectValue::Ok) => {
                res.actual = got.map(|g| g.to_string()).unwrap_or_else(|| "ok".into());
                e.cmp.holds(got.is_none(), true)
            }
            (Err(got), ExpectValue::Err(want)) => {
                res.actual = got.map(|g| g.to_string()).unwrap_or_else(|| "ok".into());
                match e.cmp {
                    Cmp::Ne => *got != Some(*want),
                    _ => *got == Some(*want),
                }
            }
            (Ok(a), _) => {
                res.actual = a.to_string();
                false
            }
            (Err(got), ExpectValue::Int(v)) => {
                // `errno == 0`
                res.actual = got.map(|g| g.to_string()).unwrap_or_else(|| "ok".into());
                *v == 0 && e.cmp.holds(got.is_none(), true)
            }
        };
        res.status = if pass {
            ExpectStatus::Pass
        } else {
            ExpectStatus::Fail
        };
        self.push_expect(res);
        Ok(())
    }
}

/// Pages `[from, to)` of a run-length map.
pub fn slice_pages(map: &PageMap, from: u64, to: u64) -> PageMap {
    let mut out = PageMap::new();
    let mut pos = 0;
    for &(b, n) in map {
        let (s, e) = (pos.max(from), (pos + n).min(to));
        if s < e {
            pagemap_push(&mut out, b, e - s);
        }
        pos += n;
    }
    out
}

fn op_text(op: &BackendOp) -> String {
    match op {
        BackendOp::Mmap {
            addr,
            len,
            prot,
            file: None,
            ..
        } => format!("mmap {addr:#x} {len:#x} {prot}"),
        BackendOp::Mmap {
            addr,
            len,
            prot,
            file: Some((obj, off)),
            ..
        } => format!("mmap {addr:#x} {len:#x} {prot} obj{obj}+{off:#x}"),
        BackendOp::MemfdCreate { obj, size } => format!("memfd obj{obj} {size:#x}"),
        BackendOp::GmemCreate { obj, size, flags } => {
            format!("gmem obj{obj} {size:#x} flags={flags:#x}")
        }
        BackendOp::MmapHugetlb {
            addr,
            len,
            prot,
            file,
            hsize,
            ..
        } => match file {
            None => format!("mmap {addr:#x} {len:#x} {prot} hugetlb={}", hsize.name()),
            Some((obj, off)) => format!("mmap {addr:#x} {len:#x} {prot} obj{obj}+{off:#x}"),
        },
        BackendOp::MemfdHugetlb { obj, size, hsize } => {
            format!("memfd obj{obj} {size:#x} hugetlb={}", hsize.name())
        }
        BackendOp::TmpfsMount { mnt, huge, size } => format!(
            "tmpfs mnt{mnt} huge={}{}",
            huge.name(),
            size.map(|s| format!(" size={s:#x}")).unwrap_or_default()
        ),
        BackendOp::FileCreate { obj, mnt, size } => format!("file obj{obj} {size:#x} on=mnt{mnt}"),
        BackendOp::MmapDevZero {
            addr, len, prot, ..
        } => format!("mmap {addr:#x} {len:#x} {prot} /dev/zero"),
        BackendOp::Ftruncate { obj, size } => format!("ftruncate obj{obj} {size:#x}"),
        BackendOp::DiskFileCreate { obj, size } => format!("file obj{obj} {size:#x} on=disk"),
        BackendOp::Msync { addr, len, flags } => format!("msync {addr:#x} {len:#x} {flags:#x}"),
        BackendOp::Fsync { obj } => format!("fsync obj{obj}"),
        BackendOp::Fallocate {
            obj,
            offset,
            len,
            keep_size,
            punch_hole,
        } => format!(
            "fallocate obj{obj} {offset:#x} {len:#x}{}{}",
            if *punch_hole { " punch_hole" } else { "" },
            if *keep_size { " keep_size" } else { "" }
        ),
        BackendOp::Munmap { addr, len } => format!("munmap {addr:#x} {len:#x}"),
        BackendOp::Mprotect { addr, len, prot } => format!("mprotect {addr:#x} {len:#x} {prot}"),
        BackendOp::Madvise { addr, len, advice } => {
            format!("madvise {addr:#x} {len:#x} {}", advice.name())
        }
        BackendOp::Access {
            addr,
            len,
            stride,
            pattern,
            ..
        } => format!("{pattern:?} {addr:#x} {len:#x} stride={stride:#x}"),
        BackendOp::Sysfs { knob, value } => format!("sysfs {knob}={value}"),
        BackendOp::Fork { parent, child } => format!("fork {parent} -> {child}"),
        BackendOp::Switch { proc } => format!("as {proc}"),
        BackendOp::Exit { proc } => format!("exit {proc}"),
        BackendOp::KhugepagedScan { passes } => format!("khugepaged scan {passes}"),
        BackendOp::Sleep { ms } => format!("sleep {ms}ms"),
        BackendOp::Shrink => "shrink".into(),
        BackendOp::Kalloc {
            size,
            order,
            reclaimable,
            scatter,
        } => format!("kalloc {size:#x} order={order} reclaimable={reclaimable} scatter={scatter}"),
        BackendOp::Compact => "compact".into(),
        BackendOp::Uffd(u) => format!("uffd {u:?}"),
        BackendOp::Mremap {
            old,
            len,
            new_len,
            new,
        } => {
            let size = if new_len == len {
                String::new()
            } else {
                format!(" size {new_len:#x}")
            };
            let to = new.map(|n| format!(" -> {n:#x}")).unwrap_or_default();
            format!("mremap {old:#x} {len:#x}{size}{to}")
        }
        BackendOp::Mlock { addr, len, lock } => format!(
            "{} {addr:#x} {len:#x}",
            if *lock { "mlock" } else { "munlock" }
        ),
        BackendOp::PrctlSetThpDisable { disable, flags } => {
            format!("prctl PR_SET_THP_DISABLE {} {flags:#x}", *disable as u8)
        }
    }
}
