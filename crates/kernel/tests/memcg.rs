//! The run's memory cgroup (memcontrol.rs) against what the 6.18 host measured (FINDINGS
//! §33, scenarios/conformance/730–): charges of folios and page tables, the failure path of
//! try_charge_memcg per gfp mask (memory.failcnt), the charge fallbacks, MADV_COLLAPSE's
//! SCAN_CGROUP_CHARGE_FAIL, the memcg OOM killer, and the refusal where limit reclaim would
//! be needed. Invariants after every step.

use thpsim_kernel::errno::{Errno, Signal};
use thpsim_kernel::memcontrol::MemcgConfig;
use thpsim_kernel::mmap::MapFlags;
use thpsim_kernel::types::{AccessKind, Advice, Pid, Prot};
use thpsim_kernel::{Kernel, KernelConfig};

mod common;
use common::*;

fn memcg_kernel(limit: u64, swap: u64, knobs: &[(&str, &str)]) -> (Kernel, Pid) {
    let cfg = KernelConfig {
        swap,
        memcg: Some(MemcgConfig {
            limit,
            swappiness: 60,
        }),
        ..Default::default()
    };
    kernel_with("6.18", knobs, &[], cfg)
}

fn counter(k: &Kernel, name: &str) -> i64 {
    k.counters()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no counter {name}"))
        .1
}

fn map(k: &mut Kernel, pid: Pid, addr: u64, len: u64) {
    k.mmap(pid, addr, len, Prot::RW, MapFlags::default())
        .unwrap();
    ok(k);
}

/// Writes a page at a time; stops at the first signal and returns it.
fn write(k: &mut Kernel, pid: Pid, start: u64, len: u64) -> Result<(), Signal> {
    let mut a = start;
    while a < start + len {
        let r = k.access(pid, a, AccessKind::Write);
        ok(k);
        r?;
        a += K4;
    }
    Ok(())
}

/// A PMD THP fault whose charge does not fit, per defrag mode and MADV_HUGEPAGE: the
/// fallback counters and memory.failcnt as the host counts them (730–733).
#[test]
fn thp_charge_fallback_failcnt_per_gfp() {
    let cases: &[(&str, bool, i64)] = &[
        ("madvise", false, 1),
        ("never", true, 1),
        ("defer", false, 1),
        ("always", false, 2),
        ("always", true, 18),
        ("madvise", true, 18),
        ("defer+madvise", true, 18),
    ];
    for &(defrag, madvised, failcnt) in cases {
        let (mut k, pid) = memcg_kernel(5 << 20, 0, &[("enabled", "always"), ("defrag", defrag)]);
        map(&mut k, pid, BASE, 6 << 20);
        if madvised {
            k.madvise(pid, BASE, 6 << 20, Advice::Hugepage).unwrap();
        }
        write(&mut k, pid, BASE, 4 << 20).unwrap();
        assert_eq!(counter(&k, "vmstat.thp_fault_alloc"), 2, "{defrag}");
        assert_eq!(counter(&k, "memcg.failcnt"), 0, "{defrag}");
        write(&mut k, pid, BASE + (4 << 20), K4).unwrap();
        let what = format!("defrag={defrag} madvised={madvised}");
        assert_eq!(counter(&k, "vmstat.thp_fault_fallback"), 1, "{what}");
        assert_eq!(counter(&k, "vmstat.thp_fault_fallback_charge"), 1, "{what}");
        assert_eq!(
            counter(&k, "mthp.2048kB.anon_fault_fallback_charge"),
            1,
            "{what}"
        );
        assert_eq!(counter(&k, "memcg.failcnt"), failcnt, "{what}");
        assert_eq!(counter(&k, "memcg.rss"), (4 << 20) + 4096, "{what}");
        assert_eq!(counter(&k, "memcg.rss_huge"), 4 << 20, "{what}");
        assert_eq!(counter(&k, "memcg.oom_kill"), 0, "{what}");
    }
}

/// The usage is the charged folios and page tables plus the stock: a first small charge
/// takes a batch of 64 pages, later ones come from the stock.
#[test]
fn usage_counts_the_batch() {
    let (mut k, pid) = memcg_kernel(64 << 20, 0, &[("enabled", "never")]);
    map(&mut k, pid, BASE, 4 << 20);
    write(&mut k, pid, BASE, K4).unwrap();
    // The PTE table (and PMD table) took the batch; the page came from the stock.
    assert_eq!(counter(&k, "memcg.usage"), 64 * 4096);
    write(&mut k, pid, BASE + K4, 61 * K4).unwrap();
    assert_eq!(counter(&k, "memcg.usage"), 64 * 4096);
    write(&mut k, pid, BASE + 62 * K4, 8 * K4).unwrap();
    assert_eq!(counter(&k, "memcg.usage"), 128 * 4096);
    k.munmap(pid, BASE, 4 << 20).unwrap();
    ok(&k);
    // Freed pages go straight back to the page counter; the stock stays.
    assert_eq!(counter(&k, "memcg.rss"), 0);
    assert!(counter(&k, "memcg.usage") < 64 * 4096);
}

/// An order-0 charge that cannot fit: the OOM killer takes the task with the highest
/// badness. 735: three THPs, the fourth falls back, small pages fill the limit, failcnt 37.
#[test]
fn oom_kills_the_largest_task() {
    let (mut k, main) = memcg_kernel(8 << 20, 0, &[("enabled", "always"), ("defrag", "madvise")]);
    map(&mut k, main, BASE, 16 << 20);
    let child = k.fork(main).unwrap();
    ok(&k);
    assert_eq!(write(&mut k, child, BASE, 16 << 20), Err(Signal::Sigkill));
    assert_eq!(k.take_oom_victims(), vec![child]);
    assert_eq!(counter(&k, "memcg.oom_kill"), 1);
    assert_eq!(counter(&k, "memcg.failcnt"), 37);
    assert_eq!(counter(&k, "vmstat.thp_fault_alloc"), 3);
    assert_eq!(counter(&k, "vmstat.thp_fault_fallback_charge"), 1);
    assert_eq!(k.take_unmodelled(), None);
    k.exit(child);
    ok(&k);
    assert_eq!(counter(&k, "memcg.rss"), 0);
}

/// COW copies are charged to the writer's memcg; when they no longer fit, the writer with
/// the most resident pages is killed (738).
#[test]
fn cow_charge_and_oom() {
    let (mut k, main) = memcg_kernel(3 << 20, 0, &[("enabled", "never")]);
    map(&mut k, main, BASE, 1 << 20);
    map(&mut k, main, BASE + (4 << 20), 1 << 20);
    write(&mut k, main, BASE, 1 << 20).unwrap();
    let child = k.fork(main).unwrap();
    ok(&k);
    write(&mut k, child, BASE + (4 << 20), 1 << 20).unwrap();
    let rss = counter(&k, "memcg.rss");
    assert_eq!(rss, 2 << 20);
    assert_eq!(write(&mut k, child, BASE, 1 << 20), Err(Signal::Sigkill));
    assert_eq!(k.take_oom_victims(), vec![child]);
    assert_eq!(counter(&k, "memcg.oom_kill"), 1);
}

/// MADV_COLLAPSE charges the new THP beside the pages it replaces: SCAN_CGROUP_CHARGE_FAIL
/// is EBUSY, after thp_collapse_alloc; GFP_TRANSHUGE retries (failcnt 18), no OOM (736).
#[test]
fn collapse_charge_fail_is_ebusy() {
    let (mut k, pid) = memcg_kernel(3 << 20, 0, &[("enabled", "madvise")]);
    map(&mut k, pid, BASE, 2 << 20);
    write(&mut k, pid, BASE, 2 << 20).unwrap();
    assert_eq!(
        k.madvise(pid, BASE, 2 << 20, Advice::Collapse),
        Err(Errno::EBUSY)
    );
    ok(&k);
    assert_eq!(counter(&k, "vmstat.thp_collapse_alloc"), 1);
    assert_eq!(counter(&k, "memcg.failcnt"), 18);
    assert_eq!(counter(&k, "memcg.oom_kill"), 0);
    assert_eq!(counter(&k, "memcg.rss_huge"), 0);
}

/// The memcg-aware deferred-split shrinker runs in limit reclaim: a partially mapped THP is
/// split and its unmapped half freed, and the charge then fits (739).
#[test]
fn limit_reclaim_splits_a_partially_mapped_thp() {
    let (mut k, pid) = memcg_kernel(4 << 20, 0, &[("enabled", "always"), ("defrag", "madvise")]);
    map(&mut k, pid, BASE, 2 << 20);
    write(&mut k, pid, BASE, 2 << 20).unwrap();
    k.madvise(pid, BASE + (1 << 20), 1 << 20, Advice::Dontneed)
        .unwrap();
    ok(&k);
    map(&mut k, pid, BASE + (4 << 20), 2 << 20);
    write(&mut k, pid, BASE + (4 << 20), 2 << 20).unwrap();
    assert_eq!(counter(&k, "vmstat.thp_fault_fallback_charge"), 1);
    assert_eq!(counter(&k, "vmstat.thp_split_page"), 1);
    assert_eq!(counter(&k, "memcg.oom_kill"), 0);
    assert_eq!(counter(&k, "memcg.rss"), 3 << 20);
    assert_eq!(k.take_unmodelled(), None);
}

/// Where limit reclaim would swap (swap, swappiness > 0, anonymous pages), the model says
/// it does not follow instead of guessing.
#[test]
fn reclaim_to_swap_is_refused() {
    let (mut k, main) = memcg_kernel(4 << 20, 64 << 20, &[("enabled", "never")]);
    map(&mut k, main, BASE, 8 << 20);
    let child = k.fork(main).unwrap();
    let _ = write(&mut k, child, BASE, 8 << 20);
    let why = k.take_unmodelled().expect("refused");
    assert!(why.contains("swapped out"), "{why}");
}

/// A large swap-in whose charge does not fit (`mem_cgroup_swapin_charge_folio`): the 64K
/// folio is dropped, `swpin_fallback_charge` and `swpin_fallback` count, and the fault
/// swaps in one page. (This host had zswap enabled, so it swaps in at order 0 anyway: the
/// path has no host scenario.) Swappiness 0: limit reclaim would not swap, nothing refused.
#[test]
fn swapin_charge_fallback() {
    let cfg = KernelConfig {
        swap: 64 << 20,
        memcg: Some(MemcgConfig {
            limit: 1 << 20,
            swappiness: 0,
        }),
        ..Default::default()
    };
    let knobs = [("enabled", "never"), ("hugepages-64kB.enabled", "always")];
    let (mut k, pid) = kernel_with("6.18", &knobs, &[], cfg);
    map(&mut k, pid, BASE, 64 << 10);
    write(&mut k, pid, BASE, 64 << 10).unwrap();
    k.madvise(pid, BASE, 64 << 10, Advice::Pageout).unwrap();
    ok(&k);
    assert_eq!(counter(&k, "vmstat.pswpout"), 16);
    // Fill the limit with small pages (64K folios where they fit) until 16 pages no longer
    // fit but one does.
    let b = BASE + (2 << 20);
    map(&mut k, pid, b, 1 << 20);
    let page = 4096;
    let mut a = b;
    while counter(&k, "memcg.usage") + 16 * page <= 1 << 20 && a < b + (1 << 20) {
        write(&mut k, pid, a, K4).unwrap();
        a += K4;
    }
    k.access(pid, BASE, AccessKind::Read).unwrap();
    ok(&k);
    assert_eq!(counter(&k, "mthp.64kB.swpin_fallback_charge"), 1);
    assert_eq!(counter(&k, "mthp.64kB.swpin_fallback"), 1);
    assert_eq!(counter(&k, "vmstat.pswpin"), 1);
    assert_eq!(counter(&k, "memcg.oom_kill"), 0);
    assert_eq!(k.take_unmodelled(), None);
}
