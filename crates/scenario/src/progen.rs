//! Random valid scenario programs, for fuzzing the engine on the model and (with
//! [`Weights::host`]) differential runs against the host.
//!
//! [`generate`] writes a scenario as text from an [`Entropy`] source: a seeded [`SeedRng`], or
//! a fuzzer's bytes through [`ByteSource`] (exhausted bytes read as zeros and end the program,
//! so every input gives a program, and similar inputs give similar programs). Every program
//! parses; it may still fail at run time the way a user's could (e.g. `as` of a process whose
//! `fork` failed with ENOMEM is a run error). [`Weights`] steers what is generated: a weight
//! per op of [`crate::table::OPS`] (0 turns an op off), sizes, nesting, how many knobs are
//! randomised. [`random_knobs`] draws values for every THP sysfs knob of
//! [`thpsim_kernel::sysfs::knobs`] (all mTHP sizes and `anon_beside_full` included).

use std::fmt::Write;

use thpsim_kernel::hugetlb::HPAGE_SIZE as HPAGE;
use thpsim_kernel::observe::{Backing, Smaps};
use thpsim_kernel::profile;
use thpsim_kernel::sysfs::{self, KnobInfo, Sysfs};
use thpsim_kernel::types::{Advice, PAGE_SIZE};
use thpsim_kernel::userfaultfd::Features;
use thpsim_kernel::vmstat::{MthpStat, VmItem, KHUGEPAGED_STATS};

use crate::parse::{fmt_size, UFFD_STATS};

/// Where random numbers come from.
pub trait Entropy {
    fn next_u64(&mut self) -> u64;
    /// True once the source has nothing left to give (a seeded generator never is).
    fn exhausted(&self) -> bool {
        false
    }
}

/// SplitMix64, seeded: the same seed gives the same program on every machine.
#[derive(Clone, Debug)]
pub struct SeedRng(u64);

impl SeedRng {
    pub fn new(seed: u64) -> Self {
        SeedRng(seed)
    }
}

impl Entropy for SeedRng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// A fuzzer's input as entropy: each draw takes up to 4 bytes (little endian), zeros after
/// the end.
#[derive(Clone, Debug)]
pub struct ByteSource<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> ByteSource<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        ByteSource { data, pos: 0 }
    }
}

impl Entropy for ByteSource<'_> {
    fn next_u64(&mut self) -> u64 {
        let mut v = 0u64;
        for i in 0..4 {
            if let Some(b) = self.data.get(self.pos) {
                v |= (*b as u64) << (8 * i);
                self.pos += 1;
            }
        }
        v
    }
    fn exhausted(&self) -> bool {
        self.pos >= self.data.len()
    }
}

/// What [`generate`] produces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Weights {
    /// Relative weight of each body op of [`crate::table::OPS`], by name (`read`, `uffd`, …;
    /// `sysfs` here means a mid-run sysfs write). Ops not listed, or at 0, are not generated.
    pub ops: Vec<(&'static str, u32)>,
    /// Body statements at most (a `repeat` block counts its own and its body's).
    pub max_stmts: u32,
    /// Mappings at most.
    pub max_mappings: u32,
    /// Processes (`main` included) at most.
    pub max_procs: u32,
    /// Deepest `repeat` nesting and largest count.
    pub max_repeat_depth: u32,
    pub max_repeat_count: u32,
    /// Mapping sizes to choose from.
    pub sizes: Vec<u64>,
    /// `memory` values to choose from (the model's default when empty).
    pub memories: Vec<u64>,
    /// Percent chance of a `memory` line (when `memories` is not empty).
    pub memory_percent: u32,
    /// `stride=` values of read/write/access ops.
    pub strides: Vec<&'static str>,
    /// Percent chance of each setup line: `kernel`, `memory`, `catch`, `set`, `sysfs`.
    pub setup_percent: u32,
    /// Percent chance that each THP knob is set in the setup `sysfs` line.
    pub knob_percent: u32,
    /// Allow what only the model runs: `set` switches, `sleep`, `shrink`, `kalloc`, `compact`,
    /// MADV_POPULATE_PGTABLE and MADV_POPULATE, the userfaultfd `event_fork` feature, kernel profiles other
    /// than the first.
    pub model_only: bool,
    /// Percent chance that an anonymous `mmap` is `hugetlb` (and that a `memfd` is a
    /// hugetlbfs file); 0 keeps hugetlb out.
    pub hugetlb_percent: u32,
}

/// The ops and their default weights (body ops of the table, `sysfs` as a mid-run write).
const DEFAULT_OPS: &[(&str, u32)] = &[
    ("mmap", 6),
    ("munmap", 2),
    ("mprotect", 3),
    ("madvise", 6),
    ("read", 6),
    ("write", 8),
    ("access", 4),
    ("repeat", 2),
    ("fork", 2),
    ("as", 2),
    ("exit", 1),
    ("khugepaged", 2),
    ("sleep", 1),
    ("shrink", 1),
    ("kalloc", 1),
    ("compact", 1),
    ("mremap", 2),
    ("mlock", 1),
    ("munlock", 1),
    ("uffd", 3),
    ("prctl", 1),
    ("checkpoint", 2),
    ("expect", 4),
    ("sysfs", 1),
    ("memfd", 1),
    ("tmpfs", 1),
    ("file", 1),
    ("ftruncate", 1),
    ("fallocate", 1),
    ("gmem", 1),
    ("msync", 1),
    ("fsync", 1),
    // Not a body op: a setup `swap SIZE` line in 10 × this many percent of the programs (the
    // host runs them with `--allow-swap` only, so `Weights::host` leaves it at 0).
    ("swap", 3),
    // Not a body op either: a setup `memcg` line in 10 × this many percent of the programs
    // (the host runs them with `--allow-memcg` only: `Weights::host` leaves it at 0).
    ("memcg", 2),
];

/// `memcg limit=` values: tight ones that make charges fail, roomy ones.
const MEMCG_LIMITS: &[&str] = &["4M", "8M", "64M", "1G"];

/// Swap device sizes for `swap` lines: one cluster and a bit, two clusters (the first THP
/// takes the only free one), and roomy ones.
const SWAP_SIZES: &[&str] = &["8K", "2052K", "4M", "64M", "1G"];

/// Ops the host backend cannot run.
const MODEL_ONLY_OPS: &[&str] = &["sleep", "shrink", "kalloc", "compact"];

impl Default for Weights {
    fn default() -> Self {
        Weights::model()
    }
}

impl Weights {
    /// Everything the language has, at sizes the model runs in microseconds.
    pub fn model() -> Self {
        Weights {
            ops: DEFAULT_OPS.to_vec(),
            max_stmts: 40,
            max_mappings: 4,
            max_procs: 3,
            max_repeat_depth: 3,
            max_repeat_count: 4,
            sizes: [
                4 << 10,
                16 << 10,
                64 << 10,
                1 << 20,
                2 << 20,
                (2 << 20) + (4 << 10),
            ]
            .into_iter()
            .chain([4 << 20, 6 << 20, 8 << 20])
            .collect(),
            memories: vec![4 << 20, 8 << 20, 64 << 20, 1 << 30, 16 << 30],
            memory_percent: 50,
            strides: vec!["1", "512", "4K", "8K", "64K", "2M", "3K"],
            setup_percent: 50,
            knob_percent: 30,
            model_only: true,
            hugetlb_percent: 15,
        }
    }

    /// The cargo-fuzz `engine` target's programs: [`Weights::model`] on a small machine
    /// (always a `memory` line of 4–256 MiB) with mappings of at most 4 MiB, repeat counts
    /// of at most 3 and no byte strides, so an execution costs what the program's logic
    /// costs rather than zone-wide compaction scans of the 16 GiB default or page-by-page
    /// loops; every size class the page-table code distinguishes (below, at and across one
    /// PMD) is still there, and small memories reach the OOM and fallback paths more often.
    pub fn fuzz() -> Self {
        let mut w = Weights::model();
        w.memories = vec![4 << 20, 8 << 20, 16 << 20, 64 << 20, 256 << 20];
        w.memory_percent = 100;
        w.sizes.retain(|&s| s <= 4 << 20);
        w.max_repeat_count = 3;
        // A byte stride makes a 4 MiB range 4 M touches that all land on the same pages;
        // 512 still gives several touches per page.
        w.strides.retain(|&s| s != "1");
        w
    }

    /// What the host backend can run too (no model-only ops or switches, no memory limit
    /// below the host's).
    pub fn host() -> Self {
        let mut w = Weights::model();
        w.model_only = false;
        w.memories.clear();
        for (name, weight) in w.ops.iter_mut() {
            if MODEL_ONLY_OPS.contains(name) || matches!(*name, "swap" | "memcg") {
                *weight = 0;
            }
        }
        w
    }

    /// The weight of an op (0 if not listed).
    pub fn weight(&self, op: &str) -> u32 {
        self.ops
            .iter()
            .find(|(n, _)| *n == op)
            .map(|(_, w)| *w)
            .unwrap_or(0)
    }

    /// Sets an op's weight (0 turns it off).
    pub fn set(&mut self, op: &'static str, weight: u32) -> &mut Self {
        match self.ops.iter_mut().find(|(n, _)| *n == op) {
            Some(e) => e.1 = weight,
            None => self.ops.push((op, weight)),
        }
        self
    }
}

fn below<E: Entropy>(e: &mut E, n: u64) -> u64 {
    if n == 0 {
        0
    } else {
        e.next_u64() % n
    }
}

fn pick<'a, E: Entropy, T>(e: &mut E, items: &'a [T]) -> &'a T {
    &items[below(e, items.len() as u64) as usize]
}

fn chance<E: Entropy>(e: &mut E, percent: u32) -> bool {
    below(e, 100) < percent as u64
}

/// A value for a knob, drawn from its description (`a|b|c`, `LO..=HI`, milliseconds,
/// integers), biased towards edges and defaults; always one the knob accepts.
pub fn knob_value<E: Entropy>(e: &mut E, k: &KnobInfo) -> String {
    let spec = k.values;
    let v = if k.name.starts_with("hugetlb.1G.") {
        // 1 GiB pages: the host gets two at most (FINDINGS §34).
        pick(e, &[0u64, 0, 1, 2]).to_string()
    } else if k.name.starts_with("hugetlb.") {
        // Pools of a few pages: enough to reach reservation limits, small for the host.
        pick(e, &[0u64, 0, 1, 2, 3, 4, 8]).to_string()
    } else if spec.contains('|') {
        pick(e, &spec.split('|').collect::<Vec<_>>()).to_string()
    } else if let Some((lo, hi)) = spec.split_once("..=") {
        let lo: u64 = lo.trim().parse().unwrap_or(0);
        let hi: u64 = hi.trim().parse().unwrap_or(lo);
        let span = hi.saturating_sub(lo);
        let edges = [
            lo,
            lo + 1.min(span),
            lo + span / 8,
            lo + span / 2,
            hi - 1.min(span),
            hi,
        ];
        // Large scan budgets make khugepaged passes slow to no purpose: mostly small ones.
        match below(e, 4) {
            0 => *pick(e, &edges),
            _ => lo + below(e, span.min(4096) + 1),
        }
        .to_string()
    } else if spec.starts_with("milliseconds") {
        pick(e, &[0u64, 1, 10, 100, 1000, 10_000, 60_000]).to_string()
    } else {
        pick(e, &[0u64, 1, 2, 8, 511, 512, 4096]).to_string()
    };
    // Fall back to the default if the description was not understood.
    let mut s = Sysfs::default();
    match s.set(&k.name, &v) {
        Ok(()) => v,
        Err(_) => Sysfs::default().get(&k.name).unwrap_or_default(),
    }
}

/// Every THP knob with probability `percent`, each with a random accepted value, in
/// `thpsim_kernel::sysfs::knobs()` order. A value the knobs written before it make the kernel
/// refuse (`shmem_enabled=force` with a non-PMD size inheriting) becomes the knob's current
/// value.
pub fn random_knobs<E: Entropy>(e: &mut E, percent: u32) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut state = Sysfs::default();
    for k in sysfs::knobs() {
        if chance(e, percent) {
            let v = knob_value(e, &k);
            let v = if state.set(&k.name, &v).is_ok() {
                v
            } else {
                state.get(&k.name).unwrap_or(v)
            };
            out.push((k.name, v));
        }
    }
    out
}

struct Map {
    name: String,
    size: u64,
    /// Backed by a shmem object (`shared`, or a mapping of a `memfd`), for the host filters.
    shmem: bool,
    /// hugetlb memory (`hugetlb`, or a mapping of a `memfd … hugetlb`).
    hugetlb: bool,
    /// 1 GiB hugetlb memory (`hugetlb=1G`, or of a `memfd … hugetlb=1G`).
    gigantic: bool,
    /// Holds pages of a guest_memfd, whose reclaim the model does not model (MADV_PAGEOUT is
    /// EOPNOTSUPP there; shmem's and disk files' are modelled).
    unreclaimable: bool,
}

struct Gen<'a, E: Entropy> {
    e: &'a mut E,
    w: &'a Weights,
    out: String,
    maps: Vec<Map>,
    /// `memfd`, `gmem` and `file` objects made so far (only before the first fork, so that
    /// every process has them on the host too: a worker inherits its parent's descriptors).
    objects: Vec<String>,
    /// The objects of `objects` that are hugetlbfs files.
    hugetlb_objects: Vec<String>,
    /// The objects of `hugetlb_objects` with 1 GiB pages.
    gigantic_objects: Vec<String>,
    /// A `uffd` op was generated: no 1 GiB hugetlb memory from then on (the host's monitor
    /// fills 2 MiB at a time, which a 1 GiB VMA refuses), as no `uffd` op follows 1 GiB
    /// memory.
    uffd_used: bool,
    /// The objects of `objects` that are guest_memfds (`Map::unreclaimable`).
    unreclaimable_objects: Vec<String>,
    /// `tmpfs` instances made so far (before the first fork, like objects).
    mounts: Vec<String>,
    /// Processes that exist (forked, not exited), `main` first.
    procs: Vec<String>,
    /// Names ever used for processes (a name is never reused).
    forks: u32,
    labels: u32,
    stmts: u32,
    ops_total: u32,
    /// The program has a `swap` line: MADV_PAGEOUT is picked more often, so that swap
    /// entries (and the paths that meet them) are common.
    swap: bool,
}

impl<E: Entropy> Gen<'_, E> {
    fn below(&mut self, n: u64) -> u64 {
        below(self.e, n)
    }
    fn chance(&mut self, p: u32) -> bool {
        chance(self.e, p)
    }
    fn line(&mut self, depth: u32, text: &str) {
        for _ in 0..depth {
            self.out.push_str("  ");
        }
        self.out.push_str(text);
        self.out.push('\n');
    }

    fn setup(&mut self) {
        let p = self.w.setup_percent;
        let profiles = profile::profiles();
        if self.chance(p) {
            let name = if self.w.model_only {
                pick(self.e, &profiles).name
            } else {
                profile::DEFAULT_PROFILE
            };
            self.line(0, &format!("kernel {name}"));
        }
        if !self.w.memories.is_empty() && self.chance(self.w.memory_percent) {
            let m = *pick(self.e, &self.w.memories);
            self.line(0, &format!("memory {}", fmt_size(m)));
        }
        if self.chance(self.w.weight("swap").saturating_mul(10).min(100)) {
            let size = *pick(self.e, SWAP_SIZES);
            self.line(0, &format!("swap {size}"));
            self.swap = true;
        }
        if self.chance(self.w.weight("memcg").saturating_mul(10).min(100)) {
            let limit = *pick(self.e, MEMCG_LIMITS);
            let swappiness = *pick(self.e, &["0", "60", "200"]);
            self.line(0, &format!("memcg limit={limit} swappiness={swappiness}"));
        }
        if self.chance(p) {
            let sigs = *pick(self.e, &["SIGSEGV", "SIGBUS", "SIGSEGV SIGBUS"]);
            self.line(0, &format!("catch {sigs}"));
        }
        if self.w.model_only && self.chance(p) {
            let n = 1 + self.below(profile::SWITCHES.len() as u64);
            let mut kv = Vec::new();
            for (k, vals, _) in profile::SWITCHES.iter().take(n as usize) {
                let v = *pick(self.e, &vals.split('|').collect::<Vec<_>>());
                kv.push(format!("{k}={v}"));
            }
            self.line(0, &format!("set {}", kv.join(" ")));
        }
        if self.chance(p.max(self.w.knob_percent)) {
            let mut knobs = random_knobs(self.e, self.w.knob_percent);
            if !self.w.model_only {
                // Offset-based swap readahead keeps global state across runs on the host
                // (FINDINGS §36): with it the host's answer depends on earlier runs.
                knobs.retain(|(k, _)| k != "swap.vma_ra_enabled");
            }
            if !knobs.is_empty() {
                let kv: Vec<String> = knobs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                self.line(0, &format!("sysfs {}", kv.join(" ")));
            }
        }
    }

    /// A mapping's name and size.
    fn some_map(&mut self) -> Option<(String, u64)> {
        let i = self.below(self.maps.len() as u64) as usize;
        self.maps.get(i).map(|m| (m.name.clone(), m.size))
    }

    /// A size from the weights' list.
    fn size(&mut self) -> u64 {
        *pick(self.e, &self.w.sizes)
    }

    /// A range of an existing mapping: `NAME`, `NAME+OFF` or `NAME+OFF LEN`.
    fn range(&mut self) -> Option<String> {
        if self.maps.is_empty() {
            return None;
        }
        let (name, size) = self.some_map()?;
        let pages = size / PAGE_SIZE;
        Some(match self.below(4) {
            0 => name,
            1 => {
                // One byte, anywhere (unaligned offsets too).
                let off = self.below(size);
                format!("{name}+{}", self.offset_text(off))
            }
            _ => {
                let first = self.below(pages);
                let n = 1 + self.below(pages - first);
                let off = first * PAGE_SIZE;
                // Sometimes an unaligned length (the kernel rounds up or refuses).
                let len = if self.chance(10) {
                    n * PAGE_SIZE - 1
                } else {
                    n * PAGE_SIZE
                };
                format!("{name}+{} {}", self.offset_text(off), fmt_size(len))
            }
        })
    }

    fn offset_text(&mut self, off: u64) -> String {
        if self.chance(20) {
            format!("{off:#x}")
        } else {
            fmt_size(off).replace('K', if self.chance(10) { "kB" } else { "K" })
        }
    }

    fn access_opts(&mut self) -> String {
        let mut s = String::new();
        if self.chance(30) {
            let stride = *pick(self.e, &self.w.strides);
            let _ = write!(s, " stride={stride}");
        }
        if self.chance(25) {
            if self.chance(50) {
                let _ = write!(s, " random={}%", self.below(101));
            } else {
                let _ = write!(s, " random={}", self.below(600));
            }
            if self.chance(60) {
                let _ = write!(s, " seed={}", self.below(1 << 20));
            }
        }
        s
    }

    fn prot(&mut self) -> &'static str {
        const PROTS: [&str; 8] = ["none", "r", "rw", "rx", "rwx", "w", "x", "wx"];
        PROTS[below(self.e, PROTS.len() as u64) as usize]
    }

    fn mmap(&mut self) -> Option<String> {
        if self.maps.len() as u32 >= self.w.max_mappings {
            return None;
        }
        let name = format!("m{}", self.maps.len());
        let size = self.size();
        let vis = if self.chance(25) { "shared" } else { "private" };
        let of_object = !self.objects.is_empty() && self.chance(40);
        let dev_zero = !of_object && self.chance(10);
        let object = of_object.then(|| pick(self.e, &self.objects).clone());
        let of_hugetlb = object
            .as_ref()
            .is_some_and(|o| self.hugetlb_objects.contains(o));
        let hugetlb =
            of_hugetlb || (object.is_none() && !dev_zero && self.chance(self.w.hugetlb_percent));
        let gigantic = match &object {
            Some(o) => self.gigantic_objects.contains(o),
            None => hugetlb && !self.uffd_used && self.chance(20),
        };
        // hugetlb lengths are whole huge pages (the kernel rounds them up).
        let size = if gigantic {
            size.div_ceil(1 << 30).clamp(1, 2) << 30
        } else if hugetlb {
            size.div_ceil(2 << 20).clamp(1, 3) * (2 << 20)
        } else {
            size
        };
        let shmem = (vis == "shared" || of_object) && !hugetlb;
        let unreclaimable = object
            .as_ref()
            .is_some_and(|o| self.unreclaimable_objects.contains(o));
        // MAP_FIXED over part of an earlier mapping (never hugetlb on either side: its
        // alignment rules would make most of these EINVAL). The old mapping then holds
        // shmem pages too, which the host filters must know.
        let over: Vec<usize> = (0..self.maps.len())
            .filter(|&i| !self.maps[i].hugetlb)
            .collect();
        let at = if !hugetlb && !over.is_empty() && self.chance(12) {
            let i = *pick(self.e, &over);
            let off = *pick(self.e, &[0u64, 4 << 10, 1 << 20, 2 << 20]);
            let off = off.min(self.maps[i].size - PAGE_SIZE);
            self.maps[i].shmem |= shmem;
            self.maps[i].unreclaimable |= unreclaimable;
            Some(format!(" at={}+{}", self.maps[i].name, fmt_size(off)))
        } else {
            None
        };
        self.maps.push(Map {
            name: name.clone(),
            size,
            shmem,
            hugetlb,
            gigantic,
            unreclaimable,
        });
        let backing = if dev_zero { "zero" } else { "anon" };
        let mut s = if let Some(o) = object {
            let mut s = format!("mmap {name} {} {o} {vis}", fmt_size(size));
            if self.chance(30) {
                let f = *pick(self.e, &["4K", "64K", "1M", "2M"]);
                let _ = write!(s, " foff={f}");
            }
            s
        } else {
            format!("mmap {name} {} {backing} {vis}", fmt_size(size))
        };
        if hugetlb && !of_hugetlb {
            s.push_str(match (gigantic, self.chance(20)) {
                (true, _) => " hugetlb=1G",
                (false, true) => " hugetlb=2M",
                (false, false) => " hugetlb",
            });
        }
        if hugetlb && self.chance(30) {
            s.push_str(" noreserve");
        }
        if self.chance(30) {
            let p = self.prot();
            if self.chance(50) {
                let _ = write!(s, " prot={p}");
            } else {
                let _ = write!(s, " {p}");
            }
        }
        if let Some(at) = at {
            s.push_str(&at);
        } else {
            if self.chance(30) {
                let a = *pick(self.e, &["4K", "64K", "2M", "4M", "1G"]);
                let _ = write!(s, " align={a}");
            }
            if self.chance(20) {
                let o = *pick(self.e, &["4K", "64K", "1M", "2M"]);
                let _ = write!(s, " offset={o}");
            }
        }
        if self.chance(15) {
            s.push_str(" populate");
        }
        Some(s)
    }

    fn madvise(&mut self) -> Option<String> {
        let r = self.range()?;
        let name = r.split(['+', ' ']).next().unwrap_or_default();
        let unreclaimable = self.maps.iter().any(|m| m.name == name && m.unreclaimable);
        let modelled: Vec<&str> = Advice::ALL
            .iter()
            .filter(|a| a.1.is_modelled())
            .filter(|a| self.w.model_only || !a.1.is_model_only())
            // Reclaim of guest_memfd pages is not modelled (EOPNOTSUPP in the model); shmem's
            // and disk files' is.
            .filter(|a| self.w.model_only || !unreclaimable || a.1 != Advice::Pageout)
            .map(|a| a.0)
            .collect();
        let mut a = *pick(self.e, &modelled);
        if self.swap && modelled.contains(&"PAGEOUT") && self.chance(40) {
            a = "PAGEOUT";
        }
        let a = match self.below(6) {
            0 => format!("MADV_{a}"),
            1 => a.to_ascii_lowercase(),
            _ => a.to_string(),
        };
        Some(format!("madvise {r} {a}"))
    }

    /// A range for a userfaultfd ioctl: half the time, when there is hugetlb memory, whole
    /// huge pages of a hugetlb mapping (what its ioctls accept), else any range.
    fn uffd_range(&mut self) -> Option<String> {
        let huge: Vec<(String, u64)> = self
            .maps
            .iter()
            .filter(|m| m.hugetlb && m.size >= HPAGE)
            .map(|m| (m.name.clone(), m.size))
            .collect();
        if huge.is_empty() || !self.chance(50) {
            return self.range();
        }
        let (name, size) = pick(self.e, &huge).clone();
        let n = size / HPAGE;
        let first = self.below(n);
        let len = 1 + self.below(n - first);
        Some(format!(
            "{name}+{} {}",
            fmt_size(first * HPAGE),
            fmt_size(len * HPAGE)
        ))
    }

    fn uffd(&mut self) -> Option<String> {
        Some(match self.below(9) {
            0 => {
                let mut s = "uffd open".to_string();
                for f in Features::NAMES {
                    if (self.w.model_only || *f != "event_fork") && self.chance(25) {
                        let _ = write!(s, " {f}");
                    }
                }
                s
            }
            1 => {
                let r = self.uffd_range()?;
                let mode = *pick(
                    self.e,
                    &[
                        "missing",
                        "wp",
                        "missing+wp",
                        "minor",
                        "missing+minor",
                        "minor+wp",
                    ],
                );
                format!("uffd register {r} {mode}")
            }
            2 => format!("uffd unregister {}", self.uffd_range()?),
            3 => format!("uffd wp {}", self.uffd_range()?),
            4 => format!("uffd unwp {}", self.uffd_range()?),
            5 => {
                let r = self.uffd_range()?;
                let wp = if self.chance(30) { " wp" } else { "" };
                format!("uffd copy {r}{wp}")
            }
            6 => format!("uffd zeropage {}", self.uffd_range()?),
            7 => {
                let r = self.uffd_range()?;
                let wp = if self.chance(30) { " wp" } else { "" };
                format!("uffd continue {r}{wp}")
            }
            _ => {
                let mut s = "uffd handler".to_string();
                if self.chance(70) {
                    let p = *pick(
                        self.e,
                        &[
                            "unprotect:4K",
                            "unprotect:2M",
                            "unprotect:vma",
                            "unprotect:64K",
                        ],
                    );
                    let _ = write!(s, " wp={p}");
                }
                if self.chance(70) {
                    let p = *pick(
                        self.e,
                        &["copy:4K", "copy:64K", "zeropage:4K", "zeropage:2M"],
                    );
                    let _ = write!(s, " missing={p}");
                }
                if self.chance(50) {
                    let p = *pick(self.e, &["continue:4K", "continue:64K", "continue:2M"]);
                    let _ = write!(s, " minor={p}");
                }
                s
            }
        })
    }

    fn expect(&mut self) -> Option<String> {
        let cmp = *pick(self.e, &["==", "!=", "<", "<=", ">", ">="]);
        let n = self.below(1200) as i64 - 100;
        let (obs, cmp, val) = match self.below(13) {
            0 => ("minflt".to_string(), cmp, n.to_string()),
            1 => ("majflt".to_string(), cmp, n.to_string()),
            2 => ("pgfault".to_string(), cmp, n.to_string()),
            3 => {
                let v = *pick(
                    self.e,
                    &[
                        "ok", "0", "ENOMEM", "EINVAL", "EEXIST", "EAGAIN", "SIGSEGV", "SIGBUS",
                    ],
                );
                let c = *pick(self.e, &["==", "!="]);
                ("errno".to_string(), c, v.to_string())
            }
            4 => {
                let i = pick(self.e, VmItem::ALL).name();
                (format!("vmstat.{i}"), cmp, n.to_string())
            }
            5 => {
                let o = *pick(self.e, &sysfs::ANON_ORDERS);
                let s = pick(self.e, MthpStat::ALL).name();
                let kb = (PAGE_SIZE << o) >> 10;
                (format!("mthp.{kb}kB.{s}"), cmp, n.to_string())
            }
            6 => {
                let s = *pick(self.e, KHUGEPAGED_STATS);
                (format!("khugepaged.{s}"), cmp, n.to_string())
            }
            7 => {
                let s = *pick(self.e, UFFD_STATS);
                (format!("uffd.{s}"), cmp, n.to_string())
            }
            8 => ("uffd.last_flags".to_string(), cmp, n.to_string()),
            9 => {
                let (name, size) = self.some_map()?;
                let off = self.below(size / PAGE_SIZE) * PAGE_SIZE;
                (
                    "uffd.last_addr".to_string(),
                    "==",
                    format!("{name}+{}", fmt_size(off)),
                )
            }
            10 => {
                let (name, _) = self.some_map()?;
                let f = *pick(self.e, Smaps::FIELDS);
                let v = if f == "THPeligible" {
                    self.below(2).to_string()
                } else {
                    pick(self.e, &["0", "4kB", "2048kB", "2M", "4K", "12"]).to_string()
                };
                (format!("smaps({name}).{f}"), cmp, v)
            }
            11 if !self.objects.is_empty() => {
                let o = pick(self.e, &self.objects).clone();
                if self.chance(50) {
                    let v = 8 * self.below(1025);
                    (format!("obj({o}).blocks"), cmp, v.to_string())
                } else {
                    let v = *pick(self.e, &["0", "4K", "1M", "2M", "3M", "4M"]);
                    (format!("obj({o}).size"), cmp, v.to_string())
                }
            }
            _ => {
                let r = self.range()?;
                let c = *pick(self.e, Backing::CLASSES);
                (format!("pages({r}).{c}"), cmp, self.below(1025).to_string())
            }
        };
        let mut s = format!("expect {obs} {cmp} {val}");
        if self.chance(20) {
            let cond = match self.below(3) {
                0 => pick(
                    self.e,
                    &["kernel>=6.13", "kernel<6.13", "kernel=6.12", "kernel!=6.18"],
                )
                .to_string(),
                _ => {
                    let (k, vals, _) = pick(self.e, profile::SWITCHES);
                    let v = *pick(self.e, &vals.split('|').collect::<Vec<_>>());
                    format!("{k}={v}")
                }
            };
            let _ = write!(s, " when {cond}");
        }
        Some(s)
    }

    /// One statement at `depth` (0 = top level). `None`: the chosen op did not fit (no
    /// mapping yet, no second process, …).
    fn stmt(&mut self, depth: u32) -> Option<()> {
        let in_block = depth > 0;
        let choices: Vec<(&'static str, u32)> = self
            .w
            .ops
            .iter()
            .copied()
            .filter(|(n, w)| {
                *w > 0
                    && (self.w.model_only || !MODEL_ONLY_OPS.contains(n))
                    // Process lifetimes and block starts are kept out of blocks.
                    && !(in_block && matches!(*n, "fork" | "as" | "exit" | "mmap"))
                    && !(*n == "repeat" && depth >= self.w.max_repeat_depth)
                    && !matches!(*n, "swap" | "memcg")
            })
            .collect();
        let total: u64 = choices.iter().map(|(_, w)| *w as u64).sum();
        let mut x = self.below(total.max(1));
        let mut op = choices.first()?.0;
        for (n, w) in &choices {
            if x < *w as u64 {
                op = n;
                break;
            }
            x -= *w as u64;
        }
        self.stmts += 1;
        let text = match op {
            "mmap" => self.mmap()?,
            "memfd" => {
                if self.forks > 0 || self.objects.len() >= 2 {
                    return None;
                }
                let name = format!("o{}", self.objects.len());
                self.objects.push(name.clone());
                let size = self.size();
                if self.chance(self.w.hugetlb_percent) {
                    self.hugetlb_objects.push(name.clone());
                    if !self.uffd_used && self.chance(20) {
                        self.gigantic_objects.push(name.clone());
                        let size = size.div_ceil(1 << 30).clamp(1, 2) << 30;
                        format!("memfd {name} {} hugetlb=1G", fmt_size(size))
                    } else {
                        let size = size.div_ceil(2 << 20).clamp(1, 3) * (2 << 20);
                        format!("memfd {name} {} hugetlb", fmt_size(size))
                    }
                } else {
                    format!("memfd {name} {}", fmt_size(size))
                }
            }
            "gmem" => {
                if self.forks > 0 || self.objects.len() >= 3 {
                    return None;
                }
                let name = format!("g{}", self.objects.len());
                self.objects.push(name.clone());
                self.unreclaimable_objects.push(name.clone());
                // Mostly a mappable, shared object (what faults can use); now and then one
                // the kernel refuses (size, flags) or whose faults SIGBUS.
                let size = match below(self.e, 10) {
                    0 => "0".to_string(),
                    1 => "6K".to_string(),
                    _ => fmt_size(self.size()),
                };
                let mut s = format!("gmem {name} {size}");
                if !self.chance(10) {
                    s.push_str(" mmap");
                }
                if !self.chance(20) {
                    s.push_str(" init_shared");
                }
                if self.chance(5) {
                    s.push_str(" flags=4");
                }
                s
            }
            "tmpfs" => {
                if self.forks > 0 || self.mounts.len() >= 2 {
                    return None;
                }
                let name = format!("t{}", self.mounts.len());
                self.mounts.push(name.clone());
                let mut s = format!("tmpfs {name}");
                if self.chance(85) {
                    let h = *pick(self.e, &["never", "always", "within_size", "advise"]);
                    let _ = write!(s, " huge={h}");
                }
                if self.chance(35) {
                    let l = *pick(self.e, &["0", "64K", "1M", "3M", "4M", "8M"]);
                    let _ = write!(s, " size={l}");
                }
                s
            }
            "file" => {
                if self.forks > 0 || self.objects.len() >= 3 {
                    return None;
                }
                // On a tmpfs made earlier, or on the disk filesystem.
                let on = if !self.mounts.is_empty() && self.chance(50) {
                    pick(self.e, &self.mounts).clone()
                } else {
                    "disk".to_string()
                };
                let name = format!("o{}", self.objects.len());
                self.objects.push(name.clone());
                let size = if self.chance(15) { 0 } else { self.size() };
                format!("file {name} {} on={on}", fmt_size(size))
            }
            "msync" => {
                let r = self.range()?;
                let mut s = format!("msync {r}");
                for f in ["sync", "async", "invalidate"] {
                    if self.chance(40) {
                        let _ = write!(s, " {f}");
                    }
                }
                s
            }
            "fsync" => {
                if self.objects.is_empty() {
                    return None;
                }
                let o = pick(self.e, &self.objects).clone();
                format!("fsync {o}")
            }
            "ftruncate" => {
                if self.objects.is_empty() {
                    return None;
                }
                let o = pick(self.e, &self.objects).clone();
                let size = if self.chance(20) { 0 } else { self.size() };
                format!("ftruncate {o} {}", fmt_size(size))
            }
            "fallocate" => {
                if self.objects.is_empty() {
                    return None;
                }
                let o = pick(self.e, &self.objects).clone();
                let off = *pick(self.e, &["0", "4K", "1M", "2M"]);
                let len = fmt_size(self.size());
                let mut s = format!("fallocate {o} {off} {len}");
                if self.chance(50) {
                    s.push_str(" keep_size");
                }
                if self.chance(35) {
                    s.push_str(" punch_hole");
                }
                s
            }
            "munmap" => format!("munmap {}", self.range()?),
            "mprotect" => {
                let r = self.range()?;
                let p = self.prot();
                if self.chance(30) {
                    format!("mprotect {r} prot={p}")
                } else {
                    format!("mprotect {r} {p}")
                }
            }
            "madvise" => self.madvise()?,
            "read" | "write" => {
                let r = self.range()?;
                format!("{op} {r}{}", self.access_opts())
            }
            "access" => {
                let r = self.range()?;
                let p = *pick(self.e, &["r", "w", "rw"]);
                format!("access {r} pattern={p}{}", self.access_opts())
            }
            "repeat" => {
                let n = 1 + self.below(self.w.max_repeat_count.max(1) as u64);
                self.line(depth, &format!("repeat {n}"));
                let body = 1 + self.below(4);
                for _ in 0..body {
                    if self.stmts >= self.w.max_stmts || self.e.exhausted() {
                        break;
                    }
                    let _ = self.stmt(depth + 1);
                }
                "end".to_string()
            }
            "fork" => {
                if self.procs.len() as u32 >= self.w.max_procs {
                    return None;
                }
                self.forks += 1;
                let name = format!("p{}", self.forks);
                self.procs.push(name.clone());
                format!("fork {name}")
            }
            "as" => format!("as {}", pick(self.e, &self.procs)),
            "exit" => {
                if self.procs.len() < 2 {
                    return None;
                }
                let i = 1 + self.below(self.procs.len() as u64 - 1) as usize;
                format!("exit {}", self.procs.remove(i))
            }
            "khugepaged" => match self.below(3) {
                0 => "khugepaged scan".to_string(),
                _ => format!("khugepaged scan {}", 1 + self.below(4)),
            },
            "sleep" => pick(
                self.e,
                &["sleep 1ms", "sleep 500ms", "sleep 10s", "sleep 1m"],
            )
            .to_string(),
            "shrink" => "shrink".to_string(),
            "kalloc" => {
                let size = pick(self.e, &["4K", "64K", "2M", "8M"]);
                match self.below(4) {
                    0 => format!("kalloc {size}"),
                    1 => format!("kalloc {size} order={}", self.below(4)),
                    2 => format!("kalloc {size} type=reclaimable"),
                    _ => format!("kalloc {size} scatter={}", 1 + self.below(8)),
                }
            }
            "compact" => "compact".to_string(),
            // The host's userfaultfd monitor fills 2 MiB at a time, which a 1 GiB hugetlb
            // VMA refuses: no userfaultfd once there is 1 GiB hugetlb memory.
            "uffd" if self.maps.iter().any(|m| m.gigantic) => return None,
            "mremap" => {
                // RANGE as the engine resolves it: a bare offset is one byte.
                let src = self.range()?;
                let (head, len_text) = match src.split_once(' ') {
                    Some((h, l)) => (h, Some(l)),
                    None => (src.as_str(), None),
                };
                let (src_name, off) = match head.split_once('+') {
                    Some((n, o)) => (n, crate::parse::parse_size(o).ok()?),
                    None => (head, 0),
                };
                let src_size = self.maps.iter().find(|m| m.name == src_name)?.size;
                let len = match len_text {
                    Some(l) => crate::parse::parse_size(l).ok()?,
                    None if head.contains('+') => 1,
                    None => src_size,
                };
                // A new size keeps the result inside a declared mapping (so the host-side
                // filters know what is there): in place up to the source mapping's end.
                let new_size = |g: &mut Self, room: u64| -> String {
                    let pages = room.div_ceil(PAGE_SIZE).max(1);
                    match g.below(20) {
                        0 => "0".to_string(),
                        1 => fmt_size((1 + g.below(pages)) * PAGE_SIZE - 1),
                        _ => fmt_size((1 + g.below(pages)) * PAGE_SIZE),
                    }
                };
                let in_place = self.chance(30);
                let resize = in_place || self.chance(40);
                // The destination must hold the source's length (or the new one).
                let need = if resize { PAGE_SIZE } else { len };
                let fits: Vec<(String, u64)> = self
                    .maps
                    .iter()
                    .filter(|m| m.size >= need)
                    .map(|m| (m.name.clone(), m.size))
                    .collect();
                let (dst, size) = pick(self.e, &fits).clone();
                // Page-cache pages moved into another mapping make it one the host-side
                // filters treat as shmem (MADV_PAGEOUT).
                let moved = self
                    .maps
                    .iter()
                    .find(|m| m.name == src_name)
                    .map(|m| (m.shmem, m.unreclaimable));
                if let Some((shmem, unreclaimable)) = moved.filter(|_| !in_place) {
                    for m in self.maps.iter_mut().filter(|m| m.name == dst) {
                        m.shmem |= shmem;
                        m.unreclaimable |= unreclaimable;
                    }
                }
                let room = (size - need.div_ceil(PAGE_SIZE) * PAGE_SIZE) / PAGE_SIZE;
                let at = match self.below(room + 1) {
                    0 => dst,
                    p => format!("{dst}+{}", fmt_size(p * PAGE_SIZE)),
                };
                if in_place {
                    let room = src_size - off / PAGE_SIZE * PAGE_SIZE;
                    let size = new_size(self, room);
                    format!("mremap {src} size={size}")
                } else if resize {
                    let used = at
                        .split_once('+')
                        .map_or(Some(0), |(_, o)| crate::parse::parse_size(o).ok())?;
                    let size = new_size(self, size - used);
                    format!("mremap {src} {at} size={size}")
                } else {
                    format!("mremap {src} {at}")
                }
            }
            "mlock" => format!("mlock {}", self.range()?),
            "munlock" => format!("munlock {}", self.range()?),
            "uffd" => {
                self.uffd_used = true;
                self.uffd()?
            }
            "prctl" => {
                let flag = if self.chance(40) {
                    " except_advised"
                } else {
                    ""
                };
                format!("prctl set_thp_disable {}{flag}", self.below(2))
            }
            "checkpoint" => {
                self.labels += 1;
                format!("checkpoint c{}", self.labels)
            }
            "expect" => self.expect()?,
            "sysfs" => {
                let knobs = sysfs::knobs();
                let k = pick(self.e, &knobs);
                let mut v = knob_value(self.e, k);
                // `force` and a non-PMD size's `inherit` refuse each other, whatever the
                // earlier lines set: a mid-run write picks neither.
                let pmd_size = k.name.starts_with("hugepages-2048kB.");
                if k.name.ends_with("shmem_enabled")
                    && (v == "force" || (v == "inherit" && !pmd_size))
                {
                    v = "never".to_string();
                }
                format!("sysfs {}={v}", k.name)
            }
            _ => return None,
        };
        self.ops_total += 1;
        self.line(depth, &text);
        Some(())
    }
}

/// A random valid scenario (see the module documentation).
pub fn generate<E: Entropy>(e: &mut E, w: &Weights) -> String {
    let mut g = Gen {
        e,
        w,
        out: String::new(),
        maps: Vec::new(),
        objects: Vec::new(),
        hugetlb_objects: Vec::new(),
        gigantic_objects: Vec::new(),
        uffd_used: false,
        unreclaimable_objects: Vec::new(),
        mounts: Vec::new(),
        procs: vec!["main".to_string()],
        forks: 0,
        labels: 0,
        stmts: 0,
        ops_total: 0,
        swap: false,
    };
    g.setup();
    // Start with a mapping so that most ops have something to work on.
    if w.weight("mmap") > 0 {
        if let Some(m) = g.mmap() {
            g.line(0, &m);
        }
    }
    let mut attempts = 0;
    while g.stmts < w.max_stmts && !g.e.exhausted() && attempts < 4 * w.max_stmts {
        attempts += 1;
        let _ = g.stmt(0);
    }
    g.out
}
