//! Page faults on shmem VMAs, after the file-fault part of `mm/memory.c` and
//! `filemap_map_pages` of `mm/filemap.c` (Linux 6.18): `do_fault` → `do_read_fault` (with
//! fault-around, `do_fault_around`), `do_cow_fault` (a private write: the page-cache folio is
//! looked up or allocated, then copied to a new anonymous page) or `do_shared_fault` (then
//! `fault_dirty_shared_page`); `__do_fault` (`shmem_fault`); `finish_fault` (which maps the
//! whole large folio for shmem since 6.17, when it fits the VMA and the page table);
//! `set_pte_range`; `do_set_pmd` (a PMD-sized folio under an empty PMD, no deposited table on
//! x86-64); and `wp_page_shared`.
//!
//! PTE permissions follow `vm_page_prot`: a shared writable mapping of shmem needs no write
//! notification (no `page_mkwrite`, no writeback), so even a read fault maps the page
//! writable, unless the VMA is registered for uffd-wp; a private mapping maps page-cache pages
//! read-only.

use crate::errno::Errno;
use crate::fault::{VmFault, Vmf};
use crate::folio::{flags, FolioId};
use crate::ids::InodeId;
use crate::mm::{vmf, MmCounter};
use crate::pgtable::{pte_index, Pmd, Pte, DIRTY, UFFD_WP, WRITE, YOUNG};
use crate::rmap::RmapLevel;
use crate::shmem::Sgp;
use crate::types::{HPAGE_PMD_NR, HPAGE_PMD_ORDER, PAGE_SHIFT, PAGE_SIZE, PMD_MASK, PTRS_PER_PTE};
use crate::util::page_u32;
use crate::vmstat::VmItem;
use crate::Kernel;

/// Whether `vm_page_prot` of a shmem VMA is writable: shared and writable, and no write
/// notification wanted (`vma_wants_writenotify`: shmem has no `page_mkwrite` and no writeback,
/// but a uffd-wp registration asks for write faults; `userfaultfd_set_vm_flags` recomputes the
/// protection, so pages a read maps after it are read-only and a later write takes
/// `wp_page_shared`).
/// A disk file always wants it (`ext4_file_vm_ops` has `page_mkwrite`, and the inode writes
/// back): read faults map its pages read-only and the first write faults.
fn vma_shared_writable_no_notify(vma: &crate::mm::Vma) -> bool {
    vma.has(vmf::SHARED)
        && vma.has(vmf::WRITE)
        && !vma.has(vmf::UFFD_WP)
        && !matches!(vma.backing, crate::mm::VmaBacking::File { .. })
}

/// Whether a fault maps a shmem page writable: by `vm_page_prot`, or for a write fault
/// whatever it says (`maybe_mkwrite` / `maybe_pmd_mkwrite`: VM_WRITE of a shared VMA is
/// enough).
fn fault_maps_writable(vma: &crate::mm::Vma, write_fault: bool) -> bool {
    vma_shared_writable_no_notify(vma)
        || (write_fault && vma.has(vmf::SHARED) && vma.has(vmf::WRITE))
}

/// `fault_around_bytes` (64 KiB, debugfs) in pages.
const FAULT_AROUND_PAGES: u64 = 16;

impl Kernel {
    /// `do_fault`: a fault on a none PTE of a shmem VMA.
    pub(crate) fn do_fault(&mut self, vmf: &mut Vmf, ino: InodeId) -> VmFault {
        if !vmf.is_write() {
            self.do_read_fault(vmf, ino)
        } else if !vmf.vma.has(vmf::SHARED) {
            self.do_cow_fault(vmf, ino)
        } else {
            self.do_shared_fault(vmf, ino)
        }
    }

    /// `do_read_fault`: fault-around first (unless uffd-wp/minor armed), then the page.
    /// A guest_memfd VMA has no `map_pages`, so no fault-around.
    fn do_read_fault(&mut self, vmf: &mut Vmf, ino: InodeId) -> VmFault {
        if !vmf.vma.has(vmf::UFFD_WP | vmf::UFFD_MINOR)
            && !self.is_gmem(ino)
            && self.do_fault_around(vmf, ino)
        {
            return VmFault::Done;
        }
        match self.do_fault_folio(vmf, ino) {
            Ok(folio) => self.finish_fault(vmf, folio, None),
            Err(r) => r,
        }
    }

    /// `do_cow_fault`: the private copy of the page-cache page.
    fn do_cow_fault(&mut self, vmf: &mut Vmf, ino: InodeId) -> VmFault {
        self.vmf_anon_prepare(vmf);
        let Some(cow) = self.alloc_anon_folio_order(0, crate::page_alloc::Gfp::HIGHUSER_MOVABLE)
        else {
            return VmFault::Oom;
        };
        let folio = match self.do_fault_folio(vmf, ino) {
            Ok(f) => f,
            Err(r) => {
                self.free_folio(cow);
                return r;
            }
        };
        let idx = self.folio_page_of(folio, vmf.pgoff);
        self.vmstat.count(VmItem::SimCowCopiedPages);
        if self.folios.is_nonzero(folio, idx) {
            self.folios.set_nonzero(cow, 0);
        }
        self.finish_fault(vmf, folio, Some(cow))
    }

    /// `do_shared_fault`: map the page-cache page, then `fault_dirty_shared_page`.
    fn do_shared_fault(&mut self, vmf: &mut Vmf, ino: InodeId) -> VmFault {
        let folio = match self.do_fault_folio(vmf, ino) {
            Ok(f) => f,
            Err(r) => return r,
        };
        let disk = matches!(vmf.vma.backing, crate::mm::VmaBacking::File { .. });
        if disk {
            // do_page_mkwrite → ext4_page_mkwrite: the folio is dirtied before it is mapped.
            self.folio_mark_dirty(folio);
        }
        let r = self.finish_fault(vmf, folio, None);
        if r == VmFault::Done && !disk {
            self.folios.get_mut(folio).flags |= flags::DIRTY;
        }
        r
    }

    /// `__do_fault` → `shmem_fault`: the folio caching the faulting index (allocated per the
    /// huge policy if absent); beyond i_size SIGBUS, and so is a full tmpfs instance
    /// (`vmf_error` of ENOSPC). In a VMA registered for MISSING faults
    /// an index absent from the page cache is the monitor's to fill (`shmem_get_folio_gfp`
    /// calls `handle_userfault` where it would allocate): a none PTE over a cached page is
    /// no missing fault. In a VMA registered for MINOR faults a cached index (fallocated
    /// folios too) is a minor fault, raised before the folio is looked at further.
    fn do_fault_folio(&mut self, vmf: &mut Vmf, ino: InodeId) -> Result<FolioId, VmFault> {
        let index = vmf.pgoff;
        if self.is_gmem(ino) {
            return self.kvm_gmem_fault_user_mapping(ino, index);
        }
        let vma = vmf.vma;
        if let crate::mm::VmaBacking::File { .. } = vma.backing {
            // ext4_file_vm_ops.fault (no userfaultfd registration reaches a disk file VMA).
            return self.filemap_fault(vmf, ino);
        }
        if vma.has(vmf::UFFD_MISSING | vmf::UFFD_MINOR)
            && index < self.shmem_inode(ino).size.div_ceil(PAGE_SIZE)
        {
            let write = if vmf.is_write() {
                crate::userfaultfd_ctx::FLAG_WRITE
            } else {
                0
            };
            // A swap entry is an entry too: MINOR, and no MISSING fault.
            let cached = self.filemap_get_folio(ino, index).is_some()
                || self.shmem_inode(ino).swap_entry(index).is_some();
            if cached && vma.has(vmf::UFFD_MINOR) {
                return Err(VmFault::Userfault(
                    write | crate::userfaultfd_ctx::FLAG_MINOR,
                ));
            }
            if !cached && vma.has(vmf::UFFD_MISSING) {
                return Err(VmFault::Userfault(write));
            }
        }
        match self.shmem_get_folio_gfp(ino, index, 0, Some((vmf.mm, &vma, vmf.address)), Sgp::Cache)
        {
            Ok((f, major)) => {
                if major {
                    // shmem_swapin_folio read it: VM_FAULT_MAJOR, PGMAJFAULT.
                    vmf.flags = vmf.flags.with(crate::fault::FaultFlags::MAJOR);
                    self.vmstat.count(VmItem::Pgmajfault);
                }
                Ok(f)
            }
            Err(Errno::EINVAL | Errno::ENOSPC) => Err(VmFault::Sigbus),
            Err(_) => Err(VmFault::Oom),
        }
    }

    /// The page index inside its folio of file page `index`.
    pub(crate) fn folio_page_of(&self, folio: FolioId, index: u64) -> u32 {
        let first = self.shmem.owner[&folio].1;
        page_u32(index - first)
    }

    /// `finish_fault`: map the faulting page (or, for shmem outside uffd, the whole folio when
    /// it lies inside the VMA and this page table and no PTE of it is set), or the COW copy.
    fn finish_fault(&mut self, vmf: &mut Vmf, folio: FolioId, cow: Option<FolioId>) -> VmFault {
        let (mmi, addr) = (vmf.mm, vmf.address);
        let vma = vmf.vma;
        // kvm_gmem_fault_user_mapping hands back one page (vmf->page): no PMD, no whole
        // folio.
        let gmem = self.is_gmem(self.shmem.owner[&folio].0);
        if self.mms[mmi].pgt.pmd(addr).is_none() {
            if cow.is_none() && !gmem && self.do_set_pmd(vmf, folio) {
                return VmFault::Done;
            }
            if !self.pte_alloc(mmi, addr) {
                // do_cow_fault drops the copy when finish_fault fails (here: no memory for
                // the PTE table under OOM), or it would stay allocated with no reference.
                if let Some(cow) = cow {
                    self.free_folio(cow);
                }
                return VmFault::Oom;
            }
        }
        if !self.mms[mmi].pgt.pmd(addr).is_table() {
            // A PMD appeared (the fault raced with nothing in the model; be safe).
            if let Some(cow) = cow {
                self.free_folio(cow);
            }
            return VmFault::Done;
        }
        if let Some(cow) = cow {
            if !self.mms[mmi].pgt.pte(addr).is_none() && !vmf.orig_pte_uffd_wp() {
                self.free_folio(cow);
                return VmFault::Done;
            }
            let mut bits = YOUNG | DIRTY | crate::pgtable::EXCLUSIVE;
            if vma.has(vmf::WRITE) {
                bits |= WRITE;
            }
            if vmf.orig_pte_uffd_wp() {
                bits = (bits | UFFD_WP) & !WRITE;
            }
            self.set_pte(mmi, addr, Pte::page(cow, 0, bits));
            self.folio_add_new_anon_rmap(cow, RmapLevel::Pte, mmi);
            self.mms[mmi].add_mm_counter(MmCounter::AnonPages, 1);
            return VmFault::Done;
        }
        let index = vma.linear_page_index(addr);
        let idx = self.folio_page_of(folio, index);
        let nr = self.folios.get(folio).nr_pages();
        let (mut first, mut n, mut start) = (idx, 1u32, addr);
        if nr > 1 && !vma.uffd_armed() && !gmem {
            let vma_off = index - vma.pgoff;
            let pte_off = pte_index(addr) as u64;
            let (i, left) = (u64::from(idx), u64::from(nr - idx));
            let fits = vma_off >= i
                && vma_off + left <= vma.len() >> PAGE_SHIFT
                && pte_off >= i
                && pte_off + left <= PTRS_PER_PTE as u64;
            let s = addr - u64::from(idx) * PAGE_SIZE;
            if fits
                && (0..u64::from(nr)).all(|k| self.mms[mmi].pgt.pte(s + k * PAGE_SIZE).is_none())
            {
                (first, n, start) = (0, nr, s);
            }
        }
        if n == 1 && self.mms[mmi].pgt.pte(addr) != vmf.orig_pte {
            return VmFault::Done;
        }
        self.set_pte_range(vmf, folio, first, n, start);
        VmFault::Done
    }

    /// `set_pte_range` for page-cache pages `[first, first + n)` of `folio` at `start`.
    fn set_pte_range(&mut self, vmf: &Vmf, folio: FolioId, first: u32, n: u32, start: u64) {
        let mmi = vmf.mm;
        let vma = vmf.vma;
        let mut bits = YOUNG;
        let writable = vma_shared_writable_no_notify(&vma);
        // Only read faults and fault-around honour the write notification.
        if fault_maps_writable(&vma, vmf.is_write()) {
            bits |= WRITE;
        }
        if vmf.is_write() || (writable && self.folios.get(folio).test(flags::DIRTY)) {
            bits |= DIRTY;
        }
        if vmf.orig_pte_uffd_wp() {
            bits = (bits | UFFD_WP) & !WRITE;
        }
        for k in 0..n {
            self.set_pte(
                mmi,
                start + u64::from(k) * PAGE_SIZE,
                Pte::page(folio, first + k, bits),
            );
        }
        self.folio_add_file_rmap_ptes(folio, first, n, mmi);
        self.mms[mmi].add_mm_counter(MmCounter::ShmemPages, i64::from(n));
    }

    /// `do_set_pmd`: map a PMD-sized page-cache folio with one PMD. False (fallback) if the
    /// VMA refuses huge mappings (`VM_NOHUGEPAGE`, prctl disabled completely), the block is
    /// not suitable (inside the VMA, file offset aligned), or the folio is smaller.
    pub(crate) fn do_set_pmd(&mut self, vmf: &Vmf, folio: FolioId) -> bool {
        let (mmi, vma) = (vmf.mm, vmf.vma);
        let haddr = vmf.address & PMD_MASK;
        if vma.has(vmf::NOHUGEPAGE)
            || self.mms[mmi].thp_disable == crate::mm::ThpDisable::Completely
            || !crate::huge_memory::thp_vma_suitable_order(&vma, haddr, HPAGE_PMD_ORDER)
            || self.folios.get(folio).order != HPAGE_PMD_ORDER
            || !self.mms[mmi].pgt.pmd(haddr).is_none()
        {
            return false;
        }
        let mut bits = YOUNG;
        if fault_maps_writable(&vma, vmf.is_write()) {
            bits |= WRITE;
        }
        if vmf.is_write() {
            bits |= DIRTY;
        }
        *self.mms[mmi].pgt.pmd_mut(haddr).expect("pmd table") = Pmd::thp(folio, bits);
        self.mms[mmi].add_mm_counter(MmCounter::ShmemPages, i64::from(HPAGE_PMD_NR));
        self.folio_add_file_rmap_pmd(folio, mmi);
        self.vmstat.count(VmItem::ThpFileMapped);
        true
    }

    /// `do_fault_around` + `filemap_map_pages`: map the uptodate page-cache pages already
    /// cached around the fault (a `fault_around_bytes` aligned window clipped to the VMA and
    /// the page table); true if the faulting page got mapped.
    fn do_fault_around(&mut self, vmf: &mut Vmf, ino: InodeId) -> bool {
        let (mmi, addr) = (vmf.mm, vmf.address);
        let vma = vmf.vma;
        let index = vma.linear_page_index(addr);
        let pte_off = pte_index(addr) as u64;
        let vma_off = index - vma.pgoff;
        let from = (pte_off & !(FAULT_AROUND_PAGES - 1)).max(pte_off - pte_off.min(vma_off));
        let to = (from + FAULT_AROUND_PAGES)
            .min(PTRS_PER_PTE as u64)
            .min(pte_off + (vma.len() >> PAGE_SHIFT) - vma_off)
            - 1;
        let (start_pgoff, mut end_pgoff) = (index + from - pte_off, index + to - pte_off);
        let eof = self.shmem_inode(ino).size.div_ceil(PAGE_SIZE);
        // next_uptodate_folio(): cached, uptodate, not PG_readahead (its fault starts the
        // next readahead), below i_size.
        let mut folios: Vec<(u64, FolioId)> = Vec::new();
        let mut i = start_pgoff;
        while i <= end_pgoff {
            match self.filemap_get_folio(ino, i) {
                Some((id, f0)) => {
                    if !self.shmem.not_uptodate.contains(&id)
                        && !self.shmem.readahead.contains(&id)
                        && i < eof
                    {
                        folios.push((f0, id));
                    }
                    i = f0 + u64::from(self.folios.get(id).nr_pages());
                }
                None => i += 1,
            }
        }
        let Some(&(h0, head)) = folios.first() else {
            return false;
        };
        // Large mappings (a PMD, a whole large folio) must not reach past i_size, or a
        // fault beyond it would find a page instead of SIGBUS; shmem has always mapped
        // PMDs across it (commit 74207de2ba10 and its fix "Fix logic around SIGBUS in
        // filemap_map_pages()", 6.18). The test is `file_end >= folio_next_index(folio)`
        // with `file_end` the last page's index, so a folio that ends exactly at EOF fails
        // it too (measured: conformance 531).
        let shmem = !self.inode_is_disk(ino);
        let can_map_large = |f0: u64, nr: u64| shmem || f0 + nr < eof;
        // filemap_map_pmd()
        if self.mms[mmi].pgt.pmd(addr).is_huge() {
            return true;
        }
        if self.mms[mmi].pgt.pmd(addr).is_none() {
            let nr = u64::from(self.folios.get(head).nr_pages());
            if !can_map_large(h0, nr) {
                // filemap_map_pmd() is skipped, so no PTE table is installed either:
                // pte_offset_map_lock() finds none and nothing is mapped here.
                return false;
            }
            if self.do_set_pmd(vmf, head) {
                return true;
            }
            if !self.pte_alloc(mmi, addr) {
                return false;
            }
        }
        end_pgoff = end_pgoff.min(eof.saturating_sub(1));
        let (mut mapped_fault, mut mapped) = (false, 0u64);
        let vma_end_pgoff = vma.pgoff + (vma.len() >> PAGE_SHIFT);
        for (f0, id) in folios {
            let nr = u64::from(self.folios.get(id).nr_pages());
            let (mut a, mut b) = (f0.max(start_pgoff), (f0 + nr - 1).min(end_pgoff));
            // filemap_map_folio_range() (6.18): a large folio inside the VMA, one page
            // table and (not for shmem) i_size is mapped whole.
            if nr > 1 && can_map_large(f0, nr) && f0 >= vma.pgoff && f0 + nr <= vma_end_pgoff {
                let va0 = vma.start + ((f0 - vma.pgoff) << PAGE_SHIFT);
                if va0 & PMD_MASK == (va0 + nr * PAGE_SIZE - 1) & PMD_MASK {
                    (a, b) = (f0, f0 + nr - 1);
                }
            }
            let mut p = a;
            while p <= b {
                let va = vma.start + ((p - vma.pgoff) << PAGE_SHIFT);
                if !self.mms[mmi].pgt.pte(va).is_none() {
                    p += 1;
                    continue;
                }
                // A run of none PTEs of this folio (one set_pte_range each).
                let mut q = p;
                while q < b
                    && self.mms[mmi]
                        .pgt
                        .pte(va + (q + 1 - p) * PAGE_SIZE)
                        .is_none()
                {
                    q += 1;
                }
                if (p..=q).contains(&index) {
                    mapped_fault = true;
                }
                let read = Vmf {
                    flags: crate::fault::FaultFlags::for_access(false),
                    ..*vmf
                };
                self.set_pte_range(&read, id, page_u32(p - f0), page_u32(q - p + 1), va);
                mapped += q - p + 1;
                p = q + 1;
            }
        }
        // filemap_map_pages: the pages mapped count against the file's mmap_miss.
        let ra = &mut self.shmem.inodes[ino.index()].ra;
        ra.mmap_miss = ra
            .mmap_miss
            .saturating_sub(u32::try_from(mapped).unwrap_or(u32::MAX));
        mapped_fault
    }

    /// `wp_page_shared` → `wp_page_reuse`: a write to a read-only PTE of a shared mapping
    /// makes it writable and dirty, and dirties the folio.
    /// A disk file's folio goes through `do_page_mkwrite` (`ext4_page_mkwrite`, which dirties
    /// it with the dirty accounting) first.
    pub(crate) fn wp_page_shared(&mut self, vmf: &Vmf, pte: Pte) -> VmFault {
        self.set_pte(vmf.mm, vmf.address, Pte(pte.0 | WRITE | DIRTY | YOUNG));
        if pte.is_page() && matches!(vmf.vma.backing, crate::mm::VmaBacking::File { .. }) {
            self.folio_mark_dirty(pte.folio());
        } else if pte.is_page() {
            self.folios.get_mut(pte.folio()).flags |= flags::DIRTY;
        }
        self.vmstat.count(VmItem::Pgreuse);
        VmFault::Done
    }
}
