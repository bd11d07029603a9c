//! The extent fault path (`memory::fault_run`: a run of order-0 anonymous faults on one PTE
//! table handled at once, in `access_seq` and in GUP populate) must equal the page-at-a-time
//! path (`Kernel::set_extent_faults(false)`) exactly: the result, every counter (vmstat,
//! buddyinfo, pagetypeinfo, memcg), the tasks' faults, page map, smaps, and the raw state —
//! each PTE (folio id and bits) and its folio (frame, references, flags, LRU bits). The
//! allocator's hidden state (the order its free lists hand pages out in) is compared through
//! what a page-at-a-time sequence run afterwards on both allocates, and what compaction
//! (which reads the pages in movable use) then migrates.
//!
//! Random setups cover where the fast path must stop or not start: small memories whose
//! watermarks are crossed in the middle of a run (the slow path, OOM), fragmented free lists
//! (background allocations, holes freed by munmap and MADV_DONTNEED, so low-order blocks are
//! listed), two zones, mTHP and PMD THP enabled, a memcg, userfaultfd, fork (COW), PROT_NONE
//! and read-only parts, and strides below, at and above a page.

use proptest::prelude::*;
use thpsim_kernel::memcontrol::MemcgConfig;
use thpsim_kernel::mm::vmf;
use thpsim_kernel::mmap::MapFlags;
use thpsim_kernel::page_alloc::MigrateType;
use thpsim_kernel::types::{AccessKind, AccessPattern, Advice, Prot};
use thpsim_kernel::userfaultfd::Features;
use thpsim_kernel::{Kernel, KernelConfig};

const BASE: u64 = 0x7f00_0000_0000;
const M2: u64 = 2 << 20;
const K4: u64 = 4096;
/// The mapping: 16 PMD slots.
const LEN: u64 = 16 * M2;
const PAGES: u64 = LEN / K4;

fn state(k: &Kernel, pids: &[u32]) -> String {
    let mut s = format!("{:?}\n", k.counters());
    for &pid in pids {
        if k.task(pid).is_none() {
            continue;
        }
        s += &format!(
            "{pid}: {:?}\n{:?}\n{:?}\n{:?}\n",
            k.task(pid).map(|t| (t.minflt, t.majflt)),
            k.page_map(pid, BASE, BASE + LEN),
            k.smaps(pid, BASE, BASE + LEN),
            k.pte_frames(pid, BASE, BASE + LEN),
        );
    }
    s
}

#[derive(Clone, Debug)]
struct Setup {
    /// MiB of memory (a multiple of 4).
    memory_mib: u64,
    /// Background allocations: pages, order, scatter (0: from the allocator).
    kalloc: (u64, u8, u64),
    /// `enabled` (PMD THP) and `hugepages-64kB.enabled`.
    thp: &'static str,
    mthp: &'static str,
    /// A memcg limit in pages.
    memcg: Option<u64>,
    uffd: bool,
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        prop_oneof![
            Just(16u64),
            Just(40),
            Just(64),
            Just(256),
            Just(4200 + 4 * 8)
        ],
        (
            0u64..12_000,
            0u8..4,
            prop_oneof![Just(0u64), Just(1), Just(3)],
        ),
        prop_oneof![4 => Just("never"), 1 => Just("madvise"), 1 => Just("always")],
        prop_oneof![4 => Just("never"), 1 => Just("always")],
        prop_oneof![4 => Just(None), 1 => (512u64..20_000).prop_map(Some)],
        prop_oneof![4 => Just(false), 1 => Just(true)],
    )
        .prop_map(|(memory_mib, kalloc, thp, mthp, memcg, uffd)| Setup {
            memory_mib,
            kalloc,
            thp,
            mthp,
            memcg,
            uffd,
        })
}

#[derive(Clone, Debug)]
enum Pre {
    Touch { page: u64, n: u64, write: bool },
    Munmap { page: u64, n: u64 },
    Dontneed { page: u64, n: u64 },
    Mprotect { page: u64, n: u64, prot: Prot },
    Hugepage { page: u64, n: u64 },
    UffdMissing { page: u64, n: u64 },
    Fork,
}

fn pre() -> impl Strategy<Value = Pre> {
    let page = 0..PAGES;
    let n = prop_oneof![1u64..8, 1u64..600, Just(512)];
    prop_oneof![
        4 => (page.clone(), n.clone(), any::<bool>()).prop_map(|(page, n, write)| Pre::Touch { page, n, write }),
        2 => (page.clone(), n.clone()).prop_map(|(page, n)| Pre::Munmap { page, n }),
        2 => (page.clone(), n.clone()).prop_map(|(page, n)| Pre::Dontneed { page, n }),
        1 => (page.clone(), n.clone(), prop_oneof![Just(Prot::R), Just(Prot::NONE), Just(Prot::RW)])
            .prop_map(|(page, n, prot)| Pre::Mprotect { page, n, prot }),
        1 => (page.clone(), n.clone()).prop_map(|(page, n)| Pre::Hugepage { page, n }),
        1 => (page, n).prop_map(|(page, n)| Pre::UffdMissing { page, n }),
        1 => Just(Pre::Fork),
    ]
}

/// The operation compared: an `access_seq`, a populate advice, MAP_POPULATE, or mlock.
#[derive(Clone, Debug)]
enum Main {
    Seq {
        page: u64,
        n: u64,
        stride: u64,
        pattern: AccessPattern,
    },
    Populate {
        page: u64,
        n: u64,
        write: bool,
    },
    MapPopulate {
        page: u64,
        n: u64,
    },
    Mlock {
        page: u64,
        n: u64,
    },
}

fn main_op() -> impl Strategy<Value = Main> {
    let page = 0..PAGES;
    let n = prop_oneof![1u64..16, 1u64..PAGES, Just(PAGES)];
    prop_oneof![
        4 => (page.clone(), n.clone(),
              prop_oneof![Just(K4), Just(K4), Just(1000), Just(3 * K4), Just(5000), Just(M2), Just(64)],
              prop_oneof![Just(AccessPattern::Write), Just(AccessPattern::Read), Just(AccessPattern::ReadWrite)])
            .prop_map(|(page, n, stride, pattern)| Main::Seq { page, n, stride, pattern }),
        3 => (page.clone(), n.clone(), any::<bool>()).prop_map(|(page, n, write)| Main::Populate { page, n, write }),
        1 => (page.clone(), n.clone()).prop_map(|(page, n)| Main::MapPopulate { page, n }),
        1 => (page, n).prop_map(|(page, n)| Main::Mlock { page, n }),
    ]
}

fn range(page: u64, n: u64) -> (u64, u64) {
    let s = BASE + page * K4;
    (s, (n * K4).min(BASE + LEN - s))
}

fn build(s: &Setup) -> (Kernel, u32) {
    let mut cfg = KernelConfig {
        memory: s.memory_mib << 20,
        memcg: s.memcg.map(|p| MemcgConfig {
            limit: p * K4,
            swappiness: 60,
        }),
        ..KernelConfig::default()
    };
    cfg.sysfs.set("enabled", s.thp).unwrap();
    cfg.sysfs.set("hugepages-64kB.enabled", s.mthp).unwrap();
    let mut k = Kernel::new(cfg).unwrap();
    let (pages, order, scatter) = s.kalloc;
    k.kalloc(pages, order, MigrateType::Unmovable, scatter);
    let pid = k.spawn();
    k.mmap(pid, BASE, LEN, Prot::RW, MapFlags::default())
        .unwrap();
    if s.uffd {
        k.uffd_open(pid, Features::default()).unwrap();
    }
    (k, pid)
}

fn run_pre(k: &mut Kernel, pid: u32, pres: &[Pre], pids: &mut Vec<u32>) {
    for p in pres {
        match *p {
            Pre::Touch { page, n, write } => {
                let (s, len) = range(page, n);
                let kind = if write {
                    AccessKind::Write
                } else {
                    AccessKind::Read
                };
                let mut a = s;
                while a < s + len {
                    if k.access(pid, a, kind).is_err() {
                        break;
                    }
                    a += K4;
                }
            }
            Pre::Munmap { page, n } => {
                let (s, len) = range(page, n);
                let _ = k.munmap(pid, s, len);
            }
            Pre::Dontneed { page, n } => {
                let (s, len) = range(page, n);
                let _ = k.madvise(pid, s, len, Advice::Dontneed);
            }
            Pre::Mprotect { page, n, prot } => {
                let (s, len) = range(page, n);
                let _ = k.mprotect(pid, s, len, prot);
            }
            Pre::Hugepage { page, n } => {
                let (s, len) = range(page, n);
                let _ = k.madvise(pid, s, len, Advice::Hugepage);
            }
            Pre::UffdMissing { page, n } => {
                let (s, len) = range(page, n);
                let _ = k.uffd_register(pid, s, len, vmf::UFFD_MISSING);
            }
            Pre::Fork => {
                if let Ok(c) = k.fork(pid) {
                    pids.push(c);
                }
            }
        }
    }
}

fn run_main(k: &mut Kernel, pid: u32, m: &Main) -> String {
    match *m {
        Main::Seq {
            page,
            n,
            stride,
            pattern,
        } => {
            let (s, len) = range(page, n);
            format!("{:?}", k.access_seq(pid, s, s + len, stride, pattern))
        }
        Main::Populate { page, n, write } => {
            let (s, len) = range(page, n);
            let advice = if write {
                Advice::PopulateWrite
            } else {
                Advice::PopulateRead
            };
            format!("{:?}", k.madvise(pid, s, len, advice))
        }
        Main::MapPopulate { page, n } => {
            let (s, len) = range(page, n);
            let _ = k.munmap(pid, s, len);
            let flags = MapFlags {
                populate: true,
                ..MapFlags::default()
            };
            format!("{:?}", k.mmap(pid, s, len, Prot::RW, flags))
        }
        Main::Mlock { page, n } => {
            let (s, len) = range(page, n);
            format!("{:?}", k.mlock(pid, s, len))
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn extent_faults_equal_page_at_a_time(
        s in setup(),
        pres in prop::collection::vec(pre(), 0..8),
        mains in prop::collection::vec(main_op(), 1..4),
        after in (0..PAGES, 1u64..PAGES),
    ) {
        let (k, pid) = build(&s);
        let mut fast = k.clone();
        let mut slow = k;
        slow.set_extent_faults(false);
        let mut pids = vec![pid];
        // The setup itself may take runs (a `Touch` does not, populates in `pres` do not
        // exist): it is run the same way on both.
        run_pre(&mut fast, pid, &pres, &mut pids);
        let mut pids_slow = vec![pid];
        run_pre(&mut slow, pid, &pres, &mut pids_slow);
        prop_assert_eq!(&pids, &pids_slow);
        prop_assert_eq!(state(&fast, &pids), state(&slow, &pids));
        for m in &mains {
            let rf = run_main(&mut fast, pid, m);
            let rs = run_main(&mut slow, pid, m);
            prop_assert_eq!(rf, rs);
            prop_assert_eq!(fast.take_unmodelled(), slow.take_unmodelled());
            prop_assert_eq!(state(&fast, &pids), state(&slow, &pids));
            fast.check_invariants().map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        // The free lists' order: page-at-a-time writes on both allocate the same frames.
        fast.set_extent_faults(false);
        let (a, n) = after;
        let (st, len) = range(a, n);
        let mut x = st;
        while x < st + len {
            let rf = fast.access(pid, x, AccessKind::Write);
            let rs = slow.access(pid, x, AccessKind::Write);
            prop_assert_eq!(rf, rs);
            x += K4;
        }
        prop_assert_eq!(state(&fast, &pids), state(&slow, &pids));
        fast.shrink();
        slow.shrink();
        fast.khugepaged_scan(1);
        slow.khugepaged_scan(1);
        prop_assert_eq!(state(&fast, &pids), state(&slow, &pids));
        // Compaction reads which pages are in movable use and migrates the runs' pages.
        fast.compact_memory();
        slow.compact_memory();
        prop_assert_eq!(state(&fast, &pids), state(&slow, &pids));
        fast.check_invariants().map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
}

/// A fresh 1 GiB write and populate take the fast path and end exactly as page by page: a
/// direct check that runs happen (the allocator hands whole blocks), not only that they
/// would be equal.
#[test]
fn large_runs_equal_page_at_a_time() {
    for populate in [false, true] {
        let mut k = Kernel::new(KernelConfig::default()).unwrap();
        let pid = k.spawn();
        let len = 1 << 30;
        k.mmap(pid, BASE, len, Prot::RW, MapFlags::default())
            .unwrap();
        let mut slow = k.clone();
        slow.set_extent_faults(false);
        for k in [&mut k, &mut slow] {
            if populate {
                k.madvise(pid, BASE, len, Advice::PopulateWrite).unwrap();
            } else {
                k.access_seq(pid, BASE, BASE + len, K4, AccessPattern::Write)
                    .unwrap();
            }
        }
        assert_eq!(k.task(pid).unwrap().minflt, len / K4);
        let st = |k: &Kernel| {
            format!(
                "{:?}\n{:?}\n{:?}",
                k.counters(),
                k.smaps(pid, BASE, BASE + len),
                k.pte_frames(pid, BASE, BASE + len)
            )
        };
        assert_eq!(st(&k), st(&slow));
        k.check_invariants().unwrap();
    }
}
