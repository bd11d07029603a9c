//! The buddy allocator over simulated PFNs, after `mm/page_alloc.c` (Linux 6.18):
//! naturally aligned free blocks of order 0..=MAX_PAGE_ORDER, smallest-fit allocation that
//! splits larger blocks (`__rmqueue_smallest` + `expand`), and merging with the free buddy
//! on free (`__free_one_page`). Free lists are LIFO like the kernel's.
//!
//! Known deviations (documented in ARCHITECTURE.md): one zone, no migratetypes or pageblock
//! stealing, no per-CPU lists, no watermarks, no reclaim or compaction yet — an allocation
//! fails exactly when no free block of a sufficient order exists.
//!
//! Memory use is independent of the simulated memory size until pages are used: blocks never
//! split yet are a "virgin" range of MAX_PAGE_ORDER blocks above a cursor, and the per-order
//! free bitmaps (2 bits per simulated page in all) are allocated zeroed (the host commits them
//! lazily).

use crate::ids::Pfn;
use crate::types::MAX_PAGE_ORDER;

const NR_ORDERS: usize = MAX_PAGE_ORDER as usize + 1;

#[derive(Clone, Debug)]
pub(crate) struct BuddyAllocator {
    total_pages: u64,
    /// Per order: stack of free block heads. Entries can be stale (the block was merged
    /// away); `bits` is the truth and stale entries are skipped on pop.
    lists: [Vec<u32>; NR_ORDERS],
    /// Per order: number of free blocks (the truth, excluding the virgin range).
    nr_free: [u64; NR_ORDERS],
    /// Per order k: bit `pfn >> k` is set if a free block of order k starts at `pfn`.
    /// 2 bits per simulated page in all, allocated zeroed (committed by the host only where
    /// touched), so a THP-only workload touches ~1 bit per 2 MiB.
    bits: [Vec<u64>; NR_ORDERS],
    /// PFNs at or above this (in MAX_PAGE_ORDER blocks) have never been handed out.
    virgin: u64,
}

impl BuddyAllocator {
    /// `total_pages` must be a multiple of 2^MAX_PAGE_ORDER and below 2^32.
    pub(crate) fn new(total_pages: u64) -> Self {
        assert!(total_pages % (1 << MAX_PAGE_ORDER) == 0 && total_pages < (1u64 << 32));
        BuddyAllocator {
            total_pages,
            lists: Default::default(),
            nr_free: [0; NR_ORDERS],
            bits: std::array::from_fn(|k| {
                vec![
                    0u64;
                    usize::try_from(total_pages >> k)
                        .expect("below 2^32")
                        .div_ceil(64)
                ]
            }),
            virgin: 0,
        }
    }

    pub(crate) fn total_pages(&self) -> u64 {
        self.total_pages
    }

    #[inline]
    fn is_free(&self, pfn: u64, order: usize) -> bool {
        bit_test(&self.bits[order], pfn >> order)
    }

    #[inline]
    fn set_free(&mut self, pfn: u64, order: usize, on: bool) {
        let i = pfn >> order;
        let w = &mut self.bits[order][(i / 64) as usize];
        if on {
            *w |= 1 << (i % 64);
        } else {
            *w &= !(1 << (i % 64));
        }
    }

    /// Free pages (`NR_FREE_PAGES`).
    pub(crate) fn nr_free_pages(&self) -> u64 {
        let listed: u64 = (0..NR_ORDERS).map(|o| self.nr_free[o] << o).sum();
        listed + (self.total_pages - self.virgin)
    }

    fn push(&mut self, pfn: u64, order: usize) {
        self.set_free(pfn, order, true);
        self.lists[order].push(Pfn(pfn).to_u32());
        self.nr_free[order] += 1;
    }

    fn pop(&mut self, order: usize) -> Option<u64> {
        while let Some(pfn) = self.lists[order].pop() {
            if self.is_free(u64::from(pfn), order) {
                self.set_free(u64::from(pfn), order, false);
                self.nr_free[order] -= 1;
                return Some(u64::from(pfn));
            }
        }
        None
    }

    /// Allocates a naturally aligned block of `2^order` pages; `None` if none is free.
    #[inline]
    pub(crate) fn alloc(&mut self, order: u8) -> Option<Pfn> {
        let order = order as usize;
        let mut found = None;
        for o in order..NR_ORDERS {
            if self.nr_free[o] > 0 {
                if let Some(pfn) = self.pop(o) {
                    found = Some((pfn, o));
                    break;
                }
            }
        }
        let (pfn, o) = match found {
            Some(f) => f,
            None => {
                if self.virgin >= self.total_pages {
                    return None;
                }
                let pfn = self.virgin;
                self.virgin += 1 << MAX_PAGE_ORDER;
                (pfn, MAX_PAGE_ORDER as usize)
            }
        };
        // expand(): hand the upper halves back, largest first, so the lower part is used.
        let mut cur = o;
        while cur > order {
            cur -= 1;
            self.push(pfn + (1 << cur), cur);
        }
        Some(Pfn(pfn))
    }

    /// Frees a block, merging with free buddies.
    #[inline]
    pub(crate) fn free(&mut self, pfn: Pfn, order: u8) {
        let mut pfn = pfn.0;
        let mut order = order as usize;
        debug_assert!(pfn % (1 << order) == 0 && pfn < self.virgin);
        while order < MAX_PAGE_ORDER as usize {
            let buddy = pfn ^ (1 << order);
            if !self.is_free(buddy, order) {
                break;
            }
            // Remove the buddy; its stack entry becomes stale.
            self.set_free(buddy, order, false);
            self.nr_free[order] -= 1;
            pfn &= !(1 << order);
            order += 1;
        }
        self.push(pfn, order);
        // Keep stale entries bounded.
        if self.lists[order].len() as u64 > 2 * self.nr_free[order] + 4096 {
            let bits = &self.bits[order];
            self.lists[order].retain(|&p| bit_test(bits, u64::from(p) >> order));
        }
    }

    /// Iterates the free blocks `(pfn, order)` (for invariant checks and observation).
    pub(crate) fn free_blocks(&self) -> impl Iterator<Item = (u64, u8)> + '_ {
        let listed = (0..NR_ORDERS).flat_map(move |o| {
            let mut seen: Vec<u32> = self.lists[o]
                .iter()
                .copied()
                .filter(|&p| self.is_free(u64::from(p), o))
                .collect();
            seen.sort_unstable();
            seen.dedup();
            seen.into_iter().map(move |p| (u64::from(p), order_u8(o)))
        });
        let virgin = (self.virgin..self.total_pages)
            .step_by(1 << MAX_PAGE_ORDER)
            .map(|p| (p, MAX_PAGE_ORDER));
        listed.chain(virgin)
    }

    /// Checks the allocator's own invariants; returns the free page count.
    pub(crate) fn check(&self) -> Result<u64, String> {
        let mut pages = 0u64;
        let mut counts = [0u64; NR_ORDERS];
        for (pfn, o) in self.free_blocks() {
            if pfn % (1 << o) != 0 {
                return Err(format!("free block {pfn:#x} of order {o} misaligned"));
            }
            if (o as usize) < NR_ORDERS - 1 && pfn < self.virgin {
                let buddy = pfn ^ (1 << o);
                if self.is_free(buddy, o as usize) {
                    return Err(format!(
                        "free block {pfn:#x} and its buddy {buddy:#x} both free at order {o}"
                    ));
                }
            }
            if pfn < self.virgin {
                counts[o as usize] += 1;
            }
            pages += 1 << o;
        }
        if counts != self.nr_free {
            return Err(format!("nr_free {:?} != listed {:?}", self.nr_free, counts));
        }
        if pages != self.nr_free_pages() {
            return Err("free page count mismatch".into());
        }
        Ok(pages)
    }
}

/// An order index (below `NR_ORDERS`) as the `u8` orders are elsewhere.
fn order_u8(o: usize) -> u8 {
    u8::try_from(o).expect("order below NR_ORDERS")
}

#[inline]
fn bit_test(bits: &[u64], i: u64) -> bool {
    bits[(i / 64) as usize] & (1 << (i % 64)) != 0
}

/// Observation helpers the tests use; `nr_free_blocks` is what `/proc/buddyinfo` will show
/// once the allocator grows migratetypes.
#[cfg(test)]
impl BuddyAllocator {
    /// Number of free blocks of exactly this order (as /proc/buddyinfo shows).
    pub(crate) fn nr_free_blocks(&self, order: u8) -> u64 {
        let mut n = self.nr_free[order as usize];
        if order == MAX_PAGE_ORDER {
            n += (self.total_pages - self.virgin) >> MAX_PAGE_ORDER;
        }
        n
    }

    /// Whether a block of at least `order` is free (the fast-path check of
    /// `get_page_from_freelist`, without watermarks).
    pub(crate) fn can_alloc(&self, order: u8) -> bool {
        (order..=MAX_PAGE_ORDER).any(|o| self.nr_free_blocks(o) > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_merge() {
        let mut b = BuddyAllocator::new(2048);
        let p0 = b.alloc(0).unwrap();
        assert_eq!(p0, Pfn(0));
        assert_eq!(b.nr_free_pages(), 2047);
        let p9 = b.alloc(9).unwrap();
        assert_eq!(p9, Pfn(512));
        b.free(p0, 0);
        b.free(p9, 9);
        assert_eq!(b.nr_free_pages(), 2048);
        assert_eq!(b.nr_free_blocks(10), 2);
        b.check().unwrap();
    }

    #[test]
    fn exhaustion_fails_cleanly() {
        let mut b = BuddyAllocator::new(1024);
        assert!(b.alloc(10).is_some());
        assert!(b.alloc(0).is_none());
        assert!(!b.can_alloc(0));
    }

    #[test]
    fn fragmentation_blocks_high_orders() {
        let mut b = BuddyAllocator::new(1024);
        let pages: Vec<Pfn> = (0..1024).map(|_| b.alloc(0).unwrap()).collect();
        // Free every other page: 512 free pages, no order-1 block.
        for p in pages.iter().step_by(2) {
            b.free(*p, 0);
        }
        assert_eq!(b.nr_free_pages(), 512);
        assert!(!b.can_alloc(1));
        b.check().unwrap();
    }

    proptest::proptest! {
        #[test]
        fn random_alloc_free(ops in proptest::collection::vec((0u8..=10, proptest::bool::ANY), 1..300)) {
            let mut b = BuddyAllocator::new(4096);
            let mut held: Vec<(Pfn, u8)> = vec![];
            for (order, free) in ops {
                if free && !held.is_empty() {
                    let (p, o) = held.swap_remove(order as usize % held.len());
                    b.free(p, o);
                } else if let Some(p) = b.alloc(order) {
                    proptest::prop_assert!(p.0 % (1 << order) == 0);
                    held.push((p, order));
                }
                let free_pages = b.check().map_err(proptest::test_runner::TestCaseError::fail)?;
                let used: u64 = held.iter().map(|(_, o)| 1u64 << o).sum();
                proptest::prop_assert_eq!(free_pages + used, 4096);
            }
            // No two held blocks overlap.
            let mut ranges: Vec<(u64, u64)> = held.iter().map(|(p, o)| (p.0, p.0 + (1 << o))).collect();
            ranges.sort();
            for w in ranges.windows(2) { proptest::prop_assert!(w[0].1 <= w[1].0); }
        }
    }
}
