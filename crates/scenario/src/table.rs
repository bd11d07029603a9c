//! The one table that defines the scenario ops. The parser dispatches on it (an op cannot
//! exist without an entry here) and the language reference is generated from it.

use crate::parse::{self, LineCtx, Parsed};

/// Parses the arguments of one op line. Reports errors into the context; returns `None` when
/// the line produced no statement.
pub type ParseFn = fn(&mut LineCtx<'_, '_>) -> Option<Parsed>;

/// Where in a file an op may appear.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Setup: at top level, before the first operation (only `kernel`, `memory`, `set`,
    /// `sysfs` may precede it).
    Setup,
    /// Anywhere; does not end the setup section.
    Anywhere,
    /// Anywhere after the setup; the first such op ends the setup section.
    Body,
}

impl Placement {
    pub fn describe(self) -> &'static str {
        match self {
            Placement::Setup => "setup: top level, before the first operation",
            Placement::Anywhere => "anywhere (also in the setup section)",
            Placement::Body => "anywhere after the setup section, also inside `repeat`",
        }
    }
}

pub struct OpSpec {
    pub name: &'static str,
    /// Grammar line.
    pub synopsis: &'static str,
    /// One-paragraph description.
    pub summary: &'static str,
    /// `(argument, meaning)` pairs.
    pub args: &'static [(&'static str, &'static str)],
    /// A complete, valid scenario fragment (parses on its own).
    pub example: &'static str,
    pub placement: Placement,
    pub parse: ParseFn,
}

/// The synopsis of an op by name (empty if unknown).
pub fn synopsis(name: &str) -> &'static str {
    OPS.iter()
        .find(|s| s.name == name)
        .map(|s| s.synopsis)
        .unwrap_or("")
}

const ACCESS_ARGS: &[(&str, &str)] = &[
    ("RANGE", "what to touch: `NAME`, `NAME+OFF` (one byte) or `NAME+OFF LEN`"),
    ("stride=SIZE", "touch one byte every SIZE bytes, starting at the range start (default 4K; > 0)"),
    (
        "random=N | random=P%",
        "touch only a seeded random subset of those offsets, N of them or P percent (rounded down), in a seeded random order",
    ),
    ("seed=S", "the subset's seed (default 0); only together with `random`"),
];

pub const OPS: &[OpSpec] = &[
    OpSpec {
        name: "kernel",
        synopsis: "kernel PROFILE",
        summary: "Chooses the behaviour profile (the kernel version whose choices the model follows). At most once; `compare` and `--profile` can override it. Default: the reference host's kernel.",
        args: &[("PROFILE", "a known profile name (see Profiles below)")],
        example: "kernel 6.18",
        placement: Placement::Setup,
        parse: parse::op_kernel,
    },
    OpSpec {
        name: "memory",
        synopsis: "memory SIZE",
        summary: "Sets the simulated physical memory. At most once.",
        args: &[("SIZE", "a positive multiple of 4M (the largest buddy block, MAX_PAGE_ORDER 10), at most 8T")],
        example: "memory 16G",
        placement: Placement::Setup,
        parse: parse::op_memory,
    },
    OpSpec {
        name: "sysfs",
        synopsis: "sysfs KNOB=VALUE…",
        summary: "Writes THP sysfs knobs (under /sys/kernel/mm/transparent_hugepage/), in order, as `echo VALUE > knob` would. In the setup section the knobs are applied before the first op; later, as an op.",
        args: &[("KNOB=VALUE", "a knob and a value it accepts (see sysfs knobs below)")],
        example: "sysfs enabled=madvise use_zero_page=1 hugepages-64kB.enabled=always",
        placement: Placement::Anywhere,
        parse: parse::op_sysfs,
    },
    OpSpec {
        name: "set",
        synopsis: "set SWITCH=VALUE…",
        summary: "Overrides behaviour switches of the profile (e.g. to try a patch from the mailing list on an older kernel).",
        args: &[("SWITCH=VALUE", "a switch and a value it accepts (see Switches below)")],
        example: "set hzp_wp_fault=split large_folio_cow_reuse=0",
        placement: Placement::Setup,
        parse: parse::op_set,
    },
    OpSpec {
        name: "catch",
        synopsis: "catch SIGNAL…",
        summary: "Every process handles these signals (as kernel selftests do with a handler and `sigsetjmp`): an access that raises one stops there, the op reports the signal (see `expect errno`) and the process goes on. Without `catch`, a SIGSEGV or SIGBUS kills the process, like an OOM kill (SIGKILL, which cannot be caught): the report says so and the ops the killed process would run after it are not run (`exit NAME` still reaps it).",
        args: &[("SIGNAL", "`SIGSEGV` or `SIGBUS`")],
        example: "catch SIGSEGV SIGBUS",
        placement: Placement::Setup,
        parse: parse::op_catch,
    },
    OpSpec {
        name: "mmap",
        synopsis: "mmap NAME SIZE anon private [PROT | prot=PROT] [align=SIZE] [offset=SIZE] [populate]",
        summary: "Creates an anonymous mapping named NAME. Host and model place it at the same arena offset: aligned to `align`, plus `offset` bytes (to build misaligned layouts). Options after `private` may come in any order. `shared`, and the backings `file`, `memfd`, `shmem`, `guest_memfd` are recognised but refused as not modelled yet.",
        args: &[
            ("NAME", "identifier `[A-Za-z_][A-Za-z0-9_]*`, unique in the file"),
            ("SIZE", "length: a positive multiple of 4K, at most 64T"),
            ("anon", "the backing (only anonymous memory is modelled)"),
            ("private", "MAP_PRIVATE (`shared` is not modelled yet)"),
            ("PROT", "`none` or letters from `rwx` (default `rw`), positional or as prot=PROT"),
            ("align=SIZE", "placement alignment, a power of two from 4K to 64T (default: the engine's, 2M)"),
            ("offset=SIZE", "bytes added to the aligned address, a multiple of 4K (default 0)"),
            ("populate", "MAP_POPULATE"),
        ],
        example: "mmap buf 4M anon private rw align=2M offset=4K populate",
        placement: Placement::Body,
        parse: parse::op_mmap,
    },
    OpSpec {
        name: "munmap",
        synopsis: "munmap RANGE",
        summary: "munmap(2) of a range (page-unaligned ranges fail like the kernel's, see `expect errno`).",
        args: &[("RANGE", "`NAME`, `NAME+OFF` or `NAME+OFF LEN`")],
        example: "mmap buf 4M anon private\nmunmap buf+2M 2M",
        placement: Placement::Body,
        parse: parse::op_munmap,
    },
    OpSpec {
        name: "mprotect",
        synopsis: "mprotect RANGE PROT",
        summary: "mprotect(2) of a range.",
        args: &[("RANGE", "`NAME`, `NAME+OFF` or `NAME+OFF LEN`"), ("PROT", "`none` or letters from `rwx` (also prot=PROT)")],
        example: "mmap buf 4M anon private\nmprotect buf+0 2M r",
        placement: Placement::Body,
        parse: parse::op_mprotect,
    },
    OpSpec {
        name: "madvise",
        synopsis: "madvise RANGE ADVICE",
        summary: "madvise(2) of a range. Advice values the model does not implement yet are refused by the checker instead of being ignored.",
        args: &[
            ("RANGE", "`NAME`, `NAME+OFF` or `NAME+OFF LEN`"),
            ("ADVICE", "`HUGEPAGE` or `MADV_HUGEPAGE`, any case (see Advice below)"),
        ],
        example: "mmap buf 2M anon private\nmadvise buf HUGEPAGE",
        placement: Placement::Body,
        parse: parse::op_madvise,
    },
    OpSpec {
        name: "read",
        synopsis: "read RANGE [stride=SIZE] [random=N|random=P%] [seed=S]",
        summary: "Reads one byte at each touched offset of the range. Stops at the first access that raises a signal (see `expect errno`).",
        args: ACCESS_ARGS,
        example: "mmap buf 2M anon private\nread buf+0\nread buf stride=64K\nread buf random=10% seed=7",
        placement: Placement::Body,
        parse: parse::op_read,
    },
    OpSpec {
        name: "write",
        synopsis: "write RANGE [stride=SIZE] [random=N|random=P%] [seed=S]",
        summary: "Writes one non-zero byte at each touched offset of the range.",
        args: ACCESS_ARGS,
        example: "mmap buf 2M anon private\nwrite buf+4K\nwrite buf+0 1M stride=4K random=16 seed=1",
        placement: Placement::Body,
        parse: parse::op_write,
    },
    OpSpec {
        name: "access",
        synopsis: "access RANGE pattern=r|w|rw [stride=SIZE] [random=N|random=P%] [seed=S]",
        summary: "Touches the range with a per-offset pattern: `r` reads, `w` writes, `rw` reads the byte and then writes it (QEMU's zero-page check).",
        args: &[
            ("RANGE", "what to touch: `NAME`, `NAME+OFF` (one byte) or `NAME+OFF LEN`"),
            ("pattern=r|w|rw", "what to do at each touched offset (required)"),
            ("stride=SIZE", "touch one byte every SIZE bytes (default 4K; > 0)"),
            ("random=N | random=P%", "a seeded random subset of the offsets, in a seeded random order"),
            ("seed=S", "the subset's seed (default 0); only together with `random`"),
        ],
        example: "mmap buf 2M anon private\naccess buf pattern=rw random=30% seed=42",
        placement: Placement::Body,
        parse: parse::op_access,
    },
    OpSpec {
        name: "repeat",
        synopsis: "repeat N",
        summary: "Runs the following statements up to the matching `end` N times. Blocks nest. There are no braces: a block is closed by a line `end`.",
        args: &[("N", "1 to 4294967295")],
        example: "mmap buf 2M anon private\nrepeat 3\n  write buf+0\n  madvise buf DONTNEED\nend",
        placement: Placement::Body,
        parse: parse::op_repeat,
    },
    OpSpec {
        name: "end",
        synopsis: "end",
        summary: "Closes the innermost `repeat` block.",
        args: &[],
        example: "repeat 2\n  checkpoint loop\nend",
        placement: Placement::Body,
        parse: parse::op_end,
    },
    OpSpec {
        name: "fork",
        synopsis: "fork NAME",
        summary: "fork(2) of the current process: the child NAME gets a copy of the address space (anonymous pages shared copy-on-write, THPs shared by PMD, huge zero PMDs copied). The current process stays the parent.",
        args: &[("NAME", "the child's name, an identifier not used before (`main` is the first process)")],
        example: "fork child",
        placement: Placement::Body,
        parse: parse::op_fork,
    },
    OpSpec {
        name: "as",
        synopsis: "as NAME",
        summary: "Later ops run in process NAME, and `smaps(…)`/`pages(…)` observe its address space. Mapping names refer to the same addresses in every process.",
        args: &[("NAME", "`main` or a process created by `fork`")],
        example: "fork child\nas child",
        placement: Placement::Body,
        parse: parse::op_as,
    },
    OpSpec {
        name: "exit",
        synopsis: "exit NAME",
        summary: "Process NAME exits: its address space is torn down (pages only it mapped are freed). If it was the current process, `main` becomes current. `main` cannot exit.",
        args: &[("NAME", "a process created by `fork`")],
        example: "fork child\nexit child",
        placement: Placement::Body,
        parse: parse::op_exit,
    },
    OpSpec {
        name: "khugepaged",
        synopsis: "khugepaged scan [N]",
        summary: "Runs N passes of khugepaged now (`khugepaged_do_scan`, default 1), each examining up to `khugepaged.pages_to_scan` pages' worth of 2 MiB ranges of registered processes.",
        args: &[("N", "number of passes, ≥ 1")],
        example: "khugepaged scan 4",
        placement: Placement::Body,
        parse: parse::op_khugepaged,
    },
    OpSpec {
        name: "sleep",
        synopsis: "sleep DURATION",
        summary: "Advances simulated time; khugepaged runs passes on its own schedule (`scan_sleep_millisecs` between passes) while time passes.",
        args: &[("DURATION", "a number with a unit: `ms`, `s`, `m`, `h` (e.g. `10s`)")],
        example: "sleep 10s",
        placement: Placement::Body,
        parse: parse::op_sleep,
    },
    OpSpec {
        name: "shrink",
        synopsis: "shrink",
        summary: "Runs the shrinkers that memory pressure or `echo 2 > /proc/sys/vm/drop_caches` run: the deferred-split shrinker (splits partially mapped and underused THPs) and the huge-zero shrinker (frees the huge zero page when no process holds it).",
        args: &[],
        example: "shrink",
        placement: Placement::Body,
        parse: parse::op_shrink,
    },
    OpSpec {
        name: "mremap",
        synopsis: "mremap RANGE DST[+OFF]",
        summary: "mremap(2) with MREMAP_MAYMOVE|MREMAP_FIXED: moves RANGE (inside one VMA) to the address of mapping DST plus OFF, same size; whatever is there is unmapped first. Where source and destination are both 2 MiB-aligned a huge PMD moves whole; otherwise it is split. Observe the moved memory through DST.",
        args: &[("RANGE", "the source, inside one VMA"), ("DST[+OFF]", "a mapping declared by `mmap` (its placement gives the address) and an optional page-multiple offset")],
        example: "mmap src 2M anon private rw\nmmap dst 4M anon private rw\nmremap src dst+4K",
        placement: Placement::Body,
        parse: parse::op_mremap,
    },
    OpSpec {
        name: "mlock",
        synopsis: "mlock RANGE",
        summary: "mlock(2): VM_LOCKED on the range (VMA split, so part of a THP splits its PMD), then the range is populated (write faults in private writable mappings). ENOMEM at a hole.",
        args: &[("RANGE", "as for munmap")],
        example: "mmap buf 2M anon private rw\nmlock buf+0 4K",
        placement: Placement::Body,
        parse: parse::op_mlock,
    },
    OpSpec {
        name: "munlock",
        synopsis: "munlock RANGE",
        summary: "munlock(2): clears VM_LOCKED (VMAs merge back).",
        args: &[("RANGE", "as for munmap")],
        example: "mmap buf 2M anon private rw\nmunlock buf",
        placement: Placement::Body,
        parse: parse::op_munlock,
    },
    OpSpec {
        name: "uffd",
        synopsis: "uffd open [FEATURE…] | register RANGE missing|wp|missing+wp | unregister RANGE | wp RANGE [stride=SIZE] | unwp RANGE [stride=SIZE] | copy RANGE [wp] | zeropage RANGE | handler [wp=POLICY] [missing=POLICY]",
        summary: "userfaultfd of the current process (one per process): `open` is userfaultfd(2) + UFFDIO_API with features (`wp_unpopulated`, `wp_async`, `sigbus`, `exact_address`, `thread_id`, `event_fork`); `register`/`unregister` are UFFDIO_(UN)REGISTER; `wp`/`unwp` are UFFDIO_WRITEPROTECT with mode WP / 0, one ioctl over the range or, with `stride=SIZE` (a multiple of 4K), one per SIZE in address order (the last one shorter; stops at the first error), as a monitor that resolves page by page does; `copy` and `zeropage` fill missing pages (order 0, EEXIST on populated ones). A fault that reaches userfaultfd is resolved by a modelled monitor: `handler wp=unprotect:4K` (default; also `unprotect:2M`, `unprotect:vma`) and `missing=copy:4K` (default; also `zeropage:SIZE`). Messages are counted as `uffd.events`, `uffd.missing`, `uffd.wp`, `uffd.write`.",
        args: &[
            ("RANGE", "as for other ops"),
            ("POLICY", "`unprotect:SIZE`, `unprotect:vma` (wp); `copy:SIZE`, `zeropage:SIZE` (missing); SIZE a power of two ≥ 4K"),
        ],
        example: "mmap ram 4M anon private rw\nuffd open wp_unpopulated\nuffd register ram wp\nuffd wp ram\nuffd handler wp=unprotect:4K",
        placement: Placement::Body,
        parse: parse::op_uffd,
    },
    OpSpec {
        name: "prctl",
        synopsis: "prctl set_thp_disable 0|1 [except_advised]",
        summary: "prctl(PR_SET_THP_DISABLE, …) for the running process: `1` disables THP completely, `1 except_advised` (6.18+, PR_THP_DISABLE_EXCEPT_ADVISED) keeps THP only in MADV_HUGEPAGE ranges, `0` re-enables. The result is the op's errno (EINVAL where the kernel refuses).",
        args: &[
            ("set_thp_disable", "the only prctl option modelled"),
            ("0|1", "the PR_SET_THP_DISABLE argument"),
            ("except_advised", "pass PR_THP_DISABLE_EXCEPT_ADVISED as flags"),
        ],
        example: "prctl set_thp_disable 1 except_advised",
        placement: Placement::Body,
        parse: parse::op_prctl,
    },
    OpSpec {
        name: "checkpoint",
        synopsis: "checkpoint LABEL",
        summary: "Marks a point in the run: reports show the observables here, and counter expectations after it are deltas since this point.",
        args: &[("LABEL", "letters, digits, `_`, `.`, `-`; unique in the file")],
        example: "checkpoint after-populate",
        placement: Placement::Body,
        parse: parse::op_checkpoint,
    },
    OpSpec {
        name: "expect",
        synopsis: "expect OBSERVABLE CMP VALUE [when COND…]",
        summary: "Asserts an observable, so that a scenario is its own test. Counters (`minflt`, `vmstat.*`, `mthp.*`, `khugepaged.*`) are deltas since the last checkpoint (or the start); `smaps(…)` and `pages(…)` are the current state; `errno` is the result of the previous op.",
        args: &[
            ("OBSERVABLE", "see Observables below"),
            ("CMP", "`==`, `!=`, `<`, `<=`, `>`, `>=` (errno: `==`, `!=` only)"),
            (
                "VALUE",
                "an integer (may be negative: counters are deltas); for smaps a size in kB (`2048kB`, `2M`, `4K`; a bare number is kB); for errno `ok`, `0`, an errno name or a signal",
            ),
            (
                "when COND…",
                "the expectation only applies to runs whose profile satisfies every condition: `kernel<cmp>MAJOR.MINOR` (`kernel>=6.13`, `kernel=6.12`) or `SWITCH=VALUE`",
            ),
        ],
        example: "mmap buf 2M anon private\nwrite buf+0\nexpect minflt == 1\nexpect vmstat.thp_fault_alloc == 1 when kernel>=6.13\nexpect smaps(buf).AnonHugePages == 2M when hzp_wp_fault=thp\nexpect pages(buf+0 1M).thp_pmd >= 0\nexpect errno == ok",
        placement: Placement::Body,
        parse: parse::op_expect,
    },
];
