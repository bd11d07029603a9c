//! The page-table walk cursor of the model's range walks, after the `p?d_addr_end` +
//! `p?d_none_or_clear_bad` loops of Linux 6.18 (`mm/memory.c` `zap_pmd_range`,
//! `copy_pmd_range`, `mm/mprotect.c` `change_pmd_range`, `mm/pagewalk.c`): a walk visits
//! only populated PMD slots, so it costs O(populated page tables), not O(range).
//!
//! `Kernel::set_dense_walks` makes every walk visit each slot of the regions that have a PMD
//! table instead (none entries included): the page-at-a-time reference the equivalence tests
//! compare the sparse walks with.

use crate::ids::MmId;
use crate::types::{PMD_MASK, PMD_SIZE};
use crate::Kernel;

impl Kernel {
    /// The next PMD slot a walk of `[from, end)` in mm `mmi` visits (see
    /// `PageTables::next_pmd_slot`).
    #[inline]
    pub(crate) fn next_pmd_slot(&self, mmi: MmId, from: u64, end: u64) -> Option<u64> {
        let pgt = &self.mms[mmi].pgt;
        if self.dense_walks {
            let mut slot = from & PMD_MASK;
            while slot < end {
                if pgt.has_pmd_table(slot) {
                    return Some(slot);
                }
                slot += PMD_SIZE;
            }
            return None;
        }
        pgt.next_pmd_slot(from, end)
    }

    /// The slots `next_pmd_slot` visits in `[start, end)` with their entries (read-only walks).
    pub(crate) fn walk_pmds(
        &self,
        mmi: MmId,
        start: u64,
        end: u64,
    ) -> impl Iterator<Item = (u64, crate::pgtable::Pmd)> + '_ {
        let mut from = start;
        std::iter::from_fn(move || {
            let slot = self.next_pmd_slot(mmi, from, end)?;
            from = slot + PMD_SIZE;
            Some((slot, self.mms[mmi].pgt.pmd(slot)))
        })
    }

    /// Test support: walk every slot (`true`) or only populated ones (`false`, the default).
    /// Observable results are the same either way; the equivalence tests check that.
    #[doc(hidden)]
    pub fn set_dense_walks(&mut self, dense: bool) {
        self.dense_walks = dense;
    }
}
