//! khugepaged and MADV_COLLAPSE, after `mm/khugepaged.c` (Linux 6.18): the mm list
//! (`__khugepaged_enter`, `khugepaged_fork`, exit), the scan loop (`khugepaged_do_scan`,
//! `khugepaged_scan_mm_slot`: +1 per mm, +1 per skipped VMA, +512 per 2 MiB range, full scans),
//! the per-range checks (`hpage_collapse_scan_pmd`: max_ptes_none counting zero-page PTEs as
//! none, max_ptes_shared by `folio_maybe_mapped_shared`, refcount suitability, the
//! referenced-page rule: a young PTE or a `PG_referenced` folio; no writable-PTE rule since
//! 6.18), `collapse_huge_page` (allocate, copy, release the old pages batched per folio as
//! 6.17+ does, install a PMD, queue for deferred split) and `madvise_collapse` with
//! `madvise_collapse_errno`; on shmem VMAs (khugepaged and MADV_COLLAPSE)
//! `hpage_collapse_scan_file`, `collapse_file` (a new PMD-sized page-cache folio for small
//! folios and holes, `retract_page_tables`) and `collapse_pte_mapped_thp` (map a PMD-sized
//! folio by a PMD, or for khugepaged only drop its PTEs). Shmem only: the reference kernel has
//! no `CONFIG_READ_ONLY_THP_FOR_FS`, so disk-file VMAs never reach the file scan.
//!
//! Time: the thread runs a pass when an mm is added to an empty list and then every
//! `scan_sleep_millisecs` of simulated time while it has work; ops take no simulated time,
//! so passes happen only in `sleep` (or explicitly, `khugepaged scan`).
//!
//! The proposal switch `collapse=inplace` remaps a fully PTE-mapped, naturally aligned PMD-sized
//! folio by a PMD instead of allocating and copying (`sim_collapse_inplace`); the copy path
//! counts `sim_collapse_copied_pages`. `collapse=inplace_migrate` also takes a PMD-sized folio
//! some of whose pages were subreleased: the small pages that replaced them are copied back
//! into the folio's own pages (`sim_collapse_copied_pages`) and freed, the unmapped ones
//! zeroed (`sim_zeroed_pages`), so the collapse needs no order-9 allocation.

use crate::errno::Errno;
use crate::fault::Tva;
use crate::folio::flags;
use crate::folio::FolioId;
use crate::hugetlb::HugePageSize;
use crate::ids::{InodeId, MmId};
use crate::mm::MmCounter;
use crate::mm::{vmf, ThpDisable, Vma};
use crate::page_alloc::Gfp;
use crate::pgtable::{self, Pmd, Pte, DIRTY, EXCLUSIVE, WRITE, YOUNG};
use crate::profile::Collapse;
use crate::rmap::RmapLevel;
use crate::types::{
    Pid, HPAGE_PMD_NR, HPAGE_PMD_ORDER, PAGE_SHIFT, PAGE_SIZE, PMD_MASK, PMD_SHIFT, PMD_SIZE,
};
use crate::util::to_u32;
use crate::vmstat::VmItem;
use crate::Kernel;

/// `enum scan_result` (the outcomes the model produces).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScanResult {
    /// `SCAN_FAIL`: `collapse_pte_mapped_thp` found a PTE mapping something else.
    Fail,
    Succeed,
    PmdNull,
    PmdNone,
    PmdMapped,
    PteUffdWp,
    ExceedNonePte,
    ExceedSwapPte,
    ExceedSharedPte,
    PageCount,
    LackReferencedPage,
    AllocHugePageFail,
    /// `SCAN_CGROUP_CHARGE_FAIL`: the new folio's memcg charge failed.
    CgroupChargeFail,
    VmaCheck,
    /// A PMD-sized page-cache folio backs the block (`hpage_collapse_scan_file`, or
    /// `collapse_file` done for MADV_COLLAPSE): `collapse_pte_mapped_thp` comes next.
    PteMappedHugepage,
    /// `collapse_file` found nothing cached in the block.
    Truncated,
    PteNonPresent,
    PageNull,
    PageCompound,
}

/// khugepaged's state (`khugepaged_scan` and the mm slot list).
#[derive(Clone, Debug, Default)]
pub(crate) struct KhugepagedState {
    /// Registered mms, in list order.
    pub mms: Vec<MmId>,
    /// Index into `mms` of the mm being scanned, and the address to resume at.
    pub cursor: Option<usize>,
    pub address: u64,
    /// Simulated time of the next pass, if the thread has work.
    pub next_pass_ms: Option<u64>,
}

impl Kernel {
    /// `__khugepaged_enter`: add the mm to the list (at the tail); adding to an empty list
    /// wakes the thread.
    pub(crate) fn khugepaged_enter(&mut self, mmi: MmId) {
        if self.mms[mmi].khugepaged_registered {
            return;
        }
        self.mms[mmi].khugepaged_registered = true;
        if self.khugepaged.mms.is_empty() && self.khugepaged.next_pass_ms.is_none() {
            self.khugepaged.next_pass_ms = Some(self.now_ms);
        }
        self.khugepaged.mms.push(mmi);
    }

    /// The mm leaves khugepaged's list (exit).
    pub(crate) fn khugepaged_exit(&mut self, mmi: MmId) {
        if let Some(pos) = self.khugepaged.mms.iter().position(|&m| m == mmi) {
            self.khugepaged.mms.remove(pos);
            match self.khugepaged.cursor {
                Some(c) if c == pos => {
                    self.khugepaged.address = 0;
                    if pos >= self.khugepaged.mms.len() {
                        self.khugepaged.cursor = None;
                    }
                }
                Some(c) if c > pos => self.khugepaged.cursor = Some(c - 1),
                _ => {}
            }
        }
        self.mms[mmi].khugepaged_registered = false;
    }

    /// When the thread next runs a pass (`daemon::Daemon::poll_at`): it has a timer and
    /// PMD-sized THP is enabled (otherwise the thread is stopped).
    pub(crate) fn khugepaged_poll_at(&self) -> Option<u64> {
        self.khugepaged
            .next_pass_ms
            .filter(|_| self.hugepage_pmd_enabled())
    }

    /// One wakeup of the thread (`khugepaged()`'s loop body): a pass, then the next timer.
    pub(crate) fn khugepaged_thread_pass(&mut self) {
        let slept = self.khugepaged_do_scan();
        // khugepaged_wait_work(): sleep scan_sleep_millisecs while there is work. A pass
        // takes no simulated time, so with scan_sleep_millisecs=0 it is charged 1 ms
        // (else time would never advance and the loop never end).
        let pause = u64::from(self.sysfs.scan_sleep_millisecs).max(1);
        self.khugepaged.next_pass_ms = if self.khugepaged.mms.is_empty() {
            None
        } else {
            Some(self.now_ms.saturating_add(slept).saturating_add(pause))
        };
    }

    /// A write to a THP sysfs knob, as `echo value > file` does it, with the side effects on
    /// the khugepaged thread that the kernel's store handlers have (mm/huge_memory.c,
    /// mm/khugepaged.c, 6.18):
    /// * `start_stop_khugepaged`: when PMD-sized THP goes from disabled to enabled, a new
    ///   thread starts and runs a pass at once (`khugepaged()` scans before it first waits);
    ///   when it goes from enabled to disabled, the thread is stopped. A write that leaves it
    ///   enabled only wakes the thread, which goes back to sleep (`khugepaged_should_wakeup`
    ///   is false until its sleep expires): no pass.
    /// * `scan_sleep_millisecs` and `alloc_sleep_millisecs` stores expire the sleep and wake
    ///   the thread: one pass at once if it has work (its mm list is not empty).
    pub fn write_sysfs(&mut self, name: &str, value: &str) -> Result<(), crate::sysfs::KnobError> {
        let was_running = self.hugepage_pmd_enabled();
        self.sysfs.set(name, value)?;
        // The hugetlb pool knobs resize the pool (hugetlb.rs) and never wake khugepaged.
        match name {
            "hugetlb.nr_hugepages" => {
                self.set_max_huge_pages(HugePageSize::Size2M, self.sysfs.nr_hugepages);
                return Ok(());
            }
            "hugetlb.1G.nr_hugepages" => {
                self.set_max_huge_pages(HugePageSize::Size1G, self.sysfs.nr_hugepages_1g);
                return Ok(());
            }
            "hugetlb.nr_overcommit_hugepages" => {
                let n = self.sysfs.nr_overcommit_hugepages;
                self.set_overcommit_huge_pages(HugePageSize::Size2M, n);
                return Ok(());
            }
            _ => {}
        }
        let running = self.hugepage_pmd_enabled();
        let woken_for_a_pass = match (was_running, running) {
            (false, true) => true,
            (true, false) => {
                self.khugepaged.next_pass_ms = None;
                false
            }
            (true, true) => matches!(
                name,
                "khugepaged.scan_sleep_millisecs" | "khugepaged.alloc_sleep_millisecs"
            ),
            (false, false) => false,
        };
        if woken_for_a_pass && !self.khugepaged.mms.is_empty() {
            let slept = self.khugepaged_do_scan();
            self.khugepaged.next_pass_ms = (!self.khugepaged.mms.is_empty())
                .then(|| self.now_ms + slept + u64::from(self.sysfs.scan_sleep_millisecs));
        }
        Ok(())
    }

    /// Registers an mm like the host backend's khugepaged *sentinel* (crates/host
    /// `khugepaged::Sentinel`): a process whose only THP-eligible VMA registered its mm, which
    /// then disabled THP completely, so khugepaged keeps it on its list at the cost of one unit
    /// of `pages_to_scan` per visit. Used by `thpsim check`, so that the model's mm list is the
    /// host's.
    ///
    /// `foreign` are the costs (in `pages_to_scan` units per visit, in list order) of other
    /// processes' mms that the host's list held ahead of the sentinel, as the host backend
    /// measured them (`thpsim_host::khugepaged::foreign_mms`); they are mirrored by
    /// [`Kernel::add_khugepaged_foreign_mm`]. On an empty list the sentinel's registration woke
    /// khugepaged for one pass, which is run here too. With other mms on the list it woke
    /// nobody; the host then realigned the scan cursor to the list head before the scenario
    /// started, as the model's is.
    pub fn add_khugepaged_sentinel(&mut self, foreign: &[u64]) -> Result<Pid, Errno> {
        for &cost in foreign {
            self.add_khugepaged_foreign_mm(cost)?;
        }
        // (When the scenario starts with PMD-sized THP off, the host turns it on just for the
        // sentinel's registration and pass, then off again.)
        let pid = self.spawn();
        let mmi = self.mm_of(pid);
        self.khugepaged_enter(mmi);
        self.mms[mmi].thp_disable = ThpDisable::Completely;
        if foreign.is_empty() {
            if self.khugepaged.next_pass_ms.take().is_some() {
                self.khugepaged_do_scan();
            }
        } else {
            self.khugepaged.next_pass_ms = None;
            self.khugepaged.cursor = None;
            self.khugepaged.address = 0;
        }
        if self.hugepage_pmd_enabled() {
            self.khugepaged.next_pass_ms =
                Some(self.now_ms + u64::from(self.sysfs.scan_sleep_millisecs));
        }
        Ok(pid)
    }

    /// Registers a stand-in for another process's mm on khugepaged's list that costs `cost`
    /// units of `pages_to_scan` per visit: one for the mm and one for each of `cost - 1` VMAs
    /// that are not THP-eligible (`MADV_NOHUGEPAGE`). `khugepaged_scan_mm_slot` skips such
    /// VMAs without looking at its budget, so the mm is always scanned whole in one visit, as
    /// the host's mms are that were registered while THP was `always` and hold no eligible
    /// VMA now. The VMAs are one page each with a page of gap, so that they never merge.
    /// Fails only if the stand-in VMAs do not fit the address space (`mmap`'s errno).
    pub fn add_khugepaged_foreign_mm(&mut self, cost: u64) -> Result<Pid, Errno> {
        let pid = self.spawn();
        for i in 0..cost.saturating_sub(1) {
            let start = (2 * i + 1) * crate::types::PAGE_SIZE;
            let len = crate::types::PAGE_SIZE;
            let flags = crate::mmap::MapFlags::default();
            self.mmap(pid, start, len, crate::types::Prot::R, flags)?;
            self.madvise(pid, start, len, crate::types::Advice::Nohugepage)?;
        }
        let mmi = self.mm_of(pid);
        self.khugepaged_enter(mmi);
        Ok(pid)
    }

    /// Runs `passes` khugepaged passes now; none while PMD-sized THP is off (there is no
    /// thread then: `start_stop_khugepaged` stopped it).
    pub fn khugepaged_scan(&mut self, passes: u32) {
        for _ in 0..passes {
            if self.khugepaged.mms.is_empty() || !self.hugepage_pmd_enabled() {
                break;
            }
            self.khugepaged_do_scan();
        }
    }

    /// `khugepaged_do_scan`: one pass. Returns the simulated milliseconds spent sleeping
    /// after an allocation failure (`alloc_sleep_millisecs`).
    fn khugepaged_do_scan(&mut self) -> u64 {
        let pages = u64::from(self.sysfs.pages_to_scan);
        let mut progress = 0u64;
        let mut pass_through_head = 0;
        let mut wait = true;
        let mut slept = 0;
        loop {
            if self.khugepaged.cursor.is_none() {
                pass_through_head += 1;
            }
            let mut result = ScanResult::Succeed;
            if !self.khugepaged.mms.is_empty() && pass_through_head < 2 {
                progress += self.khugepaged_scan_mm_slot(pages - progress, &mut result);
            } else {
                progress = pages;
            }
            if progress >= pages {
                break;
            }
            if result == ScanResult::AllocHugePageFail {
                if !wait {
                    break;
                }
                wait = false;
                slept += u64::from(self.sysfs.alloc_sleep_millisecs);
            }
        }
        slept
    }

    fn khugepaged_scan_mm_slot(&mut self, pages: u64, result: &mut ScanResult) -> u64 {
        let pos = match self.khugepaged.cursor {
            Some(p) => p,
            None => {
                self.khugepaged.cursor = Some(0);
                self.khugepaged.address = 0;
                0
            }
        };
        let mmi = self.khugepaged.mms[pos];
        let mut progress = 0u64;
        let mut finished = true;
        // The mm costs one unit once its mmap_lock is taken, before the exit-or-disabled
        // check (`hpage_collapse_test_exit_or_disable`) sends a THP-disabled mm to the end.
        progress += 1;
        if self.mms[mmi].thp_disable != ThpDisable::Completely {
            let starts: Vec<u64> = self.mms[mmi].vmas.keys().copied().collect();
            'vmas: for s in starts {
                let Some(vma) = self.mms[mmi].vmas.get(&s).copied() else {
                    continue;
                };
                if vma.end <= self.khugepaged.address {
                    continue;
                }
                if !self.thp_vma_allowable_order(mmi, &vma, HPAGE_PMD_ORDER, Tva::Khugepaged) {
                    progress += 1;
                    continue;
                }
                let hstart = (vma.start + PMD_SIZE - 1) & PMD_MASK;
                let hend = vma.end & PMD_MASK;
                if self.khugepaged.address > hend || hend <= hstart {
                    progress += 1;
                    continue;
                }
                if self.khugepaged.address < hstart {
                    self.khugepaged.address = hstart;
                }
                while self.khugepaged.address < hend {
                    let addr = self.khugepaged.address;
                    let Some(v) = self.mms[mmi].vma_at(addr).copied() else {
                        break;
                    };
                    if let Some(ino) = v.backing.inode() {
                        // The file scan drops mmap_lock, so after the block the mm is left
                        // (breakouterloop_mmap_lock) and khugepaged_do_scan re-enters it.
                        let mut r = self.hpage_collapse_scan_file(&v, ino, addr, true);
                        if r == ScanResult::PteMappedHugepage {
                            r = match self.collapse_pte_mapped_thp(mmi, addr, false) {
                                ScanResult::PmdMapped => ScanResult::Succeed,
                                r => r,
                            };
                        }
                        *result = r;
                        if r == ScanResult::Succeed {
                            self.vmstat.pages_collapsed += 1;
                        }
                        self.khugepaged.address += PMD_SIZE;
                        progress += u64::from(HPAGE_PMD_NR);
                        finished = false;
                        break 'vmas;
                    }
                    // Blocks of a region without a PMD table are SCAN_PMD_NULL, each
                    // costing HPAGE_PMD_NR of the budget and nothing else: take as many as
                    // the budget allows at once, ending where the last one would.
                    if let Some(run_end) = self.pmd_null_run(mmi, &v, addr, hend) {
                        let blocks = (run_end - addr) >> PMD_SHIFT;
                        let affordable = pages
                            .saturating_sub(progress)
                            .div_ceil(u64::from(HPAGE_PMD_NR));
                        let n = blocks.min(affordable.max(1));
                        *result = ScanResult::PmdNull;
                        self.khugepaged.address += n << PMD_SHIFT;
                        progress += n * u64::from(HPAGE_PMD_NR);
                        if progress >= pages {
                            finished = false;
                            break 'vmas;
                        }
                        continue;
                    }
                    *result = self.hpage_collapse_scan_pmd(mmi, &v, addr, true);
                    if *result == ScanResult::Succeed {
                        self.vmstat.pages_collapsed += 1;
                    }
                    self.khugepaged.address += PMD_SIZE;
                    progress += u64::from(HPAGE_PMD_NR);
                    // collapse_huge_page() dropped mmap_lock: return to khugepaged_do_scan,
                    // which re-enters this mm (+1) if budget is left. Running out of budget
                    // also leaves the mm unfinished until the next visit.
                    let lock_dropped =
                        matches!(*result, ScanResult::Succeed | ScanResult::AllocHugePageFail);
                    if lock_dropped || progress >= pages {
                        finished = false;
                        break 'vmas;
                    }
                }
            }
        }
        if finished {
            if pos + 1 < self.khugepaged.mms.len() {
                self.khugepaged.cursor = Some(pos + 1);
            } else {
                self.khugepaged.cursor = None;
                self.vmstat.full_scans += 1;
            }
            self.khugepaged.address = 0;
        }
        progress
    }

    /// `hpage_collapse_scan_pmd` + `collapse_huge_page` for the 2 MiB range at `haddr`.
    pub(crate) fn hpage_collapse_scan_pmd(
        &mut self,
        mmi: MmId,
        vma: &Vma,
        haddr: u64,
        khugepaged: bool,
    ) -> ScanResult {
        if !(haddr >= vma.start && haddr + PMD_SIZE <= vma.end) {
            return ScanResult::VmaCheck;
        }
        // find_pmd_or_thp_or_none(): no PMD table at all (mm_find_pmd() finds no PUD entry)
        // is SCAN_PMD_NULL, a none entry in a PMD table is SCAN_PMD_NONE.
        let pmd = self.mms[mmi].pgt.pmd(haddr);
        if pmd.is_none() {
            return if self.mms[mmi].pgt.has_pmd_table(haddr) {
                ScanResult::PmdNone
            } else {
                ScanResult::PmdNull
            };
        }
        if pmd.is_huge() {
            return ScanResult::PmdMapped;
        }
        let table = *self.mms[mmi].pgt.pte_table(pmd.table_idx());
        match self.collapse_check_ptes(&table, vma, khugepaged, false) {
            ScanResult::Succeed => {}
            r => return r,
        }
        self.collapse_huge_page(mmi, vma, haddr, khugepaged)
    }

    /// The per-PTE checks of a 2 MiB anonymous range: `hpage_collapse_scan_pmd`'s before
    /// the allocation (`isolate` false) and `__collapse_huge_page_isolate`'s after it and
    /// the swap-ins (`isolate` true). The kernel repeats them because the range can change
    /// in between: the allocation and its memcg charge may reclaim (the deferred-split
    /// shrinker splits a THP mapped here), and each swap-in allocates and charges too.
    /// The isolate pass finds a remaining swap entry non-present and only needs one
    /// referenced page; the `thp_scan_exceed_*` events count in either pass.
    fn collapse_check_ptes(
        &mut self,
        table: &[Pte; HPAGE_PMD_NR as usize],
        vma: &Vma,
        khugepaged: bool,
        isolate: bool,
    ) -> ScanResult {
        let (mut none_or_zero, mut shared, mut referenced) = (0u32, 0u32, 0u32);
        let mut unmapped = 0u32;
        let uffd = vma.uffd_armed();
        let mut checked: Vec<FolioId> = Vec::new();
        for pte in table {
            // Swap entries (uffd-wp markers are swap-format entries too) count against
            // max_ptes_swap (khugepaged only); one carrying uffd-wp aborts at once.
            if pte.is_swap() || pte.is_marker() {
                if isolate {
                    return ScanResult::PteNonPresent;
                }
                unmapped += 1;
                if !khugepaged || unmapped <= self.sysfs.max_ptes_swap {
                    if pte.has(crate::pgtable::UFFD_WP) {
                        return ScanResult::PteUffdWp;
                    }
                    continue;
                }
                self.vmstat.count(VmItem::ThpScanExceedSwapPte);
                return ScanResult::ExceedSwapPte;
            }
            if pte.is_none() || pte.is_zero_page() {
                none_or_zero += 1;
                if !uffd && (!khugepaged || none_or_zero <= self.sysfs.max_ptes_none) {
                    continue;
                }
                self.vmstat.count(VmItem::ThpScanExceedNonePte);
                return ScanResult::ExceedNonePte;
            }
            // uffd-wp protected entries and markers abort the collapse (SCAN_PTE_UFFD_WP).
            if pte.is_marker() || pte.has(crate::pgtable::UFFD_WP) {
                return ScanResult::PteUffdWp;
            }
            debug_assert!(pte.is_page());
            let id = pte.folio();
            if self.folios.maybe_mapped_shared(id)
                || (self.folios.get(id).order == 0 && self.folios.get(id).mapcount > 1)
            {
                shared += 1;
                if khugepaged && shared > self.sysfs.max_ptes_shared {
                    self.vmstat.count(VmItem::ThpScanExceedSharePte);
                    return ScanResult::ExceedSharedPte;
                }
            }
            if !checked.contains(&id) {
                // is_refcount_suitable(): every reference is a mapping (or the swap cache's).
                let f = self.folios.get(id);
                let cache = if self.swap.folio_slot.contains_key(&id) {
                    f.nr_pages()
                } else {
                    0
                };
                if f.refcount != f.mapcount + u32::from(f.entire_mapcount) + cache {
                    return ScanResult::PageCount;
                }
                checked.push(id);
            }
            // A young PTE, or a folio an earlier GUP marked accessed (PG_referenced): a fork
            // child's PTEs are old, but the folio's flag is shared with the parent.
            if pte.has(YOUNG) || self.folios.lru(id) & crate::folio::lru::REFERENCED != 0 {
                referenced += 1;
            }
        }
        // With swap entries to bring in, khugepaged wants at least half the range referenced.
        if khugepaged && (referenced == 0 || (unmapped > 0 && referenced < HPAGE_PMD_NR / 2)) {
            return ScanResult::LackReferencedPage;
        }
        ScanResult::Succeed
    }

    /// `alloc_charge_folio`: the PMD-sized block a collapse builds into (`thp_collapse_alloc`
    /// or `thp_collapse_alloc_failed`). khugepaged's mask follows `khugepaged/defrag`;
    /// MADV_COLLAPSE always uses GFP_TRANSHUGE.
    /// The charge (`mem_cgroup_charge` with the same mask) failing is
    /// `SCAN_CGROUP_CHARGE_FAIL`, after `thp_collapse_alloc` was counted.
    fn alloc_charge_folio(&mut self, khugepaged: bool) -> Result<crate::ids::Pfn, ScanResult> {
        let gfp = if !khugepaged || self.sysfs.khugepaged_defrag {
            Gfp::TRANSHUGE
        } else {
            Gfp::TRANSHUGE_LIGHT
        };
        let Some(pfn) = self.alloc_pages(HPAGE_PMD_ORDER, gfp) else {
            self.vmstat.count(VmItem::ThpCollapseAllocFailed);
            return Err(ScanResult::AllocHugePageFail);
        };
        self.vmstat.count(VmItem::ThpCollapseAlloc);
        if self.memcg_charge(u64::from(HPAGE_PMD_NR), gfp).is_err() {
            self.buddy.free(pfn, HPAGE_PMD_ORDER);
            return Err(ScanResult::CgroupChargeFail);
        }
        Ok(pfn)
    }

    /// `collapse_huge_page`: a new PMD THP replaces the PTE-mapped range.
    fn collapse_huge_page(
        &mut self,
        mmi: MmId,
        vma: &Vma,
        haddr: u64,
        khugepaged: bool,
    ) -> ScanResult {
        let pmd = self.mms[mmi].pgt.pmd(haddr);
        let tidx = pmd.table_idx();
        let table = *self.mms[mmi].pgt.pte_table(tidx);
        let migrate = match self.profile.switches.collapse {
            Collapse::Copy => None,
            Collapse::Inplace => Some(false),
            Collapse::InplaceMigrate => Some(true),
        };
        if let Some(migrate) = migrate {
            if self.collapse_in_place(mmi, vma, haddr, &table, migrate) {
                self.vmstat.count(VmItem::SimCollapseInplace);
                return ScanResult::Succeed;
            }
        }
        let pfn = match self.alloc_charge_folio(khugepaged) {
            Ok(pfn) => pfn,
            Err(r) => return r,
        };
        // Anonymous only once mapped (folio_add_new_anon_rmap), as in the kernel.
        let new = self.folios.alloc(pfn, HPAGE_PMD_ORDER, 0);
        // find_pmd_or_thp_or_none() again: what the allocation reclaimed may have changed
        // the range (the PTE table itself stays: nothing here frees one).
        let pmd = self.mms[mmi].pgt.pmd(haddr);
        if pmd.is_none() || pmd.is_huge() || pmd.table_idx() != tidx {
            self.free_folio(new);
            return if pmd.is_huge() {
                ScanResult::PmdMapped
            } else {
                ScanResult::PmdNone
            };
        }
        if self.mms[mmi]
            .pgt
            .pte_table(tidx)
            .iter()
            .any(|p| p.is_swap())
            && !self.collapse_huge_page_swapin(mmi, vma, haddr)
        {
            self.free_folio(new);
            return ScanResult::Fail;
        }
        let table = *self.mms[mmi].pgt.pte_table(tidx);
        match self.collapse_check_ptes(&table, vma, khugepaged, true) {
            ScanResult::Succeed => {}
            r => {
                self.free_folio(new);
                return r;
            }
        }
        let mut copied = 0;
        for (i, pte) in table.iter().enumerate() {
            if pte.is_page() {
                copied += 1;
                if self.folios.is_nonzero(pte.folio(), pte.idx()) {
                    self.folios.set_nonzero(new, to_u32(i));
                }
            }
        }
        self.vmstat
            .add(VmItem::SimZeroedPages, i64::from(HPAGE_PMD_NR) - copied);
        self.vmstat.add(VmItem::SimCollapseCopiedPages, copied);
        // __collapse_huge_page_copy_succeeded(): since 6.17 the old mappings go in batches of
        // consecutive pages of one folio (folio_pte_batch), so a large folio collapsed whole
        // is never seen partially mapped.
        let mut i = 0;
        while i < table.len() {
            let pte = table[i];
            self.mms[mmi].pgt.pte_table_mut(tidx)[i] = Pte::NONE;
            if !pte.is_page() {
                i += 1;
                continue;
            }
            let mut n = 1;
            while i + n < table.len() {
                let q = table[i + n];
                if q.is_page() && q.folio() == pte.folio() && q.idx() == pte.idx() + to_u32(n) {
                    self.mms[mmi].pgt.pte_table_mut(tidx)[i + n] = Pte::NONE;
                    n += 1;
                } else {
                    break;
                }
            }
            self.mms[mmi].add_mm_counter(MmCounter::AnonPages, -i64::from(to_u32(n)));
            let cached = self.swap.folio_slot.contains_key(&pte.folio());
            self.folio_remove_rmap_ptes(pte.folio(), pte.idx(), to_u32(n), mmi);
            if cached {
                self.free_swap_cache(pte.folio());
            }
            i += n;
        }
        // The PTE table becomes the deposit of the new PMD.
        let pfn = self.mms[mmi].pgt.free_pte_table(tidx);
        self.mms[mmi].pgt.deposit(pfn);
        let bits = YOUNG
            | DIRTY
            | EXCLUSIVE
            | if vma.has(crate::mm::vmf::WRITE) {
                WRITE
            } else {
                0
            };
        *self.mms[mmi].pgt.pmd_mut(haddr).expect("pmd") = Pmd::thp(new, bits);
        self.folios.meta_mut(new).va = haddr;
        self.folio_add_new_anon_rmap(new, RmapLevel::Pmd, mmi);
        self.mms[mmi].add_mm_counter(MmCounter::AnonPages, i64::from(HPAGE_PMD_NR));
        self.deferred_split_folio(new, false);
        ScanResult::Succeed
    }

    /// `__collapse_huge_page_swapin`: every swap entry of the block is faulted in
    /// (`do_swap_page`, a read fault the task is not charged for; `pgmajfault` counts the
    /// reads). False if a swap-in failed (SCAN_FAIL).
    fn collapse_huge_page_swapin(&mut self, mmi: MmId, vma: &Vma, haddr: u64) -> bool {
        for i in 0..u64::from(HPAGE_PMD_NR) {
            let addr = haddr + i * crate::types::PAGE_SIZE;
            let pte = self.mms[mmi].pgt.pte(addr);
            if !pte.is_swap() {
                continue;
            }
            let mut vmf =
                crate::fault::Vmf::new(mmi, *vma, addr, crate::fault::FaultFlags::default());
            vmf.orig_pte = pte;
            vmf.flags = vmf.flags.with(crate::fault::FaultFlags::ORIG_PTE_VALID);
            if self.do_swap_page(&mut vmf) != crate::fault::VmFault::Done {
                return false;
            }
        }
        true
    }

    /// The in-place collapse proposals. `collapse=inplace`: the range is exactly one order-9
    /// folio, page i at PTE i, mapped only here → map it by a PMD, no allocation, no copy.
    /// `migrate` (`collapse=inplace_migrate`): some PTEs may instead be none, the zero page,
    /// or an exclusive order-0 anonymous page (one that replaced a subreleased part of the
    /// folio): those pages are copied back into the folio's page i and freed, the others'
    /// page i zeroed; the folio leaves the deferred-split queue as fully mapped again.
    pub(crate) fn collapse_in_place(
        &mut self,
        mmi: MmId,
        vma: &Vma,
        haddr: u64,
        table: &pgtable::PteTable,
        migrate: bool,
    ) -> bool {
        // The folio: the first PTE mapping an order-9 folio's page at its natural index.
        let Some(id) = table.iter().enumerate().find_map(|(i, p)| {
            (p.is_page()
                && p.idx() == to_u32(i)
                && self.folios.get(p.folio()).order == HPAGE_PMD_ORDER)
                .then(|| p.folio())
        }) else {
            return false;
        };
        let f = *self.folios.get(id);
        if f.entire_mapcount != 0 || self.folios.maybe_mapped_shared(id) {
            return false;
        }
        let (mut own, mut small, mut holes) = (0u32, 0i64, 0i64);
        for (i, p) in table.iter().enumerate() {
            if p.is_page() && p.folio() == id {
                if p.idx() != to_u32(i) {
                    return false;
                }
                own += 1;
            } else if !migrate {
                return false;
            } else if p.is_none() || p.is_zero_page() {
                holes += 1;
            } else if p.is_page() {
                let g = self.folios.get(p.folio());
                // Migration needs a page only this PTE holds (an unpinned, unshared folio).
                if g.order != 0
                    || g.mapcount != 1
                    || g.refcount != 1
                    || !g.test(crate::folio::flags::ANON)
                {
                    return false;
                }
                small += 1;
            } else {
                return false;
            }
        }
        // Every mapping of the folio is one of these PTEs.
        if f.mapcount != own {
            return false;
        }
        let tidx = self.mms[mmi].pgt.pmd(haddr).table_idx();
        let excl = table.iter().all(|p| !p.is_page() || p.has(EXCLUSIVE));
        // The folio gains its PMD mapping first, so dropping its PTE mappings never makes it
        // look partially mapped; the pages no PTE mapped count as anonymous again.
        if self.folios.get(id).test(crate::folio::flags::DEFERRED) {
            self.ds_unqueue(id);
        }
        let unmapped = HPAGE_PMD_NR - self.folios.meta(id).nr_pages_mapped;
        self.folio_add_pmd_mapping(id, mmi);
        self.vmstat.add(VmItem::NrAnonPages, i64::from(unmapped));
        let mut i = 0;
        while i < table.len() {
            let p = table[i];
            self.mms[mmi].pgt.pte_table_mut(tidx)[i] = Pte::NONE;
            if p.is_page() && p.folio() == id {
                let mut n = 1;
                while i + n < table.len() && table[i + n].is_page() && table[i + n].folio() == id {
                    self.mms[mmi].pgt.pte_table_mut(tidx)[i + n] = Pte::NONE;
                    n += 1;
                }
                self.folio_remove_rmap_ptes(id, to_u32(i), to_u32(n), mmi);
                i += n;
                continue;
            }
            if p.is_page() {
                // migrate_folio(): the small page's data moves into page i of the THP.
                if self.folios.is_nonzero(p.folio(), p.idx()) {
                    self.folios.set_nonzero(id, to_u32(i));
                } else {
                    self.folios.clear_nonzero(id, to_u32(i));
                }
                self.folio_remove_rmap_ptes(p.folio(), p.idx(), 1, mmi);
            } else {
                // A subreleased page reads as zero again.
                self.folios.clear_nonzero(id, to_u32(i));
            }
            i += 1;
        }
        self.mms[mmi].add_mm_counter(MmCounter::AnonPages, holes);
        self.vmstat.add(VmItem::SimCollapseCopiedPages, small);
        self.vmstat.add(VmItem::SimZeroedPages, holes);
        let pfn = self.mms[mmi].pgt.free_pte_table(tidx);
        self.mms[mmi].pgt.deposit(pfn);
        let bits = YOUNG
            | DIRTY
            | if excl { EXCLUSIVE } else { 0 }
            | if excl && vma.has(crate::mm::vmf::WRITE) {
                WRITE
            } else {
                0
            };
        *self.mms[mmi].pgt.pmd_mut(haddr).expect("pmd") = Pmd::thp(id, bits);
        self.mms[mmi].lazy_thps.remove(&haddr);
        if holes + small > 0 {
            // The rebuilt THP is queued for the underused shrinker, as a collapsed one is.
            self.deferred_split_folio(id, false);
        }
        if self.swap.folio_slot.contains_key(&id) {
            // A folio refaulted from the swap cache: its PMD is dirty, so the copy on swap
            // is stale; the proposal frees the slots as the copy path's `free_swap_cache`
            // does for the folio it replaces (`folio_free_swap`: no swap PTE names them).
            self.folio_free_swap(id);
        }
        true
    }

    /// MADV_COLLAPSE over `[start, end)`: `madvise_walk_vmas` calls `madvise_collapse` VMA by
    /// VMA and returns the first VMA's error at once (later VMAs are left alone); holes make
    /// the call ENOMEM only if every VMA succeeded.
    pub(crate) fn madvise_collapse(&mut self, pid: Pid, start: u64, end: u64) -> Result<(), Errno> {
        let mmi = self.mm_of(pid);
        let unmapped = !self.mms[mmi].range_fully_mapped(start, end);
        for s in self.mms[mmi].vma_starts_in(start, end) {
            let Some(vma) = self.mms[mmi].vmas.get(&s).copied() else {
                continue;
            };
            self.madvise_collapse_vma(mmi, &vma, start.max(vma.start), end.min(vma.end))?;
        }
        if unmapped {
            return Err(Errno::ENOMEM);
        }
        Ok(())
    }

    /// `madvise_collapse` for `[a, b)` inside `vma`: `thp_vma_allowable_order` (EINVAL), the
    /// whole 2 MiB blocks of the range, then each block by `hpage_collapse_scan_pmd`
    /// (anonymous) or `hpage_collapse_scan_file` (shmem). `collapse_file` itself (building a
    /// new PMD-sized page-cache folio from small ones and holes) is not modelled: a block
    /// that needs it makes the call EOPNOTSUPP, never mistaken for the kernel's answer.
    fn madvise_collapse_vma(&mut self, mmi: MmId, vma: &Vma, a: u64, b: u64) -> Result<(), Errno> {
        if !self.thp_vma_allowable_order(mmi, vma, HPAGE_PMD_ORDER, Tva::ForcedCollapse) {
            return Err(Errno::EINVAL);
        }
        let hstart = (a + PMD_SIZE - 1) & PMD_MASK;
        let hend = b & PMD_MASK;
        let mut thps = 0u64;
        // last_fail starts as SCAN_FAIL, which madvise_collapse_errno() reports as EINVAL.
        let mut last_fail = None;
        let mut addr = hstart;
        while addr < hend {
            let Some(v) = self.mms[mmi].vma_at(addr).copied() else {
                break;
            };
            let r = if let Some(ino) = v.backing.inode() {
                // mmap_lock is dropped around the file scan; revalidating the VMA for the
                // next block finds the same one (nothing runs concurrently in the model).
                match self.hpage_collapse_scan_file(&v, ino, addr, false) {
                    ScanResult::PteMappedHugepage => self.collapse_pte_mapped_thp(mmi, addr, true),
                    r => r,
                }
            } else {
                // A 1 GiB region without a PMD table answers SCAN_PMD_NULL for each of its
                // blocks inside the VMA, and the loop goes on after it: take them at once.
                if let Some(skip) = self.pmd_null_run(mmi, &v, addr, hend) {
                    last_fail = Some(ScanResult::PmdNull);
                    addr = skip;
                    continue;
                }
                self.hpage_collapse_scan_pmd(mmi, &v, addr, false)
            };
            match r {
                ScanResult::Succeed | ScanResult::PmdMapped => thps += 1,
                // The results madvise_collapse() continues after.
                ScanResult::PmdNull
                | ScanResult::PteNonPresent
                | ScanResult::PteUffdWp
                | ScanResult::LackReferencedPage
                | ScanResult::PageNull
                | ScanResult::PageCount
                | ScanResult::PageCompound => last_fail = Some(r),
                // Any other result ends the loop, SCAN_PMD_NONE included.
                _ => {
                    last_fail = Some(r);
                    break;
                }
            }
            addr += PMD_SIZE;
        }
        // The kernel compares thps with `(hend - hstart) >> PMD_SHIFT` in unsigned arithmetic:
        // a range inside one 2 MiB block that does not start on its boundary has
        // hstart > hend, the difference wraps, and the call fails although nothing was tried;
        // hstart == hend expects zero blocks and succeeds.
        let wanted = hend.wrapping_sub(hstart) >> PMD_SHIFT;
        if thps == wanted {
            return Ok(());
        }
        Err(match last_fail {
            Some(ScanResult::AllocHugePageFail) => Errno::ENOMEM,
            Some(ScanResult::ExceedNonePte | ScanResult::CgroupChargeFail) => Errno::EBUSY,
            Some(ScanResult::PageCount) => Errno::EAGAIN,
            _ => Errno::EINVAL,
        })
    }

    /// `hpage_collapse_scan_file` of the block at `haddr` of the shmem VMA `vma` (page index
    /// `start` of its inode): the page cache decides, not the page table. A PMD-sized folio
    /// at `start` is `SCAN_PTE_MAPPED_HUGEPAGE` (nothing to build; the caller maps it);
    /// otherwise the cached pages are counted and, for khugepaged, fewer than
    /// `HPAGE_PMD_NR - max_ptes_none` of them is `SCAN_EXCEED_NONE_PTE`; else `collapse_file`.
    /// There is no referenced-page rule for files, and no LRU or refcount failure in the
    /// model (both callers drain the LRU caches first; nothing pins shmem folios).
    fn hpage_collapse_scan_file(
        &mut self,
        vma: &Vma,
        ino: InodeId,
        haddr: u64,
        khugepaged: bool,
    ) -> ScanResult {
        let start = vma.linear_page_index(haddr);
        let mut present = 0u32;
        for (&index, &id) in self.shmem.inodes[ino.index()]
            .cache
            .range(start..start + u64::from(HPAGE_PMD_NR))
        {
            let f = self.folios.get(id);
            if f.order == HPAGE_PMD_ORDER && index == start {
                return ScanResult::PteMappedHugepage;
            }
            present += f.nr_pages();
        }
        // Swap entries in the page cache count against max_ptes_swap (not as present).
        let end = start + u64::from(HPAGE_PMD_NR);
        let swap: u64 = self.shmem.inodes[ino.index()]
            .swapped
            .range(start..end)
            .map(|(_, &(_, o))| 1u64 << o)
            .sum();
        if khugepaged && swap > u64::from(self.sysfs.max_ptes_swap) {
            self.vmstat.count(VmItem::ThpScanExceedSwapPte);
            return ScanResult::ExceedSwapPte;
        }
        if khugepaged && present < HPAGE_PMD_NR - self.sysfs.max_ptes_none {
            self.vmstat.count(VmItem::ThpScanExceedNonePte);
            return ScanResult::ExceedNonePte;
        }
        // collapse_file swaps them in, in index order (shmem_get_folio with SGP_NOALLOC; no
        // fault charged). A swap-in may split a large entry (a page of it already in the swap
        // cache), leaving entries of smaller orders behind it: take the next one each time.
        while let Some(index) = self.shmem.inodes[ino.index()]
            .swapped
            .range(start..end)
            .next()
            .map(|(&i, _)| i)
        {
            if self.shmem_swapin_folio(ino, index, None).is_err() {
                return ScanResult::Fail;
            }
        }
        self.collapse_file(ino, start, khugepaged)
    }

    /// `collapse_file` for shmem (the reference kernel has no `CONFIG_READ_ONLY_THP_FOR_FS`,
    /// and only shmem VMAs pass `thp_vma_allowable_order` outside the fault path): a new
    /// PMD-sized page-cache folio replaces the small folios and holes of `[start, start +
    /// HPAGE_PMD_NR)` of `ino`.
    ///
    /// In the kernel's order: allocate (`alloc_charge_folio`: `thp_collapse_alloc` or
    /// `_failed`); an empty range is `SCAN_TRUNCATED`; each cached folio in index order is
    /// made uptodate if fallocated (`shmem_get_folio(SGP_NOALLOC)`, which refuses beyond
    /// i_size: `SCAN_FAIL`), then unmapped from every mapping (`try_to_unmap`); the holes are
    /// charged to the inode (`shmem_charge`: the tmpfs `size=` limit, `SCAN_FAIL`); a hole
    /// in the range of a VMA registered for userfaultfd MISSING faults is
    /// `SCAN_EXCEED_NONE_PTE` (the fault the monitor expects must not be filled). A failure
    /// after folios were unmapped leaves them cached and unmapped, as the rollback does.
    /// On success the new folio is cached (uptodate, dirty), the old ones freed, and
    /// `retract_page_tables` drops the emptied PTE tables; MADV_COLLAPSE then answers
    /// `SCAN_PTE_MAPPED_HUGEPAGE` so that its caller maps the folio by a PMD.
    fn collapse_file(&mut self, ino: InodeId, start: u64, khugepaged: bool) -> ScanResult {
        let end = start + u64::from(HPAGE_PMD_NR);
        let pfn = match self.alloc_charge_folio(khugepaged) {
            Ok(pfn) => pfn,
            Err(r) => return r,
        };
        let old: Vec<(u64, FolioId)> = self.shmem.inodes[ino.index()]
            .cache
            .range(start..end)
            .map(|(&i, &id)| (i, id))
            .collect();
        let rollback = |k: &mut Self, r: ScanResult| {
            k.buddy.free(pfn, HPAGE_PMD_ORDER);
            r
        };
        if old.is_empty() {
            return rollback(self, ScanResult::Truncated);
        }
        let size_pages = self.shmem.inodes[ino.index()].size.div_ceil(PAGE_SIZE);
        let mut present = 0u32;
        for &(index, id) in &old {
            if self.shmem.not_uptodate.contains(&id) {
                if index >= size_pages {
                    return rollback(self, ScanResult::Fail);
                }
                // SGP_NOALLOC on a fallocated folio clears it and marks it uptodate.
                self.shmem.not_uptodate.remove(&id);
            }
            // try_to_unmap(folio, TTU_IGNORE_MLOCK).
            self.unmap_file_folio(id, crate::shmem::UnmapFolio::TryToUnmap);
            present += self.folios.get(id).nr_pages();
        }
        let nr_none = HPAGE_PMD_NR - present;
        if nr_none > 0 && !self.shmem_blocks_fit(ino, u64::from(nr_none)) {
            return rollback(self, ScanResult::Fail);
        }
        if nr_none > 0 {
            let missing = self.shmem_mappings(ino).iter().any(|(_, v)| {
                let vend = v.pgoff + (v.len() >> PAGE_SHIFT);
                v.has(vmf::UFFD_MISSING) && v.pgoff < end && start < vend
            });
            if missing {
                return rollback(self, ScanResult::ExceedNonePte);
            }
        }
        // Copy the old pages, zero the holes; then the old folios leave the cache (freed:
        // nothing maps them now) and the new one takes their place.
        let new = self.folios.alloc(pfn, HPAGE_PMD_ORDER, flags::DIRTY);
        for &(index, id) in &old {
            let base = crate::util::page_u32(index - start);
            for i in 0..self.folios.get(id).nr_pages() {
                if self.folios.is_nonzero(id, i) {
                    self.folios.set_nonzero(new, base + i);
                }
            }
        }
        for &(_, id) in &old {
            self.shmem_delete_from_page_cache(id);
        }
        self.shmem_add_to_page_cache(ino, start, new);
        self.vmstat
            .add(VmItem::SimCollapseCopiedPages, i64::from(present));
        self.vmstat.add(VmItem::SimZeroedPages, i64::from(nr_none));
        self.retract_page_tables(ino, start);
        if khugepaged {
            ScanResult::Succeed
        } else {
            ScanResult::PteMappedHugepage
        }
    }

    /// `retract_page_tables`: after a collapse, every mapping of page `pgoff` of `ino` whose
    /// 2 MiB block there is aligned and inside the VMA loses its (now empty) PTE table, so
    /// that the next fault maps the new folio by a PMD. Skipped: VMAs with an anon_vma (a
    /// private mapping written to, whose PMD would be split again), blocks whose PMD is not
    /// a table (`find_pmd_or_thp_or_none`), and uffd-wp VMAs (their markers live in the
    /// table).
    fn retract_page_tables(&mut self, ino: InodeId, pgoff: u64) {
        for (mmi, vma) in self.shmem_mappings(ino) {
            let vend = vma.pgoff + (vma.len() >> PAGE_SHIFT);
            if pgoff < vma.pgoff || pgoff >= vend || vma.anon_vma.is_some() {
                continue;
            }
            let addr = vma.start + ((pgoff - vma.pgoff) << PAGE_SHIFT);
            if addr & !PMD_MASK != 0 || vma.end < addr + PMD_SIZE {
                continue;
            }
            let pmd = self.mms[mmi].pgt.pmd(addr);
            if !pmd.is_table() || vma.has(vmf::UFFD_WP) {
                continue;
            }
            let tidx = pmd.table_idx();
            debug_assert!(
                self.mms[mmi]
                    .pgt
                    .pte_table(tidx)
                    .iter()
                    .all(|p| p.is_none()),
                "retract_page_tables: the collapse left a PTE in the table"
            );
            let pfn = self.mms[mmi].pgt.free_pte_table(tidx);
            *self.mms[mmi].pgt.pmd_mut(addr).expect("pmd") = Pmd::NONE;
            self.free_pgtable_page(pfn);
        }
    }

    /// `collapse_pte_mapped_thp(mm, haddr, install_pmd)`: the block at `haddr` is backed by
    /// a PMD-sized page-cache folio; make this mm map it by a PMD (MADV_COLLAPSE,
    /// `install_pmd`) or at least drop the PTEs that map it (khugepaged, whose next fault
    /// maps the PMD). In the kernel's order: the VMA must cover the block (`SCAN_VMA_CHECK`);
    /// a huge PMD is `SCAN_PMD_MAPPED`; the VMA must allow a
    /// PMD ignoring sysfs (`SCAN_VMA_CHECK`) and not be uffd-wp registered
    /// (`SCAN_PTE_UFFD_WP`); no cached folio at the index is `SCAN_PAGE_NULL`, a smaller one
    /// `SCAN_PAGE_COMPOUND`. A none PMD, or no PMD table at all, needs only the PMD (the
    /// table allocated for it); a PTE table whose present PTEs
    /// all map the folio's own pages at their place is cleared and freed (`pte_free_defer`)
    /// first; a swap entry or marker is `SCAN_PTE_NON_PRESENT`, any other page (a private
    /// COW copy) `SCAN_FAIL`. A folio fallocated and never used (`!PG_uptodate`) fails
    /// before the page table is looked at: `SCAN_FAIL` (measured: MADV_COLLAPSE EINVAL with
    /// the next block not tried even without a PMD table, and khugepaged does not count it;
    /// FINDINGS §26).
    fn collapse_pte_mapped_thp(&mut self, mmi: MmId, haddr: u64, install_pmd: bool) -> ScanResult {
        let Some(vma) = self.mms[mmi].vma_at(haddr).copied() else {
            return ScanResult::VmaCheck;
        };
        let Some(ino) = vma.backing.inode() else {
            return ScanResult::VmaCheck;
        };
        if haddr < vma.start || haddr + PMD_SIZE > vma.end {
            return ScanResult::VmaCheck;
        }
        if self.mms[mmi].pgt.pmd(haddr).is_huge() {
            return ScanResult::PmdMapped;
        }
        if !self.thp_vma_allowable_order(mmi, &vma, HPAGE_PMD_ORDER, Tva::ForcedCollapse) {
            return ScanResult::VmaCheck;
        }
        if vma.has(vmf::UFFD_WP) {
            return ScanResult::PteUffdWp;
        }
        let Some((id, _)) = self.filemap_get_folio(ino, vma.linear_page_index(haddr)) else {
            return ScanResult::PageNull;
        };
        if self.folios.get(id).order != HPAGE_PMD_ORDER {
            return ScanResult::PageCompound;
        }
        if self.shmem.not_uptodate.contains(&id) {
            return ScanResult::Fail;
        }
        // find_pmd_or_thp_or_none() again, now under the folio lock. No PMD table at all is
        // handled like a none PMD (measured: khugepaged counts the block, MADV_COLLAPSE maps
        // it by a PMD, allocating the table; FINDINGS §26).
        if !self.mms[mmi].pgt.has_pmd_table(haddr) {
            if !install_pmd {
                return ScanResult::Succeed;
            }
            if !self.pmd_alloc(mmi, haddr) {
                return ScanResult::Fail;
            }
        }
        let pmd = self.mms[mmi].pgt.pmd(haddr);
        if pmd.is_table() {
            let tidx = pmd.table_idx();
            let table = *self.mms[mmi].pgt.pte_table(tidx);
            let mut dirty = false;
            for (i, pte) in table.iter().enumerate() {
                if pte.is_none() {
                    continue;
                }
                if !pte.is_page() {
                    return ScanResult::PteNonPresent;
                }
                if pte.folio() != id || pte.idx() != to_u32(i) {
                    return ScanResult::Fail;
                }
                dirty |= pte.has(DIRTY);
            }
            if dirty {
                self.folios.get_mut(id).flags |= flags::DIRTY;
            }
            let mut mapped = 0i64;
            for (i, pte) in table.iter().enumerate() {
                if pte.is_page() {
                    self.mms[mmi].pgt.pte_table_mut(tidx)[i] = Pte::NONE;
                    self.folio_remove_rmap_ptes(id, to_u32(i), 1, mmi);
                    mapped += 1;
                }
            }
            if mapped > 0 {
                self.mms[mmi].add_mm_counter(MmCounter::ShmemPages, -mapped);
            }
            let pfn = self.mms[mmi].pgt.free_pte_table(tidx);
            *self.mms[mmi].pgt.pmd_mut(haddr).expect("pmd") = Pmd::NONE;
            self.free_pgtable_page(pfn);
        }
        if !install_pmd {
            return ScanResult::Succeed;
        }
        // set_huge_pmd -> do_set_pmd, as a read fault (flags 0) would map it.
        let vmf = crate::fault::Vmf::new(mmi, vma, haddr, crate::fault::FaultFlags::default());
        if self.do_set_pmd(&vmf, id) {
            ScanResult::Succeed
        } else {
            ScanResult::Fail
        }
    }

    /// If the 2 MiB block at `haddr` lies in `vma` and in a 1 GiB region without a PMD table,
    /// the end (at most `hend`) of the run of such blocks from it: each of them is
    /// `SCAN_PMD_NULL` with no side effect, so scanning them one by one changes nothing.
    fn pmd_null_run(&self, mmi: MmId, vma: &Vma, haddr: u64, hend: u64) -> Option<u64> {
        if self.dense_walks || self.mms[mmi].pgt.has_pmd_table(haddr) || haddr < vma.start {
            return None;
        }
        let region_end = (haddr | (crate::types::PUD_SIZE - 1)) + 1;
        let run_end = region_end.min(hend).min(vma.end & PMD_MASK);
        (run_end > haddr).then_some(run_end)
    }

    /// Adds a PMD mapping to an existing folio (in-place collapse).
    fn folio_add_pmd_mapping(&mut self, id: FolioId, mmi: MmId) {
        let f = self.folios.get_mut(id);
        f.entire_mapcount += 1;
        f.refcount += 1;
        if f.entire_mapcount == 1 {
            self.vmstat.add(VmItem::NrAnonTransparentHugepages, 1);
        }
        self.folios.mm_map_add(id, mmi, 1);
    }
}
