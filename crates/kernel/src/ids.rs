//! Typed identifiers of the model's objects and the physical frame number, so that an mm
//! index, a folio id, a PTE-table index and a PFN cannot be mixed up (the kernel has pointers
//! for the first three and `unsigned long pfn` for the last; the model has arenas).
//! Conversions to and from plain integers happen only where a value is packed (page-table
//! entries, arena slots) or leaves the model.

use std::fmt;

/// Index of an `mm_struct` in `Kernel::mms` (stable for the kernel's lifetime: an exited
/// mm's slot is emptied, never reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MmId(u32);

impl MmId {
    /// The arena slot of this mm.
    #[inline]
    #[must_use]
    pub fn index(self) -> usize {
        self.0 as usize
    }
    /// The id of arena slot `i`.
    #[inline]
    #[must_use]
    pub(crate) fn from_index(i: usize) -> MmId {
        MmId(u32::try_from(i).expect("fewer than 2^32 mms"))
    }
}

impl fmt::Display for MmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "mm{}", self.0)
    }
}

/// A folio's slot in the folio arena (`Folios`); reused after the folio is freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FolioId(u32);

impl FolioId {
    #[inline]
    #[must_use]
    pub fn index(self) -> usize {
        self.0 as usize
    }
    #[inline]
    #[must_use]
    pub(crate) fn from_index(i: usize) -> FolioId {
        FolioId(u32::try_from(i).expect("fewer than 2^32 folios"))
    }
    /// The 32 bits a page-table entry stores.
    #[inline]
    #[must_use]
    pub(crate) fn to_bits(self) -> u32 {
        self.0
    }
    #[inline]
    #[must_use]
    pub(crate) fn from_bits(b: u32) -> FolioId {
        FolioId(b)
    }
}

impl fmt::Display for FolioId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "f{}", self.0)
    }
}

/// A PTE table's slot in its mm's page-table arena (what a PMD entry pointing to a table
/// stores instead of the table's physical address).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PteTableId(u32);

impl PteTableId {
    #[inline]
    #[must_use]
    pub fn index(self) -> usize {
        self.0 as usize
    }
    #[inline]
    #[must_use]
    pub(crate) fn from_index(i: usize) -> PteTableId {
        PteTableId(u32::try_from(i).expect("fewer than 2^32 PTE tables"))
    }
    #[inline]
    #[must_use]
    pub(crate) fn to_bits(self) -> u32 {
        self.0
    }
    #[inline]
    #[must_use]
    pub(crate) fn from_bits(b: u32) -> PteTableId {
        PteTableId(b)
    }
}

/// An `anon_vma` (the model keeps only its identity: VMAs that share one may merge).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AnonVmaId(u32);

impl AnonVmaId {
    /// The first id handed out.
    pub(crate) const FIRST: AnonVmaId = AnonVmaId(1);
    /// The id after this one.
    #[must_use]
    pub(crate) fn next(self) -> AnonVmaId {
        AnonVmaId(self.0 + 1)
    }
}

/// A physical frame number (`unsigned long pfn`): one width everywhere, 64 bits. Memory is
/// limited to `MAX_MEMORY`, so every PFN also fits the 32 bits a folio stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pfn(pub u64);

impl Pfn {
    /// The PFN `n` pages above this one.
    #[inline]
    #[must_use]
    pub fn offset(self, n: u64) -> Pfn {
        Pfn(self.0 + n)
    }
    /// The compact form a folio stores (PFNs stay below 2^32, see `Kernel::new`).
    #[inline]
    #[must_use]
    pub(crate) fn to_u32(self) -> u32 {
        u32::try_from(self.0).expect("PFN below 2^32 (MAX_MEMORY)")
    }
}

impl fmt::Display for Pfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}
