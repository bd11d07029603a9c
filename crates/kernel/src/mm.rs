//! Address spaces: `struct mm_struct`, `struct vm_area_struct` and the VMA tree operations of
//! `mm/vma.c` / `mm/mmap.c` (Linux 6.18) that THP behaviour depends on: lookup, split at an
//! address (which splits a PMD mapping that straddles it, `vma_adjust_trans_huge`) and merging
//! of compatible neighbours (`vma_merge_existing_range`, `is_mergeable_anon_vma`).

use crate::ids::{AnonVmaId, MmId};
use crate::pgtable::PageTables;
use crate::types::{Pid, Prot, PAGE_SHIFT};
use std::collections::BTreeMap;

/// VMA flags (subset of `include/linux/mm.h` VM_*).
pub mod vmf {
    pub const READ: u32 = 1 << 0;
    pub const WRITE: u32 = 1 << 1;
    pub const EXEC: u32 = 1 << 2;
    pub const SHARED: u32 = 1 << 3;
    pub const LOCKED: u32 = 1 << 13;
    /// Charged to the commit limit: set by mmap of a private writable mapping and by the
    /// first mprotect that makes a private mapping writable, never cleared by mprotect
    /// (`accountable_mapping`, `mprotect_fixup`). It takes part in merging, so a never-written
    /// read-only mapping does not merge with one that was once writable.
    pub const ACCOUNT: u32 = 1 << 20;
    pub const DONTFORK: u32 = 1 << 17;
    pub const HUGEPAGE: u32 = 1 << 29;
    pub const NOHUGEPAGE: u32 = 1 << 30;
    pub const UFFD_MISSING: u32 = 1 << 9;
    pub const UFFD_WP: u32 = 1 << 12;
    pub const UFFD_MINOR: u32 = 1 << 14;
    pub const PROT_MASK: u32 = READ | WRITE | EXEC;
    pub const UFFD_MASK: u32 = UFFD_MISSING | UFFD_WP | UFFD_MINOR;
}

pub fn prot_to_vmflags(p: Prot) -> u32 {
    (if p.read { vmf::READ } else { 0 })
        | (if p.write { vmf::WRITE } else { 0 })
        | (if p.exec { vmf::EXEC } else { 0 })
}

/// What backs a VMA (`vma->vm_ops`, `vma->vm_file`): where the fault path dispatches
/// (`vma_is_anonymous`). Private anonymous memory, or a shmem file (`shmem_vm_ops`, also for
/// `MAP_SHARED|MAP_ANONYMOUS`, `shmem_zero_setup`); `vma.pgoff` is then the file page offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum VmaBacking {
    #[default]
    Anon,
    Shmem {
        inode: crate::ids::InodeId,
    },
    /// A hugetlbfs file (`VM_HUGETLB`): its pages, faults and reservations are
    /// `hugetlb.rs`'s, never in the mm's page tables. `resv` is the private reserve map when
    /// this VMA owns one (`HPAGE_RESV_OWNER`; a fork child's private VMA has none), and
    /// `unmapped` is `HPAGE_RESV_UNMAPPED`: the owner took a page back from this (child) VMA.
    Hugetlb {
        inode: crate::ids::HugetlbInodeId,
        resv: Option<crate::ids::ResvMapId>,
        unmapped: bool,
    },
    /// A private mapping of `/dev/zero` (`mmap_zero` → `vma_set_anonymous`): anonymous
    /// (`vma_is_anonymous`: no `vm_ops`) but with `vm_file` set, so it does not merge with
    /// other anonymous VMAs, smaps names it `/dev/zero`, `MADV_REMOVE` is EACCES rather than
    /// EINVAL, and mremap cannot move it together with other VMAs (`vma_multi_allowed`:
    /// `zero_fops` has its own `get_unmapped_area`).
    DevZero,
    /// A regular file of a disk filesystem (`ext4_file_vm_ops`: `filemap_fault`,
    /// `filemap_map_pages`, `ext4_page_mkwrite`; no `huge_fault`); see `readahead.rs`.
    File {
        inode: crate::ids::InodeId,
    },
}

impl VmaBacking {
    /// The shmem inode behind a VMA, if any (`shmem_file(vma->vm_file)`).
    pub fn inode(self) -> Option<crate::ids::InodeId> {
        match self {
            VmaBacking::Anon | VmaBacking::DevZero | VmaBacking::Hugetlb { .. } => None,
            VmaBacking::Shmem { inode } | VmaBacking::File { inode } => Some(inode),
        }
    }

    /// `is_vm_hugetlb_page`.
    pub fn is_hugetlb(self) -> bool {
        matches!(self, VmaBacking::Hugetlb { .. })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    pub flags: u32,
    /// `vma->anon_vma`: created by the first fault that needs rmap (not by zero-page reads).
    pub anon_vma: Option<AnonVmaId>,
    pub pgoff: u64,
    pub backing: VmaBacking,
    /// `vma->swap_readahead_info` (`mm/swap_state.c`): the last swap fault's address, the
    /// readahead window it got and the readahead hits since, packed as the kernel packs them
    /// (`SWAP_RA_VAL`); 0 in a new VMA, copied by a split, fork and mremap (`vm_area_dup`).
    pub swap_readahead_info: u64,
}

impl Vma {
    #[inline]
    pub fn has(&self, f: u32) -> bool {
        self.flags & f != 0
    }
    /// `vma_is_accessible`: any of read/write/exec.
    pub fn accessible(&self) -> bool {
        self.flags & vmf::PROT_MASK != 0
    }
    /// `userfaultfd_armed`.
    pub fn uffd_armed(&self) -> bool {
        self.flags & vmf::UFFD_MASK != 0
    }
    pub fn len(&self) -> u64 {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
    /// `vma_is_anonymous`.
    pub fn is_anonymous(&self) -> bool {
        matches!(self.backing, VmaBacking::Anon | VmaBacking::DevZero)
    }
    /// The file page offset of `addr` (`linear_page_index`).
    pub fn linear_page_index(&self, addr: u64) -> u64 {
        ((addr - self.start) >> PAGE_SHIFT) + self.pgoff
    }
}

/// `prctl(PR_SET_THP_DISABLE)` state of an mm (`MMF_DISABLE_THP_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ThpDisable {
    #[default]
    No,
    /// `PR_SET_THP_DISABLE, 1, 0`: no THP at all.
    Completely,
    /// `PR_SET_THP_DISABLE, 1, PR_THP_DISABLE_EXCEPT_ADVISED` (6.18): only in VM_HUGEPAGE VMAs.
    ExceptAdvised,
}

#[derive(Clone, Debug, Default)]
pub struct Mm {
    pub vmas: BTreeMap<u64, Vma>,
    pub pgt: PageTables,
    /// `MMF_HUGE_ZERO_FOLIO`: this mm holds a reference on the huge zero folio.
    pub huge_zero_ref: bool,
    pub thp_disable: ThpDisable,
    /// On khugepaged's mm list (`MMF_VM_HUGEPAGE`).
    pub khugepaged_registered: bool,
    /// `MM_ANONPAGES`; changed only through `Mm::add_mm_counter`.
    pub rss_anon: u64,
    /// `MM_SHMEMPAGES`; changed only through `Mm::add_mm_counter`.
    pub rss_shmem: u64,
    /// `MM_SWAPENTS`: swap PTEs; changed only through `Mm::add_mm_counter`.
    pub swap_ents: u64,
    /// The VMA the last fault-path lookup found (`mm->mmap_cache`'s modern cousin, the
    /// per-VMA lock fast path): every VMA mutation clears it via `invalidate_vma_cache`.
    pub(crate) vma_cache: std::cell::Cell<Option<Vma>>,
    /// This process's userfaultfd (one per process in the model).
    pub uffd: Option<Box<crate::userfaultfd_ctx::Uffd>>,
    pub users: u32,
    /// `thp_zeroing=lazy` (proposal): PMD-aligned address → the PMD-sized folio being mapped
    /// page by page there. Checked at every use (`Kernel::lazy_thp_of`); an entry goes when
    /// any page of the folio is unmapped or the folio is remapped by a PMD.
    pub(crate) lazy_thps: rustc_hash::FxHashMap<u64, crate::folio::FolioId>,
}

/// The per-mm RSS counters (`enum mm_counters`, `mm_counter()` picks one for a folio).
/// `MM_FILEPAGES` comes with disk files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MmCounter {
    AnonPages,
    ShmemPages,
    SwapEnts,
}

impl Mm {
    /// `oom_badness` with `oom_score_adj` 0: resident pages, swap entries and page-table
    /// pages (PTE tables; the few upper-level tables are left out).
    pub(crate) fn oom_badness(&self) -> u64 {
        self.rss_anon + self.rss_shmem + self.swap_ents + self.pgt.live_pte_tables() as u64
    }

    /// `add_mm_counter`: `delta` pages more (or fewer) of `counter` mapped by this mm.
    #[inline]
    pub(crate) fn add_mm_counter(&mut self, counter: MmCounter, delta: i64) {
        let c = match counter {
            MmCounter::AnonPages => &mut self.rss_anon,
            MmCounter::ShmemPages => &mut self.rss_shmem,
            MmCounter::SwapEnts => &mut self.swap_ents,
        };
        *c = c
            .checked_add_signed(delta)
            .expect("an mm counter never goes below zero");
    }

    /// `find_vma` restricted to VMAs containing `addr`.
    #[inline]
    pub fn vma_at(&self, addr: u64) -> Option<&Vma> {
        self.vmas
            .range(..=addr)
            .next_back()
            .map(|(_, v)| v)
            .filter(|v| v.end > addr)
    }

    /// A copy of the VMA containing `addr`, through the one-entry cache (fault paths).
    #[inline]
    pub fn vma_lookup(&self, addr: u64) -> Option<Vma> {
        if let Some(v) = self.vma_cache.get() {
            if v.start <= addr && addr < v.end {
                return Some(v);
            }
        }
        let v = self.vma_at(addr).copied();
        if v.is_some() {
            self.vma_cache.set(v);
        }
        v
    }

    /// Sets `swap_readahead_info` of the VMA containing `addr` (a field no walk or merge
    /// reads, so the VMA cache is updated in place rather than dropped).
    pub(crate) fn set_swap_readahead_info(&mut self, addr: u64, val: u64) {
        let Some(start) = self.vma_start_at(addr) else {
            return;
        };
        if let Some(v) = self.vmas.get_mut(&start) {
            v.swap_readahead_info = val;
            let v = *v;
            if self.vma_cache.get().is_some_and(|c| c.start == v.start) {
                self.vma_cache.set(Some(v));
            }
        }
    }

    /// Must be called by every change to `vmas`.
    #[inline]
    pub fn invalidate_vma_cache(&self) {
        self.vma_cache.set(None);
    }

    /// The start key of the VMA containing `addr`.
    pub fn vma_start_at(&self, addr: u64) -> Option<u64> {
        self.vma_at(addr).map(|v| v.start)
    }

    /// Whether any VMA overlaps `[start, end)` (`vma_starts_in` without the allocation, for
    /// per-slot checks in walks).
    pub fn has_vma_in(&self, start: u64, end: u64) -> bool {
        self.vma_at(start).is_some() || self.vmas.range(start..end).next().is_some()
    }

    /// VMAs overlapping `[start, end)`, in address order (cloned keys).
    pub fn vma_starts_in(&self, start: u64, end: u64) -> Vec<u64> {
        let first = self.vma_start_at(start);
        let mut v: Vec<u64> = first.into_iter().collect();
        v.extend(
            self.vmas
                .range(start..end)
                .map(|(k, _)| *k)
                .filter(|k| Some(*k) != first),
        );
        v
    }

    /// Whether `[start, end)` is completely covered by VMAs without holes.
    pub fn range_fully_mapped(&self, start: u64, end: u64) -> bool {
        let mut cur = start;
        while cur < end {
            match self.vma_at(cur) {
                Some(v) => cur = v.end,
                None => return false,
            }
        }
        true
    }

    /// Two adjacent VMAs can be one (`can_vma_merge_*`, `is_mergeable_anon_vma`).
    pub fn mergeable(a: &Vma, b: &Vma) -> bool {
        a.end == b.start
            // hugetlbfs_file_mmap sets VM_DONTEXPAND: hugetlb VMAs never merge.
            && !a.backing.is_hugetlb()
            && a.backing == b.backing
            && a.flags == b.flags
            && a.pgoff + ((a.end - a.start) >> PAGE_SHIFT) == b.pgoff
            && (a.anon_vma.is_none() || b.anon_vma.is_none() || a.anon_vma == b.anon_vma)
    }

    /// `is_mergeable_anon_vma`: may a VMA whose anon_vma is `moving` (the changed or new one)
    /// join a neighbour whose anon_vma is `neighbour`? A neighbour with an anon_vma of its
    /// own lends it to a VMA without one unless the neighbour is a fork child's
    /// (`vma_is_fork_child`: its chain also links the parent's). The other way round, the
    /// neighbour gets a copy (`dup_anon_vma`) when `dup_merge` (6.16+, measured on the 6.18
    /// host: scenarios/conformance/FINDINGS.md §12), again unless the moving one is forked;
    /// before 6.16 that merge was refused (the empty chain of the neighbour is not singular).
    pub fn anon_vma_mergeable(
        moving: Option<AnonVmaId>,
        neighbour: Option<AnonVmaId>,
        dup_merge: bool,
    ) -> bool {
        match (moving, neighbour) {
            (None, None) => true,
            (None, Some(id)) => !id.is_forked(),
            (Some(id), None) => dup_merge && !id.is_forked(),
            (Some(a), Some(b)) => a == b,
        }
    }

    /// Merges each VMA whose flags were just changed (`starts`, ascending, each the start of a
    /// VMA after the splits) with its neighbours, as `vma_modify_flags` does for one VMA after
    /// another: first with the VMA before it, then with the one after it unless that one is
    /// changed later (it still has its old flags then); anon_vmas as `anon_vma_mergeable`
    /// decides with `dup_merge` (scenarios/conformance/FINDINGS.md §8, §12).
    /// Returns the start of every VMA a merge produced.
    pub fn merge_modified(&mut self, starts: &[u64], dup_merge: bool) -> Vec<u64> {
        self.invalidate_vma_cache();
        let mut results = Vec::new();
        for (i, &s) in starts.iter().enumerate() {
            let Some(&middle) = self.vmas.get(&s) else {
                continue;
            };
            let src_anon = middle.anon_vma;
            let refused = |tgt: &Vma| !Self::anon_vma_mergeable(src_anon, tgt.anon_vma, dup_merge);
            let mut cur = s;
            if let Some((&ps, prev)) = self.vmas.range(..s).next_back() {
                if Self::mergeable(prev, &middle) && !refused(prev) {
                    let b = self.vmas.remove(&s).expect("vma");
                    let a = self.vmas.get_mut(&ps).expect("vma");
                    a.end = b.end;
                    a.anon_vma = a.anon_vma.or(b.anon_vma);
                    cur = ps;
                }
            }
            let merged = self.vmas[&cur];
            if let Some((&ns, &next)) = self.vmas.range(merged.end..).next() {
                if ns == merged.end
                    && !starts[i + 1..].contains(&ns)
                    && Self::mergeable(&merged, &next)
                    && !refused(&next)
                {
                    self.vmas.remove(&ns);
                    let a = self.vmas.get_mut(&cur).expect("vma");
                    a.end = next.end;
                    a.anon_vma = a.anon_vma.or(next.anon_vma);
                }
            }
            if self.vmas[&cur] != merged || cur != s {
                results.push(cur);
            }
        }
        results
    }

    /// Merges the new VMA at `start` (mmap, or mremap's copy_vma) with mergeable neighbours
    /// across every VMA boundary in `[start, end]` (`vma_merge_new_range`); returns the start
    /// of every VMA a merge produced.
    pub fn merge_range(&mut self, start: u64, end: u64, dup_merge: bool) -> Vec<u64> {
        let mut merged = Vec::new();
        self.invalidate_vma_cache();
        let lo = self
            .vmas
            .range(..start)
            .next_back()
            .map_or(start, |(k, _)| *k);
        let keys: Vec<u64> = self.vmas.range(lo..=end).map(|(k, _)| *k).collect();
        let moving = self.vmas.get(&start).and_then(|v| v.anon_vma);
        let mut prev: Option<u64> = None;
        for k in keys {
            if let Some(p) = prev {
                let (a, b) = (&self.vmas[&p], &self.vmas[&k]);
                let neighbour = if k == start { a } else { b };
                if Self::mergeable(a, b)
                    && Self::anon_vma_mergeable(moving, neighbour.anon_vma, dup_merge)
                {
                    let b = self.vmas.remove(&k).expect("vma");
                    let a = self.vmas.get_mut(&p).expect("vma");
                    a.end = b.end;
                    a.anon_vma = a.anon_vma.or(b.anon_vma);
                    merged.push(p);
                    continue;
                }
            }
            prev = Some(k);
        }
        merged
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Task {
    pub pid: Pid,
    pub mm: MmId,
    /// `min_flt` / `maj_flt` as getrusage(RUSAGE_SELF) reports them.
    pub minflt: u64,
    pub majflt: u64,
}

/// The task table, indexed by pid (pids are small and dense in the model).
#[derive(Clone, Debug, Default)]
pub struct Tasks(Vec<Option<Task>>);

impl Tasks {
    #[inline]
    pub fn get(&self, pid: &Pid) -> Option<&Task> {
        self.0.get(*pid as usize).and_then(|t| t.as_ref())
    }
    #[inline]
    pub fn get_mut(&mut self, pid: &Pid) -> Option<&mut Task> {
        self.0.get_mut(*pid as usize).and_then(|t| t.as_mut())
    }
    pub fn insert(&mut self, pid: Pid, task: Task) {
        let i = pid as usize;
        if self.0.len() <= i {
            self.0.resize(i + 1, None);
        }
        self.0[i] = Some(task);
    }
    pub fn remove(&mut self, pid: &Pid) -> Option<Task> {
        self.0
            .get_mut(*pid as usize)
            .and_then(std::option::Option::take)
    }
    /// Live tasks in pid order with their mm.
    pub(crate) fn iter_live(&self) -> impl Iterator<Item = (Pid, MmId)> + '_ {
        self.values().map(|t| (t.pid, t.mm))
    }
    pub fn values(&self) -> impl Iterator<Item = &Task> {
        self.0.iter().flatten()
    }
}

/// The mm arena: `MmId`s index it. An exited mm keeps its (emptied) slot, so ids stay valid.
#[derive(Clone, Debug, Default)]
pub struct Mms(Vec<Mm>);

impl Mms {
    /// Adds an mm, returns its id.
    pub(crate) fn push(&mut self, mm: Mm) -> MmId {
        self.0.push(mm);
        MmId::from_index(self.0.len() - 1)
    }
    /// Every mm slot with its id (exited ones included: they are empty).
    pub fn iter(&self) -> impl Iterator<Item = (MmId, &Mm)> {
        self.0
            .iter()
            .enumerate()
            .map(|(i, m)| (MmId::from_index(i), m))
    }
}

impl std::ops::Index<MmId> for Mms {
    type Output = Mm;
    #[inline]
    fn index(&self, id: MmId) -> &Mm {
        &self.0[id.index()]
    }
}

impl std::ops::IndexMut<MmId> for Mms {
    #[inline]
    fn index_mut(&mut self, id: MmId) -> &mut Mm {
        &mut self.0[id.index()]
    }
}
