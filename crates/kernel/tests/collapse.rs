//! khugepaged, MADV_COLLAPSE, the deferred-split/underused shrinker and MADV_FREE against the
//! behaviour measured on the 6.18 host (scenarios/conformance 93–115, 150–152, FINDINGS.md).

use thpsim_kernel::errno::Errno;
use thpsim_kernel::mmap::MapFlags;
use thpsim_kernel::observe::Backing;
use thpsim_kernel::types::{AccessKind, Advice, Pid, Prot};
use thpsim_kernel::vmstat::{MthpStat, VmItem};
use thpsim_kernel::Kernel;

mod common;
use common::*;

fn v(k: &Kernel, i: VmItem) -> i64 {
    k.vmstat.get(i)
}

/// 512 order-0 pages in an un-advised VMA (the usual state before MADV_HUGEPAGE/COLLAPSE).
fn order0_region(k: &mut Kernel, pid: Pid, pages: u64) {
    k.mmap(pid, BASE, M2, Prot::RW, MapFlags::default())
        .unwrap();
    touch(k, pid, BASE, pages * K4, AccessKind::Write);
}

#[test]
fn madvise_collapse_table() {
    // 512 order-0 pages → collapsed; thp_collapse_alloc +1; pages_collapsed unchanged.
    let (mut k, pid) = kernel("6.18", &[], &[]);
    order0_region(&mut k, pid, 512);
    k.madvise(pid, BASE, M2, Advice::Collapse).unwrap();
    ok(&k);
    assert_eq!(v(&k, VmItem::ThpCollapseAlloc), 1);
    assert_eq!(k.vmstat.pages_collapsed, 0);
    assert_eq!(
        k.page_map(pid, BASE, BASE + M2),
        vec![(Backing::ThpPmd, 512)]
    );
    // Already a PMD: 0, nothing changes.
    k.madvise(pid, BASE, M2, Advice::Collapse).unwrap();
    assert_eq!(v(&k, VmItem::ThpCollapseAlloc), 1);

    // 1 page + 511 none → collapsed, Rss 4 kB → 2048 kB.
    let (mut k, pid) = kernel("6.18", &[], &[]);
    order0_region(&mut k, pid, 1);
    k.madvise(pid, BASE, M2, Advice::Collapse).unwrap();
    ok(&k);
    assert_eq!(k.smaps(pid, BASE, BASE + M2).field("Rss"), Some(2048));

    // Never touched, or only zero PTEs → EINVAL (no anon_vma).
    let (mut k, pid) = kernel("6.18", &[], &[]);
    k.mmap(pid, BASE, M2, Prot::RW, MapFlags::default())
        .unwrap();
    assert_eq!(
        k.madvise(pid, BASE, M2, Advice::Collapse),
        Err(Errno::EINVAL)
    );
    touch(&mut k, pid, BASE, M2, AccessKind::Read);
    assert_eq!(
        k.madvise(pid, BASE, M2, Advice::Collapse),
        Err(Errno::EINVAL)
    );

    // NOHUGEPAGE VMA, prctl completely → EINVAL.
    let (mut k, pid) = kernel("6.18", &[], &[]);
    order0_region(&mut k, pid, 512);
    k.madvise(pid, BASE, M2, Advice::Nohugepage).unwrap();
    assert_eq!(
        k.madvise(pid, BASE, M2, Advice::Collapse),
        Err(Errno::EINVAL)
    );
    let (mut k, pid) = kernel("6.18", &[], &[]);
    order0_region(&mut k, pid, 512);
    k.prctl_set_thp_disable(pid, true, 0).unwrap();
    assert_eq!(
        k.madvise(pid, BASE, M2, Advice::Collapse),
        Err(Errno::EINVAL)
    );

    // Huge zero PMD: 0, nothing changes.
    let (mut k, pid) = kernel("6.18", &[], &[]);
    k.mmap(pid, BASE, M2, Prot::RW, MapFlags::default())
        .unwrap();
    k.madvise(pid, BASE, M2, Advice::Hugepage).unwrap();
    touch(&mut k, pid, BASE, M2, AccessKind::Read);
    k.madvise(pid, BASE, M2, Advice::Collapse).unwrap();
    assert_eq!(
        k.page_map(pid, BASE, BASE + M2),
        vec![(Backing::HugeZero, 512)]
    );
    assert_eq!(v(&k, VmItem::ThpCollapseAlloc), 0);

    // Populated then mprotect(PROT_READ): collapsed (6.18 dropped the writable-PTE rule).
    let (mut k, pid) = kernel("6.18", &[], &[]);
    order0_region(&mut k, pid, 512);
    k.mprotect(pid, BASE, M2, Prot::R).unwrap();
    k.madvise(pid, BASE, M2, Advice::Collapse).unwrap();
    ok(&k);
    assert_eq!(
        k.page_map(pid, BASE, BASE + M2),
        vec![(Backing::ThpPmd, 512)]
    );

    // Shared with a fork child: collapsed (shared limit ignored).
    let (mut k, pid) = kernel("6.18", &[], &[]);
    order0_region(&mut k, pid, 512);
    let _child = k.fork(pid).unwrap();
    k.madvise(pid, BASE, M2, Advice::Collapse).unwrap();
    ok(&k);
    assert_eq!(
        k.page_map(pid, BASE, BASE + M2),
        vec![(Backing::ThpPmd, 512)]
    );

    // 32 × 64K mTHP → one PMD THP.
    let (mut k, pid) = kernel("6.18", &[("hugepages-64kB.enabled", "always")], &[]);
    order0_region(&mut k, pid, 512);
    k.madvise(pid, BASE, M2, Advice::Collapse).unwrap();
    ok(&k);
    assert_eq!(
        k.page_map(pid, BASE, BASE + M2),
        vec![(Backing::ThpPmd, 512)]
    );
    assert_eq!(k.vmstat.mthp_get(4, MthpStat::NrAnon), 0);
}

#[test]
fn collapse_of_pte_mapped_thp_copy_vs_inplace() {
    for (collapse, allocs, inplace) in [("copy", 1, 0), ("inplace", 0, 1)] {
        let (mut k, pid) = kernel("6.18", &[], &[("collapse", collapse)]);
        k.mmap(pid, BASE, M2, Prot::RW, MapFlags::default())
            .unwrap();
        k.madvise(pid, BASE, M2, Advice::Hugepage).unwrap();
        touch(&mut k, pid, BASE, M2, AccessKind::Write);
        // PTE-map it: mprotect a page away and back (the VMA re-merges).
        k.mprotect(pid, BASE + K4, K4, Prot::R).unwrap();
        k.mprotect(pid, BASE + K4, K4, Prot::RW).unwrap();
        ok(&k);
        assert_eq!(
            k.page_map(pid, BASE, BASE + M2),
            vec![(Backing::ThpPte { order: 9 }, 512)]
        );
        let a0 = v(&k, VmItem::ThpCollapseAlloc);
        k.madvise(pid, BASE, M2, Advice::Collapse).unwrap();
        ok(&k);
        assert_eq!(v(&k, VmItem::ThpCollapseAlloc) - a0, allocs, "{collapse}");
        assert_eq!(v(&k, VmItem::SimCollapseInplace), inplace, "{collapse}");
        assert_eq!(
            v(&k, VmItem::SimCollapseCopiedPages),
            512 * allocs,
            "{collapse}"
        );
        assert_eq!(
            k.page_map(pid, BASE, BASE + M2),
            vec![(Backing::ThpPmd, 512)]
        );
        assert_eq!(k.vmstat.mthp_get(9, MthpStat::NrAnon), 1);
    }
}

#[test]
fn khugepaged_collapses_on_schedule() {
    let (mut k, pid) = kernel("6.18", &[], &[]);
    order0_region(&mut k, pid, 512);
    k.madvise(pid, BASE, M2, Advice::Hugepage).unwrap();
    ok(&k);
    // Ops take no simulated time: nothing happens until time passes.
    assert_eq!(v(&k, VmItem::ThpCollapseAlloc), 0);
    k.sleep_ms(100);
    ok(&k);
    assert_eq!(v(&k, VmItem::ThpCollapseAlloc), 1);
    assert_eq!(k.vmstat.pages_collapsed, 1);
    assert_eq!(k.vmstat.full_scans, 1);
    assert_eq!(
        k.page_map(pid, BASE, BASE + M2),
        vec![(Backing::ThpPmd, 512)]
    );
}

#[test]
fn khugepaged_limits() {
    // 512 zero PTEs in a VMA with an anon_vma: exceed_none once per pass, never collapsed.
    let (mut k, pid) = kernel("6.18", &[], &[]);
    k.mmap(pid, BASE, M2, Prot::RW, MapFlags::default())
        .unwrap();
    k.mmap(pid, BASE + M2, M2, Prot::RW, MapFlags::default())
        .unwrap();
    touch(&mut k, pid, BASE + M2, K4, AccessKind::Write); // gives the merged VMA an anon_vma
    k.madvise(pid, BASE, M2, Advice::Dontneed).unwrap();
    touch(&mut k, pid, BASE, M2, AccessKind::Read);
    k.madvise(pid, BASE, 2 * M2, Advice::Hugepage).unwrap();
    k.khugepaged_scan(3);
    ok(&k);
    assert_eq!(v(&k, VmItem::ThpScanExceedNonePte), 3);
    assert_eq!(k.page_map(pid, BASE, BASE + M2), vec![(Backing::Zero, 512)]);
    assert_eq!(
        k.page_map(pid, BASE + M2, BASE + 2 * M2),
        vec![(Backing::ThpPmd, 512)]
    );

    // max_ptes_none=0 with 256 pages: exceed_none.
    let (mut k, pid) = kernel("6.18", &[("khugepaged.max_ptes_none", "0")], &[]);
    order0_region(&mut k, pid, 256);
    k.madvise(pid, BASE, M2, Advice::Hugepage).unwrap();
    k.khugepaged_scan(1);
    assert_eq!(v(&k, VmItem::ThpScanExceedNonePte), 1);
    assert_eq!(v(&k, VmItem::ThpCollapseAlloc), 0);

    // Shared with a live child: exceed_shared, not collapsed.
    let (mut k, pid) = kernel("6.18", &[], &[]);
    order0_region(&mut k, pid, 512);
    k.madvise(pid, BASE, M2, Advice::Hugepage).unwrap();
    let _child = k.fork(pid).unwrap();
    k.khugepaged_scan(1);
    ok(&k);
    assert!(v(&k, VmItem::ThpScanExceedSharePte) >= 1);
    assert_eq!(v(&k, VmItem::ThpCollapseAlloc), 0);
}

#[test]
fn khugepaged_budget_is_eight_ranges_per_pass() {
    let (mut k, pid) = kernel("6.18", &[], &[]);
    let size = 32 * M2;
    k.mmap(pid, BASE, size, Prot::RW, MapFlags::default())
        .unwrap();
    let mut a = BASE;
    while a < BASE + size {
        k.access(pid, a, AccessKind::Write).unwrap();
        a += M2;
    }
    k.madvise(pid, BASE, size, Advice::Hugepage).unwrap();
    k.khugepaged_scan(1);
    ok(&k);
    // pages_to_scan 4096: +1 for the mm, +512 per range → 7 ranges then the 8th crosses 4096.
    assert_eq!(k.vmstat.pages_collapsed, 8);
    k.sleep_ms(30_000);
    ok(&k);
    assert_eq!(k.vmstat.pages_collapsed, 32);
    assert_eq!(k.vmstat.full_scans, 1);
}

#[test]
fn deferred_split_shrinker_table() {
    // max_ptes_none 511: a fully mapped THP with 1 non-zero page is left alone.
    let (mut k, pid) = kernel("6.18", &[], &[]);
    k.mmap(pid, BASE, M2, Prot::RW, MapFlags::default())
        .unwrap();
    k.madvise(pid, BASE, M2, Advice::Hugepage).unwrap();
    touch(&mut k, pid, BASE, K4, AccessKind::Write);
    k.shrink();
    ok(&k);
    assert_eq!(v(&k, VmItem::ThpSplitPage), 0);
    assert_eq!(
        k.deferred_split_len(),
        0,
        "dropped from the queue, not split"
    );

    // max_ptes_none 409: 1 non-zero page → split, 511 zero PTEs + 1 page, Rss 4 kB.
    for (nonzero, split) in [(1u64, true), (102, true), (103, false)] {
        let (mut k, pid) = kernel("6.18", &[("khugepaged.max_ptes_none", "409")], &[]);
        k.mmap(pid, BASE, M2, Prot::RW, MapFlags::default())
            .unwrap();
        k.madvise(pid, BASE, M2, Advice::Hugepage).unwrap();
        touch(&mut k, pid, BASE, nonzero * K4, AccessKind::Write);
        k.shrink();
        ok(&k);
        assert_eq!(
            v(&k, VmItem::ThpUnderusedSplitPage),
            i64::from(split),
            "{nonzero}"
        );
        assert_eq!(v(&k, VmItem::ThpSplitPage), i64::from(split), "{nonzero}");
        if split {
            assert_eq!(v(&k, VmItem::ThpSplitPmd), 1);
            assert_eq!(
                k.smaps(pid, BASE, BASE + M2).field("Rss"),
                Some(nonzero * 4)
            );
            assert_eq!(
                k.page_map(pid, BASE, BASE + M2),
                vec![(Backing::Anon, nonzero), (Backing::Zero, 512 - nonzero)]
            );
        }
    }

    // Partially mapped (1 page unmapped), 300 non-zero: split without the underused count:
    // 300 pages + 211 zero PTEs + 1 none, Rss 1200 kB.
    let (mut k, pid) = kernel("6.18", &[], &[]);
    k.mmap(pid, BASE, M2, Prot::RW, MapFlags::default())
        .unwrap();
    k.madvise(pid, BASE, M2, Advice::Hugepage).unwrap();
    touch(&mut k, pid, BASE, 300 * K4, AccessKind::Write);
    k.munmap(pid, BASE + M2 - K4, K4).unwrap();
    assert_eq!(v(&k, VmItem::ThpDeferredSplitPage), 1);
    k.shrink();
    ok(&k);
    assert_eq!(v(&k, VmItem::ThpUnderusedSplitPage), 0);
    assert_eq!(v(&k, VmItem::ThpSplitPage), 1);
    assert_eq!(k.vmstat.mthp_get(9, MthpStat::NrAnonPartiallyMapped), 0);
    assert_eq!(k.smaps(pid, BASE, BASE + M2).field("Rss"), Some(1200));
    assert_eq!(
        k.page_map(pid, BASE, BASE + M2 - K4),
        vec![(Backing::Anon, 300), (Backing::Zero, 211)]
    );
}

#[test]
fn hzp_wp_thp_is_queued_on_618_only() {
    for (p, split) in [("6.18", 1), ("6.12", 0)] {
        let (mut k, pid) = kernel(
            p,
            &[("khugepaged.max_ptes_none", "409")],
            &[("hzp_wp_fault", "thp")],
        );
        k.mmap(pid, BASE, M2, Prot::RW, MapFlags::default())
            .unwrap();
        k.madvise(pid, BASE, M2, Advice::Hugepage).unwrap();
        touch(&mut k, pid, BASE, M2, AccessKind::Read);
        touch(&mut k, pid, BASE, K4, AccessKind::Write);
        k.shrink();
        ok(&k);
        assert_eq!(v(&k, VmItem::ThpUnderusedSplitPage), split, "{p}");
    }
}

#[test]
fn madvise_free_part_splits_whole_does_not() {
    let (mut k, pid) = kernel("6.18", &[], &[]);
    k.mmap(pid, BASE, M2, Prot::RW, MapFlags::default())
        .unwrap();
    k.madvise(pid, BASE, M2, Advice::Hugepage).unwrap();
    touch(&mut k, pid, BASE, M2, AccessKind::Write);
    k.madvise(pid, BASE, M2, Advice::Free).unwrap();
    ok(&k);
    assert_eq!(v(&k, VmItem::ThpSplitPmd), 0);
    assert_eq!(
        k.page_map(pid, BASE, BASE + M2),
        vec![(Backing::ThpPmd, 512)]
    );
    k.madvise(pid, BASE + K4, K4, Advice::Free).unwrap();
    ok(&k);
    assert_eq!(v(&k, VmItem::ThpSplitPmd), 1);
    assert_eq!(v(&k, VmItem::ThpSplitPage), 1);
    assert_eq!(k.vmstat.mthp_get(9, MthpStat::Split), 1);
    assert_eq!(k.page_map(pid, BASE, BASE + M2), vec![(Backing::Anon, 512)]);
}

#[test]
fn huge_zero_shrinker_frees_unused_huge_zero_page() {
    let (mut k, pid) = kernel("6.18", &[], &[]);
    k.mmap(pid, BASE, M2, Prot::RW, MapFlags::default())
        .unwrap();
    k.madvise(pid, BASE, M2, Advice::Hugepage).unwrap();
    touch(&mut k, pid, BASE, K4, AccessKind::Read);
    k.shrink();
    assert_eq!(v(&k, VmItem::ThpZeroPageAlloc), 1, "still held by the mm");
    let child = k.fork(pid).unwrap();
    k.exit(child);
    k.exit(pid);
    k.shrink();
    ok(&k);
    let pid = k.spawn();
    k.mmap(pid, BASE, M2, Prot::RW, MapFlags::default())
        .unwrap();
    k.madvise(pid, BASE, M2, Advice::Hugepage).unwrap();
    touch(&mut k, pid, BASE, K4, AccessKind::Read);
    assert_eq!(v(&k, VmItem::ThpZeroPageAlloc), 2);
}

#[test]
fn madvise_cold_part_splits_whole_only_ages() {
    let (mut k, pid) = kernel("6.18", &[], &[]);
    k.mmap(pid, BASE, M2, Prot::RW, MapFlags::default())
        .unwrap();
    k.madvise(pid, BASE, M2, Advice::Hugepage).unwrap();
    touch(&mut k, pid, BASE, M2, AccessKind::Write);
    k.madvise(pid, BASE, M2, Advice::Cold).unwrap();
    ok(&k);
    assert_eq!(v(&k, VmItem::ThpSplitPmd), 0);
    assert_eq!(
        k.page_map(pid, BASE, BASE + M2),
        vec![(Backing::ThpPmd, 512)]
    );
    k.madvise(pid, BASE + K4, K4, Advice::Cold).unwrap();
    ok(&k);
    assert_eq!(v(&k, VmItem::ThpSplitPmd), 1);
    assert_eq!(v(&k, VmItem::ThpSplitPage), 1);
    assert_eq!(k.page_map(pid, BASE, BASE + M2), vec![(Backing::Anon, 512)]);
    // COLD does not make pages lazy-free: they stay dirty.
    assert_eq!(
        k.smaps(pid, BASE, BASE + M2).field("Private_Dirty"),
        Some(2048)
    );
}

#[test]
fn madvise_collapse_range_inside_one_block_is_einval() {
    // madvise_collapse(): hstart > hend wraps the unsigned block count → EINVAL; an empty
    // aligned span (hstart == hend) is 0.
    let (mut k, pid) = kernel("6.18", &[], &[]);
    order0_region(&mut k, pid, 512);
    assert_eq!(
        k.madvise(pid, BASE + 0x10000, 1 << 20, Advice::Collapse),
        Err(Errno::EINVAL)
    );
    assert_eq!(k.madvise(pid, BASE, 1 << 20, Advice::Collapse), Ok(()));
    assert_eq!(
        k.madvise(pid, BASE + (1 << 20), 1 << 20, Advice::Collapse),
        Ok(())
    );
    ok(&k);
    assert_eq!(v(&k, VmItem::ThpCollapseAlloc), 0);
}

#[test]
fn madvise_collapse_stops_at_a_none_pmd_and_at_the_first_failing_vma() {
    // A none PMD entry (SCAN_PMD_NONE) ends the loop: the populated block after it stays.
    let (mut k, pid) = kernel("6.18", &[], &[]);
    k.mmap(pid, BASE, 2 * M2, Prot::RW, MapFlags::default())
        .unwrap();
    touch(&mut k, pid, BASE + M2, M2, AccessKind::Write);
    assert_eq!(
        k.madvise(pid, BASE, 2 * M2, Advice::Collapse),
        Err(Errno::EINVAL)
    );
    assert_eq!(v(&k, VmItem::ThpCollapseAlloc), 0);
    // A refused VMA (MADV_NOHUGEPAGE) first: EINVAL before the next VMA is looked at.
    k.madvise(pid, BASE, M2, Advice::Nohugepage).unwrap();
    assert_eq!(
        k.madvise(pid, BASE, 2 * M2, Advice::Collapse),
        Err(Errno::EINVAL)
    );
    assert_eq!(v(&k, VmItem::ThpCollapseAlloc), 0);
    assert_eq!(k.madvise(pid, BASE + M2, M2, Advice::Collapse), Ok(()));
    ok(&k);
    assert_eq!(v(&k, VmItem::ThpCollapseAlloc), 1);
}

/// `collapse=inplace_migrate` (proposal): a THP subreleased in part (64 KiB DONTNEED) and
/// refaulted in part (48 KiB of order-0 pages) is rebuilt in place: the 12 small pages' data
/// moves back into the old folio (then they are freed), the 4-page hole is zeroed, no order-9
/// allocation. Plain `inplace` refuses and copies as Linux does.
#[test]
fn inplace_migrate_rebuilds_a_subreleased_thp_without_allocating() {
    for (mode, alloc, copied) in [("inplace", 1, 508), ("inplace_migrate", 0, 12)] {
        let (mut k, pid) = kernel("6.18", &[], &[("collapse", mode)]);
        k.mmap(pid, BASE, M2, Prot::RW, MapFlags::default())
            .unwrap();
        k.madvise(pid, BASE, M2, Advice::Hugepage).unwrap();
        touch(&mut k, pid, BASE, M2, AccessKind::Write);
        k.madvise(pid, BASE + M2 / 2, 16 * K4, Advice::Dontneed)
            .unwrap();
        touch(&mut k, pid, BASE + M2 / 2, 12 * K4, AccessKind::Write);
        ok(&k);
        let free = k.nr_free_pages();
        k.madvise(pid, BASE, M2, Advice::Collapse).unwrap();
        ok(&k);
        assert_eq!(v(&k, VmItem::ThpCollapseAlloc), alloc, "{mode}");
        assert_eq!(v(&k, VmItem::SimCollapseCopiedPages), copied, "{mode}");
        assert_eq!(
            k.page_map(pid, BASE, BASE + M2),
            vec![(Backing::ThpPmd, 512)],
            "{mode}"
        );
        assert_eq!(k.vmstat.mthp_get(9, MthpStat::NrAnonPartiallyMapped), 0);
        if alloc == 0 {
            // The 12 small pages go back; the PTE table becomes the PMD's deposit.
            assert_eq!(k.nr_free_pages() - free, 12, "{mode}");
            assert_eq!(v(&k, VmItem::SimCollapseInplace), 1);
            assert!(v(&k, VmItem::SimZeroedPages) >= 4);
        }
    }
}

/// `thp_zeroing=lazy` (proposal): the first write of a MADV_HUGEPAGE range allocates the
/// PMD-sized folio but maps (and zeroes) one page; each other page costs a fault on first
/// touch; the 512th remaps the folio by a PMD in place. Unmapping a mapped page ends the lazy
/// state: later faults get order-0 pages.
#[test]
fn lazy_thp_zeroing_maps_page_by_page_then_by_pmd() {
    let (mut k, pid) = kernel("6.18", &[], &[("thp_zeroing", "lazy")]);
    k.mmap(pid, BASE, 2 * M2, Prot::RW, MapFlags::default())
        .unwrap();
    k.madvise(pid, BASE, 2 * M2, Advice::Hugepage).unwrap();
    k.access(pid, BASE + K4, AccessKind::Write).unwrap();
    ok(&k);
    assert_eq!(v(&k, VmItem::ThpFaultAlloc), 1);
    assert_eq!(v(&k, VmItem::SimZeroedPages), 1);
    assert_eq!(
        k.page_map(pid, BASE, BASE + M2),
        vec![
            (Backing::None, 1),
            (Backing::ThpPte { order: 9 }, 1),
            (Backing::None, 510)
        ]
    );
    touch(&mut k, pid, BASE, M2, AccessKind::Write);
    ok(&k);
    assert_eq!(k.task(pid).unwrap().minflt, 512);
    assert_eq!(v(&k, VmItem::SimZeroedPages), 512);
    assert_eq!(v(&k, VmItem::SimThpLazyRemap), 1);
    assert_eq!(v(&k, VmItem::ThpFaultAlloc), 1);
    assert_eq!(
        k.page_map(pid, BASE, BASE + M2),
        vec![(Backing::ThpPmd, 512)]
    );
    // Second block: one page, then unmap it: the folio is no longer lazy.
    let b = BASE + M2;
    k.access(pid, b + 8 * K4, AccessKind::Write).unwrap();
    k.access(pid, b + 9 * K4, AccessKind::Read).unwrap();
    k.madvise(pid, b + 8 * K4, K4, Advice::Dontneed).unwrap();
    k.access(pid, b + 10 * K4, AccessKind::Write).unwrap();
    ok(&k);
    assert_eq!(
        k.page_map(pid, b + 8 * K4, b + 11 * K4),
        vec![
            (Backing::None, 1),
            (Backing::ThpPte { order: 9 }, 1),
            (Backing::Anon, 1)
        ]
    );
    assert_eq!(v(&k, VmItem::ThpDeferredSplitPage), 1);
}
