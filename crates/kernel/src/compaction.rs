//! Memory compaction, after `mm/compaction.c` (Linux 6.18): `try_to_compact_pages` over the
//! zonelist with deferral (`compaction_deferred`, `defer_compaction`), `compact_zone` with a
//! migration scanner from the zone start (`isolate_migratepages_block`) and a free scanner
//! from the zone end (`isolate_freepages_block`), `compaction_alloc`, the finish test
//! (`__compact_finished`), `/proc/sys/vm/compact_memory` (`compact_nodes`), and kcompactd
//! (woken through kswapd by allocations with `__GFP_KSWAPD_RECLAIM`; proactive compaction
//! every 500 ms by the node's fragmentation score against `compaction_proactiveness`).
//!
//! Migration moves a folio's PFN: page tables hold folio ids, so nothing else changes.
//! Everything that is not a folio (page tables, the huge zero page, `kalloc` background) is
//! unmovable. Deviations: no cached scanner positions or pageblock skip bits (every run
//! scans the zone from both ends), no `fast_find_migrateblock` / `fast_isolate_freepages`,
//! no capture of the freed block, no pins.

use rustc_hash::FxHashMap;

use crate::ids::{FolioId, Pfn};
use crate::page_alloc::{
    compaction_defer_reset, CompactDefer, CompactPrio, CompactResult, MigrateType, Wmark,
    NR_ORDERS, PAGEBLOCK_NR, PAGEBLOCK_ORDER,
};
use crate::vmstat::VmItem;
use crate::Kernel;

/// `COMPACT_MAX_DEFER_SHIFT`.
const COMPACT_MAX_DEFER_SHIFT: u32 = 6;
/// `HPAGE_FRAG_CHECK_INTERVAL_MSEC`: kcompactd's proactive-compaction period.
pub(crate) const KCOMPACTD_INTERVAL_MS: u64 = 500;

/// The compaction sysctls (`/proc/sys/vm/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactionTunables {
    /// `compaction_proactiveness` (0..=100, default 20).
    pub proactiveness: u32,
    /// `extfrag_threshold` (default 500): below it a costly allocation's failure is put
    /// down to lack of memory and compaction is skipped.
    pub extfrag_threshold: i64,
}

impl Default for CompactionTunables {
    fn default() -> Self {
        CompactionTunables {
            proactiveness: 20,
            extfrag_threshold: 500,
        }
    }
}

/// kcompactd's state (`kcompactd_max_order`, its timer).
#[derive(Clone, Debug, Default)]
pub(crate) struct Kcompactd {
    /// Highest order a wakeup asked for; 0 = no work requested.
    pub(crate) max_order: u8,
    /// Next proactive check (simulated ms).
    pub(crate) next_ms: u64,
}

/// `struct compact_control`, the part the model needs.
struct CompactControl {
    zone: usize,
    /// `None` is order -1 (whole zone: compact_memory and proactive compaction).
    order: Option<u8>,
    mt: MigrateType,
    asynchronous: bool,
    direct: bool,
    proactive: bool,
    /// `ignore_skip_hint` (whole-node compaction).
    ignore_skip: bool,
    migrate_pfn: u64,
    free_pfn: u64,
    freepages: [Vec<u64>; NR_ORDERS],
    migrate_scanned: u64,
    free_scanned: u64,
}

/// `compaction_deferred`: true if this attempt is skipped.
fn compaction_deferred(d: &mut CompactDefer, order: u8) -> bool {
    if order < d.order_failed {
        return false;
    }
    let limit = 1u32 << d.defer_shift;
    d.considered += 1;
    if d.considered >= limit {
        d.considered = limit;
        return false;
    }
    true
}

/// `defer_compaction`.
fn defer_compaction(d: &mut CompactDefer, order: u8) {
    d.considered = 0;
    d.defer_shift = (d.defer_shift + 1).min(COMPACT_MAX_DEFER_SHIFT);
    if order < d.order_failed {
        d.order_failed = order;
    }
}

/// `skip_isolation_on_order`.
fn skip_isolation_on_order(order: u8, target: Option<u8>) -> bool {
    if target.is_some_and(|t| order >= t) {
        return true;
    }
    order >= PAGEBLOCK_ORDER
}

/// `fragmentation_score_wmark`.
fn fragmentation_score_wmark(proactiveness: u32, low: bool) -> u64 {
    let wmark_low = u64::from(100u32.saturating_sub(proactiveness).max(5));
    if low {
        wmark_low
    } else {
        (wmark_low + 10).min(100)
    }
}

impl Kernel {
    /// `try_to_compact_pages`: each zone of the zonelist (Normal first) unless deferred;
    /// stops at the first success.
    pub(crate) fn try_to_compact_pages(
        &mut self,
        order: u8,
        mt: MigrateType,
        prio: CompactPrio,
    ) -> CompactResult {
        let mut rc = CompactResult::Skipped;
        for z in (0..self.buddy.zones.len()).rev() {
            if prio > CompactPrio::SyncFull
                && compaction_deferred(&mut self.buddy.zones[z].defer, order)
            {
                rc = rc.max(CompactResult::Deferred);
                continue;
            }
            let status = self.compact_zone_order(z, order, mt, prio, true);
            rc = rc.max(status);
            if status == CompactResult::Success {
                compaction_defer_reset(&mut self.buddy.zones[z].defer, order, false);
                break;
            }
            if prio != CompactPrio::Async && status == CompactResult::Complete {
                defer_compaction(&mut self.buddy.zones[z].defer, order);
            }
        }
        rc
    }

    /// `compaction_suit_allocation_order`: `Success` if the allocation would succeed now,
    /// `Skipped` if the zone lacks the free pages to compact into (or the failure is for
    /// lack of memory, by the fragmentation index), else `Continue`.
    fn compaction_suit_allocation_order(&self, z: usize, order: u8) -> CompactResult {
        let zone = &self.buddy.zones[z];
        if self
            .buddy
            .zone_watermark_ok(z, order, zone.wmark[Wmark::Min as usize])
        {
            return CompactResult::Success;
        }
        // __compaction_suitable: low (costly) or min watermark plus compact_gap, at order 0.
        let mark = if order > crate::page_alloc::COSTLY_ORDER {
            zone.wmark[Wmark::Low as usize]
        } else {
            zone.wmark[Wmark::Min as usize]
        } + (2u64 << order);
        if !self.buddy.zone_watermark_ok(z, 0, mark) {
            return CompactResult::Skipped;
        }
        if order > crate::page_alloc::COSTLY_ORDER {
            let fragindex = zone.fragmentation_index(order);
            if (0..=self.compaction.extfrag_threshold).contains(&fragindex) {
                return CompactResult::Skipped;
            }
        }
        CompactResult::Continue
    }

    fn compact_zone_order(
        &mut self,
        z: usize,
        order: u8,
        mt: MigrateType,
        prio: CompactPrio,
        direct: bool,
    ) -> CompactResult {
        let mut cc = self.new_cc(z, Some(order), mt);
        cc.asynchronous = prio == CompactPrio::Async;
        cc.direct = direct;
        let r = self.compact_zone(&mut cc);
        self.count_scanned(&cc, !direct);
        r
    }

    /// The scanners' page counts (`COMPACTMIGRATE_SCANNED`, `COMPACTFREE_SCANNED`, and for
    /// kcompactd also the `compact_daemon_*` ones).
    fn count_scanned(&mut self, cc: &CompactControl, daemon: bool) {
        let (m, f) = (
            crate::util::to_i64(cc.migrate_scanned),
            crate::util::to_i64(cc.free_scanned),
        );
        self.vmstat.add(VmItem::CompactMigrateScanned, m);
        self.vmstat.add(VmItem::CompactFreeScanned, f);
        if daemon {
            self.vmstat.add(VmItem::CompactDaemonMigrateScanned, m);
            self.vmstat.add(VmItem::CompactDaemonFreeScanned, f);
        }
    }

    fn new_cc(&self, z: usize, order: Option<u8>, mt: MigrateType) -> CompactControl {
        let zone = &self.buddy.zones[z];
        CompactControl {
            zone: z,
            order,
            mt,
            asynchronous: false,
            direct: false,
            proactive: false,
            ignore_skip: order.is_none(),
            migrate_pfn: zone.start,
            free_pfn: (zone.end - 1) & !(PAGEBLOCK_NR - 1),
            freepages: Default::default(),
            migrate_scanned: 0,
            free_scanned: 0,
        }
    }

    /// `compact_zone`.
    fn compact_zone(&mut self, cc: &mut CompactControl) -> CompactResult {
        if let Some(order) = cc.order {
            let r = self.compaction_suit_allocation_order(cc.zone, order);
            if r != CompactResult::Continue {
                return r;
            }
            // compaction_restarting: after the longest deferral, start with fresh hints.
            let d = self.buddy.zones[cc.zone].defer;
            if order >= d.order_failed
                && d.defer_shift == COMPACT_MAX_DEFER_SHIFT
                && d.considered >= 1 << COMPACT_MAX_DEFER_SHIFT
            {
                self.buddy.reset_isolation_suitable(cc.zone);
            }
        }
        // Folio heads by PFN in this zone, built once per run (the kernel reads struct page).
        let zone = &self.buddy.zones[cc.zone];
        let (zs, ze) = (zone.start, zone.end);
        let heads: FxHashMap<u32, FolioId> = self
            .folios
            .iter_live()
            .filter_map(|id| {
                let p = self.folios.get(id).pfn().0;
                (zs..ze).contains(&p).then(|| (Pfn(p).to_u32(), id))
            })
            .collect();
        let ret = loop {
            let r = self.compact_finished(cc);
            if r != CompactResult::Continue {
                break r;
            }
            let block = cc.migrate_pfn;
            cc.migrate_pfn += PAGEBLOCK_NR;
            let list = self.isolate_migratepages_block(cc, block, &heads);
            if list.is_empty() {
                continue;
            }
            if !self.migrate_pages(cc, &list) {
                break if Self::scanners_met(cc) {
                    CompactResult::Complete
                } else {
                    CompactResult::Contended
                };
            }
        };
        // release_free_list: isolated free pages not used go back to the buddy.
        for o in 0..NR_ORDERS {
            for p in std::mem::take(&mut cc.freepages[o]) {
                self.buddy.free(Pfn(p), u8::try_from(o).expect("order"));
            }
        }
        ret
    }

    fn scanners_met(cc: &CompactControl) -> bool {
        (cc.free_pfn >> PAGEBLOCK_ORDER) <= (cc.migrate_pfn >> PAGEBLOCK_ORDER)
    }

    /// `__compact_finished`, checked at each pageblock boundary of the migration scanner.
    fn compact_finished(&mut self, cc: &CompactControl) -> CompactResult {
        if Self::scanners_met(cc) {
            if cc.direct {
                self.buddy.zones[cc.zone].blockskip_flush = true;
            }
            return CompactResult::Complete;
        }
        let zone = &self.buddy.zones[cc.zone];
        let Some(order) = cc.order else {
            if cc.proactive {
                let wmark_low = fragmentation_score_wmark(self.compaction.proactiveness, true);
                return if zone.extfrag_for_order(PAGEBLOCK_ORDER) > wmark_low {
                    CompactResult::Continue
                } else {
                    CompactResult::Success
                };
            }
            return CompactResult::Continue;
        };
        for o in usize::from(order)..NR_ORDERS {
            if zone.count(o, cc.mt) > 0 {
                return CompactResult::Success;
            }
            if self.buddy.claimable_fallback(cc.zone, o, cc.mt) {
                return CompactResult::Success;
            }
        }
        CompactResult::Continue
    }

    /// `isolate_migratepages_block` for one pageblock: the movable folios it can take. Async
    /// direct compaction gives up on a target-order block at the first page it cannot take
    /// (`skip_on_failure`) and only scans pageblocks of the request's type.
    fn isolate_migratepages_block(
        &mut self,
        cc: &mut CompactControl,
        block: u64,
        heads: &FxHashMap<u32, FolioId>,
    ) -> Vec<FolioId> {
        if !cc.ignore_skip && self.buddy.pageblock_skip(block) {
            return vec![];
        }
        if cc.asynchronous && cc.direct {
            let bmt = self.buddy.pageblock_mt(block);
            let ok = if cc.mt == MigrateType::Movable {
                bmt == MigrateType::Movable
            } else {
                bmt == cc.mt
            };
            if !ok {
                return vec![];
            }
        }
        let skip_on_failure = cc.asynchronous && cc.direct;
        let skip_unit = 1u64 << cc.order.unwrap_or(PAGEBLOCK_ORDER).min(PAGEBLOCK_ORDER);
        let mut list = vec![];
        let mut isolated = 0u64;
        let end = block + PAGEBLOCK_NR;
        let mut p = block;
        while p < end {
            if let Some((head, o)) = self.buddy.free_block_containing(p) {
                let next = (head + (1 << o)).min(end);
                cc.migrate_scanned += next - p;
                p = next;
                continue;
            }
            let mut failed = true;
            let mut step = 1;
            if self.buddy.is_movable_used(p) {
                if let Some(&id) = heads.get(&Pfn(p).to_u32()) {
                    let order = self.folios.get(id).order;
                    step = 1u64 << order;
                    if !skip_isolation_on_order(order, cc.order) {
                        list.push(id);
                        isolated += step;
                        failed = false;
                    }
                }
            }
            cc.migrate_scanned += step;
            p += step;
            if failed && skip_on_failure {
                list.clear();
                isolated = 0;
                let next = (p + skip_unit - 1) & !(skip_unit - 1);
                cc.migrate_scanned += next.min(end) - p;
                p = next;
            }
        }
        if list.is_empty() && !cc.ignore_skip {
            self.buddy.set_pageblock_skip(block);
        }
        self.vmstat
            .add(VmItem::CompactIsolated, crate::util::to_i64(isolated));
        list
    }

    /// `isolate_freepages`: pageblocks from `free_pfn` down, above the migration scanner's
    /// block, until the isolated free pages cover `want` pages.
    fn isolate_freepages(&mut self, cc: &mut CompactControl, want: u64) {
        let low = (cc.migrate_pfn + PAGEBLOCK_NR - 1) & !(PAGEBLOCK_NR - 1);
        let target = cc.order.unwrap_or(PAGEBLOCK_ORDER);
        let min = self.buddy.zones[cc.zone].wmark[Wmark::Min as usize];
        let mut have: u64 = (0..NR_ORDERS)
            .map(|o| (cc.freepages[o].len() as u64) << o)
            .sum();
        let mut block = cc.free_pfn;
        let mut isolated = 0u64;
        while block >= low && block + PAGEBLOCK_NR <= self.buddy.zones[cc.zone].end {
            // suitable_migration_target: not a free block of the target order, and movable.
            let big_free = self.buddy.free_order_at(block).is_some_and(|o| o >= target);
            let hinted = !cc.ignore_skip && self.buddy.pageblock_skip(block);
            if !hinted && !big_free && self.buddy.pageblock_mt(block) == MigrateType::Movable {
                let mut p = block;
                while p < block + PAGEBLOCK_NR {
                    match self.buddy.free_order_at(p) {
                        Some(o) => {
                            // __isolate_free_page keeps the zone above its min watermark.
                            if self.buddy.zones[cc.zone].free_pages() < min + (1 << o) {
                                break;
                            }
                            self.buddy.isolate_free_block(p, o);
                            cc.freepages[usize::from(o)].push(p);
                            cc.free_scanned += 1 << o;
                            isolated += 1 << o;
                            have += 1 << o;
                            p += 1 << o;
                        }
                        None => {
                            cc.free_scanned += 1;
                            p += 1;
                        }
                    }
                }
                if p >= block + PAGEBLOCK_NR && !cc.ignore_skip {
                    self.buddy.set_pageblock_skip(block);
                }
            }
            if block < PAGEBLOCK_NR {
                cc.free_pfn = 0;
                break;
            }
            block -= PAGEBLOCK_NR;
            cc.free_pfn = block;
            if have >= want {
                break;
            }
        }
        self.vmstat
            .add(VmItem::CompactIsolated, crate::util::to_i64(isolated));
    }

    /// `compaction_alloc`: the smallest isolated free block that fits, split down.
    fn compaction_alloc(cc: &mut CompactControl, order: u8) -> Option<u64> {
        let o = (usize::from(order)..NR_ORDERS).find(|&o| !cc.freepages[o].is_empty())?;
        let p = cc.freepages[o].pop()?;
        let mut cur = o;
        while cur > usize::from(order) {
            cur -= 1;
            cc.freepages[cur].push(p + (1 << cur));
        }
        Some(p)
    }

    /// `migrate_pages` for the isolated folios: each moves to a free block from the free
    /// scanner and its old block is freed. False if free pages ran out (`-ENOMEM`).
    fn migrate_pages(&mut self, cc: &mut CompactControl, list: &[FolioId]) -> bool {
        let want: u64 = list
            .iter()
            .map(|&id| u64::from(self.folios.get(id).nr_pages()))
            .sum();
        for &id in list {
            let order = self.folios.get(id).order;
            let dst = match Self::compaction_alloc(cc, order) {
                Some(p) => p,
                None => {
                    self.isolate_freepages(cc, want);
                    match Self::compaction_alloc(cc, order) {
                        Some(p) => p,
                        None => return false,
                    }
                }
            };
            self.buddy.use_isolated(dst, order);
            let old = self.folios.get(id).pfn();
            self.folios.get_mut(id).set_pfn(Pfn(dst));
            self.buddy.free(old, order);
            self.vmstat.add(VmItem::PgmigrateSuccess, 1 << order);
        }
        true
    }

    /// `compact_node` for every zone with order -1, as a write to
    /// `/proc/sys/vm/compact_memory` does (sync-full, whole zones).
    pub fn compact_memory(&mut self) {
        for z in 0..self.buddy.zones.len() {
            let mut cc = self.new_cc(z, None, MigrateType::Movable);
            self.compact_zone(&mut cc);
            self.count_scanned(&cc, false);
        }
    }

    /// `wake_all_kswapds`: kswapd has nothing to reclaim in the model, so the wakeup reaches
    /// kcompactd (`wakeup_kcompactd`) with the order.
    pub(crate) fn wake_all_kswapds(&mut self, order: u8) {
        // kswapd clears the skip hints direct compaction asked to flush when it next
        // sleeps (kswapd_try_to_sleep → reset_isolation_suitable).
        for z in 0..self.buddy.zones.len() {
            if self.buddy.zones[z].blockskip_flush {
                self.buddy.reset_isolation_suitable(z);
            }
        }
        if order == 0 {
            return;
        }
        if self.kcompactd.max_order < order {
            self.kcompactd.max_order = order;
        }
    }

    /// `fragmentation_score_node`: the zones' `extfrag_for_order(pageblock_order)` weighted
    /// by their size.
    pub(crate) fn fragmentation_score_node(&self) -> u64 {
        let total: u64 = self
            .buddy
            .zones
            .iter()
            .map(crate::page_alloc::Zone::managed)
            .sum();
        self.buddy
            .zones
            .iter()
            .map(|z| z.managed() * z.extfrag_for_order(PAGEBLOCK_ORDER) / (total + 1))
            .sum()
    }

    /// kcompactd's next wakeup: now if an allocation asked for work, else its 500 ms timer
    /// while proactive compaction is on.
    pub(crate) fn kcompactd_poll_at(&self) -> Option<u64> {
        if self.kcompactd.max_order > 0 {
            return Some(self.now_ms);
        }
        (self.compaction.proactiveness > 0).then_some(self.kcompactd.next_ms.max(self.now_ms))
    }

    /// One kcompactd wakeup: requested work (`kcompactd_do_work`) or the proactive check.
    pub(crate) fn kcompactd_run(&mut self) {
        if self.kcompactd.max_order > 0 {
            let order = self.kcompactd.max_order;
            self.kcompactd.max_order = 0;
            self.vmstat.count(VmItem::CompactDaemonWake);
            for z in 0..self.buddy.zones.len() {
                if compaction_deferred(&mut self.buddy.zones[z].defer, order) {
                    continue;
                }
                if self.compaction_suit_allocation_order(z, order) != CompactResult::Continue {
                    continue;
                }
                let status = self.compact_zone_order(
                    z,
                    order,
                    MigrateType::Movable,
                    CompactPrio::SyncLight,
                    false,
                );
                if status == CompactResult::Success {
                    compaction_defer_reset(&mut self.buddy.zones[z].defer, order, false);
                } else if status == CompactResult::Complete {
                    defer_compaction(&mut self.buddy.zones[z].defer, order);
                }
            }
            self.kcompactd.next_ms = self.now_ms + KCOMPACTD_INTERVAL_MS;
            return;
        }
        let mut next = KCOMPACTD_INTERVAL_MS;
        let high = fragmentation_score_wmark(self.compaction.proactiveness, false);
        let prev = self.fragmentation_score_node();
        if prev > high {
            for z in 0..self.buddy.zones.len() {
                let mut cc = self.new_cc(z, None, MigrateType::Movable);
                cc.proactive = true;
                self.compact_zone(&mut cc);
                self.count_scanned(&cc, true);
            }
            if self.fragmentation_score_node() >= prev {
                next <<= COMPACT_MAX_DEFER_SHIFT;
            }
        }
        self.kcompactd.next_ms = self.now_ms + next;
    }
}
