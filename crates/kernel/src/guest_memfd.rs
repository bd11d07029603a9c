//! guest_memfd after `virt/kvm/guest_memfd.c` (Linux 6.18): `kvm_gmem_create`
//! (`KVM_CREATE_GUEST_MEMFD` on a VM), `kvm_gmem_fallocate` (`kvm_gmem_allocate`,
//! `kvm_gmem_punch_hole`), `kvm_gmem_setattr` (no size change), `kvm_gmem_mmap` (only with
//! `GUEST_MEMFD_FLAG_MMAP`, only `MAP_SHARED`), `kvm_gmem_fault_user_mapping` (no fault-around:
//! the VMA has no `map_pages`) and `kvm_gmem_get_folio`.
//!
//! A guest_memfd inode is a `ShmemInode` with `gmem` set: it shares the page cache
//! (`index → folio`), the i_mmap walk (`unmap_mapping_range`) and truncation
//! (`truncate_inode_pages_range` is `shmem_undo_range` on order-0 folios), but its folios come
//! from `mapping_gfp_mask = GFP_HIGHUSER` (unmovable: `kvm_gmem_migrate_folio` refuses, so
//! they take unmovable pageblocks), are not swap-backed (no `nr_shmem`, measured:
//! FINDINGS.md §20) and sit on the unevictable LRU. A guest_memfd VMA is never THP-eligible
//! (`file_thp_enabled` wants a file not open for write).
//!
//! The huge-folio proposals are switches (`profile::Switches::gmem_huge_order`,
//! `gmem_fallback`, `gmem_punch`), model-only; the default is 6.18 (order 0).

use crate::errno::Errno;
use crate::fault::VmFault;
use crate::folio::FolioId;
use crate::ids::InodeId;
use crate::page_alloc::Gfp;
use crate::profile::{GmemFallback, GmemPunch};
use crate::shmem::{FallocMode, ShmemInode};
use crate::types::PAGE_SIZE;
use crate::Kernel;

/// `GUEST_MEMFD_FLAG_MMAP`: the file may be mmap()ed (`kvm_gmem_supports_mmap`).
pub const GUEST_MEMFD_FLAG_MMAP: u64 = 1 << 0;
/// `GUEST_MEMFD_FLAG_INIT_SHARED`: memory starts shared with the host, so user faults
/// allocate and map pages.
pub const GUEST_MEMFD_FLAG_INIT_SHARED: u64 = 1 << 1;
/// `kvm_gmem_get_supported_flags` of a default (`KVM_X86_DEFAULT_VM`) VM on x86-64: both
/// flags (`KVM_CHECK_EXTENSION(KVM_CAP_GUEST_MEMFD_FLAGS)` is 3 on the host; no other VM
/// type can be created there).
pub const GMEM_SUPPORTED_FLAGS: u64 = GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED;
/// The largest `i_size` the model takes (`loff_t` is signed; far beyond any simulated memory).
const GMEM_MAX_SIZE: u64 = 1 << 62;

/// The guest_memfd part of an inode (`struct gmem_inode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GmemInode {
    /// `GUEST_MEMFD_FLAG_*` given at creation.
    pub flags: u64,
}

/// `GFP_HIGHUSER`, the mapping's gfp mask: `GFP_HIGHUSER_MOVABLE` without `__GFP_MOVABLE`.
const GMEM_GFP: Gfp = Gfp::KERNEL;
/// A huge-folio attempt of the proposals: no retry loop, the fallback decides.
const GMEM_HUGE_GFP: Gfp = Gfp {
    noretry: true,
    ..Gfp::KERNEL
};

impl Kernel {
    /// `kvm_gmem_create`: flags first (EINVAL beyond the supported ones), then the size
    /// (EINVAL for 0 and for a size that is not page aligned).
    pub fn kvm_gmem_create(&mut self, size: u64, flags: u64) -> Result<InodeId, Errno> {
        if flags & !GMEM_SUPPORTED_FLAGS != 0 {
            return Err(Errno::EINVAL);
        }
        if size == 0 || size % PAGE_SIZE != 0 || size > GMEM_MAX_SIZE {
            return Err(Errno::EINVAL);
        }
        self.shmem.inodes.push(ShmemInode {
            size,
            gmem: Some(GmemInode { flags }),
            ..ShmemInode::default()
        });
        Ok(InodeId::from_index(self.shmem.inodes.len() - 1))
    }

    /// Whether `ino` is a guest_memfd inode.
    pub fn is_gmem(&self, ino: InodeId) -> bool {
        self.shmem.inodes[ino.index()].gmem.is_some()
    }

    fn gmem_flags(&self, ino: InodeId) -> u64 {
        self.shmem.inodes[ino.index()].gmem.map_or(0, |g| g.flags)
    }

    /// `kvm_gmem_setattr`: a guest_memfd never changes size (ftruncate is EINVAL).
    pub fn kvm_gmem_setattr(&mut self, _ino: InodeId) -> Result<(), Errno> {
        Err(Errno::EINVAL)
    }

    /// fallocate(2) on a page-cache object: guest_memfd or shmem.
    pub fn file_fallocate(
        &mut self,
        ino: InodeId,
        mode: FallocMode,
        offset: u64,
        len: u64,
    ) -> Result<(), Errno> {
        if self.is_gmem(ino) {
            self.kvm_gmem_fallocate(ino, mode, offset, len)
        } else {
            self.shmem_fallocate(ino, mode, offset, len)
        }
    }

    /// ftruncate(2) on a page-cache object: guest_memfd or shmem.
    pub fn file_truncate(&mut self, ino: InodeId, size: u64) -> Result<(), Errno> {
        if self.is_gmem(ino) {
            self.kvm_gmem_setattr(ino)
        } else {
            self.shmem_truncate(ino, size)
        }
    }

    /// `vfs_fallocate` + `kvm_gmem_fallocate`. vfs first: a length of 0 is EINVAL, a punch
    /// without KEEP_SIZE EOPNOTSUPP; then guest_memfd: KEEP_SIZE is required (EOPNOTSUPP),
    /// offset and length must be page aligned (EINVAL); an allocation must end inside i_size
    /// (EINVAL, "immutable" size), a punch may reach beyond it.
    pub fn kvm_gmem_fallocate(
        &mut self,
        ino: InodeId,
        mode: FallocMode,
        offset: u64,
        len: u64,
    ) -> Result<(), Errno> {
        let end = crate::shmem::vfs_fallocate_end(offset, len)?;
        if !mode.keep_size {
            return Err(Errno::EOPNOTSUPP);
        }
        if offset % PAGE_SIZE != 0 || len % PAGE_SIZE != 0 {
            return Err(Errno::EINVAL);
        }
        if mode.punch_hole {
            return self.kvm_gmem_punch_hole(ino, offset, end);
        }
        if end > self.shmem.inodes[ino.index()].size {
            return Err(Errno::EINVAL);
        }
        let mut index = offset / PAGE_SIZE;
        while index < end / PAGE_SIZE {
            let id = self.kvm_gmem_get_folio(ino, index)?;
            let (_, first) = self.filemap_get_folio(ino, index).expect("cached");
            index = first + u64::from(self.folios.get(id).nr_pages());
        }
        Ok(())
    }

    /// `kvm_gmem_punch_hole`: `truncate_inode_pages_range` over the page-aligned range, which
    /// unmaps the pages from every mapping first. With huge folios (the proposals) a folio the
    /// hole covers in part is split to order 0 (`gmem_punch=split`), kept whole with the hole
    /// zeroed and unmapped (`zero`), or the punch is refused (`einval`, nothing changed).
    fn kvm_gmem_punch_hole(&mut self, ino: InodeId, offset: u64, end: u64) -> Result<(), Errno> {
        let (start, stop) = (offset / PAGE_SIZE, end / PAGE_SIZE);
        let partial = self.gmem_partial_folios(ino, start, stop);
        if !partial.is_empty() {
            match self.profile.switches.gmem_punch {
                GmemPunch::Einval => return Err(Errno::EINVAL),
                GmemPunch::Split => {
                    for id in partial {
                        self.shmem_split_folio(id, None);
                    }
                }
                GmemPunch::Zero => {
                    for id in partial {
                        let first = self.shmem.owner[&id].1;
                        let n = u64::from(self.folios.get(id).nr_pages());
                        for i in start.max(first)..stop.min(first + n) {
                            self.folios
                                .clear_nonzero(id, crate::util::page_u32(i - first));
                        }
                    }
                }
            }
        }
        self.unmap_mapping_range(ino, start, stop - 1, false);
        // Whole folios only remain at the ends now (split or kept whole): shmem_undo_range
        // frees the folios inside the range and leaves the others.
        if self.profile.switches.gmem_punch == GmemPunch::Zero {
            self.truncate_whole_folios(ino, start, stop);
        } else {
            self.shmem_undo_range(ino, offset, end - 1);
        }
        Ok(())
    }

    /// Large folios of `ino` that `[start, stop)` (page indices) covers only in part.
    fn gmem_partial_folios(&self, ino: InodeId, start: u64, stop: u64) -> Vec<FolioId> {
        let mut v = Vec::new();
        for at in [start, stop - 1] {
            if let Some((id, first)) = self.filemap_get_folio(ino, at) {
                let n = u64::from(self.folios.get(id).nr_pages());
                if n > 1 && (first < start || first + n > stop) && !v.contains(&id) {
                    v.push(id);
                }
            }
        }
        v
    }

    /// `kvm_gmem_mmap`: ENODEV without `GUEST_MEMFD_FLAG_MMAP`, EINVAL unless MAP_SHARED.
    pub(crate) fn kvm_gmem_mmap(&self, ino: InodeId, shared: bool) -> Result<(), Errno> {
        if self.gmem_flags(ino) & GUEST_MEMFD_FLAG_MMAP == 0 {
            return Err(Errno::ENODEV);
        }
        if !shared {
            return Err(Errno::EINVAL);
        }
        Ok(())
    }

    /// `kvm_gmem_fault_user_mapping`: SIGBUS at or beyond i_size, SIGBUS unless the memory
    /// is shared with the host (`GUEST_MEMFD_FLAG_INIT_SHARED`; 6.18 has no conversion), else
    /// the folio caching the page (allocated if absent). The caller maps that one page.
    pub(crate) fn kvm_gmem_fault_user_mapping(
        &mut self,
        ino: InodeId,
        index: u64,
    ) -> Result<FolioId, VmFault> {
        if index >= self.shmem.inodes[ino.index()].size / PAGE_SIZE {
            return Err(VmFault::Sigbus);
        }
        if self.gmem_flags(ino) & GUEST_MEMFD_FLAG_INIT_SHARED == 0 {
            return Err(VmFault::Sigbus);
        }
        self.kvm_gmem_get_folio(ino, index)
            .map_err(|_| VmFault::Oom)
    }

    /// `kvm_gmem_get_folio`: the cached folio, or a new one added to the page cache
    /// (`__filemap_get_folio(FGP_LOCK | FGP_CREAT)` with `GFP_HIGHUSER`): order 0 in 6.18.
    /// With `gmem_huge_order` (proposal) the naturally aligned block of that order is tried
    /// first when it lies inside i_size and nothing of it is cached; `gmem_fallback` says
    /// whether a failure takes order 0 or is ENOMEM.
    pub(crate) fn kvm_gmem_get_folio(
        &mut self,
        ino: InodeId,
        index: u64,
    ) -> Result<FolioId, Errno> {
        if let Some((id, _)) = self.filemap_get_folio(ino, index) {
            return Ok(id);
        }
        let order = self.profile.switches.gmem_huge_order;
        if order > 0 {
            let nr = 1u64 << order;
            let first = index & !(nr - 1);
            let pages = self.shmem.inodes[ino.index()].size / PAGE_SIZE;
            if first + nr <= pages && !self.filemap_range_has_folio(ino, first, nr) {
                if let Some(pfn) = self.alloc_charged_pages(order, GMEM_HUGE_GFP) {
                    let id = self.folios.alloc(pfn, order, 0);
                    self.shmem_add_to_page_cache(ino, first, id);
                    return Ok(id);
                }
                if self.profile.switches.gmem_fallback == GmemFallback::None {
                    return Err(Errno::ENOMEM);
                }
            }
        }
        let pfn = self.alloc_charged_pages(0, GMEM_GFP).ok_or(Errno::ENOMEM)?;
        let id = self.folios.alloc(pfn, 0, 0);
        self.shmem_add_to_page_cache(ino, index, id);
        Ok(id)
    }
}

impl Kernel {
    /// Whether a page-cache folio belongs to a guest_memfd inode.
    pub(crate) fn folio_is_gmem(&self, id: FolioId) -> bool {
        self.shmem
            .owner
            .get(&id)
            .is_some_and(|&(ino, _)| self.is_gmem(ino))
    }
}
