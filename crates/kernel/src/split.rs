//! Folio splitting and the shrinkers that split, after `mm/huge_memory.c` (Linux 6.18):
//! `split_folio` to order 0 (`__folio_split`: unmap — PMD mappings are split first —, refcount
//! check, new order-0 folios, and `remap_page` with zero-filled sub-pages mapped to the shared
//! zero page, `try_to_map_unused_to_zeropage` in `mm/migrate.c`), the deferred-split shrinker
//! with the underused check (`deferred_split_scan`, `thp_underused`) and the huge-zero
//! shrinker; and MADV_FREE (`madvise_free_single_vma`, `madvise_free_huge_pmd`,
//! `madvise_free_pte_range` in `mm/madvise.c`), and the MADV_COLD walk that MADV_PAGEOUT
//! shares, whose isolated folios `vmscan.rs` reclaims.

use crate::folio::{flags, FolioId};
use crate::ids::{MmId, PteTableId};
use crate::mm::vmf;
use crate::mm::MmCounter;
use crate::pgtable::{
    pte_index, Pte, DIRTY, EXCLUSIVE, PROTNONE, SOFT_DIRTY, STORED, UFFD_WP, WRITE, YOUNG,
};
use crate::types::{HPAGE_PMD_ORDER, PAGE_SIZE, PMD_MASK, PMD_SIZE};
use crate::util::to_u32;
use crate::vmstat::{MthpStat, VmItem};
use crate::Kernel;

/// The two advices that walk a range the same way and differ in what they do to a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LazyAdvice {
    /// MADV_FREE: lazy-free and clean.
    Free,
    /// MADV_COLD: old (deactivated).
    Cold,
    /// MADV_PAGEOUT: isolated and reclaimed (`vmscan.rs`), per PMD as
    /// `madvise_cold_or_pageout_pte_range` calls `reclaim_pages`.
    Pageout,
}

impl Kernel {
    /// `split_folio`: splits a large folio into order-0 folios. False (and
    /// `thp_split_page_failed`) if references other than mappings exist. A page-cache (shmem)
    /// folio takes `__folio_split`'s file path (`shmem_split_folio`: unmapped everywhere,
    /// split in the page cache; the model has no pins, so that never fails).
    pub(crate) fn split_folio(&mut self, id: FolioId) -> bool {
        let f = *self.folios.get(id);
        if f.order == 0 {
            return true;
        }
        if self.shmem.owner.contains_key(&id) {
            self.shmem_split_folio(id, None);
            return true;
        }
        let nr = f.nr_pages();
        let va = self.folios.meta(id).va;
        let mms: Vec<MmId> = self.folios.mm_maps(id).iter().map(|&(m, _)| m).collect();
        // unmap_folio() → try_to_migrate(): a PTE-mapped folio loses its mappings one PTE at a
        // time, so with two or more pages mapped it passes through "partially mapped" and is
        // counted as a deferred split (before the split takes it off the queue). PMD mappings
        // are split in freeze mode instead, which does not.
        {
            let f = *self.folios.get(id);
            if f.entire_mapcount == 0
                && self.folios.meta(id).nr_pages_mapped >= 2
                && !f.test(flags::PARTIALLY_MAPPED)
            {
                self.deferred_split_folio(id, true);
            }
        }
        // PMD mappings are split first (thp_split_pmd each).
        for &mmi in &mms {
            for haddr in self.folio_pmd_addrs(mmi, id, va) {
                self.split_huge_pmd(mmi, haddr);
            }
        }
        // try_to_migrate_one(): a dirty PTE's state moves into PG_dirty as it is unmapped
        // (the PMD split above did the same for a dirty PMD); every new folio inherits it.
        // The mappings per mm once the PMDs are split.
        let now = self.folios.mm_maps(id);
        let pte_locs: Vec<(MmId, Vec<(u64, u32)>)> = mms
            .iter()
            .map(|&mmi| {
                let expect = now.iter().find(|(m, _)| *m == mmi).map_or(0, |&(_, c)| c);
                (mmi, self.folio_pte_locs(mmi, id, va, expect))
            })
            .collect();
        if pte_locs.iter().any(|(mmi, locs)| {
            locs.iter()
                .any(|&(a, _)| self.mms[*mmi].pgt.pte(a).has(DIRTY))
        }) {
            self.folios.get_mut(id).flags |= flags::DIRTY;
        }
        let f = *self.folios.get(id);
        if f.refcount != f.mapcount + u32::from(f.entire_mapcount) {
            if f.order == HPAGE_PMD_ORDER {
                self.vmstat.count(VmItem::ThpSplitPageFailed);
            }
            self.vmstat.mthp_count(f.order, MthpStat::SplitFailed);
            return false;
        }
        if f.order == HPAGE_PMD_ORDER {
            self.vmstat.count(VmItem::ThpSplitPage);
        }
        self.vmstat.mthp_count(f.order, MthpStat::Split);
        if f.test(flags::DEFERRED) {
            self.ds_unqueue(id);
        }
        self.vmstat.mthp_add(f.order, MthpStat::NrAnon, -1);
        let meta = self.folios.meta(id).clone();
        let nonzero = self.folios.nonzero_words(id);
        let inherit = f.flags & (flags::LAZYFREE | flags::DIRTY);
        // New order-0 folios, one per page, taking over the page's mappings.
        let mut new_ids = Vec::with_capacity(nr as usize);
        for i in 0..nr {
            let mc = meta.page_mapcount.get(i as usize).copied().unwrap_or(0);
            let nz = if nonzero[(i / 64) as usize] & (1 << (i % 64)) != 0 {
                flags::NONZERO
            } else {
                0
            };
            let nid =
                self.folios
                    .alloc(f.pfn().offset(u64::from(i)), 0, flags::ANON | nz | inherit);
            // __split_folio_to_order(): the new folios keep PG_referenced and PG_active.
            self.folios.set_lru(nid, self.folios.lru(id));
            let nf = self.folios.get_mut(nid);
            nf.mapcount = mc;
            nf.refcount = mc;
            new_ids.push(nid);
        }
        self.folios.release(id);
        for (mmi, locs) in pte_locs {
            for (addr, i) in locs {
                let tidx = self.mms[mmi].pgt.pmd(addr).table_idx();
                let pte = self.mms[mmi].pgt.pte_table(tidx)[pte_index(addr)];
                let nid = new_ids[i as usize];
                let locked = self.mms[mmi]
                    .vma_at(addr)
                    .is_some_and(|v| v.has(vmf::LOCKED));
                if !self.folios.is_nonzero(nid, 0) && !locked {
                    // remap_page(RMP_USE_SHARED_ZEROPAGE): an all-zero page goes back to the
                    // shared zero page and its memory is freed.
                    self.mms[mmi].pgt.pte_table_mut(tidx)[pte_index(addr)] =
                        Pte::zero(pte.0 & (YOUNG | SOFT_DIRTY | UFFD_WP | PROTNONE));
                    self.mms[mmi].add_mm_counter(MmCounter::AnonPages, -1);
                    let nf = self.folios.get_mut(nid);
                    nf.mapcount -= 1;
                    if nf.mapcount == 0 {
                        self.vmstat.add(VmItem::NrAnonPages, -1);
                    }
                    self.folio_put(nid, 1);
                } else {
                    self.mms[mmi].pgt.pte_table_mut(tidx)[pte_index(addr)] =
                        Pte::page(nid, 0, pte.0 & 0x3f8);
                }
            }
        }
        // Pages no longer mapped anywhere are freed now.
        for nid in new_ids {
            let nf = self.folios.get(nid);
            if !nf.test(flags::FREE) && nf.refcount == 0 {
                self.free_folio(nid);
            }
        }
        true
    }

    /// `thp_underused`: more than `max_ptes_none` zero-filled pages (never with the default 511).
    fn thp_underused(&self, id: FolioId) -> bool {
        let max = self.sysfs.max_ptes_none;
        if max == crate::types::HPAGE_PMD_NR - 1 {
            return false;
        }
        let f = self.folios.get(id);
        let nonzero: u32 = self
            .folios
            .nonzero_words(id)
            .iter()
            .map(|w| w.count_ones())
            .sum();
        f.nr_pages() - nonzero > max
    }

    /// `deferred_split_scan` over the whole queue: splits partially mapped folios and
    /// underused ones (`thp_underused`), drops the others from the queue. Returns the number
    /// of folios split.
    pub(crate) fn deferred_split_scan(&mut self) -> u64 {
        let mut split = 0;
        for id in self.deferred_split_queue() {
            let f = *self.folios.get(id);
            if f.test(flags::FREE) || !f.test(flags::DEFERRED) {
                continue;
            }
            let partially = f.test(flags::PARTIALLY_MAPPED);
            let mut underused = false;
            if !partially {
                underused = self.thp_underused(id);
                if !underused {
                    self.ds_unqueue(id);
                    continue;
                }
            }
            if self.split_folio(id) {
                split += 1;
                if underused {
                    self.vmstat.count(VmItem::ThpUnderusedSplitPage);
                }
            } else if !partially {
                self.ds_unqueue(id);
            }
        }
        split
    }

    /// MADV_FREE over `[start, end)` of one VMA (`madvise_free_single_vma`): pages become
    /// lazy-free and clean. See `madvise_lazy_range` for the walk.
    pub(crate) fn madvise_free_range(&mut self, mmi: MmId, start: u64, end: u64) {
        self.madvise_lazy_range(mmi, start, end, LazyAdvice::Free);
    }

    /// MADV_COLD over `[start, end)` of one VMA (`madvise_cold_or_pageout_pte_range` without
    /// pageout): pages are only aged. See `madvise_lazy_range` for the walk.
    pub(crate) fn madvise_cold_range(&mut self, mmi: MmId, start: u64, end: u64) {
        self.madvise_lazy_range(mmi, start, end, LazyAdvice::Cold);
    }

    /// MADV_PAGEOUT over `[start, end)` of one anonymous VMA: the MADV_COLD walk, whose
    /// folios are reclaimed (`reclaim_pages`) at the end of each PMD.
    pub(crate) fn madvise_pageout_range(&mut self, mmi: MmId, start: u64, end: u64) {
        self.madvise_lazy_range(mmi, start, end, LazyAdvice::Pageout);
    }

    /// The walk MADV_FREE, MADV_COLD and MADV_PAGEOUT share. A PMD-mapped THP another mm maps is left alone
    /// (`madvise_free_huge_pmd`); one only partly covered is split; the PTE level is
    /// `madvise_lazy_pte_range`.
    fn madvise_lazy_range(&mut self, mmi: MmId, start: u64, end: u64, advice: LazyAdvice) {
        let mut slot = start & PMD_MASK;
        while let Some(next) = self.next_pmd_slot(mmi, slot, end) {
            slot = next;
            let (s, e) = (start.max(slot), end.min(slot + PMD_SIZE));
            let pmd = self.mms[mmi].pgt.pmd(slot);
            if pmd.is_thp() {
                let id = pmd.folio();
                // madvise_free_huge_pmd(): a folio other processes map is left alone.
                if self.folios.maybe_mapped_shared(id) {
                    slot += PMD_SIZE;
                    continue;
                }
                if s == slot && e == slot + PMD_SIZE {
                    if advice != LazyAdvice::Free {
                        self.mms[mmi]
                            .pgt
                            .pmd_mut(slot)
                            .expect("pmd")
                            .set(YOUNG, false);
                        // folio_clear_referenced() + folio_deactivate() (COLD) or isolation
                        // for reclaim (PAGEOUT).
                        self.folios.set_lru(id, 0);
                        if advice == LazyAdvice::Pageout {
                            self.reclaim_pages(mmi, vec![(id, slot)]);
                        }
                        slot += PMD_SIZE;
                        continue;
                    }
                    // The whole PMD → lazy-free, clean (PG_dirty cleared too).
                    let f = *self.folios.get(id);
                    if f.entire_mapcount == 1 && f.mapcount == 0 {
                        // mark_folio_lazyfree() (lru_lazyfree) clears PG_active and
                        // PG_referenced as it moves the folio to the inactive file list.
                        if !f.test(flags::LAZYFREE) {
                            self.folios.set_lru(id, 0);
                        }
                        let nf = self.folios.get_mut(id);
                        nf.flags = (nf.flags | flags::LAZYFREE) & !flags::DIRTY;
                        self.mms[mmi]
                            .pgt
                            .pmd_mut(slot)
                            .expect("pmd")
                            .set(DIRTY | YOUNG, false);
                    }
                    slot += PMD_SIZE;
                    continue;
                }
                // Part of it: split the folio (PMD mapping split in freeze mode), then the PTE
                // level marks the covered pages.
                if !self.split_folio(id) {
                    slot += PMD_SIZE;
                    continue;
                }
            }
            let pmd = self.mms[mmi].pgt.pmd(slot);
            if pmd.is_table() {
                let isolated = self.madvise_lazy_pte_range(mmi, pmd.table_idx(), (s, e), advice);
                if !isolated.is_empty() {
                    self.reclaim_pages(mmi, isolated);
                }
            }
            slot += PMD_SIZE;
        }
    }

    /// `madvise_free_pte_range` (FREE) or the PTE part of
    /// `madvise_cold_or_pageout_pte_range` (COLD) over `[start, end)` of one PTE table. Present pages
    /// are taken a folio batch at a time (`madvise_folio_pte_batch`). A large folio whose
    /// batch is shorter than the folio (the range covers part of it, part of it is unmapped
    /// or lies in another PTE table) is split if no other mm maps it, then its pages are
    /// handled one by one. FREE then skips a `PG_dirty` folio that is mapped more often
    /// than it has pages (shared); any other folio — also a clean one a fork child shares —
    /// has the batch's PTEs made clean and old, PG_dirty cleared and becomes lazy-free. COLD
    /// only ages folios that are mapped exactly once per page; PAGEOUT isolates those
    /// (their PTEs stay young) and returns them with the address of their first page.
    /// Swap entries: MADV_FREE drops them (`free_swap_and_cache_nr`), the others skip them.
    fn madvise_lazy_pte_range(
        &mut self,
        mmi: MmId,
        tidx: PteTableId,
        (start, end): (u64, u64),
        advice: LazyAdvice,
    ) -> Vec<(FolioId, u64)> {
        let mut isolated = Vec::new();
        let mut addr = start;
        while addr < end {
            let pte = self.mms[mmi].pgt.pte_table(tidx)[pte_index(addr)];
            if pte.is_swap() && advice == LazyAdvice::Free {
                self.mms[mmi].pgt.pte_table_mut(tidx)[pte_index(addr)] = Pte::NONE;
                self.mms[mmi].add_mm_counter(MmCounter::SwapEnts, -1);
                self.free_swap_and_cache(pte.swap_slot());
            }
            if !pte.is_page() {
                addr += PAGE_SIZE;
                continue;
            }
            let id = pte.folio();
            let f = *self.folios.get(id);
            let mut nr = 1;
            if f.order > 0 {
                nr = self.folio_pte_batch(mmi, tidx, addr, end, 0);
                if nr < f.nr_pages() {
                    if self.folios.maybe_mapped_shared(id) || !self.split_folio(id) {
                        addr += u64::from(nr) * PAGE_SIZE;
                    }
                    // After a split the same PTEs are looked at again, now order 0.
                    continue;
                }
            }
            let i = pte_index(addr);
            let mapcount = f.mapcount + u32::from(f.entire_mapcount);
            if advice == LazyAdvice::Pageout {
                // Anonymous folios and shmem page-cache folios (madvise refuses other file
                // VMAs); a page-cache folio mapped elsewhere too is skipped like any.
                if mapcount == f.nr_pages() && f.test(flags::ANON | flags::SHMEM) {
                    self.folios.set_lru(id, 0);
                    isolated.push((id, addr - u64::from(pte.idx()) * PAGE_SIZE));
                }
            } else if advice == LazyAdvice::Cold {
                if mapcount == f.nr_pages() {
                    for e in &mut self.mms[mmi].pgt.pte_table_mut(tidx)[i..i + nr as usize] {
                        e.set(YOUNG, false);
                    }
                    // folio_clear_referenced() + folio_deactivate().
                    self.folios.set_lru(id, 0);
                }
            } else if !f.test(flags::DIRTY) || mapcount == f.nr_pages() {
                if !f.test(flags::LAZYFREE) {
                    // mark_folio_lazyfree() (lru_lazyfree).
                    self.folios.set_lru(id, 0);
                }
                let nf = self.folios.get_mut(id);
                nf.flags = (nf.flags | flags::LAZYFREE) & !flags::DIRTY;
                for e in &mut self.mms[mmi].pgt.pte_table_mut(tidx)[i..i + nr as usize] {
                    e.set(DIRTY | YOUNG, false);
                }
            }
            addr += u64::from(nr) * PAGE_SIZE;
        }
        isolated
    }

    /// `folio_pte_batch_flags`: how many PTEs from `addr` (before `end`, inside one table) map
    /// consecutive pages of the same folio, up to the folio's last page. Dirty, young,
    /// soft-dirty and write bits may differ unless `respect` names them (`FPB_RESPECT_*`; so
    /// may the model-only AnonExclusive and STORED bits); uffd-wp and PROT_NONE may not.
    /// `madvise_folio_pte_batch` respects nothing, mprotect respects write and soft-dirty.
    pub(crate) fn folio_pte_batch(
        &self,
        mmi: MmId,
        tidx: PteTableId,
        addr: u64,
        end: u64,
        respect: u64,
    ) -> u32 {
        let ignored = (DIRTY | YOUNG | SOFT_DIRTY | WRITE | EXCLUSIVE | STORED) & !respect;
        let table = self.mms[mmi].pgt.pte_table(tidx);
        let first = table[pte_index(addr)];
        let left_in_folio = self.folios.get(first.folio()).nr_pages() - first.idx();
        let max = u32::try_from((end - addr) / PAGE_SIZE)
            .unwrap_or(u32::MAX)
            .min(left_in_folio);
        let kept = first.0 & (UFFD_WP | PROTNONE | (respect & (SOFT_DIRTY | WRITE)));
        let mut nr = 1;
        while nr < max {
            let q = table[pte_index(addr) + nr as usize];
            let want = Pte::page(first.folio(), first.idx() + nr, 0);
            if (q.0 & !ignored) != (want.0 | kept) {
                break;
            }
            nr += 1;
        }
        nr
    }

    /// Where mm `mmi` maps folio `id` by PMD: normally at `va` (its fault address); after an
    /// mremap the page tables are searched (the kernel walks the anon_vma instead).
    fn folio_pmd_addrs(&self, mmi: MmId, id: FolioId, va: u64) -> Vec<u64> {
        let pgt = &self.mms[mmi].pgt;
        let p = pgt.pmd(va);
        if p.is_thp() && p.folio() == id {
            return vec![va & PMD_MASK];
        }
        let mut v = vec![];
        for key in pgt.pmd_table_keys() {
            let t = pgt.pmd_table(key).expect("pmd table");
            for (i, e) in t.iter().enumerate() {
                if e.is_thp() && e.folio() == id {
                    v.push(
                        (key << crate::types::PUD_SHIFT) | ((i as u64) << crate::types::PMD_SHIFT),
                    );
                }
            }
        }
        v
    }

    /// Every `(address, page index)` where mm `mmi` maps a page of folio `id` by PTE
    /// (`expect` of them): the fast path checks `va`, else the page tables are searched.
    fn folio_pte_locs(&self, mmi: MmId, id: FolioId, va: u64, expect: u32) -> Vec<(u64, u32)> {
        let pgt = &self.mms[mmi].pgt;
        let nr = self.folios.get(id).nr_pages();
        let mut v = Vec::new();
        for i in 0..nr {
            let addr = va + u64::from(i) * PAGE_SIZE;
            let pte = pgt.pte(addr);
            if pte.is_page() && pte.folio() == id && pte.idx() == i {
                v.push((addr, i));
            }
        }
        if to_u32(v.len()) == expect {
            return v;
        }
        v.clear();
        for key in pgt.pmd_table_keys() {
            let t = pgt.pmd_table(key).expect("pmd table");
            for (i, e) in t.iter().enumerate() {
                if !e.is_table() {
                    continue;
                }
                let slot =
                    (key << crate::types::PUD_SHIFT) | ((i as u64) << crate::types::PMD_SHIFT);
                for (j, pte) in pgt.pte_table(e.table_idx()).iter().enumerate() {
                    if pte.is_page() && pte.folio() == id {
                        v.push((slot + ((j as u64) << 12), pte.idx()));
                    }
                }
            }
        }
        v
    }
}
