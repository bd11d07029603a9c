//! hugetlb: the persistent pools of huge pages and their reservations (`mm/hugetlb.c`),
//! hugetlbfs files (`fs/hugetlbfs/inode.c`: `MFD_HUGETLB` memfds and the unlinked file behind
//! `MAP_HUGETLB`), Linux 6.18, x86-64, both sizes: 2 MiB (the default hstate, PMD-mapped)
//! and 1 GiB (gigantic, PUD-mapped; FINDINGS.md §34). Each size has its own `Hstate`; a file
//! has one page size (`hstate_inode`), and a VMA has its file's.
//!
//! Hugetlb VMAs never put entries in the mm's page tables of `pgtable.rs`: the kernel gives
//! them their own walks (`huge_pte_offset`, `hugetlb_fault`, `copy_hugetlb_page_range`,
//! `unmap_hugepage_range`, `hugetlb_change_protection`, `smaps_hugetlb_range`), and so does
//! the model: their huge PTEs live here, keyed by (mm, address), and the generic walks see
//! nothing in a hugetlb VMA. 2 MiB pool pages are order-9 blocks taken from the buddy
//! allocator (`alloc_buddy_hugetlb_folio`, counted in `htlb_buddy_alloc_success`/`_fail`);
//! 1 GiB ones are whole free aligned ranges (`alloc_gigantic_folio` → `alloc_contig_pages`),
//! and no surplus page is ever gigantic.
//!
//! Reservations (`hugetlb_reserve_pages`): a shared mapping reserves in its inode's map (an
//! index is in the map while reserved or instantiated), a private one in a map of its own
//! whose entries are the indices whose reservation was consumed (the kernel's inverted
//! meaning). `resv_huge_pages` counts reservations not yet backed by a page.
//!
//! Deviations: no subpools (`size=`/`min_size=` mounts), no cgroup charging, no NUMA, no
//! PMD sharing, no page pinning (fork never copies eagerly),
//! no content tracking (zeroing a partial page on punch changes nothing observable here), no
//! demotion of 1 GiB pages, no boot-time or CMA gigantic pools.
//!
//! userfaultfd (`mm/hugetlb.c` 6.18: `hugetlb_no_page`'s MISSING/MINOR checks, the uffd-wp
//! check of `hugetlb_fault`, `hugetlb_mfill_atomic_pte`, `hugetlb_change_protection` with
//! the uffd flags): huge PTEs carry a uffd-wp bit and none entries may hold a uffd-wp marker
//! (`Hugetlb::markers`); every ioctl works on whole huge pages (FINDINGS.md §25).

use std::collections::{BTreeMap, BTreeSet};

use crate::errno::{Errno, Signal};
use crate::fault::VmFault;
use crate::ids::{HugetlbFolioId, HugetlbInodeId, MmId, Pfn, ResvMapId};
use crate::mm::{vmf, Vma, VmaBacking};
use crate::observe::{pagemap_push, Backing, PageMap};
use crate::page_alloc::Gfp;
use crate::types::{Pid, PAGE_SHIFT, PAGE_SIZE};
use crate::userfaultfd::{FLAG_MINOR, FLAG_WP, FLAG_WRITE};
use crate::vmstat::VmItem;
use crate::Kernel;

/// `huge_page_shift(&default_hstate)`.
pub const HPAGE_SHIFT: u32 = 21;
/// `huge_page_size(&default_hstate)`: 2 MiB.
pub const HPAGE_SIZE: u64 = 1 << HPAGE_SHIFT;

/// A huge page size with an hstate of its own (`/sys/kernel/mm/hugepages/hugepages-<N>kB`):
/// 2 MiB (PMD-mapped, the default `Hugepagesize`) and 1 GiB (PUD-mapped, gigantic: above
/// `MAX_PAGE_ORDER`, so its pool pages come from `alloc_contig_pages`, not the buddy lists).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum HugePageSize {
    #[default]
    Size2M,
    Size1G,
}

impl HugePageSize {
    pub const ALL: [HugePageSize; 2] = [HugePageSize::Size2M, HugePageSize::Size1G];
    /// `huge_page_order`.
    pub const fn order(self) -> u8 {
        match self {
            HugePageSize::Size2M => 9,
            HugePageSize::Size1G => 18,
        }
    }
    /// `huge_page_shift`.
    pub const fn shift(self) -> u32 {
        self.order() as u32 + PAGE_SHIFT
    }
    /// `huge_page_size`.
    pub const fn size(self) -> u64 {
        1 << self.shift()
    }
    /// `pages_per_huge_page`.
    pub const fn nr_pages(self) -> u64 {
        1 << self.order()
    }
    /// The size in kB, as the sysfs directory names it.
    pub const fn kb(self) -> u64 {
        self.size() >> 10
    }
    /// `hstate_is_gigantic`: the order is above `MAX_PAGE_ORDER`.
    pub const fn gigantic(self) -> bool {
        self.order() > crate::types::MAX_PAGE_ORDER
    }
    /// `MAP_HUGE_2MB`/`MAP_HUGE_1GB` by the size in bytes.
    pub fn from_bytes(bytes: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.size() == bytes)
    }
    const fn index(self) -> usize {
        self as usize
    }
    /// How the scenario language writes it (`2M`, `1G`).
    pub const fn name(self) -> &'static str {
        match self {
            HugePageSize::Size2M => "2M",
            HugePageSize::Size1G => "1G",
        }
    }
    /// The inverse of [`HugePageSize::name`].
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|h| h.name() == s)
    }
}

/// `struct hstate` of one size (one node).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hstate {
    /// `nr_huge_pages`: every pool page, free or in use, persistent or surplus.
    pub nr_huge_pages: u64,
    /// `free_huge_pages`.
    pub free_huge_pages: u64,
    /// `resv_huge_pages`: reservations not yet backed by an allocated page. Unsigned with
    /// the kernel's wrapping arithmetic: when the reservation's owner unmaps a private page
    /// a fork child still maps, `hugetlb_vm_op_close` gives back the reservation that
    /// freeing the page (`HPG_restore_reserve`) will only add later, so the count goes
    /// below zero (prints as 2^64 - 1) until the child lets go of the page.
    pub resv_huge_pages: u64,
    /// `surplus_huge_pages`: pages beyond the persistent pool, freed when released.
    pub surplus_huge_pages: u64,
    /// `nr_overcommit_huge_pages`: the surplus limit (always 0 for the gigantic size, whose
    /// file refuses every write with EINVAL on 6.18: measured, FINDINGS §34).
    pub nr_overcommit_huge_pages: u64,
    /// The free list (`hugepage_freelists`): pages are enqueued at the head and dequeued
    /// from it.
    free_list: Vec<Pfn>,
}

impl Hstate {
    /// `persistent_huge_pages`.
    pub fn persistent_huge_pages(&self) -> u64 {
        self.nr_huge_pages - self.surplus_huge_pages
    }
}

/// A pool page in use (`struct folio` with `PG_hugetlb`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HugetlbFolio {
    pub(crate) pfn: Pfn,
    /// The hstate it belongs to (`folio_hstate`).
    pub(crate) size: HugePageSize,
    /// Huge PTEs mapping it (`folio_mapcount`, all entire mappings).
    pub(crate) mapcount: u32,
    /// In a hugetlbfs page cache: inode and index (the cache holds one reference).
    pub(crate) cache: Option<(HugetlbInodeId, u64)>,
    /// A private (anonymous) page: `hugetlb_add_new_anon_rmap`.
    pub(crate) anon: bool,
    /// `HPG_restore_reserve`: freeing the folio gives a reservation back.
    pub(crate) restore_reserve: bool,
}

/// A hugetlbfs inode: size, page cache, and the shared reserve map.
#[derive(Clone, Debug, Default)]
pub(crate) struct HugetlbInode {
    /// `hstate_inode`: the page size of the file (its mount's `pagesize=`, or the
    /// `MFD_HUGE_*`/`MAP_HUGE_*` size of the internal mount).
    pub(crate) hsize: HugePageSize,
    /// `i_size` in bytes (a multiple of the huge page size).
    pub(crate) size: u64,
    pub(crate) cache: BTreeMap<u64, HugetlbFolioId>,
    /// `inode->i_mapping->i_private_data` (`struct resv_map`): indices reserved or
    /// instantiated for shared mappings.
    pub(crate) resv: BTreeSet<u64>,
    /// The unlinked file of a `MAP_HUGETLB` mapping: evicted once nothing maps it.
    pub(crate) anon: bool,
    pub(crate) dead: bool,
}

/// A present huge PTE (a PMD entry for 2 MiB, a PUD entry for 1 GiB).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HugePte {
    pub(crate) folio: HugetlbFolioId,
    pub(crate) write: bool,
    /// `huge_pte_uffd_wp`: write-protected by userfaultfd (never writable while set).
    pub(crate) uffd_wp: bool,
}

/// The model's hugetlb state.
#[derive(Clone, Debug, Default)]
pub struct Hugetlb {
    /// `hstates[]`, by `HugePageSize` (2 MiB first: `default_hstate`).
    pub hstates: [Hstate; 2],
    pub(crate) folios: Vec<Option<HugetlbFolio>>,
    free_ids: Vec<usize>,
    pub(crate) inodes: Vec<HugetlbInode>,
    /// Private reserve maps: the indices whose reservation was consumed.
    pub(crate) resv_maps: Vec<BTreeSet<u64>>,
    /// Huge PTEs by (mm, address aligned to the VMA's huge page size).
    pub(crate) ptes: BTreeMap<(MmId, u64), HugePte>,
    /// uffd-wp PTE markers (`PTE_MARKER_UFFD_WP`) in none huge PTEs, by (mm, address): never
    /// where `ptes` has an entry.
    pub(crate) markers: BTreeSet<(MmId, u64)>,
}

impl Hugetlb {
    /// The hstate of `size`.
    pub fn hstate(&self, size: HugePageSize) -> &Hstate {
        &self.hstates[size.index()]
    }
    fn hs(&mut self, size: HugePageSize) -> &mut Hstate {
        &mut self.hstates[size.index()]
    }
    fn folio(&self, id: HugetlbFolioId) -> &HugetlbFolio {
        self.folios[id.index()]
            .as_ref()
            .expect("live hugetlb folio")
    }
    fn folio_mut(&mut self, id: HugetlbFolioId) -> &mut HugetlbFolio {
        self.folios[id.index()]
            .as_mut()
            .expect("live hugetlb folio")
    }
    fn new_folio(&mut self, f: HugetlbFolio) -> HugetlbFolioId {
        if let Some(i) = self.free_ids.pop() {
            self.folios[i] = Some(f);
            HugetlbFolioId::from_index(i)
        } else {
            self.folios.push(Some(f));
            HugetlbFolioId::from_index(self.folios.len() - 1)
        }
    }
    /// Live pool pages in use.
    pub(crate) fn live(&self) -> impl Iterator<Item = (HugetlbFolioId, &HugetlbFolio)> {
        self.folios
            .iter()
            .enumerate()
            .filter_map(|(i, f)| f.as_ref().map(|f| (HugetlbFolioId::from_index(i), f)))
    }
    /// `hstate_vma`: the page size of a hugetlb VMA (its file's).
    pub(crate) fn vma_size(&self, vma: &Vma) -> HugePageSize {
        let (inode, _, _) = hugetlb_of(vma).expect("hugetlb vma");
        self.inodes[inode.index()].hsize
    }
}

/// What `hugetlb_mfill` installs (`UFFDIO_COPY` or `UFFDIO_CONTINUE`, with `wp` for
/// `UFFDIO_COPY_MODE_WP` / `UFFDIO_CONTINUE_MODE_WP`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HugetlbMfill {
    Copy { wp: bool },
    Continue { wp: bool },
}

/// mmap(2) flags of a hugetlb mapping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HugetlbMapFlags {
    pub shared: bool,
    pub populate: bool,
    /// `MAP_NORESERVE` (`VM_NORESERVE`): no reservation at mmap time.
    pub noreserve: bool,
    /// `MAP_FIXED`: the range is unmapped first (`Kernel::mmap_fixed_unmap`), so the old
    /// VMAs' reservations are returned before `hugetlbfs_file_mmap` reserves (the old VMAs
    /// are closed by `vms_clean_up_area` before the file's mmap hook runs).
    pub fixed: bool,
    /// The page size of a `MAP_HUGETLB` mapping (`MAP_HUGE_2MB`/`MAP_HUGE_1GB`; a file's
    /// mapping takes the file's size).
    pub size: HugePageSize,
}

/// `vma_hugecache_offset`: the huge-page index of `haddr` in the VMA's file.
fn hindex(vma: &Vma, haddr: u64, shift: u32) -> u64 {
    ((haddr - vma.start) >> shift) + (vma.pgoff >> (shift - PAGE_SHIFT))
}

fn hugetlb_of(vma: &Vma) -> Option<(HugetlbInodeId, Option<ResvMapId>, bool)> {
    match vma.backing {
        VmaBacking::Hugetlb {
            inode,
            resv,
            unmapped,
        } => Some((inode, resv, unmapped)),
        _ => None,
    }
}

impl Kernel {
    // ---- the pool ---------------------------------------------------------------------------

    /// A new pool page: `alloc_buddy_hugetlb_folio` for 2 MiB, an order-9 block
    /// (`htlb_alloc_mask`: movable, `__GFP_RETRY_MAYFAIL` may compact), counted in
    /// `htlb_buddy_alloc_*`; `alloc_gigantic_folio` for 1 GiB, a free aligned range from
    /// `alloc_contig_pages` (not counted there, but in `compact_isolated`: measured, §34).
    fn alloc_pool_page(&mut self, size: HugePageSize) -> Option<Pfn> {
        if size.gigantic() {
            // alloc_contig_range takes the range's free pages with isolate_freepages_range,
            // which counts every one in compact_isolated (measured, §34).
            let pfn = self.buddy.alloc_contig_pages(size.order());
            if pfn.is_some() {
                self.vmstat.add(
                    VmItem::CompactIsolated,
                    crate::util::to_i64(size.nr_pages()),
                );
            }
            return pfn;
        }
        let pfn = self.alloc_pages(size.order(), Gfp::HIGHUSER_MOVABLE);
        self.vmstat.count(if pfn.is_some() {
            VmItem::HtlbBuddyAllocSuccess
        } else {
            VmItem::HtlbBuddyAllocFail
        });
        pfn
    }

    /// `update_and_free_hugetlb_folio`: a pool page goes back to the allocator
    /// (`free_contig_range` for a gigantic one).
    fn free_pool_pfn(&mut self, size: HugePageSize, pfn: Pfn) {
        if size.gigantic() {
            self.buddy.free_contig_range(pfn, size.order());
        } else {
            self.buddy.free(pfn, size.order());
        }
    }

    fn enqueue_hugetlb_folio(&mut self, size: HugePageSize, pfn: Pfn) {
        let h = self.hugetlb.hs(size);
        h.free_list.push(pfn);
        h.free_huge_pages += 1;
    }

    fn dequeue_free(&mut self, size: HugePageSize) -> Option<Pfn> {
        let h = self.hugetlb.hs(size);
        let pfn = h.free_list.pop()?;
        h.free_huge_pages -= 1;
        Some(pfn)
    }

    /// `remove_pool_hugetlb_folio` + `update_and_free_hugetlb_folio` of a free page.
    fn free_pool_page(&mut self, size: HugePageSize, surplus: bool) -> bool {
        let Some(pfn) = self.dequeue_free(size) else {
            return false;
        };
        let h = self.hugetlb.hs(size);
        h.nr_huge_pages -= 1;
        if surplus {
            h.surplus_huge_pages -= 1;
        }
        self.free_pool_pfn(size, pfn);
        true
    }

    /// `set_max_huge_pages`: a write of `nr_hugepages` of `size`. Surplus pages become
    /// persistent first, then pages are allocated until the count is reached or an
    /// allocation fails; shrinking frees free pages down to what is in use or reserved and
    /// turns the rest of the excess into surplus pages (freed when they are released; the
    /// gigantic size too: measured, §34).
    pub(crate) fn set_max_huge_pages(&mut self, size: HugePageSize, count: u64) {
        let h = self.hugetlb.hs(size);
        while h.surplus_huge_pages > 0 && count > h.persistent_huge_pages() {
            h.surplus_huge_pages -= 1;
        }
        while count > self.hugetlb.hstate(size).persistent_huge_pages() {
            let Some(pfn) = self.alloc_pool_page(size) else {
                break;
            };
            self.hugetlb.hs(size).nr_huge_pages += 1;
            self.enqueue_hugetlb_folio(size, pfn);
        }
        let h = self.hugetlb.hstate(size);
        let min_count = h
            .resv_huge_pages
            .wrapping_add(h.nr_huge_pages - h.free_huge_pages)
            .max(count);
        while min_count < self.hugetlb.hstate(size).persistent_huge_pages() {
            if !self.free_pool_page(size, false) {
                break;
            }
        }
        let h = self.hugetlb.hs(size);
        // adjust_pool_surplus(+1): only while some page is not surplus yet.
        while count < h.persistent_huge_pages() && h.surplus_huge_pages < h.nr_huge_pages {
            h.surplus_huge_pages += 1;
        }
    }

    /// A write of `nr_overcommit_hugepages` (of the 2 MiB size: the gigantic one refuses).
    pub(crate) fn set_overcommit_huge_pages(&mut self, size: HugePageSize, n: u64) {
        self.hugetlb.hs(size).nr_overcommit_huge_pages = n;
    }

    /// `alloc_surplus_hugetlb_folio`: a page beyond the persistent pool, within
    /// `nr_overcommit_hugepages`; never of the gigantic size.
    fn alloc_surplus_page(&mut self, size: HugePageSize) -> Option<Pfn> {
        let h = self.hugetlb.hstate(size);
        if size.gigantic() || h.surplus_huge_pages >= h.nr_overcommit_huge_pages {
            return None;
        }
        let pfn = self.alloc_pool_page(size)?;
        let h = self.hugetlb.hs(size);
        h.nr_huge_pages += 1;
        h.surplus_huge_pages += 1;
        Some(pfn)
    }

    /// `hugetlb_acct_memory`: takes (`delta` > 0, through `gather_surplus_pages`, ENOMEM when
    /// free and surplus pages cannot cover it) or gives back (`return_unused_surplus_pages`)
    /// reservations of `size`.
    fn hugetlb_acct_memory(&mut self, size: HugePageSize, delta: i64) -> Result<(), Errno> {
        if delta >= 0 {
            let delta = delta.unsigned_abs();
            let h = self.hugetlb.hstate(size);
            // `long needed`: the unsigned sum read as signed.
            let needed = h
                .resv_huge_pages
                .wrapping_add(delta)
                .wrapping_sub(h.free_huge_pages);
            let needed = crate::util::wrapping_to_i64(needed).max(0).unsigned_abs();
            let mut got = Vec::new();
            for _ in 0..needed {
                match self.alloc_surplus_page(size) {
                    Some(p) => got.push(p),
                    None => {
                        for p in got {
                            let h = self.hugetlb.hs(size);
                            h.nr_huge_pages -= 1;
                            h.surplus_huge_pages -= 1;
                            self.free_pool_pfn(size, p);
                        }
                        return Err(Errno::ENOMEM);
                    }
                }
            }
            for p in got {
                self.enqueue_hugetlb_folio(size, p);
            }
            let h = self.hugetlb.hs(size);
            h.resv_huge_pages = h.resv_huge_pages.wrapping_add(delta);
            return Ok(());
        }
        let unused = delta.unsigned_abs();
        let h = self.hugetlb.hs(size);
        h.resv_huge_pages = h.resv_huge_pages.wrapping_sub(unused);
        let n = unused.min(h.surplus_huge_pages);
        for _ in 0..n {
            if !self.free_pool_page(size, true) {
                break;
            }
        }
        Ok(())
    }

    /// `free_huge_folio`: the last reference to a pool page is gone.
    fn free_huge_folio(&mut self, id: HugetlbFolioId) {
        let f = self.hugetlb.folios[id.index()].take().expect("live");
        self.hugetlb.free_ids.push(id.index());
        let h = self.hugetlb.hs(f.size);
        if f.restore_reserve {
            h.resv_huge_pages = h.resv_huge_pages.wrapping_add(1);
        }
        if h.surplus_huge_pages > 0 {
            h.nr_huge_pages -= 1;
            h.surplus_huge_pages -= 1;
            self.free_pool_pfn(f.size, f.pfn);
        } else {
            self.enqueue_hugetlb_folio(f.size, f.pfn);
        }
    }

    fn hugetlb_folio_put_if_unused(&mut self, id: HugetlbFolioId) {
        let f = self.hugetlb.folio(id);
        if f.mapcount == 0 && f.cache.is_none() {
            self.free_huge_folio(id);
        }
    }

    /// Does `vma` still have a reservation for index `idx` (`vma_needs_reservation` == 0)?
    fn vma_has_reservation(&self, vma: &Vma, idx: u64) -> bool {
        let Some((inode, resv, _)) = hugetlb_of(vma) else {
            return false;
        };
        if vma.has(vmf::SHARED) {
            return self.hugetlb.inodes[inode.index()].resv.contains(&idx);
        }
        resv.is_some_and(|m| !self.hugetlb.resv_maps[m.index()].contains(&idx))
    }

    /// `alloc_hugetlb_folio` for a fault (or fallocate's pseudo VMA) at index `idx`:
    /// consumes the VMA's reservation if it has one (`cow_from_owner` never does), else
    /// needs a free unreserved page or a surplus one (ENOSPC when there is none).
    fn alloc_hugetlb_folio(
        &mut self,
        vma: &Vma,
        idx: u64,
        cow_from_owner: bool,
    ) -> Result<HugetlbFolioId, Errno> {
        let size = self.hugetlb.vma_size(vma);
        let reserved = !cow_from_owner && self.vma_has_reservation(vma, idx);
        let h = self.hugetlb.hstate(size);
        // dequeue_hugetlb_folio_vma: without a reservation, refused when every free page is
        // reserved (`free - resv == 0`, unsigned).
        let pfn = if reserved || h.free_huge_pages.wrapping_sub(h.resv_huge_pages) != 0 {
            self.dequeue_free(size)
        } else {
            None
        };
        let pfn = match pfn {
            Some(p) => p,
            None => self.alloc_surplus_page(size).ok_or(Errno::ENOSPC)?,
        };
        if reserved {
            let h = self.hugetlb.hs(size);
            h.resv_huge_pages = h.resv_huge_pages.wrapping_sub(1);
        }
        // vma_commit_reservation (not for MAP_CHG_ENFORCED).
        if !cow_from_owner {
            if let Some((inode, resv, _)) = hugetlb_of(vma) {
                if vma.has(vmf::SHARED) {
                    self.hugetlb.inodes[inode.index()].resv.insert(idx);
                } else if let Some(m) = resv {
                    self.hugetlb.resv_maps[m.index()].insert(idx);
                }
            }
        }
        // folio_zero_user() at fault time (pool pages are not kept zeroed).
        self.vmstat
            .add(VmItem::SimZeroedPages, crate::util::to_i64(size.nr_pages()));
        Ok(self.hugetlb.new_folio(HugetlbFolio {
            pfn,
            size,
            mapcount: 0,
            cache: None,
            anon: false,
            restore_reserve: false,
        }))
    }

    // ---- files ------------------------------------------------------------------------------

    /// `memfd_create(MFD_HUGETLB | MFD_HUGE_2MB or MFD_HUGE_1GB)` then `ftruncate(size)`:
    /// EINVAL unless `size` is a multiple of the huge page size (`hugetlbfs_setattr`).
    pub fn hugetlb_new_inode(
        &mut self,
        size: u64,
        hsize: HugePageSize,
    ) -> Result<HugetlbInodeId, Errno> {
        if size % hsize.size() != 0 {
            return Err(Errno::EINVAL);
        }
        Ok(self.new_hugetlb_inode(size, hsize, false))
    }

    fn new_hugetlb_inode(&mut self, size: u64, hsize: HugePageSize, anon: bool) -> HugetlbInodeId {
        self.hugetlb.inodes.push(HugetlbInode {
            hsize,
            size,
            anon,
            ..HugetlbInode::default()
        });
        HugetlbInodeId::from_index(self.hugetlb.inodes.len() - 1)
    }

    /// Every VMA mapping `ino` (the file's `i_mmap`).
    fn hugetlb_mappings(&self, ino: HugetlbInodeId) -> Vec<(MmId, Vma)> {
        let mut v = Vec::new();
        for (mmi, mm) in self.mms.iter() {
            for vma in mm.vmas.values() {
                if hugetlb_of(vma).is_some_and(|(i, _, _)| i == ino) {
                    v.push((mmi, *vma));
                }
            }
        }
        v
    }

    /// `hugetlb_vmdelete_list`: zaps indices `[first, last)` of `ino` in every VMA mapping
    /// it, private ones (and their COW copies) too. Truncation passes `ZAP_FLAG_DROP_MARKER`
    /// (`drop_markers`); a punch does not, so uffd-wp markers survive it (measured, §25).
    fn hugetlb_vmdelete_list(
        &mut self,
        ino: HugetlbInodeId,
        first: u64,
        last: u64,
        drop_markers: bool,
    ) {
        let shift = self.hugetlb.inodes[ino.index()].hsize.shift();
        for (mmi, vma) in self.hugetlb_mappings(ino) {
            let vfirst = hindex(&vma, vma.start, shift);
            let vlast = vfirst + (vma.len() >> shift);
            let (a, b) = (first.max(vfirst), last.min(vlast));
            if a < b {
                let s = vma.start + ((a - vfirst) << shift);
                let e = vma.start + ((b - vfirst) << shift);
                self.unmap_hugepage_range(mmi, &vma, s, e, drop_markers);
            }
        }
    }

    /// `remove_inode_hugepages` over indices `[first, last)`: drops the cache pages. A
    /// truncation (`truncate`) then gives back the reservations of the range that no page
    /// used (`hugetlb_unreserve_pages` over the range); a punch only releases, page by page,
    /// the reserve-map entries of the pages it frees (`remove_inode_single_folio`), so a
    /// reserved index that had no page keeps its reservation (measured, §25).
    fn remove_inode_hugepages(
        &mut self,
        ino: HugetlbInodeId,
        first: u64,
        last: u64,
        truncate: bool,
    ) {
        let inode = &mut self.hugetlb.inodes[ino.index()];
        let pages: Vec<(u64, HugetlbFolioId)> = inode
            .cache
            .range(first..last)
            .map(|(i, f)| (*i, *f))
            .collect();
        let chg: Vec<u64> = if truncate {
            inode.resv.range(first..last).copied().collect()
        } else {
            pages
                .iter()
                .map(|(i, _)| *i)
                .filter(|i| inode.resv.contains(i))
                .collect()
        };
        for i in &chg {
            inode.resv.remove(i);
        }
        let freed = pages.len() as u64;
        for (i, f) in pages {
            self.hugetlb.inodes[ino.index()].cache.remove(&i);
            self.hugetlb.folio_mut(f).cache = None;
            self.hugetlb_folio_put_if_unused(f);
        }
        let unreserve = (chg.len() as u64).saturating_sub(freed);
        let hsize = self.hugetlb.inodes[ino.index()].hsize;
        self.hugetlb_acct_memory(hsize, -crate::util::to_i64(unreserve))
            .expect("giving back cannot fail");
    }

    /// ftruncate(2) of a hugetlbfs file (`hugetlbfs_setattr` → `hugetlb_vmtruncate`): EINVAL
    /// unless huge-page aligned; shrinking unmaps and frees the pages beyond the end.
    /// `fstat` of a hugetlbfs file: (`st_blocks`, `st_size`); each page in the cache charges
    /// `blocks_per_huge_page` (huge page size / 512) to `i_blocks`
    /// (`hugetlb_add_to_page_cache`, given back by `hugetlb_unreserve_pages`).
    pub fn hugetlb_object_stat(&self, ino: HugetlbInodeId) -> (Option<u64>, u64) {
        let inode = &self.hugetlb.inodes[ino.index()];
        (
            Some(inode.cache.len() as u64 * (inode.hsize.size() / 512)),
            inode.size,
        )
    }

    pub fn hugetlb_truncate(&mut self, ino: HugetlbInodeId, size: u64) -> Result<(), Errno> {
        let hsize = self.hugetlb.inodes[ino.index()].hsize;
        if size % hsize.size() != 0 {
            return Err(Errno::EINVAL);
        }
        let old = self.hugetlb.inodes[ino.index()].size;
        self.hugetlb.inodes[ino.index()].size = size;
        if size < old {
            let first = size >> hsize.shift();
            self.hugetlb_vmdelete_list(ino, first, u64::MAX, true);
            self.remove_inode_hugepages(ino, first, u64::MAX, true);
        }
        Ok(())
    }

    /// fallocate(2) of a hugetlbfs file (`hugetlbfs_fallocate`). Allocation instantiates
    /// every huge page the byte range touches (ENOSPC when the pool has none left; pages
    /// allocated before that stay); `punch_hole` needs `keep_size` (EOPNOTSUPP) and unmaps
    /// and frees the whole huge pages inside the range, only zeroing partial ones
    /// (`hugetlbfs_punch_hole`, `hugetlbfs_zero_partial_page`).
    pub fn hugetlb_fallocate(
        &mut self,
        ino: HugetlbInodeId,
        mode: crate::shmem::FallocMode,
        offset: u64,
        len: u64,
    ) -> Result<(), Errno> {
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let end = offset.checked_add(len).ok_or(Errno::EFBIG)?;
        let hsize = self.hugetlb.inodes[ino.index()].hsize;
        if mode.punch_hole {
            if !mode.keep_size {
                return Err(Errno::EOPNOTSUPP);
            }
            let first = offset.div_ceil(hsize.size());
            let last = end >> hsize.shift();
            if first < last {
                self.hugetlb_vmdelete_list(ino, first, last, false);
                self.remove_inode_hugepages(ino, first, last, false);
            }
            return Ok(());
        }
        // The pseudo VMA: shared, so reservations are the inode's.
        let pseudo = Vma {
            start: 0,
            end: !(hsize.size() - 1),
            flags: vmf::SHARED | vmf::READ | vmf::WRITE,
            anon_vma: None,
            pgoff: 0,
            backing: VmaBacking::Hugetlb {
                inode: ino,
                resv: None,
                unmapped: false,
            },
            swap_readahead_info: 0,
        };
        for idx in (offset >> hsize.shift())..end.div_ceil(hsize.size()) {
            if self.hugetlb.inodes[ino.index()].cache.contains_key(&idx) {
                continue;
            }
            let f = self.alloc_hugetlb_folio(&pseudo, idx, false)?;
            self.hugetlb_add_to_page_cache(f, ino, idx);
        }
        let inode = &mut self.hugetlb.inodes[ino.index()];
        if !mode.keep_size && end > inode.size {
            inode.size = end;
        }
        Ok(())
    }

    /// A new page for index `idx`: in a shared VMA it joins the file's cache, in a private
    /// one it is anonymous (`hugetlb_add_new_anon_rmap`).
    fn hugetlb_instantiate(
        &mut self,
        f: HugetlbFolioId,
        inode: HugetlbInodeId,
        idx: u64,
        shared: bool,
    ) -> HugetlbFolioId {
        if shared {
            self.hugetlb_add_to_page_cache(f, inode, idx);
        } else {
            let folio = self.hugetlb.folio_mut(f);
            folio.anon = true;
            folio.restore_reserve = false;
        }
        f
    }

    fn hugetlb_add_to_page_cache(&mut self, f: HugetlbFolioId, ino: HugetlbInodeId, idx: u64) {
        self.hugetlb.inodes[ino.index()].cache.insert(idx, f);
        let folio = self.hugetlb.folio_mut(f);
        folio.cache = Some((ino, idx));
        folio.restore_reserve = false;
    }

    /// Evicts the unlinked files of `MAP_HUGETLB` mappings that nothing maps any more
    /// (`hugetlbfs_evict_inode`: pages freed, leftover reservations given back).
    pub(crate) fn hugetlb_release_unmapped(&mut self) {
        for i in 0..self.hugetlb.inodes.len() {
            let ino = HugetlbInodeId::from_index(i);
            let inode = &self.hugetlb.inodes[i];
            if !inode.anon || inode.dead {
                continue;
            }
            if self.hugetlb_mappings(ino).is_empty() {
                self.remove_inode_hugepages(ino, 0, u64::MAX, true);
                self.hugetlb.inodes[i].dead = true;
            }
        }
    }

    // ---- mmap, munmap, mprotect -------------------------------------------------------------

    /// mmap(2) with `MAP_HUGETLB` (`file` None: `hugetlb_file_setup` makes an unlinked file of
    /// `flags.size` pages, the length rounded up to it) or of a hugetlbfs file at byte offset
    /// `foff` (`hugetlbfs_file_mmap`, the file's page size; the length is rounded up the
    /// same way). EINVAL for an address or offset that is not huge-page aligned,
    /// ENOMEM when the reservation cannot be made (`hugetlb_reserve_pages`, skipped with
    /// MAP_NORESERVE). A writable mapping past the end of the file extends it.
    pub fn mmap_hugetlb(
        &mut self,
        pid: Pid,
        addr: u64,
        len: u64,
        prot: crate::types::Prot,
        flags: HugetlbMapFlags,
        file: Option<(HugetlbInodeId, u64)>,
    ) -> Result<u64, Errno> {
        let hsize = match file {
            Some((ino, _)) => self.hugetlb.inodes[ino.index()].hsize,
            None => flags.size,
        };
        let hps = hsize.size();
        if len == 0 || addr % hps != 0 {
            return Err(Errno::EINVAL);
        }
        let len = len.div_ceil(hps) * hps;
        let end = addr
            .checked_add(len)
            .filter(|e| *e <= crate::types::TASK_SIZE)
            .ok_or(Errno::ENOMEM)?;
        let (foff, existing) = match file {
            Some((ino, off)) => (off, Some(ino)),
            None => (0, None),
        };
        if foff % hps != 0 {
            return Err(Errno::EINVAL);
        }
        let fixed = crate::mmap::MapFlags {
            fixed: flags.fixed,
            ..Default::default()
        };
        self.mmap_fixed_unmap(pid, addr, len, fixed)?;
        let mmi = self.mm_of(pid);
        if !self.mms[mmi].vma_starts_in(addr, end).is_empty() {
            return Err(Errno::EEXIST);
        }
        let ino = existing.unwrap_or_else(|| self.new_hugetlb_inode(len, hsize, true));
        let (from, to) = (foff >> hsize.shift(), (foff + len) >> hsize.shift());
        let mut resv = None;
        if !flags.noreserve {
            let r = if flags.shared {
                let inode = &self.hugetlb.inodes[ino.index()];
                let chg = (from..to).filter(|i| !inode.resv.contains(i)).count() as u64;
                self.hugetlb_acct_memory(hsize, crate::util::to_i64(chg))
                    .map(|()| self.hugetlb.inodes[ino.index()].resv.extend(from..to))
            } else {
                self.hugetlb_acct_memory(hsize, crate::util::to_i64(to - from))
                    .map(|()| {
                        self.hugetlb.resv_maps.push(BTreeSet::new());
                        resv = Some(ResvMapId::from_index(self.hugetlb.resv_maps.len() - 1));
                    })
            };
            if let Err(e) = r {
                if existing.is_none() {
                    self.hugetlb.inodes[ino.index()].dead = true;
                }
                return Err(e);
            }
        }
        if prot.write && self.hugetlb.inodes[ino.index()].size < foff + len {
            self.hugetlb.inodes[ino.index()].size = foff + len;
        }
        let shared = if flags.shared { vmf::SHARED } else { 0 };
        let vma = Vma {
            start: addr,
            end,
            flags: crate::mm::prot_to_vmflags(prot) | shared,
            anon_vma: None,
            pgoff: foff >> PAGE_SHIFT,
            backing: VmaBacking::Hugetlb {
                inode: ino,
                resv,
                unmapped: false,
            },
            swap_readahead_info: 0,
        };
        self.mms[mmi].vmas.insert(addr, vma);
        self.mms[mmi].invalidate_vma_cache();
        if flags.populate {
            let _ = self.mm_populate(pid, addr, end);
        }
        Ok(addr)
    }

    /// Whether a VMA split at `addr` is allowed: `hugetlb_vm_op_split` refuses (EINVAL) a
    /// split of a hugetlb VMA that is not huge-page aligned.
    pub(crate) fn hugetlb_split_ok(&self, mmi: MmId, addr: u64) -> bool {
        match self.mms[mmi].vma_at(addr) {
            Some(v) if v.backing.is_hugetlb() && v.start != addr => {
                addr % self.hugetlb.vma_size(v).size() == 0
            }
            _ => true,
        }
    }

    /// `__split_vma` at both ends of `[start, end)`, in the kernel's order: the start first,
    /// then the end (`vms_gather_munmap_vmas`, `vma_modify`). A hugetlb VMA refuses a split
    /// inside a huge page (`hugetlb_vm_op_split`: EINVAL), and a start split already made
    /// stays when the end one fails: nothing undoes it (measured: a MAP_FIXED mmap from inside
    /// one mapping to the middle of a hugetlb one fails with EINVAL and leaves the first
    /// mapping in two VMAs, FINDINGS §40).
    pub(crate) fn split_vma_range(
        &mut self,
        mmi: MmId,
        start: u64,
        end: u64,
    ) -> Result<(), crate::errno::Errno> {
        if !self.hugetlb_split_ok(mmi, start) {
            return Err(crate::errno::Errno::EINVAL);
        }
        self.split_vma_at(mmi, start);
        if !self.hugetlb_split_ok(mmi, end) {
            return Err(crate::errno::Errno::EINVAL);
        }
        self.split_vma_at(mmi, end);
        Ok(())
    }

    /// The page size of a VMA: its huge page size if it is a hugetlb one (`vma_kernel_pagesize`).
    pub(crate) fn hugetlb_page_size(&self, vma: &Vma) -> u64 {
        if vma.backing.is_hugetlb() {
            self.hugetlb.vma_size(vma).size()
        } else {
            PAGE_SIZE
        }
    }

    /// `__unmap_hugepage_range` of `[start, end)` (huge-page aligned) of one VMA. A private
    /// page of the reservation's owner gets its reservation back when no surplus pages exist
    /// (`HPG_restore_reserve`, `vma_add_reservation`). Without `ZAP_FLAG_DROP_MARKER`
    /// (`drop_markers` false: MADV_DONTNEED) a uffd-wp protected entry leaves a marker and
    /// markers stay; munmap, exit and the file's punch and truncation drop them.
    pub(crate) fn unmap_hugepage_range(
        &mut self,
        mmi: MmId,
        vma: &Vma,
        start: u64,
        end: u64,
        drop_markers: bool,
    ) {
        if drop_markers {
            let gone: Vec<(MmId, u64)> = self
                .hugetlb
                .markers
                .range((mmi, start)..(mmi, end))
                .copied()
                .collect();
            for k in gone {
                self.hugetlb.markers.remove(&k);
            }
        }
        let keys: Vec<u64> = self
            .hugetlb
            .ptes
            .range((mmi, start)..(mmi, end))
            .map(|((_, a), _)| *a)
            .collect();
        let (_, resv, _) = hugetlb_of(vma).expect("hugetlb vma");
        let hsize = self.hugetlb.vma_size(vma);
        for a in keys {
            let pte = self.hugetlb.ptes.remove(&(mmi, a)).expect("pte");
            if pte.uffd_wp && !drop_markers {
                self.hugetlb.markers.insert((mmi, a));
            }
            let restore = !vma.has(vmf::SHARED)
                && resv.is_some()
                && self.hugetlb.folio(pte.folio).anon
                && self.hugetlb.hstate(hsize).surplus_huge_pages == 0;
            let f = self.hugetlb.folio_mut(pte.folio);
            f.mapcount -= 1;
            if restore {
                f.restore_reserve = true;
                let idx = hindex(vma, a, hsize.shift());
                self.hugetlb.resv_maps[resv.expect("owner").index()].remove(&idx);
            }
            self.hugetlb_folio_put_if_unused(pte.folio);
        }
    }

    /// `move_hugetlb_page_tables`: the huge PTEs (and uffd-wp markers) of `[old, old+len)`
    /// move to `new`; `clear_uffd` (a uffd-armed VMA, no `UFFD_FEATURE_EVENT_REMAP`) drops the
    /// markers and uffd-wp bits. Mapcounts and reservations are unchanged.
    pub(crate) fn move_hugetlb_page_tables(
        &mut self,
        mmi: MmId,
        old: u64,
        new: u64,
        len: u64,
        clear_uffd: bool,
    ) {
        let end = old + len;
        let ptes: Vec<(u64, HugePte)> = self
            .hugetlb
            .ptes
            .range((mmi, old)..(mmi, end))
            .map(|((_, a), p)| (*a, *p))
            .collect();
        let markers: Vec<u64> = self
            .hugetlb
            .markers
            .range((mmi, old)..(mmi, end))
            .map(|(_, a)| *a)
            .collect();
        for (a, _) in &ptes {
            self.hugetlb.ptes.remove(&(mmi, *a));
        }
        for a in &markers {
            self.hugetlb.markers.remove(&(mmi, *a));
        }
        for (a, mut p) in ptes {
            if clear_uffd {
                p.uffd_wp = false;
            }
            self.hugetlb.ptes.insert((mmi, a - old + new), p);
        }
        if !clear_uffd {
            for a in markers {
                self.hugetlb.markers.insert((mmi, a - old + new));
            }
        }
    }

    /// `hugetlb_vm_op_close` for the part `[start, end)` of a VMA going away: the owner of a
    /// private reserve map gives back the reservations no fault consumed.
    fn hugetlb_vm_op_close(&mut self, vma: &Vma, start: u64, end: u64) {
        let Some((_, Some(m), _)) = hugetlb_of(vma) else {
            return;
        };
        if vma.has(vmf::SHARED) {
            return;
        }
        let hsize = self.hugetlb.vma_size(vma);
        let (a, b) = (
            hindex(vma, start, hsize.shift()),
            hindex(vma, end, hsize.shift()),
        );
        let consumed = self.hugetlb.resv_maps[m.index()].range(a..b).count() as u64;
        let reserve = (b - a) - consumed;
        if reserve > 0 {
            self.hugetlb_acct_memory(hsize, -crate::util::to_i64(reserve))
                .expect("giving back cannot fail");
        }
    }

    /// Unmaps the hugetlb VMAs of `[start, end)` (already split at both ends): zap, then close.
    pub(crate) fn hugetlb_unmap_vmas(&mut self, mmi: MmId, start: u64, end: u64) {
        for s in self.mms[mmi].vma_starts_in(start, end) {
            let vma = self.mms[mmi].vmas[&s];
            if vma.backing.is_hugetlb() {
                self.unmap_hugepage_range(mmi, &vma, vma.start, vma.end, true);
                self.hugetlb_vm_op_close(&vma, vma.start, vma.end);
            }
        }
    }

    /// `hugetlb_change_protection` after mprotect set `flags` on `[start, end)`: every huge PTE
    /// takes its permission from the new `vm_page_prot` (`huge_pte_modify`; hugetlb has no
    /// `can_change_pte_writable` upgrade). That is writable only for a shared writable VMA not
    /// registered for uffd-wp; a private VMA's pages become read-only even when it stays
    /// writable (PAGE_COPY), so the next write faults and reuses the exclusive page (measured:
    /// a locked private hugetlb page after mprotect(PROT_WRITE|PROT_EXEC), FINDINGS §40).
    pub(crate) fn hugetlb_change_protection(
        &mut self,
        mmi: MmId,
        start: u64,
        end: u64,
        flags: u32,
    ) {
        let writable =
            flags & vmf::WRITE != 0 && flags & vmf::SHARED != 0 && flags & vmf::UFFD_WP == 0;
        for (_, pte) in self.hugetlb.ptes.range_mut((mmi, start)..(mmi, end)) {
            pte.write = writable && !pte.uffd_wp;
        }
    }

    /// `copy_hugetlb_page_range` for every hugetlb VMA the child `cmi` got that
    /// `vma_needs_copy` copies: only those with an anon_vma (private ones that faulted an
    /// anonymous page), whose pages are shared write-protected in both; a shared VMA is not
    /// copied (the child faults its pages in from the file). The child's private VMA has no
    /// reservation of its own (`reset_vma_resv_huge_pages`).
    pub(crate) fn hugetlb_fork(&mut self, pmi: MmId, cmi: MmId) {
        let starts: Vec<u64> = self.mms[cmi].vmas.keys().copied().collect();
        for s in starts {
            let v = self.mms[cmi].vmas[&s];
            let Some((inode, _, _)) = hugetlb_of(&v) else {
                continue;
            };
            let shared = v.has(vmf::SHARED);
            if !shared {
                self.mms[cmi].vmas.get_mut(&s).expect("vma").backing = VmaBacking::Hugetlb {
                    inode,
                    resv: None,
                    unmapped: false,
                };
            }
            if v.anon_vma.is_none() {
                continue;
            }
            let entries: Vec<(u64, HugePte)> = self
                .hugetlb
                .ptes
                .range((pmi, v.start)..(pmi, v.end))
                .map(|((_, a), p)| (*a, *p))
                .collect();
            for (a, mut pte) in entries {
                // The child's VMA is not registered (no UFFD_FEATURE_EVENT_FORK): its
                // entries lose the uffd-wp bit, and markers are not copied.
                pte.uffd_wp = false;
                if !shared {
                    self.hugetlb.ptes.get_mut(&(pmi, a)).expect("pte").write = false;
                    pte.write = false;
                }
                self.hugetlb.folio_mut(pte.folio).mapcount += 1;
                self.hugetlb.ptes.insert((cmi, a), pte);
            }
        }
        self.mms[cmi].invalidate_vma_cache();
    }

    // ---- faults -----------------------------------------------------------------------------

    /// A user access to a hugetlb VMA (the hardware check, then `hugetlb_fault` as often as
    /// needed). A fault that fails (SIGBUS) is not accounted to the task. A userfault is
    /// resolved by the modelled monitor and retried in the kernel without a new hardware
    /// check (the blocked attempt is not counted, its retry is), as `access_slow` does.
    pub(crate) fn hugetlb_user_access(
        &mut self,
        pid: Pid,
        mmi: MmId,
        addr: u64,
        write: bool,
    ) -> Result<(), Signal> {
        let mut in_kernel_retry = false;
        for _ in 0..8 {
            let Some(vma) = self.mms[mmi].vma_lookup(addr) else {
                return Err(Signal::Sigsegv);
            };
            if (write && !vma.has(vmf::WRITE)) || !vma.accessible() {
                return Err(Signal::Sigsegv);
            }
            let haddr = addr & !(self.hugetlb.vma_size(&vma).size() - 1);
            if !in_kernel_retry && self.hugetlb_hit(mmi, haddr, write) {
                return Ok(());
            }
            in_kernel_retry = false;
            self.vmstat.count(VmItem::Pgfault);
            match self.hugetlb_fault(mmi, &vma, haddr, write) {
                VmFault::Sigbus => return Err(Signal::Sigbus),
                VmFault::Oom => return Err(Signal::Sigkill),
                VmFault::Userfault(flags) => {
                    self.deliver_userfault(mmi, addr, flags).for_access()?;
                    in_kernel_retry = true;
                }
                _ => self.mm_account_fault(pid, crate::fault::FaultFlags::for_access(write)),
            }
        }
        panic!("model bug: hugetlb access at {addr:#x} still faults");
    }

    /// Does the huge PTE at `haddr` allow the access?
    fn hugetlb_hit(&self, mmi: MmId, haddr: u64, write: bool) -> bool {
        self.hugetlb
            .ptes
            .get(&(mmi, haddr))
            .is_some_and(|p| !write || p.write)
    }

    /// GUP over the part `[addr, end)` of one hugetlb VMA (`follow_hugetlb_page` + faults):
    /// EFAULT where a fault fails. After a userfault the page is looked up again and, if
    /// still not there with the needed access, faulted with `FAULT_FLAG_TRIED` (a major
    /// fault when it completes), as `populate_range` does for other memory.
    pub(crate) fn hugetlb_gup(
        &mut self,
        pid: Pid,
        mmi: MmId,
        vma: &Vma,
        (start, end): (u64, u64),
        write: bool,
    ) -> Result<(), Errno> {
        let hps = self.hugetlb.vma_size(vma).size();
        let mut haddr = start & !(hps - 1);
        while haddr < end {
            let mut flags = crate::fault::FaultFlags::for_access(write);
            let mut tries = 0;
            while !self.hugetlb_hit(mmi, haddr, write) {
                tries += 1;
                assert!(
                    tries <= 8,
                    "model bug: hugetlb populate at {haddr:#x} keeps faulting"
                );
                self.vmstat.count(VmItem::Pgfault);
                match self.hugetlb_fault(mmi, vma, haddr, write) {
                    VmFault::Sigbus => return Err(Errno::EFAULT),
                    VmFault::Oom => return Err(Errno::ENOMEM),
                    VmFault::Userfault(uflags) => {
                        self.deliver_userfault(mmi, haddr, uflags).for_gup()?;
                        flags = flags.with(crate::fault::FaultFlags::TRIED);
                    }
                    _ => self.mm_account_fault(pid, flags),
                }
            }
            haddr += hps;
        }
        Ok(())
    }

    /// `hugetlb_fault`: a missing entry (none or a uffd-wp marker) goes to
    /// `hugetlb_no_page`, a write to a read-only one to `hugetlb_wp`, after the uffd-wp
    /// check: a write to an entry write-protected by userfaultfd in a VMA registered for WP
    /// is a WP userfault (with `UFFD_FEATURE_WP_ASYNC` the bit is cleared and the fault goes
    /// on to `hugetlb_wp`).
    fn hugetlb_fault(&mut self, mmi: MmId, vma: &Vma, haddr: u64, write: bool) -> VmFault {
        match self.hugetlb.ptes.get(&(mmi, haddr)).copied() {
            None => self.hugetlb_no_page(mmi, vma, haddr, write),
            Some(p) if write && !p.write => {
                if p.uffd_wp {
                    let wp_async = self.mms[mmi]
                        .uffd
                        .as_deref()
                        .is_some_and(|u| u.features.wp_async);
                    if vma.has(vmf::UFFD_WP) && !wp_async {
                        return VmFault::Userfault(FLAG_WP | FLAG_WRITE);
                    }
                    // Deviation: a bit left behind when a re-registration dropped WP mode
                    // is cleared here; the kernel's hugetlb_wp would decline the fault
                    // forever (it never COWs a uffd-wp entry).
                    self.hugetlb
                        .ptes
                        .get_mut(&(mmi, haddr))
                        .expect("pte")
                        .uffd_wp = false;
                }
                self.hugetlb_wp(mmi, vma, haddr)
            }
            Some(_) => VmFault::Done,
        }
    }

    /// `hugetlb_no_page`: SIGBUS past the end of the file or in a VMA the reservation's owner
    /// took a page back from (`HPAGE_RESV_UNMAPPED`); a userfault where the cache has no page
    /// and the VMA is registered MISSING, or has one and it is registered MINOR; a shared VMA
    /// maps the cache page (or a new one it adds), a private one a cache page read-only or a
    /// new anonymous page; a private write goes on to `hugetlb_wp`. Only shared writable
    /// entries are made writable here (`make_huge_pte`). An entry made over a uffd-wp marker
    /// keeps the protection (read-only, `huge_pte_mkuffd_wp`).
    fn hugetlb_no_page(&mut self, mmi: MmId, vma: &Vma, haddr: u64, write: bool) -> VmFault {
        let (inode, _, unmapped) = hugetlb_of(vma).expect("hugetlb vma");
        if unmapped {
            return VmFault::Sigbus;
        }
        let shift = self.hugetlb.inodes[inode.index()].hsize.shift();
        let idx = hindex(vma, haddr, shift);
        if idx >= self.hugetlb.inodes[inode.index()].size >> shift {
            return VmFault::Sigbus;
        }
        let shared = vma.has(vmf::SHARED);
        let wflag = if write { FLAG_WRITE } else { 0 };
        let folio = match self.hugetlb.inodes[inode.index()].cache.get(&idx) {
            Some(_) if vma.has(vmf::UFFD_MINOR) => return VmFault::Userfault(FLAG_MINOR | wflag),
            Some(f) => *f,
            None if vma.has(vmf::UFFD_MISSING) => return VmFault::Userfault(wflag),
            None => {
                if !shared {
                    // vmf_anon_prepare: the private page will be anonymous.
                    self.anon_vma_prepare(mmi, vma);
                }
                match self.alloc_hugetlb_folio(vma, idx, false) {
                    Ok(f) => self.hugetlb_instantiate(f, inode, idx, shared),
                    Err(Errno::ENOMEM) => return VmFault::Oom,
                    Err(_) => return VmFault::Sigbus,
                }
            }
        };
        // (A marker left in a VMA no longer registered for WP protects nothing.)
        let uffd_wp = self.hugetlb.markers.remove(&(mmi, haddr)) && vma.has(vmf::UFFD_WP);
        self.hugetlb.folio_mut(folio).mapcount += 1;
        self.hugetlb.ptes.insert(
            (mmi, haddr),
            HugePte {
                folio,
                write: shared && vma.has(vmf::WRITE) && !uffd_wp,
                uffd_wp,
            },
        );
        if write && !shared {
            return self.hugetlb_wp(mmi, vma, haddr);
        }
        VmFault::Done
    }

    /// `hugetlb_wp`: a shared entry is made writable; an anonymous page mapped once is
    /// reused; anything else is copied. When the copy finds no page and this VMA owns the
    /// reservation, the page is taken back from every other process mapping it
    /// (`unmap_ref_private`: their VMAs get `HPAGE_RESV_UNMAPPED` and SIGBUS on their next
    /// fault there) and the fault retries, reusing it; without a reservation the faulting
    /// task gets SIGBUS.
    fn hugetlb_wp(&mut self, mmi: MmId, vma: &Vma, haddr: u64) -> VmFault {
        let (inode, resv, _) = hugetlb_of(vma).expect("hugetlb vma");
        let pte = self.hugetlb.ptes[&(mmi, haddr)];
        // No COW of a uffd-wp protected page: only reached from hugetlb_no_page's private
        // write over a marker; the retried fault raises the WP userfault.
        if pte.uffd_wp {
            return VmFault::Done;
        }
        if vma.has(vmf::SHARED) {
            self.hugetlb.ptes.get_mut(&(mmi, haddr)).expect("pte").write = true;
            return VmFault::Done;
        }
        let mut retried = false;
        loop {
            let old = *self.hugetlb.folio(pte.folio);
            if old.mapcount == 1 && old.anon {
                self.hugetlb.ptes.get_mut(&(mmi, haddr)).expect("pte").write = true;
                return VmFault::Done;
            }
            let cow_from_owner = resv.is_some() && old.cache.is_none();
            self.anon_vma_prepare(mmi, vma);
            let hsize = self.hugetlb.vma_size(vma);
            let idx = hindex(vma, haddr, hsize.shift());
            match self.alloc_hugetlb_folio(vma, idx, cow_from_owner) {
                Ok(new) => {
                    let f = self.hugetlb.folio_mut(new);
                    f.anon = true;
                    f.restore_reserve = false;
                    f.mapcount = 1;
                    self.hugetlb.ptes.insert(
                        (mmi, haddr),
                        HugePte {
                            folio: new,
                            write: true,
                            uffd_wp: false,
                        },
                    );
                    self.vmstat.add(
                        VmItem::SimCowCopiedPages,
                        crate::util::to_i64(hsize.nr_pages()),
                    );
                    self.hugetlb.folio_mut(pte.folio).mapcount -= 1;
                    self.hugetlb_folio_put_if_unused(pte.folio);
                    return VmFault::Done;
                }
                Err(Errno::ENOMEM) => return VmFault::Oom,
                Err(_) if cow_from_owner && !retried => {
                    self.unmap_ref_private(mmi, inode, idx, pte.folio);
                    retried = true;
                }
                Err(_) => return VmFault::Sigbus,
            }
        }
    }

    /// `unmap_ref_private`: unmaps the page at index `idx` of `inode` from every private VMA
    /// (other than the owner's) that maps it, marking them `HPAGE_RESV_UNMAPPED`.
    fn unmap_ref_private(
        &mut self,
        owner: MmId,
        inode: HugetlbInodeId,
        idx: u64,
        folio: HugetlbFolioId,
    ) {
        for (mmi, vma) in self.hugetlb_mappings(inode) {
            if mmi == owner || vma.has(vmf::SHARED) {
                continue;
            }
            let Some((_, resv, _)) = hugetlb_of(&vma) else {
                continue;
            };
            if resv.is_some() {
                continue;
            }
            let shift = self.hugetlb.inodes[inode.index()].hsize.shift();
            let vfirst = hindex(&vma, vma.start, shift);
            if idx < vfirst || idx >= vfirst + (vma.len() >> shift) {
                continue;
            }
            let a = vma.start + ((idx - vfirst) << shift);
            if self
                .hugetlb
                .ptes
                .get(&(mmi, a))
                .is_some_and(|p| p.folio == folio)
            {
                self.hugetlb.ptes.remove(&(mmi, a));
                self.hugetlb.folio_mut(folio).mapcount -= 1;
            }
            let v = self.mms[mmi].vmas.get_mut(&vma.start).expect("vma");
            v.backing = VmaBacking::Hugetlb {
                inode,
                resv: None,
                unmapped: true,
            };
            self.mms[mmi].invalidate_vma_cache();
        }
    }

    // ---- userfaultfd ------------------------------------------------------------------------

    /// Whether a huge PTE maps the huge page at `addr` (a marker does not).
    pub(crate) fn hugetlb_mapped(&self, mmi: MmId, addr: u64) -> bool {
        let Some(vma) = self.mms[mmi].vma_at(addr) else {
            return false;
        };
        let hps = self.hugetlb.vma_size(vma).size();
        self.hugetlb.ptes.contains_key(&(mmi, addr & !(hps - 1)))
    }

    /// `mfill_atomic_hugetlb` + `hugetlb_mfill_atomic_pte` over `[start, end)` of one
    /// registered hugetlb VMA (the caller checked the range is inside it and registered):
    /// EINVAL unless start and length are huge-page multiples; then huge page by huge page,
    /// the pages before a failing one staying. `Copy`: EEXIST on a present entry (a marker
    /// is overwritten); in a shared VMA a new page-cache page (EFAULT at or beyond i_size,
    /// EEXIST where the file already has one), in a private one a new anonymous page, taking
    /// the VMA's reservation when it has one (EEXIST when the pool has no page for it);
    /// writable as the VMA allows unless `wp`. `Continue`: maps the file's cached page
    /// (EFAULT where there is none, EEXIST on a present entry), writable only in a shared
    /// writable VMA without `wp`. Entries are installed with the uffd-wp bit when `wp`.
    pub(crate) fn hugetlb_mfill(
        &mut self,
        mmi: MmId,
        vma: &Vma,
        start: u64,
        end: u64,
        mode: HugetlbMfill,
    ) -> Result<(), Errno> {
        let hsize = self.hugetlb.vma_size(vma);
        let hps = hsize.size();
        if start % hps != 0 || (end - start) % hps != 0 {
            return Err(Errno::EINVAL);
        }
        let (inode, _, _) = hugetlb_of(vma).expect("hugetlb vma");
        let shared = vma.has(vmf::SHARED);
        let mut haddr = start;
        while haddr < end {
            let idx = hindex(vma, haddr, hsize.shift());
            let (folio, wp, write) = match mode {
                HugetlbMfill::Copy { wp } => {
                    if self.hugetlb.ptes.contains_key(&(mmi, haddr)) {
                        return Err(Errno::EEXIST);
                    }
                    let ino = &self.hugetlb.inodes[inode.index()];
                    if shared && idx >= ino.size >> hsize.shift() {
                        return Err(Errno::EFAULT);
                    }
                    if shared && ino.cache.contains_key(&idx) {
                        return Err(Errno::EEXIST);
                    }
                    // An allocation failure is EEXIST, not ENOMEM: the caller's
                    // huge_pte_alloc made the PTE slot, so hugetlb_walk finds it (measured).
                    let f = self
                        .alloc_hugetlb_folio(vma, idx, false)
                        .map_err(|_| Errno::EEXIST)?;
                    let f = self.hugetlb_instantiate(f, inode, idx, shared);
                    (f, wp, !wp && vma.has(vmf::WRITE))
                }
                HugetlbMfill::Continue { wp } => {
                    let Some(&f) = self.hugetlb.inodes[inode.index()].cache.get(&idx) else {
                        return Err(Errno::EFAULT);
                    };
                    if self.hugetlb.ptes.contains_key(&(mmi, haddr)) {
                        return Err(Errno::EEXIST);
                    }
                    (f, wp, !wp && shared && vma.has(vmf::WRITE))
                }
            };
            self.hugetlb.markers.remove(&(mmi, haddr));
            self.hugetlb.folio_mut(folio).mapcount += 1;
            self.hugetlb.ptes.insert(
                (mmi, haddr),
                HugePte {
                    folio,
                    write,
                    uffd_wp: wp,
                },
            );
            haddr += hps;
        }
        Ok(())
    }

    /// `hugetlb_change_protection` with `MM_CP_UFFD_WP` (`wp`) or `MM_CP_UFFD_WP_RESOLVE`
    /// over `[start, end)` of one hugetlb VMA (huge-page aligned): present entries get or
    /// lose the uffd-wp bit and take the VMA's `vm_page_prot`, which is read-only both for a
    /// private VMA and for a shared one registered for WP (write notification), so a write
    /// after the unprotect faults once more (`hugetlb_wp`); none entries get a marker
    /// whatever the features (hugetlb always installs them), and resolving removes them.
    pub(crate) fn hugetlb_uffd_wp_range(&mut self, mmi: MmId, start: u64, end: u64, wp: bool) {
        let hps = self.mms[mmi]
            .vma_at(start)
            .map_or(HPAGE_SIZE, |v| self.hugetlb.vma_size(v).size());
        let mut haddr = start & !(hps - 1);
        while haddr < end {
            if let Some(p) = self.hugetlb.ptes.get_mut(&(mmi, haddr)) {
                p.uffd_wp = wp;
                p.write = false;
            } else if wp {
                self.hugetlb.markers.insert((mmi, haddr));
            } else {
                self.hugetlb.markers.remove(&(mmi, haddr));
            }
            haddr += hps;
        }
    }

    // ---- madvise ----------------------------------------------------------------------------

    /// madvise(2) over a range holding hugetlb VMAs: `Some` when the advice is decided for
    /// the whole range here. MADV_COLLAPSE is EINVAL; flag advice splits VMAs, which fails
    /// (EINVAL) at a boundary inside a huge page where the flags change, and is left to the
    /// caller; the zapping advice is decided per VMA (`hugetlb_madvise_vma`).
    pub(crate) fn hugetlb_madvise(
        &mut self,
        mmi: MmId,
        start: u64,
        end: u64,
        advice: crate::types::Advice,
    ) -> Option<Result<(), Errno>> {
        use crate::types::Advice;
        let mm = &self.mms[mmi];
        let any = mm
            .vma_starts_in(start, end)
            .iter()
            .any(|s| mm.vmas[s].backing.is_hugetlb())
            || mm.vma_at(start).is_some_and(|v| v.backing.is_hugetlb());
        if !any {
            return None;
        }
        match advice {
            Advice::Collapse | Advice::PopulatePgtable => Some(Err(Errno::EINVAL)),
            Advice::Dontneed
            | Advice::Remove
            | Advice::Free
            | Advice::Cold
            | Advice::PopulateRead
            | Advice::PopulateWrite
            | Advice::Willneed => None,
            _ => {
                // A VMA is split only where its flags change (madvise_update_vma).
                let (set, clear) = crate::madvise::madvise_flag_change(advice)?;
                let ok = |addr: u64| {
                    self.hugetlb_split_ok(mmi, addr)
                        || self.mms[mmi]
                            .vma_at(addr)
                            .is_some_and(|v| (v.flags & !clear) | set == v.flags)
                };
                if ok(start) && ok(end) {
                    None
                } else {
                    Some(Err(Errno::EINVAL))
                }
            }
        }
    }

    /// The zapping advice on the part `[a, e)` of one hugetlb VMA, from madvise's VMA walk:
    /// MADV_DONTNEED needs a 2 MiB-aligned start and zaps whole huge pages, the end rounded
    /// down (`madvise_dontneed_free_valid_vma`); MADV_FREE and MADV_COLD are EINVAL
    /// (`can_madv_lru_vma`); MADV_REMOVE punches the file (EACCES on a private VMA).
    pub(crate) fn hugetlb_madvise_vma(
        &mut self,
        mmi: MmId,
        (a, e): (u64, u64),
        vma: &Vma,
        advice: crate::types::Advice,
    ) -> Result<(), Errno> {
        use crate::types::Advice;
        match advice {
            Advice::Remove => {
                if !vma.has(vmf::SHARED) {
                    return Err(Errno::EACCES);
                }
                let (ino, _, _) = hugetlb_of(vma).expect("hugetlb");
                let off = (a - vma.start) + (vma.pgoff << PAGE_SHIFT);
                let mode = crate::shmem::FallocMode {
                    keep_size: true,
                    punch_hole: true,
                };
                self.hugetlb_fallocate(ino, mode, off, e - a)
            }
            Advice::Dontneed => {
                let hps = self.hugetlb.vma_size(vma).size();
                if a % hps != 0 {
                    return Err(Errno::EINVAL);
                }
                let e = e & !(hps - 1);
                if a < e {
                    self.unmap_hugepage_range(mmi, vma, a, e, false);
                }
                Ok(())
            }
            _ => Err(Errno::EINVAL),
        }
    }

    // ---- observation ------------------------------------------------------------------------

    /// `smaps_hugetlb_range` over `[start, end)` of one VMA: (Shared_Hugetlb,
    /// Private_Hugetlb) in bytes; a page mapped more than once is shared.
    pub(crate) fn hugetlb_smaps(&self, mmi: MmId, start: u64, end: u64) -> (u64, u64) {
        let (mut shared, mut private) = (0, 0);
        for (_, p) in self.hugetlb_ptes_in(mmi, start, end) {
            let f = self.hugetlb.folio(p.folio);
            if f.mapcount > 1 {
                shared += f.size.size();
            } else {
                private += f.size.size();
            }
        }
        (shared, private)
    }

    /// The huge PTEs whose page overlaps `[start, end)`: (address, entry).
    fn hugetlb_ptes_in(
        &self,
        mmi: MmId,
        start: u64,
        end: u64,
    ) -> impl Iterator<Item = (u64, &HugePte)> + '_ {
        let first = start & !(HugePageSize::Size1G.size() - 1);
        self.hugetlb
            .ptes
            .range((mmi, first)..(mmi, end))
            .map(|((_, a), p)| (*a, p))
            .filter(move |(a, p)| *a + self.hugetlb.folio(p.folio).size.size() > start)
    }

    /// The page map of `[start, end)` with every page of a mapped huge page as `hugetlb`
    /// (the generic map sees nothing there).
    pub(crate) fn hugetlb_overlay(&self, mmi: MmId, start: u64, end: u64, map: PageMap) -> PageMap {
        let first = start & !(HugePageSize::Size1G.size() - 1);
        let clip = |a: u64, size: u64, b: Backing| (a.max(start), (a + size).min(end), b);
        let marker_size = |a: u64| {
            self.mms[mmi]
                .vma_at(a)
                .map_or(HPAGE_SIZE, |v| self.hugetlb.vma_size(v).size())
        };
        let mut mapped: Vec<(u64, u64, Backing)> = self
            .hugetlb_ptes_in(mmi, start, end)
            .map(|(a, p)| clip(a, self.hugetlb.folio(p.folio).size.size(), Backing::Hugetlb))
            .chain(
                self.hugetlb
                    .markers
                    .range((mmi, first)..(mmi, end))
                    .map(|(_, a)| clip(*a, marker_size(*a), Backing::Marker)),
            )
            .filter(|(s, e, _)| s < e)
            .collect();
        mapped.sort_unstable_by_key(|m| m.0);
        if mapped.is_empty() {
            return map;
        }
        let mut out = PageMap::new();
        let mut addr = start;
        let mut m = mapped.iter().peekable();
        for (b, n) in map {
            let run_end = addr + n * PAGE_SIZE;
            while addr < run_end {
                while m.peek().is_some_and(|(_, e, _)| *e <= addr) {
                    m.next();
                }
                match m.peek() {
                    Some(&&(s, e, hb)) if s <= addr => {
                        let stop = e.min(run_end);
                        pagemap_push(&mut out, hb, (stop - addr) / PAGE_SIZE);
                        addr = stop;
                    }
                    Some(&&(s, _, _)) => {
                        let stop = s.min(run_end);
                        pagemap_push(&mut out, b, (stop - addr) / PAGE_SIZE);
                        addr = stop;
                    }
                    None => {
                        pagemap_push(&mut out, b, (run_end - addr) / PAGE_SIZE);
                        addr = run_end;
                    }
                }
            }
        }
        out
    }

    /// `/proc/meminfo`'s hugetlb lines under `meminfo.<name>`: pages of the default (2 MiB)
    /// hstate only (`hugetlb_report_meminfo`), and `Hugetlb` in kB over every size; then the
    /// 1 GiB hstate's sysfs counters under `hugepages-1048576kB.<file>` (pages).
    pub fn hugetlb_meminfo(&self) -> Vec<(String, i64)> {
        let h = self.hugetlb.hstate(HugePageSize::Size2M);
        let g = self.hugetlb.hstate(HugePageSize::Size1G);
        let i = crate::util::to_i64;
        let total_kb: u64 = HugePageSize::ALL
            .iter()
            .map(|s| self.hugetlb.hstate(*s).nr_huge_pages * s.kb())
            .sum();
        let mut out = vec![
            ("meminfo.HugePages_Total".into(), i(h.nr_huge_pages)),
            ("meminfo.HugePages_Free".into(), i(h.free_huge_pages)),
            // Printed unsigned by the kernel; read back as the same 64 bits.
            (
                "meminfo.HugePages_Rsvd".into(),
                crate::util::wrapping_to_i64(h.resv_huge_pages),
            ),
            ("meminfo.HugePages_Surp".into(), i(h.surplus_huge_pages)),
            ("meminfo.Hugetlb".into(), i(total_kb)),
        ];
        let vals = [
            g.nr_huge_pages,
            g.free_huge_pages,
            g.resv_huge_pages,
            g.surplus_huge_pages,
        ];
        for (f, v) in crate::observe::HSTATE_1G_FIELDS.iter().zip(vals) {
            let name = format!("{}.{f}", crate::observe::HSTATE_1G_PREFIX);
            out.push((name, crate::util::wrapping_to_i64(v)));
        }
        out
    }

    /// The pool's invariants: free list and counters agree, every page in use is referenced
    /// (mapped or cached) by exactly what the huge PTEs and caches show, and the reservation
    /// count equals the outstanding shared and private reservations less the pages that will
    /// give theirs back when freed. Returns the pages the pool holds.
    pub(crate) fn check_hugetlb(&self) -> Result<u64, String> {
        let mut maps: BTreeMap<HugetlbFolioId, u32> = BTreeMap::new();
        // A huge PTE or marker lies inside a hugetlb VMA, aligned to its page size, and a PTE
        // maps a page of that size.
        let placed = |mmi: MmId, a: u64, folio: Option<HugetlbFolioId>| {
            self.mms[mmi].vma_at(a).is_some_and(|v| {
                if !v.backing.is_hugetlb() {
                    return false;
                }
                let size = self.hugetlb.vma_size(v);
                a % size.size() == 0
                    && a + size.size() <= v.end
                    && folio.is_none_or(|f| {
                        self.hugetlb.folios[f.index()].is_some_and(|f| f.size == size)
                    })
            })
        };
        for ((mmi, a), p) in &self.hugetlb.ptes {
            if !placed(*mmi, *a, Some(p.folio)) {
                return Err(format!(
                    "hugetlb pte {mmi}:{a:#x} outside a hugetlb VMA, unaligned, or of another size"
                ));
            }
            *maps.entry(p.folio).or_default() += 1;
        }
        for (mmi, a) in &self.hugetlb.markers {
            // (A re-registration without WP mode keeps markers, as the kernel does.)
            if !placed(*mmi, *a, None) || self.hugetlb.ptes.contains_key(&(*mmi, *a)) {
                return Err(format!(
                    "hugetlb uffd-wp marker {mmi}:{a:#x} outside a hugetlb VMA or over a \
                     present entry"
                ));
            }
        }
        for ((mmi, a), p) in &self.hugetlb.ptes {
            if p.uffd_wp && p.write {
                return Err(format!("hugetlb pte {mmi}:{a:#x} writable and uffd-wp"));
            }
        }
        let mut pending = [0u64; 2];
        let mut live = [0u64; 2];
        for (id, f) in self.hugetlb.live() {
            if maps.get(&id).copied().unwrap_or(0) != f.mapcount {
                return Err(format!("hugetlb folio {id}: mapcount {} wrong", f.mapcount));
            }
            if f.mapcount == 0 && f.cache.is_none() {
                return Err(format!("hugetlb folio {id} unreferenced"));
            }
            if let Some((ino, idx)) = f.cache {
                let inode = &self.hugetlb.inodes[ino.index()];
                if inode.cache.get(&idx) != Some(&id) || inode.hsize != f.size {
                    return Err(format!(
                        "hugetlb folio {id} not in its cache slot, or of another size"
                    ));
                }
            }
            if f.pfn.0 % f.size.nr_pages() != 0 {
                return Err(format!("hugetlb folio {id} at unaligned pfn {}", f.pfn));
            }
            pending[f.size.index()] += u64::from(f.restore_reserve);
            live[f.size.index()] += 1;
        }
        let mut outstanding = [0u64; 2];
        for inode in &self.hugetlb.inodes {
            outstanding[inode.hsize.index()] += inode
                .resv
                .iter()
                .filter(|i| !inode.cache.contains_key(i))
                .count() as u64;
        }
        for (_, mm) in self.mms.iter() {
            for v in mm.vmas.values() {
                if let Some((_, Some(m), _)) = hugetlb_of(v) {
                    let size = self.hugetlb.vma_size(v);
                    let (a, b) = (
                        hindex(v, v.start, size.shift()),
                        hindex(v, v.end, size.shift()),
                    );
                    let consumed = self.hugetlb.resv_maps[m.index()].range(a..b).count() as u64;
                    outstanding[size.index()] += (b - a) - consumed;
                }
            }
        }
        let mut pages = 0;
        for size in HugePageSize::ALL {
            let h = self.hugetlb.hstate(size);
            let (live, pending, outstanding) = (
                live[size.index()],
                pending[size.index()],
                outstanding[size.index()],
            );
            if h.free_list.len() as u64 != h.free_huge_pages {
                return Err(format!(
                    "hugetlb {size:?}: free list {} != free_huge_pages {}",
                    h.free_list.len(),
                    h.free_huge_pages
                ));
            }
            if let Some(p) = h.free_list.iter().find(|p| p.0 % size.nr_pages() != 0) {
                return Err(format!("hugetlb {size:?}: free page at unaligned pfn {p}"));
            }
            if live + h.free_huge_pages != h.nr_huge_pages {
                return Err(format!(
                    "hugetlb {size:?}: {live} in use + {} free != nr_huge_pages {}",
                    h.free_huge_pages, h.nr_huge_pages
                ));
            }
            if h.surplus_huge_pages > h.nr_huge_pages
                || (size.gigantic() && h.nr_overcommit_huge_pages != 0)
            {
                return Err(format!("hugetlb {size:?} counters inconsistent: {h:?}"));
            }
            // Reservations a folio will restore when freed are outstanding in a reserve map
            // but not yet in resv_huge_pages (an owner's DONTNEED of a page its fork child
            // still maps re-adds the reservation while the page is in use): those need no
            // free page yet.
            if outstanding != h.resv_huge_pages.wrapping_add(pending)
                || outstanding.saturating_sub(pending) > h.free_huge_pages
            {
                return Err(format!(
                    "hugetlb {size:?}: resv_huge_pages {} + {pending} to restore != \
                     {outstanding} outstanding, or more than the {} free pages",
                    h.resv_huge_pages, h.free_huge_pages
                ));
            }
            pages += h.nr_huge_pages * size.nr_pages();
        }
        Ok(pages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Prot;
    use crate::KernelConfig;

    fn kernel(pages: u64) -> (Kernel, Pid) {
        let mut k = Kernel::new(KernelConfig {
            memory: 1 << 30,
            ..KernelConfig::default()
        })
        .unwrap();
        k.set_max_huge_pages(HugePageSize::Size2M, pages);
        let pid = k.spawn();
        (k, pid)
    }

    fn counts(k: &Kernel) -> [u64; 4] {
        let h = k.hugetlb.hstate(HugePageSize::Size2M);
        [
            h.nr_huge_pages,
            h.free_huge_pages,
            h.resv_huge_pages,
            h.surplus_huge_pages,
        ]
    }

    const BASE: u64 = 0x6000_0000_0000;

    /// One huge page mapped at `BASE` with `flags` and written.
    fn written_page(k: &mut Kernel, pid: Pid, flags: HugetlbMapFlags) {
        k.mmap_hugetlb(pid, BASE, HPAGE_SIZE, RW, flags, None)
            .unwrap();
        k.access(pid, BASE, crate::types::AccessKind::Write)
            .unwrap();
    }
    const RW: Prot = Prot {
        read: true,
        write: true,
        exec: false,
    };

    /// Two private huge pages at `BASE`, reserved.
    fn map_private_two(k: &mut Kernel, pid: Pid) {
        k.mmap_hugetlb(
            pid,
            BASE,
            2 * HPAGE_SIZE,
            RW,
            HugetlbMapFlags::default(),
            None,
        )
        .unwrap();
    }

    #[test]
    fn private_reserve_read_then_write() {
        let (mut k, pid) = kernel(3);
        assert_eq!(k.vmstat.get(VmItem::HtlbBuddyAllocSuccess), 3);
        map_private_two(&mut k, pid);
        assert_eq!(counts(&k), [3, 3, 2, 0]);
        k.access(pid, BASE, crate::types::AccessKind::Read).unwrap();
        assert_eq!(counts(&k), [3, 2, 1, 0]);
        k.access(pid, BASE + 4096, crate::types::AccessKind::Write)
            .unwrap();
        k.access(pid, BASE + HPAGE_SIZE, crate::types::AccessKind::Write)
            .unwrap();
        assert_eq!(k.task(pid).unwrap().minflt, 3);
        assert_eq!(counts(&k), [3, 1, 0, 0]);
        // A second private mapping of two pages cannot be reserved.
        let flags = HugetlbMapFlags::default();
        assert_eq!(
            k.mmap_hugetlb(pid, BASE + 8 * HPAGE_SIZE, 2 * HPAGE_SIZE, RW, flags, None),
            Err(Errno::ENOMEM)
        );
        k.check_invariants().unwrap();
        // MADV_DONTNEED of one page and 4K more: the page is zapped and re-reserved.
        k.madvise(pid, BASE, HPAGE_SIZE + 4096, crate::types::Advice::Dontneed)
            .unwrap();
        assert_eq!(counts(&k), [3, 2, 1, 0]);
        assert_eq!(
            k.munmap(pid, BASE, 4096),
            Err(Errno::EINVAL),
            "a split inside a huge page"
        );
        k.munmap(pid, BASE, 2 * HPAGE_SIZE).unwrap();
        assert_eq!(counts(&k), [3, 3, 0, 0]);
        k.check_invariants().unwrap();
    }

    #[test]
    fn pool_shrink_in_use_becomes_surplus() {
        let (mut k, pid) = kernel(2);
        let f = HugetlbMapFlags::default();
        k.mmap_hugetlb(pid, BASE, HPAGE_SIZE, RW, f, None).unwrap();
        k.access(pid, BASE, crate::types::AccessKind::Write)
            .unwrap();
        k.mmap_hugetlb(pid, BASE + 2 * HPAGE_SIZE, HPAGE_SIZE, RW, f, None)
            .unwrap();
        assert_eq!(counts(&k), [2, 1, 1, 0]);
        k.set_max_huge_pages(HugePageSize::Size2M, 0);
        assert_eq!(counts(&k), [2, 1, 1, 2]);
        k.munmap(pid, BASE, HPAGE_SIZE).unwrap();
        assert_eq!(counts(&k), [1, 1, 1, 1]);
        k.munmap(pid, BASE + 2 * HPAGE_SIZE, HPAGE_SIZE).unwrap();
        assert_eq!(counts(&k), [0, 0, 0, 0]);
        k.set_overcommit_huge_pages(HugePageSize::Size2M, 2);
        k.mmap_hugetlb(pid, BASE, HPAGE_SIZE, RW, f, None).unwrap();
        assert_eq!(counts(&k), [1, 1, 1, 1]);
        k.access(pid, BASE, crate::types::AccessKind::Write)
            .unwrap();
        k.set_max_huge_pages(HugePageSize::Size2M, 1);
        assert_eq!(counts(&k), [1, 0, 0, 0]);
        k.check_invariants().unwrap();
    }

    #[test]
    fn fork_cow_with_empty_pool() {
        let (mut k, parent) = kernel(1);
        written_page(&mut k, parent, HugetlbMapFlags::default());
        let child = k.fork(parent).unwrap();
        // The child has no reservation: its COW finds no page.
        assert_eq!(
            k.access(child, BASE, crate::types::AccessKind::Write),
            Err(Signal::Sigbus)
        );
        // The owner steals the page back: the child loses it and gets SIGBUS even on reads.
        k.access(parent, BASE, crate::types::AccessKind::Write)
            .unwrap();
        assert_eq!(
            k.access(child, BASE, crate::types::AccessKind::Read),
            Err(Signal::Sigbus)
        );
        assert_eq!(counts(&k), [1, 0, 0, 0]);
        k.check_invariants().unwrap();
        k.exit(child);
        k.exit(parent);
        assert_eq!(counts(&k), [1, 1, 0, 0]);
        k.check_invariants().unwrap();
    }

    #[test]
    fn owner_unmap_of_a_page_the_child_maps_wraps_rsvd() {
        let (mut k, parent) = kernel(2);
        written_page(&mut k, parent, HugetlbMapFlags::default());
        let child = k.fork(parent).unwrap();
        k.munmap(parent, BASE, HPAGE_SIZE).unwrap();
        assert_eq!(
            k.hugetlb.hstate(HugePageSize::Size2M).resv_huge_pages,
            u64::MAX
        );
        let rsvd = k
            .hugetlb_meminfo()
            .into_iter()
            .find(|(n, _)| n == "meminfo.HugePages_Rsvd")
            .unwrap();
        assert_eq!(rsvd.1, -1);
        k.check_invariants().unwrap();
        k.exit(child);
        assert_eq!(counts(&k), [2, 2, 0, 0]);
        k.check_invariants().unwrap();
    }

    #[test]
    fn shared_mapping_is_not_copied_at_fork() {
        let (mut k, parent) = kernel(1);
        let shared = HugetlbMapFlags {
            shared: true,
            ..HugetlbMapFlags::default()
        };
        written_page(&mut k, parent, shared);
        let child = k.fork(parent).unwrap();
        let mmi = k.mm_of(child);
        assert_eq!(k.hugetlb_smaps(mmi, BASE, BASE + HPAGE_SIZE), (0, 0));
        k.access(child, BASE, crate::types::AccessKind::Write)
            .unwrap();
        assert_eq!(k.task(child).unwrap().minflt, 1);
        assert_eq!(
            k.hugetlb_smaps(mmi, BASE, BASE + HPAGE_SIZE),
            (HPAGE_SIZE, 0)
        );
        assert_eq!(counts(&k), [1, 0, 0, 0]);
        k.check_invariants().unwrap();
    }

    #[test]
    fn memfd_fallocate_punch_truncate() {
        let (mut k, pid) = kernel(2);
        assert_eq!(
            k.hugetlb_new_inode(4096, HugePageSize::Size2M),
            Err(Errno::EINVAL)
        );
        let ino = k
            .hugetlb_new_inode(3 * HPAGE_SIZE, HugePageSize::Size2M)
            .unwrap();
        let shared = HugetlbMapFlags {
            shared: true,
            ..HugetlbMapFlags::default()
        };
        assert_eq!(
            k.mmap_hugetlb(pid, BASE, 3 * HPAGE_SIZE, RW, shared, Some((ino, 0))),
            Err(Errno::ENOMEM)
        );
        k.mmap_hugetlb(pid, BASE, 2 * HPAGE_SIZE, RW, shared, Some((ino, 0)))
            .unwrap();
        k.mmap_hugetlb(
            pid,
            BASE + 4 * HPAGE_SIZE,
            2 * HPAGE_SIZE,
            RW,
            shared,
            Some((ino, 0)),
        )
        .unwrap();
        assert_eq!(counts(&k), [2, 2, 2, 0]);
        k.access(pid, BASE, crate::types::AccessKind::Write)
            .unwrap();
        assert_eq!(counts(&k), [2, 1, 1, 0]);
        let alloc = crate::shmem::FallocMode::default();
        k.hugetlb_fallocate(ino, alloc, 0, HPAGE_SIZE + 1).unwrap();
        assert_eq!(counts(&k), [2, 0, 0, 0]);
        let keep = crate::shmem::FallocMode {
            keep_size: true,
            punch_hole: false,
        };
        assert_eq!(
            k.hugetlb_fallocate(ino, keep, 2 * HPAGE_SIZE, HPAGE_SIZE),
            Err(Errno::ENOSPC)
        );
        let punch = crate::shmem::FallocMode {
            keep_size: true,
            punch_hole: true,
        };
        k.hugetlb_fallocate(ino, punch, 4096, 4096).unwrap();
        assert_eq!(counts(&k), [2, 0, 0, 0]);
        k.hugetlb_fallocate(ino, punch, 0, HPAGE_SIZE).unwrap();
        assert_eq!(counts(&k), [2, 1, 0, 0]);
        k.check_invariants().unwrap();
        k.hugetlb_truncate(ino, HPAGE_SIZE).unwrap();
        assert_eq!(counts(&k), [2, 2, 0, 0]);
        assert_eq!(
            k.access(pid, BASE + HPAGE_SIZE, crate::types::AccessKind::Read),
            Err(Signal::Sigbus)
        );
        k.check_invariants().unwrap();
    }

    #[test]
    fn userfaultfd_missing_copy_and_wp_markers() {
        use crate::types::AccessKind;
        use crate::userfaultfd::{Features, Mfill};
        let (mut k, pid) = kernel(3);
        map_private_two(&mut k, pid);
        k.uffd_open(pid, Features::default()).unwrap();
        let (missing, wp) = (vmf::UFFD_MISSING, vmf::UFFD_WP);
        // Only whole huge pages register.
        assert_eq!(
            k.uffd_register(pid, BASE + 4096, HPAGE_SIZE, missing),
            Err(Errno::EINVAL)
        );
        k.uffd_register(pid, BASE, 2 * HPAGE_SIZE, missing | wp)
            .unwrap();
        let copy = Mfill::Copy { wp: false };
        assert_eq!(k.uffd_fill(pid, BASE, 4096, copy), Err(Errno::EINVAL));
        assert_eq!(
            k.uffd_fill(pid, BASE, HPAGE_SIZE, Mfill::ZeroPage),
            Err(Errno::EINVAL)
        );
        // A read of the first page: one MISSING message at the huge page's address, the
        // monitor copies the page (taking its reservation), one counted fault.
        k.access(pid, BASE + (12 << 10), AccessKind::Read).unwrap();
        assert_eq!(k.uffd_msgs(pid).len(), 1);
        assert_eq!(k.uffd_msgs(pid)[0].address, BASE);
        assert_eq!(k.task(pid).unwrap().minflt, 1);
        assert_eq!(counts(&k), [3, 2, 1, 0]);
        assert_eq!(k.uffd_fill(pid, BASE, HPAGE_SIZE, copy), Err(Errno::EEXIST));
        // Write-protect both: the mapped page gets the bit, the none one a marker.
        k.uffd_writeprotect(pid, BASE, 2 * HPAGE_SIZE, true)
            .unwrap();
        let mmi = k.mm_of(pid);
        assert!(k.hugetlb.markers.contains(&(mmi, BASE + HPAGE_SIZE)));
        assert_eq!(
            k.page_map(pid, BASE, BASE + 2 * HPAGE_SIZE),
            vec![(Backing::Hugetlb, 512), (Backing::Marker, 512)]
        );
        // MADV_DONTNEED keeps the protection as a marker.
        k.madvise(pid, BASE, HPAGE_SIZE, crate::types::Advice::Dontneed)
            .unwrap();
        assert!(k.hugetlb.markers.contains(&(mmi, BASE)));
        assert_eq!(counts(&k), [3, 3, 2, 0]);
        k.check_invariants().unwrap();
        // A write over a marker in a range also registered MISSING: the file has no page,
        // so it is a MISSING message first; the monitor's plain UFFDIO_COPY overwrites the
        // marker with a writable page, and the retry is the one counted fault.
        k.access(pid, BASE + HPAGE_SIZE, AccessKind::Write).unwrap();
        let m = k.uffd_msgs(pid);
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!(m[1].flags, crate::userfaultfd::FLAG_WRITE);
        assert_eq!(k.task(pid).unwrap().minflt, 2);
        assert!(!k.hugetlb.markers.contains(&(mmi, BASE + HPAGE_SIZE)));
        assert!(k.hugetlb.ptes[&(mmi, BASE + HPAGE_SIZE)].write);
        k.check_invariants().unwrap();
        k.munmap(pid, BASE, 2 * HPAGE_SIZE).unwrap();
        assert!(k.hugetlb.markers.is_empty());
        assert_eq!(counts(&k), [3, 3, 0, 0]);
        k.check_invariants().unwrap();
    }
}
