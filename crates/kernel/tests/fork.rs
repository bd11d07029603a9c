//! fork, copy-on-write and exit against the facts measured on the 6.18 host (the fork
//! scenarios in scenarios/conformance and their FINDINGS.md notes). The invariant checker runs after every step.

use thpsim_kernel::mmap::MapFlags;
use thpsim_kernel::observe::Backing;
use thpsim_kernel::types::{AccessKind, Advice, Pid, Prot};
use thpsim_kernel::vmstat::{MthpStat, VmItem};
use thpsim_kernel::Kernel;

mod common;
use common::*;

fn thp(k: &mut Kernel, pid: Pid) {
    k.mmap(pid, BASE, M2, Prot::RW, MapFlags::default())
        .unwrap();
    k.madvise(pid, BASE, M2, Advice::Hugepage).unwrap();
    touch(k, pid, BASE, M2, AccessKind::Write);
}

#[test]
fn child_write_splits_its_pmd_and_copies_4k() {
    let (mut k, parent) = kernel("6.18", &[], &[]);
    thp(&mut k, parent);
    let child = k.fork(parent).unwrap();
    ok(&k);
    assert_eq!(
        k.smaps(child, BASE, BASE + M2).field("AnonHugePages"),
        Some(2048)
    );
    assert_eq!(
        k.smaps(child, BASE, BASE + M2).field("Pss"),
        Some(1024),
        "shared by two"
    );
    let split0 = k.vmstat.get(VmItem::ThpSplitPmd);
    assert_eq!(touch(&mut k, child, BASE, 1, AccessKind::Write), 1);
    assert_eq!(k.vmstat.get(VmItem::ThpSplitPmd) - split0, 1);
    assert_eq!(
        k.page_map(child, BASE, BASE + M2),
        vec![(Backing::Anon, 1), (Backing::ThpPte { order: 9 }, 511)]
    );
    assert_eq!(
        k.smaps(child, BASE, BASE + M2).field("AnonHugePages"),
        Some(0)
    );
    // The parent keeps its PMD (read-only).
    assert_eq!(
        k.page_map(parent, BASE, BASE + M2),
        vec![(Backing::ThpPmd, 512)]
    );
    // The other 511 child writes are 511 copies.
    assert_eq!(touch(&mut k, child, BASE, M2, AccessKind::Write), 511);
    assert_eq!(
        k.page_map(child, BASE, BASE + M2),
        vec![(Backing::Anon, 512)]
    );
}

#[test]
fn parent_reuses_pmd_after_child_exit() {
    let (mut k, parent) = kernel("6.18", &[], &[]);
    thp(&mut k, parent);
    let child = k.fork(parent).unwrap();
    k.exit(child);
    ok(&k);
    let split0 = k.vmstat.get(VmItem::ThpSplitPmd);
    assert_eq!(touch(&mut k, parent, BASE, M2, AccessKind::Write), 1);
    assert_eq!(k.vmstat.get(VmItem::ThpSplitPmd), split0);
    assert_eq!(
        k.page_map(parent, BASE, BASE + M2),
        vec![(Backing::ThpPmd, 512)]
    );
}

#[test]
fn parent_write_while_child_alive_copies_everything() {
    let (mut k, parent) = kernel("6.18", &[], &[]);
    thp(&mut k, parent);
    let _child = k.fork(parent).unwrap();
    assert_eq!(touch(&mut k, parent, BASE, M2, AccessKind::Write), 512);
    assert_eq!(
        k.page_map(parent, BASE, BASE + M2),
        vec![(Backing::Anon, 512)]
    );
}

#[test]
fn child_write_to_inherited_huge_zero_gets_its_own_thp() {
    let (mut k, parent) = kernel("6.18", &[], &[]);
    k.mmap(parent, BASE, M2, Prot::RW, MapFlags::default())
        .unwrap();
    k.madvise(parent, BASE, M2, Advice::Hugepage).unwrap();
    touch(&mut k, parent, BASE, M2, AccessKind::Read);
    let child = k.fork(parent).unwrap();
    ok(&k);
    let a0 = k.vmstat.get(VmItem::ThpFaultAlloc);
    assert_eq!(touch(&mut k, child, BASE, 1, AccessKind::Write), 1);
    assert_eq!(k.vmstat.get(VmItem::ThpFaultAlloc) - a0, 1);
    assert_eq!(
        k.page_map(child, BASE, BASE + M2),
        vec![(Backing::ThpPmd, 512)]
    );
    assert_eq!(
        k.page_map(parent, BASE, BASE + M2),
        vec![(Backing::HugeZero, 512)]
    );
    k.exit(child);
    ok(&k);
}

#[test]
fn zero_pte_only_vma_is_not_copied() {
    // A VMA read only through small zero pages has no anon_vma: the child starts empty.
    let (mut k, parent) = kernel("6.18", &[], &[]);
    k.mmap(parent, BASE, M2, Prot::RW, MapFlags::default())
        .unwrap();
    touch(&mut k, parent, BASE, M2, AccessKind::Read);
    let child = k.fork(parent).unwrap();
    ok(&k);
    assert_eq!(
        k.page_map(child, BASE, BASE + M2),
        vec![(Backing::None, 512)]
    );
    assert_eq!(touch(&mut k, child, BASE, M2, AccessKind::Read), 512);
}

#[test]
fn mthp_cow_reuse_after_child_exit_615() {
    for (p, want_reuse) in [("6.18", true), ("6.12", false)] {
        let (mut k, parent) = kernel(p, &[("hugepages-64kB.enabled", "always")], &[]);
        k.mmap(parent, BASE, M2, Prot::RW, MapFlags::default())
            .unwrap();
        assert_eq!(touch(&mut k, parent, BASE, M2, AccessKind::Write), 32);
        let child = k.fork(parent).unwrap();
        k.exit(child);
        ok(&k);
        let r0 = k.vmstat.get(VmItem::Pgreuse);
        assert_eq!(
            touch(&mut k, parent, BASE, M2, AccessKind::Write),
            512,
            "{p}"
        );
        if want_reuse {
            assert_eq!(k.vmstat.get(VmItem::Pgreuse) - r0, 512);
            assert_eq!(
                k.page_map(parent, BASE, BASE + M2),
                vec![(Backing::ThpPte { order: 4 }, 512)]
            );
            assert_eq!(k.vmstat.mthp_get(4, MthpStat::NrAnon), 32);
        } else {
            assert_eq!(k.vmstat.get(VmItem::Pgreuse) - r0, 0);
            assert_eq!(
                k.page_map(parent, BASE, BASE + M2),
                vec![(Backing::Anon, 512)]
            );
            assert_eq!(
                k.vmstat.mthp_get(4, MthpStat::NrAnon),
                0,
                "all copied, old folios freed"
            );
        }
    }
}

#[test]
fn exit_frees_everything_but_shared_pages() {
    let (mut k, parent) = kernel("6.18", &[], &[]);
    let free0 = k.nr_free_pages();
    thp(&mut k, parent);
    let child = k.fork(parent).unwrap();
    touch(&mut k, child, BASE, M2, AccessKind::Write);
    k.exit(child);
    ok(&k);
    k.exit(parent);
    ok(&k);
    assert_eq!(k.nr_free_pages(), free0);
}

#[test]
fn exit_after_fork_with_an_untouched_vma_frees_all_page_tables() {
    // Found by the scenario corpus: two VMAs in one PMD table region, the first never touched.
    let (mut k, parent) = kernel("6.18", &[], &[]);
    k.mmap(parent, BASE, M2, Prot::RW, MapFlags::default())
        .unwrap();
    k.mmap(parent, BASE + 2 * M2, M2, Prot::RW, MapFlags::default())
        .unwrap();
    touch(&mut k, parent, BASE + 2 * M2, K4, AccessKind::Write);
    let child = k.fork(parent).unwrap();
    ok(&k);
    k.exit(child);
    ok(&k);
}

#[test]
fn fork_takes_one_huge_zero_reference_per_mm() {
    // Found by proptest_lifecycle: two huge-zero PMDs must not take two references.
    let (mut k, parent) = kernel("6.18", &[], &[]);
    k.mmap(parent, BASE, 2 * M2, Prot::RW, MapFlags::default())
        .unwrap();
    k.madvise(parent, BASE, 2 * M2, Advice::Hugepage).unwrap();
    touch(&mut k, parent, BASE, 2 * M2, AccessKind::Read);
    let child = k.fork(parent).unwrap();
    ok(&k);
    k.exit(child);
    k.exit(parent);
    k.shrink();
    ok(&k);
    assert_eq!(k.nr_free_pages(), k.total_pages());
}

#[test]
fn fork_copies_a_vma_that_lies_inside_one_pmd_slot() {
    // copy_page_range() goes per VMA: [64K, 1M+64K) touches neither end of its 2 MiB slot.
    let (mut k, parent) = kernel("6.18", &[], &[]);
    let (start, len) = (BASE + 0x10000, 1 << 20);
    k.mmap(parent, start, len, Prot::RW, MapFlags::default())
        .unwrap();
    touch(&mut k, parent, start, K4, AccessKind::Write);
    touch(&mut k, parent, start + (512 << 10), K4, AccessKind::Write);
    let child = k.fork(parent).unwrap();
    ok(&k);
    assert_eq!(
        k.page_map(child, start, start + len),
        vec![
            (Backing::Anon, 1),
            (Backing::None, 127),
            (Backing::Anon, 1),
            (Backing::None, 127)
        ]
    );
    let s = k.smaps(parent, start, start + len);
    assert_eq!(s.field("Shared_Dirty"), Some(8));
    assert_eq!(s.field("Private_Dirty"), Some(0));
    // The child's first write is a COW copy, and the parent's page stays.
    assert_eq!(touch(&mut k, child, start, K4, AccessKind::Write), 1);
    assert_eq!(
        k.smaps(parent, start, start + len).field("Shared_Dirty"),
        Some(4)
    );
}

#[test]
fn fork_child_vmas_are_not_locked() {
    // dup_mmap() clears VM_LOCKED_MASK in the child.
    let (mut k, parent) = kernel("6.18", &[], &[]);
    k.mmap(parent, BASE, M2, Prot::RW, MapFlags::default())
        .unwrap();
    k.mlock(parent, BASE + M2 / 2, K4 * 16).unwrap();
    let child = k.fork(parent).unwrap();
    ok(&k);
    assert_eq!(k.smaps(parent, BASE, BASE + M2).field("Locked"), Some(32));
    assert_eq!(k.smaps(child, BASE, BASE + M2).field("Locked"), Some(0));
    assert_eq!(k.smaps(child, BASE, BASE + M2).field("Rss"), Some(64));
}
