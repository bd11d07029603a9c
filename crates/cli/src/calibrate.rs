//! `thpsim calibrate`: measures what each event kind costs the host kernel (Linux 6.18 fault,
//! COW, split, collapse, populate and unmap paths) and writes a cost profile
//! (`cost::CostProfile`, docs/cost-model.md); `--validate` compares the model's estimate with
//! the host's time for a few workloads.
//!
//! Each figure is one op of the host worker over many units (a 64 MiB or 256 MiB range): the
//! worker's time on a CPU during the request (`/proc/PID/schedstat`, ns, so time spent
//! waiting for a CPU on a busy host does not count), minus the same op once the work is done
//! (the pages already mapped): what is left is the kernel's work, without the worker's
//! request handling and its user-space loop. The median of the repeats is the cost; min and
//! max show the spread (host fault cost drifts on a VM).

use std::process::ExitCode;
use std::time::Instant;

use thpsim_host::{HostBackend, HostOptions};
use thpsim_kernel::types::{Advice, Prot};
use thpsim_kernel::userfaultfd::{MissingPolicy, WpPolicy};
use thpsim_scenario::ast::Pattern;
use thpsim_scenario::backend::{Backend, BackendOp, Setup, UffdReq};

use crate::cost::{CostProfile, EventCost};

const K4: u64 = 4096;
const M: u64 = 1 << 20;
const M2: u64 = 2 * M;
/// Each measurement uses its own 512 MiB slot of the arena (no reuse of an address range
/// within a repeat).
const SLOT: u64 = 512 * M;

struct Host {
    b: HostBackend,
    slot: u64,
    procs: u32,
    /// The engine process whose worker runs the requests.
    cur: u32,
}

/// A task's time on a CPU so far (`/proc/PID/schedstat`, first field, ns).
fn cpu_ns(pid: i32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Runs an op on the host: its outcome, the CPU time the worker of process `proc` spent on
/// it (wall time where schedstat is missing), and its wall time.
fn timed(
    b: &mut HostBackend,
    proc: u32,
    op: &BackendOp,
) -> Result<(thpsim_scenario::backend::OpOutcome, f64, f64), String> {
    let pid = b.process_pid(proc);
    let c0 = pid.and_then(cpu_ns);
    let t = Instant::now();
    let r = b.exec(op).map_err(|e| e.message())?;
    let wall = t.elapsed().as_secs_f64() * 1e9;
    #[allow(clippy::cast_precision_loss)]
    let ns = match (c0, pid.and_then(cpu_ns)) {
        (Some(a), Some(b)) => b.saturating_sub(a) as f64,
        _ => wall,
    };
    Ok((r, ns, wall))
}

fn setup_knobs() -> Vec<(String, String)> {
    [
        ("enabled", "madvise"),
        ("defrag", "madvise"),
        ("use_zero_page", "1"),
        ("hugepages-2048kB.enabled", "inherit"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect()
}

impl Host {
    fn new() -> Result<Host, String> {
        thpsim_host::preflight()?;
        let mut b = HostBackend::new(HostOptions {
            allow_sysfs: true,
            ..Default::default()
        });
        b.setup(&Setup {
            profile: thpsim_host::host_kernel_profile(),
            switches: vec![],
            memory: 16 << 30,
            swap: 0,
            swap_device: thpsim_kernel::SwapDevice::Zram,
            memcg: None,
            sysfs: setup_knobs(),
            arena_len: 64 << 30,
        })
        .map_err(|e| e.message())?;
        Ok(Host {
            b,
            slot: 0,
            procs: 1,
            cur: 0,
        })
    }

    fn next_slot(&mut self) -> u64 {
        let a = self.slot;
        self.slot = (self.slot + SLOT) % (60 << 30);
        a
    }

    /// Runs an op and returns the worker's CPU time for it in ns; an error result fails the
    /// calibration.
    fn t(&mut self, op: BackendOp) -> Result<f64, String> {
        Ok(self.t_both(op)?.0)
    }

    /// The worker's CPU time and the wall time of an op, in ns.
    fn t_both(&mut self, op: BackendOp) -> Result<(f64, f64), String> {
        let (r, ns, wall) = timed(&mut self.b, self.cur, &op)?;
        if let BackendOp::Switch { proc } = op {
            self.cur = proc;
        }
        r.result.map_err(|e| format!("{op:?}: {e}"))?;
        Ok((ns, wall))
    }

    /// The summed CPU time of `op(addr)` at every `step` of `[a, a + len)`.
    fn at_each(
        &mut self,
        a: u64,
        len: u64,
        step: u64,
        op: impl Fn(u64) -> BackendOp,
    ) -> Result<f64, String> {
        let mut t = 0.0;
        let mut s = a;
        while s < a + len {
            t += self.t(op(s))?;
            s += step;
        }
        Ok(t)
    }

    /// Runs `f` in a new child of process 0 (forked, made current, exited after).
    fn in_child<T>(&mut self, f: impl FnOnce(&mut Host) -> Result<T, String>) -> Result<T, String> {
        let child = self.procs;
        self.procs += 1;
        self.t(BackendOp::Fork { parent: 0, child })?;
        self.t(BackendOp::Switch { proc: child })?;
        let r = f(self);
        self.t(BackendOp::Switch { proc: 0 })?;
        self.t(BackendOp::Exit { proc: child })?;
        r
    }

    fn uffd(&mut self, req: UffdReq) -> Result<(), String> {
        self.t(BackendOp::Uffd(req)).map(drop)
    }

    fn mmap(&mut self, addr: u64, len: u64) -> Result<(), String> {
        self.t(BackendOp::Mmap {
            addr,
            len,
            prot: Prot::RW,
            shared: false,
            populate: false,
            fixed: false,
            file: None,
        })
        .map(drop)
    }

    fn touch(&mut self, addr: u64, len: u64, stride: u64, p: Pattern) -> Result<f64, String> {
        self.t(BackendOp::Access {
            addr,
            len,
            stride,
            pattern: p,
            subset: None,
        })
    }

    /// A touch's wall time.
    fn touch_wall(&mut self, addr: u64, len: u64, stride: u64, p: Pattern) -> Result<f64, String> {
        Ok(self
            .t_both(BackendOp::Access {
                addr,
                len,
                stride,
                pattern: p,
                subset: None,
            })?
            .1)
    }

    fn madvise(&mut self, addr: u64, len: u64, advice: Advice) -> Result<f64, String> {
        self.t(BackendOp::Madvise { addr, len, advice })
    }

    fn munmap(&mut self, addr: u64, len: u64) -> Result<f64, String> {
        self.t(BackendOp::Munmap { addr, len })
    }

    fn sysfs(&mut self, knob: &str, value: &str) -> Result<(), String> {
        self.t(BackendOp::Sysfs {
            knob: knob.into(),
            value: value.into(),
        })
        .map(drop)
    }
}

/// Per-unit cost of a fault-in: first touch minus second touch, over `len` with `stride`.
fn fault_in(
    h: &mut Host,
    len: u64,
    stride: u64,
    p: Pattern,
    hg: bool,
) -> Result<(f64, u64), String> {
    let a = h.next_slot();
    h.mmap(a, len)?;
    if hg {
        h.madvise(a, len, Advice::Hugepage)?;
    }
    let t1 = h.touch(a, len, stride, p)?;
    let t2 = h.touch(a, len, stride, p)?;
    h.munmap(a, len)?;
    Ok(((t1 - t2) / (len / stride) as f64, a))
}

type Measure = fn(&mut Host) -> Result<f64, String>;

fn fault_zero_page_read(h: &mut Host) -> Result<f64, String> {
    Ok(fault_in(h, 64 * M, K4, Pattern::Read, false)?.0)
}
fn fault_4k(h: &mut Host) -> Result<f64, String> {
    Ok(fault_in(h, 64 * M, K4, Pattern::Write, false)?.0)
}
fn fault_pmd_thp(h: &mut Host) -> Result<f64, String> {
    Ok(fault_in(h, 256 * M, M2, Pattern::Write, true)?.0)
}
fn huge_zero_map(h: &mut Host) -> Result<f64, String> {
    Ok(fault_in(h, 256 * M, M2, Pattern::Read, true)?.0)
}

/// munmap of populated memory minus munmap of the same range empty.
fn munmap_of(h: &mut Host, len: u64, stride: u64, hg: bool) -> Result<f64, String> {
    let a = h.next_slot();
    h.mmap(a, len)?;
    if hg {
        h.madvise(a, len, Advice::Hugepage)?;
    }
    h.touch(a, len, stride, Pattern::Write)?;
    let t1 = h.munmap(a, len)?;
    h.mmap(a, len)?;
    let t2 = h.munmap(a, len)?;
    Ok((t1 - t2) / (len / stride) as f64)
}
fn munmap_4k(h: &mut Host) -> Result<f64, String> {
    munmap_of(h, 64 * M, K4, false)
}
fn munmap_thp(h: &mut Host) -> Result<f64, String> {
    munmap_of(h, 256 * M, M2, true)
}

fn populate_4k(h: &mut Host) -> Result<f64, String> {
    let (a, len) = (h.next_slot(), 64 * M);
    h.mmap(a, len)?;
    let t1 = h.madvise(a, len, Advice::PopulateWrite)?;
    let t2 = h.madvise(a, len, Advice::PopulateWrite)?;
    h.munmap(a, len)?;
    Ok((t1 - t2) / (len / K4) as f64)
}

/// COW of order-0 pages: a child writes what its parent wrote before the fork.
fn cow_4k(h: &mut Host) -> Result<f64, String> {
    let (a, len) = (h.next_slot(), 64 * M);
    h.mmap(a, len)?;
    h.touch(a, len, K4, Pattern::Write)?;
    let (t1, t2) = h.in_child(|h| {
        Ok((
            h.touch(a, len, K4, Pattern::Write)?,
            h.touch(a, len, K4, Pattern::Write)?,
        ))
    })?;
    h.munmap(a, len)?;
    Ok((t1 - t2) / (len / K4) as f64)
}

/// Per unit: `run` over the work (`true`) minus `run` over the same ops with nothing to do
/// (`false`), so what is left is the kernel's work on the units.
fn populated_minus_empty(
    h: &mut Host,
    units: u64,
    run: impl Fn(&mut Host, bool) -> Result<f64, String>,
) -> Result<f64, String> {
    let t1 = run(h, true)?;
    let t2 = run(h, false)?;
    Ok((t1 - t2) / units as f64)
}

/// PMD splits: a 4 KiB mprotect at the start of each THP, minus the same ops on an empty
/// range (their VMA split and merge).
fn pmd_split(h: &mut Host) -> Result<f64, String> {
    let (a, len) = (h.next_slot(), 64 * M);
    let run = |h: &mut Host, populate: bool| -> Result<f64, String> {
        h.mmap(a, len)?;
        h.madvise(a, len, Advice::Hugepage)?;
        if populate {
            h.touch(a, len, M2, Pattern::Write)?;
        }
        let t = h.at_each(a, len, M2, |addr| BackendOp::Mprotect {
            addr,
            len: K4,
            prot: Prot::R,
        })?;
        h.munmap(a, len)?;
        Ok(t)
    };
    populated_minus_empty(h, len / M2, run)
}

/// MADV_COLLAPSE of 2 MiB ranges of order-0 pages (each copied), minus the same call once
/// they are THPs.
fn collapse_2m(h: &mut Host) -> Result<f64, String> {
    let (a, len) = (h.next_slot(), 64 * M);
    h.mmap(a, len)?;
    h.madvise(a, len, Advice::Nohugepage)?;
    h.touch(a, len, K4, Pattern::Write)?;
    h.madvise(a, len, Advice::Hugepage)?;
    let t1 = h.madvise(a, len, Advice::Collapse)?;
    let t2 = h.madvise(a, len, Advice::Collapse)?;
    h.munmap(a, len)?;
    Ok((t1 - t2) / (len / M2) as f64)
}

fn fault_mthp(h: &mut Host, kb: u64) -> Result<f64, String> {
    let knob = format!("hugepages-{kb}kB.enabled");
    h.sysfs(&knob, "always")?;
    let r = fault_in(h, 64 * M, kb * 1024, Pattern::Write, false);
    h.sysfs(&knob, "never")?;
    Ok(r?.0)
}

/// COW of PMD-mapped THPs: a forked child writes one byte of each THP its parent wrote
/// (`do_huge_pmd_wp_page` finds the folio shared, splits the PMD and falls back to a 4 KiB
/// `wp_page_copy`), minus a second write (already private). The model's estimate for it is
/// `fault + pmd_split + cow_4k`; `--validate`'s `fork-cow-thp` workload checks that.
fn cow_pmd_thp(h: &mut Host) -> Result<f64, String> {
    let (a, len) = (h.next_slot(), 64 * M);
    h.mmap(a, len)?;
    h.madvise(a, len, Advice::Hugepage)?;
    h.touch(a, len, M2, Pattern::Write)?;
    let (t1, t2) = h.in_child(|h| {
        Ok((
            h.touch(a, len, M2, Pattern::Write)?,
            h.touch(a, len, M2, Pattern::Write)?,
        ))
    })?;
    h.munmap(a, len)?;
    Ok((t1 - t2) / (len / M2) as f64)
}

/// Folio splits: MADV_COLD of the first 4 KiB of each large folio of 64 MiB
/// (`madvise_cold_or_pageout_pte_range` splits a folio it covers only in part, `split_folio`;
/// for a PMD-mapped THP that includes the PMD split), minus the same calls on order-0 pages.
/// `kb` is the folio size: 2048 for PMD THPs, else an mTHP size with only that size enabled.
fn folio_split(h: &mut Host, kb: u64) -> Result<f64, String> {
    let (a, len, size) = (h.next_slot(), 64 * M, kb * 1024);
    let knob = format!("hugepages-{kb}kB.enabled");
    let run = |h: &mut Host, large: bool| -> Result<f64, String> {
        h.mmap(a, len)?;
        if kb == 2048 {
            h.madvise(
                a,
                len,
                if large {
                    Advice::Hugepage
                } else {
                    Advice::Nohugepage
                },
            )?;
        } else if large {
            h.sysfs(&knob, "always")?;
        }
        let touched = h.touch(a, len, K4, Pattern::Write);
        if kb != 2048 && large {
            h.sysfs(&knob, "never")?;
        }
        touched?;
        let t = h.at_each(a, len, size, |addr| BackendOp::Madvise {
            addr,
            len: K4,
            advice: Advice::Cold,
        })?;
        h.munmap(a, len)?;
        Ok(t)
    };
    populated_minus_empty(h, len / size, run)
}
fn folio_split_pmd(h: &mut Host) -> Result<f64, String> {
    folio_split(h, 2048)
}
fn folio_split_64k(h: &mut Host) -> Result<f64, String> {
    folio_split(h, 64)
}

/// The userfaultfd round trip of a missing fault, in wall time per message: the worker's
/// write faults on 16 MiB registered MISSING while the monitor (the thpsim process,
/// `thpsim_host::uffd`) reads each message and resolves it with a 4 KiB UFFDIO_COPY and a
/// wake (QEMU postcopy), minus a second pass of the writes (no fault). Wall time, not CPU
/// time: the round trip spans two processes and the sleep in `handle_userfault`. It
/// includes the fault and the copied page's allocation.
fn uffd_missing_copy(h: &mut Host) -> Result<f64, String> {
    let (a, len) = (h.next_slot(), 16 * M);
    // A process has one userfaultfd (as in the model): each measurement opens it in a child.
    let (w1, w2) = h.in_child(|h| {
        h.mmap(a, len)?;
        h.madvise(a, len, Advice::Nohugepage)?;
        h.uffd(UffdReq::Open { features: vec![] })?;
        h.uffd(UffdReq::Handler {
            wp: None,
            missing: Some(MissingPolicy::Copy(K4)),
            minor: None,
        })?;
        h.uffd(UffdReq::Register {
            addr: a,
            len,
            missing: true,
            wp: false,
            minor: false,
        })?;
        Ok((
            h.touch_wall(a, len, K4, Pattern::Write)?,
            h.touch_wall(a, len, K4, Pattern::Write)?,
        ))
    })?;
    Ok((w1 - w2) / (len / K4) as f64)
}

/// The userfaultfd round trip of a write-protect fault (QEMU's background snapshot), in wall
/// time per message: 16 MiB written, registered WP and write-protected; the worker writes
/// every page while the monitor unprotects each 4 KiB page (`UFFDIO_WRITEPROTECT` mode 0);
/// minus a second pass of writes (no fault). It includes the fault itself.
fn uffd_wp_unprotect(h: &mut Host) -> Result<f64, String> {
    let (a, len) = (h.next_slot(), 16 * M);
    let (w1, w2) = h.in_child(|h| {
        h.mmap(a, len)?;
        h.madvise(a, len, Advice::Nohugepage)?;
        h.touch(a, len, K4, Pattern::Write)?;
        h.uffd(UffdReq::Open { features: vec![] })?;
        h.uffd(UffdReq::Handler {
            wp: Some(WpPolicy::Unprotect(K4)),
            missing: None,
            minor: None,
        })?;
        h.uffd(UffdReq::Register {
            addr: a,
            len,
            missing: false,
            wp: true,
            minor: false,
        })?;
        h.uffd(UffdReq::Writeprotect {
            addr: a,
            len,
            wp: true,
            stride: 0,
        })?;
        Ok((
            h.touch_wall(a, len, K4, Pattern::Write)?,
            h.touch_wall(a, len, K4, Pattern::Write)?,
        ))
    })?;
    Ok((w1 - w2) / (len / K4) as f64)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn cost_of(
    h: &mut Host,
    repeats: u32,
    units: u64,
    f: &dyn Fn(&mut Host) -> Result<f64, String>,
) -> Result<EventCost, String> {
    // One warm-up run: the first touch of the arena and the worker's code paths.
    f(h)?;
    let mut v = Vec::new();
    for _ in 0..repeats {
        v.push(f(h)?);
    }
    let (min, max) = v
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    Ok(EventCost {
        ns: median(&mut v),
        min_ns: min,
        max_ns: max,
        units,
        repeats,
    })
}

fn uname() -> String {
    let rel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    format!("Linux {} ({cpus} CPUs)", rel.trim())
}

fn measure(h: &mut Host, repeats: u32) -> Result<CostProfile, String> {
    let fixed: [(&str, u64, Measure); 15] = [
        ("fault_zero_page_read", 16384, fault_zero_page_read),
        ("fault_4k", 16384, fault_4k),
        ("fault_pmd_thp", 128, fault_pmd_thp),
        ("huge_zero_map", 128, huge_zero_map),
        ("cow_4k", 16384, cow_4k),
        ("pmd_split", 32, pmd_split),
        ("collapse_2m", 32, collapse_2m),
        ("populate_4k", 16384, populate_4k),
        ("munmap_4k", 16384, munmap_4k),
        ("munmap_thp", 128, munmap_thp),
        ("cow_pmd_thp", 32, cow_pmd_thp),
        ("folio_split_pmd", 32, folio_split_pmd),
        ("folio_split_64k", 1024, folio_split_64k),
        ("uffd_missing_copy", 4096, uffd_missing_copy),
        ("uffd_wp_unprotect", 4096, uffd_wp_unprotect),
    ];
    let mut p = CostProfile {
        name: String::new(),
        host: uname(),
        events: Default::default(),
    };
    for (name, units, f) in fixed {
        eprintln!("calibrate: {name}");
        p.events
            .insert(name.into(), cost_of(h, repeats, units, &f)?);
    }
    for o in 2..9u32 {
        let kb = 4u64 << o;
        eprintln!("calibrate: fault_mthp_{kb}k");
        let e = cost_of(h, repeats, 64 * 1024 / kb, &move |h: &mut Host| {
            fault_mthp(h, kb)
        })?;
        p.events.insert(format!("fault_mthp_{kb}k"), e);
    }
    Ok(p)
}

/// A workload for `--validate`: a scenario run on the host (every op timed, minus the same
/// ops' round trip) and on the model with the profile.
pub const WORKLOADS: &[(&str, &str)] = &[
    (
        "prealloc-256M-thp",
        "sysfs enabled=madvise\nmmap g 256M anon private rw\nmadvise g HUGEPAGE\nwrite g stride=4K\nmunmap g\n",
    ),
    (
        "prealloc-256M-4k",
        "sysfs enabled=never\nmmap g 256M anon private rw\nwrite g stride=4K\nmunmap g\n",
    ),
    (
        "read-then-write-64M-hzp",
        "sysfs enabled=madvise\nmmap g 64M anon private rw\nmadvise g HUGEPAGE\nread g stride=4K\nwrite g stride=4K\nmunmap g\n",
    ),
    (
        "fork-cow-64M",
        "sysfs enabled=never\nmmap g 64M anon private rw\nwrite g stride=4K\nfork c\nas c\nwrite g stride=4K\nexit c\nmunmap g\n",
    ),
    (
        "fork-cow-thp-256M",
        "sysfs enabled=madvise\nmmap g 256M anon private rw\nmadvise g HUGEPAGE\nwrite g stride=2M\nfork c\nas c\nwrite g stride=2M\nexit c\nmunmap g\n",
    ),
    (
        "cold-split-256M",
        "sysfs enabled=madvise\nmmap g 256M anon private rw\nmadvise g HUGEPAGE\nwrite g stride=2M\nmadvise g+0 4K COLD\nmadvise g+2M 4K COLD\nmadvise g+4M 4K COLD\nmadvise g+6M 4K COLD\nmunmap g\n",
    ),
    (
        "postcopy-uffd-16M",
        "sysfs enabled=madvise\nmmap g 16M anon private rw\nmadvise g NOHUGEPAGE\nuffd open\nuffd handler missing=copy:4K\nuffd register g missing\nwrite g stride=4K\nmunmap g\n",
    ),
    (
        "snapshot-uffd-wp-16M",
        "sysfs enabled=madvise\nmmap g 16M anon private rw\nmadvise g NOHUGEPAGE\nwrite g stride=4K\nuffd open\nuffd handler wp=unprotect:4K\nuffd register g wp\nuffd wp g\nwrite g stride=4K\nmunmap g\n",
    ),
];

#[derive(serde::Serialize)]
pub struct Validation {
    pub workload: String,
    /// Median over the undisturbed host runs (all runs if every one was disturbed).
    pub host_ms: f64,
    pub model_ms: f64,
    /// (model − host) / host, percent.
    pub error_pct: f64,
    /// Host runs during which the kernel reclaimed or compacted memory (direct reclaim or
    /// compaction stalls: work the model does not do), and all runs.
    pub disturbed_runs: u32,
    pub runs: u32,
}

/// System-wide direct reclaim and compaction events so far (`/proc/vmstat`): a host run
/// during which they move did work the model has no counterpart for.
fn disturbance() -> u64 {
    let Ok(t) = std::fs::read_to_string("/proc/vmstat") else {
        return 0;
    };
    t.lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(k, _)| {
            k.starts_with("allocstall_") || *k == "compact_stall" || *k == "pgsteal_direct"
        })
        .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
        .sum()
}

/// Times every op of a scenario on the host: the worker's CPU time for the op minus an empty
/// request's (a `madvise NORMAL` of one page), so the figure is the kernel's work plus the
/// worker's user-space loop (as the process's own time would be).
struct TimedHost {
    inner: HostBackend,
    ns: f64,
    /// The empty request's time (CPU or wall, as `wall` says).
    rtt: f64,
    cur: u32,
    /// Wall time instead of the worker's CPU time: for workloads with a userfaultfd monitor,
    /// whose work is split between the worker and the thpsim process.
    wall: bool,
}

impl Backend for TimedHost {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn check_plan(
        &mut self,
        plan: &thpsim_scenario::engine::Plan,
    ) -> Result<(), thpsim_scenario::backend::BackendError> {
        self.inner.check_plan(plan)
    }
    fn setup(&mut self, s: &Setup) -> Result<(), thpsim_scenario::backend::BackendError> {
        self.inner.setup(s)
    }
    fn exec(
        &mut self,
        op: &BackendOp,
    ) -> Result<thpsim_scenario::backend::OpOutcome, thpsim_scenario::backend::BackendError> {
        let (r, cpu, wall) = timed(&mut self.inner, self.cur, op)
            .map_err(thpsim_scenario::backend::BackendError::Failed)?;
        let ns = if self.wall { wall } else { cpu };
        if let BackendOp::Switch { proc } = op {
            self.cur = *proc;
        }
        self.ns += (ns - self.rtt).max(0.0);
        Ok(r)
    }
    fn snapshot(
        &mut self,
        ranges: &[(u64, u64)],
    ) -> Result<thpsim_scenario::backend::Snapshot, thpsim_scenario::backend::BackendError> {
        self.inner.snapshot(ranges)
    }
    fn finish(&mut self) -> Result<(), thpsim_scenario::backend::BackendError> {
        self.inner.finish()
    }
}

/// The round trip of an empty request (median of 200): worker CPU time and wall time.
fn round_trip(h: &mut Host) -> Result<(f64, f64), String> {
    let a = h.next_slot();
    h.mmap(a, K4)?;
    let (mut cpu, mut wall) = (Vec::new(), Vec::new());
    for _ in 0..200 {
        let (c, w) = h.t_both(BackendOp::Madvise {
            addr: a,
            len: K4,
            advice: Advice::Normal,
        })?;
        cpu.push(c);
        wall.push(w);
    }
    h.munmap(a, K4)?;
    Ok((median(&mut cpu), median(&mut wall)))
}

pub fn validate(profile: &CostProfile, repeats: u32) -> Result<Vec<Validation>, String> {
    use thpsim_scenario::engine::{self, Variant};
    let rtt = {
        let mut h = Host::new()?;
        let r = round_trip(&mut h)?;
        h.b.finish().map_err(|e| e.message())?;
        r
    };
    let mut out = Vec::new();
    for (name, src) in WORKLOADS {
        let scn = thpsim_scenario::parse(name, src).map_err(|_| format!("{name}: bad workload"))?;
        let (mut clean, mut all) = (Vec::new(), Vec::new());
        for _ in 0..repeats.max(1) {
            let d0 = disturbance();
            let wall = src.contains("uffd ");
            let mut t = TimedHost {
                inner: HostBackend::new(HostOptions {
                    allow_sysfs: true,
                    ..Default::default()
                }),
                ns: 0.0,
                rtt: if wall { rtt.1 } else { rtt.0 },
                cur: 0,
                wall,
            };
            engine::run(&scn, &mut t, &Variant::default())
                .map_err(|e| format!("{name} on the host: {}", e.message()))?;
            all.push(t.ns);
            if disturbance() == d0 {
                clean.push(t.ns);
            }
        }
        let mut m = crate::cost::Costed::new(crate::model_backend(), profile.clone());
        engine::run(&scn, &mut m, &Variant::default())
            .map_err(|e| format!("{name} on the model: {}", e.message()))?;
        let runs = all.len() as u32;
        let disturbed_runs = runs - clean.len() as u32;
        let host_ns = if clean.is_empty() {
            median(&mut all)
        } else {
            median(&mut clean)
        };
        out.push(Validation {
            workload: name.to_string(),
            host_ms: host_ns / 1e6,
            model_ms: m.total_ns / 1e6,
            error_pct: (m.total_ns - host_ns) / host_ns * 100.0,
            disturbed_runs,
            runs,
        });
    }
    Ok(out)
}

pub struct CalibrateOpts<'a> {
    pub out: Option<&'a std::path::Path>,
    pub name: Option<String>,
    pub repeats: u32,
    pub validate: bool,
    /// Validate this profile instead of measuring one.
    pub profile: Option<&'a std::path::Path>,
    pub json: bool,
}

pub fn main(o: CalibrateOpts<'_>) -> ExitCode {
    let profile = match o.profile {
        Some(p) => match std::fs::read_to_string(p)
            .map_err(|e| e.to_string())
            .and_then(|t| CostProfile::parse(&p.display().to_string(), &t))
        {
            Ok(p) => p,
            Err(e) => {
                eprintln!("thpsim calibrate: {e}");
                return ExitCode::from(2);
            }
        },
        None if o.validate && o.out.is_none() => CostProfile::builtin(),
        None => {
            let r = Host::new().and_then(|mut h| {
                let p = measure(&mut h, o.repeats);
                h.b.finish().map_err(|e| e.message())?;
                p
            });
            match r {
                Ok(mut p) => {
                    p.name = o.name.clone().unwrap_or_else(|| {
                        format!("{} {}", thpsim_host::host_kernel_profile(), p.host)
                    });
                    p
                }
                Err(e) => {
                    eprintln!("thpsim calibrate: {e}");
                    return ExitCode::from(crate::EXIT_CANNOT_RUN);
                }
            }
        }
    };
    let text = serde_json::to_string_pretty(&profile).expect("json");
    match o.out {
        Some(p) => {
            if let Err(e) = std::fs::write(p, format!("{text}\n")) {
                eprintln!("thpsim calibrate: cannot write {}: {e}", p.display());
                return ExitCode::from(1);
            }
        }
        None if !o.validate => outln!("{text}"),
        None => {}
    }
    if o.validate {
        match validate(&profile, o.repeats) {
            Ok(v) => {
                if o.json {
                    outln!("{}", serde_json::to_string_pretty(&v).expect("json"));
                } else {
                    outln!(
                        "cost profile `{}`: model estimate vs host time",
                        profile.name
                    );
                    for x in &v {
                        outln!(
                            "  {:<26} host {:>9.2} ms  model {:>9.2} ms  error {:>+6.1}%{}",
                            x.workload,
                            x.host_ms,
                            x.model_ms,
                            x.error_pct,
                            if x.disturbed_runs > 0 {
                                format!(
                                    "  ({} of {} host runs with direct reclaim/compaction{})",
                                    x.disturbed_runs,
                                    x.runs,
                                    if x.disturbed_runs == x.runs {
                                        ", all kept"
                                    } else {
                                        ", left out"
                                    }
                                )
                            } else {
                                String::new()
                            }
                        );
                    }
                }
            }
            Err(e) => {
                eprintln!("thpsim calibrate --validate: {e}");
                return ExitCode::from(crate::EXIT_CANNOT_RUN);
            }
        }
    } else if !o.json {
        let c = profile.coefficients();
        eprintln!("calibrate: coefficients {c:?}");
    }
    ExitCode::SUCCESS
}
