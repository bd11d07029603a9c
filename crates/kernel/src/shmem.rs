//! Shared memory objects after `mm/shmem.c` and the truncation part of `mm/truncate.c`
//! (Linux 6.18): shmem inodes with their page cache (`address_space`: index → folio of any
//! order, each folio knowing its inode and index), the huge-folio policy
//! (`shmem_huge_global_enabled`, `shmem_allowable_huge_orders`, `shmem_get_orders_within_size`,
//! `shmem_suitable_orders`), allocation (`shmem_alloc_and_add_folio`, `shmem_get_folio_gfp`
//! with `SGP_CACHE` / `SGP_FALLOC`), the i_mmap walk (`unmap_mapping_range`),
//! `shmem_fallocate` (allocate, `KEEP_SIZE`, `PUNCH_HOLE`), `shmem_setattr` (ftruncate) and
//! `shmem_undo_range` with `truncate_inode_partial_folio` (zero the hole, then the 6.15+
//! non-uniform split at the hole boundary, `folio_split`).
//!
//! The policy follows what the host build shows (scenarios/conformance/FINDINGS.md §14): page faults consult the
//! per-size `hugepages-<N>kB/shmem_enabled` knobs for every shmem mapping, with `inherit`
//! following the mount policy (`shmem_enabled` for the internal mount); `fallocate` (no VMA)
//! follows the mount policy only, which there allows every page-cache order (8 KiB to 2 MiB,
//! PMD size first; `within_size`: the blocks that end inside the file or the fallocated
//! range; FINDINGS.md §15).
//!
//! tmpfs instances (`shmem_fill_super` with `huge=` and `size=`, FINDINGS.md §18) hold files
//! whose mappings use `shmem_vm_ops`: their faults follow the mount's `huge=` alone (the
//! per-size knobs are for `vma_is_anon_shmem` mappings: anonymous shmem and memfds, whose
//! inodes are unlinked), and their pages are charged to the instance's `size=` limit
//! (`shmem_inode_acct_blocks`: ENOSPC, which a fault turns into SIGBUS; a large folio that
//! does not fit falls back to order 0).
//!
//! Swap (`shmem_writeout` from MADV_PAGEOUT's reclaim, `shmem_swapin_folio`, `shmem_free_swap`)
//! is the last `impl` block: swapped indices hold swap entries (`ShmemInode::swapped`).
//!
//! Deviations: no `shmem_unuse` (swapoff), no memcg charge failures, no nr_inodes limit, no pins (so a split
//! never fails), no shmem shrinker for huge folios beyond i_size (`shmem_unused_huge_shrink`,
//! which a full tmpfs instance also calls before failing).

use crate::errno::Errno;
use crate::folio::{flags, FolioId};
use crate::ids::{InodeId, MmId};
use crate::mm::{vmf, MmCounter, Vma};
use crate::pgtable::{Pmd, Pte, DIRTY};
use crate::sysfs::{ShmemHuge, ShmemSizeEnabled};
use crate::types::{HPAGE_PMD_ORDER, PAGE_SHIFT, PAGE_SIZE, PMD_MASK, PMD_SIZE};
use crate::util::{highest_order, page_u32};
use crate::vmstat::{MthpStat, VmItem};
use crate::Kernel;
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::BTreeMap;

/// The PMD order as a mask (`maybe_pmd_order`).
const PMD_ORDER_BIT: u16 = 1 << HPAGE_PMD_ORDER;

/// Every page-cache order as a mask (`THP_ORDERS_ALL_FILE_DEFAULT`, orders 1..=9 on x86-64).
const FILE_ORDER_BITS: u16 = {
    let mut m = 0;
    let mut i = 0;
    while i < crate::sysfs::FILE_ORDERS.len() {
        m |= 1 << crate::sysfs::FILE_ORDERS[i];
        i += 1;
    }
    m
};

/// Where a folio is mapped: PMD mappings `(mm, haddr)` and PTE mappings
/// `(mm, addr, page index in the folio)`.
type FileMappings = (Vec<(MmId, u64)>, Vec<(MmId, u64, u32)>);

/// How `unmap_file_folio` unmaps a page-cache folio: as `try_to_unmap` does for a split or a
/// collapse, or as a truncation's `unmap_mapping_folio`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UnmapFolio {
    TryToUnmap,
    Truncate,
}

/// One shmem inode and its page cache.
#[derive(Clone, Debug, Default)]
pub struct ShmemInode {
    /// `i_size` in bytes.
    pub size: u64,
    /// The `huge=` option of the tmpfs mount the file lives on; `None` for the internal mount
    /// (`shm_mnt`), whose policy is the `shmem_enabled` knob.
    pub mount_huge: Option<ShmemHuge>,
    /// Anonymous shmem (`MAP_SHARED|MAP_ANONYMOUS`, `shmem_zero_setup`): lives as long as a
    /// VMA maps it.
    pub anon: bool,
    /// The tmpfs instance of a file made by `shmem_new_file`; `None` for the internal mount
    /// (memfds and anonymous shmem, which are unlinked: `shmem_mmap` gives their VMAs
    /// `shmem_anon_vm_ops`, so `vma_is_anon_shmem` holds for them and not for tmpfs files).
    pub mount: Option<TmpfsId>,
    /// The page cache: first index of each folio → folio.
    pub(crate) cache: BTreeMap<u64, FolioId>,
    /// Pages in the page cache (`st_blocks` is 8 per page, swapped pages included).
    pub nr_pages: u64,
    /// Indices whose folio was swapped out (`shmem_writeout`): the page cache holds a swap
    /// entry there instead of a folio, a multi-index one for a large folio written whole.
    /// First index → (first swap slot, order). Their pages are still charged to the inode
    /// (`info->swapped`, part of `st_blocks` and of the tmpfs instance's `used_blocks`).
    pub(crate) swapped: BTreeMap<u64, (u32, u8)>,
    /// Gone: evicted and no longer reachable.
    pub dead: bool,
    /// A guest_memfd inode (`guest_memfd.rs`), not shmem: its own fault, fallocate and
    /// accounting rules.
    pub gmem: Option<crate::guest_memfd::GmemInode>,
    /// Shmem, or a regular file of a disk filesystem (`readahead.rs`), which shares the
    /// page-cache machinery (`address_space`) but reads ahead, writes back and has
    /// `page_mkwrite`.
    pub kind: crate::readahead::InodeKind,
    /// The open file's readahead state (`file->f_ra`; the scenario's one open file of the
    /// object). Unused for shmem.
    pub(crate) ra: crate::readahead::FileRaState,
}

impl ShmemInode {
    /// `info->swapped`: pages of the file held by swap entries.
    pub fn nr_swapped(&self) -> u64 {
        self.swapped.values().map(|&(_, o)| 1u64 << o).sum()
    }

    /// The swap entry covering `index`: (its first index, first slot, order).
    pub(crate) fn swap_entry(&self, index: u64) -> Option<(u64, u32, u8)> {
        let (&first, &(slot, order)) = self.swapped.range(..=index).next_back()?;
        (index < first + (1u64 << order)).then_some((first, slot, order))
    }
}

/// A tmpfs instance (by creation order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TmpfsId(pub u32);

/// `struct shmem_sb_info` of a tmpfs mount: the `huge=` option and the `size=` limit.
#[derive(Clone, Debug)]
pub struct TmpfsSb {
    /// `sbinfo->huge`.
    pub huge: ShmemHuge,
    /// `sbinfo->max_blocks`: the `size=` limit in pages, 0 for none.
    pub max_blocks: u64,
    /// `sbinfo->used_blocks`: pages charged to the instance.
    pub used_blocks: u64,
}

/// The shmem state: inodes, and the page-cache side of each folio (`folio->mapping`,
/// `folio->index`, `PG_uptodate`).
#[derive(Clone, Debug, Default)]
pub(crate) struct Shmem {
    pub(crate) inodes: Vec<ShmemInode>,
    /// tmpfs instances, indexed by `TmpfsId`.
    pub(crate) mounts: Vec<TmpfsSb>,
    /// Which inode and index a page-cache folio belongs to.
    pub(crate) owner: FxHashMap<FolioId, (InodeId, u64)>,
    /// Folios added by fallocate and not yet written or faulted (`!PG_uptodate`): fault-around
    /// skips them, the next fault zeroes them.
    pub(crate) not_uptodate: FxHashSet<FolioId>,
    /// Folios with `PG_readahead` (disk files: the mark where the next asynchronous
    /// readahead starts).
    pub(crate) readahead: FxHashSet<FolioId>,
}

/// `enum sgp_type`: what the caller of `shmem_get_folio_gfp` wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sgp {
    /// A page fault: allocate if absent (SIGBUS beyond i_size), zero a fallocated folio.
    Cache,
    /// fallocate: allocate if absent, leave new folios not uptodate.
    Falloc,
    /// `UFFDIO_CONTINUE`: never allocate (ENOENT if absent; EINVAL beyond i_size), zero a
    /// fallocated folio.
    NoAlloc,
}

/// fallocate(2) modes the model implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FallocMode {
    pub keep_size: bool,
    pub punch_hole: bool,
}

/// The range checks `vfs_fallocate` makes before the file's own: a length of 0 is EINVAL, a
/// range past the largest offset EFBIG. The end offset.
pub(crate) fn vfs_fallocate_end(offset: u64, len: u64) -> Result<u64, Errno> {
    if len == 0 {
        return Err(Errno::EINVAL);
    }
    offset.checked_add(len).ok_or(Errno::EFBIG)
}

impl Kernel {
    /// A new shmem inode of `size` bytes (`shmem_get_inode`).
    pub fn shmem_new_inode(
        &mut self,
        size: u64,
        mount_huge: Option<ShmemHuge>,
        anon: bool,
    ) -> InodeId {
        self.shmem.inodes.push(ShmemInode {
            size,
            mount_huge,
            anon,
            ..ShmemInode::default()
        });
        InodeId::from_index(self.shmem.inodes.len() - 1)
    }

    /// `mount -t tmpfs -o huge=HUGE[,size=BYTES]`: a tmpfs instance (`shmem_fill_super`);
    /// `size` is rounded up to pages (`size=` in `shmem_parse_one`), 0 or `None` is no limit.
    pub fn tmpfs_mount(&mut self, huge: ShmemHuge, size: Option<u64>) -> TmpfsId {
        self.shmem.mounts.push(TmpfsSb {
            huge,
            max_blocks: size.unwrap_or(0).div_ceil(PAGE_SIZE),
            used_blocks: 0,
        });
        TmpfsId(u32::try_from(self.shmem.mounts.len() - 1).expect("tmpfs count"))
    }

    /// The tmpfs instance, for observation.
    pub fn tmpfs_sb(&self, mnt: TmpfsId) -> &TmpfsSb {
        &self.shmem.mounts[mnt.0 as usize]
    }

    /// `open(O_CREAT)` + `ftruncate(size)` of a file on tmpfs instance `mnt`
    /// (`shmem_get_inode` on its superblock): the mount's `huge=` is the file's policy.
    pub fn shmem_new_file(&mut self, mnt: TmpfsId, size: u64) -> InodeId {
        let huge = self.shmem.mounts[mnt.0 as usize].huge;
        let ino = self.shmem_new_inode(size, Some(huge), false);
        self.shmem.inodes[ino.index()].mount = Some(mnt);
        ino
    }

    /// `shmem_inode_acct_blocks`' limit test: whether `pages` more fit in the inode's tmpfs
    /// instance (always on the internal mount, which has no `size=`).
    pub(crate) fn shmem_blocks_fit(&self, ino: InodeId, pages: u64) -> bool {
        match self.shmem.inodes[ino.index()].mount {
            Some(m) => {
                let sb = &self.shmem.mounts[m.0 as usize];
                sb.max_blocks == 0 || sb.used_blocks + pages <= sb.max_blocks
            }
            None => true,
        }
    }

    /// Charges (or, negative, uncharges) `pages` to the inode's tmpfs instance
    /// (`shmem_inode_acct_blocks` / `shmem_inode_unacct_blocks`).
    fn shmem_acct_blocks(&mut self, ino: InodeId, pages: i64) {
        if let Some(m) = self.shmem.inodes[ino.index()].mount {
            let sb = &mut self.shmem.mounts[m.0 as usize];
            sb.used_blocks = sb
                .used_blocks
                .checked_add_signed(pages)
                .expect("used_blocks");
        }
    }

    /// Whether a VMA mapping `ino` is `vma_is_anon_shmem` (internal mount) rather than a
    /// tmpfs file's `shmem_vm_ops`.
    fn shmem_inode_is_anon_vma(&self, ino: InodeId) -> bool {
        self.shmem.inodes[ino.index()].mount.is_none()
    }

    /// The inode, for observation.
    pub fn shmem_inode(&self, ino: InodeId) -> &ShmemInode {
        &self.shmem.inodes[ino.index()]
    }

    /// `fstat` of a page-cache object: (`st_blocks`, `st_size`). shmem charges 8 sectors per
    /// page to the inode (`shmem_recalc_inode` / `shmem_getattr`); a guest_memfd inode's
    /// `i_blocks` is never charged (`kvm_gmem_*` add folios with `filemap_add_folio` only).
    /// A disk file's blocks are ext4's (extents allocated by fallocate and writeback, plus the
    /// delayed-allocation reservations of dirty pages, `ext4_getattr`), which the model does
    /// not keep: `None`.
    pub fn object_stat(&self, ino: InodeId) -> (Option<u64>, u64) {
        let inode = &self.shmem.inodes[ino.index()];
        let blocks = if inode.gmem.is_some() {
            Some(0)
        } else if self.inode_is_disk(ino) {
            None
        } else {
            Some((inode.nr_pages + inode.nr_swapped()) * 8)
        };
        (blocks, inode.size)
    }

    /// `shmem_get_orders_within_size`: the orders (from the highest down) whose aligned block
    /// containing `index` ends inside `max(i_size, write_end)`.
    fn shmem_get_orders_within_size(
        &self,
        ino: InodeId,
        mut orders: u16,
        index: u64,
        write_end: u64,
    ) -> u16 {
        let size = self.shmem.inodes[ino.index()].size.max(write_end);
        let pages = size.div_ceil(PAGE_SIZE);
        while orders != 0 {
            let order = highest_order(orders);
            let aligned = (index + 1).next_multiple_of(1 << order);
            if pages >= aligned {
                return orders;
            }
            orders &= !(1 << order);
        }
        0
    }

    /// `shmem_huge_global_enabled`: the mount policy's answer. A fault (`vma` is `Some`, its
    /// flags) gets the PMD order or nothing: a mapping has no write size to go by. Without a
    /// VMA (fallocate) `always` allows every page-cache order, PMD size tried first and smaller
    /// ones after it (6.18: tmpfs `huge=` extended to any size), and `within_size` those whose
    /// aligned block ends inside `max(i_size, write_end)`. `force` stays PMD only.
    /// `shmem_huge_force` (MADV_COLLAPSE) allows the PMD order whatever the policy, unless
    /// `shmem_enabled` is `deny`.
    fn shmem_huge_global_enabled(
        &self,
        ino: InodeId,
        index: u64,
        write_end: u64,
        vma: Option<u32>,
        shmem_huge_force: bool,
    ) -> u16 {
        let global = self.sysfs.shmem_enabled;
        match global {
            ShmemHuge::Deny => return 0,
            ShmemHuge::Force => return PMD_ORDER_BIT,
            _ if shmem_huge_force => return PMD_ORDER_BIT,
            _ => {}
        }
        let policy = self.shmem.inodes[ino.index()].mount_huge.unwrap_or(global);
        let advised = vma.is_some_and(|f| f & vmf::HUGEPAGE != 0);
        let orders = if vma.is_some() {
            PMD_ORDER_BIT
        } else {
            FILE_ORDER_BITS
        };
        match policy {
            ShmemHuge::Always | ShmemHuge::Force => orders,
            ShmemHuge::WithinSize => {
                let w = self.shmem_get_orders_within_size(ino, orders, index, write_end);
                if w != 0 {
                    w
                } else if advised {
                    PMD_ORDER_BIT
                } else {
                    0
                }
            }
            ShmemHuge::Advise if advised => PMD_ORDER_BIT,
            _ => 0,
        }
    }

    /// `shmem_allowable_huge_orders`: the orders a folio at `index` may have, for a fault
    /// through `vma` (of mm `mmi`) or, without one, for fallocate; `shmem_huge_force` for
    /// MADV_COLLAPSE (`TVA_FORCED_COLLAPSE`: only VM_NOHUGEPAGE and a complete prctl disable
    /// refuse, and the mount policy allows the PMD order unless `deny`).
    pub(crate) fn shmem_allowable_huge_orders(
        &self,
        ino: InodeId,
        vma: Option<(MmId, &Vma)>,
        index: u64,
        write_end: u64,
        shmem_huge_force: bool,
    ) -> u16 {
        if let Some((mmi, v)) = vma {
            if self.vma_thp_disabled_forced(mmi, v, shmem_huge_force) {
                return 0;
            }
        }
        let vm_flags = vma.map(|(_, v)| v.flags);
        let global =
            self.shmem_huge_global_enabled(ino, index, write_end, vm_flags, shmem_huge_force);
        let Some(vm_flags) = vm_flags.filter(|_| self.shmem_inode_is_anon_vma(ino)) else {
            // No VMA (fallocate), or a tmpfs file's VMA: the mount policy alone; the per-size
            // knobs are for `vma_is_anon_shmem` mappings.
            return global;
        };
        match self.sysfs.shmem_enabled {
            ShmemHuge::Deny => return 0,
            ShmemHuge::Force => return self.shmem_size_orders(|e| e == ShmemSizeEnabled::Inherit),
            _ => {}
        }
        let mut mask = self.shmem_size_orders(|e| e == ShmemSizeEnabled::Always);
        let within = self.shmem_size_orders(|e| e == ShmemSizeEnabled::WithinSize);
        mask |= self.shmem_get_orders_within_size(ino, within, index, 0);
        if vm_flags & vmf::HUGEPAGE != 0 {
            mask |= self.shmem_size_orders(|e| e == ShmemSizeEnabled::Advise);
        }
        if global != 0 {
            mask |= self.shmem_size_orders(|e| e == ShmemSizeEnabled::Inherit);
        }
        mask
    }

    /// `huge_shmem_orders_<setting>`: the orders whose per-size knob satisfies `f`.
    fn shmem_size_orders(&self, f: impl Fn(ShmemSizeEnabled) -> bool) -> u16 {
        crate::sysfs::ANON_ORDERS
            .iter()
            .filter(|&&o| f(self.sysfs.size_shmem_enabled[o as usize]))
            .fold(0, |m, &o| m | 1 << o)
    }

    /// The folio caching `index` and its first index (`filemap_get_entry`).
    pub(crate) fn filemap_get_folio(&self, ino: InodeId, index: u64) -> Option<(FolioId, u64)> {
        let (&first, &id) = self.shmem.inodes[ino.index()]
            .cache
            .range(..=index)
            .next_back()?;
        (index < first + u64::from(self.folios.get(id).nr_pages())).then_some((id, first))
    }

    /// Whether any page of `[first, first + nr)` is cached (`xa_find(XA_PRESENT)`).
    pub(crate) fn filemap_range_has_folio(&self, ino: InodeId, first: u64, nr: u64) -> bool {
        self.filemap_get_folio(ino, first).is_some()
            || self.shmem.inodes[ino.index()]
                .cache
                .range(first..first + nr)
                .next()
                .is_some()
    }

    /// `shmem_get_folio_gfp`: the folio caching `index`, allocated (per the huge policy) if
    /// absent, and whether it was read from swap (`VM_FAULT_MAJOR` in `fault_type`: a swap
    /// entry at `index` is swapped in first, `shmem_swapin_folio`, whatever `sgp` says).
    /// `fault` is the faulting mm, VMA and address. Err: SIGBUS beyond i_size for a fault
    /// (`Errno::EINVAL` as the kernel's internal code), ENOSPC when not even a page fits in
    /// the tmpfs instance (a large folio that does not fit falls back to order 0), ENOMEM.
    pub(crate) fn shmem_get_folio_gfp(
        &mut self,
        ino: InodeId,
        index: u64,
        write_end: u64,
        fault: Option<(MmId, &Vma, u64)>,
        sgp: Sgp,
    ) -> Result<(FolioId, bool), Errno> {
        if sgp != Sgp::Falloc && index >= self.shmem.inodes[ino.index()].size.div_ceil(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        if self.shmem.inodes[ino.index()].swap_entry(index).is_some() {
            let id = self.shmem_swapin_folio(ino, index, fault.map(|(_, v, _)| v))?;
            return Ok(id);
        }
        if let Some((id, _)) = self.filemap_get_folio(ino, index) {
            if self.shmem.not_uptodate.contains(&id) && sgp != Sgp::Falloc {
                // A fallocated folio is zeroed and made uptodate by its first use.
                self.shmem.not_uptodate.remove(&id);
            } else if sgp == Sgp::Falloc {
                // A second fallocate over a fallocated folio clears it too.
                self.shmem.not_uptodate.remove(&id);
            }
            return Ok((id, false));
        }
        if sgp == Sgp::NoAlloc {
            return Err(Errno::ENOENT);
        }
        let orders = self.shmem_allowable_huge_orders(
            ino,
            fault.map(|(m, v, _)| (m, v)),
            index,
            write_end,
            false,
        );
        let folio =
            match self.shmem_alloc_and_add_folio(ino, index, fault.map(|(_, v, a)| (v, a)), orders)
            {
                Some(f) => f,
                None if !self.shmem_blocks_fit(ino, 1) => return Err(Errno::ENOSPC),
                None => self
                    .shmem_alloc_and_add_folio(ino, index, None, 0)
                    .ok_or(Errno::ENOMEM)?,
            };
        if sgp == Sgp::Falloc {
            self.shmem.not_uptodate.insert(folio);
        }
        Ok((folio, false))
    }

    /// `shmem_suitable_orders` + `shmem_alloc_and_add_folio`: try the orders from the highest
    /// whose block fits the VMA and has nothing cached yet; count successes and fallbacks.
    fn shmem_alloc_and_add_folio(
        &mut self,
        ino: InodeId,
        index: u64,
        fault: Option<(&Vma, u64)>,
        orders: u16,
    ) -> Option<FolioId> {
        if orders == 0 {
            if !self.shmem_blocks_fit(ino, 1) {
                return None;
            }
            // mapping_gfp_mask of a shmem inode: GFP_HIGHUSER_MOVABLE.
            let pfn = self.alloc_charged_pages(0, crate::page_alloc::Gfp::HIGHUSER_MOVABLE)?;
            let id = self.folios.alloc(pfn, 0, 0);
            self.shmem_add_to_page_cache(ino, index, id);
            return Some(id);
        }
        let mut suitable = match fault {
            Some((vma, addr)) => crate::huge_memory::thp_vma_suitable_orders(vma, addr, orders),
            None => orders,
        };
        while suitable != 0 {
            let order = highest_order(suitable);
            let nr = 1u64 << order;
            let first = index & !(nr - 1);
            // xa_find(XA_PRESENT) sees swap entries too: a block with one is not suitable.
            let swapped = self.shmem.inodes[ino.index()]
                .swapped
                .range(..first + nr)
                .next_back()
                .is_some_and(|(&f, &(_, o))| f + (1u64 << o) > first);
            if !swapped && !self.filemap_range_has_folio(ino, first, nr) {
                break;
            }
            suitable &= !(1 << order);
        }
        // shmem_get_folio_gfp: huge_gfp = vma_thp_gfp_mask(vma) (no VMA for fallocate: not
        // madvised).
        let huge_gfp = self.thp_gfp_mask(fault.is_some_and(|(vma, _)| vma.has(vmf::HUGEPAGE)));
        while suitable != 0 {
            let order = highest_order(suitable);
            let first = index & !((1u64 << order) - 1);
            if let Some(pfn) = self.alloc_pages(order, huge_gfp) {
                if self.memcg_charge(1 << order, huge_gfp).is_err() {
                    // mem_cgroup_charge fails after the allocation: counted, and the caller
                    // falls back to order 0 without trying smaller large orders.
                    self.buddy.free(pfn, order);
                    if order == HPAGE_PMD_ORDER {
                        self.vmstat.count(VmItem::ThpFileFallback);
                        self.vmstat.count(VmItem::ThpFileFallbackCharge);
                    }
                    self.vmstat.mthp_count(order, MthpStat::ShmemFallback);
                    self.vmstat.mthp_count(order, MthpStat::ShmemFallbackCharge);
                    return None;
                }
                if !self.shmem_blocks_fit(ino, 1 << order) {
                    // shmem_inode_acct_blocks fails after the allocation: the folio is
                    // dropped and the caller falls back to order 0, no smaller large order
                    // tried and no fallback counted.
                    self.buddy.free(pfn, order);
                    return None;
                }
                let id = self.folios.alloc(pfn, order, 0);
                self.shmem_add_to_page_cache(ino, first, id);
                if order == HPAGE_PMD_ORDER {
                    self.vmstat.count(VmItem::ThpFileAlloc);
                }
                self.vmstat.mthp_count(order, MthpStat::ShmemAlloc);
                return Some(id);
            }
            if order == HPAGE_PMD_ORDER {
                self.vmstat.count(VmItem::ThpFileFallback);
            }
            self.vmstat.mthp_count(order, MthpStat::ShmemFallback);
            suitable &= !(1 << order);
        }
        None
    }

    /// A new uptodate order-0 folio cached at `index` (which must be free): the page
    /// `shmem_mfill_atomic_pte` allocates for UFFDIO_COPY / UFFDIO_ZEROPAGE. None: ENOMEM.
    pub(crate) fn shmem_add_new_folio(&mut self, ino: InodeId, index: u64) -> Option<FolioId> {
        debug_assert!(self.filemap_get_folio(ino, index).is_none());
        self.shmem_alloc_and_add_folio(ino, index, None, 0)
    }

    /// `shmem_add_to_page_cache`: the cache takes `nr_pages` references.
    pub(crate) fn shmem_add_to_page_cache(&mut self, ino: InodeId, first: u64, id: FolioId) {
        let (nr, order) = self.page_cache_link(ino, first, id);
        self.account_page_cache(ino, nr, order, 1);
    }

    /// The page cache takes folio `id` at `first` with its `nr_pages` references, without
    /// the accounting: (pages, order).
    fn page_cache_link(&mut self, ino: InodeId, first: u64, id: FolioId) -> (u32, u8) {
        let f = self.folios.get_mut(id);
        f.flags |= flags::SHMEM;
        let (nr, order) = (f.nr_pages(), f.order);
        f.refcount += nr;
        self.shmem.owner.insert(id, (ino, first));
        let inode = &mut self.shmem.inodes[ino.index()];
        inode.cache.insert(first, id);
        inode.nr_pages += u64::from(nr);
        (nr, order)
    }

    /// The page-cache gauges of `nr` pages of one folio of `ino` coming (`sign` 1) or going
    /// (-1), as `__filemap_add_folio` / `filemap_unaccount_folio` count them: `NR_FILE_PAGES`
    /// always; a shmem folio is swap-backed (`NR_SHMEM`, `NR_SHMEM_THPS`), a disk file's or a
    /// guest_memfd's is not (`NR_FILE_THPS` for a PMD-sized one).
    fn account_page_cache(&mut self, ino: InodeId, nr: u32, order: u8, sign: i64) {
        self.shmem_acct_blocks(ino, sign * i64::from(nr));
        self.account_page_cache_stats(ino, nr, order, sign);
    }

    /// The vmstat part of `account_page_cache`, without the inode's block charge (a folio
    /// swapped out leaves the page cache but its pages stay charged as `info->swapped`).
    fn account_page_cache_stats(&mut self, ino: InodeId, nr: u32, order: u8, sign: i64) {
        self.vmstat.add(VmItem::NrFilePages, sign * i64::from(nr));
        let swap_backed = self.shmem.inodes[ino.index()].gmem.is_none() && !self.inode_is_disk(ino);
        if swap_backed {
            self.vmstat.add(VmItem::NrShmem, sign * i64::from(nr));
        }
        if order == HPAGE_PMD_ORDER {
            let item = if swap_backed {
                VmItem::NrShmemHugepages
            } else {
                VmItem::NrFileHugepages
            };
            self.vmstat.add(item, sign);
        }
    }

    /// Adds a new folio to the page cache at `first` (`filemap_add_folio`; the caller has
    /// checked that no page of it is cached).
    pub(crate) fn filemap_add_folio(&mut self, ino: InodeId, first: u64, id: FolioId) {
        self.shmem_add_to_page_cache(ino, first, id);
    }

    /// `filemap_remove_folio` (`truncate_inode_folio` after unmapping): the cache drops its
    /// references; the folio is freed when no mapping holds it.
    pub(crate) fn shmem_delete_from_page_cache(&mut self, id: FolioId) {
        let (ino, nr, order) = self.page_cache_unlink(id);
        self.account_page_cache(ino, nr, order, -1);
        self.folio_put(id, nr);
    }

    /// The page cache lets go of folio `id` (`__filemap_remove_folio` without the
    /// accounting): (its inode, pages, order).
    fn page_cache_unlink(&mut self, id: FolioId) -> (InodeId, u32, u8) {
        let (ino, first) = self.shmem.owner.remove(&id).expect("page-cache folio");
        self.shmem.not_uptodate.remove(&id);
        self.shmem.readahead.remove(&id);
        if self.inode_is_disk(ino) && self.folios.get(id).test(flags::DIRTY) {
            // folio_cancel_dirty on removal: the page no longer counts as dirty.
            self.vmstat
                .add(VmItem::NrDirty, -i64::from(self.folios.get(id).nr_pages()));
        }
        let f = self.folios.get_mut(id);
        f.flags &= !flags::SHMEM;
        let (nr, order) = (f.nr_pages(), f.order);
        let inode = &mut self.shmem.inodes[ino.index()];
        inode.cache.remove(&first);
        inode.nr_pages -= u64::from(nr);
        (ino, nr, order)
    }

    /// Every VMA mapping `ino` (the inode's `i_mmap` tree).
    pub(crate) fn shmem_mappings(&self, ino: InodeId) -> Vec<(MmId, Vma)> {
        let mut v = Vec::new();
        for (mmi, mm) in self.mms.iter() {
            for vma in mm.vmas.values() {
                if vma.backing.inode() == Some(ino) {
                    v.push((mmi, *vma));
                }
            }
        }
        v
    }

    /// `unmap_mapping_range`: zaps the pages `[first, last]` of `ino` in every mapping;
    /// without `even_cows` the private COW copies (anonymous pages) in private mappings stay.
    /// A PMD only partly in the range is zapped whole (a file PMD split is a zap).
    pub(crate) fn unmap_mapping_range(
        &mut self,
        ino: InodeId,
        first: u64,
        last: u64,
        even_cows: bool,
    ) {
        for (mmi, vma) in self.shmem_mappings(ino) {
            let vlast = vma.pgoff + (vma.len() >> PAGE_SHIFT) - 1;
            if last < vma.pgoff || first > vlast {
                continue;
            }
            let a = vma.start + ((first.max(vma.pgoff) - vma.pgoff) << PAGE_SHIFT);
            let e = vma.start + ((last.min(vlast) - vma.pgoff + 1) << PAGE_SHIFT);
            self.zap_file_range(mmi, a, e, even_cows);
        }
    }

    /// The zap of `[start, end)` of one shmem VMA that `unmap_mapping_range` does.
    fn zap_file_range(&mut self, mmi: MmId, start: u64, end: u64, even_cows: bool) {
        let mut slot = start & PMD_MASK;
        while slot < end {
            let (s, e) = (start.max(slot), end.min(slot + PMD_SIZE));
            let pmd = self.mms[mmi].pgt.pmd(slot);
            if pmd.is_huge() {
                // zap_pmd_range(): a PMD only partly in the range is split (for a file VMA,
                // cleared), a covered one zapped.
                self.zap_file_pmd(mmi, slot, s != slot || e != slot + PMD_SIZE);
            } else if pmd.is_table() {
                for a in (s..e).step_by(1 << PAGE_SHIFT) {
                    let pte = self.mms[mmi].pgt.pte(a);
                    if !pte.is_page() {
                        continue;
                    }
                    let anon = self.folios.get(pte.folio()).test(flags::ANON);
                    if anon && !even_cows {
                        continue;
                    }
                    self.zap_one_pte(mmi, a, pte, true);
                }
            }
            slot += PMD_SIZE;
        }
    }

    /// Whether clearing `pte` of `vma` must leave a uffd-wp marker in its place
    /// (`pte_install_uffd_wp_if_needed`, mm_inline.h): a file VMA (shmem, memfd, a disk file;
    /// private mappings of files too) registered for uffd-wp, and a PTE write-protected by it
    /// (a present PTE with the bit, a swap entry with its copy, or a marker already there).
    /// Anonymous VMAs never keep markers: their none PTEs carry no page to protect.
    pub(crate) fn needs_uffd_wp_marker(vma: &Vma, pte: Pte) -> bool {
        !vma.is_anonymous()
            && vma.has(vmf::UFFD_WP)
            && (pte.is_marker() || pte.has(crate::pgtable::UFFD_WP))
    }

    /// Clears one present PTE mapping a folio (`zap_present_ptes` for one page): a dirty PTE
    /// dirties a page-cache folio. With `keep_markers` (every zap but munmap/exit and the
    /// truncation of a folio, which pass `ZAP_FLAG_DROP_MARKER`) a write-protected PTE of a
    /// uffd-wp file VMA becomes a marker, so the protection outlives the page's absence
    /// (measured: MADV_DONTNEED, punch, ftruncate, MADV_COLD's split, collapse; FINDINGS §28).
    pub(crate) fn zap_one_pte(&mut self, mmi: MmId, addr: u64, pte: Pte, keep_markers: bool) {
        let marker = keep_markers
            && self.mms[mmi]
                .vma_at(addr)
                .is_some_and(|v| Self::needs_uffd_wp_marker(v, pte));
        self.set_pte(mmi, addr, if marker { Pte::marker() } else { Pte::NONE });
        let id = pte.folio();
        let anon = self.folios.get(id).test(flags::ANON);
        if !anon && pte.has(DIRTY) {
            self.folios.get_mut(id).flags |= flags::DIRTY;
        }
        let counter = if anon {
            MmCounter::AnonPages
        } else {
            MmCounter::ShmemPages
        };
        self.mms[mmi].add_mm_counter(counter, -1);
        self.folio_remove_rmap_ptes(id, pte.idx(), 1, mmi);
    }

    /// Zaps a PMD mapping of a page-cache folio (`zap_huge_pmd`, or `__split_huge_pmd_locked`
    /// for a file VMA, which only clears it: `thp_split_pmd` when `split`). x86-64 deposits no
    /// page table for file PMDs.
    pub(crate) fn zap_file_pmd(&mut self, mmi: MmId, haddr: u64, split: bool) {
        if split {
            self.vmstat.count(VmItem::ThpSplitPmd);
        }
        let pmd = std::mem::replace(self.mms[mmi].pgt.pmd_mut(haddr).expect("pmd"), Pmd::NONE);
        debug_assert!(pmd.is_thp());
        let id = pmd.folio();
        if pmd.has(DIRTY) {
            self.folios.get_mut(id).flags |= flags::DIRTY;
        }
        self.mms[mmi].add_mm_counter(
            MmCounter::ShmemPages,
            -i64::from(self.folios.get(id).nr_pages()),
        );
        self.folio_remove_rmap_pmd(id, mmi);
    }

    /// Where `id` (caching pages `[first, first + nr)` of `ino`) is mapped: PMD mappings
    /// `(mm, haddr)` and PTE mappings `(mm, addr, page index in the folio)` (an rmap walk).
    pub(crate) fn folio_file_mappings(
        &self,
        ino: InodeId,
        id: FolioId,
        first: u64,
    ) -> FileMappings {
        let nr = u64::from(self.folios.get(id).nr_pages());
        let (mut pmds, mut ptes) = (Vec::new(), Vec::new());
        for (mmi, vma) in self.shmem_mappings(ino) {
            let vend = vma.pgoff + (vma.len() >> PAGE_SHIFT);
            let (a, b) = (first.max(vma.pgoff), (first + nr).min(vend));
            let mut idx = a;
            while idx < b {
                let addr = vma.start + ((idx - vma.pgoff) << PAGE_SHIFT);
                let pmd = self.mms[mmi].pgt.pmd(addr);
                if pmd.is_thp() && pmd.folio() == id {
                    if !pmds.contains(&(mmi, addr & PMD_MASK)) {
                        pmds.push((mmi, addr & PMD_MASK));
                    }
                } else if pmd.is_table() {
                    let pte = self.mms[mmi].pgt.pte(addr);
                    if pte.is_page() && pte.folio() == id {
                        ptes.push((mmi, addr, pte.idx()));
                    }
                }
                idx += 1;
            }
        }
        (pmds, ptes)
    }

    /// `__folio_split` of the page-cache folio `id`: with `Some(at)` the non-uniform
    /// `folio_split` (6.15+, truncation) at page `at` (index inside the folio): the page
    /// becomes an order-0 folio and the rest buddy-sized folios around it; with `None` the
    /// uniform `split_folio` to order 0 (MADV_COLD). `unmap_folio` first: a file folio is
    /// simply unmapped everywhere (`try_to_unmap`; PMDs are split, i.e. zapped, with
    /// `thp_split_pmd`) and faulted back on demand. Counts `thp_split_page` / per-size
    /// `split` for the source order.
    pub(crate) fn shmem_split_folio(&mut self, id: FolioId, at: Option<u32>) {
        let (ino, first) = self.shmem.owner[&id];
        self.unmap_file_folio(id, UnmapFolio::TryToUnmap);
        let f = *self.folios.get(id);
        if f.order == HPAGE_PMD_ORDER {
            self.vmstat.count(VmItem::ThpSplitPage);
            // The pieces are order-0: only the THP gauge changes.
            let item = if self.shmem.inodes[ino.index()].gmem.is_some() || self.inode_is_disk(ino) {
                VmItem::NrFileHugepages
            } else {
                VmItem::NrShmemHugepages
            };
            self.vmstat.add(item, -1);
        }
        // PG_readahead is not handed to the pieces.
        self.shmem.readahead.remove(&id);
        self.vmstat.mthp_count(f.order, MthpStat::Split);
        let mut pieces: Vec<(u32, u8)> = Vec::new();
        if let Some(at) = at {
            // Non-uniform: at each level the half without `at` stays whole.
            let (mut lo, mut order) = (0u32, f.order);
            while order > 0 {
                order -= 1;
                let half = 1u32 << order;
                if at < lo + half {
                    pieces.push((lo + half, order));
                } else {
                    pieces.push((lo, order));
                    lo += half;
                }
            }
            pieces.push((lo, 0));
            pieces.sort_unstable();
        } else {
            pieces.extend((0..f.nr_pages()).map(|i| (i, 0)));
        }
        let nonzero = self.folios.nonzero_words(id);
        let inherit = f.flags & (flags::DIRTY | flags::SHMEM);
        let uptodate = !self.shmem.not_uptodate.remove(&id);
        self.shmem.inodes[ino.index()].cache.remove(&first);
        self.shmem.owner.remove(&id);
        for &(start, order) in &pieces {
            let nid = self
                .folios
                .alloc(f.pfn().offset(u64::from(start)), order, inherit);
            let n = 1u32 << order;
            for i in start..start + n {
                if nonzero[(i / 64) as usize] & (1 << (i % 64)) != 0 {
                    self.folios.set_nonzero(nid, i - start);
                }
            }
            self.folios.get_mut(nid).refcount = n;
            let index = first + u64::from(start);
            self.shmem.owner.insert(nid, (ino, index));
            self.shmem.inodes[ino.index()].cache.insert(index, nid);
            if !uptodate {
                self.shmem.not_uptodate.insert(nid);
            }
        }
        self.folios.release(id);
    }

    /// `truncate_inode_partial_folio` for the byte range `[lstart, lend]` (inclusive) and the
    /// folio `id` caching pages from `first`: a folio inside the range is removed; otherwise the
    /// hole part is zeroed and a large folio split at the hole's first page, then the piece
    /// holding the page after the hole split there too.
    fn truncate_partial_folio(&mut self, id: FolioId, first: u64, lstart: u64, lend: u64) {
        let size = u64::from(self.folios.get(id).nr_pages()) * PAGE_SIZE;
        let pos = first * PAGE_SIZE;
        let offset = lstart.saturating_sub(pos);
        let length = if pos + size <= lend {
            size - offset
        } else {
            lend + 1 - pos - offset
        };
        if length == size {
            self.truncate_inode_folio(id);
            return;
        }
        // folio_zero_range(): pages wholly inside the hole become zero.
        let (z0, z1) = (offset.div_ceil(PAGE_SIZE), (offset + length) / PAGE_SIZE);
        for i in z0..z1 {
            self.folios.clear_nonzero(id, page_u32(i));
        }
        if self.folios.get(id).order == 0 {
            return;
        }
        let ino = self.shmem.owner[&id].0;
        self.shmem_split_folio(id, Some(page_u32(offset / PAGE_SIZE)));
        if offset + length == size {
            return;
        }
        let at2 = first + (offset + length) / PAGE_SIZE;
        if let Some((f2, first2)) = self.filemap_get_folio(ino, at2) {
            if self.folios.get(f2).order > 0 {
                self.shmem_split_folio(f2, Some(page_u32(at2 - first2)));
            }
        }
    }

    /// `truncate_inode_folio`: unmap a folio from every mapping, then drop it from the cache.
    fn truncate_inode_folio(&mut self, id: FolioId) {
        self.unmap_file_folio(id, UnmapFolio::Truncate);
        self.shmem_delete_from_page_cache(id);
    }

    /// The rmap walk that unmaps page-cache folio `id` from every mapping of its file.
    /// `TryToUnmap` (`try_to_unmap` from a split or a collapse): a PMD is split, which for a
    /// file VMA clears it (`thp_split_pmd`), and protected PTEs of uffd-wp VMAs leave
    /// markers. `Truncate` (`unmap_mapping_folio`): PMDs are zapped and markers dropped
    /// (`ZAP_FLAG_DROP_MARKER`). Private COW copies are other folios and stay.
    pub(crate) fn unmap_file_folio(&mut self, id: FolioId, how: UnmapFolio) {
        let f = self.folios.get(id);
        if f.mapcount == 0 && f.entire_mapcount == 0 {
            return;
        }
        let (ino, first) = self.shmem.owner[&id];
        let (pmds, ptes) = self.folio_file_mappings(ino, id, first);
        for (mmi, haddr) in pmds {
            self.zap_file_pmd(mmi, haddr, how == UnmapFolio::TryToUnmap);
        }
        for (mmi, addr, _) in ptes {
            let pte = self.mms[mmi].pgt.pte(addr);
            self.zap_one_pte(mmi, addr, pte, how == UnmapFolio::TryToUnmap);
        }
    }

    /// The first pass of a truncation: every folio of `ino` lying wholly inside the page
    /// indices `[start, end)` is unmapped and dropped (`find_lock_entries` omits folios
    /// reaching outside the range).
    pub(crate) fn truncate_whole_folios(&mut self, ino: InodeId, start: u64, end: u64) {
        let whole: Vec<FolioId> = self.shmem.inodes[ino.index()]
            .cache
            .range(start..end)
            .filter(|&(&i, &id)| i + u64::from(self.folios.get(id).nr_pages()) <= end)
            .map(|(_, &id)| id)
            .collect();
        for id in whole {
            self.truncate_inode_folio(id);
        }
    }

    /// A folio a truncation zeroes in part stays dirty (its zeroed part must not be read back
    /// from the backing store); a disk file's folio is accounted as dirty.
    fn partial_folio_mark_dirty(&mut self, id: FolioId) {
        if self.folio_is_disk(id) {
            self.folio_mark_dirty(id);
        } else {
            self.folios.get_mut(id).flags |= flags::DIRTY;
        }
    }

    /// `shmem_undo_range(inode, lstart, lend, false)`: drops every folio inside the byte
    /// range `[lstart, lend]` and zeroes/splits the partial ones at its ends.
    pub(crate) fn shmem_undo_range(&mut self, ino: InodeId, lstart: u64, lend: u64) {
        let start = lstart.div_ceil(PAGE_SIZE);
        let end = if lend == u64::MAX {
            u64::MAX
        } else {
            (lend + 1) / PAGE_SIZE
        };
        self.truncate_whole_folios(ino, start, end);
        self.shmem_free_swap_range(ino, start, end);
        let mut same_folio = lstart >> PAGE_SHIFT == lend >> PAGE_SHIFT;
        // A swap entry left at an end reaches outside the range: read it back to zero and
        // split it like a cached folio (`shmem_get_partial_folio`).
        self.shmem_swapin_partial(ino, lstart >> PAGE_SHIFT);
        if let Some((id, first)) = self.filemap_get_folio(ino, lstart >> PAGE_SHIFT) {
            let fend = (first + u64::from(self.folios.get(id).nr_pages())) * PAGE_SIZE;
            same_folio = lend < fend;
            self.partial_folio_mark_dirty(id);
            self.truncate_partial_folio(id, first, lstart, lend);
        }
        if !same_folio {
            self.shmem_swapin_partial(ino, lend >> PAGE_SHIFT);
            if let Some((id, first)) = self.filemap_get_folio(ino, lend >> PAGE_SHIFT) {
                self.partial_folio_mark_dirty(id);
                self.truncate_partial_folio(id, first, lstart, lend);
            }
        }
        // The pieces the splits left inside the range.
        loop {
            let next = self.shmem.inodes[ino.index()]
                .cache
                .range(start..end)
                .map(|(&i, &id)| (i, id))
                .next();
            let Some((i, id)) = next else { break };
            let nr = u64::from(self.folios.get(id).nr_pages());
            if i + nr <= end {
                self.truncate_inode_folio(id);
            } else {
                self.truncate_partial_folio(id, i, lstart, lend);
                if self.filemap_get_folio(ino, i).is_some_and(|(f, _)| f == id) {
                    break;
                }
            }
        }
        // The entries a partial swap-in split.
        self.shmem_free_swap_range(ino, start, end);
    }

    /// `truncate_pagecache_range` (the punch of `shmem_fallocate` and `ext4_punch_hole`): the
    /// whole pages of `[offset, end)` are unmapped from every mapping (not private copies),
    /// the folios inside it dropped and the partial ones zeroed and split.
    pub(crate) fn truncate_pagecache_range(&mut self, ino: InodeId, offset: u64, end: u64) {
        let unmap_start = offset.div_ceil(PAGE_SIZE);
        let unmap_end = end / PAGE_SIZE;
        if unmap_end > unmap_start {
            self.unmap_mapping_range(ino, unmap_start, unmap_end - 1, false);
        }
        self.shmem_undo_range(ino, offset, end - 1);
    }

    /// fallocate(2) on a shmem object (`shmem_fallocate`); a disk file's goes to
    /// `ext4_fallocate`.
    pub fn shmem_fallocate(
        &mut self,
        ino: InodeId,
        mode: FallocMode,
        offset: u64,
        len: u64,
    ) -> Result<(), Errno> {
        let end = vfs_fallocate_end(offset, len)?;
        if self.inode_is_disk(ino) {
            return self.ext4_fallocate(ino, mode, offset, len);
        }
        if mode.punch_hole {
            if !mode.keep_size {
                return Err(Errno::EOPNOTSUPP);
            }
            self.truncate_pagecache_range(ino, offset, end);
            return Ok(());
        }
        let (first, last) = (offset / PAGE_SIZE, (end - 1) / PAGE_SIZE);
        if let Some(m) = self.shmem.inodes[ino.index()].mount {
            let max = self.shmem.mounts[m.0 as usize].max_blocks;
            if max != 0 && last + 1 - first > max {
                // The whole range can never fit.
                return Err(Errno::ENOSPC);
            }
        }
        let mut index = first;
        while index <= last {
            let id = match self.shmem_get_folio_gfp(ino, index, end, None, Sgp::Falloc) {
                Ok((id, _)) => id,
                Err(e) => {
                    // Remove the not-uptodate folios of the range so far (`shmem_undo_range`
                    // with `unfalloc`); i_size stays.
                    self.shmem_unfalloc(ino, first, index);
                    return Err(e);
                }
            };
            self.folios.get_mut(id).flags |= flags::DIRTY;
            let (_, f0) = self.filemap_get_folio(ino, index).expect("cached");
            index = f0 + u64::from(self.folios.get(id).nr_pages());
        }
        if !mode.keep_size && end > self.shmem.inodes[ino.index()].size {
            self.shmem.inodes[ino.index()].size = end;
        }
        Ok(())
    }

    /// The undo of a failed fallocate (`shmem_undo_range(…, unfalloc = true)`): every folio
    /// caching a page of `[first, end)` that is still not uptodate (added by a fallocate and
    /// not used since) is dropped whole; partial folios are not split.
    fn shmem_unfalloc(&mut self, ino: InodeId, first: u64, end: u64) {
        if end <= first {
            return;
        }
        let mut v: Vec<FolioId> = self
            .filemap_get_folio(ino, first)
            .map(|(id, _)| id)
            .into_iter()
            .collect();
        v.extend(
            self.shmem.inodes[ino.index()]
                .cache
                .range(first..end)
                .map(|(_, &id)| id),
        );
        v.dedup();
        for id in v {
            if self.shmem.not_uptodate.contains(&id) {
                self.truncate_inode_folio(id);
            }
        }
    }

    /// ftruncate(2) on a shmem object (`shmem_setattr`): a size not above the old one unmaps
    /// everything beyond the new end (private COW copies included) when the old size reached
    /// past it, and truncates the cache beyond it, so an ftruncate to the same size still
    /// drops folios that `KEEP_SIZE` fallocated beyond EOF.
    pub fn shmem_truncate(&mut self, ino: InodeId, size: u64) -> Result<(), Errno> {
        let old = self.shmem.inodes[ino.index()].size;
        self.shmem.inodes[ino.index()].size = size;
        if size <= old {
            let hole = size.div_ceil(PAGE_SIZE);
            let unmap = old > hole * PAGE_SIZE;
            if unmap {
                self.unmap_mapping_range(ino, hole, u64::MAX - 1, true);
            }
            let inode = &self.shmem.inodes[ino.index()];
            if inode.nr_pages > 0 || !inode.swapped.is_empty() {
                self.shmem_undo_range(ino, size, u64::MAX);
            }
            if unmap {
                self.unmap_mapping_range(ino, hole, u64::MAX - 1, true);
            }
        }
        Ok(())
    }

    /// The last reference to an anonymous shmem inode went away with its last VMA
    /// (`shmem_evict_inode`): its page cache is freed.
    pub(crate) fn shmem_release_unmapped(&mut self) {
        for i in 0..self.shmem.inodes.len() {
            let ino = InodeId::from_index(i);
            let inode = &self.shmem.inodes[i];
            if !inode.anon || inode.dead {
                continue;
            }
            if self.shmem_mappings(ino).is_empty() {
                self.shmem_undo_range(ino, 0, u64::MAX);
                self.shmem.inodes[i].dead = true;
            }
        }
    }
}

/// Swap of shmem folios (Linux 6.18 `shmem_writeout`, `shmem_swapin_folio`,
/// `shmem_swap_alloc_folio`, `shmem_free_swap`; FINDINGS.md §32). A folio written out leaves
/// the page cache: its index range holds a swap entry (`ShmemInode::swapped`, one count on
/// each slot, as `swap_duplicate_nr` gives it), no page table names the slots (the PTEs were
/// unmapped, fork shares the page cache), and the pages stay charged to the inode.
impl Kernel {
    /// `shmem_writeout` of a dirty page-cache folio reclaim has unmapped. Without swap it is
    /// redirtied and stays cached. A large folio is written whole when it gets a naturally
    /// aligned slot run and does not reach across i_size (`shmem_fallocend`); otherwise it is
    /// split to order 0 (the pages beyond i_size are dropped by the split) and each page is
    /// written (the tails from the reclaim list), with no `swpout_fallback` counted. A page
    /// that finds no slot stays cached.
    pub(crate) fn shmem_writeout(&mut self, id: FolioId) {
        if self.swap.total() == 0 {
            return;
        }
        let (ino, first) = self.shmem.owner[&id];
        let f = *self.folios.get(id);
        let nr = u64::from(f.nr_pages());
        let eof = self.shmem.inodes[ino.index()].size.div_ceil(PAGE_SIZE);
        if f.order == 0 || !(first < eof && eof < first + nr) {
            // A fallocated folio nothing used is zeroed and written like any.
            self.shmem.not_uptodate.remove(&id);
            if let Some(slot) = self.swap.alloc(f.order) {
                self.shmem_swap_out(id, slot);
                return;
            }
            if f.order == 0 {
                return;
            }
        }
        self.shmem_split_folio(id, None);
        let mut pieces = Vec::new();
        for index in first..first + nr {
            if let Some((p, _)) = self.filemap_get_folio(ino, index) {
                if index >= eof {
                    // __folio_split: tails beyond i_size leave the page cache.
                    self.shmem_delete_from_page_cache(p);
                } else {
                    pieces.push(p);
                }
            }
        }
        for p in pieces {
            self.shmem.not_uptodate.remove(&p);
            if let Some(slot) = self.swap.alloc(0) {
                self.shmem_swap_out(p, slot);
            }
        }
    }

    /// The folio joins the swap cache at `slot` (`add_to_swap_cache`), its page-cache range
    /// becomes the swap entry (`shmem_delete_from_page_cache` with the swap entry: `Shmem`,
    /// `ShmemHugePages` drop, the blocks stay), then `swap_writeout`.
    fn shmem_swap_out(&mut self, id: FolioId, slot: u32) {
        let (ino, first) = self.shmem.owner[&id];
        let nr = self.folios.get(id).nr_pages();
        self.swap.add(id, slot, nr);
        self.folios.get_mut(id).refcount += nr;
        let si = self.swap.si.as_mut().expect("swap device");
        for s in slot..slot + nr {
            si.dup(s);
        }
        let (_, nr, order) = self.page_cache_unlink(id);
        self.account_page_cache_stats(ino, nr, order, -1);
        self.folio_put(id, nr);
        self.shmem.inodes[ino.index()]
            .swapped
            .insert(first, (slot, order));
        self.folios.get_mut(id).flags |= flags::DIRTY;
        self.pageout_swap_cache_folio(id, slot, true);
    }

    /// `shmem_swapin_folio` for `index`, which holds a swap entry: the folio still in the swap
    /// cache (an asynchronous device keeps what it wrote) is taken whole, a minor fault; else
    /// a new folio is read (a major fault): on a synchronous device with the slot named once
    /// (`shmem_swap_alloc_folio`) of the entry's order, unless zswap was ever enabled or the
    /// VMA is registered with userfaultfd, when (as on any other device) one page is read
    /// and a large entry is split first (`shmem_split_large_entry`). The folio replaces the
    /// swap entry in the page cache, leaves the swap cache, is dirtied, and its slots are
    /// freed (`swap_free_nr`). Returns the folio and whether it was read.
    pub(crate) fn shmem_swapin_folio(
        &mut self,
        ino: InodeId,
        index: u64,
        vma: Option<&Vma>,
    ) -> Result<(FolioId, bool), Errno> {
        let (efirst, eslot, order) = self.shmem.inodes[ino.index()]
            .swap_entry(index)
            .expect("swap entry");
        let nr = 1u32 << order;
        let slot = eslot + page_u32(index - efirst);
        if let Some(c) = self.swap.cached(slot) {
            // A whole folio an asynchronous device wrote, or one page MADV_WILLNEED read:
            // a smaller folio splits the entry.
            let cslot = self.swap.folio_slot[&c];
            self.swap_update_readahead(c, None);
            let first = if self.folios.get(c).order < order {
                self.shmem_split_swap_entry(ino, index);
                index - u64::from(slot - cslot)
            } else {
                efirst
            };
            self.shmem_swapin_finish(ino, first, c, cslot);
            return Ok((c, false));
        }
        let sync = self
            .swap
            .si
            .as_ref()
            .is_some_and(|si| si.device.synchronous() && si.count(slot) == 1);
        let large = sync
            && order > 0
            && !self.swap.zswap_ever_enabled
            && !vma.is_some_and(|v| v.has(vmf::UFFD_MISSING | vmf::UFFD_MINOR | vmf::UFFD_WP))
            && (eslot..eslot + nr).all(|s| self.swap.cached(s).is_none());
        let mut folio = None;
        if large {
            let gfp = self.thp_gfp_mask(vma.is_some_and(|v| v.has(vmf::HUGEPAGE)));
            if let Some(pfn) = self.alloc_charged_pages(order, gfp) {
                folio = Some((self.folios.alloc(pfn, order, 0), efirst, eslot));
            }
        }
        if !sync {
            // shmem_swapin_cluster → swap_cluster_readahead: the neighbours of the slot go
            // to the swap cache with PG_readahead; the faulting page is read below.
            self.swap_cluster_readahead_neighbours(slot);
        }
        let (id, first, fslot) = match folio {
            Some(f) => f,
            None => {
                let pfn = self
                    .alloc_charged_pages(0, crate::page_alloc::Gfp::HIGHUSER_MOVABLE)
                    .ok_or(Errno::ENOMEM)?;
                if order > 0 {
                    self.shmem_split_swap_entry(ino, index);
                }
                (self.folios.alloc(pfn, 0, 0), index, slot)
            }
        };
        self.swap_read_folio(id, fslot);
        self.shmem_swapin_finish(ino, first, id, fslot);
        Ok((id, true))
    }

    /// The end of `shmem_swapin_folio`: `shmem_add_to_page_cache` over the swap entry at
    /// `first` (no new block charge), `delete_from_swap_cache`, `folio_mark_dirty`,
    /// `swap_free_nr`.
    fn shmem_swapin_finish(&mut self, ino: InodeId, first: u64, id: FolioId, slot: u32) {
        let n = u64::from(self.folios.get(id).nr_pages());
        let inode = &mut self.shmem.inodes[ino.index()];
        let keys: Vec<u64> = inode
            .swapped
            .range(first..first + n)
            .map(|(&i, _)| i)
            .collect();
        debug_assert_eq!(inode.swapped.get(&first).map(|e| e.0), Some(slot));
        for k in keys {
            inode.swapped.remove(&k);
        }
        let (nr, order) = self.page_cache_link(ino, first, id);
        self.account_page_cache_stats(ino, nr, order, 1);
        self.folios.get_mut(id).flags |= flags::DIRTY;
        let cached = self.swap.folio_slot.contains_key(&id);
        for s in slot..slot + nr {
            self.swap.put(s);
        }
        if cached {
            self.swap.remove(id, nr);
            self.folio_put(id, nr);
        }
    }

    /// MADV_WILLNEED of a shmem VMA (`shmem_swapin_range`): the first slot of each swap
    /// entry in `[start, end)` is read into the swap cache (`read_swap_cache_async`: an
    /// order-0 folio, `pswpin`); the page cache keeps the swap entries, so a fault on such a
    /// page is minor.
    pub(crate) fn shmem_swapin_range(&mut self, ino: InodeId, vma: &Vma, start: u64, end: u64) {
        let (lo, hi) = (vma.linear_page_index(start), vma.linear_page_index(end));
        let inode = &self.shmem.inodes[ino.index()];
        let from = inode.swap_entry(lo).map_or(lo, |(f, _, _)| f);
        let slots: Vec<u32> = inode
            .swapped
            .range(from..hi)
            .map(|(_, &(s, _))| s)
            .collect();
        for slot in slots {
            if self.swap.cached(slot).is_some() {
                continue;
            }
            let Some(pfn) = self.alloc_charged_pages(0, crate::page_alloc::Gfp::HIGHUSER_MOVABLE)
            else {
                return;
            };
            let f = self.folios.alloc(pfn, 0, 0);
            self.swap.add(f, slot, 1);
            self.folios.get_mut(f).refcount += 1;
            self.swap_read_folio(f, slot);
        }
    }

    /// `shmem_split_large_entry` (6.15+, by `xas_try_split`): the multi-index swap entry
    /// holding `index` is split a step at a time, each step splitting only the piece that
    /// holds `index`, to the orders `xas_try_split_min_order` gives with 64-slot xarray nodes
    /// (9 → 6 → 5 → 0). `index` ends in an order-0 entry and the rest keeps the larger
    /// orders, which a later swap-in from a synchronous device brings in whole: measured,
    /// an order-9 entry split at its first page swaps back in as 7 order-6 folios, 1 order-5
    /// and 32 order-0 (FINDINGS §38).
    fn shmem_split_swap_entry(&mut self, ino: InodeId, index: u64) {
        let inode = &mut self.shmem.inodes[ino.index()];
        let Some((first, slot, order)) = inode.swap_entry(index) else {
            return;
        };
        inode.swapped.remove(&first);
        let slot_of = |i: u64| slot + page_u32(i - first);
        let (mut base, mut cur) = (first, order);
        while cur > 0 {
            let split = xas_try_split_min_order(cur);
            let step = 1u64 << split;
            let holder = index & !(step - 1);
            for p in (base..base + (1u64 << cur)).step_by(1usize << split) {
                if p != holder {
                    inode.swapped.insert(p, (slot_of(p), split));
                }
            }
            (base, cur) = (holder, split);
        }
        inode.swapped.insert(index, (slot_of(index), 0));
    }

    /// `shmem_free_swap` of every swap entry lying wholly inside the indices `[start, end)`
    /// (a truncation's `find_lock_entries` skips entries reaching outside): the slots are
    /// freed (`free_swap_and_cache_nr`: a folio still in the swap cache goes too) and the
    /// pages uncharged (`info->swapped`, `shmem_recalc_inode`).
    pub(crate) fn shmem_free_swap_range(&mut self, ino: InodeId, start: u64, end: u64) {
        let inode = &self.shmem.inodes[ino.index()];
        let whole: Vec<(u64, u32, u8)> = inode
            .swapped
            .range(start..end)
            .filter(|&(&i, &(_, o))| i + (1u64 << o) <= end)
            .map(|(&i, &(s, o))| (i, s, o))
            .collect();
        for (first, slot, order) in whole {
            self.shmem.inodes[ino.index()].swapped.remove(&first);
            let nr = 1u32 << order;
            self.shmem_acct_blocks(ino, -i64::from(nr));
            for s in slot..slot + nr {
                self.free_swap_and_cache(s);
            }
        }
    }

    /// `shmem_get_partial_folio` for a swapped index at an end of a truncated range: read
    /// back from swap (`SGP_READ`: not beyond i_size).
    fn shmem_swapin_partial(&mut self, ino: InodeId, index: u64) {
        let inode = &self.shmem.inodes[ino.index()];
        if inode.swap_entry(index).is_some() && index < inode.size.div_ceil(PAGE_SIZE) {
            // An allocation failure leaves the entry, as SGP_READ returning an error does.
            let _ = self.shmem_swapin_folio(ino, index, None);
        }
    }

    /// Pages of `ino`'s swap entries in the VMA-relative range of `vma` between `a` and `b`
    /// (`shmem_partial_swap_usage`).
    pub(crate) fn shmem_swap_usage(&self, ino: InodeId, vma: &Vma, a: u64, b: u64) -> Vec<u64> {
        let (lo, hi) = (vma.linear_page_index(a), vma.linear_page_index(b));
        let inode = &self.shmem.inodes[ino.index()];
        let mut v = Vec::new();
        let from = inode.swap_entry(lo).map_or(lo, |(f, _, _)| f);
        for (&first, &(_, order)) in inode.swapped.range(from..hi) {
            for i in first..first + (1u64 << order) {
                if (lo..hi).contains(&i) {
                    v.push(vma.start + ((i - vma.pgoff) << PAGE_SHIFT));
                }
            }
        }
        v
    }
}

/// `xas_try_split_min_order` (lib/xarray.c) with `XA_CHUNK_SHIFT` 6: the order the next
/// step of a split goes to — down to a node boundary, or one order below one.
fn xas_try_split_min_order(order: u8) -> u8 {
    if order % 6 == 0 {
        order.saturating_sub(1)
    } else {
        order - order % 6
    }
}
