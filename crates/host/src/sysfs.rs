//! THP sysfs knobs on the host: reading, writing, and restoring them on every exit path.
//!
//! * **One run at a time.** Every host run holds [`KnobLock`], an exclusive `flock` on
//!   `sysfs.lock` in the journal directory (`/run/thpsim`, or `/tmp/thpsim-root` when `/run`
//!   is not writable), from setup to the end of the restore. A second run waits for it
//!   (saying for which pid) or, with `no_wait`, is refused. The lock file holds the holder's
//!   pid and start time (for the message only; the lock itself is the flock).
//! * **Journal.** A [`Session`] remembers the original value of every knob it writes (first
//!   write wins) and, before the first change, writes them to a journal ([`journal_path`]),
//!   so that a run killed with SIGKILL is repaired by the next [`recover_journal`]. The
//!   journal names its owner by pid, process start time (`/proc/PID/stat` field 22) and boot
//!   id: a zombie or a reused pid is not "alive". It is created `O_EXCL | O_NOFOLLOW` with
//!   mode 0600 (whatever the umask); a journal (or lock file) that is a symlink, not a regular
//!   file, not owned by root or writable by group/others is refused and never deleted, and so
//!   is a file that does not parse as a journal.
//! * **Restore.** While a session has changes, a process-wide restore table with
//!   pre-formatted bytes is published for the SIGINT/SIGTERM/SIGHUP/SIGQUIT handlers and the
//!   panic hook. Restoring (from a handler or at the normal end) kills the worker children,
//!   writes every knob back with raw `open`/`write`/`close` (async-signal-safe), and deletes
//!   the journal only after the last knob was written back. The normal end restores with the
//!   handled signals blocked; the handlers block the others while they run; and a spin lock
//!   ([`GUARD`]) makes a handler on another thread wait until a restore or a change in
//!   progress is complete, so no signal can cut a restore short. The signal is then
//!   re-raised with its previous disposition.
//!
//! * **Swap** ([`Session::swap_setup`], `crate::swap`): the journal and the restore table
//!   also say whether the run turned zram0 on as swap, or which disk or file swap area it
//!   made (`crate::swap::SwapArea`); every restore then runs `swapoff` and resets zram0 (or
//!   detaches and removes the area) before writing the knobs back.
//!
//! Nothing outside `/sys/kernel/mm/transparent_hugepage` is ever written, except the hugetlb
//! pool knobs, the swap readahead knobs (`vm.page-cluster`, `swap/vma_ra_enabled`: model
//! knobs, pinned to the scenario's values like the THP knobs) and zram0 of a swap run.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, Ordering};
use std::sync::{Mutex, Once};

use crate::swap::SwapArea;

pub const THP_DIR: &str = "/sys/kernel/mm/transparent_hugepage";

/// A knob file path relative to [`THP_DIR`] is acceptable only if it stays inside it; the
/// hugetlb pool knobs and the swap knobs are the only absolute paths (`sysfs::HUGETLB_KNOBS`,
/// `sysfs::SWAP_RA_KNOBS`).
fn rel_ok(rel: &str) -> bool {
    if rel.starts_with('/') {
        return thpsim_kernel::sysfs::HUGETLB_KNOBS
            .iter()
            .any(|(_, p)| *p == rel)
            || thpsim_kernel::sysfs::SWAP_RA_KNOBS
                .iter()
                .any(|(_, p, _)| *p == rel);
    }
    !rel.is_empty()
        && !rel.starts_with('/')
        && rel
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

pub fn knob_file(rel: &str) -> PathBuf {
    Path::new(THP_DIR).join(rel)
}

/// The current value of a knob: the bracketed choice for `always [madvise] never` files,
/// the trimmed content otherwise.
pub fn read_knob(rel: &str) -> std::io::Result<String> {
    let s = std::fs::read_to_string(knob_file(rel))?;
    Ok(parse_knob_value(&s))
}

pub fn parse_knob_value(s: &str) -> String {
    if let (Some(a), Some(b)) = (s.find('['), s.find(']')) {
        if a < b {
            return s[a + 1..b].to_string();
        }
    }
    s.trim().to_string()
}

pub fn write_knob(rel: &str, value: &str) -> std::io::Result<()> {
    if !rel_ok(rel) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("bad knob path {rel}"),
        ));
    }
    std::fs::write(knob_file(rel), value.as_bytes())
}

// ---------------------------------------------------------------------------------------------
// Paths and ownership checks

const RUN_DIR: &str = "/run/thpsim";
const TMP_DIR: &str = "/tmp/thpsim-root";
const JOURNAL_NAME: &str = "sysfs-restore.json";
const LOCK_NAME: &str = "sysfs.lock";
/// A journal larger than this is not one of ours.
const JOURNAL_MAX_BYTES: u64 = 64 << 10;

/// A directory we may keep the journal or the lock in: a real directory (not a symlink),
/// owned by root, and not writable by group or others unless sticky (like `/tmp`).
fn check_dir(p: &Path) -> Result<(), String> {
    let m = std::fs::symlink_metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
    if m.file_type().is_symlink() || !m.is_dir() {
        return Err(format!(
            "{} is not a directory (or is a symlink)",
            p.display()
        ));
    }
    if m.uid() != 0 {
        return Err(format!(
            "{} is owned by uid {}, not root",
            p.display(),
            m.uid()
        ));
    }
    if m.mode() & 0o022 != 0 && m.mode() & 0o1000 == 0 {
        return Err(format!(
            "{} is writable by group or others (mode {:o})",
            p.display(),
            m.mode() & 0o7777
        ));
    }
    Ok(())
}

/// A file we may read as a journal or use as the lock: a regular file owned by root and not
/// writable by group or others.
fn check_file(p: &Path, m: &std::fs::Metadata) -> Result<(), String> {
    if !m.is_file() {
        return Err(format!("{} is not a regular file", p.display()));
    }
    if m.uid() != 0 {
        return Err(format!(
            "{} is owned by uid {}, not root",
            p.display(),
            m.uid()
        ));
    }
    if m.mode() & 0o022 != 0 {
        return Err(format!(
            "{} is writable by group or others (mode {:o})",
            p.display(),
            m.mode() & 0o7777
        ));
    }
    Ok(())
}

/// The directory of the lock (and of the default journal): `/run/thpsim`, else
/// `/tmp/thpsim-root`; created (by root only) with mode 0700 and checked by [`check_dir`].
pub fn state_dir() -> Result<PathBuf, String> {
    let mut errs = Vec::new();
    for d in [RUN_DIR, TMP_DIR] {
        let p = Path::new(d);
        if crate::sys::is_root() {
            let _ = std::fs::DirBuilder::new().mode(0o700).create(p);
        }
        match check_dir(p) {
            Ok(()) => return Ok(p.to_path_buf()),
            Err(e) => errs.push(e),
        }
    }
    Err(format!(
        "no safe directory for the THP sysfs journal and lock: {}",
        errs.join("; ")
    ))
}

/// Where the journal is: `$THPSIM_SYSFS_JOURNAL`, else `sysfs-restore.json` in
/// [`state_dir`]. The journal's directory must pass [`check_dir`].
pub fn journal_location() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("THPSIM_SYSFS_JOURNAL") {
        let p = PathBuf::from(p);
        let dir = p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        check_dir(dir).map_err(|e| format!("THPSIM_SYSFS_JOURNAL={}: {e}", p.display()))?;
        return Ok(p);
    }
    Ok(state_dir()?.join(JOURNAL_NAME))
}

/// [`journal_location`], or the default path when there is no safe directory (for
/// messages and tests).
pub fn journal_path() -> PathBuf {
    journal_location().unwrap_or_else(|_| Path::new(RUN_DIR).join(JOURNAL_NAME))
}

/// The lock file: always in [`state_dir`] (also when `THPSIM_SYSFS_JOURNAL` moves the
/// journal: the knobs are global, so is the lock).
pub fn lock_path() -> Result<PathBuf, String> {
    Ok(state_dir()?.join(LOCK_NAME))
}

// ---------------------------------------------------------------------------------------------
// The run lock

/// This process's hold on the lock: the fd and how many [`KnobLock`]s share it (a process
/// may run several backends one after the other, or a test may hold two; changing knobs is
/// still one session at a time, see [`Session`]).
static HELD: Mutex<(i32, usize)> = Mutex::new((-1, 0));

/// The exclusive run lock (see the module doc). Released on drop.
#[derive(Debug)]
pub struct KnobLock(());

fn flock(fd: i32, op: i32) -> std::io::Result<()> {
    loop {
        // SAFETY: flock on a valid descriptor we own.
        if unsafe { libc::flock(fd, op) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// Opens the lock file without following a symlink and checks its owner and mode.
fn open_lock_file(p: &Path) -> Result<std::fs::File, String> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(p)
        .map_err(|e| format!("cannot open the THP sysfs lock {}: {e}", p.display()))?;
    let m = f.metadata().map_err(|e| format!("{}: {e}", p.display()))?;
    check_file(p, &m).map_err(|e| format!("refusing the THP sysfs lock: {e}"))?;
    Ok(f)
}

/// The pid recorded in the lock file by its holder (for messages).
fn lock_holder(f: &mut std::fs::File) -> Option<i32> {
    let mut s = String::new();
    f.read_to_string(&mut s).ok()?;
    s.split_whitespace().next()?.parse().ok()
}

impl KnobLock {
    /// Takes the lock; if another process holds it, waits (printing which pid it waits
    /// for) or, with `wait == false`, fails with a message naming the holder.
    pub fn acquire(wait: bool) -> Result<KnobLock, String> {
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        if held.1 > 0 {
            held.1 += 1;
            return Ok(KnobLock(()));
        }
        let p = lock_path()?;
        let mut f = open_lock_file(&p)?;
        if let Err(e) = flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) {
            if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(format!("flock {}: {e}", p.display()));
            }
            let who = match lock_holder(&mut f) {
                Some(pid) => format!("pid {pid}"),
                None => "another process".to_string(),
            };
            if !wait {
                return Err(format!(
                    "another thpsim host run ({who}) holds {}; not waiting (--no-wait)",
                    p.display()
                ));
            }
            eprintln!(
                "thpsim: waiting for {who}: another thpsim host run holds {}",
                p.display()
            );
            flock(f.as_raw_fd(), libc::LOCK_EX)
                .map_err(|e| format!("flock {}: {e}", p.display()))?;
        }
        let me = std::process::id() as i32;
        let info = format!("{me} {}\n", crate::sys::start_time(me).unwrap_or(0));
        let _ = f.set_len(0);
        // SAFETY: pwrite from a valid buffer on a valid descriptor.
        unsafe { libc::pwrite(f.as_raw_fd(), info.as_ptr().cast(), info.len(), 0) };
        held.0 = std::os::fd::IntoRawFd::into_raw_fd(f);
        held.1 = 1;
        Ok(KnobLock(()))
    }

    /// Takes the lock only if nobody holds it (or this process does). `Ok(None)`: another
    /// process holds it (with its pid, if known).
    fn try_acquire() -> Result<Result<KnobLock, Option<i32>>, String> {
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        if held.1 > 0 {
            held.1 += 1;
            return Ok(Ok(KnobLock(())));
        }
        let p = lock_path()?;
        let mut f = open_lock_file(&p)?;
        match flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => {
                held.0 = std::os::fd::IntoRawFd::into_raw_fd(f);
                held.1 = 1;
                Ok(Ok(KnobLock(())))
            }
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(Err(lock_holder(&mut f))),
            Err(e) => Err(format!("flock {}: {e}", p.display())),
        }
    }

    /// Whether this process holds the lock.
    pub fn held_here() -> bool {
        HELD.lock().unwrap_or_else(|e| e.into_inner()).1 > 0
    }
}

impl Drop for KnobLock {
    fn drop(&mut self) {
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        held.1 = held.1.saturating_sub(1);
        if held.1 == 0 && held.0 >= 0 {
            // SAFETY: the fd was leaked into HELD by `acquire`; we take it back and close it,
            // which releases the flock.
            drop(unsafe { OwnedFd::from_raw_fd(held.0) });
            held.0 = -1;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Journal

#[derive(serde::Serialize, serde::Deserialize)]
struct Journal {
    pid: i32,
    /// The owner's start time (`/proc/PID/stat` field 22); absent in journals of old versions.
    #[serde(default)]
    start_time: Option<u64>,
    /// `/proc/sys/kernel/random/boot_id` of the owner's boot.
    #[serde(default)]
    boot_id: Option<String>,
    /// (path relative to the THP directory, original value), in the order first written.
    knobs: Vec<(String, String)>,
    /// The run turned zram0 on as swap (`crate::swap`): tear it down before the knobs.
    #[serde(default)]
    swap: bool,
    /// The run's disk or file swap area (`crate::swap::SwapArea`), torn down likewise.
    #[serde(default)]
    swap_area: Option<SwapArea>,
    /// The run's memory cgroup directory (`crate::memcg`), removed first.
    #[serde(default)]
    memcg: Option<String>,
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
}

/// A knob a journal may name: one the model knows (the only ones this crate writes).
fn journal_knob_ok(rel: &str, val: &str) -> bool {
    rel_ok(rel)
        && thpsim_kernel::sysfs::knobs().iter().any(|k| k.path == rel)
        && val.len() <= VAL_MAX_LEN
        && !val.is_empty()
        && val.bytes().all(|b| b.is_ascii_graphic())
}

/// Reads and validates the journal at `path`: `Ok(None)` if there is none.
fn read_journal(path: &Path) -> Result<Option<(Journal, std::fs::Metadata)>, String> {
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(format!(
                "refusing sysfs journal {}: it is a symbolic link (left in place)",
                path.display()
            ))
        }
        Err(e) => return Err(format!("cannot open sysfs journal {}: {e}", path.display())),
    };
    let m = f
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    check_file(path, &m).map_err(|e| format!("refusing sysfs journal: {e} (left in place)"))?;
    if m.len() > JOURNAL_MAX_BYTES {
        return Err(format!(
            "refusing sysfs journal {}: {} bytes is not a thpsim journal (left in place)",
            path.display(),
            m.len()
        ));
    }
    let mut bytes = Vec::new();
    f.take(JOURNAL_MAX_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let j: Journal = serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "{} is not a thpsim sysfs journal ({e}); left in place — remove it if it is stale",
            path.display()
        )
    })?;
    if let Some(m) = j.memcg.as_ref().filter(|m| !crate::memcg::path_ok(m)) {
        return Err(format!(
            "{} is not a thpsim sysfs journal (memory cgroup {m:?}); left in place",
            path.display()
        ));
    }
    if let Some(a) = j.swap_area.as_ref().filter(|a| !a.valid()) {
        return Err(format!(
            "{} is not a thpsim sysfs journal (swap area {a:?}); left in place",
            path.display()
        ));
    }
    if let Some((rel, val)) = j.knobs.iter().find(|(r, v)| !journal_knob_ok(r, v)) {
        return Err(format!(
            "{} is not a thpsim sysfs journal (knob {rel:?}={val:?}); left in place",
            path.display()
        ));
    }
    Ok(Some((j, m)))
}

/// Unlinks `path` only if it is still the file described by `m` (same device and inode).
fn remove_if_same(path: &Path, m: &std::fs::Metadata) {
    if let Ok(now) = std::fs::symlink_metadata(path) {
        if now.dev() == m.dev() && now.ino() == m.ino() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Whether the journal's owner is still running: its pid exists, is not a zombie, and (when
/// the journal has it) started at the recorded time, so a reused pid is not the owner.
fn owner_alive(j: &Journal) -> bool {
    match crate::sys::proc_state(j.pid) {
        None => false,
        Some((state, start)) => {
            state != 'Z' && state != 'X' && j.start_time.is_none_or(|t| t == start)
        }
    }
}

/// Restores the knobs of a journal left by a run that is no longer alive, and says so on
/// stderr. Returns what was done, `Ok(None)` when there was nothing to do (no journal, or it
/// belongs to a live run holding the lock), `Err` when the journal cannot be trusted or
/// belongs to a live process.
pub fn recover_journal() -> Result<Option<String>, String> {
    let path = journal_location()?;
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        _ => {}
    }
    // Only under the lock: a run holding it owns its journal.
    let _lock = match KnobLock::try_acquire()? {
        Ok(l) => l,
        Err(_) => return Ok(None),
    };
    let Some((j, meta)) = read_journal(&path)? else {
        return Ok(None);
    };
    let me = std::process::id() as i32;
    if j.pid == me && ACTIVE_SESSION.load(Ordering::SeqCst) {
        return Ok(None);
    }
    if let (Some(b), Some(now)) = (&j.boot_id, boot_id()) {
        if *b != now {
            remove_if_same(&path, &meta);
            let note = format!(
                "removed THP sysfs journal {} of pid {} from an earlier boot (the reboot reset the knobs)",
                path.display(),
                j.pid
            );
            eprintln!("thpsim: {note}");
            return Ok(Some(note));
        }
    }
    if j.pid != me && owner_alive(&j) {
        return Err(format!(
            "sysfs journal {} belongs to live pid {} that does not hold the run lock (an older thpsim?); not touching it",
            path.display(),
            j.pid
        ));
    }
    let mut done = Vec::new();
    let mut ok = true;
    if let Some(m) = &j.memcg {
        match crate::memcg::teardown(Path::new(m)) {
            Ok(()) => done.push(format!("removal of memory cgroup {m}")),
            Err(e) => {
                ok = false;
                done.push(format!("memory cgroup removal FAILED: {e}"));
            }
        }
    }
    if j.swap {
        match swap_teardown() {
            Ok(()) => done.push("swapoff and reset of zram0".to_string()),
            Err(e) => {
                ok = false;
                done.push(format!("swap teardown FAILED: {e}"));
            }
        }
    }
    if let Some(a) = &j.swap_area {
        match area_teardown(a) {
            Ok(()) => done.push(format!("swapoff and removal of {}", a.dir)),
            Err(e) => {
                ok = false;
                done.push(format!("swap teardown FAILED: {e}"));
            }
        }
    }
    for (rel, val) in j.knobs.iter().rev() {
        match write_knob(rel, val) {
            Ok(()) => done.push(format!("{rel}={val}")),
            Err(e) => {
                ok = false;
                done.push(format!("{rel}={val} FAILED: {e}"))
            }
        }
    }
    if ok {
        remove_if_same(&path, &meta);
    }
    let note = format!(
        "restored THP sysfs knobs left changed by dead run pid {}: {}{}",
        j.pid,
        done.join(", "),
        if ok {
            String::new()
        } else {
            format!(" (journal {} kept)", path.display())
        }
    );
    eprintln!("thpsim: {note}");
    Ok(Some(note))
}

/// For commands that do not run on the host (`run`, `compare`, `knobs`): restores a dead
/// run's journal when possible, else returns a line saying that one is pending.
pub fn recover_or_report() -> Option<String> {
    let path = journal_path();
    if std::fs::symlink_metadata(&path).is_err() && crate::sys::is_root() {
        return None;
    }
    if !crate::sys::is_root() {
        return std::fs::symlink_metadata(&path).is_ok().then(|| {
            format!(
                "a THP sysfs journal of a killed host run is pending at {}; run thpsim as root to restore it",
                path.display()
            )
        });
    }
    // A restore says so itself.
    recover_journal().err()
}

/// Writes the journal file: the first time with `O_CREAT | O_EXCL | O_NOFOLLOW` at `path`
/// itself (a file already there is not ours and is left alone), later to a temporary file
/// renamed over our own journal (checked to still be the file we wrote). Mode 0600 whatever
/// the umask. Returns the new file's metadata.
fn write_journal(
    path: &Path,
    prev: Option<&std::fs::Metadata>,
    knobs: &[(String, String)],
    swap: bool,
    swap_area: Option<&SwapArea>,
    memcg: Option<&Path>,
) -> std::io::Result<std::fs::Metadata> {
    let me = std::process::id() as i32;
    let j = Journal {
        pid: me,
        start_time: crate::sys::start_time(me),
        boot_id: boot_id(),
        knobs: knobs.to_vec(),
        swap,
        swap_area: swap_area.cloned(),
        memcg: memcg.map(|p| p.display().to_string()),
    };
    let bytes = serde_json::to_vec_pretty(&j).map_err(std::io::Error::other)?;
    let create = |p: &Path| -> std::io::Result<std::fs::File> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(p)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        Ok(f)
    };
    match prev {
        None => {
            let f = create(path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    std::io::Error::new(
                        e.kind(),
                        "a file is already there that is not a journal of this run (left in place)",
                    )
                } else {
                    e
                }
            })?;
            f.metadata()
        }
        Some(prev) => {
            let mut tmp = path.as_os_str().to_owned();
            tmp.push(".tmp");
            let tmp = PathBuf::from(tmp);
            // A stale temporary file of ours (a killed run's) may be replaced; anything
            // else there is not ours.
            if let Ok(m) = std::fs::symlink_metadata(&tmp) {
                if check_file(&tmp, &m).is_err() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        format!("{} exists and is not ours", tmp.display()),
                    ));
                }
                std::fs::remove_file(&tmp)?;
            }
            let f = create(&tmp)?;
            let now = std::fs::symlink_metadata(path)?;
            if now.dev() != prev.dev() || now.ino() != prev.ino() {
                let _ = std::fs::remove_file(&tmp);
                return Err(std::io::Error::other(
                    "the journal was replaced by someone else during the run",
                ));
            }
            std::fs::rename(&tmp, path)?;
            f.metadata()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The async-signal-safe restore table

const PATH_MAX_LEN: usize = 192;
const VAL_MAX_LEN: usize = 64;

struct Entry {
    path: [u8; PATH_MAX_LEN], // NUL-terminated absolute path
    val: [u8; VAL_MAX_LEN],
    val_len: usize,
}

struct Table {
    entries: Vec<Entry>, // restored in reverse order
    journal: [u8; PATH_MAX_LEN],
    /// Device and inode of the journal we wrote: it is deleted only if it is still that file.
    journal_id: (u64, u64),
    /// zram0 is (or may be) the run's swap: swapoff and reset it first.
    swap: bool,
    /// The run's disk or file swap area: swapoff, detach and remove it first.
    area: Option<AreaC>,
    /// The run's memory cgroup directory (NUL-terminated; empty: none): rmdir first.
    memcg: [u8; PATH_MAX_LEN],
}

/// A [`SwapArea`]'s paths, NUL-terminated, for the async-signal-safe teardown.
struct AreaC {
    /// What swapon was given (the loop device or the file).
    target: [u8; PATH_MAX_LEN],
    /// The loop device (empty for a file area) and its sysfs `backing_file`.
    loop_dev: [u8; PATH_MAX_LEN],
    backing: [u8; PATH_MAX_LEN],
    file: [u8; PATH_MAX_LEN],
    dir: [u8; PATH_MAX_LEN],
    dir_len: usize,
}

impl AreaC {
    fn new(a: &SwapArea) -> Option<AreaC> {
        let mut c = AreaC {
            target: [0; PATH_MAX_LEN],
            loop_dev: [0; PATH_MAX_LEN],
            backing: [0; PATH_MAX_LEN],
            file: [0; PATH_MAX_LEN],
            dir: [0; PATH_MAX_LEN],
            dir_len: a.dir.len(),
        };
        let mut ok = cstr_into(&mut c.target, a.target().as_bytes())
            && cstr_into(&mut c.file, a.file().as_bytes())
            && cstr_into(&mut c.dir, a.dir.as_bytes());
        if let Some(l) = &a.loop_dev {
            let name = l.strip_prefix("/dev/").unwrap_or(l);
            ok &= cstr_into(&mut c.loop_dev, l.as_bytes())
                && cstr_into(
                    &mut c.backing,
                    format!("/sys/block/{name}/loop/backing_file").as_bytes(),
                );
        }
        ok.then_some(c)
    }
}

/// The published table; null when nothing needs restoring. Only ever swapped, never mutated
/// in place, so whoever wins the swap owns it.
static TABLE: AtomicPtr<Table> = AtomicPtr::new(std::ptr::null_mut());
/// Spin lock held (by thread id) while a change or a restore is in progress: a signal
/// handler on another thread waits for it instead of finding the table half-handled. The
/// thread holding it has the handled signals blocked, so no handler spins on its own thread.
static GUARD: AtomicI32 = AtomicI32::new(0);
/// Pids of the worker and sentinel children, killed by the handlers: slot 1 is the sentinel,
/// the others hold workers ([`register_child`]). Workers beyond the table are not killed by
/// a handler, but they get `PR_SET_PDEATHSIG` and exit when the parent's end of their socket
/// closes.
pub static CHILD_PIDS: [AtomicI32; 64] = [const { AtomicI32::new(0) }; 64];
/// Slot of [`CHILD_PIDS`] reserved for the khugepaged sentinel.
pub const SENTINEL_SLOT: usize = 1;

/// Records a worker pid for the handlers; returns its slot (None when the table is full).
pub fn register_child(pid: i32) -> Option<usize> {
    (0..CHILD_PIDS.len())
        .filter(|&i| i != SENTINEL_SLOT)
        .find(|&i| {
            CHILD_PIDS[i]
                .compare_exchange(0, pid, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        })
}

pub fn unregister_child(slot: Option<usize>) {
    if let Some(i) = slot {
        CHILD_PIDS[i].store(0, Ordering::SeqCst);
    }
}
/// Set when a signal handler or the panic hook killed the children (their death is then
/// not a failure of the run to report).
pub static CHILDREN_KILLED: AtomicBool = AtomicBool::new(false);
/// Set in forked children: they must never restore anything.
pub static IN_FORKED_CHILD: AtomicBool = AtomicBool::new(false);
/// One session with changes at a time per process.
static ACTIVE_SESSION: AtomicBool = AtomicBool::new(false);

const SIGNALS: [i32; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];
struct PrevActions([std::mem::MaybeUninit<libc::sigaction>; 4]);
// Written only by `install_handlers` while our handler is not installed, read by the handler.
static mut PREV: PrevActions = PrevActions([const { std::mem::MaybeUninit::zeroed() }; 4]);
static HOOK: Once = Once::new();
/// Thread that owns the active session (a panic there aborts the run).
static OWNER_TID: AtomicI32 = AtomicI32::new(0);

fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// Takes [`GUARD`] (async-signal-safe). Returns false if this thread already holds it (the
/// panic hook inside a change), in which case the caller must not release it.
fn guard_acquire() -> bool {
    let me = gettid();
    loop {
        match GUARD.compare_exchange(0, me, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => return true,
            Err(t) if t == me => return false,
            // SAFETY: sched_yield has no preconditions and is async-signal-safe.
            Err(_) => unsafe {
                libc::sched_yield();
            },
        }
    }
}

fn guard_release(acquired: bool) {
    if acquired {
        GUARD.store(0, Ordering::SeqCst);
    }
}

/// [`guard_release`] on drop, for the non-signal paths.
struct Guard(bool);

impl Drop for Guard {
    fn drop(&mut self) {
        guard_release(self.0);
    }
}

fn handled_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a local sigset_t.
    unsafe {
        let mut set = std::mem::MaybeUninit::<libc::sigset_t>::zeroed();
        libc::sigemptyset(set.as_mut_ptr());
        for s in SIGNALS {
            libc::sigaddset(set.as_mut_ptr(), s);
        }
        set.assume_init()
    }
}

/// Blocks the handled signals in this thread until dropped (a pending one is delivered then).
struct Blocked(libc::sigset_t);

impl Blocked {
    fn new() -> Blocked {
        let set = handled_set();
        // SAFETY: valid sigset pointers; pthread_sigmask only changes this thread's mask.
        unsafe {
            let mut old = std::mem::MaybeUninit::<libc::sigset_t>::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, old.as_mut_ptr());
            Blocked(old.assume_init())
        }
    }
}

impl Drop for Blocked {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved by `new`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
}

fn cstr_into(dst: &mut [u8; PATH_MAX_LEN], s: &[u8]) -> bool {
    if s.len() >= PATH_MAX_LEN || s.contains(&0) {
        return false;
    }
    dst[..s.len()].copy_from_slice(s);
    dst[s.len()] = 0;
    true
}

fn build_table(
    saved: &[(String, String)],
    journal: &Path,
    journal_meta: &std::fs::Metadata,
    swap: bool,
    area: Option<&SwapArea>,
    memcg: Option<&Path>,
) -> Option<Box<Table>> {
    let area = match area {
        Some(a) => Some(AreaC::new(a)?),
        None => None,
    };
    let mut t = Table {
        entries: Vec::with_capacity(saved.len()),
        journal: [0; PATH_MAX_LEN],
        journal_id: (journal_meta.dev(), journal_meta.ino()),
        swap,
        area,
        memcg: [0; PATH_MAX_LEN],
    };
    if !cstr_into(&mut t.journal, journal.as_os_str().as_bytes()) {
        return None;
    }
    if let Some(m) = memcg {
        if !cstr_into(&mut t.memcg, m.as_os_str().as_bytes()) {
            return None;
        }
    }
    for (rel, val) in saved {
        let mut e = Entry {
            path: [0; PATH_MAX_LEN],
            val: [0; VAL_MAX_LEN],
            val_len: val.len(),
        };
        if !cstr_into(&mut e.path, knob_file(rel).as_os_str().as_bytes()) || val.len() > VAL_MAX_LEN
        {
            return None;
        }
        e.val[..val.len()].copy_from_slice(val.as_bytes());
        t.entries.push(e);
    }
    Some(Box::new(t))
}

/// Replaces the published table. Call with [`GUARD`] held.
fn publish(t: Option<Box<Table>>) {
    let new = t.map(Box::into_raw).unwrap_or(std::ptr::null_mut());
    let old = TABLE.swap(new, Ordering::SeqCst);
    if !old.is_null() {
        // SAFETY: `old` came from Box::into_raw in `publish` and the swap transferred
        // ownership to us (handlers only take the table while holding GUARD, which we hold).
        drop(unsafe { Box::from_raw(old) });
    }
}

/// Writes every knob of `t` back (reverse order) and then, if all writes succeeded, deletes
/// the journal if it is still the file we wrote. Async-signal-safe. Returns the number of
/// failed writes.
fn restore_table(t: &Table) -> usize {
    let mut failed = 0;
    if t.memcg[0] != 0 && !crate::memcg::teardown_raw(&t.memcg) {
        failed += 1;
    }
    if t.swap && !swap_teardown_raw() {
        failed += 1;
    }
    if t.area.as_ref().is_some_and(|a| !area_teardown_raw(a)) {
        failed += 1;
    }
    for e in t.entries.iter().rev() {
        // SAFETY: `e.path` is NUL-terminated; `e.val[..val_len]` is initialised; open/write/close
        // are async-signal-safe.
        unsafe {
            let fd = libc::open(e.path.as_ptr().cast(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd >= 0 {
                let n = libc::write(fd, e.val.as_ptr().cast(), e.val_len);
                if n != e.val_len as isize {
                    failed += 1;
                }
                libc::close(fd);
            } else {
                failed += 1;
            }
        }
    }
    if failed == 0 {
        // SAFETY: NUL-terminated path and a valid stat buffer; lstat and unlink are
        // async-signal-safe.
        unsafe {
            let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
            if libc::lstat(t.journal.as_ptr().cast(), st.as_mut_ptr()) == 0 {
                let st = st.assume_init();
                if (st.st_dev, st.st_ino) == t.journal_id {
                    libc::unlink(t.journal.as_ptr().cast());
                }
            }
        }
    }
    failed
}

const ZRAM_DEV_C: &[u8] = b"/dev/zram0\0";
const ZRAM_RESET_C: &[u8] = b"/sys/block/zram0/reset\0";

/// `swapoff /dev/zram0` (not being swap is fine) and `echo 1 > /sys/block/zram0/reset`, with
/// async-signal-safe calls only. The run's workers must be dead already, so that their swap
/// entries are gone and swapoff has nothing to read back. True when both succeeded.
fn swap_teardown_raw() -> bool {
    // SAFETY: NUL-terminated constant paths and a constant buffer; swapoff, open, write and
    // close are async-signal-safe system calls.
    unsafe {
        if libc::swapoff(ZRAM_DEV_C.as_ptr().cast()) != 0
            && *libc::__errno_location() != libc::EINVAL
        {
            return false;
        }
        let fd = libc::open(
            ZRAM_RESET_C.as_ptr().cast(),
            libc::O_WRONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return false;
        }
        let ok = libc::write(fd, b"1".as_ptr().cast(), 1) == 1;
        libc::close(fd);
        ok
    }
}

/// Tears a disk or file swap area down with async-signal-safe calls only (the workers must
/// be dead): the loop device is swapped off and detached only while its backing file is in
/// the area's directory (a device named in the journal before it was attached may be
/// someone else's by now); a file area's file is swapped off; then the file is unlinked and
/// the directory removed. True when nothing of the area is left.
fn area_teardown_raw(a: &AreaC) -> bool {
    let ok_errno = |ok: &[i32]| {
        // SAFETY: reading this thread's errno.
        let e = unsafe { *libc::__errno_location() };
        ok.contains(&e)
    };
    let mut clean = true;
    // SAFETY: every path is a NUL-terminated buffer of the table; the buffer read into is a
    // local array of the given length; open, read, close, ioctl, swapoff, unlink and rmdir
    // are async-signal-safe system calls.
    unsafe {
        if a.loop_dev[0] != 0 {
            let mut buf = [0u8; PATH_MAX_LEN];
            let fd = libc::open(a.backing.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC);
            let n = if fd >= 0 {
                let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
                libc::close(fd);
                n
            } else {
                -1
            };
            let ours = n >= a.dir_len as isize && buf[..a.dir_len] == a.dir[..a.dir_len];
            if ours {
                if libc::swapoff(a.target.as_ptr().cast()) != 0 && !ok_errno(&[libc::EINVAL]) {
                    clean = false;
                }
                let ld = libc::open(a.loop_dev.as_ptr().cast(), libc::O_RDWR | libc::O_CLOEXEC);
                if ld >= 0 {
                    // Autoclear detaches it at the last close; an explicit clear covers a
                    // device still held open by this process.
                    libc::ioctl(ld, crate::swap::LOOP_CLR_FD, 0);
                    libc::close(ld);
                }
            }
        } else if libc::swapoff(a.target.as_ptr().cast()) != 0
            && !ok_errno(&[libc::EINVAL, libc::ENOENT])
        {
            clean = false;
        }
        if libc::unlink(a.file.as_ptr().cast()) != 0 && !ok_errno(&[libc::ENOENT]) {
            clean = false;
        }
        if libc::rmdir(a.dir.as_ptr().cast()) != 0 && !ok_errno(&[libc::ENOENT]) {
            clean = false;
        }
    }
    clean
}

/// [`area_teardown_raw`] outside a signal handler, with a message when something is left.
fn area_teardown(a: &SwapArea) -> Result<(), String> {
    let c = AreaC::new(a).ok_or_else(|| format!("swap area path too long: {}", a.dir))?;
    area_teardown_raw(&c);
    match crate::swap::area_leftover(a) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// [`swap_teardown_raw`] with a message when something is left behind.
fn swap_teardown() -> Result<(), String> {
    swap_teardown_raw();
    match crate::swap::leftover() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Restores from the published table using only async-signal-safe calls (signal handlers,
/// panic hook). Waits for a change or restore in progress on another thread first. Returns
/// true if a table was consumed. The table is leaked (we may be in a signal handler).
fn restore_from_table() -> bool {
    if IN_FORKED_CHILD.load(Ordering::SeqCst) {
        return false;
    }
    let g = guard_acquire();
    let t = TABLE.swap(std::ptr::null_mut(), Ordering::SeqCst);
    if !t.is_null() {
        // The scenario's task and the sentinel go first, so nothing runs under restored knobs.
        CHILDREN_KILLED.store(true, Ordering::SeqCst);
        for pid in &CHILD_PIDS {
            crate::sys::kill(pid.load(Ordering::SeqCst), libc::SIGKILL);
        }
        // SAFETY: the swap made us the sole owner of a valid table published by `publish`.
        restore_table(unsafe { &*t });
    }
    guard_release(g);
    !t.is_null()
}

extern "C" fn on_signal(sig: libc::c_int) {
    restore_from_table();
    if let Some(i) = SIGNALS.iter().position(|s| *s == sig) {
        // SAFETY: PREV[i] was initialised by `install_handlers` before this handler could run;
        // sigaction and raise are async-signal-safe. The signal is blocked while we run, so
        // the re-raised one is delivered with the previous disposition after we return.
        unsafe {
            let prev = &*std::ptr::addr_of!(PREV.0[i]);
            libc::sigaction(sig, prev.as_ptr(), std::ptr::null_mut());
            libc::raise(sig);
        }
    }
}

/// Installs the restore handler for each signal whose current disposition is neither ours nor
/// SIG_IGN, remembering the current one to re-raise with. While the handler runs all handled
/// signals are blocked (a SIGTERM right after a SIGINT cannot cut its restore short). Called
/// when a session first changes a knob (a handled signal uninstalls our handler, so this
/// re-checks every time).
fn install_handlers() {
    let ours = on_signal as extern "C" fn(libc::c_int) as usize;
    for (i, &sig) in SIGNALS.iter().enumerate() {
        // SAFETY: `cur` is a valid sigaction buffer. PREV[i] is only written while our handler
        // is not installed for `sig`, so the handler never reads it while it is being written;
        // the handler itself only calls async-signal-safe functions.
        unsafe {
            let mut cur = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
            libc::sigaction(sig, std::ptr::null(), cur.as_mut_ptr());
            let h = cur.assume_init_ref().sa_sigaction;
            if h == ours || h == libc::SIG_IGN {
                continue;
            }
            (*std::ptr::addr_of_mut!(PREV.0[i])).write(cur.assume_init());
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = ours;
            act.sa_mask = handled_set();
            act.sa_flags = libc::SA_RESTART;
            libc::sigaction(sig, &act, std::ptr::null_mut());
        }
    }
}

fn install_panic_hook() {
    HOOK.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // A panic on the thread running the session aborts the run: restore now (the
            // session's Drop will find nothing left to do). With panic=abort any panic ends
            // the process, so restore whoever panicked.
            if !IN_FORKED_CHILD.load(Ordering::SeqCst)
                && (cfg!(panic = "abort") || OWNER_TID.load(Ordering::SeqCst) == gettid())
                && restore_from_table()
            {
                eprintln!("thpsim-host: panic during a host run; THP sysfs knobs restored");
            }
            prev(info)
        }));
    });
}

// ---------------------------------------------------------------------------------------------
// Session

pub struct Session {
    saved: Vec<(String, String)>,
    /// zram0 was turned on as the run's swap (journaled before it was).
    swap: bool,
    /// The run's disk or file swap area (journaled before anything of it was made).
    swap_area: Option<SwapArea>,
    /// The run's memory cgroup (journaled before it was made).
    memcg: Option<PathBuf>,
    /// Where the journal goes, or why there is no safe place for it.
    journal: Result<PathBuf, String>,
    /// The journal file we wrote last.
    journal_meta: Option<std::fs::Metadata>,
    active: bool,
}

impl Session {
    pub fn new() -> Self {
        Session {
            saved: Vec::new(),
            swap: false,
            swap_area: None,
            memcg: None,
            journal: journal_location(),
            journal_meta: None,
            active: false,
        }
    }

    /// Writes a knob, saving its original value (and journaling it) first.
    pub fn set(&mut self, rel: &str, value: &str) -> Result<(), String> {
        self.apply(&[(rel.to_string(), value.to_string())])
    }

    /// [`Session::set`] for a scenario's `sysfs` op: `Ok(Err(errno))` when the kernel refused
    /// the value (the original is saved and journaled first, so nothing is lost), `Err` when
    /// the knob could not be saved (nothing was written).
    pub fn set_op(&mut self, rel: &str, value: &str) -> Result<Result<(), i32>, String> {
        let knobs = [(rel.to_string(), value.to_string())];
        match self.apply(&knobs) {
            Ok(()) => Ok(Ok(())),
            Err(e) if self.original(rel).is_some() => {
                // Saved and journaled: the write itself failed. Learn the kernel's errno.
                match std::fs::write(knob_file(rel), value.as_bytes()) {
                    Ok(()) => Ok(Ok(())),
                    Err(io) => match io.raw_os_error() {
                        Some(errno) => Ok(Err(errno)),
                        None => Err(e),
                    },
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Writes knobs in order. The original values of those not saved yet are read and
    /// journaled (one journal write) and published for the handlers before the first write.
    /// Signals are blocked meanwhile; a handler on another thread waits for the end.
    pub fn apply(&mut self, knobs: &[(String, String)]) -> Result<(), String> {
        if let Some((rel, _)) = knobs.iter().find(|(r, _)| !rel_ok(r)) {
            return Err(format!("refusing to write outside {THP_DIR}: {rel}"));
        }
        let _b = Blocked::new();
        // Released on unwind too (a panic inside must not leave handlers spinning).
        let _g = Guard(guard_acquire());
        self.apply_guarded(knobs)
    }

    fn apply_guarded(&mut self, knobs: &[(String, String)]) -> Result<(), String> {
        let mut new = Vec::new();
        for (rel, _) in knobs {
            if self.saved.iter().chain(&new).any(|(r, _)| r == rel) {
                continue;
            }
            let orig = read_knob(rel)
                .map_err(|e| format!("cannot read {}: {e}", knob_file(rel).display()))?;
            if orig.len() > VAL_MAX_LEN {
                return Err(format!("knob value too long: {rel}={orig}"));
            }
            new.push((rel.clone(), orig));
        }
        if !new.is_empty() {
            let journal = self.journal.clone()?;
            self.activate()?;
            let mut all = self.saved.clone();
            all.extend(new.iter().cloned());
            self.journal_and_publish(&journal, all)?;
        }
        for (rel, value) in knobs {
            write_knob(rel, value).map_err(|e| {
                format!(
                    "cannot write {value:?} to {}: {e}",
                    knob_file(rel).display()
                )
            })?;
        }
        Ok(())
    }

    /// Makes this the process's one active session: the signal handlers and the panic hook
    /// restore what it journals. Call with [`GUARD`] held.
    fn activate(&mut self) -> Result<(), String> {
        if self.active {
            return Ok(());
        }
        if ACTIVE_SESSION.swap(true, Ordering::SeqCst) {
            return Err(
                "another HostBackend in this process is already changing THP sysfs knobs".into(),
            );
        }
        self.active = true;
        CHILDREN_KILLED.store(false, Ordering::SeqCst);
        install_panic_hook();
        install_handlers();
        OWNER_TID.store(gettid(), Ordering::SeqCst);
        Ok(())
    }

    /// Writes the journal (knobs `all`, and whether swap is on) and publishes the restore
    /// table for it. Call with [`GUARD`] held and the session active.
    fn journal_and_publish(
        &mut self,
        journal: &Path,
        all: Vec<(String, String)>,
    ) -> Result<(), String> {
        let meta = write_journal(
            journal,
            self.journal_meta.as_ref(),
            &all,
            self.swap,
            self.swap_area.as_ref(),
            self.memcg.as_deref(),
        )
        .map_err(|e| format!("cannot write sysfs journal {}: {e}", journal.display()))?;
        let t = build_table(
            &all,
            journal,
            &meta,
            self.swap,
            self.swap_area.as_ref(),
            self.memcg.as_deref(),
        )
        .ok_or_else(|| format!("knob path too long in {all:?}"))?;
        self.journal_meta = Some(meta);
        self.saved = all;
        publish(Some(t));
        Ok(())
    }

    /// Sets up the run's swap (`crate::swap`): refuses when the machine has swap or zram0 is
    /// in use; journals "swap on" before the device is touched; then sizes zram0, writes the
    /// header and turns it on. Readahead (`vm.page-cluster`) is not touched here: it is a
    /// model knob, pinned to the scenario's value with the others.
    pub fn swap_setup(
        &mut self,
        bytes: u64,
        device: thpsim_kernel::SwapDevice,
    ) -> Result<(), String> {
        let area = SwapArea::for_run(device);
        match &area {
            None => crate::swap::preflight()?,
            Some(a) => crate::swap::preflight_area(a)?,
        }
        {
            let _b = Blocked::new();
            let _g = Guard(guard_acquire());
            self.activate()?;
        }
        let Some(mut area) = area else {
            self.journal_swap(|s| s.swap = true)?;
            return crate::swap::swap_on(bytes);
        };
        self.journal_swap(|s| s.swap_area = Some(area.clone()))?;
        crate::swap::area_create(&area, bytes)?;
        if area.kind == "disk" {
            // Journaled before it is attached: a run killed in between leaves a device that
            // recovery checks by its backing file.
            area.loop_dev = Some(crate::swap::loop_get_free()?);
            self.journal_swap(|s| s.swap_area = Some(area.clone()))?;
        }
        crate::swap::area_on(&area)
    }

    /// Makes the run's memory cgroup (`crate::memcg`), journaled (the session activated)
    /// before the `mkdir`.
    pub fn memcg_setup(&mut self, limit: u64, swappiness: u32) -> Result<PathBuf, String> {
        let p = crate::memcg::run_path()?;
        if p.exists() {
            return Err(format!(
                "{} already exists: refusing to reuse it",
                p.display()
            ));
        }
        {
            let _b = Blocked::new();
            let _g = Guard(guard_acquire());
            self.activate()?;
        }
        self.journal_swap(|s| s.memcg = Some(p.clone()))?;
        crate::memcg::create(&p, limit, swappiness)?;
        Ok(p)
    }

    /// Changes what the session says about swap and journals and publishes it.
    fn journal_swap(&mut self, f: impl FnOnce(&mut Session)) -> Result<(), String> {
        let _b = Blocked::new();
        let _g = Guard(guard_acquire());
        f(self);
        let journal = self.journal.clone()?;
        let all = self.saved.clone();
        self.journal_and_publish(&journal, all)
    }

    /// Turns the run's swap off again (`swapoff`, zram0 reset) while the session goes on; the
    /// journal keeps saying "swap", which a later restore handles as a no-op.
    pub fn swap_off(&mut self) -> Result<(), String> {
        let _b = Blocked::new();
        let _g = Guard(guard_acquire());
        if let Some(a) = &self.swap_area {
            area_teardown(a)?;
        }
        if !self.swap {
            return Ok(());
        }
        swap_teardown()
    }

    pub fn changed(&self) -> bool {
        !self.saved.is_empty()
    }

    /// The original value of a knob this session changed.
    pub fn original(&self, rel: &str) -> Option<&str> {
        self.saved
            .iter()
            .find(|(r, _)| r == rel)
            .map(|(_, v)| v.as_str())
    }

    /// Restores every knob (reverse order) with the handled signals blocked, then deletes the
    /// journal (only if every knob was written back). Returns the failures.
    pub fn restore(&mut self) -> Vec<String> {
        let mut errs = Vec::new();
        if !self.active {
            return errs;
        }
        {
            let _b = Blocked::new();
            let _g = Guard(guard_acquire());
            let t = TABLE.swap(std::ptr::null_mut(), Ordering::SeqCst);
            if !t.is_null() {
                // SAFETY: the swap made us the owner of a table published by `publish`.
                let t = unsafe { Box::from_raw(t) };
                if restore_table(&t) > 0 {
                    if let Some(m) = self.memcg.as_ref().filter(|m| m.exists()) {
                        errs.push(format!(
                            "memory cgroup {} could not be removed",
                            m.display()
                        ));
                    }
                    if let Some(e) = self.swap.then(crate::swap::leftover).flatten() {
                        errs.push(format!("swap teardown failed: {e}"));
                    }
                    if let Some(e) = self.swap_area.as_ref().and_then(crate::swap::area_leftover) {
                        errs.push(format!("swap teardown failed: {e}"));
                    }
                    for (rel, val) in self.saved.iter().rev() {
                        if read_knob(rel).ok().as_deref() != Some(val.as_str()) {
                            errs.push(format!(
                                "restoring {rel}={val} failed (the journal {} is kept for the next run)",
                                self.journal.as_deref().map(|p| p.display().to_string()).unwrap_or_default()
                            ));
                        }
                    }
                }
            }
            // A null table: a signal handler (on another thread) restored it; it re-raises
            // its signal and ends the process.
        }
        self.saved.clear();
        self.swap = false;
        self.swap_area = None;
        self.memcg = None;
        self.journal_meta = None;
        self.active = false;
        OWNER_TID.store(0, Ordering::SeqCst);
        ACTIVE_SESSION.store(false, Ordering::SeqCst);
        errs
    }
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let errs = self.restore();
        for e in errs {
            eprintln!("thpsim-host: {e}");
        }
    }
}
