//! The model's fast paths must equal the page-at-a-time paths exactly: every observable
//! (fault counts, counters, page map, smaps) and the content state (checked through what
//! the underused shrinker then does).
//!
//! - Sparse walks (`PageTables::next_pmd_slot`): random op sequences run on a model whose
//!   walks visit only populated PMD slots and on one whose walks visit every slot
//!   (`Kernel::set_dense_walks`).
//! - `Kernel::access_list` (random-order accesses, hits batched per PMD) against `access`
//!   per address.
//! - GUP skipping to the end of a huge PMD against populating one page per call.

use proptest::prelude::*;
use thpsim_kernel::mm::vmf;
use thpsim_kernel::mmap::MapFlags;
use thpsim_kernel::types::{AccessKind, AccessPattern, Advice, Prot};
use thpsim_kernel::userfaultfd::Features;
use thpsim_kernel::{Kernel, KernelConfig};

const BASE: u64 = 0x7f00_0000_0000;
const M2: u64 = 2 << 20;
const K4: u64 = 4096;
/// Two 1 GiB regions plus a bit, so walks cross PMD-table boundaries and meet absent ones.
const LEN: u64 = (1 << 31) + 8 * M2;

fn state(k: &Kernel, pids: &[u32]) -> String {
    let mut s = format!("{:?}\n", k.counters());
    for &pid in pids {
        if k.task(pid).is_none() {
            continue;
        }
        s += &format!(
            "{pid}: {:?}\n{:?}\n{:?}\n",
            k.task(pid).map(|t| (t.minflt, t.majflt)),
            k.page_map(pid, BASE, BASE + LEN),
            k.smaps(pid, BASE, BASE + LEN)
        );
    }
    s
}

fn model() -> (Kernel, u32) {
    let mut cfg = KernelConfig::default();
    cfg.sysfs.set("khugepaged.max_ptes_none", "409").unwrap();
    cfg.sysfs.set("khugepaged.pages_to_scan", "8192").unwrap();
    let mut k = Kernel::new(cfg).unwrap();
    let pid = k.spawn();
    k.mmap(pid, BASE, LEN, Prot::RW, MapFlags::default())
        .unwrap();
    (k, pid)
}

/// `model()`, MADV_HUGEPAGE or not, runs of accesses (`pre`: first page, pages, write), and
/// one read-only 2 MiB block if `ro_part`.
fn prepared(hugepage: bool, pre: &[(u64, u64, bool)], ro_part: bool) -> (Kernel, u32) {
    let (mut k, pid) = model();
    if hugepage {
        k.madvise(pid, BASE, LEN, Advice::Hugepage).unwrap();
    }
    for &(p, n, w) in pre {
        let kind = if w {
            AccessKind::Write
        } else {
            AccessKind::Read
        };
        for i in 0..n {
            let _ = k.access(pid, BASE + (p + i) * K4, kind);
        }
    }
    if ro_part {
        let _ = k.mprotect(pid, BASE + 4 * M2, M2, Prot::R);
    }
    (k, pid)
}

/// The reference for `access_list`: `access` at each `base + off` in order (the pattern's
/// read, then its write), stopping at the first signal.
fn per_address(
    k: &mut Kernel,
    pid: u32,
    base: u64,
    offs: &[u64],
    pattern: AccessPattern,
) -> Result<(), thpsim_kernel::errno::Signal> {
    for off in offs {
        if pattern.reads() {
            k.access(pid, base + off, AccessKind::Read)?;
        }
        if pattern.writes() {
            k.access(pid, base + off, AccessKind::Write)?;
        }
    }
    Ok(())
}

#[derive(Clone, Debug)]
enum Op {
    Touch { page: u64, n: u64, write: bool },
    Madvise { page: u64, n: u64, advice: Advice },
    Mprotect { page: u64, n: u64, prot: Prot },
    Munmap { page: u64, n: u64 },
    Fork,
    ExitChild,
    Khugepaged,
    UffdWp { page: u64, n: u64, wp: bool },
    Shrink,
}

/// Page numbers clustered near a few places of the mapping (both regions, the boundary).
fn page() -> impl Strategy<Value = u64> {
    let pages = LEN / K4;
    prop_oneof![
        0u64..2048,
        (pages / 2 - 1024)..(pages / 2 + 1024),
        (pages - 2048)..pages,
        0..pages,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let n = prop_oneof![1u64..8, Just(512u64), 1u64..2048, Just(LEN / K4)];
    prop_oneof![
        4 => (page(), n.clone(), any::<bool>()).prop_map(|(page, n, write)| Op::Touch { page, n, write }),
        3 => (page(), n.clone(), prop_oneof![
            Just(Advice::Dontneed), Just(Advice::Free), Just(Advice::Cold),
            Just(Advice::Collapse), Just(Advice::Hugepage), Just(Advice::PopulateWrite),
            Just(Advice::PopulateRead)
        ]).prop_map(|(page, n, advice)| Op::Madvise { page, n, advice }),
        2 => (page(), n.clone(), prop_oneof![Just(Prot::R), Just(Prot::RW), Just(Prot::NONE)])
            .prop_map(|(page, n, prot)| Op::Mprotect { page, n, prot }),
        1 => (page(), n.clone()).prop_map(|(page, n)| Op::Munmap { page, n }),
        1 => Just(Op::Fork),
        1 => Just(Op::ExitChild),
        1 => Just(Op::Khugepaged),
        1 => (page(), n, any::<bool>()).prop_map(|(page, n, wp)| Op::UffdWp { page, n, wp }),
        1 => Just(Op::Shrink),
    ]
}

/// Runs `ops`; returns the pids it created.
fn run(k: &mut Kernel, pid: u32, ops: &[Op]) -> Vec<u32> {
    let mut pids = vec![pid];
    let range = |page: u64, n: u64| {
        let s = BASE + page * K4;
        (s, (n * K4).min(BASE + LEN - s))
    };
    for op in ops {
        match *op {
            Op::Touch { page, n, write } => {
                let (s, len) = range(page, n);
                let kind = if write {
                    AccessKind::Write
                } else {
                    AccessKind::Read
                };
                let mut a = s;
                while a < s + len {
                    let _ = k.access(pid, a, kind);
                    a += K4;
                }
            }
            Op::Madvise { page, n, advice } => {
                let (s, len) = range(page, n);
                let _ = k.madvise(pid, s, len, advice);
            }
            Op::Mprotect { page, n, prot } => {
                let (s, len) = range(page, n);
                let _ = k.mprotect(pid, s, len, prot);
            }
            Op::Munmap { page, n } => {
                let (s, len) = range(page, n);
                let _ = k.munmap(pid, s, len);
            }
            Op::Fork => {
                if let Ok(c) = k.fork(pid) {
                    pids.push(c);
                }
            }
            Op::ExitChild => {
                if pids.len() > 1 {
                    let c = pids.remove(1);
                    k.exit(c);
                }
            }
            Op::Khugepaged => k.khugepaged_scan(1),
            Op::UffdWp { page, n, wp } => {
                let (s, len) = range(page, n);
                let _ = k.uffd_register(pid, s, len, vmf::UFFD_WP);
                let _ = k.uffd_writeprotect(pid, s, len, wp);
            }
            Op::Shrink => k.shrink(),
        }
    }
    pids
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn sparse_walks_equal_dense_walks(
        hugepage in any::<bool>(),
        uffd in any::<bool>(),
        ops in prop::collection::vec(op(), 1..24),
    ) {
        let (mut k, pid) = model();
        if hugepage {
            k.madvise(pid, BASE, LEN, Advice::Hugepage).unwrap();
        }
        if uffd {
            k.uffd_open(pid, Features::default()).unwrap();
        }
        let mut dense = k.clone();
        dense.set_dense_walks(true);
        let pids = run(&mut k, pid, &ops);
        let pids_dense = run(&mut dense, pid, &ops);
        prop_assert_eq!(&pids, &pids_dense);
        prop_assert_eq!(state(&k, &pids), state(&dense, &pids));
        k.shrink();
        dense.shrink();
        prop_assert_eq!(state(&k, &pids), state(&dense, &pids));
        k.check_invariants().map_err(|e| TestCaseError::fail(e.to_string()))?;
    }

    #[test]
    fn access_list_equals_per_address_access(
        hugepage in any::<bool>(),
        pre in prop::collection::vec((0u64..4096, 1u64..600, any::<bool>()), 0..6),
        ro_part in any::<bool>(),
        none_part in any::<bool>(),
        picks in prop::collection::vec(0u64..4096, 0..6000),
        pattern in prop_oneof![Just(AccessPattern::Read), Just(AccessPattern::Write), Just(AccessPattern::ReadWrite)],
    ) {
        let (mut k, pid) = prepared(hugepage, &pre, ro_part);
        if none_part {
            let _ = k.mprotect(pid, BASE + 6 * M2, 2 * M2, Prot::NONE);
        }
        // A range of 16 MiB, offsets in any order, repeats allowed.
        let (s, e) = (BASE, BASE + 8 * M2);
        let offs: Vec<u64> = picks.iter().map(|p| p * K4).collect();
        let mut fast = k.clone();
        let mut slow = k;
        let rf = fast.access_list(pid, (s, e), offs.iter().copied(), pattern);
        let rs = per_address(&mut slow, pid, s, &offs, pattern);
        prop_assert_eq!(rf, rs);
        prop_assert_eq!(state(&fast, &[pid]), state(&slow, &[pid]));
        fast.shrink();
        slow.shrink();
        prop_assert_eq!(state(&fast, &[pid]), state(&slow, &[pid]));
        fast.check_invariants().map_err(|e| TestCaseError::fail(e.to_string()))?;
    }

    #[test]
    fn populate_skipping_huge_pages_equals_page_by_page(
        hugepage in any::<bool>(),
        pre in prop::collection::vec((0u64..4096, 1u64..600, any::<bool>()), 0..6),
        start in 0u64..4096,
        pages in 1u64..4096,
        write in any::<bool>(),
        ro_part in any::<bool>(),
    ) {
        let (k, pid) = prepared(hugepage, &pre, ro_part);
        let advice = if write { Advice::PopulateWrite } else { Advice::PopulateRead };
        let (s, e) = (BASE + start * K4, BASE + (start + pages).min(4096) * K4);
        let mut fast = k.clone();
        let mut slow = k;
        let rf = fast.madvise(pid, s, e - s, advice);
        let mut rs = Ok(());
        let mut a = s;
        while a < e {
            rs = slow.madvise(pid, a, K4, advice);
            if rs.is_err() {
                break;
            }
            a += K4;
        }
        prop_assert_eq!(rf, rs);
        prop_assert_eq!(state(&fast, &[pid]), state(&slow, &[pid]));
        fast.check_invariants().map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// A range of more than 4096 PMD slots, so `access_list` queues its stores per bucket.
    #[test]
    fn access_list_over_a_large_range_equals_per_address_access(
        blocks in prop::collection::vec(0u64..(1 << 14), 1..24),
        picks in prop::collection::vec((0usize..24, 0u64..512), 16384..20000),
        pattern in prop_oneof![Just(AccessPattern::Write), Just(AccessPattern::ReadWrite)],
        pre_write in any::<bool>(),
        max_ptes_none in 0u32..512,
    ) {
        const BIG: u64 = 32 << 30;
        // The underused shrinker's threshold probes the recorded content of each THP.
        let mut cfg = KernelConfig::default();
        cfg.sysfs.set("khugepaged.max_ptes_none", &max_ptes_none.to_string()).unwrap();
        let mut k = Kernel::new(cfg).unwrap();
        let pid = k.spawn();
        k.mmap(pid, BASE, BIG, Prot::RW, MapFlags::default()).unwrap();
        k.madvise(pid, BASE, BIG, Advice::Hugepage).unwrap();
        // Some blocks THP-backed (a write) or huge-zero-backed (a read), the rest empty.
        for (j, b) in blocks.iter().enumerate() {
            if j % 3 != 2 {
                let kind = if pre_write || j % 3 == 0 { AccessKind::Write } else { AccessKind::Read };
                let _ = k.access(pid, BASE + b * M2, kind);
            }
        }
        let offs: Vec<u64> = picks
            .iter()
            .map(|&(j, p)| blocks[j % blocks.len()] * M2 + p * K4)
            .collect();
        let mut fast = k.clone();
        let mut slow = k;
        let rf = fast.access_list(pid, (BASE, BASE + BIG), offs.iter().copied(), pattern);
        let rs = per_address(&mut slow, pid, BASE, &offs, pattern);
        prop_assert_eq!(rf, rs);
        let st = |k: &Kernel| format!(
            "{:?}\n{:?}\n{:?}\n{:?}",
            k.task(pid).map(|t| (t.minflt, t.majflt)),
            k.counters(),
            k.page_map(pid, BASE, BASE + BIG),
            k.smaps(pid, BASE, BASE + BIG)
        );
        prop_assert_eq!(st(&fast), st(&slow));
        fast.shrink();
        slow.shrink();
        prop_assert_eq!(st(&fast), st(&slow));
    }
}
