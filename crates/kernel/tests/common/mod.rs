//! Helpers shared by the kernel crate's integration tests.
#![allow(dead_code)]

use thpsim_kernel::types::{AccessKind, Pid};
use thpsim_kernel::{profile, Kernel, KernelConfig};

pub(crate) const BASE: u64 = 0x7f00_0000_0000;
pub(crate) const M2: u64 = 2 << 20;
pub(crate) const K4: u64 = 4096;

/// A 16 GiB model with one process, under profile `p` with sysfs `knobs` and switch `sets`.
pub(crate) fn kernel(p: &str, knobs: &[(&str, &str)], sets: &[(&str, &str)]) -> (Kernel, Pid) {
    kernel_with(p, knobs, sets, KernelConfig::default())
}

/// [`kernel`] from a configuration whose other fields (swap, memory) the caller chose.
pub(crate) fn kernel_with(
    p: &str,
    knobs: &[(&str, &str)],
    sets: &[(&str, &str)],
    base: KernelConfig,
) -> (Kernel, Pid) {
    let mut prof = profile::profile(p).unwrap();
    for (k, v) in sets {
        prof.switches.set(k, v).unwrap();
    }
    let mut cfg = KernelConfig {
        profile: prof,
        ..base
    };
    for (k, v) in knobs {
        cfg.sysfs.set(k, v).unwrap();
    }
    let mut k = Kernel::new(cfg).unwrap();
    let pid = k.spawn();
    (k, pid)
}

pub(crate) fn ok(k: &Kernel) {
    k.check_invariants()
        .unwrap_or_else(|e| panic!("invariant: {e}"));
}

/// Touches one byte per 4 KiB page of `[start, start+len)`; returns the minor faults taken.
pub(crate) fn touch(k: &mut Kernel, pid: Pid, start: u64, len: u64, kind: AccessKind) -> u64 {
    let f0 = k.task(pid).unwrap().minflt;
    let mut a = start;
    while a < start + len {
        k.access(pid, a, kind).unwrap();
        a += K4;
    }
    ok(k);
    k.task(pid).unwrap().minflt - f0
}
