//! THP sysfs knobs on the host: reading, writing, and restoring them on every exit path.
//!
//! A [`Session`] remembers the original value of every knob it writes (first write wins) and
//! restores them in reverse order. Before the first change it writes a journal file
//! ([`journal_path`]) so that a run killed with SIGKILL is repaired by the next
//! [`recover_journal`] (called by `HostBackend::new` and `preflight`). While a session has
//! changes, a process-wide restore table with pre-formatted bytes is published for the
//! SIGINT/SIGTERM/SIGHUP/SIGQUIT handlers and the panic hook, which restore with raw
//! `open`/`write`/`close` only (async-signal-safe), kill the worker children, delete the
//! journal and then re-raise the signal with the previous disposition.
//!
//! Nothing outside `/sys/kernel/mm/transparent_hugepage` is ever written.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, Ordering};
use std::sync::Once;

pub const THP_DIR: &str = "/sys/kernel/mm/transparent_hugepage";

/// A knob file path relative to [`THP_DIR`] is acceptable only if it stays inside it.
fn rel_ok(rel: &str) -> bool {
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
// Journal

pub fn journal_path() -> PathBuf {
    if let Ok(p) = std::env::var("THPSIM_SYSFS_JOURNAL") {
        return PathBuf::from(p);
    }
    let run = Path::new("/run/thpsim");
    if std::fs::create_dir_all(run).is_ok() {
        return run.join("sysfs-restore.json");
    }
    PathBuf::from("/tmp/thpsim-sysfs-restore.json")
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Journal {
    pid: i32,
    /// (path relative to the THP directory, original value), in the order first written.
    knobs: Vec<(String, String)>,
}

fn write_journal(path: &Path, knobs: &[(String, String)]) -> std::io::Result<()> {
    let j = Journal {
        pid: std::process::id() as i32,
        knobs: knobs.to_vec(),
    };
    let tmp = path.with_extension("json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(&j).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(&tmp, path)
}

/// Restores the knobs of a journal left by a run that is no longer alive. Returns a note
/// describing what was done, `Ok(None)` when there was nothing to do, `Err` when a live
/// process owns the journal.
pub fn recover_journal() -> Result<Option<String>, String> {
    let path = journal_path();
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(None);
    };
    let j: Journal = match serde_json::from_slice(&bytes) {
        Ok(j) => j,
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            return Ok(Some(format!(
                "removed unreadable sysfs journal {}: {e}",
                path.display()
            )));
        }
    };
    let me = std::process::id() as i32;
    if j.pid != me && crate::sys::pid_alive(j.pid) {
        return Err(format!(
            "another thpsim run (pid {}) is changing THP sysfs knobs (journal {})",
            j.pid,
            path.display()
        ));
    }
    if j.pid == me && ACTIVE_SESSION.load(Ordering::SeqCst) {
        return Ok(None);
    }
    let mut done = Vec::new();
    for (rel, val) in j.knobs.iter().rev() {
        match write_knob(rel, val) {
            Ok(()) => done.push(format!("{rel}={val}")),
            Err(e) => done.push(format!("{rel}={val} FAILED: {e}")),
        }
    }
    let _ = std::fs::remove_file(&path);
    Ok(Some(format!(
        "restored THP sysfs knobs left changed by dead run pid {}: {}",
        j.pid,
        done.join(", ")
    )))
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
}

/// The published table; null when nothing needs restoring. Only ever swapped, never mutated
/// in place, so a handler that wins the swap owns it.
static TABLE: AtomicPtr<Table> = AtomicPtr::new(std::ptr::null_mut());
/// Pids of the worker and sentinel children, killed by the handlers: slot 1 is the sentinel,
/// the others hold workers ([`register_child`]). Workers beyond the table are not killed by
/// a handler, but they exit when the parent's end of their socket closes.
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

fn cstr_into(dst: &mut [u8; PATH_MAX_LEN], s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() >= PATH_MAX_LEN || b.contains(&0) {
        return false;
    }
    dst[..b.len()].copy_from_slice(b);
    dst[b.len()] = 0;
    true
}

fn build_table(saved: &[(String, String)], journal: &Path) -> Option<Box<Table>> {
    let mut t = Table {
        entries: Vec::with_capacity(saved.len()),
        journal: [0; PATH_MAX_LEN],
    };
    if !cstr_into(&mut t.journal, journal.to_str()?) {
        return None;
    }
    for (rel, val) in saved {
        let mut e = Entry {
            path: [0; PATH_MAX_LEN],
            val: [0; VAL_MAX_LEN],
            val_len: val.len(),
        };
        if !cstr_into(&mut e.path, knob_file(rel).to_str()?) || val.len() > VAL_MAX_LEN {
            return None;
        }
        e.val[..val.len()].copy_from_slice(val.as_bytes());
        t.entries.push(e);
    }
    Some(Box::new(t))
}

fn publish(t: Option<Box<Table>>) {
    let new = t.map(Box::into_raw).unwrap_or(std::ptr::null_mut());
    let old = TABLE.swap(new, Ordering::SeqCst);
    if !old.is_null() {
        // SAFETY: `old` came from Box::into_raw in `publish` and the swap transferred
        // ownership to us. A signal handler that raced would have swapped it out first.
        drop(unsafe { Box::from_raw(old) });
    }
}

/// Restores from the published table using only async-signal-safe calls. Returns true if a
/// table was consumed. The table is leaked (we may be in a signal handler).
fn restore_from_table() -> bool {
    if IN_FORKED_CHILD.load(Ordering::SeqCst) {
        return false;
    }
    let t = TABLE.swap(std::ptr::null_mut(), Ordering::SeqCst);
    if t.is_null() {
        return false;
    }
    // The scenario's task and the sentinel go first, so nothing runs under restored knobs.
    for pid in &CHILD_PIDS {
        crate::sys::kill(pid.load(Ordering::SeqCst), libc::SIGKILL);
    }
    // SAFETY: the swap made us the sole owner of a valid table published by `publish`.
    let t = unsafe { &*t };
    for e in t.entries.iter().rev() {
        // SAFETY: `e.path` is NUL-terminated; `e.val[..val_len]` is initialised; open/write/close
        // are async-signal-safe.
        unsafe {
            let fd = libc::open(e.path.as_ptr().cast(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd >= 0 {
                libc::write(fd, e.val.as_ptr().cast(), e.val_len);
                libc::close(fd);
            }
        }
    }
    // SAFETY: NUL-terminated path; unlink is async-signal-safe.
    unsafe { libc::unlink(t.journal.as_ptr().cast()) };
    true
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
/// SIG_IGN, remembering the current one to re-raise with. Called when a session first changes
/// a knob (a handled signal uninstalls our handler, so this re-checks every time).
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
            libc::sigemptyset(&mut act.sa_mask);
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
    journal: PathBuf,
    active: bool,
}

impl Session {
    pub fn new() -> Self {
        Session {
            saved: Vec::new(),
            journal: journal_path(),
            active: false,
        }
    }

    /// Writes a knob, saving its original value (and journaling it) first.
    pub fn set(&mut self, rel: &str, value: &str) -> Result<(), String> {
        if !rel_ok(rel) {
            return Err(format!("refusing to write outside {THP_DIR}: {rel}"));
        }
        if !self.saved.iter().any(|(r, _)| r == rel) {
            if !self.active {
                if ACTIVE_SESSION.swap(true, Ordering::SeqCst) {
                    return Err(
                        "another HostBackend in this process is already changing THP sysfs knobs"
                            .into(),
                    );
                }
                self.active = true;
                install_panic_hook();
                install_handlers();
                OWNER_TID.store(gettid(), Ordering::SeqCst);
            }
            let orig = read_knob(rel)
                .map_err(|e| format!("cannot read {}: {e}", knob_file(rel).display()))?;
            self.saved.push((rel.to_string(), orig));
            write_journal(&self.journal, &self.saved).map_err(|e| {
                format!("cannot write sysfs journal {}: {e}", self.journal.display())
            })?;
            match build_table(&self.saved, &self.journal) {
                Some(t) => publish(Some(t)),
                None => return Err(format!("knob path or value too long: {rel}")),
            }
        }
        write_knob(rel, value).map_err(|e| {
            format!(
                "cannot write {value:?} to {}: {e}",
                knob_file(rel).display()
            )
        })
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

    /// Restores every knob (reverse order), deletes the journal, unpublishes the table.
    /// Returns the failures.
    pub fn restore(&mut self) -> Vec<String> {
        let mut errs = Vec::new();
        if !self.active {
            return errs;
        }
        publish(None);
        for (rel, val) in self.saved.iter().rev() {
            if let Err(e) = write_knob(rel, val) {
                errs.push(format!("restoring {rel}={val}: {e}"));
            }
        }
        if errs.is_empty() {
            let _ = std::fs::remove_file(&self.journal);
        }
        self.saved.clear();
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
