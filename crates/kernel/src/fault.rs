//! The fault vocabulary every fault path shares, as the kernel keeps it in headers below both
//! `mm/memory.c` and `mm/huge_memory.c`: `struct vm_fault` and `enum fault_flag`
//! (`include/linux/mm_types.h`, `include/linux/mm.h`), the `vm_fault_t` outcomes, and who asks
//! whether THP is allowed (`enum tva_type`, `include/linux/huge_mm.h`, Linux 6.18).
//! A leaf module: it names types only, so `memory`, `huge_memory`, `gup`, `userfaultfd` and
//! `khugepaged` can all use it without depending on each other for it.

use crate::ids::MmId;
use crate::mm::{Vma, VmaBacking};
use crate::pgtable::Pte;
use crate::types::{PAGE_SHIFT, PMD_MASK};

/// `vm_fault_t` outcomes the model distinguishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VmFault {
    /// Handled (or nothing to do; the access is retried).
    Done,
    /// `VM_FAULT_FALLBACK`: the huge path declined, continue at PTE level.
    Fallback,
    /// `VM_FAULT_OOM`.
    Oom,
    /// `VM_FAULT_SIGBUS` (a shmem fault beyond i_size).
    Sigbus,
    /// `VM_FAULT_RETRY`: `filemap_fault` dropped the fault lock for readahead I/O
    /// (`maybe_unlock_mmap_for_io`); `major` is `VM_FAULT_MAJOR` (the page was not cached), on
    /// which the arch fault handler retries with `FAULT_FLAG_TRIED` (so the retry counts as a
    /// major fault). GUP always retries with `FAULT_FLAG_TRIED`.
    Retry { major: bool },
    /// `handle_userfault` → `VM_FAULT_RETRY` with these `UFFD_PAGEFAULT_FLAG_*` flags: not
    /// counted; the monitor resolves it and the fault is retried.
    Userfault(u32),
}

/// Who asks whether THP is allowed (`tva_type`): it decides which checks apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tva {
    /// A page fault: sysfs enforced; size/alignment checked by the fault handler.
    PageFault,
    /// smaps `THPeligible`: sysfs enforced, VMA-size check, anon_vma not required.
    Smaps,
    /// khugepaged: sysfs enforced, VMA-size check, anon_vma required.
    Khugepaged,
    /// MADV_COLLAPSE: sysfs ignored, VMA-size check, anon_vma required.
    ForcedCollapse,
}

/// `enum fault_flag`: the subset the model reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct FaultFlags(u8);

impl FaultFlags {
    /// `FAULT_FLAG_WRITE`.
    pub(crate) const WRITE: FaultFlags = FaultFlags(1 << 0);
    /// `FAULT_FLAG_TRIED`: a retry after `VM_FAULT_RETRY` (GUP's retry; `mm_account_fault`
    /// counts it as a major fault).
    pub(crate) const TRIED: FaultFlags = FaultFlags(1 << 1);
    /// `FAULT_FLAG_ORIG_PTE_VALID`: `Vmf::orig_pte` holds the PTE the fault found.
    pub(crate) const ORIG_PTE_VALID: FaultFlags = FaultFlags(1 << 2);
    /// Model-only: the handler returned `VM_FAULT_MAJOR` (`do_swap_page` read the page from
    /// swap), which `mm_account_fault` counts as a major fault.
    pub(crate) const MAJOR: FaultFlags = FaultFlags(1 << 3);

    /// The flags of a fault for a read (`false`) or a write (`true`).
    #[must_use]
    pub(crate) fn for_access(write: bool) -> FaultFlags {
        if write {
            FaultFlags::WRITE
        } else {
            FaultFlags::default()
        }
    }
    #[must_use]
    pub(crate) fn contains(self, f: FaultFlags) -> bool {
        self.0 & f.0 == f.0
    }
    #[must_use]
    pub(crate) fn with(self, f: FaultFlags) -> FaultFlags {
        FaultFlags(self.0 | f.0)
    }
}

/// `struct vm_fault`: one fault, handed down the fault path as a unit so that every level
/// sees the same VMA copy, address and flags.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Vmf {
    /// The faulting mm (`vma->vm_mm`).
    pub(crate) mm: MmId,
    /// The caller's copy of the VMA. Steps that change the VMA in the tree during the fault
    /// (`anon_vma_prepare`) update this copy too, so later steps never read a stale one.
    pub(crate) vma: Vma,
    /// The faulting address as the access made it (`real_address`; the page-level code
    /// masks it).
    pub(crate) address: u64,
    /// `linear_page_index(vma, address)`: the page's offset in the VMA's object.
    pub(crate) pgoff: u64,
    pub(crate) flags: FaultFlags,
    /// `orig_pte`: the PTE the fault found, when `ORIG_PTE_VALID`.
    pub(crate) orig_pte: Pte,
}

impl Vmf {
    /// A fault at `address` in `vma` (which contains it).
    pub(crate) fn new(mm: MmId, vma: Vma, address: u64, flags: FaultFlags) -> Vmf {
        debug_assert!(vma.start <= address && address < vma.end);
        Vmf {
            mm,
            vma,
            address,
            pgoff: vma.pgoff + ((address - vma.start) >> PAGE_SHIFT),
            flags,
            orig_pte: Pte::NONE,
        }
    }
    #[must_use]
    pub(crate) fn is_write(&self) -> bool {
        self.flags.contains(FaultFlags::WRITE)
    }
    /// The PMD-aligned address (`haddr`).
    #[must_use]
    pub(crate) fn haddr(&self) -> u64 {
        self.address & PMD_MASK
    }
    /// `vmf_orig_pte_uffd_wp`: the PTE the fault found was a uffd-wp marker, so the new entry
    /// keeps the protection.
    #[must_use]
    pub(crate) fn orig_pte_uffd_wp(&self) -> bool {
        self.flags.contains(FaultFlags::ORIG_PTE_VALID) && self.orig_pte.is_marker()
    }
    /// What backs the VMA: where the fault path dispatches (`vma_is_anonymous`).
    #[must_use]
    pub(crate) fn backing(&self) -> VmaBacking {
        self.vma.backing
    }
}
