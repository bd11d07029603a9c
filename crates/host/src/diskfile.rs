//! Regular files on the disk filesystem for `file NAME SIZE on=disk`.
//!
//! Each run that makes one gets a private directory `/var/tmp/thpsim-disk-<pid>-<n>` (mode
//! 0700, root's) on the root filesystem, and every file in it is an unnamed `O_TMPFILE`
//! inode: it exists only while a worker holds its descriptor, so nothing of it outlives the
//! workers, even SIGKILLed ones. The directory is removed when the run finishes; one left
//! by a killed runner (its pid no longer alive) is removed by the next run's setup
//! ([`sweep_stale`]), as the sysfs journal of a killed run is restored.
//!
//! The model's disk files assume this host's device: ext4, `read_ahead_kb` equal to
//! `thpsim_kernel::readahead::DISK_READ_AHEAD_KB`. [`check_device`] reads both (it changes
//! nothing) and refuses a run on another device.

use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::proto::Status;
use crate::sys;

/// Where the run directories live (the root filesystem's `/var/tmp`).
pub const PARENT: &str = "/var/tmp";
/// Their name prefix: `thpsim-disk-<pid>-<n>`.
const PREFIX: &str = "thpsim-disk-";

/// `EXT4_SUPER_MAGIC` (`statfs.f_type`).
const EXT4_SUPER_MAGIC: i64 = 0xEF53;

/// Run directories made by this process so far (each run its own `n`).
static NEXT: AtomicU32 = AtomicU32::new(1);

/// The request's `dir` word of directory `n` of process `pid` (0 means `/var/tmp` itself).
fn dir_word(pid: u32, n: u32) -> u64 {
    (u64::from(pid) << 32) | u64::from(n)
}

/// A run's private directory, removed on drop.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    /// The `dir` word of `Request::DiskFileCreate` naming it.
    pub word: u64,
}

impl RunDir {
    /// Makes a new directory for this run.
    pub fn create() -> Result<RunDir, String> {
        use std::os::unix::fs::DirBuilderExt;
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = Path::new(PARENT).join(format!("{PREFIX}{pid}-{n}"));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(RunDir {
            path,
            word: dir_word(pid, n),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        // The files are unnamed (O_TMPFILE): the directory is empty.
        if let Err(e) = std::fs::remove_dir(&self.path) {
            eprintln!("thpsim-host: cannot remove {}: {e}", self.path.display());
        }
    }
}

/// Removes the run directories of runners that are no longer alive; returns a note per
/// directory removed.
pub fn sweep_stale() -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut notes = Vec::new();
    let Ok(entries) = std::fs::read_dir(PARENT) else {
        return notes;
    };
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
            continue;
        };
        let Some(pid) = rest
            .split_once('-')
            .and_then(|(p, n)| n.parse::<u32>().ok().and(p.parse::<i32>().ok()))
        else {
            continue;
        };
        let alive = sys::proc_state(pid).is_some_and(|(s, _)| s != 'Z' && s != 'X');
        if alive {
            continue;
        }
        // Only our own real directories (never follow a symlink someone planted).
        let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        if !meta.is_dir() || meta.uid() != uid {
            continue;
        }
        match std::fs::remove_dir_all(e.path()) {
            Ok(()) => notes.push(format!(
                "removed the disk-file directory {} of a killed run (pid {pid})",
                e.path().display()
            )),
            Err(err) => notes.push(format!("cannot remove {}: {err}", e.path().display())),
        }
    }
    notes
}

/// Checks that files under [`PARENT`] live on ext4 with the `read_ahead_kb` the model
/// assumes; the message says what differs.
pub fn check_device() -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let c = std::ffi::CString::new(PARENT).expect("no NUL");
    // SAFETY: statfs fills the zeroed struct; the path is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(format!("statfs {PARENT}: errno {}", sys::errno()));
    }
    #[allow(clippy::unnecessary_cast)]
    if st.f_type as i64 != EXT4_SUPER_MAGIC {
        return Err(format!(
            "{PARENT} is not on ext4 (f_type {:#x}): the model's disk files are ext4",
            st.f_type
        ));
    }
    let dev = std::fs::metadata(PARENT)
        .map_err(|e| format!("stat {PARENT}: {e}"))?
        .dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let want = thpsim_kernel::readahead::DISK_READ_AHEAD_KB;
    let kb = read_ahead_kb(major, minor)?;
    if kb != want {
        return Err(format!(
            "read_ahead_kb of the device of {PARENT} ({major}:{minor}) is {kb}, the model's disk files assume {want}"
        ));
    }
    Ok(())
}

/// `read_ahead_kb` of the backing device `major:minor` (its bdi; a partition's is its
/// disk's queue).
fn read_ahead_kb(major: u32, minor: u32) -> Result<u64, String> {
    let paths = [
        format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb"),
        format!("/sys/dev/block/{major}:{minor}/queue/read_ahead_kb"),
        format!("/sys/dev/block/{major}:{minor}/../queue/read_ahead_kb"),
    ];
    for p in &paths {
        if let Ok(t) = std::fs::read_to_string(p) {
            return t
                .trim()
                .parse()
                .map_err(|_| format!("{p}: not a number: {t:?}"));
        }
    }
    Err(format!("no read_ahead_kb for device {major}:{minor}"))
}

/// Writes the NUL-terminated path of directory `dir` (see [`dir_word`]) into `buf`, without
/// allocating (the worker calls it inside a measured window).
fn dir_cstr(dir: u64, buf: &mut [u8; 64]) -> &CStr {
    fn push(buf: &mut [u8; 64], at: &mut usize, s: &[u8]) {
        buf[*at..*at + s.len()].copy_from_slice(s);
        *at += s.len();
    }
    fn push_num(buf: &mut [u8; 64], at: &mut usize, mut v: u64) {
        let mut d = [0u8; 20];
        let mut i = d.len();
        loop {
            i -= 1;
            d[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        push(buf, at, &d[i..]);
    }
    let mut at = 0;
    push(buf, &mut at, PARENT.as_bytes());
    if dir != 0 {
        push(buf, &mut at, b"/");
        push(buf, &mut at, PREFIX.as_bytes());
        push_num(buf, &mut at, dir >> 32);
        push(buf, &mut at, b"-");
        push_num(buf, &mut at, dir & 0xffff_ffff);
    }
    buf[at] = 0;
    CStr::from_bytes_with_nul(&buf[..=at]).expect("one NUL at the end")
}

/// The worker's side of `Request::DiskFileCreate`: an unnamed regular file in directory
/// `dir`, sized `size` (sparse: a fresh inode caches nothing). Returns the descriptor.
pub fn create(size: u64, dir: u64) -> Result<u64, Status> {
    let mut buf = [0u8; 64];
    let path = dir_cstr(dir, &mut buf);
    // SAFETY: open with a NUL-terminated path and integer flags; the descriptor is owned by
    // the worker for the rest of the run (the scenario's object).
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC,
            0o600 as libc::c_uint,
        )
    };
    sys::truncated_fd(fd, size).map_err(Status::Errno)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_directories_of_dead_runners_are_swept() {
        if !sys::is_root() {
            eprintln!("skipped: needs root (writes {PARENT})");
            return;
        }
        // A pid that has exited (reaped): its directory is stale.
        let mut c = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let dead = c.id();
        c.wait().expect("wait");
        let stale = Path::new(PARENT).join(format!("{PREFIX}{dead}-77"));
        std::fs::create_dir(&stale).expect("mkdir");
        // This process's own directory stays.
        let mine = RunDir::create().expect("run dir");
        let notes = sweep_stale();
        assert!(!stale.exists(), "{notes:?}");
        assert!(mine.path().exists());
        let path = mine.path().to_path_buf();
        drop(mine);
        assert!(!path.exists());
    }

    #[test]
    fn dir_paths() {
        let mut b = [0u8; 64];
        assert_eq!(dir_cstr(0, &mut b).to_str(), Ok("/var/tmp"));
        assert_eq!(
            dir_cstr(dir_word(4_294_967_295, 12), &mut b).to_str(),
            Ok("/var/tmp/thpsim-disk-4294967295-12")
        );
    }
}
