//! The anonymous page-fault paths of `mm/memory.c` (Linux 6.18): `handle_mm_fault` and its
//! accounting (`mm_account_fault`), `__handle_mm_fault`, `handle_pte_fault`,
//! `do_anonymous_page` with mTHP order selection (`alloc_anon_folio`), and the write-protect
//! path `do_wp_page` (`wp_can_reuse_anon_folio`, `wp_page_reuse`, `wp_page_copy`).
//! The arch entry (`do_user_addr_fault`, x86) is `Kernel::access`: an access that the page
//! tables already allow costs nothing; otherwise the fault is handled and the access retried.
//!
//! Sequential accesses (`access_seq`) and GUP populate take a run of order-0 anonymous
//! faults on one PTE table at once (`fault_run`, the extent fast path), only where that is
//! provably what the page-at-a-time path does (tests/extent_faults.rs).
//!
//! Shmem VMAs take the file paths of `filemap.rs` from the two dispatch points.
//!
//! A fault on a swap entry is `do_swap_page` (the swap cache, the synchronous zram path with
//! mTHP swap-in), a major fault.
//!
//! Deviations: no KSM, no NUMA, no memcg charge failures; a fault
//! never needs a retry under mmap_lock (the per-VMA lock path always succeeds).

use crate::errno::Signal;
use crate::fault::{FaultFlags, Tva, VmFault, Vmf};
use crate::folio::FolioId;
use crate::ids::{AnonVmaId, MmId};
use crate::mm::MmCounter;
use crate::mm::{vmf, Vma, VmaBacking};
use crate::page_alloc::Gfp;
use crate::pgtable::{
    pte_index, pte_index32, Pmd, Pte, DIRTY, EXCLUSIVE, PROTNONE, SOFT_DIRTY, STORED, UFFD_WP,
    WRITE, YOUNG,
};
use crate::rmap::RmapLevel;
use crate::types::{AccessKind, AccessPattern, Pid, HPAGE_PMD_ORDER, PAGE_SHIFT, PAGE_SIZE};
use crate::util::highest_order;
use crate::vmstat::{MthpStat, VmItem};
use crate::Kernel;

impl Kernel {
    /// A task's load or store of one byte at `addr` (the hardware access, then
    /// `do_user_addr_fault` as many times as needed). A store marks the page's content
    /// non-zero.
    // Always inlined: callers loop over it (the scenario engine, benchmarks), and the
    // resident fast path is a few loads.
    #[inline(always)]
    pub fn access(&mut self, pid: Pid, addr: u64, kind: AccessKind) -> Result<(), Signal> {
        let mmi = self.mm_of(pid);
        let write = kind == AccessKind::Write;
        // Fast path: the translation exists and allows the access (no fault).
        if self.access_hit(mmi, addr, write, true) {
            return Ok(());
        }
        self.access_slow(pid, mmi, addr, write)
    }

    #[inline(never)]
    fn access_slow(&mut self, pid: Pid, mmi: MmId, addr: u64, write: bool) -> Result<(), Signal> {
        // hugetlb VMAs have their own entries and fault path (hugetlb.rs, `hugetlb_fault`).
        if self.mms[mmi]
            .vma_lookup(addr)
            .is_some_and(|v| v.backing.is_hugetlb())
        {
            return self.hugetlb_user_access(pid, mmi, addr, write);
        }
        // After a userfault the kernel retries handle_mm_fault itself (FAULT_FLAG_TRIED),
        // without going back to the hardware. (The caller just saw the hardware check fail.)
        let mut in_kernel_retry = true;
        // A retry after VM_FAULT_RETRY|VM_FAULT_MAJOR carries FAULT_FLAG_TRIED.
        let mut tried = FaultFlags::default();
        for _ in 0..8 {
            if !in_kernel_retry && self.access_hit(mmi, addr, write, true) {
                return Ok(());
            }
            in_kernel_retry = false;
            let Some(vma) = self.mms[mmi].vma_lookup(addr) else {
                return Err(Signal::Sigsegv);
            };
            // access_error(): writes need VM_WRITE, anything else needs some access right.
            if (write && !vma.has(vmf::WRITE)) || !vma.accessible() {
                return Err(Signal::Sigsegv);
            }
            let flags = FaultFlags::for_access(write).with(std::mem::take(&mut tried));
            let mut vmf = Vmf::new(mmi, vma, addr, flags);
            match self.handle_mm_fault(&mut vmf) {
                VmFault::Done | VmFault::Fallback => self.mm_account_fault(pid, vmf.flags),
                VmFault::Oom => return Err(Signal::Sigkill),
                VmFault::Sigbus => return Err(Signal::Sigbus),
                VmFault::Retry { major } => {
                    // do_user_addr_fault: the per-VMA-lock attempt returned VM_FAULT_RETRY;
                    // the retry under mmap_lock is FAULT_FLAG_TRIED only if it was major.
                    if major {
                        tried = FaultFlags::TRIED;
                    }
                    in_kernel_retry = true;
                }
                VmFault::Userfault(flags) => {
                    self.deliver_userfault(mmi, addr, flags).for_access()?;
                    // VM_FAULT_RETRY with VM_FAULT_MAJOR (a swap-in whose write then hit a
                    // uffd-wp PTE): the retry is FAULT_FLAG_TRIED, counted major.
                    if vmf.flags.contains(FaultFlags::MAJOR) {
                        tried = FaultFlags::TRIED;
                    }
                    in_kernel_retry = true;
                }
            }
        }
        panic!("model bug: access at {addr:#x} still faults after 8 attempts");
    }

    /// The hardware side of an access: does the current translation allow it? Sets the
    /// accessed/dirty bits like the MMU, and records a store into the page's content.
    #[inline(always)]
    pub(crate) fn access_hit(&mut self, mmi: MmId, addr: u64, write: bool, store: bool) -> bool {
        let mm = &mut self.mms[mmi];
        let Some(pmd) = mm.pgt.pmd_mut(addr) else {
            return false;
        };
        let p = *pmd;
        if p.is_huge() {
            if p.has(PROTNONE) || (write && !p.has(WRITE)) {
                return false;
            }
            pmd.set(YOUNG, true);
            if write {
                pmd.set(DIRTY, true);
                if store && p.is_thp() {
                    self.folios.set_nonzero(p.folio(), pte_index32(addr));
                }
            }
            return true;
        }
        if !p.is_table() {
            return false;
        }
        let pte = &mut mm.pgt.ptes[p.table_idx().index()][pte_index(addr)];
        let e = *pte;
        if !e.is_present() || e.has(PROTNONE) || (write && !e.has(WRITE)) {
            return false;
        }
        // Like the MMU: only write the entry when a bit actually changes.
        let want = YOUNG | if write { DIRTY } else { 0 } | if write && store { STORED } else { 0 };
        if e.0 & want != want {
            pte.0 |= want;
            if write && store && !e.has(STORED) {
                self.folios.set_nonzero(e.folio(), e.idx());
            }
        }
        true
    }

    /// `handle_mm_fault` + `mm_account_fault` (vmstat part; the caller counts the task's
    /// fault, `Kernel::mm_account_fault`, since GUP and user faults both do).
    pub(crate) fn handle_mm_fault(&mut self, vmf: &mut Vmf) -> VmFault {
        let r = self.__handle_mm_fault(vmf);
        if !matches!(r, VmFault::Userfault(_) | VmFault::Retry { .. }) {
            self.vmstat.count(VmItem::Pgfault);
        }
        r
    }

    /// `mm_account_fault`, task part: a retried fault (`FAULT_FLAG_TRIED`) or one that
    /// returned `VM_FAULT_MAJOR` is major.
    pub(crate) fn mm_account_fault(&mut self, pid: Pid, flags: FaultFlags) {
        let t = self.tasks.get_mut(&pid).expect("task");
        if flags.contains(FaultFlags::TRIED) || flags.contains(FaultFlags::MAJOR) {
            t.majflt += 1;
        } else {
            t.minflt += 1;
        }
    }

    /// `__handle_mm_fault`: the PMD level (a huge entry, or a none entry where the VMA's
    /// backing may map a PMD), then the PTE level.
    fn __handle_mm_fault(&mut self, vmf: &mut Vmf) -> VmFault {
        let (mmi, addr) = (vmf.mm, vmf.address);
        if !self.pmd_alloc(mmi, addr) {
            return VmFault::Oom;
        }
        let pmd = self.mms[mmi].pgt.pmd(addr);
        if pmd.is_none() {
            if self.thp_vma_allowable_order(mmi, &vmf.vma, HPAGE_PMD_ORDER, Tva::PageFault) {
                let r = self.create_huge_pmd(vmf);
                if r != VmFault::Fallback {
                    return r;
                }
            }
        } else if pmd.is_huge() {
            if vmf.is_write() && !pmd.has(WRITE) {
                let r = self.wp_huge_pmd(vmf);
                if r != VmFault::Fallback {
                    return r;
                }
            } else {
                // huge_pmd_set_accessed(): a spurious fault.
                self.mms[mmi]
                    .pgt
                    .pmd_mut(addr)
                    .expect("pmd")
                    .set(YOUNG, true);
                return VmFault::Done;
            }
        }
        self.handle_pte_fault(vmf)
    }

    /// `create_huge_pmd`: a PMD-sized fault, by what backs the VMA.
    fn create_huge_pmd(&mut self, vmf: &mut Vmf) -> VmFault {
        match vmf.backing() {
            VmaBacking::Anon | VmaBacking::DevZero => self.do_huge_pmd_anonymous_page(vmf),
            // shmem_vm_ops has no huge_fault: the PMD is mapped by finish_fault (do_set_pmd).
            VmaBacking::Shmem { .. } => VmFault::Fallback,
            VmaBacking::Hugetlb { .. } => unreachable!("hugetlb faults go to hugetlb_fault"),
            // Nor has ext4_file_vm_ops: a PMD comes from do_set_pmd (fault-around, finish_fault).
            VmaBacking::File { .. } => VmFault::Fallback,
        }
    }

    fn handle_pte_fault(&mut self, vmf: &mut Vmf) -> VmFault {
        let (mmi, addr) = (vmf.mm, vmf.address);
        let pte = self.mms[mmi].pgt.pte(addr);
        vmf.orig_pte = pte;
        vmf.flags = vmf.flags.with(FaultFlags::ORIG_PTE_VALID);
        if pte.is_none() {
            return self.do_pte_missing(vmf);
        }
        if pte.is_swap() {
            return self.do_swap_page(vmf);
        }
        if pte.is_marker() {
            // handle_pte_marker → pte_marker_handle_uffd_wp: a leftover marker in a VMA that
            // is no longer uffd-wp registered is just cleared (the access faults again).
            if !vmf.vma.has(vmf::UFFD_WP) {
                self.set_pte(mmi, addr, Pte::NONE);
                return VmFault::Done;
            }
            return self.do_pte_missing(vmf);
        }
        if vmf.is_write() && !pte.has(WRITE) {
            return self.do_wp_page(vmf, pte);
        }
        self.set_pte(mmi, addr, Pte(pte.0 | YOUNG));
        VmFault::Done
    }

    /// `do_pte_missing`: nothing is mapped (or only a uffd-wp marker); what happens depends
    /// on what backs the VMA (`vma_is_anonymous`; a file or shmem VMA would go to `do_fault`).
    fn do_pte_missing(&mut self, vmf: &mut Vmf) -> VmFault {
        match vmf.backing() {
            VmaBacking::Anon | VmaBacking::DevZero => self.do_anonymous_page(vmf),
            VmaBacking::Shmem { inode } | VmaBacking::File { inode } => self.do_fault(vmf, inode),
            VmaBacking::Hugetlb { .. } => unreachable!("hugetlb faults go to hugetlb_fault"),
        }
    }

    #[inline]
    pub(crate) fn set_pte(&mut self, mmi: MmId, addr: u64, pte: Pte) {
        let pmd = self.mms[mmi].pgt.pmd(addr);
        debug_assert!(pmd.is_table());
        self.mms[mmi].pgt.ptes[pmd.table_idx().index()][pte_index(addr)] = pte;
    }

    /// `pmd_alloc`: makes sure `addr`'s 1 GiB region has a PMD table. False on OOM.
    pub(crate) fn pmd_alloc(&mut self, mmi: MmId, addr: u64) -> bool {
        if self.mms[mmi].pgt.has_pmd_table(addr) {
            return true;
        }
        let Some(pfn) = self.alloc_pgtable_page() else {
            return false;
        };
        self.mms[mmi].pgt.install_pmd_table(addr, pfn);
        true
    }

    /// `pte_alloc`: makes sure the PMD slot has a PTE table. False on OOM.
    pub(crate) fn pte_alloc(&mut self, mmi: MmId, addr: u64) -> bool {
        let pmd = self.mms[mmi].pgt.pmd(addr);
        if pmd.is_table() {
            return true;
        }
        debug_assert!(pmd.is_none());
        let Some(pfn) = self.alloc_pgtable_page() else {
            return false;
        };
        self.pmd_populate(mmi, addr, pfn);
        true
    }

    /// `pmd_populate`: a new, empty PTE table in page `pfn` under `addr`'s none PMD.
    fn pmd_populate(&mut self, mmi: MmId, addr: u64, pfn: crate::ids::Pfn) {
        let idx = self.mms[mmi].pgt.new_pte_table(pfn);
        *self.mms[mmi].pgt.pmd_mut(addr).expect("pmd table") = Pmd::table(idx);
    }

    /// `anon_vma_prepare`: gives the VMA an anon_vma, reusing a neighbour's
    /// (`find_mergeable_anon_vma`: the next VMA first, then the previous one); returns it. A
    /// neighbour's anon_vma is reusable when the two are `anon_vma_compatible` (adjacent,
    /// linear pgoff, flags equal except the access bits, so mprotect-split parts share one and
    /// can merge back) and its chain is singular (not an anon_vma_fork() child's).
    /// `vma` is the caller's copy; the tree is only consulted when it has no anon_vma yet
    /// (the common fault needs no lookup).
    pub(crate) fn anon_vma_prepare(&mut self, mmi: MmId, vma: &Vma) -> AnonVmaId {
        if let Some(id) = vma.anon_vma {
            return id;
        }
        let vma_start = vma.start;
        let mm = &self.mms[mmi];
        let v = &mm.vmas[&vma_start];
        if let Some(id) = v.anon_vma {
            return id;
        }
        let compatible = |a: &Vma, b: &Vma| {
            a.end == b.start
                && (a.flags ^ b.flags) & !vmf::PROT_MASK == 0
                && b.pgoff == a.pgoff + ((b.start - a.start) >> PAGE_SHIFT)
        };
        let reusable = |old: &Vma| old.anon_vma.filter(|id| !id.is_forked());
        let prev = mm.vmas.range(..vma_start).next_back().map(|(_, p)| p);
        let next = mm.vmas.range(v.end..).next().map(|(_, n)| n);
        let reuse = next
            .filter(|n| compatible(v, n))
            .and_then(reusable)
            .or_else(|| prev.filter(|p| compatible(p, v)).and_then(reusable));
        let id = reuse.unwrap_or_else(|| self.new_anon_vma());
        self.mms[mmi]
            .vmas
            .get_mut(&vma_start)
            .expect("vma")
            .anon_vma = Some(id);
        self.mms[mmi].invalidate_vma_cache();
        id
    }

    /// `anon_vma_prepare` for a fault: the fault's VMA copy gets the anon_vma too.
    pub(crate) fn vmf_anon_prepare(&mut self, vmf: &mut Vmf) {
        vmf.vma.anon_vma = Some(self.anon_vma_prepare(vmf.mm, &vmf.vma));
    }

    /// `do_anonymous_page`: a fault on a none PTE of a private anonymous VMA. If the PTE was
    /// a uffd-wp marker (`vmf_orig_pte_uffd_wp`), the new entry keeps the uffd-wp bit (and is
    /// therefore write-protected).
    fn do_anonymous_page(&mut self, vmf: &mut Vmf) -> VmFault {
        let (mmi, addr) = (vmf.mm, vmf.address);
        let marker = vmf.orig_pte_uffd_wp();
        if !self.pte_alloc(mmi, addr) {
            return VmFault::Oom;
        }
        let wp = if marker { UFFD_WP } else { 0 };
        if self.profile.switches.thp_zeroing == crate::profile::ThpZeroing::Lazy
            && !marker
            && !vmf.vma.uffd_armed()
            && !self.mms[mmi].lazy_thps.is_empty()
        {
            if let Some(folio) = self.lazy_thp_of(vmf) {
                self.lazy_thp_map_page(vmf, folio);
                return VmFault::Done;
            }
        }
        if !vmf.is_write() {
            if vmf.vma.has(vmf::UFFD_MISSING) {
                return VmFault::Userfault(0);
            }
            // The shared zero page, read-only, "special"; no anon_vma needed.
            self.set_pte(mmi, addr, Pte::zero(YOUNG | wp));
            return VmFault::Done;
        }
        self.vmf_anon_prepare(vmf);
        let Some((folio, order)) = self.alloc_anon_folio(vmf) else {
            return VmFault::Oom;
        };
        if vmf.vma.has(vmf::UFFD_MISSING) {
            // The page was allocated (order 0: uffd-armed) and is thrown away.
            self.free_folio(folio);
            return VmFault::Userfault(crate::userfaultfd_ctx::FLAG_WRITE);
        }
        // folio_zero_user(): a new anonymous folio is zeroed (the main cost of the fault).
        self.vmstat.add(VmItem::SimZeroedPages, 1 << order);
        let base = addr & !((PAGE_SIZE << order) - 1);
        let mut bits = YOUNG
            | EXCLUSIVE
            | if vmf.vma.has(vmf::WRITE) {
                WRITE | DIRTY
            } else {
                0
            };
        if marker {
            // pte_mkuffd_wp() also write-protects on x86.
            bits = (bits | UFFD_WP) & !WRITE;
        }
        let pmd = self.mms[mmi].pgt.pmd(addr);
        let table = &mut self.mms[mmi].pgt.ptes[pmd.table_idx().index()];
        for i in 0..1u32 << order {
            table[pte_index(base + u64::from(i) * PAGE_SIZE)] = Pte::page(folio, i, bits);
        }
        if order > 0 {
            self.folios.meta_mut(folio).va = base;
        }
        self.folio_add_new_anon_rmap(folio, RmapLevel::Pte, mmi);
        self.mms[mmi].add_mm_counter(MmCounter::AnonPages, 1 << order);
        VmFault::Done
    }

    /// `alloc_anon_folio`: pick the largest allowed mTHP order whose aligned block around
    /// `addr` is entirely none and fits the VMA, try orders downwards, else order 0.
    fn alloc_anon_folio(&mut self, vmf: &Vmf) -> Option<(FolioId, u8)> {
        let (mmi, vma, addr) = (vmf.mm, &vmf.vma, vmf.address);
        let mut orders = self.fault_mthp_orders(vmf);
        // Highest order whose PTE range is all none (and, on the host build's
        // `anon_beside_full=1`, that has a full block of the same size beside it).
        if orders != 0 {
            let beside_full = self.sysfs.anon_beside_full != 0;
            let pmd = self.mms[mmi].pgt.pmd(addr);
            let table = self.mms[mmi].pgt.pte_table(pmd.table_idx());
            let mut order = highest_order(orders);
            loop {
                let nr = 1usize << order;
                let start = pte_index(addr) & !(nr - 1);
                if table[start..start + nr].iter().all(|p| p.is_none()) {
                    if !beside_full || block_beside_full(table, vma, addr, start, nr) {
                        break;
                    }
                    self.vmstat.mthp_count(order, MthpStat::AnonFaultDeclined);
                }
                orders &= !(1 << order);
                if orders == 0 {
                    break;
                }
                order = highest_order(orders);
            }
        }
        while orders != 0 {
            let order = highest_order(orders);
            match self.alloc_charge_anon_folio(order, self.vma_thp_gfp_mask(vma)) {
                Ok(f) => {
                    self.vmstat.mthp_count(order, MthpStat::AnonFaultAlloc);
                    return Some((f, order));
                }
                Err(true) => self
                    .vmstat
                    .mthp_count(order, MthpStat::AnonFaultFallbackCharge),
                Err(false) => {}
            }
            self.vmstat.mthp_count(order, MthpStat::AnonFaultFallback);
            orders &= !(1 << order);
        }
        self.alloc_anon_folio_order(0, Gfp::HIGHUSER_MOVABLE)
            .map(|f| (f, 0))
    }

    /// The mTHP orders (below PMD order) a fault at `vmf` may allocate: those the VMA allows
    /// (`thp_vma_allowable_orders` with `TVA_PAGEFAULT`) whose aligned block fits it
    /// (`thp_vma_suitable_orders`); none in a userfaultfd-armed VMA.
    fn fault_mthp_orders(&self, vmf: &Vmf) -> u16 {
        let orders = self.fault_mthp_allowable_orders(vmf.mm, &vmf.vma);
        crate::huge_memory::thp_vma_suitable_orders(&vmf.vma, vmf.address, orders)
    }

    /// The part of `fault_mthp_orders` that does not depend on the address: a superset of
    /// what a fault anywhere in the VMA may allocate.
    fn fault_mthp_allowable_orders(&self, mmi: MmId, vma: &Vma) -> u16 {
        if vma.uffd_armed() {
            return 0;
        }
        let want: u16 = crate::sysfs::ANON_ORDERS
            .iter()
            .filter(|&&o| o < HPAGE_PMD_ORDER)
            .fold(0, |m, &o| m | 1 << o);
        self.thp_vma_allowable_orders(mmi, vma, want, Tva::PageFault)
    }

    /// `do_wp_page`: a write to a present, write-protected PTE.
    fn do_wp_page(&mut self, vmf: &mut Vmf, mut pte: Pte) -> VmFault {
        let (mmi, addr) = (vmf.mm, vmf.address);
        if pte.has(UFFD_WP) && vmf.vma.has(vmf::UFFD_WP) {
            if !self.mms[mmi]
                .uffd
                .as_deref()
                .is_some_and(|u| u.features.wp_async)
            {
                return VmFault::Userfault(
                    crate::userfaultfd_ctx::FLAG_WRITE | crate::userfaultfd_ctx::FLAG_WP,
                );
            }
            // Async mode: drop the bit and continue with the normal COW/reuse logic.
            pte.set(UFFD_WP, false);
            self.set_pte(mmi, addr, pte);
        }
        if vmf.vma.has(vmf::SHARED) {
            return self.wp_page_shared(vmf, pte);
        }
        if pte.is_page() && self.folios.get(pte.folio()).test(crate::folio::flags::ANON) {
            let id = pte.folio();
            if pte.has(EXCLUSIVE) || self.wp_can_reuse_anon_folio(id) {
                // wp_page_reuse()
                self.set_pte(mmi, addr, Pte(pte.0 | WRITE | DIRTY | YOUNG | EXCLUSIVE));
                self.vmstat.count(VmItem::Pgreuse);
                return VmFault::Done;
            }
        }
        self.wp_page_copy(vmf, pte)
    }

    /// `wp_can_reuse_anon_folio`: is the folio provably exclusive to this mm?
    fn wp_can_reuse_anon_folio(&mut self, id: FolioId) -> bool {
        let f = *self.folios.get(id);
        if f.order == 0 {
            // A swap-cache folio counts the cache's reference; its swap is freed if no
            // swap PTE names it any more (`folio_free_swap`), which may make it exclusive.
            let cached = self.swap.folio_slot.contains_key(&id);
            if f.refcount > 1 + u32::from(cached) {
                return false;
            }
            if cached {
                self.folio_free_swap(id);
            }
            return self.folios.get(id).refcount == 1;
        }
        if !self.profile.switches.large_folio_cow_reuse {
            return false;
        }
        // __wp_can_reuse_large_anon_folio (6.15+): more than one mapping, not shared with
        // another mm, and every reference is a mapping.
        let large_mapcount = f.mapcount + u32::from(f.entire_mapcount);
        large_mapcount > 1 && !self.folios.maybe_mapped_shared(id) && large_mapcount == f.refcount
    }

    /// `wp_page_copy`: COW into a new order-0 page (zeroed if the source is the zero page).
    fn wp_page_copy(&mut self, vmf: &mut Vmf, old: Pte) -> VmFault {
        let (mmi, addr) = (vmf.mm, vmf.address);
        self.vmf_anon_prepare(vmf);
        let Some(new) = self.alloc_anon_folio_order(0, Gfp::HIGHUSER_MOVABLE) else {
            return VmFault::Oom;
        };
        // The copy is allocated and charged before the PTE lock is taken, and the charge may
        // reclaim (the memcg's deferred-split shrinker splits THPs and remaps their zero
        // sub-pages): as the kernel re-checks `pte_same` under the lock, a PTE that changed
        // meanwhile means no copy; the folio is freed and the access faults again.
        if self.mms[mmi].pgt.pte(addr) != old {
            self.free_folio(new);
            return VmFault::Done;
        }
        let from_page = old.is_page();
        self.vmstat.count(if from_page {
            VmItem::SimCowCopiedPages
        } else {
            VmItem::SimZeroedPages
        });
        if from_page && self.folios.is_nonzero(old.folio(), old.idx()) {
            self.folios.set_nonzero(new, 0);
        }
        self.set_pte(
            mmi,
            addr,
            Pte::page(new, 0, WRITE | DIRTY | YOUNG | EXCLUSIVE),
        );
        self.folio_add_new_anon_rmap(new, RmapLevel::Pte, mmi);
        if from_page {
            if !self.folios.get(old.folio()).test(crate::folio::flags::ANON) {
                // A page-cache page of a private file mapping is replaced by an anonymous copy.
                self.mms[mmi].add_mm_counter(MmCounter::ShmemPages, -1);
                self.mms[mmi].add_mm_counter(MmCounter::AnonPages, 1);
            }
            let cached = self.swap.folio_slot.contains_key(&old.folio());
            self.folio_remove_rmap_ptes(old.folio(), old.idx(), 1, mmi);
            if cached {
                self.free_swap_cache(old.folio());
            }
        } else {
            self.mms[mmi].add_mm_counter(MmCounter::AnonPages, 1);
        }
        VmFault::Done
    }
}

impl Kernel {
    /// Sequential accesses: one byte every `stride` bytes of `[start, end)`, each a read, a
    /// write, or a read then a write (`pattern`). Exactly equivalent to calling
    /// [`Kernel::access`] for each, but where a huge PMD already allows every access of the
    /// pattern, the rest of that PMD is handled at once (accessed/dirty bits and the
    /// written pages' content), as the MMU would without faulting. Stops at the first signal.
    pub fn access_seq(
        &mut self,
        pid: Pid,
        start: u64,
        end: u64,
        stride: u64,
        pattern: AccessPattern,
    ) -> Result<(), Signal> {
        let (read, write) = (pattern.reads(), pattern.writes());
        let stride = stride.max(1);
        let mmi = self.mm_of(pid);
        let mut a = start;
        // Each page's faults in an extent run (`fault_run_at`), and where runs may start.
        let run = FaultRun {
            read_fault: read,
            write_fault: write,
            store: write,
            gup: false,
        };
        let mut no_run_until = 0;
        while a < end {
            // Fast path over the rest of a huge PMD that allows the whole pattern.
            let pmd = self.mms[mmi].pgt.pmd(a);
            if pmd.is_huge() && !pmd.has(PROTNONE) && (!write || pmd.has(WRITE)) {
                let pmd_end = (a & crate::types::PMD_MASK) + crate::types::PMD_SIZE;
                let stop = pmd_end.min(end);
                let n = (stop - a).div_ceil(stride);
                let last = a + (n - 1) * stride;
                let e = self.mms[mmi].pgt.pmd_mut(a).expect("pmd");
                e.set(YOUNG, true);
                if write {
                    e.set(DIRTY, true);
                    if pmd.is_thp() {
                        // The stores' pages as one mask: one update of the folio's record
                        // (all pages written is the common case, kept without a bitmap).
                        let mut mask = [0u64; 8];
                        let mut set = |i: u32| mask[(i / 64) as usize] |= 1 << (i % 64);
                        if stride < PAGE_SIZE {
                            // Every page from the first store's to the last's is stored to.
                            (pte_index32(a)..=pte_index32(last)).for_each(&mut set);
                        } else {
                            let mut x = a;
                            while x <= last {
                                set(pte_index32(x));
                                x += stride;
                            }
                        }
                        self.folios.set_nonzero_mask(pmd.folio(), &mask);
                    }
                }
                a = last + stride;
                continue;
            }
            if let Some(next) =
                self.fault_run_at(pid, mmi, (a, end), stride, run, &mut no_run_until)
            {
                a = next;
                continue;
            }
            if read {
                self.access(pid, a, AccessKind::Read)?;
            }
            if write {
                self.access(pid, a, AccessKind::Write)?;
            }
            a += stride;
        }
        Ok(())
    }
}

/// What each page of an extent run (`Kernel::fault_run`) gets: the faults a page-at-a-time
/// loop takes on it and what the access after them leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FaultRun {
    /// A read fault (the shared zero page).
    pub(crate) read_fault: bool,
    /// A write fault: a new order-0 anonymous page (`do_anonymous_page`, or after a read
    /// fault `wp_page_copy` from the zero page: the same allocation, the same entry).
    pub(crate) write_fault: bool,
    /// A user store follows the faults (`access_hit`: `STORED`, the content is non-zero).
    pub(crate) store: bool,
    /// GUP looks the page up after the fault (`follow_page`, `FOLL_TOUCH`): a new page is
    /// `folio_mark_accessed` (its PTE is dirty, so the folio is not marked dirty).
    pub(crate) gup: bool,
}

/// Where an extent run left its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RunEnd {
    /// Pages were done: go on at this access point.
    Next(u64),
    /// Nothing was done: this access point takes the per-page path.
    PerPage,
    /// Nothing was done, and no run can start before this address (the VMA's conditions
    /// do not allow one): the per-page path until then.
    NotBefore(u64),
}

impl Kernel {
    /// Test support: turn the extent fault path (`fault_run`) off (`false`) or on (`true`,
    /// the default). Observable results are the same either way; the equivalence tests
    /// check that.
    #[doc(hidden)]
    pub fn set_extent_faults(&mut self, on: bool) {
        self.extent_faults = on;
    }

    /// `fault_run` for a caller's loop at access point `a`: the next point when pages were
    /// done, else `None` (the per-page path for `a`); `no_run_until` keeps where runs may
    /// start again after a VMA refused one (start it at the loop's first point).
    pub(crate) fn fault_run_at(
        &mut self,
        pid: Pid,
        mmi: MmId,
        (a, end): (u64, u64),
        stride: u64,
        run: FaultRun,
        no_run_until: &mut u64,
    ) -> Option<u64> {
        if a < *no_run_until {
            return None;
        }
        match self.fault_run(pid, mmi, (a, end), stride, run) {
            RunEnd::Next(next) => Some(next),
            RunEnd::NotBefore(until) => {
                *no_run_until = until;
                None
            }
            RunEnd::PerPage => None,
        }
    }

    /// The extent fast path (issue 15): the accesses `a`, `a + stride`, … (below `end`) of
    /// one task, as long as they fall on none PTEs of one PTE table in one VMA (under a none
    /// PMD a new table, as the first fault's `pte_alloc` would install it), are faulted in
    /// at once when the per-page path provably does for each page what this does: the VMA
    /// is anonymous and private (`do_pte_missing` sends it to `do_anonymous_page`), neither
    /// userfaultfd-armed nor with lazy THPs in the mm, allows the access (`access_error`,
    /// `check_vma_flags`), no PMD fault is tried (the PMD is a table, or the VMA allows no
    /// PMD THP), and for writes no mTHP order is allowed (`fault_mthp_allowable_orders`)
    /// and there is no memcg to charge; and the allocator's fast path serves each page
    /// (`BuddyAllocator::alloc_order0_run` stops where it would not, and the per-page path
    /// goes on from that page). Nothing in between can differ: faults take no time (no
    /// daemon runs), and a page's fault touches no other page's PTE.
    fn fault_run(
        &mut self,
        pid: Pid,
        mmi: MmId,
        (a, end): (u64, u64),
        stride: u64,
        run: FaultRun,
    ) -> RunEnd {
        if !self.extent_faults {
            return RunEnd::NotBefore(u64::MAX);
        }
        let mut pmd = self.mms[mmi].pgt.pmd(a);
        let fresh = pmd.is_none() && self.mms[mmi].pgt.has_pmd_table(a);
        if !fresh && (!pmd.is_table() || !self.mms[mmi].pgt.pte(a).is_none()) {
            return RunEnd::PerPage;
        }
        let Some(vma) = self.mms[mmi].vma_lookup(a) else {
            return RunEnd::PerPage;
        };
        let pmd_end = (a & crate::types::PMD_MASK) + crate::types::PMD_SIZE;
        let stop = end.min(pmd_end).min(vma.end);
        if !self.fault_run_allowed(mmi, &vma, run.write_fault) {
            return RunEnd::NotBefore(stop);
        }
        if fresh {
            // The first fault under a none PMD: `__handle_mm_fault` tries a PMD fault first
            // (left to the per-page path where the VMA allows one: this PMD then becomes huge,
            // or a fallback's table is filled page by page), then `do_anonymous_page`'s
            // `pte_alloc`, whose page-table page is taken here only if the allocator's fast
            // path serves it (a claim or the slow path is left to the per-page path).
            if self.thp_vma_allowable_order(mmi, &vma, HPAGE_PMD_ORDER, Tva::PageFault) {
                return RunEnd::NotBefore(stop);
            }
            let mut pfn = [crate::ids::Pfn(0)];
            if self
                .buddy
                .alloc_order0_run(crate::page_alloc::MigrateType::Unmovable, &mut pfn)
                == 0
            {
                return RunEnd::PerPage;
            }
            self.account_pgtable_page();
            self.pmd_populate(mmi, a, pfn[0]);
            pmd = self.mms[mmi].pgt.pmd(a);
        }
        // The distinct pages the points fall on, up to the first that is not none.
        let table = self.mms[mmi].pgt.pte_table(pmd.table_idx());
        let mut pages = [0u16; 512];
        let mut n = 0;
        let mut p = a;
        while p < stop {
            let i = pte_index(p);
            if n == 0 || usize::from(pages[n - 1]) != i {
                if !table[i].is_none() {
                    break;
                }
                pages[n] = u16::try_from(i).expect("a PTE index is below 512");
                n += 1;
            }
            let Some(q) = p.checked_add(stride) else {
                p = u64::MAX;
                break;
            };
            p = q;
        }
        let done = self.anon_fault_run(pid, mmi, &vma, pmd, &pages[..n], run);
        if done == 0 {
            return RunEnd::PerPage;
        }
        if done < n {
            // The first point on the first page not done.
            let page = (a & crate::types::PMD_MASK) + u64::from(pages[done]) * PAGE_SIZE;
            return RunEnd::Next(a + (page - a).div_ceil(stride) * stride);
        }
        RunEnd::Next(p)
    }

    /// The conditions of `fault_run` that hold for a whole VMA.
    fn fault_run_allowed(&self, mmi: MmId, vma: &Vma, write: bool) -> bool {
        matches!(vma.backing, VmaBacking::Anon | VmaBacking::DevZero)
            && !vma.has(vmf::SHARED)
            && !vma.uffd_armed()
            && vma.accessible()
            && (!write || vma.has(vmf::WRITE))
            && (self.profile.switches.thp_zeroing != crate::profile::ThpZeroing::Lazy
                || self.mms[mmi].lazy_thps.is_empty())
            && (!write || (self.memcg.is_none() && self.fault_mthp_allowable_orders(mmi, vma) == 0))
    }

    /// Faults in the none PTEs `pages` (ascending indices in the PTE table of `pmd`) as
    /// `run` says, as many as the allocator's fast path serves in a row; returns how many.
    fn anon_fault_run(
        &mut self,
        pid: Pid,
        mmi: MmId,
        vma: &Vma,
        pmd: Pmd,
        pages: &[u16],
        run: FaultRun,
    ) -> usize {
        let table_idx = pmd.table_idx().index();
        let done = if run.write_fault {
            // vmf_anon_prepare: the first fault of the run would give the VMA its anon_vma.
            self.anon_vma_prepare(mmi, vma);
            let mut pfns = [crate::ids::Pfn(0); 512];
            let done = self.buddy.alloc_order0_run(
                crate::page_alloc::MigrateType::Movable,
                &mut pfns[..pages.len()],
            );
            if done == 0 {
                return 0;
            }
            let mut ids = [FolioId::default(); 512];
            let fl = crate::folio::flags::ANON
                | if run.store {
                    crate::folio::flags::NONZERO
                } else {
                    0
                };
            let lru = if run.gup {
                crate::folio::lru::marked_accessed(0)
            } else {
                0
            };
            // folio_add_new_anon_rmap at PTE level of an order-0 folio: anonymous, one
            // mapping, one reference.
            self.folios.alloc_run(&pfns[..done], fl, 1, lru, &mut ids);
            let bits = YOUNG | EXCLUSIVE | WRITE | DIRTY | if run.store { STORED } else { 0 };
            let table = &mut self.mms[mmi].pgt.ptes[table_idx];
            for (&i, &id) in pages[..done].iter().zip(&ids) {
                table[usize::from(i)] = Pte::page(id, 0, bits);
            }
            let nr = crate::util::to_i64(done as u64);
            // folio_zero_user, folio_add_new_anon_rmap's NR_ANON_MAPPED, the mm's MM_ANONPAGES.
            self.vmstat.add(VmItem::SimZeroedPages, nr);
            self.vmstat.add(VmItem::NrAnonPages, nr);
            self.mms[mmi].add_mm_counter(MmCounter::AnonPages, nr);
            done
        } else {
            let table = &mut self.mms[mmi].pgt.ptes[table_idx];
            for &i in pages {
                table[usize::from(i)] = Pte::zero(YOUNG);
            }
            pages.len()
        };
        let faults = (done as u64) * (u64::from(run.read_fault) + u64::from(run.write_fault));
        self.vmstat
            .add(VmItem::Pgfault, crate::util::to_i64(faults));
        self.tasks.get_mut(&pid).expect("task").minflt += faults;
        done
    }
}

impl Kernel {
    /// Accesses at `start + off` for each `off` of `offsets`, in that order (all inside
    /// `[start, end)`), each a read, a write, or a read then a write (`pattern`). Exactly
    /// equivalent to calling [`Kernel::access`] for each, stopping at the first signal, but
    /// built for random orders over large ranges: once an access finds a huge PMD that allows
    /// the whole pattern, the PMD's accessed/dirty bits are set and later accesses to it only
    /// set a bit in a per-call bitmap (no page-table or folio load); the stores' content
    /// reaches each folio in one step per PMD at the end. That is exact because nothing in
    /// one call but an access inside a PMD changes that PMD or reads its content (a fault
    /// elsewhere, and the userfaultfd monitor's unprotect of whole blocks, leave it alone or
    /// only add write permission), and every access to such a PMD is a hit.
    pub fn access_list(
        &mut self,
        pid: Pid,
        (start, end): (u64, u64),
        offsets: impl Iterator<Item = u64>,
        pattern: AccessPattern,
    ) -> Result<(), Signal> {
        let (read, write) = (pattern.reads(), pattern.writes());
        let mmi = self.mm_of(pid);
        let base = start & crate::types::PMD_MASK;
        let nslots = usize::try_from((end.max(base) - base).div_ceil(crate::types::PMD_SIZE))
            .expect("range fits the address space");
        // The per-call bitmaps cost 64 bytes per slot: worth it only for dense lists.
        if offsets.size_hint().0 < nslots {
            for off in offsets {
                let a = start + off;
                if read {
                    self.access(pid, a, AccessKind::Read)?;
                }
                if write {
                    self.access(pid, a, AccessKind::Write)?;
                }
            }
            return Ok(());
        }
        // One bit per PMD slot: the slot is a huge PMD allowing the pattern.
        let mut fast = vec![0u64; nslots.div_ceil(64)];
        // One bit per page of the fast THP slots: a store to record (words per slot: 8).
        let mut stores: Vec<[u64; 8]> = if write && nslots > 0 {
            vec![[0; 8]; nslots]
        } else {
            Vec::new()
        };
        // Past a few MiB, random stores into `stores` miss the caches: they are queued per
        // bucket of BUCKET slots (a cache-sized part of `stores`) and applied a bucket at a time.
        let bucketed = nslots > BUCKET;
        let mut queued: Vec<Vec<u32>> = if write && bucketed {
            vec![Vec::new(); nslots.div_ceil(BUCKET)]
        } else {
            Vec::new()
        };
        let mut result = Ok(());
        for off in offsets {
            let a = start + off;
            let rel = a - base;
            let slot = (rel >> crate::types::PMD_SHIFT) as usize;
            if fast[slot / 64] & (1 << (slot % 64)) != 0 {
                if write {
                    let i = (rel >> PAGE_SHIFT) & 511;
                    if bucketed {
                        let q = &mut queued[slot / BUCKET];
                        // The page within its bucket: below BUCKET * 512 = 2^21.
                        q.push(crate::util::to_u32((slot % BUCKET) << 9 | i as usize));
                        if q.len() >= QUEUE {
                            drain_stores(&mut stores, slot / BUCKET, q);
                        }
                    } else {
                        stores[slot][(i / 64) as usize] |= 1 << (i % 64);
                    }
                }
                continue;
            }
            let pmd = self.mms[mmi].pgt.pmd(a);
            if pmd.is_huge() && !pmd.has(PROTNONE) && (!write || pmd.has(WRITE)) {
                fast[slot / 64] |= 1 << (slot % 64);
                let e = self.mms[mmi].pgt.pmd_mut(a).expect("pmd");
                e.set(YOUNG, true);
                if write {
                    e.set(DIRTY, true);
                    let i = ((rel >> PAGE_SHIFT) & 511) as usize;
                    stores[slot][i / 64] |= 1 << (i % 64);
                }
                continue;
            }
            let r = if read {
                self.access(pid, a, AccessKind::Read)
            } else {
                Ok(())
            };
            result = r.and_then(|()| {
                if write {
                    self.access(pid, a, AccessKind::Write)
                } else {
                    Ok(())
                }
            });
            if result.is_err() {
                break;
            }
        }
        for (b, q) in queued.iter_mut().enumerate() {
            drain_stores(&mut stores, b, q);
        }
        for (w, &bits) in fast.iter().enumerate() {
            let mut bits = if write { bits } else { 0 };
            while bits != 0 {
                let slot = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let mask = &stores[slot];
                let pmd = self.mms[mmi]
                    .pgt
                    .pmd(base + (slot as u64) * crate::types::PMD_SIZE);
                if pmd.is_thp() {
                    self.folios.set_nonzero_mask(pmd.folio(), mask);
                }
            }
        }
        result
    }
}

/// PMD slots per bucket of `access_list`'s queued stores (64 KiB of their bitmaps).
const BUCKET: usize = 1024;
/// Stores queued per bucket before they are applied.
const QUEUE: usize = 1 << 13;

/// Applies and empties bucket `b`'s queued stores (page `p` of the bucket: slot `p >> 9`,
/// page `p & 511`).
fn drain_stores(stores: &mut [[u64; 8]], b: usize, q: &mut Vec<u32>) {
    let first = b * BUCKET;
    for &p in q.iter() {
        let (slot, i) = (first + (p >> 9) as usize, p & 511);
        stores[slot][(i / 64) as usize] |= 1 << (i % 64);
    }
    q.clear();
}

/// `anon_beside_full` (a knob of this project's host kernel build, not in mainline 6.18):
/// an mTHP block may be allocated on an anonymous fault only if the block of the same size
/// just before or just after it is full — every PTE present (the shared zero page counts) —
/// and lies in the same PTE table and the same VMA. Measured on the host
/// (docs/anon-beside-full.md); the PMD order is not affected.
fn block_beside_full(table: &[Pte], vma: &Vma, addr: u64, start: usize, nr: usize) -> bool {
    let bytes = nr as u64 * PAGE_SIZE;
    let block = addr & !(bytes - 1);
    let full = |i: usize| table[i..i + nr].iter().all(|p| !p.is_none());
    let before =
        start >= nr && block.checked_sub(bytes).is_some_and(|b| b >= vma.start) && full(start - nr);
    before || (start + 2 * nr <= table.len() && block + 2 * bytes <= vma.end && full(start + nr))
}

impl Kernel {
    /// `do_swap_page`: a fault on a swap PTE (Linux 6.18). A folio already in the swap cache
    /// is mapped (a minor fault). Otherwise the page is read (a major fault, `pgmajfault`):
    /// with `SWP_SYNCHRONOUS_IO` (zram) and a slot only this PTE names, into a new folio that
    /// skips the swap cache (`alloc_swap_folio`: the largest enabled mTHP order whose block
    /// is all swap entries of consecutive, aligned slots), else through the swap cache
    /// (`swapin_readahead`: the window around it, see `swapfile.rs`). The slots lose this mapping's
    /// references (`swap_free_nr`); a cached folio leaves the cache on a write fault that
    /// finds no other user (`should_try_to_free_swap`). The page is mapped writable and
    /// exclusive if the swap PTE was exclusive or nothing else holds the folio; a write that
    /// could not be served so goes on to `do_wp_page`.
    pub(crate) fn do_swap_page(&mut self, vmf: &mut Vmf) -> VmFault {
        let mmi = vmf.mm;
        let addr = vmf.address & !(PAGE_SIZE - 1);
        let orig = vmf.orig_pte;
        let slot = orig.swap_slot();
        let mut id = self.swap.cached(slot);
        if let Some(f) = id {
            self.swap_update_readahead(f, Some((mmi, addr)));
        } else {
            let sync = self
                .swap
                .si
                .as_ref()
                .is_some_and(|si| si.device.synchronous() && si.count(slot) == 1);
            let f = if sync {
                // Skips the swap cache: the new folio (maybe large) is read here.
                let Some(f) = self.alloc_swap_folio(vmf) else {
                    return VmFault::Oom;
                };
                let nr = self.folios.get(f).nr_pages();
                self.swap_read_folio(f, slot & !(nr - 1));
                f
            } else {
                // swapin_readahead: the faulting page and its readahead window go through
                // the swap cache.
                let Some(f) = self.swapin_readahead(vmf, slot) else {
                    return VmFault::Oom;
                };
                f
            };
            vmf.flags = vmf.flags.with(FaultFlags::MAJOR);
            self.vmstat.count(VmItem::Pgmajfault);
            id = Some(f);
        }
        let id = id.expect("folio");
        let (start, first, page, nr) = self.swap_map_extent(vmf, id, addr, slot);
        // The fault's own reference while it works (`folio_ref_count` counts it).
        self.folios.get_mut(id).refcount += 1;
        for s in first..first + nr {
            self.swap.put(s);
        }
        if self.swap.folio_slot.contains_key(&id) && self.should_try_to_free_swap(id, vmf) {
            self.folio_free_swap(id);
        }
        self.mms[mmi].add_mm_counter(MmCounter::AnonPages, i64::from(nr));
        self.mms[mmi].add_mm_counter(MmCounter::SwapEnts, -i64::from(nr));
        let mut bits = YOUNG | (orig.0 & (SOFT_DIRTY | UFFD_WP));
        let mut write_done = false;
        if orig.has(EXCLUSIVE) || self.folios.get(id).refcount == 1 {
            let uffd_wp = vmf.vma.has(vmf::UFFD_WP) && orig.has(UFFD_WP);
            if vmf.vma.has(vmf::WRITE) && !uffd_wp {
                bits |= WRITE;
                if vmf.is_write() {
                    bits |= DIRTY;
                    write_done = true;
                }
            }
            bits |= EXCLUSIVE;
        }
        if self.folios.get(id).test(crate::folio::flags::ANON) {
            self.folio_add_anon_rmap_ptes(id, page, nr, mmi);
        } else {
            let held = self.folios.get(id).refcount;
            self.folio_add_new_anon_rmap(id, RmapLevel::Pte, mmi);
            self.folios.get_mut(id).refcount += held;
            if nr > 1 {
                self.folios.meta_mut(id).va = start;
            }
        }
        for i in 0..nr {
            self.set_pte(
                mmi,
                start + u64::from(i) * PAGE_SIZE,
                Pte::page(id, page + i, bits),
            );
        }
        self.folio_put(id, 1);
        if vmf.is_write() && !write_done {
            let pte = self.mms[mmi].pgt.pte(addr);
            return self.do_wp_page(vmf, pte);
        }
        VmFault::Done
    }

    /// What a swap fault maps of folio `id` (its first address, first slot, first page and
    /// page count). A new folio from the synchronous path is mapped whole, at its aligned
    /// block. A large folio found in the swap cache is mapped whole only if its whole range
    /// (where page `slot - folio->swap` sits at the fault) lies in the VMA and in the PMD and
    /// every PTE of it is the swap entry of its page's slot with the faulting PTE's bits
    /// (`pte_move_swp_offset`, `swap_pte_batch`); else only the faulting page is mapped.
    fn swap_map_extent(
        &self,
        vmf: &Vmf,
        id: FolioId,
        addr: u64,
        slot: u32,
    ) -> (u64, u32, u32, u32) {
        let nr = self.folios.get(id).nr_pages();
        if nr == 1 {
            return (addr, slot, 0, 1);
        }
        let Some(&fslot) = self.swap.folio_slot.get(&id) else {
            // Allocated for this fault (alloc_swap_folio), aligned like the address.
            return (
                addr & !(u64::from(nr) * PAGE_SIZE - 1),
                slot & !(nr - 1),
                0,
                nr,
            );
        };
        let idx = slot - fslot;
        let single = (addr, slot, idx, 1);
        let Some(fstart) = addr.checked_sub(u64::from(idx) * PAGE_SIZE) else {
            return single;
        };
        let fend = fstart + u64::from(nr) * PAGE_SIZE;
        let pmd_start = addr & crate::types::PMD_MASK;
        let pmd_end = pmd_start + crate::types::PMD_SIZE;
        if fstart < pmd_start.max(vmf.vma.start) || fend > pmd_end.min(vmf.vma.end) {
            return single;
        }
        let keep = vmf.orig_pte.0 & (EXCLUSIVE | SOFT_DIRTY | UFFD_WP);
        let batch = (0..nr).all(|i| {
            self.mms[vmf.mm].pgt.pte(fstart + u64::from(i) * PAGE_SIZE)
                == Pte::swap(fslot + i, keep)
        });
        if batch {
            (fstart, fslot, 0, nr)
        } else {
            single
        }
    }

    /// `should_try_to_free_swap`: swap is more than half full, the VMA is locked, or a write
    /// finds the folio held by the swap cache and this fault only.
    fn should_try_to_free_swap(&self, id: FolioId, vmf: &Vmf) -> bool {
        let f = self.folios.get(id);
        self.swap.vm_swap_full()
            || vmf.vma.has(vmf::LOCKED)
            || (vmf.is_write() && f.refcount == 1 + f.nr_pages())
    }

    /// `swap_read_folio` of a folio whose first page comes from `first`: from the zero map
    /// (`swpin_zero`) or the device (`pswpin`, `mthp.<size>.swpin`); the pages get back the
    /// content they were written with.
    pub(crate) fn swap_read_folio(&mut self, id: FolioId, first: u32) {
        let f = *self.folios.get(id);
        let nr = f.nr_pages();
        let si = self.swap.si.as_ref().expect("swap device");
        let zero = si.is_zero(first);
        let content: Vec<bool> = (first..first + nr).map(|s| si.has_content(s)).collect();
        if zero {
            self.vmstat.add(VmItem::SwpinZero, i64::from(nr));
        } else {
            self.vmstat.add(VmItem::Pswpin, i64::from(nr));
            if f.order > 0 {
                self.vmstat.mthp_count(f.order, MthpStat::Swpin);
            }
        }
        for (i, c) in content.into_iter().enumerate() {
            if c {
                self.folios.set_nonzero(id, crate::util::to_u32(i));
            }
        }
    }

    /// `alloc_swap_folio`: the orders below PMD order the VMA allows at `addr` whose block
    /// starts at a slot aligned like the address (`thp_swap_suitable_orders`), the highest
    /// whose block is all swap entries of consecutive slots with the faulting PTE's bits,
    /// one zero-map state and nothing in the swap cache (`can_swapin_thp`); allocation tries
    /// it and the orders below it (`swpin_fallback` per failure), then order 0. Only order
    /// 0 once zswap was ever enabled (`zswap_never_enabled`).
    fn alloc_swap_folio(&mut self, vmf: &Vmf) -> Option<FolioId> {
        let (vma, addr) = (&vmf.vma, vmf.address);
        let slot = vmf.orig_pte.swap_slot();
        let mut orders: u16 = 0;
        if !self.swap.zswap_ever_enabled {
            orders = self.fault_mthp_orders(vmf);
            // thp_swap_suitable_orders: drop orders from the top until one is aligned.
            while orders != 0 {
                let nr = 1u64 << highest_order(orders);
                if (addr >> PAGE_SHIFT) % nr == u64::from(slot) % nr {
                    break;
                }
                orders &= !(1 << highest_order(orders));
            }
        }
        while orders != 0 {
            let order = highest_order(orders);
            if self.can_swapin_thp(vmf, order) {
                break;
            }
            orders &= !(1 << order);
        }
        while orders != 0 {
            let order = highest_order(orders);
            match self.alloc_charge_anon_folio(order, self.vma_thp_gfp_mask(vma)) {
                Ok(f) => return Some(f),
                // mem_cgroup_swapin_charge_folio fails: the folio is dropped.
                Err(true) => self.vmstat.mthp_count(order, MthpStat::SwpinFallbackCharge),
                Err(false) => {}
            }
            self.vmstat.mthp_count(order, MthpStat::SwpinFallback);
            orders &= !(1 << order);
        }
        self.alloc_anon_folio_order(0, Gfp::HIGHUSER_MOVABLE)
    }

    /// `can_swapin_thp` for the block of `order` around the fault.
    fn can_swapin_thp(&self, vmf: &Vmf, order: u8) -> bool {
        let nr = 1u32 << order;
        let base = vmf.address & !((PAGE_SIZE << order) - 1);
        let idx = crate::util::to_u32(((vmf.address - base) >> PAGE_SHIFT) as usize);
        let orig = vmf.orig_pte;
        let Some(first) = orig.swap_slot().checked_sub(idx) else {
            return false;
        };
        let keep = orig.0 & (EXCLUSIVE | SOFT_DIRTY | UFFD_WP);
        let si = self.swap.si.as_ref().expect("swap device");
        let zero = si.is_zero(first);
        (0..nr).all(|i| {
            let p = self.mms[vmf.mm].pgt.pte(base + u64::from(i) * PAGE_SIZE);
            p == Pte::swap(first + i, keep)
                && si.is_zero(first + i) == zero
                && self.swap.cached(first + i).is_none()
        })
    }
}
