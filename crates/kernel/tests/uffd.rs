//! userfaultfd write-protect and missing faults against the 6.18 host (the uffd
//! scenarios in scenarios/conformance): markers only with WP_UNPOPULATED, PMDs protected whole, 4 KiB unprotect splits,
//! message flags and addresses, one counted fault per resolved userfault (two for a marker).

use thpsim_kernel::errno::{Errno, Signal};
use thpsim_kernel::mm::vmf;
use thpsim_kernel::mmap::MapFlags;
use thpsim_kernel::observe::Backing;
use thpsim_kernel::types::{AccessKind, Advice, Pid, Prot};
use thpsim_kernel::userfaultfd::{Features, Mfill, MissingPolicy, WpPolicy};
use thpsim_kernel::vmstat::VmItem;
use thpsim_kernel::{Kernel, KernelConfig};

const BASE: u64 = 0x7f00_0000_0000;
const M2: u64 = 2 << 20;
const K4: u64 = 4096;

fn setup(features: Features, hugepage: bool) -> (Kernel, Pid) {
    let mut k = Kernel::new(KernelConfig::default()).unwrap();
    let pid = k.spawn();
    k.mmap(pid, BASE, M2, Prot::RW, MapFlags::default())
        .unwrap();
    if hugepage {
        k.madvise(pid, BASE, M2, Advice::Hugepage).unwrap();
    }
    k.uffd_open(pid, features).unwrap();
    (k, pid)
}

fn ok(k: &Kernel) {
    k.check_invariants()
        .unwrap_or_else(|e| panic!("invariant: {e}"));
}

fn faults(k: &Kernel, pid: Pid) -> u64 {
    k.task(pid).unwrap().minflt
}

#[test]
fn protecting_unpopulated_memory_is_a_no_op_without_wp_unpopulated() {
    let (mut k, pid) = setup(Features::default(), true);
    k.uffd_register(pid, BASE, M2, vmf::UFFD_WP).unwrap();
    k.uffd_writeprotect(pid, BASE, M2, true).unwrap();
    ok(&k);
    assert_eq!(k.page_map(pid, BASE, BASE + M2), vec![(Backing::None, 512)]);
    k.access(pid, BASE, AccessKind::Write).unwrap();
    assert_eq!(k.uffd_msgs(pid).len(), 0);
    assert_eq!(
        k.vmstat.get(VmItem::ThpFaultAlloc),
        1,
        "PMD level is not blocked by uffd-wp"
    );
    ok(&k);
}

#[test]
fn markers_with_wp_unpopulated_and_two_faults_per_marker_write() {
    let (mut k, pid) = setup(
        Features {
            wp_unpopulated: true,
            ..Default::default()
        },
        true,
    );
    k.uffd_register(pid, BASE, M2, vmf::UFFD_WP).unwrap();
    k.uffd_writeprotect(pid, BASE, M2, true).unwrap();
    ok(&k);
    assert_eq!(
        k.page_map(pid, BASE, BASE + M2),
        vec![(Backing::Marker, 512)]
    );
    k.access(pid, BASE + K4, AccessKind::Write).unwrap();
    ok(&k);
    assert_eq!(faults(&k, pid), 2);
    assert_eq!(k.uffd_msgs(pid).len(), 1);
    assert_eq!(k.uffd_msgs(pid)[0].flags, 0x3);
    assert_eq!(k.uffd_msgs(pid)[0].address, BASE + K4);
    assert_eq!(
        k.page_map(pid, BASE, BASE + 3 * K4),
        vec![
            (Backing::Marker, 1),
            (Backing::Anon, 1),
            (Backing::Marker, 1)
        ]
    );
    assert_eq!(
        k.vmstat.get(VmItem::ThpFaultAlloc),
        0,
        "a page table exists: no THP"
    );
}

#[test]
fn huge_zero_pmd_protected_whole_then_4k_or_2m_unprotect() {
    for (policy, split, alloc, map) in [
        (
            WpPolicy::Unprotect(K4),
            1,
            0,
            vec![(Backing::Anon, 1), (Backing::Zero, 511)],
        ),
        (WpPolicy::Unprotect(M2), 0, 1, vec![(Backing::ThpPmd, 512)]),
    ] {
        let (mut k, pid) = setup(Features::default(), true);
        let mut a = BASE;
        while a < BASE + M2 {
            k.access(pid, a, AccessKind::Read).unwrap();
            a += K4;
        }
        k.uffd_register(pid, BASE, M2, vmf::UFFD_WP).unwrap();
        k.uffd_writeprotect(pid, BASE, M2, true).unwrap();
        ok(&k);
        assert_eq!(
            k.page_map(pid, BASE, BASE + M2),
            vec![(Backing::HugeZero, 512)]
        );
        k.uffd_set_handler(pid, Some(policy), None, None).unwrap();
        let f0 = faults(&k, pid);
        k.access(pid, BASE, AccessKind::Write).unwrap();
        ok(&k);
        assert_eq!(faults(&k, pid) - f0, 1, "{policy:?}");
        assert_eq!(k.vmstat.get(VmItem::ThpSplitPmd), split, "{policy:?}");
        assert_eq!(k.vmstat.get(VmItem::ThpFaultAlloc), alloc, "{policy:?}");
        assert_eq!(k.page_map(pid, BASE, BASE + M2), map, "{policy:?}");
        assert_eq!(k.uffd_msgs(pid)[0].flags, 0x3);
    }
}

#[test]
fn protected_thp_4k_unprotect_splits_and_restores_write() {
    let (mut k, pid) = setup(Features::default(), true);
    k.access(pid, BASE, AccessKind::Write).unwrap();
    k.uffd_register(pid, BASE, M2, vmf::UFFD_WP).unwrap();
    k.uffd_writeprotect(pid, BASE, M2, true).unwrap();
    assert_eq!(k.vmstat.get(VmItem::ThpSplitPmd), 0, "protected whole");
    let f0 = faults(&k, pid);
    k.access(pid, BASE + K4, AccessKind::Write).unwrap();
    ok(&k);
    assert_eq!(faults(&k, pid) - f0, 1);
    assert_eq!(k.uffd_msgs(pid)[0].address, BASE + K4);
    assert_eq!(k.vmstat.get(VmItem::ThpSplitPmd), 1);
    // Unprotecting restored write access (exclusive page): the retry is spurious, no reuse.
    assert_eq!(k.vmstat.get(VmItem::Pgreuse), 0);
    assert_eq!(
        k.page_map(pid, BASE, BASE + M2),
        vec![(Backing::ThpPte { order: 9 }, 512)]
    );
    assert_eq!(
        k.smaps(pid, BASE, BASE + M2).field("AnonHugePages"),
        Some(0)
    );
}

#[test]
fn async_mode_splits_without_a_message() {
    let (mut k, pid) = setup(
        Features {
            wp_async: true,
            ..Default::default()
        },
        true,
    );
    k.access(pid, BASE, AccessKind::Write).unwrap();
    k.uffd_register(pid, BASE, M2, vmf::UFFD_WP).unwrap();
    k.uffd_writeprotect(pid, BASE, M2, true).unwrap();
    let f0 = faults(&k, pid);
    k.access(pid, BASE, AccessKind::Write).unwrap();
    ok(&k);
    assert_eq!(faults(&k, pid) - f0, 1);
    assert_eq!(k.uffd_msgs(pid).len(), 0);
    assert_eq!(k.vmstat.get(VmItem::ThpSplitPmd), 1);
    // The other 511 pages stay protected: each write is another (async) wp fault.
    k.access(pid, BASE + K4, AccessKind::Write).unwrap();
    assert_eq!(faults(&k, pid) - f0, 2);
}

#[test]
fn missing_faults_and_copy() {
    let (mut k, pid) = setup(Features::default(), true);
    k.uffd_register(pid, BASE, M2, vmf::UFFD_MISSING).unwrap();
    k.access(pid, BASE, AccessKind::Read).unwrap();
    ok(&k);
    assert_eq!(
        faults(&k, pid),
        1,
        "the blocked attempt is not counted, the retry is"
    );
    assert_eq!(k.uffd_msgs(pid)[0].flags, 0x0);
    assert_eq!(
        k.page_map(pid, BASE, BASE + 2 * K4),
        vec![(Backing::Anon, 1), (Backing::None, 1)]
    );
    k.access(pid, BASE + 8 * K4, AccessKind::Write).unwrap();
    assert_eq!(k.uffd_msgs(pid)[1].flags, 0x1);
    assert_eq!(
        k.vmstat.get(VmItem::ThpFaultAlloc),
        0,
        "MISSING aborts the THP fault"
    );
    ok(&k);
    // Explicit COPY over a populated page: EEXIST; ZEROPAGE elsewhere.
    assert_eq!(
        k.uffd_fill(pid, BASE, K4, Mfill::Copy { wp: false }),
        Err(Errno::EEXIST)
    );
    k.uffd_fill(pid, BASE + 16 * K4, 4 * K4, Mfill::ZeroPage)
        .unwrap();
    assert_eq!(
        k.page_map(pid, BASE + 16 * K4, BASE + 20 * K4),
        vec![(Backing::Zero, 4)]
    );
    k.uffd_set_handler(pid, None, Some(MissingPolicy::Zeropage(K4)), None)
        .unwrap();
    k.access(pid, BASE + 32 * K4, AccessKind::Read).unwrap();
    assert_eq!(
        k.page_map(pid, BASE + 32 * K4, BASE + 33 * K4),
        vec![(Backing::Zero, 1)]
    );
    ok(&k);
}

#[test]
fn sigbus_feature_and_unregister() {
    let (mut k, pid) = setup(
        Features {
            sigbus: true,
            ..Default::default()
        },
        false,
    );
    k.uffd_register(pid, BASE, M2, vmf::UFFD_MISSING).unwrap();
    assert_eq!(k.access(pid, BASE, AccessKind::Read), Err(Signal::Sigbus));
    k.uffd_unregister(pid, BASE, M2).unwrap();
    k.access(pid, BASE, AccessKind::Read).unwrap();
    ok(&k);
    assert_eq!(
        k.uffd_register(pid, BASE + 1, K4, vmf::UFFD_WP),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        k.uffd_writeprotect(pid, BASE, K4, true),
        Err(Errno::ENOENT),
        "not WP-registered"
    );
}

#[test]
fn uffd_armed_vma_gets_no_mthp() {
    let mut cfg = KernelConfig::default();
    cfg.sysfs.set("hugepages-64kB.enabled", "always").unwrap();
    let mut k = Kernel::new(cfg).unwrap();
    let pid = k.spawn();
    k.mmap(pid, BASE, M2, Prot::RW, MapFlags::default())
        .unwrap();
    k.uffd_open(pid, Features::default()).unwrap();
    k.uffd_register(pid, BASE, M2, vmf::UFFD_WP).unwrap();
    k.access(pid, BASE, AccessKind::Write).unwrap();
    assert_eq!(k.page_map(pid, BASE, BASE + K4), vec![(Backing::Anon, 1)]);
    ok(&k);
}

#[test]
fn resolving_write_protection_restores_write_access() {
    // Found against the host: uffd_wp_range() passes MM_CP_TRY_CHANGE_WRITABLE.
    let (mut k, pid) = setup(Features::default(), true);
    k.access(pid, BASE, AccessKind::Write).unwrap();
    k.uffd_register(pid, BASE, M2, vmf::UFFD_WP).unwrap();
    k.uffd_writeprotect(pid, BASE, M2, true).unwrap();
    k.uffd_writeprotect(pid, BASE, M2, false).unwrap();
    let f0 = faults(&k, pid);
    k.access(pid, BASE + K4, AccessKind::Write).unwrap();
    assert_eq!(
        faults(&k, pid),
        f0,
        "a whole unprotected THP is writable again"
    );
    // Unregister of a partly protected (split) range: no faults afterwards either.
    k.uffd_writeprotect(pid, BASE, M2 / 2, true).unwrap();
    assert_eq!(k.vmstat.get(VmItem::ThpSplitPmd), 1);
    k.uffd_unregister(pid, BASE, M2).unwrap();
    let mut a = BASE;
    while a < BASE + M2 {
        k.access(pid, a, AccessKind::Write).unwrap();
        a += K4;
    }
    assert_eq!(faults(&k, pid), f0);
    ok(&k);
}

#[test]
fn populate_hitting_a_userfault_counts_a_major_fault() {
    let (mut k, pid) = setup(Features::default(), true);
    let mut a = BASE;
    while a < BASE + M2 {
        k.access(pid, a, AccessKind::Read).unwrap();
        a += K4;
    }
    k.uffd_register(pid, BASE, M2, vmf::UFFD_WP).unwrap();
    k.uffd_writeprotect(pid, BASE, M2, true).unwrap();
    k.uffd_set_handler(pid, Some(WpPolicy::Unprotect(M2)), None, None)
        .unwrap();
    let (min0, maj0) = (k.task(pid).unwrap().minflt, k.task(pid).unwrap().majflt);
    k.madvise(pid, BASE, M2, Advice::PopulateWrite).unwrap();
    assert_eq!(k.task(pid).unwrap().minflt - min0, 0);
    assert_eq!(
        k.task(pid).unwrap().majflt - maj0,
        1,
        "GUP retries with FAULT_FLAG_TRIED"
    );
    assert_eq!(k.vmstat.get(VmItem::ThpFaultAlloc), 1);
    ok(&k);
}

#[test]
fn register_and_unregister_skip_holes_but_need_a_vma() {
    let (mut k, pid) = setup(Features::default(), false);
    k.munmap(pid, BASE + M2 / 2, K4 * 16).unwrap();
    let hole = (BASE + M2 / 2, K4 * 16);
    assert_eq!(
        k.uffd_register(pid, hole.0, hole.1, vmf::UFFD_MISSING),
        Err(Errno::EINVAL)
    );
    assert_eq!(k.uffd_register(pid, BASE, M2, vmf::UFFD_MISSING), Ok(()));
    ok(&k);
    assert!(k.mm(pid).vmas.values().all(|v| v.has(vmf::UFFD_MISSING)));
    assert_eq!(k.uffd_unregister(pid, hole.0, hole.1), Err(Errno::EINVAL));
    assert_eq!(k.uffd_unregister(pid, hole.0, M2 / 2), Ok(()));
    ok(&k);
    let armed: Vec<bool> = k
        .mm(pid)
        .vmas
        .values()
        .map(thpsim_kernel::mm::Vma::uffd_armed)
        .collect();
    assert_eq!(armed, vec![true, false]);
}

#[test]
fn register_keeps_a_vma_that_has_every_requested_mode() {
    let (mut k, pid) = setup(Features::default(), false);
    let both = vmf::UFFD_MISSING | vmf::UFFD_WP;
    k.uffd_register(pid, BASE, M2, both).unwrap();
    k.uffd_register(pid, BASE, M2 / 2, vmf::UFFD_MISSING)
        .unwrap();
    assert_eq!(k.mm(pid).vmas.len(), 1);
    assert_eq!(k.mm(pid).vmas[&BASE].flags & vmf::UFFD_MASK, both);
    // Other modes replace the registration.
    k.uffd_register(pid, BASE, M2, vmf::UFFD_WP).unwrap();
    k.uffd_unregister(pid, BASE, M2).unwrap();
    k.uffd_register(pid, BASE, M2, vmf::UFFD_WP).unwrap();
    k.uffd_register(pid, BASE, M2, vmf::UFFD_MISSING).unwrap();
    assert_eq!(k.uffd_writeprotect(pid, BASE, M2, true), Err(Errno::ENOENT));
    ok(&k);
}

#[test]
fn mremap_drops_the_registration_and_uffd_wp_bits() {
    let (mut k, pid) = setup(Features::default(), false);
    let dst = BASE + 4 * M2;
    k.mmap(pid, dst, M2, Prot::RW, MapFlags::default()).unwrap();
    k.uffd_register(pid, BASE, M2, vmf::UFFD_WP).unwrap();
    for a in (BASE..BASE + 16 * K4).step_by(usize::try_from(K4).unwrap()) {
        k.access(pid, a, AccessKind::Write).unwrap();
    }
    k.uffd_writeprotect(pid, BASE, 16 * K4, true).unwrap();
    assert_eq!(k.mremap(pid, BASE, M2, dst), Ok(dst));
    ok(&k);
    assert!(!k.mm(pid).vma_at(dst).unwrap().uffd_armed());
    let f0 = faults(&k, pid);
    for a in (dst..dst + 16 * K4).step_by(usize::try_from(K4).unwrap()) {
        k.access(pid, a, AccessKind::Write).unwrap();
    }
    // Ordinary write faults that reuse the exclusive pages, no userfault message.
    assert_eq!(faults(&k, pid) - f0, 16);
    assert_eq!(k.vmstat.get(VmItem::Pgreuse), 16);
    assert!(k.uffd_msgs(pid).is_empty());
    ok(&k);
}

#[test]
fn populate_over_missing_pages_the_monitor_copied_takes_no_retry_fault() {
    // The GUP retry finds the UFFDIO_COPY page mapped writable: nothing is counted for it.
    let (mut k, pid) = setup(Features::default(), false);
    k.uffd_register(pid, BASE + 4 * K4, 2 * K4, vmf::UFFD_MISSING)
        .unwrap();
    let (min0, maj0) = (k.task(pid).unwrap().minflt, k.task(pid).unwrap().majflt);
    k.mlock(pid, BASE, 16 * K4).unwrap();
    ok(&k);
    assert_eq!(k.task(pid).unwrap().minflt - min0, 14);
    assert_eq!(k.task(pid).unwrap().majflt - maj0, 0);
    assert_eq!(k.uffd_msgs(pid).len(), 2);
    assert_eq!(
        k.page_map(pid, BASE, BASE + 16 * K4),
        vec![(Backing::Anon, 16)]
    );
}
