//! Shared memory: the page cache of a shmem inode under faults, punch hole and truncate,
//! with the invariant checker after every step (the measured outcomes are asserted against
//! the host by scenarios/conformance/2NN-shmem-*).

use thpsim_kernel::mmap::MapFlags;
use thpsim_kernel::observe::Backing;
use thpsim_kernel::shmem::FallocMode;
use thpsim_kernel::types::{AccessKind, AccessPattern, Advice, Pid, Prot};
use thpsim_kernel::vmstat::{MthpStat, VmItem};
use thpsim_kernel::Kernel;

const BASE: u64 = 0x1000_0000_0000;
const M: u64 = 1 << 20;
const SHARED: MapFlags = MapFlags {
    shared: true,
    populate: false,
    fixed: false,
};

fn kernel(knobs: &[(&str, &str)]) -> (Kernel, Pid) {
    let mut k = Kernel::new(thpsim_kernel::KernelConfig::default()).unwrap();
    for (n, v) in knobs {
        k.write_sysfs(n, v).unwrap();
    }
    let pid = k.spawn();
    (k, pid)
}

/// The orders of the folios a fully mapped range shows, run by run.
fn orders(k: &Kernel, pid: Pid, start: u64, len: u64) -> Vec<(Backing, u64)> {
    k.page_map(pid, start, start + len)
}

#[test]
fn punch_4k_splits_buddy_style_and_refaults_in_six() {
    let (mut k, pid) = kernel(&[("shmem_enabled", "always")]);
    k.mmap(pid, BASE, 2 * M, Prot::RW, SHARED).unwrap();
    k.access_seq(pid, BASE, BASE + 2 * M, 4096, AccessPattern::Write)
        .unwrap();
    assert_eq!(k.vmstat.get(VmItem::NrShmemHugepages), 1);
    k.madvise(pid, BASE + M, 4096, Advice::Remove).unwrap();
    k.check_invariants().unwrap();
    assert_eq!(k.vmstat.get(VmItem::ThpSplitPmd), 1);
    assert_eq!(k.vmstat.get(VmItem::ThpSplitPage), 1);
    assert_eq!(k.vmstat.mthp_get(9, MthpStat::Split), 1);
    assert_eq!(k.vmstat.get(VmItem::NrShmem), 511);
    let before = k.task(pid).unwrap().minflt;
    k.access_seq(pid, BASE, BASE + 2 * M, 4096, AccessPattern::Read)
        .unwrap();
    k.check_invariants().unwrap();
    assert_eq!(k.task(pid).unwrap().minflt - before, 6);
    let pte = |order| Backing::ShmemPte { order };
    assert_eq!(
        orders(&k, pid, BASE, 2 * M),
        vec![
            (pte(8), 256),
            (Backing::Shmem, 2),
            (pte(1), 2),
            (pte(2), 4),
            (pte(3), 8),
            (pte(4), 16),
            (pte(5), 32),
            (pte(6), 64),
            (pte(7), 128),
        ]
    );
}

#[test]
fn munmap_of_the_last_mapping_frees_the_object() {
    let (mut k, pid) = kernel(&[("shmem_enabled", "advise")]);
    let free = k.nr_free_pages();
    k.mmap(pid, BASE, 4 * M, Prot::RW, SHARED).unwrap();
    k.madvise(pid, BASE, 2 * M, Advice::Hugepage).unwrap();
    k.access_seq(pid, BASE, BASE + 4 * M, 4096, AccessPattern::Write)
        .unwrap();
    let fork = k.fork(pid).unwrap();
    k.munmap(pid, BASE, 4 * M).unwrap();
    // The child's VMA still holds the inode.
    assert_eq!(k.vmstat.get(VmItem::NrShmem), 1024);
    k.exit(fork);
    k.check_invariants().unwrap();
    assert_eq!(k.vmstat.get(VmItem::NrShmem), 0);
    assert_eq!(k.vmstat.get(VmItem::NrShmemHugepages), 0);
    assert_eq!(k.nr_free_pages(), free);
}

#[test]
fn private_mapping_cows_and_truncate_removes_copies_past_eof() {
    let (mut k, pid) = kernel(&[]);
    let ino = k.shmem_new_inode(64 << 10, None, false);
    let private = MapFlags::default();
    k.mmap_shmem(pid, BASE, 64 << 10, Prot::RW, private, (ino, 0))
        .unwrap();
    k.access(pid, BASE, AccessKind::Read).unwrap();
    k.access(pid, BASE + 32768, AccessKind::Write).unwrap();
    k.check_invariants().unwrap();
    let map = k.page_map(pid, BASE, BASE + (64 << 10));
    assert_eq!(thpsim_kernel::observe::pagemap_count(&map, "anon"), 1);
    // A punch keeps the private copy; a truncate below it removes it too.
    let punch = FallocMode {
        keep_size: true,
        punch_hole: true,
    };
    k.shmem_fallocate(ino, punch, 0, 64 << 10).unwrap();
    let map = k.page_map(pid, BASE, BASE + (64 << 10));
    assert_eq!(thpsim_kernel::observe::pagemap_count(&map, "anon"), 1);
    assert_eq!(thpsim_kernel::observe::pagemap_count(&map, "shmem"), 0);
    k.shmem_truncate(ino, 0).unwrap();
    k.check_invariants().unwrap();
    let map = k.page_map(pid, BASE, BASE + (64 << 10));
    assert_eq!(thpsim_kernel::observe::pagemap_count(&map, "none"), 16);
    assert_eq!(
        k.access(pid, BASE, AccessKind::Read),
        Err(thpsim_kernel::errno::Signal::Sigbus)
    );
}

#[test]
fn cold_on_part_of_a_pmd_splits_to_order_0_and_unmaps() {
    let (mut k, pid) = kernel(&[("shmem_enabled", "always")]);
    k.mmap(pid, BASE, 2 * M, Prot::RW, SHARED).unwrap();
    k.access_seq(pid, BASE, BASE + 2 * M, 4096, AccessPattern::Write)
        .unwrap();
    k.madvise(pid, BASE, 2 * M, Advice::Cold).unwrap();
    assert_eq!(k.vmstat.get(VmItem::ThpSplitPage), 0);
    k.madvise(pid, BASE + 4096, 4096, Advice::Cold).unwrap();
    k.check_invariants().unwrap();
    assert_eq!(k.vmstat.get(VmItem::ThpSplitPmd), 1);
    assert_eq!(k.vmstat.get(VmItem::ThpSplitPage), 1);
    assert_eq!(k.vmstat.get(VmItem::NrShmemHugepages), 0);
    assert_eq!(k.vmstat.get(VmItem::NrShmem), 512);
    assert_eq!(orders(&k, pid, BASE, 2 * M), vec![(Backing::None, 512)]);
    let before = k.task(pid).unwrap().minflt;
    k.access_seq(pid, BASE, BASE + 2 * M, 4096, AccessPattern::Read)
        .unwrap();
    k.check_invariants().unwrap();
    assert_eq!(k.task(pid).unwrap().minflt - before, 32);
    assert_eq!(orders(&k, pid, BASE, 2 * M), vec![(Backing::Shmem, 512)]);
}

#[test]
fn collapse_remaps_a_cached_pmd_folio_and_frees_the_pte_table() {
    let (mut k, pid) = kernel(&[("shmem_enabled", "always")]);
    let ino = k.shmem_new_inode(2 * M, None, false);
    k.shmem_fallocate(ino, FallocMode::default(), 0, 2 * M)
        .unwrap();
    k.mmap_shmem(pid, BASE, 2 * M, Prot::RW, SHARED, (ino, 0))
        .unwrap();
    k.madvise(pid, BASE, 2 * M, Advice::Nohugepage).unwrap();
    k.access(pid, BASE, AccessKind::Read).unwrap();
    assert_eq!(
        orders(&k, pid, BASE, 2 * M),
        vec![(Backing::ShmemPte { order: 9 }, 512)]
    );
    let tables = k.vmstat.get(VmItem::NrPageTablePages);
    // VM_NOHUGEPAGE refuses first, before any page is looked at.
    assert_eq!(
        k.madvise(pid, BASE, 2 * M, Advice::Collapse),
        Err(thpsim_kernel::errno::Errno::EINVAL)
    );
    k.madvise(pid, BASE, 2 * M, Advice::Hugepage).unwrap();
    k.madvise(pid, BASE, 2 * M, Advice::Collapse).unwrap();
    k.check_invariants().unwrap();
    assert_eq!(k.vmstat.get(VmItem::NrPageTablePages), tables - 1);
    assert_eq!(k.vmstat.get(VmItem::ThpFileMapped), 1);
    assert_eq!(k.vmstat.get(VmItem::ThpCollapseAlloc), 0);
    assert_eq!(orders(&k, pid, BASE, 2 * M), vec![(Backing::ShmemPmd, 512)]);
    // Again: already PMD-mapped, nothing to do.
    k.madvise(pid, BASE, 2 * M, Advice::Collapse).unwrap();
    assert_eq!(k.vmstat.get(VmItem::ThpFileMapped), 1);
}

/// fallocate (no VMA) by the mount policy over every page-cache order (6.18
/// `shmem_huge_global_enabled`): the folios of each order it allocates, as
/// `mthp.<size>.shmem_alloc` counts them (order 0 has no counter). Scenarios 299, 313–316.
#[test]
fn fallocate_orders_follow_the_mount_policy_over_every_file_order() {
    let keep = FallocMode {
        keep_size: true,
        punch_hole: false,
    };
    let plain = FallocMode::default();
    #[allow(clippy::type_complexity)]
    let cases: &[(&[(&str, &str)], u64, u64, u64, FallocMode, &[(u8, i64)])] = &[
        // within_size: the largest block inside max(i_size, offset + len).
        (
            &[("shmem_enabled", "within_size")],
            M,
            0,
            M,
            plain,
            &[(8, 1)],
        ),
        (
            &[("shmem_enabled", "within_size")],
            4096,
            0,
            2 * M,
            keep,
            &[(9, 1)],
        ),
        // 12 KiB: an 8 KiB folio, then the third page alone (a block of 2 ends past 12 KiB).
        (
            &[("shmem_enabled", "within_size")],
            12 << 10,
            0,
            12 << 10,
            plain,
            &[(1, 1)],
        ),
        // always: PMD size whatever the length.
        (
            &[("shmem_enabled", "always")],
            4096,
            0,
            4096,
            plain,
            &[(9, 1)],
        ),
        (
            &[("shmem_enabled", "force")],
            4096,
            0,
            4096,
            plain,
            &[(9, 1)],
        ),
        // advise: nothing without a VMA; the per-size knobs play no part.
        (&[("shmem_enabled", "advise")], 2 * M, 0, 2 * M, plain, &[]),
        (
            &[
                ("shmem_enabled", "never"),
                ("hugepages-64kB.shmem_enabled", "always"),
            ],
            M,
            0,
            M,
            plain,
            &[],
        ),
    ];
    for (knobs, size, off, len, mode, want) in cases {
        let (mut k, _) = kernel(knobs);
        let ino = k.shmem_new_inode(*size, None, false);
        k.shmem_fallocate(ino, *mode, *off, *len).unwrap();
        k.check_invariants().unwrap();
        let got: Vec<(u8, i64)> = thpsim_kernel::sysfs::MTHP_STAT_ORDERS
            .iter()
            .map(|&o| (o, k.vmstat.mthp_get(o, MthpStat::ShmemAlloc)))
            .filter(|&(_, n)| n != 0)
            .collect();
        assert_eq!(&got, want, "{knobs:?} size {size} fallocate {off}+{len}");
        let pages = (off + len).div_ceil(4096);
        assert!(k.shmem_inode(ino).nr_pages >= pages, "{knobs:?}");
    }
}

/// MINOR mode (FINDINGS.md §21): two shared mappings of one memfd; the page cache is filled
/// through the second, and the first, registered MINOR, takes one minor fault per cached page,
/// resolved by the modelled monitor's UFFDIO_CONTINUE; an uncached page allocates silently.
#[test]
fn uffd_minor_faults_and_continue() {
    use thpsim_kernel::errno::Errno;
    use thpsim_kernel::mm::vmf;
    use thpsim_kernel::userfaultfd::{Features, FLAG_MINOR, FLAG_WRITE};
    let (mut k, pid) = kernel(&[]);
    let ino = k.shmem_new_inode(2 * M, None, false);
    let (a, b) = (BASE, BASE + 4 * M);
    k.mmap_shmem(pid, a, 2 * M, Prot::RW, SHARED, (ino, 0))
        .unwrap();
    k.mmap_shmem(pid, b, 2 * M, Prot::RW, SHARED, (ino, 0))
        .unwrap();
    let anon = BASE + 8 * M;
    k.mmap(pid, anon, 2 * M, Prot::RW, MapFlags::default())
        .unwrap();
    k.access_seq(pid, b, b + 64 * 1024, 4096, AccessPattern::Write)
        .unwrap();
    k.uffd_open(pid, Features::default()).unwrap();
    assert_eq!(
        k.uffd_register(pid, anon, 2 * M, vmf::UFFD_MINOR),
        Err(Errno::EINVAL)
    );
    k.uffd_register(pid, a, 2 * M, vmf::UFFD_MINOR).unwrap();
    // Errnos before any fault: uncached EFAULT, beyond i_size impossible here, mapped EEXIST.
    assert_eq!(k.uffd_continue(pid, a + M, 4096, false), Err(Errno::EFAULT));
    assert_eq!(k.uffd_continue(pid, a, 4096, true), Err(Errno::EINVAL));
    k.uffd_continue(pid, a, 8192, false).unwrap();
    assert_eq!(
        k.uffd_continue(pid, a + 4096, 8192, false),
        Err(Errno::EEXIST)
    );
    k.check_invariants().unwrap();
    let before = k.uffd_stats;
    k.access_seq(pid, a, a + 64 * 1024, 4096, AccessPattern::Read)
        .unwrap();
    k.check_invariants().unwrap();
    assert_eq!(k.uffd_stats.minor - before.minor, 14);
    assert_eq!(k.uffd_stats.events - before.events, 14);
    let last = k.uffd_stats.last.unwrap();
    assert_eq!((last.flags, last.address), (FLAG_MINOR, a + 60 * 1024));
    assert_eq!(
        thpsim_kernel::observe::pagemap_count(&k.page_map(pid, a, a + 2 * M), "shmem"),
        16
    );
    // An uncached page: allocated by the fault, no message.
    k.access(pid, a + M, AccessKind::Write).unwrap();
    assert_eq!(k.uffd_stats.events - before.events, 14);
    // A cached, unmapped page written: MINOR|WRITE.
    k.access(pid, b + 128 * 1024, AccessKind::Write).unwrap();
    k.access(pid, a + 128 * 1024, AccessKind::Write).unwrap();
    assert_eq!(k.uffd_stats.last.unwrap().flags, FLAG_MINOR | FLAG_WRITE);
    assert_eq!(k.uffd_stats.events - before.events, 15);
    k.check_invariants().unwrap();
}
