//! mremap(2) moves, after `mm/mremap.c` (Linux 6.18): `MREMAP_MAYMOVE | MREMAP_FIXED` of a
//! range within one VMA to a new address (the destination is unmapped first), `copy_vma`, and
//! `move_page_tables`: where both the old and the new address are PMD-aligned for a whole
//! 2 MiB extent a huge PMD moves as a unit (`move_huge_pmd`), otherwise it is split and its
//! PTEs move one by one (`move_ptes`). Pages keep their folios and mapcounts; RSS is unchanged.
//! Since 6.17 (`remap_move()`, switch `mremap_multi_vma`) such a move may span several VMAs.
//! Deviation: only same-size moves (`old_len == new_len`); no in-place grow or shrink.

use crate::errno::Errno;
use crate::mm::Vma;
use crate::pgtable::{pte_index, Pmd, Pte};
use crate::types::{
    is_page_aligned, page_align_up, Pid, PAGE_SHIFT, PAGE_SIZE, PMD_MASK, PMD_SIZE, TASK_SIZE,
};
use crate::Kernel;

impl Kernel {
    /// `mremap(old, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, new)`; returns `new`.
    pub fn mremap(&mut self, pid: Pid, old: u64, len: u64, new: u64) -> Result<u64, Errno> {
        if !is_page_aligned(old) || !is_page_aligned(new) || len == 0 {
            return Err(Errno::EINVAL);
        }
        let len = page_align_up(len);
        let old_end = old.checked_add(len).ok_or(Errno::EINVAL)?;
        let new_end = new
            .checked_add(len)
            .filter(|e| *e <= TASK_SIZE)
            .ok_or(Errno::EINVAL)?;
        if new < old_end && old < new_end {
            return Err(Errno::EINVAL);
        }
        let mmi = self.mm_of(pid);
        let Some(first) = self.mms[mmi].vma_at(old).copied() else {
            return Err(Errno::EFAULT);
        };
        if !self.profile.switches.mremap_multi_vma {
            // vma_to_resize() (<= 6.16): the old range must lie in one VMA.
            if old_end > first.end {
                return Err(Errno::EFAULT);
            }
            self.move_vma(pid, old, len, new)?;
            return Ok(new);
        }
        // remap_move() (6.17+): every VMA part moves on its own to the same offset from
        // `new`, gaps kept (the destination opposite a gap is left alone); a uffd-armed VMA
        // may only move alone.
        let parts: Vec<(u64, u64)> = self.mms[mmi]
            .vma_starts_in(old, old_end)
            .iter()
            .map(|s| {
                let v = &self.mms[mmi].vmas[s];
                (old.max(v.start), old_end.min(v.end))
            })
            .collect();
        if parts.len() > 1
            && parts
                .iter()
                .any(|(a, _)| self.mms[mmi].vma_at(*a).is_some_and(|v| v.uffd_armed()))
        {
            return Err(Errno::EFAULT);
        }
        for (a, e) in parts {
            self.move_vma(pid, a, e - a, new + (a - old))?;
        }
        Ok(new)
    }

    /// `move_vma`: moves `[old, old+len)`, inside one VMA, to `new` (unmapping the
    /// destination first, as MREMAP_FIXED does).
    fn move_vma(&mut self, pid: Pid, old: u64, len: u64, new: u64) -> Result<(), Errno> {
        let mmi = self.mm_of(pid);
        let (old_end, new_end) = (old + len, new + len);
        let vma = self.mms[mmi].vma_at(old).copied().expect("source vma");
        self.munmap(pid, new, len)?;
        // copy_vma(): the new VMA, same flags and anon_vma, pgoff of the moved part.
        let nv = Vma {
            start: new,
            end: new_end,
            pgoff: vma.pgoff + ((old - vma.start) >> PAGE_SHIFT),
            ..vma
        };
        self.mms[mmi].vmas.insert(new, nv);
        self.mms[mmi].invalidate_vma_cache();
        self.move_page_tables(mmi, old, new, len)?;
        // The old range is now empty: unmap it (splitting the old VMA at its boundaries).
        self.split_vma_at(mmi, old);
        self.split_vma_at(mmi, old_end);
        for s in self.mms[mmi].vma_starts_in(old, old_end) {
            let v = self.mms[mmi].vmas.remove(&s).expect("vma");
            self.mms[mmi].invalidate_vma_cache();
            self.zap_range(mmi, v.start, v.end);
        }
        self.free_pgtables(mmi, old, old_end);
        self.mms[mmi].merge_range(new, new_end);
        Ok(())
    }

    /// `move_page_tables` from `[old, old+len)` to `new`.
    fn move_page_tables(&mut self, mmi: usize, old: u64, new: u64, len: u64) -> Result<(), Errno> {
        let mut done = 0;
        while done < len {
            let (o, n) = (old + done, new + done);
            // get_extent(): up to the next PMD boundary of both addresses.
            let extent = (PMD_SIZE - (o & !PMD_MASK))
                .min(PMD_SIZE - (n & !PMD_MASK))
                .min(len - done);
            let pmd = self.mms[mmi].pgt.pmd(o);
            if pmd.is_huge() {
                if extent == PMD_SIZE {
                    // move_huge_pmd(): the PMD (and its deposited table) moves as a unit.
                    if !self.ensure_pmd_table(mmi, n) {
                        return Err(Errno::ENOMEM);
                    }
                    *self.mms[mmi].pgt.pmd_mut(o).expect("pmd") = Pmd::NONE;
                    *self.mms[mmi].pgt.pmd_mut(n).expect("pmd") = pmd;
                    done += extent;
                    continue;
                }
                self.split_huge_pmd(mmi, o);
            }
            if self.mms[mmi].pgt.pmd(o).is_table() {
                // move_ptes()
                let mut a = 0;
                while a < extent {
                    let pte = self.mms[mmi].pgt.pte(o + a);
                    if !pte.is_none() {
                        if !self.ensure_pmd_table(mmi, n + a) || !self.pte_alloc(mmi, n + a) {
                            return Err(Errno::ENOMEM);
                        }
                        self.set_pte(mmi, o + a, Pte::NONE);
                        let t = self.mms[mmi].pgt.pmd(n + a).table_idx();
                        self.mms[mmi].pgt.pte_table_mut(t)[pte_index(n + a)] = pte;
                    }
                    a += PAGE_SIZE;
                }
            }
            done += extent;
        }
        Ok(())
    }
}
