//! `thpsim gen`: every workload generates a scenario that parses and runs on the model with
//! the invariant checker, under both profiles; the op sequences each VMM's code makes are
//! present; the headline figures follow from the recipe (counted here from the same seeded
//! page subsets the scenario uses, not copied from a run).

#[path = "../src/gen.rs"]
#[allow(dead_code)]
mod gen;

use gen::{generate, GenParams, WORKLOADS};
use thpsim_scenario::ast::{Subset, SubsetCount};
use thpsim_scenario::engine::{run, RunResult, Variant};
use thpsim_scenario::parse::{fmt_size, parse_size};
use thpsim_scenario::pattern::touch_offsets;
use thpsim_scenario::sim::SimBackend;

const M2: u64 = 2 << 20;
const K4: u64 = 4 << 10;

fn params(workload: &str) -> GenParams {
    GenParams {
        workload: workload.into(),
        guest: parse_size("64M").unwrap(),
        threads: 3,
        zero_share: 30,
        write_share: 50,
        ..GenParams::default()
    }
}

fn run_gen(p: &GenParams, profile: &str) -> RunResult {
    run_gen_with(p, profile, &[])
}

/// `run_gen` with settings (sysfs knobs, switches) applied after the scenario's own.
fn run_gen_with(p: &GenParams, profile: &str, sets: &[(&str, &str)]) -> RunResult {
    let src = generate(p).unwrap();
    let scn = thpsim_scenario::parse("gen.thps", &src)
        .unwrap_or_else(|d| panic!("{}\n{src}", thpsim_scenario::diag::render_all(&d, &src)));
    let mut be = SimBackend::checked();
    let res = run(
        &scn,
        &mut be,
        &Variant {
            profile: Some(profile.into()),
            sets: sets
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        },
    )
    .unwrap_or_else(|e| panic!("{}: {e}\n{src}", p.workload));
    assert!(
        res.failed_expects().next().is_none(),
        "{}: {:?}",
        p.workload,
        res.expects
    );
    res
}

fn cp<'a>(res: &'a RunResult, checkpoint: &str) -> &'a thpsim_scenario::engine::Checkpoint {
    res.checkpoints
        .iter()
        .find(|c| c.label == checkpoint)
        .unwrap_or_else(|| panic!("no checkpoint {checkpoint}"))
}

/// A counter delta at a checkpoint.
fn counter(res: &RunResult, checkpoint: &str, key: &str) -> i64 {
    let c = cp(res, checkpoint);
    if key == "minflt" {
        return c.minflt as i64;
    }
    *c.counters.get(key).unwrap_or(&0)
}

/// A mapping's state at a checkpoint.
fn mapping<'a>(
    res: &'a RunResult,
    checkpoint: &str,
    map: &str,
) -> &'a thpsim_scenario::engine::MappingState {
    cp(res, checkpoint)
        .mappings
        .iter()
        .find(|m| m.name == map)
        .unwrap_or_else(|| panic!("no mapping {map}"))
}

/// An smaps field (kB) of a mapping at a checkpoint.
fn smaps(res: &RunResult, checkpoint: &str, map: &str, field: &str) -> u64 {
    mapping(res, checkpoint, map).smaps.field(field).unwrap()
}

fn anon_huge_kb(res: &RunResult, checkpoint: &str) -> u64 {
    smaps(res, checkpoint, "ram", "AnonHugePages")
}

/// Per 2 MiB block of `len`: (data pages, is page 0 data) for `write random=pct% seed`.
fn data_blocks(len: u64, pct: u32, seed: u64) -> Vec<(u64, bool)> {
    let mut v = vec![(0u64, false); (len / M2) as usize];
    let sub = Some(Subset {
        count: SubsetCount::Percent(pct),
        seed,
    });
    for off in touch_offsets(len, K4, sub) {
        let b = &mut v[(off / M2) as usize];
        b.0 += 1;
        if off % M2 == 0 {
            b.1 = true;
        }
    }
    v
}

#[test]
fn every_workload_parses_and_runs_under_both_profiles() {
    for (w, _, _) in WORKLOADS {
        for profile in ["6.12", "6.18"] {
            for host in [false, true] {
                let mut p = params(w);
                p.host = host;
                let res = run_gen(&p, profile);
                assert!(!res.checkpoints.is_empty(), "{w}");
            }
        }
    }
}

#[test]
fn unknown_workload_and_bad_parameters_are_refused() {
    assert!(generate(&params("nope"))
        .unwrap_err()
        .contains("one of: prealloc-populate"));
    let mut p = params("precopy");
    p.zero_share = 101;
    assert!(generate(&p).is_err());
    p.zero_share = 30;
    p.used = 101;
    assert!(generate(&p).is_err());
    assert!(gen::parse_guest("3M").is_err());
    assert_eq!(gen::parse_guest("64G").unwrap(), 64 << 30);
    assert_eq!(gen::parse_qemu("9.1").unwrap(), (9, 1));
    assert_eq!(gen::parse_qemu("10.1.2").unwrap(), (10, 1));
    assert_eq!(gen::parse_qemu("master").unwrap(), (10, 2));
    assert!(gen::parse_qemu("7.2")
        .unwrap_err()
        .contains("8.0 and later"));
    assert!(gen::parse_qemu("9").is_err());
    assert!(gen::parse_qemu("9.x").is_err());
    let mut p = params("postcopy");
    p.multifd = true;
    p.qemu = "10.0".into();
    assert!(generate(&p).unwrap_err().contains("needs QEMU 10.1"));
}

#[test]
fn header_names_the_parameters_and_the_source() {
    let mut p = params("precopy");
    p.multifd = true;
    let src = generate(&p).unwrap();
    assert!(src.starts_with(
        "# Generated by: thpsim gen precopy --guest 64M --threads 3 --zero-share 30 --write-share 50 --used 100 --seed 1 --kernel 6.18 --qemu 10.2 --multifd\n"
    ));
    assert!(src.contains("\n# Source: QEMU migration/ram.c ram_load_precopy/ram_handle_zero, multifd.c multifd_recv_zero_page_process, v8.0-master.\n"));
    assert!(src.contains("\nkernel 6.18\nmemory 2G\n"));
    p.host = true;
    assert!(!generate(&p).unwrap().contains("\nmemory "));
    let help = gen::help_text();
    for (w, _, source) in WORKLOADS {
        assert!(help.contains(w), "{w}");
        assert!(
            help.contains(&format!(
                "[{}]",
                source.split_whitespace().collect::<Vec<_>>().join(" ")
            )) || help.contains(source),
            "{w}"
        );
    }
}

#[test]
fn precopy_without_zero_pages_writes_only_and_is_thp_on_both_kernels() {
    let mut p = params("precopy");
    p.zero_share = 0;
    for k in ["6.12", "6.18"] {
        let res = run_gen(&p, k);
        assert_eq!(counter(&res, "zero-checked", "minflt"), 0);
        assert_eq!(counter(&res, "loaded", "minflt"), 32);
        assert_eq!(counter(&res, "loaded", "vmstat.thp_fault_alloc"), 32);
        assert_eq!(anon_huge_kb(&res, "loaded"), 64 << 10);
    }
}

#[test]
fn precopy_legacy_reads_only_the_blocks_whose_first_page_is_zero() {
    let p = params("precopy"); // 30 % zero pages, legacy (no multifd)
    let blocks = data_blocks(64 << 20, 70, 1);
    let data_first = blocks.iter().filter(|b| b.1).count() as i64;
    let zero_first = 32 - data_first;
    assert!(data_first > 0 && zero_first > 0, "seed gives both kinds");
    let data: u64 = blocks.iter().map(|b| b.0).sum();
    let src = generate(&p).unwrap();
    assert!(src.contains("\nwrite ram+0 64M random=70% seed=1   # the data pages\n"));
    let res = run_gen(&p, "6.12");
    assert_eq!(counter(&res, "zero-checked", "minflt"), zero_first);
    assert_eq!(
        counter(&res, "loaded", "vmstat.thp_fault_alloc"),
        data_first
    );
    assert_eq!(counter(&res, "loaded", "vmstat.thp_split_pmd"), zero_first);
    assert_eq!(anon_huge_kb(&res, "loaded"), data_first as u64 * 2048);
    // 6.12: one fault per THP block, one per data page of the split blocks.
    let split_data: u64 = blocks.iter().filter(|b| !b.1).map(|b| b.0).sum();
    assert_eq!(
        counter(&res, "loaded", "minflt"),
        data_first + split_data as i64
    );
    assert_eq!(
        smaps(&res, "loaded", "ram", "Rss"),
        (data_first as u64 * 512 + split_data) * 4
    );
    assert!(data > split_data);
    let res = run_gen(&p, "6.18");
    assert_eq!(counter(&res, "loaded", "vmstat.thp_fault_alloc"), 32);
    assert_eq!(counter(&res, "loaded", "minflt"), 32);
    assert_eq!(anon_huge_kb(&res, "loaded"), 64 << 10);
}

/// mapped-ram restore: only the data pages are read into RAM (write faults), never a zero page:
/// never-used RAM and an all-zero guest stay empty.
#[test]
fn mapped_ram_restore_writes_only_the_pages_the_bitmap_marks() {
    let mut p = params("mapped-ram");
    p.used = 50; // 16 blocks used, 16 never touched
    p.zero_share = 99; // 1 % data pages
    p.qemu = "9.0".into();
    p.seed = 3;
    let blocks = data_blocks(32 << 20, 1, 3);
    let with_data = blocks.iter().filter(|b| b.0 > 0).count() as i64;
    let data: u64 = blocks.iter().map(|b| b.0).sum();
    let src = generate(&p).unwrap();
    assert!(!src.contains("\nread "), "{src}");
    assert!(src.contains("\nwrite ram+0 32M random=1% seed=3   # the data pages (pread)\n"));
    assert!(src.contains(&format!(
        "Data pages read from the file: {data} in {with_data} of the 16 used"
    )));
    for k in ["6.12", "6.18"] {
        let res = run_gen(&p, k);
        assert_eq!(counter(&res, "loaded", "minflt"), with_data, "{k}");
        assert_eq!(counter(&res, "loaded", "vmstat.thp_fault_alloc"), with_data);
        assert_eq!(anon_huge_kb(&res, "loaded"), with_data as u64 * 2048);
        assert_eq!(smaps(&res, "loaded", "ram", "Rss"), with_data as u64 * 2048);
    }
    // An all-zero guest: nothing is read from the file, nothing faults.
    let mut z = p.clone();
    z.zero_share = 100;
    let res = run_gen(&z, "6.18");
    assert_eq!(counter(&res, "loaded", "minflt"), 0);
    assert_eq!(smaps(&res, "loaded", "ram", "Rss"), 0);
    // Multifd changes the chunk order only: the same scenario ops.
    p.multifd = true;
    let ops = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(ops(&generate(&p).unwrap()), ops(&src));
    // Refused where QEMU has no mapped-ram or refuses the combination.
    p.qemu = "8.2".into();
    assert!(generate(&p).unwrap_err().contains("came with QEMU 9.0"));
    p.qemu = "10.2".into();
    p.postcopy_ram = true;
    assert!(generate(&p)
        .unwrap_err()
        .contains("incompatible with postcopy"));
}

#[test]
fn precopy_multifd_modes_by_qemu_version() {
    let mut p = params("precopy");
    p.multifd = true;
    p.used = 50; // 16 blocks used, 16 never touched
                 // 9.1+: zero pages untouched; never-touched RAM stays empty.
    p.qemu = "9.1".into();
    let src = generate(&p).unwrap();
    assert!(!src.contains("\nread "));
    let res = run_gen(&p, "6.12");
    assert_eq!(counter(&res, "zero-checked", "minflt"), 0);
    assert_eq!(counter(&res, "loaded", "minflt"), 16);
    assert_eq!(anon_huge_kb(&res, "loaded"), 32 << 10);
    assert_eq!(smaps(&res, "loaded", "ram", "Rss"), 32 << 10);
    // 10.1 with postcopy-ram: every zero page memset, all RAM allocated.
    p.qemu = "10.1".into();
    p.postcopy_ram = true;
    let src = generate(&p).unwrap();
    assert!(src.contains("\nmadvise ram POPULATE_WRITE "));
    let res = run_gen(&p, "6.12");
    assert_eq!(anon_huge_kb(&res, "loaded"), 64 << 10);
    // 10.0 with postcopy-ram is still 9.1 behaviour.
    p.qemu = "10.0".into();
    assert!(!generate(&p).unwrap().contains("POPULATE_WRITE"));
    // 8.x and 9.0: timing-dependent, seeded, with bounds in the header; the never-touched
    // half is read (ZERO records on the main channel / in packets).
    for (q, bound) in [
        ("8.2", "timing-dependent: 0 (every mixed block"),
        ("9.0", "timing-dependent: "),
    ] {
        p.qemu = q.into();
        p.postcopy_ram = false;
        let src = generate(&p).unwrap();
        assert!(src.contains(bound), "{q}");
        assert!(
            src.contains("\nread ram+32M 32M stride=2M   # never-touched RAM"),
            "{q}"
        );
        let res = run_gen(&p, "6.18");
        assert_eq!(counter(&res, "loaded", "vmstat.thp_fault_alloc"), 16, "{q}");
    }
}

#[test]
fn prealloc_populate_probes_then_chunks() {
    let mut p = params("prealloc-populate");
    p.guest = parse_size("1G").unwrap();
    p.threads = 12; // capped at one per 64 MiB: 12 threads, 87381/87382 pages each
    let src = generate(&p).unwrap();
    assert!(
        src.contains("\nmadvise ram+0 4K POPULATE_WRITE   # probe: madv_populate_write_possible\n")
    );
    assert_eq!(src.matches("POPULATE_WRITE   # thread").count(), 12);
    let res = run_gen(&p, "6.12");
    assert_eq!(counter(&res, "preallocated", "minflt"), 512);
    assert_eq!(counter(&res, "preallocated", "vmstat.thp_fault_alloc"), 512);
}

#[test]
fn prealloc_touch_differs_by_kernel() {
    let p = params("prealloc-touch");
    assert!(generate(&p).unwrap().contains("kernels before 5.14"));
    assert_eq!(counter(&run_gen(&p, "6.18"), "preallocated", "minflt"), 64);
    assert_eq!(
        counter(&run_gen(&p, "6.12"), "preallocated", "minflt"),
        32 * 513
    );
}

#[test]
fn postcopy_places_4k_pages_and_zero_pages_by_version() {
    let p = params("postcopy");
    let src = generate(&p).unwrap();
    assert!(src.contains("\nmadvise ram NOHUGEPAGE               # postcopy_ram_prepare_discard\n"));
    assert!(src.contains("\nuffd zeropage "));
    let res = run_gen(&p, "6.18");
    assert_eq!(counter(&res, "placed", "vmstat.thp_fault_alloc"), 0);
    assert_eq!(anon_huge_kb(&res, "completed"), 0);
    let faults = counter(&res, "guest-faults", "minflt");
    assert!(faults > 0);
    let zeroed_rss = smaps(&res, "completed", "ram", "Rss");
    assert!(zeroed_rss < 64 << 10);
    assert!(counter(&res, "khugepaged-full-scan", "khugepaged.pages_collapsed") > 0);
    // 10.1+ multifd: zero pages are UFFDIO_COPY'd: every page is a real page.
    let mut p = params("postcopy");
    p.multifd = true;
    p.qemu = "10.1".into();
    let src = generate(&p).unwrap();
    assert!(!src.contains("zeropage"));
    let res = run_gen(&p, "6.18");
    assert_eq!(smaps(&res, "completed", "ram", "Rss"), 64 << 10);
    assert_eq!(
        counter(&res, "guest-faults", "uffd.missing"),
        counter(&res, "guest-faults", "minflt")
    );
    assert_eq!(
        counter(&res, "khugepaged-full-scan", "khugepaged.pages_collapsed"),
        32
    );
}

#[test]
fn background_snapshot_unprotects_every_page_and_splits_every_pmd() {
    let mut p = params("background-snapshot");
    p.write_share = 1; // 163 writes, 20 per phase: 160 over 8 phases
    let src = generate(&p).unwrap();
    assert_eq!(
        src.matches(" stride=4K   # saved, unprotected page by page")
            .count(),
        8
    );
    assert_eq!(src.matches("write ram random=20 seed=").count(), 8);
    let res = run_gen(&p, "6.18");
    let wp = counter(&res, "saved", "uffd.wp");
    assert!(
        wp > 0 && wp < 160,
        "{wp}: writes behind the scan do not fault"
    );
    assert_eq!(counter(&res, "saved", "vmstat.thp_split_pmd"), 32);
    assert_eq!(anon_huge_kb(&res, "stopped"), 0);
}

#[test]
fn cloud_hypervisor_threads_and_order_0_until_khugepaged() {
    let mut p = params("cloud-hypervisor");
    p.threads = 12;
    assert_eq!(
        generate(&p).unwrap().matches("# prefault thread").count(),
        0
    );
    p.guest = 16 << 30;
    assert_eq!(
        generate(&p).unwrap().matches("# prefault thread").count(),
        4
    );
    let p = params("cloud-hypervisor");
    let res = run_gen(&p, "6.18");
    assert_eq!(counter(&res, "prefaulted", "minflt"), 16384);
    assert_eq!(anon_huge_kb(&res, "advised"), 0);
    assert_eq!(
        counter(&res, "khugepaged-full-scan", "khugepaged.pages_collapsed"),
        32
    );
    assert_eq!(anon_huge_kb(&res, "khugepaged-full-scan"), 64 << 10);
}

#[test]
fn balloon_4k_inflate_splits_and_reporting_frees_whole() {
    let p = params("balloon");
    let res = run_gen(&p, "6.18");
    assert_eq!(counter(&res, "inflated", "vmstat.thp_split_pmd"), 16);
    assert_eq!(counter(&res, "inflated", "vmstat.nr_free_pages"), 0);
    assert_eq!(counter(&res, "reported", "vmstat.thp_split_pmd"), 0);
    assert_eq!(counter(&res, "shrunk", "vmstat.thp_split_page"), 16);
}

#[test]
fn balloon_on_memfd_punches_and_frees_at_once() {
    let mut p = params("balloon");
    p.backend = "memfd".into();
    let src = generate(&p).unwrap();
    // Every discard is a punch of the memfd range followed by MADV_DONTNEED of the mapping.
    assert_eq!(
        src.matches(" punch_hole keep_size\n").count(),
        src.matches(" DONTNEED\n").count()
    );
    // 30 % of 512 pages of each of the 16 inflated blocks: 153 pages, freed at the inflate.
    let ballooned = 16 * (512 * 30 / 100);
    let res = run_gen(&p, "6.18");
    assert_eq!(counter(&res, "inflated", "vmstat.nr_free_pages"), ballooned);
    assert_eq!(counter(&res, "inflated", "vmstat.nr_shmem"), -ballooned);
    assert_eq!(counter(&res, "shrunk", "vmstat.thp_split_page"), 0);
    // With PMD-sized shmem folios each inflated block's folio is split by its punch.
    let res = run_gen_with(&p, "6.18", &[("shmem_enabled", "advise")]);
    assert_eq!(counter(&res, "booted", "vmstat.thp_file_alloc"), 32);
    assert_eq!(counter(&res, "inflated", "vmstat.thp_split_page"), 16);
    assert_eq!(counter(&res, "inflated", "vmstat.thp_split_pmd"), 16);
    assert_eq!(counter(&res, "inflated", "vmstat.nr_free_pages"), ballooned);
}

#[test]
fn virtio_mem_unplugs_whole_thps_and_replugs_them() {
    let p = params("virtio-mem"); // 30 % of 32 blocks: 9 unplugged
    let src = generate(&p).unwrap();
    assert!(src.contains("\nmadvise vmem+0 4K POPULATE_WRITE   # probe"));
    for k in ["6.12", "6.18"] {
        let res = run_gen(&p, k);
        assert_eq!(counter(&res, "plugged", "vmstat.thp_fault_alloc"), 32);
        assert_eq!(counter(&res, "unplugged", "vmstat.thp_split_pmd"), 0);
        assert_eq!(
            counter(&res, "unplugged", "vmstat.nr_anon_transparent_hugepages"),
            -9
        );
        assert_eq!(smaps(&res, "unplugged", "vmem", "AnonHugePages"), 23 * 2048);
        assert_eq!(counter(&res, "replugged", "vmstat.thp_fault_alloc"), 9);
        assert_eq!(smaps(&res, "replugged", "vmem", "AnonHugePages"), 64 << 10);
    }
}

#[test]
fn firecracker_advises_each_region_once_after_an_aligned_mmap() {
    let mut p = params("firecracker");
    p.guest = 4 << 30;
    let src = generate(&p).unwrap();
    assert!(src.contains("\nmmap ram0 3328M anon private rw align=2M "));
    assert!(src.contains("\nmmap ram1 768M anon private rw align=2M "));
    assert_eq!(src.matches(" HUGEPAGE ").count(), 2);
    let p = params("firecracker"); // 70 % of pages touched: every block
    for k in ["6.12", "6.18"] {
        let res = run_gen(&p, k);
        assert_eq!(counter(&res, "booted", "minflt"), 32);
        assert_eq!(smaps(&res, "booted", "ram0", "AnonHugePages"), 64 << 10);
    }
}

#[test]
fn kubevirt_prealloc_lock_collapse_meets_the_95_percent_policy() {
    let mut p = params("kubevirt-thp");
    p.guest = 16 << 30;
    let src = generate(&p).unwrap();
    assert_eq!(src.matches("POPULATE_WRITE   # thread").count(), 4);
    assert!(src.contains("\nmlock ram "));
    assert_eq!(src.matches("\nmadvise ram COLLAPSE ").count(), 1);
    let p = params("kubevirt-thp");
    let res = run_gen(&p, "6.18"); // the 95 % expect holds
    assert_eq!(counter(&res, "locked", "minflt"), 0);
    assert_eq!(counter(&res, "collapsed", "vmstat.thp_collapse_alloc"), 0);
    assert_eq!(anon_huge_kb(&res, "collapsed"), 64 << 10);
}

#[test]
fn uffd_restores_fill_order_0_and_khugepaged_collapses() {
    for w in ["ch-restore", "criu-lazy"] {
        let p = params(w);
        let res = run_gen(&p, "6.18");
        let faults = counter(
            &res,
            if w == "criu-lazy" {
                "task-faults"
            } else {
                "guest-faults"
            },
            "uffd.missing",
        );
        assert!(faults > 0, "{w}");
        let done = "restored";
        assert_eq!(anon_huge_kb(&res, done), 0, "{w}");
        assert_eq!(smaps(&res, done, "ram", "Rss"), 64 << 10, "{w}");
        assert_eq!(
            counter(&res, "khugepaged-full-scan", "khugepaged.pages_collapsed"),
            32,
            "{w}"
        );
    }
    let src = generate(&params("criu-lazy")).unwrap();
    assert!(src.starts_with("# Generated") && src.contains("\nprctl set_thp_disable 1 "));
    // Chunks grow by 64 KiB from 64 KiB (first chunk of the first gap).
    let copies: Vec<&str> = src.lines().filter(|l| l.starts_with("uffd copy")).collect();
    assert!(
        copies[0].ends_with(" 64K") && copies[1].ends_with(" 128K"),
        "{:?}",
        &copies[..2]
    );
}

#[test]
fn ch_restore_of_shared_memfd_ram_copies_into_the_page_cache_without_minor_mode() {
    let mut p = params("ch-restore");
    p.backend = "memfd".into();
    let src = generate(&p).unwrap();
    assert!(src.contains("\nmemfd ch_ram 64M "));
    assert!(src.contains("\nmmap ram 64M ch_ram shared rw align=2M "));
    assert!(src.contains("\nuffd register ram missing "));
    assert!(!src.contains(" minor"));
    let pages = (64u64 << 20) / K4;
    for shmem in ["never", "advise"] {
        let res = run_gen_with(&p, "6.18", &[("shmem_enabled", shmem)]);
        // Every guest fault is a MISSING userfault answered by one 4 KiB copy: a new
        // order-0 page-cache page, whatever shmem_enabled allows.
        let faults = counter(&res, "guest-faults", "uffd.missing");
        assert!(faults > 0);
        assert_eq!(counter(&res, "guest-faults", "minflt"), faults);
        assert_eq!(counter(&res, "guest-faults", "vmstat.nr_shmem"), faults);
        assert_eq!(
            counter(&res, "guest-faults", "vmstat.nr_shmem")
                + counter(&res, "prefaulted", "vmstat.nr_shmem"),
            pages as i64
        );
        assert_eq!(class_pages(&res, "restored", "ram", "shmem"), pages);
        assert_eq!(counter(&res, "prefaulted", "vmstat.thp_file_alloc"), 0);
        assert_eq!(smaps(&res, "restored", "ram", "ShmemPmdMapped"), 0);
        assert_eq!(smaps(&res, "restored", "ram", "AnonHugePages"), 0);
    }
    // The anonymous restore is unchanged: MAP_PRIVATE anonymous RAM.
    let src = generate(&params("ch-restore")).unwrap();
    assert!(src.contains("\nmmap ram 64M anon private rw align=2M\n"));
    let mut q = params("criu-lazy");
    q.backend = "memfd".into();
    assert!(generate(&q).unwrap_err().contains("ch-restore"));
}

#[test]
fn jemalloc_hpa_hugifies_purges_and_rehugifies() {
    let p = params("jemalloc-hpa");
    let res = run_gen(&p, "6.18");
    assert_eq!(counter(&res, "filled", "minflt"), 16384);
    assert_eq!(counter(&res, "hugified", "vmstat.thp_collapse_alloc"), 32);
    assert_eq!(smaps(&res, "hugified", "heap", "AnonHugePages"), 64 << 10);
    let freed = generate(&p)
        .unwrap()
        .matches("# hpa_try_purge: dehugify")
        .count() as i64;
    assert!(freed > 0);
    assert_eq!(counter(&res, "purged", "vmstat.thp_split_pmd"), freed);
    assert_eq!(
        smaps(&res, "purged", "heap", "AnonHugePages"),
        (32 - freed as u64) * 2048
    );
    assert_eq!(
        counter(&res, "rehugified", "vmstat.thp_collapse_alloc"),
        freed
    );
    assert_eq!(smaps(&res, "rehugified", "heap", "AnonHugePages"), 64 << 10);
}

#[test]
fn tcmalloc_hpaa_carves_collapses_releases_and_recollapses() {
    let p = params("tcmalloc-hpaa");
    let src = generate(&p).unwrap();
    let res = run_gen(&p, "6.18");
    // 64 MiB carved from the top of one 1 GiB PROT_NONE region, one mprotect per hugepage.
    assert!(src.contains("mmap region 1G anon private none align=2M"));
    assert_eq!(
        src.matches("# MmapRegion::Alloc of one hugepage").count(),
        32
    );
    assert!(src.contains("mprotect region+1022M 2M rw"));
    assert_eq!(smaps(&res, "carved", "region", "Rss"), 0);
    // enabled=madvise and no MADV_HUGEPAGE: 4 KiB faults, then the treatments collapse all
    // 32 hugepages (64 trackers per pass: one pass).
    assert_eq!(counter(&res, "filled", "minflt"), 16384);
    assert_eq!(src.matches("# treatment ").count(), 1);
    assert_eq!(counter(&res, "collapsed", "vmstat.thp_collapse_alloc"), 32);
    assert_eq!(
        smaps(&res, "collapsed", "region", "AnonHugePages"),
        64 << 10
    );
    // Each release of a run (30 % = 153 pages) splits one PMD and unmaps the run (the THP
    // stays, partially mapped, on the deferred split queue).
    let released = src.matches("# ReleasePages of the freed run").count() as i64;
    assert!(released > 0);
    assert_eq!(counter(&res, "released", "vmstat.thp_split_pmd"), released);
    assert_eq!(
        counter(&res, "released", "vmstat.nr_anon_pages"),
        -released * 153
    );
    assert_eq!(
        counter(&res, "released", "mthp.2048kB.nr_anon_partially_mapped"),
        released
    );
    // Refilled hugepages have nothing unbacked and are collapsed again; the others have 153
    // unbacked pages (>= 64) and are skipped.
    let refilled = src.matches("# filled again").count() as i64;
    assert_eq!(counter(&res, "refilled", "minflt"), refilled * 153);
    assert_eq!(
        counter(&res, "recollapsed", "vmstat.thp_collapse_alloc"),
        refilled
    );
    assert_eq!(
        smaps(&res, "recollapsed", "region", "AnonHugePages"),
        (32 - (released - refilled) as u64) * 2048
    );
}

/// Blocks (2 MiB) and pages a `write ram+0 LEN random=P% seed=S` touches.
fn dirtied(len: u64, pct: u32, seed: u64) -> Vec<u64> {
    let subset = Some(Subset {
        count: SubsetCount::Percent(pct),
        seed,
    });
    let mut per_block = vec![0u64; (len / M2) as usize];
    for off in touch_offsets(len, K4, subset) {
        per_block[(off / M2) as usize] += 1;
    }
    per_block
}

#[test]
fn precopy_iterations_write_the_dirtied_pages_into_huge_zero_blocks() {
    // Half the RAM never touched: the bulk stage reads it as ZERO records (huge zero PMDs);
    // the second iteration's dirty pages then land in those blocks.
    let mut p = params("precopy");
    p.zero_share = 0;
    p.used = 50;
    p.iterations = 2;
    p.dirty_share = 2;
    let src = generate(&p).unwrap();
    assert!(src
        .contains("\nwrite ram+0 64M random=2% seed=3   # iteration 2: the pages dirtied since\n"));
    let per_block = dirtied(64 << 20, 2, 3);
    // Blocks 16..32 hold the huge zero page after the bulk stage.
    let hzp_hit = per_block[16..].iter().filter(|&&n| n > 0).count() as i64;
    let hzp_pages: u64 = per_block[16..].iter().sum();
    assert!(hzp_hit > 0);
    // 6.12: each hit block splits, every dirty page there is a 4 KiB COW fault.
    let res = run_gen(&p, "6.12");
    assert_eq!(
        counter(&res, "iteration-2", "vmstat.thp_split_pmd"),
        hzp_hit
    );
    assert_eq!(counter(&res, "iteration-2", "vmstat.thp_fault_alloc"), 0);
    assert_eq!(counter(&res, "iteration-2", "minflt"), hzp_pages as i64);
    assert_eq!(
        smaps(&res, "iteration-2", "ram", "Rss"),
        (16 * 512 + hzp_pages) * 4
    );
    // 6.18: the first dirty page of each hit block allocates a THP; the rest take no fault.
    let res = run_gen(&p, "6.18");
    assert_eq!(counter(&res, "iteration-2", "vmstat.thp_split_pmd"), 0);
    assert_eq!(
        counter(&res, "iteration-2", "vmstat.thp_fault_alloc"),
        hzp_hit
    );
    assert_eq!(counter(&res, "iteration-2", "minflt"), hzp_hit);
    assert_eq!(
        smaps(&res, "iteration-2", "ram", "Rss"),
        (16 + hzp_hit as u64) * 2048
    );
    // Options are checked.
    p.iterations = 0;
    assert!(generate(&p).is_err());
    let mut q = params("postcopy");
    q.iterations = 2;
    assert!(generate(&q).unwrap_err().contains("precopy option"));
}

#[test]
fn prealloc_memfd_backend_follows_shmem_enabled_not_madvise() {
    // memory-backend-memfd (share=on): a memfd mapped MAP_SHARED; QEMU's MADV_HUGEPAGE does
    // not make shmem huge while shmem_enabled=never (the default), it does under advise.
    let mut p = params("prealloc-populate");
    p.threads = 1;
    p.backend = "memfd".into();
    let src = generate(&p).unwrap();
    assert!(src.contains("\nmemfd ramfd 64M "));
    assert!(src.contains("\nmmap ram 64M ramfd shared rw align=2M "));
    assert!(src.contains("\nmadvise ram HUGEPAGE "));
    let res = run_gen(&p, "6.18");
    assert_eq!(counter(&res, "preallocated", "minflt"), 16384);
    assert_eq!(counter(&res, "preallocated", "vmstat.thp_file_alloc"), 0);
    let advised = src.replace(
        "sysfs enabled=madvise defrag=madvise use_zero_page=1",
        "sysfs enabled=madvise defrag=madvise use_zero_page=1 shmem_enabled=advise",
    );
    let scn = thpsim_scenario::parse("gen.thps", &advised).unwrap();
    let res = run(&scn, &mut SimBackend::checked(), &Variant::default()).unwrap();
    assert_eq!(counter(&res, "preallocated", "minflt"), 32);
    assert_eq!(counter(&res, "preallocated", "vmstat.thp_file_alloc"), 32);
    assert_eq!(
        smaps(&res, "preallocated", "ram", "ShmemPmdMapped"),
        64 << 10
    );
    // Only the workloads that need no userfaultfd or discards on shmem.
    let mut q = params("postcopy");
    q.backend = "memfd".into();
    assert!(generate(&q).unwrap_err().contains("--backend memfd"));
}

#[test]
fn ch_postcopy_shared_takes_minor_faults_and_maps_every_page_by_pte() {
    let mut p = params("ch-postcopy-shared");
    p.used = 60;
    p.write_share = 20;
    let src = generate(&p).unwrap();
    assert!(src.contains("\nuffd register dst missing+minor "));
    let written: u64 = src
        .lines()
        .filter(|l| l.starts_with("write dst+"))
        .map(|l| parse_size(l.rsplit(' ').next().unwrap()).unwrap() / K4)
        .sum();
    assert!(written > 0);
    let res = run_gen(&p, "6.18");
    assert_eq!(counter(&res, "guest-faults", "uffd.minor"), written as i64);
    assert_eq!(counter(&res, "guest-faults", "uffd.missing"), 0);
    assert_eq!(counter(&res, "prefaulted", "uffd.events"), 0);
    assert_eq!(smaps(&res, "restored", "dst", "Rss"), 64 << 10);
    assert_eq!(smaps(&res, "restored", "dst", "ShmemPmdMapped"), 0);
    // shmem_enabled=advise (MADV_HUGEPAGE on both mappings): every block is a PMD folio,
    // PMD-mapped by the source and mapped by 512 PTEs at the destination.
    let res = run_gen_with(&p, "6.18", &[("shmem_enabled", "advise")]);
    assert_eq!(smaps(&res, "restored", "src", "ShmemPmdMapped"), 64 << 10);
    assert_eq!(smaps(&res, "restored", "dst", "ShmemPmdMapped"), 0);
    assert_eq!(smaps(&res, "restored", "dst", "Rss"), 64 << 10);
    assert_eq!(counter(&res, "guest-faults", "uffd.minor"), written as i64);
}

/// Pages of a `random=pct% seed` subset of `len`, and the 2 MiB blocks it touches.
fn subset_pages_blocks(len: u64, pct: u32, seed: u64) -> (u64, u64) {
    let b = data_blocks(len, pct, seed);
    (
        b.iter().map(|x| x.0).sum(),
        b.iter().filter(|x| x.0 > 0).count() as u64,
    )
}

fn faults(res: &RunResult, checkpoint: &str) -> u64 {
    let c = cp(res, checkpoint);
    c.minflt + c.majflt
}

#[test]
fn qemu_file_ram_populate_write_dirties_every_page_and_read_none() {
    let pages = (64u64 << 20) / K4;
    let mut p = params("qemu-file-ram");
    p.align = M2;
    let src = generate(&p).unwrap();
    assert!(src.contains("\nfile ramfile 64M on=disk "));
    assert!(src.contains("\nmmap ram 64M ramfile shared rw align=2M "));
    assert!(src.contains("\nmadvise ram HUGEPAGE "));
    assert!(src.contains("\nmadvise ram+0 4K POPULATE_WRITE "));
    let res = run_gen(&p, "6.18");
    // MADV_HUGEPAGE readahead makes 2 MiB folios; each write fault dirties and PMD-maps one.
    assert_eq!(faults(&res, "populated"), 64 / 2);
    assert_eq!(
        counter(&res, "populated", "vmstat.nr_dirtied"),
        pages as i64
    );
    assert_eq!(counter(&res, "populated", "vmstat.nr_dirty"), pages as i64);
    assert_eq!(
        counter(&res, "writeback", "vmstat.nr_written"),
        pages as i64
    );
    assert_eq!(
        counter(&res, "writeback", "vmstat.nr_dirty"),
        -(pages as i64)
    );
    assert_eq!(smaps(&res, "writeback", "ram", "Private_Dirty"), 0);
    // Writeback write-protects the PMDs again: one fault per block the guest writes.
    let (_, blocks) = subset_pages_blocks(64 << 20, p.write_share, p.seed + 1);
    assert_eq!(faults(&res, "guest-after-writeback"), blocks);
    // POPULATE_READ dirties nothing; the guest's writes dirty whole 2 MiB folios.
    p.populate = "read".into();
    let src = generate(&p).unwrap();
    assert!(src.contains("\nmadvise ram+0 64M POPULATE_READ\n"));
    assert!(!src.contains(" POPULATE_WRITE"));
    let res = run_gen(&p, "6.18");
    assert_eq!(counter(&res, "populated", "vmstat.nr_dirtied"), 0);
    assert_eq!(smaps(&res, "populated", "ram", "Private_Dirty"), 0);
    let (_, blocks) = subset_pages_blocks(64 << 20, p.write_share, p.seed);
    assert_eq!(
        counter(&res, "guest", "vmstat.nr_dirty"),
        (blocks * 512) as i64
    );
    // The single-flag proposal write-faults the writable mapping: every page dirty again.
    let res = run_gen_with(&p, "6.18", &[("madv_populate", "single")]);
    assert_eq!(
        counter(&res, "populated", "vmstat.nr_dirtied"),
        pages as i64
    );
}

#[test]
fn qemu_file_ram_alignment_and_private_mapping() {
    let pages = (64u64 << 20) / K4;
    // The default align is the file's page size: 4 KiB past a 2 MiB boundary, no 2 MiB
    // folio fits one page table, so each page takes its own write fault.
    let p = params("qemu-file-ram");
    let src = generate(&p).unwrap();
    assert!(src.contains("\nmmap ram 64M ramfile shared rw align=2M offset=4K "));
    let res = run_gen(&p, "6.18");
    assert_eq!(faults(&res, "populated"), pages);
    assert_eq!(smaps(&res, "populated", "ram", "FilePmdMapped"), 0);
    // share=off: every page is copied to anonymous memory; the file stays clean.
    let mut p = params("qemu-file-ram");
    p.share = "off".into();
    p.align = M2;
    let src = generate(&p).unwrap();
    assert!(src.contains("\nmmap ram 64M ramfile private rw align=2M "));
    let res = run_gen(&p, "6.18");
    assert_eq!(smaps(&res, "populated", "ram", "Anonymous"), 64 << 10);
    assert_eq!(counter(&res, "populated", "vmstat.nr_dirtied"), 0);
    assert_eq!(counter(&res, "writeback", "vmstat.nr_written"), 0);
    // The NVDIMM reads the whole device after the prefault.
    let mut p = params("qemu-file-ram");
    p.nvdimm = true;
    p.populate = "read".into();
    assert!(generate(&p).unwrap().contains("\nread ram   # "));
    // Options of other workloads are refused.
    let mut q = params("precopy");
    q.share = "off".into();
    assert!(generate(&q).unwrap_err().contains("qemu-file-ram options"));
    assert!(gen::parse_align("3M").is_err());
    assert!(gen::parse_align("2K").is_err());
    assert_eq!(gen::parse_align("2M").unwrap(), M2);
}

#[test]
fn firecracker_file_restore_reads_the_page_cache_and_copies_writes() {
    let mut p = params("firecracker-file-restore");
    p.write_share = 5;
    let src = generate(&p).unwrap();
    assert!(src.contains("\nfile mem 64M on=disk "));
    assert!(src.contains("\nmmap ram0 64M mem private rw align=2M "));
    assert!(!src.contains("\nmadvise "));
    let (written, _) = subset_pages_blocks(64 << 20, p.write_share, p.seed + 100);
    for k in ["6.12", "6.18"] {
        let res = run_gen(&p, k);
        assert_eq!(smaps(&res, "guest-reads", "ram0", "Anonymous"), 0);
        assert_eq!(
            smaps(&res, "guest-writes", "ram0", "Anonymous"),
            written * 4
        );
        assert_eq!(counter(&res, "guest-writes", "vmstat.nr_dirtied"), 0);
    }
    // huge_pages=Transparent: MADV_HUGEPAGE per region, reads map 2 MiB folios by PMDs.
    p.huge_pages = "transparent".into();
    let src = generate(&p).unwrap();
    assert_eq!(src.matches("\nmadvise ram0 HUGEPAGE ").count(), 1);
    let res = run_gen(&p, "6.18");
    assert!(smaps(&res, "guest-reads", "ram0", "FilePmdMapped") > 0);
    assert_eq!(
        smaps(&res, "guest-writes", "ram0", "Anonymous"),
        written * 4
    );
    // Two regions above the MMIO gap, the second at its file offset.
    let mut p = params("firecracker-file-restore");
    p.guest = 4 << 30;
    let src = generate(&p).unwrap();
    assert!(src.contains("\nmmap ram1 768M mem private rw align=2M foff=3328M "));
    p.huge_pages = "2M".into();
    assert!(generate(&p).unwrap_err().contains("HugetlbfsSnapshot"));
}

/// Pages of `class` in a mapping's page map at a checkpoint.
fn class_pages(res: &RunResult, checkpoint: &str, map: &str, class: &str) -> u64 {
    mapping(res, checkpoint, map)
        .pages
        .iter()
        .filter(|(c, _)| c == class)
        .map(|(_, n)| n)
        .sum()
}

/// The balloon's remaps of a generated firecracker-file-restore: (name, offset, length).
fn balloon_maps(src: &str) -> Vec<(String, u64, u64)> {
    src.lines()
        .filter(|l| l.starts_with("mmap bal"))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let at = w.iter().find_map(|x| x.strip_prefix("at=ram0+")).unwrap();
            (
                w[1].to_string(),
                parse_size(at).unwrap(),
                parse_size(w[2]).unwrap(),
            )
        })
        .collect()
}

#[test]
fn firecracker_file_restore_balloon_remaps_anonymous_without_hugepage() {
    let mut p = params("firecracker-file-restore");
    p.write_share = 0;
    p.huge_pages = "transparent".into();
    p.balloon = 25;
    let src = generate(&p).unwrap();
    let maps = balloon_maps(&src);
    // First half: one 128-page run per block; second half: whole reported blocks.
    let inflated: Vec<_> = maps.iter().filter(|m| m.1 < 32 << 20).collect();
    let reported: Vec<_> = maps.iter().filter(|m| m.1 >= 32 << 20).collect();
    assert_eq!(inflated.len(), 16);
    assert!(inflated.iter().all(|m| m.2 == 128 * K4));
    assert!(!reported.is_empty() && reported.iter().all(|m| m.2 == M2 && m.1 % M2 == 0));
    assert!(!src.contains(" HUGEPAGE   # --balloon-readvise"));
    // The VMAs the header states: touching ranges are one anonymous VMA, the file mapping
    // keeps a piece per gap.
    let mut iv: Vec<(u64, u64)> = maps.iter().map(|m| (m.1, m.1 + m.2)).collect();
    iv.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (a, b) in iv {
        match merged.last_mut() {
            Some(l) if l.1 == a => l.1 = b,
            _ => merged.push((a, b)),
        }
    }
    let mut gaps = usize::from(merged[0].0 > 0) + usize::from(merged.last().unwrap().1 < 64 << 20);
    gaps += merged.windows(2).filter(|w| w[1].0 > w[0].1).count();
    assert!(src.contains(&format!(
        "VMAs of guest memory after the balloon: {} ({} anonymous, {gaps} pieces",
        merged.len() + gaps,
        merged.len()
    )));
    let total: u64 = maps.iter().map(|m| m.2 / K4).sum();
    for k in ["6.12", "6.18"] {
        let res = run_gen(&p, k);
        // Each remap is its own VMA or part of the merged one it touches.
        for (name, off, _) in &maps {
            let vma = merged.iter().find(|v| v.0 <= *off && *off < v.1).unwrap();
            assert_eq!(
                smaps(&res, "reported", name, "Size"),
                (vma.1 - vma.0) / 1024,
                "{name}"
            );
            assert_eq!(smaps(&res, "reported", name, "Rss"), 0, "{name}");
        }
        // The munmap half of MAP_FIXED zaps every PMD-mapped file folio a range falls in.
        let zapped: u64 = maps
            .iter()
            .filter(|m| class_pages(&res, "guest-writes", &m.0, "file_pmd") > 0)
            .count() as u64;
        assert!(zapped > 0);
        assert_eq!(
            smaps(&res, "guest-writes", "ram0", "FilePmdMapped")
                - smaps(&res, "reported", "ram0", "FilePmdMapped"),
            zapped * 2048
        );
        assert_eq!(counter(&res, "reported", "minflt"), 0);
        // The guest's reuse: a 4 KiB fault per page, whole reported blocks included.
        assert_eq!(counter(&res, "reused", "minflt"), total as i64);
        assert_eq!(counter(&res, "reused", "vmstat.thp_fault_alloc"), 0);
        assert_eq!(smaps(&res, "reused", "ram0", "AnonHugePages"), 0);
        assert_eq!(smaps(&res, "reused", "ram0", "Anonymous"), total * 4);
    }
    // The what-if of a fix: advised again, each reported block is one THP fault.
    p.balloon_readvise = true;
    let src = generate(&p).unwrap();
    assert_eq!(
        src.matches(" HUGEPAGE   # --balloon-readvise").count(),
        maps.len()
    );
    let res = run_gen(&p, "6.18");
    let r = reported.len() as u64;
    assert_eq!(counter(&res, "reused", "minflt") as u64, total - r * 511);
    assert_eq!(counter(&res, "reused", "vmstat.thp_fault_alloc") as u64, r);
    assert_eq!(smaps(&res, "reused", "ram0", "AnonHugePages"), r * 2048);
    // The same balloon on anonymous memory (a boot): MADV_DONTNEED of the same ranges keeps
    // the one VMA and VM_HUGEPAGE, so every reported block comes back as one THP.
    let mut b = params("firecracker");
    b.balloon = 25;
    let src = generate(&b).unwrap();
    let discards: Vec<&str> = src.lines().filter(|l| l.contains(" DONTNEED")).collect();
    assert_eq!(discards.len(), maps.len());
    for (d, m) in discards.iter().zip(&maps) {
        let want = format!("madvise ram0+{} {} DONTNEED", fmt_size(m.1), fmt_size(m.2));
        assert!(d.starts_with(&want), "{d} vs {want}");
    }
    let res = run_gen(&b, "6.18");
    let blocks = (64u64 << 20) / M2;
    assert_eq!(
        counter(&res, "booted", "vmstat.thp_fault_alloc") as u64,
        blocks
    );
    assert_eq!(
        counter(&res, "inflated", "vmstat.thp_split_pmd") as u64,
        inflated.len() as u64
    );
    assert_eq!(counter(&res, "reported", "vmstat.thp_split_pmd"), 0);
    assert_eq!(smaps(&res, "reported", "ram0", "Size"), 64 << 10);
    assert_eq!(counter(&res, "reused", "vmstat.thp_fault_alloc") as u64, r);
    assert_eq!(counter(&res, "reused", "minflt") as u64, total - r * 511);
    // Options of these workloads only, and only with a balloon and THP.
    let mut q = params("firecracker-memfd");
    q.balloon = 10;
    assert!(generate(&q)
        .unwrap_err()
        .contains("firecracker and firecracker-file-restore option"));
    b.balloon_readvise = true;
    assert!(generate(&b).unwrap_err().contains("keeps VM_HUGEPAGE"));
    let mut q = params("firecracker-file-restore");
    q.balloon_readvise = true;
    q.balloon = 10;
    assert!(generate(&q)
        .unwrap_err()
        .contains("--huge-pages transparent"));
    q.huge_pages = "transparent".into();
    q.balloon = 101;
    assert!(generate(&q).unwrap_err().contains("percentage"));
}

#[test]
fn firecracker_memfd_balloon_frees_nothing() {
    let mut p = params("firecracker-memfd");
    p.write_share = 25;
    let src = generate(&p).unwrap();
    assert!(src.contains("\nmemfd guest_mem 64M "));
    assert!(src.contains("\nmmap ram0 64M guest_mem shared rw align=2M "));
    let blocks = (64u64 << 20) / M2;
    // One discard per 2 MiB block, 25 % of its pages (128 of 512).
    assert_eq!(src.matches(" DONTNEED\n").count() as u64, blocks);
    assert_eq!(src.matches(" 512K DONTNEED\n").count() as u64, blocks);
    // huge_pages=None: order-0 shmem pages; the discards zap PTEs and free no page.
    let res = run_gen(&p, "6.18");
    let touched = counter(&res, "booted", "vmstat.nr_shmem");
    assert!(touched > 0);
    assert_eq!(counter(&res, "booted", "minflt"), touched);
    assert_eq!(counter(&res, "inflated", "vmstat.nr_shmem"), 0);
    assert!(smaps(&res, "inflated", "ram0", "Rss") < smaps(&res, "booted", "ram0", "Rss"));
    // Transparent: nothing under shmem_enabled=never; with advise every block is a PMD folio
    // (untouched pages included), and each discard zaps its block's whole PMD, freeing nothing.
    p.huge_pages = "transparent".into();
    let src = generate(&p).unwrap();
    assert_eq!(src.matches("\nmadvise ram0 HUGEPAGE ").count(), 1);
    let res = run_gen(&p, "6.18");
    assert_eq!(counter(&res, "booted", "vmstat.thp_file_alloc"), 0);
    let res = run_gen_with(&p, "6.18", &[("shmem_enabled", "advise")]);
    assert_eq!(
        counter(&res, "booted", "vmstat.thp_file_alloc"),
        blocks as i64
    );
    assert_eq!(counter(&res, "booted", "minflt"), blocks as i64);
    assert_eq!(
        counter(&res, "inflated", "vmstat.thp_split_pmd"),
        blocks as i64
    );
    assert_eq!(counter(&res, "inflated", "vmstat.nr_shmem"), 0);
    assert_eq!(smaps(&res, "inflated", "ram0", "Rss"), 0);
    // 2M: a hugetlb memfd and pool; every 4 KiB-granular discard is EINVAL.
    p.huge_pages = "2M".into();
    let src = generate(&p).unwrap();
    assert!(src.contains("\nsysfs hugetlb.nr_hugepages=32 "));
    assert!(src.contains("\nmemfd guest_mem 64M hugetlb "));
    let res = run_gen(&p, "6.18");
    let einval = res
        .ops
        .iter()
        .filter(|o| o.op.contains("DONTNEED") && o.result == "EINVAL")
        .count() as u64;
    assert_eq!(einval, blocks);
    // Two regions above the MMIO gap, the second at its offset in the one memfd.
    let mut p = params("firecracker-memfd");
    p.guest = 4 << 30;
    let src = generate(&p).unwrap();
    assert!(src.contains("\nmmap ram1 768M guest_mem shared rw align=2M foff=3328M "));
}

/// The checked-in forms of these workloads are exactly what the command in their first
/// line prints.
#[test]
fn file_workload_files_equal_the_generator_output() {
    use clap::Parser as _;
    #[derive(clap::Parser)]
    struct Gen {
        #[command(flatten)]
        p: GenParams,
    }
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scenarios/workloads");
    let mut seen = 0;
    for dir in [root.to_string(), format!("{root}/host")] {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if !(name.starts_with("qemu-file-ram")
                || name.starts_with("qemu-mapped-ram")
                || name.starts_with("firecracker-file-restore")
                || name.starts_with("firecracker-memfd"))
            {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let cmd = text
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("# Generated by: thpsim gen "))
                .unwrap_or_else(|| panic!("{name}: no `# Generated by` line"));
            let args = std::iter::once("gen").chain(cmd.split_whitespace());
            let g = Gen::try_parse_from(args).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(generate(&g.p).unwrap(), text, "{name}");
            seen += 1;
        }
    }
    assert!(seen >= 16, "{seen} files");
}
