//! Model microbenchmarks (divan): the fault paths and the resident-access fast path, one
//! simulated process each. `cargo bench -p thpsim-kernel`. The end-to-end figures with
//! targets are `thpsim bench`; these isolate one path each for profiling.

use divan::Bencher;
use thpsim_kernel::mmap::MapFlags;
use thpsim_kernel::types::{AccessKind, AccessPattern, Advice, Pid, Prot};
use thpsim_kernel::{Kernel, KernelConfig};

const BASE: u64 = 1 << 40;
const LEN: u64 = 64 << 20;
const K4: u64 = 4096;

fn main() {
    divan::main();
}

/// A kernel with one process that has `LEN` bytes mapped at `BASE` (MADV_HUGEPAGE if `thp`).
fn setup(thp: bool) -> (Kernel, Pid) {
    let mut k = Kernel::new(KernelConfig::default()).expect("default config");
    let pid = k.spawn();
    k.mmap(pid, BASE, LEN, Prot::RW, MapFlags::default())
        .expect("mmap");
    if thp {
        k.madvise(pid, BASE, LEN, Advice::Hugepage)
            .expect("madvise");
    }
    (k, pid)
}

/// Order-0 write faults: every 4 KiB page of a fresh mapping once.
#[divan::bench]
fn write_faults_4k(b: Bencher) {
    b.with_inputs(|| setup(false))
        .bench_local_values(|(mut k, pid)| {
            k.access_seq(pid, BASE, BASE + LEN, K4, AccessPattern::Write)
                .expect("no signal");
            k
        });
}

/// PMD THP write faults: one access per 2 MiB of a fresh MADV_HUGEPAGE mapping.
#[divan::bench]
fn write_faults_pmd(b: Bencher) {
    b.with_inputs(|| setup(true))
        .bench_local_values(|(mut k, pid)| {
            k.access_seq(pid, BASE, BASE + LEN, 2 << 20, AccessPattern::Write)
                .expect("no signal");
            k
        });
}

/// Accesses to pages that are already mapped (the hardware fast path, no fault).
#[divan::bench]
fn resident_accesses(b: Bencher) {
    let (mut k, pid) = setup(false);
    k.access_seq(pid, BASE, BASE + LEN, K4, AccessPattern::Write)
        .expect("no signal");
    b.bench_local(|| {
        for a in (BASE..BASE + LEN).step_by(16 * 4096) {
            k.access(pid, a, AccessKind::Read).expect("no signal");
        }
    });
}
