//! The run's memory cgroup for a scenario's `memcg limit=…` line (`--allow-memcg`), on the
//! cgroup v1 memory controller (`/sys/fs/cgroup/memory`).
//!
//! * **Where.** A child `thpsim-<pid>` of the runner's own memory cgroup (from
//!   `/proc/self/cgroup`): the run's charges stay inside whatever limits the runner itself
//!   lives under (a container's), and the cgroup is made where this process may make one.
//! * **Setup** ([`crate::sysfs::Session::memcg_setup`]): the journal names the directory
//!   before it is made; then `mkdir`, `memory.limit_in_bytes`, `memory.swappiness`. The main
//!   worker is moved in (`cgroup.procs`) before the scenario's first op, so every later fork
//!   is in it too; charges made before the move stay where they were
//!   (`memory.move_charge_at_immigrate` is 0), and observables are deltas.
//! * **Teardown** on every exit path (the normal end, the signal handlers, the panic hook,
//!   the next run's journal recovery): the workers are killed and reaped first, tasks still
//!   in the cgroup are moved to its parent, and it is removed with `rmdir` (retried while
//!   the last task's exit finishes); the charges of page cache left behind go to the parent
//!   (an offline memcg).
//! * **Observables** (`memcg.*`): `usage` (`memory.usage_in_bytes`), `failcnt`, `oom_kill`
//!   (`memory.oom_control`), and memory.stat's `rss`, `rss_huge`, `shmem`, `cache`, `swap`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The cgroup v1 memory controller's mount.
pub const ROOT: &str = "/sys/fs/cgroup/memory";
const PREFIX: &str = "thpsim-";

/// The runner's own memory cgroup directory.
pub fn own_memcg() -> Result<PathBuf, String> {
    let t = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    let rel = t
        .lines()
        .find_map(|l| {
            let mut it = l.splitn(3, ':');
            let (_, ctrl, path) = (it.next()?, it.next()?, it.next()?);
            ctrl.split(',')
                .any(|c| c == "memory")
                .then(|| path.to_string())
        })
        .ok_or("no cgroup v1 memory controller for this process (/proc/self/cgroup)")?;
    let p = Path::new(ROOT).join(rel.trim_start_matches('/'));
    if !p.join("memory.limit_in_bytes").exists() {
        return Err(format!("{} is not a cgroup v1 memory cgroup", p.display()));
    }
    Ok(p)
}

/// The run's cgroup path: a `thpsim-<pid>` child of the runner's own.
pub fn run_path() -> Result<PathBuf, String> {
    Ok(own_memcg()?.join(format!("{PREFIX}{}", std::process::id())))
}

/// Whether a journal may name this directory: under the memory controller, named by us.
pub fn path_ok(p: &str) -> bool {
    let path = Path::new(p);
    p.starts_with(&format!("{ROOT}/"))
        && !p.contains("/../")
        && !p.contains("/./")
        && path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(PREFIX))
            .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

fn write(p: &Path, file: &str, v: &str) -> Result<(), String> {
    std::fs::write(p.join(file), v)
        .map_err(|e| format!("cannot write {v} to {}/{file}: {e}", p.display()))
}

/// Makes the cgroup and sets its limit and swappiness. The caller journaled it.
pub fn create(p: &Path, limit: u64, swappiness: u32) -> Result<(), String> {
    std::fs::create_dir(p)
        .map_err(|e| format!("cannot make memory cgroup {}: {e}", p.display()))?;
    write(p, "memory.limit_in_bytes", &limit.to_string())?;
    write(p, "memory.swappiness", &swappiness.to_string())
}

/// Moves a process (and so its later forks) into the cgroup.
pub fn attach(p: &Path, pid: i32) -> Result<(), String> {
    write(p, "cgroup.procs", &pid.to_string())
}

/// `FLUSH_TIME` of `mm/memcontrol.c` (2 s) and a margin: the periodic
/// `flush_memcg_stats_dwork` flushes every memcg's pending per-CPU stat updates; a read of
/// memory.stat flushes them itself only past `MEMCG_CHARGE_BATCH` × CPUs pending updates,
/// so a small change (one page) shows only after the periodic flush (FINDINGS §33).
pub const STAT_FLUSH_WAIT: std::time::Duration = std::time::Duration::from_millis(2200);

/// Waits out [`STAT_FLUSH_WAIT`]: the memcg's stats are then what its pages are.
pub fn wait_for_stat_flush() {
    std::thread::sleep(STAT_FLUSH_WAIT);
}

/// The `memcg.*` observables.
pub fn counters(p: &Path) -> Result<BTreeMap<String, i64>, String> {
    let read = |f: &str| {
        std::fs::read_to_string(p.join(f)).map_err(|e| format!("{}/{f}: {e}", p.display()))
    };
    let num = |s: &str| s.trim().parse::<i64>().unwrap_or(0);
    let mut c = BTreeMap::new();
    c.insert("memcg.usage".into(), num(&read("memory.usage_in_bytes")?));
    c.insert("memcg.failcnt".into(), num(&read("memory.failcnt")?));
    let oom = read("memory.oom_control")?;
    let kv = |t: &str, k: &str| {
        t.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix(' ').map(num))
            .unwrap_or(0)
    };
    c.insert("memcg.oom_kill".into(), kv(&oom, "oom_kill"));
    let stat = read("memory.stat")?;
    for k in ["rss", "rss_huge", "shmem", "cache", "swap"] {
        c.insert(format!("memcg.{k}"), kv(&stat, k));
    }
    Ok(c)
}

/// Reads every file range this process maps (its executable's text and data, its shared
/// libraries), once per process, so that their page-cache pages are cached, and charged to the
/// runner's memcg, before a worker moves into the scenario's: a text page a worker first
/// touches inside the cgroup would be charged to it (`memcg.cache`), which is the harness's
/// memory, not the scenario's. A freshly built binary (CI's) has most of its text uncached.
pub fn warm_own_file_pages() {
    use std::os::unix::fs::FileExt;
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
            return;
        };
        let mut buf = vec![0u8; 1 << 16];
        for l in maps.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (Some(range), Some(off), Some(path)) = (f.first(), f.get(2), f.get(5)) else {
                continue;
            };
            if !path.starts_with('/') {
                continue;
            }
            let (Some((a, b)), Ok(mut off)) = (range.split_once('-'), u64::from_str_radix(off, 16))
            else {
                continue;
            };
            let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
                continue;
            };
            let Ok(file) = std::fs::File::open(path) else {
                continue;
            };
            let end = off + (b - a);
            while off < end {
                match file.read_at(&mut buf, off) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => off += n as u64,
                }
            }
        }
    });
}

/// Pages of the worker processes outside the arena that are charged to the cgroup (by
/// `/proc/PID/pagemap` and `/proc/kpagecgroup`, each page frame once), as (anonymous, file):
/// the workers' own copy-on-write copies of their stack and data after a `fork` (some 80 pages
/// per fork on this host), which memory.stat's `rss` counts, and page-cache pages of their
/// executable and libraries that a worker was the first to read (a code path no process had
/// run since boot), which its `cache` counts. Neither is the scenario's.
pub fn worker_pages(p: &Path, pids: &[i32], arena: (u64, u64)) -> Result<(u64, u64), String> {
    use std::os::unix::fs::{FileExt, MetadataExt};
    let ino = std::fs::metadata(p)
        .map_err(|e| format!("{}: {e}", p.display()))?
        .ino();
    let kpc =
        std::fs::File::open("/proc/kpagecgroup").map_err(|e| format!("/proc/kpagecgroup: {e}"))?;
    let mut seen = std::collections::BTreeSet::new();
    let mut file_seen = std::collections::BTreeSet::new();
    for &pid in pids {
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
            .map_err(|e| format!("/proc/{pid}/maps: {e}"))?;
        let pm = std::fs::File::open(format!("/proc/{pid}/pagemap"))
            .map_err(|e| format!("/proc/{pid}/pagemap: {e}"))?;
        for l in maps.lines() {
            let mut f = l.split_whitespace();
            let (Some(range), Some(perms)) = (f.next(), f.next()) else {
                continue;
            };
            let Some((a, b)) = range.split_once('-') else {
                continue;
            };
            let (Ok(start), Ok(end)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16))
            else {
                continue;
            };
            // [vsyscall] is not in pagemap. Private mappings hold anonymous copies; mappings
            // of a path hold page-cache pages.
            let path = f.nth(3).is_some_and(|x| x.starts_with('/'));
            if (!perms.ends_with('p') && !path) || start >= 0xffff_0000_0000_0000 {
                continue;
            }
            if start < arena.1 && end > arena.0 {
                continue;
            }
            let n = ((end - start) / 4096) as usize;
            let mut buf = vec![0u8; n * 8];
            pm.read_exact_at(&mut buf, start / 4096 * 8)
                .map_err(|e| format!("/proc/{pid}/pagemap: {e}"))?;
            for e in buf.chunks_exact(8) {
                let v = u64::from_le_bytes(e.try_into().expect("8 bytes"));
                // Present (bit 63); bit 61: a file page or shared anonymous.
                if v & (1 << 63) == 0 {
                    continue;
                }
                let file = v & (1 << 61) != 0;
                if file && !path {
                    continue;
                }
                let set = if file { &mut file_seen } else { &mut seen };
                let pfn = v & ((1 << 55) - 1);
                if pfn == 0 || !set.insert(pfn) {
                    continue;
                }
                let mut c = [0u8; 8];
                if kpc.read_exact_at(&mut c, pfn * 8).is_ok() && u64::from_le_bytes(c) == ino {
                    continue;
                }
                set.remove(&pfn);
            }
        }
    }
    Ok((seen.len() as u64, file_seen.len() as u64))
}

/// Moves whatever is left in the cgroup to its parent and removes it (retrying while an
/// exiting task is still listed). Nothing to do when it is gone.
pub fn teardown(p: &Path) -> Result<(), String> {
    if !p.exists() {
        return Ok(());
    }
    let parent = p.parent().ok_or("memory cgroup without a parent")?;
    for _ in 0..200 {
        if let Ok(t) = std::fs::read_to_string(p.join("cgroup.procs")) {
            for pid in t.lines() {
                let _ = std::fs::write(parent.join("cgroup.procs"), pid);
            }
        }
        match std::fs::remove_dir(p) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
    std::fs::remove_dir(p).map_err(|e| format!("cannot remove memory cgroup {}: {e}", p.display()))
}

/// `rmdir` of the NUL-terminated path, retried for up to 2 s (an OOM-killed or just reaped
/// task leaves the cgroup a moment later). Async-signal-safe; the workers must be dead.
pub(crate) fn teardown_raw(path: &[u8]) -> bool {
    for _ in 0..200 {
        // SAFETY: `path` is NUL-terminated (built by `cstr_into`); rmdir and nanosleep are
        // async-signal-safe.
        unsafe {
            if libc::rmdir(path.as_ptr().cast()) == 0 {
                return true;
            }
            if *libc::__errno_location() == libc::ENOENT {
                return true;
            }
            let ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 10_000_000,
            };
            libc::nanosleep(&ts, std::ptr::null_mut());
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::path_ok;

    /// A journal may only name a `thpsim-<pid>` directory under the memory controller: a
    /// planted journal cannot make recovery remove (or empty) anything else.
    #[test]
    fn journal_paths_are_checked() {
        assert!(path_ok("/sys/fs/cgroup/memory/process_api/abc/thpsim-1234"));
        assert!(path_ok("/sys/fs/cgroup/memory/thpsim-7"));
        for bad in [
            "/sys/fs/cgroup/memory",
            "/sys/fs/cgroup/memory/",
            "/sys/fs/cgroup/memory/process_api",
            "/sys/fs/cgroup/memory/thpsim-",
            "/sys/fs/cgroup/memory/thpsim-12x",
            "/sys/fs/cgroup/memory/../memory/thpsim-1",
            "/sys/fs/cgroup/cpu/thpsim-1",
            "/tmp/thpsim-1",
            "thpsim-1",
        ] {
            assert!(!path_ok(bad), "{bad}");
        }
    }
}
