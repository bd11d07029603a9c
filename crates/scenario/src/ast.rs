//! Typed scenario statements, as the parser produces them. Every statement and every
//! user-written reference carries the `Span` it came from, so errors found after parsing
//! (unknown mapping, out-of-range offset) still point at file:line:col.

use thpsim_kernel::errno::OpError;
use thpsim_kernel::hugetlb::HugePageSize;
use thpsim_kernel::types::{Advice, Prot};

/// A place in the scenario source: 1-based line and column (in characters), and a length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Span {
    pub line: u32,
    pub col: u32,
    pub len: u32,
}

/// A parsed scenario file.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Scenario {
    /// Path as given by the user (used in diagnostics).
    pub file: String,
    pub stmts: Vec<Stmt>,
}

impl Scenario {
    /// Calls `f` on every op, the bodies of `repeat` blocks included (once each: a body is
    /// visited as written, not per iteration).
    pub fn for_each_op(&self, mut f: impl FnMut(&Op)) {
        fn walk(stmts: &[Stmt], f: &mut impl FnMut(&Op)) {
            for st in stmts {
                if let Op::Repeat { body, .. } = &st.op {
                    walk(body, f);
                } else {
                    f(&st.op);
                }
            }
        }
        walk(&self.stmts, &mut f);
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Stmt {
    pub span: Span,
    pub op: Op,
}

/// `key=value` as written in `sysfs` and `set` lines.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Setting {
    pub key: String,
    pub value: String,
    pub span: Span,
}

#[derive(Clone, Debug, serde::Serialize)]
pub enum Op {
    /// `kernel 6.18` — behaviour profile.
    Kernel { profile: String },
    /// `memory 16G` — simulated physical memory.
    Memory { bytes: u64 },
    /// `memcg limit=SIZE [swappiness=N]` — every process in one memory cgroup.
    Memcg(thpsim_kernel::memcontrol::MemcgConfig),
    /// `swap 1G [type=zram|disk|file]` — a swap device of this size and kind.
    Swap {
        bytes: u64,
        device: thpsim_kernel::SwapDevice,
    },
    /// `sysfs enabled=madvise use_zero_page=1 hugepages-64kB.enabled=always …`
    Sysfs { settings: Vec<Setting> },
    /// `set hzp_wp_fault=split …` — behaviour switches over the profile.
    Set { settings: Vec<Setting> },
    /// `catch SIGSEGV SIGBUS` — every process handles these signals by skipping the access
    /// that raised them (as selftests do with `sigsetjmp`); without it, a signal kills the
    /// process. `SIGKILL` (the OOM killer) cannot be caught.
    Catch {
        signals: Vec<thpsim_kernel::errno::Signal>,
    },
    /// `mmap NAME SIZE anon private|shared [prot=..] [align=..] [offset=..] [populate]`
    Mmap(MmapOp),
    /// `munmap RANGE`
    Munmap { range: RangeRef },
    /// `mprotect RANGE PROT`
    Mprotect { range: RangeRef, prot: Prot },
    /// `madvise RANGE ADVICE`
    Madvise { range: RangeRef, advice: Advice },
    /// `read RANGE …`, `write RANGE …`, `access RANGE pattern=rw …`
    Access(AccessOp),
    /// `repeat N` … `end`
    Repeat { count: u32, body: Vec<Stmt> },
    /// `checkpoint LABEL`
    Checkpoint { label: String },
    /// `fork NAME` — the current process forks; the child is called NAME. The current
    /// process stays the parent.
    Fork { child: String },
    /// `as NAME` — later ops run in process NAME (`main` is the first process).
    As { proc: String },
    /// `exit NAME` — process NAME exits; if it was current, `main` becomes current.
    Exit { proc: String },
    /// `khugepaged scan [N]` — run N khugepaged passes now (default 1).
    KhugepagedScan { passes: u32 },
    /// `sleep DURATION` — advance simulated time; khugepaged runs on its schedule.
    Sleep { ms: u64 },
    /// `shrink` — run the deferred-split (and huge-zero) shrinkers, as memory pressure or
    /// `drop_caches` would.
    Shrink,
    /// `kalloc SIZE [order=N] [type=unmovable|reclaimable] [scatter=N]` — unmovable
    /// background allocations (slab, kernel memory of a long-running host).
    Kalloc {
        size: u64,
        order: u8,
        reclaimable: bool,
        scatter: u64,
    },
    /// `compact` — `echo 1 > /proc/sys/vm/compact_memory`.
    Compact,
    /// `mremap RANGE [DST[+OFF]] [size=SIZE]` — with DST, move RANGE to the address of
    /// mapping DST (plus OFF): `MREMAP_MAYMOVE | MREMAP_FIXED`; with `size`, to that new
    /// length (without DST: in place, flags 0). At least one of the two is given.
    Mremap {
        range: RangeRef,
        dst: Option<RangeRef>,
        size: Option<u64>,
    },
    /// `mlock RANGE` / `munlock RANGE`.
    Mlock { range: RangeRef, lock: bool },
    /// `uffd …` — the current process's userfaultfd.
    Uffd(UffdOp),
    /// `prctl set_thp_disable 0|1 [except_advised]` — `PR_SET_THP_DISABLE`.
    PrctlSetThpDisable { disable: bool, except_advised: bool },
    /// `expect OBS CMP VALUE [when COND…]`
    Expect(Expect),
    /// `memfd NAME SIZE` — a shmem object (`memfd_create` + `ftruncate`).
    /// `memfd NAME SIZE hugetlb[=2M|1G]`: a hugetlbfs file (`MFD_HUGETLB | MFD_HUGE_2MB` or
    /// `MFD_HUGE_1GB`), of that page size.
    Memfd {
        name: String,
        size: u64,
        hugetlb: Option<HugePageSize>,
    },
    /// `gmem NAME SIZE [mmap] [init_shared] [flags=N]` — a guest_memfd object
    /// (`KVM_CREATE_GUEST_MEMFD`); `flags` are the `GUEST_MEMFD_FLAG_*` bits.
    Gmem { name: String, size: u64, flags: u64 },
    /// `tmpfs NAME [huge=…] [size=BYTES]` — a tmpfs instance (`mount -t tmpfs`).
    Tmpfs {
        name: String,
        huge: thpsim_kernel::sysfs::ShmemHuge,
        size: Option<u64>,
    },
    /// `file NAME SIZE on=TMPFS` — a shmem object on a tmpfs instance (`open(O_CREAT)` +
    /// `ftruncate`).
    File { name: String, size: u64, on: String },
    /// `ftruncate OBJ SIZE`
    Ftruncate { obj: String, size: u64 },
    /// `fallocate OBJ OFFSET LEN [keep_size] [punch_hole]`
    Fallocate {
        obj: String,
        offset: u64,
        len: u64,
        keep_size: bool,
        punch_hole: bool,
    },
    /// `file NAME SIZE on=disk` — a regular file on the disk filesystem (`open(O_CREAT |
    /// O_TRUNC | O_RDWR)` + `ftruncate`), an object like a memfd.
    DiskFile { name: String, size: u64 },
    /// `msync RANGE [sync] [async] [invalidate]` with the `MS_*` bits.
    Msync { range: RangeRef, flags: u32 },
    /// `fsync OBJ`
    Fsync { obj: String },
}

/// What backs a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum MapBacking {
    Anon,
    /// An object made by `memfd`, `file` or `gmem` (`MmapOp::object`).
    Memfd,
    /// `/dev/zero` (`mmap_zero`): shared is `shmem_zero_setup`, private an anonymous VMA.
    DevZero,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct MmapOp {
    pub name: String,
    pub name_span: Span,
    pub size: u64,
    pub backing: MapBacking,
    pub shared: bool,
    /// Default `rw`.
    pub prot: Prot,
    /// Placement alignment; `None` = the engine's default (2 MiB, or the page size of a
    /// hugetlb mapping).
    pub align: Option<u64>,
    /// Bytes past the aligned address (page multiple), to express misaligned layouts.
    pub offset: u64,
    /// `MAP_POPULATE`.
    pub populate: bool,
    /// The `memfd` object mapped (backing `Memfd`), and the file offset (`foff`).
    pub object: Option<String>,
    pub foff: u64,
    /// `hugetlb[=2M|1G]`: `MAP_HUGETLB` with `MAP_HUGE_2MB` (bare `hugetlb`) or
    /// `MAP_HUGE_1GB` (anonymous mappings; a hugetlb `memfd` object is mapped as hugetlb of
    /// its own size by itself).
    pub hugetlb: Option<HugePageSize>,
    /// `noreserve`: `MAP_NORESERVE`.
    pub noreserve: bool,
    /// `at=NAME+OFF`: `MAP_FIXED` at that place of an earlier mapping (over whatever is
    /// mapped there) instead of a free place of the arena.
    pub at: Option<MapAt>,
}

/// The place of an `at=NAME+OFF` mapping: `offset` bytes past mapping NAME's placed address.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MapAt {
    pub mapping: String,
    pub offset: u64,
    pub span: Span,
}

/// `NAME`, `NAME+OFF` or `NAME+OFF LEN` (also `NAME LEN`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RangeRef {
    pub mapping: String,
    /// `None` when written as a bare `NAME`.
    pub offset: Option<u64>,
    /// `None`: the whole mapping for a bare name, one byte for `NAME+OFF`.
    pub len: Option<u64>,
    pub span: Span,
}

/// The per-page access pattern of an access op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Pattern {
    /// Read one byte at each touched offset.
    Read,
    /// Write one (non-zero) byte at each touched offset.
    Write,
    /// At each touched offset, read the byte and then write it (QEMU's zero-page check).
    ReadWrite,
}

impl Pattern {
    /// Whether each touched offset is read, written (both: read first).
    pub fn read_write(self) -> (bool, bool) {
        match self {
            Pattern::Read => (true, false),
            Pattern::Write => (false, true),
            Pattern::ReadWrite => (true, true),
        }
    }
}

/// A seeded random subset of the touched offsets, visited in a seeded random order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Subset {
    pub count: SubsetCount,
    pub seed: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SubsetCount {
    /// This many offsets (capped at the number available).
    Pages(u64),
    /// This percentage (0..=100) of the offsets, rounded down.
    Percent(u32),
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct AccessOp {
    pub range: RangeRef,
    pub pattern: Pattern,
    /// Default 4 KiB.
    pub stride: u64,
    pub subset: Option<Subset>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    pub fn holds<T: PartialOrd>(self, a: T, b: T) -> bool {
        match self {
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
        }
    }
    pub fn symbol(self) -> &'static str {
        match self {
            Cmp::Eq => "==",
            Cmp::Ne => "!=",
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Observable {
    /// Minor faults of the task since the last checkpoint.
    Minflt,
    /// Major faults of the task since the last checkpoint.
    Majflt,
    /// A counter delta since the last checkpoint, by its full key: `vmstat.<name>`,
    /// `mthp.<size>kB.<stat>`, `khugepaged.<stat>`. `pgfault` parses as `vmstat.pgfault`.
    Counter(String),
    /// `smaps(NAME).<Field>` in kB (current state).
    Smaps {
        mapping: String,
        mapping_span: Span,
        field: String,
    },
    /// `pages(RANGE).<class>`: number of 4 KiB pages of the range with that backing class.
    Pages { range: RangeRef, class: String },
    /// `errno`: the result of the previous op that has one (`0` or `ok` for success).
    Errno,
    /// `uffd.last_flags`: `UFFD_PAGEFAULT_FLAG_*` of the last userfaultfd message.
    UffdLastFlags,
    /// `uffd.last_addr`: the address of the last userfaultfd message, compared with an
    /// address written `NAME+OFF`.
    UffdLastAddr,
    /// `obj(NAME).blocks` (fstat's `st_blocks`, 512-byte units) or `obj(NAME).size`
    /// (`st_size`, i_size in bytes) of a shmem object (current state).
    Object { object: String, field: String },
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum ExpectValue {
    /// Counts, kB values (sizes like `2048kB`/`2M` are converted to kB for smaps), page counts.
    Int(i64),
    /// `ok` / `0` for success.
    Ok,
    /// `EINVAL`, `SIGSEGV`, …
    Err(OpError),
    /// An address: `NAME+OFF` (for `uffd.last_addr`).
    Addr(RangeRef),
}

/// `when kernel>=6.13`, `when hzp_wp_fault=split`: the expectation applies only to runs whose
/// profile/switches satisfy every condition (so one file can state both kernels' answers).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Condition {
    Kernel { cmp: Cmp, version: (u32, u32) },
    Switch { key: String, value: String },
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Expect {
    pub obs: Observable,
    pub cmp: Cmp,
    pub value: ExpectValue,
    pub when: Vec<Condition>,
    /// The source text of the expectation, for reports.
    pub text: String,
}

/// A userfaultfd operation (`uffd open|register|unregister|wp|unwp|copy|zeropage|handler`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum UffdOp {
    /// userfaultfd(2) + UFFDIO_API with these features (`wp_unpopulated`, `wp_async`, …).
    Open {
        features: Vec<String>,
    },
    /// UFFDIO_REGISTER in MISSING, WP and/or MINOR mode.
    Register {
        range: RangeRef,
        missing: bool,
        wp: bool,
        minor: bool,
    },
    Unregister {
        range: RangeRef,
    },
    /// UFFDIO_WRITEPROTECT: `wp` protects, otherwise resolves (mode 0). `stride` > 0: one
    /// ioctl per `stride` bytes in address order (the last one shorter), stopping at the first
    /// error; 0: one ioctl over the range.
    Writeprotect {
        range: RangeRef,
        wp: bool,
        stride: u64,
    },
    /// UFFDIO_COPY (`wp`: with UFFDIO_COPY_MODE_WP).
    Copy {
        range: RangeRef,
        wp: bool,
    },
    /// UFFDIO_ZEROPAGE.
    Zeropage {
        range: RangeRef,
    },
    /// UFFDIO_CONTINUE (`wp`: with UFFDIO_CONTINUE_MODE_WP).
    Continue {
        range: RangeRef,
        wp: bool,
    },
    /// The modelled monitor's policy for WP, MISSING and MINOR faults.
    Handler {
        wp: Option<thpsim_kernel::userfaultfd::WpPolicy>,
        missing: Option<thpsim_kernel::userfaultfd::MissingPolicy>,
        minor: Option<thpsim_kernel::userfaultfd::MinorPolicy>,
    },
}
