//! mlock(2)/munlock(2), after `mm/mlock.c` (Linux 6.18): `apply_vma_lock_flags` (VM_LOCKED
//! with VMA split and merge — so locking part of a THP splits its PMD — and ENOMEM at the
//! first hole after locking what came before it) and `__mm_populate` for mlock (write faults
//! in private writable VMAs, read faults otherwise; PROT_NONE fails). Effects elsewhere:
//! MADV_DONTNEED/FREE refuse locked VMAs, folio splits do not remap zero-filled pages of locked
//! VMAs, smaps `Locked`. Deviation: no mlock LRU/mlock_count accounting (not observable here).

use crate::errno::Errno;
use crate::gup::Foll;
use crate::mm::vmf;
use crate::types::{page_align_up, Pid, PAGE_SIZE};
use crate::Kernel;

impl Kernel {
    /// mlock(2) of `[start, start+len)`: VM_LOCKED, then the range is populated.
    pub fn mlock(&mut self, pid: Pid, start: u64, len: u64) -> Result<(), Errno> {
        self.do_mlock(pid, start, len, vmf::LOCKED)
    }

    /// munlock(2) of `[start, start+len)`.
    pub fn munlock(&mut self, pid: Pid, start: u64, len: u64) -> Result<(), Errno> {
        self.do_mlock(pid, start, len, 0)
    }

    /// `do_mlock` / `apply_vma_lock_flags` with `lock_flags` (VM_LOCKED or nothing).
    fn do_mlock(&mut self, pid: Pid, start: u64, len: u64, lock_flags: u32) -> Result<(), Errno> {
        let lock = lock_flags & vmf::LOCKED != 0;
        // The start is rounded down and the length up, as do_mlock does.
        let off = start & (PAGE_SIZE - 1);
        let start = start - off;
        let len = page_align_up(len.checked_add(off).ok_or(Errno::EINVAL)?);
        let end = start.checked_add(len).ok_or(Errno::EINVAL)?;
        if len == 0 {
            return Ok(());
        }
        let mmi = self.mm_of(pid);
        if self.mms[mmi].vma_at(start).is_none() {
            return Err(Errno::ENOMEM);
        }
        // Lock up to the first hole.
        let mut cur = start;
        while cur < end {
            match self.mms[mmi].vma_at(cur) {
                Some(v) => cur = v.end.min(end),
                None => break,
            }
        }
        // mlock_fixup() leaves hugetlb VMAs unlocked and unsplit (they are still populated).
        let parts: Vec<(u64, u64)> = self.mms[mmi]
            .vma_starts_in(start, cur)
            .iter()
            .chain(self.mms[mmi].vma_at(start).map(|v| v.start).iter())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(|s| self.mms[mmi].vmas[s])
            .filter(|v| v.backing.is_hugetlb())
            .map(|v| (v.start, v.end))
            .collect();
        let mut from = start;
        for (s, e) in parts {
            if from < s {
                self.vma_modify_flags(mmi, from, s, |f| (f & !vmf::LOCKED) | lock_flags);
            }
            from = from.max(e);
        }
        if from < cur {
            self.vma_modify_flags(mmi, from, cur, |f| (f & !vmf::LOCKED) | lock_flags);
        }
        if cur < end {
            return Err(Errno::ENOMEM);
        }
        if lock {
            // __mm_populate(); its EFAULT (PROT_NONE) is reported as ENOMEM by mlock.
            self.mm_populate_strict(pid, start, end).map_err(|e| {
                if e == Errno::EFAULT || e == Errno::EINVAL {
                    Errno::ENOMEM
                } else {
                    Errno::EAGAIN
                }
            })?;
        }
        Ok(())
    }

    /// `__mm_populate` without ignoring errors (mlock).
    fn mm_populate_strict(&mut self, pid: Pid, start: u64, end: u64) -> Result<(), Errno> {
        let mmi = self.mm_of(pid);
        let mut addr = start;
        while addr < end {
            let Some(vma) = self.mms[mmi].vma_at(addr).copied() else {
                return Err(Errno::ENOMEM);
            };
            let e = end.min(vma.end);
            if !vma.accessible() {
                return Err(Errno::EFAULT);
            }
            // populate_vma_page_range(): FOLL_WRITE only for private writable mappings.
            let write = Foll::write_if(vma.has(vmf::WRITE) && !vma.has(vmf::SHARED));
            self.populate_range(pid, addr, e, write | Foll::FORCE | Foll::MM_POPULATE)?;
            addr = e;
        }
        Ok(())
    }
}
