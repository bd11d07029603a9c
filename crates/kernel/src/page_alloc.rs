//! The buddy allocator over simulated PFNs, after `mm/page_alloc.c` (Linux 6.18): zones
//! (DMA32 below 4 GiB, Normal above), pageblocks of `pageblock_order` 9 with a migratetype
//! each, free lists per (zone, order, migratetype), `__rmqueue_smallest` + `expand`, the
//! 6.15+ fallback structure (`__rmqueue_claim` / `try_to_claim_block`, then
//! `__rmqueue_steal`, with `ALLOC_NOFRAGMENT` on the first pass when Normal is preferred and
//! DMA32 exists), merging on free (`__free_one_page`, which re-labels a differently typed
//! buddy pageblock at order >= `pageblock_order`), and the zone watermarks
//! (`__setup_per_zone_wmarks`, `calculate_min_free_kbytes` and khugepaged's
//! `set_recommended_min_free_kbytes`, `lowmem_reserve`). The slow path (kswapd wakeup, direct
//! compaction) is `Kernel::alloc_pages` below; compaction itself is `compaction.rs`.
//!
//! Known deviations (documented in ARCHITECTURE.md): no DMA zone, no per-CPU lists, no
//! watermark boosting, no HIGHATOMIC reserve (the type exists for `/proc/pagetypeinfo`), no
//! reclaim; free blocks go to the head of their list (no `buddy_merge_likely` tail placement).
//!
//! Memory use is independent of the simulated memory size until pages are used: blocks never
//! split yet are a "virgin" range of MAX_PAGE_ORDER movable blocks above a cursor per zone,
//! and the per-order free bitmaps (2 bits per simulated page in all), the movable-in-use
//! bitmap (1 bit per page, but 1 bit per pageblock while a single movable allocation covers
//! the pageblock, as a PMD THP does, so those words are never written) and the pageblock
//! types (1 byte per 2 MiB) are allocated zeroed (the host commits them lazily).

use crate::ids::Pfn;
use crate::types::MAX_PAGE_ORDER;
use crate::vmstat::VmItem;
use crate::Kernel;

pub(crate) const NR_ORDERS: usize = MAX_PAGE_ORDER as usize + 1;
/// `pageblock_order` on x86-64 with THP.
pub(crate) const PAGEBLOCK_ORDER: u8 = 9;
pub(crate) const PAGEBLOCK_NR: u64 = 1 << PAGEBLOCK_ORDER;
/// `PAGE_ALLOC_COSTLY_ORDER`.
pub(crate) const COSTLY_ORDER: u8 = 3;
/// `lowmem_reserve_ratio` of DMA32 (the share of Normal's pages DMA32 keeps from Normal
/// allocations).
const DMA32_RESERVE_RATIO: u64 = 256;
/// 4 GiB in pages: where DMA32 ends.
const DMA32_END: u64 = 1 << 20;

/// A pageblock's (and a free list's) migratetype, numbered as the kernel's enum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MigrateType {
    Unmovable = 0,
    Movable = 1,
    Reclaimable = 2,
    HighAtomic = 3,
}

pub(crate) const NR_MT: usize = 4;
/// `MIGRATE_PCPTYPES`: the types that fall back to each other.
const PCPTYPES: usize = 3;

impl MigrateType {
    pub const ALL: [MigrateType; NR_MT] = [
        MigrateType::Unmovable,
        MigrateType::Movable,
        MigrateType::Reclaimable,
        MigrateType::HighAtomic,
    ];

    /// The name `/proc/pagetypeinfo` prints.
    pub fn name(self) -> &'static str {
        match self {
            MigrateType::Unmovable => "Unmovable",
            MigrateType::Movable => "Movable",
            MigrateType::Reclaimable => "Reclaimable",
            MigrateType::HighAtomic => "HighAtomic",
        }
    }

    /// `fallbacks[]`: where a request of this type looks when its own lists are empty.
    fn fallbacks(self) -> &'static [MigrateType] {
        match self {
            MigrateType::Unmovable => &[MigrateType::Reclaimable, MigrateType::Movable],
            MigrateType::Movable => &[MigrateType::Reclaimable, MigrateType::Unmovable],
            MigrateType::Reclaimable => &[MigrateType::Unmovable, MigrateType::Movable],
            MigrateType::HighAtomic => &[],
        }
    }

    /// Stored per pageblock as `self ^ Movable`, so a zeroed array is all movable (as
    /// `memmap_init` leaves every pageblock).
    fn code(self) -> u8 {
        (self as u8) ^ 1
    }

    fn from_code(c: u8) -> MigrateType {
        MigrateType::ALL[usize::from(c ^ 1)]
    }

    /// `migratetype_is_mergeable`.
    fn mergeable(self) -> bool {
        (self as usize) < PCPTYPES
    }
}

/// Which watermark an allocation must stay above (`ALLOC_WMARK_*`; high is only kswapd's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wmark {
    Min = 0,
    Low = 1,
}

/// Compaction deferral state of a zone (`compact_considered`, `compact_defer_shift`,
/// `compact_order_failed`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactDefer {
    pub considered: u32,
    pub defer_shift: u32,
    pub order_failed: u8,
}

#[derive(Clone, Debug)]
pub(crate) struct Zone {
    pub(crate) name: &'static str,
    pub(crate) start: u64,
    pub(crate) end: u64,
    /// PFNs at or above this (in MAX_PAGE_ORDER blocks) have never been handed out: free
    /// movable blocks of MAX_PAGE_ORDER that are on no list.
    virgin: u64,
    /// Per (order, type): stack of free block heads. Entries can be stale (the block was
    /// merged away or its pageblock changed type); the free bitmaps and the pageblock types
    /// are the truth and stale entries are skipped.
    lists: [[Vec<u32>; NR_MT]; NR_ORDERS],
    /// Per (order, type): free blocks (the truth, excluding the virgin range).
    nr_free: [[u64; NR_MT]; NR_ORDERS],
    free_pages: u64,
    /// min, low, high (pages).
    pub(crate) wmark: [u64; 3],
    /// Pages kept from allocations that could have used a higher zone (`lowmem_reserve`).
    pub(crate) lowmem_reserve: u64,
    pub(crate) defer: CompactDefer,
    /// `compact_blockskip_flush`: direct compaction met its scanners; the skip hints are
    /// cleared when kswapd next runs.
    pub(crate) blockskip_flush: bool,
}

impl Zone {
    pub(crate) fn managed(&self) -> u64 {
        self.end - self.start
    }

    pub(crate) fn free_pages(&self) -> u64 {
        self.free_pages
    }

    fn virgin_blocks(&self) -> u64 {
        (self.end - self.virgin) >> MAX_PAGE_ORDER
    }

    /// Free blocks of exactly `order` on the `mt` list (`/proc/pagetypeinfo`).
    pub(crate) fn count(&self, order: usize, mt: MigrateType) -> u64 {
        let mut n = self.nr_free[order][mt as usize];
        if order == NR_ORDERS - 1 && mt == MigrateType::Movable {
            n += self.virgin_blocks();
        }
        n
    }

    /// Free blocks of exactly `order`, every type (`/proc/buddyinfo`).
    pub(crate) fn count_order(&self, order: usize) -> u64 {
        MigrateType::ALL
            .iter()
            .map(|&mt| self.count(order, mt))
            .sum()
    }

    /// `free_area_empty` for the types that can be allocated without reserves, from `order`
    /// up.
    fn has_block_at_least(&self, order: usize) -> bool {
        (order..NR_ORDERS).any(|o| {
            MigrateType::ALL[..PCPTYPES]
                .iter()
                .any(|&mt| self.count(o, mt) > 0)
        })
    }

    /// `fill_contig_page_info`: free pages, free blocks, and free blocks usable for `order`
    /// (in units of `order`).
    fn contig_info(&self, order: usize) -> (u64, u64, u64) {
        let (mut pages, mut blocks, mut suitable) = (0, 0, 0);
        for o in 0..NR_ORDERS {
            let n = self.count_order(o);
            blocks += n;
            pages += n << o;
            if o >= order {
                suitable += n << (o - order);
            }
        }
        (pages, blocks, suitable)
    }

    /// `fragmentation_index` ×1000: -1000 if an `order` block is free, 0 if nothing is free,
    /// towards 0 when failure is for lack of memory, towards 1000 when for fragmentation.
    pub(crate) fn fragmentation_index(&self, order: u8) -> i64 {
        let (pages, blocks, suitable) = self.contig_info(usize::from(order));
        if blocks == 0 {
            return 0;
        }
        if suitable > 0 {
            return -1000;
        }
        let requested = 1u64 << order;
        1000 - crate::util::to_i64((1000 + pages * 1000 / requested) / blocks)
    }

    /// `unusable_free_index` ×1000: the share of free memory in blocks too small for `order`.
    pub(crate) fn unusable_index(&self, order: u8) -> i64 {
        let (pages, _, suitable) = self.contig_info(usize::from(order));
        if pages == 0 {
            return 1000;
        }
        crate::util::to_i64((pages - (suitable << order)) * 1000 / pages)
    }

    /// `extfrag_for_order` (percent), the input of the proactive-compaction score.
    pub(crate) fn extfrag_for_order(&self, order: u8) -> u64 {
        let (pages, _, suitable) = self.contig_info(usize::from(order));
        if pages == 0 {
            return 0;
        }
        (pages - (suitable << order)) * 100 / pages
    }
}

#[derive(Clone, Debug)]
pub(crate) struct BuddyAllocator {
    total_pages: u64,
    /// Lowest zone first (DMA32, then Normal when memory exceeds 4 GiB).
    pub(crate) zones: Vec<Zone>,
    /// Per order k: bit `pfn >> k` is set if a free block of order k starts at `pfn`.
    bits: [Vec<u64>; NR_ORDERS],
    /// Bit per page: in use by a movable allocation (`PageLRU`/`__PageMovable` as the
    /// pageblock scan of `try_to_claim_block` and compaction see it).
    movable: Vec<u64>,
    /// Bit per pageblock: every page of it is in movable use, marked at once (an allocation
    /// of pageblock order or more, or an order-0 run of `alloc_order0_run` that took a whole
    /// block); its words in `movable` are then zero (a PMD THP costs one bit here
    /// instead of 64 bytes there).
    movable_pb: Vec<u64>,
    /// Per pageblock: `MigrateType::code`.
    pageblock: Vec<u8>,
    /// Per pageblock: `PB_migrate_skip`, compaction's hint that scanning it is futile.
    skip: Vec<u64>,
    pub(crate) min_free_kbytes: u64,
}

/// How `get_page_from_freelist` may take a block.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AllocFlags {
    pub(crate) wmark: Wmark,
    /// First pass: try `ALLOC_NOFRAGMENT` (no stealing, claims only of whole pageblocks).
    pub(crate) nofragment: bool,
}

impl BuddyAllocator {
    /// `total_pages` must be a multiple of 2^MAX_PAGE_ORDER and below 2^32. `thp` says
    /// whether PMD THP is enabled at boot (khugepaged then raises `min_free_kbytes`).
    pub(crate) fn new(total_pages: u64, thp: bool, watermark_scale_factor: u64) -> Self {
        assert!(total_pages % (1 << MAX_PAGE_ORDER) == 0 && total_pages < (1u64 << 32));
        let mut zones = vec![Zone::new("DMA32", 0, total_pages.min(DMA32_END))];
        if total_pages > DMA32_END {
            zones.push(Zone::new("Normal", DMA32_END, total_pages));
        }
        let words = |n: u64| vec![0u64; usize::try_from(n.div_ceil(64)).expect("below 2^32")];
        let mut b = BuddyAllocator {
            total_pages,
            zones,
            bits: std::array::from_fn(|k| words(total_pages >> k)),
            movable: words(total_pages),
            movable_pb: words(total_pages >> PAGEBLOCK_ORDER),
            pageblock: vec![0; usize::try_from(total_pages >> PAGEBLOCK_ORDER).expect("fits")],
            skip: words(total_pages >> PAGEBLOCK_ORDER),
            min_free_kbytes: 0,
        };
        b.min_free_kbytes = calculate_min_free_kbytes(total_pages, b.zones.len() as u64, thp);
        b.setup_per_zone_wmarks(watermark_scale_factor);
        b
    }

    /// `__setup_per_zone_wmarks` and `setup_per_zone_lowmem_reserve`.
    fn setup_per_zone_wmarks(&mut self, wsf: u64) {
        let pages_min = self.min_free_kbytes >> 2;
        let lowmem = self.total_pages;
        let normal = self.zones.get(1).map_or(0, Zone::managed);
        for (i, z) in self.zones.iter_mut().enumerate() {
            let managed = z.managed();
            let min = pages_min * managed / lowmem;
            let step = (min >> 2).max(managed * wsf / 10_000);
            z.wmark = [min, min + step, min + 2 * step];
            z.lowmem_reserve = if i == 0 {
                normal / DMA32_RESERVE_RATIO
            } else {
                0
            };
        }
    }

    pub(crate) fn total_pages(&self) -> u64 {
        self.total_pages
    }

    pub(crate) fn zone_of(&self, pfn: u64) -> usize {
        usize::from(self.zones.len() > 1 && pfn >= DMA32_END)
    }

    #[inline]
    fn is_free(&self, pfn: u64, order: usize) -> bool {
        bit_test(&self.bits[order], pfn >> order)
    }

    #[inline]
    fn set_free(&mut self, pfn: u64, order: usize, on: bool) {
        bit_set(&mut self.bits[order], pfn >> order, on);
    }

    /// The order of the free block starting at `pfn`, if one does (`PageBuddy` +
    /// `buddy_order`); virgin blocks included.
    pub(crate) fn free_order_at(&self, pfn: u64) -> Option<u8> {
        let z = &self.zones[self.zone_of(pfn)];
        if pfn >= z.virgin {
            return (pfn % (1 << MAX_PAGE_ORDER) == 0).then_some(MAX_PAGE_ORDER);
        }
        (0..NR_ORDERS)
            .take_while(|&o| pfn % (1 << o) == 0)
            .find(|&o| self.is_free(pfn, o))
            .map(order_u8)
    }

    /// The free block that contains `pfn`, if any: `(head, order)`.
    pub(crate) fn free_block_containing(&self, pfn: u64) -> Option<(u64, u8)> {
        let z = &self.zones[self.zone_of(pfn)];
        if pfn >= z.virgin {
            return Some((pfn & !((1 << MAX_PAGE_ORDER) - 1), MAX_PAGE_ORDER));
        }
        (0..NR_ORDERS)
            .map(|o| (pfn & !((1u64 << o) - 1), o))
            .find(|&(h, o)| self.is_free(h, o))
            .map(|(h, o)| (h, order_u8(o)))
    }

    /// Whether a request of `mt` could claim a block of `order` from another type
    /// (`find_suitable_fallback(..., claimable=true) >= 0`).
    pub(crate) fn claimable_fallback(&self, z: usize, order: usize, mt: MigrateType) -> bool {
        self.find_suitable_fallback(z, order, mt, true).is_ok()
    }

    /// Whether `pfn` is in use by a movable allocation.
    pub(crate) fn is_movable_used(&self, pfn: u64) -> bool {
        bit_test(&self.movable_pb, pfn >> PAGEBLOCK_ORDER) || bit_test(&self.movable, pfn)
    }

    /// Whether any of `n` pages from `pfn` is marked in movable use (whole words where the
    /// range is word-aligned, as every block of order 6 and up is).
    fn any_movable(&self, pfn: u64, n: u64) -> bool {
        if n >= PAGEBLOCK_NR {
            let pbs = pfn >> PAGEBLOCK_ORDER..(pfn + n) >> PAGEBLOCK_ORDER;
            if pbs.into_iter().any(|pb| bit_test(&self.movable_pb, pb)) {
                return true;
            }
        } else if bit_test(&self.movable_pb, pfn >> PAGEBLOCK_ORDER) {
            return true;
        }
        if n >= 64 {
            let (s, e) = ((pfn / 64) as usize, ((pfn + n) / 64) as usize);
            return self.movable[s..e].iter().any(|&w| w != 0);
        }
        (pfn..pfn + n).any(|p| bit_test(&self.movable, p))
    }

    fn mark_movable(&mut self, pfn: u64, order: usize, on: bool) {
        let (s, e) = (pfn, pfn + (1 << order));
        if order >= PAGEBLOCK_ORDER as usize {
            // Whole pageblocks: their bits, and their words stay (or become) zero.
            for pb in s >> PAGEBLOCK_ORDER..e >> PAGEBLOCK_ORDER {
                bit_set(&mut self.movable_pb, pb, on);
                let w = (pb * PAGEBLOCK_NR / 64) as usize;
                for x in &mut self.movable[w..w + (PAGEBLOCK_NR / 64) as usize] {
                    if *x != 0 {
                        *x = 0;
                    }
                }
            }
            return;
        }
        let pb = s >> PAGEBLOCK_ORDER;
        if bit_test(&self.movable_pb, pb) {
            // Part of a pageblock-wide allocation changes (its folio was split and a piece
            // freed, or migrated): back to a bit per page.
            bit_set(&mut self.movable_pb, pb, false);
            let w = (pb * PAGEBLOCK_NR / 64) as usize;
            self.movable[w..w + (PAGEBLOCK_NR / 64) as usize].fill(u64::MAX);
        }
        if order >= 6 {
            // Whole words.
            let v = if on { u64::MAX } else { 0 };
            for w in &mut self.movable[(s / 64) as usize..(e / 64) as usize] {
                *w = v;
            }
        } else {
            for p in s..e {
                bit_set(&mut self.movable, p, on);
            }
        }
    }

    pub(crate) fn pageblock_skip(&self, pfn: u64) -> bool {
        bit_test(&self.skip, pfn >> PAGEBLOCK_ORDER)
    }

    pub(crate) fn set_pageblock_skip(&mut self, pfn: u64) {
        bit_set(&mut self.skip, pfn >> PAGEBLOCK_ORDER, true);
    }

    /// `__reset_isolation_suitable`: clears the skip hints of zone `z`.
    pub(crate) fn reset_isolation_suitable(&mut self, z: usize) {
        let (s, e) = (
            self.zones[z].start >> PAGEBLOCK_ORDER,
            self.zones[z].end >> PAGEBLOCK_ORDER,
        );
        for b in s..e {
            bit_set(&mut self.skip, b, false);
        }
        self.zones[z].blockskip_flush = false;
    }

    pub(crate) fn pageblock_mt(&self, pfn: u64) -> MigrateType {
        MigrateType::from_code(self.pageblock[(pfn >> PAGEBLOCK_ORDER) as usize])
    }

    /// `change_pageblock_range` for `2^order` pages from `pfn` (at least one pageblock).
    fn set_pageblock_mt(&mut self, pfn: u64, order: usize, mt: MigrateType) {
        let first = (pfn >> PAGEBLOCK_ORDER) as usize;
        let n = (1usize << order.max(PAGEBLOCK_ORDER as usize)) >> PAGEBLOCK_ORDER;
        for b in &mut self.pageblock[first..first + n] {
            *b = mt.code();
        }
    }

    /// Free pages (`NR_FREE_PAGES`).
    pub(crate) fn nr_free_pages(&self) -> u64 {
        self.zones.iter().map(|z| z.free_pages).sum()
    }

    fn add_to_free_list(&mut self, z: usize, pfn: u64, order: usize, mt: MigrateType) {
        self.set_free(pfn, order, true);
        let zone = &mut self.zones[z];
        zone.lists[order][mt as usize].push(Pfn(pfn).to_u32());
        zone.nr_free[order][mt as usize] += 1;
        zone.free_pages += 1 << order;
    }

    fn del_from_free_list(&mut self, z: usize, pfn: u64, order: usize, mt: MigrateType) {
        self.set_free(pfn, order, false);
        let zone = &mut self.zones[z];
        zone.nr_free[order][mt as usize] -= 1;
        zone.free_pages -= 1 << order;
        // Keep stale entries bounded.
        let list = &mut zone.lists[order][mt as usize];
        if list.len() as u64 > 2 * zone.nr_free[order][mt as usize] + 4096 {
            let (bits, pb) = (&self.bits[order], &self.pageblock);
            list.retain(|&p| {
                bit_test(bits, u64::from(p) >> order)
                    && MigrateType::from_code(pb[(p >> PAGEBLOCK_ORDER) as usize]) == mt
            });
        }
    }

    /// The first block of the (order, type) list, without taking it
    /// (`get_page_from_free_area`): listed blocks (LIFO), then virgin ones in address order.
    fn peek(&mut self, z: usize, order: usize, mt: MigrateType) -> Option<u64> {
        loop {
            let top = self.zones[z].lists[order][mt as usize].last().copied();
            match top {
                Some(p) => {
                    let p = u64::from(p);
                    if self.is_free(p, order) && self.pageblock_mt(p) == mt {
                        return Some(p);
                    }
                    self.zones[z].lists[order][mt as usize].pop();
                }
                None => {
                    let zone = &self.zones[z];
                    return (order == NR_ORDERS - 1
                        && mt == MigrateType::Movable
                        && zone.virgin < zone.end)
                        .then_some(zone.virgin);
                }
            }
        }
    }

    /// Takes a block found by `peek` off its list.
    fn take(&mut self, z: usize, pfn: u64, order: usize, mt: MigrateType) {
        let zone = &mut self.zones[z];
        if pfn >= zone.virgin {
            debug_assert_eq!(pfn, zone.virgin);
            zone.virgin += 1 << MAX_PAGE_ORDER;
            zone.free_pages -= 1 << MAX_PAGE_ORDER;
        } else {
            self.del_from_free_list(z, pfn, order, mt);
        }
    }

    /// `expand`: hands the upper halves back to the `mt` lists, largest first.
    fn expand(&mut self, z: usize, pfn: u64, low: usize, high: usize, mt: MigrateType) {
        let mut cur = high;
        while cur > low {
            cur -= 1;
            self.add_to_free_list(z, pfn + (1 << cur), cur, mt);
        }
    }

    /// `__rmqueue_smallest`.
    fn rmqueue_smallest(&mut self, z: usize, order: usize, mt: MigrateType) -> Option<u64> {
        for o in order..NR_ORDERS {
            if self.zones[z].count(o, mt) == 0 {
                continue;
            }
            if let Some(p) = self.peek(z, o, mt) {
                self.take(z, p, o, mt);
                self.expand(z, p, order, o, mt);
                return Some(p);
            }
        }
        None
    }

    /// `find_suitable_fallback`: `Err(true)` when claiming is not tried at this order
    /// (`-2`), `Err(false)` when no fallback list has a block (`-1`).
    fn find_suitable_fallback(
        &self,
        z: usize,
        order: usize,
        mt: MigrateType,
        claimable: bool,
    ) -> Result<MigrateType, bool> {
        if claimable && !should_try_claim_block(order, mt) {
            return Err(true);
        }
        mt.fallbacks()
            .iter()
            .copied()
            .find(|&fb| self.zones[z].count(order, fb) > 0)
            .ok_or(false)
    }

    /// Counts free pages and pages in movable use in the pageblock at `start`.
    fn pageblock_usage(&self, start: u64) -> (u64, u64) {
        let (mut free, mut movable) = (0, 0);
        let mut p = start;
        while p < start + PAGEBLOCK_NR {
            if let Some((h, o)) = self.free_block_containing(p) {
                let next = (h + (1 << o)).min(start + PAGEBLOCK_NR);
                free += next - p;
                p = next;
                continue;
            }
            if self.is_movable_used(p) {
                movable += 1;
            }
            p += 1;
        }
        (free, movable)
    }

    /// `__move_freepages_block` + `set_pageblock_migratetype`: the pageblock at `start`
    /// becomes `to`, and its free blocks move to `to`'s lists.
    fn move_freepages_block(&mut self, start: u64, to: MigrateType) {
        let z = self.zone_of(start);
        let from = self.pageblock_mt(start);
        if from == to {
            return;
        }
        let mut blocks = vec![];
        let mut p = start;
        while p < start + PAGEBLOCK_NR {
            match self.free_order_at(p) {
                Some(o) => {
                    blocks.push((p, usize::from(o)));
                    p += 1 << o;
                }
                None => p += 1,
            }
        }
        for &(p, o) in &blocks {
            self.del_from_free_list(z, p, o, from);
        }
        self.set_pageblock_mt(start, PAGEBLOCK_ORDER as usize, to);
        for (p, o) in blocks {
            self.add_to_free_list(z, p, o, to);
        }
    }

    /// `try_to_claim_block`.
    fn try_to_claim_block(
        &mut self,
        z: usize,
        pfn: u64,
        current: usize,
        order: usize,
        start: MigrateType,
        block: MigrateType,
    ) -> Option<u64> {
        if current >= PAGEBLOCK_ORDER as usize {
            self.take(z, pfn, current, block);
            self.set_pageblock_mt(pfn, current, start);
            self.expand(z, pfn, order, current, start);
            return Some(pfn);
        }
        let start_pfn = pfn & !(PAGEBLOCK_NR - 1);
        let (free, movable) = self.pageblock_usage(start_pfn);
        let alike = if start == MigrateType::Movable {
            movable
        } else if block == MigrateType::Movable {
            PAGEBLOCK_NR - (free + movable)
        } else {
            0
        };
        if free + alike >= PAGEBLOCK_NR / 2 {
            self.move_freepages_block(start_pfn, start);
            return self.rmqueue_smallest(z, order, start);
        }
        None
    }

    /// `__rmqueue_claim`.
    fn rmqueue_claim(
        &mut self,
        z: usize,
        order: usize,
        mt: MigrateType,
        nofrag: bool,
    ) -> Option<u64> {
        let min_order = if nofrag && order < PAGEBLOCK_ORDER as usize {
            PAGEBLOCK_ORDER as usize
        } else {
            order
        };
        for cur in (min_order..NR_ORDERS).rev() {
            let fb = match self.find_suitable_fallback(z, cur, mt, true) {
                Ok(fb) => fb,
                Err(false) => continue,
                Err(true) => break,
            };
            let Some(p) = self.peek(z, cur, fb) else {
                continue;
            };
            if let Some(p) = self.try_to_claim_block(z, p, cur, order, mt, fb) {
                return Some(p);
            }
        }
        None
    }

    /// `__rmqueue_steal`: the smallest foreign block, its pageblock keeping its type.
    fn rmqueue_steal(&mut self, z: usize, order: usize, mt: MigrateType) -> Option<u64> {
        for cur in order..NR_ORDERS {
            let Ok(fb) = self.find_suitable_fallback(z, cur, mt, false) else {
                continue;
            };
            let p = self.peek(z, cur, fb)?;
            self.take(z, p, cur, fb);
            self.expand(z, p, order, cur, fb);
            return Some(p);
        }
        None
    }

    /// `__rmqueue`.
    fn rmqueue(&mut self, z: usize, order: usize, mt: MigrateType, nofrag: bool) -> Option<u64> {
        if let Some(p) = self.rmqueue_smallest(z, order, mt) {
            return Some(p);
        }
        if let Some(p) = self.rmqueue_claim(z, order, mt, nofrag) {
            return Some(p);
        }
        if nofrag {
            return None;
        }
        self.rmqueue_steal(z, order, mt)
    }

    /// `zone_watermark_ok` for an allocation that could also use a higher zone.
    pub(crate) fn zone_watermark_ok(&self, z: usize, order: u8, mark: u64) -> bool {
        let zone = &self.zones[z];
        let free = crate::util::to_i64(zone.free_pages) - ((1i64 << order) - 1);
        if free <= crate::util::to_i64(mark + zone.lowmem_reserve) {
            return false;
        }
        order == 0 || zone.has_block_at_least(usize::from(order))
    }

    /// `get_page_from_freelist`: the zonelist from Normal down, each zone above its
    /// watermark; with `nofragment`, a first pass without stealing.
    pub(crate) fn get_page_from_freelist(
        &mut self,
        order: u8,
        mt: MigrateType,
        flags: AllocFlags,
    ) -> Option<Pfn> {
        // alloc_flags_nofragment: only when Normal is preferred and DMA32 exists.
        let mut nofrag = flags.nofragment && self.zones.len() > 1;
        loop {
            for z in (0..self.zones.len()).rev() {
                let mark = self.zones[z].wmark[flags.wmark as usize];
                if !self.zone_watermark_ok(z, order, mark) {
                    continue;
                }
                if let Some(p) = self.rmqueue(z, usize::from(order), mt, nofrag) {
                    if mt == MigrateType::Movable {
                        self.mark_movable(p, usize::from(order), true);
                    }
                    return Some(Pfn(p));
                }
            }
            if !nofrag {
                return None;
            }
            nofrag = false;
        }
    }

    /// `get_page_from_freelist` for a run of up to `out.len()` order-0 `mt` pages, handed
    /// out exactly as that many single calls with the fast path's flags (low watermark,
    /// `ALLOC_NOFRAGMENT`) would, in the same order; stops before the first page such a call
    /// would not take by `__rmqueue_smallest` from the first zone above its watermark (it
    /// would claim, steal or fail into the slow path: the caller's page-at-a-time path
    /// takes it from there). Returns how many pages it wrote to `out`.
    ///
    /// A block of order k all of whose 2^k pages go to the run, in a zone that stays above
    /// its watermark for each of them, is taken whole: as every list below k is empty (k is
    /// the smallest order with a block), single calls would split it and hand out its pages
    /// in address order, the lists below k ending empty again, as they were.
    pub(crate) fn alloc_order0_run(&mut self, mt: MigrateType, out: &mut [Pfn]) -> usize {
        let mut done = 0;
        while done < out.len() {
            let low = |b: &Self, z: usize| b.zones[z].wmark[Wmark::Low as usize];
            let Some(z) = (0..self.zones.len())
                .rev()
                .find(|&z| self.zone_watermark_ok(z, 0, low(self, z)))
            else {
                break;
            };
            let Some(o) = (0..NR_ORDERS).find(|&o| self.zones[z].count(o, mt) > 0) else {
                break;
            };
            let nr = 1usize << o;
            let zone = &self.zones[z];
            // The watermark check of the block's last page: `nr - 1` pages fewer are free.
            let free_at_last =
                crate::util::to_i64(zone.free_pages) - crate::util::to_i64(nr as u64 - 1);
            let whole = nr <= out.len() - done
                && free_at_last > crate::util::to_i64(low(self, z) + zone.lowmem_reserve);
            let (p, order) = if whole {
                let p = self.peek(z, o, mt).expect("a counted block is listed");
                self.take(z, p, o, mt);
                (p, o)
            } else {
                (self.rmqueue_smallest(z, 0, mt).expect("a counted block"), 0)
            };
            if mt == MigrateType::Movable {
                self.mark_movable(p, order, true);
            }
            let n = 1usize << order;
            for (i, slot) in out[done..done + n].iter_mut().enumerate() {
                *slot = Pfn(p + i as u64);
            }
            done += n;
        }
        done
    }

    /// Frees a block (`__free_one_page`), merging with free buddies; its list is its
    /// pageblock's type.
    #[inline]
    pub(crate) fn free(&mut self, pfn: Pfn, order: u8) {
        let mut pfn = pfn.0;
        let mut order = order as usize;
        let z = self.zone_of(pfn);
        debug_assert!(pfn % (1 << order) == 0 && pfn < self.zones[z].virgin);
        if self.is_movable_used(pfn) {
            self.mark_movable(pfn, order, false);
        }
        let mt = self.pageblock_mt(pfn);
        while order < MAX_PAGE_ORDER as usize {
            let buddy = pfn ^ (1 << order);
            if !self.is_free(buddy, order) {
                break;
            }
            let mut buddy_mt = mt;
            if order >= PAGEBLOCK_ORDER as usize {
                buddy_mt = self.pageblock_mt(buddy);
                if buddy_mt != mt && (!mt.mergeable() || !buddy_mt.mergeable()) {
                    break;
                }
            }
            self.del_from_free_list(z, buddy, order, buddy_mt);
            if buddy_mt != mt {
                self.set_pageblock_mt(buddy, order, mt);
            }
            pfn &= !(1 << order);
            order += 1;
        }
        self.add_to_free_list(z, pfn, order, mt);
    }

    /// Takes a specific free block off its list (`__isolate_free_page`, for compaction's
    /// free scanner); a block of at least half a pageblock makes its pageblocks movable.
    pub(crate) fn isolate_free_block(&mut self, pfn: u64, order: u8) {
        let z = self.zone_of(pfn);
        let o = usize::from(order);
        let mt = self.pageblock_mt(pfn);
        if pfn >= self.zones[z].virgin {
            // The free scanner skips blocks of pageblock order and up, so it never gets
            // here; if a caller did, the virgin blocks below this one go to the lists first.
            while self.zones[z].virgin < pfn {
                let v = self.zones[z].virgin;
                self.zones[z].virgin += 1 << MAX_PAGE_ORDER;
                self.zones[z].free_pages -= 1 << MAX_PAGE_ORDER;
                self.add_to_free_list(z, v, NR_ORDERS - 1, MigrateType::Movable);
            }
            self.take(z, pfn, o, mt);
        } else {
            self.del_from_free_list(z, pfn, o, mt);
        }
        if order >= PAGEBLOCK_ORDER - 1 {
            let mut p = pfn & !(PAGEBLOCK_NR - 1);
            while p < pfn + (1 << order) {
                if self.pageblock_mt(p).mergeable() {
                    self.set_pageblock_mt(p, PAGEBLOCK_ORDER as usize, MigrateType::Movable);
                }
                p += PAGEBLOCK_NR;
            }
        }
    }

    /// Takes the `2^order` pages at `pfn` out of the free block that holds them, without
    /// touching the pageblock's type (what `__rmqueue_steal` leaves behind: a pageblock of
    /// one type holding a page of another). False if they are not all free.
    pub(crate) fn take_at(&mut self, pfn: u64, order: u8) -> bool {
        let Some((mut head, o)) = self.free_block_containing(pfn) else {
            return false;
        };
        if o < order {
            return false;
        }
        let z = self.zone_of(pfn);
        let mt = self.pageblock_mt(head);
        if head >= self.zones[z].virgin {
            while self.zones[z].virgin < head {
                let v = self.zones[z].virgin;
                self.zones[z].virgin += 1 << MAX_PAGE_ORDER;
                self.zones[z].free_pages -= 1 << MAX_PAGE_ORDER;
                self.add_to_free_list(z, v, NR_ORDERS - 1, MigrateType::Movable);
            }
            self.take(z, head, usize::from(o), mt);
        } else {
            self.del_from_free_list(z, head, usize::from(o), mt);
        }
        let mut cur = usize::from(o);
        while cur > usize::from(order) {
            cur -= 1;
            let half = head + (1 << cur);
            let keep_mt = self.pageblock_mt(if pfn >= half { head } else { half });
            if pfn >= half {
                self.add_to_free_list(z, head, cur, keep_mt);
                head = half;
            } else {
                self.add_to_free_list(z, half, cur, keep_mt);
            }
        }
        true
    }

    /// `alloc_contig_pages` for a gigantic hugetlb page (`alloc_gigantic_folio`,
    /// `GFP_HIGHUSER`): the first `2^order`-aligned range, zone by zone from the highest
    /// (the zonelist's order), that lies in one zone and whose pages are all free; its
    /// pageblocks are taken off the free lists (`alloc_contig_range`). Deviation: the kernel
    /// also migrates movable pages out of a candidate range; the model takes only ranges
    /// that are already free (no pins are modelled, so this is where they would matter).
    pub(crate) fn alloc_contig_pages(&mut self, order: u8) -> Option<Pfn> {
        let nr = 1u64 << order;
        for z in (0..self.zones.len()).rev() {
            let (zs, ze) = (self.zones[z].start, self.zones[z].end);
            let mut pfn = zs.div_ceil(nr) * nr;
            while pfn + nr <= ze {
                // pfn_range_valid_contig + the isolation test: every pageblock free.
                let free = (pfn..pfn + nr).step_by(1usize << PAGEBLOCK_ORDER).all(|p| {
                    self.free_block_containing(p)
                        .is_some_and(|(_, o)| o >= PAGEBLOCK_ORDER)
                });
                if free {
                    for p in (pfn..pfn + nr).step_by(1usize << PAGEBLOCK_ORDER) {
                        let took = self.take_at(p, PAGEBLOCK_ORDER);
                        debug_assert!(took);
                    }
                    return Some(Pfn(pfn));
                }
                pfn += nr;
            }
        }
        None
    }

    /// `free_contig_range`: a gigantic page goes back as `MAX_PAGE_ORDER` blocks.
    pub(crate) fn free_contig_range(&mut self, pfn: Pfn, order: u8) {
        for p in (pfn.0..pfn.0 + (1u64 << order)).step_by(1usize << MAX_PAGE_ORDER) {
            self.free(Pfn(p), MAX_PAGE_ORDER);
        }
    }

    /// Marks an isolated free block as used by a movable folio (compaction's
    /// `compaction_alloc` hands it to migration).
    pub(crate) fn use_isolated(&mut self, pfn: u64, order: u8) {
        self.mark_movable(pfn, usize::from(order), true);
    }

    /// Iterates the free blocks `(pfn, order)` (for invariant checks and observation).
    pub(crate) fn free_blocks(&self) -> impl Iterator<Item = (u64, u8)> + '_ {
        self.zones.iter().enumerate().flat_map(move |(zi, zone)| {
            let listed = (0..NR_ORDERS).flat_map(move |o| {
                let mut seen: Vec<u32> = MigrateType::ALL
                    .iter()
                    .flat_map(|&mt| {
                        zone.lists[o][mt as usize]
                            .iter()
                            .copied()
                            .filter(move |&p| {
                                self.is_free(u64::from(p), o)
                                    && self.pageblock_mt(u64::from(p)) == mt
                            })
                    })
                    .collect();
                seen.sort_unstable();
                seen.dedup();
                let _ = zi;
                seen.into_iter().map(move |p| (u64::from(p), order_u8(o)))
            });
            let virgin = (zone.virgin..zone.end)
                .step_by(1 << MAX_PAGE_ORDER)
                .map(|p| (p, MAX_PAGE_ORDER));
            listed.chain(virgin)
        })
    }

    /// Checks the allocator's own invariants; returns the free page count.
    pub(crate) fn check(&self) -> Result<u64, String> {
        let mut pages = 0u64;
        let mut counts = vec![[[0u64; NR_MT]; NR_ORDERS]; self.zones.len()];
        for (pfn, o) in self.free_blocks() {
            let z = self.zone_of(pfn);
            let zone = &self.zones[z];
            if pfn % (1 << o) != 0 {
                return Err(format!("free block {pfn:#x} of order {o} misaligned"));
            }
            if pfn + (1 << o) > zone.end {
                return Err(format!("free block {pfn:#x} of order {o} crosses its zone"));
            }
            let mt = self.pageblock_mt(pfn);
            if o >= PAGEBLOCK_ORDER && self.pageblock_mt(pfn + (1 << o) - 1) != mt {
                return Err(format!(
                    "free block {pfn:#x} of order {o} spans pageblock types"
                ));
            }
            if (o as usize) < NR_ORDERS - 1 && pfn < zone.virgin {
                let buddy = pfn ^ (1 << o);
                if self.is_free(buddy, o as usize)
                    && (o < PAGEBLOCK_ORDER || self.pageblock_mt(buddy) == mt)
                {
                    return Err(format!(
                        "free block {pfn:#x} and its buddy {buddy:#x} both free at order {o}"
                    ));
                }
            }
            if pfn < zone.virgin && self.any_movable(pfn, 1 << o) {
                return Err(format!("free block {pfn:#x} of order {o} marked in use"));
            }
            if pfn < zone.virgin {
                counts[z][o as usize][mt as usize] += 1;
            }
            pages += 1 << o;
        }
        for (z, zone) in self.zones.iter().enumerate() {
            if counts[z] != zone.nr_free {
                return Err(format!(
                    "{}: nr_free {:?} != listed {:?}",
                    zone.name, zone.nr_free, counts[z]
                ));
            }
            let listed: u64 = (0..NR_ORDERS)
                .map(|o| {
                    MigrateType::ALL
                        .iter()
                        .map(|&mt| zone.count(o, mt) << o)
                        .sum::<u64>()
                })
                .sum();
            if listed != zone.free_pages {
                return Err(format!("{}: free page count mismatch", zone.name));
            }
        }
        Ok(pages)
    }

    /// Pageblocks of each type in zone `z` (`/proc/pagetypeinfo`, "Number of blocks type").
    pub(crate) fn pageblock_counts(&self, z: usize) -> [u64; NR_MT] {
        let zone = &self.zones[z];
        let mut n = [0u64; NR_MT];
        for &c in &self.pageblock
            [(zone.start >> PAGEBLOCK_ORDER) as usize..(zone.end >> PAGEBLOCK_ORDER) as usize]
        {
            n[MigrateType::from_code(c) as usize] += 1;
        }
        n
    }

    /// Pageblocks of zone `z` that hold pages of more than one mobility: a movable
    /// pageblock with unmovable pages in it, or a non-movable one with movable pages
    /// ("pageblock pollution", a `sim_` figure).
    pub(crate) fn mixed_pageblocks(&self, z: usize) -> u64 {
        let zone = &self.zones[z];
        let mut n = 0;
        let mut start = zone.start;
        while start < zone.virgin.min(zone.end) {
            let (free, movable) = self.pageblock_usage(start);
            let unmovable = PAGEBLOCK_NR - free - movable;
            let mixed = match self.pageblock_mt(start) {
                MigrateType::Movable => unmovable > 0,
                _ => movable > 0,
            };
            n += u64::from(mixed);
            start += PAGEBLOCK_NR;
        }
        n
    }
}

impl Zone {
    fn new(name: &'static str, start: u64, end: u64) -> Zone {
        Zone {
            name,
            start,
            end,
            virgin: start,
            lists: Default::default(),
            nr_free: [[0; NR_MT]; NR_ORDERS],
            free_pages: end - start,
            wmark: [0; 3],
            lowmem_reserve: 0,
            defer: CompactDefer::default(),
            blockskip_flush: false,
        }
    }
}

/// `calculate_min_free_kbytes` (`int_sqrt(lowmem_kbytes * 16)` within 128 KiB..256 MiB),
/// raised by khugepaged's `set_recommended_min_free_kbytes` while PMD THP is enabled: two
/// free pageblocks per zone plus `MIGRATE_PCPTYPES²` more, at most 5 % of memory.
fn calculate_min_free_kbytes(total_pages: u64, nr_zones: u64, thp: bool) -> u64 {
    let lowmem_kb = total_pages * 4;
    let mut min = (lowmem_kb * 16).isqrt().clamp(128, 262_144);
    if thp {
        let pcp = PCPTYPES as u64;
        let rec = (PAGEBLOCK_NR * nr_zones * 2 + PAGEBLOCK_NR * nr_zones * pcp * pcp)
            .min(total_pages / 20)
            * 4;
        min = min.max(rec);
    }
    min
}

/// `should_try_claim_block`.
fn should_try_claim_block(order: usize, mt: MigrateType) -> bool {
    order >= usize::from(PAGEBLOCK_ORDER) / 2
        || matches!(mt, MigrateType::Unmovable | MigrateType::Reclaimable)
}

/// An order index (below `NR_ORDERS`) as the `u8` orders are elsewhere.
fn order_u8(o: usize) -> u8 {
    u8::try_from(o).expect("order below NR_ORDERS")
}

#[inline]
fn bit_test(bits: &[u64], i: u64) -> bool {
    bits[(i / 64) as usize] & (1 << (i % 64)) != 0
}

#[inline]
fn bit_set(bits: &mut [u64], i: u64, on: bool) {
    let w = &mut bits[(i / 64) as usize];
    if on {
        *w |= 1 << (i % 64);
    } else {
        *w &= !(1 << (i % 64));
    }
}

// ---- the allocation API and slow path ---------------------------------------------------

/// What an allocation asks for (the GFP bits that change a decision here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Gfp {
    pub(crate) mt: MigrateType,
    /// `__GFP_DIRECT_RECLAIM`: may enter direct reclaim and direct compaction.
    pub(crate) direct: bool,
    /// `__GFP_KSWAPD_RECLAIM`: wakes kswapd (and through it kcompactd).
    pub(crate) kswapd: bool,
    /// `__GFP_NORETRY`.
    pub(crate) noretry: bool,
    /// A VMA allocation of PMD order through `alloc_pages_mpol`: a first attempt on the
    /// local node with `__GFP_THISNODE | __GFP_NORETRY`, then (only with direct reclaim)
    /// the full attempt.
    pub(crate) vma_pmd: bool,
}

impl Gfp {
    /// `GFP_KERNEL` (page tables: `GFP_PGTABLE_USER`), unmovable.
    pub(crate) const KERNEL: Gfp = Gfp {
        mt: MigrateType::Unmovable,
        direct: true,
        kswapd: true,
        noretry: false,
        vma_pmd: false,
    };
    /// `GFP_HIGHUSER_MOVABLE` (order-0 anonymous pages).
    pub(crate) const HIGHUSER_MOVABLE: Gfp = Gfp {
        mt: MigrateType::Movable,
        ..Gfp::KERNEL
    };
    /// `GFP_TRANSHUGE_LIGHT`: movable, no reclaim of any kind.
    pub(crate) const TRANSHUGE_LIGHT: Gfp = Gfp {
        mt: MigrateType::Movable,
        direct: false,
        kswapd: false,
        noretry: false,
        vma_pmd: false,
    };
    /// `GFP_TRANSHUGE`: light plus direct reclaim/compaction.
    pub(crate) const TRANSHUGE: Gfp = Gfp {
        direct: true,
        ..Gfp::TRANSHUGE_LIGHT
    };
}

/// What compaction of a zone (or of the zonelist) came to, ordered as `enum compact_result`
/// (`try_to_compact_pages` keeps the maximum).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum CompactResult {
    Skipped,
    Deferred,
    Continue,
    Complete,
    Contended,
    Success,
}

/// `enum compact_priority`: sync-full is the lowest value (most thorough).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum CompactPrio {
    SyncFull,
    SyncLight,
    Async,
}

impl Kernel {
    /// `alloc_pages_mpol` → `__alloc_pages`: the fast path, then `__alloc_pages_slowpath`.
    pub(crate) fn alloc_pages(&mut self, order: u8, gfp: Gfp) -> Option<Pfn> {
        if gfp.vma_pmd {
            let first = Gfp {
                noretry: true,
                vma_pmd: false,
                ..gfp
            };
            let p = self.alloc_pages_nodemask(order, first);
            if p.is_some() || !gfp.direct {
                return p;
            }
        }
        self.alloc_pages_nodemask(
            order,
            Gfp {
                vma_pmd: false,
                ..gfp
            },
        )
    }

    fn alloc_pages_nodemask(&mut self, order: u8, gfp: Gfp) -> Option<Pfn> {
        let fast = AllocFlags {
            wmark: Wmark::Low,
            nofragment: true,
        };
        if let Some(p) = self.buddy.get_page_from_freelist(order, gfp.mt, fast) {
            return Some(p);
        }
        self.alloc_pages_slowpath(order, gfp)
    }

    /// `__alloc_pages_slowpath` for the requests the model makes: costly orders compact
    /// first (async); `__GFP_NORETRY` gives up when that was skipped or deferred; there is
    /// nothing to reclaim in the model, so "reclaim" is one more freelist attempt, then a
    /// second compaction; nothing loops (THP orders are costly and never retry; order-0
    /// requests that fail here would OOM in the kernel).
    fn alloc_pages_slowpath(&mut self, order: u8, gfp: Gfp) -> Option<Pfn> {
        let slow = AllocFlags {
            wmark: Wmark::Min,
            nofragment: false,
        };
        let costly = order > COSTLY_ORDER;
        if gfp.kswapd {
            self.wake_all_kswapds(order);
        }
        if let Some(p) = self.buddy.get_page_from_freelist(order, gfp.mt, slow) {
            return Some(p);
        }
        let mut prio = CompactPrio::SyncLight;
        if gfp.direct && (costly || (order > 0 && gfp.mt != MigrateType::Movable)) {
            let (p, result) = self.alloc_pages_direct_compact(order, gfp.mt, CompactPrio::Async);
            if p.is_some() {
                return p;
            }
            if costly && gfp.noretry {
                if matches!(result, CompactResult::Skipped | CompactResult::Deferred) {
                    return None;
                }
                prio = CompactPrio::Async;
            }
        }
        if let Some(p) = self.buddy.get_page_from_freelist(order, gfp.mt, slow) {
            return Some(p);
        }
        if !gfp.direct {
            return None;
        }
        // __alloc_pages_direct_reclaim: nothing is reclaimable in the model.
        self.vmstat.count(if gfp.mt == MigrateType::Movable {
            VmItem::AllocstallMovable
        } else {
            VmItem::AllocstallNormal
        });
        if let Some(p) = self.buddy.get_page_from_freelist(order, gfp.mt, slow) {
            return Some(p);
        }
        let (p, _) = self.alloc_pages_direct_compact(order, gfp.mt, prio);
        p
    }

    /// `__alloc_pages_direct_compact`: `compact_stall` when compaction ran in some zone
    /// (deferred counts as ran), then `compact_success` or `compact_fail`.
    fn alloc_pages_direct_compact(
        &mut self,
        order: u8,
        mt: MigrateType,
        prio: CompactPrio,
    ) -> (Option<Pfn>, CompactResult) {
        if order == 0 {
            return (None, CompactResult::Skipped);
        }
        let result = self.try_to_compact_pages(order, mt, prio);
        if result == CompactResult::Skipped {
            return (None, result);
        }
        self.vmstat.count(VmItem::CompactStall);
        let slow = AllocFlags {
            wmark: Wmark::Min,
            nofragment: false,
        };
        match self.buddy.get_page_from_freelist(order, mt, slow) {
            Some(p) => {
                let z = self.buddy.zone_of(p.0);
                self.buddy.zones[z].blockskip_flush = false;
                compaction_defer_reset(&mut self.buddy.zones[z].defer, order, true);
                self.vmstat.count(VmItem::CompactSuccess);
                (Some(p), result)
            }
            None => {
                self.vmstat.count(VmItem::CompactFail);
                (None, result)
            }
        }
    }
}

/// `compaction_defer_reset`.
pub(crate) fn compaction_defer_reset(d: &mut CompactDefer, order: u8, alloc_success: bool) {
    if alloc_success {
        d.considered = 0;
        d.defer_shift = 0;
    }
    if order >= d.order_failed {
        d.order_failed = order + 1;
    }
}

#[cfg(test)]
mod tests;
