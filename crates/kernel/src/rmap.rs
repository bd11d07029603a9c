//! Reverse-map accounting of anonymous and page-cache folios, after `mm/rmap.c` (Linux 6.18):
//! `folio_add_new_anon_rmap`, `folio_add_anon_rmap_ptes`, `folio_add_file_rmap_{ptes,pmd}`,
//! `__folio_remove_rmap` (partial-map detection for anonymous folios, `NR_ANON_THPS`,
//! `NR_ANON_MAPPED`, `NR_SHMEM_PMDMAPPED`) and the deferred-split queue of
//! `mm/huge_memory.c` (`deferred_split_folio`, `__folio_unqueue_deferred_split`).
//! Every mapping holds one folio reference, so `refcount == mappings + pins`.

use crate::folio::{flags, FolioId};
use crate::ids::MmId;
use crate::types::HPAGE_PMD_ORDER;
use crate::vmstat::{MthpStat, VmItem};
use crate::Kernel;

/// At which level a folio is mapped (`enum rmap_level`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RmapLevel {
    /// Every page by its own PTE.
    Pte,
    /// The whole folio by one PMD.
    Pmd,
}

impl Kernel {
    /// A freshly allocated anon folio gets its first mapping(s): every page by PTE, or the
    /// whole folio by one PMD. Pages are AnonExclusive.
    pub(crate) fn folio_add_new_anon_rmap(&mut self, id: FolioId, level: RmapLevel, mmi: MmId) {
        let pmd = level == RmapLevel::Pmd;
        let f = self.folios.get_mut(id);
        f.flags |= flags::ANON;
        let nr = f.nr_pages();
        let order = f.order;
        if pmd {
            f.entire_mapcount = 1;
            f.refcount = 1;
            self.vmstat.add(VmItem::NrAnonTransparentHugepages, 1);
        } else {
            f.mapcount = nr;
            f.refcount = nr;
            if order > 0 {
                let m = self.folios.meta_mut(id);
                m.page_mapcount = vec![1; nr as usize].into_boxed_slice();
                m.nr_pages_mapped = nr;
            }
        }
        self.vmstat.add(VmItem::NrAnonPages, i64::from(nr));
        if order >= 2 {
            self.vmstat.mthp_add(order, MthpStat::NrAnon, 1);
        }
        self.folios
            .mm_map_add(id, mmi, if pmd { 1 } else { i64::from(nr) });
    }

    /// Adds PTE mappings of pages `[first, first+nr)` of an existing folio
    /// (`folio_add_anon_rmap_ptes`, used by PMD split and fork).
    pub(crate) fn folio_add_anon_rmap_ptes(&mut self, id: FolioId, first: u32, nr: u32, mmi: MmId) {
        self.folios.mm_map_add(id, mmi, i64::from(nr));
        let f = self.folios.get_mut(id);
        let order = f.order;
        let entire = f.entire_mapcount;
        f.mapcount += nr;
        f.refcount += nr;
        if order == 0 {
            if f.mapcount == 1 && entire == 0 {
                self.vmstat.add(VmItem::NrAnonPages, 1);
            }
            return;
        }
        let size = 1usize << order;
        let m = self.folios.meta_mut(id);
        if m.page_mapcount.is_empty() {
            m.page_mapcount = vec![0; size].into_boxed_slice();
        }
        let mut newly = 0;
        for i in first..first + nr {
            let c = &mut m.page_mapcount[i as usize];
            *c += 1;
            if *c == 1 {
                newly += 1;
            }
        }
        m.nr_pages_mapped += newly;
        if entire == 0 {
            self.vmstat.add(VmItem::NrAnonPages, i64::from(newly));
        }
    }

    /// Removes PTE mappings of pages `[first, first+nr)` (`folio_remove_rmap_ptes`) and drops
    /// their references. May queue an anonymous folio as partially mapped, or free the folio.
    /// A page-cache folio only loses the mappings (the page cache keeps its references).
    pub(crate) fn folio_remove_rmap_ptes(&mut self, id: FolioId, first: u32, nr: u32, mmi: MmId) {
        self.folios.mm_map_add(id, mmi, -i64::from(nr));
        if !self.mms[mmi].lazy_thps.is_empty() && self.folios.get(id).order == HPAGE_PMD_ORDER {
            // A lazily zeroed folio (thp_zeroing=lazy) losing a page is an ordinary
            // partially mapped one from now on.
            let va = self.folios.meta(id).va;
            if self.mms[mmi].lazy_thps.get(&va) == Some(&id) {
                self.mms[mmi].lazy_thps.remove(&va);
            }
        }
        let f = self.folios.get_mut(id);
        let order = f.order;
        let entire = f.entire_mapcount;
        let anon = f.test(flags::ANON);
        debug_assert!(f.mapcount >= nr);
        f.mapcount -= nr;
        if order == 0 {
            if f.mapcount == 0 && anon {
                self.vmstat.add(VmItem::NrAnonPages, -1);
            }
            self.folio_put(id, nr);
            return;
        }
        let m = self.folios.meta_mut(id);
        let mut last = 0u32;
        for i in first..first + nr {
            let c = &mut m.page_mapcount[i as usize];
            debug_assert!(*c > 0);
            *c -= 1;
            if *c == 0 {
                last += 1;
            }
        }
        m.nr_pages_mapped -= last;
        let still_mapped = m.nr_pages_mapped > 0 || entire > 0;
        // While PMD-mapped, pages leaving the PTE level stay mapped (ENTIRELY_MAPPED).
        let unmapped = if entire > 0 { 0 } else { last };
        if unmapped > 0 && anon {
            self.vmstat.add(VmItem::NrAnonPages, -i64::from(unmapped));
            if still_mapped && !self.folios.get(id).test(flags::PARTIALLY_MAPPED) {
                self.deferred_split_folio(id, true);
            }
        }
        self.folio_put(id, nr);
    }

    /// Removes one PMD mapping (`folio_remove_rmap_pmd`) and drops its reference.
    pub(crate) fn folio_remove_rmap_pmd(&mut self, id: FolioId, mmi: MmId) {
        self.folios.mm_map_add(id, mmi, -1);
        let f = self.folios.get_mut(id);
        debug_assert!(f.entire_mapcount > 0);
        f.entire_mapcount -= 1;
        let nr_pages = f.nr_pages();
        if f.entire_mapcount == 0 && !f.test(flags::ANON) {
            // NR_SHMEM_PMDMAPPED / NR_FILE_PMDMAPPED (printed in THP units).
            let item = self.file_pmdmapped_item(id);
            self.vmstat.add(item, -1);
        } else if f.entire_mapcount == 0 {
            self.vmstat.add(VmItem::NrAnonTransparentHugepages, -1);
            let mapped = self.folios.meta(id).nr_pages_mapped;
            let nr = nr_pages - mapped;
            self.vmstat.add(VmItem::NrAnonPages, -i64::from(nr));
            if nr > 0 && nr < nr_pages && !self.folios.get(id).test(flags::PARTIALLY_MAPPED) {
                self.deferred_split_folio(id, true);
            }
        }
        self.folio_put(id, 1);
    }

    /// `folio_add_file_rmap_ptes`: pages `[first, first+nr)` of a page-cache folio gain a
    /// PTE mapping each (and a reference each, `folio_ref_add` in `finish_fault` /
    /// `filemap_map_pages`).
    pub(crate) fn folio_add_file_rmap_ptes(&mut self, id: FolioId, first: u32, nr: u32, mmi: MmId) {
        self.folios.mm_map_add(id, mmi, i64::from(nr));
        let f = self.folios.get_mut(id);
        f.mapcount += nr;
        f.refcount += nr;
        if f.order == 0 {
            return;
        }
        let size = 1usize << f.order;
        let m = self.folios.meta_mut(id);
        if m.page_mapcount.is_empty() {
            m.page_mapcount = vec![0; size].into_boxed_slice();
        }
        for i in first..first + nr {
            let c = &mut m.page_mapcount[i as usize];
            *c += 1;
            if *c == 1 {
                m.nr_pages_mapped += 1;
            }
        }
    }

    /// `folio_add_file_rmap_pmd`: a PMD-sized page-cache folio gains a PMD mapping.
    pub(crate) fn folio_add_file_rmap_pmd(&mut self, id: FolioId, mmi: MmId) {
        self.folios.mm_map_add(id, mmi, 1);
        let f = self.folios.get_mut(id);
        f.entire_mapcount += 1;
        f.refcount += 1;
        if f.entire_mapcount == 1 {
            let item = self.file_pmdmapped_item(id);
            self.vmstat.add(item, 1);
        }
    }

    /// `NR_SHMEM_PMDMAPPED` for a shmem folio, `NR_FILE_PMDMAPPED` for a disk file's
    /// (`__folio_add_file_rmap` / `__folio_remove_rmap` choose by `folio_test_swapbacked`).
    fn file_pmdmapped_item(&self, id: FolioId) -> VmItem {
        if self.folio_is_disk(id) {
            VmItem::NrFilePmdmapped
        } else {
            VmItem::NrShmemPmdmapped
        }
    }

    /// `deferred_split_folio`: queue a large anon folio for the deferred-split shrinker,
    /// flagging it partially mapped when `partially_mapped`. A folio in the swap cache is
    /// not queued (`folio_test_swapcache`: reclaim already has it).
    pub(crate) fn deferred_split_folio(&mut self, id: FolioId, partially_mapped: bool) {
        let f = *self.folios.get(id);
        if f.order <= 1 {
            return;
        }
        if !partially_mapped && !self.sysfs.shrink_underused {
            return;
        }
        if self.swap.folio_slot.contains_key(&id) {
            // Measured: a swap-cache THP partly unmapped after a refault counts no
            // `thp_deferred_split_page` (FINDINGS §29).
            return;
        }
        if partially_mapped {
            if !f.test(flags::PARTIALLY_MAPPED) {
                self.folios.get_mut(id).flags |= flags::PARTIALLY_MAPPED;
                if f.order == HPAGE_PMD_ORDER {
                    self.vmstat.count(VmItem::ThpDeferredSplitPage);
                }
                self.vmstat.mthp_count(f.order, MthpStat::SplitDeferred);
                self.vmstat
                    .mthp_add(f.order, MthpStat::NrAnonPartiallyMapped, 1);
            }
        } else {
            debug_assert!(!f.test(flags::PARTIALLY_MAPPED));
        }
        if !f.test(flags::DEFERRED) {
            self.ds_enqueue(id);
        }
    }

    fn ds_enqueue(&mut self, id: FolioId) {
        self.folios.get_mut(id).flags |= flags::DEFERRED;
        self.ds_queue.push_back(&mut self.folios, id);
    }

    /// `__folio_unqueue_deferred_split`.
    pub(crate) fn ds_unqueue(&mut self, id: FolioId) {
        let f = self.folios.get_mut(id);
        debug_assert!(f.test(flags::DEFERRED));
        f.flags &= !flags::DEFERRED;
        let order = f.order;
        if f.test(flags::PARTIALLY_MAPPED) {
            f.flags &= !flags::PARTIALLY_MAPPED;
            self.vmstat
                .mthp_add(order, MthpStat::NrAnonPartiallyMapped, -1);
        }
        self.ds_queue.remove(&mut self.folios, id);
    }

    /// The deferred-split queue in order (for invariants and observation).
    pub fn deferred_split_queue(&self) -> Vec<FolioId> {
        self.ds_queue.to_vec(&self.folios)
    }
}
