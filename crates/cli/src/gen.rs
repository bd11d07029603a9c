//! `thpsim gen`: scenario generators for the VMM workloads of the research notes (recipes R2–R8
//! of workloads.md), parameterised so that users can sweep guest size, thread count, zero-page
//! share, write share, seed and kernel profile. Each generator prints a complete `.thps` file
//! whose header names the workload, the program's code path and every parameter; the body has
//! checkpoints at the phase boundaries and no expectations beyond `errno` (the numbers are what
//! the user wants to see). Offsets that depend on the seed are chosen here with a small
//! deterministic generator, so the same command line always prints the same file.

use std::fmt::Write as _;

use thpsim_scenario::parse::{fmt_size, parse_size};

const K4: u64 = 4 << 10;
const M2: u64 = 2 << 20;
const PAGES_PER_PMD: u64 = 512;

/// The workloads `thpsim gen` knows, with a one-line description each.
pub const WORKLOADS: &[(&str, &str)] = &[
    (
        "prealloc-populate",
        "QEMU prealloc=on with MADV_POPULATE_WRITE in thread chunks (R2)",
    ),
    (
        "prealloc-touch",
        "QEMU prealloc=on fallback: read + write back one byte per 4 KiB (R2)",
    ),
    (
        "precopy",
        "QEMU precopy destination: zero check (read), write non-zero pages (R3)",
    ),
    (
        "postcopy",
        "QEMU postcopy destination: discard, NOHUGEPAGE, uffd MISSING fills (R4)",
    ),
    (
        "background-snapshot",
        "QEMU background snapshot: read-prefault, uffd-wp, 4 KiB unprotect (R5)",
    ),
    (
        "balloon",
        "virtio-balloon 4 KiB inflate vs 2 MiB free-page reporting (R6)",
    ),
    (
        "cloud-hypervisor",
        "Cloud Hypervisor prefault=on: POPULATE_WRITE, then MADV_HUGEPAGE (R8)",
    ),
];

/// Generator parameters (the CLI's options, sizes already parsed).
#[derive(Clone, Debug)]
pub struct GenParams {
    pub workload: String,
    pub guest: u64,
    pub threads: u32,
    pub zero_share: u32,
    pub write_share: u32,
    pub seed: u64,
    pub kernel: String,
}

impl Default for GenParams {
    fn default() -> Self {
        GenParams {
            workload: "precopy".into(),
            guest: 4 << 30,
            threads: 12,
            zero_share: 30,
            write_share: 1,
            seed: 1,
            kernel: "6.18".into(),
        }
    }
}

/// Parses a `--guest` value: a size (`4G`, `512M`, …), a positive multiple of 2 MiB.
pub fn parse_guest(s: &str) -> Result<u64, String> {
    let v = parse_size(s)?;
    if v == 0 || v % M2 != 0 {
        return Err(format!(
            "guest size `{s}` must be a positive multiple of 2M"
        ));
    }
    if v > 4 << 40 {
        return Err(format!("guest size `{s}` is larger than 4T"));
    }
    Ok(v)
}

/// splitmix64 (`progen::SeedRng`): the offsets only need to be reproducible.
struct Rng(thpsim_scenario::progen::SeedRng);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(thpsim_scenario::progen::SeedRng::new(seed))
    }
    fn next(&mut self) -> u64 {
        use thpsim_scenario::progen::Entropy;
        self.0.next_u64()
    }
    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// True with probability `pct` percent.
    fn chance(&mut self, pct: u32) -> bool {
        self.below(100) < pct as u64
    }
}

/// `ram+OFF LEN` with the offset and length in the largest exact unit.
fn range(off: u64, len: u64) -> String {
    format!("ram+{} {}", fmt_size(off), fmt_size(len))
}

/// QEMU's thread chunks (`qemu_prealloc_mem`/`touch_all_pages`): `numpages / threads` host
/// pages each, the first `numpages % threads` threads one page more. Cloud Hypervisor splits
/// the same way. Returns (offset, length) per thread.
fn chunks(size: u64, threads: u64) -> Vec<(u64, u64)> {
    let pages = size / K4;
    let (base, rem) = (pages / threads, pages % threads);
    let mut off = 0;
    (0..threads)
        .map(|i| {
            let len = (base + u64::from(i < rem)) * K4;
            let c = (off, len);
            off += len;
            c
        })
        .collect()
}

/// QEMU's thread count: min(prealloc-threads, 16 (MAX_MEM_PREALLOC_THREAD_COUNT)), at most
/// one thread per 64 MiB and per host page.
fn qemu_threads(guest: u64, want: u32) -> u64 {
    (want.max(1) as u64)
        .min(16)
        .min((guest / (64 << 20)).max(1))
}

/// khugepaged at the default pace (pages_to_scan 4096 = 8 ranges per pass, a pass every
/// 10 s): seconds for one full scan of `guest`, plus one pass.
fn khugepaged_full_scan_secs(guest: u64) -> u64 {
    (guest / M2).div_ceil(8) * 10 + 10
}

fn memory_for(guest: u64) -> u64 {
    // guest + 25%, rounded up to 1 GiB (a multiple of 4M, as `memory` requires).
    let m = guest + guest / 4;
    m.div_ceil(1 << 30).max(1) * (1 << 30)
}

/// Prints the scenario for `p`, or an error message for the user.
pub fn generate(p: &GenParams) -> Result<String, String> {
    let Some((_, what)) = WORKLOADS.iter().find(|(n, _)| *n == p.workload) else {
        let names: Vec<&str> = WORKLOADS.iter().map(|(n, _)| *n).collect();
        return Err(format!(
            "unknown workload `{}`; one of: {}",
            p.workload,
            names.join(", ")
        ));
    };
    if p.zero_share > 100 || p.write_share > 100 {
        return Err("--zero-share and --write-share are percentages (0-100)".into());
    }
    if p.guest % M2 != 0 || p.guest == 0 {
        return Err("--guest must be a positive multiple of 2M".into());
    }
    let mut s = String::new();
    let g = fmt_size(p.guest);
    let _ = writeln!(s, "# Generated by: thpsim gen {} --guest {g} --threads {} --zero-share {} --write-share {} --seed {} --kernel {}",
        p.workload, p.threads, p.zero_share, p.write_share, p.seed, p.kernel);
    let _ = writeln!(s, "# Workload: {what}.");
    let body = match p.workload.as_str() {
        "prealloc-populate" => prealloc(p, true),
        "prealloc-touch" => prealloc(p, false),
        "precopy" => precopy(p),
        "postcopy" => postcopy(p),
        "background-snapshot" => background_snapshot(p),
        "balloon" => balloon(p),
        "cloud-hypervisor" => cloud_hypervisor(p),
        _ => unreachable!(),
    };
    let (doc, ops) = body;
    for line in doc.lines() {
        let _ = writeln!(s, "# {line}");
    }
    let _ = writeln!(s, "kernel {}", p.kernel);
    let _ = writeln!(s, "memory {}", fmt_size(memory_for(p.guest)));
    let _ = writeln!(s, "sysfs enabled=madvise defrag=madvise use_zero_page=1");
    s.push_str(&ops);
    Ok(s)
}

/// QEMU guest RAM: 2 MiB-aligned private anonymous memory with MADV_HUGEPAGE (ram_block_add).
fn qemu_ram(p: &GenParams, ops: &mut String) {
    let _ = writeln!(
        ops,
        "mmap ram {} anon private rw align=2M",
        fmt_size(p.guest)
    );
    let _ = writeln!(ops, "madvise ram HUGEPAGE                 # ram_block_add");
}

fn prealloc(p: &GenParams, populate: bool) -> (String, String) {
    let t = qemu_threads(p.guest, p.threads);
    let doc = format!(
        "QEMU backends/hostmem.c -> qemu_prealloc_mem (util/oslib-posix.c): {t} thread(s) \
         (--threads {} capped at 16 and one per 64 MiB),\neach {} its chunk of numpages/threads \
         4 KiB host pages; chunk edges are 4 KiB-aligned and may cut through a PMD.\n\
         Parameters used: --guest, --threads, --kernel.",
        p.threads,
        if populate {
            "calling madvise(MADV_POPULATE_WRITE) on"
        } else {
            "reading one byte and writing it back at every 4 KiB page of"
        }
    );
    let mut ops = String::new();
    qemu_ram(p, &mut ops);
    ops.push_str("checkpoint mapped\n");
    if t == 1 && populate {
        ops.push_str("madvise ram POPULATE_WRITE\nexpect errno == ok\n");
    } else {
        for (i, (off, len)) in chunks(p.guest, t).into_iter().enumerate() {
            if populate {
                let _ = writeln!(
                    ops,
                    "madvise {} POPULATE_WRITE   # thread {i}",
                    range(off, len)
                );
            } else {
                let _ = writeln!(ops, "access {} pattern=rw   # thread {i}", range(off, len));
            }
        }
        if populate {
            ops.push_str("expect errno == ok\n");
        }
    }
    ops.push_str("checkpoint preallocated\n");
    (doc, ops)
}

fn precopy(p: &GenParams) -> (String, String) {
    let nonzero = 100 - p.zero_share;
    let doc = format!(
        "QEMU migration/ram.c, incoming precopy: ram_handle_zero reads each received 4 KiB page \
         (\"already zero?\")\nand only non-zero pages are written. {}% of the guest's pages are \
         zero (random, seed {}). The zero check\nis one read pass and the data one write pass: \
         per 2 MiB the fault counts equal those of the\npage-by-page interleaving. Parameters \
         used: --guest, --zero-share, --seed, --kernel.",
        p.zero_share, p.seed
    );
    let mut ops = String::new();
    qemu_ram(p, &mut ops);
    ops.push_str("read ram                             # ram_handle_zero: is the page zero?\n");
    ops.push_str("checkpoint zero-checked\n");
    match nonzero {
        0 => ops.push_str("# every page is zero: nothing is written\n"),
        100 => ops.push_str("write ram                            # every page carries data\n"),
        n => {
            let _ = writeln!(
                ops,
                "write ram random={n}% seed={}       # the non-zero pages",
                p.seed
            );
        }
    }
    ops.push_str("checkpoint loaded\n");
    (doc, ops)
}

/// Emits `uffd copy`/`uffd zeropage` lines for the pages [from, to) of a block whose source
/// content is zero (`zero`) or data.
fn stream(ops: &mut String, from: u64, to: u64, zero: bool) {
    if to > from {
        let op = if zero { "zeropage" } else { "copy" };
        let _ = writeln!(ops, "uffd {op} {}", range(from, to - from));
    }
}

fn postcopy(p: &GenParams) -> (String, String) {
    let blocks = p.guest / M2;
    let secs = khugepaged_full_scan_secs(p.guest);
    let doc = format!(
        "QEMU migration/postcopy-ram.c, pure postcopy (switch before any precopy round): \
         ram_discard_range\n(MADV_DONTNEED) at incoming init, MADV_NOHUGEPAGE, \
         UFFDIO_REGISTER_MODE_MISSING over all RAM. The guest runs\nat once: in {}% of the \
         2 MiB blocks it touches a run of pages before the stream gets there (each page\na \
         MISSING fault resolved with a 4 KiB UFFDIO_COPY); the background stream places every \
         other page\nwith UFFDIO_COPY, or UFFDIO_ZEROPAGE for blocks that are zero on the source \
         ({}% of blocks, seed {}).\nThen MADV_HUGEPAGE, UFFDIO_UNREGISTER, and khugepaged at its \
         default pace ({secs} s for a full scan).\nParameters used: --guest, --write-share, \
         --zero-share, --seed, --kernel.",
        p.write_share, p.zero_share, p.seed
    );
    let mut ops = String::new();
    qemu_ram(p, &mut ops);
    ops.push_str("madvise ram DONTNEED                 # ram_discard_range at incoming init\n");
    ops.push_str("madvise ram NOHUGEPAGE               # postcopy_ram_incoming_setup\n");
    ops.push_str("uffd open\nuffd register ram missing\nuffd handler missing=copy:4K\n");
    ops.push_str("checkpoint registered\n");
    let mut rng = Rng::new(p.seed);
    let mut plan = Vec::with_capacity(blocks as usize);
    for _ in 0..blocks {
        let zero = rng.chance(p.zero_share);
        let hot = if rng.chance(p.write_share) {
            let len = 1 + rng.below(64);
            let start = rng.below(PAGES_PER_PMD - len + 1);
            Some((start, len))
        } else {
            None
        };
        plan.push((zero, hot));
    }
    ops.push_str("# guest accesses during postcopy: MISSING faults, one 4 KiB UFFDIO_COPY each\n");
    for (b, (_, hot)) in plan.iter().enumerate() {
        if let Some((start, len)) = hot {
            let _ = writeln!(ops, "write {}", range(b as u64 * M2 + start * K4, len * K4));
        }
    }
    ops.push_str("checkpoint guest-faults\n");
    ops.push_str("# background stream: every page not yet placed\n");
    // Merge consecutive blocks of the same kind with no hot run into one op.
    let mut run: Option<(u64, bool)> = None; // (start offset, zero)
    for (b, (zero, hot)) in plan.iter().enumerate() {
        let base = b as u64 * M2;
        if hot.is_none() && run.is_some_and(|(_, z)| z == *zero) {
            continue;
        }
        if let Some((st, z)) = run.take() {
            stream(&mut ops, st, base, z);
        }
        match hot {
            None => run = Some((base, *zero)),
            Some((start, len)) => {
                stream(&mut ops, base, base + start * K4, *zero);
                stream(&mut ops, base + (start + len) * K4, base + M2, *zero);
            }
        }
    }
    if let Some((st, z)) = run {
        stream(&mut ops, st, p.guest, z);
    }
    ops.push_str("expect errno == ok\ncheckpoint placed\n");
    ops.push_str("madvise ram HUGEPAGE                 # postcopy_ram_incoming_cleanup\n");
    ops.push_str("uffd unregister ram\ncheckpoint completed\n");
    let _ = writeln!(
        ops,
        "sleep {secs}s                       # khugepaged, default pace"
    );
    ops.push_str("checkpoint khugepaged-full-scan\n");
    (doc, ops)
}

fn background_snapshot(p: &GenParams) -> (String, String) {
    let used = (p.guest / 100 * (100 - p.zero_share) as u64) / M2 * M2;
    let doc = format!(
        "QEMU migration/ram.c, background snapshot: the guest has written {} (the first {}% of \
         RAM; the rest\nwas never touched). ram_write_tracking_prepare reads one byte per 4 KiB \
         page, then\nram_write_tracking_start: userfaultfd with WP, UFFDIO_REGISTER_MODE_WP, \
         UFFDIO_WRITEPROTECT over all RAM.\nDuring the snapshot the guest writes {}% of its pages \
         (random, seed {}); each write is a uffd-wp fault\nthat the migration thread resolves by \
         saving the page and unprotecting 4 KiB. Parameters used: --guest,\n--zero-share \
         (never-touched share of RAM), --write-share, --seed, --kernel.",
        fmt_size(used),
        100 - p.zero_share,
        p.write_share,
        p.seed
    );
    let mut ops = String::new();
    qemu_ram(p, &mut ops);
    if used > 0 {
        let _ = writeln!(ops, "write {}   # the guest ran", range(0, used));
    }
    ops.push_str("checkpoint guest-ran\n");
    ops.push_str("read ram                             # ram_write_tracking_prepare\n");
    ops.push_str("uffd open\nuffd register ram wp\nuffd wp ram\nuffd handler wp=unprotect:4K\n");
    ops.push_str("expect errno == ok\ncheckpoint protected\n");
    if p.write_share > 0 {
        let _ = writeln!(
            ops,
            "write ram random={}% seed={}   # guest writes during the snapshot",
            p.write_share, p.seed
        );
    }
    ops.push_str("checkpoint snapshot-written\n");
    ops.push_str("uffd unregister ram                  # ram_write_tracking_stop\n");
    ops.push_str("checkpoint stopped\n");
    (doc, ops)
}

fn balloon(p: &GenParams) -> (String, String) {
    let half = p.guest / 2 / M2 * M2;
    let doc = format!(
        "QEMU hw/virtio/virtio-balloon.c on THP-backed guest RAM (fully written by the guest). \
         First half:\nballoon inflate, 4 KiB PFNs, each a 4 KiB MADV_DONTNEED \
         (ram_block_discard_range); the guest gives back\n{}% of the pages of every 2 MiB block \
         as one run of consecutive PFNs at a random offset (seed {};\nconsecutive 4 KiB \
         discards have the effect of one). Second half: free-page reporting of {}% of the\n2 MiB \
         blocks (random), each an aligned 2 MiB MADV_DONTNEED. Then `shrink` (memory pressure). \
         Parameters\nused: --guest, --zero-share (share given back), --seed, --kernel.",
        p.zero_share, p.seed, p.zero_share
    );
    let mut ops = String::new();
    qemu_ram(p, &mut ops);
    ops.push_str("write ram                            # the guest zeroed its RAM at boot\n");
    ops.push_str("checkpoint booted\n");
    let mut rng = Rng::new(p.seed);
    let per_block = PAGES_PER_PMD * p.zero_share as u64 / 100;
    ops.push_str("# inflate: 4 KiB discards\n");
    if per_block > 0 {
        for b in 0..half / M2 {
            let start = rng.below(PAGES_PER_PMD - per_block + 1);
            let _ = writeln!(
                ops,
                "madvise {} DONTNEED",
                range(b * M2 + start * K4, per_block * K4)
            );
        }
    }
    ops.push_str("checkpoint inflated\n");
    ops.push_str("# free-page reporting: aligned 2 MiB discards\n");
    for b in half / M2..p.guest / M2 {
        if rng.chance(p.zero_share) {
            let _ = writeln!(ops, "madvise {} DONTNEED", range(b * M2, M2));
        }
    }
    ops.push_str("checkpoint reported\n");
    ops.push_str("shrink                               # memory pressure: deferred split\n");
    ops.push_str("checkpoint shrunk\n");
    (doc, ops)
}

fn cloud_hypervisor(p: &GenParams) -> (String, String) {
    let t = (p.threads.max(1) as u64).min(p.guest / K4);
    let secs = khugepaged_full_scan_secs(p.guest);
    let doc = format!(
        "Cloud Hypervisor vmm/src/memory_manager.rs create_ram_region with prefault=on: \
         mmap(MAP_PRIVATE|MAP_ANONYMOUS|\nMAP_NORESERVE), {t} thread(s) each \
         MADV_POPULATE_WRITE on a contiguous chunk, and only then MADV_HUGEPAGE\n(thp=on): under \
         enabled=madvise every page is order 0 until khugepaged collapses it, at the default\n\
         pace ({secs} s for a full scan). Parameters used: --guest, --threads, --kernel."
    );
    let mut ops = String::new();
    let _ = writeln!(
        ops,
        "mmap ram {} anon private rw align=2M",
        fmt_size(p.guest)
    );
    if t == 1 {
        ops.push_str("madvise ram POPULATE_WRITE           # prefault\n");
    } else {
        for (i, (off, len)) in chunks(p.guest, t).into_iter().enumerate() {
            let _ = writeln!(
                ops,
                "madvise {} POPULATE_WRITE   # prefault thread {i}",
                range(off, len)
            );
        }
    }
    ops.push_str("expect errno == ok\ncheckpoint prefaulted\n");
    ops.push_str("madvise ram HUGEPAGE                 # thp=on, after the prefault\n");
    ops.push_str("checkpoint advised\n");
    let _ = writeln!(
        ops,
        "sleep {secs}s                       # khugepaged, default pace"
    );
    ops.push_str("checkpoint khugepaged-full-scan\n");
    (doc, ops)
}
