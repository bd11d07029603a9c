//! Reclaim of the folios MADV_PAGEOUT isolates, after `mm/vmscan.c` (Linux 6.18):
//! `reclaim_pages` → `shrink_folio_list` with references ignored, for anonymous folios
//! mapped by one mm. A lazy-free folio (MADV_FREE, clean) is discarded; a dirty one becomes
//! swap-backed again and stays. Any other folio gets swap slots (`folio_alloc_swap`: a large
//! folio needs a naturally aligned run, for the PMD order a whole free cluster); if there are
//! none, a large folio is split (`split_folio_to_list`, `thp_swpout_fallback`,
//! `mthp.<size>.swpout_fallback`; unused sub-pages are remapped to the zero page) and its
//! pages are reclaimed one by one, the head first and then the tails from the last, as the
//! split puts them at the end of the list the loop takes from. `try_to_unmap` splits a PMD
//! mapping first (`TTU_SPLIT_HUGE_PMD`, `thp_split_pmd`) and replaces every PTE with a swap
//! entry (`SWP_EXCLUSIVE` from `PageAnonExclusive`, soft-dirty and uffd-wp carried over).
//! `pageout` → `swap_writeout`: an all-zero folio is only marked in the zero map
//! (`swpout_zero`), any other is written (`pswpout`, `thp_swpout`, `mthp.<size>.swpout`).
//! zram completes the write at once, so the folio leaves the swap cache and is freed in the
//! same pass (`__remove_mapping`); on an asynchronous device (a disk or a swap file) a
//! written folio is under writeback and kept, in the swap cache and unmapped (no later
//! reclaim is modelled: it stays until a fault, a zap or a collapse releases it; the model
//! completes the write at once). One already in the swap cache and clean is not written
//! again and is freed, as is an all-zero one on any device.

use std::collections::VecDeque;

use crate::folio::{flags, FolioId};
use crate::ids::MmId;
use crate::mm::MmCounter;
use crate::pgtable::{Pte, DIRTY, EXCLUSIVE, SOFT_DIRTY, UFFD_WP};
use crate::types::{HPAGE_PMD_ORDER, PAGE_SIZE, PMD_MASK};
use crate::util::to_u32;
use crate::vmstat::{MthpStat, VmItem};
use crate::Kernel;

impl Kernel {
    /// `reclaim_pages` of the folios one PMD's walk isolated, each with the address where
    /// mm `mmi` maps its first page, in address order.
    pub(crate) fn reclaim_pages(&mut self, mmi: MmId, list: Vec<(FolioId, u64)>) {
        let mut q: VecDeque<(FolioId, u64)> = list.into();
        while let Some((id, addr)) = q.pop_front() {
            self.shrink_folio(mmi, id, addr, &mut q);
        }
    }

    /// Whether mm `mmi` maps page `i` of folio `id` at `addr + i * 4K` for every page (the
    /// folio may have changed since the walk isolated it).
    fn mapped_here(&self, mmi: MmId, id: FolioId, addr: u64) -> bool {
        let f = self.folios.get(id);
        if f.test(flags::FREE) || !f.test(flags::ANON | flags::SHMEM) {
            return false;
        }
        let pmd = self.mms[mmi].pgt.pmd(addr);
        if pmd.is_thp() {
            return pmd.folio() == id && addr & !PMD_MASK == 0;
        }
        (0..f.nr_pages()).all(|i| {
            let p = self.mms[mmi].pgt.pte(addr + u64::from(i) * PAGE_SIZE);
            p.is_page() && p.folio() == id && p.idx() == i
        })
    }

    /// One folio of `shrink_folio_list`.
    fn shrink_folio(
        &mut self,
        mmi: MmId,
        id: FolioId,
        addr: u64,
        q: &mut VecDeque<(FolioId, u64)>,
    ) {
        if !self.mapped_here(mmi, id, addr) {
            return;
        }
        let f = *self.folios.get(id);
        let nr = f.nr_pages();
        if f.test(flags::SHMEM) {
            self.shrink_shmem_folio(id);
            return;
        }
        if f.test(flags::LAZYFREE) {
            self.reclaim_lazyfree(mmi, id, addr);
            return;
        }
        let mut slot = self.swap.folio_slot.get(&id).copied();
        if slot.is_none() {
            slot = self.swap.alloc(f.order);
            if slot.is_none() && f.order > 0 {
                // Fall back to swapping out the pages one by one.
                let pages: Vec<u64> = (0..nr).map(|i| addr + u64::from(i) * PAGE_SIZE).collect();
                if !self.split_folio(id) {
                    return;
                }
                if f.order == HPAGE_PMD_ORDER {
                    self.vmstat.count(VmItem::ThpSwpoutFallback);
                }
                self.vmstat.mthp_count(f.order, MthpStat::SwpoutFallback);
                // The head is retried at once; the tails were added at the list's end and
                // the loop takes from there, so the last page comes next. Sub-pages the
                // split remapped to the zero page are gone.
                let at = |k: &Kernel, a: u64| {
                    let p = k.mms[mmi].pgt.pte(a);
                    p.is_page().then_some((p.folio(), a))
                };
                let mut next: Vec<(FolioId, u64)> = at(self, pages[0]).into_iter().collect();
                next.extend(pages[1..].iter().rev().filter_map(|&a| at(self, a)));
                for e in next.into_iter().rev() {
                    q.push_front(e);
                }
                return;
            }
            let Some(s) = slot else {
                return;
            };
            // add_to_swap: the folio joins the swap cache and is dirtied.
            self.swap.add(id, s, nr);
            let fm = self.folios.get_mut(id);
            fm.refcount += nr;
            fm.flags |= flags::DIRTY;
        }
        let slot = slot.expect("slot");
        let dirty = self.try_to_unmap_swap(mmi, id, addr, slot);
        self.pageout_swap_cache_folio(id, slot, dirty);
    }

    /// `pageout` of an unmapped folio in the swap cache at `slot` (written if it or a PTE of
    /// it was `dirty`), then `__remove_mapping`: out of the swap cache (its references with
    /// it) and freed, unless the write is still in flight.
    pub(crate) fn pageout_swap_cache_folio(&mut self, id: FolioId, slot: u32, dirty: bool) {
        let nr = self.folios.get(id).nr_pages();
        let under_writeback = (dirty || self.folios.get(id).test(flags::DIRTY))
            && self.swap_writeout(id, slot)
            && !self
                .swap
                .si
                .as_ref()
                .is_some_and(|si| si.device.synchronous());
        if under_writeback {
            // An asynchronous write: the folio is kept (`folio_test_writeback` → keep), in
            // the swap cache and unmapped, until later reclaim; the write's completion
            // leaves it clean. Faults on its entries find it there.
            return;
        }
        self.swap.remove(id, nr);
        self.folio_put(id, nr);
    }

    /// `shrink_folio_list` for a shmem page-cache folio only mm `mmi` maps: `try_to_unmap`
    /// (a PMD mapping split, i.e. cleared, with `thp_split_pmd`; uffd-wp markers where the
    /// VMA wants them; dirty PTEs dirty the folio), then a clean folio is dropped from the
    /// page cache (`__remove_mapping`: a later read finds a hole) and a dirty one goes to
    /// `shmem_writeout`.
    ///
    /// A disk file's dirty folio is not written from here: only kswapd writes filesystem
    /// folios back, so it stays in the page cache, unmapped and dirty, gets `PG_active`
    /// (`activate_locked`) and `PG_reclaim` (`nr_vmscan_immediate_reclaim`). `PG_reclaim` is
    /// the bit `PG_readahead` is, so the next read fault on the folio starts an asynchronous
    /// readahead after it (fault-around skips it; `do_async_mmap_readahead`). A clean one is
    /// dropped like a clean shmem folio.
    fn shrink_shmem_folio(&mut self, id: FolioId) {
        self.unmap_file_folio(id, crate::shmem::UnmapFolio::TryToUnmap);
        let disk = self
            .shmem
            .owner
            .get(&id)
            .is_some_and(|&(ino, _)| self.inode_is_disk(ino));
        if !self.folios.get(id).test(flags::DIRTY) {
            self.shmem_delete_from_page_cache(id);
        } else if disk {
            let nr = self.folios.get(id).nr_pages();
            self.vmstat
                .add(VmItem::NrVmscanImmediateReclaim, i64::from(nr));
            self.folios.set_lru(id, crate::folio::lru::ACTIVE);
            self.shmem.readahead.insert(id);
        } else {
            self.shmem_writeout(id);
        }
    }

    /// `try_to_unmap` of a folio only mm `mmi` maps, at `addr`: a PMD mapping is split
    /// first; each PTE becomes the swap entry of its page's slot. Returns whether a PTE was
    /// dirty (the folio is dirtied from it).
    fn try_to_unmap_swap(&mut self, mmi: MmId, id: FolioId, addr: u64, slot: u32) -> bool {
        if self.mms[mmi].pgt.pmd(addr).is_thp() {
            self.split_huge_pmd(mmi, addr);
        }
        let nr = self.folios.get(id).nr_pages();
        let mut dirty = false;
        for i in 0..nr {
            let a = addr + u64::from(i) * PAGE_SIZE;
            let p = self.mms[mmi].pgt.pte(a);
            dirty |= p.has(DIRTY);
            self.set_pte(
                mmi,
                a,
                Pte::swap(slot + i, p.0 & (EXCLUSIVE | SOFT_DIRTY | UFFD_WP)),
            );
            self.swap.si.as_mut().expect("device").dup(slot + i);
        }
        if dirty {
            self.folios.get_mut(id).flags |= flags::DIRTY;
        }
        self.mms[mmi].add_mm_counter(MmCounter::AnonPages, -i64::from(nr));
        self.mms[mmi].add_mm_counter(MmCounter::SwapEnts, i64::from(nr));
        self.folio_remove_rmap_ptes(id, 0, nr, mmi);
        dirty
    }

    /// `swap_writeout` of a folio in the swap cache at `slot`: all-zero folios only set the
    /// zero map; others are written. True if a write was issued (`swap_writepage_bdev_*`;
    /// zram completes it before returning).
    fn swap_writeout(&mut self, id: FolioId, slot: u32) -> bool {
        let f = *self.folios.get(id);
        let nr = f.nr_pages();
        let content: Vec<bool> = (0..nr).map(|i| self.folios.is_nonzero(id, i)).collect();
        let zero = !content.iter().any(|&c| c);
        let si = self.swap.si.as_mut().expect("device");
        for (i, &c) in content.iter().enumerate() {
            si.set_written(slot + to_u32(i), zero, c);
        }
        if zero {
            self.vmstat.add(VmItem::SwpoutZero, i64::from(nr));
        } else {
            self.vmstat.add(VmItem::Pswpout, i64::from(nr));
            if f.order == HPAGE_PMD_ORDER {
                self.vmstat.count(VmItem::ThpSwpout);
            }
            self.vmstat.mthp_count(f.order, MthpStat::Swpout);
        }
        self.folios.get_mut(id).flags &= !flags::DIRTY;
        !zero
    }

    /// A lazy-free folio: discarded if clean (`try_to_unmap_one` clears its PTEs, the folio
    /// is freed), else swap-backed again (`folio_set_swapbacked`) and kept.
    fn reclaim_lazyfree(&mut self, mmi: MmId, id: FolioId, addr: u64) {
        let nr = self.folios.get(id).nr_pages();
        let pmd = self.mms[mmi].pgt.pmd(addr);
        let dirty = self.folios.get(id).test(flags::DIRTY)
            || if pmd.is_thp() {
                pmd.has(DIRTY)
            } else {
                (0..nr).any(|i| {
                    self.mms[mmi]
                        .pgt
                        .pte(addr + u64::from(i) * PAGE_SIZE)
                        .has(DIRTY)
                })
            };
        if dirty {
            self.folios.get_mut(id).flags &= !flags::LAZYFREE;
            return;
        }
        if pmd.is_thp() {
            self.split_huge_pmd(mmi, addr);
        }
        for i in 0..nr {
            self.set_pte(mmi, addr + u64::from(i) * PAGE_SIZE, Pte::NONE);
        }
        self.mms[mmi].add_mm_counter(MmCounter::AnonPages, -i64::from(nr));
        self.folio_remove_rmap_ptes(id, 0, nr, mmi);
    }
}
