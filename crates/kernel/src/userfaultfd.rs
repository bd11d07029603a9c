//! userfaultfd, after `fs/userfaultfd.c` and `mm/userfaultfd.c` (Linux 6.18): `UFFDIO_API`
//! features, `UFFDIO_REGISTER` (MISSING / WP / MINOR; VMA split and merge), `UFFDIO_UNREGISTER`
//! (clears uffd-wp bits and markers), `UFFDIO_WRITEPROTECT` (`mwriteprotect_range` →
//! `change_protection` with the uffd flags: huge PMDs protected whole, split when only partly
//! covered; PTE markers in none entries with WP_UNPOPULATED/WP_ASYNC), `UFFDIO_COPY` and
//! `UFFDIO_ZEROPAGE` (`mfill_atomic`: order-0 pages only, EEXIST on populated entries),
//! `UFFDIO_CONTINUE` (`mfill_atomic_pte_continue`: map the page the shmem page cache already
//! holds), and the userfault delivery of `handle_userfault` with `userfault_msg` flags.
//!
//! The monitor is modelled as a deterministic handler policy of the uffd: when a fault is
//! delivered, the message is recorded and the policy resolves it (unprotect a 4 KiB page, a
//! 2 MiB block or the VMA; copy or zero-fill the missing page), as a monitor thread would with
//! ioctls that take no faults in the faulting task. The blocked attempt returns
//! `VM_FAULT_RETRY` (not counted); the in-kernel retry is counted once, as the 6.18 host shows.
//! MINOR mode is for shmem and hugetlb VMAs; a minor fault is raised where
//! `shmem_get_folio_gfp` finds the index in the page cache (`filemap.rs`) or
//! `hugetlb_no_page` finds the huge page in the file's cache (`hugetlb.rs`). On hugetlb VMAs
//! the ranges are whole huge pages and the fills are `hugetlb.rs`'s `hugetlb_mfill`; the
//! modelled monitor resolves hugetlb faults a huge page at a time.
//! Deviations: one uffd per process; no fork/remap/remove events.

use crate::errno::Errno;
use crate::hugetlb::HugetlbMfill;
use crate::ids::MmId;
use crate::mm::MmCounter;
use crate::mm::{vmf, Vma};
use crate::pgtable::{pte_index, Pte, DIRTY, EXCLUSIVE, UFFD_WP, WRITE, YOUNG};
use crate::rmap::RmapLevel;
use crate::shmem::Sgp;
use crate::types::{is_page_aligned, Pid, PAGE_SIZE, PMD_MASK, PMD_SIZE};
pub use crate::userfaultfd_ctx::{
    Features, Mfill, MinorPolicy, MissingPolicy, Msg, MsgStats, Uffd, WpPolicy, FLAG_MINOR,
    FLAG_WP, FLAG_WRITE,
};
use crate::Kernel;

/// What `Kernel::deliver_userfault` did with a userfault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// The modelled monitor resolved it: the fault is retried.
    Resolved,
    /// Not delivered (no monitor, or `UFFD_FEATURE_SIGBUS`): SIGBUS.
    Sigbus,
    /// The monitor could not place the faulting page (no memory): the fault's OOM.
    Oom,
}

impl Delivery {
    /// What a user access makes of it: go on (the fault is retried), SIGBUS, or the OOM
    /// kill.
    pub(crate) fn for_access(self) -> Result<(), crate::errno::Signal> {
        match self {
            Delivery::Resolved => Ok(()),
            Delivery::Sigbus => Err(crate::errno::Signal::Sigbus),
            Delivery::Oom => Err(crate::errno::Signal::Sigkill),
        }
    }

    /// What GUP makes of it: go on, EFAULT or ENOMEM.
    pub(crate) fn for_gup(self) -> Result<(), Errno> {
        match self {
            Delivery::Resolved => Ok(()),
            Delivery::Sigbus => Err(Errno::EFAULT),
            Delivery::Oom => Err(Errno::ENOMEM),
        }
    }
}

impl Kernel {
    fn uffd_of(&self, mmi: MmId) -> Result<&Uffd, Errno> {
        self.mms[mmi].uffd.as_deref().ok_or(Errno::EBADF)
    }

    /// userfaultfd(2) + `UFFDIO_API` with `features`. EBUSY if the process has one already
    /// (the model keeps one per process).
    pub fn uffd_open(&mut self, pid: Pid, features: Features) -> Result<(), Errno> {
        let mmi = self.mm_of(pid);
        if self.mms[mmi].uffd.is_some() {
            return Err(Errno::EBUSY);
        }
        self.mms[mmi].uffd = Some(Box::new(Uffd {
            features,
            wp_policy: WpPolicy::Unprotect(PAGE_SIZE),
            missing_policy: MissingPolicy::Copy(PAGE_SIZE),
            minor_policy: MinorPolicy::Continue(PAGE_SIZE),
            msgs: Vec::new(),
        }));
        Ok(())
    }

    /// Sets the modelled monitor's policies.
    pub fn uffd_set_handler(
        &mut self,
        pid: Pid,
        wp: Option<WpPolicy>,
        missing: Option<MissingPolicy>,
        minor: Option<MinorPolicy>,
    ) -> Result<(), Errno> {
        let mmi = self.mm_of(pid);
        let u = self.mms[mmi].uffd.as_deref_mut().ok_or(Errno::EBADF)?;
        if let Some(w) = wp {
            u.wp_policy = w;
        }
        if let Some(m) = missing {
            u.missing_policy = m;
        }
        if let Some(m) = minor {
            u.minor_policy = m;
        }
        Ok(())
    }

    /// Messages delivered to this process's uffd so far.
    pub fn uffd_msgs(&self, pid: Pid) -> &[Msg] {
        self.mms[self.mm_of(pid)]
            .uffd
            .as_deref()
            .map_or(&[], |u| u.msgs.as_slice())
    }

    fn uffd_range_check(&self, mmi: MmId, start: u64, len: u64) -> Result<u64, Errno> {
        if !is_page_aligned(start) || !is_page_aligned(len) || len == 0 {
            return Err(Errno::EINVAL);
        }
        let end = start.checked_add(len).ok_or(Errno::EINVAL)?;
        self.uffd_of(mmi)?;
        Ok(end)
    }

    /// `vma_can_userfault` for MISSING/WP: anonymous, shmem or hugetlb memory (not a
    /// guest_memfd, not a disk file; the WP_ASYNC-only exception aside, not modelled).
    fn vma_can_userfault(&self, v: &Vma) -> bool {
        match v.backing {
            crate::mm::VmaBacking::File { .. } => false,
            b => b.inode().is_none_or(|i| !self.is_gmem(i)),
        }
    }

    /// `userfaultfd_(un)register`: when the first VMA of the range is a hugetlb one, the
    /// start must be aligned to its huge page size (even when the VMA begins after it).
    fn uffd_hugetlb_start_aligned(&self, mmi: MmId, starts: &[u64], start: u64) -> bool {
        starts
            .first()
            .is_none_or(|s| start % self.hugetlb_page_size(&self.mms[mmi].vmas[s]) == 0)
    }

    /// `UFFDIO_REGISTER` with the `vmf::UFFD_*` mode bits.
    pub fn uffd_register(
        &mut self,
        pid: Pid,
        start: u64,
        len: u64,
        mode: u32,
    ) -> Result<(), Errno> {
        let mmi = self.mm_of(pid);
        let end = self.uffd_range_check(mmi, start, len)?;
        if mode == 0 || mode & !vmf::UFFD_MASK != 0 {
            return Err(Errno::EINVAL);
        }
        // userfaultfd_register(): some VMA must intersect the range (vma_find()); holes are
        // skipped.
        let starts = self.mms[mmi].vma_starts_in(start, end);
        if starts.is_empty() || !self.uffd_hugetlb_start_aligned(mmi, &starts, start) {
            return Err(Errno::EINVAL);
        }
        // vma_can_userfault(): anonymous, shmem or hugetlb VMAs only (a guest_memfd VMA
        // anywhere in the range is EINVAL), MINOR only on shmem and hugetlb VMAs (private
        // ones too); checked for every VMA of the range before anything is registered. No
        // UFFD_FEATURE_MINOR_SHMEM, MINOR_HUGETLBFS or MISSING_HUGETLBFS needed (measured).
        // A hugetlb VMA the range ends inside needs a huge-page aligned end.
        if starts.iter().any(|s| {
            let v = &self.mms[mmi].vmas[s];
            !self.vma_can_userfault(v)
                || (mode & vmf::UFFD_MINOR != 0
                    && v.backing.inode().is_none()
                    && !v.backing.is_hugetlb())
                || (v.backing.is_hugetlb() && end < v.end && end % self.hugetlb_page_size(v) != 0)
        }) {
            return Err(Errno::EINVAL);
        }
        // userfaultfd_register_range(): a VMA already registered with every requested mode
        // is left as it is (no split); any other gets exactly the requested modes.
        self.vma_modify_flags(mmi, start, end, |f| {
            if f & mode == mode {
                f
            } else {
                (f & !vmf::UFFD_MASK) | mode
            }
        });
        Ok(())
    }

    /// `UFFDIO_UNREGISTER`: the range leaves userfaultfd; uffd-wp bits and markers go.
    pub fn uffd_unregister(&mut self, pid: Pid, start: u64, len: u64) -> Result<(), Errno> {
        let mmi = self.mm_of(pid);
        let end = self.uffd_range_check(mmi, start, len)?;
        // userfaultfd_unregister(): EINVAL if no VMA intersects the range, or if one of them
        // could not have been registered (vma_can_userfault: a guest_memfd or disk file VMA);
        // holes and unregistered VMAs are skipped.
        // A hugetlb VMA first in the range needs an aligned start; a registered one the
        // range ends inside cannot be split there (hugetlb_vm_op_split).
        let starts = self.mms[mmi].vma_starts_in(start, end);
        if starts.is_empty()
            || !self.uffd_hugetlb_start_aligned(mmi, &starts, start)
            || starts.iter().any(|s| {
                let v = &self.mms[mmi].vmas[s];
                !self.vma_can_userfault(v)
                    || (v.backing.is_hugetlb()
                        && v.uffd_armed()
                        && end < v.end
                        && end % self.hugetlb_page_size(v) != 0)
            })
        {
            return Err(Errno::EINVAL);
        }
        for s in starts {
            let v = self.mms[mmi].vmas[&s];
            if v.has(vmf::UFFD_WP) {
                self.uffd_wp_range(mmi, &v, start.max(v.start), end.min(v.end), false, false);
            }
        }
        self.vma_modify_flags(mmi, start, end, |f| f & !vmf::UFFD_MASK);
        Ok(())
    }

    /// `UFFDIO_WRITEPROTECT`: protect (`wp`) or resolve `[start, start+len)`. ENOENT at the
    /// first VMA of the range not registered in WP mode.
    pub fn uffd_writeprotect(
        &mut self,
        pid: Pid,
        start: u64,
        len: u64,
        wp: bool,
    ) -> Result<(), Errno> {
        let mmi = self.mm_of(pid);
        let end = self.uffd_range_check(mmi, start, len)?;
        // mwriteprotect_range(): VMA by VMA in address order, holes skipped; no VMA at all is
        // ENOENT, and so is the first VMA not registered in WP mode, after the VMAs before
        // it were changed.
        let starts = self.mms[mmi].vma_starts_in(start, end);
        if starts.is_empty() {
            return Err(Errno::ENOENT);
        }
        let markers = self.uffd_of(mmi)?.features.use_markers();
        for s in starts {
            let v = self.mms[mmi].vmas[&s];
            if !v.has(vmf::UFFD_WP) {
                return Err(Errno::ENOENT);
            }
            // A hugetlb VMA takes whole huge pages only: the request's start and length
            // (not their part in this VMA) must be aligned.
            let hps = self.hugetlb_page_size(&v);
            if v.backing.is_hugetlb() && (start % hps != 0 || len % hps != 0) {
                return Err(Errno::EINVAL);
            }
            // userfaultfd_wp_use_markers(): a file (shmem) VMA always protects none PTEs with
            // markers; anonymous memory only with WP_UNPOPULATED.
            let markers = markers || v.backing.inode().is_some();
            self.uffd_wp_range(mmi, &v, start.max(v.start), end.min(v.end), wp, markers);
        }
        Ok(())
    }

    /// `uffd_wp_range` → `change_protection(MM_CP_UFFD_WP[_RESOLVE])` within one VMA.
    fn uffd_wp_range(
        &mut self,
        mmi: MmId,
        vma: &Vma,
        start: u64,
        end: u64,
        wp: bool,
        markers: bool,
    ) {
        if vma.backing.is_hugetlb() {
            self.hugetlb_uffd_wp_range(mmi, start, end, wp);
            return;
        }
        // Only installing markers (pgtable_populate_needed) visits none PMDs; otherwise the
        // walk skips them as change_pmd_range does.
        let populate = wp && markers;
        // A shared VMA registered for uffd-wp has a read-only vm_page_prot (write
        // notification), which change_protection applies to every present entry: resolving
        // (UFFDIO_WRITEPROTECT mode 0, or the unregister) leaves shmem pages read-only, dirty
        // or not, until a write fault (measured, FINDINGS.md §15).
        let notify = vma.has(vmf::SHARED) && vma.has(vmf::UFFD_WP);
        let mut slot = start & PMD_MASK;
        while let Some(next) = if populate {
            (slot < end).then_some(slot)
        } else {
            self.next_pmd_slot(mmi, slot, end)
        } {
            slot = next;
            let (s, e) = (start.max(slot), end.min(slot + PMD_SIZE));
            let whole = s == slot && e == slot + PMD_SIZE;
            let pmd = self.mms[mmi].pgt.pmd(slot);
            // uffd_wp_protect_file(): protecting a file VMA splits even a whole PMD (for a
            // file, a zap: thp_split_pmd) so that its pages get markers in a PTE table.
            let protect_file = wp && !vma.is_anonymous();
            if pmd.is_huge() {
                if whole && !protect_file {
                    let writable = vma.has(vmf::WRITE);
                    let entry = self.mms[mmi].pgt.pmd_mut(slot).expect("pmd");
                    entry.set(UFFD_WP, wp);
                    if wp || notify {
                        entry.set(WRITE, false);
                    } else if writable && entry.is_thp() && entry.has(EXCLUSIVE) {
                        // MM_CP_TRY_CHANGE_WRITABLE: can_change_pmd_writable().
                        entry.set(WRITE, true);
                    }
                    slot += PMD_SIZE;
                    continue;
                }
                self.split_huge_pmd(mmi, slot);
            }
            let pmd = self.mms[mmi].pgt.pmd(slot);
            if pmd.is_none() {
                // pgtable_populate_needed(): markers need a page table.
                if !wp || !markers || !self.pmd_alloc(mmi, slot) || !self.pte_alloc(mmi, slot) {
                    slot += PMD_SIZE;
                    continue;
                }
            }
            let writable = vma.has(vmf::WRITE);
            let tidx = self.mms[mmi].pgt.pmd(slot).table_idx();
            for i in pte_index(s)..=pte_index(e - 1) {
                let p = &mut self.mms[mmi].pgt.pte_table_mut(tidx)[i];
                if p.is_swap() {
                    // change_pte_range: a swap entry keeps the bit for the swap-in
                    // (pte_swp_mkuffd_wp / pte_swp_clear_uffd_wp).
                    p.set(UFFD_WP, wp);
                } else if wp {
                    if p.is_present() {
                        p.set(UFFD_WP, true);
                        p.set(WRITE, false);
                    } else if p.is_none() && markers {
                        *p = Pte::marker();
                    }
                } else if p.is_marker() {
                    *p = Pte::NONE;
                } else if p.is_present() {
                    p.set(UFFD_WP, false);
                    if notify {
                        p.set(WRITE, false);
                        continue;
                    }
                    // MM_CP_TRY_CHANGE_WRITABLE (private writable VMA): an exclusive anon page
                    // gets write permission back (can_change_pte_writable); the zero page not.
                    if writable
                        && p.is_page()
                        && p.has(EXCLUSIVE)
                        && !p.has(crate::pgtable::PROTNONE)
                    {
                        p.set(WRITE, true);
                    }
                }
            }
            slot += PMD_SIZE;
        }
    }

    /// `UFFDIO_COPY` / `UFFDIO_ZEROPAGE` (`mode`): fill none PTEs of a registered range with
    /// new order-0 pages (or the zero page). EEXIST at the first populated entry; the pages
    /// filled before it stay. In a shared shmem VMA each page is a new page-cache folio
    /// (`shmem_mfill_atomic_pte`); a private shmem VMA gets anonymous pages or the zero page
    /// as private anonymous memory does, without filling the file.
    pub fn uffd_fill(&mut self, pid: Pid, start: u64, len: u64, mode: Mfill) -> Result<(), Errno> {
        let (zero, wp) = match mode {
            Mfill::Copy { wp } => (false, wp),
            Mfill::ZeroPage => (true, false),
        };
        let mmi = self.mm_of(pid);
        let end = self.uffd_range_check(mmi, start, len)?;
        // mfill_atomic(): the whole range inside one registered VMA, else ENOENT; a WP copy
        // needs WP registration (EINVAL).
        let Some(mut vma0) = self.mms[mmi].vma_at(start).copied() else {
            return Err(Errno::ENOENT);
        };
        // uffd_mfill_lock() looks the VMA up with find_vma_and_prepare_anon(): a private VMA
        // gets its anon_vma before validate_dst_vma() checks the range and the registration,
        // so a copy that fails with ENOENT still leaves one (and fork then copies the VMA's
        // page tables, zero-page PTEs included). A shared VMA gets none.
        if vma0.anon_vma.is_none() && !vma0.has(vmf::SHARED) {
            self.anon_vma_prepare(mmi, &vma0);
            vma0 = self.mms[mmi].vma_at(start).copied().unwrap_or(vma0);
        }
        if end > vma0.end || !vma0.uffd_armed() {
            return Err(Errno::ENOENT);
        }
        if wp && !vma0.has(vmf::UFFD_WP) {
            return Err(Errno::EINVAL);
        }
        if vma0.backing.is_hugetlb() {
            // mfill_atomic_hugetlb(): no UFFDIO_ZEROPAGE on hugetlb.
            if zero {
                return Err(Errno::EINVAL);
            }
            return self.hugetlb_mfill(mmi, &vma0, start, end, HugetlbMfill::Copy { wp });
        }
        let mut addr = start;
        while addr < end {
            if !self.pmd_alloc(mmi, addr) {
                return Err(Errno::ENOMEM);
            }
            let pmd = self.mms[mmi].pgt.pmd(addr);
            if pmd.is_huge() {
                return Err(Errno::EEXIST);
            }
            if !self.pte_alloc(mmi, addr) {
                return Err(Errno::ENOMEM);
            }
            let wpbit = if wp { UFFD_WP } else { 0 };
            let shared_file = match vma0.backing.inode() {
                Some(ino) => {
                    // mfill_file_over_size() / shmem_mfill_atomic_pte(): beyond i_size is
                    // EFAULT.
                    if vma0.linear_page_index(addr)
                        >= self.shmem_inode(ino).size.div_ceil(PAGE_SIZE)
                    {
                        return Err(Errno::EFAULT);
                    }
                    vma0.has(vmf::SHARED).then_some(ino)
                }
                None => None,
            };
            let old = self.mms[mmi].pgt.pte(addr);
            if !(old.is_none() || old.is_marker()) {
                return Err(Errno::EEXIST);
            }
            if let Some(ino) = shared_file {
                self.shmem_mfill_atomic_pte(mmi, &vma0, addr, ino, zero, wpbit)?;
                addr += PAGE_SIZE;
                continue;
            }
            if zero {
                self.set_pte(mmi, addr, Pte::zero(wpbit));
            } else {
                let Some(f) =
                    self.alloc_anon_folio_order(0, crate::page_alloc::Gfp::HIGHUSER_MOVABLE)
                else {
                    return Err(Errno::ENOMEM);
                };
                self.folios.set_nonzero(f, 0);
                let w = if vma0.has(vmf::WRITE) && !wp {
                    WRITE
                } else {
                    0
                };
                self.set_pte(
                    mmi,
                    addr,
                    Pte::page(f, 0, DIRTY | YOUNG | EXCLUSIVE | w | wpbit),
                );
                self.folio_add_new_anon_rmap(f, RmapLevel::Pte, mmi);
                self.mms[mmi].add_mm_counter(MmCounter::AnonPages, 1);
            }
            addr += PAGE_SIZE;
        }
        Ok(())
    }

    /// `UFFDIO_CONTINUE` (`mfill_atomic` in `MFILL_ATOMIC_CONTINUE` mode, `wp`:
    /// `UFFDIO_CONTINUE_MODE_WP`): map, one PTE per page, the pages the shmem page cache
    /// already holds into none PTEs (or uffd-wp markers) of a registered shmem VMA, in any
    /// registration mode. Errnos as the 6.18 host returns them (FINDINGS.md §21): no
    /// registered VMA covering the whole range ENOENT; not shmem, or WP without WP
    /// registration, EINVAL; an index at or beyond i_size EINVAL (`shmem_get_folio` with
    /// `SGP_NOALLOC`); an index the cache lacks EFAULT; a populated entry or a huge PMD
    /// EEXIST. The pages before the failing one stay mapped (the host reports EAGAIN with the
    /// bytes mapped; the backends continue after them, as for `UFFDIO_COPY`). A folio
    /// fallocated and never written is zeroed first.
    pub fn uffd_continue(&mut self, pid: Pid, start: u64, len: u64, wp: bool) -> Result<(), Errno> {
        let mmi = self.mm_of(pid);
        let end = self.uffd_range_check(mmi, start, len)?;
        let Some(vma) = self.mms[mmi].vma_at(start).copied() else {
            return Err(Errno::ENOENT);
        };
        if end > vma.end || !vma.uffd_armed() {
            return Err(Errno::ENOENT);
        }
        if wp && !vma.has(vmf::UFFD_WP) {
            return Err(Errno::EINVAL);
        }
        if vma.backing.is_hugetlb() {
            return self.hugetlb_mfill(mmi, &vma, start, end, HugetlbMfill::Continue { wp });
        }
        let Some(ino) = vma.backing.inode() else {
            return Err(Errno::EINVAL);
        };
        if wp && !vma.has(vmf::UFFD_WP) {
            return Err(Errno::EINVAL);
        }
        let wpbit = if wp { UFFD_WP } else { 0 };
        let mut addr = start;
        while addr < end {
            if !self.pmd_alloc(mmi, addr) {
                return Err(Errno::ENOMEM);
            }
            if self.mms[mmi].pgt.pmd(addr).is_huge() {
                return Err(Errno::EEXIST);
            }
            if !self.pte_alloc(mmi, addr) {
                return Err(Errno::ENOMEM);
            }
            let index = vma.linear_page_index(addr);
            // mfill_atomic_pte_continue(): the caller wants EFAULT for a missing folio.
            let folio = match self.shmem_get_folio_gfp(ino, index, 0, None, Sgp::NoAlloc) {
                Ok((f, _)) => f,
                Err(Errno::ENOENT) => return Err(Errno::EFAULT),
                Err(e) => return Err(e),
            };
            let old = self.mms[mmi].pgt.pte(addr);
            if !(old.is_none() || old.is_marker()) {
                return Err(Errno::EEXIST);
            }
            // mfill_atomic_install_pte(page_in_cache): writable only in a shared VMA.
            let w = vma.has(vmf::SHARED) && vma.has(vmf::WRITE) && !wp;
            let idx = self.folio_page_of(folio, index);
            self.install_file_pte(mmi, addr, folio, idx, w, wpbit);
            addr += PAGE_SIZE;
        }
        Ok(())
    }

    /// `mfill_atomic_install_pte` for a page-cache page: dirty, young, writable if `w`, with
    /// the uffd-wp bit `wpbit`; the file rmap and the mm's shmem counter.
    fn install_file_pte(
        &mut self,
        mmi: MmId,
        addr: u64,
        folio: crate::folio::FolioId,
        idx: u32,
        w: bool,
        wpbit: u64,
    ) {
        let w = if w { WRITE } else { 0 };
        self.set_pte(mmi, addr, Pte::page(folio, idx, DIRTY | YOUNG | w | wpbit));
        self.folio_add_file_rmap_ptes(folio, idx, 1, mmi);
        self.mms[mmi].add_mm_counter(MmCounter::ShmemPages, 1);
    }

    /// `shmem_mfill_atomic_pte` + `mfill_atomic_install_pte(page_in_cache)` for one page of a
    /// shared shmem VMA: a new order-0 page-cache folio (copied, or zeroed for ZEROPAGE: never
    /// the zero page) at the page's index, mapped dirty and (unless `wpbit`) writable as the
    /// VMA allows, into a none PTE (`uffd_fill` checks it). EEXIST if the index is already
    /// cached, whether or not this VMA maps it, or holds a swap entry (`shmem_add_to_page_cache`
    /// expects nothing there: `xas_find_conflict` finds the entry).
    fn shmem_mfill_atomic_pte(
        &mut self,
        mmi: MmId,
        vma: &Vma,
        addr: u64,
        ino: crate::ids::InodeId,
        zero: bool,
        wpbit: u64,
    ) -> Result<(), Errno> {
        let index = vma.linear_page_index(addr);
        if self.filemap_get_folio(ino, index).is_some()
            || self.shmem.inodes[ino.index()].swap_entry(index).is_some()
        {
            return Err(Errno::EEXIST);
        }
        let f = self.shmem_add_new_folio(ino, index).ok_or(Errno::ENOMEM)?;
        if !zero {
            self.folios.set_nonzero(f, 0);
        }
        self.install_file_pte(mmi, addr, f, 0, vma.has(vmf::WRITE) && wpbit == 0, wpbit);
        Ok(())
    }

    /// The modelled monitor's ioctl `fill` on every page of `[s, e)` that the page table does
    /// not map (none or a marker, under no huge PMD). `Oom` when the faulting page's ioctl
    /// found no memory; other failures leave the page to the retried fault.
    fn monitor_fill_block(
        &mut self,
        mmi: MmId,
        addr: u64,
        (s, e): (u64, u64),
        unit: u64,
        mut fill: impl FnMut(&mut Self, u64) -> Result<(), Errno>,
    ) -> Delivery {
        let mut a = s;
        while a < e {
            let unmapped = if unit == PAGE_SIZE {
                let pte = self.mms[mmi].pgt.pte(a);
                !self.mms[mmi].pgt.pmd(a).is_huge() && (pte.is_none() || pte.is_marker())
            } else {
                !self.hugetlb_mapped(mmi, a)
            };
            if unmapped && fill(self, a) == Err(Errno::ENOMEM) && a == addr & !(unit - 1) {
                return Delivery::Oom;
            }
            a += unit;
        }
        // A hugetlb copy that found no pool page fails with EEXIST: the faulting page is
        // still missing, and the task would wait for a monitor that cannot help (OOM).
        if unit != PAGE_SIZE && !self.hugetlb_mapped(mmi, addr) {
            return Delivery::Oom;
        }
        Delivery::Resolved
    }

    /// A task of the mm (the monitor's ioctls name the uffd, whose mm is this one).
    fn pid_of_mm(&self, mmi: MmId) -> Pid {
        self.tasks
            .values()
            .find(|t| t.mm == mmi)
            .map(|t| t.pid)
            .expect("task of mm")
    }

    /// `handle_userfault`: record the message and let the modelled monitor resolve it.
    /// `Sigbus` when the uffd has `UFFD_FEATURE_SIGBUS` (the task gets SIGBUS); `Oom` when
    /// the monitor's UFFDIO_COPY/ZEROPAGE failed for want of memory (on the kernel the task
    /// would wait for a monitor that cannot help; the model treats it as the fault's OOM).
    pub(crate) fn deliver_userfault(&mut self, mmi: MmId, addr: u64, flags: u32) -> Delivery {
        if self.mms[mmi]
            .uffd
            .as_deref()
            .is_none_or(|u| u.features.sigbus)
        {
            return Delivery::Sigbus;
        }
        // The fault's page size: a hugetlb fault reports (and the monitor fills) whole huge
        // pages (hugetlb_fault's vmf->address is the huge page's).
        let unit = self.mms[mmi]
            .vma_at(addr)
            .map_or(PAGE_SIZE, |v| self.hugetlb_page_size(v));
        let Some(u) = self.mms[mmi].uffd.as_deref_mut() else {
            return Delivery::Sigbus;
        };
        let address = if u.features.exact_address {
            addr
        } else {
            addr & !(unit - 1)
        };
        u.msgs.push(Msg { flags, address });
        self.uffd_stats.last = Some(Msg { flags, address });
        let (wp_policy, missing_policy, minor_policy) =
            (u.wp_policy, u.missing_policy, u.minor_policy);
        self.uffd_stats.events += 1;
        if flags & FLAG_WRITE != 0 {
            self.uffd_stats.write += 1;
        }
        let Some(vma) = self.mms[mmi].vma_at(addr).copied() else {
            return Delivery::Resolved;
        };
        let block = |size: u64| {
            let size = size.max(unit);
            let a = addr & !(size - 1);
            (a.max(vma.start), (a + size).min(vma.end))
        };
        if flags & FLAG_WP != 0 {
            self.uffd_stats.wp += 1;
            let (s, e) = match wp_policy {
                WpPolicy::Unprotect(size) => block(size),
                WpPolicy::UnprotectVma => (vma.start, vma.end),
            };
            self.uffd_wp_range(mmi, &vma, s, e, false, false);
        } else if flags & FLAG_MINOR != 0 {
            self.uffd_stats.minor += 1;
            let MinorPolicy::Continue(size) = minor_policy;
            // The monitor continues what the page table still lacks in the block, page by
            // page (a page the cache lacks is EFAULT and left alone).
            let pid = self.pid_of_mm(mmi);
            return self.monitor_fill_block(mmi, addr, block(size), unit, |k, a| {
                k.uffd_continue(pid, a, unit, false)
            });
        } else {
            self.uffd_stats.missing += 1;
            let (size, mode) = match missing_policy {
                MissingPolicy::Copy(s) => (s, Mfill::Copy { wp: false }),
                // hugetlb has no UFFDIO_ZEROPAGE: the monitor copies a zeroed huge page
                // (QEMU's postcopy_place_page_zero); the model keeps no hugetlb contents.
                MissingPolicy::Zeropage(s) if unit == PAGE_SIZE => (s, Mfill::ZeroPage),
                MissingPolicy::Zeropage(s) => (s, Mfill::Copy { wp: false }),
            };
            // The monitor fills what is still missing in the block.
            let pid = self.pid_of_mm(mmi);
            return self.monitor_fill_block(mmi, addr, block(size), unit, |k, a| {
                k.uffd_fill(pid, a, unit, mode)
            });
        }
        Delivery::Resolved
    }
}
