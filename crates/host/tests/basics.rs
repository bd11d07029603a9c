//! Basic fault cases on the real kernel: exact fault counts and page backings.

mod common;
use common::*;

use thpsim_kernel::errno::{OpError, Signal};
use thpsim_kernel::observe::Backing;
use thpsim_kernel::types::{Advice, Prot};
use thpsim_scenario::ast::Pattern;
use thpsim_scenario::backend::{Backend, BackendOp};

#[test]
fn madv_hugepage_read_then_write() {
    let _l = lock();
    let Some(mut b) = backend() else { return };
    assert_eq!(mmap(&mut b, 0, M2).result, Ok(0));
    assert_eq!(madvise(&mut b, 0, M2, Advice::Hugepage).result, Ok(0));
    let r = access(&mut b, 0, M2, Pattern::Read);
    assert_eq!((r.result, r.minflt, r.majflt), (Ok(0), 1, 0));
    assert_eq!(pages(&mut b, 0, M2), one(Backing::HugeZero, 512));
    let s0 = b.snapshot(&[(0, M2)]).unwrap();
    assert_eq!(s0.mappings[0].smaps.rss, 0);
    let w = access(&mut b, 0, M2, Pattern::Write);
    assert_eq!((w.result, w.minflt), (Ok(0), 1));
    let s1 = b.snapshot(&[(0, M2)]).unwrap();
    assert_eq!(s1.mappings[0].pages, one(Backing::ThpPmd, 512));
    assert_eq!(
        counter(&s1, "vmstat.thp_fault_alloc") - counter(&s0, "vmstat.thp_fault_alloc"),
        1
    );
    assert_eq!(s1.mappings[0].smaps.anon_huge_pages, 2048);
    assert_eq!(s1.mappings[0].smaps.thp_eligible, 1);
    b.finish().unwrap();
}

#[test]
fn madv_hugepage_write() {
    let _l = lock();
    let Some(mut b) = backend() else { return };
    mmap(&mut b, M2, M2);
    madvise(&mut b, M2, M2, Advice::Hugepage);
    let s0 = b.snapshot(&[]).unwrap();
    let w = access(&mut b, M2, M2, Pattern::Write);
    assert_eq!(w.minflt, 1);
    let s1 = b.snapshot(&[(M2, M2)]).unwrap();
    assert_eq!(s1.mappings[0].pages, one(Backing::ThpPmd, 512));
    assert_eq!(
        counter(&s1, "vmstat.thp_fault_alloc") - counter(&s0, "vmstat.thp_fault_alloc"),
        1
    );
    assert_eq!(
        counter(&s1, "vmstat.nr_anon_transparent_hugepages")
            - counter(&s0, "vmstat.nr_anon_transparent_hugepages"),
        1
    );
    assert_eq!(
        counter(&s1, "mthp.2048kB.anon_fault_alloc") - counter(&s0, "mthp.2048kB.anon_fault_alloc"),
        1
    );
}

#[test]
fn no_madvise_read_and_write() {
    let _l = lock();
    let Some(mut b) = backend() else { return };
    mmap(&mut b, 0, M2);
    mmap(&mut b, 4 * M2, M2);
    let r = access(&mut b, 0, M2, Pattern::Read);
    assert_eq!(r.minflt, 512);
    assert_eq!(pages(&mut b, 0, M2), one(Backing::Zero, 512));
    let w = access(&mut b, 4 * M2, M2, Pattern::Write);
    assert_eq!(w.minflt, 512);
    let s = b.snapshot(&[(4 * M2, M2), (0, M2)]).unwrap();
    assert_eq!(s.mappings[0].pages, one(Backing::Anon, 512));
    assert_eq!(s.mappings[0].smaps.rss, 2048);
    assert_eq!(s.mappings[0].smaps.anon_huge_pages, 0);
    assert_eq!(s.mappings[1].smaps.rss, 0);
    // Read then write each page: 1 fault for the read (zero page) + 1 for the write.
    mmap(&mut b, 8 * M2, 16 * K4);
    let rw = access(&mut b, 8 * M2, 16 * K4, Pattern::ReadWrite);
    assert_eq!(rw.minflt, 32);
    // Already resident: no faults.
    assert_eq!(access(&mut b, 4 * M2, M2, Pattern::Write).minflt, 0);
}

#[test]
fn munmap_inside_thp_keeps_pte_mapped_folio() {
    let _l = lock();
    let Some(mut b) = backend() else { return };
    mmap(&mut b, 0, M2);
    madvise(&mut b, 0, M2, Advice::Hugepage);
    access(&mut b, 0, M2, Pattern::Write);
    let s0 = b.snapshot(&[]).unwrap();
    assert_eq!(
        b.exec(&BackendOp::Munmap {
            addr: M2 - K4,
            len: K4
        })
        .unwrap()
        .result,
        Ok(0)
    );
    let s1 = b.snapshot(&[(0, M2)]).unwrap();
    assert_eq!(
        s1.mappings[0].pages,
        vec![(Backing::ThpPte { order: 9 }, 511), (Backing::None, 1)]
    );
    assert_eq!(
        counter(&s1, "vmstat.thp_split_pmd") - counter(&s0, "vmstat.thp_split_pmd"),
        1
    );
    assert_eq!(s1.mappings[0].smaps.rss, 2044);
}

#[test]
fn sigsegv_is_reported_not_raised() {
    let _l = lock();
    let Some(mut b) = backend() else { return };
    mmap(&mut b, 0, 4 * K4);
    // 4 mapped pages, then a hole: the fifth access faults.
    let r = b
        .exec(&BackendOp::Access {
            addr: 0,
            len: 8 * K4,
            stride: K4,
            pattern: Pattern::Write,
            subset: None,
        })
        .unwrap();
    assert_eq!(r.result, Err(OpError::Signal(Signal::Sigsegv)));
    assert_eq!(r.minflt, 4);
    // Unmapped entirely.
    let r = access(&mut b, 100 * M2, K4, Pattern::Read);
    assert_eq!(
        (r.result, r.minflt),
        (Err(OpError::Signal(Signal::Sigsegv)), 0)
    );
    // Read-only: read-then-write reads (1 fault, zero page) then faults on the write.
    b.exec(&BackendOp::Mmap {
        addr: 10 * M2,
        len: 2 * K4,
        prot: Prot::R,
        shared: false,
        populate: false,
        fixed: false,
        file: None,
    })
    .unwrap();
    let r = access(&mut b, 10 * M2, 2 * K4, Pattern::ReadWrite);
    assert_eq!(
        (r.result, r.minflt),
        (Err(OpError::Signal(Signal::Sigsegv)), 1)
    );
    // PROT_NONE after mprotect.
    b.exec(&BackendOp::Mprotect {
        addr: 0,
        len: K4,
        prot: Prot::NONE,
    })
    .unwrap();
    let r = access(&mut b, 0, K4, Pattern::Read);
    assert_eq!(r.result, Err(OpError::Signal(Signal::Sigsegv)));
    // Write-only is readable on x86.
    b.exec(&BackendOp::Mmap {
        addr: 12 * M2,
        len: K4,
        prot: Prot {
            read: false,
            write: true,
            exec: false,
        },
        shared: false,
        populate: false,
        fixed: false,
        file: None,
    })
    .unwrap();
    assert_eq!(access(&mut b, 12 * M2, K4, Pattern::Read).result, Ok(0));
    // The worker survived all of it.
    assert_eq!(access(&mut b, K4, K4, Pattern::Read).result, Ok(0));
    b.finish().unwrap();
}

#[test]
fn errors_are_errnos_and_populate_counts() {
    let _l = lock();
    let Some(mut b) = backend() else { return };
    let r = b
        .exec(&BackendOp::Mmap {
            addr: 0,
            len: 2 * M2,
            prot: Prot::RW,
            shared: false,
            populate: true,
            fixed: false,
            file: None,
        })
        .unwrap();
    assert_eq!((r.result, r.minflt), (Ok(0), 1024));
    assert_eq!(pages(&mut b, 0, 2 * M2), one(Backing::Anon, 1024));
    // POPULATE_WRITE over a hole → ENOMEM.
    let r = madvise(&mut b, 0, 4 * M2, Advice::PopulateWrite);
    assert_eq!(
        r.result,
        Err(OpError::Errno(thpsim_kernel::errno::Errno::ENOMEM))
    );
    // Unaligned madvise → EINVAL.
    let r = madvise(&mut b, 1, K4, Advice::Dontneed);
    assert_eq!(
        r.result,
        Err(OpError::Errno(thpsim_kernel::errno::Errno::EINVAL))
    );
    // MADV_COLLAPSE of 512 order-0 pages → PMD THP.
    let r = madvise(&mut b, 0, M2, Advice::Collapse);
    assert_eq!(r.result, Ok(0));
    assert_eq!(pages(&mut b, 0, M2), one(Backing::ThpPmd, 512));
}

#[test]
fn quiet_ops_take_no_faults_and_subsets_and_many_runs() {
    let _l = lock();
    let Some(mut b) = backend() else { return };
    let m = mmap(&mut b, 0, 8 * M2);
    assert_eq!((m.result, m.minflt, m.majflt), (Ok(0), 0, 0));
    assert_eq!(madvise(&mut b, 0, 8 * M2, Advice::Nohugepage).minflt, 0);
    let p = b
        .exec(&BackendOp::Mprotect {
            addr: 0,
            len: 8 * M2,
            prot: Prot::RW,
        })
        .unwrap();
    assert_eq!((p.result, p.minflt), (Ok(0), 0));
    // Every other page of 8 MiB: 2048 alternating runs (more than one PAGEMAP_SCAN batch).
    let w = b
        .exec(&BackendOp::Access {
            addr: 0,
            len: 8 * M2,
            stride: 2 * K4,
            pattern: Pattern::Write,
            subset: None,
        })
        .unwrap();
    assert_eq!(w.minflt, 2048);
    let pm = pages(&mut b, 0, 8 * M2);
    assert_eq!(pm.len(), 4096);
    assert!(pm.iter().enumerate().all(|(i, r)| *r
        == if i % 2 == 0 {
            (Backing::Anon, 1)
        } else {
            (Backing::None, 1)
        }));
    // A seeded subset touches exactly that many pages.
    use thpsim_scenario::ast::{Subset, SubsetCount};
    mmap(&mut b, 10 * M2, M2);
    let subset = Some(Subset {
        count: SubsetCount::Pages(10),
        seed: 42,
    });
    let s = b
        .exec(&BackendOp::Access {
            addr: 10 * M2,
            len: M2,
            stride: K4,
            pattern: Pattern::Read,
            subset,
        })
        .unwrap();
    assert_eq!(s.minflt, 10);
    let pm = pages(&mut b, 10 * M2, M2);
    assert_eq!(thpsim_kernel::observe::pagemap_count(&pm, "zero"), 10);
    assert_eq!(
        b.exec(&BackendOp::Munmap {
            addr: 0,
            len: 8 * M2
        })
        .unwrap()
        .minflt,
        0
    );
    assert_eq!(pages(&mut b, 0, 8 * M2), one(Backing::None, 4096));
}

#[test]
fn shared_anonymous_mapping() {
    let _l = lock();
    let Some(mut b) = backend() else { return };
    let m = b
        .exec(&BackendOp::Mmap {
            addr: 0,
            len: M2,
            prot: Prot::RW,
            shared: true,
            populate: false,
            fixed: false,
            file: None,
        })
        .unwrap();
    assert_eq!(m.result, Ok(0));
    assert_eq!(access(&mut b, 0, 16 * K4, Pattern::Write).minflt, 16);
    let s = b.snapshot(&[(0, M2)]).unwrap();
    // shmem pages: Rss but not Anonymous. (The page-map schema has no shmem class yet; they
    // are classified by folio order like anonymous pages — see the crate README.)
    assert_eq!(
        (s.mappings[0].smaps.rss, s.mappings[0].smaps.anonymous),
        (64, 0)
    );
    assert_eq!(
        thpsim_kernel::observe::pagemap_count(&s.mappings[0].pages, "none"),
        496
    );
}
