//! Typed identifiers of the model's objects and the physical frame number, so that an mm
//! index, a folio id, a PTE-table index and a PFN cannot be mixed up (the kernel has pointers
//! for the first three and `unsigned long pfn` for the last; the model has arenas).
//! Conversions to and from plain integers happen only where a value is packed (page-table
//! entries, arena slots) or leaves the model.

use std::fmt;

/// An arena index newtype: `index` for the slot, `from_index` to make one (checked: arenas
/// stay below 2^32 entries), and `Display` with `prefix`.
macro_rules! arena_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(u32);

        impl $name {
            /// The arena slot.
            #[inline]
            #[must_use]
            pub fn index(self) -> usize {
                self.0 as usize
            }
            /// The id of arena slot `i`.
            #[inline]
            #[must_use]
            pub(crate) fn from_index(i: usize) -> $name {
                $name(u32::try_from(i).expect(concat!("fewer than 2^32 ", $what)))
            }
            /// The 32 bits a page-table entry stores.
            #[inline]
            #[must_use]
            #[allow(dead_code, reason = "only the ids packed into entries use it")]
            pub(crate) fn to_bits(self) -> u32 {
                self.0
            }
            /// The id a page-table entry stores.
            #[inline]
            #[must_use]
            #[allow(dead_code, reason = "only the ids packed into entries use it")]
            pub(crate) fn from_bits(b: u32) -> $name {
                $name(b)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

arena_id!(
    /// Index of an `mm_struct` in `Kernel::mms` (stable for the kernel's lifetime: an exited
    /// mm's slot is emptied, never reused).
    MmId,
    "mm",
    "mms"
);
arena_id!(
    /// A folio's slot in the folio arena (`Folios`); reused after the folio is freed.
    FolioId,
    "f",
    "folios"
);
arena_id!(
    /// A PTE table's slot in its mm's page-table arena (what a PMD entry pointing to a table
    /// stores instead of the table's physical address).
    PteTableId,
    "pt",
    "PTE tables"
);

arena_id!(
    /// A shmem inode (`struct inode` + its `address_space`) in `Kernel::shmem`: an object
    /// created by `memfd_create`, a tmpfs file, or a `MAP_SHARED|MAP_ANONYMOUS` mapping.
    InodeId,
    "ino",
    "inodes"
);

/// An `anon_vma` (the model keeps only its identity: VMAs that share one may merge).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AnonVmaId(u32);

impl AnonVmaId {
    /// The first id handed out.
    pub(crate) const FIRST: AnonVmaId = AnonVmaId(1);
    /// Marks the anon_vmas that `anon_vma_fork()` gives child VMAs: such a VMA's
    /// `anon_vma_chain` also links the parent's anon_vma, so it is not singular and
    /// `find_mergeable_anon_vma` does not hand it to a neighbour.
    const FORKED: u32 = 1 << 31;
    /// The id after this one.
    #[must_use]
    pub(crate) fn next(self) -> AnonVmaId {
        AnonVmaId((self.0 & !Self::FORKED) + 1)
    }
    /// This id, as a fork child's anon_vma.
    #[must_use]
    pub(crate) fn forked(self) -> AnonVmaId {
        AnonVmaId(self.0 | Self::FORKED)
    }
    /// A fork child's anon_vma (its chain is not singular).
    #[must_use]
    pub(crate) fn is_forked(self) -> bool {
        self.0 & Self::FORKED != 0
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

arena_id!(
    /// A hugetlbfs inode in `Kernel::hugetlb` (`hugetlb::HugetlbInode`): a `MFD_HUGETLB`
    /// memfd, or the unlinked file behind a `MAP_HUGETLB` mapping (`hugetlb_file_setup`).
    HugetlbInodeId,
    "hino",
    "hugetlb inodes"
);

arena_id!(
    /// A huge page of the hugetlb pool in use (`hugetlb::HugetlbFolio`).
    HugetlbFolioId,
    "hf",
    "hugetlb folios"
);

arena_id!(
    /// The reserve map of a private hugetlb mapping (`struct resv_map` hung on
    /// `vma->vm_private_data` with `HPAGE_RESV_OWNER`), shared by the parts of a split VMA.
    ResvMapId,
    "resv",
    "reserve maps"
);
