//! The random program generator: every program parses, the generator covers the whole
//! language, and random programs run on the model with the invariant checker after every op
//! (the stable-toolchain twin of `fuzz/fuzz_targets/engine.rs`).

use std::collections::BTreeSet;

use thpsim_scenario::progen::{generate, random_knobs, ByteSource, SeedRng, Weights};
use thpsim_scenario::table::OPS;

use thpsim_scenario::fuzzing::{parse_generated, run_checked};

#[test]
fn every_generated_program_parses() {
    let w = Weights::model();
    for seed in 0..3000 {
        parse_generated(&generate(&mut SeedRng::new(seed), &w));
    }
}

#[test]
fn programs_from_arbitrary_bytes_parse() {
    let w = Weights::model();
    let mut rng = SeedRng::new(99);
    for len in 0..400usize {
        let bytes: Vec<u8> = (0..len)
            .map(|_| thpsim_scenario::progen::Entropy::next_u64(&mut rng) as u8)
            .collect();
        parse_generated(&generate(&mut ByteSource::new(&bytes), &w));
    }
    // Exhausted input ends the program; all zeros still gives a valid one.
    parse_generated(&generate(&mut ByteSource::new(&[0; 64]), &w));
}

#[test]
fn the_generator_covers_every_op_option_and_knob() {
    let w = Weights::model();
    let mut ops = BTreeSet::new();
    let mut text = String::new();
    for seed in 0..3000 {
        let src = generate(&mut SeedRng::new(seed), &w);
        for l in src.lines() {
            if let Some(op) = l.split_whitespace().next() {
                ops.insert(op.to_string());
            }
        }
        text.push_str(&src);
    }
    for spec in OPS {
        assert!(
            ops.contains(spec.name),
            "op `{}` never generated",
            spec.name
        );
    }
    for opt in [
        "stride=",
        "random=",
        "%",
        "seed=",
        "pattern=r",
        "pattern=w",
        "pattern=rw",
        "populate",
        "align=",
        "offset=",
        " at=m",
        "prot=",
        " when kernel",
        " missing+wp",
        "uffd.last_addr",
        "smaps(",
        "pages(",
        "mthp.",
        "khugepaged.",
        "vmstat.",
        "except_advised",
        "POPULATE_PGTABLE",
        "COLLAPSE",
        "DONTNEED",
        "FREE",
        "COLD",
        "PAGEOUT",
        "swap 4M",
        "swap 8K",
        "MADV_",
        "errno == SIGSEGV",
        "catch SIGSEGV SIGBUS",
        "set ",
        "wp_unpopulated",
        "event_fork",
        "unprotect:vma",
        "zeropage:",
        "huge=within_size",
        "size=",
        " on=t",
        " zero shared",
        " zero private",
        "obj(",
    ] {
        assert!(text.contains(opt), "`{opt}` never generated");
    }
    for k in thpsim_kernel::sysfs::knobs() {
        assert!(
            text.contains(&format!("{}=", k.name)),
            "knob `{}` never set",
            k.name
        );
    }
}

#[test]
fn every_knob_can_be_randomised_to_a_valid_value() {
    let mut rng = SeedRng::new(5);
    let all = random_knobs(&mut rng, 100);
    assert_eq!(all.len(), thpsim_kernel::sysfs::knobs().len());
    assert!(all.iter().any(|(k, _)| k == "anon_beside_full"));
    assert!(all.iter().any(|(k, _)| k == "hugepages-16kB.enabled"));
    for seed in 0..200 {
        let mut s = thpsim_kernel::sysfs::Sysfs::default();
        for (k, v) in random_knobs(&mut SeedRng::new(seed), 100) {
            s.set(&k, &v).unwrap_or_else(|e| panic!("{k}={v}: {e:?}"));
        }
    }
}

#[test]
fn host_weights_leave_out_what_only_the_model_runs() {
    let w = Weights::host();
    for seed in 0..1500 {
        let src = generate(&mut SeedRng::new(seed), &w);
        for l in src.lines() {
            let op = l.split_whitespace().next().unwrap();
            assert!(
                !["sleep", "shrink", "set", "memory", "swap"].contains(&op),
                "`{op}` in a host program:\n{src}"
            );
        }
        for bad in ["POPULATE_PGTABLE", "event_fork"] {
            assert!(!src.contains(bad), "`{bad}` in a host program:\n{src}");
        }
        assert!(
            !src.lines()
                .any(|l| l.split_whitespace().any(|t| t == "POPULATE")),
            "`POPULATE` in a host program:\n{src}"
        );
    }
}

#[test]
fn weights_steer_the_program() {
    let mut w = Weights::model();
    for (_, weight) in w.ops.iter_mut() {
        *weight = 0;
    }
    w.set("write", 1).set("mmap", 1);
    for seed in 0..200 {
        let src = generate(&mut SeedRng::new(seed), &w);
        for l in src.lines() {
            let op = l.split_whitespace().next().unwrap();
            assert!(
                ["mmap", "write", "kernel", "memory", "catch", "set", "sysfs"].contains(&op),
                "{l}"
            );
        }
    }
}

#[test]
fn random_programs_keep_the_model_invariants() {
    let w = Weights::model();
    let n: u64 = std::env::var("THPSIM_PROGEN_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    for seed in 0..n {
        run_checked(&generate(&mut SeedRng::new(seed), &w));
    }
}

/// guest_memfd-heavy programs run clean under the invariant checker, with the huge-folio
/// switches (model-only proposals) set on most of them: huge folios, splits, zeroed holes,
/// refused punches and failed allocations next to every other op.
#[test]
fn guest_memfd_programs_under_the_proposal_switches_keep_the_invariants() {
    let mut w = Weights::fuzz();
    for (name, weight) in w.ops.iter_mut() {
        match *name {
            "gmem" => *weight = 10,
            "fallocate" => *weight = 8,
            "memfd" => *weight = 0,
            _ => {}
        }
    }
    let variants = [
        "",
        "set gmem_huge_order=9 gmem_punch=split",
        "set gmem_huge_order=9 gmem_punch=zero gmem_fallback=none",
        "set gmem_huge_order=4 gmem_punch=einval",
        "set gmem_huge_order=2 gmem_punch=zero",
    ];
    let mut gmem = 0;
    for seed in 0..400u64 {
        let src = generate(&mut SeedRng::new(seed), &w);
        gmem += usize::from(src.contains("\ngmem "));
        let set = variants[(seed % variants.len() as u64) as usize];
        let src = if set.is_empty() || src.contains("\nset ") || src.starts_with("set ") {
            src
        } else {
            match src.split_once('\n') {
                Some((first, rest)) if first.starts_with("kernel") => {
                    format!("{first}\n{set}\n{rest}")
                }
                _ => format!("{set}\n{src}"),
            }
        };
        run_checked(&src);
    }
    assert!(gmem > 200, "only {gmem} programs made a guest_memfd");
}

/// hugetlb-heavy programs with userfaultfd run clean under the invariant checker: MISSING,
/// MINOR and WP registration of hugetlb mappings, huge-page copies and continues, markers,
/// faults resolved by the monitor in whole huge pages, next to fork, munmap, madvise and an
/// exhausted pool.
#[test]
fn hugetlb_userfaultfd_programs_keep_the_invariants() {
    let mut w = Weights::fuzz();
    w.hugetlb_percent = 70;
    for (name, weight) in w.ops.iter_mut() {
        match *name {
            "uffd" => *weight = 14,
            "gmem" => *weight = 0,
            _ => {}
        }
    }
    let (mut huge, mut copies) = (0, 0);
    for seed in 0..400u64 {
        let src = generate(&mut SeedRng::new(seed), &w);
        let has_huge = src.contains(" hugetlb");
        huge += usize::from(has_huge && src.contains("\nuffd register "));
        copies += usize::from(has_huge && src.contains("\nuffd copy "));
        run_checked(&src);
    }
    assert!(
        huge > 150,
        "only {huge} programs registered uffd with hugetlb memory"
    );
    assert!(
        copies > 100,
        "only {copies} programs copied with hugetlb memory"
    );
}
