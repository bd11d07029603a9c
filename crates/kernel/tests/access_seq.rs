//! `Kernel::access_seq` (the PMD-at-a-time fast path) must be exactly per-page `access`:
//! same faults, counters, page map, smaps, and the same content state (checked through what
//! the underused shrinker then does).

use proptest::prelude::*;
use thpsim_kernel::mmap::MapFlags;
use thpsim_kernel::types::{AccessKind, AccessPattern, Advice, Prot};
use thpsim_kernel::{Kernel, KernelConfig};

const BASE: u64 = 0x7f00_0000_0000;
const M2: u64 = 2 << 20;
const K4: u64 = 4096;

fn state(k: &Kernel, pid: u32) -> String {
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}",
        k.task(pid).map(|t| (t.minflt, t.majflt)),
        k.counters(),
        k.page_map(pid, BASE, BASE + 8 * M2),
        k.smaps(pid, BASE, BASE + 8 * M2)
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
    #[test]
    fn access_seq_equals_per_page_access(
        hugepage in any::<bool>(),
        pre in prop::collection::vec((0u64..2048, 1u64..64, any::<bool>()), 0..6),
        start in 0u64..2048,
        pages in 1u64..2048,
        stride_pages in prop_oneof![Just(1u64), Just(3), Just(16), Just(512), Just(700)],
        pattern in prop_oneof![Just(AccessPattern::Read), Just(AccessPattern::Write), Just(AccessPattern::ReadWrite)],
        ro_part in any::<bool>(),
    ) {
        let (read, write) = (pattern.reads(), pattern.writes());
        let mut cfg = KernelConfig::default();
        cfg.sysfs.set("khugepaged.max_ptes_none", "409").unwrap();
        let mut k = Kernel::new(cfg).unwrap();
        let pid = k.spawn();
        k.mmap(pid, BASE, 8 * M2, Prot::RW, MapFlags::default()).unwrap();
        if hugepage {
            k.madvise(pid, BASE, 8 * M2, Advice::Hugepage).unwrap();
        }
        for (p, n, w) in pre {
            let mut a = BASE + p * K4;
            for _ in 0..n {
                let _ = k.access(pid, a, if w { AccessKind::Write } else { AccessKind::Read });
                a += K4;
            }
        }
        if ro_part {
            let _ = k.mprotect(pid, BASE + 4 * M2, M2, Prot::R);
        }
        let (s, e, stride) = (BASE + start * K4, BASE + (start + pages).min(4096) * K4, stride_pages * K4);
        let mut fast = k.clone();
        let mut slow = k;
        let rf = fast.access_seq(pid, s, e, stride, pattern);
        let mut rs = Ok(());
        let mut a = s;
        while a < e {
            if read {
                rs = slow.access(pid, a, AccessKind::Read);
                if rs.is_err() { break; }
            }
            if write {
                rs = slow.access(pid, a, AccessKind::Write);
                if rs.is_err() { break; }
            }
            a += stride;
        }
        prop_assert_eq!(rf, rs);
        prop_assert_eq!(state(&fast, pid), state(&slow, pid));
        // Content: the underused shrinker splits exactly the same THPs.
        fast.shrink();
        slow.shrink();
        prop_assert_eq!(state(&fast, pid), state(&slow, pid));
        fast.check_invariants().map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
}
