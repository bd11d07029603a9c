//! Basic units shared by every module: page sizes and orders (x86-64, 4 KiB pages,
//! `arch/x86/include/asm/page_types.h`, `pgtable_types.h`), protections, advice values.

pub const PAGE_SHIFT: u32 = 12;
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
pub const PTRS_PER_PTE: usize = 512;
pub const PTRS_PER_PMD: usize = 512;
pub const PMD_SHIFT: u32 = 21;
pub const PMD_SIZE: u64 = 1 << PMD_SHIFT;
pub const PMD_MASK: u64 = !(PMD_SIZE - 1);
pub const PUD_SHIFT: u32 = 30;
pub const PUD_SIZE: u64 = 1 << PUD_SHIFT;
/// `HPAGE_PMD_ORDER`: order of a PMD-sized folio.
pub const HPAGE_PMD_ORDER: u8 = 9;
pub const HPAGE_PMD_NR: u32 = 512;
/// `MAX_PAGE_ORDER` on x86-64 (4 MiB blocks).
pub const MAX_PAGE_ORDER: u8 = 10;
/// `pageblock_order` with `CONFIG_PAGE_BLOCK_MAX_ORDER=10` and THP: PMD order. Not read yet:
/// the unit of migratetypes and compaction, which the allocator does not model yet.
pub const PAGEBLOCK_ORDER: u8 = 9;
/// Highest user virtual address + 1 with 4-level page tables (47 bits). Mappings the model
/// hands out stay below it so a scenario also runs on a host without 5-level paging.
pub const TASK_SIZE: u64 = 1 << 47;

pub type Pid = u32;

pub const fn page_align_up(x: u64) -> u64 {
    (x + PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
}
pub const fn is_page_aligned(x: u64) -> bool {
    x & (PAGE_SIZE - 1) == 0
}

/// Page protections of a mapping (`PROT_*`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub struct Prot {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
}

impl Prot {
    pub const NONE: Prot = Prot {
        read: false,
        write: false,
        exec: false,
    };
    pub const R: Prot = Prot {
        read: true,
        write: false,
        exec: false,
    };
    pub const RW: Prot = Prot {
        read: true,
        write: true,
        exec: false,
    };

    /// Parses the scenario spelling: `none`, or letters from `rwx` (e.g. `rw`, `r`, `rx`).
    pub fn parse(s: &str) -> Option<Prot> {
        if s == "none" {
            return Some(Prot::NONE);
        }
        if s.is_empty() {
            return None;
        }
        let mut p = Prot::NONE;
        for c in s.chars() {
            let slot = match c {
                'r' => &mut p.read,
                'w' => &mut p.write,
                'x' => &mut p.exec,
                _ => return None,
            };
            if *slot {
                return None;
            }
            *slot = true;
        }
        Some(p)
    }

    /// `PROT_*` bits as passed to mmap(2)/mprotect(2).
    pub fn bits(self) -> i32 {
        i32::from(self.read) | i32::from(self.write) << 1 | i32::from(self.exec) << 2
    }
}

impl std::fmt::Display for Prot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if *self == Prot::NONE {
            return f.write_str("none");
        }
        if self.read {
            f.write_str("r")?;
        }
        if self.write {
            f.write_str("w")?;
        }
        if self.exec {
            f.write_str("x")?;
        }
        Ok(())
    }
}

/// madvise(2) advice values (`include/uapi/asm-generic/mman-common.h`). The model implements
/// the ones `Advice::is_modelled` says; the others parse (so a scenario can name them) and are
/// refused by the scenario checker with a clear message rather than silently ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Advice {
    Normal,
    Random,
    Sequential,
    Willneed,
    Dontneed,
    Free,
    Remove,
    Dontfork,
    Dofork,
    Mergeable,
    Unmergeable,
    Hugepage,
    Nohugepage,
    Dontdump,
    Dodump,
    Wipeonfork,
    Keeponfork,
    Cold,
    Pageout,
    PopulateRead,
    PopulateWrite,
    Collapse,
    /// Proposal from the mailing list, not in Linux: allocate page tables for the range and
    /// map nothing. Model-only (value −1; the host refuses it).
    PopulatePgtable,
    /// The populate thread's first, single-flag proposal (`MADV_POPULATE`, before it became
    /// `_READ`/`_WRITE`): each VMA of the range is populated for write if it is writable,
    /// for read otherwise. Model-only (value −1; the host refuses it).
    Populate,
}

impl Advice {
    /// (scenario name, kernel constant value)
    pub const ALL: &'static [(&'static str, Advice, i32)] = &[
        ("NORMAL", Advice::Normal, 0),
        ("RANDOM", Advice::Random, 1),
        ("SEQUENTIAL", Advice::Sequential, 2),
        ("WILLNEED", Advice::Willneed, 3),
        ("DONTNEED", Advice::Dontneed, 4),
        ("FREE", Advice::Free, 8),
        ("REMOVE", Advice::Remove, 9),
        ("DONTFORK", Advice::Dontfork, 10),
        ("DOFORK", Advice::Dofork, 11),
        ("MERGEABLE", Advice::Mergeable, 12),
        ("UNMERGEABLE", Advice::Unmergeable, 13),
        ("HUGEPAGE", Advice::Hugepage, 14),
        ("NOHUGEPAGE", Advice::Nohugepage, 15),
        ("DONTDUMP", Advice::Dontdump, 16),
        ("DODUMP", Advice::Dodump, 17),
        ("WIPEONFORK", Advice::Wipeonfork, 18),
        ("KEEPONFORK", Advice::Keeponfork, 19),
        ("COLD", Advice::Cold, 20),
        ("PAGEOUT", Advice::Pageout, 21),
        ("POPULATE_READ", Advice::PopulateRead, 22),
        ("POPULATE_WRITE", Advice::PopulateWrite, 23),
        ("COLLAPSE", Advice::Collapse, 25),
        ("POPULATE_PGTABLE", Advice::PopulatePgtable, -1),
        ("POPULATE", Advice::Populate, -1),
    ];

    /// Accepts `HUGEPAGE` and `MADV_HUGEPAGE`, any case.
    pub fn parse(s: &str) -> Option<Advice> {
        let up = s.to_ascii_uppercase();
        let key = up.strip_prefix("MADV_").unwrap_or(&up);
        Self::ALL
            .iter()
            .find(|(n, _, _)| *n == key)
            .map(|(_, a, _)| *a)
    }
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, a, _)| *a == self)
            .map_or("?", |(n, _, _)| *n)
    }
    /// The `MADV_*` number passed to madvise(2).
    pub fn value(self) -> i32 {
        Self::ALL
            .iter()
            .find(|(_, a, _)| *a == self)
            .map_or(-1, |(_, _, v)| *v)
    }
    /// Whether the model implements this advice today.
    pub fn is_modelled(self) -> bool {
        matches!(
            self,
            Advice::Normal
                | Advice::Random
                | Advice::Sequential
                | Advice::Willneed
                | Advice::Hugepage
                | Advice::Nohugepage
                | Advice::Dontneed
                | Advice::Remove
                | Advice::Free
                | Advice::Cold
                | Advice::Pageout
                | Advice::Collapse
                | Advice::PopulatePgtable
                | Advice::PopulateRead
                | Advice::PopulateWrite
                | Advice::Populate
        )
    }

    /// A proposal with no Linux value: only the model runs it.
    pub fn is_model_only(self) -> bool {
        self.value() < 0
    }
}

/// The kind of memory access a task performs on one byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum AccessKind {
    Read,
    Write,
}

/// What a sequential access does at each byte it touches (`Kernel::access_seq`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccessPattern {
    Read,
    Write,
    /// A read, then a write of the same byte.
    ReadWrite,
}

impl AccessPattern {
    /// Whether the pattern reads, and whether it writes.
    #[must_use]
    pub fn reads(self) -> bool {
        matches!(self, AccessPattern::Read | AccessPattern::ReadWrite)
    }
    #[must_use]
    pub fn writes(self) -> bool {
        matches!(self, AccessPattern::Write | AccessPattern::ReadWrite)
    }
}
