//! `thpsim replay TRACE --on FILE`: runs a scenario on the model, then replays a trace of
//! memory accesses and mmap/munmap/madvise/mprotect events on the state it left, on the
//! trace's clock (khugepaged runs as time passes), and reports faults, THP coverage over
//! time and khugepaged activity. Formats (docs/replay.md): CSV, a compact binary one, and
//! `perf script` text of `perf mem record` samples.
//!
//! Speed: an access to a page the model has already mapped with the needed permission is a
//! hit in the hardware's TLB or page tables and costs the kernel nothing, so the replay keeps
//! a small direct-mapped table of such pages and only hands misses to the model. Every event
//! and every step of the clock (when daemons may run) empties the table, so a hit never hides
//! a change of the model's state.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use thpsim_kernel::errno::OpError;
use thpsim_kernel::observe::Backing;
use thpsim_kernel::types::{Advice, Prot};
use thpsim_scenario::ast::Pattern;
use thpsim_scenario::backend::{Backend, BackendError, BackendOp};
use thpsim_scenario::engine::{self, Variant};
use thpsim_scenario::sim::SimBackend;
use thpsim_scenario::Scenario;

/// First 8 bytes of a binary trace (then a u64 of flags, 0).
pub const MAGIC: &[u8; 8] = b"THPTRC01";
const HEADER: usize = 16;

// Record kinds (bits 48..52 of a record word; docs/replay.md).
pub const READ: u64 = 0;
pub const WRITE: u64 = 1;
pub const MMAP: u64 = 2;
pub const MUNMAP: u64 = 3;
pub const MADVISE: u64 = 4;
pub const MPROTECT: u64 = 5;
/// Sets the clock: the low 48 bits are the time in ms (never decreasing).
pub const TIME: u64 = 6;
/// Sets the pid of the records that follow.
pub const PID: u64 = 7;

const ADDR_BITS: u32 = 48;
const ADDR_MASK: u64 = (1 << ADDR_BITS) - 1;
const SIZE_SHIFT: u32 = 52;
/// Largest access one record describes (a larger one is several records).
pub const MAX_ACCESS: u64 = 4096;

const PAGE: u64 = 4096;
const PMD: u64 = 2 << 20;
/// Arena space after the scenario's layout for the trace's own mmaps.
const TRACE_ARENA: u64 = 1 << 40;
/// Entries of the replay's page cache (a power of two: 256 MiB of pages, 512 KiB).
const TLB: usize = 1 << 16;
/// An entry is `gen << GEN_SHIFT | (vpn + 1) << 1 | writable`: emptying the cache is a new
/// generation (virtual page numbers of 47-bit addresses take 35 bits).
const GEN_SHIFT: u32 = 40;
const GEN_MAX: u64 = (1 << (64 - GEN_SHIFT)) - 1;

/// One record word: `value | kind << 48 | (size - 1) << 52` (the size for accesses only).
/// Events other than accesses are followed by two words, the length and the argument.
pub type Rec = u64;

/// An access record (`size` 1..=4096 bytes).
pub fn access(kind: u64, addr: u64, size: u64) -> Rec {
    (addr & ADDR_MASK) | kind << ADDR_BITS | (size.clamp(1, MAX_ACCESS) - 1) << SIZE_SHIFT
}

fn kind_of(w: Rec) -> u64 {
    (w >> ADDR_BITS) & 0xf
}

/// Builds a record stream, writing TIME and PID records when they change.
#[derive(Default)]
pub struct TraceWriter {
    pub recs: Vec<Rec>,
    time: Option<u64>,
    pid: Option<u64>,
}

impl TraceWriter {
    fn at(&mut self, time_ms: u64, pid: u64) {
        if self.time != Some(time_ms) {
            self.recs.push((time_ms & ADDR_MASK) | TIME << ADDR_BITS);
            self.time = Some(time_ms);
        }
        if self.pid != Some(pid) {
            self.recs.push((pid & ADDR_MASK) | PID << ADDR_BITS);
            self.pid = Some(pid);
        }
    }
    /// An access of `size` bytes (split into records of at most 4096 bytes).
    pub fn access(&mut self, time_ms: u64, pid: u64, kind: u64, addr: u64, size: u64) {
        self.at(time_ms, pid);
        let mut a = addr;
        let end = addr + size.max(1);
        while a < end {
            let n = (end - a).min(MAX_ACCESS);
            self.recs.push(access(kind, a, n));
            a += n;
        }
    }
    pub fn event(&mut self, time_ms: u64, pid: u64, kind: u64, addr: u64, len: u64, arg: u64) {
        self.at(time_ms, pid);
        self.recs.push((addr & ADDR_MASK) | kind << ADDR_BITS);
        self.recs.push(len);
        self.recs.push(arg);
    }
}

/// The binary form of records.
pub fn to_binary(recs: &[Rec]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + recs.len() * 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&0u64.to_le_bytes());
    for r in recs {
        out.extend_from_slice(&r.to_le_bytes());
    }
    out
}

/// Decodes a binary trace, checking the header, the record kinds and that time never goes
/// back; errors name the record.
pub fn from_binary(name: &str, bytes: &[u8]) -> Result<Vec<Rec>, String> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err(format!(
            "{name}: not a thpsim binary trace (no THPTRC01 header)"
        ));
    }
    let body = &bytes[HEADER..];
    if body.len() % 8 != 0 {
        return Err(format!(
            "{name}: {} bytes after the header, not a whole number of 8-byte records",
            body.len()
        ));
    }
    let recs: Vec<Rec> = body
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    check(name, &recs)?;
    Ok(recs)
}

/// Checks kinds, the two words after each event and the clock.
fn check(name: &str, recs: &[Rec]) -> Result<(), String> {
    let mut i = 0;
    let mut t = 0;
    while i < recs.len() {
        let w = recs[i];
        match kind_of(w) {
            READ | WRITE | PID => i += 1,
            TIME => {
                if w & ADDR_MASK < t {
                    return Err(format!(
                        "{name}: record {i}: time {} ms is before the previous time {t} ms",
                        w & ADDR_MASK
                    ));
                }
                t = w & ADDR_MASK;
                i += 1;
            }
            MMAP | MUNMAP | MADVISE | MPROTECT => {
                if i + 2 >= recs.len() {
                    return Err(format!(
                        "{name}: record {i}: event without its length and argument words"
                    ));
                }
                i += 3;
            }
            k => return Err(format!("{name}: record {i}: unknown kind {k}")),
        }
    }
    Ok(())
}

fn prot_bits(p: Prot) -> u64 {
    u64::from(p.read) | u64::from(p.write) << 1 | u64::from(p.exec) << 2
}
fn prot_of(bits: u64) -> Prot {
    Prot {
        read: bits & 1 != 0,
        write: bits & 2 != 0,
        exec: bits & 4 != 0,
    }
}

/// Parses the CSV form: `time_ms,pid,op,addr,size[,arg]` per line (`#` comments, an optional
/// header line starting with `time`). `addr` is a number or `NAME+OFF` of a mapping of the
/// scenario (`resolve` gives its trace address).
pub fn from_csv(
    name: &str,
    text: &str,
    resolve: &dyn Fn(&str) -> Option<u64>,
) -> Result<Vec<Rec>, String> {
    let mut w = TraceWriter::default();
    let mut last_t = 0;
    for (ln, line) in text.lines().enumerate() {
        let ln = ln + 1;
        let body = line.split('#').next().unwrap_or("");
        if body.trim().is_empty() || (w.recs.is_empty() && body.trim_start().starts_with("time")) {
            continue;
        }
        // Column of each field, for messages.
        let mut fields: Vec<(usize, &str)> = Vec::new();
        let mut col = 1;
        for f in body.split(',') {
            let lead = f.len() - f.trim_start().len();
            fields.push((col + lead, f.trim()));
            col += f.len() + 1;
        }
        let at = |i: usize| fields.get(i).map_or(col, |f| f.0);
        let bad = |i: usize, what: String| format!("{name}:{ln}:{}: {what}", at(i));
        if fields.len() < 5 {
            return Err(bad(
                fields.len(),
                format!(
                    "expected time_ms,pid,op,addr,size[,arg]; found {} field(s)",
                    fields.len()
                ),
            ));
        }
        let time = fields[0]
            .1
            .parse::<f64>()
            .ok()
            .filter(|t| *t >= 0.0 && *t < 4.0e9)
            .ok_or_else(|| bad(0, format!("`{}` is not a time in ms", fields[0].1)))?;
        let pid = thpsim_scenario::parse::parse_uint(fields[1].1)
            .ok_or_else(|| bad(1, format!("`{}` is not a pid", fields[1].1)))?;
        let kind = match fields[2].1 {
            "r" | "read" => READ,
            "w" | "write" => WRITE,
            "mmap" => MMAP,
            "munmap" => MUNMAP,
            "madvise" => MADVISE,
            "mprotect" => MPROTECT,
            "mark" => TIME,
            o => {
                return Err(bad(
                    2,
                    format!("unknown op `{o}` (r, w, mmap, munmap, madvise, mprotect, mark)"),
                ))
            }
        };
        let a = fields[3].1;
        let addr = match a.split_once('+') {
            Some((n, off))
                if n.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_') =>
            {
                let base = resolve(n)
                    .ok_or_else(|| bad(3, format!("no mapping `{n}` in the scenario")))?;
                base + thpsim_scenario::parse::parse_size(off)
                    .map_err(|e| bad(3, format!("offset `{off}`: {e}")))?
            }
            _ => thpsim_scenario::parse::parse_uint(a)
                .ok_or_else(|| bad(3, format!("`{a}` is not an address (number or NAME+OFF)")))?,
        };
        let size = thpsim_scenario::parse::parse_size(fields[4].1)
            .map_err(|e| bad(4, format!("size `{}`: {e}", fields[4].1)))?;
        let arg = fields.get(5).map(|f| f.1);
        // Milliseconds; the fraction is dropped (the model's clock counts ms).
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let t = time as u64;
        if t < last_t {
            return Err(bad(
                0,
                format!("time {t} ms is before the previous line's {last_t} ms"),
            ));
        }
        last_t = t;
        match kind {
            READ | WRITE => {
                if size == 0 {
                    return Err(bad(4, "an access of 0 bytes".into()));
                }
                w.access(t, pid, kind, addr, size);
            }
            TIME => w.at(t, pid),
            _ => {
                let argv = match kind {
                    MADVISE => {
                        let s = arg.ok_or_else(|| bad(5, "madvise needs the advice".into()))?;
                        let adv = Advice::parse(s)
                            .ok_or_else(|| bad(5, format!("unknown advice `{s}`")))?;
                        advice_word(adv)
                    }
                    MMAP | MPROTECT => {
                        let s = arg.unwrap_or("rw");
                        prot_bits(
                            Prot::parse(s)
                                .ok_or_else(|| bad(5, format!("`{s}` is not a protection")))?,
                        )
                    }
                    _ => 0,
                };
                w.event(t, pid, kind, addr, size, argv);
            }
        }
    }
    check(name, &w.recs)?;
    Ok(w.recs)
}

/// The `MADV_*` number as a record word (two's complement: the model-only advice is −1).
fn advice_word(a: Advice) -> u64 {
    u64::from_le_bytes(i64::from(a.value()).to_le_bytes())
}

fn advice_of(w: u64) -> Option<Advice> {
    let v = i64::from_le_bytes(w.to_le_bytes());
    Advice::ALL
        .iter()
        .find(|(_, _, n)| i64::from(*n) == v)
        .map(|(_, a, _)| *a)
}

/// Parses `perf script -F pid,time,event,addr` output of `perf mem record` (loads are
/// reads, stores writes). Lines look like `  4242 12345.678901: cpu/mem-loads,ldlat=30/P:
/// 7f12a3c04010`; samples without an address are skipped; time is relative to the first.
pub fn from_perf_script(name: &str, text: &str) -> Result<Vec<Rec>, String> {
    let mut w = TraceWriter::default();
    let mut t0: Option<f64> = None;
    for (ln, line) in text.lines().enumerate() {
        let toks: Vec<&str> = line.split_whitespace().collect();
        if toks.is_empty() || toks[0].starts_with('#') {
            continue;
        }
        let Some(ti) = toks.iter().position(|t| {
            t.ends_with(':') && t.contains('.') && t[..t.len() - 1].parse::<f64>().is_ok()
        }) else {
            return Err(format!(
                "{name}:{}:1: no `SECONDS.MICROS:` time field (use perf script -F pid,time,event,addr)",
                ln + 1
            ));
        };
        let secs: f64 = toks[ti][..toks[ti].len() - 1].parse().unwrap_or(0.0);
        let pid = toks[..ti]
            .iter()
            .rev()
            .find_map(|t| t.parse::<u64>().ok())
            .unwrap_or(0);
        let rest = &toks[ti + 1..];
        let write = rest.iter().any(|t| t.contains("store"));
        let read = rest.iter().any(|t| t.contains("load"));
        if !write && !read {
            continue;
        }
        let Some(addr) = rest
            .iter()
            .rev()
            .find_map(|t| u64::from_str_radix(t.trim_start_matches("0x"), 16).ok())
        else {
            continue;
        };
        if addr == 0 {
            continue;
        }
        let t0 = *t0.get_or_insert(secs);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let ms = ((secs - t0).max(0.0) * 1000.0) as u64;
        w.access(ms, pid, if write { WRITE } else { READ }, addr, 1);
    }
    check(name, &w.recs)?;
    Ok(w.recs)
}

/// A mapping known to the replay: trace addresses `[origin, origin+len)` are arena offsets
/// `[arena, arena+len)`.
#[derive(Clone, Copy, Debug)]
struct Region {
    origin: u64,
    len: u64,
    arena: u64,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Stats {
    pub records: u64,
    pub accesses: u64,
    /// Pages touched (an access may cross a page boundary).
    pub page_touches: u64,
    /// Touches the replay's table answered (pages already mapped with the permission).
    pub cached: u64,
    pub minflt: u64,
    pub majflt: u64,
    /// Accesses that raised a signal (outside every mapping, or refused by the model).
    pub signals: u64,
    pub events: u64,
    /// Events the model refused, with the errno.
    pub failed_events: u64,
    pub trace_ms: u64,
}

/// THP coverage and khugepaged activity at one point of the trace's clock.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Sample {
    pub t_ms: u64,
    /// Cumulative minor faults since the replay started.
    pub minflt: u64,
    pub resident_kb: u64,
    /// Anonymous memory mapped (zero pages and the huge zero page are not counted).
    /// (`resident_kb` above.) Pages of large folios, PMD- or PTE-mapped:
    pub thp_kb: u64,
    pub pmd_mapped_kb: u64,
    /// `thp_kb / resident_kb` in percent.
    pub coverage_pct: f64,
    /// Cumulative since the replay started.
    pub pages_collapsed: i64,
    pub full_scans: i64,
    pub thp_collapse_alloc: i64,
}

pub struct Replayer<'a> {
    be: &'a mut SimBackend,
    regions: Vec<Region>,
    tlb: Box<[u64; TLB]>,
    /// The current generation, pre-shifted (`gen << GEN_SHIFT`).
    gen: u64,
    now_ms: u64,
    next_arena: u64,
    arena_end: u64,
    pid: Option<u64>,
    interval_ms: u64,
    next_sample: u64,
    base: BTreeMap<String, i64>,
    pub stats: Stats,
    pub samples: Vec<Sample>,
}

/// Samples a replay keeps at most (further interval boundaries are not sampled).
const MAX_SAMPLES: usize = 100_000;

impl<'a> Replayer<'a> {
    /// `mappings`: (trace origin, arena offset, length) of the scenario's mappings;
    /// `arena_len`: the arena the backend was set up with (the trace's mmaps go after
    /// `layout_end`).
    pub fn new(
        be: &'a mut SimBackend,
        mappings: &[(u64, u64, u64)],
        layout_end: u64,
        arena_len: u64,
        interval_ms: u64,
    ) -> Result<Self, String> {
        let mut regions: Vec<Region> = mappings
            .iter()
            .map(|&(origin, arena, len)| Region { origin, len, arena })
            .collect();
        regions.sort_by_key(|r| r.origin);
        for w in regions.windows(2) {
            if w[0].origin + w[0].len > w[1].origin {
                return Err(format!(
                    "mappings at trace addresses {:#x} and {:#x} overlap",
                    w[0].origin, w[1].origin
                ));
            }
        }
        let mut r = Replayer {
            be,
            regions,
            tlb: vec![0; TLB]
                .into_boxed_slice()
                .try_into()
                .expect("TLB entries"),
            gen: 1 << GEN_SHIFT,
            now_ms: 0,
            next_arena: layout_end,
            arena_end: arena_len,
            pid: None,
            interval_ms,
            next_sample: interval_ms,
            base: BTreeMap::new(),
            stats: Stats::default(),
            samples: Vec::new(),
        };
        r.base = r.be.snapshot(&[]).map_err(|e| e.message())?.counters;
        Ok(r)
    }

    fn region(&self, addr: u64) -> Option<Region> {
        let i = self.regions.partition_point(|r| r.origin <= addr);
        let r = *self.regions.get(i.checked_sub(1)?)?;
        (addr < r.origin + r.len).then_some(r)
    }

    fn exec(&mut self, op: &BackendOp) -> Result<Result<u64, OpError>, String> {
        let o = self.be.exec(op).map_err(|e| e.message())?;
        self.stats.minflt += o.minflt;
        self.stats.majflt += o.majflt;
        Ok(o.result)
    }

    fn flush(&mut self) {
        if self.gen >> GEN_SHIFT == GEN_MAX {
            self.tlb.fill(0);
            self.gen = 0;
        }
        self.gen += 1 << GEN_SHIFT;
    }

    fn sleep_to(&mut self, t: u64) -> Result<(), String> {
        while self.interval_ms > 0 && self.next_sample <= t {
            let s = self.next_sample;
            self.sleep(s)?;
            self.sample()?;
            self.next_sample += self.interval_ms;
            if self.samples.len() >= MAX_SAMPLES {
                self.interval_ms = 0;
            }
        }
        self.sleep(t)
    }

    fn sleep(&mut self, t: u64) -> Result<(), String> {
        if t > self.now_ms {
            let _always_ok = self.exec(&BackendOp::Sleep {
                ms: t - self.now_ms,
            })?;
            self.now_ms = t;
            // Daemons may have run.
            self.flush();
        }
        Ok(())
    }

    fn sample(&mut self) -> Result<(), String> {
        let ranges: Vec<(u64, u64)> = self.regions.iter().map(|r| (r.arena, r.len)).collect();
        let snap = self.be.snapshot(&ranges).map_err(|e| e.message())?;
        let mut s = Sample {
            t_ms: self.now_ms,
            minflt: self.stats.minflt,
            ..Sample::default()
        };
        for m in &snap.mappings {
            for &(b, n) in &m.pages {
                let kb = n * 4;
                match b {
                    // Not the process's memory: nothing, the shared zero pages.
                    Backing::None
                    | Backing::Marker
                    | Backing::Swap
                    | Backing::Zero
                    | Backing::HugeZero => {}
                    // hugetlb pages are resident but no THP (and not in smaps Rss).
                    Backing::Anon
                    | Backing::Shmem
                    | Backing::Gmem
                    | Backing::Hugetlb
                    | Backing::File => s.resident_kb += kb,
                    Backing::ThpPmd | Backing::ShmemPmd | Backing::FilePmd => {
                        s.resident_kb += kb;
                        s.thp_kb += kb;
                        s.pmd_mapped_kb += kb;
                    }
                    Backing::ThpPte { .. } | Backing::ShmemPte { .. } | Backing::FilePte { .. } => {
                        s.resident_kb += kb;
                        s.thp_kb += kb;
                    }
                }
            }
        }
        #[allow(clippy::cast_precision_loss)]
        if s.resident_kb > 0 {
            s.coverage_pct = s.thp_kb as f64 * 100.0 / s.resident_kb as f64;
        }
        let d = |k: &str| {
            snap.counters.get(k).copied().unwrap_or(0) - self.base.get(k).copied().unwrap_or(0)
        };
        s.pages_collapsed = d("khugepaged.pages_collapsed");
        s.full_scans = d("khugepaged.full_scans");
        s.thp_collapse_alloc = d("vmstat.thp_collapse_alloc");
        self.samples.push(s);
        Ok(())
    }

    /// A touch the table did not answer: the model's access, then the table remembers the
    /// page (writable only after a write).
    #[inline(never)]
    fn miss(&mut self, vpn: u64, write: u64) -> Result<(), String> {
        let addr = vpn * PAGE;
        let Some(r) = self.region(addr) else {
            self.stats.signals += 1;
            return Ok(());
        };
        let res = self.exec(&BackendOp::Access {
            addr: r.arena + (addr - r.origin),
            len: 1,
            stride: PAGE,
            pattern: if write == 1 {
                Pattern::Write
            } else {
                Pattern::Read
            },
            subset: None,
        })?;
        if res.is_ok() {
            self.tlb[(vpn as usize) & (TLB - 1)] = self.gen | (vpn + 1) << 1 | write;
        } else {
            self.stats.signals += 1;
        }
        Ok(())
    }

    fn event(&mut self, i: usize, kind: u64, addr: u64, len: u64, arg: u64) -> Result<(), String> {
        self.stats.events += 1;
        self.flush();
        let res = if kind == MMAP {
            if addr % PAGE != 0 || len == 0 || len % PAGE != 0 {
                return Err(format!(
                    "record {i}: mmap {addr:#x} {len}: not page aligned"
                ));
            }
            if let Some(o) = self
                .regions
                .iter()
                .find(|r| r.origin < addr + len && addr < r.origin + r.len)
            {
                return Err(format!(
                    "record {i}: mmap {addr:#x}+{len:#x} overlaps the mapping at {:#x} (MAP_FIXED over a mapping is not replayed)",
                    o.origin
                ));
            }
            let arena = self.next_arena.div_ceil(PMD) * PMD + addr % PMD;
            if arena + len > self.arena_end {
                return Err(format!(
                    "record {i}: the trace maps more than {} GiB",
                    TRACE_ARENA >> 30
                ));
            }
            self.next_arena = arena + len + PMD;
            let res = self.exec(&BackendOp::Mmap {
                addr: arena,
                len,
                prot: prot_of(arg),
                shared: false,
                populate: false,
                fixed: false,
                file: None,
            })?;
            if res.is_ok() {
                let at = self.regions.partition_point(|r| r.origin < addr);
                self.regions.insert(
                    at,
                    Region {
                        origin: addr,
                        len,
                        arena,
                    },
                );
            }
            res
        } else {
            let Some(r) = self.region(addr).filter(|r| addr + len <= r.origin + r.len) else {
                return Err(format!(
                    "record {i}: {:#x}+{len:#x} is not inside one mapping of the scenario or the trace",
                    addr
                ));
            };
            let a = r.arena + (addr - r.origin);
            let op = match kind {
                MUNMAP => BackendOp::Munmap { addr: a, len },
                MPROTECT => BackendOp::Mprotect {
                    addr: a,
                    len,
                    prot: prot_of(arg),
                },
                _ => {
                    let advice = advice_of(arg)
                        .ok_or_else(|| format!("record {i}: unknown madvise advice {arg}"))?;
                    BackendOp::Madvise {
                        addr: a,
                        len,
                        advice,
                    }
                }
            };
            self.exec(&op)?
        };
        if res.is_err() {
            self.stats.failed_events += 1;
        }
        Ok(())
    }

    /// Replays records; the hot path is an access within one page the cache holds.
    pub fn replay(&mut self, recs: &[Rec]) -> Result<(), String> {
        let mut i = 0;
        while i < recs.len() {
            // Hits: accesses within a page the cache holds with the permission they need.
            let gen = self.gen >> 1;
            let start = i;
            while let Some(&w) = recs.get(i) {
                let addr = w & ADDR_MASK;
                let vpn = addr / PAGE;
                let e = self.tlb[(vpn as usize) & (TLB - 1)];
                let kind = (w >> ADDR_BITS) & 0xf;
                if kind > WRITE
                    || (addr % PAGE) + (w >> SIZE_SHIFT) >= PAGE
                    || e >> 1 != gen | (vpn + 1)
                    || e & 1 < kind
                {
                    break;
                }
                i += 1;
            }
            let hits = (i - start) as u64;
            self.stats.cached += hits;
            self.stats.page_touches += hits;
            self.stats.accesses += hits;
            let Some(&w) = recs.get(i) else { break };
            let (kind, v) = (kind_of(w), w & ADDR_MASK);
            match kind {
                READ | WRITE => {
                    let first = v / PAGE;
                    let last = (v + (w >> SIZE_SHIFT)) / PAGE;
                    for vpn in first..=last {
                        let e = self.tlb[(vpn as usize) & (TLB - 1)];
                        if e >> 1 == self.gen >> 1 | (vpn + 1) && e & 1 >= kind {
                            self.stats.cached += 1;
                        } else {
                            self.miss(vpn, kind)?;
                        }
                    }
                    self.stats.page_touches += last - first + 1;
                    self.stats.accesses += 1;
                    i += 1;
                }
                TIME => {
                    self.sleep_to(v)?;
                    i += 1;
                }
                PID => {
                    match self.pid {
                        None => self.pid = Some(v),
                        Some(p) if p != v => {
                            return Err(format!(
                                "record {i}: pid {v} after pid {p}: replay runs one process's trace"
                            ))
                        }
                        _ => {}
                    }
                    i += 1;
                }
                _ => {
                    let (Some(&len), Some(&arg)) = (recs.get(i + 1), recs.get(i + 2)) else {
                        return Err(format!("record {i}: event without its length and argument"));
                    };
                    self.event(i, kind, v, len, arg)?;
                    i += 3;
                }
            }
        }
        self.stats.records += recs.len() as u64;
        self.stats.trace_ms = self.now_ms;
        Ok(())
    }

    /// The final sample.
    pub fn finish(&mut self) -> Result<(), String> {
        self.sample()
    }
}

/// `# origin NAME ADDR` lines of a scenario (written by `thpsim import`).
fn origins(src: &str) -> BTreeMap<String, u64> {
    src.lines()
        .filter_map(|l| {
            let mut it = l.strip_prefix("# origin ")?.split_whitespace();
            let name = it.next()?.to_string();
            let addr = thpsim_scenario::parse::parse_uint(it.next()?)?;
            Some((name, addr))
        })
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TraceFormat {
    Auto,
    Csv,
    Bin,
    Perf,
}

pub struct ReplayOpts<'a> {
    pub trace: &'a Path,
    pub on: &'a Path,
    pub variant: Variant,
    pub format: TraceFormat,
    pub interval_ms: u64,
    pub write_binary: Option<&'a Path>,
    pub json: bool,
}

#[derive(serde::Serialize)]
struct Report<'a> {
    trace: String,
    on: String,
    profile: String,
    variant: String,
    stats: &'a Stats,
    wall_s: f64,
    accesses_per_s: f64,
    samples: &'a [Sample],
}

/// Loads a trace of any format.
pub fn load(
    path: &Path,
    format: TraceFormat,
    resolve: &dyn Fn(&str) -> Option<u64>,
) -> Result<Vec<Rec>, String> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {name}: {e}"))?;
    let fmt = match format {
        TraceFormat::Auto if bytes.starts_with(MAGIC) => TraceFormat::Bin,
        TraceFormat::Auto => {
            let text = String::from_utf8_lossy(&bytes);
            let first = text
                .lines()
                .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                .unwrap_or("");
            if first.contains(',') {
                TraceFormat::Csv
            } else {
                TraceFormat::Perf
            }
        }
        f => f,
    };
    match fmt {
        TraceFormat::Bin => from_binary(&name, &bytes),
        TraceFormat::Csv | TraceFormat::Auto => {
            from_csv(&name, &String::from_utf8_lossy(&bytes), resolve)
        }
        TraceFormat::Perf => from_perf_script(&name, &String::from_utf8_lossy(&bytes)),
    }
}

/// Runs `scn` on a fresh model and replays `recs` on the state it leaves.
pub fn run(
    scn: &Scenario,
    src: &str,
    variant: &Variant,
    recs: &[Rec],
    interval_ms: u64,
    be: &mut SimBackend,
) -> Result<(Stats, Vec<Sample>, String, f64), String> {
    let mut plan = engine::plan(scn, variant).map_err(|e| e.to_string())?;
    let layout_end = plan.setup.arena_len;
    plan.setup.arena_len += TRACE_ARENA;
    be.check_plan(&plan).map_err(|e| e.message())?;
    be.setup(&plan.setup).map_err(|e| e.message())?;
    let res =
        engine::run_planned(scn, &plan, be, variant).map_err(|e: BackendError| e.message())?;
    if res.any_failed() {
        return Err(format!(
            "{}: the scenario's expectations failed (thpsim run shows which)",
            scn.file
        ));
    }
    let orig = origins(src);
    let maps: Vec<(u64, u64, u64)> = plan
        .mappings
        .iter()
        .map(|p| (orig.get(&p.name).copied().unwrap_or(p.addr), p.addr, p.len))
        .collect();
    let mut r = Replayer::new(be, &maps, layout_end, plan.setup.arena_len, interval_ms)?;
    let start = Instant::now();
    r.replay(recs)?;
    let wall = start.elapsed().as_secs_f64();
    r.finish()?;
    Ok((r.stats, r.samples, res.variant, wall))
}

/// The trace-address resolver of `NAME+OFF` for a scenario.
pub fn resolver(scn: &Scenario, src: &str) -> impl Fn(&str) -> Option<u64> {
    let orig = origins(src);
    let placed: BTreeMap<String, u64> = engine::plan(scn, &Variant::default())
        .map(|p| p.mappings.into_iter().map(|m| (m.name, m.addr)).collect())
        .unwrap_or_default();
    move |n: &str| orig.get(n).or_else(|| placed.get(n)).copied()
}

pub fn main(opts: ReplayOpts<'_>) -> ExitCode {
    let src = match std::fs::read_to_string(opts.on) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("thpsim replay: cannot read {}: {e}", opts.on.display());
            return ExitCode::from(2);
        }
    };
    let scn = match crate::load(&opts.on.to_path_buf()) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let resolve = resolver(&scn, &src);
    let recs = match load(opts.trace, opts.format, &resolve) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("thpsim replay: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(p) = opts.write_binary {
        if let Err(e) = std::fs::write(p, to_binary(&recs)) {
            eprintln!("thpsim replay: cannot write {}: {e}", p.display());
            return ExitCode::from(1);
        }
    }
    let mut be = crate::model_backend();
    let (stats, samples, variant, wall) =
        match run(&scn, &src, &opts.variant, &recs, opts.interval_ms, &mut be) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("thpsim replay: {e}");
                return ExitCode::from(1);
            }
        };
    #[allow(clippy::cast_precision_loss)]
    let rate = stats.accesses as f64 / wall.max(1e-9);
    let profile = variant.split_whitespace().next().unwrap_or("").to_string();
    if opts.json {
        let rep = Report {
            trace: opts.trace.display().to_string(),
            on: opts.on.display().to_string(),
            profile,
            variant,
            stats: &stats,
            wall_s: wall,
            accesses_per_s: rate,
            samples: &samples,
        };
        outln!("{}", serde_json::to_string_pretty(&rep).expect("json"));
        return ExitCode::SUCCESS;
    }
    out!(
        "{}",
        text(opts.trace, opts.on, &variant, &stats, &samples, wall, rate)
    );
    ExitCode::SUCCESS
}

fn text(
    trace: &Path,
    on: &Path,
    variant: &str,
    s: &Stats,
    samples: &[Sample],
    wall: f64,
    rate: f64,
) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "replay {} on {} (model, {variant}): {} records over {} ms of trace time",
        trace.display(),
        on.display(),
        s.records,
        s.trace_ms
    );
    let _ = writeln!(
        o,
        "  accesses {} ({} page touches, {} already mapped), events {} ({} failed), signals {}",
        s.accesses, s.page_touches, s.cached, s.events, s.failed_events, s.signals
    );
    let _ = writeln!(o, "  faults: minflt {} majflt {}", s.minflt, s.majflt);
    let _ = writeln!(
        o,
        "  replay speed: {:.1} M accesses/s ({wall:.3} s)",
        rate / 1e6
    );
    let _ = writeln!(
        o,
        "\n  {:>10} {:>10} {:>12} {:>12} {:>12} {:>8} {:>10} {:>10}",
        "t_ms", "minflt", "resident_kB", "thp_kB", "pmd_kB", "thp_%", "collapsed", "full_scans"
    );
    for x in samples {
        let _ = writeln!(
            o,
            "  {:>10} {:>10} {:>12} {:>12} {:>12} {:>8.1} {:>10} {:>10}",
            x.t_ms,
            x.minflt,
            x.resident_kb,
            x.thp_kb,
            x.pmd_mapped_kb,
            x.coverage_pct,
            x.pages_collapsed,
            x.full_scans
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCN: &str = "\
sysfs enabled=madvise
mmap buf 8M anon private rw align=2M
madvise buf HUGEPAGE
";

    fn scn() -> Scenario {
        thpsim_scenario::parse("on.thps", SCN).unwrap()
    }

    #[test]
    fn csv_round_trips_through_binary_and_reports_errors_with_position() {
        let s = scn();
        let resolve = resolver(&s, SCN);
        let csv = "time_ms,pid,op,addr,size,arg\n0,7,w,buf+0,8\n1.5,7,madvise,buf+2M,2M,NOHUGEPAGE\n2,7,r,buf+0x201000,1\n";
        let recs = from_csv("t.csv", csv, &resolve).unwrap();
        // TIME 0, PID 7, write; TIME 1, madvise + 2 words; TIME 2, read.
        assert_eq!(recs.len(), 9);
        assert_eq!(recs[..3], [TIME << 48, 7 | PID << 48, access(WRITE, 0, 8)]);
        assert_eq!(
            recs[3..7],
            [1 | TIME << 48, (2 << 20) | MADVISE << 48, 2 << 20, 15]
        );
        assert_eq!(from_binary("t.bin", &to_binary(&recs)).unwrap(), recs);
        let e = from_csv("t.csv", "0,7,w,buf+0,8\n0,7,x,buf+0,8\n", &resolve).unwrap_err();
        assert_eq!(
            e,
            "t.csv:2:5: unknown op `x` (r, w, mmap, munmap, madvise, mprotect, mark)"
        );
        let e = from_csv("t.csv", "0,7,w,nope+0,8\n", &resolve).unwrap_err();
        assert_eq!(e, "t.csv:1:7: no mapping `nope` in the scenario");
        let e = from_csv("t.csv", "5,7,w,0,8\n4,7,w,0,8\n", &resolve).unwrap_err();
        assert_eq!(e, "t.csv:2:1: time 4 ms is before the previous line's 5 ms");
        let mut bad = to_binary(&recs);
        bad[16 + 4 * 8 + 6] = 9; // the madvise record: kind 9
        assert!(from_binary("t.bin", &bad)
            .unwrap_err()
            .contains("record 4: unknown kind 9"));
        assert!(from_binary("x", b"nope").is_err());
    }

    #[test]
    fn replay_counts_faults_thp_and_cached_touches() {
        let s = scn();
        let resolve = resolver(&s, SCN);
        // Two writes in the first 2 MiB (one PMD fault), a NOHUGEPAGE range then 3 writes
        // in it (3 order-0 faults), a read of the last slot (huge zero), then a sleep.
        let csv = "\
0,1,w,buf+0,1
0,1,w,buf+0x1000,1
0,1,madvise,buf+2M,2M,NOHUGEPAGE
1,1,w,buf+2M,1
1,1,w,buf+0x201000,4097
1,1,r,buf+2M,1
3000,1,r,buf+6M,1
";
        let recs = from_csv("t.csv", csv, &resolve).unwrap();
        let (st, samples, _, _) = run(
            &s,
            SCN,
            &Variant::default(),
            &recs,
            1000,
            &mut SimBackend::new(),
        )
        .unwrap();
        // The 4097-byte write is two records (at most 4096 bytes each).
        assert_eq!(st.accesses, 7);
        assert_eq!(st.page_touches, 7);
        assert_eq!(st.cached, 1);
        assert_eq!(st.minflt, 1 + 3 + 1);
        assert_eq!(st.events, 1);
        assert_eq!(samples.len(), 4); // 1000, 2000, 3000 ms and the end
        let end = samples.last().unwrap();
        assert_eq!(end.resident_kb, 2048 + 12);
        assert_eq!((end.thp_kb, end.pmd_mapped_kb), (2048, 2048));
    }

    #[test]
    fn perf_script_samples() {
        let t = "\
    4242 100.000100: cpu/mem-loads,ldlat=30/P:     7f0000001010
    4242 100.002300: cpu/mem-stores/P:     7f0000002000
    4242 100.003000: cpu/mem-loads,ldlat=30/P:     0
";
        let recs = from_perf_script("p.txt", t).unwrap();
        assert_eq!(
            recs,
            [
                TIME << 48,
                4242 | PID << 48,
                access(READ, 0x7f00_0000_1010, 1),
                2 | TIME << 48,
                access(WRITE, 0x7f00_0000_2000, 1)
            ]
        );
    }

    #[test]
    fn khugepaged_collapses_on_the_trace_clock() {
        let src = "sysfs khugepaged.pages_to_scan=512\nmmap buf 4M anon private rw align=2M\n";
        let s = thpsim_scenario::parse("on.thps", src).unwrap();
        let resolve = resolver(&s, src);
        // Order-0 pages in both 2 MiB slots (enabled=madvise, no MADV_HUGEPAGE yet), then
        // MADV_HUGEPAGE puts the mm on khugepaged's empty list, which wakes it: a pass of 512
        // pages collapses the first slot; the next pass, scan_sleep_millisecs (10 s) later,
        // the second.
        let csv = "\
0,1,w,buf+0,4096
0,1,w,buf+0x10000,1
0,1,w,buf+2M,1
5,1,madvise,buf+0,4M,HUGEPAGE
9000,1,r,buf+0,1
25000,1,r,buf+0,1
";
        let recs = from_csv("t.csv", csv, &resolve).unwrap();
        let (st, samples, _, _) = run(
            &s,
            src,
            &Variant::default(),
            &recs,
            5000,
            &mut SimBackend::new(),
        )
        .unwrap();
        assert_eq!(st.minflt, 3);
        let at = |t: u64| samples.iter().find(|x| x.t_ms == t).unwrap();
        assert_eq!(
            (at(5000).pages_collapsed, at(5000).pmd_mapped_kb),
            (1, 2048)
        );
        assert_eq!(at(10000).pages_collapsed, 1, "{samples:?}");
        assert_eq!(at(15000).pages_collapsed, 2, "{samples:?}");
        let end = samples.last().unwrap();
        assert_eq!(end.t_ms, 25000);
        assert_eq!((end.pmd_mapped_kb, end.resident_kb), (4096, 4096));
        assert_eq!(end.coverage_pct, 100.0);
    }
}
