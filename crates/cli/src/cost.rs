//! The kernel-time cost model (docs/cost-model.md): a cost profile measured on a host by
//! `thpsim calibrate` (per event kind: ns, spread, units), its linear coefficients over the
//! model's counters, and a backend wrapper that estimates `sim_kernel_time` per op from each
//! op's counter deltas. Wall-clock measurement lives in `calibrate.rs`; this is arithmetic.

use std::collections::BTreeMap;

use thpsim_kernel::vmstat::{MthpStat, VmItem};
use thpsim_scenario::backend::{Backend, BackendError, BackendOp, OpOutcome, Setup, Snapshot};
use thpsim_scenario::sim::SimBackend;

/// The profile measured on the reference machine (6.18.44, 2 vCPUs; `thpsim calibrate`).
pub const BUILTIN: &str = include_str!("../profiles/reference-6.18.json");

/// The counter the wrapper adds to snapshots (cumulative ns; checkpoints show its delta).
pub const COUNTER: &str = "vmstat.sim_kernel_time_ns";

/// One event kind's measured cost.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EventCost {
    /// Median over the repeats, ns per unit.
    pub ns: f64,
    pub min_ns: f64,
    pub max_ns: f64,
    /// Units per repeat (faults, pages, 2 MiB ranges).
    pub units: u64,
    pub repeats: u32,
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CostProfile {
    pub name: String,
    /// Kernel release and machine the profile was measured on.
    pub host: String,
    pub events: BTreeMap<String, EventCost>,
}

/// Linear coefficients (ns) over per-op counter deltas.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Coefficients {
    /// Every fault (`pgfault`): trap, walk, map; measured as a small-zero-page read fault.
    pub fault: f64,
    /// Per zeroed 4 KiB page (`sim_zeroed_pages`): the slope of the large-folio fault costs
    /// over their size (least squares over every measured order).
    pub zero_4k: f64,
    /// Per order-0 allocation beyond `fault` and `zero_4k` (an order-0 write fault).
    pub order0_alloc: f64,
    /// Per COW-copied 4 KiB page (`sim_cow_copied_pages`), beyond `fault`.
    pub cow_4k: f64,
    /// Per large-folio fault of each order (9: `thp_fault_alloc`, else
    /// `mthp.<size>kB.anon_fault_alloc`), beyond `fault` and 2^order × `zero_4k`.
    pub large_fault: BTreeMap<u8, f64>,
    /// Per collapse (`thp_collapse_alloc`), copy included.
    pub collapse_2m: f64,
    pub pmd_split: f64,
    /// Per split of a PMD-sized folio (`mthp.2048kB.split`), beyond its PMD split
    /// (`thp_split_pmd` moves too): `folio_split_pmd − pmd_split`.
    pub folio_split_pmd: f64,
    /// Per split of a smaller large folio (`mthp.<size>kB.split`, any order below PMD): the
    /// 64 KiB measurement, for every order (the cost is dominated by the fixed part, not by
    /// the 2^order PTEs; docs/cost-model.md).
    pub folio_split_mthp: f64,
    /// Per userfaultfd missing message the modelled monitor resolves (`uffd.missing`): the
    /// measured round trip less the `fault` the model counts for it.
    pub uffd_missing: f64,
    /// Per write-protect message (`uffd.wp`), likewise.
    pub uffd_wp: f64,
    /// Per freed order-0 page and per freed PMD THP (falls of the anon gauges).
    pub unmap_4k: f64,
    pub unmap_thp: f64,
}

impl CostProfile {
    pub fn parse(name: &str, text: &str) -> Result<CostProfile, String> {
        serde_json::from_str(text).map_err(|e| format!("{name}: not a cost profile: {e}"))
    }

    pub fn builtin() -> CostProfile {
        Self::parse("builtin", BUILTIN).expect("the built-in profile parses")
    }

    fn ns(&self, k: &str) -> f64 {
        self.events.get(k).map_or(0.0, |e| e.ns)
    }

    /// The measured large-folio fault costs: (order, ns).
    fn large(&self) -> Vec<(u8, f64)> {
        let mut v: Vec<(u8, f64)> = (2..9u8)
            .filter_map(|o| {
                let e = self.events.get(&format!("fault_mthp_{}k", 4u64 << o))?;
                Some((o, e.ns))
            })
            .collect();
        if let Some(e) = self.events.get("fault_pmd_thp") {
            v.push((9, e.ns));
        }
        v
    }

    pub fn coefficients(&self) -> Coefficients {
        let fault = self.ns("fault_zero_page_read");
        let large = self.large();
        // Least-squares slope of cost over pages.
        let n = large.len() as f64;
        let xs: Vec<f64> = large.iter().map(|(o, _)| f64::from(1u32 << o)).collect();
        let (mx, my) = (
            xs.iter().sum::<f64>() / n,
            large.iter().map(|(_, y)| y).sum::<f64>() / n,
        );
        let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
        let sxy: f64 = xs
            .iter()
            .zip(&large)
            .map(|(x, (_, y))| (x - mx) * (y - my))
            .sum();
        let zero_4k = if large.len() >= 2 && sxx > 0.0 {
            sxy / sxx
        } else {
            self.ns("fault_4k") - fault
        };
        let large_fault = large
            .iter()
            .map(|&(o, y)| (o, y - fault - f64::from(1u32 << o) * zero_4k))
            .collect();
        Coefficients {
            fault,
            zero_4k,
            order0_alloc: self.ns("fault_4k") - fault - zero_4k,
            cow_4k: self.ns("cow_4k") - fault,
            large_fault,
            collapse_2m: self.ns("collapse_2m"),
            pmd_split: self.ns("pmd_split"),
            folio_split_pmd: (self.ns("folio_split_pmd") - self.ns("pmd_split")).max(0.0),
            folio_split_mthp: self.ns("folio_split_64k"),
            uffd_missing: (self.ns("uffd_missing_copy") - fault).max(0.0),
            uffd_wp: (self.ns("uffd_wp_unprotect") - fault).max(0.0),
            unmap_4k: self.ns("munmap_4k"),
            unmap_thp: self.ns("munmap_thp"),
        }
    }
}

/// The counters the estimate reads, at one instant.
#[derive(Clone, Copy, Debug, Default)]
struct Reading {
    pgfault: i64,
    zeroed: i64,
    cow: i64,
    thp_fault: i64,
    mthp: [i64; 10],
    collapse: i64,
    collapse_copied: i64,
    split_pmd: i64,
    /// `mthp.<size>kB.split` by order.
    split: [i64; 10],
    uffd_missing: i64,
    uffd_wp: i64,
    anon_pages: i64,
    anon_thps: i64,
    /// `thp_zeroing=lazy`: THP faults that zeroed one page, and pages zeroed on first touch.
    lazy_alloc: i64,
    lazy_pages: i64,
}

fn read(be: &SimBackend) -> Reading {
    let Some(k) = be.kernel() else {
        return Reading::default();
    };
    let v = &k.vmstat;
    let mut r = Reading {
        pgfault: v.get(VmItem::Pgfault),
        zeroed: v.get(VmItem::SimZeroedPages),
        cow: v.get(VmItem::SimCowCopiedPages),
        thp_fault: v.get(VmItem::ThpFaultAlloc),
        collapse: v.get(VmItem::ThpCollapseAlloc),
        collapse_copied: v.get(VmItem::SimCollapseCopiedPages),
        split_pmd: v.get(VmItem::ThpSplitPmd),
        anon_pages: v.get(VmItem::NrAnonPages),
        anon_thps: v.get(VmItem::NrAnonTransparentHugepages),
        lazy_alloc: v.get(VmItem::SimThpLazyAlloc),
        lazy_pages: v.get(VmItem::SimThpLazyPages),
        uffd_missing: i64::try_from(k.uffd_stats.missing).unwrap_or(i64::MAX),
        uffd_wp: i64::try_from(k.uffd_stats.wp).unwrap_or(i64::MAX),
        ..Reading::default()
    };
    for o in 2..9u8 {
        r.mthp[o as usize] = v.mthp_get(o, MthpStat::AnonFaultAlloc);
    }
    for o in 1..=9u8 {
        r.split[o as usize] = v.mthp_get(o, MthpStat::Split);
    }
    r.mthp[9] = r.thp_fault;
    r
}

#[allow(clippy::cast_precision_loss)]
fn estimate(c: &Coefficients, a: &Reading, b: &Reading) -> f64 {
    let d = |x: i64, y: i64| y - x;
    let mut t = c.fault * d(a.pgfault, b.pgfault) as f64
        + c.zero_4k * d(a.zeroed, b.zeroed) as f64
        + c.cow_4k * d(a.cow, b.cow) as f64
        + c.collapse_2m * d(a.collapse, b.collapse) as f64
        + c.pmd_split * d(a.split_pmd, b.split_pmd) as f64
        + c.folio_split_pmd * d(a.split[9], b.split[9]) as f64
        + c.uffd_missing * d(a.uffd_missing, b.uffd_missing) as f64
        + c.uffd_wp * d(a.uffd_wp, b.uffd_wp) as f64;
    for o in 1..9 {
        t += c.folio_split_mthp * d(a.split[o], b.split[o]) as f64;
    }
    // Zeroed pages that were order-0 allocations: not those of large folios or collapses, nor
    // the pages of lazily zeroed THPs (thp_zeroing=lazy), which come from their folio.
    let lazy_alloc = d(a.lazy_alloc, b.lazy_alloc);
    let mut order0 = d(a.zeroed, b.zeroed)
        - (512 * d(a.collapse, b.collapse) - d(a.collapse_copied, b.collapse_copied))
        - d(a.lazy_pages, b.lazy_pages)
        + 512 * lazy_alloc;
    for o in 2..=9u8 {
        let n = d(a.mthp[o as usize], b.mthp[o as usize]);
        order0 -= n << o;
        let per = c.large_fault.get(&o).copied().unwrap_or(0.0);
        if o == 9 {
            // A lazy THP fault pays the allocation, not the zeroing (its one page is in
            // `zeroed`): the fitted overhead, never below nothing.
            t += per * (n - lazy_alloc) as f64 + per.max(0.0) * lazy_alloc as f64;
        } else {
            t += per * n as f64;
        }
    }
    t += c.order0_alloc * order0.max(0) as f64;
    let freed_thps = (a.anon_thps - b.anon_thps).max(0);
    let freed_pages = ((a.anon_pages - b.anon_pages).max(0) - 512 * freed_thps).max(0);
    t += c.unmap_thp * freed_thps as f64 + c.unmap_4k * freed_pages as f64;
    t.max(0.0)
}

/// Per-op estimates a run keeps (the total counts every op).
const MAX_COST_OPS: usize = 100_000;

/// One op's estimate.
#[derive(Clone, Debug, serde::Serialize)]
pub struct OpCost {
    pub index: usize,
    pub op: String,
    pub ns: f64,
}

/// The model backend with a `sim_kernel_time` estimate per op.
pub struct Costed {
    pub inner: SimBackend,
    pub profile: CostProfile,
    coef: Coefficients,
    last: Reading,
    pub total_ns: f64,
    pub ops: Vec<OpCost>,
}

impl Costed {
    pub fn new(inner: SimBackend, profile: CostProfile) -> Self {
        let coef = profile.coefficients();
        Costed {
            inner,
            profile,
            coef,
            last: Reading::default(),
            total_ns: 0.0,
            ops: Vec::new(),
        }
    }
}

/// A short name for an op in reports.
fn op_name(op: &BackendOp) -> String {
    let s = format!("{op:?}");
    s.chars().take(80).collect()
}

impl Backend for Costed {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn check_plan(&mut self, plan: &thpsim_scenario::engine::Plan) -> Result<(), BackendError> {
        self.inner.check_plan(plan)
    }
    fn setup(&mut self, setup: &Setup) -> Result<(), BackendError> {
        self.inner.setup(setup)?;
        self.last = read(&self.inner);
        Ok(())
    }
    fn exec(&mut self, op: &BackendOp) -> Result<OpOutcome, BackendError> {
        let out = self.inner.exec(op)?;
        let now = read(&self.inner);
        let ns = estimate(&self.coef, &self.last, &now);
        self.last = now;
        self.total_ns += ns;
        if self.ops.len() < MAX_COST_OPS {
            self.ops.push(OpCost {
                index: self.ops.len(),
                op: op_name(op),
                ns,
            });
        }
        Ok(out)
    }
    fn snapshot(&mut self, ranges: &[(u64, u64)]) -> Result<Snapshot, BackendError> {
        let mut s = self.inner.snapshot(ranges)?;
        #[allow(clippy::cast_possible_truncation)]
        s.counters
            .insert(COUNTER.to_string(), self.total_ns.round() as i64);
        Ok(s)
    }
    fn finish(&mut self) -> Result<(), BackendError> {
        self.inner.finish()
    }
}

/// The text summary: total, the costliest ops, the profile's name.
pub fn summary(c: &Costed) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "\nsim_kernel_time {:.3} ms (cost profile `{}`, {})",
        c.total_ns / 1e6,
        c.profile.name,
        c.profile.host
    );
    let mut top: Vec<&OpCost> = c.ops.iter().filter(|x| x.ns > 0.0).collect();
    top.sort_by(|a, b| b.ns.total_cmp(&a.ns));
    for x in top.iter().take(5) {
        let _ = writeln!(o, "  op #{:<5} {:>12.1} µs  {}", x.index, x.ns / 1e3, x.op);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use thpsim_scenario::engine::{self, Variant};

    fn profile() -> CostProfile {
        let mut p = CostProfile {
            name: "t".into(),
            host: "t".into(),
            events: BTreeMap::new(),
        };
        for (k, ns) in [
            ("fault_zero_page_read", 500.0),
            ("fault_4k", 1500.0),
            ("fault_pmd_thp", 1000.0 + 512.0 * 600.0 + 300.0),
            ("fault_mthp_64k", 1000.0 + 16.0 * 600.0 + 300.0),
            ("munmap_4k", 100.0),
            ("munmap_thp", 5000.0),
        ] {
            p.events.insert(
                k.into(),
                EventCost {
                    ns,
                    ..EventCost::default()
                },
            );
        }
        p
    }

    #[test]
    fn estimate_is_counter_deltas_times_coefficients() {
        let c = profile().coefficients();
        // A fault 500, zeroing 600 a page (the slope of the two large sizes), an order-0
        // allocation 1500 - 500 - 600, each large fault 800 more.
        assert_eq!((c.fault, c.zero_4k, c.order0_alloc), (500.0, 600.0, 400.0));
        assert!(
            (c.large_fault[&9] - 800.0).abs() < 1e-6 && (c.large_fault[&4] - 800.0).abs() < 1e-6
        );
        let src = "mmap a 4M anon private rw\nmadvise a+0 2M HUGEPAGE\nwrite a+0\nwrite a+2M 16K stride=4K\nread a+3M\ncheckpoint faults\nmunmap a\n";
        let scn = thpsim_scenario::parse("t", src).unwrap();
        let mut be = Costed::new(SimBackend::new(), profile());
        let res = engine::run(&scn, &mut be, &Variant::default()).unwrap();
        // One PMD THP fault (as measured), 4 order-0 faults (1.5 µs each), one zero-page
        // read (0.5 µs); munmap frees 1 THP and 4 pages.
        let faults = 1300.0 + 512.0 * 600.0 + 4.0 * 1500.0 + 500.0;
        let unmap = 5000.0 + 4.0 * 100.0;
        assert!(
            (be.total_ns - faults - unmap).abs() < 1e-6,
            "{}",
            be.total_ns
        );
        let cp = |l: &str| {
            res.checkpoints
                .iter()
                .find(|c| c.label == l)
                .unwrap()
                .counters[COUNTER]
        };
        assert_eq!(cp("faults"), 315_000);
        assert_eq!(cp("end"), 5400);
        assert!(summary(&be).contains("cost profile `t`"));
    }

    #[test]
    fn builtin_profile_parses_and_has_every_event() {
        let p = CostProfile::builtin();
        for k in [
            "fault_zero_page_read",
            "fault_4k",
            "fault_pmd_thp",
            "huge_zero_map",
            "cow_4k",
            "pmd_split",
            "collapse_2m",
            "populate_4k",
            "munmap_4k",
            "munmap_thp",
            "fault_mthp_64k",
        ] {
            assert!(p.events.get(k).is_some_and(|e| e.ns > 0.0), "{k}");
        }
    }
}
