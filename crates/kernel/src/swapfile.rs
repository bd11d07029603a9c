//! The swap device and the swap cache, after `mm/swapfile.c`, `mm/swap_state.c` and the
//! zero-page part of `mm/page_io.c` (Linux 6.18). One device (a `swap SIZE` line), slot 0
//! holding the header, of one of three kinds ([`SwapDevice`]): zram as this host has it
//! (`SWP_SYNCHRONOUS_IO`, the default), a block device with asynchronous I/O (`SWP_BLKDEV`
//! without `SWP_SYNCHRONOUS_IO`: a loop device on the host), or a swap file on a filesystem
//! (neither flag: `cluster_alloc_swap_entry` gives it no slots of an order above 0, so every
//! large folio is split before it is swapped out).
//!
//! * **Slots and clusters.** `swap_map` keeps each slot's count of swap PTEs
//!   (`swap_duplicate` / `swap_free_nr`); a slot is in use while that count or the swap cache
//!   holds it. Slots come in clusters of 512 (`SWAPFILE_CLUSTER`); a cluster serves one
//!   order at a time. `cluster_alloc_swap_entry`: the CPU's cluster for the order first (one
//!   CPU is modelled), then the order's nonfull list (below PMD order), the free list, one
//!   fragmented cluster of the order, and for order 0 any cluster of a higher order. A
//!   large folio's slots are naturally aligned (`cluster_scan_range`); when none can be had
//!   the caller splits the folio (`shrink_folio_list`).
//! * **Content.** Per slot the zero map (`swap_zeromap_folio_set`: a folio written out
//!   all-zero is not written, `swpout_zero`) and whether the page held non-zero bytes (the
//!   model's content bit, given back to the page at swap-in).
//! * **Swap cache** (`swap_cache_get_folio`, `add_to_swap_cache`, `delete_from_swap_cache`):
//!   slot → folio and the folio's first slot (`folio->swap`); the cache holds one
//!   reference per page, like the page cache. `folio_free_swap` and the reclaim on unmap
//!   (`free_swap_and_cache_nr` → `__try_to_reclaim_swap`, `free_swap_cache`) drop it.
//! * **Readahead** (`mm/swap_state.c`: `swapin_readahead`, `swap_vma_readahead` with
//!   `swap_vma_ra_win` and the VMA's `swap_readahead_info`, `swap_cluster_readahead` with
//!   `swapin_nr_pages`' global state, `swap_update_readahead`, `__swapin_nr_pages`): the
//!   window's pages other than the faulting one go to the swap cache with `PG_readahead`
//!   (`swap_ra`); a fault that finds one there is a hit (`swap_ra_hit`) and grows the next
//!   window. `vm.page-cluster` and `swap.vma_ra_enabled` are knobs; `disk` and `file` devices
//!   are rotational (`nr_rotate_swap`), which selects the offset-based readahead.
//!
//! Deviations: one CPU's cluster cache (the host's two CPUs each keep one, so the slots a
//! run gets depend on where it ran; only what does not depend on it is compared), no
//! discard, no zswap, no memcg swap limits; the readahead's I/O completes at once (a fault on a
//! page still being read would wait for it: the same counters).

use rustc_hash::FxHashMap;

use crate::folio::FolioId;
use crate::types::{HPAGE_PMD_ORDER, PAGE_SIZE};
use crate::vmstat::VmItem;

/// `SWAPFILE_CLUSTER`: slots per cluster (`HPAGE_PMD_NR` with THP swap).
pub(crate) const SWAPFILE_CLUSTER: u32 = 512;
/// `SWAP_MAP_BAD`: the header slot (and the tail beyond the last full page).
const SWAP_MAP_BAD: u8 = 0x3f;
/// Orders a cluster can serve (`SWAP_NR_ORDERS`).
const NR_ORDERS: usize = HPAGE_PMD_ORDER as usize + 1;

/// The kind of the swap device (`si->flags`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SwapDevice {
    /// zram: `SWP_BLKDEV | SWP_SYNCHRONOUS_IO`. The write completes inside `swap_writeout`,
    /// and a swap-in of a slot only one PTE names skips the swap cache.
    #[default]
    Zram,
    /// A block device whose I/O completes asynchronously (`SWP_BLKDEV` only): written folios
    /// stay in the swap cache after reclaim (under writeback, then clean) and every swap-in
    /// goes through the swap cache (`swapin_readahead`).
    Disk,
    /// A regular file (`S_ISREG`, no `SWP_BLKDEV`): as `Disk`, and no large swap entries.
    File,
}

impl SwapDevice {
    /// The scenario word (`swap SIZE type=WORD`).
    pub fn name(self) -> &'static str {
        match self {
            SwapDevice::Zram => "zram",
            SwapDevice::Disk => "disk",
            SwapDevice::File => "file",
        }
    }

    /// `SWP_SYNCHRONOUS_IO`.
    pub fn synchronous(self) -> bool {
        self == SwapDevice::Zram
    }

    /// `SWP_BLKDEV`: only a block device gets slots for large folios.
    pub fn blkdev(self) -> bool {
        self != SwapDevice::File
    }

    /// Not `SWP_SOLIDSTATE` (`bdev_nonrot` false): counted in `nr_rotate_swap`, which turns
    /// VMA-based readahead off. zram is non-rotational; `disk` and `file` are rotational as
    /// on the reference host, whose root disk (the loop device's backing file and the swap
    /// file live on it) has `queue/rotational` 1.
    pub fn rotational(self) -> bool {
        self != SwapDevice::Zram
    }
}

/// Which list a cluster is on (`ci->flags`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClusterList {
    Free,
    Nonfull,
    Frag,
    Full,
}

#[derive(Clone, Copy, Debug)]
struct Cluster {
    /// Slots in use (`ci->count`), bad slots included.
    count: u32,
    /// The order it serves (`ci->order`).
    order: u8,
    list: ClusterList,
}

/// The swap device (`struct swap_info_struct`).
#[derive(Clone, Debug)]
pub(crate) struct SwapInfo {
    /// `si->max`: slots, the header slot included.
    pub(crate) max: u32,
    /// `si->pages`: usable slots (`SwapTotal`).
    pub(crate) pages: u32,
    /// `si->inuse_pages`.
    pub(crate) inuse: u32,
    map: Vec<u8>,
    zeromap: Vec<u64>,
    /// Model-only: the slot's page held non-zero bytes when written out.
    content: Vec<u64>,
    clusters: Vec<Cluster>,
    free: Vec<u32>,
    nonfull: [Vec<u32>; NR_ORDERS],
    frag: [Vec<u32>; NR_ORDERS],
    /// The CPU's next slot per order (`percpu_swap_cluster.offset`; for a rotational
    /// device `si->global_cluster->next`, the same with one CPU modelled).
    next: [Option<u32>; NR_ORDERS],
    pub(crate) device: SwapDevice,
}

fn bit(v: &[u64], i: u32) -> bool {
    v[(i / 64) as usize] & (1 << (i % 64)) != 0
}

fn set_bit(v: &mut [u64], i: u32, on: bool) {
    let w = &mut v[(i / 64) as usize];
    if on {
        *w |= 1 << (i % 64);
    } else {
        *w &= !(1 << (i % 64));
    }
}

impl SwapInfo {
    /// `swapon` of a device of `bytes` (a multiple of 4 KiB): `setup_clusters` marks the
    /// header slot and the tail of the last cluster bad; clusters holding a bad slot start on
    /// the order-0 nonfull list, the others on the free list in address order.
    pub(crate) fn new(bytes: u64, device: SwapDevice) -> SwapInfo {
        let max = u32::try_from(bytes >> crate::types::PAGE_SHIFT).unwrap_or(u32::MAX);
        let nr_clusters = max.div_ceil(SWAPFILE_CLUSTER);
        let total = nr_clusters * SWAPFILE_CLUSTER;
        let words = total.div_ceil(64) as usize;
        let mut si = SwapInfo {
            max,
            pages: max - 1,
            inuse: 0,
            map: vec![0; total as usize],
            zeromap: vec![0; words],
            content: vec![0; words],
            clusters: vec![
                Cluster {
                    count: 0,
                    order: 0,
                    list: ClusterList::Free,
                };
                nr_clusters as usize
            ],
            free: Vec::new(),
            nonfull: Default::default(),
            frag: Default::default(),
            next: [None; NR_ORDERS],
            device,
        };
        let bad = std::iter::once(0).chain(max..total);
        for s in bad {
            si.map[s as usize] = SWAP_MAP_BAD;
            si.clusters[(s / SWAPFILE_CLUSTER) as usize].count += 1;
        }
        for c in 0..nr_clusters {
            let ci = &mut si.clusters[c as usize];
            if ci.count == SWAPFILE_CLUSTER {
                ci.list = ClusterList::Full;
            } else if ci.count > 0 {
                ci.list = ClusterList::Nonfull;
                si.nonfull[0].push(c);
            } else {
                si.free.push(c);
            }
        }
        si
    }

    /// `swap_count`: the swap PTEs naming `slot`.
    pub(crate) fn count(&self, slot: u32) -> u8 {
        self.map[slot as usize]
    }

    pub(crate) fn is_zero(&self, slot: u32) -> bool {
        bit(&self.zeromap, slot)
    }

    pub(crate) fn has_content(&self, slot: u32) -> bool {
        bit(&self.content, slot)
    }

    /// Records what was written to `slot` (`swap_zeromap_folio_set/clear` and the page's
    /// content).
    pub(crate) fn set_written(&mut self, slot: u32, zero: bool, content: bool) {
        set_bit(&mut self.zeromap, slot, zero);
        set_bit(&mut self.content, slot, content);
    }

    /// `swap_duplicate`: one more swap PTE names `slot`.
    pub(crate) fn dup(&mut self, slot: u32) {
        debug_assert!(self.map[slot as usize] < SWAP_MAP_BAD - 1);
        self.map[slot as usize] += 1;
    }

    /// One swap PTE fewer names `slot` (`swap_entry_put`). True when no PTE names it now.
    pub(crate) fn put(&mut self, slot: u32) -> bool {
        let c = &mut self.map[slot as usize];
        debug_assert!(*c > 0 && *c != SWAP_MAP_BAD);
        *c -= 1;
        *c == 0
    }

    fn list_mut(&mut self, list: ClusterList, order: u8) -> Option<&mut Vec<u32>> {
        match list {
            ClusterList::Free => Some(&mut self.free),
            ClusterList::Nonfull => Some(&mut self.nonfull[order as usize]),
            ClusterList::Frag => Some(&mut self.frag[order as usize]),
            ClusterList::Full => None,
        }
    }

    fn move_cluster(&mut self, c: u32, to: ClusterList) {
        let ci = self.clusters[c as usize];
        if ci.list == to {
            return;
        }
        if let Some(l) = self.list_mut(ci.list, ci.order) {
            l.retain(|&x| x != c);
        }
        if let Some(l) = self.list_mut(to, ci.order) {
            l.push(c);
        }
        self.clusters[c as usize].list = to;
    }

    /// Takes `[s, s+nr)` of cluster `c` for `order` and puts the cluster on the list its
    /// count says (`relocate_cluster`).
    fn take(&mut self, c: u32, s: u32, order: u8) -> u32 {
        let nr = 1u32 << order;
        if self.clusters[c as usize].list == ClusterList::Free {
            // An empty cluster takes the order it now serves.
            self.free.retain(|&x| x != c);
            let ci = &mut self.clusters[c as usize];
            ci.order = order;
            ci.list = ClusterList::Nonfull;
            self.nonfull[order as usize].push(c);
        }
        // SWAP_HAS_CACHE: the folio the caller adds to the swap cache holds the slots; the
        // swap PTEs of the unmap count later.
        self.clusters[c as usize].count += nr;
        self.inuse += nr;
        if self.clusters[c as usize].count == SWAPFILE_CLUSTER {
            self.move_cluster(c, ClusterList::Full);
        }
        let end = (c + 1) * SWAPFILE_CLUSTER;
        self.next[order as usize] = (s + nr < end).then_some(s + nr);
        s
    }

    /// `folio_alloc_swap` → `cluster_alloc_swap_entry` for a folio of `order`, where
    /// `busy(slot)` says whether the swap cache holds a slot (`cluster_scan_range`: the first
    /// naturally aligned run of free slots from a position to the cluster's end). The first
    /// slot, or None.
    pub(crate) fn alloc(&mut self, order: u8, busy: &dyn Fn(u32) -> bool) -> Option<u32> {
        if order > 0 && !self.device.blkdev() {
            // A swap file cannot do large contiguous I/O: the caller splits the folio.
            return None;
        }
        let nr = 1u32 << order;
        let free_run = |si: &SwapInfo, c: u32, from: u32| -> Option<u32> {
            let end = (c + 1) * SWAPFILE_CLUSTER;
            let mut s = from.next_multiple_of(nr);
            while s + nr <= end {
                if (s..s + nr).all(|x| si.map[x as usize] == 0 && !busy(x)) {
                    return Some(s);
                }
                s += nr;
            }
            None
        };
        let o = order as usize;
        // The CPU's cluster of this order.
        if let Some(off) = self.next[o] {
            let c = off / SWAPFILE_CLUSTER;
            let ci = self.clusters[c as usize];
            if ci.order == order && ci.list != ClusterList::Free && ci.list != ClusterList::Full {
                if let Some(s) = free_run(self, c, off) {
                    return Some(self.take(c, s, order));
                }
            }
            self.next[o] = None;
        }
        if order < HPAGE_PMD_ORDER {
            let list = self.nonfull[o].clone();
            for c in list {
                if let Some(s) = free_run(self, c, c * SWAPFILE_CLUSTER) {
                    return Some(self.take(c, s, order));
                }
                // Scanned without room for this order: fragmented (`CLUSTER_FLAG_FRAG`).
                self.move_cluster(c, ClusterList::Frag);
            }
        }
        if let Some(&c) = self.free.first() {
            return Some(self.take(c, c * SWAPFILE_CLUSTER, order));
        }
        if order < HPAGE_PMD_ORDER {
            if let Some(&c) = self.frag[o].first() {
                if let Some(s) = free_run(self, c, c * SWAPFILE_CLUSTER) {
                    return Some(self.take(c, s, order));
                }
            }
        }
        if order > 0 {
            return None;
        }
        // Order 0 steals from clusters of the higher orders, then its own fragments.
        for oo in (1..NR_ORDERS).chain(std::iter::once(0)) {
            let lists = [self.frag[oo].clone(), self.nonfull[oo].clone()];
            for c in lists.into_iter().flatten() {
                if let Some(s) = free_run(self, c, c * SWAPFILE_CLUSTER) {
                    return Some(self.take(c, s, 0));
                }
            }
        }
        None
    }

    /// The slot is neither named by a PTE nor cached any more (`swap_entries_free`): back to
    /// its cluster; an empty cluster goes to the free list, a full one becomes nonfull.
    pub(crate) fn release(&mut self, slot: u32) {
        debug_assert_eq!(self.map[slot as usize], 0);
        set_bit(&mut self.zeromap, slot, false);
        set_bit(&mut self.content, slot, false);
        self.inuse -= 1;
        let c = slot / SWAPFILE_CLUSTER;
        let ci = &mut self.clusters[c as usize];
        ci.count -= 1;
        if ci.count == 0 {
            self.move_cluster(c, ClusterList::Free);
            if self
                .next
                .iter()
                .any(|n| n.is_some_and(|x| x / SWAPFILE_CLUSTER == c))
            {
                for n in &mut self.next {
                    if n.is_some_and(|x| x / SWAPFILE_CLUSTER == c) {
                        *n = None;
                    }
                }
            }
        } else if ci.list == ClusterList::Full {
            self.move_cluster(c, ClusterList::Nonfull);
        }
    }

    /// Invariant check: counts per cluster and `inuse` match the map and the cache.
    pub(crate) fn check(&self, cached: &dyn Fn(u32) -> bool) -> Result<(), String> {
        let mut inuse = 0;
        for (c, ci) in self.clusters.iter().enumerate() {
            let c = u32::try_from(c).unwrap_or(u32::MAX);
            let slots = c * SWAPFILE_CLUSTER..(c + 1) * SWAPFILE_CLUSTER;
            let mut n = 0;
            for s in slots {
                let m = self.map[s as usize];
                if m == SWAP_MAP_BAD {
                    n += 1;
                } else if m > 0 || cached(s) {
                    n += 1;
                    inuse += 1;
                }
            }
            if n != ci.count {
                return Err(format!(
                    "swap cluster {c}: count {} but {n} slots used",
                    ci.count
                ));
            }
            if (ci.count == 0) != (ci.list == ClusterList::Free) {
                return Err(format!(
                    "swap cluster {c}: count {} on {:?}",
                    ci.count, ci.list
                ));
            }
        }
        if inuse != self.inuse {
            return Err(format!(
                "swap inuse_pages {} but {inuse} slots used",
                self.inuse
            ));
        }
        Ok(())
    }
}

/// The swap device (if any) and the swap cache.
#[derive(Clone, Debug, Default)]
pub(crate) struct Swap {
    pub(crate) si: Option<SwapInfo>,
    /// slot → folio (`swap_cache_get_folio`).
    pub(crate) cache: FxHashMap<u32, FolioId>,
    /// folio → its first slot (`folio->swap`), for folios in the swap cache.
    pub(crate) folio_slot: FxHashMap<FolioId, u32>,
    /// `!zswap_never_enabled()`: large-folio swap-in is off (`alloc_swap_folio`).
    pub(crate) zswap_ever_enabled: bool,
    /// `PG_readahead` of swap-cache folios that readahead read (not the faulting page).
    pub(crate) readahead: rustc_hash::FxHashSet<FolioId>,
    /// The offset-based readahead's global state (`swapin_nr_pages`).
    pub(crate) cluster_ra: ClusterRa,
}

/// What `Kernel::read_swap_cache_async` found or did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadAsync {
    /// The swap cache already had the slot's folio.
    Cached(FolioId),
    /// A new folio was added to the swap cache and read.
    Read(FolioId),
    /// No PTE names the slot and no folio caches it.
    Unused,
    /// No memory for a new folio.
    NoMemory,
}

/// `swapin_nr_pages`'s statics in `mm/swap_state.c`: `prev_offset`, `last_readahead_pages`
/// and `swapin_readahead_hits` (4 at boot).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClusterRa {
    pub(crate) prev_offset: u64,
    pub(crate) last_pages: u32,
    pub(crate) hits: u32,
}

impl Default for ClusterRa {
    fn default() -> Self {
        ClusterRa {
            prev_offset: 0,
            last_pages: 0,
            hits: 4,
        }
    }
}

/// `SWAP_RA_ORDER_CEILING`: VMA readahead reads at most 32 pages.
const SWAP_RA_ORDER_CEILING: u32 = 5;
/// `SWAP_RA_WIN_SHIFT` (`PAGE_SHIFT / 2`): `swap_readahead_info` packs the address's page
/// bits, the window above the hits and the hits in the low 6 bits.
const SWAP_RA_WIN_SHIFT: u32 = 6;
const SWAP_RA_HITS_MASK: u64 = (1 << SWAP_RA_WIN_SHIFT) - 1;
const SWAP_RA_WIN_MASK: u64 = (PAGE_SIZE - 1) & !SWAP_RA_HITS_MASK;

/// `GET_SWAP_RA_VAL`: a VMA that never swapped in reads as hits 4, window 0, address 0.
fn swap_ra_val_of(info: u64) -> (u64, u32, u32) {
    let v = if info == 0 { 4 } else { info };
    (
        v & !(PAGE_SIZE - 1),
        crate::util::page_u32((v & SWAP_RA_WIN_MASK) >> SWAP_RA_WIN_SHIFT),
        crate::util::page_u32(v & SWAP_RA_HITS_MASK),
    )
}

/// `SWAP_RA_VAL`.
fn swap_ra_val(addr: u64, win: u32, hits: u32) -> u64 {
    (addr & !(PAGE_SIZE - 1))
        | ((u64::from(win) << SWAP_RA_WIN_SHIFT) & SWAP_RA_WIN_MASK)
        | (u64::from(hits) & SWAP_RA_HITS_MASK)
}

/// `__swapin_nr_pages`: hits + 2 rounded up to a power of two from 4 (with no hits, 2 for
/// an offset next to the previous one, else 1), at most `max_pages`, and never below half
/// the previous window.
fn swapin_nr_pages_for(prev: u64, offset: u64, hits: u32, max_pages: u32, prev_win: u32) -> u32 {
    let mut pages = hits + 2;
    if pages == 2 {
        if offset != prev.wrapping_add(1) && offset != prev.wrapping_sub(1) {
            pages = 1;
        }
    } else {
        pages = pages.next_power_of_two().max(4);
    }
    pages.min(max_pages).max(prev_win / 2)
}

impl Swap {
    /// `total_swap_pages`.
    pub(crate) fn total(&self) -> u64 {
        self.si.as_ref().map_or(0, |s| u64::from(s.pages))
    }

    /// `get_nr_swap_pages()`: free slots.
    pub(crate) fn nr_free(&self) -> u64 {
        self.si.as_ref().map_or(0, |s| u64::from(s.pages - s.inuse))
    }

    /// `vm_swap_full`: more than half of swap in use.
    pub(crate) fn vm_swap_full(&self) -> bool {
        self.total() > 0 && self.nr_free() * 2 < self.total()
    }

    /// `swap_cache_get_folio`.
    pub(crate) fn cached(&self, slot: u32) -> Option<FolioId> {
        self.cache.get(&slot).copied()
    }

    /// `folio_alloc_swap` for a folio of `order`: the first of its slots.
    pub(crate) fn alloc(&mut self, order: u8) -> Option<u32> {
        let cache = &self.cache;
        self.si.as_mut()?.alloc(order, &|s| cache.contains_key(&s))
    }

    /// `add_to_swap_cache`: slots `[slot, slot+nr)` now hold `id`.
    pub(crate) fn add(&mut self, id: FolioId, slot: u32, nr: u32) {
        for s in slot..slot + nr {
            self.cache.insert(s, id);
        }
        self.folio_slot.insert(id, slot);
    }

    /// `__delete_from_swap_cache`: the folio leaves the cache; slots no PTE names are freed.
    pub(crate) fn remove(&mut self, id: FolioId, nr: u32) {
        let Some(slot) = self.folio_slot.remove(&id) else {
            return;
        };
        self.readahead.remove(&id);
        let si = self.si.as_mut().expect("swap device of a cached folio");
        for s in slot..slot + nr {
            self.cache.remove(&s);
            if si.count(s) == 0 {
                si.release(s);
            }
        }
    }

    /// One swap PTE of `slot` is gone (zap, swap-in); the slot is freed when nothing holds
    /// it. Returns the cached folio if the slot still has one.
    pub(crate) fn put(&mut self, slot: u32) -> Option<FolioId> {
        let si = self.si.as_mut().expect("swap entry without a device");
        if si.put(slot) && !self.cache.contains_key(&slot) {
            si.release(slot);
        }
        self.cache.get(&slot).copied()
    }

    /// `folio_swapped`: some slot of the cached folio is still named by a PTE.
    pub(crate) fn folio_swapped(&self, id: FolioId, nr: u32) -> bool {
        let (Some(&slot), Some(si)) = (self.folio_slot.get(&id), self.si.as_ref()) else {
            return false;
        };
        (slot..slot + nr).any(|s| si.count(s) > 0)
    }
}

impl crate::Kernel {
    /// `free_swap_and_cache_nr` for one swap PTE being zapped: the slot loses a reference;
    /// a cached folio no PTE maps and no other swap PTE names is dropped from the swap cache
    /// (`__try_to_reclaim_swap` with `TTRS_UNMAPPED`) and freed.
    pub(crate) fn free_swap_and_cache(&mut self, slot: u32) {
        if let Some(id) = self.swap.put(slot) {
            self.free_swap_cache(id);
        }
    }

    /// `free_swap_cache`: a swap-cache folio that is no longer mapped leaves the cache when
    /// no swap PTE names any of its slots (`folio_free_swap`).
    pub(crate) fn free_swap_cache(&mut self, id: FolioId) {
        let f = *self.folios.get(id);
        if f.mapcount == 0 && f.entire_mapcount == 0 {
            self.folio_free_swap(id);
        }
    }

    /// `folio_free_swap`: drops a cached folio's swap slots when no swap PTE names them
    /// (the folio is dirtied: its only copy is now in memory). Frees the folio if nothing
    /// else holds it. True if it left the cache.
    pub(crate) fn folio_free_swap(&mut self, id: FolioId) -> bool {
        let nr = self.folios.get(id).nr_pages();
        if !self.swap.folio_slot.contains_key(&id) || self.swap.folio_swapped(id, nr) {
            return false;
        }
        self.swap.remove(id, nr);
        self.folios.get_mut(id).flags |= crate::folio::flags::DIRTY;
        self.folio_put(id, nr);
        true
    }

    /// MADV_WILLNEED of an anonymous range (`madvise_willneed` → `swapin_walk_pmd_range`):
    /// each swap entry's page is read into the swap cache (`read_swap_cache_async`: an
    /// order-0 folio, `pswpin`); the PTEs stay swap entries, so a later fault is minor.
    pub(crate) fn madvise_willneed_anon(&mut self, mmi: crate::ids::MmId, start: u64, end: u64) {
        let slots: Vec<u32> = self
            .walk_pmds(mmi, start, end)
            .filter(|(_, pmd)| pmd.is_table())
            .flat_map(|(slot, pmd)| {
                let t = self.mms[mmi].pgt.pte_table(pmd.table_idx());
                let (a, b) = (start.max(slot), end.min(slot + crate::types::PMD_SIZE));
                (crate::pgtable::pte_index(a)..=crate::pgtable::pte_index(b - 1))
                    .map(|i| t[i])
                    .filter(|p| p.is_swap())
                    .map(crate::pgtable::Pte::swap_slot)
                    .collect::<Vec<_>>()
            })
            .collect();
        for slot in slots {
            if self.read_swap_cache_async(slot) == ReadAsync::NoMemory {
                return;
            }
        }
    }

    /// `__read_swap_cache_async` + `swap_read_folio` of one slot: the folio the swap cache
    /// has for it, or a new order-0 folio added to the cache and read (`pswpin`, or the zero
    /// map). A slot no PTE names and no folio caches is not read (`swapcache_prepare` fails).
    pub(crate) fn read_swap_cache_async(&mut self, slot: u32) -> ReadAsync {
        if let Some(id) = self.swap.cached(slot) {
            return ReadAsync::Cached(id);
        }
        if self.swap.si.as_ref().is_none_or(|si| si.count(slot) == 0) {
            return ReadAsync::Unused;
        }
        let Some(f) = self.alloc_anon_folio_order(0, crate::page_alloc::Gfp::HIGHUSER_MOVABLE)
        else {
            return ReadAsync::NoMemory;
        };
        self.swap.add(f, slot, 1);
        self.folios.get_mut(f).refcount += 1;
        self.swap_read_folio(f, slot);
        ReadAsync::Read(f)
    }

    /// `swap_use_vma_readahead`: `vma_ra_enabled` and no rotational swap device.
    fn swap_use_vma_readahead(&self) -> bool {
        self.sysfs.vma_ra_enabled
            && !self
                .swap
                .si
                .as_ref()
                .is_some_and(|si| si.device.rotational())
    }

    /// `swap_update_readahead` for a folio a swap fault found in the swap cache: a readahead
    /// hit (`PG_readahead` cleared, `swap_ra_hit`) adds to the VMA's hits, or to the global
    /// ones under offset-based readahead; the VMA remembers this fault's address either way.
    /// Large folios are left alone. `vma` is the faulting mm and address (None for shmem).
    pub(crate) fn swap_update_readahead(
        &mut self,
        id: FolioId,
        vma: Option<(crate::ids::MmId, u64)>,
    ) {
        if self.folios.get(id).nr_pages() > 1 {
            return;
        }
        let readahead = self.swap.readahead.remove(&id);
        let vma_ra = self.swap_use_vma_readahead();
        if let (Some((mmi, addr)), true) = (vma, vma_ra) {
            let Some(info) = self.mms[mmi].vma_at(addr).map(|v| v.swap_readahead_info) else {
                return;
            };
            let (_, win, mut hits) = swap_ra_val_of(info);
            if readahead {
                hits = (hits + 1).min(crate::util::page_u32(SWAP_RA_HITS_MASK));
            }
            self.mms[mmi].set_swap_readahead_info(addr, swap_ra_val(addr, win, hits));
        }
        if readahead {
            self.vmstat.count(VmItem::SwapRaHit);
            if vma.is_none() || !vma_ra {
                self.swap.cluster_ra.hits += 1;
            }
        }
    }

    /// `swapin_readahead` for the swap PTE of `slot` that faults at `vmf.address`: VMA-based
    /// (`swap_vma_readahead`) or offset-based (`swap_cluster_readahead`) readahead around it,
    /// then the faulting slot's folio (read if the window did not). Readahead pages are
    /// order-0 folios left in the swap cache with `PG_readahead` (`swap_ra`); the PTEs stay
    /// swap entries. None: no memory for the faulting page.
    pub(crate) fn swapin_readahead(
        &mut self,
        vmf: &crate::fault::Vmf,
        slot: u32,
    ) -> Option<FolioId> {
        let slots = if self.swap_use_vma_readahead() {
            self.swap_vma_ra_slots(vmf)
        } else {
            self.swap_cluster_ra_slots(slot)
        };
        self.swap_read_window(&slots);
        match self.read_swap_cache_async(slot) {
            ReadAsync::Read(f) | ReadAsync::Cached(f) => Some(f),
            ReadAsync::NoMemory | ReadAsync::Unused => None,
        }
    }

    /// Reads a readahead window into the swap cache: every page but the faulting one that is
    /// read gets `PG_readahead` and counts `swap_ra`.
    fn swap_read_window(&mut self, slots: &[(u32, bool)]) {
        for &(s, is_target) in slots {
            if let ReadAsync::Read(f) = self.read_swap_cache_async(s) {
                if !is_target {
                    self.swap.readahead.insert(f);
                    self.vmstat.count(VmItem::SwapRa);
                }
            }
        }
    }

    /// `swap_cluster_readahead` for shmem (`shmem_swapin_cluster`) without its faulting
    /// slot, which the caller reads.
    pub(crate) fn swap_cluster_readahead_neighbours(&mut self, slot: u32) {
        let slots: Vec<(u32, bool)> = self
            .swap_cluster_ra_slots(slot)
            .into_iter()
            .filter(|&(_, t)| !t)
            .collect();
        self.swap_read_window(&slots);
    }

    /// `swap_vma_ra_win` and the PTE walk of `swap_vma_readahead`: the swap entries of the
    /// window around the fault (the faulting one flagged), inside the VMA and the PMD.
    fn swap_vma_ra_slots(&mut self, vmf: &crate::fault::Vmf) -> Vec<(u32, bool)> {
        let max_win = 1u32 << self.sysfs.page_cluster.min(SWAP_RA_ORDER_CEILING);
        if max_win == 1 {
            return Vec::new();
        }
        let mmi = vmf.mm;
        let faddr = vmf.address & !(PAGE_SIZE - 1);
        let Some(vma) = self.mms[mmi].vma_at(faddr).copied() else {
            return Vec::new();
        };
        let (prev_faddr, prev_win, hits) = swap_ra_val_of(vma.swap_readahead_info);
        let win = swapin_nr_pages_for(
            prev_faddr / PAGE_SIZE,
            faddr / PAGE_SIZE,
            hits,
            max_win,
            prev_win,
        );
        self.mms[mmi].set_swap_readahead_info(faddr, swap_ra_val(faddr, win, 0));
        if win == 1 {
            return Vec::new();
        }
        let w = u64::from(win) * PAGE_SIZE;
        let left = if faddr == prev_faddr.wrapping_add(PAGE_SIZE) {
            faddr
        } else if prev_faddr == faddr + PAGE_SIZE {
            (faddr + PAGE_SIZE).saturating_sub(w)
        } else {
            faddr.saturating_sub(u64::from((win - 1) / 2) * PAGE_SIZE)
        };
        let right = left + w;
        let pmd = faddr & crate::types::PMD_MASK;
        let start = left.max(vma.start).max(pmd);
        let end = right.min(vma.end).min(pmd + crate::types::PMD_SIZE);
        (start..end)
            .step_by(4096)
            .filter_map(|a| {
                let p = self.mms[mmi].pgt.pte(a);
                p.is_swap().then(|| (p.swap_slot(), a == faddr))
            })
            .collect()
    }

    /// `swapin_nr_pages` and `swap_cluster_readahead`'s aligned block of slots around
    /// `slot` (the header slot and slots past the device skipped).
    fn swap_cluster_ra_slots(&mut self, slot: u32) -> Vec<(u32, bool)> {
        let max_pages = 1u32 << self.sysfs.page_cluster.min(31);
        if max_pages <= 1 {
            return Vec::new();
        }
        let ra = &mut self.swap.cluster_ra;
        let hits = std::mem::take(&mut ra.hits);
        let offset = u64::from(slot);
        let pages = swapin_nr_pages_for(ra.prev_offset, offset, hits, max_pages, ra.last_pages);
        if hits == 0 {
            ra.prev_offset = offset;
        }
        ra.last_pages = pages;
        let mask = pages - 1;
        if mask == 0 {
            return Vec::new();
        }
        let max = self.swap.si.as_ref().map_or(0, |si| si.max);
        let start = (slot & !mask).max(1);
        let end = (slot | mask).min(max.saturating_sub(1));
        (start..=end).map(|s| (s, s == slot)).collect()
    }

    /// `SwapTotal`, `SwapFree`, `SwapCached` (kB) as `meminfo.<name>`.
    pub(crate) fn swap_meminfo(&self) -> [(String, i64); 3] {
        let kb = |pages: u64| crate::util::to_i64(pages * 4);
        let cached = u64::try_from(self.swap.cache.len()).unwrap_or(u64::MAX);
        [
            ("meminfo.SwapTotal".to_string(), kb(self.swap.total())),
            ("meminfo.SwapFree".to_string(), kb(self.swap.nr_free())),
            ("meminfo.SwapCached".to_string(), kb(cached)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_cluster_and_free_clusters() {
        // 4 MiB: 1024 slots, two clusters; slot 0 is the header.
        let mut si = SwapInfo::new(4 << 20, SwapDevice::Zram);
        let none = |_: u32| false;
        assert_eq!((si.pages, si.inuse), (1023, 0));
        assert_eq!(si.alloc(9, &none), Some(512), "the free cluster");
        assert_eq!(si.alloc(9, &none), None, "no free cluster left");
        assert_eq!(si.alloc(4, &none), None, "a cluster serves one order");
        assert_eq!(
            si.alloc(0, &none),
            Some(1),
            "order 0 fills the header's cluster"
        );
        assert_eq!(si.alloc(0, &none), Some(2));
        si.dup(1);
        si.check(&|s| (512..1024).contains(&s) || s == 2).unwrap();
    }

    #[test]
    fn order0_steals_and_released_cluster_is_free() {
        let mut si = SwapInfo::new(2 << 20, SwapDevice::Zram);
        let none = |_: u32| false;
        // One cluster with the header: order 0 gets 511 slots, then nothing.
        let got: Vec<u32> = (0..512).filter_map(|_| si.alloc(0, &none)).collect();
        assert_eq!(got.len(), 511);
        assert_eq!(got[0], 1);
        for s in got {
            si.release(s);
        }
        assert_eq!(si.inuse, 0);
        si.check(&none).unwrap();
        assert_eq!(
            si.alloc(9, &none),
            None,
            "the header keeps the cluster from being free"
        );
    }
}
