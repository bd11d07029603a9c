//! Shared helpers of the host tests: skip-or-fail when the host cannot run them, and one
//! cross-process lock (flock) so tests that read global counters or write sysfs never overlap
//! (cargo nextest runs tests in parallel processes, cargo test in parallel threads).
#![allow(dead_code)]

use std::fs::File;

use thpsim_host::{HostBackend, HostOptions};
use thpsim_kernel::observe::{Backing, PageMap};
use thpsim_kernel::types::{Advice, Prot};
use thpsim_scenario::ast::Pattern;
use thpsim_scenario::backend::{Backend, BackendOp, OpOutcome, Setup, Snapshot};

pub const M2: u64 = 2 << 20;
pub const K4: u64 = 4096;

/// True if the host can run the backend. Otherwise prints why and returns false — unless
/// `CI=true`, where a missing capability fails the test.
pub fn host_ready() -> bool {
    match thpsim_host::preflight() {
        Ok(()) => true,
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("CI=true and the host backend cannot run: {e}");
            }
            eprintln!("skipping host test: {e}");
            false
        }
    }
}

pub struct Lock(Option<File>);

/// Serialises host tests across threads and processes. A child process spawned by a test
/// that holds the lock sets THPSIM_TEST_LOCK_HELD=1 and skips it.
pub fn lock() -> Lock {
    if std::env::var("THPSIM_TEST_LOCK_HELD").is_ok() {
        return Lock(None);
    }
    let f = thpsim_host::host_tests_lock();
    Lock(Some(f))
}

/// The host's default THP settings (mainline 6.18 defaults, `Sysfs::default()`) the basic tests assume.
pub fn default_knobs() -> Vec<(String, String)> {
    [
        ("enabled", "madvise"),
        ("hugepages-2048kB.enabled", "inherit"),
        ("use_zero_page", "1"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect()
}

pub fn setup_with(sysfs: Vec<(String, String)>) -> Setup {
    Setup {
        profile: "6.18".into(),
        switches: vec![],
        memory: 16 << 30,
        swap: 0,
        swap_device: thpsim_kernel::SwapDevice::Zram,
        memcg: None,
        sysfs,
        arena_len: 1 << 30,
    }
}

pub fn mmap(b: &mut dyn Backend, addr: u64, len: u64) -> OpOutcome {
    b.exec(&BackendOp::Mmap {
        addr,
        len,
        prot: Prot::RW,
        shared: false,
        populate: false,
        fixed: false,
        file: None,
    })
    .unwrap()
}
pub fn madvise(b: &mut dyn Backend, addr: u64, len: u64, advice: Advice) -> OpOutcome {
    b.exec(&BackendOp::Madvise { addr, len, advice }).unwrap()
}
pub fn access(b: &mut dyn Backend, addr: u64, len: u64, pattern: Pattern) -> OpOutcome {
    b.exec(&BackendOp::Access {
        addr,
        len,
        stride: K4,
        pattern,
        subset: None,
    })
    .unwrap()
}
pub fn pages(b: &mut dyn Backend, addr: u64, len: u64) -> PageMap {
    b.snapshot(&[(addr, len)]).unwrap().mappings.remove(0).pages
}
pub fn counter(s: &Snapshot, k: &str) -> i64 {
    *s.counters
        .get(k)
        .unwrap_or_else(|| panic!("counter {k} missing"))
}
pub fn one(b: Backing, n: u64) -> PageMap {
    vec![(b, n)]
}

/// A host backend with the default knobs and no sysfs writes; `None` (skip) where the host
/// cannot run it, except under `CI=true`.
pub fn backend() -> Option<HostBackend> {
    if !host_ready() {
        return None;
    }
    // Pinned (allow_sysfs): every knob the model knows is set to the scenario's value or the
    // model's default for the run and restored after, so the tests do not depend on how the
    // host booted (an image with hugepages-16kB/enabled=always gives 16 KiB folios to an
    // unpinned run's faults).
    let mut b = HostBackend::new(HostOptions {
        allow_sysfs: true,
        ..Default::default()
    });
    match b.setup(&setup_with(default_knobs())) {
        Ok(()) => Some(b),
        Err(e) if e.is_not_runnable() && std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("skipping: {e}");
            None
        }
        Err(e) => panic!("setup: {e}"),
    }
}

/// A counter's change between two snapshots.
pub fn delta(a: &Snapshot, b: &Snapshot, k: &str) -> i64 {
    counter(b, k) - counter(a, k)
}

/// The script of [`KnobGuard`]'s watchdog: `$1` is the test process's pid, then pairs of knob
/// file and value. It waits for a line on stdin: `done` (the guard restored the knobs itself)
/// or end of file (the test process died, even by SIGKILL, before it could): then it writes
/// every value back and removes a journal that the dead process's own host run left, whose
/// "originals" are the test's changed values and would otherwise be applied by the next run.
const WATCHDOG: &str = r#"read x
[ "$x" = done ] && exit 0
pid=$1; journal=$2; shift 2
while [ $# -gt 1 ]; do printf '%s' "$2" > "$1" 2>/dev/null; shift 2; done
grep -q "\"pid\": $pid," "$journal" 2>/dev/null && rm -f "$journal" "$journal.tmp"
exit 0"#;

/// Saves every THP knob the model knows (that this host has) and puts it back when dropped,
/// also when the test process is killed: a watchdog process (`sh`) holds the saved values
/// and restores them if the test dies before the guard's drop (issue 9: a killed test left
/// knobs changed with nothing to recover them).
pub struct KnobGuard {
    saved: Vec<(String, String)>,
    watchdog: Option<(std::process::Child, std::process::ChildStdin)>,
}

impl KnobGuard {
    pub fn save() -> KnobGuard {
        use thpsim_host::sysfs::{knob_file, read_knob};
        let saved: Vec<(String, String)> = thpsim_kernel::sysfs::knobs()
            .into_iter()
            .filter_map(|k| read_knob(&k.path).ok().map(|v| (k.path, v)))
            .collect();
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c")
            .arg(WATCHDOG)
            .arg("thpsim-knob-watchdog")
            .arg(std::process::id().to_string())
            .arg(thpsim_host::sysfs::journal_path());
        for (rel, v) in &saved {
            cmd.arg(knob_file(rel)).arg(v);
        }
        let watchdog = cmd
            .stdin(std::process::Stdio::piped())
            .spawn()
            .ok()
            .and_then(|mut c| c.stdin.take().map(|i| (c, i)));
        assert!(watchdog.is_some(), "cannot start the knob watchdog (sh)");
        KnobGuard { saved, watchdog }
    }

    /// The value a knob had when the guard saved it.
    pub fn saved(&self, rel: &str) -> Option<&str> {
        self.saved
            .iter()
            .find(|(r, _)| r == rel)
            .map(|(_, v)| v.as_str())
    }
}

impl Drop for KnobGuard {
    fn drop(&mut self) {
        use std::io::Write;
        use thpsim_host::sysfs::{read_knob, write_knob};
        for (rel, v) in &self.saved {
            if read_knob(rel).ok().as_deref() != Some(v.as_str()) {
                let _ = write_knob(rel, v);
            }
        }
        if let Some((mut child, mut stdin)) = self.watchdog.take() {
            let _ = stdin.write_all(b"done\n");
            drop(stdin);
            let _ = child.wait();
        }
    }
}

/// Runs this test binary's `child_entry` with `env` set (a host run that prints READY once it
/// holds what the test checks), calls `while_ready` with its pid, SIGKILLs it, and returns
/// what the next run's journal recovery says it did.
pub fn kill_child_and_recover(env: (&str, &str), while_ready: impl FnOnce(u32)) -> String {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let mut c = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(env.0, env.1)
        .env("THPSIM_TEST_LOCK_HELD", "1")
        .env_remove("THPSIM_SYSFS_JOURNAL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut r = BufReader::new(c.stdout.take().unwrap());
    while !line.contains("READY") {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "child ended early");
    }
    while_ready(c.id());
    assert!(thpsim_host::sysfs::journal_path().exists());
    c.kill().unwrap();
    c.wait().unwrap();
    // Its workers die with it (PR_SET_PDEATHSIG); the next run repairs the rest.
    let t0 = Instant::now();
    loop {
        match thpsim_host::sysfs::recover_journal() {
            Ok(Some(n)) => return n,
            _ if t0.elapsed() > Duration::from_secs(5) => panic!("nothing recovered"),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
