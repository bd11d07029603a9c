//! thpsim-host: runs scenario operations on the real Linux kernel and observes the result in
//! the schema the model uses (ARCHITECTURE.md, "Observation schema"). Linux x86-64 only; needs root (PFNs in
//! pagemap, /proc/kpageflags, sysfs writes).
//!
//! * A **worker child** (`fork`ed at [`Backend::setup`]) is the task whose faults are measured;
//!   see [`child`] for how its arena is placed and why its measured windows contain only the
//!   scenario's faults. Each op is one request over the worker's socket; the child measures
//!   `getrusage(RUSAGE_SELF)` right around the syscall or the access loop.
//! * **Processes**: scenario process *i* is worker *i*. `fork` makes the current worker
//!   `clone(CLONE_PARENT)` itself (a real fork; the new worker is our child and gets a fresh
//!   socket passed with the request), `as` switches the worker that ops and observations go
//!   to, `exit` ends and reaps a worker (its mm is gone when the op returns).
//! * **`khugepaged scan N`** (with `allow_sysfs`): N single passes of the controlled thread,
//!   each triggered by rewriting `scan_sleep_millisecs` and awaited via its idle kernel stack
//!   frame (see [`khugepaged::run_passes`]). `sleep` and `shrink` are not runnable.
//! * **userfaultfd** (see [`uffd`]): the worker opens the uffd and passes it to us; we issue
//!   the range ioctls and act as the monitor, resolving fault messages per the policy while
//!   we wait for the worker's response. A SIGBUS (`UFFD_FEATURE_SIGBUS`) is caught in the
//!   worker, which skips the access and reports it.
//! * **mlock/munlock and mremap** run in the worker on arena addresses: mlock's population
//!   faults are measured like an access's; mremap (`MREMAP_MAYMOVE | MREMAP_FIXED`, same size)
//!   takes none and answers the new arena offset.
//! * **Accesses that would raise SIGSEGV** are never performed: before an access op the parent
//!   reads the child's `/proc/PID/maps`, finds the first touched offset that has no VMA or
//!   lacks the needed protection (x86: any of r/w/x allows reads unless the CPU has
//!   protection keys, which make exec-only mappings unreadable; writes need w), has the child
//!   do the accesses before it (and, for read-then-write, the read that succeeds) and reports
//!   `Err(Signal(Sigsegv))` with the faults of what was done — which is what the kernel
//!   counts, since an access error is raised before `handle_mm_fault`.
//! * **Observation** is done by the parent from `/proc/PID/{smaps,pagemap}`, `/proc/kpageflags`,
//!   `/proc/vmstat` and sysfs while the child is blocked on its pipe (see [`observe`]).
//! * **sysfs**: with `allow_sysfs` every knob the model knows is pinned to the scenario's
//!   starting value and restored on every exit path; without it differences are reported
//!   (see [`knob_diffs`], [`sysfs`]). One host run at a time holds the run lock
//!   ([`sysfs::KnobLock`]).
//! * **khugepaged** is kept asleep during the run with `allow_sysfs` (see [`khugepaged`]);
//!   without it [`HostBackend::warnings`] says so.

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod child;
pub mod diskfile;
pub mod estimate;
pub mod guest_memfd;
pub mod import;
pub mod inventory;
pub mod khugepaged;
pub mod memcg;
pub mod observe;
pub mod proto;
pub mod swap;
pub mod sys;
pub mod sysfs;
pub mod tmpfs;
pub mod uffd;

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;

use thpsim_kernel::errno::{Errno, OpError, Signal};
use thpsim_kernel::sysfs::{knob_path, knobs, Sysfs};
use thpsim_scenario::ast::Pattern;
use thpsim_scenario::backend::{
    object_key, Backend, BackendError, BackendOp, MappingObs, OpOutcome, Setup, Snapshot, UffdReq,
};
use thpsim_scenario::pattern::touch_offsets;

use crate::proto::{RecvError, Request, Response, Status};
use crate::sys::PAGE;

/// Options of the host backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostOptions {
    /// Allow writing THP sysfs knobs (restored afterwards): every knob the model knows is
    /// pinned to the scenario's starting value. Without it a scenario whose `sysfs` lines
    /// differ from the host is not runnable, other differing knobs are reported, and
    /// khugepaged is not controlled.
    pub allow_sysfs: bool,
    /// Refuse instead of waiting when another host run holds the run lock
    /// ([`sysfs::KnobLock`]).
    pub no_wait: bool,
    /// Allow a scenario's `swap SIZE` line to set up zram0 as the machine's swap for the run
    /// (torn down afterwards, see [`swap`]). Without it such a scenario is not runnable.
    pub allow_swap: bool,
    /// Allow a scenario's `memcg` line to make a memory cgroup for the run's processes
    /// (removed afterwards, see [`memcg`]). Without it such a scenario is not runnable.
    pub allow_memcg: bool,
}

/// A THP knob whose host value differs from the scenario's starting value (the model's
/// default, or the scenario's `sysfs` line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnobDiff {
    /// Scenario name (`hugepages-64kB.enabled`).
    pub name: String,
    /// File relative to the THP directory.
    pub rel: String,
    pub host: String,
    pub scenario: String,
    /// Set by a `sysfs` line (else the model's default).
    pub explicit: bool,
}

/// The host's current value of every THP knob the model knows (scenario names, in
/// `knobs()` order); knobs this kernel does not have are left out.
pub fn host_knobs() -> Vec<(String, String)> {
    knobs()
        .into_iter()
        .filter_map(|k| sysfs::read_knob(&k.path).ok().map(|v| (k.name, v)))
        .collect()
}

/// Every knob the model knows whose host value differs from the starting value of a
/// scenario with these `sysfs` lines (the model's defaults, `Sysfs::default()`, plus the
/// lines). `Err` for a knob the scenario sets that the host does not have, or that the model
/// does not accept. A knob the host does not have and the scenario leaves at its default
/// (e.g. `anon_beside_full` on a mainline kernel) is not a difference.
pub fn knob_diffs(setup_sysfs: &[(String, String)]) -> Result<Vec<KnobDiff>, String> {
    let mut want = Sysfs::default();
    for (name, val) in setup_sysfs {
        want.set(name, val)
            .map_err(|e| format!("sysfs {name}={val}: {e:?}"))?;
    }
    let mut diffs = Vec::new();
    for k in knobs() {
        let Some(w) = want.get(&k.name) else { continue };
        let explicit = setup_sysfs.iter().any(|(n, _)| *n == k.name);
        match sysfs::read_knob(&k.path) {
            Ok(cur) if cur != w => diffs.push(KnobDiff {
                name: k.name,
                rel: k.path,
                host: cur,
                scenario: w,
                explicit,
            }),
            Ok(_) => {}
            Err(e) if explicit || Sysfs::default().get(&k.name).as_deref() != Some(w.as_str()) => {
                return Err(format!(
                    "host has no sysfs knob {} ({}): {e}",
                    k.name,
                    sysfs::knob_file(&k.path).display()
                ))
            }
            Err(_) => {}
        }
    }
    Ok(diffs)
}

/// One scenario process: a worker child and the parent's end of its socket.
struct Worker {
    pid: i32,
    chan: OwnedFd,
    observer: observe::Observer,
    /// Slot in `sysfs::CHILD_PIDS`.
    slot: Option<usize>,
    /// The process's userfaultfd (held by us; the worker has no copy) and monitor policy.
    uffd: Option<uffd::Uffd>,
    /// The worker's `/dev/zero` descriptor, opened at its first mapping of it or inherited
    /// at fork (a process forked before the open has none: descriptors are per process).
    dev_zero: Option<i32>,
}

impl Worker {
    /// Ends the worker (`Exit`, then SIGKILL if it does not go) and reaps it: when this
    /// returns its mm has been torn down (`exit_mm` runs before the task becomes a zombie).
    fn stop(mut self) -> Option<String> {
        // Release the uffd first: nothing can stay blocked on it.
        self.uffd = None;
        let ok = proto::send_request(self.chan.as_fd(), &Request::Exit, None).is_ok();
        drop(self.chan);
        if !ok {
            sys::kill(self.pid, libc::SIGKILL);
        }
        let note = match sys::waitpid(self.pid) {
            Some(st) if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0 => None,
            Some(st) => Some(format!(
                "worker child {} {}",
                self.pid,
                sys::describe_status(st)
            )),
            None => None,
        };
        sysfs::unregister_child(self.slot);
        note
    }
}

/// The host backend (see the crate doc).
pub struct HostBackend {
    opts: HostOptions,
    khugepaged_control: bool,
    /// Scenario processes by engine id (0 = `main`, then in order of `fork`); `None` once
    /// exited (or when its fork failed).
    workers: Vec<Option<Worker>>,
    /// The current process (ops and observations go to it).
    current: usize,
    /// Arena base (the same in every process: forks copy the address space) and length.
    base: u64,
    arena_len: u64,
    /// Top kernel stack frame of khugepaged when it sleeps between passes (see
    /// [`khugepaged::run_passes`]), learned at setup; or why `khugepaged scan` cannot run.
    khugepaged_idle: Result<String, String>,
    /// Costs of the other processes' mms ahead of the sentinel on khugepaged's list
    /// ([`khugepaged::foreign_mms`]), for the model to mirror.
    khugepaged_foreign: Vec<u64>,
    /// Whether zswap was ever enabled since boot, as measured at swap setup
    /// ([`swap::large_swapin_works`]), for the model to mirror; None if not measured.
    zswap_ever_enabled: Option<bool>,
    sentinel: Option<khugepaged::Sentinel>,
    session: sysfs::Session,
    warnings: Vec<String>,
    pku: bool,
    /// userfaultfd messages of this run, all processes.
    uffd_stats: uffd::Stats,
    /// The scenario's objects: descriptor numbers in the workers (the process that made one
    /// holds it, and its later forks inherit the same number; -1: a failed creation).
    objects: Vec<i32>,
    /// The engine process that made each object: its fds are where `fstat` looks.
    object_creator: Vec<usize>,
    /// The objects that are disk files: their `st_blocks` (ext4's extents and delayed
    /// allocation) is not compared, as the model does not keep it.
    disk_objects: std::collections::BTreeSet<usize>,
    /// The scenario's tmpfs instances: mount descriptors in the workers (`tmpfs.rs`).
    mounts: Vec<i32>,
    /// The private directory of the run's disk files (made by the first `file … on=disk`).
    disk_dir: Option<diskfile::RunDir>,
    /// The run lock, held from setup to the end of finish.
    lock: Option<sysfs::KnobLock>,
    /// The thpsim process's own `PR_GET_THP_DISABLE` before setup: while a run is set up the
    /// runner itself takes no THPs, so that with `enabled=always` its own allocations cannot
    /// move the system-wide THP counters the scenario is measured by. Restored at finish.
    own_thp_disable: Option<i32>,
    /// The run's memory cgroup (`memcg` line), made at setup.
    memcg: Option<std::path::PathBuf>,
    /// The current worker was found killed by SIGKILL in a memcg run: the memcg OOM killer.
    oom_killed: bool,
    /// Engine processes the memcg OOM killer killed (their workers reaped).
    oom_killed_procs: Vec<usize>,
    /// `memory.oom_control` `oom_kill` when the last OOM kill was taken for an op's SIGKILL.
    oom_kills_seen: i64,
}

fn err(msg: impl Into<String>) -> BackendError {
    BackendError::failed(msg)
}
fn not_runnable(msg: impl Into<String>) -> BackendError {
    BackendError::not_runnable(msg)
}

/// Kernel profile name of the running kernel: `major.minor` of the uname release.
pub fn host_kernel_profile() -> String {
    let rel = sys::uname_release();
    let mut it = rel.split(|c: char| !c.is_ascii_digit());
    match (it.next(), it.next()) {
        (Some(a), Some(b)) if !a.is_empty() && !b.is_empty() => format!("{a}.{b}"),
        _ => rel,
    }
}

/// Checks that this host can run the backend; the message lists everything missing. Also
/// restores sysfs knobs left changed by a run that was killed (see [`sysfs::recover_journal`])
/// when no other run holds the lock, and says so on stderr.
/// The lock the host tests of every crate share (`/tmp/thpsim-host-tests.lock`, flock
/// exclusive, held while the returned file lives), so tests that read global counters or
/// write sysfs never overlap across test processes.
pub fn host_tests_lock() -> std::fs::File {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::options()
        .create(true)
        .append(true)
        .open("/tmp/thpsim-host-tests.lock")
        .expect("lock file");
    // SAFETY: flock on a valid descriptor we own; blocks until the lock is ours.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(r, 0, "flock");
    f
}

pub fn preflight() -> Result<(), String> {
    let mut missing = Vec::new();
    if !cfg!(target_os = "linux") || !cfg!(target_arch = "x86_64") {
        missing.push("Linux on x86-64".to_string());
    }
    if !sys::is_root() {
        missing.push("root (PFNs in /proc/PID/pagemap, /proc/kpageflags, sysfs)".to_string());
    }
    let readable = |p: &str| -> Result<(), String> {
        use std::io::Read;
        let mut b = [0u8; 8];
        std::fs::File::open(p)
            .and_then(|mut f| f.read_exact(&mut b))
            .map_err(|e| format!("{p} readable ({e})"))
    };
    if let Err(e) = readable("/proc/self/pagemap") {
        missing.push(e);
    }
    if let Err(e) = readable("/proc/kpageflags") {
        missing.push(e);
    }
    if let Err(e) = observe::pagemap_scan_available() {
        missing.push(e);
    }
    if !std::path::Path::new(&format!("{}/enabled", sysfs::THP_DIR)).exists() {
        missing.push(format!(
            "THP sysfs ({}; CONFIG_TRANSPARENT_HUGEPAGE)",
            sysfs::THP_DIR
        ));
    }
    if missing.is_empty() {
        // A journal that cannot be trusted (or a live run's) is said, not fatal here: a run
        // that changes knobs refuses it at setup, under the run lock.
        if let Err(e) = sysfs::recover_journal() {
            eprintln!("thpsim: {e}");
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "host backend unavailable; missing: {}",
            missing.join("; ")
        ))
    }
}

/// The PMD size's `enabled` file.
const PMD_SIZE_KNOB: &str = "hugepages-2048kB/enabled";

/// The effective PMD-size policy: `always`, `madvise` or `never` (`inherit` resolved).
fn pmd_thp_policy() -> String {
    let top = sysfs::read_knob("enabled").unwrap_or_default();
    let pmd = sysfs::read_knob("hugepages-2048kB/enabled").unwrap_or_else(|_| "inherit".into());
    if pmd == "inherit" {
        top
    } else {
        pmd
    }
}

/// Whether PMD-sized anonymous THP is enabled in some mode (`always` or `madvise`, `inherit`
/// resolved): what the sentinel's registration needs.
fn pmd_thp_enabled() -> bool {
    matches!(pmd_thp_policy().as_str(), "always" | "madvise")
}

/// `hugepage_pmd_enabled()` of the host's knobs (`Sysfs::hugepage_pmd_enabled`, the rule the
/// model applies): whether the khugepaged thread runs, anonymous or shmem PMD size enabled.
fn hugepage_pmd_enabled() -> bool {
    let mut s = Sysfs::default();
    for (name, value) in host_knobs() {
        // A value the model does not accept is for a knob the rule does not read.
        let _ = s.set(&name, &value);
    }
    s.hugepage_pmd_enabled()
}

fn cpu_has_pku() -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "ospke"))
        })
        .unwrap_or(false)
}

impl HostBackend {
    pub fn new(opts: HostOptions) -> Self {
        let mut warnings = Vec::new();
        match sysfs::recover_journal() {
            Ok(Some(note)) => warnings.push(note),
            Ok(None) => {}
            Err(e) => warnings.push(e),
        }
        HostBackend {
            opts,
            khugepaged_control: true,
            workers: Vec::new(),
            current: 0,
            base: 0,
            arena_len: 0,
            khugepaged_idle: Err(
                "khugepaged scan needs --allow-sysfs (khugepaged is not controlled)".into(),
            ),
            khugepaged_foreign: Vec::new(),
            zswap_ever_enabled: None,
            sentinel: None,
            session: sysfs::Session::new(),
            warnings,
            pku: cpu_has_pku(),
            uffd_stats: uffd::Stats::default(),
            objects: Vec::new(),
            object_creator: Vec::new(),
            disk_objects: Default::default(),
            mounts: Vec::new(),
            disk_dir: None,
            own_thp_disable: None,
            memcg: None,
            oom_killed: false,
            oom_killed_procs: Vec::new(),
            oom_kills_seen: 0,
            lock: None,
        }
    }

    /// Turns the khugepaged control off (for experiments showing what it prevents). Must be
    /// called before `setup`.
    pub fn set_khugepaged_control(&mut self, on: bool) {
        self.khugepaged_control = on;
    }

    /// Caveats of this run (khugepaged not controlled, journal recovered, …).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The costs (in `pages_to_scan` units per visit, list order) of the other processes'
    /// mms that khugepaged's list held ahead of the sentinel when the run started: empty on
    /// a quiet machine. The model mirrors them (`Kernel::add_khugepaged_sentinel`).
    /// Whether this host's swap-in is order 0 only (zswap was enabled at some point since
    /// boot), measured when a scenario's swap was set up with `allow_sysfs`.
    pub fn zswap_ever_enabled(&self) -> Option<bool> {
        self.zswap_ever_enabled
    }

    pub fn khugepaged_foreign(&self) -> &[u64] {
        &self.khugepaged_foreign
    }

    /// Pid of the current worker child (the measured task), once set up.
    pub fn worker_pid(&self) -> Option<i32> {
        self.worker().ok().map(|w| w.pid)
    }

    /// Pid of scenario process `proc` (engine id: 0 = `main`), while it is alive.
    pub fn process_pid(&self, proc: u32) -> Option<i32> {
        self.workers
            .get(proc as usize)
            .and_then(|w| w.as_ref())
            .map(|w| w.pid)
    }

    /// Absolute address of the arena base in the workers, once set up.
    pub fn arena_base(&self) -> Option<u64> {
        self.workers
            .first()
            .and_then(|w| w.as_ref())
            .map(|_| self.base)
    }

    fn push_object(&mut self, fd: i32) {
        self.objects.push(fd);
        self.object_creator.push(self.current);
    }

    /// Object ids are dense and in creation order (the model's numbering): `obj` must be
    /// the next one.
    fn check_next_object(&self, what: &str, obj: u32) -> Result<(), BackendError> {
        if obj as usize == self.objects.len() {
            Ok(())
        } else {
            Err(err(format!("{what}: object id {obj} out of order")))
        }
    }

    /// The answer to a request that creates an object the scenario then names (memfd, tmpfs
    /// file, disk file): its descriptor becomes object `self.objects.len()`. A failed
    /// creation is a backend error (the run cannot go on as written), not an errno the
    /// scenario sees; guest_memfd's differs (a failed creation keeps its id).
    fn created_object(&mut self, what: &str, r: Response) -> Result<OpOutcome, BackendError> {
        match r.status {
            Status::Ok(fd) => {
                let fd = i32::try_from(fd).map_err(|_| err(format!("{what}: bad descriptor")))?;
                self.push_object(fd);
                Ok(Self::outcome(r, Some(0)))
            }
            _ => Err(err(format!("{what} failed: {:?}", r.status))),
        }
    }

    fn worker(&self) -> Result<&Worker, BackendError> {
        match self.workers.get(self.current) {
            Some(Some(w)) => Ok(w),
            Some(None) => Err(err(format!(
                "host backend: process {} is not alive",
                self.current
            ))),
            None => Err(err("host backend: op before setup")),
        }
    }

    /// Waits for a worker's ready message on `chan` and opens its observer.
    fn adopt_worker(&mut self, pid: i32, chan: OwnedFd) -> Result<(Worker, u64), BackendError> {
        let ready = proto::recv_response(chan.as_fd());
        // Ends the worker: it exits at EOF on its channel, or is killed.
        let fail = |chan: OwnedFd, m: String| {
            drop(chan);
            sys::kill(pid, libc::SIGKILL);
            sys::waitpid(pid);
            err(m)
        };
        let base = match ready {
            Ok((
                Response {
                    status: Status::Ok(base),
                    ..
                },
                _,
            )) => base,
            Ok((
                Response {
                    status: Status::Errno(e),
                    ..
                },
                _,
            )) => {
                return Err(fail(
                    chan,
                    format!(
                        "worker child could not reserve a {}-byte arena: {}",
                        self.arena_len,
                        Errno(e)
                    ),
                ))
            }
            Ok((r, _)) => {
                return Err(fail(
                    chan,
                    format!("worker child {pid} answered start-up with {:?}", r.status),
                ))
            }
            Err(RecvError::Proto(e)) => {
                return Err(fail(
                    chan,
                    format!("worker child {pid} sent a malformed ready message: {e}"),
                ))
            }
            Err(_) => {
                return Err(fail(
                    chan,
                    format!("worker child {pid} died during start-up"),
                ))
            }
        };
        let observer = match observe::Observer::new(pid) {
            Ok(o) => o,
            Err(e) => {
                return Err(fail(
                    chan,
                    format!("cannot open /proc/{pid}/pagemap or /proc/kpageflags: {e}"),
                ))
            }
        };
        let slot = sysfs::register_child(pid);
        Ok((
            Worker {
                pid,
                chan,
                observer,
                slot,
                uffd: None,
                dev_zero: None,
            },
            base,
        ))
    }

    fn spawn_worker(&mut self, arena_len: u64) -> Result<(), BackendError> {
        let (mine, theirs) =
            sys::socketpair_seqpacket().map_err(|e| err(format!("socketpair: {e}")))?;
        let me = std::process::id() as i32;
        // SAFETY: fork; the child only runs allocation-free code (`child_main`) and `_exit`s,
        // so it is sound even if this process has other threads.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            // Both ends are closed when dropped.
            return Err(err(format!("fork: {}", std::io::Error::last_os_error())));
        }
        if pid == 0 {
            sysfs::IN_FORKED_CHILD.store(true, Ordering::SeqCst);
            child::child_main(theirs, arena_len, me);
        }
        // The worker's end: only the worker holds it now.
        drop(theirs);
        self.arena_len = arena_len;
        let (w, base) = self.adopt_worker(pid, mine)?;
        self.base = base;
        self.workers = vec![Some(w)];
        self.oom_killed_procs.clear();
        self.oom_kills_seen = 0;
        self.current = 0;
        self.objects.clear();
        self.object_creator.clear();
        self.disk_objects.clear();
        self.mounts.clear();
        Ok(())
    }

    /// `fork` of the current worker: a fresh socket pair, the worker's end passed with the
    /// request; the parent worker answers with the child's pid, the child with its ready
    /// message on the new socket.
    fn fork_worker(&mut self, parent: u32, child: u32) -> Result<OpOutcome, BackendError> {
        if parent as usize != self.current {
            return Err(err(format!(
                "fork: process {parent} is not the current process {} (engine bug)",
                self.current
            )));
        }
        if child as usize != self.workers.len() {
            return Err(err(format!(
                "fork: new process id {child}, expected {} (engine bug)",
                self.workers.len()
            )));
        }
        if self
            .worker()?
            .uffd
            .as_ref()
            .is_some_and(|u| u.features & uffd::UFFD_FEATURE_EVENT_FORK != 0)
        {
            return Err(not_runnable(
                "fork of a process whose userfaultfd has UFFD_FEATURE_EVENT_FORK: the child would \
                 keep its registrations and the monitor would get a UFFD_EVENT_FORK with a new \
                 uffd, which the model does not model",
            ));
        }
        let (mine, theirs) =
            sys::socketpair_seqpacket().map_err(|e| err(format!("socketpair: {e}")))?;
        let pw_chan = self.worker()?.chan.as_fd();
        let sent = proto::send_request(pw_chan, &Request::Fork, Some(theirs.as_fd()));
        // The new worker's end goes with the message; ours is closed now.
        drop(theirs);
        let resp = sent
            .map_err(RecvError::Io)
            .and_then(|()| proto::recv_response(pw_chan));
        let pid = match resp {
            Ok((
                Response {
                    status: Status::Ok(pid),
                    ..
                },
                _,
            )) => pid as i32,
            Ok((
                Response {
                    status: Status::Errno(e),
                    ..
                },
                _,
            )) => {
                self.workers.push(None);
                return Ok(OpOutcome {
                    result: Err(OpError::Errno(Errno(e))),
                    minflt: 0,
                    majflt: 0,
                });
            }
            Ok((r, _)) => return Err(err(format!("fork: unexpected response {r:?}"))),
            Err(e) => return Err(self.recv_failed(e)),
        };
        let inherited = self.worker()?.dev_zero;
        let (mut w, base) = self.adopt_worker(pid, mine)?;
        w.dev_zero = inherited;
        if base != self.base {
            let pid = w.pid;
            w.stop();
            return Err(err(format!(
                "forked worker {pid} reports arena base {base:#x}, parent has {:#x}",
                self.base
            )));
        }
        self.workers.push(Some(w));
        // fork(2) takes no faults (dup_mmap does not fault; conformance 116-122 measure it); see
        // `child` for why the worker does not measure it.
        Ok(OpOutcome {
            result: Ok(0),
            minflt: 0,
            majflt: 0,
        })
    }

    /// `exit` of process `proc`: the worker exits and is reaped before this returns, so its
    /// mm is gone at the next observation. If it was current, `main` becomes current.
    fn exit_worker(&mut self, proc: u32) -> Result<OpOutcome, BackendError> {
        if proc == 0 {
            return Err(err("exit: `main` cannot exit (engine bug)"));
        }
        if self.oom_killed_procs.contains(&(proc as usize)) {
            // Already dead and reaped: its exit is done.
            if self.current == proc as usize {
                self.current = 0;
            }
            return Ok(OpOutcome {
                result: Ok(0),
                minflt: 0,
                majflt: 0,
            });
        }
        let w = self
            .workers
            .get_mut(proc as usize)
            .and_then(|w| w.take())
            .ok_or_else(|| err(format!("exit: process {proc} is not alive (engine bug)")))?;
        if let Some(n) = w.stop() {
            self.warnings.push(n);
        }
        if self.current == proc as usize {
            self.current = 0;
        }
        Ok(OpOutcome {
            result: Ok(0),
            minflt: 0,
            majflt: 0,
        })
    }

    /// One op on the current worker (`Backend::exec` around it tells an OOM kill).
    fn exec_op(&mut self, op: &BackendOp) -> Result<OpOutcome, BackendError> {
        if let Some(s) = self.sentinel.as_mut() {
            s.check_alive().map_err(err)?;
        }
        match *op {
            BackendOp::Mmap {
                addr,
                len,
                prot,
                shared,
                populate,
                fixed,
                file: Some((obj, offset)),
            } => {
                self.check_range(addr, len)?;
                let fd = self.object_fd(obj)?;
                let r = self.call(&Request::MmapFd {
                    addr,
                    len,
                    prot: prot.bits(),
                    flags: mmap_flags(shared, populate, fixed),
                    fd,
                    offset,
                })?;
                mmap_outcome(r, addr, len)
            }
            BackendOp::MemfdCreate { obj, size } | BackendOp::MemfdHugetlb { obj, size, .. } => {
                self.check_next_object("memfd", obj)?;
                let r = self.call(&match op {
                    BackendOp::MemfdHugetlb { hsize, .. } => Request::MemfdHugetlb {
                        size,
                        shift: u64::from(hsize.shift()),
                    },
                    _ => Request::MemfdCreate { size },
                })?;
                self.created_object("memfd_create/ftruncate", r)
            }
            BackendOp::GmemCreate { obj, size, flags } => {
                self.check_next_object("gmem", obj)?;
                guest_memfd::host_support().map_err(not_runnable)?;
                let r = self.call(&Request::GmemCreate { size, flags })?;
                match r.status {
                    Status::Ok(fd) => {
                        let fd = i32::try_from(fd).map_err(|_| err("gmem: bad descriptor"))?;
                        self.push_object(fd);
                        Ok(Self::outcome(r, Some(0)))
                    }
                    // A failed creation keeps its id: ops on descriptor -1 get EBADF, as the
                    // model answers.
                    _ => {
                        self.push_object(-1);
                        Ok(Self::outcome(r, None))
                    }
                }
            }
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
                self.check_range(addr, len)?;
                let mut flags = mmap_flags(shared, populate, fixed);
                if noreserve {
                    flags |= libc::MAP_NORESERVE;
                }
                let r = match file {
                    Some((obj, offset)) => {
                        let fd = self.object_fd(obj)?;
                        self.call(&Request::MmapFd {
                            addr,
                            len,
                            prot: prot.bits(),
                            flags,
                            fd,
                            offset,
                        })?
                    }
                    None => self.call(&Request::Mmap {
                        addr,
                        len,
                        prot: prot.bits(),
                        // MAP_HUGE_2MB or MAP_HUGE_1GB (the same bits as MFD_HUGE_*).
                        flags: libc::MAP_ANONYMOUS
                            | libc::MAP_HUGETLB
                            | child::huge_size_flag(hsize.shift()) as i32
                            | flags,
                    })?,
                };
                mmap_outcome(r, addr, len)
            }
            BackendOp::TmpfsMount { mnt, huge, size } => {
                if mnt as usize != self.mounts.len() {
                    return Err(err(format!("tmpfs: id {mnt} out of order")));
                }
                let huge = tmpfs::huge_code(huge)
                    .ok_or_else(|| err(format!("tmpfs: huge={} is no mount option", huge.name())))?;
                let r = self.call(&Request::TmpfsMount {
                    huge,
                    size: size.unwrap_or(0),
                })?;
                match r.status {
                    Status::Ok(fd) => {
                        let fd = i32::try_from(fd).map_err(|_| err("tmpfs: bad descriptor"))?;
                        self.mounts.push(fd);
                        Ok(Self::outcome(r, Some(0)))
                    }
                    _ => Err(err(format!("tmpfs mount failed: {:?}", r.status))),
                }
            }
            BackendOp::FileCreate { obj, mnt, size } => {
                self.check_next_object("file", obj)?;
                let m = *self
                    .mounts
                    .get(mnt as usize)
                    .ok_or_else(|| err(format!("file: no tmpfs {mnt}")))?;
                let r = self.call(&Request::FileCreate {
                    mnt: m,
                    obj: u64::from(obj),
                    size,
                })?;
                self.created_object("tmpfs file create/ftruncate", r)
            }
            BackendOp::MmapDevZero {
                addr,
                len,
                prot,
                shared,
                populate,
                fixed,
            } => {
                self.check_range(addr, len)?;
                let fd = match self.worker()?.dev_zero {
                    Some(fd) => fd,
                    None => {
                        let r = self.call(&Request::OpenDevZero)?;
                        let Status::Ok(fd) = r.status else {
                            return Err(err(format!("open /dev/zero failed: {:?}", r.status)));
                        };
                        let fd = i32::try_from(fd).map_err(|_| err("/dev/zero: bad descriptor"))?;
                        if let Some(Some(w)) = self.workers.get_mut(self.current) {
                            w.dev_zero = Some(fd);
                        }
                        fd
                    }
                };
                let r = self.call(&Request::MmapFd {
                    addr,
                    len,
                    prot: prot.bits(),
                    flags: mmap_flags(shared, populate, fixed),
                    fd,
                    offset: 0,
                })?;
                mmap_outcome(r, addr, len)
            }
            BackendOp::DiskFileCreate { obj, size } => {
                self.check_next_object("file", obj)?;
                if self.disk_dir.is_none() {
                    diskfile::check_device().map_err(not_runnable)?;
                    self.warnings.extend(diskfile::sweep_stale());
                    self.disk_dir = Some(diskfile::RunDir::create().map_err(not_runnable)?);
                }
                let dir = self.disk_dir.as_ref().map_or(0, |d| d.word);
                let r = self.call(&Request::DiskFileCreate { size, dir })?;
                let id = self.objects.len();
                let out = self.created_object("file on=disk: open/ftruncate", r)?;
                self.disk_objects.insert(id);
                Ok(out)
            }
            BackendOp::Msync { addr, len, flags } => {
                self.check_range(addr, len)?;
                let flags = i32::try_from(flags).map_err(|_| err("msync: bad flags"))?;
                let r = self.call(&Request::Msync { addr, len, flags })?;
                Ok(Self::outcome(r, None))
            }
            BackendOp::Fsync { obj } => {
                let fd = self.object_fd(obj)?;
                let r = self.call(&Request::Fsync { fd })?;
                Ok(Self::outcome(r, None))
            }
            BackendOp::Ftruncate { obj, size } => {
                let fd = self.object_fd(obj)?;
                let r = self.call(&Request::Ftruncate { fd, size })?;
                Ok(Self::outcome(r, None))
            }
            BackendOp::Fallocate {
                obj,
                offset,
                len,
                keep_size,
                punch_hole,
            } => {
                let fd = self.object_fd(obj)?;
                let mut mode = 0;
                if keep_size {
                    mode |= libc::FALLOC_FL_KEEP_SIZE;
                }
                if punch_hole {
                    mode |= libc::FALLOC_FL_PUNCH_HOLE;
                }
                let r = self.call(&Request::Fallocate {
                    fd,
                    mode,
                    offset,
                    len,
                })?;
                Ok(Self::outcome(r, None))
            }
            BackendOp::Mmap {
                addr,
                len,
                prot,
                shared,
                populate,
                fixed,
                file: None,
            } => {
                self.check_range(addr, len)?;
                let r = self.call(&Request::Mmap {
                    addr,
                    len,
                    prot: prot.bits(),
                    flags: libc::MAP_ANONYMOUS | mmap_flags(shared, populate, fixed),
                })?;
                mmap_outcome(r, addr, len)
            }
            BackendOp::Munmap { addr, len } => {
                self.check_range(addr, len)?;
                let r = self.call(&Request::Munmap { addr, len })?;
                Ok(Self::outcome(r, Some(0)))
            }
            BackendOp::Mprotect { addr, len, prot } => {
                self.check_range(addr, len)?;
                let r = self.call(&Request::Mprotect {
                    addr,
                    len,
                    prot: prot.bits(),
                })?;
                Ok(Self::outcome(r, Some(0)))
            }
            BackendOp::Madvise { addr, len, advice } => {
                if advice.value() < 0 {
                    return Err(not_runnable(format!(
                        "madvise {advice:?} is a model-only proposal (no such advice in Linux \
                         {}): the host cannot run it",
                        host_kernel_profile()
                    )));
                }
                self.check_range(addr, len)?;
                let r = self.call(&Request::Madvise {
                    addr,
                    len,
                    advice: advice.value(),
                })?;
                Ok(Self::outcome(r, Some(0)))
            }
            BackendOp::Fork { parent, child } => self.fork_worker(parent, child),
            BackendOp::Switch { proc } => {
                match self.workers.get(proc as usize) {
                    Some(Some(_)) => self.current = proc as usize,
                    _ => {
                        return Err(err(format!(
                            "as: process {proc} is not alive (engine bug)"
                        )))
                    }
                }
                Ok(OpOutcome {
                    result: Ok(0),
                    minflt: 0,
                    majflt: 0,
                })
            }
            BackendOp::Exit { proc } => self.exit_worker(proc),
            BackendOp::Uffd(ref u) => self.uffd_op(u),
            BackendOp::Mremap {
                old,
                len,
                new_len,
                new,
            } => {
                // The old range and the result are in the arena (the destination is a
                // scenario mapping plus an offset; the plan's arena covers a grown result);
                // MREMAP_FIXED unmaps what is at the destination.
                self.check_range(old, len)?;
                self.check_range(new.unwrap_or(old), new_len)?;
                let r = self.call(&Request::Mremap {
                    addr: old,
                    len,
                    new_len,
                    fixed: new.is_some(),
                    new: new.unwrap_or(0),
                })?;
                Ok(Self::outcome(r, None))
            }
            BackendOp::Mlock { addr, len, lock } => {
                self.check_range(addr, len)?;
                let r = self.call(&Request::Mlock { addr, len, lock })?;
                Ok(Self::outcome(r, Some(0)))
            }
            BackendOp::KhugepagedScan { passes } => {
                if !hugepage_pmd_enabled() && khugepaged::khugepaged_pid().is_none() {
                    // PMD-sized THP is off, so there is no khugepaged thread and no pass.
                    return Ok(OpOutcome {
                        result: Ok(0),
                        minflt: 0,
                        majflt: 0,
                    });
                }
                let idle = self.khugepaged_idle.clone().map_err(not_runnable)?;
                khugepaged::run_passes(passes, &idle).map_err(|e| {
                    // No khugepaged thread (a mid-run sysfs write disabled PMD THP): not a
                    // failure of the run, the host just cannot do it.
                    if khugepaged::khugepaged_pid().is_none() {
                        not_runnable(e)
                    } else {
                        err(e)
                    }
                })?;
                Ok(OpOutcome {
                    result: Ok(0),
                    minflt: 0,
                    majflt: 0,
                })
            }
            BackendOp::Sleep { ms } => Err(not_runnable(format!(
                "sleep {ms}ms is model-only: the host cannot advance time deterministically (khugepaged \
                 is held asleep and real time would let other background work run); use \
                 `khugepaged scan N` for khugepaged passes"
            ))),
            BackendOp::Shrink => Err(not_runnable(
                "shrink is model-only: running the shrinkers on the host needs \
                 `echo 2 > /proc/sys/vm/drop_caches` (outside the THP sysfs directory this backend \
                 may write) or real memory pressure",
            )),
            BackendOp::Kalloc { .. } => Err(not_runnable(
                "kalloc is model-only: the host's own kernel allocations are its background, \
                 and placing kernel pages on purpose needs a kernel module",
            )),
            BackendOp::Compact => Err(not_runnable(
                "compact is model-only: `echo 1 > /proc/sys/vm/compact_memory` compacts every \
                 process's memory, so its counters are not attributable to the scenario",
            )),
            BackendOp::PrctlSetThpDisable { disable, flags } => {
                let r = self.call(&Request::Prctl { disable, flags })?;
                Ok(Self::outcome(r, Some(0)))
            }
            BackendOp::Access {
                addr,
                len,
                stride,
                pattern,
                subset,
            } => {
                self.check_range(addr, len)?;
                let (limit, extra_read, signal) =
                    self.access_plan(addr, len, stride, pattern, subset)?;
                let r = self.call(&Request::Access {
                    addr,
                    len,
                    stride,
                    pattern,
                    subset,
                    limit,
                    extra_read,
                })?;
                let mut o = Self::outcome(r, Some(0));
                if signal && r.status != Status::Sigbus {
                    o.result = Err(OpError::Signal(Signal::Sigsegv));
                }
                Ok(o)
            }
            BackendOp::Sysfs {
                ref knob,
                ref value,
            } => {
                if !self.opts.allow_sysfs {
                    return Err(not_runnable(format!(
                        "scenario writes sysfs knob {knob}={value} during the run; rerun with --allow-sysfs"
                    )));
                }
                let rel = knob_path(knob)
                    .ok_or_else(|| not_runnable(format!("unknown sysfs knob {knob}")))?;
                if rel == khugepaged::SCAN_SLEEP_KNOB && self.khugepaged_control {
                    self.warnings.push(format!(
                        "{knob}={value} during the run wakes khugepaged; the khugepaged control no longer holds"
                    ));
                }
                // A write that makes khugepaged run a pass (see `Kernel::write_sysfs`): the
                // pass is asynchronous, so wait for it before the next op or snapshot.
                let wake = self.khugepaged_control
                    && (rel == khugepaged::SCAN_SLEEP_KNOB || rel == khugepaged::ALLOC_SLEEP_KNOB);
                // Whether the thread ran before the write (start_stop_khugepaged's rule).
                let pmd_before = hugepage_pmd_enabled();
                let idle_before = match (&self.khugepaged_idle, khugepaged::khugepaged_pid()) {
                    (Ok(idle), Some(kpid)) if wake && pmd_before => Some((
                        kpid,
                        khugepaged::wait_idle(kpid, idle, None, std::time::Duration::from_secs(10))
                            .map_err(err)?,
                    )),
                    _ => None,
                };
                let full_scans_before = khugepaged::full_scans();
                // The kernel refusing the value is reported like a failed syscall's errno;
                // anything else (journal, lock) fails the run before the knob is written.
                let result = match self.session.set_op(&rel, value).map_err(err)? {
                    Ok(()) => {
                        if let Some(short) = pool_shortfall(&rel, value) {
                            self.warnings.push(short);
                        }
                        if let (Some((kpid, rt)), Ok(idle)) = (idle_before, &self.khugepaged_idle) {
                            khugepaged::wait_idle(kpid, idle, Some(rt), std::time::Duration::from_secs(60))
                                .map_err(|e| err(format!("khugepaged pass after {knob}={value}: {e}")))?;
                        } else if self.khugepaged_control && !pmd_before && hugepage_pmd_enabled() {
                            // start_stop_khugepaged() started a new thread, which scans at once.
                            if let Some(w) = khugepaged::wait_quiescent(full_scans_before) {
                                self.warnings.push(w);
                            }
                            if self.khugepaged_idle.is_err() {
                                self.khugepaged_idle = khugepaged::learn_idle_frame().map_err(|e| {
                                    format!("khugepaged scan: cannot detect the end of a pass: {e}")
                                });
                            }
                        }
                        Ok(0)
                    }
                    Err(errno) => Err(OpError::Errno(Errno(errno))),
                };
                Ok(OpOutcome {
                    result,
                    minflt: 0,
                    majflt: 0,
                })
            }
        }
    }

    /// The current worker stopped answering: reap it and describe how it ended.
    fn worker_died(&mut self) -> BackendError {
        let Some(Some(w)) = self.workers.get_mut(self.current).map(|w| w.take()) else {
            return err("host backend: op before setup");
        };
        // Closing the channel ends a worker that is still alive.
        drop(w.chan);
        let status = sys::waitpid(w.pid);
        if self.memcg.is_some()
            && status.is_some_and(|st| libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGKILL)
        {
            self.oom_killed = true;
        }
        let st = status
            .map(sys::describe_status)
            .unwrap_or_else(|| "unknown status".into());
        sysfs::unregister_child(w.slot);
        err(format!("worker child {} died ({st})", w.pid))
    }

    /// A receive from the current worker failed: it died (EOF, I/O error), or it sent what
    /// this build cannot decode.
    fn recv_failed(&mut self, e: RecvError) -> BackendError {
        match e {
            RecvError::Proto(e) => err(format!(
                "worker child sent a malformed response: {e}; {}",
                self.worker_died()
            )),
            RecvError::Eof | RecvError::Io(_) => self.worker_died(),
        }
    }

    /// Sends a request to the current worker and waits for its response (serving its
    /// userfaultfd meanwhile, if it has one).
    fn call(&mut self, req: &Request) -> Result<Response, BackendError> {
        self.call_fd(req).map(|(r, _)| r)
    }

    /// As [`Self::call`], also returning a descriptor passed with the response.
    fn call_fd(&mut self, req: &Request) -> Result<(Response, Option<OwnedFd>), BackendError> {
        let w = self.worker()?;
        let monitored = w.uffd.is_some();
        if proto::send_request(w.chan.as_fd(), req, None).is_err() {
            return Err(self.worker_died());
        }
        let r = if monitored {
            self.monitor()?
        } else {
            proto::recv_response(w.chan.as_fd())
        };
        r.map_err(|e| self.recv_failed(e))
    }

    /// Waits for the current worker's response while serving its userfaultfd: every
    /// `UFFD_EVENT_PAGEFAULT` is counted and resolved per the worker's policy
    /// ([`uffd::Uffd::resolve`]). The worker measures its own faults around the op, so what
    /// it reports are the task's counted faults (the blocked attempt is not counted, the
    /// retry after the resolution is).
    fn monitor(&mut self) -> Result<Result<(Response, Option<OwnedFd>), RecvError>, BackendError> {
        let cur = self.current;
        let Some(Some(w)) = self.workers.get_mut(cur) else {
            return Err(err("host backend: op before setup"));
        };
        let (chan, pid) = (w.chan.as_raw_fd(), w.pid);
        let Some(u) = w.uffd.as_mut() else {
            return Ok(proto::recv_response(w.chan.as_fd()));
        };
        let mut msgs = Vec::new();
        // A fault that keeps coming back at the same address means the monitor cannot
        // resolve it: give up instead of spinning forever.
        let mut last = (u64::MAX, 0u32);
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: chan,
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: u.fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: `fds` is a valid array of two pollfds.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
            if n < 0 {
                if sys::errno() == libc::EINTR {
                    continue;
                }
                return Err(err(format!("poll: {}", std::io::Error::last_os_error())));
            }
            if fds[1].revents & libc::POLLIN != 0 {
                msgs.clear();
                uffd::read_msgs(u.fd.as_fd(), &mut msgs)
                    .map_err(|e| err(format!("read(uffd): {}", Errno(e))))?;
                for &m in &msgs {
                    if last.0 == m.address {
                        last.1 += 1;
                        if last.1 > 64 {
                            let note = format!(
                                "userfault at {:#x} (flags {:#x}) not resolved after 64 retries",
                                m.address, m.flags
                            );
                            return Err(err(format!("{note}; {}", self.worker_died())));
                        }
                    } else {
                        last = (m.address, 1);
                    }
                    let mut vma = |a: u64| {
                        observe::read_maps(pid).ok().and_then(|v| {
                            v.iter()
                                .find(|v| v.start <= a && a < v.end)
                                .map(|v| (v.start, v.end))
                        })
                    };
                    let mut pagesize = |a: u64| observe::vma_kernel_pagesize(pid, a);
                    if let Some(note) = u.resolve(m, &mut self.uffd_stats, &mut vma, &mut pagesize)
                    {
                        if !self.warnings.contains(&note) {
                            self.warnings.push(note);
                        }
                    }
                }
                continue;
            }
            if fds[0].revents != 0 {
                let w = self.worker()?;
                return Ok(proto::recv_response(w.chan.as_fd()));
            }
        }
    }

    /// Messages delivered to the current process's uffd so far (flags, address, …).
    pub fn uffd_msgs(&self) -> &[uffd::Msg] {
        self.worker()
            .ok()
            .and_then(|w| w.uffd.as_ref())
            .map(|u| u.msgs.as_slice())
            .unwrap_or(&[])
    }

    /// A userfaultfd op of the current process. `open` runs in the worker (userfaultfd(2) +
    /// UFFDIO_API; the fd comes back with SCM_RIGHTS); the range ioctls are issued here on the
    /// worker's uffd (they act on its mm and take no fault in the worker: 0 faults, like the
    /// model); `handler` only stores the monitor policy.
    fn uffd_op(&mut self, req: &UffdReq) -> Result<OpOutcome, BackendError> {
        let done = |r: Result<(), i32>| OpOutcome {
            result: r.map(|_| 0).map_err(|e| OpError::Errno(Errno(e))),
            minflt: 0,
            majflt: 0,
        };
        let base = self.base;
        if let UffdReq::Open { features } = req {
            if self.worker()?.uffd.is_some() {
                // The model keeps one uffd per process.
                return Ok(done(Err(libc::EBUSY)));
            }
            let mut bits = 0;
            for f in features {
                bits |= uffd::feature_bit(f)
                    .ok_or_else(|| not_runnable(format!("unknown userfaultfd feature `{f}`")))?;
            }
            let (r, fd) = self.call_fd(&Request::UffdOpen { features: bits })?;
            let mut o = Self::outcome(r, Some(0));
            match (r.status, fd) {
                (Status::Ok(_), Some(fd)) => {
                    if let Some(Some(w)) = self.workers.get_mut(self.current) {
                        w.uffd = Some(uffd::Uffd::new(fd, bits));
                    }
                }
                (Status::Ok(_), None) => {
                    return Err(err("worker opened a userfaultfd but passed no descriptor"))
                }
                // A descriptor with a failure: not ours to keep (dropped, closed).
                (_, Some(_)) => o.result = Err(OpError::Errno(Errno(libc::EIO))),
                (_, None) => {}
            }
            return Ok(o);
        }
        let (addr, len) = match *req {
            UffdReq::Register { addr, len, .. }
            | UffdReq::Unregister { addr, len }
            | UffdReq::Writeprotect { addr, len, .. }
            | UffdReq::Copy { addr, len, .. }
            | UffdReq::Zeropage { addr, len }
            | UffdReq::Continue { addr, len, .. } => (addr, len),
            UffdReq::Handler { .. } | UffdReq::Open { .. } => (0, 0),
        };
        let ranged = !matches!(req, UffdReq::Handler { .. });
        if ranged {
            self.check_range(addr, len)?;
        }
        let Some(Some(w)) = self.workers.get_mut(self.current) else {
            return Err(err("host backend: op before setup"));
        };
        let Some(u) = w.uffd.as_mut() else {
            // No uffd: the model checks the range first (EINVAL), then the descriptor.
            if ranged && (addr % PAGE != 0 || len % PAGE != 0 || len == 0) {
                return Ok(done(Err(libc::EINVAL)));
            }
            return Ok(done(Err(libc::EBADF)));
        };
        let (fd, a) = (u.fd.as_fd(), base + addr);
        let r = match *req {
            UffdReq::Register {
                missing, wp, minor, ..
            } => {
                let bit = |on: bool, b: u64| if on { b } else { 0 };
                let mode = bit(missing, uffd::UFFDIO_REGISTER_MODE_MISSING)
                    | bit(wp, uffd::UFFDIO_REGISTER_MODE_WP)
                    | bit(minor, uffd::UFFDIO_REGISTER_MODE_MINOR);
                uffd::register(fd, a, len, mode)
            }
            UffdReq::Unregister { .. } => uffd::unregister(fd, a, len),
            UffdReq::Writeprotect { wp, stride, .. } => {
                let mode = if wp {
                    uffd::UFFDIO_WRITEPROTECT_MODE_WP
                } else {
                    0
                };
                thpsim_scenario::backend::strided(len, stride, |off, n| {
                    uffd::writeprotect(fd, a + off, n, mode)
                })
            }
            UffdReq::Copy { wp, .. } => {
                uffd::copy(fd, a, len, if wp { uffd::UFFDIO_COPY_MODE_WP } else { 0 })
            }
            UffdReq::Zeropage { .. } => uffd::zeropage(fd, a, len, 0),
            UffdReq::Continue { wp, .. } => {
                let mode = if wp { uffd::UFFDIO_CONTINUE_MODE_WP } else { 0 };
                uffd::continue_range(fd, a, len, mode)
            }
            UffdReq::Handler { wp, missing, minor } => {
                if let Some(p) = wp {
                    u.wp_policy = p;
                }
                if let Some(p) = missing {
                    u.missing_policy = p;
                }
                if let Some(p) = minor {
                    u.minor_policy = p;
                }
                Ok(())
            }
            UffdReq::Open { .. } => unreachable!("handled above"),
        };
        Ok(done(r))
    }

    fn check_range(&self, addr: u64, len: u64) -> Result<(), BackendError> {
        self.worker()?;
        if addr.checked_add(len).is_none_or(|e| e > self.arena_len) {
            return Err(err(format!(
                "range {addr:#x}+{len:#x} leaves the arena of {:#x} bytes (engine bug)",
                self.arena_len
            )));
        }
        Ok(())
    }

    /// How far an access op may go: (number of complete accesses, read-before-fault, signal).
    fn access_plan(
        &self,
        addr: u64,
        len: u64,
        stride: u64,
        pattern: Pattern,
        subset: Option<thpsim_scenario::ast::Subset>,
    ) -> Result<(u64, bool, bool), BackendError> {
        let w = self.worker()?;
        let (start, end) = (self.base + addr, self.base + addr + len);
        let maps =
            observe::read_maps(w.pid).map_err(|e| err(format!("/proc/{}/maps: {e}", w.pid)))?;
        let vmas: Vec<_> = maps
            .into_iter()
            .filter(|v| v.start < end && v.end > start)
            .collect();
        let write = pattern != Pattern::Read;
        let pku = self.pku;
        // x86: PROT_WRITE and PROT_EXEC imply read, except exec-only with protection keys.
        let read_ok = |v: &observe::Vma| v.read || v.write || (v.exec && !pku);
        let ok = |v: &observe::Vma| read_ok(v) && (!write || v.write);
        // Fast path: the whole range is covered by VMAs allowing the access.
        let mut cur = start;
        for v in &vmas {
            if v.start > cur || !ok(v) {
                break;
            }
            cur = v.end;
        }
        if cur >= end {
            return Ok((u64::MAX, false, false));
        }
        for (i, off) in touch_offsets(len, stride, subset).enumerate() {
            let a = start + off;
            let idx = vmas.partition_point(|v| v.end <= a);
            let v = vmas.get(idx).filter(|v| v.start <= a);
            match v {
                Some(v) if ok(v) => continue,
                Some(v) if read_ok(v) => {
                    return Ok((i as u64, pattern == Pattern::ReadWrite, true))
                }
                _ => return Ok((i as u64, false, true)),
            }
        }
        Ok((u64::MAX, false, false))
    }

    /// The worker's descriptor of scenario object `obj`.
    fn object_fd(&self, obj: u32) -> Result<i32, BackendError> {
        self.objects
            .get(obj as usize)
            .copied()
            .ok_or_else(|| err(format!("no object {obj}")))
    }

    fn outcome(r: Response, ok_val: Option<u64>) -> OpOutcome {
        let result = match r.status {
            Status::Ok(v) => Ok(ok_val.unwrap_or(v)),
            Status::Sigbus => Err(OpError::Signal(Signal::Sigbus)),
            Status::Errno(e) => Err(OpError::Errno(Errno(e))),
        };
        OpOutcome {
            result,
            minflt: r.minflt,
            majflt: r.majflt,
        }
    }

    /// Pid of the khugepaged sentinel, while it runs.
    pub fn sentinel_pid(&self) -> Option<i32> {
        self.sentinel.as_ref().map(|s| s.pid).filter(|p| *p > 0)
    }

    /// Ends every worker and the sentinel. Returns notes about workers that did not exit
    /// cleanly and, separately, the error of a sentinel that died during the run.
    fn stop_children(&mut self) -> (Option<String>, Option<String>) {
        let mut notes = Vec::new();
        // Youngest first; every worker is our child (CLONE_PARENT), so each is reaped here.
        while let Some(w) = self.workers.pop() {
            if let Some(n) = w.and_then(Worker::stop) {
                notes.push(n);
            }
        }
        self.current = 0;
        let mut sentinel_err = None;
        if let Some(mut s) = self.sentinel.take() {
            sentinel_err = s.stop().err();
            sysfs::CHILD_PIDS[sysfs::SENTINEL_SLOT].store(0, Ordering::SeqCst);
        }
        ((!notes.is_empty()).then(|| notes.join("; ")), sentinel_err)
    }
}

impl Backend for HostBackend {
    fn name(&self) -> String {
        "host".into()
    }

    fn setup(&mut self, setup: &Setup) -> Result<(), BackendError> {
        if !self.workers.is_empty() {
            return Err(err("host backend: setup called twice"));
        }
        if let Err(e) = preflight() {
            return Err(not_runnable(e));
        }
        // One host run at a time: knobs and system-wide counters are shared.
        self.lock = Some(sysfs::KnobLock::acquire(!self.opts.no_wait).map_err(not_runnable)?);
        // Under the lock a journal left on disk is a dead run's (or not ours at all).
        match sysfs::recover_journal() {
            Ok(Some(note)) => self.warnings.push(note),
            Ok(None) => {}
            Err(e) if self.opts.allow_sysfs => return Err(not_runnable(e)),
            Err(e) => self.warnings.push(e),
        }
        // SAFETY: prctl with integer arguments only; affects this process's THP policy (the
        // workers reset theirs at start).
        let prev = unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) };
        if prev >= 0 {
            // SAFETY: as above.
            if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } == 0 {
                self.own_thp_disable = Some(prev);
            }
        }
        // The hugetlb pools are the system's: a page in use or reserved by someone else would
        // change what the scenario sees (HugePages_Free, ENOMEM at mmap, SIGBUS at faults).
        // The 2 MiB pool's counters are /proc/meminfo's, the 1 GiB pool's only its sysfs
        // directory's.
        let meminfo = std::fs::read_to_string("/proc/meminfo")
            .map(|t| observe::parse_meminfo(&t))
            .unwrap_or_default();
        let pools = [
            (
                "the hugetlb pool",
                meminfo,
                "meminfo.",
                ["HugePages_Total", "HugePages_Free", "HugePages_Rsvd"],
            ),
            (
                "the 1 GiB hugetlb pool",
                observe::hstate_1g_counters(),
                "hugepages-1048576kB.",
                ["nr_hugepages", "free_hugepages", "resv_hugepages"],
            ),
        ];
        for (what, counters, prefix, [total, free, rsvd]) in pools {
            let m: std::collections::BTreeMap<String, i64> = counters.into_iter().collect();
            let g = |k: &str| m.get(&format!("{prefix}{k}")).copied().unwrap_or(0);
            if g(free) != g(total) || g(rsvd) != 0 {
                return Err(not_runnable(format!(
                    "{what} is in use by another process ({total} {}, {free} {}, {rsvd} {}): refusing to run",
                    g(total),
                    g(free),
                    g(rsvd)
                )));
            }
        }
        if setup.memcg.is_some() && !self.opts.allow_memcg {
            return Err(not_runnable(
                "the scenario needs a memory cgroup (`memcg` line): rerun with --allow-memcg to let the run make one",
            ));
        }
        if setup.memcg.is_some() && !self.opts.allow_sysfs {
            return Err(not_runnable(
                "a `memcg` scenario needs --allow-sysfs too (the cgroup is journaled with the knobs)",
            ));
        }
        if setup.swap > 0 && !self.opts.allow_swap {
            return Err(not_runnable(
                "the scenario needs swap (`swap` line): rerun with --allow-swap to let the run set up its swap device",
            ));
        }
        if setup.swap > 0 {
            // Only zram's synchronous path allocates large folios at swap-in.
            if self.opts.allow_sysfs && setup.swap_device == thpsim_kernel::SwapDevice::Zram {
                // Measured on a 4 MiB device of its own (its free cluster takes the 16 KiB
                // folio whatever the scenario's size), once per process.
                let works = match swap::LARGE_SWAPIN.get() {
                    Some(&w) => Some(w),
                    None => {
                        self.session
                            .swap_setup(4 << 20, thpsim_kernel::SwapDevice::Zram)
                            .map_err(not_runnable)?;
                        let r = swap::large_swapin_works(&mut self.session).map_err(err)?;
                        self.session.swap_off().map_err(err)?;
                        if let Some(w) = r {
                            let _ = swap::LARGE_SWAPIN.set(w);
                        }
                        r
                    }
                };
                match works {
                    Some(works) => {
                        self.zswap_ever_enabled = Some(!works);
                        if !works {
                            self.warnings.push(
                                "zswap was enabled at some point since boot: this host swaps every page in at order 0 until reboot (the model mirrors it)"
                                    .into(),
                            );
                        }
                    }
                    None => self.warnings.push(
                        "could not measure whether large folios swap in whole on this host".into(),
                    ),
                }
            }
            self.session
                .swap_setup(setup.swap, setup.swap_device)
                .map_err(not_runnable)?;
        } else if let Some(l) = std::fs::read_to_string("/proc/swaps")
            .ok()
            .and_then(|t| t.lines().nth(1).map(str::to_string))
        {
            // Another swap area would let MADV_PAGEOUT swap where the model has none.
            self.warnings.push(format!(
                "the machine has swap ({}) the scenario does not declare",
                l.split_whitespace().next().unwrap_or("?")
            ));
        }
        for (name, _) in &setup.sysfs {
            if knob_path(name).is_none() {
                return Err(not_runnable(format!("unknown sysfs knob {name}")));
            }
        }
        // Which knobs differ from the scenario's starting values (model defaults + lines)?
        let diffs = knob_diffs(&setup.sysfs).map_err(not_runnable)?;
        let fmt = |d: &KnobDiff| format!("{}={} (scenario assumes {})", d.name, d.host, d.scenario);
        if !self.opts.allow_sysfs {
            let explicit: Vec<String> = diffs
                .iter()
                .filter(|d| d.explicit)
                .map(|d| {
                    format!(
                        "host has {}={}, scenario wants {}",
                        d.name, d.host, d.scenario
                    )
                })
                .collect();
            if !explicit.is_empty() {
                return Err(not_runnable(format!(
                    "{}; rerun with --allow-sysfs",
                    explicit.join(", ")
                )));
            }
            let implicit: Vec<String> = diffs.iter().map(fmt).collect();
            if !implicit.is_empty() {
                self.warnings.push(format!(
                    "host THP knobs differ from the model's defaults the scenario assumes: {}; \
                     the host ran with its own values (rerun with --allow-sysfs to pin them)",
                    implicit.join(", ")
                ));
            }
            self.warnings.push(
                "khugepaged is not controlled (sysfs writes not allowed): it may collapse ranges of the \
                 scenario behind its back; rerun with --allow-sysfs to keep it asleep"
                    .into(),
            );
        } else {
            let control = self.khugepaged_control;
            // Every knob the model knows is pinned to its starting value (as the kernel
            // selftests' thp_settings push a full set), scan_sleep first when khugepaged is
            // controlled.
            let mut writes = Vec::new();
            if control {
                writes.push((
                    khugepaged::SCAN_SLEEP_KNOB.to_string(),
                    khugepaged::HUGE_SLEEP_MS.to_string(),
                ));
            }
            for d in &diffs {
                if control && d.rel == khugepaged::SCAN_SLEEP_KNOB {
                    if d.explicit {
                        self.warnings.push(format!(
                            "{}={} not applied: the khugepaged control holds scan_sleep_millisecs at {}",
                            d.name,
                            d.scenario,
                            khugepaged::HUGE_SLEEP_MS
                        ));
                    }
                    continue;
                }
                writes.push((d.rel.clone(), d.scenario.clone()));
            }
            let pinned: Vec<String> = diffs
                .iter()
                .filter(|d| !d.explicit && d.rel != khugepaged::SCAN_SLEEP_KNOB)
                .map(|d| format!("{}={} (host had {})", d.name, d.scenario, d.host))
                .collect();
            if !pinned.is_empty() {
                self.warnings.push(format!(
                    "pinned host THP knobs to the model's defaults for the run: {}",
                    pinned.join(", ")
                ));
            }
            self.session.apply(&writes).map_err(err)?;
            for (rel, value) in &writes {
                if let Some(short) = pool_shortfall(rel, value) {
                    return Err(not_runnable(short));
                }
            }
            if control {
                // The sentinel is registered in every controlled run, also when the scenario
                // starts with PMD-sized THP off (then it is turned on just for the sentinel's
                // registration and off again, which stops the thread): a mid-run write that
                // turns it on restarts the thread over a list that is never empty, so no mm of
                // the scenario ever wakes it (the model's `add_khugepaged_sentinel` is the
                // same list).
                let pmd_off = (!pmd_thp_enabled())
                    .then(|| sysfs::read_knob(PMD_SIZE_KNOB))
                    .transpose()
                    .map_err(|e| err(format!("{PMD_SIZE_KNOB}: {e}")))?;
                if pmd_off.is_some() {
                    self.session.set(PMD_SIZE_KNOB, "madvise").map_err(err)?;
                }
                let before = khugepaged::full_scans();
                let s = khugepaged::Sentinel::start().map_err(err)?;
                sysfs::CHILD_PIDS[sysfs::SENTINEL_SLOT].store(s.pid, Ordering::SeqCst);
                self.sentinel = Some(s);
                match khugepaged::wait_quiescent(before) {
                    Some(w) => {
                        self.khugepaged_idle = Err(format!("khugepaged scan: {w}"));
                        self.warnings.push(w);
                    }
                    None => {
                        self.khugepaged_idle = khugepaged::learn_idle_frame().map_err(|e| {
                            format!("khugepaged scan: cannot detect the end of a pass: {e}")
                        });
                    }
                }
                // Other processes' mms on the list take budget and move the scan cursor:
                // measure them (and put the cursor at the head) so that the model can mirror
                // them; if they cannot be measured, passes cannot be compared.
                // With PMD-sized THP `always` system-wide their VMAs are eligible: a pass
                // scans (and may collapse) other processes' memory, which no model can mirror;
                // `check` compares khugepaged's results as host noise then.
                if pmd_thp_policy() == "always" {
                    self.warnings.push(
                        "PMD-sized THP is `always` system-wide: khugepaged's passes also scan other processes' \
                         memory, so their costs are not measured or mirrored"
                            .into(),
                    );
                } else if let Ok(idle) = self.khugepaged_idle.clone() {
                    match khugepaged::foreign_mms(&idle) {
                        Ok(costs) => {
                            if !costs.is_empty() {
                                self.warnings.push(format!(
                                    "khugepaged's list holds {} other processes' mms ahead of the sentinel \
                                     (costs per visit {:?}: registered while THP was `always`); the model mirrors them",
                                    costs.len(),
                                    costs
                                ));
                            }
                            self.khugepaged_foreign = costs;
                        }
                        Err(e) => {
                            let w = format!(
                                "khugepaged's list holds other processes' mms that could not be measured: {e}"
                            );
                            self.khugepaged_idle = Err(format!("khugepaged scan: {w}"));
                            self.warnings.push(w);
                        }
                    }
                }
                if let Some(v) = pmd_off {
                    self.session.set(PMD_SIZE_KNOB, &v).map_err(err)?;
                }
            } else if !control {
                self.warnings
                    .push("khugepaged control disabled by the caller".into());
                self.khugepaged_idle = Err(
                    "khugepaged scan: the khugepaged control is disabled, passes cannot be counted"
                        .into(),
                );
            }
        }
        if let Some(cfg) = setup.memcg {
            memcg::warm_own_file_pages();
            let p = self
                .session
                .memcg_setup(cfg.limit, cfg.swappiness)
                .map_err(not_runnable)?;
            self.memcg = Some(p);
        }
        self.spawn_worker(setup.arena_len)?;
        if let Some(p) = &self.memcg {
            let pid = self.worker()?.pid;
            memcg::attach(p, pid).map_err(err)?;
        }
        Ok(())
    }

    fn exec(&mut self, op: &BackendOp) -> Result<OpOutcome, BackendError> {
        let r = self.exec_op(op);
        if r.is_err() && std::mem::take(&mut self.oom_killed) {
            // A SIGKILL ended the worker during the op (reaped by `worker_died`): if the
            // memcg's oom_kill count moved, it was the memcg OOM killer, and that is the op's
            // outcome, as the model reports it; any other SIGKILL is the failure it was.
            let kills = self
                .memcg
                .as_deref()
                .and_then(|p| memcg::counters(p).ok())
                .and_then(|c| c.get("memcg.oom_kill").copied())
                .unwrap_or(0);
            if kills <= self.oom_kills_seen {
                return r;
            }
            self.oom_kills_seen = kills;
            if self.current == 0 {
                return Err(not_runnable(
                    "the memcg OOM killer killed `main`: let a forked process make the allocation that runs out",
                ));
            }
            self.oom_killed_procs.push(self.current);
            return Ok(OpOutcome {
                result: Err(OpError::Signal(Signal::Sigkill)),
                minflt: 0,
                majflt: 0,
            });
        }
        r
    }

    fn snapshot(&mut self, ranges: &[(u64, u64)]) -> Result<Snapshot, BackendError> {
        if self.oom_killed_procs.contains(&self.current) {
            return Err(not_runnable(thpsim_scenario::sim::OOM_OBSERVE));
        }
        let mut counters = observe::counters();
        if let Some(p) = &self.memcg {
            // memory.stat is exact only once the periodic flush ran after the last change.
            memcg::wait_for_stat_flush();
            let mut c = memcg::counters(p).map_err(err)?;
            let pids: Vec<i32> = self.workers.iter().flatten().map(|w| w.pid).collect();
            let (anon, file) =
                memcg::worker_pages(p, &pids, (self.base, self.base + self.arena_len))
                    .map_err(err)?;
            for (field, pages) in [("memcg.rss", anon), ("memcg.cache", file)] {
                if let Some(v) = c.get_mut(field) {
                    *v -= i64::try_from(pages * PAGE).unwrap_or(0);
                }
            }
            counters.extend(c);
        }
        for (k, v) in self.uffd_stats.named() {
            counters.insert(k.to_string(), v as i64);
        }
        let w = self.worker()?;
        let text = w
            .observer
            .smaps_text()
            .map_err(|e| err(format!("/proc/{}/smaps: {e}", w.pid)))?;
        let mut mappings = Vec::with_capacity(ranges.len());
        for &(a, len) in ranges {
            let start = (self.base + a) & !(PAGE - 1);
            let end = (self.base + a + len).div_ceil(PAGE) * PAGE;
            let smaps = w.observer.smaps(&text, start, end);
            let pages = w
                .observer
                .pages(start, end)
                .map_err(|e| err(format!("pagemap of {}: {e}", w.pid)))?;
            mappings.push(MappingObs { smaps, pages });
        }
        for (i, (&fd, &creator)) in self.objects.iter().zip(&self.object_creator).enumerate() {
            // Nothing to fstat after a failed creation (guest_memfd) or once the process that
            // made the object is gone (the model skips the same objects).
            let Some(Some(owner)) = self.workers.get(creator).filter(|_| fd >= 0) else {
                continue;
            };
            let (blocks, size) = tmpfs::object_stat(owner.pid, fd).map_err(|e| {
                err(format!(
                    "stat of object {i} (/proc/{}/fd/{fd}): {e}",
                    owner.pid
                ))
            })?;
            let obj = u32::try_from(i).map_err(|_| err("too many objects"))?;
            if !self.disk_objects.contains(&i) {
                counters.insert(
                    object_key(obj, "blocks"),
                    i64::try_from(blocks).unwrap_or(i64::MAX),
                );
            }
            counters.insert(
                object_key(obj, "size"),
                i64::try_from(size).unwrap_or(i64::MAX),
            );
        }
        let uffd_last = self
            .uffd_stats
            .last
            .map(|(f, a)| (f, a.wrapping_sub(self.base)));
        Ok(Snapshot {
            counters,
            mappings,
            uffd_last,
        })
    }

    fn finish(&mut self) -> Result<(), BackendError> {
        let (note, sentinel_err) = self.stop_children();
        // The workers are gone, and with them every file of the run (unnamed inodes).
        self.disk_dir = None;
        // The workers are dead: their cgroup is empty (the restore removes it).
        self.memcg = None;
        let mut errs = self.session.restore();
        // Released only after the restore: a waiting run starts from the original knobs.
        self.lock = None;
        errs.extend(sentinel_err);
        if let Some(prev) = self.own_thp_disable.take() {
            // SAFETY: prctl with integer arguments only; restores this process's policy.
            unsafe {
                libc::prctl(
                    libc::PR_SET_THP_DISABLE,
                    (prev != 0) as libc::c_ulong,
                    0,
                    0,
                    0,
                )
            };
        }
        if let Some(n) = note {
            self.warnings.push(n);
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(err(errs.join("; ")))
        }
    }
}

impl Drop for HostBackend {
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            eprintln!("thpsim-host: {e}");
        }
    }
}

/// After a write of a hugetlb pool size: `Some(message)` when the pool read back smaller
/// than asked (the buddy allocator found too few free 2 MiB blocks, or `alloc_contig_pages`
/// too few free 1 GiB ranges: fragmentation, or memory this host's zones do not manage),
/// where the model would have got every page.
fn pool_shortfall(rel: &str, value: &str) -> Option<String> {
    let knobs = thpsim_kernel::sysfs::HUGETLB_KNOBS;
    let what = if rel == knobs[0].1 {
        "2 MiB blocks"
    } else if rel == knobs[2].1 {
        "1 GiB ranges"
    } else {
        return None;
    };
    let asked: u64 = value.trim().parse().ok()?;
    let mut got: u64 = sysfs::read_knob(rel).ok()?.parse().ok()?;
    // A 1 GiB range is refused while a page in it cannot be migrated right now (under I/O,
    // briefly pinned: alloc_contig_range gives up with EBUSY), which other processes cause
    // now and then (FINDINGS §34): the same write again, a few times, before giving up.
    if rel == knobs[2].1 {
        for _ in 0..3 {
            if got >= asked {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
            sysfs::write_knob(rel, value).ok()?;
            got = sysfs::read_knob(rel).ok()?.parse().ok()?;
        }
    }
    (got < asked).then(|| {
        format!("the host's hugetlb pool grew to only {got} of {asked} huge pages (no more free {what})")
    })
}

/// The flags of a scenario's `mmap` in the arena: MAP_FIXED_NOREPLACE (never over an
/// existing mapping), or for `at=` (`fixed`) MAP_FIXED over scenario memory (the range is in
/// the arena: `check_range`).
fn mmap_flags(shared: bool, populate: bool, fixed: bool) -> i32 {
    let mut flags = if fixed {
        libc::MAP_FIXED
    } else {
        libc::MAP_FIXED_NOREPLACE
    };
    flags |= if shared {
        libc::MAP_SHARED
    } else {
        libc::MAP_PRIVATE
    };
    if populate {
        flags |= libc::MAP_POPULATE;
    }
    flags
}

/// An `mmap` reply: EEXIST means the arena layout collided (a harness error, not the
/// scenario's result).
fn mmap_outcome(r: Response, addr: u64, len: u64) -> Result<OpOutcome, BackendError> {
    if r.status == Status::Errno(libc::EEXIST) {
        return Err(err(format!(
            "mmap at arena offset {addr:#x} (+{len:#x}) collides with an existing mapping (EEXIST)"
        )));
    }
    Ok(HostBackend::outcome(r, None))
}
