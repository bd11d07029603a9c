//! userfaultfd on the real kernel against the facts the model is built from (conformance
//! 124-135 as scenarios), with the thpsim process as the monitor. Every count is exact: the worker
//! measures its own minflt around the access, so a resolved userfault counts once (the blocked
//! attempt returns VM_FAULT_RETRY, not counted) and a write to a marker twice.

mod common;
use common::*;

use thpsim_host::HostBackend;
use thpsim_kernel::errno::{Errno, OpError, Signal};
use thpsim_kernel::observe::{Backing, PageMap};
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
            minor: false,
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
    uok(
        b,
        UffdReq::Handler {
            wp,
            missing,
            minor: None,
        },
    );
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

/// What a write-protect case does to the protected range.
#[derive(Clone, Copy, Debug)]
enum Touch {
    /// Writes 4 KiB at this offset.
    Write(u64),
    /// `madvise(MADV_POPULATE_WRITE)` of the whole range.
    PopulateWrite,
}

/// One write-protect case on a 2 MiB MADV_HUGEPAGE range: populate it (or not), open a uffd,
/// register the range for WP, protect it whole, set the monitor policy, touch it, and check
/// the exact outcome.
struct WpCase {
    name: &'static str,
    /// How the range is populated before it is protected (`None`: not at all).
    prefault: Option<Pattern>,
    features: &'static [&'static str],
    /// The range right after UFFDIO_WRITEPROTECT (protecting a whole PMD never splits it).
    protected: PageMap,
    policy: Option<WpPolicy>,
    touch: Touch,
    /// The touch's minor and major faults (`None`: not asserted; the populate's fault, retried
    /// by GUP after the monitor resolved it, was counted as major on a 6.18 host).
    minflt: Option<u64>,
    majflt: Option<u64>,
    /// Messages the monitor received: (flags, arena offset); `None`: not asserted.
    msgs: Option<Vec<(u64, u64)>>,
    /// Counter deltas over the touch.
    deltas: Vec<(&'static str, i64)>,
    /// The range after the touch.
    after: PageMap,
    /// Further checks of the case.
    then: fn(&mut HostBackend),
}

fn wp_cases() -> Vec<WpCase> {
    let nothing = |_: &mut HostBackend| {};
    let hzp_case = |name, policy, split, alloc, after| WpCase {
        name,
        prefault: Some(Pattern::Read),
        features: &[],
        protected: one(Backing::HugeZero, 512),
        policy: Some(policy),
        touch: Touch::Write(0),
        minflt: Some(1),
        majflt: Some(0),
        msgs: Some(vec![(0x3, 0)]),
        deltas: vec![
            ("vmstat.thp_split_pmd", split),
            ("vmstat.thp_fault_alloc", alloc),
        ],
        after,
        then: nothing,
    };
    vec![
        WpCase {
            name: "unpopulated memory without wp_unpopulated: protecting is a no-op",
            prefault: None,
            features: &[],
            protected: one(Backing::None, 512),
            policy: None,
            touch: Touch::Write(0),
            minflt: Some(1),
            majflt: Some(0),
            msgs: Some(vec![]),
            deltas: vec![("uffd.events", 0), ("vmstat.thp_fault_alloc", 1)],
            after: one(Backing::ThpPmd, 512),
            then: nothing,
        },
        WpCase {
            name: "wp_unpopulated installs markers; a marker write takes two faults",
            prefault: None,
            features: &["wp_unpopulated"],
            protected: one(Backing::Marker, 512),
            policy: None,
            touch: Touch::Write(K4),
            minflt: Some(2),
            majflt: Some(0),
            msgs: Some(vec![(0x3, K4)]),
            deltas: vec![
                ("uffd.events", 1),
                ("uffd.wp", 1),
                ("uffd.write", 1),
                ("uffd.missing", 0),
                ("vmstat.thp_fault_alloc", 0),
            ],
            after: vec![
                (Backing::Marker, 1),
                (Backing::Anon, 1),
                (Backing::Marker, 510),
            ],
            then: nothing,
        },
        hzp_case(
            "huge zero PMD protected whole, 4K unprotect: split, the written page anon",
            WpPolicy::Unprotect(K4),
            1,
            0,
            vec![(Backing::Anon, 1), (Backing::Zero, 511)],
        ),
        hzp_case(
            "huge zero PMD protected whole, 2M unprotect: a THP replaces it",
            WpPolicy::Unprotect(M2),
            0,
            1,
            one(Backing::ThpPmd, 512),
        ),
        hzp_case(
            "huge zero PMD protected whole, VMA unprotect: a THP replaces it",
            WpPolicy::UnprotectVma,
            0,
            1,
            one(Backing::ThpPmd, 512),
        ),
        WpCase {
            name: "protected THP, 4K unprotect: the PMD splits and the page is reused",
            prefault: Some(Pattern::Write),
            features: &[],
            protected: one(Backing::ThpPmd, 512),
            policy: None,
            touch: Touch::Write(K4),
            minflt: Some(1),
            majflt: Some(0),
            msgs: Some(vec![(0x3, K4)]),
            deltas: vec![("vmstat.thp_split_pmd", 1)],
            after: one(Backing::ThpPte { order: 9 }, 512),
            then: |b| {
                let sm = b.snapshot(&[(0, M2)]).unwrap().mappings.remove(0).smaps;
                assert_eq!(sm.anon_huge_pages, 0);
                // Unprotecting an exclusive anon page makes it writable again
                // (uffd_wp_range passes MM_CP_TRY_CHANGE_WRITABLE): a second write takes no
                // fault. (`pgreuse` is system-wide, so it is not asserted.)
                assert_eq!(write(b, K4, K4).minflt, 0);
            },
        },
        WpCase {
            name: "wp_async: the PMD splits without a message",
            prefault: Some(Pattern::Write),
            features: &["wp_async"],
            protected: one(Backing::ThpPmd, 512),
            policy: None,
            touch: Touch::Write(0),
            minflt: Some(1),
            majflt: Some(0),
            msgs: Some(vec![]),
            deltas: vec![("vmstat.thp_split_pmd", 1), ("uffd.events", 0)],
            after: one(Backing::ThpPte { order: 9 }, 512),
            then: |b| {
                // The other 511 pages stay protected: each first write is another (async)
                // wp fault.
                assert_eq!(write(b, K4, K4).minflt, 1);
                assert_eq!(write(b, K4, K4).minflt, 0);
            },
        },
        WpCase {
            name: "MADV_POPULATE_WRITE on a protected huge zero PMD is resolved by the monitor",
            prefault: Some(Pattern::Read),
            features: &[],
            protected: one(Backing::HugeZero, 512),
            policy: Some(WpPolicy::Unprotect(M2)),
            touch: Touch::PopulateWrite,
            minflt: None,
            majflt: None,
            msgs: None,
            deltas: vec![("uffd.wp", 1)],
            after: one(Backing::ThpPmd, 512),
            then: nothing,
        },
    ]
}

#[test]
fn write_protect_cases() {
    let _l = lock();
    for c in wp_cases() {
        let n = c.name;
        let Some(mut b) = backend() else { return };
        hugepage_range(&mut b);
        if let Some(p) = c.prefault {
            assert_eq!(access(&mut b, 0, M2, p).minflt, 1, "{n}: prefault");
        }
        let s0 = snap(&mut b);
        open(&mut b, c.features);
        register(&mut b, 0, M2, false, true);
        protect(&mut b, 0, M2);
        let s1 = snap(&mut b);
        assert_eq!(delta(&s0, &s1, "vmstat.thp_split_pmd"), 0, "{n}: protect");
        assert_eq!(pages(&mut b, 0, M2), c.protected, "{n}: protected");
        if let Some(p) = c.policy {
            handler(&mut b, Some(p), None);
        }
        let s1 = snap(&mut b);
        let o = match c.touch {
            Touch::Write(at) => write(&mut b, at, K4),
            Touch::PopulateWrite => madvise(&mut b, 0, M2, Advice::PopulateWrite),
        };
        let s2 = snap(&mut b);
        assert_eq!(o.result, Ok(0), "{n}");
        if let Some(m) = c.minflt {
            assert_eq!(o.minflt, m, "{n}: minflt");
        }
        if let Some(m) = c.majflt {
            assert_eq!(o.majflt, m, "{n}: majflt");
        }
        if let Some(msgs) = &c.msgs {
            assert_eq!(&flags_addrs(&b), msgs, "{n}: messages");
        }
        for &(k, v) in &c.deltas {
            assert_eq!(delta(&s1, &s2, k), v, "{n}: {k}");
        }
        assert_eq!(pages(&mut b, 0, M2), c.after, "{n}: after");
        (c.then)(&mut b);
        b.finish().unwrap();
    }
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
            minor: false,
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
            minor: false,
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
fn fork_child_loses_the_registration() {
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
}

#[test]
fn what_the_host_cannot_run_is_refused_as_not_runnable() {
    let _l = lock();
    let cases: Vec<(&str, Vec<BackendOp>, BackendOp)> = vec![
        (
            "fork of a process whose uffd has UFFD_FEATURE_EVENT_FORK",
            vec![BackendOp::Uffd(UffdReq::Open {
                features: vec!["event_fork".into()],
            })],
            BackendOp::Fork {
                parent: 0,
                child: 1,
            },
        ),
        (
            "MADV_POPULATE_PGTABLE (a model-only proposal)",
            vec![BackendOp::Mmap {
                addr: 0,
                len: M2,
                prot: thpsim_kernel::types::Prot::RW,
                shared: false,
                populate: false,
                fixed: false,
                file: None,
            }],
            BackendOp::Madvise {
                addr: 0,
                len: M2,
                advice: Advice::PopulatePgtable,
            },
        ),
    ];
    for (name, prep, op) in cases {
        let Some(mut b) = backend() else { return };
        for p in &prep {
            assert_eq!(b.exec(p).unwrap().result, Ok(0), "{name}: {p:?}");
        }
        let e = b.exec(&op).unwrap_err();
        assert!(e.is_not_runnable(), "{name}: {e}");
        b.finish().unwrap();
    }
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
