//! mlock/munlock and mremap on the real kernel (mlock of part of a THP, mremap to a 2 MiB-aligned
//! and an unaligned destination; conformance 136-148 as scenarios). Fault counts are
//! exact: the worker's warm-up runs both handlers, so a window holds only the scenario's
//! faults (mlock's population faults; mremap takes none) — also in a forked worker.

mod common;
use common::*;

use thpsim_host::HostBackend;
use thpsim_kernel::errno::{Errno, OpError, Signal};
use thpsim_kernel::observe::Backing;
use thpsim_kernel::types::Advice;
use thpsim_scenario::ast::Pattern;
use thpsim_scenario::backend::{Backend, BackendOp, OpOutcome, Snapshot};

fn mlock(b: &mut HostBackend, addr: u64, len: u64, lock: bool) -> OpOutcome {
    b.exec(&BackendOp::Mlock { addr, len, lock }).unwrap()
}
fn mremap(b: &mut HostBackend, old: u64, len: u64, new: u64) -> OpOutcome {
    b.exec(&BackendOp::Mremap {
        old,
        len,
        new_len: len,
        new: Some(new),
    })
    .unwrap()
}
fn snap(b: &mut HostBackend, addr: u64, len: u64) -> Snapshot {
    b.snapshot(&[(addr, len)]).unwrap()
}
fn errno(e: i32) -> Result<u64, OpError> {
    Err(OpError::Errno(Errno(e)))
}

/// A 2 MiB MADV_HUGEPAGE mapping at `at`, written (one PMD THP).
fn thp(b: &mut HostBackend, at: u64) {
    assert_eq!(mmap(b, at, M2).result, Ok(at));
    assert_eq!(madvise(b, at, M2, Advice::Hugepage).result, Ok(0));
    assert_eq!(access(b, at, M2, Pattern::Write).minflt, 1);
    assert_eq!(pages(b, at, M2), one(Backing::ThpPmd, 512));
}

#[test]
fn mlock_part_of_thp_splits_pmd_and_munlock_merges() {
    let _l = lock();
    let Some(mut b) = backend() else { return };
    thp(&mut b, 0);
    let s0 = snap(&mut b, 0, M2);
    let o = mlock(&mut b, M2 / 2, K4, true);
    assert_eq!((o.result, o.minflt, o.majflt), (Ok(0), 0, 0));
    let s1 = snap(&mut b, 0, M2);
    assert_eq!(delta(&s0, &s1, "vmstat.thp_split_pmd"), 1);
    assert_eq!(delta(&s0, &s1, "vmstat.thp_split_page"), 0);
    assert_eq!(s1.mappings[0].smaps.locked, 4);
    assert_eq!(s1.mappings[0].smaps.anon_huge_pages, 0);
    assert_eq!(s1.mappings[0].pages, one(Backing::ThpPte { order: 9 }, 512));
    // Locked VMAs refuse MADV_DONTNEED / MADV_FREE.
    let d = madvise(&mut b, M2 / 2, K4, Advice::Dontneed);
    assert_eq!((d.result, d.minflt), (errno(libc::EINVAL), 0));
    let d = madvise(&mut b, M2 / 2, K4, Advice::Free);
    assert_eq!((d.result, d.minflt), (errno(libc::EINVAL), 0));
    // munlock: the VMAs merge back, so MADV_COLLAPSE finds one VMA covering the block.
    let o = mlock(&mut b, M2 / 2, K4, false);
    assert_eq!((o.result, o.minflt), (Ok(0), 0));
    assert_eq!(snap(&mut b, 0, M2).mappings[0].smaps.locked, 0);
    let c = madvise(&mut b, 0, M2, Advice::Collapse);
    assert_eq!(c.result, Ok(0));
    assert_eq!(pages(&mut b, 0, M2), one(Backing::ThpPmd, 512));
}

#[test]
fn mlock_whole_thp_keeps_pmd() {
    let _l = lock();
    let Some(mut b) = backend() else { return };
    thp(&mut b, 0);
    let s0 = snap(&mut b, 0, M2);
    let o = mlock(&mut b, 0, M2, true);
    assert_eq!((o.result, o.minflt), (Ok(0), 0));
    let s1 = snap(&mut b, 0, M2);
    assert_eq!(delta(&s0, &s1, "vmstat.thp_split_pmd"), 0);
    assert_eq!(s1.mappings[0].smaps.locked, 2048);
    assert_eq!(s1.mappings[0].pages, one(Backing::ThpPmd, 512));
}

#[test]
fn mlock_populates_and_stops_at_a_hole() {
    let _l = lock();
    let Some(mut b) = backend() else { return };
    // Untouched, no MADV_HUGEPAGE: one write fault per page.
    assert_eq!(mmap(&mut b, 0, M2 / 2).result, Ok(0));
    let o = mlock(&mut b, 0, M2 / 2, true);
    assert_eq!((o.result, o.minflt, o.majflt), (Ok(0), 256, 0));
    assert_eq!(pages(&mut b, 0, M2 / 2), one(Backing::Anon, 256));
    // MADV_HUGEPAGE 2 MiB block: one THP fault.
    assert_eq!(mmap(&mut b, 2 * M2, M2).result, Ok(2 * M2));
    assert_eq!(madvise(&mut b, 2 * M2, M2, Advice::Hugepage).result, Ok(0));
    let s0 = snap(&mut b, 2 * M2, M2);
    let o = mlock(&mut b, 2 * M2, M2, true);
    assert_eq!((o.result, o.minflt), (Ok(0), 1));
    let s1 = snap(&mut b, 2 * M2, M2);
    assert_eq!(delta(&s0, &s1, "vmstat.thp_fault_alloc"), 1);
    assert_eq!(s1.mappings[0].pages, one(Backing::ThpPmd, 512));
    assert_eq!(s1.mappings[0].smaps.locked, 2048);
    // A hole after a VMA: ENOMEM, and do_mlock does not populate.
    assert_eq!(mmap(&mut b, 4 * M2, M2 / 2).result, Ok(4 * M2));
    let o = mlock(&mut b, 4 * M2, M2, true);
    assert_eq!((o.result, o.minflt), (errno(libc::ENOMEM), 0));
    assert_eq!(pages(&mut b, 4 * M2, M2 / 2), one(Backing::None, 256));
    // Starting in a hole.
    let o = mlock(&mut b, 6 * M2, K4, true);
    assert_eq!((o.result, o.minflt), (errno(libc::ENOMEM), 0));
}

#[test]
fn mremap_thp_aligned_moves_pmd() {
    let _l = lock();
    let Some(mut b) = backend() else { return };
    thp(&mut b, 0);
    assert_eq!(mmap(&mut b, 2 * M2, 2 * M2).result, Ok(2 * M2));
    let s0 = snap(&mut b, 0, M2);
    let o = mremap(&mut b, 0, M2, 3 * M2);
    assert_eq!((o.result, o.minflt, o.majflt), (Ok(3 * M2), 0, 0));
    let s1 = snap(&mut b, 3 * M2, M2);
    assert_eq!(delta(&s0, &s1, "vmstat.thp_split_pmd"), 0);
    assert_eq!(s1.mappings[0].pages, one(Backing::ThpPmd, 512));
    assert_eq!(s1.mappings[0].smaps.anon_huge_pages, 2048);
    assert_eq!(pages(&mut b, 0, M2), one(Backing::None, 512));
    // The SIGSEGV prediction follows the move: the old range is a hole now.
    let w = access(&mut b, 0, K4, Pattern::Write);
    assert_eq!(
        (w.result, w.minflt),
        (Err(OpError::Signal(Signal::Sigsegv)), 0)
    );
    let w = access(&mut b, 3 * M2, M2, Pattern::Write);
    assert_eq!((w.result, w.minflt), (Ok(0), 0));
}

#[test]
fn mremap_thp_unaligned_splits_pmd() {
    let _l = lock();
    let Some(mut b) = backend() else { return };
    thp(&mut b, 0);
    assert_eq!(mmap(&mut b, 2 * M2, 2 * M2).result, Ok(2 * M2));
    let s0 = snap(&mut b, 0, M2);
    let o = mremap(&mut b, 0, M2, 2 * M2 + K4);
    assert_eq!((o.result, o.minflt), (Ok(2 * M2 + K4), 0));
    let s1 = snap(&mut b, 2 * M2 + K4, M2);
    assert_eq!(delta(&s0, &s1, "vmstat.thp_split_pmd"), 1);
    assert_eq!(delta(&s0, &s1, "vmstat.thp_split_page"), 0);
    assert_eq!(s1.mappings[0].pages, one(Backing::ThpPte { order: 9 }, 512));
    // Errors: overlap, unaligned source, a source starting in a hole.
    let o = mremap(&mut b, 2 * M2 + K4, M2, 2 * M2 + 2 * K4);
    assert_eq!((o.result, o.minflt), (errno(libc::EINVAL), 0));
    let o = mremap(&mut b, 2 * M2 + K4 + 1, K4, 0);
    assert_eq!(o.result, errno(libc::EINVAL));
    let o = mremap(&mut b, 0, K4, 2 * M2);
    assert_eq!(o.result, errno(libc::EFAULT));
}

#[test]
fn mlock_and_mremap_after_fork_take_no_stray_faults() {
    let _l = lock();
    let Some(mut b) = backend() else { return };
    thp(&mut b, 0);
    assert_eq!(mmap(&mut b, 2 * M2, 2 * M2).result, Ok(2 * M2));
    let f = b
        .exec(&BackendOp::Fork {
            parent: 0,
            child: 1,
        })
        .unwrap();
    assert_eq!(f.result, Ok(0));
    for p in [1, 0] {
        b.exec(&BackendOp::Switch { proc: p }).unwrap();
        // The THP is shared with the other process: mlock populates with write faults, so
        // locking 4 KiB of it takes one COW fault (after the PMD split) and nothing else.
        let o = mlock(&mut b, 0, K4, true);
        assert_eq!(
            (o.result, o.minflt, o.majflt),
            (Ok(0), 1, 0),
            "mlock in {p}"
        );
        let o = mlock(&mut b, 0, K4, false);
        assert_eq!(
            (o.result, o.minflt, o.majflt),
            (Ok(0), 0, 0),
            "munlock in {p}"
        );
        let o = mremap(&mut b, M2 / 2, M2 / 2, 3 * M2);
        assert_eq!(
            (o.result, o.minflt, o.majflt),
            (Ok(3 * M2), 0, 0),
            "mremap in {p}"
        );
        let o = mremap(&mut b, 3 * M2, M2 / 2, M2 / 2);
        assert_eq!(
            (o.result, o.minflt, o.majflt),
            (Ok(M2 / 2), 0, 0),
            "mremap back in {p}"
        );
    }
}

fn resize(b: &mut HostBackend, old: u64, len: u64, new_len: u64, new: Option<u64>) -> OpOutcome {
    b.exec(&BackendOp::Mremap {
        old,
        len,
        new_len,
        new,
    })
    .unwrap()
}

/// mremap with a new size on the real kernel (conformance 810–820 as scenarios): a shrink
/// in place splits a THP cut mid-way, a grow in place is ENOMEM where something is mapped
/// and EFAULT across the VMA's end, and a grown mlocked VMA moved with MREMAP_FIXED
/// populates its new part (the faults are the op's).
#[test]
fn mremap_resize_shrink_grow_and_populate() {
    let _l = lock();
    let Some(mut b) = backend() else { return };
    thp(&mut b, 0);
    let s0 = snap(&mut b, 0, M2);
    let o = resize(&mut b, 0, M2, M2 / 2, None);
    assert_eq!((o.result, o.minflt, o.majflt), (Ok(0), 0, 0));
    let s1 = snap(&mut b, 0, M2);
    assert_eq!(delta(&s0, &s1, "vmstat.thp_split_pmd"), 1);
    assert_eq!(delta(&s0, &s1, "vmstat.thp_deferred_split_page"), 1);
    assert_eq!(s1.mappings[0].smaps.size, 1024);
    // A neighbour in the way, then a range across the VMA's end.
    assert_eq!(mmap(&mut b, M2, K4).result, Ok(M2));
    let o = resize(&mut b, 0, M2 / 2, M2 + K4, None);
    assert_eq!((o.result, o.minflt), (errno(libc::ENOMEM), 0));
    let o = resize(&mut b, 0, M2, 2 * M2, None);
    assert_eq!((o.result, o.minflt), (errno(libc::EFAULT), 0));
    // Up to the neighbour (no merge: only the grown VMA has VM_HUGEPAGE): in place.
    let o = resize(&mut b, 0, M2 / 2, M2, None);
    assert_eq!((o.result, o.minflt), (Ok(0), 0));
    assert_eq!(snap(&mut b, 0, M2).mappings[0].smaps.size, 2048);
    // Locked, grown by 1 MiB while moving: 256 population faults at the destination.
    assert_eq!(mlock(&mut b, 0, M2, true).result, Ok(0));
    let o = resize(&mut b, 0, M2, M2 + M2 / 2, Some(4 * M2));
    assert_eq!((o.result, o.minflt), (Ok(4 * M2), 256));
    assert_eq!(pages(&mut b, 4 * M2 + M2, M2 / 2), one(Backing::Anon, 256));
}
