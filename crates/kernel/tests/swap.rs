//! Swap and reclaim (swapfile.rs, vmscan.rs, do_swap_page), against what the 6.18 host
//! measured (FINDINGS §23, scenarios/conformance/500–529) and, for large-folio swap-in on a
//! host whose zswap was never enabled, the probe run before anything wrote zswap's switch
//! (a 64 KiB folio comes back whole: mthp.64kB.swpin +1, pswpin +16, one major fault).
//! Invariants after every step.

use thpsim_kernel::mmap::MapFlags;
use thpsim_kernel::observe::Backing;
use thpsim_kernel::types::{AccessKind, Advice, Pid, Prot};
use thpsim_kernel::vmstat::{MthpStat, VmItem};
use thpsim_kernel::{Kernel, KernelConfig};

mod common;
use common::*;

const K64: u64 = 64 << 10;

fn swap_kernel(swap: u64, knobs: &[(&str, &str)], zswap_ever_enabled: bool) -> (Kernel, Pid) {
    let cfg = KernelConfig {
        swap,
        zswap_ever_enabled,
        ..Default::default()
    };
    kernel_with("6.18", knobs, &[], cfg)
}

fn map(k: &mut Kernel, pid: Pid, len: u64) {
    k.mmap(pid, BASE, len, Prot::RW, MapFlags::default())
        .unwrap();
    ok(k);
}

fn pageout(k: &mut Kernel, pid: Pid, addr: u64, len: u64) {
    k.madvise(pid, addr, len, Advice::Pageout).unwrap();
    ok(k);
}

fn counter(k: &Kernel, name: &str) -> i64 {
    k.counters()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no counter {name}"))
        .1
}

fn count(k: &Kernel, pid: Pid, addr: u64, len: u64, b: Backing) -> u64 {
    k.page_map(pid, addr, addr + len)
        .iter()
        .filter(|(x, _)| *x == b)
        .map(|(_, n)| n)
        .sum()
}

/// SwapFree of a 1 GiB device (the header slot excluded) with `used` bytes swapped, in kB.
fn free_kb(used: u64) -> i64 {
    i64::try_from(((1u64 << 30) - 4096 - used) >> 10).unwrap()
}

fn majflt(k: &Kernel, pid: Pid) -> u64 {
    k.task(pid).unwrap().majflt
}

/// One 64 KiB folio per 64 KiB of the range is swapped out whole and, where zswap was never
/// enabled, comes back whole on one fault; after zswap was enabled once, page by page.
#[test]
fn mthp_swap_in_whole_unless_zswap_was_ever_enabled() {
    for ever in [false, true] {
        let (mut k, pid) = swap_kernel(1 << 30, &[("hugepages-64kB.enabled", "always")], ever);
        map(&mut k, pid, 4 * K64);
        touch(&mut k, pid, BASE, 4 * K64, AccessKind::Write);
        pageout(&mut k, pid, BASE, 4 * K64);
        assert_eq!(k.vmstat.mthp_get(4, MthpStat::Swpout), 4);
        assert_eq!(k.vmstat.get(VmItem::Pswpout), 64);
        assert_eq!(counter(&k, "meminfo.SwapFree"), free_kb(4 * K64));
        k.access(pid, BASE + 19 * K4, AccessKind::Write).unwrap();
        ok(&k);
        assert_eq!(majflt(&k, pid), 1);
        let (swpin, pswpin, thp_pte) = if ever { (0, 1, 0) } else { (1, 16, 16) };
        assert_eq!(k.vmstat.mthp_get(4, MthpStat::Swpin), swpin, "ever={ever}");
        assert_eq!(k.vmstat.get(VmItem::Pswpin), pswpin, "ever={ever}");
        assert_eq!(
            count(&k, pid, BASE + K64, K64, Backing::ThpPte { order: 4 }),
            thp_pte,
            "ever={ever}"
        );
        // The write was served by the swap-in itself (the PTE came back writable and dirty).
        let before = k.task(pid).unwrap().minflt;
        k.access(pid, BASE + 19 * K4, AccessKind::Write).unwrap();
        assert_eq!(k.task(pid).unwrap().minflt, before);
    }
}

/// Pages swapped out one by one sit at slots 1.. (slot 0 is the header): a 64 KiB block at
/// address offset 0 starts at slot 1, which is not aligned like the address
/// (thp_swap_suitable_orders), so even with 64 KiB enabled it comes back page by page. (From
/// mm/memory.c and the cluster allocator; the host of FINDINGS §23 cannot show it any more,
/// its zswap having been enabled once.)
#[test]
fn order0_slots_misaligned_for_mthp_swap_in() {
    let (mut k, pid) = swap_kernel(1 << 30, &[], false);
    map(&mut k, pid, K64);
    touch(&mut k, pid, BASE, K64, AccessKind::Write);
    pageout(&mut k, pid, BASE, K64);
    k.sysfs.set("hugepages-64kB.enabled", "always").unwrap();
    k.access(pid, BASE, AccessKind::Read).unwrap();
    ok(&k);
    assert_eq!(k.vmstat.mthp_get(4, MthpStat::Swpin), 0);
    assert_eq!(k.vmstat.get(VmItem::Pswpin), 1);
    assert_eq!(count(&k, pid, BASE, K64, Backing::Swap), 15);
}

/// Two clusters, the first holding the header: the first THP takes the free one whole, the
/// second is split and fills the first cluster's 511 free slots; one page stays. Freeing the
/// first THP's slots gives the free cluster back to a THP.
#[test]
fn thp_needs_a_free_cluster() {
    let (mut k, pid) = swap_kernel(4 << 20, &[], false);
    map(&mut k, pid, 3 * M2);
    k.madvise(pid, BASE, 3 * M2, Advice::Hugepage).unwrap();
    touch(&mut k, pid, BASE, 3 * M2, AccessKind::Write);
    pageout(&mut k, pid, BASE, M2);
    assert_eq!(k.vmstat.get(VmItem::ThpSwpout), 1);
    pageout(&mut k, pid, BASE + M2, M2);
    assert_eq!(k.vmstat.get(VmItem::ThpSwpout), 1);
    assert_eq!(k.vmstat.get(VmItem::ThpSwpoutFallback), 1);
    assert_eq!(k.vmstat.mthp_get(9, MthpStat::SwpoutFallback), 1);
    assert_eq!(k.vmstat.get(VmItem::Pswpout), 512 + 511);
    assert_eq!(count(&k, pid, BASE + M2, M2, Backing::Anon), 1);
    assert_eq!(counter(&k, "meminfo.SwapFree"), 0);
    k.munmap(pid, BASE, M2).unwrap();
    ok(&k);
    pageout(&mut k, pid, BASE + 2 * M2, M2);
    assert_eq!(k.vmstat.get(VmItem::ThpSwpout), 2);
}

/// Without a swap device every large folio MADV_PAGEOUT isolates is split for the fallback
/// and stays mapped (the host's boot state: no swap).
#[test]
fn no_swap_splits_large_folios() {
    let (mut k, pid) = kernel("6.18", &[("hugepages-64kB.enabled", "always")], &[]);
    map(&mut k, pid, M2 + K64);
    touch(&mut k, pid, BASE, M2 + K64, AccessKind::Write);
    pageout(&mut k, pid, BASE, M2 + K64);
    assert_eq!(k.vmstat.mthp_get(4, MthpStat::SwpoutFallback), 33);
    assert_eq!(k.vmstat.mthp_get(4, MthpStat::Split), 33);
    assert_eq!(k.vmstat.get(VmItem::ThpSwpoutFallback), 0);
    assert_eq!(count(&k, pid, BASE, M2 + K64, Backing::Anon), 528);
    assert_eq!(k.vmstat.get(VmItem::Pswpout), 0);
}

/// fork shares the slots (SwapPss halves); the child's read goes through the swap cache and
/// leaves the folio there; the parent's read of it is minor; the parent's write after the
/// child exited reuses the page once its swap is freed. Without readahead (page-cluster 0).
#[test]
fn fork_shares_slots_through_the_swap_cache() {
    let (mut k, pid) = swap_kernel(1 << 30, &[("vm.page-cluster", "0")], false);
    map(&mut k, pid, K64);
    touch(&mut k, pid, BASE, K64, AccessKind::Write);
    pageout(&mut k, pid, BASE, K64);
    let child = k.fork(pid).unwrap();
    ok(&k);
    let sm = k.smaps(pid, BASE, BASE + K64);
    assert_eq!((sm.swap, sm.swap_pss), (64, 32));
    k.access(child, BASE, AccessKind::Read).unwrap();
    ok(&k);
    assert_eq!(majflt(&k, child), 1);
    assert_eq!(counter(&k, "meminfo.SwapCached"), 4);
    let before = k.task(pid).unwrap().minflt;
    k.access(pid, BASE, AccessKind::Read).unwrap();
    ok(&k);
    assert_eq!(majflt(&k, pid), 0);
    assert_eq!(k.task(pid).unwrap().minflt, before + 1);
    assert_eq!(counter(&k, "meminfo.SwapFree"), free_kb(K64));
    k.exit(child);
    ok(&k);
    k.access(pid, BASE, AccessKind::Write).unwrap();
    ok(&k);
    assert_eq!(k.vmstat.get(VmItem::Pgreuse), 1);
    assert_eq!(counter(&k, "meminfo.SwapCached"), 0);
}

/// khugepaged: 65 swap entries exceed max_ptes_swap 64 (thp_scan_exceed_swap_pte); 64 are
/// swapped in (pswpin, slots freed, no fault charged to the task) and collapsed.
#[test]
fn khugepaged_max_ptes_swap() {
    for (n, collapsed) in [(65u64, false), (64, true)] {
        let (mut k, pid) = swap_kernel(1 << 30, &[("khugepaged.max_ptes_none", "511")], false);
        map(&mut k, pid, M2 + K64);
        touch(&mut k, pid, BASE, M2, AccessKind::Write);
        pageout(&mut k, pid, BASE, n * K4);
        k.madvise(pid, BASE, M2, Advice::Hugepage).unwrap();
        k.khugepaged_scan(1);
        ok(&k);
        assert_eq!(
            k.vmstat.get(VmItem::ThpScanExceedSwapPte),
            i64::from(!collapsed)
        );
        assert_eq!(k.vmstat.get(VmItem::ThpCollapseAlloc), i64::from(collapsed));
        assert_eq!(k.vmstat.get(VmItem::Pswpin), if collapsed { 64 } else { 0 });
        assert_eq!(majflt(&k, pid), 0);
        assert_eq!(
            count(&k, pid, BASE, M2, Backing::ThpPmd),
            if collapsed { 512 } else { 0 }
        );
    }
}

/// With swap entries in the range khugepaged wants 256 referenced PTEs: 300 swapped and 212
/// present pages are not collapsed although max_ptes_swap allows 511; MADV_COLLAPSE does it.
#[test]
fn khugepaged_swapin_needs_half_referenced() {
    let (mut k, pid) = swap_kernel(
        1 << 30,
        &[
            ("khugepaged.max_ptes_none", "511"),
            ("khugepaged.max_ptes_swap", "511"),
        ],
        false,
    );
    map(&mut k, pid, M2 + K64);
    touch(&mut k, pid, BASE, M2, AccessKind::Write);
    pageout(&mut k, pid, BASE, 300 * K4);
    k.madvise(pid, BASE, M2, Advice::Hugepage).unwrap();
    k.khugepaged_scan(1);
    ok(&k);
    assert_eq!(k.vmstat.get(VmItem::ThpCollapseAlloc), 0);
    assert_eq!(k.vmstat.get(VmItem::Pswpin), 0);
    k.madvise(pid, BASE, M2, Advice::Collapse).unwrap();
    ok(&k);
    assert_eq!(k.vmstat.get(VmItem::Pswpin), 300);
    assert_eq!(count(&k, pid, BASE, M2, Backing::ThpPmd), 512);
}

/// Shmem swap-in (FINDINGS §32): a 64 KiB memfd folio written out whole comes back whole on
/// zram while zswap was never enabled (`shmem_swap_alloc_folio` at the swap entry's order:
/// `mthp.64kB.swpin` 1, `pswpin` 16, every slot freed), and one page at a time once it was
/// (the entry split, 15 pages still swapped, as the 6.18 host shows). Either way one major
/// fault, and no PTE in the mm ever holds a swap entry.
#[test]
fn shmem_mthp_swapin_order_follows_zswap() {
    for ever in [false, true] {
        let (mut k, pid) =
            swap_kernel(1 << 30, &[("hugepages-64kB.shmem_enabled", "always")], ever);
        let ino = k.shmem_new_inode(K64, None, false);
        let shared = MapFlags {
            shared: true,
            ..MapFlags::default()
        };
        k.mmap_shmem(pid, BASE, K64, Prot::RW, shared, (ino, 0))
            .unwrap();
        k.access(pid, BASE, AccessKind::Write).unwrap();
        ok(&k);
        pageout(&mut k, pid, BASE, K64);
        assert_eq!(k.vmstat.mthp_get(4, MthpStat::Swpout), 1);
        assert_eq!(count(&k, pid, BASE, K64, Backing::Swap), 0, "ever={ever}");
        assert_eq!(k.smaps(pid, BASE, BASE + K64).swap, 64);
        assert_eq!(counter(&k, "meminfo.SwapFree"), free_kb(K64));
        k.access(pid, BASE + 4096, AccessKind::Read).unwrap();
        ok(&k);
        assert_eq!(majflt(&k, pid), 1);
        let (swpin, pswpin, left) = if ever { (0, 1, 60) } else { (1, 16, 0) };
        assert_eq!(k.vmstat.mthp_get(4, MthpStat::Swpin), swpin, "ever={ever}");
        assert_eq!(k.vmstat.get(VmItem::Pswpin), pswpin, "ever={ever}");
        assert_eq!(k.smaps(pid, BASE, BASE + K64).swap, left, "ever={ever}");
        assert_eq!(counter(&k, "meminfo.SwapFree"), free_kb(left << 10));
        // Truncation frees what is left.
        k.shmem_truncate(ino, 0).unwrap();
        ok(&k);
        assert_eq!(counter(&k, "meminfo.SwapFree"), free_kb(0));
        assert_eq!(k.object_stat(ino).0, Some(0));
    }
}

/// Reads of one page by `pid` at `off` into the range, with the deltas of
/// (pswpin, swap_ra, swap_ra_hit, majflt) it caused.
fn read_deltas(k: &mut Kernel, pid: Pid, off: u64) -> (i64, i64, i64, u64) {
    let before = (
        k.vmstat.get(VmItem::Pswpin),
        k.vmstat.get(VmItem::SwapRa),
        k.vmstat.get(VmItem::SwapRaHit),
        majflt(k, pid),
    );
    k.access(pid, BASE + off, AccessKind::Read).unwrap();
    ok(k);
    (
        k.vmstat.get(VmItem::Pswpin) - before.0,
        k.vmstat.get(VmItem::SwapRa) - before.1,
        k.vmstat.get(VmItem::SwapRaHit) - before.2,
        majflt(k, pid) - before.3,
    )
}

/// VMA readahead (`swap_vma_ra_win`, `__swapin_nr_pages`), the cases of conformance 801
/// page by page: a new VMA reads 8 pages centred on the first miss (a none PTE in the
/// window is skipped); each hit adds one to the VMA's hits; a miss right after the last
/// fault reads hits + 2 rounded up to a power of two from the fault on, at most 32 whatever
/// page-cluster says; clipped at the PMD's end; no hits but adjacent: half the last window.
#[test]
fn vma_readahead_window_follows_the_hits() {
    let (mut k, pid) = swap_kernel(1 << 30, &[("vm.page-cluster", "7")], false);
    let len = 4u64 << 20;
    map(&mut k, pid, len);
    touch(&mut k, pid, BASE, len, AccessKind::Write);
    pageout(&mut k, pid, BASE, len);
    k.madvise(pid, BASE + (1 << 20), K4, Advice::Dontneed)
        .unwrap();
    let child = k.fork(pid).unwrap();
    ok(&k);
    let kb = |n: u64| n << 10;
    // (offset, pswpin, swap_ra, swap_ra_hit, majflt)
    let table: &[(u64, i64, i64, i64, u64)] = &[
        (kb(1028), 7, 6, 0, 1),
        (kb(1032), 0, 0, 1, 0),
        (kb(1036), 0, 0, 1, 0),
        (kb(1040), 0, 0, 1, 0),
        (kb(1044), 0, 0, 1, 0),
        (kb(1048), 8, 7, 0, 1),
    ];
    for &(off, pswpin, ra, hit, maj) in table {
        assert_eq!(
            read_deltas(&mut k, child, off),
            (pswpin, ra, hit, maj),
            "at {off:#x}"
        );
    }
    for off in (kb(1052)..kb(1080)).step_by(4096) {
        assert_eq!(
            read_deltas(&mut k, child, off),
            (0, 0, 1, 0),
            "hit at {off:#x}"
        );
    }
    // 7 hits: 16 pages; then 15 hits: 32, the ceiling.
    assert_eq!(read_deltas(&mut k, child, kb(1080)), (16, 15, 0, 1));
    for off in (kb(1084)..kb(1144)).step_by(4096) {
        read_deltas(&mut k, child, off);
    }
    assert_eq!(read_deltas(&mut k, child, kb(1144)), (32, 31, 0, 1));
    for off in (kb(1148)..kb(1272)).step_by(4096) {
        read_deltas(&mut k, child, off);
    }
    // Far away, 31 hits: 32 centred (15 before), cut at the PMD's end.
    assert_eq!(read_deltas(&mut k, child, kb(2044)), (16, 15, 0, 1));
    // Next to it, no hits: 2, raised to half the last window, from the fault.
    assert_eq!(read_deltas(&mut k, child, kb(2048)), (16, 15, 0, 1));
    // page-cluster 0: one page, whatever the VMA's state.
    k.write_sysfs("vm.page-cluster", "0").unwrap();
    assert_eq!(read_deltas(&mut k, child, kb(3000)), (1, 0, 0, 1));
}

/// Offset readahead (`swap_cluster_readahead`) from the kernel's boot state
/// (`swapin_readahead_hits` 4): the first miss reads its aligned block of 8 slots; with no
/// hits and no adjacent offset the next one reads half the last window (4), then 2, then 1.
#[test]
fn cluster_readahead_starts_from_the_boot_state() {
    let (mut k, pid) = swap_kernel(
        1 << 30,
        &[("vm.page-cluster", "3"), ("swap.vma_ra_enabled", "false")],
        false,
    );
    let len = 4u64 << 20;
    map(&mut k, pid, len);
    touch(&mut k, pid, BASE, len, AccessKind::Write);
    pageout(&mut k, pid, BASE, len);
    let child = k.fork(pid).unwrap();
    ok(&k);
    let mut got = vec![];
    for i in 0..5u64 {
        got.push(read_deltas(&mut k, child, i * (256 << 10) + (64 << 10)).0);
    }
    assert_eq!(got, vec![8, 4, 2, 1, 1]);
}
