//! `run --trace FILE`: a timeline of a run in the Chrome trace-event JSON format, which
//! ui.perfetto.dev and chrome://tracing open. A backend wrapper records every op the engine
//! runs with the counter deltas it caused, so the trace needs no hook in the model:
//!
//! - one track (thread) per scenario process with a slice per op (its text, result, faults
//!   and non-zero counter deltas), and instant events for what the op did by kind — PMD THP
//!   and mTHP fault allocations, fallbacks, huge-zero allocations, PMD and folio splits,
//!   collapses;
//! - one track per daemon: khugepaged (a slice per `sleep`/`khugepaged scan` in which it
//!   ran, with its collapses), the shrinkers (deferred and underused splits) and the
//!   userfaultfd monitor (an instant per new message);
//! - counter tracks: faults, THP events, splits, collapses and memory, cumulative.
//!
//! Time is the simulated clock: `sleep` advances it by its length; every other op takes one
//! tick of 1 µs so ops at the same simulated instant stay in order. Long runs are sampled:
//! once the event budget is spent, only every 2nd op is recorded, then every 4th, …, each
//! recorded op carrying the deltas of the ops it stands for.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use thpsim_scenario::backend::{Backend, BackendError, BackendOp, OpOutcome, Setup, Snapshot};
use thpsim_scenario::engine::Plan;

/// Trace process ids: the scenario's processes, the kernel's daemons, the counters.
const PID_PROCS: u32 = 1;
const PID_DAEMONS: u32 = 2;
const PID_COUNTERS: u32 = 3;
/// Daemon track ids.
const TID_KHUGEPAGED: u32 = 1;
const TID_SHRINKER: u32 = 2;
const TID_UFFD: u32 = 3;

/// Events recorded before sampling starts (`--trace-limit`).
pub const DEFAULT_LIMIT: usize = 200_000;

/// Instant events of an op, by kind: (counter key, event name).
const KINDS: &[(&str, &str)] = &[
    ("vmstat.thp_fault_alloc", "PMD THP fault alloc"),
    ("vmstat.thp_fault_fallback", "THP fault fallback"),
    (
        "vmstat.thp_fault_fallback_charge",
        "THP fault fallback (charge)",
    ),
    ("vmstat.thp_zero_page_alloc", "huge zero page alloc"),
    ("vmstat.thp_split_pmd", "PMD split"),
    ("vmstat.thp_split_page", "folio split"),
    ("vmstat.thp_deferred_split_page", "deferred split queued"),
    ("vmstat.thp_collapse_alloc", "collapse alloc"),
    ("vmstat.thp_collapse_alloc_failed", "collapse alloc failed"),
    ("vmstat.pgreuse", "COW reuse"),
];

/// Counter tracks: (track name, counter keys).
const TRACKS: &[(&str, &[&str])] = &[
    ("faults", &["vmstat.pgfault", "vmstat.pgmajfault"]),
    (
        "THP faults",
        &[
            "vmstat.thp_fault_alloc",
            "vmstat.thp_fault_fallback",
            "vmstat.thp_zero_page_alloc",
        ],
    ),
    (
        "splits",
        &[
            "vmstat.thp_split_pmd",
            "vmstat.thp_split_page",
            "vmstat.thp_deferred_split_page",
            "vmstat.thp_underused_split_page",
        ],
    ),
    (
        "collapses",
        &[
            "vmstat.thp_collapse_alloc",
            "khugepaged.pages_collapsed",
            "khugepaged.full_scans",
        ],
    ),
    (
        "memory (pages)",
        &[
            "vmstat.nr_anon_pages",
            "vmstat.nr_anon_transparent_hugepages",
            "vmstat.nr_page_table_pages",
        ],
    ),
];

/// Counters of the daemons: what khugepaged and the shrinkers did in a `sleep`.
fn daemon_of(key: &str) -> Option<u32> {
    if key.starts_with("khugepaged.") || key.contains("collapse") {
        Some(TID_KHUGEPAGED)
    } else if key.contains("underused") || key.contains("split_deferred") {
        Some(TID_SHRINKER)
    } else {
        None
    }
}

/// A backend that records a trace of the ops it forwards.
pub struct Tracer<B: Backend> {
    pub inner: B,
    events: Vec<Value>,
    limit: usize,
    /// Simulated time in µs (trace time).
    now: u64,
    current: u32,
    tids: Vec<u32>,
    /// Counter values at the start of the run and at the last recorded op.
    base_counters: BTreeMap<String, i64>,
    last: BTreeMap<String, i64>,
    /// Event count at which the sampling stride doubles next, and the next increment.
    threshold: usize,
    step: usize,
    /// Ops not recorded at all (past twice the limit).
    dropped: u64,
    uffd_last: Option<(u32, u64)>,
    ops: u64,
    stride: u64,
    /// Ops since the last recorded one (folded into the next recorded op).
    pending: u64,
    /// Tick at which the pending ops began.
    pending_since: u64,
    sampled_ops: u64,
}

impl<B: Backend> Tracer<B> {
    pub fn new(inner: B, limit: usize, title: &str) -> Self {
        let meta = |pid: u32, name: &str| json!({"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": name}});
        let thread = |pid: u32, tid: u32, name: &str| json!({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": name}});
        let events = vec![
            meta(PID_PROCS, &format!("scenario processes — {title}")),
            meta(PID_DAEMONS, "kernel daemons"),
            meta(PID_COUNTERS, "counters"),
            thread(PID_DAEMONS, TID_KHUGEPAGED, "khugepaged"),
            thread(
                PID_DAEMONS,
                TID_SHRINKER,
                "shrinkers (deferred split, underused)",
            ),
            thread(PID_DAEMONS, TID_UFFD, "userfaultfd monitor"),
        ];
        Tracer {
            inner,
            events,
            limit: limit.max(100),
            threshold: limit.max(100),
            step: limit.max(100) / 2,
            dropped: 0,
            base_counters: BTreeMap::new(),
            now: 0,
            current: 0,
            tids: vec![],
            last: BTreeMap::new(),
            uffd_last: None,
            ops: 0,
            stride: 1,
            pending: 0,
            pending_since: 0,
            sampled_ops: 0,
        }
    }

    fn tid(&mut self, proc: u32) -> u32 {
        let tid = proc + 1;
        if !self.tids.contains(&tid) {
            self.tids.push(tid);
            let name = if proc == 0 {
                "process 0 (main)".to_string()
            } else {
                format!("process {proc} (forked)")
            };
            self.events.push(json!({"ph": "M", "name": "thread_name", "pid": PID_PROCS, "tid": tid, "args": {"name": name}}));
        }
        tid
    }

    /// The trace as Chrome trace-event JSON.
    pub fn finish_json(mut self) -> (String, B) {
        let other = json!({
            "generator": concat!("thpsim ", env!("CARGO_PKG_VERSION")),
            "clock": "simulated: sleep advances it, every other op takes 1 µs",
            "ops": self.ops,
            "sampling_stride": self.stride,
            "ops_folded_into_samples": self.sampled_ops,
            "ops_dropped_past_limit": self.dropped,
            "event_limit": self.limit,
        });
        let events = std::mem::take(&mut self.events);
        let v = json!({"traceEvents": events, "displayTimeUnit": "ms", "otherData": other});
        (serde_json::to_string(&v).expect("json"), self.inner)
    }

    fn counters(&mut self) -> Result<Snapshot, BackendError> {
        self.inner.snapshot(&[])
    }

    fn record(&mut self, op: &BackendOp, out: &OpOutcome, start: u64, dur: u64, snap: Snapshot) {
        let deltas: BTreeMap<&str, i64> = snap
            .counters
            .iter()
            .map(|(k, v)| (k.as_str(), v - self.last.get(k).copied().unwrap_or(0)))
            .filter(|(_, d)| *d != 0)
            .collect();
        let daemon_time = matches!(
            op,
            BackendOp::Sleep { .. }
                | BackendOp::KhugepagedScan { .. }
                | BackendOp::Shrink
                | BackendOp::Compact
        );
        let tid = self.tid(self.current);
        let text = op_name(op);
        let mut args = json!({
            "op": format!("{op:?}"),
            "result": match out.result { Ok(v) => format!("ok {v:#x}"), Err(e) => e.to_string() },
            "minflt": out.minflt,
            "majflt": out.majflt,
        });
        if self.pending > 1 {
            args["sampled_ops"] = json!(self.pending);
        }
        let own: BTreeMap<&str, i64> = deltas
            .iter()
            .filter(|(k, _)| !daemon_time || daemon_of(k).is_none())
            .map(|(k, v)| (*k, *v))
            .collect();
        args["counters"] = json!(own);
        self.events.push(json!({"ph": "X", "cat": "op", "name": text, "pid": PID_PROCS, "tid": tid, "ts": start, "dur": dur, "args": args}));
        for (key, name) in KINDS {
            if let Some(n) = own.get(key) {
                self.events.push(json!({"ph": "i", "s": "t", "cat": "event", "name": name, "pid": PID_PROCS, "tid": tid, "ts": start, "args": {"count": n}}));
            }
        }
        // What the daemons did while time passed.
        if daemon_time {
            for daemon in [TID_KHUGEPAGED, TID_SHRINKER] {
                let mine: BTreeMap<&str, i64> = deltas
                    .iter()
                    .filter(|(k, _)| daemon_of(k) == Some(daemon))
                    .map(|(k, v)| (*k, *v))
                    .collect();
                let ran = !mine.is_empty()
                    || matches!(op, BackendOp::KhugepagedScan { .. }) && daemon == TID_KHUGEPAGED;
                if ran {
                    let name = if daemon == TID_KHUGEPAGED {
                        "khugepaged"
                    } else {
                        "shrink"
                    };
                    self.events.push(json!({"ph": "X", "cat": "daemon", "name": name, "pid": PID_DAEMONS, "tid": daemon, "ts": start, "dur": dur, "args": mine}));
                }
            }
        }
        if snap.uffd_last != self.uffd_last {
            if let Some((flags, addr)) = snap.uffd_last {
                self.events.push(json!({"ph": "i", "s": "t", "cat": "uffd", "name": "uffd message", "pid": PID_DAEMONS, "tid": TID_UFFD, "ts": start, "args": {"flags": flags, "address": format!("{addr:#x}")}}));
            }
            self.uffd_last = snap.uffd_last;
        }
        let end = start + dur;
        for (name, keys) in TRACKS {
            if keys.iter().any(|k| deltas.contains_key(k)) || self.ops == 1 {
                let vals: BTreeMap<&str, i64> = keys
                    .iter()
                    .map(|k| {
                        (
                            k.rsplit('.').next().unwrap_or(k),
                            snap.counters.get(*k).copied().unwrap_or(0) - self.base(k),
                        )
                    })
                    .collect();
                self.events.push(json!({"ph": "C", "name": name, "pid": PID_COUNTERS, "tid": 0, "ts": end, "args": vals}));
            }
        }
        self.last = snap.counters;
    }

    /// Counter values at the start of the run (the tracks show what the run did).
    fn base(&self, key: &str) -> i64 {
        self.base_counters.get(key).copied().unwrap_or(0)
    }
}

fn op_name(op: &BackendOp) -> String {
    let s = format!("{op:?}");
    let head: String = s.chars().take_while(|c| c.is_alphanumeric()).collect();
    match op {
        BackendOp::Access { pattern, .. } => format!("{pattern:?}").to_lowercase(),
        BackendOp::Madvise { advice, .. } => format!("madvise {}", advice.name()),
        BackendOp::Uffd(u) => {
            let u = format!("{u:?}");
            format!(
                "uffd {}",
                u.chars()
                    .take_while(|c| c.is_alphanumeric())
                    .collect::<String>()
                    .to_lowercase()
            )
        }
        _ => head.to_lowercase(),
    }
}

impl<B: Backend> Backend for Tracer<B> {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn check_plan(&mut self, plan: &Plan) -> Result<(), BackendError> {
        self.inner.check_plan(plan)
    }
    fn setup(&mut self, setup: &Setup) -> Result<(), BackendError> {
        self.inner.setup(setup)?;
        let snap = self.counters()?;
        self.base_counters = snap.counters.clone();
        self.last = snap.counters;
        self.uffd_last = snap.uffd_last;
        Ok(())
    }
    fn exec(&mut self, op: &BackendOp) -> Result<OpOutcome, BackendError> {
        let start = self.now;
        let dur = match op {
            BackendOp::Sleep { ms } => ms.saturating_mul(1000).max(1),
            _ => 1,
        };
        let out = self.inner.exec(op)?;
        self.now += dur;
        self.ops += 1;
        if self.pending == 0 {
            self.pending_since = start;
        }
        self.pending += 1;
        if self.events.len() >= self.threshold {
            self.stride *= 2;
            self.step = (self.step / 2).max(1);
            self.threshold += self.step;
        }
        // Sleeps (daemon time), forks and exits are recorded while the budget lasts; other
        // ops are sampled; past twice the budget nothing more is recorded.
        let always = matches!(
            op,
            BackendOp::Sleep { .. }
                | BackendOp::KhugepagedScan { .. }
                | BackendOp::Fork { .. }
                | BackendOp::Exit { .. }
        );
        if self.events.len() >= 2 * self.limit {
            self.dropped += 1;
        } else if always || self.ops % self.stride == 0 {
            if self.pending > 1 {
                self.sampled_ops += self.pending - 1;
            }
            let snap = self.counters()?;
            let since = if self.pending > 1 {
                self.pending_since
            } else {
                start
            };
            self.record(op, &out, since, self.now - since, snap);
            self.pending = 0;
        }
        match op {
            BackendOp::Switch { proc } => self.current = *proc,
            BackendOp::Exit { proc } if *proc == self.current => self.current = 0,
            _ => {}
        }
        Ok(out)
    }
    fn snapshot(&mut self, ranges: &[(u64, u64)]) -> Result<Snapshot, BackendError> {
        self.inner.snapshot(ranges)
    }
    fn finish(&mut self) -> Result<(), BackendError> {
        self.inner.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use thpsim_scenario::engine::{self, Variant};
    use thpsim_scenario::sim::SimBackend;

    fn trace_of(src: &str, limit: usize) -> Value {
        let scn = thpsim_scenario::parse("t.thps", src).expect("parses");
        let mut t = Tracer::new(SimBackend::new(), limit, "t.thps");
        engine::run(&scn, &mut t, &Variant::default()).expect("runs");
        serde_json::from_str(&t.finish_json().0).expect("the trace is JSON")
    }

    /// The structure ui.perfetto.dev's JSON importer needs: every event has a phase, pid, tid;
    /// slices have ts and dur, counters numeric args; every track used is named; time never
    /// goes backwards on a track.
    fn check_structure(v: &Value) -> Vec<Value> {
        let ev = v["traceEvents"].as_array().expect("traceEvents").clone();
        let mut named = std::collections::BTreeSet::new();
        let mut last_ts: BTreeMap<(u64, u64), f64> = BTreeMap::new();
        for e in &ev {
            let ph = e["ph"].as_str().expect("ph");
            let (pid, tid) = (
                e["pid"].as_u64().expect("pid"),
                e["tid"].as_u64().expect("tid"),
            );
            match ph {
                "M" => {
                    assert!(e["args"]["name"].is_string(), "{e}");
                    if e["name"] == "thread_name" {
                        named.insert((pid, tid));
                    }
                }
                "X" | "i" | "C" => {
                    let ts = e["ts"].as_f64().expect("ts");
                    let l = last_ts.entry((pid, tid)).or_insert(0.0);
                    assert!(ts >= *l, "time goes backwards on {pid}/{tid}: {e}");
                    *l = ts;
                    if ph == "X" {
                        assert!(e["dur"].as_f64().expect("dur") > 0.0, "{e}");
                        assert!(named.contains(&(pid, tid)), "unnamed track: {e}");
                    }
                    if ph == "C" {
                        let args = e["args"].as_object().expect("counter args");
                        assert!(!args.is_empty() && args.values().all(|x| x.is_i64()), "{e}");
                    }
                }
                other => panic!("unexpected phase {other}: {e}"),
            }
        }
        ev
    }

    fn named<'a>(ev: &'a [Value], ph: &str, name: &str) -> Vec<&'a Value> {
        ev.iter()
            .filter(|e| e["ph"] == ph && e["name"] == name)
            .collect()
    }

    #[test]
    fn a_trace_has_process_and_daemon_tracks_events_by_kind_and_counters() {
        let v = trace_of(
            "memory 1G\nsysfs enabled=madvise\nmmap a 4M anon private rw align=2M\nmadvise a HUGEPAGE\nread a\nwrite a+0 4K\nfork child\nas child\nwrite a+0 4K\nas main\nmadvise a NOHUGEPAGE\nmadvise a HUGEPAGE\nmmap b 2M anon private rw align=2M\nwrite b+0 4K\nmadvise b HUGEPAGE\nsleep 20s\n",
            DEFAULT_LIMIT,
        );
        let ev = check_structure(&v);
        // Two scenario processes, each its own track.
        let tracks: std::collections::BTreeSet<u64> = ev
            .iter()
            .filter(|e| e["ph"] == "X" && e["pid"] == PID_PROCS)
            .map(|e| e["tid"].as_u64().unwrap())
            .collect();
        assert_eq!(tracks.len(), 2, "{tracks:?}");
        // The read maps the huge zero page; the write on it allocates a PMD THP (6.18).
        assert_eq!(named(&ev, "i", "huge zero page alloc").len(), 1);
        let alloc = named(&ev, "i", "PMD THP fault alloc");
        assert_eq!(
            alloc
                .iter()
                .map(|e| e["args"]["count"].as_i64().unwrap())
                .sum::<i64>(),
            1
        );
        // The child's write on the shared THP splits its PMD.
        assert!(!named(&ev, "i", "PMD split").is_empty());
        // khugepaged ran in the sleep and collapsed `b` (one 4 KiB page in a 2 MiB range).
        let k = named(&ev, "X", "khugepaged");
        assert_eq!(k.len(), 1);
        assert_eq!(k[0]["tid"], TID_KHUGEPAGED);
        assert!(
            k[0]["args"]["khugepaged.pages_collapsed"].as_i64().unwrap() >= 1,
            "{}",
            k[0]
        );
        assert_eq!(k[0]["dur"].as_u64().unwrap(), 20_000_000);
        let c = named(&ev, "C", "collapses");
        assert!(
            c.last().unwrap()["args"]["pages_collapsed"]
                .as_i64()
                .unwrap()
                >= 1
        );
    }

    #[test]
    fn long_runs_are_sampled_within_the_budget() {
        let v = trace_of(
            "memory 1G\nmmap a 64M anon private rw\nrepeat 20000\n  write a+0 4K\n  madvise a+0 4K DONTNEED\nend\n",
            1000,
        );
        let ev = check_structure(&v);
        assert!(ev.len() <= 2 * 1000 + 50, "{} events", ev.len());
        let o = &v["otherData"];
        assert_eq!(o["ops"], 40_001);
        assert!(o["sampling_stride"].as_u64().unwrap() >= 16, "{o}");
        // The sampled slices still add up to every fault.
        let faults: u64 = ev
            .iter()
            .filter(|e| e["ph"] == "X" && e["name"] == "write")
            .map(|e| {
                e["args"]["counters"]["vmstat.pgfault"]
                    .as_u64()
                    .unwrap_or(0)
            })
            .sum();
        let last = named(&ev, "C", "faults").last().unwrap()["args"]["pgfault"]
            .as_u64()
            .unwrap();
        assert!(faults <= 20_000 && last <= 20_000 && last > 0);
    }
}
