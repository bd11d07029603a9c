//! Disk (ext4) files: readahead, write notification, dirtying and writeback, with the
//! invariant checker after every step (the measured outcomes are asserted against the host
//! by scenarios/conformance/46N-disk-*, FINDINGS.md §22).

use thpsim_kernel::mmap::MapFlags;
use thpsim_kernel::observe::Backing;
use thpsim_kernel::readahead::{MS_ASYNC, MS_SYNC};
use thpsim_kernel::shmem::FallocMode;
use thpsim_kernel::types::{AccessKind, Advice, Pid, Prot};
use thpsim_kernel::vmstat::VmItem;
use thpsim_kernel::{errno::Errno, Kernel};

const BASE: u64 = 0x1000_0000_0000;
const K4: u64 = 4096;
const M: u64 = 1 << 20;
const SHARED: MapFlags = MapFlags {
    shared: true,
    populate: false,
    fixed: false,
};

fn kernel() -> (Kernel, Pid) {
    let mut k = Kernel::new(thpsim_kernel::KernelConfig::default()).unwrap();
    let pid = k.spawn();
    (k, pid)
}

/// A 16 MiB disk file mapped shared at BASE.
fn mapped_file(k: &mut Kernel, pid: Pid) -> thpsim_kernel::ids::InodeId {
    let ino = k.disk_new_inode(16 * M);
    k.mmap_shmem(pid, BASE, 16 * M, Prot::RW, SHARED, (ino, 0))
        .unwrap();
    ino
}

fn faults(k: &Kernel, pid: Pid) -> (u64, u64) {
    let t = k.task(pid).unwrap();
    (t.minflt, t.majflt)
}

fn touch(k: &mut Kernel, pid: Pid, addr: u64, kind: AccessKind) {
    k.access(pid, addr, kind).unwrap();
    k.check_invariants().unwrap();
}

#[test]
fn read_around_then_async_window_of_order_2() {
    let (mut k, pid) = kernel();
    let ino = mapped_file(&mut k, pid);
    touch(&mut k, pid, BASE, AccessKind::Read);
    // One major fault (the retry after the read-around), 2048 pages cached, 16 mapped.
    assert_eq!(faults(&k, pid), (0, 1));
    assert_eq!(k.shmem_inode(ino).nr_pages, 2048);
    assert_eq!(
        k.page_map(pid, BASE, BASE + 64 * 1024),
        vec![(Backing::File, 16)]
    );
    assert_eq!(k.vmstat.get(VmItem::Pgmajfault), 1);
    // The PG_readahead page (index 1536): a minor fault, the next 2048 pages as order-2.
    touch(&mut k, pid, BASE + 6 * M, AccessKind::Read);
    assert_eq!(faults(&k, pid), (1, 1));
    assert_eq!(k.shmem_inode(ino).nr_pages, 4096);
    touch(&mut k, pid, BASE + 8 * M, AccessKind::Read);
    assert_eq!(
        k.page_map(pid, BASE + 8 * M, BASE + 8 * M + 64 * 1024),
        vec![(Backing::FilePte { order: 2 }, 16)]
    );
}

#[test]
fn hugepage_readahead_maps_a_pmd_and_counts_file_thps() {
    let (mut k, pid) = kernel();
    let ino = mapped_file(&mut k, pid);
    k.madvise(pid, BASE, 16 * M, Advice::Hugepage).unwrap();
    touch(&mut k, pid, BASE, AccessKind::Read);
    assert_eq!(faults(&k, pid), (0, 1));
    assert_eq!(k.shmem_inode(ino).nr_pages, 1024);
    assert_eq!(k.vmstat.get(VmItem::NrFileHugepages), 2);
    assert_eq!(k.vmstat.get(VmItem::NrFilePmdmapped), 1);
    assert_eq!(k.vmstat.get(VmItem::ThpFileMapped), 1);
    assert_eq!(k.vmstat.get(VmItem::NrShmemHugepages), 0);
    assert_eq!(k.vmstat.get(VmItem::NrShmem), 0);
    let s = k.smaps(pid, BASE, BASE + 16 * M);
    assert_eq!((s.file_pmd_mapped, s.shmem_pmd_mapped), (2048, 0));
    assert_eq!(
        k.page_map(pid, BASE, BASE + 2 * M),
        vec![(Backing::FilePmd, 512)]
    );
    // A write to the read-only PMD zaps it and maps it again, writable and dirty.
    touch(&mut k, pid, BASE + K4, AccessKind::Write);
    assert_eq!(k.vmstat.get(VmItem::ThpSplitPmd), 1);
    assert_eq!(k.vmstat.get(VmItem::ThpFileMapped), 2);
    assert_eq!(k.smaps(pid, BASE, BASE + 2 * M).private_dirty, 2048);
    assert_eq!(k.vmstat.get(VmItem::NrDirtied), 512);
}

#[test]
fn write_notification_dirtying_and_writeback() {
    let (mut k, pid) = kernel();
    let ino = mapped_file(&mut k, pid);
    touch(&mut k, pid, BASE, AccessKind::Read);
    // Read-only after the read: the first write of a page faults, the second does not.
    touch(&mut k, pid, BASE + K4, AccessKind::Write);
    touch(&mut k, pid, BASE + K4, AccessKind::Write);
    assert_eq!(faults(&k, pid), (1, 1));
    assert_eq!(k.vmstat.get(VmItem::NrDirtied), 1);
    assert_eq!(k.smaps(pid, BASE, BASE + 16 * M).private_dirty, 4);
    // MS_ASYNC writes nothing; MS_SYNC|MS_ASYNC is EINVAL; MS_SYNC writes the page back.
    k.msync(pid, BASE, 16 * M, MS_ASYNC).unwrap();
    assert_eq!(k.smaps(pid, BASE, BASE + 16 * M).private_dirty, 4);
    assert_eq!(
        k.msync(pid, BASE, 16 * M, MS_SYNC | MS_ASYNC),
        Err(Errno::EINVAL)
    );
    k.msync(pid, BASE, 16 * M, MS_SYNC).unwrap();
    k.check_invariants().unwrap();
    assert_eq!(k.vmstat.get(VmItem::NrWritten), 1);
    assert_eq!(k.smaps(pid, BASE, BASE + 16 * M).private_dirty, 0);
    // Write-protected again: the next write faults and dirties it again.
    touch(&mut k, pid, BASE + K4, AccessKind::Write);
    assert_eq!(faults(&k, pid), (2, 1));
    assert_eq!(k.vmstat.get(VmItem::NrDirtied), 2);
    k.fsync(ino).unwrap();
    assert_eq!(k.vmstat.get(VmItem::NrWritten), 2);
    // A hole in the range is ENOMEM after the mapped part was synced.
    k.munmap(pid, BASE + 12 * M, 2 * M).unwrap();
    assert_eq!(
        k.msync(pid, BASE + 8 * M, 8 * M, MS_SYNC),
        Err(Errno::ENOMEM)
    );
}

#[test]
fn fallocate_caches_nothing_and_punch_drops_the_cache() {
    let (mut k, pid) = kernel();
    let ino = mapped_file(&mut k, pid);
    let falloc = |keep_size, punch_hole| FallocMode {
        keep_size,
        punch_hole,
    };
    k.shmem_fallocate(ino, falloc(false, false), 0, 20 * M)
        .unwrap();
    assert_eq!(k.shmem_inode(ino).nr_pages, 0);
    assert_eq!(k.shmem_inode(ino).size, 20 * M);
    touch(&mut k, pid, BASE, AccessKind::Read);
    assert_eq!(k.shmem_inode(ino).nr_pages, 2048);
    k.shmem_fallocate(ino, falloc(true, true), 8 * K4, 4 * K4)
        .unwrap();
    k.check_invariants().unwrap();
    assert_eq!(k.shmem_inode(ino).nr_pages, 2044);
    assert_eq!(
        k.shmem_fallocate(ino, falloc(false, true), 0, K4),
        Err(Errno::EOPNOTSUPP)
    );
    // Refaulting the hole reads around again: a major fault.
    touch(&mut k, pid, BASE + 8 * K4, AccessKind::Read);
    assert_eq!(faults(&k, pid).1, 2);
    assert_eq!(k.shmem_inode(ino).nr_pages, 2048);
    k.shmem_truncate(ino, M).unwrap();
    k.check_invariants().unwrap();
    assert_eq!(k.shmem_inode(ino).nr_pages, 256);
    assert_eq!(
        k.access(pid, BASE + M, AccessKind::Read),
        Err(thpsim_kernel::errno::Signal::Sigbus)
    );
}

#[test]
fn populate_write_takes_a_fault_per_folio_and_gup_retries_are_major() {
    let (mut k, pid) = kernel();
    mapped_file(&mut k, pid);
    k.madvise(pid, BASE, 16 * M, Advice::PopulateWrite).unwrap();
    k.check_invariants().unwrap();
    // 2048 order-0 pages + 512 order-2 folios; the sync and both async readaheads retried
    // with FAULT_FLAG_TRIED.
    assert_eq!(faults(&k, pid), (2557, 3));
    assert_eq!(k.smaps(pid, BASE, BASE + 16 * M).private_dirty, 16 * 1024);
    assert_eq!(k.vmstat.get(VmItem::NrDirtied), 4096);
}

#[test]
fn willneed_reads_at_most_max_pages_without_mapping() {
    let (mut k, pid) = kernel();
    let ino = mapped_file(&mut k, pid);
    k.madvise(pid, BASE, 16 * M, Advice::Willneed).unwrap();
    assert_eq!(k.shmem_inode(ino).nr_pages, 2048);
    assert_eq!(k.smaps(pid, BASE, BASE + 16 * M).rss, 0);
    touch(&mut k, pid, BASE + 6 * M, AccessKind::Read);
    assert_eq!(faults(&k, pid), (1, 0));
}

/// MADV_PAGEOUT of a shared disk-file mapping (conformance 803): clean folios leave the page
/// cache; a dirty one stays cached, unmapped and dirty with PG_reclaim
/// (`nr_vmscan_immediate_reclaim`), and since PG_reclaim is PG_readahead its next read is a
/// minor fault that reads ahead after it.
#[test]
fn pageout_drops_clean_folios_and_keeps_dirty_ones() {
    let (mut k, pid) = kernel();
    let ino = mapped_file(&mut k, pid);
    touch(&mut k, pid, BASE, AccessKind::Read);
    let cached = k.shmem_inode(ino).nr_pages;
    touch(&mut k, pid, BASE + 16 * K4, AccessKind::Write);
    let dirty = k.vmstat.get(VmItem::NrDirty);
    k.madvise(pid, BASE, 64 * 1024, Advice::Pageout).unwrap();
    k.check_invariants().unwrap();
    // The 16 clean pages mapped in [BASE, BASE + 64K) are dropped, none is mapped now.
    assert_eq!(k.shmem_inode(ino).nr_pages, cached - 16);
    assert_eq!(
        k.page_map(pid, BASE, BASE + 64 * 1024),
        vec![(Backing::None, 16)]
    );
    assert_eq!(k.vmstat.get(VmItem::NrVmscanImmediateReclaim), 0);
    // The dirty page lies outside that range; a PAGEOUT over it keeps it.
    k.madvise(pid, BASE + 64 * 1024, 64 * 1024, Advice::Pageout)
        .unwrap();
    k.check_invariants().unwrap();
    assert_eq!(k.vmstat.get(VmItem::NrVmscanImmediateReclaim), 1);
    assert_eq!(k.vmstat.get(VmItem::NrDirty), dirty);
    let before = faults(&k, pid);
    let pages = k.shmem_inode(ino).nr_pages;
    touch(&mut k, pid, BASE + 16 * K4, AccessKind::Read);
    assert_eq!(faults(&k, pid), (before.0 + 1, before.1));
    // The kept page's PG_reclaim read as PG_readahead: more pages were read after it.
    assert!(k.shmem_inode(ino).nr_pages > pages);
}
