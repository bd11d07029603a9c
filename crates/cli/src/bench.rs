//! `thpsim bench`: the speed and memory figures the README lists with their targets, measured
//! on this machine.
//! Wall-clock timing lives here, in the CLI, never in the model.

use std::process::ExitCode;
use std::time::Instant;

use thpsim_kernel::mmap::MapFlags;
use thpsim_kernel::types::{AccessKind, Advice, Prot};
use thpsim_kernel::{profile, Kernel, KernelConfig};
use thpsim_scenario::engine::{self, Variant};
use thpsim_scenario::sim::SimBackend;

#[derive(serde::Serialize)]
struct Figure {
    name: &'static str,
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

pub fn main(quick: bool, json: bool) -> ExitCode {
    let mut figs = Vec::new();
    let gib: u64 = 1 << 30;

    // 1. 4 KiB write faults, then resident accesses over the same pages.
    {
        let size = if quick { gib } else { 16 * gib };
        let rss0 = rss_bytes();
        let (mut k, pid) = kernel(size + gib);
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
            name: "bytes_per_resident_4k_page",
            value: per_page,
            unit: "B",
            target: "<= 32",
            meets: per_page <= 32.0,
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
            name: "resident_accesses",
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
            name: "4k_write_faults",
            value: rate,
            unit: "M faults/s",
            target: ">= 20",
            meets: rate >= 20.0,
            detail: format!(
                "steady state: {n} faults in {secs:.3}s; cold first pass (includes the host zeroing the model's new memory): {cold:.2} M/s"
            ),
        });
    }

    // 2. PMD THP write faults.
    {
        let size = if quick { 64 * gib } else { 1024 * gib };
        let rss0 = rss_bytes();
        // Each THP also deposits a page-table page: 4 KiB per 2 MiB.
        let (mut k, pid) = kernel(size + size / 256 + gib);
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
            name: "pmd_thp_faults",
            value: rate,
            unit: "M faults/s",
            target: ">= 5",
            meets: rate >= 5.0,
            detail: format!("{n} THP faults in {secs:.3}s"),
        });
        let per = (rss_bytes().saturating_sub(rss0)) as f64 / n as f64;
        figs.push(Figure {
            name: "bytes_per_pmd_thp",
            value: per,
            unit: "B",
            target: "<= 256",
            meets: per <= 256.0,
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
            name: "sparse_4tib_scenario",
            value: secs,
            unit: "s",
            target: "4 TiB address space on this machine",
            meets: failed == 0,
            detail: format!("4 TiB mapping, 4096 THPs + 64 huge-zero reads, {failed} failed expects, model RSS growth {rss:.1} MiB"),
        });
    }

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
            name: "model_vs_host_speedup",
            value: ratio,
            unit: "×",
            target: ">= 100",
            meets: ok && ratio >= 100.0,
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
            name: "replay_resident_accesses",
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
        println!(
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
            println!("note: debug build; use `cargo run --release -p thpsim -- bench` for the real figures");
        }
        for f in &figs {
            println!(
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
