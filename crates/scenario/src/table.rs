//! The one table that defines the scenario ops. The parser dispatches on it (an op cannot
//! exist without an entry here) and the language reference is generated from it.

use thpsim_kernel::types::PAGE_SIZE;

use crate::parse::{self, LineCtx, Parsed, MAX_MAPPING};

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

/// The value an option takes.
#[derive(Clone, Copy, Debug)]
pub enum ValueKind {
    /// A bare word without a value (`populate`).
    Flag,
    /// A size, checked against the rule after it parses.
    Size(SizeRule),
    /// A non-negative integer, decimal or `0x` hex.
    Uint,
    /// `N` (a count) or `P%` (a percentage from 0 to 100).
    CountOrPercent,
    /// One of these words.
    Choice(&'static [&'static str]),
    /// A bare flag meaning the first of these words, or `key=` one of them
    /// (`hugetlb` = `hugetlb=2M`, `hugetlb=1G`).
    FlagOrChoice(&'static [&'static str]),
    /// An identifier naming something made earlier (a `tmpfs` instance for `file on=`).
    Name,
    /// An address in the arena: `NAME` or `NAME+OFF`, the placed address of a mapping made
    /// earlier plus a page-multiple offset (which may lie past the mapping's end).
    MapAddr,
    /// A protection: `none` or letters from `rwx`. Also accepted without `key=`.
    Prot,
    /// A userfaultfd monitor policy `ACTION:SIZE` (SIZE a power of two ≥ 4K, default 4K),
    /// or `ACTION:vma` for the actions marked `true`.
    Policy(&'static [(&'static str, bool)]),
}

/// Limits of a size option.
#[derive(Clone, Copy, Debug)]
pub struct SizeRule {
    pub min: u64,
    pub max: u64,
    /// The value must be a multiple of this (1: any).
    pub multiple: u64,
    pub pow2: bool,
    /// The message when a value breaks the rule; `{}` stands for the value as written.
    pub broken: &'static str,
}

impl SizeRule {
    pub fn allows(&self, v: u64) -> bool {
        v >= self.min
            && v <= self.max
            && v % self.multiple.max(1) == 0
            && (!self.pow2 || v.is_power_of_two())
    }
}

/// One option of an op (`key=value`, or a bare flag): the parser, its "did you mean" hints,
/// the usage line and the language reference all read this.
#[derive(Clone, Copy, Debug)]
pub struct OptSpec {
    pub key: &'static str,
    pub kind: ValueKind,
    /// The placeholder of the value in the synopsis (`SIZE`, `S`).
    pub meta: &'static str,
    /// What the value is called in messages (`alignment`, `random count`).
    pub what: &'static str,
    /// Must be given (written without brackets in the synopsis).
    pub required: bool,
    /// The value when the option is absent, as the reference states it.
    pub default: Option<&'static str>,
    pub doc: &'static str,
}

impl OptSpec {
    /// How the synopsis writes the option: `[align=SIZE]`, `[populate]`, `pattern=r|w|rw`,
    /// `[PROT | prot=PROT]`.
    pub fn usage(&self) -> String {
        let form = match self.kind {
            ValueKind::Flag => self.key.to_string(),
            ValueKind::FlagOrChoice(_) => format!("{}[={}]", self.key, self.meta),
            ValueKind::Prot => format!("{} | {}={}", self.meta, self.key, self.meta),
            _ => format!("{}={}", self.key, self.meta),
        };
        if self.required {
            form
        } else {
            format!("[{form}]")
        }
    }
}

/// A sub-command of an op (`uffd wp RANGE [stride=SIZE]`).
pub struct SubSpec {
    pub name: &'static str,
    /// Positional arguments after the sub-command's name.
    pub grammar: &'static str,
    pub opts: &'static [OptSpec],
}

pub struct OpSpec {
    pub name: &'static str,
    /// The positional part of the grammar line after the op's name (`RANGE PROT`); the
    /// options (or the sub-commands) follow it in [`OpSpec::synopsis`].
    pub grammar: &'static str,
    /// One-paragraph description.
    pub summary: &'static str,
    /// `(argument, meaning)` pairs for the positional arguments.
    pub args: &'static [(&'static str, &'static str)],
    /// The options, in synopsis order.
    pub opts: &'static [OptSpec],
    /// Sub-commands (`uffd open`, `uffd wp`, …), if the op has them.
    pub subs: &'static [SubSpec],
    /// A complete, valid scenario fragment (parses on its own).
    pub example: &'static str,
    pub placement: Placement,
    pub parse: ParseFn,
}

/// `head`, then each non-empty part, separated by spaces.
fn grammar_line(head: &str, grammar: &str, opts: &[OptSpec]) -> String {
    let mut s = head.to_string();
    for part in std::iter::once(grammar.to_string()).chain(opts.iter().map(OptSpec::usage)) {
        if !part.is_empty() {
            s.push(' ');
            s.push_str(&part);
        }
    }
    s
}

impl SubSpec {
    /// `uffd wp RANGE [stride=SIZE]`.
    pub fn synopsis(&self, op: &str) -> String {
        grammar_line(&format!("{op} {}", self.name), self.grammar, self.opts)
    }
}

impl OpSpec {
    /// The grammar line: the op, its positional arguments, its options in order (or its
    /// sub-commands, separated by `|`).
    pub fn synopsis(&self) -> String {
        if self.subs.is_empty() {
            return grammar_line(self.name, self.grammar, self.opts);
        }
        let subs: Vec<String> = self
            .subs
            .iter()
            .map(|s| grammar_line(s.name, s.grammar, s.opts))
            .collect();
        format!("{} {}", self.name, subs.join(" | "))
    }

    pub fn sub(&self, name: &str) -> Option<&'static SubSpec> {
        self.subs.iter().find(|s| s.name == name)
    }
}

/// The spec of an op by name.
pub fn spec(name: &str) -> Option<&'static OpSpec> {
    OPS.iter().find(|s| s.name == name)
}

/// The synopsis of an op by name (empty if unknown).
pub fn synopsis(name: &str) -> String {
    spec(name).map(OpSpec::synopsis).unwrap_or_default()
}

/// The names of the ops allowed only in the setup section, for hints.
pub fn setup_ops() -> Vec<&'static str> {
    OPS.iter()
        .filter(|s| s.placement == Placement::Setup)
        .map(|s| s.name)
        .collect()
}

const RANGE_ARG: (&str, &str) = (
    "RANGE",
    "what to touch: `NAME`, `NAME+OFF` (one byte) or `NAME+OFF LEN`",
);

/// The options of `access`; `read` and `write` take all but the first (their pattern is
/// fixed).
const ACCESS_OPTS: &[OptSpec] = &[
    OptSpec {
        key: "pattern",
        kind: ValueKind::Choice(&["r", "w", "rw"]),
        meta: "r|w|rw",
        what: "pattern",
        required: true,
        default: None,
        doc: "what to do at each touched offset: `r` reads, `w` writes, `rw` reads then writes",
    },
    OptSpec {
        key: "stride",
        kind: ValueKind::Size(SizeRule {
            min: 1,
            max: u64::MAX,
            multiple: 1,
            pow2: false,
            broken: "stride must be greater than 0",
        }),
        meta: "SIZE",
        what: "stride",
        required: false,
        default: Some("4K"),
        doc: "touch one byte every SIZE bytes, starting at the range start (> 0)",
    },
    OptSpec {
        key: "random",
        kind: ValueKind::CountOrPercent,
        meta: "N|P%",
        what: "random count",
        required: false,
        default: None,
        doc: "touch only a seeded random subset of those offsets, N of them or P percent (rounded down), in a seeded random order",
    },
    OptSpec {
        key: "seed",
        kind: ValueKind::Uint,
        meta: "S",
        what: "seed",
        required: false,
        default: Some("0"),
        doc: "the subset's seed; only together with `random`",
    },
];

/// `read` and `write`: the access options without `pattern`.
const FIXED_ACCESS_OPTS: &[OptSpec] = ACCESS_OPTS.split_at(1).1;

const UFFD_STRIDE: &[OptSpec] = &[OptSpec {
    key: "stride",
    kind: ValueKind::Size(SizeRule {
        min: PAGE_SIZE,
        max: u64::MAX,
        multiple: PAGE_SIZE,
        pow2: false,
        broken: "stride `{}` must be a positive multiple of 4K",
    }),
    meta: "SIZE",
    what: "stride",
    required: false,
    default: None,
    doc: "one ioctl per SIZE bytes in address order (the last one shorter; stops at the first error), as a monitor that resolves page by page does; without it, one ioctl over the range",
}];

const UFFD_SUBS: &[SubSpec] = &[
    SubSpec {
        name: "open",
        grammar: "[FEATURE…]",
        opts: &[],
    },
    SubSpec {
        name: "register",
        grammar: "RANGE missing|wp|minor|missing+wp|…",
        opts: &[],
    },
    SubSpec {
        name: "unregister",
        grammar: "RANGE",
        opts: &[],
    },
    SubSpec {
        name: "wp",
        grammar: "RANGE",
        opts: UFFD_STRIDE,
    },
    SubSpec {
        name: "unwp",
        grammar: "RANGE",
        opts: UFFD_STRIDE,
    },
    SubSpec {
        name: "copy",
        grammar: "RANGE",
        opts: &[OptSpec {
            key: "wp",
            kind: ValueKind::Flag,
            meta: "",
            what: "`wp`",
            required: false,
            default: None,
            doc: "UFFDIO_COPY_MODE_WP: the copied pages stay write-protected",
        }],
    },
    SubSpec {
        name: "zeropage",
        grammar: "RANGE",
        opts: &[],
    },
    SubSpec {
        name: "continue",
        grammar: "RANGE",
        opts: &[OptSpec {
            key: "wp",
            kind: ValueKind::Flag,
            meta: "",
            what: "`wp`",
            required: false,
            default: None,
            doc: "UFFDIO_CONTINUE_MODE_WP: the mapped pages stay write-protected (needs WP registration, else EINVAL)",
        }],
    },
    SubSpec {
        name: "handler",
        grammar: "",
        opts: &[
            OptSpec {
                key: "wp",
                kind: ValueKind::Policy(&[("unprotect", true)]),
                meta: "POLICY",
                what: "wp policy",
                required: false,
                default: Some("unprotect:4K"),
                doc: "how the monitor resolves a write-protect fault: `unprotect:SIZE` (also `unprotect:2M`) or `unprotect:vma`",
            },
            OptSpec {
                key: "missing",
                kind: ValueKind::Policy(&[("copy", false), ("zeropage", false)]),
                meta: "POLICY",
                what: "missing policy",
                required: false,
                default: Some("copy:4K"),
                doc: "how the monitor resolves a missing fault: `copy:SIZE` or `zeropage:SIZE`",
            },
            OptSpec {
                key: "minor",
                kind: ValueKind::Policy(&[("continue", false)]),
                meta: "POLICY",
                what: "minor policy",
                required: false,
                default: Some("continue:4K"),
                doc: "how the monitor resolves a minor fault: `continue:SIZE` (UFFDIO_CONTINUE of the block's pages the page cache holds and the page table lacks)",
            },
        ],
    },
];

pub const OPS: &[OpSpec] = &[
    OpSpec {
        name: "kernel",
        grammar: "PROFILE",
        summary: "Chooses the behaviour profile (the kernel version whose choices the model follows). At most once; `compare` and `--profile` can override it. Default: the reference host's kernel.",
        args: &[("PROFILE", "a known profile name (see Profiles below)")],
        opts: &[],
        subs: &[],
        example: "kernel 6.18",
        placement: Placement::Setup,
        parse: parse::op_kernel,
    },
    OpSpec {
        name: "memory",
        grammar: "SIZE",
        summary: "Sets the simulated physical memory. At most once.",
        args: &[("SIZE", "a positive multiple of 4M (the largest buddy block, MAX_PAGE_ORDER 10), at most 8T")],
        opts: &[],
        subs: &[],
        example: "memory 16G",
        placement: Placement::Setup,
        parse: parse::op_memory,
    },
    OpSpec {
        name: "swap",
        grammar: "SIZE",
        summary: "Adds a swap device of SIZE (priority 32767), the only swap of the run; `madvise … PAGEOUT` writes anonymous pages to it and faults read them back. At most once. The host runs it only with `--allow-swap` (it sets the device up and tears it down, and refuses to run while zswap is on) and skips the scenario otherwise. Swap-ins that go through the swap cache read ahead as the kernel does (`mm/swap_state.c`): by virtual address around the fault (`swap_vma_readahead`, the window per VMA from its hits) unless `swap.vma_ra_enabled=false` or the device is rotational (`disk` and `file`, as on the reference host), then by swap offset (`swap_cluster_readahead`, global state); at most `1 << vm.page-cluster` pages (knob, default 3; 0 turns readahead off; VMA readahead at most 32). zram swaps a page in without the swap cache while one PTE names its slot.",
        args: &[("SIZE", "a multiple of 4K from 8K to 64G (the first page is the swap header)")],
        opts: &[OptSpec {
            key: "type",
            kind: ValueKind::Choice(&["zram", "disk", "file"]),
            meta: "zram|disk|file",
            what: "swap device kind",
            required: false,
            default: Some("zram"),
            doc: "`zram`: synchronous I/O (/dev/zram0 on the host): written folios are freed at once and a swap-in of an unshared slot skips the swap cache. `disk`: a block device with asynchronous I/O (on the host a loop device over a file the run creates on the root filesystem): written folios stay in the swap cache until later reclaim, faults find them there (a large folio is mapped whole by PTEs), every swap-in goes through the swap cache. `file`: a swap file on the root filesystem (ext4), asynchronous like `disk`, and it gets no slots for large folios: every THP and mTHP is split before swap-out (`thp_swpout_fallback`)",
        }],
        subs: &[],
        example: "swap 1G",
        placement: Placement::Setup,
        parse: parse::op_swap,
    },
    OpSpec {
        name: "memcg",
        grammar: "",
        summary: "Puts every process of the run into one memory cgroup (cgroup v1) with `memory.limit_in_bytes` SIZE: each folio a process allocates (anonymous, shmem, memfd, tmpfs and disk-file page cache) and each page table is charged to it, and uncharged when freed. A large folio whose charge does not fit falls back (`thp_fault_fallback_charge`, `anon_fault_fallback_charge`, `shmem_fallback_charge`, `thp_file_fallback_charge`, `swpin_fallback_charge`; khugepaged and MADV_COLLAPSE fail with SCAN_CGROUP_CHARGE_FAIL, EBUSY); an order-0 charge that does not fit ends in the memcg OOM killer, which SIGKILLs the process with the highest badness. Observables `memcg.usage`, `memcg.failcnt`, `memcg.oom_kill`, `memcg.rss`, `memcg.rss_huge`, `memcg.shmem`, `memcg.cache`, `memcg.swap` (bytes as in memory.stat). Limit reclaim runs the memcg-aware deferred-split shrinker; LRU reclaim (swapping anonymous or shmem pages, dropping page cache or lazy-free pages) is not modelled: the model refuses a run whose charge would need it. At most once. The host runs it only with `--allow-memcg` (a child memory cgroup of the runner's own, made and removed by the run) and skips the scenario otherwise.",
        args: &[],
        opts: &[
            OptSpec {
                key: "limit",
                kind: ValueKind::Size(SizeRule {
                    min: 1 << 20,
                    max: 1 << 40,
                    multiple: PAGE_SIZE,
                    pow2: false,
                    broken: "memcg limit {} is not a multiple of 4K between 1M and 1T",
                }),
                meta: "SIZE",
                what: "memory limit",
                required: true,
                default: None,
                doc: "`memory.limit_in_bytes`: the page counter's maximum (charged pages, page tables and the per-CPU charge stock)",
            },
            OptSpec {
                key: "swappiness",
                kind: ValueKind::Uint,
                meta: "N",
                what: "swappiness",
                required: false,
                default: Some("60"),
                doc: "`memory.swappiness` (0 to 200): with 0 limit reclaim does not swap anonymous memory",
            },
        ],
        subs: &[],
        example: "memcg limit=32M swappiness=0",
        placement: Placement::Setup,
        parse: parse::op_memcg,
    },
    OpSpec {
        name: "sysfs",
        grammar: "KNOB=VALUE…",
        summary: "Writes THP sysfs knobs (under /sys/kernel/mm/transparent_hugepage/), in order, as `echo VALUE > knob` would. In the setup section the knobs are applied before the first op; later, as an op.",
        args: &[("KNOB=VALUE", "a knob and a value it accepts (see sysfs knobs below)")],
        opts: &[],
        subs: &[],
        example: "sysfs enabled=madvise use_zero_page=1 hugepages-64kB.enabled=always",
        placement: Placement::Anywhere,
        parse: parse::op_sysfs,
    },
    OpSpec {
        name: "set",
        grammar: "SWITCH=VALUE…",
        summary: "Overrides behaviour switches of the profile (e.g. to try a patch from the mailing list on an older kernel).",
        args: &[("SWITCH=VALUE", "a switch and a value it accepts (see Switches below)")],
        opts: &[],
        subs: &[],
        example: "set hzp_wp_fault=split large_folio_cow_reuse=0",
        placement: Placement::Setup,
        parse: parse::op_set,
    },
    OpSpec {
        name: "catch",
        grammar: "SIGNAL…",
        summary: "Every process handles these signals (as kernel selftests do with a handler and `sigsetjmp`): an access that raises one stops there, the op reports the signal (see `expect errno`) and the process goes on. Without `catch`, a SIGSEGV or SIGBUS kills the process, like an OOM kill (SIGKILL, which cannot be caught): the report says so and the ops the killed process would run after it are not run (`exit NAME` still reaps it).",
        args: &[("SIGNAL", "`SIGSEGV` or `SIGBUS`")],
        opts: &[],
        subs: &[],
        example: "catch SIGSEGV SIGBUS",
        placement: Placement::Setup,
        parse: parse::op_catch,
    },
    OpSpec {
        name: "mmap",
        grammar: "NAME SIZE anon private",
        summary: "Creates an anonymous mapping named NAME. Host and model place it at the same arena offset: aligned to `align`, plus `offset` bytes (to build misaligned layouts). Options after `private`/`shared` may come in any order. `anon shared` is `MAP_SHARED|MAP_ANONYMOUS`: a shmem object of the mapping's size, following `shmem_enabled` and the per-size `hugepages-<N>kB.shmem_enabled` knobs. `zero` maps `/dev/zero`: `shared` is `shmem_zero_setup` (the same shmem object as `anon shared`), `private` an anonymous VMA (smaps names it `/dev/zero`, the pages are anonymous). A `memfd`, `file` or `gmem` object is mapped by its name (`foff` is the offset into it).",
        args: &[
            ("NAME", "identifier `[A-Za-z_][A-Za-z0-9_]*`, unique in the file"),
            ("SIZE", "length: a positive multiple of 4K, at most 64T"),
            ("anon", "the backing: `anon`, `zero` (/dev/zero), or the name of a shmem object made by `memfd` or `file` earlier (then `foff` is the file offset)"),
            ("private", "MAP_PRIVATE, or `shared`: MAP_SHARED (anonymous shared memory is shmem)"),
        ],
        opts: &[
            OptSpec {
                key: "prot",
                kind: ValueKind::Prot,
                meta: "PROT",
                what: "protection",
                required: false,
                default: Some("rw"),
                doc: "`none` or letters from `rwx`, positional or as prot=PROT",
            },
            OptSpec {
                key: "align",
                kind: ValueKind::Size(SizeRule {
                    min: PAGE_SIZE,
                    max: MAX_MAPPING,
                    multiple: 1,
                    pow2: true,
                    broken: "alignment {} is not a power of two between 4K and 64T",
                }),
                meta: "SIZE",
                what: "alignment",
                required: false,
                default: Some("the engine's, 2M (1G for a 1 GiB hugetlb mapping)"),
                doc: "placement alignment, a power of two from 4K to 64T",
            },
            OptSpec {
                key: "offset",
                kind: ValueKind::Size(SizeRule {
                    min: 0,
                    max: MAX_MAPPING,
                    multiple: PAGE_SIZE,
                    pow2: false,
                    broken: "placement offset {} is not a multiple of the 4K page size (at most 64T)",
                }),
                meta: "SIZE",
                what: "placement offset",
                required: false,
                default: Some("0"),
                doc: "bytes added to the aligned address, a multiple of 4K",
            },
            OptSpec {
                key: "foff",
                kind: ValueKind::Size(SizeRule {
                    min: 0,
                    max: MAX_MAPPING,
                    multiple: PAGE_SIZE,
                    pow2: false,
                    broken: "file offset {} is not a multiple of the 4K page size (at most 64T)",
                }),
                meta: "SIZE",
                what: "file offset",
                required: false,
                default: Some("0"),
                doc: "offset into the object (`memfd`/`file` backings only), a multiple of 4K",
            },
            OptSpec {
                key: "populate",
                kind: ValueKind::Flag,
                meta: "",
                what: "`populate`",
                required: false,
                default: None,
                doc: "MAP_POPULATE",
            },
            OptSpec {
                key: "at",
                kind: ValueKind::MapAddr,
                meta: "NAME+OFF",
                what: "address",
                required: false,
                default: None,
                doc: "MAP_FIXED at OFF bytes (a multiple of 4K, default 0) into mapping NAME made earlier, instead of a free place of the arena: whatever is mapped there is unmapped first, as munmap would (VMAs split at both ends, a THP across an end split, pages and swap entries freed, a partly unmapped THP queued for deferred split, the uffd registration and mlock of the range dropped), then the new VMA is made and may merge with its neighbours. The range may reach past NAME's end (over the layout gap or the next mapping: MAP_FIXED replaces whatever it covers; mappings placed after this one go after its end). Not with `align`/`offset`. NAME keeps its observables over its whole original range: over the replaced part they show what the new mapping has there (the range now belongs to the new VMA), and the new mapping is addressed by its own name",
            },
            OptSpec {
                key: "hugetlb",
                kind: ValueKind::FlagOrChoice(&["2M", "1G"]),
                meta: "2M|1G",
                what: "hugetlb page size",
                required: false,
                default: None,
                doc: "MAP_HUGETLB: bare `hugetlb` (or `hugetlb=2M`) is MAP_HUGE_2MB, 2 MiB pages from the pool `hugetlb.nr_hugepages`; `hugetlb=1G` is MAP_HUGE_1GB, 1 GiB PUD-mapped pages from `hugetlb.1G.nr_hugepages` (no surplus pages at that size). `anon` only; SIZE a multiple of the page size and the address aligned to it (`align=1G` for 1 GiB). Reserved at mmap (ENOMEM when the pool cannot cover it), faulted a huge page at a time (one minor fault maps 1 GiB); munmap, mprotect and MADV_DONTNEED take whole huge pages (EINVAL inside one), mremap moves and shrinks whole ones (growing is EINVAL)",
            },
            OptSpec {
                key: "noreserve",
                kind: ValueKind::Flag,
                meta: "",
                what: "`noreserve`",
                required: false,
                default: None,
                doc: "MAP_NORESERVE: a hugetlb mapping reserves nothing; a fault that finds no free page gets SIGBUS",
            },
        ],
        subs: &[],
        example: "mmap buf 4M anon private rw align=2M offset=4K populate",
        placement: Placement::Body,
        parse: parse::op_mmap,
    },
    OpSpec {
        name: "munmap",
        grammar: "RANGE",
        summary: "munmap(2) of a range (page-unaligned ranges fail like the kernel's, see `expect errno`).",
        args: &[("RANGE", "`NAME`, `NAME+OFF` or `NAME+OFF LEN`")],
        opts: &[],
        subs: &[],
        example: "mmap buf 4M anon private\nmunmap buf+2M 2M",
        placement: Placement::Body,
        parse: parse::op_munmap,
    },
    OpSpec {
        name: "mprotect",
        grammar: "RANGE PROT",
        summary: "mprotect(2) of a range.",
        args: &[("RANGE", "`NAME`, `NAME+OFF` or `NAME+OFF LEN`"), ("PROT", "`none` or letters from `rwx` (also prot=PROT)")],
        opts: &[],
        subs: &[],
        example: "mmap buf 4M anon private\nmprotect buf+0 2M r",
        placement: Placement::Body,
        parse: parse::op_mprotect,
    },
    OpSpec {
        name: "madvise",
        grammar: "RANGE ADVICE",
        summary: "madvise(2) of a range. Advice values the model does not implement yet are refused by the checker instead of being ignored.",
        args: &[
            ("RANGE", "`NAME`, `NAME+OFF` or `NAME+OFF LEN`"),
            ("ADVICE", "`HUGEPAGE` or `MADV_HUGEPAGE`, any case (see Advice below)"),
        ],
        opts: &[],
        subs: &[],
        example: "mmap buf 2M anon private\nmadvise buf HUGEPAGE",
        placement: Placement::Body,
        parse: parse::op_madvise,
    },
    OpSpec {
        name: "read",
        grammar: "RANGE",
        summary: "Reads one byte at each touched offset of the range. Stops at the first access that raises a signal (see `expect errno`).",
        args: &[RANGE_ARG],
        opts: FIXED_ACCESS_OPTS,
        subs: &[],
        example: "mmap buf 2M anon private\nread buf+0\nread buf stride=64K\nread buf random=10% seed=7",
        placement: Placement::Body,
        parse: parse::op_read,
    },
    OpSpec {
        name: "write",
        grammar: "RANGE",
        summary: "Writes one non-zero byte at each touched offset of the range.",
        args: &[RANGE_ARG],
        opts: FIXED_ACCESS_OPTS,
        subs: &[],
        example: "mmap buf 2M anon private\nwrite buf+4K\nwrite buf+0 1M stride=4K random=16 seed=1",
        placement: Placement::Body,
        parse: parse::op_write,
    },
    OpSpec {
        name: "access",
        grammar: "RANGE",
        summary: "Touches the range with a per-offset pattern: `r` reads, `w` writes, `rw` reads the byte and then writes it (QEMU's zero-page check).",
        args: &[RANGE_ARG],
        opts: ACCESS_OPTS,
        subs: &[],
        example: "mmap buf 2M anon private\naccess buf pattern=rw random=30% seed=42",
        placement: Placement::Body,
        parse: parse::op_access,
    },
    OpSpec {
        name: "repeat",
        grammar: "N",
        summary: "Runs the following statements up to the matching `end` N times. Blocks nest. There are no braces: a block is closed by a line `end`.",
        args: &[("N", "1 to 4294967295")],
        opts: &[],
        subs: &[],
        example: "mmap buf 2M anon private\nrepeat 3\n  write buf+0\n  madvise buf DONTNEED\nend",
        placement: Placement::Body,
        parse: parse::op_repeat,
    },
    OpSpec {
        name: "end",
        grammar: "",
        summary: "Closes the innermost `repeat` block.",
        args: &[],
        opts: &[],
        subs: &[],
        example: "repeat 2\n  checkpoint loop\nend",
        placement: Placement::Body,
        parse: parse::op_end,
    },
    OpSpec {
        name: "fork",
        grammar: "NAME",
        summary: "fork(2) of the current process: the child NAME gets a copy of the address space (anonymous pages shared copy-on-write, THPs shared by PMD, huge zero PMDs copied). The current process stays the parent.",
        args: &[("NAME", "the child's name, an identifier not used before (`main` is the first process)")],
        opts: &[],
        subs: &[],
        example: "fork child",
        placement: Placement::Body,
        parse: parse::op_fork,
    },
    OpSpec {
        name: "as",
        grammar: "NAME",
        summary: "Later ops run in process NAME, and `smaps(…)`/`pages(…)` observe its address space. Mapping names refer to the same addresses in every process.",
        args: &[("NAME", "`main` or a process created by `fork`")],
        opts: &[],
        subs: &[],
        example: "fork child\nas child",
        placement: Placement::Body,
        parse: parse::op_as,
    },
    OpSpec {
        name: "exit",
        grammar: "NAME",
        summary: "Process NAME exits: its address space is torn down (pages only it mapped are freed). If it was the current process, `main` becomes current. `main` cannot exit.",
        args: &[("NAME", "a process created by `fork`")],
        opts: &[],
        subs: &[],
        example: "fork child\nexit child",
        placement: Placement::Body,
        parse: parse::op_exit,
    },
    OpSpec {
        name: "khugepaged",
        grammar: "scan [N]",
        summary: "Runs N passes of khugepaged now (`khugepaged_do_scan`, default 1), each examining up to `khugepaged.pages_to_scan` pages' worth of 2 MiB ranges of registered processes.",
        args: &[("N", "number of passes, ≥ 1")],
        opts: &[],
        subs: &[],
        example: "khugepaged scan 4",
        placement: Placement::Body,
        parse: parse::op_khugepaged,
    },
    OpSpec {
        name: "sleep",
        grammar: "DURATION",
        summary: "Advances simulated time; khugepaged runs passes on its own schedule (`scan_sleep_millisecs` between passes) while time passes.",
        args: &[("DURATION", "a number with a unit: `ms`, `s`, `m`, `h` (e.g. `10s`)")],
        opts: &[],
        subs: &[],
        example: "sleep 10s",
        placement: Placement::Body,
        parse: parse::op_sleep,
    },
    OpSpec {
        name: "memfd",
        grammar: "NAME SIZE",
        summary: "memfd_create(2) (no flags) and ftruncate(2) to SIZE: a shmem object on the internal mount, whose huge policy is `shmem_enabled`; page faults also follow the per-size `hugepages-<N>kB.shmem_enabled` knobs. Map it with `mmap M SIZE NAME shared|private [foff=…]`. Every process (forks included) shares it.",
        args: &[
            ("NAME", "identifier, unique among objects"),
            ("SIZE", "the initial size (i_size) in bytes, at most 64T"),
        ],
        opts: &[OptSpec {
            key: "hugetlb",
            kind: ValueKind::FlagOrChoice(&["2M", "1G"]),
            meta: "2M|1G",
            what: "hugetlb page size",
            required: false,
            default: None,
            doc: "MFD_HUGETLB: bare `hugetlb` (or `hugetlb=2M`) is MFD_HUGE_2MB, `hugetlb=1G` MFD_HUGE_1GB: a hugetlbfs file of that page size (SIZE a multiple of it; its mappings need an address and file offset aligned to it); shared mappings reserve in the file, private ones for themselves; ftruncate to a partial huge page is EINVAL, fallocate allocates every huge page the range touches (ENOSPC when the pool is empty), punch_hole frees only the whole ones inside the range",
        }],
        subs: &[],
        example: "memfd ram 4M\nmmap guest 4M ram shared rw",
        placement: Placement::Body,
        parse: parse::op_memfd,
    },
    OpSpec {
        name: "tmpfs",
        grammar: "NAME",
        summary: "Mounts a tmpfs instance (`mount -t tmpfs -o huge=…,size=…`, private to the run: the host mounts it in the worker's own mount namespace). Files made on it with `file` follow its `huge=` policy for faults and fallocate alike, and not the per-size `hugepages-<N>kB.shmem_enabled` knobs (those are for anonymous shmem and memfds); `shmem_enabled=deny` and `force` override every mount. Faults get a PMD folio or 4K pages (`within_size`: when the PMD block ends inside i_size; `advise`: in MADV_HUGEPAGE VMAs); fallocate tries every size from 2M down to 8K.",
        args: &[("NAME", "identifier, unique among tmpfs instances")],
        opts: &[
            OptSpec {
                key: "huge",
                kind: ValueKind::Choice(&["never", "always", "within_size", "advise"]),
                meta: "never|always|within_size|advise",
                what: "huge policy",
                required: false,
                default: Some("never"),
                doc: "the `huge=` mount option",
            },
            OptSpec {
                key: "size",
                kind: ValueKind::Size(SizeRule {
                    min: 0,
                    max: MAX_MAPPING,
                    multiple: 1,
                    pow2: false,
                    broken: "tmpfs size {} is larger than 64T",
                }),
                meta: "SIZE",
                what: "size limit",
                required: false,
                default: Some("no limit"),
                doc: "the `size=` limit, rounded up to pages (0: none): pages beyond it are ENOSPC for fallocate and SIGBUS for a fault",
            },
        ],
        subs: &[],
        example: "tmpfs t huge=always size=8M
file f 4M on=t
mmap m 4M f shared",
        placement: Placement::Body,
        parse: parse::op_tmpfs,
    },
    OpSpec {
        name: "file",
        grammar: "NAME SIZE",
        summary: "Creates a file (`open(O_CREAT)`, `ftruncate(2)` to SIZE) on a tmpfs instance or, with `on=disk`, on the disk filesystem. Map it like a memfd (`mmap M SIZE NAME shared|private [foff=…]`); `ftruncate`, `fallocate`, `madvise REMOVE` work on it. Every process (forks included) shares it. On a tmpfs it is a shmem object whose huge policy is its mount's `huge=`. On `disk` (the host's ext4 root; the host backend makes it in a private directory under /var/tmp and removes it) it is sparse and nothing of it is cached: its page cache is filled by readahead (mm/readahead.c, `read_ahead_kb` 8192 of the device): a fault on an uncached page reads 2048 order-0 pages around it (mmap read-around; one page with `RANDOM`; with `HUGEPAGE` two PMD-sized folios from the aligned index, mapped by a PMD) and is a major fault; a fault on the page marked `PG_readahead` reads the next window with folios two orders larger. Shared writable mappings of a disk file want write notification: a read maps read-only, the first write of a page faults (`ext4_page_mkwrite`) and dirties its folio; `msync … sync` and `fsync` write dirty folios back and write-protect them again. `fallocate` allocates blocks, not page cache; `punch_hole keep_size`, MADV_REMOVE and a shrinking `ftruncate` drop the cached range. `MADV_WILLNEED` reads up to 2048 pages of the range. `MADV_PAGEOUT` unmaps the cached folios only this process maps and drops the clean ones; a dirty one stays cached, unmapped and dirty (only kswapd writes file folios back), with `PG_reclaim`, which is `PG_readahead`: the next read of it reads ahead after it. Page classes `file`, `file_pte`, `file_pmd`; smaps `FilePmdMapped`.",
        args: &[
            ("NAME", "identifier, unique among objects"),
            ("SIZE", "the initial size (i_size) in bytes, at most 64T"),
        ],
        opts: &[OptSpec {
            key: "on",
            kind: ValueKind::Name,
            meta: "TMPFS|disk",
            what: "tmpfs name or `disk`",
            required: true,
            default: None,
            doc: "the tmpfs instance (made by `tmpfs` earlier), or `disk`: the disk filesystem",
        }],
        subs: &[],
        example: "tmpfs t huge=within_size
file f 2M on=t
fallocate f 0 2M
expect obj(f).blocks == 4096",
        placement: Placement::Body,
        parse: parse::op_file,
    },
    OpSpec {
        name: "ftruncate",
        grammar: "OBJ SIZE",
        summary: "ftruncate(2) of a `memfd` or `file` object: growing only changes i_size; shrinking unmaps the pages beyond the new end from every mapping (private copies too) and truncates the page cache, zeroing and splitting a large folio that straddles the end.",
        args: &[
            ("OBJ", "an object made by `memfd` or `file` (or `gmem`: always EINVAL)"),
            ("SIZE", "the new size in bytes, at most 64T"),
        ],
        opts: &[],
        subs: &[],
        example: "memfd ram 4M\nftruncate ram 2M",
        placement: Placement::Body,
        parse: parse::op_ftruncate,
    },
    OpSpec {
        name: "fallocate",
        grammar: "OBJ OFFSET LEN",
        summary: "fallocate(2) of a `memfd` or `file` object. Mode 0 allocates the page cache of the range (large folios by the mount policy only, `shmem_enabled` for a memfd, the tmpfs `huge=` for a file, unless `shmem_enabled` is `deny` or `force`: `always` tries every size from 2M down to 8K, `within_size` the sizes whose block ends inside max(i_size, OFFSET+LEN)) and extends i_size; `keep_size` leaves i_size; `punch_hole keep_size` unmaps the whole pages of the range from every mapping (not private copies), frees the folios inside it and zeroes the partial ones, splitting a large one at the hole (6.15+ non-uniform split). `punch_hole` without `keep_size` is EOPNOTSUPP, as in the kernel. On a tmpfs with `size=`, a range larger than the limit is ENOSPC at once, and running out of space part way is ENOSPC with the folios this call added removed again (a large folio that does not fit falls back to 4K pages first).",
        args: &[
            ("OBJ", "an object made by `memfd`, `file` or `gmem` (see `gmem` for its rules)"),
            ("OFFSET", "byte offset in the object"),
            ("LEN", "byte length, positive"),
        ],
        opts: &[
            OptSpec {
                key: "keep_size",
                kind: ValueKind::Flag,
                meta: "",
                what: "`keep_size`",
                required: false,
                default: None,
                doc: "FALLOC_FL_KEEP_SIZE",
            },
            OptSpec {
                key: "punch_hole",
                kind: ValueKind::Flag,
                meta: "",
                what: "`punch_hole`",
                required: false,
                default: None,
                doc: "FALLOC_FL_PUNCH_HOLE",
            },
        ],
        subs: &[],
        example: "memfd ram 4M\nfallocate ram 0 2M keep_size\nfallocate ram 1M 4K punch_hole keep_size",
        placement: Placement::Body,
        parse: parse::op_fallocate,
    },
    OpSpec {
        name: "gmem",
        grammar: "NAME SIZE",
        summary: "KVM_CREATE_GUEST_MEMFD on a VM of the default type (the host backend opens `/dev/kvm` and creates one VM per run; a host whose KVM has no `KVM_CAP_GUEST_MEMFD`, such as `kvm_pvm`, cannot run the scenario: `host` refuses it, `check` skips it): a guest_memfd object of SIZE bytes (`virt/kvm/guest_memfd.c`). EINVAL for a size of 0 or not page aligned and for flags beyond `mmap`/`init_shared`; the op's result is the error, and later ops on a failed object get EBADF. Map it with `mmap M SIZE NAME shared` (`mmap` flag needed, else ENODEV; `private` is EINVAL); a fault SIGBUSes unless `init_shared`, and at or beyond SIZE; with `init_shared` each fault allocates and maps one order-0 unmovable, unevictable page (no fault-around, never a THP: MADV_COLLAPSE is EINVAL, THPeligible 0). `fallocate NAME OFF LEN keep_size [punch_hole]` allocates order-0 folios (the range must end inside SIZE) or punches (unmapping from every mapping); without `keep_size` EOPNOTSUPP, unaligned EINVAL. `ftruncate` is EINVAL. Pages are `pages(…).gmem`. The huge-folio proposals are model-only switches: `set gmem_huge_order=N`, `gmem_fallback=small|none`, `gmem_punch=split|zero|einval`.",
        args: &[
            ("NAME", "identifier, unique among objects"),
            ("SIZE", "the size (i_size) in bytes, at most 64T; 0 or unaligned sizes reach the kernel (EINVAL)"),
        ],
        opts: &[
            OptSpec {
                key: "mmap",
                kind: ValueKind::Flag,
                meta: "",
                what: "`mmap`",
                required: false,
                default: None,
                doc: "GUEST_MEMFD_FLAG_MMAP: the object may be mmap()ed",
            },
            OptSpec {
                key: "init_shared",
                kind: ValueKind::Flag,
                meta: "",
                what: "`init_shared`",
                required: false,
                default: None,
                doc: "GUEST_MEMFD_FLAG_INIT_SHARED: memory starts shared, so user faults map pages",
            },
            OptSpec {
                key: "flags",
                kind: ValueKind::Uint,
                meta: "N",
                what: "raw flags",
                required: false,
                default: Some("0"),
                doc: "more flag bits, or-ed in as given (unsupported ones are EINVAL)",
            },
        ],
        subs: &[],
        example: "gmem guest 4M mmap init_shared\nmmap g 4M guest shared\nfallocate guest 0 2M keep_size",
        placement: Placement::Body,
        parse: parse::op_gmem,
    },
    OpSpec {
        name: "msync",
        grammar: "RANGE [sync] [async] [invalidate]",
        summary: "msync(2) with MS_SYNC, MS_ASYNC and/or MS_INVALIDATE. With `sync`, the shared file mappings of the range write their dirty page-cache folios back (`vfs_fsync_range`): the folios become clean and every PTE/PMD mapping them is write-protected and cleaned (`folio_mkclean`), so the next write faults. `async` does nothing more (6.18). `sync async` together, or an unaligned start, is EINVAL; `invalidate` over an mlocked VMA EBUSY; unmapped parts ENOMEM (after the mapped ones are synced). Shmem has no writeback: nothing changes.",
        args: &[("RANGE", "NAME, NAME+OFF LEN or NAME[+OFF]; the range to sync")],
        opts: &[
            OptSpec {
                key: "sync",
                kind: ValueKind::Flag,
                meta: "",
                what: "`sync`",
                required: false,
                default: None,
                doc: "MS_SYNC",
            },
            OptSpec {
                key: "async",
                kind: ValueKind::Flag,
                meta: "",
                what: "`async`",
                required: false,
                default: None,
                doc: "MS_ASYNC",
            },
            OptSpec {
                key: "invalidate",
                kind: ValueKind::Flag,
                meta: "",
                what: "`invalidate`",
                required: false,
                default: None,
                doc: "MS_INVALIDATE",
            },
        ],
        subs: &[],
        example: "file data 4M on=disk\nmmap m 4M data shared rw\nwrite m\nmsync m sync",
        placement: Placement::Body,
        parse: parse::op_msync,
    },
    OpSpec {
        name: "fsync",
        grammar: "OBJ",
        summary: "fsync(2) of an object: a `file … on=disk` writes every dirty folio back (clean, its mappings write-protected again, as `msync … sync`); a memfd has nothing to write.",
        args: &[("OBJ", "an object made by `memfd` or `file`")],
        opts: &[],
        subs: &[],
        example: "file data 4M on=disk\nmmap m 4M data shared rw\nwrite m\nfsync data",
        placement: Placement::Body,
        parse: parse::op_fsync,
    },
    OpSpec {
        name: "shrink",
        grammar: "",
        summary: "Runs the shrinkers that memory pressure or `echo 2 > /proc/sys/vm/drop_caches` run: the deferred-split shrinker (splits partially mapped and underused THPs) and the huge-zero shrinker (frees the huge zero page when no process holds it).",
        args: &[],
        opts: &[],
        subs: &[],
        example: "shrink",
        placement: Placement::Body,
        parse: parse::op_shrink,
    },
    OpSpec {
        name: "kalloc",
        grammar: "SIZE",
        summary: "Unmovable kernel allocations that are never freed, the background of a long-running host (slab, page tables of other processes, kernel stacks): SIZE in blocks of `order`. Without `scatter` they come from the allocator as kernel allocations do (so they gather in unmovable pageblocks); with `scatter=N` one block sits in the middle of every N-th pageblock (Normal zone first), left in a movable pageblock as fallback stealing leaves kernel pages on a host that has run for a while. Model-only. The op's result is the bytes allocated (fewer if memory ran out).",
        args: &[("SIZE", "how much, a multiple of 4K")],
        opts: &[
            OptSpec {
                key: "order",
                kind: ValueKind::Uint,
                meta: "N",
                what: "order",
                required: false,
                default: Some("0"),
                doc: "the order of each block, 0..=10",
            },
            OptSpec {
                key: "type",
                kind: ValueKind::Choice(&["unmovable", "reclaimable"]),
                meta: "unmovable|reclaimable",
                what: "migratetype",
                required: false,
                default: Some("unmovable"),
                doc: "the migratetype the allocations ask for",
            },
            OptSpec {
                key: "scatter",
                kind: ValueKind::Uint,
                meta: "N",
                what: "pageblock stride",
                required: false,
                default: None,
                doc: "one block in every N-th pageblock instead of allocating normally",
            },
        ],
        subs: &[],
        example: "kalloc 8M scatter=4",
        placement: Placement::Body,
        parse: parse::op_kalloc,
    },
    OpSpec {
        name: "compact",
        grammar: "",
        summary: "Compacts all memory, as `echo 1 > /proc/sys/vm/compact_memory` does: in each zone the migration scanner moves movable folios from the bottom into free pages the free scanner finds at the top (counters `compact_migrate_scanned`, `compact_free_scanned`, `compact_isolated`, `pgmigrate_success`). Pages of unmovable allocations stay where they are. Model-only.",
        args: &[],
        opts: &[],
        subs: &[],
        example: "compact",
        placement: Placement::Body,
        parse: parse::op_compact,
    },
    OpSpec {
        name: "mremap",
        grammar: "RANGE [DST[+OFF]]",
        summary: "mremap(2). With DST: MREMAP_MAYMOVE|MREMAP_FIXED, moves RANGE to the address of mapping DST plus OFF; whatever is there is unmapped first. Where source and destination are both 2 MiB-aligned a huge PMD moves whole; otherwise it is split. Observe the moved memory through DST. Without `size` the length stays (a same-size move may span several VMAs and gaps since 6.17). With `size=SIZE` the result is SIZE long (rounded up to pages, for hugetlb to huge pages): a shrink unmaps the tail as munmap does (a THP cut mid-way splits its PMD and goes on the deferred split queue), and the tail may cross VMAs and holes; without DST (flags 0) a grow extends the VMA in place (merging with a compatible next VMA) when RANGE ends at its VMA's end and nothing is mapped after it, else ENOMEM; with DST the old length moves into a VMA of SIZE. RANGE (what is kept of it, when shrinking) must lie in one VMA when it moves or grows (EFAULT). A grown mlocked VMA populates its new part. hugetlb: no growing (EINVAL). The kernel's choice of address (MREMAP_MAYMOVE without MREMAP_FIXED) has no form: the model cannot predict where the host's kernel would put it. Access the grown part through a mapping declared over it (e.g. `mmap buf 4M` then `munmap buf+1M 3M` before `mremap buf+0 1M size=4M`).",
        args: &[("RANGE", "the source: inside one VMA (for a shrink in place, any range starting in a VMA)"), ("DST[+OFF]", "a mapping declared by `mmap` (its placement gives the address) and an optional page-multiple offset")],
        opts: &[OptSpec {
            key: "size",
            kind: ValueKind::Size(SizeRule {
                min: 0,
                max: MAX_MAPPING,
                multiple: 1,
                pow2: false,
                broken: "new size `{}` is above 64T",
            }),
            meta: "SIZE",
            what: "new size",
            required: false,
            default: Some("RANGE's length"),
            doc: "the new length (`new_len`); 0 is the syscall's EINVAL",
        }],
        subs: &[],
        example: "mmap src 2M anon private rw\nmmap dst 4M anon private rw\nmremap src dst+4K\nmremap dst+4K 2M size=1M",
        placement: Placement::Body,
        parse: parse::op_mremap,
    },
    OpSpec {
        name: "mlock",
        grammar: "RANGE",
        summary: "mlock(2): VM_LOCKED on the range (VMA split, so part of a THP splits its PMD), then the range is populated (write faults in private writable mappings). ENOMEM at a hole.",
        args: &[("RANGE", "as for munmap")],
        opts: &[],
        subs: &[],
        example: "mmap buf 2M anon private rw\nmlock buf+0 4K",
        placement: Placement::Body,
        parse: parse::op_mlock,
    },
    OpSpec {
        name: "munlock",
        grammar: "RANGE",
        summary: "munlock(2): clears VM_LOCKED (VMAs merge back).",
        args: &[("RANGE", "as for munmap")],
        opts: &[],
        subs: &[],
        example: "mmap buf 2M anon private rw\nmunlock buf",
        placement: Placement::Body,
        parse: parse::op_munlock,
    },
    OpSpec {
        name: "uffd",
        grammar: "",
        summary: "userfaultfd of the current process (one per process): `open` is userfaultfd(2) + UFFDIO_API with features (see userfaultfd features below); `register`/`unregister` are UFFDIO_(UN)REGISTER; `wp`/`unwp` are UFFDIO_WRITEPROTECT with mode WP / 0; `copy` and `zeropage` fill missing pages (order 0, EEXIST on populated ones; in a shared shmem mapping each is a new page-cache page, EEXIST where the file already has one or a swap entry for it, EFAULT beyond its end). `register … minor` (shmem and hugetlb mappings only, else EINVAL) raises a minor fault where the page cache holds the page but the page table does not map it; `continue` is UFFDIO_CONTINUE: it maps, one PTE per page, pages the cache holds (EFAULT where it does not, EINVAL beyond i_size, EEXIST on a mapped page; read-only in a private mapping). On hugetlb mappings every range ioctl takes whole 2 MiB pages (EINVAL otherwise: register's start and end, wp/unwp, copy, continue): `copy` places a huge page (a page-cache page in a shared mapping; EEXIST also when the pool has no page for it), `zeropage` is always EINVAL, `continue` maps a cached huge page (EFAULT beyond i_size too), `wp` puts markers in unmapped huge pages. A fault that reaches userfaultfd is resolved by a modelled monitor: `handler wp=unprotect:4K` (default; also `unprotect:2M`, `unprotect:vma`), `missing=copy:4K` (default; also `zeropage:SIZE`) and `minor=continue:4K` (default); on hugetlb the monitor works in whole huge pages (a block at least 2 MiB; `zeropage` copies a zeroed huge page, as QEMU's postcopy does). Messages are counted as `uffd.STAT` (see Observables).",
        args: &[
            ("RANGE", "as for other ops"),
            ("POLICY", "`ACTION:SIZE` with SIZE a power of two ≥ 4K (default 4K), or `unprotect:vma`"),
        ],
        opts: &[],
        subs: UFFD_SUBS,
        example: "mmap ram 4M anon private rw\nuffd open wp_unpopulated\nuffd register ram wp\nuffd wp ram\nuffd handler wp=unprotect:4K",
        placement: Placement::Body,
        parse: parse::op_uffd,
    },
    OpSpec {
        name: "prctl",
        grammar: "set_thp_disable 0|1",
        summary: "prctl(PR_SET_THP_DISABLE, …) for the running process: `1` disables THP completely, `1 except_advised` (6.18+, PR_THP_DISABLE_EXCEPT_ADVISED) keeps THP only in MADV_HUGEPAGE ranges, `0` re-enables. The result is the op's errno (EINVAL where the kernel refuses).",
        args: &[
            ("set_thp_disable", "the only prctl option modelled"),
            ("0|1", "the PR_SET_THP_DISABLE argument"),
        ],
        opts: &[OptSpec {
            key: "except_advised",
            kind: ValueKind::Flag,
            meta: "",
            what: "`except_advised`",
            required: false,
            default: None,
            doc: "pass PR_THP_DISABLE_EXCEPT_ADVISED as flags",
        }],
        subs: &[],
        example: "prctl set_thp_disable 1 except_advised",
        placement: Placement::Body,
        parse: parse::op_prctl,
    },
    OpSpec {
        name: "checkpoint",
        grammar: "LABEL",
        summary: "Marks a point in the run: reports show the observables here, and counter expectations after it are deltas since this point.",
        args: &[("LABEL", "letters, digits, `_`, `.`, `-`; unique in the file")],
        opts: &[],
        subs: &[],
        example: "checkpoint after-populate",
        placement: Placement::Body,
        parse: parse::op_checkpoint,
    },
    OpSpec {
        name: "expect",
        grammar: "OBSERVABLE CMP VALUE [when COND…]",
        summary: "Asserts an observable, so that a scenario is its own test. Counters (`minflt`, `vmstat.*`, `mthp.*`, `khugepaged.*`) are deltas since the last checkpoint (or the start); `smaps(…)`, `pages(…)` and `obj(…)` are the current state; `errno` is the result of the previous op.",
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
        opts: &[],
        subs: &[],
        example: "mmap buf 2M anon private\nwrite buf+0\nexpect minflt == 1\nexpect vmstat.thp_fault_alloc == 1 when kernel>=6.13\nexpect smaps(buf).AnonHugePages == 2M when hzp_wp_fault=thp\nexpect pages(buf+0 1M).thp_pmd >= 0\nexpect errno == ok",
        placement: Placement::Body,
        parse: parse::op_expect,
    },
];
