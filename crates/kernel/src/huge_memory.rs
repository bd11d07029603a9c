//! PMD-level THP paths of `mm/huge_memory.c` (Linux 6.18): the THP-allowed rules
//! (`__thp_vma_allowable_orders`, `vma_thp_disabled`, `thp_vma_suitable_order(s)` from
//! `include/linux/huge_mm.h`), the huge zero folio (`mm_get_huge_zero_folio`), the anonymous
//! PMD fault (`do_huge_pmd_anonymous_page`, `vma_alloc_anon_folio_pmd`,
//! `map_anon_folio_pmd`), the write-protect fault on a PMD (`do_huge_pmd_wp_page`,
//! `do_huge_zero_wp_pmd` since 6.13) and PMD splitting (`__split_huge_pmd_locked`,
//! `__split_huge_zero_page_pmd`).
//!
//! Deviations: no uffd-wp on PMDs yet, no DMA-pin checks, no `defrag`-driven compaction
//! (an order-9 allocation fails exactly when the buddy allocator has no free order-9 block).

use crate::fault::{Tva, VmFault, Vmf};
use crate::folio::FolioId;
use crate::ids::MmId;
use crate::ids::Pfn;
use crate::mm::MmCounter;
use crate::mm::{vmf, ThpDisable, Vma};
use crate::page_alloc::{Gfp, MigrateType};
use crate::pgtable::{
    pte_index, Pmd, Pte, DIRTY, EXCLUSIVE, PROTNONE, SOFT_DIRTY, UFFD_WP, WRITE, YOUNG,
};
use crate::profile::HzpWpFault;
use crate::rmap::RmapLevel;
use crate::sysfs::{Defrag, ThpEnabled};
use crate::types::{HPAGE_PMD_NR, HPAGE_PMD_ORDER, PAGE_SIZE, PMD_MASK, PMD_SIZE};
use crate::util::to_u32;
use crate::vmstat::{MthpStat, VmItem};
use crate::Kernel;

/// The huge zero folio (`huge_zero_folio` with `huge_zero_refcount`): allocated on the first
/// read fault that wants it, one reference per mm that maps it (`MMF_HUGE_ZERO_FOLIO`), freed
/// by its shrinker once no mm holds it.
#[derive(Clone, Debug, Default)]
pub(crate) struct HugeZeroFolio {
    pfn: Option<Pfn>,
    /// Number of mms holding a reference (the refcount minus the base reference).
    users: u32,
}

impl HugeZeroFolio {
    /// Its first PFN while it exists.
    pub(crate) fn pfn(&self) -> Option<Pfn> {
        self.pfn
    }
    pub(crate) fn users(&self) -> u32 {
        self.users
    }
    /// An mm takes a reference (the folio exists).
    pub(crate) fn get(&mut self) {
        debug_assert!(self.pfn.is_some());
        self.users += 1;
    }
    /// An mm drops its reference; the folio stays until the shrinker runs.
    pub(crate) fn put(&mut self) {
        self.users -= 1;
    }
    /// `shrink_huge_zero_folio_count`: pages the shrinker could free.
    pub(crate) fn shrinker_count(&self) -> u64 {
        if self.users == 0 && self.pfn.is_some() {
            u64::from(HPAGE_PMD_NR)
        } else {
            0
        }
    }
    /// `shrink_huge_zero_folio_scan`: the folio to free, if nobody holds it.
    pub(crate) fn shrinker_take(&mut self) -> Option<Pfn> {
        if self.users == 0 {
            self.pfn.take()
        } else {
            None
        }
    }
}

/// `thp_vma_suitable_order`: the aligned block of `order` around `addr` lies inside the VMA.
#[inline]
pub(crate) fn thp_vma_suitable_order(vma: &Vma, addr: u64, order: u8) -> bool {
    let size = PAGE_SIZE << order;
    // A file VMA's offset must be aligned like its address (anonymous ones need no check).
    if !vma.is_anonymous()
        && ((vma.start >> crate::types::PAGE_SHIFT).wrapping_sub(vma.pgoff)) & ((1 << order) - 1)
            != 0
    {
        return false;
    }
    let haddr = addr & !(size - 1);
    haddr >= vma.start && haddr + size <= vma.end
}

/// `thp_vma_suitable_orders`: keeps the orders of `orders` whose block around `addr` fits.
pub(crate) fn thp_vma_suitable_orders(vma: &Vma, addr: u64, orders: u16) -> u16 {
    let mut out = 0;
    for o in 0..16u8 {
        if orders & (1 << o) != 0 && thp_vma_suitable_order(vma, addr, o) {
            out |= 1 << o;
        }
    }
    out
}

/// The size (and, for file VMAs, alignment) check of `__thp_vma_allowable_orders` outside
/// the fault path: the orders from the highest one whose last aligned block in the VMA fits.
fn thp_vma_size_filter(vma: &Vma, orders: u16) -> u16 {
    for o in (0..16u8).rev() {
        if orders & (1 << o) != 0 {
            let size = PAGE_SIZE << o;
            if vma.end >= size && thp_vma_suitable_order(vma, vma.end - size, o) {
                return orders & ((2u16 << o) - 1);
            }
        }
    }
    0
}

impl Kernel {
    /// `vma_thp_disabled(vma, vm_flags, forced_collapse)`: a forced collapse counts as advice
    /// (only VM_NOHUGEPAGE and a complete prctl disable refuse it).
    pub(crate) fn vma_thp_disabled_forced(&self, mmi: MmId, vma: &Vma, forced: bool) -> bool {
        if forced {
            return vma.has(vmf::NOHUGEPAGE) || self.mms[mmi].thp_disable == ThpDisable::Completely;
        }
        self.vma_thp_disabled(mmi, vma)
    }

    /// `vma_thp_disabled`: VM_NOHUGEPAGE, or prctl disabled (completely, or except-advised in
    /// a VMA without VM_HUGEPAGE).
    pub(crate) fn vma_thp_disabled(&self, mmi: MmId, vma: &Vma) -> bool {
        if vma.has(vmf::NOHUGEPAGE) {
            return true;
        }
        match self.mms[mmi].thp_disable {
            ThpDisable::Completely => true,
            ThpDisable::ExceptAdvised => !vma.has(vmf::HUGEPAGE),
            ThpDisable::No => false,
        }
    }

    /// The sysfs mask for an anonymous VMA (`thp_vma_allowable_orders` inline part):
    /// per-size `always`, `madvise` with VM_HUGEPAGE, `inherit` with the top-level rule.
    pub(crate) fn sysfs_anon_orders(&self, vma_flags: u32) -> u16 {
        let hugepage = vma_flags & vmf::HUGEPAGE != 0;
        let top = self.sysfs.enabled;
        let inherit_ok = top == ThpEnabled::Always || (hugepage && top == ThpEnabled::Madvise);
        let mut mask = 0u16;
        for o in crate::sysfs::ANON_ORDERS {
            let ok = match self.sysfs.size_enabled[o as usize] {
                ThpEnabled::Always => true,
                ThpEnabled::Madvise => hugepage,
                ThpEnabled::Inherit => inherit_ok,
                ThpEnabled::Never => false,
            };
            if ok {
                mask |= 1 << o;
            }
        }
        mask
    }

    /// `thp_vma_allowable_orders` for an anonymous VMA.
    pub(crate) fn thp_vma_allowable_orders(
        &self,
        mmi: MmId,
        vma: &Vma,
        mut orders: u16,
        tva: Tva,
    ) -> u16 {
        if vma.backing.is_hugetlb() || matches!(vma.backing, crate::mm::VmaBacking::File { .. }) {
            // hugetlb VMAs are never THP-eligible (smaps THPeligible 0, MADV_COLLAPSE EINVAL).
            // A disk file: no huge_fault, and file_thp_enabled() (CONFIG_READ_ONLY_THP_FOR_FS)
            // wants a file nobody has open for writing, which the scenario's files always are.
            return 0;
        }
        if let Some(ino) = vma.backing.inode() {
            // guest_memfd: not shmem, and file_thp_enabled() wants a file not open for write.
            if self.is_gmem(ino) {
                return 0;
            }
            // Outside the fault path a shmem VMA answers with its own policy (the fault path
            // decides in shmem_get_folio, and finish_fault maps what it got).
            if tva == Tva::PageFault {
                return 0;
            }
            let orders = thp_vma_size_filter(vma, orders);
            if orders == 0 {
                return 0;
            }
            let force = tva == Tva::ForcedCollapse;
            return orders
                & self.shmem_allowable_huge_orders(ino, Some((mmi, vma)), vma.pgoff, 0, force);
        }
        if tva != Tva::ForcedCollapse {
            orders &= self.sysfs_anon_orders(vma.flags);
        }
        if orders == 0 {
            return 0;
        }
        if tva == Tva::ForcedCollapse {
            // MADV_COLLAPSE ignores sysfs but not VM_NOHUGEPAGE or a complete prctl disable.
            if self.vma_thp_disabled_forced(mmi, vma, true) {
                return 0;
            }
        } else if self.vma_thp_disabled(mmi, vma) {
            return 0;
        }
        if tva != Tva::PageFault {
            orders = thp_vma_size_filter(vma, orders);
            if orders == 0 {
                return 0;
            }
            if vma.anon_vma.is_none() && matches!(tva, Tva::Khugepaged | Tva::ForcedCollapse) {
                return 0;
            }
        }
        orders
    }

    pub(crate) fn thp_vma_allowable_order(
        &self,
        mmi: MmId,
        vma: &Vma,
        order: u8,
        tva: Tva,
    ) -> bool {
        self.thp_vma_allowable_orders(mmi, vma, 1 << order, tva) != 0
    }

    /// `hugepage_pmd_enabled` (`Sysfs::hugepage_pmd_enabled`): khugepaged runs.
    pub fn hugepage_pmd_enabled(&self) -> bool {
        self.sysfs.hugepage_pmd_enabled()
    }

    /// `vma_thp_gfp_mask`: how hard a THP fault allocation may try, by `defrag` and whether
    /// the VMA is madvised (`VM_HUGEPAGE`).
    pub(crate) fn vma_thp_gfp_mask(&self, vma: &Vma) -> Gfp {
        self.thp_gfp_mask(vma.has(vmf::HUGEPAGE))
    }

    /// `vma_thp_gfp_mask` for a VMA that is madvised or not (none at all, as shmem's
    /// fallocate passes, is not madvised).
    pub(crate) fn thp_gfp_mask(&self, madvised: bool) -> Gfp {
        let light = Gfp::TRANSHUGE_LIGHT;
        match self.sysfs.defrag {
            Defrag::Always => Gfp {
                noretry: !madvised,
                ..Gfp::TRANSHUGE
            },
            Defrag::Defer => Gfp {
                kswapd: true,
                ..light
            },
            Defrag::DeferMadvise => Gfp {
                direct: madvised,
                kswapd: !madvised,
                ..light
            },
            Defrag::Madvise => Gfp {
                direct: madvised,
                ..light
            },
            Defrag::Never => light,
        }
    }

    /// `khugepaged_enter_vma`: register the mm with khugepaged if the VMA (with `flags`) is
    /// eligible for it.
    pub(crate) fn khugepaged_enter_vma(&mut self, mmi: MmId, vma: &Vma, flags: u32) {
        if self.mms[mmi].khugepaged_registered || !self.hugepage_pmd_enabled() {
            return;
        }
        let v = Vma { flags, ..*vma };
        let allowed = if vma.backing.inode().is_some() {
            // `__thp_vma_allowable_orders` tests `vma_thp_disabled` with the flags passed, but
            // `shmem_allowable_huge_orders` reads `vma->vm_flags`, and `hugepage_madvise`
            // calls this before the VMA gets VM_HUGEPAGE: MADV_HUGEPAGE alone does not
            // register an mm whose shmem policy is `advise` (measured, FINDINGS §26).
            !self.vma_thp_disabled(mmi, &v)
                && self.thp_vma_allowable_order(mmi, vma, HPAGE_PMD_ORDER, Tva::Khugepaged)
        } else {
            self.thp_vma_allowable_order(mmi, &v, HPAGE_PMD_ORDER, Tva::Khugepaged)
        };
        if allowed {
            self.khugepaged_enter(mmi);
        }
    }

    /// `vma_merge_existing_range` / `vma_merge_new_range` end a successful merge with
    /// `khugepaged_enter_vma` on the merged VMA: the VMAs at `starts` (as a merge left them)
    /// are offered to khugepaged. So a VMA that got its anon_vma by merging into a faulted
    /// neighbour registers the mm without a fault of its own.
    pub(crate) fn khugepaged_enter_merged(&mut self, mmi: MmId, starts: &[u64]) {
        for &s in starts {
            if let Some(v) = self.mms[mmi].vma_at(s).copied() {
                self.khugepaged_enter_vma(mmi, &v, v.flags);
            }
        }
    }

    /// `mm_get_huge_zero_folio`: this mm's reference on the huge zero folio, allocating it
    /// (`thp_zero_page_alloc`) if it does not exist.
    fn mm_get_huge_zero_folio(&mut self, mmi: MmId) -> bool {
        if self.mms[mmi].huge_zero_ref {
            return true;
        }
        if self.huge_zero.pfn.is_none() {
            // get_huge_zero_folio: GFP_TRANSHUGE without __GFP_MOVABLE.
            let gfp = Gfp {
                mt: MigrateType::Unmovable,
                ..Gfp::TRANSHUGE
            };
            match self.alloc_pages(HPAGE_PMD_ORDER, gfp) {
                Some(pfn) => {
                    self.huge_zero.pfn = Some(pfn);
                    self.vmstat.count(VmItem::ThpZeroPageAlloc);
                }
                None => {
                    self.vmstat.count(VmItem::ThpZeroPageAllocFailed);
                    return false;
                }
            }
        }
        self.huge_zero.get();
        self.mms[mmi].huge_zero_ref = true;
        true
    }

    /// `shrink_huge_zero_folio_scan`: frees the huge zero folio if no mm holds it; returns
    /// the pages freed.
    pub(crate) fn shrink_huge_zero_folio_scan(&mut self) -> u64 {
        match self.huge_zero.shrinker_take() {
            Some(pfn) => {
                self.buddy.free(pfn, HPAGE_PMD_ORDER);
                u64::from(HPAGE_PMD_NR)
            }
            None => 0,
        }
    }

    /// `vma_alloc_anon_folio_pmd`: an order-9 folio for a fault, counting fallbacks.
    fn vma_alloc_anon_folio_pmd(&mut self, vma: &Vma) -> Option<FolioId> {
        let gfp = Gfp {
            vma_pmd: true,
            ..self.vma_thp_gfp_mask(vma)
        };
        match self.alloc_charge_anon_folio(HPAGE_PMD_ORDER, gfp) {
            Ok(f) => Some(f),
            Err(charge) => {
                self.vmstat.count(VmItem::ThpFaultFallback);
                self.vmstat
                    .mthp_count(HPAGE_PMD_ORDER, MthpStat::AnonFaultFallback);
                if charge {
                    self.vmstat.count(VmItem::ThpFaultFallbackCharge);
                    self.vmstat
                        .mthp_count(HPAGE_PMD_ORDER, MthpStat::AnonFaultFallbackCharge);
                }
                None
            }
        }
    }

    /// `map_anon_folio_pmd`: install a new PMD THP (writable and dirty if the VMA is
    /// writable), exclusive rmap, counters, and the deferred-split queue when `queue`.
    fn map_anon_folio_pmd(&mut self, vmf: &Vmf, folio: FolioId, queue: bool) {
        let (mmi, vma, haddr) = (vmf.mm, &vmf.vma, vmf.haddr());
        let bits = YOUNG | EXCLUSIVE | DIRTY | if vma.has(vmf::WRITE) { WRITE } else { 0 };
        *self.mms[mmi].pgt.pmd_mut(haddr).expect("pmd table") = Pmd::thp(folio, bits);
        self.folios.meta_mut(folio).va = haddr;
        self.folio_add_new_anon_rmap(folio, RmapLevel::Pmd, mmi);
        self.mms[mmi].add_mm_counter(MmCounter::AnonPages, i64::from(HPAGE_PMD_NR));
        self.vmstat
            .add(VmItem::SimZeroedPages, i64::from(HPAGE_PMD_NR));
        self.vmstat.count(VmItem::ThpFaultAlloc);
        self.vmstat
            .mthp_count(HPAGE_PMD_ORDER, MthpStat::AnonFaultAlloc);
        if queue {
            self.deferred_split_folio(folio, false);
        }
    }

    /// `do_huge_pmd_anonymous_page`: fault on an empty PMD slot where PMD THP is allowed.
    pub(crate) fn do_huge_pmd_anonymous_page(&mut self, vmf: &mut Vmf) -> VmFault {
        let (mmi, haddr) = (vmf.mm, vmf.haddr());
        if !thp_vma_suitable_order(&vmf.vma, haddr, HPAGE_PMD_ORDER) {
            return VmFault::Fallback;
        }
        self.vmf_anon_prepare(vmf);
        let vma = vmf.vma;
        self.khugepaged_enter_vma(mmi, &vma, vma.flags);
        if !vmf.is_write() && self.sysfs.use_zero_page {
            let Some(pgtable) = self.alloc_pgtable_page() else {
                return VmFault::Oom;
            };
            if !self.mm_get_huge_zero_folio(mmi) {
                self.free_pgtable_page(pgtable);
                self.vmstat.count(VmItem::ThpFaultFallback);
                return VmFault::Fallback;
            }
            if vma.has(vmf::UFFD_MISSING) {
                self.free_pgtable_page(pgtable);
                return VmFault::Userfault(0);
            }
            *self.mms[mmi].pgt.pmd_mut(haddr).expect("pmd table") = Pmd::huge_zero(YOUNG);
            self.mms[mmi].pgt.deposit(pgtable);
            return VmFault::Done;
        }
        let Some(folio) = self.vma_alloc_anon_folio_pmd(&vmf.vma) else {
            return VmFault::Fallback;
        };
        let Some(pgtable) = self.alloc_pgtable_page() else {
            self.free_folio(folio);
            return VmFault::Oom;
        };
        if vma.has(vmf::UFFD_MISSING) {
            // The THP was allocated and is thrown away; no thp_fault_alloc.
            self.free_pgtable_page(pgtable);
            self.free_folio(folio);
            return VmFault::Userfault(crate::userfaultfd_ctx::FLAG_WRITE);
        }
        if self.profile.switches.thp_zeroing == crate::profile::ThpZeroing::Lazy {
            // No PMD yet: the PTE table the lazy folio is mapped through is the page table.
            self.free_pgtable_page(pgtable);
            return self.map_anon_folio_lazy(vmf, folio);
        }
        self.mms[mmi].pgt.deposit(pgtable);
        self.map_anon_folio_pmd(vmf, folio, true);
        VmFault::Done
    }

    /// `thp_zeroing=lazy` (proposal): the new PMD-sized folio is counted as a THP fault and
    /// queued as one, but only the faulting page is zeroed and mapped, by a PTE; the others
    /// wait for their first touch (`lazy_thp_map_page`).
    fn map_anon_folio_lazy(&mut self, vmf: &Vmf, folio: FolioId) -> VmFault {
        let (mmi, haddr) = (vmf.mm, vmf.haddr());
        if !self.pte_alloc(mmi, haddr) {
            self.free_folio(folio);
            return VmFault::Oom;
        }
        self.folios.meta_mut(folio).va = haddr;
        self.folios.get_mut(folio).flags |= crate::folio::flags::ANON;
        self.vmstat.mthp_add(HPAGE_PMD_ORDER, MthpStat::NrAnon, 1);
        self.vmstat.count(VmItem::ThpFaultAlloc);
        self.vmstat
            .mthp_count(HPAGE_PMD_ORDER, MthpStat::AnonFaultAlloc);
        self.vmstat.count(VmItem::SimThpLazyAlloc);
        self.mms[mmi].lazy_thps.insert(haddr, folio);
        self.lazy_thp_map_page(vmf, folio);
        self.deferred_split_folio(folio, false);
        VmFault::Done
    }

    /// The lazily zeroed folio a fault on a none PTE may map its page from: the one this
    /// mm's `lazy_thps` names for the PMD range, if it still is what it was (an exclusive
    /// anonymous PMD-sized folio mapped only by PTEs of this range, the faulting page not
    /// mapped, the whole range inside the VMA). A stale entry is dropped.
    pub(crate) fn lazy_thp_of(&mut self, vmf: &Vmf) -> Option<FolioId> {
        let (mmi, haddr) = (vmf.mm, vmf.haddr());
        let &id = self.mms[mmi].lazy_thps.get(&haddr)?;
        let f = self.folios.get(id);
        let ok = !f.test(crate::folio::flags::FREE)
            && f.test(crate::folio::flags::ANON)
            && f.order == HPAGE_PMD_ORDER
            && f.entire_mapcount == 0
            && self.folios.meta(id).va == haddr
            && !self.folios.maybe_mapped_shared(id)
            && self
                .folios
                .meta(id)
                .page_mapcount
                .get(pte_index(vmf.address))
                == Some(&0)
            && thp_vma_suitable_order(&vmf.vma, haddr, HPAGE_PMD_ORDER);
        if !ok {
            self.mms[mmi].lazy_thps.remove(&haddr);
            return None;
        }
        Some(id)
    }

    /// First touch of a page of a lazily zeroed folio: zero it and map it by a PTE
    /// (writable and dirty in a writable VMA, as `do_anonymous_page` maps a new page). Once
    /// all 512 pages are mapped, the folio is remapped by a PMD in place.
    pub(crate) fn lazy_thp_map_page(&mut self, vmf: &Vmf, folio: FolioId) {
        let (mmi, addr, haddr) = (vmf.mm, vmf.address, vmf.haddr());
        let i = crate::util::to_u32(pte_index(addr));
        let bits = YOUNG
            | EXCLUSIVE
            | if vmf.vma.has(vmf::WRITE) {
                WRITE | DIRTY
            } else {
                0
            };
        self.set_pte(mmi, addr, Pte::page(folio, i, bits));
        self.folio_add_anon_rmap_ptes(folio, i, 1, mmi);
        self.mms[mmi].add_mm_counter(MmCounter::AnonPages, 1);
        self.vmstat.add(VmItem::SimZeroedPages, 1);
        self.vmstat.count(VmItem::SimThpLazyPages);
        if self.folios.meta(folio).nr_pages_mapped == HPAGE_PMD_NR {
            let tidx = self.mms[mmi].pgt.pmd(haddr).table_idx();
            let table = *self.mms[mmi].pgt.pte_table(tidx);
            if self.collapse_in_place(mmi, &vmf.vma, haddr, &table, false) {
                self.vmstat.count(VmItem::SimThpLazyRemap);
            }
        }
    }

    /// `wp_huge_pmd`: a uffd-wp protected PMD in a uffd-wp VMA raises a WP userfault (sync)
    /// or is split so the PTE level clears the faulting page's bit (async).
    pub(crate) fn wp_huge_pmd(&mut self, vmf: &mut Vmf) -> VmFault {
        let (mmi, addr) = (vmf.mm, vmf.address);
        let pmd = self.mms[mmi].pgt.pmd(vmf.haddr());
        if pmd.has(UFFD_WP) && vmf.vma.has(vmf::UFFD_WP) {
            if self.mms[mmi]
                .uffd
                .as_deref()
                .is_some_and(|u| u.features.wp_async)
            {
                self.split_huge_pmd(mmi, addr);
                return VmFault::Fallback;
            }
            return VmFault::Userfault(
                crate::userfaultfd_ctx::FLAG_WRITE | crate::userfaultfd_ctx::FLAG_WP,
            );
        }
        if !vmf.vma.is_anonymous() {
            // No huge_fault for shmem: COW or write-notify is done at PTE level, and a file
            // PMD split is a zap.
            self.zap_file_pmd(mmi, vmf.haddr(), true);
            return VmFault::Fallback;
        }
        self.do_huge_pmd_wp_page(vmf)
    }

    /// `do_huge_pmd_wp_page`: a write to a present, write-protected huge PMD. Returns
    /// `Fallback` after splitting the PMD; the caller finishes at PTE level.
    pub(crate) fn do_huge_pmd_wp_page(&mut self, vmf: &mut Vmf) -> VmFault {
        let (mmi, haddr) = (vmf.mm, vmf.haddr());
        let pmd = self.mms[mmi].pgt.pmd(haddr);
        if pmd.is_huge_zero() {
            if self.profile.switches.hzp_wp_fault == HzpWpFault::Thp {
                let r = self.do_huge_zero_wp_pmd(vmf);
                if r != VmFault::Fallback {
                    return r;
                }
            }
            self.split_huge_pmd(mmi, haddr);
            return VmFault::Fallback;
        }
        let id = pmd.folio();
        let reuse = pmd.has(EXCLUSIVE) || self.folios.get(id).refcount == 1;
        if reuse {
            // Reuse the whole PMD: young, dirty, writable; the page becomes AnonExclusive.
            let e = self.mms[mmi].pgt.pmd_mut(haddr).expect("pmd");
            e.0 |= YOUNG | DIRTY | WRITE | EXCLUSIVE;
            return VmFault::Done;
        }
        self.split_huge_pmd(mmi, haddr);
        VmFault::Fallback
    }

    /// `do_huge_zero_wp_pmd` (6.13+): replace the huge zero PMD by a new PMD THP. The page
    /// table deposited for the huge zero PMD stays deposited. Note that the THP-allowed
    /// checks are not repeated here (the kernel does not either).
    fn do_huge_zero_wp_pmd(&mut self, vmf: &Vmf) -> VmFault {
        let Some(folio) = self.vma_alloc_anon_folio_pmd(&vmf.vma) else {
            return VmFault::Fallback;
        };
        let queue = self.profile.switches.hzp_wp_deferred_split;
        self.map_anon_folio_pmd(vmf, folio, queue);
        VmFault::Done
    }

    /// `__split_huge_pmd` on the PMD mapping `haddr` (THP or huge zero): replace it by a
    /// PTE table (the deposited one) mapping the same pages with the same bits.
    pub(crate) fn split_huge_pmd(&mut self, mmi: MmId, haddr: u64) {
        let haddr = haddr & PMD_MASK;
        let pmd = self.mms[mmi].pgt.pmd(haddr);
        debug_assert!(pmd.is_huge());
        if pmd.is_thp() && !self.folios.get(pmd.folio()).test(crate::folio::flags::ANON) {
            // __split_huge_pmd_locked on a file VMA only clears the PMD.
            self.zap_file_pmd(mmi, haddr, true);
            return;
        }
        self.vmstat.count(VmItem::ThpSplitPmd);
        let pfn = self.mms[mmi]
            .pgt
            .withdraw()
            .expect("deposited page table under a huge PMD");
        let idx = self.mms[mmi].pgt.new_pte_table(pfn);
        let carry = pmd.0 & (WRITE | DIRTY | YOUNG | SOFT_DIRTY | UFFD_WP | PROTNONE | EXCLUSIVE);
        {
            let table = self.mms[mmi].pgt.pte_table_mut(idx);
            if pmd.is_huge_zero() {
                let bits = carry & (YOUNG | SOFT_DIRTY | UFFD_WP | PROTNONE);
                for e in table.iter_mut() {
                    *e = Pte::zero(bits);
                }
            } else {
                let id = pmd.folio();
                for (i, e) in table.iter_mut().enumerate() {
                    *e = Pte::page(id, to_u32(i), carry);
                }
            }
        }
        *self.mms[mmi].pgt.pmd_mut(haddr).expect("pmd") = Pmd::table(idx);
        if pmd.is_thp() {
            let id = pmd.folio();
            // __split_huge_pmd_locked moves a dirty PMD's state into PG_dirty.
            if pmd.has(DIRTY) {
                self.folios.get_mut(id).flags |= crate::folio::flags::DIRTY;
            }
            self.folio_add_anon_rmap_ptes(id, 0, HPAGE_PMD_NR, mmi);
            self.folio_remove_rmap_pmd(id, mmi);
        }
    }

    /// `split_huge_pmd_if_needed` (from `vma_adjust_trans_huge`): a VMA boundary at `addr`
    /// inside a huge PMD splits it.
    pub(crate) fn split_huge_pmd_if_needed(&mut self, mmi: MmId, vma: &Vma, addr: u64) {
        if addr % PMD_SIZE == 0 {
            return;
        }
        let haddr = addr & PMD_MASK;
        if haddr >= vma.start
            && haddr + PMD_SIZE <= vma.end
            && self.mms[mmi].pgt.pmd(haddr).is_huge()
        {
            self.split_huge_pmd(mmi, haddr);
        }
    }
}
