//! mremap(2) moves, after `mm/mremap.c` (Linux 6.18): `MREMAP_MAYMOVE | MREMAP_FIXED` of a
//! range within one VMA to a new address (the destination is unmapped first), `copy_vma`, and
//! `move_page_tables`: where both the old and the new address are PMD-aligned for a whole
//! 2 MiB extent a huge PMD moves as a unit (`move_huge_pmd`), otherwise it is split and its
//! PTEs move one by one (`move_ptes`). Pages keep their folios and mapcounts; RSS is unchanged.
//! Since 6.17 (`remap_move()`, switch `mremap_multi_vma`) such a move may span several VMAs.
//! A never-faulted VMA takes the pgoff of its new address and so merges there (`copy_vma`);
//! a uffd-registered VMA arrives unregistered, its uffd-wp bits and markers dropped (no
//! UFFD_FEATURE_EVENT_REMAP in the model).
//! A hugetlb VMA (`check_prep_vma`'s hugetlb case) needs huge-page aligned old and new
//! addresses (EINVAL), its length is rounded up to the huge page size, its huge PTEs move
//! with it (`move_hugetlb_page_tables`) and so does its reservation: the old VMA's reserve
//! map is cleared before it is unmapped (`clear_vma_resv_huge_pages`), so nothing is given
//! back (measured for both sizes, FINDINGS §34).
//! A new size (`do_mremap` with `old_len != new_len`, 6.18 order of checks: `check_mremap_params`,
//! `vma_lookup`, `check_prep_vma`): a shrink unmaps the tail `[addr+new_len, addr+old_len)` as
//! munmap does (`shrink_vma`; the tail may cross VMAs and holes, only the kept part must lie in
//! the VMA when the range moves); without a new address an expansion grows the VMA in place
//! (`expand_vma` → `vma_expandable`, `vma_merge_extend`, which may merge the VMA with the next
//! one and offers it to khugepaged) when the range ends at the VMA's end and nothing is mapped
//! in the new part, else ENOMEM (no MREMAP_MAYMOVE); with MREMAP_FIXED the destination is
//! unmapped first, then the tail, then `old_len` moves into a VMA of `new_len` (`mremap_to`).
//! A grown VM_LOCKED range populates its new part (`populate_expand`, `mm_populate`). A hugetlb
//! VMA rounds both lengths up to its page size and refuses to grow (`align_hugetlb`: EINVAL).
//! MREMAP_MAYMOVE without MREMAP_FIXED (the kernel picks the address) is not modelled: the
//! scenario language has no form for it.

use crate::errno::Errno;
use crate::ids::MmId;
use crate::mm::{vmf, Vma};
use crate::pgtable::{pte_index, Pmd, Pte, UFFD_WP};
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
        let mut len = page_align_up(len);
        let mmi = self.mm_of(pid);
        if let Some(v) = self.mms[mmi].vma_at(old).filter(|v| v.backing.is_hugetlb()) {
            let hps = self.hugetlb_page_size(v);
            if old % hps != 0 || new % hps != 0 {
                return Err(Errno::EINVAL);
            }
            len = len.div_ceil(hps) * hps;
        }
        let old_end = old.checked_add(len).ok_or(Errno::EINVAL)?;
        let new_end = new
            .checked_add(len)
            .filter(|e| *e <= TASK_SIZE)
            .ok_or(Errno::EINVAL)?;
        if new < old_end && old < new_end {
            return Err(Errno::EINVAL);
        }
        let Some(first) = self.mms[mmi].vma_at(old).copied() else {
            return Err(Errno::EFAULT);
        };
        if !self.profile.switches.mremap_multi_vma {
            // vma_to_resize() (<= 6.16): the old range must lie in one VMA.
            if old_end > first.end {
                return Err(Errno::EFAULT);
            }
            self.move_vma(pid, old, len, new, len)?;
            return Ok(new);
        }
        // remap_move() (6.17+): every VMA part moves on its own to the same offset from
        // `new`, gaps kept (the destination opposite a gap is left alone). A uffd-armed VMA
        // may only move alone (vma_multi_allowed()): as the first VMA it is refused up front
        // if the range goes on past it, gap or not; after another VMA it is refused when it
        // is reached, so the parts before it stay moved.
        let parts: Vec<(u64, u64)> = self.mms[mmi]
            .vma_starts_in(old, old_end)
            .iter()
            .map(|s| {
                let v = &self.mms[mmi].vmas[s];
                (old.max(v.start), old_end.min(v.end))
            })
            .collect();
        for (i, (a, e)) in parts.into_iter().enumerate() {
            let v = *self.mms[mmi].vma_at(a).expect("source vma");
            // vma_multi_allowed(): not uffd-armed, and no file with its own
            // get_unmapped_area other than shmem (a private /dev/zero VMA has one).
            let alone = v.uffd_armed() || v.backing == crate::mm::VmaBacking::DevZero;
            if alone && (i > 0 || v.end < old_end) {
                return Err(Errno::EFAULT);
            }
            // check_prep_vma() of a later hugetlb part: its addresses and length aligned.
            let hps = self.hugetlb_page_size(&v);
            if [a, e - a, new + (a - old)].iter().any(|x| x % hps != 0) {
                return Err(Errno::EINVAL);
            }
            self.move_vma(pid, a, e - a, new + (a - old), e - a)?;
        }
        Ok(new)
    }

    /// `mremap(addr, old_len, new_len, flags, new)`: `flags` is MREMAP_MAYMOVE |
    /// MREMAP_FIXED when `new` is given, else 0 (resize in place). Returns the address of the
    /// result. A same-size FIXED move is [`Kernel::mremap`] (`vrm_move_only` → `remap_move`).
    pub fn mremap_resize(
        &mut self,
        pid: Pid,
        addr: u64,
        old_len: u64,
        new_len: u64,
        new: Option<u64>,
    ) -> Result<u64, Errno> {
        // do_mremap(): both lengths PAGE_ALIGNed first (a wrap to 0 fails below as EINVAL).
        let align = |l: u64| l.checked_add(PAGE_SIZE - 1).map(|x| x & !(PAGE_SIZE - 1));
        let (Some(mut old_len), Some(mut new_len)) = (align(old_len), align(new_len)) else {
            return Err(Errno::EINVAL);
        };
        if let Some(n) = new {
            if old_len == new_len {
                return self.mremap(pid, addr, old_len, n);
            }
        }
        // check_mremap_params()
        if !is_page_aligned(addr) || new_len == 0 || new_len > TASK_SIZE {
            return Err(Errno::EINVAL);
        }
        if let Some(n) = new {
            // vrm_overlaps(): the old range as given, the new one at its new length.
            let old_end = addr.checked_add(old_len).ok_or(Errno::EINVAL)?;
            if n > TASK_SIZE - new_len || !is_page_aligned(n) || (old_end > n && n + new_len > addr)
            {
                return Err(Errno::EINVAL);
            }
        }
        let mmi = self.mm_of(pid);
        // vma_lookup() + check_prep_vma()
        let Some(vma) = self.mms[mmi].vma_at(addr).copied() else {
            return Err(Errno::EFAULT);
        };
        if vma.backing.is_hugetlb() {
            // align_hugetlb(): lengths in huge pages, aligned addresses, no expansion (the
            // reservation map cannot be extended).
            let hps = self.hugetlb_page_size(&vma);
            old_len = old_len.div_ceil(hps) * hps;
            new_len = new_len.div_ceil(hps) * hps;
            if addr % hps != 0 || new.is_some_and(|n| n % hps != 0) || new_len > old_len {
                return Err(Errno::EINVAL);
            }
        }
        let (shrink, expand) = (new_len < old_len, new_len > old_len);
        let mut populate_expand = false;
        // vrm_will_map_new(): the remaining checks are for an expansion or a move.
        if expand || new.is_some() {
            if old_len == 0 && !vma.has(vmf::SHARED) {
                return Err(Errno::EINVAL);
            }
            // Only what is kept has to lie in the VMA; a shrink's tail may cross VMAs.
            let kept = if shrink { new_len } else { old_len };
            if kept > vma.end - addr {
                return Err(Errno::EFAULT);
            }
            populate_expand = expand && vma.has(vmf::LOCKED);
        }
        let res = match new {
            Some(n) => {
                // mremap_to(): the destination is unmapped first, then a shrink's tail; the
                // source is looked up again after each.
                self.munmap(pid, n, new_len)?;
                if self.mms[mmi].vma_at(addr).is_none() {
                    return Err(Errno::EFAULT);
                }
                if shrink {
                    self.munmap(pid, addr + new_len, old_len - new_len)?;
                    if self.mms[mmi].vma_at(addr).is_none() {
                        return Err(Errno::EFAULT);
                    }
                    old_len = new_len;
                }
                self.move_vma(pid, addr, old_len, n, new_len)?;
                n
            }
            // mremap_at(), shrink_vma(): the tail goes as munmap takes it.
            None if shrink => {
                self.munmap(pid, addr + new_len, old_len - new_len)?;
                addr
            }
            None if expand => {
                // expand_vma(): in place only, the range reaching the VMA's end
                // (vrm_can_expand_in_place); without MREMAP_MAYMOVE, ENOMEM otherwise.
                let delta = new_len - old_len;
                if vma.end - addr != old_len || !self.vma_expandable(mmi, &vma, delta) {
                    return Err(Errno::ENOMEM);
                }
                self.vma_merge_extend(mmi, &vma, delta);
                addr
            }
            None => addr,
        };
        if populate_expand {
            // do_mremap(): a grown VM_LOCKED range populates its new part, errors ignored.
            let _ = self.mm_populate(pid, res + old_len, res + new_len);
        }
        Ok(res)
    }

    /// `vma_expandable`: nothing mapped in `[vma.end, vma.end + delta)`, which fits below
    /// TASK_SIZE (`get_unmapped_area` with MAP_FIXED).
    fn vma_expandable(&self, mmi: MmId, vma: &Vma, delta: u64) -> bool {
        vma.end
            .checked_add(delta)
            .is_some_and(|end| end <= TASK_SIZE && !self.mms[mmi].has_vma_in(vma.end, end))
    }

    /// `vma_merge_extend`: `vma_merge_new_range` of `[vma.end, vma.end + delta)` with `vma`
    /// as the previous VMA (always compatible: the extension is a copy of it, at the next
    /// pgoff) and the next VMA if the extension reaches it and it is compatible; the merged
    /// VMA is offered to khugepaged (`khugepaged_enter_vma`).
    fn vma_merge_extend(&mut self, mmi: MmId, vma: &Vma, delta: u64) {
        let (start, end) = (vma.end, vma.end + delta);
        let ext = Vma {
            start,
            end,
            pgoff: vma.pgoff + ((vma.end - vma.start) >> PAGE_SHIFT),
            ..*vma
        };
        self.mms[mmi].vmas.insert(start, ext);
        let merged =
            self.mms[mmi].merge_range(start, end, self.profile.switches.anon_vma_dup_merge);
        debug_assert!(
            merged.contains(&vma.start),
            "the extension merges with its VMA"
        );
        self.khugepaged_enter_merged(mmi, &merged);
    }

    /// `move_vma`: moves `[old, old+len)`, inside one VMA, to `new`, into a VMA of `new_len`
    /// (≥ `len`; `copy_vma` makes it that long, `move_page_tables` moves `len`), unmapping
    /// the destination first, as MREMAP_FIXED does.
    fn move_vma(
        &mut self,
        pid: Pid,
        old: u64,
        len: u64,
        new: u64,
        new_len: u64,
    ) -> Result<(), Errno> {
        let mmi = self.mm_of(pid);
        let (old_end, new_end) = (old + len, new + new_len);
        let vma = self.mms[mmi].vma_at(old).copied().expect("source vma");
        self.munmap(pid, new, new_len)?;
        // copy_vma(): the new VMA, same flags and anon_vma, pgoff of the moved part, except
        // that a never-faulted anonymous VMA (no anon_vma) takes the pgoff of its new address,
        // which lets it merge with its new neighbours; the merge happens here, on insertion
        // (vma_merge_new_range()).
        let pgoff = if vma.anon_vma.is_none() && vma.is_anonymous() {
            new >> PAGE_SHIFT
        } else {
            vma.pgoff + ((old - vma.start) >> PAGE_SHIFT)
        };
        let nv = Vma {
            start: new,
            end: new_end,
            pgoff,
            ..vma
        };
        self.mms[mmi].vmas.insert(new, nv);
        let merged =
            self.mms[mmi].merge_range(new, new_end, self.profile.switches.anon_vma_dup_merge);
        self.khugepaged_enter_merged(mmi, &merged);
        // Without UFFD_FEATURE_EVENT_REMAP (not modelled) the moved entries lose their uffd-wp
        // bits and markers (vma_has_uffd_without_event_remap()) ...
        self.move_page_tables(mmi, old, new, len, vma.uffd_armed())?;
        if vma.backing.is_hugetlb() {
            self.move_hugetlb_page_tables(mmi, old, new, len, vma.uffd_armed());
        }
        // ... and mremap_userfaultfd_prep() unregisters the new VMA, as merged, without
        // merging again.
        if vma.uffd_armed() {
            let s = self.mms[mmi].vma_start_at(new).expect("new vma");
            self.mms[mmi].vmas.get_mut(&s).expect("vma").flags &= !vmf::UFFD_MASK;
            self.mms[mmi].invalidate_vma_cache();
        }
        // The old range is now empty: unmap it (splitting the old VMA at its boundaries).
        self.split_vma_at(mmi, old);
        self.split_vma_at(mmi, old_end);
        for s in self.mms[mmi].vma_starts_in(old, old_end) {
            let v = self.mms[mmi].vmas.remove(&s).expect("vma");
            self.mms[mmi].invalidate_vma_cache();
            self.zap_range(mmi, v.start, v.end);
        }
        self.free_pgtables(mmi, old, old_end);
        Ok(())
    }

    /// `move_page_tables` from `[old, old+len)` to `new`; `clear_uffd` drops uffd-wp markers
    /// and clears uffd-wp bits on the way (`move_ptes`, `move_huge_pmd`).
    fn move_page_tables(
        &mut self,
        mmi: MmId,
        old: u64,
        new: u64,
        len: u64,
        clear_uffd: bool,
    ) -> Result<(), Errno> {
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
                    if !self.pmd_alloc(mmi, n) {
                        return Err(Errno::ENOMEM);
                    }
                    let moved = if clear_uffd {
                        Pmd(pmd.0 & !UFFD_WP)
                    } else {
                        pmd
                    };
                    *self.mms[mmi].pgt.pmd_mut(o).expect("pmd") = Pmd::NONE;
                    *self.mms[mmi].pgt.pmd_mut(n).expect("pmd") = moved;
                    done += extent;
                    continue;
                }
                self.split_huge_pmd(mmi, o);
            }
            if self.mms[mmi].pgt.pmd(o).is_table() {
                // The new PTE table is allocated before move_ptes(), even if nothing in the
                // extent is mapped, so a later fault there cannot install a huge PMD.
                if !self.pmd_alloc(mmi, n) || !self.pte_alloc(mmi, n) {
                    return Err(Errno::ENOMEM);
                }
                // move_ptes()
                let mut a = 0;
                while a < extent {
                    let pte = self.mms[mmi].pgt.pte(o + a);
                    if clear_uffd && pte.is_marker() {
                        self.set_pte(mmi, o + a, Pte::NONE);
                    } else if !pte.is_none() {
                        let pte = if clear_uffd {
                            Pte(pte.0 & !UFFD_WP)
                        } else {
                            pte
                        };
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
