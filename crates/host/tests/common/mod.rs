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
    let mut b = HostBackend::new(HostOptions {
        allow_sysfs: false,
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
