//! mprotect(2), after `mm/mprotect.c` (Linux 6.18): `do_mprotect_pkey` (ENOMEM at the first
//! hole, after changing what came before it), `mprotect_fixup` (no change if the flags are
//! equal; otherwise split, change, merge; a locked private VMA made writable is populated)
//! and `change_protection` over PTEs and huge PMDs.
//! Write permission is restored in place only where the kernel can prove the page exclusive
//! (`can_change_pte_writable` / `can_change_pmd_writable`: AnonExclusive anon pages, never the
//! zero page); other pages get write access back through a write fault.

use crate::errno::Errno;
use crate::gup::Foll;
use crate::ids::MmId;
use crate::mm::{prot_to_vmflags, vmf};
use crate::pgtable::{pte_index, DIRTY, EXCLUSIVE, PROTNONE, SOFT_DIRTY, WRITE, YOUNG};
use crate::types::{is_page_aligned, page_align_up, Pid, Prot, PAGE_SIZE, PMD_MASK, PMD_SIZE};
use crate::Kernel;

impl Kernel {
    pub fn mprotect(&mut self, pid: Pid, start: u64, len: u64, prot: Prot) -> Result<(), Errno> {
        if !is_page_aligned(start) {
            return Err(Errno::EINVAL);
        }
        let len = page_align_up(len);
        let end = start.checked_add(len).ok_or(Errno::ENOMEM)?;
        if end == start {
            return Ok(());
        }
        let mmi = self.mm_of(pid);
        if self.mms[mmi].vma_at(start).is_none() {
            return Err(Errno::ENOMEM);
        }
        let newprot = prot_to_vmflags(prot);
        let dup = self.profile.switches.anon_vma_dup_merge;
        let mut cur = start;
        let mut result = Ok(());
        let mut changed = Vec::new();
        while cur < end {
            let Some(v) = self.mms[mmi].vma_at(cur).copied() else {
                result = Err(Errno::ENOMEM);
                break;
            };
            let e = end.min(v.end);
            // do_mmap cleared VM_MAYEXEC of a mapping from a noexec mount (guest_memfd's):
            // PROT_EXEC fails mprotect_fixup's VM_MAY* test, after the VMAs before it changed.
            if newprot & vmf::EXEC != 0 && v.backing.inode().is_some_and(|i| self.is_gmem(i)) {
                result = Err(Errno::EACCES);
                break;
            }
            let mut nf = (v.flags & !vmf::PROT_MASK) | newprot;
            if nf != v.flags {
                // mprotect_fixup(): a private VMA that becomes writable is charged
                // (VM_ACCOUNT); made unwritable it stays charged, unless it is anonymous and
                // was never faulted (no anon_vma), which gives the charge back. A private file
                // VMA keeps the charge (vma_is_anonymous is false), so it still merges with a
                // neighbour whose COW copies gave it an anon_vma (found by the differential
                // fuzzer: campaign 20261201, conformance 477).
                if nf & vmf::WRITE != 0 {
                    if v.flags & (vmf::ACCOUNT | vmf::WRITE | vmf::SHARED) == 0 {
                        nf |= vmf::ACCOUNT;
                    }
                } else if v.is_anonymous() && v.anon_vma.is_none() {
                    nf &= !vmf::ACCOUNT;
                }
                // hugetlb_vm_op_split refuses a split inside a huge page.
                if let Err(err) = self.split_vma_range(mmi, cur, e) {
                    result = Err(err);
                    break;
                }
                self.mms[mmi].vmas.get_mut(&cur).expect("vma").flags = nf;
                self.mms[mmi].invalidate_vma_cache();
                self.change_protection(mmi, cur, e, nf);
                if v.backing.is_hugetlb() {
                    self.hugetlb_change_protection(mmi, cur, e, nf);
                }
                changed.push(cur);
                // mprotect_fixup(): a locked private VMA that becomes writable is populated
                // at once (populate_vma_page_range() with FOLL_WRITE), so the COW of its
                // zero-page and shared pages happens now, not at the first write. The merge
                // that vma_modify_flags() does comes first (the fault sees the merged VMA).
                // It passes no `locked`, so population stops at the first userfault (no
                // message); errors are ignored.
                if v.flags & (vmf::WRITE | vmf::SHARED | vmf::LOCKED) == vmf::LOCKED
                    && nf & vmf::WRITE != 0
                {
                    let merged = self.mms[mmi].merge_modified(&std::mem::take(&mut changed), dup);
                    self.khugepaged_enter_merged(mmi, &merged);
                    let _ = self.get_user_pages(pid, (cur, e), Foll::WRITE | Foll::FORCE);
                }
            }
            cur = e;
        }
        let merged = self.mms[mmi].merge_modified(&changed, dup);
        self.khugepaged_enter_merged(mmi, &merged);
        result
    }

    /// `change_protection` for `[start, end)` of a VMA whose flags are now `flags`.
    fn change_protection(&mut self, mmi: MmId, start: u64, end: u64, flags: u32) {
        let accessible = flags & vmf::PROT_MASK != 0;
        let writable = flags & vmf::WRITE != 0;
        // vma_wants_writenotify(): a shared VMA registered for uffd-wp keeps write faults
        // (vm_page_prot without write), so no PTE of it is made writable here; nor of a
        // disk file's (page_mkwrite: vma_wants_manual_pte_write_upgrade is false).
        let disk = self.mms[mmi]
            .vma_at(start)
            .is_some_and(|v| matches!(v.backing, crate::mm::VmaBacking::File { .. }));
        let shared = flags & vmf::SHARED != 0 && flags & vmf::UFFD_WP == 0 && !disk;
        let mut slot = start & PMD_MASK;
        while let Some(next) = self.next_pmd_slot(mmi, slot, end) {
            slot = next;
            let (s, e) = (start.max(slot), end.min(slot + PMD_SIZE));
            let pmd = self.mms[mmi].pgt.pmd(slot);
            if pmd.is_huge() && (s != slot || e != slot + PMD_SIZE) {
                self.split_huge_pmd(mmi, slot);
            }
            let pmd = self.mms[mmi].pgt.pmd(slot);
            if pmd.is_huge() {
                let entry = self.mms[mmi].pgt.pmd_mut(slot).expect("pmd");
                entry.set(PROTNONE, !accessible);
                entry.set(
                    WRITE,
                    writable && accessible && pmd.is_thp() && (pmd.has(EXCLUSIVE) || shared),
                );
            } else if pmd.is_table() {
                // change_pte_range(): the PTEs of a large folio go in batches
                // (mprotect_folio_pte_batch, write and soft-dirty respected), and
                // modify_prot_start_ptes() gathers the batch's dirty and young bits, which
                // the commit writes into every PTE of it: one written page makes the
                // folio's whole batch dirty.
                let tidx = pmd.table_idx();
                let mut addr = s;
                while addr < e {
                    let pte = self.mms[mmi].pgt.pte_table(tidx)[pte_index(addr)];
                    if !pte.is_present() {
                        addr += PAGE_SIZE;
                        continue;
                    }
                    let large = pte.is_page() && self.folios.get(pte.folio()).order > 0;
                    let nr = if large {
                        self.folio_pte_batch(mmi, tidx, addr, e, WRITE | SOFT_DIRTY) as usize
                    } else {
                        1
                    };
                    let i = pte_index(addr);
                    let table = self.mms[mmi].pgt.pte_table_mut(tidx);
                    let gathered = table[i..i + nr]
                        .iter()
                        .fold(0, |acc, p| acc | (p.0 & (DIRTY | YOUNG)));
                    for p in &mut table[i..i + nr] {
                        // A shared shmem mapping needs no write notification: its PTEs take
                        // the write bit of vm_page_prot (pte_modify); private ones only when
                        // exclusive (can_change_pte_writable).
                        let anon_excl = p.is_page() && (p.has(EXCLUSIVE) || shared);
                        p.0 |= gathered;
                        p.set(PROTNONE, !accessible);
                        p.set(WRITE, writable && accessible && anon_excl);
                    }
                    addr += nr as u64 * PAGE_SIZE;
                }
            }
            slot += PMD_SIZE;
        }
    }
}
