//! 1 GiB hugetlb pages (the gigantic hstate of `mm/hugetlb.c`, PUD-mapped) beside the 2 MiB
//! one, and mremap of hugetlb VMAs: exact pool counts, faults, smaps and page maps, with the
//! invariant checker after every step. The same behaviour is asserted against the host by
//! scenarios/conformance/770–785 (FINDINGS.md §34).

use thpsim_kernel::errno::{Errno, Signal};
use thpsim_kernel::hugetlb::{HugePageSize, HugetlbMapFlags};
use thpsim_kernel::observe::Backing;
use thpsim_kernel::shmem::FallocMode;
use thpsim_kernel::types::{AccessKind, Advice, Pid, Prot};
use thpsim_kernel::vmstat::VmItem;
use thpsim_kernel::{Kernel, KernelConfig};

const G: u64 = 1 << 30;
const M: u64 = 1 << 20;
/// 1 GiB aligned, in user space.
const BASE: u64 = 0x1000_0000_0000;
const RW: Prot = Prot {
    read: true,
    write: true,
    exec: false,
};
const G1: HugePageSize = HugePageSize::Size1G;
const M2: HugePageSize = HugePageSize::Size2M;

fn kernel(memory: u64, pages_1g: u64) -> (Kernel, Pid) {
    let mut k = Kernel::new(KernelConfig {
        memory,
        ..KernelConfig::default()
    })
    .unwrap();
    k.write_sysfs("hugetlb.1G.nr_hugepages", &pages_1g.to_string())
        .unwrap();
    let pid = k.spawn();
    (k, pid)
}

/// (nr, free, resv, surplus) of a size.
fn counts(k: &Kernel, size: HugePageSize) -> [u64; 4] {
    let h = k.hugetlb.hstate(size);
    [
        h.nr_huge_pages,
        h.free_huge_pages,
        h.resv_huge_pages,
        h.surplus_huge_pages,
    ]
}

fn private_1g() -> HugetlbMapFlags {
    HugetlbMapFlags {
        size: G1,
        ..HugetlbMapFlags::default()
    }
}

/// A byte or page count as the signed counters hold it.
fn i(n: u64) -> i64 {
    i64::try_from(n).unwrap()
}

fn ok(k: &Kernel) {
    k.check_invariants().unwrap();
}

fn meminfo(k: &Kernel, name: &str) -> i64 {
    k.hugetlb_meminfo()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no {name}"))
        .1
}

#[test]
fn gigantic_pool_comes_from_whole_free_ranges() {
    // 4 GiB: four 1 GiB-aligned ranges, all free at boot.
    let (mut k, _) = kernel(4 * G, 0);
    let free0 = k.nr_free_pages();
    k.write_sysfs("hugetlb.1G.nr_hugepages", "8").unwrap();
    assert_eq!(counts(&k, G1), [4, 4, 0, 0]);
    assert_eq!(k.nr_free_pages(), 0);
    // Not the buddy allocator's hugetlb counters: alloc_contig_range's isolation counts.
    assert_eq!(k.vmstat.get(VmItem::HtlbBuddyAllocSuccess), 0);
    assert_eq!(k.vmstat.get(VmItem::CompactIsolated), i(4 * G / 4096));
    ok(&k);
    k.write_sysfs("hugetlb.1G.nr_hugepages", "1").unwrap();
    assert_eq!(counts(&k, G1), [1, 1, 0, 0]);
    assert_eq!(meminfo(&k, "meminfo.Hugetlb"), i(G >> 10));
    assert_eq!(meminfo(&k, "meminfo.HugePages_Total"), 0);
    assert_eq!(meminfo(&k, "hugepages-1048576kB.nr_hugepages"), 1);
    assert_eq!(k.nr_free_pages(), free0 - G / 4096);
    ok(&k);
    k.write_sysfs("hugetlb.1G.nr_hugepages", "0").unwrap();
    assert_eq!(k.nr_free_pages(), free0);
    ok(&k);
}

#[test]
fn a_range_with_a_page_in_use_is_skipped() {
    // 2 GiB: two ranges; one anonymous page in either leaves one gigantic page.
    let (mut k, pid) = kernel(2 * G, 0);
    k.mmap(
        pid,
        BASE,
        4096,
        RW,
        thpsim_kernel::mmap::MapFlags::default(),
    )
    .unwrap();
    k.access(pid, BASE, AccessKind::Write).unwrap();
    k.write_sysfs("hugetlb.1G.nr_hugepages", "2").unwrap();
    assert_eq!(counts(&k, G1), [1, 1, 0, 0]);
    ok(&k);
    k.munmap(pid, BASE, 4096).unwrap();
    k.write_sysfs("hugetlb.1G.nr_hugepages", "2").unwrap();
    assert_eq!(counts(&k, G1), [2, 2, 0, 0]);
    ok(&k);
}

#[test]
fn one_fault_maps_a_gigantic_page() {
    let (mut k, pid) = kernel(8 * G, 2);
    assert_eq!(
        k.mmap_hugetlb(pid, BASE + 2 * M, G, RW, private_1g(), None),
        Err(Errno::EINVAL),
        "an address that is not 1 GiB aligned"
    );
    // A 4 KiB length rounds up to the page.
    k.mmap_hugetlb(pid, BASE, 4096, RW, private_1g(), None)
        .unwrap();
    assert_eq!(counts(&k, G1), [2, 2, 1, 0]);
    assert_eq!(counts(&k, M2), [0, 0, 0, 0]);
    k.access(pid, BASE + 512 * M, AccessKind::Read).unwrap();
    k.access(pid, BASE + G - 4096, AccessKind::Read).unwrap();
    assert_eq!(k.task(pid).unwrap().minflt, 1);
    k.access(pid, BASE, AccessKind::Write).unwrap();
    assert_eq!(k.task(pid).unwrap().minflt, 2, "the write reuses the page");
    assert_eq!(counts(&k, G1), [2, 1, 0, 0]);
    let s = k.smaps(pid, BASE, BASE + G);
    assert_eq!(
        (s.size, s.rss, s.private_hugetlb, s.shared_hugetlb),
        (G >> 10, 0, G >> 10, 0)
    );
    assert_eq!(s.kernel_page_size, G >> 10);
    assert_eq!(
        k.page_map(pid, BASE, BASE + G),
        vec![(Backing::Hugetlb, G / 4096)]
    );
    // Inside the page only whole-page operations work.
    assert_eq!(k.munmap(pid, BASE + 2 * M, 2 * M), Err(Errno::EINVAL));
    assert_eq!(k.mprotect(pid, BASE, 2 * M, Prot::R), Err(Errno::EINVAL));
    assert_eq!(
        k.madvise(pid, BASE + 2 * M, G, Advice::Dontneed),
        Err(Errno::EINVAL)
    );
    // DONTNEED of less than a page rounds the end down: nothing zapped.
    k.madvise(pid, BASE, 2 * M, Advice::Dontneed).unwrap();
    assert_eq!(counts(&k, G1), [2, 1, 0, 0]);
    ok(&k);
    k.madvise(pid, BASE, G, Advice::Dontneed).unwrap();
    assert_eq!(counts(&k, G1), [2, 2, 1, 0], "zapped and re-reserved");
    k.munmap(pid, BASE, G).unwrap();
    assert_eq!(counts(&k, G1), [2, 2, 0, 0]);
    ok(&k);
}

#[test]
fn no_surplus_gigantic_pages() {
    let (mut k, pid) = kernel(8 * G, 1);
    // An overcommit limit on the 2 MiB size does not help the 1 GiB one.
    k.write_sysfs("hugetlb.nr_overcommit_hugepages", "4")
        .unwrap();
    assert_eq!(
        k.mmap_hugetlb(pid, BASE, 2 * G, RW, private_1g(), None),
        Err(Errno::ENOMEM)
    );
    let nores = HugetlbMapFlags {
        noreserve: true,
        ..private_1g()
    };
    k.mmap_hugetlb(pid, BASE, G, RW, private_1g(), None)
        .unwrap();
    k.mmap_hugetlb(pid, BASE + G, G, RW, nores, None).unwrap();
    assert_eq!(
        k.access(pid, BASE + G, AccessKind::Write),
        Err(Signal::Sigbus),
        "the one free page is reserved"
    );
    assert_eq!(k.task(pid).unwrap().minflt, 0);
    assert_eq!(counts(&k, G1), [1, 1, 1, 0]);
    // Shrinking below what is reserved leaves the page as a surplus one.
    k.write_sysfs("hugetlb.1G.nr_hugepages", "0").unwrap();
    assert_eq!(counts(&k, G1), [1, 1, 1, 1]);
    k.access(pid, BASE, AccessKind::Write).unwrap();
    assert_eq!(counts(&k, G1), [1, 0, 0, 1]);
    ok(&k);
    k.munmap(pid, BASE, 2 * G).unwrap();
    assert_eq!(counts(&k, G1), [0, 0, 0, 0]);
    ok(&k);
}

#[test]
fn fork_copies_on_write_and_steals_back() {
    let (mut k, parent) = kernel(8 * G, 2);
    k.mmap_hugetlb(parent, BASE, G, RW, private_1g(), None)
        .unwrap();
    k.access(parent, BASE, AccessKind::Write).unwrap();
    let child = k.fork(parent).unwrap();
    let cm = k.smaps(child, BASE, BASE + G);
    assert_eq!(cm.shared_hugetlb, G >> 10, "mapped by both");
    k.access(child, BASE + 4096, AccessKind::Write).unwrap();
    assert_eq!(k.task(child).unwrap().minflt, 1);
    assert_eq!(counts(&k, G1), [2, 0, 0, 0]);
    assert_eq!(k.vmstat.get(VmItem::SimCowCopiedPages), i(G / 4096));
    ok(&k);
    k.exit(child);
    assert_eq!(counts(&k, G1), [2, 1, 0, 0]);
    // With no page left for the child's copy: SIGBUS, then the owner takes it back.
    k.write_sysfs("hugetlb.1G.nr_hugepages", "1").unwrap();
    let child = k.fork(parent).unwrap();
    assert_eq!(
        k.access(child, BASE, AccessKind::Write),
        Err(Signal::Sigbus)
    );
    k.access(parent, BASE, AccessKind::Write).unwrap();
    assert_eq!(k.access(child, BASE, AccessKind::Read), Err(Signal::Sigbus));
    ok(&k);
}

#[test]
fn memfd_1g_fallocate_punch_truncate() {
    let (mut k, pid) = kernel(8 * G, 2);
    assert_eq!(k.hugetlb_new_inode(2 * M, G1), Err(Errno::EINVAL));
    let ino = k.hugetlb_new_inode(2 * G, G1).unwrap();
    assert_eq!(k.hugetlb_truncate(ino, 3 * 2 * M), Err(Errno::EINVAL));
    let alloc = FallocMode::default();
    let punch = FallocMode {
        keep_size: true,
        punch_hole: true,
    };
    k.hugetlb_fallocate(ino, alloc, 0, 4096).unwrap();
    assert_eq!(counts(&k, G1), [2, 1, 0, 0]);
    assert_eq!(k.hugetlb_object_stat(ino), (Some(G / 512), 2 * G));
    k.hugetlb_fallocate(ino, punch, 0, 2 * M).unwrap();
    assert_eq!(
        counts(&k, G1),
        [2, 1, 0, 0],
        "a partial punch frees nothing"
    );
    k.hugetlb_fallocate(ino, punch, 0, G).unwrap();
    assert_eq!(counts(&k, G1), [2, 2, 0, 0]);
    assert_eq!(
        k.hugetlb_fallocate(ino, alloc, 0, 3 * G),
        Err(Errno::ENOSPC)
    );
    assert_eq!(
        counts(&k, G1),
        [2, 0, 0, 0],
        "the pages before the failure stay"
    );
    ok(&k);
    // A shared mapping of the file maps its cached pages: no new page, one fault each.
    let shared = HugetlbMapFlags {
        shared: true,
        ..HugetlbMapFlags::default()
    };
    assert_eq!(
        k.mmap_hugetlb(pid, BASE, G, RW, shared, Some((ino, 2 * M))),
        Err(Errno::EINVAL)
    );
    k.mmap_hugetlb(pid, BASE, 2 * G, RW, shared, Some((ino, 0)))
        .unwrap();
    k.access(pid, BASE + G + 8192, AccessKind::Write).unwrap();
    assert_eq!(k.task(pid).unwrap().minflt, 1);
    assert_eq!(counts(&k, G1), [2, 0, 0, 0]);
    k.hugetlb_truncate(ino, G).unwrap();
    assert_eq!(counts(&k, G1), [2, 1, 0, 0]);
    assert_eq!(
        k.access(pid, BASE + G, AccessKind::Read),
        Err(Signal::Sigbus)
    );
    ok(&k);
}

#[test]
fn both_sizes_keep_their_own_pools() {
    let (mut k, pid) = kernel(8 * G, 1);
    k.write_sysfs("hugetlb.nr_hugepages", "2").unwrap();
    k.mmap_hugetlb(pid, BASE, G, RW, private_1g(), None)
        .unwrap();
    k.mmap_hugetlb(pid, BASE + G, 4 * M, RW, HugetlbMapFlags::default(), None)
        .unwrap();
    k.access(pid, BASE, AccessKind::Write).unwrap();
    k.access(pid, BASE + G, AccessKind::Write).unwrap();
    assert_eq!(counts(&k, G1), [1, 0, 0, 0]);
    assert_eq!(counts(&k, M2), [2, 1, 1, 0]);
    assert_eq!(meminfo(&k, "meminfo.HugePages_Free"), 1);
    assert_eq!(meminfo(&k, "meminfo.HugePages_Rsvd"), 1);
    assert_eq!(meminfo(&k, "meminfo.Hugetlb"), i((G + 4 * M) >> 10));
    // One smaps over both VMAs: the largest page size.
    assert_eq!(
        k.smaps(pid, BASE, BASE + G + 4 * M).kernel_page_size,
        G >> 10
    );
    assert_eq!(
        k.page_map(pid, BASE + G - 4096, BASE + G + 4 * M),
        vec![(Backing::Hugetlb, 1 + 512), (Backing::None, 512)]
    );
    ok(&k);
}

#[test]
fn mremap_moves_gigantic_pages_and_reservations() {
    let (mut k, pid) = kernel(8 * G, 2);
    k.mmap_hugetlb(pid, BASE, 2 * G, RW, private_1g(), None)
        .unwrap();
    k.access(pid, BASE, AccessKind::Write).unwrap();
    let dst = BASE + 4 * G;
    assert_eq!(k.mremap(pid, BASE, 2 * G, dst + 2 * M), Err(Errno::EINVAL));
    assert_eq!(k.mremap(pid, BASE + 2 * M, G, dst), Err(Errno::EINVAL));
    k.mremap(pid, BASE, 2 * G, dst).unwrap();
    assert_eq!(counts(&k, G1), [2, 1, 1, 0], "the reservation moved along");
    assert_eq!(
        k.page_map(pid, dst, dst + G),
        vec![(Backing::Hugetlb, G / 4096)]
    );
    assert_eq!(
        k.page_map(pid, BASE, BASE + 2 * G),
        vec![(Backing::None, 2 * G / 4096)]
    );
    k.access(pid, dst + 4096, AccessKind::Write).unwrap();
    assert_eq!(
        k.task(pid).unwrap().minflt,
        1,
        "no new fault after the move"
    );
    k.access(pid, dst + G, AccessKind::Write).unwrap();
    assert_eq!(counts(&k, G1), [2, 0, 0, 0]);
    ok(&k);
    // One page of two: the VMA splits at the page; a 4 KiB length rounds up to it.
    k.mremap(pid, dst + G, 4096, BASE).unwrap();
    assert_eq!(
        k.page_map(pid, BASE, BASE + G),
        vec![(Backing::Hugetlb, G / 4096)]
    );
    assert_eq!(k.smaps(pid, dst, dst + 2 * G).size, G >> 10);
    ok(&k);
    k.munmap(pid, BASE, G).unwrap();
    k.munmap(pid, dst, G).unwrap();
    assert_eq!(counts(&k, G1), [2, 2, 0, 0]);
    ok(&k);
}

#[test]
fn mremap_of_2m_hugetlb() {
    let (mut k, pid) = kernel(4 * G, 0);
    k.write_sysfs("hugetlb.nr_hugepages", "2").unwrap();
    k.mmap_hugetlb(pid, BASE, 4 * M, RW, HugetlbMapFlags::default(), None)
        .unwrap();
    k.access(pid, BASE, AccessKind::Write).unwrap();
    assert_eq!(
        k.mremap(pid, BASE, 4 * M, BASE + G + 4096),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        k.mremap(pid, BASE + 4096, 2 * M, BASE + G),
        Err(Errno::EINVAL)
    );
    k.mremap(pid, BASE, 4 * M, BASE + G).unwrap();
    assert_eq!(counts(&k, M2), [2, 1, 1, 0]);
    assert_eq!(
        k.page_map(pid, BASE + G, BASE + G + 4 * M),
        vec![(Backing::Hugetlb, 512), (Backing::None, 512)]
    );
    k.access(pid, BASE + G, AccessKind::Write).unwrap();
    assert_eq!(k.task(pid).unwrap().minflt, 1);
    ok(&k);
    k.munmap(pid, BASE + G, 4 * M).unwrap();
    assert_eq!(counts(&k, M2), [2, 2, 0, 0]);
    ok(&k);
}
