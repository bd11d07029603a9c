//! guest_memfd: creation, fallocate and punch, user faults, and the huge-folio proposals as
//! switches (model-only: folio counts, pageblocks taken by unmovable folios, and whether a
//! later anonymous THP fault finds a free pageblock). The 6.18 behaviour is asserted against
//! the host by scenarios/conformance/415–435 (FINDINGS.md §20).

use thpsim_kernel::errno::{Errno, Signal};
use thpsim_kernel::guest_memfd::{GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_MMAP};
use thpsim_kernel::mmap::MapFlags;
use thpsim_kernel::observe::Backing;
use thpsim_kernel::profile::{GmemFallback, GmemPunch};
use thpsim_kernel::shmem::FallocMode;
use thpsim_kernel::types::{AccessKind, AccessPattern, Pid, Prot};
use thpsim_kernel::vmstat::VmItem;
use thpsim_kernel::{Kernel, KernelConfig};

const BASE: u64 = 0x1000_0000_0000;
const M: u64 = 1 << 20;
const SHARED: MapFlags = MapFlags {
    shared: true,
    populate: false,
    fixed: false,
};
const ALLOC: FallocMode = FallocMode {
    keep_size: true,
    punch_hole: false,
};
const PUNCH: FallocMode = FallocMode {
    keep_size: true,
    punch_hole: true,
};
const BOTH: u64 = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;

fn kernel(memory: u64) -> (Kernel, Pid) {
    let mut k = Kernel::new(KernelConfig {
        memory,
        ..KernelConfig::default()
    })
    .unwrap();
    k.write_sysfs("enabled", "always").unwrap();
    let pid = k.spawn();
    (k, pid)
}

fn counter(k: &Kernel, name: &str) -> i64 {
    k.counters()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no counter {name}"))
        .1
}

/// Memory of the tests below: 16 MiB, eight pageblocks in one zone (DMA32).
const MEM: u64 = 16 * M;

/// A kernel with a guest_memfd of `size` bytes (both flags) under the huge-folio switches.
fn gmem_kernel(order: u8, punch: GmemPunch, fallback: GmemFallback) -> (Kernel, Pid) {
    let (mut k, pid) = kernel(MEM);
    k.profile.switches.gmem_huge_order = order;
    k.profile.switches.gmem_punch = punch;
    k.profile.switches.gmem_fallback = fallback;
    (k, pid)
}

/// Where an anonymous 2 MiB write lands: (thp_fault_alloc, thp_fault_fallback).
fn anon_thp_fault(k: &mut Kernel, pid: Pid, at: u64) -> (i64, i64) {
    let (a0, f0) = (
        k.vmstat.get(VmItem::ThpFaultAlloc),
        k.vmstat.get(VmItem::ThpFaultFallback),
    );
    k.mmap(pid, at, 2 * M, Prot::RW, MapFlags::default())
        .unwrap();
    k.access(pid, at, AccessKind::Write).unwrap();
    k.check_invariants().unwrap();
    (
        k.vmstat.get(VmItem::ThpFaultAlloc) - a0,
        k.vmstat.get(VmItem::ThpFaultFallback) - f0,
    )
}

#[test]
fn create_checks_flags_then_size() {
    let (mut k, _) = kernel(MEM);
    assert_eq!(k.kvm_gmem_create(0, 0), Err(Errno::EINVAL));
    assert_eq!(k.kvm_gmem_create(4097, 0), Err(Errno::EINVAL));
    assert_eq!(k.kvm_gmem_create(4096, 4), Err(Errno::EINVAL));
    assert_eq!(k.kvm_gmem_create(0, 8), Err(Errno::EINVAL));
    let g = k.kvm_gmem_create(2 * M, BOTH).unwrap();
    assert!(k.is_gmem(g));
    assert_eq!(k.file_truncate(g, M), Err(Errno::EINVAL));
    assert_eq!(k.shmem_inode(g).size, 2 * M);
}

#[test]
fn fallocate_errnos_and_order0_unmovable_folios() {
    let (mut k, pid) = kernel(MEM);
    let g = k.kvm_gmem_create(2 * M, BOTH).unwrap();
    let none = FallocMode::default();
    assert_eq!(k.file_fallocate(g, none, 0, 4096), Err(Errno::EOPNOTSUPP));
    assert_eq!(k.file_fallocate(g, ALLOC, 4096, 0), Err(Errno::EINVAL));
    assert_eq!(k.file_fallocate(g, ALLOC, 1, 4096), Err(Errno::EINVAL));
    assert_eq!(
        k.file_fallocate(g, ALLOC, 0, 2 * M + 4096),
        Err(Errno::EINVAL)
    );
    assert_eq!(k.file_fallocate(g, PUNCH, 4 * M, 4096), Ok(()));
    let unmovable = counter(&k, "pagetypeinfo.DMA32.Unmovable");
    k.file_fallocate(g, ALLOC, 0, 2 * M).unwrap();
    k.check_invariants().unwrap();
    // 512 order-0 folios in the page cache, not shmem, taken from unmovable pageblocks:
    // the first unmovable allocation claims a whole free order-10 block, two pageblocks
    // (try_to_claim_block changes every pageblock of a block of pageblock order or more).
    assert_eq!(k.shmem_inode(g).nr_pages, 512);
    assert_eq!(k.vmstat.get(VmItem::NrFilePages), 512);
    assert_eq!(k.vmstat.get(VmItem::NrShmem), 0);
    assert_eq!(k.vmstat.get(VmItem::NrFileHugepages), 0);
    assert_eq!(counter(&k, "pagetypeinfo.DMA32.Unmovable") - unmovable, 2);
    // Faults map one page each (no fault-around) and allocate nothing more.
    k.mmap_shmem(pid, BASE, 2 * M, Prot::RW, SHARED, (g, 0))
        .unwrap();
    let before = k.task(pid).unwrap().minflt;
    k.access_seq(pid, BASE, BASE + 64 * 1024, 4096, AccessPattern::Read)
        .unwrap();
    assert_eq!(k.task(pid).unwrap().minflt - before, 16);
    assert_eq!(
        k.page_map(pid, BASE, BASE + 64 * 1024),
        vec![(Backing::Gmem, 16)]
    );
    assert_eq!(k.vmstat.get(VmItem::NrFilePages), 512);
    k.check_invariants().unwrap();
}

#[test]
fn mmap_and_fault_rules() {
    let (mut k, pid) = kernel(MEM);
    let nomap = k.kvm_gmem_create(M, GUEST_MEMFD_FLAG_INIT_SHARED).unwrap();
    let private = k.kvm_gmem_create(M, GUEST_MEMFD_FLAG_MMAP).unwrap();
    assert_eq!(
        k.mmap_shmem(pid, BASE, M, Prot::RW, SHARED, (nomap, 0)),
        Err(Errno::ENODEV)
    );
    assert_eq!(
        k.mmap_shmem(pid, BASE, M, Prot::RW, MapFlags::default(), (private, 0)),
        Err(Errno::EINVAL)
    );
    k.mmap_shmem(pid, BASE, 2 * M, Prot::RW, SHARED, (private, 0))
        .unwrap();
    assert_eq!(k.access(pid, BASE, AccessKind::Read), Err(Signal::Sigbus));
    k.file_fallocate(private, ALLOC, 0, 4096).unwrap();
    assert_eq!(k.access(pid, BASE, AccessKind::Write), Err(Signal::Sigbus));
    let shared = k.kvm_gmem_create(M, BOTH).unwrap();
    k.mmap_shmem(pid, BASE + 4 * M, 2 * M, Prot::RW, SHARED, (shared, 0))
        .unwrap();
    assert_eq!(k.access(pid, BASE + 4 * M, AccessKind::Read), Ok(()));
    assert_eq!(
        k.access(pid, BASE + 5 * M, AccessKind::Read),
        Err(Signal::Sigbus)
    );
    k.check_invariants().unwrap();
}

#[test]
fn huge_order_9_takes_whole_pageblocks_and_maps_by_ptes() {
    let (mut k, pid) = gmem_kernel(9, GmemPunch::Split, GmemFallback::Small);
    let g = k.kvm_gmem_create(8 * M, BOTH).unwrap();
    k.file_fallocate(g, ALLOC, 0, 8 * M).unwrap();
    k.check_invariants().unwrap();
    // Four PMD-sized unmovable folios: four pageblocks change type.
    assert_eq!(k.vmstat.get(VmItem::NrFileHugepages), 4);
    assert_eq!(k.vmstat.get(VmItem::NrFilePages), 2048);
    assert_eq!(counter(&k, "pagetypeinfo.DMA32.Unmovable"), 4);
    assert_eq!(counter(&k, "pagetypeinfo.DMA32.Movable"), 4);
    // The user mapping still maps one page per fault (no PMD).
    k.mmap_shmem(pid, BASE, 2 * M, Prot::RW, SHARED, (g, 0))
        .unwrap();
    let before = k.task(pid).unwrap().minflt;
    k.access_seq(pid, BASE, BASE + 2 * M, 4096, AccessPattern::Read)
        .unwrap();
    assert_eq!(k.task(pid).unwrap().minflt - before, 512);
    assert_eq!(
        k.page_map(pid, BASE, BASE + 2 * M),
        vec![(Backing::Gmem, 512)]
    );
    k.check_invariants().unwrap();
}

#[test]
fn punch_part_of_a_huge_folio_split_zero_einval() {
    // split: the page-cache split unmaps the whole folio first (as for shmem), the pieces
    // refault; zero: the folio stays whole, only the hole is unmapped; einval: nothing.
    for (punch, result, cached, thps, mapped) in [
        (GmemPunch::Split, Ok(()), 511, 0, 0),
        (GmemPunch::Zero, Ok(()), 512, 1, 511),
        (GmemPunch::Einval, Err(Errno::EINVAL), 512, 1, 512),
    ] {
        let (mut k, pid) = gmem_kernel(9, punch, GmemFallback::Small);
        let g = k.kvm_gmem_create(2 * M, BOTH).unwrap();
        k.mmap_shmem(pid, BASE, 2 * M, Prot::RW, SHARED, (g, 0))
            .unwrap();
        k.access_seq(pid, BASE, BASE + 2 * M, 4096, AccessPattern::Write)
            .unwrap();
        assert_eq!(k.vmstat.get(VmItem::NrFileHugepages), 1);
        assert_eq!(k.file_fallocate(g, PUNCH, M, 4096), result, "{punch:?}");
        k.check_invariants().unwrap();
        assert_eq!(k.shmem_inode(g).nr_pages, cached, "{punch:?}");
        assert_eq!(k.vmstat.get(VmItem::NrFileHugepages), thps, "{punch:?}");
        let present: u64 = k
            .page_map(pid, BASE, BASE + 2 * M)
            .iter()
            .filter(|(b, _)| *b == Backing::Gmem)
            .map(|(_, n)| n)
            .sum();
        assert_eq!(present, mapped, "{punch:?}");
        let split = if punch == GmemPunch::Split { 1 } else { 0 };
        assert_eq!(k.vmstat.get(VmItem::ThpSplitPage), split, "{punch:?}");
    }
}

#[test]
fn fallback_small_or_enomem_when_no_pageblock_is_free() {
    for (fallback, result, pages) in [
        (GmemFallback::Small, Ok(()), 512),
        (GmemFallback::None, Err(Errno::ENOMEM), 0),
    ] {
        let (mut k, _) = gmem_kernel(9, GmemPunch::Split, fallback);
        // One unmovable page in the middle of every pageblock: no free order-9 block.
        k.kalloc(8, 0, thpsim_kernel::page_alloc::MigrateType::Unmovable, 1);
        let g = k.kvm_gmem_create(2 * M, BOTH).unwrap();
        assert_eq!(k.file_fallocate(g, ALLOC, 0, 2 * M), result, "{fallback:?}");
        k.check_invariants().unwrap();
        assert_eq!(k.shmem_inode(g).nr_pages, pages, "{fallback:?}");
        assert_eq!(k.vmstat.get(VmItem::NrFileHugepages), 0);
    }
}

/// Fill the memory with a 14 MiB guest_memfd and one anonymous THP, punch the guest_memfd
/// all but its first page of every 2 MiB (or whole 2 MiB blocks), then fault an anonymous
/// 2 MiB range: a pageblock holding even one unmovable page is no THP (compaction cannot move
/// it), a block freed whole is.
fn later_anon_thp(order: u8, keep_one_per_block: bool) -> ((i64, i64), i64) {
    let (mut k, pid) = gmem_kernel(order, GmemPunch::Split, GmemFallback::Small);
    let g = k.kvm_gmem_create(12 * M, BOTH).unwrap();
    k.file_fallocate(g, ALLOC, 0, 12 * M).unwrap();
    let (alloc, _) = anon_thp_fault(&mut k, pid, BASE);
    assert_eq!(alloc, 1);
    for b in 0..6u64 {
        let (off, len) = if keep_one_per_block {
            (b * 2 * M + 4096, 2 * M - 4096)
        } else {
            (b * 2 * M, 2 * M)
        };
        if !keep_one_per_block && b % 2 == 1 {
            continue;
        }
        k.file_fallocate(g, PUNCH, off, len).unwrap();
    }
    k.check_invariants().unwrap();
    let free = counter(&k, "vmstat.nr_free_pages");
    (anon_thp_fault(&mut k, pid, BASE + 4 * M), free)
}

#[test]
fn split_punch_leaves_pageblocks_no_anon_thp_can_use() {
    // Huge folios split by the punch: 6 × 511 pages come back (3576 free of 4096), yet every
    // block keeps one unmovable page: the anonymous fault falls back.
    assert_eq!(later_anon_thp(9, true), ((0, 1), 3576));
    // Whole huge folios punched: three blocks come back whole, one anonymous THP fits.
    assert_eq!(later_anon_thp(9, false), ((1, 0), 2046));
    // 6.18's order-0 folios fill unmovable pageblocks the same way: the same outcome.
    assert_eq!(later_anon_thp(0, true), ((0, 1), 3576));
    assert_eq!(later_anon_thp(0, false), ((1, 0), 2046));
}
