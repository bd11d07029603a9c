//! fork(2) and exit of an address space, after `kernel/fork.c` (`dup_mmap`), the copy part
//! of `mm/memory.c` (`copy_page_range`, `vma_needs_copy`, `copy_present_ptes`) and
//! `mm/huge_memory.c` (`copy_huge_pmd`), and `exit_mmap` (Linux 6.18).
//!
//! Page tables are copied VMA by VMA (`copy_page_range` is called per VMA), only for VMAs with
//! an anon_vma; the child's VMAs lose VM_LOCKED and their uffd registration. Anonymous pages
//! and PMD THPs become shared: both sides are write-protected, AnonExclusive is cleared, the
//! folio gains a mapping and a reference; a large folio is marked maybe-shared (MM-owner
//! tracking, 6.15). Huge zero PMDs are copied and the child takes its own huge-zero reference;
//! zero-page PTEs are copied. Every entry the child gets is old (`__copy_present_ptes` and
//! `copy_huge_pmd` make it so; the parent's stay young), which khugepaged's referenced-page
//! rule sees (FINDINGS §17).
//! Deviations: no DMA pins (so never an eager copy), no MADV_DONTFORK/WIPEONFORK, no uffd-wp.

use crate::errno::Errno;
use crate::ids::MmId;
use crate::mm::MmCounter;
use crate::mm::{vmf, Mm, Task, Vma};
use crate::pgtable::{pte_index, Pmd, Pte, EXCLUSIVE, UFFD_WP, WRITE, YOUNG};
use crate::types::{Pid, HPAGE_PMD_NR, PMD_MASK, PMD_SIZE, PUD_SHIFT, PUD_SIZE};
use crate::Kernel;

impl Kernel {
    /// fork(2) of `parent`; returns the child's pid.
    pub fn fork(&mut self, parent: Pid) -> Result<Pid, Errno> {
        let pmi = self.mm_of(parent);
        // dup_mmap(): each child VMA is a copy, but without UFFD_FEATURE_EVENT_FORK (not
        // modelled) it is not registered, and the child never inherits mlock (VM_LOCKED_MASK
        // is cleared). anon_vma_fork() gives each child VMA with an anon_vma its own one, so
        // child VMAs that came from one parent anon_vma do not merge with each other later.
        let mut vmas = self.mms[pmi].vmas.clone();
        for v in vmas.values_mut() {
            v.flags &= !(vmf::UFFD_MASK | vmf::LOCKED);
            if v.anon_vma.is_some() {
                v.anon_vma = Some(self.new_anon_vma().forked());
            }
        }
        let child_mm = Mm {
            vmas,
            thp_disable: self.mms[pmi].thp_disable,
            users: 1,
            ..Mm::default()
        };
        let cmi = self.mms.push(child_mm);
        self.hugetlb_fork(pmi, cmi);
        let pid = self.alloc_pid();
        self.tasks.insert(
            pid,
            Task {
                pid,
                mm: cmi,
                minflt: 0,
                majflt: 0,
            },
        );
        // khugepaged_fork()
        if self.mms[pmi].khugepaged_registered {
            self.khugepaged_enter(cmi);
        }
        // copy_page_range() for each VMA, in address order: a VMA that lies inside one 2 MiB
        // slot, or shares a PTE table with its neighbours, is copied over its own range only.
        let parent_vmas: Vec<Vma> = self.mms[pmi].vmas.values().copied().collect();
        for vma in &parent_vmas {
            if self.copy_page_range(pmi, cmi, vma).is_err() {
                self.exit(pid);
                return Err(Errno::ENOMEM);
            }
        }
        Ok(pid)
    }

    /// `copy_page_range` of one parent VMA into the child: `vma_needs_copy` (only VMAs with
    /// an anon_vma have pages worth copying), then per 1 GiB region with a parent PMD table
    /// (`copy_pud_range`, which allocates the child's PMD table) and per PMD slot
    /// (`copy_pmd_range`: `copy_huge_pmd` or `copy_pte_range`). Err on OOM.
    fn copy_page_range(&mut self, pmi: MmId, cmi: MmId, vma: &Vma) -> Result<(), ()> {
        if vma.anon_vma.is_none() {
            return Ok(());
        }
        let mut region = vma.start & !(PUD_SIZE - 1);
        while let Some(key) = self.mms[pmi]
            .pgt
            .next_pmd_table_key(region >> PUD_SHIFT, vma.end.div_ceil(PUD_SIZE))
        {
            region = key << PUD_SHIFT;
            let (rs, re) = (vma.start.max(region), vma.end.min(region + PUD_SIZE));
            region += PUD_SIZE;
            if !self.pmd_alloc(cmi, rs) {
                return Err(());
            }
            let mut slot = rs & PMD_MASK;
            while let Some(next) = self.next_pmd_slot(pmi, slot, re) {
                slot = next;
                let (s, e) = (rs.max(slot), re.min(slot + PMD_SIZE));
                let pmd = self.mms[pmi].pgt.pmd(slot);
                if pmd.is_huge() {
                    // A huge PMD lies inside one VMA, so this is the only VMA that sees it.
                    self.copy_huge_pmd(pmi, cmi, slot, pmd)?;
                } else if pmd.is_table() {
                    self.copy_pte_range(pmi, cmi, slot, pmd, s, e)?;
                }
                slot += PMD_SIZE;
            }
        }
        Ok(())
    }

    /// `copy_huge_pmd`: a THP is shared read-only and both sides lose exclusivity; a huge zero
    /// PMD is copied and the child takes its own huge-zero reference. Either way the child
    /// deposits a page table for a later split.
    fn copy_huge_pmd(&mut self, pmi: MmId, cmi: MmId, slot: u64, pmd: Pmd) -> Result<(), ()> {
        if pmd.is_thp() && !self.folios.get(pmd.folio()).test(crate::folio::flags::ANON) {
            // A file PMD is left to be refaulted ("skip if can be re-fill on fault").
            return Ok(());
        }
        let pfn = self.alloc_pgtable_page().ok_or(())?;
        self.mms[cmi].pgt.deposit(pfn);
        if pmd.is_huge_zero() {
            // One reference per mm (MMF_HUGE_ZERO_FOLIO), however many PMDs.
            if !self.mms[cmi].huge_zero_ref {
                self.mms[cmi].huge_zero_ref = true;
                self.huge_zero.get();
            }
            *self.mms[cmi].pgt.pmd_mut(slot).expect("pmd table") = pmd;
            return Ok(());
        }
        let id = pmd.folio();
        let shared = Pmd(pmd.0 & !(WRITE | EXCLUSIVE));
        *self.mms[pmi].pgt.pmd_mut(slot).expect("pmd") = shared;
        *self.mms[cmi].pgt.pmd_mut(slot).expect("pmd table") = Pmd(shared.0 & !(YOUNG | UFFD_WP));
        let f = self.folios.get_mut(id);
        f.entire_mapcount += 1;
        f.refcount += 1;
        self.folios.mm_map_add(id, cmi, 1);
        self.mms[cmi].add_mm_counter(MmCounter::AnonPages, i64::from(HPAGE_PMD_NR));
        Ok(())
    }

    /// `copy_pte_range` over `[s, e)` of the PTE table `pmd` at `slot`: the child's PTE table
    /// is allocated even if nothing in the range is mapped (`pte_alloc_map_lock`), and is shared
    /// by the VMAs of the slot. Anonymous pages become shared (write-protected, not exclusive);
    /// zero-page PTEs are copied; uffd-wp bits and markers do not reach the unregistered child.
    /// `__copy_present_ptes` makes every child PTE old (`pte_mkold`), page-cache, anonymous
    /// and zero-page alike: until the child touches a page, khugepaged finds it unreferenced.
    fn copy_pte_range(
        &mut self,
        pmi: MmId,
        cmi: MmId,
        slot: u64,
        pmd: Pmd,
        s: u64,
        e: u64,
    ) -> Result<(), ()> {
        if !self.pte_alloc(cmi, slot) {
            return Err(());
        }
        let cidx = self.mms[cmi].pgt.pmd(slot).table_idx();
        let pidx = pmd.table_idx();
        for j in pte_index(s)..=pte_index(e - 1) {
            let pte = self.mms[pmi].pgt.pte_table(pidx)[j];
            if pte.is_page() && !self.folios.get(pte.folio()).test(crate::folio::flags::ANON) {
                // A page-cache page of a private file mapping: copied as is (read-only).
                self.mms[cmi].pgt.pte_table_mut(cidx)[j] = Pte(pte.0 & !(UFFD_WP | YOUNG));
                self.folio_add_file_rmap_ptes(pte.folio(), pte.idx(), 1, cmi);
                self.mms[cmi].add_mm_counter(MmCounter::ShmemPages, 1);
            } else if pte.is_page() {
                let shared = Pte(pte.0 & !(WRITE | EXCLUSIVE));
                self.mms[pmi].pgt.pte_table_mut(pidx)[j] = shared;
                self.mms[cmi].pgt.pte_table_mut(cidx)[j] = Pte(shared.0 & !(UFFD_WP | YOUNG));
                self.folio_add_anon_rmap_ptes(pte.folio(), pte.idx(), 1, cmi);
                self.mms[cmi].add_mm_counter(MmCounter::AnonPages, 1);
            } else if pte.is_zero_page() {
                self.mms[cmi].pgt.pte_table_mut(cidx)[j] = Pte(pte.0 & !(UFFD_WP | YOUNG));
            } else if pte.is_swap() {
                // copy_nonpresent_pte: one more reference on the slot; neither side is
                // exclusive any more; the child drops uffd-wp.
                self.swap
                    .si
                    .as_mut()
                    .expect("swap entry without a device")
                    .dup(pte.swap_slot());
                let shared = Pte(pte.0 & !EXCLUSIVE);
                self.mms[pmi].pgt.pte_table_mut(pidx)[j] = shared;
                self.mms[cmi].pgt.pte_table_mut(cidx)[j] = Pte(shared.0 & !UFFD_WP);
                self.mms[cmi].add_mm_counter(MmCounter::SwapEnts, 1);
            }
        }
        Ok(())
    }

    /// The task exits: `exit_mmap` unmaps everything, frees page tables and drops the mm's
    /// huge-zero reference.
    pub fn exit(&mut self, pid: Pid) {
        let Some(task) = self.tasks.remove(&pid) else {
            return;
        };
        let mmi = task.mm;
        self.khugepaged_exit(mmi);
        self.hugetlb_unmap_vmas(mmi, 0, crate::types::TASK_SIZE);
        let vmas: Vec<(u64, u64)> = self.mms[mmi]
            .vmas
            .values()
            .map(|v| (v.start, v.end))
            .collect();
        self.mms[mmi].vmas.clear();
        self.mms[mmi].invalidate_vma_cache();
        for (s, e) in &vmas {
            self.zap_range(mmi, *s, *e);
        }
        for (s, e) in &vmas {
            self.free_pgtables(mmi, *s, *e);
        }
        // Tables left by a failed fork (no VMA yet) are freed too.
        for key in self.mms[mmi].pgt.pmd_table_keys() {
            self.free_pgtables(mmi, key << PUD_SHIFT, (key + 1) << PUD_SHIFT);
        }
        if self.mms[mmi].huge_zero_ref {
            self.mms[mmi].huge_zero_ref = false;
            self.huge_zero.put();
        }
        self.mms[mmi] = Mm::default();
        self.shmem_release_unmapped();
        self.hugetlb_release_unmapped();
    }
}
