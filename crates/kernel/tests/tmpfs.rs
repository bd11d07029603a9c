//! tmpfs instances: the `huge=` policy of files on them, the `size=` limit, and `st_blocks`,
//! with the invariant checker after every step (the outcomes are asserted against the host
//! by scenarios/conformance/345-366 and FINDINGS.md §18).

use thpsim_kernel::errno::{Errno, Signal};
use thpsim_kernel::mmap::MapFlags;
use thpsim_kernel::observe::Backing;
use thpsim_kernel::shmem::FallocMode;
use thpsim_kernel::sysfs::ShmemHuge;
use thpsim_kernel::types::{AccessPattern, Pid, Prot};
use thpsim_kernel::vmstat::{MthpStat, VmItem};
use thpsim_kernel::Kernel;

const BASE: u64 = 0x1000_0000_0000;
const M: u64 = 1 << 20;
const SHARED: MapFlags = MapFlags {
    shared: true,
    populate: false,
    fixed: false,
};
const ALLOC: FallocMode = FallocMode {
    keep_size: false,
    punch_hole: false,
};

fn kernel(knobs: &[(&str, &str)]) -> (Kernel, Pid) {
    let mut k = Kernel::new(thpsim_kernel::KernelConfig::default()).unwrap();
    for (n, v) in knobs {
        k.write_sysfs(n, v).unwrap();
    }
    let pid = k.spawn();
    (k, pid)
}

/// `st_blocks` of an inode (8 per cached page).
fn blocks(k: &Kernel, ino: thpsim_kernel::ids::InodeId) -> u64 {
    k.shmem_inode(ino).nr_pages * 8
}

/// Faults on a file follow its mount's huge= for each shmem_enabled override: (global, mount,
/// PMD folios after reading 4M of a 4M file, 4K pages).
#[test]
fn fault_orders_by_mount_policy_and_override() {
    let table = [
        ("never", ShmemHuge::Always, 2, 0),
        ("never", ShmemHuge::Never, 0, 1024),
        ("always", ShmemHuge::Never, 0, 1024),
        ("deny", ShmemHuge::Always, 0, 1024),
        ("force", ShmemHuge::Never, 2, 0),
        ("never", ShmemHuge::Advise, 0, 1024),
    ];
    for (global, huge, pmds, small) in table {
        let (mut k, pid) = kernel(&[("shmem_enabled", global)]);
        let t = k.tmpfs_mount(huge, None);
        let ino = k.shmem_new_file(t, 4 * M);
        k.mmap_shmem(pid, BASE, 4 * M, Prot::RW, SHARED, (ino, 0))
            .unwrap();
        k.access_seq(pid, BASE, BASE + 4 * M, 4096, AccessPattern::Read)
            .unwrap();
        k.check_invariants().unwrap();
        let map = k.page_map(pid, BASE, BASE + 4 * M);
        let n = |b| thpsim_kernel::observe::pagemap_count(&map, b);
        assert_eq!(
            (n("shmem_pmd") / 512, n("shmem")),
            (pmds, small),
            "{global} / {huge:?}"
        );
        assert_eq!(blocks(&k, ino), 8192);
    }
}

/// The per-size knobs are for anonymous shmem and memfds only.
#[test]
fn per_size_knobs_skip_tmpfs_files() {
    let (mut k, pid) = kernel(&[
        ("shmem_enabled", "never"),
        ("hugepages-64kB.shmem_enabled", "always"),
    ]);
    let t = k.tmpfs_mount(ShmemHuge::Never, None);
    let file = k.shmem_new_file(t, M);
    let memfd = k.shmem_new_inode(M, None, false);
    k.mmap_shmem(pid, BASE, M, Prot::RW, SHARED, (file, 0))
        .unwrap();
    k.mmap_shmem(pid, BASE + 2 * M, M, Prot::RW, SHARED, (memfd, 0))
        .unwrap();
    k.access_seq(pid, BASE, BASE + M, 4096, AccessPattern::Read)
        .unwrap();
    k.access_seq(pid, BASE + 2 * M, BASE + 3 * M, 4096, AccessPattern::Read)
        .unwrap();
    k.check_invariants().unwrap();
    assert_eq!(k.page_map(pid, BASE, BASE + M), vec![(Backing::Shmem, 256)]);
    assert_eq!(
        k.page_map(pid, BASE + 2 * M, BASE + 3 * M),
        vec![(Backing::ShmemPte { order: 4 }, 256)]
    );
    assert_eq!(k.vmstat.mthp_get(4, MthpStat::ShmemAlloc), 16);
}

#[test]
fn size_limit_fallocate_enospc_and_undo() {
    let (mut k, _) = kernel(&[("shmem_enabled", "never")]);
    let t = k.tmpfs_mount(ShmemHuge::Never, Some(4 * M));
    let ino = k.shmem_new_file(t, M);
    assert_eq!(k.shmem_fallocate(ino, ALLOC, 0, 8 * M), Err(Errno::ENOSPC));
    assert_eq!(blocks(&k, ino), 0);
    k.shmem_fallocate(ino, ALLOC, 0, M).unwrap();
    // 4M more does not fit beside 1M: ENOSPC, the new pages removed, i_size kept.
    assert_eq!(k.shmem_fallocate(ino, ALLOC, M, 4 * M), Err(Errno::ENOSPC));
    k.check_invariants().unwrap();
    assert_eq!(blocks(&k, ino), 2048);
    assert_eq!(k.shmem_inode(ino).size, M);
    assert_eq!(k.tmpfs_sb(t).used_blocks, 256);
    k.shmem_fallocate(ino, ALLOC, M, 3 * M).unwrap();
    assert_eq!((blocks(&k, ino), k.shmem_inode(ino).size), (8192, 4 * M));
    // Truncation gives the space back.
    k.shmem_truncate(ino, 2 * M).unwrap();
    k.check_invariants().unwrap();
    assert_eq!(k.tmpfs_sb(t).used_blocks, 512);
}

/// A huge folio that does not fit falls back to order 0, and the later indexes build up
/// the buddy-like ladder of orders whose blocks hold no cached page.
#[test]
fn size_limit_huge_falls_back_to_order_0() {
    let (mut k, pid) = kernel(&[("shmem_enabled", "never")]);
    let t = k.tmpfs_mount(ShmemHuge::Always, Some(M));
    let ino = k.shmem_new_file(t, M);
    k.shmem_fallocate(ino, ALLOC, 0, M).unwrap();
    k.check_invariants().unwrap();
    assert_eq!(k.vmstat.get(VmItem::ThpFileAlloc), 0);
    assert_eq!(k.vmstat.get(VmItem::ThpFileFallback), 0);
    for order in 1..=7 {
        assert_eq!(k.vmstat.mthp_get(order, MthpStat::ShmemAlloc), 1, "{order}");
    }
    assert_eq!(k.vmstat.mthp_get(8, MthpStat::ShmemAlloc), 0);
    assert_eq!(blocks(&k, ino), 2048);
    // A fault past the limit is SIGBUS.
    let ino2 = k.shmem_new_file(t, 2 * M);
    k.mmap_shmem(pid, BASE, 2 * M, Prot::RW, SHARED, (ino2, 0))
        .unwrap();
    assert_eq!(
        k.access_seq(pid, BASE, BASE + 2 * M, 4096, AccessPattern::Write),
        Err(Signal::Sigbus)
    );
    k.check_invariants().unwrap();
    assert_eq!(blocks(&k, ino2), 0);
}

/// A fault whose PMD folio does not fit maps 4K pages up to the limit.
#[test]
fn size_limit_fault_falls_back_then_sigbus() {
    let (mut k, pid) = kernel(&[("shmem_enabled", "never")]);
    let t = k.tmpfs_mount(ShmemHuge::Always, Some(3 * M));
    let ino = k.shmem_new_file(t, 4 * M);
    k.mmap_shmem(pid, BASE, 4 * M, Prot::RW, SHARED, (ino, 0))
        .unwrap();
    assert_eq!(
        k.access_seq(pid, BASE, BASE + 4 * M, 4096, AccessPattern::Write),
        Err(Signal::Sigbus)
    );
    k.check_invariants().unwrap();
    assert_eq!(k.vmstat.get(VmItem::ThpFileAlloc), 1);
    assert_eq!(k.vmstat.get(VmItem::ThpFileFallback), 0);
    assert_eq!(
        k.page_map(pid, BASE, BASE + 4 * M),
        vec![
            (Backing::ShmemPmd, 512),
            (Backing::Shmem, 256),
            (Backing::None, 256)
        ]
    );
    assert_eq!(blocks(&k, ino), 6144);
}

/// A private /dev/zero VMA: anonymous pages, but MADV_REMOVE is EACCES and mremap moves it
/// only alone.
#[test]
fn dev_zero_private_is_anonymous_with_a_file() {
    use thpsim_kernel::types::{AccessKind, Advice};
    let (mut k, pid) = kernel(&[("enabled", "never")]);
    let private = MapFlags::default();
    k.mmap_dev_zero(pid, BASE, 64 << 10, Prot::RW, private)
        .unwrap();
    k.mmap(pid, BASE + 4 * M, 2 * M, Prot::RW, private).unwrap();
    k.access(pid, BASE, AccessKind::Write).unwrap();
    assert_eq!(k.page_map(pid, BASE, BASE + 4096), vec![(Backing::Anon, 1)]);
    assert_eq!(
        k.madvise(pid, BASE, 4096, Advice::Remove),
        Err(Errno::EACCES)
    );
    k.mremap(pid, BASE + (28 << 10), 32 << 10, BASE + 4 * M)
        .unwrap();
    // The range now spans the DevZero VMA and a gap: refused.
    assert_eq!(
        k.mremap(pid, BASE, 64 << 10, BASE + 5 * M),
        Err(Errno::EFAULT)
    );
    k.mremap(pid, BASE, 28 << 10, BASE + 5 * M).unwrap();
    k.check_invariants().unwrap();
    assert_eq!(
        k.page_map(pid, BASE + 5 * M, BASE + 5 * M + 4096),
        vec![(Backing::Anon, 1)]
    );
}
