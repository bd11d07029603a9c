//! Observation of an address space as `/proc/PID/smaps` and `/proc/PID/pagemap` +
//! `/proc/kpageflags` show it, after `fs/proc/task_mmu.c` (Linux 6.18): `smaps_account`
//! (precise per-page mapcounts, PSS in 1/4096 fixed point, shared vs private by mapcount ≥ 2,
//! dirty if the entry or the folio (PG_dirty) is),
//! `smaps_pmd_entry` (AnonHugePages), the zero page and huge zero page counting nothing, and
//! `THPeligible`. Ranges are clipped to the requested range, so a mapping's observation sums
//! the VMAs that make it up.

use crate::fault::Tva;
use crate::folio::flags;
use crate::observe::{pagemap_push, Backing, PageMap, Smaps};
use crate::pgtable::PteKind;
use crate::pgtable::{pte_index, pte_index32, DIRTY, EXCLUSIVE};
use crate::types::{Pid, PAGE_SIZE, PMD_MASK, PMD_SIZE};
use crate::Kernel;

/// `PAGE_SIZE` as an iterator step.
const PAGE_STEP: usize = 1 << crate::types::PAGE_SHIFT;

const PSS_SHIFT: u32 = 12;

/// `THP_ORDERS_ALL_ANON` (orders 2..=9): `THPeligible` is 1 if any of them is allowed.
const ALL_ANON_ORDERS: u16 = 0b11_1111_1100;

#[derive(Default)]
struct Acc {
    rss: u64,
    pss: u64,
    shared_clean: u64,
    shared_dirty: u64,
    private_clean: u64,
    private_dirty: u64,
    anonymous: u64,
    anon_huge: u64,
    shmem_pmd: u64,
    file_pmd: u64,
    swap: u64,
    swap_pss: u64,
}

impl Acc {
    /// `n` pages with the same mapcount and dirtiness.
    fn pages(&mut self, n: u64, mapcount: u32, dirty: bool, pmd_mapped: bool, anon: bool) {
        let bytes = n * PAGE_SIZE;
        self.rss += bytes;
        self.kind(bytes, pmd_mapped, anon);
        let mut pss = PAGE_SIZE << PSS_SHIFT;
        if mapcount >= 2 {
            pss /= u64::from(mapcount);
        }
        self.pss += pss * n;
        match (mapcount >= 2, dirty) {
            (true, true) => self.shared_dirty += bytes,
            (true, false) => self.shared_clean += bytes,
            (false, true) => self.private_dirty += bytes,
            (false, false) => self.private_clean += bytes,
        }
    }

    /// `Anonymous`, and `AnonHugePages` / `ShmemPmdMapped` for PMD-mapped bytes.
    fn kind(&mut self, bytes: u64, pmd_mapped: bool, anon: bool) {
        if anon {
            self.anonymous += bytes;
        }
        if pmd_mapped && anon {
            self.anon_huge += bytes;
        } else if pmd_mapped {
            self.shmem_pmd += bytes;
        }
    }

    /// A PMD-mapped disk-file folio counts as `FilePmdMapped`, not `ShmemPmdMapped`
    /// (`smaps_pmd_entry`: `folio_test_swapbacked`).
    fn file_pmd_instead(&mut self, bytes: u64) {
        self.shmem_pmd -= bytes;
        self.file_pmd += bytes;
    }

    /// `smaps_page_accumulate` for one 4 KiB page.
    fn page(&mut self, mapcount: u32, dirty: bool, pmd_mapped: bool, anon: bool) {
        self.rss += PAGE_SIZE;
        self.kind(PAGE_SIZE, pmd_mapped, anon);
        let mut pss = PAGE_SIZE << PSS_SHIFT;
        if mapcount >= 2 {
            pss /= u64::from(mapcount);
        }
        self.pss += pss;
        match (mapcount >= 2, dirty) {
            (true, true) => self.shared_dirty += PAGE_SIZE,
            (true, false) => self.shared_clean += PAGE_SIZE,
            (false, true) => self.private_dirty += PAGE_SIZE,
            (false, false) => self.private_clean += PAGE_SIZE,
        }
    }
}

impl Kernel {
    /// smaps fields as `/proc/PID/smaps` gives them for a range: the sum over every VMA of
    /// `pid` overlapping `[start, end)`, each whole (the file has one record per VMA). A
    /// range and its VMAs differ after a `MAP_FIXED` mmap into part of another mapping, or
    /// after one merged with its neighbours.
    pub fn smaps_vmas(&self, pid: Pid, start: u64, end: u64) -> Smaps {
        let mm = &self.mms[self.mm_of(pid)];
        let starts = mm.vma_starts_in(start, end);
        match (starts.first(), starts.last()) {
            (Some(&a), Some(&l)) => self.smaps(pid, a, mm.vmas[&l].end),
            _ => Smaps::default(),
        }
    }

    /// smaps fields for the VMAs of `pid` overlapping `[start, end)`, clipped to the range.
    pub fn smaps(&self, pid: Pid, start: u64, end: u64) -> Smaps {
        let mmi = self.mm_of(pid);
        let mm = &self.mms[mmi];
        let mut out = Smaps::default();
        for s in mm.vma_starts_in(start, end) {
            let vma = &mm.vmas[&s];
            let (a, b) = (start.max(vma.start), end.min(vma.end));
            let mut acc = Acc::default();
            for (slot, pmd) in self.walk_pmds(mmi, a, b) {
                let (ps, pe) = (a.max(slot), b.min(slot + PMD_SIZE));
                if pmd.is_thp() && self.folios.meta(pmd.folio()).page_mapcount.is_empty() {
                    // No page of the folio is also PTE-mapped: every page has the same
                    // mapcount, so the slot is accounted at once.
                    let f = self.folios.get(pmd.folio());
                    let n = (pe - ps) / PAGE_SIZE;
                    let dirty = pmd.has(DIRTY) || f.test(flags::DIRTY);
                    acc.pages(
                        n,
                        u32::from(f.entire_mapcount),
                        dirty,
                        true,
                        f.test(flags::ANON),
                    );
                    if self.folio_is_disk(pmd.folio()) {
                        acc.file_pmd_instead(n * PAGE_SIZE);
                    }
                } else if pmd.is_thp() {
                    let id = pmd.folio();
                    let f = self.folios.get(id);
                    let dirty = pmd.has(DIRTY) || f.test(flags::DIRTY);
                    for addr in (ps..pe).step_by(PAGE_STEP) {
                        let idx = pte_index32(addr);
                        let mc = u32::from(f.entire_mapcount) + self.folios.page_mapcount(id, idx);
                        acc.page(mc, dirty, true, f.test(flags::ANON));
                    }
                    if self.folio_is_disk(id) {
                        acc.file_pmd_instead(pe - ps);
                    }
                } else if pmd.is_table() {
                    let table = mm.pgt.pte_table(pmd.table_idx());
                    for addr in (ps..pe).step_by(PAGE_STEP) {
                        let pte = table[pte_index(addr)];
                        if pte.is_page() && pte.has(EXCLUSIVE) {
                            // AnonExclusive: mapped exactly once, here (the folio is only
                            // looked at for PG_dirty when the PTE is clean).
                            let dirty =
                                pte.has(DIRTY) || self.folios.get(pte.folio()).test(flags::DIRTY);
                            acc.page(1, dirty, false, true);
                        } else if pte.is_swap() {
                            // smaps_pte_entry: `Swap`, and `SwapPss` shared by the swap
                            // PTEs naming the slot (`swp_swapcount`).
                            let n = self
                                .swap
                                .si
                                .as_ref()
                                .map_or(1, |si| si.count(pte.swap_slot()));
                            acc.swap += PAGE_SIZE;
                            acc.swap_pss += (PAGE_SIZE << PSS_SHIFT) / u64::from(n.max(1));
                        } else if pte.is_page() {
                            let id = pte.folio();
                            let f = self.folios.get(id);
                            let entire = if f.order > 0 {
                                u32::from(f.entire_mapcount)
                            } else {
                                0
                            };
                            let mc = entire + self.folios.page_mapcount(id, pte.idx());
                            let dirty = pte.has(DIRTY) || f.test(flags::DIRTY);
                            acc.page(mc, dirty, false, f.test(flags::ANON));
                        }
                    }
                }
            }
            if let crate::mm::VmaBacking::Shmem { inode } = vma.backing {
                // smap_gather_stats: a shmem VMA's swapped pages are in the page cache, not
                // its page tables (`shmem_swap_usage`; no `SwapPss`). A private writable
                // mapping counts them only where no PTE hides them (`smaps_pte_hole_lookup`).
                let all = vma.has(crate::mm::vmf::SHARED) || !vma.has(crate::mm::vmf::WRITE);
                for addr in self.shmem_swap_usage(inode, vma, a, b) {
                    if all || mm.pgt.pte(addr).is_none() {
                        acc.swap += PAGE_SIZE;
                    }
                }
            }
            let one = Smaps {
                size: (b - a) >> 10,
                rss: acc.rss >> 10,
                pss: acc.pss >> (PSS_SHIFT + 10),
                shared_clean: acc.shared_clean >> 10,
                shared_dirty: acc.shared_dirty >> 10,
                private_clean: acc.private_clean >> 10,
                private_dirty: acc.private_dirty >> 10,
                anonymous: acc.anonymous >> 10,
                anon_huge_pages: acc.anon_huge >> 10,
                shmem_pmd_mapped: acc.shmem_pmd >> 10,
                file_pmd_mapped: acc.file_pmd >> 10,
                swap: acc.swap >> 10,
                swap_pss: acc.swap_pss >> (PSS_SHIFT + 10),
                thp_eligible: u64::from(
                    self.thp_vma_allowable_orders(mmi, vma, ALL_ANON_ORDERS, Tva::Smaps) != 0,
                ),
                // vma_kernel_pagesize: the huge page size of a hugetlb VMA.
                kernel_page_size: self.hugetlb_page_size(vma) >> 10,
                locked: if vma.has(crate::mm::vmf::LOCKED) {
                    acc.pss >> (PSS_SHIFT + 10)
                } else {
                    0
                },
                ..Smaps::default()
            };
            let mut one = one;
            if vma.backing.is_hugetlb() {
                let (shared, private) = self.hugetlb_smaps(mmi, a, b);
                one.shared_hugetlb = shared >> 10;
                one.private_hugetlb = private >> 10;
            }
            out.accumulate(&one);
        }
        out
    }

    /// What backs each 4 KiB page of `[start, end)`, run-length encoded.
    pub fn page_map(&self, pid: Pid, start: u64, end: u64) -> PageMap {
        let mmi = self.mm_of(pid);
        let mm = &self.mms[mmi];
        let mut map = PageMap::new();
        let mut addr = start;
        while addr < end {
            // Unpopulated slots up to the next populated one are one `None` run.
            let next = self.next_pmd_slot(mmi, addr, end).unwrap_or(end).max(addr);
            if next > addr {
                pagemap_push(&mut map, Backing::None, (next - addr) / PAGE_SIZE);
                addr = next;
                if addr >= end {
                    break;
                }
            }
            let slot_end = ((addr & PMD_MASK) + PMD_SIZE).min(end);
            let n = (slot_end - addr) / PAGE_SIZE;
            let pmd = mm.pgt.pmd(addr);
            if pmd.is_table() {
                let table = mm.pgt.pte_table(pmd.table_idx());
                for a in (addr..slot_end).step_by(PAGE_STEP) {
                    let pte = table[pte_index(a)];
                    let b = match pte.kind() {
                        PteKind::None => Backing::None,
                        PteKind::Zero => Backing::Zero,
                        PteKind::Page => {
                            let f = self.folios.get(pte.folio());
                            let cached = f.test(flags::SHMEM);
                            let disk = cached && self.folio_is_disk(pte.folio());
                            match (cached, f.order) {
                                _ if cached && self.folio_is_gmem(pte.folio()) => Backing::Gmem,
                                (false, 0) => Backing::Anon,
                                (false, order) => Backing::ThpPte { order },
                                (true, 0) if disk => Backing::File,
                                (true, order) if disk => Backing::FilePte { order },
                                (true, 0) => Backing::Shmem,
                                (true, order) => Backing::ShmemPte { order },
                            }
                        }
                        PteKind::Marker => Backing::Marker,
                        PteKind::Swap => Backing::Swap,
                    };
                    pagemap_push(&mut map, b, 1);
                }
            } else {
                let b = if pmd.is_huge_zero() {
                    Backing::HugeZero
                } else if pmd.is_thp() && self.folio_is_disk(pmd.folio()) {
                    Backing::FilePmd
                } else if pmd.is_thp() && self.folios.get(pmd.folio()).test(flags::SHMEM) {
                    Backing::ShmemPmd
                } else if pmd.is_thp() {
                    Backing::ThpPmd
                } else {
                    Backing::None
                };
                pagemap_push(&mut map, b, n);
            }
            addr = slot_end;
        }
        self.hugetlb_overlay(mmi, start, end, map)
    }
}

impl Kernel {
    /// Test support: every present PTE of `[start, end)` (page aligned) with its folio, as
    /// `(address, entry, pfn, refcount, mapcount, flags, LRU bits)`: the raw state the
    /// equivalence tests of the fast paths compare (the entry holds the folio id and every
    /// bit, the folio its frame). Huge PMDs are not listed.
    #[doc(hidden)]
    pub fn pte_frames(
        &self,
        pid: Pid,
        start: u64,
        end: u64,
    ) -> Vec<(u64, u64, u64, u32, u32, u8, u8)> {
        let mm = &self.mms[self.mm_of(pid)];
        let mut out = Vec::new();
        for a in (start..end).step_by(PAGE_STEP) {
            let pte = mm.pgt.pte(a);
            if pte.is_none() {
                continue;
            }
            let (mut pfn, mut refs, mut maps, mut fl, mut lru) = (0, 0, 0, 0, 0);
            if pte.is_page() {
                let f = self.folios.get(pte.folio());
                (pfn, refs, maps, fl) = (f.pfn().0, f.refcount, f.mapcount, f.flags);
                lru = self.folios.lru(pte.folio());
            }
            out.push((a, pte.0, pfn, refs, maps, fl, lru));
        }
        out
    }
}
