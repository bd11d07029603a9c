//! The one interface both backends implement: the model (`sim`) and the real kernel
//! (`thpsim-host`). Operations arrive resolved to addresses relative to an arena the backend
//! places where it likes; observations come back in the shared schema.

use std::collections::BTreeMap;
use thpsim_kernel::errno::OpError;
use thpsim_kernel::hugetlb::HugePageSize;
use thpsim_kernel::observe::{PageMap, Smaps};
use thpsim_kernel::types::{Advice, Prot};

use crate::ast::{Pattern, Subset};

/// Everything a backend must know before the first op.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Setup {
    /// Kernel profile name (`6.18`, `6.12`).
    pub profile: String,
    /// Switch overrides, in order.
    pub switches: Vec<(String, String)>,
    /// Simulated physical memory in bytes.
    pub memory: u64,
    /// Bytes of swap (`swap SIZE`; 0: none). The host needs `--allow-swap` for it.
    pub swap: u64,
    /// The kind of the swap device (`swap SIZE type=…`).
    pub swap_device: thpsim_kernel::SwapDevice,
    /// The run's memory cgroup (`memcg` line); the host needs `--allow-memcg` for it.
    pub memcg: Option<thpsim_kernel::memcontrol::MemcgConfig>,
    /// sysfs knobs to apply before the first op, in order (scenario names, e.g.
    /// `hugepages-64kB.enabled`; see `thpsim_kernel::sysfs::knob_path`).
    pub sysfs: Vec<(String, String)>,
    /// Bytes of address space the scenario's layout needs, starting at the arena base
    /// (a multiple of 1 GiB). Every op address is an offset into this arena.
    pub arena_len: u64,
}

/// One operation, resolved. Addresses are offsets into the arena.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum BackendOp {
    /// mmap(2) at `addr`: MAP_FIXED_NOREPLACE (the engine guarantees the range is free), or
    /// with `fixed` MAP_FIXED over whatever is mapped there (`at=`; inside the arena).
    Mmap {
        addr: u64,
        len: u64,
        prot: Prot,
        shared: bool,
        populate: bool,
        fixed: bool,
        /// A shmem object (by the engine's id, in order of `memfd`) and the file offset in
        /// bytes; `None` for anonymous memory.
        file: Option<(u32, u64)>,
    },
    /// `memfd_create` + `ftruncate(size)`: object `obj` (ids count from 0 in creation
    /// order). Shared by every process.
    MemfdCreate {
        obj: u32,
        size: u64,
    },
    /// `KVM_CREATE_GUEST_MEMFD` (size, `GUEST_MEMFD_FLAG_*` flags) on the backend's VM:
    /// object `obj`, numbered with the `memfd` objects. A failed creation still takes the
    /// id; ops on it get EBADF.
    GmemCreate {
        obj: u32,
        size: u64,
        flags: u64,
    },
    /// mmap(2) of hugetlb memory (`MAP_HUGETLB` when `file` is `None`, else a hugetlbfs
    /// object made by `MemfdHugetlb`), at `addr` as for `Mmap` (`fixed`: MAP_FIXED).
    MmapHugetlb {
        addr: u64,
        len: u64,
        prot: Prot,
        shared: bool,
        populate: bool,
        fixed: bool,
        /// `MAP_NORESERVE`.
        noreserve: bool,
        file: Option<(u32, u64)>,
        /// `MAP_HUGE_2MB`/`MAP_HUGE_1GB` of a `MAP_HUGETLB` mapping (a file's mapping has
        /// its file's size and passes no size flag).
        hsize: HugePageSize,
    },
    /// `memfd_create(MFD_HUGETLB | MFD_HUGE_2MB or MFD_HUGE_1GB)` + `ftruncate(size)`:
    /// object `obj` (same id space as `MemfdCreate`).
    MemfdHugetlb {
        obj: u32,
        size: u64,
        hsize: HugePageSize,
    },
    /// `mount -t tmpfs -o huge=…[,size=…]`: tmpfs instance `mnt` (ids count from 0 in
    /// creation order), private to the run.
    TmpfsMount {
        mnt: u32,
        huge: thpsim_kernel::sysfs::ShmemHuge,
        size: Option<u64>,
    },
    /// `open(O_CREAT)` + `ftruncate(size)` of a new file on tmpfs instance `mnt`: object
    /// `obj` (the same id space as `MemfdCreate`). Shared by every process.
    FileCreate {
        obj: u32,
        mnt: u32,
        size: u64,
    },
    /// mmap(2) of `/dev/zero` at `addr` as for `Mmap` (`fixed`: MAP_FIXED): shared is
    /// `shmem_zero_setup` (as MAP_SHARED|MAP_ANONYMOUS), private an anonymous VMA.
    MmapDevZero {
        addr: u64,
        len: u64,
        prot: Prot,
        shared: bool,
        populate: bool,
        fixed: bool,
    },
    /// A regular file of `size` bytes on the disk filesystem (created, truncated, sized):
    /// object `obj`, numbered with the memfds.
    DiskFileCreate {
        obj: u32,
        size: u64,
    },
    /// msync(2) with the `MS_*` bits.
    Msync {
        addr: u64,
        len: u64,
        flags: u32,
    },
    /// fsync(2) of object `obj`.
    Fsync {
        obj: u32,
    },
    /// ftruncate(2) of object `obj`.
    Ftruncate {
        obj: u32,
        size: u64,
    },
    /// fallocate(2) of object `obj`.
    Fallocate {
        obj: u32,
        offset: u64,
        len: u64,
        keep_size: bool,
        punch_hole: bool,
    },
    Munmap {
        addr: u64,
        len: u64,
    },
    Mprotect {
        addr: u64,
        len: u64,
        prot: Prot,
    },
    Madvise {
        addr: u64,
        len: u64,
        advice: Advice,
    },
    /// Touch bytes of `[addr, addr+len)` at the offsets `crate::pattern::touch_offsets`
    /// yields for (`len`, `stride`, `subset`), each with `pattern`. Stops at the first access
    /// that raises a signal and reports it.
    Access {
        addr: u64,
        len: u64,
        stride: u64,
        pattern: Pattern,
        subset: Option<Subset>,
    },
    /// The current process `parent` forks a child that gets id `child` (ids are assigned by
    /// the engine: 0 is the first process, then in order of `fork`).
    Fork {
        parent: u32,
        child: u32,
    },
    /// Later ops (and observations) happen in process `proc`.
    Switch {
        proc: u32,
    },
    /// Process `proc` exits and its address space is torn down.
    Exit {
        proc: u32,
    },
    /// Run `passes` khugepaged passes (`khugepaged_do_scan`).
    KhugepagedScan {
        passes: u32,
    },
    /// Advance time by `ms` milliseconds; background daemons run on their schedule.
    Sleep {
        ms: u64,
    },
    /// Run the deferred-split and huge-zero shrinkers.
    Shrink,
    /// Unmovable background allocations (`Kernel::kalloc`); returns the bytes allocated.
    Kalloc {
        size: u64,
        order: u8,
        reclaimable: bool,
        scatter: u64,
    },
    /// Compact all memory (`/proc/sys/vm/compact_memory`).
    Compact,
    /// `mremap(old, len, new_len, MREMAP_MAYMOVE | MREMAP_FIXED, new)` with `new`, else
    /// `mremap(old, len, new_len, 0)`; returns the resulting address.
    Mremap {
        old: u64,
        len: u64,
        new_len: u64,
        new: Option<u64>,
    },
    /// mlock(2) (`lock`) or munlock(2).
    Mlock {
        addr: u64,
        len: u64,
        lock: bool,
    },
    /// A userfaultfd operation of the current process (ranges resolved to arena offsets).
    Uffd(UffdReq),
    /// `prctl(PR_SET_THP_DISABLE, disable, flags)` with `flags` 0 or
    /// `PR_THP_DISABLE_EXCEPT_ADVISED` (1 << 1).
    PrctlSetThpDisable {
        disable: bool,
        flags: u64,
    },
    /// A sysfs write in the middle of a scenario.
    Sysfs {
        knob: String,
        value: String,
    },
}

/// The result of one op: return value (0 for success of most calls) or error, and the
/// calling task's fault deltas over exactly this op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct OpOutcome {
    pub result: Result<u64, OpError>,
    pub minflt: u64,
    pub majflt: u64,
}

/// Observations of one mapping (its original range, whatever VMAs now make it up).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MappingObs {
    pub smaps: Smaps,
    pub pages: PageMap,
}

/// Absolute counter values and per-mapping state at one instant.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    /// Keys as in `thpsim_kernel::vmstat::VmStat::named`: `vmstat.<name>`,
    /// `mthp.<size>kB.<stat>`, `khugepaged.<stat>`; and per shmem object (by id)
    /// `obj.<id>.blocks` (`st_blocks`) and `obj.<id>.size` (`st_size`), see [`object_key`].
    /// A backend that cannot read a key omits it.
    pub counters: BTreeMap<String, i64>,
    /// One entry per requested range, in request order.
    pub mappings: Vec<MappingObs>,
    /// The last userfaultfd message (flags, arena offset of its address), all processes.
    pub uffd_last: Option<(u32, u64)>,
}

/// The counter key of a shmem object's `fstat` field (`blocks` or `size`).
pub fn object_key(obj: u32, field: &str) -> String {
    format!("obj.{obj}.{field}")
}

/// The `obj(NAME).<field>` fields: `st_blocks` and `st_size`.
pub const OBJECT_FIELDS: &[&str] = &["blocks", "size"];

/// Why a run did not complete.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The scenario's setup cannot be resolved (unknown profile, bad switch): no backend
    /// can run it.
    #[error(transparent)]
    Plan(#[from] crate::engine::PlanError),
    /// The scenario cannot run on this backend at all (e.g. host settings differ and sysfs
    /// writes are not allowed, or it needs more memory than there is).
    #[error("{0}")]
    NotRunnable(String),
    /// A failure while running (a scenario error at file:line:col, a dead worker, a
    /// violated invariant).
    #[error("{0}")]
    Failed(String),
}

impl BackendError {
    pub fn failed(message: impl Into<String>) -> Self {
        BackendError::Failed(message.into())
    }
    pub fn not_runnable(message: impl Into<String>) -> Self {
        BackendError::NotRunnable(message.into())
    }
    /// The scenario cannot run on this backend (as opposed to a failure while running).
    pub fn is_not_runnable(&self) -> bool {
        !matches!(self, BackendError::Failed(_))
    }
    /// The message, without the kind.
    pub fn message(&self) -> String {
        self.to_string()
    }
}

pub trait Backend {
    /// `model` or `host`, used in reports.
    fn name(&self) -> String;
    /// Refuses a scenario the backend cannot run (e.g. what it can fault in does not fit in
    /// the memory available); called once, before `setup`.
    fn check_plan(&mut self, _plan: &crate::engine::Plan) -> Result<(), BackendError> {
        Ok(())
    }
    /// Applies the setup; called once, before any op.
    fn setup(&mut self, setup: &Setup) -> Result<(), BackendError>;
    /// Runs one op.
    fn exec(&mut self, op: &BackendOp) -> Result<OpOutcome, BackendError>;
    /// Observes the counters and the given `(addr, len)` ranges (arena offsets).
    fn snapshot(&mut self, ranges: &[(u64, u64)]) -> Result<Snapshot, BackendError>;
    /// Ends the run (the host restores every knob here); called on every path.
    fn finish(&mut self) -> Result<(), BackendError> {
        Ok(())
    }
}

/// Runs `f(offset, len)` over `[0, len)` in address order: once when `stride` is 0, otherwise
/// once per `stride` bytes (the last call shorter); stops at the first error. Both backends
/// use it for strided `uffd wp`/`unwp`.
pub fn strided<T, E>(
    len: u64,
    stride: u64,
    mut f: impl FnMut(u64, u64) -> Result<T, E>,
) -> Result<(), E> {
    if stride == 0 || len == 0 {
        return f(0, len).map(|_| ());
    }
    let mut off = 0;
    while off < len {
        let n = stride.min(len - off);
        f(off, n)?;
        off += n;
    }
    Ok(())
}

/// A resolved userfaultfd operation (see `crate::ast::UffdOp`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum UffdReq {
    Open {
        features: Vec<String>,
    },
    Register {
        addr: u64,
        len: u64,
        missing: bool,
        wp: bool,
        minor: bool,
    },
    Unregister {
        addr: u64,
        len: u64,
    },
    /// `stride` > 0: one UFFDIO_WRITEPROTECT per `stride` bytes, in address order, stopping
    /// at the first error; 0: one over `[addr, addr+len)`.
    Writeprotect {
        addr: u64,
        len: u64,
        wp: bool,
        stride: u64,
    },
    Copy {
        addr: u64,
        len: u64,
        wp: bool,
    },
    Zeropage {
        addr: u64,
        len: u64,
    },
    Continue {
        addr: u64,
        len: u64,
        wp: bool,
    },
    Handler {
        wp: Option<thpsim_kernel::userfaultfd::WpPolicy>,
        missing: Option<thpsim_kernel::userfaultfd::MissingPolicy>,
        minor: Option<thpsim_kernel::userfaultfd::MinorPolicy>,
    },
}
