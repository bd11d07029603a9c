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

    /// The bits after `folio_mark_accessed` of a folio with bits `b`.
    pub(crate) fn marked_accessed(b: u8) -> u8 {
        if b & REFERENCED == 0 {
            b | REFERENCED
        } else if b & ACTIVE == 0 {
            ACTIVE
        } else {
            b
        }
    }
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
    /// Per-page PTE mapcount; empty until the folio is first PTE-mapped (a boxed slice, not a
    /// `Vec`: 16 bytes, and never grows).
    pub page_mapcount: Box<[u32]>,
    /// Number of pages with a PTE mapcount > 0 (`_nr_pages_mapped` without the PMD part).
    pub nr_pages_mapped: u32,
    /// Which pages hold non-zero data, in 8 bytes ([`Nz`]); read and written only through
    /// the `Folios` methods, which own the bitmaps it may point to.
    nonzero: Nz,
    /// Deferred-split queue links (`_deferred_list`).
    pub(crate) ds_prev: FolioLink,
    pub(crate) ds_next: FolioLink,
    /// Mappings per mm (`_mm_id` / `_mm_id_mapcount`, 6.15 MM-owner tracking): which mms map
    /// the folio and how often. More than one entry means "maybe mapped shared".
    mm_maps: MmMaps,
    /// Virtual address of page 0 where the folio was first mapped (fork keeps addresses; an
    /// mremap does not update it): where the model looks for a folio's mappings first (the
    /// kernel walks anon_vmas).
    pub va: u64,
}

/// `(mm, mappings)` pairs, the first two inline (the kernel tracks two MM ids per large
/// folio); a folio mapped by three or more processes (rare) spills the rest into
/// `Folios::mm_more`, so the record is 20 bytes.
#[derive(Clone, Debug, Default)]
pub(crate) struct MmMaps {
    inline: [(MmId, u32); 2],
    len: u8,
}

impl MmMaps {
    fn inline(&self) -> &[(MmId, u32)] {
        &self.inline[..self.len as usize]
    }
    /// Adds `delta` mappings for `mm`, dropping the entry at zero; `more` is the spill.
    fn add(&mut self, mm: MmId, delta: i64, more: &mut Vec<(MmId, u32)>) {
        let n = self.len as usize;
        if let Some(i) = self.inline().iter().position(|e| e.0 == mm) {
            let c = i64::from(self.inline[i].1) + delta;
            debug_assert!(c >= 0);
            if c == 0 {
                self.inline[i] = self.inline[n - 1];
                self.len -= 1;
                if let Some(m) = more.pop() {
                    self.inline[self.len as usize] = m;
                    self.len += 1;
                }
            } else {
                self.inline[i].1 = count(c);
            }
        } else if let Some(i) = more.iter().position(|e| e.0 == mm) {
            let c = i64::from(more[i].1) + delta;
            debug_assert!(c >= 0);
            if c == 0 {
                more.swap_remove(i);
            } else {
                more[i].1 = count(c);
            }
        } else {
            debug_assert!(delta > 0);
            if n < 2 {
                self.inline[n] = (mm, count(delta));
                self.len += 1;
            } else {
                more.push((mm, count(delta)));
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
            page_mapcount: Box::default(),
            nr_pages_mapped: 0,
            nonzero: Nz::ZERO,
            ds_prev: FolioLink::NONE,
            ds_next: FolioLink::NONE,
            mm_maps: MmMaps::default(),
            va: 0,
        }
    }
}

/// Which pages of a large folio hold non-zero data, in 8 bytes. A folio of up to 64 pages
/// keeps a plain bitmap. A larger one (order 7 to 9) keeps one of three forms, chosen by
/// the `Folios` methods so that the common cases cost no allocation: every page non-zero
/// (a THP QEMU preallocated or a guest filled), a handful of non-zero pages (a THP touched
/// once: the fault's own store), or an index into `Folios::nz_pool`, a 512-bit bitmap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Nz(u64);

impl Nz {
    /// No page non-zero (an empty handful, or an all-zero small bitmap).
    const ZERO: Nz = Nz(0);
    /// Order >= 7: every page non-zero.
    const ALL: Nz = Nz(1 << 62);
    /// Order >= 7: the low 32 bits index `Folios::nz_pool`.
    const POOL: u64 = 1 << 63;
    /// Order >= 7, neither tag: up to `FEW` 9-bit page indices from bit 0, their count at
    /// `FEW_SHIFT`.
    const FEW: u64 = 6;
    const FEW_SHIFT: u32 = 54;

    /// The pool entry of a folio of `order` (a small folio's record is a plain bitmap).
    fn pool(self, order: u8) -> Option<usize> {
        (order > 6 && self.0 & Nz::POOL != 0).then_some((self.0 & 0xffff_ffff) as usize)
    }
    fn few(self) -> impl Iterator<Item = u32> {
        let n = (self.0 >> Nz::FEW_SHIFT) as u32;
        (0..n).map(move |k| ((self.0 >> (9 * k)) & 0x1ff) as u32)
    }
    fn few_len(self) -> u64 {
        self.0 >> Nz::FEW_SHIFT
    }
    fn few_push(self, idx: u32) -> Nz {
        let n = self.few_len();
        debug_assert!(n < Nz::FEW);
        let v = (self.0 & !(7 << Nz::FEW_SHIFT)) | (u64::from(idx) << (9 * n));
        Nz(v | ((n + 1) << Nz::FEW_SHIFT))
    }
}

/// Bitmap words a folio of `order` uses (the rest of an `[u64; 8]` stays zero).
fn nz_words(order: u8) -> usize {
    (1usize << order).div_ceil(64)
}

/// All `n` pages' bits of a `[u64; 8]` bitmap set.
fn nz_full(w: &[u64; 8], order: u8) -> bool {
    let n = 1u32 << order;
    w.iter().enumerate().all(|(i, &x)| {
        let lo = 64 * crate::util::to_u32(i);
        if lo >= n {
            true
        } else if n - lo >= 64 {
            x == u64::MAX
        } else {
            x == (1u64 << (n - lo)) - 1
        }
    })
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
    /// Bitmaps of large folios whose non-zero pages are neither all, none nor a handful
    /// ([`Nz`]), and the free entries.
    nz_pool: Vec<[u64; 8]>,
    nz_free: Vec<u32>,
    /// `MmMaps` entries past the two inline ones, by `meta` index.
    mm_more: std::collections::BTreeMap<u32, Vec<(MmId, u32)>>,
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
        let nb = lru::marked_accessed(self.lru(id));
        self.set_lru(id, nb);
    }

    /// `alloc` of an order-0 folio at each of `pfns`, in order (the same ids as that many
    /// `alloc` calls), each already in the state given: `flags`, `refs` mappings (refcount
    /// and mapcount), LRU bits `lru_bits`. Writes the ids to `ids`. (The extent fault path:
    /// a run of new pages mapped at once.)
    pub(crate) fn alloc_run(
        &mut self,
        pfns: &[Pfn],
        fl: u8,
        refs: u32,
        lru_bits: u8,
        ids: &mut [FolioId],
    ) {
        let n = pfns.len() as u64;
        for (pfn, out) in pfns.iter().zip(ids.iter_mut()) {
            let f = Folio {
                pfn: pfn.to_u32(),
                refcount: refs,
                mapcount: refs,
                meta: u32::MAX,
                entire_mapcount: 0,
                order: 0,
                flags: fl,
            };
            let id = match self.free_slots.pop() {
                Some(id) => {
                    self.slots[id.index()] = f;
                    id
                }
                None => {
                    self.slots.push(f);
                    FolioId::from_index(self.slots.len() - 1)
                }
            };
            // A reused slot loses its old bits (as in `alloc`).
            self.set_lru(id, lru_bits);
            *out = id;
        }
        self.live += n;
        self.live_pages += n;
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
            let m = f.meta;
            if let Some(p) = self.large[m as usize].nonzero.pool(f.order) {
                self.nz_free.push(crate::util::to_u32(p));
            }
            self.mm_more.remove(&m);
            self.large[m as usize] = LargeMeta::default();
            self.free_large.push(m);
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
            return;
        }
        let (m, order) = (f.meta as usize, f.order);
        let nz = self.large[m].nonzero;
        if order <= 6 {
            self.large[m].nonzero = Nz(nz.0 | 1 << idx);
        } else if nz == Nz::ALL {
        } else if let Some(p) = nz.pool(order) {
            let w = &mut self.nz_pool[p];
            let bit = 1u64 << (idx % 64);
            let word = &mut w[(idx / 64) as usize];
            if *word & bit == 0 {
                *word |= bit;
                // Orders 7-9 use whole words: the bitmap can only be full when this one is.
                if *word == u64::MAX && nz_full(w, order) {
                    self.nz_free.push(crate::util::to_u32(p));
                    self.large[m].nonzero = Nz::ALL;
                }
            }
        } else if !nz.few().any(|i| i == idx) {
            if nz.few_len() < Nz::FEW {
                self.large[m].nonzero = nz.few_push(idx);
            } else {
                let mut w = self.nonzero_words(id);
                w[(idx / 64) as usize] |= 1 << (idx % 64);
                self.store_nonzero(id, &w);
            }
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
            return;
        }
        if self.large[f.meta as usize].nonzero == Nz::ALL && f.order > 6 {
            return;
        }
        let mut w = self.nonzero_words(id);
        for (x, m) in w.iter_mut().zip(mask) {
            *x |= m;
        }
        self.store_nonzero(id, &w);
    }

    /// The page's content became zero (`folio_zero_range`).
    pub(crate) fn clear_nonzero(&mut self, id: FolioId, idx: u32) {
        let f = &mut self.slots[id.index()];
        if f.meta == u32::MAX {
            f.flags &= !flags::NONZERO;
            return;
        }
        let mut w = self.nonzero_words(id);
        w[(idx / 64) as usize] &= !(1u64 << (idx % 64));
        self.store_nonzero(id, &w);
    }

    pub(crate) fn is_nonzero(&self, id: FolioId, idx: u32) -> bool {
        let f = &self.slots[id.index()];
        if f.meta == u32::MAX {
            return f.test(flags::NONZERO);
        }
        let nz = self.large[f.meta as usize].nonzero;
        if f.order <= 6 {
            nz.0 >> idx & 1 != 0
        } else if nz == Nz::ALL {
            true
        } else if let Some(p) = nz.pool(f.order) {
            self.nz_pool[p][(idx / 64) as usize] & (1u64 << (idx % 64)) != 0
        } else {
            nz.few().any(|i| i == idx)
        }
    }

    /// A large folio's non-zero pages as a bitmap (page `i` is bit `i % 64` of word `i / 64`).
    pub(crate) fn nonzero_words(&self, id: FolioId) -> [u64; 8] {
        let f = &self.slots[id.index()];
        let nz = self.large[f.meta as usize].nonzero;
        let mut w = [0u64; 8];
        if f.order <= 6 {
            w[0] = nz.0;
        } else if nz == Nz::ALL {
            w[..nz_words(f.order)].fill(u64::MAX);
        } else if let Some(p) = nz.pool(f.order) {
            w = self.nz_pool[p];
        } else {
            for i in nz.few() {
                w[(i / 64) as usize] |= 1 << (i % 64);
            }
        }
        w
    }

    /// Sets a large folio's non-zero pages from a bitmap, in the form [`Nz`] prefers for it
    /// (a pool entry only when neither all, none nor a handful of pages are non-zero).
    fn store_nonzero(&mut self, id: FolioId, w: &[u64; 8]) {
        let f = &self.slots[id.index()];
        let (m, order) = (f.meta as usize, f.order);
        let old = self.large[m].nonzero;
        if order <= 6 {
            self.large[m].nonzero = Nz(w[0]);
            return;
        }
        let ones: u32 = w.iter().map(|x| x.count_ones()).sum();
        let new = if nz_full(w, order) {
            Nz::ALL
        } else if u64::from(ones) <= Nz::FEW {
            let mut nz = Nz::ZERO;
            for (k, &x) in w.iter().enumerate() {
                let mut x = x;
                while x != 0 {
                    nz = nz.few_push(64 * crate::util::to_u32(k) + x.trailing_zeros());
                    x &= x - 1;
                }
            }
            nz
        } else {
            let p = match old.pool(order) {
                Some(p) => p,
                None => match self.nz_free.pop() {
                    Some(p) => p as usize,
                    None => {
                        self.nz_pool.push([0; 8]);
                        self.nz_pool.len() - 1
                    }
                },
            };
            self.nz_pool[p] = *w;
            Nz(Nz::POOL | p as u64)
        };
        if let Some(p) = old.pool(order) {
            if new.pool(order).is_none() {
                self.nz_free.push(crate::util::to_u32(p));
            }
        }
        self.large[m].nonzero = new;
    }

    /// Accounts `delta` mappings of a large folio to mm `mmi`.
    pub(crate) fn mm_map_add(&mut self, id: FolioId, mmi: MmId, delta: i64) {
        let m = self.slots[id.index()].meta;
        if m != u32::MAX {
            let mut more = self.mm_more.remove(&m).unwrap_or_default();
            self.large[m as usize].mm_maps.add(mmi, delta, &mut more);
            if !more.is_empty() {
                self.mm_more.insert(m, more);
            }
        }
    }

    /// `folio_maybe_mapped_shared`: mapped by more than one mm.
    pub(crate) fn maybe_mapped_shared(&self, id: FolioId) -> bool {
        let f = &self.slots[id.index()];
        // Spilled entries exist only while both inline ones are in use.
        f.meta != u32::MAX && self.large[f.meta as usize].mm_maps.len > 1
    }

    /// The mms mapping a large folio and how often (`_mm_id` / `_mm_id_mapcount`, and the
    /// mappings of any further mm); empty for a small folio.
    pub(crate) fn mm_maps(&self, id: FolioId) -> Vec<(MmId, u32)> {
        let m = self.slots[id.index()].meta;
        if m == u32::MAX {
            return Vec::new();
        }
        let mut v = self.large[m as usize].mm_maps.inline().to_vec();
        if let Some(more) = self.mm_more.get(&m) {
            v.extend_from_slice(more);
        }
        v
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

// The per-THP memory figure of `thpsim bench` (<= 128 bytes) rests on this record's size.
const _: () = assert!(std::mem::size_of::<LargeMeta>() <= 64);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum NzOp {
        Set(u32),
        Clear(u32),
        Mask([u64; 8]),
        /// Set every page from 0 to n (a whole-range store).
        Fill(u32),
    }

    fn nz_op() -> impl Strategy<Value = NzOp> {
        prop_oneof![
            4 => (0u32..512).prop_map(NzOp::Set),
            2 => (0u32..512).prop_map(NzOp::Clear),
            1 => proptest::array::uniform8(prop_oneof![Just(0u64), Just(u64::MAX), any::<u64>()])
                .prop_map(NzOp::Mask),
            1 => (0u32..=512).prop_map(NzOp::Fill),
        ]
    }

    proptest! {
        /// Whatever form the compact record takes (bitmap, all, a handful, a pool entry),
        /// every page reads back as a plain bitmap would, pool entries are given back when
        /// no longer used, and releasing the folio leaves no pool entry in use.
        #[test]
        fn nonzero_pages_read_back_as_a_bitmap(
            order in prop_oneof![Just(2u8), Just(4), Just(6), Just(7), Just(8), Just(9)],
            ops in proptest::collection::vec(nz_op(), 0..80),
        ) {
            let mut f = Folios::default();
            let other = f.alloc(Pfn(0), 9, 0);
            f.set_nonzero(other, 3);
            f.set_nonzero(other, 300);
            for i in 0..7 {
                f.set_nonzero(other, 10 + i);
            }
            let id = f.alloc(Pfn(512), order, 0);
            let n = 1u32 << order;
            let mut want = vec![false; n as usize];
            for op in ops {
                match op {
                    NzOp::Set(i) => {
                        let i = i % n;
                        f.set_nonzero(id, i);
                        want[i as usize] = true;
                    }
                    NzOp::Clear(i) => {
                        let i = i % n;
                        f.clear_nonzero(id, i);
                        want[i as usize] = false;
                    }
                    NzOp::Mask(mut m) => {
                        // Only the folio's own pages.
                        for (k, w) in m.iter_mut().enumerate() {
                            let lo = 64 * crate::util::to_u32(k);
                            if lo >= n {
                                *w = 0;
                            } else if n - lo < 64 {
                                *w &= (1u64 << (n - lo)) - 1;
                            }
                        }
                        f.set_nonzero_mask(id, &m);
                        for i in 0..n {
                            if m[(i / 64) as usize] >> (i % 64) & 1 != 0 {
                                want[i as usize] = true;
                            }
                        }
                    }
                    NzOp::Fill(upto) => {
                        for i in 0..upto.min(n) {
                            f.set_nonzero(id, i);
                            want[i as usize] = true;
                        }
                    }
                }
                for i in 0..n {
                    prop_assert_eq!(f.is_nonzero(id, i), want[i as usize], "page {}", i);
                }
                let w = f.nonzero_words(id);
                for i in 0..512u32 {
                    let bit = w[(i / 64) as usize] >> (i % 64) & 1 != 0;
                    prop_assert_eq!(bit, i < n && want[i as usize]);
                }
                // A pool entry only for a mixed order >= 7 record with more than a handful.
                let ones = want.iter().filter(|b| **b).count() as u64;
                let pooled = f.large[f.get(id).meta as usize].nonzero.pool(order).is_some();
                prop_assert_eq!(pooled, order > 6 && ones > Nz::FEW && ones < u64::from(n));
            }
            // The other folio (a pool entry of its own) is untouched.
            prop_assert!(f.is_nonzero(other, 3) && f.is_nonzero(other, 300));
            prop_assert!(!f.is_nonzero(other, 4));
            f.release(id);
            f.release(other);
            prop_assert_eq!(f.nz_free.len(), f.nz_pool.len());
        }
    }

    #[test]
    fn mappings_of_a_third_mm_spill_and_come_back() {
        let mut f = Folios::default();
        let id = f.alloc(Pfn(0), 9, 0);
        let mm = |i: usize| MmId::from_index(i);
        for i in 0..4 {
            f.mm_map_add(id, mm(i), 1 + i64::try_from(i).unwrap());
        }
        assert!(f.maybe_mapped_shared(id));
        let mut v = f.mm_maps(id);
        v.sort_unstable();
        assert_eq!(v, vec![(mm(0), 1), (mm(1), 2), (mm(2), 3), (mm(3), 4)]);
        f.mm_map_add(id, mm(0), -1);
        f.mm_map_add(id, mm(2), -3);
        let mut v = f.mm_maps(id);
        v.sort_unstable();
        assert_eq!(v, vec![(mm(1), 2), (mm(3), 4)]);
        assert!(f.mm_more.is_empty(), "both left inline");
        f.mm_map_add(id, mm(1), -2);
        assert!(!f.maybe_mapped_shared(id));
        assert_eq!(f.mm_maps(id), vec![(mm(3), 4)]);
    }
}
