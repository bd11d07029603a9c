//! Random operation sequences against the model: mmap/munmap/mprotect/madvise/access/prctl
//! over a small address window, under random profiles, sysfs knobs and (small) memory sizes.
//! After every operation the invariant checker runs, plus cross-checks between the
//! observation interfaces (smaps, page map, fault counts, the allocator) that must hold
//! whatever the kernel decides. A second test replays hand-picked long sequences.

use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use thpsim_kernel::errno::Errno;
use thpsim_kernel::mm::{prot_to_vmflags, vmf};
use thpsim_kernel::mmap::MapFlags;
use thpsim_kernel::observe::{Backing, PageMap};
use thpsim_kernel::profile;
use thpsim_kernel::types::{AccessKind, Advice, Pid, Prot, PAGE_SIZE};
use thpsim_kernel::vmstat::VmItem;
use thpsim_kernel::{Kernel, KernelConfig};

const K4: u64 = 4096;
const M2: u64 = 2 << 20;
/// The window straddles a 1 GiB boundary (so PMD tables of two PUD entries are used and freed).
const BASE: u64 = 0x7f00_0000_0000 - 4 * M2;
/// 12 PMD slots; generated addresses also reach one slot below and two above.
const WINDOW: u64 = 12 * M2;

// ---------------------------------------------------------------------------------------------
// Configuration and operations
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
struct Cfg {
    profile: &'static str,
    memory_mb: u64,
    enabled: &'static str,
    use_zero_page: bool,
    shrink_underused: bool,
    /// `hugepages-<kB>kB.enabled` for orders 2..=9.
    sizes: [&'static str; 8],
}

impl fmt::Debug for Cfg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}M enabled={} use_zero_page={} shrink_underused={}",
            self.profile,
            self.memory_mb,
            self.enabled,
            u8::from(self.use_zero_page),
            u8::from(self.shrink_underused)
        )?;
        for (i, v) in self.sizes.iter().enumerate() {
            write!(f, " {}k={v}", 4u64 << (i + 2))?;
        }
        Ok(())
    }
}

impl Cfg {
    fn kernel(&self) -> Kernel {
        let mut cfg = KernelConfig {
            memory: self.memory_mb << 20,
            profile: profile::profile(self.profile).unwrap(),
            ..Default::default()
        };
        let s = &mut cfg.sysfs;
        s.set("enabled", self.enabled).unwrap();
        s.set("use_zero_page", if self.use_zero_page { "1" } else { "0" })
            .unwrap();
        s.set(
            "shrink_underused",
            if self.shrink_underused { "1" } else { "0" },
        )
        .unwrap();
        for (i, v) in self.sizes.iter().enumerate() {
            s.set(&format!("hugepages-{}kB.enabled", 4u64 << (i + 2)), v)
                .unwrap();
        }
        Kernel::new(cfg).unwrap()
    }

    fn named(profile: &'static str, memory_mb: u64, enabled: &'static str) -> Cfg {
        Cfg {
            profile,
            memory_mb,
            enabled,
            use_zero_page: true,
            shrink_underused: true,
            sizes: [
                "never", "never", "never", "never", "never", "never", "never", "inherit",
            ],
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Mmap {
        addr: u64,
        len: u64,
        prot: Prot,
        populate: bool,
    },
    Munmap {
        addr: u64,
        len: u64,
    },
    Mprotect {
        addr: u64,
        len: u64,
        prot: Prot,
    },
    Madvise {
        addr: u64,
        len: u64,
        advice: Advice,
    },
    /// `n` accesses, `stride` bytes apart, starting at `addr` (n = 1: a single byte).
    Access {
        addr: u64,
        n: u32,
        stride: u64,
        write: bool,
    },
    /// 0: enable, 1: disable, 2: disable except advised, 3: (false, EXCEPT_ADVISED) → EINVAL.
    Prctl(u8),
}

/// Addresses print relative to BASE.
struct Rel(u64);
impl fmt::Debug for Rel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "B+{:#x}", self.0.wrapping_sub(BASE))
    }
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Op::Mmap {
                addr,
                len,
                prot,
                populate,
            } => write!(
                f,
                "mmap({:?}, {len:#x}, {prot}{})",
                Rel(addr),
                if populate { ", POPULATE" } else { "" }
            ),
            Op::Munmap { addr, len } => write!(f, "munmap({:?}, {len:#x})", Rel(addr)),
            Op::Mprotect { addr, len, prot } => {
                write!(f, "mprotect({:?}, {len:#x}, {prot})", Rel(addr))
            }
            Op::Madvise { addr, len, advice } => {
                write!(f, "madvise({:?}, {len:#x}, {})", Rel(addr), advice.name())
            }
            Op::Access {
                addr,
                n,
                stride,
                write,
            } => write!(
                f,
                "{}({:?} x{n} stride {stride:#x})",
                if write { "write" } else { "read" },
                Rel(addr)
            ),
            Op::Prctl(m) => write!(f, "prctl_thp_disable({m})"),
        }
    }
}

/// Where a generated operation's address comes from: as generated, or relative to the
/// `idx % n`-th VMA existing when the operation runs (so most operations hit mappings). The
/// generated address's offset within its page is kept, so unaligned cases stay unaligned.
#[derive(Clone, Copy, Debug)]
enum Anchor {
    Abs,
    Start { idx: u8, pages: i16 },
    End { idx: u8, pages: i16 },
    Inside { idx: u8, permille: u16 },
}

#[derive(Clone, Copy)]
struct GenOp {
    anchor: Anchor,
    op: Op,
}

impl fmt::Debug for GenOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.anchor {
            Anchor::Abs => write!(f, "{:?}", self.op),
            a => write!(f, "{:?} @ {a:?}", self.op),
        }
    }
}

impl Op {
    fn addr_mut(&mut self) -> Option<&mut u64> {
        match self {
            Op::Mmap { addr, .. }
            | Op::Munmap { addr, .. }
            | Op::Mprotect { addr, .. }
            | Op::Madvise { addr, .. }
            | Op::Access { addr, .. } => Some(addr),
            Op::Prctl(_) => None,
        }
    }
}

impl GenOp {
    /// The concrete operation in the current state of `k`.
    fn resolve(&self, k: &Kernel, pid: Pid) -> Op {
        let mut op = self.op;
        let vmas: Vec<(u64, u64)> = k.mm(pid).vmas.values().map(|v| (v.start, v.end)).collect();
        if let (Some(addr), false) = (op.addr_mut(), vmas.is_empty()) {
            let pick = |idx: u8| vmas[idx as usize % vmas.len()];
            let base = match self.anchor {
                Anchor::Abs => return op,
                Anchor::Start { idx, pages } => {
                    pick(idx).0.wrapping_add_signed(i64::from(pages) * 4096)
                }
                Anchor::End { idx, pages } => {
                    pick(idx).1.wrapping_add_signed(i64::from(pages) * 4096)
                }
                Anchor::Inside { idx, permille } => {
                    let (s, e) = pick(idx);
                    s + ((e - s) / K4 * u64::from(permille) / 1000) * K4
                }
            };
            *addr = base + (*addr & (K4 - 1));
        }
        op
    }
}

fn ops_listing(ops: &[Op]) -> String {
    ops.iter()
        .enumerate()
        .map(|(i, o)| format!("  {i:2}: {o:?}\n"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

fn knob() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        3 => Just("never"),
        2 => Just("inherit"),
        2 => Just("always"),
        2 => Just("madvise"),
    ]
}

fn cfg_strategy() -> impl Strategy<Value = Cfg> {
    (
        prop_oneof![Just("6.12"), Just("6.18")],
        prop_oneof![
            3 => (1u64..=4).prop_map(|n| n * 4),
            2 => (5u64..=16).prop_map(|n| n * 4),
        ],
        prop_oneof![Just("always"), Just("madvise"), Just("never")],
        any::<bool>(),
        any::<bool>(),
        proptest::array::uniform8(knob()),
    )
        .prop_map(
            |(profile, memory_mb, enabled, use_zero_page, shrink_underused, sizes)| Cfg {
                profile,
                memory_mb,
                enabled,
                use_zero_page,
                shrink_underused,
                sizes,
            },
        )
}

/// A page-aligned address in (or just around) the window, biased to PMD boundaries.
fn page_addr() -> impl Strategy<Value = u64> {
    let delta = prop_oneof![
        3 => Just(0u64),
        1 => Just(K4),
        1 => Just(2 * K4),
        1 => Just(16 * K4),
        1 => Just(M2 / 2),
        1 => Just(M2 - K4),
        1 => Just(M2 - 16 * K4),
        3 => (0u64..512).prop_map(|p| p * K4),
    ];
    // Slots -1..=12 so ranges can start before and end after the window.
    ((0u64..14), delta).prop_map(|(slot, d)| BASE - M2 + slot * M2 + d)
}

/// An address for a syscall: mostly page aligned, sometimes not (EINVAL paths).
fn syscall_addr() -> impl Strategy<Value = u64> {
    prop_oneof![
        12 => page_addr(),
        1 => (page_addr(), 1u64..K4).prop_map(|(a, o)| a + o),
    ]
}

/// A length: page multiples around interesting sizes, unaligned lengths, and zero.
fn length() -> impl Strategy<Value = u64> {
    prop_oneof![
        1 => Just(0u64),
        1 => Just(1u64),
        2 => Just(K4),
        1 => Just(K4 - 1),
        1 => Just(2 * K4 + 1),
        1 => Just(64 << 10),
        2 => Just(M2),
        1 => Just(M2 + K4),
        1 => Just(M2 - K4),
        2 => Just(2 * M2),
        1 => Just(3 * M2),
        1 => Just(4 * M2),
        3 => (1u64..=2048).prop_map(|p| p * K4),
        1 => 1u64..(8 << 20),
    ]
}

fn prot() -> impl Strategy<Value = Prot> {
    prop_oneof![
        4 => Just(Prot::RW),
        2 => Just(Prot::R),
        1 => Just(Prot::NONE),
        1 => (any::<bool>(), any::<bool>(), any::<bool>())
            .prop_map(|(read, write, exec)| Prot { read, write, exec }),
    ]
}

fn advice() -> impl Strategy<Value = Advice> {
    prop_oneof![
        4 => Just(Advice::Hugepage),
        2 => Just(Advice::Nohugepage),
        3 => Just(Advice::Dontneed),
        2 => Just(Advice::PopulateRead),
        2 => Just(Advice::PopulateWrite),
        1 => Just(Advice::Normal),
        1 => Just(Advice::Random),
        1 => Just(Advice::Sequential),
        1 => Just(Advice::Willneed),
    ]
}

/// mmap lengths: mostly a few PMDs.
fn mmap_length() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => length(),
        2 => Just(M2),
        2 => Just(2 * M2),
        2 => Just(4 * M2),
        3 => (1u64..=2048).prop_map(|p| p * K4),
    ]
}

fn pages_delta() -> impl Strategy<Value = i16> {
    prop_oneof![
        3 => Just(0i16),
        1 => Just(-1i16),
        1 => Just(1i16),
        1 => Just(-512i16),
        1 => Just(512i16),
        2 => -600i16..600,
    ]
}

/// Anchors for syscalls other than mmap: around the start or end of a VMA, or inside one.
fn anchor() -> impl Strategy<Value = Anchor> {
    prop_oneof![
        3 => Just(Anchor::Abs),
        2 => (any::<u8>(), pages_delta()).prop_map(|(idx, pages)| Anchor::Start { idx, pages }),
        1 => (any::<u8>(), pages_delta()).prop_map(|(idx, pages)| Anchor::End { idx, pages }),
        3 => (any::<u8>(), 0u16..1000).prop_map(|(idx, permille)| Anchor::Inside { idx, permille }),
    ]
}

/// Anchors for mmap: as generated, or right after (or a little after) an existing VMA.
fn mmap_anchor() -> impl Strategy<Value = Anchor> {
    prop_oneof![
        3 => Just(Anchor::Abs),
        2 => (any::<u8>(), prop_oneof![3 => Just(0i16), 1 => 1i16..600])
            .prop_map(|(idx, pages)| Anchor::End { idx, pages }),
    ]
}

/// Anchors for accesses: mostly inside a VMA.
fn access_anchor() -> impl Strategy<Value = Anchor> {
    prop_oneof![
        1 => Just(Anchor::Abs),
        1 => (any::<u8>(), pages_delta()).prop_map(|(idx, pages)| Anchor::Start { idx, pages }),
        5 => (any::<u8>(), 0u16..1000).prop_map(|(idx, permille)| Anchor::Inside { idx, permille }),
    ]
}

fn gen_op() -> impl Strategy<Value = GenOp> {
    let g = |anchor, op| GenOp { anchor, op };
    let mmap = (
        mmap_anchor(),
        syscall_addr(),
        mmap_length(),
        prop_oneof![3 => Just(Prot::RW), 1 => prot()],
        prop::bool::weighted(0.2),
    )
        .prop_map(move |(a, addr, len, prot, populate)| {
            g(
                a,
                Op::Mmap {
                    addr,
                    len,
                    prot,
                    populate,
                },
            )
        });
    let munmap = (anchor(), syscall_addr(), length())
        .prop_map(move |(a, addr, len)| g(a, Op::Munmap { addr, len }));
    let mprotect = (anchor(), syscall_addr(), length(), prot())
        .prop_map(move |(a, addr, len, prot)| g(a, Op::Mprotect { addr, len, prot }));
    let madvise = (anchor(), syscall_addr(), length(), advice())
        .prop_map(move |(a, addr, len, advice)| g(a, Op::Madvise { addr, len, advice }));
    let single = (access_anchor(), page_addr(), 0u64..K4, any::<bool>()).prop_map(
        move |(an, a, o, write)| {
            g(
                an,
                Op::Access {
                    addr: a + o,
                    n: 1,
                    stride: 0,
                    write,
                },
            )
        },
    );
    let strided = (
        access_anchor(),
        page_addr(),
        0u64..K4,
        2u32..=16,
        prop_oneof![
            Just(1u64),
            Just(K4),
            Just(3 * K4 + 5),
            Just(64 << 10),
            Just(M2 / 4)
        ],
        any::<bool>(),
    )
        .prop_map(move |(an, a, o, n, stride, write)| {
            g(
                an,
                Op::Access {
                    addr: a + o,
                    n,
                    stride,
                    write,
                },
            )
        });
    let prctl = prop_oneof![
        3 => (0u8..3).prop_map(Op::Prctl),
        1 => Just(Op::Prctl(3)),
    ]
    .prop_map(move |op| g(Anchor::Abs, op));
    prop_oneof![
        5 => mmap,
        2 => munmap,
        4 => mprotect,
        6 => madvise,
        6 => single,
        4 => strided,
        1 => prctl,
    ]
}

// ---------------------------------------------------------------------------------------------
// A shadow of the VMA flags (the syscall semantics alone, no page tables) and an errno oracle
// ---------------------------------------------------------------------------------------------

/// `VM_SEQ_READ` / `VM_RAND_READ` as the model numbers them.
const VM_SEQ_READ: u32 = 1 << 15;
const VM_RAND_READ: u32 = 1 << 16;
/// The flag bits the shadow tracks.
const TRACKED: u32 = vmf::PROT_MASK | vmf::HUGEPAGE | vmf::NOHUGEPAGE | VM_SEQ_READ | VM_RAND_READ;

/// Non-overlapping `[start, end) -> flags` intervals.
#[derive(Clone, Debug, Default)]
struct Shadow(BTreeMap<u64, (u64, u32)>);

impl Shadow {
    fn split_at(&mut self, a: u64) {
        let hit = self.0.range(..a).next_back().map(|(s, v)| (*s, *v));
        if let Some((s, (e, f))) = hit {
            if e > a {
                self.0.insert(s, (a, f));
                self.0.insert(a, (e, f));
            }
        }
    }
    fn remove(&mut self, s: u64, e: u64) {
        self.split_at(s);
        self.split_at(e);
        let keys: Vec<u64> = self.0.range(s..e).map(|(k, _)| *k).collect();
        for k in keys {
            self.0.remove(&k);
        }
    }
    fn insert(&mut self, s: u64, e: u64, f: u32) {
        self.remove(s, e);
        self.0.insert(s, (e, f));
    }
    /// Applies `f` to the covered parts of `[s, e)`.
    fn update(&mut self, s: u64, e: u64, f: impl Fn(u32) -> u32) {
        self.split_at(s);
        self.split_at(e);
        for (_, v) in self.0.range_mut(s..e) {
            v.1 = f(v.1);
        }
    }
    fn covered(&self, a: u64) -> bool {
        self.0.range(..=a).next_back().is_some_and(|(_, v)| v.0 > a)
    }
    /// `(end, flags)` of the interval containing `a`.
    fn interval_at(&self, a: u64) -> Option<(u64, u32)> {
        self.0
            .range(..=a)
            .next_back()
            .filter(|(_, v)| v.0 > a)
            .map(|(_, v)| *v)
    }
    /// End of the covered run starting at `a` (`a` if `a` is not covered).
    fn covered_until(&self, a: u64) -> u64 {
        let mut cur = a;
        while let Some((_, v)) = self.0.range(..=cur).next_back().filter(|(_, v)| v.0 > cur) {
            cur = v.0;
        }
        cur
    }
    fn overlaps(&self, s: u64, e: u64) -> bool {
        self.covered(s) || self.0.range(s..e).next().is_some()
    }
    /// Coalesced runs, to compare with the model's VMAs (which may stay unmerged).
    fn runs(it: impl Iterator<Item = (u64, u64, u32)>) -> Vec<(u64, u64, u32)> {
        let mut out: Vec<(u64, u64, u32)> = Vec::new();
        for (s, e, f) in it {
            match out.last_mut() {
                Some(l) if l.1 == s && l.2 == f => l.1 = e,
                _ => out.push((s, e, f)),
            }
        }
        out
    }
    fn my_runs(&self) -> Vec<(u64, u64, u32)> {
        Self::runs(self.0.iter().map(|(s, v)| (*s, v.0, v.1)))
    }
}

fn errno_name(r: Result<(), Errno>) -> String {
    match r {
        Ok(()) => "ok".into(),
        Err(e) => e.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// The runner and its checks
// ---------------------------------------------------------------------------------------------

struct Runner {
    k: Kernel,
    pid: Pid,
    cfg: Cfg,
    done: Vec<Op>,
    /// The range the presence checks of the current op cover: the window, every VMA before
    /// the op and an mmap's target (so nothing can be mapped outside it afterwards).
    span: (u64, u64),
    shadow: Shadow,
    /// Pages a store went to (their content is not zero) and not unmapped since.
    written: BTreeSet<u64>,
    /// Effective per-order enablement from the config (index = order).
    order_possible: [bool; 10],
}

/// Which pages of the window are mapped (page map backing not None).
fn presence(map: &PageMap) -> Vec<bool> {
    let mut v = Vec::new();
    for (b, n) in map {
        v.extend(std::iter::repeat_n(
            *b != Backing::None,
            usize::try_from(*n).unwrap(),
        ));
    }
    v
}

fn is_anon(b: Backing) -> bool {
    matches!(b, Backing::Anon | Backing::ThpPte { .. } | Backing::ThpPmd)
}

impl Runner {
    fn new(cfg: Cfg) -> Runner {
        let mut order_possible = [false; 10];
        for (i, v) in cfg.sizes.iter().enumerate() {
            order_possible[i + 2] = match *v {
                "never" => false,
                "inherit" => cfg.enabled != "never",
                _ => true,
            };
        }
        let mut k = cfg.kernel();
        let pid = k.spawn();
        Runner {
            k,
            pid,
            cfg,
            done: Vec::new(),
            span: (BASE, BASE + WINDOW),
            shadow: Shadow::default(),
            written: BTreeSet::new(),
            order_possible,
        }
    }

    fn fail(&self, what: String) -> String {
        format!(
            "{what}\nconfig: {:?}\nops so far (last one failed):\n{}",
            self.cfg,
            ops_listing(&self.done)
        )
    }

    fn minflt(&self) -> u64 {
        self.k.task(self.pid).unwrap().minflt
    }

    fn span_map(&self) -> PageMap {
        self.k.page_map(self.pid, self.span.0, self.span.1)
    }

    fn span_pages(&self) -> usize {
        ((self.span.1 - self.span.0) / K4) as usize
    }

    fn page_index(&self, addr: u64) -> Option<usize> {
        (self.span.0..self.span.1)
            .contains(&addr)
            .then(|| ((addr - self.span.0) / K4) as usize)
    }

    /// One access with the "second identical access takes no fault" check.
    fn access_once(&mut self, addr: u64, write: bool) -> Result<bool, String> {
        let kind = if write {
            AccessKind::Write
        } else {
            AccessKind::Read
        };
        let r = self.k.access(self.pid, addr, kind);
        self.k
            .check_invariants()
            .map_err(|e| self.fail(format!("invariant after access {addr:#x} ({r:?}): {e}")))?;
        if r.is_ok() {
            let f0 = self.minflt();
            let r2 = self.k.access(self.pid, addr, kind);
            if r2.is_err() || self.minflt() != f0 {
                return Err(self.fail(format!(
                    "repeated access at {:?} faulted again: {r2:?}, minflt +{}",
                    Rel(addr),
                    self.minflt() - f0
                )));
            }
        }
        Ok(r.is_ok())
    }

    fn expect_errno(
        &self,
        what: &str,
        r: Result<(), Errno>,
        want: &[Result<(), Errno>],
    ) -> Result<(), String> {
        if want.contains(&r) {
            return Ok(());
        }
        let w: Vec<String> = want.iter().map(|w| errno_name(*w)).collect();
        Err(self.fail(format!(
            "{what} returned {} but the syscall semantics say {}",
            errno_name(r),
            w.join(" or ")
        )))
    }

    /// The errno madvise must return, from the shadow VMAs (and updates the shadow flags).
    fn madvise_oracle(
        &mut self,
        addr: u64,
        len: u64,
        end: u64,
        advice: Advice,
    ) -> Vec<Result<(), Errno>> {
        if addr % K4 != 0 {
            return vec![Err(Errno::EINVAL)];
        }
        if len == 0 {
            return vec![Ok(())];
        }
        let hole = self.shadow.covered_until(addr) < end;
        let full = if hole { Err(Errno::ENOMEM) } else { Ok(()) };
        match advice {
            Advice::PopulateRead | Advice::PopulateWrite => {
                // The first problem in address order decides; OOM gives ENOMEM anyway.
                let write = advice == Advice::PopulateWrite;
                let mut cur = addr;
                while cur < end {
                    let Some((iv_end, f)) = self.shadow.interval_at(cur) else {
                        return vec![Err(Errno::ENOMEM)];
                    };
                    let ok = if write {
                        f & vmf::WRITE != 0
                    } else {
                        f & vmf::READ != 0
                    };
                    if !ok {
                        return vec![Err(Errno::EINVAL), Err(Errno::ENOMEM)];
                    }
                    cur = iv_end;
                }
                vec![Ok(()), Err(Errno::ENOMEM)]
            }
            Advice::Dontneed | Advice::Willneed => vec![full],
            _ => {
                self.shadow
                    .update(addr, end, |f| hint_flags_after(advice, f));
                vec![full]
            }
        }
    }

    fn apply_gen(&mut self, g: GenOp) -> Result<(), String> {
        let op = g.resolve(&self.k, self.pid);
        self.apply(op)
    }

    fn apply(&mut self, op: Op) -> Result<(), String> {
        self.done.push(op);
        let pid = self.pid;
        let mut span = (BASE, BASE + WINDOW);
        for v in self.k.mm(pid).vmas.values() {
            span = (span.0.min(v.start), span.1.max(v.end));
        }
        if let Op::Mmap { addr, len, .. } = op {
            if addr % K4 == 0 && len > 0 && addr.checked_add(len).is_some_and(|e| e < (1 << 47)) {
                span = (span.0.min(addr), span.1.max(addr + len.div_ceil(K4) * K4));
            }
        }
        self.span = span;
        let before = self.span_map();
        let pres0 = presence(&before);
        let counters0 = self.k.counters();
        // (range affected, whether presence may only grow there, whether it may shrink there)
        let mut unmapped_range: Option<(u64, u64)> = None;
        let mut populated: Option<(u64, u64, bool)> = None;
        match op {
            Op::Mmap {
                addr,
                len,
                prot,
                populate,
            } => {
                let r = self.k.mmap(
                    pid,
                    addr,
                    len,
                    prot,
                    MapFlags {
                        shared: false,
                        populate,
                        fixed: false,
                    },
                );
                let end = addr + len.div_ceil(K4) * K4;
                let want = if addr % K4 != 0 || len == 0 {
                    Err(Errno::EINVAL)
                } else if self.shadow.overlaps(addr, end) {
                    Err(Errno::EEXIST)
                } else {
                    Ok(())
                };
                self.expect_errno("mmap", r.map(|_| ()), &[want])?;
                if let Ok(a) = r {
                    if a != addr {
                        return Err(self.fail(format!("mmap returned {a:#x}")));
                    }
                    self.shadow.insert(addr, end, prot_to_vmflags(prot));
                }
            }
            Op::Munmap { addr, len } => {
                let r = self.k.munmap(pid, addr, len);
                let want = if addr % K4 != 0 || len == 0 {
                    Err(Errno::EINVAL)
                } else {
                    Ok(())
                };
                self.expect_errno("munmap", r, &[want])?;
                if r.is_ok() {
                    let end = addr + len.div_ceil(K4) * K4;
                    unmapped_range = Some((addr, end));
                    self.shadow.remove(addr, end);
                }
            }
            Op::Mprotect { addr, len, prot } => {
                let r = self.k.mprotect(pid, addr, len, prot);
                let end = addr + len.div_ceil(K4) * K4;
                let want = if addr % K4 != 0 {
                    Err(Errno::EINVAL)
                } else if len == 0 {
                    Ok(())
                } else {
                    // Changes up to the first hole, then ENOMEM.
                    let upto = self.shadow.covered_until(addr).min(end);
                    let p = prot_to_vmflags(prot);
                    self.shadow
                        .update(addr, upto, |f| (f & !vmf::PROT_MASK) | p);
                    if upto == end {
                        Ok(())
                    } else {
                        Err(Errno::ENOMEM)
                    }
                };
                self.expect_errno("mprotect", r, &[want])?;
            }
            Op::Madvise { addr, len, advice } => {
                let r = self.k.madvise(pid, addr, len, advice);
                let end = addr + len.div_ceil(K4) * K4;
                let want = self.madvise_oracle(addr, len, end, advice);
                self.expect_errno(advice.name(), r, &want)?;
                match advice {
                    // Holes give ENOMEM after the mapped parts were zapped.
                    Advice::Dontneed if matches!(r, Ok(()) | Err(Errno::ENOMEM)) => {
                        unmapped_range = Some((addr, end));
                    }
                    Advice::PopulateRead if r.is_ok() => populated = Some((addr, end, false)),
                    Advice::PopulateWrite if r.is_ok() => populated = Some((addr, end, true)),
                    _ => {}
                }
            }
            Op::Access {
                addr,
                n,
                stride,
                write,
            } => {
                let mut ok_addrs = Vec::new();
                for i in 0..u64::from(n) {
                    let a = addr + i * stride;
                    if self.access_once(a, write)? {
                        ok_addrs.push(a);
                        if write {
                            self.written.insert(a & !(K4 - 1));
                        }
                    }
                }
                // Nothing an access does unmaps another page: the whole range is still
                // accessible without a fault.
                let f0 = self.minflt();
                for &a in &ok_addrs {
                    let kind = if write {
                        AccessKind::Write
                    } else {
                        AccessKind::Read
                    };
                    if self.k.access(pid, a, kind).is_err() || self.minflt() != f0 {
                        return Err(self.fail(format!("strided re-access at {:?} faulted", Rel(a))));
                    }
                }
            }
            Op::Prctl(m) => {
                let (disable, flags) = match m {
                    0 => (false, 0),
                    1 => (true, 0),
                    2 => (true, 2),
                    _ => (false, 2),
                };
                let r = self.k.prctl_set_thp_disable(pid, disable, flags);
                let expect_ok = m < 2 || (m == 2 && self.cfg.profile != "6.12");
                if r.is_ok() != expect_ok {
                    return Err(self.fail(format!("prctl({m}) returned {r:?}")));
                }
            }
        }
        self.k
            .check_invariants()
            .map_err(|e| self.fail(format!("invariant: {e}")))?;
        self.cross_checks(op, &pres0, &counters0, unmapped_range, populated)
    }

    fn cross_checks(
        &mut self,
        op: Op,
        pres0: &[bool],
        counters0: &[(String, i64)],
        unmapped_range: Option<(u64, u64)>,
        populated: Option<(u64, u64, bool)>,
    ) -> Result<(), String> {
        let pid = self.pid;
        let after = self.span_map();
        let total: u64 = after.iter().map(|(_, n)| n).sum();
        if total != self.span_pages() as u64 {
            return Err(self.fail(format!("page map of the checked span has {total} pages")));
        }
        let pres1 = presence(&after);
        let mut backing = Vec::with_capacity(self.span_pages());
        for (b, n) in &after {
            backing.extend(std::iter::repeat_n(*b, usize::try_from(*n).unwrap()));
        }

        // Presence frame rules.
        for i in 0..self.span_pages() {
            let addr = self.span.0 + i as u64 * K4;
            let in_unmapped = unmapped_range.is_some_and(|(s, e)| s <= addr && addr < e);
            let (was, is) = (pres0[i], pres1[i]);
            if in_unmapped && is {
                return Err(self.fail(format!(
                    "page {:?} still mapped ({:?}) after unmap/DONTNEED",
                    Rel(addr),
                    backing[i]
                )));
            }
            let may_shrink = in_unmapped;
            let may_grow = matches!(
                op,
                Op::Access { .. }
                    | Op::Mmap { populate: true, .. }
                    | Op::Madvise {
                        advice: Advice::PopulateRead | Advice::PopulateWrite,
                        ..
                    }
            );
            if was && !is && !may_shrink {
                return Err(self.fail(format!("page {:?} lost its mapping", Rel(addr))));
            }
            if !was && is && !may_grow {
                return Err(self.fail(format!(
                    "page {:?} gained a mapping ({:?})",
                    Rel(addr),
                    backing[i]
                )));
            }
            if is && self.k.mm(pid).vma_at(addr).is_none() {
                return Err(self.fail(format!("page {:?} mapped outside any VMA", Rel(addr))));
            }
        }

        // Stored data is never lost: a written page stays backed by an anon page until it is
        // unmapped or zapped.
        if let Some((s, e)) = unmapped_range {
            let gone: Vec<u64> = self.written.range(s..e).copied().collect();
            for a in gone {
                self.written.remove(&a);
            }
        }
        for &a in &self.written {
            let b = match self.page_index(a) {
                Some(i) => backing[i],
                None => self.k.page_map(pid, a, a + K4)[0].0,
            };
            if !is_anon(b) {
                return Err(self.fail(format!("written page {:?} is now {b:?}", Rel(a))));
            }
        }

        // Backings the configuration rules out.
        for (b, _) in &after {
            let impossible = match *b {
                Backing::HugeZero => !self.cfg.use_zero_page || !self.order_possible[9],
                Backing::ThpPmd => !self.order_possible[9],
                Backing::ThpPte { order } => !self.order_possible[order as usize],
                Backing::Marker | Backing::Swap => true,
                _ => false,
            };
            if impossible {
                return Err(self.fail(format!("{b:?} cannot exist with this configuration")));
            }
        }

        // The VMAs against the shadow (flags of every byte, coalesced), and pgoff.
        let model_runs = Shadow::runs(
            self.k
                .mm(pid)
                .vmas
                .values()
                .map(|v| (v.start, v.end, v.flags & TRACKED)),
        );
        if model_runs != self.shadow.my_runs() {
            let show = |r: &[(u64, u64, u32)]| -> String {
                r.iter()
                    .map(|(s, e, f)| format!("{:?}..{:?} {f:#x}; ", Rel(*s), Rel(*e)))
                    .collect()
            };
            return Err(self.fail(format!(
                "VMAs {}\nshadow {}",
                show(&model_runs),
                show(&self.shadow.my_runs())
            )));
        }
        if let Some(v) = self
            .k
            .mm(pid)
            .vmas
            .values()
            .find(|v| v.pgoff != v.start / K4)
        {
            return Err(self.fail(format!("VMA with pgoff {:#x}: {v:?}", v.pgoff)));
        }

        // Event counters only go up (gauges: `nr_*`, the allocator's free-block and
        // pageblock figures).
        let c1 = self.k.counters();
        let gauge = |n: &str| {
            n.contains("nr_")
                || ["buddyinfo.", "pagetypeinfo.", "sim."]
                    .iter()
                    .any(|p| n.starts_with(p))
        };
        for ((n0, v0), (n1, v1)) in counters0.iter().zip(&c1) {
            if n0 == n1 && !gauge(n0) && v1 < v0 {
                return Err(self.fail(format!("counter {n0} went down: {v0} -> {v1}")));
            }
        }
        let task = self.k.task(pid).unwrap();
        if i64::try_from(task.minflt).unwrap() > self.k.vmstat.get(VmItem::Pgfault) {
            return Err(self.fail("minflt above pgfault".into()));
        }

        // smaps per VMA against the page map; Rss == Anonymous, AnonHugePages <= Rss.
        let vmas: Vec<(u64, u64)> = self
            .k
            .mm(pid)
            .vmas
            .values()
            .map(|v| (v.start, v.end))
            .collect();
        let mut rss_total = 0;
        for &(s, e) in &vmas {
            let sm = self.k.smaps(pid, s, e);
            // One process, no sharing: every mapped page is private with mapcount 1.
            if sm.rss != sm.anonymous
                || sm.anon_huge_pages > sm.rss
                || sm.anon_huge_pages % 2048 != 0
                || sm.size != (e - s) >> 10
                || sm.pss != sm.rss
                || sm.shared_clean + sm.shared_dirty != 0
                || sm.private_clean + sm.private_dirty != sm.rss
            {
                return Err(self.fail(format!("smaps of {:?}..{:?}: {sm:?}", Rel(s), Rel(e))));
            }
            let m = self.k.page_map(pid, s, e);
            let n: u64 = m.iter().map(|(_, n)| n).sum();
            if n != (e - s) / K4 {
                return Err(self.fail(format!("page map of a VMA has {n} pages")));
            }
            let anon: u64 = m.iter().filter(|(b, _)| is_anon(*b)).map(|(_, n)| n).sum();
            let pmd: u64 = m
                .iter()
                .filter(|(b, _)| *b == Backing::ThpPmd)
                .map(|(_, n)| n)
                .sum();
            if sm.rss != anon * 4 || sm.anon_huge_pages != pmd * 4 {
                return Err(self.fail(format!(
                    "smaps of {:?}..{:?} (Rss {} AnonHugePages {}) vs page map {m:?}",
                    Rel(s),
                    Rel(e),
                    sm.rss,
                    sm.anon_huge_pages
                )));
            }
            rss_total += sm.rss;
        }
        let mm = self.k.mm(pid);
        if mm.rss_anon * 4 != rss_total {
            return Err(self.fail(format!(
                "MM_ANONPAGES {} vs smaps Rss {rss_total} kB",
                mm.rss_anon
            )));
        }

        // The allocator: free + what is surely allocated fits in memory.
        let pgtables = u64::try_from(self.k.vmstat.get(VmItem::NrPageTablePages)).unwrap();
        let anon_pages = u64::try_from(self.k.vmstat.get(VmItem::NrAnonPages)).unwrap();
        if self.k.nr_free_pages() + anon_pages.max(mm.rss_anon) + pgtables > self.k.total_pages() {
            return Err(self.fail(format!(
                "free {} + anon {anon_pages} + page tables {pgtables} > total {}",
                self.k.nr_free_pages(),
                self.k.total_pages()
            )));
        }

        // After a successful populate, every page of the range is accessible without a fault.
        if let Some((s, e, write)) = populated {
            let f0 = self.minflt();
            let kind = if write {
                AccessKind::Write
            } else {
                AccessKind::Read
            };
            for a in (s..e).step_by(usize::try_from(PAGE_SIZE).unwrap()) {
                if let Some(i) = self.page_index(a) {
                    if write && !is_anon(backing[i]) {
                        return Err(self.fail(format!(
                            "POPULATE_WRITE left {:?} as {:?}",
                            Rel(a),
                            backing[i]
                        )));
                    }
                }
                if let Err(sig) = self.k.access(pid, a, kind) {
                    return Err(
                        self.fail(format!("access at {:?} after populate: {sig:?}", Rel(a)))
                    );
                }
            }
            if self.minflt() != f0 {
                return Err(self.fail(format!(
                    "{} faults on a populated range",
                    self.minflt() - f0
                )));
            }
            self.k
                .check_invariants()
                .map_err(|e| self.fail(format!("invariant after populate re-access: {e}")))?;
        }
        Ok(())
    }
}

fn run(cfg: &Cfg, ops: &[Op]) -> Result<(), String> {
    let g: Vec<GenOp> = ops
        .iter()
        .map(|&op| GenOp {
            anchor: Anchor::Abs,
            op,
        })
        .collect();
    run_gen(cfg, &g)
}

fn run_gen(cfg: &Cfg, ops: &[GenOp]) -> Result<(), String> {
    let mut r = Runner::new(cfg.clone());
    for &op in ops {
        r.apply_gen(op)?;
    }
    // Unmapping everything gives every page back.
    let (lo, hi) = {
        let vmas = &r.k.mm(r.pid).vmas;
        match (vmas.values().next(), vmas.values().next_back()) {
            (Some(a), Some(b)) => (a.start, b.end),
            _ => (BASE, BASE + K4),
        }
    };
    r.apply(Op::Munmap {
        addr: lo,
        len: hi - lo,
    })?;
    if !r.k.mm(r.pid).vmas.is_empty() {
        return Err(r.fail("VMAs left after the final munmap".into()));
    }
    r.k.check_invariants()
        .map_err(|e| r.fail(format!("invariant after final munmap: {e}")))?;
    // Only the huge zero folio (if it was allocated and not shrunk) may stay allocated.
    let left = r.k.total_pages() - r.k.nr_free_pages();
    let hzp_ok = left == 512 && r.k.vmstat.get(VmItem::ThpZeroPageAlloc) > 0;
    if (left != 0 && !hzp_ok) || r.k.nr_folios() != 0 {
        return Err(r.fail(format!(
            "after unmapping everything: free {} of {}, {} folios",
            r.k.nr_free_pages(),
            r.k.total_pages(),
            r.k.nr_folios()
        )));
    }
    Ok(())
}

fn check(cfg: &Cfg, ops: &[GenOp]) -> Result<(), TestCaseError> {
    run_gen(cfg, ops).map_err(TestCaseError::fail)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn random_op_sequences(cfg in cfg_strategy(), ops in prop::collection::vec(gen_op(), 1..=60)) {
        check(&cfg, &ops)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20_000, ..ProptestConfig::default() })]
    #[test]
    #[ignore = "heavy: run with --ignored (release recommended)"]
    fn random_op_sequences_heavy(cfg in cfg_strategy(), ops in prop::collection::vec(gen_op(), 1..=60)) {
        check(&cfg, &ops)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Hand-picked long sequences
// ---------------------------------------------------------------------------------------------

fn mmap(off: u64, len: u64, prot: Prot) -> Op {
    Op::Mmap {
        addr: BASE + off,
        len,
        prot,
        populate: false,
    }
}
fn mmap_pop(off: u64, len: u64, prot: Prot) -> Op {
    Op::Mmap {
        addr: BASE + off,
        len,
        prot,
        populate: true,
    }
}
fn munmap(off: u64, len: u64) -> Op {
    Op::Munmap {
        addr: BASE + off,
        len,
    }
}
fn mprotect(off: u64, len: u64, prot: Prot) -> Op {
    Op::Mprotect {
        addr: BASE + off,
        len,
        prot,
    }
}
fn madv(off: u64, len: u64, advice: Advice) -> Op {
    Op::Madvise {
        addr: BASE + off,
        len,
        advice,
    }
}
fn write(off: u64, n: u32, stride: u64) -> Op {
    Op::Access {
        addr: BASE + off,
        n,
        stride,
        write: true,
    }
}
fn read(off: u64, n: u32, stride: u64) -> Op {
    Op::Access {
        addr: BASE + off,
        n,
        stride,
        write: false,
    }
}

fn sequences() -> Vec<Vec<Op>> {
    use Advice::*;
    let rw = Prot::RW;
    let r = Prot::R;
    let none = Prot::NONE;
    vec![
        // Fault THPs, partially munmap them, then populate over the mixed remains.
        vec![
            mmap(0, 8 * M2, rw),
            madv(0, 8 * M2, Hugepage),
            write(0, 4, M2),
            read(4 * M2, 4, M2),
            munmap(M2 / 2, 64 * K4),
            munmap(3 * M2 - K4, 2 * K4),
            madv(5 * M2 + 8 * K4, 8 * K4, Dontneed),
            write(4 * M2 + 5, 8, 3 * K4 + 5),
            madv(0, 8 * M2, PopulateWrite),
            madv(0, 8 * M2, PopulateRead),
            madv(0, M2 / 2, PopulateWrite),
            madv(0, 8 * M2, Nohugepage),
            write(M2 / 2 + 64 * K4, 16, K4),
            munmap(2 * M2, 2 * M2),
            madv(0, 8 * M2, PopulateRead),
            mmap(2 * M2, 2 * M2, rw),
            madv(0, 8 * M2, PopulateWrite),
            madv(0, 8 * M2, Dontneed),
        ],
        // mprotect pieces back and forth: VMAs split and merge, PMDs split.
        vec![
            mmap(0, 6 * M2, rw),
            madv(0, 6 * M2, Hugepage),
            write(0, 6, M2),
            mprotect(M2 + K4, K4, r),
            mprotect(M2 + K4, K4, rw),
            mprotect(2 * M2, M2, r),
            mprotect(2 * M2, M2, none),
            read(2 * M2, 1, 0),
            mprotect(2 * M2, M2, rw),
            write(2 * M2, 512, K4),
            mprotect(0, 6 * M2, r),
            mprotect(0, 3 * M2, rw),
            mprotect(3 * M2, 3 * M2, rw),
            write(0, 24, M2 / 4),
            mprotect(M2 / 2, 5 * M2, none),
            mprotect(M2 / 2, 5 * M2, rw),
            madv(0, 6 * M2, Random),
            madv(M2, M2, Normal),
            madv(0, 6 * M2, Normal),
            madv(0, 6 * M2, PopulateWrite),
            mprotect(0, 7 * M2, rw),
            munmap(0, 6 * M2),
        ],
        // Huge zero page reads, then writes; mixed with mprotect and holes.
        vec![
            mmap(0, 4 * M2, rw),
            mmap(5 * M2, 3 * M2, rw),
            madv(0, 8 * M2, Hugepage),
            madv(0, 4 * M2, Hugepage),
            madv(5 * M2, 3 * M2, Hugepage),
            read(0, 8, M2),
            mprotect(M2 + 100 * K4, 10 * K4, r),
            write(0, 8, M2),
            write(M2 + 100 * K4, 1, 0),
            mprotect(0, 8 * M2, rw),
            madv(0, 4 * M2, PopulateWrite),
            mmap(4 * M2, M2, rw),
            madv(0, 8 * M2, PopulateRead),
            madv(3 * M2, 3 * M2, Dontneed),
            madv(0, 8 * M2, PopulateWrite),
        ],
        // THP disable through prctl while faulting, populate mappings, PROT_NONE populate.
        vec![
            Op::Prctl(2),
            mmap_pop(0, 4 * M2, rw),
            madv(0, 4 * M2, Hugepage),
            mmap(4 * M2, 4 * M2, rw),
            madv(4 * M2, 2 * M2, Hugepage),
            write(4 * M2, 4, M2),
            Op::Prctl(1),
            mmap_pop(8 * M2, 2 * M2, r),
            mmap_pop(10 * M2, 2 * M2, none),
            madv(8 * M2, 4 * M2, PopulateRead),
            Op::Prctl(0),
            madv(4 * M2, 8 * M2, Hugepage),
            read(6 * M2, 4, M2 / 2),
            write(6 * M2, 4, M2 / 2),
            munmap(M2, 10 * M2),
            Op::Prctl(3),
        ],
        // mTHP: fault partly, split by VMA surgery, DONTNEED the middle, re-fault.
        vec![
            mmap(0, 2 * M2 + 160 * K4, rw),
            write(0, 64, 16 * K4),
            write(2 * M2, 40, K4),
            munmap(24 * K4, 8 * K4),
            mprotect(40 * K4, 24 * K4, r),
            madv(64 * K4, 16 * K4, Dontneed),
            write(64 * K4, 16, K4),
            mprotect(0, 2 * M2 + 160 * K4, rw),
            madv(0, 2 * M2 + 160 * K4, Hugepage),
            madv(0, 2 * M2 + 160 * K4, PopulateWrite),
            munmap(2 * M2 + 4 * K4, 4 * K4),
            madv(0, 3 * M2, PopulateWrite),
            madv(0, 3 * M2, Dontneed),
        ],
    ]
}

fn mthp_cfg(profile: &'static str, memory_mb: u64, enabled: &'static str) -> Cfg {
    let mut c = Cfg::named(profile, memory_mb, enabled);
    c.sizes = [
        "always", "never", "inherit", "madvise", "never", "always", "never", "inherit",
    ];
    c
}

#[test]
fn hand_picked_sequences() {
    let mut cfgs = Vec::new();
    for p in ["6.12", "6.18"] {
        for en in ["always", "madvise", "never"] {
            cfgs.push(Cfg::named(p, 256, en));
            cfgs.push(mthp_cfg(p, 256, en));
        }
        // Tight memory: fallbacks and OOM.
        cfgs.push(Cfg::named(p, 8, "always"));
        cfgs.push(mthp_cfg(p, 4, "always"));
        let mut nz = Cfg::named(p, 16, "madvise");
        nz.use_zero_page = false;
        nz.shrink_underused = false;
        cfgs.push(nz);
    }
    for (i, seq) in sequences().iter().enumerate() {
        for cfg in &cfgs {
            if let Err(e) = run(cfg, seq) {
                panic!("sequence {i}: {e}");
            }
        }
    }
}

/// The VMA flags after a hint advice, from the rules madvise(2) documents and
/// `madvise_vma_behavior` / `hugepage_madvise` (mm/madvise.c, mm/khugepaged.c) implement: the
/// hints come in groups whose members exclude each other. The read-ahead group is
/// {SEQUENTIAL, RANDOM}, and NORMAL means "no read-ahead hint"; the THP group is
/// {HUGEPAGE, NOHUGEPAGE}. An advice leaves its group holding exactly itself and touches no
/// other flag. (Written from the groups, not from the model's set/clear table, so an error in
/// that table shows up here.)
fn hint_flags_after(advice: Advice, flags: u32) -> u32 {
    let groups: [(u32, &[(Advice, u32)]); 2] = [
        (
            VM_SEQ_READ | VM_RAND_READ,
            &[
                (Advice::Normal, 0),
                (Advice::Sequential, VM_SEQ_READ),
                (Advice::Random, VM_RAND_READ),
            ],
        ),
        (
            vmf::HUGEPAGE | vmf::NOHUGEPAGE,
            &[
                (Advice::Hugepage, vmf::HUGEPAGE),
                (Advice::Nohugepage, vmf::NOHUGEPAGE),
            ],
        ),
    ];
    for (group, members) in groups {
        if let Some(&(_, me)) = members.iter().find(|(a, _)| *a == advice) {
            return (flags & !group) | me;
        }
    }
    unreachable!("{advice:?} is not a hint advice")
}
