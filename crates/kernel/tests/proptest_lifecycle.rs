//! Random op sequences over several processes: fork and exit, every split and collapse path
//! (partial munmap/DONTNEED/FREE/mprotect/mlock/mremap, the deferred-split and underused
//! shrinkers, khugepaged passes and sleeps, MADV_COLLAPSE with every collapse mode; eager and lazy THP zeroing), and
//! userfaultfd write-protect. The invariant checker runs after every op; any op may fail
//! with an errno or a signal, none may panic or break an invariant.

use proptest::prelude::*;
use thpsim_kernel::mm::vmf;
use thpsim_kernel::mmap::MapFlags;
use thpsim_kernel::types::{AccessKind, Advice, Pid, Prot};
use thpsim_kernel::userfaultfd::{Features, WpPolicy};
use thpsim_kernel::{profile, Kernel, KernelConfig};

const BASE: u64 = 0x7f00_0000_0000;
const M2: u64 = 2 << 20;
const K4: u64 = 4096;
/// Candidate region: 6 PMD slots.
const SPAN: u64 = 6 * M2;

#[derive(Clone, Debug)]
enum Op {
    Mmap {
        off: u64,
        len: u64,
    },
    Munmap {
        off: u64,
        len: u64,
    },
    Mprotect {
        off: u64,
        len: u64,
        rw: bool,
    },
    Madvise {
        off: u64,
        len: u64,
        advice: Advice,
    },
    Touch {
        off: u64,
        len: u64,
        stride: u64,
        write: bool,
    },
    Mlock {
        off: u64,
        len: u64,
        lock: bool,
    },
    Mremap {
        off: u64,
        len: u64,
        to: u64,
    },
    /// mremap with a new size, in place (`to` None) or MREMAP_FIXED.
    MremapResize {
        off: u64,
        len: u64,
        new_len: u64,
        to: Option<u64>,
    },
    Fork,
    Exit,
    Switch(u8),
    Khugepaged(u8),
    Sleep(u32),
    Shrink,
    MaxPtesNone(u32),
    UffdOpen(bool),
    UffdRegister {
        off: u64,
        len: u64,
    },
    UffdWp {
        off: u64,
        len: u64,
        wp: bool,
    },
    UffdPolicy(bool),
}

fn page_off() -> impl Strategy<Value = u64> {
    prop_oneof![
        (0u64..6).prop_map(|s| s * M2),
        (0u64..(SPAN / K4)).prop_map(|p| p * K4),
    ]
}

fn len() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(K4),
        Just(M2),
        Just(2 * M2),
        (1u64..1024).prop_map(|p| p * K4)
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let advice = prop_oneof![
        Just(Advice::Hugepage),
        Just(Advice::Nohugepage),
        Just(Advice::Dontneed),
        Just(Advice::Free),
        Just(Advice::Cold),
        Just(Advice::Collapse),
        Just(Advice::PopulateRead),
        Just(Advice::PopulateWrite),
        Just(Advice::PopulatePgtable),
    ];
    prop_oneof![
        3 => (page_off(), len()).prop_map(|(off, len)| Op::Mmap { off, len }),
        1 => (page_off(), len()).prop_map(|(off, len)| Op::Munmap { off, len }),
        1 => (page_off(), len(), any::<bool>()).prop_map(|(off, len, rw)| Op::Mprotect { off, len, rw }),
        4 => (page_off(), len(), advice).prop_map(|(off, len, advice)| Op::Madvise { off, len, advice }),
        6 => (page_off(), len(), prop_oneof![Just(K4), Just(64 * K4), Just(M2)], any::<bool>())
            .prop_map(|(off, len, stride, write)| Op::Touch { off, len, stride, write }),
        1 => (page_off(), len(), any::<bool>()).prop_map(|(off, len, lock)| Op::Mlock { off, len, lock }),
        1 => (page_off(), len(), page_off()).prop_map(|(off, len, to)| Op::Mremap { off, len, to: to + SPAN }),
        1 => (page_off(), len(), len(), proptest::option::of(page_off()))
            .prop_map(|(off, len, new_len, to)| Op::MremapResize { off, len, new_len, to: to.map(|t| t + SPAN) }),
        2 => Just(Op::Fork),
        1 => Just(Op::Exit),
        2 => any::<u8>().prop_map(Op::Switch),
        1 => (1u8..3).prop_map(Op::Khugepaged),
        1 => (1u32..30_000).prop_map(Op::Sleep),
        1 => Just(Op::Shrink),
        1 => prop_oneof![Just(511u32), Just(409), Just(0)].prop_map(Op::MaxPtesNone),
        1 => any::<bool>().prop_map(Op::UffdOpen),
        1 => (page_off(), len()).prop_map(|(off, len)| Op::UffdRegister { off, len }),
        2 => (page_off(), len(), any::<bool>()).prop_map(|(off, len, wp)| Op::UffdWp { off, len, wp }),
        1 => any::<bool>().prop_map(Op::UffdPolicy),
    ]
}

fn run(
    profile_name: &str,
    memory: u64,
    collapse: &str,
    zeroing: &str,
    mthp: bool,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let mut prof = profile::profile(profile_name).unwrap();
    prof.switches.set("collapse", collapse).unwrap();
    prof.switches.set("thp_zeroing", zeroing).unwrap();
    let mut cfg = KernelConfig {
        memory,
        profile: prof,
        ..Default::default()
    };
    if mthp {
        cfg.sysfs.set("hugepages-64kB.enabled", "always").unwrap();
    }
    let mut k = Kernel::new(cfg).unwrap();
    let mut procs: Vec<Pid> = vec![k.spawn()];
    let mut cur = 0usize;
    for (i, op) in ops.iter().enumerate() {
        let pid = procs[cur];
        match op.clone() {
            Op::Mmap { off, len } => {
                let _ = k.mmap(pid, BASE + off, len, Prot::RW, MapFlags::default());
            }
            Op::Munmap { off, len } => {
                let _ = k.munmap(pid, BASE + off, len);
            }
            Op::Mprotect { off, len, rw } => {
                let _ = k.mprotect(pid, BASE + off, len, if rw { Prot::RW } else { Prot::R });
            }
            Op::Madvise { off, len, advice } => {
                let _ = k.madvise(pid, BASE + off, len, advice);
            }
            Op::Touch {
                off,
                len,
                stride,
                write,
            } => {
                let mut a = BASE + off;
                while a < (BASE + off + len).min(BASE + 2 * SPAN) {
                    if k.access(
                        pid,
                        a,
                        if write {
                            AccessKind::Write
                        } else {
                            AccessKind::Read
                        },
                    )
                    .is_err()
                    {
                        break;
                    }
                    a += stride;
                }
            }
            Op::Mlock { off, len, lock } => {
                let _ = if lock {
                    k.mlock(pid, BASE + off, len)
                } else {
                    k.munlock(pid, BASE + off, len)
                };
            }
            Op::Mremap { off, len, to } => {
                let _ = k.mremap(pid, BASE + off, len, BASE + to);
            }
            Op::MremapResize {
                off,
                len,
                new_len,
                to,
            } => {
                let _ = k.mremap_resize(pid, BASE + off, len, new_len, to.map(|t| BASE + t));
            }
            Op::Fork => {
                if procs.len() < 4 {
                    if let Ok(c) = k.fork(pid) {
                        procs.push(c);
                    }
                }
            }
            Op::Exit => {
                if cur != 0 {
                    k.exit(pid);
                    procs.remove(cur);
                    cur = 0;
                }
            }
            Op::Switch(n) => cur = n as usize % procs.len(),
            Op::Khugepaged(n) => k.khugepaged_scan(u32::from(n)),
            Op::Sleep(ms) => k.sleep_ms(u64::from(ms)),
            Op::Shrink => k.shrink(),
            Op::MaxPtesNone(v) => k
                .sysfs
                .set("khugepaged.max_ptes_none", &v.to_string())
                .unwrap(),
            Op::UffdOpen(markers) => {
                let f = Features {
                    wp_unpopulated: markers,
                    ..Default::default()
                };
                let _ = k.uffd_open(pid, f);
            }
            Op::UffdRegister { off, len } => {
                let _ = k.uffd_register(pid, BASE + off, len, vmf::UFFD_WP);
            }
            Op::UffdWp { off, len, wp } => {
                let _ = k.uffd_writeprotect(pid, BASE + off, len, wp);
            }
            Op::UffdPolicy(pmd) => {
                let policy = WpPolicy::Unprotect(if pmd { M2 } else { K4 });
                let _ = k.uffd_set_handler(pid, Some(policy), None, None);
            }
        }
        if let Err(e) = k.check_invariants() {
            return Err(TestCaseError::fail(format!(
                "after op {i} {op:?} (process {cur}): {e}\nops: {:#?}",
                &ops[..=i]
            )));
        }
    }
    // Everything torn down: all memory comes back except the huge zero folio.
    for &p in procs.iter().skip(1) {
        k.exit(p);
    }
    k.exit(procs[0]);
    k.shrink();
    k.check_invariants()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(
        k.nr_free_pages(),
        k.total_pages(),
        "leak after every process exited"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]
    #[test]
    fn lifecycle_sequences_keep_invariants(
        profile in prop_oneof![Just("6.12"), Just("6.18")],
        memory in prop_oneof![Just(8u64 << 20), Just(32 << 20), Just(256 << 20)],
        collapse in prop::sample::select(&["copy", "inplace", "inplace_migrate"][..]),
        zeroing in prop::sample::select(&["eager", "lazy"][..]),
        mthp in any::<bool>(),
        ops in prop::collection::vec(op(), 1..50),
    ) {
        run(profile, memory, collapse, zeroing, mthp, &ops)?;
    }
}
