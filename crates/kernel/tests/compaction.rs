//! The allocator under fragmentation: what each `defrag` mode lets a THP fault do when no
//! free order-9 block exists (`vma_thp_gfp_mask` → `__alloc_pages_slowpath`, mm/huge_memory.c
//! and mm/page_alloc.c of 6.18), what compaction moves, and what cannot move.

use thpsim_kernel::mmap::MapFlags;
use thpsim_kernel::page_alloc::MigrateType;
use thpsim_kernel::types::{AccessKind, Advice, Pid, Prot};
use thpsim_kernel::vmstat::{VmItem, VmStat};
use thpsim_kernel::{profile, Kernel, KernelConfig};

const BASE: u64 = 0x7f00_0000_0000;
const M: u64 = 1 << 20;
const K4: u64 = 4096;

/// 64 MiB (one zone, 32 pageblocks): 56 MiB of order-0 pages (physically in pageblocks
/// 2..30, in order), 1 MiB freed out of every 2 MiB of them, and the free pageblocks taken by
/// unmovable order-9 allocations: 28 MiB free, all in half-pageblocks. Returns the kernel, the process and the counters then.
fn fragmented(knobs: &[(&str, &str)]) -> (Kernel, Pid, VmStat) {
    let mut cfg = KernelConfig {
        memory: 64 * M,
        profile: profile::profile("6.18").unwrap(),
        ..Default::default()
    };
    for (k, v) in knobs {
        cfg.sysfs.set(k, v).unwrap();
    }
    let mut k = Kernel::new(cfg).unwrap();
    let pid = k.spawn();
    k.mmap(pid, BASE, 56 * M, Prot::RW, MapFlags::default())
        .unwrap();
    k.madvise(pid, BASE, 56 * M, Advice::Nohugepage).unwrap();
    for a in (BASE..BASE + 56 * M).step_by(usize::try_from(K4).unwrap()) {
        k.access(pid, a, AccessKind::Write).unwrap();
    }
    for i in 0..28 {
        k.madvise(pid, BASE + 2 * i * M, M, Advice::Dontneed)
            .unwrap();
    }
    // The page tables took pageblock 0; pageblock 1 and the last 4 MiB are free: three
    // order-9 blocks, which three unmovable allocations take.
    assert_eq!(
        k.kalloc(6 * M / K4, 9, MigrateType::Unmovable, 0),
        6 * M / K4
    );
    k.check_invariants().unwrap();
    let vm = k.vmstat.clone();
    (k, pid, vm)
}

/// Maps a 2 MiB-aligned region after the data, optionally MADV_HUGEPAGE, and writes a page.
fn thp_fault(k: &mut Kernel, pid: Pid, madvised: bool) {
    let at = BASE + 64 * M;
    k.mmap(pid, at, 2 * M, Prot::RW, MapFlags::default())
        .unwrap();
    if madvised {
        k.madvise(pid, at, 2 * M, Advice::Hugepage).unwrap();
    }
    k.access(pid, at, AccessKind::Write).unwrap();
    k.check_invariants().unwrap();
}

struct Row {
    defrag: &'static str,
    madvised: bool,
    thp: i64,
    fallback: i64,
    stall: i64,
    success: i64,
    migrated: bool,
    kcompactd_wakes: i64,
}

#[test]
fn each_defrag_mode_decides_whether_the_fault_compacts() {
    let row = |defrag, madvised, compacts: bool, kcompactd_wakes| Row {
        defrag,
        madvised,
        thp: i64::from(compacts),
        fallback: i64::from(!compacts),
        stall: i64::from(compacts),
        success: i64::from(compacts),
        migrated: compacts,
        kcompactd_wakes,
    };
    let rows = [
        // GFP_TRANSHUGE (| __GFP_NORETRY without VM_HUGEPAGE): direct compaction.
        row("always", true, true, 0),
        row("always", false, true, 0),
        // LIGHT | KSWAPD: fail at once, kswapd passes the order to kcompactd.
        row("defer", true, false, 1),
        row("defer", false, false, 1),
        // DIRECT for VM_HUGEPAGE, KSWAPD otherwise.
        row("defer+madvise", true, true, 0),
        row("defer+madvise", false, false, 1),
        // DIRECT for VM_HUGEPAGE, nothing otherwise.
        row("madvise", true, true, 0),
        row("madvise", false, false, 0),
        // LIGHT: neither.
        row("never", true, false, 0),
        row("never", false, false, 0),
    ];
    for r in rows {
        let what = format!("defrag={} madvised={}", r.defrag, r.madvised);
        let (mut k, pid, vm0) = fragmented(&[("enabled", "always"), ("defrag", r.defrag)]);
        thp_fault(&mut k, pid, r.madvised);
        let d = |k: &Kernel, i| k.vmstat.get(i) - vm0.get(i);
        assert_eq!(d(&k, VmItem::ThpFaultAlloc), r.thp, "{what}");
        assert_eq!(d(&k, VmItem::ThpFaultFallback), r.fallback, "{what}");
        assert_eq!(d(&k, VmItem::CompactStall), r.stall, "{what}");
        assert_eq!(d(&k, VmItem::CompactSuccess), r.success, "{what}");
        assert_eq!(d(&k, VmItem::CompactFail), 0, "{what}");
        // One half-used pageblock's 256 pages move into another's free half.
        let moved = d(&k, VmItem::PgmigrateSuccess);
        assert_eq!(moved > 0, r.migrated, "{what}: {moved}");
        if r.migrated {
            assert_eq!(moved, 256, "{what}");
            assert_eq!(d(&k, VmItem::CompactIsolated), 2 * 256, "{what}");
        }
        // kcompactd runs when time passes.
        assert_eq!(d(&k, VmItem::CompactDaemonWake), 0, "{what}");
        k.sleep_ms(1);
        assert_eq!(
            d(&k, VmItem::CompactDaemonWake),
            r.kcompactd_wakes,
            "{what}"
        );
        k.check_invariants().unwrap();
    }
}

#[test]
fn unmovable_pages_in_every_pageblock_defeat_compaction_and_defer_it() {
    // The same host, but an unmovable page sits in every pageblock (kalloc scatter=1)
    // before the data is written: compaction runs, cannot make an order-9 block, and a
    // failed sync compaction defers the next ones (compact_defer_shift).
    let mut cfg = KernelConfig {
        memory: 64 * M,
        profile: profile::profile("6.18").unwrap(),
        ..Default::default()
    };
    cfg.sysfs.set("enabled", "madvise").unwrap();
    let mut k = Kernel::new(cfg).unwrap();
    let pid = k.spawn();
    assert_eq!(k.kalloc(32, 0, MigrateType::Unmovable, 1), 32);
    k.mmap(pid, BASE, 32 * M, Prot::RW, MapFlags::default())
        .unwrap();
    k.madvise(pid, BASE, 32 * M, Advice::Hugepage).unwrap();
    let vm0 = k.vmstat.clone();
    let d = |k: &Kernel, i| k.vmstat.get(i) - vm0.get(i);
    k.access(pid, BASE, AccessKind::Write).unwrap();
    // Two slow-path runs (THISNODE|NORETRY, then the full one), each async compaction,
    // "reclaim", compaction again: the last at sync-light priority, which defers.
    assert_eq!(d(&k, VmItem::ThpFaultFallback), 1);
    assert_eq!(d(&k, VmItem::CompactStall), 4);
    assert_eq!(d(&k, VmItem::CompactFail), 4);
    assert_eq!(d(&k, VmItem::PgmigrateSuccess), 0);
    // The next fault: the first (NORETRY) attempt finds the zone deferred (considered 1 of
    // 2^defer_shift = 2) and gives up, yet a deferred zone counts as a stall; the full
    // attempt compacts async and sync-light (deferring further): 3 more stalls.
    k.access(pid, BASE + 2 * M, AccessKind::Write).unwrap();
    assert_eq!(d(&k, VmItem::ThpFaultFallback), 2);
    assert_eq!(d(&k, VmItem::CompactStall), 7);
    assert_eq!(d(&k, VmItem::CompactFail), 7);
    let scanned = d(&k, VmItem::CompactMigrateScanned);
    assert!(scanned > 0);
    k.check_invariants().unwrap();
}

#[test]
fn compact_memory_moves_movable_folios_and_leaves_unmovable_ones() {
    let (mut k, _pid, vm0) = fragmented(&[("enabled", "madvise")]);
    let free = k.nr_free_pages();
    k.compact_memory();
    k.check_invariants().unwrap();
    let d = |k: &Kernel, i| k.vmstat.get(i) - vm0.get(i);
    // Half of the 28 half-used pageblocks are emptied into the other half.
    assert_eq!(d(&k, VmItem::PgmigrateSuccess), 14 * 256);
    assert_eq!(k.nr_free_pages(), free);
    assert_eq!(d(&k, VmItem::CompactStall), 0);
    let order9: i64 = k
        .counters()
        .iter()
        .filter(|(n, _)| n == "buddyinfo.DMA32.9" || n == "buddyinfo.DMA32.10")
        .map(|(n, v)| if n.ends_with(".10") { 2 * v } else { *v })
        .sum();
    assert!(order9 >= 14, "{order9}");
}
