//! Page-table entries and the per-mm page-table radix (x86-64 4-level layout as
//! `arch/x86/include/asm/pgtable_types.h` describes it, reduced to what THP decisions read).
//! A PMD entry is none, the huge zero page, a PMD-mapped folio, or a PTE table; a PTE is none,
//! the zero page, a page of a folio, or a uffd-wp marker. Entries are packed into a `u64`
//! so a PTE table is 4 KiB, as in the kernel.

use crate::folio::FolioId;
use crate::types::{PMD_SHIFT, PTRS_PER_PMD, PTRS_PER_PTE, PUD_SHIFT};

pub const KIND_NONE: u64 = 0;
pub const KIND_ZERO: u64 = 1; // PTE: zero page; PMD: huge zero page
pub const KIND_PAGE: u64 = 2; // PTE: page of a folio; PMD: PMD-mapped folio
pub const KIND_MARKER: u64 = 3; // PTE: uffd-wp marker; PMD: PTE table
pub const KIND_TABLE: u64 = 3;
const KIND_MASK: u64 = 7;

/// Entry bits (same positions in PTEs and PMDs).
pub const WRITE: u64 = 1 << 3;
pub const DIRTY: u64 = 1 << 4;
pub const YOUNG: u64 = 1 << 5;
pub const UFFD_WP: u64 = 1 << 6;
pub const SOFT_DIRTY: u64 = 1 << 7;
/// The mapped page is `PageAnonExclusive` (only meaningful for KIND_PAGE).
pub const EXCLUSIVE: u64 = 1 << 8;
/// `PROT_NONE` entry: present for the kernel, inaccessible to the task.
pub const PROTNONE: u64 = 1 << 9;
/// Model-only: a store went through this PTE, so the page's non-zero content is already
/// recorded (lets repeated stores skip the folio). Never copied to an entry for another page.
pub const STORED: u64 = 1 << 10;
const IDX_SHIFT: u32 = 16;
const IDX_MASK: u64 = 0x3ff;
const ID_SHIFT: u32 = 32;

/// The bit accessors PTEs and PMDs share (same packing).
macro_rules! entry_bits {
    ($t:ty) => {
        impl $t {
            #[inline]
            pub fn kind(self) -> u64 {
                self.0 & KIND_MASK
            }
            #[inline]
            pub fn is_none(self) -> bool {
                self.0 == 0
            }
            #[inline]
            pub fn has(self, bit: u64) -> bool {
                self.0 & bit != 0
            }
            #[inline]
            pub fn set(&mut self, bit: u64, on: bool) {
                if on {
                    self.0 |= bit
                } else {
                    self.0 &= !bit
                }
            }
        }
    };
}
entry_bits!(Pte);
entry_bits!(Pmd);

#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Pte(pub u64);

impl Pte {
    pub const NONE: Pte = Pte(0);
    #[inline]
    pub fn is_present(self) -> bool {
        matches!(self.kind(), KIND_ZERO | KIND_PAGE)
    }
    #[inline]
    pub fn zero(bits: u64) -> Pte {
        Pte(KIND_ZERO | bits)
    }
    #[inline]
    pub fn page(folio: FolioId, idx: u32, bits: u64) -> Pte {
        Pte(KIND_PAGE | bits | ((idx as u64) << IDX_SHIFT) | ((folio as u64) << ID_SHIFT))
    }
    #[inline]
    pub fn folio(self) -> FolioId {
        (self.0 >> ID_SHIFT) as FolioId
    }
    #[inline]
    pub fn idx(self) -> u32 {
        ((self.0 >> IDX_SHIFT) & IDX_MASK) as u32
    }
}

impl std::fmt::Debug for Pte {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind() {
            KIND_NONE => write!(f, "none"),
            KIND_ZERO => write!(f, "zero{:#x}", self.0 & 0x3f8),
            KIND_PAGE => write!(
                f,
                "page(f{} #{} {:#x})",
                self.folio(),
                self.idx(),
                self.0 & 0x3f8
            ),
            _ => write!(f, "marker"),
        }
    }
}

/// A PMD entry (same packing; `KIND_TABLE` stores a PTE-table index in the id field).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Pmd(pub u64);

impl Pmd {
    pub const NONE: Pmd = Pmd(0);
    #[inline]
    pub fn is_huge_zero(self) -> bool {
        self.kind() == KIND_ZERO
    }
    #[inline]
    pub fn is_thp(self) -> bool {
        self.kind() == KIND_PAGE
    }
    #[inline]
    pub fn is_huge(self) -> bool {
        matches!(self.kind(), KIND_ZERO | KIND_PAGE)
    }
    #[inline]
    pub fn is_table(self) -> bool {
        self.kind() == KIND_TABLE
    }
    #[inline]
    pub fn huge_zero(bits: u64) -> Pmd {
        Pmd(KIND_ZERO | bits)
    }
    #[inline]
    pub fn thp(folio: FolioId, bits: u64) -> Pmd {
        Pmd(KIND_PAGE | bits | ((folio as u64) << ID_SHIFT))
    }
    #[inline]
    pub fn table(idx: u32) -> Pmd {
        Pmd(KIND_TABLE | ((idx as u64) << ID_SHIFT))
    }
    #[inline]
    pub fn folio(self) -> FolioId {
        (self.0 >> ID_SHIFT) as FolioId
    }
    #[inline]
    pub fn table_idx(self) -> u32 {
        (self.0 >> ID_SHIFT) as u32
    }
}

impl std::fmt::Debug for Pmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind() {
            KIND_NONE => write!(f, "none"),
            KIND_ZERO => write!(f, "huge_zero{:#x}", self.0 & 0x3f8),
            KIND_PAGE => write!(f, "thp(f{} {:#x})", self.folio(), self.0 & 0x3f8),
            _ => write!(f, "table({})", self.table_idx()),
        }
    }
}

pub type PteTable = [Pte; PTRS_PER_PTE];
pub type PmdTable = [Pmd; PTRS_PER_PMD];

/// Index of the PMD slot (2 MiB region) containing `addr`.
#[inline]
pub fn pmd_slot(addr: u64) -> u64 {
    addr >> PMD_SHIFT
}
#[inline]
pub fn pte_index(addr: u64) -> usize {
    ((addr >> 12) & 511) as usize
}

/// The page tables of one mm. PMD tables are found by 1 GiB region; PTE tables live in an
/// arena indexed from PMD entries. Each table also holds a simulated PFN so page-table memory
/// is charged to the buddy allocator like the kernel's.
#[derive(Clone, Debug, Default)]
pub struct PageTables {
    /// PMD tables indexed directly by 1 GiB region (`addr >> PUD_SHIFT`); grows to the highest
    /// region used (8 bytes per GiB of address space below it).
    pmds: Vec<Option<Box<PmdTable>>>,
    pmd_pfns: Vec<u32>,
    nr_pmd_tables: usize,
    pub ptes: Vec<Box<PteTable>>,
    pub pte_pfns: Vec<u32>,
    free_ptes: Vec<u32>,
    /// Page tables deposited under huge PMDs (`pgtable_trans_huge_deposit`), by PFN.
    pub deposited: Vec<u32>,
}

impl PageTables {
    #[inline]
    pub fn pmd(&self, addr: u64) -> Pmd {
        match self.pmds.get((addr >> PUD_SHIFT) as usize) {
            Some(Some(t)) => t[(pmd_slot(addr) & 511) as usize],
            _ => Pmd::NONE,
        }
    }

    /// The PMD entry for `addr`, if its PMD table exists.
    #[inline]
    pub fn pmd_mut(&mut self, addr: u64) -> Option<&mut Pmd> {
        match self.pmds.get_mut((addr >> PUD_SHIFT) as usize) {
            Some(Some(t)) => Some(&mut t[(pmd_slot(addr) & 511) as usize]),
            _ => None,
        }
    }

    /// Installs a PMD table for `addr`'s 1 GiB region (the caller allocated `pfn`).
    pub fn install_pmd_table(&mut self, addr: u64, pfn: u32) {
        let i = (addr >> PUD_SHIFT) as usize;
        if self.pmds.len() <= i {
            self.pmds.resize_with(i + 1, || None);
            self.pmd_pfns.resize(i + 1, u32::MAX);
        }
        debug_assert!(self.pmds[i].is_none());
        self.pmds[i] = Some(Box::new([Pmd::NONE; PTRS_PER_PMD]));
        self.pmd_pfns[i] = pfn;
        self.nr_pmd_tables += 1;
    }

    /// Removes the PMD table of region `key` (`addr >> PUD_SHIFT`); returns its PFN.
    pub fn remove_pmd_table(&mut self, key: u64) -> Option<u32> {
        let t = self.pmds.get_mut(key as usize)?.take()?;
        debug_assert!(t.iter().all(|p| p.is_none()));
        self.nr_pmd_tables -= 1;
        Some(std::mem::replace(
            &mut self.pmd_pfns[key as usize],
            u32::MAX,
        ))
    }

    #[inline]
    pub fn has_pmd_table(&self, addr: u64) -> bool {
        matches!(self.pmds.get((addr >> PUD_SHIFT) as usize), Some(Some(_)))
    }

    /// The regions (`addr >> PUD_SHIFT`) that have a PMD table, ascending.
    pub fn pmd_table_keys(&self) -> Vec<u64> {
        self.pmds
            .iter()
            .enumerate()
            .filter(|(_, t)| t.is_some())
            .map(|(i, _)| i as u64)
            .collect()
    }

    /// The PMD table of region `key`.
    pub fn pmd_table(&self, key: u64) -> Option<&PmdTable> {
        self.pmds.get(key as usize).and_then(|t| t.as_deref())
    }

    pub fn nr_pmd_tables(&self) -> usize {
        self.nr_pmd_tables
    }

    /// Allocates an empty PTE table backed by `pfn`, returns its index.
    pub fn new_pte_table(&mut self, pfn: u32) -> u32 {
        match self.free_ptes.pop() {
            Some(i) => {
                *self.ptes[i as usize] = [Pte::NONE; PTRS_PER_PTE];
                self.pte_pfns[i as usize] = pfn;
                i
            }
            None => {
                self.ptes.push(Box::new([Pte::NONE; PTRS_PER_PTE]));
                self.pte_pfns.push(pfn);
                (self.ptes.len() - 1) as u32
            }
        }
    }

    /// Releases a PTE table; returns its PFN for the caller to free.
    pub fn free_pte_table(&mut self, idx: u32) -> u32 {
        debug_assert!(self.ptes[idx as usize].iter().all(|p| p.is_none()));
        self.free_ptes.push(idx);
        std::mem::replace(&mut self.pte_pfns[idx as usize], u32::MAX)
    }

    #[inline]
    pub fn pte_table(&self, idx: u32) -> &PteTable {
        &self.ptes[idx as usize]
    }
    #[inline]
    pub fn pte_table_mut(&mut self, idx: u32) -> &mut PteTable {
        &mut self.ptes[idx as usize]
    }

    /// The PTE for `addr`, or NONE if there is no table.
    #[inline]
    pub fn pte(&self, addr: u64) -> Pte {
        let pmd = self.pmd(addr);
        if pmd.is_table() {
            self.ptes[pmd.table_idx() as usize][pte_index(addr)]
        } else {
            Pte::NONE
        }
    }

    pub fn live_pte_tables(&self) -> usize {
        self.ptes.len() - self.free_ptes.len()
    }
}
