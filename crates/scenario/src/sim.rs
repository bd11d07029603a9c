//! The model backend: runs resolved ops on a `thpsim_kernel::Kernel`.

use thpsim_kernel::errno::{Errno, OpError};
use thpsim_kernel::mmap::MapFlags;
use thpsim_kernel::page_alloc::MigrateType;
use thpsim_kernel::types::{AccessPattern, Pid};
use thpsim_kernel::userfaultfd::Mfill;
use thpsim_kernel::{Kernel, KernelConfig};

use crate::ast::Pattern;
use crate::backend::{
    object_key, Backend, BackendError, BackendOp, MappingObs, OpOutcome, Setup, Snapshot,
};
use crate::pattern::touch_offsets;
use std::collections::BTreeMap;

/// Where the model places the scenario arena (16 TiB; below the 47-bit user limit).
pub const MODEL_ARENA_BASE: u64 = 0x1000_0000_0000;

#[derive(Default)]
pub struct SimBackend {
    kernel: Option<Kernel>,
    /// The current process.
    pid: Pid,
    /// Engine process ids → pids (`None`: its fork failed, or it exited).
    pids: Vec<Option<Pid>>,
    /// Engine object ids → page-cache inodes (`memfd`, `gmem`); `None`: a `gmem` or hugetlbfs
    /// memfd whose creation failed (its descriptor is -1 on the host: ops on it are EBADF),
    /// and the placeholder of a hugetlbfs object (`hugetlb_objects`).
    objects: Vec<Option<thpsim_kernel::ids::InodeId>>,
    /// The hugetlbfs objects (`memfd … hugetlb`), by object id.
    hugetlb_objects: std::collections::BTreeMap<u32, thpsim_kernel::ids::HugetlbInodeId>,
    /// The process that made each object (the host's `fstat` looks at its fds).
    object_creator: Vec<Pid>,
    /// Engine tmpfs ids → tmpfs instances.
    mounts: Vec<thpsim_kernel::shmem::TmpfsId>,
    /// Processes the memcg OOM killer killed (already torn down).
    oom_killed: Vec<Pid>,
    /// Run the invariant checker after every op (tests).
    pub check_invariants: bool,
    /// Put the host backend's khugepaged sentinel mm on khugepaged's list before the
    /// scenario's first process (`thpsim check`, so both sides scan the same list).
    pub khugepaged_sentinel: bool,
    /// With the sentinel: the costs of the other processes' mms the host's khugepaged list
    /// held ahead of it, as the host backend measured them (`HostBackend::khugepaged_foreign`).
    pub khugepaged_foreign: Vec<u64>,
    /// The host's zswap was enabled at some point since boot, so its swap-in is order 0 only
    /// (`HostBackend::zswap_ever_enabled`, `thpsim check`).
    pub zswap_ever_enabled: bool,
    /// Host bytes the model may use; a scenario whose estimated need
    /// ([`crate::engine::TouchBound::model_bytes`]) is larger is refused before it runs.
    pub memory_budget: Option<u64>,
}

impl SimBackend {
    pub fn new() -> Self {
        Self::default()
    }
    /// A backend that checks the model's invariants after every op.
    pub fn checked() -> Self {
        SimBackend {
            check_invariants: true,
            ..Self::default()
        }
    }
    pub fn kernel(&self) -> Option<&Kernel> {
        self.kernel.as_ref()
    }

    /// The pid of a live engine process id, or an error (the engine checks names first).
    fn pid_of(&self, proc: u32, what: &str) -> Result<Pid, BackendError> {
        self.pids
            .get(proc as usize)
            .copied()
            .flatten()
            .ok_or_else(|| err(format!("{what}: process {proc} does not exist")))
    }

    fn k(&mut self) -> Result<&mut Kernel, BackendError> {
        self.kernel
            .as_mut()
            .ok_or_else(|| BackendError::failed("setup() was not called"))
    }
}

/// A refused sysfs write, as the parser words it.
fn knob_error(knob: &str, value: &str, e: &thpsim_kernel::sysfs::KnobError) -> String {
    use thpsim_kernel::sysfs::KnobError;
    match e {
        KnobError::Unknown { hint } => format!("unknown sysfs knob `{knob}` ({hint})"),
        KnobError::BadValue { expected } => {
            format!("bad value `{value}` for sysfs knob `{knob}`: it accepts {expected}")
        }
    }
}

/// A checkpoint while the current process is one the memcg OOM killer killed (both backends).
pub const OOM_OBSERVE: &str =
    "a checkpoint of a process the memcg OOM killer killed: switch to a live process (`as`) first";

fn err(message: String) -> BackendError {
    BackendError::Failed(message)
}

impl Backend for SimBackend {
    fn name(&self) -> String {
        "model".into()
    }

    fn check_plan(&mut self, plan: &crate::engine::Plan) -> Result<(), BackendError> {
        let (Some(budget), need) = (self.memory_budget, plan.touch.model_bytes()) else {
            return Ok(());
        };
        if need <= budget {
            return Ok(());
        }
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        Err(BackendError::NotRunnable(format!(
            "the model may need {:.1} GiB of memory for this scenario ({} pages resident \
                 at order 0 and {} page tables at most, with `memory` {:.0} GiB), more than the \
                 {:.1} GiB available; use a smaller `memory` or touch less",
            gib(need),
            plan.touch.pages,
            plan.touch.pte_tables,
            gib(plan.setup.memory),
            gib(budget)
        )))
    }

    fn setup(&mut self, setup: &Setup) -> Result<(), BackendError> {
        let mut profile = thpsim_kernel::profile::profile(&setup.profile).ok_or_else(|| {
            BackendError::not_runnable(format!("unknown kernel profile `{}`", setup.profile))
        })?;
        for (k, v) in &setup.switches {
            profile.switches.set(k, v).map_err(|e| err(e.to_string()))?;
        }
        let mut cfg = KernelConfig {
            memory: setup.memory,
            swap: setup.swap,
            swap_device: setup.swap_device,
            memcg: setup.memcg,
            zswap_ever_enabled: self.zswap_ever_enabled,
            profile,
            ..KernelConfig::default()
        };
        for (k, v) in &setup.sysfs {
            cfg.sysfs.set(k, v).map_err(|e| err(knob_error(k, v, &e)))?;
        }
        if MODEL_ARENA_BASE + setup.arena_len > thpsim_kernel::types::TASK_SIZE {
            return Err(BackendError::not_runnable(
                "the scenario's layout does not fit in the 47-bit address space",
            ));
        }
        let mut k = Kernel::new(cfg).map_err(|e| BackendError::NotRunnable(e.to_string()))?;
        if self.khugepaged_sentinel {
            k.add_khugepaged_sentinel(&self.khugepaged_foreign)
                .map_err(|e| {
                    BackendError::NotRunnable(format!(
                        "the host's khugepaged list cannot be mirrored: {e}"
                    ))
                })?;
        }
        self.pid = k.spawn();
        self.pids = vec![Some(self.pid)];
        self.objects.clear();
        self.object_creator.clear();
        self.hugetlb_objects.clear();
        self.mounts.clear();
        self.oom_killed.clear();
        self.kernel = Some(k);
        Ok(())
    }

    fn exec(&mut self, op: &BackendOp) -> Result<OpOutcome, BackendError> {
        let pid = self.pid;
        let check = self.check_invariants;
        // Process switches are bookkeeping of the backend, not kernel work.
        match op {
            BackendOp::Switch { proc } => {
                self.pid = self.pid_of(*proc, "as")?;
                return Ok(OpOutcome {
                    result: Ok(0),
                    minflt: 0,
                    majflt: 0,
                });
            }
            BackendOp::Fork { parent, child } => {
                let ppid = self.pid_of(*parent, "fork")?;
                let child = *child as usize;
                if child < self.pids.len() {
                    return Err(err(format!("fork: process id {child} is taken")));
                }
                let k = self.k()?;
                let r = k.fork(ppid);
                if check {
                    k.check_invariants()
                        .map_err(|e| err(format!("model invariant broken after {op:?}: {e}")))?;
                }
                self.pids.resize(child, None);
                return Ok(match r {
                    Ok(cpid) => {
                        self.pids.push(Some(cpid));
                        OpOutcome {
                            result: Ok(0),
                            minflt: 0,
                            majflt: 0,
                        }
                    }
                    Err(e) => {
                        self.pids.push(None);
                        OpOutcome {
                            result: Err(OpError::Errno(e)),
                            minflt: 0,
                            majflt: 0,
                        }
                    }
                });
            }
            BackendOp::Exit { proc } => {
                if *proc == 0 {
                    return Err(err("exit: `main` cannot exit".into()));
                }
                let target = self.pid_of(*proc, "exit")?;
                self.pids[*proc as usize] = None;
                if target == self.pid {
                    self.pid = self.pid_of(0, "exit")?;
                }
                let killed = self.oom_killed.contains(&target);
                let k = self.k()?;
                if !killed {
                    k.exit(target);
                }
                if check {
                    k.check_invariants()
                        .map_err(|e| err(format!("model invariant broken after {op:?}: {e}")))?;
                }
                return Ok(OpOutcome {
                    result: Ok(0),
                    minflt: 0,
                    majflt: 0,
                });
            }
            _ => {}
        }
        // Taken out while the kernel is borrowed; put back after the op.
        let mut objects = std::mem::take(&mut self.objects);
        let mut hugetlb_objects = std::mem::take(&mut self.hugetlb_objects);
        let mut mounts = std::mem::take(&mut self.mounts);
        let k = self.k()?;
        let before = *k
            .task(pid)
            .ok_or_else(|| err(format!("no task for pid {pid:?}")))?;
        let b = MODEL_ARENA_BASE;
        let result: Result<u64, OpError> = match op {
            BackendOp::MmapHugetlb {
                addr,
                len,
                prot,
                shared,
                populate,
                fixed,
                noreserve,
                file,
                hsize,
            } => {
                let flags = thpsim_kernel::hugetlb::HugetlbMapFlags {
                    shared: *shared,
                    populate: *populate,
                    noreserve: *noreserve,
                    fixed: *fixed,
                    size: *hsize,
                };
                let file = match file {
                    None => None,
                    Some((obj, off)) => Some((
                        *hugetlb_objects
                            .get(obj)
                            .ok_or_else(|| err(format!("mmap: no hugetlb object {obj}")))?,
                        *off,
                    )),
                };
                k.mmap_hugetlb(pid, b + addr, *len, *prot, flags, file)
                    .map(|a| a - b)
                    .map_err(OpError::Errno)
            }
            BackendOp::MemfdHugetlb { obj, size, hsize } => {
                if *obj as usize != objects.len() {
                    return Err(err(format!("memfd: object id {obj} out of order")));
                }
                match k.hugetlb_new_inode(*size, *hsize) {
                    Ok(ino) => {
                        hugetlb_objects.insert(*obj, ino);
                        objects.push(None);
                        Ok(0)
                    }
                    Err(e) => {
                        // The failed creation keeps its id, as a failed `gmem` does.
                        objects.push(None);
                        Err(OpError::Errno(e))
                    }
                }
            }
            BackendOp::Mmap {
                addr,
                len,
                prot,
                shared,
                populate,
                fixed,
                file,
            } => {
                let flags = MapFlags {
                    shared: *shared,
                    populate: *populate,
                    fixed: *fixed,
                };
                match file {
                    None => k.mmap(pid, b + addr, *len, *prot, flags),
                    Some((obj, off)) => {
                        match *objects
                            .get(*obj as usize)
                            .ok_or_else(|| err(format!("mmap: no object {obj}")))?
                        {
                            Some(ino) => {
                                k.mmap_shmem(pid, b + addr, *len, *prot, flags, (ino, *off))
                            }
                            None => Err(Errno::EBADF),
                        }
                    }
                }
                .map(|a| a - b)
                .map_err(OpError::Errno)
            }
            BackendOp::MemfdCreate { obj, size } => {
                if *obj as usize != objects.len() {
                    return Err(err(format!("memfd: object id {obj} out of order")));
                }
                objects.push(Some(k.shmem_new_inode(*size, None, false)));
                Ok(0)
            }
            BackendOp::GmemCreate { obj, size, flags } => {
                if *obj as usize != objects.len() {
                    return Err(err(format!("gmem: object id {obj} out of order")));
                }
                let r = k.kvm_gmem_create(*size, *flags);
                objects.push(r.ok());
                r.map(|_| 0).map_err(OpError::Errno)
            }
            BackendOp::Ftruncate { obj, size } if hugetlb_objects.contains_key(obj) => k
                .hugetlb_truncate(hugetlb_objects[obj], *size)
                .map(|()| 0)
                .map_err(OpError::Errno),
            BackendOp::TmpfsMount { mnt, huge, size } => {
                if *mnt as usize != mounts.len() {
                    return Err(err(format!("tmpfs: id {mnt} out of order")));
                }
                mounts.push(k.tmpfs_mount(*huge, *size));
                Ok(0)
            }
            BackendOp::FileCreate { obj, mnt, size } => {
                if *obj as usize != objects.len() {
                    return Err(err(format!("file: object id {obj} out of order")));
                }
                let m = *mounts
                    .get(*mnt as usize)
                    .ok_or_else(|| err(format!("file: no tmpfs {mnt}")))?;
                objects.push(Some(k.shmem_new_file(m, *size)));
                Ok(0)
            }
            BackendOp::MmapDevZero {
                addr,
                len,
                prot,
                shared,
                populate,
                fixed,
            } => {
                let flags = MapFlags {
                    shared: *shared,
                    populate: *populate,
                    fixed: *fixed,
                };
                k.mmap_dev_zero(pid, b + addr, *len, *prot, flags)
                    .map(|a| a - b)
                    .map_err(OpError::Errno)
            }
            BackendOp::DiskFileCreate { obj, size } => {
                if *obj as usize != objects.len() {
                    return Err(err(format!("file: object id {obj} out of order")));
                }
                objects.push(Some(k.disk_new_inode(*size)));
                Ok(0)
            }
            BackendOp::Msync { addr, len, flags } => k
                .msync(pid, b + addr, *len, *flags)
                .map(|()| 0)
                .map_err(OpError::Errno),
            BackendOp::Fsync { obj } => {
                match *objects
                    .get(*obj as usize)
                    .ok_or_else(|| err(format!("fsync: no object {obj}")))?
                {
                    Some(ino) => k.fsync(ino).map(|()| 0).map_err(OpError::Errno),
                    // hugetlbfs: nothing to write back (noop_fsync); a failed gmem: EBADF.
                    None if hugetlb_objects.contains_key(obj) => Ok(0),
                    None => Err(OpError::Errno(thpsim_kernel::errno::Errno::EBADF)),
                }
            }
            BackendOp::Ftruncate { obj, size } => {
                let ino = *objects
                    .get(*obj as usize)
                    .ok_or_else(|| err(format!("ftruncate: no object {obj}")))?;
                ino.ok_or(Errno::EBADF)
                    .and_then(|ino| k.file_truncate(ino, *size))
                    .map(|()| 0)
                    .map_err(OpError::Errno)
            }
            BackendOp::Fallocate {
                obj,
                offset,
                len,
                keep_size,
                punch_hole,
            } => {
                let mode = thpsim_kernel::shmem::FallocMode {
                    keep_size: *keep_size,
                    punch_hole: *punch_hole,
                };
                if let Some(&h) = hugetlb_objects.get(obj) {
                    k.hugetlb_fallocate(h, mode, *offset, *len)
                } else {
                    let ino = *objects
                        .get(*obj as usize)
                        .ok_or_else(|| err(format!("fallocate: no object {obj}")))?;
                    ino.ok_or(Errno::EBADF)
                        .and_then(|ino| k.file_fallocate(ino, mode, *offset, *len))
                }
                .map(|()| 0)
                .map_err(OpError::Errno)
            }
            BackendOp::Munmap { addr, len } => k
                .munmap(pid, b + addr, *len)
                .map(|_| 0)
                .map_err(OpError::Errno),
            BackendOp::Mprotect { addr, len, prot } => k
                .mprotect(pid, b + addr, *len, *prot)
                .map(|_| 0)
                .map_err(OpError::Errno),
            BackendOp::Madvise { addr, len, advice } => k
                .madvise(pid, b + addr, *len, *advice)
                .map(|_| 0)
                .map_err(OpError::Errno),
            BackendOp::Access {
                addr,
                len,
                stride,
                pattern,
                subset,
            } => {
                let seq = match pattern {
                    Pattern::Read => AccessPattern::Read,
                    Pattern::Write => AccessPattern::Write,
                    Pattern::ReadWrite => AccessPattern::ReadWrite,
                };
                let r = match subset {
                    // Sequential: the kernel's PMD-at-a-time fast path (same results).
                    None => k.access_seq(pid, b + addr, b + addr + len, *stride, seq),
                    // A random order: hits on huge PMDs batched per PMD (same results).
                    Some(_) => k.access_list(
                        pid,
                        (b + addr, b + addr + len),
                        touch_offsets(*len, *stride, *subset),
                        seq,
                    ),
                };
                r.map(|_| 0).map_err(OpError::Signal)
            }
            BackendOp::KhugepagedScan { passes } => {
                k.khugepaged_scan(*passes);
                Ok(0)
            }
            BackendOp::Sleep { ms } => {
                k.sleep_ms(*ms);
                Ok(0)
            }
            BackendOp::Mremap {
                old,
                len,
                new_len,
                new,
            } => k
                .mremap_resize(pid, b + old, *len, *new_len, new.map(|n| b + n))
                .map(|a| a - b)
                .map_err(OpError::Errno),
            BackendOp::Mlock { addr, len, lock } => if *lock {
                k.mlock(pid, b + addr, *len)
            } else {
                k.munlock(pid, b + addr, *len)
            }
            .map(|()| 0)
            .map_err(OpError::Errno),
            BackendOp::Uffd(u) => {
                use crate::backend::UffdReq;
                use thpsim_kernel::mm::vmf;
                let r = match u {
                    UffdReq::Open { features } => {
                        let mut f = thpsim_kernel::userfaultfd::Features::default();
                        for name in features {
                            f.set(name);
                        }
                        k.uffd_open(pid, f)
                    }
                    UffdReq::Register {
                        addr,
                        len,
                        missing,
                        wp,
                        minor,
                    } => {
                        let mode = if *missing { vmf::UFFD_MISSING } else { 0 }
                            | if *wp { vmf::UFFD_WP } else { 0 }
                            | if *minor { vmf::UFFD_MINOR } else { 0 };
                        k.uffd_register(pid, b + addr, *len, mode)
                    }
                    UffdReq::Unregister { addr, len } => k.uffd_unregister(pid, b + addr, *len),
                    UffdReq::Writeprotect {
                        addr,
                        len,
                        wp,
                        stride,
                    } => crate::backend::strided(*len, *stride, |off, n| {
                        k.uffd_writeprotect(pid, b + addr + off, n, *wp)
                    }),
                    UffdReq::Copy { addr, len, wp } => {
                        k.uffd_fill(pid, b + addr, *len, Mfill::Copy { wp: *wp })
                    }
                    UffdReq::Zeropage { addr, len } => {
                        k.uffd_fill(pid, b + addr, *len, Mfill::ZeroPage)
                    }
                    UffdReq::Continue { addr, len, wp } => {
                        k.uffd_continue(pid, b + addr, *len, *wp)
                    }
                    UffdReq::Handler { wp, missing, minor } => {
                        k.uffd_set_handler(pid, *wp, *missing, *minor)
                    }
                };
                r.map(|_| 0).map_err(OpError::Errno)
            }
            BackendOp::Shrink => {
                k.shrink();
                Ok(0)
            }
            BackendOp::Kalloc {
                size,
                order,
                reclaimable,
                scatter,
            } => {
                let mt = if *reclaimable {
                    MigrateType::Reclaimable
                } else {
                    MigrateType::Unmovable
                };
                Ok(k.kalloc(size / 4096, *order, mt, *scatter) * 4096)
            }
            BackendOp::Compact => {
                k.compact_memory();
                Ok(0)
            }
            BackendOp::Fork { .. } | BackendOp::Switch { .. } | BackendOp::Exit { .. } => {
                unreachable!("handled above")
            }
            BackendOp::PrctlSetThpDisable { disable, flags } => k
                .prctl_set_thp_disable(pid, *disable, *flags)
                .map(|_| 0)
                .map_err(OpError::Errno),
            BackendOp::Sysfs { knob, value } => {
                k.write_sysfs(knob, value)
                    .map_err(|e| err(knob_error(knob, value, &e)))?;
                Ok(0)
            }
        };
        self.objects = objects;
        self.object_creator.resize(self.objects.len(), pid);
        self.hugetlb_objects = hugetlb_objects;
        self.mounts = mounts;
        let k = self.k()?;
        if check {
            k.check_invariants()
                .map_err(|e| err(format!("model invariant broken after {op:?}: {e}")))?;
        }
        let after = *k
            .task(pid)
            .ok_or_else(|| err(format!("no task for pid {pid:?}")))?;
        if let Some(why) = k.take_unmodelled() {
            return Err(BackendError::not_runnable(why));
        }
        let mut result = result;
        let mut faults = (after.minflt - before.minflt, after.majflt - before.majflt);
        let victims = k.take_oom_victims();
        let main = self.pids.first().copied().flatten();
        for victim in victims {
            // The memcg OOM killer's SIGKILL: the task dies on its way back to user space
            // and its mm is torn down (exit_mmap, with the OOM reaper ahead of it).
            if victim != pid {
                return Err(BackendError::not_runnable(
                    "the memcg OOM killer chose a process other than the one charging (not modelled)",
                ));
            }
            if main == Some(victim) {
                return Err(BackendError::not_runnable(
                    "the memcg OOM killer killed `main`: let a forked process make the allocation that runs out",
                ));
            }
            self.k()?.exit(victim);
            self.oom_killed.push(victim);
            result = Err(OpError::Signal(thpsim_kernel::errno::Signal::Sigkill));
            // The killed worker cannot report its faults on the host: none are counted.
            faults = (0, 0);
        }
        Ok(OpOutcome {
            result,
            minflt: faults.0,
            majflt: faults.1,
        })
    }

    fn snapshot(&mut self, ranges: &[(u64, u64)]) -> Result<Snapshot, BackendError> {
        let pid = self.pid;
        if self.oom_killed.contains(&pid) {
            return Err(BackendError::not_runnable(OOM_OBSERVE));
        }
        let k = self.k()?;
        let counters = k.counters().into_iter().collect();
        let b = MODEL_ARENA_BASE;
        let mappings = ranges
            .iter()
            .map(|&(a, l)| MappingObs {
                // Whole VMAs, as the host's /proc/PID/smaps has them.
                smaps: k.smaps_vmas(pid, b + a, b + a + l),
                pages: k.page_map(pid, b + a, b + a + l),
            })
            .collect();
        let uffd_last = k.uffd_stats.last.map(|m| (m.flags, m.address - b));
        let mut counters: BTreeMap<String, i64> = counters;
        let k = self.kernel.as_ref().expect("checked above");
        for (i, (&ino, creator)) in self.objects.iter().zip(&self.object_creator).enumerate() {
            if !self.pids.contains(&Some(*creator)) {
                continue;
            }
            let obj = u32::try_from(i).expect("object count");
            let (blocks, size) = match (ino, self.hugetlb_objects.get(&obj)) {
                (_, Some(&h)) => k.hugetlb_object_stat(h),
                (Some(ino), None) => k.object_stat(ino),
                // A failed creation: descriptor -1 on the host, nothing to fstat.
                (None, None) => continue,
            };
            if let Some(blocks) = blocks {
                let blocks = i64::try_from(blocks).unwrap_or(i64::MAX);
                counters.insert(object_key(obj, "blocks"), blocks);
            }
            let size = i64::try_from(size).unwrap_or(i64::MAX);
            counters.insert(object_key(obj, "size"), size);
        }
        Ok(Snapshot {
            counters,
            mappings,
            uffd_last,
        })
    }
}
