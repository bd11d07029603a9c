//! The model's invariant checker. Tests run it after every operation: a failure is a model
//! bug, reported with enough context to find it. It recomputes from the page tables what the
//! folios, counters and allocator claim, so any drift between them is caught.

use crate::folio::flags;
use crate::ids::{FolioId, MmId};
use crate::mm::vmf;
use crate::pgtable::WRITE;
use crate::types::{HPAGE_PMD_NR, PMD_SIZE};
use crate::util::{to_i64, to_u32};
use crate::vmstat::{MthpStat, VmItem};
use crate::Kernel;
use rustc_hash::FxHashMap;

/// What the page tables show of a large folio (order-0 folios are counted in a dense vector
/// by id instead: the checker runs after every op in tests, most folios are order 0, and a
/// hash entry per page made it the tests' main cost).
#[derive(Default, Clone)]
struct Seen {
    entire: u32,
    pages: Vec<u32>,
    /// Mappings per mm.
    mms: Vec<(MmId, u32)>,
}

impl Seen {
    fn by_mm(&mut self, mmi: MmId) {
        match self.mms.iter_mut().find(|(m, _)| *m == mmi) {
            Some(e) => e.1 += 1,
            None => self.mms.push((mmi, 1)),
        }
    }
}

/// A broken model invariant: a bug in the model, never a property of the input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what}")]
pub struct InvariantViolation {
    /// What is inconsistent, with the mm or folio concerned.
    pub what: String,
}

impl Kernel {
    /// Checks every invariant the model keeps (see ARCHITECTURE.md); the first one broken is
    /// reported.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        self.find_violation()
            .map_err(|what| InvariantViolation { what })
    }

    fn find_violation(&self) -> Result<(), String> {
        let free = self.buddy.check()?;
        let mut seen: FxHashMap<FolioId, Seen> = FxHashMap::default();
        // PTE mappings of each order-0 folio, by id.
        let mut order0 = vec![0u32; self.folios.nr_slots()];
        let mut pgtable_pages = 0u64;
        let mut huge_zero_mms = 0u32;
        // Swap PTEs per slot, over every mm.
        let mut swap_refs: FxHashMap<u32, u32> = FxHashMap::default();
        for (mmi, mm) in self.mms.iter() {
            let ctx = |m: String| format!("{mmi}: {m}");
            // VMAs
            let mut prev_end = 0;
            for (k, v) in &mm.vmas {
                if *k != v.start
                    || v.start >= v.end
                    || v.start % 4096 != 0
                    || v.end % 4096 != 0
                    || v.start < prev_end
                {
                    return Err(ctx(format!("bad vma {v:?}")));
                }
                prev_end = v.end;
            }
            pgtable_pages += mm.pgt.nr_pmd_tables() as u64
                + mm.pgt.live_pte_tables() as u64
                + mm.pgt.nr_deposited() as u64;
            // PTE tables the PMD entries reference: each live, none referenced twice, and no
            // live table unreferenced (a table freed early, e.g. by PT reclaim, must leave
            // both the PMD entry and the arena).
            let mut tables_seen = vec![false; mm.pgt.ptes.len()];
            let mut table_pmds = 0usize;
            let mut rss = 0u64;
            let mut rss_shmem = 0u64;
            let mut swap_ents = 0u64;
            let mut anon_huge_pmds = 0usize;
            let mut has_huge_zero = false;
            {
                for (slot, pmd) in mm.pgt.populated_pmds(0, u64::MAX) {
                    // Any VMA overlapping the slot (one may lie strictly inside it).
                    let first = mm
                        .vma_at(slot)
                        .or_else(|| mm.vmas.range(slot..slot + PMD_SIZE).next().map(|(_, v)| v));
                    let Some(vma) = first else {
                        return Err(ctx(format!(
                            "page table entry {pmd:?} at {slot:#x} outside any VMA"
                        )));
                    };
                    if pmd.is_huge() {
                        if !(vma.start <= slot && slot + PMD_SIZE <= vma.end) {
                            return Err(ctx(format!(
                                "huge PMD at {slot:#x} not inside one VMA {vma:?}"
                            )));
                        }
                        if pmd.has(WRITE) && !vma.has(vmf::WRITE) {
                            return Err(ctx(format!("writable PMD at {slot:#x} in read-only VMA")));
                        }
                        if pmd.is_huge_zero() {
                            anon_huge_pmds += 1;
                            has_huge_zero = true;
                            if pmd.has(WRITE) {
                                return Err(ctx(format!("writable huge zero PMD at {slot:#x}")));
                            }
                        } else {
                            let f = self.folios.get(pmd.folio());
                            if f.test(flags::FREE) || f.order != 9 {
                                return Err(ctx(format!("PMD at {slot:#x} maps bad folio {f:?}")));
                            }
                            let s = seen.entry(pmd.folio()).or_default();
                            s.entire += 1;
                            s.by_mm(mmi);
                            if f.test(flags::ANON) {
                                rss += u64::from(HPAGE_PMD_NR);
                                anon_huge_pmds += 1;
                            } else {
                                rss_shmem += u64::from(HPAGE_PMD_NR);
                            }
                        }
                    } else {
                        let ti = pmd.table_idx().index();
                        if ti >= tables_seen.len()
                            || tables_seen[ti]
                            || mm.pgt.pte_pfns[ti].is_none()
                        {
                            return Err(ctx(format!(
                                "PMD at {slot:#x} references a freed or shared PTE table {ti}"
                            )));
                        }
                        tables_seen[ti] = true;
                        table_pmds += 1;
                        let t = mm.pgt.pte_table(pmd.table_idx());
                        // The VMA of the previous PTE, looked up again only past its end (a
                        // lookup per PTE made the checker's cost a tree search per page).
                        let mut cur: Option<&crate::mm::Vma> = None;
                        for (j, pte) in t.iter().enumerate() {
                            if pte.is_none() {
                                continue;
                            }
                            let addr = slot + ((j as u64) << 12);
                            if cur.is_none_or(|v| !(v.start <= addr && addr < v.end)) {
                                cur = mm.vma_at(addr);
                            }
                            let Some(v) = cur else {
                                return Err(ctx(format!(
                                    "PTE {pte:?} at {addr:#x} outside any VMA"
                                )));
                            };
                            if pte.has(WRITE) && (!v.has(vmf::WRITE) || !pte.is_page()) {
                                return Err(ctx(format!("bad writable PTE {pte:?} at {addr:#x}")));
                            }
                            if pte.is_swap() {
                                let s = pte.swap_slot();
                                if self.swap.si.as_ref().is_none_or(|si| s == 0 || s >= si.max) {
                                    return Err(ctx(format!(
                                        "swap PTE {pte:?} at {addr:#x} names no slot"
                                    )));
                                }
                                *swap_refs.entry(s).or_default() += 1;
                                swap_ents += 1;
                            }
                            if pte.is_page() {
                                let f = self.folios.get(pte.folio());
                                if f.test(flags::FREE) || pte.idx() >= f.nr_pages() {
                                    return Err(ctx(format!(
                                        "PTE {pte:?} at {addr:#x} maps bad folio {f:?}"
                                    )));
                                }
                                if f.order == 0 {
                                    order0[pte.folio().index()] += 1;
                                } else {
                                    let s = seen.entry(pte.folio()).or_default();
                                    if s.pages.is_empty() {
                                        s.pages = vec![0; f.nr_pages() as usize];
                                    }
                                    s.pages[pte.idx() as usize] += 1;
                                    s.by_mm(mmi);
                                }
                                if f.test(flags::ANON) {
                                    rss += 1;
                                } else {
                                    rss_shmem += 1;
                                }
                            }
                        }
                    }
                }
            }
            if table_pmds != mm.pgt.live_pte_tables() {
                return Err(ctx(format!(
                    "{table_pmds} PMDs map PTE tables but {} tables are live",
                    mm.pgt.live_pte_tables()
                )));
            }
            // x86-64 deposits a page table under anonymous and huge-zero PMDs only.
            if anon_huge_pmds != mm.pgt.nr_deposited() {
                return Err(ctx(format!(
                    "{anon_huge_pmds} anonymous huge PMDs but {} deposited tables",
                    mm.pgt.nr_deposited()
                )));
            }
            if rss != mm.rss_anon {
                return Err(ctx(format!(
                    "MM_ANONPAGES {} but page tables map {rss}",
                    mm.rss_anon
                )));
            }
            if swap_ents != mm.swap_ents {
                return Err(ctx(format!(
                    "MM_SWAPENTS {} but page tables hold {swap_ents} swap entries",
                    mm.swap_ents
                )));
            }
            if rss_shmem != mm.rss_shmem {
                return Err(ctx(format!(
                    "MM_SHMEMPAGES {} but page tables map {rss_shmem}",
                    mm.rss_shmem
                )));
            }
            if has_huge_zero && !mm.huge_zero_ref {
                return Err(ctx(
                    "maps the huge zero page without holding a reference".into()
                ));
            }
            huge_zero_mms += u32::from(mm.huge_zero_ref);
        }
        if huge_zero_mms != self.huge_zero.users()
            || (self.huge_zero.users() > 0 && self.huge_zero.pfn().is_none())
        {
            return Err(format!(
                "huge zero users {} vs mms holding it {huge_zero_mms}",
                self.huge_zero.users()
            ));
        }
        // Folios against what maps them.
        let mut allocated = 0u64;
        let mut nr_anon = [0i64; 10];
        let mut partial = [0i64; 10];
        let mut pmd_mapped_thps = 0i64;
        let mut anon_pages = 0i64;
        let mut deferred = 0u64;
        let (mut nr_shmem, mut shmem_thps, mut shmem_pmdmapped) = (0i64, 0i64, 0i64);
        let mut flagged = 0usize;
        // Page cache in all (NR_FILE_PAGES); disk files and guest_memfd are not swap-backed.
        let (mut nr_file, mut file_thps, mut file_pmdmapped) = (0i64, 0i64, 0i64);
        let mut folio_pages = 0u64;
        for id in self.folios.iter_live() {
            let f = self.folios.get(id);
            allocated += u64::from(f.nr_pages());
            folio_pages += u64::from(f.nr_pages());
            let s = if f.order > 0 {
                seen.remove(&id).unwrap_or_default()
            } else {
                Seen::default()
            };
            if f.refcount == 0 {
                return Err(format!("live folio {id} with refcount 0: {f:?}"));
            }
            let pte_maps: u32 = order0[id.index()] + s.pages.iter().sum::<u32>();
            if u32::from(f.entire_mapcount) != s.entire || f.mapcount != pte_maps {
                return Err(format!(
                    "{id} {f:?}: page tables show entire {} pte {pte_maps}",
                    s.entire
                ));
            }
            // The flag against the cache: flagged folios are counted here, and the caches'
            // folios are checked flagged and owned below.
            let cached = f.test(flags::SHMEM);
            flagged += usize::from(cached);
            if !cached && !self.shmem.readahead.is_empty() && self.shmem.readahead.contains(&id) {
                return Err(format!(
                    "{id}: PG_readahead on a folio outside the page cache"
                ));
            }
            let in_swap_cache =
                !self.swap.folio_slot.is_empty() && self.swap.folio_slot.contains_key(&id);
            let cache_refs = if cached || in_swap_cache {
                f.nr_pages()
            } else {
                0
            };
            if f.refcount != s.entire + pte_maps + cache_refs {
                return Err(format!(
                    "{id} {f:?}: refcount != mappings {}",
                    s.entire + pte_maps
                ));
            }
            if f.order > 0 {
                let m = self.folios.meta(id);
                // An empty vector stands for all zeros (on either side), without cloning.
                let n = f.nr_pages() as usize;
                let at = |v: &[u32], i: usize| v.get(i).copied().unwrap_or(0);
                let len_ok = |v: &[u32]| v.is_empty() || v.len() == n;
                let same = len_ok(&m.page_mapcount)
                    && len_ok(&s.pages)
                    && (0..n).all(|i| at(&m.page_mapcount, i) == at(&s.pages, i));
                if !same {
                    return Err(format!(
                        "{id}: per-page mapcounts disagree with page tables"
                    ));
                }
                let mut want = s.mms.clone();
                let mut have = self.folios.mm_maps(id);
                want.sort_unstable();
                have.sort_unstable();
                if want != have {
                    return Err(format!(
                        "{id}: per-mm mappings {have:?} but page tables show {want:?}"
                    ));
                }
                let mapped = to_u32(s.pages.iter().filter(|c| **c > 0).count());
                if m.nr_pages_mapped != mapped {
                    return Err(format!(
                        "{id}: nr_pages_mapped {} != {mapped}",
                        m.nr_pages_mapped
                    ));
                }
                if f.test(flags::ANON) {
                    anon_pages += if f.entire_mapcount > 0 {
                        i64::from(f.nr_pages())
                    } else {
                        i64::from(mapped)
                    };
                }
            } else if f.test(flags::ANON) {
                anon_pages += i64::from(f.mapcount > 0);
            }
            if f.order >= 2 && f.test(flags::ANON) {
                nr_anon[f.order as usize] += 1;
                partial[f.order as usize] += i64::from(f.test(flags::PARTIALLY_MAPPED));
            }
            if f.order == 9 && f.entire_mapcount > 0 && f.test(flags::ANON) {
                pmd_mapped_thps += 1;
            }
            if f.test(flags::PARTIALLY_MAPPED) && !f.test(flags::DEFERRED) {
                return Err(format!("{id} partially mapped but not queued"));
            }
            deferred += u64::from(f.test(flags::DEFERRED));
        }
        // The page caches: every cached folio flagged and owned at its place (with the
        // counts checked below, owner is exactly the caches inverted), and counted by kind.
        for (i, inode) in self.shmem.inodes.iter().enumerate() {
            for (&index, &id) in &inode.cache {
                let f = self.folios.get(id);
                if !f.test(flags::SHMEM) {
                    return Err(format!(
                        "{id}: in inode {i}'s page cache without the page-cache flag"
                    ));
                }
                match self.shmem.owner.get(&id) {
                    Some(&(ino, at)) if ino.index() == i && at == index => {}
                    o => {
                        return Err(format!(
                            "{id}: in inode {i}'s page cache at {index} but owned as {o:?}"
                        ))
                    }
                }
                nr_file += i64::from(f.nr_pages());
                if inode.gmem.is_some() {
                    file_thps += i64::from(f.order == 9);
                    if f.entire_mapcount > 0 {
                        return Err(format!("{id}: guest_memfd folio mapped by a PMD"));
                    }
                    if f.flags & flags::ANON != 0 {
                        return Err(format!("{id}: guest_memfd folio marked anonymous"));
                    }
                } else if inode.kind == crate::readahead::InodeKind::Disk {
                    file_thps += i64::from(f.order == 9);
                    file_pmdmapped += i64::from(f.entire_mapcount > 0);
                } else {
                    nr_shmem += i64::from(f.nr_pages());
                    shmem_thps += i64::from(f.order == 9);
                    shmem_pmdmapped += i64::from(f.entire_mapcount > 0);
                }
            }
        }
        if let Some((id, _)) = seen.iter().next() {
            return Err(format!("page tables map freed folio {id}"));
        }
        self.check_shmem_swap(&mut swap_refs)?;
        self.check_swap(&swap_refs)?;
        let q = self.deferred_split_queue();
        if q.len() as u64 != deferred || self.ds_queue.len() != deferred {
            return Err(format!(
                "deferred queue length {} / {} but {deferred} folios flagged",
                q.len(),
                self.ds_queue.len()
            ));
        }
        for o in 2..10u8 {
            if self.vmstat.mthp_get(o, MthpStat::NrAnon) != nr_anon[o as usize] {
                return Err(format!(
                    "mthp nr_anon[{o}] {} != {}",
                    self.vmstat.mthp_get(o, MthpStat::NrAnon),
                    nr_anon[o as usize]
                ));
            }
            if self.vmstat.mthp_get(o, MthpStat::NrAnonPartiallyMapped) != partial[o as usize] {
                return Err(format!("mthp nr_anon_partially_mapped[{o}] wrong"));
            }
        }
        if self.vmstat.get(VmItem::NrAnonTransparentHugepages) != pmd_mapped_thps {
            return Err(format!(
                "nr_anon_transparent_hugepages {} != {pmd_mapped_thps}",
                self.vmstat.get(VmItem::NrAnonTransparentHugepages)
            ));
        }
        for (item, want) in [
            (VmItem::NrShmem, nr_shmem),
            (VmItem::NrFilePages, nr_file),
            (VmItem::NrShmemHugepages, shmem_thps),
            (VmItem::NrShmemPmdmapped, shmem_pmdmapped),
            (VmItem::NrFileHugepages, file_thps),
            (VmItem::NrFilePmdmapped, file_pmdmapped),
        ] {
            if self.vmstat.get(item) != want {
                return Err(format!(
                    "{} {} != {want}",
                    item.name(),
                    self.vmstat.get(item)
                ));
            }
        }
        // nr_dirty: the dirty pages of disk files' caches.
        let mut file_dirty = 0i64;
        for inode in &self.shmem.inodes {
            if inode.kind != crate::readahead::InodeKind::Disk {
                continue;
            }
            for &id in inode.cache.values() {
                let f = self.folios.get(id);
                if f.test(flags::DIRTY) {
                    file_dirty += i64::from(f.nr_pages());
                }
            }
        }
        if self.vmstat.get(VmItem::NrDirty) != file_dirty {
            return Err(format!(
                "nr_dirty {} != {file_dirty} dirty disk-file pages",
                self.vmstat.get(VmItem::NrDirty)
            ));
        }
        let cached: usize = self.shmem.inodes.iter().map(|i| i.cache.len()).sum();
        if cached != self.shmem.owner.len() || flagged != cached {
            return Err(format!(
                "{cached} cached folios but {} owned and {flagged} flagged",
                self.shmem.owner.len()
            ));
        }
        // tmpfs instances: used_blocks is what their files cache, within size=.
        for (m, sb) in self.shmem.mounts.iter().enumerate() {
            let used: u64 = self
                .shmem
                .inodes
                .iter()
                .filter(|i| i.mount.is_some_and(|x| x.0 as usize == m))
                .map(|i| i.nr_pages + i.nr_swapped())
                .sum();
            if used != sb.used_blocks || (sb.max_blocks != 0 && used > sb.max_blocks) {
                return Err(format!(
                    "tmpfs {m}: used_blocks {} (max {}), files cache {used} pages",
                    sb.used_blocks, sb.max_blocks
                ));
            }
        }
        if self.vmstat.get(VmItem::NrAnonPages) != anon_pages {
            return Err(format!(
                "nr_anon_pages {} != {anon_pages}",
                self.vmstat.get(VmItem::NrAnonPages)
            ));
        }
        if self.vmstat.get(VmItem::NrPageTablePages) != to_i64(pgtable_pages) {
            return Err(format!(
                "nr_page_table_pages {} != {pgtable_pages}",
                self.vmstat.get(VmItem::NrPageTablePages)
            ));
        }
        allocated += self.check_hugetlb()?;
        allocated += pgtable_pages
            + self.kallocs.iter().map(|&(_, o)| 1u64 << o).sum::<u64>()
            + if self.huge_zero.pfn().is_some() {
                512
            } else {
                0
            };
        if free + allocated != self.buddy.total_pages() {
            return Err(format!(
                "free {free} + allocated {allocated} != total {}",
                self.buddy.total_pages()
            ));
        }
        // The memcg's usage is derived from these: live folio pages (every one charged),
        // page tables, and a stock that never holds more than a batch.
        if folio_pages != self.folios.live_pages() {
            return Err(format!(
                "live folios hold {folio_pages} pages, the arena counts {}",
                self.folios.live_pages()
            ));
        }
        if let Some(cg) = &self.memcg {
            if cg.stock > crate::memcontrol::MEMCG_CHARGE_BATCH {
                return Err(format!("memcg stock {} above the batch", cg.stock));
            }
        }
        Ok(())
    }
}

impl Kernel {
    /// Shmem swap entries: each names its slots once (added to `refs`, the swap PTEs' counts)
    /// and no cached folio overlaps its indices.
    fn check_shmem_swap(&self, refs: &mut FxHashMap<u32, u32>) -> Result<(), String> {
        for (i, inode) in self.shmem.inodes.iter().enumerate() {
            let ino = crate::ids::InodeId::from_index(i);
            for (&first, &(slot, order)) in &inode.swapped {
                let nr = 1u32 << order;
                for k in 0..nr {
                    *refs.entry(slot + k).or_default() += 1;
                }
                if self.filemap_get_folio(ino, first).is_some()
                    || inode
                        .cache
                        .range(first..first + u64::from(nr))
                        .next()
                        .is_some()
                {
                    return Err(format!("inode {i}: index {first} is swapped and cached"));
                }
            }
        }
        Ok(())
    }

    /// Swap: each slot's count equals the swap PTEs naming it; the swap cache maps every
    /// slot of each cached folio to it (and nothing else); cluster counts and `inuse_pages`
    /// match.
    fn check_swap(&self, refs: &FxHashMap<u32, u32>) -> Result<(), String> {
        let Some(si) = self.swap.si.as_ref() else {
            if !self.swap.cache.is_empty() || !refs.is_empty() {
                return Err("swap entries or swap cache without a swap device".into());
            }
            return Ok(());
        };
        for slot in 1..si.max {
            let want = refs.get(&slot).copied().unwrap_or(0);
            if u32::from(si.count(slot)) != want {
                return Err(format!(
                    "swap slot {slot}: count {} but {want} swap PTEs",
                    si.count(slot)
                ));
            }
        }
        let mut n = 0usize;
        for (&id, &first) in &self.swap.folio_slot {
            let f = self.folios.get(id);
            if f.test(flags::FREE) {
                return Err(format!("freed folio {id} in the swap cache"));
            }
            for s in first..first + f.nr_pages() {
                if self.swap.cache.get(&s) != Some(&id) {
                    return Err(format!("swap cache slot {s} does not hold {id}"));
                }
            }
            n += f.nr_pages() as usize;
        }
        if n != self.swap.cache.len() {
            return Err(format!(
                "swap cache holds {} slots, its folios {n}",
                self.swap.cache.len()
            ));
        }
        if let Some(id) = self
            .swap
            .readahead
            .iter()
            .find(|id| !self.swap.folio_slot.contains_key(id))
        {
            return Err(format!(
                "folio {id} has PG_readahead but is not in the swap cache"
            ));
        }
        si.check(&|s| self.swap.cache.contains_key(&s))
    }
}

#[cfg(test)]
mod tests {
    //! The checker catches drift on the paths it takes shortcuts on (dense order-0 counts,
    //! the page caches walked once): each test corrupts one piece of a consistent state.
    use super::*;
    use crate::mmap::MapFlags;
    use crate::types::{AccessPattern, Pid, Prot};

    const BASE: u64 = 0x1000_0000_0000;

    /// A shared anonymous (shmem) mapping of 64 KiB, written: 16 order-0 page-cache folios.
    fn shmem_kernel() -> (Kernel, Pid) {
        let mut k = Kernel::new(crate::KernelConfig::default()).unwrap();
        let pid = k.spawn();
        let shared = MapFlags {
            shared: true,
            populate: false,
            fixed: false,
        };
        k.mmap(pid, BASE, 64 << 10, Prot::RW, shared).unwrap();
        k.access_seq(pid, BASE, BASE + (64 << 10), 4096, AccessPattern::Write)
            .unwrap();
        k.check_invariants().unwrap();
        (k, pid)
    }

    fn cached_folio(k: &Kernel) -> (FolioId, usize, u64) {
        let (i, inode) = k
            .shmem
            .inodes
            .iter()
            .enumerate()
            .find(|(_, i)| !i.cache.is_empty())
            .unwrap();
        let (&index, &id) = inode.cache.iter().next().unwrap();
        (id, i, index)
    }

    fn violation(k: &Kernel) -> String {
        k.check_invariants().unwrap_err().what
    }

    #[test]
    fn an_order0_mapcount_drift_is_caught() {
        let (mut k, _) = shmem_kernel();
        let (id, _, _) = cached_folio(&k);
        k.folios.get_mut(id).mapcount += 1;
        assert!(violation(&k).contains("page tables show entire 0 pte 1"));
    }

    #[test]
    fn a_cache_entry_owned_elsewhere_is_caught() {
        let (mut k, _) = shmem_kernel();
        let (id, _, index) = cached_folio(&k);
        k.shmem.owner.get_mut(&id).unwrap().1 = index + 1;
        assert!(violation(&k).contains("but owned as"), "{}", violation(&k));
    }

    #[test]
    fn a_flagged_folio_outside_every_cache_is_caught() {
        let (mut k, _) = shmem_kernel();
        let (id, i, index) = cached_folio(&k);
        k.shmem.inodes[i].cache.remove(&index);
        k.shmem.owner.remove(&id);
        // The counters as if it had left the cache, so only the flag disagrees.
        k.vmstat.add(VmItem::NrShmem, -1);
        k.vmstat.add(VmItem::NrFilePages, -1);
        let v = violation(&k);
        assert!(
            v.contains("15 cached folios but 15 owned and 16 flagged"),
            "{v}"
        );
    }

    #[test]
    fn an_unflagged_folio_in_a_cache_is_caught() {
        let (mut k, _) = shmem_kernel();
        let (id, _, _) = cached_folio(&k);
        k.folios.get_mut(id).flags &= !flags::SHMEM;
        // Without the page cache's reference, so only the flag disagrees.
        k.folios.get_mut(id).refcount -= 1;
        let v = violation(&k);
        assert!(v.contains("without the page-cache flag"), "{v}");
    }

    #[test]
    fn an_nr_shmem_drift_is_caught() {
        let (mut k, _) = shmem_kernel();
        k.vmstat.add(VmItem::NrShmem, 1);
        assert!(
            violation(&k).contains("nr_shmem 17 != 16"),
            "{}",
            violation(&k)
        );
    }
}
