//! `/proc/vmstat` counters and per-size mTHP stats, spelled as `mm/vmstat.c` and
//! `mm/huge_memory.c` (`hugepages-*/stats/`) print them (Linux 6.18).
//! Events only ever grow; gauges (`nr_*`) go up and down. Scenario observables are deltas.

macro_rules! vm_items {
    ($($var:ident => $name:literal, $noisy:literal;)*) => {
        /// One `/proc/vmstat` line the model maintains.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum VmItem { $($var,)* }
        impl VmItem {
            pub const ALL: &'static [VmItem] = &[$(VmItem::$var,)*];
            pub const COUNT: usize = Self::ALL.len();
            /// The name printed in `/proc/vmstat`.
            pub fn name(self) -> &'static str {
                match self { $(VmItem::$var => $name,)* }
            }
            /// True if other processes on a real host routinely move it, so a host delta is
            /// not attributable to the scenario alone (compared with care by `check`).
            pub fn host_noisy(self) -> bool {
                match self { $(VmItem::$var => $noisy,)* }
            }
            pub fn from_name(name: &str) -> Option<VmItem> {
                Self::ALL.iter().copied().find(|i| i.name() == name)
            }
        }
    };
}

vm_items! {
    Pgfault => "pgfault", true;
    Pgmajfault => "pgmajfault", true;
    Pgreuse => "pgreuse", true;
    CowKsm => "cow_ksm", false;
    ThpFaultAlloc => "thp_fault_alloc", false;
    ThpFaultFallback => "thp_fault_fallback", false;
    ThpFaultFallbackCharge => "thp_fault_fallback_charge", false;
    ThpCollapseAlloc => "thp_collapse_alloc", false;
    ThpCollapseAllocFailed => "thp_collapse_alloc_failed", false;
    ThpFileAlloc => "thp_file_alloc", false;
    ThpFileFallback => "thp_file_fallback", false;
    ThpFileFallbackCharge => "thp_file_fallback_charge", false;
    ThpFileMapped => "thp_file_mapped", false;
    ThpSplitPage => "thp_split_page", false;
    ThpSplitPageFailed => "thp_split_page_failed", false;
    ThpDeferredSplitPage => "thp_deferred_split_page", false;
    ThpUnderusedSplitPage => "thp_underused_split_page", false;
    ThpSplitPmd => "thp_split_pmd", false;
    ThpScanExceedNonePte => "thp_scan_exceed_none_pte", false;
    ThpScanExceedSwapPte => "thp_scan_exceed_swap_pte", false;
    ThpScanExceedSharePte => "thp_scan_exceed_share_pte", false;
    ThpSplitPud => "thp_split_pud", false;
    ThpZeroPageAlloc => "thp_zero_page_alloc", false;
    ThpZeroPageAllocFailed => "thp_zero_page_alloc_failed", false;
    ThpSwpout => "thp_swpout", false;
    ThpSwpoutFallback => "thp_swpout_fallback", false;
    ThpMigrationSuccess => "thp_migration_success", false;
    ThpMigrationFail => "thp_migration_fail", false;
    ThpMigrationSplit => "thp_migration_split", false;
    CompactStall => "compact_stall", false;
    CompactFail => "compact_fail", false;
    CompactSuccess => "compact_success", false;
    CompactMigrateScanned => "compact_migrate_scanned", false;
    CompactFreeScanned => "compact_free_scanned", false;
    CompactIsolated => "compact_isolated", false;
    CompactDaemonWake => "compact_daemon_wake", false;
    CompactDaemonMigrateScanned => "compact_daemon_migrate_scanned", false;
    CompactDaemonFreeScanned => "compact_daemon_free_scanned", false;
    PgmigrateSuccess => "pgmigrate_success", true;
    AllocstallNormal => "allocstall_normal", true;
    AllocstallMovable => "allocstall_movable", true;
    SwpinZero => "swpin_zero", false;
    SwpoutZero => "swpout_zero", false;
    // Swap I/O (mm/page_io.c) and swap readahead (mm/swap_state.c): only the scenario's
    // processes have swap (the host runs set up their own device), so they are compared.
    Pswpin => "pswpin", false;
    Pswpout => "pswpout", false;
    SwapRa => "swap_ra", false;
    SwapRaHit => "swap_ra_hit", false;
    // NR_SWAPCACHE: a node counter whose per-CPU deltas reach /proc/vmstat only past a
    // threshold or at the next vmstat update, so the host's value lags (not compared).
    NrSwapcached => "nr_swapcached", true;
    NrAnonTransparentHugepages => "nr_anon_transparent_hugepages", false;
    // Shmem THP gauges (printed in THP units): the scenario's own shmem moves them; other
    // processes only create shmem THPs when a scenario turns shmem_enabled on, so they
    // are compared. File THPs (disk files' PMD-sized page-cache folios, `readahead.rs`, and
    // the guest_memfd huge folios of the model-only proposals, `gmem_huge_order=9`) also
    // come from every other process's reads on a host (ext4 builds large folios), so those
    // gauges are host-noisy.
    NrShmemHugepages => "nr_shmem_hugepages", false;
    NrFileHugepages => "nr_file_hugepages", true;
    NrShmemPmdmapped => "nr_shmem_pmdmapped", false;
    NrFilePmdmapped => "nr_file_pmdmapped", true;
    NrAnonPages => "nr_anon_pages", true;
    NrShmem => "nr_shmem", true;
    // Page-cache pages of shmem, disk files and guest_memfd; every file read on a host moves
    // it.
    NrFilePages => "nr_file_pages", true;
    NrFreePages => "nr_free_pages", true;
    NrPageTablePages => "nr_page_table_pages", true;
    HtlbBuddyAllocSuccess => "htlb_buddy_alloc_success", false;
    HtlbBuddyAllocFail => "htlb_buddy_alloc_fail", false;
    // Dirty accounting of disk files (mm/page-writeback.c): pages dirtied
    // (`folio_account_dirtied`) and written back (`__folio_end_writeback`). Every writer on
    // the host moves them.
    NrDirtied => "nr_dirtied", true;
    NrWritten => "nr_written", true;
    // NR_FILE_DIRTY: dirty page-cache pages of files that write back (disk files; shmem has
    // no writeback accounting). A gauge; the model has no flusher, so it falls only when the
    // scenario syncs or drops the pages.
    NrDirty => "nr_dirty", true;
    // NR_VMSCAN_IMMEDIATE: dirty file folios reclaim found and left to writeback with
    // PG_reclaim (`shrink_folio_list`); only grows. The host's own reclaim moves it too.
    NrVmscanImmediateReclaim => "nr_vmscan_immediate_reclaim", true;
    SimCollapseCopiedPages => "sim_collapse_copied_pages", false;
    SimCollapseInplace => "sim_collapse_inplace", false;
    SimThpLazyRemap => "sim_thp_lazy_remap", false;
    SimThpLazyAlloc => "sim_thp_lazy_alloc", false;
    SimThpLazyPages => "sim_thp_lazy_pages", false;
    SimZeroedPages => "sim_zeroed_pages", false;
    SimCowCopiedPages => "sim_cow_copied_pages", false;
}

macro_rules! mthp_items {
    ($($var:ident => $name:literal;)*) => {
        /// One file of `hugepages-<size>kB/stats/`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum MthpStat { $($var,)* }
        impl MthpStat {
            pub const ALL: &'static [MthpStat] = &[$(MthpStat::$var,)*];
            pub const COUNT: usize = Self::ALL.len();
            pub fn name(self) -> &'static str {
                match self { $(MthpStat::$var => $name,)* }
            }
            pub fn from_name(name: &str) -> Option<MthpStat> {
                Self::ALL.iter().copied().find(|i| i.name() == name)
            }
        }
    };
}

mthp_items! {
    AnonFaultAlloc => "anon_fault_alloc";
    AnonFaultFallback => "anon_fault_fallback";
    AnonFaultFallbackCharge => "anon_fault_fallback_charge";
    AnonFaultDeclined => "anon_fault_declined";
    Zswpout => "zswpout";
    Swpin => "swpin";
    SwpinFallback => "swpin_fallback";
    SwpinFallbackCharge => "swpin_fallback_charge";
    Swpout => "swpout";
    SwpoutFallback => "swpout_fallback";
    ShmemAlloc => "shmem_alloc";
    ShmemFallback => "shmem_fallback";
    ShmemFallbackCharge => "shmem_fallback_charge";
    Split => "split";
    SplitFailed => "split_failed";
    SplitDeferred => "split_deferred";
    NrAnon => "nr_anon";
    NrAnonPartiallyMapped => "nr_anon_partially_mapped";
}

/// khugepaged's own sysfs counters (`khugepaged/pages_collapsed`, `khugepaged/full_scans`).
pub const KHUGEPAGED_STATS: &[&str] = &["pages_collapsed", "full_scans"];

/// The model's counters. Gauges are kept as i64 so a bug that drives one negative is caught by
/// the invariant checker instead of wrapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmStat {
    items: [i64; VmItem::COUNT],
    /// Indexed by `[order][stat]` for orders 0..=9 (order 0 stays zero; order 1 has only
    /// page-cache events).
    mthp: [[i64; MthpStat::COUNT]; 10],
    pub pages_collapsed: u64,
    pub full_scans: u64,
}

impl Default for VmStat {
    fn default() -> Self {
        VmStat {
            items: [0; VmItem::COUNT],
            mthp: [[0; MthpStat::COUNT]; 10],
            pages_collapsed: 0,
            full_scans: 0,
        }
    }
}

impl VmStat {
    #[inline]
    pub fn count(&mut self, item: VmItem) {
        self.items[item as usize] += 1;
    }
    #[inline]
    pub fn add(&mut self, item: VmItem, delta: i64) {
        self.items[item as usize] += delta;
    }
    #[inline]
    pub fn get(&self, item: VmItem) -> i64 {
        self.items[item as usize]
    }
    #[inline]
    pub fn mthp_count(&mut self, order: u8, stat: MthpStat) {
        self.mthp[order as usize][stat as usize] += 1;
    }
    #[inline]
    pub fn mthp_add(&mut self, order: u8, stat: MthpStat, delta: i64) {
        self.mthp[order as usize][stat as usize] += delta;
    }
    pub fn mthp_get(&self, order: u8, stat: MthpStat) -> i64 {
        self.mthp[order as usize][stat as usize]
    }

    /// Every counter under its observable name: `vmstat.<name>`, `mthp.<size>kB.<stat>`,
    /// `khugepaged.<stat>`. This is the one schema the host backend reproduces.
    pub fn named(&self) -> Vec<(String, i64)> {
        let orders = crate::sysfs::MTHP_STAT_ORDERS;
        let mut v = Vec::with_capacity(VmItem::COUNT + orders.len() * MthpStat::COUNT + 2);
        for &i in VmItem::ALL {
            v.push((format!("vmstat.{}", i.name()), self.get(i)));
        }
        for o in orders {
            for &s in MthpStat::ALL {
                v.push((
                    format!("mthp.{}kB.{}", crate::sysfs::order_to_size_kb(o), s.name()),
                    self.mthp_get(o, s),
                ));
            }
        }
        v.push((
            "khugepaged.pages_collapsed".to_string(),
            crate::util::to_i64(self.pages_collapsed),
        ));
        v.push((
            "khugepaged.full_scans".to_string(),
            crate::util::to_i64(self.full_scans),
        ));
        v
    }
}
