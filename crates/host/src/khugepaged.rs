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
//! After registering, the sentinel disables THP completely (prctl): it stays on the list but
//! costs khugepaged 1 unit of `pages_to_scan` per visit.
//!
//! The sentinel lives until the run ends; then the knob is restored (which wakes khugepaged
//! again — the worker is gone by then).
//!
//! `khugepaged scan N` ([`run_passes`]): each rewrite of the 24 h sleep value wakes the idle
//! thread for exactly one pass; completion is seen in `/proc/<pid>/stack` and `schedstat`.

use std::time::{Duration, Instant};

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use crate::sys;

pub const HUGE_SLEEP_MS: &str = "86400000";
pub const SCAN_SLEEP_KNOB: &str = "khugepaged/scan_sleep_millisecs";
/// Its store handler wakes the thread for a pass too (`alloc_sleep_millisecs_store`).
pub const ALLOC_SLEEP_KNOB: &str = "khugepaged/alloc_sleep_millisecs";

pub struct Sentinel {
    pub pid: i32,
    /// The write end of the control pipe: closing it (dropping) tells the sentinel to go.
    ctl_w: Option<OwnedFd>,
}

const PR_THP_DISABLE_EXCEPT_ADVISED: libc::c_ulong = 1 << 1;
const PMD: usize = 2 << 20;

fn sentinel_main(ctl_r: OwnedFd, ready_w: OwnedFd, parent: i32) -> ! {
    sys::die_with_parent(parent);
    sys::reset_signals_in_child();
    sys::close_all_except(&mut [ctl_r.as_raw_fd(), ready_w.as_raw_fd()]);
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
        // Registered now. Disable THP completely: khugepaged keeps the mm on its list (only
        // exit removes it) but skips it at a cost of 1 unit of `pages_to_scan` per visit
        // (`hpage_collapse_test_exit_or_disable`), instead of 1 per VMA + 512 for its range.
        // SAFETY: prctl with integer arguments only.
        unsafe {
            libc::prctl(
                libc::PR_SET_THP_DISABLE,
                1 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        };
    }
    let _ = sys::write_all_fd(ready_w.as_fd(), &[status]);
    let mut b = [0u8; 1];
    // Returns at EOF: the parent is done or gone.
    let _ = sys::read_exact_fd(ctl_r.as_fd(), &mut b);
    // SAFETY: _exit in a forked child.
    unsafe { libc::_exit(0) }
}

impl Sentinel {
    pub fn start() -> Result<Sentinel, String> {
        let (ctl_r, ctl_w) = sys::pipe().map_err(|e| format!("pipe: {e}"))?;
        let (ready_r, ready_w) = sys::pipe().map_err(|e| format!("pipe: {e}"))?;
        let me = std::process::id() as i32;
        // SAFETY: fork; the child runs only allocation-free code (`sentinel_main`) and _exits.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(format!("fork: {}", std::io::Error::last_os_error()));
        }
        if pid == 0 {
            crate::sysfs::IN_FORKED_CHILD.store(true, std::sync::atomic::Ordering::SeqCst);
            sentinel_main(ctl_r, ready_w, me);
        }
        // The child's ends: only the child holds them now, so EOF on `ready_r` means it died.
        drop(ctl_r);
        drop(ready_w);
        let mut b = [0u8; 1];
        let r = sys::read_exact_fd(ready_r.as_fd(), &mut b);
        drop(ready_r);
        let s = Sentinel {
            pid,
            ctl_w: Some(ctl_w),
        };
        match r {
            Ok(true) if b[0] == 0 => Ok(s),
            _ => Err(format!(
                "khugepaged sentinel failed to start (status {})",
                b[0]
            )),
        }
    }

    /// `Err` if the sentinel has died (then the khugepaged control no longer holds: its mm
    /// left khugepaged's list, and the scenario's mm may be at the head).
    pub fn check_alive(&mut self) -> Result<(), String> {
        if self.pid <= 0 {
            return Ok(());
        }
        if let Some(st) = sys::waitpid_nohang(self.pid) {
            let pid = self.pid;
            self.pid = 0;
            self.ctl_w = None;
            if crate::sysfs::CHILDREN_KILLED.load(std::sync::atomic::Ordering::SeqCst) {
                return Ok(()); // the panic hook ended the run and killed it
            }
            return Err(format!(
                "the khugepaged sentinel (pid {pid}) {} during the run: the khugepaged control \
                 no longer holds, so khugepaged may have collapsed the scenario's memory; the run \
                 is not valid",
                sys::describe_status(st)
            ));
        }
        Ok(())
    }

    /// Ends the sentinel; `Err` if it had died before.
    pub fn stop(&mut self) -> Result<(), String> {
        let r = self.check_alive();
        if self.pid > 0 {
            self.ctl_w = None;
            sys::kill(self.pid, libc::SIGKILL);
            sys::waitpid(self.pid);
            self.pid = 0;
        }
        r
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

pub fn full_scans() -> Option<u64> {
    std::fs::read_to_string(format!("{}/khugepaged/full_scans", crate::sysfs::THP_DIR))
        .ok()?
        .trim()
        .parse()
        .ok()
}

pub fn khugepaged_pid() -> Option<i32> {
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
    // The wake-up is synchronous (the registering fault or madvise made the thread runnable
    // before the sentinel reported ready), and a pass over the sentinel takes well under a
    // millisecond. So either full_scans moves soon, or the thread was not woken (the list was
    // not empty) and it stays asleep ('S') with an unchanged run time.
    let mut prev = task_state(kpid);
    while t0.elapsed() < Duration::from_millis(500) {
        if full_scans().zip(before).is_some_and(|(now, b)| now > b) {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
        let now = task_state(kpid);
        if t0.elapsed() >= Duration::from_millis(10)
            && matches!((prev, now), (Some((_, a)), Some(('S', b))) if a == b)
        {
            break;
        }
        prev = now;
    }
    // Then require the thread to be asleep with an unchanged run time for 10 ms.
    let mut last = task_state(kpid);
    let mut stable_since = Instant::now();
    while t0.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(2));
        let now = task_state(kpid);
        match (last, now) {
            (Some((_, a)), Some(('S', b))) if a == b => {
                if stable_since.elapsed() >= Duration::from_millis(10) {
                    return None;
                }
            }
            _ => stable_since = Instant::now(),
        }
        last = now;
    }
    Some("could not confirm that khugepaged went back to sleep before the run".into())
}

/// The top frame of a task's kernel stack (`/proc/PID/stack`, root), e.g.
/// `khugepaged+0x453/0x8f0`.
fn stack_top(pid: i32) -> Option<String> {
    let st = std::fs::read_to_string(format!("/proc/{pid}/stack")).ok()?;
    let line = st.lines().next()?;
    Some(line.rsplit(' ').next()?.to_string())
}

/// After [`wait_quiescent`]: the top kernel stack frame of khugepaged sleeping between passes
/// (in `khugepaged_wait_work`, inlined into `khugepaged()` on 6.18: `khugepaged+0x…`).
/// Other sleeps inside a pass (`__flush_work` under `lru_add_drain_all`, the allocation
/// back-off, lock waits) have other top frames.
pub fn learn_idle_frame() -> Result<String, String> {
    let kpid = khugepaged_pid().ok_or("no khugepaged thread")?;
    let (st, _) = task_state(kpid).ok_or("cannot read khugepaged's /proc stat/schedstat")?;
    let top = stack_top(kpid)
        .ok_or_else(|| format!("cannot read /proc/{kpid}/stack (CONFIG_STACKTRACE, root)"))?;
    let func = top.split('+').next().unwrap_or("");
    if st != 'S' || !(func == "khugepaged" || func == "khugepaged_wait_work") {
        return Err(format!(
            "khugepaged is not asleep between passes (state {st}, top frame {top})"
        ));
    }
    Ok(top)
}

/// Waits until khugepaged sleeps at `idle` with a run time that is stable for 2 ms and, with
/// `after`, larger than `after` (it ran since). Returns that run time.
pub fn wait_idle(
    kpid: i32,
    idle: &str,
    after: Option<u64>,
    limit: Duration,
) -> Result<u64, String> {
    let t0 = Instant::now();
    let at_idle = |after: Option<u64>| -> Option<u64> {
        let (st, rt) = task_state(kpid)?;
        let ok =
            st == 'S' && after.is_none_or(|a| rt > a) && stack_top(kpid).as_deref() == Some(idle);
        ok.then_some(rt)
    };
    loop {
        if let Some(rt) = at_idle(after) {
            std::thread::sleep(Duration::from_millis(2));
            if at_idle(after) == Some(rt) {
                return Ok(rt);
            }
            continue;
        }
        if t0.elapsed() > limit {
            let (st, rt) = task_state(kpid).unwrap_or(('?', 0));
            return Err(format!(
                "khugepaged (pid {kpid}) did not {} within {limit:?} (state {st}, run time {rt} ns, top frame {})",
                if after.is_some() { "finish the pass" } else { "become idle" },
                stack_top(kpid).unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Makes khugepaged run exactly `passes` passes (`khugepaged_do_scan`), one at a time.
///
/// `scan_sleep_millisecs_store` sets `khugepaged_sleep_expire = 0` and wakes the thread; the
/// wait in `khugepaged_wait_work` ends, the thread runs one pass, re-arms the expiry with the
/// (unchanged, 24 h) sleep and sleeps again. So each write of the same 24 h value while the
/// thread is idle is exactly one pass. A pass is complete when the thread sleeps at its idle
/// frame (`idle`, see [`learn_idle_frame`]) again with a larger run time. Writing while it is
/// inside a pass would lose the wake-up, so each write waits for idleness first.
pub fn run_passes(passes: u32, idle: &str) -> Result<(), String> {
    for i in 0..passes {
        let kpid = khugepaged_pid()
            .ok_or("khugepaged is not running (PMD-sized THP is disabled): no pass can run")?;
        let rt = wait_idle(kpid, idle, None, Duration::from_secs(10))?;
        crate::sysfs::write_knob(SCAN_SLEEP_KNOB, HUGE_SLEEP_MS)
            .map_err(|e| format!("writing {SCAN_SLEEP_KNOB}: {e}"))?;
        wait_idle(kpid, idle, Some(rt), Duration::from_secs(60))
            .map_err(|e| format!("khugepaged pass {} of {passes}: {e}", i + 1))?;
    }
    Ok(())
}

/// `khugepaged/pages_to_scan`: the budget of one pass.
pub const PAGES_TO_SCAN_KNOB: &str = "khugepaged/pages_to_scan";

/// The largest budget `pages_to_scan_store` accepts (`kstrtouint`); a pass with it always
/// ends at the list head (`khugepaged_do_scan` stops on its second pass through the head).
const REALIGN_BUDGET: u64 = u32::MAX as u64;

/// More mms than this ahead of the sentinel are not mirrored (the measurement would take
/// too long); the run then cannot count khugepaged passes.
const MAX_FOREIGN: usize = 64;

/// Measurements a changing list may spoil before the run gives up.
const MEASURE_ATTEMPTS: usize = 3;

/// The costs of other processes' mms measured earlier in this process, reused while a
/// cheap check confirms them (they change only when such a process maps or exits).
static FOREIGN: std::sync::Mutex<Option<Vec<u64>>> = std::sync::Mutex::new(None);

/// One pass with budget `budget`; returns how far `full_scans` moved.
fn pass_with_budget(idle: &str, budget: u64) -> Result<u64, String> {
    crate::sysfs::write_knob(PAGES_TO_SCAN_KNOB, &budget.to_string())
        .map_err(|e| format!("writing {PAGES_TO_SCAN_KNOB}: {e}"))?;
    let before = full_scans().ok_or("cannot read khugepaged/full_scans")?;
    run_passes(1, idle)?;
    let after = full_scans().ok_or("cannot read khugepaged/full_scans")?;
    Ok(after.saturating_sub(before))
}

/// Whether a pass from the list head with budget `budget` reaches the end of the list
/// (the sentinel, which is last and costs 1): the cursor is put at the head first.
fn wraps_from_head(idle: &str, budget: u64) -> Result<bool, String> {
    pass_with_budget(idle, REALIGN_BUDGET)?;
    Ok(pass_with_budget(idle, budget)? >= 1)
}

/// The smallest `c` in `1..=hi` with `pred(c)` (monotone: false then true), or `None`.
fn smallest_true(
    hi: u64,
    mut pred: impl FnMut(u64) -> Result<bool, String>,
) -> Result<Option<u64>, String> {
    let (mut lo, mut hi, mut found) = (1u64, hi, None);
    while lo <= hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid)? {
            found = Some(mid);
            hi = mid - 1;
        } else {
            lo = mid + 1;
        }
    }
    Ok(found)
}

/// Measures the mms ahead of the sentinel on khugepaged's list, in list order, as their cost
/// in `pages_to_scan` units per visit. The sentinel must be the last mm on the list and no
/// mm may have a THP-eligible VMA (then every mm is scanned whole in one visit, at a cost of
/// one plus one per VMA: `khugepaged_scan_mm_slot` skips ineligible VMAs without checking
/// the budget).
///
/// Only `full_scans` is observable, so the measurement works with suffix sums: from the
/// head, a pass with budget `b` stops after the first mm whose prefix sum reaches `b`; from
/// there, a pass with budget `c` reaches the sentinel (and moves `full_scans`) iff the
/// costs still ahead sum to less than `c`. A binary search over `c` gives each suffix sum.
fn measure_foreign(idle: &str) -> Result<Vec<u64>, String> {
    // T: the sum of all costs ahead of the sentinel; the search's upper bound grows until a
    // pass wraps.
    let mut hi = 64u64;
    while !wraps_from_head(idle, hi)? {
        if hi >= 1 << 24 {
            return Err(format!(
                "khugepaged's list costs more than {hi} pages_to_scan units per pass ahead of the sentinel"
            ));
        }
        hi *= 4;
    }
    let total = smallest_true(hi, |c| wraps_from_head(idle, c))?
        .ok_or("a pass with the search's upper bound did not wrap twice")?
        - 1;
    let mut costs = vec![];
    let (mut prefix, mut rest) = (0u64, total);
    while rest > 0 {
        if costs.len() >= MAX_FOREIGN {
            return Err(format!(
                "more than {MAX_FOREIGN} other processes' mms on khugepaged's list"
            ));
        }
        // Put the cursor after the next mm (a pass from the head with budget prefix + 1
        // stops right after it), then find the costs beyond it.
        let probe = |c: u64| -> Result<bool, String> {
            pass_with_budget(idle, REALIGN_BUDGET)?;
            if pass_with_budget(idle, prefix + 1)? != 0 {
                return Err("the list changed while it was measured".into());
            }
            Ok(pass_with_budget(idle, c)? >= 1)
        };
        let beyond =
            smallest_true(rest, probe)?.ok_or("the list changed while it was measured")? - 1;
        costs.push(rest - beyond);
        prefix += rest - beyond;
        rest = beyond;
    }
    Ok(costs)
}

/// Whether the list ahead of the sentinel still costs `costs` in total (two passes from the
/// head: with the total as budget a pass stops short of the sentinel, with one more it
/// reaches it).
fn confirm_foreign(idle: &str, costs: &[u64]) -> Result<bool, String> {
    let total: u64 = costs.iter().sum();
    if total > 0 && wraps_from_head(idle, total)? {
        return Ok(false);
    }
    wraps_from_head(idle, total + 1)
}

/// Other processes' mms ahead of the sentinel on khugepaged's list, as their costs per visit
/// in list order (empty on a quiet machine), with the scan cursor left at the list head.
///
/// A process that faulted or mapped memory while PMD-sized THP was `always` system-wide
/// stays on khugepaged's list until it exits (`collect_mm_slot` frees only exited mms), and
/// every pass visits it: its VMAs take `pages_to_scan` budget, and the cursor may be left
/// inside the list, so that the next pass does two full scans. The model mirrors such mms
/// (`Kernel::add_khugepaged_foreign_mm`) when it knows their costs. Must be called with the
/// sentinel registered last, PMD-sized THP enabled and khugepaged idle at `idle`; restores
/// `pages_to_scan`.
pub fn foreign_mms(idle: &str) -> Result<Vec<u64>, String> {
    let saved = crate::sysfs::read_knob(PAGES_TO_SCAN_KNOB)
        .map_err(|e| format!("{PAGES_TO_SCAN_KNOB}: {e}"))?;
    let result = (|| -> Result<Vec<u64>, String> {
        let mut cache = FOREIGN.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.as_ref() {
            if confirm_foreign(idle, c)? {
                return Ok(c.clone());
            }
        }
        *cache = None;
        // A registered process that forks puts its child on the list too
        // (`khugepaged_fork`) until the child exits: such short-lived changes pass, so a
        // measurement the list changed under is tried again.
        let mut last = String::new();
        for _ in 0..MEASURE_ATTEMPTS {
            match measure_foreign(idle) {
                Ok(c) if confirm_foreign(idle, &c)? => {
                    *cache = Some(c.clone());
                    return Ok(c);
                }
                Ok(_) => last = "the list changed while it was measured".into(),
                Err(e) => last = e,
            }
        }
        Err(format!("{last} ({MEASURE_ATTEMPTS} attempts)"))
    })();
    let restored = crate::sysfs::write_knob(PAGES_TO_SCAN_KNOB, saved.trim())
        .map_err(|e| format!("restoring {PAGES_TO_SCAN_KNOB}: {e}"));
    let costs = result?;
    restored?;
    Ok(costs)
}
