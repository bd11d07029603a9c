//! Fault paths against the facts measured on the 6.18 host (the fault scenarios of scenarios/conformance)
//! and the 6.12 differences. The invariant checker runs after every operation.

use thpsim_kernel::errno::{Errno, Signal};
use thpsim_kernel::mmap::MapFlags;
use thpsim_kernel::observe::{Backing, PageMap};
use thpsim_kernel::profile;
use thpsim_kernel::types::{AccessKind, Advice, Pid, Prot};
use thpsim_kernel::vmstat::{MthpStat, VmItem};
use thpsim_kernel::{Kernel, KernelConfig};

const BASE: u64 = 0x7f00_0000_0000;
const M2: u64 = 2 << 20;
const K4: u64 = 4096;

struct T {
    k: Kernel,
    pid: Pid,
    flt0: u64,
    vm0: thpsim_kernel::vmstat::VmStat,
}

impl T {
    fn new(profile_name: &str) -> T {
        Self::with(profile_name, 16 << 30, &[])
    }
    fn with(profile_name: &str, memory: u64, knobs: &[(&str, &str)]) -> T {
        let mut cfg = KernelConfig {
            memory,
            profile: profile::profile(profile_name).unwrap(),
            ..Default::default()
        };
        for (k, v) in knobs {
            cfg.sysfs.set(k, v).unwrap();
        }
        let mut k = Kernel::new(cfg).unwrap();
        let pid = k.spawn();
        let vm0 = k.vmstat.clone();
        T {
            k,
            pid,
            flt0: 0,
            vm0,
        }
    }
    fn ok(&self) {
        if let Err(e) = self.k.check_invariants() {
            panic!("invariant: {e}");
        }
    }
    fn mmap(&mut self, addr: u64, len: u64, prot: Prot) {
        self.k
            .mmap(self.pid, addr, len, prot, MapFlags::default())
            .unwrap();
        self.ok();
    }
    fn madvise(&mut self, addr: u64, len: u64, a: Advice) -> Result<(), Errno> {
        let r = self.k.madvise(self.pid, addr, len, a);
        self.ok();
        r
    }
    fn touch(&mut self, addr: u64, len: u64, kind: AccessKind) -> Result<(), Signal> {
        let mut a = addr;
        while a < addr + len {
            self.k.access(self.pid, a, kind)?;
            self.ok();
            a += K4;
        }
        Ok(())
    }
    fn read(&mut self, addr: u64, len: u64) {
        self.touch(addr, len, AccessKind::Read).unwrap();
    }
    fn write(&mut self, addr: u64, len: u64) {
        self.touch(addr, len, AccessKind::Write).unwrap();
    }
    /// Minor faults since the last call.
    fn faults(&mut self) -> u64 {
        let f = self.k.task(self.pid).unwrap().minflt;
        let d = f - self.flt0;
        self.flt0 = f;
        d
    }
    fn d(&self, item: VmItem) -> i64 {
        self.k.vmstat.get(item) - self.vm0.get(item)
    }
    fn dm(&self, kb: u64, stat: MthpStat) -> i64 {
        let o = thpsim_kernel::sysfs::size_kb_to_order(kb).unwrap();
        self.k.vmstat.mthp_get(o, stat) - self.vm0.mthp_get(o, stat)
    }
    fn map(&self, addr: u64, len: u64) -> PageMap {
        self.k.page_map(self.pid, addr, addr + len)
    }
    fn smaps(&self, addr: u64, len: u64, field: &str) -> u64 {
        self.k
            .smaps(self.pid, addr, addr + len)
            .field(field)
            .unwrap()
    }
}

fn thp_region(t: &mut T) {
    t.mmap(BASE, M2, Prot::RW);
    t.madvise(BASE, M2, Advice::Hugepage).unwrap();
}

#[test]
fn read_hugepage_maps_huge_zero_with_one_fault() {
    let mut t = T::new("6.18");
    thp_region(&mut t);
    t.read(BASE, M2);
    assert_eq!(t.faults(), 1);
    assert_eq!(t.map(BASE, M2), vec![(Backing::HugeZero, 512)]);
    assert_eq!(t.d(VmItem::ThpZeroPageAlloc), 1);
    assert_eq!(t.d(VmItem::Pgfault), 1);
    assert_eq!(t.smaps(BASE, M2, "Rss"), 0);
    assert_eq!(t.d(VmItem::NrAnonTransparentHugepages), 0);
}

/// A write to a huge zero PMD (after a read of the whole 2 MiB), then writes to the rest:
/// 6.18 replaces the PMD by a THP (`do_huge_zero_wp_pmd`); 6.12, or 6.18 without a free
/// order-9 block, splits it and COWs one page.
struct HzpWrite {
    what: &'static str,
    profile: &'static str,
    memory: u64,
    /// After the first write: thp_fault_alloc, thp_split_pmd, thp_fault_fallback and the
    /// 2048kB mTHP anon_fault_alloc / anon_fault_fallback deltas.
    fault_alloc: i64,
    split_pmd: i64,
    fault_fallback: i64,
    mthp_alloc: i64,
    mthp_fallback: i64,
    map_after_one: PageMap,
    rss_after_one: u64,
    /// After writing the whole 2 MiB (`None`: memory is too small for it).
    rest: Option<Rest>,
}

struct Rest {
    faults: u64,
    map: PageMap,
    anon_huge: u64,
    deferred_split: u64,
}

#[test]
fn hzp_write_table() {
    let rows = [
        HzpWrite {
            what: "6.18 allocates a THP (and queues it for the underused shrinker)",
            profile: "6.18",
            memory: 16 << 30,
            fault_alloc: 1,
            split_pmd: 0,
            fault_fallback: 0,
            mthp_alloc: 1,
            mthp_fallback: 0,
            map_after_one: vec![(Backing::ThpPmd, 512)],
            rss_after_one: 2048,
            rest: Some(Rest {
                faults: 0,
                map: vec![(Backing::ThpPmd, 512)],
                anon_huge: 2048,
                deferred_split: 1,
            }),
        },
        HzpWrite {
            what: "6.12 splits the huge zero PMD",
            profile: "6.12",
            memory: 16 << 30,
            fault_alloc: 0,
            split_pmd: 1,
            fault_fallback: 0,
            mthp_alloc: 0,
            mthp_fallback: 0,
            map_after_one: vec![(Backing::Anon, 1), (Backing::Zero, 511)],
            rss_after_one: 4,
            rest: Some(Rest {
                faults: 511,
                map: vec![(Backing::Anon, 512)],
                anon_huge: 0,
                deferred_split: 0,
            }),
        },
        HzpWrite {
            // 4 MiB of memory: after the huge zero page (order 9) and page tables, no order-9
            // block.
            what: "6.18 without an order-9 block falls back to the split",
            profile: "6.18",
            memory: 4 << 20,
            fault_alloc: 0,
            split_pmd: 1,
            fault_fallback: 1,
            mthp_alloc: 0,
            mthp_fallback: 1,
            map_after_one: vec![(Backing::Anon, 1), (Backing::Zero, 511)],
            rss_after_one: 4,
            rest: None,
        },
    ];
    for r in rows {
        let mut t = T::with(r.profile, r.memory, &[]);
        thp_region(&mut t);
        t.read(BASE, M2);
        t.faults();
        t.write(BASE, 1);
        let w = r.what;
        assert_eq!(t.faults(), 1, "{w}");
        assert_eq!(t.d(VmItem::ThpFaultAlloc), r.fault_alloc, "{w}");
        assert_eq!(t.d(VmItem::ThpSplitPmd), r.split_pmd, "{w}");
        assert_eq!(t.d(VmItem::ThpFaultFallback), r.fault_fallback, "{w}");
        assert_eq!(t.dm(2048, MthpStat::AnonFaultAlloc), r.mthp_alloc, "{w}");
        assert_eq!(
            t.dm(2048, MthpStat::AnonFaultFallback),
            r.mthp_fallback,
            "{w}"
        );
        assert_eq!(
            t.d(VmItem::NrAnonTransparentHugepages),
            r.fault_alloc,
            "{w}"
        );
        assert_eq!(t.map(BASE, M2), r.map_after_one, "{w}");
        assert_eq!(t.smaps(BASE, M2, "Rss"), r.rss_after_one, "{w}");
        let Some(rest) = r.rest else {
            continue;
        };
        t.write(BASE, M2);
        assert_eq!(t.faults(), rest.faults, "{w}");
        assert_eq!(t.map(BASE, M2), rest.map, "{w}");
        assert_eq!(t.smaps(BASE, M2, "AnonHugePages"), rest.anon_huge, "{w}");
        assert_eq!(t.smaps(BASE, M2, "Rss"), 2048, "{w}");
        assert_eq!(t.k.deferred_split_len(), rest.deferred_split, "{w}");
    }
}

#[test]
fn no_madvise_read_and_write_are_per_page() {
    let mut t = T::new("6.18");
    t.mmap(BASE, M2, Prot::RW);
    t.read(BASE, M2);
    assert_eq!(t.faults(), 512);
    assert_eq!(t.map(BASE, M2), vec![(Backing::Zero, 512)]);
    t.write(BASE, 1);
    assert_eq!(t.faults(), 1);
    t.write(BASE, M2);
    assert_eq!(t.faults(), 511);
    assert_eq!(t.map(BASE, M2), vec![(Backing::Anon, 512)]);
    assert_eq!(t.d(VmItem::ThpFaultAlloc), 0);
}

/// One fault maps the whole 2 MiB of a MADV_HUGEPAGE region by a new PMD THP: a write; a
/// read with `use_zero_page=0`; a write with 64 KiB mTHP also `always` (the PMD order wins).
#[test]
fn one_fault_maps_a_pmd_thp() {
    type Knobs = &'static [(&'static str, &'static str)];
    let rows: [(&str, Knobs, AccessKind); 3] = [
        ("write", &[], AccessKind::Write),
        (
            "read, use_zero_page=0",
            &[("use_zero_page", "0")],
            AccessKind::Read,
        ),
        (
            "write, 64K mTHP always",
            &[("hugepages-64kB.enabled", "always")],
            AccessKind::Write,
        ),
    ];
    for (what, knobs, kind) in rows {
        let mut t = T::with("6.18", 16 << 30, knobs);
        thp_region(&mut t);
        t.touch(BASE, M2, kind).unwrap();
        assert_eq!(t.faults(), 1, "{what}");
        assert_eq!(t.d(VmItem::ThpFaultAlloc), 1, "{what}");
        assert_eq!(t.dm(2048, MthpStat::NrAnon), 1, "{what}");
        assert_eq!(t.map(BASE, M2), vec![(Backing::ThpPmd, 512)], "{what}");
        assert_eq!(t.smaps(BASE, M2, "Rss"), 2048, "{what}");
    }
}

#[test]
fn mthp_64k_always() {
    let mut t = T::with("6.18", 16 << 30, &[("hugepages-64kB.enabled", "always")]);
    t.mmap(BASE, M2, Prot::RW);
    t.write(BASE, M2);
    assert_eq!(t.faults(), 32);
    assert_eq!(t.dm(64, MthpStat::AnonFaultAlloc), 32);
    assert_eq!(t.dm(64, MthpStat::NrAnon), 32);
    assert_eq!(t.map(BASE, M2), vec![(Backing::ThpPte { order: 4 }, 512)]);
    assert_eq!(t.smaps(BASE, M2, "AnonHugePages"), 0);
    assert_eq!(t.d(VmItem::ThpFaultAlloc), 0);
}

#[test]
fn mthp_block_around_address_and_read_first() {
    let mut t = T::with("6.18", 16 << 30, &[("hugepages-64kB.enabled", "always")]);
    t.mmap(BASE, M2, Prot::RW);
    t.write(BASE + 3 * K4, 1);
    assert_eq!(t.faults(), 1);
    t.write(BASE, 1);
    assert_eq!(t.faults(), 0, "page 0 is in the 64K folio around page 3");
    // Read first, then write: the zero PTE in the block forces order 0.
    t.read(BASE + 64 * K4, 1);
    t.write(BASE + 64 * K4, 1);
    assert_eq!(t.faults(), 2);
    assert_eq!(t.map(BASE + 64 * K4, K4), vec![(Backing::Anon, 1)]);
}

#[test]
fn mthp_vma_of_160k() {
    let mut t = T::with("6.18", 16 << 30, &[("hugepages-64kB.enabled", "always")]);
    t.mmap(BASE, 160 << 10, Prot::RW);
    t.write(BASE, 160 << 10);
    assert_eq!(t.faults(), 10);
    assert_eq!(
        t.map(BASE, 160 << 10),
        vec![(Backing::ThpPte { order: 4 }, 32), (Backing::Anon, 8)]
    );
}

#[test]
fn thp_allowed_rules() {
    // enabled=never with MADV_HUGEPAGE; NOHUGEPAGE; unaligned VMA; prctl.
    let mut t = T::with("6.18", 16 << 30, &[("enabled", "never")]);
    thp_region(&mut t);
    t.read(BASE, M2);
    assert_eq!(t.faults(), 512);

    let mut t = T::with("6.18", 16 << 30, &[("enabled", "always")]);
    t.mmap(BASE, M2, Prot::RW);
    t.madvise(BASE, M2, Advice::Nohugepage).unwrap();
    t.read(BASE, M2);
    assert_eq!(t.faults(), 512);

    // A 2 MiB VMA at a 4 KiB offset holds no aligned PMD block.
    let mut t = T::with("6.18", 16 << 30, &[("enabled", "always")]);
    t.mmap(BASE + K4, M2, Prot::RW);
    t.write(BASE + K4, M2);
    assert_eq!(t.faults(), 512);
    assert_eq!(t.smaps(BASE, 2 * M2, "THPeligible"), 0);

    let mut t = T::new("6.18");
    t.k.prctl_set_thp_disable(t.pid, true, 0).unwrap();
    thp_region(&mut t);
    t.read(BASE, M2);
    t.write(BASE, M2);
    assert_eq!(t.faults(), 1024);
    assert_eq!(t.k.prctl_get_thp_disable(t.pid), 1);

    // Except-advised (6.18): MADV_HUGEPAGE still gets a THP; 6.12 refuses the flag.
    let mut t = T::new("6.18");
    t.k.prctl_set_thp_disable(t.pid, true, 2).unwrap();
    assert_eq!(t.k.prctl_get_thp_disable(t.pid), 3);
    thp_region(&mut t);
    t.write(BASE, M2);
    assert_eq!(t.faults(), 1);
    assert_eq!(t.d(VmItem::ThpFaultAlloc), 1);
    let mut t = T::new("6.12");
    assert_eq!(
        t.k.prctl_set_thp_disable(t.pid, true, 2),
        Err(Errno::EINVAL)
    );
    t.ok();
}

#[test]
fn hzp_wp_quirk_after_nohugepage() {
    let mut t = T::new("6.18");
    thp_region(&mut t);
    t.read(BASE, M2);
    t.madvise(BASE, M2, Advice::Nohugepage).unwrap();
    t.faults();
    t.write(BASE, 1);
    assert_eq!(t.faults(), 1);
    assert_eq!(
        t.d(VmItem::ThpFaultAlloc),
        1,
        "the wp path does not re-check THP eligibility"
    );
}

#[test]
fn partial_munmap_and_dontneed_queue_deferred_split() {
    for op in ["munmap", "dontneed"] {
        let mut t = T::new("6.18");
        thp_region(&mut t);
        t.write(BASE, M2);
        match op {
            "munmap" => t.k.munmap(t.pid, BASE + 256 * K4, K4).unwrap(),
            _ => t.madvise(BASE + 256 * K4, K4, Advice::Dontneed).unwrap(),
        }
        t.ok();
        assert_eq!(t.d(VmItem::ThpSplitPmd), 1, "{op}");
        assert_eq!(t.d(VmItem::ThpDeferredSplitPage), 1, "{op}");
        assert_eq!(t.dm(2048, MthpStat::SplitDeferred), 1);
        assert_eq!(t.dm(2048, MthpStat::NrAnonPartiallyMapped), 1);
        assert_eq!(t.dm(2048, MthpStat::NrAnon), 1, "folio still exists");
        assert_eq!(t.d(VmItem::NrAnonTransparentHugepages), 0, "+1 then -1");
        assert_eq!(t.smaps(BASE, M2, "Rss"), 2044);
        assert_eq!(t.faults(), 1);
    }
}

#[test]
fn dontneed_whole_thp_frees_it() {
    let mut t = T::new("6.18");
    thp_region(&mut t);
    t.write(BASE, M2);
    let free = t.k.nr_free_pages();
    t.madvise(BASE, M2, Advice::Dontneed).unwrap();
    assert_eq!(t.dm(2048, MthpStat::NrAnon), 0);
    assert_eq!(t.d(VmItem::ThpSplitPmd), 0);
    assert_eq!(
        t.k.nr_free_pages(),
        free + 512 + 1,
        "THP and its deposited page table"
    );
    assert_eq!(t.map(BASE, M2), vec![(Backing::None, 512)]);
    // The slot has no page table left behind: the next write faults a new THP.
    t.faults();
    t.write(BASE, 1);
    assert_eq!(t.faults(), 1);
    assert_eq!(t.d(VmItem::ThpFaultAlloc), 2);
}

#[test]
fn mprotect_part_splits_pmd_whole_does_not() {
    let mut t = T::new("6.18");
    thp_region(&mut t);
    t.write(BASE, M2);
    t.k.mprotect(t.pid, BASE, M2, Prot::R).unwrap();
    t.ok();
    assert_eq!(t.d(VmItem::ThpSplitPmd), 0);
    assert_eq!(t.k.mm(t.pid).vmas.len(), 1);
    t.k.mprotect(t.pid, BASE, M2, Prot::RW).unwrap();
    t.ok();
    t.faults();
    t.write(BASE, M2);
    assert_eq!(t.faults(), 0, "exclusive THP regains write access in place");
    t.k.mprotect(t.pid, BASE + K4, K4, Prot::R).unwrap();
    t.ok();
    assert_eq!(t.d(VmItem::ThpSplitPmd), 1);
    assert_eq!(t.k.mm(t.pid).vmas.len(), 3);
    assert_eq!(t.d(VmItem::ThpDeferredSplitPage), 0);
    assert_eq!(t.map(BASE, M2), vec![(Backing::ThpPte { order: 9 }, 512)]);
    assert_eq!(
        t.k.access(t.pid, BASE + K4, AccessKind::Write),
        Err(Signal::Sigsegv)
    );
    assert_eq!(t.k.touch_result(t.pid, BASE + K4), Ok(()));
    // Back to rw: VMAs merge again.
    t.k.mprotect(t.pid, BASE + K4, K4, Prot::RW).unwrap();
    t.ok();
    assert_eq!(t.k.mm(t.pid).vmas.len(), 1);
}

#[test]
fn mprotect_hole_is_enomem_after_changing_the_first_part() {
    let mut t = T::new("6.18");
    t.mmap(BASE, M2, Prot::RW);
    t.mmap(BASE + 2 * M2, M2, Prot::RW);
    assert_eq!(
        t.k.mprotect(t.pid, BASE, 3 * M2, Prot::R),
        Err(Errno::ENOMEM)
    );
    t.ok();
    assert_eq!(t.k.mm(t.pid).vma_at(BASE).unwrap().flags & 2, 0);
    assert_eq!(
        t.k.mprotect(t.pid, BASE + 1, K4, Prot::R),
        Err(Errno::EINVAL)
    );
}

#[test]
fn madvise_errors_and_vma_splits() {
    let mut t = T::new("6.18");
    t.mmap(BASE, M2, Prot::RW);
    assert_eq!(
        t.madvise(BASE + 1, K4, Advice::Hugepage),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        t.madvise(BASE, 2 * M2, Advice::Hugepage),
        Err(Errno::ENOMEM),
        "hole after the VMA"
    );
    assert!(
        t.k.mm(t.pid).vma_at(BASE).unwrap().flags & thpsim_kernel::mm::vmf::HUGEPAGE != 0,
        "applied to the mapped part"
    );
    t.madvise(BASE + K4, K4, Advice::Nohugepage).unwrap();
    assert_eq!(t.k.mm(t.pid).vmas.len(), 3);
    t.madvise(BASE + K4, K4, Advice::Hugepage).unwrap();
    assert_eq!(t.k.mm(t.pid).vmas.len(), 1);
    assert_eq!(t.madvise(BASE, 0, Advice::Hugepage), Ok(()));
    assert_eq!(
        t.k.madvise(t.pid, BASE, K4, Advice::Dontfork),
        Err(Errno::EOPNOTSUPP)
    );
}

#[test]
fn populate_read_and_write() {
    let mut t = T::new("6.18");
    thp_region(&mut t);
    t.madvise(BASE, M2, Advice::PopulateRead).unwrap();
    assert_eq!(t.faults(), 1);
    assert_eq!(t.map(BASE, M2), vec![(Backing::HugeZero, 512)]);
    t.madvise(BASE, M2, Advice::PopulateWrite).unwrap();
    assert_eq!(t.faults(), 1);
    assert_eq!(t.d(VmItem::ThpFaultAlloc), 1);
    t.madvise(BASE, M2, Advice::PopulateWrite).unwrap();
    assert_eq!(t.faults(), 0);

    let mut t = T::new("6.18");
    t.mmap(BASE, M2, Prot::RW);
    t.madvise(BASE, M2, Advice::PopulateRead).unwrap();
    assert_eq!(t.faults(), 512);
    t.madvise(BASE, M2, Advice::PopulateWrite).unwrap();
    assert_eq!(t.faults(), 512);
    assert_eq!(t.map(BASE, M2), vec![(Backing::Anon, 512)]);

    // Errors: hole → ENOMEM, RO write → EINVAL, PROT_NONE read → EINVAL, unaligned → EINVAL.
    let mut t = T::new("6.18");
    t.mmap(BASE, M2, Prot::R);
    t.mmap(BASE + 2 * M2, M2, Prot::NONE);
    assert_eq!(
        t.madvise(BASE, 2 * M2, Advice::PopulateRead),
        Err(Errno::ENOMEM)
    );
    assert_eq!(
        t.madvise(BASE, M2, Advice::PopulateWrite),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        t.madvise(BASE + 2 * M2, M2, Advice::PopulateRead),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        t.madvise(BASE + 5, M2, Advice::PopulateRead),
        Err(Errno::EINVAL)
    );
}

#[test]
fn map_populate_chooses_write_for_private_writable() {
    let mut t = T::new("6.18");
    t.k.mmap(
        t.pid,
        BASE,
        2 * M2,
        Prot::RW,
        MapFlags {
            populate: true,
            ..Default::default()
        },
    )
    .unwrap();
    t.ok();
    assert_eq!(t.faults(), 1024);
    assert_eq!(t.map(BASE, 2 * M2), vec![(Backing::Anon, 1024)]);
    t.k.mmap(
        t.pid,
        BASE + 4 * M2,
        2 * M2,
        Prot::R,
        MapFlags {
            populate: true,
            ..Default::default()
        },
    )
    .unwrap();
    t.ok();
    assert_eq!(t.faults(), 1024);
    assert_eq!(t.map(BASE + 4 * M2, 2 * M2), vec![(Backing::Zero, 1024)]);
}

#[test]
fn segv_on_unmapped_and_protection() {
    let mut t = T::new("6.18");
    t.mmap(BASE, M2, Prot::R);
    assert_eq!(
        t.k.access(t.pid, BASE + M2, AccessKind::Read),
        Err(Signal::Sigsegv)
    );
    assert_eq!(
        t.k.access(t.pid, BASE, AccessKind::Write),
        Err(Signal::Sigsegv)
    );
    assert_eq!(t.faults(), 0);
    assert_eq!(t.d(VmItem::Pgfault), 0);
    assert_eq!(
        t.k.mmap(t.pid, BASE, K4, Prot::RW, MapFlags::default()),
        Err(Errno::EEXIST)
    );
    assert_eq!(
        t.k.mmap(t.pid, BASE + 1, K4, Prot::RW, MapFlags::default()),
        Err(Errno::EINVAL)
    );
    assert_eq!(t.k.munmap(t.pid, BASE + 1, K4), Err(Errno::EINVAL));
}

#[test]
fn thp_fault_fallback_on_fragmented_memory() {
    // 4 MiB of memory; 600 order-0 pages use both halves of the only order-10 block, so no
    // order-9 block remains for the THP fault.
    let mut t = T::with("6.18", 4 << 20, &[]);
    t.mmap(BASE + 8 * M2, 2 * M2, Prot::RW);
    t.write(BASE + 8 * M2, 600 * K4);
    t.faults();
    thp_region(&mut t);
    t.write(BASE, K4);
    assert_eq!(t.d(VmItem::ThpFaultFallback), 1);
    assert_eq!(t.dm(2048, MthpStat::AnonFaultFallback), 1);
    assert_eq!(t.faults(), 1);
    assert_eq!(t.map(BASE, K4), vec![(Backing::Anon, 1)]);
}

#[test]
fn oom_kills_the_faulting_task() {
    let mut t = T::with("6.18", 4 << 20, &[]);
    t.mmap(BASE, 8 * M2, Prot::RW);
    let r = t.touch(BASE, 8 * M2, AccessKind::Write);
    assert_eq!(r, Err(Signal::Sigkill));
    // The last pages stay free: an order-0 allocation must leave more than the min
    // watermark (4 MiB: min_free_kbytes 256 KiB = 64 pages) and there is nothing to reclaim.
    assert_eq!(t.k.nr_free_pages(), 64);
}

#[test]
fn thp_fault_oom_on_page_table_frees_unmapped_folio() {
    // Regression (proptest_ops): the order-9 folio is allocated, then the deposited page
    // table cannot be (VM_FAULT_OOM). The folio is freed before it ever got an anon
    // mapping, so mTHP nr_anon must not go down.
    let mut t = T::with("6.18", 4 << 20, &[]);
    thp_region(&mut t);
    t.mmap(BASE + 4 * M2, 2 * M2, Prot::RW);
    t.madvise(BASE + 4 * M2, 2 * M2, Advice::Nohugepage)
        .unwrap();
    // Leave exactly 576 free pages with one free order-9 block among them: the THP takes
    // it (576 - 511 is above the min watermark of 64 pages) and the page table would leave
    // only 63. The page tables claim the first 4 MiB block for unmovable pages; the first
    // 2 MiB of data take the second pageblock back for movable ones; the rest of the data
    // claims the first pageblock; dropping the first 2 MiB frees the second pageblock.
    t.write(BASE + 4 * M2, M2);
    let mut n = 0;
    t.write(BASE + 5 * M2, 400 * K4);
    t.madvise(BASE + 4 * M2, M2, Advice::Dontneed).unwrap();
    while t.k.nr_free_pages() > 576 {
        t.write(BASE + 5 * M2 + (400 + n) * K4, K4);
        n += 1;
    }
    assert_eq!(t.k.nr_free_pages(), 576);
    assert_eq!(t.touch(BASE, K4, AccessKind::Write), Err(Signal::Sigkill));
    assert_eq!(t.k.nr_free_pages(), 576);
    assert_eq!(t.dm(2048, MthpStat::NrAnon), 0);
    assert_eq!(t.map(BASE, M2), vec![(Backing::None, 512)]);
}

#[test]
fn munmap_frees_everything() {
    let mut t = T::with("6.18", 16 << 30, &[("hugepages-64kB.enabled", "always")]);
    let free = t.k.nr_free_pages();
    thp_region(&mut t);
    t.mmap(BASE + 4 * M2, 3 * M2, Prot::RW);
    t.read(BASE, M2);
    t.write(BASE + 4 * M2, 3 * M2);
    t.k.munmap(t.pid, BASE, 16 * M2).unwrap();
    t.ok();
    // Everything but the huge zero folio (held by the mm until exit) is back.
    assert_eq!(t.k.nr_free_pages(), free - 512);
    assert_eq!(t.k.nr_folios(), 0);
}

#[test]
fn populate_pgtable_proposal_blocks_pmd_thp() {
    let mut t = T::new("6.18");
    thp_region(&mut t);
    t.madvise(BASE, M2, Advice::PopulatePgtable).unwrap();
    assert_eq!(t.faults(), 0, "no faults, nothing mapped");
    assert_eq!(t.map(BASE, M2), vec![(Backing::None, 512)]);
    t.write(BASE, M2);
    assert_eq!(t.faults(), 512, "the slot has a page table: PTE path only");
    assert_eq!(t.d(VmItem::ThpFaultAlloc), 0);
    assert_eq!(
        t.madvise(BASE, 2 * M2, Advice::PopulatePgtable),
        Err(Errno::ENOMEM)
    );
}

#[test]
fn mlock_part_of_a_thp_splits_its_pmd_and_populates() {
    let mut t = T::new("6.18");
    thp_region(&mut t);
    t.write(BASE, M2);
    t.faults();
    t.k.mlock(t.pid, BASE + K4, K4).unwrap();
    t.ok();
    assert_eq!(t.d(VmItem::ThpSplitPmd), 1, "VMA split inside the PMD");
    assert_eq!(t.k.mm(t.pid).vmas.len(), 3);
    assert_eq!(t.smaps(BASE, M2, "Locked"), 4);
    assert_eq!(
        t.madvise(BASE + K4, K4, Advice::Dontneed),
        Err(Errno::EINVAL)
    );
    t.k.munlock(t.pid, BASE + K4, K4).unwrap();
    t.ok();
    assert_eq!(t.k.mm(t.pid).vmas.len(), 1);
    // mlock of an untouched mapping populates it (write faults: private writable).
    t.mmap(BASE + 4 * M2, M2, Prot::RW);
    t.k.mlock(t.pid, BASE + 4 * M2, M2).unwrap();
    t.ok();
    assert_eq!(t.faults(), 512);
    assert_eq!(t.map(BASE + 4 * M2, M2), vec![(Backing::Anon, 512)]);
    assert_eq!(t.smaps(BASE + 4 * M2, M2, "Locked"), 2048);
    assert_eq!(t.k.mlock(t.pid, BASE + 8 * M2, K4), Err(Errno::ENOMEM));
}

/// mremap with a new size (`mremap_resize`, flags 0 without a destination): a shrink
/// unmaps the tail as munmap does (a THP cut mid-way splits its PMD and is queued for
/// deferred split; at a PMD boundary nothing splits), a grow in place extends the VMA only
/// where nothing is mapped and the range reaches the VMA's end (ENOMEM, EFAULT across it).
/// The same cases run on the host as conformance 810–816.
#[test]
fn mremap_resize_shrinks_and_grows_in_place() {
    let mut t = T::new("6.18");
    t.mmap(BASE, 2 * M2, Prot::RW);
    t.madvise(BASE, 2 * M2, Advice::Hugepage).unwrap();
    t.write(BASE, 2 * M2);
    assert_eq!(t.faults(), 2);
    assert_eq!(
        t.k.mremap_resize(t.pid, BASE, 2 * M2, 3 * M2 / 2, None),
        Ok(BASE)
    );
    t.ok();
    assert_eq!(t.faults(), 0);
    assert_eq!(t.d(VmItem::ThpSplitPmd), 1);
    assert_eq!(t.d(VmItem::ThpDeferredSplitPage), 1);
    assert_eq!(t.smaps(BASE, 2 * M2, "Size"), 3072);
    assert_eq!(
        t.map(BASE, 2 * M2),
        vec![
            (Backing::ThpPmd, 512),
            (Backing::ThpPte { order: 9 }, 256),
            (Backing::None, 256)
        ]
    );
    // At the PMD boundary: the PTE-mapped rest goes, the PMD stays.
    assert_eq!(
        t.k.mremap_resize(t.pid, BASE, 3 * M2 / 2, M2, None),
        Ok(BASE)
    );
    t.ok();
    assert_eq!(t.d(VmItem::ThpSplitPmd), 1);
    assert_eq!(t.map(BASE, M2), vec![(Backing::ThpPmd, 512)]);
    // Zero new length, unaligned address: EINVAL before the lookup; a hole: EFAULT.
    let r = |t: &mut T, a, o, n, to| t.k.mremap_resize(t.pid, a, o, n, to);
    assert_eq!(r(&mut t, BASE + 4 * M2, M2, 0, None), Err(Errno::EINVAL));
    assert_eq!(r(&mut t, BASE + 1, K4, 2 * K4, None), Err(Errno::EINVAL));
    assert_eq!(r(&mut t, BASE + 4 * M2, M2, K4, None), Err(Errno::EFAULT));
    // Growing: a range short of the VMA's end, one across it, a neighbour in the way.
    assert_eq!(r(&mut t, BASE, K4, 2 * K4, None), Err(Errno::ENOMEM));
    assert_eq!(r(&mut t, BASE, 2 * M2, 3 * M2, None), Err(Errno::EFAULT));
    t.mmap(BASE + 3 * M2, M2, Prot::R);
    assert_eq!(r(&mut t, BASE, M2, 4 * M2, None), Err(Errno::ENOMEM));
    assert_eq!(t.smaps(BASE, 3 * M2, "Size"), 2048);
    // Up to the neighbour (read-only: no merge), then a fault in the grown part is a THP.
    assert_eq!(r(&mut t, BASE, M2, 3 * M2, None), Ok(BASE));
    t.ok();
    assert_eq!(t.smaps(BASE, 3 * M2, "Size"), 6144);
    assert_eq!(t.smaps(BASE + 3 * M2, M2, "Size"), 2048);
    t.write(BASE + 2 * M2, K4);
    assert_eq!(t.faults(), 1);
    assert_eq!(t.map(BASE + 2 * M2, M2), vec![(Backing::ThpPmd, 512)]);
    // A hugetlb-free private mapping may not duplicate itself (old_len 0): EINVAL.
    assert_eq!(r(&mut t, BASE, 0, M2, None), Err(Errno::EINVAL));
}

/// mremap with a new size and MREMAP_FIXED: the destination is unmapped first, then a
/// shrink's tail; the kept part (or the whole old length) moves into a VMA of the new size,
/// and a grown mlocked VMA populates its new part. Conformance 814, 815, 818.
#[test]
fn mremap_resize_with_a_destination() {
    let mut t = T::new("6.18");
    t.mmap(BASE, 2 * M2, Prot::RW);
    t.madvise(BASE, 2 * M2, Advice::Hugepage).unwrap();
    t.write(BASE, 2 * M2);
    t.mmap(BASE + 8 * M2, 2 * M2, Prot::R);
    t.faults();
    let dst = BASE + 8 * M2;
    // Overlap of the old range (as given) with the new one: EINVAL, nothing unmapped.
    assert_eq!(
        t.k.mremap_resize(t.pid, BASE, 2 * M2, M2, Some(BASE + M2)),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        t.k.mremap_resize(t.pid, BASE, 2 * M2, 3 * M2 / 2, Some(dst)),
        Ok(dst)
    );
    t.ok();
    assert_eq!(t.faults(), 0);
    assert_eq!(t.d(VmItem::ThpSplitPmd), 1);
    assert_eq!(
        t.map(dst, 2 * M2),
        vec![
            (Backing::ThpPmd, 512),
            (Backing::ThpPte { order: 9 }, 256),
            (Backing::None, 256)
        ]
    );
    assert_eq!(t.map(BASE, 2 * M2), vec![(Backing::None, 1024)]);
    // Grow while moving a locked VMA: the new part is populated (4 KiB faults: the first
    // half of its 2 MiB block is PTE-mapped).
    t.k.mlock(t.pid, dst, 3 * M2 / 2).unwrap();
    t.faults();
    let dst2 = BASE + 16 * M2;
    assert_eq!(
        t.k.mremap_resize(t.pid, dst, 3 * M2 / 2, 2 * M2, Some(dst2)),
        Ok(dst2)
    );
    t.ok();
    assert_eq!(t.faults(), 256);
    assert_eq!(t.smaps(dst2, 2 * M2, "Locked"), 4096);
    assert_eq!(t.map(dst2 + 3 * M2 / 2, M2 / 2), vec![(Backing::Anon, 256)]);
}

#[test]
fn mremap_aligned_keeps_pmd_unaligned_splits() {
    for (dst_off, split, map) in [
        (0u64, 0, vec![(Backing::ThpPmd, 512)]),
        (K4, 1, vec![(Backing::ThpPte { order: 9 }, 512)]),
    ] {
        let mut t = T::new("6.18");
        thp_region(&mut t);
        t.write(BASE, M2);
        t.faults();
        let dst = BASE + 8 * M2 + dst_off;
        assert_eq!(t.k.mremap(t.pid, BASE, M2, dst), Ok(dst));
        t.ok();
        assert_eq!(t.faults(), 0);
        assert_eq!(t.d(VmItem::ThpSplitPmd), split, "dst offset {dst_off:#x}");
        assert_eq!(t.map(dst, M2), map);
        assert_eq!(t.map(BASE, M2), vec![(Backing::None, 512)]);
        assert_eq!(t.smaps(dst, M2, "Rss"), 2048);
        // The moved pages stay written: no faults.
        t.write(dst, M2);
        assert_eq!(t.faults(), 0);
        // A folio split after the move still finds its (moved) mappings.
        t.madvise(dst + K4, K4, Advice::Free).unwrap();
        t.ok();
    }
    let mut t = T::new("6.18");
    t.mmap(BASE, M2, Prot::RW);
    // 6.17+: a move may run past its VMA; gaps are kept.
    assert_eq!(
        t.k.mremap(t.pid, BASE, 2 * M2, BASE + 8 * M2),
        Ok(BASE + 8 * M2)
    );
    t.ok();
    assert_eq!(
        t.k.mremap(t.pid, BASE + 4 * M2, K4, BASE + 16 * M2),
        Err(Errno::EFAULT),
        "hole at the start"
    );
    let mut t = T::new("6.12");
    t.mmap(BASE, M2, Prot::RW);
    assert_eq!(
        t.k.mremap(t.pid, BASE, 2 * M2, BASE + 8 * M2),
        Err(Errno::EFAULT),
        "one VMA only"
    );
    assert_eq!(
        t.k.mremap(t.pid, BASE, M2, BASE + K4),
        Err(Errno::EINVAL),
        "overlap"
    );
}

#[test]
fn mprotect_write_on_a_locked_private_vma_populates() {
    // mprotect_fixup() → populate_vma_page_range(): the zero pages are COW-broken now.
    let mut t = T::new("6.18");
    t.mmap(BASE, M2, Prot::R);
    t.k.mlock(t.pid, BASE, M2).unwrap();
    t.ok();
    assert_eq!(t.faults(), 512);
    assert_eq!(t.map(BASE, M2), vec![(Backing::Zero, 512)]);
    t.k.mprotect(t.pid, BASE, M2 / 2, Prot::RW).unwrap();
    t.ok();
    assert_eq!(t.faults(), 256);
    assert_eq!(
        t.map(BASE, M2),
        vec![(Backing::Anon, 256), (Backing::Zero, 256)]
    );
    // Already writable before: no populate. Unlocked: no populate.
    t.k.mprotect(t.pid, BASE, M2 / 2, Prot::RW).unwrap();
    t.k.munlock(t.pid, BASE + M2 / 2, M2 / 2).unwrap();
    t.k.mprotect(t.pid, BASE + M2 / 2, M2 / 2, Prot::RW)
        .unwrap();
    t.ok();
    assert_eq!(t.faults(), 0);
}
