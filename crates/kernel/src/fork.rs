//! fork(2) and exit of an address space, after `kernel/fork.c` (`dup_mmap`), the copy part
//! of `mm/memory.c` (`copy_page_range`, `vma_needs_copy`, `copy_present_ptes`) and
//! `mm/huge_memory.c` (`copy_huge_pmd`), and `exit_mmap` (Linux 6.18).
//!
//! Page tables are copied only for VMAs with an anon_vma. Anonymous pages and PMD THPs become
//! shared: both sides are write-protected, AnonExclusive is cleared, the folio gains a mapping
//! and a reference; a large folio is marked maybe-shared (MM-owner tracking, 6.15). Huge zero
//! PMDs are copied and the child takes its own huge-zero reference; zero-page PTEs are copied.
//! Deviations: no DMA pins (so never an eager copy), no MADV_DONTFORK/WIPEONFORK, no uffd-wp.

use crate::errno::Errno;
use crate::mm::{vmf, Mm, Task, Vma};
use crate::pgtable::{self, Pmd, Pte, EXCLUSIVE, UFFD_WP, WRITE, YOUNG};
use crate::types::{Pid, HPAGE_PMD_NR, PMD_SHIFT, PMD_SIZE, PTRS_PER_PTE, PUD_SHIFT};
use crate::Kernel;

impl Kernel {
    /// fork(2) of `parent`; returns the child's pid.
    pub fn fork(&mut self, parent: Pid) -> Result<Pid, Errno> {
        let pmi = self.mm_of(parent);
        let child_mm = Mm {
            // Without UFFD_FEATURE_EVENT_FORK (not modelled) the child is not registered.
            vmas: self.mms[pmi]
                .vmas
                .iter()
                .map(|(k, v)| {
                    (
                        *k,
                        Vma {
                            flags: v.flags & !vmf::UFFD_MASK,
                            ..*v
                        },
                    )
                })
                .collect(),
            thp_disable: self.mms[pmi].thp_disable,
            users: 1,
            ..Mm::default()
        };
        self.mms.push(child_mm);
        let cmi = self.mms.len() - 1;
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
        // Walk the parent's page tables in address order.
        for key in self.mms[pmi].pgt.pmd_table_keys() {
            for i in 0..512u64 {
                let slot = (key << PUD_SHIFT) | (i << PMD_SHIFT);
                let pmd = self.mms[pmi].pgt.pmd(slot);
                if pmd.is_none() {
                    continue;
                }
                let Some(vma) = self.mms[pmi]
                    .vma_at(slot)
                    .or_else(|| self.mms[pmi].vma_at(slot + PMD_SIZE - 1))
                    .cloned()
                else {
                    continue;
                };
                // vma_needs_copy(): only VMAs with an anon_vma have pages worth copying.
                if vma.anon_vma.is_none() {
                    // A PTE table may span several VMAs; copy only the parts in anon VMAs.
                    if !pmd.is_table() {
                        continue;
                    }
                }
                if !self.ensure_pmd_table(cmi, slot) {
                    self.exit(pid);
                    return Err(Errno::ENOMEM);
                }
                if pmd.is_huge() {
                    let Some(pfn) = self.alloc_pgtable_page() else {
                        self.exit(pid);
                        return Err(Errno::ENOMEM);
                    };
                    self.mms[cmi].pgt.deposited.push(pfn);
                    if pmd.is_huge_zero() {
                        // One reference per mm (MMF_HUGE_ZERO_FOLIO), however many PMDs.
                        if !self.mms[cmi].huge_zero_ref {
                            self.mms[cmi].huge_zero_ref = true;
                            self.huge_zero_users += 1;
                        }
                        *self.mms[cmi].pgt.pmd_mut(slot).expect("pmd table") = pmd;
                    } else {
                        // copy_huge_pmd(): share the THP read-only; both lose exclusivity.
                        let id = pmd.folio();
                        let shared = Pmd(pmd.0 & !(WRITE | EXCLUSIVE));
                        *self.mms[pmi].pgt.pmd_mut(slot).expect("pmd") = shared;
                        *self.mms[cmi].pgt.pmd_mut(slot).expect("pmd table") =
                            Pmd(shared.0 & !(YOUNG | UFFD_WP));
                        let f = self.folios.get_mut(id);
                        f.entire_mapcount += 1;
                        f.refcount += 1;
                        self.folios.mm_map_add(id, cmi, 1);
                        self.mms[cmi].rss_anon += HPAGE_PMD_NR as u64;
                    }
                    continue;
                }
                // copy_pte_range()
                let Some(pfn) = self.alloc_pgtable_page() else {
                    self.exit(pid);
                    return Err(Errno::ENOMEM);
                };
                let cidx = self.mms[cmi].pgt.new_pte_table(pfn);
                let pidx = pmd.table_idx();
                let mut any = false;
                for j in 0..PTRS_PER_PTE {
                    let pte = self.mms[pmi].pgt.pte_table(pidx)[j];
                    if pte.is_none() {
                        continue;
                    }
                    let addr = slot + ((j as u64) << 12);
                    if self.mms[pmi]
                        .vma_at(addr)
                        .is_none_or(|v| v.anon_vma.is_none())
                    {
                        continue;
                    }
                    any = true;
                    if pte.kind() == pgtable::KIND_PAGE {
                        let shared = Pte(pte.0 & !(WRITE | EXCLUSIVE));
                        self.mms[pmi].pgt.pte_table_mut(pidx)[j] = shared;
                        self.mms[cmi].pgt.pte_table_mut(cidx)[j] = Pte(shared.0 & !UFFD_WP);
                        let id = pte.folio();
                        self.folio_add_anon_rmap_ptes(id, pte.idx(), 1, cmi);
                        self.mms[cmi].rss_anon += 1;
                    } else if pte.kind() == pgtable::KIND_ZERO {
                        self.mms[cmi].pgt.pte_table_mut(cidx)[j] = Pte(pte.0 & !UFFD_WP);
                    }
                }
                if any {
                    *self.mms[cmi].pgt.pmd_mut(slot).expect("pmd table") = Pmd::table(cidx);
                } else {
                    let pfn = self.mms[cmi].pgt.free_pte_table(cidx);
                    self.free_pgtable_page(pfn);
                }
            }
        }
        Ok(pid)
    }

    /// Makes sure the PMD table for `addr` exists in mm `mmi`. False on OOM.
    pub(crate) fn ensure_pmd_table(&mut self, mmi: usize, addr: u64) -> bool {
        if self.mms[mmi].pgt.has_pmd_table(addr) {
            return true;
        }
        let Some(pfn) = self.alloc_pgtable_page() else {
            return false;
        };
        self.mms[mmi].pgt.install_pmd_table(addr, pfn);
        true
    }

    /// The task exits: `exit_mmap` unmaps everything, frees page tables and drops the mm's
    /// huge-zero reference.
    pub fn exit(&mut self, pid: Pid) {
        let Some(task) = self.tasks.remove(&pid) else {
            return;
        };
        let mmi = task.mm;
        self.khugepaged_exit(mmi);
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
            self.huge_zero_users -= 1;
        }
        self.mms[mmi] = Mm::default();
    }
}
