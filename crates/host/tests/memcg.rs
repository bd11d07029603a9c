//! The run's memory cgroup (`--allow-memcg`, `thpsim_host::memcg`): made for a scenario with
//! a `memcg` line as a child of the runner's own, holding the workers, read for the
//! `memcg.*` observables, removed at the end, after a worker's OOM kill, and after a SIGKILL
//! of the runner (by the next run's journal recovery); refused without the option. Every
//! test ends with no `thpsim-*` cgroup left. Child processes are this test binary re-run on
//! `child_entry`.

mod common;
use common::*;

use std::time::Duration;

use thpsim_host::sysfs::journal_path;
use thpsim_host::{HostBackend, HostOptions};
use thpsim_kernel::errno::{OpError, Signal};
use thpsim_kernel::memcontrol::MemcgConfig;
use thpsim_scenario::ast::Pattern;
use thpsim_scenario::backend::{Backend, BackendOp, Setup};

fn opts(allow_memcg: bool) -> HostOptions {
    HostOptions {
        allow_sysfs: true,
        no_wait: false,
        allow_swap: false,
        allow_memcg,
    }
}

fn memcg_setup(limit: u64) -> Setup {
    Setup {
        memcg: Some(MemcgConfig {
            limit,
            swappiness: 60,
        }),
        ..setup_with(default_knobs())
    }
}

/// This process's `thpsim-*` memory cgroups (a run's, made under the runner's own).
fn cgroups_left() -> Vec<String> {
    let own = thpsim_host::memcg::own_memcg().unwrap();
    std::fs::read_dir(own)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("thpsim-"))
        .collect()
}

fn ready() -> bool {
    host_ready() && thpsim_host::memcg::own_memcg().is_ok() && cgroups_left().is_empty()
}

#[test]
fn child_entry() {
    if std::env::var("THPSIM_MEMCG_CHILD").is_err() {
        return;
    }
    let mut b = HostBackend::new(opts(true));
    b.setup(&memcg_setup(64 << 20)).expect("setup");
    mmap(&mut b, 0, 1 << 20);
    access(&mut b, 0, 1 << 20, Pattern::Write);
    println!("READY");
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_run_charges_its_cgroup_and_removes_it() {
    let _l = lock();
    if !ready() {
        return;
    }
    let mut b = HostBackend::new(opts(true));
    b.setup(&memcg_setup(64 << 20)).expect("setup");
    let name = format!("thpsim-{}", std::process::id());
    assert_eq!(cgroups_left(), vec![name.clone()]);
    let dir = thpsim_host::memcg::own_memcg().unwrap().join(&name);
    let limit = std::fs::read_to_string(dir.join("memory.limit_in_bytes")).unwrap();
    assert_eq!(limit.trim(), (64u64 << 20).to_string());
    mmap(&mut b, 0, 1 << 20);
    let s0 = b.snapshot(&[(0, 1 << 20)]).unwrap();
    access(&mut b, 0, 1 << 20, Pattern::Write);
    let s1 = b.snapshot(&[(0, 1 << 20)]).unwrap();
    assert_eq!(delta(&s0, &s1, "memcg.rss"), 1 << 20);
    assert_eq!(delta(&s0, &s1, "memcg.failcnt"), 0);
    assert!(delta(&s0, &s1, "memcg.usage") >= 1 << 20);
    b.finish().expect("finish");
    assert_eq!(cgroups_left(), Vec::<String>::new());
    assert!(!journal_path().exists());
}

#[test]
fn without_the_option_the_scenario_is_not_runnable() {
    let _l = lock();
    if !ready() {
        return;
    }
    let mut b = HostBackend::new(opts(false));
    let e = b.setup(&memcg_setup(64 << 20)).unwrap_err();
    assert!(
        e.is_not_runnable() && e.message().contains("--allow-memcg"),
        "{}",
        e.message()
    );
    drop(b);
    assert_eq!(cgroups_left(), Vec::<String>::new());
}

#[test]
fn an_oom_killed_worker_is_reported_and_the_cgroup_removed() {
    let _l = lock();
    if !ready() {
        return;
    }
    let mut b = HostBackend::new(opts(true));
    b.setup(&memcg_setup(8 << 20)).expect("setup");
    mmap(&mut b, 0, 16 << 20);
    let out = b
        .exec(&BackendOp::Fork {
            parent: 0,
            child: 1,
        })
        .unwrap();
    assert_eq!(out.result, Ok(0));
    b.exec(&BackendOp::Switch { proc: 1 }).unwrap();
    let out = b
        .exec(&BackendOp::Access {
            addr: 0,
            len: 16 << 20,
            stride: K4,
            pattern: Pattern::Write,
            subset: None,
        })
        .unwrap();
    assert_eq!(out.result, Err(OpError::Signal(Signal::Sigkill)));
    b.exec(&BackendOp::Switch { proc: 0 }).unwrap();
    let s = b.snapshot(&[]).unwrap();
    assert_eq!(counter(&s, "memcg.oom_kill"), 1);
    b.finish().expect("finish");
    assert_eq!(cgroups_left(), Vec::<String>::new());
}

#[test]
fn a_killed_runs_cgroup_is_removed_by_the_next() {
    let _l = lock();
    if !ready() {
        return;
    }
    let mut name = String::new();
    let note = kill_child_and_recover(("THPSIM_MEMCG_CHILD", "1"), |child| {
        name = format!("thpsim-{child}");
        assert_eq!(cgroups_left(), vec![name.clone()]);
    });
    assert!(note.contains("removal of memory cgroup"), "{note}");
    assert!(note.contains(&name), "{note}");
    assert_eq!(cgroups_left(), Vec::<String>::new());
    assert!(!journal_path().exists());
}
