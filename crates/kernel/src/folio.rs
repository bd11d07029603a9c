//! Folios (`include/linux/mm_types.h` struct folio, Linux 6.18): order, reference count,
//! mapcounts and the flags the THP paths read. Order-0 folios are 20 bytes; large folios
//! carry a side record with per-page mapcounts (only once PTE-mapped) and a bitmap of pages
//! whose content is non-zero (what the deferred-split shrinker and zero-page remapping read).
//!
//! Counting convention (as the kernel's): `refcount` = number of mappings (each PTE and each
//! PMD mapping one reference) + extra pins; `entire_mapcount` = PMD mappings; a page's
//! mapcount = PTE mappings of that page; `mapcount` = sum of PTE mappings over all pages.

pub(crate) use crate::ids::FolioId;
use crate::ids::{MmId, Pfn};

pub(crate) mod flags {
    /// Anonymous folio.
    pub(crate) const ANON: u8 = 1 << 0;
    /// Flagged partially mapped (`folio_test_partially_mapped`).
    pub(crate) const PARTIALLY_MAPPED: u8 = 1 << 1;
    /// On the deferred-split queue.
    pub(crate) const DEFERRED: u8 = 1 << 2;
    /// MADV_FREE'd and clean (lazy-free).
    pub(crate) const LAZYFREE: u8 = 1 << 3;
    /// Order-0 only: the page's content is not all zero.
    pub(crate) const NONZERO: u8 = 1 << 4;
    /// `PG_dirty`: set when a dirty PMD is split (`__split_huge_pmd_locked`), when a split
    /// unmaps a dirty PTE (`try_to_migrate_one`; the new folios inherit it), and by GUP
    /// `FOLL_WRITE|FOLL_TOUCH` on a clean PTE (`follow_page_pte`); cleared by MADV_FREE.
    /// smaps counts a page dirty if its PTE/PMD or its folio is (`smaps_page_accumulate`).
    pub(crate) const DIRTY: u8 = 1 << 5;
    /// A shmem page-cache folio (`PG_swapbacked` without `PG_anon`): its inode and index
    /// are in `Shmem::owner`; the page cache holds `nr_pages` references while it is cached.
    pub(crate) const SHMEM: u8 = 1 << 6;
    /// Slot is unused (on the arena free list).
    pub(crate) const FREE: u8 = 1 << 7;
}

/// The LRU page flags the THP paths read, `PG_referenced` and `PG_active`
/// (`include/linux/page-flags.h`), kept two bits per folio beside the arena (a `Folio` has no
/// spare bit and order-0 folios must stay 20 bytes). Only `folio_mark_accessed` sets them;
/// khugepaged counts a page referenced if its PTE is young *or* its folio is `PG_referenced`.
pub(crate) mod lru {
    /// `PG_referenced`.
    pub(crate) const REFERENCED: u8 = 1 << 0;
    /// `PG_active`.
    pub(crate) const ACTIVE: u8 = 1 << 1;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Folio {
    /// The first PFN, stored in 32 bits to keep an order-0 folio at 20 bytes (see `Pfn`).
    pfn: u32,
    pub refcount: u32,
    pub mapcount: u32,
    /// Index into `Folios::large` for order > 0, else `u32::MAX`.
    pub meta: u32,
    pub entire_mapcount: u16,
    pub order: u8,
    pub flags: u8,
}

impl Folio {
    /// The folio's first page frame.
    #[inline]
    #[must_use]
    pub(crate) fn pfn(&self) -> Pfn {
        Pfn(u64::from(self.pfn))
    }
    /// Moves the folio to another page frame (migration: page tables hold folio ids, so
    /// this is the whole move).
    pub(crate) fn set_pfn(&mut self, pfn: Pfn) {
        self.pfn = pfn.to_u32();
    }
    #[inline]
    pub(crate) fn nr_pages(&self) -> u32 {
        1 << self.order
    }
    #[inline]
    pub(crate) fn test(&self, f: u8) -> bool {
        self.flags & f != 0
    }
}

/// An optional folio link in 32 bits (`Option<FolioId>` would take 8), so a large folio's
/// side record stays as small as the memory targets need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FolioLink(u32);

impl FolioLink {
    pub(crate) const NONE: FolioLink = FolioLink(u32::MAX);
    #[inline]
    pub(crate) fn get(self) -> Option<FolioId> {
        (self != Self::NONE).then(|| FolioId::from_bits(self.0))
    }
}

impl From<Option<FolioId>> for FolioLink {
    #[inline]
    fn from(id: Option<FolioId>) -> FolioLink {
        id.map_or(FolioLink::NONE, |f| FolioLink(f.to_bits()))
    }
}

impl Default for FolioLink {
    fn default() -> FolioLink {
        FolioLink::NONE
    }
}

/// Side record of a large folio.
#[derive(Clone, Debug, Default)]
pub(crate) struct LargeMeta {
    /// Per-page PTE mapcount; empty until the folio is first PTE-mapped.
    pub page_mapcount: Vec<u32>,
    /// Number of pages with a PTE mapcount > 0 (`_nr_pages_mapped` without the PMD part).
    pub nr_pages_mapped: u32,
    /// One bit per page: content not all zero (inline: no allocation per THP).
    pub nonzero: [u64; 8],
    /// Deferred-split queue links (`_deferred_list`).
    pub(crate) ds_prev: FolioLink,
    pub(crate) ds_next: FolioLink,
    /// Mappings per mm (`_mm_id` / `_mm_id_mapcount`, 6.15 MM-owner tracking): which mms map
    /// the folio and how often. More than one entry means "maybe mapped shared".
    pub mm_maps: MmMaps,
    /// Virtual address of page 0 where the folio was first mapped (fork keeps addresses; an
    /// mremap does not update it): where the model looks for a folio's mappings first (the
    /// kernel walks anon_vmas).
    pub va: u64,
}

/// `(mm, mappings)` pairs; two inline (the kernel tracks two MM ids per large folio), more
/// spill to a vector.
#[derive(Clone, Debug, Default)]
pub(crate) struct MmMaps {
    inline: [(MmId, u32); 2],
    len: u8,
    more: Vec<(MmId, u32)>,
}

impl MmMaps {
    pub(crate) fn len(&self) -> usize {
        self.len as usize + self.more.len()
    }
    pub(crate) fn iter(&self) -> impl Iterator<Item = (MmId, u32)> + '_ {
        self.inline[..self.len as usize]
            .iter()
            .copied()
            .chain(self.more.iter().copied())
    }
    pub(crate) fn to_vec(&self) -> Vec<(MmId, u32)> {
        self.iter().collect()
    }
    /// Adds `delta` mappings for `mm`, dropping the entry at zero.
    fn add(&mut self, mm: MmId, delta: i64) {
        let n = self.len as usize;
        if let Some(i) = self.inline[..n].iter().position(|e| e.0 == mm) {
            let c = i64::from(self.inline[i].1) + delta;
            debug_assert!(c >= 0);
            if c == 0 {
                self.inline[i] = self.inline[n - 1];
                self.len -= 1;
                if let Some(m) = self.more.pop() {
                    self.inline[self.len as usize] = m;
                    self.len += 1;
                }
            } else {
                self.inline[i].1 = count(c);
            }
        } else if let Some(i) = self.more.iter().position(|e| e.0 == mm) {
            let c = i64::from(self.more[i].1) + delta;
            debug_assert!(c >= 0);
            if c == 0 {
                self.more.swap_remove(i);
            } else {
                self.more[i].1 = count(c);
            }
        } else {
            debug_assert!(delta > 0);
            if n < 2 {
                self.inline[n] = (mm, count(delta));
                self.len += 1;
            } else {
                self.more.push((mm, count(delta)));
            }
        }
    }
}

/// A mapping count computed in `i64` (a count plus a signed delta), back as `u32`.
fn count(c: i64) -> u32 {
    u32::try_from(c).expect("mapping counts stay in 0..2^32")
}

impl LargeMeta {
    fn new() -> Self {
        LargeMeta {
            page_mapcount: Vec::new(),
            nr_pages_mapped: 0,
            nonzero: [0; 8],
            ds_prev: FolioLink::NONE,
            ds_next: FolioLink::NONE,
            mm_maps: MmMaps::default(),
            va: 0,
        }
    }
}

/// Large-folio side records in fixed-size chunks: growing never moves the records, so it
/// never copies them into a new buffer (a doubling `Vec` would, and the allocator may keep
/// the old buffer resident: the per-THP memory figure of `thpsim bench` moved by a third
/// with the allocation history of the run).
#[derive(Clone, Debug, Default)]
struct MetaChunks {
    /// Each chunk is allocated with room for `META_CHUNK` records and filled by `push`, so
    /// it never reallocates (and only the records written use memory).
    chunks: Vec<Vec<LargeMeta>>,
    len: usize,
}

/// Records per chunk (160 KiB).
const META_CHUNK: usize = 1024;

impl MetaChunks {
    /// Appends a record; returns its index.
    fn push(&mut self, m: LargeMeta) -> usize {
        let i = self.len;
        if i % META_CHUNK == 0 {
            self.chunks.push(Vec::with_capacity(META_CHUNK));
        }
        self.chunks.last_mut().expect("a chunk").push(m);
        self.len += 1;
        i
    }
}

impl std::ops::Index<usize> for MetaChunks {
    type Output = LargeMeta;
    #[inline]
    fn index(&self, i: usize) -> &LargeMeta {
        &self.chunks[i / META_CHUNK][i % META_CHUNK]
    }
}

impl std::ops::IndexMut<usize> for MetaChunks {
    #[inline]
    fn index_mut(&mut self, i: usize) -> &mut LargeMeta {
        &mut self.chunks[i / META_CHUNK][i % META_CHUNK]
    }
}

/// The folio arena: stable `FolioId`s, reused LIFO after free.
#[derive(Clone, Debug, Default)]
pub(crate) struct Folios {
    pub slots: Vec<Folio>,
    free_slots: Vec<FolioId>,
    large: MetaChunks,
    free_large: Vec<u32>,
    live: u64,
    /// Pages of the live folios.
    live_pages: u64,
    /// `lru::*` bits of folio `i` at bits `2 * (i % 32)` of word `i / 32`.
    lru: Vec<u64>,
}

impl Folios {
    /// The `lru::*` bits of a folio.
    #[inline]
    pub(crate) fn lru(&self, id: FolioId) -> u8 {
        let i = id.index();
        // The two bits are stored as `lru::*` values.
        ((self.lru.get(i / 32).copied().unwrap_or(0) >> ((i % 32) * 2)) & 3) as u8
    }

    /// Sets the `lru::*` bits of a folio.
    pub(crate) fn set_lru(&mut self, id: FolioId, bits: u8) {
        let i = id.index();
        if self.lru.len() <= i / 32 {
            if bits == 0 {
                return;
            }
            self.lru.resize(i / 32 + 1, 0);
        }
        let sh = (i % 32) * 2;
        let w = &mut self.lru[i / 32];
        *w = (*w & !(3 << sh)) | (u64::from(bits & 3) << sh);
    }

    /// `folio_mark_accessed` (`mm/swap.c`, classic LRU as this host runs it: no MGLRU): the
    /// first access sets `PG_referenced`; the next one of an inactive folio activates it
    /// and clears `PG_referenced`; on an active folio `PG_referenced` is set again and stays.
    /// (An mlocked, unevictable folio would keep `PG_referenced` without being activated;
    /// the model does not track mlocked folios.)
    pub(crate) fn mark_accessed(&mut self, id: FolioId) {
        let b = self.lru(id);
        let nb = if b & lru::REFERENCED == 0 {
            b | lru::REFERENCED
        } else if b & lru::ACTIVE == 0 {
            lru::ACTIVE
        } else {
            b
        };
        self.set_lru(id, nb);
    }

    pub(crate) fn alloc(&mut self, pfn: Pfn, order: u8, fl: u8) -> FolioId {
        let meta = if order > 0 {
            let m = LargeMeta::new();
            match self.free_large.pop() {
                Some(i) => {
                    self.large[i as usize] = m;
                    i
                }
                None => crate::util::to_u32(self.large.push(m)),
            }
        } else {
            u32::MAX
        };
        let f = Folio {
            pfn: pfn.to_u32(),
            refcount: 0,
            mapcount: 0,
            meta,
            entire_mapcount: 0,
            order,
            flags: fl,
        };
        self.live += 1;
        self.live_pages += 1 << order;
        match self.free_slots.pop() {
            Some(id) => {
                self.slots[id.index()] = f;
                // A new folio is neither referenced nor active; a slot never used before
                // has no bits yet.
                self.set_lru(id, 0);
                id
            }
            None => {
                self.slots.push(f);
                FolioId::from_index(self.slots.len() - 1)
            }
        }
    }

    pub(crate) fn release(&mut self, id: FolioId) {
        let f = &mut self.slots[id.index()];
        debug_assert!(!f.test(flags::FREE));
        if f.meta != u32::MAX {
            self.large[f.meta as usize] = LargeMeta::default();
            self.free_large.push(f.meta);
        }
        self.live_pages -= 1 << f.order;
        f.flags = flags::FREE;
        f.meta = u32::MAX;
        self.free_slots.push(id);
        self.live -= 1;
    }

    #[inline]
    pub(crate) fn get(&self, id: FolioId) -> &Folio {
        &self.slots[id.index()]
    }
    #[inline]
    pub(crate) fn get_mut(&mut self, id: FolioId) -> &mut Folio {
        &mut self.slots[id.index()]
    }
    pub(crate) fn meta(&self, id: FolioId) -> &LargeMeta {
        &self.large[self.slots[id.index()].meta as usize]
    }
    pub(crate) fn meta_mut(&mut self, id: FolioId) -> &mut LargeMeta {
        let m = self.slots[id.index()].meta as usize;
        &mut self.large[m]
    }
    pub(crate) fn live(&self) -> u64 {
        self.live
    }
    /// Pages of the live folios (what a memcg holding every process has charged).
    pub(crate) fn live_pages(&self) -> u64 {
        self.live_pages
    }
    /// Some live folio is lazy-free (MADV_FREE'd and clean).
    pub(crate) fn any_lazyfree(&self) -> bool {
        self.slots
            .iter()
            .any(|f| !f.test(flags::FREE) && f.test(flags::LAZYFREE))
    }
    /// Slots in the arena, live or free: one more than the largest id handed out.
    pub(crate) fn nr_slots(&self) -> usize {
        self.slots.len()
    }
    /// Live folio ids in id order.
    pub(crate) fn iter_live(&self) -> impl Iterator<Item = FolioId> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, f)| !f.test(flags::FREE))
            .map(|(i, _)| FolioId::from_index(i))
    }

    /// Marks a page of the folio as holding non-zero data (a store happened).
    #[inline]
    pub(crate) fn set_nonzero(&mut self, id: FolioId, idx: u32) {
        let f = &mut self.slots[id.index()];
        if f.meta == u32::MAX {
            f.flags |= flags::NONZERO;
        } else {
            self.large[f.meta as usize].nonzero[(idx / 64) as usize] |= 1u64 << (idx % 64);
        }
    }

    /// `set_nonzero` for every page whose bit is set in `mask` (page `i` is bit `i % 64` of
    /// word `i / 64`), for a PMD-sized folio: one lookup for up to 512 stores.
    pub(crate) fn set_nonzero_mask(&mut self, id: FolioId, mask: &[u64; 8]) {
        let f = &mut self.slots[id.index()];
        if f.meta == u32::MAX {
            if mask.iter().any(|w| *w != 0) {
                f.flags |= flags::NONZERO;
            }
        } else {
            let nz = &mut self.large[f.meta as usize].nonzero;
            for (w, m) in nz.iter_mut().zip(mask) {
                *w |= m;
            }
        }
    }

    /// The page's content became zero (`folio_zero_range`).
    pub(crate) fn clear_nonzero(&mut self, id: FolioId, idx: u32) {
        let f = &mut self.slots[id.index()];
        if f.meta == u32::MAX {
            f.flags &= !flags::NONZERO;
        } else {
            self.large[f.meta as usize].nonzero[(idx / 64) as usize] &= !(1u64 << (idx % 64));
        }
    }

    pub(crate) fn is_nonzero(&self, id: FolioId, idx: u32) -> bool {
        let f = &self.slots[id.index()];
        if f.meta == u32::MAX {
            f.test(flags::NONZERO)
        } else {
            self.large[f.meta as usize].nonzero[(idx / 64) as usize] & (1u64 << (idx % 64)) != 0
        }
    }

    /// Accounts `delta` mappings of a large folio to mm `mmi`.
    pub(crate) fn mm_map_add(&mut self, id: FolioId, mmi: MmId, delta: i64) {
        let m = self.slots[id.index()].meta;
        if m != u32::MAX {
            self.large[m as usize].mm_maps.add(mmi, delta);
        }
    }

    /// `folio_maybe_mapped_shared`: mapped by more than one mm.
    pub(crate) fn maybe_mapped_shared(&self, id: FolioId) -> bool {
        let f = &self.slots[id.index()];
        f.meta != u32::MAX && self.large[f.meta as usize].mm_maps.len() > 1
    }

    /// The PTE mapcount of one page.
    pub(crate) fn page_mapcount(&self, id: FolioId, idx: u32) -> u32 {
        let f = &self.slots[id.index()];
        if f.meta == u32::MAX {
            f.mapcount
        } else {
            self.large[f.meta as usize]
                .page_mapcount
                .get(idx as usize)
                .copied()
                .unwrap_or(0)
        }
    }
}
