//! thpsim-kernel: a pure, deterministic model of Linux anonymous-memory and transparent
//! huge page management, after Linux 6.18 (x86-64, 4 KiB pages) with older behaviour as
//! profiles. No I/O, no wall clock, no unseeded randomness; `forbid(unsafe_code)`.
//!
//! The entry point is [`Kernel`]: syscalls (`mmap`, `munmap`, `mprotect`, `madvise`,
//! `prctl`) and memory accesses by a task, plus observation (`vmstat`, `smaps`,
//! `page_map`). Modules are named after the kernel files whose decisions they model.
#![forbid(unsafe_code)]

pub(crate) mod daemon;
pub(crate) mod deferred_split;
pub mod errno;
pub(crate) mod fault;
pub(crate) mod filemap;
pub(crate) mod folio;
pub(crate) mod fork;
pub(crate) mod gup;
pub(crate) mod huge_memory;
pub mod ids;
pub(crate) mod invariants;
pub(crate) mod khugepaged;
pub(crate) mod madvise;
pub(crate) mod memory;
pub(crate) mod mlock;
pub mod mm;
pub mod mmap;
pub(crate) mod mprotect;
pub(crate) mod mremap;
pub mod observe;
pub(crate) mod page_alloc;
pub(crate) mod pgtable;
pub mod profile;
pub(crate) mod rmap;
pub mod shmem;
pub(crate) mod shrinker;
pub(crate) mod split;
pub mod sysfs;
pub(crate) mod task_mmu;
pub mod types;
pub mod userfaultfd;
pub(crate) mod userfaultfd_ctx;
pub mod util;
pub mod vmstat;

pub use invariants::InvariantViolation;

use errno::Errno;
use folio::Folios;
use ids::{AnonVmaId, FolioId, MmId, Pfn};
use mm::{Mm, Mms, Task, ThpDisable};
use page_alloc::BuddyAllocator;
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
}

impl Default for KernelConfig {
    fn default() -> Self {
        KernelConfig {
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
        Ok(Kernel {
            profile: cfg.profile,
            sysfs: cfg.sysfs,
            vmstat: VmStat::default(),
            buddy: BuddyAllocator::new(cfg.memory >> PAGE_SHIFT),
            folios: Folios::default(),
            shmem: shmem::Shmem::default(),
            huge_zero: huge_memory::HugeZeroFolio::default(),
            mms: Mms::default(),
            tasks: mm::Tasks::default(),
            next_pid: 1,
            next_anon_vma: AnonVmaId::FIRST,
            ds_queue: deferred_split::DeferredSplitQueue::default(),
            khugepaged: khugepaged::KhugepagedState::default(),
            now_ms: 0,
            uffd_stats: userfaultfd_ctx::MsgStats::default(),
        })
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
        let pfn = self.buddy.alloc(0)?;
        self.vmstat.count(VmItem::NrPageTablePages);
        Some(pfn)
    }

    pub(crate) fn free_pgtable_page(&mut self, pfn: Pfn) {
        self.buddy.free(pfn, 0);
        self.vmstat.add(VmItem::NrPageTablePages, -1);
    }

    /// Allocates an anonymous folio of `order` (zeroed content).
    pub(crate) fn alloc_anon_folio_order(&mut self, order: u8) -> Option<FolioId> {
        let pfn = self.buddy.alloc(order)?;
        // Anonymous only once mapped (folio_add_new_anon_rmap), as in the kernel.
        Some(self.folios.alloc(pfn, order, 0))
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
