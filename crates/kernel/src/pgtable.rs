//! Page-table entries and the per-mm page-table radix (x86-64 4-level layout as
//! `arch/x86/include/asm/pgtable_types.h` describes it, reduced to what THP decisions read).
//! A PMD entry is none, the huge zero page, a PMD-mapped folio, or a PTE table; a PTE is none,
//! the zero page, a page of a folio, a uffd-wp marker, or a swap entry (the slot of the one
//! swap device, `swapfile.rs`). Entries are packed into a `u64`
//! so a PTE table is 4 KiB, as in the kernel.

use std::collections::BTreeSet;

use crate::ids::{FolioId, Pfn, PteTableId};
use crate::types::{PAGE_SHIFT, PMD_SHIFT, PTRS_PER_PMD, PTRS_PER_PTE, PUD_SHIFT};

// The entry kind sits in the low three bits; the same codes mean different things at the two
// levels (code 3 is a uffd-wp marker in a PTE and a PTE table in a PMD), which is why each
// level decodes them into its own enum.
const KIND_NONE: u64 = 0;
const KIND_ZERO: u64 = 1;
const KIND_PAGE: u64 = 2;
const KIND_MARKER_OR_TABLE: u64 = 3;
/// A swap entry (PTEs only): the slot offset sits in the id field; `EXCLUSIVE` is
/// `SWP_EXCLUSIVE`, and `SOFT_DIRTY` / `UFFD_WP` are the swap PTE's copies of those bits.
const KIND_SWAP: u64 = 4;
const KIND_MASK: u64 = 7;

/// What a PTE holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PteKind {
    None,
    /// The shared zero page.
    Zero,
    /// A page of a folio.
    Page,
    /// A uffd-wp PTE marker (`PTE_MARKER_UFFD_WP`): not present, remembers the protection.
    Marker,
    /// A swap entry (`is_swap_pte`): not present, names a slot of the swap device.
    Swap,
}

/// What a PMD holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PmdKind {
    None,
    /// The huge zero folio.
    HugeZero,
    /// A PMD-mapped folio.
    Thp,
    /// A PTE table.
    Table,
}

/// Entry bits (same positions in PTEs and PMDs).
pub(crate) const WRITE: u64 = 1 << 3;
pub(crate) const DIRTY: u64 = 1 << 4;
pub(crate) const YOUNG: u64 = 1 << 5;
pub(crate) const UFFD_WP: u64 = 1 << 6;
pub(crate) const SOFT_DIRTY: u64 = 1 << 7;
/// The mapped page is `PageAnonExclusive` (only meaningful for KIND_PAGE).
pub(crate) const EXCLUSIVE: u64 = 1 << 8;
/// `PROT_NONE` entry: present for the kernel, inaccessible to the task.
pub(crate) const PROTNONE: u64 = 1 << 9;
/// Model-only: a store went through this PTE, so the page's non-zero content is already
/// recorded (lets repeated stores skip the folio). Never copied to an entry for another page.
pub(crate) const STORED: u64 = 1 << 10;
const IDX_SHIFT: u32 = 16;
const IDX_MASK: u64 = 0x3ff;
const ID_SHIFT: u32 = 32;

/// The id field (the upper 32 bits) of an entry.
#[inline]
fn high_bits(e: u64) -> u32 {
    // The shift leaves 32 bits: the conversion cannot fail.
    u32::try_from(e >> ID_SHIFT).unwrap_or(u32::MAX)
}

/// The bit accessors PTEs and PMDs share (same packing).
macro_rules! entry_bits {
    ($t:ty) => {
        impl $t {
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
    #[must_use]
    pub fn kind(self) -> PteKind {
        match self.0 & KIND_MASK {
            KIND_NONE => PteKind::None,
            KIND_ZERO => PteKind::Zero,
            KIND_PAGE => PteKind::Page,
            KIND_SWAP => PteKind::Swap,
            _ => PteKind::Marker,
        }
    }
    #[inline]
    #[must_use]
    pub fn is_present(self) -> bool {
        matches!(self.kind(), PteKind::Zero | PteKind::Page)
    }
    /// Maps a page of a folio.
    #[inline]
    #[must_use]
    pub fn is_page(self) -> bool {
        self.0 & KIND_MASK == KIND_PAGE
    }
    /// Maps the shared zero page.
    #[inline]
    #[must_use]
    pub fn is_zero_page(self) -> bool {
        self.0 & KIND_MASK == KIND_ZERO
    }
    /// A uffd-wp marker.
    #[inline]
    #[must_use]
    pub fn is_marker(self) -> bool {
        self.0 & KIND_MASK == KIND_MARKER_OR_TABLE
    }
    /// A swap entry.
    #[inline]
    #[must_use]
    pub fn is_swap(self) -> bool {
        self.0 & KIND_MASK == KIND_SWAP
    }
    /// A swap entry for `slot` (`swp_entry_to_pte`) with the bits it keeps (`EXCLUSIVE`,
    /// `SOFT_DIRTY`, `UFFD_WP`).
    #[inline]
    #[must_use]
    pub fn swap(slot: u32, bits: u64) -> Pte {
        Pte(KIND_SWAP | (bits & (EXCLUSIVE | SOFT_DIRTY | UFFD_WP)) | (u64::from(slot) << ID_SHIFT))
    }
    /// The slot of a swap entry (`swp_offset`).
    #[inline]
    #[must_use]
    pub fn swap_slot(self) -> u32 {
        high_bits(self.0)
    }
    /// A uffd-wp marker (`make_pte_marker(PTE_MARKER_UFFD_WP)`).
    #[inline]
    #[must_use]
    pub fn marker() -> Pte {
        Pte(KIND_MARKER_OR_TABLE | UFFD_WP)
    }
    #[inline]
    pub fn zero(bits: u64) -> Pte {
        Pte(KIND_ZERO | bits)
    }
    #[inline]
    pub fn page(folio: FolioId, idx: u32, bits: u64) -> Pte {
        debug_assert!(u64::from(idx) <= IDX_MASK);
        Pte(KIND_PAGE
            | bits
            | (u64::from(idx) << IDX_SHIFT)
            | (u64::from(folio.to_bits()) << ID_SHIFT))
    }
    /// The folio of a `Page` entry.
    #[inline]
    #[must_use]
    pub fn folio(self) -> FolioId {
        FolioId::from_bits(high_bits(self.0))
    }
    /// The page index inside the folio of a `Page` entry.
    #[inline]
    #[must_use]
    pub fn idx(self) -> u32 {
        // IDX_MASK keeps 10 bits: the conversion cannot fail.
        u32::try_from((self.0 >> IDX_SHIFT) & IDX_MASK).unwrap_or(0)
    }
}

impl std::fmt::Debug for Pte {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind() {
            PteKind::None => write!(f, "none"),
            PteKind::Zero => write!(f, "zero{:#x}", self.0 & 0x3f8),
            PteKind::Page => write!(
                f,
                "page({} #{} {:#x})",
                self.folio(),
                self.idx(),
                self.0 & 0x3f8
            ),
            PteKind::Marker => write!(f, "marker"),
            PteKind::Swap => write!(f, "swap({} {:#x})", self.swap_slot(), self.0 & 0x3f8),
        }
    }
}

/// A PMD entry (same packing; a table entry stores a PTE-table id in the id field).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Pmd(pub u64);

impl Pmd {
    pub const NONE: Pmd = Pmd(0);
    #[inline]
    #[must_use]
    pub fn kind(self) -> PmdKind {
        match self.0 & KIND_MASK {
            KIND_NONE => PmdKind::None,
            KIND_ZERO => PmdKind::HugeZero,
            KIND_PAGE => PmdKind::Thp,
            _ => PmdKind::Table,
        }
    }
    #[inline]
    #[must_use]
    pub fn is_huge_zero(self) -> bool {
        self.0 & KIND_MASK == KIND_ZERO
    }
    #[inline]
    #[must_use]
    pub fn is_thp(self) -> bool {
        self.0 & KIND_MASK == KIND_PAGE
    }
    #[inline]
    #[must_use]
    pub fn is_huge(self) -> bool {
        matches!(self.0 & KIND_MASK, KIND_ZERO | KIND_PAGE)
    }
    #[inline]
    #[must_use]
    pub fn is_table(self) -> bool {
        self.0 & KIND_MASK == KIND_MARKER_OR_TABLE
    }
    #[inline]
    pub fn huge_zero(bits: u64) -> Pmd {
        Pmd(KIND_ZERO | bits)
    }
    #[inline]
    pub fn thp(folio: FolioId, bits: u64) -> Pmd {
        Pmd(KIND_PAGE | bits | (u64::from(folio.to_bits()) << ID_SHIFT))
    }
    #[inline]
    #[must_use]
    pub fn table(idx: PteTableId) -> Pmd {
        Pmd(KIND_MARKER_OR_TABLE | (u64::from(idx.to_bits()) << ID_SHIFT))
    }
    /// The folio of a THP entry.
    #[inline]
    #[must_use]
    pub fn folio(self) -> FolioId {
        FolioId::from_bits(high_bits(self.0))
    }
    /// The PTE table of a table entry.
    #[inline]
    #[must_use]
    pub fn table_idx(self) -> PteTableId {
        PteTableId::from_bits(high_bits(self.0))
    }
}

impl std::fmt::Debug for Pmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind() {
            PmdKind::None => write!(f, "none"),
            PmdKind::HugeZero => write!(f, "huge_zero{:#x}", self.0 & 0x3f8),
            PmdKind::Thp => write!(f, "thp({} {:#x})", self.folio(), self.0 & 0x3f8),
            PmdKind::Table => write!(f, "table({})", self.table_idx().index()),
        }
    }
}

pub(crate) type PteTable = [Pte; PTRS_PER_PTE];
pub(crate) type PmdTable = [Pmd; PTRS_PER_PMD];

/// Index of the PMD slot (2 MiB region) containing `addr`.
#[inline]
pub(crate) fn pmd_slot(addr: u64) -> u64 {
    addr >> PMD_SHIFT
}
#[inline]
pub(crate) fn pte_index(addr: u64) -> usize {
    // At most PTRS_PER_PTE - 1: the conversion cannot truncate.
    ((addr >> PAGE_SHIFT) as usize) & (PTRS_PER_PTE - 1)
}

/// `pte_index` as the `u32` page index folios use.
#[inline]
pub(crate) fn pte_index32(addr: u64) -> u32 {
    // Masked to 9 bits: the conversion cannot fail.
    u32::try_from((addr >> PAGE_SHIFT) & (PTRS_PER_PTE as u64 - 1)).unwrap_or(0)
}

/// The page tables of one mm. PMD tables are found by 1 GiB region; PTE tables live in an
/// arena indexed from PMD entries. Each table also holds a simulated PFN so page-table memory
/// is charged to the buddy allocator like the kernel's.
#[derive(Clone, Debug, Default)]
pub struct PageTables {
    /// PMD tables indexed directly by 1 GiB region (`addr >> PUD_SHIFT`); grows to the highest
    /// region used (8 bytes per GiB of address space below it).
    pmds: Vec<Option<Box<PmdTable>>>,
    pmd_pfns: Vec<Option<Pfn>>,
    /// The regions that have a PMD table, so walks skip the empty ones in O(log n) rather
    /// than stepping through `pmds` (the vector reaches ~2^17 entries for an mm with a
    /// mapping near the top of the address space).
    pmd_keys: BTreeSet<u64>,
    pub(crate) ptes: Vec<Box<PteTable>>,
    /// The PFN of each PTE table; `None` for a freed slot.
    pub(crate) pte_pfns: Vec<Option<Pfn>>,
    free_ptes: Vec<PteTableId>,
    /// Page tables deposited under huge PMDs (`pgtable_trans_huge_deposit`), by PFN, packed
    /// in 32 bits like a folio's (one per huge PMD: the memory targets count it).
    deposited: Vec<u32>,
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
    pub fn install_pmd_table(&mut self, addr: u64, pfn: Pfn) {
        let i = (addr >> PUD_SHIFT) as usize;
        if self.pmds.len() <= i {
            self.pmds.resize_with(i + 1, || None);
            self.pmd_pfns.resize(i + 1, None);
        }
        debug_assert!(self.pmds[i].is_none());
        self.pmds[i] = Some(Box::new([Pmd::NONE; PTRS_PER_PMD]));
        self.pmd_pfns[i] = Some(pfn);
        self.pmd_keys.insert(i as u64);
    }

    /// Removes the PMD table of region `key` (`addr >> PUD_SHIFT`); returns its PFN.
    pub fn remove_pmd_table(&mut self, key: u64) -> Option<Pfn> {
        let i = usize::try_from(key).ok()?;
        let t = self.pmds.get_mut(i)?.take()?;
        debug_assert!(t.iter().all(|p| p.is_none()));
        self.pmd_keys.remove(&key);
        self.pmd_pfns[i].take()
    }

    #[inline]
    pub fn has_pmd_table(&self, addr: u64) -> bool {
        matches!(self.pmds.get((addr >> PUD_SHIFT) as usize), Some(Some(_)))
    }

    /// The regions (`addr >> PUD_SHIFT`) that have a PMD table, ascending.
    pub fn pmd_table_keys(&self) -> Vec<u64> {
        self.pmd_keys.iter().copied().collect()
    }

    /// The next PMD slot a page-table walk of `[from, end)` has to visit: the first 2 MiB
    /// slot (its aligned address; the one containing `from` counts) below `end` whose PMD
    /// entry is not none. Regions without a PMD table and none entries are skipped as the
    /// kernel's `pud_none`/`pmd_none` checks with `p?d_addr_end` skip them, so a walk costs
    /// O(populated page tables), not O(range).
    pub fn next_pmd_slot(&self, from: u64, end: u64) -> Option<u64> {
        if from >= end {
            return None;
        }
        let from_key = from >> PUD_SHIFT;
        let last_key = (end - 1) >> PUD_SHIFT;
        for &key in self.pmd_keys.range(from_key..=last_key) {
            let Some(t) = self.pmd_table(key) else {
                continue;
            };
            let first = if key == from_key {
                (pmd_slot(from) & 511) as usize
            } else {
                0
            };
            // Only entries below `end` in the last region.
            let stop = if key == last_key {
                (pmd_slot(end - 1) & 511) as usize + 1
            } else {
                PTRS_PER_PMD
            };
            if let Some(i) = t[first..stop].iter().position(|p| !p.is_none()) {
                return Some((key << PUD_SHIFT) | (((first + i) as u64) << PMD_SHIFT));
            }
        }
        None
    }

    /// The populated PMD slots of `[start, end)` in address order, with their entries (a
    /// read-only walk: observation, the invariant checker). See `next_pmd_slot`.
    pub fn populated_pmds(&self, start: u64, end: u64) -> impl Iterator<Item = (u64, Pmd)> + '_ {
        let mut from = start;
        std::iter::from_fn(move || {
            let slot = self.next_pmd_slot(from, end)?;
            from = slot + (1 << PMD_SHIFT);
            Some((slot, self.pmd(slot)))
        })
    }

    /// The next region (`addr >> PUD_SHIFT`) at or after `from_key` and before `end_key`
    /// that has a PMD table (`pud_none` skipped).
    pub fn next_pmd_table_key(&self, from_key: u64, end_key: u64) -> Option<u64> {
        if from_key >= end_key {
            return None;
        }
        self.pmd_keys.range(from_key..end_key).next().copied()
    }

    /// The PMD table of region `key`.
    pub fn pmd_table(&self, key: u64) -> Option<&PmdTable> {
        self.pmds
            .get(usize::try_from(key).ok()?)
            .and_then(|t| t.as_deref())
    }

    pub fn nr_pmd_tables(&self) -> usize {
        self.pmd_keys.len()
    }

    /// Allocates an empty PTE table backed by `pfn`, returns its index.
    pub fn new_pte_table(&mut self, pfn: Pfn) -> PteTableId {
        match self.free_ptes.pop() {
            Some(i) => {
                *self.ptes[i.index()] = [Pte::NONE; PTRS_PER_PTE];
                self.pte_pfns[i.index()] = Some(pfn);
                i
            }
            None => {
                self.ptes.push(Box::new([Pte::NONE; PTRS_PER_PTE]));
                self.pte_pfns.push(Some(pfn));
                PteTableId::from_index(self.ptes.len() - 1)
            }
        }
    }

    /// Releases a PTE table; returns its PFN for the caller to free.
    pub fn free_pte_table(&mut self, idx: PteTableId) -> Pfn {
        debug_assert!(self.ptes[idx.index()].iter().all(|p| p.is_none()));
        self.free_ptes.push(idx);
        self.pte_pfns[idx.index()]
            .take()
            .expect("a live PTE table has a PFN")
    }

    #[inline]
    pub fn pte_table(&self, idx: PteTableId) -> &PteTable {
        &self.ptes[idx.index()]
    }
    #[inline]
    pub fn pte_table_mut(&mut self, idx: PteTableId) -> &mut PteTable {
        &mut self.ptes[idx.index()]
    }

    /// The PTE for `addr`, or NONE if there is no table.
    #[inline]
    pub fn pte(&self, addr: u64) -> Pte {
        let pmd = self.pmd(addr);
        if pmd.is_table() {
            self.ptes[pmd.table_idx().index()][pte_index(addr)]
        } else {
            Pte::NONE
        }
    }

    /// `pgtable_trans_huge_deposit`: keeps a page table for a later split of a huge PMD.
    pub(crate) fn deposit(&mut self, pfn: Pfn) {
        self.deposited.push(pfn.to_u32());
    }

    /// `pgtable_trans_huge_withdraw`: takes a deposited page table back.
    pub(crate) fn withdraw(&mut self) -> Option<Pfn> {
        self.deposited.pop().map(|p| Pfn(u64::from(p)))
    }

    /// Number of deposited page tables.
    pub(crate) fn nr_deposited(&self) -> usize {
        self.deposited.len()
    }

    pub fn live_pte_tables(&self) -> usize {
        self.ptes.len() - self.free_ptes.len()
    }
}
