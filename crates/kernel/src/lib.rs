//! thpsim-kernel: a pure, deterministic model of Linux anonymous-memory and transparent
//! huge page management, after Linux 6.18 (x86-64, 4 KiB pages) with older behaviour as
//! profiles. No I/O, no wall clock, no unseeded randomness; `forbid(unsafe_code)`.
//!
//! The entry point is [`Kernel`]: syscalls (`mmap`, `munmap`, `mprotect`, `madvise`,
//! `prctl`) and memory accesses by a task, plus observation (`vmstat`, `smaps`,
//! `page_map`). Modules are named after the kernel files whose decisions they model.
#![forbid(unsafe_code)]

pub mod compaction;
pub(crate) mod daemon;
pub(crate) mod deferred_split;
pub mod errno;
pub(crate) mod fault;
pub(crate) mod filemap;
pub(crate) mod folio;
pub(crate) mod fork;
pub mod guest_memfd;
pub(crate) mod gup;
pub(crate) mod huge_memory;
pub mod hugetlb;
pub mod ids;
pub(crate) mod invariants;
pub(crate) mod khugepaged;
pub(crate) mod madvise;
pub mod memcontrol;
pub(crate) mod memory;
pub(crate) mod mlock;
pub mod mm;
pub mod mmap;
pub(crate) mod mprotect;
pub(crate) mod mremap;
pub mod observe;
pub mod page_alloc;
pub(crate) mod pgtable;
pub mod profile;
pub mod readahead;
pub(crate) mod rmap;
pub mod shmem;
pub(crate) mod shrinker;
pub(crate) mod split;
pub(crate) mod swapfile;
pub use swapfile::SwapDevice;
pub mod sysfs;
pub(crate) mod task_mmu;
pub mod types;
pub mod userfaultfd;
pub(crate) mod userfaultfd_ctx;
pub mod util;
pub(crate) mod vmscan;
pub mod vmstat;
pub(crate) mod walk;

pub use invariants::InvariantViolation;

use errno::Errno;
use folio::Folios;
use ids::{AnonVmaId, FolioId, MmId, Pfn};
use mm::{Mm, Mms, Task, ThpDisable};
use page_alloc::{BuddyAllocator, Gfp};
use profile::Profile;
use sysfs::Sysfs;
use types::{Pid, MAX_PAGE_ORDER, PAGE_SHIFT};
use vmstat::{MthpStat, VmItem, VmStat};

/// How a model is built.
#[derive(Clone, Debug)]
pub struct KernelConfig {
    /// Simulated physical memory, bytes (multiple of 4 MiB, at most 8 TiB).
    pub memory: u64,
    pub profile: Profile,
    pub sysfs: Sysfs,
    /// Bytes of swap (`swapfile.rs`); 0 for none.
    pub swap: u64,
    /// The kind of the swap device (zram unless told).
    pub swap_device: SwapDevice,
    /// zswap was enabled at some point since boot (`zswap_never_enabled()` false): every
    /// swap-in is order 0. A fact of a host's history, not of a kernel version.
    pub zswap_ever_enabled: bool,
    /// The run's memory cgroup (`memcg limit=…`), holding every process; `None`: the root.
    pub memcg: Option<memcontrol::MemcgConfig>,
}

impl Default for KernelConfig {
    fn default() -> Self {
        KernelConfig {
            swap: 0,
            swap_device: SwapDevice::Zram,
            zswap_ever_enabled: false,
            memcg: None,
            memory: 16 << 30,
            profile: profile::profile(profile::DEFAULT_PROFILE).expect("default profile"),
            sysfs: Sysfs::default(),
        }
    }
}

/// Why `Kernel::new` refused a configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("memory must be a positive multiple of {unit_mib} MiB")]
    MemoryNotMultiple { unit_mib: u64 },
    #[error("memory above {max_tib} TiB is not supported")]
    MemoryTooLarge { max_tib: u64 },
}

/// `vm.watermark_scale_factor` (default 10: the low and high watermarks sit 0.1 % of a
/// zone above min).
const WATERMARK_SCALE_FACTOR: u64 = 10;

/// The largest simulated memory (PFNs stay below 2^31).
pub const MAX_MEMORY: u64 = 8 << 40;

/// The simulated machine: physical memory, every process and mm, global THP state.
#[derive(Clone, Debug)]
pub struct Kernel {
    pub profile: Profile,
    pub sysfs: Sysfs,
    pub vmstat: VmStat,
    pub(crate) buddy: BuddyAllocator,
    pub(crate) folios: Folios,
    /// Shmem inodes and the page cache.
    pub(crate) shmem: shmem::Shmem,
    /// The hugetlb pool, hugetlbfs files and huge PTEs (`hugetlb.rs`).
    pub hugetlb: hugetlb::Hugetlb,
    pub(crate) huge_zero: huge_memory::HugeZeroFolio,
    pub(crate) mms: Mms,
    pub(crate) tasks: mm::Tasks,
    next_pid: Pid,
    pub(crate) next_anon_vma: AnonVmaId,
    /// The deferred-split queue (`ds_queue`).
    pub(crate) ds_queue: deferred_split::DeferredSplitQueue,
    pub(crate) khugepaged: khugepaged::KhugepagedState,
    /// Simulated time in milliseconds (advanced only by `sleep_ms`, see `daemon`).
    pub(crate) now_ms: u64,
    /// userfaultfd messages delivered, all processes.
    pub uffd_stats: userfaultfd_ctx::MsgStats,
    /// Walks visit every slot, not only populated ones (`walk::set_dense_walks`, tests).
    pub(crate) dense_walks: bool,
    /// Runs of order-0 faults on one PTE table are handled at once (`memory::fault_run`);
    /// off only in tests (`set_extent_faults`), as the page-at-a-time reference.
    pub(crate) extent_faults: bool,
    /// The compaction sysctls.
    pub compaction: compaction::CompactionTunables,
    pub(crate) kcompactd: compaction::Kcompactd,
    /// Unmovable background allocations (`kalloc`): (pfn, order).
    pub(crate) kallocs: Vec<(Pfn, u8)>,
    /// The swap device and the swap cache (`swapfile.rs`).
    pub(crate) swap: swapfile::Swap,
    /// The run's memory cgroup (`memcontrol.rs`).
    pub(crate) memcg: Option<memcontrol::MemCgroup>,
    /// Set when the run reached behaviour the model does not have (memcg limit reclaim);
    /// the backend refuses the scenario with it.
    pub(crate) unmodelled: Option<String>,
}

impl Kernel {
    pub fn new(cfg: KernelConfig) -> Result<Kernel, ConfigError> {
        let unit = 1u64 << (u32::from(MAX_PAGE_ORDER) + PAGE_SHIFT);
        if cfg.memory < unit || cfg.memory % unit != 0 {
            return Err(ConfigError::MemoryNotMultiple {
                unit_mib: unit >> 20,
            });
        }
        if cfg.memory > MAX_MEMORY {
            return Err(ConfigError::MemoryTooLarge {
                max_tib: MAX_MEMORY >> 40,
            });
        }
        let thp = cfg.sysfs.pmd_thp_enabled();
        let pool = (
            cfg.sysfs.nr_hugepages,
            cfg.sysfs.nr_overcommit_hugepages,
            cfg.sysfs.nr_hugepages_1g,
        );
        let mut k = Kernel {
            profile: cfg.profile,
            sysfs: cfg.sysfs,
            vmstat: VmStat::default(),
            buddy: BuddyAllocator::new(cfg.memory >> PAGE_SHIFT, thp, WATERMARK_SCALE_FACTOR),
            folios: Folios::default(),
            shmem: shmem::Shmem::default(),
            hugetlb: hugetlb::Hugetlb::default(),
            huge_zero: huge_memory::HugeZeroFolio::default(),
            mms: Mms::default(),
            tasks: mm::Tasks::default(),
            next_pid: 1,
            next_anon_vma: AnonVmaId::FIRST,
            ds_queue: deferred_split::DeferredSplitQueue::default(),
            khugepaged: khugepaged::KhugepagedState::default(),
            now_ms: 0,
            uffd_stats: userfaultfd_ctx::MsgStats::default(),
            dense_walks: false,
            extent_faults: true,
            compaction: compaction::CompactionTunables::default(),
            kcompactd: compaction::Kcompactd::default(),
            kallocs: Vec::new(),
            swap: swapfile::Swap::default(),
            memcg: cfg.memcg.map(memcontrol::MemCgroup::new),
            unmodelled: None,
        };
        if cfg.swap > 0 {
            k.swap.si = Some(swapfile::SwapInfo::new(cfg.swap, cfg.swap_device));
            k.swap.zswap_ever_enabled = cfg.zswap_ever_enabled;
        }
        // The boot-time pool (`hugepages=` / the knob's starting value).
        // The 1 GiB pool first: gigantic pages need whole free 1 GiB ranges (what a boot-time
        // `hugepagesz=1G hugepages=N` gets before anything else is allocated).
        k.set_max_huge_pages(hugetlb::HugePageSize::Size1G, pool.2);
        k.set_overcommit_huge_pages(hugetlb::HugePageSize::Size2M, pool.1);
        k.set_max_huge_pages(hugetlb::HugePageSize::Size2M, pool.0);
        Ok(k)
    }

    pub(crate) fn alloc_pid(&mut self) -> Pid {
        self.next_pid += 1;
        self.next_pid - 1
    }

    /// A new `anon_vma` (`anon_vma_alloc`).
    pub(crate) fn new_anon_vma(&mut self) -> AnonVmaId {
        let id = self.next_anon_vma;
        self.next_anon_vma = id.next();
        id
    }

    /// Creates a process with an empty address space; returns its pid.
    pub fn spawn(&mut self) -> Pid {
        let pid = self.alloc_pid();
        let mm = self.mms.push(Mm {
            users: 1,
            ..Mm::default()
        });
        self.tasks.insert(
            pid,
            Task {
                pid,
                mm,
                minflt: 0,
                majflt: 0,
            },
        );
        pid
    }

    pub fn task(&self, pid: Pid) -> Option<&Task> {
        self.tasks.get(&pid)
    }

    #[inline]
    pub(crate) fn mm_of(&self, pid: Pid) -> MmId {
        self.tasks
            .get(&pid)
            .map_or_else(|| panic!("no task {pid}"), |t| t.mm)
    }

    pub fn mm(&self, pid: Pid) -> &Mm {
        &self.mms[self.mm_of(pid)]
    }

    /// Free pages of the buddy allocator.
    pub fn nr_free_pages(&self) -> u64 {
        self.buddy.nr_free_pages()
    }

    /// Total simulated pages.
    pub fn total_pages(&self) -> u64 {
        self.buddy.total_pages()
    }

    /// Length of the deferred-split queue.
    pub fn deferred_split_len(&self) -> u64 {
        self.ds_queue.len()
    }

    /// Number of live folios (for benchmarks and invariants).
    pub fn nr_folios(&self) -> u64 {
        self.folios.live()
    }

    /// `prctl(PR_SET_THP_DISABLE, disable, flags)`; `flags` is 0 or
    /// `PR_THP_DISABLE_EXCEPT_ADVISED` (1 << 1), which only 6.18+ accepts.
    pub fn prctl_set_thp_disable(
        &mut self,
        pid: Pid,
        disable: bool,
        flags: u64,
    ) -> Result<(), Errno> {
        const EXCEPT_ADVISED: u64 = 1 << 1;
        let mm = self.mm_of(pid);
        let mode = match (disable, flags) {
            (false, 0) => ThpDisable::No,
            (true, 0) => ThpDisable::Completely,
            (true, EXCEPT_ADVISED) if self.profile.switches.prctl_thp_except_advised => {
                ThpDisable::ExceptAdvised
            }
            _ => return Err(Errno::EINVAL),
        };
        self.mms[mm].thp_disable = mode;
        Ok(())
    }

    /// `prctl(PR_GET_THP_DISABLE)`: 0, 1, or 3 (disabled except advised).
    pub fn prctl_get_thp_disable(&self, pid: Pid) -> u64 {
        match self.mm(pid).thp_disable {
            ThpDisable::No => 0,
            ThpDisable::Completely => 1,
            ThpDisable::ExceptAdvised => 3,
        }
    }

    // ---- page and page-table allocation -------------------------------------------------

    /// Allocates a page-table page (order 0, unmovable in the kernel).
    pub(crate) fn alloc_pgtable_page(&mut self) -> Option<Pfn> {
        let pfn = self.alloc_pages(0, Gfp::KERNEL)?;
        self.account_pgtable_page();
        Some(pfn)
    }

    /// What a new page-table page counts: `NR_PAGETABLE` and its memcg charge.
    pub(crate) fn account_pgtable_page(&mut self) {
        self.vmstat.count(VmItem::NrPageTablePages);
        self.memcg_charge_pgtable();
    }

    pub(crate) fn free_pgtable_page(&mut self, pfn: Pfn) {
        self.buddy.free(pfn, 0);
        self.vmstat.add(VmItem::NrPageTablePages, -1);
    }

    /// Allocates an anonymous folio of `order` (zeroed content) with `gfp`, charged to the
    /// memcg (`mem_cgroup_charge`, order 0 with `GFP_KERNEL`).
    pub(crate) fn alloc_anon_folio_order(&mut self, order: u8, gfp: Gfp) -> Option<FolioId> {
        self.alloc_charge_anon_folio(order, gfp).ok()
    }

    /// Pages for a folio of `order`, charged to the memcg (order 0 with `GFP_KERNEL`, as
    /// `mem_cgroup_charge` is called for page-cache and order-0 folios); `None` when either
    /// fails (the pages given back).
    pub(crate) fn alloc_charged_pages(&mut self, order: u8, gfp: Gfp) -> Option<Pfn> {
        let pfn = self.alloc_pages(order, gfp)?;
        let charge_gfp = if order == 0 { Gfp::KERNEL } else { gfp };
        if self.memcg_charge(1 << order, charge_gfp).is_err() {
            self.buddy.free(pfn, order);
            return None;
        }
        Some(pfn)
    }

    /// As `alloc_anon_folio_order`, telling an allocation failure (`Err(false)`) from a
    /// charge failure (`Err(true)`, the pages given back).
    pub(crate) fn alloc_charge_anon_folio(&mut self, order: u8, gfp: Gfp) -> Result<FolioId, bool> {
        let pfn = self.alloc_pages(order, gfp).ok_or(false)?;
        let charge_gfp = if order == 0 { Gfp::KERNEL } else { gfp };
        if self.memcg_charge(1 << order, charge_gfp).is_err() {
            self.buddy.free(pfn, order);
            return Err(true);
        }
        // Anonymous only once mapped (folio_add_new_anon_rmap), as in the kernel.
        Ok(self.folios.alloc(pfn, order, 0))
    }

    /// Unmovable (or reclaimable) background allocations, as a long-running host's slab and
    /// kernel allocations leave them: `pages` in blocks of `order`. With `scatter` 0 they
    /// come from the allocator as kernel allocations do (`GFP_KERNEL`, so they gather in
    /// pageblocks of their type); with `scatter` N one block is placed in the middle of
    /// every N-th pageblock (Normal first, from each zone's start), left in a pageblock of
    /// whatever type it has, as stealing leaves them. Returns the pages allocated (fewer
    /// when memory runs out). They are never freed.
    pub fn kalloc(
        &mut self,
        pages: u64,
        order: u8,
        mt: page_alloc::MigrateType,
        scatter: u64,
    ) -> u64 {
        let order = order.min(MAX_PAGE_ORDER);
        let nr = 1u64 << order;
        let mut done = 0;
        if scatter == 0 {
            let gfp = Gfp { mt, ..Gfp::KERNEL };
            while done + nr <= pages {
                let Some(p) = self.alloc_pages(order, gfp) else {
                    break;
                };
                self.kallocs.push((p, order));
                done += nr;
            }
            return done;
        }
        let step = scatter * page_alloc::PAGEBLOCK_NR;
        let offset = (page_alloc::PAGEBLOCK_NR / 2) & !(nr - 1);
        for z in (0..self.buddy.zones.len()).rev() {
            let (start, end) = (self.buddy.zones[z].start, self.buddy.zones[z].end);
            let mut pb = start;
            while pb + page_alloc::PAGEBLOCK_NR <= end && done + nr <= pages {
                let p = pb + offset;
                if self.buddy.take_at(p, order) {
                    self.kallocs.push((Pfn(p), order));
                    done += nr;
                }
                pb += step;
            }
        }
        done
    }

    /// Frees a folio whose last reference is gone (`__folio_put` → `free_pages_prepare`).
    pub(crate) fn free_folio(&mut self, id: FolioId) {
        let f = *self.folios.get(id);
        debug_assert_eq!(f.refcount, 0);
        if f.test(folio::flags::DEFERRED) {
            self.ds_unqueue(id);
        }
        if f.order >= 2 && f.test(folio::flags::ANON) {
            self.vmstat.mthp_add(f.order, MthpStat::NrAnon, -1);
        }
        self.buddy.free(f.pfn(), f.order);
        self.folios.release(id);
    }

    /// Drops `n` references; frees the folio at zero.
    #[inline]
    pub(crate) fn folio_put(&mut self, id: FolioId, n: u32) {
        let f = self.folios.get_mut(id);
        debug_assert!(f.refcount >= n);
        f.refcount -= n;
        if f.refcount == 0 {
            self.free_folio(id);
        }
    }
}

impl Kernel {
    /// Test helper: the outcome of a read at `addr` without changing anything if it would
    /// signal (used to probe protections).
    pub fn touch_result(&mut self, pid: Pid, addr: u64) -> Result<(), errno::Signal> {
        let mmi = self.mm_of(pid);
        match self.mms[mmi].vma_at(addr) {
            Some(v) if v.accessible() => self.access(pid, addr, types::AccessKind::Read),
            _ => Err(errno::Signal::Sigsegv),
        }
    }

    /// Every counter under its observable name, with `nr_free_pages` filled in from the
    /// allocator (see `VmStat::named`).
    pub fn counters(&self) -> Vec<(String, i64)> {
        let mut v = self.vmstat.named();
        for (k, val) in &mut v {
            if k == "vmstat.nr_free_pages" {
                *val = util::to_i64(self.buddy.nr_free_pages());
            }
        }
        // /proc/buddyinfo, the pageblock counts of /proc/pagetypeinfo, and the `sim.`
        // fragmentation figures (the indices of /sys/kernel/debug/extfrag, ×1000, at
        // pageblock order; the pageblocks holding pages of two mobilities; the node's
        // proactive-compaction score).
        for (zi, z) in self.buddy.zones.iter().enumerate() {
            for o in 0..page_alloc::NR_ORDERS {
                v.push((
                    format!("buddyinfo.{}.{o}", z.name),
                    util::to_i64(z.count_order(o)),
                ));
            }
            let blocks = self.buddy.pageblock_counts(zi);
            for mt in page_alloc::MigrateType::ALL {
                v.push((
                    format!("pagetypeinfo.{}.{}", z.name, mt.name()),
                    util::to_i64(blocks[mt as usize]),
                ));
            }
            let o = page_alloc::PAGEBLOCK_ORDER;
            v.push((
                format!("sim.{}.extfrag_index", z.name),
                z.fragmentation_index(o),
            ));
            v.push((
                format!("sim.{}.unusable_index", z.name),
                z.unusable_index(o),
            ));
            v.push((
                format!("sim.{}.mixed_pageblocks", z.name),
                util::to_i64(self.buddy.mixed_pageblocks(zi)),
            ));
        }
        v.push((
            "sim.fragmentation_score".into(),
            util::to_i64(self.fragmentation_score_node()),
        ));
        v.extend(self.hugetlb_meminfo());
        v.extend(self.swap_meminfo());
        self.memcg_counters(&mut v);
        for (k, val) in &mut v {
            if k == "vmstat.nr_swapcached" {
                *val = util::to_i64(u64::try_from(self.swap.cache.len()).unwrap_or(0));
            }
        }
        let u = &self.uffd_stats;
        for (name, n) in [
            ("events", u.events),
            ("missing", u.missing),
            ("wp", u.wp),
            ("minor", u.minor),
            ("write", u.write),
        ] {
            v.push((format!("uffd.{name}"), util::to_i64(n)));
        }
        v
    }
}
