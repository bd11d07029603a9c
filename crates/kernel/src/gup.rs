//! Population through GUP, after `mm/gup.c` (Linux 6.18): `faultin_page_range` /
//! `__get_user_pages` as `MADV_POPULATE_READ/WRITE` and `MAP_POPULATE` use them. Each page
//! not already mapped with the needed access is faulted with `handle_mm_fault` exactly like a
//! user access (same decisions, same `pgfault`, the caller's `minflt`), but no data is
//! stored, so populated pages stay zero-filled.

use crate::errno::Errno;
use crate::fault::{FaultFlags, VmFault, Vmf};
use crate::folio::flags;
use crate::ids::MmId;
use crate::mm::vmf;
use crate::pgtable::{DIRTY, PROTNONE, WRITE, YOUNG};
use crate::types::{Pid, PAGE_SIZE, PMD_MASK, PMD_SIZE};
use crate::Kernel;

/// The GUP flags the model distinguishes (`FOLL_*`, `include/linux/mm_types.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct Foll(u8);

impl Foll {
    /// `FOLL_WRITE`: the pages are written (a write fault).
    pub(crate) const WRITE: Foll = Foll(1 << 0);
    /// `FOLL_FORCE`: any accessible VMA may be read (MAP_POPULATE, mlock).
    pub(crate) const FORCE: Foll = Foll(1 << 1);
    /// `FOLL_UNLOCKABLE`: the fault may drop mmap_lock (so a userfault can be delivered).
    pub(crate) const UNLOCKABLE: Foll = Foll(1 << 2);
    /// Not a kernel flag: the caller is `__mm_populate` (MAP_POPULATE, mlock), whose
    /// `populate_vma_page_range` → `__get_user_pages` returns when a fault dropped the lock
    /// for readahead I/O, and which calls it again from that page: the retry is a fresh
    /// fault, without `FAULT_FLAG_TRIED` (a minor fault), unlike `__get_user_pages_locked`'s
    /// (MADV_POPULATE_*). Measured: FINDINGS.md §22.
    pub(crate) const MM_POPULATE: Foll = Foll(1 << 3);

    /// `FOLL_WRITE` if `write`.
    pub(crate) fn write_if(write: bool) -> Foll {
        if write {
            Foll::WRITE
        } else {
            Foll::default()
        }
    }
    pub(crate) fn contains(self, f: Foll) -> bool {
        self.0 & f.0 == f.0
    }
}

impl std::ops::BitOr for Foll {
    type Output = Foll;
    fn bitor(self, o: Foll) -> Foll {
        Foll(self.0 | o.0)
    }
}

impl Kernel {
    /// Populates `[start, end)` (page aligned) with `foll` (`FOLL_UNLOCKABLE` is added, as
    /// `faultin_page_range` does). Errors as `madvise_populate` maps them: a hole →
    /// ENOMEM, a VMA without the needed permission → EINVAL, a failed fault → EFAULT/ENOMEM.
    pub(crate) fn populate_range(
        &mut self,
        pid: Pid,
        start: u64,
        end: u64,
        foll: Foll,
    ) -> Result<(), Errno> {
        self.get_user_pages(pid, (start, end), foll | Foll::UNLOCKABLE)
    }

    /// `__get_user_pages` over `[start, end)`. Without `FOLL_UNLOCKABLE` (a caller that
    /// passes no `locked`, like mprotect_fixup's populate) the fault may not drop mmap_lock,
    /// so a userfault cannot be delivered: handle_userfault() fails it with SIGBUS, GUP stops
    /// there with EFAULT and no message is sent.
    pub(crate) fn get_user_pages(
        &mut self,
        pid: Pid,
        range: (u64, u64),
        foll: Foll,
    ) -> Result<(), Errno> {
        let (start, end) = range;
        let write = foll.contains(Foll::WRITE);
        let force = foll.contains(Foll::FORCE);
        let unlockable = foll.contains(Foll::UNLOCKABLE);
        let mmi = self.mm_of(pid);
        let mut addr = start;
        while addr < end {
            let Some(vma) = self.mms[mmi].vma_at(addr).copied() else {
                return Err(Errno::ENOMEM);
            };
            // check_vma_flags()
            let ok = if write {
                vma.has(vmf::WRITE)
            } else {
                vma.has(vmf::READ) || (force && vma.accessible())
            };
            if !ok {
                return Err(Errno::EINVAL);
            }
            let e = end.min(vma.end);
            if vma.backing.is_hugetlb() {
                self.hugetlb_gup(pid, mmi, &vma, (addr, e), write)?;
                addr = e;
                continue;
            }
            // The extent fast path's view of this populate: each page a fault of the
            // populate's kind, then `follow_page`.
            let run = crate::memory::FaultRun {
                read_fault: !write,
                write_fault: write,
                store: false,
                gup: true,
            };
            let mut no_run_until = addr;
            while addr < e {
                if let Some(next) =
                    self.fault_run_at(pid, mmi, (addr, e), PAGE_SIZE, run, &mut no_run_until)
                {
                    addr = next;
                    continue;
                }
                let mut tries = 0;
                while !self.follow_page(mmi, addr, write) {
                    tries += 1;
                    assert!(
                        tries <= 4,
                        "model bug: populate at {addr:#x} keeps faulting"
                    );
                    let mut vmf = Vmf::new(mmi, vma, addr, FaultFlags::for_access(write));
                    match self.handle_mm_fault(&mut vmf) {
                        VmFault::Done | VmFault::Fallback => self.mm_account_fault(pid, vmf.flags),
                        VmFault::Oom => return Err(Errno::ENOMEM),
                        VmFault::Sigbus => return Err(Errno::EFAULT),
                        VmFault::Retry { .. } => {
                            // faultin_page() → -EBUSY: __get_user_pages_locked() retries the
                            // page with FAULT_FLAG_TRIED (a major fault when it completes);
                            // __mm_populate starts over from the page, a fresh fault.
                            let flags = if foll.contains(Foll::MM_POPULATE) {
                                FaultFlags::for_access(write)
                            } else {
                                FaultFlags::for_access(write).with(FaultFlags::TRIED)
                            };
                            self.gup_retry_fault(pid, Vmf::new(mmi, vma, addr, flags))?;
                        }
                        VmFault::Userfault(flags) => {
                            if !unlockable {
                                return Err(Errno::EFAULT);
                            }
                            self.deliver_userfault(mmi, addr, flags).for_gup()?;
                            // The retry looks the page up first (follow_page_mask): one the
                            // monitor installed with the needed access takes no second fault.
                            if self.access_hit(mmi, addr, write, false) {
                                continue;
                            }
                            // GUP retries with FAULT_FLAG_TRIED, so the completed retry counts
                            // as a major fault (mm_account_fault), unlike a user access on 6.18.
                            let flags = FaultFlags::for_access(write).with(FaultFlags::TRIED);
                            self.gup_retry_fault(pid, Vmf::new(mmi, vma, addr, flags))?;
                        }
                    }
                }
                // follow_page_mask() returns a huge PMD's page mask: GUP goes on after the
                // huge page (every later page of it would be found the same way).
                addr = if self.mms[mmi].pgt.pmd(addr).is_huge() {
                    ((addr & PMD_MASK) + PMD_SIZE).min(e)
                } else {
                    addr + PAGE_SIZE
                };
            }
        }
        Ok(())
    }

    /// The retried fault of GUP after a `VM_FAULT_RETRY` (a userfault or readahead I/O): a
    /// completed one is counted; one that needs yet another retry is left to the caller's
    /// loop (it looks the page up again).
    fn gup_retry_fault(&mut self, pid: Pid, mut vmf: Vmf) -> Result<(), Errno> {
        match self.handle_mm_fault(&mut vmf) {
            VmFault::Done | VmFault::Fallback => self.mm_account_fault(pid, vmf.flags),
            VmFault::Oom => return Err(Errno::ENOMEM),
            VmFault::Sigbus => return Err(Errno::EFAULT),
            VmFault::Userfault(_) | VmFault::Retry { .. } => {}
        }
        Ok(())
    }

    /// `follow_page_mask` with `FOLL_TOUCH` (what populate uses): does the present entry
    /// allow the access? A huge PMD is touched (`touch_pmd`: young, and dirty for a write).
    /// A PTE is not changed for a write: `follow_page_pte` marks the folio dirty instead
    /// (`folio_mark_dirty` when neither the PTE nor the folio is dirty), so a clean large
    /// folio (after MADV_FREE) becomes dirty as a whole. Nor is it made young:
    /// `folio_mark_accessed` toggles the folio's `PG_referenced`/`PG_active` instead, which
    /// khugepaged reads (FINDINGS §17).
    fn follow_page(&mut self, mmi: MmId, addr: u64, write: bool) -> bool {
        let pmd = self.mms[mmi].pgt.pmd(addr);
        if pmd.is_huge() {
            if pmd.has(PROTNONE) || (write && !pmd.has(WRITE)) {
                return false;
            }
            let e = self.mms[mmi].pgt.pmd_mut(addr).expect("pmd");
            e.set(YOUNG, true);
            if write {
                e.set(DIRTY, true);
            }
            return true;
        }
        if !pmd.is_table() {
            return false;
        }
        let pte = self.mms[mmi].pgt.pte(addr);
        if !pte.is_present() || pte.has(PROTNONE) || (write && !pte.has(WRITE)) {
            return false;
        }
        if write && pte.is_page() && !pte.has(DIRTY) {
            self.folios.get_mut(pte.folio()).flags |= flags::DIRTY;
        }
        // The PTE stays as it is (old, in a fork child): the access is recorded in the folio.
        if pte.is_page() {
            self.folios.mark_accessed(pte.folio());
        }
        true
    }
}
