//! `khugepaged scan N` on the real kernel: each pass is one wake-up of the controlled
//! khugepaged thread (see `thpsim_host::khugepaged::run_passes`). The counts below only hold
//! if no other process on the host is registered with khugepaged (other thpsim runs are
//! serialised by the test lock).

mod common;
use common::*;

use thpsim_host::{HostBackend, HostOptions};
use thpsim_kernel::observe::Backing;
use thpsim_kernel::types::Advice;
use thpsim_scenario::ast::Pattern;
use thpsim_scenario::backend::{Backend, BackendOp};

fn sysfs_backend(extra: &[(&str, &str)]) -> HostBackend {
    let mut k = default_knobs();
    k.extend(extra.iter().map(|(a, b)| (a.to_string(), b.to_string())));
    let mut b = HostBackend::new(HostOptions {
        allow_sysfs: true,
        ..Default::default()
    });
    b.setup(&setup_with(k)).expect("setup");
    b
}

fn scan(b: &mut HostBackend, passes: u32) {
    let o = b
        .exec(&BackendOp::KhugepagedScan { passes })
        .unwrap_or_else(|e| panic!("khugepaged scan {passes}: {e}"));
    assert_eq!((o.result, o.minflt, o.majflt), (Ok(0), 0, 0));
}

/// `n` × 2 MiB of order-0 pages at offset 0, then MADV_HUGEPAGE (registers the mm).
fn order0_then_madvise(b: &mut HostBackend, n: u64) {
    mmap(b, 0, n * M2);
    assert_eq!(access(b, 0, n * M2, Pattern::Write).minflt, 512 * n);
    madvise(b, 0, n * M2, Advice::Hugepage);
}

#[test]
fn one_write_is_one_pass() {
    let _l = lock();
    if !host_ready() {
        return;
    }
    let mut b = sysfs_backend(&[]);
    order0_then_madvise(&mut b, 1);
    let s0 = b.snapshot(&[(0, M2)]).unwrap();
    assert_eq!(s0.mappings[0].pages, one(Backing::Anon, 512));
    // [sentinel, main]: one pass scans both mms once: collapse + one full scan.
    scan(&mut b, 1);
    let s1 = b.snapshot(&[(0, M2)]).unwrap();
    assert_eq!(s1.mappings[0].pages, one(Backing::ThpPmd, 512));
    assert_eq!(delta(&s0, &s1, "khugepaged.pages_collapsed"), 1);
    assert_eq!(delta(&s0, &s1, "khugepaged.full_scans"), 1);
    assert_eq!(delta(&s0, &s1, "vmstat.thp_collapse_alloc"), 1);
    // Five passes: five full scans, nothing left to collapse.
    scan(&mut b, 5);
    let s2 = b.snapshot(&[(0, M2)]).unwrap();
    assert_eq!(delta(&s1, &s2, "khugepaged.full_scans"), 5);
    assert_eq!(delta(&s1, &s2, "khugepaged.pages_collapsed"), 0);
    // And nothing happens between ops.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let s3 = b.snapshot(&[]).unwrap();
    assert_eq!(delta(&s2, &s3, "khugepaged.full_scans"), 0);
    b.finish().unwrap();
}

/// pages_to_scan = 514 = sentinel (1) + mm (1) + one range (512): the budget shows that the
/// sentinel costs exactly 1 per visit and that each scan op is exactly one pass.
#[test]
fn pass_budget() {
    let _l = lock();
    if !host_ready() {
        return;
    }
    let mut b = sysfs_backend(&[("khugepaged.pages_to_scan", "514")]);
    order0_then_madvise(&mut b, 3);
    let r = |i: u64| (i * M2, M2);
    let s0 = b.snapshot(&[r(0), r(1), r(2)]).unwrap();
    // Pass 1: sentinel +1, main +1 (+1 per ineligible VMA below the arena), range 0 +512.
    scan(&mut b, 1);
    let s1 = b.snapshot(&[r(0), r(1), r(2)]).unwrap();
    let p: Vec<_> = s1.mappings.iter().map(|m| m.pages.clone()).collect();
    assert_eq!(
        p,
        vec![
            one(Backing::ThpPmd, 512),
            one(Backing::Anon, 512),
            one(Backing::Anon, 512)
        ]
    );
    assert_eq!(delta(&s0, &s1, "khugepaged.pages_collapsed"), 1);
    assert_eq!(delta(&s0, &s1, "khugepaged.full_scans"), 0);
    // Pass 2 resumes at range 1: +1 +512 (collapse drops mmap_lock, the mm is re-entered
    // with +1), then range 2 is scanned before the budget is checked: two collapses.
    scan(&mut b, 1);
    let s2 = b.snapshot(&[r(0), r(1), r(2)]).unwrap();
    assert!(s2
        .mappings
        .iter()
        .all(|m| m.pages == one(Backing::ThpPmd, 512)));
    assert_eq!(delta(&s1, &s2, "khugepaged.pages_collapsed"), 2);
    assert_eq!(delta(&s1, &s2, "khugepaged.full_scans"), 0);
    // Pass 3 finishes main's remaining VMAs: a full scan.
    scan(&mut b, 1);
    let s3 = b.snapshot(&[]).unwrap();
    assert_eq!(delta(&s2, &s3, "khugepaged.full_scans"), 1);
    assert_eq!(delta(&s2, &s3, "khugepaged.pages_collapsed"), 0);
    b.finish().unwrap();
}

/// Pages shared with a live fork child are not collapsed (max_ptes_shared = 256); both
/// mms are on the list (khugepaged_fork). After the child exits the range collapses.
#[test]
fn shared_with_child_then_exit() {
    let _l = lock();
    if !host_ready() {
        return;
    }
    let mut b = sysfs_backend(&[]);
    order0_then_madvise(&mut b, 1);
    b.exec(&BackendOp::Fork {
        parent: 0,
        child: 1,
    })
    .unwrap();
    let s0 = b.snapshot(&[(0, M2)]).unwrap();
    scan(&mut b, 1);
    let s1 = b.snapshot(&[(0, M2)]).unwrap();
    assert_eq!(s1.mappings[0].pages, one(Backing::Anon, 512));
    assert_eq!(delta(&s0, &s1, "vmstat.thp_scan_exceed_share_pte"), 2);
    assert_eq!(delta(&s0, &s1, "khugepaged.full_scans"), 1);
    assert_eq!(delta(&s0, &s1, "khugepaged.pages_collapsed"), 0);
    b.exec(&BackendOp::Exit { proc: 1 }).unwrap();
    scan(&mut b, 1);
    let s2 = b.snapshot(&[(0, M2)]).unwrap();
    assert_eq!(s2.mappings[0].pages, one(Backing::ThpPmd, 512));
    assert_eq!(delta(&s1, &s2, "khugepaged.pages_collapsed"), 1);
    b.finish().unwrap();
}

#[test]
fn not_runnable_ops() {
    let _l = lock();
    if !host_ready() {
        return;
    }
    let mut b = HostBackend::new(HostOptions {
        allow_sysfs: false,
        ..Default::default()
    });
    b.setup(&setup_with(default_knobs())).expect("setup");
    for op in [
        BackendOp::KhugepagedScan { passes: 1 },
        BackendOp::Sleep { ms: 10 },
        BackendOp::Shrink,
    ] {
        let e = b.exec(&op).unwrap_err();
        assert!(e.is_not_runnable(), "{op:?}: {e}");
        eprintln!("{op:?}: {e}");
    }
    assert!(b
        .exec(&BackendOp::KhugepagedScan { passes: 1 })
        .unwrap_err()
        .message()
        .contains("--allow-sysfs"));
    b.finish().unwrap();
}
