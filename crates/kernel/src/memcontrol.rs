//! The run's memory cgroup: `mm/memcontrol.c` and `mm/memcontrol-v1.c` (Linux 6.18, cgroup
//! v1 as the host mounts it): one memcg with `memory.limit_in_bytes` holding every process of
//! the run (`memcg limit=SIZE`).
//!
//! * **What is charged.** Every folio the model allocates for a process (anonymous at fault,
//!   COW, swap-in and collapse; shmem, memfd, tmpfs and disk-file page cache to the
//!   allocating task's memcg) and every page table (`GFP_PGTABLE_USER` has `__GFP_ACCOUNT`,
//!   and v1 counts kernel memory in `memory.usage_in_bytes`). Nothing is charged before the
//!   memcg exists: it is a setup line. A folio is uncharged when it is freed, so the usage
//!   is derived: the pages of live folios plus page tables plus the per-CPU stock.
//! * **The stock** (`consume_stock` / `refill_stock`): a charge below
//!   `MEMCG_CHARGE_BATCH` (64 pages) takes the batch from the page counter and keeps the
//!   rest on the CPU, where later charges take it; the page counter, and with it the limit
//!   check and `memory.usage_in_bytes`, includes it. The model has one CPU's stock.
//! * **A charge that does not fit** (`try_charge_memcg`): every failed
//!   `page_counter_try_charge` moves `memory.failcnt` — the batch attempt, then the exact
//!   one; without `__GFP_DIRECT_RECLAIM` the charge fails at once; with it, limit reclaim
//!   (`try_to_free_mem_cgroup_pages`), the stock drain and one more attempt, then
//!   `__GFP_NORETRY` gives up; otherwise `MAX_RECLAIM_RETRIES` more attempts, and a charge
//!   of order ≤ `PAGE_ALLOC_COSTLY_ORDER` ends in the memcg OOM killer (`mem_cgroup_oom`):
//!   the task with the highest `oom_badness` is SIGKILLed (`memory.oom_control` `oom_kill`),
//!   the charge is retried (another `MAX_RECLAIM_RETRIES`) and fails for the dying task.
//!   Limit reclaim itself is not modelled: a charge that would need it while the memcg has
//!   something reclaimable (swap with swappiness > 0, lazy-free or page-cache folios, THPs
//!   on the deferred-split queue) makes the run refuse (`Kernel::memcg_unmodelled`) rather
//!   than guess.
//! * **Observables** (`memcg.*`): `usage` (usage_in_bytes: charged pages + page tables +
//!   stock; the host's also holds slab objects and other CPUs' stock), `failcnt`,
//!   `oom_kill`, and memory.stat's v1 fields `rss` (NR_ANON_MAPPED), `rss_huge`, `shmem`,
//!   `cache` (NR_FILE_PAGES) and `swap` (swap slots in use) in bytes: with every process in
//!   the memcg they are the node's gauges.

use crate::page_alloc::Gfp;
use crate::types::Pid;

/// The `memcg.<field>` observables.
pub const MEMCG_FIELDS: &[&str] = &[
    "usage", "failcnt", "oom_kill", "rss", "rss_huge", "shmem", "cache", "swap",
];

/// `MEMCG_CHARGE_BATCH`: pages a small charge takes from the page counter at once.
pub const MEMCG_CHARGE_BATCH: u64 = 64;
/// `MAX_RECLAIM_RETRIES`.
pub const MAX_RECLAIM_RETRIES: u64 = 16;
/// `PAGE_ALLOC_COSTLY_ORDER`: larger charges never invoke the OOM killer.
pub const PAGE_ALLOC_COSTLY_ORDER: u8 = 3;

/// `memcg limit=SIZE [swappiness=N]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MemcgConfig {
    /// `memory.limit_in_bytes`, rounded down to pages as the kernel stores it.
    pub limit: u64,
    /// `memory.swappiness` (0..=200).
    pub swappiness: u32,
}

/// The memcg's state (`struct mem_cgroup` of the run).
#[derive(Clone, Debug)]
pub(crate) struct MemCgroup {
    pub(crate) limit_pages: u64,
    pub(crate) swappiness: u32,
    /// `memory.failcnt`: failed page-counter charges.
    pub(crate) failcnt: u64,
    /// `memory.oom_control` `oom_kill`.
    pub(crate) oom_kill: u64,
    /// Pages pre-charged on the CPU (`memcg_stock_pcp`), part of the page counter.
    pub(crate) stock: u64,
    /// Tasks the OOM killer chose and the backend has not yet torn down.
    pub(crate) victims: Vec<Pid>,
}

impl MemCgroup {
    pub(crate) fn new(cfg: MemcgConfig) -> MemCgroup {
        MemCgroup {
            limit_pages: cfg.limit >> crate::types::PAGE_SHIFT,
            swappiness: cfg.swappiness,
            failcnt: 0,
            oom_kill: 0,
            stock: 0,
            victims: Vec::new(),
        }
    }
}

/// Why a charge failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChargeFail {
    /// `-ENOMEM` from `try_charge_memcg`: the caller falls back (a large folio) or fails
    /// with VM_FAULT_OOM.
    NoMem,
}

impl crate::Kernel {
    /// Pages the memcg's page counter holds: live folios, page tables and the stock.
    pub(crate) fn memcg_usage_pages(&self) -> u64 {
        let Some(cg) = &self.memcg else { return 0 };
        self.folios.live_pages()
            + u64::try_from(self.vmstat.get(crate::vmstat::VmItem::NrPageTablePages)).unwrap_or(0)
            + cg.stock
    }

    /// Whether limit reclaim could free something here, which the model does not do
    /// (`shrink_lruvec` over the memcg's LRUs, the memcg-aware deferred-split shrinker).
    pub(crate) fn memcg_reclaimable(&self) -> Option<&'static str> {
        let cg = self.memcg.as_ref()?;
        let swap_free = self.swap.si.as_ref().is_some_and(|si| si.inuse < si.pages);
        if swap_free && cg.swappiness > 0 && self.vmstat.get(crate::vmstat::VmItem::NrAnonPages) > 0
        {
            return Some("anonymous pages could be swapped out");
        }
        if self.vmstat.get(crate::vmstat::VmItem::NrFilePages)
            > self.vmstat.get(crate::vmstat::VmItem::NrShmem)
        {
            return Some("clean page cache could be dropped");
        }
        if swap_free && cg.swappiness > 0 && self.vmstat.get(crate::vmstat::VmItem::NrShmem) > 0 {
            return Some("shmem pages could be swapped out");
        }
        if self.folios.any_lazyfree() {
            return Some("lazy-free pages could be discarded");
        }
        None
    }

    /// A page table's charge (`__GFP_ACCOUNT`): from the stock or a batch, else forced over
    /// the limit (the model does not fail page-table allocations for the memcg).
    pub(crate) fn memcg_charge_pgtable(&mut self) {
        // The page table is already counted as allocated: the usage before it is one less.
        let usage = self.memcg_usage_pages().saturating_sub(1);
        let Some(cg) = self.memcg.as_mut() else {
            return;
        };
        if cg.stock >= 1 {
            cg.stock -= 1;
        } else if usage + MEMCG_CHARGE_BATCH <= cg.limit_pages {
            cg.stock = MEMCG_CHARGE_BATCH - 1;
        }
    }

    /// `try_charge_memcg` of `nr` pages with `gfp` (`mem_cgroup_charge`), in the kernel's
    /// loop: the stock, the batch then the exact page-counter attempt (each failure is a
    /// `failcnt`), limit reclaim (here the memcg-aware deferred-split shrinker, which a
    /// small queue has scanned whole by the lowest priorities; its splits free pages but do
    /// not count as reclaimed), the margin check, one stock drain, `__GFP_NORETRY`,
    /// `MAX_RECLAIM_RETRIES`, then the OOM killer for orders up to
    /// `PAGE_ALLOC_COSTLY_ORDER`.
    pub(crate) fn memcg_charge(&mut self, nr: u64, gfp: Gfp) -> Result<(), ChargeFail> {
        if self.memcg.is_none() {
            return Ok(());
        }
        let mut batch = MEMCG_CHARGE_BATCH.max(nr);
        let mut retries = MAX_RECLAIM_RETRIES;
        let mut drained = false;
        let mut passed_oom = false;
        loop {
            let usage = self.memcg_usage_pages();
            let cg = self.memcg.as_mut().expect("memcg");
            if nr <= MEMCG_CHARGE_BATCH && cg.stock >= nr {
                cg.stock -= nr;
                return Ok(());
            }
            if usage + batch <= cg.limit_pages {
                // refill_stock: what this charge does not use joins the stock, which is
                // drained (given back) once it grows past the batch.
                cg.stock += batch - nr;
                if cg.stock > MEMCG_CHARGE_BATCH {
                    cg.stock = 0;
                }
                return Ok(());
            }
            cg.failcnt += 1;
            if batch > nr {
                batch = nr;
                continue;
            }
            if !gfp.direct {
                return Err(ChargeFail::NoMem);
            }
            // A victim chosen in this op is the charging task (the backend tears victims
            // down after every op): it is dying.
            let dying = !cg.victims.is_empty();
            self.memcg_reclaim();
            let cg = self.memcg.as_mut().expect("memcg");
            let usage = self.folios.live_pages()
                + u64::try_from(self.vmstat.get(crate::vmstat::VmItem::NrPageTablePages))
                    .unwrap_or(0)
                + cg.stock;
            if usage + nr <= cg.limit_pages {
                continue;
            }
            if !drained {
                cg.stock = 0;
                drained = true;
                continue;
            }
            if gfp.noretry {
                return Err(ChargeFail::NoMem);
            }
            if retries > 0 {
                retries -= 1;
                continue;
            }
            if passed_oom && dying {
                return Err(ChargeFail::NoMem);
            }
            if nr.trailing_zeros() > u32::from(PAGE_ALLOC_COSTLY_ORDER) {
                return Err(ChargeFail::NoMem);
            }
            // mem_cgroup_oom: kill the task with the highest badness (or find the victim
            // already chosen), then retry.
            if !dying {
                if let Some(victim) = self.oom_select_victim() {
                    let cg = self.memcg.as_mut().expect("memcg");
                    cg.oom_kill += 1;
                    cg.victims.push(victim);
                }
            }
            passed_oom = true;
            retries = MAX_RECLAIM_RETRIES;
        }
    }

    /// `try_to_free_mem_cgroup_pages`: the memcg-aware deferred-split shrinker; anything
    /// else reclaim would free is not modelled, and the run is refused.
    fn memcg_reclaim(&mut self) {
        if let Some(what) = self.memcg_reclaimable() {
            self.unmodelled.get_or_insert_with(|| {
                format!("memcg limit reclaim is not modelled ({what} when a charge hit the limit)")
            });
        }
        if self.ds_queue.len() > 0 {
            self.deferred_split_scan();
        }
    }

    /// `select_bad_process` over the memcg's tasks: the highest `oom_badness` (resident
    /// pages + swap entries + page-table pages), the first of equals in task order; tasks
    /// already chosen are skipped.
    fn oom_select_victim(&self) -> Option<Pid> {
        let cg = self.memcg.as_ref()?;
        let mut best: Option<(u64, Pid)> = None;
        for (pid, mmi) in self.tasks.iter_live() {
            if cg.victims.contains(&pid) {
                continue;
            }
            let points = self.mms[mmi].oom_badness();
            if best.is_none_or(|(b, _)| points > b) {
                best = Some((points, pid));
            }
        }
        best.map(|(_, p)| p)
    }

    /// The tasks the memcg OOM killer chose since the last call (the backend delivers the
    /// SIGKILL and tears the processes down with `exit`).
    pub fn take_oom_victims(&mut self) -> Vec<Pid> {
        self.memcg
            .as_mut()
            .map(|c| std::mem::take(&mut c.victims))
            .unwrap_or_default()
    }

    /// Why the run went where the model does not follow the kernel (memcg limit reclaim),
    /// once; the backend refuses the scenario.
    pub fn take_unmodelled(&mut self) -> Option<String> {
        self.unmodelled.take()
    }

    /// The `memcg.*` observables (bytes, except the counts).
    pub(crate) fn memcg_counters(&self, v: &mut Vec<(String, i64)>) {
        let Some(cg) = &self.memcg else { return };
        use crate::vmstat::VmItem;
        let page = crate::util::to_i64(crate::types::PAGE_SIZE);
        let g = |i: VmItem| self.vmstat.get(i);
        let swap = self.swap.si.as_ref().map_or(0, |si| i64::from(si.inuse));
        v.extend([
            (
                "memcg.usage".to_string(),
                crate::util::to_i64(self.memcg_usage_pages()) * page,
            ),
            ("memcg.failcnt".to_string(), crate::util::to_i64(cg.failcnt)),
            (
                "memcg.oom_kill".to_string(),
                crate::util::to_i64(cg.oom_kill),
            ),
            ("memcg.rss".to_string(), g(VmItem::NrAnonPages) * page),
            (
                "memcg.rss_huge".to_string(),
                g(VmItem::NrAnonTransparentHugepages) * page * 512,
            ),
            ("memcg.shmem".to_string(), g(VmItem::NrShmem) * page),
            ("memcg.cache".to_string(), g(VmItem::NrFilePages) * page),
            ("memcg.swap".to_string(), swap * page),
        ]);
    }
}
