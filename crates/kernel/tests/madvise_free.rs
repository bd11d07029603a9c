//! MADV_FREE/COLD/DONTNEED details measured on the 6.18 host (December 2026 fuzz clusters
//! E, F, G, K, L; scenarios/conformance/230–234): the multi-VMA walk that stops at a locked
//! VMA, PT_RECLAIM, folio PTE batches, PG_dirty and GUP writes. Invariants after every step.

use thpsim_kernel::errno::Errno;
use thpsim_kernel::mmap::MapFlags;
use thpsim_kernel::observe::Backing;
use thpsim_kernel::types::{AccessKind, Advice, Pid, Prot};
use thpsim_kernel::vmstat::{MthpStat, VmItem};
use thpsim_kernel::Kernel;

mod common;
use common::*;

const K64: u64 = 64 << 10;
const MTHP_64K: &[(&str, &str)] = &[
    ("hugepages-2048kB.enabled", "never"),
    ("hugepages-64kB.enabled", "madvise"),
];

fn map(k: &mut Kernel, pid: Pid, addr: u64, len: u64, hugepage: bool) {
    k.mmap(pid, addr, len, Prot::RW, MapFlags::default())
        .unwrap();
    if hugepage {
        k.madvise(pid, addr, len, Advice::Hugepage).unwrap();
    }
    ok(k);
}

fn madv(k: &mut Kernel, pid: Pid, addr: u64, len: u64, a: Advice) -> Result<(), Errno> {
    let r = k.madvise(pid, addr, len, a);
    ok(k);
    r
}

fn field(k: &Kernel, pid: Pid, addr: u64, len: u64, name: &str) -> u64 {
    k.smaps(pid, addr, addr + len).field(name).unwrap()
}

#[test]
fn advice_applies_to_vmas_before_a_locked_one() {
    let (mut k, pid) = kernel("6.18", MTHP_64K, &[]);
    map(&mut k, pid, BASE, 1 << 20, true);
    touch(&mut k, pid, BASE, 1 << 20, AccessKind::Write);
    k.mlock(pid, BASE + (768 << 10), K64).unwrap();
    let split0 = k.vmstat.mthp_get(4, MthpStat::Split);
    // COLD from inside folio 0 to inside folio 15: folio 0 splits, then EINVAL at the locked
    // VMA; folio 15 (after it) stays whole.
    assert_eq!(
        madv(&mut k, pid, BASE + (32 << 10), 960 << 10, Advice::Cold),
        Err(Errno::EINVAL)
    );
    assert_eq!(k.vmstat.mthp_get(4, MthpStat::Split) - split0, 1);
    assert_eq!(
        madv(&mut k, pid, BASE, 1 << 20, Advice::Free),
        Err(Errno::EINVAL)
    );
    assert_eq!(field(&k, pid, BASE, 1 << 20, "Private_Clean"), 768);
    assert_eq!(
        madv(&mut k, pid, BASE, 1 << 20, Advice::Dontneed),
        Err(Errno::EINVAL)
    );
    assert_eq!(field(&k, pid, BASE, 1 << 20, "Rss"), 256);
}

#[test]
fn dontneed_of_a_whole_pte_table_range_frees_the_table() {
    for (profile, reclaim) in [("6.18", true), ("6.12", false)] {
        let (mut k, pid) = kernel(profile, &[], &[]);
        map(&mut k, pid, BASE, 3 * M2, false);
        touch(&mut k, pid, BASE, 3 * M2, AccessKind::Write);
        k.madvise(pid, BASE, 3 * M2, Advice::Hugepage).unwrap();
        let pt0 = k.vmstat.get(VmItem::NrPageTablePages);
        // Whole table, half a table, and a 2 MiB range made of two VMAs.
        madv(&mut k, pid, BASE, M2, Advice::Dontneed).unwrap();
        madv(&mut k, pid, BASE + M2 + M2 / 2, M2 / 2, Advice::Dontneed).unwrap();
        k.mprotect(pid, BASE + 2 * M2, M2 / 2, Prot::R).unwrap();
        madv(&mut k, pid, BASE + 2 * M2, M2, Advice::Dontneed).unwrap();
        k.mprotect(pid, BASE + 2 * M2, M2 / 2, Prot::RW).unwrap();
        assert_eq!(
            k.vmstat.get(VmItem::NrPageTablePages) - pt0,
            -i64::from(reclaim),
            "{profile}"
        );
        for slot in 0..3 {
            touch(&mut k, pid, BASE + slot * M2, 1, AccessKind::Write);
        }
        let thp = k.page_map(pid, BASE, BASE + M2) == vec![(Backing::ThpPmd, 512)];
        assert_eq!(
            thp, reclaim,
            "{profile}: the freed table's slot gets a PMD THP"
        );
        assert_eq!(
            k.page_map(pid, BASE + 2 * M2, BASE + 3 * M2)[0],
            (Backing::Anon, 1),
            "{profile}: two zaps of 1 MiB keep the table"
        );
    }
}

#[test]
fn free_cleans_a_shared_folio_unless_it_is_pg_dirty() {
    let (mut k, parent) = kernel("6.18", MTHP_64K, &[]);
    map(&mut k, parent, BASE, 1 << 20, false);
    map(&mut k, parent, BASE + M2, 1 << 20, true);
    touch(&mut k, parent, BASE, 1 << 20, AccessKind::Write);
    touch(&mut k, parent, BASE + M2, 1 << 20, AccessKind::Write);
    // Split folio 0 of the mTHP mapping: its pages inherit PG_dirty from the dirty PTEs.
    madv(&mut k, parent, BASE + M2, K4, Advice::Free).unwrap();
    let child = k.fork(parent).unwrap();
    ok(&k);
    madv(&mut k, parent, BASE, 1 << 20, Advice::Free).unwrap();
    madv(&mut k, parent, BASE + M2, 1 << 20, Advice::Free).unwrap();
    assert_eq!(field(&k, parent, BASE, 1 << 20, "Shared_Clean"), 1024);
    assert_eq!(field(&k, parent, BASE + M2, 1 << 20, "Shared_Clean"), 964);
    assert_eq!(field(&k, parent, BASE + M2, 1 << 20, "Shared_Dirty"), 60);
    assert_eq!(field(&k, child, BASE, 1 << 20, "Shared_Dirty"), 1024);
    assert_eq!(field(&k, child, BASE + M2, 1 << 20, "Shared_Dirty"), 1020);
}

#[test]
fn short_pte_batch_splits_the_folio() {
    let (mut k, pid) = kernel("6.18", MTHP_64K, &[]);
    map(&mut k, pid, BASE, 4 * K64, true);
    touch(&mut k, pid, BASE, 4 * K64, AccessKind::Write);
    madv(&mut k, pid, BASE + 4 * K4, K4, Advice::Dontneed).unwrap();
    let split0 = k.vmstat.mthp_get(4, MthpStat::Split);
    // The whole folio is in the range, but its batch stops at the hole.
    madv(&mut k, pid, BASE, K64, Advice::Free).unwrap();
    assert_eq!(k.vmstat.mthp_get(4, MthpStat::Split) - split0, 1);
    assert_eq!(
        k.page_map(pid, BASE, BASE + K64),
        vec![(Backing::Anon, 4), (Backing::None, 1), (Backing::Anon, 11)]
    );
    // A folio moved across a PTE-table boundary: two batches, so FREE splits it; a folio
    // whose batch is whole is only aged by COLD.
    let dst = BASE + 4 * M2;
    map(&mut k, pid, dst, 2 * M2, true);
    k.mremap(pid, BASE + K64, K64, dst + M2 - K64 / 2).unwrap();
    k.mremap(pid, BASE + 2 * K64, K64, dst + M2 + K64 / 2)
        .unwrap();
    ok(&k);
    madv(&mut k, pid, dst + M2 + K64 / 2, K64, Advice::Cold).unwrap();
    assert_eq!(k.vmstat.mthp_get(4, MthpStat::Split) - split0, 1);
    madv(&mut k, pid, dst + M2 - K64 / 2, K64, Advice::Free).unwrap();
    assert_eq!(k.vmstat.mthp_get(4, MthpStat::Split) - split0, 2);
    assert_eq!(
        k.page_map(pid, dst + M2 - K64 / 2, dst + M2 + K64 / 2),
        vec![(Backing::Anon, 16)]
    );
}

#[test]
fn gup_write_on_a_clean_pte_dirties_the_whole_folio() {
    let knobs = &[
        ("hugepages-2048kB.enabled", "never"),
        ("hugepages-32kB.enabled", "madvise"),
    ];
    let (mut k, pid) = kernel("6.18", knobs, &[]);
    map(&mut k, pid, BASE, 1 << 20, true);
    touch(&mut k, pid, BASE, 1 << 20, AccessKind::Write);
    madv(&mut k, pid, BASE, 1 << 20, Advice::Free).unwrap();
    assert_eq!(field(&k, pid, BASE, 1 << 20, "Private_Dirty"), 0);
    let flt = k.task(pid).unwrap().minflt;
    madv(&mut k, pid, BASE, K4, Advice::PopulateWrite).unwrap();
    assert_eq!(k.task(pid).unwrap().minflt, flt, "no fault");
    assert_eq!(field(&k, pid, BASE, 1 << 20, "Private_Dirty"), 32);
    // A second MADV_FREE cleans folio and PTEs again.
    madv(&mut k, pid, BASE, 1 << 20, Advice::Free).unwrap();
    assert_eq!(field(&k, pid, BASE, 1 << 20, "Private_Dirty"), 0);
}
