//! Keeping khugepaged from collapsing the scenario's memory behind its back.
//!
//! On Linux 6.18 khugepaged sleeps indefinitely while its mm list is empty, and
//! `__khugepaged_enter` wakes it when an mm is added to an *empty* list (first
//! `MADV_HUGEPAGE`, huge fault or eligible VMA of an mm). It then scans that mm at once, which
//! can collapse a PTE-mapped range of the scenario a few milliseconds after `MADV_HUGEPAGE`.
//! Adding an mm to a non-empty list does not wake it; between passes it sleeps
//! `khugepaged/scan_sleep_millisecs` (writing that knob wakes it).
//!
//! The control (only with sysfs writes allowed):
//! 1. set `khugepaged/scan_sleep_millisecs` to [`HUGE_SLEEP_MS`] (24 h) — this wakes it once
//!    if other mms are registered; it does a pass and goes back to sleep for 24 h;
//! 2. start a *sentinel* process (a fork with `PR_SET_THP_DISABLE` +
//!    `PR_THP_DISABLE_EXCEPT_ADVISED`, so only its one `MADV_HUGEPAGE` VMA is eligible) that
//!    maps a 2 MiB-aligned region, `MADV_HUGEPAGE`s and writes it (→ PMD THP). That registers
//!    its mm; if the list was empty khugepaged wakes, scans the sentinel (nothing to do),
//!    bumps `full_scans` and sleeps 24 h;
//! 3. wait until khugepaged is quiescent (`full_scans` moved, or the thread sleeps and its
//!    run time stops changing);
//! 4. only then fork the scenario's worker: its mm joins a non-empty list and wakes nobody.
//!
//! The sentinel lives until the run ends; then the knob is restored (which wakes khugepaged
//! again — the worker is gone by then).

use std::time::{Duration, Instant};

use crate::sys;

pub const HUGE_SLEEP_MS: &str = "86400000";
pub const SCAN_SLEEP_KNOB: &str = "khugepaged/scan_sleep_millisecs";

pub struct Sentinel {
    pub pid: i32,
    ctl_w: i32,
}

const PR_THP_DISABLE_EXCEPT_ADVISED: libc::c_ulong = 1 << 1;
const PMD: usize = 2 << 20;

fn sentinel_main(ctl_r: i32, ready_w: i32) -> ! {
    sys::reset_signals_in_child();
    sys::close_all_except(&mut [ctl_r, ready_w]);
    // SAFETY: prctl with integer arguments; failure (older kernels) is tolerated.
    unsafe {
        libc::prctl(
            libc::PR_SET_THP_DISABLE,
            1 as libc::c_ulong,
            PR_THP_DISABLE_EXCEPT_ADVISED,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    // SAFETY: a fresh anonymous mapping owned by this process only.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            2 * PMD,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    let mut status = 0u8;
    if p == libc::MAP_FAILED {
        status = 1;
    } else {
        let a = (p as usize).div_ceil(PMD) * PMD;
        // SAFETY: `a..a+PMD` lies inside the mapping just created.
        unsafe {
            if libc::madvise(a as *mut _, PMD, libc::MADV_HUGEPAGE) != 0 {
                status = 2;
            }
            std::ptr::write_volatile(a as *mut u8, 1);
        }
    }
    let _ = sys::write_all_fd(ready_w, &[status]);
    let mut b = [0u8; 1];
    let _ = sys::read_exact_fd(ctl_r, &mut b); // returns at EOF: the parent is done or gone
                                               // SAFETY: _exit in a forked child.
    unsafe { libc::_exit(0) }
}

impl Sentinel {
    pub fn start() -> Result<Sentinel, String> {
        let (ctl_r, ctl_w) = sys::pipe().map_err(|e| format!("pipe: {e}"))?;
        let (ready_r, ready_w) = sys::pipe().map_err(|e| format!("pipe: {e}"))?;
        // SAFETY: fork; the child runs only allocation-free code (`sentinel_main`) and _exits.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(format!("fork: {}", std::io::Error::last_os_error()));
        }
        if pid == 0 {
            crate::sysfs::IN_FORKED_CHILD.store(true, std::sync::atomic::Ordering::SeqCst);
            sentinel_main(ctl_r, ready_w);
        }
        sys::close(ctl_r);
        sys::close(ready_w);
        let mut b = [0u8; 1];
        let r = sys::read_exact_fd(ready_r, &mut b);
        sys::close(ready_r);
        let s = Sentinel { pid, ctl_w };
        match r {
            Ok(true) if b[0] == 0 => Ok(s),
            _ => Err(format!(
                "khugepaged sentinel failed to start (status {})",
                b[0]
            )),
        }
    }

    pub fn stop(&mut self) {
        if self.pid > 0 {
            sys::close(self.ctl_w);
            sys::kill(self.pid, libc::SIGKILL);
            sys::waitpid(self.pid);
            self.pid = 0;
        }
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn full_scans() -> Option<u64> {
    std::fs::read_to_string(format!("{}/khugepaged/full_scans", crate::sysfs::THP_DIR))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn khugepaged_pid() -> Option<i32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if let Ok(c) = std::fs::read_to_string(format!("/proc/{pid}/comm")) {
            if c.trim() == "khugepaged" {
                return Some(pid);
            }
        }
    }
    None
}

/// (state char, cumulative run time in ns) of a task.
fn task_state(pid: i32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let st = stat
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .next()?
        .chars()
        .next()?;
    let run = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?;
    Some((st, run.split_whitespace().next()?.parse().ok()?))
}

/// Waits until khugepaged has finished the pass the sentinel may have triggered. `before` is
/// `full_scans` read before the sentinel started. Returns a warning if quiescence could not
/// be confirmed.
pub fn wait_quiescent(before: Option<u64>) -> Option<String> {
    let Some(kpid) = khugepaged_pid() else {
        return None; // no thread: THP is off, nothing can collapse
    };
    let t0 = Instant::now();
    // The wake-up is immediate; a pass over the sentinel takes well under a millisecond.
    while t0.elapsed() < Duration::from_millis(500) {
        if full_scans().zip(before).is_some_and(|(now, b)| now > b) {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    // Then require the thread to be asleep with an unchanged run time for 30 ms.
    let mut last = task_state(kpid);
    let mut stable_since = Instant::now();
    while t0.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(5));
        let now = task_state(kpid);
        match (last, now) {
            (Some((_, a)), Some(('S', b))) if a == b => {
                if stable_since.elapsed() >= Duration::from_millis(30) {
                    return None;
                }
            }
            _ => stable_since = Instant::now(),
        }
        last = now;
    }
    Some("could not confirm that khugepaged went back to sleep before the run".into())
}
