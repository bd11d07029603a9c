//! Shrinkers, after `mm/shrinker.c` (Linux 6.18): each is an object that says how much it
//! could free (`count_objects`) and frees it when asked (`scan_objects`); `shrink_slab` asks
//! every registered shrinker in turn. The model registers the two THP shrinkers of
//! `mm/huge_memory.c`; reclaim (kswapd, direct reclaim) will call `Kernel::shrink` too.

use crate::Kernel;

/// `struct shrinker`: the state a shrinker frees lives in `Kernel` (the queue, the folio), so
/// the objects are stateless and reach it through the kernel they are given.
pub(crate) trait Shrinker {
    /// `count_objects`: how much could be freed now (0: nothing to scan).
    fn count_objects(&self, k: &Kernel) -> u64;
    /// `scan_objects`: frees what it can; returns how much it freed.
    fn scan_objects(&self, k: &mut Kernel) -> u64;
}

/// `deferred_split_shrinker`: splits the folios on the deferred-split queue.
struct DeferredSplit;

impl Shrinker for DeferredSplit {
    fn count_objects(&self, k: &Kernel) -> u64 {
        k.ds_queue.len()
    }
    fn scan_objects(&self, k: &mut Kernel) -> u64 {
        k.deferred_split_scan()
    }
}

/// `huge_zero_folio_shrinker`: frees the huge zero folio once no mm maps it.
struct HugeZeroFolio;

impl Shrinker for HugeZeroFolio {
    fn count_objects(&self, k: &Kernel) -> u64 {
        k.huge_zero.shrinker_count()
    }
    fn scan_objects(&self, k: &mut Kernel) -> u64 {
        k.shrink_huge_zero_folio_scan()
    }
}

/// The registered shrinkers, in the order `shrink_slab` visits them.
const SHRINKERS: [&dyn Shrinker; 2] = [&DeferredSplit, &HugeZeroFolio];

impl Kernel {
    /// Runs every shrinker as memory pressure or `drop_caches` would (`shrink_slab`): each
    /// that counts something is scanned.
    pub fn shrink(&mut self) {
        for s in SHRINKERS {
            if s.count_objects(self) > 0 {
                s.scan_objects(self);
            }
        }
    }
}
