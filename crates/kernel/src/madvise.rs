//! madvise(2), after `mm/madvise.c` (Linux 6.18): the common argument checks, the walk over
//! VMAs with ENOMEM for unmapped holes, advice that changes VMA flags (split and merge:
//! `madvise_update_vma`, with `hugepage_madvise` for HUGEPAGE/NOHUGEPAGE), MADV_DONTNEED
//! (zap, which splits a PMD only partly covered), MADV_COLD (`can_madv_lru_vma`, then the
//! split walk of `split.rs`, anonymous and shmem alike), MADV_PAGEOUT (the same walk, then
//! reclaim: `vmscan.rs`; anonymous, shmem and disk-file VMAs, guest_memfd's is EOPNOTSUPP), MADV_WILLNEED
//! (swap-in to the swap cache, file readahead) and MADV_POPULATE_READ/WRITE
//! (`madvise_populate`). Advice the model does not implement returns EOPNOTSUPP so a caller
//! can never mistake it for the kernel's answer.

use crate::errno::Errno;
use crate::gup::Foll;
use crate::mm::vmf;
use crate::types::{is_page_aligned, page_align_up, Advice, Pid};
use crate::Kernel;

/// `VM_RAND_READ` / `VM_SEQ_READ` (they split VMAs like any flag).
pub(crate) const VM_SEQ_READ: u32 = 1 << 15;
pub(crate) const VM_RAND_READ: u32 = 1 << 16;

/// The VMA flags an advice sets and clears (`madvise_vma_behavior`), for the advice that
/// only changes flags.
pub(crate) fn madvise_flag_change(advice: Advice) -> Option<(u32, u32)> {
    Some(match advice {
        Advice::Hugepage => (vmf::HUGEPAGE, vmf::NOHUGEPAGE),
        Advice::Nohugepage => (vmf::NOHUGEPAGE, vmf::HUGEPAGE),
        Advice::Normal => (0, VM_SEQ_READ | VM_RAND_READ),
        Advice::Random => (VM_RAND_READ, VM_SEQ_READ),
        Advice::Sequential => (VM_SEQ_READ, VM_RAND_READ),
        _ => return None,
    })
}

impl Kernel {
    pub fn madvise(
        &mut self,
        pid: Pid,
        start: u64,
        len_in: u64,
        advice: Advice,
    ) -> Result<(), Errno> {
        if !advice.is_modelled() {
            return Err(Errno::EOPNOTSUPP);
        }
        if !is_page_aligned(start) {
            return Err(Errno::EINVAL);
        }
        let len = page_align_up(len_in);
        if len_in != 0 && len == 0 {
            return Err(Errno::EINVAL);
        }
        let end = start.checked_add(len).ok_or(Errno::EINVAL)?;
        if end == start {
            return Ok(());
        }
        match advice {
            Advice::PopulateRead | Advice::PopulateWrite
                if self.profile.switches.madv_populate == crate::profile::MadvPopulate::Single =>
            {
                // The RFC had one advice; either number stands for it.
                return self.madvise_populate_by_vma(pid, start, end);
            }
            Advice::PopulateRead | Advice::PopulateWrite => {
                let foll = Foll::write_if(advice == Advice::PopulateWrite);
                return self.populate_range(pid, start, end, foll);
            }
            Advice::Populate => return self.madvise_populate_by_vma(pid, start, end),
            Advice::Willneed => {
                // Anonymous memory: swap readahead only; still reports holes. A disk file's
                // VMAs read their range ahead (shmem has no readahead to force).
                let mmi = self.mm_of(pid);
                let files: Vec<(u64, u64, crate::mm::Vma)> = self.mms[mmi]
                    .vma_starts_in(start, end)
                    .iter()
                    .map(|s| self.mms[mmi].vmas[s])
                    .map(|v| (start.max(v.start), end.min(v.end), v))
                    .collect();
                for (a, e, v) in files {
                    // madvise_willneed() swaps in only where the VMA has no file: a private
                    // /dev/zero mapping is anonymous but keeps /dev/zero as its file, whose
                    // fadvise does nothing.
                    if v.backing == crate::mm::VmaBacking::Anon {
                        self.madvise_willneed_anon(mmi, a, e);
                    } else {
                        self.madvise_willneed_file(&v, a, e);
                    }
                }
                return if self.mms[mmi].range_fully_mapped(start, end) {
                    Ok(())
                } else {
                    Err(Errno::ENOMEM)
                };
            }
            _ => {}
        }
        let mmi = self.mm_of(pid);
        if let Some(r) = self.hugetlb_madvise(mmi, start, end, advice) {
            return r;
        }
        let mut unmapped = !self.mms[mmi].range_fully_mapped(start, end);
        if advice == Advice::PopulatePgtable {
            return self.madvise_populate_pgtable(pid, start, end);
        }
        if advice == Advice::Collapse {
            return self.madvise_collapse(pid, start, end);
        }
        if matches!(
            advice,
            Advice::Free | Advice::Cold | Advice::Pageout | Advice::Dontneed | Advice::Remove
        ) {
            // madvise_walk_vmas() visits the VMAs in address order and stops at the first
            // error: a VM_LOCKED VMA (can_madv_lru_vma() / madvise_dontneed_free_valid_vma())
            // fails with EINVAL after the VMAs before it were already advised.
            let parts: Vec<(u64, u64, crate::mm::Vma)> = self.mms[mmi]
                .vma_starts_in(start, end)
                .iter()
                .map(|s| &self.mms[mmi].vmas[s])
                .map(|v| (start.max(v.start), end.min(v.end), *v))
                .collect();
            for (a, e, vma) in parts {
                if vma.has(vmf::LOCKED) {
                    return Err(Errno::EINVAL);
                }
                if vma.backing.is_hugetlb() {
                    self.hugetlb_madvise_vma(mmi, (a, e), &vma, advice)?;
                    continue;
                }
                if let Some(ino) = vma.backing.inode() {
                    match advice {
                        // MADV_FREE is for anonymous memory only.
                        Advice::Free => return Err(Errno::EINVAL),
                        // Reclaim of shmem page-cache folios is `shmem_writeout`, of a disk
                        // file's the drop of clean ones (`vmscan.rs`); guest_memfd's folios
                        // are unevictable, which the model does not check against a host
                        // (this one has no guest_memfd, FINDINGS §35).
                        Advice::Pageout if self.is_gmem(ino) => return Err(Errno::EOPNOTSUPP),
                        Advice::Remove => {
                            // madvise_remove(): a hole punched in the file behind the range.
                            if !vma.has(vmf::SHARED) {
                                return Err(Errno::EACCES);
                            }
                            let offset = vma.linear_page_index(a) << crate::types::PAGE_SHIFT;
                            let mode = crate::shmem::FallocMode {
                                keep_size: true,
                                punch_hole: true,
                            };
                            self.file_fallocate(ino, mode, offset, e - a)?;
                            continue;
                        }
                        _ => {}
                    }
                } else if advice == Advice::Remove {
                    // madvise_remove(): no file is EINVAL; a private /dev/zero VMA has one
                    // but is not shared: EACCES.
                    return Err(if vma.backing == crate::mm::VmaBacking::DevZero {
                        Errno::EACCES
                    } else {
                        Errno::EINVAL
                    });
                }
                match advice {
                    Advice::Dontneed => self.madvise_dontneed_range(mmi, a, e),
                    Advice::Cold => self.madvise_cold_range(mmi, a, e),
                    Advice::Pageout => self.madvise_pageout_range(mmi, a, e),
                    _ => self.madvise_free_range(mmi, a, e),
                }
            }
        } else {
            let (set, clear) =
                madvise_flag_change(advice).unwrap_or_else(|| unreachable!("advice {advice:?}"));
            if advice == Advice::Hugepage {
                // hugepage_madvise(): khugepaged_enter_vma with the new flags, VMA by VMA.
                for s in self.mms[mmi].vma_starts_in(start, end) {
                    let v = self.mms[mmi].vmas[&s];
                    self.khugepaged_enter_vma(mmi, &v, (v.flags & !clear) | set);
                }
            }
            self.vma_modify_flags(mmi, start, end, |f| (f & !clear) | set);
        }
        if std::mem::take(&mut unmapped) {
            return Err(Errno::ENOMEM);
        }
        Ok(())
    }

    /// The single-flag `MADV_POPULATE` proposal: VMA by VMA in address order, a writable VMA
    /// is populated as by `MADV_POPULATE_WRITE` (faults for write: a shared file page is
    /// dirtied, a private one COWed), any other as by `MADV_POPULATE_READ`; a hole is ENOMEM
    /// after the VMAs before it were populated, as `madvise_populate` stops there.
    fn madvise_populate_by_vma(&mut self, pid: Pid, start: u64, end: u64) -> Result<(), Errno> {
        let mmi = self.mm_of(pid);
        let mut addr = start;
        while addr < end {
            let Some(vma) = self.mms[mmi].vma_at(addr).copied() else {
                return Err(Errno::ENOMEM);
            };
            let seg_end = end.min(vma.end);
            let foll = Foll::write_if(vma.has(vmf::WRITE));
            self.populate_range(pid, addr, seg_end, foll)?;
            addr = seg_end;
        }
        Ok(())
    }

    /// The `MADV_POPULATE_PGTABLE` proposal: make sure every PMD slot of the mapped part of
    /// the range has a PTE table (and the 1 GiB region a PMD table), mapping nothing. ENOMEM
    /// for holes, as the populate advices. Later faults in those slots take the PTE path, so
    /// they never get a PMD THP.
    fn madvise_populate_pgtable(&mut self, pid: Pid, start: u64, end: u64) -> Result<(), Errno> {
        let mmi = self.mm_of(pid);
        let holes = !self.mms[mmi].range_fully_mapped(start, end);
        let mut slot = start & crate::types::PMD_MASK;
        while slot < end {
            let (s, e) = (start.max(slot), end.min(slot + crate::types::PMD_SIZE));
            let mapped = !self.mms[mmi].vma_starts_in(s, e).is_empty();
            if mapped
                && !self.mms[mmi].pgt.pmd(slot).is_huge()
                && (!self.pmd_alloc(mmi, slot) || !self.pte_alloc(mmi, slot))
            {
                return Err(Errno::ENOMEM);
            }
            slot += crate::types::PMD_SIZE;
        }
        if holes {
            return Err(Errno::ENOMEM);
        }
        Ok(())
    }
}
