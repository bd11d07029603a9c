//! `thpsim bench`: the speed and memory figures the README lists with their targets, measured
//! on this machine.
//! Wall-clock timing lives here, in the CLI, never in the model.

use std::process::ExitCode;
use std::time::Instant;

use thpsim_kernel::mmap::MapFlags;
use thpsim_kernel::types::{AccessKind, AccessPattern, Advice, Prot};
use thpsim_kernel::{profile, Kernel, KernelConfig};
use thpsim_scenario::engine::{self, Variant};
use thpsim_scenario::sim::SimBackend;

#[derive(serde::Serialize)]
struct Figure {
    name: String,
    value: f64,
    unit: &'static str,
    target: &'static str,
    meets: bool,
    detail: String,
}

fn rss_bytes() -> u64 {
    // /proc/self/statm: size resident shared ... in pages.
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|p| p * 4096)
        .unwrap_or(0)
}

fn kernel(memory: u64) -> (Kernel, u32) {
    let cfg = KernelConfig {
        memory,
        profile: profile::profile("6.18").expect("profile"),
        ..KernelConfig::default()
    };
    let mut k = Kernel::new(cfg).expect("kernel");
    let pid = k.spawn();
    (k, pid)
}

const BASE: u64 = 0x1000_0000_0000;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;

/// Memory for a model that maps and touches `size` bytes: the pages, their page tables (or
/// the deposited tables of THPs, 4 KiB per 2 MiB either way), and room for what the
/// allocator keeps out of reach: DMA32 (below 4 GiB, shielded from Normal allocations by
/// `lowmem_reserve` on a large machine) and the Normal zone's watermarks (min, and low and
/// high 0.1 % of the zone apart each, `watermark_scale_factor` 10).
fn memory_for(size: u64) -> u64 {
    (size + size / 128 + 8 * GIB).next_multiple_of(4 << 20)
}

/// A model with `memory` bytes and one process that maps `size` bytes at `BASE` (with
/// MADV_HUGEPAGE if `huge`).
fn mapped(memory: u64, size: u64, huge: bool) -> (Kernel, u32) {
    let (mut k, pid) = kernel(memory);
    k.mmap(pid, BASE, size, Prot::RW, MapFlags::default())
        .expect("mmap");
    if huge {
        k.madvise(pid, BASE, size, Advice::Hugepage)
            .expect("madvise");
    }
    (k, pid)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Seconds `f` takes, median of `reps` runs, each on a fresh state from `setup`.
fn timed<S>(reps: usize, mut setup: impl FnMut() -> S, mut f: impl FnMut(&mut S)) -> f64 {
    median(
        (0..reps)
            .map(|_| {
                let mut s = setup();
                let t = Instant::now();
                f(&mut s);
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

/// A seeded permutation of `0..n` (n a power of two): an odd multiplier and a xor-shift,
/// enough to defeat the caches and prefetchers.
fn scatter(i: u64, n: u64) -> u64 {
    let mask = n - 1;
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15 | 1) & mask;
    x ^= x >> (n.trailing_zeros() / 2).max(1);
    x.wrapping_mul(0xbf58_476d_1ce4_e5b9 | 1) & mask
}

/// Random-order write faults: 4 KiB pages without THP, and PMD THPs.
fn random_faults(figs: &mut Vec<Figure>, quick: bool) {
    let cases: [(&str, u64, u32, bool, f64); 2] = [
        (
            "random_4k_write_faults",
            if quick { GIB } else { 8 * GIB },
            12,
            false,
            50.0,
        ),
        (
            "random_pmd_thp_faults",
            if quick { 64 * GIB } else { 512 * GIB },
            21,
            true,
            10.0,
        ),
    ];
    for (name, size, shift, huge, target) in cases {
        let n = size >> shift;
        // THPs deposit a page-table page each: 4 KiB per 2 MiB.
        let memory = memory_for(size);
        let secs = timed(
            3,
            || mapped(memory, size, huge),
            |(k, pid)| {
                for i in 0..n {
                    k.access(*pid, BASE + (scatter(i, n) << shift), AccessKind::Write)
                        .expect("fault");
                }
                assert_eq!(k.task(*pid).expect("task").minflt, n);
            },
        );
        let rate = n as f64 / secs / 1e6;
        figs.push(Figure {
            name: name.into(),
            value: rate,
            unit: "M faults/s",
            target: if huge { ">= 10" } else { ">= 50" },
            meets: rate >= target,
            detail: format!(
                "{n} {} write faults in a scattered order over {} GiB, median of 3: {secs:.3}s",
                if huge { "THP" } else { "order-0" },
                size / GIB
            ),
        });
    }
}

/// Ops over a huge mapping with little touched (1 GiB of THPs at its start, 8 KiB of 4 KiB
/// pages in the middle): each must cost what is populated, not the mapping's size.
fn sparse_ops(figs: &mut Vec<Figure>, quick: bool) {
    let sizes: &[u64] = if quick {
        &[TIB, 64 * TIB]
    } else {
        &[TIB, 16 * TIB, 64 * TIB]
    };
    for &size in sizes {
        let setup = || {
            let (mut k, pid) = kernel(4 * GIB);
            k.mmap(pid, BASE, size, Prot::RW, MapFlags::default())
                .expect("mmap");
            k.madvise(pid, BASE, size, Advice::Hugepage)
                .expect("madvise");
            k.access_seq(pid, BASE, BASE + GIB, 2 << 20, AccessPattern::Write)
                .expect("touch");
            k.madvise(pid, BASE + size / 2, 2 << 20, Advice::Nohugepage)
                .expect("madvise");
            k.access_seq(
                pid,
                BASE + size / 2,
                BASE + size / 2 + 8192,
                4096,
                AccessPattern::Write,
            )
            .expect("touch");
            (k, pid)
        };
        type Op = fn(&mut Kernel, u32, u64);
        let ops: [(&'static str, &'static str, Op); 5] = [
            ("fork", "sparse_fork", |k, pid, _| {
                k.fork(pid).expect("fork");
            }),
            ("exit", "sparse_exit", |k, pid, _| {
                let c = k.fork(pid).expect("fork");
                k.exit(c);
            }),
            ("MADV_COLLAPSE", "sparse_collapse", |k, pid, size| {
                let _ = k.madvise(pid, BASE, size, Advice::Collapse);
            }),
            ("mprotect", "sparse_mprotect", |k, pid, size| {
                k.mprotect(pid, BASE, size, Prot::R).expect("mprotect");
            }),
            ("munmap", "sparse_munmap", |k, pid, size| {
                k.munmap(pid, BASE, size).expect("munmap");
            }),
        ];
        for (what, name, op) in ops {
            let secs = timed(3, setup, |(k, pid)| op(k, *pid, size));
            let ms = secs * 1e3;
            figs.push(Figure {
                name: format!("{name}_{}t", size / TIB),
                value: ms,
                unit: "ms",
                target: "<= 5 at 64 TiB",
                meets: ms <= 5.0,
                detail: format!(
                    "{what} of a {} TiB mapping with 1 GiB of THPs and 2 pages touched (exit: fork + exit of the child), median of 3",
                    size / TIB
                ),
            });
        }
    }
}

/// QEMU's prealloc of a big guest (MADV_POPULATE_WRITE, THP and 4 KiB) and a precopy
/// destination's random-order data writes.
fn prealloc_and_precopy(figs: &mut Vec<Figure>, quick: bool) {
    let size = if quick { 256 * GIB } else { 4 * TIB };
    let secs = timed(
        1,
        || mapped(memory_for(size), size, true),
        |(k, pid)| {
            k.madvise(*pid, BASE, size, Advice::PopulateWrite)
                .expect("populate");
            assert_eq!(k.task(*pid).expect("task").minflt, size >> 21);
        },
    );
    figs.push(Figure {
        name: "prealloc_thp".into(),
        value: secs,
        unit: "s",
        target: "< 1 for 4 TiB",
        meets: secs < 1.0,
        detail: format!(
            "MADV_POPULATE_WRITE of a {} GiB MADV_HUGEPAGE guest ({} THP faults)",
            size / GIB,
            size >> 21
        ),
    });
    let size = if quick { 4 * GIB } else { 64 * GIB };
    let secs = timed(
        1,
        || mapped(memory_for(size), size, false),
        |(k, pid)| {
            k.madvise(*pid, BASE, size, Advice::PopulateWrite)
                .expect("populate");
        },
    );
    let ns = secs * 1e9 / (size / 4096) as f64;
    figs.push(Figure {
        name: "prealloc_4k_ns_per_page".into(),
        value: ns,
        unit: "ns/page",
        target: "<= 0.23 (4 TiB in < 1 s)",
        meets: ns <= 0.23,
        detail: format!(
            "MADV_POPULATE_WRITE of a {} GiB guest without THP: {secs:.3}s",
            size / GIB
        ),
    });
    // Precopy destination: every PMD THP-backed, 90% of the pages written in a seeded random
    // order (scenario::pattern's permutation, as `write ram random=90%` does).
    let sizes: &[u64] = if quick {
        &[4 * GIB]
    } else {
        &[16 * GIB, 64 * GIB, 256 * GIB]
    };
    for &size in sizes {
        let src = format!(
            "memory {}G\nmmap ram {}G anon private rw align=2M\nmadvise ram HUGEPAGE\nwrite ram random=90% seed=7\n",
            size / GIB + size / GIB / 8 + 1,
            size / GIB
        );
        let scn = thpsim_scenario::parse("bench:precopy", &src).expect("bench scenario parses");
        let secs = timed(
            1,
            || (),
            |()| {
                engine::run(&scn, &mut SimBackend::new(), &Variant::default()).expect("run");
            },
        );
        let pages = size / 4096 * 9 / 10;
        let ns = secs * 1e9 / pages as f64;
        figs.push(Figure {
            name: format!("precopy_ns_per_page_{}g", size / GIB),
            value: ns,
            unit: "ns/page",
            target: "<= 0.25 (4 TiB in < 1 s)",
            meets: ns <= 0.25,
            detail: format!(
                "{} GiB guest, {pages} random-order data writes, whole run {secs:.3}s",
                size / GIB
            ),
        });
    }
}

/// `compare` of two variants against one `run` of the same scenario (model, whole runs
/// including the report), medians.
fn compare_vs_run(figs: &mut Vec<Figure>, quick: bool) {
    let src = if quick {
        "memory 2G\nmmap ram 1G anon private rw align=2M\nmadvise ram HUGEPAGE\nread ram stride=4M\ncheckpoint zero\nwrite ram random=50% seed=1\ncheckpoint loaded\nfork child\nwrite ram+0 256M\ncheckpoint cow\n"
    } else {
        "memory 10G\nmmap ram 8G anon private rw align=2M\nmadvise ram HUGEPAGE\nread ram stride=4M\ncheckpoint zero\nwrite ram random=50% seed=1\ncheckpoint loaded\nfork child\nwrite ram+0 2G\ncheckpoint cow\n"
    };
    let scn = thpsim_scenario::parse("bench:compare", src).expect("bench scenario parses");
    let v612 = Variant {
        profile: Some("6.12".into()),
        sets: vec![],
    };
    let v618 = Variant {
        profile: Some("6.18".into()),
        sets: vec![],
    };
    let opts = crate::report::TextOpts { pages_full: false };
    // The variants take different paths (6.12 splits the huge zero page): `run` is the
    // slower one's, which a parallel compare cannot beat.
    let run_of = |v: &Variant| {
        timed(
            5,
            || (),
            |()| {
                let r = engine::run(&scn, &mut SimBackend::new(), v).expect("run");
                std::hint::black_box(crate::report::compare_text(
                    std::slice::from_ref(&r),
                    false,
                    opts,
                ));
            },
        )
    };
    let runs = [run_of(&v612), run_of(&v618)];
    let run = runs[0].max(runs[1]);
    let variants = [v612, v618];
    let cmp = timed(
        5,
        || (),
        |()| {
            let rs = crate::run_variants(&scn, &variants).expect("compare runs");
            std::hint::black_box(crate::report::compare_text(&rs, false, opts));
        },
    );
    let ratio = cmp / run;
    figs.push(Figure {
        name: "compare_2_vs_run".into(),
        value: ratio,
        unit: "×",
        target: "<= 1.2",
        meets: ratio <= 1.2,
        detail: format!(
            "compare of 6.12 and 6.18 {:.1} ms vs the slower run {:.1} ms (runs {:.1} + {:.1} ms, each with its report), medians of 5, {} threads",
            cmp * 1e3,
            run * 1e3,
            runs[0] * 1e3,
            runs[1] * 1e3,
            rayon::current_num_threads()
        ),
    });
}

pub fn main(quick: bool, json: bool) -> ExitCode {
    let mut figs = Vec::new();
    let gib: u64 = 1 << 30;

    // 1. 4 KiB write faults, then resident accesses over the same pages.
    {
        let size = if quick { gib } else { 16 * gib };
        let rss0 = rss_bytes();
        let (mut k, pid) = kernel(memory_for(size));
        k.mmap(pid, BASE, size, Prot::RW, MapFlags::default())
            .expect("mmap");
        let n = size / 4096;
        let t = Instant::now();
        let mut a = BASE;
        while a < BASE + size {
            k.access(pid, a, AccessKind::Write).expect("fault");
            a += 4096;
        }
        let cold_secs = t.elapsed().as_secs_f64();
        assert_eq!(k.task(pid).expect("task").minflt, n);
        let cold = n as f64 / cold_secs / 1e6;
        let per_page = (rss_bytes().saturating_sub(rss0)) as f64 / n as f64;
        figs.push(Figure {
            name: "bytes_per_resident_4k_page".into(),
            value: per_page,
            unit: "B",
            target: "<= 16",
            meets: per_page <= 16.0,
            detail: format!("RSS growth over {n} resident order-0 pages (includes the buddy allocator's byte per simulated page)"),
        });
        let rounds = if quick { 2 } else { 4 };
        let t = Instant::now();
        for r in 0..rounds {
            let kind = if r % 2 == 0 {
                AccessKind::Read
            } else {
                AccessKind::Write
            };
            let mut a = BASE;
            while a < BASE + size {
                k.access(pid, a, kind).expect("access");
                a += 4096;
            }
        }
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(
            k.task(pid).expect("task").minflt,
            n,
            "resident accesses must not fault"
        );
        let rate = (n * rounds) as f64 / secs / 1e6;
        figs.push(Figure {
            name: "resident_accesses".into(),
            value: rate,
            unit: "M accesses/s",
            target: ">= 200",
            meets: rate >= 200.0,
            detail: format!(
                "{} reads/writes of resident 4 KiB pages in {secs:.3}s",
                n * rounds
            ),
        });
        // Steady state: unmap and fault everything again. The model's own arrays are reused,
        // so this measures the fault path, not the host zeroing the simulator's new memory
        // (which dominates the cold first pass).
        k.munmap(pid, BASE, size).expect("munmap");
        k.mmap(pid, BASE, size, Prot::RW, MapFlags::default())
            .expect("mmap");
        let t = Instant::now();
        let mut a = BASE;
        while a < BASE + size {
            k.access(pid, a, AccessKind::Write).expect("fault");
            a += 4096;
        }
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(k.task(pid).expect("task").minflt, 2 * n);
        let rate = n as f64 / secs / 1e6;
        figs.push(Figure {
            name: "4k_write_faults".into(),
            value: rate,
            unit: "M faults/s",
            target: ">= 1000",
            meets: rate >= 1000.0,
            detail: format!(
                "steady state: {n} faults in {secs:.3}s; cold first pass (includes the host zeroing the model's new memory): {cold:.2} M/s"
            ),
        });
        // The same faults as one sequential access (`access_seq`, what a scenario's `write`
        // op runs): the extent fault path takes a PTE table's faults at once.
        k.munmap(pid, BASE, size).expect("munmap");
        k.mmap(pid, BASE, size, Prot::RW, MapFlags::default())
            .expect("mmap");
        let t = Instant::now();
        k.access_seq(pid, BASE, BASE + size, 4096, AccessPattern::Write)
            .expect("faults");
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(k.task(pid).expect("task").minflt, 3 * n);
        let rate = n as f64 / secs / 1e6;
        figs.push(Figure {
            name: "4k_write_faults_seq".into(),
            value: rate,
            unit: "M faults/s",
            target: ">= 1000",
            meets: rate >= 1000.0,
            detail: format!(
                "steady state, one access_seq over the range: {n} faults in {secs:.3}s"
            ),
        });
    }

    // 2. PMD THP write faults.
    {
        let size = if quick { 64 * gib } else { 1024 * gib };
        let rss0 = rss_bytes();
        // Each THP also deposits a page-table page: 4 KiB per 2 MiB.
        let (mut k, pid) = kernel(memory_for(size));
        k.mmap(pid, BASE, size, Prot::RW, MapFlags::default())
            .expect("mmap");
        k.madvise(pid, BASE, size, Advice::Hugepage)
            .expect("madvise");
        let n = size >> 21;
        let t = Instant::now();
        let mut a = BASE;
        while a < BASE + size {
            k.access(pid, a, AccessKind::Write).expect("fault");
            a += 2 << 20;
        }
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(
            k.vmstat.get(thpsim_kernel::vmstat::VmItem::ThpFaultAlloc) as u64,
            n
        );
        let rate = n as f64 / secs / 1e6;
        figs.push(Figure {
            name: "pmd_thp_faults".into(),
            value: rate,
            unit: "M faults/s",
            target: ">= 100",
            meets: rate >= 100.0,
            detail: format!("{n} sequential THP faults in {secs:.3}s"),
        });
        let per = (rss_bytes().saturating_sub(rss0)) as f64 / n as f64;
        figs.push(Figure {
            name: "bytes_per_pmd_thp".into(),
            value: per,
            unit: "B",
            target: "<= 128",
            meets: per <= 128.0,
            detail: format!("RSS growth over {n} PMD-mapped THPs"),
        });
    }

    // 3. A scenario that maps 4 TiB and touches it sparsely, through the whole engine.
    {
        let src = "\
memory 64G
mmap huge 4T anon private rw
madvise huge HUGEPAGE
write huge stride=1G
read huge+1M 4T-2M stride=64G
expect vmstat.thp_fault_alloc == 4096
expect smaps(huge).AnonHugePages == 8G
";
        let src = src.replace("4T-2M", &format!("{}", (4u64 << 40) - (2 << 20)));
        let scn = thpsim_scenario::parse("bench:sparse-4T", &src).expect("bench scenario parses");
        let rss0 = rss_bytes();
        let t = Instant::now();
        let res = engine::run(&scn, &mut SimBackend::new(), &Variant::default()).expect("run");
        let secs = t.elapsed().as_secs_f64();
        let failed = res.failed_expects().count();
        let rss = rss_bytes().saturating_sub(rss0) as f64 / (1 << 20) as f64;
        figs.push(Figure {
            name: "sparse_4tib_scenario".into(),
            value: secs,
            unit: "s",
            target: "4 TiB address space on this machine",
            meets: failed == 0,
            detail: format!("4 TiB mapping, 4096 THPs + 64 huge-zero reads, {failed} failed expects, model RSS growth {rss:.1} MiB"),
        });
    }

    random_faults(&mut figs, quick);
    sparse_ops(&mut figs, quick);
    prealloc_and_precopy(&mut figs, quick);
    compare_vs_run(&mut figs, quick);

    // 4. Model vs host on the same scenario (only where the host backend can run): 1 GiB of
    // guest RAM read-then-written page by page after MADV_HUGEPAGE, whole runs (setup,
    // observation and teardown included), median of several runs on each side.
    if thpsim_host::preflight().is_ok() {
        let size = if quick { "256M" } else { "1G" };
        let src = format!(
            "mmap guest {size} anon private rw\nmadvise guest HUGEPAGE\naccess guest pattern=rw\n"
        );
        let scn = thpsim_scenario::parse("bench:migration", &src).expect("parses");
        let v = Variant {
            profile: Some(thpsim_host::host_kernel_profile()),
            sets: vec![],
        };
        let median = |mut xs: Vec<f64>| {
            xs.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
            xs[xs.len() / 2]
        };
        let model = median(
            (0..9)
                .map(|_| {
                    let t = Instant::now();
                    engine::run(&scn, &mut SimBackend::new(), &v).expect("model run");
                    t.elapsed().as_secs_f64()
                })
                .collect(),
        );
        let mut ok = true;
        let host = median(
            (0..5)
                .map(|_| {
                    let mut hb = thpsim_host::HostBackend::new(thpsim_host::HostOptions {
                        allow_sysfs: false,
                        ..Default::default()
                    });
                    let t = Instant::now();
                    ok &= engine::run(&scn, &mut hb, &v).is_ok();
                    t.elapsed().as_secs_f64()
                })
                .collect(),
        );
        let ratio = host / model;
        figs.push(Figure {
            name: "model_vs_host_speedup".into(),
            value: ratio,
            unit: "×",
            target: ">= 1000",
            meets: ok && ratio >= 1000.0,
            detail: format!(
                "{size} MADV_HUGEPAGE read-then-write scenario, whole runs, medians: model {:.3} ms, host {:.3} ms",
                model * 1e3,
                host * 1e3
            ),
        });
    }

    // Trace replay over resident memory (`thpsim replay`): 64-byte steps through 64 MiB of
    // written pages, as a streaming loop touches them (64 accesses per page).
    {
        use crate::replay::{access, Rec, Replayer, READ, WRITE};
        let scn = thpsim_scenario::parse(
            "bench-replay",
            "mmap buf 64M anon private rw align=2M\nwrite buf stride=4K\n",
        )
        .expect("scenario");
        let plan = engine::plan(&scn, &Variant::default()).expect("plan");
        let mut be = SimBackend::new();
        use thpsim_scenario::backend::Backend as _;
        be.setup(&plan.setup).expect("setup");
        engine::run_planned(&scn, &plan, &mut be, &Variant::default()).expect("run");
        let buf = &plan.mappings[0];
        let chunk: Vec<Rec> = (0..buf.len / 64)
            .map(|i| {
                let kind = if i % 4 == 0 { WRITE } else { READ };
                access(kind, buf.addr + i * 64, 8)
            })
            .collect();
        let rounds = if quick { 20 } else { 100 };
        let mut r = Replayer::new(
            &mut be,
            &[(buf.addr, buf.addr, buf.len)],
            plan.setup.arena_len,
            plan.setup.arena_len,
            0,
        )
        .expect("replayer");
        let t = Instant::now();
        for _ in 0..rounds {
            r.replay(&chunk).expect("replay");
        }
        let secs = t.elapsed().as_secs_f64();
        let n = r.stats.accesses;
        assert_eq!(r.stats.minflt, 0, "resident pages must not fault");
        let rate = n as f64 / secs / 1e6;
        figs.push(Figure {
            name: "replay_resident_accesses".into(),
            value: rate,
            unit: "M accesses/s",
            target: ">= 200",
            meets: rate >= 200.0,
            detail: format!(
                "{n} trace accesses (8-byte binary records, 1 in 4 a write) in 64-byte steps over 64 MiB of resident pages in {secs:.3}s; {} answered by the replay's page cache",
                r.stats.cached
            ),
        });
    }

    if json {
        #[derive(serde::Serialize)]
        struct Out<'a> {
            schema: u32,
            quick: bool,
            release: bool,
            figures: &'a [Figure],
        }
        outln!(
            "{}",
            serde_json::to_string_pretty(&Out {
                schema: engine::SCHEMA_VERSION,
                quick,
                release: !cfg!(debug_assertions),
                figures: &figs
            })
            .expect("json")
        );
    } else {
        if cfg!(debug_assertions) {
            outln!("note: debug build; use `cargo run --release -p thpsim -- bench` for the real figures");
        }
        for f in &figs {
            outln!(
                "{:<28} {:>10.2} {:<13} target {:<12} {}  ({})",
                f.name,
                f.value,
                f.unit,
                f.target,
                if f.meets { "ok " } else { "MISS" },
                f.detail
            );
        }
    }
    ExitCode::SUCCESS
}
