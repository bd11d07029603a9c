//! fork / as / exit on the real kernel (conformance 116-123 state the same facts as scenarios), and
//! MADV_FREE / MADV_COLLAPSE as checks of the observation code. The fork op must not leak the
//! workers' own copy-on-write faults (stack, buffers, errno) into measured windows: every
//! count below is exact.

mod common;
use common::*;

use thpsim_host::HostBackend;
use thpsim_kernel::observe::{Backing, PageMap};
use thpsim_kernel::types::Advice;
use thpsim_scenario::ast::Pattern;
use thpsim_scenario::backend::{Backend, BackendOp, OpOutcome};

fn fork(b: &mut HostBackend, parent: u32, child: u32) -> OpOutcome {
    b.exec(&BackendOp::Fork { parent, child }).unwrap()
}
fn switch(b: &mut HostBackend, proc: u32) {
    let o = b.exec(&BackendOp::Switch { proc }).unwrap();
    assert_eq!((o.result, o.minflt, o.majflt), (Ok(0), 0, 0));
}
fn exit(b: &mut HostBackend, proc: u32) {
    let o = b.exec(&BackendOp::Exit { proc }).unwrap();
    assert_eq!((o.result, o.minflt, o.majflt), (Ok(0), 0, 0));
}
fn write_at(b: &mut HostBackend, addr: u64, len: u64) -> OpOutcome {
    access(b, addr, len, Pattern::Write)
}
fn thp_pte(n: u64) -> (Backing, u64) {
    (Backing::ThpPte { order: 9 }, n)
}

/// A 2 MiB MADV_HUGEPAGE mapping at offset 0, written (one PMD THP).
fn thp(b: &mut HostBackend) {
    assert_eq!(mmap(b, 0, M2).result, Ok(0));
    assert_eq!(madvise(b, 0, M2, Advice::Hugepage).result, Ok(0));
    assert_eq!(write_at(b, 0, M2).minflt, 1);
    assert_eq!(pages(b, 0, M2), one(Backing::ThpPmd, 512));
}

/// Ops that take no fault, in the current process: reads of mapped memory, a madvise with
/// and without error, an mprotect. Any COW fault on the worker's own memory would show here.
fn quiet(b: &mut HostBackend) {
    let r = access(b, 0, M2, Pattern::Read);
    assert_eq!((r.result, r.minflt, r.majflt), (Ok(0), 0, 0), "read");
    let m = madvise(b, 0, M2, Advice::Normal);
    assert_eq!((m.minflt, m.majflt), (0, 0), "madvise");
    let e = madvise(b, 1, K4, Advice::Normal);
    assert!(e.result.is_err());
    assert_eq!((e.minflt, e.majflt), (0, 0), "madvise EINVAL");
}

#[test]
fn fork_child_writes_shared_thp() {
    let _l = lock();
    let Some(mut b) = backend() else { return };
    thp(&mut b);
    let f = fork(&mut b, 0, 1);
    assert_eq!((f.result, f.minflt, f.majflt), (Ok(0), 0, 0));
    let p0 = b.process_pid(0).unwrap();
    let p1 = b.process_pid(1).unwrap();
    assert_ne!(p0, p1);
    // The parent is untouched and takes no stray faults.
    quiet(&mut b);
    assert_eq!(pages(&mut b, 0, M2), one(Backing::ThpPmd, 512));
    // The child shares the THP by PMD (copy_huge_pmd).
    switch(&mut b, 1);
    assert_eq!(b.worker_pid(), Some(p1));
    quiet(&mut b);
    let s0 = b.snapshot(&[(0, M2)]).unwrap();
    assert_eq!(s0.mappings[0].pages, one(Backing::ThpPmd, 512));
    assert_eq!(s0.mappings[0].smaps.anon_huge_pages, 2048);
    // #9: 1 fault, thp_split_pmd +1, 1 order-0 copy + 511 PTEs into the shared THP.
    let w = write_at(&mut b, 0, 1);
    assert_eq!((w.result, w.minflt, w.majflt), (Ok(0), 1, 0));
    let s1 = b.snapshot(&[(0, M2)]).unwrap();
    assert_eq!(delta(&s0, &s1, "vmstat.thp_split_pmd"), 1);
    assert_eq!(
        s1.mappings[0].pages,
        vec![(Backing::Anon, 1), thp_pte(511)] as PageMap
    );
    assert_eq!(s1.mappings[0].smaps.anon_huge_pages, 0);
    // The parent keeps its PMD.
    switch(&mut b, 0);
    assert_eq!(pages(&mut b, 0, M2), one(Backing::ThpPmd, 512));
    // #10: the child writes the rest: 511 faults, 511 copies.
    switch(&mut b, 1);
    let w = write_at(&mut b, 0, M2);
    assert_eq!(w.minflt, 511);
    assert_eq!(pages(&mut b, 0, M2), one(Backing::Anon, 512));
    quiet(&mut b);
    b.finish().unwrap();
}

#[test]
fn parent_writes_while_child_alive() {
    let _l = lock();
    let Some(mut b) = backend() else { return };
    thp(&mut b);
    assert_eq!(fork(&mut b, 0, 1).minflt, 0);
    let s0 = b.snapshot(&[]).unwrap();
    // #12: the parent splits its PMD and copies every page (1 + 511 faults).
    let w = write_at(&mut b, 0, 1);
    assert_eq!(w.minflt, 1);
    let s1 = b.snapshot(&[(0, M2)]).unwrap();
    assert_eq!(delta(&s0, &s1, "vmstat.thp_split_pmd"), 1);
    assert_eq!(
        s1.mappings[0].pages,
        vec![(Backing::Anon, 1), thp_pte(511)] as PageMap
    );
    assert_eq!(write_at(&mut b, 0, M2).minflt, 511);
    assert_eq!(pages(&mut b, 0, M2), one(Backing::Anon, 512));
    // The child still maps the whole THP by PMD.
    switch(&mut b, 1);
    assert_eq!(pages(&mut b, 0, M2), one(Backing::ThpPmd, 512));
    quiet(&mut b);
    b.finish().unwrap();
}

#[test]
fn exit_child_then_parent_reuses_pmd() {
    let _l = lock();
    let Some(mut b) = backend() else { return };
    thp(&mut b);
    fork(&mut b, 0, 1);
    switch(&mut b, 1);
    // The child gets a THP of its own, so its exit is visible in mthp nr_anon.
    assert_eq!(mmap(&mut b, 4 * M2, M2).result, Ok(4 * M2));
    madvise(&mut b, 4 * M2, M2, Advice::Hugepage);
    assert_eq!(write_at(&mut b, 4 * M2, M2).minflt, 1);
    let child_pid = b.process_pid(1).unwrap();
    let s0 = b.snapshot(&[]).unwrap();
    exit(&mut b, 1);
    // Exit of the current process makes `main` current; the worker is reaped.
    assert_eq!(b.worker_pid(), b.process_pid(0));
    assert_eq!(b.process_pid(1), None);
    assert!(!std::path::Path::new(&format!("/proc/{child_pid}")).exists());
    let s1 = b.snapshot(&[(0, M2), (4 * M2, M2)]).unwrap();
    assert_eq!(delta(&s0, &s1, "mthp.2048kB.nr_anon"), -1);
    assert_eq!(s1.mappings[1].pages, one(Backing::None, 512));
    // #11: the parent's write fault reuses the PMD (refcount 1): 1 fault, still PMD-mapped.
    assert_eq!(write_at(&mut b, 0, 1).minflt, 1);
    assert_eq!(write_at(&mut b, 0, M2).minflt, 0);
    let s2 = b.snapshot(&[(0, M2)]).unwrap();
    assert_eq!(delta(&s1, &s2, "vmstat.thp_split_pmd"), 0);
    assert_eq!(s2.mappings[0].pages, one(Backing::ThpPmd, 512));
    quiet(&mut b);
    // `as` an exited process is refused.
    assert!(b.exec(&BackendOp::Switch { proc: 1 }).is_err());
    b.finish().unwrap();
}

#[test]
fn child_writes_inherited_huge_zero_pmd() {
    let _l = lock();
    let Some(mut b) = backend() else { return };
    mmap(&mut b, 0, M2);
    madvise(&mut b, 0, M2, Advice::Hugepage);
    assert_eq!(access(&mut b, 0, M2, Pattern::Read).minflt, 1);
    assert_eq!(pages(&mut b, 0, M2), one(Backing::HugeZero, 512));
    fork(&mut b, 0, 1);
    switch(&mut b, 1);
    assert_eq!(pages(&mut b, 0, M2), one(Backing::HugeZero, 512));
    let s0 = b.snapshot(&[]).unwrap();
    // #13: 1 fault, a THP of the child's own; the parent keeps the huge zero PMD.
    assert_eq!(write_at(&mut b, 0, 1).minflt, 1);
    let s1 = b.snapshot(&[(0, M2)]).unwrap();
    assert!(delta(&s0, &s1, "vmstat.thp_fault_alloc") >= 1);
    assert_eq!(s1.mappings[0].pages, one(Backing::ThpPmd, 512));
    switch(&mut b, 0);
    assert_eq!(pages(&mut b, 0, M2), one(Backing::HugeZero, 512));
    b.finish().unwrap();
}

#[test]
fn nested_forks_and_many_processes() {
    let _l = lock();
    let Some(mut b) = backend() else { return };
    // 512 order-0 pages, shared down a chain main -> 1 -> 2, and a sibling 3 of main.
    mmap(&mut b, 0, M2);
    assert_eq!(write_at(&mut b, 0, M2).minflt, 512);
    fork(&mut b, 0, 1);
    switch(&mut b, 1);
    quiet(&mut b);
    assert_eq!(fork(&mut b, 1, 2).minflt, 0);
    quiet(&mut b);
    switch(&mut b, 2);
    quiet(&mut b);
    assert_eq!(pages(&mut b, 0, M2), one(Backing::Anon, 512));
    // Every page is shared three ways: each write copies.
    assert_eq!(write_at(&mut b, 0, M2).minflt, 512);
    switch(&mut b, 0);
    assert_eq!(fork(&mut b, 0, 3).minflt, 0);
    exit(&mut b, 2);
    exit(&mut b, 1);
    switch(&mut b, 3);
    quiet(&mut b);
    // main and 3 share the pages now.
    assert_eq!(write_at(&mut b, 0, M2).minflt, 512);
    switch(&mut b, 0);
    // The last mapper: order-0 pages are reused, still one fault each.
    let s0 = b.snapshot(&[]).unwrap();
    assert_eq!(write_at(&mut b, 0, M2).minflt, 512);
    let s1 = b.snapshot(&[(0, M2)]).unwrap();
    assert!(delta(&s0, &s1, "vmstat.pgreuse") >= 512);
    assert_eq!(s1.mappings[0].pages, one(Backing::Anon, 512));
    b.finish().unwrap();
}

#[test]
fn madv_free_4k_inside_thp_splits_the_folio() {
    let _l = lock();
    let Some(mut b) = backend() else { return };
    thp(&mut b);
    let s0 = b.snapshot(&[]).unwrap();
    let f = madvise(&mut b, 0, K4, Advice::Free);
    assert_eq!((f.result, f.minflt), (Ok(0), 0));
    let s1 = b.snapshot(&[(0, M2)]).unwrap();
    assert_eq!(delta(&s0, &s1, "vmstat.thp_split_pmd"), 1);
    assert_eq!(delta(&s0, &s1, "vmstat.thp_split_page"), 1);
    assert_eq!(s1.mappings[0].pages, one(Backing::Anon, 512));
    b.finish().unwrap();
}

#[test]
fn madv_collapse_of_order0_pages() {
    let _l = lock();
    let Some(mut b) = backend() else { return };
    mmap(&mut b, 0, M2);
    assert_eq!(write_at(&mut b, 0, M2).minflt, 512);
    assert_eq!(pages(&mut b, 0, M2), one(Backing::Anon, 512));
    let s0 = b.snapshot(&[]).unwrap();
    let c = madvise(&mut b, 0, M2, Advice::Collapse);
    assert_eq!((c.result, c.minflt), (Ok(0), 0));
    let s1 = b.snapshot(&[(0, M2)]).unwrap();
    assert_eq!(s1.mappings[0].pages, one(Backing::ThpPmd, 512));
    assert_eq!(s1.mappings[0].smaps.anon_huge_pages, 2048);
    assert_eq!(delta(&s0, &s1, "vmstat.thp_collapse_alloc"), 1);
    // The data survived the copy: a read takes no fault.
    assert_eq!(access(&mut b, 0, M2, Pattern::Read).minflt, 0);
    b.finish().unwrap();
}
