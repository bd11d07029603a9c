//! The importer behind `thpsim import --pid PID` and the Python `import_pid`: a scenario
//! that rebuilds a live process's anonymous private memory in the model. Reads what
//! `fs/proc/task_mmu.c` (Linux 6.18) exports — `/proc/PID/maps`, `smaps` (`VmFlags`),
//! `pagemap` and `/proc/kpageflags` through `crate::observe`, `status` (`THP_enabled`) —
//! and the host's THP knobs.
//!
//! The scenario builds each page with the fault that makes it, so the model's folios,
//! page tables and counters are those of real faults (docs/import.md):
//! 1. with PMD-sized THP off: small zero pages (reads), mTHP folios (writes with only that
//!    size's `hugepages-<N>kB/enabled=always`), order-0 pages (writes with every size off);
//! 2. with `enabled=always`: PMD THPs (one write per 2 MiB), huge zero PMDs (one read),
//!    PTE-mapped order-9 folios (a PMD THP whose PMD a 4 KiB `mprotect` splits);
//! 3. the VMAs' final state: `madvise HUGEPAGE|NOHUGEPAGE` (smaps `hg`/`nh`), `mprotect`,
//!    `mlock` (`lo`), `prctl` (`THP_enabled: 0`), then the host's knobs.
//!
//! PMD-sized THP stays off through step 1, so no mm is on khugepaged's list when step 2 turns
//! it on and that knob write runs no khugepaged pass (`Kernel::write_sysfs`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use thpsim_kernel::observe::{pagemap_count, pagemap_push, Backing, PageMap};

const PAGE: u64 = 4096;
const PMD: u64 = 2 << 20;
const PMD_PAGES: u64 = PMD / PAGE;

/// One VMA of the live process (a line of `/proc/PID/maps` with its smaps `VmFlags`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveVma {
    pub start: u64,
    pub end: u64,
    /// `rwxp` / `rw-s` as maps prints it.
    pub perms: String,
    pub inode: u64,
    /// The pathname column (`[heap]`, `[stack]`, `[anon:name]`, a file, or empty).
    pub path: String,
    /// smaps `VmFlags` (two-letter mnemonics: `hg`, `nh`, `lo`, `gd`, …).
    pub flags: Vec<String>,
    /// The backing of every page (anonymous private VMAs only; empty for the others).
    pub pages: PageMap,
}

/// What `import` reads from a live process and the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Live {
    pub pid: i32,
    pub comm: String,
    pub vmas: Vec<LiveVma>,
    /// `THP_enabled` from `/proc/PID/status` (0 after `prctl(PR_SET_THP_DISABLE)`).
    pub thp_enabled: bool,
    /// The host's THP knobs, scenario names (`thpsim_host::host_knobs`).
    pub knobs: Vec<(String, String)>,
    /// Kernel profile of the host (`6.18`).
    pub profile: String,
    /// Simulated memory: the host's MemTotal, rounded down to 4 MiB.
    pub memory: u64,
}

impl LiveVma {
    fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// Why the scenario leaves this VMA out, or `None` for an anonymous private VMA.
    pub fn skip_reason(&self) -> Option<&'static str> {
        let special = [
            "[vvar]",
            "[vvar_vclock]",
            "[vdso]",
            "[vsyscall]",
            "[uprobes]",
        ];
        if special.contains(&self.path.as_str()) {
            return Some("kernel-provided special mapping");
        }
        if self.perms.as_bytes().get(3) == Some(&b's') {
            return Some("shared mapping (shmem/file: not modelled by import yet)");
        }
        if self.inode != 0 || (!self.path.is_empty() && !self.path.starts_with('[')) {
            return Some("file-backed mapping (not modelled by import yet)");
        }
        if self.path.starts_with("[anon_shmem:") {
            return Some("shared anonymous mapping (shmem: not modelled by import yet)");
        }
        None
    }

    fn prot(&self) -> String {
        let p: String = self.perms.chars().take(3).filter(|c| *c != '-').collect();
        if p.is_empty() {
            "none".into()
        } else {
            p
        }
    }
}

/// A size as the scenario language writes it (`2M`, `64K`, or bytes).
fn size(n: u64) -> String {
    thpsim_scenario::parse::fmt_size(n)
}

/// Offset as `0x…` (mapping offsets are easier to match against addresses in hex).
fn off(n: u64) -> String {
    format!("{n:#x}")
}

/// A contiguous run of imported VMAs, built as one mapping and split by the final
/// `madvise`/`mprotect` ops as the process's VMAs are.
struct Region<'a> {
    name: String,
    start: u64,
    end: u64,
    vmas: Vec<&'a LiveVma>,
    pages: PageMap,
}

/// Pages of `[a, b)` (region offsets in pages) of a run-length map, as `(first page, backing,
/// count)` runs.
fn runs(map: &PageMap) -> Vec<(u64, Backing, u64)> {
    let mut at = 0;
    map.iter()
        .map(|&(b, n)| {
            let r = (at, b, n);
            at += n;
            r
        })
        .collect()
}

fn slice(map: &PageMap, from: u64, to: u64) -> PageMap {
    let mut out = PageMap::new();
    for (s, b, n) in runs(map) {
        let (a, e) = (s.max(from), (s + n).min(to));
        if a < e {
            pagemap_push(&mut out, b, e - a);
        }
    }
    out
}

/// mTHP writes per order: (region byte offset, length, stride).
type MthpWrites = BTreeMap<u8, Vec<(u64, u64, u64)>>;

/// The ops that rebuild one region's pages, by phase.
#[derive(Default)]
struct Plan {
    /// Phase 1, per mTHP order: writes (region byte offset, length, stride).
    mthp: MthpWrites,
    /// Phase 2: PMD THP writes, huge zero reads, order-9 PTE slots (region byte offsets).
    pmd: Vec<u64>,
    huge_zero: Vec<u64>,
    pte9: Vec<u64>,
    /// Phase 2, after the order-9 slots are split: mTHP writes inside those slots.
    mthp2: MthpWrites,
    /// Phase 2: the pages of order-9 slots that are not order 9, dropped after the split.
    drop9: Vec<(u64, u64)>,
    /// Phase 1 and 2: pages of mTHP blocks the process does not map, dropped after the
    /// folios are made.
    trim1: Vec<(u64, u64)>,
    trim2: Vec<(u64, u64)>,
    /// Small pages, per phase: reads (zero page) and writes (order 0).
    zero1: Vec<(u64, u64)>,
    anon1: Vec<(u64, u64)>,
    zero2: Vec<(u64, u64)>,
    anon2: Vec<(u64, u64)>,
    /// Pages the model cannot rebuild (swap entries, uffd-wp markers, odd layouts).
    notes: Vec<String>,
}

fn push_range(v: &mut Vec<(u64, u64)>, a: u64, len: u64) {
    if let Some(last) = v.last_mut() {
        if last.0 + last.1 == a {
            last.1 += len;
            return;
        }
    }
    v.push((a, len));
}

fn push_strided(v: &mut Vec<(u64, u64, u64)>, a: u64, len: u64, stride: u64) {
    if let Some(last) = v.last_mut() {
        if last.0 + last.1 == a && last.2 == stride {
            last.1 += len;
            return;
        }
    }
    v.push((a, len, stride));
}

impl Plan {
    /// Plans a PTE-level part of a region: `map` covers region pages `[first, first+len)`;
    /// `base` is the region's address (folio alignment is in virtual addresses);
    /// `phase2` selects the op lists of the order-9 slots.
    fn pte_level(&mut self, base: u64, first: u64, map: &PageMap, region_pages: u64, phase2: bool) {
        let mut small: Vec<(u64, Backing, u64)> = Vec::new();
        // Folio blocks (first region page, order) and the pages of each the process maps.
        let mut blocks: BTreeMap<(u64, u8), Vec<(u64, u64)>> = BTreeMap::new();
        for (s, b, n) in runs(map) {
            let s = s + first;
            match b {
                Backing::ThpPte { order } if order < 9 => {
                    let fp = 1u64 << order;
                    // Split the run at folio boundaries (virtual alignment, as a fault makes
                    // them); a block the run covers partly is made whole and trimmed.
                    let mut p = s;
                    while p < s + n {
                        let into = (base / PAGE + p) % fp;
                        let e = (s + n).min(p - into + fp);
                        if p < into || p - into + fp > region_pages {
                            self.notes.push(format!(
                                "order-{order} folio pages at region page {p} outside an aligned block of the mapping: rebuilt as order 0"
                            ));
                            small.push((p, Backing::Anon, e - p));
                        } else {
                            blocks.entry((p - into, order)).or_default().push((p, e));
                        }
                        p = e;
                    }
                }
                _ => small.push((s, b, n)),
            }
        }
        for ((block, order), pieces) in blocks {
            let fp = 1u64 << order;
            let list = if phase2 {
                self.mthp2.entry(order).or_default()
            } else {
                self.mthp.entry(order).or_default()
            };
            push_strided(list, block * PAGE, fp * PAGE, fp * PAGE);
            let trim = if phase2 {
                &mut self.trim2
            } else {
                &mut self.trim1
            };
            let mut cur = block;
            for (a, e) in pieces {
                if a > cur {
                    push_range(trim, cur * PAGE, (a - cur) * PAGE);
                }
                cur = e;
            }
            if cur < block + fp {
                push_range(trim, cur * PAGE, (block + fp - cur) * PAGE);
            }
        }
        for (s, b, n) in small {
            let (zero, anon) = if phase2 {
                (&mut self.zero2, &mut self.anon2)
            } else {
                (&mut self.zero1, &mut self.anon1)
            };
            match b {
                Backing::None | Backing::Hugetlb => {}
                Backing::Zero => push_range(zero, s * PAGE, n * PAGE),
                Backing::Anon => push_range(anon, s * PAGE, n * PAGE),
                Backing::ThpPte { order } => {
                    // Order 9 outside a whole slot of the mapping (a moved or odd layout).
                    self.notes.push(format!(
                        "{n} pages of an order-{order} folio at region page {s} outside a whole 2 MiB slot: rebuilt as order 0"
                    ));
                    push_range(anon, s * PAGE, n * PAGE);
                }
                Backing::ThpPmd | Backing::HugeZero => {
                    self.notes.push(format!(
                        "{n} PMD-mapped pages at region page {s} outside a whole slot: rebuilt as order 0"
                    ));
                    push_range(anon, s * PAGE, n * PAGE);
                }
                Backing::Swap => self.notes.push(format!(
                    "{n} swapped-out pages at region page {s}: swap is not modelled, left unmapped"
                )),
                Backing::Shmem
                | Backing::ShmemPte { .. }
                | Backing::ShmemPmd
                | Backing::Gmem
                | Backing::File
                | Backing::FilePte { .. }
                | Backing::FilePmd => {
                    self.notes.push(format!(
                        "{n} page-cache pages at region page {s}: file memory is not imported, left unmapped"
                    ));
                }
                Backing::Marker => self.notes.push(format!(
                    "{n} uffd-wp markers at region page {s}: userfaultfd state is not imported, left unmapped"
                )),
            }
        }
    }

    fn region(r: &Region<'_>) -> Plan {
        let mut plan = Plan::default();
        let npages = (r.end - r.start) / PAGE;
        // Walk the region slot by slot (2 MiB slots of the address space).
        let mut p = 0;
        while p < npages {
            let abs = r.start / PAGE + p;
            let whole = abs % PMD_PAGES == 0 && p + PMD_PAGES <= npages;
            let end = (p + PMD_PAGES - abs % PMD_PAGES).min(npages);
            let m = slice(&r.pages, p, end);
            let only = |b: Backing| m.len() == 1 && m[0].0 == b;
            let has9 = m.iter().any(|(b, _)| *b == Backing::ThpPte { order: 9 });
            if whole && only(Backing::ThpPmd) {
                plan.pmd.push(p * PAGE);
            } else if whole && only(Backing::HugeZero) {
                plan.huge_zero.push(p * PAGE);
            } else if whole && has9 {
                plan.pte9.push(p * PAGE);
                // The slot is made a whole order-9 folio, split, and what is not order 9 is
                // dropped and remade.
                let mut rest = PageMap::new();
                for (s, b, n) in runs(&m) {
                    if b == (Backing::ThpPte { order: 9 }) {
                        pagemap_push(&mut rest, Backing::None, n);
                    } else {
                        push_range(&mut plan.drop9, (p + s) * PAGE, n * PAGE);
                        pagemap_push(&mut rest, b, n);
                    }
                }
                plan.pte_level(r.start, p, &rest, npages, true);
            } else {
                plan.pte_level(r.start, p, &m, npages, false);
            }
            p = end;
        }
        plan
    }
}

fn strided_ops(out: &mut String, name: &str, op: &str, list: &[(u64, u64, u64)]) {
    for &(a, len, stride) in list {
        if len == stride {
            let _ = writeln!(out, "{op} {name}+{}", off(a));
        } else {
            let _ = writeln!(
                out,
                "{op} {name}+{} {} stride={}",
                off(a),
                size(len),
                size(stride)
            );
        }
    }
}

fn dontneed_ops(out: &mut String, name: &str, list: &[(u64, u64)]) {
    for &(a, len) in list {
        let _ = writeln!(out, "madvise {name}+{} {} DONTNEED", off(a), size(len));
    }
}

/// One byte per page of each range (`read`: zero pages, `write`: order-0 pages).
fn touch_ops(out: &mut String, name: &str, op: &str, list: &[(u64, u64)]) {
    for &(a, len) in list {
        if len == PAGE {
            let _ = writeln!(out, "{op} {name}+{}", off(a));
        } else {
            let _ = writeln!(out, "{op} {name}+{} {} stride=4K", off(a), size(len));
        }
    }
}

fn mthp_ops(out: &mut String, regions: &[(String, &MthpWrites)]) {
    let mut orders: Vec<u8> = regions
        .iter()
        .flat_map(|(_, m)| m.keys().copied())
        .collect();
    orders.sort_unstable();
    orders.dedup();
    for o in orders.into_iter().rev() {
        let kb = 4u64 << o;
        let _ = writeln!(out, "sysfs hugepages-{kb}kB.enabled=always");
        for (name, m) in regions {
            if let Some(list) = m.get(&o) {
                strided_ops(out, name, "write", list);
            }
        }
        let _ = writeln!(out, "sysfs hugepages-{kb}kB.enabled=never");
    }
}

/// Knobs the construction steps control (they get the host's values at the end).
fn construction_knob(name: &str) -> bool {
    name == "enabled"
        || name == "use_zero_page"
        || name == "anon_beside_full"
        || (name.starts_with("hugepages-") && name.ends_with(".enabled"))
}

fn mapping_name(v: &LiveVma, used: &mut Vec<String>) -> String {
    let base = match v.path.as_str() {
        "[heap]" => "heap".to_string(),
        "[stack]" => "stack".to_string(),
        _ => format!("m{:x}", v.start),
    };
    let mut name = base.clone();
    let mut i = 2;
    while used.contains(&name) {
        name = format!("{base}_{i}");
        i += 1;
    }
    used.push(name.clone());
    name
}

/// The scenario text that rebuilds `live`.
pub fn scenario(live: &Live) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Imported by `thpsim import --pid {}` ({}): the process's anonymous private memory.",
        live.pid, live.comm
    );
    let _ = writeln!(
        out,
        "# Each page is rebuilt by the fault that makes it (docs/import.md); the final"
    );
    let _ = writeln!(
        out,
        "# checkpoint `imported` is the process's state, and the expects below check it."
    );
    let _ = writeln!(out, "kernel {}", live.profile);
    let _ = writeln!(out, "memory {}", size(live.memory));
    // Construction knobs: PMD-sized THP and every mTHP size off, the zero pages usable;
    // the host's other knobs as they are.
    let mut setup: Vec<String> = vec![
        "enabled=never".into(),
        "use_zero_page=1".into(),
        "anon_beside_full=0".into(),
    ];
    for (k, _) in &live.knobs {
        if k.starts_with("hugepages-") && k.ends_with(".enabled") {
            let v = if k == "hugepages-2048kB.enabled" {
                "inherit"
            } else {
                "never"
            };
            setup.push(format!("{k}={v}"));
        }
    }
    for (k, v) in &live.knobs {
        if !construction_knob(k) {
            setup.push(format!("{k}={v}"));
        }
    }
    let _ = writeln!(out, "sysfs {}", setup.join(" "));
    let _ = writeln!(out);

    // Regions: runs of adjacent imported VMAs.
    let mut used = Vec::new();
    let mut regions: Vec<Region<'_>> = Vec::new();
    // Skipped VMAs, one line per path (a library maps four or five).
    let mut skipped: Vec<(String, &'static str, usize, u64)> = Vec::new();
    for v in &live.vmas {
        if let Some(why) = v.skip_reason() {
            let what = if v.path.is_empty() {
                format!("{:x}-{:x} {}", v.start, v.end, v.perms)
            } else {
                v.path.clone()
            };
            match skipped.iter_mut().find(|s| s.0 == what) {
                Some(s) => {
                    s.2 += 1;
                    s.3 += v.end - v.start;
                }
                None => skipped.push((what, why, 1, v.end - v.start)),
            }
        }
    }
    for (what, why, n, bytes) in &skipped {
        let _ = writeln!(
            out,
            "# skipped {what} ({n} VMA{}, {}): {why}",
            if *n == 1 { "" } else { "s" },
            size(*bytes)
        );
    }
    for v in &live.vmas {
        if v.skip_reason().is_some() {
            continue;
        }
        match regions.last_mut() {
            Some(r) if r.end == v.start => {
                r.end = v.end;
                r.vmas.push(v);
                r.pages.extend(v.pages.iter().copied());
            }
            _ => regions.push(Region {
                name: mapping_name(v, &mut used),
                start: v.start,
                end: v.end,
                vmas: vec![v],
                pages: v.pages.clone(),
            }),
        }
    }
    // Normalise the concatenated maps (adjacent equal runs).
    for r in &mut regions {
        let mut m = PageMap::new();
        for &(b, n) in &r.pages {
            pagemap_push(&mut m, b, n);
        }
        r.pages = m;
    }
    let plans: Vec<Plan> = regions.iter().map(Plan::region).collect();

    let _ = writeln!(
        out,
        "\n# The mappings, at their addresses' offset in a 2 MiB slot."
    );
    for r in &regions {
        let paths: Vec<&str> = r
            .vmas
            .iter()
            .map(|v| v.path.as_str())
            .filter(|p| !p.is_empty())
            .collect();
        let _ = writeln!(
            out,
            "# {} = {:x}-{:x} ({} VMA{}{}{})",
            r.name,
            r.start,
            r.end,
            r.vmas.len(),
            if r.vmas.len() == 1 { "" } else { "s" },
            if paths.is_empty() { "" } else { ", " },
            paths.join(" ")
        );
        if r.vmas.iter().any(|v| v.has("gd")) {
            let _ = writeln!(
                out,
                "# ({}: a grows-down stack; modelled as a fixed-size mapping)",
                r.name
            );
        }
        // The live address, for `thpsim replay` of this process's traces.
        let _ = writeln!(out, "# origin {} {:#x}", r.name, r.start);
        let o = r.start % PMD;
        let _ = writeln!(
            out,
            "mmap {} {} anon private rw align=2M{}",
            r.name,
            size(r.end - r.start),
            if o == 0 {
                String::new()
            } else {
                format!(" offset={}", size(o))
            }
        );
    }
    for (r, p) in regions.iter().zip(&plans) {
        for n in &p.notes {
            let _ = writeln!(out, "# {}: {n}", r.name);
        }
    }

    let _ = writeln!(
        out,
        "\n# 1. PMD-sized THP off: mTHP folios, then zero pages and order-0 pages."
    );
    let m1: Vec<(String, &MthpWrites)> = regions
        .iter()
        .zip(&plans)
        .map(|(r, p)| (r.name.clone(), &p.mthp))
        .collect();
    mthp_ops(&mut out, &m1);
    for (r, p) in regions.iter().zip(&plans) {
        dontneed_ops(&mut out, &r.name, &p.trim1);
        touch_ops(&mut out, &r.name, "read", &p.zero1);
        touch_ops(&mut out, &r.name, "write", &p.anon1);
    }

    let need2 = plans
        .iter()
        .any(|p| !p.pmd.is_empty() || !p.huge_zero.is_empty() || !p.pte9.is_empty());
    if need2 {
        let _ = writeln!(
            out,
            "\n# 2. PMD-sized THP on: PMD THPs, huge zero PMDs, PTE-mapped order-9 folios."
        );
        let _ = writeln!(out, "sysfs enabled=always");
        for (r, p) in regions.iter().zip(&plans) {
            for &a in &p.pmd {
                let _ = writeln!(out, "write {}+{}", r.name, off(a));
            }
            for &a in &p.huge_zero {
                let _ = writeln!(out, "read {}+{}", r.name, off(a));
            }
            for &a in &p.pte9 {
                let _ = writeln!(out, "write {}+{}", r.name, off(a));
                let _ = writeln!(out, "mprotect {}+{} 4K r", r.name, off(a));
                let _ = writeln!(out, "mprotect {}+{} 4K rw", r.name, off(a));
            }
        }
        let m2: Vec<(String, &MthpWrites)> = regions
            .iter()
            .zip(&plans)
            .map(|(r, p)| (r.name.clone(), &p.mthp2))
            .collect();
        for (r, p) in regions.iter().zip(&plans) {
            dontneed_ops(&mut out, &r.name, &p.drop9);
        }
        mthp_ops(&mut out, &m2);
        for (r, p) in regions.iter().zip(&plans) {
            dontneed_ops(&mut out, &r.name, &p.trim2);
            touch_ops(&mut out, &r.name, "read", &p.zero2);
            touch_ops(&mut out, &r.name, "write", &p.anon2);
        }
    }

    let _ = writeln!(out, "\n# 3. The VMAs' state and the host's knobs.");
    for r in &regions {
        for v in &r.vmas {
            let at = v.start - r.start;
            let len = size(v.end - v.start);
            let whole = r.vmas.len() == 1;
            let range = if whole {
                r.name.clone()
            } else {
                format!("{}+{} {len}", r.name, off(at))
            };
            if v.has("hg") {
                let _ = writeln!(out, "madvise {range} HUGEPAGE");
            }
            if v.has("nh") {
                let _ = writeln!(out, "madvise {range} NOHUGEPAGE");
            }
            let prot = v.prot();
            if prot != "rw" {
                let _ = writeln!(out, "mprotect {range} {prot}");
            }
            if v.has("lo") {
                let _ = writeln!(out, "mlock {range}");
            }
            let unmodelled: Vec<&str> = v
                .flags
                .iter()
                .map(String::as_str)
                .filter(|f| matches!(*f, "dc" | "wf" | "dd" | "um" | "uw" | "mg" | "sd"))
                .collect();
            if !unmodelled.is_empty() {
                let _ = writeln!(
                    out,
                    "# {range}: VmFlags {} not imported",
                    unmodelled.join(" ")
                );
            }
        }
    }
    if !live.thp_enabled {
        let _ = writeln!(out, "prctl set_thp_disable 1");
    }
    let mut fin = Vec::new();
    for (k, v) in &live.knobs {
        if construction_knob(k) {
            fin.push(format!("{k}={v}"));
        }
    }
    if !fin.is_empty() {
        let _ = writeln!(out, "sysfs {}", fin.join(" "));
    }

    let _ = writeln!(out, "\ncheckpoint imported");
    for (r, p) in regions.iter().zip(&plans) {
        // The live process's counts; commented out where the notes say the model's
        // rebuild differs.
        let lead = if p.notes.is_empty() {
            ""
        } else {
            let _ = writeln!(
                out,
                "# {}: the live counts (the rebuild differs, see the notes above):",
                r.name
            );
            "# "
        };
        for class in ["thp_pmd", "thp_pte", "huge_zero", "zero", "anon"] {
            let _ = writeln!(
                out,
                "{lead}expect pages({}).{class} == {}",
                r.name,
                pagemap_count(&r.pages, class)
            );
        }
    }
    out
}

/// Parses `/proc/PID/smaps` into VMAs (pages left empty).
pub fn parse_smaps(text: &str) -> Vec<LiveVma> {
    let mut out: Vec<LiveVma> = Vec::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let first = it.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                let perms = it.next().unwrap_or("").to_string();
                let _offset = it.next();
                let _dev = it.next();
                let inode = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
                let path = it.collect::<Vec<_>>().join(" ");
                out.push(LiveVma {
                    start: a,
                    end: b,
                    perms,
                    inode,
                    path,
                    flags: Vec::new(),
                    pages: PageMap::new(),
                });
                continue;
            }
        }
        if let Some(rest) = line.strip_prefix("VmFlags:") {
            if let Some(v) = out.last_mut() {
                v.flags = rest.split_whitespace().map(str::to_string).collect();
            }
        }
    }
    out
}

/// A live process's memory as a scenario (root): `read_live` then `scenario`.
pub fn import_pid(pid: i32) -> Result<String, String> {
    read_live(pid).map(|l| scenario(&l))
}

/// Reads a live process (root: PFNs and `/proc/kpageflags` tell mTHP orders apart).
pub fn read_live(pid: i32) -> Result<Live, String> {
    let proc = format!("/proc/{pid}");
    let smaps = std::fs::read_to_string(format!("{proc}/smaps"))
        .map_err(|e| format!("{proc}/smaps: {e}"))?;
    let status = std::fs::read_to_string(format!("{proc}/status"))
        .map_err(|e| format!("{proc}/status: {e}"))?;
    let comm = std::fs::read_to_string(format!("{proc}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let thp_enabled = status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .is_none_or(|v| v.trim() != "0");
    let obs = crate::observe::Observer::new(pid).map_err(|e| {
        format!("cannot open {proc}/pagemap and /proc/kpageflags: {e} (import needs root)")
    })?;
    let mut vmas = parse_smaps(&smaps);
    for v in &mut vmas {
        if v.skip_reason().is_none() {
            v.pages = obs
                .pages(v.start, v.end)
                .map_err(|e| format!("{proc}/pagemap {:x}-{:x}: {e}", v.start, v.end))?;
        }
    }
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(thpsim_scenario::engine::DEFAULT_MEMORY, |kb| {
            (kb * 1024) & !((4 << 20) - 1)
        });
    Ok(Live {
        pid,
        comm,
        vmas,
        thp_enabled,
        knobs: crate::host_knobs(),
        profile: crate::host_kernel_profile(),
        memory,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use thpsim_scenario::engine::{self, Variant};
    use thpsim_scenario::sim::SimBackend;

    fn vma(start: u64, pages: PageMap, flags: &[&str], perms: &str) -> LiveVma {
        let n: u64 = pages.iter().map(|(_, n)| n).sum();
        LiveVma {
            start,
            end: start + n * PAGE,
            perms: perms.into(),
            inode: 0,
            path: String::new(),
            flags: flags.iter().map(|s| s.to_string()).collect(),
            pages,
        }
    }

    fn live(vmas: Vec<LiveVma>) -> Live {
        Live {
            pid: 1,
            comm: "test".into(),
            vmas,
            thp_enabled: true,
            knobs: vec![
                ("enabled".into(), "madvise".into()),
                ("hugepages-64kB.enabled".into(), "never".into()),
                ("hugepages-2048kB.enabled".into(), "inherit".into()),
            ],
            profile: "6.18".into(),
            memory: 1 << 30,
        }
    }

    /// Runs the generated scenario on the model: the page map of each mapping.
    fn rebuild(l: &Live) -> (String, Vec<Vec<(String, u64)>>) {
        let text = scenario(l);
        let scn = thpsim_scenario::parse("import", &text)
            .unwrap_or_else(|d| panic!("{}", thpsim_scenario::diag::render_all(&d, &text)));
        let res = engine::run(&scn, &mut SimBackend::new(), &Variant::default()).unwrap();
        assert!(!res.any_failed(), "{text}");
        let cp = res
            .checkpoints
            .iter()
            .find(|c| c.label == "imported")
            .unwrap();
        (text, cp.mappings.iter().map(|m| m.pages.clone()).collect())
    }

    fn labels(m: &PageMap) -> Vec<(String, u64)> {
        m.iter().map(|(b, n)| (b.label(), *n)).collect()
    }

    #[test]
    fn every_kind_of_page_is_rebuilt() {
        use Backing::*;
        let base = 0x7f00_0000_0000;
        let a = vma(
            base,
            vec![
                (ThpPmd, 512),
                (HugeZero, 512),
                (ThpPte { order: 9 }, 100),
                (Anon, 3),
                (None, 9),
                (ThpPte { order: 9 }, 400),
                (ThpPte { order: 4 }, 16),
                (None, 4),
                (ThpPte { order: 4 }, 12),
                (Zero, 2),
                (Anon, 30),
                (None, 448),
            ],
            &["rd", "wr", "hg"],
            "rw-p",
        );
        // Misaligned, split by flags: order 0, zero pages, a trimmed 16 KiB folio.
        let b1 = vma(
            base + 0x80_0000 + 0x3000,
            vec![(Anon, 5), (ThpPte { order: 2 }, 3), (Zero, 1), (None, 7)],
            &["rd", "wr", "nh"],
            "rw-p",
        );
        let b2 = vma(b1.end, vec![(Anon, 2), (None, 6)], &["rd"], "r--p");
        let l = live(vec![a.clone(), b1.clone(), b2.clone()]);
        let (text, maps) = rebuild(&l);
        assert_eq!(maps[0], labels(&a.pages), "{text}");
        let mut b = b1.pages.clone();
        b.extend(b2.pages.iter().copied());
        assert_eq!(maps[1], labels(&b), "{text}");
        assert!(
            text.contains("madvise m7f0000803000+0x0 64K NOHUGEPAGE"),
            "{text}"
        );
        assert!(
            text.contains("mprotect m7f0000803000+0x10000 32K r"),
            "{text}"
        );
    }

    #[test]
    fn misaligned_folio_pages_fall_back_to_order_zero_with_a_note() {
        // A 64 KiB folio's pages at the mapping's first page, which is not 64 KiB aligned
        // and whose block starts before the mapping (as after an mremap).
        let v = vma(
            0x7f00_0000_1000,
            vec![(Backing::ThpPte { order: 4 }, 15), (Backing::None, 1)],
            &["rd", "wr"],
            "rw-p",
        );
        let (text, maps) = rebuild(&live(vec![v]));
        assert!(text.contains("rebuilt as order 0"), "{text}");
        assert_eq!(maps[0], vec![("anon".into(), 15), ("none".into(), 1)]);
    }

    #[test]
    fn smaps_vmas_and_flags() {
        let t = "\
7f0000000000-7f0000200000 rw-p 00000000 00:00 0 
Size:               2048 kB
VmFlags: rd wr mr mw me ac hg
7f0000200000-7f0000201000 r--p 00001000 fe:00 1234   /usr/lib/libx.so
VmFlags: rd mr mw me
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
VmFlags: rd wr mr mw me gd ac
";
        let v = parse_smaps(t);
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].flags.last().map(String::as_str), Some("hg"));
        assert_eq!(v[0].skip_reason(), Option::None);
        assert_eq!((v[1].inode, v[1].path.as_str()), (1234, "/usr/lib/libx.so"));
        assert!(v[1].skip_reason().is_some());
        assert_eq!(v[2].path, "[stack]");
        assert!(v[2].has("gd") && v[2].skip_reason().is_none());
    }
}
