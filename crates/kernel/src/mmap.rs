//! mmap(2)/munmap(2) and the VMA surgery they share with mprotect and madvise, after
//! `mm/mmap.c`, `mm/vma.c` and the unmap part of `mm/memory.c` (Linux 6.18): `do_mmap` with
//! `MAP_FIXED_NOREPLACE` placement (the scenario engine chooses addresses) or `MAP_FIXED`
//! over whatever is mapped there (`__mmap_region` unmaps the old range first, as
//! `do_vmi_munmap` does), VMA merging of a new mapping, `__split_vma` (which splits a huge PMD straddling the split point),
//! `do_vmi_munmap`, `zap_pte_range`/`zap_huge_pmd` (rmap batched per folio and page table, as
//! the kernel's TLB gather does) and `free_pgtables`.
//!
//! Shared anonymous mappings are shmem (`shmem_zero_setup`: a new inode of the mapping's
//! size, `vm_pgoff` 0); `mmap_shmem` maps an existing shmem object (memfd).

use crate::errno::Errno;
use crate::gup::Foll;
use crate::ids::MmId;
use crate::mm::MmCounter;
use crate::mm::{prot_to_vmflags, vmf, Vma, VmaBacking};
use crate::pgtable::{pte_index, Pmd, Pte};
use crate::types::{
    is_page_aligned, page_align_up, Pid, Prot, HPAGE_PMD_NR, PAGE_SHIFT, PAGE_SIZE, PMD_MASK,
    PMD_SIZE, PUD_SIZE, TASK_SIZE,
};
use crate::util::to_u32;
use crate::Kernel;

/// mmap(2) flags the model understands (besides `MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapFlags {
    pub shared: bool,
    pub populate: bool,
    /// `MAP_FIXED` instead of `MAP_FIXED_NOREPLACE`: whatever is mapped in the range is
    /// unmapped first (`Kernel::mmap_fixed_unmap`).
    pub fixed: bool,
}

impl Kernel {
    /// `mmap(addr, len, prot, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE [|MAP_POPULATE])`.
    pub fn mmap(
        &mut self,
        pid: Pid,
        addr: u64,
        len: u64,
        prot: Prot,
        flags: MapFlags,
    ) -> Result<u64, Errno> {
        let backing = if flags.shared {
            let len = page_align_up(len);
            let ino = self.shmem_new_inode(len, None, true);
            Some((ino, 0))
        } else {
            None
        };
        self.do_mmap(pid, addr, len, prot, flags, backing)
    }

    /// mmap(2) of `/dev/zero` (`mmap_zero`, drivers/char/mem.c): shared is
    /// `shmem_zero_setup`, exactly what `MAP_SHARED|MAP_ANONYMOUS` does; private an anonymous
    /// VMA that keeps `/dev/zero` as its file (`VmaBacking::DevZero`, file offset 0).
    pub fn mmap_dev_zero(
        &mut self,
        pid: Pid,
        addr: u64,
        len: u64,
        prot: Prot,
        flags: MapFlags,
    ) -> Result<u64, Errno> {
        if flags.shared {
            return self.mmap(pid, addr, len, prot, flags);
        }
        self.do_mmap_backing(pid, addr, len, prot, flags, 0, VmaBacking::DevZero)
    }

    /// mmap(2) of `file`: a shmem object and a byte offset in it (`MAP_SHARED` or
    /// `MAP_PRIVATE`).
    pub fn mmap_shmem(
        &mut self,
        pid: Pid,
        addr: u64,
        len: u64,
        prot: Prot,
        flags: MapFlags,
        file: (crate::ids::InodeId, u64),
    ) -> Result<u64, Errno> {
        let (ino, offset) = file;
        if !is_page_aligned(offset) {
            return Err(Errno::EINVAL);
        }
        if self.is_gmem(ino) {
            // do_mmap: the guest_memfd mount is MNT_NOEXEC (path_noexec), so PROT_EXEC is
            // EPERM before the file's mmap runs; then call_mmap → kvm_gmem_mmap.
            if prot.exec {
                return Err(Errno::EPERM);
            }
            // kvm_gmem_mmap is the file's `mmap` hook, called after MAP_FIXED's unmap of the
            // old range (`vms_clean_up_area` before `mmap_file`): when it refuses, the old
            // mapping is gone all the same (`vms_abort_munmap_vmas` cannot restore it).
            self.mmap_fixed_unmap(pid, addr, len, flags)?;
            self.kvm_gmem_mmap(ino, flags.shared)?;
        }
        self.do_mmap(
            pid,
            addr,
            len,
            prot,
            flags,
            Some((ino, offset >> PAGE_SHIFT)),
        )
    }

    /// `do_mmap`: a private anonymous VMA, or one backed by shmem inode and page offset.
    fn do_mmap(
        &mut self,
        pid: Pid,
        addr: u64,
        len: u64,
        prot: Prot,
        flags: MapFlags,
        file: Option<(crate::ids::InodeId, u64)>,
    ) -> Result<u64, Errno> {
        let (pgoff, backing) = match file {
            Some((inode, pgoff)) if self.inode_is_disk(inode) => {
                (pgoff, VmaBacking::File { inode })
            }
            Some((inode, pgoff)) => (pgoff, VmaBacking::Shmem { inode }),
            None => (addr >> PAGE_SHIFT, VmaBacking::Anon),
        };
        self.do_mmap_backing(pid, addr, len, prot, flags, pgoff, backing)
    }

    /// `mmap_region`: a new VMA of `backing` at file page offset `pgoff`.
    #[allow(clippy::too_many_arguments)]
    fn do_mmap_backing(
        &mut self,
        pid: Pid,
        addr: u64,
        len: u64,
        prot: Prot,
        flags: MapFlags,
        pgoff: u64,
        backing: VmaBacking,
    ) -> Result<u64, Errno> {
        if len == 0 || !is_page_aligned(addr) {
            return Err(Errno::EINVAL);
        }
        let len = page_align_up(len);
        let end = addr
            .checked_add(len)
            .filter(|e| *e <= TASK_SIZE)
            .ok_or(Errno::ENOMEM)?;
        self.mmap_fixed_unmap(pid, addr, len, flags)?;
        let mmi = self.mm_of(pid);
        if !self.mms[mmi].vma_starts_in(addr, end).is_empty() {
            return Err(Errno::EEXIST);
        }
        // accountable_mapping(): private and writable (no MAP_NORESERVE in the model).
        let account = if prot.write && !flags.shared {
            vmf::ACCOUNT
        } else {
            0
        };
        let shared = if flags.shared { vmf::SHARED } else { 0 };
        let vma = Vma {
            start: addr,
            end,
            flags: prot_to_vmflags(prot) | account | shared,
            anon_vma: None,
            pgoff,
            backing,
            swap_readahead_info: 0,
        };
        self.mms[mmi].vmas.insert(addr, vma);
        self.mms[mmi].invalidate_vma_cache();
        self.mms[mmi].merge_range(addr, end, self.profile.switches.anon_vma_dup_merge);
        let merged = self.mms[mmi].vma_at(addr).copied().expect("new vma");
        self.khugepaged_enter_vma(mmi, &merged, merged.flags);
        if flags.populate {
            // __mm_populate: errors are ignored, mmap still succeeds.
            let _ = self.mm_populate(pid, addr, end);
        }
        Ok(addr)
    }

    /// The unmap half of a `MAP_FIXED` mmap (`__mmap_setup` gathering the overlapped VMAs,
    /// `vms_complete_munmap_vmas` / `vms_clean_up_area` unmapping them): exactly
    /// `do_vmi_munmap` of `[addr, addr + len)` — VMAs split at both ends (a huge PMD across
    /// an end split first), PTEs and PMDs zapped (a THP left partly mapped goes on the
    /// deferred-split queue), swap slots freed, page tables no VMA covers any more freed. The
    /// uffd registration and `VM_LOCKED` of the replaced range go with its VMAs. Nothing
    /// happens without `MAP_FIXED` (the caller then refuses an occupied range with EEXIST),
    /// and a second call for the same mmap finds the range empty. A hugetlb VMA the range
    /// would split off a huge page boundary fails it with EINVAL (`hugetlb_vm_op_split`) and
    /// leaves everything mapped. Unmapping before the new VMA exists gives the page tables
    /// the kernel's result: `free_pgtables` there is bounded by the VMAs around the old
    /// range, never by the new one.
    pub(crate) fn mmap_fixed_unmap(
        &mut self,
        pid: Pid,
        addr: u64,
        len: u64,
        flags: MapFlags,
    ) -> Result<(), Errno> {
        if !flags.fixed {
            return Ok(());
        }
        self.munmap(pid, addr, len)
    }

    /// `munmap(addr, len)`.
    pub fn munmap(&mut self, pid: Pid, addr: u64, len: u64) -> Result<(), Errno> {
        if !is_page_aligned(addr) || len == 0 {
            return Err(Errno::EINVAL);
        }
        let len = page_align_up(len);
        let end = addr
            .checked_add(len)
            .filter(|e| *e <= TASK_SIZE)
            .ok_or(Errno::EINVAL)?;
        let mmi = self.mm_of(pid);
        if self.mms[mmi].vma_starts_in(addr, end).is_empty() {
            return Ok(());
        }
        self.split_vma_range(mmi, addr, end)?;
        self.hugetlb_unmap_vmas(mmi, addr, end);
        for start in self.mms[mmi].vma_starts_in(addr, end) {
            let vma = self.mms[mmi].vmas.remove(&start).expect("vma");
            self.mms[mmi].invalidate_vma_cache();
            self.zap_range(mmi, vma.start, vma.end);
        }
        self.free_pgtables(mmi, addr, end);
        self.shmem_release_unmapped();
        self.hugetlb_release_unmapped();
        Ok(())
    }

    /// `__split_vma` at `addr` if a VMA straddles it; splits a huge PMD across the boundary
    /// first (`vma_adjust_trans_huge`).
    /// `vma_modify_flags`: applies `f` to the flags of every VMA part in `[start, end)`,
    /// splitting VMAs whose flags change at the range boundaries and merging afterwards
    /// (`Mm::merge_modified`).
    pub(crate) fn vma_modify_flags(
        &mut self,
        mmi: MmId,
        start: u64,
        end: u64,
        f: impl Fn(u32) -> u32,
    ) {
        let mut changed = Vec::new();
        for s in self.mms[mmi].vma_starts_in(start, end) {
            let v = self.mms[mmi].vmas[&s];
            let nf = f(v.flags);
            if nf == v.flags {
                continue;
            }
            let (a, b) = (start.max(v.start), end.min(v.end));
            self.split_vma_at(mmi, a);
            self.split_vma_at(mmi, b);
            self.mms[mmi].vmas.get_mut(&a).expect("vma").flags = nf;
            self.mms[mmi].invalidate_vma_cache();
            changed.push(a);
        }
        let merged =
            self.mms[mmi].merge_modified(&changed, self.profile.switches.anon_vma_dup_merge);
        self.khugepaged_enter_merged(mmi, &merged);
    }

    pub(crate) fn split_vma_at(&mut self, mmi: MmId, addr: u64) {
        let Some(vma) = self.mms[mmi].vma_at(addr).copied() else {
            return;
        };
        if vma.start == addr {
            return;
        }
        self.split_huge_pmd_if_needed(mmi, &vma, addr);
        let mm = &mut self.mms[mmi];
        let lo = mm.vmas.get_mut(&vma.start).expect("vma");
        lo.end = addr;
        let hi = Vma {
            start: addr,
            end: vma.end,
            flags: vma.flags,
            anon_vma: vma.anon_vma,
            pgoff: vma.pgoff + ((addr - vma.start) >> PAGE_SHIFT),
            ..vma
        };
        mm.vmas.insert(addr, hi);
        mm.invalidate_vma_cache();
    }

    /// Unmaps every page in `[start, end)` (which lies inside one former VMA): `unmap_vmas`.
    /// A huge PMD only partly inside the range is split first.
    pub(crate) fn zap_range(&mut self, mmi: MmId, start: u64, end: u64) {
        self.zap_range_details(mmi, start, end, false, None);
    }

    /// MADV_DONTNEED of `[start, end)` inside one VMA (`madvise_dontneed_single_vma`): a zap
    /// whose `zap_details` ask for empty PTE tables to be reclaimed when the kernel has
    /// `CONFIG_PT_RECLAIM` (the `pt_reclaim` switch).
    pub(crate) fn madvise_dontneed_range(&mut self, mmi: MmId, start: u64, end: u64) {
        let reclaim_pt = self.profile.switches.pt_reclaim;
        let vma = self.mms[mmi].vma_at(start).copied();
        let keep_markers = vma.filter(|v| !v.is_anonymous());
        self.zap_range_details(mmi, start, end, reclaim_pt, keep_markers);
    }

    /// The zap walk (`zap_pmd_range` → `zap_huge_pmd` / `zap_pte_range`). With `reclaim_pt`, a
    /// PTE table whose whole 2 MiB lies in the range is freed once zapped: `zap_pte_range`
    /// only tries when `end - start >= PMD_SIZE` for that table (`reclaim_pt_is_enabled`),
    /// and for anonymous memory it skips no entry (uffd-wp markers of an anonymous VMA are
    /// dropped, none are installed), so the table is then empty and `try_to_free_pte` (or its
    /// lock-free fast path) clears the PMD and frees the table.
    ///
    /// `keep_markers` is the file VMA of a MADV_DONTNEED: it keeps the uffd-wp markers there
    /// and leaves one where a write-protected PTE of a uffd-wp file VMA was
    /// (`zap_install_uffd_wp_if_needed`); `None` is `unmap_vmas` (munmap, exit, mremap's
    /// unmap of the destination: `ZAP_FLAG_DROP_MARKER`) or an anonymous VMA, where markers
    /// go.
    fn zap_range_details(
        &mut self,
        mmi: MmId,
        start: u64,
        end: u64,
        reclaim_pt: bool,
        keep_markers: Option<Vma>,
    ) {
        let mut slot = start & PMD_MASK;
        while let Some(next) = self.next_pmd_slot(mmi, slot, end) {
            slot = next;
            let s = start.max(slot);
            let e = end.min(slot + PMD_SIZE);
            let pmd = self.mms[mmi].pgt.pmd(slot);
            if pmd.is_huge() {
                if s == slot && e == slot + PMD_SIZE {
                    self.zap_huge_pmd(mmi, slot);
                } else {
                    self.split_huge_pmd(mmi, slot);
                    // A file PMD's split left nothing mapped.
                    if self.mms[mmi].pgt.pmd(slot).is_table() {
                        self.zap_pte_range(mmi, s, e, keep_markers.as_ref());
                    }
                }
            } else if pmd.is_table() {
                self.zap_pte_range(mmi, s, e, keep_markers.as_ref());
                // try_to_free_pte() frees only an empty table (markers kept in a file VMA
                // keep it).
                if reclaim_pt
                    && s == slot
                    && e == slot + PMD_SIZE
                    && self.mms[mmi]
                        .pgt
                        .pte_table(pmd.table_idx())
                        .iter()
                        .all(|p| p.is_none())
                {
                    self.free_pte_table_at(mmi, slot);
                }
            }
            slot += PMD_SIZE;
        }
    }

    /// Frees the (empty) PTE table of the PMD slot at `slot` and clears the PMD entry
    /// (`pmd_clear` + `pte_free_tlb`, `mm_dec_nr_ptes`).
    fn free_pte_table_at(&mut self, mmi: MmId, slot: u64) {
        let pmd = self.mms[mmi].pgt.pmd(slot);
        debug_assert!(pmd.is_table());
        let pfn = self.mms[mmi].pgt.free_pte_table(pmd.table_idx());
        *self.mms[mmi].pgt.pmd_mut(slot).expect("pmd") = Pmd::NONE;
        self.free_pgtable_page(pfn);
    }

    /// `zap_huge_pmd`.
    fn zap_huge_pmd(&mut self, mmi: MmId, haddr: u64) {
        let p = self.mms[mmi].pgt.pmd(haddr);
        if p.is_thp() && !self.folios.get(p.folio()).test(crate::folio::flags::ANON) {
            self.zap_file_pmd(mmi, haddr, false);
            return;
        }
        let pmd = std::mem::replace(self.mms[mmi].pgt.pmd_mut(haddr).expect("pmd"), Pmd::NONE);
        let pfn = self.mms[mmi].pgt.withdraw().expect("deposit");
        self.free_pgtable_page(pfn);
        if pmd.is_thp() {
            self.mms[mmi].add_mm_counter(MmCounter::AnonPages, -i64::from(HPAGE_PMD_NR));
            self.folio_remove_rmap_pmd(pmd.folio(), mmi);
        }
    }

    /// `zap_pte_range` within one PTE table; rmap removal is batched per folio run.
    fn zap_pte_range(&mut self, mmi: MmId, start: u64, end: u64, keep_markers: Option<&Vma>) {
        let pmd = self.mms[mmi].pgt.pmd(start);
        debug_assert!(pmd.is_table() && (end - 1) & PMD_MASK == start & PMD_MASK);
        let tidx = pmd.table_idx();
        let (i0, i1) = (pte_index(start), pte_index(end - 1) + 1);
        let marker_for = |pte: Pte| {
            if keep_markers.is_some_and(|v| Self::needs_uffd_wp_marker(v, pte)) {
                Pte::marker()
            } else {
                Pte::NONE
            }
        };
        let mut i = i0;
        while i < i1 {
            let pte = self.mms[mmi].pgt.pte_table(tidx)[i];
            if pte.is_marker() && keep_markers.is_some() {
                // zap_nonpresent_ptes(): a file VMA's marker stays unless the zap drops them.
                i += 1;
                continue;
            }
            if !pte.is_page() {
                self.mms[mmi].pgt.pte_table_mut(tidx)[i] = marker_for(pte);
                if pte.is_swap() {
                    // zap_nonpresent_ptes: the swap entry's slot is released.
                    self.mms[mmi].add_mm_counter(MmCounter::SwapEnts, -1);
                    self.free_swap_and_cache(pte.swap_slot());
                }
                i += 1;
                continue;
            }
            // A batch: consecutive PTEs mapping consecutive pages of the same folio.
            let (id, first) = (pte.folio(), pte.idx());
            let mut n = 1;
            while i + n < i1 {
                let q = self.mms[mmi].pgt.pte_table(tidx)[i + n];
                if q.is_page() && q.folio() == id && q.idx() == first + to_u32(n) {
                    n += 1;
                } else {
                    break;
                }
            }
            let mut dirty = false;
            for e in &mut self.mms[mmi].pgt.pte_table_mut(tidx)[i..i + n] {
                dirty |= e.has(crate::pgtable::DIRTY);
                *e = marker_for(*e);
            }
            let counter = if self.folios.get(id).test(crate::folio::flags::ANON) {
                MmCounter::AnonPages
            } else {
                // zap_present_folio_ptes(): a dirty PTE dirties the page-cache folio.
                if dirty {
                    self.folios.get_mut(id).flags |= crate::folio::flags::DIRTY;
                }
                MmCounter::ShmemPages
            };
            self.mms[mmi].add_mm_counter(counter, -i64::from(to_u32(n)));
            let cached = self.swap.folio_slot.contains_key(&id);
            self.folio_remove_rmap_ptes(id, first, to_u32(n), mmi);
            if cached {
                // free_pages_and_swap_cache → free_swap_cache once the folio is unmapped.
                self.free_swap_cache(id);
            }
            i += n;
        }
    }

    /// `free_pgtables` after an unmap of `[start, end)`: PTE tables of PMD slots no VMA
    /// overlaps any more are freed, and PMD tables of 1 GiB regions no VMA overlaps.
    pub(crate) fn free_pgtables(&mut self, mmi: MmId, start: u64, end: u64) {
        // Only populated slots can hold a table (a none PMD has nothing to free).
        let mut slot = start & PMD_MASK;
        while let Some(next) = self.next_pmd_slot(mmi, slot, end) {
            slot = next;
            if !self.mms[mmi].has_vma_in(slot, slot + PMD_SIZE) {
                if self.mms[mmi].pgt.pmd(slot).is_table() {
                    self.free_pte_table_at(mmi, slot);
                }
                debug_assert!(self.mms[mmi].pgt.pmd(slot).is_none());
            }
            slot += PMD_SIZE;
        }
        let mut pud = start & !(PUD_SIZE - 1);
        while let Some(key) = self.mms[mmi]
            .pgt
            .next_pmd_table_key(pud >> crate::types::PUD_SHIFT, end.div_ceil(PUD_SIZE))
        {
            pud = key << crate::types::PUD_SHIFT;
            // Only an empty PMD table goes: with several VMAs gone at once (exit), the PTE
            // tables of later ones are freed in their own pass first.
            let key = pud >> crate::types::PUD_SHIFT;
            let empty = self.mms[mmi]
                .pgt
                .pmd_table(key)
                .is_some_and(|t| t.iter().all(|p| p.is_none()));
            if empty && !self.mms[mmi].has_vma_in(pud, pud + PUD_SIZE) {
                let pfn = self.mms[mmi].pgt.remove_pmd_table(key).expect("pmd table");
                self.free_pgtable_page(pfn);
            }
            pud += PUD_SIZE;
        }
    }

    /// `__mm_populate` for MAP_POPULATE: write faults for private writable mappings, read
    /// faults otherwise (shared ones too: `populate_vma_page_range`); PROT_NONE ranges are
    /// skipped.
    pub(crate) fn mm_populate(&mut self, pid: Pid, start: u64, end: u64) -> Result<(), Errno> {
        let mmi = self.mm_of(pid);
        let mut addr = start;
        while addr < end {
            let Some(vma) = self.mms[mmi].vma_at(addr).copied() else {
                break;
            };
            let e = end.min(vma.end);
            if vma.accessible() {
                let write = Foll::write_if(
                    vma.has(crate::mm::vmf::WRITE) && !vma.has(crate::mm::vmf::SHARED),
                );
                self.populate_range(pid, addr, e, write | Foll::FORCE | Foll::MM_POPULATE)?;
            }
            addr = e;
        }
        Ok(())
    }
}

/// Pages in `[start, end)`.
pub fn nr_pages(start: u64, end: u64) -> u64 {
    (end - start) / PAGE_SIZE
}
