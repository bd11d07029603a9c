//! Tests that write THP sysfs knobs. They run under the cross-process test lock, and the
//! sysfs-changing parts share one test function per concern so they never overlap.

mod common;
use common::*;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use thpsim_host::sysfs::{journal_path, read_knob};
use thpsim_host::{HostBackend, HostOptions};
use thpsim_kernel::observe::Backing;
use thpsim_kernel::types::Advice;
use thpsim_scenario::ast::Pattern;
use thpsim_scenario::backend::Backend;

fn knobs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn sysfs_backend(extra: &[(&str, &str)]) -> HostBackend {
    let mut k = default_knobs();
    k.extend(knobs(extra));
    let mut b = HostBackend::new(HostOptions {
        allow_sysfs: true,
        ..Default::default()
    });
    b.setup(&setup_with(k)).expect("setup");
    b
}

/// Everything the backend may touch in these tests, to compare before/after.
fn knob_state() -> Vec<(String, String)> {
    [
        "enabled",
        "hugepages-64kB/enabled",
        "khugepaged/scan_sleep_millisecs",
        "use_zero_page",
    ]
    .iter()
    .map(|k| (k.to_string(), read_knob(k).unwrap()))
    .collect()
}

#[test]
fn not_runnable_without_allow_sysfs() {
    let _l = lock(); // `new` may repair a journal another test is checking
    if !host_ready() {
        return;
    }
    let mut b = HostBackend::new(HostOptions {
        allow_sysfs: false,
        ..Default::default()
    });
    let cur = read_knob("enabled").unwrap();
    let want = if cur == "always" { "never" } else { "always" };
    let e = b
        .setup(&setup_with(knobs(&[("enabled", want)])))
        .unwrap_err();
    assert!(e.is_not_runnable());
    assert_eq!(
        e.message(),
        format!("host has enabled={cur}, scenario wants {want}; rerun with --allow-sysfs")
    );
    assert!(b.warnings().is_empty() || !b.warnings().iter().any(|w| w.contains("knobs restored")));
}

#[test]
fn mthp_64k_and_restore_after_finish_and_panic() {
    let _l = lock();
    if !host_ready() {
        return;
    }
    let before = knob_state();
    {
        let mut b = sysfs_backend(&[("hugepages-64kB.enabled", "always")]);
        assert_eq!(read_knob("hugepages-64kB/enabled").unwrap(), "always");
        assert_eq!(
            read_knob("khugepaged/scan_sleep_millisecs").unwrap(),
            "86400000"
        );
        assert!(journal_path().exists());
        mmap(&mut b, 0, M2);
        let s0 = b.snapshot(&[]).unwrap();
        let w = access(&mut b, 0, M2, Pattern::Write);
        assert_eq!(w.minflt, 32);
        let s1 = b.snapshot(&[(0, M2)]).unwrap();
        assert_eq!(s1.mappings[0].pages, one(Backing::ThpPte { order: 4 }, 512));
        // A system-wide counter: with 64K `always`, every other process on the host (the test
        // harness's own threads included) allocates 64K folios too, so only a lower bound holds.
        assert!(
            counter(&s1, "mthp.64kB.anon_fault_alloc") - counter(&s0, "mthp.64kB.anon_fault_alloc")
                >= 32
        );
        b.finish().unwrap();
    }
    assert_eq!(knob_state(), before, "restored after finish");
    assert!(!journal_path().exists());

    // A panic inside a run (the backend is dropped while unwinding; the hook restores first).
    let r = std::panic::catch_unwind(|| {
        let _b = sysfs_backend(&[("hugepages-64kB.enabled", "always")]);
        assert_eq!(read_knob("hugepages-64kB/enabled").unwrap(), "always");
        panic!("deliberate panic inside a host run");
    });
    assert!(r.is_err());
    assert_eq!(knob_state(), before, "restored after panic");
    assert!(!journal_path().exists());
}

/// Entry point for the child processes of `restore_after_sigterm_and_sigkill`.
#[test]
fn sigterm_child_entry() {
    let Ok(mode) = std::env::var("THPSIM_SIGNAL_CHILD") else {
        return;
    };
    let mut b = sysfs_backend(&[("hugepages-64kB.enabled", "always")]);
    mmap(&mut b, 0, M2);
    println!("READY {mode}");
    std::thread::sleep(Duration::from_secs(30));
    drop(b);
}

fn spawn_child(mode: &str) -> std::process::Child {
    let mut c = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sigterm_child_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("THPSIM_SIGNAL_CHILD", mode)
        .env("THPSIM_TEST_LOCK_HELD", "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = BufReader::new(c.stdout.take().unwrap());
    loop {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "child exited before READY"
        );
        if line.contains("READY") {
            break;
        }
    }
    std::mem::forget(out);
    c
}

#[test]
fn restore_after_sigterm_and_sigkill() {
    let _l = lock();
    if !host_ready() {
        return;
    }
    let before = knob_state();

    let mut c = spawn_child("term");
    assert_eq!(read_knob("hugepages-64kB/enabled").unwrap(), "always");
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
    let st = c.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        st.signal(),
        Some(libc::SIGTERM),
        "re-raised SIGTERM: {st:?}"
    );
    assert_eq!(knob_state(), before, "restored by the SIGTERM handler");
    assert!(!journal_path().exists());

    // SIGKILL cannot be handled: the journal survives and the next backend repairs it.
    let mut c = spawn_child("kill");
    assert_eq!(read_knob("hugepages-64kB/enabled").unwrap(), "always");
    c.kill().unwrap();
    c.wait().unwrap();
    assert_eq!(read_knob("hugepages-64kB/enabled").unwrap(), "always");
    assert!(journal_path().exists());
    std::thread::sleep(Duration::from_millis(50)); // its worker and sentinel see EOF and exit
    let b = HostBackend::new(HostOptions {
        allow_sysfs: true,
        ..Default::default()
    });
    assert!(
        b.warnings()
            .iter()
            .any(|w| w.contains("restored THP sysfs knobs")),
        "{:?}",
        b.warnings()
    );
    assert_eq!(knob_state(), before, "restored from the journal");
    assert!(!journal_path().exists());
}

/// 512 order-0 pages, then MADV_HUGEPAGE registers the mm with khugepaged. With the control
/// nothing is collapsed within a second.
#[test]
fn khugepaged_control_holds() {
    let _l = lock();
    if !host_ready() {
        return;
    }
    let before = knob_state();
    let mut b = sysfs_backend(&[]);
    assert!(
        !b.warnings().iter().any(|w| w.contains("could not confirm")),
        "{:?}",
        b.warnings()
    );
    mmap(&mut b, 0, M2);
    assert_eq!(access(&mut b, 0, M2, Pattern::Write).minflt, 512);
    let s0 = b.snapshot(&[]).unwrap();
    madvise(&mut b, 0, M2, Advice::Hugepage);
    std::thread::sleep(Duration::from_secs(1));
    let s1 = b.snapshot(&[(0, M2)]).unwrap();
    assert_eq!(s1.mappings[0].pages, one(Backing::Anon, 512));
    assert_eq!(
        counter(&s1, "khugepaged.pages_collapsed"),
        counter(&s0, "khugepaged.pages_collapsed")
    );
    b.finish().unwrap();
    assert_eq!(knob_state(), before);
}

/// The experiment the control exists for: without it, khugepaged (woken because the worker's
/// mm is the first on its list) collapses the range within a second. Not a regular test: it
/// depends on no other process being registered with khugepaged.
#[test]
#[ignore]
fn khugepaged_collapses_without_control() {
    let _l = lock();
    if !host_ready() {
        return;
    }
    let mut b = HostBackend::new(HostOptions {
        allow_sysfs: true,
        ..Default::default()
    });
    b.set_khugepaged_control(false);
    b.setup(&setup_with(default_knobs())).unwrap();
    mmap(&mut b, 0, M2);
    access(&mut b, 0, M2, Pattern::Write);
    let s0 = b.snapshot(&[]).unwrap();
    madvise(&mut b, 0, M2, Advice::Hugepage);
    let t = std::time::Instant::now();
    let mut collapsed = None;
    while t.elapsed() < Duration::from_secs(2) {
        let s = b.snapshot(&[(0, M2)]).unwrap();
        if s.mappings[0].pages == one(Backing::ThpPmd, 512) {
            collapsed = Some((
                t.elapsed(),
                counter(&s, "khugepaged.pages_collapsed")
                    - counter(&s0, "khugepaged.pages_collapsed"),
            ));
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!("collapsed: {collapsed:?}");
    assert!(collapsed.is_some());
}
