//! userfaultfd on the real kernel against the facts the model is built from (conformance
//! 124-135 as scenarios), with the thpsim process as the monitor. Every count is exact: the worker
//! measures its own minflt around the access, so a resolved userfault counts once (the blocked
//! attempt returns VM_FAULT_RETRY, not counted) and a write to a marker twice.

mod common;
use common::*;

use thpsim_host::HostBackend;
use thpsim_kernel::errno::{Errno, OpError, Signal};
use thpsim_kernel::observe::Backing;
use thpsim_kernel::types::Advice;
use thpsim_kernel::userfaultfd::{MissingPolicy, WpPolicy};
use thpsim_scenario::ast::Pattern;
use thpsim_scenario::backend::{Backend, BackendOp, OpOutcome, Snapshot, UffdReq};

fn u(b: &mut HostBackend, r: UffdReq) -> OpOutcome {
    let o = b.exec(&BackendOp::Uffd(r.clone())).unwrap();
    assert_eq!((o.minflt, o.majflt), (0, 0), "{r:?} takes no fault");
    o
}
fn uok(b: &mut HostBackend, r: UffdReq) {
    let o = u(b, r.clone());
    assert_eq!(o.result, Ok(0), "{r:?}");
}
fn open(b: &mut HostBackend, features: &[&str]) {
    uok(
        b,
        UffdReq::Open {
            features: features.iter().map(|s| s.to_string()).collect(),
        },
    );
}
fn register(b: &mut HostBackend, addr: u64, len: u64, missing: bool, wp: bool) {
    uok(
        b,
        UffdReq::Register {
            addr,
            len,
            missing,
            wp,
        },
    );
}
fn protect(b: &mut HostBackend, addr: u64, len: u64) {
    uok(
        b,
        UffdReq::Writeprotect {
            addr,
            len,
            wp: true,
            stride: 0,
        },
    );
}
fn handler(b: &mut HostBackend, wp: Option<WpPolicy>, missing: Option<MissingPolicy>) {
    uok(b, UffdReq::Handler { wp, missing });
}
fn snap(b: &mut HostBackend) -> Snapshot {
    b.snapshot(&[]).unwrap()
}
fn write(b: &mut HostBackend, addr: u64, len: u64) -> OpOutcome {
    access(b, addr, len, Pattern::Write)
}
fn read(b: &mut HostBackend, addr: u64, len: u64) -> OpOutcome {
    access(b, addr, len, Pattern::Read)
}
/// A 2 MiB MADV_HUGEPAGE mapping at arena offset 0 (2 MiB aligned).
fn hugepage_range(b: &mut HostBackend) {
    assert_eq!(mmap(b, 0, M2).result, Ok(0));
    assert_eq!(madvise(b, 0, M2, Advice::Hugepage).result, Ok(0));
}
fn flags_addrs(b: &HostBackend) -> Vec<(u64, u64)> {
    let base = b.arena_base().unwrap();
    b.uffd_msgs()
        .iter()
        .map(|m| (m.flags, m.address - base))
        .collect()
}

#[test]
fn protecting_unpopulated_memory_is_a_no_op_without_wp_unpopulated() {
    let _l = lock();
    let Some(mut b) = backend() else { return };
    hugepage_range(&mut b);
    open(&mut b, &[]);
    register(&mut b, 0, M2, false, true);
    protect(&mut b, 0, M2);
    assert_eq!(pages(&mut b, 0, M2), one(Backing::None, 512));
    let s0 = snap(&mut b);
    let w = write(&mut b, 0, K4);
    assert_eq!((w.result, w.minflt), (Ok(0), 1));
    let s1 = snap(&mut b);
    assert_eq!(b.uffd_msgs().len(), 0, "no message");
    assert_eq!(delta(&s0, &s1, "uffd.events"), 0);
    assert_eq!(delta(&s0, &s1, "vmstat.thp_fault_alloc"), 1);
    assert_eq!(pages(&mut b, 0, M2), one(Backing::ThpPmd, 512));
    b.finish().unwrap();
}

#[test]
fn markers_with_wp_unpopulated_and_two_faults_per_marker_write() {
    let _l = lock();
    let Some(mut b) = backend() else { return };
    hugepage_range(&mut b);
    open(&mut b, &["wp_unpopulated"]);
    register(&mut b, 0, M2, false, true);
    protect(&mut b, 0, M2);
    assert_eq!(pages(&mut b, 0, M2), one(Backing::Marker, 512));
    let s0 = snap(&mut b);
    let w = write(&mut b, K4, K4);
    assert_eq!((w.result, w.minflt, w.majflt), (Ok(0), 2, 0));
    let s1 = snap(&mut b);
    assert_eq!(flags_addrs(&b), vec![(0x3, K4)]);
    assert_eq!(delta(&s0, &s1, "uffd.events"), 1);
    assert_eq!(delta(&s0, &s1, "uffd.wp"), 1);
    assert_eq!(delta(&s0, &s1, "uffd.write"), 1);
    assert_eq!(delta(&s0, &s1, "uffd.missing"), 0);
    assert_eq!(delta(&s0, &s1, "vmstat.thp_fault_alloc"), 0);
    assert_eq!(
        pages(&mut b, 0, 3 * K4),
        vec![
            (Backing::Marker, 1),
            (Backing::Anon, 1),
            (Backing::Marker, 1)
        ]
    );
    b.finish().unwrap();
}

#[test]
fn huge_zero_pmd_protected_whole_then_4k_or_2m_unprotect() {
    let _l = lock();
    for (policy, split, alloc, map) in [
        (
            WpPolicy::Unprotect(K4),
            1,
            0,
            vec![(Backing::Anon, 1), (Backing::Zero, 511)],
        ),
        (WpPolicy::Unprotect(M2), 0, 1, one(Backing::ThpPmd, 512)),
        (WpPolicy::UnprotectVma, 0, 1, one(Backing::ThpPmd, 512)),
    ] {
        let Some(mut b) = backend() else { return };
        hugepage_range(&mut b);
        assert_eq!(read(&mut b, 0, M2).minflt, 1);
        assert_eq!(pages(&mut b, 0, M2), one(Backing::HugeZero, 512));
        open(&mut b, &[]);
        register(&mut b, 0, M2, false, true);
        protect(&mut b, 0, M2);
        assert_eq!(pages(&mut b, 0, M2), one(Backing::HugeZero, 512));
        handler(&mut b, Some(policy), None);
        let s0 = snap(&mut b);
        let w = write(&mut b, 0, K4);
        let s1 = snap(&mut b);
        assert_eq!((w.result, w.minflt, w.majflt), (Ok(0), 1, 0), "{policy:?}");
        assert_eq!(delta(&s0, &s1, "vmstat.thp_split_pmd"), split, "{policy:?}");
        assert_eq!(
            delta(&s0, &s1, "vmstat.thp_fault_alloc"),
            alloc,
            "{policy:?}"
        );
        assert_eq!(pages(&mut b, 0, M2), map, "{policy:?}");
        assert_eq!(flags_addrs(&b), vec![(0x3, 0)], "{policy:?}");
        b.finish().unwrap();
    }
}

#[test]
fn protected_thp_4k_unprotect_splits_and_reuses() {
    let _l = lock();
    // pgreuse is a global counter other processes move: the minimum over a few runs.
    let mut reuse = Vec::new();
    for _ in 0..5 {
        let Some(mut b) = backend() else { return };
        hugepage_range(&mut b);
        assert_eq!(write(&mut b, 0, M2).minflt, 1);
        open(&mut b, &[]);
        let s0 = snap(&mut b);
        register(&mut b, 0, M2, false, true);
        protect(&mut b, 0, M2);
        let s1 = snap(&mut b);
        assert_eq!(
            delta(&s0, &s1, "vmstat.thp_split_pmd"),
            0,
            "protected whole"
        );
        assert_eq!(pages(&mut b, 0, M2), one(Backing::ThpPmd, 512));
        let w = write(&mut b, K4, K4);
        let s2 = snap(&mut b);
        assert_eq!((w.result, w.minflt, w.majflt), (Ok(0), 1, 0));
        assert_eq!(flags_addrs(&b), vec![(0x3, 0x1000)]);
        assert_eq!(delta(&s1, &s2, "vmstat.thp_split_pmd"), 1);
        reuse.push(delta(&s1, &s2, "vmstat.pgreuse"));
        assert_eq!(pages(&mut b, 0, M2), one(Backing::ThpPte { order: 9 }, 512));
        let sm = b.snapshot(&[(0, M2)]).unwrap().mappings.remove(0).smaps;
        assert_eq!(sm.anon_huge_pages, 0);
        // The page is writable again: a second write takes no fault.
        assert_eq!(write(&mut b, K4, K4).minflt, 0);
        b.finish().unwrap();
    }
    // Unprotecting an exclusive anon page makes it writable again (uffd_wp_range passes
    // MM_CP_TRY_CHANGE_WRITABLE): shown above by the second write taking no fault. `pgreuse`
    // is system-wide (other processes' COW reuse moves it), so it is not asserted.
    let _ = reuse;
}

#[test]
fn async_mode_splits_without_a_message() {
    let _l = lock();
    let Some(mut b) = backend() else { return };
    hugepage_range(&mut b);
    assert_eq!(write(&mut b, 0, M2).minflt, 1);
    open(&mut b, &["wp_async"]);
    register(&mut b, 0, M2, false, true);
    protect(&mut b, 0, M2);
    let s0 = snap(&mut b);
    assert_eq!(write(&mut b, 0, K4).minflt, 1);
    let s1 = snap(&mut b);
    assert_eq!(b.uffd_msgs().len(), 0);
    assert_eq!(delta(&s0, &s1, "vmstat.thp_split_pmd"), 1);
    assert_eq!(delta(&s0, &s1, "uffd.events"), 0);
    // The other 511 pages stay protected: each write is another (async) wp fault.
    assert_eq!(write(&mut b, K4, K4).minflt, 1);
    assert_eq!(write(&mut b, K4, K4).minflt, 0);
    b.finish().unwrap();
}

#[test]
fn missing_faults_copy_and_zeropage() {
    let _l = lock();
    let Some(mut b) = backend() else { return };
    hugepage_range(&mut b);
    open(&mut b, &[]);
    register(&mut b, 0, M2, true, false);
    let s0 = snap(&mut b);
    let r = read(&mut b, 0, K4);
    assert_eq!((r.result, r.minflt, r.majflt), (Ok(0), 1, 0));
    assert_eq!(flags_addrs(&b), vec![(0x0, 0)]);
    assert_eq!(
        pages(&mut b, 0, 2 * K4),
        vec![(Backing::Anon, 1), (Backing::None, 1)]
    );
    let w = write(&mut b, 8 * K4, K4);
    assert_eq!((w.result, w.minflt), (Ok(0), 1));
    let s1 = snap(&mut b);
    assert_eq!(flags_addrs(&b), vec![(0x0, 0), (0x1, 8 * K4)]);
    assert_eq!(
        delta(&s0, &s1, "vmstat.thp_fault_alloc"),
        0,
        "MISSING aborts the THP fault"
    );
    assert_eq!(delta(&s0, &s1, "uffd.events"), 2);
    assert_eq!(delta(&s0, &s1, "uffd.missing"), 2);
    assert_eq!(delta(&s0, &s1, "uffd.write"), 1);
    assert_eq!(delta(&s0, &s1, "uffd.wp"), 0);
    // Explicit COPY over a populated page: EEXIST; ZEROPAGE elsewhere.
    let c = u(
        &mut b,
        UffdReq::Copy {
            addr: 0,
            len: K4,
            wp: false,
        },
    );
    assert_eq!(c.result, Err(OpError::Errno(Errno::EEXIST)));
    uok(
        &mut b,
        UffdReq::Zeropage {
            addr: 16 * K4,
            len: 4 * K4,
        },
    );
    assert_eq!(pages(&mut b, 16 * K4, 4 * K4), one(Backing::Zero, 4));
    uok(
        &mut b,
        UffdReq::Copy {
            addr: 20 * K4,
            len: 2 * K4,
            wp: false,
        },
    );
    assert_eq!(pages(&mut b, 20 * K4, 2 * K4), one(Backing::Anon, 2));
    handler(&mut b, None, Some(MissingPolicy::Zeropage(K4)));
    assert_eq!(read(&mut b, 32 * K4, K4).minflt, 1);
    assert_eq!(pages(&mut b, 32 * K4, K4), one(Backing::Zero, 1));
    // A 64 KiB block policy: one message fills the 16 pages (those still missing).
    handler(&mut b, None, Some(MissingPolicy::Copy(64 << 10)));
    let w = write(&mut b, 64 * K4, 64 << 10);
    assert_eq!((w.result, w.minflt), (Ok(0), 1));
    assert_eq!(pages(&mut b, 64 * K4, 16 * K4), one(Backing::Anon, 16));
    assert_eq!(b.uffd_msgs().len(), 4);
    b.finish().unwrap();
}

#[test]
fn sigbus_feature_errors_and_unregister() {
    let _l = lock();
    let Some(mut b) = backend() else { return };
    assert_eq!(mmap(&mut b, 0, M2).result, Ok(0));
    // No uffd yet.
    let e = u(
        &mut b,
        UffdReq::Register {
            addr: 0,
            len: M2,
            missing: true,
            wp: false,
        },
    );
    assert_eq!(e.result, Err(OpError::Errno(Errno::EBADF)));
    open(&mut b, &["sigbus"]);
    let again = u(&mut b, UffdReq::Open { features: vec![] });
    assert_eq!(again.result, Err(OpError::Errno(Errno::EBUSY)));
    register(&mut b, 0, M2, true, false);
    assert_eq!(write(&mut b, M2 - K4, K4).minflt, 0, "not yet");
    let s0 = snap(&mut b);
    let r = access(&mut b, 0, 4 * K4, Pattern::Read);
    assert_eq!(
        (r.result, r.minflt, r.majflt),
        (Err(OpError::Signal(Signal::Sigbus)), 0, 0)
    );
    let s1 = snap(&mut b);
    assert_eq!(delta(&s0, &s1, "uffd.events"), 0);
    uok(&mut b, UffdReq::Unregister { addr: 0, len: M2 });
    assert_eq!(read(&mut b, 0, K4).minflt, 1);
    let e = u(
        &mut b,
        UffdReq::Register {
            addr: 1,
            len: K4,
            missing: false,
            wp: true,
        },
    );
    assert_eq!(e.result, Err(OpError::Errno(Errno::EINVAL)));
    let e = u(
        &mut b,
        UffdReq::Writeprotect {
            addr: 0,
            len: K4,
            wp: true,
            stride: 0,
        },
    );
    assert_eq!(
        e.result,
        Err(OpError::Errno(Errno::ENOENT)),
        "not WP-registered"
    );
    // Read-then-write stopped at the read; the accesses before it ran.
    register(&mut b, 0, M2, true, false);
    let rw = access(&mut b, 0, 3 * K4, Pattern::ReadWrite);
    assert_eq!(rw.result, Err(OpError::Signal(Signal::Sigbus)));
    assert_eq!(
        rw.minflt, 1,
        "page 0 maps the zero page (read above): its write is a COW fault; page 1's read: SIGBUS"
    );
    b.finish().unwrap();
}

#[test]
fn fork_child_loses_registration_event_fork_not_runnable() {
    let _l = lock();
    let Some(mut b) = backend() else { return };
    assert_eq!(mmap(&mut b, 0, M2).result, Ok(0));
    open(&mut b, &[]);
    register(&mut b, 0, M2, true, true);
    b.exec(&BackendOp::Fork {
        parent: 0,
        child: 1,
    })
    .unwrap();
    b.exec(&BackendOp::Switch { proc: 1 }).unwrap();
    let w = write(&mut b, 0, K4);
    assert_eq!((w.result, w.minflt), (Ok(0), 1));
    assert_eq!(b.uffd_msgs().len(), 0, "the child has no uffd");
    let e = u(
        &mut b,
        UffdReq::Writeprotect {
            addr: 0,
            len: K4,
            wp: true,
            stride: 0,
        },
    );
    assert_eq!(e.result, Err(OpError::Errno(Errno::EBADF)));
    b.exec(&BackendOp::Switch { proc: 0 }).unwrap();
    let w = write(&mut b, 0, K4);
    assert_eq!((w.result, w.minflt), (Ok(0), 1));
    assert_eq!(
        flags_addrs(&b),
        vec![(0x1, 0)],
        "the parent still is registered"
    );
    b.finish().unwrap();

    let Some(mut b) = backend() else { return };
    open(&mut b, &["event_fork"]);
    let e = b
        .exec(&BackendOp::Fork {
            parent: 0,
            child: 1,
        })
        .unwrap_err();
    assert!(e.is_not_runnable(), "{e}");
    b.finish().unwrap();
}

#[test]
fn populate_pgtable_is_not_runnable() {
    let _l = lock();
    let Some(mut b) = backend() else { return };
    assert_eq!(mmap(&mut b, 0, M2).result, Ok(0));
    let e = b
        .exec(&BackendOp::Madvise {
            addr: 0,
            len: M2,
            advice: Advice::PopulatePgtable,
        })
        .unwrap_err();
    assert!(e.is_not_runnable(), "{e}");
    b.finish().unwrap();
}

#[test]
fn populate_write_on_protected_range_is_resolved_by_the_monitor() {
    let _l = lock();
    let Some(mut b) = backend() else { return };
    hugepage_range(&mut b);
    assert_eq!(read(&mut b, 0, M2).minflt, 1);
    open(&mut b, &[]);
    register(&mut b, 0, M2, false, true);
    protect(&mut b, 0, M2);
    handler(&mut b, Some(WpPolicy::Unprotect(M2)), None);
    let s0 = snap(&mut b);
    let p = madvise(&mut b, 0, M2, Advice::PopulateWrite);
    let s1 = snap(&mut b);
    assert_eq!(p.result, Ok(0));
    assert_eq!(delta(&s0, &s1, "uffd.wp"), 1);
    assert_eq!(pages(&mut b, 0, M2), one(Backing::ThpPmd, 512));
    b.finish().unwrap();
}

#[test]
fn strided_unprotect_runs_in_address_order_and_stops_at_the_first_error() {
    let _l = lock();
    let Some(mut b) = backend() else { return };
    assert_eq!(mmap(&mut b, 0, 2 * M2).result, Ok(0));
    assert_eq!(madvise(&mut b, 0, M2, Advice::Hugepage).result, Ok(0));
    assert_eq!(write(&mut b, 0, M2).minflt, 1);
    open(&mut b, &[]);
    register(&mut b, 0, M2, false, true);
    protect(&mut b, 0, M2);
    let s0 = snap(&mut b);
    // One UFFDIO_WRITEPROTECT per 4 KiB over 4 MiB: the first 512 succeed, the 513th (not
    // registered) fails with ENOENT and ends the op.
    let e = u(
        &mut b,
        UffdReq::Writeprotect {
            addr: 0,
            len: 2 * M2,
            wp: false,
            stride: K4,
        },
    );
    assert_eq!(e.result, Err(OpError::Errno(Errno::ENOENT)));
    let s1 = snap(&mut b);
    assert_eq!(
        delta(&s0, &s1, "vmstat.thp_split_pmd"),
        1,
        "the first 4 KiB split the PMD"
    );
    assert_eq!(pages(&mut b, 0, M2), one(Backing::ThpPte { order: 9 }, 512));
    let w = write(&mut b, M2 - K4, K4);
    assert_eq!(w.result, Ok(0));
    assert_eq!(
        b.uffd_msgs().len(),
        0,
        "the last page of the range was unprotected too"
    );
    b.finish().unwrap();
}
