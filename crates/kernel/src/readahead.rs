//! Regular files of a disk filesystem (the host's ext4 root) in the page cache, after
//! `mm/filemap.c` (`filemap_fault`, `do_sync_mmap_readahead`, `do_async_mmap_readahead`),
//! `mm/readahead.c` (`page_cache_ra_order`, `ra_alloc_folio`, `do_page_cache_ra` /
//! `page_cache_ra_unbounded`, `page_cache_sync_ra`, `page_cache_async_ra`,
//! `force_page_cache_ra`), `fs/ext4` (`ext4_page_mkwrite`, `ext4_fallocate`, large folios on
//! regular files up to the PMD order), `mm/page-writeback.c` (`folio_mark_dirty` with
//! `folio_account_dirtied`, `folio_clear_dirty_for_io` → `folio_mkclean`,
//! `__folio_end_writeback`) and `mm/msync.c` (Linux 6.18).
//!
//! A disk file is a `ShmemInode` of kind `InodeKind::Disk`: the same page cache (index →
//! folio of any order), i_mmap walk, truncation and punch code as shmem. What differs is who
//! fills the cache and what a write means:
//!
//! - a fault on an uncached index reads ahead (`do_sync_mmap_readahead`: mmap read-around of
//!   `ra_pages` order-0 folios centred on the fault, or with `VM_HUGEPAGE` two PMD-sized
//!   folios from the aligned index; `VM_RAND_READ` reads the page alone, `VM_SEQ_READ` a
//!   forward window), marks a folio `PG_readahead`, drops the fault lock and returns
//!   `VM_FAULT_RETRY|VM_FAULT_MAJOR`: the retry (fault-around first) is a major fault. A
//!   fault on the marked folio starts the next, asynchronous window (`page_cache_async_ra`,
//!   two orders larger each time, also a retry but not a major one);
//! - the VMA wants write notification (`page_mkwrite`): read faults and fault-around map
//!   read-only, a write fault dirties the folio (`ext4_page_mkwrite`, `nr_dirtied`, `nr_dirty`);
//! - `fsync` / `msync(MS_SYNC)` write dirty folios back: `folio_mkclean` write-protects and
//!   cleans every PTE and PMD mapping them, so the next write faults again (`nr_written`);
//! - `fallocate` allocates blocks, not page cache; a punch drops the cache range.
//!
//! Measured on the host: FINDINGS.md §22. Deviations: no block I/O timing (every read
//! completes in the fault that issued it), no `prev_pos` (mmap faults never set it), no
//! writeback by the flusher threads (`dirty_expire_centisecs`: a scenario's dirty pages stay
//! dirty until it syncs), no reclaim of clean page cache.

use crate::errno::Errno;
use crate::fault::{FaultFlags, VmFault, Vmf};
use crate::folio::{flags, FolioId};
use crate::ids::{InodeId, MmId};
use crate::madvise::{VM_RAND_READ, VM_SEQ_READ};
use crate::mm::vmf;
use crate::pgtable::{Pte, DIRTY, WRITE};
use crate::shmem::FallocMode;
use crate::types::{Pid, HPAGE_PMD_ORDER, PAGE_SHIFT, PAGE_SIZE};

/// `HPAGE_PMD_NR` as a page count.
const HPAGE_PMD_NR: u64 = 1 << HPAGE_PMD_ORDER;
use crate::vmstat::VmItem;
use crate::Kernel;

/// What kind of file an inode is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InodeKind {
    /// A shmem/tmpfs file (memfd, `MAP_SHARED|MAP_ANONYMOUS`).
    #[default]
    Shmem,
    /// A regular file of the disk filesystem (ext4).
    Disk,
}

/// `read_ahead_kb` of the disk the files live on (this host's root device, `vda`: 8192, so
/// `ra_pages` is 2048). The host backend refuses to run disk files on a device whose value
/// differs.
pub const DISK_READ_AHEAD_KB: u64 = 8192;

/// `bdi->io_pages` of that device (`max_sectors_kb` 4096): the cap of an explicit readahead
/// request larger than `ra_pages` (`ractl_max_pages`, `force_page_cache_ra`).
const BDI_IO_PAGES: u64 = 1024;

/// `MMAP_LOTSAMISS`: more read-around misses than this and mmap stops reading around.
const MMAP_LOTSAMISS: u32 = 100;

/// ext4's `mapping_max_folio_order` (`EXT4_MAX_PAGECACHE_ORDER`, `MAX_PAGECACHE_ORDER` on
/// x86-64 with 4 KiB blocks: the PMD order).
const EXT4_MAX_FOLIO_ORDER: u8 = HPAGE_PMD_ORDER;

/// `s_maxbytes` of ext4 with extents and 4 KiB blocks (2^32 - 1 blocks).
pub const EXT4_MAX_BYTES: u64 = ((1 << 32) - 1) << PAGE_SHIFT;

/// `msync(2)` flags (`MS_ASYNC`, `MS_INVALIDATE`, `MS_SYNC`).
pub const MS_ASYNC: u32 = 1;
pub const MS_INVALIDATE: u32 = 2;
pub const MS_SYNC: u32 = 4;

/// `struct file_ra_state` of the object's open file.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FileRaState {
    pub(crate) start: u64,
    pub(crate) size: u64,
    pub(crate) async_size: u64,
    /// The folio order of the most recent readahead (`ra->order`, raised by 2 per async
    /// window).
    pub(crate) order: u8,
    pub(crate) mmap_miss: u32,
    pub(crate) ra_pages: u64,
}

/// `get_next_ra_size`: the next window after `cur` pages, at most `max`.
fn get_next_ra_size(cur: u64, max: u64) -> u64 {
    if cur < max / 16 {
        4 * cur
    } else if cur <= max / 2 {
        2 * cur
    } else {
        max
    }
}

/// `get_init_ra_size`: the first window of a sequential stream for a request of `size`.
fn get_init_ra_size(size: u64, max: u64) -> u64 {
    let newsize = size.next_power_of_two();
    if newsize <= max / 32 {
        newsize * 4
    } else if newsize <= max / 4 {
        newsize * 2
    } else {
        max
    }
}

/// `readahead_gfp_mask`: the mapping's `GFP_HIGHUSER_MOVABLE`, no retrying.
const RA_GFP: crate::page_alloc::Gfp = crate::page_alloc::Gfp {
    noretry: true,
    ..crate::page_alloc::Gfp::HIGHUSER_MOVABLE
};

impl Kernel {
    /// A new regular file of `size` bytes on the disk filesystem (created, truncated and
    /// sized with `ftruncate`: sparse, nothing cached), opened read-write
    /// (`file_ra_state_init`: `ra_pages` from the device's `read_ahead_kb`).
    pub fn disk_new_inode(&mut self, size: u64) -> InodeId {
        let ino = self.shmem_new_inode(size, None, false);
        let inode = &mut self.shmem.inodes[ino.index()];
        inode.kind = InodeKind::Disk;
        inode.ra.ra_pages = DISK_READ_AHEAD_KB >> (PAGE_SHIFT - 10);
        ino
    }

    /// Whether `ino` is a disk file.
    pub(crate) fn inode_is_disk(&self, ino: InodeId) -> bool {
        self.shmem.inodes[ino.index()].kind == InodeKind::Disk
    }

    /// Whether `id` is a page-cache folio of a disk file (not `PG_swapbacked`).
    pub(crate) fn folio_is_disk(&self, id: FolioId) -> bool {
        self.shmem
            .owner
            .get(&id)
            .is_some_and(|&(ino, _)| self.inode_is_disk(ino))
    }

    /// `filemap_fault`: the folio caching the faulting index. A cached folio marked
    /// `PG_readahead` starts the asynchronous readahead first (the fault lock is dropped for
    /// it: a plain retry); an uncached index is read with the synchronous readahead (or
    /// alone) and the fault is retried as a major one. Beyond i_size SIGBUS.
    pub(crate) fn filemap_fault(&mut self, vmf: &Vmf, ino: InodeId) -> Result<FolioId, VmFault> {
        let index = vmf.pgoff;
        if index >= self.shmem_inode(ino).size.div_ceil(PAGE_SIZE) {
            return Err(VmFault::Sigbus);
        }
        if let Some((id, _)) = self.filemap_get_folio(ino, index) {
            if !vmf.flags.contains(FaultFlags::TRIED) && self.do_async_mmap_readahead(vmf, ino, id)
            {
                return Err(VmFault::Retry { major: false });
            }
            return Ok(id);
        }
        self.vmstat.count(VmItem::Pgmajfault);
        self.do_sync_mmap_readahead(vmf, ino);
        if self.filemap_get_folio(ino, index).is_none() {
            // __filemap_get_folio(FGP_CREAT) + filemap_read_folio (after the lock is dropped
            // for the I/O: the fault is retried either way).
            if !self.ra_alloc_folio(ino, index, u64::MAX, 0) {
                return Err(VmFault::Oom);
            }
        }
        Err(VmFault::Retry { major: true })
    }

    /// `do_sync_mmap_readahead`.
    fn do_sync_mmap_readahead(&mut self, vmf: &Vmf, ino: InodeId) {
        let vma = vmf.vma;
        let index = vmf.pgoff;
        if vma.has(vmf::HUGEPAGE) {
            // Use the readahead code even if readahead is disabled: two PMD-sized folios from
            // the aligned index (one with VM_RAND_READ); ra->start is left as it was.
            let ra = &mut self.shmem.inodes[ino.index()].ra;
            ra.size = HPAGE_PMD_NR * if vma.has(VM_RAND_READ) { 1 } else { 2 };
            ra.async_size = HPAGE_PMD_NR;
            ra.order = HPAGE_PMD_ORDER;
            self.page_cache_ra_order(ino, index & !(HPAGE_PMD_NR - 1));
            return;
        }
        let ra = self.shmem.inodes[ino.index()].ra;
        if vma.has(VM_RAND_READ) || ra.ra_pages == 0 {
            return;
        }
        if vma.has(VM_SEQ_READ) {
            self.page_cache_sync_ra(ino, index, ra.ra_pages);
            return;
        }
        let ra = &mut self.shmem.inodes[ino.index()].ra;
        if ra.mmap_miss < MMAP_LOTSAMISS * 10 {
            ra.mmap_miss += 1;
        }
        if ra.mmap_miss > MMAP_LOTSAMISS {
            return;
        }
        if vma.has(vmf::EXEC) {
            // Executable mappings (commit 3b61a3f08949, "allow arch to request folio size for
            // exec memory"): from the fault on (x86's exec_folio_order is 0), clipped to the
            // VMA's end, nothing asynchronous.
            let vma_end = vma.pgoff + (vma.end - vma.start) / PAGE_SIZE;
            ra.order = 0;
            ra.start = index.max(vma.pgoff);
            ra.size = (ra.start + ra.ra_pages).min(vma_end) - ra.start;
            ra.async_size = 0;
        } else {
            // mmap read-around: ra_pages centred on the fault, a quarter of them asynchronous.
            ra.start = index.saturating_sub(ra.ra_pages / 2);
            ra.size = ra.ra_pages;
            ra.async_size = ra.ra_pages / 4;
            ra.order = 0;
        }
        let start = ra.start;
        self.page_cache_ra_order(ino, start);
    }

    /// `do_async_mmap_readahead`: true if the fault lock was dropped (the folio was marked).
    fn do_async_mmap_readahead(&mut self, vmf: &Vmf, ino: InodeId, id: FolioId) -> bool {
        let ra = &mut self.shmem.inodes[ino.index()].ra;
        if vmf.vma.has(VM_RAND_READ) || ra.ra_pages == 0 {
            return false;
        }
        ra.mmap_miss = ra.mmap_miss.saturating_sub(1);
        let req = ra.ra_pages;
        if !self.shmem.readahead.contains(&id) {
            return false;
        }
        self.page_cache_async_ra(ino, vmf.pgoff, id, req);
        true
    }

    /// `ractl_max_pages`: `ra_pages`, or up to `io_pages` for a larger request.
    fn ractl_max_pages(&self, ino: InodeId, req: u64) -> u64 {
        let ra_pages = self.shmem.inodes[ino.index()].ra.ra_pages;
        if req > ra_pages && BDI_IO_PAGES > ra_pages {
            req.min(BDI_IO_PAGES)
        } else {
            ra_pages
        }
    }

    /// `page_cache_sync_ra` for a `VM_SEQ_READ` mapping (mmap faults leave `prev_pos` unset,
    /// so only the start of the file or the traces of a stream in the cache count as
    /// sequential).
    fn page_cache_sync_ra(&mut self, ino: InodeId, index: u64, req: u64) {
        let max_pages = self.ractl_max_pages(ino, req);
        let (size, async_size) = if index == 0 || req > max_pages {
            let size = get_init_ra_size(req, max_pages);
            (size, if size > req { size - req } else { size >> 1 })
        } else {
            // page_cache_prev_miss(index - 1, max_pages): the cached run just before index.
            let mut contig = 0;
            let mut from_start = false;
            while contig < max_pages {
                if contig == index {
                    from_start = true;
                    break;
                }
                if self.filemap_get_folio(ino, index - 1 - contig).is_none() {
                    break;
                }
                contig += 1;
            }
            if contig <= req && !from_start {
                // A standalone, small random read: as is, without touching the state.
                self.do_page_cache_ra(ino, index, req, 0);
                return;
            }
            if from_start {
                contig *= 2;
            }
            ((contig + req).min(max_pages), 1)
        };
        let ra = &mut self.shmem.inodes[ino.index()].ra;
        ra.start = index;
        ra.size = size;
        ra.async_size = async_size;
        ra.order = 0;
        self.page_cache_ra_order(ino, index);
    }

    /// `page_cache_async_ra`: the marked folio `id` was reached at `index`; clear the mark and
    /// read the next window (the expected index: right after the current one, ramped up;
    /// otherwise from the next hole after `index`), two folio orders larger, its end
    /// rounded down to that folio size, the whole of it asynchronous again.
    fn page_cache_async_ra(&mut self, ino: InodeId, index: u64, id: FolioId, req: u64) {
        self.shmem.readahead.remove(&id);
        let max_pages = self.ractl_max_pages(ino, req);
        let nr = u64::from(self.folios.get(id).nr_pages());
        let ra = self.shmem.inodes[ino.index()].ra;
        let expected = (ra.start + ra.size - ra.async_size) & !(nr - 1);
        let (start, size) = if index == expected {
            (
                ra.start + ra.size,
                ra.size.max(get_next_ra_size(ra.size, max_pages)),
            )
        } else {
            // page_cache_next_miss(index + 1, max_pages)
            let mut miss = index + 1;
            while miss < index + 1 + max_pages && self.filemap_get_folio(ino, miss).is_some() {
                miss += 1;
            }
            if miss - index > max_pages {
                return;
            }
            (miss, get_next_ra_size(miss - index + req, max_pages))
        };
        let order = ra.order.saturating_add(2);
        let align = 1u64 << u32::from(order).min(max_pages.trailing_zeros());
        let end = start + size;
        let aligned_end = end & !(align - 1);
        let size = if aligned_end > start {
            size - (end - aligned_end)
        } else {
            size
        };
        let ra = &mut self.shmem.inodes[ino.index()].ra;
        ra.start = start;
        ra.size = size;
        ra.async_size = size;
        ra.order = order;
        self.page_cache_ra_order(ino, start);
    }

    /// `page_cache_ra_order`: the window `[start, start + ra.size)` (clipped to EOF) in folios
    /// of `ra.order` (capped by the mapping's largest order and the window), smaller where
    /// the index is not aligned or the folio would pass the end; the folio at
    /// `start + size - async_size` is marked. Stops at the first folio it cannot add (a page
    /// of it already cached, or no memory) and reads the rest with order-0 folios
    /// (`do_page_cache_ra`).
    fn page_cache_ra_order(&mut self, ino: InodeId, start: u64) {
        let pages = self.shmem.inodes[ino.index()].size.div_ceil(PAGE_SIZE);
        let ra = self.shmem.inodes[ino.index()].ra;
        if pages == 0 || ra.size == 0 {
            return;
        }
        let limit = (pages - 1).min(start + ra.size - 1);
        let mark = start + ra.size - ra.async_size;
        let new_order = ra
            .order
            .min(EXT4_MAX_FOLIO_ORDER)
            .min(u8::try_from(ra.size.ilog2()).unwrap_or(u8::MAX));
        self.shmem.inodes[ino.index()].ra.order = new_order;
        let mut index = start;
        let mut err = false;
        while index <= limit {
            let mut order = new_order;
            if index & ((1 << order) - 1) != 0 {
                order = u8::try_from(index.trailing_zeros()).unwrap_or(u8::MAX);
            }
            while order > 0 && index + (1 << order) - 1 > limit {
                order -= 1;
            }
            if !self.ra_alloc_folio(ino, index, mark, order) {
                err = true;
                break;
            }
            index += 1 << order;
        }
        if err && ra.size > index - start {
            self.do_page_cache_ra(ino, index, ra.size - (index - start), ra.async_size);
        }
    }

    /// `ra_alloc_folio`: a new folio of `order` at `index`, marked `PG_readahead` if it holds
    /// `mark` (rounded down to its size); false if a page of it is already cached
    /// (`filemap_add_folio`: -EEXIST) or there is no memory. Sparse files read as zeroes.
    fn ra_alloc_folio(&mut self, ino: InodeId, index: u64, mark: u64, order: u8) -> bool {
        let nr = 1u64 << order;
        if self.filemap_range_has_folio(ino, index, nr) {
            return false;
        }
        let Some(pfn) = self.alloc_charged_pages(order, RA_GFP) else {
            return false;
        };
        let id = self.folios.alloc(pfn, order, 0);
        if mark != u64::MAX && index == mark & !(nr - 1) {
            self.shmem.readahead.insert(id);
        }
        self.filemap_add_folio(ino, index, id);
        true
    }

    /// `do_page_cache_ra` + `page_cache_ra_unbounded`: `nr` order-0 folios from `index`
    /// (clipped to the page holding the last byte), skipping cached pages; the one at
    /// `index + nr - lookahead` marked (none when `lookahead` is 0).
    fn do_page_cache_ra(&mut self, ino: InodeId, index: u64, nr: u64, lookahead: u64) {
        let pages = self.shmem.inodes[ino.index()].size.div_ceil(PAGE_SIZE);
        if pages == 0 || index >= pages {
            return;
        }
        let nr = nr.min(pages - index);
        let mark = if lookahead == 0 {
            u64::MAX
        } else {
            index + nr - lookahead
        };
        for i in index..index + nr {
            if self.filemap_get_folio(ino, i).is_some() {
                continue;
            }
            if !self.ra_alloc_folio(ino, i, mark, 0) {
                break;
            }
        }
    }

    /// `force_page_cache_ra` (`POSIX_FADV_WILLNEED`, `MADV_WILLNEED` on a file VMA): up to
    /// `max(io_pages, ra_pages)` pages from `index`, in 2 MiB chunks of order-0 folios, no
    /// mark.
    pub(crate) fn force_page_cache_ra(&mut self, ino: InodeId, index: u64, nr: u64) {
        let ra_pages = self.shmem.inodes[ino.index()].ra.ra_pages;
        let mut nr = nr.min(BDI_IO_PAGES.max(ra_pages));
        let mut index = index;
        while nr > 0 {
            let chunk = nr.min(HPAGE_PMD_NR);
            self.do_page_cache_ra(ino, index, chunk, 0);
            index += chunk;
            nr -= chunk;
        }
    }

    /// `folio_mark_dirty` of a disk file's folio (`filemap_dirty_folio`): a clean folio
    /// becomes dirty and is accounted (`folio_account_dirtied`: `nr_dirtied`).
    pub(crate) fn folio_mark_dirty(&mut self, id: FolioId) {
        let f = self.folios.get_mut(id);
        if f.test(flags::DIRTY) {
            return;
        }
        f.flags |= flags::DIRTY;
        let nr = i64::from(f.nr_pages());
        self.vmstat.add(VmItem::NrDirtied, nr);
        self.vmstat.add(VmItem::NrDirty, nr);
    }

    /// `file_write_and_wait_range` of pages `[first, last]` of a disk file: every dirty folio
    /// overlapping it is cleaned for I/O (`folio_clear_dirty_for_io` → `folio_mkclean`) and
    /// written (`__folio_end_writeback`: `nr_written`). Nothing for shmem (no writeback).
    pub(crate) fn filemap_write_and_wait_range(&mut self, ino: InodeId, first: u64, last: u64) {
        if !self.inode_is_disk(ino) {
            return;
        }
        let from = self
            .filemap_get_folio(ino, first)
            .map_or(first, |(_, f0)| f0);
        let dirty: Vec<(u64, FolioId)> = self.shmem.inodes[ino.index()]
            .cache
            .range(from..=last)
            .map(|(&i, &id)| (i, id))
            .filter(|&(_, id)| self.folios.get(id).test(flags::DIRTY))
            .collect();
        for (f0, id) in dirty {
            self.folio_mkclean(ino, id, f0);
            let f = self.folios.get_mut(id);
            f.flags &= !flags::DIRTY;
            let nr = i64::from(f.nr_pages());
            self.vmstat.add(VmItem::NrWritten, nr);
            self.vmstat.add(VmItem::NrDirty, -nr);
        }
    }

    /// `folio_mkclean`: every PTE and PMD mapping the folio is write-protected and cleaned
    /// (`page_vma_mkclean_one`), so the next write goes through `page_mkwrite` again.
    fn folio_mkclean(&mut self, ino: InodeId, id: FolioId, first: u64) {
        let (pmds, ptes) = self.folio_file_mappings(ino, id, first);
        for (mmi, haddr) in pmds {
            let pmd = self.mms[mmi].pgt.pmd_mut(haddr).expect("pmd");
            pmd.set(WRITE, false);
            pmd.set(DIRTY, false);
        }
        for (mmi, addr, _) in ptes {
            let pte = self.mms[mmi].pgt.pte(addr);
            self.set_pte(mmi, addr, Pte(pte.0 & !(WRITE | DIRTY)));
        }
    }

    /// fsync(2) of an object (`vfs_fsync` → `ext4_sync_file`: the whole file written back;
    /// shmem's `noop_fsync` does nothing).
    /// A guest_memfd has no `fsync` file operation: `vfs_fsync_range` is EINVAL.
    pub fn fsync(&mut self, ino: InodeId) -> Result<(), Errno> {
        if self.is_gmem(ino) {
            return Err(Errno::EINVAL);
        }
        self.filemap_write_and_wait_range(ino, 0, u64::MAX);
        Ok(())
    }

    /// msync(2) (`mm/msync.c`): argument checks, then the VMAs of the range in order;
    /// `MS_SYNC` on a shared file VMA writes back its file range (`vfs_fsync_range`);
    /// `MS_INVALIDATE` on a locked VMA is EBUSY; holes in the range are skipped and reported
    /// as ENOMEM at the end (`MS_ASYNC` alone stops at the first hole).
    pub fn msync(&mut self, pid: Pid, start: u64, len: u64, flags: u32) -> Result<(), Errno> {
        if flags & !(MS_ASYNC | MS_INVALIDATE | MS_SYNC) != 0
            || start & (PAGE_SIZE - 1) != 0
            || (flags & MS_ASYNC != 0 && flags & MS_SYNC != 0)
        {
            return Err(Errno::EINVAL);
        }
        let len = crate::types::page_align_up(len);
        let end = start.checked_add(len).ok_or(Errno::ENOMEM)?;
        if end == start {
            return Ok(());
        }
        let mmi: MmId = self.mm_of(pid);
        let mut unmapped = false;
        let mut start = start;
        loop {
            // find_vma(): the first VMA ending after start.
            let Some(vma) = self.mms[mmi]
                .vmas
                .range(..end)
                .rev()
                .map(|(_, v)| *v)
                .take_while(|v| v.end > start)
                .last()
            else {
                return Err(Errno::ENOMEM);
            };
            if start < vma.start {
                if flags == MS_ASYNC {
                    return Err(Errno::ENOMEM);
                }
                start = vma.start;
                unmapped = true;
            }
            if flags & MS_INVALIDATE != 0 && vma.has(vmf::LOCKED) {
                return Err(Errno::EBUSY);
            }
            let fstart = vma.linear_page_index(start);
            let fend = vma.linear_page_index(end.min(vma.end) - 1);
            start = vma.end;
            if flags & MS_SYNC != 0 && vma.has(vmf::SHARED) {
                if let Some(ino) = vma.backing.inode() {
                    if self.is_gmem(ino) {
                        // vfs_fsync_range without an fsync operation.
                        return Err(Errno::EINVAL);
                    }
                    self.filemap_write_and_wait_range(ino, fstart, fend);
                }
            }
            if start >= end {
                return if unmapped { Err(Errno::ENOMEM) } else { Ok(()) };
            }
        }
    }

    /// `ext4_fallocate`: mode 0 and `KEEP_SIZE` allocate blocks (unwritten extents), not page
    /// cache, mode 0 extending i_size; `PUNCH_HOLE` (with `KEEP_SIZE`, else EOPNOTSUPP) drops
    /// the cached range, clipped to i_size (`ext4_punch_hole`: nothing at or beyond EOF).
    pub(crate) fn ext4_fallocate(
        &mut self,
        ino: InodeId,
        mode: FallocMode,
        offset: u64,
        len: u64,
    ) -> Result<(), Errno> {
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= EXT4_MAX_BYTES)
            .ok_or(Errno::EFBIG)?;
        let size = self.shmem.inodes[ino.index()].size;
        if mode.punch_hole {
            if !mode.keep_size {
                return Err(Errno::EOPNOTSUPP);
            }
            if offset >= size {
                return Ok(());
            }
            let end = end.min(size.next_multiple_of(PAGE_SIZE));
            self.truncate_pagecache_range(ino, offset, end);
            return Ok(());
        }
        if !mode.keep_size && end > size {
            self.shmem.inodes[ino.index()].size = end;
        }
        Ok(())
    }

    /// `MADV_WILLNEED` over `[start, end)` of a disk file VMA (`madvise_willneed` →
    /// `vfs_fadvise(POSIX_FADV_WILLNEED)` → `force_page_cache_ra`).
    pub(crate) fn madvise_willneed_file(&mut self, vma: &crate::mm::Vma, start: u64, end: u64) {
        match vma.backing {
            crate::mm::VmaBacking::File { inode } => {
                let index = vma.linear_page_index(start);
                self.force_page_cache_ra(inode, index, (end - start) >> PAGE_SHIFT);
            }
            crate::mm::VmaBacking::Shmem { inode } if !self.is_gmem(inode) => {
                self.shmem_swapin_range(inode, vma, start, end);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ra_sizes() {
        assert_eq!(get_next_ra_size(512, 2048), 1024);
        assert_eq!(get_next_ra_size(1024, 2048), 2048);
        assert_eq!(get_next_ra_size(2048, 2048), 2048);
        assert_eq!(get_next_ra_size(64, 2048), 256);
        assert_eq!(get_init_ra_size(2048, 2048), 2048);
        assert_eq!(get_init_ra_size(16, 2048), 64);
        assert_eq!(get_init_ra_size(300, 2048), 1024);
    }
}
